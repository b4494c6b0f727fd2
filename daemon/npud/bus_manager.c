/* SPDX-License-Identifier: MIT */
/* The Manager interface at /org/npud/Inference1: models, devices, generation, sessions, statistics. */
#include "bus_args.h"
#include "bus_errors.h"
#include "server.h"

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

static struct served_model *find_model(struct server *srv, const char *name, sd_bus_error *error)
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

static uint64_t count_params(const struct npu_model *m)
{
        uint64_t n = (uint64_t)m->tok_embd.rows * m->tok_embd.cols;

        if (m->output.data != m->tok_embd.data)
                n += (uint64_t)m->output.rows * m->output.cols;
        for (int32_t l = 0; l < m->hp.n_layers; l++) {
                const struct npu_layer *y = &m->layers[l];
                const struct npu_weight *w[] = { &y->wq, &y->wk, &y->wv, &y->wo, &y->w_gate, &y->w_up, &y->w_down };
                for (size_t i = 0; i < ARRAY_SIZE(w); i++)
                        n += (uint64_t)w[i]->rows * w[i]->cols;
        }
        return n;
}

static int append_model(sd_bus_message *reply, struct server *srv, const struct served_model *m)
{
        const struct npu_hparams *hp = &m->rt->model->hp;

        return sd_bus_message_append(reply, "(sa{sv})", m->name, 12,
                                     "path", "s", m->path,
                                     "precision", "s", precision_name(m->rt->model->precision),
                                     "n_ctx", "u", (uint32_t)m->rt->n_ctx,
                                     "n_layers", "u", (uint32_t)hp->n_layers,
                                     "n_embd", "u", (uint32_t)hp->dim,
                                     "n_vocab", "u", (uint32_t)hp->n_vocab,
                                     "n_params", "t", count_params(m->rt->model),
                                     "weight_bytes", "t", (uint64_t)m->rt->model->weight_bytes,
                                     "default", "b", m == srv->default_model,
                                     "requests", "u", m->n_users,
                                     "backend", "s", m->device ? "npu" : "cpu",
                                     "device", "s", m->device ? m->device->name : "cpu");
}

static int method_list_models(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct server *srv = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(sa{sv})");
        if (r < 0)
                return r;
        for (struct served_model *sm = srv->models; sm; sm = sm->next) {
                r = append_model(reply, srv, sm);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int read_load_options(sd_bus_message *m, char **name, bool *make_default, sd_bus_error *error)
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

static int method_load_model(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct server *srv = userdata;
        _cleanup_free_ char *name = NULL;
        struct served_model *sm;
        struct npu_err err = {};
        bool make_default = false;
        const char *path;
        int r;

        r = sd_bus_message_read(m, "s", &path);
        if (r < 0)
                return r;
        r = read_load_options(m, &name, &make_default, error);
        if (r < 0)
                return r;
        r = clients_require_admin(srv, m, "load or unload models", error);
        if (r < 0)
                return r;
        if (srv->shutting_down)
                return sd_bus_error_set(error, NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
        r = models_load(srv, path, name, make_default, &sm, &err);
        if (r < 0)
                return reply_model_error(error, r, &err);
        return sd_bus_reply_method_return(m, "s", sm->name);
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
        r = clients_require_admin(srv, m, "load or unload models", error);
        if (r < 0)
                return r;
        if (!name[0])
                return sd_bus_error_set(error, NPUD_ERROR_INVALID_ARGUMENT, "name the model to unload");
        sm = find_model(srv, name, error);
        if (!sm)
                return -ENOENT;
        r = models_unload(srv, sm, force, &err);
        if (r < 0)
                return reply_model_error(error, r, &err);
        server_kick(srv);
        return sd_bus_reply_method_return(m, NULL);
}

static int method_generate(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct server *srv = userdata;
        _cleanup_(prompt_arg_done) struct prompt_arg pa = {};
        _cleanup_(gen_args_done) struct gen_args a = {};
        _cleanup_free_ int32_t *ids = NULL;
        struct served_model *sm;
        struct bus_request *br;
        struct client *c;
        const char *model;
        int32_t n;
        int r;

        r = sd_bus_message_read(m, "s", &model);
        if (r < 0)
                return r;
        sm = find_model(srv, model, error);
        if (!sm)
                return -ENOENT;
        r = args_read_prompt(m, &pa, error);
        if (r < 0)
                return r;
        r = gen_args_init(&a, NULL);
        if (r < 0)
                return r;
        r = args_read_options(m, sm->rt->model, sm->rt->n_ctx, 0, &a, error);
        if (r < 0)
                return r;
        r = args_tokenize(sm->rt->model, &pa, a.add_bos != 0, &ids, &n, error);
        if (r < 0)
                return r;
        r = clients_get(srv, m, &c, error);
        if (r < 0)
                return r;
        r = request_create(srv, c, sm, NULL, ids, n, &a.p, NULL, &br, error);
        if (r < 0) {
                client_maybe_forget(srv, c);
                return r;
        }
        return sd_bus_reply_method_return(m, "o", br->path);
}

/*
 * Chat: the messages rendered through the model's chat template (or the one
 * the template option names), the assistant's turn opened unless the last
 * message is the assistant's own, which it then continues. Control tokens in
 * the messages stay text.
 */
static int method_chat(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct server *srv = userdata;
        _cleanup_(chat_args_done) struct chat_args msgs = {};
        _cleanup_(gen_args_done) struct gen_args a = {};
        _cleanup_(chat_template_done) struct chat_template t = {};
        _cleanup_free_ int32_t *ids = NULL;
        struct served_model *sm;
        struct bus_request *br;
        struct client *c;
        const char *model;
        int32_t n;
        int r;

        r = sd_bus_message_read(m, "s", &model);
        if (r < 0)
                return r;
        sm = find_model(srv, model, error);
        if (!sm)
                return -ENOENT;
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
        r = args_tokenize_chat(sm->rt->model, &t, msgs.m, msgs.n, msgs.m[msgs.n - 1].role != CHAT_ROLE_ASSISTANT,
                               a.add_bos, &ids, &n, error);
        if (r < 0)
                return r;
        r = clients_get(srv, m, &c, error);
        if (r < 0)
                return r;
        r = request_create(srv, c, sm, NULL, ids, n, &a.p, NULL, &br, error);
        if (r < 0) {
                client_maybe_forget(srv, c);
                return r;
        }
        return sd_bus_reply_method_return(m, "o", br->path);
}

static int method_create_session(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct server *srv = userdata;
        struct served_model *sm;
        struct bus_session *s;
        struct client *c;
        const char *model;
        int r;

        r = sd_bus_message_read(m, "s", &model);
        if (r < 0)
                return r;
        sm = find_model(srv, model, error);
        if (!sm)
                return -ENOENT;
        if (srv->shutting_down)
                return sd_bus_error_set(error, NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
        r = clients_get(srv, m, &c, error);
        if (r < 0)
                return r;
        r = session_create(srv, c, sm, m, &s, error);
        if (r < 0) {
                client_maybe_forget(srv, c);
                return r;
        }
        return sd_bus_reply_method_return(m, "o", s->path);
}

static int method_get_stats(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct server *srv = userdata;
        uint64_t blocks = 0, used = 0, cached = 0, block_bytes = 0, used_bytes = 0, total_bytes = 0;
        uint64_t prompt = 0, cached_prompt = 0, generated = 0, steps = 0;
        uint32_t active = 0, queued = 0, sessions = 0, clients = 0, block_tokens = 0;

        for (struct served_model *sm = srv->models; sm; sm = sm->next) {
                const struct kv_pool *kv = sm->rt->kv;
                const struct sched_stats *st = &sm->sched->stats;
                int32_t u = sched_kv_blocks_used(sm->sched);
                blocks += kv->n_blocks;
                used += u;
                cached += prefix_cache_idle_blocks(sm->sched->pc);
                block_bytes = kv->block_bytes;
                block_tokens = kv->block_size;
                total_bytes += (uint64_t)kv->n_blocks * kv->block_bytes;
                used_bytes += (uint64_t)u * kv->block_bytes;
                active += sm->sched->n_active;
                queued += sm->sched->n_queued;
                prompt += st->prompt_tokens;
                cached_prompt += st->cached_prompt_tokens;
                generated += st->generated_tokens;
                steps += st->steps;
        }
        (void)block_bytes;
        for (struct bus_session *s = srv->sessions_head; s; s = s->next)
                sessions++;
        for (struct client *c = srv->clients; c; c = c->next)
                clients++;
        return sd_bus_reply_method_return(m, "a{sv}", 16,
                                          "kv_blocks_total", "t", blocks,
                                          "kv_blocks_used", "t", used,
                                          "kv_blocks_cached", "t", cached,
                                          "kv_block_tokens", "u", block_tokens,
                                          "kv_bytes_total", "t", total_bytes,
                                          "kv_bytes_used", "t", used_bytes,
                                          "active_requests", "u", active,
                                          "queued_requests", "u", queued,
                                          "sessions", "u", sessions,
                                          "clients", "u", clients,
                                          "prompt_tokens", "t", prompt,
                                          "cached_prompt_tokens", "t", cached_prompt,
                                          "generated_tokens", "t", generated,
                                          "steps", "t", steps,
                                          "tokens_per_s", "d", server_tokens_per_s(srv),
                                          "uptime_s", "d", (double)(now_ns() - srv->t_start) / 1e9);
}

static int property_get(sd_bus *bus, const char *path, const char *iface, const char *property,
                        sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        struct server *srv = userdata;
        uint32_t total = 0, used = 0, active = 0;

        for (struct served_model *sm = srv->models; sm; sm = sm->next) {
                total += sm->rt->kv->n_blocks;
                used += sched_kv_blocks_used(sm->sched);
                active += sm->sched->n_active + sm->sched->n_queued;
        }
        if (!strcmp(property, "Version"))
                return sd_bus_message_append(reply, "s", NPUD_VERSION);
        if (!strcmp(property, "Backends"))
                return srv->devices ? sd_bus_message_append(reply, "as", 2, "cpu", "npu")
                                    : sd_bus_message_append(reply, "as", 1, "cpu");
        if (!strcmp(property, "DefaultModel"))
                return sd_bus_message_append(reply, "s", srv->default_model ? srv->default_model->name : "");
        if (!strcmp(property, "KVCacheBlocksTotal"))
                return sd_bus_message_append(reply, "u", total);
        if (!strcmp(property, "KVCacheBlocksUsed"))
                return sd_bus_message_append(reply, "u", used);
        if (!strcmp(property, "ActiveRequests"))
                return sd_bus_message_append(reply, "u", active);
        return -ENOENT;
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
        SD_BUS_PROPERTY("Version", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Backends", "as", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("DefaultModel", "s", property_get, 0, 0),
        SD_BUS_PROPERTY("KVCacheBlocksTotal", "u", property_get, 0, 0),
        SD_BUS_PROPERTY("KVCacheBlocksUsed", "u", property_get, 0, 0),
        SD_BUS_PROPERTY("ActiveRequests", "u", property_get, 0, 0),
        SD_BUS_VTABLE_END,
};
