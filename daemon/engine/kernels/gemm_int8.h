/* SPDX-License-Identifier: MIT */
/*
 * The int8 GEMM: weights (int8, one f32 scale per output row) times
 * activations quantized per token (quant.h), for any number of tokens,
 * from the one-token decode step to a whole prompt.
 *
 * Weights are repacked once, at load, into panels of GEMM_PANEL rows: row
 * r lives in panel r / GEMM_PANEL, which holds h = min(GEMM_PANEL, rows -
 * first row) rows in the bytes the same rows take row by row
 * (panel p starts at byte p * GEMM_PANEL * K). Inside a panel the K columns
 * come in groups of 4; group g holds 4 bytes of each of the h rows in turn:
 *   byte g * 4h + 4i + j = w[row i][4g + j]      (j < 4, 4g + 4 <= K)
 * and the last K % 4 columns follow, row after row:
 *   byte (K / 4) * 4h + i * (K % 4) + j = w[row i][4 (K / 4) + j]
 * One 64-byte load is then 4 columns of 16 rows: a vector of 16 int32
 * lanes, one per output row, takes vpdpbusd's four products per lane
 * against 4 activation bytes broadcast to every lane. Each row is summed
 * in its own lane (no horizontal sums), and a register tile of up to 24
 * such sums (rows x tokens) reuses every load many times.
 *
 * Exactness: weights are in [-127, 127] (packing clamps -128 to -127), and
 * matrices have at most GEMM_I8_MAX_K columns, so a w8a8 sum fits int32 and
 * a w8a16 sum int64; every path computes the exact integer sum and then
 *   y[t][r] = ((float)sum * a_scale[t]) * w_scale[r]
 * so the portable C, AVX2 and AVX-512 VNNI paths and the device's
 * reference agree bit for bit, whatever the number of tokens (the GEMM is
 * batch-invariant) or the split of rows over threads.
 *
 * How each instruction set gets its sums:
 *   AVX-512 VNNI, w8a8:  vpdpbusd of u8 activations (q8 + 128) by s8
 *       weights, minus 128 * sum(w[r]) (a per-row sum computed at packing),
 *       modulo 2^32, which is exact since the true sum fits int32;
 *   AVX-512 VNNI, w8a16: vpdpwssd of int16 activations by the weights
 *       widened to int16 (vpmovsxbw), lanes flushed to int64;
 *   AVX2, both:          vpmaddwd of int16 activations (w8a8's widened) by
 *       the weights widened to int16 (vpmaddubsw would saturate on u8 x s8);
 *   portable C:          the sums as written.
 */
/*
 * Other int8-valued weights (GGUF Q8_0 blocks, 4-bit groups unpacked to
 * int8) can share the layouts: gemm_i8_pack puts any int8 rows into these
 * panels, and act_quantize_rows leaves the activations packed as below
 * (gemm_act_offset), so a kernel with per-block scales walks the same
 * loads; gemm_i8() itself takes one scale per row.
 */
#pragma once

#include <stdint.h>

#include "model.h"
#include "quant.h"

#define GEMM_PANEL 16
/*
 * Activations packed for the SIMD kernels (act_q's pk): tokens in groups of
 * GEMM_TOK_GROUP; in a group, columns 4g..4g+3 of token j (elements of
 * `size` bytes, 1 for u8, 2 for int16) at
 *   ((t / GEMM_TOK_GROUP) * ceil(K / 4) + g) * GEMM_TOK_GROUP + t % GEMM_TOK_GROUP
 * times 4 * size bytes; the last group of columns is padded with zeros.
 */
#define GEMM_TOK_GROUP 12
_Static_assert(GEMM_TOK_GROUP == ACT_Q_TOKEN_ALIGN, "quantizing threads split the packed rows by token group");
/* 127 * 127 * 131072 < 2^31: every w8a8 sum fits int32 */
#define GEMM_I8_MAX_K 131072

/* Byte offset of w[r][k] in a packed matrix of rows x K. */
static inline size_t gemm_i8_offset(int64_t rows, int64_t K, int64_t r, int64_t k)
{
        const int64_t p0 = r - r % GEMM_PANEL, h = rows - p0 < GEMM_PANEL ? rows - p0 : GEMM_PANEL;
        const int64_t i = r - p0, k4 = K & ~(int64_t)3;

        if (k < k4)
                return (size_t)(p0 * K + (k / 4) * 4 * h + 4 * i + k % 4);
        return (size_t)(p0 * K + k4 * h + i * (K - k4) + (k - k4));
}

static inline size_t gemm_act_offset(int64_t K, int64_t t, int64_t k, int size)
{
        const int64_t groups = (K + 3) / 4;
        return (size_t)(((t / GEMM_TOK_GROUP * groups + k / 4) * GEMM_TOK_GROUP + t % GEMM_TOK_GROUP) * 4 + k % 4) *
               size;
}

/* Bytes of packed activations for rows x K (int16, the larger). */
static inline size_t gemm_act_bytes(int64_t rows, int64_t K)
{
        return (size_t)((rows + GEMM_TOK_GROUP - 1) / GEMM_TOK_GROUP * GEMM_TOK_GROUP * ((K + 3) / 4) * 4 * 2);
}

/*
 * Packs rows x K int8 weights, row after row in src, into the panel layout
 * at dst (the same size; dst may be src). Bytes of -128 become -127 and are
 * counted in *clamped; row_sums[r] gets the sum of row r (after clamping).
 * Returns 0 or -ENOMEM.
 */
int gemm_i8_pack(int8_t *dst, const int8_t *src, int64_t rows, int64_t K, int32_t *row_sums, uint64_t *clamped);

/* Row r of a packed matrix, as K bytes. */
void gemm_i8_unpack_row(const int8_t *panels, int64_t rows, int64_t K, int64_t r, int8_t *out);

/*
 * y[t * ys + r] for r in [r0, r1), t < n_tok: w (I8, packed, with scale and
 * row_sums) times the activations a (quantized for w8a8 or w8a16 with
 * act_quantize_rows under the same kernels_isa()).
 */
void gemm_i8(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, float *y, size_t ys, int64_t r0,
             int64_t r1);

/*
 * Rows of the chunks a caller should hand gemm_i8 for w and n_tok tokens of
 * a, where it would otherwise take `rows` (the decode step's): larger on
 * AMX, whose GEMM reads all the chunk's activations once per chunk, and
 * does not keep them in L2 past it when they exceed it.
 */
int64_t gemm_i8_chunk_rows(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, int64_t rows);

/*
 * Each instruction set's kernels, over whole panels: rows [r0, r1) with r0
 * and r1 multiples of GEMM_PANEL and r1 <= the last full panel's end.
 */
typedef void gemm_i8_panels_fn(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, float *y,
                               size_t ys, int64_t r0, int64_t r1);
gemm_i8_panels_fn gemm_i8_w8a8_avx2, gemm_i8_w8a16_avx2;
gemm_i8_panels_fn gemm_i8_w8a8_vnni, gemm_i8_w8a16_vnni;
gemm_i8_panels_fn gemm_i8_w8a8_amx;
/* gemm_i8_chunk_rows for gemm_i8_w8a8_amx (gemm_int8_amx.c, which knows its limits) */
int64_t gemm_i8_amx_chunk_rows(const struct npu_weight *w, int64_t n_tok, int64_t rows);
