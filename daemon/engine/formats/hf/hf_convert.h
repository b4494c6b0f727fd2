/* SPDX-License-Identifier: MIT */
/*
 * Hugging Face Llama directory -> GGUF, with the keys and tensor names that
 * llama.cpp's converter writes and model.c reads.
 *
 * The directory holds config.json, model.safetensors (or the shards listed by
 * model.safetensors.index.json, or every model*.safetensors) and
 * tokenizer.model. q_proj and k_proj rows are permuted from HF's rotate-half
 * RoPE layout to the interleaved pairs the engine rotates.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "gguf.h"
#include "util.h"

struct hf_config {
        uint32_t hidden_size;
        uint32_t n_layers;
        uint32_t n_heads;
        uint32_t n_kv_heads;
        uint32_t ffn_size;
        uint32_t n_ctx;
        uint32_t vocab_size;
        float rms_eps;
        float rope_theta;
        bool tie_embeddings;
};

/* Parse and check config.json text; name is used in messages. */
int hf_config_parse(const char *text, size_t len, const char *name, struct hf_config *ret, struct npu_err *err);
int hf_config_load(const char *path, struct hf_config *ret, struct npu_err *err);

/* out_type: GGML_TYPE_F32 or GGML_TYPE_F16 for matrices and embeddings; norms are always F32. */
int hf_convert_to_gguf(const char *dir, const char *out_gguf, enum ggml_type out_type, struct npu_err *err);
