/* SPDX-License-Identifier: MIT */
/*
 * Request objects (/org/npud/Inference1/request/N): a generation, its token
 * stream (unicast signals to the owner) and its end.
 */
#include <inttypes.h>

#include "bus_errors.h"
#include "server.h"

/* Tokens wait while this many messages are queued to the bus; then one signal carries them all. */
#define MAX_QUEUED_WRITES 256

static void list_remove(struct server *srv, struct bus_request *br)
{
        if (br->prev)
                br->prev->next = br->next;
        else
                srv->requests_head = br->next;
        if (br->next)
                br->next->prev = br->prev;
        else
                srv->requests_tail = br->prev;
        br->prev = br->next = NULL;
}

/* Detaches a request from its client, whose counters no longer include it. */
static void disown(struct bus_request *br, bool forget_client)
{
        struct client *c = br->owner;

        if (!c)
                return;
        if (br->finished) {
                c->n_finished--;
        } else {
                c->n_running--;
                c->n_prompt_tokens -= br->n_prompt;
        }
        br->owner = NULL;
        if (forget_client)
                client_maybe_forget(br->srv, c);
}

static void free_now(struct bus_request *br)
{
        list_remove(br->srv, br);
        sched_request_free(br->sr);
        free(br->path);
        free(br);
}

/* Removes the object; a running request is cancelled and freed when the scheduler lets go of it. */
void request_free(struct bus_request *br)
{
        if (!br)
                return;
        disown(br, true);
        if (br->sr && br->sr->state != SCHED_FINISHED) {
                sched_cancel(br->sr, SCHED_STOP_CANCELLED);
                return; /* on_sched_finished frees it, now or after the running step */
        }
        free_now(br);
}

static int check_owner(sd_bus_message *m, struct bus_request *br, sd_bus_error *error)
{
        const char *sender = sd_bus_message_get_sender(m);

        if (!br->owner || !sender || strcmp(sender, br->owner->name) != 0)
                return sd_bus_error_set(error, NPUD_ERROR_ACCESS_DENIED, "the request belongs to another client");
        return 0;
}

/* --- finding objects --- */

static struct bus_request *request_by_path(struct server *srv, const char *path)
{
        const char *p = path + strlen(NPUD_REQUEST_PREFIX);
        char *end;
        uint64_t id;

        if (strncmp(path, NPUD_REQUEST_PREFIX "/", strlen(NPUD_REQUEST_PREFIX) + 1) != 0)
                return NULL;
        errno = 0;
        id = strtoull(p + 1, &end, 10);
        if (errno || *end || end == p + 1)
                return NULL;
        for (struct bus_request *br = srv->requests_head; br; br = br->next)
                if (br->id == id)
                        return br;
        return NULL;
}

int request_find(sd_bus *bus, const char *path, const char *iface, void *userdata, void **ret, sd_bus_error *error)
{
        struct bus_request *br = request_by_path(userdata, path);

        if (!br || !br->owner)
                return 0;
        *ret = br;
        return 1;
}

int request_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***ret, sd_bus_error *error)
{
        struct server *srv = userdata;
        sd_bus_message *m = sd_bus_get_current_message(bus);
        const char *sender = m ? sd_bus_message_get_sender(m) : NULL;
        size_t n = 0, i = 0;
        char **v;

        for (struct bus_request *br = srv->requests_head; br; br = br->next)
                n++;
        v = calloc(n + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        /* callers see only their own requests */
        for (struct bus_request *br = srv->requests_head; br && sender; br = br->next)
                if (br->owner && !strcmp(br->owner->name, sender))
                        if (!(v[i++] = strdup(br->path))) {
                                for (size_t k = 0; k < i; k++)
                                        free(v[k]);
                                free(v);
                                return -ENOMEM;
                        }
        *ret = v;
        return 1;
}

/* --- signals --- */

static int send_tokens(struct bus_request *br)
{
        struct sched_request *sr = br->sr;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_signal(br->srv->bus, &m, br->path, NPUD_REQUEST_IFACE, "Tokens");
        if (r < 0)
                return r;
        r = sd_bus_message_set_destination(m, br->owner->name);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(m, 'a', "(us)");
        if (r < 0)
                return r;
        for (size_t i = 0; i < sr->out.n; i++) {
                r = sd_bus_message_append(m, "(us)", (uint32_t)sr->out.v[i].id, sr->out.v[i].text);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(m);
        if (r < 0)
                return r;
        return sd_bus_send(br->srv->bus, m, NULL);
}

void request_flush_tokens(struct bus_request *br, bool force)
{
        uint64_t queued = 0;

        if (!br->owner || !br->sr || br->sr->out.n == 0)
                return;
        if (!force && sd_bus_get_n_queued_write(br->srv->bus, &queued) >= 0 && queued > MAX_QUEUED_WRITES)
                return;
        if (send_tokens(br) < 0)
                fprintf(stderr, "<4>npud: cannot send tokens of %s to %s\n", br->path, br->owner->name);
        piece_queue_clear(&br->sr->out);
}

void requests_flush_all(struct server *srv)
{
        for (struct bus_request *br = srv->requests_head; br; br = br->next)
                if (!br->finished)
                        request_flush_tokens(br, false);
}

static double ms_between(uint64_t a, uint64_t b)
{
        return a && b && b > a ? (double)(b - a) / 1e6 : 0;
}

/* Where the request's steps ran: "cpu", "npu", or "npu+cpu" (a fault, a fallback or a detach in between). */
static const char *request_backend(const struct bus_request *br)
{
        if (br->steps_npu == 0)
                return "cpu";
        return br->steps_cpu ? "npu+cpu" : "npu";
}

static int send_finished(struct bus_request *br)
{
        struct sched_request *sr = br->sr;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        double prefill = ms_between(sr->t_admit, sr->t_first);
        double decode = ms_between(sr->t_first, sr->t_done);
        int32_t steps = MAX(sr->n_generated - 1, 0);
        int r;

        r = sd_bus_message_new_signal(br->srv->bus, &m, br->path, NPUD_REQUEST_IFACE, "Finished");
        if (r < 0)
                return r;
        r = sd_bus_message_set_destination(m, br->owner->name);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "s", sched_stop_name(sr->stop));
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "a{sv}", 13,
                                  "prompt_tokens", "u", (uint32_t)br->n_prompt,
                                  "cached_prompt_tokens", "u", (uint32_t)sr->n_cached,
                                  "generated_tokens", "u", (uint32_t)sr->n_generated,
                                  "queue_ms", "d", ms_between(sr->t_submit, sr->t_admit ? sr->t_admit : sr->t_done),
                                  "prefill_ms", "d", prefill,
                                  "ms_per_token", "d", steps ? decode / steps : 0.0,
                                  "tokens_per_s", "d", steps && decode > 0 ? steps * 1000.0 / decode : 0.0,
                                  "total_ms", "d", ms_between(sr->t_submit, sr->t_done),
                                  "backend", "s", request_backend(br),
                                  "device_faults", "u", br->device_faults,
                                  "device_retries", "u", br->device_retries,
                                  "cpu_fallbacks", "u", br->cpu_fallbacks,
                                  "message", "s", sr->error ? sr->error : "");
        if (r < 0)
                return r;
        return sd_bus_send(br->srv->bus, m, NULL);
}

/*
 * The oldest finished requests of a client go once it keeps more than the
 * limit. The client stays while this runs (it is forgotten afterwards, if it
 * has nothing left).
 */
static void trim_finished(struct server *srv, struct client *c)
{
        while (c->n_finished > srv->cfg.max_finished_kept) {
                struct bus_request *old = NULL;
                for (struct bus_request *br = srv->requests_head; br; br = br->next)
                        if (br->owner == c && br->finished) {
                                old = br;
                                break;
                        }
                if (!old)
                        break;
                disown(old, false);
                request_free(old);
        }
        client_maybe_forget(srv, c);
}

static void on_sched_tokens(struct sched_request *sr, void *userdata)
{
        request_flush_tokens(sr->userdata, false);
}

static void on_sched_finished(struct sched_request *sr, void *userdata)
{
        struct bus_request *br = sr->userdata;
        struct client *c = br->owner;

        br->model->n_users--;
        if (br->session)
                session_turn_finished(br->session, br);
        if (!c) {
                br->finished = true;
                free_now(br);
                return;
        }
        c->n_running--;
        c->n_prompt_tokens -= br->n_prompt;
        c->n_finished++;
        br->finished = true;
        br->stop = sr->stop;
        request_flush_tokens(br, true);
        if (send_finished(br) < 0)
                fprintf(stderr, "<4>npud: cannot send the end of %s to %s\n", br->path, c->name);
        trim_finished(br->srv, c);
}

const struct sched_events request_sched_events = {
        .tokens = on_sched_tokens,
        .finished = on_sched_finished,
        .reclaim = sessions_reclaim,
};

/* --- creation --- */

static int map_submit_error(int r, const struct npu_err *err, sd_bus_error *error)
{
        switch (r) {
        case -EINVAL: return sd_bus_error_set(error, NPUD_ERROR_INVALID_ARGUMENT, err->msg);
        case -E2BIG: return sd_bus_error_set(error, NPUD_ERROR_PROMPT_TOO_LONG, err->msg);
        case -ENOSPC: return sd_bus_error_set(error, NPUD_ERROR_REQUEST_TOO_LARGE, err->msg);
        default: return sd_bus_error_setf(error, NPUD_ERROR_FAILED, "cannot queue the request: %s", err->msg);
        }
}

int request_create(struct server *srv, struct client *owner, struct served_model *model,
                   struct bus_session *session, const int32_t *tokens, int32_t n, const struct sched_params *p,
                   struct kv_seq *seq, struct bus_request **ret, sd_bus_error *error)
{
        const struct npud_config *cfg = &srv->cfg;
        struct npu_err err = {};
        struct bus_request *br;
        int r;

        if (srv->shutting_down)
                return sd_bus_error_set(error, NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
        /* a prompt that can never run is the caller's error, whatever its other requests are */
        if (n >= model->rt->n_ctx)
                return sd_bus_error_setf(error, NPUD_ERROR_PROMPT_TOO_LONG,
                                         "the prompt has %d tokens; the context holds %d (one is kept for the reply)",
                                         n, model->rt->n_ctx);
        if (owner->n_running >= cfg->max_requests_per_client)
                return sd_bus_error_setf(error, NPUD_ERROR_LIMIT_EXCEEDED,
                                         "this client already runs %d requests (the limit)", owner->n_running);
        if (owner->n_prompt_tokens + n > cfg->max_queued_tokens_per_client)
                return sd_bus_error_setf(error, NPUD_ERROR_LIMIT_EXCEEDED,
                                         "this client's unfinished prompts would exceed %d tokens",
                                         cfg->max_queued_tokens_per_client);
        if (model->sched->n_queued >= cfg->max_queue)
                return sd_bus_error_setf(error, NPUD_ERROR_BUSY, "%d requests are waiting already; try again later",
                                         model->sched->n_queued);
        br = calloc(1, sizeof(*br));
        if (!br)
                return -ENOMEM;
        br->srv = srv;
        br->id = ++srv->next_id;
        if (asprintf(&br->path, NPUD_REQUEST_PREFIX "/%" PRIu64, br->id) < 0) {
                free(br);
                return -ENOMEM;
        }
        r = sched_submit(model->sched, tokens, n, p, owner, seq, &br->sr, &err);
        if (r < 0) {
                free(br->path);
                free(br);
                return map_submit_error(r, &err, error);
        }
        br->sr->userdata = br;
        br->sr->keep_seq = session != NULL;
        br->owner = owner;
        br->model = model;
        br->session = session;
        br->n_prompt = n;
        br->prev = srv->requests_tail;
        if (srv->requests_tail)
                srv->requests_tail->next = br;
        else
                srv->requests_head = br;
        srv->requests_tail = br;
        owner->n_running++;
        owner->n_prompt_tokens += n;
        model->n_users++;
        *ret = br;
        /* the reply goes out before the first token: the step starts from the event loop */
        server_kick(srv);
        return 0;
}

void requests_drop_owner(struct server *srv, struct client *c)
{
        struct bus_request *br = srv->requests_head;

        while (br) {
                struct bus_request *next = br->next;
                if (br->owner == c) {
                        disown(br, false);
                        request_free(br);
                }
                br = next;
        }
}

/* --- methods and properties --- */

static int method_cancel(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct bus_request *br = userdata;
        struct server *srv = br->srv;
        int r;

        r = check_owner(m, br, error);
        if (r < 0)
                return r;
        if (br->cancel_requested)
                return sd_bus_error_set(error, NPUD_ERROR_CANCELLED, "the request was already cancelled");
        if (br->finished)
                return sd_bus_error_setf(error, NPUD_ERROR_FINISHED, "the request already finished (%s)",
                                         sched_stop_name(br->stop));
        br->cancel_requested = true;
        /* br may be gone after this (max_finished_kept = 0) */
        sched_cancel(br->sr, SCHED_STOP_CANCELLED);
        server_kick(srv);
        return sd_bus_reply_method_return(m, NULL);
}

static int method_close(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct bus_request *br = userdata;
        struct server *srv = br->srv;
        int r;

        r = check_owner(m, br, error);
        if (r < 0)
                return r;
        br->cancel_requested = true;
        request_free(br);
        server_kick(srv);
        return sd_bus_reply_method_return(m, NULL);
}

static int property_get(sd_bus *bus, const char *path, const char *iface, const char *property,
                        sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        struct bus_request *br = userdata;
        sd_bus_message *m = sd_bus_get_current_message(bus);
        int r;

        r = check_owner(m, br, error);
        if (r < 0)
                return r;
        if (!strcmp(property, "Model"))
                return sd_bus_message_append(reply, "s", br->model->name);
        if (!strcmp(property, "State"))
                return sd_bus_message_append(reply, "s", sched_state_name(br->sr->state));
        if (!strcmp(property, "PromptTokens"))
                return sd_bus_message_append(reply, "u", (uint32_t)br->n_prompt);
        if (!strcmp(property, "GeneratedTokens"))
                return sd_bus_message_append(reply, "u", (uint32_t)br->sr->n_generated);
        if (!strcmp(property, "StopReason"))
                return sd_bus_message_append(reply, "s", br->finished ? sched_stop_name(br->stop) : "");
        return -ENOENT;
}

const sd_bus_vtable request_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("Cancel", "", "", method_cancel, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Close", "", "", method_close, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_NAMES("Tokens", "a(us)", SD_BUS_PARAM(tokens), 0),
        SD_BUS_SIGNAL_WITH_NAMES("Finished", "sa{sv}", SD_BUS_PARAM(reason) SD_BUS_PARAM(stats), 0),
        SD_BUS_PROPERTY("Model", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get, 0, 0),
        SD_BUS_PROPERTY("PromptTokens", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("GeneratedTokens", "u", property_get, 0, 0),
        SD_BUS_PROPERTY("StopReason", "s", property_get, 0, 0),
        SD_BUS_VTABLE_END,
};
