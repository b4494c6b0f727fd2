/* SPDX-License-Identifier: MIT */
/*
 * Attention over the int8 rows of the q8 KV cache (kernels.h, kv_cache.h):
 * the bytes are converted to float (exactly) as they are read, so a head
 * reads half the bytes of an f16 cache. Portable C, AVX2 and AVX-512 (where
 * the int8 kernels use AVX-512 VNNI); within each,
 * the all-heads row kernels compute every head's scores and sums with the
 * same operations in the same order as the per-head kernels.
 */
#include <immintrin.h>
#include <math.h>

#include "kernels.h"

#define AVX2 __attribute__((target("avx2,fma")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma")))

/* --- portable C --- */

static float dot_q8_scalar(const float *q, const int8_t *k, int32_t hd)
{
        float s = 0;
        for (int32_t e = 0; e < hd; e++)
                s += q[e] * (float)k[e];
        return s;
}

static void scores_q8_scalar(const float *q, const int8_t *k, const float *ks, size_t stride, size_t sstride,
                             int32_t n, int32_t hd, float scale, float *scores)
{
        for (int32_t p = 0; p < n; p++)
                scores[p] = (dot_q8_scalar(q, k + p * stride, hd) * ks[p * sstride]) * scale;
}

static void accum_q8_scalar(float *out, const int8_t *v, const float *vs, size_t stride, size_t sstride,
                            const float *w, int32_t n, int32_t hd)
{
        for (int32_t p = 0; p < n; p++) {
                const float a = w[p] * vs[p * sstride];
                for (int32_t e = 0; e < hd; e++)
                        out[e] += a * (float)v[p * stride + e];
        }
}

/* --- AVX2 --- */

AVX2_INLINE __m256 cvt8(const int8_t *x)
{
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)x)));
}

AVX2_INLINE float hsum(__m256 v)
{
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        return _mm_cvtss_f32(s);
}

/* dot(q, k) of one head: two accumulators over 16 lanes, their sum, then the tail, in this order */
AVX2_INLINE float dot_q8_avx2(const float *q, const int8_t *k, int32_t hd)
{
        __m256 a = _mm256_setzero_ps(), b = a;
        int32_t i = 0;
        for (; i + 16 <= hd; i += 16) {
                a = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), cvt8(k + i), a);
                b = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), cvt8(k + i + 8), b);
        }
        float s = hsum(_mm256_add_ps(a, b));
        for (; i < hd; i++)
                s = fmaf(q[i], (float)k[i], s);
        return s;
}

/* The next rows (p0 to p1) into L2: at Llama-7B's shape a row is 4 KiB, a page, where the prefetchers stop. */
AVX2_INLINE void prefetch_rows(const int8_t *x, size_t stride, int32_t p0, int32_t p1, size_t row_bytes)
{
        for (int32_t f = p0; f < p1; f++)
                for (size_t b = 0; b < row_bytes; b += 64)
                        _mm_prefetch((const char *)(x + f * stride) + b, _MM_HINT_T1);
}

AVX2 static void scores_q8_avx2(const float *q, const int8_t *k, const float *ks, size_t stride, size_t sstride,
                                int32_t n, int32_t hd, float scale, float *scores)
{
        for (int32_t p = 0; p < n; p++)
                scores[p] = (dot_q8_avx2(q, k + p * stride, hd) * ks[p * sstride]) * scale;
}

/* head sizes up to which the heads of a GQA group convert their shared K/V slice once */
#define Q8_GQA_MAX_HD 256

AVX2_INLINE void q8_to_f32(const int8_t *x, float *y, int32_t n)
{
        int32_t i = 0;
        for (; i + 8 <= n; i += 8)
                _mm256_storeu_ps(y + i, cvt8(x + i));
        for (; i < n; i++)
                y[i] = (float)x[i];
}

/*
 * Four rows of one query head, each with dot_q8_avx2's accumulators and
 * order (the rows' chains side by side); the rows' values come from L(r, i)
 * as 8 floats, the same whether converted on the fly or beforehand (the
 * conversion is exact).
 */
#define DOT4(qh, hd, hd16, L, s0, s1, s2, s3, R)                                                            \
        do {                                                                                                \
                __m256 a0 = _mm256_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0,      \
                       b3 = a0;                                                                             \
                for (int32_t i = 0; i < (hd16); i += 16) {                                                  \
                        const __m256 qa = _mm256_loadu_ps((qh) + i), qb = _mm256_loadu_ps((qh) + i + 8);    \
                        a0 = _mm256_fmadd_ps(qa, L(0, i), a0);                                              \
                        b0 = _mm256_fmadd_ps(qb, L(0, i + 8), b0);                                          \
                        a1 = _mm256_fmadd_ps(qa, L(1, i), a1);                                              \
                        b1 = _mm256_fmadd_ps(qb, L(1, i + 8), b1);                                          \
                        a2 = _mm256_fmadd_ps(qa, L(2, i), a2);                                              \
                        b2 = _mm256_fmadd_ps(qb, L(2, i + 8), b2);                                          \
                        a3 = _mm256_fmadd_ps(qa, L(3, i), a3);                                              \
                        b3 = _mm256_fmadd_ps(qb, L(3, i + 8), b3);                                          \
                }                                                                                           \
                s0 = hsum(_mm256_add_ps(a0, b0)), s1 = hsum(_mm256_add_ps(a1, b1));                         \
                s2 = hsum(_mm256_add_ps(a2, b2)), s3 = hsum(_mm256_add_ps(a3, b3));                         \
                for (int32_t i = (hd16); i < (hd); i++) {                                                   \
                        s0 = fmaf((qh)[i], R(0, i), s0);                                                    \
                        s1 = fmaf((qh)[i], R(1, i), s1);                                                    \
                        s2 = fmaf((qh)[i], R(2, i), s2);                                                    \
                        s3 = fmaf((qh)[i], R(3, i), s3);                                                    \
                }                                                                                           \
        } while (0)

AVX2 static void scores_rows_q8_avx2(const float *q, const int8_t *k, const float *ks, size_t stride,
                                     size_t sstride, int32_t n, int32_t n_heads, int32_t group, int32_t hd,
                                     float scale, float *scores, size_t ld)
{
        const int32_t hd16 = hd & ~15;
        int32_t p = 0;

        for (; p + 4 <= n; p += 4) {
                const int8_t *rows[4] = { k + p * stride, k + (p + 1) * stride, k + (p + 2) * stride,
                                          k + (p + 3) * stride };
                prefetch_rows(k, stride, p + 4, MIN(p + 8, n), (size_t)(n_heads / group) * hd);
                for (int32_t g = 0; g < n_heads / group; g++) {
                        const size_t off = (size_t)g * hd;
                        const float *sc = ks + p * sstride + g;
                        float kf[4][Q8_GQA_MAX_HD];
                        const bool shared = group > 1 && hd <= Q8_GQA_MAX_HD;
                        /* grouped heads share the slice: convert it once */
                        for (int r = 0; shared && r < 4; r++)
                                q8_to_f32(rows[r] + off, kf[r], hd);
                        for (int32_t h = g * group; h < (g + 1) * group; h++) {
                                const float *qh = q + (size_t)h * hd;
                                float s0, s1, s2, s3;
#define LF(r, i) _mm256_loadu_ps(kf[r] + (i))
#define RF(r, i) kf[r][i]
#define LQ(r, i) cvt8(rows[r] + off + (i))
#define RQ(r, i) ((float)rows[r][off + (i)])
                                if (shared)
                                        DOT4(qh, hd, hd16, LF, s0, s1, s2, s3, RF);
                                else
                                        DOT4(qh, hd, hd16, LQ, s0, s1, s2, s3, RQ);
#undef LF
#undef RF
#undef LQ
#undef RQ
                                float *sh = scores + h * ld + p;
                                sh[0] = (s0 * sc[0]) * scale;
                                sh[1] = (s1 * sc[sstride]) * scale;
                                sh[2] = (s2 * sc[2 * sstride]) * scale;
                                sh[3] = (s3 * sc[3 * sstride]) * scale;
                        }
                }
        }
        for (; p < n; p++)
                for (int32_t h = 0; h < n_heads; h++)
                        scores[h * ld + p] = (dot_q8_avx2(q + (size_t)h * hd, k + p * stride + (size_t)(h / group) * hd,
                                                          hd) *
                                              ks[p * sstride + h / group]) *
                                             scale;
}

/* out[e] = fma(w[p] * vs[p], v[p][e], out[e]) for p ascending, 8 lanes at a time, then the last lanes */
AVX2 static void accum_q8_avx2(float *out, const int8_t *v, const float *vs, size_t stride, size_t sstride,
                               const float *w, int32_t n, int32_t hd)
{
        int32_t d = 0;
        /* 32 output lanes kept in registers across all n rows */
        for (; d + 32 <= hd; d += 32) {
                __m256 o0 = _mm256_loadu_ps(out + d), o1 = _mm256_loadu_ps(out + d + 8);
                __m256 o2 = _mm256_loadu_ps(out + d + 16), o3 = _mm256_loadu_ps(out + d + 24);
                for (int32_t p = 0; p < n; p++) {
                        const int8_t *r = v + p * stride + d;
                        const __m256 a = _mm256_set1_ps(w[p] * vs[p * sstride]);
                        o0 = _mm256_fmadd_ps(a, cvt8(r), o0);
                        o1 = _mm256_fmadd_ps(a, cvt8(r + 8), o1);
                        o2 = _mm256_fmadd_ps(a, cvt8(r + 16), o2);
                        o3 = _mm256_fmadd_ps(a, cvt8(r + 24), o3);
                }
                _mm256_storeu_ps(out + d, o0);
                _mm256_storeu_ps(out + d + 8, o1);
                _mm256_storeu_ps(out + d + 16, o2);
                _mm256_storeu_ps(out + d + 24, o3);
        }
        for (; d + 8 <= hd; d += 8) {
                __m256 o = _mm256_loadu_ps(out + d);
                for (int32_t p = 0; p < n; p++)
                        o = _mm256_fmadd_ps(_mm256_set1_ps(w[p] * vs[p * sstride]), cvt8(v + p * stride + d), o);
                _mm256_storeu_ps(out + d, o);
        }
        for (; d < hd; d++)
                for (int32_t p = 0; p < n; p++)
                        out[d] = fmaf(w[p] * vs[p * sstride], (float)v[p * stride + d], out[d]);
}

/* o[d] = fma(a[3], x3[d], fma(a[2], x2[d], fma(a[1], x1[d], fma(a[0], x0[d], o[d])))), rows from L(r, d) */
#define ACCUM4(o, hd, a, L, R)                                                                              \
        do {                                                                                                \
                const __m256 w0 = _mm256_set1_ps(a[0]), w1 = _mm256_set1_ps(a[1]);                         \
                const __m256 w2 = _mm256_set1_ps(a[2]), w3 = _mm256_set1_ps(a[3]);                         \
                int32_t d = 0;                                                                              \
                for (; d + 8 <= (hd); d += 8) {                                                             \
                        __m256 acc = _mm256_loadu_ps((o) + d);                                              \
                        acc = _mm256_fmadd_ps(w0, L(0, d), acc);                                            \
                        acc = _mm256_fmadd_ps(w1, L(1, d), acc);                                            \
                        acc = _mm256_fmadd_ps(w2, L(2, d), acc);                                            \
                        acc = _mm256_fmadd_ps(w3, L(3, d), acc);                                            \
                        _mm256_storeu_ps((o) + d, acc);                                                     \
                }                                                                                           \
                for (; d < (hd); d++) {                                                                     \
                        float x = (o)[d];                                                                   \
                        x = fmaf(a[0], R(0, d), x);                                                         \
                        x = fmaf(a[1], R(1, d), x);                                                         \
                        x = fmaf(a[2], R(2, d), x);                                                         \
                        (o)[d] = fmaf(a[3], R(3, d), x);                                                    \
                }                                                                                           \
        } while (0)

AVX2 static void accum_rows_q8_avx2(float *out, const int8_t *v, const float *vs, size_t stride, size_t sstride,
                                    const float *w, size_t ld, int32_t n, int32_t n_heads, int32_t group, int32_t hd)
{
        int32_t p = 0;

        for (; p + 4 <= n; p += 4) {
                const int8_t *rows[4] = { v + p * stride, v + (p + 1) * stride, v + (p + 2) * stride,
                                          v + (p + 3) * stride };
                prefetch_rows(v, stride, p + 4, MIN(p + 8, n), (size_t)(n_heads / group) * hd);
                for (int32_t g = 0; g < n_heads / group; g++) {
                        const size_t off = (size_t)g * hd;
                        const float *sc = vs + p * sstride + g;
                        float vf[4][Q8_GQA_MAX_HD];
                        const bool shared = group > 1 && hd <= Q8_GQA_MAX_HD;
                        for (int r = 0; shared && r < 4; r++)
                                q8_to_f32(rows[r] + off, vf[r], hd);
                        for (int32_t h = g * group; h < (g + 1) * group; h++) {
                                const float *wh = w + h * ld + p;
                                const float a[4] = { wh[0] * sc[0], wh[1] * sc[sstride], wh[2] * sc[2 * sstride],
                                                     wh[3] * sc[3 * sstride] };
                                float *o = out + (size_t)h * hd;
#define LF(r, d) _mm256_loadu_ps(vf[r] + (d))
#define RF(r, d) vf[r][d]
#define LQ(r, d) cvt8(rows[r] + off + (d))
#define RQ(r, d) ((float)rows[r][off + (d)])
                                if (shared)
                                        ACCUM4(o, hd, a, LF, RF);
                                else
                                        ACCUM4(o, hd, a, LQ, RQ);
#undef LF
#undef RF
#undef LQ
#undef RQ
                        }
                }
        }
        for (; p < n; p++)
                for (int32_t h = 0; h < n_heads; h++) {
                        const int8_t *r = v + p * stride + (size_t)(h / group) * hd;
                        const float a = w[h * ld + p] * vs[p * sstride + h / group];
                        float *o = out + (size_t)h * hd;
                        int32_t d = 0;
                        for (; d + 8 <= hd; d += 8)
                                _mm256_storeu_ps(o + d, _mm256_fmadd_ps(_mm256_set1_ps(a), cvt8(r + d),
                                                                        _mm256_loadu_ps(o + d)));
                        for (; d < hd; d++)
                                o[d] = fmaf(a, (float)r[d], o[d]);
                }
}

/*
 * --- AVX-512 (with AVX-512 VNNI's kernels): 16 lanes, the same structure;
 * blocks of 32 values in two accumulators, then the lanes' sum, then the
 * tail, in this order in every kernel of this set ---
 */

#define AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl")))
#define AVX512_INLINE static inline __attribute__((always_inline, target("avx2,fma,avx512f,avx512bw,avx512vl")))

AVX512_INLINE __m512 cvt16(const int8_t *x)
{
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)x)));
}

/* the sum of 16 lanes, in one fixed order */
AVX512_INLINE float hsum16(__m512 v)
{
        __m256 s = _mm256_add_ps(_mm512_castps512_ps256(v),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
        __m128 t = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        t = _mm_add_ps(t, _mm_movehl_ps(t, t));
        t = _mm_add_ss(t, _mm_movehdup_ps(t));
        return _mm_cvtss_f32(t);
}

AVX512_INLINE float dot_q8_avx512(const float *q, const int8_t *k, int32_t hd)
{
        __m512 a = _mm512_setzero_ps(), b = a;
        int32_t i = 0;
        for (; i + 32 <= hd; i += 32) {
                a = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), cvt16(k + i), a);
                b = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), cvt16(k + i + 16), b);
        }
        float s = hsum16(_mm512_add_ps(a, b));
        for (; i < hd; i++)
                s = fmaf(q[i], (float)k[i], s);
        return s;
}

AVX512_INLINE void q8_to_f32_512(const int8_t *x, float *y, int32_t n)
{
        int32_t i = 0;
        for (; i + 16 <= n; i += 16)
                _mm512_storeu_ps(y + i, cvt16(x + i));
        for (; i < n; i++)
                y[i] = (float)x[i];
}

AVX512 static void scores_q8_avx512(const float *q, const int8_t *k, const float *ks, size_t stride,
                                    size_t sstride, int32_t n, int32_t hd, float scale, float *scores)
{
        for (int32_t p = 0; p < n; p++)
                scores[p] = (dot_q8_avx512(q, k + p * stride, hd) * ks[p * sstride]) * scale;
}

/*
 * hsum16 of 16 vectors at once, the same additions lane for lane (a
 * transposed reduction): lane 4 (r % 4) + r / 4 of the result is the sum
 * of v[r]'s lanes.
 */
AVX512_INLINE __m512 hsum16x16(const __m512 *v)
{
        __m512 w[8], z[4], s[2];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) /* lanes i + 8 onto lanes i: v[2k] in the low half, v[2k + 1] in the high */
                w[k] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0x44),
                                     _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0xee));
#pragma GCC unroll 4
        for (int m = 0; m < 4; m++) /* lanes i + 4 onto lanes i: one vector's 4 in each 128-bit lane */
                z[m] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * m], w[2 * m + 1], 0x88),
                                     _mm512_shuffle_f32x4(w[2 * m], w[2 * m + 1], 0xdd));
#pragma GCC unroll 2
        for (int n = 0; n < 2; n++) /* lanes 2, 3 onto lanes 0, 1 */
                s[n] = _mm512_add_ps(_mm512_shuffle_ps(z[2 * n], z[2 * n + 1], 0x44),
                                     _mm512_shuffle_ps(z[2 * n], z[2 * n + 1], 0xee));
        return _mm512_add_ps(_mm512_shuffle_ps(s[0], s[1], 0x88), _mm512_shuffle_ps(s[0], s[1], 0xdd));
}

/*
 * dot_q8_avx512's two accumulators for 8 rows side by side, added: v[r]
 * for row r, its floats from L(r, i) (16 values from i)
 */
#define DOT8_ACC(qh, hd32, L, v)                                                                            \
        do {                                                                                                \
                __m512 a_[8], b_[8];                                                                        \
                _Pragma("GCC unroll 8") for (int r = 0; r < 8; r++) a_[r] = b_[r] = _mm512_setzero_ps();    \
                for (int32_t i = 0; i < (hd32); i += 32) {                                                  \
                        const __m512 qa_ = _mm512_loadu_ps((qh) + i), qb_ = _mm512_loadu_ps((qh) + i + 16); \
                        _Pragma("GCC unroll 8") for (int r = 0; r < 8; r++) {                               \
                                a_[r] = _mm512_fmadd_ps(qa_, L(r, i), a_[r]);                               \
                                b_[r] = _mm512_fmadd_ps(qb_, L(r, i + 16), b_[r]);                          \
                        }                                                                                   \
                }                                                                                           \
                _Pragma("GCC unroll 8") for (int r = 0; r < 8; r++)(v)[r] = _mm512_add_ps(a_[r], b_[r]);    \
        } while (0)

/* rows already converted (kf[r]) */
AVX512_INLINE void dot8_f32(const float *qh, int32_t hd32, float (*kf)[Q8_GQA_MAX_HD], __m512 *v)
{
#define L_F32(r, i) _mm512_loadu_ps(kf[r] + (i))
        DOT8_ACC(qh, hd32, L_F32, v);
#undef L_F32
}

/* int8 rows converted as they are read (exact: the same floats) */
AVX512_INLINE void dot8_q8(const float *qh, int32_t hd32, const int8_t *const *rows, __m512 *v)
{
#define L_Q8(r, i) cvt16(rows[r] + (i))
        DOT8_ACC(qh, hd32, L_Q8, v);
#undef L_Q8
}

/*
 * Blocks of 16 rows: per head the 16 rows' dot_q8_avx512 accumulators side
 * by side and one transposed reduction instead of 16 horizontal sums. The
 * heads of a GQA group convert their shared slice of the block to float
 * once; a head alone (group 1) converts its slice as it reads it, which
 * spares a store and a load of every value. The rows after the last whole
 * block (and grouped heads over Q8_GQA_MAX_HD) take dot_q8_avx512.
 */
AVX512 static void scores_rows_q8_avx512(const float *q, const int8_t *k, const float *ks, size_t stride,
                                         size_t sstride, int32_t n, int32_t n_heads, int32_t group, int32_t hd,
                                         float scale, float *scores, size_t ld)
{
        const int32_t hd32 = hd & ~31;
        const bool shared = group > 1;
        /* hsum16x16 leaves row r in lane 4 (r % 4) + r / 4 */
        const __m512i row_order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        const __m512i scale_index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                       _mm512_set1_epi32((int)sstride));
        const __m512 scale16 = _mm512_set1_ps(scale);
        float kf[16][Q8_GQA_MAX_HD], sums[16];
        int32_t p = 0;

        for (; (!shared || hd <= Q8_GQA_MAX_HD) && p + 16 <= n; p += 16) {
                for (int32_t g = 0; g < n_heads / group; g++) {
                        const float *sc = ks + p * sstride + g;
                        const int8_t *rows[16];
                        for (int r = 0; r < 16; r++)
                                rows[r] = k + (p + r) * stride + (size_t)g * hd;
                        for (int r = 0; shared && r < 16; r++)
                                q8_to_f32_512(rows[r], kf[r], hd);
                        for (int32_t h = g * group; h < (g + 1) * group; h++) {
                                const float *qh = q + (size_t)h * hd;
                                __m512 v[16];
                                if (shared) {
                                        dot8_f32(qh, hd32, kf, v);
                                        dot8_f32(qh, hd32, kf + 8, v + 8);
                                } else {
                                        dot8_q8(qh, hd32, rows, v);
                                        dot8_q8(qh, hd32, rows + 8, v + 8);
                                }
                                float *sh = scores + h * ld + p;
                                if (hd32 == hd) {
                                        /* the same two products per row, 16 rows at once, in row order */
                                        const __m512 s16 = _mm512_permutexvar_ps(row_order, hsum16x16(v));
                                        const __m512 sc16 = _mm512_i32gather_ps(scale_index, sc, 4);
                                        _mm512_storeu_ps(sh, _mm512_mul_ps(_mm512_mul_ps(s16, sc16), scale16));
                                        continue;
                                }
                                _mm512_storeu_ps(sums, hsum16x16(v));
                                for (int r = 0; r < 16; r++) {
                                        float s = sums[4 * (r % 4) + r / 4];
                                        for (int32_t i = hd32; i < hd; i++)
                                                s = fmaf(qh[i], (float)rows[r][i], s);
                                        sh[r] = (s * sc[r * sstride]) * scale;
                                }
                        }
                }
        }
        for (; p < n; p++)
                for (int32_t h = 0; h < n_heads; h++)
                        scores[h * ld + p] = (dot_q8_avx512(q + (size_t)h * hd,
                                                            k + p * stride + (size_t)(h / group) * hd, hd) *
                                              ks[p * sstride + h / group]) *
                                             scale;
}

/* out[e] = fma(w[p] * vs[p], v[p][e], out[e]) for p ascending, 16 lanes at a time, then the last lanes */
AVX512 static void accum_q8_avx512(float *out, const int8_t *v, const float *vs, size_t stride, size_t sstride,
                                   const float *w, int32_t n, int32_t hd)
{
        int32_t d = 0;
        for (; d + 64 <= hd; d += 64) {
                __m512 o0 = _mm512_loadu_ps(out + d), o1 = _mm512_loadu_ps(out + d + 16);
                __m512 o2 = _mm512_loadu_ps(out + d + 32), o3 = _mm512_loadu_ps(out + d + 48);
                for (int32_t p = 0; p < n; p++) {
                        const int8_t *r = v + p * stride + d;
                        const __m512 a = _mm512_set1_ps(w[p] * vs[p * sstride]);
                        o0 = _mm512_fmadd_ps(a, cvt16(r), o0);
                        o1 = _mm512_fmadd_ps(a, cvt16(r + 16), o1);
                        o2 = _mm512_fmadd_ps(a, cvt16(r + 32), o2);
                        o3 = _mm512_fmadd_ps(a, cvt16(r + 48), o3);
                }
                _mm512_storeu_ps(out + d, o0);
                _mm512_storeu_ps(out + d + 16, o1);
                _mm512_storeu_ps(out + d + 32, o2);
                _mm512_storeu_ps(out + d + 48, o3);
        }
        for (; d + 16 <= hd; d += 16) {
                __m512 o = _mm512_loadu_ps(out + d);
                for (int32_t p = 0; p < n; p++)
                        o = _mm512_fmadd_ps(_mm512_set1_ps(w[p] * vs[p * sstride]), cvt16(v + p * stride + d), o);
                _mm512_storeu_ps(out + d, o);
        }
        for (; d < hd; d++)
                for (int32_t p = 0; p < n; p++)
                        out[d] = fmaf(w[p] * vs[p * sstride], (float)v[p * stride + d], out[d]);
}

/*
 * NH heads' outputs (NH <= 2, ostride apart), columns [0, dc), from np
 * rows already converted (vf) with weights a[head][row]: every output in
 * registers across the rows, each element the per-head kernel's chain of
 * fmas in row order.
 */
AVX512_INLINE void accum_heads_512(float *o, size_t ostride, float (*vf)[Q8_GQA_MAX_HD], float (*a)[16], int32_t np,
                                   const int NH, int32_t dc)
{
        int32_t d = 0;
        for (; d + 64 <= dc; d += 64) {
                __m512 acc[2][4];
                for (int i = 0; i < NH; i++)
                        for (int c = 0; c < 4; c++)
                                acc[i][c] = _mm512_loadu_ps(o + i * ostride + d + 16 * c);
                for (int32_t r = 0; r < np; r++) {
                        __m512 x[4];
                        for (int c = 0; c < 4; c++)
                                x[c] = _mm512_loadu_ps(vf[r] + d + 16 * c);
                        for (int i = 0; i < NH; i++) {
                                const __m512 ai = _mm512_set1_ps(a[i][r]);
                                for (int c = 0; c < 4; c++)
                                        acc[i][c] = _mm512_fmadd_ps(ai, x[c], acc[i][c]);
                        }
                }
                for (int i = 0; i < NH; i++)
                        for (int c = 0; c < 4; c++)
                                _mm512_storeu_ps(o + i * ostride + d + 16 * c, acc[i][c]);
        }
        for (; d + 16 <= dc; d += 16) {
                __m512 acc[2];
                for (int i = 0; i < NH; i++)
                        acc[i] = _mm512_loadu_ps(o + i * ostride + d);
                for (int32_t r = 0; r < np; r++) {
                        const __m512 x = _mm512_loadu_ps(vf[r] + d);
                        for (int i = 0; i < NH; i++)
                                acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[i][r]), x, acc[i]);
                }
                for (int i = 0; i < NH; i++)
                        _mm512_storeu_ps(o + i * ostride + d, acc[i]);
        }
        for (; d < dc; d++)
                for (int i = 0; i < NH; i++) {
                        float x = o[i * ostride + d];
                        for (int32_t r = 0; r < np; r++)
                                x = fmaf(a[i][r], vf[r][d], x);
                        o[i * ostride + d] = x;
                }
}

/*
 * One head's outputs, columns [0, hd), from np int8 rows (stride apart)
 * converted as they are read, weights a[row]: every output in registers
 * across the rows, each element accum_q8_avx512's chain of fmas in row
 * order.
 */
AVX512_INLINE void accum_head_q8_512(float *o, const int8_t *v, size_t stride, const float *a, int32_t np,
                                     int32_t hd)
{
        int32_t d = 0;
        for (; d + 64 <= hd; d += 64) {
                __m512 o0 = _mm512_loadu_ps(o + d), o1 = _mm512_loadu_ps(o + d + 16);
                __m512 o2 = _mm512_loadu_ps(o + d + 32), o3 = _mm512_loadu_ps(o + d + 48);
                const int8_t *r = v + d;
                for (int32_t p = 0; p < np; p++, r += stride) {
                        const __m512 ap = _mm512_set1_ps(a[p]);
                        o0 = _mm512_fmadd_ps(ap, cvt16(r), o0);
                        o1 = _mm512_fmadd_ps(ap, cvt16(r + 16), o1);
                        o2 = _mm512_fmadd_ps(ap, cvt16(r + 32), o2);
                        o3 = _mm512_fmadd_ps(ap, cvt16(r + 48), o3);
                }
                _mm512_storeu_ps(o + d, o0);
                _mm512_storeu_ps(o + d + 16, o1);
                _mm512_storeu_ps(o + d + 32, o2);
                _mm512_storeu_ps(o + d + 48, o3);
        }
        for (; d + 16 <= hd; d += 16) {
                __m512 acc = _mm512_loadu_ps(o + d);
                for (int32_t p = 0; p < np; p++)
                        acc = _mm512_fmadd_ps(_mm512_set1_ps(a[p]), cvt16(v + p * stride + d), acc);
                _mm512_storeu_ps(o + d, acc);
        }
        for (; d < hd; d++) {
                float x = o[d];
                for (int32_t p = 0; p < np; p++)
                        x = fmaf(a[p], (float)v[p * stride + d], x);
                o[d] = x;
        }
}

/*
 * Blocks of 16 rows. A head alone (group 1) reads its slice of each row
 * as int8 (accum_head_q8_512). The heads of a GQA group convert their
 * shared slice of the block to float once, then take two heads at a time,
 * their outputs in registers across the block's rows.
 */
AVX512 static void accum_rows_q8_avx512(float *out, const int8_t *v, const float *vs, size_t stride,
                                        size_t sstride, const float *w, size_t ld, int32_t n, int32_t n_heads,
                                        int32_t group, int32_t hd)
{
        const __m512i scale_index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                       _mm512_set1_epi32((int)sstride));
        float vf[16][Q8_GQA_MAX_HD], a[2][16];

        for (int32_t p0 = 0; p0 < n; p0 += 16) {
                const int32_t np = MIN(16, n - p0);
                prefetch_rows(v, stride, p0 + 16, MIN(p0 + 32, n), (size_t)(n_heads / group) * hd);
                if (group == 1) {
                        for (int32_t h = 0; h < n_heads; h++) {
                                if (np == 16)
                                        _mm512_storeu_ps(a[0], _mm512_mul_ps(_mm512_loadu_ps(w + h * ld + p0),
                                                                             _mm512_i32gather_ps(scale_index,
                                                                                                 vs + (size_t)p0 * sstride + h, 4)));
                                for (int32_t r = 0; np < 16 && r < np; r++)
                                        a[0][r] = w[h * ld + p0 + r] * vs[(size_t)(p0 + r) * sstride + h];
                                accum_head_q8_512(out + (size_t)h * hd, v + (size_t)p0 * stride + (size_t)h * hd,
                                                  stride, a[0], np, hd);
                        }
                        continue;
                }
                for (int32_t g = 0; g < n_heads / group; g++)
                        for (int32_t d0 = 0; d0 < hd; d0 += Q8_GQA_MAX_HD) {
                                const int32_t dc = MIN(Q8_GQA_MAX_HD, hd - d0);
                                for (int32_t r = 0; r < np; r++)
                                        q8_to_f32_512(v + (size_t)(p0 + r) * stride + (size_t)g * hd + d0, vf[r], dc);
                                for (int32_t h = g * group; h < (g + 1) * group; h += 2) {
                                        const int nh = (int)MIN(2, (g + 1) * group - h);
                                        for (int i = 0; i < nh; i++)
                                                for (int32_t r = 0; r < np; r++)
                                                        a[i][r] = w[(h + i) * ld + p0 + r] *
                                                                  vs[(size_t)(p0 + r) * sstride + g];
                                        float *o = out + (size_t)h * hd + d0;
                                        if (nh == 2)
                                                accum_heads_512(o, hd, vf, a, np, 2, dc);
                                        else
                                                accum_heads_512(o, hd, vf, a, np, 1, dc);
                                }
                        }
        }
}

/* --- dispatch --- */

void attn_scores_q8(const float *q, const int8_t *k, const float *ks, size_t stride, size_t sstride, int32_t n,
                    int32_t hd, float scale, float *scores)
{
        if (kernels_isa() == KERNEL_ISA_AVX512_VNNI)
                scores_q8_avx512(q, k, ks, stride, sstride, n, hd, scale, scores);
        else if (kernels_isa() >= KERNEL_ISA_AVX2)
                scores_q8_avx2(q, k, ks, stride, sstride, n, hd, scale, scores);
        else
                scores_q8_scalar(q, k, ks, stride, sstride, n, hd, scale, scores);
}

void attn_accum_q8(float *out, const int8_t *v, const float *vs, size_t stride, size_t sstride, const float *w,
                   int32_t n, int32_t hd)
{
        if (kernels_isa() == KERNEL_ISA_AVX512_VNNI)
                accum_q8_avx512(out, v, vs, stride, sstride, w, n, hd);
        else if (kernels_isa() >= KERNEL_ISA_AVX2)
                accum_q8_avx2(out, v, vs, stride, sstride, w, n, hd);
        else
                accum_q8_scalar(out, v, vs, stride, sstride, w, n, hd);
}

void attn_scores_rows_q8(const float *q, const int8_t *k, const float *ks, size_t stride, size_t sstride, int32_t n,
                         int32_t n_heads, int32_t group, int32_t hd, float scale, float *scores, size_t ld)
{
        if (kernels_isa() == KERNEL_ISA_AVX512_VNNI) {
                scores_rows_q8_avx512(q, k, ks, stride, sstride, n, n_heads, group, hd, scale, scores, ld);
                return;
        }
        if (kernels_isa() >= KERNEL_ISA_AVX2) {
                scores_rows_q8_avx2(q, k, ks, stride, sstride, n, n_heads, group, hd, scale, scores, ld);
                return;
        }
        for (int32_t h = 0; h < n_heads; h++)
                scores_q8_scalar(q + (size_t)h * hd, k + (size_t)(h / group) * hd, ks + h / group, stride, sstride, n,
                                 hd, scale, scores + h * ld);
}

void attn_accum_rows_q8(float *out, const int8_t *v, const float *vs, size_t stride, size_t sstride, const float *w,
                        size_t ld, int32_t n, int32_t n_heads, int32_t group, int32_t hd)
{
        if (kernels_isa() == KERNEL_ISA_AVX512_VNNI) {
                accum_rows_q8_avx512(out, v, vs, stride, sstride, w, ld, n, n_heads, group, hd);
                return;
        }
        if (kernels_isa() >= KERNEL_ISA_AVX2) {
                accum_rows_q8_avx2(out, v, vs, stride, sstride, w, ld, n, n_heads, group, hd);
                return;
        }
        for (int32_t h = 0; h < n_heads; h++)
                accum_q8_scalar(out + (size_t)h * hd, v + (size_t)(h / group) * hd, vs + h / group, stride, sstride,
                                w + h * ld, n, hd);
}
