/* SPDX-License-Identifier: MIT */
/*
 * npu-mkmodel: writes a model GGUF with random weights (fixed seed), in f32,
 * f16, directly in w8a8/w8a16 (int8 weights + per-channel scales) or in a
 * GGUF block type (q4_0 .. q6_k, q4_k_m, q5_k_m: quant_presets.h), so
 * benchmarks and tests need no multi-gigabyte float file.
 *   npu-mkmodel [--arch llama|llama3|qwen2|qwen3] --shape NAME --type f32|f16|w8a8|w8a16|q4_k_m|... -o OUT
 *               [--seed S] [--vocab GGUF] [--rope-scaling TYPE:FACTOR]
 * --arch picks the architecture's features: llama3 (Llama 3.2: rope base
 * 500000, rope_freqs.weight from rope_scaling llama3, tied embeddings, GQA),
 * qwen2 (q/k/v biases, rope base 1e6, tied embeddings, GQA), qwen3 (q/k
 * RMSNorm per head, head dimension from key_length, here twice dim / heads
 * on the small shape). Their vocabulary comes from --vocab (the tokenizer.*
 * keys of a GGUF, e.g. ../shared/tokenizer/ggml-vocab-qwen2.gguf); without
 * it, the synthetic SentencePiece-style one of the shape's size (for tests
 * of the architecture that need neither its tokenizer nor its large vocabulary).
 * --rope-scaling writes <arch>.rope.scaling.type and .factor as given (any
 * type: tests check that the ones the engine lacks are refused).
 */
#include <getopt.h>
#include <math.h>

#include "cli.h"
#include "quant_presets.h"
#include "quantize_blocks.h"
#include "fp16.h"
#include "gguf.h"
#include "model.h"

struct shape {
        const char *name;
        int32_t dim, n_layers, n_heads, n_kv_heads, ffn, vocab, ctx, head_dim;
};

static const struct shape shapes[] = {
        { "small", 64, 2, 4, 4, 172, 512, 128, 0 },
        { "tinyllama", 2048, 22, 32, 4, 5632, 32000, 2048, 0 },
        { "llama2-7b", 4096, 32, 32, 32, 11008, 32000, 4096, 0 },
        { "llama3.2-1b", 2048, 16, 32, 8, 8192, 128256, 8192, 64 },
        { "qwen2.5-0.5b", 896, 24, 14, 2, 4864, 151936, 8192, 64 },
        { "qwen3-0.6b", 1024, 28, 16, 8, 3072, 151936, 8192, 128 },
};

struct arch {
        const char *name;
        const char *gguf_arch; /* general.architecture and the keys' prefix */
        float rope_base;
        bool tied, biases, qk_norm, rope_freqs;
        /* on the small shape: grouped-query attention, and a head dimension of 2 * dim / heads */
        bool gqa, wide_heads;
};

static const struct arch archs[] = {
        { "llama", "llama", 10000.0f, false, false, false, false, false, false },
        { "llama3", "llama", 500000.0f, true, false, false, true, true, false },
        { "qwen2", "qwen2", 1000000.0f, true, true, false, false, true, false },
        { "qwen3", "qwen3", 1000000.0f, true, false, true, false, true, true },
};

/* Llama 3.2's rope_scaling */
static const struct rope_llama3 llama3_scaling = { 32.0f, 1.0f, 4.0f, 8192.0f };

struct mk {
        const struct arch *a;
        struct shape s;
        const char *type;
        const struct quant_preset *preset; /* --type q4_k_m and the other GGUF block types */
        const char *out;
        const char *vocab_path;
        uint64_t seed;
        uint64_t rng;
        float *rope_freqs;
        char *scaling_type;
        float scaling_factor;
};

static uint64_t next(struct mk *m)
{
        m->rng ^= m->rng << 13;
        m->rng ^= m->rng >> 7;
        m->rng ^= m->rng << 17;
        return m->rng;
}

/* uniform in [-1, 1) */
static float unif(struct mk *m)
{
        return (float)((int64_t)(next(m) >> 40) - (1 << 23)) / (float)(1 << 23);
}

static bool quantized(const struct mk *m)
{
        return strcmp(m->type, "w8a8") == 0 || strcmp(m->type, "w8a16") == 0;
}

static bool tokenizer_key(const char *key)
{
        return strncmp(key, "tokenizer.", 10) != 0;
}

/* The vocabulary file's tokenizer.* keys; its token count becomes the model's. */
static int add_vocab_file(struct gguf_writer *w, struct mk *m, struct npu_err *err)
{
        _cleanup_(gguf_freep) struct gguf *g = NULL;
        const struct gguf_kv *tok;
        int r = gguf_open(m->vocab_path, &g, err);

        if (r < 0)
                return r;
        r = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tok, err);
        if (r < 0)
                return npu_err_set(err, r, "%s has no tokenizer", m->vocab_path);
        if (tok->arr_n == 0 || tok->arr_n > (1u << 24))
                return npu_err_set(err, -EINVAL, "%s has %llu tokens", m->vocab_path, (unsigned long long)tok->arr_n);
        m->s.vocab = (int32_t)tok->arr_n;
        return gguf_writer_copy_kv(w, g, tokenizer_key) < 0 ? -ENOMEM : 0;
}

static int add_vocab(struct gguf_writer *w, struct mk *m, struct npu_err *err)
{
        int32_t n = m->s.vocab;
        if (m->vocab_path)
                return add_vocab_file(w, m, err);
        /* a synthetic vocabulary: unk, bos, eos, 256 byte pieces, then made-up words */
        _cleanup_free_ char **toks = calloc(n, sizeof(char *));
        _cleanup_free_ float *scores = calloc(n, sizeof(float));
        _cleanup_free_ int32_t *types = calloc(n, sizeof(int32_t));
        int r = 0;
        if (!toks || !scores || !types)
                return -ENOMEM;
        for (int32_t i = 0; i < n && r >= 0; i++) {
                if (i == 0)
                        r = asprintf(&toks[i], "<unk>");
                else if (i == 1)
                        r = asprintf(&toks[i], "<s>");
                else if (i == 2)
                        r = asprintf(&toks[i], "</s>");
                else if (i < 259)
                        r = asprintf(&toks[i], "<0x%02X>", i - 3);
                else if (i < 259 + 26)
                        r = asprintf(&toks[i], "%c", 'a' + i - 259);
                else if (i == 259 + 26)
                        r = asprintf(&toks[i], "\xe2\x96\x81");
                else
                        r = asprintf(&toks[i], "\xe2\x96\x81%c%c%d", 'a' + i % 26, 'a' + (i / 26) % 26, i);
                types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
                scores[i] = i < 259 ? 0 : -(float)i;
        }
        if (r >= 0)
                r = gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
        if (r >= 0)
                r = gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", (const char *const *)toks, n);
        if (r >= 0)
                r = gguf_writer_add_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, n);
        if (r >= 0)
                r = gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, n);
        if (r >= 0)
                r = gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1);
        if (r >= 0)
                r = gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2);
        for (int32_t i = 0; i < n; i++)
                free(toks[i]);
        return r < 0 ? -ENOMEM : 0;
}

enum kind {
        MATRIX,
        EMBED,
        NORM,       /* ones */
        NORM_RAND,  /* around one: q/k norms */
        BIAS,       /* small random values */
        ROPE_FREQS, /* Llama 3's divisors */
        SCALE,      /* int8 scales */
};

struct tensor_plan {
        char name[64];
        enum kind kind;
        int64_t rows, cols;
};

static int64_t q_dim(const struct shape *s)
{
        return (int64_t)s->n_heads * s->head_dim;
}

static size_t plan(const struct mk *m, struct tensor_plan *p)
{
        const struct shape *s = &m->s;
        const struct arch *a = m->a;
        int64_t kv = (int64_t)s->head_dim * s->n_kv_heads, qd = q_dim(s);
        size_t n = 0;
        p[n++] = (struct tensor_plan) { "token_embd.weight", EMBED, s->vocab, s->dim };
        p[n++] = (struct tensor_plan) { "output_norm.weight", NORM, 1, s->dim };
        if (!a->tied)
                p[n++] = (struct tensor_plan) { "output.weight", EMBED, s->vocab, s->dim };
        if (a->rope_freqs)
                p[n++] = (struct tensor_plan) { "rope_freqs.weight", ROPE_FREQS, 1, s->head_dim / 2 };
        for (int l = 0; l < s->n_layers; l++) {
                static const char *names[] = { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                                               "ffn_down" };
                int64_t rows[] = { qd, kv, kv, s->dim, s->ffn, s->ffn, s->dim };
                int64_t cols[] = { s->dim, s->dim, s->dim, qd, s->dim, s->dim, s->ffn };
                snprintf(p[n].name, 64, "blk.%d.attn_norm.weight", l);
                p[n].kind = NORM, p[n].rows = 1, p[n++].cols = s->dim;
                snprintf(p[n].name, 64, "blk.%d.ffn_norm.weight", l);
                p[n].kind = NORM, p[n].rows = 1, p[n++].cols = s->dim;
                for (int i = 0; a->biases && i < 3; i++) {
                        snprintf(p[n].name, 64, "blk.%d.%s.bias", l, names[i]);
                        p[n].kind = BIAS, p[n].rows = 1, p[n++].cols = rows[i];
                }
                for (int i = 0; a->qk_norm && i < 2; i++) {
                        snprintf(p[n].name, 64, "blk.%d.%s_norm.weight", l, names[i]);
                        p[n].kind = NORM_RAND, p[n].rows = 1, p[n++].cols = s->head_dim;
                }
                for (int i = 0; i < 7; i++) {
                        snprintf(p[n].name, 64, "blk.%d.%s.weight", l, names[i]);
                        p[n].kind = MATRIX, p[n].rows = rows[i], p[n++].cols = cols[i];
                        if (quantized(m)) {
                                snprintf(p[n].name, 64, "blk.%d.%s.scale", l, names[i]);
                                p[n].kind = SCALE, p[n].rows = 1, p[n++].cols = rows[i];
                        }
                }
        }
        return n;
}

/* A GGUF preset's type for a matrix, from its name (blk.N.attn_v.weight, output.weight, ...). */
static enum ggml_type preset_type(const struct mk *m, const struct tensor_plan *t)
{
        static const struct {
                const char *name;
                enum quant_tensor kind;
        } kinds[] = { { "attn_q.", QUANT_TENSOR_ATTN_Q },      { "attn_k.", QUANT_TENSOR_ATTN_K },
                      { "attn_v.", QUANT_TENSOR_ATTN_V },      { "attn_output.", QUANT_TENSOR_ATTN_OUTPUT },
                      { "ffn_gate.", QUANT_TENSOR_FFN_GATE },  { "ffn_up.", QUANT_TENSOR_FFN_UP },
                      { "ffn_down.", QUANT_TENSOR_FFN_DOWN } };
        enum quant_tensor kind = strcmp(t->name, "token_embd.weight") == 0 ? QUANT_TENSOR_EMBEDDING
                                                                            : QUANT_TENSOR_OUTPUT;
        int layer = 0;

        if (sscanf(t->name, "blk.%d.", &layer) == 1)
                for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
                        if (strstr(t->name, kinds[i].name))
                                kind = kinds[i].kind;
        return quant_preset_type(m->preset, kind, layer, m->s.n_layers, t->cols);
}

static enum ggml_type tensor_type(const struct mk *m, const struct tensor_plan *t)
{
        if (t->kind != MATRIX && t->kind != EMBED)
                return GGML_TYPE_F32;
        if (m->preset)
                return preset_type(m, t);
        if (strcmp(m->type, "f32") == 0)
                return GGML_TYPE_F32;
        if (t->kind == MATRIX && quantized(m))
                return GGML_TYPE_I8;
        return GGML_TYPE_F16;
}

static bool is_vector(const struct tensor_plan *t)
{
        return t->kind != MATRIX && t->kind != EMBED;
}

static float fill_value(struct mk *m, const struct tensor_plan *t, int64_t i)
{
        switch (t->kind) {
        case NORM: return 1.0f;
        case NORM_RAND: return 1.0f + 0.5f * unif(m);
        case BIAS: return 0.5f * unif(m);
        case ROPE_FREQS: return m->rope_freqs[i];
        case SCALE: return 1.7f / sqrtf((float)t->cols) / 127.0f; /* (what it always wrote) */
        default: break;
        }
        /* std of a random row: about 1/sqrt(cols), so activations stay in range */
        float amp = 1.7f / sqrtf((float)t->cols);
        return unif(m) * amp;
}

/* A matrix in a GGUF block type: each row's random floats quantized. */
static int write_blocks(struct gguf_writer *w, struct mk *m, const struct tensor_plan *t, enum ggml_type type,
                        struct npu_err *err)
{
        const size_t rb = quant_row_bytes(type, t->cols);
        _cleanup_free_ float *row = malloc(sizeof(float) * t->cols);
        _cleanup_free_ uint8_t *q = malloc(rb);

        if (!row || !q)
                return -ENOMEM;
        for (int64_t r = 0; r < t->rows; r++) {
                for (int64_t i = 0; i < t->cols; i++)
                        row[i] = fill_value(m, t, i);
                quantize_row_blocks(type, row, t->cols, q);
                int ret = gguf_writer_write_tensor_part(w, q, rb, err);
                if (ret < 0)
                        return ret;
        }
        return gguf_writer_end_tensor(w, err);
}

static int write_tensor(struct gguf_writer *w, struct mk *m, const struct tensor_plan *t, enum ggml_type type,
                        struct npu_err *err)
{
        if (quant_type_supported(type))
                return write_blocks(w, m, t, type, err);

        size_t esz = ggml_type_block_bytes(type);
        size_t row_bytes = (size_t)t->cols * esz;
        int64_t rows = is_vector(t) ? 1 : t->rows;
        const int64_t chunk = MAX(1, (int64_t)((16u << 20) / row_bytes));
        _cleanup_free_ uint8_t *buf = malloc(row_bytes * MIN(chunk, rows));

        if (!buf)
                return -ENOMEM;
        for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
                int64_t nr = MIN(chunk, rows - r0);
                for (int64_t i = 0; i < nr * t->cols; i++) {
                        if (type == GGML_TYPE_I8)
                                ((int8_t *)buf)[i] = (int8_t)((int)(next(m) % 255) - 127);
                        else if (type == GGML_TYPE_F16)
                                ((uint16_t *)buf)[i] = f32_to_f16(fill_value(m, t, i));
                        else
                                ((float *)buf)[i] = fill_value(m, t, i);
                }
                int r = gguf_writer_write_tensor_part(w, buf, nr * row_bytes, err);
                if (r < 0)
                        return r;
        }
        return gguf_writer_end_tensor(w, err);
}

static int add_hparams(struct gguf_writer *w, const struct mk *m)
{
        const struct shape *s = &m->s;
        const char *a = m->a->gguf_arch;
        char name[96], k[64];
        int r = 0;

#define KEY(suffix) (snprintf(k, sizeof(k), "%s.%s", a, suffix), k)
        if (strcmp(m->a->name, "llama") == 0)
                snprintf(name, sizeof(name), "synthetic-%s-%s", s->name, m->type);
        else
                snprintf(name, sizeof(name), "synthetic-%s-%s-%s", m->a->name, s->name, m->type);
        r |= gguf_writer_add_str(w, "general.architecture", a);
        r |= gguf_writer_add_str(w, "general.name", name);
        r |= gguf_writer_add_u32(w, KEY("embedding_length"), s->dim);
        r |= gguf_writer_add_u32(w, KEY("block_count"), s->n_layers);
        r |= gguf_writer_add_u32(w, KEY("attention.head_count"), s->n_heads);
        r |= gguf_writer_add_u32(w, KEY("attention.head_count_kv"), s->n_kv_heads);
        r |= gguf_writer_add_u32(w, KEY("feed_forward_length"), s->ffn);
        r |= gguf_writer_add_u32(w, KEY("context_length"), s->ctx);
        r |= gguf_writer_add_f32(w, KEY("rope.freq_base"), m->a->rope_base);
        r |= gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), m->a->qk_norm ? 1e-6f : 1e-5f);
        if (s->head_dim != s->dim / s->n_heads || m->a->qk_norm) {
                r |= gguf_writer_add_u32(w, KEY("attention.key_length"), s->head_dim);
                r |= gguf_writer_add_u32(w, KEY("attention.value_length"), s->head_dim);
        }
        if (strcmp(m->a->name, "llama") != 0)
                r |= gguf_writer_add_u32(w, KEY("rope.dimension_count"), s->head_dim);
        if (m->scaling_type) {
                r |= gguf_writer_add_str(w, KEY("rope.scaling.type"), m->scaling_type);
                r |= gguf_writer_add_f32(w, KEY("rope.scaling.factor"), m->scaling_factor);
                r |= gguf_writer_add_u32(w, KEY("rope.scaling.original_context_length"), s->ctx);
        }
#undef KEY
        if (quantized(m)) {
                r |= gguf_writer_add_str(w, "npud.quantization.precision", m->type);
                r |= gguf_writer_add_f32(w, "npud.quantization.alpha", 0.0f);
                r |= gguf_writer_add_str(w, "npud.quantization.method", "synthetic");
        }
        return r < 0 ? -ENOMEM : 0;
}

/* The arch's adjustments of the small shape, and the head dimension. */
static int shape_for_arch(struct mk *m, struct npu_err *err)
{
        struct shape *s = &m->s;

        if (strcmp(s->name, "small") == 0) {
                if (m->a->gqa)
                        s->n_kv_heads = s->n_heads / 2;
                if (m->a->wide_heads)
                        s->head_dim = 2 * s->dim / s->n_heads;
        }
        if (!s->head_dim)
                s->head_dim = s->dim / s->n_heads;
        if (m->a->rope_freqs) {
                m->rope_freqs = malloc(sizeof(float) * (s->head_dim / 2));
                if (!m->rope_freqs)
                        return -ENOMEM;
                return rope_llama3_factors(s->head_dim, m->a->rope_base, &llama3_scaling, m->rope_freqs, err);
        }
        return 0;
}

static int make(struct mk *m)
{
        _cleanup_(gguf_writer_freep) struct gguf_writer *w = NULL;
        struct npu_err err = {};
        size_t cap = 4 + (size_t)m->s.n_layers * 24;
        _cleanup_free_ struct tensor_plan *p = calloc(cap, sizeof(*p));
        int r;

        if (!p)
                return -ENOMEM;
        m->rng = m->seed * 0x9e3779b97f4a7c15ull + 1;
        r = shape_for_arch(m, &err);
        if (r < 0)
                return cli_error(r, "%s", err.msg);
        r = gguf_writer_new(m->out, &w, &err);
        if (r < 0)
                return cli_error(r, "%s", err.msg);
        r = add_hparams(w, m);
        if (r >= 0)
                r = add_vocab(w, m, &err);
        if (r < 0)
                return cli_error(r, "%s", err.msg[0] ? err.msg : "out of memory");
        size_t n = plan(m, p);
        for (size_t i = 0; i < n; i++) {
                int64_t ne[2] = { p[i].cols, p[i].rows };
                r = gguf_writer_add_tensor(w, p[i].name, tensor_type(m, &p[i]), is_vector(&p[i]) ? 1 : 2, ne);
                if (r < 0)
                        return cli_error(r, "tensor %s", p[i].name);
        }
        r = gguf_writer_write_header(w, &err);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                r = write_tensor(w, m, &p[i], tensor_type(m, &p[i]), &err);
                if (isatty(STDERR_FILENO))
                        fprintf(stderr, "\rwriting %s: %zu/%zu tensors", m->out, i + 1, n);
        }
        if (isatty(STDERR_FILENO))
                fputc('\n', stderr);
        if (r >= 0)
                r = gguf_writer_finish(w, &err);
        if (r < 0)
                return cli_error(r, "%s", err.msg);
        return 0;
}

static void usage(FILE *f)
{
        fprintf(f, "Usage: npu-mkmodel [--arch llama|llama3|qwen2|qwen3] --shape small|tinyllama|llama2-7b|"
                   "llama3.2-1b|qwen2.5-0.5b|qwen3-0.6b\n"
                   "                   --type f32|f16|w8a8|w8a16|q4_0|...|q4_k_m|q5_k_m -o OUT [--seed S] [--vocab GGUF]\n"
                   "                   [--rope-scaling TYPE:FACTOR]\n"
                   "  --vocab takes the tokenizer of a GGUF, e.g. ggml-vocab-qwen2.gguf for qwen2/qwen3\n"
                   "  (default: a synthetic SentencePiece-style vocabulary of the shape's size)\n");
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "shape", required_argument, NULL, 's' }, { "type", required_argument, NULL, 't' },
                { "output", required_argument, NULL, 'o' }, { "seed", required_argument, NULL, 'S' },
                { "vocab", required_argument, NULL, 'v' },  { "arch", required_argument, NULL, 'a' },
                { "rope-scaling", required_argument, NULL, 'R' },
                { "help", no_argument, NULL, 'h' },         {}
        };
        struct mk m = { .a = &archs[0], .s = shapes[0], .type = "f32", .seed = 1 };
        int c, r;

        while ((c = getopt_long(argc, argv, "s:t:o:h", opts, NULL)) >= 0) {
                switch (c) {
                case 's': {
                        const struct shape *s = NULL;
                        for (size_t i = 0; i < ARRAY_SIZE(shapes); i++)
                                if (strcmp(optarg, shapes[i].name) == 0)
                                        s = &shapes[i];
                        if (!s)
                                return cli_error(-EINVAL, "--shape: '%s' is not a known shape (see --help)", optarg),
                                       EXIT_FAILURE;
                        m.s = *s;
                        break;
                }
                case 'a':
                        m.a = NULL;
                        for (size_t i = 0; i < ARRAY_SIZE(archs); i++)
                                if (strcmp(optarg, archs[i].name) == 0)
                                        m.a = &archs[i];
                        if (!m.a)
                                return cli_error(-EINVAL, "--arch: '%s' is not llama, llama3, qwen2 or qwen3", optarg),
                                       EXIT_FAILURE;
                        break;
                case 't':
                        m.preset = quant_preset_find(optarg);
                        if (!m.preset && strcmp(optarg, "f32") && strcmp(optarg, "f16") && strcmp(optarg, "w8a8") &&
                            strcmp(optarg, "w8a16"))
                                return cli_error(-EINVAL, "--type: '%s' is not f32, f16, w8a8, w8a16 or one of %s",
                                                 optarg, quant_preset_names()),
                                       EXIT_FAILURE;
                        m.type = optarg;
                        break;
                case 'o': m.out = optarg; break;
                case 'S':
                        if (cli_parse_u64(optarg, "--seed", &m.seed) < 0)
                                return EXIT_FAILURE;
                        break;
                case 'v': m.vocab_path = optarg; break;
                case 'R': {
                        char *colon = strrchr(optarg, ':');
                        if (!colon || colon == optarg || cli_parse_float(colon + 1, "--rope-scaling", &m.scaling_factor) < 0)
                                return cli_error(-EINVAL, "--rope-scaling: '%s' is not TYPE:FACTOR", optarg),
                                       EXIT_FAILURE;
                        free(m.scaling_type);
                        m.scaling_type = strndup(optarg, colon - optarg);
                        if (!m.scaling_type)
                                return EXIT_FAILURE;
                        break;
                }
                case 'h':
                        usage(stdout);
                        return EXIT_SUCCESS;
                default:
                        usage(stderr);
                        return EXIT_FAILURE;
                }
        }
        if (!m.out)
                return cli_error(-EINVAL, "no output given (-o OUT)"), EXIT_FAILURE;
        r = make(&m);
        free(m.rope_freqs);
        free(m.scaling_type);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
