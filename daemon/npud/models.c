/* SPDX-License-Identifier: MIT */
/* The loaded models: each with its runtime (weights, KV pool, threads) and its scheduler. */
#include <libgen.h>
#include <sys/stat.h>

#include "server.h"

static void served_model_free(struct served_model *m)
{
        if (!m)
                return;
        scheduler_free(m->sched, SCHED_STOP_UNLOADED);
        runtime_free(m->rt);
        free(m->name);
        free(m->path);
        free(m);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(struct served_model *, served_model_free);

struct served_model *models_find(struct server *srv, const char *name)
{
        if (!name || !name[0])
                return srv->default_model;
        for (struct served_model *m = srv->models; m; m = m->next)
                if (!strcmp(m->name, name))
                        return m;
        return NULL;
}

static char *name_from_path(const char *path)
{
        _cleanup_free_ char *copy = strdup(path);
        char *base, *dot;

        if (!copy)
                return NULL;
        base = basename(copy);
        dot = strrchr(base, '.');
        if (dot && dot != base && !strcmp(dot, ".gguf"))
                *dot = 0;
        return strdup(base);
}

static bool valid_name(const char *name)
{
        size_t n = strlen(name);

        if (n == 0 || n > 128)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!(name[i] == '-' || name[i] == '_' || name[i] == '.' || (name[i] >= '0' && name[i] <= '9') ||
                      (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z')))
                        return false;
        return true;
}

int models_load(struct server *srv, const char *path, const char *name, bool make_default, struct served_model **ret,
                struct npu_err *err)
{
        const struct npud_config *cfg = &srv->cfg;
        _cleanup_(served_model_freep) struct served_model *m = NULL;
        struct sched_events ev = request_sched_events;
        struct sched_limits lim = { .max_active = cfg->max_active, .max_batch_tokens = cfg->max_batch_tokens,
                                    .prefill_chunk = cfg->prefill_chunk };
        struct runtime_opts o;
        struct stat st;
        int r;

        if (path[0] != '/')
                return npu_err_set(err, -EINVAL, "the model path must be absolute: %s", path);
        if (stat(path, &st) < 0)
                return npu_err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
        /* a model loaded already is shared, not loaded again */
        for (struct served_model *old = srv->models; old; old = old->next)
                if (old->dev == st.st_dev && old->ino == st.st_ino) {
                        if (make_default)
                                srv->default_model = old;
                        *ret = old;
                        return 0;
                }
        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->srv = srv;
        m->dev = st.st_dev;
        m->ino = st.st_ino;
        m->path = strdup(path);
        m->name = name && name[0] ? strdup(name) : name_from_path(path);
        if (!m->path || !m->name)
                return -ENOMEM;
        if (!valid_name(m->name))
                return npu_err_set(err, -EINVAL, "model name '%s': use 1 to 128 of A-Z a-z 0-9 . _ -", m->name);
        for (struct served_model *old = srv->models; old; old = old->next)
                if (!strcmp(old->name, m->name))
                        return npu_err_set(err, -EEXIST, "a model named '%s' is loaded already", m->name);

        runtime_opts_default(&o);
        o.model_path = path;
        o.threads = cfg->threads;
        o.n_ctx = cfg->n_ctx;
        o.n_seq = cfg->max_active;
        o.max_batch = cfg->max_batch_tokens;
        o.kv_type = cfg->kv_type;
        o.attention = cfg->flash_attention ? ATTENTION_FLASH : ATTENTION_DEFAULT;
        o.kv_budget = (size_t)cfg->kv_budget_mb << 20;
        r = runtime_open(&o, &m->rt, err);
        if (r < 0)
                return r;
        ev.userdata = srv;
        r = scheduler_new(m->rt, &lim, &ev, &m->sched, err);
        if (r < 0)
                return r;
        m->next = srv->models;
        srv->models = m;
        devices_model_loaded(srv, m);
        if (make_default || !srv->default_model)
                srv->default_model = m;
        fprintf(stderr, "npud: loaded %s as '%s': %s, %d layers, context %d, KV pool %d blocks of %d tokens\n", path,
                m->name, precision_name(m->rt->model->precision), m->rt->model->hp.n_layers, m->rt->n_ctx,
                m->rt->kv->n_blocks, m->rt->kv->block_size);
        *ret = TAKE_PTR(m);
        return 0;
}

int models_unload(struct server *srv, struct served_model *m, bool force, struct npu_err *err)
{
        if (m->n_users > 0 && !force)
                return npu_err_set(err, -EBUSY, "model '%s' has %u requests or sessions; force to cancel them",
                                   m->name, m->n_users);
        if (srv->stepping == m)
                return npu_err_set(err, -EAGAIN, "model '%s' is in the middle of a step; try again", m->name);
        /* sessions and requests on this model go with it */
        for (struct bus_session *s = srv->sessions_head, *next; s; s = next) {
                next = s->next;
                if (s->model == m)
                        session_free(s);
        }
        /* a finished callback may free other requests: look again from the start each time */
        for (;;) {
                struct bus_request *br = srv->requests_head;
                while (br && (br->model != m || br->finished))
                        br = br->next;
                if (!br)
                        break;
                sched_cancel(br->sr, SCHED_STOP_UNLOADED);
        }
        for (struct bus_request *br = srv->requests_head, *next; br; br = next) {
                next = br->next;
                if (br->model == m)
                        request_free(br);
        }
        for (struct served_model **p = &srv->models; *p; p = &(*p)->next)
                if (*p == m) {
                        *p = m->next;
                        break;
                }
        if (srv->default_model == m)
                srv->default_model = srv->models;
        if (srv->last_stepped == m)
                srv->last_stepped = NULL;
        devices_model_unloading(m);
        fprintf(stderr, "npud: unloaded '%s'\n", m->name);
        served_model_free(m);
        return 0;
}

void models_free_all(struct server *srv)
{
        while (srv->models) {
                struct served_model *m = srv->models;
                srv->models = m->next;
                devices_model_unloading(m);
                served_model_free(m);
        }
        srv->default_model = NULL;
}
