/* SPDX-License-Identifier: MIT */
/*
 * api-probe: the D-Bus API of issue 17 seen from one connection, printed
 * line by line for tests/service/api-tests.sh. Values are printed in a
 * small fixed syntax: strings JSON-quoted, numbers as printf's %g (doubles)
 * or decimal, booleans true/false, arrays [a,b], structs (a,b), dictionaries
 * {k:v}, byte arrays as hex in <>.
 *   api-probe ADDRESS generate MODEL PROMPT [KEY TYPE VALUE]...
 *       Generate (PROMPT "ids:1,2,3" gives token ids) with those options
 *       (TYPE: u i x t d b s); prints "request
 *       PATH", then per signal "tokens ID:TEXT ...", "logprobs VALUE",
 *       "finished REASON" and one "stat KEY VALUE" line per entry of its
 *       stats, and the request object's PropertiesChanged as watch prints
 *       them (for 0.3 s after Finished). An error reply prints "error NAME:
 *       message" and exits 1. With API_PROBE_STALL_MS in the environment it
 *       reads nothing for that long after the first Tokens signal, so the
 *       request is held (streaming backpressure) meanwhile.
 *   api-probe ADDRESS chat MODEL ROLE:TEXT... [-- KEY TYPE VALUE...]
 *       the same through Chat.
 *   api-probe ADDRESS session MODEL TEMPLATE TEXT... [-- SECONDS]
 *       CreateSession (TEMPLATE: the template option, "" for none), a turn
 *       of 8 tokens per TEXT, each awaited ("finished REASON") and followed
 *       by 0.3 s, printing the session's PropertiesChanged as watch prints
 *       them; then (after "held", SECONDS later, with -- SECONDS) it closes
 *       the session.
 *   api-probe ADDRESS watch SECONDS [PROPERTY...]
 *       reads the Manager's properties once (Get of each PROPERTY, else
 *       GetAll: this makes the connection a watcher of the per-caller ones),
 *       prints "ready", then every PropertiesChanged, InterfacesAdded and
 *       InterfacesRemoved npud sends, as "changed PATH IFACE NAME=VALUE ...
 *       [invalidated NAME...]", "added PATH IFACE NAME=VALUE..." and
 *       "removed PATH IFACE...", until SECONDS pass. With API_PROBE_WATCH_MS
 *       in the environment each such line ends in " @MS" (CLOCK_MONOTONIC).
 *   api-probe ADDRESS objects
 *       GetManagedObjects at /org/npud/Inference1: "object PATH IFACE" and
 *       "  NAME=VALUE" lines.
 *   api-probe ADDRESS get PATH IFACE PROPERTY
 *       one property's value.
 *   api-probe ADDRESS demand MODEL N PROMPT
 *       N Generate calls (max_tokens 4) of a model that is not loaded,
 *       sent at once, then, on the same connection (so npud reads it after
 *       them), Get of the Model object's State: prints "state VALUE MS" (MS:
 *       how long that answer took), then per call "reply I PATH" or "error
 *       I NAME: message" and, once its request ends, "finished I REASON".
 * Exit status 0 unless npud answered with an error or the probe failed (1).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <systemd/sd-bus.h>

#include "bus_client.h"

#define SERVICE "org.npud.Inference1"
#define ROOT "/org/npud/Inference1"
#define MANAGER SERVICE ".Manager"
#define REQUEST SERVICE ".Request"
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)

static void freep(void *p)
{
        free(*(void **)p);
}

static int fail(const char *what, int r)
{
        fprintf(stderr, "api-probe: %s: %s\n", what, strerror(r < 0 ? -r : r));
        return EXIT_FAILURE;
}

static uint64_t now_usec(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void print_string(const char *s)
{
        putchar('"');
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if (*p == '"' || *p == '\\')
                        printf("\\%c", *p);
                else if (*p == '\n')
                        printf("\\n");
                else if (*p < 0x20)
                        printf("\\u%04x", *p);
                else
                        putchar(*p);
        }
        putchar('"');
}

/* Prints the next complete value of m. */
static int print_value(sd_bus_message *m)
{
        const char *contents;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r <= 0)
                return r < 0 ? r : -EBADMSG;
        switch (type) {
        case 'a':
                if (!strcmp(contents, "y")) {
                        const uint8_t *p;
                        size_t n;
                        r = sd_bus_message_read_array(m, 'y', (const void **)&p, &n);
                        if (r < 0)
                                return r;
                        putchar('<');
                        for (size_t i = 0; i < n; i++)
                                printf("%02x", p[i]);
                        putchar('>');
                        return 0;
                }
                r = sd_bus_message_enter_container(m, 'a', contents);
                if (r < 0)
                        return r;
                putchar(contents[0] == '{' ? '{' : '[');
                for (bool first = true;; first = false) {
                        r = sd_bus_message_at_end(m, false);
                        if (r < 0)
                                return r;
                        if (r > 0)
                                break;
                        if (!first)
                                putchar(',');
                        r = print_value(m);
                        if (r < 0)
                                return r;
                }
                putchar(contents[0] == '{' ? '}' : ']');
                return sd_bus_message_exit_container(m);
        case 'e':
        case 'r':
        case 'v':
                r = sd_bus_message_enter_container(m, type, contents);
                if (r < 0)
                        return r;
                if (type == 'r')
                        putchar('(');
                for (bool first = true;; first = false) {
                        r = sd_bus_message_at_end(m, false);
                        if (r < 0)
                                return r;
                        if (r > 0)
                                break;
                        if (!first)
                                putchar(type == 'e' ? ':' : ',');
                        r = print_value(m);
                        if (r < 0)
                                return r;
                }
                if (type == 'r')
                        putchar(')');
                return sd_bus_message_exit_container(m);
        case 's':
        case 'o':
        case 'g': {
                const char *s;
                r = sd_bus_message_read_basic(m, type, &s);
                if (r >= 0)
                        print_string(s);
                return r;
        }
        case 'b': {
                int b;
                r = sd_bus_message_read_basic(m, 'b', &b);
                if (r >= 0)
                        printf(b ? "true" : "false");
                return r;
        }
        case 'd': {
                double d;
                r = sd_bus_message_read_basic(m, 'd', &d);
                if (r >= 0)
                        printf("%.9g", d);
                return r;
        }
        case 'y': case 'n': case 'q': case 'i': case 'u': case 'x': case 't': case 'h': {
                union { uint8_t y; int16_t n; uint16_t q; int32_t i; uint32_t u; int64_t x; uint64_t t; } v;
                r = sd_bus_message_read_basic(m, type, &v);
                if (r < 0)
                        return r;
                switch (type) {
                case 'y': printf("%u", v.y); break;
                case 'n': printf("%d", v.n); break;
                case 'q': printf("%u", v.q); break;
                case 'i': case 'h': printf("%d", v.i); break;
                case 'u': printf("%u", v.u); break;
                case 'x': printf("%" PRId64, v.x); break;
                default: printf("%" PRIu64, v.t); break;
                }
                return 0;
        }
        }
        return -EBADMSG;
}

/* a{sv} as NAME=VALUE separated by sep. */
static int print_properties(sd_bus_message *m, const char *sep)
{
        int r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *name;
                r = sd_bus_message_read(m, "s", &name);
                if (r < 0)
                        return r;
                printf("%s%s=", sep, name);
                r = print_value(m);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

static int print_call_error(sd_bus_error *error, int r)
{
        printf("error %s: %s\n", error->name ? error->name : "?", error->message ? error->message : strerror(-r));
        sd_bus_error_free(error);
        return EXIT_FAILURE;
}

/* ---- generate, chat */

struct gen {
        const char *path;
        bool streamed; /* a Tokens signal came */
        bool done;
        uint64_t done_at;
        int error;
};

static int append_options(sd_bus_message *m, int argc, char **argv)
{
        int r = sd_bus_message_open_container(m, 'a', "{sv}");

        if (argc % 3)
                return -EINVAL;
        for (int i = 0; r >= 0 && i < argc; i += 3) {
                const char *key = argv[i], *type = argv[i + 1], *val = argv[i + 2];
                switch (type[0]) {
                case 'u': r = sd_bus_message_append(m, "{sv}", key, "u", (uint32_t)strtoul(val, NULL, 0)); break;
                case 'i': r = sd_bus_message_append(m, "{sv}", key, "i", (int32_t)strtol(val, NULL, 0)); break;
                case 'x': r = sd_bus_message_append(m, "{sv}", key, "x", (int64_t)strtoll(val, NULL, 0)); break;
                case 't': r = sd_bus_message_append(m, "{sv}", key, "t", (uint64_t)strtoull(val, NULL, 0)); break;
                case 'd': r = sd_bus_message_append(m, "{sv}", key, "d", strtod(val, NULL)); break;
                case 'b': r = sd_bus_message_append(m, "{sv}", key, "b", (int)!strcmp(val, "true")); break;
                case 's': r = sd_bus_message_append(m, "{sv}", key, "s", val); break;
                default: return -EINVAL;
                }
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

static int on_request_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct gen *g = userdata;
        const char *reason;
        int r = 0;

        if (!g->path || strcmp(sd_bus_message_get_path(m), g->path) != 0)
                return 0;
        if (sd_bus_message_is_signal(m, REQUEST, "Tokens")) {
                g->streamed = true;
                printf("tokens");
                r = sd_bus_message_enter_container(m, 'a', "(us)");
                while (r >= 0) {
                        uint32_t id;
                        const char *piece;
                        r = sd_bus_message_read(m, "(us)", &id, &piece);
                        if (r <= 0)
                                break;
                        printf(" %u:", id);
                        print_string(piece);
                }
                printf("\n");
        } else if (sd_bus_message_is_signal(m, REQUEST, "Logprobs")) {
                printf("logprobs ");
                r = print_value(m);
                printf("\n");
        } else if (sd_bus_message_is_signal(m, REQUEST, "Finished")) {
                r = sd_bus_message_read(m, "s", &reason);
                if (r >= 0) {
                        printf("finished %s", reason);
                        r = print_properties(m, "\nstat ");
                        printf("\n");
                }
                g->done = true;
                g->done_at = now_usec();
        }
        if (r < 0)
                g->error = r;
        fflush(stdout);
        return 0;
}

static int on_watched(sd_bus_message *m, void *userdata, sd_bus_error *ret_error);

/* PropertiesChanged of the request's object, printed as watch prints them. */
static int on_request_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct gen *g = userdata;

        if (!g->path || strcmp(sd_bus_message_get_path(m), g->path) != 0)
                return 0;
        return on_watched(m, NULL, ret_error);
}

static int run_request(sd_bus *bus, sd_bus_message *call)
{
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL, *changes = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        struct gen g = {};
        uint64_t deadline = now_usec() + 120 * 1000000ull;
        /* API_PROBE_STALL_MS: read nothing that long after the first tokens (the request is held meanwhile) */
        const char *stall_env = getenv("API_PROBE_STALL_MS");
        const uint64_t stall_usec = stall_env ? (uint64_t)atoi(stall_env) * 1000 : 0;
        bool stalled = !stall_env;
        int r;

        r = sd_bus_match_signal(bus, &slot, SERVICE, NULL, REQUEST, NULL, on_request_signal, &g);
        if (r >= 0)
                r = sd_bus_match_signal(bus, &changes, SERVICE, NULL, "org.freedesktop.DBus.Properties",
                                        "PropertiesChanged", on_request_changed, &g);
        if (r < 0)
                return fail("match", r);
        r = sd_bus_call(bus, call, 600 * 1000000ull, &error, &reply);
        if (r < 0) {
                printf("error %s: %s\n", error.name ? error.name : "?", error.message ? error.message : strerror(-r));
                sd_bus_error_free(&error);
                return EXIT_FAILURE;
        }
        r = sd_bus_message_read(reply, "o", &g.path);
        if (r < 0)
                return fail("reply", r);
        printf("request %s\n", g.path);
        fflush(stdout);
        /* after Finished, PropertiesChanged of the end may follow (within 50 ms) */
        while (!g.error && (!g.done || now_usec() < g.done_at + 300000)) {
                if (!stalled && g.streamed) {
                        fflush(stdout);
                        usleep((useconds_t)stall_usec);
                        stalled = true;
                        deadline += stall_usec;
                }
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        return fail("process", r);
                if (r > 0)
                        continue;
                if (now_usec() > deadline)
                        return fail("waiting for Finished", ETIMEDOUT);
                r = sd_bus_wait(bus, 50000);
                if (r < 0)
                        return fail("wait", r);
        }
        return g.error ? fail("reading a signal", g.error) : EXIT_SUCCESS;
}

static int cmd_generate(sd_bus *bus, int argc, char **argv)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        int r;

        if (argc < 2)
                return fail("generate MODEL PROMPT [KEY TYPE VALUE]...", EINVAL);
        r = sd_bus_message_new_method_call(bus, &call, SERVICE, ROOT, MANAGER, "Generate");
        if (r >= 0)
                r = sd_bus_message_append(call, "s", argv[0]);
        if (r >= 0 && !strncmp(argv[1], "ids:", 4)) {
                /* token ids: ids:1,2,3 */
                r = sd_bus_message_open_container(call, 'v', "ai");
                if (r >= 0)
                        r = sd_bus_message_open_container(call, 'a', "i");
                for (char *p = argv[1] + 4, *end; r >= 0 && *p; p = end + (*end == ',')) {
                        int32_t id = (int32_t)strtol(p, &end, 10);
                        r = end == p ? -EINVAL : sd_bus_message_append_basic(call, 'i', &id);
                }
                if (r >= 0)
                        r = sd_bus_message_close_container(call);
                if (r >= 0)
                        r = sd_bus_message_close_container(call);
        } else if (r >= 0) {
                r = sd_bus_message_append(call, "v", "s", argv[1]);
        }
        if (r >= 0)
                r = append_options(call, argc - 2, argv + 2);
        if (r < 0)
                return fail("building the call", r);
        return run_request(bus, call);
}

static int cmd_chat(sd_bus *bus, int argc, char **argv)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        int i, r;

        if (argc < 2)
                return fail("chat MODEL ROLE:TEXT... [-- KEY TYPE VALUE...]", EINVAL);
        r = sd_bus_message_new_method_call(bus, &call, SERVICE, ROOT, MANAGER, "Chat");
        if (r >= 0)
                r = sd_bus_message_append(call, "s", argv[0]);
        if (r >= 0)
                r = sd_bus_message_open_container(call, 'a', "(ss)");
        for (i = 1; r >= 0 && i < argc && strcmp(argv[i], "--") != 0; i++) {
                char *colon = strchr(argv[i], ':');
                if (!colon)
                        return fail("a message is ROLE:TEXT", EINVAL);
                *colon = 0;
                r = sd_bus_message_append(call, "(ss)", argv[i], colon + 1);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(call);
        if (i < argc)
                i++;
        if (r >= 0)
                r = append_options(call, argc - i, argv + i);
        if (r < 0)
                return fail("building the call", r);
        return run_request(bus, call);
}

/* ---- a session */

static int on_watched(sd_bus_message *m, void *userdata, sd_bus_error *ret_error);

struct turn {
        const char *session, *request;
        bool done;
};

static int on_session_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct turn *t = userdata;
        const char *path = sd_bus_message_get_path(m), *reason;

        if (t->session && !strcmp(path, t->session) &&
            sd_bus_message_is_signal(m, "org.freedesktop.DBus.Properties", "PropertiesChanged"))
                return on_watched(m, NULL, ret_error);
        if (t->request && !strcmp(path, t->request) && sd_bus_message_is_signal(m, REQUEST, "Finished") &&
            sd_bus_message_read(m, "s", &reason) >= 0) {
                printf("finished %s\n", reason);
                fflush(stdout);
                t->done = true;
        }
        return 0;
}

static int pump_until(sd_bus *bus, const bool *done, uint64_t usec)
{
        uint64_t end = now_usec() + usec;
        int r;

        while ((!done || !*done) && now_usec() < end) {
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        return r;
                if (r == 0)
                        (void)sd_bus_wait(bus, 50000);
        }
        return done && !*done ? -ETIMEDOUT : 0;
}

static int cmd_session(sd_bus *bus, int argc, char **argv)
{
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *changes = NULL, *finished = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        struct turn t = {};
        double hold = 0;
        int r;

        if (argc >= 5 && !strcmp(argv[argc - 2], "--")) {
                hold = strtod(argv[argc - 1], NULL);
                argc -= 2;
        }
        if (argc < 3)
                return fail("session MODEL TEMPLATE TEXT... [-- SECONDS]", EINVAL);
        r = sd_bus_match_signal(bus, &changes, SERVICE, NULL, "org.freedesktop.DBus.Properties", "PropertiesChanged",
                                on_session_signal, &t);
        if (r >= 0)
                r = sd_bus_match_signal(bus, &finished, SERVICE, NULL, REQUEST, "Finished", on_session_signal, &t);
        if (r < 0)
                return fail("match", r);
        if (argv[1][0])
                r = sd_bus_call_method(bus, SERVICE, ROOT, MANAGER, "CreateSession", &error, &reply, "sa{sv}", argv[0],
                                       1, "template", "s", argv[1]);
        else
                r = sd_bus_call_method(bus, SERVICE, ROOT, MANAGER, "CreateSession", &error, &reply, "sa{sv}", argv[0],
                                       0);
        if (r < 0)
                return print_call_error(&error, r);
        r = sd_bus_message_read(reply, "o", &t.session);
        if (r < 0)
                return fail("reply", r);
        printf("session %s\n", t.session);
        for (int i = 2; i < argc; i++) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *turn = NULL;
                r = sd_bus_call_method(bus, SERVICE, t.session, SERVICE ".Session", "Send", &error, &turn, "va{sv}",
                                       "s", argv[i], 2, "max_tokens", "u", 8, "temperature", "d", 0.0);
                if (r < 0)
                        return print_call_error(&error, r);
                r = sd_bus_message_read(turn, "o", &t.request);
                if (r < 0)
                        return fail("reply", r);
                t.done = false;
                r = pump_until(bus, &t.done, 60000000);
                if (r < 0)
                        return fail("waiting for Finished", r);
                /* its changes are told apart from the next turn's */
                r = pump_until(bus, NULL, 300000);
                t.request = NULL; /* it points into the turn's reply, freed now */
                if (r < 0)
                        return fail("process", r);
        }
        if (r < 0)
                return fail("process", r);
        if (hold > 0) {
                printf("held\n");
                fflush(stdout);
                r = pump_until(bus, NULL, (uint64_t)(hold * 1e6));
                if (r < 0)
                        return fail("process", r);
        }
        r = sd_bus_call_method(bus, SERVICE, t.session, SERVICE ".Session", "Close", &error, NULL, NULL);
        return r < 0 ? print_call_error(&error, r) : EXIT_SUCCESS;
}

/* ---- watch, objects, get */

/* API_PROBE_WATCH_MS in the environment: each watched line ends in " @MS", ms of CLOCK_MONOTONIC */
static void end_watched_line(const char *tail)
{
        if (getenv("API_PROBE_WATCH_MS"))
                printf("%s @%llu\n", tail, (unsigned long long)(now_usec() / 1000));
        else
                printf("%s\n", tail);
}

static int on_watched(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        const char *iface;
        int r;

        if (sd_bus_message_is_signal(m, "org.freedesktop.DBus.Properties", "PropertiesChanged")) {
                r = sd_bus_message_read(m, "s", &iface);
                if (r < 0)
                        return 0;
                printf("changed %s %s", sd_bus_message_get_path(m), iface);
                r = print_properties(m, " ");
                if (r >= 0) {
                        char **inval = NULL;
                        r = sd_bus_message_read_strv(m, &inval);
                        for (size_t i = 0; r >= 0 && inval && inval[i]; i++)
                                printf("%s%s", i ? " " : " invalidated ", inval[i]);
                        for (size_t i = 0; inval && inval[i]; i++)
                                free(inval[i]);
                        free(inval);
                }
                end_watched_line(sd_bus_message_get_destination(m) ? " (unicast)" : "");
        } else if (sd_bus_message_is_signal(m, "org.freedesktop.DBus.ObjectManager", "InterfacesAdded") ||
                   sd_bus_message_is_signal(m, "org.freedesktop.DBus.ObjectManager", "InterfacesRemoved")) {
                bool added = sd_bus_message_is_signal(m, NULL, "InterfacesAdded");
                const char *path;
                r = sd_bus_message_read(m, "o", &path);
                if (r < 0)
                        return 0;
                printf("%s %s", added ? "added" : "removed", path);
                if (added) {
                        r = sd_bus_message_enter_container(m, 'a', "{sa{sv}}");
                        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sa{sv}")) > 0) {
                                r = sd_bus_message_read(m, "s", &iface);
                                if (r >= 0)
                                        printf(" %s", iface);
                                if (r >= 0)
                                        r = print_properties(m, " ");
                                if (r >= 0)
                                        r = sd_bus_message_exit_container(m);
                        }
                } else {
                        char **ifaces = NULL;
                        r = sd_bus_message_read_strv(m, &ifaces);
                        for (size_t i = 0; r >= 0 && ifaces && ifaces[i]; i++)
                                printf(" %s", ifaces[i]);
                        for (size_t i = 0; ifaces && ifaces[i]; i++)
                                free(ifaces[i]);
                        free(ifaces);
                }
                end_watched_line("");
        }
        fflush(stdout);
        return 0;
}


static int cmd_watch(sd_bus *bus, int argc, char **argv)
{
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *props = NULL, *added = NULL, *removed = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t end;
        int r;

        if (argc < 1)
                return fail("watch SECONDS [PROPERTY...]", EINVAL);
        end = now_usec() + (uint64_t)(strtod(argv[0], NULL) * 1e6);
        r = sd_bus_match_signal(bus, &props, SERVICE, NULL, "org.freedesktop.DBus.Properties", "PropertiesChanged",
                                on_watched, NULL);
        if (r >= 0)
                r = sd_bus_match_signal(bus, &added, SERVICE, NULL, "org.freedesktop.DBus.ObjectManager",
                                        "InterfacesAdded", on_watched, NULL);
        if (r >= 0)
                r = sd_bus_match_signal(bus, &removed, SERVICE, NULL, "org.freedesktop.DBus.ObjectManager",
                                        "InterfacesRemoved", on_watched, NULL);
        if (r < 0)
                return fail("match", r);
        if (argc == 1) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                r = sd_bus_call_method(bus, SERVICE, ROOT, "org.freedesktop.DBus.Properties", "GetAll", &error,
                                       &reply, "s", MANAGER);
                if (r < 0)
                        return print_call_error(&error, r);
        }
        for (int i = 1; i < argc; i++) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                r = sd_bus_call_method(bus, SERVICE, ROOT, "org.freedesktop.DBus.Properties", "Get", &error, &reply,
                                       "ss", MANAGER, argv[i]);
                if (r < 0)
                        return print_call_error(&error, r);
        }
        printf("ready\n");
        fflush(stdout);
        while (now_usec() < end) {
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        return fail("process", r);
                if (r > 0)
                        continue;
                r = sd_bus_wait(bus, MIN(end - now_usec(), 100000ull));
                if (r < 0 && r != -EINTR)
                        return fail("wait", r);
        }
        return EXIT_SUCCESS;
}

static int cmd_objects(sd_bus *bus)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(bus, SERVICE, ROOT, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects",
                               &error, &reply, NULL);
        if (r < 0)
                return print_call_error(&error, r);
        r = sd_bus_message_enter_container(reply, 'a', "{oa{sa{sv}}}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "oa{sa{sv}}")) > 0) {
                const char *path, *iface;
                r = sd_bus_message_read(reply, "o", &path);
                if (r >= 0)
                        r = sd_bus_message_enter_container(reply, 'a', "{sa{sv}}");
                while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sa{sv}")) > 0) {
                        r = sd_bus_message_read(reply, "s", &iface);
                        if (r >= 0) {
                                printf("object %s %s", path, iface);
                                r = print_properties(reply, "\n  ");
                                printf("\n");
                        }
                        if (r >= 0)
                                r = sd_bus_message_exit_container(reply);
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        if (r < 0)
                return fail("reading GetManagedObjects", r);
        return EXIT_SUCCESS;
}

static int cmd_get(sd_bus *bus, int argc, char **argv)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        if (argc != 3)
                return fail("get PATH IFACE PROPERTY", EINVAL);
        r = sd_bus_call_method(bus, SERVICE, argv[0], "org.freedesktop.DBus.Properties", "Get", &error, &reply,
                               "ss", argv[1], argv[2]);
        if (r < 0)
                return print_call_error(&error, r);
        r = print_value(reply);
        printf("\n");
        return r < 0 ? fail("reading the value", r) : EXIT_SUCCESS;
}

/* ---- demand: calls that wait for one load */

#define DEMAND_MAX 16

struct demand_call {
        int index;
        char *path;
        bool answered, finished;
};

static int on_demand_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct demand_call *c = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);
        const char *path;

        c->answered = true;
        if (e) {
                printf("error %d %s: %s\n", c->index, e->name, e->message ? e->message : "");
                c->finished = true;
        } else if (sd_bus_message_read(m, "o", &path) >= 0 && (c->path = strdup(path))) {
                printf("reply %d %s\n", c->index, c->path);
        } else {
                printf("error %d ?: unreadable reply\n", c->index);
                c->finished = true;
        }
        fflush(stdout);
        return 0;
}

static int on_demand_finished(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct demand_call *calls = userdata;
        const char *reason;

        for (int i = 0; i < DEMAND_MAX && calls[i].index; i++)
                if (calls[i].path && !calls[i].finished && !strcmp(calls[i].path, sd_bus_message_get_path(m)) &&
                    sd_bus_message_read(m, "s", &reason) >= 0) {
                        printf("finished %d %s\n", calls[i].index, reason);
                        fflush(stdout);
                        calls[i].finished = true;
                }
        return 0;
}

static bool demand_done(const struct demand_call *calls, int n)
{
        for (int i = 0; i < n; i++)
                if (!calls[i].finished)
                        return false;
        return true;
}

static int cmd_demand(sd_bus *bus, int argc, char **argv)
{
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *finished = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *state = NULL;
        _cleanup_free_ char *path = NULL;
        sd_bus_slot *slots[DEMAND_MAX] = {};
        struct demand_call calls[DEMAND_MAX + 1] = {};
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t t0, deadline = now_usec() + 300 * 1000000ull;
        const char *value = NULL;
        int n, r;

        if (argc != 3 || (n = atoi(argv[1])) < 1 || n > DEMAND_MAX)
                return fail("demand MODEL N(1-16) PROMPT", EINVAL);
        r = sd_bus_path_encode(ROOT "/model", argv[0], &path);
        if (r >= 0)
                r = sd_bus_match_signal(bus, &finished, SERVICE, NULL, REQUEST, "Finished", on_demand_finished, calls);
        for (int i = 0; r >= 0 && i < n; i++) {
                calls[i].index = i + 1;
                r = sd_bus_call_method_async(bus, &slots[i], SERVICE, ROOT, MANAGER, "Generate", on_demand_reply,
                                             &calls[i], "sva{sv}", argv[0], "s", argv[2], 1, "max_tokens", "u", 4);
        }
        if (r < 0)
                return fail("sending the calls", r);
        t0 = now_usec();
        r = sd_bus_call_method(bus, SERVICE, path, "org.freedesktop.DBus.Properties", "Get", &error, &state, "ss",
                               SERVICE ".Model", "State");
        if (r >= 0)
                r = sd_bus_message_read(state, "v", "s", &value);
        printf("state %s %.1f\n", r >= 0 ? value : error.name ? error.name : "?", (now_usec() - t0) / 1000.0);
        fflush(stdout);
        sd_bus_error_free(&error);
        while (!demand_done(calls, n) && now_usec() < deadline) {
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        break;
                if (r == 0)
                        (void)sd_bus_wait(bus, 100000);
        }
        for (int i = 0; i < n; i++) {
                sd_bus_slot_unref(slots[i]);
                free(calls[i].path);
        }
        if (r < 0)
                return fail("process", r);
        return demand_done(calls, n) ? EXIT_SUCCESS : fail("waiting for the requests", ETIMEDOUT);
}

int main(int argc, char **argv)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        if (argc < 3) {
                fprintf(stderr, "usage: api-probe ADDRESS generate|chat|session|watch|objects|get|demand ...\n");
                return 2;
        }
        r = bus_open_spec(argv[1], &bus);
        if (r < 0)
                return fail("connecting", r);
        if (!strcmp(argv[2], "generate"))
                return cmd_generate(bus, argc - 3, argv + 3);
        if (!strcmp(argv[2], "chat"))
                return cmd_chat(bus, argc - 3, argv + 3);
        if (!strcmp(argv[2], "session"))
                return cmd_session(bus, argc - 3, argv + 3);
        if (!strcmp(argv[2], "watch"))
                return cmd_watch(bus, argc - 3, argv + 3);
        if (!strcmp(argv[2], "objects"))
                return cmd_objects(bus);
        if (!strcmp(argv[2], "get"))
                return cmd_get(bus, argc - 3, argv + 3);
        if (!strcmp(argv[2], "demand"))
                return cmd_demand(bus, argc - 3, argv + 3);
        return fail(argv[2], EINVAL);
}
