/* SPDX-License-Identifier: MIT */
/*
 * The GGUF files npu-quantize writes for llama.cpp's type names: which
 * block type each tensor of a Llama model gets.
 *   q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k: every matrix in that
 *     type, the output head in Q6_K (Q8_0 stays Q8_0);
 *   q4_k_m, q5_k_m: Q4_K (Q5_K), but attn_v and ffn_down in Q6_K in the
 *     first and last eighth of the layers and every third one between
 *     (llama.cpp's "_M" mixes), the output head in Q6_K.
 * A K-quant matrix whose rows are not a multiple of 256 falls back to a
 * 32-element type (Q2_K, Q3_K -> Q4_0; Q4_K -> Q5_0; Q5_K -> Q5_1;
 * Q6_K -> Q8_0).
 */
#pragma once

#include <stdint.h>

#include "gguf.h"

enum quant_tensor {
        QUANT_TENSOR_EMBEDDING,
        QUANT_TENSOR_OUTPUT,
        QUANT_TENSOR_ATTN_Q,
        QUANT_TENSOR_ATTN_K,
        QUANT_TENSOR_ATTN_V,
        QUANT_TENSOR_ATTN_OUTPUT,
        QUANT_TENSOR_FFN_GATE,
        QUANT_TENSOR_FFN_UP,
        QUANT_TENSOR_FFN_DOWN,
};

struct quant_preset {
        const char *name;
        enum ggml_type base;
        bool mix_m;          /* the _M mix */
        uint32_t file_type;  /* llama.cpp's general.file_type */
};

/* The preset called name, or NULL. */
const struct quant_preset *quant_preset_find(const char *name);
/* The names, space separated, for messages. */
const char *quant_preset_names(void);
/* The type of tensor kind t of layer (0 for embedding and output) of n_layers, with rows of cols elements. */
enum ggml_type quant_preset_type(const struct quant_preset *p, enum quant_tensor t, int layer, int n_layers,
                                 int64_t cols);
