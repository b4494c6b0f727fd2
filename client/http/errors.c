/* SPDX-License-Identifier: MIT */
/*
 * Every failure as HTTP says it: a status, and a body in OpenAI's shape
 * {"error": {"message", "type", "param", "code"}} (Ollama's endpoints get
 * {"error": "message"}). npud's named D-Bus errors map to statuses here, in
 * one table, so each endpoint reports them alike.
 */
#include <stdarg.h>

#include "gateway.h"

void api_error_set(struct api_error *e, unsigned status, const char *type, const char *code, const char *param,
                   const char *fmt, ...)
{
        va_list ap;

        e->status = status;
        e->type = type;
        e->code = code;
        e->param = param;
        e->retry_after = 0;
        va_start(ap, fmt);
        vsnprintf(e->message, sizeof(e->message), fmt, ap);
        va_end(ap);
}

struct bus_error_map {
        const char *name;
        unsigned status;
        const char *type, *code, *param;
        unsigned retry_after;
};

static const struct bus_error_map bus_errors[] = {
        { NPUD_ERROR "InvalidArgument", 400, "invalid_request_error", NULL, NULL, 0 },
        { NPUD_ERROR "InvalidUTF8", 400, "invalid_request_error", NULL, NULL, 0 },
        { NPUD_ERROR "PromptTooLong", 400, "invalid_request_error", "context_length_exceeded", NULL, 0 },
        { NPUD_ERROR "NoSuchModel", 404, "invalid_request_error", "model_not_found", "model", 0 },
        { NPUD_ERROR "BadModel", 500, "server_error", NULL, NULL, 0 },
        { NPUD_ERROR "Busy", 429, "requests", "rate_limit_exceeded", NULL, 1 },
        { NPUD_ERROR "LimitExceeded", 429, "requests", "rate_limit_exceeded", NULL, 1 },
        { NPUD_ERROR "AccessDenied", 403, "invalid_request_error", "access_denied", NULL, 0 },
        { SD_BUS_ERROR_ACCESS_DENIED, 403, "invalid_request_error", "access_denied", NULL, 0 },
        { NPUD_ERROR "ShuttingDown", 503, "server_error", NULL, NULL, 2 },
        { NPUD_ERROR "Failed", 500, "server_error", NULL, NULL, 0 },
        { SD_BUS_ERROR_SERVICE_UNKNOWN, 503, "server_error", NULL, NULL, 0 },
        { SD_BUS_ERROR_NAME_HAS_NO_OWNER, 503, "server_error", NULL, NULL, 0 },
        { SD_BUS_ERROR_DISCONNECTED, 503, "server_error", NULL, NULL, 0 },
        { SD_BUS_ERROR_NO_REPLY, 503, "server_error", NULL, NULL, 0 },
        { SD_BUS_ERROR_TIMEOUT, 503, "server_error", NULL, NULL, 0 },
        { SD_BUS_ERROR_UNKNOWN_METHOD, 501, "server_error", NULL, NULL, 0 },
};

void api_error_from_bus(struct api_error *e, const sd_bus_error *be, int r)
{
        if (!sd_bus_error_is_set(be)) {
                if (r == -ECONNRESET || r == -ENOTCONN || r == -EPIPE || r == -ETIMEDOUT)
                        api_error_set(e, 503, "server_error", NULL, NULL, "npud cannot be reached: %s",
                                      strerror(-r));
                else
                        api_error_set(e, 500, "server_error", NULL, NULL, "the call to npud failed: %s",
                                      strerror(-r));
                return;
        }
        for (size_t i = 0; i < ARRAY_SIZE(bus_errors); i++) {
                const struct bus_error_map *m = &bus_errors[i];
                if (!sd_bus_error_has_name(be, m->name))
                        continue;
                if (m->status == 503 && !strstr(m->name, NPUD_SERVICE))
                        api_error_set(e, 503, m->type, NULL, NULL, "npud is not running (%s)",
                                      be->message ? be->message : be->name);
                else if (m->status == 501)
                        api_error_set(e, 501, m->type, NULL, NULL,
                                      "npud does not know this method (it is older than npud-http): %s",
                                      be->message ? be->message : be->name);
                else
                        api_error_set(e, m->status, m->type, m->code, m->param, "%s",
                                      be->message ? be->message : be->name);
                e->retry_after = m->retry_after;
                return;
        }
        api_error_set(e, 500, "server_error", NULL, NULL, "%s: %s", be->name, be->message ? be->message : "");
}

static json_object *string_or_null(const char *s)
{
        return s ? json_object_new_string(s) : NULL;
}

json_object *api_error_json(const struct api_error *e, bool ollama)
{
        json_object *o = json_object_new_object(), *inner;

        if (!o)
                return NULL;
        if (ollama) {
                json_object_object_add(o, "error", json_object_new_string(e->message));
                return o;
        }
        inner = json_object_new_object();
        if (!inner) {
                json_object_put(o);
                return NULL;
        }
        json_object_object_add(inner, "message", json_object_new_string(e->message));
        json_object_object_add(inner, "type", json_object_new_string(e->type ? e->type : "server_error"));
        json_object_object_add(inner, "param", string_or_null(e->param));
        json_object_object_add(inner, "code", string_or_null(e->code));
        json_object_object_add(o, "error", inner);
        return o;
}

static enum MHD_Result queue_text(struct MHD_Connection *c, unsigned status, const char *text, size_t len,
                                  const char *content_type, unsigned retry_after)
{
        struct MHD_Response *resp;
        enum MHD_Result ret;

        resp = MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
        if (!resp)
                return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
        if (retry_after) {
                char v[16];
                snprintf(v, sizeof(v), "%u", retry_after);
                MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
        }
        if (status == 401)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
        ret = http_queue_response(c, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

static enum MHD_Result queue_json(struct MHD_Connection *c, unsigned status, json_object *o, unsigned retry_after)
{
        size_t len;
        const char *s;

        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                                  "\"param\":null,\"code\":null}}";

        if (!o)
                return queue_text(c, 500, oom, strlen(oom), "application/json", 0);
        s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        return queue_text(c, status, s, len, "application/json", retry_after);
}

enum MHD_Result api_error_queue(struct MHD_Connection *c, const struct api_error *e, bool ollama)
{
        _cleanup_(json_object_putp) json_object *o = api_error_json(e, ollama);
        return queue_json(c, e->status, o, e->retry_after);
}

enum MHD_Result json_queue(struct MHD_Connection *c, unsigned status, json_object *o)
{
        return queue_json(c, status, o, 0);
}
