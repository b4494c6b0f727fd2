/* SPDX-License-Identifier: MIT */
/*
 * A served model: its runtime (weights, KV pool, threads), its scheduler and
 * its sessions (every request belongs to one). The server owns the models.
 * The scheduler's events (tokens, finished, reclaim) reach the requests and
 * sessions only through the model: events go one way, from the scheduler up.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

#include "keep_alive.h"
#include "scheduler.h"

struct server;
struct served_device;
struct session;

struct served_model {
        struct served_model *next;
        struct server *srv;
        int n_refs; /* the server's list, and jobs that read its vocabulary */
        char *name;
        char *path;
        dev_t dev;
        ino_t ino;
        struct runtime *rt;
        struct scheduler *sched;
        struct session *sessions_head, *sessions_tail;
        struct served_device *device; /* where its passes run; NULL: the cpu */
        struct backend_stats at_attach; /* the runtime's device counters when it joined device */
        sd_bus_message *unload_call;    /* an UnloadModel waiting for the running step to end */
        bool unload_force;
        size_t max_token_bytes;         /* the longest text one token stands for */
        struct model_keep keep;         /* when it was loaded and used; who keeps it loaded */
};

struct served_model *model_ref(struct served_model *m);
/* The last reference frees the runtime (after the model left the server). */
void model_unref(struct served_model *m);

struct npud_config;
/* The scheduler's limits from the configuration. */
void model_limits(const struct npud_config *cfg, struct sched_limits *ret);
/* After a reload: the configuration's limits to every model (those that need a new model stay). */
void models_apply_limits(struct server *srv);
/* After a load, on the event loop: the model (loaded, or shared if it was already), or r < 0 and err. */
typedef void (*models_loaded_fn)(struct server *srv, struct served_model *m, int r, const struct npu_err *err,
                                 void *userdata);
/*
 * Loads the model at path on the loader worker (off the event loop) and
 * serves it; then() follows on the event loop (at once when the file is
 * loaded already). < 0 with err set: refused before any work.
 */
int models_load(struct server *srv, const char *path, const char *name, bool make_default, models_loaded_fn then,
                void *userdata, struct npu_err *err);
struct served_model *models_find(struct server *srv, const char *name);
/* 1 to 128 of A-Z a-z 0-9 . _ - */
bool model_name_valid(const char *name);
/* Parameters of its weights. */
uint64_t model_n_params(const struct served_model *m);
/* Unfinished requests and sessions on the bus: what keeps a model from being unloaded without force. */
uint32_t model_users(const struct served_model *m);
/*
 * -EBUSY while it has users and !force; -EAGAIN while it steps; else its
 * work is cancelled (its owners hear "unloaded") and it is freed.
 */
int model_unload(struct served_model *m, bool force, struct npu_err *err);
/* Between steps: the unloads that waited for one to end, answered. */
void models_run_pending(struct server *srv);
void models_free_all(struct server *srv);

void model_add_session(struct served_model *m, struct session *s);
void model_remove_session(struct served_model *m, struct session *s);
