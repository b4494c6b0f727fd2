/* SPDX-License-Identifier: MIT */
/*
 * npuctl generate: one completion, streamed to stdout as the Tokens signals
 * arrive, timings to stderr; or, with --json, one JSON object at the end.
 * SIGINT cancels the request and waits for its Finished (a second one quits).
 */
#include <getopt.h>

#include "npuctl.h"

struct generate {
        struct gen_options opts;
        const char *model;
        bool json, quiet;
        sd_event *event;
        struct request *req;
        bool interrupted;
        size_t printed;
};

static void usage(FILE *f)
{
        fprintf(f, "Usage: npuctl generate [OPTIONS] [PROMPT|-]\n\n"
                   "Complete PROMPT (read from stdin when absent or \"-\") and print the text as it comes.\n\n"
                   "  -m, --model NAME        a loaded model (default: the daemon's default model)\n" GEN_OPTIONS_HELP
                   "      --json              print one JSON object at the end (text, token ids, stop\n"
                   "                          reason, stats) instead of streaming\n"
                   "  -q, --quiet             no timings on stderr\n");
}

static void on_tokens(struct request *req, const uint32_t *ids, const char *const *pieces, size_t n, void *userdata)
{
        struct generate *g = userdata;

        if (g->json)
                return;
        for (size_t i = 0; i < n; i++) {
                fputs(pieces[i], stdout);
                g->printed += strlen(pieces[i]);
        }
        fflush(stdout);
}

static void on_finished(struct request *req, void *userdata)
{
        struct generate *g = userdata;
        sd_event_exit(g->event, 0);
}

static const struct request_ops generate_ops = {
        .tokens = on_tokens,
        .finished = on_finished,
};

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        struct generate *g = userdata;

        if (g->interrupted) {
                /* a second time: leave now; the daemon cancels what we leave behind */
                sd_event_exit(g->event, -EINTR);
                return 0;
        }
        g->interrupted = true;
        request_cancel(g->req);
        return 0;
}

static int print_json(const struct request *req)
{
        json_object *o = json_object_new_object(), *ids = json_object_new_array();
        double ttft = req->t_first ? (double)(req->t_first - req->t_send) / 1e6 : 0;

        if (!o || !ids) {
                json_object_put(o);
                json_object_put(ids);
                return -ENOMEM;
        }
        for (size_t i = 0; i < req->n_ids; i++)
                json_object_array_add(ids, json_object_new_int64(req->ids[i]));
        json_object_object_add(o, "request", json_object_new_string(req->path));
        json_object_object_add(o, "text", json_object_new_string(req->text ? req->text : ""));
        json_object_object_add(o, "tokens", ids);
        json_object_object_add(o, "stop_reason", json_object_new_string(req->reason));
        json_object_object_add(o, "stats", json_object_get(req->stats));
        json_object_object_add(o, "time_to_first_token_ms", json_object_new_double(ttft));
        json_print(o);
        json_object_put(o);
        return 0;
}

/* What the request's end means for the exit code. */
static int finish_status(const struct generate *g, const struct request *req)
{
        if (strcmp(req->reason, "error") == 0) {
                fprintf(stderr, "npuctl: generation failed: %s\n",
                        json_get_string(req->stats, "message", "(no message)"));
                return -EREMOTEIO;
        }
        if (strcmp(req->reason, "cancelled") == 0 && g->interrupted)
                return -EINTR;
        if (strcmp(req->reason, "cancelled") == 0 || strcmp(req->reason, "unloaded") == 0 ||
            strcmp(req->reason, "shutdown") == 0) {
                fprintf(stderr, "npuctl: the request ended early: %s\n", req->reason);
                return -EREMOTEIO;
        }
        return 0;
}

static int run(struct generate *g, const struct npuctl *c, const struct prompt *p)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        _cleanup_(sd_event_source_unrefp) sd_event_source *sigint = NULL, *sigterm = NULL;
        _cleanup_(request_freep) struct request *req = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        int r;

        r = bus_open_on_event(c->bus, &bus, &event);
        if (r < 0)
                return r;
        if (bus_event_signals(event, on_signal, g, &sigint, &sigterm) < 0)
                return -EIO;
        g->event = event;
        r = request_new(bus, &generate_ops, g, g->json, &req);
        if (r < 0)
                return r;
        g->req = req;
        r = request_watch(req);
        if (r < 0)
                return r;
        r = generate_call_new(bus, g->model, p, &g->opts, &call);
        if (r < 0)
                return r;
        r = request_send(req, call);
        if (r < 0)
                return r;
        r = sd_event_loop(event);
        if (g->printed && !g->json)
                fputc('\n', stdout);
        if (r < 0) {
                /* a second SIGINT: leaving without waiting */
                request_close(req);
                return r;
        }
        if (req->error < 0)
                return sd_bus_error_is_set(&req->call_error) ? bus_log_error(&req->call_error, req->error)
                                                             : req->error;
        if (g->printed == 0 && !g->json)
                fputc('\n', stdout);
        fflush(stdout); /* the text before the timings on stderr */
        if (g->json)
                r = print_json(req);
        else if (!g->quiet)
                request_print_timings(req, stderr);
        request_close(req);
        return r < 0 ? r : finish_status(g, req);
}

int verb_generate(const struct npuctl *c, int argc, char **argv)
{
        static const struct option opts[] = {
                GEN_OPTIONS_LONGOPTS,
                { "model", required_argument, NULL, 'm' },
                { "json", no_argument, NULL, 'J' },
                { "quiet", no_argument, NULL, 'q' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        struct generate g = {};
        _cleanup_free_ char *text = NULL;
        size_t len;
        int o, r;

        gen_options_init(&g.opts);
        optind = 0;
        while ((o = getopt_long(argc, argv, "n:m:qh", opts, NULL)) >= 0) {
                r = gen_options_parse(&g.opts, o, optarg);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;
                switch (o) {
                case 'm': g.model = optarg; break;
                case 'J': g.json = true; break;
                case 'q': g.quiet = true; break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return -EINVAL;
                }
        }
        r = read_prompt(argc - optind, argv + optind, &text, &len);
        if (r < 0)
                return r;
        if (len == 0)
                return log_usage("the prompt is empty");
        struct prompt p = { .text = text, .len = len };
        return run(&g, c, &p);
}
