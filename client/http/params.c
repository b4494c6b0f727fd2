/* SPDX-License-Identifier: MIT */
/*
 * Reading request fields with their types checked the way OpenAI's API does:
 * a field of the wrong type or out of range is a 400 that names it (param),
 * and JSON null is the same as leaving the field out. Then the sampling
 * options as npud's a{sv}.
 */
#include <math.h>

#include "gateway.h"

static const char *type_name(json_type t)
{
        switch (t) {
        case json_type_null: return "null";
        case json_type_boolean: return "a boolean";
        case json_type_double: return "a number";
        case json_type_int: return "an integer";
        case json_type_object: return "an object";
        case json_type_array: return "an array";
        case json_type_string: return "a string";
        }
        return "something else";
}

static json_object *get(json_object *o, const char *key)
{
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return NULL;
        return v;
}

int json_opt_int(json_object *o, const char *key, int64_t min, int64_t max, int64_t *ret, struct api_error *e)
{
        json_object *v = get(o, key);
        int64_t x;

        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_int)) {
                api_error_invalid(e, key, "Invalid type for '%s': expected an integer, but got %s instead.", key,
                                  type_name(json_object_get_type(v)));
                return -EINVAL;
        }
        errno = 0;
        x = json_object_get_int64(v);
        if (errno || x < min || x > max) {
                api_error_invalid(e, key, "Invalid '%s': %s. Expected a value between %lld and %lld.", key,
                                  json_object_to_json_string(v), (long long)min, (long long)max);
                return -EINVAL;
        }
        *ret = x;
        return 1;
}

int json_opt_double(json_object *o, const char *key, double min, double max, double *ret, struct api_error *e)
{
        json_object *v = get(o, key);
        double x;

        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double)) {
                api_error_invalid(e, key, "Invalid type for '%s': expected a number, but got %s instead.", key,
                                  type_name(json_object_get_type(v)));
                return -EINVAL;
        }
        x = json_object_get_double(v);
        if (!isfinite(x) || x < min || x > max) {
                api_error_invalid(e, key, "Invalid '%s': %s. Expected a value between %g and %g.", key,
                                  json_object_to_json_string(v), min, max);
                return -EINVAL;
        }
        *ret = x;
        return 1;
}

int json_opt_bool(json_object *o, const char *key, bool *ret, struct api_error *e)
{
        json_object *v = get(o, key);

        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_boolean)) {
                api_error_invalid(e, key, "Invalid type for '%s': expected a boolean, but got %s instead.", key,
                                  type_name(json_object_get_type(v)));
                return -EINVAL;
        }
        *ret = json_object_get_boolean(v);
        return 1;
}

int json_check_text(json_object *v, const char *param, struct api_error *e)
{
        const char *s = json_object_get_string(v);
        size_t len = (size_t)json_object_get_string_len(v);

        if (!utf8_valid_string(s, len)) {
                api_error_invalid(e, param, "Invalid '%s': the text holds a NUL character or is not valid UTF-8.",
                                  param);
                return -EINVAL;
        }
        return 0;
}

int json_opt_string(json_object *o, const char *key, const char **ret, struct api_error *e)
{
        json_object *v = get(o, key);

        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_string)) {
                api_error_invalid(e, key, "Invalid type for '%s': expected a string, but got %s instead.", key,
                                  type_name(json_object_get_type(v)));
                return -EINVAL;
        }
        if (json_check_text(v, key, e) < 0)
                return -EINVAL;
        *ret = json_object_get_string(v);
        return 1;
}

/* Go's time.ParseDuration: [-]NUMBER UNIT... with units ns us µs ms s m h; a bare number is seconds. */
static int parse_go_duration(const char *s, double *ret)
{
        static const struct { const char *unit; double sec; } units[] = {
                { "ns", 1e-9 }, { "us", 1e-6 }, { "\xc2\xb5s", 1e-6 }, { "ms", 1e-3 },
                { "s", 1 }, { "m", 60 }, { "h", 3600 },
        };
        bool neg = false;
        double total = 0;

        char *num_end;
        double plain = strtod(s, &num_end);
        if (num_end != s && !*num_end && isfinite(plain)) {
                /* a bare number, as OLLAMA_KEEP_ALIVE takes: seconds ("-1", "300") */
                *ret = plain;
                return 0;
        }
        if (*s == '-' || *s == '+')
                neg = *s++ == '-';
        if (!*s)
                return -EINVAL;
        while (*s) {
                char *end;
                size_t best = 0;
                double sec = 0;
                if (!(*s >= '0' && *s <= '9') && *s != '.')
                        return -EINVAL;
                double v = strtod(s, &end);
                if (end == s)
                        return -EINVAL;
                s = end;
                for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
                        size_t n = strlen(units[i].unit);
                        if (n > best && !strncmp(s, units[i].unit, n)) {
                                best = n;
                                sec = units[i].sec;
                        }
                }
                if (!best)
                        return -EINVAL; /* a number needs its unit */
                s += best;
                total += v * sec;
        }
        *ret = neg ? -total : total;
        return isfinite(total) ? 0 : -EINVAL;
}

int json_opt_duration(json_object *o, const char *key, double *ret, struct api_error *e)
{
        json_object *v = get(o, key);
        double d;

        if (!v)
                return 0;
        if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) {
                d = json_object_get_double(v);
        } else if (!json_object_is_type(v, json_type_string) || parse_go_duration(json_object_get_string(v), &d) < 0) {
                api_error_invalid(e, key, "Invalid '%s': expected seconds or a duration such as \"5m\", \"1h30m\" "
                                          "or \"-1\".", key);
                return -EINVAL;
        }
        if (!isfinite(d) || d > 10 * 366 * 86400.0) {
                api_error_invalid(e, key, "Invalid '%s': at most 10 years (negative: for ever).", key);
                return -EINVAL;
        }
        *ret = d < 0 ? -1 : d;
        return 1;
}

static int add_stop(struct gen_params *p, json_object *v, const char *key, size_t max, struct api_error *e)
{
        size_t len = (size_t)json_object_get_string_len(v);

        if (json_check_text(v, key, e) < 0)
                return -EINVAL;
        if (len == 0)
                return 0; /* an empty stop string stops nothing */
        if (len > 256) {
                api_error_invalid(e, key, "Invalid '%s': a stop sequence has at most 256 bytes.", key);
                return -EINVAL;
        }
        if (p->n_stop == max || p->n_stop == ARRAY_SIZE(p->stop)) {
                api_error_invalid(e, key, "Invalid '%s': at most %zu stop sequences.", key,
                                  MIN(max, ARRAY_SIZE(p->stop)));
                return -EINVAL;
        }
        p->stop[p->n_stop++] = json_object_get_string(v);
        return 0;
}

int json_opt_sampler_extras(json_object *o, struct gen_params *p, struct api_error *e)
{
        int64_t seed;
        int r;

        if ((r = json_opt_double(o, "min_p", 0, 1, &p->min_p, e)) < 0)
                return -EINVAL;
        p->has_min_p = r > 0;
        if ((r = json_opt_double(o, "repeat_penalty", 0.01, 100, &p->repeat_penalty, e)) < 0)
                return -EINVAL;
        p->has_repeat = r > 0;
        if ((r = json_opt_double(o, "presence_penalty", -2, 2, &p->presence_penalty, e)) < 0)
                return -EINVAL;
        p->has_presence = r > 0;
        if ((r = json_opt_double(o, "frequency_penalty", -2, 2, &p->frequency_penalty, e)) < 0)
                return -EINVAL;
        p->has_frequency = r > 0;
        if ((r = json_opt_int(o, "seed", INT64_MIN, INT64_MAX, &seed, e)) < 0)
                return -EINVAL;
        if (r > 0) {
                p->has_seed = true;
                p->seed = (uint64_t)seed;
        }
        return 0;
}

int json_opt_stop(json_object *o, const char *key, size_t max, struct gen_params *p, struct api_error *e)
{
        json_object *v = get(o, key);

        if (!v)
                return 0;
        if (json_object_is_type(v, json_type_string))
                return add_stop(p, v, key, max, e) < 0 ? -EINVAL : 1;
        if (!json_object_is_type(v, json_type_array)) {
                api_error_invalid(e, key, "Invalid type for '%s': expected a string or an array of strings, but "
                                          "got %s instead.", key, type_name(json_object_get_type(v)));
                return -EINVAL;
        }
        for (size_t i = 0; i < json_object_array_length(v); i++) {
                json_object *s = json_object_array_get_idx(v, i);
                if (!json_object_is_type(s, json_type_string)) {
                        api_error_invalid(e, key, "Invalid type for '%s[%zu]': expected a string.", key, i);
                        return -EINVAL;
                }
                if (add_stop(p, s, key, max, e) < 0)
                        return -EINVAL;
        }
        return 1;
}

void gen_params_init(struct gen_params *p)
{
        *p = (struct gen_params) { .logprobs = -1 };
}

int gen_params_append(sd_bus_message *m, const struct gen_params *p)
{
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0 && p->has_max_tokens) {
                uint32_t u = (uint32_t)p->max_tokens;
                r = bus_append_entry(m, "max_tokens", 'u', &u);
        }
        if (r >= 0 && p->has_temperature)
                r = bus_append_entry(m, "temperature", 'd', &p->temperature);
        if (r >= 0 && p->has_top_p)
                r = bus_append_entry(m, "top_p", 'd', &p->top_p);
        if (r >= 0 && p->has_top_k) {
                uint32_t u = (uint32_t)p->top_k;
                r = bus_append_entry(m, "top_k", 'u', &u);
        }
        if (r >= 0 && p->has_min_p)
                r = bus_append_entry(m, "min_p", 'd', &p->min_p);
        if (r >= 0 && p->has_repeat)
                r = bus_append_entry(m, "repeat_penalty", 'd', &p->repeat_penalty);
        /* zero is the same as absent: sent only when they do something */
        if (r >= 0 && p->has_presence && p->presence_penalty != 0)
                r = bus_append_entry(m, "presence_penalty", 'd', &p->presence_penalty);
        if (r >= 0 && p->has_frequency && p->frequency_penalty != 0)
                r = bus_append_entry(m, "frequency_penalty", 'd', &p->frequency_penalty);
        if (r >= 0 && p->has_seed)
                r = bus_append_entry(m, "seed", 't', &p->seed);
        if (r >= 0 && p->ignore_eos) {
                int yes = 1;
                r = bus_append_entry(m, "ignore_eos", 'b', &yes);
        }
        if (r >= 0 && p->has_keep_alive)
                r = bus_append_entry(m, "keep_alive", 'd', &p->keep_alive);
        if (r >= 0 && p->logprobs >= 0) {
                uint32_t u = (uint32_t)p->logprobs;
                r = bus_append_entry(m, "logprobs", 'u', &u);
        }
        if (r >= 0 && p->n_stop) {
                r = sd_bus_message_open_container(m, 'e', "sv");
                if (r >= 0)
                        r = sd_bus_message_append_basic(m, 's', "stop");
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'v', "as");
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'a', "s");
                for (size_t i = 0; r >= 0 && i < p->n_stop; i++)
                        r = sd_bus_message_append_basic(m, 's', p->stop[i]);
                for (int i = 0; r >= 0 && i < 3; i++)
                        r = sd_bus_message_close_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}
