/* SPDX-License-Identifier: MIT */
/*
 * npud-http: the OpenAI-compatible HTTP gateway to npud, one per user.
 *
 * Started by npud-http.socket (systemd --user) it serves the sockets systemd
 * passes and exits after a while without connections; started by hand it
 * listens where --listen says (default: $XDG_RUNTIME_DIR/npud/http.sock).
 */
#include <getopt.h>
#include <signal.h>
#include <systemd/sd-daemon.h>

#include "gateway.h"

#define MAX_LISTENERS 16

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: npud-http [OPTIONS]\n\n"
                "An OpenAI-compatible HTTP gateway to npud, run as the user it serves.\n\n"
                "  --bus system|session|ADDRESS  npud's bus (default: $NPUD_BUS, else system)\n"
                "  --listen ADDRESS              unix:PATH, 127.0.0.1:PORT, [::1]:PORT or localhost:PORT;\n"
                "                                repeatable (default: the sockets systemd passes, else\n"
                "                                unix:$XDG_RUNTIME_DIR/npud/http.sock)\n"
                "  --api-key-file FILE           the bearer key TCP clients must send (default:\n"
                "                                ~/.config/npud/http.key, created on first start)\n"
                "  --idle-timeout SEC            exit after SEC without connections (default: 300 when\n"
                "                                socket-activated, else 0: never)\n"
                "  --request-timeout SEC         a client must send its whole request within SEC (default 30)\n"
                "  --max-body BYTES              the largest request body (default 4194304)\n"
                "  --max-connections N           (default 256)\n"
                "  --help, --version\n\n"
                "Endpoints: GET /v1/models, GET /v1/models/NAME, POST /v1/completions,\n"
                "POST /v1/chat/completions; Ollama's GET /api/tags, GET /api/version,\n"
                "POST /api/generate, POST /api/chat. See npud-http(8).\n");
}

static int parse_uint(const char *s, uint64_t max, const char *what, uint64_t *ret)
{
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || !*s || *end || s[0] == '-' || v > max) {
                fprintf(stderr, "npud-http: %s: '%s' is not a number from 0 to %llu\n", what, s,
                        (unsigned long long)max);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

struct args {
        const char *listen[MAX_LISTENERS];
        size_t n_listen;
        int64_t idle_timeout; /* -1: the default */
};

/* 1: run; 0: exit 0 (help); < 0: usage error. */
static int parse_args(int argc, char **argv, struct gateway_config *cfg, struct args *a)
{
        enum { ARG_BUS = 0x100, ARG_LISTEN, ARG_KEY, ARG_IDLE, ARG_REQ_TIMEOUT, ARG_MAX_BODY, ARG_MAX_CONN,
               ARG_VERSION };
        static const struct option opts[] = {
                { "bus", required_argument, NULL, ARG_BUS },
                { "listen", required_argument, NULL, ARG_LISTEN },
                { "api-key-file", required_argument, NULL, ARG_KEY },
                { "idle-timeout", required_argument, NULL, ARG_IDLE },
                { "request-timeout", required_argument, NULL, ARG_REQ_TIMEOUT },
                { "max-body", required_argument, NULL, ARG_MAX_BODY },
                { "max-connections", required_argument, NULL, ARG_MAX_CONN },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {}
        };
        uint64_t v;
        int o;

        while ((o = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (o) {
                case ARG_BUS:
                        cfg->bus = optarg;
                        break;
                case ARG_LISTEN:
                        if (a->n_listen == MAX_LISTENERS) {
                                fprintf(stderr, "npud-http: at most %d --listen\n", MAX_LISTENERS);
                                return -EINVAL;
                        }
                        a->listen[a->n_listen++] = optarg;
                        break;
                case ARG_KEY:
                        cfg->key_path = optarg;
                        break;
                case ARG_IDLE:
                        if (parse_uint(optarg, 86400 * 365, "--idle-timeout", &v) < 0)
                                return -EINVAL;
                        a->idle_timeout = (int64_t)v;
                        break;
                case ARG_REQ_TIMEOUT:
                        if (parse_uint(optarg, 3600, "--request-timeout", &v) < 0 || v == 0) {
                                if (v == 0)
                                        fprintf(stderr, "npud-http: --request-timeout: at least 1 second\n");
                                return -EINVAL;
                        }
                        cfg->request_timeout = (unsigned)v;
                        break;
                case ARG_MAX_BODY:
                        if (parse_uint(optarg, 1ull << 30, "--max-body", &v) < 0)
                                return -EINVAL;
                        cfg->max_body = v;
                        break;
                case ARG_MAX_CONN:
                        if (parse_uint(optarg, 65536, "--max-connections", &v) < 0 || v == 0)
                                return -EINVAL;
                        cfg->max_connections = (unsigned)v;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case ARG_VERSION:
                        printf("npud-http %s\n", NPUD_HTTP_VERSION);
                        return 0;
                default:
                        usage(stderr);
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "npud-http: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

static int open_listeners(struct gateway *gw, const struct args *a, bool *ret_activated)
{
        struct listen_spec specs[MAX_LISTENERS] = {};
        size_t n = 0;
        int r, n_fds;

        *ret_activated = false;
        n_fds = a->n_listen ? 0 : sd_listen_fds(true);
        if (n_fds < 0)
                return n_fds;
        if (n_fds > MAX_LISTENERS) {
                fprintf(stderr, "npud-http: systemd passed %d sockets; at most %d\n", n_fds, MAX_LISTENERS);
                return -EINVAL;
        }
        if (n_fds > 0) {
                *ret_activated = true;
                for (int i = 0; i < n_fds; i++) {
                        r = listen_adopt(SD_LISTEN_FDS_START + i, &specs[n]);
                        if (r < 0)
                                return r;
                        n++;
                }
        } else if (a->n_listen) {
                for (size_t i = 0; i < a->n_listen; i++) {
                        r = listen_open(a->listen[i], &specs[n]);
                        if (r < 0)
                                goto fail;
                        n++;
                }
        } else {
                r = listen_open_default(&specs[n]);
                if (r < 0)
                        return r;
                n++;
        }
        gw->listeners = calloc(n, sizeof(*gw->listeners));
        if (!gw->listeners) {
                r = -ENOMEM;
                goto fail;
        }
        for (size_t i = 0; i < n; i++) {
                r = listener_start(gw, &specs[i], &gw->listeners[gw->n_listeners]);
                if (r < 0) {
                        for (size_t k = i; k < n; k++)
                                specs[k].fd = safe_close(specs[k].fd);
                        goto fail;
                }
                gw->n_listeners++;
                specs[i].fd = -1;
        }
        return 0;
fail:
        for (size_t i = 0; i < n; i++) {
                if (specs[i].unix_path)
                        unlink(specs[i].unix_path);
                free(specs[i].unix_path);
                if (specs[i].fd >= 0 && !*ret_activated)
                        safe_close(specs[i].fd);
        }
        return r;
}

static int load_key(struct gateway *gw)
{
        _cleanup_free_ char *dflt = NULL;
        const char *path = gw->cfg.key_path;
        bool needed = false;
        int r;

        for (size_t i = 0; i < gw->n_listeners; i++)
                needed |= gw->listeners[i]->tcp;
        if (!path) {
                r = key_default_path(&dflt);
                if (r < 0) {
                        if (needed)
                                fprintf(stderr, "npud-http: no home directory for the API key: give "
                                                "--api-key-file\n");
                        return needed ? r : 0;
                }
                path = dflt;
        }
        r = key_load_or_create(path, &gw->key);
        if (r < 0) {
                fprintf(stderr, "npud-http: cannot read or create the API key %s: %s%s\n", path, strerror(-r),
                        needed ? "" : " (not needed: no TCP listener)");
                return needed ? r : 0;
        }
        return 0;
}

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        sd_event_exit(sd_event_source_get_event(s), 0);
        return 0;
}

static int on_idle(sd_event_source *s, uint64_t usec, void *userdata)
{
        fprintf(stderr, "npud-http: idle for %u s: exiting (socket activation brings us back)\n",
                ((struct gateway *)userdata)->cfg.idle_timeout);
        sd_event_exit(sd_event_source_get_event(s), 0);
        return 0;
}

static void gateway_done(struct gateway *gw)
{
        struct api_error e;

        /* every suspended connection is resumed before its daemon stops (MHD requires it) */
        api_error_set(&e, 503, "server_error", NULL, NULL, "npud-http is stopping");
        jobs_fail_all(gw, &e);
        for (size_t i = 0; i < gw->n_listeners; i++)
                MHD_run(gw->listeners[i]->mhd);
        for (size_t i = 0; i < gw->n_listeners; i++)
                listener_free(gw->listeners[i]);
        free(gw->listeners);
        sd_event_source_disable_unref(gw->idle_timer);
        npud_disconnect(gw);
        free(gw->key);
        sd_event_unref(gw->event);
}

int main(int argc, char **argv)
{
        struct gateway gw = {
                .cfg = {
                        .bus = getenv("NPUD_BUS") && *getenv("NPUD_BUS") ? getenv("NPUD_BUS") : "system",
                        .max_body = 4 << 20,
                        .request_timeout = 30,
                        .max_connections = 256,
                },
        };
        struct args a = { .idle_timeout = -1 };
        sigset_t ss;
        bool activated;
        int r;

        r = parse_args(argc, argv, &gw.cfg, &a);
        if (r <= 0)
                return r < 0 ? 2 : 0;
        signal(SIGPIPE, SIG_IGN);
        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigprocmask(SIG_BLOCK, &ss, NULL);
        r = sd_event_default(&gw.event);
        if (r >= 0)
                r = sd_event_add_signal(gw.event, NULL, SIGTERM, on_exit_signal, NULL);
        if (r >= 0)
                r = sd_event_add_signal(gw.event, NULL, SIGINT, on_exit_signal, NULL);
        if (r < 0) {
                fprintf(stderr, "npud-http: cannot set up the event loop: %s\n", strerror(-r));
                return 1;
        }
        r = open_listeners(&gw, &a, &activated);
        if (r < 0) {
                fprintf(stderr, "npud-http: no socket to listen on: %s\n", strerror(-r));
                gateway_done(&gw);
                return 1;
        }
        gw.cfg.idle_timeout = a.idle_timeout >= 0 ? (unsigned)a.idle_timeout : activated ? 300 : 0;
        r = load_key(&gw);
        if (r < 0) {
                gateway_done(&gw);
                return 1;
        }
        r = npud_connect(&gw);
        if (r < 0)
                fprintf(stderr, "npud-http: cannot connect to the bus (%s): %s; trying again on each request\n",
                        gw.cfg.bus, strerror(-r));
        if (gw.cfg.idle_timeout) {
                r = sd_event_add_time(gw.event, &gw.idle_timer, CLOCK_MONOTONIC, 0, 0, on_idle, &gw);
                if (r < 0) {
                        gateway_done(&gw);
                        return 1;
                }
                gateway_idle_update(&gw);
        }
        (void)sd_notify(false, "READY=1\nSTATUS=serving");
        r = sd_event_loop(gw.event);
        (void)sd_notify(false, "STOPPING=1");
        gateway_done(&gw);
        return r < 0 ? 1 : 0;
}
