/* SPDX-License-Identifier: MIT */
/*
 * Straight-line code over a register tile, for the int8 GEMM's kernels:
 * TILE_AxB(OP) expands OP(i, j) for every i < A, j < B, each guarded by
 * the tile's (constant) size, so no loop counter ever indexes the array of
 * sums. GCC keeps such an array in registers only if every access has
 * constant indices before its early passes run (loops are unrolled later):
 * one loop over the sums in an epilogue sends them all through memory on
 * every step of the main loop.
 */
#pragma once

#define TILE_ROW4(OP, i) OP(i, 0) OP(i, 1) OP(i, 2) OP(i, 3)
#define TILE_ROW12(OP, i) TILE_ROW4(OP, i) OP(i, 4) OP(i, 5) OP(i, 6) OP(i, 7) OP(i, 8) OP(i, 9) OP(i, 10) OP(i, 11)
#define TILE_4x4(OP) TILE_ROW4(OP, 0) TILE_ROW4(OP, 1) TILE_ROW4(OP, 2) TILE_ROW4(OP, 3)
#define TILE_4x12(OP) TILE_ROW12(OP, 0) TILE_ROW12(OP, 1) TILE_ROW12(OP, 2) TILE_ROW12(OP, 3)
#define TILE_8x12(OP) TILE_4x12(OP) TILE_ROW12(OP, 4) TILE_ROW12(OP, 5) TILE_ROW12(OP, 6) TILE_ROW12(OP, 7)
