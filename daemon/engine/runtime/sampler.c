/* SPDX-License-Identifier: MIT */
#include <math.h>

#include <stdbool.h>

#include "sampler.h"

void sampler_params_default(struct sampler_params *p)
{
        *p = (struct sampler_params) { .temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .repeat_penalty = 1.0f,
                                       .repeat_last_n = 64, .seed = 0x5eed };
}

int sampler_params_validate(const struct sampler_params *p, struct npu_err *err)
{
        if (!isfinite(p->temperature) || p->temperature < 0 || p->temperature > 100)
                return npu_err_set(err, -EINVAL, "temperature %g is outside [0, 100]", p->temperature);
        if (p->top_k < 0)
                return npu_err_set(err, -EINVAL, "top_k %d is negative", p->top_k);
        if (!isfinite(p->top_p) || p->top_p <= 0 || p->top_p > 1)
                return npu_err_set(err, -EINVAL, "top_p %g is outside (0, 1]", p->top_p);
        if (!isfinite(p->repeat_penalty) || p->repeat_penalty <= 0 || p->repeat_penalty > 10)
                return npu_err_set(err, -EINVAL, "repeat_penalty %g is outside (0, 10]", p->repeat_penalty);
        if (p->repeat_last_n < 0 || p->repeat_last_n > 65536)
                return npu_err_set(err, -EINVAL, "repeat_last_n %d is outside [0, 65536]", p->repeat_last_n);
        if (!isfinite(p->min_p) || p->min_p < 0 || p->min_p > 1)
                return npu_err_set(err, -EINVAL, "min_p %g is outside [0, 1]", p->min_p);
        if (!isfinite(p->presence_penalty) || fabsf(p->presence_penalty) > 2)
                return npu_err_set(err, -EINVAL, "presence_penalty %g is outside [-2, 2]", p->presence_penalty);
        if (!isfinite(p->frequency_penalty) || fabsf(p->frequency_penalty) > 2)
                return npu_err_set(err, -EINVAL, "frequency_penalty %g is outside [-2, 2]", p->frequency_penalty);
        return 0;
}

static uint64_t splitmix64(uint64_t *x)
{
        uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
        return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static uint64_t rng_next(uint64_t s[4])
{
        uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return result;
}

static double rng_uniform(uint64_t s[4])
{
        return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

int sampler_new(const struct sampler_params *p, int32_t n_vocab, struct sampler **ret)
{
        struct sampler *s = calloc(1, sizeof(*s));
        uint64_t seed = p->seed;

        if (!s)
                return -ENOMEM;
        s->params = *p;
        s->n_vocab = n_vocab;
        for (int i = 0; i < 4; i++)
                s->rng[i] = splitmix64(&seed);
        s->recent = calloc(MAX(p->repeat_last_n, 1), sizeof(*s->recent));
        s->cand = malloc(sizeof(*s->cand) * n_vocab);
        if (!s->recent || !s->cand) {
                sampler_free(s);
                return -ENOMEM;
        }
        *ret = s;
        return 0;
}

void sampler_free(struct sampler *s)
{
        if (!s)
                return;
        free(s->recent);
        free(s->cand);
        free(s);
}

void sampler_accept(struct sampler *s, int32_t token)
{
        int32_t n = s->params.repeat_last_n;
        if (n <= 0)
                return;
        if (s->n_recent == n) {
                memmove(s->recent, s->recent + 1, (n - 1) * sizeof(*s->recent));
                s->n_recent--;
        }
        s->recent[s->n_recent++] = token;
}

/* Each distinct recent token once: the repetition penalty scales its logit, the presence penalty
 * subtracts once, the frequency penalty once per occurrence. */
static void apply_penalty(struct sampler *s, float *logits)
{
        float pen = s->params.repeat_penalty, presence = s->params.presence_penalty;
        float frequency = s->params.frequency_penalty;

        if (pen == 1.0f && presence == 0 && frequency == 0)
                return;
        for (int32_t i = 0; i < s->n_recent; i++) {
                int32_t id = s->recent[i], count = 1;
                bool seen = false;
                for (int32_t j = 0; j < i && !seen; j++)
                        seen = s->recent[j] == id;
                if (seen || id < 0 || id >= s->n_vocab)
                        continue;
                for (int32_t j = i + 1; j < s->n_recent; j++)
                        count += s->recent[j] == id;
                if (pen != 1.0f)
                        logits[id] = logits[id] > 0 ? logits[id] / pen : logits[id] * pen;
                logits[id] -= presence + frequency * (float)count;
        }
}

static int cand_cmp(const void *a, const void *b)
{
        const struct sampler_candidate *x = a, *y = b;
        if (x->logit != y->logit)
                return x->logit > y->logit ? -1 : 1;
        return x->id - y->id;
}

int32_t sampler_sample(struct sampler *s, float *logits)
{
        const struct sampler_params *p = &s->params;
        int32_t n = s->n_vocab;

        apply_penalty(s, logits);
        if (p->temperature <= 0) {
                int32_t best = 0;
                for (int32_t i = 1; i < n; i++)
                        if (logits[i] > logits[best])
                                best = i;
                return best;
        }
        for (int32_t i = 0; i < n; i++)
                s->cand[i] = (struct sampler_candidate) { .id = i, .logit = logits[i] };
        qsort(s->cand, n, sizeof(*s->cand), cand_cmp);
        if (p->top_k > 0 && p->top_k < n)
                n = p->top_k;
        /* top-p on the softmax of the untempered logits */
        double sum = 0;
        for (int32_t i = 0; i < n; i++) {
                s->cand[i].p = expf(s->cand[i].logit - s->cand[0].logit);
                sum += s->cand[i].p;
        }
        if (p->top_p < 1) {
                double cum = 0;
                for (int32_t i = 0; i < n; i++) {
                        cum += s->cand[i].p / sum;
                        if (cum >= p->top_p) {
                                n = i + 1;
                                break;
                        }
                }
        }
        /* min-p: p_i / p_0 = exp(l_i - l_0), the candidates being sorted; the first always stays */
        if (p->min_p > 0)
                for (int32_t i = 1; i < n; i++)
                        if (s->cand[i].p < p->min_p) {
                                n = i;
                                break;
                        }
        sum = 0;
        for (int32_t i = 0; i < n; i++) {
                s->cand[i].p = expf((s->cand[i].logit - s->cand[0].logit) / p->temperature);
                sum += s->cand[i].p;
        }
        double u = rng_uniform(s->rng) * sum, cum = 0;
        for (int32_t i = 0; i < n; i++) {
                cum += s->cand[i].p;
                if (u < cum)
                        return s->cand[i].id;
        }
        return s->cand[n - 1].id;
}

float sampler_logprobs(const float *logits, int32_t n_vocab, int32_t token, struct sampler_logprob *top,
                       int32_t top_n)
{
        float max = logits[0];
        double sum = 0;
        int32_t n_top = 0;

        for (int32_t i = 1; i < n_vocab; i++)
                max = fmaxf(max, logits[i]);
        for (int32_t i = 0; i < n_vocab; i++)
                sum += exp((double)logits[i] - max);
        float lse = max + (float)log(sum);
        /* the top_n by insertion: top_n is small (OpenAI allows 20) */
        for (int32_t i = 0; i < n_vocab && top_n > 0; i++) {
                if (n_top == top_n && logits[i] <= logits[top[n_top - 1].id])
                        continue;
                int32_t k = n_top < top_n ? n_top++ : n_top - 1;
                while (k > 0 && logits[top[k - 1].id] < logits[i]) {
                        top[k] = top[k - 1];
                        k--;
                }
                top[k].id = i;
        }
        for (int32_t k = 0; k < n_top; k++)
                top[k].logprob = logits[top[k].id] - lse;
        for (int32_t k = n_top; k < top_n; k++)
                top[k] = (struct sampler_logprob) { .id = -1, .logprob = -INFINITY };
        return token >= 0 && token < n_vocab ? logits[token] - lse : -INFINITY;
}
