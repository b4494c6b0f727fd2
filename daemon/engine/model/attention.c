/* SPDX-License-Identifier: MIT */
/*
 * Causal grouped-query attention over the paged KV cache.
 *
 * The default path splits the work over (token, head) pairs and computes
 * every score of a row, then softmax, then the weighted sum of V; a thread
 * walks up to 16 of its heads together, so it reads 16 heads' worth of each
 * cache row at once (a whole 4 KiB page at Llama-7B's shape) instead of
 * one head's 256 bytes, a page and a TLB miss apart.
 *
 * ATTENTION_F16_OPERANDS (--attention-f16-operands) is the default path
 * computing over an f16 cache as llama.cpp's does (ggml's f16 dot products
 * take both operands in f16): the query is rounded to f16 before the
 * scores, the softmax weights before the sum of V. Less exact, but on the
 * same quantized file it makes the two agree as closely as two builds of
 * llama.cpp do (top-1 99.5 % instead of 98.9 % on the widened small model
 * in Q8_0): the activations of block-quantized matrices are rounded to
 * integers, so small differences upstream flip roundings and grow.
 *
 * The flash path (--flash-attention-plus) cuts each token's positions into
 * fixed chunks of FLASH_CHUNK. A chunk gives, for every head, its own max m,
 * sum l of exp(score - m) and unnormalized output o; a token's chunks are
 * then folded in order (flash_merge) and divided by the sum. A chunk is
 * computed for all heads at once, walking the cache rows in address order,
 * so K and V stream from memory (one head's slice of a row is 256 bytes,
 * rows 8 KiB apart at Llama-7B's shape: walked per head, every row is a
 * fresh page and a DRAM miss). The work items are the (token, chunk) pairs,
 * so a single decoding token at a long context keeps every thread busy
 * (flash-decoding). Chunk boundaries and the fold order depend on nothing
 * but the token's position: results are the same bits whatever the thread
 * count and whatever else is in the batch.
 *
 * Over the q8 cache, the default path's tokens at more than
 * ATTENTION_Q8_FLASH_MIN_POSITIONS positions take the flash path too (takes_flash):
 * walked per head, the int8 rows are only half a page apart and a core
 * cannot keep the stream going, where the flash walk reads them in address
 * order, every thread on its own chunks. Which path a token takes depends
 * on its position alone, so a token has the same bits alone or in any batch,
 * as a prompt's token or as a decoding one.
 */
#include <math.h>
#include <stdatomic.h>

#include "forward.h"
#include "kernels.h"

/*
 * positions per chunk of the flash path: part of its arithmetic, not a
 * tuning knob per run. 256 rather than 64: a quarter of the partials and
 * folds (attn-bench -n 4000 -k q8 with K and V skipped: 3.3-4.4 -> 1.7 ms
 * a step), still 16 items for the threads at 4000 positions.
 */
#define FLASH_CHUNK 256

/* per context: attention's buffers (attention_scratch_new) */
struct attn_scratch {
        /* the flash path's */
        int64_t round_items; /* (token, chunk) items per round */
        size_t part_stride;  /* floats per item: o[n_heads][hd], m[n_heads], l[n_heads] */
        float *part;         /* round_items partials */
        float *scores;       /* per thread: n_heads x FLASH_CHUNK */
        float *state;        /* per token and head: running max and sum */
        int64_t *first;      /* per token: index of its first item; [n] = all items */
        /* the default path's */
        int32_t walk_heads;    /* heads a thread walks together */
        size_t dscores_positions; /* every position of the pool (at least 64) */
        size_t dscores_stride;    /* per thread: walk_heads x dscores_positions scores, walk_heads x hd query */
        float *dscores;
        /* the token blocks' (attend_tokens): per thread, BLOCK_TOKENS x walk_heads x block_positions scores */
        size_t block_positions;
        float *bscores;
        /* KV_TYPE_Q8: the batch's queries in int8, their per-head scales and byte sums (attn_quantize_query) */
        int8_t *qi;
        float *qs;
        int32_t *qsum;
};

struct attention_job {
        struct npu_ctx *c;
        const struct npu_batch *b;
        int32_t layer;
        const float *q;
        float *out;
};

/* whether the token at position pos is computed by the flash path (see the file's comment) */
static bool takes_flash(const struct npu_ctx *c, int32_t pos)
{
        /* over the q8 cache, ATTENTION_F16_OPERANDS is the default path */
        return c->attention == ATTENTION_FLASH || (c->kv->type == KV_TYPE_Q8 && pos + 1 > ATTENTION_Q8_FLASH_MIN_POSITIONS);
}

/* KV_TYPE_Q8: token t's query in int8 from head h, and its heads' scales */
static const int8_t *query_q8(const struct attention_job *j, int64_t t, int32_t h)
{
        const struct npu_hparams *hp = &j->c->model->hp;
        return j->c->attn->qi + t * hparams_q_dim(hp) + (size_t)h * hp->head_dim;
}

static const float *query_scales(const struct attention_job *j, int64_t t, int32_t h)
{
        return j->c->attn->qs + t * j->c->model->hp.n_heads + h;
}

static const int32_t *query_sums(const struct attention_job *j, int64_t t, int32_t h)
{
        return j->c->attn->qsum + t * j->c->model->hp.n_heads + h;
}

/*
 * The default path's prefetching. A thread walks its heads' slice of each
 * row, block by block (a block's rows are contiguous, and so are a
 * layer's next block's where the blocks were handed out in order), and
 * the hardware prefetchers do not follow it from one row to the next (a
 * row is a page at Llama-7B's shape). So the walk asks for the rows of the
 * block PREFETCH_BLOCKS ahead itself, a few heads' slice at a time as it
 * reaches the same heads in the current block: the requests are spread
 * over the work instead of stalling it in a burst. After K's last blocks
 * come V's first ones.
 */
#define PREFETCH_BLOCKS 3
/* heads computed (and their slice of the block ahead prefetched) per step of the walk */
#define PREFETCH_STEP_HEADS 2

/* into L1: the slice [off, off + bytes) of the rows of the block of positions holding p, if p < n */
static void prefetch_block_slice(const struct kv_pool *kv, const struct kv_seq *seq, int32_t layer, int which,
                                 int32_t p, int32_t n, size_t off, size_t bytes)
{
        if (p >= n)
                return;
        const int32_t p0 = p - p % kv->block_size, p1 = MIN(n, p0 + kv->block_size);
        const char *first = (const char *)kv_at(kv, seq, layer, which, p0) + off;
        const size_t stride = (size_t)kv->kv_dim * kv->elem_bytes;
        for (int32_t r = 0; r < p1 - p0; r++)
                for (size_t b = 0; b < bytes; b += 64)
                        __builtin_prefetch(first + r * stride + b, 0, 3);
}

/* KV_TYPE_Q8: the scales of KV heads [kvh0, kvh0 + nkvh) of the rows of that block */
static void prefetch_block_scales(const struct kv_pool *kv, const struct kv_seq *seq, int32_t layer, int which,
                                  int32_t p, int32_t n, int32_t kvh0, int32_t nkvh)
{
        if (kv->type != KV_TYPE_Q8 || p >= n)
                return;
        const int32_t p0 = p - p % kv->block_size, p1 = MIN(n, p0 + kv->block_size);
        const char *first = (const char *)(kv_scale_at(kv, seq, layer, which, p0) + kvh0);
        const size_t bytes = (size_t)(p1 - p0 - 1) * kv->n_kv_heads * sizeof(float) + nkvh * sizeof(float);
        for (size_t b = 0; b < bytes; b += 64)
                __builtin_prefetch(first + b, 0, 3);
}

/* where the walk over K (which = 0) or V at position p prefetches: PREFETCH_BLOCKS blocks ahead, K then V */
static void walk_ahead(int which, int32_t p, int32_t n, int32_t bs, int *ahead_which, int32_t *ahead_p)
{
        const int32_t ahead = (p / bs + PREFETCH_BLOCKS) * bs, n_blocks_pos = (n + bs - 1) / bs * bs;
        *ahead_which = which;
        *ahead_p = ahead;
        if (which == 0 && ahead >= n) {
                *ahead_which = 1;
                *ahead_p = ahead - n_blocks_pos;
        }
}

/* One token's walk of the default path: what its passes over K and V share. */
struct default_walk {
        const struct attention_job *j;
        const struct kv_pool *kv;
        const struct kv_seq *seq;
        int64_t t;
        int32_t h0, nh, n, hd, group, step;
        size_t koff, head_bytes;
        const float *q;
        float scale;
        float *s, *out;
};

/* K rows [p, p + run) for query heads [h0 + h, h0 + h + m): their scores into s */
static void default_scores(const struct default_walk *w, const void *K, int32_t p, int32_t run, int32_t h, int32_t m)
{
        const struct kv_pool *kv = w->kv;
        const int32_t hd = w->hd, n = w->n;
        float *sh = w->s + (size_t)h * n + p;

        if (kv->type == KV_TYPE_Q8)
                attn_scores_rows_q8(query_q8(w->j, w->t, w->h0 + h), query_scales(w->j, w->t, w->h0 + h),
                                    query_sums(w->j, w->t, w->h0 + h), K,
                                    kv_scale_at(kv, w->seq, w->j->layer, 0, p) + (w->h0 + h) / w->group, kv->kv_dim,
                                    kv->n_kv_heads, run, m, w->group, hd, w->scale, sh, n);
        else if (kv->type == KV_TYPE_F16)
                attn_scores_rows_f16(w->q + (size_t)h * hd, K, kv->kv_dim, run, m, w->group, hd, w->scale, sh, n);
        else
                attn_scores_rows_f32(w->q + (size_t)h * hd, K, kv->kv_dim, run, m, w->group, hd, w->scale, sh, n);
}

/* V rows [p, p + run) weighted by those heads' probabilities, added into out */
static void default_accum(const struct default_walk *w, const void *V, int32_t p, int32_t run, int32_t h, int32_t m)
{
        const struct kv_pool *kv = w->kv;
        const int32_t hd = w->hd, n = w->n;
        const float *sh = w->s + (size_t)h * n + p;
        float *oh = w->out + (size_t)h * hd;

        if (kv->type == KV_TYPE_Q8)
                attn_accum_rows_q8(oh, V, kv_scale_at(kv, w->seq, w->j->layer, 1, p) + (w->h0 + h) / w->group,
                                   kv->kv_dim, kv->n_kv_heads, sh, n, run, m, w->group, hd);
        else if (kv->type == KV_TYPE_F16)
                attn_accum_rows_f16(oh, V, kv->kv_dim, sh, n, run, m, w->group, hd);
        else
                attn_accum_rows_f32(oh, V, kv->kv_dim, sh, n, run, m, w->group, hd);
}

/*
 * One pass over the rows of K (which = 0) or V: a block's run of rows at a
 * time, a step of heads at a time within it, prefetching ahead (walk_ahead).
 */
static void default_pass(const struct default_walk *w, int which)
{
        const struct kv_pool *kv = w->kv;
        const int32_t n = w->n, bs = kv->block_size, layer = w->j->layer, kvh0 = w->h0 / w->group;

        for (int32_t p = 0; p < n;) {
                const int32_t run = MIN(n, (p / bs + 1) * bs) - p;
                int aw;
                int32_t ap;
                walk_ahead(which, p, n, bs, &aw, &ap);
                prefetch_block_scales(kv, w->seq, layer, aw, ap, n, kvh0, w->nh / w->group);
                for (int32_t h = 0; h < w->nh; h += w->step) {
                        const int32_t m = MIN(w->step, w->nh - h);
                        const size_t off = w->koff + (size_t)(h / w->group) * w->head_bytes;
                        const void *rows = (const uint8_t *)kv_at(kv, w->seq, layer, which, p) + off;
                        prefetch_block_slice(kv, w->seq, layer, aw, ap, n, off, (size_t)(m / w->group) * w->head_bytes);
                        if (which == 0)
                                default_scores(w, rows, p, run, h, m);
                        else
                                default_accum(w, rows, p, run, h, m);
                }
                p += run;
        }
}

/*
 * The default path: query heads [h0, h0 + nh) of token t (h0 and nh
 * multiples of the GQA group) walk the rows together, nh * head_dim
 * contiguous elements of each row, a step of heads at a time within a
 * block. Every head's scores, softmax and sums are the same as walked
 * alone (attn_*_rows_*), whatever the grouping.
 */
static void attend_default(const struct attention_job *j, int64_t t, int32_t h0, int32_t nh, float *s)
{
        const struct npu_hparams *hp = &j->c->model->hp;
        const struct kv_pool *kv = j->c->kv;
        const int32_t hd = hp->head_dim, group = hp->n_heads / hp->n_kv_heads, bs = kv->block_size;
        struct default_walk w = {
                .j = j,
                .kv = kv,
                .seq = j->b->seqs[t],
                .t = t,
                .h0 = h0,
                .nh = nh,
                .n = j->b->pos[t] + 1,
                .hd = hd,
                .group = group,
                .step = MAX(group, PREFETCH_STEP_HEADS / group * group),
                .koff = (size_t)(h0 / group) * hd * kv->elem_bytes,
                .head_bytes = (size_t)hd * kv->elem_bytes,
                .q = j->q + t * hparams_q_dim(hp) + (size_t)h0 * hd,
                .scale = 1.0f / sqrtf((float)hd),
                .s = s,
                .out = j->out + t * hparams_q_dim(hp) + (size_t)h0 * hd,
        };
        const int32_t n = w.n;

        const bool f16_operands = j->c->attention == ATTENTION_F16_OPERANDS && kv->type == KV_TYPE_F16;
        if (f16_operands) {
                /* after the scores in s: the query in f16 (see the file's comment) */
                float *qh = s + (size_t)j->c->attn->walk_heads * j->c->attn->dscores_positions;
                vec_round_f16(qh, w.q, (int64_t)nh * hd);
                w.q = qh;
        }

        for (int32_t b = 0; b < PREFETCH_BLOCKS; b++) {
                prefetch_block_slice(kv, w.seq, j->layer, 0, b * bs, n, w.koff, (size_t)(nh / group) * w.head_bytes);
                prefetch_block_scales(kv, w.seq, j->layer, 0, b * bs, n, h0 / group, nh / group);
        }
        default_pass(&w, 0);
        for (int32_t h = 0; h < nh; h++)
                softmax_inplace(s + (size_t)h * n, n);
        if (f16_operands)
                for (int32_t h = 0; h < nh; h++)
                        vec_round_f16(s + (size_t)h * n, s + (size_t)h * n, n);
        memset(w.out, 0, sizeof(float) * nh * hd);
        default_pass(&w, 1);
}

/*
 * A prompt's tokens in blocks: up to BLOCK_TOKENS consecutive tokens of one
 * sequence walk the cache rows together, BLOCK_ROWS rows at a time, each
 * token taking the rows it attends to while they are in L1 (8 rows of 16
 * heads of 128 f16 are 32 KiB), instead of each token streaming every row
 * from L3 in turn. Each token's scores, softmax and sums are computed by
 * the same row kernels over the same rows in the same order, only in runs
 * of at most BLOCK_ROWS rows: the kernels' results do not depend on where a
 * run starts (each score is its own sum; each output lane adds rows in
 * ascending order), so the bits are attend_default's. Tokens beyond
 * block_positions positions take attend_default.
 */
#define BLOCK_TOKENS 8
#define BLOCK_ROWS 8
#define BLOCK_MAX_POSITIONS 4096

static void attend_tokens(const struct attention_job *j, int64_t t0, int32_t nt, int32_t h0, int32_t nh, float *s)
{
        const struct npu_hparams *hp = &j->c->model->hp;
        const struct kv_pool *kv = j->c->kv;
        const struct kv_seq *seq = j->b->seqs[t0];
        const int32_t hd = hp->head_dim, group = hp->n_heads / hp->n_kv_heads, bs = kv->block_size;
        const size_t koff = (size_t)(h0 / group) * hd * kv->elem_bytes, slice = (size_t)(nh / group) * hd * kv->elem_bytes;
        const size_t q_dim = hparams_q_dim(hp), per_token = (size_t)j->c->attn->walk_heads * j->c->attn->block_positions;
        const float scale = 1.0f / sqrtf((float)hd);
        int32_t n_max = 0;

        for (int32_t i = 0; i < nt; i++)
                n_max = MAX(n_max, j->b->pos[t0 + i] + 1);
        for (int which = 0; which < 2; which++) {
                prefetch_block_slice(kv, seq, j->layer, which, 0, n_max, koff, slice);
                prefetch_block_scales(kv, seq, j->layer, which, 0, n_max, h0 / group, nh / group);
                for (int32_t p = 0; p < n_max;) {
                        const int32_t run = MIN(MIN(n_max, (p / bs + 1) * bs) - p, BLOCK_ROWS);
                        const void *R = (const uint8_t *)kv_at(kv, seq, j->layer, which, p) + koff;
                        const float *rs = kv->type == KV_TYPE_Q8 ? kv_scale_at(kv, seq, j->layer, which, p) + h0 / group
                                                                 : NULL;
                        if (p % bs == 0) {
                                prefetch_block_slice(kv, seq, j->layer, which, p + bs, n_max, koff, slice);
                                prefetch_block_scales(kv, seq, j->layer, which, p + bs, n_max, h0 / group, nh / group);
                        }
                        if (kv->type == KV_TYPE_F16) {
                                /* every token of the block from each K/V vector converted once */
                                int32_t rows[BLOCK_TOKENS];
                                size_t ld[BLOCK_TOKENS];
                                for (int32_t i = 0; i < nt; i++) {
                                        ld[i] = (size_t)j->b->pos[t0 + i] + 1;
                                        rows[i] = MIN(run, (int32_t)ld[i] - p);
                                }
                                if (which == 0)
                                        attn_scores_rows_f16_multi(j->q + t0 * q_dim + (size_t)h0 * hd, q_dim, nt, rows,
                                                                   R, kv->kv_dim, nh, group, hd, scale, s + p,
                                                                   per_token, ld);
                                else
                                        attn_accum_rows_f16_multi(j->out + t0 * q_dim + (size_t)h0 * hd, q_dim, nt,
                                                                  rows, R, kv->kv_dim, s + p, per_token, ld, nh, group,
                                                                  hd);
                                p += run;
                                continue;
                        }
                        for (int32_t i = 0; i < nt; i++) {
                                const int64_t t = t0 + i;
                                const int32_t n = j->b->pos[t] + 1, m = MIN(run, n - p);
                                float *st = s + i * per_token;
                                if (m <= 0)
                                        continue;
                                if (which == 0) {
                                        const float *q = j->q + t * q_dim + (size_t)h0 * hd;
                                        if (kv->type == KV_TYPE_Q8)
                                                attn_scores_rows_q8(query_q8(j, t, h0), query_scales(j, t, h0), query_sums(j, t, h0), R, rs,
                                                                    kv->kv_dim, kv->n_kv_heads, m, nh, group, hd,
                                                                    scale, st + p, n);
                                        else if (kv->type == KV_TYPE_F16)
                                                attn_scores_rows_f16(q, R, kv->kv_dim, m, nh, group, hd, scale, st + p,
                                                                     n);
                                        else
                                                attn_scores_rows_f32(q, R, kv->kv_dim, m, nh, group, hd, scale, st + p,
                                                                     n);
                                } else {
                                        float *out = j->out + t * q_dim + (size_t)h0 * hd;
                                        if (kv->type == KV_TYPE_Q8)
                                                attn_accum_rows_q8(out, R, rs, kv->kv_dim, kv->n_kv_heads, st + p, n, m,
                                                                   nh, group, hd);
                                        else if (kv->type == KV_TYPE_F16)
                                                attn_accum_rows_f16(out, R, kv->kv_dim, st + p, n, m, nh, group, hd);
                                        else
                                                attn_accum_rows_f32(out, R, kv->kv_dim, st + p, n, m, nh, group, hd);
                                }
                        }
                        p += run;
                }
                if (which == 1)
                        break;
                /* between the scores and the sums: each token's softmax, and its output cleared */
                for (int32_t i = 0; i < nt; i++) {
                        const int64_t t = t0 + i;
                        const int32_t n = j->b->pos[t] + 1;
                        for (int32_t h = 0; h < nh; h++)
                                softmax_inplace(s + i * per_token + (size_t)h * n, n);
                        memset(j->out + t * q_dim + (size_t)h0 * hd, 0, sizeof(float) * nh * hd);
                }
        }
}

/* Tokens t0.. that can walk with t0 (attend_tokens): the same sequence, all heads [h0, h0 + nh), few enough positions. */
static int32_t block_tokens(const struct attention_job *j, int64_t t0, int64_t t_end, int32_t h0, int32_t nh,
                            int64_t i1, int32_t H)
{
        int32_t nt = 0;

        if (j->c->attention != ATTENTION_DEFAULT || !j->c->attn->bscores)
                return 0;
        for (int64_t t = t0; t < t_end && nt < BLOCK_TOKENS; t++, nt++)
                if (j->b->seqs[t] != j->b->seqs[t0] || j->b->pos[t] + 1 > (int32_t)j->c->attn->block_positions ||
                    takes_flash(j->c, j->b->pos[t]) || t * H + h0 + nh > i1)
                        break;
        return nt;
}

/* fixed cost of a (token, head) item, in positions: its softmax, its output row, the call */
#define ITEM_OVERHEAD_POSITIONS 16

/* tokens the flash path takes cost nothing here */
static int64_t item_cost(const struct attention_job *j, int64_t t)
{
        return takes_flash(j->c, j->b->pos[t]) ? 0 : (int64_t)j->b->pos[t] + 1 + ITEM_OVERHEAD_POSITIONS;
}

/*
 * The first item (a whole GQA group) at or after which the items' cost
 * reaches target. Costs are summed in item order, token by token, all heads
 * of a token costing the same.
 */
static int64_t item_at_cost(const struct attention_job *j, int32_t H, int32_t group, int64_t target)
{
        const struct npu_batch *b = j->b;
        int64_t acc = 0;

        for (int64_t t = 0; t < b->n; t++) {
                const int64_t c = item_cost(j, t);
                if (acc + c * H > target)
                        return t * H + (target - acc) / (c * group) * group;
                acc += c * H;
        }
        return (int64_t)b->n * H;
}

/*
 * Work items are (token, head) pairs, split in whole GQA groups; a thread
 * walks up to walk_heads at once. The split is by cost, not by count: a
 * prompt's last tokens attend over many more positions than its first,
 * and an even count left the thread with the first tokens waiting for the
 * other (3:1 at the end of a causal prompt over two threads). Which thread
 * computes an item changes none of its bits.
 */
static void attention_worker(void *arg, int ith, int nth)
{
        struct attention_job *j = arg;
        const struct npu_hparams *hp = &j->c->model->hp;
        const int32_t H = hp->n_heads, group = hp->n_heads / hp->n_kv_heads;
        int64_t total = 0;

        for (int64_t t = 0; t < j->b->n; t++)
                total += item_cost(j, t) * H;
        const int64_t i0 = item_at_cost(j, H, group, total * ith / nth);
        const int64_t i1 = item_at_cost(j, H, group, total * (ith + 1) / nth);
        float *s = j->c->attn->dscores + (size_t)ith * j->c->attn->dscores_stride;
        const int32_t walk = j->c->attn->walk_heads;
        if (i0 >= i1)
                return;
        /*
         * Heads outside, tokens inside: a prompt's tokens then read the same
         * cache rows' slice of walk heads one after another, while it is
         * still in L2, instead of every head's slice in turn.
         */
        for (int32_t h0 = 0; h0 < H; h0 += walk) {
                const int32_t nh_full = MIN(h0 + walk, H) - h0;
                const int64_t t_end = (i1 - 1) / H + 1;
                for (int64_t t = i0 / H; t < t_end;) {
                        if (takes_flash(j->c, j->b->pos[t])) {
                                t++;
                                continue;
                        }
                        const int64_t lo = MAX(i0, t * H + h0), hi = MIN(i1, t * H + h0 + nh_full);
                        const int32_t nt = lo == t * H + h0 ? block_tokens(j, t, t_end, h0, nh_full, i1, H) : 0;
                        if (nt > 1) {
                                attend_tokens(j, t, nt, h0, nh_full,
                                              j->c->attn->bscores + (size_t)ith * BLOCK_TOKENS *
                                                                            j->c->attn->walk_heads *
                                                                            j->c->attn->block_positions);
                                t += nt;
                                continue;
                        }
                        if (lo < hi)
                                attend_default(j, t, (int32_t)(lo - t * H), (int32_t)(hi - lo), s);
                        t++;
                }
        }
}

/* --- flash path --- */

struct flash_job {
        const struct attention_job *j;
        struct attn_scratch *x;
        int64_t i0, i1; /* this round's items */
        int64_t whole;  /* the round's first items, each a unit of work; the rest are two, a half of the heads each */
        int32_t half;   /* heads in a half (0: no item is cut) */
        _Alignas(64) atomic_llong next; /* the next unit to claim, from 0 */
};

/* The token whose items include item i: the last t with first[t] <= i. */
static int64_t token_of(const int64_t *first, int64_t n, int64_t i)
{
        int64_t lo = 0, hi = n - 1;
        while (lo < hi) {
                int64_t mid = (lo + hi + 1) / 2;
                if (first[mid] <= i)
                        lo = mid;
                else
                        hi = mid - 1;
        }
        return lo;
}

/*
 * The first rows of the f16 or f32 walk's next run (another block, or V
 * after K, or the next chunk's K after V), into L2: the row kernels
 * prefetch ahead only within their run. (The q8 walk leaves the next run
 * to the hardware: its row kernels prefetch the next head's slice into L1,
 * and asking for the next run as well was slower, 11 of 12 alternated
 * attn-bench rounds at 4000 positions.)
 */
static void prefetch_rows(const struct kv_pool *kv, const struct kv_seq *seq, int32_t layer, int which, int32_t p,
                          int32_t end)
{
        const size_t bytes = (size_t)kv->kv_dim * kv->elem_bytes;
        for (int32_t r = p; r < MIN(p + 4, end); r++) {
                const char *row = kv_at(kv, seq, layer, which, r);
                for (size_t b = 0; b < bytes; b += 64)
                        __builtin_prefetch(row + b, 0, 2);
        }
}

/*
 * KV_TYPE_Q8: chunk [p0, p1)'s pass over K (which = 0: the scores of heads
 * [h0, h0 + nh) into s) or V (their sums into o, from the weights s), a
 * run of rows at a time; s and o start at head h0's
 */
static void flash_pass_q8(const struct attention_job *j, int64_t t, int which, int32_t p0, int32_t p1, int32_t h0,
                          int32_t nh, float *s, float *o)
{
        const struct npu_hparams *hp = &j->c->model->hp;
        const struct kv_pool *kv = j->c->kv;
        const struct kv_seq *seq = j->b->seqs[t];
        const int32_t hd = hp->head_dim, group = hp->n_heads / hp->n_kv_heads, bs = kv->block_size;
        const float scale = 1.0f / sqrtf((float)hd);

        for (int32_t p = p0; p < p1;) {
                const int32_t run = MIN(p1, (p / bs + 1) * bs) - p;
                const int8_t *x = (const int8_t *)kv_at(kv, seq, j->layer, which, p) + (size_t)(h0 / group) * hd;
                const float *sc = kv_scale_at(kv, seq, j->layer, which, p) + h0 / group;
                if (which == 0)
                        attn_scores_rows_q8(query_q8(j, t, h0), query_scales(j, t, h0), query_sums(j, t, h0), x, sc,
                                            kv->kv_dim, kv->n_kv_heads, run, nh, group, hd, scale, s + (p - p0),
                                            FLASH_CHUNK);
                else
                        attn_accum_rows_q8(o, x, sc, kv->kv_dim, kv->n_kv_heads, s + (p - p0), FLASH_CHUNK, run, nh,
                                           group, hd);
                p += run;
        }
}

/*
 * The f16 and f32 caches: chunk [p0, p1)'s pass over K (which = 0: every
 * head's scores into s) or V (their sums into o, from the weights s), a
 * run of rows at a time, the first rows of the next run prefetched.
 */
static void flash_pass_float(const struct attention_job *j, int64_t t, int which, int32_t p0, int32_t p1,
                             int32_t h0, int32_t nh, float *s, float *o)
{
        const struct npu_hparams *hp = &j->c->model->hp;
        const struct kv_pool *kv = j->c->kv;
        const struct kv_seq *seq = j->b->seqs[t];
        const int32_t hd = hp->head_dim, group = hp->n_heads / hp->n_kv_heads, bs = kv->block_size;
        const float *q = j->q + t * hparams_q_dim(hp) + (size_t)h0 * hd, scale = 1.0f / sqrtf((float)hd);

        for (int32_t p = p0; p < p1;) {
                const int32_t run = MIN(p1, (p / bs + 1) * bs) - p;
                const void *x = (const uint8_t *)kv_at(kv, seq, j->layer, which, p) +
                                (size_t)(h0 / group) * hd * kv->elem_bytes;
                if (p + run < p1)
                        prefetch_rows(kv, seq, j->layer, which, p + run, p1);
                else if (which == 0)
                        prefetch_rows(kv, seq, j->layer, 1, p0, p1);
                else
                        prefetch_rows(kv, seq, j->layer, 0, p1, j->b->pos[t] + 1);
                if (which == 0 && kv->type == KV_TYPE_F16)
                        attn_scores_rows_f16(q, x, kv->kv_dim, run, nh, group, hd, scale, s + (p - p0), FLASH_CHUNK);
                else if (which == 0)
                        attn_scores_rows_f32(q, x, kv->kv_dim, run, nh, group, hd, scale, s + (p - p0), FLASH_CHUNK);
                else if (kv->type == KV_TYPE_F16)
                        attn_accum_rows_f16(o, x, kv->kv_dim, s + (p - p0), FLASH_CHUNK, run, nh, group, hd);
                else
                        attn_accum_rows_f32(o, x, kv->kv_dim, s + (p - p0), FLASH_CHUNK, run, nh, group, hd);
                p += run;
        }
}

/*
 * Chunk k of token t, heads [h0, h0 + nh): their rows of part =
 * o[n_heads][hd], m[n_heads], l[n_heads]. Every head's arithmetic is its
 * own, so a chunk computed in two halves of its heads has the same bits
 * as computed whole.
 */
static void flash_chunk(const struct attention_job *j, int64_t t, int64_t k, int32_t h0, int32_t nh, float *part,
                        float *s)
{
        const int32_t H = j->c->model->hp.n_heads, hd = j->c->model->hp.head_dim;
        const int32_t p0 = (int32_t)k * FLASH_CHUNK, p1 = MIN(j->b->pos[t] + 1, p0 + FLASH_CHUNK);
        void (*pass)(const struct attention_job *, int64_t, int, int32_t, int32_t, int32_t, int32_t, float *, float *) =
                j->c->kv->type == KV_TYPE_Q8 ? flash_pass_q8 : flash_pass_float;
        float *o = part + (size_t)h0 * hd, *m = part + (size_t)H * hd, *l = m + H;

        s += (size_t)h0 * FLASH_CHUNK;
        pass(j, t, 0, p0, p1, h0, nh, s, NULL);
        for (int32_t h = 0; h < nh; h++)
                l[h0 + h] = attn_exp_sum(s + (size_t)h * FLASH_CHUNK, p1 - p0, &m[h0 + h]);
        memset(o, 0, sizeof(float) * nh * hd);
        pass(j, t, 1, p0, p1, h0, nh, s, o);
}

/*
 * The round's items, claimed one unit at a time from a counter rather than
 * cut into a range per thread, so a thread the host preempts or slows
 * holds up the round by the unit it is in, as the matmuls' chunks do
 * (attn-bench -n 4000 -k q8, alternated with the ranges: faster in 7 of
 * 10 rounds, medians 37.3 against 38.2 ms). Each item's partial goes to
 * its own slot: the same bits whichever thread takes it.
 *
 * The round's last items are cut in two halves of the heads (flash_units),
 * so the threads finish the round together: whole chunks alone left one
 * thread a chunk behind the other whenever the round had an odd number of
 * them (attn-bench -t 2, 4001 and 3840 positions took as long as 4096).
 */
/* Unit u of the round: its item, and the heads [*h0, *h0 + *nh) of it that it computes. */
static int64_t flash_unit(const struct flash_job *f, int64_t u, int32_t H, int32_t *h0, int32_t *nh)
{
        if (u < f->whole) {
                *h0 = 0, *nh = H;
                return f->i0 + u;
        }
        *h0 = (int32_t)((u - f->whole) % 2) * f->half, *nh = f->half;
        return f->i0 + f->whole + (u - f->whole) / 2;
}

static void flash_items_worker(void *arg, int ith, int nth)
{
        struct flash_job *f = arg;
        const int64_t *first = f->x->first;
        const int32_t H = f->j->c->model->hp.n_heads;
        const int64_t units = f->whole + 2 * (f->i1 - f->i0 - f->whole);
        float *s = f->x->scores + (size_t)ith * H * FLASH_CHUNK;

        for (int64_t u; (u = atomic_fetch_add(&f->next, 1)) < units;) {
                int32_t h0, nh;
                const int64_t i = flash_unit(f, u, H, &h0, &nh), t = token_of(first, f->j->b->n, i);
                flash_chunk(f->j, t, i - first[t], h0, nh, f->x->part + (size_t)(i - f->i0) * f->x->part_stride, s);
        }
}

/*
 * How the round's items are claimed: the last MIN(items, threads) of
 * them in two halves of the heads, where the halves fall on the kv heads'
 * groups.
 */
static void flash_units(struct flash_job *f, int nth)
{
        const struct npu_hparams *hp = &f->j->c->model->hp;
        const int32_t group = hp->n_heads / hp->n_kv_heads;
        const int64_t items = f->i1 - f->i0;

        f->half = hp->n_heads % 2 == 0 && (hp->n_heads / 2) % group == 0 ? hp->n_heads / 2 : 0;
        f->whole = f->half && nth > 1 ? items - MIN(items, (int64_t)nth) : items;
}

/*
 * (O, M, L) <- the fold of (O, M, L) and a chunk's (o, m, l). Not inlined:
 * one copy of this arithmetic serves every caller, so it cannot be
 * contracted or reordered differently in one place.
 */
static __attribute__((noinline)) void flash_merge(float *O, float *M, float *L, const float *o, float m, float l,
                                                  int32_t hd)
{
        float mn = fmaxf(*M, m), a = expf(*M - mn), b = expf(m - mn);
        *L = *L * a + l * b;
        for (int32_t e = 0; e < hd; e++)
                O[e] = O[e] * a + o[e] * b;
        *M = mn;
}

/* Folds this round's chunks into each (token, head) of the tokens they belong to, in chunk order. */
static void flash_merge_worker(void *arg, int ith, int nth)
{
        struct flash_job *f = arg;
        const struct npu_hparams *hp = &f->j->c->model->hp;
        const int64_t *first = f->x->first;
        const int32_t H = hp->n_heads, hd = hp->head_dim;
        const int64_t t_lo = token_of(first, f->j->b->n, f->i0), t_hi = token_of(first, f->j->b->n, f->i1 - 1);
        int64_t a, z;

        threadpool_split((t_hi - t_lo + 1) * H, ith, nth, 1, &a, &z);
        for (int64_t i = a; i < z; i++) {
                const int64_t t = t_lo + i / H, c0 = MAX(first[t], f->i0), c1 = MIN(first[t + 1], f->i1);
                const int32_t h = (int32_t)(i % H);
                if (first[t] == first[t + 1])
                        continue; /* the default path's token */
                float *O = f->j->out + t * hparams_q_dim(hp) + (size_t)h * hd, *M = f->x->state + (t * H + h) * 2, *L = M + 1;
                for (int64_t c = c0; c < c1; c++) {
                        const float *part = f->x->part + (size_t)(c - f->i0) * f->x->part_stride;
                        const float *o = part + (size_t)h * hd, m = part[(size_t)H * hd + h],
                                    l = part[(size_t)H * hd + H + h];
                        if (c == first[t]) {
                                memcpy(O, o, sizeof(float) * hd);
                                *M = m, *L = l;
                        } else {
                                flash_merge(O, M, L, o, m, l, hd);
                        }
                }
                if (c1 == first[t + 1])
                        vec_scale(O, 1.0f / *L, hd);
        }
}

static void attention_flash(const struct attention_job *j)
{
        struct attn_scratch *x = j->c->attn;
        struct flash_job f = { .j = j, .x = x };

        x->first[0] = 0;
        for (int32_t t = 0; t < j->b->n; t++)
                x->first[t + 1] = x->first[t] +
                                  (takes_flash(j->c, j->b->pos[t]) ? (j->b->pos[t] + FLASH_CHUNK) / FLASH_CHUNK : 0);
        for (f.i0 = 0; f.i0 < x->first[j->b->n]; f.i0 = f.i1) {
                f.i1 = MIN(f.i0 + x->round_items, x->first[j->b->n]);
                flash_units(&f, threadpool_size(j->c->tp));
                atomic_init(&f.next, 0);
                threadpool_run(j->c->tp, flash_items_worker, &f);
                threadpool_run(j->c->tp, flash_merge_worker, &f);
        }
}

int attention_scratch_new(struct npu_ctx *c)
{
        const struct npu_hparams *hp = &c->model->hp;
        const int nth = threadpool_size(c->tp);
        struct attn_scratch *x = calloc(1, sizeof(*x));

        if (!x)
                return -ENOMEM;
        c->attn = x;
        x->round_items = MAX(128, 32 * nth);
        x->part_stride = (size_t)hp->n_heads * (hp->head_dim + 2);
        x->part = malloc(sizeof(float) * x->part_stride * x->round_items);
        x->scores = malloc(sizeof(float) * hp->n_heads * FLASH_CHUNK * nth);
        x->state = malloc(sizeof(float) * 2 * hp->n_heads * c->max_batch);
        x->first = malloc(sizeof(int64_t) * (c->max_batch + 1));
        /* 16 heads of Llama-7B are 4 KiB of a row: a page, read whole */
        const int32_t group = hp->n_heads / hp->n_kv_heads;
        x->walk_heads = group >= 16 ? group : 16 / group * group;
        x->dscores_positions = MAX((size_t)c->kv->n_blocks * c->kv->block_size, 64u);
        x->dscores_stride = (size_t)x->walk_heads * (x->dscores_positions + hp->head_dim);
        x->dscores = malloc(sizeof(float) * x->dscores_stride * nth);
        if (c->kv->type == KV_TYPE_Q8) {
                x->qi = malloc(hparams_q_dim(hp) * c->max_batch);
                x->qs = malloc(sizeof(float) * hp->n_heads * c->max_batch);
                x->qsum = malloc(sizeof(int32_t) * hp->n_heads * c->max_batch);
                if (!x->qi || !x->qs || !x->qsum)
                        return -ENOMEM;
        }
        if (c->max_batch > 1) {
                x->block_positions = MIN(x->dscores_positions, (size_t)BLOCK_MAX_POSITIONS);
                x->bscores = malloc(sizeof(float) * BLOCK_TOKENS * x->walk_heads * x->block_positions * nth);
                if (!x->bscores)
                        return -ENOMEM;
        }
        return x->part && x->scores && x->state && x->first && x->dscores ? 0 : -ENOMEM;
}

void attention_scratch_free(struct npu_ctx *c)
{
        struct attn_scratch *x = c->attn;
        if (!x)
                return;
        free(x->part);
        free(x->scores);
        free(x->state);
        free(x->first);
        free(x->dscores);
        free(x->bscores);
        free(x->qi);
        free(x->qs);
        free(x->qsum);
        free(x);
        c->attn = NULL;
}

/* KV_TYPE_Q8: every token's query in int8, the tokens split over the threads */
static void quantize_queries_worker(void *arg, int ith, int nth)
{
        const struct attention_job *j = arg;
        const struct npu_hparams *hp = &j->c->model->hp;
        int64_t a, z;

        threadpool_split(j->b->n, ith, nth, 1, &a, &z);
        for (int64_t t = a; t < z; t++)
                attn_quantize_query(j->q + t * hparams_q_dim(hp), j->c->attn->qi + t * hparams_q_dim(hp),
                                    j->c->attn->qs + t * hp->n_heads, j->c->attn->qsum + t * hp->n_heads, hp->n_heads,
                                    hp->head_dim);
}

void attention_batch(struct npu_ctx *c, const struct npu_batch *b, int32_t layer, const float *q, float *out)
{
        struct attention_job j = { .c = c, .b = b, .layer = layer, .q = q, .out = out };

        if (c->kv->type == KV_TYPE_Q8) {
                if (b->n > 1)
                        threadpool_run(c->tp, quantize_queries_worker, &j);
                else
                        quantize_queries_worker(&j, 0, 1);
        }
        int32_t n_flash = 0;
        for (int32_t t = 0; t < b->n; t++)
                n_flash += takes_flash(c, b->pos[t]);
        if (n_flash < b->n)
                threadpool_run(c->tp, attention_worker, &j);
        if (n_flash > 0)
                attention_flash(&j);
}
