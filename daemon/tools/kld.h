/* SPDX-License-Identifier: MIT */
/*
 * The engine against another one's logits on the same text: the file
 * llama.cpp's `llama-perplexity --kl-divergence-base FILE` writes. Its
 * layout: "_logits_", then int32 n_ctx, n_vocab, n_chunk, then the
 * n_chunk * n_ctx int32 tokens of the text; then, for each chunk, one
 * record per scored position p in [n_ctx / 2, n_ctx - 1) (the logits at p,
 * which predict token p + 1): float scale, float min_log_prob, then
 * n_vocab uint16 q (the record padded to nv = 2 ((n_vocab + 1) / 2) + 4
 * uint16), where log p(v) = min_log_prob + scale * q[v] (q = 0 at or below
 * the minimum kept, 16 below the maximum). Each chunk is evaluated with
 * its first token replaced by BOS.
 */
#pragma once

#include <stdint.h>

#include "runtime.h"

struct kld_result {
        int32_t n_ctx, n_vocab, n_chunk;
        int64_t positions;
        int64_t top1_same;      /* positions whose most likely token is the same */
        double nll, nll_base;   /* summed negative log-likelihood of the text's tokens */
        double kld;             /* summed KL(base || engine) */
};

/* Open the base file, size a runtime for it (n_ctx, batch) from opts, evaluate every chunk. */
int kld_compare(const char *base_path, const struct runtime_opts *opts, struct kld_result *ret, struct npu_err *err);

/*
 * Write such a file from the engine: text tokenized with BOS, cut into
 * chunks of n_ctx tokens (the text's last partial chunk dropped), the
 * model's log-probabilities at every scored position; *ret_ppl gets the
 * perplexity over them (llama-perplexity's way of scoring).
 */
int kld_save(const char *out_path, const char *text, size_t len, int32_t n_ctx, const struct runtime_opts *opts,
             double *ret_ppl, struct npu_err *err);
