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

        if (m->keep.pinned || model_users(m) > 0)
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

static size_t models_loaded(const struct server *srv)
{
        size_t n = 0;

        for (const struct served_model *m = srv->models; m; m = m->next)
                n++;
        return n;
}

/* Unloads the least recently used model that is idle and not pinned; false when there is none. */
static bool evict_one(struct server *srv)
{
        struct served_model *lru = NULL;
        struct npu_err err = {};

        for (struct served_model *m = srv->models; m; m = m->next)
                if (!m->keep.pinned && model_users(m) == 0 && srv->stepping != m &&
                    (!lru || m->keep.last_used < lru->keep.last_used))
                        lru = m;
        if (!lru)
                return false;
        fprintf(stderr, "npud: unloading '%s', idle, to load another (max_loaded_models = %d)\n", lru->name,
                srv->cfg.max_loaded_models);
        return model_unload(lru, false, &err) >= 0;
}

struct served_model *models_get_or_load(struct server *srv, const char *name, uid_t uid, int64_t keep_alive_us,
                                        sd_bus_error *error)
{
        struct served_model *m = models_find(srv, name);
        _cleanup_free_ char *path = NULL;
        struct npu_err err = {};
        struct stat st;
        int r;

        if (m)
                return m;
        if (!name[0]) {
                sd_bus_error_set(error, NPUD_ERROR_NO_SUCH_MODEL, "no default model is loaded");
                return NULL;
        }
        if (!srv->cfg.models_dir || !srv->cfg.models_dir[0] || !model_name_valid(name) ||
            asprintf(&path, "%s/%s.gguf", srv->cfg.models_dir, name) < 0 || stat(path, &st) < 0 ||
            !S_ISREG(st.st_mode)) {
                sd_bus_error_setf(error, NPUD_ERROR_NO_SUCH_MODEL, "no model named '%s' is loaded%s%s%s", name,
                                  srv->cfg.models_dir && srv->cfg.models_dir[0] ? ", and " : "",
                                  srv->cfg.models_dir && srv->cfg.models_dir[0] ? srv->cfg.models_dir : "",
                                  srv->cfg.models_dir && srv->cfg.models_dir[0] ? " has no such model" : "");
                return NULL;
        }
        if (srv->shutting_down) {
                sd_bus_error_set(error, NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
                return NULL;
        }
        while (models_loaded(srv) >= (size_t)srv->cfg.max_loaded_models)
                if (!evict_one(srv)) {
                        sd_bus_error_setf(error, NPUD_ERROR_BUSY,
                                          "%zu models are loaded (max_loaded_models) and none is idle: try again "
                                          "later", models_loaded(srv));
                        return NULL;
                }
        fprintf(stderr, "npud: loading '%s' on demand\n", name);
        struct served_model *head = srv->models;
        r = models_load(srv, path, name, false, &m, &err);
        if (r < 0) {
                sd_bus_error_setf(error, r == -ENOMEM ? NPUD_ERROR_FAILED : NPUD_ERROR_BAD_MODEL,
                                  "cannot load '%s': %s", name, err.msg);
                return NULL;
        }
        if (m != head && srv->models == m) {
                /* new, not a file loaded already under another name: it stays as long as it is asked to */
                m->keep.pinned = false;
                set_claim(m, uid, claim_until(srv, keep_alive_us));
        }
        return m;
}
