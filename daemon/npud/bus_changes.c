/* SPDX-License-Identifier: MIT */
/* PropertiesChanged, InterfacesAdded and InterfacesRemoved (see bus_changes.h). */
#include <inttypes.h>

#include "bus_changes.h"
#include "props.h"
#include "server.h"
#include "stats.h"

#define MIN_INTERVAL_USEC 50000ull
#define LOADING_INTERVAL_USEC 200000ull
#define MAX_WATCHERS 1024
#define MAX_WATCHERS_PER_UID 64

/* A connection that reads the per-caller Manager properties. */
struct watcher {
        struct watcher *next;
        char *name;
        uid_t uid;
        struct prop_snapshot *snap;
};

/* What was published of a model or a device, by object path. */
struct keyed {
        struct keyed *next;
        char *path;
        struct prop_snapshot *snap;
        bool seen;
};

struct bus_changes {
        struct server *srv;
        sd_event_source *post, *timer;
        sd_bus_slot *owner_match;
        uint64_t last;        /* CLOCK_MONOTONIC usec of the last pass */
        /* what they cost, logged when npud stops */
        uint64_t passes, pass_usec, signals;
        struct prop_snapshot *manager;
        struct watcher *watchers;
        size_t n_watchers;
        struct keyed *models, *devices;
};

/* One props_publish: a signal that went out is counted. */
static void counted(struct bus_changes *c, int r)
{
        c->signals += r > 0;
}

static void watcher_free(struct watcher *w)
{
        prop_snapshot_free(w->snap);
        free(w->name);
        free(w);
}

static void keyed_free_all(struct keyed **list)
{
        while (*list) {
                struct keyed *k = *list;
                *list = k->next;
                prop_snapshot_free(k->snap);
                free(k->path);
                free(k);
        }
}

/* ---- the Manager */

static void publish_manager(struct bus_changes *c)
{
        struct server *srv = c->srv;
        struct props p = {};

        manager_props(srv, NULL, &p);
        counted(c, props_publish(srv->bus, NPUD_ROOT_PATH, NPUD_MANAGER_IFACE, NULL, &p, NULL, &c->manager));
        for (struct watcher *w = c->watchers; w; w = w->next) {
                struct stats_view v = { .all = w->uid == 0 || w->uid == srv->uid, .uid = w->uid };
                struct props q = {}, per = {};
                manager_props(srv, &v, &q);
                /* only the per-caller ones: the others went to everyone */
                for (size_t i = 0; i < q.n; i++)
                        if (!strcmp(q.v[i].name, "KVCacheBlocksUsed") || !strcmp(q.v[i].name, "ActiveRequests") ||
                            !strcmp(q.v[i].name, "QueuedRequests"))
                                per.v[per.n++] = q.v[i];
                counted(c, props_publish(srv->bus, NPUD_ROOT_PATH, NPUD_MANAGER_IFACE, w->name, &per, NULL,
                                         &w->snap));
        }
}

void bus_changes_watch(struct server *srv, const char *name, uid_t uid)
{
        struct bus_changes *c = srv->changes;
        struct watcher *w;
        size_t of_uid = 0;

        if (!c || !name)
                return;
        for (w = c->watchers; w; w = w->next) {
                if (!strcmp(w->name, name))
                        return;
                of_uid += w->uid == uid;
        }
        if (c->n_watchers >= MAX_WATCHERS || of_uid >= MAX_WATCHERS_PER_UID)
                return; /* it can still read them; it is not told of changes */
        w = calloc(1, sizeof(*w));
        if (!w || !(w->name = strdup(name))) {
                free(w);
                return;
        }
        w->uid = uid;
        w->next = c->watchers;
        c->watchers = w;
        c->n_watchers++;
        /* what it read now is its baseline */
        struct stats_view v = { .all = uid == 0 || uid == srv->uid, .uid = uid };
        struct props q = {}, per = {};
        manager_props(srv, &v, &q);
        for (size_t i = 0; i < q.n; i++)
                if (!strcmp(q.v[i].name, "KVCacheBlocksUsed") || !strcmp(q.v[i].name, "ActiveRequests") ||
                    !strcmp(q.v[i].name, "QueuedRequests"))
                        per.v[per.n++] = q.v[i];
        counted(c, props_publish(srv->bus, NPUD_ROOT_PATH, NPUD_MANAGER_IFACE, w->name, &per, NULL,
                                 &w->snap));
}

static int on_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct bus_changes *c = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 || name[0] != ':' || new_owner[0])
                return 0;
        for (struct watcher **p = &c->watchers; *p; p = &(*p)->next)
                if (!strcmp((*p)->name, name)) {
                        struct watcher *w = *p;
                        *p = w->next;
                        watcher_free(w);
                        c->n_watchers--;
                        break;
                }
        return 0;
}

/* ---- models and devices: by path, with InterfacesAdded and InterfacesRemoved */

static struct keyed *keyed_get(struct keyed **list, const char *path, bool *added)
{
        struct keyed *k;

        for (k = *list; k; k = k->next)
                if (!strcmp(k->path, path)) {
                        *added = false;
                        return k;
                }
        k = calloc(1, sizeof(*k));
        if (!k || !(k->path = strdup(path))) {
                free(k);
                return NULL;
        }
        k->next = *list;
        *list = k;
        *added = true;
        return k;
}

static void publish_keyed(struct bus_changes *c, struct keyed **list, const char *path, const char *iface,
                          const struct props *p)
{
        sd_bus *bus = c->srv->bus;
        bool added;
        struct keyed *k = keyed_get(list, path, &added);

        if (!k)
                return;
        k->seen = true;
        counted(c, props_publish(bus, path, iface, NULL, p, NULL, &k->snap));
        if (added)
                (void)sd_bus_emit_interfaces_added(bus, path, iface, NULL);
}

static void drop_unseen(struct bus_changes *c, struct keyed **list, const char *iface)
{
        for (struct keyed **p = list; *p;) {
                struct keyed *k = *p;
                if (k->seen) {
                        k->seen = false;
                        p = &k->next;
                        continue;
                }
                (void)sd_bus_emit_interfaces_removed(c->srv->bus, k->path, iface, NULL);
                *p = k->next;
                prop_snapshot_free(k->snap);
                free(k->path);
                free(k);
        }
}

static void publish_models(struct bus_changes *c)
{
        for (struct served_model *m = c->srv->models; m; m = m->next) {
                _cleanup_free_ char *path = NULL;
                struct props p = {};
                if (model_object_path(m->name, &path) < 0)
                        continue;
                model_props(m, &p);
                publish_keyed(c, &c->models, path, NPUD_MODEL_IFACE, &p);
        }
        for (struct model_loading *l = c->srv->loadings; l; l = l->next) {
                _cleanup_free_ char *path = NULL;
                struct props p = {};
                if (models_find(c->srv, l->name) || model_object_path(l->name, &path) < 0)
                        continue;
                model_loading_props(l, &p);
                publish_keyed(c, &c->models, path, NPUD_MODEL_IFACE, &p);
        }
        drop_unseen(c, &c->models, NPUD_MODEL_IFACE);
}

static void publish_devices(struct bus_changes *c)
{
        for (struct served_device *d = c->srv->devices; d; d = d->next) {
                struct props p = {};
                device_props(d, &p);
                publish_keyed(c, &c->devices, d->object_path, NPUD_DEVICE_IFACE, &p);
        }
        drop_unseen(c, &c->devices, NPUD_DEVICE_IFACE);
}

/* ---- requests and sessions: to their owner */

static void publish_owned(struct bus_changes *c)
{
        sd_bus *bus = c->srv->bus;

        for (struct served_model *m = c->srv->models; m; m = m->next)
                for (struct session *s = m->sessions_head; s; s = s->next) {
                        if (s->path && s->client) {
                                struct props p = {}, initial = {};
                                session_props(s, &p);
                                session_props_initial(s, &initial);
                                counted(c, props_publish(bus, s->path, NPUD_SESSION_IFACE, s->client->name, &p,
                                                         &initial, &s->published));
                        }
                        for (struct request *r = s->requests_head; r; r = r->next) {
                                struct props p = {}, initial = {};
                                if (!r->client)
                                        continue;
                                request_props(r, &p);
                                request_props_initial(r, &initial);
                                counted(c, props_publish(bus, r->path, NPUD_REQUEST_IFACE, r->client->name, &p,
                                                         &initial, &r->published));
                        }
                }
}

void bus_changes_publish(struct server *srv)
{
        struct bus_changes *c = srv->changes;

        if (!c || !srv->bus)
                return;
        c->last = monotonic_usec();
        c->passes++;
        keep_alive_update(srv); /* models whose keep-alive ran out go first */
        publish_manager(c);
        publish_models(c);
        publish_devices(c);
        publish_owned(c);
        c->pass_usec += monotonic_usec() - c->last;
        /* a model loading: its progress is told every LOADING_INTERVAL_USEC, though nothing else happens */
        if (srv->loadings && sd_event_source_set_time(c->timer, c->last + LOADING_INTERVAL_USEC) >= 0)
                sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
}

/* ---- when: after anything happened, at most every MIN_INTERVAL_USEC */

static bool keyed_has(const struct keyed *list, const char *path)
{
        for (; list; list = list->next)
                if (!strcmp(list->path, path))
                        return true;
        return false;
}

static size_t keyed_count(const struct keyed *list)
{
        size_t n = 0;

        for (; list; list = list->next)
                n++;
        return n;
}

/* A model or a device came or went: InterfacesAdded and InterfacesRemoved are not held back. */
static bool objects_changed(struct bus_changes *c)
{
        size_t n = 0;

        for (struct served_model *m = c->srv->models; m; m = m->next, n++) {
                _cleanup_free_ char *path = NULL;
                if (model_object_path(m->name, &path) < 0 || !keyed_has(c->models, path))
                        return true;
        }
        for (struct model_loading *l = c->srv->loadings; l; l = l->next) {
                _cleanup_free_ char *path = NULL;
                if (models_find(c->srv, l->name))
                        continue;
                n++;
                if (model_object_path(l->name, &path) < 0 || !keyed_has(c->models, path))
                        return true;
        }
        if (n != keyed_count(c->models))
                return true;
        n = 0;
        for (struct served_device *d = c->srv->devices; d; d = d->next, n++)
                if (!keyed_has(c->devices, d->object_path))
                        return true;
        return n != keyed_count(c->devices);
}

/* Only wakes the loop: its dispatch makes the post source run the pass that was held back. */
static int on_timer(sd_event_source *es, uint64_t usec, void *userdata)
{
        return 0;
}

/*
 * After any other event source ran: a pass now, or, within MIN_INTERVAL_USEC
 * of the last one, when the timer wakes the loop (unless a model or a device
 * came or went: that is told at once). A pass that sends nothing causes no
 * event: the loop goes back to sleep.
 */
static int on_post(sd_event_source *es, void *userdata)
{
        struct bus_changes *c = userdata;
        uint64_t now = monotonic_usec();
        int enabled = SD_EVENT_OFF;

        if (now >= c->last + MIN_INTERVAL_USEC || objects_changed(c)) {
                bus_changes_publish(c->srv);
                return 0;
        }
        if (sd_event_source_get_enabled(c->timer, &enabled) >= 0 && enabled != SD_EVENT_OFF)
                return 0; /* a pass is due already */
        if (sd_event_source_set_time(c->timer, c->last + MIN_INTERVAL_USEC) >= 0)
                sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
        return 0;
}

int bus_changes_new(struct server *srv)
{
        struct bus_changes *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return -ENOMEM;
        c->srv = srv;
        srv->changes = c;
        r = sd_event_add_post(srv->event, &c->post, on_post, c);
        if (r >= 0)
                r = sd_event_add_time(srv->event, &c->timer, CLOCK_MONOTONIC, 0, 10000, on_timer, c);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_bus_match_signal(srv->bus, &c->owner_match, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                        "org.freedesktop.DBus", "NameOwnerChanged", on_owner_changed, c);
        if (r < 0) {
                bus_changes_free(srv);
                return r;
        }
        return 0;
}

void bus_changes_free(struct server *srv)
{
        struct bus_changes *c = srv->changes;

        if (!c)
                return;
        fprintf(stderr, "npud: change signals: %" PRIu64 " passes in %.1f ms, %" PRIu64 " PropertiesChanged sent, "
                "%zu watchers\n", c->passes, c->pass_usec / 1000.0, c->signals, c->n_watchers);
        sd_event_source_disable_unref(c->post);
        sd_event_source_disable_unref(c->timer);
        sd_bus_slot_unref(c->owner_match);
        prop_snapshot_free(c->manager);
        while (c->watchers) {
                struct watcher *w = c->watchers;
                c->watchers = w->next;
                watcher_free(w);
        }
        keyed_free_all(&c->models);
        keyed_free_all(&c->devices);
        free(c);
        srv->changes = NULL;
}
