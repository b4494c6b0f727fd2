/* SPDX-License-Identifier: MIT */
/*
 * The AVX-512 VNNI one-token kernel of the interleaved Q4_0, Q4_1, Q5_0,
 * Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K matrices (quant_interleave.h;
 * Q6_K's block: q6k_block_tokens). Per
 * block of a group, sixteen rows in the sixteen int32 lanes: vectors of
 * nibbles (or of 2-bit q), each split into its low and high nibbles (its
 * four pairs of bits; Q8_0's vectors are whole bytes, made unsigned by an
 * exclusive or), the high bits added as 16 (Q3_K: 4) under the ready
 * byte masks, and each met by four activation bytes broadcast
 * (vpdpbusd): eight instructions of products for 512 of them, no
 * horizontal sums. The K-quants' scales and mins come out of the sixteen
 * rows' packed bytes, a row a lane, by shifts and masks: each sub-block's
 * sum times its scale (vpmulld; Q2_K, Q3_K: two sums a vpdpwssd as int16
 * pairs), the mins (Q3_K: the scales, for its offset) against the
 * activations' sums in int16 pairs (vpdpwssd). The
 * numbers are kernels_quant.h's definition: each block's isum (and M)
 * exactly, then the same float steps in the same order, a row per lane.
 *
 * Reading memory: the rows come in chunks of 64 (the cpu back end's), four
 * groups; qi_streams of them are walked together (on AMD's cores, for a
 * single token four of the blocks of 32 and one of a K-quant, four for the
 * four-token walks; two on Intel's), QI_STEP
 * blocks of one then of the next, each prefetched qi_ahead blocks ahead
 * into L1: that many streams a thread, each one sequential. First, on Zen
 * 5 EPYC, 2 threads, 1 GB of Q5_0 at 11008x4096 in a standalone copy: one group at a time 28-37 GB/s with
 * any prefetch, four 46-50, eight 39-43; 8 blocks ahead 50-55, 16 46-50,
 * 32 39-44, none 28-31 (the read bandwidth 47-58). Then in npu-kbench,
 * paired with the probe, three rounds alternated (5632x2048 / 11008x4096):
 * 2 blocks a step 78-87 / 87-94 %, 4 blocks 75-85 / 85-89 %, 8 blocks
 * 70-74 / 68-84 %, 1 block 70 / 77-96 %; two groups 55-62 / 56-62 %,
 * eight 63-85 / 69-92 %; 6 or 12 blocks ahead no better than 8. The
 * last blocks of each group prefetch the start of the same stream in the
 * next chunk (the group qi_streams(n_tok) on: a thread takes its chunks in
 * order), where they prefetched into the next stream of this chunk, read
 * already: three rounds alternated, Q5_0 5632x2048 96-103 % against
 * 73-83 %, Q4_0 90-113 against 85-87, Q5_0 11008x4096 85-108 against
 * 79-92.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels_quant.h"
#include "quant_interleave_zmm.h"
#include "util.h"

#define VNNI_FN __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")))
#define VNNI_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")))

/*
 * Under the sanitizers the walks are one copy each, the type and the
 * token count variables: the fifty copies with them constant (qi_walk_type,
 * qi_walk_tokens_type), each instrumented, kept GCC 12 on this file for
 * over 20 minutes (-fsanitize=address,undefined, -O2 or -O3, with or
 * without -g); the same code runs, only not folded.
 */
#ifdef __SANITIZE_ADDRESS__
#define QI_ONE_COPY 1
#else
#define QI_ONE_COPY 0
#endif

#define QI_STREAMS_MAX 4 /* groups walked together, at most (qi_streams) */
#define QI_STEP 64   /* elements of a group (2 blocks of 32, or 1 of 256), then the next group's */
/*
 * Elements ahead a group is prefetched: one token 768 (24 blocks of 32, 3
 * of 256), the four-token walks 256 (8 of 32, 1 of 256). 256 was chosen
 * for both when the walks' sums went through memory every block (qi_walk);
 * with the blocks that much faster the one-token walks want the data
 * further ahead. Zen 5, 2 threads, npu-kbench paired with the probe,
 * alternated, in the host's fast minutes (probe 70-79 GB/s): at 11008x4096
 * 256 / 512 / 768 elements Q4_0 79-83 / 89-92 / 94-98 %, Q4_1 83-90 /
 * 92-97 / 98 %, Q5_0 75-81 / 89-91 / 92-95 %, Q4_K 80 / 97 / 97 %, Q5_K
 * 82-87 / 93-99 / 92-104 % (1024: alike 768); at 5632x2048 Q4_0 87 / 97 %
 * and Q4_K 88 / 97 % (256 / 768), at 2048x2048 Q4_0 85 / 95, Q4_K 85 / 99,
 * Q5_0 78 / 93. In its slow minutes (probe 46-53) all 92-98 %, alike. The
 * four-token walks at 5632x2048 (4 tokens) lost with 768: 73-76 % against
 * 78-79. Intel's cores keep 256 for all: on a Sapphire Rapids class Xeon
 * the K-quants lost with every block further ahead (Q4_K, Q5_K 1 block
 * 81-84 %, 2 72-78 %, 3 70-75 %; see QI_AHEAD_Q2K), and 768 was not
 * measured there for the others.
 */
#define QI_AHEAD 768
#define QI_AHEAD_NEAR 256
/*
 * Q2_K, Q3_K: blocks ahead. On Zen 5, 11008x4096, 2 threads, paired with
 * the probe, two rounds (each block's lines asked for at once): Q2_K 1
 * block 76-83 %, 2 93-98 %, 3 110-114 %, 4 95-97 %, 6 104-106 %; Q3_K 1
 * 69-72 %, 2 77-78 %, 3 74-89 %, 4 77-88 %, 6 69-73 %. Q4_K and Q5_K at
 * 1, 2 or 3 blocks: no difference above the noise (76-99 %). On a
 * Sapphire Rapids class Xeon, the lines asked for over the block's work
 * (qi_prefetch_part), three rounds, 11008x4096 / 5632x2048: Q3_K 1 block
 * 70-85 / 66-80 %, 2 69-73 / 65-67 %, 3 65-68 / 63-65 %; Q2_K 1, 2 and 3
 * alike (71-88 %); Q4_K, Q5_K 1 block 81-84 %, 2 72-78 %, 3 70-75 %.
 * With the faster blocks of q23_isum, three rounds alternated at
 * 11008x4096: 1 block Q2_K 82-84 %, Q3_K 85-87 %; 2 blocks 78-80 % both;
 * 3 and 4 lower still. So Intel's cores take 1 block, AMD's these.
 * After the walks' sums went to registers (qi_walk), Zen 5 again, Q3_K
 * at 11008x4096, alternated, where the probe read 66-76 GB/s: 2 blocks
 * 60-76 %, 3 81-84 %, 4 86-90 %, 6 93-94 %; where it read 46-52: 2 90 %,
 * 3 94 %, 4 91-94 %. So Q3_K takes 6. Since their prefetch went into
 * L2 on AMD's cores (qi_prefetch_part_to), Q2_K takes 4.
 */
#define QI_AHEAD_Q2K 4
#define QI_AHEAD_Q3K 6
/*
 * Q8_0 (544 bytes a group block, twice the nibble types'): 4 blocks a
 * step, 12 ahead for one token (4 until the sums went to registers,
 * below). Zen 5 EPYC, 2 threads, npu-kbench --type
 * q8_0, paired with the probe, four rounds alternated at 11008x4096 and
 * 4096x11008 (slow and fast minutes both): 4 a step, 4 ahead 91-94 % in
 * all eight; 2 a step, 8 ahead (the nibble types' distances in elements)
 * 87-94 %; 2 a step, 4 ahead 83-94 %. Before, Q8_0 was walked as stored
 * (8 rows at a time): 78-86 % in the same minutes. With the sums in
 * registers (qi_walk), 12 ahead: at 11008x4096, 4096x11008 and 5632x2048,
 * 4 / 8 / 12 / 16 blocks ahead taking turns, where the probe read 67-77
 * GB/s: 84-97 / 90-95 / 91-100 / 89-92 %; where it read 49-53: 94-97 /
 * 92-95 / 91-94 / 90-94 %.
 *
 * The four-token walks take one stream (qi_streams) and 8 blocks ahead:
 * at 5632x2048, 4 tokens, two rounds, one stream 8 ahead 85-86 %, 12
 * ahead 77-86 %, two streams 78-80 %, four 66-74 % (the stored layout's
 * four-token kernel 89-92 %); at 8 tokens 30-34 GB/s against 29-30.
 */
#define QI_STEP_Q8 4
#define QI_AHEAD_Q8 12
#define QI_AHEAD_Q8_TOKENS 8

/*
 * Q6_K (3360 bytes a group block, 53 lines) takes one stream and 6 blocks
 * ahead in every walk, and asks for its block ahead a sixteenth with each
 * run of three vectors (q6k_block_tokens), where the other K-quants ask
 * a quarter at a time. Zen 5, 2 threads, npu-kbench --type q6_k paired
 * with the probe, alternated with the stored layout's kernels (group_q6_k,
 * 8 rows at a time, the next group asked for in order), slow and fast
 * minutes both, two to six rounds: 11008x4096 90-97 % against 83-91 %,
 * 4096x11008 93-97 against 80-91, 4096x4096 96 against 87-89, 32000x2048
 * 85-96 against 90-100 (even); two tokens 88-93 against 86-89, four 90-92 against
 * 80-83. A quarter at a time, 4 ahead: 86-90 % at 11008x4096 and at
 * 32000x2048; a sixteenth, 2 or 4 ahead: 87-96 %. Four streams in the
 * walks of 2 to 4 tokens (as the other K-quants): 65-80 %. From cache
 * (256x4096 --cache) 130-137 GB/s against 100-103 for one token, 101
 * against 80 for two, 67 against 55 for four.
 */
#define QI_AHEAD_Q6K 6

/*
 * Part i of n of the lines [0, lines) at pf into L1 (into L2 where l2,
 * below). A K-quant group block is 16 rows' blocks of 256 (Q4_K: 36
 * lines); its block ahead is asked for
 * a part with each part of its own work, not all at once before it: a
 * burst of 36 requests fills the core's line fill buffers and the loads
 * of the block at hand wait behind them. Sapphire Rapids class Xeon, 2
 * threads, 11008x4096, paired with the probe, two rounds alternated: Q4_K
 * 87-88 % against 78-79 %, Q5_K 85-88 against 69-73, Q3_K 66-67 against
 * 58-60, Q2_K 76-77 against 69-76. The prefetch is an asm statement
 * that the compiler keeps in its place among the loads: _mm_prefetch's
 * parts, once the block's loops were unrolled, were all scheduled at the
 * block's start, a burst again (Q2_K 83-84 % and Q3_K 82-86 % against
 * 76-88 % and 88-91 %, three rounds alternated at 11008x4096).
 *
 * l2: the same into L2 (prefetcht1): Q2_K and Q3_K on AMD's cores, whose
 * blocks are the most work a byte. Zen 5, 2 threads, Q2_K 11008x4096,
 * paired with the probe, alternated with L1 at 3 blocks ahead: L2 at 3
 * blocks 76-88 % against 72-80 % (ten rounds), at 4 blocks 73-94 against
 * 72-82 (ten rounds), at 2 75-85, at 6 77-89, at 12 74-76; L2 at 4 and L1
 * for the next block as well 71-81 %. Q3_K (6 blocks ahead) 85-94 %
 * against 81-91 (four rounds).
 */
VNNI_INLINE void qi_prefetch_part_to(const char *pf, int lines, int i, int n, bool l2)
{
        for (int c = i * lines / n; c < (i + 1) * lines / n; c++)
                if (l2)
                        __asm__ volatile("prefetcht1 %0" : : "m"(pf[64 * c]) : "memory");
                else
                        __asm__ volatile("prefetcht0 %0" : : "m"(pf[64 * c]) : "memory");
}

VNNI_INLINE void qi_prefetch_part(const char *pf, int lines, int i, int n)
{
        qi_prefetch_part_to(pf, lines, i, n, false);
}

/* Q2_K, Q3_K: blocks ahead of the one at hand their prefetch is (see QI_AHEAD_Q2K). */
static int qi_ahead_q23(const struct qi_layout *k)
{
        if (__builtin_cpu_is("intel"))
                return 1;
        return k->qh ? QI_AHEAD_Q3K : QI_AHEAD_Q2K;
}

/* Blocks of a group a walk takes before the next group's. */
static inline int qi_step(const struct qi_layout *k)
{
        return k->bits == 8 ? QI_STEP_Q8 : MAX(1, QI_STEP / k->be);
}

/* Blocks ahead of the one at hand a group is prefetched, in a walk of one token or of several. */
static inline int qi_ahead(const struct qi_layout *k, bool tokens)
{
        if (k->bits == 8)
                return tokens ? QI_AHEAD_Q8_TOKENS : QI_AHEAD_Q8;
        /* Q2_K, Q3_K: their own distance (their more work a byte wants the data further ahead) */
        if (k->bits == 2)
                return qi_ahead_q23(k);
        if (k->qh_words)
                return QI_AHEAD_Q6K;
        return (tokens || __builtin_cpu_is("intel") ? QI_AHEAD_NEAR : QI_AHEAD) / k->be;
}

static int32_t qi_i32(const int8_t *p)
{
        int32_t v;
        memcpy(&v, p, 4);
        return v;
}

/* the activation bytes 4 j .. 4 j + 3 of the 32 at p in every lane, for vpdpbusd */
VNNI_INLINE __m512i qi_act(const int8_t *p, int j)
{
        return _mm512_set1_epi32(qi_i32(p + 4 * j));
}

typedef int32_t qi_i32_any __attribute__((may_alias, aligned(1)));

/*
 * vpdpbusd of u against the activation bytes 4 j .. 4 j + 3 at p, which
 * the instruction broadcasts from memory itself ({1to16}). With
 * _mm512_set1_epi32 GCC 12 loads them first, as a vpbroadcastd or, once
 * the registers run short, into general registers spilled to the stack
 * and broadcast from there: 64 more instructions a Q2_K group block
 * besides its 64 vpdpbusd. Zen 5, Q2_K (q23_isum_tokens), alternated with
 * the intrinsic: from cache (--rows 1024 --cols 4096 --cache, 2 threads)
 * 104-105 GB/s against 91-94, one thread (--rows 256 --threads 1) 60-61
 * against 56; from memory, paired with the probe, 4096x11008 88-102 %
 * against 76-79 (three rounds), 11008x4096 77-94 against 79-93 (seven,
 * even); the TinyLlama Q2_K decode step 75-76 % against 71-73 (three).
 * The other walks keep the intrinsic: there it came out even or behind
 * (Q5_K's four-token walk from cache 15-22 GB/s against 21-24).
 */
VNNI_INLINE __m512i qi_dot_act(__m512i acc, __m512i u, const int8_t *p, int j)
{
        __asm__("vpdpbusd %1%{1to16%}, %2, %0" : "+v"(acc) : "m"(*(const qi_i32_any *)(p + 4 * j)), "v"(u));
        return acc;
}

/*
 * The 4-bit types without a fifth bit (Q4_0, Q4_1, Q4_K) keep their high
 * nibbles in place, 16 times their value, where a shift and an and moved
 * them down: one and-not a vector. The sums of their products are then 16
 * times the sums (exact int32: at most 8 x 4 x 240 x 128 a sum) and
 * qi_high_sum shifts them back, so the results are the same bits. From
 * cache (as qi_walk's figures, the sums in registers both), two rounds:
 * Q4_0 150-154 GB/s against 145-146, Q4_1 169-173 against 167-168, Q4_K
 * 142-143 against 139-142.
 *
 * Tried with it and not kept: each block's 32 activation bytes loaded once
 * and each dword put in every lane by a vpermd, where a broadcast load
 * each feeds vpdpbusd: a standalone loop of the Q4_0 block from L1 took
 * 8.2 cycles a block against 10.1, but in the walks (same rounds) Q4_0,
 * Q4_1, Q5_0 gained 1-5 %, the K-quants nothing, Q8_0 lost 1-3 %, Q2_K
 * 7 %, Q3_K 5 %.
 */
VNNI_INLINE bool qi_high_x16(const struct qi_layout *k)
{
        return k->bits == 4 && !k->qh;
}

/* vector m's low nibbles and its high ones (in place where qi_high_x16) */
VNNI_INLINE void qi_walk_nibbles(const uint8_t *x, const struct qi_layout *k, int m, __m512i *lo, __m512i *hi)
{
        if (qi_high_x16(k)) {
                const __m512i n = _mm512_loadu_si512(x + 64 * m), m4 = _mm512_set1_epi8(15);
                *lo = _mm512_and_si512(n, m4);
                *hi = _mm512_andnot_si512(m4, n);
                return;
        }
        qi_nibbles(x, k, m, lo, hi);
}

/* the sum of a vector's high nibbles' products, as the nibbles are */
VNNI_INLINE __m512i qi_high_sum(const struct qi_layout *k, __m512i s)
{
        return qi_high_x16(k) ? _mm512_srai_epi32(s, 4) : s;
}

/*
 * One group block at x against the activations qb (scale da, sum asum,
 * Q8_1's s: sa): acc's lanes are the rows'.
 */
VNNI_INLINE __m512 qi_block(const uint8_t *x, const struct qi_layout *k, const int8_t *qb, float da, int32_t asum,
                            float sa, __m512 acc)
{
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();

        for (int m = 0; m < 4; m++) {
                __m512i lo, hi;
                qi_walk_nibbles(x, k, m, &lo, &hi);
                s0 = _mm512_dpbusd_epi32(s0, lo, qi_act(qb, m));
                s1 = _mm512_dpbusd_epi32(s1, hi, qi_act(qb, 4 + m));
        }
        __m512i isum = _mm512_add_epi32(s0, qi_high_sum(k, s1));
        if (k->off)
                isum = _mm512_sub_epi32(isum, _mm512_set1_epi32(k->off * asum));
        acc = _mm512_fmadd_ps(_mm512_mul_ps(qi_f16x16(x + k->d), _mm512_set1_ps(da)), _mm512_cvtepi32_ps(isum), acc);
        if (k->m)
                acc = _mm512_fmadd_ps(qi_f16x16(x + k->m), _mm512_set1_ps(sa), acc);
        return acc;
}

/*
 * Q4_K, Q5_K: one group block at x against the activations qb (scale da;
 * mp: the sums of their sub-blocks in the pairs of qk_pairs): acc's lanes
 * are the rows'. The scales and mins come out of the rows' lanes
 * (qi_k4_scales).
 */
VNNI_INLINE __m512 qk_block(const uint8_t *x, const struct qi_layout *k, const int8_t *qb, float da,
                            const int32_t *mp, __m512 acc, const char *pf, int lines)
{
        const __m512i pair = _mm512_set1_epi32(0x003f003f);
        __m512i isum = _mm512_setzero_si512(), sc[2], m[2];

        qi_k4_scales(x, k, &sc[0], &m[0], &sc[1], &m[1]);
        for (int ch = 0; ch < 4; ch++) {
                __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
                qi_prefetch_part(pf, lines, ch, 4);
                for (int n = 0; n < 8; n++) {
                        __m512i lo, hi;
                        qi_walk_nibbles(x, k, 8 * ch + n, &lo, &hi);
                        s0 = _mm512_dpbusd_epi32(s0, lo, qi_act(qb + 64 * ch, n));
                        s1 = _mm512_dpbusd_epi32(s1, hi, qi_act(qb + 64 * ch + 32, n));
                }
                /* sub-blocks 2 ch, 2 ch + 1: bytes 2 ch, 2 ch + 1 of sc[0] and sc[1] */
                isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(s0, qi_lane_byte(sc, 2 * ch, 63)));
                isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(qi_high_sum(k, s1), qi_lane_byte(sc, 2 * ch + 1, 63)));
        }
        /* M: the mins as int16 pairs (m0, m2), (m1, m3), (m4, m6), (m5, m7) */
        __m512i M = _mm512_setzero_si512();
        for (int p = 0; p < 4; p++) {
                const __m512i v = p % 2 ? _mm512_srli_epi32(m[p / 2], 8) : m[p / 2];
                M = _mm512_dpwssd_epi32(M, _mm512_and_si512(v, pair), _mm512_set1_epi32(mp[p]));
        }
        const __m512 vda = _mm512_set1_ps(da);
        acc = _mm512_fmadd_ps(_mm512_mul_ps(qi_f16x16(x + k->d), vda), _mm512_cvtepi32_ps(isum), acc);
        return _mm512_fnmadd_ps(_mm512_mul_ps(qi_f16x16(x + k->m), vda), _mm512_cvtepi32_ps(M), acc);
}

/*
 * A few tokens (a batch of decoding sequences) walk the groups QI_TOKENS
 * at a time: each block's nibbles and scales unpacked once, then met by
 * each token's activations, where a walk per token unpacked them per
 * token. Zen 5, 2 threads, npu-kbench --rows 5632 --cols 2048 --tokens M,
 * GB/s of weights, a walk per token (or the GEMM from 12 K-quant tokens, 7
 * of the others) / four tokens a walk: Q4_K at 2 tokens 27.6 / 37.4-46.5,
 * at 4 28.3 / 55-57, at 8 18.4 / 32.4-32.7, at 12 11.1 / 23.7; Q4_0 at 4
 * 27.9 / 37.4-39.3, at 8 19.8 / 30.2. Eight tokens a walk spill registers:
 * Q4_K at 8 tokens 19.9, at 16 10.5 against 31.8 and 18.1. TinyLlama
 * shape, npu-bench --task batch-decode, two rounds alternated: Q4_K_M
 * steps of 8 sequences 41.3-42.5 -> 30.7-35.2 ms, of 16 82.9-85.6 ->
 * 56.2-56.9; Q4_0 of 8 37.5-39.2 -> 24.5-25.9 ms, of 16 54.8-61.5 ->
 * 46.7-47.8. Q2_K and Q3_K the same (q23_block_tokens): Q3_K at 4 tokens
 * 19.4 / 32.1, at 8 10.9 / 18.1; Q2_K at 4 26.8 / 30.2, at 8 13.5 / 17.8.
 */
#define QI_TOKENS 4

/*
 * qi_block for NT (<= QI_TOKENS) tokens at once (token t's activations
 * qb[t], scale da[t], sum asum[t], Q8_1's s sa[t], sums acc[t]): each
 * vector of nibbles unpacked once for the NT tokens, each token's numbers
 * qi_block's.
 */
VNNI_INLINE void qi_block_tokens(const uint8_t *x, const struct qi_layout *k, const int8_t *const *qb,
                                 const float *da, const int32_t *asum, const float *sa, __m512 *acc, const int NT)
{
        __m512i s0[QI_TOKENS], s1[QI_TOKENS];

        for (int t = 0; t < NT; t++)
                s0[t] = s1[t] = _mm512_setzero_si512();
        for (int m = 0; m < 4; m++) {
                __m512i lo, hi;
                qi_walk_nibbles(x, k, m, &lo, &hi);
                for (int t = 0; t < NT; t++) {
                        s0[t] = _mm512_dpbusd_epi32(s0[t], lo, qi_act(qb[t], m));
                        s1[t] = _mm512_dpbusd_epi32(s1[t], hi, qi_act(qb[t], 4 + m));
                }
        }
        const __m512 d16 = qi_f16x16(x + k->d), m16 = k->m ? qi_f16x16(x + k->m) : _mm512_setzero_ps();
        for (int t = 0; t < NT; t++) {
                __m512i isum = _mm512_add_epi32(s0[t], qi_high_sum(k, s1[t]));
                if (k->off)
                        isum = _mm512_sub_epi32(isum, _mm512_set1_epi32(k->off * asum[t]));
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d16, _mm512_set1_ps(da[t])), _mm512_cvtepi32_ps(isum), acc[t]);
                if (k->m)
                        acc[t] = _mm512_fmadd_ps(m16, _mm512_set1_ps(sa[t]), acc[t]);
        }
}

/*
 * Q4_K, Q5_K: qk_block for NT (<= QI_TOKENS) tokens at once, token t's
 * activations qb[t], scale da[t], pairs mp[t], sums acc[t]: the block's
 * scales and each vector of nibbles are unpacked once for the NT tokens.
 * Each token's numbers are qk_block's, operation for operation after the
 * exact integer sums.
 */
VNNI_INLINE void qk_block_tokens(const uint8_t *x, const struct qi_layout *k, const int8_t *const *qb,
                                 const float *da, const int32_t (*mp)[8], __m512 *acc, const char *pf, int lines,
                                 const int NT)
{
        const __m512i pair = _mm512_set1_epi32(0x003f003f);
        __m512i isum[QI_TOKENS], M[QI_TOKENS], sc[2], m[2];

        for (int t = 0; t < NT; t++)
                isum[t] = M[t] = _mm512_setzero_si512();
        qi_k4_scales(x, k, &sc[0], &m[0], &sc[1], &m[1]);
        for (int ch = 0; ch < 4; ch++) {
                __m512i s0[QI_TOKENS], s1[QI_TOKENS];
                for (int t = 0; t < NT; t++)
                        s0[t] = s1[t] = _mm512_setzero_si512();
                qi_prefetch_part(pf, lines, ch, 4);
                for (int n = 0; n < 8; n++) {
                        __m512i lo, hi;
                        qi_walk_nibbles(x, k, 8 * ch + n, &lo, &hi);
                        for (int t = 0; t < NT; t++) {
                                s0[t] = _mm512_dpbusd_epi32(s0[t], lo, qi_act(qb[t] + 64 * ch, n));
                                s1[t] = _mm512_dpbusd_epi32(s1[t], hi, qi_act(qb[t] + 64 * ch + 32, n));
                        }
                }
                const __m512i sl = qi_lane_byte(sc, 2 * ch, 63), sh = qi_lane_byte(sc, 2 * ch + 1, 63);
                for (int t = 0; t < NT; t++)
                        isum[t] = _mm512_add_epi32(_mm512_add_epi32(isum[t], _mm512_mullo_epi32(s0[t], sl)),
                                                   _mm512_mullo_epi32(qi_high_sum(k, s1[t]), sh));
        }
        for (int p = 0; p < 4; p++) {
                const __m512i v = _mm512_and_si512(p % 2 ? _mm512_srli_epi32(m[p / 2], 8) : m[p / 2], pair);
                for (int t = 0; t < NT; t++)
                        M[t] = _mm512_dpwssd_epi32(M[t], v, _mm512_set1_epi32(mp[t][p]));
        }
        const __m512 d16 = qi_f16x16(x + k->d), m16 = qi_f16x16(x + k->m);
        for (int t = 0; t < NT; t++) {
                const __m512 vda = _mm512_set1_ps(da[t]);
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d16, vda), _mm512_cvtepi32_ps(isum[t]), acc[t]);
                acc[t] = _mm512_fnmadd_ps(_mm512_mul_ps(m16, vda), _mm512_cvtepi32_ps(M[t]), acc[t]);
        }
}

/*
 * Q3_K: bits 2 s, 2 s + 1 of vector v of a group block, plus 4 under its
 * hmask mask, as 4^s (q + 4 h) in their bytes for s < 3 (at most 7 x 16:
 * still u8), without a shift: (z & 3 << 2 s) | (4 << 2 s under the mask)
 * is one vpternlogd. s 3 is shifted down (qi_crumbs).
 */
VNNI_INLINE __m512i q3k_crumbs_in_place(__m512i z, const uint8_t *x, const struct qi_layout *k, int v, int s)
{
        uint64_t m;

        if (s == 3)
                return qi_crumbs_of(z, x, k, v, s);
        memcpy(&m, x + k->qh + 8 * (4 * v + s), 8);
        return _mm512_ternarylogic_epi32(z, _mm512_set1_epi8((char)(3 << 2 * s)),
                                         _mm512_maskz_mov_epi8(_cvtu64_mask64(m), _mm512_set1_epi8((char)(4 << 2 * s))),
                                         0xea);
}

/*
 * Q2_K, Q3_K: the products of one group block at x with NT (<=
 * QI_TOKENS) tokens' activations qb[t], each sub-block's sum times its
 * scale, token t's into isum[t] (each vector of q unpacked once for the
 * NT tokens; exact integers, whatever NT). The q stay where they are in
 * their bytes as 4^s q (Q2_K: under the mask 3 << 2 s, at most 192; Q3_K
 * for s < 3: q3k_crumbs_in_place, its s 3 shifted down), and the sums
 * are shifted back. Q3_K's sums are of q + 4 h (the offset 4 comes out
 * after, through the activations' sums). The sums of s and s + 1 (sub-
 * blocks j and j + 2) fit int16 (16 x 7 x 128), so they are packed as a
 * pair and one vpdpwssd against the scales' pair scp[p] (q2k_block,
 * q3k_block) scales both. Where Q3_K took a vpmulld (two uops) a sum and
 * a shift a vector of q: one thread from L2 (npu-kbench --type q3_k
 * --rows 256 --cols 4096 --threads 1 --bytes 1) 26.5 GB/s against 22.
 * Each half's eight vectors of q are loaded once for their four pairs of
 * bits (GCC had loaded each again for every pair): one thread from cache
 * (--threads 1 --cache), Zen 5, four rounds alternated, Q2_K 59.7-60.5
 * GB/s against 48.0-48.8, Q3_K 40.3-41.7 against 36.7-37.2; four tokens
 * (q23_isum_tokens) 18.5-19.0 against 18.1-18.4 and 19.4-19.8 against
 * 18.7. From memory (11008x4096, 2 threads, paired with the probe, six
 * rounds alternated) Q2_K 74-86 % against 73-86 %, Q3_K 79-91 against
 * 84-93: even; Q2_K 5 or 8 blocks ahead instead of 3, 72-80 / 66-81 %.
 */
VNNI_INLINE void q23_isum_tokens(const uint8_t *x, const struct qi_layout *k, const int8_t *const *qb,
                                 const __m512i *scp, const char *pf, int lines, __m512i *isum, const int NT)
{
        const __m512i low16 = _mm512_set1_epi32(0xffff);
        const bool l2 = !__builtin_cpu_is("intel"); /* once a block: the prefetches' memory clobber would reload it */

        for (int t = 0; t < NT; t++)
                isum[t] = _mm512_setzero_si512();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
                /* the half's eight vectors of q, loaded once for their four pairs of bits */
                __m512i z[8];
#pragma GCC unroll 8
                for (int n = 0; n < 8; n++)
                        z[n] = _mm512_loadu_si512(x + 64 * (8 * h + n));
#pragma GCC unroll 2
                for (int s2 = 0; s2 < 4; s2 += 2) {
                        __m512i sum[QI_TOKENS][2][2];
#pragma GCC unroll 2
                        for (int e = 0; e < 2; e++) {
                                const int s = s2 + e, shift = k->qh && s == 3 ? 0 : 2 * s;
                                const __m512i at = _mm512_set1_epi8((char)(3 << 2 * s));
                                qi_prefetch_part_to(pf, lines, 4 * h + s, 8, l2);
                                for (int t = 0; t < NT; t++)
                                        sum[t][e][0] = sum[t][e][1] = _mm512_setzero_si512();
#pragma GCC unroll 8
                                for (int n = 0; n < 8; n++) {
                                        const int v = 8 * h + n;
                                        const __m512i u = k->qh ? q3k_crumbs_in_place(z[n], x, k, v, s)
                                                                : _mm512_and_si512(z[n], at);
                                        for (int t = 0; t < NT; t++)
                                                sum[t][e][n / 4] =
                                                        qi_dot_act(sum[t][e][n / 4], u, qb[t] + 128 * h + 32 * s, n);
                                }
                                /*
                                 * sub-blocks 8 h + 2 s and the next, 4^shift times: s2's
                                 * shifted down into the low halves, s2 + 1's into the high
                                 */
                                for (int t = 0; t < NT; t++)
                                        for (int i = 0; i < 2; i++) {
                                                if (e == 0 && shift)
                                                        sum[t][e][i] = _mm512_srai_epi32(sum[t][e][i], (unsigned)shift);
                                                else if (e == 1)
                                                        sum[t][e][i] = _mm512_slli_epi32(sum[t][e][i], 16 - (unsigned)shift);
                                        }
                        }
                        /* 0xe4: the third operand's bits pick the first's, the others the second's */
                        for (int t = 0; t < NT; t++)
                                for (int i = 0; i < 2; i++)
                                        isum[t] = _mm512_dpwssd_epi32(
                                                isum[t], _mm512_ternarylogic_epi32(sum[t][0][i], sum[t][1][i], low16, 0xe4),
                                                scp[2 * (2 * h + s2 / 2) + i]);
                }
        }
}

/* q23_isum_tokens for one token */
VNNI_INLINE __m512i q23_isum(const uint8_t *x, const struct qi_layout *k, const int8_t *qb, const __m512i *scp,
                             const char *pf, int lines)
{
        __m512i isum;

        q23_isum_tokens(x, k, &qb, scp, pf, lines, &isum, 1);
        return isum;
}

/*
 * Q2_K: one group block at x against the activations qb (scale da; sp:
 * their sums of 16 in the pairs of qk_pairs): acc's lanes are the rows'.
 * A row's scales are bytes 0-15 of four vectors, 4 a lane: scale j the
 * low nibble of byte j, min j the high one.
 */
VNNI_INLINE __m512 q2k_block(const uint8_t *x, const struct qi_layout *k, const int8_t *qb, float da,
                             const int32_t *sp, __m512 acc, const char *pf, int lines)
{
        const __m512i pair = _mm512_set1_epi32(0x000f000f);
        __m512i v[4], scp[8], M = _mm512_setzero_si512();

        for (int t = 0; t < 4; t++)
                v[t] = _mm512_loadu_si512(x + k->sc + 64 * t);
        /* the scales and the mins as int16 pairs (4t, 4t + 2), (4t + 1, 4t + 3) */
        for (int p = 0; p < 8; p++) {
                scp[p] = _mm512_and_si512(p % 2 ? _mm512_srli_epi32(v[p / 2], 8) : v[p / 2], pair);
                M = _mm512_dpwssd_epi32(M, _mm512_and_si512(_mm512_srli_epi32(v[p / 2], p % 2 ? 12 : 4), pair),
                                        _mm512_set1_epi32(sp[p]));
        }
        const __m512i isum = q23_isum(x, k, qb, scp, pf, lines);
        const __m512 vda = _mm512_set1_ps(da);
        acc = _mm512_fmadd_ps(_mm512_mul_ps(qi_f16x16(x + k->d), vda), _mm512_cvtepi32_ps(isum), acc);
        return _mm512_fnmadd_ps(_mm512_mul_ps(qi_f16x16(x + k->m), vda), _mm512_cvtepi32_ps(M), acc);
}

/*
 * Q3_K: one group block at x against the activations qb (scale da; sp as
 * q2k_block's): acc's lanes are the rows'. The offset 4 of q comes out
 * through the activations' sums: isum = sum(sc q a) - 4 sum(sc bsum).
 * The scales, less their 32, as int16 pairs scp[p]: (sc 4t, sc 4t + 2)
 * for p = 2 t, (sc 4t + 1, sc 4t + 3) for p = 2 t + 1; the same pairs
 * meet the sums of the activations (sp) and of the products (q23_isum).
 */
VNNI_INLINE __m512 q3k_block(const uint8_t *x, const struct qi_layout *k, const int8_t *qb, float da,
                             const int32_t *sp, __m512 acc, const char *pf, int lines)
{
        const __m512i pair = _mm512_set1_epi32(0x003f003f), bias = _mm512_set1_epi32(0x00200020);
        __m512i v[4], scp[8], off = _mm512_setzero_si512();

        qi_q3k_scales(x, k, v);
        for (int p = 0; p < 8; p++) {
                const __m512i sc = p % 2 ? _mm512_srli_epi32(v[p / 2], 8) : v[p / 2];
                scp[p] = _mm512_sub_epi16(_mm512_and_si512(sc, pair), bias);
                off = _mm512_dpwssd_epi32(off, scp[p], _mm512_set1_epi32(sp[p]));
        }
        const __m512i isum = _mm512_sub_epi32(q23_isum(x, k, qb, scp, pf, lines), _mm512_slli_epi32(off, 2));
        return _mm512_fmadd_ps(_mm512_mul_ps(qi_f16x16(x + k->d), _mm512_set1_ps(da)), _mm512_cvtepi32_ps(isum), acc);
}

/* q2k_block and q3k_block for NT tokens at once (qk_block_tokens' arguments) */
VNNI_INLINE void q23_block_tokens(const uint8_t *x, const struct qi_layout *k, const int8_t *const *qb,
                                  const float *da, const int32_t (*sp)[8], __m512 *acc, const char *pf, int lines,
                                  const int NT)
{
        __m512i v[4], scp[8], isum[QI_TOKENS], c[QI_TOKENS];

        for (int t = 0; t < NT; t++)
                c[t] = _mm512_setzero_si512();
        if (k->qh) {
                /* Q3_K: the scales less 32; c the offset's sum(sc bsum) */
                const __m512i pair = _mm512_set1_epi32(0x003f003f), bias = _mm512_set1_epi32(0x00200020);
                qi_q3k_scales(x, k, v);
                for (int p = 0; p < 8; p++) {
                        const __m512i sc = p % 2 ? _mm512_srli_epi32(v[p / 2], 8) : v[p / 2];
                        scp[p] = _mm512_sub_epi16(_mm512_and_si512(sc, pair), bias);
                        for (int t = 0; t < NT; t++)
                                c[t] = _mm512_dpwssd_epi32(c[t], scp[p], _mm512_set1_epi32(sp[t][p]));
                }
        } else {
                /* Q2_K: the scales; c the mins' M */
                const __m512i pair = _mm512_set1_epi32(0x000f000f);
                for (int i = 0; i < 4; i++)
                        v[i] = _mm512_loadu_si512(x + k->sc + 64 * i);
                for (int p = 0; p < 8; p++) {
                        scp[p] = _mm512_and_si512(p % 2 ? _mm512_srli_epi32(v[p / 2], 8) : v[p / 2], pair);
                        const __m512i mins = _mm512_and_si512(_mm512_srli_epi32(v[p / 2], p % 2 ? 12 : 4), pair);
                        for (int t = 0; t < NT; t++)
                                c[t] = _mm512_dpwssd_epi32(c[t], mins, _mm512_set1_epi32(sp[t][p]));
                }
        }
        q23_isum_tokens(x, k, qb, scp, pf, lines, isum, NT);
        const __m512 d16 = qi_f16x16(x + k->d), m16 = k->qh ? _mm512_setzero_ps() : qi_f16x16(x + k->m);
        for (int t = 0; t < NT; t++) {
                const __m512 vda = _mm512_set1_ps(da[t]);
                if (k->qh) {
                        const __m512i is = _mm512_sub_epi32(isum[t], _mm512_slli_epi32(c[t], 2));
                        acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d16, vda), _mm512_cvtepi32_ps(is), acc[t]);
                } else {
                        acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d16, vda), _mm512_cvtepi32_ps(isum[t]), acc[t]);
                        acc[t] = _mm512_fnmadd_ps(_mm512_mul_ps(m16, vda), _mm512_cvtepi32_ps(c[t]), acc[t]);
                }
        }
}

/*
 * Q6_K: one group block at x against NT tokens' activations qb[t] (scale
 * da[t]; sp[t]: their sums of 16 in the pairs of qk_pairs), into a[t]
 * (lanes: the rows). Each vector of ql gives its low and its high
 * nibbles, each topped by its two bits of qh (qi_q6k_run). The four
 * sums of a quad of m (sub-blocks 8 h + c, + 2, + 4, + 6) are each times their scale by vpmulld (|sum| <= 16 * 63 * 128: not
 * an int16); the offset 32 comes out through the activations' sums:
 * isum = sum(sc q a) - 32 sum(sc bsum), exact, then the definition's
 * float step.
 */
VNNI_INLINE void q6k_block_tokens(const uint8_t *x, const struct qi_layout *k, const int8_t *const *qb,
                                  const float *da, const int32_t (*sp)[8], __m512 *acc, const char *pf, int lines,
                                  const int NT)
{
        __m512i isum[QI_TOKENS], off[QI_TOKENS], scv[4];

        for (int i = 0; i < 4; i++)
                scv[i] = _mm512_loadu_si512(x + k->sc + 64 * i);
        for (int t = 0; t < NT; t++)
                off[t] = _mm512_setzero_si512();
        /* the scales as int16 pairs (sc 4s, sc 4s + 2) and (sc 4s + 1, sc 4s + 3), signed */
        for (int p = 0; p < 8; p++) {
                const __m512i v = scv[p / 2];
                const __m512i pr = _mm512_srai_epi16(p % 2 ? v : _mm512_slli_epi16(v, 8), 8);
                for (int t = 0; t < NT; t++)
                        off[t] = _mm512_dpwssd_epi32(off[t], pr, _mm512_set1_epi32(sp[t][p]));
        }
        for (int t = 0; t < NT; t++)
                isum[t] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(off[t], 5));
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++)
#pragma GCC unroll 2
                for (int c = 0; c < 2; c++) {
                        __m512i sum[QI_TOKENS][4];
                        for (int t = 0; t < NT; t++)
                                for (int j = 0; j < 4; j++)
                                        sum[t][j] = _mm512_setzero_si512();
#pragma GCC unroll 4
                        for (int m = 4 * c; m < 4 * c + 4; m++) {
                                /* a sixteenth of the block ahead with each run (QI_AHEAD_Q6K) */
                                qi_prefetch_part(pf, lines, 8 * h + m, 16);
                                __m512i u[4];
                                qi_q6k_run(x, k, 8 * h + m, u);
                                for (int t = 0; t < NT; t++)
                                        for (int j = 0; j < 4; j++)
                                                sum[t][j] = _mm512_dpbusd_epi32(
                                                        sum[t][j], u[j], _mm512_set1_epi32(qi_i32(qb[t] + 128 * h + 32 * j + 4 * m)));
                        }
#pragma GCC unroll 4
                        for (int j = 0; j < 4; j++) {
                                const int sb = 8 * h + c + 2 * j;
                                const __m512i sc = qi_q6k_scale(scv, sb);
                                for (int t = 0; t < NT; t++)
                                        isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(sum[t][j], sc));
                        }
                }
        const __m512 d16 = qi_f16x16(x + k->d);
        for (int t = 0; t < NT; t++)
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d16, _mm512_set1_ps(da[t])), _mm512_cvtepi32_ps(isum[t]), acc[t]);
}

static inline int32_t qi_pair16(int32_t lo, int32_t hi)
{
        return (int32_t)((uint32_t)(uint16_t)lo | (uint32_t)(uint16_t)hi << 16);
}

/*
 * Q8_K's sums of 16 of a block (bs) as the int16 pairs the blocks meet
 * the mins or scales with: Q4_K, Q5_K those of 32 of sub-blocks (0, 2),
 * (1, 3), (4, 6), (5, 7); Q2_K, Q3_K, Q6_K those of 16 of (4t, 4t + 2),
 * (4t + 1, 4t + 3) for t < 4.
 */
static inline void qk_pairs(const struct qi_layout *k, const int16_t *bs, int32_t *mp)
{
        int32_t s[16];

        if (k->bits == 2 || k->qh_words) {
                for (int p = 0; p < 8; p++)
                        mp[p] = qi_pair16(bs[4 * (p / 2) + p % 2], bs[4 * (p / 2) + p % 2 + 2]);
                return;
        }
        for (int j = 0; j < 8; j++)
                s[j] = bs[2 * j] + bs[2 * j + 1];
        for (int p = 0; p < 4; p++) {
                const int j = 4 * (p / 2) + p % 2;
                mp[p] = qi_pair16(s[j], s[j + 2]);
        }
}

/*
 * Groups walked together, for a step of n_tok tokens. Two on Intel's
 * cores: Sapphire Rapids class Xeon, 2 threads, 11008x4096, paired with
 * the probe, three rounds alternated, the prefetch spread over the block's
 * work (qi_prefetch_part): Q4_K 86-94 % against 81-84 % with four, Q5_K
 * 88-89 against 83-85, Q3_K 70-71 and Q4_0 93-97 alike.
 *
 * On AMD's, one token: four for the blocks of 32 (Q4_0 to Q8_0), one for
 * the K-quants; the four-token walks four (Q8_0 and Q6_K one). Four were
 * measured first (see the top of the file: with each block's
 * lines asked for at once, two groups 55-62 %, four 78-94 %); with the
 * prefetch spread over the work since, one group a thread reads memory in
 * one sequential stream, and leads. Zen 5 EPYC, 2 threads, npu-kbench
 * paired with the probe, one group / four, two rounds alternated, in the
 * host's slow minutes (probe about 50 GB/s): Q2_K 93-95 / 71-73 %, Q3_K
 * 87-93 / 72-74 %, Q4_K 88-94 / 77-85 %, Q5_K 85-97 / 73-78 %, Q4_0 79-92
 * / 74-80 %, Q5_0 91-93 / 73-74 % (32000x2048, 11008x4096, 4096x11008);
 * in its fast ones (about 75) mostly ahead too (Q4_K 81-89 / 74-86 %, Q2_K
 * 80-86 / 72-77 %), a few behind (Q3_K 72 / 78-80 %, Q4_0 4096x11008 77
 * / 88 %). The TinyLlama Q4_K_M decode step (npu-bench, three rounds
 * alternated) 10.5-10.7 ms against 11.3-11.5. The four-token walks lose
 * with one (Q4_K 5632x2048 at 4 tokens 38-43 / 40-60 GB/s, at 8 24 / 34).
 * Measured again once the blocks had got faster (sums in registers, 768
 * elements ahead), on another host of the kind, where one stream of the
 * blocks of 32 read 60-68 % of the probe in its fast minutes (probe 60-70
 * GB/s) while the K-quants read 90-100: one group / four, alternated,
 * Q4_0 11008x4096 60-67 / 83-96 % (five rounds), 4096x11008 65 / 93,
 * 5632x2048 77-78 / 88-91, 2048x5632 64-65 / 91-92, 2048x2048 72-73 /
 * 85-87; Q4_1 62-65 / 83-93, Q5_0 61-64 / 80-98, Q8_0 64-68 / 81-84
 * (11008x4096); in its slow minutes (probe about 40) even (Q4_0 4096x11008
 * 87 / 84, Q8_0 79-82 / 75-87, Q5_1 84 / 81). The TinyLlama decode step,
 * npu-bench paired with the probe, three rounds: Q4_0 64-67 / 75-78 %,
 * Q8_0 66 / 80-83 %, Q4_K_M even (90-91 / 85-92). From cache the four
 * streams cost (Q4_0 256x4096, one thread 67 / 58 GB/s, 1024x2048 two
 * threads 114 / 93), which a model too large for the caches never sees.
 * With four, the K-quants lost (Q3_K 89 / 82-85 %, Q4_K 93-106 / 90-93,
 * Q6_K 88-94 / 65-70) and Q2_K came out even over five shapes (75-89 /
 * 72-86 %, the TinyLlama Q2_K file 73-78 / 69-79). Two streams of Q4_0
 * and Q8_0 fell between (72-77 %). The groups' sums are their own, so the
 * count changes no result.
 */
static int qi_streams(const struct qi_layout *k, int64_t n_tok)
{
        if (__builtin_cpu_is("intel"))
                return 2;
        /* one token: four for the blocks of 32, one for the K-quants */
        if (n_tok == 1)
                return k->be != QK_K ? QI_STREAMS_MAX : 1;
        /* Q8_0, Q6_K: one in the four-token walks too (QI_AHEAD_Q8_TOKENS, QI_AHEAD_Q6K) */
        return k->bits == 8 || k->qh_words ? 1 : QI_STREAMS_MAX;
}

/*
 * How many consecutive groups of a chunk's G each stream walks: the
 * K-quants' streams on Intel's cores each take a run of G / ns of them
 * (groups 0 and 1 one stream, 2 and 3 the other), where they took
 * neighbours (0 and 2, 1 and 3: two streams a group apart). Sapphire
 * Rapids class Xeon, 2 threads, npu-kbench paired, alternated: Q4_K
 * 5632x2048 86-92 % against 77-82 % (six rounds), 2048x5632 91-92
 * against 86-88, 4096x4096 and 11008x4096 alike (87-95 %); at 5632x2048
 * Q3_K +1 to +5 points, Q2_K +4, Q5_K -2 to +6; Q4_0 there lost (91-93
 * against 95-97 %), so the 32-element types keep the neighbours. In the
 * TinyLlama Q4_K_M decode (npu-bench, three rounds alternated) the ffn
 * gate and up matmul took 0.428-0.438 ms against 0.449-0.484. The sums
 * are each group's own, so the order changes no result.
 */
static int64_t qi_stream_run(const struct qi_layout *k, int64_t G, int ns)
{
        if (k->be == QK_K && ns > 1 && G % ns == 0 && __builtin_cpu_is("intel"))
                return G / ns;
        return 1;
}

/*
 * ng (<= QI_STREAMS_MAX) groups at g[], nb blocks each, against one
 * token's activations: acc[i] group i's rows; past a group's end, a
 * stream's next group is next_groups on from the one that follows it.
 * type is a constant (qi_walk_type), so each inlined copy holds only its
 * own blocks' code, with the layout folded in.
 *
 * The sums stay in registers (a) until the walk's end: acc is memory, and
 * the prefetches' asm (its memory clobber) made the compiler store and
 * reload it around every block, a chain of store-to-load forwarding and
 * fma from block to block. With one stream (ng a constant 1: a[0] is a
 * register) from cache, Zen 5, 2 threads, npu-kbench --rows 256 --cols
 * 4096 --cache, two rounds alternated: Q4_0 163-165 GB/s against 132-135,
 * Q5_0 143-147 against 120-122, Q8_0 232 against 217-220; the K-quants
 * (one store a block of 256) alike.
 */
VNNI_INLINE void qi_walk(const uint8_t *const *g, int ng, int64_t next_groups, int64_t nb, const enum ggml_type type,
                         const int8_t *q, const float *d, const float *s, const int32_t *asum, const int16_t *bsums, __m512 *acc)
{
        struct qi_layout kl;
        qi_layout_of(type, &kl);
        const struct qi_layout *k = &kl;
        const int lines = (int)DIV_ROUND_UP(k->bytes, 64), step = qi_step(k), ahead = qi_ahead(k, false);
        const int64_t next = next_groups * nb * (int64_t)k->bytes;
        int32_t mp[8] = { 0 };
        __m512 a[QI_STREAMS_MAX];

        for (int i = 0; i < ng; i++)
                a[i] = _mm512_setzero_ps();
        for (int64_t b0 = 0; b0 < nb; b0 += step) {
                if (k->be == QK_K)
                        qk_pairs(k, bsums + 16 * b0, mp);
                for (int i = 0; i < ng; i++)
                        for (int64_t b = b0; b < MIN(b0 + step, nb); b++) {
                                const uint8_t *x = g[i] + b * k->bytes;
                                const char *p = (const char *)x + ahead * k->bytes + (b + ahead >= nb ? next : 0);
                                if (k->be != QK_K) {
                                        /* a small block: its block ahead at once */
                                        qi_prefetch_part(p, lines, 0, 1);
                                        a[i] = qi_block(x, k, q + 32 * b, d[b], asum ? asum[b] : 0,
                                                        s ? s[b] : 0, a[i]);
                                } else if (k->qh_words) {
                                        const int8_t *qb = q + QK_K * b;
                                        q6k_block_tokens(x, k, &qb, &d[b], (const int32_t(*)[8])mp, &a[i], p, lines, 1);
                                } else if (k->bits == 2 && k->qh)
                                        a[i] = q3k_block(x, k, q + QK_K * b, d[b], mp, a[i], p, lines);
                                else if (k->bits == 2)
                                        a[i] = q2k_block(x, k, q + QK_K * b, d[b], mp, a[i], p, lines);
                                else
                                        a[i] = qk_block(x, k, q + QK_K * b, d[b], mp, a[i], p, lines);
                        }
        }
        for (int i = 0; i < ng; i++)
                acc[i] = a[i];
}

/*
 * qi_walk with w's type as a constant: each copy's layout folds into its
 * code, and the unrolled loops of a block have constant offsets, shifts
 * and prefetch parts. One thread from L2 (--rows 256 --cols 4096
 * --threads 1 --bytes 1): Q2_K 31-33 GB/s against 21, Q3_K 22 against
 * 17.7 (before q23_isum's pairs), Q4_K and Q5_K alike. One stream (AMD's
 * cores) has a copy of its own with ng the constant 1 (qi_walk's sums in
 * registers).
 */
static VNNI_FN void qi_walk_type(enum ggml_type type, const uint8_t *const *g, int ng, int64_t next_groups,
                                 int64_t nb, const int8_t *q, const float *d, const float *s, const int32_t *asum,
                                 const int16_t *bsums, __m512 *acc)
{
#if QI_ONE_COPY
        qi_walk(g, ng, next_groups, nb, type, q, d, s, asum, bsums, acc);
#else
        switch (type) {
#define QI_WALK_CASE(t) \
        case t: \
                if (ng == 1) \
                        qi_walk(g, 1, next_groups, nb, t, q, d, s, asum, bsums, acc); \
                else \
                        qi_walk(g, ng, next_groups, nb, t, q, d, s, asum, bsums, acc); \
                break
                QI_WALK_CASE(GGML_TYPE_Q4_0);
                QI_WALK_CASE(GGML_TYPE_Q4_1);
                QI_WALK_CASE(GGML_TYPE_Q5_0);
                QI_WALK_CASE(GGML_TYPE_Q5_1);
                QI_WALK_CASE(GGML_TYPE_Q8_0);
                QI_WALK_CASE(GGML_TYPE_Q2_K);
                QI_WALK_CASE(GGML_TYPE_Q3_K);
                QI_WALK_CASE(GGML_TYPE_Q4_K);
                QI_WALK_CASE(GGML_TYPE_Q5_K);
                QI_WALK_CASE(GGML_TYPE_Q6_K);
#undef QI_WALK_CASE
        default:
                break;
        }
#endif
}

/*
 * qi_walk over NT tokens at once (qi_block_tokens, qk_block_tokens,
 * q23_block_tokens): token t's activations at q + t K, its scales at d + t
 * nb (Q8_1's s and Q8_0's sums likewise), its sums of 16 at bsums + t K /
 * 16; acc[t][i] group i's rows against token t.
 */
VNNI_INLINE void qi_walk_tokens(const uint8_t *const *g, int ng, int64_t next_groups, int64_t nb,
                                const enum ggml_type type, const int8_t *q, const float *d, const float *s,
                                const int32_t *asum, const int16_t *bsums, __m512 (*acc)[QI_STREAMS_MAX], const int NT)
{
        struct qi_layout kl;
        qi_layout_of(type, &kl);
        const struct qi_layout *k = &kl;
        const int lines = (int)DIV_ROUND_UP(k->bytes, 64), step = qi_step(k), ahead = qi_ahead(k, true);
        const int64_t K = nb * k->be, next = next_groups * nb * (int64_t)k->bytes;
        int32_t mp[QI_TOKENS][8] = { { 0 } };

        for (int t = 0; t < NT; t++)
                for (int i = 0; i < ng; i++)
                        acc[t][i] = _mm512_setzero_ps();
        for (int64_t b0 = 0; b0 < nb; b0 += step) {
                for (int t = 0; k->be == QK_K && t < NT; t++)
                        qk_pairs(k, bsums + t * (K / 16) + 16 * b0, mp[t]);
                for (int i = 0; i < ng; i++) {
                        /*
                         * group i's sums in registers for the step, stored once after it (qi_walk): from
                         * cache, 4 tokens, two rounds, Q8_0 (4 blocks a step) 123-126 GB/s against 117-119;
                         * the others alike
                         */
                        __m512 a[QI_TOKENS];
                        for (int t = 0; t < NT; t++)
                                a[t] = acc[t][i];
                        for (int64_t b = b0; b < MIN(b0 + step, nb); b++) {
                                const uint8_t *x = g[i] + b * k->bytes;
                                const char *p = (const char *)x + ahead * k->bytes + (b + ahead >= nb ? next : 0);
                                const int8_t *qb[QI_TOKENS];
                                float da[QI_TOKENS], sa[QI_TOKENS];
                                int32_t as[QI_TOKENS];
                                for (int t = 0; t < NT; t++) {
                                        qb[t] = q + t * K + k->be * b;
                                        da[t] = d[t * nb + b];
                                        sa[t] = s ? s[t * nb + b] : 0;
                                        as[t] = asum ? asum[t * nb + b] : 0;
                                }
                                if (k->be != QK_K) {
                                        qi_prefetch_part(p, lines, 0, 1);
                                        qi_block_tokens(x, k, qb, da, as, sa, a, NT);
                                } else if (k->qh_words) {
                                        q6k_block_tokens(x, k, qb, da, mp, a, p, lines, NT);
                                } else if (k->bits == 2) {
                                        q23_block_tokens(x, k, qb, da, mp, a, p, lines, NT);
                                } else {
                                        qk_block_tokens(x, k, qb, da, mp, a, p, lines, NT);
                                }
                        }
                        for (int t = 0; t < NT; t++)
                                acc[t][i] = a[t];
                }
        }
}

/* qi_walk_tokens with the type and NT (2 to QI_TOKENS) constants */
static VNNI_FN void qi_walk_tokens_type(enum ggml_type type, int nt, const uint8_t *const *g, int ng,
                                        int64_t next_groups, int64_t nb, const int8_t *q, const float *d,
                                        const float *s, const int32_t *asum, const int16_t *bsums,
                                        __m512 (*acc)[QI_STREAMS_MAX])
{
#if QI_ONE_COPY
        qi_walk_tokens(g, ng, next_groups, nb, type, q, d, s, asum, bsums, acc, nt);
#else
#define QI_TOKENS_CASE(t, n)                                                                    \
        if (type == (t) && nt == (n)) {                                                        \
                qi_walk_tokens(g, ng, next_groups, nb, t, q, d, s, asum, bsums, acc, n);       \
                return;                                                                         \
        }
#define QI_TOKENS_CASES(t) QI_TOKENS_CASE(t, 2) QI_TOKENS_CASE(t, 3) QI_TOKENS_CASE(t, 4)
        QI_TOKENS_CASES(GGML_TYPE_Q4_0)
        QI_TOKENS_CASES(GGML_TYPE_Q4_1)
        QI_TOKENS_CASES(GGML_TYPE_Q5_0)
        QI_TOKENS_CASES(GGML_TYPE_Q5_1)
        QI_TOKENS_CASES(GGML_TYPE_Q8_0)
        QI_TOKENS_CASES(GGML_TYPE_Q2_K)
        QI_TOKENS_CASES(GGML_TYPE_Q3_K)
        QI_TOKENS_CASES(GGML_TYPE_Q4_K)
        QI_TOKENS_CASES(GGML_TYPE_Q5_K)
        QI_TOKENS_CASES(GGML_TYPE_Q6_K)
#undef QI_TOKENS_CASES
#undef QI_TOKENS_CASE
#endif
}

/* group g's sums (acc, its 16 rows) against token t into y, the rows of [r0, r1) */
VNNI_INLINE void qi_store_group(float *y, size_t ys, int64_t t, int64_t g, __m512 acc, int64_t r0, int64_t r1)
{
        float out[QI_ROWS];

        _mm512_storeu_ps(out, acc);
        for (int r = 0; r < QI_ROWS; r++) {
                const int64_t row = g * QI_ROWS + r;
                if (row >= r0 && row < r1)
                        y[t * ys + row] = out[r];
        }
}

/*
 * Step j of the walk from group first + base of [r0, r1)'s G groups (the
 * first of them first): its streams, at most ns, stream i on group
 * first + base + i * run + j, each group's rows against each token.
 */
VNNI_INLINE void qi_walk_step(const struct npu_weight *w, const struct qi_layout *k, const struct act_blocks *a,
                              int64_t n_tok, float *y, size_t ys, int64_t r0, int64_t r1, int64_t first, int64_t G,
                              int ns, int64_t run, int64_t base, int64_t j)
{
        const int64_t K = w->cols, nb = K / k->be, group_bytes = QI_ROWS * (int64_t)w->row_bytes;
        const int8_t *q = a->scheme == ACT_SCHEME_TOKEN_I8 ? a->tok.q8 : a->q;
        const int ng = (int)MIN(ns, DIV_ROUND_UP(G - base - j, run));
        /* a stream's next group: the one after it within its run, else its run's first in the next walk */
        const int64_t next_groups = j + 1 < run ? 0 : (ns - 1) * run;
        int64_t gi[QI_STREAMS_MAX];
        const uint8_t *g[QI_STREAMS_MAX];

        for (int i = 0; i < ng; i++) {
                gi[i] = first + base + i * run + j;
                g[i] = (const uint8_t *)w->data + gi[i] * group_bytes;
        }
        int64_t t = 0;
        /* QI_TOKENS tokens a walk while two or more are left */
        while (n_tok - t >= 2) {
                const int nt = (int)MIN(QI_TOKENS, n_tok - t);
                __m512 acc[QI_TOKENS][QI_STREAMS_MAX];
                qi_walk_tokens_type(w->type, nt, g, ng, next_groups, nb, q + t * K, a->d + t * nb,
                                    a->s ? a->s + t * nb : NULL, a->asum ? a->asum + t * nb : NULL,
                                    a->bsums ? a->bsums + t * (K / 16) : NULL, acc);
                for (int u = 0; u < nt; u++)
                        for (int i = 0; i < ng; i++)
                                qi_store_group(y, ys, t + u, gi[i], acc[u][i], r0, r1);
                t += nt;
        }
        for (; t < n_tok; t++) {
                __m512 acc[QI_STREAMS_MAX];
                const float *s = a->s ? a->s + t * nb : NULL;
                const int32_t *asum = a->asum ? a->asum + t * nb : NULL;
                const int16_t *bs = a->bsums ? a->bsums + t * (K / 16) : NULL;
                qi_walk_type(w->type, g, ng, next_groups, nb, q + t * K, a->d + t * nb, s, asum, bs, acc);
                for (int i = 0; i < ng; i++)
                        qi_store_group(y, ys, t, gi[i], acc[i], r0, r1);
        }
}

VNNI_FN void matmul_interleaved_vnni(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok,
                                     float *y, size_t ys, int64_t r0, int64_t r1)
{
        struct qi_layout k;
        if (!qi_layout_of(w->type, &k))
                return;
        const int ns = qi_streams(&k, n_tok);
        const int64_t first = r0 / QI_ROWS, G = DIV_ROUND_UP(r1, QI_ROWS) - first, run = qi_stream_run(&k, G, ns);

        for (int64_t base = 0; base < G; base += ns * run)
                for (int64_t j = 0; j < run; j++)
                        qi_walk_step(w, &k, a, n_tok, y, ys, r0, r1, first, G, ns, run, base, j);
}
