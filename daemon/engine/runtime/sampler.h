/* SPDX-License-Identifier: MIT */
/*
 * Token sampling, in llama.cpp's order: penalties (repetition, presence,
 * frequency), top-k, top-p, min-p, temperature, then a draw from the seeded
 * generator. temperature <= 0 is greedy (the first highest logit). The
 * penalties look at the last repeat_last_n accepted tokens (prompt included).
 */
#pragma once

#include <stdint.h>

#include "util.h"

struct sampler_params {
        float temperature;
        int32_t top_k;        /* <= 0: off */
        float top_p;          /* >= 1: off */
        float repeat_penalty; /* 1: off */
        int32_t repeat_last_n;
        uint64_t seed;
        float min_p;             /* 0: off; keeps tokens at least min_p times as likely as the most likely */
        float presence_penalty;  /* 0: off; subtracted from the logit of each token seen, in [-2, 2] */
        float frequency_penalty; /* 0: off; subtracted once per time a token was seen, in [-2, 2] */
};

/* One entry of a log-probability list. */
struct sampler_logprob {
        int32_t id;
        float logprob;
};

struct sampler_candidate {
        int32_t id;
        float logit;
        float p;
};

struct sampler {
        struct sampler_params params;
        uint64_t rng[4];
        int32_t *recent;
        int32_t n_recent;
        int32_t n_vocab;
        struct sampler_candidate *cand;
};

void sampler_params_default(struct sampler_params *p);
/* -EINVAL for values out of range (negative temperature, top_p outside (0, 1], ...). */
int sampler_params_validate(const struct sampler_params *p, struct npu_err *err);
int sampler_new(const struct sampler_params *p, int32_t n_vocab, struct sampler **ret);
void sampler_free(struct sampler *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct sampler *, sampler_free);
/* Picks the next token from logits (which it may modify). */
int32_t sampler_sample(struct sampler *s, float *logits);
/* Records a token for the penalties (prompt tokens too). */
void sampler_accept(struct sampler *s, int32_t token);
/*
 * The log-softmax of logits (as sampler_sample() left them: penalties
 * applied, no temperature): returns token's log-probability and fills top
 * with the top_n most likely tokens, most likely first (ties: lower id).
 */
float sampler_logprobs(const float *logits, int32_t n_vocab, int32_t token, struct sampler_logprob *top,
                       int32_t top_n);
