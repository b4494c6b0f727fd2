/* SPDX-License-Identifier: MIT */
/*
 * npud-http: an OpenAI-compatible HTTP gateway in front of npud, run as the
 * user and speaking to npud over D-Bus as that user. One thread: sd-event
 * drives the bus connection and libmicrohttpd's epoll descriptor alike.
 * Functions return 0 or a negative errno unless they say otherwise.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bus_client.h"
#include "utf8.h"
#include "util.h"

#define NPUD_SERVICE "org.npud.Inference1"
#define NPUD_PATH "/org/npud/Inference1"
#define NPUD_MANAGER NPUD_SERVICE ".Manager"
#define NPUD_REQUEST NPUD_SERVICE ".Request"
#define NPUD_ERROR NPUD_SERVICE ".Error."

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);

struct gateway;
struct listener;
struct job;

/* ---- buf.c: a growable byte buffer */
struct buf {
        char *data;
        size_t len, cap;
};
int buf_append(struct buf *b, const void *p, size_t n);
int buf_appendf(struct buf *b, const char *fmt, ...) _printf_(2, 3);
void buf_done(struct buf *b);
/* Drop the first n bytes. */
void buf_consume(struct buf *b, size_t n);

/* ---- the gateway and its settings (main.c) */
struct gateway_config {
        const char *bus;          /* "system", "session" or a D-Bus address */
        const char *key_path;     /* NULL: $XDG_CONFIG_HOME/npud/http.key */
        uint64_t max_body;        /* bytes of a request body */
        unsigned request_timeout; /* seconds for a client to send its request */
        unsigned idle_timeout;    /* seconds without connections before exiting; 0: never */
        unsigned max_connections;
};

struct gateway {
        struct gateway_config cfg;
        sd_event *event;
        sd_bus *bus;              /* NULL while npud's bus cannot be reached */
        sd_bus_slot *signal_match, *owner_match, *local_match;
        struct listener **listeners;
        size_t n_listeners;
        char *key;                /* the bearer key TCP clients must send; NULL: none loaded */
        struct job *jobs;         /* jobs waiting for or streaming from npud */
        unsigned n_connections;
        sd_event_source *idle_timer;
        uint64_t next_id;
};

/* ---- auth.c: the bearer key of TCP listeners */
/* Read the key, creating it (random, mode 0600) when the file does not exist. */
int key_load_or_create(const char *path, char **ret);
/* The key's default path: $XDG_CONFIG_HOME/npud/http.key or ~/.config/npud/http.key. */
int key_default_path(char **ret);
/* Whether an Authorization header value carries key (constant time in the key). */
bool key_matches(const char *key, const char *authorization);

/* ---- listen.c: the listening sockets */
struct listen_spec {
        bool tcp;
        char *unix_path; /* unix: the path, created by us (removed at exit) */
        int fd;
};
/* --listen VALUE: 127.0.0.1:PORT, [::1]:PORT, localhost:PORT or unix:PATH; opens it. */
int listen_open(const char *value, struct listen_spec *ret);
/* The default: $XDG_RUNTIME_DIR/npud/http.sock (directory 0700, socket 0600). */
int listen_open_default(struct listen_spec *ret);
/* Takes an inherited (socket-activated) descriptor; refuses TCP that is not loopback. */
int listen_adopt(int fd, struct listen_spec *ret);

/* ---- httpd.c: libmicrohttpd on sd-event */
struct listener {
        struct gateway *gw;
        struct MHD_Daemon *mhd;
        int fd;
        bool tcp;           /* requests need the bearer key */
        char *unix_path;    /* unlinked when we stop */
        sd_event_source *io, *timer, *defer;
};

/* Per connection (MHD's socket context): the request deadline and the hang-up watch. */
struct conn {
        struct listener *l;
        struct MHD_Connection *mhd;
        int fd;
        sd_event_source *deadline; /* the request must be in before it fires */
        sd_event_source *hup;      /* peer gone, while a job runs */
        struct http_req *req;      /* the request in progress, if any */
};

int listener_start(struct gateway *gw, struct listen_spec *spec, struct listener **ret);
struct listener *listener_free(struct listener *l);
/* Process what MHD has to do soon (after a resume). */
void listener_kick(struct listener *l);
/* The request is in: no more deadline for it. */
void conn_request_complete(struct conn *c);
/* MHD_queue_response, with the Keep-Alive header that tells when the connection will be closed idle. */
enum MHD_Result http_queue_response(struct MHD_Connection *mc, unsigned status, struct MHD_Response *resp);
/* A request ended: the next one on a kept-alive connection gets a new deadline. */
void conn_request_done(struct conn *c);
/* Arm or stop the idle exit, after connections or jobs came or went. */
void gateway_idle_update(struct gateway *gw);
/* Watch the socket for the peer hanging up while the connection is suspended. */
int conn_watch_hangup(struct conn *c);

/* ---- route.c: one HTTP request from the first header to the response */
enum http_state {
        HTTP_RECEIVING,  /* headers in, body arriving */
        HTTP_WAITING,    /* suspended until the job has the response or the stream starts */
        HTTP_RESPONDING, /* a response is queued */
};

struct http_req {
        struct gateway *gw;
        struct conn *conn;
        struct MHD_Connection *mhd;
        char *method, *url;
        struct buf body;
        bool too_large;
        enum http_state state;
        bool suspended;
        bool gone;          /* the client hung up */
        struct job *job;
};

enum MHD_Result route_access(void *cls, struct MHD_Connection *connection, const char *url, const char *method,
                             const char *version, const char *upload_data, size_t *upload_data_size,
                             void **req_cls);
void route_completed(void *cls, struct MHD_Connection *connection, void **req_cls,
                     enum MHD_RequestTerminationCode toe);
/* Suspend hr until its job has news, watching for the client hanging up. */
void http_req_wait(struct http_req *hr);
/* Resume a suspended request (its job has news). */
void http_req_resume(struct http_req *hr);

/* ---- errors.c: OpenAI's error objects and the HTTP status of every failure */
struct api_error {
        unsigned status;     /* 0: no error */
        const char *type;    /* "invalid_request_error", "server_error", ... */
        const char *code;    /* NULL: null */
        const char *param;   /* NULL: null */
        char message[512];
        unsigned retry_after; /* seconds; 0: no Retry-After header */
};
void api_error_set(struct api_error *e, unsigned status, const char *type, const char *code, const char *param,
                   const char *fmt, ...) _printf_(6, 7);
#define api_error_invalid(e, param, ...) \
        api_error_set(e, 400, "invalid_request_error", NULL, param, __VA_ARGS__)
/* The failure of a D-Bus call to npud, as HTTP sees it. */
void api_error_from_bus(struct api_error *e, const sd_bus_error *be, int r);
/* {"error": {...}} in OpenAI's shape, or {"error": "message"} in Ollama's. */
json_object *api_error_json(const struct api_error *e, bool ollama);
/* Queue e as the response. */
enum MHD_Result api_error_queue(struct MHD_Connection *c, const struct api_error *e, bool ollama);
/* Queue a JSON body with a status. */
enum MHD_Result json_queue(struct MHD_Connection *c, unsigned status, json_object *o);

/* ---- npud.c: the bus connection to npud */
int npud_connect(struct gateway *gw);
/* The bus, connected again if it was lost; NULL with e set (503) if it cannot be. */
sd_bus *npud_bus(struct gateway *gw, struct api_error *e);
void npud_disconnect(struct gateway *gw);
/* A Manager call without arguments, synchronously (ListModels); e set on failure. */
int npud_call_sync(struct gateway *gw, const char *member, sd_bus_message **reply, struct api_error *e);

/* ---- logprobs.c: npud's Logprobs signals, kept and written as OpenAI and Ollama do */
#define LP_MAX_TOP 20
struct lp_token {
        uint32_t id;
        double logprob;
        uint8_t *bytes; /* NUL-terminated for convenience; may hold NULs */
        size_t n_bytes;
};
struct lp_entry {
        struct lp_token tok;
        struct lp_token *top; /* the most likely tokens, most likely first */
        size_t n_top;
        size_t text_offset;   /* characters of the completion before its piece */
};
struct lp_list {
        struct lp_entry *v;
        size_t n, cap;
};
/* Appends the entries of a(uayda(uayd)). */
int lp_list_read(struct lp_list *l, sd_bus_message *m);
void lp_list_done(struct lp_list *l);
/* Entries [from, to) as OpenAI's chat logprobs.content (and Ollama's logprobs). */
json_object *lp_content_json(const struct lp_list *l, size_t from, size_t to);
/* Entries [from, to) as OpenAI's legacy completions logprobs; offset_base: characters before the completion. */
json_object *lp_completion_json(const struct lp_list *l, size_t from, size_t to, size_t offset_base);

/* ---- job.c: one generation, from the D-Bus call to the HTTP response */
enum job_api {
        JOB_COMPLETIONS,      /* POST /v1/completions */
        JOB_CHAT,             /* POST /v1/chat/completions */
        JOB_OLLAMA_GENERATE,  /* POST /api/generate */
        JOB_OLLAMA_CHAT,      /* POST /api/chat */
        JOB_MODELS,           /* GET /v1/models */
        JOB_MODELS_OLLAMA,    /* GET /api/tags */
        JOB_MODEL_ONE,        /* GET /v1/models/NAME */
        JOB_MODELS_PS,        /* GET /api/ps */
        JOB_OLLAMA_LOAD,      /* /api/generate or /api/chat with nothing to say: LoadModel of the name */
};

struct job {
        struct gateway *gw;
        struct job *next, *prev; /* in gw->jobs while npud works on it */
        unsigned refs;           /* the HTTP request, the bus side, the stream response */
        struct http_req *hr;     /* NULL once the HTTP side is gone */
        enum job_api api;
        bool stream, include_usage, echo;
        bool load_chat, unload;  /* JOB_OLLAMA_LOAD: for /api/chat; keep_alive 0 */
        char *model;
        char id[48];
        int64_t created;
        uint64_t t_start_ns;
        char *echo_text;         /* echo: the prompt, sent before the completion */
        /* the bus side */
        sd_bus_slot *call;
        char *path;
        bool running;            /* in gw->jobs: the call is out or the request runs */
        bool close_wanted;       /* the HTTP side is gone: Close as soon as the path is known */
        bool accepted;           /* npud took the request (its path is known) */
        bool call_failed;        /* the call itself failed: error says how */
        bool finished;           /* Finished arrived, or the call failed */
        bool sent_first;         /* the stream's first chunk (role) went out */
        sd_bus_message *reply;   /* a listing's reply */
        char *reason;
        uint32_t prompt_tokens, generated_tokens, cached_tokens;
        double prefill_ms, ms_per_token, total_ms;
        struct api_error error;  /* the call failed, or the request ended in error */
        /* the output */
        struct buf text;         /* the whole completion (non-streaming) */
        uint32_t *ids;
        size_t n_ids, cap_ids;
        size_t text_chars;       /* characters in text */
        bool logprobs;           /* the client asked for them */
        struct lp_list lp;       /* per token of text, from npud's Logprobs signals */
        size_t lp_streamed;      /* entries already in stream chunks */
        struct buf out;          /* stream bytes not yet taken by MHD */
        bool out_done;           /* nothing will be added to out */
        bool out_failed;         /* the stream's end could not be written: cut it */
};

struct job *job_new(struct gateway *gw, struct http_req *hr, enum job_api api);
struct job *job_ref(struct job *j);
struct job *job_unref(struct job *j);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct job *, job_unref);
/* Send the call (Generate or Chat, built by the caller) and wait for npud. */
int job_start(struct job *j, sd_bus_message *call, struct api_error *e);
/* A call to npud's Manager.method with the job's model as its first argument; the caller appends the rest. */
int job_new_call(struct job *j, const char *method, sd_bus_message **ret, struct api_error *e);
/* Sends the call the caller built (r: how appending its arguments went) as the job's request; e set on failure. */
int job_send(struct job *j, sd_bus_message *call, int r, struct api_error *e);
/* The HTTP side is gone (completed, or the client hung up): cancel at npud if still running. */
void job_detach_http(struct job *j);
/* Route npud's Request signals and its leaving the bus to the jobs. */
int jobs_watch(struct gateway *gw);
void jobs_fail_all(struct gateway *gw, const struct api_error *e);
/* The response for a job whose HTTP request was resumed; queued on c. */
enum MHD_Result job_respond(struct job *j, struct MHD_Connection *c);

/* ---- openai.c: /v1/completions and /v1/chat/completions */
enum MHD_Result openai_completions(struct http_req *hr, json_object *body, bool chat);
/* messages [{role, content}] as npud's a(ss); developer is system. */
int openai_append_messages(sd_bus_message *m, json_object *msgs, struct api_error *e);
/* The pieces of a stream and of a whole response. */
int openai_stream_tokens(struct job *j, const char *text, size_t len);
int openai_stream_end(struct job *j);
json_object *openai_response(struct job *j);
/* finish_reason of npud's stop reason; NULL when the request failed. */
const char *openai_finish_reason(const char *reason);

/* ---- ollama.c: /api/generate, /api/chat, /api/tags */
enum MHD_Result ollama_generate(struct http_req *hr, json_object *body, bool chat);
int ollama_stream_tokens(struct job *j, const char *text, size_t len);
int ollama_stream_end(struct job *j);
json_object *ollama_response(struct job *j);
/* The answer to a load (or unload) once LoadModel replied. */
json_object *ollama_load_response(struct job *j);

/* ---- models.c: GET /v1/models, /v1/models/NAME, /api/tags */
enum MHD_Result models_list(struct http_req *hr, const char *one, bool ollama);
/* GET /api/ps: the loaded models with their size and when they will be unloaded. */
enum MHD_Result models_ps(struct http_req *hr);
/* The listing from the job's ListModels reply; e set (404) when the one model asked for is not there. */
json_object *models_response(struct job *j, struct api_error *e);

/* ---- request parsing shared by the APIs (params.c) */
/* The sampling options of a request, as npud takes them. */
struct gen_params {
        bool has_max_tokens, has_temperature, has_top_p, has_top_k, has_seed, has_min_p;
        bool has_presence, has_frequency, has_repeat;
        int64_t max_tokens, top_k;
        double temperature, top_p, min_p, presence_penalty, frequency_penalty, repeat_penalty;
        uint64_t seed;
        const char *stop[8];
        size_t n_stop;
        int logprobs; /* -1: none; else top-N per token */
        bool ignore_eos;
        bool has_keep_alive;
        double keep_alive; /* seconds; negative: for ever */
};
void gen_params_init(struct gen_params *p);
/* Append p as npud's options a{sv}. */
int gen_params_append(sd_bus_message *m, const struct gen_params *p);
/* Typed getters: absent (and JSON null) leaves *ret alone and returns 0; 1 when set; e set on a wrong type. */
int json_opt_int(json_object *o, const char *key, int64_t min, int64_t max, int64_t *ret, struct api_error *e);
int json_opt_double(json_object *o, const char *key, double min, double max, double *ret, struct api_error *e);
int json_opt_bool(json_object *o, const char *key, bool *ret, struct api_error *e);
int json_opt_string(json_object *o, const char *key, const char **ret, struct api_error *e);
/* stop: a string or an array of at most max strings. */
/* min_p, repeat_penalty, presence_penalty, frequency_penalty and seed, as both APIs name them. */
int json_opt_sampler_extras(json_object *o, struct gen_params *p, struct api_error *e);
int json_opt_stop(json_object *o, const char *key, size_t max, struct gen_params *p, struct api_error *e);
/*
 * Ollama's keep_alive: a number of seconds, or a duration string as Go writes
 * them ("5m", "1h30m", "300ms", "0"); negative: for ever. 1 when set.
 */
int json_opt_duration(json_object *o, const char *key, double *ret, struct api_error *e);
/* A string that can go on the bus: valid UTF-8 without NUL. */
int json_check_text(json_object *v, const char *param, struct api_error *e);

/* Seconds since the epoch. */
int64_t now_unix(void);
