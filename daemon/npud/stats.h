/* SPDX-License-Identifier: MIT */
/*
 * The counters a caller may see (GetStats, the Manager's properties,
 * ListModels). An administrator (root or npud's own user) sees the whole
 * server; anyone else sees the service's capacity and only what its own uid
 * holds and did: its requests, sessions, KV blocks, prefix cache hits and
 * tokens. Nothing of another uid's work shows, not even as a total.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

struct server;
struct served_model;

struct stats_view {
        bool all; /* the whole server */
        uid_t uid;
};

struct npud_stats {
        uint64_t kv_blocks_total, kv_blocks_used, kv_blocks_cached;
        uint64_t kv_bytes_total, kv_bytes_used;
        uint32_t kv_block_tokens;
        uint32_t active, queued, sessions, clients;
        uint64_t prompt_tokens, cached_prompt_tokens, generated_tokens;
        uint64_t steps;          /* whole server only */
        uint64_t preemptions, recomputed_tokens; /* whole server only */
        double tokens_per_s;     /* whole server only */
};

/* Who asks: the view of the caller of m. */
int stats_view_of(struct server *srv, sd_bus_message *m, struct stats_view *ret);
void stats_collect(struct server *srv, const struct stats_view *v, struct npud_stats *ret);
/* Unfinished requests and sessions of a model that the view may count. */
uint32_t stats_model_users(const struct served_model *m, const struct stats_view *v);
