/* SPDX-License-Identifier: MIT */
/* Greedy generation on the small model, batch invariance, attention paths, sampling. */
#include <math.h>

#include "kernels.h"
#include "runtime.h"
#include "test-helpers.h"

#define EXPECTED_START \
        "Once upon a time, pixels unfolding like petals. Classifications unfold, a kaleidoscope of " \
        "probability revealing hidden patterns."

struct collect {
        const struct npu_vocab *v;
        char text[4096];
        size_t len;
        int32_t ids[512];
        int32_t n;
};

static bool collect_token(int32_t token, void *userdata)
{
        struct collect *c = userdata;
        c->len += vocab_token_bytes(c->v, token, c->text + c->len, sizeof(c->text) - 1 - c->len);
        c->text[c->len] = 0;
        if (c->n < 512)
                c->ids[c->n++] = token;
        return true;
}

static void run_greedy(enum kv_type kv, enum attention_kind att, int threads, struct collect *out)
{
        struct runtime_opts o;
        struct runtime *rt = NULL;
        struct npu_err err = {};
        struct sampler_params sp;
        struct sampler *smp = NULL;
        struct kv_seq seq = {};
        struct gen_stats st;
        int32_t *ids;
        size_t n;
        const char *prompt = "Once upon a time";

        runtime_opts_default(&o);
        o.model_path = TINY_MODEL;
        o.kv_type = kv;
        o.attention = att;
        o.threads = threads;
        assert_int_equal(runtime_open(&o, &rt, &err), 0);
        sampler_params_default(&sp);
        sp.temperature = 0;
        assert_int_equal(sampler_new(&sp, rt->model->hp.n_vocab, &smp), 0);
        assert_int_equal(vocab_tokenize(rt->model->vocab, prompt, strlen(prompt), true, true, &ids, &n), 0);
        *out = (struct collect) { .v = rt->model->vocab };
        memcpy(out->text, prompt, strlen(prompt));
        out->len = strlen(prompt);
        assert_int_equal(generate(rt->ctx, &seq, smp, ids, (int32_t)n, 60, true, collect_token, out, &st, &err), 0);
        assert_int_equal(st.n_generated, 60);
        kv_seq_release(rt->kv, &seq);
        assert_int_equal(kv_pool_used_blocks(rt->kv), 0);
        free(ids);
        sampler_free(smp);
        runtime_free(rt);
}

static void test_greedy_matches_reference(void **state)
{
        struct collect c;
        run_greedy(KV_TYPE_F16, ATTENTION_DEFAULT, 2, &c);
        assert_true(strncmp(c.text, EXPECTED_START, strlen(EXPECTED_START)) == 0);
}

/* Every kernel path, thread count, KV type and attention kind gives the same greedy tokens. */
static void test_paths_agree(void **state)
{
        struct collect ref, c;
        run_greedy(KV_TYPE_F16, ATTENTION_DEFAULT, 2, &ref);
        run_greedy(KV_TYPE_F32, ATTENTION_DEFAULT, 1, &c);
        assert_memory_equal(ref.ids, c.ids, sizeof(int32_t) * 60);
        run_greedy(KV_TYPE_F16, ATTENTION_FLASH, 2, &c);
        assert_memory_equal(ref.ids, c.ids, sizeof(int32_t) * 60);
        assert_int_equal(kernels_force_isa(KERNEL_ISA_SCALAR), 0);
        run_greedy(KV_TYPE_F16, ATTENTION_DEFAULT, 2, &c);
        kernels_reset_isa();
        assert_memory_equal(ref.ids, c.ids, sizeof(int32_t) * 60);
}

/*
 * Batch invariance: a sequence's logits are bit-identical whether its tokens
 * run alone, one at a time, or in one batch with another sequence's tokens.
 */
static void test_batch_invariance(void **state)
{
        struct runtime_opts o;
        struct runtime *rt = NULL;
        struct npu_err err = {};
        runtime_opts_default(&o);
        o.model_path = TINY_MODEL;
        o.n_seq = 3;
        assert_int_equal(runtime_open(&o, &rt, &err), 0);
        const int32_t V = rt->model->hp.n_vocab;
        int32_t a[8] = { 1, 400, 30, 77, 201, 5, 9, 300 }, bt[5] = { 1, 50, 60, 70, 80 };

        /* A alone, all at once: logits of its last token */
        float *alone = malloc(sizeof(float) * V), *step = malloc(sizeof(float) * V),
              *mixed = malloc(sizeof(float) * V * 2);
        struct kv_seq s1 = {}, s2 = {}, s3 = {};
        assert_int_equal(prefill(rt->ctx, &s1, a, 8, alone, &err), 0);
        /* A one token at a time */
        for (int i = 0; i < 8; i++)
                assert_int_equal(prefill(rt->ctx, &s2, a + i, 1, step, &err), 0);
        assert_memory_equal(alone, step, sizeof(float) * V);
        /* A's last token batched with all of B's tokens */
        struct kv_seq s4 = {};
        assert_int_equal(prefill(rt->ctx, &s3, a, 7, step, &err), 0);
        assert_int_equal(kv_seq_reserve(rt->kv, &s3, 8), 0);
        assert_int_equal(kv_seq_reserve(rt->kv, &s4, 5), 0);
        int32_t toks[6] = { bt[0], bt[1], a[7], bt[2], bt[3], bt[4] };
        int32_t pos[6] = { 0, 1, 7, 2, 3, 4 };
        struct kv_seq *seqs[6] = { &s4, &s4, &s3, &s4, &s4, &s4 };
        uint8_t want[6] = { 0, 0, 1, 0, 0, 1 };
        struct npu_batch b = { .n = 6, .tokens = toks, .pos = pos, .seqs = seqs, .want_logits = want };
        assert_int_equal(forward(rt->ctx, &b, mixed, &err), 0);
        assert_memory_equal(alone, mixed, sizeof(float) * V);
        /* and B's logits equal B alone */
        struct kv_seq s5 = {};
        assert_int_equal(prefill(rt->ctx, &s5, bt, 5, step, &err), 0);
        assert_memory_equal(step, mixed + V, sizeof(float) * V);

        struct kv_seq *all[] = { &s1, &s2, &s3, &s4, &s5 };
        for (size_t i = 0; i < ARRAY_SIZE(all); i++)
                kv_seq_release(rt->kv, all[i]);
        assert_int_equal(kv_pool_used_blocks(rt->kv), 0);
        free(alone);
        free(step);
        free(mixed);
        runtime_free(rt);
}

/* Flash attention matches the default path within 1e-4 on logits. */
static void test_flash_tolerance(void **state)
{
        struct runtime_opts o;
        struct runtime *rt = NULL;
        struct npu_err err = {};
        runtime_opts_default(&o);
        o.model_path = TINY_MODEL;
        assert_int_equal(runtime_open(&o, &rt, &err), 0);
        const int32_t V = rt->model->hp.n_vocab, N = 120;
        int32_t toks[120];
        uint64_t seed = 5;
        for (int i = 0; i < N; i++)
                toks[i] = (int32_t)(test_rng(&seed) % V);
        float *l0 = malloc(sizeof(float) * V), *l1 = malloc(sizeof(float) * V);
        struct kv_seq s = {};
        assert_int_equal(prefill(rt->ctx, &s, toks, N, l0, &err), 0);
        kv_seq_release(rt->kv, &s);
        rt->ctx->attention = ATTENTION_FLASH;
        assert_int_equal(prefill(rt->ctx, &s, toks, N, l1, &err), 0);
        kv_seq_release(rt->kv, &s);
        float maxdiff = 0;
        for (int i = 0; i < V; i++)
                maxdiff = fmaxf(maxdiff, fabsf(l0[i] - l1[i]));
        assert_true(maxdiff < 1e-4f);
        free(l0);
        free(l1);
        runtime_free(rt);
}

static void test_sampler(void **state)
{
        struct sampler_params p;
        struct sampler *s = NULL;
        struct npu_err err = {};
        float logits[100], copy[100];
        uint64_t seed = 11;
        for (int i = 0; i < 100; i++)
                logits[i] = (float)(test_rng(&seed) % 1000) / 100.0f;
        logits[37] = 20;

        sampler_params_default(&p);
        p.temperature = 0;
        assert_int_equal(sampler_new(&p, 100, &s), 0);
        memcpy(copy, logits, sizeof(copy));
        assert_int_equal(sampler_sample(s, copy), 37);
        sampler_free(s);

        /* top_k = 1 is greedy at any temperature */
        p.temperature = 5;
        p.top_k = 1;
        assert_int_equal(sampler_new(&p, 100, &s), 0);
        memcpy(copy, logits, sizeof(copy));
        assert_int_equal(sampler_sample(s, copy), 37);
        sampler_free(s);

        /* the same seed gives the same draws; another seed differs somewhere */
        int32_t d1[50], d2[50], d3[50];
        for (int run = 0; run < 3; run++) {
                p = (struct sampler_params) { .temperature = 2, .top_k = 0, .top_p = 1, .repeat_penalty = 1,
                                              .seed = run == 2 ? 99 : 1 };
                assert_int_equal(sampler_new(&p, 100, &s), 0);
                for (int i = 0; i < 50; i++) {
                        memcpy(copy, logits, sizeof(copy));
                        (run == 0 ? d1 : run == 1 ? d2 : d3)[i] = sampler_sample(s, copy);
                }
                sampler_free(s);
        }
        assert_memory_equal(d1, d2, sizeof(d1));
        assert_memory_not_equal(d1, d3, sizeof(d1));

        /* the repetition penalty steers greedy away from a seen token */
        p = (struct sampler_params) { .temperature = 0, .top_p = 1, .repeat_penalty = 4, .repeat_last_n = 8 };
        assert_int_equal(sampler_new(&p, 100, &s), 0);
        sampler_accept(s, 37);
        memcpy(copy, logits, sizeof(copy));
        assert_true(sampler_sample(s, copy) != 37);
        sampler_free(s);

        p.temperature = -1;
        assert_int_equal(sampler_params_validate(&p, &err), -EINVAL);
        p.temperature = 1;
        p.top_p = 0;
        assert_int_equal(sampler_params_validate(&p, &err), -EINVAL);
        p.top_p = NAN;
        assert_int_equal(sampler_params_validate(&p, &err), -EINVAL);
}

static double text_perplexity(const char *model, enum kv_type kv, enum attention_kind att)
{
        struct runtime_opts o;
        struct runtime *rt = NULL;
        struct npu_err err = {};
        int32_t *ids;
        size_t n;
        double nll;
        int64_t count;
        FILE *f = fopen(CALIB_TEXT, "rb");
        char *text = calloc(1, 1 << 16);

        assert_non_null(f);
        size_t len = fread(text, 1, (1 << 16) - 1, f);
        fclose(f);
        runtime_opts_default(&o);
        o.model_path = model;
        o.kv_type = kv;
        o.attention = att;
        o.threads = 2;
        assert_int_equal(runtime_open(&o, &rt, &err), 0);
        assert_int_equal(vocab_tokenize(rt->model->vocab, text, len, false, false, &ids, &n), 0);
        assert_int_equal(perplexity(rt, ids, (int32_t)n, &nll, &count, &err), 0);
        assert_true(count > 1000);
        free(ids);
        free(text);
        runtime_free(rt);
        return exp(nll / (double)count);
}

/*
 * The int8 KV cache (per position and head scales): perplexity on the
 * calibration text within 0.5 % of the f16 cache's, with both attention
 * paths; and its blocks take about half the bytes (at Llama-7B's shape).
 */
static void test_q8_kv_cache(void **state)
{
        for (int att = ATTENTION_DEFAULT; att <= ATTENTION_FLASH; att++) {
                double f16 = text_perplexity(TINY_MODEL, KV_TYPE_F16, att);
                double q8 = text_perplexity(TINY_MODEL, KV_TYPE_Q8, att);
                print_message("perplexity (%s attention): f16 KV %.4f, q8 KV %.4f (%+.3f %%)\n",
                              att == ATTENTION_FLASH ? "flash" : "default", f16, q8, 100.0 * (q8 / f16 - 1));
                assert_true(fabs(q8 / f16 - 1) < 0.005);
                assert_true(q8 != f16); /* the cache really is int8 */
        }
        const struct npu_hparams hp = { .n_layers = 32, .n_kv_heads = 32, .head_dim = 128 };
        double ratio = (double)kv_block_bytes(&hp, KV_TYPE_Q8, 16) / (double)kv_block_bytes(&hp, KV_TYPE_F16, 16);
        assert_true(ratio > 0.5 && ratio < 0.52);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_greedy_matches_reference),
                cmocka_unit_test(test_paths_agree),
                cmocka_unit_test(test_batch_invariance),
                cmocka_unit_test(test_flash_tolerance),
                cmocka_unit_test(test_sampler),
                cmocka_unit_test(test_q8_kv_cache),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
