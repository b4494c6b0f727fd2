/* SPDX-License-Identifier: MIT */
/*
 * The 32-element block types' GEMM on AVX2 (gemm_block.h), the twin of
 * gemm_block_vnni.c for cpus without AVX-512: panels of 8 rows (a ymm
 * register's int32 lanes), unpacked once per slice, then register tiles of
 * 2 panels x up to 6 tokens.
 *
 * AVX2 has no vpdpbusd. vpmaddubsw multiplies unsigned weight bytes by
 * signed activation bytes and adds pairs into saturating int16, so each
 * type keeps its pair sums below 2^15 (the activations lie in [-127, 127],
 * their quantizers clamp there):
 *  - Q4_0, Q4_1 (q <= 15): 2 * 15 * 127 per pair, so the 8 groups of a
 *    block add up in int16 (30480), then one vpmaddwd by 1 to int32;
 *  - Q5_0, Q5_1 (q <= 31): 2 * 31 * 127 per pair, 4 groups in int16
 *    (31496), two vpmaddwd a block;
 *  - Q8_0: the bytes stay signed, and vpmaddubsw takes |w| times a with
 *    w's sign (vpsignb), 2 * 128 * 127 per pair, widened every group.
 * Every sum is exact, started at -offset * the block sum like the VNNI
 * GEMM's, and the float steps are the definition's (kernels_quant.h), in
 * its order, on 8 rows at once: the portable C's numbers bit for bit.
 *
 * Loops as in gemm_block_vnni.c: slices of YB_SLICE columns of a block of
 * 8 panels (64 rows, 64 KiB unpacked, in L2), pairs of panels (16 KiB, in
 * L1) inside, token groups inside those; the float sums rest in y between
 * blocks. Each int sum is one chain in its register (an empty asm after
 * each add): left alone, GCC made a tree of the adds and kept the
 * products on the stack, 30 % slower.
 *
 * This file is compiled with -ffp-contract=off: every fused multiply-add
 * is written out (_mm256_fmadd_ps).
 */
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>

#include "gemm_block.h"
#include "gemm_panel_tiles.h"

#define YB_PANEL GEMM_B32_PANEL_AVX2
#define YB_PANELS 8        /* panels of a block of rows: 64 rows */
#define YB_SLICE 1024      /* columns unpacked at once */
#define YB_NB (YB_SLICE / 32)
#define YB_MR 2 /* panels of a register tile */
#define YB_NR 6 /* tokens of a register tile at most (the table's) */

/* How a tile sums a block's 8 groups of 4 columns. */
enum yb_mode {
        YB_NIBBLE = 0, /* Q4_0, Q4_1: all 8 in int16 */
        YB_FIVE = 1,   /* Q5_0, Q5_1: 4 at a time in int16 */
        YB_SIGNED = 2, /* Q8_0: |w| times a with w's sign, each widened */
};
#define YB_WITH_M 4 /* flag: Q4_1's and Q5_1's + m * s */

/* A slice of a block of panels, unpacked. */
struct yb_slice {
        /* group g of panel p: bytes 4i..4i+3 are row i's columns 4g..4g+3 (Q8_0 signed, others unsigned) */
        uint8_t w[YB_PANELS][YB_SLICE / 4][32];
        float dw[YB_PANELS][YB_NB][YB_PANEL]; /* d of each row */
        float m[YB_PANELS][YB_NB][YB_PANEL];  /* Q4_1, Q5_1: m of each row */
} __attribute__((aligned(32)));

/* The 16 nibbles at qs as 32 bytes in element order: the low ones, then the high ones. */
ALWAYS_INLINE __m256i nibbles(const uint8_t *qs)
{
        const __m128i v = _mm_loadu_si128((const __m128i *)qs), m4 = _mm_set1_epi8(15);
        return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m4), _mm_and_si128(v, m4));
}

/* Q5_0, Q5_1: bit k of the 32 at qh as 16 in byte k. */
ALWAYS_INLINE __m256i fifth_bits(const uint8_t *qh)
{
        const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, /* bytes 0, 1 */
                                                2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3); /* 2, 3 */
        const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
        int32_t h;

        memcpy(&h, qh, 4);
        const __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32(h), spread), bit);
        return _mm256_and_si256(_mm256_cmpeq_epi8(v, bit), _mm256_set1_epi8(16));
}

/* A block's 32 weights at p in element order: unsigned, Q8_0's as stored. */
ALWAYS_INLINE __m256i block_bytes(enum ggml_type t, const uint8_t *p)
{
        switch (t) {
        case GGML_TYPE_Q8_0:
                return _mm256_loadu_si256((const __m256i *)(p + 2));
        case GGML_TYPE_Q4_0:
                return nibbles(p + 2);
        case GGML_TYPE_Q4_1:
                return nibbles(p + 4);
        case GGML_TYPE_Q5_0:
                return _mm256_or_si256(nibbles(p + 6), fifth_bits(p + 2));
        default: /* Q5_1 */
                return _mm256_or_si256(nibbles(p + 8), fifth_bits(p + 4));
        }
}

ALWAYS_INLINE bool type_has_min(enum ggml_type t)
{
        return t == GGML_TYPE_Q4_1 || t == GGML_TYPE_Q5_1;
}

/* 8 f16 at byte off of each row's block, as floats. */
ALWAYS_INLINE __m256 rows_f16(const uint8_t *const *rows, size_t off)
{
        uint16_t h[YB_PANEL];
        for (int i = 0; i < YB_PANEL; i++)
                memcpy(&h[i], rows[i] + off, 2);
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
}

/* 8 rows of 8 int32 (z[i]: row i) in place into z[g] lane i = row i's int32 g. */
ALWAYS_INLINE void transpose8x8(__m256i *z)
{
        __m256i t[8], u[8];

        for (int p = 0; p < 4; p++) {
                /* rows 2p, 2p + 1 interleaved: int32 0, 1 | 4, 5, and 2, 3 | 6, 7 */
                t[2 * p] = _mm256_unpacklo_epi32(z[2 * p], z[2 * p + 1]);
                t[2 * p + 1] = _mm256_unpackhi_epi32(z[2 * p], z[2 * p + 1]);
        }
        for (int h = 0; h < 2; h++) {
                /* rows 4h..4h+3 of int32 0 | 4, 1 | 5, 2 | 6, 3 | 7 */
                u[4 * h] = _mm256_unpacklo_epi64(t[4 * h], t[4 * h + 2]);
                u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h], t[4 * h + 2]);
                u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
                u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
        }
        for (int g = 0; g < 4; g++) {
                z[g] = _mm256_permute2x128_si256(u[g], u[4 + g], 0x20);
                z[g + 4] = _mm256_permute2x128_si256(u[g], u[4 + g], 0x31);
        }
}

/* The block at byte off of the 8 rows at rows[] into block b of panel p. */
ALWAYS_INLINE void unpack_block(enum ggml_type t, const uint8_t *const *rows, size_t off, struct yb_slice *sl, int p,
                                int b)
{
        __m256i z[8];

        for (int i = 0; i < 8; i++)
                z[i] = block_bytes(t, rows[i] + off);
        transpose8x8(z);
        for (int g = 0; g < 8; g++)
                _mm256_store_si256((__m256i *)sl->w[p][8 * b + g], z[g]);
        /* every type's d leads its block; Q4_1's and Q5_1's m follows it */
        _mm256_store_ps(sl->dw[p][b], rows_f16(rows, off));
        if (type_has_min(t))
                _mm256_store_ps(sl->m[p][b], rows_f16(rows, off + 2));
}

typedef void yb_unpack_fn(const uint8_t *const *rows, size_t off, struct yb_slice *sl, int p, int b);

#define YB_UNPACK(name, T)                                                                                \
        static void unpack_##name(const uint8_t *const *rows, size_t off, struct yb_slice *sl, int p, int b) \
        {                                                                                                 \
                unpack_block(T, rows, off, sl, p, b);                                                     \
        }
YB_UNPACK(q4_0, GGML_TYPE_Q4_0)
YB_UNPACK(q4_1, GGML_TYPE_Q4_1)
YB_UNPACK(q5_0, GGML_TYPE_Q5_0)
YB_UNPACK(q5_1, GGML_TYPE_Q5_1)
YB_UNPACK(q8_0, GGML_TYPE_Q8_0)

/* A token group's activations at the slice's start, and its outputs at the block's first row. */
struct yb_tokens {
        const int8_t *q[YB_NR];
        const float *d[YB_NR]; /* the scale of each block */
        const float *s[YB_NR]; /* Q8_1: the block sums as it keeps them */
        float *y[YB_NR];
        bool first;                  /* the slice starts at column 0 */
        int32_t isum0[YB_NR][YB_NB]; /* -offset * the sum of each block's activations */
};

/* The int32 at p (4 activation bytes) in every lane. */
ALWAYS_INLINE __m256i bcast4(const void *p)
{
        int32_t v;
        memcpy(&v, p, 4);
        return _mm256_set1_epi32(v);
}

/*
 * Block b's exact sums of MR panels from p0 times NR tokens, in int32
 * lanes (row i of a panel in lane i), without the offset term.
 */
ALWAYS_INLINE void yb_block_sums(__m256i in[YB_MR][YB_NR], const struct yb_slice *sl, int p0, int b,
                                 const struct yb_tokens *tk, const int MR, const int NR, const enum yb_mode mode)
{
        const __m256i ones = _mm256_set1_epi16(1);

        for (int i = 0; i < MR; i++)
                for (int j = 0; j < NR; j++)
                        in[i][j] = _mm256_setzero_si256();
        if (mode == YB_SIGNED) {
                for (int g = 8 * b; g < 8 * b + 8; g++) {
                        __m256i wv[YB_MR], wa[YB_MR];
                        for (int i = 0; i < MR; i++) {
                                wv[i] = _mm256_load_si256((const __m256i *)sl->w[p0 + i][g]);
                                wa[i] = _mm256_abs_epi8(wv[i]);
                        }
                        for (int j = 0; j < NR; j++) {
                                const __m256i av = bcast4(tk->q[j] + 4 * g);
                                for (int i = 0; i < MR; i++) {
                                        const __m256i p = _mm256_maddubs_epi16(wa[i], _mm256_sign_epi8(av, wv[i]));
                                        in[i][j] = _mm256_add_epi32(in[i][j], _mm256_madd_epi16(p, ones));
                                        __asm__("" : "+x"(in[i][j]));
                                }
                        }
                }
                return;
        }
        /* the groups that add up in int16 without saturating */
        const int run = mode == YB_NIBBLE ? 8 : 4;
        for (int h = 0; h < 8; h += run) {
                __m256i s16[YB_MR][YB_NR];
                for (int i = 0; i < MR; i++)
                        for (int j = 0; j < NR; j++)
                                s16[i][j] = _mm256_setzero_si256();
#pragma GCC unroll 8
                for (int g = 8 * b + h; g < 8 * b + h + run; g++) {
                        __m256i wv[YB_MR];
                        for (int i = 0; i < MR; i++)
                                wv[i] = _mm256_load_si256((const __m256i *)sl->w[p0 + i][g]);
                        for (int j = 0; j < NR; j++) {
                                const __m256i av = bcast4(tk->q[j] + 4 * g);
                                for (int i = 0; i < MR; i++) {
                                        s16[i][j] = _mm256_add_epi16(s16[i][j], _mm256_maddubs_epi16(wv[i], av));
                                        /* a chain in its register: no tree of the adds, no products kept apart */
                                        __asm__("" : "+x"(s16[i][j]));
                                }
                        }
                }
                for (int i = 0; i < MR; i++)
                        for (int j = 0; j < NR; j++) {
                                in[i][j] = _mm256_add_epi32(in[i][j], _mm256_madd_epi16(s16[i][j], ones));
                        }
        }
}

/*
 * MR panels from p0 times NR tokens over the slice's nb blocks; FLAG: the
 * mode, and YB_WITH_M for Q4_1's and Q5_1's m * s.
 */
ALWAYS_INLINE void yb_tile(const struct yb_slice *sl, int p0, int nb, const struct yb_tokens *tk, const int MR,
                           const int NR, const int FLAG)
{
        const enum yb_mode mode = (enum yb_mode)(FLAG & 3);
        const bool with_m = FLAG & YB_WITH_M;

        for (int b = 0; b < nb; b++) {
                __m256i in[YB_MR][YB_NR];
                yb_block_sums(in, sl, p0, b, tk, MR, NR, mode);
                /* the float steps of the definition, on 8 rows at once; y holds acc between blocks */
                for (int j = 0; j < NR; j++) {
                        const __m256 da = _mm256_set1_ps(tk->d[j][b]);
                        /* Q4_1, Q5_1 (with m) and Q8_0 (signed) have no offset */
                        const bool has_off = mode != YB_SIGNED && !with_m;
                        const __m256i off = has_off ? _mm256_set1_epi32(tk->isum0[j][b]) : _mm256_setzero_si256();
                        for (int i = 0; i < MR; i++) {
                                float *y = tk->y[j] + YB_PANEL * (p0 + i);
                                const __m256 dd = _mm256_mul_ps(_mm256_load_ps(sl->dw[p0 + i][b]), da);
                                const __m256i isum = has_off ? _mm256_add_epi32(in[i][j], off) : in[i][j];
                                __m256 acc = tk->first && b == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(y);
                                acc = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(isum), acc);
                                if (with_m)
                                        acc = _mm256_fmadd_ps(_mm256_load_ps(sl->m[p0 + i][b]),
                                                              _mm256_set1_ps(tk->s[j][b]), acc);
                                _mm256_storeu_ps(y, acc);
                        }
                }
        }
}

typedef void yb_tile_fn(const struct yb_slice *sl, int p0, int nb, const struct yb_tokens *tk);

PANEL_TILES(yb_nibble, struct yb_slice, struct yb_tokens, yb_tile, YB_NIBBLE)
PANEL_TILES(yb_nibble_m, struct yb_slice, struct yb_tokens, yb_tile, YB_NIBBLE | YB_WITH_M)
PANEL_TILES(yb_five, struct yb_slice, struct yb_tokens, yb_tile, YB_FIVE)
PANEL_TILES(yb_five_m, struct yb_slice, struct yb_tokens, yb_tile, YB_FIVE | YB_WITH_M)
PANEL_TILES(yb_signed, struct yb_slice, struct yb_tokens, yb_tile, YB_SIGNED)

/* How a weight type meets its activations here. */
struct yb_kind {
        yb_unpack_fn *unpack;
        yb_tile_fn *const (*tiles)[YB_NR + 1]; /* [MR - 1][NR] */
        int nr;     /* tokens of a tile: as many as the registers hold with the mode's sums */
        int offset; /* the unsigned bytes' excess over w */
        const int8_t *q; /* the activations' bytes */
};

static yb_tile_fn *const yb_tiles_nibble[YB_MR][YB_NR + 1] = PANEL_TILE_TABLE(yb_nibble);
static yb_tile_fn *const yb_tiles_nibble_m[YB_MR][YB_NR + 1] = PANEL_TILE_TABLE(yb_nibble_m);
static yb_tile_fn *const yb_tiles_five[YB_MR][YB_NR + 1] = PANEL_TILE_TABLE(yb_five);
static yb_tile_fn *const yb_tiles_five_m[YB_MR][YB_NR + 1] = PANEL_TILE_TABLE(yb_five_m);
static yb_tile_fn *const yb_tiles_signed[YB_MR][YB_NR + 1] = PANEL_TILE_TABLE(yb_signed);

static bool yb_kind_of(enum ggml_type t, const struct act_blocks *a, struct yb_kind *k)
{
        const bool q8_0 = a->scheme == ACT_SCHEME_Q8_0, q8_1 = a->scheme == ACT_SCHEME_Q8_1;

        /*
         * tokens per tile, with 16 ymm registers (2 weight vectors, a
         * broadcast, a product): 2 x 5 int16 sums (nibbles), 2 x 3 int16 and
         * int32 sums (five bits), 2 x 3 int32 sums and |w| (Q8_0); measured
         * on TinyLlama's shape, 2 x 6 and 2 x 4 spill and run slower
         */
        const int8_t *q = a->scheme == ACT_SCHEME_TOKEN_I8 ? a->tok.q8 : a->q;

        switch (t) {
        case GGML_TYPE_Q4_0:
                *k = (struct yb_kind) { unpack_q4_0, yb_tiles_nibble, 5, 8, q };
                return q8_0 || a->scheme == ACT_SCHEME_TOKEN_I8;
        case GGML_TYPE_Q4_1:
                *k = (struct yb_kind) { unpack_q4_1, yb_tiles_nibble_m, 5, 0, q };
                return q8_1;
        case GGML_TYPE_Q5_0:
                *k = (struct yb_kind) { unpack_q5_0, yb_tiles_five, 3, 16, q };
                return q8_0;
        case GGML_TYPE_Q5_1:
                *k = (struct yb_kind) { unpack_q5_1, yb_tiles_five_m, 3, 0, q };
                return q8_1;
        case GGML_TYPE_Q8_0:
                *k = (struct yb_kind) { unpack_q8_0, yb_tiles_signed, 3, 0, q };
                return q8_0;
        default:
                return false;
        }
}

/* Tokens [t0, t0 + nr): their activations from column k0 (nb blocks), their outputs from row rb. */
static void yb_tokens_at(struct yb_tokens *tk, const struct yb_kind *k, const struct act_blocks *a, int64_t K,
                         int64_t n_tok, int64_t t0, int nr, int64_t k0, int nb, float *y, size_t ys, int64_t rb)
{
        const __m256i neg_off = _mm256_set1_epi32(-k->offset);

        tk->first = k0 == 0;
        for (int j = 0; j < nr; j++) {
                const int64_t t = t0 + j, b0 = t * (K / 32) + k0 / 32;
                tk->q[j] = k->q + t * K + k0;
                tk->d[j] = a->d + b0;
                tk->s[j] = a->s ? a->s + b0 : NULL;
                tk->y[j] = y + t * ys + rb;
                for (int b = 0; k->offset && b < nb; b += 8) {
                        /* whole vectors (isum0[j] holds YB_NB): the tile's broadcasts take them from the store */
                        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(nb - b),
                                                             _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                        const __m256i as = _mm256_maskload_epi32(a->asum + b0 + b, m);
                        _mm256_storeu_si256((__m256i *)(tk->isum0[j] + b), _mm256_mullo_epi32(as, neg_off));
                }
        }
        /* the next group's block sums and scales into L1 while this group's tiles run */
        for (int64_t t = t0 + nr; t < MIN(t0 + 2 * nr, n_tok); t++) {
                const int64_t b0 = t * (K / 32) + k0 / 32;
                for (int b = 0; b < nb + 15; b += 16) {
                        const int64_t e = b0 + MIN(b, nb - 1);
                        if (k->offset)
                                _mm_prefetch((const char *)(a->asum + e), _MM_HINT_T0);
                        _mm_prefetch((const char *)(a->d + e), _MM_HINT_T0);
                }
        }
}

/* np panels of rows from rb, all tokens, columns [k0, k0 + YB_SLICE) or to K. */
static void yb_slice_run(const struct npu_weight *w, const struct yb_kind *k, const struct act_blocks *a,
                         int64_t n_tok, float *y, size_t ys, int64_t rb, int np, int64_t k0, struct yb_slice *sl)
{
        const int64_t K = w->cols, kb0 = k0 / 32;
        const size_t bb = ggml_type_block_bytes(w->type);
        const int nb = (int)(MIN(YB_SLICE, K - k0) / 32);

        for (int p = 0; p < np; p++) {
                const uint8_t *rows[YB_PANEL];
                for (int i = 0; i < YB_PANEL; i++)
                        rows[i] = (const uint8_t *)w->data + (rb + YB_PANEL * p + i) * w->row_bytes;
                for (int b = 0; b < nb; b++)
                        k->unpack(rows, (size_t)(kb0 + b) * bb, sl, p, b);
        }
        /*
         * The next slice's weights are prefetched into L2 a few lines per tile
         * while this one runs: this block's next slice, or after the last one
         * the first slice of the rows that follow.
         */
        const bool last = k0 + YB_SLICE >= K;
        const int64_t pf_k0 = last ? 0 : k0 + YB_SLICE;
        const int64_t pf_r0 = last ? rb + YB_PANEL * np : rb;
        const int64_t pf_rows = last ? MIN(YB_PANEL * YB_PANELS, w->rows - pf_r0) : YB_PANEL * np;
        const size_t pf_bytes = (size_t)(MIN(YB_SLICE, K - pf_k0) / 32) * bb;
        const int64_t pf_row_lines = (int64_t)(pf_bytes + 63) / 64 + 1, pf_lines = pf_row_lines * MAX(pf_rows, 0);
        const int64_t n_calls = (np + YB_MR - 1) / YB_MR * ((n_tok + k->nr - 1) / k->nr);
        const int64_t pf_per_call = (pf_lines + n_calls - 1) / n_calls;
        int64_t pf = 0;

        /* pairs of panels outside: their 16 KiB of weights stay in L1 while the token groups pass */
        for (int p = 0; p < np; p += YB_MR) {
                const int mr = MIN(YB_MR, np - p);
                for (int64_t t0 = 0; t0 < n_tok; t0 += k->nr) {
                        const int nr = (int)MIN(k->nr, n_tok - t0);
                        struct yb_tokens tk;
                        for (int64_t e = MIN(pf + pf_per_call, pf_lines); pf < e; pf++) {
                                const uint8_t *row = (const uint8_t *)w->data + (pf_r0 + pf / pf_row_lines) * w->row_bytes;
                                _mm_prefetch((const char *)(row + pf_k0 / 32 * bb) + 64 * (pf % pf_row_lines),
                                             _MM_HINT_T1);
                        }
                        yb_tokens_at(&tk, k, a, K, n_tok, t0, nr, k0, nb, y, ys, rb);
                        k->tiles[mr - 1][nr](sl, p, nb, &tk);
                }
        }
}

int64_t gemm_block32_avx2(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok, float *y, size_t ys,
                          int64_t r0, int64_t r1)
{
        const int64_t np_all = (r1 - r0) / YB_PANEL;
        struct yb_slice sl;
        struct yb_kind k;

        if (!yb_kind_of(w->type, a, &k))
                return r0;
        for (int64_t pb = 0; pb < np_all; pb += YB_PANELS) {
                const int np = (int)MIN(YB_PANELS, np_all - pb);
                const int64_t rb = r0 + YB_PANEL * pb;
                for (int64_t k0 = 0; k0 < w->cols; k0 += YB_SLICE)
                        yb_slice_run(w, &k, a, n_tok, y, ys, rb, np, k0, &sl);
        }
        return r0 + YB_PANEL * np_all;
}
