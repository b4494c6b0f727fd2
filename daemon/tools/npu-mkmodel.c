/* SPDX-License-Identifier: MIT */
/*
 * npu-mkmodel: writes a Llama-shaped GGUF with random weights (fixed seed),
 * in f32, f16, or directly in w8a8/w8a16 (int8 weights + per-channel scales),
 * so benchmarks need no multi-gigabyte float file.
 *   npu-mkmodel --shape small|tinyllama|llama2-7b --type f32|f16|w8a8|w8a16 -o OUT [--seed S] [--vocab GGUF]
 */
#include <getopt.h>
#include <math.h>

#include "cli.h"
#include "fp16.h"
#include "gguf.h"

struct shape {
        const char *name;
        int32_t dim, n_layers, n_heads, n_kv_heads, ffn, vocab, ctx;
};

static const struct shape shapes[] = {
        { "small", 64, 2, 4, 4, 172, 512, 128 },
        { "tinyllama", 2048, 22, 32, 4, 5632, 32000, 2048 },
        { "llama2-7b", 4096, 32, 32, 32, 11008, 32000, 4096 },
};

struct mk {
        const struct shape *s;
        const char *type;
        const char *out;
        const char *vocab_path;
        uint64_t seed;
        uint64_t rng;
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

static int add_vocab(struct gguf_writer *w, const struct mk *m, struct npu_err *err)
{
        int32_t n = m->s->vocab;
        if (m->vocab_path) {
                _cleanup_(gguf_freep) struct gguf *g = NULL;
                int r = gguf_open(m->vocab_path, &g, err);
                if (r < 0)
                        return r;
                const struct gguf_kv *tok;
                r = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tok, err);
                if (r < 0)
                        return npu_err_set(err, r, "%s has no tokenizer", m->vocab_path);
                if ((int64_t)tok->arr_n != n)
                        return npu_err_set(err, -EINVAL, "%s has %llu tokens, the shape needs %d", m->vocab_path,
                                           (unsigned long long)tok->arr_n, n);
                return gguf_writer_copy_kv(w, g, NULL) < 0 ? -ENOMEM : 0;
        }
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

enum kind { MATRIX, VECTOR, EMBED };

struct tensor_plan {
        char name[64];
        enum kind kind;
        int64_t rows, cols;
};

static size_t plan(const struct mk *m, struct tensor_plan *p)
{
        const struct shape *s = m->s;
        int64_t kv = (int64_t)s->dim / s->n_heads * s->n_kv_heads;
        size_t n = 0;
        p[n++] = (struct tensor_plan) { "token_embd.weight", EMBED, s->vocab, s->dim };
        p[n++] = (struct tensor_plan) { "output_norm.weight", VECTOR, 1, s->dim };
        p[n++] = (struct tensor_plan) { "output.weight", EMBED, s->vocab, s->dim };
        for (int l = 0; l < s->n_layers; l++) {
                static const char *names[] = { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                                               "ffn_down" };
                int64_t rows[] = { s->dim, kv, kv, s->dim, s->ffn, s->ffn, s->dim };
                int64_t cols[] = { s->dim, s->dim, s->dim, s->dim, s->dim, s->dim, s->ffn };
                snprintf(p[n].name, 64, "blk.%d.attn_norm.weight", l);
                p[n].kind = VECTOR, p[n].rows = 1, p[n++].cols = s->dim;
                snprintf(p[n].name, 64, "blk.%d.ffn_norm.weight", l);
                p[n].kind = VECTOR, p[n].rows = 1, p[n++].cols = s->dim;
                for (int i = 0; i < 7; i++) {
                        snprintf(p[n].name, 64, "blk.%d.%s.weight", l, names[i]);
                        p[n].kind = MATRIX, p[n].rows = rows[i], p[n++].cols = cols[i];
                        if (quantized(m)) {
                                snprintf(p[n].name, 64, "blk.%d.%s.scale", l, names[i]);
                                p[n].kind = VECTOR, p[n].rows = 0, p[n++].cols = rows[i];
                        }
                }
        }
        return n;
}

static enum ggml_type tensor_type(const struct mk *m, const struct tensor_plan *t)
{
        if (t->kind == VECTOR)
                return GGML_TYPE_F32;
        if (strcmp(m->type, "f32") == 0)
                return GGML_TYPE_F32;
        if (t->kind == MATRIX && quantized(m))
                return GGML_TYPE_I8;
        return GGML_TYPE_F16;
}

static int write_tensor(struct gguf_writer *w, struct mk *m, const struct tensor_plan *t, enum ggml_type type,
                        struct npu_err *err)
{
        size_t esz = ggml_type_block_bytes(type);
        size_t row_bytes = (size_t)t->cols * esz;
        int64_t rows = t->rows ? t->rows : 1;
        const int64_t chunk = MAX(1, (int64_t)((16u << 20) / row_bytes));
        _cleanup_free_ uint8_t *buf = malloc(row_bytes * MIN(chunk, rows));
        /* std of a random row: about 1/sqrt(cols), so activations stay in range */
        float amp = 1.7f / sqrtf((float)t->cols);

        if (!buf)
                return -ENOMEM;
        /* the writer takes one tensor at a time: stage it through a temporary file-sized loop */
        for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
                int64_t nr = MIN(chunk, rows - r0);
                for (int64_t i = 0; i < nr * t->cols; i++) {
                        if (t->rows == 0) /* int8 scales */
                                ((float *)buf)[i] = amp / 127.0f;
                        else if (t->kind == VECTOR)
                                ((float *)buf)[i] = 1.0f;
                        else if (type == GGML_TYPE_I8)
                                ((int8_t *)buf)[i] = (int8_t)((int)(next(m) % 255) - 127);
                        else if (type == GGML_TYPE_F16)
                                ((uint16_t *)buf)[i] = f32_to_f16(unif(m) * amp);
                        else
                                ((float *)buf)[i] = unif(m) * amp;
                }
                int r = gguf_writer_write_tensor_part(w, buf, nr * row_bytes, err);
                if (r < 0)
                        return r;
        }
        return gguf_writer_end_tensor(w, err);
}

static int make(struct mk *m)
{
        _cleanup_(gguf_writer_freep) struct gguf_writer *w = NULL;
        const struct shape *s = m->s;
        struct npu_err err = {};
        size_t cap = 3 + (size_t)s->n_layers * 16;
        _cleanup_free_ struct tensor_plan *p = calloc(cap, sizeof(*p));
        int r;

        if (!p)
                return -ENOMEM;
        m->rng = m->seed * 0x9e3779b97f4a7c15ull + 1;
        r = gguf_writer_new(m->out, &w, &err);
        if (r < 0)
                return cli_error(r, "%s", err.msg);
        char name[96];
        snprintf(name, sizeof(name), "synthetic-%s-%s", s->name, m->type);
        gguf_writer_add_str(w, "general.architecture", "llama");
        gguf_writer_add_str(w, "general.name", name);
        gguf_writer_add_u32(w, "llama.embedding_length", s->dim);
        gguf_writer_add_u32(w, "llama.block_count", s->n_layers);
        gguf_writer_add_u32(w, "llama.attention.head_count", s->n_heads);
        gguf_writer_add_u32(w, "llama.attention.head_count_kv", s->n_kv_heads);
        gguf_writer_add_u32(w, "llama.feed_forward_length", s->ffn);
        gguf_writer_add_u32(w, "llama.context_length", s->ctx);
        gguf_writer_add_f32(w, "llama.rope.freq_base", 10000.0f);
        gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
        if (quantized(m)) {
                gguf_writer_add_str(w, "npud.quantization.precision", m->type);
                gguf_writer_add_f32(w, "npud.quantization.alpha", 0.0f);
                gguf_writer_add_str(w, "npud.quantization.method", "synthetic");
        }
        r = add_vocab(w, m, &err);
        if (r < 0)
                return cli_error(r, "%s", err.msg[0] ? err.msg : "out of memory");
        size_t n = plan(m, p);
        for (size_t i = 0; i < n; i++) {
                int64_t ne[2] = { p[i].cols, p[i].rows };
                r = gguf_writer_add_tensor(w, p[i].name, tensor_type(m, &p[i]), p[i].rows > 1 ? 2 : 1, ne);
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

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "shape", required_argument, NULL, 's' }, { "type", required_argument, NULL, 't' },
                { "output", required_argument, NULL, 'o' }, { "seed", required_argument, NULL, 'S' },
                { "vocab", required_argument, NULL, 'v' },  { "help", no_argument, NULL, 'h' },
                {}
        };
        struct mk m = { .s = &shapes[0], .type = "f32", .seed = 1 };
        int c;

        while ((c = getopt_long(argc, argv, "s:t:o:h", opts, NULL)) >= 0) {
                switch (c) {
                case 's':
                        m.s = NULL;
                        for (size_t i = 0; i < ARRAY_SIZE(shapes); i++)
                                if (strcmp(optarg, shapes[i].name) == 0)
                                        m.s = &shapes[i];
                        if (!m.s)
                                return cli_error(-EINVAL, "--shape: '%s' is not small, tinyllama or llama2-7b", optarg),
                                       EXIT_FAILURE;
                        break;
                case 't':
                        if (strcmp(optarg, "f32") && strcmp(optarg, "f16") && strcmp(optarg, "w8a8") &&
                            strcmp(optarg, "w8a16"))
                                return cli_error(-EINVAL, "--type: '%s' is not f32, f16, w8a8 or w8a16", optarg),
                                       EXIT_FAILURE;
                        m.type = optarg;
                        break;
                case 'o': m.out = optarg; break;
                case 'S':
                        if (cli_parse_u64(optarg, "--seed", &m.seed) < 0)
                                return EXIT_FAILURE;
                        break;
                case 'v': m.vocab_path = optarg; break;
                case 'h':
                        printf("Usage: npu-mkmodel --shape small|tinyllama|llama2-7b --type f32|f16|w8a8|w8a16 "
                               "-o OUT [--seed S] [--vocab GGUF]\n");
                        return EXIT_SUCCESS;
                default:
                        return EXIT_FAILURE;
                }
        }
        if (!m.out)
                return cli_error(-EINVAL, "no output given (-o OUT)"), EXIT_FAILURE;
        return make(&m) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
