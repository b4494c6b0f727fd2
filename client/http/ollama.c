/* SPDX-License-Identifier: MIT */
/*
 * Ollama's /api/generate and /api/chat, for the local tools that speak them:
 * newline-delimited JSON objects while streaming (the default), the last one
 * with "done": true and the counts and durations; errors as {"error": "..."}.
 * A raw /api/generate prompt goes to npud as it is (Generate); otherwise, as
 * in Ollama, the prompt is the user's message in the model's chat template
 * (Chat), with the system prompt before it.
 */
#include <time.h>

#include "gateway.h"

static json_object *field(json_object *o, const char *key)
{
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return NULL;
        return v;
}

static int parse_options(json_object *body, struct gen_params *p, struct api_error *e)
{
        json_object *o = field(body, "options");
        int64_t n;
        int r;

        if (!o)
                return 0;
        if (!json_object_is_type(o, json_type_object)) {
                api_error_invalid(e, "options", "options must be an object");
                return -EINVAL;
        }
        if ((r = json_opt_int(o, "num_predict", -2, INT32_MAX, &n, e)) < 0)
                return -EINVAL;
        if (r > 0 && n > 0) { /* -1 and -2: as long as the context allows */
                p->has_max_tokens = true;
                p->max_tokens = n;
        }
        if ((r = json_opt_double(o, "temperature", 0, 100, &p->temperature, e)) < 0)
                return -EINVAL;
        p->has_temperature |= r > 0;
        if ((r = json_opt_double(o, "top_p", 0, 1, &p->top_p, e)) < 0)
                return -EINVAL;
        p->has_top_p |= r > 0;
        if (p->has_top_p && p->top_p == 0) {
                p->top_p = 1;
                p->top_k = 1;
                p->has_top_k = true;
        }
        if ((r = json_opt_int(o, "top_k", 0, INT32_MAX, &p->top_k, e)) < 0)
                return -EINVAL;
        p->has_top_k |= r > 0;
        if (json_opt_sampler_extras(o, p, e) < 0 || json_opt_stop(o, "stop", 8, p, e) < 0)
                return -EINVAL;
        return 0;
}

/* logprobs (bool) and top_logprobs (0 to 20), beside options as Ollama has them. */
static int parse_logprobs(json_object *body, struct job *j, struct gen_params *p, struct api_error *e)
{
        int64_t top = 0;
        bool lp = false;

        if (json_opt_bool(body, "logprobs", &lp, e) < 0 || json_opt_int(body, "top_logprobs", 0, 20, &top, e) < 0)
                return -EINVAL;
        j->logprobs = lp;
        if (lp)
                p->logprobs = (int)top;
        return 0;
}

static int check_unsupported(json_object *body, struct api_error *e)
{
        json_object *v;

        if ((v = field(body, "images")) &&
            (!json_object_is_type(v, json_type_array) || json_object_array_length(v) != 0)) {
                api_error_invalid(e, "images", "images are not supported");
                return -EINVAL;
        }
        if ((v = field(body, "format")) &&
            !(json_object_is_type(v, json_type_string) && json_object_get_string_len(v) == 0)) {
                api_error_invalid(e, "format", "structured output (format) is not supported");
                return -EINVAL;
        }
        if ((v = field(body, "tools")) &&
            (!json_object_is_type(v, json_type_array) || json_object_array_length(v) != 0)) {
                api_error_invalid(e, "tools", "tools are not supported");
                return -EINVAL;
        }
        if ((v = field(body, "suffix")) &&
            !(json_object_is_type(v, json_type_string) && json_object_get_string_len(v) == 0)) {
                api_error_invalid(e, "suffix", "suffix is not supported");
                return -EINVAL;
        }
        if (field(body, "template")) {
                api_error_invalid(e, "template", "a template in the request is not supported: the model's own "
                                                 "chat template is used");
                return -EINVAL;
        }
        return 0;
}

static void created_at(char *buf, size_t size)
{
        struct timespec ts;
        struct tm tm;
        char date[40];

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf, size, "%s.%09ldZ", date, ts.tv_nsec);
}

static json_object *base(const struct job *j, const char *text, size_t len, bool done)
{
        json_object *o = json_object_new_object();
        char when[64];

        if (!o)
                return NULL;
        created_at(when, sizeof(when));
        json_object_object_add(o, "model", json_object_new_string(j->model));
        json_object_object_add(o, "created_at", json_object_new_string(when));
        if (j->api == JOB_OLLAMA_CHAT || (j->api == JOB_OLLAMA_LOAD && j->load_chat)) {
                json_object *msg = json_object_new_object();
                if (msg) {
                        json_object_object_add(msg, "role", json_object_new_string("assistant"));
                        json_object_object_add(msg, "content", json_object_new_string_len(text, (int)len));
                        json_object_object_add(o, "message", msg);
                }
        } else {
                json_object_object_add(o, "response", json_object_new_string_len(text, (int)len));
        }
        json_object_object_add(o, "done", json_object_new_boolean(done));
        return o;
}

static void add_done_fields(const struct job *j, json_object *o)
{
        const char *finish = j->reason ? openai_finish_reason(j->reason) : NULL;
        uint64_t total = now_ns() - j->t_start_ns;
        uint64_t prefill = (uint64_t)(j->prefill_ms * 1e6), eval = (uint64_t)(j->ms_per_token * 1e6) *
                                                                    j->generated_tokens;

        json_object_object_add(o, "done_reason", json_object_new_string(finish ? finish : "stop"));
        json_object_object_add(o, "total_duration", json_object_new_uint64(total));
        json_object_object_add(o, "load_duration", json_object_new_uint64(0));
        json_object_object_add(o, "prompt_eval_count", json_object_new_int64(j->prompt_tokens));
        json_object_object_add(o, "prompt_eval_duration", json_object_new_uint64(prefill));
        json_object_object_add(o, "eval_count", json_object_new_int64(j->generated_tokens));
        json_object_object_add(o, "eval_duration", json_object_new_uint64(eval));
}

static int ndjson(struct job *j, json_object *o)
{
        size_t len;
        const char *s;
        int r;

        if (!o)
                return -ENOMEM;
        s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        r = buf_append(&j->out, s, len);
        if (r >= 0)
                r = buf_append(&j->out, "\n", 1);
        json_object_put(o);
        return r;
}

/* "logprobs": the entries not yet sent (Ollama's shape is OpenAI's chat content), when asked for. */
static void add_logprobs(struct job *j, json_object *o)
{
        if (!o || !j->logprobs)
                return;
        json_object_object_add(o, "logprobs", lp_content_json(&j->lp, j->lp_streamed, j->lp.n));
        j->lp_streamed = j->lp.n;
}

int ollama_stream_tokens(struct job *j, const char *text, size_t len)
{
        json_object *o = base(j, text, len, false);

        add_logprobs(j, o);
        return ndjson(j, o);
}

int ollama_stream_end(struct job *j)
{
        json_object *o;

        if (!j->reason || !openai_finish_reason(j->reason)) {
                if (!j->error.status)
                        api_error_set(&j->error, 500, "server_error", NULL, NULL, "the request failed");
                return ndjson(j, api_error_json(&j->error, true));
        }
        o = base(j, "", 0, true);
        if (o)
                add_done_fields(j, o);
        if (j->lp_streamed < j->lp.n)
                add_logprobs(j, o);
        return ndjson(j, o);
}

json_object *ollama_response(struct job *j)
{
        json_object *o = base(j, j->text.data ? j->text.data : "", j->text.len, true);
        if (o)
                add_done_fields(j, o);
        add_logprobs(j, o);
        return o;
}

/*
 * Nothing to say (an empty prompt, or no messages): Ollama's way to load a
 * model, or with keep_alive 0 to unload it. LoadModel of the name does both
 * for a model of npud's models_dir (keep_alive 0 drops this user's claim on
 * it: it goes once no one else keeps it); a model loaded already is only
 * answered for.
 */
static enum MHD_Result start_load(struct http_req *hr, struct job *j, const struct gen_params *p, bool chat)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        struct api_error e = {};
        int r;

        j->api = JOB_OLLAMA_LOAD;
        j->load_chat = chat;
        j->unload = p->has_keep_alive && p->keep_alive == 0;
        j->stream = false;
        if (job_new_call(j, "LoadModel", &call, &e) < 0)
                goto fail;
        r = sd_bus_message_open_container(call, 'a', "{sv}");
        if (r >= 0 && p->has_keep_alive)
                r = bus_append_entry(call, "keep_alive", 'd', &p->keep_alive);
        if (r >= 0)
                r = sd_bus_message_close_container(call);
        if (job_send(j, call, r, &e) < 0)
                goto fail;
        return MHD_YES;
fail:
        hr->state = HTTP_RESPONDING;
        return api_error_queue(hr->mhd, &e, true);
}

json_object *ollama_load_response(struct job *j)
{
        json_object *o = base(j, "", 0, true);

        if (o)
                json_object_object_add(o, "done_reason", json_object_new_string(j->unload ? "unload" : "load"));
        return o;
}

/* The messages of a templated /api/generate: the system prompt, then the prompt as the user's. */
static int append_generate_messages(sd_bus_message *m, const char *system, const char *prompt)
{
        int r = sd_bus_message_open_container(m, 'a', "(ss)");
        if (r >= 0 && system && *system)
                r = sd_bus_message_append(m, "(ss)", "system", system);
        if (r >= 0)
                r = sd_bus_message_append(m, "(ss)", "user", prompt);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

enum MHD_Result ollama_generate(struct http_req *hr, json_object *body, bool chat)
{
        struct api_error e = {};
        struct gen_params p;
        struct job *j; /* hr's */
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        const char *model = NULL, *prompt = NULL, *system = NULL;
        bool raw = false, stream = true;
        int r;

        j = job_new(hr->gw, hr, chat ? JOB_OLLAMA_CHAT : JOB_OLLAMA_GENERATE);
        if (!j)
                return MHD_NO;
        gen_params_init(&p);
        if (check_unsupported(body, &e) < 0 || parse_options(body, &p, &e) < 0 ||
            parse_logprobs(body, j, &p, &e) < 0 ||
            json_opt_bool(body, "stream", &stream, &e) < 0 || json_opt_bool(body, "raw", &raw, &e) < 0 ||
            json_opt_string(body, "model", &model, &e) < 0 || json_opt_string(body, "prompt", &prompt, &e) < 0 ||
            json_opt_string(body, "system", &system, &e) < 0)
                goto fail;
        if ((r = json_opt_duration(body, "keep_alive", &p.keep_alive, &e)) < 0)
                goto fail;
        p.has_keep_alive = r > 0;
        if (!model || !*model) {
                api_error_invalid(&e, "model", "model is required");
                goto fail;
        }
        j->stream = stream;
        /* Ollama's clients name models NAME:TAG; npud's names have no tags, so ":latest" is the model itself */
        size_t mlen = strlen(model);
        if (mlen > 7 && !strcmp(model + mlen - 7, ":latest"))
                mlen -= 7;
        j->model = strndup(model, mlen);
        if (!j->model)
                return MHD_NO;
        model = j->model;
        json_object *msgs = field(body, "messages");
        if ((!chat && (!prompt || !*prompt)) ||
            (chat && (!msgs || (json_object_is_type(msgs, json_type_array) && json_object_array_length(msgs) == 0))))
                return start_load(hr, j, &p, chat);
        if (job_new_call(j, chat || !raw ? "Chat" : "Generate", &call, &e) < 0)
                goto fail;
        if (chat)
                r = openai_append_messages(call, field(body, "messages"), &e);
        else if (raw)
                r = sd_bus_message_append(call, "v", "s", prompt);
        else
                r = append_generate_messages(call, system, prompt);
        if (r >= 0)
                r = gen_params_append(call, &p);
        if (job_send(j, call, r, &e) < 0)
                goto fail;
        return MHD_YES;
fail:
        hr->state = HTTP_RESPONDING;
        return api_error_queue(hr->mhd, &e, true);
}
