/* SPDX-License-Identifier: MIT */
/*
 * The log-probabilities of a request's generated tokens, when it asked for
 * them (the logprobs option): per token, the sampled token's own and the
 * top_n most likely ones, from the logits as the sampler saw them
 * (penalties applied, before temperature, top-k, top-p and min-p).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sampler.h"

#define TOKEN_LOGPROBS_MAX_TOP 20

struct token_logprobs {
        int32_t top_n; /* alternatives kept per token; -1: none asked for */
        struct sampler_logprob *v; /* per token 1 + top_n entries: the sampled token, then the most likely */
        size_t n, cap; /* tokens */
};

/* top_n < 0: nothing is kept. */
void token_logprobs_init(struct token_logprobs *lp, int32_t top_n);
void token_logprobs_done(struct token_logprobs *lp);
bool token_logprobs_wanted(const struct token_logprobs *lp);
/* Records the next token: logits as the sampler left them, token the one it chose. */
int token_logprobs_add(struct token_logprobs *lp, const float *logits, int32_t n_vocab, int32_t token);
/* The 1 + top_n entries of the i-th generated token, or NULL past the end. */
const struct sampler_logprob *token_logprobs_at(const struct token_logprobs *lp, size_t i);
