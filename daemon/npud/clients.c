/* SPDX-License-Identifier: MIT */
/*
 * The clients: one per unique bus name that made a request or a session,
 * with its uid (asked of the bus once) and its counters for the limits. When
 * a unique name leaves the bus, its requests are cancelled and its sessions
 * closed at once.
 */
#include "bus_errors.h"
#include "server.h"

struct client *clients_find(struct server *srv, const char *name)
{
        for (struct client *c = srv->clients; c; c = c->next)
                if (!strcmp(c->name, name))
                        return c;
        return NULL;
}

int clients_get(struct server *srv, sd_bus_message *m, struct client **ret, sd_bus_error *error)
{
        sd_bus_creds *creds = NULL;
        const char *sender = sd_bus_message_get_sender(m);
        struct client *c;
        uid_t uid;
        int r;

        if (!sender)
                return sd_bus_error_set(error, NPUD_ERROR_ACCESS_DENIED, "the caller has no bus name");
        c = clients_find(srv, sender);
        if (c) {
                *ret = c;
                return 0;
        }
        r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID | SD_BUS_CREDS_AUGMENT, &creds);
        if (r >= 0) {
                r = sd_bus_creds_get_euid(creds, &uid);
                sd_bus_creds_unref(creds);
        }
        if (r < 0)
                return sd_bus_error_setf(error, NPUD_ERROR_ACCESS_DENIED, "cannot tell who the caller is: %s",
                                         strerror(-r));
        c = calloc(1, sizeof(*c));
        if (!c || !(c->name = strdup(sender))) {
                free(c);
                return -ENOMEM;
        }
        c->uid = uid;
        c->next = srv->clients;
        srv->clients = c;
        *ret = c;
        return 0;
}

bool client_is_admin(const struct server *srv, const struct client *c)
{
        return c->uid == 0 || c->uid == srv->uid;
}

int clients_require_admin(struct server *srv, sd_bus_message *m, const char *what, sd_bus_error *error)
{
        struct client *c;
        bool admin;
        int r;

        r = clients_get(srv, m, &c, error);
        if (r < 0)
                return r;
        admin = client_is_admin(srv, c);
        client_maybe_forget(srv, c);
        if (!admin)
                return sd_bus_error_setf(error, NPUD_ERROR_ACCESS_DENIED, "only an administrator may %s", what);
        return 0;
}

static void unlink_client(struct server *srv, struct client *c)
{
        for (struct client **p = &srv->clients; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        free(c->name);
        free(c);
}

/* A client with nothing left in the daemon is forgotten (its uid is asked again if it comes back). */
void client_maybe_forget(struct server *srv, struct client *c)
{
        if (c->n_running == 0 && c->n_sessions == 0 && c->n_finished == 0)
                unlink_client(srv, c);
}

static void client_gone(struct server *srv, struct client *c)
{
        requests_drop_owner(srv, c);
        sessions_drop_owner(srv, c);
        unlink_client(srv, c);
        server_kick(srv);
}

static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        struct server *srv = userdata;
        const char *name, *old_owner, *new_owner;
        struct client *c;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0)
                return 0;
        if (name[0] != ':' || new_owner[0] != 0)
                return 0;
        c = clients_find(srv, name);
        if (c)
                client_gone(srv, c);
        return 0;
}

int clients_watch(struct server *srv)
{
        return sd_bus_match_signal(srv->bus, NULL, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                   "org.freedesktop.DBus", "NameOwnerChanged", on_name_owner_changed, srv);
}

void clients_free_all(struct server *srv)
{
        while (srv->clients)
                unlink_client(srv, srv->clients);
}
