/* SPDX-License-Identifier: MIT */
/*
 * Attention over the paged KV cache (f32, f16 and q8), without a model: the
 * all-heads row kernels against the per-head ones, the flash path's results bit-identical
 * across thread counts, batch compositions and rounds and equal to its
 * defined order (chunks of 256 positions folded in order), and both paths
 * against a double-precision reference.
 */
#include <math.h>

#include "fp16.h"
#include "forward.h"
#include "kernels.h"
#include "test-helpers.h"

static uint64_t hash64(uint64_t x)
{
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdull;
        x ^= x >> 33;
        x *= 0xc4ceb9fe1a85ec53ull;
        return x ^ (x >> 33);
}

/* a value in [-range, range) that depends only on its coordinates */
static float value_at(uint64_t seed, uint64_t a, uint64_t b, uint64_t c, float range)
{
        uint64_t h = hash64(seed * 0x9e3779b97f4a7c15ull ^ hash64(a * 1000003 + b) ^ (c << 20));
        return ((float)(h % 4096) / 2048.0f - 1.0f) * range;
}

struct fixture {
        struct npu_model m;
        struct kv_pool *kv;
        struct threadpool *tp;
        struct npu_ctx c;
        struct kv_seq seqs[3];
        float q_range; /* queries are in [-q_range, q_range) */
};

static const int32_t seq_len[3] = { 3000, 1500, 37 };

static void fx_open(struct fixture *f, int32_t H, int32_t KVH, int32_t hd, enum kv_type type, int threads)
{
        struct npu_err err = {};
        memset(f, 0, sizeof(*f));
        f->q_range = 1.0f;
        f->m.hp = (struct npu_hparams) { .dim = H * hd, .n_layers = 2, .n_heads = H, .n_kv_heads = KVH, .head_dim = hd };
        size_t per_pos = kv_block_bytes(&f->m.hp, type, 16) / 16;
        assert_int_equal(kv_pool_new(&f->m.hp, type, 16, per_pos * 4800, &f->kv, &err), 0);
        assert_int_equal(threadpool_new(threads, &f->tp), 0);
        f->c = (struct npu_ctx) { .model = &f->m, .kv = f->kv, .tp = f->tp, .max_batch = 16 };
        assert_int_equal(attention_scratch_new(&f->c), 0);
        kernels_init();
        /* contents depend on (sequence, layer, K/V, position, lane) only, not on which blocks hold them */
        for (int s = 0; s < 3; s++) {
                assert_int_equal(kv_seq_reserve(f->kv, &f->seqs[s], seq_len[s]), 0);
                f->seqs[s].n_pos = seq_len[s];
                for (int32_t l = 0; l < 2; l++)
                        for (int w = 0; w < 2; w++)
                                for (int32_t p = 0; p < seq_len[s]; p++) {
                                        void *row = kv_at(f->kv, &f->seqs[s], l, w, p);
                                        for (int32_t e = 0; e < f->kv->kv_dim; e++) {
                                                float v = value_at(s * 4 + l * 2 + w, p, e, 0, 2.0f);
                                                if (type == KV_TYPE_Q8)
                                                        ((int8_t *)row)[e] = (int8_t)lrintf(v * 63.0f);
                                                else if (type == KV_TYPE_F16)
                                                        ((uint16_t *)row)[e] = f32_to_f16(v);
                                                else
                                                        ((float *)row)[e] = f16_to_f32(f32_to_f16(v));
                                        }
                                        /* q8: a scale per head and per K or V, so a wrong one shows */
                                        for (int32_t h = 0; type == KV_TYPE_Q8 && h < KVH; h++)
                                                kv_scale_at(f->kv, &f->seqs[s], l, w, p)[h] = (1.0f + 0.25f * h + 0.5f * w) / 63.0f;
                                }
        }
}

static void fx_close(struct fixture *f)
{
        for (int s = 0; s < 3; s++)
                kv_seq_release(f->kv, &f->seqs[s]);
        attention_scratch_free(&f->c);
        threadpool_free(f->tp);
        kv_pool_free(f->kv);
}

struct token {
        int seq;
        int32_t pos;
};

/* Runs attention on layer 1 for a batch of tokens; out gets dim floats per token. */
static void run_batch(struct fixture *f, enum attention_kind kind, const struct token *tk, int n, float *out)
{
        const int32_t dim = f->m.hp.dim;
        int32_t pos[16];
        struct kv_seq *seqs[16];
        float *q = malloc(sizeof(float) * dim * n);
        assert_non_null(q);
        for (int t = 0; t < n; t++) {
                pos[t] = tk[t].pos;
                seqs[t] = &f->seqs[tk[t].seq];
                /* the query depends on the token, not on its place in the batch */
                for (int32_t e = 0; e < dim; e++)
                        q[(size_t)t * dim + e] = value_at(99, tk[t].seq, tk[t].pos, e, f->q_range);
        }
        struct npu_batch b = { .n = n, .pos = pos, .seqs = seqs };
        f->c.attention = kind;
        attention_batch(&f->c, &b, 1, q, out);
        free(q);
}

/* Element i (of kv_dim) of a K (which = 0) or V row, as the kernels see it. */
static double kv_value(struct fixture *f, int seq, int which, int32_t p, size_t i)
{
        const void *row = kv_at(f->kv, &f->seqs[seq], 1, which, p);
        switch (f->kv->type) {
        case KV_TYPE_Q8:
                return (double)kv_scale_at(f->kv, &f->seqs[seq], 1, which, p)[i / f->m.hp.head_dim] *
                       ((const int8_t *)row)[i];
        case KV_TYPE_F16:
                return f16_to_f32(((const uint16_t *)row)[i]);
        default:
                return ((const float *)row)[i];
        }
}

/*
 * Softmax attention in double for one token, head by head; f16_operands:
 * with the query and the normalized weights rounded to f16 (llama.cpp's way).
 * Over the q8 cache the query is the int8 one the kernels take
 * (attn_quantize_query).
 */
static void reference_ops(struct fixture *f, struct token tk, bool f16_operands, double *out)
{
        const struct npu_hparams *hp = &f->m.hp;
        const int32_t hd = hp->head_dim, group = hp->n_heads / hp->n_kv_heads, n = tk.pos + 1;
        double *s = malloc(sizeof(double) * n);
        assert_non_null(s);
        for (int32_t h = 0; h < hp->n_heads; h++) {
                double mx = -INFINITY, sum = 0;
                float qf[256], qscale;
                int8_t qi[256];
                int32_t qsum;
                assert_true(hd <= 256);
                for (int32_t e = 0; e < hd; e++)
                        qf[e] = value_at(99, tk.seq, tk.pos, (uint64_t)h * hd + e, f->q_range);
                attn_quantize_query(qf, qi, &qscale, &qsum, 1, hd);
                for (int32_t p = 0; p < n; p++) {
                        double d = 0;
                        for (int32_t e = 0; e < hd; e++) {
                                double kv = kv_value(f, tk.seq, 0, p, (size_t)(h / group) * hd + e);
                                float q = qf[e];
                                if (f16_operands)
                                        q = f16_to_f32(f32_to_f16(q));
                                d += (f->kv->type == KV_TYPE_Q8 ? (double)qi[e] * qscale : (double)q) * kv;
                        }
                        s[p] = d / sqrt((double)hd);
                        mx = fmax(mx, s[p]);
                }
                for (int32_t p = 0; p < n; p++)
                        sum += s[p] = exp(s[p] - mx);
                if (f16_operands) {
                        for (int32_t p = 0; p < n; p++)
                                s[p] = f16_to_f32(f32_to_f16((float)(s[p] / sum)));
                        sum = 1;
                }
                for (int32_t e = 0; e < hd; e++) {
                        double o = 0;
                        for (int32_t p = 0; p < n; p++)
                                o += s[p] * kv_value(f, tk.seq, 1, p, (size_t)(h / group) * hd + e);
                        out[(size_t)h * hd + e] = o / sum;
                }
        }
        free(s);
}

static void reference(struct fixture *f, struct token tk, double *out)
{
        reference_ops(f, tk, false, out);
}

/* The all-heads row kernels give each head's scores and sums bit for bit as the per-head kernels do. */
static void test_rows_kernels(void **state)
{
        static const struct {
                int32_t H, group, hd;
        } shapes[] = { { 8, 1, 128 }, { 8, 4, 64 }, { 4, 2, 32 }, { 8, 2, 8 }, { 4, 1, 40 }, { 16, 1, 128 }, { 32, 4, 64 } };
        for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++) {
                if (kernels_force_isa(isa) < 0)
                        continue;
                for (size_t si = 0; si < ARRAY_SIZE(shapes); si++) {
                        const int32_t H = shapes[si].H, group = shapes[si].group, hd = shapes[si].hd;
                        const size_t stride = (size_t)(H / group) * hd + 8, ld = 24;
                        for (int32_t n = 1; n <= 19; n++) {
                                const size_t sstride = (size_t)(H / group) + 1;
                                int8_t *k8 = malloc(stride * n);
                                float *ks = malloc(sizeof(float) * sstride * n);
                                uint16_t *k16 = malloc(sizeof(uint16_t) * stride * n);
                                float *k32 = malloc(sizeof(float) * stride * n), *q = malloc(sizeof(float) * H * hd);
                                int8_t *qi = malloc(H * hd);
                                float *qs = malloc(sizeof(float) * H);
                                int32_t *qsum = malloc(sizeof(int32_t) * H);
                                float *s1 = calloc(H * ld, sizeof(float)), *s2 = calloc(H * ld, sizeof(float));
                                float *o1 = malloc(sizeof(float) * H * hd), *o2 = malloc(sizeof(float) * H * hd);
                                for (size_t i = 0; i < stride * n; i++) {
                                        k32[i] = f16_to_f32(k16[i] = f32_to_f16(value_at(1, n, i, si, 2.0f)));
                                        k8[i] = (int8_t)lrintf(value_at(1, n, i, si, 127.0f));
                                }
                                for (size_t i = 0; i < sstride * n; i++)
                                        ks[i] = value_at(4, n, i, si, 0.05f);
                                for (int32_t i = 0; i < H * hd; i++) {
                                        q[i] = value_at(2, n, i, si, 1.0f);
                                        o1[i] = o2[i] = value_at(3, n, i, si, 1.0f);
                                }
                                attn_quantize_query(q, qi, qs, qsum, H, hd);
                                for (int pass = 0; pass < 3; pass++) {
                                        if (pass == 0)
                                                attn_scores_rows_f16(q, k16, stride, n, H, group, hd, 0.125f, s1, ld);
                                        else if (pass == 1)
                                                attn_scores_rows_f32(q, k32, stride, n, H, group, hd, 0.125f, s1, ld);
                                        else
                                                attn_scores_rows_q8(qi, qs, qsum, k8, ks, stride, sstride, n, H, group, hd,
                                                                    0.125f, s1, ld);
                                        for (int32_t h = 0; h < H; h++) {
                                                const size_t off = (size_t)(h / group) * hd;
                                                if (pass == 0)
                                                        attn_scores_f16(q + h * hd, k16 + off, stride, n, hd, 0.125f,
                                                                        s2 + h * ld);
                                                else if (pass == 1)
                                                        attn_scores_f32(q + h * hd, k32 + off, stride, n, hd, 0.125f,
                                                                        s2 + h * ld);
                                                else
                                                        attn_scores_q8(qi + h * hd, qs[h], qsum[h], k8 + off, ks + h / group,
                                                                       stride, sstride, n, hd, 0.125f, s2 + h * ld);
                                        }
                                        assert_memory_equal(s1, s2, sizeof(float) * H * ld);
                                        if (pass == 0)
                                                attn_accum_rows_f16(o1, k16, stride, s1, ld, n, H, group, hd);
                                        else if (pass == 1)
                                                attn_accum_rows_f32(o1, k32, stride, s1, ld, n, H, group, hd);
                                        else
                                                attn_accum_rows_q8(o1, k8, ks, stride, sstride, s1, ld, n, H, group, hd);
                                        for (int32_t h = 0; h < H; h++) {
                                                const size_t off = (size_t)(h / group) * hd;
                                                if (pass == 0)
                                                        attn_accum_f16(o2 + h * hd, k16 + off, stride, s1 + h * ld, n, hd);
                                                else if (pass == 1)
                                                        attn_accum_f32(o2 + h * hd, k32 + off, stride, s1 + h * ld, n, hd);
                                                else
                                                        attn_accum_q8(o2 + h * hd, k8 + off, ks + h / group, stride,
                                                                      sstride, s1 + h * ld, n, hd);
                                        }
                                        assert_memory_equal(o1, o2, sizeof(float) * H * hd);
                                }
                                free(k8), free(ks), free(k16), free(k32), free(q), free(s1), free(s2), free(o1), free(o2);
                                free(qi), free(qs), free(qsum);
                        }
                }
        }
        kernels_reset_isa();
}

/*
 * q8 scores: on every kernel path, the exact integer dot product of the
 * int8 query and key, then ((float)dot * (qs * ks)) * scale: the same
 * bits everywhere. Head sizes with and without a tail past 64 and 32
 * bytes, rows in and past blocks of 16, and the extreme bytes +-127.
 */
static void test_q8_scores_exact(void **state)
{
        static const int32_t hds[] = { 128, 64, 96, 40, 8, 200 };
        /* 4 heads, and 32 (the rows walked in address order, 16 heads at a time) */
        static const int32_t heads[][2] = { { 4, 2 }, { 32, 4 } };
        const int32_t n = 37;
        const size_t ld = 40;
        for (size_t hi = 0; hi < 2 * ARRAY_SIZE(hds); hi++) {
                const int32_t hd = hds[hi / 2], H = heads[hi % 2][0], group = heads[hi % 2][1];
                const size_t stride = (size_t)(H / group) * hd + 5, sstride = H / group + 1;
                int8_t *k = malloc(stride * n), *q = malloc(H * hd);
                float *ks = malloc(sizeof(float) * sstride * n), qs[32], *want = calloc(H * ld, sizeof(float));
                int32_t qsum[32];
                float *got = calloc(H * ld, sizeof(float));
                for (int extreme = 0; extreme < 2; extreme++) {
                        for (size_t i = 0; i < stride * n; i++)
                                k[i] = extreme ? (i % 3 ? 127 : -127) : (int8_t)lrintf(value_at(5, hi, i, 0, 127.0f));
                        for (int32_t i = 0; i < H * hd; i++)
                                q[i] = extreme ? (i % 5 ? 127 : -127) : (int8_t)lrintf(value_at(6, hi, i, 0, 127.0f));
                        for (size_t i = 0; i < sstride * n; i++)
                                ks[i] = value_at(7, hi, i, 0, 0.05f);
                        for (int32_t h = 0; h < H; h++) {
                                qs[h] = value_at(8, hi, h, 0, 0.01f);
                                for (int32_t p = 0; p < n; p++) {
                                        int64_t d = 0;
                                        for (int32_t e = 0; e < hd; e++)
                                                d += (int64_t)q[h * hd + e] * k[p * stride + (size_t)(h / group) * hd + e];
                                        want[h * ld + p] = ((float)d * (qs[h] * ks[p * sstride + h / group])) * 0.125f;
                                }
                        }
                        attn_query_sums(q, qsum, H, hd);
                        for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++) {
                                if (kernels_force_isa(isa) < 0)
                                        continue;
                                attn_scores_rows_q8(q, qs, qsum, k, ks, stride, sstride, n, H, group, hd, 0.125f, got,
                                                    ld);
                                if (memcmp(want, got, sizeof(float) * H * ld) != 0)
                                        fail_msg("hd %d extreme %d isa %d: not the exact dot's score", hd, extreme, isa);
                        }
                        kernels_reset_isa();
                }
                free(k), free(q), free(ks), free(want), free(got);
        }
}

/* The flash path's exp-and-sum: every kernel path within 2e-7 (relative) of expf and a sequential sum. */
/*
 * The multi-query f16 kernels (a prompt's tokens over the same rows) give
 * each query the bits of attn_*_rows_f16 over its own rows: 1..9 queries,
 * each taking its own number of rows (some none, some all), its own ld,
 * head sizes below, between and above the kernels' vector steps and above
 * their in-L1 conversion's limit.
 */
static void test_multi_query_kernels(void **state)
{
        static const struct {
                int32_t H, group, hd;
        } shapes[] = { { 8, 1, 128 }, { 8, 4, 64 }, { 4, 2, 40 }, { 8, 2, 8 }, { 2, 1, 19 }, { 2, 1, 264 } };
        for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++) {
                if (kernels_force_isa(isa) < 0)
                        continue;
                for (size_t si = 0; si < ARRAY_SIZE(shapes); si++) {
                        const int32_t H = shapes[si].H, group = shapes[si].group, hd = shapes[si].hd;
                        const size_t stride = (size_t)(H / group) * hd + 8, q_stride = (size_t)H * hd + 3;
                        for (int32_t nq = 1; nq <= 9; nq++) {
                                for (int32_t n = 1; n <= 13; n += 3) {
                                        const size_t s_stride = (size_t)H * (n + 12) + 5;
                                        int32_t rows[9];
                                        size_t ld[9];
                                        uint16_t *k16 = malloc(sizeof(uint16_t) * stride * n);
                                        float *q = malloc(sizeof(float) * q_stride * nq);
                                        float *s1 = calloc(s_stride * nq, sizeof(float)), *s2 = calloc(s_stride * nq, sizeof(float));
                                        float *o1 = malloc(sizeof(float) * q_stride * nq), *o2 = malloc(sizeof(float) * q_stride * nq);
                                        for (int32_t i = 0; i < nq; i++) {
                                                /* rows from n down to 0 and back: ragged, empty and full */
                                                rows[i] = (int32_t)(hash64(si * 1000 + nq * 50 + n * 3 + i) % (uint64_t)(n + 2)) - 1;
                                                if (i == nq - 1)
                                                        rows[i] = n;
                                                ld[i] = (size_t)n + (size_t)(i % 3) * 4;
                                        }
                                        for (size_t i = 0; i < stride * n; i++)
                                                k16[i] = f32_to_f16(value_at(5, n, i, si, 2.0f));
                                        for (size_t i = 0; i < q_stride * nq; i++) {
                                                q[i] = value_at(6, n * 16 + nq, i, si, 1.0f);
                                                o1[i] = o2[i] = value_at(7, n * 16 + nq, i, si, 1.0f);
                                        }
                                        attn_scores_rows_f16_multi(q, q_stride, nq, rows, k16, stride, H, group, hd, 0.125f,
                                                                   s1, s_stride, ld);
                                        for (int32_t i = 0; i < nq; i++)
                                                if (rows[i] > 0)
                                                        attn_scores_rows_f16(q + i * q_stride, k16, stride, rows[i], H, group,
                                                                             hd, 0.125f, s2 + i * s_stride, ld[i]);
                                        for (size_t e = 0; e < s_stride * nq; e++)
                                                if (memcmp(&s1[e], &s2[e], sizeof(float)))
                                                        fail_msg("isa %d shape %zu nq %d n %d: score %zu %a, want %a", isa, si,
                                                                 nq, n, e, s1[e], s2[e]);
                                        attn_accum_rows_f16_multi(o1, q_stride, nq, rows, k16, stride, s1, s_stride, ld, H,
                                                                  group, hd);
                                        for (int32_t i = 0; i < nq; i++)
                                                if (rows[i] > 0)
                                                        attn_accum_rows_f16(o2 + i * q_stride, k16, stride, s1 + i * s_stride,
                                                                            ld[i], rows[i], H, group, hd);
                                        for (size_t e = 0; e < q_stride * nq; e++)
                                                if (memcmp(&o1[e], &o2[e], sizeof(float)))
                                                        fail_msg("isa %d shape %zu nq %d n %d: output %zu %a, want %a", isa, si,
                                                                 nq, n, e, o1[e], o2[e]);
                                        free(k16), free(q), free(s1), free(s2), free(o1), free(o2);
                                }
                        }
                }
        }
        kernels_reset_isa();
}

/* attn_exp_sum: within 2e-7 of expf's values, their sum within 1e-6; AVX-512's the same bits as AVX2's */
static void test_exp_sum(void **state)
{
        float x[300], y[300], y_avx2[300], l_avx2 = 0;
        /* scores 40 apart at most (most weights tiny), then 2 apart (sums of like values, so their order shows) */
        for (int32_t k = 0; k < 70 + 230; k++) {
                const int32_t n = k < 70 ? k + 1 : k;
                for (int32_t i = 0; i < n; i++)
                        x[i] = k < 70 ? value_at(7, n, i, 0, 40.0f) - 30.0f : value_at(9, n, i, 0, 1.0f);
                float mx = -INFINITY, sum = 0;
                for (int32_t i = 0; i < n; i++)
                        mx = fmaxf(mx, x[i]);
                for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++) {
                        if (kernels_force_isa(isa) < 0)
                                continue;
                        memcpy(y, x, sizeof(x));
                        float m, l = attn_exp_sum(y, n, &m);
                        assert_true(m == mx);
                        sum = 0;
                        for (int32_t i = 0; i < n; i++) {
                                float e = expf(x[i] - mx);
                                sum += e;
                                assert_true(fabsf(y[i] - e) <= 2e-7f * e + 1e-37f);
                        }
                        assert_true(fabsf(l - sum) <= 1e-6f * sum);
                        if (isa == KERNEL_ISA_AVX2) {
                                memcpy(y_avx2, y, sizeof(y));
                                l_avx2 = l;
                        } else if (isa > KERNEL_ISA_AVX2 && (memcmp(y, y_avx2, sizeof(float) * n) || l != l_avx2)) {
                                fail_msg("isa %d n %d: sum %a, AVX2's %a", isa, n, l, l_avx2);
                        }
                }
        }
        kernels_reset_isa();
}

/* The default path's softmax: the same bits on every kernel path, within 3e-7 (relative) of expf's. */
static void test_softmax(void **state)
{
        static float x[3001], first[3001], y[3001];
        static const int32_t lengths[] = { 1, 7, 8, 9, 64, 100, 3001 };
        for (size_t li = 0; li < ARRAY_SIZE(lengths); li++) {
                const int32_t n = lengths[li];
                for (int32_t i = 0; i < n; i++)
                        x[i] = value_at(8, n, i, 0, 60.0f) - 40.0f;
                float mx = -INFINITY;
                double sum = 0;
                for (int32_t i = 0; i < n; i++)
                        mx = fmaxf(mx, x[i]);
                for (int32_t i = 0; i < n; i++)
                        sum += exp((double)x[i] - mx);
                bool have_first = false;
                for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++) {
                        if (kernels_force_isa(isa) < 0)
                                continue;
                        memcpy(y, x, sizeof(float) * n);
                        softmax_inplace(y, n);
                        if (!have_first)
                                memcpy(first, y, sizeof(float) * n);
                        have_first = true;
                        assert_memory_equal(first, y, sizeof(float) * n);
                        for (int32_t i = 0; i < n; i++) {
                                double want = exp((double)x[i] - mx) / sum;
                                if (fabs(y[i] - want) > 3e-7 * want + 1e-37)
                                        fail_msg("n %d isa %d element %d: %g, want %g", n, isa, i, y[i], want);
                        }
                }
        }
        kernels_reset_isa();
}

/* positions at and around flash chunk (256) and block (16) edges, and long ones */
static const struct token singles[] = {
        { 2, 0 }, { 2, 15 }, { 2, 16 }, { 2, 36 }, { 1, 63 }, { 1, 64 }, { 1, 127 },
        { 1, 128 }, { 1, 255 }, { 1, 256 }, { 1, 767 }, { 1, 768 }, { 1, 1499 }, { 0, 2999 }, { 0, 2990 }, { 0, 2500 },
};

/*
 * Both paths: a token's output is the same bits alone or in any batch (for
 * flash, over several rounds of items, too) and with 1, 2 or 3 threads.
 */
static void test_invariance(void **state)
{
        for (int kind = ATTENTION_DEFAULT; kind <= ATTENTION_F16_OPERANDS; kind++) {
                static const struct {
                        int32_t H, KVH, hd;
                } shapes[] = { { 8, 2, 128 }, { 4, 4, 64 }, { 8, 2, 128 } };
                static const enum kv_type kv_types[] = { KV_TYPE_F16, KV_TYPE_F16, KV_TYPE_Q8 };
                for (size_t si = 0; si < ARRAY_SIZE(shapes); si++) {
                        const int32_t dim = shapes[si].H * shapes[si].hd, N = ARRAY_SIZE(singles);
                        float *alone = malloc(sizeof(float) * dim * N);
                        float *got = malloc(sizeof(float) * dim * N);
                        for (int threads = 1; threads <= 3; threads++) {
                                struct fixture f;
                                fx_open(&f, shapes[si].H, shapes[si].KVH, shapes[si].hd, kv_types[si], threads);
                                for (int i = 0; i < N; i++) {
                                        run_batch(&f, kind, &singles[i], 1, got + (size_t)i * dim);
                                        float *a = alone + (size_t)i * dim, *g = got + (size_t)i * dim;
                                        if (threads == 1)
                                                memcpy(a, g, sizeof(float) * dim);
                                        assert_memory_equal(a, g, sizeof(float) * dim);
                                }
                                /* all together, forwards and backwards: 47 + 47 + 40 + ... items, more than one round */
                                struct token batch[16];
                                for (int order = 0; order < 2; order++) {
                                        for (int i = 0; i < N; i++)
                                                batch[i] = singles[order ? N - 1 - i : i];
                                        run_batch(&f, kind, batch, N, got);
                                        for (int i = 0; i < N; i++) {
                                                int k = order ? N - 1 - i : i;
                                                assert_memory_equal(alone + (size_t)k * dim, got + (size_t)i * dim,
                                                                    sizeof(float) * dim);
                                        }
                                }
                                fx_close(&f);
                        }
                        free(alone);
                        free(got);
                }
        }
}

/*
 * The flash path's defined order, computed here with the per-head kernels
 * for one token: positions cut into chunks of 256 (whatever the threads or
 * the batch), each chunk's scores, max, sum of exp and unnormalized sum of
 * V per head, the chunks folded in ascending order, then divided by the
 * sum. attention.c's flash_merge arithmetic, written out again.
 */
#define CHUNK 256

static void flash_defined_order(struct fixture *f, struct token tk, float *out)
{
        const struct npu_hparams *hp = &f->m.hp;
        const struct kv_pool *kv = f->kv;
        const struct kv_seq *seq = &f->seqs[tk.seq];
        const int32_t H = hp->n_heads, hd = hp->head_dim, group = H / hp->n_kv_heads, bs = kv->block_size;
        const int32_t n = tk.pos + 1;
        const float scale = 1.0f / sqrtf((float)hd);
        float q[2048], s[CHUNK], o[256], qs[32];
        int32_t qsum[32];
        int8_t qi[2048];
        assert_true(H * hd <= 2048 && hd <= 256);
        for (int32_t e = 0; e < H * hd; e++)
                q[e] = value_at(99, tk.seq, tk.pos, e, f->q_range);
        assert_true(H <= 32);
        attn_quantize_query(q, qi, qs, qsum, H, hd);
        for (int32_t h = 0; h < H; h++) {
                const float *qh = q + (size_t)h * hd;
                const size_t off = (size_t)(h / group) * hd * kv->elem_bytes;
                float *O = out + (size_t)h * hd, M = 0, L = 0;
                for (int32_t p0 = 0; p0 < n; p0 += CHUNK) {
                        const int32_t p1 = MIN(n, p0 + CHUNK);
                        for (int32_t p = p0; p < p1;) {
                                const int32_t run = MIN(p1, (p / bs + 1) * bs) - p;
                                const void *K = (const uint8_t *)kv_at(kv, seq, 1, 0, p) + off;
                                if (kv->type == KV_TYPE_Q8)
                                        attn_scores_q8(qi + (size_t)h * hd, qs[h], qsum[h], K,
                                                       kv_scale_at(kv, seq, 1, 0, p) + h / group,
                                                       kv->kv_dim, kv->n_kv_heads, run, hd, scale, s + (p - p0));
                                else if (kv->type == KV_TYPE_F16)
                                        attn_scores_f16(qh, K, kv->kv_dim, run, hd, scale, s + (p - p0));
                                else
                                        attn_scores_f32(qh, K, kv->kv_dim, run, hd, scale, s + (p - p0));
                                p += run;
                        }
                        float m, l = attn_exp_sum(s, p1 - p0, &m);
                        memset(o, 0, sizeof(float) * hd);
                        for (int32_t p = p0; p < p1;) {
                                const int32_t run = MIN(p1, (p / bs + 1) * bs) - p;
                                const void *V = (const uint8_t *)kv_at(kv, seq, 1, 1, p) + off;
                                if (kv->type == KV_TYPE_Q8)
                                        attn_accum_q8(o, V, kv_scale_at(kv, seq, 1, 1, p) + h / group, kv->kv_dim,
                                                      kv->n_kv_heads, s + (p - p0), run, hd);
                                else if (kv->type == KV_TYPE_F16)
                                        attn_accum_f16(o, V, kv->kv_dim, s + (p - p0), run, hd);
                                else
                                        attn_accum_f32(o, V, kv->kv_dim, s + (p - p0), run, hd);
                                p += run;
                        }
                        if (p0 == 0) {
                                memcpy(O, o, sizeof(float) * hd);
                                M = m, L = l;
                                continue;
                        }
                        const float mn = fmaxf(M, m), a = expf(M - mn), b = expf(m - mn);
                        L = L * a + l * b;
                        for (int32_t e = 0; e < hd; e++)
                                O[e] = O[e] * a + o[e] * b;
                        M = mn;
                }
                for (int32_t e = 0; e < hd; e++)
                        O[e] *= 1.0f / L;
        }
}

/*
 * The flash path (positions split in chunks, the chunks spread over the
 * threads, a round's last chunks in two halves of the heads, then folded)
 * gives every token the bits of its defined order above: alone, in a
 * batch, with 1 to 3 threads, on every kernel path and KV type. 32 heads:
 * the row-ordered kernels (16 heads at a time) on whole chunks and halves.
 */
static void test_flash_defined_order(void **state)
{
        static const struct {
                int32_t H, KVH, hd;
        } shapes[] = { { 8, 2, 128 }, { 4, 4, 64 }, { 32, 32, 64 } };
        const int N = ARRAY_SIZE(singles);
        for (size_t si = 0; si < ARRAY_SIZE(shapes); si++)
                for (int type = KV_TYPE_F32; type <= KV_TYPE_Q8; type++)
                        for (int threads = 1; threads <= 3; threads += 2) {
                                const int32_t dim = shapes[si].H * shapes[si].hd;
                                float *got = malloc(sizeof(float) * dim * N), *want = malloc(sizeof(float) * dim);
                                struct fixture f;
                                fx_open(&f, shapes[si].H, shapes[si].KVH, shapes[si].hd, type, threads);
                                for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++) {
                                        if (kernels_force_isa(isa) < 0)
                                                continue;
                                        run_batch(&f, ATTENTION_FLASH, singles, N, got);
                                        for (int i = 0; i < N; i++) {
                                                flash_defined_order(&f, singles[i], want);
                                                if (memcmp(want, got + (size_t)i * dim, sizeof(float) * dim) != 0)
                                                        fail_msg("shape %zu type %d threads %d isa %d token (%d, %d): "
                                                                 "not the defined order's bits",
                                                                 si, type, threads, isa, singles[i].seq, singles[i].pos);
                                        }
                                }
                                kernels_reset_isa();
                                fx_close(&f);
                                free(got);
                                free(want);
                        }
}

/* Both paths, both KV types and both kernel paths against the double-precision reference. */
static void test_accuracy(void **state)
{
        const int32_t H = 8, KVH = 2, hd = 128, dim = H * hd;
        static const struct token tks[] = { { 2, 0 }, { 2, 36 }, { 1, 64 }, { 1, 1499 }, { 0, 2999 } };
        const int N = ARRAY_SIZE(tks);
        float *out = malloc(sizeof(float) * dim * N);
        double *ref = malloc(sizeof(double) * dim);
        for (int type = KV_TYPE_F32; type <= KV_TYPE_Q8; type++) {
                struct fixture f;
                fx_open(&f, H, KVH, hd, type, 2);
                for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++) {
                        if (kernels_force_isa(isa) < 0)
                                continue;
                        for (int kind = ATTENTION_DEFAULT; kind <= ATTENTION_FLASH; kind++) {
                                run_batch(&f, kind, tks, N, out);
                                for (int i = 0; i < N; i++) {
                                        reference(&f, tks[i], ref);
                                        double maxdiff = 0;
                                        for (int32_t e = 0; e < dim; e++)
                                                maxdiff = fmax(maxdiff, fabs(out[(size_t)i * dim + e] - ref[e]));
                                        if (maxdiff >= 1e-5)
                                                fail_msg("type %d isa %d kind %d token %d: max diff %g", type, isa, kind,
                                                         i, maxdiff);
                                }
                        }
                }
                kernels_reset_isa();
                fx_close(&f);
        }
        free(out);
        free(ref);
}

/*
 * --attention-f16-operands: over an f16 cache, the reference with the query
 * and the weights in f16, and not the default path's bits; over the other
 * caches, the default path's bits.
 */
static void test_f16_operands(void **state)
{
        const int32_t H = 8, KVH = 2, hd = 128, dim = H * hd;
        static const struct token tks[] = { { 2, 0 }, { 2, 36 }, { 1, 64 }, { 1, 1499 }, { 0, 2999 } };
        const int N = ARRAY_SIZE(tks);
        float *out = malloc(sizeof(float) * dim * N), *def = malloc(sizeof(float) * dim * N);
        double *ref = malloc(sizeof(double) * dim);
        for (int type = KV_TYPE_F32; type <= KV_TYPE_Q8; type++) {
                struct fixture f;
                fx_open(&f, H, KVH, hd, type, 2);
                f.q_range = 1.0f / 3.0f; /* queries that f16 does not hold exactly */
                for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++) {
                        if (kernels_force_isa(isa) < 0)
                                continue;
                        run_batch(&f, ATTENTION_DEFAULT, tks, N, def);
                        run_batch(&f, ATTENTION_F16_OPERANDS, tks, N, out);
                        if (type != KV_TYPE_F16) {
                                assert_memory_equal(def, out, sizeof(float) * dim * N);
                                continue;
                        }
                        double off_default = 0;
                        for (int i = 0; i < N; i++) {
                                reference_ops(&f, tks[i], true, ref);
                                double maxdiff = 0;
                                for (int32_t e = 0; e < dim; e++) {
                                        size_t k = (size_t)i * dim + e;
                                        maxdiff = fmax(maxdiff, fabs(out[k] - ref[e]));
                                        off_default = fmax(off_default, fabs(out[k] - def[k]));
                                }
                                if (maxdiff >= 1e-5)
                                        fail_msg("isa %d token %d: max diff %g from the f16-operand reference", isa, i,
                                                 maxdiff);
                        }
                        assert_true(off_default > 1e-5);
                }
                kernels_reset_isa();
                fx_close(&f);
        }
        free(out);
        free(def);
        free(ref);
}

/*
 * Over the q8 cache, the default path's tokens at more than
 * ATTENTION_Q8_FLASH_MIN_POSITIONS positions have the flash path's defined
 * bits, alone and in a batch with the default path's tokens, on every
 * kernel path and with 1 or 3 threads; the token just below the line does
 * not.
 */
static void test_q8_long_tokens_flash(void **state)
{
        const int32_t L = ATTENTION_Q8_FLASH_MIN_POSITIONS;
        const struct token tks[] = { { 1, L - 1 }, { 2, 36 }, { 1, L }, { 0, 2999 }, { 1, 1 }, { 0, L + 63 } };
        const int N = ARRAY_SIZE(tks);
        const int32_t H = 8, KVH = 2, hd = 128, dim = H * hd;
        float *got = malloc(sizeof(float) * dim * N), *alone = malloc(sizeof(float) * dim), *want = malloc(sizeof(float) * dim);
        for (int threads = 1; threads <= 3; threads += 2) {
                struct fixture f;
                fx_open(&f, H, KVH, hd, KV_TYPE_Q8, threads);
                for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++) {
                        if (kernels_force_isa(isa) < 0)
                                continue;
                        run_batch(&f, ATTENTION_DEFAULT, tks, N, got);
                        for (int i = 0; i < N; i++) {
                                const float *g = got + (size_t)i * dim;
                                run_batch(&f, ATTENTION_DEFAULT, &tks[i], 1, alone);
                                assert_memory_equal(alone, g, sizeof(float) * dim);
                                flash_defined_order(&f, tks[i], want);
                                const bool flash = memcmp(want, g, sizeof(float) * dim) == 0;
                                if (flash != (tks[i].pos + 1 > L))
                                        fail_msg("threads %d isa %d token (%d, %d): %s the flash path's bits", threads,
                                                 isa, tks[i].seq, tks[i].pos, flash ? "has" : "not");
                        }
                }
                kernels_reset_isa();
                fx_close(&f);
        }
        free(got);
        free(alone);
        free(want);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rows_kernels),
                cmocka_unit_test(test_q8_scores_exact),
                cmocka_unit_test(test_multi_query_kernels),
                cmocka_unit_test(test_exp_sum),
                cmocka_unit_test(test_softmax),
                cmocka_unit_test(test_invariance),
                cmocka_unit_test(test_flash_defined_order),
                cmocka_unit_test(test_accuracy),
                cmocka_unit_test(test_f16_operands),
                cmocka_unit_test(test_q8_long_tokens_flash),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
