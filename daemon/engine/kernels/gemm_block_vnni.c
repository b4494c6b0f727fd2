/* SPDX-License-Identifier: MIT */
/*
 * The 32-element block types' GEMM on AVX-512 VNNI (gemm_block.h): Q4_0,
 * Q4_1, Q5_0, Q5_1 and Q8_0 panels unpacked once per slice, then a
 * register tile of 2 panels x 6 tokens.
 *
 * The loops are gemm_block_slices.h's, shared with the AVX2 twin, here for
 * a block of up to 4 panels (64 rows, a thread's chunk): slices of
 * B32_SLICE columns outside, each unpacked once (64 KiB of weights, in
 * L2); then pairs of panels (32 KiB, in L1), and inside them the token
 * groups of B32_NR, each walking the slice block after block with its
 * float sums in registers.
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

#include "gemm_block_slices.h"
#include "gemm_panel_zmm.h"
#include "quant_interleave_zmm.h"

/* A slice of a block of panels, unpacked, every type's bytes unsigned. */
struct b32_slice {
        B32_SLICE_MEMBERS(GEMM_B32_PANELS, GEMM_B32_PANEL);
} __attribute__((aligned(64)));

/* Q5_0, Q5_1: bit k of the 32 at qh as 16 in byte k. */
ALWAYS_INLINE __m256i fifth_bits(const uint8_t *qh)
{
        uint32_t h;
        memcpy(&h, qh, 4);
        return _mm256_maskz_mov_epi8((__mmask32)h, _mm256_set1_epi8(16));
}

/* A block's 32 weights at p in element order, unsigned. */
ALWAYS_INLINE __m256i block_bytes(enum ggml_type t, const uint8_t *p)
{
        if (t == GGML_TYPE_Q8_0)
                return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + 2)), _mm256_set1_epi8((char)0x80));
        const __m256i q = nibbles(p + block_qs(t));
        return block_qh(t) ? _mm256_or_si256(q, fifth_bits(p + block_qh(t))) : q;
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
        unpack_scales(t, rows, off, sl->dw[p][b], sl->m[p][b], GEMM_B32_PANEL);
}

B32_UNPACKERS(unpack_block)

/*
 * Block b of panel p from the block at byte off of a group of 16 rows
 * interleaved (quant_interleave.h) at rows[0]: each of its vectors of
 * nibbles is already two of the panel's groups (the low nibbles columns
 * 4 m .., the high ones 16 + 4 m ..), Q5's fifth bits added under their
 * masks, and the rows' d (and m) are 16 f16 in a row.
 */
ALWAYS_INLINE void unpack_interleaved_block(enum ggml_type t, const uint8_t *const *rows, size_t off,
                                            struct b32_slice *sl, int p, int b)
{
        const uint8_t *x = rows[0] + off;
        struct qi_layout l;

        qi_layout_of(t, &l);
        for (int m = 0; m < 4; m++) {
                __m512i lo, hi;
                qi_nibbles(x, &l, m, &lo, &hi);
                _mm512_store_si512(sl->w[p][8 * b + m], lo);
                _mm512_store_si512(sl->w[p][8 * b + 4 + m], hi);
        }
        _mm512_store_ps(sl->dw[p][b], qi_f16x16(x + l.d));
        if (l.m)
                _mm512_store_ps(sl->m[p][b], qi_f16x16(x + l.m));
}

B32_UNPACK(unpack_interleaved_block, interleaved_q4_0, GGML_TYPE_Q4_0)
B32_UNPACK(unpack_interleaved_block, interleaved_q4_1, GGML_TYPE_Q4_1)
B32_UNPACK(unpack_interleaved_block, interleaved_q5_0, GGML_TYPE_Q5_0)
B32_UNPACK(unpack_interleaved_block, interleaved_q5_1, GGML_TYPE_Q5_1)
B32_UNPACK(unpack_interleaved_block, interleaved_q8_0, GGML_TYPE_Q8_0)

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


PANEL_TILES(b32_plain, void, struct b32_tokens, b32_tile, false)
PANEL_TILES(b32_min, void, struct b32_tokens, b32_tile, true)

static b32_tile_fn *const b32_tiles_plain[B32_MR][B32_NR + 1] = PANEL_TILE_TABLE(b32_plain);
static b32_tile_fn *const b32_tiles_min[B32_MR][B32_NR + 1] = PANEL_TILE_TABLE(b32_min);

/* The tile starts every sum from isum0, zero without an offset (Q4_1, Q5_1). */
static void b32_isum0(int32_t *isum0, const int32_t *asum, int nb, int offset)
{
        const __m512i neg_off = _mm512_set1_epi32(-offset);

        for (int b = 0; b < nb; b += 16) {
                const __mmask16 m = (__mmask16)(nb - b >= 16 ? 0xffff : (1u << (nb - b)) - 1);
                const __m512i as = offset ? _mm512_maskz_loadu_epi32(m, asum + b) : _mm512_setzero_si512();
                /* a whole vector (isum0 holds B32_NB): the tile's loads take it from the store */
                _mm512_storeu_si512(isum0 + b, _mm512_mullo_epi32(as, neg_off));
        }
}

/* Every type unsigned, its offset taken out by isum0; Q4_1 and Q5_1 add m * s. */
static const struct b32_isa b32_vnni = {
        .panel = GEMM_B32_PANEL,
        .panels = GEMM_B32_PANELS,
        .isum0 = b32_isum0,
        .types = {
                [B32_Q4_0] = { unpack_q4_0, b32_tiles_plain, B32_NR, 8, unpack_interleaved_q4_0 },
                [B32_Q4_1] = { unpack_q4_1, b32_tiles_min, B32_NR, 0, unpack_interleaved_q4_1 },
                [B32_Q5_0] = { unpack_q5_0, b32_tiles_plain, B32_NR, 16, unpack_interleaved_q5_0 },
                [B32_Q5_1] = { unpack_q5_1, b32_tiles_min, B32_NR, 0, unpack_interleaved_q5_1 },
                [B32_Q8_0] = { unpack_q8_0, b32_tiles_plain, B32_NR, 128, unpack_interleaved_q8_0 },
        },
};

B32_GEMM(gemm_block32_vnni, b32_vnni, struct b32_slice)
