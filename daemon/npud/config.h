/* SPDX-License-Identifier: MIT */
/* /etc/npud/npud.conf: INI, one section [npud]. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "kv_cache.h"
#include "util.h"

#define NPUD_CONFIG_PATH "/etc/npud/npud.conf"
#define NPUD_MODELS_DIR "/var/lib/npud/models"

struct npud_config {
        char *model;      /* the default model, loaded at start */
        char *backend;    /* "cpu" or "npu" (read at start only) */
        char *device;     /* npu: the accel node to open; NULL: the first one of npu.ko */
        char *bus;        /* "system", "session" or an address */
        int threads;      /* 0: every core */
        int32_t n_ctx;    /* 0: the model's, at most 4096 */
        uint32_t kv_budget_mb;
        enum kv_type kv_type;
        bool flash_attention;
        int32_t max_active;
        int32_t max_batch_tokens;
        int32_t prefill_chunk;
        /* per connection */
        int32_t max_requests_per_client;
        int32_t max_queued_tokens_per_client;
        int32_t max_sessions_per_client;
        int32_t max_finished_kept; /* finished requests kept per client for their properties */
        int32_t max_unread_tokens_per_client; /* sent, not yet read: past it the client's requests wait */
        /* per uid (all its connections) */
        int32_t max_requests_per_uid;
        int32_t max_sessions_per_uid;
        int32_t max_active_per_uid; /* running at once in one model; 0: its fair share only */
        int32_t kv_percent_per_uid; /* of one model's KV pool */
        /* per model */
        int32_t max_queue;
        /* models loaded on demand (keep_alive.h) */
        char *models_dir;          /* where requests may name models; "": nowhere */
        int32_t idle_unload_sec;   /* the keep-alive of requests that give none; 0: for ever */
        int32_t max_loaded_models; /* loading on demand first unloads an idle one beyond this */
};

void config_defaults(struct npud_config *c);
void config_done(struct npud_config *c);
/* Reads path over the values in c; -ENOENT when missing (c unchanged), -EINVAL with a message on bad content. */
int config_load(struct npud_config *c, const char *path, struct npu_err *err);
int config_validate(const struct npud_config *c, struct npu_err *err);
