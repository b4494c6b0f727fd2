/* SPDX-License-Identifier: MIT */
#include <math.h>

#include "fp16.h"
#include "model.h"
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
        free(m->layers);
        vocab_free(m->vocab);
        gguf_free(m->gguf);
        free(m->path);
        free(m->name);
        free(m);
}

void weight_row_f32(const struct npu_weight *w, int64_t r, float *out)
{
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
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
                for (int64_t i = 0; i < w->cols; i++)
                        out[i] = s * ((const int8_t *)row)[i];
                break;
        }
        default:
                if (quant_type_supported(w->type))
                        dequantize_row(w->type, row, out, w->cols);
                else
                        memset(out, 0, w->cols * sizeof(float));
        }
}

static int get_u32_req(const struct gguf *g, const char *key, int32_t *ret, struct npu_err *err)
{
        uint32_t v;
        int r = gguf_get_u32(g, key, &v, err);
        if (r == -ENOENT)
                return npu_err_set(err, -EINVAL, "required metadata key '%s' is missing", key);
        if (r < 0)
                return r;
        if (v == 0 || v > (1u << 24))
                return npu_err_set(err, -EINVAL, "metadata key '%s' = %u is out of range", key, v);
        *ret = (int32_t)v;
        return 0;
}

static int read_hparams(const struct gguf *g, struct npu_hparams *hp, struct npu_err *err)
{
        _cleanup_free_ char *arch = NULL;
        int r;

        r = gguf_get_str(g, "general.architecture", &arch, err);
        if (r == -ENOENT)
                return npu_err_set(err, -EINVAL, "general.architecture is missing");
        if (r < 0)
                return r;
        if (strcmp(arch, "llama") != 0)
                return npu_err_set(err, -EOPNOTSUPP, "architecture '%s' is not supported (llama is)", arch);

        if ((r = get_u32_req(g, "llama.embedding_length", &hp->dim, err)) < 0 ||
            (r = get_u32_req(g, "llama.block_count", &hp->n_layers, err)) < 0 ||
            (r = get_u32_req(g, "llama.attention.head_count", &hp->n_heads, err)) < 0 ||
            (r = get_u32_req(g, "llama.feed_forward_length", &hp->ffn_dim, err)) < 0 ||
            (r = get_u32_req(g, "llama.context_length", &hp->n_ctx_train, err)) < 0)
                return r;
        hp->n_kv_heads = hp->n_heads;
        r = get_u32_req(g, "llama.attention.head_count_kv", &hp->n_kv_heads, err);
        if (r < 0 && gguf_find_kv(g, "llama.attention.head_count_kv"))
                return r;
        hp->rope_base = 10000.0f;
        r = gguf_get_f32(g, "llama.rope.freq_base", &hp->rope_base, err);
        if (r < 0 && r != -ENOENT)
                return r;
        hp->rms_eps = 1e-5f;
        r = gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &hp->rms_eps, err);
        if (r < 0 && r != -ENOENT)
                return r;
        if (!(hp->rope_base > 0) || !(hp->rms_eps > 0) || !isfinite(hp->rope_base) || hp->rms_eps > 1)
                return npu_err_set(err, -EINVAL, "rope base %g or rms epsilon %g out of range",
                                   hp->rope_base, hp->rms_eps);
        if (hp->dim % hp->n_heads)
                return npu_err_set(err, -EINVAL, "embedding length %d is not a multiple of %d heads",
                                   hp->dim, hp->n_heads);
        if (hp->n_kv_heads > hp->n_heads || hp->n_heads % hp->n_kv_heads)
                return npu_err_set(err, -EINVAL, "%d kv heads do not divide %d heads", hp->n_kv_heads, hp->n_heads);
        hp->head_dim = hp->dim / hp->n_heads;
        if (hp->head_dim % 2)
                return npu_err_set(err, -EINVAL, "head dimension %d is odd", hp->head_dim);
        uint32_t rope_dims;
        r = gguf_get_u32(g, "llama.rope.dimension_count", &rope_dims, err);
        if (r == 0 && (int32_t)rope_dims != hp->head_dim)
                return npu_err_set(err, -EOPNOTSUPP, "partial rope (%u of %d dims) not supported", rope_dims,
                                   hp->head_dim);
        return 0;
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
        if (t->type == GGML_TYPE_I8) {
                char sname[128];
                snprintf(sname, sizeof(sname), "%.*s.scale", (int)(strlen(name) - strlen(".weight")), name);
                const struct gguf_tensor *s = gguf_find_tensor(m->gguf, sname);
                if (!s)
                        return npu_err_set(err, -EINVAL, "int8 tensor '%s' has no scale tensor '%s'", name, sname);
                if (s->type != GGML_TYPE_F32 || s->ne[0] != rows || s->ne[1] != 1)
                        return npu_err_set(err, -EINVAL, "scale tensor '%s' must be F32 [%lld]", sname, (long long)rows);
                w->scale = s->data;
                for (int64_t i = 0; i < rows; i++)
                        if (!isfinite(w->scale[i]) || w->scale[i] < 0)
                                return npu_err_set(err, -EINVAL, "scale tensor '%s' has a bad value at %lld", sname,
                                                   (long long)i);
                m->weight_bytes += s->nbytes;
        }
        return 0;
}

static int bind_vector(struct npu_model *m, const char *name, int64_t n, const float **ret, struct npu_err *err)
{
        const struct gguf_tensor *t = gguf_find_tensor(m->gguf, name);

        if (!t)
                return npu_err_set(err, -EINVAL, "tensor '%s' is missing", name);
        if (t->ne[0] != n || t->n_dims != 1)
                return npu_err_set(err, -EINVAL, "tensor '%s' has %lld elements, expected %lld", name,
                                   (long long)t->ne[0], (long long)n);
        m->weight_bytes += t->nbytes;
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

static int bind_layer(struct npu_model *m, int i, struct npu_err *err)
{
        const struct npu_hparams *hp = &m->hp;
        struct npu_layer *l = &m->layers[i];
        int64_t kv_dim = (int64_t)hp->n_kv_heads * hp->head_dim;
        char name[96];
        int r;

#define W(field, tname, rows, cols)                                                   \
        do {                                                                          \
                snprintf(name, sizeof(name), "blk.%d." tname ".weight", i);           \
                r = bind_weight(m, name, rows, cols, &l->field, false, err);          \
                if (r < 0)                                                            \
                        return r;                                                     \
        } while (0)
        W(wq, "attn_q", hp->dim, hp->dim);
        W(wk, "attn_k", kv_dim, hp->dim);
        W(wv, "attn_v", kv_dim, hp->dim);
        W(wo, "attn_output", hp->dim, hp->dim);
        W(w_gate, "ffn_gate", hp->ffn_dim, hp->dim);
        W(w_up, "ffn_up", hp->ffn_dim, hp->dim);
        W(w_down, "ffn_down", hp->dim, hp->ffn_dim);
#undef W
        snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", i);
        r = bind_vector(m, name, hp->dim, &l->attn_norm, err);
        if (r < 0)
                return r;
        snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", i);
        return bind_vector(m, name, hp->dim, &l->ffn_norm, err);
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

int model_from_gguf(struct gguf *g, const char *path, struct npu_model **ret, struct npu_err *err)
{
        _cleanup_(model_freep) struct npu_model *m = calloc(1, sizeof(*m));
        int r;

        if (!m)
                return -ENOMEM;
        m->gguf = g;
        r = read_hparams(g, &m->hp, err);
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
        if (!m->path || !(m->layers = calloc(m->hp.n_layers, sizeof(*m->layers)))) {
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
                r = check_quantized_layers(m, err);
        if (r < 0) {
                m->gguf = NULL; /* the caller still owns it */
                return r;
        }
        *ret = TAKE_PTR(m);
        return 0;
}

int model_load(const char *path, struct npu_model **ret, struct npu_err *err)
{
        _cleanup_(gguf_freep) struct gguf *g = NULL;
        const char *e = getenv("NPU_MMAP");
        int r = gguf_open_flags(path, e && strcmp(e, "1") == 0 ? 0 : GGUF_OPEN_HUGEPAGES, &g, err);

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
