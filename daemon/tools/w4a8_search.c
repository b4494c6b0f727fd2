/* SPDX-License-Identifier: MIT */
#include <math.h>

#include "cli.h"
#include "w4a8_search.h"

#define ALPHA_STEPS 11 /* 0, 0.1, ..., 1 */
/*
 * A new alpha is kept only when it lowers the divergence by more than 3 %:
 * smaller gains on a few thousand calibration tokens are mostly the noise
 * of int4 rounding, and chasing them fits the calibration text (on the
 * small model's held-out text they raise the divergence again).
 */
#define KEEP_MARGIN 0.03

void w4a8_layer_release(struct w4a8_layer *wl)
{
        for (int i = 0; i < 7; i++)
                free(wl->q[i]);
        free(wl->attn_norm);
        free(wl->ffn_norm);
        free(wl->bv);
        *wl = (struct w4a8_layer) {};
}

static float *weight_to_f32(const struct npu_weight *src)
{
        float *f = malloc(sizeof(float) * src->rows * src->cols);
        if (f)
                for (int64_t r = 0; r < src->rows; r++)
                        weight_row_f32(src, r, f + r * src->cols);
        return f;
}

/*
 * The two projections with no norm in front are smoothed through their
 * linear producers: v_proj -> o_proj (only without grouped-query
 * attention, where each v channel feeds one o channel; a v bias is divided
 * with its row) and up_proj -> down_proj.
 */
static int smooth_pairs(const struct npu_model *m, int l, const struct calib_stats *cs, const float *alpha,
                        float **wf, const int64_t *rows, float *bv)
{
        const int64_t dim = m->hp.dim, ffn = m->hp.ffn_dim, q_dim = hparams_q_dim(&m->hp);
        _cleanup_free_ float *s = malloc(sizeof(float) * MAX(MAX(dim, ffn), q_dim));
        if (!s)
                return -ENOMEM;
        if (m->hp.n_kv_heads == m->hp.n_heads) {
                smooth_factors(cs->attn_out_max + (size_t)l * q_dim, wf + 3, rows + 3, 1, q_dim, alpha[2], s);
                smooth_apply_rows(wf[2], dim, wf[3], rows[3], q_dim, s);
                for (int64_t j = 0; bv && j < q_dim; j++)
                        bv[j] /= s[j];
        }
        smooth_factors(cs->ffn_mid_max + (size_t)l * ffn, wf + 6, rows + 6, 1, ffn, alpha[3], s);
        smooth_apply_rows(wf[5], dim, wf[6], rows[6], ffn, s);
        return 0;
}

int w4a8_layer_prepare(const struct npu_model *m, const struct npu_layer *src, int l, const struct calib_stats *cs,
                       const float *alpha, bool smooth, bool smooth_all, int group, struct w4a8_layer *out)
{
        const struct npu_weight *mats = &src->wq;
        const int64_t dim = m->hp.dim;
        float *wf[7] = {};
        int64_t rows[7];
        _cleanup_free_ float *s = malloc(sizeof(float) * dim);
        int r = 0;

        *out = (struct w4a8_layer) {};
        out->attn_norm = malloc(sizeof(float) * dim);
        out->ffn_norm = malloc(sizeof(float) * dim);
        if (!s || !out->attn_norm || !out->ffn_norm)
                r = -ENOMEM;
        for (int i = 0; r >= 0 && i < 7; i++) {
                rows[i] = mats[i].rows;
                wf[i] = weight_to_f32(&mats[i]);
                if (!wf[i])
                        r = -ENOMEM;
        }
        if (r >= 0) {
                memcpy(out->attn_norm, src->attn_norm, sizeof(float) * dim);
                memcpy(out->ffn_norm, src->ffn_norm, sizeof(float) * dim);
        }
        if (r >= 0 && src->bv && smooth && smooth_all) {
                const size_t kv_dim = (size_t)m->hp.n_kv_heads * m->hp.head_dim;
                out->bv = malloc(sizeof(float) * kv_dim);
                if (!out->bv)
                        r = -ENOMEM;
                else
                        memcpy(out->bv, src->bv, sizeof(float) * kv_dim);
        }
        if (r >= 0 && smooth) {
                smooth_factors(cs->attn_in_max + (size_t)l * dim, wf, rows, 3, dim, alpha[0], s);
                smooth_apply(out->attn_norm, wf, rows, 3, dim, s);
                smooth_factors(cs->ffn_in_max + (size_t)l * dim, wf + 4, rows + 4, 2, dim, alpha[1], s);
                smooth_apply(out->ffn_norm, wf + 4, rows + 4, 2, dim, s);
                if (smooth_all)
                        r = smooth_pairs(m, l, cs, alpha, wf, rows, out->bv);
        }
        for (int i = 0; r >= 0 && i < 7; i++) {
                out->row_bytes[i] = (size_t)(mats[i].cols / QK4_0) * sizeof(struct block_q4_0);
                out->q[i] = malloc(out->row_bytes[i] * rows[i]);
                if (!out->q[i]) {
                        r = -ENOMEM;
                        break;
                }
                for (int64_t row = 0; row < rows[i]; row++)
                        w4a8_quantize_row(wf[i] + row * mats[i].cols, mats[i].cols, group,
                                          (struct block_q4_0 *)((uint8_t *)out->q[i] + row * out->row_bytes[i]));
        }
        for (int i = 0; i < 7; i++)
                free(wf[i]);
        if (r < 0)
                w4a8_layer_release(out);
        return r;
}

/* The model's layer l runs wl (the weights keep their shapes; only type, data and norms change). */
static void layer_use(struct npu_model *m, int l, const struct npu_layer *orig, const struct w4a8_layer *wl)
{
        struct npu_layer *L = &m->layers[l];
        struct npu_weight *ws = &L->wq;
        const struct npu_weight *os = &orig->wq;

        for (int i = 0; i < 7; i++)
                ws[i] = (struct npu_weight) { .type = GGML_TYPE_Q4_0, .rows = os[i].rows, .cols = os[i].cols,
                                              .data = wl->q[i], .row_bytes = wl->row_bytes[i] };
        L->attn_norm = wl->attn_norm;
        L->ffn_norm = wl->ffn_norm;
        L->bv = wl->bv ? wl->bv : orig->bv;
}

struct search_state {
        struct runtime *rt;
        struct npu_layer *orig;    /* the float model's layers */
        struct w4a8_layer *wl;     /* what each layer runs now */
        const struct calib_stats *cs;
        const struct w4a8_search_opts *o;
        const int32_t *ids;
        int32_t n_ids;
        float *ref;   /* the float model's log-probabilities at every scored position */
        int64_t n_ref;
};

/*
 * The model's log-probabilities at every position of the calibration
 * tokens, in windows of the context, each opened by BOS (as perplexity.c
 * walks them): into ref (n_ref x n_vocab, from the float model), or the
 * mean KL divergence of ref from them (*ret_kld).
 */
static int walk_calibration(struct search_state *st, bool fill_ref, double *ret_kld, struct npu_err *err)
{
        struct runtime *rt = st->rt;
        const struct npu_model *m = rt->model;
        const int32_t V = m->hp.n_vocab, W = MIN(rt->n_ctx, rt->ctx->max_batch);
        _cleanup_free_ int32_t *tok = malloc(sizeof(int32_t) * W), *pos = malloc(sizeof(int32_t) * W);
        _cleanup_free_ uint8_t *want = malloc(W);
        _cleanup_free_ struct kv_seq **seqs = malloc(sizeof(*seqs) * W);
        _cleanup_free_ float *logits = malloc(sizeof(float) * (size_t)W * V);
        double kld = 0;
        int64_t at = 0;
        int r;

        if (!tok || !pos || !want || !seqs || !logits)
                return -ENOMEM;
        for (int32_t start = 0; start < st->n_ids; start += W - 1) {
                struct kv_seq seq = {};
                const int32_t len = MIN(W - 1, st->n_ids - start) + 1;
                tok[0] = m->vocab->bos >= 0 ? m->vocab->bos : st->ids[start];
                memcpy(tok + 1, st->ids + start, sizeof(int32_t) * (len - 1));
                for (int32_t i = 0; i < len; i++) {
                        pos[i] = i;
                        want[i] = i < len - 1;
                        seqs[i] = &seq;
                }
                r = kv_seq_reserve(rt->kv, &seq, len);
                if (r >= 0) {
                        struct npu_batch b = { .n = len, .tokens = tok, .pos = pos, .seqs = seqs, .want_logits = want };
                        r = forward(rt->ctx, &b, logits, err);
                }
                kv_seq_release(rt->kv, &seq);
                if (r < 0)
                        return r;
                for (int32_t i = 0; i < len - 1 && at < st->n_ref; i++, at++) {
                        const float *lg = logits + (size_t)i * V;
                        float *ref = st->ref + (size_t)at * V;
                        float max = lg[0];
                        double sum = 0;
                        for (int32_t v = 1; v < V; v++)
                                max = fmaxf(max, lg[v]);
                        for (int32_t v = 0; v < V; v++)
                                sum += exp((double)lg[v] - max);
                        const double lse = max + log(sum);
                        for (int32_t v = 0; v < V; v++) {
                                if (fill_ref)
                                        ref[v] = (float)(lg[v] - lse);
                                else
                                        kld += exp((double)ref[v]) * ((double)ref[v] - (lg[v] - lse));
                        }
                }
        }
        if (ret_kld)
                *ret_kld = kld / (double)st->n_ref;
        return 0;
}

static int calib_loss(struct search_state *st, double *ret, struct npu_err *err)
{
        return walk_calibration(st, false, ret, err);
}

/* Layer l with alphas a: its loss; kept when below *best (then *best is it), else layer l is put back. */
static int try_alphas(struct search_state *st, int l, const float *a, double *best, bool *kept, struct npu_err *err)
{
        struct npu_model *m = st->rt->model;
        struct w4a8_layer cand;
        double loss;
        int r = w4a8_layer_prepare(m, &st->orig[l], l, st->cs, a, true, st->o->smooth_all, st->o->group, &cand);

        if (r < 0)
                return r;
        layer_use(m, l, &st->orig[l], &cand);
        r = calib_loss(st, &loss, err);
        *kept = r >= 0 && loss < *best * (1.0 - KEEP_MARGIN);
        if (*kept) {
                w4a8_layer_release(&st->wl[l]);
                st->wl[l] = cand;
                *best = loss;
        } else {
                layer_use(m, l, &st->orig[l], &st->wl[l]);
                w4a8_layer_release(&cand);
        }
        return r;
}

static int search_layers(struct search_state *st, float (*alphas)[W4A8_GROUPS], struct npu_err *err)
{
        struct npu_model *m = st->rt->model;
        const int groups = st->o->smooth_all ? 4 : 2;
        double best, start;
        int r;

        for (int l = 0; l < m->hp.n_layers; l++) {
                r = w4a8_layer_prepare(m, &st->orig[l], l, st->cs, alphas[l], true, st->o->smooth_all, st->o->group,
                                       &st->wl[l]);
                if (r < 0)
                        return r;
                layer_use(m, l, &st->orig[l], &st->wl[l]);
        }
        r = forward_scratch_alloc_quant(st->rt->ctx->s, m);
        if (r >= 0)
                r = calib_loss(st, &best, err);
        if (r < 0)
                return r;
        start = best;
        fprintf(stderr, "search: KL divergence from the float model %.6f with every layer at alpha %.2f\n", best,
                alphas[0][0]);
        for (int l = 0; l < m->hp.n_layers; l++) {
                for (int g = 0; g < groups; g++) {
                        if (g == 2 && m->hp.n_kv_heads != m->hp.n_heads)
                                continue; /* o_proj is not smoothed under grouped-query attention */
                        for (int i = 0; i < ALPHA_STEPS; i++) {
                                float a[W4A8_GROUPS];
                                bool kept;
                                memcpy(a, alphas[l], sizeof(a));
                                a[g] = (float)i / (ALPHA_STEPS - 1);
                                if (fabsf(a[g] - alphas[l][g]) < 1e-6f)
                                        continue;
                                r = try_alphas(st, l, a, &best, &kept, err);
                                if (r < 0)
                                        return r;
                                if (kept)
                                        alphas[l][g] = a[g];
                        }
                }
                fprintf(stderr, "search: layer %d alpha %.1f (q/k/v) %.1f (gate/up), KL divergence %.6f\n", l,
                        alphas[l][0], alphas[l][1], best);
        }
        fprintf(stderr, "search: KL divergence %.6f -> %.6f\n", start, best);
        return 0;
}

int w4a8_search(struct runtime *rt, const struct calib_stats *cs, const int32_t *ids, int32_t n_ids,
                const struct w4a8_search_opts *o, float (*alphas)[W4A8_GROUPS], struct npu_err *err)
{
        struct npu_model *m = rt->model;
        const int L = m->hp.n_layers;
        _cleanup_free_ struct npu_layer *orig = malloc(sizeof(*orig) * L);
        _cleanup_free_ struct w4a8_layer *wl = calloc(L, sizeof(*wl));
        int r;

        if (!orig || !wl)
                return -ENOMEM;
        struct search_state st = { .rt = rt, .orig = orig, .wl = wl, .cs = cs, .o = o, .ids = ids, .n_ids = n_ids,
                                   .n_ref = n_ids };
        _cleanup_free_ float *ref = st.ref = malloc(sizeof(float) * (size_t)n_ids * m->hp.n_vocab);
        if (!ref)
                return -ENOMEM;
        /* the float model's distributions first */
        r = walk_calibration(&st, true, NULL, err);
        if (r < 0)
                return r;
        memcpy(orig, m->layers, sizeof(*orig) * L);
        m->precision = NPU_PRECISION_W4A8;
        r = search_layers(&st, alphas, err);
        memcpy(m->layers, orig, sizeof(*orig) * L);
        m->precision = NPU_PRECISION_FLOAT;
        for (int l = 0; l < L; l++)
                w4a8_layer_release(&wl[l]);
        return r;
}
