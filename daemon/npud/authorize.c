/* SPDX-License-Identifier: MIT */
/*
 * Who may change what npud holds: polkit decides, asked over the bus
 * (org.freedesktop.PolicyKit1.Authority.CheckAuthorization) without
 * blocking. root and npud's own user need no question (npud-device@.service
 * runs as npud, and polkit would refuse a user without a session).
 *
 * The method handler calls authorize(); the first time, the question goes
 * out and the handler returns without a reply. When polkit answers, the
 * handler runs again on the same call, read from its start, and
 * authorize() then finds the answer. The caller's
 * allow-interactive-authorization flag goes to polkit; a question that
 * needs authentication the caller did not allow is
 * InteractiveAuthorizationRequired, any other no is AccessDenied.
 */
#include "bus_errors.h"
#include "server.h"

#define POLKIT_NAME "org.freedesktop.PolicyKit1"
#define POLKIT_PATH "/org/freedesktop/PolicyKit1/Authority"
#define POLKIT_IFACE POLKIT_NAME ".Authority"
/* questions in flight from one connection */
#define MAX_QUERIES_PER_SENDER 16

struct auth_query {
        struct auth_query *next;
        struct server *srv;
        sd_bus_message *call; /* the method call waiting for the answer */
        sd_bus_message_handler_t handler; /* run again on it then */
        void *userdata;
        char *action;
        sd_bus_slot *slot;    /* the question in flight */
        bool answered;
        sd_bus_error error;   /* the answer, when no */
};

static void query_free(struct auth_query *q)
{
        for (struct auth_query **p = &q->srv->auth_queries; *p; p = &(*p)->next)
                if (*p == q) {
                        *p = q->next;
                        break;
                }
        sd_bus_slot_unref(q->slot);
        sd_bus_message_unref(q->call);
        sd_bus_error_free(&q->error);
        free(q->action);
        free(q);
}

void authorize_free_all(struct server *srv)
{
        while (srv->auth_queries) {
                struct auth_query *q = srv->auth_queries;
                if (!q->answered)
                        (void)sd_bus_reply_method_errorf(q->call, NPUD_ERROR_SHUTTING_DOWN, "npud is stopping");
                query_free(q);
        }
}

static struct auth_query *find_query(struct server *srv, sd_bus_message *call, const char *action)
{
        for (struct auth_query *q = srv->auth_queries; q; q = q->next)
                if (q->call == call && !strcmp(q->action, action))
                        return q;
        return NULL;
}

static unsigned queries_of(struct server *srv, const char *sender)
{
        unsigned n = 0;

        for (struct auth_query *q = srv->auth_queries; q; q = q->next)
                n += !strcmp(sd_bus_message_get_sender(q->call), sender);
        return n;
}

/* polkit's answer: (bba{ss}) is_authorized, is_challenge, details. Then the call runs again. */
static int on_answer(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error)
{
        struct auth_query *q = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        int authorized = 0, challenge = 0, r;

        q->slot = sd_bus_slot_unref(q->slot);
        q->answered = true;
        if (e) {
                fprintf(stderr, "<4>npud: polkit did not answer about %s: %s: %s\n", q->action, e->name,
                        e->message ? e->message : "");
                sd_bus_error_setf(&q->error, NPUD_ERROR_ACCESS_DENIED,
                                  "%s: polkit could not be asked (%s); only an administrator may", q->action,
                                  e->name);
        } else {
                r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
                if (r >= 0)
                        r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
                if (r < 0)
                        sd_bus_error_setf(&q->error, NPUD_ERROR_ACCESS_DENIED, "%s: polkit's answer is unreadable",
                                          q->action);
                else if (!authorized && challenge && !sd_bus_message_get_allow_interactive_authorization(q->call))
                        sd_bus_error_setf(&q->error, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                          "%s needs authentication: call again allowing interactive authorization",
                                          q->action);
                else if (!authorized)
                        sd_bus_error_setf(&q->error, NPUD_ERROR_ACCESS_DENIED, "polkit does not allow %s",
                                          q->action);
        }
        /* the same call again, from its first argument: authorize() finds this answer */
        r = sd_bus_message_rewind(q->call, true);
        if (r >= 0) {
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = sd_bus_message_ref(q->call);
                r = q->handler(call, q->userdata, &error);
                if (r < 0 && sd_bus_error_is_set(&error))
                        (void)sd_bus_reply_method_error(call, &error);
                else if (r < 0)
                        (void)sd_bus_reply_method_errno(call, r, NULL);
                return 0;
        }
        (void)sd_bus_reply_method_errnof(q->call, r, "cannot go on after polkit's answer: %m");
        query_free(q);
        return 0;
}

static int ask(struct server *srv, sd_bus_message *call, const char *action, sd_bus_message_handler_t handler,
               void *userdata, sd_bus_error *error)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        const char *sender = sd_bus_message_get_sender(call);
        struct auth_query *q;
        int r;

        if (queries_of(srv, sender) >= MAX_QUERIES_PER_SENDER)
                return sd_bus_error_setf(error, NPUD_ERROR_BUSY, "%u questions to polkit from this client are open",
                                         queries_of(srv, sender));
        r = sd_bus_message_new_method_call(srv->bus, &m, POLKIT_NAME, POLKIT_PATH, POLKIT_IFACE,
                                           "CheckAuthorization");
        if (r >= 0)
                r = sd_bus_message_append(m, "(sa{sv})s", "system-bus-name", 1, "name", "s", sender, action);
        if (r >= 0)
                r = sd_bus_message_append(m, "a{ss}us", 0,
                                          (uint32_t)!!sd_bus_message_get_allow_interactive_authorization(call), "");
        if (r < 0)
                return r;
        q = calloc(1, sizeof(*q));
        if (!q || !(q->action = strdup(action))) {
                free(q);
                return -ENOMEM;
        }
        q->srv = srv;
        q->call = sd_bus_message_ref(call);
        q->handler = handler;
        q->userdata = userdata;
        q->error = SD_BUS_ERROR_NULL;
        /* an interactive question may wait for a person: no time limit but the bus' own */
        r = sd_bus_call_async(srv->bus, &q->slot, m, on_answer, q, UINT64_MAX);
        if (r < 0) {
                sd_bus_message_unref(q->call);
                free(q->action);
                free(q);
                return r;
        }
        q->next = srv->auth_queries;
        srv->auth_queries = q;
        return 0;
}

int authorize(struct server *srv, sd_bus_message *m, const char *action, sd_bus_message_handler_t handler,
              void *userdata, sd_bus_error *error)
{
        struct auth_query *q;
        uid_t uid;
        int r;

        r = bus_message_uid(m, &uid);
        if (r < 0)
                return sd_bus_error_setf(error, NPUD_ERROR_ACCESS_DENIED, "cannot tell who the caller is: %s",
                                         strerror(-r));
        if (uid == 0 || uid == srv->uid)
                return 1;
        q = find_query(srv, m, action);
        if (q && !q->answered)
                return 0; /* dispatched again before the answer (cannot happen): still waiting */
        if (q) {
                r = sd_bus_error_is_set(&q->error) ? sd_bus_error_copy(error, &q->error) : 1;
                query_free(q);
                return r < 0 ? r : 1;
        }
        r = ask(srv, m, action, handler, userdata, error);
        return r < 0 ? r : 0;
}
