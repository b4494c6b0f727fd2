/* SPDX-License-Identifier: MIT */
/*
 * GGUF block types: dequantization equals the values placed into each bit
 * field as the layout says (written here by an encoder of the test's own),
 * the quantizers round-trip within bounds, the activation quantizers'
 * portable C and AVX2 paths are bit-identical and honest, and every kernel
 * path (portable C, AVX2, AVX-512 VNNI) of every type gives the same bits,
 * one token at a time as in a batch, close to the exact dot product.
 */
#include <math.h>
#include <stdlib.h>

#include "kernels.h"
#include "kernels_quant.h"
#include "quant_interleave.h"
#include "quantize_blocks.h"
#include "test-helpers.h"

static const enum ggml_type all_types[] = {
        GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0,
        GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
};

/* the types whose 512-bit one-token kernels take four blocks a step (quads32) */
static const enum ggml_type quad_types[] = { GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1 };

/*
 * Tokens that take the GEMMs on AVX-512 VNNI past the four-token walks
 * (kernels_quant.c's interleaved_min_tokens and tile_min_tokens)
 */
static int walks_gemm_tokens(enum ggml_type t)
{
        return ggml_type_block_elems(t) == QK_K ? 33 : 21;
}

/* the instruction sets the kernel comparisons ran on, for the log (the VM test of AVX-512 VNNI greps it) */
static unsigned isas_run;

/*
 * NPU_TEST_QUICK=1 (the emulated Ice Lake of tests/vnni, where every
 * instruction costs hundreds of native ones): one shape per type that still
 * takes both the one-token and the tile path over several slices.
 */
static bool quick(void)
{
        const char *e = getenv("NPU_TEST_QUICK");
        return e && strcmp(e, "1") == 0;
}

static float frand(uint64_t *s)
{
        return (float)((int64_t)(test_rng(s) % 2000001) - 1000000) / 1000000.0f;
}

static int irand(uint64_t *s, int lo, int hi)
{
        return lo + (int)(test_rng(s) % (uint64_t)(hi - lo + 1));
}

/* --- an encoder of the test's own: put integer fields where the layout says --- */

static void put_bits(uint8_t *base, int bit, int nbits, unsigned v)
{
        for (int i = 0; i < nbits; i++) {
                int b = bit + i;
                base[b / 8] = (uint8_t)((base[b / 8] & ~(1u << (b % 8))) | (((v >> i) & 1u) << (b % 8)));
        }
}

static void put_f16(uint8_t *p, float v)
{
        uint16_t h = f32_to_f16(v);
        memcpy(p, &h, 2);
}

/*
 * One random block of type t in blk, and the values it stands for in want
 * (computed in double from the integers, then rounded as the formula says).
 */
static void random_block(enum ggml_type t, uint8_t *blk, float *want, uint64_t *s)
{
        const float d = f16_to_f32(f32_to_f16(0.01f + 0.05f * fabsf(frand(s))));
        const float dm = f16_to_f32(f32_to_f16(0.002f + 0.01f * fabsf(frand(s))));

        memset(blk, 0, ggml_type_block_bytes(t));
        switch (t) {
        case GGML_TYPE_Q4_0:
        case GGML_TYPE_Q4_1:
        case GGML_TYPE_Q5_0:
        case GGML_TYPE_Q5_1: {
                const bool five = t == GGML_TYPE_Q5_0 || t == GGML_TYPE_Q5_1;
                const bool with_m = t == GGML_TYPE_Q4_1 || t == GGML_TYPE_Q5_1;
                /* d at 0, then m (Q4_1, Q5_1), then qh (Q5_*), then 16 bytes of nibbles */
                const int qh_at = with_m ? 4 : 2, qs_at = qh_at + (five ? 4 : 0);
                const float m = with_m ? f16_to_f32(f32_to_f16(frand(s) * 0.3f)) : 0;
                put_f16(blk, d);
                if (with_m)
                        put_f16(blk + 2, m);
                for (int k = 0; k < 32; k++) {
                        int q = irand(s, 0, five ? 31 : 15);
                        /* element k < 16: low nibble of byte k; k >= 16: high nibble of byte k - 16 */
                        put_bits(blk + qs_at, 8 * (k % 16) + (k < 16 ? 0 : 4), 4, (unsigned)q & 15);
                        if (five)
                                put_bits(blk + qh_at, k, 1, (unsigned)q >> 4);
                        int off = with_m ? 0 : five ? 16 : 8;
                        want[k] = with_m ? d * (float)q + m : d * (float)(q - off);
                }
                return;
        }
        case GGML_TYPE_Q8_0:
                put_f16(blk, d);
                for (int k = 0; k < 32; k++) {
                        int q = irand(s, -128, 127);
                        blk[2 + k] = (uint8_t)q;
                        want[k] = d * (float)q;
                }
                return;
        case GGML_TYPE_Q2_K: {
                /* scales[16] at 0, qs[64] at 16, d at 80, dmin at 82 */
                int sc[16], mn[16];
                put_f16(blk + 80, d);
                put_f16(blk + 82, dm);
                for (int j = 0; j < 16; j++) {
                        sc[j] = irand(s, 0, 15);
                        mn[j] = irand(s, 0, 15);
                        blk[j] = (uint8_t)(sc[j] | mn[j] << 4);
                }
                for (int k = 0; k < 256; k++) {
                        int q = irand(s, 0, 3);
                        /* element 128 h + 32 s + l: bits 2 s of byte 32 h + l */
                        put_bits(blk + 16, 8 * (32 * (k / 128) + k % 32) + 2 * ((k / 32) % 4), 2, (unsigned)q);
                        want[k] = d * (float)sc[k / 16] * (float)q - dm * (float)mn[k / 16];
                }
                return;
        }
        case GGML_TYPE_Q3_K: {
                /* hmask[32] at 0, qs[64] at 32, scales[12] at 96, d at 108 */
                int sc[16];
                put_f16(blk + 108, d);
                for (int j = 0; j < 16; j++) {
                        sc[j] = irand(s, 0, 63);
                        put_bits(blk + 96, 8 * (j % 8) + (j < 8 ? 0 : 4), 4, (unsigned)sc[j] & 15);
                        put_bits(blk + 96, 8 * (8 + j % 4) + 2 * (j / 4), 2, (unsigned)sc[j] >> 4);
                }
                for (int k = 0; k < 256; k++) {
                        int q = irand(s, -4, 3), h = k / 128, sh = (k / 32) % 4, l = k % 32;
                        /* low two bits of q + 4 in qs; the high bit is set when q >= 0 */
                        put_bits(blk + 32, 8 * (32 * h + l) + 2 * sh, 2, (unsigned)(q + 4) & 3);
                        put_bits(blk, 8 * l + 4 * h + sh, 1, q >= 0);
                        want[k] = d * (float)(sc[k / 16] - 32) * (float)q;
                }
                return;
        }
        case GGML_TYPE_Q4_K:
        case GGML_TYPE_Q5_K: {
                /* d at 0, dmin at 2, scales[12] at 4, (Q5_K: qh[32] at 16), qs[128] */
                const bool five = t == GGML_TYPE_Q5_K;
                const int qs_at = five ? 48 : 16;
                int sc[8], mn[8];
                put_f16(blk, d);
                put_f16(blk + 2, dm);
                for (int j = 0; j < 8; j++) {
                        sc[j] = irand(s, 0, 63);
                        mn[j] = irand(s, 0, 63);
                        if (j < 4) {
                                put_bits(blk + 4, 8 * j, 6, (unsigned)sc[j]);
                                put_bits(blk + 4, 8 * (j + 4), 6, (unsigned)mn[j]);
                        } else {
                                put_bits(blk + 4, 8 * (j + 4), 4, (unsigned)sc[j] & 15);
                                put_bits(blk + 4, 8 * (j + 4) + 4, 4, (unsigned)mn[j] & 15);
                                put_bits(blk + 4, 8 * (j - 4) + 6, 2, (unsigned)sc[j] >> 4);
                                put_bits(blk + 4, 8 * j + 6, 2, (unsigned)mn[j] >> 4);
                        }
                }
                for (int k = 0; k < 256; k++) {
                        int q = irand(s, 0, five ? 31 : 15), c = k / 64, hi = (k / 32) % 2, l = k % 32;
                        put_bits(blk + qs_at, 8 * (32 * c + l) + 4 * hi, 4, (unsigned)q & 15);
                        if (five)
                                put_bits(blk + 16, 8 * l + k / 32, 1, (unsigned)q >> 4);
                        want[k] = d * (float)sc[k / 32] * (float)q - dm * (float)mn[k / 32];
                }
                return;
        }
        case GGML_TYPE_Q6_K: {
                /* ql[128] at 0, qh[64] at 128, scales[16] (int8) at 192, d at 208 */
                int sc[16];
                put_f16(blk + 208, d);
                for (int j = 0; j < 16; j++) {
                        sc[j] = irand(s, -128, 127);
                        blk[192 + j] = (uint8_t)sc[j];
                }
                for (int k = 0; k < 256; k++) {
                        int q = irand(s, 0, 63), h = k / 128, sh = (k / 32) % 4, l = k % 32;
                        put_bits(blk, 8 * (64 * h + 32 * (sh & 1) + l) + (sh < 2 ? 0 : 4), 4, (unsigned)q & 15);
                        put_bits(blk + 128, 8 * (32 * h + l) + 2 * sh, 2, (unsigned)q >> 4);
                        want[k] = d * (float)sc[k / 16] * (float)(q - 32);
                }
                return;
        }
        default:
                fail_msg("no encoder for %s", ggml_type_name(t));
        }
}

static void test_dequantize_layouts(void **state)
{
        uint64_t seed = 11;
        for (size_t ti = 0; ti < ARRAY_SIZE(all_types); ti++) {
                const enum ggml_type t = all_types[ti];
                const size_t be = ggml_type_block_elems(t), bb = ggml_type_block_bytes(t);
                uint8_t blk[4][256];
                float want[4 * 256], got[4 * 256];
                assert_true(quant_type_supported(t));
                for (int rep = 0; rep < 50; rep++) {
                        for (int b = 0; b < 4; b++)
                                random_block(t, blk[0] + b * bb, want + b * be, &seed);
                        dequantize_row(t, blk, got, 4 * be);
                        for (size_t k = 0; k < 4 * be; k++)
                                if (got[k] != want[k])
                                        fail_msg("%s element %zu: dequantized %g, the layout says %g", ggml_type_name(t),
                                                 k, got[k], want[k]);
                        int64_t bad = -1;
                        assert_int_equal(quant_row_check(t, blk, 4 * be, &bad), 0);
                }
        }
}

/* A NaN or infinite scale anywhere in a row is found, with its block. */
static void test_corrupt_scales(void **state)
{
        uint64_t seed = 3;
        for (size_t ti = 0; ti < ARRAY_SIZE(all_types); ti++) {
                const enum ggml_type t = all_types[ti];
                const size_t be = ggml_type_block_elems(t), bb = ggml_type_block_bytes(t);
                uint8_t blk[3 * 256];
                float want[3 * 256];
                for (int b = 0; b < 3; b++)
                        random_block(t, blk + b * bb, want + b * be, &seed);
                /* every f16 field that is a scale: find them by poisoning each 2-byte slot of block 1 */
                int found = 0;
                for (size_t off = 0; off + 2 <= bb; off += 2) {
                        uint8_t copy[3 * 256];
                        memcpy(copy, blk, 3 * bb);
                        copy[bb + off] = 0x00;
                        copy[bb + off + 1] = 0x7c; /* +inf */
                        int64_t bad = -1;
                        float f[3 * 256];
                        dequantize_row(t, copy, f, 3 * be);
                        bool nonfinite = false;
                        for (size_t k = 0; k < 3 * be; k++)
                                nonfinite |= !isfinite(f[k]);
                        int r = quant_row_check(t, copy, 3 * be, &bad);
                        /* exactly the slots that make values non-finite are scales */
                        assert_int_equal(r < 0, nonfinite);
                        if (r < 0) {
                                assert_int_equal(r, -EBADMSG);
                                assert_int_equal(bad, 1);
                                found++;
                        }
                }
                int scales = t == GGML_TYPE_Q4_1 || t == GGML_TYPE_Q5_1 || t == GGML_TYPE_Q2_K || t == GGML_TYPE_Q4_K ||
                                     t == GGML_TYPE_Q5_K
                                     ? 2
                                     : 1;
                assert_int_equal(found, scales);
        }
}

/* Quantize, dequantize: within a bound of the row's rms that each type's bits afford. */
static void test_quantize_roundtrip(void **state)
{
        static const struct {
                enum ggml_type t;
                double max_rel; /* rms error / rms value */
        } bounds[] = {
                { GGML_TYPE_Q4_0, 0.13 }, { GGML_TYPE_Q4_1, 0.13 }, { GGML_TYPE_Q5_0, 0.065 }, { GGML_TYPE_Q5_1, 0.065 },
                { GGML_TYPE_Q8_0, 0.01 }, { GGML_TYPE_Q2_K, 0.45 }, { GGML_TYPE_Q3_K, 0.25 }, { GGML_TYPE_Q4_K, 0.12 },
                { GGML_TYPE_Q5_K, 0.06 }, { GGML_TYPE_Q6_K, 0.03 },
        };
        uint64_t seed = 7;
        const int64_t n = 1024;
        float x[1024], y[1024];
        uint8_t q[1024 * 2];

        for (size_t i = 0; i < ARRAY_SIZE(bounds); i++) {
                const enum ggml_type t = bounds[i].t;
                double e2 = 0, x2 = 0;
                for (int rep = 0; rep < (quick() ? 2 : 20); rep++) {
                        /* roughly Gaussian values with a few outliers */
                        for (int64_t k = 0; k < n; k++) {
                                x[k] = (frand(&seed) + frand(&seed) + frand(&seed)) * 0.05f;
                                if (test_rng(&seed) % 97 == 0)
                                        x[k] *= 6;
                        }
                        quantize_row_blocks(t, x, n, q);
                        assert_int_equal(quant_row_check(t, q, n, NULL), 0);
                        dequantize_row(t, q, y, n);
                        for (int64_t k = 0; k < n; k++) {
                                e2 += (double)(x[k] - y[k]) * (x[k] - y[k]);
                                x2 += (double)x[k] * x[k];
                        }
                }
                double rel = sqrt(e2 / x2);
                print_message("%s: rms error %.4f of rms\n", ggml_type_name(t), rel);
                assert_true(rel < bounds[i].max_rel);
        }
        /* an all-zero row stays zero */
        memset(x, 0, sizeof(x));
        for (size_t i = 0; i < ARRAY_SIZE(bounds); i++) {
                quantize_row_blocks(bounds[i].t, x, 256, q);
                dequantize_row(bounds[i].t, q, y, 256);
                for (int k = 0; k < 256; k++)
                        assert_true(y[k] == 0);
        }
}

static const enum act_scheme all_schemes[] = { ACT_SCHEME_Q8_0, ACT_SCHEME_Q8_1, ACT_SCHEME_Q8_K,
                                               ACT_SCHEME_TOKEN_I8 };

static const int8_t *act_q8(const struct act_blocks *a)
{
        return a->scheme == ACT_SCHEME_TOKEN_I8 ? a->tok.q8 : a->q;
}

/* The value activation k of token t stands for. */
static double act_value(const struct act_blocks *a, int64_t t, int64_t k)
{
        const int64_t K = a->cols, ab = act_scheme_block(a->scheme);
        double v = act_q8(a)[t * K + k] * (double)a->d[t * (K / ab) + k / ab];
        return a->scheme == ACT_SCHEME_TOKEN_I8 ? v * a->tok.scale[t] : v;
}

static void fill_activations(float *x, int64_t n, uint64_t *seed)
{
        for (int64_t i = 0; i < n; i++) {
                x[i] = frand(seed) * (i % 7 == 0 ? 3.0f : 1.0f);
                if (i % 301 == 5)
                        x[i] = 0;
        }
        /* an all-zero block of 256, a NaN and an infinity of a broken model */
        for (int64_t i = 256; i < 512 && i < n; i++)
                x[i] = 0;
        if (n > 1000) {
                x[700] = NAN;
                x[900] = INFINITY;
        }
}

static void test_act_quant(void **state)
{
        uint64_t seed = 5;
        const int32_t T = 3;
        const int64_t K = 1024;
        float *x = malloc(sizeof(float) * T * K);
        fill_activations(x, T * K, &seed);
        for (size_t si = 0; si < ARRAY_SIZE(all_schemes); si++) {
                struct act_blocks a0, a1;
                const enum act_scheme sc = all_schemes[si];
                const int64_t ab = act_scheme_block(sc);
                assert_int_equal(act_blocks_alloc(&a0, sc, T, K), 0);
                assert_int_equal(act_blocks_alloc(&a1, sc, T, K), 0);
                assert_int_equal(kernels_force_isa(KERNEL_ISA_SCALAR), 0);
                act_blocks_quantize(&a0, x, K, 0, T);
                if (kernels_force_isa(KERNEL_ISA_AVX2) == 0) {
                        act_blocks_quantize(&a1, x, K, 0, T);
                        assert_memory_equal(act_q8(&a0), act_q8(&a1), T * K);
                        assert_memory_equal(a0.d, a1.d, sizeof(float) * T * (K / ab));
                        if (a0.s)
                                assert_memory_equal(a0.s, a1.s, sizeof(float) * T * (K / ab));
                        if (a0.bsums)
                                assert_memory_equal(a0.bsums, a1.bsums, sizeof(int16_t) * T * (K / 16));
                }
                kernels_reset_isa();
                for (int64_t t = 0; t < T; t++)
                        for (int64_t k = 0; k < K; k++) {
                                const float xv = x[t * K + k];
                                const int8_t q = act_q8(&a0)[t * K + k];
                                assert_true(q >= -127);
                                if (!isfinite(xv)) {
                                        if (xv != xv || sc != ACT_SCHEME_TOKEN_I8)
                                                assert_int_equal(q, 0);
                                        continue;
                                }
                                /* the block that holds the infinity is all lost (scale infinite): skip it */
                                if (sc != ACT_SCHEME_TOKEN_I8 && !isfinite(a0.d[t * (K / ab) + k / ab]))
                                        continue;
                                if (sc == ACT_SCHEME_TOKEN_I8 && !isfinite(a0.tok.scale[t]))
                                        continue;
                                double step = sc == ACT_SCHEME_TOKEN_I8 ? a0.tok.scale[t]
                                                                        : a0.d[t * (K / ab) + k / ab];
                                /* half a step, and f16's rounding of the block scale (Q8_0, Q8_1) */
                                double tol = 0.5 * fabs(step) + 127 * fabs(step) / 1024 + 1e-12;
                                assert_true(fabs(act_value(&a0, t, k) - xv) <= tol);
                        }
                if (sc == ACT_SCHEME_Q8_1)
                        for (int64_t b = 0; b < T * K / 32; b++) {
                                int32_t sum = 0;
                                for (int k = 0; k < 32; k++)
                                        sum += a0.q[32 * b + k];
                                double want = (double)sum * a0.d[b];
                                if (isfinite(want))
                                        assert_true(fabs(a0.s[b] - want) <= fabs(want) / 512 + 1e-6);
                        }
                if (sc == ACT_SCHEME_Q8_K)
                        for (int64_t j = 0; j < T * K / 16; j++) {
                                int32_t sum = 0;
                                for (int k = 0; k < 16; k++)
                                        sum += a0.q[16 * j + k];
                                assert_int_equal(a0.bsums[j], sum);
                        }
                act_blocks_free(&a0);
                act_blocks_free(&a1);
        }
        free(x);
}

/* How check_paths fills its weights and activations. */
enum fill {
        FILL_REAL, /* blocks quantized from floats */
        FILL_RAW,  /* random bytes with finite scales */
        /*
         * every weight at its largest magnitude (nibbles 15, fifth bits set,
         * Q8_0 -128 or 127 by row; the K-quants' every q bit set), activations
         * all 127 or all -127 by token: the int16 pair sums of AVX2's
         * vpmaddubsw at their largest (gemm_block_avx2.c, gemm_kquant_avx2.c)
         */
        FILL_EXTREME,
};

/*
 * A K-quant block of FILL_EXTREME: every bit of q set (the unsigned q at
 * its largest: Q2_K 3, Q3_K 7 = w + 4, Q4_K 15, Q5_K 31, Q6_K 63), the
 * scales and mins too, except Q6_K's scales, 127 or -128 by row; d and
 * dmin where the layout puts them.
 */
static void extreme_k_block(enum ggml_type t, uint8_t *blk, int64_t r, uint64_t *s)
{
        const float d = 0.01f + 0.05f * fabsf(frand(s)), dmin = 0.002f + 0.01f * fabsf(frand(s));

        memset(blk, 0xff, ggml_type_block_bytes(t));
        switch (t) {
        case GGML_TYPE_Q2_K: /* scales 16, qs 64, d, dmin */
                put_f16(blk + 80, d);
                put_f16(blk + 82, dmin);
                return;
        case GGML_TYPE_Q3_K: /* hmask 32, qs 64, scales 12, d */
                put_f16(blk + 108, d);
                return;
        case GGML_TYPE_Q4_K: /* d, dmin, scales 12, (Q5_K: qh 32,) qs */
        case GGML_TYPE_Q5_K:
                put_f16(blk, d);
                put_f16(blk + 2, dmin);
                return;
        case GGML_TYPE_Q6_K: /* ql 128, qh 64, scales 16, d */
                memset(blk + 192, r % 2 ? 0x7f : 0x80, 16);
                put_f16(blk + 208, d);
                return;
        default:
                fail_msg("%s is no K-quant", ggml_type_name(t));
        }
}

/* Block b of row r at its largest magnitudes (FILL_EXTREME). */
static void extreme_block(enum ggml_type t, uint8_t *blk, int64_t r, uint64_t *s)
{
        const size_t bb = ggml_type_block_bytes(t);
        const bool with_m = t == GGML_TYPE_Q4_1 || t == GGML_TYPE_Q5_1;

        if (ggml_type_block_elems(t) == QK_K) {
                extreme_k_block(t, blk, r, s);
                return;
        }
        /* nibbles and fifth bits all ones; Q8_0's bytes -128 or 127 */
        memset(blk, t == GGML_TYPE_Q8_0 ? (r % 2 ? 0x7f : 0x80) : 0xff, bb);
        put_f16(blk, 0.01f + 0.05f * fabsf(frand(s)));
        if (with_m)
                put_f16(blk + 2, frand(s) * 0.3f);
}

/* Random weights as fill says. */
static void random_weights(enum ggml_type t, int64_t N, int64_t K, uint8_t *data, uint64_t *seed, enum fill fill)
{
        const size_t rb = quant_row_bytes(t, K), be = ggml_type_block_elems(t), bb = ggml_type_block_bytes(t);
        float *row = malloc(sizeof(float) * K);
        for (int64_t r = 0; r < N; r++) {
                if (fill == FILL_EXTREME) {
                        for (size_t b = 0; b < (size_t)K / be; b++)
                                extreme_block(t, data + r * rb + b * bb, r, seed);
                        continue;
                }
                if (fill == FILL_RAW) {
                        float want[256];
                        for (size_t b = 0; b < (size_t)K / be; b++)
                                random_block(t, data + r * rb + b * bb, want, seed);
                        continue;
                }
                for (int64_t k = 0; k < K; k++)
                        row[k] = frand(seed) * (k % 13 == 0 ? 0.3f : 0.05f);
                quantize_row_blocks(t, row, K, data + r * rb);
        }
        free(row);
}

/*
 * The first rows of data, whole groups, interleaved (quant_interleave.h):
 * put back, each row is its bytes and its floats; every path's products
 * (the VNNI one-token kernel's, the others' through the rows put back),
 * over the whole and in two ranges that split a group, and each token
 * alone, are the portable C's on the rows as stored (want, ys N).
 */
static void check_interleaved(enum ggml_type t, int64_t N, int64_t K, int32_t T, const uint8_t *data,
                              const struct act_blocks *a, const float *want)
{
        const size_t rb = quant_row_bytes(t, K);
        const int64_t n = N / QI_ROWS * QI_ROWS;
        uint8_t *il = malloc(rb * n), *back = malloc(rb * n);
        float *y = malloc(sizeof(float) * T * N), *f0 = malloc(sizeof(float) * K), *f1 = malloc(sizeof(float) * K);
        struct npu_weight w = { .type = t, .rows = n, .cols = K, .data = il, .row_bytes = rb };
        const struct npu_weight plain = { .type = t, .rows = n, .cols = K, .data = data, .row_bytes = rb };

        memcpy(il, data, rb * n);
        assert_int_equal(quant_interleave_weight(&w), 0);
        assert_int_equal(w.interleave, QI_ROWS);
        quant_interleaved_rows(&w, 0, n, back);
        assert_memory_equal(back, data, rb * n);
        for (int64_t r = 0; r < n; r += 7) {
                weight_row_f32(&w, r, f0);
                weight_row_f32(&plain, r, f1);
                assert_memory_equal(f0, f1, sizeof(float) * K);
        }
        for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++) {
                if (kernels_force_isa(isa) < 0)
                        continue;
                for (int split = 0; split < 2; split++) {
                        const int64_t cut = split ? n / 3 + 1 : n;
                        memset(y, 0, sizeof(float) * T * N);
                        matmul_quant_rows(&w, a, T, y, N, 0, cut);
                        matmul_quant_rows(&w, a, T, y, N, cut, n);
                        for (int32_t tt = 0; tt < T; tt++)
                                for (int64_t r = 0; r < n; r++)
                                        if (y[tt * N + r] != want[tt * N + r])
                                                fail_msg("%s interleaved, %s, K %lld, %d tokens: %.9g at row %lld "
                                                         "token %d, the rows as stored %.9g",
                                                         ggml_type_name(t), kernels_isa_name(isa), (long long)K, T,
                                                         y[tt * N + r], (long long)r, tt, want[tt * N + r]);
                }
                struct act_blocks one = *a;
                if (a->scheme == ACT_SCHEME_TOKEN_I8) {
                        one.tok.q8 = a->tok.q8 + (T - 1) * K;
                        one.tok.scale = a->tok.scale + (T - 1);
                } else {
                        one.q = a->q + (T - 1) * K;
                }
                one.d = a->d + (T - 1) * (K / act_scheme_block(a->scheme));
                one.s = a->s ? a->s + (T - 1) * (K / 32) : NULL;
                one.bsums = a->bsums ? a->bsums + (T - 1) * (K / 16) : NULL;
                one.asum = a->asum ? a->asum + (T - 1) * (K / 32) : NULL;
                matmul_quant_rows(&w, &one, 1, y, N, 0, n);
                assert_memory_equal(y, want + (T - 1) * N, sizeof(float) * n);
        }
        kernels_reset_isa();
        free(il);
        free(back);
        free(y);
        free(f0);
        free(f1);
}

static void check_paths(enum ggml_type t, enum act_scheme sc, int64_t N, int64_t K, int32_t T, enum fill fill,
                        uint64_t *seed)
{
        const size_t rb = quant_row_bytes(t, K);
        uint8_t *data = malloc(rb * N);
        float *x = malloc(sizeof(float) * T * K), *wf = malloc(sizeof(float) * K);
        float *y[KERNEL_ISA_COUNT], *one = malloc(sizeof(float) * N);
        struct act_blocks a;
        const struct npu_weight w = { .type = t, .rows = N, .cols = K, .data = data, .row_bytes = rb };

        random_weights(t, N, K, data, seed, fill);
        for (int64_t i = 0; i < T * K; i++)
                x[i] = fill == FILL_EXTREME ? (i / K % 2 ? -1.0f : 1.0f) : frand(seed) * (i % 11 == 0 ? 2.0f : 0.5f);
        assert_int_equal(act_blocks_alloc(&a, sc, T, K), 0);
        act_blocks_quantize(&a, x, K, 0, T);
        for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++) {
                y[isa] = calloc(T * N, sizeof(float));
                if (kernels_force_isa(isa) < 0) {
                        free(y[isa]);
                        y[isa] = NULL;
                        continue;
                }
                isas_run |= 1u << isa;
                matmul_quant_rows(&w, &a, T, y[isa], N, 0, N);
                /* the same rows in two ranges, and each token alone: the same bits */
                float *part = calloc(T * N, sizeof(float));
                matmul_quant_rows(&w, &a, T, part, N, 0, N / 3);
                matmul_quant_rows(&w, &a, T, part, N, N / 3, N);
                assert_memory_equal(part, y[isa], sizeof(float) * T * N);
                free(part);
                for (int32_t tt = 0; tt < T; tt++) {
                        struct act_blocks single = a;
                        const int64_t ab = act_scheme_block(sc);
                        if (sc == ACT_SCHEME_TOKEN_I8) {
                                single.tok.q8 = a.tok.q8 + tt * K;
                                single.tok.scale = a.tok.scale + tt;
                        } else {
                                single.q = a.q + tt * K;
                        }
                        single.d = a.d + tt * (K / ab);
                        single.s = a.s ? a.s + tt * (K / ab) : NULL;
                        single.bsums = a.bsums ? a.bsums + tt * (K / 16) : NULL;
                        single.asum = a.asum ? a.asum + tt * (K / 32) : NULL;
                        matmul_quant_rows(&w, &single, 1, one, N, 0, N);
                        if (memcmp(one, y[isa] + tt * N, sizeof(float) * N))
                                fail_msg("%s %s: token %d alone differs from the batch of %d", ggml_type_name(t),
                                         kernels_isa_name(isa), tt, T);
                }
                if (isa > KERNEL_ISA_SCALAR && memcmp(y[isa], y[KERNEL_ISA_SCALAR], sizeof(float) * T * N)) {
                        for (int64_t i = 0; i < T * N; i++)
                                if (y[isa][i] != y[KERNEL_ISA_SCALAR][i])
                                        fail_msg("%s x %s, K %lld: %s gives %.9g at %lld, portable C %.9g",
                                                 ggml_type_name(t), act_scheme_name(sc), (long long)K,
                                                 kernels_isa_name(isa), y[isa][i], (long long)i,
                                                 y[KERNEL_ISA_SCALAR][i]);
                }
        }
        kernels_reset_isa();
        if (quant_interleave_type(t) && N >= QI_ROWS)
                check_interleaved(t, N, K, T, data, &a, y[KERNEL_ISA_SCALAR]);
        /*
         * close to the exact dot product of the values the integers stand for
         * (Q4_1, Q5_1: the minimum meets the activations' block sums s as Q8_1
         * keeps them, rounded to f16)
         */
        const bool with_s = t == GGML_TYPE_Q4_1 || t == GGML_TYPE_Q5_1;
        for (int64_t r = 0; r < N; r++) {
                dequantize_row(t, data + r * rb, wf, K);
                for (int32_t tt = 0; tt < T; tt++) {
                        double exact = 0, mag = 0;
                        for (int64_t k = 0; k < K; k++) {
                                double p = (double)wf[k] * act_value(&a, tt, k);
                                exact += p;
                                mag += fabs(p);
                        }
                        for (int64_t b = 0; with_s && b < K / 32; b++) {
                                uint16_t mh;
                                memcpy(&mh, data + r * rb + b * ggml_type_block_bytes(t) + 2, 2);
                                double m = f16_to_f32(mh), sum = 0;
                                for (int64_t k = 32 * b; k < 32 * b + 32; k++)
                                        sum += act_value(&a, tt, k);
                                exact += m * (a.s[tt * (K / 32) + b] - sum);
                        }
                        double got = y[KERNEL_ISA_SCALAR][tt * N + r];
                        if (fabs(got - exact) > 1e-5 * mag + 1e-6)
                                fail_msg("%s row %lld token %d: %.9g, exactly %.9g", ggml_type_name(t), (long long)r,
                                         tt, got, exact);
                }
        }
        for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++)
                free(y[isa]);
        act_blocks_free(&a);
        free(data);
        free(x);
        free(wf);
        free(one);
}

static void test_kernel_paths(void **state)
{
        uint64_t seed = 17;
        if (quick()) {
                for (size_t ti = 0; ti < ARRAY_SIZE(all_types); ti++)
                        check_paths(all_types[ti], quant_type_act_scheme(all_types[ti]), 16, 4096 + 768, 3, FILL_RAW,
                                    &seed);
                check_paths(GGML_TYPE_Q4_0, ACT_SCHEME_TOKEN_I8, 16, 4096 + 768, 3, FILL_RAW, &seed);
                /*
                 * the K-quant GEMM's kinds (Q4_K, Q6_K; interleaved Q2_K, Q3_K,
                 * Q5_K), 13 tokens (on AVX-512 VNNI the walks of four tokens now
                 * take these: their GEMMs below)
                 */
                for (size_t ti = 0; ti < ARRAY_SIZE(all_types); ti++)
                        if (ggml_type_block_elems(all_types[ti]) == QK_K)
                                check_paths(all_types[ti], ACT_SCHEME_Q8_K, 16 * 5 + 5, 1024 + 256, 13, FILL_RAW,
                                            &seed);
                check_paths(GGML_TYPE_Q5_1, ACT_SCHEME_Q8_1, 16 * 5 + 5, 1024 + 256, 7, FILL_RAW, &seed);
                check_paths(GGML_TYPE_Q4_0, ACT_SCHEME_TOKEN_I8, 16 * 5 + 5, 1024 + 256, 7, FILL_RAW, &seed);
                /* the GEMMs of the interleaved nibble types and of Q6_K, past their four-token walks */
                check_paths(GGML_TYPE_Q5_K, ACT_SCHEME_Q8_K, 16 * 2 + 5, 1024 + 256,
                            walks_gemm_tokens(GGML_TYPE_Q5_K), FILL_RAW, &seed);
                check_paths(GGML_TYPE_Q6_K, ACT_SCHEME_Q8_K, 16 * 2 + 5, 1024 + 256,
                            walks_gemm_tokens(GGML_TYPE_Q6_K), FILL_RAW, &seed);
                check_paths(GGML_TYPE_Q3_K, ACT_SCHEME_Q8_K, 16 * 2 + 5, 1024 + 256,
                            walks_gemm_tokens(GGML_TYPE_Q3_K), FILL_RAW, &seed);
                check_paths(GGML_TYPE_Q8_0, ACT_SCHEME_Q8_0, 16 * 2 + 5, 1024 + 256,
                            walks_gemm_tokens(GGML_TYPE_Q8_0), FILL_RAW, &seed);
                check_paths(GGML_TYPE_Q5_1, ACT_SCHEME_Q8_1, 16 * 2 + 5, 1024 + 256,
                            walks_gemm_tokens(GGML_TYPE_Q5_1), FILL_RAW, &seed);
                /* the nibble types' four-block steps, then a pair and a single block, on rows in streams (K >= 4096) */
                for (size_t ti = 0; ti < ARRAY_SIZE(quad_types); ti++)
                        check_paths(quad_types[ti], quant_type_act_scheme(quad_types[ti]), 16 * 5 + 5, 4096 + 32 * 7,
                                    3, FILL_RAW, &seed);
                check_paths(GGML_TYPE_Q4_0, ACT_SCHEME_TOKEN_I8, 16 + 5, 4096 + 32 * 6, 3, FILL_RAW, &seed);
                for (size_t ti = 0; ti < ARRAY_SIZE(all_types); ti++)
                        check_paths(all_types[ti], quant_type_act_scheme(all_types[ti]), 16 + 5, 1024 + 256, 7,
                                    FILL_EXTREME, &seed);
                return;
        }
        for (size_t ti = 0; ti < ARRAY_SIZE(all_types); ti++) {
                const enum ggml_type t = all_types[ti];
                const enum act_scheme sc = quant_type_act_scheme(t);
                check_paths(t, sc, 37, 256, 5, FILL_REAL, &seed);
                check_paths(t, sc, 19, 1024, 3, FILL_RAW, &seed);
                check_paths(t, sc, 67, 2048, 9, FILL_REAL, &seed);
                /* more than one slice of the tile path, the last one short */
                check_paths(t, sc, 16, 4096 + 768, 4, FILL_REAL, &seed);
        }
        /*
         * the K-quant GEMMs (gemm_kquant.h): more than one block of 4 panels
         * of 16 rows (VNNI) or 8 of 8 (AVX2), a last panel short, token groups
         * of 6 or 3 and a short one, slices of 1024 columns and a short one,
         * raw bytes (every scale and nibble) and realistic blocks
         */
        for (size_t ti = 0; ti < ARRAY_SIZE(all_types); ti++) {
                const enum ggml_type t = all_types[ti];
                if (ggml_type_block_elems(t) != QK_K)
                        continue;
                check_paths(t, ACT_SCHEME_Q8_K, 16 * 5 + 5, 2048 + 512, 13, FILL_RAW, &seed);
                check_paths(t, ACT_SCHEME_Q8_K, 16 * 6, 1024, 8, FILL_REAL, &seed);
                check_paths(t, ACT_SCHEME_Q8_K, 16 * 5 + 5, 2048 + 512, walks_gemm_tokens(t), FILL_RAW, &seed);
        }
        /*
         * the 32-element block types' GEMM (gemm_block.h), the same shapes:
         * every type with its activations, and Q4_0 with w4a8's
         */
        for (size_t ti = 0; ti < ARRAY_SIZE(all_types); ti++) {
                const enum ggml_type t = all_types[ti];
                if (ggml_type_block_elems(t) != 32)
                        continue;
                check_paths(t, quant_type_act_scheme(t), 16 * 5 + 5, 2048 + 512, 13, FILL_RAW, &seed);
                check_paths(t, quant_type_act_scheme(t), 16 * 6, 1024, 8, FILL_REAL, &seed);
                check_paths(t, quant_type_act_scheme(t), 16 * 5 + 5, 2048 + 512, walks_gemm_tokens(t), FILL_RAW,
                            &seed);
                /* the one-token kernels' two blocks a step, an odd last block alone */
                check_paths(t, quant_type_act_scheme(t), 21, 32 * 37, 2, FILL_RAW, &seed);
                check_paths(t, quant_type_act_scheme(t), 21, 32 * 37, 1, FILL_EXTREME, &seed);
        }
        check_paths(GGML_TYPE_Q4_0, ACT_SCHEME_TOKEN_I8, 21, 32 * 37, 2, FILL_RAW, &seed);
        /* the nibble types' four blocks a step, then a pair and a single block, on rows in streams (K >= 4096) */
        for (size_t ti = 0; ti < ARRAY_SIZE(quad_types); ti++) {
                const enum ggml_type t = quad_types[ti];
                check_paths(t, quant_type_act_scheme(t), 16 * 5 + 5, 4096 + 32 * 7, 3, FILL_RAW, &seed);
                check_paths(t, quant_type_act_scheme(t), 16 + 5, 4096 + 32 * 6, 2, FILL_EXTREME, &seed);
        }
        check_paths(GGML_TYPE_Q4_0, ACT_SCHEME_TOKEN_I8, 16 * 5 + 5, 4096 + 32 * 5, 3, FILL_RAW, &seed);
        /* Q8_0's rows in streams, two blocks a step and an odd last block */
        check_paths(GGML_TYPE_Q8_0, quant_type_act_scheme(GGML_TYPE_Q8_0), 16 * 5 + 5, 4096 + 32 * 7, 3, FILL_RAW,
                    &seed);
        check_paths(GGML_TYPE_Q4_0, ACT_SCHEME_TOKEN_I8, 16 * 5 + 5, 2048 + 512, 13, FILL_RAW, &seed);
        check_paths(GGML_TYPE_Q4_0, ACT_SCHEME_TOKEN_I8, 16 * 6, 1024, 8, FILL_REAL, &seed);
        /* the largest sums a block can give, in every path */
        for (size_t ti = 0; ti < ARRAY_SIZE(all_types); ti++)
                check_paths(all_types[ti], quant_type_act_scheme(all_types[ti]), 16 * 3 + 5, 1024 + 256, 7,
                            FILL_EXTREME, &seed);
        check_paths(GGML_TYPE_Q4_0, ACT_SCHEME_TOKEN_I8, 16 * 3 + 5, 1024 + 256, 7, FILL_EXTREME, &seed);
        /* w4a8: Q4_0 blocks times int8 activations with one scale per token */
        check_paths(GGML_TYPE_Q4_0, ACT_SCHEME_TOKEN_I8, 37, 512, 5, FILL_REAL, &seed);
        check_paths(GGML_TYPE_Q4_0, ACT_SCHEME_TOKEN_I8, 70, 2048, 17, FILL_RAW, &seed);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_dequantize_layouts),
                cmocka_unit_test(test_corrupt_scales),
                cmocka_unit_test(test_quantize_roundtrip),
                cmocka_unit_test(test_act_quant),
                cmocka_unit_test(test_kernel_paths),
        };
        int r = cmocka_run_group_tests(tests, NULL, NULL);

        printf("quantized kernels compared on:");
        for (int isa = KERNEL_ISA_SCALAR; isa <= KERNEL_ISA_AMX; isa++)
                if (isas_run & (1u << isa))
                        printf(" %s", kernels_isa_name(isa));
        printf("\n");
        return r;
}
