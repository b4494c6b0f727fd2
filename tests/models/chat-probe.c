/* SPDX-License-Identifier: MIT */
/*
 * chat-probe: the Chat method and chat sessions from one D-Bus connection,
 * greedy, for tests/models/run.sh.
 *   chat-probe ADDRESS chat MAX_TOKENS ROLE TEXT [ROLE TEXT...]
 *       Chat with those messages; prints "prompt_tokens N", then the reply
 *       on a line of its own.
 *   chat-probe ADDRESS session MAX_TOKENS SYSTEM TEXT1 TEXT2
 *       a chat session with the system message (unless ""), two turns;
 *       prints "reply1 ...", "reply2 ...", "cached N" (the second turn's
 *       cached prompt tokens), "template NAME" and one "message ROLE TEXT"
 *       line per message of the session.
 * Texts are printed with newlines as \n. Exit 1 with a message on failure.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>

#define SERVICE "org.npud.Inference1"
#define PATH "/org/npud/Inference1"
#define MANAGER SERVICE ".Manager"
#define REQUEST SERVICE ".Request"
#define SESSION SERVICE ".Session"

struct turn {
        char text[65536];
        size_t len;
        bool finished;
        unsigned prompt_tokens, cached_tokens;
        char reason[32];
};

static int die(const char *what, const sd_bus_error *e, int r)
{
        fprintf(stderr, "chat-probe: %s: %s\n", what, e && e->message ? e->message : strerror(r < 0 ? -r : r));
        exit(1);
}

static void read_stats(sd_bus_message *m, struct turn *t)
{
        const char *key;
        if (sd_bus_message_enter_container(m, 'a', "{sv}") < 0)
                return;
        while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
                sd_bus_message_read(m, "s", &key);
                if (!strcmp(key, "prompt_tokens"))
                        sd_bus_message_read(m, "v", "u", &t->prompt_tokens);
                else if (!strcmp(key, "cached_prompt_tokens"))
                        sd_bus_message_read(m, "v", "u", &t->cached_tokens);
                else
                        sd_bus_message_skip(m, "v");
                sd_bus_message_exit_container(m);
        }
        sd_bus_message_exit_container(m);
}

static int on_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct turn *t = userdata;
        const char *piece, *reason;
        uint32_t id;

        if (sd_bus_message_is_signal(m, REQUEST, "Tokens")) {
                if (sd_bus_message_enter_container(m, 'a', "(us)") < 0)
                        return 0;
                while (sd_bus_message_read(m, "(us)", &id, &piece) > 0) {
                        size_t n = strlen(piece);
                        if (t->len + n < sizeof(t->text)) {
                                memcpy(t->text + t->len, piece, n + 1);
                                t->len += n;
                        }
                }
        } else if (sd_bus_message_is_signal(m, REQUEST, "Finished")) {
                if (sd_bus_message_read(m, "s", &reason) >= 0)
                        snprintf(t->reason, sizeof(t->reason), "%s", reason);
                read_stats(m, t);
                t->finished = true;
        }
        return 0;
}

/* Sends the call (which returns a request path) and collects the reply. */
static void run(sd_bus *bus, sd_bus_message *call, struct turn *t)
{
        sd_bus_error e = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        int r;

        memset(t, 0, sizeof(*t));
        r = sd_bus_call(bus, call, 0, &e, &reply);
        if (r < 0)
                die("call", &e, r);
        while (!t->finished) {
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        die("process", NULL, r);
                if (r == 0 && sd_bus_wait(bus, UINT64_MAX) < 0)
                        die("wait", NULL, -EIO);
        }
        sd_bus_message_unref(reply);
}

static void options(sd_bus_message *m, uint32_t max_tokens, const char *system)
{
        sd_bus_message_open_container(m, 'a', "{sv}");
        sd_bus_message_append(m, "{sv}", "temperature", "d", 0.0);
        sd_bus_message_append(m, "{sv}", "max_tokens", "u", max_tokens);
        if (system && *system)
                sd_bus_message_append(m, "{sv}", "system_prompt", "s", system);
        sd_bus_message_close_container(m);
}

static void print_text(const char *label, const char *s)
{
        printf("%s", label);
        for (; *s; s++)
                if (*s == '\n')
                        printf("\\n");
                else
                        putchar(*s);
        putchar('\n');
}

int main(int argc, char **argv)
{
        sd_bus *bus = NULL;
        sd_bus_message *m = NULL;
        static struct turn t;
        int r;

        if (argc < 5)
                return fprintf(stderr, "usage: see the source\n"), 2;
        uint32_t max_tokens = (uint32_t)atoi(argv[3]);
        if ((r = sd_bus_new(&bus)) < 0 || (r = sd_bus_set_address(bus, argv[1])) < 0 ||
            (r = sd_bus_set_bus_client(bus, 1)) < 0 || (r = sd_bus_start(bus)) < 0)
                die("bus", NULL, r);
        r = sd_bus_match_signal(bus, NULL, SERVICE, NULL, REQUEST, NULL, on_signal, &t);
        if (r < 0)
                die("match", NULL, r);
        if (!strcmp(argv[2], "chat")) {
                sd_bus_message_new_method_call(bus, &m, SERVICE, PATH, MANAGER, "Chat");
                sd_bus_message_append(m, "s", "");
                sd_bus_message_open_container(m, 'a', "(ss)");
                for (int i = 4; i + 1 < argc; i += 2)
                        sd_bus_message_append(m, "(ss)", argv[i], argv[i + 1]);
                sd_bus_message_close_container(m);
                options(m, max_tokens, NULL);
                run(bus, m, &t);
                printf("prompt_tokens %u\n", t.prompt_tokens);
                print_text("", t.text);
                sd_bus_message_unref(m);
                sd_bus_flush_close_unref(bus);
                return 0;
        }
        if (strcmp(argv[2], "session") || argc != 7)
                return fprintf(stderr, "usage: see the source\n"), 2;
        sd_bus_error e = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *session;
        sd_bus_message_new_method_call(bus, &m, SERVICE, PATH, MANAGER, "CreateSession");
        sd_bus_message_append(m, "s", "");
        options(m, max_tokens, argv[4]);
        r = sd_bus_call(bus, m, 0, &e, &reply);
        if (r < 0 || sd_bus_message_read(reply, "o", &session) < 0)
                die("CreateSession", &e, r);
        session = strdup(session);
        sd_bus_message_unref(m);
        sd_bus_message_unref(reply);
        for (int turn = 0; turn < 2; turn++) {
                sd_bus_message *s = NULL;
                sd_bus_message_new_method_call(bus, &s, SERVICE, session, SESSION, "Send");
                sd_bus_message_append(s, "v", "s", argv[5 + turn]);
                sd_bus_message_append(s, "a{sv}", 0);
                run(bus, s, &t);
                print_text(turn ? "reply2 " : "reply1 ", t.text);
                sd_bus_message_unref(s);
        }
        printf("cached %u\n", t.cached_tokens);
        char *name = NULL;
        r = sd_bus_get_property_string(bus, SERVICE, session, SESSION, "ChatTemplate", &e, &name);
        if (r < 0)
                die("ChatTemplate", &e, r);
        printf("template %s\n", name);
        sd_bus_message *msgs = NULL;
        r = sd_bus_get_property(bus, SERVICE, session, SESSION, "Messages", &e, &msgs, "a(ss)");
        if (r < 0)
                die("Messages", &e, r);
        const char *role, *text;
        sd_bus_message_enter_container(msgs, 'a', "(ss)");
        while (sd_bus_message_read(msgs, "(ss)", &role, &text) > 0) {
                printf("message %s ", role);
                print_text("", text);
        }
        sd_bus_message_unref(msgs);
        free(name);
        free((char *)session);
        sd_bus_flush_close_unref(bus);
        return 0;
}
