/* SPDX-License-Identifier: MIT */
/*
 * One generation on one connection: the match for the Request signals goes in
 * before the call (Generate or Session.Send), the reply gives the path, Tokens
 * signals for that path are handed to the caller as they arrive, Finished ends
 * it. Signals of the connection's other requests are ignored. If npud leaves
 * the bus meanwhile, the request ends with -EHOSTDOWN rather than waiting for
 * ever. Everything runs from the caller's sd-event loop.
 */
#include "npuctl.h"

int request_new(sd_bus *bus, const struct request_ops *ops, void *userdata, bool keep, struct request **ret)
{
        struct request *req = calloc(1, sizeof(*req));
        if (!req)
                return -ENOMEM;
        req->bus = sd_bus_ref(bus);
        req->ops = ops;
        req->userdata = userdata;
        req->keep = keep;
        req->call_error = SD_BUS_ERROR_NULL;
        *ret = req;
        return 0;
}

struct request *request_free(struct request *req)
{
        if (!req)
                return NULL;
        sd_bus_slot_unref(req->match);
        sd_bus_slot_unref(req->owner_match);
        sd_bus_slot_unref(req->call);
        sd_bus_slot_unref(req->cancel_call);
        sd_bus_unref(req->bus);
        sd_bus_error_free(&req->call_error);
        json_object_put(req->stats);
        free(req->path);
        free(req->reason);
        free(req->ids);
        free(req->text);
        free(req);
        return NULL;
}

static void request_end(struct request *req, int error)
{
        if (req->finished)
                return;
        req->finished = true;
        req->t_end = now_ns();
        if (error < 0 && req->error == 0)
                req->error = error;
        /* no more signals wanted: the caller may start the next request on this connection */
        req->match = sd_bus_slot_unref(req->match);
        req->owner_match = sd_bus_slot_unref(req->owner_match);
        if (req->ops && req->ops->finished)
                req->ops->finished(req, req->userdata);
}

static int keep_tokens(struct request *req, const uint32_t *ids, const char *const *pieces, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                size_t len = strlen(pieces[i]);
                if (req->n_ids == req->cap_ids) {
                        size_t cap = MAX(req->cap_ids * 2, (size_t)64);
                        uint32_t *t = realloc(req->ids, cap * sizeof(*t));
                        if (!t)
                                return -ENOMEM;
                        req->ids = t;
                        req->cap_ids = cap;
                }
                req->ids[req->n_ids++] = ids[i];
                if (req->text_len + len + 1 > req->text_cap) {
                        size_t cap = MAX(req->text_cap * 2, req->text_len + len + 256);
                        char *t = realloc(req->text, cap);
                        if (!t)
                                return -ENOMEM;
                        req->text = t;
                        req->text_cap = cap;
                }
                memcpy(req->text + req->text_len, pieces[i], len + 1);
                req->text_len += len;
        }
        return 0;
}

static int on_tokens(struct request *req, sd_bus_message *m)
{
        _cleanup_free_ uint32_t *ids = NULL;
        _cleanup_free_ const char **pieces = NULL;
        size_t n = 0, cap = 0;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "(us)");
        while (r >= 0) {
                uint32_t id;
                const char *piece;
                r = sd_bus_message_read(m, "(us)", &id, &piece);
                if (r <= 0)
                        break;
                if (n == cap) {
                        cap = MAX(cap * 2, (size_t)16);
                        uint32_t *t = realloc(ids, cap * sizeof(*ids));
                        if (!t)
                                return -ENOMEM;
                        ids = t;
                        const char **p = realloc(pieces, cap * sizeof(*pieces));
                        if (!p)
                                return -ENOMEM;
                        pieces = p;
                }
                ids[n] = id;
                pieces[n++] = piece;
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0)
                return bus_log_parse_error(r);
        if (n == 0)
                return 0;
        if (!req->t_first)
                req->t_first = now_ns();
        if (req->keep) {
                r = keep_tokens(req, ids, pieces, n);
                if (r < 0)
                        return r;
        }
        if (req->ops && req->ops->tokens)
                req->ops->tokens(req, ids, pieces, n, req->userdata);
        return 0;
}

static int on_finished(struct request *req, sd_bus_message *m)
{
        const char *reason;
        int r;

        r = sd_bus_message_read(m, "s", &reason);
        if (r < 0)
                return bus_log_parse_error(r);
        req->reason = strdup(reason);
        if (!req->reason)
                return -ENOMEM;
        r = json_from_bus(m, &req->stats);
        if (r < 0)
                return bus_log_parse_error(r);
        request_end(req, 0);
        return 0;
}

static int on_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct request *req = userdata;
        int r = 0;

        if (!req->path || req->finished || strcmp(sd_bus_message_get_path(m), req->path) != 0)
                return 0;
        if (sd_bus_message_is_signal(m, NPUD_REQUEST, "Tokens"))
                r = on_tokens(req, m);
        else if (sd_bus_message_is_signal(m, NPUD_REQUEST, "Finished"))
                r = on_finished(req, m);
        if (r < 0)
                request_end(req, r);
        return 0;
}

static int on_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct request *req = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0)
                return 0;
        if (strcmp(name, NPUD_SERVICE) == 0 && !*new_owner) {
                fprintf(stderr, "npuctl: npud left the bus\n");
                request_end(req, -EHOSTDOWN);
        }
        return 0;
}

int request_watch(struct request *req)
{
        int r;

        r = sd_bus_match_signal(req->bus, &req->match, NPUD_SERVICE, NULL, NPUD_REQUEST, NULL, on_signal, req);
        if (r >= 0)
                r = sd_bus_add_match(req->bus, &req->owner_match,
                                     "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                                     "interface='org.freedesktop.DBus',member='NameOwnerChanged',"
                                     "arg0='" NPUD_SERVICE "'",
                                     on_owner_changed, req);
        if (r < 0) {
                fprintf(stderr, "npuctl: cannot add a match for the request's signals: %s\n", strerror(-r));
                return r == -ECONNRESET || r == -ENOTCONN ? -EHOSTDOWN : -EIO;
        }
        return 0;
}

static int cancel_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct request *req = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);

        req->cancel_call = sd_bus_slot_unref(req->cancel_call);
        /* Cancelled or Finished: it ended anyway, and Finished tells us how */
        if (e && !sd_bus_error_has_names(e, NPUD_ERROR "Cancelled", NPUD_ERROR "Finished"))
                bus_log_error(e, -EIO);
        return 0;
}

static void send_cancel(struct request *req)
{
        int r;

        req->cancel_sent = true;
        r = sd_bus_call_method_async(req->bus, &req->cancel_call, NPUD_SERVICE, req->path, NPUD_REQUEST, "Cancel",
                                     cancel_reply, req, NULL);
        if (r < 0)
                fprintf(stderr, "npuctl: cannot cancel: %s\n", strerror(-r));
}

void request_cancel(struct request *req)
{
        req->cancel_wanted = true;
        if (req->path && !req->finished && !req->cancel_sent)
                send_cancel(req);
}

static int call_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct request *req = userdata;
        const char *path;
        int r;

        req->call = sd_bus_slot_unref(req->call);
        req->t_reply = now_ns();
        if (sd_bus_message_is_method_error(m, NULL)) {
                sd_bus_error_copy(&req->call_error, sd_bus_message_get_error(m));
                request_end(req, -sd_bus_message_get_errno(m) ?: -EIO);
                return 0;
        }
        r = sd_bus_message_read(m, "o", &path);
        if (r < 0) {
                request_end(req, bus_log_parse_error(r));
                return 0;
        }
        req->path = strdup(path);
        if (!req->path) {
                request_end(req, -ENOMEM);
                return 0;
        }
        if (req->ops && req->ops->started)
                req->ops->started(req, req->userdata);
        if (req->cancel_wanted && !req->cancel_sent && !req->finished)
                send_cancel(req);
        return 0;
}

int request_send(struct request *req, sd_bus_message *call)
{
        int r;

        req->t_send = now_ns();
        r = sd_bus_call_async(req->bus, &req->call, call, call_reply, req, 0);
        if (r < 0) {
                fprintf(stderr, "npuctl: cannot send the request: %s\n", strerror(-r));
                return r == -ECONNRESET || r == -ENOTCONN ? -EHOSTDOWN : -EIO;
        }
        return 0;
}

void request_close(struct request *req)
{
        if (!req->path)
                return;
        (void)sd_bus_call_method(req->bus, NPUD_SERVICE, req->path, NPUD_REQUEST, "Close", NULL, NULL, NULL);
}

void request_print_timings(const struct request *req, FILE *f)
{
        json_object *s = req->stats;
        uint64_t np = json_get_u64(s, "prompt_tokens", 0), cached = json_get_u64(s, "cached_prompt_tokens", 0);
        double pf = json_get_double(s, "prefill_ms", 0), mst = json_get_double(s, "ms_per_token", 0);

        fprintf(f, "prompt: %" PRIu64 " tokens", np);
        if (cached)
                fprintf(f, " (%" PRIu64 " cached)", cached);
        fprintf(f, ", %.2f ms (%.2f tokens/s), queued %.2f ms\n", pf, pf > 0 ? 1000.0 * (np - cached) / pf : 0,
                json_get_double(s, "queue_ms", 0));
        fprintf(f, "generation: %" PRIu64 " tokens, %.2f ms/token (%.2f tokens/s), stop: %s\n",
                json_get_u64(s, "generated_tokens", 0), mst, json_get_double(s, "tokens_per_s", 0),
                req->reason ? req->reason : "?");
}

int generate_call_new(sd_bus *bus, const char *model, const struct prompt *p, const struct gen_options *o,
                      sd_bus_message **ret)
{
        sd_bus_message *m = NULL;
        int r;

        r = bus_new_manager_call(bus, "Generate", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append_basic(m, 's', model ? model : "");
        if (r < 0) {
                sd_bus_message_unref(m);
                return bus_log_create_error(r);
        }
        r = prompt_append(m, p);
        if (r >= 0)
                r = gen_options_append(m, o, NULL, NULL);
        if (r < 0) {
                sd_bus_message_unref(m);
                return r;
        }
        *ret = m;
        return 0;
}
