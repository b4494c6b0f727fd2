/* SPDX-License-Identifier: MIT */
/*
 * A block of an interleaved group (quant_interleave.h) in AVX-512
 * registers: what the one-token kernel (quant_interleave_vnni.c) and the
 * 32-element GEMM's unpacking (gemm_block_vnni.c) both read.
 */
#pragma once

#include <immintrin.h>
#include <string.h>

#include "quant_interleave.h"

#define QI_ZMM_INLINE static inline __attribute__((always_inline, target("avx512f,avx512bw,f16c")))

/*
 * Vector m of the group block at x: its low nibbles (each row's columns
 * 4 m .. 4 m + 3) into *lo, its high ones (16 + 4 m ..) into *hi, as
 * unsigned bytes; Q5's fifth bits added as 16 under their masks.
 */
QI_ZMM_INLINE void qi_nibbles(const uint8_t *x, const struct qi_layout *l, int m, __m512i *lo, __m512i *hi)
{
        const __m512i m4 = _mm512_set1_epi8(15), m16 = _mm512_set1_epi8(16);
        const __m512i n = _mm512_loadu_si512(x + 64 * m);

        *lo = _mm512_and_si512(n, m4);
        *hi = _mm512_and_si512(_mm512_srli_epi16(n, 4), m4);
        if (l->qh) {
                uint64_t k[2];
                memcpy(k, x + l->qh + 16 * m, sizeof(k));
                *lo = _mm512_mask_add_epi8(*lo, _cvtu64_mask64(k[0]), *lo, m16);
                *hi = _mm512_mask_add_epi8(*hi, _cvtu64_mask64(k[1]), *hi, m16);
        }
}

/* The sixteen rows' f16 at x (d or m of a group block) as floats. */
QI_ZMM_INLINE __m512 qi_f16x16(const uint8_t *x)
{
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)x));
}
