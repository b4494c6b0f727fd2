/* SPDX-License-Identifier: MIT */
/*
 * A decoder-only transformer of the Llama family bound to the tensors of a
 * mapped GGUF file. Architectures (general.architecture):
 *   llama  Llama 2 and 3.x, Mistral: RoPE on adjacent pairs, Llama 3.1's
 *          rope_freqs.weight, linear rope scaling, tied embeddings;
 *   qwen2  Qwen2 and 2.5: biases on q, k and v; RoPE on the two halves;
 *   qwen3  Qwen3: RMSNorm over each head of q and k before RoPE; the head
 *          dimension from attention.key_length.
 * Anything else in a file that changes the math (another rope scaling type,
 * an unknown tensor or <arch>.* key) is refused at load with its name.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "gguf.h"
#include "vocab.h"

enum npu_arch {
        NPU_ARCH_LLAMA = 0,
        NPU_ARCH_QWEN2 = 1,
        NPU_ARCH_QWEN3 = 2,
};

/* Which elements of a head RoPE rotates together. */
enum rope_kind {
        ROPE_ADJACENT = 0, /* (2i, 2i + 1): llama.cpp's "normal" mode (Llama GGUFs, rows permuted) */
        ROPE_HALVES = 1,   /* (i, i + head_dim / 2): "neox" mode (Qwen) */
};

struct npu_hparams {
        int32_t n_vocab;
        int32_t dim;
        int32_t n_layers;
        int32_t n_heads;
        int32_t n_kv_heads;
        int32_t head_dim; /* attention.key_length when set, else dim / n_heads */
        int32_t ffn_dim;
        int32_t n_ctx_train;
        float rope_base;
        float rms_eps;
        enum npu_arch arch;
        enum rope_kind rope_kind;
        float rope_freq_scale; /* rotation angles are multiplied by it: 1 / the linear scaling factor */
};

/* Width of q and of the attention output: n_heads * head_dim (dim unless key_length says otherwise). */
static inline int32_t hparams_q_dim(const struct npu_hparams *hp)
{
        return hp->n_heads * hp->head_dim;
}

const char *arch_name(enum npu_arch a);
/* The hyperparameters of general.architecture, every <arch>.* key checked (hparams.c). */
int hparams_read(const struct gguf *g, struct npu_hparams *hp, struct npu_err *err);

enum npu_precision {
        NPU_PRECISION_FLOAT = 0, /* weights as stored: F32/F16/BF16 or GGUF block types */
        NPU_PRECISION_W8A8 = 1,
        NPU_PRECISION_W8A16 = 2,
        NPU_PRECISION_W4A8 = 3, /* Q4_0-layout int4 weights, int8 activations per token */
};

/*
 * A weight matrix of rows x cols (rows = output channels; each row is one
 * contiguous run of cols elements, as ggml stores a tensor with ne0 = cols).
 * I8 weights carry one f32 scale per row, and are repacked at load into the
 * int8 GEMM's panels (gemm_int8.h), with the sum of each row.
 */
struct npu_weight {
        enum ggml_type type;
        int64_t rows, cols;
        const void *data;
        const float *scale;
        const int32_t *row_sums;
        size_t row_bytes;
        /* 0: rows one after the other; QI_ROWS: groups of rows interleaved block by block (quant_interleave.h) */
        int interleave;
};

struct npu_layer {
        const float *attn_norm;
        const float *ffn_norm;
        /* the seven matrices, in this order (loops walk them from wq) */
        struct npu_weight wq, wk, wv, wo;
        struct npu_weight w_gate, w_up, w_down;
        /* added to the q, k, v projections (qwen2; llama files may have them); NULL: none */
        const float *bq, *bk, *bv;
        /* RMSNorm weights over each head of q and of k, before RoPE (qwen3); NULL: none */
        const float *q_norm, *k_norm;
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
        /* head_dim / 2 divisors of the rotation frequencies (Llama 3.1's rope_freqs.weight); NULL: none */
        const float *rope_freqs;
        /*
         * Between the q/k/v projections and the KV cache there is nothing but
         * plain RoPE (no biases, no q/k norms, adjacent pairs, no frequency
         * factors or scaling): what the npu device's ROPE op computes. Other
         * models run that step on the cpu between device passes.
         */
        bool qkv_plain;
        /* while loading: which of the file's tensors were read */
        uint8_t *tensor_used;
        /* f32 copies of norm vectors stored in other types */
        float **owned;
        size_t n_owned;
        /*
         * the int8 matrices' row sums; copies of the matrices repacked
         * (int8 panels, interleaved groups) where the file could not be
         * written in place
         */
        int32_t *row_sums;
        int8_t **packed;
        size_t n_packed;
        /* int8 weight bytes of -128 clamped to -127 at load (gemm_int8.h) */
        uint64_t i8_clamped;
        size_t weight_bytes;
};

int model_load(const char *path, struct npu_model **ret, struct npu_err *err);
/* model_load, telling how far reading the file is (progress may be NULL). */
struct gguf_progress;
int model_load_progress(const char *path, const struct gguf_progress *progress, struct npu_model **ret,
                        struct npu_err *err);
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

/* Llama 3.1's rope_scaling "llama3" (rope_llama3.c): head_dim / 2 frequency divisors, rope_freqs.weight. */
struct rope_llama3 {
        float factor;
        float low_freq_factor;
        float high_freq_factor;
        float original_context; /* original_max_position_embeddings */
};
int rope_llama3_factors(int32_t head_dim, float base, const struct rope_llama3 *s, float *out, struct npu_err *err);
int precision_from_string(const char *s, enum npu_precision *ret);
