/* SPDX-License-Identifier: MIT */
/* The scheduler's mechanics: lists, admission, pauses, pre-emption, steps (see scheduler.h, fairness.h). */
#include "fairness.h"
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

/* --- lists and counters --- */

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

/* Into the queue by arrival, so a pre-empted request goes back before later ones. */
static void enqueue(struct scheduler *s, struct sched_request *r)
{
        struct sched_request *after = s->queue_tail;

        while (after && after->t_submit > r->t_submit)
                after = after->prev;
        r->prev = after;
        r->next = after ? after->next : s->queue_head;
        if (r->next)
                r->next->prev = r;
        else
                s->queue_tail = r;
        if (after)
                after->next = r;
        else
                s->queue_head = r;
        r->state = SCHED_QUEUED;
        s->n_queued++;
        r->tenant->n_queued++;
}

static void dequeue(struct scheduler *s, struct sched_request *r)
{
        list_remove(&s->queue_head, &s->queue_tail, r);
        s->n_queued--;
        r->tenant->n_queued--;
}

static void count_running(struct sched_request *r, int d)
{
        r->sched->n_running += d;
        r->tenant->n_running += d;
}

static void count_paused(struct sched_request *r, int d)
{
        r->tenant->n_paused += d;
}

/* Into the active list, with the KV it has reserved. */
static void activate(struct scheduler *s, struct sched_request *r)
{
        list_append(&s->active_head, &s->active_tail, r);
        s->n_active++;
        r->tenant->blocks += r->seq.n_blocks;
        r->pause = r->stream_held ? SCHED_PAUSE_STREAM : 0;
        if (r->pause)
                count_paused(r, 1);
        else
                count_running(r, 1);
}

static void deactivate(struct scheduler *s, struct sched_request *r)
{
        list_remove(&s->active_head, &s->active_tail, r);
        s->n_active--;
        r->tenant->blocks -= r->seq.n_blocks;
        if (r->pause)
                count_paused(r, -1);
        else
                count_running(r, -1);
        r->pause = 0;
}

static struct sched_tenant *tenant_get(struct scheduler *s, uint32_t uid)
{
        struct sched_tenant *t;

        for (t = s->tenants; t; t = t->next)
                if (t->uid == uid)
                        return t;
        t = calloc(1, sizeof(*t));
        if (!t)
                return NULL;
        t->uid = uid;
        t->next = s->tenants;
        s->tenants = t;
        return t;
}

static void tenant_put(struct scheduler *s, struct sched_tenant *t)
{
        if (--t->n_requests > 0)
                return;
        for (struct sched_tenant **p = &s->tenants; *p; p = &(*p)->next)
                if (*p == t) {
                        *p = t->next;
                        break;
                }
        free(t);
}

/* --- setup --- */

static int check_limits(const struct sched_limits *lim, int32_t max_batch, struct npu_err *err)
{
        int32_t nb = lim->max_batch_tokens;

        if (lim->max_active < 1 || nb < lim->max_active || nb > max_batch || lim->prefill_chunk < 1)
                return npu_err_set(err, -EINVAL,
                                   "batch limits out of range: max_active %d, max_batch_tokens %d (1 to %d, at "
                                   "least max_active), prefill_chunk %d",
                                   lim->max_active, nb, max_batch, lim->prefill_chunk);
        if (lim->max_queue < 0 || lim->max_active_per_uid < 0 || lim->kv_percent_per_uid < 1 ||
            lim->kv_percent_per_uid > 100)
                return npu_err_set(err, -EINVAL,
                                   "per-uid limits out of range: max_queue %d, max_active_per_uid %d (0 or more), "
                                   "kv_percent_per_uid %d (1 to 100)",
                                   lim->max_queue, lim->max_active_per_uid, lim->kv_percent_per_uid);
        return 0;
}

static int forward_model(struct scheduler *s, const struct npu_batch *b, float *logits, struct npu_err *err)
{
        return forward(s->rt->ctx, b, logits, err);
}

int scheduler_new(struct runtime *rt, const struct sched_limits *lim, const struct sched_events *ev,
                  struct scheduler **ret, struct npu_err *err)
{
        struct scheduler *s;
        int32_t nb = lim->max_batch_tokens;
        int r;

        r = check_limits(lim, rt->ctx->max_batch, err);
        if (r < 0)
                return r;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->rt = rt;
        s->lim = *lim;
        s->ev = *ev;
        s->forward = forward_model;
        s->b_tokens = calloc(nb, sizeof(int32_t));
        s->b_pos = calloc(nb, sizeof(int32_t));
        s->b_seqs = calloc(nb, sizeof(*s->b_seqs));
        s->b_want = calloc(nb, 1);
        s->b_req = calloc(nb, sizeof(*s->b_req));
        s->step_reqs = calloc(nb, sizeof(*s->step_reqs));
        s->b_order = calloc(nb, sizeof(*s->b_order));
        s->logits_rows = lim->max_active;
        s->logits = malloc(sizeof(float) * rt->model->hp.n_vocab * (size_t)s->logits_rows);
        r = prefix_cache_new(rt->kv, MAX(rt->kv->n_blocks, PREFIX_CACHE_MIN_ENTRIES), &s->pc);
        if (r < 0 || !s->b_tokens || !s->b_pos || !s->b_seqs || !s->b_want || !s->b_req || !s->step_reqs || !s->b_order ||
            !s->logits) {
                scheduler_free(s, SCHED_STOP_SHUTDOWN);
                return npu_err_set(err, -ENOMEM, "cannot allocate the scheduler");
        }
        *ret = s;
        return 0;
}

int scheduler_set_limits(struct scheduler *s, const struct sched_limits *lim, struct npu_err *err)
{
        int r;

        /* the step's buffers are sized for these: they stay */
        if (lim->max_batch_tokens != s->lim.max_batch_tokens || lim->max_active > s->logits_rows)
                return npu_err_set(err, -EINVAL,
                                   "max_batch_tokens (%d) and a max_active above %d change only with the model "
                                   "loaded again",
                                   s->lim.max_batch_tokens, s->logits_rows);
        r = check_limits(lim, s->rt->ctx->max_batch, err);
        if (r < 0)
                return r;
        s->lim = *lim;
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
        free(s->b_order);
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

int32_t sched_request_blocks(const struct scheduler *s, const struct sched_request *r)
{
        int32_t total = sched_positions_needed(s, r->n_tokens, r->max_tokens - r->n_generated);
        return DIV_ROUND_UP(total, s->rt->kv->block_size);
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

void sched_request_shrink(struct sched_request *r)
{
        if (r->state != SCHED_FINISHED)
                return;
        piece_queue_done(&r->out);
        free(r->tokens);
        r->tokens = NULL;
        r->cap_tokens = 0;
        /* its KV went back to the pool, or to its session */
        if (r->seq.n_blocks == 0) {
                free(r->seq.blocks);
                r->seq = (struct kv_seq) {};
        }
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
        need = DIV_ROUND_UP(sched_positions_needed(s, n, p->max_tokens), s->rt->kv->block_size);
        rr = fair_check_submit(s, uid, need, err);
        if (rr == -ENOSPC)
                npu_err_prefix(err, "the request cannot run");
        if (rr < 0)
                return rr;

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
        if (seq && seq->n_pos > n)
                return npu_err_set(err, -EINVAL, "the session's cache is longer than its history");
        r->tenant = tenant_get(s, uid);
        if (!r->tenant)
                return -ENOMEM;
        r->tenant->n_requests++;
        if (seq) {
                r->seq = *seq;
                *seq = (struct kv_seq) {};
        }
        r->uid = uid;
        r->owner = owner;
        r->t_submit = now_ns();
        enqueue(s, r);
        *ret = TAKE_PTR(r);
        return 0;
}

static void finish(struct sched_request *r, enum sched_stop stop, const char *error)
{
        struct scheduler *s = r->sched;

        if (r->state == SCHED_FINISHED)
                return;
        if (r->state == SCHED_QUEUED)
                dequeue(s, r);
        else
                deactivate(s, r);
        (void)text_stream_finish(&r->text, &r->out);
        text_stream_done(&r->text);
        /* n_vocab candidates: 1.5 MB with a 128k vocabulary, kept by no finished request */
        sampler_free(r->smp);
        r->smp = NULL;
        if (!r->keep_seq)
                kv_seq_release(s->rt->kv, &r->seq);
        r->state = SCHED_FINISHED;
        r->stop = stop;
        r->cancel = false;
        if (error && !r->error)
                r->error = strdup(error);
        r->t_done = now_ns();
        tenant_put(s, r->tenant);
        r->tenant = NULL;
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

/* --- admission, pauses and pre-emption (fairness.c decides which) --- */

bool sched_make_room(struct scheduler *s, const struct sched_request *for_r, int32_t need)
{
        struct kv_pool *kv = s->rt->kv;

        if (need > kv->n_free)
                prefix_cache_evict(s->pc, need - kv->n_free);
        if (need > kv->n_free && s->ev.reclaim) {
                s->ev.reclaim(s, need - kv->n_free, s->ev.userdata);
                prefix_cache_evict(s->pc, need - kv->n_free);
        }
        /* KV held by queued requests (a session turn's history): computed again when admitted */
        for (struct sched_request *r = s->queue_tail; r && need > kv->n_free; r = r->prev) {
                if (r == for_r || r->seq.n_blocks == 0)
                        continue;
                kv_seq_release(kv, &r->seq);
                prefix_cache_evict(s->pc, need - kv->n_free);
        }
        return need <= kv->n_free;
}

int sched_admit(struct scheduler *s, struct sched_request *r)
{
        struct kv_pool *kv = s->rt->kv;
        int32_t total = sched_positions_needed(s, r->n_tokens, r->max_tokens - r->n_generated);
        int32_t cached;
        bool attached = false;

        if (r->seq.n_blocks == 0) {
                /* leave the last token to compute: its logits give the next one */
                cached = prefix_cache_attach(s->pc, r->uid, r->tokens, r->n_tokens - 1, &r->seq);
                attached = cached > 0;
        } else {
                cached = r->seq.n_pos;
        }
        if (!sched_make_room(s, r, DIV_ROUND_UP(total, kv->block_size) - r->seq.n_blocks) ||
            kv_seq_reserve(kv, &r->seq, total) < 0) {
                if (attached)
                        kv_seq_release(kv, &r->seq);
                return -ENOSPC;
        }
        /* a session's KV may have been reserved for more than this turn needs */
        kv_seq_truncate(kv, &r->seq, total);
        dequeue(s, r);
        activate(s, r);
        r->state = SCHED_PREFILL;
        if (!r->admitted) {
                r->admitted = true;
                r->n_cached = cached;
                r->t_admit = now_ns();
                s->stats.prompt_tokens += r->n_tokens - cached;
                s->stats.cached_prompt_tokens += cached;
        } else {
                s->stats.recomputed_tokens += r->n_tokens - cached;
        }
        return 0;
}

void sched_pause(struct sched_request *r, enum sched_pause why)
{
        if (r->state != SCHED_PREFILL && r->state != SCHED_DECODE)
                return;
        if (!r->pause) {
                count_running(r, -1);
                count_paused(r, 1);
        }
        r->pause |= why;
}

void sched_resume(struct sched_request *r, enum sched_pause why)
{
        if (!(r->pause & why))
                return;
        r->pause &= ~why;
        if (!r->pause) {
                count_paused(r, -1);
                count_running(r, 1);
        }
}

void sched_preempt(struct sched_request *r)
{
        struct scheduler *s = r->sched;

        if ((r->state != SCHED_PREFILL && r->state != SCHED_DECODE) || r->step_tokens > 0)
                return;
        deactivate(s, r);
        kv_seq_release(s->rt->kv, &r->seq);
        r->n_preempted++;
        r->preempted_at = s->clock;
        s->stats.preemptions++;
        enqueue(s, r);
}

void sched_hold_stream(struct sched_request *r, bool hold)
{
        if (r->stream_held == hold || r->state == SCHED_FINISHED)
                return;
        r->stream_held = hold;
        if (r->state == SCHED_QUEUED)
                return;
        if (hold) {
                sched_pause(r, SCHED_PAUSE_STREAM);
        } else if (r->pause == SCHED_PAUSE_STREAM && !fair_may_run(r->sched, r)) {
                /* no slot for it now: it waits for one as any paused request */
                r->pause = SCHED_PAUSE_FAIR;
        } else {
                sched_resume(r, SCHED_PAUSE_STREAM);
        }
}

int32_t sched_tenant_blocks(const struct scheduler *s, const struct sched_tenant *t)
{
        return t->blocks;
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
        int32_t budget = s->lim.max_batch_tokens, n_order = 0;

        if (s->running)
                return false;
        s->clock++;
        fair_schedule(s);
        s->batch = (struct npu_batch) { .tokens = s->b_tokens, .pos = s->b_pos,
                                        .seqs = (struct kv_seq *const *)s->b_seqs, .want_logits = s->b_want };
        s->n_logit_rows = 0;
        s->n_step_reqs = 0;
        for (struct sched_request *r = s->active_head; r; r = r->next)
                if (r->state == SCHED_DECODE && !r->pause)
                        add_token(s, r, r->tokens[r->n_tokens - 1], r->n_tokens - 1, true);
        /* prefill chunks, round robin across uids */
        fair_prefill_order(s, s->b_order, &n_order);
        for (int32_t k = 0; k < n_order && s->batch.n < budget; k++) {
                struct sched_request *r = s->b_order[k];
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
        return s->forward(s, &s->batch, s->logits, err);
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
