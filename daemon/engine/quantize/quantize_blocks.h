/* SPDX-License-Identifier: MIT */
/*
 * Float rows into GGUF's block types (quant_types.h), the files llama.cpp
 * reads. Each block's scales are fitted to its values by a small search
 * that minimizes the squared error weighted towards large values, then
 * the values are rounded with the scales as stored (f16, and the K-quants'
 * 4/6/8-bit sub-block scales).
 */
#pragma once

#include <stdint.h>

#include "quant_types.h"

/* True for the types quantize_row_blocks can write. */
bool quantize_blocks_supported(enum ggml_type t);
/* n floats (a multiple of t's block) into n / block_elems blocks at out. */
void quantize_row_blocks(enum ggml_type t, const float *x, int64_t n, void *out);
/* Bytes of a row of n elements of type t. */
size_t quant_row_bytes(enum ggml_type t, int64_t n);
