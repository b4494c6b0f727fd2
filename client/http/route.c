/* SPDX-License-Identifier: MIT */
/*
 * One HTTP request, from its headers to its response: the key (on TCP), the
 * body (up to the size limit, else 413), the JSON, and the endpoint. An
 * endpoint either answers at once or starts a job and suspends the
 * connection; when the job has news the connection is resumed and MHD calls
 * route_access() again, which hands it to the job.
 */
#include <inttypes.h>

#include "gateway.h"

#define JSON_MAX_DEPTH 64

static void http_req_free(struct http_req *hr)
{
        free(hr->method);
        free(hr->url);
        buf_done(&hr->body);
        free(hr);
}

void http_req_resume(struct http_req *hr)
{
        if (!hr->suspended)
                return;
        hr->suspended = false;
        MHD_resume_connection(hr->mhd);
        listener_kick(hr->conn->l);
}

static bool is_ollama(const char *url)
{
        return strncmp(url, "/api/", 5) == 0;
}

static enum MHD_Result respond_error(struct http_req *hr, unsigned status, const char *type, const char *code,
                                     const char *param, const char *message)
{
        struct api_error e;

        api_error_set(&e, status, type, code, param, "%s", message);
        hr->state = HTTP_RESPONDING;
        return api_error_queue(hr->mhd, &e, is_ollama(hr->url));
}

/* The body as a JSON object, or a 400 queued (and NULL returned). */
static json_object *parse_body(struct http_req *hr, enum MHD_Result *ret)
{
        json_tokener *tok = json_tokener_new_ex(JSON_MAX_DEPTH);
        json_object *o;
        enum json_tokener_error jerr;
        char msg[256];

        if (!tok) {
                *ret = respond_error(hr, 500, "server_error", NULL, NULL, "out of memory");
                return NULL;
        }
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        o = json_tokener_parse_ex(tok, hr->body.data ? hr->body.data : "", (int)hr->body.len);
        jerr = json_tokener_get_error(tok);
        if (!o && jerr == json_tokener_continue)
                jerr = json_tokener_error_parse_eof;
        if (o && json_tokener_get_parse_end(tok) < hr->body.len) {
                /* trailing white space is allowed, anything else is not */
                const char *rest = hr->body.data + json_tokener_get_parse_end(tok);
                if (rest[strspn(rest, " \t\r\n")]) {
                        json_object_put(o);
                        o = NULL;
                        jerr = json_tokener_error_parse_unexpected;
                }
        }
        json_tokener_free(tok);
        if (!o || jerr != json_tokener_success) {
                json_object_put(o);
                snprintf(msg, sizeof(msg),
                         "We could not parse the JSON body of your request: %s. The API expects a JSON object.",
                         hr->body.len == 0 ? "the body is empty" : json_tokener_error_desc(jerr));
                *ret = respond_error(hr, 400, "invalid_request_error", NULL, NULL, msg);
                return NULL;
        }
        if (!json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                *ret = respond_error(hr, 400, "invalid_request_error", NULL, NULL,
                                     "The body of your request must be a JSON object.");
                return NULL;
        }
        return o;
}

static enum MHD_Result queue_plain(struct http_req *hr, unsigned status, const char *text)
{
        struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), (void *)text,
                                                                    MHD_RESPMEM_PERSISTENT);
        enum MHD_Result r;

        if (!resp)
                return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
        hr->state = HTTP_RESPONDING;
        r = http_queue_response(hr->mhd, status, resp);
        MHD_destroy_response(resp);
        return r;
}

static enum MHD_Result api_version(struct http_req *hr)
{
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();

        if (o)
                json_object_object_add(o, "version", json_object_new_string(NPUD_HTTP_VERSION));
        hr->state = HTTP_RESPONDING;
        return json_queue(hr->mhd, 200, o);
}

enum route {
        ROUTE_NONE,
        ROUTE_ROOT,
        ROUTE_MODELS,
        ROUTE_MODEL,
        ROUTE_COMPLETIONS,
        ROUTE_CHAT,
        ROUTE_OLLAMA_TAGS,
        ROUTE_OLLAMA_VERSION,
        ROUTE_OLLAMA_GENERATE,
        ROUTE_OLLAMA_CHAT,
        ROUTE_OLLAMA_PS,
};

static const struct {
        const char *path;
        const char *method;
        enum route route;
} routes[] = {
        { "/", "GET", ROUTE_ROOT },
        { "/v1/models", "GET", ROUTE_MODELS },
        { "/v1/completions", "POST", ROUTE_COMPLETIONS },
        { "/v1/chat/completions", "POST", ROUTE_CHAT },
        { "/api/tags", "GET", ROUTE_OLLAMA_TAGS },
        { "/api/version", "GET", ROUTE_OLLAMA_VERSION },
        { "/api/generate", "POST", ROUTE_OLLAMA_GENERATE },
        { "/api/chat", "POST", ROUTE_OLLAMA_CHAT },
        { "/api/ps", "GET", ROUTE_OLLAMA_PS },
};

/* The route of url; *ret_allow is the method it takes when method is not it. */
static enum route find_route(const char *url, const char *method, const char **ret_allow)
{
        *ret_allow = NULL;
        for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
                if (strcmp(url, routes[i].path) != 0)
                        continue;
                if (strcmp(method, routes[i].method) == 0 ||
                    (strcmp(method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0))
                        return routes[i].route;
                *ret_allow = routes[i].method;
                return ROUTE_NONE;
        }
        if (strncmp(url, "/v1/models/", 11) == 0 && url[11]) {
                if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
                        return ROUTE_MODEL;
                *ret_allow = "GET";
        }
        return ROUTE_NONE;
}

static enum MHD_Result route_unknown(struct http_req *hr, const char *allow)
{
        char msg[300];
        struct api_error e;
        enum MHD_Result r;

        if (!allow) {
                snprintf(msg, sizeof(msg), "Invalid URL (%s %.200s)", hr->method, hr->url);
                return respond_error(hr, 404, "invalid_request_error", NULL, NULL, msg);
        }
        api_error_set(&e, 405, "invalid_request_error", NULL, NULL, "%s %.200s is not allowed: use %s",
                      hr->method, hr->url, allow);
        _cleanup_(json_object_putp) json_object *o = api_error_json(&e, is_ollama(hr->url));
        size_t len;
        const char *s = o ? json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len) : "{}";
        struct MHD_Response *resp = MHD_create_response_from_buffer(o ? len : 2, (void *)s, MHD_RESPMEM_MUST_COPY);
        if (!resp)
                return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
        hr->state = HTTP_RESPONDING;
        r = http_queue_response(hr->mhd, 405, resp);
        MHD_destroy_response(resp);
        return r;
}

static enum MHD_Result dispatch(struct http_req *hr)
{
        const char *allow;
        enum route route = find_route(hr->url, hr->method, &allow);
        enum MHD_Result ret = MHD_YES;
        _cleanup_(json_object_putp) json_object *body = NULL;

        switch (route) {
        case ROUTE_NONE:
                return route_unknown(hr, allow);
        case ROUTE_ROOT:
                return queue_plain(hr, 200, "npud-http is running\n");
        case ROUTE_MODELS:
                return models_list(hr, NULL, false);
        case ROUTE_MODEL:
                return models_list(hr, hr->url + 11, false);
        case ROUTE_OLLAMA_TAGS:
                return models_list(hr, NULL, true);
        case ROUTE_OLLAMA_VERSION:
                return api_version(hr);
        case ROUTE_OLLAMA_PS:
                return models_ps(hr);
        default:
                break;
        }
        body = parse_body(hr, &ret);
        if (!body)
                return ret;
        switch (route) {
        case ROUTE_COMPLETIONS:
                return openai_completions(hr, body, false);
        case ROUTE_CHAT:
                return openai_completions(hr, body, true);
        case ROUTE_OLLAMA_GENERATE:
                return ollama_generate(hr, body, false);
        case ROUTE_OLLAMA_CHAT:
                return ollama_generate(hr, body, true);
        default:
                return respond_error(hr, 500, "server_error", NULL, NULL, "no handler");
        }
}

static enum MHD_Result respond_too_large(struct http_req *hr)
{
        char msg[128];

        snprintf(msg, sizeof(msg), "The request body is larger than %" PRIu64 " bytes.", hr->gw->cfg.max_body);
        return respond_error(hr, 413, "invalid_request_error", "request_too_large", NULL, msg);
}

/* The first call: headers are in. Checks what can be checked before the body. */
static enum MHD_Result request_begin(struct listener *l, struct MHD_Connection *connection, const char *url,
                                     const char *method, void **req_cls)
{
        const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection,
                                                                       MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        struct http_req *hr = calloc(1, sizeof(*hr));
        const char *cl;

        if (!hr || !info || !info->socket_context) {
                free(hr);
                return MHD_NO;
        }
        hr->gw = l->gw;
        hr->mhd = connection;
        hr->conn = info->socket_context;
        hr->conn->req = hr;
        hr->method = strdup(method);
        hr->url = strdup(url);
        *req_cls = hr;
        if (!hr->method || !hr->url)
                return MHD_NO;
        if (l->tcp && !key_matches(l->gw->key, MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                                           MHD_HTTP_HEADER_AUTHORIZATION))) {
                bool given = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                         MHD_HTTP_HEADER_AUTHORIZATION) != NULL;
                return respond_error(hr, 401, "invalid_request_error", given ? "invalid_api_key" : NULL, NULL,
                                     given ? "Incorrect API key provided. The key is in ~/.config/npud/http.key "
                                             "of the user running npud-http."
                                           : "You didn't provide an API key. You need to provide your API key "
                                             "in an Authorization header using Bearer auth (i.e. "
                                             "Authorization: Bearer YOUR_KEY); it is in "
                                             "~/.config/npud/http.key.");
        }
        /*
         * A declared length over the limit: refused at once when the client
         * waits for 100-continue (it has sent nothing yet) or when the body
         * would be too big to read through; else the body is read and dropped
         * like a chunked one, so a client still sending gets the 413 rather
         * than a reset connection.
         */
        cl = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > hr->gw->cfg.max_body) {
                const char *expect = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
                if ((expect && !strcasecmp(expect, "100-continue")) ||
                    strtoull(cl, NULL, 10) > MAX(4 * hr->gw->cfg.max_body, (uint64_t)4 << 20))
                        return respond_too_large(hr);
                hr->too_large = true;
        }
        return MHD_YES;
}

enum MHD_Result route_access(void *cls, struct MHD_Connection *connection, const char *url, const char *method,
                             const char *version, const char *upload_data, size_t *upload_data_size,
                             void **req_cls)
{
        struct http_req *hr = *req_cls;

        if (!hr)
                return request_begin(cls, connection, url, method, req_cls);
        if (hr->state == HTTP_RESPONDING) {
                *upload_data_size = 0; /* answered already: what still comes is dropped */
                return MHD_YES;
        }
        if (*upload_data_size) {
                /* past the limit the rest is read and dropped, so the client, still sending, gets the 413
                 * rather than a reset connection; the request deadline bounds how long that may take */
                if (!hr->too_large && hr->body.len + *upload_data_size > hr->gw->cfg.max_body) {
                        hr->too_large = true;
                        buf_done(&hr->body);
                }
                if (!hr->too_large && buf_append(&hr->body, upload_data, *upload_data_size) < 0)
                        return MHD_NO;
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (hr->state == HTTP_RECEIVING) {
                conn_request_complete(hr->conn);
                if (hr->too_large)
                        return respond_too_large(hr);
                return dispatch(hr);
        }
        /* HTTP_WAITING: resumed, the job has news */
        if (hr->gone || !hr->job)
                return MHD_NO;
        return job_respond(hr->job, connection);
}

void route_completed(void *cls, struct MHD_Connection *connection, void **req_cls,
                     enum MHD_RequestTerminationCode toe)
{
        struct http_req *hr = *req_cls;

        if (!hr)
                return;
        *req_cls = NULL;
        if (hr->job) {
                hr->job->hr = NULL;
                job_detach_http(hr->job);
                hr->job = job_unref(hr->job);
        }
        if (hr->conn && hr->conn->req == hr)
                conn_request_done(hr->conn);
        http_req_free(hr);
}

/* Suspend hr until its job has news; also watch for the client hanging up. */
void http_req_wait(struct http_req *hr)
{
        hr->state = HTTP_WAITING;
        hr->suspended = true;
        MHD_suspend_connection(hr->mhd);
        (void)conn_watch_hangup(hr->conn);
}
