/* SPDX-License-Identifier: MIT */
/*
 * The register tiles' table of the panel GEMMs on every instruction set
 * (gemm_panel_zmm.h's and gemm_block_avx2.c's): no instructions here.
 */
#pragma once

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/*
 * The register tiles of a panel GEMM, 1 or 2 panels x 1 to 6 tokens:
 * functions pfx_MRxNR(sl, p0, n, tk) that call tile(sl, p0, n, tk, MR, NR,
 * flag) with constant shapes, and their table [MR - 1][NR] (NR 0 unused).
 */
#define PANEL_TILE(pfx, SLICE, TOKENS, tile, flag, MR, NR)                                            \
        static void pfx##_##MR##x##NR(const SLICE *sl, int p0, int n, const TOKENS *tk)                \
        {                                                                                              \
                tile(sl, p0, n, tk, MR, NR, flag);                                                     \
        }
#define PANEL_TILES(pfx, SLICE, TOKENS, tile, flag)                                                   \
        PANEL_TILE(pfx, SLICE, TOKENS, tile, flag, 1, 1) PANEL_TILE(pfx, SLICE, TOKENS, tile, flag, 1, 2) \
        PANEL_TILE(pfx, SLICE, TOKENS, tile, flag, 1, 3) PANEL_TILE(pfx, SLICE, TOKENS, tile, flag, 1, 4) \
        PANEL_TILE(pfx, SLICE, TOKENS, tile, flag, 1, 5) PANEL_TILE(pfx, SLICE, TOKENS, tile, flag, 1, 6) \
        PANEL_TILE(pfx, SLICE, TOKENS, tile, flag, 2, 1) PANEL_TILE(pfx, SLICE, TOKENS, tile, flag, 2, 2) \
        PANEL_TILE(pfx, SLICE, TOKENS, tile, flag, 2, 3) PANEL_TILE(pfx, SLICE, TOKENS, tile, flag, 2, 4) \
        PANEL_TILE(pfx, SLICE, TOKENS, tile, flag, 2, 5) PANEL_TILE(pfx, SLICE, TOKENS, tile, flag, 2, 6)
#define PANEL_TILE_TABLE(pfx)                                                                         \
        { { NULL, pfx##_1x1, pfx##_1x2, pfx##_1x3, pfx##_1x4, pfx##_1x5, pfx##_1x6 },                  \
          { NULL, pfx##_2x1, pfx##_2x2, pfx##_2x3, pfx##_2x4, pfx##_2x5, pfx##_2x6 } }
