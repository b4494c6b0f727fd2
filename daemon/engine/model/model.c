/* SPDX-License-Identifier: MIT */
#include <math.h>

#include "fp16.h"
#include "gemm_int8.h"
#include "model.h"
#include "quant_interleave.h"
#include "quant_types.h"

const char *precision_name(enum npu_precision p)
{
        switch (p) {
        case NPU_PRECISION_FLOAT: return "float";
        case NPU_PRECISION_W8A8: return "w8a8";
        case NPU_PRECISION_W8A16: return "w8a16";
        case NPU_PRECISION_W4A8: return "w4a8";
        }
        return "unknown";
}

bool precision_runs_on_npu(enum npu_precision p)
{
        return p == NPU_PRECISION_W8A8 || p == NPU_PRECISION_W8A16;
}

int precision_from_string(const char *s, enum npu_precision *ret)
{
        for (int p = NPU_PRECISION_FLOAT; p <= NPU_PRECISION_W4A8; p++)
                if (strcmp(s, precision_name(p)) == 0) {
                        *ret = p;
                        return 0;
                }
        return -EINVAL;
}

void model_free(struct npu_model *m)
{
        if (!m)
                return;
        for (size_t i = 0; i < m->n_owned; i++)
                free(m->owned[i]);
        free(m->owned);
        for (size_t i = 0; i < m->n_packed; i++)
                free(m->packed[i]);
        free(m->packed);
        free(m->row_sums);
        free(m->layers);
        free(m->tensor_used);
        vocab_free(m->vocab);
        gguf_free(m->gguf);
        free(m->path);
        free(m->name);
        free(m);
}

void weight_row_f32(const struct npu_weight *w, int64_t r, float *out)
{
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;

        if (w->interleave) {
                quant_interleaved_row_f32(w, r, out);
                return;
        }
        switch (w->type) {
        case GGML_TYPE_F32:
                memcpy(out, row, w->cols * sizeof(float));
                break;
        case GGML_TYPE_F16:
                for (int64_t i = 0; i < w->cols; i++) {
                        uint16_t h;
                        memcpy(&h, row + 2 * i, 2);
                        out[i] = f16_to_f32(h);
                }
                break;
        case GGML_TYPE_BF16:
                for (int64_t i = 0; i < w->cols; i++) {
                        uint16_t h;
                        memcpy(&h, row + 2 * i, 2);
                        out[i] = bf16_to_f32(h);
                }
                break;
        case GGML_TYPE_I8: {
                float s = w->scale[r];
                int8_t q[w->cols];
                gemm_i8_unpack_row(w->data, w->rows, w->cols, r, q);
                for (int64_t i = 0; i < w->cols; i++)
                        out[i] = s * q[i];
                break;
        }
        default:
                if (quant_type_supported(w->type))
                        dequantize_row(w->type, row, out, w->cols);
                else
                        memset(out, 0, w->cols * sizeof(float));
        }
}

/* Marks a tensor as read, so that load can refuse the ones nothing read. */
static void mark_used(struct npu_model *m, const struct gguf_tensor *t)
{
        if (m->tensor_used)
                m->tensor_used[t - m->gguf->tensors] = 1;
}

/* A block-quantized matrix whose scales are not all finite is corrupt: refuse it by name, row and block. */
static int check_quant_blocks(const struct npu_weight *w, const char *name, struct npu_err *err)
{
        if (!quant_type_supported(w->type))
                return 0;
        for (int64_t r = 0; r < w->rows; r++) {
                int64_t bad = 0;
                if (quant_row_check(w->type, (const uint8_t *)w->data + r * w->row_bytes, w->cols, &bad) < 0)
                        return npu_err_set(err, -EBADMSG,
                                           "tensor '%s' (%s) is corrupt: block %lld of row %lld has a scale "
                                           "that is not a finite number",
                                           name, ggml_type_name(w->type), (long long)bad, (long long)r);
        }
        return 0;
}

static int bind_weight(struct npu_model *m, const char *name, int64_t rows, int64_t cols,
                       struct npu_weight *w, bool optional, struct npu_err *err)
{
        const struct gguf_tensor *t = gguf_find_tensor(m->gguf, name);
        int r;

        if (!t) {
                if (optional)
                        return -ENOENT;
                return npu_err_set(err, -EINVAL, "tensor '%s' is missing", name);
        }
        if (t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != 1 || t->ne[3] != 1)
                return npu_err_set(err, -EINVAL, "tensor '%s' has shape [%lld, %lld], expected [%lld, %lld]", name,
                                   (long long)t->ne[0], (long long)t->ne[1], (long long)cols, (long long)rows);
        switch (t->type) {
        case GGML_TYPE_F32:
        case GGML_TYPE_F16:
        case GGML_TYPE_BF16:
        case GGML_TYPE_I8:
                break;
        default:
                if (quant_type_supported(t->type))
                        break;
                return npu_err_set(err, -EOPNOTSUPP, "tensor '%s' has type %s, which matrices cannot use", name,
                                   ggml_type_name(t->type));
        }
        *w = (struct npu_weight) { .type = t->type, .rows = rows, .cols = cols, .data = t->data,
                                   .row_bytes = t->nbytes / rows };
        r = check_quant_blocks(w, name, err);
        if (r < 0)
                return r;
        m->weight_bytes += t->nbytes;
        mark_used(m, t);
        if (t->type == GGML_TYPE_I8) {
                char sname[128];
                snprintf(sname, sizeof(sname), "%.*s.scale", (int)(strlen(name) - strlen(".weight")), name);
                const struct gguf_tensor *s = gguf_find_tensor(m->gguf, sname);
                if (!s)
                        return npu_err_set(err, -EINVAL, "int8 tensor '%s' has no scale tensor '%s'", name, sname);
                if (s->type != GGML_TYPE_F32 || s->ne[0] != rows || s->ne[1] != 1)
                        return npu_err_set(err, -EINVAL, "scale tensor '%s' must be F32 [%lld]", sname, (long long)rows);
                w->scale = s->data;
                mark_used(m, s);
                for (int64_t i = 0; i < rows; i++)
                        if (!isfinite(w->scale[i]) || w->scale[i] < 0)
                                return npu_err_set(err, -EINVAL, "scale tensor '%s' has a bad value at %lld", sname,
                                                   (long long)i);
                m->weight_bytes += s->nbytes;
        }
        return 0;
}

static int bind_vector_opt(struct npu_model *m, const char *name, int64_t n, const float **ret, bool optional,
                           struct npu_err *err)
{
        const struct gguf_tensor *t = gguf_find_tensor(m->gguf, name);

        *ret = NULL;
        if (!t && optional)
                return 0;
        if (!t)
                return npu_err_set(err, -EINVAL, "tensor '%s' is missing", name);
        if (t->ne[0] != n || t->n_dims != 1)
                return npu_err_set(err, -EINVAL, "tensor '%s' has %lld elements, expected %lld", name,
                                   (long long)t->ne[0], (long long)n);
        m->weight_bytes += t->nbytes;
        mark_used(m, t);
        if (t->type == GGML_TYPE_F32 && ((uintptr_t)t->data % 4) == 0) {
                *ret = t->data;
                return 0;
        }
        if (t->type != GGML_TYPE_F16 && t->type != GGML_TYPE_BF16 && t->type != GGML_TYPE_F32)
                return npu_err_set(err, -EOPNOTSUPP, "tensor '%s' has type %s, vectors must be F32/F16/BF16", name,
                                   ggml_type_name(t->type));
        float **owned = realloc(m->owned, (m->n_owned + 1) * sizeof(*owned));
        if (!owned)
                return -ENOMEM;
        m->owned = owned;
        float *v = malloc(n * sizeof(float));
        if (!v)
                return -ENOMEM;
        m->owned[m->n_owned++] = v;
        struct npu_weight w = { .type = t->type, .rows = 1, .cols = n, .data = t->data, .row_bytes = t->nbytes };
        weight_row_f32(&w, 0, v);
        *ret = v;
        return 0;
}

static int bind_vector(struct npu_model *m, const char *name, int64_t n, const float **ret, struct npu_err *err)
{
        return bind_vector_opt(m, name, n, ret, false, err);
}

/* Biases of q, k and v: all three (qwen2: required) or none. */
static int bind_biases(struct npu_model *m, int i, struct npu_layer *l, struct npu_err *err)
{
        const struct npu_hparams *hp = &m->hp;
        const int64_t kv_dim = (int64_t)hp->n_kv_heads * hp->head_dim;
        const bool required = hp->arch == NPU_ARCH_QWEN2;
        char name[96];
        int r;

        snprintf(name, sizeof(name), "blk.%d.attn_q.bias", i);
        if ((r = bind_vector_opt(m, name, hparams_q_dim(hp), &l->bq, !required, err)) < 0)
                return r;
        snprintf(name, sizeof(name), "blk.%d.attn_k.bias", i);
        if ((r = bind_vector_opt(m, name, kv_dim, &l->bk, !required, err)) < 0)
                return r;
        snprintf(name, sizeof(name), "blk.%d.attn_v.bias", i);
        if ((r = bind_vector_opt(m, name, kv_dim, &l->bv, !required, err)) < 0)
                return r;
        if (!l->bq != !l->bk || !l->bq != !l->bv)
                return npu_err_set(err, -EINVAL, "layer %d has biases on some of q, k and v only", i);
        return 0;
}

static int bind_layer(struct npu_model *m, int i, struct npu_err *err)
{
        const struct npu_hparams *hp = &m->hp;
        struct npu_layer *l = &m->layers[i];
        int64_t kv_dim = (int64_t)hp->n_kv_heads * hp->head_dim, q_dim = hparams_q_dim(hp);
        char name[96];
        int r;

#define W(field, tname, rows, cols)                                                   \
        do {                                                                          \
                snprintf(name, sizeof(name), "blk.%d." tname ".weight", i);           \
                r = bind_weight(m, name, rows, cols, &l->field, false, err);          \
                if (r < 0)                                                            \
                        return r;                                                     \
        } while (0)
        W(wq, "attn_q", q_dim, hp->dim);
        W(wk, "attn_k", kv_dim, hp->dim);
        W(wv, "attn_v", kv_dim, hp->dim);
        W(wo, "attn_output", hp->dim, q_dim);
        W(w_gate, "ffn_gate", hp->ffn_dim, hp->dim);
        W(w_up, "ffn_up", hp->ffn_dim, hp->dim);
        W(w_down, "ffn_down", hp->dim, hp->ffn_dim);
#undef W
        snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", i);
        r = bind_vector(m, name, hp->dim, &l->attn_norm, err);
        if (r < 0)
                return r;
        snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", i);
        r = bind_vector(m, name, hp->dim, &l->ffn_norm, err);
        if (r < 0)
                return r;
        if (hp->arch != NPU_ARCH_QWEN3)
                return bind_biases(m, i, l, err);
        snprintf(name, sizeof(name), "blk.%d.attn_q_norm.weight", i);
        r = bind_vector(m, name, hp->head_dim, &l->q_norm, err);
        if (r < 0)
                return r;
        snprintf(name, sizeof(name), "blk.%d.attn_k_norm.weight", i);
        return bind_vector(m, name, hp->head_dim, &l->k_norm, err);
}

/* Llama 3.1's frequency divisors (written by converters from rope_scaling type llama3). */
static int bind_rope_freqs(struct npu_model *m, struct npu_err *err)
{
        const int32_t half = m->hp.head_dim / 2;
        int r;

        if (m->hp.arch != NPU_ARCH_LLAMA)
                return 0; /* elsewhere the tensor stays unused, and is refused */
        r = bind_vector_opt(m, "rope_freqs.weight", half, &m->rope_freqs, true, err);
        if (r < 0 || !m->rope_freqs)
                return r;
        for (int32_t i = 0; i < half; i++)
                if (!isfinite(m->rope_freqs[i]) || !(m->rope_freqs[i] > 0))
                        return npu_err_set(err, -EINVAL, "rope_freqs.weight has a bad value at %d", i);
        return 0;
}

/* Every tensor of the file is read by the model: one that is not would change its math unseen. */
static int check_all_used(const struct npu_model *m, struct npu_err *err)
{
        for (uint64_t i = 0; i < m->gguf->n_tensors; i++)
                if (!m->tensor_used[i]) {
                        const struct gguf_str *n = &m->gguf->tensors[i].name;
                        return npu_err_set(err, -EOPNOTSUPP, "tensor '%.*s' is not implemented for architecture %s",
                                           (int)MIN(n->len, 96u), n->s, arch_name(m->hp.arch));
                }
        return 0;
}

static bool layers_plain(const struct npu_model *m)
{
        const struct npu_hparams *hp = &m->hp;
        if (hp->rope_kind != ROPE_ADJACENT || hp->rope_freq_scale != 1.0f || m->rope_freqs)
                return false;
        for (int i = 0; i < hp->n_layers; i++)
                if (m->layers[i].bq || m->layers[i].q_norm)
                        return false;
        return true;
}

static int read_quant_meta(struct npu_model *m, struct npu_err *err)
{
        _cleanup_free_ char *prec = NULL;
        int r = gguf_get_str(m->gguf, "npud.quantization.precision", &prec, err);

        m->precision = NPU_PRECISION_FLOAT;
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (precision_from_string(prec, &m->precision) < 0)
                return npu_err_set(err, -EINVAL, "npud.quantization.precision '%s' is not w8a8, w8a16 or w4a8",
                                   prec);
        r = gguf_get_f32(m->gguf, "npud.quantization.alpha", &m->smooth_alpha, err);
        if (r < 0 && r != -ENOENT)
                return r;
        return 0;
}

/* The matrix type each precision stores: I8 (w8a8, w8a16), Q4_0 blocks (w4a8); float models take any. */
static bool type_fits_precision(enum ggml_type t, enum npu_precision p)
{
        switch (p) {
        case NPU_PRECISION_W8A8:
        case NPU_PRECISION_W8A16:
                return t == GGML_TYPE_I8;
        case NPU_PRECISION_W4A8:
                return t == GGML_TYPE_Q4_0;
        default:
                return t != GGML_TYPE_I8;
        }
}

static int check_quantized_layers(const struct npu_model *m, struct npu_err *err)
{
        for (int i = 0; i < m->hp.n_layers; i++) {
                const struct npu_weight *ws = &m->layers[i].wq;
                for (int j = 0; j < 7; j++)
                        if (!type_fits_precision(ws[j].type, m->precision))
                                return npu_err_set(err, -EINVAL,
                                                   "layer %d: matrix %d is %s but the file says precision %s", i, j,
                                                   ggml_type_name(ws[j].type), precision_name(m->precision));
        }
        return 0;
}

/* Keeps a copy of w's data with the model (m->packed), for an image that cannot be written in place. */
static int weight_own_copy(struct npu_model *m, struct npu_weight *w)
{
        const size_t bytes = (size_t)w->rows * w->row_bytes;
        int8_t **packed = realloc(m->packed, sizeof(*m->packed) * (m->n_packed + 1));
        if (!packed)
                return -ENOMEM;
        m->packed = packed;
        int8_t *copy = malloc(bytes);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, w->data, bytes);
        m->packed[m->n_packed++] = copy;
        w->data = copy;
        return 0;
}

/*
 * Every int8 matrix into the GEMM's panels (gemm_int8.h), once: in place in
 * the file's private mapping, or into a copy for an in-memory image.
 */
static int pack_int8(struct npu_model *m, struct npu_weight *const *ws, size_t n, struct npu_err *err)
{
        const bool in_place = gguf_set_writable(m->gguf, true) == 0;
        int64_t rows = 0;
        int r = 0;

        for (size_t i = 0; i < n; i++) {
                if (ws[i]->cols > GEMM_I8_MAX_K)
                        return npu_err_set(err, -EOPNOTSUPP,
                                           "an int8 matrix has %lld columns; at most %d keep its sums exact",
                                           (long long)ws[i]->cols, GEMM_I8_MAX_K);
                rows += ws[i]->rows;
        }
        m->row_sums = malloc(sizeof(int32_t) * MAX(rows, 1));
        if (!m->row_sums)
                r = -ENOMEM;
        int32_t *sums = m->row_sums;
        for (size_t i = 0; r >= 0 && i < n; i++) {
                struct npu_weight *w = ws[i];
                if (!in_place)
                        r = weight_own_copy(m, w);
                if (r < 0)
                        break;
                r = gemm_i8_pack((int8_t *)w->data, w->data, w->rows, w->cols, sums, &m->i8_clamped);
                w->row_sums = sums;
                sums += w->rows;
        }
        if (in_place)
                (void)gguf_set_writable(m->gguf, false);
        return r < 0 ? npu_err_set(err, r, "cannot repack the int8 matrices: %s", strerror(-r)) : 0;
}

/*
 * The layers' matrices and the output head for which keep() holds, into
 * *ret (freed by the caller); returns how many, or -ENOMEM.
 */
static ssize_t weights_where(struct npu_model *m, bool (*keep)(const struct npu_weight *), struct npu_weight ***ret)
{
        struct npu_weight **ws = malloc(sizeof(*ws) * (7 * (size_t)m->hp.n_layers + 1));
        size_t n = 0;

        if (!ws)
                return -ENOMEM;
        for (int i = 0; i < m->hp.n_layers; i++) {
                struct npu_weight *l = &m->layers[i].wq;
                for (int j = 0; j < 7; j++)
                        if (keep(&l[j]))
                                ws[n++] = &l[j];
        }
        if (keep(&m->output))
                ws[n++] = &m->output;
        *ret = ws;
        return (ssize_t)n;
}

static bool weight_is_int8(const struct npu_weight *w)
{
        return w->type == GGML_TYPE_I8;
}

static int pack_int8_weights(struct npu_model *m, struct npu_err *err)
{
        _cleanup_free_ struct npu_weight **ws = NULL;
        const ssize_t n = weights_where(m, weight_is_int8, &ws);

        if (n < 0)
                return (int)n;
        return n ? pack_int8(m, ws, (size_t)n, err) : 0;
}

/*
 * The block-quantized matrices the one-token kernels read faster
 * interleaved (quant_interleave.h), interleaved in place (the file's
 * private mapping) or in a copy. A tied output head is the embedding's
 * data: the embedding then reads it interleaved too.
 */
static int interleave_quant_weights(struct npu_model *m, struct npu_err *err)
{
        _cleanup_free_ struct npu_weight **ws = NULL;
        const ssize_t n = weights_where(m, quant_interleave_wanted, &ws);
        int r = 0;

        if (n <= 0)
                return (int)n;
        const bool in_place = gguf_set_writable(m->gguf, true) == 0;
        const bool tied = m->output.data == m->tok_embd.data;
        for (ssize_t i = 0; r >= 0 && i < n; i++) {
                if (!in_place)
                        r = weight_own_copy(m, ws[i]);
                if (r >= 0)
                        r = quant_interleave_weight(ws[i]);
        }
        if (in_place)
                (void)gguf_set_writable(m->gguf, false);
        if (r >= 0 && tied && m->output.interleave) {
                m->tok_embd.data = m->output.data;
                m->tok_embd.interleave = m->output.interleave;
        }
        return r < 0 ? npu_err_set(err, r, "cannot interleave the quantized matrices: %s", strerror(-r)) : 0;
}

int model_from_gguf(struct gguf *g, const char *path, struct npu_model **ret, struct npu_err *err)
{
        _cleanup_(model_freep) struct npu_model *m = calloc(1, sizeof(*m));
        int r;

        if (!m)
                return -ENOMEM;
        m->gguf = g;
        r = hparams_read(g, &m->hp, err);
        if (r >= 0)
                r = vocab_from_gguf(g, &m->vocab, err);
        if (r >= 0)
                r = read_quant_meta(m, err);
        if (r < 0) {
                m->gguf = NULL;
                return r;
        }
        m->hp.n_vocab = m->vocab->n;
        gguf_get_str(g, "general.name", &m->name, NULL);
        m->path = strdup(path);
        m->tensor_used = calloc(MAX(g->n_tensors, (uint64_t)1), 1);
        if (!m->path || !m->tensor_used || !(m->layers = calloc(m->hp.n_layers, sizeof(*m->layers)))) {
                m->gguf = NULL;
                return -ENOMEM;
        }

        r = bind_weight(m, "token_embd.weight", m->hp.n_vocab, m->hp.dim, &m->tok_embd, false, err);
        if (r >= 0 && m->tok_embd.type == GGML_TYPE_I8)
                r = npu_err_set(err, -EOPNOTSUPP, "int8 token embeddings are not supported");
        if (r >= 0)
                r = bind_vector(m, "output_norm.weight", m->hp.dim, &m->output_norm, err);
        if (r >= 0) {
                r = bind_weight(m, "output.weight", m->hp.n_vocab, m->hp.dim, &m->output, true, err);
                if (r == -ENOENT) { /* tied to the embedding */
                        m->output = m->tok_embd;
                        r = 0;
                }
        }
        for (int i = 0; r >= 0 && i < m->hp.n_layers; i++)
                r = bind_layer(m, i, err);
        if (r >= 0)
                r = bind_rope_freqs(m, err);
        if (r >= 0)
                r = check_all_used(m, err);
        if (r >= 0)
                r = check_quantized_layers(m, err);
        if (r >= 0)
                r = pack_int8_weights(m, err);
        if (r >= 0)
                r = interleave_quant_weights(m, err);
        free(m->tensor_used);
        m->tensor_used = NULL;
        m->qkv_plain = r >= 0 && layers_plain(m);
        if (r < 0) {
                m->gguf = NULL; /* the caller still owns it */
                return r;
        }
        *ret = TAKE_PTR(m);
        return 0;
}

int model_load(const char *path, struct npu_model **ret, struct npu_err *err)
{
        return model_load_progress(path, NULL, ret, err);
}

int model_load_progress(const char *path, const struct gguf_progress *progress, struct npu_model **ret,
                        struct npu_err *err)
{
        _cleanup_(gguf_freep) struct gguf *g = NULL;
        const char *e = getenv("NPU_MMAP");
        int r = gguf_open_progress(path, e && strcmp(e, "1") == 0 ? 0 : GGUF_OPEN_HUGEPAGES, progress, &g, err);

        if (r < 0)
                return r;
        r = model_from_gguf(g, path, ret, err);
        if (r < 0)
                return r;
        g = NULL;
        return 0;
}

size_t model_bytes_per_token(const struct npu_model *m)
{
        size_t b = 0;
        for (int i = 0; i < m->hp.n_layers; i++) {
                const struct npu_weight *ws = &m->layers[i].wq;
                for (int j = 0; j < 7; j++)
                        b += ws[j].row_bytes * ws[j].rows + (ws[j].scale ? ws[j].rows * 4 : 0);
        }
        b += m->output.row_bytes * m->output.rows + m->tok_embd.row_bytes;
        return b;
}
