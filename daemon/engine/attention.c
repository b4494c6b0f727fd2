/* SPDX-License-Identifier: MIT */
/*
 * Causal grouped-query attention over the paged KV cache. Work is split over
 * (token, head) pairs. The default path computes every score of a row, then
 * softmax, then the weighted sum of V. The flash path walks the keys in
 * tiles with an online softmax, so nothing proportional to the context is
 * materialized and K/V of one tile are reused by every query head of a group.
 */
#include <math.h>

#include "forward.h"
#include "kernels.h"

#define FLASH_TILE 64

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

/* Online softmax over tiles of keys: running max m, running sum l, unnormalized output. */
static void attend_flash(const struct attention_job *j, int64_t t, int32_t h, float *scores)
{
        const struct head_view v = head_view(j, t, h);
        float m = -INFINITY, l = 0;

        memset(v.out, 0, v.hd * sizeof(float));
        for (int32_t p0 = 0; p0 < v.n; p0 += FLASH_TILE) {
                int32_t p1 = MIN(p0 + FLASH_TILE, v.n);
                float tile_max = -INFINITY;
                scores_range(&v, p0, p1, scores);
                for (int32_t p = 0; p < p1 - p0; p++)
                        tile_max = fmaxf(tile_max, scores[p]);
                float m_new = fmaxf(m, tile_max);
                float corr = expf(m - m_new);
                if (corr != 1.0f) {
                        vec_scale(v.out, corr, v.hd);
                        l *= corr;
                }
                for (int32_t p = 0; p < p1 - p0; p++) {
                        scores[p] = expf(scores[p] - m_new);
                        l += scores[p];
                }
                accum_range(&v, p0, p1, scores);
                m = m_new;
        }
        vec_scale(v.out, 1.0f / l, v.hd);
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
        bool flash = j->c->attention == ATTENTION_FLASH;
        float *scores = j->c->scores + (size_t)ith * j->c->scores_stride;
        for (int64_t i = i0; i < i1; i++) {
                if (flash)
                        attend_flash(j, i / hp->n_heads, (int32_t)(i % hp->n_heads), scores);
                else
                        attend_default(j, i / hp->n_heads, (int32_t)(i % hp->n_heads), scores);
        }
}

void attention_batch(struct npu_ctx *c, const struct npu_batch *b, int32_t layer, const float *q, float *out)
{
        struct attention_job j = { .c = c, .b = b, .layer = layer, .q = q, .out = out };
        threadpool_run(c->tp, attention_worker, &j);
}
