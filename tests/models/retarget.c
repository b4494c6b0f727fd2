/* SPDX-License-Identifier: MIT */
/*
 * retarget IN.gguf OUT.gguf llama3|qwen2|qwen3: a trained f32 Llama model
 * (the small model in ../shared) rewritten as another architecture, so that
 * the new architectures' perplexity on real text means something (a model
 * with random weights scores any text about as badly as any other).
 *
 *   qwen2:  the same function: q/k rows regrouped from adjacent pairs to
 *           halves (Qwen's RoPE) and zero biases (no nonzero bias keeps the
 *           function: RoPE turns even a k bias into a score that depends on
 *           the key's position);
 *   llama3: rope_freqs.weight from Llama 3.2's rope_scaling (on this model's
 *           128 positions it barely moves the slowest pairs);
 *   qwen3:  q/k rows regrouped as for qwen2, plus per-head q/k RMSNorm with
 *           weights of one: a different function of the trained weights.
 */
#include "gguf.h"
#include "model.h"

struct out {
        struct gguf_writer *w;
        const struct npu_model *m;
        const char *arch;
        struct npu_err err;
};

static bool skip_model_keys(const char *key)
{
        return strncmp(key, "tokenizer.", 10) != 0;
}

static int add_keys(struct out *o)
{
        const struct npu_hparams *hp = &o->m->hp;
        char k[96];
        int r = 0;

#define KEY(s) (snprintf(k, sizeof(k), "%s.%s", o->arch[0] == 'l' ? "llama" : o->arch, s), k)
        r |= gguf_writer_add_str(o->w, "general.architecture", o->arch[0] == 'l' ? "llama" : o->arch);
        r |= gguf_writer_add_str(o->w, "general.name", "aidreams-retargeted");
        r |= gguf_writer_add_u32(o->w, KEY("embedding_length"), hp->dim);
        r |= gguf_writer_add_u32(o->w, KEY("block_count"), hp->n_layers);
        r |= gguf_writer_add_u32(o->w, KEY("attention.head_count"), hp->n_heads);
        r |= gguf_writer_add_u32(o->w, KEY("attention.head_count_kv"), hp->n_kv_heads);
        r |= gguf_writer_add_u32(o->w, KEY("feed_forward_length"), hp->ffn_dim);
        r |= gguf_writer_add_u32(o->w, KEY("context_length"), hp->n_ctx_train);
        r |= gguf_writer_add_f32(o->w, KEY("rope.freq_base"), hp->rope_base);
        r |= gguf_writer_add_f32(o->w, KEY("attention.layer_norm_rms_epsilon"), hp->rms_eps);
        if (strcmp(o->arch, "qwen3") == 0) {
                r |= gguf_writer_add_u32(o->w, KEY("attention.key_length"), hp->head_dim);
                r |= gguf_writer_add_u32(o->w, KEY("attention.value_length"), hp->head_dim);
        }
#undef KEY
        r |= gguf_writer_copy_kv(o->w, o->m->gguf, skip_model_keys);
        return r < 0 ? -ENOMEM : 0;
}

static int add_tensor(struct out *o, const char *name, int64_t rows, int64_t cols)
{
        int64_t ne[2] = { cols, rows };
        return gguf_writer_add_tensor(o->w, name, GGML_TYPE_F32, rows > 1 ? 2 : 1, ne);
}

static bool halves(const struct out *o)
{
        return strcmp(o->arch, "qwen2") == 0 || strcmp(o->arch, "qwen3") == 0;
}

/* Source row of row r: halves layout j < hd/2 takes adjacent pair element 2j, the rest 2(j - hd/2) + 1. */
static int64_t source_row(int64_t r, int32_t hd)
{
        int64_t j = r % hd, base = r - j;
        return base + (j < hd / 2 ? 2 * j : 2 * (j - hd / 2) + 1);
}

static int write_matrix(struct out *o, const struct npu_weight *w, bool regroup)
{
        _cleanup_free_ float *row = malloc(sizeof(float) * w->cols);
        if (!row)
                return -ENOMEM;
        for (int64_t r = 0; r < w->rows; r++) {
                weight_row_f32(w, regroup ? source_row(r, o->m->hp.head_dim) : r, row);
                int e = gguf_writer_write_tensor_part(o->w, row, sizeof(float) * w->cols, &o->err);
                if (e < 0)
                        return e;
        }
        return gguf_writer_end_tensor(o->w, &o->err);
}

static int write_vector(struct out *o, const float *v, int64_t n)
{
        return gguf_writer_write_tensor(o->w, v, sizeof(float) * n, &o->err);
}

static const char *const mats[7] = { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down" };

static int plan(struct out *o)
{
        const struct npu_model *m = o->m;
        const struct npu_hparams *hp = &m->hp;
        const int64_t kv = (int64_t)hp->n_kv_heads * hp->head_dim;
        char name[96];
        int r = add_tensor(o, "token_embd.weight", hp->n_vocab, hp->dim);

        r |= add_tensor(o, "output_norm.weight", 1, hp->dim);
        if (m->output.data != m->tok_embd.data)
                r |= add_tensor(o, "output.weight", hp->n_vocab, hp->dim);
        if (strcmp(o->arch, "llama3") == 0)
                r |= add_tensor(o, "rope_freqs.weight", 1, hp->head_dim / 2);
        for (int l = 0; l < hp->n_layers; l++) {
                const struct npu_weight *ws = &m->layers[l].wq;
                snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", l);
                r |= add_tensor(o, name, 1, hp->dim);
                snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", l);
                r |= add_tensor(o, name, 1, hp->dim);
                for (int i = 0; strcmp(o->arch, "qwen2") == 0 && i < 3; i++) {
                        snprintf(name, sizeof(name), "blk.%d.%s.bias", l, mats[i]);
                        r |= add_tensor(o, name, 1, i ? kv : hparams_q_dim(hp));
                }
                for (int i = 0; strcmp(o->arch, "qwen3") == 0 && i < 2; i++) {
                        snprintf(name, sizeof(name), "blk.%d.%s_norm.weight", l, mats[i]);
                        r |= add_tensor(o, name, 1, hp->head_dim);
                }
                for (int i = 0; i < 7; i++) {
                        snprintf(name, sizeof(name), "blk.%d.%s.weight", l, mats[i]);
                        r |= add_tensor(o, name, ws[i].rows, ws[i].cols);
                }
        }
        return r < 0 ? -ENOMEM : 0;
}

static int write_all(struct out *o)
{
        const struct npu_model *m = o->m;
        const struct npu_hparams *hp = &m->hp;
        const int64_t kv = (int64_t)hp->n_kv_heads * hp->head_dim;
        _cleanup_free_ float *zeros = calloc(MAX(hparams_q_dim(hp), hp->dim), sizeof(float));
        _cleanup_free_ float *ones = malloc(sizeof(float) * hp->head_dim);
        _cleanup_free_ float *freqs = malloc(sizeof(float) * hp->head_dim / 2);
        int r;

        if (!zeros || !ones || !freqs)
                return -ENOMEM;
        for (int32_t i = 0; i < hp->head_dim; i++)
                ones[i] = 1.0f;
        const struct rope_llama3 scaling = { 32.0f, 1.0f, 4.0f, 8192.0f };
        r = rope_llama3_factors(hp->head_dim, hp->rope_base, &scaling, freqs, &o->err);
        if (r < 0)
                return r;

        r = write_matrix(o, &m->tok_embd, false);
        if (r >= 0)
                r = write_vector(o, m->output_norm, hp->dim);
        if (r >= 0 && m->output.data != m->tok_embd.data)
                r = write_matrix(o, &m->output, false);
        if (r >= 0 && strcmp(o->arch, "llama3") == 0)
                r = write_vector(o, freqs, hp->head_dim / 2);
        for (int l = 0; r >= 0 && l < hp->n_layers; l++) {
                const struct npu_layer *L = &m->layers[l];
                const struct npu_weight *ws = &L->wq;
                r = write_vector(o, L->attn_norm, hp->dim);
                if (r >= 0)
                        r = write_vector(o, L->ffn_norm, hp->dim);
                if (r >= 0 && strcmp(o->arch, "qwen2") == 0) {
                        r = write_vector(o, zeros, hparams_q_dim(hp));
                        if (r >= 0)
                                r = write_vector(o, zeros, kv);
                        if (r >= 0)
                                r = write_vector(o, zeros, kv);
                }
                for (int i = 0; r >= 0 && strcmp(o->arch, "qwen3") == 0 && i < 2; i++)
                        r = write_vector(o, ones, hp->head_dim);
                for (int i = 0; r >= 0 && i < 7; i++)
                        r = write_matrix(o, &ws[i], i < 2 && halves(o));
        }
        return r;
}

int main(int argc, char **argv)
{
        struct npu_model *m = NULL;
        struct out o = {};
        int r;

        if (argc != 4 || (strcmp(argv[3], "llama3") && strcmp(argv[3], "qwen2") && strcmp(argv[3], "qwen3"))) {
                fprintf(stderr, "usage: retarget IN.gguf OUT.gguf llama3|qwen2|qwen3\n");
                return 2;
        }
        r = model_load(argv[1], &m, &o.err);
        if (r >= 0 && (m->hp.arch != NPU_ARCH_LLAMA || m->precision != NPU_PRECISION_FLOAT || m->rope_freqs))
                r = npu_err_set(&o.err, -EINVAL, "%s is not a plain float llama model", argv[1]);
        o.m = m;
        o.arch = argv[3];
        if (r >= 0)
                r = gguf_writer_new(argv[2], &o.w, &o.err);
        if (r >= 0)
                r = add_keys(&o);
        if (r >= 0)
                r = plan(&o);
        if (r >= 0)
                r = gguf_writer_write_header(o.w, &o.err);
        if (r >= 0)
                r = write_all(&o);
        if (r >= 0)
                r = gguf_writer_finish(o.w, &o.err);
        gguf_writer_free(o.w);
        model_free(m);
        if (r < 0) {
                fprintf(stderr, "retarget: %s\n", o.err.msg[0] ? o.err.msg : strerror(-r));
                return 1;
        }
        return 0;
}
