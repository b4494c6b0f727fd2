/* SPDX-License-Identifier: MIT */
/* The Manager interface at /org/npud/Inference1: models, devices, generation, sessions, statistics. */
#include "bus_args.h"
#include "bus_changes.h"
#include "bus_errors.h"
#include "props.h"
#include "server.h"
#include "session_chat.h"
#include "stats.h"

#ifndef NPUD_VERSION
#define NPUD_VERSION "0"
#endif

static int reply_model_error(sd_bus_error *error, int r, const struct npu_err *err)
{
        if (r == -ENOENT)
                return sd_bus_error_set(error, NPUD_ERROR_NO_SUCH_MODEL, err->msg);
        if (r == -EINVAL && strstr(err->msg, "model name"))
                return sd_bus_error_set(error, NPUD_ERROR_INVALID_ARGUMENT, err->msg);
        if (r == -EEXIST || r == -EINVAL)
                return sd_bus_error_set(error, NPUD_ERROR_INVALID_ARGUMENT, err->msg);
        if (r == -EBUSY || r == -EAGAIN)
                return sd_bus_error_set(error, NPUD_ERROR_BUSY, err->msg);
        if (r == -ENOMEM)
                return sd_bus_error_setf(error, NPUD_ERROR_FAILED, "out of memory: %s", err->msg);
        return sd_bus_error_set(error, NPUD_ERROR_BAD_MODEL, err->msg);
}

static struct served_model *find_loaded_model(struct server *srv, const char *name, sd_bus_error *error)
{
        struct served_model *m = models_find(srv, name);

        if (!m) {
                if (name[0])
                        sd_bus_error_setf(error, NPUD_ERROR_NO_SUCH_MODEL, "no model named '%s' is loaded", name);
                else
                        sd_bus_error_set(error, NPUD_ERROR_NO_SUCH_MODEL, "no default model is loaded");
        }
        return m;
}

/*
 * The model the method being answered names: loaded, or loaded from
 * models_dir for it (keep_alive.c). NULL with error unset: it is loading,
 * and the method runs again when it is loaded: it returns 1 now.
 */
static struct served_model *find_model(struct server *srv, const char *name, sd_bus_error *error)
{
        sd_bus_message *call = sd_bus_get_current_message(srv->bus) ?: srv->redispatching;
        struct served_model *m = NULL;

        if (models_find(srv, name) || !call)
                return find_loaded_model(srv, name, error);
        (void)models_get_or_load(srv, call, name, &m, error);
        return m;
}

static int append_model(sd_bus_message *reply, struct server *srv, const struct served_model *m,
                        const struct stats_view *v)
{
        const struct npu_hparams *hp = &m->rt->model->hp;

        return sd_bus_message_append(reply, "(sa{sv})", m->name, 19,
                                     "path", "s", m->path,
                                     "precision", "s", precision_name(m->rt->model->precision),
                                     "n_ctx", "u", (uint32_t)m->rt->n_ctx,
                                     "n_layers", "u", (uint32_t)hp->n_layers,
                                     "n_embd", "u", (uint32_t)hp->dim,
                                     "n_vocab", "u", (uint32_t)hp->n_vocab,
                                     "n_params", "t", model_n_params(m),
                                     "weight_bytes", "t", (uint64_t)m->rt->model->weight_bytes,
                                     "default", "b", m == srv->default_model,
                                     "requests", "u", stats_model_users(m, v),
                                     "backend", "s", m->device ? "npu" : "cpu",
                                     "device", "s", m->device ? m->device->name : "cpu",
                                     "architecture", "s", arch_name(hp->arch),
                                     "size", "t", (uint64_t)m->rt->model->weight_bytes +
                                                  (uint64_t)m->rt->kv->n_blocks * m->rt->kv->block_bytes,
                                     "state", "s", model_users(m) > 0 ? "busy" : "idle",
                                     "pinned", "b", m->keep.pinned,
                                     "loaded_at", "t", m->keep.loaded_at,
                                     "last_used", "t", m->keep.last_used,
                                     "expires_at", "t", keep_alive_expires_at(m));
}

static int method_list_models(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct server *srv = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        struct stats_view v;
        int r;

        r = stats_view_of(srv, m, &v);
        if (r < 0)
                return sd_bus_error_setf(error, NPUD_ERROR_ACCESS_DENIED, "cannot tell who the caller is: %s",
                                         strerror(-r));
        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(sa{sv})");
        if (r < 0)
                return r;
        for (struct served_model *sm = srv->models; sm; sm = sm->next) {
                r = append_model(reply, srv, sm, &v);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int read_load_options(sd_bus_message *m, char **name, bool *make_default, int64_t *keep_alive_us,
                             sd_bus_error *error)
{
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key, *s;
                int b;
                r = sd_bus_message_read_basic(m, 's', &key);
                if (r < 0)
                        return r;
                if (!strcmp(key, "name")) {
                        r = sd_bus_message_read(m, "v", "s", &s);
                        if (r >= 0 && !(*name = strdup(s)))
                                r = -ENOMEM;
                } else if (!strcmp(key, "default")) {
                        r = sd_bus_message_read(m, "v", "b", &b);
                        *make_default = b;
                } else if (!strcmp(key, "keep_alive")) {
                        const char *contents;
                        r = sd_bus_message_peek_type(m, NULL, &contents);
                        if (r >= 0)
                                r = sd_bus_message_enter_container(m, 'v', contents);
                        if (r >= 0)
                                r = args_read_keep_alive(m, contents, keep_alive_us, error);
                        if (r < 0)
                                return r;
                        r = sd_bus_message_exit_container(m);
                } else {
                        return sd_bus_error_setf(error, NPUD_ERROR_INVALID_ARGUMENT, "unknown option '%s'", key);
                }
                if (r < 0)
                        return sd_bus_error_setf(error, NPUD_ERROR_INVALID_ARGUMENT, "option '%s' has the wrong type",
                                                 key);
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

/* A LoadModel of a path waiting for its model. */
struct load_call {
        sd_bus_message *call;
        uid_t uid;
        int64_t keep_alive_us;
};

static void on_loaded(struct server *srv, struct served_model *sm, int r, const struct npu_err *err,
                      void *userdata)
{
        struct load_call *lc = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = lc->call;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *name = NULL;
        uid_t uid = lc->uid;
        int64_t keep_alive_us = lc->keep_alive_us;

        free(lc);
        if (r >= 0 && (name = strdup(sm->name))) {
                /* the administrator's: pinned, unless a keep_alive says how long it stays */
                sm->keep.pinned = keep_alive_us == KEEP_ALIVE_DEFAULT;
                if (!sm->keep.pinned)
                        keep_alive_request_ended(sm, uid, keep_alive_us);
                keep_alive_update(srv); /* keep_alive 0: it may go now */
                (void)sd_bus_reply_method_return(call, "s", name);
                return;
        }
        if (r >= 0)
                sd_bus_error_set_errno(&error, ENOMEM);
        else if (r == -ECANCELED)
                sd_bus_error_set(&error, NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
        else
                reply_model_error(&error, r, err);
        (void)sd_bus_reply_method_error(call, &error);
}

/*
 * LoadModel of a name: a model of models_dir, which anyone may load (the
 * administrator chose those files) as a request naming it would; keep_alive
 * sets the caller's claim on it (0: the caller no longer needs it).
 */
static int load_by_name(struct server *srv, sd_bus_message *m, const char *name, const char *as, bool make_default,
                        int64_t keep_alive_us, sd_bus_error *error)
{
        _cleanup_free_ char *loaded = NULL;
        struct served_model *sm = NULL;
        uid_t uid;
        int r;

        if (as || make_default)
                return sd_bus_error_set(error, NPUD_ERROR_INVALID_ARGUMENT,
                                        "the options name and default are for loading a path (administrators)");
        r = bus_message_uid(m, &uid);
        if (r < 0)
                return sd_bus_error_setf(error, NPUD_ERROR_ACCESS_DENIED, "cannot tell who the caller is: %s",
                                         strerror(-r));
        r = models_get_or_load(srv, m, name, &sm, error);
        if (r <= 0)
                return r < 0 ? r : 1; /* loading: this runs again when it is loaded */
        loaded = strdup(sm->name);
        if (!loaded)
                return -ENOMEM;
        keep_alive_request_ended(sm, uid, keep_alive_us);
        keep_alive_update(srv); /* keep_alive 0: it may go now */
        return sd_bus_reply_method_return(m, "s", loaded);
}

static int method_load_model(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct server *srv = userdata;
        _cleanup_free_ char *name = NULL;
        struct npu_err err = {};
        int64_t keep_alive_us = KEEP_ALIVE_DEFAULT;
        struct load_call *lc;
        bool make_default = false;
        const char *path;
        int r;

        r = sd_bus_message_read(m, "s", &path);
        if (r < 0)
                return r;
        r = read_load_options(m, &name, &make_default, &keep_alive_us, error);
        if (r < 0)
                return r;
        if (!strchr(path, '/'))
                return load_by_name(srv, m, path, name, make_default, keep_alive_us, error);
        r = authorize(srv, m, ACTION_MANAGE_MODELS, method_load_model, userdata, error);
        if (r <= 0)
                return r < 0 ? r : 1; /* 0: polkit answers later, and this runs again */
        if (srv->shutting_down)
                return sd_bus_error_set(error, NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
        lc = calloc(1, sizeof(*lc));
        if (!lc)
                return -ENOMEM;
        r = bus_message_uid(m, &lc->uid);
        if (r < 0) {
                free(lc);
                return r;
        }
        lc->keep_alive_us = keep_alive_us;
        lc->call = sd_bus_message_ref(m);
        /* loaded off the event loop: the reply comes when it is done */
        r = models_load(srv, path, name, make_default, on_loaded, lc, &err);
        if (r < 0) {
                sd_bus_message_unref(lc->call);
                free(lc);
                return reply_model_error(error, r, &err);
        }
        return 1;
}

static int method_reload(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct server *srv = userdata;
        int r;

        r = authorize(srv, m, ACTION_MANAGE_MODELS, method_reload, userdata, error);
        if (r <= 0)
                return r < 0 ? r : 1; /* 0: polkit answers later, and this runs again */
        if (srv->shutting_down)
                return sd_bus_error_set(error, NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
        return server_reload(srv, m);
}

static int method_unload_model(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct server *srv = userdata;
        struct served_model *sm;
        struct npu_err err = {};
        const char *name;
        int force = 0;
        int r;

        r = sd_bus_message_read(m, "s", &name);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key;
                r = sd_bus_message_read_basic(m, 's', &key);
                if (r < 0)
                        return r;
                if (strcmp(key, "force") != 0)
                        return sd_bus_error_setf(error, NPUD_ERROR_INVALID_ARGUMENT, "unknown option '%s'", key);
                r = sd_bus_message_read(m, "v", "b", &force);
                if (r < 0)
                        return sd_bus_error_set(error, NPUD_ERROR_INVALID_ARGUMENT, "option 'force' must be b");
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (!name[0])
                return sd_bus_error_set(error, NPUD_ERROR_INVALID_ARGUMENT, "name the model to unload");
        r = authorize(srv, m, ACTION_MANAGE_MODELS, method_unload_model, userdata, error);
        if (r <= 0)
                return r < 0 ? r : 1; /* 0: polkit answers later, and this runs again */
        sm = find_loaded_model(srv, name, error);
        if (!sm)
                return -ENOENT;
        if (sm->unload_call)
                return sd_bus_error_setf(error, NPUD_ERROR_BUSY, "model '%s' is being unloaded already", sm->name);
        r = model_unload(sm, force, &err);
        if (r == -EAGAIN) {
                /* in the middle of a step: unloaded (and answered) when it ends */
                sm->unload_call = sd_bus_message_ref(m);
                sm->unload_force = force;
                return 1;
        }
        if (r < 0)
                return reply_model_error(error, r, &err);
        server_kick(srv);
        return sd_bus_reply_method_return(m, NULL);
}

/* The one-turn session of a Generate or a Chat, forgotten with its client when its request does not start. */
static void single_turn_abort(struct session *s)
{
        struct client *c = s->client;

        if (s->requests_head)
                session_drop_request(s, s->requests_head);
        else
                session_close(s);
        client_maybe_forget(c);
}

/* The caller's client, a one-turn session of its own on the model, and the turn's request, not started yet. */
static int single_turn_open(struct server *srv, struct served_model *sm, sd_bus_message *m, struct session **ret_s,
                            struct request **ret_req, sd_bus_error *error)
{
        struct client *c;
        int r;

        if (srv->shutting_down)
                return sd_bus_error_set(error, NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
        r = clients_get(srv, m, &c, error);
        if (r < 0)
                return r;
        r = client_check_request(c, &srv->cfg, error);
        if (r >= 0)
                r = session_new_single(sm, c, ret_s);
        if (r < 0) {
                client_maybe_forget(c);
                return r;
        }
        r = session_start_turn(*ret_s, ret_req, error);
        if (r < 0)
                single_turn_abort(*ret_s);
        return r;
}

static int method_generate(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct server *srv = userdata;
        _cleanup_(prompt_arg_done) struct prompt_arg pa = {};
        _cleanup_(gen_args_done) struct gen_args a = {};
        struct served_model *sm;
        struct session *s;
        struct request *req;
        const char *model;
        int r;

        r = sd_bus_message_read(m, "s", &model);
        if (r < 0)
                return r;
        sm = find_model(srv, model, error);
        if (!sm)
                return sd_bus_error_is_set(error) ? -ENOENT : 1; /* loading: this runs again then */
        r = args_read_prompt(m, &pa, error);
        if (r < 0)
                return r;
        r = gen_args_init(&a, NULL);
        if (r < 0)
                return r;
        r = args_read_options(m, sm->rt->model, sm->rt->n_ctx, 0, &a, error);
        if (r < 0)
                return r;
        r = single_turn_open(srv, sm, m, &s, &req, error);
        if (r < 0)
                return r;
        r = request_start(req, m, &pa, a.add_bos != 0, &a.p, error);
        if (r < 0)
                single_turn_abort(s);
        return r < 0 ? r : 1;
}

/*
 * Chat: the messages rendered through the model's chat template (or the one
 * the template option names), the assistant's turn opened unless the last
 * message is the assistant's own, which it then continues; tokenized off the
 * event loop, control tokens read only in the template's text.
 */
static int method_chat(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct server *srv = userdata;
        _cleanup_(chat_args_done) struct chat_args msgs = {};
        _cleanup_(gen_args_done) struct gen_args a = {};
        _cleanup_(chat_template_done) struct chat_template t = {};
        _cleanup_(chat_prompt_done) struct chat_prompt p = {};
        struct served_model *sm;
        struct session *s;
        struct request *req;
        const char *model;
        int r;

        r = sd_bus_message_read(m, "s", &model);
        if (r < 0)
                return r;
        sm = find_model(srv, model, error);
        if (!sm)
                return sd_bus_error_is_set(error) ? -ENOENT : 1; /* loading: this runs again then */
        r = args_read_messages(m, &msgs, error);
        if (r < 0)
                return r;
        r = gen_args_init(&a, NULL);
        if (r < 0)
                return r;
        r = args_read_options(m, sm->rt->model, sm->rt->n_ctx, ARGS_TEMPLATE, &a, error);
        if (r < 0)
                return r;
        r = args_chat_template(sm->rt->model, a.template_name, &t, error);
        if (r < 0)
                return r;
        r = args_render_chat(&t, msgs.m, msgs.n, msgs.m[msgs.n - 1].role != CHAT_ROLE_ASSISTANT, &p, error);
        if (r < 0)
                return r;
        r = single_turn_open(srv, sm, m, &s, &req, error);
        if (r < 0)
                return r;
        r = request_start_chat(req, m, &p, a.add_bos != 0, &a.p, error);
        if (r < 0)
                single_turn_abort(s);
        return r < 0 ? r : 1;
}

static int method_create_session(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct server *srv = userdata;
        _cleanup_(gen_args_done) struct gen_args a = {};
        _cleanup_(chat_template_done) struct chat_template t = {};
        struct served_model *sm;
        struct session *s;
        struct client *c;
        const char *model;
        int r;

        r = sd_bus_message_read(m, "s", &model);
        if (r < 0)
                return r;
        sm = find_model(srv, model, error);
        if (!sm)
                return sd_bus_error_is_set(error) ? -ENOENT : 1; /* loading: this runs again then */
        r = gen_args_init(&a, NULL);
        if (r < 0)
                return r;
        r = args_read_options(m, sm->rt->model, sm->rt->n_ctx, ARGS_SYSTEM_PROMPT | ARGS_TEMPLATE, &a, error);
        if (r < 0)
                return r;
        /* a chat session when the model has a template or the caller names one */
        if (a.template_name || sm->rt->model->vocab->chat_template) {
                r = args_chat_template(sm->rt->model, a.template_name, &t, error);
                if (r < 0)
                        return r;
        }
        if (srv->shutting_down)
                return sd_bus_error_set(error, NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
        r = clients_get(srv, m, &c, error);
        if (r < 0)
                return r;
        r = client_check_session(c, &srv->cfg, error);
        if (r >= 0)
                r = session_new(sm, c, &a.p, a.stops, &s);
        if (r < 0) {
                client_maybe_forget(c);
                return r;
        }
        a.stops = NULL; /* the session has them */
        if (a.template_name || sm->rt->model->vocab->chat_template) {
                /* the system message is a message: nothing to tokenize before the first turn */
                r = session_chat_new(&t, a.system_prompt, &s->chat);
                if (r >= 0)
                        r = session_start(s, m, NULL, error);
        } else
                r = session_start(s, m, a.system_prompt, error);
        if (r < 0) {
                session_close(s);
                client_maybe_forget(c);
        }
        return r;
}

static int method_get_stats(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct server *srv = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        struct stats_view v;
        struct npud_stats st;
        int r;

        r = stats_view_of(srv, m, &v);
        if (r < 0)
                return sd_bus_error_setf(error, NPUD_ERROR_ACCESS_DENIED, "cannot tell who the caller is: %s",
                                         strerror(-r));
        stats_collect(srv, &v, &st);
        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
#define ENTRY(key, type, value)                                                       \
        do {                                                                          \
                if (r >= 0)                                                           \
                        r = sd_bus_message_append(reply, "{sv}", key, type, value);   \
        } while (0)
        ENTRY("scope", "s", v.all ? "server" : "uid");
        ENTRY("kv_blocks_total", "t", st.kv_blocks_total);
        ENTRY("kv_blocks_used", "t", st.kv_blocks_used);
        ENTRY("kv_blocks_cached", "t", st.kv_blocks_cached);
        ENTRY("kv_block_tokens", "u", st.kv_block_tokens);
        ENTRY("kv_bytes_total", "t", st.kv_bytes_total);
        ENTRY("kv_bytes_used", "t", st.kv_bytes_used);
        ENTRY("active_requests", "u", st.active);
        ENTRY("queued_requests", "u", st.queued);
        ENTRY("sessions", "u", st.sessions);
        ENTRY("clients", "u", st.clients);
        ENTRY("prompt_tokens", "t", st.prompt_tokens);
        ENTRY("cached_prompt_tokens", "t", st.cached_prompt_tokens);
        ENTRY("generated_tokens", "t", st.generated_tokens);
        ENTRY("uptime_s", "d", (double)(now_ns() - srv->t_start) / 1e9);
        /* how busy the whole server is: for administrators only */
        if (v.all) {
                ENTRY("steps", "t", st.steps);
                ENTRY("tokens_per_s", "d", st.tokens_per_s);
                ENTRY("preemptions", "t", st.preemptions);
                ENTRY("recomputed_tokens", "t", st.recomputed_tokens);
        }
#undef ENTRY
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

void manager_props(struct server *srv, const struct stats_view *v, struct props *p)
{
        static const char *const cpu[] = { "cpu", NULL }, *const cpu_npu[] = { "cpu", "npu", NULL };
        struct npud_stats st;
        uint64_t total = 0;

        for (const struct served_model *m = srv->models; m; m = m->next)
                total += (uint64_t)m->rt->kv->n_blocks;
        props_add_s(p, "Version", NPUD_VERSION);
        props_add_as(p, "Backends", srv->devices ? cpu_npu : cpu);
        props_add_s(p, "DefaultModel", srv->default_model ? srv->default_model->name : "");
        props_add_u(p, "KVCacheBlocksTotal", (uint32_t)total);
        if (!v)
                return;
        /* the counters, as GetStats: the caller's own unless it is an administrator */
        stats_collect(srv, v, &st);
        props_add_u(p, "KVCacheBlocksUsed", (uint32_t)st.kv_blocks_used);
        props_add_u(p, "ActiveRequests", st.active);
        props_add_u(p, "QueuedRequests", st.queued);
}

static int property_get(sd_bus *bus, const char *path, const char *iface, const char *property,
                        sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        sd_bus_message *m = sd_bus_get_current_message(bus);
        struct server *srv = userdata;
        struct props p = {};
        struct stats_view v;
        bool per_caller = !strcmp(property, "KVCacheBlocksUsed") || !strcmp(property, "ActiveRequests") ||
                          !strcmp(property, "QueuedRequests");

        if (per_caller) {
                if (stats_view_of(srv, m, &v) < 0)
                        return sd_bus_error_set(error, NPUD_ERROR_ACCESS_DENIED, "cannot tell who the caller is");
                /* the caller hears of their changes from now on */
                bus_changes_watch(srv, sd_bus_message_get_sender(m), v.uid);
        }
        manager_props(srv, per_caller ? &v : NULL, &p);
        return props_reply(reply, &p, property);
}

const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_NAMES("ListModels", "", , "a(sa{sv})", SD_BUS_PARAM(models), method_list_models,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("LoadModel", "sa{sv}", SD_BUS_PARAM(path) SD_BUS_PARAM(options), "s",
                                 SD_BUS_PARAM(name), method_load_model, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("UnloadModel", "sa{sv}", SD_BUS_PARAM(name) SD_BUS_PARAM(options), "", ,
                                 method_unload_model, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("ListDevices", "", , "a(sa{sv})", SD_BUS_PARAM(devices), method_list_devices,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("AttachDevice", "sha{sv}", SD_BUS_PARAM(name) SD_BUS_PARAM(fd) SD_BUS_PARAM(options),
                                 "", , method_attach_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("DetachDevice", "sa{sv}", SD_BUS_PARAM(name) SD_BUS_PARAM(options), "", ,
                                 method_detach_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("Generate", "sva{sv}", SD_BUS_PARAM(model) SD_BUS_PARAM(prompt) SD_BUS_PARAM(options),
                                 "o", SD_BUS_PARAM(request), method_generate, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("Chat", "sa(ss)a{sv}", SD_BUS_PARAM(model) SD_BUS_PARAM(messages) SD_BUS_PARAM(options),
                                 "o", SD_BUS_PARAM(request), method_chat, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("CreateSession", "sa{sv}", SD_BUS_PARAM(model) SD_BUS_PARAM(options), "o",
                                 SD_BUS_PARAM(session), method_create_session, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetStats", "", , "a{sv}", SD_BUS_PARAM(stats), method_get_stats,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Reload", "", "", method_reload, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_PROPERTY("Version", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Backends", "as", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("DefaultModel", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("KVCacheBlocksTotal", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        /* per caller: PropertiesChanged goes to each connection that read them, with its own values */
        SD_BUS_PROPERTY("KVCacheBlocksUsed", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ActiveRequests", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("QueuedRequests", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_VTABLE_END,
};
