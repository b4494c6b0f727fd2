/* SPDX-License-Identifier: MIT */
/* The index of connections and uids, and their limits (see client.h). */
#include "bus_errors.h"
#include "list.h"
#include "server.h"

struct client *clients_find(struct server *srv, const char *name)
{
        for (struct client *c = srv->clients; c; c = c->next)
                if (!strcmp(c->name, name))
                        return c;
        return NULL;
}

int bus_message_uid(sd_bus_message *m, uid_t *ret)
{
        sd_bus_creds *creds = NULL;
        int r;

        /* from the bus itself, never from /proc (which a racing process could fake): it decides access */
        r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID, &creds);
        if (r < 0)
                return r;
        if (sd_bus_creds_get_augmented_mask(creds) & SD_BUS_CREDS_EUID)
                r = -EPERM;
        else
                r = sd_bus_creds_get_euid(creds, ret);
        sd_bus_creds_unref(creds);
        return r;
}

static struct user *user_get(struct server *srv, uid_t uid)
{
        struct user *u;

        for (u = srv->users; u; u = u->next)
                if (u->uid == uid)
                        return u;
        u = calloc(1, sizeof(*u));
        if (!u)
                return NULL;
        u->uid = uid;
        u->next = srv->users;
        srv->users = u;
        return u;
}

/* A user stays when its last connection leaves: its counters are kept (one per uid that came). */
static void user_unref(struct user *u)
{
        u->n_clients--;
}

int clients_get(struct server *srv, sd_bus_message *m, struct client **ret, sd_bus_error *error)
{
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
        r = bus_message_uid(m, &uid);
        if (r < 0)
                return sd_bus_error_setf(error, NPUD_ERROR_ACCESS_DENIED, "cannot tell who the caller is: %s",
                                         strerror(-r));
        c = calloc(1, sizeof(*c));
        if (!c || !(c->name = strdup(sender)) || !(c->user = user_get(srv, uid))) {
                if (c)
                        free(c->name);
                free(c);
                return -ENOMEM;
        }
        c->user->n_clients++;
        c->srv = srv;
        c->uid = uid;
        c->next = srv->clients;
        srv->clients = c;
        *ret = c;
        return 0;
}

void client_free(struct client *c)
{
        struct server *srv;

        if (!c)
                return;
        srv = c->srv;
        for (struct client **p = &srv->clients; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        user_unref(c->user);
        sd_bus_slot_unref(c->ping);
        free(c->name);
        free(c);
}

void client_maybe_forget(struct client *c)
{
        if (c && !c->requests_head && !c->sessions_head)
                client_free(c);
}

void clients_free_all(struct server *srv)
{
        while (srv->clients)
                client_free(srv->clients);
        while (srv->users) {
                struct user *u = srv->users;
                srv->users = u->next;
                free(u);
        }
}

/* --- limits --- */

int client_check_request(const struct client *c, const struct npud_config *cfg, sd_bus_error *error)
{
        if (c->n_requests >= cfg->max_requests_per_client)
                return sd_bus_error_setf(error, NPUD_ERROR_LIMIT_EXCEEDED,
                                         "this client already runs %d requests (the limit)", c->n_requests);
        if (c->user->n_requests >= cfg->max_requests_per_uid)
                return sd_bus_error_setf(error, NPUD_ERROR_LIMIT_EXCEEDED,
                                         "uid %u already runs %d requests over all its connections (the limit)",
                                         (unsigned)c->uid, c->user->n_requests);
        return 0;
}

int client_check_prompt(const struct client *c, const struct npud_config *cfg, const struct request *r,
                        int64_t n_prompt, sd_bus_error *error)
{
        if (c->n_prompt_tokens - r->n_prompt + n_prompt > cfg->max_queued_tokens_per_client)
                return sd_bus_error_setf(error, NPUD_ERROR_LIMIT_EXCEEDED,
                                         "this client's unfinished prompts would exceed %d tokens",
                                         cfg->max_queued_tokens_per_client);
        return 0;
}

int client_check_session(const struct client *c, const struct npud_config *cfg, sd_bus_error *error)
{
        if (c->n_sessions >= cfg->max_sessions_per_client)
                return sd_bus_error_setf(error, NPUD_ERROR_LIMIT_EXCEEDED, "this client has %d sessions (the limit)",
                                         c->n_sessions);
        if (c->user->n_sessions >= cfg->max_sessions_per_uid)
                return sd_bus_error_setf(error, NPUD_ERROR_LIMIT_EXCEEDED,
                                         "uid %u has %d sessions over all its connections (the limit)",
                                         (unsigned)c->uid, c->user->n_sessions);
        return 0;
}

/* --- the index --- */

void client_add_request(struct client *c, struct request *r)
{
        LIST_APPEND(c->requests_head, c->requests_tail, r, client_prev, client_next);
        r->n_prompt = 0;
        c->n_requests++;
        c->user->n_requests++;
}

void client_set_prompt(struct client *c, struct request *r, int32_t n_prompt)
{
        c->n_prompt_tokens += n_prompt - r->n_prompt;
        r->n_prompt = n_prompt;
}

void client_request_finished(struct client *c, struct request *r)
{
        const struct sched_request *sr = r->sr;

        c->user->prompt_tokens += (uint64_t)(r->n_prompt - sr->n_cached);
        c->user->cached_prompt_tokens += (uint64_t)sr->n_cached;
        c->user->generated_tokens += (uint64_t)sr->n_generated;
        c->n_requests--;
        c->n_prompt_tokens -= r->n_prompt;
        c->user->n_requests--;
        c->n_finished++;
}

void client_remove_request(struct client *c, struct request *r)
{
        LIST_REMOVE(c->requests_head, c->requests_tail, r, client_prev, client_next);
        if (r->finished) {
                c->n_finished--;
        } else {
                c->n_requests--;
                c->n_prompt_tokens -= r->n_prompt;
                c->user->n_requests--;
        }
}

void client_add_session(struct client *c, struct session *s)
{
        LIST_APPEND(c->sessions_head, c->sessions_tail, s, client_prev, client_next);
        c->n_sessions++;
        c->user->n_sessions++;
}

void client_remove_session(struct client *c, struct session *s)
{
        LIST_REMOVE(c->sessions_head, c->sessions_tail, s, client_prev, client_next);
        c->n_sessions--;
        c->user->n_sessions--;
}

struct request *client_oldest_finished(const struct client *c)
{
        for (struct request *r = c->requests_head; r; r = r->client_next)
                if (r->finished)
                        return r;
        return NULL;
}

/* --- streaming flow control --- */

#define PING_TIMEOUT_USEC (5 * 1000000ull)

static void ping(struct client *c);

static uint64_t unread(const struct client *c)
{
        return c->sent - c->read;
}

/* The connection read what was sent before the ping: held requests go on. */
static int on_ping_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct client *c = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);

        c->ping = sd_bus_slot_unref(c->ping);
        /* no answer in time: it is not reading; ask again (it answers once it reads) */
        if (e && sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY)) {
                ping(c);
                return 0;
        }
        /* an answer (or a connection that cannot answer pings: it is not held for ever) */
        c->read = c->ping_mark;
        if (unread(c) >= (uint64_t)c->srv->cfg.max_unread_tokens_per_client / 2)
                ping(c);
        for (struct request *r = c->requests_head; r && client_may_send(c, 1); r = r->client_next)
                if (r->sr && r->sr->stream_held) {
                        sched_hold_stream(r->sr, false);
                        request_flush(r, false);
                }
        server_kick(c->srv);
        return 0;
}

static void ping(struct client *c)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (c->ping)
                return;
        r = sd_bus_message_new_method_call(c->srv->bus, &m, c->name, "/", "org.freedesktop.DBus.Peer", "Ping");
        if (r >= 0)
                r = sd_bus_call_async(c->srv->bus, &c->ping, m, on_ping_reply, c, PING_TIMEOUT_USEC);
        if (r < 0) {
                fprintf(stderr, "<4>npud: cannot ping %s: %s; its tokens are not held back\n", c->name, strerror(-r));
                c->read = c->sent;
                return;
        }
        c->ping_mark = c->sent;
}

bool client_may_send(struct client *c, size_t n)
{
        if (unread(c) + n <= (uint64_t)c->srv->cfg.max_unread_tokens_per_client)
                return true;
        ping(c);
        return false;
}

void client_sent(struct client *c, size_t n)
{
        c->sent += n;
        if (unread(c) >= (uint64_t)c->srv->cfg.max_unread_tokens_per_client / 2)
                ping(c);
}
