/* SPDX-License-Identifier: MIT */
/*
 * Attention scores over the q8 KV cache with the query in int8 too
 * (kernels.h): the dot product of a head's int8 query and an int8 key is an
 * integer, summed exactly, so every kernel path (portable C, AVX2, AVX-512
 * VNNI) and every way of walking the rows gives the same integer and then
 * the same float, ((float)dot * (qs * ks)) * scale.
 *
 * - AVX-512 VNNI: vpdpbusd takes an unsigned and a signed byte; the key's
 *   bytes plus 128 (an exclusive or) times the query's, less 128 times the
 *   sum of the query's bytes (attn_query_sums, once per token and head).
 * - AVX2: vpmaddubsw of |q| and k with q's sign, pairs summed in int16
 *   (2 x 127 x 127 fits), then vpmaddwd into int32. Exact for key bytes in
 *   [-127, 127], all that the cache holds (npu_ref_quant_i8).
 */
#include <immintrin.h>
#include <string.h>

#include "kernels.h"
#include "quant.h"
#include "prefetch.h"

void attn_query_sums(const int8_t *qi, int32_t *qsum, int32_t n_heads, int32_t hd)
{
        for (int32_t h = 0; h < n_heads; h++) {
                int32_t sum = 0;
                for (int32_t e = 0; e < hd; e++)
                        sum += qi[(size_t)h * hd + e];
                qsum[h] = sum;
        }
}

/* each head's hd values as the cache stores K and V: the device's QUANT_I8 rule */
void attn_quantize_query(const float *q, int8_t *qi, float *qs, int32_t *qsum, int32_t n_heads, int32_t hd)
{
        quant_rows_i8(q, qi, qs, hd, n_heads);
        attn_query_sums(qi, qsum, n_heads, hd);
}

/* the one float formula of a score, from its exact dot product */
static inline float q8_score(int32_t dot, float qs, float ks, float scale)
{
        return ((float)dot * (qs * ks)) * scale;
}

/* --- portable C --- */

static int32_t idot_scalar(const int8_t *q, const int8_t *k, int32_t hd)
{
        int32_t s = 0;
        for (int32_t e = 0; e < hd; e++)
                s += (int32_t)q[e] * k[e];
        return s;
}

static void scores_rows_scalar(const int8_t *q, const float *qs, const int32_t *qsum,
                               const int8_t *k, const float *ks, size_t stride,
                               size_t sstride, int32_t n, int32_t n_heads, int32_t group, int32_t hd, float scale,
                               float *scores, size_t ld)
{
        (void)qsum; /* the signed dot needs no correction */
        for (int32_t h = 0; h < n_heads; h++)
                for (int32_t p = 0; p < n; p++)
                        scores[h * ld + p] = q8_score(idot_scalar(q + (size_t)h * hd, k + p * stride + (size_t)(h / group) * hd, hd),
                                                      qs[h], ks[p * sstride + h / group], scale);
}

/* --- AVX2 --- */

#define AVX2 __attribute__((target("avx2,fma")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma")))

AVX2_INLINE int32_t hsum_epi32_avx2(__m256i v)
{
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
        return _mm_cvtsi128_si32(s);
}

/* four rows of one head at once: 32 bytes at a time, then the tail */
AVX2_INLINE void idot4_avx2(const int8_t *q, const int8_t *const *rows, int32_t hd, int32_t *d)
{
        const __m256i ones = _mm256_set1_epi16(1);
        __m256i acc[4] = { _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                           _mm256_setzero_si256() };
        int32_t i = 0;
        for (; i + 32 <= hd; i += 32) {
                const __m256i qv = _mm256_loadu_si256((const __m256i *)(q + i)), qa = _mm256_abs_epi8(qv);
                for (int r = 0; r < 4; r++) {
                        const __m256i kv = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(rows[r] + i)), qv);
                        acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(_mm256_maddubs_epi16(qa, kv), ones));
                }
        }
        for (int r = 0; r < 4; r++) {
                d[r] = hsum_epi32_avx2(acc[r]);
                for (int32_t e = i; e < hd; e++)
                        d[r] += (int32_t)q[e] * rows[r][e];
        }
}

AVX2 static void scores_rows_avx2(const int8_t *q, const float *qs, const int32_t *qsum,
                                  const int8_t *k, const float *ks, size_t stride,
                                  size_t sstride, int32_t n, int32_t n_heads, int32_t group, int32_t hd, float scale,
                                  float *scores, size_t ld)
{
        (void)qsum; /* the signed dot needs no correction */
        for (int32_t p = 0; p < n; p += 4) {
                const int32_t np = MIN(4, n - p);
                for (int32_t h = 0; h < n_heads; h++) {
                        const int8_t *rows[4];
                        int32_t d[4];
                        for (int r = 0; r < 4; r++)
                                rows[r] = k + (size_t)(p + MIN(r, np - 1)) * stride + (size_t)(h / group) * hd;
                        idot4_avx2(q + (size_t)h * hd, rows, hd, d);
                        for (int r = 0; r < np; r++)
                                scores[h * ld + p + r] = q8_score(d[r], qs[h], ks[(p + r) * sstride + h / group], scale);
                }
        }
}

/* --- AVX-512 VNNI --- */

#define VNNI __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))
#define VNNI_INLINE static inline __attribute__((always_inline, target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))

/* the lane sums of 16 vectors (integers: any order gives them): lane 4 (r % 4) + r / 4 holds v[r]'s */
VNNI_INLINE __m512i hsum16x16_epi32(const __m512i *v)
{
        __m512i w[8], z[4], s[2];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++)
                w[k] = _mm512_add_epi32(_mm512_shuffle_i32x4(v[2 * k], v[2 * k + 1], 0x44),
                                        _mm512_shuffle_i32x4(v[2 * k], v[2 * k + 1], 0xee));
#pragma GCC unroll 4
        for (int m = 0; m < 4; m++)
                z[m] = _mm512_add_epi32(_mm512_shuffle_i32x4(w[2 * m], w[2 * m + 1], 0x88),
                                        _mm512_shuffle_i32x4(w[2 * m], w[2 * m + 1], 0xdd));
#pragma GCC unroll 2
        for (int n = 0; n < 2; n++)
                s[n] = _mm512_add_epi32(
                        _mm512_castps_si512(_mm512_shuffle_ps(_mm512_castsi512_ps(z[2 * n]), _mm512_castsi512_ps(z[2 * n + 1]), 0x44)),
                        _mm512_castps_si512(_mm512_shuffle_ps(_mm512_castsi512_ps(z[2 * n]), _mm512_castsi512_ps(z[2 * n + 1]), 0xee)));
        return _mm512_add_epi32(
                _mm512_castps_si512(_mm512_shuffle_ps(_mm512_castsi512_ps(s[0]), _mm512_castsi512_ps(s[1]), 0x88)),
                _mm512_castps_si512(_mm512_shuffle_ps(_mm512_castsi512_ps(s[0]), _mm512_castsi512_ps(s[1]), 0xdd)));
}

/*
 * np (<= 16) rows' lane sums of key bytes + 128 times the query's, 64 bytes
 * at a time (the last piece masked); rows past np are zero. Inlined with
 * np = 16, the accumulators stay in registers.
 */
VNNI_INLINE void dots_vnni(__m512i *acc, const int8_t *qh, const int8_t *k, size_t stride, int32_t hd, int32_t np)
{
        const __m512i bias = _mm512_set1_epi8((char)0x80);
#pragma GCC unroll 16
        for (int r = 0; r < 16; r++)
                acc[r] = _mm512_setzero_si512();
        for (int32_t c = 0; c < hd; c += 64) {
                const __mmask64 m = hd - c >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (hd - c)) - 1);
                const __m512i qv = _mm512_maskz_loadu_epi8(m, qh + c);
#pragma GCC unroll 16
                for (int r = 0; r < np; r++)
                        acc[r] = _mm512_dpbusd_epi32(
                                acc[r], _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, k + (size_t)r * stride + c), bias), qv);
        }
}

/*
 * Blocks of 16 rows, head by head (the block after each prefetched into
 * L1 meanwhile): per row, 64 bytes at a time (the last
 * piece masked), key bytes + 128 times the query's; the 16 rows' lane sums
 * in one transposed reduction, less 128 times the query's byte sum.
 */
VNNI static void scores_rows_vnni(const int8_t *q, const float *qs, const int32_t *qsum,
                                  const int8_t *k, const float *ks, size_t stride,
                                  size_t sstride, int32_t n, int32_t n_heads, int32_t group, int32_t hd, float scale,
                                  float *scores, size_t ld)
{
        const __m512i row_order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        const __m512i scale_index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                       _mm512_set1_epi32((int)sstride));
        const __m512 scale16 = _mm512_set1_ps(scale);

        for (int32_t h = 0; h < n_heads; h++) {
                const int8_t *qh = q + (size_t)h * hd;
                const size_t off = (size_t)(h / group) * hd;
                const __m512i corr = _mm512_set1_epi32(128 * qsum[h]);
                for (int32_t p0 = 0; p0 < n; p0 += 16) {
                        const int32_t np = MIN(16, n - p0);
                        __m512i acc[16];
                        if (p0 + 16 < n)
                                prefetch_rows_l1(k + (size_t)(p0 + 16) * stride + off, stride, MIN(16, n - p0 - 16),
                                                 hd);
                        else if (h + 1 < n_heads)
                                prefetch_rows_l1(k + (size_t)((h + 1) / group) * hd, stride, MIN(16, n), hd);
                        if (np == 16)
                                dots_vnni(acc, qh, k + (size_t)p0 * stride + off, stride, hd, 16);
                        else
                                dots_vnni(acc, qh, k + (size_t)p0 * stride + off, stride, hd, np);
                        const __m512i d = _mm512_sub_epi32(_mm512_permutexvar_epi32(row_order, hsum16x16_epi32(acc)), corr);
                        const float *sc = ks + (size_t)p0 * sstride + h / group;
                        const __m512 kscale = np == 16 ? _mm512_i32gather_ps(scale_index, sc, 4)
                                                       : _mm512_mask_i32gather_ps(_mm512_set1_ps(0), (__mmask16)((1u << np) - 1),
                                                                                  scale_index, sc, 4);
                        /* q8_score, 16 lanes: ((float)dot * (qs * ks)) * scale */
                        const __m512 s = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(d),
                                                                     _mm512_mul_ps(_mm512_set1_ps(qs[h]), kscale)),
                                                       scale16);
                        _mm512_mask_storeu_ps(scores + h * ld + p0, (__mmask16)((1u << np) - 1), s);
                }
        }
}

/* t[r] <- column r of the 16 x 16 floats in t (rows r of the input become lanes r of the output) */
VNNI_INLINE void transpose16x16_ps(__m512 *t)
{
        __m512 a[16], b[16];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
                a[2 * i] = _mm512_unpacklo_ps(t[2 * i], t[2 * i + 1]);
                a[2 * i + 1] = _mm512_unpackhi_ps(t[2 * i], t[2 * i + 1]);
        }
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
                b[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a[4 * i]), _mm512_castps_pd(a[4 * i + 2])));
                b[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a[4 * i]), _mm512_castps_pd(a[4 * i + 2])));
                b[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a[4 * i + 1]), _mm512_castps_pd(a[4 * i + 3])));
                b[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a[4 * i + 1]), _mm512_castps_pd(a[4 * i + 3])));
        }
        /* b[4i + j]: rows 4i..4i+3, element j of each 128-bit lane */
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
                a[j] = _mm512_shuffle_f32x4(b[j], b[4 + j], 0x88);
                a[4 + j] = _mm512_shuffle_f32x4(b[j], b[4 + j], 0xdd);
                a[8 + j] = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0x88);
                a[12 + j] = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0xdd);
        }
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
                t[j] = _mm512_shuffle_f32x4(a[j], a[8 + j], 0x88);
                t[4 + j] = _mm512_shuffle_f32x4(a[4 + j], a[12 + j], 0x88);
                t[8 + j] = _mm512_shuffle_f32x4(a[j], a[8 + j], 0xdd);
                t[12 + j] = _mm512_shuffle_f32x4(a[4 + j], a[12 + j], 0xdd);
        }
}

/* scores_rows_vnni_ordered with the head size a constant HD (64 or 128), so each head's dot unrolls */
VNNI_INLINE void scores_rows_vnni_ordered_hd(const int8_t *q, const float *qs, const int32_t *qsum,
                                             const int8_t *k, const float *ks,
                                             size_t stride, size_t sstride, int32_t n, int32_t n_heads,
                                             int32_t group, const int32_t HD, float scale, float *scores, size_t ld)
{
        const __m512i row_order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        const __m512i bias = _mm512_set1_epi8((char)0x80);
        const __m512 scale16 = _mm512_set1_ps(scale);
        const int32_t nhb = n_heads / 16;
        _Alignas(64) int32_t corr[256];
        _Alignas(64) int32_t kvh[256];
        _Alignas(64) float t[16][16][16];

        for (int32_t h = 0; h < n_heads; h++) {
                corr[h] = 128 * qsum[h];
                kvh[h] = h / group;
        }
        for (int32_t p0 = 0; p0 < n; p0 += 16) {
                const int32_t np = MIN(16, n - p0);
                for (int32_t r = 0; r < np; r++) {
                        const int8_t *row = k + (size_t)(p0 + r) * stride;
                        const float *sc = ks + (size_t)(p0 + r) * sstride;
                        for (int32_t hb = 0; hb < nhb; hb++) {
                                const int8_t *qb = q + (size_t)hb * 16 * HD;
                                __m512i acc[16];
#pragma GCC unroll 16
                                for (int i = 0; i < 16; i++) {
                                        const int8_t *kr = row + (size_t)(group == 1 ? hb * 16 + i : kvh[hb * 16 + i]) * HD;
                                        __m512i a = _mm512_setzero_si512();
#pragma GCC unroll 4
                                        for (int32_t c = 0; c < HD; c += 64) {
                                                /* the same line of the next row (past the run: harmless) */
                                                _mm_prefetch((const char *)kr + c + stride, _MM_HINT_T0);
                                                a = _mm512_dpbusd_epi32(a, _mm512_xor_si512(_mm512_loadu_si512(kr + c), bias),
                                                                        _mm512_loadu_si512(qb + i * HD + c));
                                        }
                                        acc[i] = a;
                                }
                                const __m512i d = _mm512_sub_epi32(_mm512_permutexvar_epi32(row_order, hsum16x16_epi32(acc)),
                                                                   _mm512_load_si512(corr + hb * 16));
                                const __m512 kscale = group == 1 ? _mm512_loadu_ps(sc + hb * 16)
                                                                 : _mm512_i32gather_ps(_mm512_load_si512(kvh + hb * 16), sc, 4);
                                _mm512_store_ps(t[hb][r], _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(d),
                                                                                      _mm512_mul_ps(_mm512_loadu_ps(qs + hb * 16), kscale)),
                                                                        scale16));
                        }
                }
                for (int32_t hb = 0; hb < nhb; hb++) {
                        __m512 x[16];
#pragma GCC unroll 16
                        for (int r = 0; r < 16; r++)
                                x[r] = r < np ? _mm512_load_ps(t[hb][r]) : _mm512_setzero_ps();
                        transpose16x16_ps(x);
#pragma GCC unroll 16
                        for (int i = 0; i < 16; i++)
                                _mm512_mask_storeu_ps(scores + (size_t)(hb * 16 + i) * ld + p0, (__mmask16)((1u << np) - 1), x[i]);
                }
        }
}

/*
 * The heads of GQA groups (group >= 2, hd a multiple of 64): for each KV
 * head, the block's (up to 16) rows of its 64-byte column pieces, key
 * bytes + 128, turned by one 16 x 16 transpose of 4-byte words into 16
 * vectors whose lane r holds row r's word c; then each head of the group
 * meets them with its own query word c broadcast (vpdpbusd), so its 16
 * rows' dots come out in the 16 lanes, no horizontal sums, the transpose
 * shared by the group's heads; each KV head's slice of the next block's
 * rows is asked for into L1 as the block's slice is read. The same integer
 * dots and the same float formula as scores_rows_vnni. Zen 5, 2 threads,
 * attn-bench -n 4000 -k q8 (K and V), taking turns step by step with the
 * ordered walk (which computes a row's 16 heads' dots as 16 vectors of
 * lane sums, each then summed across): TinyLlama's shape (32 heads, 4 KV
 * heads, hd 64) 4.1-4.2 -> 3.2-3.3 ms; Llama 3 8B's (32/8, hd 128)
 * 14.9-16.8 -> 14.0-15.7 ms (with the whole next block asked for at the
 * block's start instead: 5-7 % slower than the ordered walk).
 */
#define GQA_HEADS_STEP 8 /* heads of a group met together (their accumulators) */
/* acc[i] += the 16 words of t met by head i's query words (qc: head 0's, heads hd apart) */
VNNI_INLINE void gqa_dots(__m512i *acc, const __m512 *t, const int8_t *qc, int32_t hd, const int NH)
{
#pragma GCC unroll 16
        for (int c = 0; c < 16; c++)
#pragma GCC unroll 8
                for (int i = 0; i < NH; i++) {
                        int32_t word;
                        memcpy(&word, qc + (size_t)i * hd + 4 * c, 4);
                        acc[i] = _mm512_dpbusd_epi32(acc[i], _mm512_castps_si512(t[c]), _mm512_set1_epi32(word));
                }
}
VNNI static void scores_rows_vnni_gqa(const int8_t *q, const float *qs, const int32_t *qsum, const int8_t *k,
                                      const float *ks, size_t stride, size_t sstride, int32_t n, int32_t n_heads,
                                      int32_t group, int32_t hd, float scale, float *scores, size_t ld)
{
        const __m512i bias = _mm512_set1_epi8((char)0x80);
        const __m512i scale_index = _mm512_mullo_epi32(
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                _mm512_set1_epi32((int)sstride));
        const __m512 scale16 = _mm512_set1_ps(scale);
        const int32_t n_kv = n_heads / group;

        for (int32_t p0 = 0; p0 < n; p0 += 16) {
                const int32_t np = MIN(16, n - p0);
                const __mmask16 rows = (__mmask16)((1u << np) - 1);
                for (int32_t g = 0; g < n_kv; g++) {
                        const int8_t *kg = k + (size_t)p0 * stride + (size_t)g * hd;
                        /* past the run: the next block's rows where the blocks were handed out in order,
                         * else a harmless miss */
                        prefetch_rows_l1(kg + 16 * stride, stride, 16, hd);
                        const __m512 kscale = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), rows, scale_index,
                                                                       ks + (size_t)p0 * sstride + g, 4);
                        for (int32_t h0 = g * group; h0 < (g + 1) * group; h0 += GQA_HEADS_STEP) {
                                const int32_t nh = MIN(GQA_HEADS_STEP, (g + 1) * group - h0);
                                __m512i acc[GQA_HEADS_STEP];
                                for (int i = 0; i < GQA_HEADS_STEP; i++)
                                        acc[i] = _mm512_setzero_si512();
                                for (int32_t c0 = 0; c0 < hd; c0 += 64) {
                                        __m512 t[16];
                                        for (int r = 0; r < 16; r++)
                                                t[r] = r < np ? _mm512_castsi512_ps(_mm512_xor_si512(
                                                                        _mm512_loadu_si512(kg + r * stride + c0), bias))
                                                              : _mm512_setzero_ps();
                                        transpose16x16_ps(t);
                                        const int8_t *qc = q + (size_t)h0 * hd + c0;
                                        switch (nh) {
                                        case 8: gqa_dots(acc, t, qc, hd, 8); break;
                                        case 7: gqa_dots(acc, t, qc, hd, 7); break;
                                        case 6: gqa_dots(acc, t, qc, hd, 6); break;
                                        case 5: gqa_dots(acc, t, qc, hd, 5); break;
                                        case 4: gqa_dots(acc, t, qc, hd, 4); break;
                                        case 3: gqa_dots(acc, t, qc, hd, 3); break;
                                        case 2: gqa_dots(acc, t, qc, hd, 2); break;
                                        default: gqa_dots(acc, t, qc, hd, 1); break;
                                        }
                                }
                                for (int i = 0; i < nh; i++) {
                                        const int32_t h = h0 + i;
                                        const __m512i d = _mm512_sub_epi32(acc[i], _mm512_set1_epi32(128 * qsum[h]));
                                        /* q8_score, 16 lanes: ((float)dot * (qs * ks)) * scale */
                                        const __m512 qk = _mm512_mul_ps(_mm512_set1_ps(qs[h]), kscale);
                                        const __m512 sc =
                                                _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(d), qk), scale16);
                                        _mm512_mask_storeu_ps(scores + (size_t)h * ld + p0, rows, sc);
                                }
                        }
                }
        }
}

/*
 * Rows in address order (heads a multiple of 16, hd of 64 or 128), each
 * line of the next row asked for into L1 as the same line of this row is
 * read (attn-bench -n 4000 -k q8, alternated, on Zen 5: the whole next
 * row at the start of each, 28.6-30.2 ms against 31.0-33.3 without; on a
 * Sapphire Rapids class Xeon the requests spread over the row instead of
 * in a burst: one thread, 256 MiB of rows, 13.6-14.8 GB/s against
 * 12.7-13.5; attn-bench -n 4000 -k q8 with the V pass skipped, 2
 * threads: the next row's lines 2 to 6 rows ahead, or into L2, or the
 * block's rows taken as two streams 8 rows apart, all alike at 20.5-22.4
 * ms): each row's dots
 * for 16 heads at a time, their lane sums in one transposed
 * reduction, the scores of 16 rows then transposed into the heads' rows
 * of scores. The same integer dots and the same float formula as
 * scores_rows_vnni.
 */
VNNI static void scores_rows_vnni_ordered(const int8_t *q, const float *qs, const int32_t *qsum,
                                          const int8_t *k, const float *ks,
                                          size_t stride, size_t sstride, int32_t n, int32_t n_heads, int32_t group,
                                          int32_t hd, float scale, float *scores, size_t ld)
{
        if (hd == 128)
                scores_rows_vnni_ordered_hd(q, qs, qsum, k, ks, stride, sstride, n, n_heads, group, 128, scale, scores, ld);
        else
                scores_rows_vnni_ordered_hd(q, qs, qsum, k, ks, stride, sstride, n, n_heads, group, 64, scale, scores, ld);
}

/* --- dispatch --- */

void attn_scores_rows_q8(const int8_t *q, const float *qs, const int32_t *qsum,
                         const int8_t *k, const float *ks, size_t stride,
                         size_t sstride, int32_t n, int32_t n_heads, int32_t group, int32_t hd, float scale,
                         float *scores, size_t ld)
{
        if (kernels_isa() >= KERNEL_ISA_AVX512_VNNI && group > 1 && hd % 64 == 0)
                scores_rows_vnni_gqa(q, qs, qsum, k, ks, stride, sstride, n, n_heads, group, hd, scale, scores, ld);
        else if (kernels_isa() >= KERNEL_ISA_AVX512_VNNI && n_heads % 16 == 0 && n_heads <= 256 &&
                 (hd == 64 || hd == 128))
                scores_rows_vnni_ordered(q, qs, qsum, k, ks, stride, sstride, n, n_heads, group, hd, scale, scores, ld);
        else if (kernels_isa() >= KERNEL_ISA_AVX512_VNNI)
                scores_rows_vnni(q, qs, qsum, k, ks, stride, sstride, n, n_heads, group, hd, scale, scores, ld);
        else if (kernels_isa() >= KERNEL_ISA_AVX2)
                scores_rows_avx2(q, qs, qsum, k, ks, stride, sstride, n, n_heads, group, hd, scale, scores, ld);
        else
                scores_rows_scalar(q, qs, qsum, k, ks, stride, sstride, n, n_heads, group, hd, scale, scores, ld);
}

void attn_scores_q8(const int8_t *q, float qs, int32_t qsum, const int8_t *k, const float *ks, size_t stride,
                    size_t sstride, int32_t n, int32_t hd, float scale, float *scores)
{
        attn_scores_rows_q8(q, &qs, &qsum, k, ks, stride, sstride, n, 1, 1, hd, scale, scores, 0);
}
