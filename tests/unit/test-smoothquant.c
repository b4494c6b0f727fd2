/* SPDX-License-Identifier: MIT */
/*
 * SmoothQuant: smoothing keeps the float function; on activations with
 * outlier channels it cuts w8a8 error well below plain per-channel w8a8;
 * the loader rejects inconsistent quantized files with a clear error.
 */
#include <fcntl.h>
#include <math.h>

#include "gemm_int8.h"
#include "kernels.h"
#include "model.h"
#include "quant.h"
#include "smoothquant.h"
#include "test-helpers.h"

#define T 32
#define K 256
#define N 128

static float frand(uint64_t *s)
{
        return (float)((int64_t)(test_rng(s) % 2000001) - 1000000) / 1000000.0f;
}

/* y = x W^T in double, the truth */
static void ref_matmul(const float *x, const float *w, double *y)
{
        for (int t = 0; t < T; t++)
                for (int n = 0; n < N; n++) {
                        double s = 0;
                        for (int k = 0; k < K; k++)
                                s += (double)x[t * K + k] * w[n * K + k];
                        y[t * N + n] = s;
                }
}

/* relative RMS error of the w8a8 product of x and w against truth */
static double w8a8_error(const float *x, const float *w, const double *truth)
{
        int8_t *wq = malloc(N * K);
        float *ws = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * T * N);
        struct act_q aq;
        assert_int_equal(act_q_alloc(&aq, T, K), 0);
        quantize_weight_rows(w, N, K, wq, ws);
        act_quantize_rows(&aq, NPU_PRECISION_W8A8, x, K, 0, T);
        int32_t sums[N];
        uint64_t clamped = 0;
        assert_int_equal(gemm_i8_pack(wq, wq, N, K, sums, &clamped), 0);
        struct npu_weight wt = { .type = GGML_TYPE_I8, .rows = N, .cols = K, .data = wq, .scale = ws,
                                 .row_sums = sums, .row_bytes = K };
        matmul_int8_rows(&wt, &aq, T, y, N, 0, N);
        double num = 0, den = 0;
        for (int i = 0; i < T * N; i++) {
                num += (y[i] - truth[i]) * (y[i] - truth[i]);
                den += truth[i] * truth[i];
        }
        act_q_free(&aq);
        free(wq);
        free(ws);
        free(y);
        return sqrt(num / den);
}

static void test_outliers(void **state)
{
        static float x[T * K], w[N * K], xs[T * K], act_max[K], s[K];
        static double truth[T * N];
        uint64_t seed = 2024;
        for (int i = 0; i < T * K; i++)
                x[i] = frand(&seed);
        /* a few channels carry activations 60x larger, as in LLMs */
        static const int outliers[] = { 3, 77, 150, 201 };
        for (int t = 0; t < T; t++)
                for (size_t o = 0; o < ARRAY_SIZE(outliers); o++)
                        x[t * K + outliers[o]] *= 60.0f;
        for (int i = 0; i < N * K; i++)
                w[i] = frand(&seed) * 0.05f;
        ref_matmul(x, w, truth);

        double plain = w8a8_error(x, w, truth);

        memset(act_max, 0, sizeof(act_max));
        calib_observe(act_max, x, T, K);
        float *ws[1] = { w };
        int64_t rows[1] = { N };
        float norm[K];
        for (int k = 0; k < K; k++)
                norm[k] = 1.0f;
        smooth_factors(act_max, ws, rows, 1, K, 0.5f, s);
        smooth_apply(norm, ws, rows, 1, K, s);
        /* the norm in front now divides the activations by s */
        for (int t = 0; t < T; t++)
                for (int k = 0; k < K; k++)
                        xs[t * K + k] = x[t * K + k] * norm[k];
        double smooth = w8a8_error(xs, w, truth);
        print_message("relative error: plain w8a8 %.5f, smoothquant w8a8 %.5f\n", plain, smooth);
        assert_true(smooth < 0.5 * plain);
}

/* Smoothing is an identity on the float function. */
static void test_equivalence(void **state)
{
        static float x[T * K], w[N * K], w0[N * K], act_max[K], s[K], norm[K];
        static double y0[T * N], y1[T * N];
        static float xs[T * K];
        uint64_t seed = 9;
        for (int i = 0; i < T * K; i++)
                x[i] = frand(&seed) * (i % 31 == 0 ? 30.0f : 1.0f);
        for (int i = 0; i < N * K; i++)
                w0[i] = w[i] = frand(&seed);
        for (int k = 0; k < K; k++)
                norm[k] = 0.5f + (float)k / K;
        for (int t = 0; t < T; t++)
                for (int k = 0; k < K; k++)
                        xs[t * K + k] = x[t * K + k] * norm[k];
        ref_matmul(xs, w0, y0);
        memset(act_max, 0, sizeof(act_max));
        calib_observe(act_max, xs, T, K);
        float *ws[1] = { w };
        int64_t rows[1] = { N };
        smooth_factors(act_max, ws, rows, 1, K, 0.5f, s);
        smooth_apply(norm, ws, rows, 1, K, s);
        for (int t = 0; t < T; t++)
                for (int k = 0; k < K; k++)
                        xs[t * K + k] = x[t * K + k] * norm[k];
        ref_matmul(xs, w, y1);
        for (int i = 0; i < T * N; i++)
                assert_true(fabs(y0[i] - y1[i]) <= 1e-4 * (1 + fabs(y0[i])));
        /* and the factors really moved something */
        bool changed = false;
        for (int k = 0; k < K; k++)
                changed |= fabsf(s[k] - 1.0f) > 0.1f;
        assert_true(changed);

        /* the producer form (v -> o, up -> down) too */
        static float prev[K * 8], prev0[K * 8];
        for (int i = 0; i < K * 8; i++)
                prev0[i] = prev[i] = frand(&seed);
        memcpy(w, w0, sizeof(w));
        smooth_apply_rows(prev, 8, w, N, K, s);
        for (int j = 0; j < K; j++)
                for (int n = 0; n < 4; n++)
                        for (int c = 0; c < 8; c++) {
                                float before = prev0[j * 8 + c] * w0[n * K + j];
                                float after = prev[j * 8 + c] * w[n * K + j];
                                assert_true(fabsf(after - before) <= 1e-5f * (1 + fabsf(before)));
                        }
}

/* Rewrite a quantized model, dropping or reshaping one tensor. */
static int rewrite(const struct gguf *g, const char *out, const char *drop, const char *reshape)
{
        struct npu_err err = {};
        struct gguf_writer *w = NULL;
        assert_int_equal(gguf_writer_new(out, &w, &err), 0);
        assert_int_equal(gguf_writer_copy_kv(w, g, NULL), 0);
        for (uint64_t i = 0; i < g->n_tensors; i++) {
                const struct gguf_tensor *t = &g->tensors[i];
                char name[128];
                snprintf(name, sizeof(name), "%.*s", (int)t->name.len, t->name.s);
                if (drop && strcmp(name, drop) == 0)
                        continue;
                int64_t ne[4] = { t->ne[0], t->ne[1], t->ne[2], t->ne[3] };
                if (reshape && strcmp(name, reshape) == 0)
                        ne[0] -= 1;
                assert_int_equal(gguf_writer_add_tensor(w, name, t->type, t->n_dims, ne), 0);
        }
        assert_int_equal(gguf_writer_write_header(w, &err), 0);
        for (uint64_t i = 0; i < g->n_tensors; i++) {
                const struct gguf_tensor *t = &g->tensors[i];
                char name[128];
                snprintf(name, sizeof(name), "%.*s", (int)t->name.len, t->name.s);
                if (drop && strcmp(name, drop) == 0)
                        continue;
                size_t n = t->nbytes;
                if (reshape && strcmp(name, reshape) == 0)
                        n = n / t->ne[0] * (t->ne[0] - 1);
                assert_int_equal(gguf_writer_write_tensor(w, t->data, n, &err), 0);
        }
        assert_int_equal(gguf_writer_finish(w, &err), 0);
        gguf_writer_free(w);
        return 0;
}

static void test_loader_rejects_inconsistent(void **state)
{
        const char *quantize = getenv("NPU_QUANTIZE");
        assert_non_null(quantize);
        char cmd[1024], src[] = "/tmp/npud-q-XXXXXX", bad[] = "/tmp/npud-bad-XXXXXX";
        close(mkstemp(src));
        close(mkstemp(bad));
        snprintf(cmd, sizeof(cmd), "%s -i %s -o %s --precision w8a8 >/dev/null 2>&1", quantize, TINY_MODEL, src);
        assert_int_equal(system(cmd), 0);
        struct npu_err err = {};
        struct npu_model *m = NULL;
        assert_int_equal(model_load(src, &m, &err), 0);
        assert_int_equal(m->precision, NPU_PRECISION_W8A8);
        assert_int_equal(m->layers[0].wq.type, GGML_TYPE_I8);
        model_free(m);

        struct gguf *g = NULL;
        assert_int_equal(gguf_open(src, &g, &err), 0);

        rewrite(g, bad, "blk.1.ffn_up.scale", NULL);
        assert_true(model_load(bad, &m, &err) < 0);
        assert_non_null(strstr(err.msg, "blk.1.ffn_up.scale"));

        rewrite(g, bad, NULL, "blk.2.attn_k.scale");
        assert_true(model_load(bad, &m, &err) < 0);
        assert_non_null(strstr(err.msg, "scale tensor 'blk.2.attn_k.scale'"));

        rewrite(g, bad, NULL, "blk.0.attn_q.weight");
        assert_true(model_load(bad, &m, &err) < 0);
        assert_non_null(strstr(err.msg, "blk.0.attn_q.weight"));

        gguf_free(g);
        unlink(src);
        unlink(bad);
}

static void copy_file(const char *from, const char *to)
{
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "cp %s %s", from, to);
        assert_int_equal(system(cmd), 0);
}

static void poke(const char *path, size_t off, int8_t v)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, &v, 1, (off_t)off), 1);
        close(fd);
}

/*
 * A weight byte of -128 (npu-quantize never writes one; other files can):
 * the loader clamps it to -127 and counts it, in a file it maps and in an
 * image parsed from memory, so the kernels compute exactly what a file
 * holding -127 there gives.
 */
static void test_loader_clamps_minus_128(void **state)
{
        const char *quantize = getenv("NPU_QUANTIZE");
        char cmd[1024], src[] = "/tmp/npud-q-XXXXXX", bad[] = "/tmp/npud-m128-XXXXXX", ref[] = "/tmp/npud-m127-XXXXXX";
        struct npu_err err = {};
        struct gguf *g = NULL;
        static const int64_t where[] = { 0, 5, 63, 64, 4095 };

        assert_non_null(quantize);
        close(mkstemp(src));
        close(mkstemp(bad));
        close(mkstemp(ref));
        snprintf(cmd, sizeof(cmd), "%s -i %s -o %s --precision w8a8 >/dev/null 2>&1", quantize, TINY_MODEL, src);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(gguf_open(src, &g, &err), 0);
        const struct gguf_tensor *t = gguf_find_tensor(g, "blk.0.attn_q.weight");
        assert_non_null(t);
        const size_t base = (size_t)((const uint8_t *)t->data - (const uint8_t *)g->map);
        assert_true(t->nbytes >= 4096);
        gguf_free(g);
        copy_file(src, bad);
        copy_file(src, ref);
        for (size_t i = 0; i < ARRAY_SIZE(where); i++) {
                poke(bad, base + where[i], -128);
                poke(ref, base + where[i], -127);
        }

        struct npu_model *mb = NULL, *mr = NULL, *mm = NULL;
        assert_int_equal(model_load(bad, &mb, &err), 0);
        assert_int_equal(model_load(ref, &mr, &err), 0);
        assert_int_equal(mb->i8_clamped, ARRAY_SIZE(where));
        assert_int_equal(mr->i8_clamped, 0);
        const struct npu_weight *wb = &mb->layers[0].wq, *wr = &mr->layers[0].wq;
        const size_t n = (size_t)(wb->rows * wb->cols);
        assert_memory_equal(wb->data, wr->data, n);
        assert_memory_equal(wb->row_sums, wr->row_sums, sizeof(int32_t) * wb->rows);
        int8_t row[wb->cols];
        gemm_i8_unpack_row(wb->data, wb->rows, wb->cols, 0, row);
        assert_int_equal(row[0], -127);
        assert_int_equal(row[5], -127);

        /* an image parsed from memory is packed into a copy, the same way */
        FILE *f = fopen(bad, "rb");
        assert_non_null(f);
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        rewind(f);
        uint8_t *img = malloc(size);
        assert_int_equal(fread(img, 1, size, f), (size_t)size);
        fclose(f);
        assert_int_equal(gguf_parse(img, size, &g, &err), 0);
        assert_int_equal(model_from_gguf(g, bad, &mm, &err), 0);
        assert_int_equal(mm->i8_clamped, ARRAY_SIZE(where));
        assert_memory_equal(mm->layers[0].wq.data, wr->data, n);
        assert_memory_equal(mm->layers[3].w_down.data, mr->layers[3].w_down.data,
                            (size_t)(mr->layers[3].w_down.rows * mr->layers[3].w_down.cols));
        /* the image itself is untouched */
        assert_int_equal((int8_t)img[base], -128);

        model_free(mm);
        free(img);
        model_free(mb);
        model_free(mr);
        unlink(src);
        unlink(bad);
        unlink(ref);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_outliers),
                cmocka_unit_test(test_equivalence),
                cmocka_unit_test(test_loader_rejects_inconsistent),
                cmocka_unit_test(test_loader_clamps_minus_128),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
