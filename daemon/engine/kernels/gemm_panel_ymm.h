/* SPDX-License-Identifier: MIT */
/*
 * Shared by the block-type GEMMs on AVX2 (gemm_block_avx2.c,
 * gemm_kquant_avx2.c): panels of 8 rows in the int8 GEMM's layout, K in
 * groups of 4 bytes, group g holding 4 bytes of each of the 8 rows in turn
 * (a ymm register's int32 lanes). Include after the file's #pragma GCC
 * target and <immintrin.h>.
 */
#pragma once

#include <stdint.h>
#include <string.h>

#include "gemm_panel_tiles.h"

/* 8 rows of 8 int32 (z[i]: row i) in place into z[g] lane i = row i's int32 g. */
ALWAYS_INLINE void transpose8x8(__m256i *z)
{
        __m256i t[8], u[8];

        for (int p = 0; p < 4; p++) {
                /* rows 2p, 2p + 1 interleaved: int32 0, 1 | 4, 5, and 2, 3 | 6, 7 */
                t[2 * p] = _mm256_unpacklo_epi32(z[2 * p], z[2 * p + 1]);
                t[2 * p + 1] = _mm256_unpackhi_epi32(z[2 * p], z[2 * p + 1]);
        }
        for (int h = 0; h < 2; h++) {
                /* rows 4h..4h+3 of int32 0 | 4, 1 | 5, 2 | 6, 3 | 7 */
                u[4 * h] = _mm256_unpacklo_epi64(t[4 * h], t[4 * h + 2]);
                u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h], t[4 * h + 2]);
                u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
                u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
        }
        for (int g = 0; g < 4; g++) {
                z[g] = _mm256_permute2x128_si256(u[g], u[4 + g], 0x20);
                z[g + 4] = _mm256_permute2x128_si256(u[g], u[4 + g], 0x31);
        }
}

/*
 * 8 rows' vectors (z[i]: row i's 32 bytes, or 8 int32) turned into 8
 * vectors with a lane per row, stored in turn from dst (32-byte aligned):
 * 8 groups of a panel, or 8 numbers of each row.
 */
ALWAYS_INLINE void store_transposed8(void *dst, __m256i *z)
{
        transpose8x8(z);
        for (int g = 0; g < 8; g++)
                _mm256_store_si256((__m256i *)dst + g, z[g]);
}

/* The int32 at p (4 activation bytes) in every lane. */
ALWAYS_INLINE __m256i bcast4(const void *p)
{
        int32_t v;
        memcpy(&v, p, 4);
        return _mm256_set1_epi32(v);
}
