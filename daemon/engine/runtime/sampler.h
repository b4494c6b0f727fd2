/* SPDX-License-Identifier: MIT */
/*
 * Token sampling, in llama.cpp's order: repetition penalty, top-k, top-p,
 * temperature, then a draw from the seeded generator. temperature <= 0 is
 * greedy (the first highest logit).
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
/* Records a token for the repetition penalty (prompt tokens too). */
void sampler_accept(struct sampler *s, int32_t token);
