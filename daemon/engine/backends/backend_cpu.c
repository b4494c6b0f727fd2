/* SPDX-License-Identifier: MIT */
/*
 * The cpu back end: every op runs at once on the context's thread pool.
 * The float ops follow the device's definitions (npu_ref.h) bit for bit;
 * this file is compiled with -ffp-contract=off so no multiply-add is fused.
 */
#include <math.h>
#include <stdatomic.h>

#include "backend.h"
#include "forward.h"
#include "gemm_int8.h"
#include "kernels.h"
#include "npu_ref.h"
#include "quant.h"

const char *backend_target_name(enum backend_target t)
{
        return t == BACKEND_TARGET_NPU ? "npu" : "cpu";
}

int backend_target_from_string(const char *s, enum backend_target *ret)
{
        if (strcmp(s, "cpu") == 0)
                *ret = BACKEND_TARGET_CPU;
        else if (strcmp(s, "npu") == 0)
                *ret = BACKEND_TARGET_NPU;
        else
                return -EINVAL;
        return 0;
}

/* --- activation buffers --- */

void forward_scratch_free(struct forward_scratch *s)
{
        if (!s)
                return;
        free(s->x);
        free(s->xb);
        free(s->q);
        free(s->k);
        free(s->v);
        free(s->att);
        free(s->hb);
        free(s->hb2);
        free(s->out_rows);
        act_q_free(&s->aq);
        for (int i = 0; i < _ACT_SCHEME_MAX; i++)
                act_blocks_free(&s->ab[i]);
        free(s);
}

static void mark_scheme(const struct npu_weight *w, enum npu_precision p, bool *need)
{
        enum act_scheme sc = weight_act_scheme(w, p);
        if (sc != ACT_SCHEME_NONE)
                need[sc] = true;
}

int forward_scratch_alloc_quant(struct forward_scratch *s, const struct npu_model *m)
{
        const int64_t wide = MAX(MAX(m->hp.dim, m->hp.ffn_dim), hparams_q_dim(&m->hp));
        bool need[_ACT_SCHEME_MAX] = {};

        for (int l = 0; l < m->hp.n_layers; l++) {
                const struct npu_weight *ws = &m->layers[l].wq;
                for (int j = 0; j < 7; j++)
                        mark_scheme(&ws[j], m->precision, need);
        }
        mark_scheme(&m->output, m->precision, need);
        for (int i = 0; i < _ACT_SCHEME_MAX; i++) {
                if (!need[i] || s->ab[i].cap_rows)
                        continue;
                int r = act_blocks_alloc(&s->ab[i], i, s->cap, wide);
                if (r < 0)
                        return r;
        }
        return 0;
}

int forward_scratch_new(const struct npu_hparams *hp, int32_t cap, struct forward_scratch **ret)
{
        struct forward_scratch *s = calloc(1, sizeof(*s));
        size_t kv_dim = (size_t)hp->n_kv_heads * hp->head_dim;

        if (!s)
                return -ENOMEM;
        s->cap = cap;
        const size_t q_dim = hparams_q_dim(hp), wide = MAX(MAX(hp->dim, hp->ffn_dim), (int32_t)q_dim);
        for (int i = 0; i < _ACT_SCHEME_MAX; i++)
                s->ab[i].scheme = ACT_SCHEME_NONE;
        s->x = malloc(sizeof(float) * cap * hp->dim);
        s->xb = malloc(sizeof(float) * cap * wide);
        s->q = malloc(sizeof(float) * cap * q_dim);
        s->k = malloc(sizeof(float) * cap * kv_dim);
        s->v = malloc(sizeof(float) * cap * kv_dim);
        s->att = malloc(sizeof(float) * cap * q_dim);
        s->hb = malloc(sizeof(float) * cap * hp->ffn_dim);
        s->hb2 = malloc(sizeof(float) * cap * hp->ffn_dim);
        s->out_rows = malloc(sizeof(float) * cap * hp->dim);
        if (!s->x || !s->xb || !s->q || !s->k || !s->v || !s->att || !s->hb || !s->hb2 || !s->out_rows ||
            act_q_alloc(&s->aq, cap, wide) < 0) {
                forward_scratch_free(s);
                return -ENOMEM;
        }
        *ret = s;
        return 0;
}

void forward_scratch_layout(const struct npu_hparams *hp, int32_t cap, struct scratch_layout *l)
{
        const size_t kv_dim = (size_t)hp->n_kv_heads * hp->head_dim, q_dim = hparams_q_dim(hp);
        const size_t wide = MAX(MAX((size_t)hp->dim, (size_t)hp->ffn_dim), q_dim);
        size_t o = 0;
#define PLACE(field, bytes)                \
        do {                               \
                l->field = o;              \
                o = ALIGN_TO(o + (bytes), 64); \
        } while (0)
        PLACE(off_x, sizeof(float) * cap * hp->dim);
        PLACE(off_xb, sizeof(float) * cap * wide);
        PLACE(off_q, sizeof(float) * cap * q_dim);
        PLACE(off_k, sizeof(float) * cap * kv_dim);
        PLACE(off_v, sizeof(float) * cap * kv_dim);
        PLACE(off_att, sizeof(float) * cap * q_dim);
        PLACE(off_hb, sizeof(float) * cap * hp->ffn_dim);
        PLACE(off_hb2, sizeof(float) * cap * hp->ffn_dim);
        PLACE(off_out, sizeof(float) * cap * hp->dim);
        PLACE(off_q8, (size_t)cap * wide + 64);
        PLACE(off_q16, 2 * ((size_t)cap * wide + 32));
        PLACE(off_scale, sizeof(float) * cap);
        PLACE(off_pos, sizeof(int32_t) * cap);
#undef PLACE
        l->bytes = o;
}

/* --- the device's float ops, on the cpu --- */

/*
 * npu_ref_rope on q (n_heads) and k (n_kv_heads) of rows [t0, t1): the same
 * angle, sine and cosine per (row, pair), computed once for both.
 */
void rope_rows(float *q, float *k, const int32_t *pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim,
               float base, int64_t t0, int64_t t1)
{
        const struct rope_spec rs = { .base = base, .freq_scale = 1.0f, .kind = ROPE_ADJACENT };
        rope_rows_spec(q, k, pos, n_heads, n_kv_heads, head_dim, &rs, t0, t1);
}

void rope_rows_spec(float *q, float *k, const int32_t *pos, int32_t n_heads, int32_t n_kv_heads, int32_t head_dim,
                    const struct rope_spec *rs, int64_t t0, int64_t t1)
{
        const int32_t half = head_dim / 2;
        /* the element paired with element i of a pair's first half */
        const int32_t stride = rs->kind == ROPE_HALVES ? 1 : 2, partner = rs->kind == ROPE_HALVES ? half : 1;
        const double lb = npu_ref_log((double)rs->base);
        double freq[half];
        float cs[half], sn[half];

        for (int32_t i = 0; i < half; i++) {
                freq[i] = npu_ref_exp(-(2.0 * (uint32_t)i / (uint32_t)head_dim) * lb);
                /* both exact no-ops for plain RoPE, which stays the device's */
                if (rs->factors)
                        freq[i] /= (double)rs->factors[i];
                if (rs->freq_scale != 1.0f)
                        freq[i] *= (double)rs->freq_scale;
        }
        for (int64_t t = t0; t < t1; t++) {
                for (int32_t i = 0; i < half; i++) {
                        double sd, cd;
                        npu_ref_sincos((double)pos[t] * freq[i], &sd, &cd);
                        sn[i] = (float)sd;
                        cs[i] = (float)cd;
                }
                for (int pass = 0; pass < 2; pass++) {
                        int32_t nh = pass ? n_kv_heads : n_heads;
                        float *rows = pass ? k : q;
                        if (!rows)
                                continue;
                        float *v = rows + t * nh * head_dim;
                        for (int32_t h = 0; h < nh; h++) {
                                float *p = v + (int64_t)h * head_dim;
                                for (int32_t i = 0; i < half; i++) {
                                        float *a = p + stride * i, *b = a + partner;
                                        float x0 = *a, x1 = *b;
                                        *a = x0 * cs[i] - x1 * sn[i];
                                        *b = x0 * sn[i] + x1 * cs[i];
                                }
                        }
                }
        }
}

/*
 * Runs a job whose shares split n_tok tokens (threadpool_split, align 1).
 * One token is all one share's and the others' are empty: it runs on the
 * caller as the only share, without a pass through the pool (a wake-up and
 * a barrier per op of every decode step).
 */
static void run_token_rows(struct threadpool *tp, threadpool_fn fn, void *arg, int64_t n_tok)
{
        if (n_tok <= 1)
                fn(arg, 0, 1);
        else
                threadpool_run(tp, fn, arg);
}

/* --- parallel matmul: up to three weights applied to the same input --- */

/*
 * Rows are handed out in chunks from counters rather than split evenly up
 * front: the threads rarely stream memory at the same speed, and a static
 * split leaves the faster one waiting at the barrier. The chunks are cut
 * into one part per share (up to MATMUL_PARTS), each with its own counter
 * in its own cache line: a share takes its own part's chunks, then helps
 * with the others', so the counters' lines move between cores only at the
 * end (one shared counter cost a cross-core transfer per chunk). Each
 * output row is computed whole by one thread, so results do not depend on
 * the split.
 */
#define MATMUL_CHUNK_ROWS 64
#define MATMUL_PARTS 16

struct matmul_part {
        _Alignas(64) atomic_llong next;
        int64_t end;
};

struct matmul_job {
        int n_w;
        const struct npu_weight *w[3];
        float *y[3];
        int64_t first_chunk[4]; /* chunk index where weight i starts; [n_w] = total */
        int64_t chunk_rows[3];  /* rows of weight i's chunks */
        const float *x;
        const struct act_q *aq;
        const struct act_blocks *ab[3]; /* weight i's block-quantized activations */
        int64_t n_tok;
        size_t xs;
        int n_parts;
        struct matmul_part part[MATMUL_PARTS];
};

static void matmul_chunk(const struct matmul_job *j, int64_t c)
{
        int i = 0;
        while (c >= j->first_chunk[i + 1])
                i++;
        const struct npu_weight *w = j->w[i];
        int64_t r0 = (c - j->first_chunk[i]) * j->chunk_rows[i], r1 = MIN(r0 + j->chunk_rows[i], w->rows);
        if (w->type == GGML_TYPE_I8)
                matmul_int8_rows(w, j->aq, j->n_tok, j->y[i], w->rows, r0, r1);
        else if (j->ab[i])
                matmul_quant_rows(w, j->ab[i], j->n_tok, j->y[i], w->rows, r0, r1);
        else
                matmul_float_rows(w, j->x, j->n_tok, j->xs, j->y[i], w->rows, r0, r1);
}

static void matmul_worker(void *arg, int ith, int nth)
{
        struct matmul_job *j = arg;

        /* its own part, then the others' in turn */
        for (int k = 0; k < j->n_parts; k++) {
                struct matmul_part *pt = &j->part[(ith + k) % j->n_parts];
                for (;;) {
                        const int64_t c = atomic_fetch_add(&pt->next, 1);
                        if (c >= pt->end)
                                break;
                        matmul_chunk(j, c);
                }
        }
}

struct quant_job {
        const float *x;
        int64_t n_tok, cols;
        struct act_q *aq;
        enum npu_precision prec;
        struct act_blocks *ab[_ACT_SCHEME_MAX]; /* the schemes to quantize for */
};

static void quant_worker(void *arg, int ith, int nth)
{
        struct quant_job *j = arg;
        int64_t t0, t1;
        /* act_q's packed rows (w8a8 and w8a16, and w4a8's per-token rows) in runs of whole token groups */
        threadpool_split(j->n_tok, ith, nth, j->aq || j->ab[ACT_SCHEME_TOKEN_I8] ? ACT_Q_TOKEN_ALIGN : 1, &t0, &t1);
        if (j->aq)
                act_quantize_rows(j->aq, j->prec, j->x, j->cols, t0, t1);
        for (int i = 0; i < _ACT_SCHEME_MAX; i++)
                if (j->ab[i])
                        act_blocks_quantize(j->ab[i], j->x, j->cols, t0, t1);
}

static void cpu_matmul(struct backend *be, const float *x, int64_t n_tok, int n_w, const struct npu_weight *const *w,
                       float *const *y)
{
        struct npu_ctx *c = be->c;
        struct forward_scratch *s = be->s;
        struct matmul_job j = { .n_w = n_w, .x = x, .n_tok = n_tok, .xs = w[0]->cols, .aq = &s->aq };
        /* quantized already by the op that wrote x */
        const bool have_aq = s->aq_src == x && s->aq_rows == n_tok && s->aq.cols == w[0]->cols;

        s->aq_src = NULL;
        struct quant_job q = { .x = x, .n_tok = n_tok, .cols = w[0]->cols, .prec = c->model->precision };
        bool quantize = false;
        if (w[0]->type == GGML_TYPE_I8 && !have_aq) {
                q.aq = &be->s->aq;
                quantize = true;
        }
        for (int i = 0; i < n_w; i++) {
                enum act_scheme sc = weight_act_scheme(w[i], c->model->precision);
                if (sc == ACT_SCHEME_NONE)
                        continue;
                j.ab[i] = q.ab[sc] = &be->s->ab[sc];
                quantize = true;
        }
        if (quantize)
                run_token_rows(c->tp, quant_worker, &q, n_tok);
        for (int i = 0; i < n_w; i++) {
                j.w[i] = w[i];
                j.y[i] = y[i];
                j.chunk_rows[i] = w[i]->type == GGML_TYPE_I8 ? gemm_i8_chunk_rows(w[i], j.aq, n_tok, MATMUL_CHUNK_ROWS)
                                                             : MATMUL_CHUNK_ROWS;
                j.first_chunk[i + 1] = j.first_chunk[i] + DIV_ROUND_UP(w[i]->rows, j.chunk_rows[i]);
        }
        const int64_t chunks = j.first_chunk[n_w];
        j.n_parts = MIN(threadpool_size(c->tp), MATMUL_PARTS);
        for (int p = 0; p < j.n_parts; p++) {
                atomic_init(&j.part[p].next, chunks * p / j.n_parts);
                j.part[p].end = chunks * (p + 1) / j.n_parts;
        }
        threadpool_run(c->tp, matmul_worker, &j);
}

/* --- row-wise element ops, split over threads by token --- */

struct rows_job {
        struct backend *be;
        const struct npu_batch *b;
        int32_t layer;
        int64_t n_tok;
        float *out, *q, *k, *vq;
        const float *in, *w;
        struct act_q *aq; /* quantize out's rows into it as they are written, or NULL */
};

void qkv_finish_rows(struct npu_ctx *c, const struct npu_batch *b, int32_t layer, float *q, float *k, float *v,
                     int64_t t0, int64_t t1)
{
        const struct npu_model *m = c->model;
        const struct npu_hparams *hp = &m->hp;
        const struct npu_layer *L = &m->layers[layer];
        const struct kv_pool *kv = c->kv;
        const int32_t kv_dim = hp->n_kv_heads * hp->head_dim, q_dim = hparams_q_dim(hp), hd = hp->head_dim;
        const struct rope_spec rs = { .base = hp->rope_base, .freq_scale = hp->rope_freq_scale,
                                      .factors = m->rope_freqs, .kind = hp->rope_kind };

        for (int64_t t = t0; t < t1; t++) {
                float *qt = q + t * q_dim, *kt = k + t * kv_dim, *vt = v + t * kv_dim;
                if (L->bq) {
                        npu_ref_add(qt, L->bq, qt, 0, (size_t)q_dim);
                        npu_ref_add(kt, L->bk, kt, 0, (size_t)kv_dim);
                        npu_ref_add(vt, L->bv, vt, 0, (size_t)kv_dim);
                }
                if (L->q_norm) {
                        /* each head its own row */
                        rmsnorm_rows(qt, qt, L->q_norm, hd, hp->rms_eps, 0, hp->n_heads);
                        rmsnorm_rows(kt, kt, L->k_norm, hd, hp->rms_eps, 0, hp->n_kv_heads);
                }
        }
        rope_rows_spec(q, k, b->pos, hp->n_heads, hp->n_kv_heads, hd, &rs, t0, t1);
        for (int64_t t = t0; t < t1; t++) {
                int32_t pos = b->pos[t];
                const float *kt = k + t * kv_dim, *vt = v + t * kv_dim;
                void *kd = kv_at(kv, b->seqs[t], layer, 0, pos);
                void *vd = kv_at(kv, b->seqs[t], layer, 1, pos);
                if (kv->type == KV_TYPE_Q8) {
                        /* each head's values with their own scale, as the device's QUANT_I8 */
                        quant_rows_i8(kt, kd, kv_scale_at(kv, b->seqs[t], layer, 0, pos), hd, hp->n_kv_heads);
                        quant_rows_i8(vt, vd, kv_scale_at(kv, b->seqs[t], layer, 1, pos), hd, hp->n_kv_heads);
                } else if (kv->type == KV_TYPE_F16) {
                        cvt_f32_f16_range(kt, kd, kv_dim);
                        cvt_f32_f16_range(vt, vd, kv_dim);
                } else {
                        memcpy(kd, kt, kv_dim * sizeof(float));
                        memcpy(vd, vt, kv_dim * sizeof(float));
                }
        }
}

static void rope_store_worker(void *arg, int ith, int nth)
{
        struct rows_job *j = arg;
        int64_t t0, t1;

        threadpool_split(j->n_tok, ith, nth, 1, &t0, &t1);
        qkv_finish_rows(j->be->c, j->b, j->layer, j->q, j->k, j->vq, t0, t1);
}

/*
 * RMSNorm and SiLU quantize each row they write for the int8 matmul that
 * reads it next, while the row is still in cache (act_quantize_rows, the
 * same bits as the matmul's own pass over all rows).
 */
static void rmsnorm_worker(void *arg, int ith, int nth)
{
        struct rows_job *j = arg;
        const struct npu_model *m = j->be->c->model;
        const int64_t dim = m->hp.dim;
        int64_t t0, t1;
        threadpool_split(j->n_tok, ith, nth, j->aq ? ACT_Q_TOKEN_ALIGN : 1, &t0, &t1);
        /* eight rows at a time: rmsnorm_rows' vector width */
        for (int64_t t = t0; t < t1; t += 8) {
                const int64_t e = MIN(t + 8, t1);
                rmsnorm_rows(j->out, j->in, j->w, dim, m->hp.rms_eps, t, e);
                if (j->aq)
                        act_quantize_rows(j->aq, m->precision, j->out, dim, t, e);
        }
}

static void silu_worker(void *arg, int ith, int nth)
{
        struct rows_job *j = arg;
        const struct npu_model *m = j->be->c->model;
        const int64_t ffn = m->hp.ffn_dim;
        int64_t t0, t1;
        threadpool_split(j->n_tok, ith, nth, j->aq ? ACT_Q_TOKEN_ALIGN : 1, &t0, &t1);
        for (int64_t t = t0; t < t1; t++) {
                silu_mul_range(j->out, j->in, t * ffn, (t + 1) * ffn);
                if (j->aq)
                        act_quantize_rows(j->aq, m->precision, j->out, ffn, t, t + 1);
        }
}

/* Every layer's matrices are int8 (w8a8, w8a16): the element ops may quantize for them. */
static bool layers_int8(const struct npu_model *m)
{
        for (int32_t l = 0; l < m->hp.n_layers; l++) {
                const struct npu_weight *ws = &m->layers[l].wq;
                for (int i = 0; i < 7; i++)
                        if (ws[i].type != GGML_TYPE_I8)
                                return false;
        }
        return m->precision == NPU_PRECISION_W8A8 || m->precision == NPU_PRECISION_W8A16;
}

struct backend_cpu {
        struct backend be; /* first: the ops get &be */
        bool quantize_rows; /* layers_int8() */
};

/* The rows job's quantized output, when the ops quantize as they write; then the matmul knows. */
static struct act_q *rows_quantized(struct backend *be, const float *out, int64_t n_tok)
{
        if (!((struct backend_cpu *)be)->quantize_rows)
                return NULL;
        be->s->aq_src = out;
        be->s->aq_rows = n_tok;
        return &be->s->aq;
}

static void cpu_begin(struct backend *be, const struct npu_batch *b)
{
}

static void cpu_wrote(struct backend *be, const void *p, size_t bytes)
{
}

static void cpu_rmsnorm(struct backend *be, float *out, const float *x, const float *w, int64_t n_tok)
{
        struct rows_job j = { .be = be, .n_tok = n_tok, .out = out, .in = x, .w = w,
                              .aq = rows_quantized(be, out, n_tok) };
        run_token_rows(be->c->tp, rmsnorm_worker, &j, n_tok);
}

static void cpu_rope_store(struct backend *be, const struct npu_batch *b, int32_t layer, float *q, float *k,
                           float *v)
{
        struct rows_job j = { .be = be, .b = b, .layer = layer, .n_tok = b->n, .q = q, .k = k, .vq = v };
        run_token_rows(be->c->tp, rope_store_worker, &j, b->n);
}

static void cpu_silu_mul(struct backend *be, float *gate, const float *up, int64_t n_tok)
{
        struct rows_job j = { .be = be, .n_tok = n_tok, .out = gate, .in = up,
                              .aq = rows_quantized(be, gate, n_tok) };
        run_token_rows(be->c->tp, silu_worker, &j, n_tok);
}

struct add_job {
        float *y;
        const float *x;
        int64_t n;
};

static void add_worker(void *arg, int ith, int nth)
{
        struct add_job *j = arg;
        int64_t i0, i1;
        /* whole cache lines per thread */
        threadpool_split(j->n, ith, nth, 16, &i0, &i1);
        vec_add(j->y + i0, j->x + i0, i1 - i0);
}

/* A prompt's residual add (a million floats at 7B) over the threads; one token's stays on the caller. */
#define ADD_PARALLEL_MIN (1 << 16)

static void cpu_add(struct backend *be, float *y, const float *x, int64_t n)
{
        struct add_job j = { .y = y, .x = x, .n = n };
        if (n < ADD_PARALLEL_MIN)
                vec_add(y, x, n);
        else
                threadpool_run(be->c->tp, add_worker, &j);
}

static int cpu_sync(struct backend *be, struct npu_err *err)
{
        return 0;
}

static int cpu_reset(struct backend *be, struct npu_err *err)
{
        return 0;
}

static void cpu_free(struct backend *be)
{
        free(be);
}

static const struct backend_ops cpu_ops = {
        .name = "cpu",
        .begin = cpu_begin,
        .cpu_wrote = cpu_wrote,
        .rmsnorm = cpu_rmsnorm,
        .matmul = cpu_matmul,
        .rope_store = cpu_rope_store,
        .silu_mul = cpu_silu_mul,
        .add = cpu_add,
        .sync = cpu_sync,
        .reset = cpu_reset,
        .free = cpu_free,
};

int backend_cpu_new(struct npu_ctx *c, struct forward_scratch *s, struct backend **ret)
{
        struct backend_cpu *cpu = calloc(1, sizeof(*cpu));
        if (!cpu)
                return -ENOMEM;
        *cpu = (struct backend_cpu) { .be = { .ops = &cpu_ops, .c = c, .s = s }, .quantize_rows = layers_int8(c->model) };
        *ret = &cpu->be;
        return 0;
}
