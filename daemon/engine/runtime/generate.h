/* SPDX-License-Identifier: MIT */
/* One sequence from prompt to stop: chunked prefill, then a token per step. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "forward.h"
#include "sampler.h"

enum stop_reason {
        STOP_NONE = 0,
        STOP_EOS,
        STOP_LENGTH,
        STOP_CONTEXT,
        STOP_CALLER,
};

struct gen_stats {
        int32_t n_prompt;
        int32_t n_generated;
        double prefill_ms;
        double decode_ms;
        enum stop_reason stop;
};

/* Called with each new token; return false to stop. */
typedef bool (*gen_token_fn)(int32_t token, void *userdata);

/* Prefill tokens into seq (which may already hold a prefix); logits of the last one go to logits. */
int prefill(struct npu_ctx *c, struct kv_seq *seq, const int32_t *tokens, int32_t n, float *logits,
            struct npu_err *err);

int generate(struct npu_ctx *c, struct kv_seq *seq, struct sampler *smp, const int32_t *prompt, int32_t n_prompt,
             int32_t n_predict, bool stop_at_eos, gen_token_fn fn, void *userdata, struct gen_stats *stats,
             struct npu_err *err);

const char *stop_reason_name(enum stop_reason r);
