/* SPDX-License-Identifier: MIT */
/*
 * Shared by the block-type GEMMs on AVX-512 (gemm_kquant_vnni.c,
 * gemm_block_vnni.c): panels of 16 rows in the int8 GEMM's layout, K in
 * groups of 4 bytes, group g holding 4 bytes of each of the 16 rows in
 * turn. Include after the file's #pragma GCC target and <immintrin.h>.
 */
#pragma once

#include <stdint.h>
#include <string.h>

#include "gemm_panel_tiles.h"

/*
 * 16 rows of 8 int32, two rows a vector (z[p]: row 2p in lanes 0-7, row
 * 2p + 1 in lanes 8-15), in place into 8 vectors: z[g] lane i = row i's
 * int32 g. Three rounds of vpermt2d, each halving the columns a vector
 * holds and doubling its rows.
 */
ALWAYS_INLINE void transpose16x8(__m512i *z)
{
        __m512i a[8], b[8];
        int32_t i1[2][16], i2[2][16], i3[2][16];

        for (int x = 0; x < 2; x++)
                for (int l = 0; l < 16; l++) {
                        const int g4 = l / 4, r4 = l % 4, g8 = l / 8, r8 = l % 8;
                        /* round 1, lane 4 g4 + r4: row r4 of 4, column 4 x + g4 */
                        i1[x][l] = (r4 < 2 ? 0 : 16) + 8 * (r4 % 2) + 4 * x + g4;
                        /* round 2, lane 8 g8 + r8: row r8 of 8, column 2 x + g8 of the 4 */
                        i2[x][l] = (r8 < 4 ? 0 : 16) + 4 * (2 * x + g8) + r8 % 4;
                        /* round 3, lane l: row l of 16, column x of the 2 */
                        i3[x][l] = (l < 8 ? 0 : 16) + 8 * x + l % 8;
                }
        for (int q = 0; q < 4; q++)
                for (int x = 0; x < 2; x++)
                        a[2 * q + x] = _mm512_permutex2var_epi32(z[2 * q], _mm512_loadu_si512(i1[x]), z[2 * q + 1]);
        /* a[2q + x]: rows 4q..4q+3, columns 4x..4x+3 */
        for (int q = 0; q < 2; q++)
                for (int x = 0; x < 2; x++)
                        for (int y = 0; y < 2; y++)
                                b[4 * q + 2 * x + y] = _mm512_permutex2var_epi32(
                                        a[4 * q + x], _mm512_loadu_si512(i2[y]), a[4 * q + 2 + x]);
        /* b[4q + 2x + y]: rows 8q..8q+7, columns 4x + 2y, 4x + 2y + 1 */
        for (int x = 0; x < 2; x++)
                for (int y = 0; y < 2; y++)
                        for (int g = 0; g < 2; g++)
                                z[4 * x + 2 * y + g] = _mm512_permutex2var_epi32(
                                        b[2 * x + y], _mm512_loadu_si512(i3[g]), b[4 + 2 * x + y]);
}

/* The int32 at p (4 activation bytes) in every lane. */
ALWAYS_INLINE __m512i bcast4(const void *p)
{
        int32_t v;
        memcpy(&v, p, 4);
        return _mm512_set1_epi32(v);
}

/* A register tile's shape at most: panels, tokens. */
#define PANEL_MR 2
#define PANEL_NR 6

/*
 * One group of 4 columns of a register tile: in[i][j] += panel i's group
 * (the 64 bytes at wg[i]) times token j's 4 activation bytes at q[j] + 4g.
 */
ALWAYS_INLINE void panel_group_dot(__m512i in[PANEL_MR][PANEL_NR], const uint8_t *const *wg, const int8_t *const *q,
                                   int g, const int MR, const int NR)
{
        __m512i wv[PANEL_MR];

        for (int i = 0; i < MR; i++)
                wv[i] = _mm512_load_si512(wg[i]);
        for (int j = 0; j < NR; j++) {
                const __m512i av = bcast4(q[j] + 4 * g);
                for (int i = 0; i < MR; i++)
                        in[i][j] = _mm512_dpbusd_epi32(in[i][j], wv[i], av);
        }
}
