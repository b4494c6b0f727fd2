/* SPDX-License-Identifier: MIT */
#include <ini.h>
#include <limits.h>
#include <strings.h>

#include "config.h"

void config_defaults(struct npud_config *c)
{
        *c = (struct npud_config) {
                .kv_type = KV_TYPE_F16,
                .max_active = 16,
                .max_batch_tokens = 128,
                .prefill_chunk = 64,
                .max_requests_per_client = 8,
                .max_queued_tokens_per_client = 32768,
                .max_sessions_per_client = 4,
                .max_queue = 64,
                .max_finished_kept = 64,
                .max_unread_tokens_per_client = 256,
                .max_requests_per_uid = 64,
                .max_sessions_per_uid = 16,
                .max_active_per_uid = 0,
                .kv_percent_per_uid = 100,
                .idle_unload_sec = 300,
                .max_loaded_models = 4,
        };
}

void config_done(struct npud_config *c)
{
        free(c->model);
        free(c->backend);
        free(c->device);
        free(c->bus);
        free(c->models_dir);
        *c = (struct npud_config) {};
}

struct parse_state {
        struct npud_config *c;
        struct npu_err *err;
        int r;
};

static int parse_int(const char *v, long min, long max, long *ret)
{
        char *end;
        long n = 0;

        errno = 0;
        n = strtol(v, &end, 10);
        if (errno || end == v || *end || n < min || n > max)
                return -EINVAL;
        *ret = n;
        return 0;
}

static int parse_bool(const char *v, bool *ret)
{
        if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "on"))
                *ret = true;
        else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "off"))
                *ret = false;
        else
                return -EINVAL;
        return 0;
}

static int set_string(char **dst, const char *v)
{
        char *s = strdup(v);
        if (!s)
                return -ENOMEM;
        free(*dst);
        *dst = s;
        return 0;
}

struct int_key {
        const char *name;
        size_t offset;
        long min, max;
};

#define INT_KEY(field, lo, hi) { #field, offsetof(struct npud_config, field), lo, hi }

static const struct int_key int_keys[] = {
        INT_KEY(n_ctx, 0, 1 << 20),
        INT_KEY(max_active, 1, 4096),
        INT_KEY(max_batch_tokens, 1, 65536),
        INT_KEY(prefill_chunk, 1, 65536),
        INT_KEY(max_requests_per_client, 1, 65536),
        INT_KEY(max_queued_tokens_per_client, 1, INT32_MAX),
        INT_KEY(max_sessions_per_client, 0, 65536),
        INT_KEY(max_queue, 1, 1 << 20),
        INT_KEY(max_finished_kept, 0, 65536),
        INT_KEY(max_unread_tokens_per_client, 2, 1 << 20),
        INT_KEY(max_requests_per_uid, 1, 1 << 20),
        INT_KEY(max_sessions_per_uid, 0, 65536),
        INT_KEY(max_active_per_uid, 0, 4096),
        INT_KEY(kv_percent_per_uid, 1, 100),
        INT_KEY(idle_unload_sec, 0, INT32_MAX),
        INT_KEY(max_loaded_models, 1, 64),
};

static int set_key(struct npud_config *c, const char *key, const char *v)
{
        long n = 0;
        int r;

        if (!strcmp(key, "model"))
                return set_string(&c->model, v);
        if (!strcmp(key, "backend")) {
                if (strcmp(v, "cpu") != 0 && strcmp(v, "npu") != 0)
                        return -EOPNOTSUPP;
                return set_string(&c->backend, v);
        }
        if (!strcmp(key, "bus"))
                return set_string(&c->bus, v);
        if (!strcmp(key, "device"))
                return set_string(&c->device, v);
        if (!strcmp(key, "models_dir"))
                return v[0] && v[0] != '/' ? -EINVAL : set_string(&c->models_dir, v);
        if (!strcmp(key, "threads")) {
                r = parse_int(v, 0, 1024, &n);
                c->threads = (int)n;
                return r;
        }
        if (!strcmp(key, "kv_budget_mb")) {
                r = parse_int(v, 0, 1 << 24, &n);
                c->kv_budget_mb = (uint32_t)n;
                return r;
        }
        if (!strcmp(key, "flash_attention"))
                return parse_bool(v, &c->flash_attention);
        if (!strcmp(key, "kv_type"))
                return kv_type_from_string(v, &c->kv_type);
        for (size_t i = 0; i < ARRAY_SIZE(int_keys); i++)
                if (!strcmp(key, int_keys[i].name)) {
                        r = parse_int(v, int_keys[i].min, int_keys[i].max, &n);
                        if (r == 0)
                                *(int32_t *)((uint8_t *)c + int_keys[i].offset) = (int32_t)n;
                        return r;
                }
        return -ENOKEY;
}

/* Returns 0 on a bad entry: inih then reports its line. */
static int on_entry(void *userdata, const char *section, const char *key, const char *value)
{
        struct parse_state *st = userdata;
        int r;

        if (st->r < 0)
                return 0;
        if (strcmp(section, "npud") != 0) {
                st->r = npu_err_set(st->err, -EINVAL, "unknown section [%s] (only [npud])", section);
                return 0;
        }
        r = set_key(st->c, key, value);
        if (r == -ENOKEY)
                st->r = npu_err_set(st->err, -EINVAL, "unknown key '%s'", key);
        else if (r == -EOPNOTSUPP)
                st->r = npu_err_set(st->err, -EINVAL, "back end '%s' is not one of cpu, npu", value);
        else if (r < 0)
                st->r = npu_err_set(st->err, r, "bad value '%s' for %s", value, key);
        return st->r == 0;
}

int config_load(struct npud_config *c, const char *path, struct npu_err *err)
{
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        struct npud_config copy;
        struct parse_state st;
        int r;

        if (!f)
                return npu_err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
        /* parse into a copy, so a bad file changes nothing */
        copy = *c;
        copy.model = c->model ? strdup(c->model) : NULL;
        copy.backend = c->backend ? strdup(c->backend) : NULL;
        copy.bus = c->bus ? strdup(c->bus) : NULL;
        copy.device = c->device ? strdup(c->device) : NULL;
        copy.models_dir = c->models_dir ? strdup(c->models_dir) : NULL;
        st = (struct parse_state) { .c = &copy, .err = err };
        r = ini_parse_file(f, on_entry, &st);
        if (r > 0 && st.r == 0)
                st.r = npu_err_set(err, -EINVAL, "line %d: syntax error", r);
        else if (r > 0) {
                char line[32];
                snprintf(line, sizeof(line), "line %d", r);
                npu_err_prefix(err, line);
        }
        if (st.r == 0)
                st.r = config_validate(&copy, err);
        if (st.r < 0) {
                config_done(&copy);
                npu_err_prefix(err, path);
                return st.r;
        }
        config_done(c);
        *c = copy;
        return 0;
}

int config_validate(const struct npud_config *c, struct npu_err *err)
{
        if (c->max_batch_tokens < c->max_active)
                return npu_err_set(err, -EINVAL, "max_batch_tokens (%d) must be at least max_active (%d)",
                                   c->max_batch_tokens, c->max_active);
        if (c->max_requests_per_uid < c->max_requests_per_client)
                return npu_err_set(err, -EINVAL,
                                   "max_requests_per_uid (%d) must be at least max_requests_per_client (%d)",
                                   c->max_requests_per_uid, c->max_requests_per_client);
        return 0;
}
