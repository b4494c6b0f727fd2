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
