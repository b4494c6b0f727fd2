/* SPDX-License-Identifier: MIT */
/*
 * npud's scheduler on the small model: a request gives the same tokens alone
 * and batched with any others, KV blocks all come back, a shared prefix is
 * computed once, a tight KV pool queues work instead of failing it, and the
 * text stream assembles UTF-8 and honours stop strings.
 */
#include "scheduler.h"
#include "test-helpers.h"
#include "vocab.h"

#define MAX_OUT 256

struct result {
        int32_t ids[MAX_OUT];
        int32_t n;
        char text[4096];
        size_t len;
        enum sched_stop stop;
        int32_t n_cached;
        bool done;
};

static void on_tokens(struct sched_request *r, void *userdata)
{
        struct result *res = r->userdata;
        for (size_t i = 0; i < r->out.n; i++) {
                if (res->n < MAX_OUT)
                        res->ids[res->n++] = r->out.v[i].id;
                size_t l = strlen(r->out.v[i].text);
                assert_true(res->len + l < sizeof(res->text));
                memcpy(res->text + res->len, r->out.v[i].text, l + 1);
                res->len += l;
        }
        piece_queue_clear(&r->out);
}

static void on_finished(struct sched_request *r, void *userdata)
{
        struct result *res = r->userdata;
        on_tokens(r, userdata);
        res->stop = r->stop;
        res->n_cached = r->n_cached;
        res->done = true;
}

static struct runtime *open_runtime(int32_t n_seq, size_t kv_budget)
{
        struct runtime_opts o;
        struct runtime *rt = NULL;
        struct npu_err err = {};

        runtime_opts_default(&o);
        o.model_path = TINY_MODEL;
        o.n_seq = n_seq;
        o.kv_budget = kv_budget;
        o.max_batch = 64;
        assert_int_equal(runtime_open(&o, &rt, &err), 0);
        return rt;
}

static struct scheduler *open_scheduler(struct runtime *rt)
{
        struct sched_limits lim = { .max_active = 8, .max_batch_tokens = 64, .prefill_chunk = 16 };
        struct sched_events ev = { .tokens = on_tokens, .finished = on_finished };
        struct scheduler *s = NULL;
        struct npu_err err = {};

        assert_int_equal(scheduler_new(rt, &lim, &ev, &s, &err), 0);
        return s;
}

static const char *const prompts[] = {
        "Once upon a time",
        "The little robot looked at the stars and",
        "In a quiet village by the sea, there lived an old fisherman who",
        "Colors",
        "Why do cats purr? Because",
        "One, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve",
        "The end.",
        "A kaleidoscope of probability",
};

static void params_for(int i, struct sched_params *p)
{
        *p = (struct sched_params) { .max_tokens = 20 + 7 * i };
        sampler_params_default(&p->sampling);
        if (i % 3 == 1) {
                p->sampling.temperature = 0.9f;
                p->sampling.seed = 1234 + i;
        } else {
                p->sampling.temperature = 0;
        }
        p->ignore_eos = i % 2;
}

static struct sched_request *submit_ids(struct scheduler *s, const int32_t *ids, int32_t n, uint32_t uid,
                                        const struct sched_params *p, struct result *res)
{
        struct sched_request *r = NULL;
        struct npu_err err = {};

        assert_int_equal(sched_submit(s, ids, n, p, uid, NULL, NULL, &r, &err), 0);
        r->userdata = res;
        return r;
}

static struct sched_request *submit_text(struct scheduler *s, const char *text, const struct sched_params *p,
                                         struct result *res)
{
        struct sched_request *r;
        int32_t *ids;
        size_t n;

        assert_int_equal(vocab_tokenize(s->rt->model->vocab, text, strlen(text), true, true, &ids, &n), 0);
        r = submit_ids(s, ids, (int32_t)n, 0, p, res);
        free(ids);
        return r;
}

static void run_until_idle(struct scheduler *s)
{
        for (int guard = 0; sched_has_work(s); guard++) {
                assert_true(guard < 100000);
                sched_step(s);
        }
}

static void run_alone(int i, struct result *res)
{
        struct runtime *rt = open_runtime(1, 0);
        struct scheduler *s = open_scheduler(rt);
        struct sched_params p;
        struct sched_request *r;

        params_for(i, &p);
        *res = (struct result) {};
        r = submit_text(s, prompts[i], &p, res);
        run_until_idle(s);
        assert_true(res->done);
        assert_true(res->n > 0);
        sched_request_free(r);
        assert_int_equal(sched_kv_blocks_used(s), 0);
        scheduler_free(s, SCHED_STOP_SHUTDOWN);
        runtime_free(rt);
}

static void test_batched_equals_alone(void **state)
{
        struct result alone[8], batched[8];
        struct sched_request *reqs[8];
        struct runtime *rt;
        struct scheduler *s;

        for (int i = 0; i < 8; i++)
                run_alone(i, &alone[i]);

        rt = open_runtime(8, 0);
        s = open_scheduler(rt);
        /* staggered arrivals: some join while others decode */
        for (int i = 0; i < 8; i++) {
                struct sched_params p;
                params_for(i, &p);
                batched[i] = (struct result) {};
                reqs[i] = submit_text(s, prompts[i], &p, &batched[i]);
                for (int k = 0; k < i; k++)
                        sched_step(s);
        }
        run_until_idle(s);
        for (int i = 0; i < 8; i++) {
                assert_true(batched[i].done);
                assert_int_equal(batched[i].n, alone[i].n);
                assert_memory_equal(batched[i].ids, alone[i].ids, sizeof(int32_t) * alone[i].n);
                assert_string_equal(batched[i].text, alone[i].text);
                assert_int_equal(batched[i].stop, alone[i].stop);
                sched_request_free(reqs[i]);
        }
        assert_true(s->stats.steps > 0);
        assert_int_equal(sched_kv_blocks_used(s), 0);
        scheduler_free(s, SCHED_STOP_SHUTDOWN);
        runtime_free(rt);
}

static void test_cancel_returns_blocks(void **state)
{
        struct runtime *rt = open_runtime(4, 0);
        struct scheduler *s = open_scheduler(rt);
        struct result a = {}, b = {};
        struct sched_params p;
        struct sched_request *ra, *rb;

        params_for(0, &p);
        p.max_tokens = 200;
        p.ignore_eos = true;
        ra = submit_text(s, prompts[2], &p, &a);
        rb = submit_text(s, prompts[0], &p, &b);
        for (int i = 0; i < 10; i++)
                sched_step(s);
        assert_true(sched_kv_blocks_used(s) > 0);
        assert_int_equal(ra->state, SCHED_DECODE);
        sched_cancel(ra, SCHED_STOP_CANCELLED);
        assert_true(a.done);
        assert_int_equal(a.stop, SCHED_STOP_CANCELLED);
        /* cancelling twice changes nothing */
        sched_cancel(ra, SCHED_STOP_SHUTDOWN);
        assert_int_equal(a.stop, SCHED_STOP_CANCELLED);
        /* a cancel during a step takes effect when the step ends */
        assert_true(sched_step_prepare(s));
        sched_cancel(rb, SCHED_STOP_CANCELLED);
        assert_false(b.done);
        struct npu_err err = {};
        sched_step_complete(s, sched_step_run(s, &err), err.msg);
        assert_true(b.done);
        assert_int_equal(b.stop, SCHED_STOP_CANCELLED);
        assert_int_equal(sched_kv_blocks_used(s), 0);
        assert_false(sched_has_work(s));
        sched_request_free(ra);
        sched_request_free(rb);
        scheduler_free(s, SCHED_STOP_SHUTDOWN);
        runtime_free(rt);
}

static void test_prefix_shared(void **state)
{
        const char *system = "You are a storyteller. You tell short, gentle stories about the sea, the stars, "
                             "robots and cats, and every story ends well. Here is the story:";
        char with_a[512], with_b[512];
        struct runtime *rt = open_runtime(4, 0);
        struct scheduler *s = open_scheduler(rt);
        struct result first = {}, second = {}, fresh = {};
        struct sched_params p;
        struct sched_request *r1, *r2, *r3;

        snprintf(with_a, sizeof(with_a), "%s Once upon a time", system);
        snprintf(with_b, sizeof(with_b), "%s The little robot", system);
        params_for(0, &p);
        r1 = submit_text(s, with_a, &p, &first);
        run_until_idle(s);
        uint64_t computed = s->stats.prompt_tokens;
        r2 = submit_text(s, with_b, &p, &second);
        run_until_idle(s);
        assert_int_equal(first.n_cached, 0);
        assert_true(second.n_cached >= 32);
        assert_int_equal(s->stats.cached_prompt_tokens, (uint64_t)second.n_cached);
        assert_true(s->stats.prompt_tokens - computed < computed);
        /* cached blocks are free memory in waiting, not use */
        assert_int_equal(sched_kv_blocks_used(s), 0);
        assert_true(kv_pool_used_blocks(rt->kv) > 0);
        sched_request_free(r1);
        sched_request_free(r2);
        scheduler_free(s, SCHED_STOP_SHUTDOWN);
        runtime_free(rt);

        /* the shared prefix gives the same tokens as computing it */
        rt = open_runtime(1, 0);
        s = open_scheduler(rt);
        r3 = submit_text(s, with_b, &p, &fresh);
        run_until_idle(s);
        assert_int_equal(fresh.n_cached, 0);
        assert_int_equal(fresh.n, second.n);
        assert_memory_equal(fresh.ids, second.ids, sizeof(int32_t) * fresh.n);
        sched_request_free(r3);
        scheduler_free(s, SCHED_STOP_SHUTDOWN);
        runtime_free(rt);
}

static void test_tight_pool_queues(void **state)
{
        struct result alone[8], res[8];
        struct sched_request *reqs[8];
        struct runtime *rt;
        struct scheduler *s;
        size_t block_bytes;

        for (int i = 0; i < 8; i++)
                run_alone(i, &alone[i]);
        rt = open_runtime(1, 0);
        block_bytes = rt->kv->block_bytes;
        runtime_free(rt);
        /* room for about two requests at a time */
        rt = open_runtime(1, block_bytes * 14);
        s = open_scheduler(rt);
        for (int i = 0; i < 8; i++) {
                struct sched_params p;
                params_for(i, &p);
                res[i] = (struct result) {};
                reqs[i] = submit_text(s, prompts[i], &p, &res[i]);
        }
        int32_t most_active = 0;
        while (sched_has_work(s)) {
                sched_step(s);
                most_active = MAX(most_active, s->n_active);
                assert_true(kv_pool_used_blocks(rt->kv) <= rt->kv->n_blocks);
        }
        assert_true(most_active >= 2);
        assert_true(most_active < 8);
        for (int i = 0; i < 8; i++) {
                assert_true(res[i].done);
                assert_int_equal(res[i].n, alone[i].n);
                assert_memory_equal(res[i].ids, alone[i].ids, sizeof(int32_t) * alone[i].n);
                sched_request_free(reqs[i]);
        }
        scheduler_free(s, SCHED_STOP_SHUTDOWN);
        runtime_free(rt);
}

static void test_submit_errors(void **state)
{
        struct runtime *rt = open_runtime(1, 0);
        struct scheduler *s = open_scheduler(rt);
        struct sched_request *r = NULL;
        struct npu_err err = {};
        struct sched_params p;
        int32_t ids[8] = { 1, 2, 3 };
        int32_t *big = calloc(rt->n_ctx, sizeof(int32_t));
        char *bad_stops[] = { "", NULL };

        params_for(0, &p);
        assert_int_equal(sched_submit(s, ids, 0, &p, 0, NULL, NULL, &r, &err), -EINVAL);
        ids[1] = rt->model->hp.n_vocab;
        assert_int_equal(sched_submit(s, ids, 3, &p, 0, NULL, NULL, &r, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "vocabulary"));
        ids[1] = 2;
        assert_int_equal(sched_submit(s, big, rt->n_ctx, &p, 0, NULL, NULL, &r, &err), -E2BIG);
        p.max_tokens = 0;
        assert_int_equal(sched_submit(s, ids, 3, &p, 0, NULL, NULL, &r, &err), -EINVAL);
        params_for(0, &p);
        p.sampling.temperature = -1;
        assert_int_equal(sched_submit(s, ids, 3, &p, 0, NULL, NULL, &r, &err), -EINVAL);
        params_for(0, &p);
        p.stops = bad_stops;
        assert_int_equal(sched_submit(s, ids, 3, &p, 0, NULL, NULL, &r, &err), -EINVAL);
        assert_false(sched_has_work(s));
        free(big);
        scheduler_free(s, SCHED_STOP_SHUTDOWN);
        runtime_free(rt);

        /* a pool that could never hold the request */
        rt = open_runtime(1, 0);
        size_t block_bytes = rt->kv->block_bytes;
        runtime_free(rt);
        rt = open_runtime(1, block_bytes * 2);
        s = open_scheduler(rt);
        params_for(0, &p);
        p.max_tokens = 100;
        assert_int_equal(sched_submit(s, ids, 3, &p, 0, NULL, NULL, &r, &err), -ENOSPC);
        scheduler_free(s, SCHED_STOP_SHUTDOWN);
        runtime_free(rt);
}

/* Token ids for a prompt: block b (16 tokens) of pattern k. */
static void fill_block(int32_t *dst, int k)
{
        for (int32_t i = 0; i < 16; i++)
                dst[i] = 3 + (k * 97 + i * 13) % 500;
}

/* Runs one greedy request of ids for uid to its end; its tokens and cached count go to res. */
static void run_ids(struct scheduler *s, const int32_t *ids, int32_t n, uint32_t uid, struct result *res)
{
        struct sched_params p;
        struct sched_request *r;

        params_for(0, &p);
        p.max_tokens = 8;
        p.ignore_eos = true;
        *res = (struct result) {};
        r = submit_ids(s, ids, n, uid, &p, res);
        run_until_idle(s);
        assert_true(res->done);
        sched_request_free(r);
}

/* A prompt's blocks are shared only with requests of the same uid. */
static void test_prefix_per_uid(void **state)
{
        struct runtime *rt = open_runtime(4, 0);
        struct scheduler *s = open_scheduler(rt);
        struct result a1, b, a2;
        int32_t ids[16 * 4 + 3];

        for (int k = 0; k < 4; k++)
                fill_block(ids + 16 * k, k);
        ids[64] = 7, ids[65] = 8, ids[66] = 9;
        run_ids(s, ids, 67, 1000, &a1);
        assert_int_equal(a1.n_cached, 0);
        run_ids(s, ids, 67, 65534, &b);
        assert_int_equal(b.n_cached, 0);
        run_ids(s, ids, 67, 1000, &a2);
        assert_int_equal(a2.n_cached, 64);
        /* the same tokens whoever computed them */
        assert_int_equal(b.n, a1.n);
        assert_memory_equal(b.ids, a1.ids, sizeof(int32_t) * a1.n);
        assert_memory_equal(a2.ids, a1.ids, sizeof(int32_t) * a1.n);
        scheduler_free(s, SCHED_STOP_SHUTDOWN);
        runtime_free(rt);
}

/*
 * With a hash that collides on purpose (a block's key is its own tokens
 * only), a block is still shared only after the same whole prefix: the
 * cache compares the chain, not the hash.
 */
static void test_prefix_full_compare(void **state)
{
        struct runtime *rt = open_runtime(4, 0);
        struct scheduler *s = open_scheduler(rt);
        struct result xyz, xpw, xpy, fresh;
        int32_t a[16 * 3 + 2], c[16 * 2 + 2], b[16 * 2 + 2];

        prefix_cache_weaken_hash(s->pc);
        fill_block(a, 1), fill_block(a + 16, 2), fill_block(a + 32, 3);  /* X Y Z */
        fill_block(c, 4), fill_block(c + 16, 5);                         /* X' W */
        fill_block(b, 4), fill_block(b + 16, 2);                         /* X' Y */
        a[48] = c[32] = b[32] = 11;
        a[49] = c[33] = b[33] = 12;
        run_ids(s, a, 50, 0, &xyz);
        run_ids(s, c, 34, 0, &xpw);
        run_ids(s, b, 34, 0, &xpy);
        /* X' is shared; Y (after X, not X') is not, though its key and tokens match */
        assert_int_equal(xpy.n_cached, 16);
        scheduler_free(s, SCHED_STOP_SHUTDOWN);
        runtime_free(rt);

        rt = open_runtime(1, 0);
        s = open_scheduler(rt);
        run_ids(s, b, 34, 0, &fresh);
        assert_int_equal(fresh.n_cached, 0);
        assert_int_equal(xpy.n, fresh.n);
        assert_memory_equal(xpy.ids, fresh.ids, sizeof(int32_t) * fresh.n);
        scheduler_free(s, SCHED_STOP_SHUTDOWN);
        runtime_free(rt);
}

/* --- text stream --- */

static void push_all(struct text_stream *ts, const char *const *pieces, size_t n, struct piece_queue *out,
                     int *stopped_at)
{
        *stopped_at = -1;
        for (size_t i = 0; i < n; i++) {
                int r = text_stream_push(ts, (int32_t)i, pieces[i], strlen(pieces[i]), out);
                assert_true(r >= 0);
                if (r > 0) {
                        *stopped_at = (int)i;
                        return;
                }
        }
        assert_int_equal(text_stream_finish(ts, out), 0);
}

static char *joined(const struct piece_queue *q)
{
        static char buf[1024];
        buf[0] = 0;
        for (size_t i = 0; i < q->n; i++)
                strcat(buf, q->v[i].text);
        return buf;
}

static void test_text_stream_utf8(void **state)
{
        /* "é" split over two byte tokens, an emoji over four, a stray continuation byte, a cut-off end */
        const char *pieces[] = { "a", "\xC3", "\xA9", "\xF0\x9F", "\x98", "\x80", "\x80", "b", "\xE2\x82" };
        struct text_stream ts;
        struct piece_queue out = {};
        int stopped;

        assert_int_equal(text_stream_init(&ts, NULL), 0);
        push_all(&ts, pieces, ARRAY_SIZE(pieces), &out, &stopped);
        assert_int_equal(stopped, -1);
        assert_int_equal(out.n, ARRAY_SIZE(pieces));
        assert_string_equal(joined(&out), "a\xC3\xA9\xF0\x9F\x98\x80\xEF\xBF\xBD"
                                          "b\xEF\xBF\xBD");
        /* the character goes out with the token that completes it */
        assert_string_equal(out.v[1].text, "");
        assert_string_equal(out.v[2].text, "\xC3\xA9");
        for (size_t i = 0; i < out.n; i++)
                assert_int_equal(out.v[i].id, (int32_t)i);
        piece_queue_done(&out);
        text_stream_done(&ts);
}

static void test_text_stream_stops(void **state)
{
        char *stops[] = { "\n\nUser:", "END", NULL };
        const char *pieces[] = { "Hello", " world", ".\n", "\nUs", "ually", " fine", ".\n\n", "User", ":", "x" };
        const char *pieces2[] = { "The E", "N", "D is near", "more" };
        struct text_stream ts;
        struct piece_queue out = {};
        int stopped;

        assert_int_equal(text_stream_init(&ts, stops), 0);
        push_all(&ts, pieces, ARRAY_SIZE(pieces), &out, &stopped);
        assert_int_equal(stopped, 8);
        /* "\n\nUs" was held, then released when "ually" broke the match */
        assert_string_equal(joined(&out), "Hello world.\n\nUsually fine.");
        piece_queue_done(&out);
        text_stream_done(&ts);

        assert_int_equal(text_stream_init(&ts, stops), 0);
        push_all(&ts, pieces2, ARRAY_SIZE(pieces2), &out, &stopped);
        assert_int_equal(stopped, 2);
        assert_string_equal(joined(&out), "The ");
        piece_queue_done(&out);
        text_stream_done(&ts);

        char *bad[] = { "\xFF", NULL };
        assert_int_equal(text_stream_init(&ts, bad), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_text_stream_utf8),
                cmocka_unit_test(test_text_stream_stops),
                cmocka_unit_test(test_submit_errors),
                cmocka_unit_test(test_cancel_returns_blocks),
                cmocka_unit_test(test_prefix_shared),
                cmocka_unit_test(test_prefix_per_uid),
                cmocka_unit_test(test_prefix_full_compare),
                cmocka_unit_test(test_batched_equals_alone),
                cmocka_unit_test(test_tight_pool_queues),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
