/* SPDX-License-Identifier: MIT */
/*
 * POST /v1/completions and POST /v1/chat/completions, in the shapes OpenAI
 * documents: the request fields with their types and ranges, the response
 * objects (text_completion, chat.completion), and the stream: server-sent
 * events "data: {chunk}" ending in "data: [DONE]", usage in a last chunk when
 * stream_options.include_usage asks for it. A completion is npud's Generate;
 * a chat goes through the model's chat template with npud's Chat.
 */
#include "gateway.h"

/* What OpenAI accepts and we ignore (they change nothing here). */
static const char *const ignored_fields[] = {
        "user", "store", "metadata", "service_tier", "parallel_tool_calls",
};

static const char *const completion_fields[] = {
        "model", "prompt", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "logprobs",
        "echo", "stop", "presence_penalty", "frequency_penalty", "best_of", "logit_bias", "seed", "suffix",
        /* beyond OpenAI, as llama.cpp's and vLLM's servers take them */
        "top_k", "min_p", "repeat_penalty", "ignore_eos",
};

static const char *const chat_fields[] = {
        "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stream",
        "stream_options", "logprobs", "top_logprobs", "stop", "presence_penalty", "frequency_penalty",
        "logit_bias", "seed", "response_format", "tools", "tool_choice",
        "top_k", "min_p", "repeat_penalty", "ignore_eos",
};

static bool in_list(const char *key, const char *const *list, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (!strcmp(key, list[i]))
                        return true;
        return false;
}

static int check_fields(json_object *body, bool chat, struct api_error *e)
{
        json_object_object_foreach(body, key, val) {
                (void)val;
                if (in_list(key, ignored_fields, ARRAY_SIZE(ignored_fields)) ||
                    (chat ? in_list(key, chat_fields, ARRAY_SIZE(chat_fields))
                          : in_list(key, completion_fields, ARRAY_SIZE(completion_fields))))
                        continue;
                api_error_set(e, 400, "invalid_request_error", NULL, NULL,
                              "Unrecognized request argument supplied: %.200s", key);
                return -EINVAL;
        }
        return 0;
}

static json_object *field(json_object *o, const char *key)
{
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return NULL;
        return v;
}

/* Fields OpenAI has that npud cannot honour: accepted only at their neutral values. */
static int check_unsupported(json_object *body, bool chat, struct api_error *e)
{
        json_object *v;
        int64_t n = 1;

        if (json_opt_int(body, "n", 1, 128, &n, e) < 0)
                return -EINVAL;
        if (n != 1) {
                api_error_invalid(e, "n", "Invalid 'n': only one choice per request (n = 1) is supported.");
                return -EINVAL;
        }
        if (!chat) {
                if (json_opt_int(body, "best_of", 1, 20, &n, e) < 0)
                        return -EINVAL;
                if (n != 1) {
                        api_error_invalid(e, "best_of", "Invalid 'best_of': only 1 is supported.");
                        return -EINVAL;
                }
                if ((v = field(body, "suffix")) &&
                    !(json_object_is_type(v, json_type_string) && json_object_get_string_len(v) == 0)) {
                        api_error_invalid(e, "suffix", "Invalid 'suffix': insertion is not supported.");
                        return -EINVAL;
                }
        }
        if ((v = field(body, "logit_bias"))) {
                if (!json_object_is_type(v, json_type_object) || json_object_object_length(v) != 0) {
                        api_error_invalid(e, "logit_bias", "Invalid 'logit_bias': not supported.");
                        return -EINVAL;
                }
        }
        if (!chat)
                return 0;
        if ((v = field(body, "tools")) &&
            (!json_object_is_type(v, json_type_array) || json_object_array_length(v) != 0)) {
                api_error_invalid(e, "tools", "Invalid 'tools': tool calls are not supported.");
                return -EINVAL;
        }
        if ((v = field(body, "tool_choice")) &&
            !(json_object_is_type(v, json_type_string) && !strcmp(json_object_get_string(v), "none"))) {
                api_error_invalid(e, "tool_choice", "Invalid 'tool_choice': tool calls are not supported.");
                return -EINVAL;
        }
        if ((v = field(body, "response_format"))) {
                json_object *t;
                if (!json_object_is_type(v, json_type_object) || !json_object_object_get_ex(v, "type", &t) ||
                    !json_object_is_type(t, json_type_string) || strcmp(json_object_get_string(t), "text")) {
                        api_error_invalid(e, "response_format",
                                          "Invalid 'response_format': only {\"type\": \"text\"} is supported.");
                        return -EINVAL;
                }
        }
        return 0;
}

static int parse_sampling(json_object *body, bool chat, struct gen_params *p, struct api_error *e)
{
        int r;

        /* OpenAI's defaults where npud's differ: temperature 1, top_p 1, no top-k */
        p->has_temperature = p->has_top_p = p->has_top_k = true;
        p->temperature = 1;
        p->top_p = 1;
        p->top_k = 0;
        if (!chat) {
                p->has_max_tokens = true;
                p->max_tokens = 16;
        }
        if (json_opt_int(body, "max_tokens", 1, INT32_MAX, &p->max_tokens, e) < 0)
                return -EINVAL;
        if (field(body, "max_tokens"))
                p->has_max_tokens = true;
        if (chat && (r = json_opt_int(body, "max_completion_tokens", 1, INT32_MAX, &p->max_tokens, e)) != 0) {
                if (r < 0)
                        return -EINVAL;
                p->has_max_tokens = true;
        }
        if (json_opt_double(body, "temperature", 0, 2, &p->temperature, e) < 0 ||
            json_opt_double(body, "top_p", 0, 1, &p->top_p, e) < 0 ||
            json_opt_int(body, "top_k", 0, INT32_MAX, &p->top_k, e) < 0)
                return -EINVAL;
        if (p->top_p == 0) {
                /* only the most likely token: greedy */
                p->top_p = 1;
                p->top_k = 1;
        }
        if (json_opt_sampler_extras(body, p, e) < 0 || json_opt_stop(body, "stop", 4, p, e) < 0 || json_opt_bool(body, "ignore_eos", &p->ignore_eos, e) < 0)
                return -EINVAL;
        if (chat) {
                bool lp = false;
                int64_t top = 0;
                if (json_opt_bool(body, "logprobs", &lp, e) < 0 ||
                    json_opt_int(body, "top_logprobs", 0, 20, &top, e) < 0)
                        return -EINVAL;
                if (field(body, "top_logprobs") && !lp) {
                        api_error_invalid(e, "top_logprobs", "Invalid 'top_logprobs': logprobs must be true.");
                        return -EINVAL;
                }
                if (lp)
                        p->logprobs = (int)top;
        } else {
                int64_t n;
                if ((r = json_opt_int(body, "logprobs", 0, 5, &n, e)) < 0)
                        return -EINVAL;
                if (r > 0)
                        p->logprobs = (int)n;
        }
        return 0;
}

static int parse_stream(json_object *body, struct job *j, struct api_error *e)
{
        bool stream = false, usage = false;
        json_object *so;

        if (json_opt_bool(body, "stream", &stream, e) < 0)
                return -EINVAL;
        j->stream = stream;
        if ((so = field(body, "stream_options"))) {
                if (!json_object_is_type(so, json_type_object)) {
                        api_error_invalid(e, "stream_options", "Invalid type for 'stream_options': expected an "
                                                               "object.");
                        return -EINVAL;
                }
                if (!stream) {
                        api_error_invalid(e, "stream_options",
                                          "The 'stream_options' parameter is only allowed when 'stream' is "
                                          "enabled.");
                        return -EINVAL;
                }
                if (json_opt_bool(so, "include_usage", &usage, e) < 0)
                        return -EINVAL;
        }
        j->include_usage = usage;
        return 0;
}

/* prompt: a string, [string], [int...] or [[int...]]: one prompt, as npud's variant. */
static int append_prompt(sd_bus_message *m, json_object *body, struct job *j, struct api_error *e)
{
        json_object *v = field(body, "prompt");
        int r;

        if (!v) {
                api_error_invalid(e, "prompt", "You must provide a prompt.");
                return -EINVAL;
        }
        if (json_object_is_type(v, json_type_array) && json_object_array_length(v) == 1 &&
            !json_object_is_type(json_object_array_get_idx(v, 0), json_type_int))
                v = json_object_array_get_idx(v, 0); /* one prompt in a list */
        if (json_object_is_type(v, json_type_string)) {
                if (json_check_text(v, "prompt", e) < 0)
                        return -EINVAL;
                if (j->echo && !(j->echo_text = strdup(json_object_get_string(v))))
                        return -ENOMEM;
                return sd_bus_message_append(m, "v", "s", json_object_get_string(v));
        }
        if (!json_object_is_type(v, json_type_array)) {
                api_error_invalid(e, "prompt", "Invalid type for 'prompt': expected a string or an array.");
                return -EINVAL;
        }
        size_t n = json_object_array_length(v);
        for (size_t i = 0; i < n; i++) {
                json_object *t = json_object_array_get_idx(v, i);
                if (!json_object_is_type(t, json_type_int)) {
                        api_error_invalid(e, "prompt", "Invalid 'prompt': one prompt per request: a string or "
                                                       "an array of token ids.");
                        return -EINVAL;
                }
                int64_t id = json_object_get_int64(t);
                if (id < 0 || id > INT32_MAX) {
                        api_error_invalid(e, "prompt", "Invalid 'prompt[%zu]': a token id is at least 0.", i);
                        return -EINVAL;
                }
        }
        if (j->echo) {
                api_error_invalid(e, "echo", "Invalid 'echo': only with a text prompt.");
                return -EINVAL;
        }
        r = sd_bus_message_open_container(m, 'v', "ai");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "i");
        for (size_t i = 0; r >= 0 && i < n; i++) {
                int32_t id = (int32_t)json_object_get_int64(json_object_array_get_idx(v, i));
                r = sd_bus_message_append_basic(m, 'i', &id);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

/* The text of a message's content: a string, or an array of {"type": "text", "text": ...} parts. */
static int message_text(json_object *content, size_t idx, struct buf *out, struct api_error *e)
{
        if (!content)
                return 0;
        if (json_object_is_type(content, json_type_string)) {
                if (json_check_text(content, "messages", e) < 0)
                        return -EINVAL;
                return buf_append(out, json_object_get_string(content), json_object_get_string_len(content));
        }
        if (!json_object_is_type(content, json_type_array)) {
                api_error_invalid(e, "messages", "Invalid type for 'messages[%zu].content': expected a string or "
                                                 "an array of content parts.", idx);
                return -EINVAL;
        }
        for (size_t i = 0; i < json_object_array_length(content); i++) {
                json_object *part = json_object_array_get_idx(content, i), *type, *text;
                if (!json_object_is_type(part, json_type_object) ||
                    !json_object_object_get_ex(part, "type", &type) || !json_object_is_type(type, json_type_string)) {
                        api_error_invalid(e, "messages", "Invalid 'messages[%zu].content[%zu]': a content part "
                                                         "is an object with a type.", idx, i);
                        return -EINVAL;
                }
                if (strcmp(json_object_get_string(type), "text") != 0) {
                        api_error_invalid(e, "messages", "Invalid 'messages[%zu].content[%zu]': only text parts "
                                                         "are supported, not '%.40s'.", idx, i,
                                          json_object_get_string(type));
                        return -EINVAL;
                }
                if (!json_object_object_get_ex(part, "text", &text) || !json_object_is_type(text, json_type_string)) {
                        api_error_invalid(e, "messages", "Invalid 'messages[%zu].content[%zu].text': expected a "
                                                         "string.", idx, i);
                        return -EINVAL;
                }
                if (json_check_text(text, "messages", e) < 0)
                        return -EINVAL;
                if (buf_append(out, json_object_get_string(text), json_object_get_string_len(text)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

int openai_append_messages(sd_bus_message *m, json_object *msgs, struct api_error *e)
{
        int r;

        if (!msgs || !json_object_is_type(msgs, json_type_array) || json_object_array_length(msgs) == 0) {
                api_error_invalid(e, "messages", msgs ? "Invalid 'messages': expected a non-empty array."
                                                      : "Missing required parameter: 'messages'.");
                return -EINVAL;
        }
        r = sd_bus_message_open_container(m, 'a', "(ss)");
        for (size_t i = 0; r >= 0 && i < json_object_array_length(msgs); i++) {
                json_object *msg = json_object_array_get_idx(msgs, i), *role, *content = NULL;
                _cleanup_(buf_done) struct buf text = {};
                const char *rs;

                if (!json_object_is_type(msg, json_type_object) || !json_object_object_get_ex(msg, "role", &role) ||
                    !json_object_is_type(role, json_type_string)) {
                        api_error_invalid(e, "messages", "Invalid 'messages[%zu]': a message is an object with a "
                                                         "role.", i);
                        return -EINVAL;
                }
                rs = json_object_get_string(role);
                if (!strcmp(rs, "developer"))
                        rs = "system";
                if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant")) {
                        api_error_invalid(e, "messages", "Invalid 'messages[%zu].role': '%.40s'; supported are "
                                                         "system, developer, user and assistant.", i, rs);
                        return -EINVAL;
                }
                json_object_object_get_ex(msg, "content", &content);
                if (json_object_is_type(content, json_type_null))
                        content = NULL;
                if (message_text(content, i, &text, e) < 0)
                        return -EINVAL;
                r = sd_bus_message_append(m, "(ss)", rs, text.data ? text.data : "");
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

enum MHD_Result openai_completions(struct http_req *hr, json_object *body, bool chat)
{
        struct api_error e = {};
        struct gen_params p;
        struct job *j; /* hr's */
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        const char *model = NULL;
        int r;

        j = job_new(hr->gw, hr, chat ? JOB_CHAT : JOB_COMPLETIONS);
        if (!j)
                return MHD_NO;
        gen_params_init(&p);
        if (check_fields(body, chat, &e) < 0 || check_unsupported(body, chat, &e) < 0 ||
            parse_sampling(body, chat, &p, &e) < 0 || parse_stream(body, j, &e) < 0 ||
            json_opt_bool(body, "echo", &j->echo, &e) < 0 || json_opt_string(body, "model", &model, &e) < 0)
                goto fail;
        if (!model) {
                api_error_invalid(&e, "model", "you must provide a model parameter");
                goto fail;
        }
        if (j->echo && p.logprobs >= 0) {
                api_error_invalid(&e, "echo", "Invalid 'echo': the prompt's log-probabilities are not available; "
                                              "use echo or logprobs, not both.");
                goto fail;
        }
        j->logprobs = p.logprobs >= 0;
        j->model = strdup(model);
        if (!j->model)
                return MHD_NO;
        if (job_new_call(j, chat ? "Chat" : "Generate", &call, &e) < 0)
                goto fail;
        r = chat ? openai_append_messages(call, field(body, "messages"), &e) : append_prompt(call, body, j, &e);
        if (r >= 0)
                r = gen_params_append(call, &p);
        if (job_send(j, call, r, &e) < 0)
                goto fail;
        return MHD_YES;
fail:
        hr->state = HTTP_RESPONDING;
        return api_error_queue(hr->mhd, &e, false);
}

/* ---- responses */

const char *openai_finish_reason(const char *reason)
{
        if (!strcmp(reason, "eos") || !strcmp(reason, "stop"))
                return "stop";
        if (!strcmp(reason, "length") || !strcmp(reason, "context"))
                return "length";
        return NULL;
}

static json_object *usage_json(const struct job *j)
{
        json_object *u = json_object_new_object();
        if (!u)
                return NULL;
        json_object_object_add(u, "prompt_tokens", json_object_new_int64(j->prompt_tokens));
        json_object_object_add(u, "completion_tokens", json_object_new_int64(j->generated_tokens));
        json_object_object_add(u, "total_tokens", json_object_new_int64((int64_t)j->prompt_tokens +
                                                                         j->generated_tokens));
        if (j->api == JOB_CHAT) {
                json_object *d = json_object_new_object();
                if (d) {
                        json_object_object_add(d, "cached_tokens", json_object_new_int64(j->cached_tokens));
                        json_object_object_add(u, "prompt_tokens_details", d);
                }
        }
        return u;
}

static json_object *envelope(const struct job *j, const char *object)
{
        json_object *o = json_object_new_object();
        if (!o)
                return NULL;
        json_object_object_add(o, "id", json_object_new_string(j->id));
        json_object_object_add(o, "object", json_object_new_string(object));
        json_object_object_add(o, "created", json_object_new_int64(j->created));
        json_object_object_add(o, "model", json_object_new_string(j->model ? j->model : ""));
        return o;
}

/* One choice: text (completions) or a message/delta (chat); NULL finish reason is null. */
static json_object *choice_json(const struct job *j, const char *text, size_t len, const char *finish, bool delta,
                                bool role, json_object *logprobs)
{
        json_object *c = json_object_new_object();
        if (!c) {
                json_object_put(logprobs);
                return NULL;
        }
        json_object_object_add(c, "index", json_object_new_int(0));
        if (j->api == JOB_CHAT) {
                json_object *msg = json_object_new_object();
                if (msg) {
                        if (role || !delta)
                                json_object_object_add(msg, "role", json_object_new_string("assistant"));
                        if (text || !delta)
                                json_object_object_add(msg, "content",
                                                       json_object_new_string_len(text ? text : "", (int)len));
                        if (!delta)
                                json_object_object_add(msg, "refusal", NULL);
                        json_object_object_add(c, delta ? "delta" : "message", msg);
                }
        } else {
                json_object_object_add(c, "text", json_object_new_string_len(text ? text : "", (int)len));
        }
        json_object_object_add(c, "logprobs", logprobs);
        json_object_object_add(c, "finish_reason", finish ? json_object_new_string(finish) : NULL);
        return c;
}

/* The choice's logprobs for the job's entries [from, to): null unless the client asked. */
static json_object *logprobs_json(const struct job *j, size_t from, size_t to)
{
        json_object *o;

        if (!j->logprobs)
                return NULL;
        if (j->api != JOB_CHAT)
                return lp_completion_json(&j->lp, from, to, j->echo_text ? utf8_chars(j->echo_text) : 0);
        o = json_object_new_object();
        if (o) {
                json_object_object_add(o, "content", lp_content_json(&j->lp, from, to));
                json_object_object_add(o, "refusal", NULL);
        }
        return o;
}

json_object *openai_response(struct job *j)
{
        bool chat = j->api == JOB_CHAT;
        json_object *o = envelope(j, chat ? "chat.completion" : "text_completion"), *choices, *c;
        _cleanup_(buf_done) struct buf text = {};

        if (!o)
                return NULL;
        if (j->echo_text && (buf_append(&text, j->echo_text, strlen(j->echo_text)) < 0 ||
                             buf_append(&text, j->text.data, j->text.len) < 0)) {
                json_object_put(o);
                return NULL;
        }
        choices = json_object_new_array();
        c = choice_json(j, j->echo_text ? text.data : j->text.data ? j->text.data : "",
                        j->echo_text ? text.len : j->text.len, openai_finish_reason(j->reason), false, false,
                        logprobs_json(j, 0, j->lp.n));
        if (!choices || !c) {
                json_object_put(choices);
                json_object_put(c);
                json_object_put(o);
                return NULL;
        }
        json_object_array_add(choices, c);
        json_object_object_add(o, "choices", choices);
        json_object_object_add(o, "usage", usage_json(j));
        return o;
}

/* "data: JSON\n\n" */
static int sse_event(struct job *j, json_object *o)
{
        size_t len;
        const char *s;
        int r;

        if (!o)
                return -ENOMEM;
        s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        r = buf_append(&j->out, "data: ", 6);
        if (r >= 0)
                r = buf_append(&j->out, s, len);
        if (r >= 0)
                r = buf_append(&j->out, "\n\n", 2);
        json_object_put(o);
        return r;
}

static json_object *chunk(const struct job *j, const char *text, size_t len, const char *finish, bool role,
                          json_object *logprobs)
{
        bool chat = j->api == JOB_CHAT;
        json_object *o = envelope(j, chat ? "chat.completion.chunk" : "text_completion"), *choices, *c;

        if (!o) {
                json_object_put(logprobs);
                return NULL;
        }
        choices = json_object_new_array();
        c = choice_json(j, text, len, finish, true, role, logprobs);
        if (!choices || !c) {
                json_object_put(choices);
                json_object_put(c);
                json_object_put(o);
                return NULL;
        }
        json_object_array_add(choices, c);
        json_object_object_add(o, "choices", choices);
        if (j->include_usage)
                json_object_object_add(o, "usage", NULL);
        return o;
}

static int stream_first(struct job *j)
{
        int r = 0;

        if (j->sent_first)
                return 0;
        j->sent_first = true;
        if (j->api == JOB_CHAT)
                r = sse_event(j, chunk(j, "", 0, NULL, true, NULL));
        else if (j->echo_text)
                r = sse_event(j, chunk(j, j->echo_text, strlen(j->echo_text), NULL, false, NULL));
        return r;
}

int openai_stream_tokens(struct job *j, const char *text, size_t len)
{
        json_object *lp;
        int r = stream_first(j);

        if (r < 0)
                return r;
        /* the chunk's tokens: their Logprobs signal came just before their Tokens */
        lp = logprobs_json(j, j->lp_streamed, j->lp.n);
        j->lp_streamed = j->lp.n;
        return sse_event(j, chunk(j, text, len, NULL, false, lp));
}

int openai_stream_end(struct job *j)
{
        const char *finish = j->reason ? openai_finish_reason(j->reason) : NULL;
        int r;

        if (!finish) {
                /* failed in the middle: an error event, as OpenAI sends one; the client raises it */
                if (!j->error.status)
                        api_error_set(&j->error, 500, "server_error", NULL, NULL, "the request failed");
                return sse_event(j, api_error_json(&j->error, false));
        }
        r = stream_first(j);
        if (r >= 0)
                r = sse_event(j, chunk(j, NULL, 0, finish, false,
                                       j->lp_streamed < j->lp.n ? logprobs_json(j, j->lp_streamed, j->lp.n) : NULL));
        if (r >= 0 && j->include_usage) {
                json_object *o = envelope(j, j->api == JOB_CHAT ? "chat.completion.chunk" : "text_completion");
                if (o) {
                        json_object_object_add(o, "choices", json_object_new_array());
                        json_object_object_add(o, "usage", usage_json(j));
                }
                r = sse_event(j, o);
        }
        if (r >= 0)
                r = buf_append(&j->out, "data: [DONE]\n\n", 14);
        return r;
}
