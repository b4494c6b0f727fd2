/* SPDX-License-Identifier: MIT */
/*
 * The Llama forward pass over a batch of tokens from any number of sequences.
 * Each token names its sequence and position; its K/V are written to the
 * sequence's cache and it attends over positions [0, pos] of that sequence.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "kv_cache.h"
#include "smoothquant.h"
#include "model.h"
#include "threadpool.h"

enum attention_kind {
        ATTENTION_DEFAULT = 0,
        ATTENTION_FLASH = 1, /* tiled, online softmax: --flash-attention-plus */
        ATTENTION_F16_OPERANDS = 2, /* the default path, over an f16 cache as llama.cpp's: --attention-f16-operands */
};

struct npu_batch {
        int32_t n;
        const int32_t *tokens;
        const int32_t *pos;
        struct kv_seq *const *seqs;
        /* which tokens want logits; NULL: only the last one */
        const uint8_t *want_logits;
};

struct npu_ctx {
        const struct npu_model *model;
        struct kv_pool *kv;
        struct threadpool *tp;
        enum attention_kind attention;
        int32_t max_batch;
        struct forward_scratch *s;
        /* attention's buffers (attention.c) */
        struct attn_scratch *attn;
        /* when set, forward() records activation maxima for SmoothQuant */
        struct calib_stats *calib;
        /* cumulative counters */
        uint64_t n_forward_tokens;
        /*
         * Back ends: the cpu one is always there (and is the fallback); be
         * is the one passes run on (cpu, or npu after ctx_set_target).
         */
        struct backend *cpu;
        struct backend *npu;
        struct backend *be;
        /* device faults: fresh device contexts to try before a pass falls back to the cpu */
        int npu_retries;
        struct backend_stats stats;
};

int ctx_new(const struct npu_model *m, struct kv_pool *kv, struct threadpool *tp, int32_t max_batch,
            struct npu_ctx **ret, struct npu_err *err);
void ctx_free(struct npu_ctx *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct npu_ctx *, ctx_free);

/*
 * Move the context's passes to the cpu or to an npu device (NULL: the first
 * accel node of npu.ko; fd >= 0: that open node, see backend_npu_new), between passes. The KV cache keeps its contents:
 * to npu, its memory moves into BOs mapped into the process; back to cpu,
 * into anonymous memory again, and the device is closed (detach). A float
 * model cannot go to the npu (-EOPNOTSUPP).
 */
int ctx_set_target(struct npu_ctx *c, enum backend_target t, const char *device, int fd, struct npu_err *err);
enum backend_target ctx_target(const struct npu_ctx *c);

/*
 * Runs the batch; logits gets n_vocab floats per token that wants them, in
 * batch order. The sequences must have room reserved for every position.
 * On the npu back end a pass whose device work fails is run again on a
 * fresh device context (npu_retries times) and then on the cpu, with the
 * same result; c->stats counts it.
 */
int forward(struct npu_ctx *c, const struct npu_batch *b, float *logits, struct npu_err *err);

/*
 * Over the q8 KV cache, tokens at more positions than this take the flash
 * path's chunked arithmetic whatever the attention kind (attention.c).
 * 256, one FLASH_CHUNK: from there a token has two chunks or more, so a
 * decoding token keeps two threads busy. attn-bench -k q8 (7B shape, 2
 * threads), default against flash: 192 positions 3.0 against 3.2 ms, 256
 * 4.2-4.6 / 4.2-4.3, 384 6.5-7.5 / 3.9-4.4, 512 7.8 / 4.8, 1000 17.8 /
 * 7.8. In the 7B w8a8 model at 648 positions, attention per decoded token
 * 12.7-15.9 -> 8.2-8.8 ms (with 1024 here before), while a 640-token
 * prompt's attention took 1.64-1.90 -> 1.81-1.96 s of its prefill.
 */
#define ATTENTION_Q8_FLASH_MIN_POSITIONS 256

/* Attention for all (token, head) pairs of a batch, after K/V are stored (attention.c). */
void attention_batch(struct npu_ctx *c, const struct npu_batch *b, int32_t layer, const float *q, float *out);
int attention_scratch_new(struct npu_ctx *c);
void attention_scratch_free(struct npu_ctx *c);
