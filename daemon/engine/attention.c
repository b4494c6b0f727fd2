/* SPDX-License-Identifier: MIT */
/*
 * Causal grouped-query attention over the paged KV cache.
 *
 * The default path splits the work over (token, head) pairs and computes
 * every score of a row, then softmax, then the weighted sum of V.
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
 */
#include <math.h>

#include "forward.h"
#include "kernels.h"

/* positions per chunk of the flash path: part of its arithmetic, not a tuning knob per run */
#define FLASH_CHUNK 64

/* per context: the flash path's buffers (attention_scratch_new) */
struct attn_scratch {
        int64_t round_items; /* (token, chunk) items per round */
        size_t part_stride;  /* floats per item: o[n_heads][hd], m[n_heads], l[n_heads] */
        float *part;         /* round_items partials */
        float *scores;       /* per thread: n_heads x FLASH_CHUNK */
        float *state;        /* per token and head: running max and sum */
        int64_t *first;      /* per token: index of its first item; [n] = all items */
};

struct attention_job {
        struct npu_ctx *c;
        const struct npu_batch *b;
        int32_t layer;
        const float *q;
        float *out;
};

/* One query head of one token: where its query, output and K/V rows are. */
struct head_view {
        const struct kv_pool *kv;
        const struct kv_seq *seq;
        int32_t layer, hd, n;
        size_t koff;
        const float *q;
        float *out;
        float scale;
};

static struct head_view head_view(const struct attention_job *j, int64_t t, int32_t h)
{
        const struct npu_hparams *hp = &j->c->model->hp;
        const int32_t hd = hp->head_dim, g = h / (hp->n_heads / hp->n_kv_heads);
        return (struct head_view) {
                .kv = j->c->kv, .seq = j->b->seqs[t], .layer = j->layer, .hd = hd, .n = j->b->pos[t] + 1,
                .koff = (size_t)g * hd * j->c->kv->elem_bytes, .q = j->q + t * hp->dim + (int64_t)h * hd,
                .out = j->out + t * hp->dim + (int64_t)h * hd, .scale = 1.0f / sqrtf((float)hd),
        };
}

static const void *key_at(const struct head_view *v, int32_t p)
{
        return (const uint8_t *)kv_at(v->kv, v->seq, v->layer, 0, p) + v->koff;
}

static const void *value_at(const struct head_view *v, int32_t p)
{
        return (const uint8_t *)kv_at(v->kv, v->seq, v->layer, 1, p) + v->koff;
}

/* scores[p - p0] = scale * q.K[p] for p in [p0, p1), a run of rows per KV block at a time. */
static void scores_range(const struct head_view *v, int32_t p0, int32_t p1, float *scores)
{
        const int32_t bs = v->kv->block_size;
        for (int32_t p = p0; p < p1;) {
                int32_t run = MIN(p1, (p / bs + 1) * bs) - p;
                if (v->kv->type == KV_TYPE_F16)
                        attn_scores_f16(v->q, key_at(v, p), v->kv->kv_dim, run, v->hd, v->scale, scores + (p - p0));
                else
                        attn_scores_f32(v->q, key_at(v, p), v->kv->kv_dim, run, v->hd, v->scale, scores + (p - p0));
                p += run;
        }
}

/* out += sum w[p - p0] V[p] for p in [p0, p1). */
static void accum_range(const struct head_view *v, int32_t p0, int32_t p1, const float *w)
{
        const int32_t bs = v->kv->block_size;
        for (int32_t p = p0; p < p1;) {
                int32_t run = MIN(p1, (p / bs + 1) * bs) - p;
                if (v->kv->type == KV_TYPE_F16)
                        attn_accum_f16(v->out, value_at(v, p), v->kv->kv_dim, w + (p - p0), run, v->hd);
                else
                        attn_accum_f32(v->out, value_at(v, p), v->kv->kv_dim, w + (p - p0), run, v->hd);
                p += run;
        }
}

static void attend_default(const struct attention_job *j, int64_t t, int32_t h, float *scores)
{
        const struct head_view v = head_view(j, t, h);

        scores_range(&v, 0, v.n, scores);
        softmax_inplace(scores, v.n);
        memset(v.out, 0, v.hd * sizeof(float));
        accum_range(&v, 0, v.n, scores);
}

static void attention_worker(void *arg, int ith, int nth)
{
        struct attention_job *j = arg;
        const struct npu_hparams *hp = &j->c->model->hp;
        const int64_t items = (int64_t)j->b->n * hp->n_heads;
        int64_t i0, i1;

        threadpool_split(items, ith, nth, 1, &i0, &i1);
        if (i0 >= i1)
                return;
        float *scores = j->c->scores + (size_t)ith * j->c->scores_stride;
        for (int64_t i = i0; i < i1; i++)
                attend_default(j, i / hp->n_heads, (int32_t)(i % hp->n_heads), scores);
}

/* --- flash path --- */

struct flash_job {
        const struct attention_job *j;
        struct attn_scratch *x;
        int64_t i0, i1; /* this round's items */
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

/* Chunk k of token t, every head: part = o[n_heads][hd], m[n_heads], l[n_heads]. */
static void flash_chunk(const struct attention_job *j, int64_t t, int64_t k, float *part, float *s)
{
        const struct npu_hparams *hp = &j->c->model->hp;
        const struct kv_pool *kv = j->c->kv;
        const struct kv_seq *seq = j->b->seqs[t];
        const int32_t H = hp->n_heads, hd = hp->head_dim, group = hp->n_heads / hp->n_kv_heads, bs = kv->block_size;
        const int32_t p0 = (int32_t)k * FLASH_CHUNK, p1 = MIN(j->b->pos[t] + 1, p0 + FLASH_CHUNK);
        const float *q = j->q + t * hp->dim, scale = 1.0f / sqrtf((float)hd);
        float *o = part, *m = part + (size_t)H * hd, *l = m + H;

        for (int32_t p = p0; p < p1;) {
                int32_t run = MIN(p1, (p / bs + 1) * bs) - p;
                const void *K = kv_at(kv, seq, j->layer, 0, p);
                if (kv->type == KV_TYPE_F16)
                        attn_scores_rows_f16(q, K, kv->kv_dim, run, H, group, hd, scale, s + (p - p0), FLASH_CHUNK);
                else
                        attn_scores_rows_f32(q, K, kv->kv_dim, run, H, group, hd, scale, s + (p - p0), FLASH_CHUNK);
                p += run;
        }
        for (int32_t h = 0; h < H; h++) {
                float *sh = s + (size_t)h * FLASH_CHUNK, mx = -INFINITY, sum = 0;
                for (int32_t i = 0; i < p1 - p0; i++)
                        mx = sh[i] > mx ? sh[i] : mx;
                for (int32_t i = 0; i < p1 - p0; i++) {
                        sh[i] = expf(sh[i] - mx);
                        sum += sh[i];
                }
                m[h] = mx;
                l[h] = sum;
        }
        memset(o, 0, sizeof(float) * H * hd);
        for (int32_t p = p0; p < p1;) {
                int32_t run = MIN(p1, (p / bs + 1) * bs) - p;
                const void *V = kv_at(kv, seq, j->layer, 1, p);
                if (kv->type == KV_TYPE_F16)
                        attn_accum_rows_f16(o, V, kv->kv_dim, s + (p - p0), FLASH_CHUNK, run, H, group, hd);
                else
                        attn_accum_rows_f32(o, V, kv->kv_dim, s + (p - p0), FLASH_CHUNK, run, H, group, hd);
                p += run;
        }
}

static void flash_items_worker(void *arg, int ith, int nth)
{
        struct flash_job *f = arg;
        const int64_t *first = f->x->first;
        const int32_t H = f->j->c->model->hp.n_heads;
        int64_t a, z;

        threadpool_split(f->i1 - f->i0, ith, nth, 1, &a, &z);
        if (a >= z)
                return;
        a += f->i0, z += f->i0;
        float *s = f->x->scores + (size_t)ith * H * FLASH_CHUNK;
        for (int64_t i = a, t = token_of(first, f->j->b->n, a); i < z; i++) {
                while (first[t + 1] <= i)
                        t++;
                flash_chunk(f->j, t, i - first[t], f->x->part + (size_t)(i - f->i0) * f->x->part_stride, s);
        }
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
                float *O = f->j->out + t * hp->dim + (size_t)h * hd, *M = f->x->state + (t * H + h) * 2, *L = M + 1;
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
                x->first[t + 1] = x->first[t] + (j->b->pos[t] + FLASH_CHUNK) / FLASH_CHUNK;
        for (f.i0 = 0; f.i0 < x->first[j->b->n]; f.i0 = f.i1) {
                f.i1 = MIN(f.i0 + x->round_items, x->first[j->b->n]);
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
        return x->part && x->scores && x->state && x->first ? 0 : -ENOMEM;
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
        free(x);
        c->attn = NULL;
}

void attention_batch(struct npu_ctx *c, const struct npu_batch *b, int32_t layer, const float *q, float *out)
{
        struct attention_job j = { .c = c, .b = b, .layer = layer, .q = q, .out = out };
        if (c->attention == ATTENTION_FLASH)
                attention_flash(&j);
        else
                threadpool_run(c->tp, attention_worker, &j);
}
