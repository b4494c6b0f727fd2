/* SPDX-License-Identifier: MIT */
#include <stdatomic.h>

#include "forward.h"
#include "fp16.h"
#include "kernels.h"
#include "quant.h"

struct forward_scratch {
        int32_t cap;
        float *x, *xb, *q, *k, *v, *att, *hb, *hb2;
        float *out_rows;
        /* quantized activations for int8 weights */
        struct act_q aq;
};

static void scratch_free(struct forward_scratch *s)
{
        if (!s)
                return;
        free(s->x);
        free(s->xb);
        free(s->q);
        free(s->k);
        free(s->v);
        free(s->att);
        free(s->hb);
        free(s->hb2);
        free(s->out_rows);
        act_q_free(&s->aq);
        free(s);
}

static int scratch_alloc(const struct npu_hparams *hp, int32_t cap, struct forward_scratch **ret)
{
        struct forward_scratch *s = calloc(1, sizeof(*s));
        size_t kv_dim = (size_t)hp->n_kv_heads * hp->head_dim;

        if (!s)
                return -ENOMEM;
        s->cap = cap;
        s->x = malloc(sizeof(float) * cap * hp->dim);
        s->xb = malloc(sizeof(float) * cap * MAX(hp->dim, hp->ffn_dim));
        s->q = malloc(sizeof(float) * cap * hp->dim);
        s->k = malloc(sizeof(float) * cap * kv_dim);
        s->v = malloc(sizeof(float) * cap * kv_dim);
        s->att = malloc(sizeof(float) * cap * hp->dim);
        s->hb = malloc(sizeof(float) * cap * hp->ffn_dim);
        s->hb2 = malloc(sizeof(float) * cap * hp->ffn_dim);
        s->out_rows = malloc(sizeof(float) * cap * hp->dim);
        if (!s->x || !s->xb || !s->q || !s->k || !s->v || !s->att || !s->hb || !s->hb2 || !s->out_rows ||
            act_q_alloc(&s->aq, cap, MAX(hp->dim, hp->ffn_dim)) < 0) {
                scratch_free(s);
                return -ENOMEM;
        }
        *ret = s;
        return 0;
}

int ctx_new(const struct npu_model *m, struct kv_pool *kv, struct threadpool *tp, int32_t max_batch,
            struct npu_ctx **ret, struct npu_err *err)
{
        struct npu_ctx *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return -ENOMEM;
        if (max_batch < 1)
                max_batch = 1;
        c->model = m;
        c->kv = kv;
        c->tp = tp;
        c->max_batch = max_batch;
        r = scratch_alloc(&m->hp, max_batch, &c->s);
        c->scores_stride = MAX((size_t)kv->n_blocks * kv->block_size, 64u);
        c->scores = malloc(sizeof(float) * c->scores_stride * threadpool_size(tp));
        if (r >= 0 && !c->scores)
                r = -ENOMEM;
        if (r < 0) {
                scratch_free(c->s);
                free(c->scores);
                free(c);
                return npu_err_set(err, r, "cannot allocate buffers for a batch of %d tokens", max_batch);
        }
        kernels_init();
        *ret = c;
        return 0;
}

void ctx_free(struct npu_ctx *c)
{
        if (!c)
                return;
        scratch_free(c->s);
        free(c->scores);
        free(c);
}

/* --- parallel matmul: up to three weights applied to the same input --- */

/*
 * Rows are handed out in chunks from a shared counter rather than split
 * evenly up front: the threads rarely stream memory at the same speed, and
 * a static split leaves the faster one waiting at the barrier. Each output
 * row is computed whole by one thread, so results do not depend on the split.
 */
#define MATMUL_CHUNK_ROWS 64

struct matmul_job {
        int n_w;
        const struct npu_weight *w[3];
        float *y[3];
        int64_t first_chunk[4]; /* chunk index where weight i starts; [n_w] = total */
        const float *x;
        const struct act_q *aq;
        int64_t n_tok;
        size_t xs;
        atomic_llong next;
};

static void matmul_worker(void *arg, int ith, int nth)
{
        struct matmul_job *j = arg;
        for (;;) {
                int64_t c = atomic_fetch_add(&j->next, 1);
                if (c >= j->first_chunk[j->n_w])
                        return;
                int i = 0;
                while (c >= j->first_chunk[i + 1])
                        i++;
                const struct npu_weight *w = j->w[i];
                int64_t r0 = (c - j->first_chunk[i]) * MATMUL_CHUNK_ROWS, r1 = MIN(r0 + MATMUL_CHUNK_ROWS, w->rows);
                if (w->type == GGML_TYPE_I8)
                        matmul_int8_rows(w, j->aq, j->n_tok, j->y[i], w->rows, r0, r1);
                else
                        matmul_float_rows(w, j->x, j->n_tok, j->xs, j->y[i], w->rows, r0, r1);
        }
}

struct quant_job {
        const float *x;
        int64_t n_tok, cols;
        struct act_q *aq;
        enum npu_precision prec;
};

static void quant_worker(void *arg, int ith, int nth)
{
        struct quant_job *j = arg;
        int64_t t0, t1;
        threadpool_split(j->n_tok, ith, nth, 1, &t0, &t1);
        act_quantize_rows(j->aq, j->prec, j->x, j->cols, t0, t1);
}

static void run_matmul(struct npu_ctx *c, const float *x, int64_t n_tok, int n_w, const struct npu_weight *const *w,
                       float *const *y)
{
        struct matmul_job j = { .n_w = n_w, .x = x, .n_tok = n_tok, .xs = w[0]->cols, .aq = &c->s->aq };

        if (w[0]->type == GGML_TYPE_I8) {
                struct quant_job q = { .x = x, .n_tok = n_tok, .cols = w[0]->cols, .aq = &c->s->aq,
                                       .prec = c->model->precision };
                threadpool_run(c->tp, quant_worker, &q);
        }
        for (int i = 0; i < n_w; i++) {
                j.w[i] = w[i];
                j.y[i] = y[i];
                j.first_chunk[i + 1] = j.first_chunk[i] + DIV_ROUND_UP(w[i]->rows, MATMUL_CHUNK_ROWS);
        }
        atomic_init(&j.next, 0);
        threadpool_run(c->tp, matmul_worker, &j);
}

static void matmul1(struct npu_ctx *c, const float *x, int64_t n_tok, const struct npu_weight *w, float *y)
{
        run_matmul(c, x, n_tok, 1, &w, &y);
}

/* --- row-wise element ops, split over threads by token --- */

struct rows_job {
        struct npu_ctx *c;
        const struct npu_batch *b;
        int32_t layer;
        int64_t n_tok;
};

static void qk_rope_store_worker(void *arg, int ith, int nth)
{
        struct rows_job *j = arg;
        struct npu_ctx *c = j->c;
        const struct npu_hparams *hp = &c->model->hp;
        const struct kv_pool *kv = c->kv;
        int32_t kv_dim = hp->n_kv_heads * hp->head_dim;
        int64_t t0, t1;

        threadpool_split(j->n_tok, ith, nth, 1, &t0, &t1);
        for (int64_t t = t0; t < t1; t++) {
                int32_t pos = j->b->pos[t];
                float *q = c->s->q + t * hp->dim, *k = c->s->k + t * kv_dim, *v = c->s->v + t * kv_dim;
                rope_apply(q, hp->n_heads, hp->head_dim, pos, hp->rope_base);
                rope_apply(k, hp->n_kv_heads, hp->head_dim, pos, hp->rope_base);
                void *kd = kv_at(kv, j->b->seqs[t], j->layer, 0, pos);
                void *vd = kv_at(kv, j->b->seqs[t], j->layer, 1, pos);
                if (kv->type == KV_TYPE_F16) {
                        for (int32_t i = 0; i < kv_dim; i++) {
                                ((uint16_t *)kd)[i] = f32_to_f16(k[i]);
                                ((uint16_t *)vd)[i] = f32_to_f16(v[i]);
                        }
                } else {
                        memcpy(kd, k, kv_dim * sizeof(float));
                        memcpy(vd, v, kv_dim * sizeof(float));
                }
        }
}

static void norm_worker_common(struct rows_job *j, int ith, int nth, const float *in, float *out,
                               const float *weight, size_t stride)
{
        const struct npu_hparams *hp = &j->c->model->hp;
        int64_t t0, t1;
        threadpool_split(j->n_tok, ith, nth, 1, &t0, &t1);
        for (int64_t t = t0; t < t1; t++)
                rmsnorm(out + t * stride, in + t * stride, weight, hp->dim, hp->rms_eps);
}

static void attn_norm_worker(void *arg, int ith, int nth)
{
        struct rows_job *j = arg;
        norm_worker_common(j, ith, nth, j->c->s->x, j->c->s->xb, j->c->model->layers[j->layer].attn_norm,
                           j->c->model->hp.dim);
}

static void ffn_norm_worker(void *arg, int ith, int nth)
{
        struct rows_job *j = arg;
        norm_worker_common(j, ith, nth, j->c->s->x, j->c->s->xb, j->c->model->layers[j->layer].ffn_norm,
                           j->c->model->hp.dim);
}

static void silu_worker(void *arg, int ith, int nth)
{
        struct rows_job *j = arg;
        int64_t ffn = j->c->model->hp.ffn_dim, t0, t1;
        threadpool_split(j->n_tok, ith, nth, 1, &t0, &t1);
        for (int64_t t = t0; t < t1; t++)
                silu_mul(j->c->s->hb + t * ffn, j->c->s->hb2 + t * ffn, ffn);
}

static int check_batch(const struct npu_ctx *c, const struct npu_batch *b, struct npu_err *err)
{
        const struct npu_hparams *hp = &c->model->hp;

        if (b->n < 1 || b->n > c->max_batch)
                return npu_err_set(err, -EINVAL, "batch of %d tokens (1 to %d allowed)", b->n, c->max_batch);
        for (int32_t t = 0; t < b->n; t++) {
                if (b->tokens[t] < 0 || b->tokens[t] >= hp->n_vocab)
                        return npu_err_set(err, -EINVAL, "token id %d is outside the vocabulary", b->tokens[t]);
                if (b->pos[t] < 0 || b->pos[t] >= b->seqs[t]->n_blocks * c->kv->block_size)
                        return npu_err_set(err, -ENOSPC, "position %d has no KV block reserved", b->pos[t]);
        }
        return 0;
}

int forward(struct npu_ctx *c, const struct npu_batch *b, float *logits, struct npu_err *err)
{
        const struct npu_model *m = c->model;
        const struct npu_hparams *hp = &m->hp;
        struct forward_scratch *s = c->s;
        const int64_t n = b->n, dim = hp->dim;
        int r;

        r = check_batch(c, b, err);
        if (r < 0)
                return r;

        for (int64_t t = 0; t < n; t++)
                weight_row_f32(&m->tok_embd, b->tokens[t], s->x + t * dim);

        for (int32_t l = 0; l < hp->n_layers; l++) {
                const struct npu_layer *L = &m->layers[l];
                struct rows_job rj = { .c = c, .b = b, .layer = l, .n_tok = n };

                threadpool_run(c->tp, attn_norm_worker, &rj);
                if (c->calib)
                        calib_observe(c->calib->attn_in_max + (size_t)l * dim, s->xb, n, dim);
                const struct npu_weight *qkv[3] = { &L->wq, &L->wk, &L->wv };
                float *qkv_out[3] = { s->q, s->k, s->v };
                run_matmul(c, s->xb, n, 3, qkv, qkv_out);
                threadpool_run(c->tp, qk_rope_store_worker, &rj);
                attention_batch(c, b, l, s->q, s->att);
                if (c->calib)
                        calib_observe(c->calib->attn_out_max + (size_t)l * dim, s->att, n, dim);
                matmul1(c, s->att, n, &L->wo, s->out_rows);
                vec_add(s->x, s->out_rows, n * dim);

                threadpool_run(c->tp, ffn_norm_worker, &rj);
                if (c->calib)
                        calib_observe(c->calib->ffn_in_max + (size_t)l * dim, s->xb, n, dim);
                const struct npu_weight *gu[2] = { &L->w_gate, &L->w_up };
                float *gu_out[2] = { s->hb, s->hb2 };
                run_matmul(c, s->xb, n, 2, gu, gu_out);
                threadpool_run(c->tp, silu_worker, &rj);
                if (c->calib)
                        calib_observe(c->calib->ffn_mid_max + (size_t)l * hp->ffn_dim, s->hb, n, hp->ffn_dim);
                matmul1(c, s->hb, n, &L->w_down, s->out_rows);
                vec_add(s->x, s->out_rows, n * dim);
        }

        for (int32_t t = 0; t < n; t++) {
                int32_t p = b->pos[t] + 1;
                if (p > b->seqs[t]->n_pos)
                        b->seqs[t]->n_pos = p;
        }

        int64_t n_out = 0;
        for (int64_t t = 0; t < n; t++) {
                bool want = b->want_logits ? b->want_logits[t] : t == n - 1;
                if (want) {
                        rmsnorm(s->xb + n_out * dim, s->x + t * dim, m->output_norm, dim, hp->rms_eps);
                        n_out++;
                }
        }
        if (n_out > 0 && logits)
                matmul1(c, s->xb, n_out, &m->output, logits);
        c->n_forward_tokens += n;
        return 0;
}
