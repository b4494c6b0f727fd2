/* SPDX-License-Identifier: MIT */
#include "generate.h"

const char *stop_reason_name(enum stop_reason r)
{
        switch (r) {
        case STOP_NONE: return "none";
        case STOP_EOS: return "eos";
        case STOP_LENGTH: return "length";
        case STOP_CONTEXT: return "context";
        case STOP_CALLER: return "stopped";
        }
        return "unknown";
}

int prefill(struct npu_ctx *c, struct kv_seq *seq, const int32_t *tokens, int32_t n, float *logits,
            struct npu_err *err)
{
        int32_t chunk = c->max_batch;
        _cleanup_free_ int32_t *pos = malloc(sizeof(int32_t) * chunk);
        _cleanup_free_ struct kv_seq **seqs = malloc(sizeof(*seqs) * chunk);
        int r;

        if (!pos || !seqs)
                return -ENOMEM;
        if (n <= 0)
                return npu_err_set(err, -EINVAL, "nothing to prefill");
        r = kv_seq_reserve(c->kv, seq, seq->n_pos + n);
        if (r < 0)
                return npu_err_set(err, r, "KV cache has no room for %d more positions", n);
        for (int32_t i = 0; i < chunk; i++)
                seqs[i] = seq;
        for (int32_t done = 0; done < n; done += chunk) {
                int32_t m = MIN(chunk, n - done);
                for (int32_t i = 0; i < m; i++)
                        pos[i] = seq->n_pos + i;
                struct npu_batch b = { .n = m, .tokens = tokens + done, .pos = pos, .seqs = seqs };
                r = forward(c, &b, done + m == n ? logits : NULL, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int generate(struct npu_ctx *c, struct kv_seq *seq, struct sampler *smp, const int32_t *prompt, int32_t n_prompt,
             int32_t n_predict, bool stop_at_eos, gen_token_fn fn, void *userdata, struct gen_stats *stats,
             struct npu_err *err)
{
        const struct npu_model *m = c->model;
        _cleanup_free_ float *logits = malloc(sizeof(float) * m->hp.n_vocab);
        int32_t max_pos = c->kv->n_blocks * c->kv->block_size;
        double t0;
        int r;

        *stats = (struct gen_stats) { .n_prompt = n_prompt };
        if (!logits)
                return -ENOMEM;
        if (seq->n_pos + n_prompt > max_pos)
                return npu_err_set(err, -E2BIG, "prompt of %d tokens does not fit the KV cache (%d positions)",
                                   n_prompt, max_pos);
        for (int32_t i = 0; i < n_prompt; i++)
                sampler_accept(smp, prompt[i]);

        t0 = now_ms();
        r = prefill(c, seq, prompt, n_prompt, logits, err);
        if (r < 0)
                return r;
        stats->prefill_ms = now_ms() - t0;

        t0 = now_ms();
        for (;;) {
                int32_t tok = sampler_sample(smp, logits);
                sampler_accept(smp, tok);
                if (stop_at_eos && vocab_is_eog(m->vocab, tok)) {
                        stats->stop = STOP_EOS;
                        break;
                }
                stats->n_generated++;
                if (fn && !fn(tok, userdata)) {
                        stats->stop = STOP_CALLER;
                        break;
                }
                if (stats->n_generated >= n_predict) {
                        stats->stop = STOP_LENGTH;
                        break;
                }
                if (seq->n_pos + 1 > max_pos || kv_seq_reserve(c->kv, seq, seq->n_pos + 1) < 0) {
                        stats->stop = STOP_CONTEXT;
                        break;
                }
                int32_t pos = seq->n_pos;
                struct kv_seq *sp = seq;
                struct npu_batch b = { .n = 1, .tokens = &tok, .pos = &pos, .seqs = &sp };
                r = forward(c, &b, logits, err);
                if (r < 0)
                        return r;
        }
        stats->decode_ms = now_ms() - t0;
        return 0;
}
