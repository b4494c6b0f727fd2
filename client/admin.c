/* SPDX-License-Identifier: MIT */
/* npuctl models, load, unload, devices, status: the Manager's administration and state. */
#include <getopt.h>

#include "npuctl.h"

#define LOAD_TIMEOUT_USEC (600ull * 1000000ull) /* a 7B model from a cold disk */

static void format_bytes(uint64_t n, char *buf, size_t size)
{
        static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
        double v = (double)n;
        size_t u = 0;
        while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
                v /= 1024;
                u++;
        }
        if (u == 0)
                snprintf(buf, size, "%" PRIu64 " B", n);
        else
                snprintf(buf, size, "%.1f %s", v, units[u]);
}

static void format_count(uint64_t n, char *buf, size_t size)
{
        if (n >= 1000000000ull)
                snprintf(buf, size, "%.1fB", n / 1e9);
        else if (n >= 1000000ull)
                snprintf(buf, size, "%.1fM", n / 1e6);
        else if (n >= 1000ull)
                snprintf(buf, size, "%.1fK", n / 1e3);
        else
                snprintf(buf, size, "%" PRIu64, n);
}

/* Parse the options of a command that takes only --json (and --help). */
static int parse_json_only(int argc, char **argv, const char *help, bool *json)
{
        static const struct option opts[] = {
                { "json", no_argument, NULL, 'J' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        int o;

        optind = 0;
        while ((o = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (o) {
                case 'J': *json = true; break;
                case 'h': fputs(help, stdout); return 1;
                default: fputs(help, stderr); return -EINVAL;
                }
        }
        if (optind < argc)
                return log_usage("%s: unexpected argument '%s'", argv[0], argv[optind]);
        return 0;
}

static int connect_and_call(const struct npuctl *c, const char *member, sd_bus **ret_bus, sd_bus_message **reply)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = bus_open(c->bus, &bus);
        if (r < 0)
                return r;
        r = bus_new_manager_call(bus, member, &m);
        if (r < 0)
                return r;
        r = bus_call(bus, m, 0, reply);
        if (r < 0)
                return r;
        if (ret_bus)
                *ret_bus = TAKE_PTR(bus);
        return 0;
}

/* a(sa{sv}) as an array of objects, each with "name" and the dictionary's keys. */
static int read_named_list(sd_bus_message *m, json_object **ret)
{
        _cleanup_(json_object_putp) json_object *list = json_object_new_array();
        int r;

        if (!list)
                return -ENOMEM;
        r = sd_bus_message_enter_container(m, 'a', "(sa{sv})");
        while (r >= 0) {
                const char *name;
                json_object *info = NULL;
                r = sd_bus_message_enter_container(m, 'r', "sa{sv}");
                if (r <= 0)
                        break;
                r = sd_bus_message_read(m, "s", &name);
                if (r >= 0)
                        r = json_from_bus(m, &info);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                if (r < 0) {
                        json_object_put(info);
                        break;
                }
                json_object_object_add(info, "name", json_object_new_string(name));
                json_object_array_add(list, info);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0)
                return bus_log_parse_error(r);
        *ret = TAKE_PTR(list);
        return 0;
}

/*
 * The verbs that list what a method returns: --help or --json are done here
 * (0); 1 hands the list over for a table.
 */
static int list_call(const struct npuctl *c, int argc, char **argv, const char *help, const char *method,
                     json_object **ret)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_object_putp) json_object *list = NULL;
        bool json = false;
        int r;

        r = parse_json_only(argc, argv, help, &json);
        if (r != 0)
                return r < 0 ? r : 0;
        r = connect_and_call(c, method, NULL, &reply);
        if (r < 0)
                return r;
        r = read_named_list(reply, &list);
        if (r < 0)
                return r;
        if (json) {
                json_print(list);
                return 0;
        }
        *ret = TAKE_PTR(list);
        return 1;
}

static const char models_help[] = "Usage: npuctl models [--json]\n\nList the loaded models; * marks the default.\n";

int verb_models(const struct npuctl *c, int argc, char **argv)
{
        _cleanup_(json_object_putp) json_object *list = NULL;
        int r;

        r = list_call(c, argc, argv, models_help, "ListModels", &list);
        if (r <= 0)
                return r;
        printf("%-24s %-9s %6s %8s %10s %8s  %s\n", "NAME", "PRECISION", "N_CTX", "PARAMS", "WEIGHTS", "REQUESTS",
               "PATH");
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                json_object *m = json_object_array_get_idx(list, i);
                char name[64], params[16], size[16];
                snprintf(name, sizeof(name), "%s%s", json_get_string(m, "name", "?"),
                         json_get_bool(m, "default", false) ? " *" : "");
                format_count(json_get_u64(m, "n_params", 0), params, sizeof(params));
                format_bytes(json_get_u64(m, "weight_bytes", 0), size, sizeof(size));
                printf("%-24s %-9s %6" PRIu64 " %8s %10s %8" PRIu64 "  %s\n", name,
                       json_get_string(m, "precision", "?"), json_get_u64(m, "n_ctx", 0), params, size,
                       json_get_u64(m, "requests", 0), json_get_string(m, "path", ""));
        }
        return 0;
}

static const char devices_help[] = "Usage: npuctl devices [--json]\n\nList the compute devices of the daemon.\n";

int verb_devices(const struct npuctl *c, int argc, char **argv)
{
        _cleanup_(json_object_putp) json_object *list = NULL;
        int r;

        r = list_call(c, argc, argv, devices_help, "ListDevices", &list);
        if (r <= 0)
                return r;
        printf("%-16s %-8s %-12s %s\n", "NAME", "BACKEND", "STATE", "DETAILS");
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                json_object *d = json_object_array_get_idx(list, i);
                char details[512];
                if (json_get_string(d, "path", NULL))
                        snprintf(details, sizeof(details),
                                 "%s, driver %s, %" PRIu64 " models, %" PRIu64 " passes, %" PRIu64 " faults, %" PRIu64
                                 " retries, %" PRIu64 " cpu fallbacks, %" PRIu64 " netlink events",
                                 json_get_string(d, "path", ""), json_get_string(d, "driver", "?"),
                                 json_get_u64(d, "models", 0), json_get_u64(d, "passes", 0),
                                 json_get_u64(d, "faults", 0), json_get_u64(d, "retries", 0),
                                 json_get_u64(d, "cpu_fallbacks", 0), json_get_u64(d, "netlink_events", 0));
                else
                        snprintf(details, sizeof(details), "%" PRIu64 " threads", json_get_u64(d, "threads", 0));
                printf("%-16s %-8s %-12s %s\n", json_get_string(d, "name", "?"), json_get_string(d, "backend", "?"),
                       json_get_string(d, "state", "?"), details);
        }
        return 0;
}

static int append_bool(sd_bus_message *m, const char *key, bool v)
{
        return sd_bus_message_append(m, "{sv}", key, "b", (int)v);
}

static void usage_unload(FILE *f)
{
        fprintf(f, "Usage: npuctl unload NAME [--force]\n\n"
                   "Unload a model (administrators only). The daemon refuses (Busy) while requests or\n"
                   "sessions use it, unless --force, which cancels them.\n");
}

int verb_unload(const struct npuctl *c, int argc, char **argv)
{
        static const struct option opts[] = {
                { "force", no_argument, NULL, 'f' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        bool force = false;
        int o, r;

        optind = 0;
        while ((o = getopt_long(argc, argv, "fh", opts, NULL)) >= 0) {
                switch (o) {
                case 'f': force = true; break;
                case 'h': usage_unload(stdout); return 0;
                default: usage_unload(stderr); return -EINVAL;
                }
        }
        if (argc - optind != 1)
                return log_usage("unload: expected one NAME (see npuctl unload --help)");
        if (!utf8_valid_string(argv[optind], strlen(argv[optind])))
                return log_usage("unload: the name is not valid UTF-8");
        r = bus_open(c->bus, &bus);
        if (r < 0)
                return r;
        r = bus_new_manager_call(bus, "UnloadModel", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "s", argv[optind]);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0 && force)
                r = append_bool(m, "force", true);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return bus_log_create_error(r);
        return bus_call(bus, m, LOAD_TIMEOUT_USEC, NULL);
}

static int get_properties(sd_bus *bus, json_object **ret)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, NPUD_SERVICE, NPUD_PATH, "org.freedesktop.DBus.Properties",
                                           "GetAll");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", NPUD_MANAGER);
        if (r < 0)
                return bus_log_create_error(r);
        r = bus_call(bus, m, 0, &reply);
        if (r < 0)
                return r;
        r = json_from_bus(reply, ret);
        return r < 0 ? bus_log_parse_error(r) : 0;
}

static void print_status(json_object *props, json_object *st)
{
        char used[16], total[16];
        json_object *backends;
        uint64_t up = (uint64_t)json_get_double(st, "uptime_s", 0);

        printf("npud %s, back ends:", json_get_string(props, "Version", "?"));
        if (json_object_object_get_ex(props, "Backends", &backends) &&
            json_object_is_type(backends, json_type_array))
                for (size_t i = 0; i < json_object_array_length(backends); i++)
                        printf(" %s", json_object_get_string(json_object_array_get_idx(backends, i)));
        printf("\ndefault model: %s\n", *json_get_string(props, "DefaultModel", "") ?
                                                json_get_string(props, "DefaultModel", "") : "(none)");
        printf("uptime: %" PRIu64 " h %02" PRIu64 " min %02" PRIu64 " s\n", up / 3600, up % 3600 / 60, up % 60);
        /* a user who is not an administrator sees only its own uid's work */
        if (strcmp(json_get_string(st, "scope", "server"), "uid") == 0)
                printf("counting only your own requests, sessions and cache (npud shows the whole server to "
                       "administrators)\n");
        printf("requests: %" PRIu64 " active, %" PRIu64 " queued; sessions: %" PRIu64 "; clients: %" PRIu64 "\n",
               json_get_u64(st, "active_requests", 0), json_get_u64(st, "queued_requests", 0),
               json_get_u64(st, "sessions", 0), json_get_u64(st, "clients", 0));
        format_bytes(json_get_u64(st, "kv_bytes_used", 0), used, sizeof(used));
        format_bytes(json_get_u64(st, "kv_bytes_total", 0), total, sizeof(total));
        printf("KV cache: %" PRIu64 " of %" PRIu64 " blocks used (%" PRIu64 " held by the prefix cache), "
               "%" PRIu64 " tokens a block, %s of %s\n",
               json_get_u64(st, "kv_blocks_used", 0), json_get_u64(st, "kv_blocks_total", 0),
               json_get_u64(st, "kv_blocks_cached", 0), json_get_u64(st, "kv_block_tokens", 0), used, total);
        printf("tokens: %" PRIu64 " prompt (%" PRIu64 " from the prefix cache), %" PRIu64 " generated",
               json_get_u64(st, "prompt_tokens", 0), json_get_u64(st, "cached_prompt_tokens", 0),
               json_get_u64(st, "generated_tokens", 0));
        if (json_object_object_get_ex(st, "steps", NULL))
                printf(" in %" PRIu64 " steps; %.2f tokens/s over the last 10 s", json_get_u64(st, "steps", 0),
                       json_get_double(st, "tokens_per_s", 0));
        printf("\n");
}

static const char status_help[] = "Usage: npuctl status [--json]\n\n"
                                  "The daemon's properties and counters (GetStats). With --json: one object\n"
                                  "{\"properties\": {...}, \"stats\": {...}} with the daemon's own keys.\n";

int verb_status(const struct npuctl *c, int argc, char **argv)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_object_putp) json_object *props = NULL, *stats = NULL;
        bool json = false;
        int r;

        r = parse_json_only(argc, argv, status_help, &json);
        if (r != 0)
                return r < 0 ? r : 0;
        r = connect_and_call(c, "GetStats", &bus, &reply);
        if (r < 0)
                return r;
        r = json_from_bus(reply, &stats);
        if (r < 0)
                return bus_log_parse_error(r);
        r = get_properties(bus, &props);
        if (r < 0)
                return r;
        if (json) {
                _cleanup_(json_object_putp) json_object *o = json_object_new_object();
                if (!o)
                        return -ENOMEM;
                json_object_object_add(o, "properties", json_object_get(props));
                json_object_object_add(o, "stats", json_object_get(stats));
                json_print(o);
                return 0;
        }
        print_status(props, stats);
        return 0;
}
