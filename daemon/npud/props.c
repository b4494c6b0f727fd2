/* SPDX-License-Identifier: MIT */
/* Property lists, their snapshots and PropertiesChanged (see props.h). */
#include <assert.h>

#include "props.h"

static struct prop_value *props_next(struct props *p, const char *name, char type)
{
        assert(p->n < PROPS_MAX);
        p->v[p->n] = (struct prop_value) { .name = name, .type = type };
        return &p->v[p->n++];
}

void props_add_s(struct props *p, const char *name, const char *s)
{
        props_next(p, name, 's')->s = s ? s : "";
}

void props_add_u(struct props *p, const char *name, uint32_t u)
{
        props_next(p, name, 'u')->n = u;
}

void props_add_t(struct props *p, const char *name, uint64_t t)
{
        props_next(p, name, 't')->n = t;
}

void props_add_b(struct props *p, const char *name, bool b)
{
        props_next(p, name, 'b')->n = b;
}

void props_add_as(struct props *p, const char *name, const char *const *sv)
{
        props_next(p, name, 'a')->sv = sv;
}

void props_add_invalidates(struct props *p, const char *name, uint64_t version)
{
        props_next(p, name, 'i')->n = version;
}

static const struct prop_value *props_find(const struct props *p, const char *name)
{
        for (size_t i = 0; i < p->n; i++)
                if (!strcmp(p->v[i].name, name))
                        return &p->v[i];
        return NULL;
}

static int append_value(sd_bus_message *m, const struct prop_value *v)
{
        int r;

        switch (v->type) {
        case 's':
                return sd_bus_message_append_basic(m, 's', v->s);
        case 'u': {
                uint32_t u = (uint32_t)v->n;
                return sd_bus_message_append_basic(m, 'u', &u);
        }
        case 't':
                return sd_bus_message_append_basic(m, 't', &v->n);
        case 'b': {
                int b = !!v->n;
                return sd_bus_message_append_basic(m, 'b', &b);
        }
        case 'a':
                r = sd_bus_message_open_container(m, 'a', "s");
                for (size_t i = 0; r >= 0 && v->sv && v->sv[i]; i++)
                        r = sd_bus_message_append_basic(m, 's', v->sv[i]);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                return r;
        }
        return -EINVAL;
}

int props_reply(sd_bus_message *reply, const struct props *p, const char *name)
{
        const struct prop_value *v = props_find(p, name);

        return v && v->type != 'i' ? append_value(reply, v) : -ENOENT;
}

/* ---- snapshots */

struct prop_snapshot {
        size_t n;
        struct prop_value v[PROPS_MAX]; /* strings owned: s, and sv with its strings */
};

static void value_done(struct prop_value *v)
{
        free((char *)v->s);
        for (size_t i = 0; v->sv && v->sv[i]; i++)
                free((char *)v->sv[i]);
        free((char **)v->sv);
}

void prop_snapshot_free(struct prop_snapshot *s)
{
        if (!s)
                return;
        for (size_t i = 0; i < s->n; i++)
                value_done(&s->v[i]);
        free(s);
}

static int value_copy(const struct prop_value *from, struct prop_value *to)
{
        size_t n = 0;
        char **sv;

        *to = (struct prop_value) { .name = from->name, .type = from->type, .n = from->n };
        if (from->type == 's')
                return (to->s = strdup(from->s)) ? 0 : -ENOMEM;
        if (from->type != 'a')
                return 0;
        while (from->sv && from->sv[n])
                n++;
        sv = calloc(n + 1, sizeof(char *));
        if (!sv)
                return -ENOMEM;
        to->sv = (const char *const *)sv;
        for (size_t i = 0; i < n; i++)
                if (!(sv[i] = strdup(from->sv[i])))
                        return -ENOMEM;
        return 0;
}

static int snapshot_of(const struct props *p, struct prop_snapshot **ret)
{
        _cleanup_(prop_snapshot_freep) struct prop_snapshot *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        for (size_t i = 0; i < p->n; i++) {
                int r = value_copy(&p->v[i], &s->v[i]);
                s->n = i + 1; /* freed with it, even half copied */
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(s);
        return 0;
}

static bool value_equal(const struct prop_value *a, const struct prop_value *b)
{
        size_t i;

        if (a->type != b->type)
                return false;
        switch (a->type) {
        case 's':
                return !strcmp(a->s, b->s);
        case 'a':
                for (i = 0; a->sv && a->sv[i] && b->sv && b->sv[i]; i++)
                        if (strcmp(a->sv[i], b->sv[i]) != 0)
                                return false;
                return !(a->sv && a->sv[i]) && !(b->sv && b->sv[i]);
        default:
                return a->n == b->n;
        }
}

/* The value of name in what was published (a snapshot, or the initial list). */
static const struct prop_value *was(const struct prop_snapshot *s, const struct props *initial, const char *name)
{
        if (initial)
                return props_find(initial, name);
        for (size_t i = 0; i < s->n; i++)
                if (!strcmp(s->v[i].name, name))
                        return &s->v[i];
        return NULL;
}

/* PropertiesChanged up to its open a{sv}. */
static int start_signal(sd_bus *bus, const char *path, const char *iface, const char *destination,
                        sd_bus_message **ret)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_signal(bus, &m, path, "org.freedesktop.DBus.Properties", "PropertiesChanged");
        if (r >= 0 && destination)
                r = sd_bus_message_set_destination(m, destination);
        if (r >= 0)
                r = sd_bus_message_append(m, "s", iface);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

int props_publish(sd_bus *bus, const char *path, const char *iface, const char *destination,
                  const struct props *now, const struct props *initial, struct prop_snapshot **snap)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_(prop_snapshot_freep) struct prop_snapshot *next = NULL;
        const struct props *base = *snap ? NULL : initial;
        const char *invalidated[PROPS_MAX + 1] = {};
        size_t changed = 0, n_invalidated = 0;
        int r;

        r = snapshot_of(now, &next);
        if (r < 0)
                return r;
        if (!*snap && !initial) {
                *snap = TAKE_PTR(next);
                return 0;
        }
        for (size_t i = 0; i < now->n; i++) {
                const struct prop_value *old = was(*snap, base, now->v[i].name);
                if (now->v[i].type == 'i') {
                        if (!old || !value_equal(old, &now->v[i]))
                                invalidated[n_invalidated++] = now->v[i].name;
                        continue;
                }
                if (!old || !value_equal(old, &now->v[i])) {
                        if (!m && (r = start_signal(bus, path, iface, destination, &m)) < 0)
                                return r;
                        const char sig[3] = { now->v[i].type, now->v[i].type == 'a' ? 's' : 0, 0 };
                        r = sd_bus_message_open_container(m, 'e', "sv");
                        if (r >= 0)
                                r = sd_bus_message_append_basic(m, 's', now->v[i].name);
                        if (r >= 0)
                                r = sd_bus_message_open_container(m, 'v', sig);
                        if (r >= 0)
                                r = append_value(m, &now->v[i]);
                        if (r >= 0)
                                r = sd_bus_message_close_container(m);
                        if (r >= 0)
                                r = sd_bus_message_close_container(m);
                        if (r < 0)
                                return r;
                        changed++;
                }
        }
        prop_snapshot_free(*snap);
        *snap = TAKE_PTR(next);
        if (!changed && !n_invalidated)
                return 0;
        if (!m && (r = start_signal(bus, path, iface, destination, &m)) < 0)
                return r;
        r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_append_strv(m, (char **)invalidated);
        if (r >= 0)
                r = sd_bus_send(bus, m, NULL);
        return r < 0 ? r : 1;
}
