/* SPDX-License-Identifier: MIT */
/*
 * The int8 GEMM on AVX2 (gemm_int8.h): 256-bit vectors of 4 rows x 2
 * lanes (columns 4g, 4g+1 and 4g+2, 4g+3 of a row side by side), the
 * weights widened to int16 (vpmovsxbw) and multiplied by 4 int16
 * activations broadcast to every 64-bit lane with vpmaddwd. vpmaddubsw
 * cannot take the VNNI path's u8 x s8 (255 * 127 * 2 saturates int16), so
 * w8a8's activations are packed widened to int16 too (ACT_Q16P), and w8a8
 * and w8a16 share the kernel; only w8a16 flushes its lanes to int64.
 *
 * Tiles of V vectors (a panel is 4) by NR tokens, V * NR <= 12 sums in the
 * 16 registers; loops as on VNNI: tokens outside, tiles of the chunk's
 * rows inside, all of K per tile.
 */
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>

#include "gemm_int8.h"
#include "gemm_int8_unroll.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* 2 products of at most 127 * 32767 per lane and step: 256 steps stay below 2^31 */
#define W8A16_FLUSH_STEPS 256

ALWAYS_INLINE __m256i bcast8(const int16_t *p)
{
        int64_t v;
        memcpy(&v, p, 8);
        return _mm256_set1_epi64x(v);
}

/* Vector v (4 rows) of the tile whose first row is vector v0 of the panel at W, at step g. */
ALWAYS_INLINE __m256i load_rows(const int8_t *W, size_t ps, int v, int64_t g)
{
        return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(W + (v / 4) * ps + g * 64 + (v % 4) * 16)));
}

/* Sum of the last K % 4 columns of row i (< 16) of the full panel at P, times one token's packed activations a. */
ALWAYS_INLINE int64_t tail_sum(const int8_t *P, int64_t K, int i, const int16_t *a)
{
        const int64_t k4 = K & ~(int64_t)3, kt = K - k4;
        int64_t s = 0;
        for (int64_t c = 0; c < kt; c++)
                s += (int32_t)P[k4 * GEMM_PANEL + i * kt + c] * a[c];
        return s;
}

/*
 * V vectors of rows from row r (r a multiple of 4 * V within its panel) by
 * NR tokens from t0 (within one packed group). w8a8: the int32 lanes never
 * overflow (K <= GEMM_I8_MAX_K); w8a16: flushed into int64 sums.
 */
ALWAYS_INLINE void tile(const struct npu_weight *w, const struct act_q *a, int64_t t0, float *y, size_t ys,
                        int64_t r, const int V, const int NR, const bool w8a16)
{
        const int64_t K = w->cols, G = K / 4, flush = w8a16 ? W8A16_FLUSH_STEPS : G;
        const size_t ps = (size_t)GEMM_PANEL * K;
        const int64_t p0 = r - r % GEMM_PANEL, v0 = (r - p0) / 4;
        const int8_t *W = (const int8_t *)w->data + p0 * K;
        const int16_t *A = (const int16_t *)(a->pk + gemm_act_offset(K, t0, 0, 2));
        __m256i acc[4][4];
        int32_t lanes[4][4][8];
        int64_t tot[16][4] = {};

        for (int64_t g0 = 0; g0 < G || g0 == 0; g0 += flush) {
                const int64_t g1 = MIN(G, g0 + flush);
                for (int v = 0; v < V; v++)
                        for (int j = 0; j < NR; j++)
                                acc[v][j] = _mm256_setzero_si256();
                for (int64_t g = g0; g < g1; g++) {
                        __m256i b[4];
                        for (int j = 0; j < NR; j++)
                                b[j] = bcast8(A + (g * GEMM_TOK_GROUP + j) * 4);
                        for (int v = 0; v < V; v++) {
                                const __m256i wv = load_rows(W, ps, (int)v0 + v, g);
                                for (int j = 0; j < NR; j++)
                                        acc[v][j] = _mm256_add_epi32(acc[v][j], _mm256_madd_epi16(wv, b[j]));
                        }
                }
                /* out of the registers by straight-line stores (gemm_int8_unroll.h) */
#define STORE(v, j)                                                                                         \
        if (v < V && j < NR)                                                                               \
                _mm256_storeu_si256((__m256i *)lanes[v][j], acc[v][j]);
                TILE_4x4(STORE)
#undef STORE
                if (!w8a16)
                        break;
                for (int v = 0; v < V; v++)
                        for (int j = 0; j < NR; j++)
                                for (int q = 0; q < 4; q++)
                                        tot[4 * v + q][j] += (int64_t)lanes[v][j][2 * q] + lanes[v][j][2 * q + 1];
        }
        const int16_t *tail_a = A + G * GEMM_TOK_GROUP * 4;
        if (!w8a16) {
                /* lanes (2q, 2q + 1) of a vector are one row: pairs of vectors make 8 rows in order */
                const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
                for (int v = 0; v < V; v += 2) {
                        const int64_t rr = r + 4 * v;
                        const __m256 ws = _mm256_loadu_ps(w->scale + rr);
                        for (int j = 0; j < NR; j++) {
                                __m256i s = _mm256_hadd_epi32(_mm256_loadu_si256((const __m256i *)lanes[v][j]),
                                                              _mm256_loadu_si256((const __m256i *)lanes[v + 1][j]));
                                s = _mm256_permutevar8x32_epi32(s, order);
                                if (K & 3) {
                                        int32_t tail[8];
                                        for (int i = 0; i < 8; i++)
                                                tail[i] = (int32_t)tail_sum(W, K, (int)(4 * (v0 + v) + i),
                                                                            tail_a + j * 4);
                                        s = _mm256_add_epi32(s, _mm256_loadu_si256((const __m256i *)tail));
                                }
                                __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(a->scale[t0 + j]));
                                _mm256_storeu_ps(y + (t0 + j) * ys + rr, _mm256_mul_ps(f, ws));
                        }
                }
                return;
        }
        for (int i = 0; i < 4 * V; i++)
                for (int j = 0; j < NR; j++) {
                        int64_t s = tot[i][j];
                        if (K & 3)
                                s += tail_sum(W, K, (int)(4 * v0 + i), tail_a + j * 4);
                        y[(t0 + j) * ys + r + i] = ((float)s * a->scale[t0 + j]) * w->scale[r + i];
                }
}

typedef void tile_fn(const struct npu_weight *w, const struct act_q *a, int64_t t0, float *y, size_t ys, int64_t r);

#define TILE(V, NR)                                                                                         \
        static void w8a8_##V##x##NR(const struct npu_weight *w, const struct act_q *a, int64_t t0, float *y, \
                                    size_t ys, int64_t r)                                                  \
        {                                                                                                  \
                tile(w, a, t0, y, ys, r, V, NR, false);                                                    \
        }                                                                                                  \
        static void w8a16_##V##x##NR(const struct npu_weight *w, const struct act_q *a, int64_t t0,        \
                                     float *y, size_t ys, int64_t r)                                       \
        {                                                                                                  \
                tile(w, a, t0, y, ys, r, V, NR, true);                                                     \
        }

/* a whole panel (4 vectors) by up to 3 tokens, half a panel by up to 4 */
TILE(4, 1)
TILE(4, 2)
TILE(4, 3)
TILE(2, 1)
TILE(2, 2)
TILE(2, 3)
TILE(2, 4)

static tile_fn *const w8a8_panel[4] = { NULL, w8a8_4x1, w8a8_4x2, w8a8_4x3 };
static tile_fn *const w8a8_half[5] = { NULL, w8a8_2x1, w8a8_2x2, w8a8_2x3, w8a8_2x4 };
static tile_fn *const w8a16_panel[4] = { NULL, w8a16_4x1, w8a16_4x2, w8a16_4x3 };
static tile_fn *const w8a16_half[5] = { NULL, w8a16_2x1, w8a16_2x2, w8a16_2x3, w8a16_2x4 };

/*
 * Up to 3 tokens: whole panels (the weights read once); more: each packed
 * group of GEMM_TOK_GROUP tokens in tiles of up to 4, half a panel high.
 */
static void run(tile_fn *const *panel, tile_fn *const *half, const struct npu_weight *w, const struct act_q *a,
                int64_t n_tok, float *y, size_t ys, int64_t r0, int64_t r1)
{
        if (n_tok <= 3) {
                for (int64_t r = r0; r < r1; r += GEMM_PANEL)
                        panel[n_tok](w, a, 0, y, ys, r);
                return;
        }
        _Static_assert(GEMM_TOK_GROUP % 4 == 0, "tiles of 4 tokens stay inside a packed group");
        for (int64_t t0 = 0; t0 < n_tok; t0 += 4) {
                const int64_t nr = MIN(4, n_tok - t0);
                for (int64_t r = r0; r < r1; r += GEMM_PANEL / 2)
                        half[nr](w, a, t0, y, ys, r);
        }
}

void gemm_i8_w8a8_avx2(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, float *y, size_t ys,
                       int64_t r0, int64_t r1)
{
        run(w8a8_panel, w8a8_half, w, a, n_tok, y, ys, r0, r1);
}

void gemm_i8_w8a16_avx2(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, float *y, size_t ys,
                        int64_t r0, int64_t r1)
{
        run(w8a16_panel, w8a16_half, w, a, n_tok, y, ys, r0, r1);
}
