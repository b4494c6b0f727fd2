/* SPDX-License-Identifier: MIT */
/*
 * The w8a8 int8 GEMM on AMX (gemm_int8.h), for cpus with AMX-INT8 tiles
 * (Intel Sapphire Rapids and later): TDPBSSD multiplies a tile of 16
 * tokens x 64 activation bytes by a tile of 64 columns x 16 weight rows
 * into 16 x 16 int32 sums, 16384 products an instruction where vpdpbusd
 * does 64.
 *
 * The weights need no repacking: a panel's 16 rows come in groups of 4
 * columns (gemm_int8.h), so its 16 groups from column 64 s on are 1 KiB in
 * a row, a B tile as the instruction reads it (row g: 4 columns of each of
 * the 16 weight rows). The activations' A tile is 16 tokens' quantized
 * rows (act_q's q8), 64 bytes of each. Both are signed bytes: no 128
 * offset and no row-sum correction.
 *
 * Sums are exact int32 (gemm_int8.h's bound on K), so a tile's sums are
 * the same integers the other paths compute, and the epilogue is theirs:
 *   y[t][r] = ((float)sum * a_scale[t]) * w_scale[r]
 * the same bits on every path, whatever the number of tokens.
 *
 * Loops, for a thread's chunk of whole panels [r0, r1) (64 rows): pairs of
 * panels outside (2 B tiles, 32 rows of K bytes, in L2 after the first
 * block), blocks of 32 tokens inside (2 A tiles), 4 accumulator tiles over
 * all of K. While a pair is used, the next pair's weights are prefetched
 * into L2, each token block its share: the first block of a pair then
 * does not wait on memory (tinyllama's up projection, 256 tokens, GEMM
 * alone: 2.0 -> 2.4 T int8 ops/s; with the token blocks outside, 1.85).
 * Tried and no faster: the output lines prefetched for writing before each
 * block's sums. The tiles are released at the end of each call, so a
 * thread holds no tile state between matmuls.
 *
 * Fewer than AMX_MIN_TOKENS tokens, or K not a multiple of 64, take the
 * AVX-512 VNNI kernels (every model's matrices have K a multiple of 64).
 */
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni,amx-tile,amx-int8")
#include <immintrin.h>

#include "amx_tiles.h"
#include "gemm_int8.h"

#define AMX_MIN_TOKENS 16
#define AMX_ROWS 16 /* a tile's rows: tokens of A and C, column groups of B */
#define AMX_K 64    /* a tile row's bytes */

/*
 * tile numbers (literals: the intrinsics paste them into the instruction):
 * accumulators C[token tile][panel], A[token tile], B[panel]
 */
#define C00 0
#define C01 1
#define C10 2
#define C11 3
#define A0 4
#define A1 5
#define B0 6
#define B1 7

/* The tiles for a block of n0 + n1 tokens (n0 <= 16, n1 <= 16). */
static void configure(int n0, int n1)
{
        struct amx_tile_config c = { .palette = 1 };
        const int rows[8] = { [C00] = n0, [C01] = n0, [C10] = n1, [C11] = n1,
                              [A0] = n0,  [A1] = n1,  [B0] = AMX_ROWS, [B1] = AMX_ROWS };

        for (int i = 0; i < 8; i++) {
                c.rows[i] = (uint8_t)(rows[i] ? rows[i] : 1);
                c.colsb[i] = AMX_K;
        }
        _tile_loadconfig(&c);
}

/*
 * y for tokens t0 .. t0 + n - 1 and the panel at row rr, from the tile's
 * sums (a row per token, 16 rows' lanes).
 */
static void epilogue(const struct npu_weight *w, const struct act_q *a, const int32_t (*sums)[AMX_ROWS], int64_t t0,
                     int n, float *y, size_t ys, int64_t rr)
{
        const __m512 ws = _mm512_loadu_ps(w->scale + rr);

        for (int m = 0; m < n; m++) {
                const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(sums[m])),
                                               _mm512_set1_ps(a->scale[t0 + m]));
                _mm512_storeu_ps(y + (t0 + m) * ys + rr, _mm512_mul_ps(f, ws));
        }
}

/*
 * Panels p and p + 1 (rows r, r + 16) times the n0 + n1 tokens from t0;
 * two_panels and two_blocks say which of the four accumulators are live.
 */
static inline __attribute__((always_inline)) void block(const struct npu_weight *w, const struct act_q *a,
                                                        int64_t t0, int n0, int n1, float *y, size_t ys, int64_t r,
                                                        const int8_t *pf, int64_t pf_step, const bool two_panels,
                                                        const bool two_blocks)
{
        const int64_t K = w->cols;
        const int8_t *P0 = (const int8_t *)w->data + r * K, *P1 = P0 + AMX_ROWS * K;
        const int8_t *Q0 = a->q8 + t0 * K, *Q1 = Q0 + AMX_ROWS * K;
        _Alignas(64) int32_t sums[AMX_ROWS][AMX_ROWS];

        _tile_zero(C00);
        if (two_panels)
                _tile_zero(C01);
        if (two_blocks) {
                _tile_zero(C10);
                if (two_panels)
                        _tile_zero(C11);
        }
        for (int64_t k = 0; k < K; k += AMX_K) {
                for (int64_t b = 0; b < pf_step; b += 64)
                        _mm_prefetch((const char *)pf + (k / AMX_K) * pf_step + b, _MM_HINT_T1);
                /* B: the panel's 16 column groups from k, 64 bytes each; A: 64 bytes of each token's row */
                _tile_loadd(B0, P0 + k * AMX_ROWS, AMX_K);
                _tile_loadd(A0, Q0 + k, K);
                _tile_dpbssd(C00, A0, B0);
                if (two_panels) {
                        _tile_loadd(B1, P1 + k * AMX_ROWS, AMX_K);
                        _tile_dpbssd(C01, A0, B1);
                }
                if (two_blocks) {
                        _tile_loadd(A1, Q1 + k, K);
                        _tile_dpbssd(C10, A1, B0);
                        if (two_panels)
                                _tile_dpbssd(C11, A1, B1);
                }
        }
        _tile_stored(C00, sums, sizeof(sums[0]));
        epilogue(w, a, sums, t0, n0, y, ys, r);
        if (two_panels) {
                _tile_stored(C01, sums, sizeof(sums[0]));
                epilogue(w, a, sums, t0, n0, y, ys, r + AMX_ROWS);
        }
        if (two_blocks) {
                _tile_stored(C10, sums, sizeof(sums[0]));
                epilogue(w, a, sums, t0 + AMX_ROWS, n1, y, ys, r);
                if (two_panels) {
                        _tile_stored(C11, sums, sizeof(sums[0]));
                        epilogue(w, a, sums, t0 + AMX_ROWS, n1, y, ys, r + AMX_ROWS);
                }
        }
}

void gemm_i8_w8a8_amx(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, float *y, size_t ys,
                      int64_t r0, int64_t r1)
{
        if (n_tok < AMX_MIN_TOKENS || w->cols % AMX_K) {
                gemm_i8_w8a8_vnni(w, a, n_tok, y, ys, r0, r1);
                return;
        }
        const int64_t K = w->cols, n_blocks = DIV_ROUND_UP(n_tok, 2 * AMX_ROWS);
        /* the next pair's weights into L2 while this pair's are used: each token block its share, over its K */
        const int64_t pf_step = ALIGN_TO(DIV_ROUND_UP(2 * AMX_ROWS * AMX_K, n_blocks), 64);
        int cn0 = -1, cn1 = -1;
        for (int64_t r = r0; r < r1; r += 2 * AMX_ROWS) {
                const bool two_panels = r + AMX_ROWS < r1;
                const int8_t *next = (const int8_t *)w->data + MIN(r + 2 * AMX_ROWS, w->rows - 2 * AMX_ROWS) * K;
                for (int64_t t0 = 0, tb = 0; t0 < n_tok; t0 += 2 * AMX_ROWS, tb++) {
                        const int n0 = (int)MIN(AMX_ROWS, n_tok - t0), n1 = (int)MIN(AMX_ROWS, n_tok - t0 - n0);
                        const int8_t *pf = next + tb * pf_step * (K / AMX_K);

                        if (n0 != cn0 || n1 != cn1) {
                                configure(n0, n1);
                                cn0 = n0, cn1 = n1;
                        }
                        if (two_panels && n1)
                                block(w, a, t0, n0, n1, y, ys, r, pf, pf_step, true, true);
                        else if (two_panels)
                                block(w, a, t0, n0, n1, y, ys, r, pf, pf_step, true, false);
                        else if (n1)
                                block(w, a, t0, n0, n1, y, ys, r, pf, pf_step, false, true);
                        else
                                block(w, a, t0, n0, n1, y, ys, r, pf, pf_step, false, false);
                }
        }
        _tile_release();
}
