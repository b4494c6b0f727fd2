/* SPDX-License-Identifier: MIT */
/*
 * The slice driver of the block GEMMs, one for every instruction set and
 * block size: the 32-element types' gemm_block_vnni.c (panels of 16 rows,
 * 4 to a block of rows) and gemm_block_avx2.c (panels of 8 rows, 8 to a
 * block), and the K-quants' gemm_kquant_avx2.c (blocks of 256, panels of
 * 8 rows) each describe themselves in a constant struct b32_isa (panel
 * shape, an unpack function, a tile table and a tile's tokens for each
 * type) and call b32_drive. The driver owns the loops:
 *  - a block of rows (64 rows, a thread's chunk), in slices of B32_SLICE
 *    columns, each unpacked once into the file's slice (64 KiB of weights,
 *    in L2), a weight block (32 or QK_K columns) at a time;
 *  - the next slice's weights prefetched into L2 a few lines per tile;
 *  - inside a slice, pairs of panels (in L1), and inside those the token
 *    groups, with the next group's block sums and scales prefetched.
 * The slice's layout and the tiles' arithmetic stay with each file; the
 * driver hands the slice on as a pointer.
 *
 * Include after the file's #pragma GCC target and <immintrin.h>.
 * Everything here is inlined into the file's entry point with its
 * constant descriptor, so the shape is constants there.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "gemm_block.h"
#include "gemm_panel_tiles.h"

#define B32_SLICE 1024 /* columns unpacked at once */
#define B32_NB (B32_SLICE / 32) /* blocks of a slice at most */
#define B32_MR 2 /* panels of a register tile */
#define B32_NR 6 /* tokens of a register tile at most (the tables') */

/*
 * The members of a file's slice: a block of PANELS panels of PANEL rows,
 * unpacked. Group g of panel p: bytes 4i..4i+3 are row i's columns
 * 4g..4g+3.
 */
#define B32_SLICE_MEMBERS(PANELS, PANEL)                                                                  \
        uint8_t w[PANELS][B32_SLICE / 4][4 * (PANEL)];                                                    \
        float dw[PANELS][B32_NB][PANEL]; /* d of each row */                                              \
        float m[PANELS][B32_NB][PANEL]   /* Q4_1, Q5_1: m of each row */

/* A token group's activations at the slice's start, and its outputs at the block's first row. */
struct b32_tokens {
        const int8_t *q[B32_NR];
        const float *d[B32_NR]; /* the scale of each block */
        const float *s[B32_NR]; /* Q8_1: the block sums as it keeps them */
        /*
         * Q8_K: the sums of each 16 activations, or of each 32 (in bs32)
         * for the types whose mins go by 32 columns (k_mins_by_32)
         */
        const int16_t *bs[B32_NR];
        float *y[B32_NR];
        bool first;                    /* the slice starts at column 0 */
        int32_t isum0[B32_NR][B32_NB]; /* -offset * the sum of each block's activations */
        int16_t bs32[B32_NR][B32_NB];
};

/* The block at byte off of a panel's rows at rows[] into block b of panel p of the slice sl. */
typedef void b32_unpack_fn(const uint8_t *const *rows, size_t off, void *sl, int p, int b);
/* MR panels from p0 times NR tokens over the slice's nb blocks (PANEL_TILES' functions). */
typedef void b32_tile_fn(const void *sl, int p0, int nb, const struct b32_tokens *tk);
/* isum0[b] = -offset * asum[b] for b < nb, as far as the file's tiles read it. */
typedef void b32_isum0_fn(int32_t *isum0, const int32_t *asum, int nb, int offset);

/* The types of these GEMMs, the index of an instruction set's table (which may leave some out). */
enum b32_type_index {
        B32_Q4_0,
        B32_Q4_1,
        B32_Q5_0,
        B32_Q5_1,
        B32_Q8_0,
        B32_Q2_K,
        B32_Q3_K,
        B32_Q4_K,
        B32_Q5_K,
        B32_Q6_K,
        B32_TYPES
};

/* How a weight type runs on an instruction set. */
struct b32_type {
        b32_unpack_fn *unpack; /* NULL: the set's GEMM does not take the type */
        b32_tile_fn *const (*tiles)[B32_NR + 1]; /* [MR - 1][NR] */
        int nr;                                  /* tokens of a tile */
        int offset;                              /* the unpacked bytes' excess over w */
        /*
         * A block of a panel whose rows are a group interleaved
         * (quant_interleave.h, groups of the panel's rows): rows[0] the
         * group, off the block's in it. NULL: interleaved weights are not
         * taken.
         */
        b32_unpack_fn *unpack_interleaved;
};

struct b32_isa {
        int panel;  /* rows of a panel (at most GEMM_B32_PANEL) */
        int panels; /* panels of a block of rows */
        b32_isum0_fn *isum0; /* NULL where no type has an offset */
        struct b32_type types[B32_TYPES];
};

/*
 * unpack_q4_0 ... unpack_q8_0, each type's b32_unpack_fn: the file's
 * unpack_block(T, rows, off, sl, p, b) with T a constant.
 */
#define B32_UNPACK(unpack_block, name, T)                                                                 \
        static void unpack_##name(const uint8_t *const *rows, size_t off, void *sl, int p, int b)          \
        {                                                                                                 \
                unpack_block(T, rows, off, sl, p, b);                                                     \
        }
#define B32_UNPACKERS(unpack_block)                                                                       \
        B32_UNPACK(unpack_block, q4_0, GGML_TYPE_Q4_0)                                                    \
        B32_UNPACK(unpack_block, q4_1, GGML_TYPE_Q4_1)                                                    \
        B32_UNPACK(unpack_block, q5_0, GGML_TYPE_Q5_0)                                                    \
        B32_UNPACK(unpack_block, q5_1, GGML_TYPE_Q5_1)                                                    \
        B32_UNPACK(unpack_block, q8_0, GGML_TYPE_Q8_0)

/* The 16 nibbles at qs as 32 bytes in element order: the low ones, then the high ones. */
ALWAYS_INLINE __m256i nibbles(const uint8_t *qs)
{
        const __m128i v = _mm_loadu_si128((const __m128i *)qs), m4 = _mm_set1_epi8(15);
        return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m4), _mm_and_si128(v, m4));
}

/* Q4_K, Q5_K: a min for each 32 columns (the other K-quants with mins, Q2_K, have one for each 16). */
ALWAYS_INLINE bool k_mins_by_32(enum ggml_type t)
{
        return t == GGML_TYPE_Q4_K || t == GGML_TYPE_Q5_K;
}

ALWAYS_INLINE bool type_has_min(enum ggml_type t)
{
        return t == GGML_TYPE_Q4_1 || t == GGML_TYPE_Q5_1;
}

/* Where a block's parts lie: the 4- and 5-bit types' 16 bytes of nibbles, Q8_0's 32 bytes. */
ALWAYS_INLINE size_t block_qs(enum ggml_type t)
{
        return t == GGML_TYPE_Q5_1 ? 8 : t == GGML_TYPE_Q5_0 ? 6 : t == GGML_TYPE_Q4_1 ? 4 : 2;
}

/* Q5_0's and Q5_1's 32 fifth bits (after d, and Q5_1's m); 0 for the others. */
ALWAYS_INLINE size_t block_qh(enum ggml_type t)
{
        return t == GGML_TYPE_Q5_1 ? 4 : t == GGML_TYPE_Q5_0 ? 2 : 0;
}

/*
 * The f16 at byte off of the n rows at rows[] (n a multiple of 8), as
 * floats into f (32-byte aligned): each type's d leads its block, and
 * Q4_1's and Q5_1's m follows it.
 */
ALWAYS_INLINE void rows_f16(float *f, const uint8_t *const *rows, size_t off, const int n)
{
        for (int i = 0; i < n; i += 8) {
                uint16_t h[8];
                for (int k = 0; k < 8; k++)
                        memcpy(&h[k], rows[i + k] + off, 2);
                _mm256_store_ps(f + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h)));
        }
}

/* A panel's n rows' scales of the block at byte off into dw (and m). */
ALWAYS_INLINE void unpack_scales(enum ggml_type t, const uint8_t *const *rows, size_t off, float *dw, float *m,
                                 const int n)
{
        rows_f16(dw, rows, off, n);
        if (type_has_min(t))
                rows_f16(m, rows, off + 2, n);
}

/* A GEMM's call: the weight, its type's entry, the activations and the outputs; sl the file's slice. */
struct b32_run {
        const struct b32_isa *isa;
        const struct b32_type *ty;
        const struct npu_weight *w;
        const struct act_blocks *a;
        const int8_t *q; /* the activations' bytes */
        int64_t be;      /* columns of a weight block: 32 or QK_K */
        int64_t nbk;     /* blocks of a row */
        int64_t n_tok;
        float *y;
        size_t ys;
        void *sl;
};

/* isa's entry for the type t with a's activations, or NULL where this GEMM does not take them. */
ALWAYS_INLINE const struct b32_type *b32_type_of(const struct b32_isa *isa, enum ggml_type t,
                                                 const struct act_blocks *a)
{
        /* the weight type of each entry */
        static const enum ggml_type types[B32_TYPES] = {
                [B32_Q4_0] = GGML_TYPE_Q4_0, [B32_Q4_1] = GGML_TYPE_Q4_1, [B32_Q5_0] = GGML_TYPE_Q5_0,
                [B32_Q5_1] = GGML_TYPE_Q5_1, [B32_Q8_0] = GGML_TYPE_Q8_0, [B32_Q2_K] = GGML_TYPE_Q2_K,
                [B32_Q3_K] = GGML_TYPE_Q3_K, [B32_Q4_K] = GGML_TYPE_Q4_K, [B32_Q5_K] = GGML_TYPE_Q5_K,
                [B32_Q6_K] = GGML_TYPE_Q6_K,
        };
        int i = 0;

        /* each type with the activations ggml pairs it with; Q4_0 also with w4a8's */
        if (a->scheme != quant_type_act_scheme(t) && !(t == GGML_TYPE_Q4_0 && a->scheme == ACT_SCHEME_TOKEN_I8))
                return NULL;
        while (i < B32_TYPES && types[i] != t)
                i++;
        return i < B32_TYPES && isa->types[i].unpack ? &isa->types[i] : NULL;
}

/* Q8_K's sums of 16 activations at bs, pairs added: the sums of 32 of nsb blocks of QK_K. */
ALWAYS_INLINE void sums_by_32(int16_t *bs32, const int16_t *bs, int nsb)
{
        for (int s = 0; s < nsb; s++) {
                const __m128i b0 = _mm_loadu_si128((const __m128i *)(bs + 16 * s));
                const __m128i b1 = _mm_loadu_si128((const __m128i *)(bs + 16 * s + 8));
                _mm_storeu_si128((__m128i *)(bs32 + 8 * s), _mm_hadd_epi16(b0, b1));
        }
}

/*
 * Tokens [t0, t0 + nr): their activations from column k0 (block kb0, nb
 * blocks), their outputs from row rb.
 */
ALWAYS_INLINE void b32_tokens_at(struct b32_tokens *tk, const struct b32_run *r, int64_t t0, int nr, int64_t k0,
                                 int64_t kb0, int nb, int64_t rb)
{
        const struct act_blocks *a = r->a;
        const int64_t K = r->w->cols;
        const int offset = r->ty->offset;

        tk->first = k0 == 0;
        for (int j = 0; j < nr; j++) {
                const int64_t t = t0 + j, b0 = t * r->nbk + kb0;
                tk->q[j] = r->q + t * K + k0;
                tk->d[j] = a->d + b0;
                tk->s[j] = a->s ? a->s + b0 : NULL;
                tk->y[j] = r->y + t * r->ys + rb;
                if (r->isa->isum0)
                        r->isa->isum0(tk->isum0[j], offset ? a->asum + b0 : NULL, nb, offset);
                tk->bs[j] = a->bsums ? a->bsums + t * (K / 16) + k0 / 16 : NULL;
                if (a->bsums && k_mins_by_32(r->w->type)) {
                        sums_by_32(tk->bs32[j], tk->bs[j], nb);
                        tk->bs[j] = tk->bs32[j];
                }
        }
        /*
         * the next group's block sums and scales into L1 while this group's
         * tiles run (read here and in the tile, they missed the caches)
         */
        for (int64_t t = t0 + nr; t < MIN(t0 + 2 * nr, r->n_tok); t++) {
                const int64_t b0 = t * r->nbk + kb0;
                for (int b = 0; b < nb + 15; b += 16) {
                        const int64_t e = b0 + MIN(b, nb - 1);
                        if (offset)
                                _mm_prefetch((const char *)(a->asum + e), _MM_HINT_T0);
                        _mm_prefetch((const char *)(a->d + e), _MM_HINT_T0);
                }
                if (a->bsums)
                        for (int64_t c = 0; c < B32_SLICE / 16; c += 32)
                                _mm_prefetch((const char *)(a->bsums + t * (K / 16) + k0 / 16 + c), _MM_HINT_T0);
        }
}

/* np panels of rows from rb, all tokens, columns [k0, k0 + B32_SLICE) or to K. */
ALWAYS_INLINE void b32_slice_run(const struct b32_run *r, int64_t rb, int np, int64_t k0)
{
        const struct b32_isa *isa = r->isa;
        const struct b32_type *ty = r->ty;
        const struct npu_weight *w = r->w;
        const int64_t K = w->cols, be = r->be, kb0 = k0 / be;
        const size_t bb = ggml_type_block_bytes(w->type);
        const int nb = (int)(MIN(B32_SLICE, K - k0) / be);

        /* interleaved: a panel's rows are one group, its blocks one after the other (quant_interleave.h) */
        const int64_t unit = w->interleave ? isa->panel : 1;
        for (int p = 0; p < np; p++) {
                const uint8_t *rows[GEMM_B32_PANEL];
                for (int i = 0; i < isa->panel; i++)
                        rows[i] = (const uint8_t *)w->data + (rb + isa->panel * p + i) * w->row_bytes;
                for (int b = 0; b < nb; b++)
                        if (w->interleave)
                                ty->unpack_interleaved(rows, (size_t)(kb0 + b) * bb * unit, r->sl, p, b);
                        else
                                ty->unpack(rows, (size_t)(kb0 + b) * bb, r->sl, p, b);
        }
        /*
         * The next slice's weights are prefetched into L2 a few lines per tile
         * while this one runs: this block's next slice, or after the last one
         * the first slice of the rows that follow; a row's, or an interleaved
         * group's (unit rows) at a time.
         */
        const bool last = k0 + B32_SLICE >= K;
        const int64_t pf_k0 = last ? 0 : k0 + B32_SLICE;
        const int64_t pf_r0 = last ? rb + isa->panel * np : rb;
        const int64_t pf_rows = last ? MIN(isa->panel * isa->panels, w->rows - pf_r0) : isa->panel * np;
        const size_t pf_bytes = (size_t)(MIN(B32_SLICE, K - pf_k0) / be) * bb * unit;
        const int64_t pf_row_lines = (int64_t)(pf_bytes + 63) / 64 + 1,
                      pf_lines = pf_row_lines * MAX(pf_rows / unit, 0);
        const int64_t n_calls = (np + B32_MR - 1) / B32_MR * ((r->n_tok + ty->nr - 1) / ty->nr);
        const int64_t pf_per_call = (pf_lines + n_calls - 1) / n_calls;
        const uint8_t *pf_base = (const uint8_t *)w->data + pf_r0 * w->row_bytes + pf_k0 / be * bb * unit;
        int64_t pf = 0, pf_row = 0, pf_line = 0; /* pf = pf_row * pf_row_lines + pf_line */

        /* pairs of panels outside: their weights stay in L1 while the token groups pass */
        for (int p = 0; p < np; p += B32_MR) {
                const int mr = MIN(B32_MR, np - p);
                for (int64_t t0 = 0; t0 < r->n_tok; t0 += ty->nr) {
                        const int nr = (int)MIN(ty->nr, r->n_tok - t0);
                        struct b32_tokens tk;
                        for (int64_t e = MIN(pf + pf_per_call, pf_lines); pf < e; pf++) {
                                _mm_prefetch((const char *)(pf_base + pf_row * unit * w->row_bytes) + 64 * pf_line,
                                             _MM_HINT_T1);
                                if (++pf_line == pf_row_lines) {
                                        pf_line = 0;
                                        pf_row++;
                                }
                        }
                        b32_tokens_at(&tk, r, t0, nr, k0, kb0, nb, rb);
                        ty->tiles[mr - 1][nr](r->sl, p, nb, &tk);
                }
        }
}

/*
 * gemm_block32_*() on the instruction set isa, with sl the file's slice:
 * as many whole panels from r0 as [r0, r1) holds (r0 for the types and
 * activations isa does not take, and for interleaved weights it does not
 * take or that r0 splits a group of).
 */
ALWAYS_INLINE int64_t b32_drive(const struct b32_isa *isa, void *sl, const struct npu_weight *w,
                                const struct act_blocks *a, int64_t n_tok, float *y, size_t ys, int64_t r0, int64_t r1)
{
        const int64_t np_all = (r1 - r0) / isa->panel;
        const struct b32_run r = {
                .isa = isa,
                .ty = b32_type_of(isa, w->type, a),
                .w = w,
                .a = a,
                .q = a->scheme == ACT_SCHEME_TOKEN_I8 ? a->tok.q8 : a->q,
                .be = (int64_t)ggml_type_block_elems(w->type),
                .nbk = w->cols / (int64_t)ggml_type_block_elems(w->type),
                .n_tok = n_tok,
                .y = y,
                .ys = ys,
                .sl = sl,
        };

        /* an interleaved weight: groups of a panel's rows, from a group's first row */
        if (!r.ty || (w->interleave && (w->interleave != isa->panel || !r.ty->unpack_interleaved || r0 % isa->panel)))
                return r0;
        for (int64_t pb = 0; pb < np_all; pb += isa->panels) {
                const int np = (int)MIN(isa->panels, np_all - pb);
                const int64_t rb = r0 + isa->panel * pb;
                for (int64_t k0 = 0; k0 < w->cols; k0 += B32_SLICE)
                        b32_slice_run(&r, rb, np, k0);
        }
        return r0 + isa->panel * np_all;
}

/*
 * A file's entry point, gemm_block.h's or gemm_kquant.h's name(): b32_drive
 * on its descriptor isa with its slice, of type SLICE, on the stack.
 */
#define B32_GEMM(name, isa, SLICE)                                                                        \
        int64_t name(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok, float *y,     \
                     size_t ys, int64_t r0, int64_t r1)                                                   \
        {                                                                                                 \
                SLICE sl;                                                                                 \
                return b32_drive(&(isa), &sl, w, a, n_tok, y, ys, r0, r1);                                \
        }
