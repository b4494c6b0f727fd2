/* SPDX-License-Identifier: MIT */
/*
 * w4a8: int4 weights, symmetric (q in [-7, 7]), one scale per group of 32
 * or 128 elements along K, after SmoothQuant's migration; int8
 * activations with one scale per token. The weights are stored as Q4_0
 * blocks (q + 8 in the nibbles, the group's f16 scale as d; a group of 128
 * repeats its scale in its four blocks), so the file is also one llama.cpp
 * reads, as Q4_0.
 */
#pragma once

#include <stdint.h>

#include "quant_types.h"

/* One row of cols floats into cols / 32 Q4_0 blocks with int4 groups of group (32 or 128) elements. */
void w4a8_quantize_row(const float *w, int64_t cols, int group, struct block_q4_0 *out);
