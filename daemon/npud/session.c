/* SPDX-License-Identifier: MIT */
/* Sessions: conversations and Generate's single turns, with their requests (see session.h). */
#include <inttypes.h>

#include "bus_args.h"
#include "bus_errors.h"
#include "list.h"
#include "props.h"
#include "server.h"
#include "session_chat.h"
#include "tokenize.h"

static int session_alloc(struct served_model *m, struct client *c, struct session **ret)
{
        struct session *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        s->model = m;
        s->client = c;
        s->uid = c->uid;
        s->last_used = now_ns();
        *ret = s;
        return 0;
}

static void reply_started(struct session *s, const sd_bus_error *error);

static void session_destroy(struct session *s)
{
        if (s->call) {
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
                sd_bus_error_set(&error, NPUD_ERROR_CANCELLED, "the session was closed before it was made");
                reply_started(s, &error);
        }
        tokenize_detach(s->tokenizing);
        session_chat_free(s->chat);
        kv_seq_release(s->model->rt->kv, &s->seq);
        strv_free(s->default_stops);
        prop_snapshot_free(s->published);
        free(s->history);
        free(s->path);
        free(s);
}

int session_new(struct served_model *m, struct client *c, const struct sched_params *defaults, char **stops,
                struct session **ret)
{
        struct session *s;
        int r;

        r = session_alloc(m, c, &s);
        if (r < 0) {
                strv_free(stops);
                return r;
        }
        s->defaults = *defaults;
        s->default_stops = stops; /* taken */
        s->defaults.stops = stops;
        s->id = server_next_id(m->srv);
        if (asprintf(&s->path, NPUD_SESSION_PREFIX "/%" PRIu64, s->id) < 0) {
                s->path = NULL;
                session_destroy(s);
                return -ENOMEM;
        }
        model_add_session(m, s);
        client_add_session(c, s);
        *ret = s;
        return 0;
}

static void reply_started(struct session *s, const sd_bus_error *error)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = TAKE_PTR(s->call);

        if (sd_bus_error_is_set(error))
                (void)sd_bus_reply_method_error(call, error);
        else
                (void)sd_bus_reply_method_return(call, "o", s->path);
}

static void on_system_tokenized(struct tokenize_job *job, void *userdata)
{
        struct session *s = userdata;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        struct client *c = s->client;

        s->tokenizing = NULL;
        if (job->r == -ECANCELED)
                sd_bus_error_set(&error, NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
        else if (job->r < 0)
                sd_bus_error_setf(&error, NPUD_ERROR_FAILED, "cannot tokenize the system prompt: %s",
                                  strerror(-job->r));
        else if (job->n >= (size_t)s->model->rt->n_ctx)
                sd_bus_error_setf(&error, NPUD_ERROR_PROMPT_TOO_LONG,
                                  "the system prompt has %zu tokens; the context holds %d", job->n,
                                  s->model->rt->n_ctx);
        else {
                s->history = TAKE_PTR(job->ids);
                s->n_history = s->n_system = (int32_t)job->n;
        }
        reply_started(s, &error);
        if (sd_bus_error_is_set(&error)) {
                session_close(s);
                client_maybe_forget(c);
        }
}

int session_start(struct session *s, sd_bus_message *call, const char *system_prompt, sd_bus_error *error)
{
        size_t len = system_prompt ? strlen(system_prompt) : 0;
        int r;

        if (len == 0)
                return sd_bus_reply_method_return(call, "o", s->path) < 0 ? -EIO : 1;
        if (len > prompt_max_bytes(s->model, s->model->rt->n_ctx))
                return sd_bus_error_setf(error, NPUD_ERROR_PROMPT_TOO_LONG,
                                         "the system prompt has %zu bytes; the context of %d tokens holds at most "
                                         "%zu",
                                         len, s->model->rt->n_ctx, prompt_max_bytes(s->model, s->model->rt->n_ctx));
        r = tokenize_async(s->model, system_prompt, len, true, on_system_tokenized, s, &s->tokenizing);
        if (r < 0)
                return r;
        s->call = sd_bus_message_ref(call);
        return 1;
}

int session_new_single(struct served_model *m, struct client *c, struct session **ret)
{
        struct session *s;
        int r;

        r = session_alloc(m, c, &s);
        if (r < 0)
                return r;
        model_add_session(m, s);
        *ret = s;
        return 0;
}

bool session_is_single(const struct session *s)
{
        return !s->path;
}

/* --- turns --- */

int session_start_turn(struct session *s, struct request **ret, sd_bus_error *error)
{
        int r;

        if (s->turn)
                return sd_bus_error_set(error, NPUD_ERROR_BUSY, "the session's previous turn is still running");
        r = request_new(s, s->client, &s->turn);
        if (r < 0)
                return r;
        *ret = s->turn;
        return 0;
}

/*
 * Keep the first n positions of a session's cache. The block they end in is
 * written again by the next turn: when the prefix cache shares it, the
 * session takes a copy (or, with no block to copy into, starts over).
 */
static void keep_prefix(struct kv_pool *kv, struct kv_seq *seq, int32_t n)
{
        int32_t b = n / kv->block_size;

        if (n % kv->block_size && kv->refcount[seq->blocks[b]] > 1) {
                struct kv_seq fresh = {};
                int r = kv_seq_fork(kv, &fresh, seq, n);
                kv_seq_release(kv, seq);
                if (r >= 0)
                        *seq = fresh;
                return;
        }
        kv_seq_truncate(kv, seq, n);
}

/* A chat turn: the rendered conversation, over the cached positions it shares (at least its last token computed). */
static int chat_turn_prompt(struct session *s, const int32_t *tokens, int32_t n, int32_t **ret, int32_t *ret_n)
{
        int32_t keep = 0, *all = malloc(sizeof(int32_t) * (size_t)MAX(n, 1));

        if (!all)
                return -ENOMEM;
        memcpy(all, tokens, sizeof(int32_t) * n);
        while (keep < s->seq.n_pos && keep < s->n_history && keep < n - 1 && s->history[keep] == tokens[keep])
                keep++;
        if (keep < s->seq.n_pos)
                keep_prefix(s->model->rt->kv, &s->seq, keep);
        *ret = all;
        *ret_n = n;
        s->evicted = false;
        return 0;
}

int session_turn_prompt(struct session *s, const int32_t *tokens, int32_t n, int32_t **ret, int32_t *ret_n)
{
        if (s->chat)
                return chat_turn_prompt(s, tokens, n, ret, ret_n);
        int32_t *all = malloc(sizeof(int32_t) * ((size_t)s->n_history + n));

        if (!all)
                return -ENOMEM;
        if (s->n_history > 0)
                memcpy(all, s->history, sizeof(int32_t) * s->n_history);
        memcpy(all + s->n_history, tokens, sizeof(int32_t) * n);
        *ret = all;
        *ret_n = s->n_history + n;
        s->evicted = false;
        return 0;
}

void session_turn_finished(struct session *s, struct request *r)
{
        struct sched_request *sr = r->sr;
        int32_t *h;

        s->turn = NULL;
        if (session_is_single(s))
                return;
        kv_seq_release(s->model->rt->kv, &s->seq);
        s->seq = sr->seq;
        sr->seq = (struct kv_seq) {};
        h = realloc(s->history, sizeof(int32_t) * sr->n_tokens);
        if (h) {
                memcpy(h, sr->tokens, sizeof(int32_t) * sr->n_tokens);
                s->history = h;
                s->n_history = sr->n_tokens;
        }
        if (s->chat) {
                /* the reply, as its client received it, is the assistant's message of the next turns */
                _cleanup_free_ char *reply = NULL;
                if (session_chat_reply_text(s->model->rt->model->vocab, sr, &reply) >= 0)
                        (void)session_chat_finish_turn(s->chat, reply, strlen(reply));
        }
        s->turns++;
        s->last_used = now_ns();
}

void session_reset(struct session *s)
{
        kv_seq_release(s->model->rt->kv, &s->seq);
        s->n_history = s->n_system;
        if (s->chat) {
                session_chat_reset(s->chat);
                s->n_history = 0;
        }
        s->turns = 0;
        s->evicted = false;
}

/* --- closing --- */

/* Unlinks r and frees it (a running turn is cancelled and gives up the session's KV with it). */
static void unlink_request(struct session *s, struct request *r)
{
        LIST_REMOVE(s->requests_head, s->requests_tail, r, prev, next);
        if (s->turn == r) {
                s->turn = NULL;
                if (r->sr)
                        r->sr->keep_seq = false;
        }
        r->session = NULL;
        request_free(r);
}

static void session_free(struct session *s)
{
        model_remove_session(s->model, s);
        session_destroy(s);
}

void session_drop_request(struct session *s, struct request *r)
{
        unlink_request(s, r);
        if (session_is_single(s) && !s->requests_head)
                session_free(s);
}

void session_close(struct session *s)
{
        if (s->client && !session_is_single(s))
                client_remove_session(s->client, s);
        s->client = NULL;
        while (s->requests_head)
                unlink_request(s, s->requests_head);
        session_free(s);
}

void sessions_trim_finished(struct client *c, int32_t keep)
{
        while (c->n_finished > keep) {
                struct request *old = client_oldest_finished(c);
                if (!old)
                        break;
                session_drop_request(old->session, old);
        }
}

int32_t sessions_reclaim(struct served_model *m, int32_t n)
{
        struct kv_pool *kv = m->rt->kv;
        int32_t freed = 0;

        while (freed < n) {
                struct session *lru = NULL;
                for (struct session *s = m->sessions_head; s; s = s->next)
                        if (!s->turn && s->seq.n_blocks > 0 && (!lru || s->last_used < lru->last_used))
                                lru = s;
                if (!lru)
                        break;
                int32_t before = kv->n_free;
                kv_seq_release(kv, &lru->seq);
                lru->evicted = true;
                freed += kv->n_free - before;
        }
        return freed;
}
