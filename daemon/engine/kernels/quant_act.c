/* SPDX-License-Identifier: MIT */
/*
 * Activation quantization per block (Q8_0, Q8_1, Q8_K) and per token (w4a8),
 * in portable C and AVX2, bit-identical: the maximum is order-free, each
 * value is one IEEE multiply then a round to nearest even (lrintf, and
 * vcvtps2dq in the default rounding mode), NaN becomes 0.
 */
#include <immintrin.h>
#include <math.h>

#include "kernels.h"
#include "kernels_quant.h"

int64_t act_scheme_block(enum act_scheme s)
{
        return s == ACT_SCHEME_Q8_K ? QK_K : 32;
}

enum act_scheme weight_act_scheme(const struct npu_weight *w, enum npu_precision p)
{
        if (p == NPU_PRECISION_W4A8 && w->type == GGML_TYPE_Q4_0)
                return ACT_SCHEME_TOKEN_I8;
        return quant_type_act_scheme(w->type);
}

void act_blocks_free(struct act_blocks *a)
{
        free(a->q);
        free(a->d);
        free(a->s);
        free(a->bsums);
        free(a->asum);
        act_q_free(&a->tok);
        *a = (struct act_blocks) { .scheme = ACT_SCHEME_NONE };
}

int act_blocks_alloc(struct act_blocks *a, enum act_scheme s, int32_t rows, int64_t cols)
{
        const size_t n = (size_t)rows * cols, nb = n / 32 + 1;

        *a = (struct act_blocks) { .scheme = s, .cap_rows = rows, .cap_cols = cols };
        a->d = malloc(nb * sizeof(float));
        if (!a->d)
                goto fail;
        if (s == ACT_SCHEME_Q8_0 || s == ACT_SCHEME_TOKEN_I8) {
                a->asum = malloc(nb * sizeof(int32_t));
                if (!a->asum)
                        goto fail;
        }
        if (s == ACT_SCHEME_TOKEN_I8) {
                /* the per-token quantizer's rows, read as Q8_0 blocks whose scale is 1 */
                if (act_q_alloc(&a->tok, rows, cols) < 0)
                        goto fail;
                a->q = NULL;
                for (size_t i = 0; i < nb; i++)
                        a->d[i] = 1.0f;
                return 0;
        }
        /* padded so that SIMD loads past a row's end stay inside */
        a->q = calloc_lines(n + 64);
        a->s = s == ACT_SCHEME_Q8_1 ? malloc(nb * sizeof(float)) : NULL;
        a->bsums = s == ACT_SCHEME_Q8_K ? malloc((n / 16 + 1) * sizeof(int16_t)) : NULL;
        if (!a->q || (s == ACT_SCHEME_Q8_1 && !a->s) || (s == ACT_SCHEME_Q8_K && !a->bsums))
                goto fail;
        return 0;
fail:
        act_blocks_free(a);
        return -ENOMEM;
}

static inline float f16_round(float x)
{
        return f16_to_f32(f32_to_f16(x));
}

/* --- portable C --- */

static float absmax_scalar(const float *x, int64_t n)
{
        float m = 0;
        for (int64_t k = 0; k < n; k++) {
                float v = fabsf(x[k]);
                if (v > m)
                        m = v;
        }
        return m;
}

/* q[k] = x[k] * id rounded to nearest even, NaN to 0; returns the sum of q. */
static int32_t quant_scaled_scalar(const float *x, int64_t n, float id, int8_t *q)
{
        int32_t sum = 0;
        for (int64_t k = 0; k < n; k++) {
                float v = x[k] * id;
                long r = v == v ? lrintf(v) : 0;
                r = r > 127 ? 127 : r < -127 ? -127 : r;
                q[k] = (int8_t)r;
                sum += (int32_t)r;
        }
        return sum;
}

/* --- AVX2 --- */

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))

AVX2_INLINE float hmax8(__m256 v)
{
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        return _mm_cvtss_f32(m);
}

/* Absolute maximum of 32 n floats (NaN lanes never win, as in the scalar loop). */
AVX2_INLINE float absmax_avx2(const float *x, int64_t n)
{
        const __m256 sign = _mm256_set1_ps(-0.0f);
        __m256 m = _mm256_setzero_ps();
        for (int64_t k = 0; k < n; k += 8)
                m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)), m);
        return hmax8(m);
}

AVX2_INLINE __m256i quant8_avx2(const float *x, __m256 id)
{
        const __m256 lim = _mm256_set1_ps(127.0f);
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x), id);
        v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
        v = _mm256_max_ps(_mm256_min_ps(v, lim), _mm256_sub_ps(_mm256_setzero_ps(), lim));
        return _mm256_cvtps_epi32(v);
}

/* 32 values: q = x * id rounded to nearest even; returns the 32 bytes (and their sum through *sum). */
AVX2_INLINE __m256i quant32_avx2(const float *x, __m256 id)
{
        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        __m256i a = quant8_avx2(x, id), b = quant8_avx2(x + 8, id);
        __m256i c = quant8_avx2(x + 16, id), d = quant8_avx2(x + 24, id);
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
        return _mm256_permutevar8x32_epi32(p, order);
}

AVX2_INLINE int32_t hsum_epi32(__m256i v)
{
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
        return _mm_cvtsi128_si32(s);
}

/* Sums of 16 bytes each: the two 128-bit halves of q, as int32. */
AVX2_INLINE void sums16_avx2(__m256i q, int32_t *lo, int32_t *hi)
{
        __m256i w = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
        __m128i l = _mm256_castsi256_si128(w), h = _mm256_extracti128_si256(w, 1);
        l = _mm_add_epi32(l, _mm_shuffle_epi32(l, 0x4e));
        l = _mm_add_epi32(l, _mm_shuffle_epi32(l, 0xb1));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
        *lo = _mm_cvtsi128_si32(l);
        *hi = _mm_cvtsi128_si32(h);
}

/* --- one row, per scheme --- */

/* Q8_0 (s == NULL: the block sums into asum) or Q8_1 (into s, scaled, asum == NULL). */
static void quant_row_q8_0_scalar(const float *x, int64_t cols, int8_t *q, float *d, float *s, int32_t *asum)
{
        for (int64_t b = 0; b < cols / 32; b++) {
                float amax = absmax_scalar(x + 32 * b, 32);
                float db = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
                int32_t sum = quant_scaled_scalar(x + 32 * b, 32, id, q + 32 * b);
                d[b] = f16_round(db);
                if (s)
                        s[b] = f16_round(db * (float)sum);
                if (asum)
                        asum[b] = sum;
        }
}

AVX2 static void quant_row_q8_0_avx2(const float *x, int64_t cols, int8_t *q, float *d, float *s, int32_t *asum)
{
        for (int64_t b = 0; b < cols / 32; b++) {
                float amax = absmax_avx2(x + 32 * b, 32);
                float db = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
                __m256i v = quant32_avx2(x + 32 * b, _mm256_set1_ps(id));
                _mm256_storeu_si256((__m256i *)(q + 32 * b), v);
                d[b] = f16_round(db);
                int32_t lo, hi;
                sums16_avx2(v, &lo, &hi);
                if (s)
                        s[b] = f16_round(db * (float)(lo + hi));
                if (asum)
                        asum[b] = lo + hi;
        }
}

static void quant_row_q8_k_scalar(const float *x, int64_t cols, int8_t *q, float *d, int16_t *bsums)
{
        for (int64_t b = 0; b < cols / QK_K; b++) {
                const float *xb = x + QK_K * b;
                int8_t *qb = q + QK_K * b;
                float amax = absmax_scalar(xb, QK_K);
                if (amax == 0.0f) {
                        d[b] = 0;
                        memset(qb, 0, QK_K);
                        memset(bsums + 16 * b, 0, 16 * sizeof(int16_t));
                        continue;
                }
                float iscale = 127.0f / amax;
                for (int j = 0; j < 16; j++)
                        bsums[16 * b + j] = (int16_t)quant_scaled_scalar(xb + 16 * j, 16, iscale, qb + 16 * j);
                d[b] = 1.0f / iscale;
        }
}

AVX2 static void quant_row_q8_k_avx2(const float *x, int64_t cols, int8_t *q, float *d, int16_t *bsums)
{
        for (int64_t b = 0; b < cols / QK_K; b++) {
                const float *xb = x + QK_K * b;
                int8_t *qb = q + QK_K * b;
                float amax = absmax_avx2(xb, QK_K);
                if (amax == 0.0f) {
                        d[b] = 0;
                        memset(qb, 0, QK_K);
                        memset(bsums + 16 * b, 0, 16 * sizeof(int16_t));
                        continue;
                }
                float iscale = 127.0f / amax;
                const __m256 id = _mm256_set1_ps(iscale);
                for (int j = 0; j < 8; j++) {
                        __m256i v = quant32_avx2(xb + 32 * j, id);
                        _mm256_storeu_si256((__m256i *)(qb + 32 * j), v);
                        int32_t lo, hi;
                        sums16_avx2(v, &lo, &hi);
                        bsums[16 * b + 2 * j] = (int16_t)lo;
                        bsums[16 * b + 2 * j + 1] = (int16_t)hi;
                }
                d[b] = 1.0f / iscale;
        }
}

void act_blocks_quantize(struct act_blocks *a, const float *x, int64_t cols, int64_t t0, int64_t t1)
{
        const bool avx2 = kernels_isa() >= KERNEL_ISA_AVX2;

        a->cols = cols;
        if (a->scheme == ACT_SCHEME_TOKEN_I8) {
                act_quantize_rows(&a->tok, NPU_PRECISION_W8A8, x, cols, t0, t1);
                for (int64_t i = t0 * (cols / 32); i < t1 * (cols / 32); i++) {
                        int32_t sum = 0;
                        for (int k = 0; k < 32; k++)
                                sum += a->tok.q8[32 * i + k];
                        a->asum[i] = sum;
                }
                return;
        }
        for (int64_t t = t0; t < t1; t++) {
                const float *xt = x + t * cols;
                int8_t *q = a->q + t * cols;
                switch (a->scheme) {
                case ACT_SCHEME_Q8_0:
                case ACT_SCHEME_Q8_1: {
                        float *d = a->d + t * (cols / 32), *s = a->s ? a->s + t * (cols / 32) : NULL;
                        int32_t *as = a->asum ? a->asum + t * (cols / 32) : NULL;
                        if (avx2)
                                quant_row_q8_0_avx2(xt, cols, q, d, s, as);
                        else
                                quant_row_q8_0_scalar(xt, cols, q, d, s, as);
                        break;
                }
                case ACT_SCHEME_Q8_K: {
                        float *d = a->d + t * (cols / QK_K);
                        int16_t *bs = a->bsums + t * (cols / 16);
                        if (avx2)
                                quant_row_q8_k_avx2(xt, cols, q, d, bs);
                        else
                                quant_row_q8_k_scalar(xt, cols, q, d, bs);
                        break;
                }
                default:
                        break;
                }
        }
}
