/* SPDX-License-Identifier: MIT */
/* Models loaded on demand, keep-alive and idle unload (see keep_alive.h). */
#include <sys/stat.h>

#include "bus_errors.h"
#include "keep_alive.h"
#include "server.h"

#define RETRY_USEC 100000ull /* a model in the middle of a step goes after it */

void model_keep_done(struct model_keep *k)
{
        free(k->claims);
        *k = (struct model_keep) {};
}

void keep_alive_used(struct served_model *m)
{
        m->keep.last_used = realtime_usec();
}

static uint64_t claim_until(const struct server *srv, int64_t keep_alive_us)
{
        if (keep_alive_us == KEEP_ALIVE_DEFAULT)
                keep_alive_us = srv->cfg.idle_unload_sec > 0 ? (int64_t)srv->cfg.idle_unload_sec * 1000000
                                                             : KEEP_ALIVE_FOREVER;
        if (keep_alive_us < 0)
                return UINT64_MAX;
        return monotonic_usec() + (uint64_t)keep_alive_us;
}

/* uid's claim on m is until (its last request's word stands, as in Ollama). */
static void set_claim(struct served_model *m, uid_t uid, uint64_t until)
{
        struct model_keep *k = &m->keep;
        struct keep_claim *v;

        for (size_t i = 0; i < k->n_claims; i++)
                if (k->claims[i].uid == uid) {
                        k->claims[i].until = until;
                        return;
                }
        v = reallocarray(k->claims, k->n_claims + 1, sizeof(*v));
        if (!v)
                return; /* the model may go earlier than this uid asked: nothing is lost */
        k->claims = v;
        k->claims[k->n_claims++] = (struct keep_claim) { .uid = uid, .until = until };
}

void keep_alive_request_ended(struct served_model *m, uid_t uid, int64_t keep_alive_us)
{
        m->keep.last_used = realtime_usec();
        if (!m->keep.pinned)
                set_claim(m, uid, claim_until(m->srv, keep_alive_us));
}

/* CLOCK_MONOTONIC usec when m may go; UINT64_MAX: not while busy, pinned, or kept for ever. */
static uint64_t expires_mono(const struct served_model *m)
{
        uint64_t until = 0;

        if (m->keep.pinned || m->keep.held || model_users(m) > 0)
                return UINT64_MAX;
        for (size_t i = 0; i < m->keep.n_claims; i++)
                until = MAX(until, m->keep.claims[i].until);
        return until;
}

uint64_t keep_alive_expires_at(const struct served_model *m)
{
        uint64_t until = expires_mono(m);

        if (until == UINT64_MAX)
                return 0;
        /* from the moment of loading, so that the value does not drift between reads */
        return m->keep.loaded_at + (until > m->keep.loaded_at_mono ? until - m->keep.loaded_at_mono : 0);
}

static int on_expiry(sd_event_source *es, uint64_t usec, void *userdata)
{
        keep_alive_update(userdata);
        return 0;
}

static void arm(struct server *srv, uint64_t at)
{
        int r = 0;

        if (!srv->expiry_timer) {
                if (at == UINT64_MAX)
                        return;
                r = sd_event_add_time(srv->event, &srv->expiry_timer, CLOCK_MONOTONIC, at, 0, on_expiry, srv);
        } else if (at != UINT64_MAX) {
                r = sd_event_source_set_time(srv->expiry_timer, at);
        }
        if (r >= 0 && srv->expiry_timer)
                r = sd_event_source_set_enabled(srv->expiry_timer, at == UINT64_MAX ? SD_EVENT_OFF : SD_EVENT_ONESHOT);
        if (r < 0)
                fprintf(stderr, "<4>npud: cannot arm the idle unload timer: %s\n", strerror(-r));
}

void keep_alive_update(struct server *srv)
{
        uint64_t now = monotonic_usec(), next = UINT64_MAX;

        if (srv->shutting_down)
                return;
        for (struct served_model *m = srv->models, *after; m; m = after) {
                uint64_t until = expires_mono(m);
                struct npu_err err = {};
                after = m->next;
                if (until > now) {
                        next = MIN(next, until);
                        continue;
                }
                _cleanup_free_ char *name = strdup(m->name);
                int r = model_unload(m, false, &err);
                if (r == -EAGAIN)
                        next = MIN(next, now + RETRY_USEC);
                else if (r < 0)
                        fprintf(stderr, "<4>npud: cannot unload the idle model: %s\n", err.msg);
                else
                        fprintf(stderr, "npud: '%s' was idle past its keep-alive: unloaded\n", name ? name : "?");
        }
        arm(srv, next);
}

/* ---- on demand */

/* A model of models_dir loading for the calls that named it, which run again once it is loaded. */
struct demand_load {
        struct demand_load *next;
        struct server *srv;
        char *name;
        uint64_t started; /* CLOCK_MONOTONIC usec */
        uid_t uid;        /* of the first call: its first claim */
        sd_bus_message **calls;
        size_t n_calls;
};

static void demand_load_free(struct demand_load *d)
{
        for (size_t i = 0; i < d->n_calls; i++)
                sd_bus_message_unref(d->calls[i]);
        free(d->calls);
        free(d->name);
        free(d);
}

static void demand_unlink(struct demand_load *d)
{
        for (struct demand_load **p = &d->srv->demand_loads; *p; p = &(*p)->next)
                if (*p == d) {
                        *p = d->next;
                        return;
                }
}

static size_t models_loaded(const struct server *srv)
{
        size_t n = 0;

        for (const struct served_model *m = srv->models; m; m = m->next)
                n++;
        for (const struct demand_load *d = srv->demand_loads; d; d = d->next)
                n++;
        return n;
}

/* Unloads the least recently used model that is idle and not pinned; false when there is none. */
static bool evict_one(struct server *srv)
{
        struct served_model *lru = NULL;
        struct npu_err err = {};

        for (struct served_model *m = srv->models; m; m = m->next)
                if (!m->keep.pinned && !m->keep.held && model_users(m) == 0 && srv->stepping != m &&
                    (!lru || m->keep.last_used < lru->keep.last_used))
                        lru = m;
        if (!lru)
                return false;
        fprintf(stderr, "npud: unloading '%s', idle, to load another (max_loaded_models = %d)\n", lru->name,
                srv->cfg.max_loaded_models);
        return model_unload(lru, false, &err) >= 0;
}

/* The Manager's handler of call's method, to run it again. */
static sd_bus_message_handler_t manager_method(sd_bus_message *call)
{
        const char *member = sd_bus_message_get_member(call);

        for (const sd_bus_vtable *v = manager_vtable; member && v->type != _SD_BUS_VTABLE_END; v++)
                if (v->type == _SD_BUS_VTABLE_METHOD && !strcmp(v->x.method.member, member))
                        return v->x.method.handler;
        return NULL;
}

/* Runs call's method again (its model is loaded); an error it returns is its reply. */
static void redispatch(struct server *srv, sd_bus_message *call)
{
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message_handler_t handler = manager_method(call);
        int r;

        if (!handler || sd_bus_message_rewind(call, true) < 0) {
                (void)sd_bus_reply_method_errorf(call, NPUD_ERROR_FAILED, "cannot run the call again");
                return;
        }
        srv->redispatching = call;
        r = handler(call, srv, &error);
        srv->redispatching = NULL;
        if (r < 0) {
                if (!sd_bus_error_is_set(&error))
                        sd_bus_error_set_errno(&error, r);
                (void)sd_bus_reply_method_error(call, &error);
        }
}

static void on_demand_loaded(struct server *srv, struct served_model *m, int r, const struct npu_err *err,
                             void *userdata)
{
        struct demand_load *d = userdata;
        _cleanup_free_ char *as = m && r >= 0 ? strdup(m->name) : NULL;

        demand_unlink(d);
        if (r >= 0 && m->keep.loaded_at_mono >= d->started) {
                /* new, not the file loaded meanwhile under another name: it stays as long as it is asked to */
                m->keep.pinned = false;
                set_claim(m, d->uid, claim_until(srv, KEEP_ALIVE_DEFAULT));
        }
        if (r >= 0)
                m->keep.held++; /* a call's keep_alive 0 must not unload it under the calls after it */
        for (size_t i = 0; i < d->n_calls; i++) {
                if (r >= 0 && models_find(srv, d->name))
                        redispatch(srv, d->calls[i]);
                else if (r >= 0)
                        /* the file was loaded already, under another name (or the model went meanwhile) */
                        (void)sd_bus_reply_method_errorf(d->calls[i], NPUD_ERROR_NO_SUCH_MODEL,
                                                         "%s/%s.gguf is loaded as '%s': use that name",
                                                         srv->cfg.models_dir, d->name, as ? as : "?");
                else if (r == -ECANCELED)
                        (void)sd_bus_reply_method_errorf(d->calls[i], NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
                else
                        (void)sd_bus_reply_method_errorf(d->calls[i], NPUD_ERROR_BAD_MODEL, "cannot load '%s': %s",
                                                         d->name, err->msg);
        }
        demand_load_free(d);
        if (r >= 0) {
                m->keep.held--;
                keep_alive_update(srv);
        }
}

static int demand_add_call(struct demand_load *d, sd_bus_message *call)
{
        sd_bus_message **v = reallocarray(d->calls, d->n_calls + 1, sizeof(*v));

        if (!v)
                return -ENOMEM;
        d->calls = v;
        d->calls[d->n_calls++] = sd_bus_message_ref(call);
        return 0;
}

static int no_such_model(struct server *srv, const char *name, sd_bus_error *error)
{
        const char *dir = srv->cfg.models_dir;

        if (!dir || !dir[0])
                return sd_bus_error_setf(error, NPUD_ERROR_NO_SUCH_MODEL, "no model named '%s' is loaded", name);
        return sd_bus_error_setf(error, NPUD_ERROR_NO_SUCH_MODEL, "no model named '%s' is loaded, and %s has no such "
                                 "model", name, dir);
}

int models_get_or_load(struct server *srv, sd_bus_message *call, const char *name, struct served_model **ret,
                       sd_bus_error *error)
{
        _cleanup_free_ char *path = NULL;
        struct served_model *m = models_find(srv, name);
        struct demand_load *d;
        struct npu_err err = {};
        struct stat st;
        uid_t uid;
        int r;

        if (m) {
                *ret = m;
                return 1;
        }
        if (!name[0])
                return sd_bus_error_set(error, NPUD_ERROR_NO_SUCH_MODEL, "no default model is loaded");
        if (!srv->cfg.models_dir || !srv->cfg.models_dir[0] || !model_name_valid(name))
                return no_such_model(srv, name, error);
        for (d = srv->demand_loads; d; d = d->next)
                if (!strcmp(d->name, name))
                        return demand_add_call(d, call) < 0 ? -ENOMEM : 0;
        if (asprintf(&path, "%s/%s.gguf", srv->cfg.models_dir, name) < 0)
                return -ENOMEM;
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
                return no_such_model(srv, name, error);
        if (srv->shutting_down)
                return sd_bus_error_set(error, NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
        r = bus_message_uid(call, &uid);
        if (r < 0)
                return sd_bus_error_setf(error, NPUD_ERROR_ACCESS_DENIED, "cannot tell who the caller is: %s",
                                         strerror(-r));
        while (models_loaded(srv) >= (size_t)srv->cfg.max_loaded_models)
                if (!evict_one(srv))
                        return sd_bus_error_setf(error, NPUD_ERROR_BUSY,
                                                 "%zu models are loaded or loading (max_loaded_models) and none is "
                                                 "idle: try again later", models_loaded(srv));
        d = calloc(1, sizeof(*d));
        if (!d || !(d->name = strdup(name)) || demand_add_call(d, call) < 0) {
                if (d)
                        demand_load_free(d);
                return -ENOMEM;
        }
        d->srv = srv;
        d->uid = uid;
        d->started = monotonic_usec();
        /* linked first: a file loaded already answers at once (then d is gone) */
        d->next = srv->demand_loads;
        srv->demand_loads = d;
        fprintf(stderr, "npud: loading '%s' on demand\n", name);
        r = models_load(srv, path, name, false, on_demand_loaded, d, &err);
        if (r < 0) {
                demand_unlink(d);
                demand_load_free(d);
                return sd_bus_error_setf(error, r == -ENOMEM ? NPUD_ERROR_FAILED : NPUD_ERROR_BAD_MODEL,
                                         "cannot load '%s': %s", name, err.msg);
        }
        return 0;
}

void demand_loads_free_all(struct server *srv)
{
        while (srv->demand_loads) {
                struct demand_load *d = srv->demand_loads;
                srv->demand_loads = d->next;
                for (size_t i = 0; i < d->n_calls; i++)
                        (void)sd_bus_reply_method_errorf(d->calls[i], NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
                demand_load_free(d);
        }
}
