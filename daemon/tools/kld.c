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

/* One scored position as the format keeps it: scale, min_log_prob, then a uint16 per token. */
static void encode_record(const float *logits, int32_t V, int32_t nv, uint16_t *rec)
{
        float max = logits[0], min = logits[0];
        double sum = 0;
        for (int32_t v = 1; v < V; v++) {
                max = fmaxf(max, logits[v]);
                min = fminf(min, logits[v]);
        }
        min = fmaxf(min, max - 16);
        for (int32_t v = 0; v < V; v++)
                sum += exp((double)logits[v] - max);
        const float lse = (float)log(sum), scale = (max - min) / 65535.0f, min_lp = min - max - lse;
        memset(rec, 0, sizeof(uint16_t) * nv);
        memcpy(rec, &scale, 4);
        memcpy(rec + 2, &min_lp, 4);
        for (int32_t v = 0; scale > 0 && v < V; v++)
                rec[4 + v] = logits[v] > min ? (uint16_t)lrintf((logits[v] - min) / scale) : 0;
}

static int write_all(FILE *f, const void *p, size_t n)
{
        return fwrite(p, 1, n, f) == n ? 0 : -EIO;
}

int kld_save(const char *out_path, const char *text, size_t len, int32_t n_ctx, const struct runtime_opts *opts,
             double *ret_ppl, struct npu_err *err)
{
        _cleanup_(runtime_freep) struct runtime *rt = NULL;
        _cleanup_free_ int32_t *ids = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        size_t n;
        struct runtime_opts o = *opts;
        o.n_ctx = n_ctx;
        o.max_batch = n_ctx;
        int r = runtime_open(&o, &rt, err);

        if (r < 0)
                return r;
        r = vocab_tokenize(rt->model->vocab, text, len, true, false, &ids, &n);
        if (r < 0)
                return npu_err_set(err, r, "tokenizing the text failed");
        const int32_t V = rt->model->hp.n_vocab, n_chunk = (int32_t)(n / (size_t)n_ctx), first = n_ctx / 2;
        const int32_t nv = 2 * ((V + 1) / 2) + 4, per_chunk = n_ctx - 1 - first;
        if (n_chunk < 1)
                return npu_err_set(err, -EINVAL, "the text has %zu tokens, fewer than one chunk of %d", n, n_ctx);
        _cleanup_free_ int32_t *tok = malloc(sizeof(int32_t) * n_ctx), *pos = malloc(sizeof(int32_t) * n_ctx);
        _cleanup_free_ uint8_t *want = malloc(n_ctx);
        _cleanup_free_ struct kv_seq **seqs = malloc(sizeof(*seqs) * n_ctx);
        _cleanup_free_ float *logits = malloc(sizeof(float) * (size_t)per_chunk * V);
        _cleanup_free_ uint16_t *rec = malloc(sizeof(uint16_t) * nv);
        if (!tok || !pos || !want || !seqs || !logits || !rec)
                return -ENOMEM;
        f = fopen(out_path, "we");
        if (!f)
                return npu_err_set(err, -errno, "cannot create %s: %s", out_path, strerror(errno));
        r = write_all(f, "_logits_", 8);
        if (r >= 0)
                r = write_all(f, &n_ctx, 4);
        if (r >= 0)
                r = write_all(f, &V, 4);
        if (r >= 0)
                r = write_all(f, &n_chunk, 4);
        if (r >= 0)
                r = write_all(f, ids, sizeof(int32_t) * (size_t)n_chunk * n_ctx);
        double nll = 0;
        for (int32_t c = 0; r >= 0 && c < n_chunk; c++) {
                struct kv_seq seq = {};
                memcpy(tok, ids + (size_t)c * n_ctx, sizeof(int32_t) * n_ctx);
                if (rt->model->vocab->bos >= 0)
                        tok[0] = rt->model->vocab->bos;
                for (int32_t i = 0; i < n_ctx; i++) {
                        pos[i] = i;
                        seqs[i] = &seq;
                        want[i] = i >= first && i < n_ctx - 1;
                }
                r = kv_seq_reserve(rt->kv, &seq, n_ctx);
                if (r >= 0) {
                        struct npu_batch b = { .n = n_ctx, .tokens = tok, .pos = pos, .seqs = seqs, .want_logits = want };
                        r = forward(rt->ctx, &b, logits, err);
                }
                kv_seq_release(rt->kv, &seq);
                for (int32_t i = 0; r >= 0 && i < per_chunk; i++) {
                        const float *lg = logits + (size_t)i * V;
                        encode_record(lg, V, nv, rec);
                        r = write_all(f, rec, sizeof(uint16_t) * nv);
                        /* the text's next token, scored exactly */
                        const int32_t next = ids[(size_t)c * n_ctx + first + i + 1];
                        float max = lg[0];
                        double sum = 0;
                        for (int32_t v = 1; v < V; v++)
                                max = fmaxf(max, lg[v]);
                        for (int32_t v = 0; v < V; v++)
                                sum += exp((double)lg[v] - max);
                        nll += log(sum) + max - lg[next];
                }
        }
        if (r >= 0 && fflush(f) != 0)
                r = -EIO;
        if (r < 0) {
                unlink(out_path);
                return err->msg[0] ? r : npu_err_set(err, r, "writing %s failed: %s", out_path, strerror(-r));
        }
        *ret_ppl = exp(nll / ((double)n_chunk * per_chunk));
        return 0;
}
