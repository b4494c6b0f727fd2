/* SPDX-License-Identifier: MIT */
/*
 * Attention over the int8 rows of the q8 KV cache (kernels.h, kv_cache.h):
 * the bytes are converted to float (exactly) as they are read, so a head
 * reads half the bytes of an f16 cache. Portable C and AVX2; within each,
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

/* Four rows at a time, each with dot_q8_avx2's accumulators and order, the rows' chains side by side. */
AVX2 static void scores_rows_q8_avx2(const float *q, const int8_t *k, const float *ks, size_t stride,
                                     size_t sstride, int32_t n, int32_t n_heads, int32_t group, int32_t hd,
                                     float scale, float *scores, size_t ld)
{
        const int32_t hd16 = hd & ~15;
        int32_t p = 0;

        for (; p + 4 <= n; p += 4) {
                const int8_t *r0 = k + p * stride, *r1 = r0 + stride, *r2 = r1 + stride, *r3 = r2 + stride;
                prefetch_rows(k, stride, p + 4, MIN(p + 8, n), (size_t)(n_heads / group) * hd);
                for (int32_t h = 0; h < n_heads; h++) {
                        const float *qh = q + (size_t)h * hd;
                        const size_t off = (size_t)(h / group) * hd;
                        __m256 a0 = _mm256_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
                        for (int32_t i = 0; i < hd16; i += 16) {
                                const __m256 qa = _mm256_loadu_ps(qh + i), qb = _mm256_loadu_ps(qh + i + 8);
                                a0 = _mm256_fmadd_ps(qa, cvt8(r0 + off + i), a0);
                                b0 = _mm256_fmadd_ps(qb, cvt8(r0 + off + i + 8), b0);
                                a1 = _mm256_fmadd_ps(qa, cvt8(r1 + off + i), a1);
                                b1 = _mm256_fmadd_ps(qb, cvt8(r1 + off + i + 8), b1);
                                a2 = _mm256_fmadd_ps(qa, cvt8(r2 + off + i), a2);
                                b2 = _mm256_fmadd_ps(qb, cvt8(r2 + off + i + 8), b2);
                                a3 = _mm256_fmadd_ps(qa, cvt8(r3 + off + i), a3);
                                b3 = _mm256_fmadd_ps(qb, cvt8(r3 + off + i + 8), b3);
                        }
                        float s0 = hsum(_mm256_add_ps(a0, b0)), s1 = hsum(_mm256_add_ps(a1, b1));
                        float s2 = hsum(_mm256_add_ps(a2, b2)), s3 = hsum(_mm256_add_ps(a3, b3));
                        for (int32_t i = hd16; i < hd; i++) {
                                s0 = fmaf(qh[i], (float)r0[off + i], s0);
                                s1 = fmaf(qh[i], (float)r1[off + i], s1);
                                s2 = fmaf(qh[i], (float)r2[off + i], s2);
                                s3 = fmaf(qh[i], (float)r3[off + i], s3);
                        }
                        const float *sc = ks + p * sstride + h / group;
                        float *sh = scores + h * ld + p;
                        sh[0] = (s0 * sc[0]) * scale;
                        sh[1] = (s1 * sc[sstride]) * scale;
                        sh[2] = (s2 * sc[2 * sstride]) * scale;
                        sh[3] = (s3 * sc[3 * sstride]) * scale;
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

AVX2_INLINE void accum_head4(float *o, const int8_t *r0, size_t stride, const float a[4], int32_t hd)
{
        const __m256 w0 = _mm256_set1_ps(a[0]), w1 = _mm256_set1_ps(a[1]);
        const __m256 w2 = _mm256_set1_ps(a[2]), w3 = _mm256_set1_ps(a[3]);
        const int8_t *r1 = r0 + stride, *r2 = r1 + stride, *r3 = r2 + stride;
        int32_t d = 0;
        for (; d + 8 <= hd; d += 8) {
                __m256 acc = _mm256_loadu_ps(o + d);
                acc = _mm256_fmadd_ps(w0, cvt8(r0 + d), acc);
                acc = _mm256_fmadd_ps(w1, cvt8(r1 + d), acc);
                acc = _mm256_fmadd_ps(w2, cvt8(r2 + d), acc);
                acc = _mm256_fmadd_ps(w3, cvt8(r3 + d), acc);
                _mm256_storeu_ps(o + d, acc);
        }
        for (; d < hd; d++) {
                float x = o[d];
                x = fmaf(a[0], (float)r0[d], x);
                x = fmaf(a[1], (float)r1[d], x);
                x = fmaf(a[2], (float)r2[d], x);
                o[d] = fmaf(a[3], (float)r3[d], x);
        }
}

AVX2 static void accum_rows_q8_avx2(float *out, const int8_t *v, const float *vs, size_t stride, size_t sstride,
                                    const float *w, size_t ld, int32_t n, int32_t n_heads, int32_t group, int32_t hd)
{
        int32_t p = 0;

        for (; p + 4 <= n; p += 4) {
                prefetch_rows(v, stride, p + 4, MIN(p + 8, n), (size_t)(n_heads / group) * hd);
                for (int32_t h = 0; h < n_heads; h++) {
                        const float *wh = w + h * ld + p, *sc = vs + p * sstride + h / group;
                        const float a[4] = { wh[0] * sc[0], wh[1] * sc[sstride], wh[2] * sc[2 * sstride],
                                             wh[3] * sc[3 * sstride] };
                        accum_head4(out + (size_t)h * hd, v + p * stride + (size_t)(h / group) * hd, stride, a, hd);
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

/* --- dispatch --- */

void attn_scores_q8(const float *q, const int8_t *k, const float *ks, size_t stride, size_t sstride, int32_t n,
                    int32_t hd, float scale, float *scores)
{
        if (kernels_isa() >= KERNEL_ISA_AVX2)
                scores_q8_avx2(q, k, ks, stride, sstride, n, hd, scale, scores);
        else
                scores_q8_scalar(q, k, ks, stride, sstride, n, hd, scale, scores);
}

void attn_accum_q8(float *out, const int8_t *v, const float *vs, size_t stride, size_t sstride, const float *w,
                   int32_t n, int32_t hd)
{
        if (kernels_isa() >= KERNEL_ISA_AVX2)
                accum_q8_avx2(out, v, vs, stride, sstride, w, n, hd);
        else
                accum_q8_scalar(out, v, vs, stride, sstride, w, n, hd);
}

void attn_scores_rows_q8(const float *q, const int8_t *k, const float *ks, size_t stride, size_t sstride, int32_t n,
                         int32_t n_heads, int32_t group, int32_t hd, float scale, float *scores, size_t ld)
{
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
        if (kernels_isa() >= KERNEL_ISA_AVX2) {
                accum_rows_q8_avx2(out, v, vs, stride, sstride, w, ld, n, n_heads, group, hd);
                return;
        }
        for (int32_t h = 0; h < n_heads; h++)
                accum_q8_scalar(out + (size_t)h * hd, v + (size_t)(h / group) * hd, vs + h / group, stride, sstride,
                                w + h * ld, n, hd);
}
