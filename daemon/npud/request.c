/* SPDX-License-Identifier: MIT */
/* A request's life: made, submitted, streamed, finished, freed (see request.h). */
#include <inttypes.h>

#include "bus_args.h"
#include "bus_errors.h"
#include "list.h"
#include "props.h"
#include "server.h"
#include "tokenize.h"

/* Tokens wait while this many messages are queued to the bus; then one signal carries them all. */
#define MAX_QUEUED_WRITES 256

struct served_model *request_model(const struct request *r)
{
        return r->session ? r->session->model : NULL;
}

int request_new(struct session *s, struct client *c, struct request **ret)
{
        struct server *srv = s->model->srv;
        struct request *r = calloc(1, sizeof(*r));

        if (!r)
                return -ENOMEM;
        r->id = server_next_id(srv);
        if (asprintf(&r->path, NPUD_REQUEST_PREFIX "/%" PRIu64, r->id) < 0) {
                free(r);
                return -ENOMEM;
        }
        r->session = s;
        r->client = c;
        LIST_APPEND(s->requests_head, s->requests_tail, r, prev, next);
        client_add_request(c, r);
        *ret = r;
        return 0;
}

static int map_submit_error(int r, const struct npu_err *err, sd_bus_error *error)
{
        switch (r) {
        case -EINVAL: return sd_bus_error_set(error, NPUD_ERROR_INVALID_ARGUMENT, err->msg);
        case -E2BIG: return sd_bus_error_set(error, NPUD_ERROR_PROMPT_TOO_LONG, err->msg);
        case -ENOSPC: return sd_bus_error_set(error, NPUD_ERROR_REQUEST_TOO_LARGE, err->msg);
        case -EBUSY: return sd_bus_error_set(error, NPUD_ERROR_BUSY, err->msg);
        default: return sd_bus_error_setf(error, NPUD_ERROR_FAILED, "cannot queue the request: %s", err->msg);
        }
}

int request_submit(struct request *r, const int32_t *tokens, int32_t n, const struct sched_params *p,
                   struct kv_seq *seq, sd_bus_error *error)
{
        struct served_model *m = request_model(r);
        struct server *srv = m->srv;
        struct npu_err err = {};
        int rr;

        if (srv->shutting_down)
                return sd_bus_error_set(error, NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
        /* a prompt that can never run is the caller's error, whatever its other requests are */
        if (n >= m->rt->n_ctx)
                return sd_bus_error_setf(error, NPUD_ERROR_PROMPT_TOO_LONG,
                                         "the prompt has %d tokens; the context holds %d (one is kept for the reply)",
                                         n, m->rt->n_ctx);
        rr = client_check_prompt(r->client, &srv->cfg, r, n, error);
        if (rr < 0)
                return rr;
        rr = sched_submit(m->sched, tokens, n, p, r->session->uid, r->client, seq, &r->sr, &err);
        if (rr < 0)
                return map_submit_error(rr, &err, error);
        r->sr->userdata = r;
        r->sr->keep_seq = !session_is_single(r->session);
        strv_free(r->stops);
        r->stops = NULL;
        r->params.stops = NULL;
        client_set_prompt(r->client, r, n);
        r->keep_alive_us = p->keep_alive_us;
        keep_alive_used(m);
        /* the reply goes out before the first token: the step starts from the event loop */
        server_kick(srv);
        return 0;
}

/* The turn's whole prompt (a session's history first), queued. */
static int queue_tokens(struct request *r, const int32_t *ids, int32_t n, sd_bus_error *error)
{
        struct session *s = r->session;
        struct served_model *m = s->model;
        _cleanup_free_ int32_t *all = NULL;
        int32_t n_all;
        int rr;

        if (session_is_single(s))
                return request_submit(r, ids, n, &r->params, NULL, error);
        if (!s->chat && (int64_t)s->n_history + n >= m->rt->n_ctx)
                return sd_bus_error_setf(error, NPUD_ERROR_PROMPT_TOO_LONG,
                                         "the history (%d tokens) and this prompt (%d) do not fit the context (%d)",
                                         s->n_history, n, m->rt->n_ctx);
        rr = session_turn_prompt(s, ids, n, &all, &n_all);
        if (rr < 0)
                return rr;
        return request_submit(r, all, n_all, &r->params, &s->seq, error);
}

static void reply_queued(struct request *r, const sd_bus_error *error)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = TAKE_PTR(r->call);

        if (sd_bus_error_is_set(error))
                (void)sd_bus_reply_method_error(call, error);
        else
                (void)sd_bus_reply_method_return(call, "o", r->path);
}

static void on_tokenized(struct tokenize_job *job, void *userdata)
{
        struct request *r = userdata;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        struct client *c = r->client;
        int rr = job->r;

        r->tokenizing = NULL;
        if (rr == -ECANCELED)
                sd_bus_error_set(&error, NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
        else if (rr < 0)
                sd_bus_error_setf(&error, NPUD_ERROR_FAILED, "cannot tokenize the prompt: %s", strerror(-rr));
        else if (job->n > INT32_MAX)
                sd_bus_error_set(&error, NPUD_ERROR_PROMPT_TOO_LONG, "the prompt has too many tokens");
        else if ((rr = queue_tokens(r, job->ids, (int32_t)job->n, &error)) < 0 && !sd_bus_error_is_set(&error))
                sd_bus_error_set_errno(&error, rr);
        reply_queued(r, &error);
        if (sd_bus_error_is_set(&error)) {
                session_drop_request(r->session, r);
                client_maybe_forget(c);
        }
}

int request_start(struct request *r, sd_bus_message *call, const struct prompt_arg *pa, bool add_bos,
                  const struct sched_params *p, sd_bus_error *error)
{
        struct session *s = r->session;
        struct served_model *m = s->model;
        int32_t room = m->rt->n_ctx - (session_is_single(s) ? 0 : s->n_history);
        int rr;

        r->params = *p;
        r->stops = strv_copy(p->stops);
        if (p->stops && !r->stops)
                return -ENOMEM;
        r->params.stops = r->stops;
        if (pa->ids) {
                if (pa->n_ids > INT32_MAX)
                        return sd_bus_error_set(error, NPUD_ERROR_PROMPT_TOO_LONG, "the prompt has too many tokens");
                rr = queue_tokens(r, pa->ids, (int32_t)pa->n_ids, error);
                if (rr < 0)
                        return rr;
                return sd_bus_reply_method_return(call, "o", r->path) < 0 ? -EIO : 1;
        }
        /* refused before any work when its bytes alone cannot fit the tokens left */
        if (pa->len > prompt_max_bytes(m, room))
                return sd_bus_error_setf(error, NPUD_ERROR_PROMPT_TOO_LONG,
                                         "the prompt has %zu bytes; %d tokens of this model (the room left in the "
                                         "context) hold at most %zu",
                                         pa->len, room, prompt_max_bytes(m, room));
        rr = tokenize_async(m, pa->text, pa->len, add_bos, on_tokenized, r, &r->tokenizing);
        if (rr < 0)
                return rr;
        r->call = sd_bus_message_ref(call);
        return 1;
}

int request_start_chat(struct request *r, sd_bus_message *call, const struct chat_prompt *chat, bool add_bos,
                       const struct sched_params *p, sd_bus_error *error)
{
        struct served_model *m = r->session->model;
        int rr;

        r->params = *p;
        r->stops = strv_copy(p->stops);
        if (p->stops && !r->stops)
                return -ENOMEM;
        r->params.stops = r->stops;
        if (chat->len > prompt_max_bytes(m, m->rt->n_ctx))
                return sd_bus_error_setf(error, NPUD_ERROR_PROMPT_TOO_LONG,
                                         "the chat has %zu bytes; %d tokens of this model (its context) hold at most "
                                         "%zu",
                                         chat->len, m->rt->n_ctx, prompt_max_bytes(m, m->rt->n_ctx));
        rr = tokenize_chat_async(m, chat, add_bos, on_tokenized, r, &r->tokenizing);
        if (rr < 0)
                return rr;
        r->call = sd_bus_message_ref(call);
        return 1;
}

void request_cancel(struct request *r, enum sched_stop stop)
{
        if (r->sr && !r->finished)
                sched_cancel(r->sr, stop);
}

static void request_destroy(struct request *r)
{
        if (r->call) {
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
                sd_bus_error_set(&error, NPUD_ERROR_CANCELLED, "the request was closed before it was queued");
                reply_queued(r, &error);
        }
        tokenize_detach(r->tokenizing);
        strv_free(r->stops);
        generated_done(&r->sent);
        prop_snapshot_free(r->published);
        sched_request_free(r->sr);
        free(r->path);
        free(r);
}

void request_free(struct request *r)
{
        if (!r)
                return;
        if (r->client) {
                client_remove_request(r->client, r);
                r->client = NULL;
        }
        r->dropped = true;
        if (r->sr && r->sr->state != SCHED_FINISHED) {
                /* may finish it at once: request_on_finished then leaves it to us */
                r->freeing = true;
                sched_cancel(r->sr, SCHED_STOP_CANCELLED);
                r->freeing = false;
                if (r->sr->state != SCHED_FINISHED)
                        return; /* in the running step: freed when it ends */
        }
        request_destroy(r);
}

/* --- streaming --- */

void request_flush(struct request *r, bool force)
{
        struct server *srv;
        uint64_t queued = 0;
        size_t n;

        if (!r->client || !r->sr || r->sr->out.n == 0)
                return;
        srv = request_model(r)->srv;
        if (!force && sd_bus_get_n_queued_write(srv->bus, &queued) >= 0 && queued > MAX_QUEUED_WRITES)
                return;
        /* a connection that does not read what it was sent: its request waits, keeping its KV */
        n = r->sr->out.n;
        if (!force && !client_may_send(r->client, n)) {
                sched_hold_stream(r->sr, true);
                return;
        }
        if (bus_request_send_tokens(r) < 0)
                fprintf(stderr, "<4>npud: cannot send tokens of %s to %s\n", r->path, r->client->name);
        for (size_t i = 0; i < r->sr->out.n; i++)
                if (generated_add(&r->sent, (uint32_t)r->sr->out.v[i].id, r->sr->out.v[i].text) < 0)
                        r->sent_incomplete = true;
        r->n_sent += r->sr->out.n;
        piece_queue_clear(&r->sr->out);
        client_sent(r->client, n);
}

void request_on_tokens(struct request *r)
{
        request_flush(r, false);
}

void request_on_finished(struct request *r)
{
        struct client *c = r->client;

        if (r->dropped) {
                if (!r->freeing)
                        request_destroy(r);
                return;
        }
        r->finished = true;
        r->stop = r->sr->stop;
        client_request_finished(c, r);
        request_flush(r, true);
        if (bus_request_send_finished(r) < 0)
                fprintf(stderr, "<4>npud: cannot send the end of %s to %s\n", r->path, c->name);
        /* what stays for its properties: the counters (a session took its tokens already) */
        sched_request_shrink(r->sr);
}
