/* SPDX-License-Identifier: MIT */
/* A Llama-architecture model bound to the tensors of a mapped GGUF file. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "gguf.h"
#include "vocab.h"

struct npu_hparams {
        int32_t n_vocab;
        int32_t dim;
        int32_t n_layers;
        int32_t n_heads;
        int32_t n_kv_heads;
        int32_t head_dim;
        int32_t ffn_dim;
        int32_t n_ctx_train;
        float rope_base;
        float rms_eps;
};

enum npu_precision {
        NPU_PRECISION_FLOAT = 0, /* weights as stored: F32/F16/BF16 or GGUF block types */
        NPU_PRECISION_W8A8 = 1,
        NPU_PRECISION_W8A16 = 2,
        NPU_PRECISION_W4A8 = 3, /* Q4_0-layout int4 weights, int8 activations per token */
};

/*
 * A weight matrix of rows x cols (rows = output channels; each row is one
 * contiguous run of cols elements, as ggml stores a tensor with ne0 = cols).
 * I8 weights carry one f32 scale per row.
 */
struct npu_weight {
        enum ggml_type type;
        int64_t rows, cols;
        const void *data;
        const float *scale;
        size_t row_bytes;
};

struct npu_layer {
        const float *attn_norm;
        const float *ffn_norm;
        struct npu_weight wq, wk, wv, wo;
        struct npu_weight w_gate, w_up, w_down;
};

struct npu_model {
        struct gguf *gguf;
        char *path;
        char *name;
        struct npu_hparams hp;
        enum npu_precision precision;
        float smooth_alpha;
        struct npu_vocab *vocab;
        struct npu_weight tok_embd;
        struct npu_weight output;
        const float *output_norm;
        struct npu_layer *layers;
        /* f32 copies of norm vectors stored in other types */
        float **owned;
        size_t n_owned;
        size_t weight_bytes;
};

int model_load(const char *path, struct npu_model **ret, struct npu_err *err);
/* Bind a model to an already parsed GGUF; takes ownership of g on success. */
int model_from_gguf(struct gguf *g, const char *path, struct npu_model **ret, struct npu_err *err);
void model_free(struct npu_model *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct npu_model *, model_free);

/* Bytes of weights one decode step reads (every matrix once, one embedding row). */
size_t model_bytes_per_token(const struct npu_model *m);

/* Dequantize row r of a weight into f32. */
void weight_row_f32(const struct npu_weight *w, int64_t r, float *out);

const char *precision_name(enum npu_precision p);
/* w8a8 and w8a16 run on the npu; float models, GGUF block types and w4a8 stay on the cpu. */
bool precision_runs_on_npu(enum npu_precision p);
int precision_from_string(const char *s, enum npu_precision *ret);
