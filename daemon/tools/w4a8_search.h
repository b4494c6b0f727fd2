/* SPDX-License-Identifier: MIT */
/*
 * npu-quantize's w4a8 layers: SmoothQuant's migration with a strength
 * alpha per layer and matrix group, then int4 quantization (w4a8.h); and
 * the search of those strengths on the calibration data.
 *
 * The search starts from every layer at alpha0 and measures the model as it
 * will run (w4a8 kernels, int8 activations per token) by how far its
 * next-token distributions on the calibration tokens are from the float
 * model's (mean KL divergence: every probability counts, a steadier signal
 * than the loss of the one true token). Each layer in turn, each of its
 * groups (q/k/v behind attn_norm, gate/up behind ffn_norm; with smooth_all
 * also o behind v and down behind up) tries every alpha of a grid (0, 0.1,
 * ..., 1) and keeps the one of least divergence when it gains more than
 * a margin: it never rises above the start's.
 */
#pragma once

#include "runtime.h"
#include "smoothquant.h"
#include "w4a8.h"

#define W4A8_GROUPS 4 /* q/k/v, gate/up, attn output, down */

struct w4a8_layer {
        struct block_q4_0 *q[7]; /* wq, wk, wv, wo, w_gate, w_up, w_down as Q4_0 rows */
        size_t row_bytes[7];
        float *attn_norm, *ffn_norm;
        float *bv; /* the v bias divided by the v -> o smoothing (smooth_all), or NULL: the model's */
};

/* Layer src (layer l of m) smoothed with alpha[group] (when smooth) and quantized with int4 groups of group. */
int w4a8_layer_prepare(const struct npu_model *m, const struct npu_layer *src, int l, const struct calib_stats *cs,
                       const float *alpha, bool smooth, bool smooth_all, int group, struct w4a8_layer *out);
void w4a8_layer_release(struct w4a8_layer *wl);

struct w4a8_search_opts {
        int group;
        bool smooth_all;
};

/*
 * alphas[l][g] hold the start (alpha0 everywhere) and get the choice.
 * rt's model runs w4a8 during the search and is as it was afterwards.
 */
int w4a8_search(struct runtime *rt, const struct calib_stats *cs, const int32_t *ids, int32_t n_ids,
                const struct w4a8_search_opts *o, float (*alphas)[W4A8_GROUPS], struct npu_err *err);
