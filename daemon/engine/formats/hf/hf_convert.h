/* SPDX-License-Identifier: MIT */
/*
 * Hugging Face model directory -> GGUF, with the keys and tensor names that
 * llama.cpp's converter writes and model.c reads, for LlamaForCausalLM
 * (Llama 2 and 3.x), Qwen2ForCausalLM (Qwen2, 2.5) and Qwen3ForCausalLM.
 *
 * The directory holds config.json, model.safetensors (or the shards listed by
 * model.safetensors.index.json, or every model*.safetensors), and either a
 * byte-level BPE tokenizer.json or a SentencePiece tokenizer.model, with
 * tokenizer_config.json (chat template, special tokens) when present.
 * Llama's q_proj and k_proj rows are permuted from HF's rotate-half RoPE
 * layout to the adjacent pairs the engine rotates for the llama
 * architecture; Qwen keeps the halves. rope_scaling "llama3" becomes the
 * tensor rope_freqs.weight, "linear" the rope.scaling keys; any other type
 * is refused by name.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "gguf.h"
#include "model.h"
#include "util.h"

enum hf_rope_scaling {
        HF_ROPE_NONE = 0,
        HF_ROPE_LINEAR,
        HF_ROPE_LLAMA3,
};

struct hf_config {
        enum npu_arch arch;
        uint32_t hidden_size;
        uint32_t n_layers;
        uint32_t n_heads;
        uint32_t n_kv_heads;
        uint32_t head_dim; /* config's head_dim, or hidden_size / num_attention_heads */
        uint32_t ffn_size;
        uint32_t n_ctx;
        uint32_t vocab_size;
        float rms_eps;
        float rope_theta;
        bool tie_embeddings;
        enum hf_rope_scaling scaling;
        float linear_factor;      /* HF_ROPE_LINEAR */
        struct rope_llama3 llama3; /* HF_ROPE_LLAMA3 */
        int32_t bos_id, eos_id;   /* config.json's bos_token_id / eos_token_id (the first of a list); -1: none */
};

/* Parse and check config.json text; name is used in messages. */
int hf_config_parse(const char *text, size_t len, const char *name, struct hf_config *ret, struct npu_err *err);
int hf_config_load(const char *path, struct hf_config *ret, struct npu_err *err);

/* out_type: GGML_TYPE_F32 or GGML_TYPE_F16 for matrices and embeddings; norms, biases and rope_freqs are F32. */
int hf_convert_to_gguf(const char *dir, const char *out_gguf, enum ggml_type out_type, struct npu_err *err);
