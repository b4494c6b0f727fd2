/* SPDX-License-Identifier: MIT */
#include "prefix_cache.h"

struct cache_entry {
        uint64_t key;        /* hash of the salt and every token up to this block's end */
        uint32_t salt;       /* whose block it is */
        uint32_t generation; /* of the slot: bumped each time it is taken */
        int32_t block;       /* -1: the slot is free */
        int32_t next;        /* in the bucket chain or the free list */
        int32_t parent;      /* the entry of the block before, -1 for the first */
        uint32_t parent_generation;
        uint64_t last_used;
        int32_t tokens[];    /* this block's tokens */
};

/* A link in a chain of entries: the slot and its generation when it was matched. */
struct entry_ref {
        int32_t index;
        uint32_t generation;
};

struct prefix_cache {
        struct kv_pool *pool;
        int32_t block_size;
        int32_t capacity;
        int32_t n_entries;
        int32_t n_buckets;
        int32_t *buckets;
        int32_t free_head;
        uint64_t clock;
        size_t entry_size;
        uint8_t *entries;
        bool weak_hash;
};

static struct cache_entry *entry_at(const struct prefix_cache *pc, int32_t i)
{
        return (struct cache_entry *)(pc->entries + (size_t)i * pc->entry_size);
}

int prefix_cache_new(struct kv_pool *pool, int32_t max_entries, struct prefix_cache **ret)
{
        _cleanup_(prefix_cache_freep) struct prefix_cache *pc = calloc(1, sizeof(*pc));

        if (!pc)
                return -ENOMEM;
        if (max_entries < 1)
                return -EINVAL;
        pc->pool = pool;
        pc->block_size = pool->block_size;
        pc->capacity = max_entries;
        pc->n_buckets = 1;
        while (pc->n_buckets < max_entries)
                pc->n_buckets *= 2;
        pc->entry_size = ALIGN_TO(sizeof(struct cache_entry) + sizeof(int32_t) * pc->block_size, 8);
        pc->buckets = malloc(sizeof(int32_t) * pc->n_buckets);
        pc->entries = calloc(max_entries, pc->entry_size);
        if (!pc->buckets || !pc->entries)
                return -ENOMEM;
        for (int32_t i = 0; i < pc->n_buckets; i++)
                pc->buckets[i] = -1;
        for (int32_t i = 0; i < max_entries; i++) {
                entry_at(pc, i)->block = -1;
                entry_at(pc, i)->next = i + 1 < max_entries ? i + 1 : -1;
        }
        pc->free_head = 0;
        *ret = TAKE_PTR(pc);
        return 0;
}

void prefix_cache_free(struct prefix_cache *pc)
{
        if (!pc)
                return;
        for (int32_t i = 0; pc->entries && i < pc->capacity; i++)
                if (entry_at(pc, i)->block >= 0)
                        kv_block_unref(pc->pool, entry_at(pc, i)->block);
        free(pc->buckets);
        free(pc->entries);
        free(pc);
}

void prefix_cache_weaken_hash(struct prefix_cache *pc)
{
        pc->weak_hash = true;
}

static uint64_t salt_key(uint32_t salt)
{
        return fnv1a64(&salt, sizeof(salt));
}

static uint64_t chain_key(const struct prefix_cache *pc, uint64_t parent, const int32_t *tokens, int32_t n)
{
        uint64_t h = fnv1a64(tokens, sizeof(int32_t) * n);

        if (pc->weak_hash)
                return h;
        return (parent ^ (h + 0x9e3779b97f4a7c15ull + (parent << 6) + (parent >> 2))) * 1099511628211ull;
}

static int32_t *bucket_of(struct prefix_cache *pc, uint64_t key)
{
        return &pc->buckets[key & (pc->n_buckets - 1)];
}

/*
 * The entry for the block of tokens that follows parent (index -1: the first
 * block) under salt. A hash hit counts only if the salt, the parent link and
 * the block's own tokens all match: by induction the whole prefix does.
 */
static int32_t lookup(struct prefix_cache *pc, uint64_t key, uint32_t salt, struct entry_ref parent,
                      const int32_t *tokens)
{
        for (int32_t i = *bucket_of(pc, key); i >= 0; i = entry_at(pc, i)->next) {
                struct cache_entry *e = entry_at(pc, i);
                if (e->key == key && e->salt == salt && e->parent == parent.index &&
                    (parent.index < 0 || e->parent_generation == parent.generation) &&
                    memcmp(e->tokens, tokens, sizeof(int32_t) * pc->block_size) == 0)
                        return i;
        }
        return -1;
}

int32_t prefix_cache_attach(struct prefix_cache *pc, uint32_t salt, const int32_t *tokens, int32_t max_pos,
                            struct kv_seq *seq)
{
        struct entry_ref parent = { -1, 0 };
        uint64_t key = salt_key(salt);
        int32_t n = 0;

        if (seq->n_blocks != 0)
                return 0;
        while (n + pc->block_size <= max_pos) {
                key = chain_key(pc, key, tokens + n, pc->block_size);
                int32_t i = lookup(pc, key, salt, parent, tokens + n);
                if (i < 0)
                        break;
                struct cache_entry *e = entry_at(pc, i);
                if (kv_seq_append_block(pc->pool, seq, e->block) < 0)
                        break;
                e->last_used = ++pc->clock;
                parent = (struct entry_ref) { i, e->generation };
                n += pc->block_size;
        }
        return n;
}

/*
 * Removes an entry, and the entries below it: with their parent gone no
 * lookup reaches them, and their references would only keep blocks (and
 * duplicate entries of the same block) alive.
 */
static void unlink_entry(struct prefix_cache *pc, int32_t idx)
{
        struct cache_entry *e = entry_at(pc, idx);
        int32_t *p = bucket_of(pc, e->key);
        uint32_t generation = e->generation;

        while (*p != idx)
                p = &entry_at(pc, *p)->next;
        *p = e->next;
        kv_block_unref(pc->pool, e->block);
        e->block = -1;
        e->next = pc->free_head;
        pc->free_head = idx;
        pc->n_entries--;
        for (int32_t i = 0; i < pc->capacity; i++) {
                const struct cache_entry *c = entry_at(pc, i);
                if (c->block >= 0 && c->parent == idx && c->parent_generation == generation)
                        unlink_entry(pc, i);
        }
}

/* The least recently used entry whose block nobody else holds, or -1. */
static int32_t lru_idle_entry(const struct prefix_cache *pc)
{
        int32_t best = -1;
        uint64_t best_used = UINT64_MAX;

        for (int32_t i = 0; i < pc->capacity; i++) {
                const struct cache_entry *e = entry_at(pc, i);
                if (e->block >= 0 && pc->pool->refcount[e->block] == 1 && e->last_used < best_used) {
                        best = i;
                        best_used = e->last_used;
                }
        }
        return best;
}

void prefix_cache_insert(struct prefix_cache *pc, uint32_t salt, const int32_t *tokens, int32_t n_pos,
                         const struct kv_seq *seq)
{
        struct entry_ref parent = { -1, 0 };
        uint64_t key = salt_key(salt);

        for (int32_t b = 0; (b + 1) * pc->block_size <= n_pos && b < seq->n_blocks; b++) {
                const int32_t *t = tokens + b * pc->block_size;
                key = chain_key(pc, key, t, pc->block_size);
                int32_t idx = lookup(pc, key, salt, parent, t);
                struct cache_entry *e;
                if (idx >= 0) {
                        e = entry_at(pc, idx);
                        e->last_used = ++pc->clock;
                        parent = (struct entry_ref) { idx, e->generation };
                        continue;
                }
                if (pc->free_head < 0) {
                        int32_t victim = lru_idle_entry(pc);
                        if (victim < 0)
                                return;
                        unlink_entry(pc, victim);
                        /* the victim may have been above this chain (an idle block of the same tokens): it ends */
                        if (parent.index >= 0 && (entry_at(pc, parent.index)->block < 0 ||
                                                  entry_at(pc, parent.index)->generation != parent.generation))
                                return;
                }
                idx = pc->free_head;
                e = entry_at(pc, idx);
                pc->free_head = e->next;
                e->key = key;
                e->salt = salt;
                e->generation++;
                e->parent = parent.index;
                e->parent_generation = parent.generation;
                e->block = seq->blocks[b];
                e->last_used = ++pc->clock;
                memcpy(e->tokens, t, sizeof(int32_t) * pc->block_size);
                kv_block_ref(pc->pool, e->block);
                e->next = *bucket_of(pc, key);
                *bucket_of(pc, key) = idx;
                pc->n_entries++;
                parent = (struct entry_ref) { idx, e->generation };
        }
}

int32_t prefix_cache_evict(struct prefix_cache *pc, int32_t n)
{
        int32_t before = pc->pool->n_free;

        while (pc->pool->n_free - before < n) {
                int32_t victim = lru_idle_entry(pc);
                if (victim < 0)
                        break;
                unlink_entry(pc, victim);
        }
        return pc->pool->n_free - before;
}

int32_t prefix_cache_idle_blocks(const struct prefix_cache *pc)
{
        int32_t n = 0;

        for (int32_t i = 0; i < pc->capacity; i++) {
                const struct cache_entry *e = entry_at(pc, i);
                if (e->block >= 0 && pc->pool->refcount[e->block] == 1)
                        n++;
        }
        return n;
}

int32_t prefix_cache_idle_blocks_of(const struct prefix_cache *pc, uint32_t salt)
{
        int32_t n = 0;

        for (int32_t i = 0; i < pc->capacity; i++) {
                const struct cache_entry *e = entry_at(pc, i);
                if (e->block >= 0 && e->salt == salt && pc->pool->refcount[e->block] == 1)
                        n++;
        }
        return n;
}

void prefix_cache_count_refs(const struct prefix_cache *pc, int32_t *counts)
{
        for (int32_t i = 0; i < pc->capacity; i++)
                if (entry_at(pc, i)->block >= 0)
                        counts[entry_at(pc, i)->block]++;
}

int32_t prefix_cache_entries(const struct prefix_cache *pc)
{
        return pc->n_entries;
}
