/* SPDX-License-Identifier: MIT */
/*
 * Perplexity over windows of the context length: each window starts with
 * BOS (or, for vocabularies that add none, the token before it) and every
 * following token is scored given the ones before it.
 */
#include <math.h>

#include "runtime.h"

static double token_nll(const float *logits, int32_t n_vocab, int32_t target)
{
        float max = logits[0];
        double sum = 0;
        for (int32_t i = 1; i < n_vocab; i++)
                max = fmaxf(max, logits[i]);
        for (int32_t i = 0; i < n_vocab; i++)
                sum += exp((double)logits[i] - max);
        return log(sum) - ((double)logits[target] - max);
}

int perplexity(struct runtime *rt, const int32_t *ids, int32_t n, double *ret_nll, int64_t *ret_count,
               struct npu_err *err)
{
        const struct npu_model *m = rt->model;
        const int32_t V = m->hp.n_vocab, W = MIN(rt->n_ctx, rt->ctx->max_batch);
        _cleanup_free_ int32_t *tok = malloc(sizeof(int32_t) * W), *pos = malloc(sizeof(int32_t) * W);
        _cleanup_free_ uint8_t *want = malloc(W);
        _cleanup_free_ struct kv_seq **seqs = malloc(sizeof(*seqs) * W);
        _cleanup_free_ float *logits = malloc(sizeof(float) * (size_t)W * V);
        const bool bos = m->vocab->bos >= 0 && m->vocab->add_bos;
        double nll = 0;
        int64_t count = 0;
        int r;

        if (!tok || !pos || !want || !seqs || !logits)
                return -ENOMEM;
        if (W < 2 || n < (bos ? 1 : 2))
                return npu_err_set(err, -EINVAL, "text or context too short for perplexity");
        for (int32_t start = bos ? 0 : 1; start < n; start += W - 1) {
                struct kv_seq seq = {};
                int32_t len = MIN(W - 1, n - start) + 1;
                tok[0] = bos ? m->vocab->bos : ids[start - 1];
                memcpy(tok + 1, ids + start, sizeof(int32_t) * (len - 1));
                for (int32_t i = 0; i < len; i++) {
                        pos[i] = i;
                        want[i] = i < len - 1;
                        seqs[i] = &seq;
                }
                r = kv_seq_reserve(rt->kv, &seq, len);
                if (r < 0)
                        return npu_err_set(err, r, "KV cache too small for a window of %d", len);
                struct npu_batch b = { .n = len, .tokens = tok, .pos = pos, .seqs = seqs, .want_logits = want };
                r = forward(rt->ctx, &b, logits, err);
                kv_seq_release(rt->kv, &seq);
                if (r < 0)
                        return r;
                for (int32_t i = 0; i < len - 1; i++) {
                        nll += token_nll(logits + (size_t)i * V, V, tok[i + 1]);
                        count++;
                }
        }
        *ret_nll = nll;
        *ret_count = count;
        return 0;
}
