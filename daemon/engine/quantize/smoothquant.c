/* SPDX-License-Identifier: MIT */
#include <math.h>

#include "smoothquant.h"

int calib_stats_new(const struct npu_hparams *hp, struct calib_stats **ret)
{
        struct calib_stats *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->n_layers = hp->n_layers;
        c->dim = hp->dim;
        c->attn_in_max = calloc((size_t)hp->n_layers * hp->dim, sizeof(float));
        c->ffn_in_max = calloc((size_t)hp->n_layers * hp->dim, sizeof(float));
        c->q_dim = hparams_q_dim(hp);
        c->attn_out_max = calloc((size_t)hp->n_layers * c->q_dim, sizeof(float));
        c->ffn_dim = hp->ffn_dim;
        c->ffn_mid_max = calloc((size_t)hp->n_layers * hp->ffn_dim, sizeof(float));
        if (!c->attn_in_max || !c->ffn_in_max || !c->attn_out_max || !c->ffn_mid_max) {
                calib_stats_free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

void calib_stats_free(struct calib_stats *c)
{
        if (!c)
                return;
        free(c->attn_in_max);
        free(c->ffn_in_max);
        free(c->attn_out_max);
        free(c->ffn_mid_max);
        free(c);
}

void calib_observe(float *max, const float *x, int64_t n_tok, int64_t dim)
{
        for (int64_t t = 0; t < n_tok; t++)
                for (int64_t j = 0; j < dim; j++)
                        max[j] = fmaxf(max[j], fabsf(x[t * dim + j]));
}

void smooth_factors(const float *act_max, float *const *w, const int64_t *rows, int n_w, int64_t cols, float alpha,
                    float *s)
{
        for (int64_t j = 0; j < cols; j++)
                s[j] = 0;
        /* s temporarily holds max|W_j| over every row of every matrix */
        for (int i = 0; i < n_w; i++)
                for (int64_t r = 0; r < rows[i]; r++)
                        for (int64_t j = 0; j < cols; j++)
                                s[j] = fmaxf(s[j], fabsf(w[i][r * cols + j]));
        for (int64_t j = 0; j < cols; j++) {
                float a = fmaxf(act_max[j], 1e-5f), wm = fmaxf(s[j], 1e-5f);
                float v = powf(a, alpha) / powf(wm, 1.0f - alpha);
                s[j] = isfinite(v) ? fminf(fmaxf(v, 1e-5f), 1e5f) : 1.0f;
        }
}

void smooth_apply(float *norm, float *const *w, const int64_t *rows, int n_w, int64_t cols, const float *s)
{
        for (int64_t j = 0; j < cols; j++)
                norm[j] /= s[j];
        for (int i = 0; i < n_w; i++)
                for (int64_t r = 0; r < rows[i]; r++)
                        for (int64_t j = 0; j < cols; j++)
                                w[i][r * cols + j] *= s[j];
}

void smooth_apply_rows(float *prev, int64_t prev_cols, float *w, int64_t rows, int64_t cols, const float *s)
{
        for (int64_t j = 0; j < cols; j++)
                for (int64_t k = 0; k < prev_cols; k++)
                        prev[j * prev_cols + k] /= s[j];
        for (int64_t r = 0; r < rows; r++)
                for (int64_t j = 0; j < cols; j++)
                        w[r * cols + j] *= s[j];
}
