/* SPDX-License-Identifier: MIT */
/* The loaded models: each with its runtime, its scheduler and its sessions (see served_model.h). */
#include <libgen.h>
#include <sys/stat.h>

#include "bus_changes.h"
#include "bus_errors.h"
#include "list.h"
#include "server.h"
#include "vocab.h"
#include "worker.h"

/* --- the scheduler's events, routed to the requests and sessions --- */

static void on_sched_tokens(struct sched_request *sr, void *userdata)
{
        struct request *r = sr->userdata;

        if (!r->dropped)
                request_on_tokens(r);
}

static void on_sched_finished(struct sched_request *sr, void *userdata)
{
        struct served_model *m = userdata;
        struct request *r = sr->userdata;
        struct client *c = r->client;

        if (!r->dropped && r->session->turn == r)
                session_turn_finished(r->session, r);
        if (!r->dropped)
                keep_alive_request_ended(m, r->session->uid, r->keep_alive_us);
        request_on_finished(r);
        if (c) {
                /* r, its session and c may go here */
                sessions_trim_finished(c, m->srv->cfg.max_finished_kept);
                client_maybe_forget(c);
        }
}

static int32_t on_sched_reclaim(struct scheduler *s, int32_t n, void *userdata)
{
        return sessions_reclaim(userdata, n);
}

static const struct sched_events model_sched_events = {
        .tokens = on_sched_tokens,
        .finished = on_sched_finished,
        .reclaim = on_sched_reclaim,
};

/* --- loading --- */

void model_limits(const struct npud_config *cfg, struct sched_limits *ret)
{
        *ret = (struct sched_limits) {
                .max_active = cfg->max_active,
                .max_batch_tokens = cfg->max_batch_tokens,
                .prefill_chunk = cfg->prefill_chunk,
                .max_queue = cfg->max_queue,
                .max_active_per_uid = cfg->max_active_per_uid,
                .kv_percent_per_uid = cfg->kv_percent_per_uid,
        };
}

void models_apply_limits(struct server *srv)
{
        struct sched_limits lim;

        model_limits(&srv->cfg, &lim);
        for (struct served_model *m = srv->models; m; m = m->next) {
                struct npu_err err = {};
                if (scheduler_set_limits(m->sched, &lim, &err) < 0)
                        fprintf(stderr, "<4>npud: '%s' keeps its scheduler limits: %s\n", m->name, err.msg);
        }
}

struct served_model *model_ref(struct served_model *m)
{
        m->n_refs++;
        return m;
}

void model_unref(struct served_model *m)
{
        if (!m || --m->n_refs > 0)
                return;
        runtime_free(m->rt);
        model_keep_done(&m->keep);
        free(m->name);
        free(m->path);
        free(m);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(struct served_model *, model_unref);

/* Its work and its scheduler go now; the rest when the last job reading it is done. */
static void served_model_free(struct served_model *m)
{
        if (!m)
                return;
        if (m->unload_call)
                sd_bus_reply_method_errorf(m->unload_call, NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
        m->unload_call = sd_bus_message_unref(m->unload_call);
        while (m->sessions_head)
                session_close(m->sessions_head);
        scheduler_free(m->sched, SCHED_STOP_UNLOADED);
        m->sched = NULL;
        model_unref(m);
}

static size_t longest_token(const struct npu_vocab *v)
{
        size_t n = 1;

        /* a piece as stored is at least as long as the text it stands for */
        for (int32_t i = 0; i < v->n; i++)
                n = MAX(n, (size_t)v->tokens[i].len);
        return n;
}

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

bool model_name_valid(const char *name)
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

/* Checks a new model's name against the loaded ones; 0, or < 0 with err set. */
static int check_name(struct server *srv, const char *name, struct npu_err *err)
{
        if (!model_name_valid(name))
                return npu_err_set(err, -EINVAL, "model name '%s': use 1 to 128 of A-Z a-z 0-9 . _ -", name);
        for (struct served_model *old = srv->models; old; old = old->next)
                if (!strcmp(old->name, name))
                        return npu_err_set(err, -EEXIST, "a model named '%s' is loaded already", name);
        return 0;
}

static struct served_model *loaded_file(struct server *srv, dev_t dev, ino_t ino)
{
        for (struct served_model *m = srv->models; m; m = m->next)
                if (m->dev == dev && m->ino == ino)
                        return m;
        return NULL;
}

/* The work of loading (the weights, the KV pool, the threads), on the loader worker. */
struct load_job {
        struct worker_job base;
        struct server *srv;
        char *path;
        char *name;
        bool make_default;
        struct runtime_opts opts;
        dev_t dev;
        ino_t ino;
        models_loaded_fn then;
        void *userdata;
        struct model_loading *loading; /* its Model object meanwhile, with the progress */
        /* the result */
        struct runtime *rt;
        size_t max_token_bytes;
        int r;
        struct npu_err err;
};

static void load_run(struct worker_job *base)
{
        struct load_job *job = (struct load_job *)base;

        job->r = runtime_open(&job->opts, &job->rt, &job->err);
        if (job->r >= 0)
                job->max_token_bytes = longest_token(job->rt->model->vocab);
}

/* On the event loop: the runtime becomes a served model, unless things changed meanwhile. */
static int load_finish(struct load_job *job, struct served_model **ret)
{
        struct server *srv = job->srv;
        _cleanup_(model_unrefp) struct served_model *m = NULL;
        struct sched_events ev = model_sched_events;
        struct sched_limits lim;
        char tok[128];
        struct served_model *old;
        int r;

        if (job->r < 0)
                return job->r;
        if (srv->shutting_down)
                return npu_err_set(&job->err, -ECANCELED, "npud is stopping");
        /* the same file loaded meanwhile: that one is shared */
        old = loaded_file(srv, job->dev, job->ino);
        if (old) {
                if (job->make_default)
                        srv->default_model = old;
                *ret = old;
                return 0;
        }
        r = check_name(srv, job->name, &job->err);
        if (r < 0)
                return r;
        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->n_refs = 1;
        m->srv = srv;
        m->dev = job->dev;
        m->ino = job->ino;
        m->path = TAKE_PTR(job->path);
        m->name = TAKE_PTR(job->name);
        m->rt = TAKE_PTR(job->rt);
        m->max_token_bytes = job->max_token_bytes;
        m->keep.file_bytes = job->loading ? atomic_load(&job->loading->total) : 0;
        m->keep.loaded_at = m->keep.last_used = realtime_usec();
        m->keep.loaded_at_mono = monotonic_usec();
        m->keep.pinned = true; /* the administrator's (npud.conf, LoadModel); on demand: keep_alive.c unpins it */
        ev.userdata = m;
        model_limits(&srv->cfg, &lim);
        r = scheduler_new(m->rt, &lim, &ev, &m->sched, &job->err);
        if (r < 0)
                return r;
        m->next = srv->models;
        srv->models = m;
        devices_model_loaded(srv, m);
        if (job->make_default || !srv->default_model)
                srv->default_model = m;
        vocab_describe(m->rt->model->vocab, tok, sizeof(tok));
        fprintf(stderr, "npud: loaded %s as '%s': %s, %d layers, context %d, KV pool %d blocks of %d tokens; "
                        "tokenizer %s\n",
                m->path, m->name, precision_name(m->rt->model->precision), m->rt->model->hp.n_layers, m->rt->n_ctx,
                m->rt->kv->n_blocks, m->rt->kv->block_size, tok);
        *ret = TAKE_PTR(m);
        server_kick(srv);
        return 0;
}

static void load_done(struct worker_job *base, bool cancelled)
{
        struct load_job *job = (struct load_job *)base;
        struct served_model *m = NULL;
        int r;

        if (cancelled)
                r = npu_err_set(&job->err, -ECANCELED, "npud is stopping");
        else
                r = load_finish(job, &m);
        model_loading_free(TAKE_PTR(job->loading)); /* the model is served now, or failed */
        /* its object's final state (all bytes read) is on the bus before any reply saying it loaded */
        if (r >= 0)
                bus_changes_publish(job->srv);
        job->then(job->srv, r < 0 ? NULL : m, r, &job->err, job->userdata);
        runtime_free(job->rt);
        free(job->path);
        free(job->name);
        free(job);
}

int models_load(struct server *srv, const char *path, const char *name, bool make_default, models_loaded_fn then,
                void *userdata, struct npu_err *err)
{
        const struct npud_config *cfg = &srv->cfg;
        struct served_model *old;
        struct load_job *job;
        struct stat st;
        int r;

        if (path[0] != '/')
                return npu_err_set(err, -EINVAL, "the model path must be absolute: %s", path);
        if (stat(path, &st) < 0)
                return npu_err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
        /* a model loaded already is shared, not loaded again */
        old = loaded_file(srv, st.st_dev, st.st_ino);
        if (old) {
                if (make_default)
                        srv->default_model = old;
                then(srv, old, 0, err, userdata);
                return 0;
        }
        job = calloc(1, sizeof(*job));
        if (!job)
                return -ENOMEM;
        job->path = strdup(path);
        job->name = name && name[0] ? strdup(name) : name_from_path(path);
        if (!job->path || !job->name) {
                free(job->path);
                free(job->name);
                free(job);
                return -ENOMEM;
        }
        r = check_name(srv, job->name, err);
        if (r < 0) {
                free(job->path);
                free(job->name);
                free(job);
                return r;
        }
        job->base.run = load_run;
        job->base.done = load_done;
        job->srv = srv;
        job->make_default = make_default;
        job->dev = st.st_dev;
        job->ino = st.st_ino;
        job->then = then;
        job->userdata = userdata;
        runtime_opts_default(&job->opts);
        job->opts.model_path = job->path;
        job->opts.threads = cfg->threads;
        job->opts.n_ctx = cfg->n_ctx;
        job->opts.n_seq = cfg->max_active;
        job->opts.max_batch = cfg->max_batch_tokens;
        job->opts.kv_type = cfg->kv_type;
        job->opts.attention = cfg->flash_attention ? ATTENTION_FLASH : ATTENTION_DEFAULT;
        job->opts.kv_budget = (size_t)cfg->kv_budget_mb << 20;
        if (model_loading_new(srv, job->name, job->path, &job->loading) >= 0) {
                job->opts.progress = model_loading_progress;
                job->opts.progress_userdata = job->loading;
        }
        fprintf(stderr, "npud: loading %s\n", path);
        worker_queue(srv->loader, &job->base);
        return 0;
}

uint64_t model_n_params(const struct served_model *sm)
{
        const struct npu_model *m = sm->rt->model;
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

/* --- sessions --- */

void model_add_session(struct served_model *m, struct session *s)
{
        LIST_APPEND(m->sessions_head, m->sessions_tail, s, prev, next);
}

void model_remove_session(struct served_model *m, struct session *s)
{
        LIST_REMOVE(m->sessions_head, m->sessions_tail, s, prev, next);
}

uint32_t model_users(const struct served_model *m)
{
        uint32_t n = 0;

        for (const struct session *s = m->sessions_head; s; s = s->next) {
                if (!session_is_single(s))
                        n++;
                for (const struct request *r = s->requests_head; r; r = r->next)
                        n += !r->finished;
        }
        return n;
}

/* --- unloading --- */

int model_unload(struct served_model *m, bool force, struct npu_err *err)
{
        struct server *srv = m->srv;
        uint32_t users = model_users(m);

        if (users > 0 && !force)
                return npu_err_set(err, -EBUSY, "model '%s' has %u requests or sessions; force to cancel them",
                                   m->name, users);
        if (srv->stepping == m)
                return npu_err_set(err, -EAGAIN, "model '%s' is in the middle of a step; try again", m->name);
        /*
         * The owners hear "unloaded". Between steps each cancel finishes its
         * request at once, and may free it and others (max_finished_kept):
         * look again from the start each time.
         */
        for (uint32_t left = users; left > 0; left--) {
                struct request *r = NULL;
                for (struct session *s = m->sessions_head; s && !r; s = s->next)
                        for (r = s->requests_head; r && (r->finished || !r->sr); r = r->next)
                                ;
                if (!r)
                        break;
                request_cancel(r, SCHED_STOP_UNLOADED);
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

void models_run_pending(struct server *srv)
{
        for (struct served_model *m = srv->models, *next; m; m = next) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = TAKE_PTR(m->unload_call);
                struct npu_err err = {};
                int r;

                next = m->next;
                if (!call)
                        continue;
                r = model_unload(m, m->unload_force, &err);
                if (r < 0)
                        sd_bus_reply_method_errorf(call, NPUD_ERROR_BUSY, "%s", err.msg);
                else
                        sd_bus_reply_method_return(call, NULL);
        }
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
