/* SPDX-License-Identifier: MIT */
/*
 * Block-quantized GGUF weights (Q4_0 .. Q8_0, Q2_K .. Q6_K) times
 * activations quantized per block with the scheme ggml pairs with each
 * type (quant_types.h), with integer dot products, as llama.cpp computes
 * them; and the w4a8 precision (Q4_0 blocks times int8 activations with one
 * scale per token).
 *
 * Every kernel path (portable C, AVX2 vpmaddubsw, AVX-512 VNNI vpdpbusd)
 * computes the same numbers in the same order, so they are bit-identical,
 * and so is every batch size (one token or many: batch-invariant). The
 * definition, for one weight row and one token:
 *
 *   acc = 0
 *   for each weight block b (32 or 256 elements), in order:
 *     isum = sum over the block of sc(k) * w(k) * a(k)      (exact int32)
 *       w(k): the stored integer (Q4_0: q - 8, Q5_0: q - 16, Q3_K: the
 *             signed 3-bit value, Q6_K: q - 32, the others as stored),
 *       sc(k): the sub-block's integer scale (K-quants; 1 otherwise),
 *       a(k): the int8 activation;
 *     acc = fmaf(dw * da, (float)isum, acc)       dw, da: the block scales
 *     Q4_1, Q5_1:        acc = fmaf(mw, sa, acc)   (the min, Q8_1's block sum)
 *     Q2_K, Q4_K, Q5_K:  acc = fmaf(-(dminw * da), (float)M, acc),
 *       M = sum over sub-blocks of min * (the sum of their activations)
 *   y = acc; w4a8: y = acc * the token's activation scale.
 *
 * Integer sums are exact, so a kernel may form them in any order and by
 * any identity (an offset taken out of w and put back through the
 * activations' sums): only the float steps are fixed.
 */
#pragma once

#include <stdint.h>

#include "model.h"
#include "quant.h"
#include "quant_types.h"

/* Activations of up to cap_rows tokens quantized with one scheme. */
struct act_blocks {
        enum act_scheme scheme;
        int32_t cap_rows;
        int64_t cap_cols;
        int64_t cols;   /* of the rows quantized last; rows are packed by it */
        int8_t *q;      /* [rows][cols] */
        float *d;       /* [rows][cols / 32] (Q8_0, Q8_1, per token: all 1) or [rows][cols / 256] (Q8_K) */
        float *s;       /* Q8_1: [rows][cols / 32], d * sum(q) rounded to f16 */
        int16_t *bsums; /* Q8_K: [rows][cols / 16] */
        int32_t *asum;  /* Q8_0, per token: [rows][cols / 32], the sum of each block's q */
        struct act_q tok; /* per token (w4a8): q8 and scale, the w8a8 quantizer's */
};

int act_blocks_alloc(struct act_blocks *a, enum act_scheme s, int32_t rows, int64_t cols);
void act_blocks_free(struct act_blocks *a);
/*
 * Quantize rows [t0, t1) of x (rows of cols floats); cols must be a multiple
 * of the scheme's block (32, or 256 for Q8_K).
 */
void act_blocks_quantize(struct act_blocks *a, const float *x, int64_t cols, int64_t t0, int64_t t1);
/* The scheme's block: 32, or 256 for Q8_K. */
int64_t act_scheme_block(enum act_scheme s);

/* The activation scheme a weight of the model runs with (w4a8 models: per token). */
enum act_scheme weight_act_scheme(const struct npu_weight *w, enum npu_precision p);

/*
 * y[t * ys + r] for r in [r0, r1), t < n_tok: rows of a block-quantized
 * weight times activations quantized with weight_act_scheme().
 */
void matmul_quant_rows(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok, float *y, size_t ys,
                       int64_t r0, int64_t r1);
