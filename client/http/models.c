/* SPDX-License-Identifier: MIT */
/*
 * The models npud has loaded (Manager.ListModels), as OpenAI lists them
 * (GET /v1/models, GET /v1/models/NAME) and as Ollama does (GET /api/tags).
 */
#include <inttypes.h>
#include <time.h>

#include "gateway.h"

struct model_info {
        const char *name, *path, *precision, *arch;
        uint64_t n_params, weight_bytes, loaded_at_us, size, expires_at_us;
        uint32_t n_ctx;
};

static int read_info(sd_bus_message *m, struct model_info *mi)
{
        const char *key, *contents;
        char type;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                r = sd_bus_message_read(m, "s", &key);
                if (r >= 0)
                        r = sd_bus_message_peek_type(m, &type, &contents);
                if (r < 0)
                        return r;
                if (!strcmp(contents, "s") && (!strcmp(key, "path") || !strcmp(key, "precision") ||
                                               !strcmp(key, "architecture"))) {
                        const char *s;
                        r = sd_bus_message_read(m, "v", "s", &s);
                        if (!strcmp(key, "path"))
                                mi->path = s;
                        else if (!strcmp(key, "precision"))
                                mi->precision = s;
                        else
                                mi->arch = s;
                } else if (!strcmp(contents, "t") && (!strcmp(key, "n_params") || !strcmp(key, "weight_bytes") ||
                                                      !strcmp(key, "loaded_at") || !strcmp(key, "size") ||
                                                      !strcmp(key, "expires_at"))) {
                        uint64_t t;
                        r = sd_bus_message_read(m, "v", "t", &t);
                        if (!strcmp(key, "n_params"))
                                mi->n_params = t;
                        else if (!strcmp(key, "weight_bytes"))
                                mi->weight_bytes = t;
                        else if (!strcmp(key, "size"))
                                mi->size = t;
                        else if (!strcmp(key, "expires_at"))
                                mi->expires_at_us = t;
                        else
                                mi->loaded_at_us = t;
                } else if (!strcmp(contents, "u") && !strcmp(key, "n_ctx")) {
                        r = sd_bus_message_read(m, "v", "u", &mi->n_ctx);
                } else {
                        r = sd_bus_message_skip(m, "v");
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

static json_object *openai_model(const struct model_info *mi)
{
        json_object *o = json_object_new_object();
        if (!o)
                return NULL;
        json_object_object_add(o, "id", json_object_new_string(mi->name));
        json_object_object_add(o, "object", json_object_new_string("model"));
        json_object_object_add(o, "created", json_object_new_int64((int64_t)(mi->loaded_at_us / 1000000)));
        json_object_object_add(o, "owned_by", json_object_new_string("npud"));
        return o;
}

/* 260K, 1.1B, 7B: Ollama's parameter_size. */
static void format_params(uint64_t n, char *buf, size_t size)
{
        if (n >= 1000000000ull)
                snprintf(buf, size, "%.1fB", (double)n / 1e9);
        else if (n >= 1000000ull)
                snprintf(buf, size, "%.1fM", (double)n / 1e6);
        else
                snprintf(buf, size, "%.0fK", (double)n / 1e3);
}

static json_object *ollama_model(const struct model_info *mi)
{
        json_object *o = json_object_new_object(), *d = json_object_new_object(), *fam = json_object_new_array();
        const char *arch = mi->arch ? mi->arch : "llama";
        char when[64] = "1970-01-01T00:00:00Z", params[32];
        time_t t = (time_t)(mi->loaded_at_us / 1000000);
        struct tm tm;

        if (!o || !d || !fam) {
                json_object_put(o);
                json_object_put(d);
                json_object_put(fam);
                return NULL;
        }
        if (gmtime_r(&t, &tm))
                strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        format_params(mi->n_params, params, sizeof(params));
        json_object_object_add(o, "name", json_object_new_string(mi->name));
        json_object_object_add(o, "model", json_object_new_string(mi->name));
        json_object_object_add(o, "modified_at", json_object_new_string(when));
        json_object_object_add(o, "size", json_object_new_uint64(mi->weight_bytes));
        json_object_object_add(o, "digest", json_object_new_string(""));
        json_object_object_add(d, "parent_model", json_object_new_string(""));
        json_object_object_add(d, "format", json_object_new_string("gguf"));
        json_object_object_add(d, "family", json_object_new_string(arch));
        json_object_array_add(fam, json_object_new_string(arch));
        json_object_object_add(d, "families", fam);
        json_object_object_add(d, "parameter_size", json_object_new_string(params));
        json_object_object_add(d, "quantization_level",
                               json_object_new_string(mi->precision ? mi->precision : ""));
        json_object_object_add(o, "details", d);
        return o;
}

/* RFC 3339 in UTC, as Ollama writes times; 0 (never) as the far future, as Ollama shows a model kept for ever. */
static json_object *rfc3339(uint64_t usec)
{
        char when[64] = "9999-12-31T23:59:59Z";
        time_t t = (time_t)(usec / 1000000);
        struct tm tm;

        if (usec && gmtime_r(&t, &tm))
                strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        return json_object_new_string(when);
}

/* /api/ps: the /api/tags entry with its memory and when it will be unloaded. */
static json_object *ollama_running(const struct model_info *mi)
{
        json_object *o = ollama_model(mi);

        if (!o)
                return NULL;
        json_object_object_del(o, "modified_at");
        json_object_object_add(o, "size", json_object_new_uint64(mi->size ? mi->size : mi->weight_bytes));
        json_object_object_add(o, "expires_at", rfc3339(mi->expires_at_us));
        json_object_object_add(o, "size_vram", json_object_new_uint64(0));
        json_object_object_add(o, "context_length", json_object_new_int64(mi->n_ctx));
        return o;
}

json_object *models_response(struct job *j, struct api_error *e)
{
        _cleanup_(json_object_putp) json_object *list = json_object_new_array();
        json_object *found = NULL, *o;
        sd_bus_message *m = j->reply;
        int r;

        if (!list)
                return NULL;
        r = sd_bus_message_rewind(m, true);
        if (r >= 0)
                r = sd_bus_message_enter_container(m, 'a', "(sa{sv})");
        while (r > 0) {
                struct model_info mi = {};
                r = sd_bus_message_enter_container(m, 'r', "sa{sv}");
                if (r <= 0)
                        break;
                r = sd_bus_message_read(m, "s", &mi.name);
                if (r >= 0)
                        r = read_info(m, &mi);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                if (r < 0)
                        break;
                if (j->api == JOB_MODEL_ONE) {
                        if (!found && !strcmp(mi.name, j->model))
                                found = openai_model(&mi);
                } else {
                        o = j->api == JOB_MODELS_OLLAMA ? ollama_model(&mi)
                            : j->api == JOB_MODELS_PS   ? ollama_running(&mi)
                                                        : openai_model(&mi);
                        if (o)
                                json_object_array_add(list, o);
                }
                r = 1;
        }
        if (r < 0) {
                json_object_put(found);
                api_error_set(e, 500, "server_error", NULL, NULL, "cannot read npud's model list: %s",
                              strerror(-r));
                return NULL;
        }
        if (j->api == JOB_MODEL_ONE) {
                if (!found)
                        api_error_set(e, 404, "invalid_request_error", "model_not_found", "model",
                                      "The model '%s' does not exist", j->model);
                return found;
        }
        o = json_object_new_object();
        if (!o)
                return NULL;
        if (j->api == JOB_MODELS_OLLAMA || j->api == JOB_MODELS_PS) {
                json_object_object_add(o, "models", TAKE_PTR(list));
        } else {
                json_object_object_add(o, "object", json_object_new_string("list"));
                json_object_object_add(o, "data", TAKE_PTR(list));
        }
        return o;
}

static enum MHD_Result start_listing(struct http_req *hr, const char *one, enum job_api api)
{
        bool ollama = api == JOB_MODELS_OLLAMA || api == JOB_MODELS_PS;
        struct job *j; /* hr's */
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        struct api_error e = {};
        sd_bus *bus;

        j = job_new(hr->gw, hr, api);
        if (!j)
                return MHD_NO;
        if (one && !(j->model = strdup(one)))
                return MHD_NO;
        bus = npud_bus(hr->gw, &e);
        if (bus && sd_bus_message_new_method_call(bus, &call, NPUD_SERVICE, NPUD_PATH, NPUD_MANAGER,
                                                  "ListModels") < 0)
                api_error_set(&e, 500, "server_error", NULL, NULL, "cannot build the call");
        if (!e.status)
                job_start(j, call, &e);
        if (e.status) {
                hr->state = HTTP_RESPONDING;
                return api_error_queue(hr->mhd, &e, ollama);
        }
        return MHD_YES;
}

enum MHD_Result models_list(struct http_req *hr, const char *one, bool ollama)
{
        return start_listing(hr, one, one ? JOB_MODEL_ONE : ollama ? JOB_MODELS_OLLAMA : JOB_MODELS);
}

enum MHD_Result models_ps(struct http_req *hr)
{
        return start_listing(hr, NULL, JOB_MODELS_PS);
}
