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
 * Loops, for a thread's chunk of whole panels [r0, r1): slices of K whose
 * activations fit AMX_ACT_BYTES (all of K up to 4096 columns at 256
 * tokens) outside, so they stay in L2 while the chunk's panels pass; pairs
 * of panels (2 B tiles) inside them, blocks of 32 tokens (2 A tiles)
 * inside those, 4 accumulator tiles over the slice. Between slices a
 * block's sums wait as int32 in y's own place (nothing else reads those
 * rows before the matmul ends). While a pair is used, the next pair's
 * slice is prefetched into L2, each token block its share, so the first
 * block of a pair does not wait on memory. A block's epilogue is done a few
 * rows at a time inside the next block's loop over K (struct pending), its
 * vector work and its stores to y overlapping the tiles' arithmetic.
 * gemm_i8_chunk_rows asks the caller for chunks of 256 rows when the
 * activations exceed L2: each chunk reads them all once.
 *
 * Measured, 256 tokens, the GEMM alone, T int8 ops/s: tinyllama's up
 * projection (5632 x 2048), 2 threads (npu-bench): 1.85 with the token
 * blocks outside, 2.0 pairs outside, 2.4 with the next pair prefetched,
 * 3.7 with activations and weights on cache lines; one thread (a harness
 * over gemm_i8): 1.9 with q8 16 bytes off a line, 2.4-2.6 on lines, 3.0
 * with the epilogue deferred. Llama-7B's down projection (4096 x 11008),
 * one thread: 1.5 with 64-row chunks, 2.0 with 256. Tried and no faster:
 * the output lines prefetched for writing before each block's sums. The
 * tiles are released at the end of each call, so a thread holds no tile
 * state between matmuls.
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
/* activations of a slice of K at most: they stay in L2 while every pair of panels passes */
#define AMX_ACT_BYTES (1 << 20)
/* rows of a chunk past AMX_ACT_BYTES of activations: a chunk reads them all once */
#define AMX_CHUNK_ROWS 256

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
 * A block's sums waiting for their epilogue, done a few rows at a time
 * inside the next block's loop over K, so its vector work and its stores
 * to y (lines that are mostly not in cache) overlap the tiles' arithmetic
 * instead of following it. Tile q's rows are tokens t[q] .. t[q] + n[q] - 1
 * of the panel at row rr[q]; next counts the rows done, of 4 x 16.
 */
struct pending {
        _Alignas(64) int32_t sums[4][AMX_ROWS][AMX_ROWS];
        int n[4];
        int64_t t[4], rr[4];
        int next;
};

/* Up to count more rows of the pending sums into y: y[t][rr + i] = ((float)sum * a_scale[t]) * w_scale[rr + i]. */
static inline __attribute__((always_inline)) void pending_rows(const struct npu_weight *w, const struct act_q *a,
                                                               struct pending *pd, int count, float *y, size_t ys)
{
        for (; count > 0 && pd->next < 4 * AMX_ROWS; pd->next++) {
                const int q = pd->next / AMX_ROWS, m = pd->next % AMX_ROWS;
                if (m >= pd->n[q])
                        continue;
                const int64_t t = pd->t[q] + m, rr = pd->rr[q];
                const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(pd->sums[q][m])),
                                               _mm512_set1_ps(a->scale[t]));
                _mm512_storeu_ps(y + t * ys + rr, _mm512_mul_ps(f, _mm512_loadu_ps(w->scale + rr)));
                count--;
        }
}

/*
 * Panels p and p + 1 (rows r, r + 16) times the n0 + n1 tokens from t0;
 * two_panels and two_blocks say which of the four accumulators are live.
 * The previous block's pending rows are done along the way, this block's
 * sums left pending.
 */
static inline __attribute__((always_inline)) void block(const struct npu_weight *w, const struct act_q *a,
                                                        int64_t t0, int n0, int n1, float *y, size_t ys, int64_t r,
                                                        const int8_t *pf, int64_t pf_step, struct pending *pd,
                                                        int64_t k0, int64_t k1, const bool two_panels,
                                                        const bool two_blocks)
{
        const int64_t K = w->cols;
        const int8_t *P0 = (const int8_t *)w->data + r * K, *P1 = P0 + AMX_ROWS * K;
        const int8_t *Q0 = a->q8 + t0 * K, *Q1 = Q0 + AMX_ROWS * K;
        /* the previous block's 64 rows at most, spread over this one's steps */
        const int per_step = (int)DIV_ROUND_UP(4 * AMX_ROWS, (k1 - k0) / AMX_K);
        /* between slices of K, the sums wait in y's own place, as int32 */
        int32_t *Y0 = (int32_t *)(y + t0 * ys + r), *Y1 = Y0 + AMX_ROWS * ys;
        const size_t yb = ys * sizeof(float);

        /* op(tile, at, stride) on each live accumulator, at00 .. at11 their places in a buffer */
#define EACH_ACC(op, at00, at01, at10, at11, stride)                                                        \
        do {                                                                                               \
                op(C00, at00, stride);                                                                     \
                if (two_panels)                                                                            \
                        op(C01, at01, stride);                                                             \
                if (two_blocks)                                                                            \
                        op(C10, at10, stride);                                                             \
                if (two_blocks && two_panels)                                                              \
                        op(C11, at11, stride);                                                             \
        } while (0)
#define ZERO(tile, at, stride) _tile_zero(tile)
        if (k0 == 0)
                EACH_ACC(ZERO, Y0, Y0 + AMX_ROWS, Y1, Y1 + AMX_ROWS, yb);
        else
                EACH_ACC(_tile_loadd, Y0, Y0 + AMX_ROWS, Y1, Y1 + AMX_ROWS, yb);
        for (int64_t k = k0; k < k1; k += AMX_K) {
                for (int64_t b = 0; b < pf_step; b += 64) {
                        const char *p = (const char *)pf + ((k - k0) / AMX_K) * pf_step + b;
                        _mm_prefetch(p, _MM_HINT_T1);
                        _mm_prefetch(p + AMX_ROWS * K, _MM_HINT_T1);
                }
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
                pending_rows(w, a, pd, per_step, y, ys);
        }
        pending_rows(w, a, pd, 4 * AMX_ROWS, y, ys);
        if (k1 < K) {
                EACH_ACC(_tile_stored, Y0, Y0 + AMX_ROWS, Y1, Y1 + AMX_ROWS, yb);
                return;
        }
        *pd = (struct pending){ .n = { n0, two_panels ? n0 : 0, two_blocks ? n1 : 0, two_panels && two_blocks ? n1 : 0 },
                                .t = { t0, t0, t0 + AMX_ROWS, t0 + AMX_ROWS },
                                .rr = { r, r + AMX_ROWS, r, r + AMX_ROWS } };
        EACH_ACC(_tile_stored, pd->sums[0], pd->sums[1], pd->sums[2], pd->sums[3], sizeof(pd->sums[0][0]));
#undef ZERO
#undef EACH_ACC
}

/* Whether the tiles take w for n_tok tokens (else the VNNI kernels do). */
static bool takes(const struct npu_weight *w, int64_t n_tok)
{
        return n_tok >= AMX_MIN_TOKENS && w->cols % AMX_K == 0;
}

int64_t gemm_i8_amx_chunk_rows(const struct npu_weight *w, int64_t n_tok, int64_t rows)
{
        if (takes(w, n_tok) && n_tok * w->cols > AMX_ACT_BYTES)
                return MAX(rows, (int64_t)AMX_CHUNK_ROWS);
        return rows;
}

void gemm_i8_w8a8_amx(const struct npu_weight *w, const struct act_q *a, int64_t n_tok, float *y, size_t ys,
                      int64_t r0, int64_t r1)
{
        if (!takes(w, n_tok)) {
                gemm_i8_w8a8_vnni(w, a, n_tok, y, ys, r0, r1);
                return;
        }
        const int64_t K = w->cols, n_blocks = DIV_ROUND_UP(n_tok, 2 * AMX_ROWS);
        /* slices of K whose activations (n_tok rows) fit AMX_ACT_BYTES, as even as multiples of 64 allow */
        const int64_t n_slices = DIV_ROUND_UP(n_tok * K, AMX_ACT_BYTES),
                      KS = ALIGN_TO(DIV_ROUND_UP(K, n_slices), AMX_K);
        /*
         * the next pair's slice of weights into L2 while this pair's is used,
         * each token block its share: pf_step bytes of each panel a step
         */
        const int64_t pf_step = ALIGN_TO(DIV_ROUND_UP(AMX_ROWS * AMX_K, n_blocks), 64);
        struct pending pd = { .next = 4 * AMX_ROWS };
        int cn0 = -1, cn1 = -1;

        for (int64_t k0 = 0; k0 < K; k0 += KS) {
                const int64_t k1 = MIN(K, k0 + KS);
                for (int64_t r = r0; r < r1; r += 2 * AMX_ROWS) {
                        const bool two_panels = r + AMX_ROWS < r1;
                        const int8_t *next = (const int8_t *)w->data +
                                             MAX(0, MIN(r + 2 * AMX_ROWS, w->rows - 2 * AMX_ROWS)) * K + k0 * AMX_ROWS;
                        for (int64_t t0 = 0, tb = 0; t0 < n_tok; t0 += 2 * AMX_ROWS, tb++) {
                                const int n0 = (int)MIN(AMX_ROWS, n_tok - t0), n1 = (int)MIN(AMX_ROWS, n_tok - t0 - n0);
                                const int8_t *pf = next + tb * pf_step * ((k1 - k0) / AMX_K);

                                if (n0 != cn0 || n1 != cn1) {
                                        configure(n0, n1);
                                        cn0 = n0, cn1 = n1;
                                }
                                if (two_panels && n1)
                                        block(w, a, t0, n0, n1, y, ys, r, pf, pf_step, &pd, k0, k1, true, true);
                                else if (two_panels)
                                        block(w, a, t0, n0, n1, y, ys, r, pf, pf_step, &pd, k0, k1, true, false);
                                else if (n1)
                                        block(w, a, t0, n0, n1, y, ys, r, pf, pf_step, &pd, k0, k1, false, true);
                                else
                                        block(w, a, t0, n0, n1, y, ys, r, pf, pf_step, &pd, k0, k1, false, false);
                        }
                }
        }
        pending_rows(w, a, &pd, 4 * AMX_ROWS, y, ys);
        _tile_release();
}
