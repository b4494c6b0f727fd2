/* SPDX-License-Identifier: MIT */
#include "forward.h"
#include "kernels.h"

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
        c->npu_retries = 1;
        r = forward_scratch_new(&m->hp, max_batch, &c->s);
        if (r >= 0)
                r = forward_scratch_alloc_quant(c->s, m);
        if (r >= 0)
                r = backend_cpu_new(c, c->s, &c->cpu);
        c->be = c->cpu;
        if (r >= 0)
                r = attention_scratch_new(c);
        if (r < 0) {
                ctx_free(c);
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
        if (c->npu)
                c->npu->ops->free(c->npu);
        if (c->cpu)
                c->cpu->ops->free(c->cpu);
        forward_scratch_free(c->s);
        attention_scratch_free(c);
        free(c);
}

enum backend_target ctx_target(const struct npu_ctx *c)
{
        return c->be == c->cpu ? BACKEND_TARGET_CPU : BACKEND_TARGET_NPU;
}

int ctx_set_target(struct npu_ctx *c, enum backend_target t, const char *device, int fd, struct npu_err *err)
{
        int r;

        if (t == BACKEND_TARGET_CPU) {
                c->be = c->cpu;
                if (c->npu) {
                        /* frees the device's buffers; the KV cache moves back into process memory */
                        c->npu->ops->free(c->npu);
                        c->npu = NULL;
                }
                return 0;
        }
        if (!precision_runs_on_npu(c->model->precision))
                return npu_err_set(err, -EOPNOTSUPP, "the npu runs w8a8 and w8a16 models; this one is %s "
                                                     "(quantize it with npu-quantize --precision w8a8)",
                                   precision_name(c->model->precision));
        if (!c->npu) {
                r = backend_npu_new(c, device, fd, &c->npu, err);
                if (r < 0)
                        return r;
        }
        c->be = c->npu;
        c->stats.device_lost = false;
        return 0;
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

/*
 * One pass over every layer on back end be. The cpu computes the embeddings
 * and the attention (between two syncs); everything else is be's. Only a
 * device failure makes it return < 0, and then it may be run again from the
 * start: it rewrites the same K/V rows with the same values.
 */
static int forward_pass(struct npu_ctx *c, struct backend *be, const struct npu_batch *b, float *logits,
                        struct npu_err *err)
{
        const struct npu_model *m = c->model;
        const struct npu_hparams *hp = &m->hp;
        const struct backend_ops *o = be->ops;
        struct forward_scratch *s = be->s;
        const int64_t n = b->n, dim = hp->dim, q_dim = hparams_q_dim(hp);
        int r;

        o->begin(be, b);
        for (int64_t t = 0; t < n; t++)
                weight_row_f32(&m->tok_embd, b->tokens[t], s->x + t * dim);
        o->cpu_wrote(be, s->x, sizeof(float) * n * dim);

        for (int32_t l = 0; l < hp->n_layers; l++) {
                const struct npu_layer *L = &m->layers[l];

                o->rmsnorm(be, s->xb, s->x, L->attn_norm, n);
                if (c->calib)
                        calib_observe(c->calib->attn_in_max + (size_t)l * dim, s->xb, n, dim);
                const struct npu_weight *qkv[3] = { &L->wq, &L->wk, &L->wv };
                float *qkv_out[3] = { s->q, s->k, s->v };
                o->matmul(be, s->xb, n, 3, qkv, qkv_out);
                if (be != c->cpu && !m->qkv_plain) {
                        /* biases, q/k norms or a RoPE the device lacks: on the cpu, between device passes */
                        r = o->sync(be, err);
                        if (r < 0)
                                return r;
                        c->cpu->ops->rope_store(c->cpu, b, l, s->q, s->k, s->v);
                } else {
                        o->rope_store(be, b, l, s->q, s->k, s->v);
                }
                r = o->sync(be, err);
                if (r < 0)
                        return r;
                attention_batch(c, b, l, s->q, s->att);
                o->cpu_wrote(be, s->att, sizeof(float) * n * q_dim);
                if (c->calib)
                        calib_observe(c->calib->attn_out_max + (size_t)l * q_dim, s->att, n, q_dim);
                o->matmul(be, s->att, n, 1, (const struct npu_weight *[]) { &L->wo }, &s->out_rows);
                o->add(be, s->x, s->out_rows, n * dim);

                o->rmsnorm(be, s->xb, s->x, L->ffn_norm, n);
                if (c->calib)
                        calib_observe(c->calib->ffn_in_max + (size_t)l * dim, s->xb, n, dim);
                const struct npu_weight *gu[2] = { &L->w_gate, &L->w_up };
                float *gu_out[2] = { s->hb, s->hb2 };
                o->matmul(be, s->xb, n, 2, gu, gu_out);
                o->silu_mul(be, s->hb, s->hb2, n);
                if (c->calib)
                        calib_observe(c->calib->ffn_mid_max + (size_t)l * hp->ffn_dim, s->hb, n, hp->ffn_dim);
                o->matmul(be, s->hb, n, 1, (const struct npu_weight *[]) { &L->w_down }, &s->out_rows);
                o->add(be, s->x, s->out_rows, n * dim);
        }
        r = o->sync(be, err);
        if (r < 0)
                return r;

        /* the output head (F16 in quantized models) runs on the cpu, from the cpu's buffers */
        struct backend *cpu = c->cpu;
        int64_t n_out = 0;
        for (int64_t t = 0; t < n; t++) {
                bool want = b->want_logits ? b->want_logits[t] : t == n - 1;
                if (want) {
                        rmsnorm_rows(cpu->s->xb + n_out * dim, s->x + t * dim, m->output_norm, dim, hp->rms_eps, 0,
                                     1);
                        n_out++;
                }
        }
        if (n_out > 0 && logits)
                cpu->ops->matmul(cpu, cpu->s->xb, n_out, 1, (const struct npu_weight *[]) { &m->output }, &logits);
        return 0;
}

int forward(struct npu_ctx *c, const struct npu_batch *b, float *logits, struct npu_err *err)
{
        int r;

        r = check_batch(c, b, err);
        if (r < 0)
                return r;

        if (c->be == c->cpu || c->calib || c->stats.device_lost) {
                r = forward_pass(c, c->cpu, b, logits, err);
        } else {
                struct npu_err derr = {};
                r = forward_pass(c, c->be, b, logits, &derr);
                for (int attempt = 0; r < 0; attempt++) {
                        c->stats.faults++;
                        snprintf(c->stats.last_fault, sizeof(c->stats.last_fault), "%s", derr.msg);
                        if (attempt >= c->npu_retries)
                                break;
                        r = c->be->ops->reset(c->be, &derr);
                        if (r < 0) {
                                c->stats.device_lost = true;
                                snprintf(c->stats.last_fault, sizeof(c->stats.last_fault), "%s", derr.msg);
                                break;
                        }
                        c->stats.retries++;
                        r = forward_pass(c, c->be, b, logits, &derr);
                }
                if (r < 0) {
                        c->stats.cpu_fallbacks++;
                        r = forward_pass(c, c->cpu, b, logits, err);
                } else {
                        c->stats.passes++;
                }
        }
        if (r < 0)
                return r;

        for (int32_t t = 0; t < b->n; t++) {
                int32_t p = b->pos[t] + 1;
                if (p > b->seqs[t]->n_pos)
                        b->seqs[t]->n_pos = p;
        }
        c->n_forward_tokens += b->n;
        return 0;
}
