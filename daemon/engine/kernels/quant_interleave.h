/* SPDX-License-Identifier: MIT */
/*
 * Block-quantized matrices of the 32-element nibble types (Q4_0, Q4_1,
 * Q5_0, Q5_1) in groups of QI_ROWS rows interleaved block by block, the
 * layout the AVX-512 VNNI one-token kernel (quant_interleave_vnni.c) and
 * the 32-element GEMM (gemm_block_vnni.c) read: each row in its own 32-bit
 * lane, so a block of sixteen rows is four vpdpbusd pairs against four
 * activation bytes broadcast, with no horizontal sums and no shuffles. The
 * group's bytes are the sixteen rows' bytes, rearranged (the matrix keeps
 * its size and place). A group's block b (16 x the type's block bytes, at
 * b times that from the group's start), at the offsets struct qi_layout
 * gives:
 *
 *   qs[4][64]  vector m, bytes 4 r .. 4 r + 3: row r's qs[4 m .. 4 m + 3]
 *              (low nibbles: elements 4 m + j; high: 16 + 4 m + j)
 *   qh[4][2]   Q5_0, Q5_1: u64 masks, bit 4 r + j of [m][0]: the fifth
 *              bit of row r's element 4 m + j; of [m][1]: of element
 *              16 + 4 m + j
 *   d[16]      f16, row r's d
 *   m[16]      Q4_1, Q5_1: f16, row r's m
 *
 * A weight's interleave field says which layout its data is in (model.h).
 * Every kernel path reads both: those above the groups, the others a
 * group's rows put back in their own layout (quant_interleaved_rows), and
 * all compute the same numbers.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "model.h"

#define QI_ROWS 16

struct act_blocks;

/* Where the parts of a type's group block are (bytes from its start; qh, m: 0 when none). */
struct qi_layout {
        size_t bytes, qh, d, m;
        int off; /* the offset of q: w = q - off (Q4_0 8, Q5_0 16) */
};

static inline bool qi_layout_of(enum ggml_type t, struct qi_layout *l)
{
        const bool five = t == GGML_TYPE_Q5_0 || t == GGML_TYPE_Q5_1;
        const bool with_m = t == GGML_TYPE_Q4_1 || t == GGML_TYPE_Q5_1;

        if (t != GGML_TYPE_Q4_0 && t != GGML_TYPE_Q4_1 && !five)
                return false;
        l->qh = five ? 256 : 0;
        l->d = five ? 320 : 256;
        l->m = with_m ? l->d + 32 : 0;
        l->bytes = (with_m ? l->m : l->d) + 32;
        l->off = t == GGML_TYPE_Q4_0 ? 8 : t == GGML_TYPE_Q5_0 ? 16 : 0;
        return true;
}

/* Whether t has the interleaved layout. */
bool quant_interleave_type(enum ggml_type t);

/*
 * Whether w is worth interleaving on this machine: a type with the layout,
 * whole groups of rows, and the AVX-512 VNNI kernels in use (the others
 * read interleaved rows only by putting them back). NPU_INTERLEAVE=0 turns
 * it off (to compare the two).
 */
bool quant_interleave_wanted(const struct npu_weight *w);

/* Row r of the interleaved w as floats (out: w->cols), a block at a time. */
void quant_interleaved_row_f32(const struct npu_weight *w, int64_t r, float *out);

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
