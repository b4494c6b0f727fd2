/* SPDX-License-Identifier: MIT */
/* npuctl: what the client's parts share. Functions return 0 or a negative errno. */
#pragma once

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bus_client.h"
#include "utf8.h"
#include "util.h"

#define NPUD_SERVICE "org.npud.Inference1"
#define NPUD_PATH "/org/npud/Inference1"
#define NPUD_MANAGER NPUD_SERVICE ".Manager"
#define NPUD_REQUEST NPUD_SERVICE ".Request"
#define NPUD_SESSION NPUD_SERVICE ".Session"
#define NPUD_ERROR NPUD_SERVICE ".Error."

/*
 * Exit codes scripts can rely on (npuctl --help and the README list them).
 * Inside, errors travel as negative errno values and exit_status() maps them:
 * -EINVAL is a usage error and nothing else, so bus-level failures are turned
 * into other codes by bus_log_error() before they travel.
 */
enum {
        EXIT_DAEMON_ERROR = 1, /* the daemon returned an error, or a local failure */
        EXIT_USAGE = 2,
        EXIT_NO_DAEMON = 3,    /* cannot connect to the bus, or npud is not on it */
        EXIT_DENIED = 4,       /* AccessDenied */
        EXIT_BUSY = 5,         /* Busy or LimitExceeded */
        EXIT_INTERRUPTED = 130 /* SIGINT: the request was cancelled */
};

struct npuctl {
        const char *bus; /* "system", "session" or a D-Bus address */
};

/* ---- parse.c: command-line values, checked in full */
int log_usage(const char *fmt, ...) _printf_(1, 2);
int parse_u32(const char *s, uint32_t min, uint32_t max, const char *what, uint32_t *ret);
int parse_u64(const char *s, const char *what, uint64_t *ret);
int parse_double(const char *s, double min, double max, bool min_open, const char *what, double *ret);
int parse_u32_list(const char *s, uint32_t min, uint32_t max, const char *what, uint32_t *ret, size_t max_n,
                   size_t *ret_n);
/* A duration in seconds: a number, or with a unit s, m, h or d (10m, 1.5h); negative: for ever (-1). */
int parse_duration(const char *s, const char *what, double *ret);
/* The prompt from the arguments (joined by spaces), or from stdin when absent or "-". */
int read_prompt(int argc, char **argv, char **ret, size_t *ret_len);

/* ---- options.c: what a request asks for, as D-Bus arguments */
#define GEN_MAX_STOP 8
struct gen_options {
        uint32_t max_tokens; /* 0: the daemon's default */
        bool has_top_k;
        uint32_t top_k;
        double temperature, top_p, repeat_penalty; /* NAN: the daemon's default */
        double min_p, presence_penalty, frequency_penalty; /* NAN: the daemon's default (off) */
        double keep_alive; /* seconds, negative for ever; NAN: the daemon's default */
        bool has_seed;
        uint64_t seed;
        const char *stop[GEN_MAX_STOP];
        size_t n_stop;
        const char *precision;
        bool ignore_eos;
        int add_bos; /* -1: the daemon's default */
};

enum {
        ARG_MAX_TOKENS = 0x200,
        ARG_TEMP,
        ARG_TOP_K,
        ARG_TOP_P,
        ARG_REPEAT_PENALTY,
        ARG_SEED,
        ARG_STOP,
        ARG_PRECISION,
        ARG_IGNORE_EOS,
        ARG_NO_BOS,
        ARG_MIN_P,
        ARG_PRESENCE_PENALTY,
        ARG_FREQUENCY_PENALTY,
        ARG_KEEP_ALIVE,
        ARG_GEN_LAST
};

/* getopt_long entries of the sampling options, for every command that takes them. */
#define GEN_OPTIONS_LONGOPTS                                                     \
        { "max-tokens", required_argument, NULL, ARG_MAX_TOKENS },               \
        { "temp", required_argument, NULL, ARG_TEMP },                           \
        { "temperature", required_argument, NULL, ARG_TEMP },                    \
        { "top-k", required_argument, NULL, ARG_TOP_K },                         \
        { "top-p", required_argument, NULL, ARG_TOP_P },                         \
        { "repeat-penalty", required_argument, NULL, ARG_REPEAT_PENALTY },       \
        { "seed", required_argument, NULL, ARG_SEED },                           \
        { "stop", required_argument, NULL, ARG_STOP },                           \
        { "precision", required_argument, NULL, ARG_PRECISION },                 \
        { "ignore-eos", no_argument, NULL, ARG_IGNORE_EOS },                     \
        { "no-bos", no_argument, NULL, ARG_NO_BOS },                             \
        { "min-p", required_argument, NULL, ARG_MIN_P },                         \
        { "presence-penalty", required_argument, NULL, ARG_PRESENCE_PENALTY },   \
        { "frequency-penalty", required_argument, NULL, ARG_FREQUENCY_PENALTY }, \
        { "keep-alive", required_argument, NULL, ARG_KEEP_ALIVE }

#define GEN_OPTIONS_HELP                                                                          \
        "  -n, --max-tokens N      tokens to generate (the daemon's default: 256)\n"              \
        "      --temp T            temperature 0..100, 0 is greedy (default 0.8)\n"               \
        "      --top-k K           0 is off (default 40)\n"                                       \
        "      --top-p P           in (0, 1], 1 is off (default 0.95)\n"                          \
        "      --repeat-penalty R  in (0, 100], 1 is off (default 1)\n"                           \
        "      --min-p P           keep tokens at least P times as likely as the best (0..1, 0 is off)\n" \
        "      --presence-penalty P    -2..2: subtracted once from the logit of each recent token\n" \
        "      --frequency-penalty F   -2..2: subtracted per occurrence of each recent token\n"      \
        "      --keep-alive D      keep the model loaded D after the request (300, 10m, 2h; -1: for\n"  \
        "                          ever; 0: unload when idle); default: the daemon's idle_unload_sec\n" \
        "      --seed S            generator seed (default: random)\n"                            \
        "      --stop STR          stop before STR (repeatable, up to 8)\n"                       \
        "      --precision P       auto, or the model's precision (float, w8a8, w8a16)\n"        \
        "      --ignore-eos        go on past the end-of-text token (for benchmarks)\n"          \
        "      --no-bos            do not begin the prompt with the beginning-of-text token\n"

void gen_options_init(struct gen_options *o);
/* 1 if opt is a sampling option (parsed into o), 0 if not, or a negative errno. */
int gen_options_parse(struct gen_options *o, int opt, const char *arg);
/* Append o as a{sv}; extra_key/extra_value (may be NULL) adds one string entry. */
int gen_options_append(sd_bus_message *m, const struct gen_options *o, const char *extra_key,
                       const char *extra_value);

struct prompt {
        const char *text; /* UTF-8 text ("s"), or bytes ("ay") when it is not valid UTF-8 */
        size_t len;
        const int32_t *ids; /* token ids ("ai"), used when not NULL */
        size_t n_ids;
};
int prompt_append(sd_bus_message *m, const struct prompt *p);

/* ---- bus.c: connecting, calling, and mapping errors */
const char *bus_default(void);
int bus_open(const char *spec, sd_bus **ret);
/* bus_open, and the bus attached to the thread's default event loop. */
int bus_open_on_event(const char *spec, sd_bus **ret_bus, sd_event **ret_event);
/* Print "npuctl: NAME: message" and return the errno that exit_status() maps to its exit code. */
int bus_log_error(const sd_bus_error *e, int r);
int bus_log_parse_error(int r);
int bus_log_create_error(int r);
int exit_status(int r);
/* A Manager method call with a timeout (0: the default); on error logs it and returns bus_log_error(). */
int bus_call(sd_bus *bus, sd_bus_message *m, uint64_t timeout_usec, sd_bus_message **reply);
int bus_new_manager_call(sd_bus *bus, const char *member, sd_bus_message **ret);
/* Call a method without arguments on path; errors are logged. */
int bus_call_simple(sd_bus *bus, const char *path, const char *interface, const char *member);
/* SIGINT and SIGTERM blocked and delivered through e; handler gets the signal's number. */
int bus_event_signals(sd_event *e, sd_event_signal_handler_t handler, void *userdata, sd_event_source **ret_int,
                      sd_event_source **ret_term);

/* ---- json.c: D-Bus values as JSON */
DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);
/* Read the next complete value of m, whatever its type, as JSON. */
int json_from_bus(sd_bus_message *m, json_object **ret);
double json_get_double(json_object *o, const char *key, double dflt);
uint64_t json_get_u64(json_object *o, const char *key, uint64_t dflt);
const char *json_get_string(json_object *o, const char *key, const char *dflt);
bool json_get_bool(json_object *o, const char *key, bool dflt);
void json_print(json_object *o);

/* ---- request.c: one generation streamed through Tokens and Finished */
struct request;
struct request_ops {
        /* the method's reply: req->path is set, or req->error */
        void (*started)(struct request *req, void *userdata);
        /* one signal's worth of tokens */
        void (*tokens)(struct request *req, const uint32_t *ids, const char *const *pieces, size_t n,
                       void *userdata);
        /* Finished arrived, or the call failed, or the daemon left the bus */
        void (*finished)(struct request *req, void *userdata);
};

struct request {
        sd_bus *bus;
        sd_bus_slot *match, *owner_match, *call, *cancel_call;
        const struct request_ops *ops;
        void *userdata;
        char *path;
        int error;                /* < 0 when the call failed or the daemon vanished */
        sd_bus_error call_error;  /* the daemon's error, when it gave one */
        bool finished, cancel_wanted, cancel_sent;
        char *reason;             /* the Finished signal's reason */
        json_object *stats;       /* and its stats */
        uint64_t t_send, t_reply, t_first, t_end; /* CLOCK_MONOTONIC ns */
        bool keep;                /* collect ids and text below */
        uint32_t *ids;
        size_t n_ids, cap_ids;
        char *text;
        size_t text_len, text_cap;
};

int request_new(sd_bus *bus, const struct request_ops *ops, void *userdata, bool keep, struct request **ret);
struct request *request_free(struct request *req);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct request *, request_free);
/* Match the Request signals (and the daemon leaving); must run before the call. */
int request_watch(struct request *req);
/* Send a call that returns the request's path (Generate, Session.Send); asynchronous. */
int request_send(struct request *req, sd_bus_message *call);
/* Cancel (asynchronous; at once, or as soon as the path is known). */
void request_cancel(struct request *req);
/* Close the request object (synchronous; failures are ignored: the daemon drops it with us). */
void request_close(struct request *req);
/* "prompt: ... generation: ..." lines, as npu-run prints them. */
void request_print_timings(const struct request *req, FILE *f);
int generate_call_new(sd_bus *bus, const char *model, const struct prompt *p, const struct gen_options *o,
                      sd_bus_message **ret);

/* ---- the commands */
int verb_generate(const struct npuctl *c, int argc, char **argv);
int verb_chat(const struct npuctl *c, int argc, char **argv);
int verb_models(const struct npuctl *c, int argc, char **argv);
int verb_load(const struct npuctl *c, int argc, char **argv);
int verb_ps(const struct npuctl *c, int argc, char **argv);
int verb_unload(const struct npuctl *c, int argc, char **argv);
int verb_devices(const struct npuctl *c, int argc, char **argv);
int verb_status(const struct npuctl *c, int argc, char **argv);
int verb_bench(const struct npuctl *c, int argc, char **argv);
