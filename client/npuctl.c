/* SPDX-License-Identifier: MIT */
/*
 * npuctl: the command-line client of npud over D-Bus (org.npud.Inference1).
 * Global options, then one command; each command lives in its own file.
 */
#include <getopt.h>

#include "npuctl.h"

struct verb {
        const char *name;
        int (*run)(const struct npuctl *c, int argc, char **argv);
};

static const struct verb verbs[] = {
        { "generate", verb_generate },
        { "chat", verb_chat },
        { "models", verb_models },
        { "load", verb_load },
        { "ps", verb_ps },
        { "unload", verb_unload },
        { "devices", verb_devices },
        { "status", verb_status },
        { "bench", verb_bench },
};

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: npuctl [--bus system|session|ADDRESS] COMMAND [OPTIONS] [ARGS]\n\n"
                "The client of npud, the system LLM inference service.\n\n"
                "Commands:\n"
                "  generate [OPTIONS] [PROMPT|-]   complete a prompt, streaming the text\n"
                "  chat [OPTIONS]                  a conversation in a session (line editing)\n"
                "  models [--json]                 the loaded models\n"
                "  load PATH|NAME [OPTIONS]        load a GGUF file (administrators) or a model of the\n"
                "                                  daemon's models_dir (anyone), with a progress bar\n"
                "  ps [--json]                     the models held: size, back end, idle, when unloaded\n"
                "  unload NAME [--force]           unload a model (administrators)\n"
                "  devices [--json]                the compute devices\n"
                "  status [--json]                 the daemon's state and counters\n"
                "  bench --task decode|benchmark|benchmark_long [OPTIONS]\n"
                "                                  the reference's benchmark tables, through the service\n"
                "  bench --clients 1,2,4,8 [OPTIONS]\n"
                "                                  throughput of concurrent clients, time to first token\n"
                "\n"
                "Run \"npuctl COMMAND --help\" for a command's options.\n\n"
                "Global options:\n"
                "  -b, --bus BUS     system (the default), session, or a D-Bus address such as\n"
                "                    unix:path=/run/x; the environment variable NPUD_BUS sets the default\n"
                "  -h, --help        this text\n"
                "      --version     npuctl's version\n"
                "\n"
                "Exit status:\n"
                "  0    success\n"
                "  1    the daemon returned an error (its D-Bus error name and message are on\n"
                "       stderr as \"npuctl: org.npud.Inference1.Error.X: message\"), or another failure\n"
                "  2    usage error (unknown command or option, malformed or out-of-range value)\n"
                "  3    cannot connect to the bus, or npud is not running on it\n"
                "  4    access denied (org.npud.Inference1.Error.AccessDenied or the bus policy)\n"
                "  5    the daemon is busy or the caller's limit is reached (Error.Busy,\n"
                "       Error.LimitExceeded)\n"
                "  130  interrupted: SIGINT cancelled the request\n");
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "bus", required_argument, NULL, 'b' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {}
        };
        struct npuctl c = { .bus = bus_default() };
        int o;

        /* "+": options after the command are the command's */
        while ((o = getopt_long(argc, argv, "+b:h", opts, NULL)) >= 0) {
                switch (o) {
                case 'b':
                        if (!*optarg)
                                return log_usage("--bus: empty"), EXIT_USAGE;
                        c.bus = optarg;
                        break;
                case 'h': usage(stdout); return EXIT_SUCCESS;
                case 'V': printf("npuctl %s\n", NPUCTL_VERSION); return EXIT_SUCCESS;
                default: usage(stderr); return EXIT_USAGE;
                }
        }
        if (optind >= argc) {
                usage(stderr);
                return EXIT_USAGE;
        }
        for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
                if (strcmp(argv[optind], verbs[i].name) == 0)
                        return exit_status(verbs[i].run(&c, argc - optind, argv + optind));
        if (strcmp(argv[optind], "help") == 0) {
                usage(stdout);
                return EXIT_SUCCESS;
        }
        log_usage("unknown command '%s' (see npuctl --help)", argv[optind]);
        return EXIT_USAGE;
}
