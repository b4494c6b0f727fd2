/* SPDX-License-Identifier: MIT */
/*
 * How long a model stays loaded, with Ollama's semantics: a model loaded on
 * demand (a request named it and it is in the administrator's models_dir)
 * stays while it has requests or sessions, then for the keep_alive of the
 * last request (idle_unload_sec of npud.conf when the request gives none;
 * negative: for ever; 0: it goes as soon as it is idle). Each uid's last
 * request sets that uid's claim; the model goes when every claim has run
 * out, so one user's keep_alive of 0 never unloads a model another user
 * asked to keep. A model the administrator loaded (npud.conf's model, or
 * LoadModel of a path without keep_alive) is pinned: only UnloadModel
 * unloads it.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>
#include <time.h>

#include "model_loading.h"

struct keep_claim {
        uid_t uid;
        uint64_t until; /* CLOCK_MONOTONIC usec; UINT64_MAX: for ever */
};

struct model_keep {
        struct model_object obj; /* the Model object's userdata (model_loading.h) */
        uint64_t file_bytes; /* of its file, read at load */
        uint64_t loaded_at; /* CLOCK_REALTIME usec */
        uint64_t loaded_at_mono; /* CLOCK_MONOTONIC usec, the same moment */
        uint64_t last_used; /* CLOCK_REALTIME usec: a request of it started or ended */
        bool pinned;
        unsigned held; /* the calls that waited for it run: it stays meanwhile */
        struct keep_claim *claims;
        size_t n_claims;
};

static inline uint64_t realtime_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline uint64_t monotonic_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#define KEEP_ALIVE_DEFAULT INT64_MIN /* a request gave none: npud.conf's idle_unload_sec */
#define KEEP_ALIVE_FOREVER (-1)
#define KEEP_ALIVE_MAX_SEC (10 * 366 * 86400.0)

struct server;
struct served_model;

void model_keep_done(struct model_keep *k);
/* A request of m starts: it is in use now. */
void keep_alive_used(struct served_model *m);
/* A request of uid ended: uid's claim on m runs keep_alive_us from now (KEEP_ALIVE_DEFAULT, _FOREVER). */
void keep_alive_request_ended(struct served_model *m, uid_t uid, int64_t keep_alive_us);
/* When m goes if nothing uses it: CLOCK_REALTIME usec; 0: not while it is busy, pinned or kept for ever. */
uint64_t keep_alive_expires_at(const struct served_model *m);
/* After anything happened: unloads the models whose time is up, and arms the timer for the next. */
void keep_alive_update(struct server *srv);
/*
 * The model a Manager method call names: 1 with *ret when it is loaded. 0
 * when it is being loaded from models_dir (NAME.gguf), off the event loop,
 * for this call: the call's method runs again when it is loaded (or is
 * answered with the error), so the method returns 1. Loading first unloads
 * the least recently used idle model beyond max_loaded_models. < 0 with
 * error set: no such model, or no room.
 */
int models_get_or_load(struct server *srv, sd_bus_message *call, const char *name, struct served_model **ret,
                       sd_bus_error *error);
/* Calls waiting for loads get ShuttingDown. */
void demand_loads_free_all(struct server *srv);
