/* SPDX-License-Identifier: MIT */
/*
 * Back ends: the cpu's RMSNorm, RoPE, SiLU and KV conversion equal the
 * device's reference (npu_ref) bit for bit on every kernel path; target
 * selection and its errors; a w8a8 model's greedy tokens do not change when
 * the KV cache moves between memories (simulated detach) mid-generation.
 * The device itself is tested in the VM (tests/kernel/engine_test.sh).
 */
#include <math.h>

#include "backend.h"
#include "fp16.h"
#include "kernels.h"
#include "npu_ref.h"
#include "runtime.h"
#include "test-helpers.h"

static float frand(uint64_t *s, float scale)
{
        return scale * (float)((int64_t)(test_rng(s) % 2000001) - 1000000) / 1000000.0f;
}

static float special(uint64_t *s)
{
        static const uint32_t bits[] = {
                0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x00000001, 0x80000001,
                0x007fffff, 0x00800000, 0x7f7fffff, 0xff7fffff, 0x42c80000 /* 100 */, 0xc2c80000, 0x44160000,
                0xc4160000 /* -600 */, 0x44170000 /* 604 */, 0xc4300000, 0x3f000000, 0xbf000000,
        };
        return f32_from_bits(bits[test_rng(s) % ARRAY_SIZE(bits)]);
}

static void test_silu_exact(void **state)
{
        enum { N = 100003 };
        float *g = malloc(sizeof(float) * N), *u = malloc(sizeof(float) * N), *ref = malloc(sizeof(float) * N),
              *out = malloc(sizeof(float) * N);
        uint64_t seed = 7;

        for (int i = 0; i < N; i++) {
                int kind = (int)(test_rng(&seed) % 10);
                g[i] = kind == 0 ? special(&seed) : frand(&seed, kind < 5 ? 8.0f : kind < 8 ? 60.0f : 800.0f);
                u[i] = kind == 9 ? special(&seed) : frand(&seed, 4.0f);
        }
        npu_ref_silu_mul(g, u, ref, 0, N);
        for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++) {
                if (kernels_force_isa(isa) < 0)
                        continue;
                memcpy(out, g, sizeof(float) * N);
                /* unaligned starts and ragged ends, as thread splits make them */
                silu_mul_range(out, u, 0, 13);
                silu_mul_range(out, u, 13, N / 2 + 3);
                silu_mul_range(out, u, N / 2 + 3, N);
                for (int i = 0; i < N; i++)
                        if (f32_to_bits(out[i]) != f32_to_bits(ref[i]))
                                fail_msg("isa %d: silu(%a) * %a = %a, reference %a", isa, g[i], u[i], out[i], ref[i]);
        }
        kernels_reset_isa();
        free(g);
        free(u);
        free(ref);
        free(out);
}

static void test_rope_rmsnorm_exact(void **state)
{
        enum { T = 37, NH = 8, NKV = 2, HD = 64 };
        const int32_t dim = NH * HD;
        float *q = malloc(sizeof(float) * T * dim), *k = malloc(sizeof(float) * T * NKV * HD),
              *rq = malloc(sizeof(float) * T * dim), *rk = malloc(sizeof(float) * T * NKV * HD),
              *w = malloc(sizeof(float) * dim), *o = malloc(sizeof(float) * T * dim),
              *ro = malloc(sizeof(float) * T * dim);
        int32_t pos[T];
        uint64_t seed = 3;

        for (int i = 0; i < T * dim; i++)
                q[i] = frand(&seed, 3.0f);
        for (int i = 0; i < T * NKV * HD; i++)
                k[i] = frand(&seed, 3.0f);
        for (int i = 0; i < dim; i++)
                w[i] = frand(&seed, 1.5f);
        for (int t = 0; t < T; t++)
                pos[t] = t == 0 ? 0 : t == 1 ? 32767 : (int32_t)(test_rng(&seed) % 8192);
        const float bases[] = { 10000.0f, 500000.0f, 1.5f };
        for (size_t bi = 0; bi < ARRAY_SIZE(bases); bi++) {
                memcpy(rq, q, sizeof(float) * T * dim);
                memcpy(rk, k, sizeof(float) * T * NKV * HD);
                npu_ref_rope(rq, pos, rq, NH, HD, bases[bi], 0, T);
                npu_ref_rope(rk, pos, rk, NKV, HD, bases[bi], 0, T);
                float *cq = malloc(sizeof(float) * T * dim), *ck = malloc(sizeof(float) * T * NKV * HD);
                memcpy(cq, q, sizeof(float) * T * dim);
                memcpy(ck, k, sizeof(float) * T * NKV * HD);
                rope_rows(cq, ck, pos, NH, NKV, HD, bases[bi], 0, 20);
                rope_rows(cq, ck, pos, NH, NKV, HD, bases[bi], 20, T);
                assert_memory_equal(cq, rq, sizeof(float) * T * dim);
                assert_memory_equal(ck, rk, sizeof(float) * T * NKV * HD);
                free(cq);
                free(ck);
        }
        /* RMSNorm on every path, rows of the model's width and of an odd one (83), ragged splits, and in place */
        const float eps[] = { 1e-5f, 1e-6f, 0.0f };
        for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++) {
                if (kernels_force_isa(isa) < 0)
                        continue;
                for (size_t ei = 0; ei < ARRAY_SIZE(eps); ei++)
                        for (int wi = 0; wi < 2; wi++) {
                                const int32_t d = wi ? 83 : dim;
                                npu_ref_rmsnorm(q, w, ro, d, eps[ei], 0, T);
                                rmsnorm_rows(o, q, w, d, eps[ei], 0, 5);
                                rmsnorm_rows(o, q, w, d, eps[ei], 5, 30);
                                rmsnorm_rows(o, q, w, d, eps[ei], 30, T);
                                if (memcmp(o, ro, sizeof(float) * T * d) != 0)
                                        fail_msg("isa %d: rmsnorm of width %d differs", isa, d);
                                memcpy(o, q, sizeof(float) * T * d);
                                rmsnorm_rows(o, o, w, d, eps[ei], 0, T);
                                if (memcmp(o, ro, sizeof(float) * T * d) != 0)
                                        fail_msg("isa %d: rmsnorm of width %d in place differs", isa, d);
                        }
        }
        kernels_reset_isa();
        /*
         * KV conversion on every path: specials, ties and overflow at f16's
         * edges (65504, 65520), its subnormals and below (2^-24, 2^-25), and a
         * ragged tail
         */
        enum { NC = 1003 };
        uint16_t h[NC], rh[NC];
        for (int i = 0; i < NC; i++) {
                int kind = (int)(test_rng(&seed) % 5);
                q[i] = kind == 0   ? special(&seed)
                       : kind == 1 ? frand(&seed, 70000.0f)
                       : kind == 2 ? frand(&seed, 1e-4f)
                       : kind == 3 ? frand(&seed, 1e-7f)
                                   : ldexpf((float)(2049 + 2 * (int)(test_rng(&seed) % 8)) / 2048.0f,
                                            (int)(test_rng(&seed) % 40) - 25);
        }
        q[0] = 65520.0f;
        q[1] = 65519.996f;
        q[2] = ldexpf(1.0f, -25);
        q[3] = ldexpf(1.5f, -25);
        for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++) {
                if (kernels_force_isa(isa) < 0)
                        continue;
                npu_ref_cvt_f32_f16(q, rh, 0, NC);
                cvt_f32_f16_range(q, h, NC);
                for (int i = 0; i < NC; i++)
                        if (h[i] != rh[i])
                                fail_msg("isa %d: f16(%a) = %#x, reference %#x", isa, q[i], h[i], rh[i]);
        }
        kernels_reset_isa();
        free(q);
        free(k);
        free(rq);
        free(rk);
        free(w);
        free(o);
        free(ro);
}

/* w8a8 copy of the small model at path, made with npu-quantize (NPU_QUANTIZE from meson). */
static int system_quantize(const char *path)
{
        const char *quantize = getenv("NPU_QUANTIZE");
        char cmd[1024];

        if (!quantize)
                return -1;
        snprintf(cmd, sizeof(cmd), "%s -i %s -o %s --precision w8a8 >/dev/null 2>&1", quantize, TINY_MODEL, path);
        return system(cmd);
}

static void test_targets(void **state)
{
        enum backend_target t;
        assert_int_equal(backend_target_from_string("cpu", &t), 0);
        assert_int_equal(t, BACKEND_TARGET_CPU);
        assert_int_equal(backend_target_from_string("npu", &t), 0);
        assert_int_equal(t, BACKEND_TARGET_NPU);
        assert_int_equal(backend_target_from_string("gpu", &t), -EINVAL);
        assert_string_equal(backend_target_name(BACKEND_TARGET_NPU), "npu");

        /* a float model stays on the cpu, and says so */
        struct runtime_opts o;
        struct runtime *rt = NULL;
        struct npu_err err = {};
        runtime_opts_default(&o);
        assert_int_equal(o.target, BACKEND_TARGET_CPU);
        o.model_path = TINY_MODEL;
        o.target = BACKEND_TARGET_NPU;
        assert_int_equal(runtime_open(&o, &rt, &err), 0);
        assert_int_equal(ctx_target(rt->ctx), BACKEND_TARGET_CPU);
        assert_non_null(rt->target_note);
        assert_non_null(strstr(rt->target_note, "float"));
        assert_int_equal(runtime_set_target(rt, BACKEND_TARGET_NPU, &err), -EOPNOTSUPP);
        runtime_free(rt);

        /* a device path that is not an npu node: a clear error, nothing opened */
        char model[] = "/tmp/test-backend-XXXXXX";
        int fd = mkstemp(model);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(system_quantize(model), 0);
        runtime_opts_default(&o);
        o.model_path = model;
        o.target = BACKEND_TARGET_NPU;
        o.device = "/dev/null";
        assert_true(runtime_open(&o, &rt, &err) < 0);
        assert_non_null(strstr(err.msg, "/dev/null"));
        unlink(model);
}

/* The last token's logits (n_vocab of them in *ret_n) after a prompt on a w8a8 model. */
static float *prefill_w8a8(const char *model, int threads, const int32_t *toks, int32_t n, bool one_by_one,
                           size_t *ret_n)
{
        struct runtime_opts o;
        struct runtime *rt = NULL;
        struct npu_err err = {};
        struct kv_seq seq = {};

        runtime_opts_default(&o);
        o.model_path = model;
        o.threads = threads;
        assert_int_equal(runtime_open(&o, &rt, &err), 0);
        assert_int_equal(rt->model->precision, NPU_PRECISION_W8A8);
        *ret_n = (size_t)rt->model->hp.n_vocab;
        float *logits = calloc(*ret_n, sizeof(float));
        assert_non_null(logits);
        if (one_by_one)
                for (int32_t i = 0; i < n; i++)
                        assert_int_equal(prefill(rt->ctx, &seq, toks + i, 1, logits, &err), 0);
        else
                assert_int_equal(prefill(rt->ctx, &seq, toks, n, logits, &err), 0);
        kv_seq_release(rt->kv, &seq);
        runtime_free(rt);
        return logits;
}

/*
 * On int8 models the cpu's RMSNorm and SiLU quantize the rows they write for
 * the next matmul: a prompt's logits are the same bits in one batch (rows
 * split over threads) as one token at a time, on every kernel path.
 */
static void test_w8a8_rows_quantized_in_ops(void **state)
{
        char model[] = "/tmp/test-backend-XXXXXX";
        int fd = mkstemp(model);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(system_quantize(model), 0);
        const int32_t toks[11] = { 1, 400, 30, 77, 201, 5, 9, 300, 12, 44, 250 };
        /* (attention's sums differ between kernel paths: each path against itself) */
        for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++) {
                if (kernels_force_isa(isa) < 0)
                        continue;
                size_t V, V2;
                float *ref = prefill_w8a8(model, 1, toks, 11, true, &V);
                float *out = prefill_w8a8(model, 2, toks, 11, false, &V2);
                assert_int_equal(V, V2);
                bool same = memcmp(out, ref, sizeof(float) * V) == 0;
                free(ref);
                free(out);
                if (!same)
                        fail_msg("isa %d: a batch of 11 tokens differs from one at a time", isa);
        }
        kernels_reset_isa();
        unlink(model);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_silu_exact),
                cmocka_unit_test(test_rope_rmsnorm_exact),
                cmocka_unit_test(test_targets),
                cmocka_unit_test(test_w8a8_rows_quantized_in_ops),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
