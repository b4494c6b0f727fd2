/* SPDX-License-Identifier: MIT */
#include <immintrin.h>
#include <math.h>

#include "kernels.h"
#include "quant.h"

int act_q_alloc(struct act_q *a, int32_t rows, int64_t cols)
{
        *a = (struct act_q) { .cap_rows = rows, .cap_cols = cols };
        /* padded by 64 bytes so SIMD loads of a ragged tail stay inside */
        a->q8 = calloc((size_t)rows * cols + 64, 1);
        a->q8abs = calloc((size_t)rows * cols + 64, 1);
        a->q16 = calloc((size_t)rows * cols + 32, 2);
        a->scale = calloc(rows, sizeof(float));
        if (!a->q8 || !a->q8abs || !a->q16 || !a->scale) {
                act_q_free(a);
                return -ENOMEM;
        }
        return 0;
}

void act_q_free(struct act_q *a)
{
        free(a->q8);
        free(a->q8abs);
        free(a->q16);
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

AVX2 static void quant_row_i8_avx2(const float *x, int64_t cols, float scale, int8_t *q, int8_t *qa)
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
                _mm256_storeu_si256((__m256i *)(qa + k), _mm256_abs_epi8(p));
        }
        for (; k < cols; k++) {
                q[k] = (int8_t)quant_one(x[k], scale, 127.0f);
                qa[k] = (int8_t)(q[k] < 0 ? -q[k] : q[k]);
        }
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

void act_quantize_rows(struct act_q *a, enum npu_precision p, const float *x, int64_t cols, int64_t t0, int64_t t1)
{
        const float qmax = p == NPU_PRECISION_W8A16 ? 32767.0f : 127.0f;
        const bool avx2 = kernels_isa() >= KERNEL_ISA_AVX2;

        a->cols = cols;
        a->prec = p;
        for (int64_t t = t0; t < t1; t++) {
                const float *xt = x + t * cols;
                float amax = avx2 ? row_absmax_avx2(xt, cols) : row_absmax_scalar(xt, cols);
                float scale = amax == 0.0f ? 1.0f : amax / qmax;
                a->scale[t] = scale;
                if (p == NPU_PRECISION_W8A16) {
                        int16_t *q = a->q16 + t * cols;
                        if (avx2) {
                                quant_row_i16_avx2(xt, cols, scale, q);
                                continue;
                        }
                        for (int64_t k = 0; k < cols; k++)
                                q[k] = (int16_t)quant_one(xt[k], scale, qmax);
                } else {
                        int8_t *q = a->q8 + t * cols, *qa = a->q8abs + t * cols;
                        if (avx2) {
                                quant_row_i8_avx2(xt, cols, scale, q, qa);
                                continue;
                        }
                        for (int64_t k = 0; k < cols; k++) {
                                q[k] = (int8_t)quant_one(xt[k], scale, qmax);
                                qa[k] = (int8_t)(q[k] < 0 ? -q[k] : q[k]);
                        }
                }
        }
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

/* --- portable C --- */

static int64_t dot_i8_scalar(const int8_t *w, const int8_t *a, int64_t n)
{
        int32_t s = 0;
        for (int64_t k = 0; k < n; k++)
                s += (int32_t)w[k] * a[k];
        return s;
}

static int64_t dot_i16_scalar(const int8_t *w, const int16_t *a, int64_t n)
{
        int64_t s = 0;
        for (int64_t k = 0; k < n; k++)
                s += (int32_t)w[k] * a[k];
        return s;
}

static void acc_scalar(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, int64_t *acc,
                       size_t ys, int64_t r0, int64_t r1, int w8a16)
{
        const int64_t K = w->cols;
        for (int64_t r = r0; r < r1; r++) {
                const int8_t *wr = (const int8_t *)w->data + r * K;
                for (int64_t t = 0; t < n_tok; t++)
                        acc[t * ys + (r - r0)] = w8a16 ? dot_i16_scalar(wr, a->q16 + t * K, K)
                                                       : dot_i8_scalar(wr, a->q8 + t * K, K);
        }
}

/* --- AVX2 --- */

AVX2_INLINE int32_t hsum_i32(__m256i v)
{
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
        return _mm_cvtsi128_si32(s);
}

/* --- x86: AVX2, and AVX-512 VNNI (one vpdpbusd or vpdpwssd for the two-instruction multiply-add) --- */

#define W8A8_KC 512


/* rows of the one-token kernel (tile_w8a8_rows) */
#define GEMV_RB 8
#define GEMV_RB_MIN_K 4096
_Static_assert(GEMV_RB <= 8, "the few-token kernels keep 8 sums");
#ifndef GEMV_PREFETCH
#define GEMV_PREFETCH 2048
#endif

/*
 * An empty asm that takes v in a register: the compiler may not reassociate
 * the sums across it (it would add the products of several steps first and
 * run out of registers).
 */
#define KEEP_IN_REGISTER(v) __asm__("" : "+x"(v))

#define W8A8_FEW_MAX 16
#ifndef W8A8_FEW_MIN
#define W8A8_FEW_MIN 1
#endif
#define W8A8_FEW_BLOCK_BYTES 8192

typedef void (*gemm_few_fn)(const int8_t *W, int64_t K, const int8_t *A, const float *as, const float *ws, float *y,
                            size_t ys, int64_t r0, int64_t r1);

#define SIMD_CAT2(a, b) a##_##b
#define SIMD_CAT(a, b) SIMD_CAT2(a, b)
#define SIMD(name) SIMD_CAT(name, SIMD_ISA)

#define SIMD_ISA avx2
#define SIMD_FN AVX2
#define SIMD_INLINE AVX2_INLINE
#define MAC_U8S8(s, u, v) _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(u, v), _mm256_set1_epi16(1)))
#define MAC_S16(s, w, a) _mm256_add_epi32(s, _mm256_madd_epi16(w, a))
#include "kernels_int8_x86.h"
#undef SIMD_ISA
#undef SIMD_FN
#undef SIMD_INLINE
#undef MAC_U8S8
#undef MAC_S16

#define VNNI_TARGET "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni"
#define SIMD_ISA vnni
#define SIMD_FN __attribute__((target(VNNI_TARGET)))
#define SIMD_INLINE static inline __attribute__((always_inline, target(VNNI_TARGET)))
#define MAC_U8S8(s, u, v) _mm256_dpbusd_epi32(s, u, v)
#define MAC_S16(s, w, a) _mm256_dpwssd_epi32(s, w, a)
#include "kernels_int8_x86.h"
#undef SIMD_ISA
#undef SIMD_FN
#undef SIMD_INLINE
#undef MAC_U8S8
#undef MAC_S16

/* Each instruction set's copy of the x86 kernels. */
struct int8_x86_kernels {
        /* exact sums, [w8a16] */
        void (*acc[2])(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, int64_t *acc, size_t ys,
                       int64_t r0, int64_t r1);
        /* w8a8, up to W8A8_FEW_MAX tokens, dequantized */
        void (*few_tokens)(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, float *y, size_t ys,
                           int64_t r0, int64_t r1);
};

static const struct int8_x86_kernels int8_x86[] = {
        [KERNEL_ISA_AVX2] = { { acc_w8a8_avx2, acc_w8a16_avx2 }, gemm_w8a8_few_tokens_avx2 },
        [KERNEL_ISA_AVX512_VNNI] = { { acc_w8a8_vnni, acc_w8a16_vnni }, gemm_w8a8_few_tokens_vnni },
};

/* This cpu's x86 kernels, or NULL for portable C. */
static const struct int8_x86_kernels *int8_x86_kernels(void)
{
        enum kernel_isa isa = kernels_isa();

        return isa >= KERNEL_ISA_AVX2 ? &int8_x86[isa] : NULL;
}

#define ACC_CHUNK_ROWS 64

void matmul_int8_rows(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, float *y, size_t ys,
                      int64_t r0, int64_t r1)
{
        /* exact sums for a chunk of rows x a block of tokens, then dequantize */
        int64_t acc[ACC_CHUNK_ROWS * 8];
        const int w8a16 = a->prec == NPU_PRECISION_W8A16;
        const struct int8_x86_kernels *x86 = int8_x86_kernels();

        if (x86 && !w8a16 && n_tok >= W8A8_FEW_MIN && n_tok <= W8A8_FEW_MAX) {
                x86->few_tokens(w, a, n_tok, y, ys, r0, r1);
                return;
        }

        for (int64_t c0 = r0; c0 < r1; c0 += ACC_CHUNK_ROWS) {
                int64_t c1 = MIN(c0 + ACC_CHUNK_ROWS, r1);
                for (int64_t t0 = 0; t0 < n_tok; t0 += 8) {
                        int64_t nt = MIN(8, n_tok - t0);
                        struct act_q sub = *a;
                        sub.q8 = a->q8 + t0 * a->cols;
                        sub.q8abs = a->q8abs + t0 * a->cols;
                        sub.q16 = a->q16 + t0 * a->cols;
                        if (x86)
                                x86->acc[w8a16](w, &sub, nt, acc, c1 - c0, c0, c1);
                        else
                                acc_scalar(w, &sub, nt, acc, c1 - c0, c0, c1, w8a16);
                        for (int64_t t = 0; t < nt; t++)
                                for (int64_t r = c0; r < c1; r++)
                                        y[(t0 + t) * ys + r] = ((float)acc[t * (c1 - c0) + (r - c0)] *
                                                                a->scale[t0 + t]) * w->scale[r];
                }
        }
}
