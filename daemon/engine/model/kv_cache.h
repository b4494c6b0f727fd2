/* SPDX-License-Identifier: MIT */
/*
 * Paged KV cache: a pool of fixed-size blocks under a memory budget. A
 * sequence holds a table of block ids; block b holds, for every layer, the
 * K and V vectors of block_size consecutive positions (where: struct
 * kv_pool). Blocks are refcounted so sequences that share a prompt prefix
 * can share its blocks.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "model.h"

/*
 * Element types. KV_TYPE_Q8: int8, symmetric, one f32 scale per position
 * and head (the device's QUANT_I8 rule, npu_ref_quant_i8, over each head's
 * head_dim values); half the bytes of f16 (and 4 / head_dim more for the
 * scales). The attention kernels read it directly (attn_*_q8).
 */
enum kv_type {
        KV_TYPE_F32 = 0,
        KV_TYPE_F16 = 1,
        KV_TYPE_Q8 = 2,
};

const char *kv_type_name(enum kv_type t);
int kv_type_from_string(const char *s, enum kv_type *ret);

/*
 * The pool is laid out by layer: [layer][K, V][block] segments of a
 * block's block_size rows of kv_dim elements (seg_bytes each), then, for
 * KV_TYPE_Q8, [layer][K, V][block] segments of their scales
 * ([position][n_kv_heads] floats, scale_seg_bytes each). So a sequence
 * whose blocks were handed out in order has each layer's K (and V) rows
 * in one run, which the attention walks stream in address order. Laid
 * out by block ([block][layer][K, V]), a layer's rows were runs of one
 * block, 4 MiB apart at Llama-7B's shape (attn-bench -n 4000, 6 rounds
 * alternated on Zen 5: q8 medians 28.7-32.9 ms against 33.7-39.0, f16
 * 68.7-76.9 against 76.0-82.8). block_bytes is what one block takes in
 * all of them.
 */
struct kv_pool {
        enum kv_type type;
        int32_t block_size;
        int32_t n_layers;
        int32_t kv_dim;
        int32_t n_kv_heads;
        int32_t n_blocks;
        size_t elem_bytes;
        size_t seg_bytes;       /* one block's rows of one layer's K or V */
        size_t scale_seg_bytes; /* one block's scales of one layer's K or V (KV_TYPE_Q8; else 0) */
        size_t scales_off;      /* where the scale segments begin, after every row segment */
        size_t mem_bytes;       /* the whole pool */
        size_t block_bytes;
        uint8_t *mem;
        int32_t *refcount;
        int32_t *free_list;
        int32_t n_free;
};

struct kv_seq {
        int32_t *blocks;
        int32_t n_blocks;
        int32_t cap_blocks;
        int32_t n_pos; /* positions whose K/V are stored */
};

/* Bytes of one block: K and V of block_size positions in every layer. */
size_t kv_block_bytes(const struct npu_hparams *hp, enum kv_type type, int32_t block_size);
int kv_pool_new(const struct npu_hparams *hp, enum kv_type type, int32_t block_size, size_t budget_bytes,
                struct kv_pool **ret, struct npu_err *err);
void kv_pool_free(struct kv_pool *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct kv_pool *, kv_pool_free);
int32_t kv_pool_used_blocks(const struct kv_pool *p);

/* Make room for positions [0, n_pos); -ENOSPC when the pool is out of blocks (nothing changes then). */
int kv_seq_reserve(struct kv_pool *p, struct kv_seq *s, int32_t n_pos);
/* Keep positions [0, n_pos), returning the blocks past them to the pool. */
void kv_seq_truncate(struct kv_pool *p, struct kv_seq *s, int32_t n_pos);
void kv_seq_release(struct kv_pool *p, struct kv_seq *s);
/* dst shares src's first n_pos positions (whole blocks shared, a partial last block copied). */
int kv_seq_fork(struct kv_pool *p, struct kv_seq *dst, const struct kv_seq *src, int32_t n_pos);

/* Which segment (of rows, or of scales) holds block b of K or V of a layer: kv = layer * 2 + (0 for K, 1 for V). */
static inline size_t kv_seg_index(const struct kv_pool *p, int32_t kv, int32_t b)
{
        return (size_t)kv * p->n_blocks + b;
}

/* Address of K (which = 0) or V (which = 1) at a position of a layer. */
static inline void *kv_at(const struct kv_pool *p, const struct kv_seq *s, int32_t layer, int which, int32_t pos)
{
        const size_t seg = kv_seg_index(p, layer * 2 + which, s->blocks[pos / p->block_size]);

        return p->mem + seg * p->seg_bytes + (size_t)(pos % p->block_size) * p->kv_dim * p->elem_bytes;
}

/* KV_TYPE_Q8: the n_kv_heads scales of K (which = 0) or V (which = 1) at a position of a layer. */
static inline float *kv_scale_at(const struct kv_pool *p, const struct kv_seq *s, int32_t layer, int which,
                                 int32_t pos)
{
        const size_t seg = kv_seg_index(p, layer * 2 + which, s->blocks[pos / p->block_size]);

        return (float *)(p->mem + p->scales_off + seg * p->scale_seg_bytes) +
               (size_t)(pos % p->block_size) * p->n_kv_heads;
}

/* Block src of the pool's memory at src_mem into block dst of dst_mem (the same pool's layout), every layer. */
void kv_block_copy(const struct kv_pool *p, uint8_t *dst_mem, int32_t dst, const uint8_t *src_mem, int32_t src);

/* Block references for the prefix cache: a shared block is never written again. */
void kv_block_ref(struct kv_pool *p, int32_t b);
void kv_block_unref(struct kv_pool *p, int32_t b);
/* Appends a full block (shared) to a sequence whose positions end on a block boundary. */
int kv_seq_append_block(struct kv_pool *p, struct kv_seq *s, int32_t b);
