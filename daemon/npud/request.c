/* SPDX-License-Identifier: MIT */
/* A request's life: made, submitted, streamed, finished, freed (see request.h). */
#include <inttypes.h>

#include "bus_errors.h"
#include "list.h"
#include "props.h"
#include "server.h"

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
        if (m->sched->n_queued >= srv->cfg.max_queue)
                return sd_bus_error_setf(error, NPUD_ERROR_BUSY, "%d requests are waiting already; try again later",
                                         m->sched->n_queued);
        rr = sched_submit(m->sched, tokens, n, p, r->session->uid, r->client, seq, &r->sr, &err);
        if (rr < 0)
                return map_submit_error(rr, &err, error);
        r->sr->userdata = r;
        r->sr->keep_seq = !session_is_single(r->session);
        client_set_prompt(r->client, r, n);
        r->keep_alive_us = p->keep_alive_us;
        keep_alive_used(m);
        /* the reply goes out before the first token: the step starts from the event loop */
        server_kick(srv);
        return 0;
}

void request_cancel(struct request *r, enum sched_stop stop)
{
        if (r->sr && !r->finished)
                sched_cancel(r->sr, stop);
}

static void request_destroy(struct request *r)
{
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

        if (!r->client || !r->sr || r->sr->out.n == 0)
                return;
        srv = request_model(r)->srv;
        if (!force && sd_bus_get_n_queued_write(srv->bus, &queued) >= 0 && queued > MAX_QUEUED_WRITES)
                return;
        if (bus_request_send_tokens(r) < 0)
                fprintf(stderr, "<4>npud: cannot send tokens of %s to %s\n", r->path, r->client->name);
        for (size_t i = 0; i < r->sr->out.n; i++)
                if (generated_add(&r->sent, (uint32_t)r->sr->out.v[i].id, r->sr->out.v[i].text) < 0)
                        r->sent_incomplete = true;
        r->n_sent += r->sr->out.n;
        piece_queue_clear(&r->sr->out);
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
}
