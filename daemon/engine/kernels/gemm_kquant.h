/* SPDX-License-Identifier: MIT */
/*
 * The K-quant GEMM: Q4_K and Q6_K weights times Q8_K activations for many
 * tokens at once (prefill, batched decode), register-blocked like the int8
 * GEMM (gemm_int8.h).
 *
 * A block of up to GEMM_KQ_PANELS panels of GEMM_KQ_PANEL rows is unpacked
 * once per slice of K into the int8 GEMM's panel layout: K in groups of 4
 * bytes, group g holding 4 bytes of each of the 16 rows in turn, so one
 * 64-byte load is 4 columns of 16 rows and vpdpbusd against 4 activation
 * bytes broadcast to every lane sums each row in its own int32 lane. The
 * weights are unsigned (Q4_K's nibble q; Q6_K's q = w + 32), the activations
 * signed: vpdpbusd's u8 x s8 as it stands. A register tile of 2 panels x 6
 * tokens keeps two int32 sums per output: the inner sum of 16 columns, and
 * the block's isum, to which each inner sum is added times its sub-block's
 * scale (Q4_K: vpdpwssd, the inner sum fits int16; Q6_K: vpmulld). Per
 * super-block of 256 the float steps of kernels_quant.h's definition run
 * on the 16 rows of a panel at once, in the definition's order, with the
 * float sums resting in y between super-blocks and slices:
 *   Q4_K: y = fma(d * da, isum, y); y = fma(-(dmin * da), M, y),
 *         M = sum over sub-blocks of min * (their activations' sum)
 *   Q6_K: y = fma(d * da, isum, y), with isum = sum(sc * q * a) minus
 *         32 * sum(sc * bsum) (the offset taken out through the Q8_K sums)
 *   Q5_K (interleaved weights only, quant_interleave.h): Q4_K's steps,
 *         with vpmulld for the scales (q <= 31: the inner sum needs 17 bits)
 * The integer sums are exact, so the results are those of the portable C
 * definition bit for bit, for any batch and any split of rows. An
 * interleaved Q4_K or Q5_K weight's groups of 16 rows are already the
 * panels' groups of 4 bytes: they are unpacked as they are.
 *
 * gemm_kquant_avx2.c is the AVX2 twin, for every K-quant (Q2_K .. Q6_K):
 * panels of 8 rows, vpmaddubsw's int16 pair sums added in runs short
 * enough not to saturate, on the block GEMMs' slice driver
 * (gemm_block_slices.h). AVX-512 VNNI takes it for the K-quants
 * gemm_kquant_vnni() leaves (Q2_K, Q3_K, and Q5_K not interleaved).
 */
#pragma once

#include <stdint.h>

#include "kernels_quant.h"

#define GEMM_KQ_PANEL 16
#define GEMM_KQ_PANELS 4

/*
 * y[t * ys + r] for t < n_tok and r in [r0, r), r the returned row: as
 * many whole panels of 16 rows from r0 as [r0, r1) holds, for Q4_K and
 * Q6_K weights and interleaved Q5_K ones (r0 for other types, and for an
 * interleaved weight when r0 splits a group). The caller computes the rows
 * left.
 */
int64_t gemm_kquant_vnni(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok, float *y, size_t ys,
                         int64_t r0, int64_t r1);
/*
 * The same on AVX2 (gemm_kquant_avx2.c), whole panels of 8 rows, for
 * every K-quant (Q2_K .. Q6_K).
 */
int64_t gemm_kquant_avx2(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok, float *y, size_t ys,
                         int64_t r0, int64_t r1);
