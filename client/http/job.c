/* SPDX-License-Identifier: MIT */
/*
 * A job: one call to npud on behalf of one HTTP request. For a generation
 * (Generate or Chat) the reply names the Request object, the Tokens signals
 * for that path become stream chunks or the collected text, and Finished
 * ends it; a listing (ListModels) ends with its reply.
 *
 * A job is counted: the HTTP request holds it, the bus side holds it while
 * npud works on it, and a stream response holds it while MHD may still read
 * from it. When the client goes (it hung up, or MHD finished the connection)
 * the request at npud is closed at once, which cancels it and returns its KV
 * cache blocks; a request whose path is not yet known is closed as soon as the
 * reply names it.
 */
#include <sys/random.h>

#include "gateway.h"

#define CALL_TIMEOUT_USEC (600ull * 1000000) /* Generate may wait for a model to load */

struct job *job_new(struct gateway *gw, struct http_req *hr, enum job_api api)
{
        static const char *const prefix[] = {
                [JOB_COMPLETIONS] = "cmpl-", [JOB_CHAT] = "chatcmpl-",
                [JOB_OLLAMA_GENERATE] = "", [JOB_OLLAMA_CHAT] = "",
                [JOB_MODELS] = "", [JOB_MODELS_OLLAMA] = "", [JOB_MODEL_ONE] = "",
                [JOB_MODELS_PS] = "", [JOB_OLLAMA_LOAD] = "",
        };
        struct job *j = calloc(1, sizeof(*j));
        uint8_t rnd[12];

        if (!j)
                return NULL;
        j->gw = gw;
        j->hr = hr;
        j->api = api;
        j->refs = 1;
        j->created = now_unix();
        j->t_start_ns = now_ns();
        if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd)) {
                uint64_t n = ++gw->next_id ^ j->t_start_ns;
                memcpy(rnd, &n, sizeof(n));
                memset(rnd + 8, 0, 4);
        }
        size_t o = (size_t)snprintf(j->id, sizeof(j->id), "%s", prefix[api]);
        for (size_t i = 0; i < sizeof(rnd) && o + 2 < sizeof(j->id); i++, o += 2)
                snprintf(j->id + o, 3, "%02x", rnd[i]);
        hr->job = j;
        return j;
}

struct job *job_ref(struct job *j)
{
        j->refs++;
        return j;
}

struct job *job_unref(struct job *j)
{
        if (!j || --j->refs > 0)
                return NULL;
        sd_bus_slot_unref(j->call);
        sd_bus_message_unref(j->reply);
        free(j->model);
        free(j->path);
        free(j->reason);
        free(j->echo_text);
        free(j->ids);
        lp_list_done(&j->lp);
        buf_done(&j->text);
        buf_done(&j->out);
        free(j);
        return NULL;
}

static void jobs_unlink(struct job *j)
{
        if (j->prev)
                j->prev->next = j->next;
        else if (j->gw->jobs == j)
                j->gw->jobs = j->next;
        if (j->next)
                j->next->prev = j->prev;
        j->next = j->prev = NULL;
}

/* Close the Request object at npud, asynchronously (cancels it if it still runs). */
static void close_at_npud(struct job *j)
{
        if (!j->path || !j->gw->bus)
                return;
        (void)sd_bus_call_method_async(j->gw->bus, NULL, NPUD_SERVICE, j->path, NPUD_REQUEST, "Close", NULL, NULL,
                                       NULL);
}

/* The bus side is done with the job: no more signals for it. */
static void job_end_bus(struct job *j)
{
        if (!j->running)
                return;
        j->running = false;
        j->call = sd_bus_slot_unref(j->call);
        jobs_unlink(j);
        gateway_idle_update(j->gw);
        job_unref(j);
}

/* Tell the HTTP side there is something new. */
static void job_notify(struct job *j)
{
        if (j->hr && j->hr->suspended)
                http_req_resume(j->hr);
}

static bool job_is_listing(const struct job *j)
{
        return j->api == JOB_MODELS || j->api == JOB_MODELS_OLLAMA || j->api == JOB_MODEL_ONE ||
               j->api == JOB_MODELS_PS || j->api == JOB_OLLAMA_LOAD;
}

static int stream_tokens(struct job *j, const char *text, size_t len)
{
        if (j->api == JOB_OLLAMA_GENERATE || j->api == JOB_OLLAMA_CHAT)
                return ollama_stream_tokens(j, text, len);
        return openai_stream_tokens(j, text, len);
}

static int stream_end(struct job *j)
{
        if (j->api == JOB_OLLAMA_GENERATE || j->api == JOB_OLLAMA_CHAT)
                return ollama_stream_end(j);
        return openai_stream_end(j);
}

/* The request ended (Finished, a failed call, npud gone): streams get their last chunks. */
static void job_finish(struct job *j)
{
        if (j->finished)
                return;
        j->finished = true;
        if (j->stream && !j->out_done) {
                if (stream_end(j) < 0)
                        j->out_failed = true;
                j->out_done = true;
        }
        job_notify(j);
        job_end_bus(j); /* may drop the last reference: the last use of j */
}

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct job *j = userdata;
        const char *path;
        int r;

        j->call = sd_bus_slot_unref(j->call);
        if (sd_bus_message_is_method_error(m, NULL)) {
                api_error_from_bus(&j->error, sd_bus_message_get_error(m), -sd_bus_message_get_errno(m));
                j->call_failed = true;
                job_finish(j);
                return 0;
        }
        if (job_is_listing(j)) {
                j->reply = sd_bus_message_ref(m);
                job_finish(j);
                return 0;
        }
        r = sd_bus_message_read(m, "o", &path);
        if (r >= 0)
                j->path = strdup(path);
        if (r < 0 || !j->path) {
                api_error_set(&j->error, 500, "server_error", NULL, NULL, "npud's reply could not be read");
                j->call_failed = true;
                job_finish(j);
                return 0;
        }
        if (j->close_wanted) {
                close_at_npud(j);
                job_finish(j);
                return 0;
        }
        /* a stream starts now (its headers go out); a whole response waits for Finished */
        j->accepted = true;
        if (j->stream)
                job_notify(j);
        return 0;
}

int job_start(struct job *j, sd_bus_message *call, struct api_error *e)
{
        int r;

        r = sd_bus_call_async(j->gw->bus, &j->call, call, on_reply, j, CALL_TIMEOUT_USEC);
        if (r < 0) {
                api_error_from_bus(e, NULL, r);
                return r;
        }
        j->running = true;
        job_ref(j);
        j->next = j->gw->jobs;
        if (j->next)
                j->next->prev = j;
        j->gw->jobs = j;
        http_req_wait(j->hr);
        return 0;
}

int job_new_call(struct job *j, const char *method, sd_bus_message **ret, struct api_error *e)
{
        sd_bus *bus = npud_bus(j->gw, e);
        int r;

        if (!bus)
                return -ENOTCONN;
        r = sd_bus_message_new_method_call(bus, ret, NPUD_SERVICE, NPUD_PATH, NPUD_MANAGER, method);
        if (r >= 0)
                r = sd_bus_message_append(*ret, "s", j->model);
        if (r < 0)
                api_error_set(e, 500, "server_error", NULL, NULL, "cannot build the call to npud: %s", strerror(-r));
        return r;
}

int job_send(struct job *j, sd_bus_message *call, int r, struct api_error *e)
{
        if (r < 0) {
                if (!e->status)
                        api_error_set(e, 500, "server_error", NULL, NULL, "cannot build the call to npud: %s",
                                      strerror(-r));
                return r;
        }
        return job_start(j, call, e);
}

void job_detach_http(struct job *j)
{
        if (!j->running || job_is_listing(j))
                return;
        if (j->path) {
                close_at_npud(j);
                job_end_bus(j);
        } else {
                j->close_wanted = true; /* on_reply closes it */
        }
}

/* ---- signals */

static int keep_id(struct job *j, uint32_t id)
{
        if (j->n_ids == j->cap_ids) {
                size_t cap = MAX(j->cap_ids * 2, (size_t)64);
                uint32_t *t = realloc(j->ids, cap * sizeof(*t));
                if (!t)
                        return -ENOMEM;
                j->ids = t;
                j->cap_ids = cap;
        }
        j->ids[j->n_ids++] = id;
        return 0;
}

static int on_tokens(struct job *j, sd_bus_message *m)
{
        size_t start = j->text.len;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "(us)");
        while (r > 0) {
                uint32_t id;
                const char *piece;
                r = sd_bus_message_read(m, "(us)", &id, &piece);
                if (r <= 0)
                        break;
                if (j->n_ids < j->lp.n)
                        j->lp.v[j->n_ids].text_offset = j->text_chars;
                r = keep_id(j, id);
                if (r >= 0)
                        r = buf_append(&j->text, piece, strlen(piece));
                j->text_chars += utf8_chars(piece);
                if (r >= 0)
                        r = 1;
        }
        if (r < 0)
                return r;
        if (j->stream && j->text.len > start) {
                r = stream_tokens(j, j->text.data + start, j->text.len - start);
                if (r < 0)
                        return r;
                job_notify(j);
        }
        return 0;
}

static void read_stat(sd_bus_message *m, struct job *j)
{
        const char *key, *contents;
        char type;

        if (sd_bus_message_enter_container(m, 'a', "{sv}") <= 0)
                return;
        while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
                if (sd_bus_message_read(m, "s", &key) < 0 || sd_bus_message_peek_type(m, &type, &contents) < 0 ||
                    sd_bus_message_enter_container(m, 'v', contents) < 0)
                        return;
                if (strcmp(contents, "u") == 0) {
                        uint32_t u = 0;
                        sd_bus_message_read_basic(m, 'u', &u);
                        if (!strcmp(key, "prompt_tokens"))
                                j->prompt_tokens = u;
                        else if (!strcmp(key, "generated_tokens"))
                                j->generated_tokens = u;
                        else if (!strcmp(key, "cached_prompt_tokens"))
                                j->cached_tokens = u;
                } else if (strcmp(contents, "d") == 0) {
                        double d = 0;
                        sd_bus_message_read_basic(m, 'd', &d);
                        if (!strcmp(key, "prefill_ms"))
                                j->prefill_ms = d;
                        else if (!strcmp(key, "ms_per_token"))
                                j->ms_per_token = d;
                        else if (!strcmp(key, "total_ms"))
                                j->total_ms = d;
                } else if (strcmp(contents, "s") == 0 && !strcmp(key, "message")) {
                        const char *s = NULL;
                        sd_bus_message_read_basic(m, 's', &s);
                        snprintf(j->error.message, sizeof(j->error.message), "%s", s ? s : "");
                } else {
                        sd_bus_message_skip(m, contents);
                }
                if (sd_bus_message_exit_container(m) < 0 || sd_bus_message_exit_container(m) < 0)
                        return;
        }
        sd_bus_message_exit_container(m);
}

/* What an end other than eos/length/stop means for the client. */
static void ended_early(struct job *j)
{
        const char *r = j->reason;
        char message[sizeof(j->error.message)];

        memcpy(message, j->error.message, sizeof(message));
        if (!strcmp(r, "error"))
                api_error_set(&j->error, 500, "server_error", NULL, NULL, "generation failed: %s",
                              message[0] ? message : "(no message)");
        else if (!strcmp(r, "unloaded"))
                api_error_set(&j->error, 503, "server_error", NULL, NULL, "the model was unloaded");
        else if (!strcmp(r, "shutdown"))
                api_error_set(&j->error, 503, "server_error", NULL, NULL, "npud is shutting down");
        else
                api_error_set(&j->error, 500, "server_error", NULL, NULL, "the request ended: %s", r);
}

static int on_finished(struct job *j, sd_bus_message *m)
{
        const char *reason;
        int r;

        r = sd_bus_message_read(m, "s", &reason);
        if (r < 0)
                return r;
        j->reason = strdup(reason);
        if (!j->reason)
                return -ENOMEM;
        j->error.message[0] = 0;
        read_stat(m, j);
        if (!openai_finish_reason(j->reason))
                ended_early(j);
        close_at_npud(j); /* npud keeps finished requests for their properties: we need none */
        job_finish(j);
        return 0;
}

static struct job *job_by_path(struct gateway *gw, const char *path)
{
        for (struct job *j = gw->jobs; j; j = j->next)
                if (j->path && !strcmp(j->path, path))
                        return j;
        return NULL;
}

static int on_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct gateway *gw = userdata;
        struct job *j = job_by_path(gw, sd_bus_message_get_path(m));
        int r = 0;

        if (!j)
                return 0;
        if (sd_bus_message_is_signal(m, NPUD_REQUEST, "Tokens"))
                r = on_tokens(j, m);
        else if (sd_bus_message_is_signal(m, NPUD_REQUEST, "Logprobs"))
                r = j->logprobs ? lp_list_read(&j->lp, m) : 0;
        else if (sd_bus_message_is_signal(m, NPUD_REQUEST, "Finished"))
                r = on_finished(j, m);
        if (r < 0) {
                api_error_set(&j->error, 500, "server_error", NULL, NULL, "cannot read npud's signal: %s",
                              strerror(-r));
                j->reason = j->reason ? j->reason : strdup("error");
                close_at_npud(j);
                job_finish(j);
        }
        return 0;
}

void jobs_fail_all(struct gateway *gw, const struct api_error *e)
{
        while (gw->jobs) {
                struct job *j = gw->jobs;
                j->error = *e;
                if (!j->path)
                        j->call_failed = true;
                else if (!j->reason)
                        j->reason = strdup("error");
                job_finish(j); /* unlinks it */
        }
}

static int on_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct gateway *gw = userdata;
        const char *name, *old_owner, *new_owner;
        struct api_error e;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0)
                return 0;
        if (strcmp(name, NPUD_SERVICE) != 0 || *new_owner)
                return 0;
        api_error_set(&e, 503, "server_error", NULL, NULL, "npud left the bus");
        jobs_fail_all(gw, &e);
        return 0;
}

static int on_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct gateway *gw = userdata;
        struct api_error e;

        fprintf(stderr, "npud-http: the bus connection was lost; the next request connects again\n");
        api_error_set(&e, 503, "server_error", NULL, NULL, "the connection to npud's bus was lost");
        jobs_fail_all(gw, &e);
        npud_disconnect(gw);
        return 0;
}

int jobs_watch(struct gateway *gw)
{
        int r;

        r = sd_bus_match_signal(gw->bus, &gw->signal_match, NPUD_SERVICE, NULL, NPUD_REQUEST, NULL, on_signal, gw);
        if (r >= 0)
                r = sd_bus_match_signal(gw->bus, &gw->owner_match, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                        "org.freedesktop.DBus", "NameOwnerChanged", on_owner_changed, gw);
        if (r >= 0)
                r = sd_bus_match_signal(gw->bus, &gw->local_match, NULL, "/org/freedesktop/DBus/Local",
                                        "org.freedesktop.DBus.Local", "Disconnected", on_disconnected, gw);
        return r;
}

/* ---- the HTTP side */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
        struct job *j = cls;
        struct http_req *hr = j->hr;

        if (!hr || hr->gone)
                return MHD_CONTENT_READER_END_WITH_ERROR;
        if (j->out.len) {
                size_t n = MIN(max, j->out.len);
                memcpy(buf, j->out.data, n);
                buf_consume(&j->out, n);
                return (ssize_t)n;
        }
        if (j->out_done)
                return j->out_failed ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
        /* nothing yet: wait for the next signal */
        hr->suspended = true;
        MHD_suspend_connection(hr->mhd);
        return 0;
}

static void stream_free(void *cls)
{
        job_unref(cls);
}

static enum MHD_Result respond_stream(struct job *j, struct MHD_Connection *c)
{
        bool ollama = j->api == JOB_OLLAMA_GENERATE || j->api == JOB_OLLAMA_CHAT;
        struct MHD_Response *resp;
        enum MHD_Result ret;

        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, job_ref(j),
                                                 stream_free);
        if (!resp) {
                job_unref(j);
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                ollama ? "application/x-ndjson" : "text/event-stream; charset=utf-8");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        j->hr->state = HTTP_RESPONDING;
        ret = http_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        return ret;
}

static json_object *listing_response(struct job *j, struct api_error *e);

enum MHD_Result job_respond(struct job *j, struct MHD_Connection *c)
{
        bool ollama = j->api == JOB_OLLAMA_GENERATE || j->api == JOB_OLLAMA_CHAT || j->api == JOB_MODELS_OLLAMA ||
                      j->api == JOB_MODELS_PS || j->api == JOB_OLLAMA_LOAD;
        _cleanup_(json_object_putp) json_object *o = NULL;

        if (j->call_failed || (j->finished && j->error.status && !j->stream)) {
                j->hr->state = HTTP_RESPONDING;
                return api_error_queue(c, &j->error, ollama);
        }
        if (j->stream && j->accepted)
                return respond_stream(j, c);
        if (!j->finished) {
                /* woken early: wait on */
                http_req_wait(j->hr);
                return MHD_YES;
        }
        if (job_is_listing(j)) {
                struct api_error e = {};
                o = listing_response(j, &e);
                if (e.status) {
                        j->hr->state = HTTP_RESPONDING;
                        return api_error_queue(c, &e, ollama);
                }
        } else {
                o = ollama ? ollama_response(j) : openai_response(j);
        }
        j->hr->state = HTTP_RESPONDING;
        return json_queue(c, 200, o);
}

static json_object *listing_response(struct job *j, struct api_error *e)
{
        if (j->api == JOB_OLLAMA_LOAD)
                return ollama_load_response(j);
        return models_response(j, e);
}
