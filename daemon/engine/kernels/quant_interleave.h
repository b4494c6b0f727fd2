/* SPDX-License-Identifier: MIT */
/*
 * Block-quantized matrices of the 32-element types with fifth bits (Q5_0,
 * Q5_1) in groups of QI_ROWS rows interleaved block by block, the layout
 * the AVX-512 VNNI one-token kernel (quant_interleave_vnni.c) reads: each
 * row in its own 32-bit lane, so a block of sixteen rows is four
 * vpdpbusd pairs against four activation bytes broadcast, with no
 * horizontal sums and no shuffles. The group's bytes are the sixteen rows'
 * bytes, rearranged (the matrix keeps its size and place). A group's block
 * b (16 x the type's block bytes, at b times that from the group's start):
 *
 *   qs[4][64]  vector m, bytes 4 r .. 4 r + 3: row r's qs[4 m .. 4 m + 3]
 *              (low nibbles: elements 4 m + j; high: 16 + 4 m + j)
 *   qh[4][2]   u64 masks, bit 4 r + j of [m][0]: the fifth bit of row r's
 *              element 4 m + j; of [m][1]: of element 16 + 4 m + j
 *   d[16]      f16, row r's d
 *   m[16]      Q5_1: f16, row r's m
 *
 * A weight's interleave field says which layout its data is in (model.h).
 * Every kernel path reads both: the VNNI one-token kernel reads the groups,
 * the others a group's rows put back in their own layout
 * (quant_interleaved_rows), and all compute the same numbers.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "model.h"

#define QI_ROWS 16

struct act_blocks;

/* Whether t has the interleaved layout. */
bool quant_interleave_type(enum ggml_type t);

/*
 * Whether w is worth interleaving on this machine: a type with the layout,
 * whole groups of rows, and the AVX-512 VNNI kernels in use (the others
 * read interleaved rows only by putting them back). NPU_INTERLEAVE=0 turns
 * it off (to compare the two).
 */
bool quant_interleave_wanted(const struct npu_weight *w);

/* QI_ROWS rows of K elements of type t, stored one after the other at src, into one group at dst (not src). */
void quant_interleave_group(enum ggml_type t, int64_t K, const uint8_t *src, uint8_t *dst);

/* Row r (< QI_ROWS) of the group at src, in its own layout, into dst (row bytes). */
void quant_deinterleave_row(enum ggml_type t, int64_t K, const uint8_t *src, int r, uint8_t *dst);

/* Rows [r0, r1) of the interleaved w, in their own layout, one after the other into dst. */
void quant_interleaved_rows(const struct npu_weight *w, int64_t r0, int64_t r1, uint8_t *dst);

/*
 * Interleaves w's data in place (w->data must be writable); sets
 * w->interleave. Returns -ENOMEM (w unchanged) or -EINVAL when w has no
 * such layout.
 */
int quant_interleave_weight(struct npu_weight *w);

/*
 * The AVX-512 VNNI one-token kernel on an interleaved weight: y[t * ys + r]
 * for r in [r0, r1) (any rows: a group's other rows are computed and not
 * stored), as matmul_quant_rows, before a per-token scale.
 */
void matmul_interleaved_vnni(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok, float *y,
                             size_t ys, int64_t r0, int64_t r1);
