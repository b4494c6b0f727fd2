/* SPDX-License-Identifier: MIT */
/*
 * npuctl chat: a conversation with a model, one line a turn. The messages
 * (system, user, assistant) are kept here and each turn sends them all to the
 * daemon's Chat method, which renders them through the model's chat template
 * and streams the reply; a reply ends at the model's end-of-turn token
 * (<|eot_id|>, <|im_end|>, ...). The daemon's prefix cache keeps the earlier
 * turns' computation. Lines are edited with libedit when stdin is a terminal
 * and read plainly otherwise. "/system TEXT" sets the system message,
 * "/reset" forgets the conversation (the system message stays), "/quit" or
 * end of input ends; Ctrl-C during a reply cancels that reply, at the prompt
 * it quits.
 */
#include <getopt.h>
#include <signal.h>
#include <editline/readline.h>

#include "npuctl.h"

struct message {
        const char *role;
        char *text;
};

struct chat {
        struct gen_options opts;
        const char *model;
        const char *template_name;
        bool stats;
        bool tty;
        sd_bus *bus;
        sd_event *event;
        struct request *req;
        size_t printed;
        struct message *m; /* m[0] is the system message when there is one */
        size_t n, cap;
        char *reply;       /* the reply streamed so far */
        size_t reply_len;
};

static void usage(FILE *f)
{
        fprintf(f, "Usage: npuctl chat [OPTIONS]\n\n"
                   "A conversation with a model: each line is a turn, the reply streams back and ends\n"
                   "at the model's end-of-turn token. The messages go through the model's chat template.\n"
                   "/system TEXT sets the system message (/system alone removes it), /reset forgets the\n"
                   "conversation (the system message stays), /quit or end of input ends it.\n"
                   "Ctrl-C during a reply cancels that reply.\n\n"
                   "  -m, --model NAME        a loaded model (default: the daemon's default model)\n"
                   "  -s, --system TEXT       the system message\n"
                   "      --template NAME     a chat template family (llama3, chatml, mistral-v7, ...)\n"
                   "                          or raw, instead of the model's own\n" GEN_OPTIONS_HELP
                   "      --stats             timings of each turn on stderr\n");
}

static void on_tokens(struct request *req, const uint32_t *ids, const char *const *pieces, size_t n, void *userdata)
{
        struct chat *ch = userdata;
        for (size_t i = 0; i < n; i++) {
                size_t len = strlen(pieces[i]);
                char *r = realloc(ch->reply, ch->reply_len + len + 1);
                fputs(pieces[i], stdout);
                ch->printed += len;
                if (!r)
                        continue; /* printed, but not kept for the next turn */
                memcpy(r + ch->reply_len, pieces[i], len + 1);
                ch->reply = r;
                ch->reply_len += len;
        }
        fflush(stdout);
}

static const struct request_ops chat_ops = {
        .tokens = on_tokens,
};

static int on_sigint(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        struct chat *ch = userdata;
        if (ch->req)
                request_cancel(ch->req);
        return 0;
}

static int push_message(struct chat *ch, const char *role, const char *text, size_t len)
{
        if (ch->n == ch->cap) {
                size_t cap = ch->cap ? ch->cap * 2 : 16;
                struct message *v = realloc(ch->m, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                ch->m = v;
                ch->cap = cap;
        }
        char *t = strndup(text, len);
        if (!t)
                return -ENOMEM;
        ch->m[ch->n++] = (struct message) { role, t };
        return 0;
}

/* Forget the messages after the first n. */
static void drop_messages(struct chat *ch, size_t n)
{
        while (ch->n > n)
                free(ch->m[--ch->n].text);
}

static bool has_system(const struct chat *ch)
{
        return ch->n > 0 && strcmp(ch->m[0].role, "system") == 0;
}

/* /system TEXT: the first message becomes (or stops being) the system message. */
static int set_system(struct chat *ch, const char *text)
{
        bool had = has_system(ch);

        if (had && *text) {
                char *t = strdup(text);
                if (!t)
                        return -ENOMEM;
                free(ch->m[0].text);
                ch->m[0].text = t;
                return 0;
        }
        if (had) {
                free(ch->m[0].text);
                memmove(ch->m, ch->m + 1, (ch->n - 1) * sizeof(*ch->m));
                ch->n--;
                return 0;
        }
        if (!*text)
                return 0;
        int r = push_message(ch, "system", text, strlen(text));
        if (r < 0)
                return r;
        struct message sys = ch->m[ch->n - 1];
        memmove(ch->m + 1, ch->m, (ch->n - 1) * sizeof(*ch->m));
        ch->m[0] = sys;
        return 0;
}

static int chat_call_new(struct chat *ch, sd_bus_message **ret)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = bus_new_manager_call(ch->bus, "Chat", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "s", ch->model ? ch->model : "");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(ss)");
        for (size_t i = 0; r >= 0 && i < ch->n; i++)
                r = sd_bus_message_append(m, "(ss)", ch->m[i].role, ch->m[i].text);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return bus_log_create_error(r);
        r = gen_options_append(m, &ch->opts, ch->template_name ? "template" : NULL, ch->template_name);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

/* SIGINT goes to the event loop while a reply streams, and back to its default after. */
static int sigint_block(bool block)
{
        sigset_t ss;
        sigemptyset(&ss);
        sigaddset(&ss, SIGINT);
        static void (*saved)(int) = SIG_DFL;

        if (block) {
                if (sigprocmask(SIG_BLOCK, &ss, NULL) < 0)
                        return -errno;
                /* an ignored signal never reaches the signalfd: not ignored while blocked */
                saved = signal(SIGINT, SIG_DFL);
                return 0;
        }
        /* a Ctrl-C that came as the reply ended is spent */
        const struct timespec zero = {};
        while (sigtimedwait(&ss, NULL, &zero) > 0)
                ;
        signal(SIGINT, saved);
        return sigprocmask(SIG_UNBLOCK, &ss, NULL) < 0 ? -errno : 0;
}

static int turn(struct chat *ch, const char *line)
{
        _cleanup_(sd_event_source_unrefp) sd_event_source *sigint = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_(request_freep) struct request *req = NULL;
        size_t before = ch->n;
        int r;

        r = push_message(ch, "user", line, strlen(line));
        if (r < 0)
                return r;
        r = request_new(ch->bus, &chat_ops, ch, false, &req);
        if (r >= 0)
                r = request_watch(req);
        if (r >= 0)
                r = chat_call_new(ch, &m);
        if (r < 0) {
                drop_messages(ch, before);
                return r;
        }
        free(ch->reply);
        ch->reply = NULL;
        ch->reply_len = 0;
        r = sigint_block(true);
        if (r >= 0)
                r = sd_event_add_signal(ch->event, &sigint, SIGINT, on_sigint, ch);
        if (r < 0)
                return -EIO;
        ch->req = req;
        ch->printed = 0;
        r = request_send(req, m);
        while (r >= 0 && !req->finished)
                r = sd_event_run(ch->event, UINT64_MAX);
        ch->req = NULL;
        sigint = sd_event_source_unref(sigint);
        (void)sigint_block(false);
        if (ch->printed)
                fputc('\n', stdout);
        if (r >= 0 && req->error >= 0) {
                /* the reply, whole or as far as it came, is the assistant's message of the next turns */
                r = push_message(ch, "assistant", ch->reply ? ch->reply : "", ch->reply_len);
                if (r < 0)
                        drop_messages(ch, before);
        } else
                drop_messages(ch, before);
        if (r < 0)
                return r == -EHOSTDOWN ? r : -EIO;
        if (req->error < 0)
                return sd_bus_error_is_set(&req->call_error) ? bus_log_error(&req->call_error, req->error)
                                                             : req->error;
        if (ch->stats)
                request_print_timings(req, stderr);
        if (strcmp(req->reason, "error") == 0) {
                fprintf(stderr, "npuctl: the reply failed: %s\n", json_get_string(req->stats, "message", "?"));
                r = -EREMOTEIO;
        } else if (strcmp(req->reason, "cancelled") == 0)
                fprintf(stderr, "(cancelled)\n");
        else if (strcmp(req->reason, "unloaded") == 0 || strcmp(req->reason, "shutdown") == 0) {
                fprintf(stderr, "npuctl: the reply ended early: %s\n", req->reason);
                r = -EREMOTEIO;
        }
        request_close(req);
        return r;
}

static char *read_line(const struct chat *ch)
{
        if (ch->tty)
                return readline("> ");
        char *line = NULL;
        size_t cap = 0;
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) {
                free(line);
                return NULL;
        }
        if (n > 0 && line[n - 1] == '\n')
                line[n - 1] = 0;
        return line;
}

static int loop(struct chat *ch)
{
        int r, last = 0;

        for (;;) {
                _cleanup_free_ char *line = read_line(ch);
                if (!line)
                        break;
                if (!*line)
                        continue;
                if (ch->tty)
                        add_history(line);
                if (strcmp(line, "/quit") == 0 || strcmp(line, "/exit") == 0)
                        break;
                if (strcmp(line, "/reset") == 0) {
                        drop_messages(ch, has_system(ch) ? 1 : 0);
                        r = 0;
                } else if (strcmp(line, "/system") == 0 || strncmp(line, "/system ", 8) == 0) {
                        const char *text = line[7] ? line + 8 : "";
                        r = utf8_valid_string(text, strlen(text)) ? set_system(ch, text) : -EREMOTEIO;
                        if (r == -EREMOTEIO)
                                fprintf(stderr, "npuctl: that line is not valid UTF-8\n");
                } else if (strcmp(line, "/help") == 0) {
                        printf("/system TEXT  set the system message (/system alone removes it)\n"
                               "/reset        forget the conversation (the system message stays)\n"
                               "/quit         end\n");
                        r = 0;
                } else if (!utf8_valid_string(line, strlen(line))) {
                        fprintf(stderr, "npuctl: that line is not valid UTF-8\n");
                        r = -EREMOTEIO;
                } else
                        r = turn(ch, line);
                if (r == -EHOSTDOWN || r == -ENOMEM)
                        return r;
                if (r < 0)
                        last = r;
        }
        if (ch->tty)
                fputc('\n', stdout);
        return last;
}

int verb_chat(const struct npuctl *c, int argc, char **argv)
{
        static const struct option opts[] = {
                GEN_OPTIONS_LONGOPTS,
                { "model", required_argument, NULL, 'm' },
                { "system", required_argument, NULL, 's' },
                { "template", required_argument, NULL, 'T' },
                { "stats", no_argument, NULL, 'S' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        struct chat ch = {};
        const char *system = NULL;
        int o, r;

        gen_options_init(&ch.opts);
        optind = 0;
        while ((o = getopt_long(argc, argv, "n:m:s:h", opts, NULL)) >= 0) {
                r = gen_options_parse(&ch.opts, o, optarg);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;
                switch (o) {
                case 'm': ch.model = optarg; break;
                case 's': system = optarg; break;
                case 'T': ch.template_name = optarg; break;
                case 'S': ch.stats = true; break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return -EINVAL;
                }
        }
        if (optind < argc)
                return log_usage("chat: unexpected argument '%s'", argv[optind]);
        if (system && !utf8_valid_string(system, strlen(system)))
                return log_usage("--system: not valid UTF-8");
        ch.tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);

        r = bus_open_on_event(c->bus, &bus, &event);
        if (r < 0)
                return r;
        ch.bus = bus;
        ch.event = event;
        r = set_system(&ch, system ? system : "");
        if (r < 0)
                return r;
        if (ch.tty)
                using_history();
        r = loop(&ch);
        drop_messages(&ch, 0);
        free(ch.m);
        free(ch.reply);
        return r;
}
