/* SPDX-License-Identifier: MIT */
/* What a caller may count (see stats.h). */
#include "server.h"
#include "stats.h"

int stats_view_of(struct server *srv, sd_bus_message *m, struct stats_view *ret)
{
        uid_t uid;
        int r;

        r = bus_message_uid(m, &uid);
        if (r < 0)
                return r;
        *ret = (struct stats_view) { .all = uid == 0 || uid == srv->uid, .uid = uid };
        return 0;
}

static bool sees(const struct stats_view *v, uid_t uid)
{
        return v->all || v->uid == uid;
}

/* Blocks held by the view's sessions and requests (a block shared by two counts twice). */
static uint64_t blocks_held(const struct served_model *m, const struct stats_view *v)
{
        uint64_t n = 0;

        if (v->all)
                return (uint64_t)sched_kv_blocks_used(m->sched);
        for (const struct session *s = m->sessions_head; s; s = s->next) {
                if (!sees(v, s->uid))
                        continue;
                n += (uint64_t)s->seq.n_blocks;
                for (const struct request *r = s->requests_head; r; r = r->next)
                        if (r->sr)
                                n += (uint64_t)r->sr->seq.n_blocks;
        }
        return n;
}

static void count_requests(const struct served_model *m, const struct stats_view *v, struct npud_stats *st)
{
        if (v->all) {
                st->active += (uint32_t)m->sched->n_active;
                st->queued += (uint32_t)m->sched->n_queued;
        }
        for (const struct session *s = m->sessions_head; s; s = s->next) {
                if (!sees(v, s->uid))
                        continue;
                st->sessions += !session_is_single(s);
                if (v->all)
                        continue;
                for (const struct request *r = s->requests_head; r; r = r->next) {
                        if (!r->sr || r->finished)
                                continue;
                        if (r->sr->state == SCHED_QUEUED)
                                st->queued++;
                        else
                                st->active++;
                        /* finished requests are in the user's counters; these count as they go */
                        st->generated_tokens += (uint64_t)r->sr->n_generated;
                }
        }
}

void stats_collect(struct server *srv, const struct stats_view *v, struct npud_stats *ret)
{
        struct npud_stats st = {};

        for (const struct served_model *m = srv->models; m; m = m->next) {
                const struct kv_pool *kv = m->rt->kv;
                uint64_t used = blocks_held(m, v);
                st.kv_blocks_total += (uint64_t)kv->n_blocks;
                st.kv_bytes_total += (uint64_t)kv->n_blocks * kv->block_bytes;
                st.kv_block_tokens = (uint32_t)kv->block_size;
                st.kv_blocks_used += used;
                st.kv_bytes_used += used * kv->block_bytes;
                st.kv_blocks_cached += (uint64_t)(v->all ? prefix_cache_idle_blocks(m->sched->pc)
                                                          : prefix_cache_idle_blocks_of(m->sched->pc, v->uid));
                count_requests(m, v, &st);
                if (v->all) {
                        /* the scheduler's own counters, which grow step by step */
                        st.steps += m->sched->stats.steps;
                        st.preemptions += m->sched->stats.preemptions;
                        st.recomputed_tokens += m->sched->stats.recomputed_tokens;
                        st.prompt_tokens += m->sched->stats.prompt_tokens;
                        st.cached_prompt_tokens += m->sched->stats.cached_prompt_tokens;
                        st.generated_tokens += m->sched->stats.generated_tokens;
                }
        }
        for (const struct client *c = srv->clients; c; c = c->next)
                st.clients += sees(v, c->uid);
        for (const struct user *u = srv->users; u && !v->all; u = u->next)
                if (u->uid == v->uid) {
                        st.prompt_tokens += u->prompt_tokens;
                        st.cached_prompt_tokens += u->cached_prompt_tokens;
                        st.generated_tokens += u->generated_tokens;
                }
        if (v->all)
                st.tokens_per_s = server_tokens_per_s(srv);
        *ret = st;
}

uint32_t stats_model_users(const struct served_model *m, const struct stats_view *v)
{
        uint32_t n = 0;

        for (const struct session *s = m->sessions_head; s; s = s->next) {
                if (!sees(v, s->uid))
                        continue;
                n += !session_is_single(s);
                for (const struct request *r = s->requests_head; r; r = r->next)
                        n += !r->finished;
        }
        return n;
}
