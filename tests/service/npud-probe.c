/* SPDX-License-Identifier: MIT */
/*
 * npud-probe: what the service tests need from one D-Bus connection that
 * neither npuctl nor busctl (a new connection per call) can do.
 *   npud-probe ADDRESS stats
 *       GetStats as KEY=VALUE lines.
 *   npud-probe ADDRESS flood N MAX_TOKENS PROMPT
 *       N Generate calls at once on one connection (greedy, ignore_eos);
 *       prints "accepted K" and "error NAME" per refusal, then "replied",
 *       then waits for the accepted ones to finish and prints "finished K".
 *   npud-probe ADDRESS hold MAX_TOKENS PROMPT
 *       one request; prints its path, waits for Finished, prints "finished
 *       REASON", then keeps the connection (and the request) until killed.
 *   npud-probe ADDRESS cancel-twice MAX_TOKENS PROMPT
 *       a long request; after its first tokens, Cancel twice, then once more
 *       after Finished; prints "cancel1 R", "cancel2 R", "reason X",
 *       "cancel3 R" where R is "ok" or the error name.
 *   npud-probe ADDRESS call PATH INTERFACE METHOD [SIGNATURE ARGS...]
 *       one method call to npud, arguments as busctl takes them (arrays: a
 *       count then the items; variants: a signature then the value; h: a
 *       path, opened and passed as a descriptor); prints
 *       "ok", or "NAME: message" on stderr and exits 1. Unlike busctl, the
 *       error's name is printed.
 * Exit status 0 unless the probe itself failed (then 1, with a message).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <systemd/sd-bus.h>

#define SERVICE "org.npud.Inference1"
#define PATH "/org/npud/Inference1"
#define MANAGER SERVICE ".Manager"
#define REQUEST SERVICE ".Request"

struct probe {
        sd_bus *bus;
        unsigned finished;
        unsigned tokens;
        char last_reason[64];
};

static int fail(const char *what, int r)
{
        fprintf(stderr, "npud-probe: %s: %s\n", what, strerror(r < 0 ? -r : r));
        return EXIT_FAILURE;
}

static int on_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct probe *p = userdata;
        const char *reason;

        if (sd_bus_message_is_signal(m, REQUEST, "Tokens"))
                p->tokens++;
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

static int generate(struct probe *p, const char *prompt, uint32_t max_tokens, char **ret_path, sd_bus_error *err)
{
        sd_bus_message *m = NULL, *reply = NULL;
        const char *path;
        int r;

        r = sd_bus_message_new_method_call(p->bus, &m, SERVICE, PATH, MANAGER, "Generate");
        if (r >= 0)
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

static int cmd_stats(struct probe *p)
{
        sd_bus_message *reply = NULL;
        sd_bus_error err = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(p->bus, SERVICE, PATH, MANAGER, "GetStats", &err, &reply, NULL);
        if (r < 0) {
                fprintf(stderr, "npud-probe: GetStats: %s: %s\n", err.name, err.message);
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
                        printf("%s=%" PRIu32 "\n", key, v.u);
                else if (contents[0] == 't')
                        printf("%s=%" PRIu64 "\n", key, v.t);
                else if (contents[0] == 'd')
                        printf("%s=%f\n", key, v.d);
                r = sd_bus_message_exit_container(reply);
        }
        sd_bus_message_unref(reply);
        return r < 0 ? fail("parsing GetStats", r) : EXIT_SUCCESS;
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

static int cmd_flood(struct probe *p, unsigned n, uint32_t max_tokens, const char *prompt)
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

static int cmd_call(struct probe *p, int argc, char **argv)
{
        sd_bus_message *m = NULL, *reply = NULL;
        sd_bus_error err = SD_BUS_ERROR_NULL;
        struct args a = { argv + 4, argc > 4 ? argc - 4 : 0 };
        const char *sig = argc > 3 ? argv[3] : "";
        int r;

        r = sd_bus_message_new_method_call(p->bus, &m, SERVICE, argv[0], argv[1], argv[2]);
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

static int open_bus(const char *address, sd_bus **ret)
{
        sd_bus *bus = NULL;
        int r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, address);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, 1);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r < 0) {
                sd_bus_unref(bus);
                return r;
        }
        *ret = bus;
        return 0;
}

static int dispatch(struct probe *p, int argc, char **argv)
{
        if (strcmp(argv[2], "call") == 0 && argc >= 6)
                return cmd_call(p, argc - 3, argv + 3);
        if (strcmp(argv[2], "stats") == 0)
                return cmd_stats(p);
        if (strcmp(argv[2], "flood") == 0 && argc == 6)
                return cmd_flood(p, (unsigned)atoi(argv[3]), (uint32_t)atoi(argv[4]), argv[5]);
        if (strcmp(argv[2], "hold") == 0 && argc == 5)
                return cmd_hold(p, (uint32_t)atoi(argv[3]), argv[4]);
        if (strcmp(argv[2], "cancel-twice") == 0 && argc == 5)
                return cmd_cancel_twice(p, (uint32_t)atoi(argv[3]), argv[4]);
        fprintf(stderr, "npud-probe: unknown command or wrong arguments\n");
        return EXIT_FAILURE;
}

int main(int argc, char **argv)
{
        struct probe p = {};
        sd_bus_slot *match = NULL;
        int r;

        if (argc < 3) {
                fprintf(stderr, "usage: npud-probe ADDRESS stats|flood|hold|cancel-twice|call ...\n");
                return EXIT_FAILURE;
        }
        r = open_bus(argv[1], &p.bus);
        if (r < 0)
                return fail("connecting", r);
        r = sd_bus_match_signal(p.bus, &match, SERVICE, NULL, REQUEST, NULL, on_signal, &p);
        r = r < 0 ? fail("adding the match", r) : dispatch(&p, argc, argv);
        sd_bus_slot_unref(match);
        sd_bus_flush_close_unref(p.bus);
        return r;
}
