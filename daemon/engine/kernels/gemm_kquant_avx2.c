/* SPDX-License-Identifier: MIT */
/*
 * The K-quant GEMM on AVX2 (gemm_kquant.h), the twin of gemm_kquant_vnni.c
 * for cpus without AVX-512, for every K-quant (Q2_K .. Q6_K): panels of 8
 * rows (a ymm register's int32 lanes) unpacked once per slice to unsigned
 * bytes, then register tiles of 2 panels x up to 6 tokens. The loops are
 * the block GEMMs' slice driver (gemm_block_slices.h), with blocks of QK_K
 * columns: slices of B32_SLICE columns of a block of 8 panels (64 rows,
 * 64 KiB unpacked, in L2), pairs of panels (16 KiB, in L1) inside, token
 * groups inside those; the float sums rest in y between super-blocks.
 *
 * AVX2 has no vpdpbusd: vpmaddubsw multiplies the unsigned weight bytes by
 * the signed activations (Q8_K's lie in [-127, 127]) and adds pairs into
 * saturating int16, so a run of groups of 4 columns adds up in int16 only
 * as long as its pair sums stay below 2^15, and within one scale:
 *  - Q4_K (q <= 15): 8 groups, 16 products per int16, 30480 at most;
 *  - Q5_K (q <= 31), Q3_K (q = w + 4 <= 7), Q2_K (q <= 3): 4 groups (16
 *    columns: Q3_K's and Q2_K's scale), Q5_K 31496 at most;
 *  - Q6_K (q = w + 32 <= 63): 2 groups, 32004 at most.
 * Then one vpmaddwd against the run's scale as an int16 pair (sc, sc) adds
 * both halves, scaled, to the block's int32 isum. Per super-block, int16
 * pairs of each row against pairs of the activations' sums (vpmaddwd):
 * Q2_K, Q4_K, Q5_K the mins (M), Q3_K, Q6_K the offset out of isum
 * (-4 sc, -32 sc). Every sum is exact, and the float steps are the
 * definition's (kernels_quant.h), in its order, on 8 rows at once:
 *   y = fma(d * da, isum, y);  Q2_K, Q4_K, Q5_K: y = fma(-(dmin * da), M, y)
 * so the results are the portable C's bit for bit, for any batch and any
 * split of rows.
 *
 * This file is compiled with -ffp-contract=off: every fused multiply-add
 * is written out (_mm256_fmadd_ps).
 */
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>

#include "gemm_block_slices.h"
#include "gemm_kquant.h"
#include "gemm_panel_ymm.h"
#include "kquant_scales.h"

#define YK_PANEL GEMM_B32_PANEL_AVX2
#define YK_PANELS 8 /* panels of a block of rows: 64 rows */
#define YK_SB (B32_SLICE / QK_K)

/* A slice of a block of panels, unpacked. */
struct yk_slice {
        /* group g of panel p: bytes 4i..4i+3 are row i's columns 4g..4g+3 (unsigned) */
        uint8_t w[YK_PANELS][B32_SLICE / 4][4 * YK_PANEL];
        /* the scale of each 16 columns, one int32 lane per row: the int16 pair (sc, sc) */
        int32_t sc[YK_PANELS][B32_SLICE / 16][YK_PANEL];
        /*
         * per super-block, int16 pairs per row against pairs of the
         * activations' sums: Q4_K, Q5_K, M: (min_2q, min_2q+1), q < 4,
         * against the sums of 32; Q2_K, M: (min_2j, min_2j+1), j < 8,
         * against the sums of 16; Q3_K, Q6_K, the offset out of isum:
         * (-off sc_2j, -off sc_2j+1), j < 8, against the sums of 16
         */
        int32_t pr[YK_PANELS][YK_SB][8][YK_PANEL];
        float dw[YK_PANELS][YK_SB][YK_PANEL]; /* d of each row */
        float dm[YK_PANELS][YK_SB][YK_PANEL]; /* Q2_K, Q4_K, Q5_K: dmin of each row */
} __attribute__((aligned(32)));

/* Bit `from` of every byte of v moved to bit `to`, the other bits cleared. */
ALWAYS_INLINE __m256i bit_to(__m256i v, int from, int to)
{
        const __m256i m = _mm256_set1_epi8((char)(1 << to));
        return _mm256_and_si256(from >= to ? _mm256_srli_epi16(v, from - to) : _mm256_slli_epi16(v, to - from), m);
}

/* Columns 32c .. 32c + 31 of the K-quant block x of type t, unsigned, in element order. */
ALWAYS_INLINE __m256i chunk_bytes(enum ggml_type t, const uint8_t *x, int c)
{
        const __m256i m4 = _mm256_set1_epi8(15), three = _mm256_set1_epi8(3);

        switch (t) {
        case GGML_TYPE_Q2_K: {
                const uint8_t *qs = ((const struct block_q2_K *)x)->qs;
                const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * (c / 4)));
                return _mm256_and_si256(_mm256_srli_epi16(v, 2 * (c % 4)), three);
        }
        case GGML_TYPE_Q3_K: {
                const struct block_q3_K *b = (const struct block_q3_K *)x;
                const __m256i v = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * (c / 4)));
                const __m256i hm = _mm256_loadu_si256((const __m256i *)b->hmask);
                return _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 2 * (c % 4)), three), bit_to(hm, c, 2));
        }
        case GGML_TYPE_Q4_K:
        case GGML_TYPE_Q5_K: {
                const bool five = t == GGML_TYPE_Q5_K;
                const uint8_t *qs = five ? ((const struct block_q5_K *)x)->qs : ((const struct block_q4_K *)x)->qs;
                const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * (c / 2)));
                const __m256i q = _mm256_and_si256(_mm256_srli_epi16(v, 4 * (c % 2)), m4);
                if (!five)
                        return q;
                const __m256i qh = _mm256_loadu_si256((const __m256i *)((const struct block_q5_K *)x)->qh);
                return _mm256_or_si256(q, bit_to(qh, c, 4));
        }
        case GGML_TYPE_Q6_K: {
                /* ql[64h + 32 (s % 2) + l], low nibbles for s < 2; bits 2s, 2s + 1 of qh[32h + l] */
                const struct block_q6_K *b = (const struct block_q6_K *)x;
                const int h = c / 4, s = c % 4;
                const __m256i l = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32 * (s % 2)));
                const __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
                return _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l, 4 * (s / 2)), m4),
                                       _mm256_and_si256(2 * s <= 4 ? _mm256_slli_epi16(qh, 4 - 2 * s)
                                                                   : _mm256_srli_epi16(qh, 2 * s - 4),
                                                        _mm256_set1_epi8(0x30)));
        }
        default:
                return _mm256_setzero_si256();
        }
}

/*
 * The scales of the 16 sub-blocks of 16 columns of block x (bytes, Q3_K's
 * and Q6_K's signed), and its int16 pairs as the slice keeps them.
 */
ALWAYS_INLINE __m128i block_scales(enum ggml_type t, const uint8_t *x, __m256i *pairs)
{
        switch (t) {
        case GGML_TYPE_Q2_K: {
                const __m128i s8 = _mm_loadu_si128((const __m128i *)((const struct block_q2_K *)x)->scales);
                const __m128i m4 = _mm_set1_epi8(15);
                *pairs = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s8, 4), m4));
                return _mm_and_si128(s8, m4);
        }
        case GGML_TYPE_Q4_K:
        case GGML_TYPE_Q5_K: {
                const __m128i sm = k4_scales_mins(((const struct block_q4_K *)x)->scales);
                *pairs = _mm256_zextsi128_si256(_mm_cvtepu8_epi16(_mm_srli_si128(sm, 8)));
                /* each scale of 32 columns for both its 16s */
                return _mm_unpacklo_epi8(sm, sm);
        }
        case GGML_TYPE_Q3_K:
        case GGML_TYPE_Q6_K: {
                const bool six = t == GGML_TYPE_Q6_K;
                const __m128i s8 = six ? _mm_loadu_si128((const __m128i *)((const struct block_q6_K *)x)->scales)
                                       : q3k_scales(((const struct block_q3_K *)x)->scales);
                const __m256i s16 = _mm256_cvtepi8_epi16(s8);
                /* -off * sc: off 32 or 4 */
                *pairs = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(s16, six ? 5 : 2));
                return s8;
        }
        default:
                return _mm_setzero_si128();
        }
}

/* 8 of a row's 16 scale bytes (from byte 8h) as int16 pairs (sc, sc), sign-extended where signed. */
ALWAYS_INLINE __m256i scale_pairs(__m128i s8, int h, bool is_signed)
{
        const __m128i b = h ? _mm_srli_si128(s8, 8) : s8;
        const __m256i v = is_signed ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
        return _mm256_blend_epi16(v, _mm256_slli_epi32(v, 16), 0xaa);
}

/* Where d and dmin lie in a block of type t (dmin: the types with mins). */
ALWAYS_INLINE size_t block_d_at(enum ggml_type t)
{
        return t == GGML_TYPE_Q2_K   ? offsetof(struct block_q2_K, d)
               : t == GGML_TYPE_Q3_K ? offsetof(struct block_q3_K, d)
               : t == GGML_TYPE_Q6_K ? offsetof(struct block_q6_K, d)
                                     : 0;
}

ALWAYS_INLINE size_t block_dmin_at(enum ggml_type t)
{
        return t == GGML_TYPE_Q2_K ? offsetof(struct block_q2_K, dmin) : offsetof(struct block_q4_K, dmin);
}

ALWAYS_INLINE bool k_has_min(enum ggml_type t)
{
        return t == GGML_TYPE_Q2_K || t == GGML_TYPE_Q4_K || t == GGML_TYPE_Q5_K;
}

/* The super-block at byte off of the 8 rows at rows[] into super-block s of panel p. */
ALWAYS_INLINE void unpack_kblock(enum ggml_type t, const uint8_t *const *rows, size_t off, struct yk_slice *sl, int p,
                                 int s)
{
        const bool is_signed = t == GGML_TYPE_Q3_K || t == GGML_TYPE_Q6_K;
        __m256i z[8], lo[8], hi[8];

        for (int c = 0; c < 8; c++) {
                for (int i = 0; i < 8; i++)
                        z[i] = chunk_bytes(t, rows[i] + off, c);
                store_transposed8(sl->w[p][64 * s + 8 * c], z);
        }
        for (int i = 0; i < 8; i++) {
                const __m128i s8 = block_scales(t, rows[i] + off, &z[i]);
                lo[i] = scale_pairs(s8, 0, is_signed);
                hi[i] = scale_pairs(s8, 1, is_signed);
        }
        store_transposed8(sl->pr[p][s], z);
        store_transposed8(sl->sc[p][16 * s], lo);
        store_transposed8(sl->sc[p][16 * s + 8], hi);
        rows_f16(sl->dw[p][s], rows, off + block_d_at(t), YK_PANEL);
        if (k_has_min(t))
                rows_f16(sl->dm[p][s], rows, off + block_dmin_at(t), YK_PANEL);
}

#define YK_UNPACK(name, T)                                                                                \
        static void unpack_##name(const uint8_t *const *rows, size_t off, void *sl, int p, int b)          \
        {                                                                                                 \
                unpack_kblock(T, rows, off, sl, p, b);                                                    \
        }
YK_UNPACK(q2_k, GGML_TYPE_Q2_K)
YK_UNPACK(q3_k, GGML_TYPE_Q3_K)
YK_UNPACK(q4_k, GGML_TYPE_Q4_K)
YK_UNPACK(q5_k, GGML_TYPE_Q5_K)
YK_UNPACK(q6_k, GGML_TYPE_Q6_K)

/* A tile's FLAG: the groups of a run in int16 (8, 4 or 2), and these. */
#define YK_MINS 16   /* Q2_K, Q4_K, Q5_K: the pairs make M; else they go into isum */
#define YK_PAIRS4 32 /* Q4_K, Q5_K: 4 pairs against sums of 32; else 8 against sums of 16 */

/* MR panels from p0 times NR tokens over the slice's nsb super-blocks. */
ALWAYS_INLINE void yk_tile(const struct yk_slice *sl, int p0, int nsb, const struct b32_tokens *tk, const int MR,
                           const int NR, const int FLAG)
{
        const int run = FLAG & 15, npairs = FLAG & YK_PAIRS4 ? 4 : 8;
        const bool mins = FLAG & YK_MINS;

        for (int s = 0; s < nsb; s++) {
                __m256i isum[B32_MR][B32_NR], M[B32_MR][B32_NR];
                for (int i = 0; i < MR; i++)
                        for (int j = 0; j < NR; j++)
                                isum[i][j] = _mm256_setzero_si256();
                for (int g0 = 64 * s; g0 < 64 * s + 64; g0 += run) {
                        __m256i s16[B32_MR][B32_NR];
                        for (int i = 0; i < MR; i++)
                                for (int j = 0; j < NR; j++)
                                        s16[i][j] = _mm256_setzero_si256();
#pragma GCC unroll 8
                        for (int g = g0; g < g0 + run; g++) {
                                __m256i wv[B32_MR];
                                for (int i = 0; i < MR; i++)
                                        wv[i] = _mm256_load_si256((const __m256i *)sl->w[p0 + i][g]);
                                for (int j = 0; j < NR; j++) {
                                        const __m256i av = bcast4(tk->q[j] + 4 * g);
                                        for (int i = 0; i < MR; i++) {
                                                const __m256i p = _mm256_maddubs_epi16(wv[i], av);
                                                s16[i][j] = _mm256_add_epi16(s16[i][j], p);
                                                /* a chain in its register (gemm_block_avx2.c) */
                                                __asm__("" : "+x"(s16[i][j]));
                                        }
                                }
                        }
                        /* isum += sc * (both int16 halves): the run's 16 columns share one scale */
                        for (int i = 0; i < MR; i++) {
                                const __m256i sc = _mm256_load_si256((const __m256i *)sl->sc[p0 + i][g0 / 4]);
                                for (int j = 0; j < NR; j++)
                                        isum[i][j] = _mm256_add_epi32(isum[i][j], _mm256_madd_epi16(s16[i][j], sc));
                        }
                }
                /* the pairs: M of the mins, or the offset out of isum */
                for (int i = 0; i < MR; i++)
                        for (int j = 0; j < NR; j++)
                                M[i][j] = _mm256_setzero_si256();
                for (int jp = 0; jp < npairs; jp++)
                        for (int j = 0; j < NR; j++) {
                                const __m256i bs = bcast4(tk->bs[j] + 2 * npairs * s + 2 * jp);
                                for (int i = 0; i < MR; i++) {
                                        const __m256i pr = _mm256_load_si256((const __m256i *)sl->pr[p0 + i][s][jp]);
                                        if (mins)
                                                M[i][j] = _mm256_add_epi32(M[i][j], _mm256_madd_epi16(pr, bs));
                                        else
                                                isum[i][j] = _mm256_add_epi32(isum[i][j], _mm256_madd_epi16(pr, bs));
                                }
                        }
                /* the float steps of the definition, on 8 rows at once */
                for (int j = 0; j < NR; j++) {
                        const __m256 da = _mm256_set1_ps(tk->d[j][s]);
                        for (int i = 0; i < MR; i++) {
                                float *yp = tk->y[j] + YK_PANEL * (p0 + i);
                                const __m256 dw = _mm256_load_ps(sl->dw[p0 + i][s]);
                                /* the definition's acc = 0 before K's first super-block */
                                __m256 acc = tk->first && s == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(yp);
                                acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, da), _mm256_cvtepi32_ps(isum[i][j]), acc);
                                if (mins) {
                                        const __m256 dm = _mm256_mul_ps(_mm256_load_ps(sl->dm[p0 + i][s]), da);
                                        acc = _mm256_fmadd_ps(_mm256_xor_ps(dm, _mm256_set1_ps(-0.0f)),
                                                              _mm256_cvtepi32_ps(M[i][j]), acc);
                                }
                                _mm256_storeu_ps(yp, acc);
                        }
                }
        }
}

PANEL_TILES(yk_q2_k, void, struct b32_tokens, yk_tile, 4 | YK_MINS)
PANEL_TILES(yk_q3_k, void, struct b32_tokens, yk_tile, 4)
PANEL_TILES(yk_q4_k, void, struct b32_tokens, yk_tile, 8 | YK_MINS | YK_PAIRS4)
PANEL_TILES(yk_q5_k, void, struct b32_tokens, yk_tile, 4 | YK_MINS | YK_PAIRS4)
PANEL_TILES(yk_q6_k, void, struct b32_tokens, yk_tile, 2)

static b32_tile_fn *const yk_tiles_q2_k[B32_MR][B32_NR + 1] = PANEL_TILE_TABLE(yk_q2_k);
static b32_tile_fn *const yk_tiles_q3_k[B32_MR][B32_NR + 1] = PANEL_TILE_TABLE(yk_q3_k);
static b32_tile_fn *const yk_tiles_q4_k[B32_MR][B32_NR + 1] = PANEL_TILE_TABLE(yk_q4_k);
static b32_tile_fn *const yk_tiles_q5_k[B32_MR][B32_NR + 1] = PANEL_TILE_TABLE(yk_q5_k);
static b32_tile_fn *const yk_tiles_q6_k[B32_MR][B32_NR + 1] = PANEL_TILE_TABLE(yk_q6_k);

/*
 * Tokens per tile, with 16 ymm registers: 2 x 3 int16 run sums and 2 x 3
 * int32 isums, 2 weight vectors, a broadcast and a product.
 */
static const struct b32_isa yk_avx2 = {
        .panel = YK_PANEL,
        .panels = YK_PANELS,
        .isum0 = NULL,
        .types = {
                [B32_Q2_K] = { unpack_q2_k, yk_tiles_q2_k, 3, 0 },
                [B32_Q3_K] = { unpack_q3_k, yk_tiles_q3_k, 3, 0 },
                [B32_Q4_K] = { unpack_q4_k, yk_tiles_q4_k, 3, 0 },
                [B32_Q5_K] = { unpack_q5_k, yk_tiles_q5_k, 3, 0 },
                [B32_Q6_K] = { unpack_q6_k, yk_tiles_q6_k, 3, 0 },
        },
};

B32_GEMM(gemm_kquant_avx2, yk_avx2, struct yk_slice)
