/* SPDX-License-Identifier: MIT */
/*
 * Attention's weighted sums over the int8 V rows of the q8 KV cache
 * (kernels.h, kv_cache.h; the scores are attention_q8_scores.c's): the
 * bytes are converted to float (exactly) as they are read, so a head reads
 * half the bytes of an f16 cache. Portable C, AVX2 and AVX-512 (where the
 * int8 kernels use AVX-512 VNNI); within each, the all-heads row kernel
 * computes every head's sums with the same operations in the same order as
 * the per-head kernel.
 */
#include <immintrin.h>
#include <math.h>

#include "kernels.h"
#include "prefetch.h"

#define AVX2 __attribute__((target("avx2,fma")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma")))

/* --- portable C --- */

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

/* The next rows (p0 to p1) into L2: at Llama-7B's shape a row is 4 KiB, a page, where the prefetchers stop. */
AVX2_INLINE void prefetch_rows(const int8_t *x, size_t stride, int32_t p0, int32_t p1, size_t row_bytes)
{
        for (int32_t f = p0; f < p1; f++)
                for (size_t b = 0; b < row_bytes; b += 64)
                        _mm_prefetch((const char *)(x + f * stride) + b, _MM_HINT_T1);
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

AVX512_INLINE void q8_to_f32_512(const int8_t *x, float *y, int32_t n)
{
        int32_t i = 0;
        for (; i + 16 <= n; i += 16)
                _mm512_storeu_ps(y + i, cvt16(x + i));
        for (; i < n; i++)
                y[i] = (float)x[i];
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
 * NH heads' outputs (NH <= 4, ostride apart), columns [0, dc), from np
 * rows already converted (vf) with weights a[head][row]: every output in
 * registers across the rows, each element the per-head kernel's chain of
 * fmas in row order.
 */
AVX512_INLINE void accum_heads_512(float *o, size_t ostride, float (*vf)[Q8_GQA_MAX_HD], float (*a)[16], int32_t np,
                                   const int NH, int32_t dc)
{
        int32_t d = 0;
        for (; d + 64 <= dc; d += 64) {
                __m512 acc[4][4];
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
                __m512 acc[4];
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
 * as int8 (accum_head_q8_512), the next head's slice of the block
 * prefetched into L1 meanwhile. The heads of a GQA group convert their
 * shared slice of the block to float once, then take four heads at a
 * time, their outputs in registers across the block's rows, each head's
 * weights times the rows' scales in one vector; each KV head's slice of
 * the next block's rows is asked for into L1 as the block's slice is
 * converted (a run is one block, so the prefetch of the rows after the
 * block within the run never fired). Zen 5, 2 threads, attn-bench -n 4000
 * -k q8, the walks taking turns step by step in one process: TinyLlama's
 * shape (22 layers, 32 heads, 4 KV heads, hd 64) 7.0-7.2 -> 6.4-6.6 ms
 * with four heads and the vector weights, then 4.3-5.5 -> 3.9-4.1 ms with
 * the whole next block asked for at the block's start (32 rows ahead
 * alike, 64 less, into L2 less), then 3.2 -> 3.0 ms with the requests
 * spread over the KV heads; Llama 3 8B's (32 layers, 32/8, hd 128)
 * 17.7-19.1 -> 16.7-17.5 ms, then 15.8-16.2 -> 14.1-14.5 ms, then
 * 13.8-14.1 -> 12.4-13.1 ms.
 */
AVX512 static void accum_rows_q8_avx512(float *out, const int8_t *v, const float *vs, size_t stride,
                                        size_t sstride, const float *w, size_t ld, int32_t n, int32_t n_heads,
                                        int32_t group, int32_t hd)
{
        const __m512i scale_index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                       _mm512_set1_epi32((int)sstride));
        float vf[16][Q8_GQA_MAX_HD], a[4][16];

        for (int32_t p0 = 0; p0 < n; p0 += 16) {
                const int32_t np = MIN(16, n - p0);
                const __mmask16 rows = (__mmask16)((1u << np) - 1);
                if (group == 1) {
                        prefetch_rows(v, stride, p0 + 16, MIN(p0 + 32, n), (size_t)n_heads * hd);
                        for (int32_t h = 0; h < n_heads; h++) {
                                if (np == 16)
                                        _mm512_storeu_ps(a[0], _mm512_mul_ps(_mm512_loadu_ps(w + h * ld + p0),
                                                                             _mm512_i32gather_ps(scale_index,
                                                                                                 vs + (size_t)p0 * sstride + h, 4)));
                                for (int32_t r = 0; np < 16 && r < np; r++)
                                        a[0][r] = w[h * ld + p0 + r] * vs[(size_t)(p0 + r) * sstride + h];
                                prefetch_rows_l1(v + (size_t)p0 * stride + (size_t)(h + 1) * hd, stride, np, hd);
                                accum_head_q8_512(out + (size_t)h * hd, v + (size_t)p0 * stride + (size_t)h * hd,
                                                  stride, a[0], np, hd);
                        }
                        continue;
                }
                for (int32_t g = 0; g < n_heads / group; g++) {
                        /* the rows' scales of kv head g */
                        const __m512 sv = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), rows, scale_index,
                                                                   vs + (size_t)p0 * sstride + g, 4);
                        for (int32_t d0 = 0; d0 < hd; d0 += Q8_GQA_MAX_HD) {
                                const int32_t dc = MIN(Q8_GQA_MAX_HD, hd - d0);
                                /* past the run: the next block's rows where the blocks were handed out in order,
                                 * else a harmless miss */
                                prefetch_rows_l1(v + (size_t)(p0 + 16) * stride + (size_t)g * hd + d0, stride, 16, dc);
                                for (int32_t r = 0; r < np; r++)
                                        q8_to_f32_512(v + (size_t)(p0 + r) * stride + (size_t)g * hd + d0, vf[r], dc);
                                for (int32_t h = g * group; h < (g + 1) * group; h += 4) {
                                        const int nh = (int)MIN(4, (g + 1) * group - h);
                                        for (int i = 0; i < nh; i++)
                                                _mm512_storeu_ps(a[i], _mm512_mul_ps(
                                                        _mm512_maskz_loadu_ps(rows, w + (h + i) * ld + p0), sv));
                                        float *o = out + (size_t)h * hd + d0;
                                        if (nh == 4)
                                                accum_heads_512(o, hd, vf, a, np, 4, dc);
                                        else if (nh == 3)
                                                accum_heads_512(o, hd, vf, a, np, 3, dc);
                                        else if (nh == 2)
                                                accum_heads_512(o, hd, vf, a, np, 2, dc);
                                        else
                                                accum_heads_512(o, hd, vf, a, np, 1, dc);
                                }
                        }
                }
        }
}

/*
 * One head per kv head, hd a multiple of 64: R_ORDERED rows at a time,
 * every head's outputs in registers across them before the next head's,
 * each output element accum_q8_avx512's chain of fmas in row order
 * (accum_head_q8_512). As a head's slice of this step's rows is summed,
 * the same slice of the step after the next is asked for into L1 (the
 * next step's until the constants below), so the
 * requests run two steps ahead of the sums, spread over the heads, in the
 * order the walk will read them.
 *
 * Measured on Zen 5, 2 threads, attn-bench -n 4000 -k q8 (Llama-7B's
 * shape), the two walks taking turns step by step in one process, medians
 * of 10 each, five runs: 2 rows a step with this prefetch 25.7-30.6 ms
 * against 27.9-34.3 for the walk before it (8 rows a step, the first line
 * of each of the next step's rows asked for four heads before the step's
 * end), 6-11 % less; also less at 300 and 1000 positions, at head size 64
 * and on the flash path. With the same prefetch, 2 rows a step against 1,
 * 4 and 8: 7 %, 3-4 % and 4-7 % less; the next step's slices into L2, or
 * two steps ahead, or the next head's slices of this step: all slower.
 *
 * Before, on the same host: 8 rows a step was faster than 4 and 16 with
 * no prefetch, 31.8-33.8 ms against 34.7-34.9 for the walk before it. Tried
 * then and slower or no faster: two heads a step (256 bytes a row, 16
 * accumulators), the 8 rows first copied head-major into L1, the bytes
 * widened by shifts or by vpdpbusd against a 1 in byte k instead of
 * vpmovsxbd (with vcvtdq2ps they take about a cycle a 16 either way), and
 * the V pass in integers (each chunk's weights times the row scales
 * rounded to 15 bits of the chunk's largest, 4 rows interleaved by
 * vpunpck, the weights' low and high bytes in two vpdpbusd, exact int32
 * sums): from L2 50 GB/s a thread against 43, from memory no faster, and
 * 33-37 ms against 31-33 with the weights' scaling and rounding. On a
 * Sapphire Rapids class Xeon, V head-major within a KV block (each head's
 * 16 rows of a block one run of 2 KiB) read 7.0-8.4 GB/s a thread against
 * 12.7-13.0 for the walk: one stream a core reads 13.5 GB/s there, four
 * 15.7.
 *
 * Then 4 rows a step: this pass is bound by its own work more than by
 * memory (from L3, attn-bench -n 2000 -l 1 with the K pass skipped, two
 * rounds: 2 rows a step 62 GB/s of V, 4 rows 67, 8 rows 70, 16 rows 62;
 * the K pass 125), and each step loads and stores every head's outputs.
 * From memory (-n 4000, K and V, the two taking turns): in the host's fast
 * minutes 4 rows 19.2-19.6 ms against 20.6-20.7 for 2 in five rounds of
 * five; in its slow ones even (25.7-29.5 against 26.1-28.6, twelve
 * rounds); 8 rows 2-4 % slower than 2 there. Each element's chain of fmas
 * is the same whatever the step, so the bits are.
 */
#define R_ORDERED 4
/*
 * accum_rows_q8_avx512_ordered with the head size HD a constant where it
 * is 64 or 128, and whole steps of R_ORDERED rows a constant too, so a
 * step of a head is one straight run of conversions and fmas, its
 * prefetches unrolled. Zen 5, 2 threads, attn-bench -n 4000 -k q8, five
 * rounds alternated with the head size a variable: 23.9-25.3 ms against
 * 25.0-27.8; from L3 (-n 1000 -l 2) 63-70 GB/s against 59-60. (8 rows a
 * step then: even with 4; 2 rows: 8-20 % slower.) With the faster steps
 * the prefetch went two steps ahead: ten rounds alternated with one step,
 * faster in seven, medians 24.3 against 25.2 ms; three steps 26.8-27.4.
 */
AVX512_INLINE void accum_rows_ordered_hd(float *out, const int8_t *v, const float *vs, size_t stride, size_t sstride,
                                         const float *w, size_t ld, int32_t n, int32_t n_heads, const int32_t HD)
{
        for (int32_t p0 = 0; p0 < n; p0 += R_ORDERED) {
                const int32_t np = MIN(R_ORDERED, n - p0);
                for (int32_t h = 0; h < n_heads; h++) {
                        const int8_t *slice = v + (size_t)p0 * stride + (size_t)h * HD;
                        float a[R_ORDERED];
                        for (int32_t r = 0; r < np; r++)
                                a[r] = w[h * ld + p0 + r] * vs[(size_t)(p0 + r) * sstride + h];
                        /* the slice two steps ahead (past the run: the next block's rows where the blocks
                         * were handed out in order, else a harmless miss) */
                        prefetch_rows_l1(slice + 2 * R_ORDERED * stride, stride, R_ORDERED, HD);
                        if (np == R_ORDERED)
                                accum_head_q8_512(out + (size_t)h * HD, slice, stride, a, R_ORDERED, HD);
                        else
                                accum_head_q8_512(out + (size_t)h * HD, slice, stride, a, np, HD);
                }
        }
}

AVX512 static void accum_rows_q8_avx512_ordered(float *out, const int8_t *v, const float *vs, size_t stride,
                                                size_t sstride, const float *w, size_t ld, int32_t n,
                                                int32_t n_heads, int32_t hd)
{
        if (hd == 128)
                accum_rows_ordered_hd(out, v, vs, stride, sstride, w, ld, n, n_heads, 128);
        else if (hd == 64)
                accum_rows_ordered_hd(out, v, vs, stride, sstride, w, ld, n, n_heads, 64);
        else
                accum_rows_ordered_hd(out, v, vs, stride, sstride, w, ld, n, n_heads, hd);
}

/* --- dispatch --- */

void attn_accum_q8(float *out, const int8_t *v, const float *vs, size_t stride, size_t sstride, const float *w,
                   int32_t n, int32_t hd)
{
        if (kernels_isa() >= KERNEL_ISA_AVX512_VNNI)
                accum_q8_avx512(out, v, vs, stride, sstride, w, n, hd);
        else if (kernels_isa() >= KERNEL_ISA_AVX2)
                accum_q8_avx2(out, v, vs, stride, sstride, w, n, hd);
        else
                accum_q8_scalar(out, v, vs, stride, sstride, w, n, hd);
}

void attn_accum_rows_q8(float *out, const int8_t *v, const float *vs, size_t stride, size_t sstride, const float *w,
                        size_t ld, int32_t n, int32_t n_heads, int32_t group, int32_t hd)
{
        if (kernels_isa() >= KERNEL_ISA_AVX512_VNNI && group == 1 && hd % 64 == 0) {
                accum_rows_q8_avx512_ordered(out, v, vs, stride, sstride, w, ld, n, n_heads, hd);
                return;
        }
        if (kernels_isa() >= KERNEL_ISA_AVX512_VNNI) {
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
