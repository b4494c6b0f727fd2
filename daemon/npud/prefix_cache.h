/* SPDX-License-Identifier: MIT */
/*
 * Automatic prefix caching: full KV blocks of prompts, so a request whose
 * prompt starts like an earlier one shares those blocks (refcounted) instead
 * of computing them again. The cache holds a reference on each block; blocks
 * that only the cache holds are free memory in waiting, evicted least
 * recently used first.
 *
 * Isolation. Every entry carries a salt (npud passes the caller's uid), and a
 * block is shared only with a request of the same salt: one user's prompts
 * never show in another's cache hits, timings or counters. A block is shared
 * only when the whole prefix matches, not its hash: each entry keeps its own
 * tokens and a link to the entry of the block before it (checked with that
 * slot's generation, so a reused slot never matches), and a lookup follows
 * the chain from the first block.
 */
#pragma once

#include <stdint.h>

#include "kv_cache.h"

struct prefix_cache;

int prefix_cache_new(struct kv_pool *pool, int32_t max_entries, struct prefix_cache **ret);
void prefix_cache_free(struct prefix_cache *pc);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct prefix_cache *, prefix_cache_free);

/*
 * Appends to the empty sequence seq the blocks cached under salt that hold
 * tokens[0..k) for the largest k <= max_pos; returns k (a multiple of the
 * block size).
 */
int32_t prefix_cache_attach(struct prefix_cache *pc, uint32_t salt, const int32_t *tokens, int32_t max_pos,
                            struct kv_seq *seq);
/* Records, under salt, seq's full blocks that hold tokens[0..n_pos). */
void prefix_cache_insert(struct prefix_cache *pc, uint32_t salt, const int32_t *tokens, int32_t n_pos,
                         const struct kv_seq *seq);
/* Returns up to n blocks that only the cache holds to the pool; the number returned. */
int32_t prefix_cache_evict(struct prefix_cache *pc, int32_t n);
/* Blocks that only the cache holds: all of them, or those of one salt. */
int32_t prefix_cache_idle_blocks(const struct prefix_cache *pc);
int32_t prefix_cache_idle_blocks_of(const struct prefix_cache *pc, uint32_t salt);
int32_t prefix_cache_entries(const struct prefix_cache *pc);

/* For tests: adds one to counts[b] for every block b the cache holds. */
void prefix_cache_count_refs(const struct prefix_cache *pc, int32_t *counts);
/* For tests: a block's key hashes only its own tokens, so different prefixes collide on purpose. */
void prefix_cache_weaken_hash(struct prefix_cache *pc);
