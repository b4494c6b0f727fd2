/* SPDX-License-Identifier: MIT */
/*
 * The x86 kernels of the block-quantized types, included once per
 * instruction set by kernels_quant.c, which defines before each inclusion:
 *   SIMD(name)              this set's copy of name (name_avx2, name_vnni)
 *   SIMD_FN, SIMD_INLINE    function attributes: the target
 *   MAC_U8S8(s, u, v)       s + per int32 lane the sum of the four products
 *                           of unsigned u and signed v bytes (u < 128 on
 *                           AVX2, whose vpmaddubsw pair sums saturate)
 *   MAC_SCALED(s, u, v, sc) s + per int32 lane sc times that sum, sc the
 *                           lane's int16 scale (vpmaddubsw, then vpmaddwd or
 *                           vpdpwssd: the pair sums never saturate here)
 *   Q8_0_WIDE               1 when MAC_U8S8 takes u up to 255 (vpdpbusd)
 * Both give exact integers in every set, so every copy computes each
 * block's isum of kernels_quant.h's definition, then the same float
 * operations in the same order.
 *
 * A row's block is turned into int32 lanes whose sum is the block's isum
 * (or that sum before a correction through the activations' block sums);
 * eight rows are walked together, block after block: each row is streamed
 * once, its nibbles unpacked in registers, and the eight rows' lanes are
 * summed by one transpose (hsum8x8), so the float steps run on eight rows
 * at once. Weights are made unsigned by an offset where the type has one
 * (Q4_0: q = w + 8), and the offset comes back out through the activations'
 * sums: isum = sum(q a) - 8 sum(a).
 */

#define RB 8 /* rows walked together */
/*
 * Whether a chunk's groups take rows RB streams apart (STREAM_ROWS): the
 * 512-bit Q4_K, Q6_K, Q8_0 and four-block (quads32) Q4_0, Q4_1, Q5_0 and
 * Q5_1 kernels on rows of 16 blocks or more (K >= 4096; Q6_K and Q8_0 at
 * any length on Intel's cores and none on AMD's, below), whose prefetch
 * then follows each stream (kernels_quant_zmm.h). Shorter rows stay
 * consecutive: at K = 2048 the streams read 58-64 % of the read bandwidth
 * against 79-81 % (Q4_K 5632x2048), 72-74 against 84-85 % (Q6_K
 * 32000x2048), Q4_1 32-43 against 52-59 %. Q8_0 takes them (11008x4096:
 * 89-98 % against 64-73 %). The 32-element nibble types take them with
 * their four-block steps: Q4_0 11008x4096 78-85 % against 61-68 % (56 %
 * with the streams and the two-block steps), Q5_0 77-78 against 60 %,
 * Q5_1 70-73 against 64-66 %, Q4_1 63-75 against 60-75 % (even; with the
 * two-block steps the streams lost, 52-57 against 75-76 %). (npu-kbench,
 * paired, alternated, Zen 5.)
 *
 * On Intel's cores the streams win at K = 2048 too, for the two types
 * that take these kernels on AVX-512 VNNI (the others are interleaved,
 * quant_interleave.h): Sapphire Rapids class Xeon, 2 threads, paired,
 * alternated, two rounds: Q6_K 32000x2048 73-79 % against 58 %, Q8_0
 * 5632x2048 92-96 % against 64 %; TinyLlama-shaped files, npu-bench
 * decode, three rounds (Q4_K_M) and two (Q8_0): the Q6_K output head
 * 2.53-2.57 -> 1.87-1.89 ms a step, the Q4_K_M step 25.8-26.9 -> 27.4-28.0
 * GB/s; the Q8_0 step 24.4-25.9 -> 32.0-34.3 GB/s (every matrix of it but
 * the 5632-column ones gains a quarter).
 *
 * On AMD's cores Q6_K and Q8_0 (interleaved since where quant_interleave.h
 * applies: whole groups of rows, AVX-512 VNNI) keep consecutive rows here
 * at any length.
 * Zen 5, 2 threads, paired, alternated with the streams: Q6_K 11008x4096
 * 86-89 % against 73-83 % (four rounds), Q8_0 11008x4096 80-87 % against
 * 73-78 % (six), Q6_K 4096x4096 81-85 % against 72 % (two); at 11008
 * columns Q8_0 86-90 % against 76-77 % (two), Q6_K 74-90 % against 70-86
 * % (four, each ahead in two; means 82 and 78 %). With no prefetch at all
 * (the hardware's alone) Q8_0 lost: 50-76 %.
 */
SIMD_INLINE bool SIMD(q6k_q8_0_in_streams)(void)
{
        return __builtin_cpu_is("intel");
}
#define STREAM_ROWS(type, K)                                                                                  \
        (SIMD_ZMM &&                                                                                          \
         ((type) == GGML_TYPE_Q6_K || (type) == GGML_TYPE_Q8_0                                                \
                  ? SIMD(q6k_q8_0_in_streams)()                                                               \
                  : ((type) == GGML_TYPE_Q4_K || (type) == GGML_TYPE_Q4_0 || (type) == GGML_TYPE_Q4_1 ||      \
                     (type) == GGML_TYPE_Q5_0 || (type) == GGML_TYPE_Q5_1) &&                                 \
                            (K) >= 16 * QK_K))
/*
 * Blocks ahead that each row is prefetched: the eight rows are eight
 * interleaved streams, which the hardware prefetchers follow too late
 * (measured on Sapphire Rapids: Q4_K 8.6 -> 13 GB/s, 2 threads). Rows
 * shorter than 16 blocks (and every 32-element type) fetch the next
 * group's bytes in order into L2 instead, a share per block, as the
 * 512-bit Q4_K kernel does: Q6_K's TinyLlama output head (2048 columns)
 * 18-20 -> 23-24 GB/s alone; the whole Q4_K_M decode +0-2 %, within the
 * noise of a shared machine (11 paired runs).
 */
#define QPD 2

SIMD_INLINE __m256i SIMD(load32)(const void *p)
{
        return _mm256_loadu_si256((const __m256i *)p);
}

/* Eight vectors of int32 lanes into one: lane i is the sum of v[i]'s lanes. */
SIMD_INLINE __m256i SIMD(hsum8x8)(const __m256i *v)
{
        __m256i t0 = _mm256_add_epi32(_mm256_unpacklo_epi32(v[0], v[1]), _mm256_unpackhi_epi32(v[0], v[1]));
        __m256i t1 = _mm256_add_epi32(_mm256_unpacklo_epi32(v[2], v[3]), _mm256_unpackhi_epi32(v[2], v[3]));
        __m256i t2 = _mm256_add_epi32(_mm256_unpacklo_epi32(v[4], v[5]), _mm256_unpackhi_epi32(v[4], v[5]));
        __m256i t3 = _mm256_add_epi32(_mm256_unpacklo_epi32(v[6], v[7]), _mm256_unpackhi_epi32(v[6], v[7]));
        __m256i u0 = _mm256_add_epi32(_mm256_unpacklo_epi64(t0, t1), _mm256_unpackhi_epi64(t0, t1));
        __m256i u1 = _mm256_add_epi32(_mm256_unpacklo_epi64(t2, t3), _mm256_unpackhi_epi64(t2, t3));
        return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31));
}

/* The f16 at byte offset off of each of eight rows, as floats. */
SIMD_INLINE uint16_t SIMD(u16_at)(const uint8_t *p)
{
        uint16_t v;
        memcpy(&v, p, 2);
        return v;
}

/* The eight f16 themselves, row i's in word i. */
SIMD_INLINE __m128i SIMD(f16x8_at)(const uint8_t *const *rows, size_t off)
{
        __m128i h = _mm_cvtsi32_si128(SIMD(u16_at)(rows[0] + off));
        h = _mm_insert_epi16(h, SIMD(u16_at)(rows[1] + off), 1);
        h = _mm_insert_epi16(h, SIMD(u16_at)(rows[2] + off), 2);
        h = _mm_insert_epi16(h, SIMD(u16_at)(rows[3] + off), 3);
        h = _mm_insert_epi16(h, SIMD(u16_at)(rows[4] + off), 4);
        h = _mm_insert_epi16(h, SIMD(u16_at)(rows[5] + off), 5);
        h = _mm_insert_epi16(h, SIMD(u16_at)(rows[6] + off), 6);
        return _mm_insert_epi16(h, SIMD(u16_at)(rows[7] + off), 7);
}

SIMD_INLINE __m256 SIMD(load_f16x8)(const uint8_t *const *rows, size_t off)
{
        return _mm256_cvtph_ps(SIMD(f16x8_at)(rows, off));
}

/* 16 bytes of nibbles: the 16 low nibbles, then the 16 high ones. */
SIMD_INLINE __m256i SIMD(nibbles32)(const uint8_t *qs)
{
        __m128i v = _mm_loadu_si128((const __m128i *)qs);
        __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1);
        return _mm256_and_si256(b, _mm256_set1_epi8(15));
}

/* Byte k is 16 where bit k of the little-endian word at p is set, else 0. */
SIMD_INLINE __m256i SIMD(bits32_16)(const uint8_t *p)
{
        const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                              2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
        const __m256i bit = _mm256_set1_epi64x(0x8040201008040201ll);
        uint32_t x;
        memcpy(&x, p, 4);
        __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
        return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit), _mm256_set1_epi8(16));
}

/* Bit `from` of every byte of v moved to bit `to` (constants), the other bits cleared. */
#define BIT_TO(v, from, to)                                                                                    \
        ((from) >= (to) ? _mm256_and_si256(_mm256_srli_epi16(v, (from) - (to)), _mm256_set1_epi8(1 << (to)))  \
                        : _mm256_and_si256(_mm256_slli_epi16(v, (to) - (from)), _mm256_set1_epi8(1 << (to))))

/* Broadcast int16 element j of each 128-bit lane to the whole lane. */
#define BCAST16(v, j) _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(0x0100 * (2 * (j) + 1) + 2 * (j))))
/*
 * The scale vector of 32-element chunk c made of two 16-element
 * sub-blocks (lanes 0-3 the first, 4-7 the second): sub-blocks 2c and
 * 2c + 1 from lo (int16 scales 0..7 in both lanes) or hi (8..15).
 */
#define PAIR16(lo, hi, c)                                                                                      \
        _mm256_shuffle_epi8((c) < 4 ? (lo) : (hi),                                                            \
                            _mm256_set_m128i(_mm_set1_epi16((short)(0x0100 * ((4 * (c) + 2) % 16 + 1) +        \
                                                                    (4 * (c) + 2) % 16)),                     \
                                             _mm_set1_epi16((short)(0x0100 * (4 * (c) % 16 + 1) + 4 * (c) % 16))))

/* The 8 int16 scales of a 16-byte vector's low 8 bytes, in both lanes. */
SIMD_INLINE __m256i SIMD(scales16_u)(__m128i bytes)
{
        return _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(bytes));
}

SIMD_INLINE __m256i SIMD(scales16_s)(__m128i bytes)
{
        return _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(bytes));
}

/*
 * --- one block of one row ---
 * Either (u == NULL) the int32 lanes summing to the block's isum (before
 * the legacy types' offset), the K-quants' min lanes in *mn; or (u != NULL,
 * a and bs unused) the block unpacked for the tile path: its unsigned
 * bytes into u and, for the K-quants, each 32-element chunk's int16 scale
 * vector into sc. Every call site passes a constant u, so only one of the
 * two survives inlining.
 */

SIMD_INLINE void SIMD(store32)(void *p, __m256i v)
{
        _mm256_storeu_si256((__m256i *)p, v);
}

SIMD_INLINE __m256i SIMD(block_q4_0)(const struct block_q4_0 *x, const int8_t *a, const int16_t *bs, __m256i *mn,
                                     uint8_t *u, __m256i *sc)
{
        if (u) {
                SIMD(store32)(u, SIMD(nibbles32)(x->qs));
                return _mm256_setzero_si256();
        }
        return MAC_U8S8(_mm256_setzero_si256(), SIMD(nibbles32)(x->qs), SIMD(load32)(a));
}

SIMD_INLINE __m256i SIMD(block_q4_1)(const struct block_q4_1 *x, const int8_t *a, const int16_t *bs, __m256i *mn,
                                     uint8_t *u, __m256i *sc)
{
        if (u) {
                SIMD(store32)(u, SIMD(nibbles32)(x->qs));
                return _mm256_setzero_si256();
        }
        return MAC_U8S8(_mm256_setzero_si256(), SIMD(nibbles32)(x->qs), SIMD(load32)(a));
}

SIMD_INLINE __m256i SIMD(block_q5_0)(const struct block_q5_0 *x, const int8_t *a, const int16_t *bs, __m256i *mn,
                                     uint8_t *u, __m256i *sc)
{
        __m256i q = _mm256_or_si256(SIMD(nibbles32)(x->qs), SIMD(bits32_16)(x->qh));
        if (u) {
                SIMD(store32)(u, q);
                return _mm256_setzero_si256();
        }
        return MAC_U8S8(_mm256_setzero_si256(), q, SIMD(load32)(a));
}

SIMD_INLINE __m256i SIMD(block_q5_1)(const struct block_q5_1 *x, const int8_t *a, const int16_t *bs, __m256i *mn,
                                     uint8_t *u, __m256i *sc)
{
        __m256i q = _mm256_or_si256(SIMD(nibbles32)(x->qs), SIMD(bits32_16)(x->qh));
        if (u) {
                SIMD(store32)(u, q);
                return _mm256_setzero_si256();
        }
        return MAC_U8S8(_mm256_setzero_si256(), q, SIMD(load32)(a));
}

/* The tile path keeps Q8_0 as stored (signed) on AVX2, as w + 128 where vpdpbusd takes it. */
SIMD_INLINE __m256i SIMD(block_q8_0)(const struct block_q8_0 *x, const int8_t *a, const int16_t *bs, __m256i *mn,
                                     uint8_t *u, __m256i *sc)
{
        __m256i w = SIMD(load32)(x->qs);
#if Q8_0_WIDE
        /* w + 128 as unsigned bytes; the 128 comes back out through the block's sum of a */
        w = _mm256_xor_si256(w, _mm256_set1_epi8(-128));
        if (u) {
                SIMD(store32)(u, w);
                return _mm256_setzero_si256();
        }
        return MAC_U8S8(_mm256_setzero_si256(), w, SIMD(load32)(a));
#else
        if (u) {
                SIMD(store32)(u, w);
                return _mm256_setzero_si256();
        }
        /* |w| (unsigned, up to 128) times a with w's sign */
        __m256i av = SIMD(load32)(a);
        return MAC_U8S8(_mm256_setzero_si256(), _mm256_sign_epi8(w, w), _mm256_sign_epi8(av, w));
#endif
}

/* Lanes of sum over the 8 sub-blocks of 32 of min * (their activations' sum); bs holds sums of 16. */
SIMD_INLINE __m256i SIMD(mins32)(__m128i mins8, const int16_t *bs)
{
        __m128i b0 = _mm_loadu_si128((const __m128i *)bs), b1 = _mm_loadu_si128((const __m128i *)(bs + 8));
        return _mm256_zextsi128_si256(_mm_madd_epi16(_mm_cvtepu8_epi16(mins8), _mm_hadd_epi16(b0, b1)));
}

/* Chunk i (32 elements) of a K-quant block: unsigned bytes uv, scale vector scv: MAC, or store for the tile. */
#define K_CHUNK(i, uv, scv)                                                                                   \
        do {                                                                                                  \
                if (u) {                                                                                      \
                        SIMD(store32)(u + 32 * (i), uv);                                                      \
                        sc[i] = scv;                                                                          \
                } else {                                                                                      \
                        L = MAC_SCALED(L, uv, SIMD(load32)(a + 32 * (i)), scv);                               \
                }                                                                                             \
        } while (0)

SIMD_INLINE __m256i SIMD(block_q4_k)(const struct block_q4_K *x, const int8_t *a, const int16_t *bs, __m256i *mn,
                                     uint8_t *u, __m256i *sc)
{
        const __m128i sm = k4_scales_mins(x->scales);
        const __m256i scv = SIMD(scales16_u)(sm), m4 = _mm256_set1_epi8(15);
        __m256i L = _mm256_setzero_si256();
        if (!u)
                *mn = SIMD(mins32)(_mm_srli_si128(sm, 8), bs);
        for (int c = 0; c < 4; c++) {
                __m256i v = SIMD(load32)(x->qs + 32 * c);
                K_CHUNK(2 * c, _mm256_and_si256(v, m4), BCAST16(scv, 2 * c));
                K_CHUNK(2 * c + 1, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4), BCAST16(scv, 2 * c + 1));
        }
        return L;
}

SIMD_INLINE __m256i SIMD(block_q5_k)(const struct block_q5_K *x, const int8_t *a, const int16_t *bs, __m256i *mn,
                                     uint8_t *u, __m256i *sc)
{
        const __m128i sm = k4_scales_mins(x->scales);
        const __m256i scv = SIMD(scales16_u)(sm), m4 = _mm256_set1_epi8(15), qh = SIMD(load32)(x->qh);
        __m256i L = _mm256_setzero_si256();
        if (!u)
                *mn = SIMD(mins32)(_mm_srli_si128(sm, 8), bs);
#define Q5K_CHUNK(c)                                                                                          \
        do {                                                                                                  \
                __m256i v = SIMD(load32)(x->qs + 32 * (c));                                                   \
                __m256i lo = _mm256_or_si256(_mm256_and_si256(v, m4), BIT_TO(qh, 2 * (c), 4));                \
                __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4),                   \
                                             BIT_TO(qh, 2 * (c) + 1, 4));                                     \
                K_CHUNK(2 * (c), lo, BCAST16(scv, 2 * (c)));                                                  \
                K_CHUNK(2 * (c) + 1, hi, BCAST16(scv, 2 * (c) + 1));                                          \
        } while (0)
        Q5K_CHUNK(0);
        Q5K_CHUNK(1);
        Q5K_CHUNK(2);
        Q5K_CHUNK(3);
#undef Q5K_CHUNK
        return L;
}

/*
 * Q6_K: q = w + 32 (0..63) as unsigned bytes; the 32 comes back out as
 * sum over sub-blocks of 32 * scale * (their activations' sum).
 */
SIMD_INLINE __m256i SIMD(block_q6_k)(const struct block_q6_K *x, const int8_t *a, const int16_t *bs, __m256i *mn,
                                     uint8_t *u, __m256i *sc)
{
        const __m128i s8 = _mm_loadu_si128((const __m128i *)x->scales);
        const __m256i slo = SIMD(scales16_s)(s8), shi = SIMD(scales16_s)(_mm_srli_si128(s8, 8));
        const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30);
        __m256i L = _mm256_setzero_si256();
        if (!u)
                L = _mm256_sub_epi32(L, _mm256_madd_epi16(_mm256_slli_epi16(_mm256_cvtepi8_epi16(s8), 5),
                                                          SIMD(load32)(bs)));
        for (int h = 0; h < 2; h++) {
                __m256i l0 = SIMD(load32)(x->ql + 64 * h), l1 = SIMD(load32)(x->ql + 64 * h + 32);
                __m256i qh = SIMD(load32)(x->qh + 32 * h);
                __m256i q0 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
                __m256i q1 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
                __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m30));
                __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                             _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
                K_CHUNK(4 * h, q0, PAIR16(slo, shi, 4 * h));
                K_CHUNK(4 * h + 1, q1, PAIR16(slo, shi, 4 * h + 1));
                K_CHUNK(4 * h + 2, q2, PAIR16(slo, shi, 4 * h + 2));
                K_CHUNK(4 * h + 3, q3, PAIR16(slo, shi, 4 * h + 3));
        }
        return L;
}

SIMD_INLINE __m256i SIMD(block_q2_k)(const struct block_q2_K *x, const int8_t *a, const int16_t *bs, __m256i *mn,
                                     uint8_t *u, __m256i *sc)
{
        const __m128i s8 = _mm_loadu_si128((const __m128i *)x->scales), m4 = _mm_set1_epi8(15);
        const __m128i sc8 = _mm_and_si128(s8, m4), mn8 = _mm_and_si128(_mm_srli_epi16(s8, 4), m4);
        const __m256i slo = SIMD(scales16_u)(sc8), shi = SIMD(scales16_u)(_mm_srli_si128(sc8, 8));
        const __m256i three = _mm256_set1_epi8(3);
        __m256i L = _mm256_setzero_si256();
        if (!u)
                *mn = _mm256_madd_epi16(_mm256_cvtepu8_epi16(mn8), SIMD(load32)(bs));
        for (int h = 0; h < 2; h++) {
                __m256i v = SIMD(load32)(x->qs + 32 * h);
                K_CHUNK(4 * h, _mm256_and_si256(v, three), PAIR16(slo, shi, 4 * h));
                K_CHUNK(4 * h + 1, _mm256_and_si256(_mm256_srli_epi16(v, 2), three), PAIR16(slo, shi, 4 * h + 1));
                K_CHUNK(4 * h + 2, _mm256_and_si256(_mm256_srli_epi16(v, 4), three), PAIR16(slo, shi, 4 * h + 2));
                K_CHUNK(4 * h + 3, _mm256_and_si256(_mm256_srli_epi16(v, 6), three), PAIR16(slo, shi, 4 * h + 3));
        }
        return L;
}

/* Q3_K: q = w + 4 (0..7) = the two low bits | the high bit << 2; the 4 comes back out as in Q6_K. */
SIMD_INLINE __m256i SIMD(block_q3_k)(const struct block_q3_K *x, const int8_t *a, const int16_t *bs, __m256i *mn,
                                     uint8_t *u, __m256i *sc)
{
        const __m128i s8 = q3k_scales(x->scales);
        const __m256i slo = SIMD(scales16_s)(s8), shi = SIMD(scales16_s)(_mm_srli_si128(s8, 8));
        const __m256i hm = SIMD(load32)(x->hmask), three = _mm256_set1_epi8(3);
        __m256i L = _mm256_setzero_si256();
        if (!u)
                L = _mm256_sub_epi32(L, _mm256_madd_epi16(_mm256_slli_epi16(_mm256_cvtepi8_epi16(s8), 2),
                                                          SIMD(load32)(bs)));
#define Q3K_CHUNK(h, s)                                                                                       \
        K_CHUNK(4 * (h) + (s),                                                                                \
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 2 * (s)), three),                       \
                                BIT_TO(hm, 4 * (h) + (s), 2)),                                                \
                PAIR16(slo, shi, 4 * (h) + (s)))
        {
                __m256i v = SIMD(load32)(x->qs);
                Q3K_CHUNK(0, 0);
                Q3K_CHUNK(0, 1);
                Q3K_CHUNK(0, 2);
                Q3K_CHUNK(0, 3);
                v = SIMD(load32)(x->qs + 32);
                Q3K_CHUNK(1, 0);
                Q3K_CHUNK(1, 1);
                Q3K_CHUNK(1, 2);
                Q3K_CHUNK(1, 3);
        }
#undef Q3K_CHUNK
        return L;
}

/* --- eight rows against one token --- */

/*
 * The float steps of block b of eight rows, in the definition's order:
 * isum (before the offset's correction OFF * asum[b]) scaled by the rows'
 * d (the f16 at byte at + d_at of each row) times the token's d[b], then
 * the min term (MINK as in DEFINE_GROUP: 1 m * s[b] with m at at + dmin_at,
 * 2 -dmin * d[b] times the lanes' sums of M[i], row i's min lanes). acc
 * carries each row's sum from block to block.
 */
SIMD_INLINE __m256 SIMD(block_step8)(__m256 acc, const uint8_t *const *rows, size_t at, __m256i isum,
                                     const __m256i *M, int64_t b, const float *d, const float *s,
                                     const int32_t *asum, int off, int mink, size_t d_at, size_t dmin_at)
{
        if (off)
                isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(off * asum[b]));
        const __m256 da = _mm256_set1_ps(d[b]);
        const __m256 dw = SIMD(load_f16x8)(rows, at + d_at);
        acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, da), _mm256_cvtepi32_ps(isum), acc);
        if (mink == 1) {
                const __m256 mw = SIMD(load_f16x8)(rows, at + dmin_at);
                acc = _mm256_fmadd_ps(mw, _mm256_set1_ps(s[b]), acc);
        } else if (mink == 2) {
                const __m256 dm = SIMD(load_f16x8)(rows, at + dmin_at);
                const __m256 neg = _mm256_xor_ps(_mm256_mul_ps(dm, da), _mm256_set1_ps(-0.0f));
                acc = _mm256_fmadd_ps(neg, _mm256_cvtepi32_ps(SIMD(hsum8x8)(M)), acc);
        }
        return acc;
}

/*
 * out[i] = row i . token, for RB rows (rows[i] their first bytes). OFF:
 * the weights' offset (0: none), taken back out through asum; MINK: the
 * min term (0 none, 1 Q4_1/Q5_1's m * s, 2 the K-quants' -dmin * d * M);
 * D_AT, DMIN_AT: byte offsets of d and of dmin (or m) in a block.
 */
#define DEFINE_GROUP(name, btype, be, OFF, MINK, D_AT, DMIN_AT)                                                \
        SIMD_INLINE void SIMD(group_##name)(const uint8_t *const *rows, int64_t K, const int8_t *q,          \
                                            const float *d, const float *s, const int16_t *bs,               \
                                            const int32_t *asum, float *out)                                 \
        {                                                                                                     \
                const int64_t nb = K / (be), row_bytes = nb * (int64_t)sizeof(btype);                       \
                const int64_t share = DIV_ROUND_UP(RB * row_bytes, 64 * nb) * 64;                             \
                const char *next = (const char *)rows[0] + RB * row_bytes;                                    \
                __m256 acc = _mm256_setzero_ps();                                                             \
                for (int64_t b = 0; b < nb; b++) {                                                            \
                        __m256i L[RB], M[RB];                                                                 \
                        if ((be) == 32 || nb < 16)                                                            \
                                for (int64_t c = 0; c < share; c += 64)                                       \
                                        _mm_prefetch(next + b * share + c, _MM_HINT_T1);                      \
                        else                                                                                  \
                        for (int i = 0; i < RB; i++) {                                                        \
                                const char *p = (const char *)rows[i] + (b + QPD) * sizeof(btype) +           \
                                                (b + QPD >= nb ? (RB - 1) * row_bytes : 0);                   \
                                for (int c = 0; c < (int)sizeof(btype); c += 64)                              \
                                        _mm_prefetch(p + c, _MM_HINT_T0);                                     \
                        }                                                                                     \
                        for (int i = 0; i < RB; i++)                                                          \
                                L[i] = SIMD(block_##name)((const btype *)(const void *)rows[i] + b,           \
                                                          q + (be) * b, bs ? bs + 16 * b : NULL, &M[i],       \
                                                          NULL, NULL);                                        \
                        acc = SIMD(block_step8)(acc, rows, b * sizeof(btype), SIMD(hsum8x8)(L), M, b, d, s,   \
                                                asum, OFF, MINK, D_AT, DMIN_AT);                              \
                }                                                                                             \
                _mm256_storeu_ps(out, acc);                                                                   \
        }

/* a group_<name> of tokens [t, t + nt) of a at once: their sums into out[0 .. nt) */
typedef void (*group_tokens_fn)(const uint8_t *const *rows, int64_t K, const struct act_blocks *a, int64_t t, int nt,
                                float (*out)[RB]);

/*
 * The rows [r0, r1) of a weight against n_tok tokens, eight rows at a time
 * through group_<name>; with a tokens_fn (not NULL), GROUP_TOKENS_MAX
 * tokens at a time through it while two or more are left.
 */
#define DEFINE_ROWS_TOKENS(name, tokens_fn)                                                                   \
        SIMD_FN static void SIMD(rows_##name)(const struct npu_weight *w, const struct act_blocks *a,         \
                                              int64_t n_tok, float *y, size_t ys, int64_t r0, int64_t r1)     \
        {                                                                                                     \
                const group_tokens_fn tokens = (tokens_fn);                                                   \
                const int64_t K = w->cols, ab = act_scheme_block(a->scheme);                                  \
                const int8_t *q = a->scheme == ACT_SCHEME_TOKEN_I8 ? a->tok.q8 : a->q;                        \
                /* S > 0: group g takes rows r0 + g, r0 + g + S, ..., so row i of each group is a stream */    \
                const int64_t S = STREAM_ROWS(w->type, K) && (r1 - r0) % RB == 0 && r1 - r0 >= 2 * RB ?      \
                                          (r1 - r0) / RB : 0;                                                 \
                for (int64_t r = r0; r < r1; r += RB) {                                                       \
                        const uint8_t *rows[RB];                                                              \
                        int64_t at[RB];                                                                       \
                        float out[RB];                                                                        \
                        /* a short last group repeats its last row */                                         \
                        for (int i = 0; i < RB; i++) {                                                        \
                                at[i] = S ? r0 + i * S + (r - r0) / RB : MIN(r + i, r1 - 1);                  \
                                rows[i] = (const uint8_t *)w->data + at[i] * w->row_bytes;                    \
                        }                                                                                     \
                        int64_t t = 0;                                                                        \
                        for (; tokens && n_tok - t >= 2;) {                                                   \
                                const int nt = (int)MIN(GROUP_TOKENS_MAX, n_tok - t);                         \
                                float outs[GROUP_TOKENS_MAX][RB];                                             \
                                tokens(rows, K, a, t, nt, outs);                                              \
                                for (int u = 0; u < nt; u++)                                                  \
                                        for (int i = 0; i < RB && r + i < r1; i++)                            \
                                                y[(t + u) * ys + at[i]] = outs[u][i];                         \
                                t += nt;                                                                      \
                        }                                                                                     \
                        for (; t < n_tok; t++) {                                                              \
                                SIMD(group_##name)(rows, K, q + t * K, a->d + t * (K / ab),                   \
                                                   a->s ? a->s + t * (K / ab) : NULL,                         \
                                                   a->bsums ? a->bsums + t * (K / 16) : NULL,                 \
                                                   a->asum ? a->asum + t * (K / 32) : NULL, out);             \
                                for (int i = 0; i < RB && r + i < r1; i++)                                    \
                                        y[t * ys + at[i]] = out[i];                                           \
                        }                                                                                     \
                }                                                                                             \
        }

#if !SIMD_ZMM
DEFINE_GROUP(q4_0, struct block_q4_0, QK4_0, 8, 0, 0, 0)
DEFINE_GROUP(q4_1, struct block_q4_1, QK4_1, 0, 1, 0, 2)
DEFINE_GROUP(q5_0, struct block_q5_0, QK5_0, 16, 0, 0, 0)
DEFINE_GROUP(q5_1, struct block_q5_1, QK5_1, 0, 1, 0, 2)
DEFINE_GROUP(q8_0, struct block_q8_0, QK8_0, 0, 0, 0, 0)
#endif
#if SIMD_ZMM
/* 512-bit copies of the types a Q4_K_M file is made of, and of the 32-element types */
#include "kernels_quant_zmm.h"
#else
DEFINE_GROUP(q3_k, struct block_q3_K, QK_K, 0, 0, offsetof(struct block_q3_K, d), 0)
DEFINE_GROUP(q2_k, struct block_q2_K, QK_K, 0, 2, offsetof(struct block_q2_K, d), offsetof(struct block_q2_K, dmin))
DEFINE_GROUP(q4_k, struct block_q4_K, QK_K, 0, 2, 0, 2)
DEFINE_GROUP(q5_k, struct block_q5_K, QK_K, 0, 2, 0, 2)
DEFINE_GROUP(q6_k, struct block_q6_K, QK_K, 0, 0, offsetof(struct block_q6_K, d), 0)
#endif

#define DEFINE_ROWS(name) DEFINE_ROWS_TOKENS(name, NULL)
#if SIMD_ZMM
#define GROUP_TOKENS_MAX 4 /* Q6K_TOKENS, Q8_0_TOKENS */
#else
#define GROUP_TOKENS_Q6_K NULL
#define GROUP_TOKENS_Q8_0 NULL
#define GROUP_TOKENS_MAX 1
#endif
DEFINE_ROWS(q4_0)
DEFINE_ROWS(q4_1)
DEFINE_ROWS(q5_0)
DEFINE_ROWS(q5_1)
DEFINE_ROWS_TOKENS(q8_0, GROUP_TOKENS_Q8_0)
DEFINE_ROWS(q2_k)
DEFINE_ROWS(q3_k)
DEFINE_ROWS(q4_k)
DEFINE_ROWS(q5_k)
DEFINE_ROWS_TOKENS(q6_k, GROUP_TOKENS_Q6_K)
#undef GROUP_TOKENS_Q6_K
#undef GROUP_TOKENS_Q8_0
#undef GROUP_TOKENS_MAX

static const quant_rows_fn SIMD(quant_rows)[_GGML_TYPE_MAX] = {
        [GGML_TYPE_Q4_0] = SIMD(rows_q4_0), [GGML_TYPE_Q4_1] = SIMD(rows_q4_1), [GGML_TYPE_Q5_0] = SIMD(rows_q5_0),
        [GGML_TYPE_Q5_1] = SIMD(rows_q5_1), [GGML_TYPE_Q8_0] = SIMD(rows_q8_0), [GGML_TYPE_Q2_K] = SIMD(rows_q2_k),
        [GGML_TYPE_Q3_K] = SIMD(rows_q3_k), [GGML_TYPE_Q4_K] = SIMD(rows_q4_k), [GGML_TYPE_Q5_K] = SIMD(rows_q5_k),
        [GGML_TYPE_Q6_K] = SIMD(rows_q6_k),
};


/* --- the tile path: eight rows unpacked once, then every token of the batch --- */

#define DEFINE_TILE_UNPACK(name, btype, be)                                                                   \
        SIMD_FN static void SIMD(tile_unpack_##name)(const uint8_t *const *rows, int64_t kb0, int64_t nb,     \
                                                     struct qtile *tl)                                        \
        {                                                                                                     \
                for (int i = 0; i < TILE_RB; i++)                                                             \
                        for (int64_t b = 0; b < nb; b++)                                                      \
                                SIMD(block_##name)((const btype *)(const void *)rows[i] + kb0 + b, NULL,      \
                                                   NULL, NULL, tl->u[i] + (be) * b,                           \
                                                   (__m256i *)(void *)tl->sc[i][(be) / 32 * b]);              \
        }

DEFINE_TILE_UNPACK(q4_0, struct block_q4_0, QK4_0)
DEFINE_TILE_UNPACK(q4_1, struct block_q4_1, QK4_1)
DEFINE_TILE_UNPACK(q5_0, struct block_q5_0, QK5_0)
DEFINE_TILE_UNPACK(q5_1, struct block_q5_1, QK5_1)
DEFINE_TILE_UNPACK(q8_0, struct block_q8_0, QK8_0)
DEFINE_TILE_UNPACK(q2_k, struct block_q2_K, QK_K)
DEFINE_TILE_UNPACK(q3_k, struct block_q3_K, QK_K)
DEFINE_TILE_UNPACK(q4_k, struct block_q4_K, QK_K)
DEFINE_TILE_UNPACK(q5_k, struct block_q5_K, QK_K)
DEFINE_TILE_UNPACK(q6_k, struct block_q6_K, QK_K)

static const tile_unpack_fn SIMD(tile_unpack)[_GGML_TYPE_MAX] = {
        [GGML_TYPE_Q4_0] = SIMD(tile_unpack_q4_0), [GGML_TYPE_Q4_1] = SIMD(tile_unpack_q4_1),
        [GGML_TYPE_Q5_0] = SIMD(tile_unpack_q5_0), [GGML_TYPE_Q5_1] = SIMD(tile_unpack_q5_1),
        [GGML_TYPE_Q8_0] = SIMD(tile_unpack_q8_0), [GGML_TYPE_Q2_K] = SIMD(tile_unpack_q2_k),
        [GGML_TYPE_Q3_K] = SIMD(tile_unpack_q3_k), [GGML_TYPE_Q4_K] = SIMD(tile_unpack_q4_k),
        [GGML_TYPE_Q5_K] = SIMD(tile_unpack_q5_k), [GGML_TYPE_Q6_K] = SIMD(tile_unpack_q6_k),
};

/* sum over the 8 pairs of sub-blocks of the tile's int16 pairs p[j] (eight rows) times the token's bsums pairs */
SIMD_INLINE __m256i SIMD(pairs_dot)(const int32_t (*p)[TILE_RB], const int16_t *bs)
{
        __m256i acc = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++) {
                int32_t pair;
                memcpy(&pair, bs + 2 * j, 4);
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(SIMD(load32)(p[j]), _mm256_set1_epi32(pair)));
        }
        return acc;
}

/*
 * The tile's eight rows against one token over the tile's nb blocks:
 * acc (eight floats, one per row) carried through the blocks in order.
 */
SIMD_FN static void SIMD(tile_token)(const struct qtile *tl, const struct tile_kind *tk, int64_t nb, const int8_t *q,
                                     const float *d, const float *s, const int16_t *bs, const int32_t *asum,
                                     float *out)
{
        __m256 acc = _mm256_loadu_ps(out);
        __m256i L[TILE_RB];

        if (tk->be == 32) {
                for (int64_t b = 0; b < nb; b++) {
                        const __m256i av = SIMD(load32)(q + 32 * b);
                        for (int i = 0; i < TILE_RB; i++) {
                                const __m256i w = SIMD(load32)(tl->u[i] + 32 * b);
                                if (tk->signed_q8)
                                        L[i] = MAC_U8S8(_mm256_setzero_si256(), _mm256_sign_epi8(w, w),
                                                        _mm256_sign_epi8(av, w));
                                else
                                        L[i] = MAC_U8S8(_mm256_setzero_si256(), w, av);
                        }
                        __m256i isum = SIMD(hsum8x8)(L);
                        if (tk->off)
                                isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(tk->off * asum[b]));
                        const __m256 dw = _mm256_loadu_ps(tl->dw[b]);
                        acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(d[b])), _mm256_cvtepi32_ps(isum), acc);
                        if (tk->mink == 1)
                                acc = _mm256_fmadd_ps(_mm256_loadu_ps(tl->dm[b]), _mm256_set1_ps(s[b]), acc);
                }
        } else {
                for (int64_t b = 0; b < nb; b++) {
                        const int8_t *qb = q + QK_K * b;
                        for (int i = 0; i < TILE_RB; i++)
                                L[i] = _mm256_setzero_si256();
                        for (int c = 0; c < 8; c++) {
                                const __m256i av = SIMD(load32)(qb + 32 * c);
                                for (int i = 0; i < TILE_RB; i++)
                                        L[i] = MAC_SCALED(L[i], SIMD(load32)(tl->u[i] + QK_K * b + 32 * c), av,
                                                          SIMD(load32)(tl->sc[i][8 * b + c]));
                        }
                        __m256i isum = SIMD(hsum8x8)(L);
                        if (tk->k_off)
                                isum = _mm256_sub_epi32(isum, SIMD(pairs_dot)(tl->op[b], bs + 16 * b));
                        const __m256 da = _mm256_set1_ps(d[b]);
                        const __m256 dw = _mm256_loadu_ps(tl->dw[b]);
                        acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, da), _mm256_cvtepi32_ps(isum), acc);
                        if (tk->mink == 2) {
                                const __m256 neg = _mm256_xor_ps(_mm256_mul_ps(_mm256_loadu_ps(tl->dm[b]), da),
                                                                 _mm256_set1_ps(-0.0f));
                                acc = _mm256_fmadd_ps(neg, _mm256_cvtepi32_ps(SIMD(pairs_dot)(tl->mp[b], bs + 16 * b)),
                                                      acc);
                        }
                }
        }
        _mm256_storeu_ps(out, acc);
}

#undef DEFINE_TILE_UNPACK

#undef RB
#undef QPD
#undef DEFINE_GROUP
#undef DEFINE_ROWS
#undef K_CHUNK
#undef BIT_TO
#undef BCAST16
#undef PAIR16
