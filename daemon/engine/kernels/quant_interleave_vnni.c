/* SPDX-License-Identifier: MIT */
/*
 * The AVX-512 VNNI one-token kernel of the interleaved Q4_0, Q4_1, Q5_0
 * and Q5_1 matrices (quant_interleave.h). Per block of a group, sixteen
 * rows in the sixteen int32 lanes: four vectors of nibbles, each split into
 * its low and high nibbles, Q5's fifth bits added as 16 under the ready
 * byte masks,
 * and each met by four activation bytes broadcast (vpdpbusd): eight
 * instructions of products for 512 of them, no horizontal sums. The
 * numbers are kernels_quant.h's definition: each block's isum exactly,
 * then the same float steps in the same order, a row per lane.
 *
 * Reading memory: the rows come in chunks of 64 (the cpu back end's), four
 * groups; the four are walked together, QI_STEP blocks of one then of the
 * next, each prefetched QI_AHEAD blocks ahead into L1: four streams a
 * thread, each one sequential. Zen 5 EPYC, 2 threads, 1 GB of Q5_0 at
 * 11008x4096 in a standalone copy: one group at a time 28-37 GB/s with
 * any prefetch, four 46-50, eight 39-43; 8 blocks ahead 50-55, 16 46-50,
 * 32 39-44, none 28-31 (the read bandwidth 47-58). Then in npu-kbench,
 * paired with the probe, three rounds alternated (5632x2048 / 11008x4096):
 * 2 blocks a step 78-87 / 87-94 %, 4 blocks 75-85 / 85-89 %, 8 blocks
 * 70-74 / 68-84 %, 1 block 70 / 77-96 %; two groups 55-62 / 56-62 %,
 * eight 63-85 / 69-92 %; 6 or 12 blocks ahead no better than 8. The
 * last blocks of each group prefetch the start of the same stream in the
 * next chunk (the group QI_STREAMS on: a thread takes its chunks in
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

#define QI_STREAMS 4 /* groups walked together */
#define QI_STEP 2    /* blocks of a group, then the next group's */
#define QI_AHEAD 8   /* blocks ahead a group is prefetched */

static int32_t qi_i32(const int8_t *p)
{
        int32_t v;
        memcpy(&v, p, 4);
        return v;
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
                qi_nibbles(x, k, m, &lo, &hi);
                s0 = _mm512_dpbusd_epi32(s0, lo, _mm512_set1_epi32(qi_i32(qb + 4 * m)));
                s1 = _mm512_dpbusd_epi32(s1, hi, _mm512_set1_epi32(qi_i32(qb + 16 + 4 * m)));
        }
        __m512i isum = _mm512_add_epi32(s0, s1);
        if (k->off)
                isum = _mm512_sub_epi32(isum, _mm512_set1_epi32(k->off * asum));
        acc = _mm512_fmadd_ps(_mm512_mul_ps(qi_f16x16(x + k->d), _mm512_set1_ps(da)), _mm512_cvtepi32_ps(isum), acc);
        if (k->m)
                acc = _mm512_fmadd_ps(qi_f16x16(x + k->m), _mm512_set1_ps(sa), acc);
        return acc;
}

/* ng (<= QI_STREAMS) groups at g[], nb blocks each, against one token's activations: acc[i] group i's rows */
VNNI_INLINE void qi_walk(const uint8_t *const *g, int ng, int64_t nb, const struct qi_layout *k, const int8_t *q,
                         const float *d, const float *s, const int32_t *asum, __m512 *acc)
{
        const int lines = (int)DIV_ROUND_UP(k->bytes, 64);
        /* past a group's end, the same stream of the next chunk: the group QI_STREAMS on */
        const int64_t next = (QI_STREAMS - 1) * nb * (int64_t)k->bytes;

        for (int i = 0; i < ng; i++)
                acc[i] = _mm512_setzero_ps();
        for (int64_t b0 = 0; b0 < nb; b0 += QI_STEP)
                for (int i = 0; i < ng; i++)
                        for (int64_t b = b0; b < MIN(b0 + QI_STEP, nb); b++) {
                                const uint8_t *x = g[i] + b * k->bytes;
                                const char *p = (const char *)x + QI_AHEAD * k->bytes +
                                                (b + QI_AHEAD >= nb ? next : 0);
                                for (int c = 0; c < lines; c++)
                                        _mm_prefetch(p + 64 * c, _MM_HINT_T0);
                                acc[i] = qi_block(x, k, q + 32 * b, d[b], asum ? asum[b] : 0, s ? s[b] : 0, acc[i]);
                        }
}

VNNI_FN void matmul_interleaved_vnni(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok,
                                     float *y, size_t ys, int64_t r0, int64_t r1)
{
        struct qi_layout k;
        if (!qi_layout_of(w->type, &k))
                return;
        const int64_t K = w->cols, nb = K / 32, group_bytes = QI_ROWS * (int64_t)w->row_bytes;
        const int8_t *q = a->scheme == ACT_SCHEME_TOKEN_I8 ? a->tok.q8 : a->q;

        for (int64_t g0 = r0 / QI_ROWS; g0 * QI_ROWS < r1; g0 += QI_STREAMS) {
                const int ng = (int)MIN(QI_STREAMS, DIV_ROUND_UP(r1, QI_ROWS) - g0);
                const uint8_t *g[QI_STREAMS];
                for (int i = 0; i < ng; i++)
                        g[i] = (const uint8_t *)w->data + (g0 + i) * group_bytes;
                for (int64_t t = 0; t < n_tok; t++) {
                        __m512 acc[QI_STREAMS];
                        float out[QI_STREAMS][QI_ROWS];
                        qi_walk(g, ng, nb, &k, q + t * K, a->d + t * nb, a->s ? a->s + t * nb : NULL,
                                a->asum ? a->asum + t * nb : NULL, acc);
                        for (int i = 0; i < ng; i++) {
                                _mm512_storeu_ps(out[i], acc[i]);
                                for (int r = 0; r < QI_ROWS; r++) {
                                        const int64_t row = (g0 + i) * QI_ROWS + r;
                                        if (row >= r0 && row < r1)
                                                y[t * ys + row] = out[i][r];
                                }
                        }
                }
        }
}
