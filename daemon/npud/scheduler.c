/* SPDX-License-Identifier: MIT */
#include "scheduler.h"
#include "vocab.h"

#define PREFIX_CACHE_MIN_ENTRIES 64

const char *sched_stop_name(enum sched_stop stop)
{
        switch (stop) {
        case SCHED_STOP_NONE: return "";
        case SCHED_STOP_EOS: return "eos";
        case SCHED_STOP_LENGTH: return "length";
        case SCHED_STOP_STRING: return "stop";
        case SCHED_STOP_CONTEXT: return "context";
        case SCHED_STOP_CANCELLED: return "cancelled";
        case SCHED_STOP_UNLOADED: return "unloaded";
        case SCHED_STOP_SHUTDOWN: return "shutdown";
        case SCHED_STOP_ERROR: return "error";
        }
        return "error";
}

const char *sched_state_name(enum sched_state state)
{
        switch (state) {
        case SCHED_QUEUED: return "queued";
        case SCHED_PREFILL: return "prefill";
        case SCHED_DECODE: return "decode";
        case SCHED_FINISHED: return "finished";
        }
        return "finished";
}

/* --- lists --- */

static void list_append(struct sched_request **head, struct sched_request **tail, struct sched_request *r)
{
        r->prev = *tail;
        r->next = NULL;
        if (*tail)
                (*tail)->next = r;
        else
                *head = r;
        *tail = r;
}

static void list_remove(struct sched_request **head, struct sched_request **tail, struct sched_request *r)
{
        if (r->prev)
                r->prev->next = r->next;
        else
                *head = r->next;
        if (r->next)
                r->next->prev = r->prev;
        else
                *tail = r->prev;
        r->prev = r->next = NULL;
}

/* --- setup --- */

int scheduler_new(struct runtime *rt, const struct sched_limits *lim, const struct sched_events *ev,
                  struct scheduler **ret, struct npu_err *err)
{
        struct scheduler *s;
        int32_t nb = lim->max_batch_tokens;
        int r;

        if (lim->max_active < 1 || nb < lim->max_active || nb > rt->ctx->max_batch || lim->prefill_chunk < 1)
                return npu_err_set(err, -EINVAL,
                                   "batch limits out of range: max_active %d, max_batch_tokens %d (1 to %d, at "
                                   "least max_active), prefill_chunk %d",
                                   lim->max_active, nb, rt->ctx->max_batch, lim->prefill_chunk);
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->rt = rt;
        s->lim = *lim;
        s->ev = *ev;
        s->b_tokens = calloc(nb, sizeof(int32_t));
        s->b_pos = calloc(nb, sizeof(int32_t));
        s->b_seqs = calloc(nb, sizeof(*s->b_seqs));
        s->b_want = calloc(nb, 1);
        s->b_req = calloc(nb, sizeof(*s->b_req));
        s->step_reqs = calloc(nb, sizeof(*s->step_reqs));
        s->logits = malloc(sizeof(float) * rt->model->hp.n_vocab * (size_t)lim->max_active);
        r = prefix_cache_new(rt->kv, MAX(rt->kv->n_blocks, PREFIX_CACHE_MIN_ENTRIES), &s->pc);
        if (r < 0 || !s->b_tokens || !s->b_pos || !s->b_seqs || !s->b_want || !s->b_req || !s->step_reqs || !s->logits) {
                scheduler_free(s, SCHED_STOP_SHUTDOWN);
                return npu_err_set(err, -ENOMEM, "cannot allocate the scheduler");
        }
        *ret = s;
        return 0;
}

static void finish(struct sched_request *r, enum sched_stop stop, const char *error);

void scheduler_free(struct scheduler *s, enum sched_stop stop)
{
        if (!s)
                return;
        while (s->active_head)
                finish(s->active_head, stop, NULL);
        while (s->queue_head)
                finish(s->queue_head, stop, NULL);
        prefix_cache_free(s->pc);
        free(s->b_tokens);
        free(s->b_pos);
        free(s->b_seqs);
        free(s->b_want);
        free(s->b_req);
        free(s->step_reqs);
        free(s->logits);
        free(s);
}

/* --- requests --- */

int32_t sched_positions_needed(const struct scheduler *s, int32_t n_tokens, int32_t max_tokens)
{
        /* the last generated token is never run through the model */
        int64_t n = (int64_t)n_tokens + max_tokens - 1;
        return (int32_t)MIN(n, (int64_t)s->rt->n_ctx);
}

static int append_token(struct sched_request *r, int32_t tok)
{
        if (r->n_tokens == r->cap_tokens) {
                int32_t cap = MAX(16, r->cap_tokens * 2);
                int32_t *t = realloc(r->tokens, sizeof(int32_t) * cap);
                if (!t)
                        return -ENOMEM;
                r->tokens = t;
                r->cap_tokens = cap;
        }
        r->tokens[r->n_tokens++] = tok;
        return 0;
}

void sched_request_free(struct sched_request *r)
{
        if (!r)
                return;
        if (r->sched && r->seq.blocks)
                kv_seq_release(r->sched->rt->kv, &r->seq);
        free(r->seq.blocks);
        sampler_free(r->smp);
        text_stream_done(&r->text);
        piece_queue_done(&r->out);
        token_logprobs_done(&r->logprobs);
        free(r->tokens);
        free(r->error);
        free(r);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(struct sched_request *, sched_request_free);

int sched_submit(struct scheduler *s, const int32_t *tokens, int32_t n, const struct sched_params *p, uint32_t uid,
                 const void *owner, struct kv_seq *seq, struct sched_request **ret, struct npu_err *err)
{
        const struct npu_model *m = s->rt->model;
        struct kv_pool *kv = s->rt->kv;
        _cleanup_(sched_request_freep) struct sched_request *r = NULL;
        int32_t need;
        int rr;

        if (n < 1)
                return npu_err_set(err, -EINVAL, "the prompt is empty");
        for (int32_t i = 0; i < n; i++)
                if (tokens[i] < 0 || tokens[i] >= m->hp.n_vocab)
                        return npu_err_set(err, -EINVAL, "token %d at %d is outside the vocabulary (0 to %d)",
                                           tokens[i], i, m->hp.n_vocab - 1);
        if (n >= s->rt->n_ctx)
                return npu_err_set(err, -E2BIG, "the prompt has %d tokens; the context holds %d with one to generate",
                                   n, s->rt->n_ctx);
        if (p->max_tokens < 1)
                return npu_err_set(err, -EINVAL, "max_tokens must be at least 1");
        rr = sampler_params_validate(&p->sampling, err);
        if (rr < 0)
                return rr;
        need = DIV_ROUND_UP(sched_positions_needed(s, n, p->max_tokens), kv->block_size);
        if (need > kv->n_blocks)
                return npu_err_set(err, -ENOSPC,
                                   "the request needs %d KV blocks of %d tokens (prompt %d + max_tokens %d) and the "
                                   "whole pool has %d: lower max_tokens or shorten the prompt (or raise kv_budget_mb)",
                                   need, kv->block_size, n, p->max_tokens, kv->n_blocks);

        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->logits_row = -1;
        if (text_stream_init(&r->text, p->stops) < 0)
                return npu_err_set(err, -EINVAL, "stop strings must be valid UTF-8 of 1 to %d bytes, at most %d",
                                   TEXT_STREAM_MAX_STOP_LEN, TEXT_STREAM_MAX_STOPS);
        r->sched = s;
        r->tokens = malloc(sizeof(int32_t) * (n + 16));
        if (!r->tokens)
                return -ENOMEM;
        memcpy(r->tokens, tokens, sizeof(int32_t) * n);
        r->n_tokens = r->n_prompt = n;
        r->cap_tokens = n + 16;
        r->max_tokens = p->max_tokens;
        r->ignore_eos = p->ignore_eos;
        token_logprobs_init(&r->logprobs, p->logprobs ? p->top_logprobs : -1);
        rr = sampler_new(&p->sampling, m->hp.n_vocab, &r->smp);
        if (rr < 0)
                return npu_err_set(err, rr, "cannot make a sampler");
        for (int32_t i = 0; i < n; i++)
                sampler_accept(r->smp, tokens[i]);
        if (seq) {
                if (seq->n_pos > n)
                        return npu_err_set(err, -EINVAL, "the session's cache is longer than its history");
                r->seq = *seq;
                *seq = (struct kv_seq) {};
        }
        r->uid = uid;
        r->owner = owner;
        r->state = SCHED_QUEUED;
        r->t_submit = now_ns();
        list_append(&s->queue_head, &s->queue_tail, r);
        s->n_queued++;
        *ret = TAKE_PTR(r);
        return 0;
}

static void finish(struct sched_request *r, enum sched_stop stop, const char *error)
{
        struct scheduler *s = r->sched;

        if (r->state == SCHED_FINISHED)
                return;
        if (r->state == SCHED_QUEUED) {
                list_remove(&s->queue_head, &s->queue_tail, r);
                s->n_queued--;
        } else {
                list_remove(&s->active_head, &s->active_tail, r);
                s->n_active--;
        }
        (void)text_stream_finish(&r->text, &r->out);
        if (!r->keep_seq)
                kv_seq_release(s->rt->kv, &r->seq);
        r->state = SCHED_FINISHED;
        r->stop = stop;
        r->cancel = false;
        if (error && !r->error)
                r->error = strdup(error);
        r->t_done = now_ns();
        if (s->ev.finished)
                s->ev.finished(r, s->ev.userdata);
}

void sched_cancel(struct sched_request *r, enum sched_stop stop)
{
        if (r->state == SCHED_FINISHED)
                return;
        if (r->step_tokens > 0) {
                r->cancel = true;
                r->stop = stop;
                return;
        }
        finish(r, stop, NULL);
}

/* --- admission --- */

static int64_t active_of(const struct scheduler *s, const struct sched_request *q)
{
        int32_t uid = 0, owner = 0;
        for (const struct sched_request *r = s->active_head; r; r = r->next)
                if (r->uid == q->uid) {
                        uid++;
                        owner += r->owner == q->owner;
                }
        return (int64_t)uid << 32 | owner;
}

/* The queued request whose uid, then owner, runs the fewest requests; the oldest among equals. */
static struct sched_request *next_to_admit(const struct scheduler *s)
{
        struct sched_request *best = NULL;
        int64_t best_n = INT64_MAX;

        for (struct sched_request *r = s->queue_head; r; r = r->next) {
                int64_t n = active_of(s, r);
                if (n < best_n) {
                        best = r;
                        best_n = n;
                }
        }
        return best;
}

/*
 * Frees KV blocks for need more: blocks only the prefix cache holds, then
 * idle sessions' blocks, then what queued requests hold (a session turn's
 * history, computed again when admitted). Blocks released there that the
 * prefix cache also holds are only cached then: evicted in turn.
 */
static bool make_room(struct scheduler *s, const struct sched_request *for_r, int32_t need)
{
        struct kv_pool *kv = s->rt->kv;

        if (need > kv->n_free)
                prefix_cache_evict(s->pc, need - kv->n_free);
        if (need > kv->n_free && s->ev.reclaim) {
                s->ev.reclaim(s, need - kv->n_free, s->ev.userdata);
                prefix_cache_evict(s->pc, need - kv->n_free);
        }
        for (struct sched_request *r = s->queue_tail; r && need > kv->n_free; r = r->prev) {
                if (r == for_r || r->seq.n_blocks == 0)
                        continue;
                kv_seq_release(kv, &r->seq);
                prefix_cache_evict(s->pc, need - kv->n_free);
        }
        return need <= kv->n_free;
}

static int admit(struct scheduler *s, struct sched_request *r)
{
        struct kv_pool *kv = s->rt->kv;
        int32_t total = sched_positions_needed(s, r->n_tokens, r->max_tokens);
        bool attached = false;

        if (r->seq.n_blocks == 0) {
                /* leave the last prompt token to compute: its logits start the reply */
                r->n_cached = prefix_cache_attach(s->pc, r->uid, r->tokens, r->n_tokens - 1, &r->seq);
                attached = r->n_cached > 0;
        } else {
                r->n_cached = r->seq.n_pos;
        }
        if (!make_room(s, r, DIV_ROUND_UP(total, kv->block_size) - r->seq.n_blocks) ||
            kv_seq_reserve(kv, &r->seq, total) < 0) {
                if (attached) {
                        kv_seq_release(kv, &r->seq);
                        r->n_cached = 0;
                }
                return -ENOSPC;
        }
        list_remove(&s->queue_head, &s->queue_tail, r);
        s->n_queued--;
        list_append(&s->active_head, &s->active_tail, r);
        s->n_active++;
        r->state = SCHED_PREFILL;
        r->t_admit = now_ns();
        s->stats.prompt_tokens += r->n_tokens - r->n_cached;
        s->stats.cached_prompt_tokens += r->n_cached;
        return 0;
}

static void admit_queued(struct scheduler *s)
{
        while (s->n_active < s->lim.max_active) {
                struct sched_request *r = next_to_admit(s);
                if (!r || admit(s, r) < 0)
                        return;
        }
}

/* --- steps --- */

bool sched_has_work(const struct scheduler *s)
{
        return s->active_head || s->queue_head;
}

static void add_token(struct scheduler *s, struct sched_request *r, int32_t tok, int32_t pos, bool want)
{
        int32_t i = s->batch.n++;

        s->b_tokens[i] = tok;
        s->b_pos[i] = pos;
        s->b_seqs[i] = &r->seq;
        s->b_want[i] = want;
        s->b_req[i] = r;
        if (r->step_tokens++ == 0)
                s->step_reqs[s->n_step_reqs++] = r;
        if (want)
                r->logits_row = s->n_logit_rows++;
}

bool sched_step_prepare(struct scheduler *s)
{
        int32_t budget = s->lim.max_batch_tokens;

        if (s->running)
                return false;
        admit_queued(s);
        s->batch = (struct npu_batch) { .tokens = s->b_tokens, .pos = s->b_pos,
                                        .seqs = (struct kv_seq *const *)s->b_seqs, .want_logits = s->b_want };
        s->n_logit_rows = 0;
        s->n_step_reqs = 0;
        for (struct sched_request *r = s->active_head; r; r = r->next)
                if (r->state == SCHED_DECODE)
                        add_token(s, r, r->tokens[r->n_tokens - 1], r->n_tokens - 1, true);
        for (struct sched_request *r = s->active_head; r && s->batch.n < budget; r = r->next) {
                if (r->state != SCHED_PREFILL)
                        continue;
                int32_t from = r->seq.n_pos;
                int32_t chunk = MIN(MIN(r->n_tokens - from, budget - s->batch.n), s->lim.prefill_chunk);
                for (int32_t i = 0; i < chunk; i++)
                        add_token(s, r, r->tokens[from + i], from + i, from + i == r->n_tokens - 1);
        }
        if (s->batch.n == 0)
                return false;
        s->running = true;
        s->t_step = now_ns();
        return true;
}

int sched_step_run(struct scheduler *s, struct npu_err *err)
{
        return forward(s->rt->ctx, &s->batch, s->logits, err);
}

/* Samples the request's next token; true when that finished the request. */
static bool take_token(struct scheduler *s, struct sched_request *r, int32_t row_index)
{
        const struct npu_vocab *v = s->rt->model->vocab;
        float *row = s->logits + (size_t)row_index * s->rt->model->hp.n_vocab;
        char piece[256];
        int32_t tok;
        size_t len;
        int rr;

        tok = sampler_sample(r->smp, row);
        sampler_accept(r->smp, tok);
        if (token_logprobs_add(&r->logprobs, row, s->rt->model->hp.n_vocab, tok) < 0) {
                finish(r, SCHED_STOP_ERROR, "out of memory");
                return true;
        }
        if (r->t_first == 0)
                r->t_first = now_ns();
        if (!r->ignore_eos && vocab_is_eog(v, tok)) {
                finish(r, SCHED_STOP_EOS, NULL);
                return true;
        }
        if (append_token(r, tok) < 0) {
                finish(r, SCHED_STOP_ERROR, "out of memory");
                return true;
        }
        r->n_generated++;
        s->stats.generated_tokens++;
        len = vocab_token_bytes(v, tok, piece, sizeof(piece));
        rr = text_stream_push(&r->text, tok, piece, len, &r->out);
        if (rr < 0)
                finish(r, SCHED_STOP_ERROR, "out of memory");
        else if (rr > 0)
                finish(r, SCHED_STOP_STRING, NULL);
        else if (r->n_generated >= r->max_tokens)
                finish(r, SCHED_STOP_LENGTH, NULL);
        else if (r->n_tokens > s->rt->n_ctx)
                finish(r, SCHED_STOP_CONTEXT, NULL);
        else
                return false;
        return true;
}

void sched_step_complete(struct scheduler *s, int rr, const char *error)
{
        s->running = false;
        s->stats.steps++;
        s->stats.step_ns += now_ns() - s->t_step;
        /* finished callbacks may free a request: each is touched once, and not after it finishes */
        for (int32_t i = 0; i < s->n_step_reqs; i++) {
                struct sched_request *r = s->step_reqs[i];
                int32_t row = r->logits_row;
                r->step_tokens = 0;
                r->logits_row = -1;
                if (rr < 0) {
                        finish(r, SCHED_STOP_ERROR, error);
                        continue;
                }
                if (r->cancel) {
                        finish(r, r->stop, NULL);
                        continue;
                }
                if (r->state == SCHED_PREFILL && r->seq.n_pos == r->n_tokens) {
                        prefix_cache_insert(s->pc, r->uid, r->tokens, r->n_tokens, &r->seq);
                        r->state = SCHED_DECODE;
                }
                if (row >= 0 && take_token(s, r, row))
                        continue;
                if (r->out.n && s->ev.tokens)
                        s->ev.tokens(r, s->ev.userdata);
        }
        s->batch.n = 0;
        s->n_step_reqs = 0;
}

bool sched_step(struct scheduler *s)
{
        struct npu_err err = {};
        int r;

        if (!sched_step_prepare(s))
                return false;
        r = sched_step_run(s, &err);
        sched_step_complete(s, r, err.msg);
        return true;
}

int32_t sched_kv_blocks_used(const struct scheduler *s)
{
        return kv_pool_used_blocks(s->rt->kv) - prefix_cache_idle_blocks(s->pc);
}
