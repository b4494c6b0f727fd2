/* SPDX-License-Identifier: MIT */
/*
 * Property values as lists: one function per object type fills a list, the
 * Properties getters answer from it, and PropertiesChanged is sent for what
 * differs from the list last published (a snapshot), so the values a client
 * reads and the values it is told of come from the same place.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "util.h"

#define PROPS_MAX 24

struct prop_value {
        const char *name;
        char type;              /* 's', 'u', 't', 'b', 'a' (as), or 'i': invalidated when n changes */
        const char *s;          /* 's' */
        const char *const *sv;  /* 'a': NULL-terminated */
        uint64_t n;             /* 'u', 't', 'b' */
};

/* The strings are borrowed: valid while the object they describe is unchanged. */
struct props {
        struct prop_value v[PROPS_MAX];
        size_t n;
};

void props_add_s(struct props *p, const char *name, const char *s);
void props_add_u(struct props *p, const char *name, uint32_t u);
void props_add_t(struct props *p, const char *name, uint64_t t);
void props_add_b(struct props *p, const char *name, bool b);
void props_add_as(struct props *p, const char *name, const char *const *sv);
/*
 * A property too big to send on every change (a session's messages): when
 * version changes, PropertiesChanged lists it as invalidated and the client
 * reads it again. Its getter answers it itself.
 */
void props_add_invalidates(struct props *p, const char *name, uint64_t version);
/* For a getter: appends the value of name (not as a variant); -ENOENT when p has none. */
int props_reply(sd_bus_message *reply, const struct props *p, const char *name);

/* What was last published of one object, to one receiver. */
struct prop_snapshot;
void prop_snapshot_free(struct prop_snapshot *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct prop_snapshot *, prop_snapshot_free);
/*
 * PropertiesChanged(iface, the values in now that differ from *snap, []) on
 * path, to destination (NULL: broadcast), then *snap becomes now. Without a
 * snapshot yet, now is compared with initial (the values the object had when
 * it appeared), or nothing is sent when initial is NULL. 1 when a signal
 * went out.
 */
int props_publish(sd_bus *bus, const char *path, const char *iface, const char *destination,
                  const struct props *now, const struct props *initial, struct prop_snapshot **snap);
