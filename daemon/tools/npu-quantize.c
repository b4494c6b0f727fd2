/* SPDX-License-Identifier: MIT */
/*
 * npu-quantize: SmoothQuant w8a8 / w8a16 quantization of a float Llama model.
 *   npu-quantize -i INPUT -o OUTPUT.gguf --precision w8a8|w8a16 [--alpha A] [--calib FILE]
 *                [--samples N] [--no-smooth] [--threads N]
 * INPUT is an F32/F16/BF16 GGUF, or a Hugging Face Llama directory
 * (config.json, *.safetensors, tokenizer.model), converted to an F16 GGUF
 * beside the output first. The output keeps embeddings and the output
 * head in F16, norms in F32, and stores every projection as I8 rows with one
 * F32 scale per output channel (tensor NAME.scale), plus npud.quantization.*
 * metadata: precision, alpha, method, version, calibration hash and size.
 */
#include <getopt.h>
#include <math.h>

#include <sys/stat.h>

#include "cli.h"
#include "hf_convert.h"
#include "fp16.h"
#include "quant.h"
#include "smoothquant.h"

#define QUANTIZER_VERSION "npud-smoothquant 1"

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
        float alpha;
        int32_t samples;
        int threads;
        bool smooth;
        bool smooth_all;
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

static int plan_tensors(struct gguf_writer *w, const struct npu_model *m)
{
        const struct npu_hparams *hp = &m->hp;
        int64_t ne[2] = { hp->dim, hp->n_vocab };
        char name[96];
        int r = gguf_writer_add_tensor(w, "token_embd.weight", GGML_TYPE_F16, 2, ne);
        if (r >= 0)
                r = add_f32_vector(w, "output_norm.weight", hp->dim);
        if (r >= 0 && m->output.data != m->tok_embd.data)
                r = gguf_writer_add_tensor(w, "output.weight", GGML_TYPE_F16, 2, ne);
        for (int l = 0; r >= 0 && l < hp->n_layers; l++) {
                const struct npu_weight *mats = &m->layers[l].wq;
                snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", l);
                r = add_f32_vector(w, name, hp->dim);
                snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", l);
                if (r >= 0)
                        r = add_f32_vector(w, name, hp->dim);
                for (int i = 0; r >= 0 && i < 7; i++) {
                        int64_t mne[2] = { mats[i].cols, mats[i].rows };
                        snprintf(name, sizeof(name), "blk.%d.%s.weight", l, layer_matrices[i]);
                        r = gguf_writer_add_tensor(w, name, GGML_TYPE_I8, 2, mne);
                        snprintf(name, sizeof(name), "blk.%d.%s.scale", l, layer_matrices[i]);
                        if (r >= 0)
                                r = add_f32_vector(w, name, mats[i].rows);
                }
        }
        return r;
}

static int write_f16_matrix(struct gguf_writer *w, const struct npu_weight *src, struct npu_err *err)
{
        _cleanup_free_ float *row = malloc(sizeof(float) * src->cols);
        _cleanup_free_ uint16_t *h = malloc(sizeof(uint16_t) * src->cols);
        if (!row || !h)
                return -ENOMEM;
        for (int64_t r = 0; r < src->rows; r++) {
                weight_row_f32(src, r, row);
                for (int64_t k = 0; k < src->cols; k++)
                        h[k] = f32_to_f16(row[k]);
                int ret = gguf_writer_write_tensor_part(w, h, sizeof(uint16_t) * src->cols, err);
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
 * grouped-query attention, where each v channel feeds one o channel) and
 * up_proj -> down_proj.
 */
static void smooth_linear_pairs(const struct npu_model *m, int l, const struct calib_stats *cs, float alpha,
                                float **wf, const int64_t *rows)
{
        const int64_t dim = m->hp.dim, ffn = m->hp.ffn_dim;
        _cleanup_free_ float *s = malloc(sizeof(float) * MAX(dim, ffn));
        if (!s)
                return;
        if (m->hp.n_kv_heads == m->hp.n_heads) {
                smooth_factors(cs->attn_out_max + (size_t)l * dim, wf + 3, rows + 3, 1, dim, alpha, s);
                smooth_apply_rows(wf[2], dim, wf[3], rows[3], dim, s);
        }
        smooth_factors(cs->ffn_mid_max + (size_t)l * ffn, wf + 6, rows + 6, 1, ffn, alpha, s);
        smooth_apply_rows(wf[5], dim, wf[6], rows[6], ffn, s);
}

/* Smooth, quantize and write one decoder layer. */
static int write_layer(struct gguf_writer *w, const struct npu_model *m, int l, const struct calib_stats *cs,
                       const struct quant_args *a, struct npu_err *err)
{
        const struct npu_layer *L = &m->layers[l];
        const struct npu_weight *mats = &L->wq;
        const int64_t dim = m->hp.dim;
        float *wf[7] = {};
        int64_t rows[7];
        _cleanup_free_ float *attn_norm = malloc(sizeof(float) * dim), *ffn_norm = malloc(sizeof(float) * dim),
                             *s = malloc(sizeof(float) * dim);
        int r = 0;

        if (!attn_norm || !ffn_norm || !s)
                return -ENOMEM;
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
                        smooth_linear_pairs(m, l, cs, a->alpha, wf, rows);
        }
        if (r >= 0)
                r = gguf_writer_write_tensor(w, attn_norm, sizeof(float) * dim, err);
        if (r >= 0)
                r = gguf_writer_write_tensor(w, ffn_norm, sizeof(float) * dim, err);
        for (int i = 0; r >= 0 && i < 7; i++) {
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

static int quantize(const struct quant_args *a)
{
        _cleanup_(runtime_freep) struct runtime *rt = NULL;
        _cleanup_(calib_stats_freep) struct calib_stats *cs = NULL;
        _cleanup_(gguf_writer_freep) struct gguf_writer *w = NULL;
        _cleanup_free_ char *text = NULL;
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
        if (a->smooth) {
                r = calibrate(rt, text, len, a->samples, cs, &err);
                if (r < 0)
                        return cli_error(r, "calibration failed: %s", err.msg);
        }

        r = gguf_writer_new(a->output, &w, &err);
        if (r < 0)
                return cli_error(r, "%s", err.msg);
        char hash[32];
        snprintf(hash, sizeof(hash), "fnv1a64:%016llx", (unsigned long long)fnv1a64(text, len));
        r = gguf_writer_copy_kv(w, m->gguf, skip_key);
        if (r >= 0)
                r = gguf_writer_add_str(w, "npud.quantization.precision", precision_name(a->precision));
        if (r >= 0)
                r = gguf_writer_add_f32(w, "npud.quantization.alpha", a->smooth ? a->alpha : 0.0f);
        if (r >= 0)
                r = gguf_writer_add_str(w, "npud.quantization.method", a->smooth ? "smoothquant" : "per-channel");
        if (r >= 0)
                r = gguf_writer_add_str(w, "npud.quantization.version", QUANTIZER_VERSION);
        if (r >= 0)
                r = gguf_writer_add_str(w, "npud.quantization.calibration_hash", hash);
        if (r >= 0)
                r = gguf_writer_add_u32(w, "npud.quantization.calibration_tokens", (uint32_t)cs->n_tokens);
        if (r >= 0)
                r = plan_tensors(w, m);
        if (r >= 0)
                r = gguf_writer_write_header(w, &err);
        if (r >= 0)
                r = write_f16_matrix(w, &m->tok_embd, &err);
        if (r >= 0)
                r = gguf_writer_write_tensor(w, m->output_norm, sizeof(float) * m->hp.dim, &err);
        if (r >= 0 && m->output.data != m->tok_embd.data)
                r = write_f16_matrix(w, &m->output, &err);
        for (int l = 0; r >= 0 && l < m->hp.n_layers; l++) {
                r = write_layer(w, m, l, cs, a, &err);
                progress("quantization", l + 1, m->hp.n_layers);
        }
        if (r >= 0)
                r = gguf_writer_finish(w, &err);
        if (r < 0) {
                unlink(a->output);
                return cli_error(r, "writing %s failed: %s", a->output, err.msg);
        }
        fprintf(stderr, "wrote %s: %s, %s, alpha %.2f, %lld calibration tokens\n", a->output,
                precision_name(a->precision), a->smooth ? "smoothquant" : "per-channel", a->alpha,
                (long long)cs->n_tokens);
        return 0;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "input", required_argument, NULL, 'i' },     { "output", required_argument, NULL, 'o' },
                { "precision", required_argument, NULL, 'P' }, { "alpha", required_argument, NULL, 'a' },
                { "calib", required_argument, NULL, 'c' },     { "samples", required_argument, NULL, 's' },
                { "no-smooth", no_argument, NULL, 'n' },       { "smooth-all", no_argument, NULL, 'A' },       { "threads", required_argument, NULL, 't' },
                { "help", no_argument, NULL, 'h' },            {}
        };
        struct quant_args a = { .precision = NPU_PRECISION_W8A8, .alpha = 0.5f, .smooth = true };
        int c, r = 0;

        while ((c = getopt_long(argc, argv, "i:o:t:h", opts, NULL)) >= 0) {
                switch (c) {
                case 'i': a.input = optarg; break;
                case 'o': a.output = optarg; break;
                case 'P':
                        if (precision_from_string(optarg, &a.precision) < 0 || a.precision == NPU_PRECISION_FLOAT ||
                            a.precision == NPU_PRECISION_W4A8)
                                r = cli_error(-EINVAL, "--precision: '%s' is not w8a8 or w8a16", optarg);
                        break;
                case 'a':
                        r = cli_parse_float(optarg, "--alpha", &a.alpha);
                        if (r >= 0 && (a.alpha < 0 || a.alpha > 1))
                                r = cli_error(-EINVAL, "--alpha: %g is outside [0, 1]", a.alpha);
                        break;
                case 'c': a.calib = optarg; break;
                case 's': r = cli_parse_i32(optarg, 1, 1 << 20, "--samples", &a.samples); break;
                case 'n': a.smooth = false; break;
                case 'A': a.smooth_all = true; break;
                case 't': r = cli_parse_int(optarg, 1, 1024, "--threads", &a.threads); break;
                case 'h':
                        printf("Usage: npu-quantize -i INPUT -o OUTPUT.gguf --precision w8a8|w8a16 [--alpha A] "
                               "[--calib FILE] [--samples N] [--no-smooth] [--smooth-all] [--threads N]\n");
                        return EXIT_SUCCESS;
                default: return EXIT_FAILURE;
                }
                if (r < 0)
                        return EXIT_FAILURE;
        }
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
