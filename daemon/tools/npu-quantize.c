/* SPDX-License-Identifier: MIT */
/*
 * npu-quantize: quantize a float model (llama, qwen2, qwen3).
 *   npu-quantize -i INPUT -o OUTPUT.gguf --precision P [--alpha A] [--calib FILE] [--samples N]
 *                [--no-smooth] [--smooth-all] [--group-size 32|128] [--no-search] [--threads N]
 * INPUT is a GGUF (F32/F16/BF16, or any of the GGUF block types: they are
 * dequantized first), or a Hugging Face directory of Llama, Qwen2 or Qwen3
 * (config.json, *.safetensors, tokenizer.json or tokenizer.model),
 * converted to an F16 GGUF beside the output first. P is one of:
 *   w8a8, w8a16: SmoothQuant (alpha A), every projection stored as I8 rows
 *       with one F32 scale per output channel (tensor NAME.scale);
 *   w4a8: SmoothQuant, then int4 weights with one scale per group of 32 or
 *       128 along K (--group-size), in Q4_0 blocks (w4a8.h); each layer's
 *       alpha is searched on the calibration data unless --no-search
 *       (w4a8_search.h);
 *   q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k q4_k_m q5_k_m: GGUF
 *       block types as llama.cpp writes them (quant_presets.h), no
 *       smoothing, no calibration; llama.cpp reads the file.
 * npud precisions keep embeddings and the output head in F16, norms,
 * biases, q/k norms and rope_freqs in F32, and record npud.quantization.*
 * metadata: precision, alpha (per layer for w4a8), method, version, group
 * size, calibration hash and size.
 */
#include <getopt.h>
#include <math.h>

#include <sys/stat.h>

#include "cli.h"
#include "hf_convert.h"
#include "fp16.h"
#include "quant.h"
#include "quant_presets.h"
#include "quantize_blocks.h"
#include "smoothquant.h"
#include "w4a8.h"
#include "w4a8_search.h"

#define QUANTIZER_VERSION "npud-smoothquant 2"

static const char *default_calibration =
        "Once upon a time, there was a little girl who loved to read books about the stars.\n"
        "The quick brown fox jumps over the lazy dog while the cat watches from the window.\n"
        "What is the meaning of life? Many people have asked this question for centuries.\n"
        "In 1969, astronauts landed on the moon and walked on its dusty surface.\n"
        "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n"
        "The mass of the earth is about 5.97 x 10^24 kilograms, and light travels fast.\n"
        "Tell me something you don't know about machines, numbers, music and the sea.\n";

struct quant_args {
        const char *input, *output, *calib;
        enum npu_precision precision;
        const struct quant_preset *preset; /* GGUF block types instead of an npud precision */
        float alpha;
        int32_t samples;
        int32_t search_tokens; /* w4a8: calibration tokens each candidate of the search is scored on */
        int threads;
        int group_size; /* w4a8 */
        bool smooth;
        bool smooth_all;
        bool search; /* w4a8: search each layer's alpha */
};

static const char *const layer_matrices[7] = { "attn_q", "attn_k", "attn_v", "attn_output",
                                               "ffn_gate", "ffn_up", "ffn_down" };

static void progress(const char *what, int done, int total)
{
        if (isatty(STDERR_FILENO)) {
                int w = 30, fill = total ? done * w / total : w;
                fprintf(stderr, "\r%-12s [%.*s%*s] %d/%d", what, fill, "##############################", w - fill, "",
                        done, total);
                if (done == total)
                        fputc('\n', stderr);
        } else
                fprintf(stderr, "%s %d/%d\n", what, done, total);
}

static int calibrate(struct runtime *rt, const char *text, size_t len, int32_t samples, struct calib_stats *cs,
                     struct npu_err *err)
{
        _cleanup_free_ int32_t *ids = NULL, *pos = NULL;
        _cleanup_free_ struct kv_seq **seqs = NULL;
        size_t n;
        int32_t W = MIN(rt->n_ctx, rt->ctx->max_batch);
        int r = vocab_tokenize(rt->model->vocab, text, len, false, false, &ids, &n);

        if (r < 0)
                return r;
        if (n == 0)
                return npu_err_set(err, -EINVAL, "the calibration text has no tokens");
        pos = malloc(sizeof(int32_t) * W);
        seqs = malloc(sizeof(*seqs) * W);
        if (!pos || !seqs)
                return -ENOMEM;
        int32_t windows = (int32_t)DIV_ROUND_UP(n, (size_t)W);
        if (samples > 0)
                windows = MIN(windows, samples);
        rt->ctx->calib = cs;
        for (int32_t w = 0; w < windows; w++) {
                struct kv_seq seq = {};
                int32_t m = (int32_t)MIN((size_t)W, n - (size_t)w * W);
                for (int32_t i = 0; i < m; i++) {
                        pos[i] = i;
                        seqs[i] = &seq;
                }
                r = kv_seq_reserve(rt->kv, &seq, m);
                if (r >= 0) {
                        struct npu_batch b = { .n = m, .tokens = ids + (size_t)w * W, .pos = pos, .seqs = seqs };
                        r = forward(rt->ctx, &b, NULL, err);
                }
                kv_seq_release(rt->kv, &seq);
                if (r < 0)
                        break;
                cs->n_tokens += m;
                progress("calibration", w + 1, windows);
        }
        rt->ctx->calib = NULL;
        return r;
}

static bool skip_key(const char *key)
{
        return strncmp(key, "npud.quantization.", 18) == 0 || strcmp(key, "general.file_type") == 0;
}

static int add_f32_vector(struct gguf_writer *w, const char *name, int64_t n)
{
        return gguf_writer_add_tensor(w, name, GGML_TYPE_F32, 1, &n);
}

/* The float vectors of a layer besides its norms, in file order: biases (qwen2), q/k norms (qwen3). */
struct layer_vector {
        const char *name;
        const float *data;
        int64_t n;
};

static size_t layer_vectors(const struct npu_model *m, int l, struct layer_vector *v)
{
        const struct npu_layer *L = &m->layers[l];
        const int64_t kv_dim = (int64_t)m->hp.n_kv_heads * m->hp.head_dim;
        size_t n = 0;

        if (L->bq) {
                v[n++] = (struct layer_vector) { "attn_q.bias", L->bq, hparams_q_dim(&m->hp) };
                v[n++] = (struct layer_vector) { "attn_k.bias", L->bk, kv_dim };
                v[n++] = (struct layer_vector) { "attn_v.bias", L->bv, kv_dim };
        }
        if (L->q_norm) {
                v[n++] = (struct layer_vector) { "attn_q_norm.weight", L->q_norm, m->hp.head_dim };
                v[n++] = (struct layer_vector) { "attn_k_norm.weight", L->k_norm, m->hp.head_dim };
        }
        return n;
}

static const enum quant_tensor layer_tensor_kinds[7] = {
        QUANT_TENSOR_ATTN_Q,   QUANT_TENSOR_ATTN_K, QUANT_TENSOR_ATTN_V,   QUANT_TENSOR_ATTN_OUTPUT,
        QUANT_TENSOR_FFN_GATE, QUANT_TENSOR_FFN_UP, QUANT_TENSOR_FFN_DOWN,
};

/* The type of matrix i (0..6) of layer l; l = -1: the embedding, -2: the output head. */
static enum ggml_type matrix_type(const struct quant_args *a, const struct npu_model *m, int l, int i, int64_t cols)
{
        if (a->preset) {
                enum quant_tensor t = l == -1 ? QUANT_TENSOR_EMBEDDING
                                      : l == -2 ? QUANT_TENSOR_OUTPUT
                                                : layer_tensor_kinds[i];
                return quant_preset_type(a->preset, t, MAX(l, 0), m->hp.n_layers, cols);
        }
        if (l < 0)
                return GGML_TYPE_F16;
        return a->precision == NPU_PRECISION_W4A8 ? GGML_TYPE_Q4_0 : GGML_TYPE_I8;
}

static int plan_tensors(struct gguf_writer *w, const struct npu_model *m, const struct quant_args *a)
{
        const struct npu_hparams *hp = &m->hp;
        int64_t ne[2] = { hp->dim, hp->n_vocab };
        char name[96];
        int r = gguf_writer_add_tensor(w, "token_embd.weight", matrix_type(a, m, -1, 0, hp->dim), 2, ne);
        if (r >= 0)
                r = add_f32_vector(w, "output_norm.weight", hp->dim);
        if (r >= 0 && m->output.data != m->tok_embd.data)
                r = gguf_writer_add_tensor(w, "output.weight", matrix_type(a, m, -2, 0, hp->dim), 2, ne);
        if (r >= 0 && m->rope_freqs)
                r = add_f32_vector(w, "rope_freqs.weight", hp->head_dim / 2);
        for (int l = 0; r >= 0 && l < hp->n_layers; l++) {
                const struct npu_weight *mats = &m->layers[l].wq;
                struct layer_vector vecs[5];
                size_t n_vecs = layer_vectors(m, l, vecs);
                snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", l);
                r = add_f32_vector(w, name, hp->dim);
                snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", l);
                if (r >= 0)
                        r = add_f32_vector(w, name, hp->dim);
                for (size_t i = 0; r >= 0 && i < n_vecs; i++) {
                        snprintf(name, sizeof(name), "blk.%d.%s", l, vecs[i].name);
                        r = add_f32_vector(w, name, vecs[i].n);
                }
                for (int i = 0; r >= 0 && i < 7; i++) {
                        int64_t mne[2] = { mats[i].cols, mats[i].rows };
                        enum ggml_type t = matrix_type(a, m, l, i, mats[i].cols);
                        snprintf(name, sizeof(name), "blk.%d.%s.weight", l, layer_matrices[i]);
                        r = gguf_writer_add_tensor(w, name, t, 2, mne);
                        snprintf(name, sizeof(name), "blk.%d.%s.scale", l, layer_matrices[i]);
                        if (r >= 0 && t == GGML_TYPE_I8)
                                r = add_f32_vector(w, name, mats[i].rows);
                }
        }
        return r;
}

/* Rows of f32 (f: rows x cols), or of src dequantized when f is NULL, written as F16 or a GGUF block type. */
static int write_matrix(struct gguf_writer *w, const struct npu_weight *src, const float *f, enum ggml_type t,
                        struct npu_err *err)
{
        const size_t rb = t == GGML_TYPE_F16 ? sizeof(uint16_t) * src->cols : quant_row_bytes(t, src->cols);
        _cleanup_free_ float *row = malloc(sizeof(float) * src->cols);
        _cleanup_free_ uint8_t *out = malloc(rb);
        if (!row || !out)
                return -ENOMEM;
        for (int64_t r = 0; r < src->rows; r++) {
                if (f)
                        memcpy(row, f + r * src->cols, sizeof(float) * src->cols);
                else
                        weight_row_f32(src, r, row);
                if (t == GGML_TYPE_F16)
                        for (int64_t k = 0; k < src->cols; k++)
                                ((uint16_t *)(void *)out)[k] = f32_to_f16(row[k]);
                else
                        quantize_row_blocks(t, row, src->cols, out);
                int ret = gguf_writer_write_tensor_part(w, out, rb, err);
                if (ret < 0)
                        return ret;
        }
        return gguf_writer_end_tensor(w, err);
}

static float *weight_to_f32(const struct npu_weight *src)
{
        float *f = malloc(sizeof(float) * src->rows * src->cols);
        if (f)
                for (int64_t r = 0; r < src->rows; r++)
                        weight_row_f32(src, r, f + r * src->cols);
        return f;
}

/*
 * Beyond the reference: the two projections with no norm in front are
 * smoothed through their linear producers, v_proj -> o_proj (only without
 * grouped-query attention, where each v channel feeds one o channel; a v
 * bias is divided with its row) and up_proj -> down_proj.
 */
static void smooth_linear_pairs(const struct npu_model *m, int l, const struct calib_stats *cs, float alpha,
                                float **wf, const int64_t *rows, float *bv)
{
        const int64_t dim = m->hp.dim, ffn = m->hp.ffn_dim, q_dim = hparams_q_dim(&m->hp);
        _cleanup_free_ float *s = malloc(sizeof(float) * MAX(MAX(dim, ffn), q_dim));
        if (!s)
                return;
        if (m->hp.n_kv_heads == m->hp.n_heads) {
                smooth_factors(cs->attn_out_max + (size_t)l * q_dim, wf + 3, rows + 3, 1, q_dim, alpha, s);
                smooth_apply_rows(wf[2], dim, wf[3], rows[3], q_dim, s);
                for (int64_t j = 0; bv && j < q_dim; j++)
                        bv[j] /= s[j];
        }
        smooth_factors(cs->ffn_mid_max + (size_t)l * ffn, wf + 6, rows + 6, 1, ffn, alpha, s);
        smooth_apply_rows(wf[5], dim, wf[6], rows[6], ffn, s);
}

/* w4a8: layer l smoothed with its alphas, quantized into Q4_0 blocks. */
static int write_layer_w4a8(struct gguf_writer *w, const struct npu_model *m, int l, const struct calib_stats *cs,
                            const float *alpha, const struct quant_args *a, struct npu_err *err)
{
        const int64_t dim = m->hp.dim;
        const struct npu_weight *mats = &m->layers[l].wq;
        struct layer_vector vecs[5];
        const size_t n_vecs = layer_vectors(m, l, vecs);
        struct w4a8_layer wl;
        int r = w4a8_layer_prepare(m, &m->layers[l], l, cs, alpha, a->smooth, a->smooth_all, a->group_size, &wl);

        if (r < 0)
                return r;
        if (wl.bv)
                vecs[2].data = wl.bv; /* attn_v.bias, divided by the v -> o smoothing */
        r = gguf_writer_write_tensor(w, wl.attn_norm, sizeof(float) * dim, err);
        if (r >= 0)
                r = gguf_writer_write_tensor(w, wl.ffn_norm, sizeof(float) * dim, err);
        for (size_t i = 0; r >= 0 && i < n_vecs; i++)
                r = gguf_writer_write_tensor(w, vecs[i].data, sizeof(float) * vecs[i].n, err);
        for (int i = 0; r >= 0 && i < 7; i++)
                r = gguf_writer_write_tensor(w, wl.q[i], wl.row_bytes[i] * mats[i].rows, err);
        w4a8_layer_release(&wl);
        return r;
}

/* Smooth (w8a8, w8a16), quantize and write one decoder layer: I8 rows and scales, or GGUF block types. */
static int write_layer(struct gguf_writer *w, const struct npu_model *m, int l, const struct calib_stats *cs,
                       const struct quant_args *a, struct npu_err *err)
{
        const struct npu_layer *L = &m->layers[l];
        const struct npu_weight *mats = &L->wq;
        const int64_t dim = m->hp.dim;
        float *wf[7] = {};
        int64_t rows[7];
        struct layer_vector vecs[5];
        size_t n_vecs = layer_vectors(m, l, vecs);
        _cleanup_free_ float *attn_norm = malloc(sizeof(float) * dim), *ffn_norm = malloc(sizeof(float) * dim),
                             *s = malloc(sizeof(float) * dim), *bv = NULL;
        int r = 0;

        if (!attn_norm || !ffn_norm || !s)
                return -ENOMEM;
        if (L->bv) {
                const size_t kv_dim = (size_t)m->hp.n_kv_heads * m->hp.head_dim;
                bv = malloc(sizeof(float) * kv_dim);
                if (!bv)
                        return -ENOMEM;
                memcpy(bv, L->bv, sizeof(float) * kv_dim);
                vecs[2].data = bv; /* attn_v.bias, divided by the v -> o smoothing */
        }
        memcpy(attn_norm, L->attn_norm, sizeof(float) * dim);
        memcpy(ffn_norm, L->ffn_norm, sizeof(float) * dim);
        for (int i = 0; i < 7; i++) {
                rows[i] = mats[i].rows;
                wf[i] = weight_to_f32(&mats[i]);
                if (!wf[i])
                        r = -ENOMEM;
        }
        if (r >= 0 && a->smooth) {
                smooth_factors(cs->attn_in_max + (size_t)l * dim, wf, rows, 3, dim, a->alpha, s);
                smooth_apply(attn_norm, wf, rows, 3, dim, s);
                smooth_factors(cs->ffn_in_max + (size_t)l * dim, wf + 4, rows + 4, 2, dim, a->alpha, s);
                smooth_apply(ffn_norm, wf + 4, rows + 4, 2, dim, s);
                if (a->smooth_all)
                        smooth_linear_pairs(m, l, cs, a->alpha, wf, rows, bv);
        }
        if (r >= 0)
                r = gguf_writer_write_tensor(w, attn_norm, sizeof(float) * dim, err);
        if (r >= 0)
                r = gguf_writer_write_tensor(w, ffn_norm, sizeof(float) * dim, err);
        for (size_t i = 0; r >= 0 && i < n_vecs; i++)
                r = gguf_writer_write_tensor(w, vecs[i].data, sizeof(float) * vecs[i].n, err);
        for (int i = 0; r >= 0 && i < 7; i++) {
                enum ggml_type t = matrix_type(a, m, l, i, mats[i].cols);
                if (t != GGML_TYPE_I8) {
                        r = write_matrix(w, &mats[i], wf[i], t, err);
                        continue;
                }
                int8_t *q = malloc(rows[i] * mats[i].cols);
                float *scale = malloc(sizeof(float) * rows[i]);
                if (!q || !scale)
                        r = -ENOMEM;
                if (r >= 0) {
                        quantize_weight_rows(wf[i], rows[i], mats[i].cols, q, scale);
                        r = gguf_writer_write_tensor(w, q, rows[i] * mats[i].cols, err);
                }
                if (r >= 0)
                        r = gguf_writer_write_tensor(w, scale, sizeof(float) * rows[i], err);
                free(q);
                free(scale);
        }
        for (int i = 0; i < 7; i++)
                free(wf[i]);
        return r;
}

/* The npud.quantization.* keys of an npud precision; the GGUF presets get llama.cpp's general.file_type. */
static int add_quant_meta(struct gguf_writer *w, const struct quant_args *a, const struct calib_stats *cs,
                          const float (*alphas)[W4A8_GROUPS], int n_layers, const char *text, size_t len)
{
        const bool w4a8 = a->precision == NPU_PRECISION_W4A8;
        char hash[32];
        float mean = 0;
        int r;

        if (a->preset)
                return gguf_writer_add_u32(w, "general.file_type", a->preset->file_type);
        for (int l = 0; l < n_layers; l++)
                mean += (alphas[l][0] + alphas[l][1]) / (2.0f * n_layers);
        snprintf(hash, sizeof(hash), "fnv1a64:%016llx", (unsigned long long)fnv1a64(text, len));
        const char *method = !a->smooth ? (w4a8 ? "per-group" : "per-channel")
                             : a->search ? "smoothquant+search"
                                         : "smoothquant";
        r = gguf_writer_add_str(w, "npud.quantization.precision", precision_name(a->precision));
        if (r >= 0)
                r = gguf_writer_add_f32(w, "npud.quantization.alpha", a->smooth ? mean : 0.0f);
        if (r >= 0)
                r = gguf_writer_add_str(w, "npud.quantization.method", method);
        if (r >= 0)
                r = gguf_writer_add_str(w, "npud.quantization.version", QUANTIZER_VERSION);
        if (r >= 0)
                r = gguf_writer_add_str(w, "npud.quantization.calibration_hash", hash);
        if (r >= 0)
                r = gguf_writer_add_u32(w, "npud.quantization.calibration_tokens", (uint32_t)cs->n_tokens);
        if (r >= 0 && w4a8)
                r = gguf_writer_add_u32(w, "npud.quantization.group_size", (uint32_t)a->group_size);
        if (r >= 0 && w4a8 && a->smooth)
                /* per layer: q/k/v, gate/up, attention output, down */
                r = gguf_writer_add_arr(w, "npud.quantization.alphas", GGUF_TYPE_FLOAT32, alphas,
                                        W4A8_GROUPS * (uint64_t)n_layers);
        return r;
}

/* w4a8: search each layer's alphas on the calibration text's first search_tokens tokens. */
static int search_alphas(struct runtime *rt, const struct calib_stats *cs, const struct quant_args *a,
                         const char *text, size_t len, float (*alphas)[W4A8_GROUPS], struct npu_err *err)
{
        _cleanup_free_ int32_t *ids = NULL;
        const struct w4a8_search_opts o = { .group = a->group_size, .smooth_all = a->smooth_all };
        size_t n;
        int r = vocab_tokenize(rt->model->vocab, text, len, false, false, &ids, &n);

        if (r < 0)
                return npu_err_set(err, r, "tokenizing the calibration text failed");
        if (n < 16)
                return npu_err_set(err, -EINVAL, "the calibration text is too short to search alpha (%zu tokens)", n);
        return w4a8_search(rt, cs, ids, (int32_t)MIN(n, (size_t)a->search_tokens), &o, alphas, err);
}

static int quantize(const struct quant_args *a)
{
        _cleanup_(runtime_freep) struct runtime *rt = NULL;
        _cleanup_(calib_stats_freep) struct calib_stats *cs = NULL;
        _cleanup_(gguf_writer_freep) struct gguf_writer *w = NULL;
        _cleanup_free_ char *text = NULL;
        _cleanup_free_ float (*alphas)[W4A8_GROUPS] = NULL;
        const bool w4a8 = a->precision == NPU_PRECISION_W4A8 && !a->preset;
        struct runtime_opts o;
        struct npu_err err = {};
        size_t len;
        int r;

        runtime_opts_default(&o);
        o.model_path = a->input;
        o.threads = a->threads;
        o.max_batch = 512;
        r = runtime_open(&o, &rt, &err);
        if (r < 0)
                return cli_error(r, "%s", err.msg);
        const struct npu_model *m = rt->model;
        if (m->precision != NPU_PRECISION_FLOAT)
                return cli_error(-EINVAL, "%s is already quantized (%s)", a->input, precision_name(m->precision));
        for (int l = 0; w4a8 && l < m->hp.n_layers; l++) {
                const struct npu_weight *ws = &m->layers[l].wq;
                for (int i = 0; i < 7; i++)
                        if (ws[i].cols % a->group_size)
                                return cli_error(-EINVAL, "w4a8: layer %d's %s has rows of %lld, not a multiple of "
                                                          "the group size %d",
                                                 l, layer_matrices[i], (long long)ws[i].cols, a->group_size);
        }
        if (a->calib) {
                r = cli_read_file(a->calib, &text, &len);
                if (r < 0)
                        return cli_error(r, "cannot read %s: %s", a->calib, strerror(-r));
        } else {
                text = strdup(default_calibration);
                if (!text)
                        return -ENOMEM;
                len = strlen(text);
        }
        r = calib_stats_new(&m->hp, &cs);
        if (r < 0)
                return r;
        alphas = calloc(m->hp.n_layers, sizeof(*alphas));
        if (!alphas)
                return -ENOMEM;
        for (int l = 0; l < m->hp.n_layers; l++)
                for (int g = 0; g < W4A8_GROUPS; g++)
                        alphas[l][g] = a->alpha;
        if (a->smooth) {
                r = calibrate(rt, text, len, a->samples, cs, &err);
                if (r < 0)
                        return cli_error(r, "calibration failed: %s", err.msg);
        }
        if (a->smooth && a->search) {
                r = search_alphas(rt, cs, a, text, len, alphas, &err);
                if (r < 0)
                        return cli_error(r, "searching alpha failed: %s", err.msg);
        }

        r = gguf_writer_new(a->output, &w, &err);
        if (r < 0)
                return cli_error(r, "%s", err.msg);
        r = gguf_writer_copy_kv(w, m->gguf, skip_key);
        if (r >= 0)
                r = add_quant_meta(w, a, cs, (const float(*)[W4A8_GROUPS])alphas, m->hp.n_layers, text, len);
        if (r >= 0)
                r = plan_tensors(w, m, a);
        if (r >= 0)
                r = gguf_writer_write_header(w, &err);
        if (r >= 0)
                r = write_matrix(w, &m->tok_embd, NULL, matrix_type(a, m, -1, 0, m->hp.dim), &err);
        if (r >= 0)
                r = gguf_writer_write_tensor(w, m->output_norm, sizeof(float) * m->hp.dim, &err);
        if (r >= 0 && m->output.data != m->tok_embd.data)
                r = write_matrix(w, &m->output, NULL, matrix_type(a, m, -2, 0, m->hp.dim), &err);
        if (r >= 0 && m->rope_freqs)
                r = gguf_writer_write_tensor(w, m->rope_freqs, sizeof(float) * (m->hp.head_dim / 2), &err);
        for (int l = 0; r >= 0 && l < m->hp.n_layers; l++) {
                if (w4a8)
                        r = write_layer_w4a8(w, m, l, cs, alphas[l], a, &err);
                else
                        r = write_layer(w, m, l, cs, a, &err);
                progress("quantization", l + 1, m->hp.n_layers);
        }
        if (r >= 0)
                r = gguf_writer_finish(w, &err);
        if (r < 0) {
                unlink(a->output);
                return cli_error(r, "writing %s failed: %s", a->output, err.msg);
        }
        if (a->preset)
                fprintf(stderr, "wrote %s: %s\n", a->output, a->preset->name);
        else
                fprintf(stderr, "wrote %s: %s, %s, alpha %.2f%s, %lld calibration tokens\n", a->output,
                        precision_name(a->precision), a->smooth ? "smoothquant" : "no smoothing", a->alpha,
                        a->search && a->smooth ? " (searched per layer)" : "", (long long)cs->n_tokens);
        return 0;
}

enum {
        ARG_GROUP_SIZE = 0x100,
        ARG_NO_SEARCH,
        ARG_SEARCH_TOKENS,
};

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: npu-quantize -i INPUT -o OUTPUT.gguf --precision P [options]\n"
                "  P: w8a8 | w8a16 | w4a8 (npud's, SmoothQuant), or a GGUF type llama.cpp reads:\n"
                "     %s\n"
                "  --alpha A            SmoothQuant's migration strength (default 0.5; w4a8: where the search starts)\n"
                "  --calib FILE         calibration text (default: a few built-in sentences)\n"
                "  --samples N          calibration windows at most\n"
                "  --no-smooth          no SmoothQuant (plain per-channel or per-group scales)\n"
                "  --smooth-all         smooth o_proj and down_proj too, through v_proj and up_proj\n"
                "  --group-size 32|128  w4a8: elements per int4 scale along K (default 32)\n"
                "  --no-search          w4a8: every layer at --alpha, no search\n"
                "  --search-tokens N    w4a8: calibration tokens each searched alpha is scored on (default 1024)\n"
                "  --threads N\n",
                quant_preset_names());
}

/* --precision: an npud precision or a GGUF preset. */
static int parse_precision(const char *s, struct quant_args *a)
{
        a->preset = quant_preset_find(s);
        if (a->preset)
                return 0;
        if (precision_from_string(s, &a->precision) < 0 || a->precision == NPU_PRECISION_FLOAT)
                return cli_error(-EINVAL, "--precision: '%s' is not w8a8, w8a16, w4a8 or one of %s", s,
                                 quant_preset_names());
        return 0;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "input", required_argument, NULL, 'i' },
                { "output", required_argument, NULL, 'o' },
                { "precision", required_argument, NULL, 'P' },
                { "alpha", required_argument, NULL, 'a' },
                { "calib", required_argument, NULL, 'c' },
                { "samples", required_argument, NULL, 's' },
                { "no-smooth", no_argument, NULL, 'n' },
                { "smooth-all", no_argument, NULL, 'A' },
                { "group-size", required_argument, NULL, ARG_GROUP_SIZE },
                { "no-search", no_argument, NULL, ARG_NO_SEARCH },
                { "search-tokens", required_argument, NULL, ARG_SEARCH_TOKENS },
                { "threads", required_argument, NULL, 't' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        struct quant_args a = { .precision = NPU_PRECISION_W8A8, .alpha = 0.5f, .smooth = true, .search = true,
                                .group_size = 32, .search_tokens = 1024 };
        int c, r = 0;

        while ((c = getopt_long(argc, argv, "i:o:t:h", opts, NULL)) >= 0) {
                switch (c) {
                case 'i': a.input = optarg; break;
                case 'o': a.output = optarg; break;
                case 'P': r = parse_precision(optarg, &a); break;
                case 'a':
                        r = cli_parse_float(optarg, "--alpha", &a.alpha);
                        if (r >= 0 && (a.alpha < 0 || a.alpha > 1))
                                r = cli_error(-EINVAL, "--alpha: %g is outside [0, 1]", a.alpha);
                        break;
                case 'c': a.calib = optarg; break;
                case 's': r = cli_parse_i32(optarg, 1, 1 << 20, "--samples", &a.samples); break;
                case 'n': a.smooth = false; break;
                case 'A': a.smooth_all = true; break;
                case ARG_GROUP_SIZE:
                        r = cli_parse_int(optarg, 32, 128, "--group-size", &a.group_size);
                        if (r >= 0 && a.group_size != 32 && a.group_size != 128)
                                r = cli_error(-EINVAL, "--group-size: %d is not 32 or 128", a.group_size);
                        break;
                case ARG_NO_SEARCH: a.search = false; break;
                case ARG_SEARCH_TOKENS:
                        r = cli_parse_i32(optarg, 16, 1 << 20, "--search-tokens", &a.search_tokens);
                        break;
                case 't': r = cli_parse_int(optarg, 1, 1024, "--threads", &a.threads); break;
                case 'h': usage(stdout); return EXIT_SUCCESS;
                default: usage(stderr); return EXIT_FAILURE;
                }
                if (r < 0)
                        return EXIT_FAILURE;
        }
        /* the GGUF presets are plain block quantization; the search is w4a8's */
        if (a.preset)
                a.smooth = false;
        if (a.precision != NPU_PRECISION_W4A8 || a.preset)
                a.search = false;
        if (!a.input || !a.output)
                return cli_error(-EINVAL, "need -i INPUT and -o OUTPUT"), EXIT_FAILURE;
        struct stat st;
        _cleanup_free_ char *converted = NULL;
        if (stat(a.input, &st) == 0 && S_ISDIR(st.st_mode)) {
                struct npu_err err = {};
                if (asprintf(&converted, "%s.from-hf.gguf", a.output) < 0)
                        return EXIT_FAILURE;
                fprintf(stderr, "converting %s to %s\n", a.input, converted);
                r = hf_convert_to_gguf(a.input, converted, GGML_TYPE_F16, &err);
                if (r < 0)
                        return cli_error(r, "%s", err.msg), EXIT_FAILURE;
                a.input = converted;
        }
        r = quantize(&a);
        if (converted)
                unlink(converted);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
