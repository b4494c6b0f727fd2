/* SPDX-License-Identifier: MIT */
/*
 * npuctl load: LoadModel of a GGUF file (administrators) or of a model of
 * npud's models_dir by name (anyone), with a progress bar on a terminal.
 * The call is sent asynchronously and the model object's PropertiesChanged
 * (BytesLoaded, BytesTotal) draw the bar while npud reads the file.
 */
#include <getopt.h>
#include <math.h>

#include "npuctl.h"

#define LOAD_TIMEOUT_USEC (600ull * 1000000ull) /* a 7B model from a cold disk */
#define MODEL_IFACE NPUD_SERVICE ".Model"

struct load {
        sd_bus *bus;
        const char *name;      /* what npud will call the model */
        char *object;          /* its object path */
        bool bar;              /* stderr is a terminal */
        bool drawn;
        uint64_t done, total;
        bool replied;
        bool finished;         /* npud answered: the model is loaded */
        int error;
        char **loaded;         /* the name in the reply goes here */
};

static void format_size(uint64_t n, char *buf, size_t size)
{
        if (n >= (1ull << 30))
                snprintf(buf, size, "%.1f GiB", n / (double)(1ull << 30));
        else
                snprintf(buf, size, "%.1f MiB", n / (double)(1ull << 20));
}

static void draw(struct load *l)
{
        char done[32], total[32], bar[41];
        unsigned width = sizeof(bar) - 1, fill;

        if (!l->bar || (!l->total && !l->finished))
                return;
        if (!l->total) {
                /* loaded and gone (keep_alive 0) before its size could be read: the whole bar, no sizes */
                memset(bar, '#', width);
                bar[width] = 0;
                fprintf(stderr, "\rloading %s [%s] done 100%%\033[K", l->name, bar);
                fflush(stderr);
                l->drawn = true;
                return;
        }
        fill = (unsigned)(width * (double)MIN(l->done, l->total) / l->total);
        memset(bar, '#', fill);
        memset(bar + fill, '-', width - fill);
        bar[width] = 0;
        format_size(l->done, done, sizeof(done));
        format_size(l->total, total, sizeof(total));
        fprintf(stderr, "\rloading %s [%s] %s / %s %3.0f%%\033[K", l->name, bar, done, total,
                100.0 * MIN(l->done, l->total) / l->total);
        fflush(stderr);
        l->drawn = true;
}

/* BytesLoaded and BytesTotal among the Model interface's properties (a{sv}) */
static int read_progress(struct load *l, sd_bus_message *m)
{
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r > 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key;
                uint64_t v;
                r = sd_bus_message_read(m, "s", &key);
                if (r >= 0 && (!strcmp(key, "BytesLoaded") || !strcmp(key, "BytesTotal"))) {
                        r = sd_bus_message_read(m, "v", "t", &v);
                        if (r >= 0)
                                *(!strcmp(key, "BytesLoaded") ? &l->done : &l->total) = v;
                } else if (r >= 0) {
                        r = sd_bus_message_skip(m, "v");
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        return r;
}

/* The Model object appeared (loading): its size comes with it. */
static int on_added(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct load *l = userdata;
        const char *path, *iface;
        int r;

        if (sd_bus_message_read(m, "o", &path) < 0 || strcmp(path, l->object) != 0)
                return 0;
        r = sd_bus_message_enter_container(m, 'a', "{sa{sv}}");
        while (r > 0 && (r = sd_bus_message_enter_container(m, 'e', "sa{sv}")) > 0) {
                r = sd_bus_message_read(m, "s", &iface);
                if (r >= 0)
                        r = strcmp(iface, MODEL_IFACE) == 0 ? read_progress(l, m) : sd_bus_message_skip(m, "a{sv}");
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        draw(l);
        return 0;
}

/* Its progress as the daemon reads the file. */
static int on_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct load *l = userdata;
        const char *iface;

        if (strcmp(sd_bus_message_get_path(m), l->object) != 0 || sd_bus_message_read(m, "s", &iface) < 0 ||
            strcmp(iface, MODEL_IFACE) != 0)
                return 0;
        (void)read_progress(l, m);
        draw(l);
        return 0;
}

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct load *l = userdata;
        const char *name;
        int r;

        l->replied = true;
        if (sd_bus_message_is_method_error(m, NULL)) {
                if (l->drawn)
                        fprintf(stderr, "\r\033[K");
                l->drawn = false;
                l->error = bus_log_error(sd_bus_message_get_error(m), -sd_bus_message_get_errno(m));
                return 0;
        }
        r = sd_bus_message_read(m, "s", &name);
        if (r < 0) {
                l->error = bus_log_parse_error(r);
                return 0;
        }
        *l->loaded = strdup(name);
        if (!*l->loaded)
                l->error = -ENOMEM;
        return 0;
}

static void usage_load(FILE *f)
{
        fprintf(f, "Usage: npuctl load PATH|NAME [OPTIONS]\n\n"
                   "Load a model into the daemon and print its name. A PATH (anything with a '/', or a\n"
                   "FILE.gguf in this directory) is a GGUF file: administrators only. A NAME is a model\n"
                   "of the daemon's models_dir (NAME.gguf there): anyone may load it, as a request naming\n"
                   "it would. A progress bar is drawn on a terminal.\n\n"
                   "      --name NAME         the name requests use (default: the file name without .gguf)\n"
                   "      --default           make it the default model\n"
                   "      --keep-alive D      unload it after D idle (300, 10m, 2h; -1: never; 0: unload it\n"
                   "                          now if nothing uses it). A PATH without it stays until unloaded.\n"
                   "  -q, --quiet             no progress bar\n\n"
                   "Context size, KV budget, threads and attention come from npud.conf.\n");
}

/* PATH or NAME: a path has a '/' or is a FILE.gguf here; the daemon gets it absolute. */
static int load_target(const char *arg, char **ret_path, bool *ret_is_path)
{
        size_t n = strlen(arg);
        bool is_path = strchr(arg, '/') || (n > 5 && !strcmp(arg + n - 5, ".gguf") && access(arg, F_OK) == 0);

        *ret_is_path = is_path;
        if (!is_path || arg[0] == '/')
                *ret_path = strdup(arg);
        else {
                _cleanup_free_ char *cwd = getcwd(NULL, 0);
                if (!cwd || asprintf(ret_path, "%s/%s", cwd, arg) < 0)
                        *ret_path = NULL;
        }
        return *ret_path ? 0 : -ENOMEM;
}

/* The name npud gives the model: --name, the NAME, or the file's base name without .gguf. */
static char *model_name_of(const char *path, bool is_path, const char *name)
{
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        size_t n = strlen(base);

        if (name)
                return strdup(name);
        if (is_path && n > 5 && !strcmp(base + n - 5, ".gguf"))
                return strndup(base, n - 5);
        return strdup(base);
}

int verb_load(const struct npuctl *c, int argc, char **argv)
{
        static const struct option opts[] = {
                { "name", required_argument, NULL, 'N' },
                { "default", no_argument, NULL, 'D' },
                { "keep-alive", required_argument, NULL, 'K' },
                { "quiet", no_argument, NULL, 'q' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *match = NULL, *added = NULL, *call = NULL;
        _cleanup_free_ char *path = NULL, *expect = NULL, *object = NULL, *loaded = NULL;
        struct load l = {};
        const char *name = NULL;
        double keep_alive = NAN;
        bool is_default = false, quiet = false, is_path;
        int o, r;

        optind = 0;
        while ((o = getopt_long(argc, argv, "qh", opts, NULL)) >= 0) {
                switch (o) {
                case 'N': name = optarg; break;
                case 'D': is_default = true; break;
                case 'K':
                        r = parse_duration(optarg, "--keep-alive", &keep_alive);
                        if (r < 0)
                                return r;
                        break;
                case 'q': quiet = true; break;
                case 'h': usage_load(stdout); return 0;
                default: usage_load(stderr); return -EINVAL;
                }
        }
        if (argc - optind != 1)
                return log_usage("load: expected one PATH or NAME (see npuctl load --help)");
        if (name && (strlen(name) < 1 || strlen(name) > 128 ||
                     name[strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")]))
                return log_usage("--name: '%s' is not 1 to 128 of A-Z a-z 0-9 . _ -", name);
        r = load_target(argv[optind], &path, &is_path);
        if (r < 0)
                return r;
        if (!utf8_valid_string(path, strlen(path)))
                return log_usage("load: the path is not valid UTF-8");
        if (!is_path && (name || is_default))
                return log_usage("load: --name and --default are for a PATH (a NAME is models_dir's NAME.gguf)");
        expect = model_name_of(path, is_path, name);
        if (!expect)
                return -ENOMEM;

        r = bus_open(c->bus, &bus);
        if (r < 0)
                return r;
        l.bus = bus;
        l.name = expect;
        l.bar = !quiet && isatty(STDERR_FILENO);
        r = sd_bus_path_encode(NPUD_PATH "/model", expect, &object);
        if (r < 0)
                return r;
        l.object = object;
        /* before the call: the first progress may come before the reply */
        r = sd_bus_match_signal(bus, &match, NPUD_SERVICE, l.object, "org.freedesktop.DBus.Properties",
                                "PropertiesChanged", on_changed, &l);
        if (r >= 0)
                r = sd_bus_match_signal(bus, &added, NPUD_SERVICE, NPUD_PATH, "org.freedesktop.DBus.ObjectManager",
                                        "InterfacesAdded", on_added, &l);
        if (r < 0)
                return bus_log_create_error(r);
        r = bus_new_manager_call(bus, "LoadModel", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "s", path);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0 && name)
                r = sd_bus_message_append(m, "{sv}", "name", "s", name);
        if (r >= 0 && is_default)
                r = sd_bus_message_append(m, "{sv}", "default", "b", 1);
        if (r >= 0 && !isnan(keep_alive))
                r = sd_bus_message_append(m, "{sv}", "keep_alive", "d", keep_alive);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return bus_log_create_error(r);
        r = sd_bus_call_async(bus, &call, m, on_reply, &l, LOAD_TIMEOUT_USEC);
        if (r < 0)
                return bus_log_create_error(r);
        l.loaded = &loaded;
        while (!l.replied) {
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        return bus_log_error(NULL, r);
                if (r > 0)
                        continue;
                r = sd_bus_wait(bus, UINT64_MAX);
                if (r < 0 && r != -EINTR)
                        return bus_log_error(NULL, r);
        }
        /* a load quicker than npud's first change signal: the bar still shows it finished */
        if (l.bar && !l.drawn && l.error >= 0) {
                if (!l.total)
                        (void)sd_bus_get_property_trivial(bus, NPUD_SERVICE, l.object, MODEL_IFACE, "BytesTotal",
                                                          NULL, 't', &l.total);
                l.done = l.total;
                l.finished = true;
                draw(&l);
        }
        if (l.drawn) {
                l.done = l.total;
                draw(&l);
                fputc('\n', stderr);
        }
        if (l.error < 0)
                return l.error;
        printf("%s\n", loaded);
        return 0;
}
