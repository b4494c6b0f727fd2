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

static float key_dot(const struct kv_pool *kv, const void *k, const float *q, int32_t hd)
{
        return kv->type == KV_TYPE_F16 ? vec_dot_f32_f16(q, k, hd) : vec_dot_f32(q, k, hd);
}

static void value_mad(const struct kv_pool *kv, float *y, const void *v, float a, int32_t hd)
{
        if (kv->type == KV_TYPE_F16)
                vec_mad_f16(y, v, a, hd);
        else
                vec_mad_f32(y, v, a, hd);
}

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

static void attend_default(const struct attention_job *j, int64_t t, int32_t h, float *scores)
{
        const struct head_view v = head_view(j, t, h);
        const struct kv_pool *kv = v.kv;
        const int32_t hd = v.hd, n = v.n;
        const float *q = v.q, scale = v.scale;
        float *out = v.out;

        for (int32_t p = 0; p < n; p++)
                scores[p] = key_dot(kv, key_at(&v, p), q, hd) * scale;
        softmax_inplace(scores, n);
        memset(out, 0, hd * sizeof(float));
        for (int32_t p = 0; p < n; p++)
                value_mad(kv, out, value_at(&v, p), scores[p], hd);
}

/* Online softmax over tiles of keys: running max m, running sum l, unnormalized output. */
static void attend_flash(const struct attention_job *j, int64_t t, int32_t h, float *scores)
{
        const struct head_view v = head_view(j, t, h);
        const struct kv_pool *kv = v.kv;
        const int32_t hd = v.hd, n = v.n;
        const float *q = v.q, scale = v.scale;
        float *out = v.out;
        float m = -INFINITY, l = 0;

        memset(out, 0, hd * sizeof(float));
        for (int32_t p0 = 0; p0 < n; p0 += FLASH_TILE) {
                int32_t p1 = MIN(p0 + FLASH_TILE, n);
                float tile_max = -INFINITY;
                for (int32_t p = p0; p < p1; p++) {
                        float s = key_dot(kv, key_at(&v, p), q, hd) * scale;
                        scores[p - p0] = s;
                        tile_max = fmaxf(tile_max, s);
                }
                float m_new = fmaxf(m, tile_max);
                float corr = expf(m - m_new);
                if (corr != 1.0f) {
                        vec_scale(out, corr, hd);
                        l *= corr;
                }
                for (int32_t p = p0; p < p1; p++) {
                        float e = expf(scores[p - p0] - m_new);
                        l += e;
                        value_mad(kv, out, value_at(&v, p), e, hd);
                }
                m = m_new;
        }
        vec_scale(out, 1.0f / l, hd);
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
