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

struct act_q {
        int32_t cap_rows;
        int64_t cap_cols;
        int64_t cols;
        enum npu_precision prec;
        int8_t *q8;
        int8_t *q8abs; /* |q8|, for the AVX2 kernel's unsigned x signed products */
        int16_t *q16;
        float *scale;
};

int act_q_alloc(struct act_q *a, int32_t rows, int64_t cols);
void act_q_free(struct act_q *a);
/* Quantize rows [t0, t1) of x (rows of cols floats) for the given precision. */
void act_quantize_rows(struct act_q *a, enum npu_precision p, const float *x, int64_t cols, int64_t t0, int64_t t1);

/* y[t * ys + r] for r in [r0, r1): int8 weight rows times quantized activations. */
void matmul_int8_rows(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, float *y, size_t ys,
                      int64_t r0, int64_t r1);

/* Symmetric per-row int8 quantization of a float matrix (the quantizer's). */
void quantize_weight_rows(const float *w, int64_t rows, int64_t cols, int8_t *q, float *scale);
