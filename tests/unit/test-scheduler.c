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
        struct sched_limits lim = { .max_active = 8, .max_batch_tokens = 64, .prefill_chunk = 16, .kv_percent_per_uid = 100 };
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

/* --- randomized runs: arrivals, turns, cancels, disconnects, unloads, held streams, several models --- */

#define R_MODELS 3
#define R_UIDS 4
#define R_OWNERS 6
#define R_SESSIONS 6
#define R_REQS 512
#define R_EVENTS 160

struct r_req {
        struct sched_request *sr;
        int model, owner, session; /* session -1: a plain request */
        bool finished;
        enum sched_stop stop;
};

struct r_session {
        bool open;
        int model, owner;
        int32_t *history;
        int32_t n_history;
        struct kv_seq seq;
        int turn; /* index in reqs, or -1 */
        uint64_t last_used;
};

struct r_run {
        uint64_t rng;
        struct runtime *rt[R_MODELS];
        struct scheduler *s[R_MODELS];
        struct r_req reqs[R_REQS];
        int n_reqs;
        struct r_session sessions[R_SESSIONS];
        uint64_t clock;
        int32_t n_vocab;
        int kv_percent;
        bool draining; /* the end of a run: no more events */
        bool small;    /* requests of one block each: the running slots, not the pool, are what runs out */
        /* what was tried, over all runs */
        uint64_t steps, refused, preemptions, fair_pauses, new_uid_checks;
};

static struct r_run *run_of[R_MODELS];
static uint64_t r_seed; /* of the run going on, for messages */ /* for the callbacks: the run that owns each scheduler's userdata */

static uint32_t rnd(struct r_run *R, uint32_t n)
{
        R->rng ^= R->rng << 13;
        R->rng ^= R->rng >> 7;
        R->rng ^= R->rng << 17;
        return n ? (uint32_t)(R->rng % n) : 0;
}

static uint32_t uid_of_owner(int owner)
{
        return 1000 + (uint32_t)(owner % R_UIDS);
}

/* The fake model: a position's state is a hash of every token up to it; its next token follows from it. */
static uint64_t mix(uint64_t h, int32_t tok)
{
        h ^= (uint64_t)(uint32_t)tok + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
        return h * 0xff51afd7ed558ccdull;
}

static int32_t next_of(uint64_t h, int32_t n_vocab)
{
        return 3 + (int32_t)(h % (uint64_t)(n_vocab - 3)); /* never BOS, EOS or UNK */
}

static uint64_t kv_get(const struct kv_pool *kv, const struct kv_seq *q, int32_t pos)
{
        uint64_t h;
        memcpy(&h, kv_at(kv, q, 0, 0, pos), sizeof(h));
        return h;
}

/*
 * The step's pass, checked: each sequence's positions come in order from
 * what it holds, inside its reserved blocks, never into a block shared with
 * another sequence or the prefix cache; the state read at pos - 1 is what
 * was written there (from a shared block too).
 */
static int fake_forward(struct scheduler *s, const struct npu_batch *b, float *logits, struct npu_err *err)
{
        struct kv_pool *kv = s->rt->kv;
        int32_t n_vocab = s->rt->model->hp.n_vocab, row = 0;

        for (int32_t i = 0; i < b->n; i++) {
                struct kv_seq *q = b->seqs[i];
                int32_t pos = b->pos[i];
                uint64_t h;
                assert_int_equal(pos, q->n_pos);
                assert_true(pos / kv->block_size < q->n_blocks);
                assert_int_equal(kv->refcount[q->blocks[pos / kv->block_size]], 1);
                h = mix(pos == 0 ? 0x1234 : kv_get(kv, q, pos - 1), b->tokens[i]);
                memcpy(kv_at(kv, q, 0, 0, pos), &h, sizeof(h));
                q->n_pos = pos + 1;
                if (b->want_logits[i]) {
                        float *l = logits + (size_t)row++ * n_vocab;
                        for (int32_t v = 0; v < n_vocab; v++)
                                l[v] = 0;
                        l[next_of(h, n_vocab)] = 1;
                }
        }
        return 0;
}

static int model_of(struct r_run *R, const struct scheduler *s)
{
        for (int m = 0; m < R_MODELS; m++)
                if (R->s[m] == s)
                        return m;
        fail_msg("unknown scheduler");
        return -1;
}

/* Every token the fake model generated follows from the ones before it. */
static void check_generated(struct r_run *R, const struct sched_request *sr)
{
        uint64_t h = 0x1234;

        for (int32_t i = 0; i < sr->n_tokens; i++) {
                if (i >= sr->n_prompt)
                        assert_int_equal(sr->tokens[i], next_of(h, R->n_vocab));
                h = mix(h, sr->tokens[i]);
        }
}

static void r_on_tokens(struct sched_request *sr, void *userdata)
{
        piece_queue_clear(&sr->out);
}

static void r_on_finished(struct sched_request *sr, void *userdata)
{
        struct r_run *R = run_of[(intptr_t)userdata];
        struct r_req *q = &R->reqs[(intptr_t)sr->userdata];

        piece_queue_clear(&sr->out);
        assert_false(q->finished);
        assert_int_not_equal(sr->stop, SCHED_STOP_NONE);
        assert_int_not_equal(sr->stop, SCHED_STOP_ERROR);
        assert_int_not_equal(sr->stop, SCHED_STOP_EOS);
        check_generated(R, sr);
        q->finished = true;
        q->stop = sr->stop;
        if (q->session >= 0) {
                struct r_session *ss = &R->sessions[q->session];
                assert_int_equal(ss->turn, (int)(q - R->reqs));
                ss->turn = -1;
                kv_seq_release(sr->sched->rt->kv, &ss->seq);
                ss->seq = sr->seq;
                sr->seq = (struct kv_seq) {};
                free(ss->history);
                ss->history = malloc(sizeof(int32_t) * sr->n_tokens);
                memcpy(ss->history, sr->tokens, sizeof(int32_t) * sr->n_tokens);
                ss->n_history = sr->n_tokens;
                ss->last_used = ++R->clock;
                if (!ss->open)
                        kv_seq_release(sr->sched->rt->kv, &ss->seq);
        }
        /* half the time the owner lets go at once, from inside the callback */
        if (rnd(R, 2)) {
                sched_request_free(sr);
                q->sr = NULL;
        }
}

static int32_t r_on_reclaim(struct scheduler *s, int32_t n, void *userdata)
{
        struct r_run *R = run_of[(intptr_t)userdata];
        int m = model_of(R, s);
        int32_t freed = 0;

        while (freed < n) {
                struct r_session *lru = NULL;
                for (int i = 0; i < R_SESSIONS; i++) {
                        struct r_session *ss = &R->sessions[i];
                        if (ss->open && ss->model == m && ss->turn < 0 && ss->seq.n_blocks > 0 &&
                            (!lru || ss->last_used < lru->last_used))
                                lru = ss;
                }
                if (!lru)
                        break;
                int32_t before = s->rt->kv->n_free;
                kv_seq_release(s->rt->kv, &lru->seq);
                freed += s->rt->kv->n_free - before;
        }
        return freed;
}

static void r_new_scheduler(struct r_run *R, int m, const struct sched_limits *lim)
{
        struct sched_events ev = { .tokens = r_on_tokens, .finished = r_on_finished, .reclaim = r_on_reclaim,
                                   .userdata = (void *)(intptr_t)m };
        struct npu_err err = {};

        assert_int_equal(scheduler_new(R->rt[m], lim, &ev, &R->s[m], &err), 0);
        R->s[m]->forward = fake_forward;
        run_of[m] = R;
}

/* --- invariants --- */

/* Every block's refcount is what holds it: requests, sessions and the prefix cache; the free list matches. */
static void check_kv(struct r_run *R, int m)
{
        struct kv_pool *kv = R->rt[m]->kv;
        int32_t *want = calloc(kv->n_blocks, sizeof(int32_t)), n_free = 0;

        for (int i = 0; i < R->n_reqs; i++) {
                const struct r_req *q = &R->reqs[i];
                if (q->model == m && q->sr)
                        for (int32_t b = 0; b < q->sr->seq.n_blocks; b++)
                                want[q->sr->seq.blocks[b]]++;
        }
        for (int i = 0; i < R_SESSIONS; i++)
                if (R->sessions[i].model == m)
                        for (int32_t b = 0; b < R->sessions[i].seq.n_blocks; b++)
                                want[R->sessions[i].seq.blocks[b]]++;
        int32_t *cached = calloc(kv->n_blocks, sizeof(int32_t));
        prefix_cache_count_refs(R->s[m]->pc, cached);
        for (int32_t b = 0; b < kv->n_blocks; b++) {
                /* one entry a block at most: two would keep each other from ever being evicted */
                if (cached[b] > 1)
                        fail_msg("seed %llu, model %d: block %d is in %d prefix cache entries",
                                 (unsigned long long)r_seed, m, b, cached[b]);
                want[b] += cached[b];
        }
        free(cached);
        for (int32_t b = 0; b < kv->n_blocks; b++) {
                if (want[b] != kv->refcount[b])
                        fail_msg("model %d block %d: refcount %d, held %d times", m, b, kv->refcount[b], want[b]);
                n_free += want[b] == 0;
        }
        assert_int_equal(n_free, kv->n_free);
        free(want);
}

/* The scheduler's counters match its lists. */
static void check_counts(struct r_run *R, int m)
{
        const struct scheduler *s = R->s[m];
        int32_t queued = 0, active = 0, running = 0;

        for (const struct sched_request *r = s->queue_head; r; r = r->next) {
                assert_int_equal(r->state, SCHED_QUEUED);
                queued++;
        }
        for (const struct sched_request *r = s->active_head; r; r = r->next) {
                assert_true(r->state == SCHED_PREFILL || r->state == SCHED_DECODE);
                assert_int_equal(!!(r->pause & SCHED_PAUSE_STREAM), r->stream_held);
                active++;
                running += !r->pause;
        }
        assert_int_equal(queued, s->n_queued);
        assert_int_equal(active, s->n_active);
        assert_int_equal(running, s->n_running);
        assert_true(running <= s->lim.max_active);
        for (const struct sched_tenant *t = s->tenants; t; t = t->next) {
                int32_t tq = 0, tr = 0, tp = 0, tb = 0;
                for (const struct sched_request *r = s->queue_head; r; r = r->next)
                        tq += r->tenant == t;
                for (const struct sched_request *r = s->active_head; r; r = r->next)
                        if (r->tenant == t) {
                                tr += !r->pause;
                                tp += !!r->pause;
                                tb += r->seq.n_blocks;
                        }
                assert_int_equal(tb, t->blocks);
                assert_int_equal(tq, t->n_queued);
                assert_int_equal(tr, t->n_running);
                assert_int_equal(tp, t->n_paused);
                assert_int_equal(tq + tr + tp, t->n_requests);
        }
}

static void check_all(struct r_run *R)
{
        for (int m = 0; m < R_MODELS; m++) {
                check_kv(R, m);
                check_counts(R, m);
        }
}

static int32_t cap_blocks(const struct r_run *R, const struct scheduler *s)
{
        return MAX(s->rt->kv->n_blocks * R->kv_percent / 100, 1);
}

static void dump_sched(const struct scheduler *s)
{
        print_message("pool %d free of %d; max_active %d, running %d, queued %d, active %d\n", s->rt->kv->n_free,
                      s->rt->kv->n_blocks, s->lim.max_active, s->n_running, s->n_queued, s->n_active);
        for (int list = 0; list < 2; list++)
                for (const struct sched_request *r = list ? s->queue_head : s->active_head; r; r = r->next)
                        print_message("  %s uid %u state %s pause %u held %d blocks %d need %d tokens %d/%d gen %d/%d "
                                      "tenant run %d paused %d queued %d\n",
                                      list ? "queue" : "active", r->uid, sched_state_name(r->state), r->pause,
                                      r->stream_held, r->seq.n_blocks, sched_request_blocks(s, r), r->seq.n_pos,
                                      r->n_tokens, r->n_generated, r->max_tokens, r->tenant->n_running,
                                      r->tenant->n_paused, r->tenant->n_queued);
}

/*
 * A step of model m. Before it, note the uids with nothing admitted whose
 * oldest waiting request fits their share: each must have one admitted
 * after it. When nothing runs, every request must be held by its consumer
 * (or wait for its own uid's cap). Events may come in the middle.
 */
static void r_step(struct r_run *R, int m)
{
        struct scheduler *s = R->s[m];
        const struct sched_tenant *fresh[R_UIDS];
        int n_fresh = 0, n_tenants = 0;
        struct npu_err err = {};

        for (const struct sched_tenant *t = s->tenants; t; t = t->next)
                n_tenants++;
        for (const struct sched_tenant *t = s->tenants; t; t = t->next) {
                if (t->n_running || t->n_paused || s->lim.max_active < 2 * R_UIDS)
                        continue;
                for (const struct sched_request *r = s->queue_head; r; r = r->next)
                        if (r->tenant == t && !r->stream_held &&
                            sched_request_blocks(s, r) <= s->rt->kv->n_blocks / n_tenants &&
                            sched_request_blocks(s, r) <= cap_blocks(R, s)) {
                                fresh[n_fresh++] = t;
                                break;
                        }
        }
        if (getenv("NPUD_SCHED_DUMP") && n_fresh) {
                print_message("before (clock %llu):\n", (unsigned long long)s->clock);
                dump_sched(s);
        }
        if (!sched_step_prepare(s)) {
                bool stuck = false;
                for (const struct sched_request *r = s->active_head; r; r = r->next)
                        stuck |= !r->stream_held;
                for (const struct sched_request *r = s->queue_head; r; r = r->next)
                        stuck |= !r->stream_held &&
                                 sched_tenant_blocks(s, r->tenant) + sched_request_blocks(s, r) <= cap_blocks(R, s);
                if (stuck) {
                        dump_sched(s);
                        fail_msg("seed %llu, model %d: no step, and a request could run", (unsigned long long)r_seed,
                                 m);
                }
                return;
        }
        for (int i = 0; i < n_fresh; i++) {
                const struct sched_tenant *t = s->tenants;
                while (t && t != fresh[i])
                        t = t->next;
                assert_non_null(t);
                if (t->n_running + t->n_paused == 0) {
                        dump_sched(s);
                        fail_msg("seed %llu, model %d: uid %u had nothing running and a request within its "
                                 "share, and still waits after a step", (unsigned long long)r_seed, m, t->uid);
                }
                R->new_uid_checks++;
        }
        for (const struct sched_request *r = s->active_head; r; r = r->next)
                R->fair_pauses += (r->pause & SCHED_PAUSE_FAIR) != 0;
        /* in the middle of the step: a cancel, or a consumer that falls behind */
        if (!R->draining && rnd(R, 8) == 0 && s->n_step_reqs > 0)
                sched_cancel(s->step_reqs[rnd(R, s->n_step_reqs)], SCHED_STOP_CANCELLED);
        if (!R->draining && rnd(R, 8) == 0 && s->n_step_reqs > 0)
                sched_hold_stream(s->step_reqs[rnd(R, s->n_step_reqs)], true);
        sched_step_complete(s, sched_step_run(s, &err), err.msg);
        R->steps++;
}

/* --- events --- */

static void r_prompt(struct r_run *R, int owner, int32_t *ids, int32_t n)
{
        /* prompts of one family share their first blocks, across uids too */
        int family = (int)rnd(R, 4);

        for (int32_t i = 0; i < n; i++)
                ids[i] = i < 40 && family > 0 ? 3 + (family * 131 + i * 7) % (R->n_vocab - 3)
                                              : 3 + (int32_t)rnd(R, (uint32_t)R->n_vocab - 3);
}

static void r_submit(struct r_run *R, int m, int owner, int session, const int32_t *ids, int32_t n,
                     struct kv_seq *seq)
{
        struct sched_params p = { .max_tokens = 1 + (int32_t)rnd(R, R->small ? 6 : 24), .ignore_eos = true };
        struct sched_request *sr = NULL;
        struct npu_err err = {};
        struct r_req *q;
        int r;

        if (R->n_reqs == R_REQS)
                return;
        sampler_params_default(&p.sampling);
        p.sampling.temperature = 0;
        r = sched_submit(R->s[m], ids, n, &p, uid_of_owner(owner), &R->reqs[owner], seq, &sr, &err);
        if (r < 0) {
                /* refused at once, with a reason */
                assert_true(r == -ENOSPC || r == -EBUSY || r == -E2BIG);
                assert_true(err.msg[0] != 0);
                R->refused++;
                return;
        }
        q = &R->reqs[R->n_reqs];
        *q = (struct r_req) { .sr = sr, .model = m, .owner = owner, .session = session };
        sr->userdata = (void *)(intptr_t)R->n_reqs++;
        sr->keep_seq = session >= 0;
        if (session >= 0)
                R->sessions[session].turn = (int)(q - R->reqs);
}

static void r_arrive(struct r_run *R)
{
        int32_t ids[96], n = 1 + (int32_t)rnd(R, R->small ? 8 : 90);
        int owner = (int)rnd(R, R_OWNERS);

        r_prompt(R, owner, ids, n);
        r_submit(R, (int)rnd(R, R_MODELS), owner, -1, ids, n, NULL);
}

static void r_turn(struct r_run *R)
{
        int i = (int)rnd(R, R_SESSIONS);
        struct r_session *ss = &R->sessions[i];
        int32_t ids[256], n_new = 1 + (int32_t)rnd(R, 30);

        if (!ss->open) {
                kv_seq_release(R->rt[ss->model]->kv, &ss->seq);
                free(ss->history);
                *ss = (struct r_session) { .open = true, .model = (int)rnd(R, R_MODELS), .owner = (int)rnd(R, R_OWNERS),
                                           .turn = -1 };
        }
        if (ss->turn >= 0 || ss->n_history + n_new > 250)
                return;
        if (ss->n_history > 0)
                memcpy(ids, ss->history, sizeof(int32_t) * ss->n_history);
        r_prompt(R, ss->owner, ids + ss->n_history, n_new);
        r_submit(R, ss->model, ss->owner, i, ids, ss->n_history + n_new, &ss->seq);
}

static struct r_req *r_some_unfinished(struct r_run *R)
{
        for (int tries = 0; tries < 8 && R->n_reqs; tries++) {
                struct r_req *q = &R->reqs[rnd(R, (uint32_t)R->n_reqs)];
                if (!q->finished)
                        return q;
        }
        return NULL;
}

static void r_close_session(struct r_run *R, struct r_session *ss)
{
        ss->open = false;
        if (ss->turn >= 0)
                sched_cancel(R->reqs[ss->turn].sr, SCHED_STOP_CANCELLED); /* its seq is released as it ends */
        if (ss->turn < 0)
                kv_seq_release(R->rt[ss->model]->kv, &ss->seq);
}

static void r_disconnect(struct r_run *R)
{
        int owner = (int)rnd(R, R_OWNERS);

        for (int i = 0; i < R->n_reqs; i++)
                if (R->reqs[i].owner == owner && !R->reqs[i].finished)
                        sched_cancel(R->reqs[i].sr, SCHED_STOP_CANCELLED);
        for (int i = 0; i < R_SESSIONS; i++)
                if (R->sessions[i].open && R->sessions[i].owner == owner)
                        r_close_session(R, &R->sessions[i]);
}

/* The model goes away (between steps) with its sessions, and comes back empty. */
static void r_unload(struct r_run *R, const struct sched_limits *lim)
{
        int m = (int)rnd(R, R_MODELS);

        for (int i = 0; i < R_SESSIONS; i++)
                if (R->sessions[i].open && R->sessions[i].model == m)
                        r_close_session(R, &R->sessions[i]);
        scheduler_free(R->s[m], SCHED_STOP_UNLOADED);
        R->s[m] = NULL;
        for (int i = 0; i < R->n_reqs; i++)
                if (R->reqs[i].model == m) {
                        assert_true(R->reqs[i].finished);
                        sched_request_free(R->reqs[i].sr);
                        R->reqs[i].sr = NULL;
                        R->reqs[i].model = -1;
                }
        assert_int_equal(R->rt[m]->kv->n_free, R->rt[m]->kv->n_blocks);
        r_new_scheduler(R, m, lim);
}

static void r_hold(struct r_run *R)
{
        struct r_req *q = r_some_unfinished(R);

        if (q)
                sched_hold_stream(q->sr, !q->sr->stream_held);
}

static void random_run(struct r_run *R, uint64_t seed)
{
        struct sched_limits lim;

        memset(R->reqs, 0, sizeof(R->reqs));
        memset(R->sessions, 0, sizeof(R->sessions));
        R->n_reqs = 0;
        R->draining = false;
        r_seed = seed;
        R->rng = seed * 0x9e3779b97f4a7c15ull + 1;
        for (int i = 0; i < R_SESSIONS; i++)
                R->sessions[i].turn = -1;
        R->small = rnd(R, 4) == 0;
        lim.max_active = R->small ? 2 * R_UIDS + (int32_t)rnd(R, 3) : 1 + (int32_t)rnd(R, 10);
        lim.max_batch_tokens = lim.max_active + (int32_t)rnd(R, (uint32_t)(64 - lim.max_active + 1));
        lim.prefill_chunk = 1 + (int32_t)rnd(R, 24);
        lim.max_queue = rnd(R, 3) ? 4 + (int32_t)rnd(R, 16) : 0;
        lim.max_active_per_uid = rnd(R, 4) ? 0 : 1 + (int32_t)rnd(R, 3);
        R->kv_percent = rnd(R, 4) ? 100 : 50 + (int)rnd(R, 50);
        lim.kv_percent_per_uid = R->kv_percent;
        for (int m = 0; m < R_MODELS; m++)
                r_new_scheduler(R, m, &lim);

        for (int e = 0; e < R_EVENTS; e++) {
                uint32_t k = rnd(R, 100);
                if (k < (R->small ? 45u : 30u))
                        r_arrive(R);
                else if (k < 40)
                        r_turn(R);
                else if (k < 46) {
                        struct r_req *q = r_some_unfinished(R);
                        if (q)
                                sched_cancel(q->sr, SCHED_STOP_CANCELLED);
                } else if (k < 49)
                        r_disconnect(R);
                else if (k < 51)
                        r_unload(R, &lim);
                else if (k < 58)
                        r_hold(R);
                else
                        r_step(R, (int)rnd(R, R_MODELS));
                check_all(R);
        }
        /* the consumers catch up: everything finishes, in a bounded number of steps */
        R->draining = true;
        for (int i = 0; i < R->n_reqs; i++)
                if (!R->reqs[i].finished)
                        sched_hold_stream(R->reqs[i].sr, false);
        for (int m = 0; m < R_MODELS; m++) {
                for (int guard = 0; sched_has_work(R->s[m]); guard++) {
                        if (guard > 20000) {
                                dump_sched(R->s[m]);
                                fail_msg("seed %llu: model %d still has work after 20000 steps",
                                         (unsigned long long)seed, m);
                        }
                        r_step(R, m);
                        check_all(R);
                }
        }
        for (int i = 0; i < R->n_reqs; i++) {
                assert_true(R->reqs[i].finished);
                sched_request_free(R->reqs[i].sr);
                R->reqs[i].sr = NULL;
        }
        for (int i = 0; i < R_SESSIONS; i++) {
                if (R->sessions[i].open || R->sessions[i].seq.blocks)
                        kv_seq_release(R->rt[R->sessions[i].model]->kv, &R->sessions[i].seq);
                free(R->sessions[i].seq.blocks);
                free(R->sessions[i].history);
        }
        for (int m = 0; m < R_MODELS; m++) {
                R->preemptions += R->s[m]->stats.preemptions;
                prefix_cache_evict(R->s[m]->pc, INT32_MAX);
                /* no block leaked */
                if (R->rt[m]->kv->n_free != R->rt[m]->kv->n_blocks)
                        fail_msg("seed %llu, model %d: %d of %d blocks free at the end", (unsigned long long)seed, m,
                                 R->rt[m]->kv->n_free, R->rt[m]->kv->n_blocks);
                scheduler_free(R->s[m], SCHED_STOP_SHUTDOWN);
                R->s[m] = NULL;
        }
}

/*
 * Thousands of seeded runs on tiny KV pools (6, 10 and 16 blocks of 16
 * tokens): after every event the KV accounting and the scheduler's counters
 * hold, every step's writes go to the right blocks and read back what was
 * written, a uid with nothing running gets a request within its share
 * admitted at the next step, a scheduler with nothing to run has only
 * requests held by their consumers (or by their own uid's cap), and in the
 * end everything finishes (generated tokens checked) and no block leaks.
 * NPUD_SCHED_RUNS and NPUD_SCHED_SEED change the runs.
 */
static void test_random_runs(void **state)
{
        static const int32_t blocks[R_MODELS] = { 6, 10, 16 };
        struct r_run *R = calloc(1, sizeof(*R));
        const char *env_runs = getenv("NPUD_SCHED_RUNS"), *env_seed = getenv("NPUD_SCHED_SEED");
        int runs = env_runs ? atoi(env_runs) : 2000;
        uint64_t seed0 = env_seed ? strtoull(env_seed, NULL, 0) : 1;
        size_t block_bytes;
        struct runtime *probe = open_runtime(1, 0);

        block_bytes = probe->kv->block_bytes;
        runtime_free(probe);
        for (int m = 0; m < R_MODELS; m++)
                R->rt[m] = open_runtime(1, block_bytes * blocks[m]);
        R->n_vocab = R->rt[0]->model->hp.n_vocab;
        for (int i = 0; i < runs; i++)
                random_run(R, seed0 + (uint64_t)i);
        print_message("%d runs: %llu steps, %llu refused at submission, %llu pre-emptions, %llu fair pauses, "
                      "%llu new-uid admissions checked\n",
                      runs, (unsigned long long)R->steps, (unsigned long long)R->refused,
                      (unsigned long long)R->preemptions, (unsigned long long)R->fair_pauses,
                      (unsigned long long)R->new_uid_checks);
        /* the runs did what they are for (a few runs, to look at one seed, need not) */
        if (runs >= 100) {
                assert_true(R->preemptions > 0);
                assert_true(R->fair_pauses > 0);
                assert_true(R->new_uid_checks > 0);
        }
        for (int m = 0; m < R_MODELS; m++)
                runtime_free(R->rt[m]);
        free(R);
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
                cmocka_unit_test(test_random_runs),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
