/* SPDX-License-Identifier: MIT */
/*
 * The GEMM of the 32-element block types: Q4_0, Q5_0 and Q8_0 weights times
 * Q8_0 activations (Q4_0 also times w4a8's per-token int8), Q4_1 and Q5_1
 * times Q8_1, for many tokens at once (prefill, batched decode),
 * register-blocked like the K-quant GEMM (gemm_kquant.h).
 *
 * A block of up to GEMM_B32_PANELS panels of GEMM_B32_PANEL rows is
 * unpacked once per slice of K into the int8 GEMM's panel layout (K in
 * groups of 4 bytes, group g holding 4 bytes of each of the 16 rows), as
 * unsigned bytes: Q4_0's nibble q = w + 8, Q5_0's q = w + 16, Q8_0's
 * w + 128, Q4_1/Q5_1's q as stored. vpdpbusd sums each row's 32 columns of
 * a block in its own int32 lane, starting from -offset * (the activations'
 * block sum), which takes the offset out: the definition's exact isum. A
 * register tile of 2 panels x 6 tokens keeps, per output, that sum and the
 * float sum, and per block runs the float steps of kernels_quant.h's
 * definition on 16 rows at once, in its order:
 *   y = fma(dw * da, isum, y);  Q4_1, Q5_1: y = fma(m, s, y)
 * The float sums rest in y between slices. The results are those of the
 * portable C definition bit for bit, for any batch and any split of rows.
 * gemm_block_avx2.c is the AVX2 twin: panels of 8 rows, vpmaddubsw pair
 * sums kept below int16's limit.
 */
#pragma once

#include <stdint.h>

#include "kernels_quant.h"

#define GEMM_B32_PANEL 16
#define GEMM_B32_PANELS 4
#define GEMM_B32_PANEL_AVX2 8 /* gemm_block_avx2.c's panels: a ymm register's int32 lanes */

/*
 * y[t * ys + r] for t < n_tok and r in [r0, r), r the returned row: as
 * many whole panels of 16 rows from r0 as [r0, r1) holds, for the
 * 32-element block types with their activation scheme (r0 for others).
 * The caller computes the rows left.
 */
int64_t gemm_block32_vnni(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok, float *y, size_t ys,
                          int64_t r0, int64_t r1);
/* The same on AVX2 (gemm_block_avx2.c), whole panels of 8 rows. */
int64_t gemm_block32_avx2(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok, float *y, size_t ys,
                          int64_t r0, int64_t r1);
