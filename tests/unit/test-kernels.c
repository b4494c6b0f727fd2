/* SPDX-License-Identifier: MIT */
/*
 * Kernels: every int8 dispatch path equals the device's reference (npu_ref)
 * bit for bit, activation quantization equals npu_ref's, float kernels agree
 * with the scalar path within tolerance, f16 conversion is exact.
 */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <unistd.h>

#include "fp16.h"
#include "gemm_int8.h"
#include "kernels.h"
#include "npu_ref.h"
#include "quant.h"
#include "test-helpers.h"
#include "threadpool.h"

static float frand(uint64_t *s)
{
        return (float)((int64_t)(test_rng(s) % 2000001) - 1000000) / 1000000.0f;
}

/* the instruction sets the int8 comparisons ran on, for the log (the VNNI test greps it) */
static unsigned isas_run;

/* Row-major int8 weights as the model loader leaves them: packed into the GEMM's panels, with row sums. */
struct packed {
        struct npu_weight w;
        int8_t *data;
        int32_t *sums;
        uint64_t clamped;
};

static void pack_weight(struct packed *p, const int8_t *wq, const float *ws, int64_t N, int64_t K)
{
        *p = (struct packed) { .data = malloc(N * K + 1), .sums = malloc(sizeof(int32_t) * N) };
        assert_int_equal(gemm_i8_pack(p->data, wq, N, K, p->sums, &p->clamped), 0);
        p->w = (struct npu_weight) { .type = GGML_TYPE_I8, .rows = N, .cols = K, .data = p->data, .scale = ws,
                                     .row_sums = p->sums, .row_bytes = K };
}

static void packed_free(struct packed *p)
{
        free(p->data);
        free(p->sums);
}

/*
 * Every int8 path against the device's quantizer and GEMM on the unpacked
 * weights, bit for bit; rows split the way threads split them (64-row
 * chunks) and at odd places (partial panels), and one token at a time
 * (batch invariance).
 */
static void check_int8(enum npu_precision prec, int64_t M, int64_t N, int64_t K, const float *x, const int8_t *wq,
                       const float *ws)
{
        int8_t *rq8 = malloc(M * K + 1);
        int16_t *rq16 = malloc(2 * M * K + 2);
        float *rs = malloc(sizeof(float) * M), *ref = malloc(sizeof(float) * M * N), *out = malloc(sizeof(float) * M * N);
        struct act_q aq;
        struct packed p;

        pack_weight(&p, wq, ws, N, K);
        assert_int_equal(act_q_alloc(&aq, (int32_t)M, K), 0);
        if (prec == NPU_PRECISION_W8A16) {
                npu_ref_quant_i16(x, rq16, rs, (uint32_t)K, 0, (uint32_t)M);
                npu_ref_gemm_w8a16(rq16, wq, rs, ws, ref, (uint32_t)N, (uint32_t)K, 0, (uint32_t)M, 0, (uint32_t)N);
        } else {
                npu_ref_quant_i8(x, rq8, rs, (uint32_t)K, 0, (uint32_t)M);
                npu_ref_gemm_w8a8(rq8, wq, rs, ws, ref, (uint32_t)N, (uint32_t)K, 0, (uint32_t)M, 0, (uint32_t)N);
        }
        for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++) {
                if (kernels_force_isa(isa) < 0)
                        continue;
                isas_run |= 1u << isa;
                act_quantize_rows(&aq, prec, x, K, 0, M);
                assert_memory_equal(aq.scale, rs, sizeof(float) * M);
                if (prec == NPU_PRECISION_W8A16)
                        assert_memory_equal(aq.q16, rq16, 2 * M * K);
                else
                        assert_memory_equal(aq.q8, rq8, M * K);
                memset(out, 0xff, sizeof(float) * M * N);
                for (int64_t r = 0; r < N; r += 64)
                        matmul_int8_rows(&p.w, &aq, M, out, N, r, MIN(r + 64, N));
                assert_memory_equal(out, ref, sizeof(float) * M * N);
                memset(out, 0xff, sizeof(float) * M * N);
                matmul_int8_rows(&p.w, &aq, M, out, N, 0, N / 3);
                matmul_int8_rows(&p.w, &aq, M, out, N, N / 3, N);
                assert_memory_equal(out, ref, sizeof(float) * M * N);
                if (M > 1 && M * N * K < (1 << 22)) {
                        struct act_q one;
                        assert_int_equal(act_q_alloc(&one, 1, K), 0);
                        for (int64_t t = 0; t < M; t++) {
                                act_quantize_rows(&one, prec, x + t * K, K, 0, 1);
                                matmul_int8_rows(&p.w, &one, 1, out, N, 0, N);
                                assert_memory_equal(out, ref + t * N, sizeof(float) * N);
                        }
                        act_q_free(&one);
                }
        }
        kernels_reset_isa();
        act_q_free(&aq);
        packed_free(&p);
        free(rq8); free(rq16); free(rs); free(ref); free(out);
}

static void check_int8_shape(enum npu_precision prec, int64_t M, int64_t N, int64_t K, uint64_t *seed)
{
        float *x = malloc(sizeof(float) * M * K + 4), *wf = malloc(sizeof(float) * N * K + 4);
        int8_t *wq = malloc(N * K + 1);
        float *ws = malloc(sizeof(float) * N);

        for (int64_t i = 0; i < M * K; i++)
                x[i] = frand(seed) * (i % 17 == 0 ? 40.0f : 1.0f); /* a few outliers */
        if (M > 1)
                memset(x, 0, sizeof(float) * K); /* an all-zero row */
        for (int64_t i = 0; i < N * K; i++)
                wf[i] = frand(seed);
        quantize_weight_rows(wf, N, K, wq, ws);
        check_int8(prec, M, N, K, x, wq, ws);
        free(x); free(wf); free(wq); free(ws);
}

static void test_int8_matches_reference(void **state)
{
        static const int64_t shapes[][3] = {
                /* K under 4 (no full column group), ragged K, partial panels */
                { 1, 1, 1 },    { 1, 7, 31 },   { 1, 64, 64 },   { 2, 5, 33 },    { 3, 17, 95 },  { 2, 16, 3 },
                { 8, 64, 256 }, { 9, 33, 257 }, { 13, 70, 100 }, { 1, 130, 4096 }, { 4, 16, 4097 },
                /* the decode step of a batch: every tile height and token count of the kernels */
                { 5, 9, 64 },   { 6, 3, 1 },    { 7, 23, 2048 }, { 10, 11, 31 }, { 11, 5, 161 },
                { 12, 9, 96 },  { 14, 6, 2050 }, { 15, 130, 160 }, { 16, 40, 512 }, { 17, 20, 64 },
                { 2, 80, 128 }, { 3, 112, 64 }, { 4, 48, 68 },   { 6, 96, 132 },
                /* prefill: token groups of 12 (and their remainders) over chunks of 64 rows */
                { 24, 64, 256 }, { 25, 96, 130 }, { 37, 128, 64 }, { 64, 160, 288 },
                /*
                 * AMX (16 tokens or more, K a multiple of 64): blocks of 32 tokens
                 * and their remainders (16, 17 .. 31 over one or two A tiles),
                 * odd panel counts, partial panels at the chunk's edges
                 */
                { 16, 16, 64 },  { 20, 48, 192 }, { 31, 80, 128 }, { 32, 32, 256 }, { 33, 112, 320 },
                { 48, 70, 64 }, { 70, 144, 4096 },
                /* AMX over slices of K (more than 1 MiB of activations), ragged token blocks */
                { 260, 48, 8192 },
                /* w8a16 over more than one int64 flush (1024 columns) */
                { 3, 32, 2500 }, { 8, 48, 1029 },
        };
        uint64_t seed = 99;
        for (size_t i = 0; i < ARRAY_SIZE(shapes); i++) {
                check_int8_shape(NPU_PRECISION_W8A8, shapes[i][0], shapes[i][1], shapes[i][2], &seed);
                check_int8_shape(NPU_PRECISION_W8A16, shapes[i][0], shapes[i][1], shapes[i][2], &seed);
        }
}

/*
 * Sums at the edge of int32 (w8a8: 127 * 127 * GEMM_I8_MAX_K, where the
 * u8 activations of the VNNI path wrap twice over) and of the w8a16
 * flushes, of both signs, on every path.
 */
static void test_int8_extremes(void **state)
{
        /* 17 tokens, so AMX's tiles take them too: the rows cycle through the three patterns */
        const int64_t M = 17, N = 32, K = GEMM_I8_MAX_K;
        float *x = malloc(sizeof(float) * M * K), *ws = malloc(sizeof(float) * N);
        int8_t *wq = malloc(N * K);

        for (int64_t t = 0; t < M; t++)
                for (int64_t k = 0; k < K; k++)
                        x[t * K + k] = t % 3 == 0 ? 1.0f : t % 3 == 1 ? -1.0f : (k % 2 ? 1.0f : -1.0f);
        for (int64_t r = 0; r < N; r++) {
                ws[r] = 1.0f;
                for (int64_t k = 0; k < K; k++)
                        wq[r * K + k] = (int8_t)(r % 3 == 0 ? 127 : r % 3 == 1 ? -127 : (k % 2 ? 127 : -127));
        }
        check_int8(NPU_PRECISION_W8A8, M, N, K, x, wq, ws);
        check_int8(NPU_PRECISION_W8A16, M, N, K, x, wq, ws);
        free(x); free(ws); free(wq);
}

/* Packing: the layout of gemm_int8.h, row sums, -128 clamped to -127 and counted, unpacking gives the rows back. */
static void test_int8_packing(void **state)
{
        static const int64_t shapes[][2] = { { 1, 1 }, { 16, 4 }, { 17, 7 }, { 35, 64 }, { 48, 130 } };
        uint64_t seed = 11;
        for (size_t s = 0; s < ARRAY_SIZE(shapes); s++) {
                const int64_t N = shapes[s][0], K = shapes[s][1];
                int8_t *w = malloc(N * K), *in_place = malloc(N * K), *row = malloc(K);
                int32_t *sums = malloc(sizeof(int32_t) * N), *sums2 = malloc(sizeof(int32_t) * N);
                struct packed p;
                uint64_t minus128 = 0, clamped = 0;
                float ws = 1;
                for (int64_t i = 0; i < N * K; i++) {
                        w[i] = (int8_t)(test_rng(&seed) % 256);
                        minus128 += w[i] == -128;
                }
                pack_weight(&p, w, &ws, N, K);
                assert_int_equal(p.clamped, minus128);
                for (int64_t r = 0; r < N; r++) {
                        int32_t sum = 0;
                        gemm_i8_unpack_row(p.data, N, K, r, row);
                        for (int64_t k = 0; k < K; k++) {
                                int8_t v = w[r * K + k] == -128 ? -127 : w[r * K + k];
                                assert_int_equal(row[k], v);
                                assert_int_equal(p.data[gemm_i8_offset(N, K, r, k)], v);
                                sum += v;
                        }
                        assert_int_equal(p.sums[r], sum);
                }
                /* in place gives the same bytes */
                memcpy(in_place, w, N * K);
                assert_int_equal(gemm_i8_pack(in_place, in_place, N, K, sums2, &clamped), 0);
                assert_memory_equal(in_place, p.data, N * K);
                assert_memory_equal(sums2, p.sums, sizeof(int32_t) * N);
                assert_int_equal(clamped, minus128);
                packed_free(&p);
                free(w); free(in_place); free(row); free(sums); free(sums2);
        }
}

/*
 * A weight byte of -128 (npu-quantize never writes one, other files can):
 * clamped at packing, so every path computes with -127, the same as the
 * reference given the clamped weights (the -128 once gave the wrong sign
 * in the SIMD paths).
 */
static void test_int8_minus_128(void **state)
{
        const int64_t M = 5, N = 32, K = 160;
        float *x = malloc(sizeof(float) * M * K), *ws = malloc(sizeof(float) * N);
        int8_t *raw = malloc(N * K), *clamped = malloc(N * K);
        uint64_t seed = 5;

        for (int64_t i = 0; i < M * K; i++)
                x[i] = frand(&seed);
        for (int64_t r = 0; r < N; r++)
                ws[r] = 0.01f;
        for (int64_t i = 0; i < N * K; i++) {
                raw[i] = (int8_t)(i % 5 == 0 ? -128 : (int64_t)(test_rng(&seed) % 255) - 127);
                clamped[i] = raw[i] == -128 ? -127 : raw[i];
        }
        /* check_int8 packs raw for the kernels; the reference gets the clamped bytes */
        int8_t *rq8 = malloc(M * K);
        float *rs = malloc(sizeof(float) * M), *ref = malloc(sizeof(float) * M * N), *out = malloc(sizeof(float) * M * N);
        struct act_q aq;
        struct packed p;
        pack_weight(&p, raw, ws, N, K);
        assert_int_equal(p.clamped, N * K / 5);
        assert_int_equal(act_q_alloc(&aq, (int32_t)M, K), 0);
        npu_ref_quant_i8(x, rq8, rs, (uint32_t)K, 0, (uint32_t)M);
        npu_ref_gemm_w8a8(rq8, clamped, rs, ws, ref, (uint32_t)N, (uint32_t)K, 0, (uint32_t)M, 0, (uint32_t)N);
        for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++) {
                if (kernels_force_isa(isa) < 0)
                        continue;
                act_quantize_rows(&aq, NPU_PRECISION_W8A8, x, K, 0, M);
                matmul_int8_rows(&p.w, &aq, M, out, N, 0, N);
                assert_memory_equal(out, ref, sizeof(float) * M * N);
        }
        kernels_reset_isa();
        check_int8(NPU_PRECISION_W8A16, M, N, K, x, clamped, ws);
        act_q_free(&aq);
        packed_free(&p);
        free(x); free(ws); free(raw); free(clamped); free(rq8); free(rs); free(ref); free(out);
}

/* Quantization edge cases on every path: ties (round half away from zero), NaN, infinity, ragged tails. */
static void test_act_quant_edges(void **state)
{
        const int64_t K = 300, M = 4;
        float *x = malloc(sizeof(float) * M * K), *rs = malloc(sizeof(float) * M);
        int8_t *rq8 = malloc(M * K);
        int16_t *rq16 = malloc(2 * M * K);
        struct act_q aq;
        uint64_t seed = 3;

        for (int64_t k = 0; k < K; k++) {
                /* row 0: amax 127 makes the scale exactly 1, so every x.5 is a tie */
                x[k] = k == 0 ? 127.0f : (float)((int64_t)(k % 255) - 127) + (k % 2 ? 0.5f : -0.5f);
                /* row 1: NaNs and a huge value among small ones */
                x[K + k] = k % 7 == 0 ? NAN : k == 5 ? 3e30f : frand(&seed);
                /* row 2: an infinity (scale infinite: every value quantizes to 0) */
                x[2 * K + k] = k == 9 ? -INFINITY : frand(&seed);
                /* row 3: ties at the w8a16 scale, and denormals */
                x[3 * K + k] = k == 1 ? 32767.0f : k % 3 ? (float)(k - 150) + 0.5f : 1e-40f;
        }
        assert_int_equal(act_q_alloc(&aq, (int32_t)M, K), 0);
        npu_ref_quant_i8(x, rq8, rs, (uint32_t)K, 0, (uint32_t)M);
        for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++) {
                if (kernels_force_isa(isa) < 0)
                        continue;
                for (int64_t cols = K; cols >= K - 40; cols -= 13) {
                        float s2[4];
                        int8_t *r2 = malloc(M * cols);
                        float *xc = malloc(sizeof(float) * M * cols);
                        for (int64_t m = 0; m < M; m++)
                                memcpy(xc + m * cols, x + m * K, sizeof(float) * cols);
                        npu_ref_quant_i8(xc, r2, s2, (uint32_t)cols, 0, (uint32_t)M);
                        act_quantize_rows(&aq, NPU_PRECISION_W8A8, xc, cols, 0, M);
                        assert_memory_equal(aq.scale, s2, sizeof(s2));
                        assert_memory_equal(aq.q8, r2, M * cols);
                        /* the q8 KV cache's and the attention queries' quantizer */
                        float s3[4];
                        int8_t *r3 = malloc(M * cols);
                        quant_rows_i8(xc, r3, s3, cols, M);
                        assert_memory_equal(s3, s2, sizeof(s2));
                        assert_memory_equal(r3, r2, M * cols);
                        free(r3);
                        /* the packed forms of the SIMD GEMM hold the same values */
                        for (int64_t i = 0; i < M * cols; i++) {
                                const int64_t t = i / cols, k = i % cols;
                                if (aq.forms & ACT_U8P)
                                        assert_int_equal(aq.pk[gemm_act_offset(cols, t, k, 1)], r2[i] + 128);
                                if (aq.forms & ACT_Q16P) {
                                        int16_t v;
                                        memcpy(&v, aq.pk + gemm_act_offset(cols, t, k, 2), 2);
                                        assert_int_equal(v, r2[i]);
                                }
                        }
                        free(r2);
                        free(xc);
                }
                act_quantize_rows(&aq, NPU_PRECISION_W8A8, x, K, 0, M);
                assert_memory_equal(aq.q8, rq8, M * K);
                npu_ref_quant_i16(x, rq16, rs, (uint32_t)K, 0, (uint32_t)M);
                act_quantize_rows(&aq, NPU_PRECISION_W8A16, x, K, 0, M);
                assert_memory_equal(aq.scale, rs, sizeof(float) * M);
                assert_memory_equal(aq.q16, rq16, 2 * M * K);
        }
        kernels_reset_isa();
        act_q_free(&aq);
        free(x); free(rs); free(rq8); free(rq16);
}

/* w8a16 at the int32 overflow edge: large K with maximal values must still be exact. */
static void test_w8a16_no_overflow(void **state)
{
        const int64_t K = 20000;
        int8_t *w = malloc(K);
        struct act_q aq;
        struct packed p;
        float ws = 1.0f, y = 0;
        assert_int_equal(act_q_alloc(&aq, 1, K), 0);
        for (int64_t k = 0; k < K; k++) {
                w[k] = 127;
                aq.q16[k] = 32767;
        }
        aq.cols = K;
        aq.prec = NPU_PRECISION_W8A16;
        aq.forms = ACT_Q16;
        aq.scale[0] = 1.0f;
        /* the packed form too, which the SIMD kernels read */
        for (int64_t k = 0; k < K; k++)
                memcpy(aq.pk + gemm_act_offset(K, 0, k, 2), &aq.q16[k], 2);
        aq.forms |= ACT_Q16P;
        pack_weight(&p, w, &ws, 1, K);
        for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++) {
                if (kernels_force_isa(isa) < 0)
                        continue;
                matmul_int8_rows(&p.w, &aq, 1, &y, 1, 0, 1);
                assert_true(y == (float)(127LL * 32767LL * K));
        }
        kernels_reset_isa();
        act_q_free(&aq);
        packed_free(&p);
        free(w);
}

static void test_float_paths_agree(void **state)
{
        const enum ggml_type types[] = { GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16 };
        uint64_t seed = 5;
        /* 11 tokens: on AVX-512 cpus 4 pairs, 1 pair and one token; on AVX2 5 pairs and one */
        const int64_t M = 11, N = 37, K = 99;
        float *x = malloc(sizeof(float) * M * K), *y0 = malloc(sizeof(float) * M * N), *y1 = malloc(sizeof(float) * M * N),
              *y2 = malloc(sizeof(float) * M * N);
        uint8_t *data = malloc(N * K * 4);
        for (int64_t i = 0; i < M * K; i++)
                x[i] = frand(&seed);
        for (size_t ti = 0; ti < ARRAY_SIZE(types); ti++) {
                enum ggml_type t = types[ti];
                size_t rb = K / ggml_type_block_elems(t) * ggml_type_block_bytes(t);
                for (int64_t r = 0; r < N; r++) {
                        uint8_t *row = data + r * rb;
                        for (int64_t k = 0; k < K; k++) {
                                float f = frand(&seed);
                                if (t == GGML_TYPE_F32)
                                        memcpy(row + 4 * k, &f, 4);
                                else if (t == GGML_TYPE_F16) {
                                        uint16_t h = f32_to_f16(f);
                                        memcpy(row + 2 * k, &h, 2);
                                } else {
                                        uint16_t h = f32_to_bf16(f);
                                        memcpy(row + 2 * k, &h, 2);
                                }
                        }
                }
                struct npu_weight w = { .type = t, .rows = N, .cols = K, .data = data, .row_bytes = rb };
                assert_int_equal(kernels_force_isa(KERNEL_ISA_SCALAR), 0);
                matmul_float_rows(&w, x, M, K, y0, N, 0, N);
                if (kernels_force_isa(KERNEL_ISA_AVX2) < 0)
                        continue;
                matmul_float_rows(&w, x, M, K, y1, N, 0, N);
                for (int64_t i = 0; i < M * N; i++)
                        assert_true(fabsf(y0[i] - y1[i]) <= 1e-4f * (1 + fabsf(y0[i])));
                /* batch invariance within a path: one token at a time equals the batch */
                for (int64_t m = 0; m < M; m++) {
                        float one[37];
                        matmul_float_rows(&w, x + m * K, 1, K, one, N, 0, N);
                        assert_memory_equal(one, y1 + m * N, sizeof(one));
                }
                /* AVX-512 cpus' wider tiles: the same sums as AVX2, bit for bit */
                if (kernels_force_isa(KERNEL_ISA_AVX512_VNNI) < 0)
                        continue;
                matmul_float_rows(&w, x, M, K, y2, N, 0, N);
                assert_memory_equal(y2, y1, sizeof(float) * M * N);
                /* and one token at a time there (its 8-row tiles) */
                for (int64_t m = 0; m < M; m++) {
                        float one[37];
                        matmul_float_rows(&w, x + m * K, 1, K, one, N, 0, N);
                        assert_memory_equal(one, y1 + m * N, sizeof(one));
                }
        }
        kernels_reset_isa();
        free(x); free(y0); free(y1); free(y2); free(data);
}

static void test_f16_conversion(void **state)
{
        /* every half value converts to float and back exactly */
        for (uint32_t h = 0; h < 65536; h++) {
                float f = f16_to_f32((uint16_t)h);
                if (isnan(f))
                        continue;
                assert_int_equal(f32_to_f16(f), h);
                assert_true(f == npu_ref_f16_to_f32((uint16_t)h));
        }
        /* rounding of floats agrees with the device reference */
        uint64_t seed = 17;
        for (int i = 0; i < 200000; i++) {
                float f = f32_from_bits((uint32_t)test_rng(&seed));
                if (isnan(f))
                        continue;
                assert_int_equal(f32_to_f16(f), npu_ref_f32_to_f16(f));
        }
}

struct share_job {
        int n;
        atomic_int runs[8];
        int slow; /* this share sleeps, so the caller may take the others */
};

static void share_worker(void *arg, int ith, int nth)
{
        struct share_job *j = arg;
        assert_int_equal(nth, j->n);
        assert_true(ith >= 0 && ith < nth);
        if (ith == j->slow)
                usleep(200);
        atomic_fetch_add(&j->runs[ith], 1);
}

/* The thread pool runs every share of every job exactly once, whoever claims it, and returns after the last. */
static void test_threadpool_shares(void **state)
{
        for (int n = 1; n <= 4; n++) {
                _cleanup_(threadpool_freep) struct threadpool *tp = NULL;
                assert_int_equal(threadpool_new(n, &tp), 0);
                for (int rep = 0; rep < 300; rep++) {
                        struct share_job j = { .n = n, .slow = rep % 3 == 0 ? rep % n : -1 };
                        threadpool_run(tp, share_worker, &j);
                        for (int i = 0; i < n; i++)
                                assert_int_equal(atomic_load(&j.runs[i]), 1);
                        if (rep % 50 == 0)
                                usleep(2000); /* let the workers fall asleep now and then */
                }
        }
}

struct quant_rows_job {
        struct act_q *aq;
        enum npu_precision prec;
        const float *x;
        int64_t rows, cols;
};

/* One row per call, rows ith, ith + nth, ...: as the element ops quantize the rows they write. */
static void quant_rows_worker(void *arg, int ith, int nth)
{
        const struct quant_rows_job *j = arg;
        for (int64_t t = ith; t < j->rows; t += nth)
                act_quantize_rows(j->aq, j->prec, j->x, j->cols, t, t + 1);
}

/*
 * Threads quantizing disjoint rows of one act_q at once leave exactly what
 * one thread leaves: every row in every form, packed ones included (a
 * thread must not take another's half-written header for its own rows).
 */
static void test_act_quant_concurrent(void **state)
{
        const int64_t M = 24, K = 264;
        uint64_t seed = 99;
        float *x = malloc(sizeof(float) * M * K);
        const size_t pk_bytes = gemm_act_bytes(M, K);
        _cleanup_(threadpool_freep) struct threadpool *tp = NULL;
        struct act_q ref, aq;

        for (int64_t i = 0; i < M * K; i++)
                x[i] = frand(&seed);
        assert_int_equal(threadpool_new(4, &tp), 0);
        assert_int_equal(act_q_alloc(&ref, (int32_t)M, K), 0);
        assert_int_equal(act_q_alloc(&aq, (int32_t)M, K), 0);
        for (int isa = KERNEL_ISA_AVX2; isa <= KERNEL_ISA_AMX; isa++) {
                if (kernels_force_isa(isa) < 0)
                        continue;
                for (enum npu_precision prec = NPU_PRECISION_W8A8; prec <= NPU_PRECISION_W8A16; prec++) {
                        struct quant_rows_job j = { .aq = &aq, .prec = prec, .x = x, .rows = M, .cols = K };
                        memset(ref.pk, 0x5a, pk_bytes); /* the token groups' padding stays as it was */
                        act_quantize_rows(&ref, prec, x, K, 0, M);
                        for (int rep = 0; rep < 3000; rep++) {
                                memset(aq.pk, 0x5a, pk_bytes);
                                threadpool_run(tp, quant_rows_worker, &j);
                                assert_int_equal(aq.forms, ref.forms);
                                assert_memory_equal(aq.scale, ref.scale, sizeof(float) * M);
                                if (ref.forms & (ACT_U8P | ACT_Q16P))
                                        assert_memory_equal(aq.pk, ref.pk, pk_bytes);
                        }
                }
        }
        kernels_reset_isa();
        act_q_free(&aq);
        act_q_free(&ref);
        free(x);
}

/* NPU_KERNELS picks a lower instruction set when the kernels choose theirs, and the choice then stays. */
static void test_isa_choice(void **state)
{
        const char *was = getenv("NPU_KERNELS");
        char *saved = was ? strdup(was) : NULL;

        assert_int_equal(setenv("NPU_KERNELS", "scalar", 1), 0);
        kernels_reset_isa();
        assert_int_equal(kernels_isa(), KERNEL_ISA_SCALAR);
        assert_int_equal(unsetenv("NPU_KERNELS"), 0);
        assert_int_equal(kernels_isa(), KERNEL_ISA_SCALAR);
        if (saved)
                assert_int_equal(setenv("NPU_KERNELS", saved, 1), 0);
        free(saved);
        kernels_reset_isa();
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_int8_matches_reference),
                cmocka_unit_test(test_int8_extremes),
                cmocka_unit_test(test_int8_packing),
                cmocka_unit_test(test_int8_minus_128),
                cmocka_unit_test(test_act_quant_edges),
                cmocka_unit_test(test_w8a16_no_overflow),
                cmocka_unit_test(test_float_paths_agree),
                cmocka_unit_test(test_f16_conversion),
                cmocka_unit_test(test_threadpool_shares),
                cmocka_unit_test(test_isa_choice),
                cmocka_unit_test(test_act_quant_concurrent),
        };
        int r = cmocka_run_group_tests(tests, NULL, NULL);

        printf("int8 kernels compared with the reference on:");
        for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++)
                if (isas_run & (1u << isa))
                        printf(" %s", kernels_isa_name(isa));
        printf("\n");
        return r;
}
