/* SPDX-License-Identifier: MIT */
/* Per-uid fairness: who runs, who waits, who gives way (see fairness.h). */
#include "fairness.h"

/* --- shares and caps --- */

static int32_t kv_cap(const struct scheduler *s)
{
        int64_t cap = (int64_t)s->rt->kv->n_blocks * s->lim.kv_percent_per_uid / 100;
        return (int32_t)MAX(cap, 1);
}

static int32_t active_cap(const struct scheduler *s)
{
        return s->lim.max_active_per_uid > 0 ? MIN(s->lim.max_active_per_uid, s->lim.max_active) : s->lim.max_active;
}

static int32_t count_tenants(const struct scheduler *s)
{
        int32_t n = 0;

        for (const struct sched_tenant *t = s->tenants; t; t = t->next)
                n++;
        return n;
}

/* Each uid with requests may hold this much of the pool while others wait. */
static int32_t kv_share(const struct scheduler *s)
{
        return s->rt->kv->n_blocks / MAX(count_tenants(s), 1);
}

static const struct sched_tenant *find_tenant(const struct scheduler *s, uint32_t uid)
{
        for (const struct sched_tenant *t = s->tenants; t; t = t->next)
                if (t->uid == uid)
                        return t;
        return NULL;
}

int fair_check_submit(const struct scheduler *s, uint32_t uid, int32_t need, struct npu_err *err)
{
        const struct kv_pool *kv = s->rt->kv;
        const struct sched_tenant *t = find_tenant(s, uid);
        int32_t mine = t ? t->n_queued : 0, waiting = 0;

        if (need > kv->n_blocks)
                return npu_err_set(err, -ENOSPC,
                                   "it needs %d KV blocks of %d tokens (the prompt and max_tokens) and the whole "
                                   "pool has %d: lower max_tokens or shorten the prompt (or raise kv_budget_mb)",
                                   need, kv->block_size, kv->n_blocks);
        if (need > kv_cap(s))
                return npu_err_set(err, -ENOSPC,
                                   "it needs %d KV blocks of %d tokens (the prompt and max_tokens) and one uid may "
                                   "hold %d (kv_percent_per_uid %d): lower max_tokens or shorten the prompt",
                                   need, kv->block_size, kv_cap(s), s->lim.kv_percent_per_uid);
        if (s->lim.max_queue <= 0 || s->n_queued < s->lim.max_queue)
                return 0;
        /* a full queue refuses only a uid that holds its share of it */
        for (const struct sched_tenant *o = s->tenants; o; o = o->next)
                waiting += o->n_queued > 0;
        waiting += mine == 0;
        if (mine >= MAX(s->lim.max_queue / waiting, 1))
                return npu_err_set(err, -EBUSY,
                                   "%d requests are waiting, %d of them this uid's (its share of max_queue %d); try "
                                   "again later",
                                   s->n_queued, mine, s->lim.max_queue);
        return 0;
}

bool fair_may_run(const struct scheduler *s, const struct sched_request *r)
{
        return s->n_running < s->lim.max_active && r->tenant->n_running < active_cap(s);
}

/* --- candidates --- */

/* May r be given a slot now (it waits: queued, or paused for fairness only)? */
static bool waiting(const struct scheduler *s, const struct sched_request *r)
{
        if (r->stream_held)
                return false;
        if (r->state == SCHED_QUEUED)
                return r->preempted_at != s->clock; /* not pre-empted in this very round */
        return r->pause == SCHED_PAUSE_FAIR;
}

static int32_t owner_running(const struct scheduler *s, const struct sched_request *q)
{
        int32_t n = 0;

        for (const struct sched_request *r = s->active_head; r; r = r->next)
                n += r->tenant == q->tenant && r->owner == q->owner && !r->pause;
        return n;
}

/* Would r's uid, with r, stay within its share of the pool? */
static bool within_share(const struct scheduler *s, const struct sched_request *r)
{
        return sched_tenant_blocks(s, r->tenant) + sched_request_blocks(s, r) <= kv_share(s);
}

/*
 * Orders two candidates: the uid running fewer first, then the one that
 * stays within its share of the pool, then the one served longer ago;
 * within a uid, the connection running fewer, then the one within the
 * share, paused ones (which hold their KV) before queued ones, then the
 * oldest.
 */
static bool better(const struct scheduler *s, const struct sched_request *a, const struct sched_request *b)
{
        if (a->tenant != b->tenant) {
                if (a->tenant->n_running != b->tenant->n_running)
                        return a->tenant->n_running < b->tenant->n_running;
                /* one that keeps its uid within its share of the pool before one that takes more */
                if (within_share(s, a) != within_share(s, b))
                        return within_share(s, a);
                return a->tenant->last_turn < b->tenant->last_turn;
        }
        int32_t oa = owner_running(s, a), ob = owner_running(s, b);
        if (oa != ob)
                return oa < ob;
        if (within_share(s, a) != within_share(s, b))
                return within_share(s, a);
        if ((a->state == SCHED_QUEUED) != (b->state == SCHED_QUEUED))
                return a->state != SCHED_QUEUED;
        return a->t_submit < b->t_submit;
}

struct round {
        bool line_held; /* a queued request waits for KV: nobody else is admitted */
};

/* Past its own uid's KV cap this round: the others go on. */
static bool skipped(const struct scheduler *s, const struct sched_request *r)
{
        return r->capped_at == s->clock;
}

/* A uid with nothing admitted, asking for no more than its share of the pool: it may pass a held line. */
static bool new_within_share(const struct scheduler *s, const struct sched_request *r)
{
        return r->tenant->n_running == 0 && r->tenant->n_paused == 0 && sched_request_blocks(s, r) <= kv_share(s);
}

static struct sched_request *pick(const struct scheduler *s, const struct round *rd)
{
        struct sched_request *best = NULL;

        for (int list = 0; list < 2; list++)
                for (struct sched_request *r = list ? s->queue_head : s->active_head; r; r = r->next) {
                        if (!waiting(s, r) || skipped(s, r) || r->tenant->n_running >= active_cap(s))
                                continue;
                        if (r->state == SCHED_QUEUED && rd->line_held && !new_within_share(s, r))
                                continue;
                        if (!best || better(s, r, best))
                                best = r;
                }
        return best;
}

/* The uids that want slots: running, or with a request waiting for one. */
static int32_t slot_users(const struct scheduler *s)
{
        int32_t n = 0;

        for (const struct sched_tenant *t = s->tenants; t; t = t->next) {
                bool wants = t->n_running > 0;
                for (const struct sched_request *r = s->queue_head; r && !wants; r = r->next)
                        wants = r->tenant == t && !r->stream_held;
                for (const struct sched_request *r = s->active_head; r && !wants; r = r->next)
                        wants = r->tenant == t && r->pause == SCHED_PAUSE_FAIR;
                n += wants;
        }
        return n;
}

static struct sched_request *newest_running(const struct scheduler *s, const struct sched_tenant *t)
{
        for (struct sched_request *r = s->active_tail; r; r = r->prev)
                if (r->tenant == t && !r->pause && r->step_tokens == 0)
                        return r;
        return NULL;
}

/*
 * Every slot is taken: the uid running the most gives one up (its newest
 * request is paused, keeping its KV) if it runs more than its share of the
 * slots and at least two more than c's uid. False when no slot can be had
 * for c.
 */
static bool free_slot_for(struct scheduler *s, const struct sched_request *c)
{
        int32_t share = MAX(s->lim.max_active / MAX(slot_users(s), 1), 1);
        struct sched_tenant *victim = NULL;
        struct sched_request *r;

        for (struct sched_tenant *t = s->tenants; t; t = t->next)
                if (t != c->tenant && t->n_running > share && t->n_running >= c->tenant->n_running + 2 &&
                    (!victim || t->n_running > victim->n_running))
                        victim = t;
        r = victim ? newest_running(s, victim) : NULL;
        if (!r)
                return false;
        sched_pause(r, SCHED_PAUSE_FAIR);
        return true;
}

/* --- pre-emption --- */

/*
 * The request to pre-empt next for c, or NULL. First what is idle anyway (a
 * request held back for its slow consumer), then, if c's uid with c stays
 * within its share of the pool, what uids holding more than their share
 * run, newest first, from the uid holding the most. So the pool moves only
 * towards even shares, and a uid within its share is never pre-empted for
 * another's request.
 */
static struct sched_request *victim_for(const struct scheduler *s, const struct sched_request *c)
{
        int32_t share = kv_share(s);
        bool within = within_share(s, c);
        struct sched_request *best = NULL;
        int32_t best_rank = 0, best_blocks = 0;

        for (struct sched_request *r = s->active_tail; r; r = r->prev) {
                int32_t rank, blocks;
                if (r->step_tokens > 0 || r->seq.n_blocks == 0)
                        continue;
                blocks = sched_tenant_blocks(s, r->tenant);
                if (r->stream_held)
                        rank = 2;
                else if (within && r->tenant != c->tenant && blocks > share)
                        rank = 1;
                else
                        continue;
                /* the walk goes from the newest: an older one wins only with a higher rank or a bigger uid */
                if (!best || rank > best_rank || (rank == best_rank && blocks > best_blocks)) {
                        best = r;
                        best_rank = rank;
                        best_blocks = blocks;
                }
        }
        return best;
}

/* Pre-empts for c until it is admitted; false when it still does not fit. */
static bool admit_preempting(struct scheduler *s, struct sched_request *c)
{
        for (int32_t guard = s->n_active + 1; guard > 0; guard--) {
                struct sched_request *v;
                if (sched_admit(s, c) == 0)
                        return true;
                v = victim_for(s, c);
                if (!v)
                        return false;
                /* its uid's other requests may fit its cap again: they are looked at again this round */
                for (struct sched_request *r = s->queue_head; r; r = r->next)
                        if (r->tenant == v->tenant)
                                r->capped_at = 0;
                sched_preempt(v);
        }
        return false;
}

/* Would c's uid, holding what it holds, pass its own cap of the pool with c? */
static bool over_own_cap(const struct scheduler *s, const struct sched_request *c)
{
        return sched_tenant_blocks(s, c->tenant) + sched_request_blocks(s, c) > kv_cap(s);
}

void fair_schedule(struct scheduler *s)
{
        struct round rd = {};

        /* each turn admits, resumes or sets aside one request; pre-emptions may bring a few back */
        for (int32_t guard = 2 * (s->n_queued + s->n_active) + 1; guard > 0; guard--) {
                struct sched_request *c = pick(s, &rd);
                if (!c)
                        break;
                if (s->n_running >= s->lim.max_active && !free_slot_for(s, c))
                        break;
                if (c->state != SCHED_QUEUED) {
                        sched_resume(c, SCHED_PAUSE_FAIR);
                } else if (over_own_cap(s, c) || !admit_preempting(s, c)) {
                        /* its uid's own cap holds it back: the rest go on; no room in the pool: it holds the line */
                        if (over_own_cap(s, c))
                                c->capped_at = s->clock;
                        else
                                rd.line_held = true;
                        continue;
                }
                c->tenant->last_turn = ++s->turns;
        }
}

/* --- prefill order --- */

void fair_prefill_order(const struct scheduler *s, struct sched_request **order, int32_t *n_order)
{
        int32_t n = 0, n_tenants = count_tenants(s);
        const struct sched_tenant *start = s->tenants;

        /* the uids in turn, from one that moves on every step */
        for (uint64_t i = n_tenants ? s->clock % (uint64_t)n_tenants : 0; i > 0; i--)
                start = start->next;
        /* round k: each uid's k-th request in prefill */
        for (int32_t k = 0;; k++) {
                int32_t added = 0;
                const struct sched_tenant *t = start;
                for (int32_t j = 0; j < n_tenants; j++, t = t->next ? t->next : s->tenants) {
                        int32_t seen = 0;
                        for (struct sched_request *r = s->active_head; r; r = r->next)
                                if (r->tenant == t && r->state == SCHED_PREFILL && !r->pause && seen++ == k) {
                                        order[n++] = r;
                                        added++;
                                        break;
                                }
                }
                if (!added)
                        break;
        }
        *n_order = n;
}
