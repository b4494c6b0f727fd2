/* SPDX-License-Identifier: MIT */
/*
 * The K-quants' packed 6-bit scales as bytes of a vector, for every x86
 * kernel of them (kernels_quant_x86.h, gemm_kquant_vnni.c,
 * gemm_kquant_avx2.c): plain SSE2 on 32-bit words, inlined into each
 * caller's target.
 */
#pragma once

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/* Q4_K, Q5_K: the 8 6-bit scales (bytes 0-7) and mins (bytes 8-15) of a block (quant_types.h's packing). */
static inline __attribute__((always_inline)) __m128i k4_scales_mins(const uint8_t *scales)
{
        uint32_t w0, w1, w2;
        memcpy(&w0, scales, 4);
        memcpy(&w1, scales + 4, 4);
        memcpy(&w2, scales + 8, 4);
        const uint32_t sc_lo = w0 & 0x3f3f3f3f, sc_hi = (w2 & 0x0f0f0f0f) | ((w0 >> 6) & 0x03030303) << 4;
        const uint32_t m_lo = w1 & 0x3f3f3f3f, m_hi = ((w2 >> 4) & 0x0f0f0f0f) | ((w1 >> 6) & 0x03030303) << 4;
        return _mm_setr_epi32((int)sc_lo, (int)sc_hi, (int)m_lo, (int)m_hi);
}

/* Q3_K: the 16 6-bit scales, minus 32, as int8. */
static inline __attribute__((always_inline)) __m128i q3k_scales(const uint8_t *scales)
{
        uint32_t w0, w1, w2;
        memcpy(&w0, scales, 4);
        memcpy(&w1, scales + 4, 4);
        memcpy(&w2, scales + 8, 4);
        const uint32_t lo4 = 0x0f0f0f0f, lo2 = 0x03030303;
        const uint32_t s0 = (w0 & lo4) | (w2 & lo2) << 4;
        const uint32_t s1 = (w1 & lo4) | ((w2 >> 2) & lo2) << 4;
        const uint32_t s2 = ((w0 >> 4) & lo4) | ((w2 >> 4) & lo2) << 4;
        const uint32_t s3 = ((w1 >> 4) & lo4) | ((w2 >> 6) & lo2) << 4;
        return _mm_sub_epi8(_mm_setr_epi32((int)s0, (int)s1, (int)s2, (int)s3), _mm_set1_epi8(32));
}
