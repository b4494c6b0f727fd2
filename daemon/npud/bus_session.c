/* SPDX-License-Identifier: MIT */
/*
 * Session objects (/org/npud/Inference1/session/N): a conversation whose KV
 * cache stays in the daemon between turns. Each turn runs as a request over
 * the whole history, starting from the cached positions; an idle session's
 * blocks may be reclaimed for other work, and its next turn computes them again.
 */
#include <inttypes.h>

#include "bus_args.h"
#include "bus_errors.h"
#include "server.h"

static void list_remove(struct server *srv, struct bus_session *s)
{
        if (s->prev)
                s->prev->next = s->next;
        else
                srv->sessions_head = s->next;
        if (s->next)
                s->next->prev = s->prev;
        else
                srv->sessions_tail = s->prev;
}

static void free_now(struct bus_session *s)
{
        struct server *srv = s->srv;

        kv_seq_release(s->model->rt->kv, &s->seq);
        s->model->n_users--;
        list_remove(srv, s);
        strv_free(s->default_stops);
        free(s->history);
        free(s->path);
        free(s);
}

/* Closes the session; a running turn is cancelled first and the session goes with it. */
void session_free(struct bus_session *s)
{
        struct server *srv = s->srv;
        struct client *c = s->owner;

        s->owner = NULL;
        if (c)
                c->n_sessions--;
        if (s->turn) {
                /* frees the session when the turn ends, now or after the running step */
                request_free(s->turn);
                return;
        }
        free_now(s);
        if (c)
                client_maybe_forget(srv, c);
}

void session_turn_finished(struct bus_session *s, struct bus_request *br)
{
        struct sched_request *sr = br->sr;
        int32_t *h;

        s->turn = NULL;
        br->session = NULL;
        s->seq = sr->seq;
        sr->seq = (struct kv_seq) {};
        h = realloc(s->history, sizeof(int32_t) * sr->n_tokens);
        if (h) {
                memcpy(h, sr->tokens, sizeof(int32_t) * sr->n_tokens);
                s->history = h;
                s->n_history = sr->n_tokens;
        }
        s->turns++;
        s->last_used = now_ns();
        if (!s->owner)
                free_now(s);
}

void sessions_drop_owner(struct server *srv, struct client *c)
{
        struct bus_session *s = srv->sessions_head;

        while (s) {
                struct bus_session *next = s->next;
                if (s->owner == c) {
                        c->n_sessions--;
                        s->owner = NULL;
                        if (s->turn)
                                request_free(s->turn);
                        else
                                free_now(s);
                }
                s = next;
        }
}

int32_t sessions_reclaim(struct scheduler *sched, int32_t n, void *userdata)
{
        struct server *srv = userdata;
        struct kv_pool *kv = sched->rt->kv;
        int32_t freed = 0;

        while (freed < n) {
                struct bus_session *lru = NULL;
                for (struct bus_session *s = srv->sessions_head; s; s = s->next)
                        if (s->model->sched == sched && !s->turn && s->seq.n_blocks > 0 &&
                            (!lru || s->last_used < lru->last_used))
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

/* --- finding objects --- */

static struct bus_session *session_by_path(struct server *srv, const char *path)
{
        const char *p = path + strlen(NPUD_SESSION_PREFIX);
        char *end;
        uint64_t id;

        if (strncmp(path, NPUD_SESSION_PREFIX "/", strlen(NPUD_SESSION_PREFIX) + 1) != 0)
                return NULL;
        errno = 0;
        id = strtoull(p + 1, &end, 10);
        if (errno || *end || end == p + 1)
                return NULL;
        for (struct bus_session *s = srv->sessions_head; s; s = s->next)
                if (s->id == id && s->owner)
                        return s;
        return NULL;
}

int session_find(sd_bus *bus, const char *path, const char *iface, void *userdata, void **ret, sd_bus_error *error)
{
        struct bus_session *s = session_by_path(userdata, path);

        if (!s)
                return 0;
        *ret = s;
        return 1;
}

int session_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***ret, sd_bus_error *error)
{
        struct server *srv = userdata;
        sd_bus_message *m = sd_bus_get_current_message(bus);
        const char *sender = m ? sd_bus_message_get_sender(m) : NULL;
        size_t n = 0, i = 0;
        char **v;

        for (struct bus_session *s = srv->sessions_head; s; s = s->next)
                n++;
        v = calloc(n + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        for (struct bus_session *s = srv->sessions_head; s && sender; s = s->next)
                if (s->owner && !strcmp(s->owner->name, sender) && !(v[i++] = strdup(s->path))) {
                        strv_free(v);
                        return -ENOMEM;
                }
        *ret = v;
        return 1;
}

static int check_owner(sd_bus_message *m, struct bus_session *s, sd_bus_error *error)
{
        const char *sender = sd_bus_message_get_sender(m);

        if (!s->owner || !sender || strcmp(sender, s->owner->name) != 0)
                return sd_bus_error_set(error, NPUD_ERROR_ACCESS_DENIED, "the session belongs to another client");
        return 0;
}

/* --- creation --- */

int session_create(struct server *srv, struct client *owner, struct served_model *model, sd_bus_message *options,
                   struct bus_session **ret, sd_bus_error *error)
{
        _cleanup_(gen_args_done) struct gen_args a = {};
        struct prompt_arg pa = {};
        struct bus_session *s;
        int r;

        if (owner->n_sessions >= srv->cfg.max_sessions_per_client)
                return sd_bus_error_setf(error, NPUD_ERROR_LIMIT_EXCEEDED, "this client has %d sessions (the limit)",
                                         owner->n_sessions);
        r = gen_args_init(&a, NULL);
        if (r < 0)
                return r;
        r = args_read_options(options, model->rt->model, model->rt->n_ctx, true, &a, error);
        if (r < 0)
                return r;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->srv = srv;
        s->model = model;
        if (a.system_prompt && a.system_prompt[0]) {
                pa.text = a.system_prompt;
                pa.len = strlen(a.system_prompt);
                r = args_tokenize(model->rt->model, &pa, true, &s->history, &s->n_history, error);
                if (r >= 0 && s->n_history >= model->rt->n_ctx)
                        r = sd_bus_error_setf(error, NPUD_ERROR_PROMPT_TOO_LONG,
                                              "the system prompt has %d tokens; the context holds %d",
                                              s->n_history, model->rt->n_ctx);
                if (r < 0) {
                        free(s->history);
                        free(s);
                        return r;
                }
                s->n_system = s->n_history;
        }
        s->id = ++srv->next_id;
        if (asprintf(&s->path, NPUD_SESSION_PREFIX "/%" PRIu64, s->id) < 0) {
                free(s->history);
                free(s);
                return -ENOMEM;
        }
        s->defaults = a.p;
        s->default_stops = TAKE_PTR(a.stops);
        s->defaults.stops = s->default_stops;
        s->owner = owner;
        s->last_used = now_ns();
        s->prev = srv->sessions_tail;
        if (srv->sessions_tail)
                srv->sessions_tail->next = s;
        else
                srv->sessions_head = s;
        srv->sessions_tail = s;
        owner->n_sessions++;
        model->n_users++;
        *ret = s;
        return 0;
}

/* --- methods and properties --- */

static int method_send(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct bus_session *s = userdata;
        struct served_model *model = s->model;
        _cleanup_(prompt_arg_done) struct prompt_arg pa = {};
        _cleanup_(gen_args_done) struct gen_args a = {};
        _cleanup_free_ int32_t *ids = NULL, *all = NULL;
        struct bus_request *br;
        int32_t n;
        int r;

        r = args_read_prompt(m, &pa, error);
        if (r < 0)
                return r;
        r = gen_args_init(&a, &s->defaults);
        if (r < 0)
                return r;
        r = args_read_options(m, model->rt->model, model->rt->n_ctx, false, &a, error);
        if (r < 0)
                return r;
        r = check_owner(m, s, error);
        if (r < 0)
                return r;
        if (s->turn)
                return sd_bus_error_set(error, NPUD_ERROR_BUSY, "the session's previous turn is still running");
        r = args_tokenize(model->rt->model, &pa, a.add_bos >= 0 ? a.add_bos : s->n_history == 0, &ids, &n, error);
        if (r < 0)
                return r;
        if ((int64_t)s->n_history + n >= model->rt->n_ctx)
                return sd_bus_error_setf(error, NPUD_ERROR_PROMPT_TOO_LONG,
                                         "the history (%d tokens) and this prompt (%d) do not fit the context (%d)",
                                         s->n_history, n, model->rt->n_ctx);
        all = malloc(sizeof(int32_t) * (s->n_history + n));
        if (!all)
                return -ENOMEM;
        if (s->n_history > 0)
                memcpy(all, s->history, sizeof(int32_t) * s->n_history);
        memcpy(all + s->n_history, ids, sizeof(int32_t) * n);
        r = request_create(s->srv, s->owner, model, s, all, s->n_history + n, &a.p, &s->seq, &br, error);
        if (r < 0)
                return r;
        s->turn = br;
        s->evicted = false;
        return sd_bus_reply_method_return(m, "o", br->path);
}

static int method_reset(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct bus_session *s = userdata;
        int r;

        r = check_owner(m, s, error);
        if (r < 0)
                return r;
        if (s->turn)
                return sd_bus_error_set(error, NPUD_ERROR_BUSY, "a turn is running; cancel it first");
        kv_seq_release(s->model->rt->kv, &s->seq);
        s->n_history = s->n_system;
        s->turns = 0;
        s->evicted = false;
        return sd_bus_reply_method_return(m, NULL);
}

static int method_close(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct bus_session *s = userdata;
        struct server *srv = s->srv;
        int r;

        r = check_owner(m, s, error);
        if (r < 0)
                return r;
        session_free(s);
        server_kick(srv);
        return sd_bus_reply_method_return(m, NULL);
}

static int property_get(sd_bus *bus, const char *path, const char *iface, const char *property,
                        sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        struct bus_session *s = userdata;
        int r;

        r = check_owner(sd_bus_get_current_message(bus), s, error);
        if (r < 0)
                return r;
        if (!strcmp(property, "Model"))
                return sd_bus_message_append(reply, "s", s->model->name);
        if (!strcmp(property, "Turns"))
                return sd_bus_message_append(reply, "u", s->turns);
        if (!strcmp(property, "ContextTokens"))
                return sd_bus_message_append(reply, "u", (uint32_t)s->n_history);
        if (!strcmp(property, "State"))
                return sd_bus_message_append(reply, "s", s->turn ? "busy" : s->evicted ? "evicted" : "idle");
        return -ENOENT;
}

const sd_bus_vtable session_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_NAMES("Send", "va{sv}", SD_BUS_PARAM(prompt) SD_BUS_PARAM(options), "o",
                                 SD_BUS_PARAM(request), method_send, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Reset", "", "", method_reset, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Close", "", "", method_close, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_PROPERTY("Model", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Turns", "u", property_get, 0, 0),
        SD_BUS_PROPERTY("ContextTokens", "u", property_get, 0, 0),
        SD_BUS_PROPERTY("State", "s", property_get, 0, 0),
        SD_BUS_VTABLE_END,
};
