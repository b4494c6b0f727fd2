/* SPDX-License-Identifier: MIT */
/*
 * The device's element-wise float ops (npu_ref.h), run on the cpu with
 * SIMD twins that compute the same f32 operations in the same order, so
 * each lane equals the reference bit for bit (test-backend checks every
 * path). Compiled with -ffp-contract=off: no multiply-add is fused.
 */
#include <immintrin.h>

#include "backend.h"
#include "kernels.h"
#include "npu_ref.h"

#define AVX2 __attribute__((target("avx2,f16c")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,f16c")))

/* npu_ref_expf on eight lanes: the same steps, then its three special cases by masks. */
AVX2_INLINE __m256 expf8(__m256 x)
{
        const __m256 lo = _mm256_set1_ps(NPU_REF_EXPF_MIN), hi = _mm256_set1_ps(NPU_REF_EXPF_MAX);
        const __m256 one = _mm256_set1_ps(1.0f);
        /* in range (NaN becomes lo: vmaxps returns its second operand) */
        const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
        const __m256 v = _mm256_mul_ps(xc, _mm256_set1_ps(1.44269504f));
        __m256 t = _mm256_cvtepi32_ps(_mm256_cvttps_epi32(v));
        const __m256 f = _mm256_sub_ps(v, t);
        t = _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps(f, _mm256_set1_ps(0.5f), _CMP_GE_OQ), one));
        t = _mm256_sub_ps(t, _mm256_and_ps(_mm256_cmp_ps(f, _mm256_set1_ps(-0.5f), _CMP_LE_OQ), one));
        const __m256 r = _mm256_sub_ps(_mm256_sub_ps(xc, _mm256_mul_ps(t, _mm256_set1_ps(0.693359375f))),
                                       _mm256_mul_ps(t, _mm256_set1_ps(-2.12194440e-4f)));
        __m256 p = _mm256_set1_ps((float)(1.0 / 5040));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps((float)(1.0 / 720)));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps((float)(1.0 / 120)));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps((float)(1.0 / 24)));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps((float)(1.0 / 6)));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(0.5f));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), one);
        p = _mm256_add_ps(_mm256_mul_ps(p, r), one);
        const __m256i k = _mm256_add_epi32(_mm256_cvttps_epi32(t), _mm256_set1_epi32(127));
        __m256 e = _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(k, 23)));
        e = _mm256_blendv_ps(e, _mm256_set1_ps(__builtin_inff()), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
        e = _mm256_blendv_ps(e, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
        return _mm256_blendv_ps(e, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

/* Eight lanes of npu_ref_silu_mul. */
AVX2_INLINE __m256 silu8(__m256 g, __m256 up)
{
        const __m256 e = expf8(_mm256_xor_ps(g, _mm256_set1_ps(-0.0f)));
        return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), up);
}

AVX2 static void silu_mul_avx2(float *gate, const float *up, int64_t i0, int64_t i1)
{
        int64_t i = i0;
        for (; i + 8 <= i1; i += 8)
                _mm256_storeu_ps(gate + i, silu8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
        if (i < i1)
                npu_ref_silu_mul(gate, up, gate, i, i1);
}

void silu_mul_range(float *gate, const float *up, int64_t i0, int64_t i1)
{
        if (kernels_isa() >= KERNEL_ISA_AVX2)
                silu_mul_avx2(gate, up, i0, i1);
        else
                npu_ref_silu_mul(gate, up, gate, i0, i1);
}

/*
 * npu_ref_rmsnorm's sum of squares is one chain of double additions in
 * index order, four cycles an element. Here each lane of a vector carries
 * one row's chain, in the same order: rows r..r+3 in one vector and r+4..r+7
 * in another, four columns at a time (a 4x4 transpose puts column i of the
 * four rows in one vector), so two chains of four rows run at once.
 */
AVX2_INLINE __m256d sumsq_step(__m256d s, __m128 col)
{
        const __m256d c = _mm256_cvtps_pd(col);
        return _mm256_add_pd(s, _mm256_mul_pd(c, c));
}

AVX2_INLINE __m256d sumsq_cols4(__m256d s, const float *x, int64_t dim, int64_t i)
{
        __m128 r0 = _mm_loadu_ps(x + i), r1 = _mm_loadu_ps(x + dim + i), r2 = _mm_loadu_ps(x + 2 * dim + i),
               r3 = _mm_loadu_ps(x + 3 * dim + i);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        s = sumsq_step(s, r0);
        s = sumsq_step(s, r1);
        s = sumsq_step(s, r2);
        return sumsq_step(s, r3);
}

AVX2_INLINE __m256d sumsq_col1(__m256d s, const float *x, int64_t dim, int64_t i)
{
        return sumsq_step(s, _mm_setr_ps(x[i], x[dim + i], x[2 * dim + i], x[3 * dim + i]));
}

/* Eight rows from x: out's rows as npu_ref_rmsnorm writes them. */
AVX2 static void rmsnorm8_avx2(float *out, const float *x, const float *weight, int64_t dim, float eps)
{
        __m256d s0 = _mm256_setzero_pd(), s1 = s0;
        const float *x4 = x + 4 * dim;
        int64_t i = 0;
        for (; i + 4 <= dim; i += 4) {
                s0 = sumsq_cols4(s0, x, dim, i);
                s1 = sumsq_cols4(s1, x4, dim, i);
        }
        for (; i < dim; i++) {
                s0 = sumsq_col1(s0, x, dim, i);
                s1 = sumsq_col1(s1, x4, dim, i);
        }
        double ss[8];
        _mm256_storeu_pd(ss, s0);
        _mm256_storeu_pd(ss + 4, s1);
        for (int r = 0; r < 8; r++) {
                const float inv = (float)(1.0 / npu_ref_sqrt(ss[r] / (uint32_t)dim + (double)eps));
                const float *xr = x + r * dim;
                float *o = out + r * dim;
                const __m256 iv = _mm256_set1_ps(inv);
                int64_t k = 0;
                for (; k + 8 <= dim; k += 8)
                        _mm256_storeu_ps(o + k, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + k), iv),
                                                              _mm256_loadu_ps(weight + k)));
                for (; k < dim; k++)
                        o[k] = (xr[k] * inv) * weight[k];
        }
}

void rmsnorm_rows(float *out, const float *x, const float *weight, int64_t dim, float eps, int64_t t0, int64_t t1)
{
        int64_t t = t0;
        if (kernels_isa() >= KERNEL_ISA_AVX2)
                for (; t + 8 <= t1; t += 8)
                        rmsnorm8_avx2(out + t * dim, x + t * dim, weight, dim, eps);
        if (t < t1)
                npu_ref_rmsnorm(x, weight, out, (uint32_t)dim, eps, (uint32_t)t, (uint32_t)t1);
}

/* F16C rounds to nearest even, overflows to inf and keeps NaN as npu_ref_f32_to_f16 does. */
AVX2 static void cvt_f32_f16_avx2(const float *src, uint16_t *dst, int64_t n)
{
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
                _mm_storeu_si128((__m128i *)(dst + i),
                                 _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
        if (i < n)
                npu_ref_cvt_f32_f16(src, dst, (size_t)i, (size_t)n);
}

void cvt_f32_f16_range(const float *src, uint16_t *dst, int64_t n)
{
        if (kernels_isa() >= KERNEL_ISA_AVX2)
                cvt_f32_f16_avx2(src, dst, n);
        else
                npu_ref_cvt_f32_f16(src, dst, 0, (size_t)n);
}
