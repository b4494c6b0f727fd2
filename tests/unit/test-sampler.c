/* SPDX-License-Identifier: MIT */
/* The sampler's options that OpenAI clients send: presence and frequency penalties, min-p, log-probabilities. */
#include <math.h>

#include "sampler.h"
#include "test-helpers.h"

#define V 100

/* Logits where token 37 leads the next best by exactly gap. */
static void lead_logits(float *logits, float gap)
{
        uint64_t seed = 5;
        for (int i = 0; i < V; i++)
                logits[i] = (float)(test_rng(&seed) % 500) / 100.0f; /* [0, 5) */
        logits[37] = 10;
        logits[38] = 10 - gap;
}

static int32_t greedy_after(const struct sampler_params *p, const int32_t *seen, int n_seen, float gap)
{
        struct sampler *s = NULL;
        float logits[V];
        int32_t tok;

        lead_logits(logits, gap);
        assert_int_equal(sampler_new(p, V, &s), 0);
        for (int i = 0; i < n_seen; i++)
                sampler_accept(s, seen[i]);
        tok = sampler_sample(s, logits);
        sampler_free(s);
        return tok;
}

static void test_presence_penalty(void **state)
{
        struct sampler_params p = { .temperature = 0, .top_p = 1, .repeat_penalty = 1, .repeat_last_n = 16 };
        int32_t seen[] = { 37, 37, 37 };

        p.presence_penalty = 0.9f; /* less than the lead of 1 */
        assert_int_equal(greedy_after(&p, seen, 3, 1.0f), 37);
        p.presence_penalty = 1.1f; /* more: once, however often it was seen */
        assert_int_equal(greedy_after(&p, seen, 3, 1.0f), 38);
        assert_int_equal(greedy_after(&p, seen, 1, 1.0f), 38);
        /* a negative penalty favours what was seen */
        p.presence_penalty = -1.1f;
        int32_t other[] = { 38 };
        assert_int_equal(greedy_after(&p, other, 1, 1.0f), 38);
        /* tokens older than the window do not count */
        p.presence_penalty = 1.1f;
        p.repeat_last_n = 2;
        int32_t old[] = { 37, 1, 2 };
        assert_int_equal(greedy_after(&p, old, 3, 1.0f), 37);
}

static void test_frequency_penalty(void **state)
{
        struct sampler_params p = { .temperature = 0, .top_p = 1, .repeat_penalty = 1, .repeat_last_n = 16,
                                    .frequency_penalty = 0.4f };
        int32_t seen[] = { 37, 5, 37, 37 };

        assert_int_equal(greedy_after(&p, seen, 2, 1.0f), 37); /* once: 0.4 < 1 */
        assert_int_equal(greedy_after(&p, seen, 4, 1.0f), 38); /* three times: 1.2 > 1 */
}

/* Draws 2000 tokens at temperature 1 from two near candidates (p1 / p0 = 0.25) and the rest far behind. */
static int count_second(float min_p)
{
        struct sampler_params p = { .temperature = 1, .top_p = 1, .repeat_penalty = 1, .min_p = min_p, .seed = 3 };
        struct sampler *s = NULL;
        float logits[V];
        int n = 0;

        assert_int_equal(sampler_new(&p, V, &s), 0);
        for (int k = 0; k < 2000; k++) {
                for (int i = 0; i < V; i++)
                        logits[i] = -30;
                logits[10] = 10;
                logits[20] = 10 - logf(4);
                int32_t t = sampler_sample(s, logits);
                assert_true(t == 10 || t == 20);
                n += t == 20;
        }
        sampler_free(s);
        return n;
}

static void test_min_p(void **state)
{
        assert_int_equal(count_second(0.3f), 0);
        int n = count_second(0.2f);
        assert_true(n > 250 && n < 550); /* p = 0.2 of 2000 */
        assert_true(count_second(0) > 250);
}

static void test_logprobs(void **state)
{
        float logits[V];
        struct sampler_logprob top[5];
        uint64_t seed = 9;

        /* four equal tokens, the rest impossible: log(1/4) each, lower ids first */
        for (int i = 0; i < V; i++)
                logits[i] = -INFINITY;
        logits[3] = logits[7] = logits[50] = logits[99] = 2;
        float lp = sampler_logprobs(logits, V, 50, top, 5);
        assert_float_equal(lp, logf(0.25f), 1e-6);
        assert_int_equal(top[0].id, 3);
        assert_int_equal(top[1].id, 7);
        assert_int_equal(top[2].id, 50);
        assert_int_equal(top[3].id, 99);
        assert_float_equal(top[3].logprob, logf(0.25f), 1e-6);
        assert_true(isinf(top[4].logprob)); /* the fifth has probability 0 */

        /* random logits: probabilities sum to 1, the list is sorted, the argmax leads */
        for (int i = 0; i < V; i++)
                logits[i] = (float)(test_rng(&seed) % 2000) / 100.0f - 10;
        double sum = 0;
        for (int i = 0; i < V; i++)
                sum += exp(sampler_logprobs(logits, V, i, NULL, 0));
        assert_float_equal(sum, 1.0, 1e-4);
        int32_t best = 0;
        for (int i = 1; i < V; i++)
                if (logits[i] > logits[best])
                        best = i;
        lp = sampler_logprobs(logits, V, best, top, 5);
        assert_int_equal(top[0].id, best);
        assert_float_equal(top[0].logprob, lp, 1e-6);
        for (int k = 1; k < 5; k++)
                assert_true(top[k].logprob <= top[k - 1].logprob);
        assert_true(isinf(sampler_logprobs(logits, V, V, NULL, 0))); /* no such token */
}

static void test_validate(void **state)
{
        struct sampler_params p;
        struct npu_err err = {};

        sampler_params_default(&p);
        assert_int_equal(sampler_params_validate(&p, &err), 0);
        p.min_p = 1.5f;
        assert_int_equal(sampler_params_validate(&p, &err), -EINVAL);
        p.min_p = 0.05f;
        p.presence_penalty = 2.5f;
        assert_int_equal(sampler_params_validate(&p, &err), -EINVAL);
        p.presence_penalty = 0;
        p.frequency_penalty = NAN;
        assert_int_equal(sampler_params_validate(&p, &err), -EINVAL);
        p.frequency_penalty = -2;
        assert_int_equal(sampler_params_validate(&p, &err), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_presence_penalty),
                cmocka_unit_test(test_frequency_penalty),
                cmocka_unit_test(test_min_p),
                cmocka_unit_test(test_logprobs),
                cmocka_unit_test(test_validate),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
