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
        const bool avx2 = kernels_isa() == KERNEL_ISA_AVX2;

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

/*
 * w8a8 tile of RB rows x TB tokens: |a| (unsigned) times sign(a)-adjusted w
 * with vpmaddubsw (no saturation: both sides are within [-127, 127]), pairs
 * widened with vpmaddwd, summed in int32.
 */
/* Adds the products over k in [k0, k1) (multiples of 32, or k1 == K with a scalar tail) to acc. */
AVX2_INLINE void tile_w8a8(const int8_t *w, int64_t K, int64_t k0, int64_t k1, const int RB, const int8_t *a,
                           const int8_t *aabs, const int TB, int64_t *acc, size_t ys)
{
        const __m256i ones = _mm256_set1_epi16(1);
        const int64_t kv = k0 + ((k1 - k0) & ~31);
        __m256i s[4][4];

        for (int i = 0; i < RB; i++)
                for (int j = 0; j < TB; j++)
                        s[i][j] = _mm256_setzero_si256();
        for (int64_t k = k0; k < kv; k += 32) {
                __m256i wv[4];
                for (int i = 0; i < RB; i++)
                        wv[i] = _mm256_loadu_si256((const __m256i *)(w + i * K + k));
                for (int j = 0; j < TB; j++) {
                        __m256i av = _mm256_loadu_si256((const __m256i *)(a + j * K + k));
                        __m256i aa = _mm256_loadu_si256((const __m256i *)(aabs + j * K + k));
                        for (int i = 0; i < RB; i++) {
                                __m256i p = _mm256_maddubs_epi16(aa, _mm256_sign_epi8(wv[i], av));
                                s[i][j] = _mm256_add_epi32(s[i][j], _mm256_madd_epi16(p, ones));
                        }
                }
        }
        for (int i = 0; i < RB; i++)
                for (int j = 0; j < TB; j++) {
                        int32_t v = hsum_i32(s[i][j]);
                        for (int64_t k = kv; k < k1; k++)
                                v += (int32_t)w[i * K + k] * a[j * K + k];
                        acc[j * ys + i] += v;
                }
}

/*
 * K is walked in slices of W8A8_KC so that the slice of activations (up to 8
 * tokens) and of weights (16 rows) stay in L1 while every tile uses them.
 * Inside a slice: tiles of 2 rows x 4 tokens while 4 tokens remain (each
 * weight load serves four tokens), then 4 rows x 1 token. Integer sums are
 * exact, so the slicing does not change any result.
 */
#define W8A8_KC 512

AVX2 static void acc_avx2_w8a8(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, int64_t *acc,
                               size_t ys, int64_t r0, int64_t r1)
{
        const int64_t K = w->cols, RBLK = 16;
        /* decoding (few tokens) is memory-bound: whole rows keep the prefetchers streaming */
        const int64_t KC = n_tok >= 4 ? W8A8_KC : K;
        const int8_t *W = w->data, *A = a->q8, *AA = a->q8abs;

        for (int64_t t = 0; t < n_tok; t++)
                memset(acc + t * ys, 0, sizeof(int64_t) * (r1 - r0));
        for (int64_t rb = r0; rb < r1; rb += RBLK) {
                int64_t re = MIN(rb + RBLK, r1);
                for (int64_t k0 = 0; k0 < K; k0 += KC) {
                        int64_t k1 = k0 + KC < K ? k0 + KC : K, t = 0;
                        for (; t + 4 <= n_tok; t += 4) {
                                int64_t r = rb;
                                for (; r + 2 <= re; r += 2)
                                        tile_w8a8(W + r * K, K, k0, k1, 2, A + t * K, AA + t * K, 4,
                                                  acc + t * ys + (r - r0), ys);
                                for (; r < re; r++)
                                        tile_w8a8(W + r * K, K, k0, k1, 1, A + t * K, AA + t * K, 4,
                                                  acc + t * ys + (r - r0), ys);
                        }
                        for (; t < n_tok; t++) {
                                int64_t r = rb;
                                for (; r + 4 <= re; r += 4)
                                        tile_w8a8(W + r * K, K, k0, k1, 4, A + t * K, AA + t * K, 1,
                                                  acc + t * ys + (r - r0), ys);
                                for (; r < re; r++)
                                        tile_w8a8(W + r * K, K, k0, k1, 1, A + t * K, AA + t * K, 1,
                                                  acc + t * ys + (r - r0), ys);
                        }
                }
        }
}

/*
 * w8a8 for a few tokens (the decode step of a batch of sequences): each
 * weight row is streamed from memory once, in order, and multiplied against
 * every token of a group of up to 8 while it is in registers. The sign goes
 * onto the activations, so one |w| (vpabsb) per row and step serves the
 * whole group and only q8 is read for the tokens (8 tokens of a 2048-wide
 * row fit in L1):
 *   |w| (unsigned) x sign(a, w) (signed), vpmaddubsw, then vpmaddwd by ones.
 * |w| <= 128 and |a| <= 127, so the pair sums (<= 32512) never saturate; the
 * int32 lanes are exact for K < 2^20 and their sum for K < 2^17 (the w8a8
 * bound everywhere in this file).
 */
#ifndef GEMV_PREFETCH
#define GEMV_PREFETCH 2048
#endif

/*
 * An empty asm that takes v in a register: the compiler may not reassociate
 * the sums across it (it would add the products of several steps first and
 * run out of registers).
 */
#define KEEP_IN_REGISTER(v) __asm__("" : "+x"(v))

/*
 * One token of the group; the accumulators are named variables (an array of
 * vectors ends up on the stack), and the unused ones fold away since TB is a
 * constant.
 */
#define ROW_STEP32(j, kk)                                                                                 \
        do {                                                                                              \
                if (TB > j) {                                                                             \
                        __m256i av = _mm256_loadu_si256((const __m256i *)(a + j * K + (kk)));             \
                        __m256i p = _mm256_maddubs_epi16(wa, _mm256_sign_epi8(av, wv));                   \
                        s##j = _mm256_add_epi32(s##j, _mm256_madd_epi16(p, ones));                        \
                        KEEP_IN_REGISTER(s##j);                                                           \
                }                                                                                         \
        } while (0)

#define ROW_STEP32_ALL(kk)                                                                                \
        do {                                                                                              \
                __m256i wv = _mm256_loadu_si256((const __m256i *)(w + (kk)));                             \
                __m256i wa = _mm256_abs_epi8(wv);                                                         \
                ROW_STEP32(0, kk);                                                                        \
                ROW_STEP32(1, kk);                                                                        \
                ROW_STEP32(2, kk);                                                                        \
                ROW_STEP32(3, kk);                                                                        \
                ROW_STEP32(4, kk);                                                                        \
                ROW_STEP32(5, kk);                                                                        \
                ROW_STEP32(6, kk);                                                                        \
                ROW_STEP32(7, kk);                                                                        \
        } while (0)

/* out[j] = dot(w, a[j]) for j < TB <= 8, a[j] at a + j * K. */
AVX2_INLINE void tile_w8a8_row(const int8_t *w, int64_t K, const int8_t *a, const int TB, int32_t *out)
{
        const __m256i ones = _mm256_set1_epi16(1);
        const int64_t k64 = K & ~(int64_t)63, k32 = K & ~(int64_t)31;
        __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
        int64_t k = 0;

        for (; k < k64; k += 64) {
                _mm_prefetch((const char *)(w + k + GEMV_PREFETCH), _MM_HINT_T0);
                ROW_STEP32_ALL(k);
                ROW_STEP32_ALL(k + 32);
        }
        for (; k < k32; k += 32)
                ROW_STEP32_ALL(k);
        const __m256i sv[8] = { s0, s1, s2, s3, s4, s5, s6, s7 };
        for (int j = 0; j < TB; j++) {
                int32_t v = hsum_i32(sv[j]);
                for (int64_t kk = k32; kk < K; kk++)
                        v += (int32_t)w[kk] * a[j * K + kk];
                out[j] = v;
        }
}

/* Rows [r0, r1) against TB tokens, dequantized into y. */
#define DEFINE_GEMM_W8A8_FEW(TB)                                                                              \
        AVX2 static void gemm_w8a8_few_##TB(const int8_t *W, int64_t K, const int8_t *A, const float *as,     \
                                            const float *ws, float *y, size_t ys, int64_t r0, int64_t r1)     \
        {                                                                                                     \
                int32_t acc[8];                                                                               \
                for (int64_t r = r0; r < r1; r++) {                                                           \
                        tile_w8a8_row(W + r * K, K, A, TB, acc);                                              \
                        for (int j = 0; j < TB; j++)                                                          \
                                y[j * ys + r] = ((float)acc[j] * as[j]) * ws[r];                              \
                }                                                                                             \
        }

DEFINE_GEMM_W8A8_FEW(1)
DEFINE_GEMM_W8A8_FEW(2)
DEFINE_GEMM_W8A8_FEW(3)
DEFINE_GEMM_W8A8_FEW(4)
DEFINE_GEMM_W8A8_FEW(5)
DEFINE_GEMM_W8A8_FEW(6)
DEFINE_GEMM_W8A8_FEW(7)
DEFINE_GEMM_W8A8_FEW(8)

typedef void (*gemm_few_fn)(const int8_t *W, int64_t K, const int8_t *A, const float *as, const float *ws, float *y,
                            size_t ys, int64_t r0, int64_t r1);
static const gemm_few_fn gemm_w8a8_few[9] = {
        NULL, gemm_w8a8_few_1, gemm_w8a8_few_2, gemm_w8a8_few_3, gemm_w8a8_few_4,
        gemm_w8a8_few_5, gemm_w8a8_few_6, gemm_w8a8_few_7, gemm_w8a8_few_8,
};

/*
 * Up to W8A8_FEW_MAX tokens: blocks of rows small enough to stay in L1 are
 * run against each group of (at most 8) tokens in turn, so the weights are
 * read from memory once whatever the number of tokens.
 */
#define W8A8_FEW_MAX 16
#ifndef W8A8_FEW_MIN
#define W8A8_FEW_MIN 1
#endif
#define W8A8_FEW_BLOCK_BYTES 8192

static void gemm_w8a8_few_tokens(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, float *y,
                                 size_t ys, int64_t r0, int64_t r1)
{
        const int64_t K = w->cols;
        const int64_t blk = n_tok <= 8 ? r1 - r0 : MAX(1, W8A8_FEW_BLOCK_BYTES / K);
        const int8_t *W = w->data;

        for (int64_t b0 = r0; b0 < r1; b0 += blk) {
                int64_t b1 = MIN(b0 + blk, r1);
                for (int64_t t0 = 0; t0 < n_tok; t0 += 8) {
                        int64_t nt = MIN(8, n_tok - t0);
                        gemm_w8a8_few[nt](W, K, a->q8 + t0 * K, a->scale + t0, w->scale, y + t0 * ys, ys, b0, b1);
                }
        }
}

/* w8a16: sign-extended weights times int16 activations with vpmaddwd; int32 lanes flushed to int64. */
AVX2_INLINE void tile_w8a16(const int8_t *w, int64_t K, const int RB, const int16_t *a, const int TB, int64_t *acc,
                            size_t ys)
{
        const int64_t K16 = K & ~15;
        /* 128 steps x 2 products per lane x 32767 x 127 < 2^31 */
        const int64_t FLUSH = 128 * 16;
        int64_t tot[4][4] = {};

        for (int64_t k0 = 0; k0 < K16; k0 += FLUSH) {
                const int64_t k1 = MIN(k0 + FLUSH, K16);
                __m256i s[4][4];
                for (int i = 0; i < RB; i++)
                        for (int j = 0; j < TB; j++)
                                s[i][j] = _mm256_setzero_si256();
                for (int64_t k = k0; k < k1; k += 16) {
                        __m256i av[4];
                        for (int j = 0; j < TB; j++)
                                av[j] = _mm256_loadu_si256((const __m256i *)(a + j * K + k));
                        for (int i = 0; i < RB; i++) {
                                __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + i * K + k)));
                                for (int j = 0; j < TB; j++)
                                        s[i][j] = _mm256_add_epi32(s[i][j], _mm256_madd_epi16(wv, av[j]));
                        }
                }
                /* lanes may each be near 2^30: widen before summing them */
                for (int i = 0; i < RB; i++)
                        for (int j = 0; j < TB; j++) {
                                int32_t lanes[8];
                                _mm256_storeu_si256((__m256i *)lanes, s[i][j]);
                                for (int l = 0; l < 8; l++)
                                        tot[i][j] += lanes[l];
                        }
        }
        for (int i = 0; i < RB; i++)
                for (int j = 0; j < TB; j++) {
                        int64_t v = tot[i][j];
                        for (int64_t k = K16; k < K; k++)
                                v += (int32_t)w[i * K + k] * a[j * K + k];
                        acc[j * ys + i] = v;
                }
}

#define DEFINE_ACC_AVX2(kind, atype, afield)                                                              \
        AVX2 static void acc_avx2_##kind(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, \
                                         int64_t *acc, size_t ys, int64_t r0, int64_t r1)                 \
        {                                                                                                 \
                const int64_t K = w->cols, RBLK = 16;                                                     \
                const int8_t *W = w->data;                                                                \
                const atype *A = a->afield;                                                               \
                for (int64_t rb = r0; rb < r1; rb += RBLK) {                                              \
                        int64_t re = MIN(rb + RBLK, r1), t = 0;                                           \
                        for (; t + 2 <= n_tok; t += 2) {                                                  \
                                int64_t r = rb;                                                           \
                                for (; r + 4 <= re; r += 4)                                               \
                                        tile_##kind(W + r * K, K, 4, A + t * K, 2, acc + t * ys + (r - r0), ys); \
                                for (; r < re; r++)                                                       \
                                        tile_##kind(W + r * K, K, 1, A + t * K, 2, acc + t * ys + (r - r0), ys); \
                        }                                                                                 \
                        for (; t < n_tok; t++) {                                                          \
                                int64_t r = rb;                                                           \
                                for (; r + 4 <= re; r += 4)                                               \
                                        tile_##kind(W + r * K, K, 4, A + t * K, 1, acc + t * ys + (r - r0), ys); \
                                for (; r < re; r++)                                                       \
                                        tile_##kind(W + r * K, K, 1, A + t * K, 1, acc + t * ys + (r - r0), ys); \
                        }                                                                                 \
                }                                                                                         \
        }

DEFINE_ACC_AVX2(w8a16, int16_t, q16)

static void acc_dispatch(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, int64_t *acc, size_t ys,
                         int64_t r0, int64_t r1, int w8a16)
{
        if (kernels_isa() == KERNEL_ISA_AVX2) {
                if (w8a16)
                        acc_avx2_w8a16(w, a, n_tok, acc, ys, r0, r1);
                else
                        acc_avx2_w8a8(w, a, n_tok, acc, ys, r0, r1);
                return;
        }
        acc_scalar(w, a, n_tok, acc, ys, r0, r1, w8a16);
}

#define ACC_CHUNK_ROWS 64

void matmul_int8_rows(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, float *y, size_t ys,
                      int64_t r0, int64_t r1)
{
        /* exact sums for a chunk of rows x a block of tokens, then dequantize */
        int64_t acc[ACC_CHUNK_ROWS * 8];
        const int w8a16 = a->prec == NPU_PRECISION_W8A16;

        if (!w8a16 && n_tok >= W8A8_FEW_MIN && n_tok <= W8A8_FEW_MAX && kernels_isa() == KERNEL_ISA_AVX2) {
                gemm_w8a8_few_tokens(w, a, n_tok, y, ys, r0, r1);
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
                        acc_dispatch(w, &sub, nt, acc, c1 - c0, c0, c1, w8a16);
                        for (int64_t t = 0; t < nt; t++)
                                for (int64_t r = c0; r < c1; r++)
                                        y[(t0 + t) * ys + r] = ((float)acc[t * (c1 - c0) + (r - c0)] *
                                                                a->scale[t0 + t]) * w->scale[r];
                }
        }
}
