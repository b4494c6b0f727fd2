/* SPDX-License-Identifier: MIT */
/*
 * The int8 GEMM on AVX-512 VNNI (gemm_int8.h): 512-bit vectors, one lane
 * per output row, a register tile of up to 24 sums.
 *
 * Loops, for rows [r0, r1) of whole panels (a thread's chunk) and n_tok
 * tokens: groups of up to TOK_TILE tokens outside, tiles of panels inside,
 * each tile walking all of K with its sums in registers. The chunk's
 * weights (64 rows of K bytes: 256 KiB at K = 4096) stay in L2 while every
 * token group passes over them; a token group's activations (TOK_TILE rows
 * of K bytes) stay in L1/L2 while the chunk's tiles use them.
 *
 * A w8a8 tile of one token (a decode step, or a batch's last token)
 * broadcasts the token's activations from its quantized row (act_q's q8,
 * 4 KiB at K = 4096), not from the packed groups, where its 4 columns of a
 * group are 4 bytes in every GEMM_TOK_GROUP * 4: there a row of K columns
 * spreads over 12 K bytes (48 KiB, all of L1) against the weights streaming
 * through, and the other thread's copies of those lines must be taken back
 * when the next op packs its row. The same integers either way.
 */
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")
#include <immintrin.h>

#include "gemm_int8.h"
#include "gemm_int8_unroll.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* w8a16's int32 lanes take 2 products of at most 127 * 32767 per step: 256 steps stay below 2^31 */
#define W8A16_FLUSH_STEPS 256
/*
 * Bytes ahead of the weight loads that each panel's stream is prefetched
 * into L1 (a tile's panels do not fit it): from L2 when many tokens share
 * the weights, from memory in a decode step (up to 8 tokens: the weights
 * are read at memory speed, and farther is better there).
 */
#define W_PREFETCH(NR) ((NR) <= 8 ? 4096 : 1024)

/* 4 activation bytes in every 32-bit lane */
ALWAYS_INLINE __m512i bcast4(const void *p)
{
        int32_t v;
        memcpy(&v, p, 4);
        return _mm512_set1_epi32(v);
}

/* 4 int16 activations in every 64-bit lane */
ALWAYS_INLINE __m512i bcast8(const void *p)
{
        int64_t v;
        memcpy(&v, p, 8);
        return _mm512_set1_epi64(v);
}

/*
 * The last K % 4 columns of the 16 rows of the full panel at P, times the
 * packed activations of one token at a (those columns' 4-element group).
 */
ALWAYS_INLINE void tail_sums_u8(const int8_t *P, int64_t K, const uint8_t *a, int32_t out[GEMM_PANEL])
{
        const int64_t k4 = K & ~(int64_t)3, kt = K - k4;
        for (int i = 0; i < GEMM_PANEL; i++) {
                int32_t s = 0;
                for (int64_t c = 0; c < kt; c++)
                        s += (int32_t)P[k4 * GEMM_PANEL + i * kt + c] * a[c];
                out[i] = s;
        }
}

ALWAYS_INLINE void tail_sums_i16(const int8_t *P, int64_t K, const int16_t *a, int64_t out[GEMM_PANEL])
{
        const int64_t k4 = K & ~(int64_t)3, kt = K - k4;
        for (int i = 0; i < GEMM_PANEL; i++) {
                int64_t s = 0;
                for (int64_t c = 0; c < kt; c++)
                        s += (int32_t)P[k4 * GEMM_PANEL + i * kt + c] * a[c];
                out[i] = s;
        }
}

/* --- w8a8: vpdpbusd of (q8 + 128) by w, minus 128 * sum(w) --- */

/*
 * MR panels from row r times NR tokens from t0 (MR * NR <= 24, the tokens
 * within one packed group). The tail columns are summed with the u8
 * activations too, so 128 * sum(w) over all of K is the whole correction.
 */
ALWAYS_INLINE void w8a8_tile(const struct npu_weight *w, const struct act_q *a, int64_t t0, float *y, size_t ys,
                             int64_t r, const int MR, const int NR)
{
        const int64_t K = w->cols, G = K / 4;
        const size_t ps = (size_t)GEMM_PANEL * K;
        const int8_t *W = (const int8_t *)w->data + r * K;
        const uint8_t *A = a->pk + gemm_act_offset(K, t0, 0, 1);
        const int8_t *Q = a->q8 + t0 * K; /* one token: its row, as quantized */
        __m512i acc[4][12];

        for (int i = 0; i < MR; i++)
                for (int j = 0; j < NR; j++)
                        acc[i][j] = _mm512_setzero_si512();
        for (int64_t g = 0; g < G; g++) {
                __m512i wv[4];
                for (int i = 0; i < MR; i++)
                        wv[i] = _mm512_loadu_si512(W + i * ps + g * 64);
                for (int i = 0; i < MR; i++)
                        _mm_prefetch((const char *)(W + i * ps + g * 64 + W_PREFETCH(NR)), _MM_HINT_T0);
                for (int j = 0; j < NR; j++) {
                        /* q8 + 128 is q8 with each byte's top bit flipped, as packed */
                        const __m512i b = NR == 1 ? _mm512_xor_si512(bcast4(Q + g * 4), _mm512_set1_epi8((char)0x80))
                                                  : bcast4(A + (g * GEMM_TOK_GROUP + j) * 4);
                        for (int i = 0; i < MR; i++)
                                acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], b, wv[i]);
                }
        }
        /* out of the registers by straight-line stores (gemm_int8_unroll.h), then the epilogue's loops */
        int32_t sums[4][12][GEMM_PANEL];
#define STORE(i, j)                                                                                         \
        if (i < MR && j < NR)                                                                              \
                _mm512_storeu_si512(sums[i][j], acc[i][j]);
        TILE_4x12(STORE)
#undef STORE
        for (int i = 0; i < MR; i++) {
                const int64_t rr = r + i * GEMM_PANEL;
                const __m512i corr = _mm512_slli_epi32(_mm512_loadu_si512(w->row_sums + rr), 7);
                const __m512 ws = _mm512_loadu_ps(w->scale + rr);
                for (int j = 0; j < NR; j++) {
                        __m512i s = _mm512_sub_epi32(_mm512_loadu_si512(sums[i][j]), corr);
                        if (K & 3) {
                                int32_t tail[GEMM_PANEL];
                                tail_sums_u8(W + i * ps, K, A + (G * GEMM_TOK_GROUP + j) * 4, tail);
                                s = _mm512_add_epi32(s, _mm512_loadu_si512(tail));
                        }
                        __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(a->scale[t0 + j]));
                        _mm512_storeu_ps(y + (t0 + j) * ys + rr, _mm512_mul_ps(f, ws));
                }
        }
}

typedef void tile_fn(const struct npu_weight *w, const struct act_q *a, int64_t t0, float *y, size_t ys, int64_t r);

#define TILE(kind, MR, NR)                                                                                  \
        static void kind##_##MR##x##NR(const struct npu_weight *w, const struct act_q *a, int64_t t0,      \
                                       float *y, size_t ys, int64_t r)                                     \
        {                                                                                                  \
                kind##_tile(w, a, t0, y, ys, r, MR, NR);                                                   \
        }
#define TILES_NR(kind, MR)                                                                                  \
        TILE(kind, MR, 1) TILE(kind, MR, 2) TILE(kind, MR, 3) TILE(kind, MR, 4) TILE(kind, MR, 5)          \
        TILE(kind, MR, 6)
#define TILES_NR_12(kind, MR)                                                                               \
        TILES_NR(kind, MR) TILE(kind, MR, 7) TILE(kind, MR, 8) TILE(kind, MR, 9) TILE(kind, MR, 10)        \
        TILE(kind, MR, 11) TILE(kind, MR, 12)
#define ROW_NR(kind, MR)                                                                                    \
        { NULL, kind##_##MR##x1, kind##_##MR##x2, kind##_##MR##x3, kind##_##MR##x4, kind##_##MR##x5,       \
          kind##_##MR##x6 }
#define ROW_NR_12(kind, MR)                                                                                 \
        { NULL, kind##_##MR##x1, kind##_##MR##x2, kind##_##MR##x3, kind##_##MR##x4, kind##_##MR##x5,       \
          kind##_##MR##x6, kind##_##MR##x7, kind##_##MR##x8, kind##_##MR##x9, kind##_##MR##x10,            \
          kind##_##MR##x11, kind##_##MR##x12 }

/* w8a8: 1 or 2 panels x up to 12 tokens, 3 or 4 panels x up to 6 */
TILES_NR_12(w8a8, 1)
TILES_NR_12(w8a8, 2)
TILES_NR(w8a8, 3)
TILES_NR(w8a8, 4)

static tile_fn *const w8a8_tiles[5][13] = {
        {}, ROW_NR_12(w8a8, 1), ROW_NR_12(w8a8, 2), ROW_NR(w8a8, 3), ROW_NR(w8a8, 4),
};

/*
 * Token groups (GEMM_TOK_GROUP, as packed) outside, the chunk's panels
 * inside; mr_of(n) panels per tile for a group of n tokens.
 */
static void run_tiles(tile_fn *const *tiles, const struct npu_weight *w, const struct act_q *a, int64_t n_tok,
                      float *y, size_t ys, int64_t r0, int64_t r1, int (*mr_of)(int64_t))
{
        const int64_t np = (r1 - r0) / GEMM_PANEL;

        for (int64_t t0 = 0; t0 < n_tok; t0 += GEMM_TOK_GROUP) {
                const int64_t nr = MIN(GEMM_TOK_GROUP, n_tok - t0);
                const int mr_max = mr_of(nr);
                for (int64_t p = 0; p < np;) {
                        const int mr = (int)MIN(mr_max, np - p);
                        tiles[mr * (GEMM_TOK_GROUP + 1) + nr](w, a, t0, y, ys, r0 + p * GEMM_PANEL);
                        p += mr;
                }
        }
}

/*
 * Up to 6 tokens, 4 panels (64 rows, a thread's chunk: the weights are
 * read once, as 4 streams); more, 2 panels by up to 12 tokens.
 */
static int w8a8_mr(int64_t nr)
{
        return nr <= 6 ? 4 : 2;
}

void gemm_i8_w8a8_vnni(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, float *y, size_t ys,
                       int64_t r0, int64_t r1)
{
        run_tiles(&w8a8_tiles[0][0], w, a, n_tok, y, ys, r0, r1, w8a8_mr);
}

/* --- w8a16: vpdpwssd of int16 activations by the weights widened to int16 --- */

/*
 * MR panels x NR tokens (MR * NR <= 12): each panel is two vectors of 8
 * rows x 2 lanes (columns 4g, 4g+1 and 4g+2, 4g+3 of a row side by side),
 * added in int64 every W8A16_FLUSH_STEPS steps.
 */
ALWAYS_INLINE void w8a16_tile(const struct npu_weight *w, const struct act_q *a, int64_t t0, float *y, size_t ys,
                              int64_t r, const int MR, const int NR)
{
        const int64_t K = w->cols, G = K / 4;
        const size_t ps = (size_t)GEMM_PANEL * K;
        const int8_t *W = (const int8_t *)w->data + r * K;
        const int16_t *A = (const int16_t *)(a->pk + gemm_act_offset(K, t0, 0, 2));
        __m512i acc[8][12];
        int64_t tot[8][12][8] = {};

        for (int64_t g0 = 0; g0 < G; g0 += W8A16_FLUSH_STEPS) {
                const int64_t g1 = MIN(G, g0 + W8A16_FLUSH_STEPS);
                for (int h = 0; h < 2 * MR; h++)
                        for (int j = 0; j < NR; j++)
                                acc[h][j] = _mm512_setzero_si512();
                for (int64_t g = g0; g < g1; g++) {
                        __m512i wv[8];
                        for (int h = 0; h < 2 * MR; h++)
                                wv[h] = _mm512_cvtepi8_epi16(
                                        _mm256_loadu_si256((const __m256i *)(W + (h / 2) * ps + g * 64 + (h % 2) * 32)));
                        for (int i = 0; i < MR; i++)
                                _mm_prefetch((const char *)(W + i * ps + g * 64 + W_PREFETCH(NR)), _MM_HINT_T0);
                        for (int j = 0; j < NR; j++) {
                                const __m512i b = bcast8(A + (g * GEMM_TOK_GROUP + j) * 4);
                                for (int h = 0; h < 2 * MR; h++)
                                        acc[h][j] = _mm512_dpwssd_epi32(acc[h][j], b, wv[h]);
                        }
                }
                /* each 64-bit lane: a row's two int32 halves, sign-extended and added (gemm_int8_unroll.h) */
#define FLUSH(h, j)                                                                                         \
        if (h < 2 * MR && j < NR) {                                                                        \
                const __m512i lo = _mm512_srai_epi64(_mm512_slli_epi64(acc[h][j], 32), 32);               \
                const __m512i hi = _mm512_srai_epi64(acc[h][j], 32);                                       \
                _mm512_storeu_si512(tot[h][j], _mm512_add_epi64(_mm512_loadu_si512(tot[h][j]),             \
                                                                _mm512_add_epi64(lo, hi)));                \
        }
                TILE_8x12(FLUSH)
#undef FLUSH
        }
        for (int i = 0; i < MR; i++) {
                const int64_t rr = r + i * GEMM_PANEL;
                for (int j = 0; j < NR; j++) {
                        int64_t sums[GEMM_PANEL], tail[GEMM_PANEL] = {};
                        memcpy(sums, tot[2 * i][j], sizeof(tot[0][0]));
                        memcpy(sums + 8, tot[2 * i + 1][j], sizeof(tot[0][0]));
                        if (K & 3)
                                tail_sums_i16(W + i * ps, K, A + (G * GEMM_TOK_GROUP + j) * 4, tail);
                        float *out = y + (t0 + j) * ys + rr;
                        const float as = a->scale[t0 + j];
                        for (int l = 0; l < GEMM_PANEL; l++)
                                out[l] = ((float)(sums[l] + tail[l]) * as) * w->scale[rr + l];
                }
        }
}

/* w8a16: 1 panel x up to 12 tokens, 2 x up to 6, 3 or 4 x up to 3 */
TILES_NR_12(w8a16, 1)
TILES_NR(w8a16, 2)
TILE(w8a16, 3, 1)
TILE(w8a16, 3, 2)
TILE(w8a16, 3, 3)
TILE(w8a16, 4, 1)
TILE(w8a16, 4, 2)
TILE(w8a16, 4, 3)

static tile_fn *const w8a16_tiles[5][13] = {
        {}, ROW_NR_12(w8a16, 1), ROW_NR(w8a16, 2), { NULL, w8a16_3x1, w8a16_3x2, w8a16_3x3 },
        { NULL, w8a16_4x1, w8a16_4x2, w8a16_4x3 },
};

static int w8a16_mr(int64_t nr)
{
        return nr <= 3 ? 4 : nr <= 6 ? 2 : 1;
}

void gemm_i8_w8a16_vnni(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, float *y, size_t ys,
                        int64_t r0, int64_t r1)
{
        run_tiles(&w8a16_tiles[0][0], w, a, n_tok, y, ys, r0, r1, w8a16_mr);
}
