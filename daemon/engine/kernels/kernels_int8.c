/* SPDX-License-Identifier: MIT */
#include <immintrin.h>
#include <math.h>

#include "gemm_int8.h"
#include "kernels.h"
#include "quant.h"

int act_q_alloc(struct act_q *a, int32_t rows, int64_t cols)
{
        *a = (struct act_q) { .cap_rows = rows, .cap_cols = cols };
        /*
         * padded by 64 bytes so SIMD loads of a ragged tail stay inside, and
         * on cache lines: a tile row or vector loaded across two lines costs
         * both (the AMX GEMM, tinyllama's up projection, one thread: 1.9
         * against 2.4 T int8 ops/s with q8 16 bytes off)
         */
        a->q8 = calloc_lines((size_t)rows * cols + 64);
        a->q16 = calloc_lines(((size_t)rows * cols + 32) * 2);
        a->pk = calloc_lines(gemm_act_bytes(rows, cols) + 64);
        a->scale = calloc(rows, sizeof(float));
        if (!a->q8 || !a->q16 || !a->pk || !a->scale) {
                act_q_free(a);
                return -ENOMEM;
        }
        return 0;
}

void act_q_free(struct act_q *a)
{
        free(a->q8);
        free(a->q16);
        free(a->pk);
        free(a->scale);
        *a = (struct act_q) {};
}

/* One value, exactly as npu_ref_quant_one: divide, NaN to 0, clamp, round half away from zero. */
static inline int32_t quant_one(float x, float scale, float qmax)
{
        float v = x / scale;
        if (v != v)
                return 0;
        v = v > qmax ? qmax : v < -qmax ? -qmax : v;
        return (int32_t)roundf(v);
}

/* --- activation quantization --- */

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))

static float row_absmax_scalar(const float *x, int64_t cols)
{
        float amax = 0;
        for (int64_t k = 0; k < cols; k++) {
                float v = fabsf(x[k]);
                if (v > amax)
                        amax = v;
        }
        return amax;
}

/* The same maximum: NaN lanes never win (maxps returns its second operand on NaN), and max is order-free. */
AVX2 static float row_absmax_avx2(const float *x, int64_t cols)
{
        const __m256 sign = _mm256_set1_ps(-0.0f);
        __m256 m0 = _mm256_setzero_ps(), m1 = m0;
        int64_t k = 0;
        for (; k + 16 <= cols; k += 16) {
                m0 = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)), m0);
                m1 = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + k + 8)), m1);
        }
        float lanes[8], amax = 0;
        _mm256_storeu_ps(lanes, _mm256_max_ps(m0, m1));
        for (int l = 0; l < 8; l++)
                if (lanes[l] > amax)
                        amax = lanes[l];
        float tail = row_absmax_scalar(x + k, cols - k);
        return tail > amax ? tail : amax;
}

/*
 * quant_one on eight lanes, operation for operation: an IEEE division, NaN
 * to 0, clamp, then round half away from zero as trunc plus the sign when
 * the (exact) remainder reaches 0.5.
 */
AVX2_INLINE __m256i quant8(__m256 x, __m256 scale, __m256 qmax)
{
        const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
        __m256 v = _mm256_div_ps(x, scale);
        v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
        v = _mm256_max_ps(_mm256_min_ps(v, qmax), _mm256_xor_ps(qmax, sign));
        __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        __m256 d = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
        __m256 step = _mm256_and_ps(_mm256_cmp_ps(d, half, _CMP_GE_OQ), _mm256_or_ps(one, _mm256_and_ps(v, sign)));
        return _mm256_cvttps_epi32(_mm256_add_ps(t, step));
}

AVX2 static void quant_row_i8_avx2(const float *x, int64_t cols, float scale, int8_t *q)
{
        const __m256 sv = _mm256_set1_ps(scale), qmax = _mm256_set1_ps(127.0f);
        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        int64_t k = 0;
        for (; k + 32 <= cols; k += 32) {
                __m256i a = quant8(_mm256_loadu_ps(x + k), sv, qmax);
                __m256i b = quant8(_mm256_loadu_ps(x + k + 8), sv, qmax);
                __m256i c = quant8(_mm256_loadu_ps(x + k + 16), sv, qmax);
                __m256i d = quant8(_mm256_loadu_ps(x + k + 24), sv, qmax);
                /* in range, so the saturating packs are plain narrowing; they interleave 128-bit lanes */
                __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
                p = _mm256_permutevar8x32_epi32(p, order);
                _mm256_storeu_si256((__m256i *)(q + k), p);
        }
        for (; k < cols; k++)
                q[k] = (int8_t)quant_one(x[k], scale, 127.0f);
}

AVX2 static void quant_row_i16_avx2(const float *x, int64_t cols, float scale, int16_t *q)
{
        const __m256 sv = _mm256_set1_ps(scale), qmax = _mm256_set1_ps(32767.0f);
        int64_t k = 0;
        for (; k + 16 <= cols; k += 16) {
                __m256i a = quant8(_mm256_loadu_ps(x + k), sv, qmax);
                __m256i b = quant8(_mm256_loadu_ps(x + k + 8), sv, qmax);
                __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xd8);
                _mm256_storeu_si256((__m256i *)(q + k), p);
        }
        for (; k < cols; k++)
                q[k] = (int16_t)quant_one(x[k], scale, 32767.0f);
}

/*
 * Token t's row into the packed form (gemm_int8.h): q8 + 128 as u8, or int16 from q8 or q16.
 * Whole groups of 4 columns first (q8 + 128 is q8 with its top bit flipped), then the
 * zero-padded last group.
 */
static void pack_row(struct act_q *a, int64_t t, const int8_t *q8, const int16_t *q16, bool u8)
{
        const int64_t K = a->cols, k4 = K & ~(int64_t)3;
        const int size = u8 ? 1 : 2;
        uint8_t *out = a->pk + gemm_act_offset(K, t, 0, size);
        const size_t step = GEMM_TOK_GROUP * 4 * size;
        int64_t k = 0;

        if (u8)
                for (; k < k4; k += 4, out += step) {
                        uint32_t v;
                        memcpy(&v, q8 + k, 4);
                        v ^= 0x80808080u;
                        memcpy(out, &v, 4);
                }
        else if (q16)
                for (; k < k4; k += 4, out += step)
                        memcpy(out, q16 + k, 8);
        else
                for (; k < k4; k += 4, out += step) {
                        const int16_t v[4] = { q8[k], q8[k + 1], q8[k + 2], q8[k + 3] };
                        memcpy(out, v, 8);
                }
        if (k == K)
                return;
        if (u8) {
                uint8_t v[4] = {};
                for (int64_t c = 0; c < K - k; c++)
                        v[c] = (uint8_t)(q8[k + c] + 128);
                memcpy(out, v, 4);
        } else {
                int16_t v[4] = {};
                for (int64_t c = 0; c < K - k; c++)
                        v[c] = q16 ? q16[k + c] : q8[k + c];
                memcpy(out, v, 8);
        }
}

/*
 * One row by the device's QUANT_I16 rule (q16 given) or QUANT_I8 (q8): its
 * values into the one given, its scale returned.
 */
static float quant_row(const float *x, int64_t cols, bool avx2, int8_t *q8, int16_t *q16)
{
        const float qmax = q16 ? 32767.0f : 127.0f;
        const float amax = avx2 ? row_absmax_avx2(x, cols) : row_absmax_scalar(x, cols);
        const float scale = amax == 0.0f ? 1.0f : amax / qmax;

        if (avx2 && q16)
                quant_row_i16_avx2(x, cols, scale, q16);
        else if (avx2)
                quant_row_i8_avx2(x, cols, scale, q8);
        else if (q16)
                for (int64_t k = 0; k < cols; k++)
                        q16[k] = (int16_t)quant_one(x[k], scale, qmax);
        else
                for (int64_t k = 0; k < cols; k++)
                        q8[k] = (int8_t)quant_one(x[k], scale, qmax);
        return scale;
}

void act_quantize_rows(struct act_q *a, enum npu_precision p, const float *x, int64_t cols, int64_t t0, int64_t t1)
{
        const enum kernel_isa isa = kernels_isa();
        const bool avx2 = isa >= KERNEL_ISA_AVX2, w8a16 = p == NPU_PRECISION_W8A16;

        /* rows as they are, and the packed form this cpu's GEMM reads (gemm_int8.h) */
        /* without a packed buffer (made elsewhere, as the npu back end's), rows only: the portable GEMM reads them */
        unsigned forms = w8a16 ? ACT_Q16 : ACT_Q8;
        if (a->pk && isa >= KERNEL_ISA_AVX512_VNNI && !w8a16)
                forms |= ACT_U8P;
        else if (a->pk && avx2)
                forms |= ACT_Q16P;
        /*
         * Threads quantize disjoint rows of one act_q at once: each stores the
         * same header, whole, and decides its rows' forms from its own copy.
         * (Building a->forms in two steps let a thread that read it between
         * them skip packing its rows: the GEMM then read stale packed rows.)
         */
        a->cols = cols;
        a->prec = p;
        a->forms = forms;
        for (int64_t t = t0; t < t1; t++) {
                const float *xt = x + t * cols;
                if (w8a16) {
                        int16_t *q = a->q16 + t * cols;
                        a->scale[t] = quant_row(xt, cols, avx2, NULL, q);
                        if (forms & ACT_Q16P)
                                pack_row(a, t, NULL, q, false);
                } else {
                        int8_t *q = a->q8 + t * cols;
                        a->scale[t] = quant_row(xt, cols, avx2, q, NULL);
                        if (forms & (ACT_U8P | ACT_Q16P))
                                pack_row(a, t, q, NULL, forms & ACT_U8P);
                }
        }
}

void quant_rows_i8(const float *x, int8_t *q, float *scale, int64_t k, int64_t rows)
{
        const bool avx2 = kernels_isa() >= KERNEL_ISA_AVX2;

        for (int64_t m = 0; m < rows; m++)
                scale[m] = quant_row(x + m * k, k, avx2, q + m * k, NULL);
}

void quantize_weight_rows(const float *w, int64_t rows, int64_t cols, int8_t *q, float *scale)
{
        for (int64_t r = 0; r < rows; r++) {
                const float *wr = w + r * cols;
                float amax = 0;
                for (int64_t k = 0; k < cols; k++)
                        amax = fmaxf(amax, fabsf(wr[k]));
                float inv = amax > 0 ? 127.0f / amax : 0;
                scale[r] = amax / 127.0f;
                for (int64_t k = 0; k < cols; k++)
                        q[r * cols + k] = (int8_t)fmaxf(-127.0f, fminf(127.0f, roundf(wr[k] * inv)));
        }
}

void matmul_int8_rows(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, float *y, size_t ys,
                      int64_t r0, int64_t r1)
{
        gemm_i8(w, a, n_tok, y, ys, r0, r1);
}
