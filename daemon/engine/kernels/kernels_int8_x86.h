/* SPDX-License-Identifier: MIT */
/*
 * The x86 int8 kernels, included once per instruction set by
 * kernels_int8.c, which defines before each inclusion:
 *   SIMD(name)        the name of this set's copy (name_avx2, name_vnni)
 *   SIMD_FN, SIMD_INLINE function attributes: the target
 *   MAC_U8S8(s, u, v) s + the sums of four products of unsigned u and
 *                     signed v bytes, per int32 lane
 *   MAC_S16(s, w, a)  s + the sums of two int16 products, per int32 lane
 * Both are exact in every set (no saturation for the operands used here),
 * so every copy gives the same integers.
 */

/*
 * w8a8 tile of RB rows x TB tokens: |a| (unsigned) times sign(a)-adjusted w
 * with vpmaddubsw (no saturation: both sides are within [-127, 127]), pairs
 * widened with vpmaddwd, summed in int32.
 */
/* Adds the products over k in [k0, k1) (multiples of 32, or k1 == K with a scalar tail) to acc. */
SIMD_INLINE void SIMD(tile_w8a8)(const int8_t *w, int64_t K, int64_t k0, int64_t k1, const int RB, const int8_t *a,
                                 const int8_t *aabs, const int TB, int64_t *acc, size_t ys)
{
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
                                s[i][j] = MAC_U8S8(s[i][j], aa, _mm256_sign_epi8(wv[i], av));
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

SIMD_FN static void SIMD(acc_w8a8)(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, int64_t *acc,
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
                                        SIMD(tile_w8a8)(W + r * K, K, k0, k1, 2, A + t * K, AA + t * K, 4,
                                                  acc + t * ys + (r - r0), ys);
                                for (; r < re; r++)
                                        SIMD(tile_w8a8)(W + r * K, K, k0, k1, 1, A + t * K, AA + t * K, 4,
                                                  acc + t * ys + (r - r0), ys);
                        }
                        for (; t < n_tok; t++) {
                                int64_t r = rb;
                                for (; r + 4 <= re; r += 4)
                                        SIMD(tile_w8a8)(W + r * K, K, k0, k1, 4, A + t * K, AA + t * K, 1,
                                                  acc + t * ys + (r - r0), ys);
                                for (; r < re; r++)
                                        SIMD(tile_w8a8)(W + r * K, K, k0, k1, 1, A + t * K, AA + t * K, 1,
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


/*
 * One token of the group; the accumulators are named variables (an array of
 * vectors ends up on the stack), and the unused ones fold away since TB is a
 * constant.
 */
#define ROW_STEP32(j, kk)                                                                                     \
        do {                                                                                                  \
                if (TB > j) {                                                                                 \
                        __m256i av = _mm256_loadu_si256((const __m256i *)(a + j * K + (kk)));                 \
                        s##j = MAC_U8S8(s##j, wa, _mm256_sign_epi8(av, wv));                                  \
                        KEEP_IN_REGISTER(s##j);                                                               \
                }                                                                                             \
        } while (0)

#define ROW_STEP32_ALL(kk)                                                                                    \
        do {                                                                                                  \
                __m256i wv = _mm256_loadu_si256((const __m256i *)(w + (kk)));                                 \
                __m256i wa = _mm256_abs_epi8(wv);                                                             \
                ROW_STEP32(0, kk);                                                                            \
                ROW_STEP32(1, kk);                                                                            \
                ROW_STEP32(2, kk);                                                                            \
                ROW_STEP32(3, kk);                                                                            \
                ROW_STEP32(4, kk);                                                                            \
                ROW_STEP32(5, kk);                                                                            \
                ROW_STEP32(6, kk);                                                                            \
                ROW_STEP32(7, kk);                                                                            \
        } while (0)

/* out[j] = dot(w, a[j]) for j < TB <= 8, a[j] at a + j * K. */
SIMD_INLINE void SIMD(tile_w8a8_row)(const int8_t *w, int64_t K, const int8_t *a, const int TB, int32_t *out)
{
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

/*
 * One token against GEMV_RB rows at once: that many weight streams in
 * flight (one stream per core leaves memory bandwidth unused: +10 to 17 %
 * tokens/s on the 7B shape, one thread), and one load of the activations
 * serves them. Only for rows of GEMV_RB_MIN_K bytes or more: shorter rows
 * make streams too short for the prefetchers, and one row after the other
 * (rows are contiguous) is then the better stream (TinyLlama's 2048-byte
 * rows decode 10 to 20 % slower in eight streams).
 */
SIMD_INLINE void SIMD(tile_w8a8_rows)(const int8_t *w, int64_t K, const int8_t *a, int32_t *out)
{
        const int64_t k32 = K & ~(int64_t)31;
        __m256i s[GEMV_RB];

        for (int i = 0; i < GEMV_RB; i++)
                s[i] = _mm256_setzero_si256();
        for (int64_t k = 0; k < k32; k += 32) {
                __m256i av = _mm256_loadu_si256((const __m256i *)(a + k));
                for (int i = 0; i < GEMV_RB; i++) {
                        __m256i wv = _mm256_loadu_si256((const __m256i *)(w + i * K + k));
                        s[i] = MAC_U8S8(s[i], _mm256_abs_epi8(wv), _mm256_sign_epi8(av, wv));
                }
        }
        for (int i = 0; i < GEMV_RB; i++) {
                int32_t v = hsum_i32(s[i]);
                for (int64_t kk = k32; kk < K; kk++)
                        v += (int32_t)w[i * K + kk] * a[kk];
                out[i] = v;
        }
}

/* Rows [r0, r1) against TB tokens, dequantized into y. */
#define DEFINE_GEMM_W8A8_FEW(TB)                                                                              \
        SIMD_FN static void SIMD(gemm_w8a8_few_##TB)(const int8_t *W, int64_t K, const int8_t *A,             \
                                                     const float *as, const float *ws, float *y, size_t ys,   \
                                                     int64_t r0, int64_t r1)                                  \
        {                                                                                                     \
                int32_t acc[8];                                                                               \
                int64_t r = r0;                                                                               \
                for (; TB == 1 && K >= GEMV_RB_MIN_K && r + GEMV_RB <= r1; r += GEMV_RB) {                    \
                        SIMD(tile_w8a8_rows)(W + r * K, K, A, acc);                                           \
                        for (int i = 0; i < GEMV_RB; i++)                                                     \
                                y[r + i] = ((float)acc[i] * as[0]) * ws[r + i];                               \
                }                                                                                             \
                for (; r < r1; r++) {                                                                         \
                        SIMD(tile_w8a8_row)(W + r * K, K, A, TB, acc);                                        \
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

static const gemm_few_fn SIMD(gemm_w8a8_few)[9] = {
        NULL, SIMD(gemm_w8a8_few_1), SIMD(gemm_w8a8_few_2), SIMD(gemm_w8a8_few_3), SIMD(gemm_w8a8_few_4),
        SIMD(gemm_w8a8_few_5), SIMD(gemm_w8a8_few_6), SIMD(gemm_w8a8_few_7), SIMD(gemm_w8a8_few_8),
};

/*
 * Up to W8A8_FEW_MAX tokens: blocks of rows small enough to stay in L1 are
 * run against each group of (at most 8) tokens in turn, so the weights are
 * read from memory once whatever the number of tokens.
 */
static void SIMD(gemm_w8a8_few_tokens)(const struct npu_weight *w, const struct act_q *a, int64_t n_tok,
                                       float *y, size_t ys, int64_t r0, int64_t r1)
{
        const int64_t K = w->cols;
        const int64_t blk = n_tok <= 8 ? r1 - r0 : MAX(1, W8A8_FEW_BLOCK_BYTES / K);
        const int8_t *W = w->data;

        for (int64_t b0 = r0; b0 < r1; b0 += blk) {
                int64_t b1 = MIN(b0 + blk, r1);
                for (int64_t t0 = 0; t0 < n_tok; t0 += 8) {
                        int64_t nt = MIN(8, n_tok - t0);
                        SIMD(gemm_w8a8_few)[nt](W, K, a->q8 + t0 * K, a->scale + t0, w->scale, y + t0 * ys, ys, b0, b1);
                }
        }
}

/* w8a16: sign-extended weights times int16 activations with vpmaddwd; int32 lanes flushed to int64. */
SIMD_INLINE void SIMD(tile_w8a16)(const int8_t *w, int64_t K, const int RB, const int16_t *a, const int TB,
                                  int64_t *acc, size_t ys)
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
                                        s[i][j] = MAC_S16(s[i][j], wv, av[j]);
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

#define DEFINE_ACC_SIMD(kind, atype, afield)                                                                  \
        SIMD_FN static void SIMD(acc_##kind)(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, \
                                         int64_t *acc, size_t ys, int64_t r0, int64_t r1)                     \
        {                                                                                                     \
                const int64_t K = w->cols, RBLK = 16;                                                         \
                const int8_t *W = w->data;                                                                    \
                const atype *A = a->afield;                                                                   \
                for (int64_t rb = r0; rb < r1; rb += RBLK) {                                                  \
                        int64_t re = MIN(rb + RBLK, r1), t = 0;                                               \
                        for (; t + 2 <= n_tok; t += 2) {                                                      \
                                int64_t r = rb;                                                               \
                                for (; r + 4 <= re; r += 4)                                                   \
                                        SIMD(tile_##kind)(W + r * K, K, 4, A + t * K, 2, acc + t * ys + (r - r0), ys); \
                                for (; r < re; r++)                                                           \
                                        SIMD(tile_##kind)(W + r * K, K, 1, A + t * K, 2, acc + t * ys + (r - r0), ys); \
                        }                                                                                     \
                        for (; t < n_tok; t++) {                                                              \
                                int64_t r = rb;                                                               \
                                for (; r + 4 <= re; r += 4)                                                   \
                                        SIMD(tile_##kind)(W + r * K, K, 4, A + t * K, 1, acc + t * ys + (r - r0), ys); \
                                for (; r < re; r++)                                                           \
                                        SIMD(tile_##kind)(W + r * K, K, 1, A + t * K, 1, acc + t * ys + (r - r0), ys); \
                        }                                                                                     \
                }                                                                                             \
        }

DEFINE_ACC_SIMD(w8a16, int16_t, q16)

#undef ROW_STEP32
#undef ROW_STEP32_ALL
#undef DEFINE_GEMM_W8A8_FEW
#undef DEFINE_ACC_SIMD
