/* SPDX-License-Identifier: MIT */
/*
 * Int8 weights (symmetric, one f32 scale per output channel) times
 * activations quantized per token at run time:
 *   w8a8:  int8 activations,  scale = absmax / 127,   q = round(x / scale)
 *   w8a16: int16 activations, scale = absmax / 32767, q = round(x / scale)
 * clamped to +-127 (+-32767), round() half away from zero, NaN to 0, and an
 * all-zero row gets scale 1: the same rule as the device's npu_ref_quant_i8/i16.
 * The integer sums are exact (int32 for w8a8, int64 for w8a16), so every
 * dispatch path gives bit-identical outputs:
 *   y[t][r] = ((float)acc[t][r] * a_scale[t]) * w_scale[r]
 */
#pragma once

#include <stdint.h>

#include "model.h"

/*
 * The forms of the quantized activations that act_quantize_rows wrote:
 * rows as they are (the device's and the portable C's), and packed for the
 * SIMD GEMM (gemm_int8.h): groups of GEMM_TOK_GROUP tokens, 4 columns of
 * each token in turn, so that a kernel broadcasts them from one pointer.
 */
enum act_form {
        ACT_Q8 = 1u << 0,   /* w8a8: int8 rows */
        ACT_Q16 = 1u << 1,  /* w8a16: int16 rows */
        ACT_U8P = 1u << 2,  /* w8a8: q8 + 128 as uint8, packed (AVX-512 VNNI's unsigned operand) */
        ACT_Q16P = 1u << 3, /* int16 packed: w8a16's, or w8a8's widened (AVX2's vpmaddwd) */
};

struct act_q {
        int32_t cap_rows;
        int64_t cap_cols;
        int64_t cols;
        enum npu_precision prec;
        unsigned forms; /* enum act_form */
        int8_t *q8;
        int16_t *q16;
        uint8_t *pk; /* ACT_U8P or ACT_Q16P */
        float *scale;
};

/*
 * Threads that quantize rows of one act_q at once take them in runs of
 * this many tokens: the packed form interleaves a group's tokens 4 bytes
 * at a time, so two threads writing tokens of one group would write the
 * same cache lines (a line moving between the cores every few stores:
 * 11 % of a TinyLlama w8a8 decode step of 8 sequences, 2 threads).
 */
#define ACT_Q_TOKEN_ALIGN 12 /* gemm_int8.h's GEMM_TOK_GROUP */

int act_q_alloc(struct act_q *a, int32_t rows, int64_t cols);
void act_q_free(struct act_q *a);
/*
 * Quantize rows [t0, t1) of x (rows of cols floats) for the given precision,
 * in the forms the GEMM of kernels_isa() reads (w8a8: q8 always).
 */
void act_quantize_rows(struct act_q *a, enum npu_precision p, const float *x, int64_t cols, int64_t t0, int64_t t1);

/*
 * Rows [0, rows) of x (rows of k floats) each by the device's QUANT_I8 rule
 * (npu_ref_quant_i8, the same bits), on this cpu's SIMD path: bytes into
 * q, each row's scale into scale[m]. The q8 KV cache's rows and the
 * attention's queries, a head at a time.
 */
void quant_rows_i8(const float *x, int8_t *q, float *scale, int64_t k, int64_t rows);

/* y[t * ys + r] for r in [r0, r1): int8 weights (packed, gemm_int8.h) times quantized activations. */
void matmul_int8_rows(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, float *y, size_t ys,
                      int64_t r0, int64_t r1);

/* Symmetric per-row int8 quantization of a float matrix (the quantizer's). */
void quantize_weight_rows(const float *w, int64_t rows, int64_t cols, int8_t *q, float *scale);
