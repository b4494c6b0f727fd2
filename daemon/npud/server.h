/* SPDX-License-Identifier: MIT */
/*
 * npud's state. The ownership tree:
 *
 *   server ─┬─ models ── scheduler, sessions ── requests
 *           ├─ devices
 *           └─ clients, users (an index of who owns which session and request)
 *
 * Calls go down the tree; the scheduler's events come up through one small
 * interface (struct sched_events, bound by the model).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bus.h"
#include "client.h"
#include "config.h"
#include "devices.h"
#include "served_model.h"
#include "request.h"
#include "scheduler.h"
#include "session.h"

struct step_runner;
struct worker;
struct bus_changes;
struct demand_load;
struct model_loading;
struct auth_query;

struct server {
        sd_event *event;
        sd_bus *bus;
        struct npud_config cfg;
        char *config_path;
        struct served_model *models;
        struct served_model *default_model;
        struct served_device *devices;
        struct client *clients;
        struct user *users;
        uint64_t next_id; /* of requests and sessions */
        struct step_runner *runner;
        struct worker *tokenizer; /* prompts, off the event loop */
        struct worker *loader;    /* models, off the event loop */
        struct auth_query *auth_queries; /* questions to polkit in flight, and answers not yet used */
        bool reloading;
        sd_bus_message *reload_call; /* a Reload waiting for its model to load */
        struct served_model *stepping; /* the model whose step runs */
        struct served_model *last_stepped;
        struct backend_stats step_stats; /* the stepping model's device counters before its step */
        bool step_on_npu;
        bool shutting_down;
        uid_t uid;
        uint64_t t_start;
        /* generated tokens per second over the last 10 s */
        uint64_t rate_at[10];
        uint64_t rate_tokens[10];
        sd_event_source *status_timer;
        sd_event_source *extend_timer; /* EXTEND_TIMEOUT_USEC while the default model loads at start */
        sd_event_source *kick_source; /* starts the next step when the loop is idle */
        struct bus_changes *changes;  /* PropertiesChanged and the object manager's signals */
        sd_event_source *expiry_timer; /* the next model whose keep-alive runs out (keep_alive.c) */
        struct demand_load *demand_loads; /* models of models_dir loading for the calls that named them */
        struct model_loading *loadings;   /* models loading, on the bus meanwhile */
        sd_bus_message *redispatching;    /* a call run again now that its model is loaded */
};

int server_new(struct server **ret);
void server_free(struct server *srv);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct server *, server_free);
int server_open_bus(struct server *srv, const char *bus);
/* Signals, watchdog, the default model (loaded off the loop), then the bus name and READY=1. */
int server_start(struct server *srv);
/* Something changed that may let a step run: one is tried when the loop is idle. */
void server_kick(struct server *srv);
void server_shutdown(struct server *srv);
/*
 * Reads the configuration again and loads its model if it changed; call
 * (Manager.Reload; NULL for SIGHUP) is answered when that is done.
 * RELOADING=1, then READY=1. Returns 1 (or < 0).
 */
int server_reload(struct server *srv, sd_bus_message *call);
uint64_t server_next_id(struct server *srv);
uint64_t server_generated_total(const struct server *srv);
double server_tokens_per_s(struct server *srv);
/* Closes everything a connection owns (it left the bus), then forgets it. */
void server_client_left(struct server *srv, struct client *c);

/*
 * May the caller of m do action (an org.npud.Inference1.manage-* action)?
 * 1: yes; < 0: no (error set); 0: polkit was asked, and handler(m, userdata)
 * runs again when it answers (the handler returns 1 now, without a reply;
 * m is then read from its start).
 */
int authorize(struct server *srv, sd_bus_message *m, const char *action, sd_bus_message_handler_t handler,
              void *userdata, sd_bus_error *error);
void authorize_free_all(struct server *srv);
#define ACTION_MANAGE_MODELS "org.npud.Inference1.manage-models"
#define ACTION_MANAGE_DEVICES "org.npud.Inference1.manage-devices"
