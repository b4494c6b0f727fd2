/* SPDX-License-Identifier: MIT */
/*
 * npud-probe: what the service tests need from one D-Bus connection that
 * neither npuctl nor busctl (a new connection per call) can do.
 *   npud-probe ADDRESS stats
 *       GetStats as KEY=VALUE lines.
 *   npud-probe ADDRESS flood N MAX_TOKENS PROMPT [STALL_MS]
 *       N Generate calls at once on one connection (greedy, ignore_eos);
 *       prints "accepted K" and "error NAME" per refusal, then "replied",
 *       then reads nothing for STALL_MS (default 0: its requests are held
 *       meanwhile), then waits for the accepted ones to finish and prints
 *       "finished K".
 *   npud-probe ADDRESS hold MAX_TOKENS PROMPT
 *       one request; prints its path, waits for Finished, prints "finished
 *       REASON", then keeps the connection (and the request) until killed.
 *   npud-probe ADDRESS many N MAX_TOKENS PROMPT
 *       N sampled requests one after another, each waited for; prints "done N", then
 *       keeps the connection (and the requests kept on it) until killed.
 *   npud-probe ADDRESS noread MAX_TOKENS SECONDS PROMPT
 *       one request (greedy, ignore_eos); prints its path and "sleeping",
 *       reads nothing from the bus for SECONDS, prints "reading", then
 *       "finished REASON tokens N" (N: the tokens its signals carried).
 *   npud-probe ADDRESS cancel-twice MAX_TOKENS PROMPT
 *       a long request; after its first tokens, Cancel twice, then once more
 *       after Finished; prints "cancel1 R", "cancel2 R", "reason X",
 *       "cancel3 R" where R is "ok" or the error name.
 *   npud-probe ADDRESS big-prompt BYTES
 *       Generate with a text prompt of BYTES bytes; prints "ok" or the
 *       error's name and message.
 *   npud-probe ADDRESS call PATH INTERFACE METHOD [SIGNATURE ARGS...]
 *       one method call to npud, arguments as busctl takes them (arrays: a
 *       count then the items; variants: a signature then the value; h: a
 *       path, opened and passed as a descriptor); prints
 *       "ok", or "NAME: message" on stderr and exits 1. Unlike busctl, the
 *       error's name is printed. call-interactive: the same, allowing
 *       interactive authorization.
 *   npud-probe ADDRESS fake-polkit yes|no|challenge DELAY_MS
 *       takes org.freedesktop.PolicyKit1 and answers CheckAuthorization so
 *       (a challenge is met when the caller allowed interactive
 *       authorization), after DELAY_MS; prints "ready", then "check ACTION
 *       KIND NAME flags=F" per question.
 *   npud-probe notify-listen PATH SECONDS
 *       a service manager's notification socket (NOTIFY_SOCKET=PATH): prints
 *       "listening", then each line received as "notify LINE", until
 *       READY=1 or SECONDS.
 * Exit status 0 unless the probe itself failed (then 1, with a message).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <systemd/sd-bus.h>

#include "bus_client.h"

#define SERVICE "org.npud.Inference1"
#define PATH "/org/npud/Inference1"
#define MANAGER SERVICE ".Manager"
#define REQUEST SERVICE ".Request"

struct probe {
        sd_bus *bus;
        unsigned finished;
        unsigned tokens;          /* Tokens signals */
        unsigned tokens_received; /* tokens in them */
        char last_reason[64];
};

static uint64_t now_usec(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int fail(const char *what, int r)
{
        fprintf(stderr, "npud-probe: %s: %s\n", what, strerror(r < 0 ? -r : r));
        return EXIT_FAILURE;
}

static int on_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct probe *p = userdata;
        const char *reason;

        if (sd_bus_message_is_signal(m, REQUEST, "Tokens")) {
                uint32_t id;
                const char *piece;
                p->tokens++;
                if (sd_bus_message_enter_container(m, 'a', "(us)") >= 0)
                        while (sd_bus_message_read(m, "(us)", &id, &piece) > 0)
                                p->tokens_received++;
        }
        else if (sd_bus_message_is_signal(m, REQUEST, "Finished") && sd_bus_message_read(m, "s", &reason) >= 0) {
                p->finished++;
                snprintf(p->last_reason, sizeof(p->last_reason), "%s", reason);
        }
        return 0;
}

static int wait_until(struct probe *p, const unsigned *counter, unsigned target)
{
        while (*counter < target) {
                int r = sd_bus_process(p->bus, NULL);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;
                r = sd_bus_wait(p->bus, UINT64_MAX);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int append_generate(sd_bus_message *m, const char *prompt, uint32_t max_tokens)
{
        return sd_bus_message_append(m, "sv", "", "s", prompt) < 0 ||
                               sd_bus_message_append(m, "a{sv}", 3, "max_tokens", "u", max_tokens, "temperature",
                                                     "d", 0.0, "ignore_eos", "b", 1) < 0
                       ? -EINVAL
                       : 0;
}

static int generate_sampled(struct probe *p, const char *prompt, uint32_t max_tokens, bool sampled, char **ret_path,
                            sd_bus_error *err)
{
        sd_bus_message *m = NULL, *reply = NULL;
        const char *path;
        int r;

        r = sd_bus_message_new_method_call(p->bus, &m, SERVICE, PATH, MANAGER, "Generate");
        if (r >= 0 && sampled)
                r = sd_bus_message_append(m, "sv", "", "s", prompt) < 0 ||
                                    sd_bus_message_append(m, "a{sv}", 2, "max_tokens", "u", max_tokens, "ignore_eos",
                                                          "b", 1) < 0
                            ? -EINVAL
                            : 0;
        else if (r >= 0)
                r = append_generate(m, prompt, max_tokens);
        if (r >= 0)
                r = sd_bus_call(p->bus, m, 0, err, &reply);
        if (r >= 0)
                r = sd_bus_message_read(reply, "o", &path);
        if (r >= 0)
                *ret_path = strdup(path);
        sd_bus_message_unref(m);
        sd_bus_message_unref(reply);
        return r;
}

static int generate(struct probe *p, const char *prompt, uint32_t max_tokens, char **ret_path, sd_bus_error *err)
{
        return generate_sampled(p, prompt, max_tokens, false, ret_path, err);
}

static int cmd_stats_prefixed(struct probe *p, const char *prefix)
{
        sd_bus_message *reply = NULL;
        sd_bus_error err = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(p->bus, SERVICE, PATH, MANAGER, "GetStats", &err, &reply, NULL);
        if (r < 0) {
                fprintf(stderr, "npud-probe: GetStats: %s: %s\n", err.name, err.message);
                sd_bus_error_free(&err);
                return EXIT_FAILURE;
        }
        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0) {
                const char *key, *contents;
                char type;
                union {
                        uint32_t u;
                        uint64_t t;
                        double d;
                        const char *s;
                } v;
                r = sd_bus_message_enter_container(reply, 'e', "sv");
                if (r <= 0)
                        break;
                if (sd_bus_message_read(reply, "s", &key) < 0 || sd_bus_message_peek_type(reply, &type, &contents) < 0)
                        return fail("parsing GetStats", EBADMSG);
                if (sd_bus_message_enter_container(reply, 'v', contents) < 0 ||
                    sd_bus_message_read_basic(reply, contents[0], &v) < 0 || sd_bus_message_exit_container(reply) < 0)
                        return fail("parsing GetStats", EBADMSG);
                if (contents[0] == 'u')
                        printf("%s%s=%" PRIu32 "\n", prefix, key, v.u);
                else if (contents[0] == 't')
                        printf("%s%s=%" PRIu64 "\n", prefix, key, v.t);
                else if (contents[0] == 'd')
                        printf("%s%s=%f\n", prefix, key, v.d);
                else if (contents[0] == 's')
                        printf("%s%s=%s\n", prefix, key, v.s);
                r = sd_bus_message_exit_container(reply);
        }
        sd_bus_message_unref(reply);
        return r < 0 ? fail("parsing GetStats", r) : EXIT_SUCCESS;
}

static int cmd_stats(struct probe *p)
{
        return cmd_stats_prefixed(p, "");
}

struct flood_call {
        struct probe *p;
        unsigned *replied, *accepted;
};

static int flood_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct flood_call *c = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);

        (*c->replied)++;
        if (e)
                printf("error %s\n", e->name);
        else
                (*c->accepted)++;
        return 0;
}

/*
 * n Generate calls at once; prints "accepted N" and "replied" once all are
 * answered, then reads nothing for stall_ms (its requests are held by
 * streaming backpressure meanwhile), then waits for its requests' Finished.
 */
static int cmd_flood(struct probe *p, unsigned n, uint32_t max_tokens, const char *prompt, unsigned stall_ms)
{
        unsigned replied = 0, accepted = 0;
        struct flood_call c = { p, &replied, &accepted };
        int r;

        for (unsigned i = 0; i < n; i++) {
                sd_bus_message *m = NULL;
                r = sd_bus_message_new_method_call(p->bus, &m, SERVICE, PATH, MANAGER, "Generate");
                if (r >= 0)
                        r = append_generate(m, prompt, max_tokens);
                if (r >= 0)
                        r = sd_bus_call_async(p->bus, NULL, m, flood_reply, &c, 0);
                sd_bus_message_unref(m);
                if (r < 0)
                        return fail("sending Generate", r);
        }
        r = wait_until(p, &replied, n);
        if (r < 0)
                return fail("waiting for the replies", r);
        printf("accepted %u\nreplied\n", accepted);
        fflush(stdout);
        usleep((useconds_t)stall_ms * 1000);
        r = wait_until(p, &p->finished, accepted);
        if (r < 0)
                return fail("waiting for Finished", r);
        printf("finished %u\n", p->finished);
        return EXIT_SUCCESS;
}

static int cmd_hold(struct probe *p, uint32_t max_tokens, const char *prompt)
{
        sd_bus_error err = SD_BUS_ERROR_NULL;
        char *path = NULL;
        int r;

        r = generate(p, prompt, max_tokens, &path, &err);
        if (r < 0) {
                printf("error %s\n", err.name ? err.name : strerror(-r));
                sd_bus_error_free(&err);
                return EXIT_FAILURE;
        }
        printf("%s\n", path);
        fflush(stdout);
        r = wait_until(p, &p->finished, 1);
        if (r < 0)
                return fail("waiting for Finished", r);
        printf("finished %s\n", p->last_reason);
        fflush(stdout);
        for (;;)
                pause();
}

/* n requests one after another on this connection; prints "done N", then keeps the connection (and its requests). */
static int cmd_many(struct probe *p, unsigned n, uint32_t max_tokens, const char *prompt)
{
        for (unsigned i = 0; i < n; i++) {
                sd_bus_error err = SD_BUS_ERROR_NULL;
                char *path = NULL;
                /* sampled (the daemon's default temperature): the sampler's candidates are used */
                int r = generate_sampled(p, prompt, max_tokens, true, &path, &err);
                if (r < 0) {
                        printf("error %s\n", err.name ? err.name : strerror(-r));
                        sd_bus_error_free(&err);
                        return EXIT_FAILURE;
                }
                free(path);
                r = wait_until(p, &p->finished, i + 1);
                if (r < 0)
                        return fail("waiting for Finished", r);
        }
        printf("done %u\n", n);
        fflush(stdout);
        for (;;)
                pause();
}

/* One request, then SECONDS of not reading the bus at all, then reading to its end. */
static int cmd_noread(struct probe *p, uint32_t max_tokens, int seconds, const char *prompt)
{
        sd_bus_error err = SD_BUS_ERROR_NULL;
        char *path = NULL;
        int r;

        r = generate(p, prompt, max_tokens, &path, &err);
        if (r < 0) {
                printf("error %s\n", err.name ? err.name : strerror(-r));
                sd_bus_error_free(&err);
                return EXIT_FAILURE;
        }
        printf("%s\nsleeping\n", path);
        fflush(stdout);
        free(path);
        sleep((unsigned)seconds);
        printf("reading\n");
        fflush(stdout);
        r = wait_until(p, &p->finished, 1);
        if (r < 0)
                return fail("waiting for Finished", r);
        printf("finished %s tokens %u\n", p->last_reason, p->tokens_received);
        return EXIT_SUCCESS;
}

static const char *cancel(struct probe *p, const char *path)
{
        static char name[256];
        sd_bus_error err = SD_BUS_ERROR_NULL;
        int r = sd_bus_call_method(p->bus, SERVICE, path, REQUEST, "Cancel", &err, NULL, NULL);
        snprintf(name, sizeof(name), "%s", r >= 0 ? "ok" : err.name ? err.name : strerror(-r));
        sd_bus_error_free(&err);
        return name;
}

static int cmd_cancel_twice(struct probe *p, uint32_t max_tokens, const char *prompt)
{
        sd_bus_error err = SD_BUS_ERROR_NULL;
        char *path = NULL;
        int r;

        r = generate(p, prompt, max_tokens, &path, &err);
        if (r < 0) {
                printf("error %s\n", err.name ? err.name : strerror(-r));
                sd_bus_error_free(&err);
                return EXIT_FAILURE;
        }
        r = wait_until(p, &p->tokens, 1);
        if (r < 0)
                return fail("waiting for tokens", r);
        printf("cancel1 %s\n", cancel(p, path));
        printf("cancel2 %s\n", cancel(p, path));
        r = wait_until(p, &p->finished, 1);
        if (r < 0)
                return fail("waiting for Finished", r);
        printf("reason %s\n", p->last_reason);
        printf("cancel3 %s\n", cancel(p, path));
        free(path);
        return EXIT_SUCCESS;
}

/* The length of the one complete type at the start of sig. */
static size_t type_len(const char *sig)
{
        if (*sig == 'a')
                return 1 + type_len(sig + 1);
        if (*sig == '(' || *sig == '{') {
                char open = *sig, close = open == '(' ? ')' : '}';
                size_t i = 0;
                int depth = 0;
                do {
                        if (sig[i] == open)
                                depth++;
                        else if (sig[i] == close)
                                depth--;
                        i++;
                } while (depth > 0 && sig[i]);
                return i;
        }
        return *sig ? 1 : 0;
}

struct args {
        char **v;
        int n;
};

static const char *next_arg(struct args *a)
{
        if (a->n == 0)
                return NULL;
        a->n--;
        return *a->v++;
}

static int append_basic(sd_bus_message *m, char type, const char *s)
{
        union {
                uint8_t y;
                int16_t n;
                uint16_t q;
                int32_t i;
                uint32_t u;
                int64_t x;
                uint64_t t;
                double d;
                int b;
        } v;
        char *end = NULL;

        errno = 0;
        switch (type) {
        case 'y': v.y = (uint8_t)strtoul(s, &end, 0); break;
        case 'n': v.n = (int16_t)strtol(s, &end, 0); break;
        case 'q': v.q = (uint16_t)strtoul(s, &end, 0); break;
        case 'i': v.i = (int32_t)strtol(s, &end, 0); break;
        case 'u': v.u = (uint32_t)strtoul(s, &end, 0); break;
        case 'x': v.x = strtoll(s, &end, 0); break;
        case 't': v.t = strtoull(s, &end, 0); break;
        case 'd': v.d = strtod(s, &end); break;
        case 'b': v.b = !strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "1"); end = (char *)""; break;
        case 's':
        case 'o':
        case 'g': return sd_bus_message_append_basic(m, type, s);
        case 'h': {
                /* a file descriptor: the argument is a path, opened read-write (else read-only) */
                int fd = open(s, O_RDWR | O_CLOEXEC | O_NOCTTY), r;
                if (fd < 0)
                        fd = open(s, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0)
                        return -errno;
                r = sd_bus_message_append_basic(m, 'h', &fd);
                close(fd);
                return r;
        }
        default: return -EINVAL;
        }
        if (errno || !end || *end)
                return -EINVAL;
        return sd_bus_message_append_basic(m, type, &v);
}

/* Append the one complete type at *sig from the arguments; advance *sig past it. */
static int append_value(sd_bus_message *m, const char **sig, struct args *a)
{
        size_t len = type_len(*sig);
        char type = **sig, contents[256];
        const char *arg;
        int r;

        if (len == 0 || len >= sizeof(contents))
                return -EINVAL;
        switch (type) {
        case 'v': {
                const char *inner = next_arg(a);
                if (!inner)
                        return -EINVAL;
                r = sd_bus_message_open_container(m, 'v', inner);
                if (r >= 0)
                        r = append_value(m, &inner, a);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                break;
        }
        case 'a': {
                const char *elem_sig;
                arg = next_arg(a);
                if (!arg)
                        return -EINVAL;
                long count = strtol(arg, NULL, 10);
                memcpy(contents, *sig + 1, len - 1);
                contents[len - 1] = 0;
                r = sd_bus_message_open_container(m, 'a', contents);
                for (long i = 0; r >= 0 && i < count; i++) {
                        elem_sig = contents;
                        r = append_value(m, &elem_sig, a);
                }
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                break;
        }
        case '(':
        case '{': {
                const char *p;
                memcpy(contents, *sig + 1, len - 2);
                contents[len - 2] = 0;
                r = sd_bus_message_open_container(m, type == '(' ? 'r' : 'e', contents);
                for (p = contents; r >= 0 && *p;)
                        r = append_value(m, &p, a);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                break;
        }
        default:
                arg = next_arg(a);
                r = arg ? append_basic(m, type, arg) : -EINVAL;
        }
        *sig += len;
        return r;
}

static bool call_interactive;
static int cmd_fake_polkit(struct probe *p, const char *mode, int delay_ms);

static int cmd_call(struct probe *p, int argc, char **argv)
{
        sd_bus_message *m = NULL, *reply = NULL;
        sd_bus_error err = SD_BUS_ERROR_NULL;
        struct args a = { argv + 4, argc > 4 ? argc - 4 : 0 };
        const char *sig = argc > 3 ? argv[3] : "";
        int r;

        r = sd_bus_message_new_method_call(p->bus, &m, SERVICE, argv[0], argv[1], argv[2]);
        if (r >= 0 && call_interactive)
                r = sd_bus_message_set_allow_interactive_authorization(m, true);
        while (r >= 0 && *sig)
                r = append_value(m, &sig, &a);
        if (r < 0 || a.n != 0) {
                fprintf(stderr, "npud-probe: the arguments do not match the signature\n");
                sd_bus_message_unref(m);
                return EXIT_FAILURE;
        }
        r = sd_bus_call(p->bus, m, 0, &err, &reply);
        if (r < 0)
                fprintf(stderr, "%s: %s\n", err.name ? err.name : "(local)", err.message ? err.message : strerror(-r));
        else
                printf("ok\n");
        sd_bus_error_free(&err);
        sd_bus_message_unref(m);
        sd_bus_message_unref(reply);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* --- run: a scripted scenario on one connection --- */

#define MAX_ITEMS 64

struct item {
        char name[32];
        char *path;        /* the request (a session's last turn) */
        char *session;     /* the session object, for session items */
        bool finished;
        char reason[32];
        uint32_t tokens, generated, cached;
        double queue_ms;
        char text[4096];
        size_t text_len;
};

struct script {
        struct probe *p;
        struct item items[MAX_ITEMS];
        int n_items;
        const char *model;
        uint32_t n_vocab;
};

static struct item *item_get(struct script *s, const char *name, bool create)
{
        for (int i = 0; i < s->n_items; i++)
                if (!strcmp(s->items[i].name, name))
                        return &s->items[i];
        if (!create || s->n_items == MAX_ITEMS)
                return NULL;
        struct item *it = &s->items[s->n_items++];
        memset(it, 0, sizeof(*it));
        snprintf(it->name, sizeof(it->name), "%s", name);
        return it;
}

static struct item *item_by_path(struct script *s, const char *path)
{
        for (int i = 0; i < s->n_items; i++)
                if (s->items[i].path && !strcmp(s->items[i].path, path))
                        return &s->items[i];
        return NULL;
}

static uint32_t read_stat_u(sd_bus_message *m, const char *want)
{
        uint32_t v = 0;
        if (sd_bus_message_rewind(m, true) < 0 || sd_bus_message_skip(m, "s") < 0 ||
            sd_bus_message_enter_container(m, 'a', "{sv}") < 0)
                return 0;
        while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
                const char *key, *contents;
                char type;
                if (sd_bus_message_read(m, "s", &key) < 0 || sd_bus_message_peek_type(m, &type, &contents) < 0)
                        break;
                if (!strcmp(key, want) && !strcmp(contents, "u"))
                        sd_bus_message_read(m, "v", "u", &v);
                else if (!strcmp(key, want) && !strcmp(contents, "d")) {
                        double d = 0;
                        sd_bus_message_read(m, "v", "d", &d);
                        v = (uint32_t)d;
                } else
                        sd_bus_message_skip(m, "v");
                sd_bus_message_exit_container(m);
        }
        return v;
}

static int on_script_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct script *s = userdata;
        struct item *it = item_by_path(s, sd_bus_message_get_path(m));
        const char *reason, *piece;
        uint32_t id;

        if (!it) {
                /* a signal for a request this connection did not make */
                printf("stray %s %s\n", sd_bus_message_get_member(m), sd_bus_message_get_path(m));
                return 0;
        }
        if (sd_bus_message_is_signal(m, REQUEST, "Tokens")) {
                if (sd_bus_message_enter_container(m, 'a', "(us)") < 0)
                        return 0;
                while (sd_bus_message_read(m, "(us)", &id, &piece) > 0) {
                        size_t l = strlen(piece);
                        it->tokens++;
                        if (it->text_len + l < sizeof(it->text)) {
                                memcpy(it->text + it->text_len, piece, l + 1);
                                it->text_len += l;
                        }
                }
        } else if (sd_bus_message_is_signal(m, REQUEST, "Finished") && sd_bus_message_read(m, "s", &reason) >= 0) {
                snprintf(it->reason, sizeof(it->reason), "%s", reason);
                it->generated = read_stat_u(m, "generated_tokens");
                it->cached = read_stat_u(m, "cached_prompt_tokens");
                it->queue_ms = read_stat_u(m, "queue_ms");
                it->finished = true;
        }
        return 0;
}

/* Token ids for a prompt: a pattern that differs by item name, so two names share no prefix. */
static int append_ids(struct script *s, sd_bus_message *m, const char *name, uint32_t n, uint32_t from)
{
        uint32_t base = (uint32_t)strlen(name) * 131u;
        int r;

        for (const char *c = name; *c; c++)
                base = base * 31u + (uint8_t)*c;
        r = sd_bus_message_open_container(m, 'v', "ai");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "i");
        for (uint32_t i = from; r >= 0 && i < from + n; i++) {
                int32_t id = (int32_t)(3 + (base + i * 37u) % (s->n_vocab - 3));
                r = sd_bus_message_append_basic(m, 'i', &id);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

static int append_options(sd_bus_message *m, uint32_t max_tokens)
{
        return sd_bus_message_append(m, "a{sv}", 3, "max_tokens", "u", max_tokens, "temperature", "d", 0.0,
                                     "ignore_eos", "b", 1);
}

/* Sends m; the reply's object path goes to it->path, an error is printed. */
static int call_for_path(struct script *s, sd_bus_message *m, struct item *it, char **dst)
{
        sd_bus_error err = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *path;
        int r;

        r = sd_bus_call(s->p->bus, m, 0, &err, &reply);
        if (r < 0) {
                printf("error %s %s\n", it->name, err.name ? err.name : strerror(-r));
                fflush(stdout);
                it->finished = true;
                snprintf(it->reason, sizeof(it->reason), "refused");
                sd_bus_error_free(&err);
                return 0;
        }
        r = sd_bus_message_read(reply, "o", &path);
        if (r >= 0) {
                free(*dst);
                *dst = strdup(path);
        }
        sd_bus_message_unref(reply);
        return r;
}

static int step_gen(struct script *s, const char *name, uint32_t n, uint32_t max_tokens, const char *text,
                    const char *pattern)
{
        struct item *it = item_get(s, name, true);
        sd_bus_message *m = NULL;
        int r;

        if (!it)
                return -ENOBUFS;
        free(it->path);
        memset(it, 0, sizeof(*it));
        snprintf(it->name, sizeof(it->name), "%s", name);
        r = sd_bus_message_new_method_call(s->p->bus, &m, SERVICE, PATH, MANAGER, "Generate");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", s->model);
        if (r >= 0)
                r = text ? sd_bus_message_append(m, "v", "s", text) : append_ids(s, m, pattern ? pattern : name, n, 0);
        if (r >= 0)
                r = append_options(m, max_tokens);
        if (r >= 0)
                r = call_for_path(s, m, it, &it->path);
        sd_bus_message_unref(m);
        return r;
}

static int step_session(struct script *s, const char *name)
{
        struct item *it = item_get(s, name, true);
        sd_bus_message *m = NULL;
        int r;

        if (!it)
                return -ENOBUFS;
        r = sd_bus_message_new_method_call(s->p->bus, &m, SERVICE, PATH, MANAGER, "CreateSession");
        if (r >= 0)
                r = sd_bus_message_append(m, "sa{sv}", s->model, 0);
        if (r >= 0)
                r = call_for_path(s, m, it, &it->session);
        sd_bus_message_unref(m);
        return r;
}

/* A turn of n new tokens; the session's earlier turns' tokens (sent) make the item's ids continue. */
static int step_send(struct script *s, const char *name, uint32_t n, uint32_t max_tokens, const char *pattern)
{
        struct item *it = item_get(s, name, false);
        sd_bus_message *m = NULL;
        static uint32_t turn;
        char tname[48];
        int r;

        if (!it || !it->session)
                return -ENOENT;
        snprintf(tname, sizeof(tname), "%s-%u", name, ++turn);
        r = sd_bus_message_new_method_call(s->p->bus, &m, SERVICE, it->session, SERVICE ".Session", "Send");
        if (r >= 0)
                r = append_ids(s, m, pattern ? pattern : tname, n, 0);
        if (r >= 0)
                r = append_options(m, max_tokens);
        it->finished = false;
        it->reason[0] = 0;
        it->tokens = it->generated = 0;
        it->text_len = 0;
        it->text[0] = 0;
        if (r >= 0)
                r = call_for_path(s, m, it, &it->path);
        sd_bus_message_unref(m);
        return r;
}

/* Process the bus for usec, or until `until` finished (or, with first, streamed a token). */
static int process_for(struct probe *p, uint64_t usec, struct item *until, bool first)
{
        uint64_t end = now_usec() + usec;

        for (;;) {
                int r = sd_bus_process(p->bus, NULL);
                if (r < 0)
                        return r;
                if (until && (until->finished || (first && until->tokens > 0)))
                        return 1;
                if (r > 0)
                        continue;
                uint64_t now = now_usec();
                if (now >= end)
                        return 0;
                r = sd_bus_wait(p->bus, end - now);
                if (r < 0)
                        return r;
        }
}

/*
 * Until NAME's request finished ("finished NAME ..." or "timeout NAME"),
 * or with first, until it streamed a token: it runs, it no longer waits in
 * the queue ("first NAME" or "timeout-first NAME").
 */
static int step_until(struct script *s, const char *name, double seconds, bool first)
{
        struct item *it = item_get(s, name, false);
        int r;

        if (!it)
                return -ENOENT;
        r = process_for(s->p, (uint64_t)(seconds * 1e6), it, first);
        if (r < 0)
                return r;
        if (first)
                printf("%s %s\n", it->tokens > 0 ? "first" : "timeout-first", name);
        else if (!it->finished)
                printf("timeout %s\n", name);
        else if (strcmp(it->reason, "refused"))
                printf("finished %s %s generated=%u tokens=%u cached=%u queue_ms=%.0f\n", name, it->reason,
                       it->generated, it->tokens, it->cached, it->queue_ms);
        fflush(stdout);
        return 0;
}

static int step_object_call(struct script *s, const char *name, const char *method)
{
        struct item *it = item_get(s, name, false);
        sd_bus_error err = SD_BUS_ERROR_NULL;
        bool session = !strcmp(method, "Reset") || !strcmp(method, "CloseSession");
        const char *path = it ? (session ? it->session : it->path) : NULL;
        int r;

        if (!path)
                return -ENOENT;
        r = sd_bus_call_method(s->p->bus, SERVICE, path, session ? SERVICE ".Session" : REQUEST,
                               !strcmp(method, "CloseSession") ? "Close" : method, &err, NULL, NULL);
        printf("%s %s %s\n", method, name, r >= 0 ? "ok" : err.name ? err.name : strerror(-r));
        fflush(stdout);
        sd_bus_error_free(&err);
        return 0;
}

/* Prints "prop NAME PROPERTY VALUE" (a session's property for session items, else the request's). */
static int step_property(struct script *s, const char *name, const char *property)
{
        struct item *it = item_get(s, name, false);
        sd_bus_error err = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *path = it ? (it->session ? it->session : it->path) : NULL;
        const char *iface = it && it->session ? SERVICE ".Session" : REQUEST;
        const char *contents = NULL;
        char type;
        int r;

        if (!path)
                return -ENOENT;
        r = sd_bus_call_method(s->p->bus, SERVICE, path, "org.freedesktop.DBus.Properties", "Get", &err, &reply,
                               "ss", iface, property);
        if (r < 0) {
                printf("prop %s %s %s\n", name, property, err.name ? err.name : strerror(-r));
                sd_bus_error_free(&err);
                return 0;
        }
        r = sd_bus_message_peek_type(reply, &type, &contents);
        if (r >= 0)
                r = sd_bus_message_enter_container(reply, 'v', contents);
        if (r >= 0 && !strcmp(contents, "u")) {
                uint32_t u;
                r = sd_bus_message_read(reply, "u", &u);
                printf("prop %s %s %u\n", name, property, u);
        } else if (r >= 0 && !strcmp(contents, "s")) {
                const char *v;
                r = sd_bus_message_read(reply, "s", &v);
                printf("prop %s %s %s\n", name, property, v);
        }
        sd_bus_message_unref(reply);
        return r < 0 ? r : 0;
}

/*
 * Steps, one per argument, words separated by spaces:
 *   model NAME               later gen/session use this model ("" the default)
 *   vocab N                  token ids are drawn from [3, N) (default 512)
 *   gen NAME NTOK MAXTOK [PATTERN]
 *                            Generate NTOK token ids (greedy, ignore_eos), drawn by
 *                            PATTERN's name (default NAME)
 *   text NAME MAXTOK WORDS.. Generate a text prompt
 *   session NAME             CreateSession
 *   send NAME NTOK MAXTOK [PATTERN]
 *                            Session.Send NTOK new token ids; the turn is NAME's request
 *   wait NAME SECONDS        until NAME's request finished: "finished NAME REASON generated=G ..."
 *                            or "timeout NAME"
 *   first NAME SECONDS       until NAME's request streamed a token (it runs): "first NAME", or "timeout-first NAME"
 *   cancel|close NAME        Request.Cancel/Close; reset|close-session NAME: Session.Reset/Close
 *   print NAME               "text NAME <the streamed text>"
 *   path NAME                "path NAME OBJECT" (the session's, else the request's)
 *   prop NAME PROPERTY       "prop NAME PROPERTY VALUE" (or the error's name)
 *   sleep MS                 process the bus for MS milliseconds
 *   stall MS                 read nothing from the bus for MS milliseconds
 *   stats                    GetStats as "stat KEY=VALUE" lines
 * Refused calls print "error NAME ERROR"; signals of requests this
 * connection did not make print "stray MEMBER PATH".
 */
static int cmd_run(struct probe *p, int argc, char **argv)
{
        struct script s = { .p = p, .model = "", .n_vocab = 512 };
        sd_bus_slot *match = NULL;
        int r;

        r = sd_bus_match_signal(p->bus, &match, NULL, NULL, REQUEST, NULL, on_script_signal, &s);
        if (r < 0)
                return fail("adding the match", r);
        for (int i = 0; i < argc && r >= 0; i++) {
                char buf[1024], *w[16] = {}, *save = NULL, *rest = NULL;
                int n = 0;
                snprintf(buf, sizeof(buf), "%s", argv[i]);
                for (char *t = strtok_r(buf, " ", &save); t && n < 16; t = strtok_r(NULL, " ", &save))
                        w[n++] = t;
                if (!w[0])
                        continue;
                /* text NAME MAXTOK WORDS...: the words as written (buf is a copy of argv[i]) */
                if (n >= 4)
                        rest = argv[i] + (w[3] - buf);
                if (!strcmp(w[0], "model") && n >= 1) {
                        if (s.model[0])
                                free((char *)s.model);
                        s.model = w[1] ? strdup(w[1]) : "";
                        if (!s.model)
                                return fail("model", ENOMEM);
                } else if (!strcmp(w[0], "vocab") && n == 2)
                        s.n_vocab = (uint32_t)atoi(w[1]);
                else if (!strcmp(w[0], "gen") && (n == 4 || n == 5))
                        r = step_gen(&s, w[1], (uint32_t)atoi(w[2]), (uint32_t)atoi(w[3]), NULL, w[4]);
                else if (!strcmp(w[0], "text") && n >= 4)
                        r = step_gen(&s, w[1], 0, (uint32_t)atoi(w[2]), rest, NULL);
                else if (!strcmp(w[0], "session") && n == 2)
                        r = step_session(&s, w[1]);
                else if (!strcmp(w[0], "send") && (n == 4 || n == 5))
                        r = step_send(&s, w[1], (uint32_t)atoi(w[2]), (uint32_t)atoi(w[3]), w[4]);
                else if (!strcmp(w[0], "wait") && n == 3)
                        r = step_until(&s, w[1], atof(w[2]), false);
                else if (!strcmp(w[0], "first") && n == 3)
                        r = step_until(&s, w[1], atof(w[2]), true);
                else if (!strcmp(w[0], "cancel") && n == 2)
                        r = step_object_call(&s, w[1], "Cancel");
                else if (!strcmp(w[0], "close") && n == 2)
                        r = step_object_call(&s, w[1], "Close");
                else if (!strcmp(w[0], "reset") && n == 2)
                        r = step_object_call(&s, w[1], "Reset");
                else if (!strcmp(w[0], "close-session") && n == 2)
                        r = step_object_call(&s, w[1], "CloseSession");
                else if (!strcmp(w[0], "print") && n == 2) {
                        struct item *it = item_get(&s, w[1], false);
                        printf("text %s %s\n", w[1], it ? it->text : "");
                } else if (!strcmp(w[0], "path") && n == 2) {
                        struct item *it = item_get(&s, w[1], false);
                        printf("path %s %s\n", w[1], it && it->session ? it->session : it && it->path ? it->path : "-");
                } else if (!strcmp(w[0], "prop") && n == 3)
                        r = step_property(&s, w[1], w[2]);
                else if (!strcmp(w[0], "sleep") && n == 2)
                        r = process_for(p, (uint64_t)atoi(w[1]) * 1000, NULL, false);
                else if (!strcmp(w[0], "stall") && n == 2)
                        usleep((useconds_t)atoi(w[1]) * 1000); /* not reading the bus at all */
                else if (!strcmp(w[0], "stats")) {
                        fflush(stdout);
                        r = cmd_stats_prefixed(p, "stat ");
                        r = r == EXIT_SUCCESS ? 0 : -EIO;
                } else {
                        fprintf(stderr, "npud-probe: bad step '%s'\n", argv[i]);
                        return EXIT_FAILURE;
                }
                fflush(stdout);
        }
        sd_bus_slot_unref(match);
        for (int i = 0; i < s.n_items; i++) {
                free(s.items[i].path);
                free(s.items[i].session);
        }
        if (s.model[0])
                free((char *)s.model);
        return r < 0 ? fail(argv[0], r) : EXIT_SUCCESS;
}

/* Generate with a text prompt of n bytes ("the cat sat ..." repeated); prints "ok" or the error's name. */
static int cmd_big_prompt(struct probe *p, size_t n)
{
        static const char unit[] = "the cat sat on the mat and looked at the big red ball ";
        sd_bus_error err = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        char *text = malloc(n + 1);
        int r;

        if (!text)
                return fail("allocating the prompt", ENOMEM);
        for (size_t i = 0; i < n; i++)
                text[i] = unit[i % (sizeof(unit) - 1)];
        text[n] = 0;
        r = sd_bus_message_new_method_call(p->bus, &m, SERVICE, PATH, MANAGER, "Generate");
        if (r >= 0)
                r = sd_bus_message_append(m, "sv", "", "s", text);
        if (r >= 0)
                r = sd_bus_message_append(m, "a{sv}", 1, "max_tokens", "u", 1);
        free(text);
        if (r >= 0)
                r = sd_bus_call(p->bus, m, 120 * 1000000ull, &err, &reply);
        printf("%s %s\n", r >= 0 ? "ok" : err.name ? err.name : strerror(-r), r >= 0 ? "" : err.message);
        sd_bus_error_free(&err);
        sd_bus_message_unref(m);
        sd_bus_message_unref(reply);
        return EXIT_SUCCESS;
}

static int dispatch(struct probe *p, int argc, char **argv)
{
        if (strcmp(argv[2], "call") == 0 && argc >= 6)
                return cmd_call(p, argc - 3, argv + 3);
        if (strcmp(argv[2], "call-interactive") == 0 && argc >= 6) {
                call_interactive = true;
                return cmd_call(p, argc - 3, argv + 3);
        }
        if (strcmp(argv[2], "big-prompt") == 0 && argc == 4)
                return cmd_big_prompt(p, strtoull(argv[3], NULL, 10));
        if (strcmp(argv[2], "run") == 0)
                return cmd_run(p, argc - 3, argv + 3);
        if (strcmp(argv[2], "stats") == 0)
                return cmd_stats(p);
        if (strcmp(argv[2], "flood") == 0 && (argc == 6 || argc == 7))
                return cmd_flood(p, (unsigned)atoi(argv[3]), (uint32_t)atoi(argv[4]), argv[5],
                                 argc == 7 ? (unsigned)atoi(argv[6]) : 0);
        if (strcmp(argv[2], "fake-polkit") == 0 && argc == 5)
                return cmd_fake_polkit(p, argv[3], atoi(argv[4]));
        if (strcmp(argv[2], "noread") == 0 && argc == 6)
                return cmd_noread(p, (uint32_t)atoi(argv[3]), atoi(argv[4]), argv[5]);
        if (strcmp(argv[2], "many") == 0 && argc == 6)
                return cmd_many(p, (unsigned)atoi(argv[3]), (uint32_t)atoi(argv[4]), argv[5]);
        if (strcmp(argv[2], "hold") == 0 && argc == 5)
                return cmd_hold(p, (uint32_t)atoi(argv[3]), argv[4]);
        if (strcmp(argv[2], "cancel-twice") == 0 && argc == 5)
                return cmd_cancel_twice(p, (uint32_t)atoi(argv[3]), argv[4]);
        fprintf(stderr, "npud-probe: unknown command or wrong arguments\n");
        return EXIT_FAILURE;
}

/* --- a stand-in for polkit's authority on the test bus --- */

struct fake_polkit {
        const char *mode; /* yes, no, challenge */
        int delay_ms;
};

static int fake_check(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct fake_polkit *f = userdata;
        const char *kind, *key, *name = "?", *action;
        uint32_t flags;
        int r, yes, challenge;

        r = sd_bus_message_enter_container(m, 'r', "sa{sv}");
        if (r >= 0)
                r = sd_bus_message_read(m, "s", &kind);
        if (r >= 0)
                r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && sd_bus_message_enter_container(m, 'e', "sv") > 0) {
                r = sd_bus_message_read(m, "s", &key);
                if (r >= 0 && !strcmp(key, "name"))
                        r = sd_bus_message_read(m, "v", "s", &name);
                else if (r >= 0)
                        r = sd_bus_message_skip(m, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r >= 0)
                r = sd_bus_message_read(m, "s", &action);
        if (r >= 0)
                r = sd_bus_message_skip(m, "a{ss}");
        if (r >= 0)
                r = sd_bus_message_read(m, "u", &flags);
        if (r < 0)
                return r;
        printf("check %s %s %s flags=%u\n", action, kind, name, flags);
        fflush(stdout);
        if (f->delay_ms > 0)
                usleep((useconds_t)f->delay_ms * 1000);
        yes = !strcmp(f->mode, "yes");
        challenge = !strcmp(f->mode, "challenge");
        /* a challenge is met when the caller allowed interactive authorization (flag 1) */
        if (challenge && (flags & 1)) {
                yes = 1;
                challenge = 0;
        }
        return sd_bus_reply_method_return(m, "(bba{ss})", yes, challenge, 0);
}

static const sd_bus_vtable fake_polkit_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("CheckAuthorization", "(sa{sv})sa{ss}us", "(bba{ss})", fake_check, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

/* Answers CheckAuthorization with MODE (yes, no, challenge) after DELAY_MS; prints "check ACTION KIND NAME flags=F". */
static int cmd_fake_polkit(struct probe *p, const char *mode, int delay_ms)
{
        struct fake_polkit f = { mode, delay_ms };
        int r;

        r = sd_bus_add_object_vtable(p->bus, NULL, "/org/freedesktop/PolicyKit1/Authority",
                                     "org.freedesktop.PolicyKit1.Authority", fake_polkit_vtable, &f);
        if (r >= 0)
                r = sd_bus_request_name(p->bus, "org.freedesktop.PolicyKit1", 0);
        if (r < 0)
                return fail("becoming org.freedesktop.PolicyKit1", r);
        printf("ready\n");
        fflush(stdout);
        for (;;) {
                r = sd_bus_process(p->bus, NULL);
                if (r < 0)
                        return fail("processing", r);
                if (r == 0 && sd_bus_wait(p->bus, UINT64_MAX) < 0)
                        return EXIT_FAILURE;
        }
}

/* A service manager's notification socket at path: prints each message's lines as "notify LINE" until READY=1. */
static int cmd_notify_listen(const char *path, int seconds)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        uint64_t end = now_usec() + (uint64_t)seconds * 1000000u;
        bool ready = false;

        if (fd < 0 || strlen(path) >= sizeof(sa.sun_path))
                return fail("socket", fd < 0 ? errno : ENAMETOOLONG);
        strcpy(sa.sun_path, path);
        unlink(path);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return fail("bind", errno);
        printf("listening\n");
        fflush(stdout);
        while (!ready && now_usec() < end) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                char buf[4096];
                ssize_t n;
                if (poll(&pfd, 1, (int)((end - now_usec()) / 1000) + 1) <= 0)
                        continue;
                n = recv(fd, buf, sizeof(buf) - 1, 0);
                if (n <= 0)
                        continue;
                buf[n] = 0;
                for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                        printf("notify %s\n", line);
                        ready |= !strcmp(line, "READY=1");
                }
                fflush(stdout);
        }
        close(fd);
        return EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
        struct probe p = {};
        sd_bus_slot *match = NULL;
        int r;

        if (argc == 4 && strcmp(argv[1], "notify-listen") == 0)
                return cmd_notify_listen(argv[2], atoi(argv[3]));
        if (argc < 3) {
                fprintf(stderr, "usage: npud-probe ADDRESS stats|flood|hold|cancel-twice|call ...\n");
                return EXIT_FAILURE;
        }
        r = bus_open_spec(argv[1], &p.bus);
        if (r < 0)
                return fail("connecting", r);
        r = sd_bus_match_signal(p.bus, &match, SERVICE, NULL, REQUEST, NULL, on_signal, &p);
        r = r < 0 ? fail("adding the match", r) : dispatch(&p, argc, argv);
        sd_bus_slot_unref(match);
        sd_bus_flush_close_unref(p.bus);
        return r;
}
