/* SPDX-License-Identifier: MIT */
/* The log-probabilities of generated tokens (see token_logprobs.h). */
#include "token_logprobs.h"

void token_logprobs_init(struct token_logprobs *lp, int32_t top_n)
{
        *lp = (struct token_logprobs) { .top_n = top_n < 0 ? -1 : MIN(top_n, TOKEN_LOGPROBS_MAX_TOP) };
}

void token_logprobs_done(struct token_logprobs *lp)
{
        free(lp->v);
        token_logprobs_init(lp, -1);
}

bool token_logprobs_wanted(const struct token_logprobs *lp)
{
        return lp->top_n >= 0;
}

int token_logprobs_add(struct token_logprobs *lp, const float *logits, int32_t n_vocab, int32_t token)
{
        size_t per = 1 + (size_t)lp->top_n;
        struct sampler_logprob *e;

        if (!token_logprobs_wanted(lp))
                return 0;
        if (lp->n == lp->cap) {
                size_t cap = MAX(lp->cap * 2, (size_t)16);
                struct sampler_logprob *v = reallocarray(lp->v, cap * per, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                lp->v = v;
                lp->cap = cap;
        }
        e = lp->v + lp->n * per;
        e[0].id = token;
        e[0].logprob = sampler_logprobs(logits, n_vocab, token, e + 1, lp->top_n);
        lp->n++;
        return 0;
}

const struct sampler_logprob *token_logprobs_at(const struct token_logprobs *lp, size_t i)
{
        if (!token_logprobs_wanted(lp) || i >= lp->n)
                return NULL;
        return lp->v + i * (1 + (size_t)lp->top_n);
}
