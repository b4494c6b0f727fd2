/* SPDX-License-Identifier: MIT */
/*
 * The 32-element block types' GEMM on AVX-512 VNNI (gemm_block.h): Q4_0,
 * Q4_1, Q5_0, Q5_1 and Q8_0 panels unpacked once per slice, then a
 * register tile of 2 panels x 6 tokens.
 *
 * Loops as in the K-quant GEMM (gemm_kquant_vnni.c), for a block of up to
 * 4 panels (64 rows, a thread's chunk): slices of B32_SLICE columns
 * outside, each unpacked once (64 KiB of weights, in L2); then pairs of
 * panels (32 KiB, in L1), and inside them the token groups of B32_NR, each
 * walking the slice block after block with its float sums in registers.
 *
 * Each tile does, per block of 32 columns, a row vector and a token, 8
 * vpdpbusd on an int32 sum started at -offset * the block sum, then the
 * float steps: one vcvtdq2ps, one vmulps (dw * da) and one or two
 * vfmadd.
 *
 * This file is compiled with -ffp-contract=off: the float steps are the
 * definition's (kernels_quant.h), written out with _mm512_fmadd_ps.
 */
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")
#include <immintrin.h>

#include "gemm_block.h"
#include "gemm_panel_zmm.h"

#define B32_SLICE 1024 /* columns unpacked at once */
#define B32_NB (B32_SLICE / 32)
#define B32_MR PANEL_MR /* panels of a register tile */
#define B32_NR PANEL_NR /* tokens of a register tile */

/* A slice of a block of panels, unpacked. */
struct b32_slice {
        /* group g of panel p: bytes 4i..4i+3 are row i's columns 4g..4g+3, unsigned */
        uint8_t w[GEMM_B32_PANELS][B32_SLICE / 4][64];
        float dw[GEMM_B32_PANELS][B32_NB][GEMM_B32_PANEL]; /* d of each row */
        float m[GEMM_B32_PANELS][B32_NB][GEMM_B32_PANEL];  /* Q4_1, Q5_1: m of each row */
} __attribute__((aligned(64)));

/* The 16 nibbles at qs as 32 bytes in element order: the low ones, then the high ones. */
ALWAYS_INLINE __m256i nibbles(const uint8_t *qs)
{
        const __m128i v = _mm_loadu_si128((const __m128i *)qs), m4 = _mm_set1_epi8(15);
        return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m4), _mm_and_si128(v, m4));
}

/* Q5_0, Q5_1: bit k of the 32 at qh as 16 in byte k. */
ALWAYS_INLINE __m256i fifth_bits(const uint8_t *qh)
{
        uint32_t h;
        memcpy(&h, qh, 4);
        return _mm256_maskz_mov_epi8((__mmask32)h, _mm256_set1_epi8(16));
}

/* A block's 32 weights at p, unsigned, in element order. */
ALWAYS_INLINE __m256i block_bytes(enum ggml_type t, const uint8_t *p)
{
        switch (t) {
        case GGML_TYPE_Q8_0:
                return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + 2)), _mm256_set1_epi8((char)0x80));
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

/* 16 f16 at byte off of each row's block, as floats. */
ALWAYS_INLINE __m512 rows_f16(const uint8_t *const *rows, size_t off)
{
        uint16_t h[GEMM_B32_PANEL];
        for (int i = 0; i < GEMM_B32_PANEL; i++)
                memcpy(&h[i], rows[i] + off, 2);
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)h));
}

/* The block at byte off of the 16 rows at rows[] into block b of panel p. */
ALWAYS_INLINE void unpack_block(enum ggml_type t, const uint8_t *const *rows, size_t off, struct b32_slice *sl, int p,
                                int b)
{
        __m512i z[8];

        for (int i = 0; i < 8; i++)
                z[i] = _mm512_inserti64x4(_mm512_castsi256_si512(block_bytes(t, rows[2 * i] + off)),
                                          block_bytes(t, rows[2 * i + 1] + off), 1);
        transpose16x8(z);
        for (int g = 0; g < 8; g++)
                _mm512_store_si512(sl->w[p][8 * b + g], z[g]);
        /* every type's d leads its block; Q4_1's and Q5_1's m follows it */
        _mm512_store_ps(sl->dw[p][b], rows_f16(rows, off));
        if (type_has_min(t))
                _mm512_store_ps(sl->m[p][b], rows_f16(rows, off + 2));
}

typedef void b32_unpack_fn(const uint8_t *const *rows, size_t off, struct b32_slice *sl, int p, int b);

#define B32_UNPACK(name, T)                                                                               \
        static void unpack_##name(const uint8_t *const *rows, size_t off, struct b32_slice *sl, int p, int b) \
        {                                                                                                 \
                unpack_block(T, rows, off, sl, p, b);                                                     \
        }
B32_UNPACK(q4_0, GGML_TYPE_Q4_0)
B32_UNPACK(q4_1, GGML_TYPE_Q4_1)
B32_UNPACK(q5_0, GGML_TYPE_Q5_0)
B32_UNPACK(q5_1, GGML_TYPE_Q5_1)
B32_UNPACK(q8_0, GGML_TYPE_Q8_0)

/* A token group's activations at the slice's start, and its outputs at the block's first row. */
struct b32_tokens {
        const int8_t *q[B32_NR];
        const float *d[B32_NR]; /* the scale of each block */
        const float *s[B32_NR]; /* Q8_1: the block sums as it keeps them */
        float *y[B32_NR];
        bool first;                  /* the slice starts at column 0 */
        int32_t isum0[B32_NR][B32_NB]; /* -offset * the sum of each block's activations */
};

/*
 * MR panels from p0 times NR tokens over the slice's nb blocks. WITH_M adds
 * Q4_1's and Q5_1's m * s.
 */
ALWAYS_INLINE void b32_tile(const struct b32_slice *sl, int p0, int nb, const struct b32_tokens *tk, const int MR,
                            const int NR, const bool WITH_M)
{
        __m512 acc[B32_MR][B32_NR];

        /* the definition's acc = 0 before K's first block */
        for (int i = 0; i < MR; i++)
                for (int j = 0; j < NR; j++)
                        acc[i][j] = tk->first ? _mm512_setzero_ps()
                                              : _mm512_loadu_ps(tk->y[j] + GEMM_B32_PANEL * (p0 + i));
        for (int b = 0; b < nb; b++) {
                __m512i in[B32_MR][B32_NR];
                for (int i = 0; i < MR; i++)
                        for (int j = 0; j < NR; j++)
                                in[i][j] = _mm512_set1_epi32(tk->isum0[j][b]);
                for (int gg = 0; gg < 8; gg++) {
                        const int g = 8 * b + gg;
                        const uint8_t *wg[PANEL_MR] = { sl->w[p0][g], sl->w[p0 + MR - 1][g] };
                        panel_group_dot(in, wg, tk->q, g, MR, NR);
                }
                /* the float steps of the definition, on 16 rows at once */
                for (int j = 0; j < NR; j++) {
                        const __m512 da = _mm512_set1_ps(tk->d[j][b]);
                        for (int i = 0; i < MR; i++) {
                                const __m512 dd = _mm512_mul_ps(_mm512_load_ps(sl->dw[p0 + i][b]), da);
                                acc[i][j] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(in[i][j]), acc[i][j]);
                                if (WITH_M)
                                        acc[i][j] = _mm512_fmadd_ps(_mm512_load_ps(sl->m[p0 + i][b]),
                                                                    _mm512_set1_ps(tk->s[j][b]), acc[i][j]);
                        }
                }
        }
        for (int i = 0; i < MR; i++)
                for (int j = 0; j < NR; j++)
                        _mm512_storeu_ps(tk->y[j] + GEMM_B32_PANEL * (p0 + i), acc[i][j]);
}

typedef void b32_tile_fn(const struct b32_slice *sl, int p0, int nb, const struct b32_tokens *tk);

PANEL_TILES(b32_plain, struct b32_slice, struct b32_tokens, b32_tile, false)
PANEL_TILES(b32_min, struct b32_slice, struct b32_tokens, b32_tile, true)

static b32_tile_fn *const b32_tiles[2][B32_MR][B32_NR + 1] = { PANEL_TILE_TABLE(b32_plain), PANEL_TILE_TABLE(b32_min) };

/* How a weight type meets its activations here. */
struct b32_kind {
        b32_unpack_fn *unpack;
        int offset; /* the unsigned bytes' excess over w */
        bool min;
        const int8_t *q; /* the activations' bytes */
};

static bool b32_kind_of(enum ggml_type t, const struct act_blocks *a, struct b32_kind *k)
{
        const bool q8_0 = a->scheme == ACT_SCHEME_Q8_0, q8_1 = a->scheme == ACT_SCHEME_Q8_1;

        *k = (struct b32_kind) { .q = a->scheme == ACT_SCHEME_TOKEN_I8 ? a->tok.q8 : a->q };
        switch (t) {
        case GGML_TYPE_Q4_0:
                k->unpack = unpack_q4_0;
                k->offset = 8;
                return q8_0 || a->scheme == ACT_SCHEME_TOKEN_I8;
        case GGML_TYPE_Q5_0:
                k->unpack = unpack_q5_0;
                k->offset = 16;
                return q8_0;
        case GGML_TYPE_Q8_0:
                k->unpack = unpack_q8_0;
                k->offset = 128;
                return q8_0;
        case GGML_TYPE_Q4_1:
                k->unpack = unpack_q4_1;
                k->min = true;
                return q8_1;
        case GGML_TYPE_Q5_1:
                k->unpack = unpack_q5_1;
                k->min = true;
                return q8_1;
        default:
                return false;
        }
}

/* Tokens [t0, t0 + nr): their activations from column k0 (nb blocks), their outputs from row rb. */
static void b32_tokens_at(struct b32_tokens *tk, const struct b32_kind *k, const struct act_blocks *a, int64_t K,
                          int64_t n_tok, int64_t t0, int nr, int64_t k0, int nb, float *y, size_t ys, int64_t rb)
{
        const __m512i neg_off = _mm512_set1_epi32(-k->offset);

        tk->first = k0 == 0;
        for (int j = 0; j < nr; j++) {
                const int64_t t = t0 + j, b0 = t * (K / 32) + k0 / 32;
                tk->q[j] = k->q + t * K + k0;
                tk->d[j] = a->d + b0;
                tk->s[j] = a->s ? a->s + b0 : NULL;
                tk->y[j] = y + t * ys + rb;
                for (int b = 0; b < nb; b += 16) {
                        const __mmask16 m = (__mmask16)(nb - b >= 16 ? 0xffff : (1u << (nb - b)) - 1);
                        const __m512i as = k->offset ? _mm512_maskz_loadu_epi32(m, a->asum + b0 + b)
                                                     : _mm512_setzero_si512();
                        /* a whole vector (isum0[j] holds B32_NB): the tile's loads take it from the store */
                        _mm512_storeu_si512(tk->isum0[j] + b, _mm512_mullo_epi32(as, neg_off));
                }
        }
        /*
         * the next group's block sums and scales into L1 while this group's
         * tiles run (read here and in the tile, they missed the caches)
         */
        for (int64_t t = t0 + B32_NR; t < MIN(t0 + 2 * B32_NR, n_tok); t++) {
                const int64_t b0 = t * (K / 32) + k0 / 32;
                for (int b = 0; b < nb + 15; b += 16) {
                        const int64_t e = b0 + MIN(b, nb - 1);
                        if (k->offset)
                                _mm_prefetch((const char *)(a->asum + e), _MM_HINT_T0);
                        _mm_prefetch((const char *)(a->d + e), _MM_HINT_T0);
                }
        }
}

/* np panels of rows from rb, all tokens, columns [k0, k0 + B32_SLICE) or to K. */
static void b32_slice_run(const struct npu_weight *w, const struct b32_kind *k, const struct act_blocks *a,
                          int64_t n_tok, float *y, size_t ys, int64_t rb, int np, int64_t k0, struct b32_slice *sl)
{
        const int64_t K = w->cols, kb0 = k0 / 32;
        const size_t bb = ggml_type_block_bytes(w->type);
        const int nb = (int)(MIN(B32_SLICE, K - k0) / 32);

        for (int p = 0; p < np; p++) {
                const uint8_t *rows[GEMM_B32_PANEL];
                for (int i = 0; i < GEMM_B32_PANEL; i++)
                        rows[i] = (const uint8_t *)w->data + (rb + GEMM_B32_PANEL * p + i) * w->row_bytes;
                for (int b = 0; b < nb; b++)
                        k->unpack(rows, (size_t)(kb0 + b) * bb, sl, p, b);
        }
        /*
         * The next slice's weights are prefetched into L2 a few lines per tile
         * while this one runs: this block's next slice, or after the last one
         * the first slice of the rows that follow.
         */
        const bool last = k0 + B32_SLICE >= K;
        const int64_t pf_k0 = last ? 0 : k0 + B32_SLICE;
        const int64_t pf_r0 = last ? rb + GEMM_B32_PANEL * np : rb;
        const int64_t pf_rows = last ? MIN(GEMM_B32_PANEL * GEMM_B32_PANELS, w->rows - pf_r0) : GEMM_B32_PANEL * np;
        const size_t pf_bytes = (size_t)(MIN(B32_SLICE, K - pf_k0) / 32) * bb;
        const int64_t pf_row_lines = (int64_t)(pf_bytes + 63) / 64 + 1, pf_lines = pf_row_lines * MAX(pf_rows, 0);
        const int64_t n_calls = (np + B32_MR - 1) / B32_MR * ((n_tok + B32_NR - 1) / B32_NR);
        const int64_t pf_per_call = (pf_lines + n_calls - 1) / n_calls;
        int64_t pf = 0;

        /* pairs of panels outside: their 32 KiB of weights stay in L1 while the token groups pass */
        for (int p = 0; p < np; p += B32_MR) {
                const int mr = MIN(B32_MR, np - p);
                for (int64_t t0 = 0; t0 < n_tok; t0 += B32_NR) {
                        const int nr = (int)MIN(B32_NR, n_tok - t0);
                        struct b32_tokens tk;
                        for (int64_t e = MIN(pf + pf_per_call, pf_lines); pf < e; pf++) {
                                const uint8_t *row = (const uint8_t *)w->data + (pf_r0 + pf / pf_row_lines) * w->row_bytes;
                                _mm_prefetch((const char *)(row + pf_k0 / 32 * bb) + 64 * (pf % pf_row_lines),
                                             _MM_HINT_T1);
                        }
                        b32_tokens_at(&tk, k, a, K, n_tok, t0, nr, k0, nb, y, ys, rb);
                        b32_tiles[k->min][mr - 1][nr](sl, p, nb, &tk);
                }
        }
}

int64_t gemm_block32_vnni(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok, float *y, size_t ys,
                          int64_t r0, int64_t r1)
{
        const int64_t np_all = (r1 - r0) / GEMM_B32_PANEL;
        struct b32_slice sl;
        struct b32_kind k;

        if (!b32_kind_of(w->type, a, &k))
                return r0;
        for (int64_t pb = 0; pb < np_all; pb += GEMM_B32_PANELS) {
                const int np = (int)MIN(GEMM_B32_PANELS, np_all - pb);
                const int64_t rb = r0 + GEMM_B32_PANEL * pb;
                for (int64_t k0 = 0; k0 < w->cols; k0 += B32_SLICE)
                        b32_slice_run(w, &k, a, n_tok, y, ys, rb, np, k0, &sl);
        }
        return r0 + GEMM_B32_PANEL * np_all;
}
