/* SPDX-License-Identifier: MIT */
/*
 * npuctl chat: a conversation in a daemon session (CreateSession), one line a
 * turn (Session.Send), the reply streamed as it comes. Lines are edited with
 * libedit when stdin is a terminal and read plainly otherwise. "/reset" forgets
 * the history, "/quit" or end of input ends; Ctrl-C during a reply cancels
 * that reply, at the prompt it quits.
 */
#include <getopt.h>
#include <signal.h>
#include <editline/readline.h>

#include "npuctl.h"

struct chat {
        struct gen_options opts;
        const char *model;
        const char *system_prompt;
        bool stats;
        bool tty;
        sd_bus *bus;
        sd_event *event;
        char *session;
        struct request *req;
        size_t printed;
};

static void usage(FILE *f)
{
        fprintf(f, "Usage: npuctl chat [OPTIONS]\n\n"
                   "A conversation with a model: each line is a turn, the reply streams back.\n"
                   "/reset forgets the conversation (the system prompt stays), /quit or end of input ends it.\n"
                   "Ctrl-C during a reply cancels that reply.\n\n"
                   "  -m, --model NAME        a loaded model (default: the daemon's default model)\n"
                   "  -s, --system PROMPT     a system prompt, prefilled before the first turn\n" GEN_OPTIONS_HELP
                   "      --stats             timings of each turn on stderr\n");
}

static void on_tokens(struct request *req, const uint32_t *ids, const char *const *pieces, size_t n, void *userdata)
{
        struct chat *ch = userdata;
        for (size_t i = 0; i < n; i++) {
                fputs(pieces[i], stdout);
                ch->printed += strlen(pieces[i]);
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

static int create_session(struct chat *ch)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        const char *path;
        int r;

        r = bus_new_manager_call(ch->bus, "CreateSession", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "s", ch->model ? ch->model : "");
        if (r < 0)
                return bus_log_create_error(r);
        r = gen_options_append(m, &ch->opts, "system_prompt", ch->system_prompt);
        if (r < 0)
                return r;
        r = bus_call(ch->bus, m, 0, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return bus_log_parse_error(r);
        ch->session = strdup(path);
        return ch->session ? 0 : -ENOMEM;
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
        struct gen_options none;
        struct prompt p = { .text = line, .len = strlen(line) };
        int r;

        gen_options_init(&none); /* the session's options hold for every turn */
        r = request_new(ch->bus, &chat_ops, ch, false, &req);
        if (r < 0)
                return r;
        r = request_watch(req);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_call(ch->bus, &m, NPUD_SERVICE, ch->session, NPUD_SESSION, "Send");
        if (r < 0)
                return bus_log_create_error(r);
        r = prompt_append(m, &p);
        if (r >= 0)
                r = gen_options_append(m, &none, NULL, NULL);
        if (r < 0)
                return r;
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
                if (strcmp(line, "/reset") == 0)
                        r = bus_call_simple(ch->bus, ch->session, NPUD_SESSION, "Reset");
                else if (strcmp(line, "/help") == 0) {
                        printf("/reset  forget the conversation\n/quit   end\n");
                        r = 0;
                } else if (!utf8_is_valid(line, strlen(line))) {
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
                { "stats", no_argument, NULL, 'S' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        struct chat ch = {};
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
                case 's': ch.system_prompt = optarg; break;
                case 'S': ch.stats = true; break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return -EINVAL;
                }
        }
        if (optind < argc)
                return log_usage("chat: unexpected argument '%s'", argv[optind]);
        if (ch.system_prompt && !utf8_is_valid(ch.system_prompt, strlen(ch.system_prompt)))
                return log_usage("--system: not valid UTF-8");
        ch.tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);

        r = bus_open(c->bus, &bus);
        if (r < 0)
                return r;
        r = sd_event_default(&event);
        if (r >= 0)
                r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return -EIO;
        ch.bus = bus;
        ch.event = event;
        r = create_session(&ch);
        if (r < 0)
                return r;
        if (ch.tty)
                using_history();
        r = loop(&ch);
        if (r != -EHOSTDOWN)
                (void)sd_bus_call_method(bus, NPUD_SERVICE, ch.session, NPUD_SESSION, "Close", NULL, NULL, NULL);
        free(ch.session);
        return r;
}
