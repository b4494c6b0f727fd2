/* SPDX-License-Identifier: MIT */
/* npud: the system LLM inference service (org.npud.Inference1). */
#include <getopt.h>
#include <signal.h>

#include "server.h"

static void help(void)
{
        printf("Usage: npud [OPTIONS]\n"
               "Serves LLM inference on the D-Bus name " NPUD_BUS_NAME ".\n\n"
               "  --bus system|session|ADDRESS   the bus to serve on (default: the config's, else system)\n"
               "  --config FILE                  configuration (default " NPUD_CONFIG_PATH " when it exists)\n"
               "  --model PATH                   the default model, loaded at start\n"
               "  --threads N                    compute threads (default: every core)\n"
               "  --target cpu|npu               where quantized models run (default: the config's, else cpu);\n"
               "                                 npu opens the device at start (devices can also be attached\n"
               "                                 later: Manager.AttachDevice, npud-device@accelN.service)\n"
               "  --device PATH                  the accel node for --target npu (default: the first of npu.ko)\n"
               "  -h, --help                     this text\n"
               "  --version                      the version\n");
}

struct cli {
        const char *bus;
        const char *config;
        const char *model;
        const char *target;
        const char *device;
        int threads;
};

static int parse_args(int argc, char **argv, struct cli *c)
{
        static const struct option opts[] = {
                { "bus", required_argument, NULL, 'b' },     { "config", required_argument, NULL, 'c' },
                { "model", required_argument, NULL, 'm' },   { "threads", required_argument, NULL, 't' },
                { "target", required_argument, NULL, 'T' }, { "device", required_argument, NULL, 'd' },
                { "help", no_argument, NULL, 'h' },          { "version", no_argument, NULL, 'V' },
                {},
        };
        int o;

        *c = (struct cli) { .threads = -1 };
        while ((o = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                char *end;
                switch (o) {
                case 'b': c->bus = optarg; break;
                case 'c': c->config = optarg; break;
                case 'm': c->model = optarg; break;
                case 'T':
                        if (strcmp(optarg, "cpu") != 0 && strcmp(optarg, "npu") != 0) {
                                fprintf(stderr, "npud: --target is cpu or npu, not '%s'\n", optarg);
                                return -EINVAL;
                        }
                        c->target = optarg;
                        break;
                case 'd': c->device = optarg; break;
                case 't':
                        c->threads = (int)strtol(optarg, &end, 10);
                        if (*end || end == optarg || c->threads < 0 || c->threads > 1024) {
                                fprintf(stderr, "npud: bad thread count '%s'\n", optarg);
                                return -EINVAL;
                        }
                        break;
                case 'h': help(); return 0;
                case 'V': printf("npud " NPUD_VERSION "\n"); return 0;
                default: return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "npud: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

static bool set_string_copy(char **p, const char *v)
{
        char *c = strdup(v);

        if (!c)
                return false;
        free(*p);
        *p = c;
        return true;
}

static int configure(struct server *srv, const struct cli *cli)
{
        struct npu_err err = {};
        const char *path = cli->config ? cli->config : NPUD_CONFIG_PATH;
        int r;

        r = config_load(&srv->cfg, path, &err);
        if (r == -ENOENT && !cli->config) {
                path = NULL; /* no config file: the defaults */
        } else if (r < 0) {
                fprintf(stderr, "npud: %s\n", err.msg);
                return r;
        }
        if (path && !(srv->config_path = strdup(path)))
                return -ENOMEM;
        if (cli->model) {
                free(srv->cfg.model);
                if (!(srv->cfg.model = strdup(cli->model)))
                        return -ENOMEM;
        }
        if (cli->threads >= 0)
                srv->cfg.threads = cli->threads;
        if ((cli->target && !set_string_copy(&srv->cfg.backend, cli->target)) ||
            (cli->device && !set_string_copy(&srv->cfg.device, cli->device)))
                return -ENOMEM;
        return 0;
}

/* backend = npu: npud opens the device itself and runs the quantized models on it. */
static int open_configured_device(struct server *srv)
{
        struct served_device *d;
        struct npu_err err = {};
        int r;

        if (!srv->cfg.backend || strcmp(srv->cfg.backend, "npu") != 0)
                return 0;
        r = srv->cfg.device ? devices_open_path(srv, srv->cfg.device, &d, &err) : devices_open_first(srv, &d, &err);
        if (r >= 0)
                r = device_attach_now(d, &err);
        if (r < 0) {
                fprintf(stderr, "npud: --target npu: %s\n", err.msg);
                return r;
        }
        return 0;
}

int main(int argc, char **argv)
{
        _cleanup_(server_freep) struct server *srv = NULL;
        struct cli cli;
        sigset_t mask;
        int r;

        r = parse_args(argc, argv, &cli);
        if (r <= 0)
                return r < 0 ? 2 : 0;
        /* before any thread starts, so that only the event loop gets these */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        r = server_new(&srv);
        if (r < 0) {
                fprintf(stderr, "npud: cannot start: %s\n", strerror(-r));
                return 1;
        }
        if (configure(srv, &cli) < 0)
                return 1;
        if (server_open_bus(srv, cli.bus ? cli.bus : srv->cfg.bus) < 0)
                return 1;
        /* a device opened now takes the default model when it is loaded (in the loop) */
        if (open_configured_device(srv) < 0)
                return 1;
        r = server_start(srv);
        if (r < 0)
                return 1;
        r = sd_event_loop(srv->event);
        if (r < 0) {
                fprintf(stderr, "npud: the event loop failed: %s\n", strerror(-r));
                return 1;
        }
        fprintf(stderr, "npud: stopped\n");
        return r > 0 ? 1 : 0;
}
