/* SPDX-License-Identifier: MIT */
/*
 * SmoothQuant: per input channel j of the matrices that follow an RMSNorm,
 *   s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)   (clamped to [1e-5, 1e5])
 * the norm weight is divided by s and the matrices' column j multiplied by
 * s, so the float model computes the same function while activation outliers
 * move into the weights, where per-channel int8 handles them.
 */
#pragma once

#include <stdint.h>

#include "model.h"

/* Per-channel absolute maxima of the inputs of q/k/v and gate/up, per layer. */
struct calib_stats {
        int32_t n_layers;
        int32_t dim;
        float *attn_in_max; /* [n_layers][dim] */
        float *ffn_in_max;  /* [n_layers][dim] */
        /* inputs of the layers without a norm in front: attention output and down projection */
        float *attn_out_max; /* [n_layers][q_dim] */
        int32_t q_dim;
        float *ffn_mid_max;  /* [n_layers][ffn_dim] */
        int32_t ffn_dim;
        int64_t n_tokens;
};

int calib_stats_new(const struct npu_hparams *hp, struct calib_stats **ret);
void calib_stats_free(struct calib_stats *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct calib_stats *, calib_stats_free);
/* max[j] = max(max[j], |x[t][j]|) over n_tok rows of dim. */
void calib_observe(float *max, const float *x, int64_t n_tok, int64_t dim);

/* s from activation maxima and the n_w matrices (rows[i] x cols, row-major f32) that read the same input. */
void smooth_factors(const float *act_max, float *const *w, const int64_t *rows, int n_w, int64_t cols, float alpha,
                    float *s);
/* norm[j] /= s[j]; w[i][r][j] *= s[j]. */
void smooth_apply(float *norm, float *const *w, const int64_t *rows, int n_w, int64_t cols, const float *s);
/*
 * The same through a linear producer instead of a norm: row j of prev (the
 * matrix whose output channel j feeds channel j of w, as v_proj feeds
 * o_proj and up_proj feeds down_proj through silu(gate) * up) is divided by s[j].
 */
void smooth_apply_rows(float *prev, int64_t prev_cols, float *w, int64_t rows, int64_t cols, const float *s);
