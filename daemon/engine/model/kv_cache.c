/* SPDX-License-Identifier: MIT */
#include <sys/mman.h>

#include "kv_cache.h"

const char *kv_type_name(enum kv_type t)
{
        switch (t) {
        case KV_TYPE_F32: return "f32";
        case KV_TYPE_F16: return "f16";
        case KV_TYPE_Q8: return "q8";
        }
        return "unknown";
}

int kv_type_from_string(const char *s, enum kv_type *ret)
{
        for (int t = KV_TYPE_F32; t <= KV_TYPE_Q8; t++)
                if (strcmp(s, kv_type_name(t)) == 0) {
                        *ret = t;
                        return 0;
                }
        return -EINVAL;
}

static size_t kv_elem_bytes(enum kv_type type)
{
        return type == KV_TYPE_F32 ? 4 : type == KV_TYPE_F16 ? 2 : 1;
}

/* One block's rows in one layer's K or V, on a cache line. */
static size_t kv_seg_bytes(const struct npu_hparams *hp, enum kv_type type, int32_t block_size)
{
        return ALIGN_TO((size_t)block_size * hp->n_kv_heads * hp->head_dim * kv_elem_bytes(type), 64);
}

/* KV_TYPE_Q8: one block's scales in one layer's K or V, on a cache line (0 for the other types). */
static size_t kv_scale_seg_bytes(const struct npu_hparams *hp, enum kv_type type, int32_t block_size)
{
        return type == KV_TYPE_Q8 ? ALIGN_TO((size_t)block_size * hp->n_kv_heads * sizeof(float), 64) : 0;
}

size_t kv_block_bytes(const struct npu_hparams *hp, enum kv_type type, int32_t block_size)
{
        const size_t seg = kv_seg_bytes(hp, type, block_size), scale_seg = kv_scale_seg_bytes(hp, type, block_size);

        return (size_t)hp->n_layers * 2 * (seg + scale_seg);
}

int kv_pool_new(const struct npu_hparams *hp, enum kv_type type, int32_t block_size, size_t budget_bytes,
                struct kv_pool **ret, struct npu_err *err)
{
        _cleanup_(kv_pool_freep) struct kv_pool *p = calloc(1, sizeof(*p));
        size_t n;

        if (!p)
                return -ENOMEM;
        if (block_size <= 0 || block_size > 4096)
                return npu_err_set(err, -EINVAL, "KV block size %d out of range", block_size);
        p->type = type;
        p->block_size = block_size;
        p->n_layers = hp->n_layers;
        if (type < KV_TYPE_F32 || type > KV_TYPE_Q8)
                return npu_err_set(err, -EINVAL, "KV element type %d unknown", type);
        p->kv_dim = hp->n_kv_heads * hp->head_dim;
        p->n_kv_heads = hp->n_kv_heads;
        p->elem_bytes = kv_elem_bytes(type);
        p->seg_bytes = kv_seg_bytes(hp, type, block_size);
        p->scale_seg_bytes = kv_scale_seg_bytes(hp, type, block_size);
        p->block_bytes = kv_block_bytes(hp, type, block_size);
        n = budget_bytes / p->block_bytes;
        if (n == 0)
                return npu_err_set(err, -EINVAL, "KV budget of %zu bytes holds no block of %zu bytes", budget_bytes,
                                   p->block_bytes);
        if (n > INT32_MAX / 2)
                n = INT32_MAX / 2;
        p->n_blocks = (int32_t)n;
        /* the scale segments from a multiple of their size, so that none straddles one (backend_npu's BOs) */
        p->scales_off = (size_t)p->n_layers * 2 * n * p->seg_bytes;
        if (p->scale_seg_bytes)
                p->scales_off = ALIGN_TO(p->scales_off, p->scale_seg_bytes);
        p->mem_bytes = p->scales_off + (size_t)p->n_layers * 2 * n * p->scale_seg_bytes;
        /* anonymous mapping: pages are touched only when blocks are used */
        p->mem = mmap(NULL, p->mem_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p->mem == MAP_FAILED) {
                p->mem = NULL;
                return npu_err_set(err, -ENOMEM, "cannot map a KV pool of %zu bytes", p->mem_bytes);
        }
        (void)madvise(p->mem, p->mem_bytes, MADV_HUGEPAGE);
        p->refcount = calloc(n, sizeof(*p->refcount));
        p->free_list = malloc(n * sizeof(*p->free_list));
        if (!p->refcount || !p->free_list)
                return -ENOMEM;
        /* hand out low block ids first */
        for (int32_t i = 0; i < p->n_blocks; i++)
                p->free_list[i] = p->n_blocks - 1 - i;
        p->n_free = p->n_blocks;
        *ret = TAKE_PTR(p);
        return 0;
}

void kv_pool_free(struct kv_pool *p)
{
        if (!p)
                return;
        if (p->mem)
                munmap(p->mem, p->mem_bytes);
        free(p->refcount);
        free(p->free_list);
        free(p);
}

int32_t kv_pool_used_blocks(const struct kv_pool *p)
{
        return p->n_blocks - p->n_free;
}

static void block_put(struct kv_pool *p, int32_t b)
{
        if (--p->refcount[b] == 0)
                p->free_list[p->n_free++] = b;
}

int kv_seq_reserve(struct kv_pool *p, struct kv_seq *s, int32_t n_pos)
{
        int32_t need = DIV_ROUND_UP(n_pos, p->block_size);

        if (need <= s->n_blocks)
                return 0;
        if (need - s->n_blocks > p->n_free)
                return -ENOSPC;
        if (need > s->cap_blocks) {
                int32_t cap = MAX(need, s->cap_blocks * 2);
                int32_t *t = realloc(s->blocks, cap * sizeof(*t));
                if (!t)
                        return -ENOMEM;
                s->blocks = t;
                s->cap_blocks = cap;
        }
        while (s->n_blocks < need) {
                int32_t b = p->free_list[--p->n_free];
                p->refcount[b] = 1;
                s->blocks[s->n_blocks++] = b;
        }
        return 0;
}

void kv_seq_truncate(struct kv_pool *p, struct kv_seq *s, int32_t n_pos)
{
        int32_t keep = DIV_ROUND_UP(n_pos, p->block_size);
        while (s->n_blocks > keep)
                block_put(p, s->blocks[--s->n_blocks]);
        s->n_pos = MIN(s->n_pos, n_pos);
}

void kv_seq_release(struct kv_pool *p, struct kv_seq *s)
{
        kv_seq_truncate(p, s, 0);
        free(s->blocks);
        *s = (struct kv_seq) {};
}

void kv_block_copy(const struct kv_pool *p, uint8_t *dst_mem, int32_t dst, const uint8_t *src_mem, int32_t src)
{
        for (int32_t kv = 0; kv < p->n_layers * 2; kv++) {
                const size_t d = kv_seg_index(p, kv, dst), s = kv_seg_index(p, kv, src);
                memcpy(dst_mem + d * p->seg_bytes, src_mem + s * p->seg_bytes, p->seg_bytes);
                if (p->scale_seg_bytes)
                        memcpy(dst_mem + p->scales_off + d * p->scale_seg_bytes,
                               src_mem + p->scales_off + s * p->scale_seg_bytes, p->scale_seg_bytes);
        }
}

int kv_seq_fork(struct kv_pool *p, struct kv_seq *dst, const struct kv_seq *src, int32_t n_pos)
{
        int32_t full = n_pos / p->block_size, partial = n_pos % p->block_size;
        int r;

        if (dst->n_blocks)
                return -EBUSY;
        if (n_pos > src->n_pos)
                return -EINVAL;
        r = kv_seq_reserve(p, dst, 0);
        dst->cap_blocks = MAX(full + 1, 4);
        dst->blocks = malloc(dst->cap_blocks * sizeof(int32_t));
        if (r < 0 || !dst->blocks)
                return -ENOMEM;
        for (int32_t i = 0; i < full; i++) {
                dst->blocks[i] = src->blocks[i];
                p->refcount[src->blocks[i]]++;
        }
        dst->n_blocks = full;
        if (partial) {
                r = kv_seq_reserve(p, dst, n_pos);
                if (r < 0) {
                        kv_seq_release(p, dst);
                        return r;
                }
                kv_block_copy(p, p->mem, dst->blocks[full], p->mem, src->blocks[full]);
        }
        dst->n_pos = n_pos;
        return 0;
}

void kv_block_ref(struct kv_pool *p, int32_t b)
{
        p->refcount[b]++;
}

void kv_block_unref(struct kv_pool *p, int32_t b)
{
        block_put(p, b);
}

int kv_seq_append_block(struct kv_pool *p, struct kv_seq *s, int32_t b)
{
        if (s->n_pos != s->n_blocks * p->block_size || b < 0 || b >= p->n_blocks || p->refcount[b] <= 0)
                return -EINVAL;
        if (s->n_blocks == s->cap_blocks) {
                int32_t cap = MAX(4, s->cap_blocks * 2);
                int32_t *t = realloc(s->blocks, cap * sizeof(*t));
                if (!t)
                        return -ENOMEM;
                s->blocks = t;
                s->cap_blocks = cap;
        }
        s->blocks[s->n_blocks++] = b;
        p->refcount[b]++;
        s->n_pos += p->block_size;
        return 0;
}
