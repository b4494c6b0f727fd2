/* SPDX-License-Identifier: MIT */
#include <math.h>

#include "cli.h"
#include "kld.h"

struct kld_base {
        char *buf;
        size_t len;
        int32_t n_ctx, n_vocab, n_chunk, nv;
        const int32_t *tokens;
        const uint8_t *records; /* n_chunk * per_chunk records of nv uint16 */
        int32_t per_chunk;
};

static void kld_base_release(struct kld_base *b)
{
        free(b->buf);
}

static int kld_base_open(const char *path, struct kld_base *b, struct npu_err *err)
{
        int r = cli_read_file(path, &b->buf, &b->len);
        if (r < 0)
                return npu_err_set(err, r, "cannot read %s: %s", path, strerror(-r));
        if (b->len < 20 || memcmp(b->buf, "_logits_", 8) != 0)
                return npu_err_set(err, -EBADMSG, "%s is not a llama-perplexity --kl-divergence-base file", path);
        memcpy(&b->n_ctx, b->buf + 8, 4);
        memcpy(&b->n_vocab, b->buf + 12, 4);
        memcpy(&b->n_chunk, b->buf + 16, 4);
        if (b->n_ctx < 4 || b->n_ctx > (1 << 20) || b->n_vocab < 2 || b->n_vocab > (1 << 22) || b->n_chunk < 1 ||
            b->n_chunk > (1 << 20))
                return npu_err_set(err, -EBADMSG, "%s: n_ctx %d, n_vocab %d, n_chunk %d out of range", path, b->n_ctx,
                                   b->n_vocab, b->n_chunk);
        b->nv = 2 * ((b->n_vocab + 1) / 2) + 4;
        b->per_chunk = b->n_ctx - 1 - b->n_ctx / 2;
        const size_t tok_bytes = (size_t)b->n_chunk * b->n_ctx * 4;
        const size_t rec_bytes = (size_t)b->n_chunk * b->per_chunk * b->nv * 2;
        if (b->len != 20 + tok_bytes + rec_bytes)
                return npu_err_set(err, -EBADMSG, "%s: %zu bytes, the header promises %zu", path, b->len,
                                   20 + tok_bytes + rec_bytes);
        b->tokens = (const int32_t *)(const void *)(b->buf + 20);
        b->records = (const uint8_t *)b->buf + 20 + tok_bytes;
        return 0;
}

/* The base's log-probabilities of one scored position, and its most likely token. */
static int32_t base_log_probs(const struct kld_base *b, const uint8_t *rec, double *lp)
{
        float scale, min_lp;
        const uint16_t *q = (const uint16_t *)(const void *)(rec + 8);
        int32_t best = 0;

        memcpy(&scale, rec, 4);
        memcpy(&min_lp, rec + 4, 4);
        for (int32_t v = 0; v < b->n_vocab; v++) {
                lp[v] = (double)min_lp + (double)scale * q[v];
                if (q[v] > q[best])
                        best = v;
        }
        return best;
}

static int32_t log_softmax(const float *logits, int32_t n, double *lp)
{
        int32_t best = 0;
        double sum = 0;
        for (int32_t v = 1; v < n; v++)
                if (logits[v] > logits[best])
                        best = v;
        for (int32_t v = 0; v < n; v++)
                sum += exp((double)logits[v] - logits[best]);
        const double lse = logits[best] + log(sum);
        for (int32_t v = 0; v < n; v++)
                lp[v] = (double)logits[v] - lse;
        return best;
}

int kld_compare(const char *base_path, const struct runtime_opts *opts, struct kld_result *ret, struct npu_err *err)
{
        _cleanup_(runtime_freep) struct runtime *rt = NULL;
        _cleanup_(kld_base_release) struct kld_base b = {};
        int r = kld_base_open(base_path, &b, err);

        if (r < 0)
                return r;
        struct runtime_opts o = *opts;
        o.n_ctx = b.n_ctx;
        o.max_batch = b.n_ctx;
        r = runtime_open(&o, &rt, err);
        if (r < 0)
                return r;
        const int32_t V = rt->model->hp.n_vocab, first = b.n_ctx / 2;
        if (V != b.n_vocab)
                return npu_err_set(err, -EINVAL, "the model has %d tokens, %s %d", V, base_path, b.n_vocab);
        _cleanup_free_ int32_t *tok = malloc(sizeof(int32_t) * b.n_ctx), *pos = malloc(sizeof(int32_t) * b.n_ctx);
        _cleanup_free_ uint8_t *want = malloc(b.n_ctx);
        _cleanup_free_ struct kv_seq **seqs = malloc(sizeof(*seqs) * b.n_ctx);
        _cleanup_free_ float *logits = malloc(sizeof(float) * (size_t)b.per_chunk * V);
        _cleanup_free_ double *lp = malloc(sizeof(double) * V), *lpb = malloc(sizeof(double) * V);
        if (!tok || !pos || !want || !seqs || !logits || !lp || !lpb)
                return -ENOMEM;
        *ret = (struct kld_result) { .n_ctx = b.n_ctx, .n_vocab = b.n_vocab, .n_chunk = b.n_chunk };
        for (int32_t c = 0; c < b.n_chunk; c++) {
                struct kv_seq seq = {};
                const int32_t *ct = b.tokens + (size_t)c * b.n_ctx;
                memcpy(tok, ct, sizeof(int32_t) * b.n_ctx);
                if (rt->model->vocab->bos >= 0)
                        tok[0] = rt->model->vocab->bos;
                for (int32_t i = 0; i < b.n_ctx; i++) {
                        if (tok[i] < 0 || tok[i] >= V)
                                return npu_err_set(err, -EBADMSG, "%s: token %d out of range", base_path, tok[i]);
                        pos[i] = i;
                        seqs[i] = &seq;
                        want[i] = i >= first && i < b.n_ctx - 1;
                }
                r = kv_seq_reserve(rt->kv, &seq, b.n_ctx);
                if (r >= 0) {
                        struct npu_batch batch = { .n = b.n_ctx, .tokens = tok, .pos = pos, .seqs = seqs,
                                                   .want_logits = want };
                        r = forward(rt->ctx, &batch, logits, err);
                }
                kv_seq_release(rt->kv, &seq);
                if (r < 0)
                        return r;
                for (int32_t i = 0; i < b.per_chunk; i++) {
                        const uint8_t *rec = b.records + ((size_t)c * b.per_chunk + i) * b.nv * 2;
                        const int32_t next = ct[first + i + 1];
                        int32_t top = log_softmax(logits + (size_t)i * V, V, lp);
                        int32_t top_base = base_log_probs(&b, rec, lpb);
                        double kl = 0;
                        for (int32_t v = 0; v < V; v++)
                                kl += exp(lpb[v]) * (lpb[v] - lp[v]);
                        ret->positions++;
                        ret->top1_same += top == top_base;
                        ret->nll -= lp[next];
                        ret->nll_base -= lpb[next];
                        ret->kld += kl;
                }
        }
        return 0;
}
