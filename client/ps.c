/* SPDX-License-Identifier: MIT */
/*
 * npuctl ps, like Ollama's: the models npud holds (and those loading), with
 * their size, back end, context, how long they have been idle and when npud
 * will unload them. Read from the Model objects (GetManagedObjects).
 */
#include <getopt.h>
#include <time.h>

#include "npuctl.h"

#define MODEL_IFACE NPUD_SERVICE ".Model"

static void format_bytes(uint64_t n, char *buf, size_t size)
{
        if (n >= (1ull << 30))
                snprintf(buf, size, "%.1f GiB", n / (double)(1ull << 30));
        else if (n >= (1ull << 20))
                snprintf(buf, size, "%.1f MiB", n / (double)(1ull << 20));
        else
                snprintf(buf, size, "%" PRIu64 " KiB", n >> 10);
}

/* 45 s, 12 min, 3 h 5 min, 2 d */
static void format_duration(uint64_t usec, char *buf, size_t size)
{
        uint64_t s = usec / 1000000;

        if (s < 60)
                snprintf(buf, size, "%" PRIu64 " s", s);
        else if (s < 3600)
                snprintf(buf, size, "%" PRIu64 " min", s / 60);
        else if (s < 86400)
                snprintf(buf, size, "%" PRIu64 " h %" PRIu64 " min", s / 3600, s % 3600 / 60);
        else
                snprintf(buf, size, "%" PRIu64 " d", s / 86400);
}

static uint64_t realtime_now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* When npud unloads it: pinned models stay until UnloadModel, a busy one is not unloaded now. */
static void format_until(json_object *mo, uint64_t now, char *buf, size_t size)
{
        const char *state = json_get_string(mo, "State", "");
        uint64_t at = json_get_u64(mo, "ExpiresAt", 0);
        char d[32];

        if (json_get_bool(mo, "Pinned", false))
                snprintf(buf, size, "pinned (until unloaded)");
        else if (!strcmp(state, "loading"))
                snprintf(buf, size, "-");
        else if (!strcmp(state, "busy"))
                snprintf(buf, size, "in use, then its keep-alive");
        else if (at == 0)
                snprintf(buf, size, "never (kept for ever)");
        else if (at <= now)
                snprintf(buf, size, "now");
        else {
                format_duration(at - now, d, sizeof(d));
                snprintf(buf, size, "in %s", d);
        }
}

static int by_name(const void *a, const void *b)
{
        json_object *const *x = a, *const *y = b;

        return strcmp(json_get_string(*x, "Name", ""), json_get_string(*y, "Name", ""));
}

/* The Model interface's properties of every model object, sorted by name. */
static int read_models(sd_bus_message *reply, json_object **ret)
{
        _cleanup_(json_object_putp) json_object *all = NULL, *list = json_object_new_array();
        int r;

        if (!list)
                return -ENOMEM;
        r = json_from_bus(reply, &all);
        if (r < 0)
                return r;
        json_object_object_foreach(all, path, ifaces) {
                json_object *mo;
                if (strncmp(path, NPUD_PATH "/model/", strlen(NPUD_PATH "/model/")) != 0 ||
                    !json_object_object_get_ex(ifaces, MODEL_IFACE, &mo))
                        continue;
                json_object_array_add(list, json_object_get(mo));
        }
        json_object_array_sort(list, by_name);
        *ret = TAKE_PTR(list);
        return 0;
}

static const char ps_help[] = "Usage: npuctl ps [--json]\n\n"
                              "The models the daemon holds, and those loading: their size (weights and KV\n"
                              "cache), back end, context, state, how long they have been idle and when the\n"
                              "daemon will unload them (a model loaded on demand goes when its keep-alive\n"
                              "runs out; one an administrator loaded is pinned).\n";

int verb_ps(const struct npuctl *c, int argc, char **argv)
{
        static const struct option opts[] = {
                { "json", no_argument, NULL, 'J' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(json_object_putp) json_object *list = NULL;
        uint64_t now = realtime_now();
        bool json = false;
        int o, r;

        optind = 0;
        while ((o = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (o) {
                case 'J': json = true; break;
                case 'h': fputs(ps_help, stdout); return 0;
                default: fputs(ps_help, stderr); return -EINVAL;
                }
        }
        if (optind < argc)
                return log_usage("ps: unexpected argument '%s'", argv[optind]);
        r = bus_open(c->bus, &bus);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_call(bus, &m, NPUD_SERVICE, NPUD_PATH, "org.freedesktop.DBus.ObjectManager",
                                           "GetManagedObjects");
        if (r < 0)
                return bus_log_create_error(r);
        r = bus_call(bus, m, 0, &reply);
        if (r < 0)
                return r;
        r = read_models(reply, &list);
        if (r < 0)
                return bus_log_parse_error(r);
        if (json) {
                json_print(list);
                return 0;
        }
        printf("%-24s %10s  %-14s %7s  %-12s %-8s  %s\n", "NAME", "SIZE", "BACKEND", "CONTEXT", "STATE", "IDLE",
               "UNTIL");
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                json_object *mo = json_object_array_get_idx(list, i);
                const char *state = json_get_string(mo, "State", "?");
                char size[16], backend[40], st[24], idle[24], until[48];
                uint64_t last = json_get_u64(mo, "LastUsed", 0), total = json_get_u64(mo, "BytesTotal", 0);

                format_bytes(json_get_u64(mo, "Size", 0), size, sizeof(size));
                if (!strcmp(state, "loading")) {
                        format_bytes(total, size, sizeof(size));
                        snprintf(st, sizeof(st), "loading %.0f%%",
                                 total ? 100.0 * json_get_u64(mo, "BytesLoaded", 0) / total : 0.0);
                } else {
                        snprintf(st, sizeof(st), "%s", state);
                }
                if (!strcmp(json_get_string(mo, "Backend", ""), "npu"))
                        snprintf(backend, sizeof(backend), "npu (%s)", json_get_string(mo, "Device", "?"));
                else
                        snprintf(backend, sizeof(backend), "%s", json_get_string(mo, "Backend", "-"));
                if (!strcmp(state, "idle") && last && last <= now)
                        format_duration(now - last, idle, sizeof(idle));
                else
                        snprintf(idle, sizeof(idle), "-");
                format_until(mo, now, until, sizeof(until));
                char ctx[16] = "-";
                if (json_get_u64(mo, "ContextLength", 0))
                        snprintf(ctx, sizeof(ctx), "%" PRIu64, json_get_u64(mo, "ContextLength", 0));
                printf("%-24s %10s  %-14s %7s  %-12s %-8s  %s\n", json_get_string(mo, "Name", "?"), size,
                       backend[0] ? backend : "-", ctx, st, idle, until);
        }
        return 0;
}
