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
 * The loops are gemm_block_vnni.c's, one driver (gemm_block_slices.h):
 * slices of B32_SLICE columns of a block of 8 panels (64 rows, 64 KiB
 * unpacked, in L2), pairs of panels (16 KiB, in L1) inside, token groups
 * inside those; the float sums rest in y between blocks. Each int sum is
 * one chain in its register (an empty asm after each add): left alone,
 * GCC made a tree of the adds and kept the products on the stack, 30 %
 * slower.
 *
 * This file is compiled with -ffp-contract=off: every fused multiply-add
 * is written out (_mm256_fmadd_ps).
 */
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>

#include "gemm_block_slices.h"
#include "gemm_panel_ymm.h"

#define YB_PANEL GEMM_B32_PANEL_AVX2
#define YB_PANELS 8 /* panels of a block of rows: 64 rows */

/* How a tile sums a block's 8 groups of 4 columns. */
enum yb_mode {
        YB_NIBBLE = 0, /* Q4_0, Q4_1: all 8 in int16 */
        YB_FIVE = 1,   /* Q5_0, Q5_1: 4 at a time in int16 */
        YB_SIGNED = 2, /* Q8_0: |w| times a with w's sign, each widened */
};
#define YB_WITH_M 4 /* flag: Q4_1's and Q5_1's + m * s */

/* A slice of a block of panels, unpacked: Q8_0's bytes signed, the others' unsigned. */
struct yb_slice {
        B32_SLICE_MEMBERS(YB_PANELS, YB_PANEL);
} __attribute__((aligned(32)));

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
        if (t == GGML_TYPE_Q8_0)
                return _mm256_loadu_si256((const __m256i *)(p + 2));
        const __m256i q = nibbles(p + block_qs(t));
        return block_qh(t) ? _mm256_or_si256(q, fifth_bits(p + block_qh(t))) : q;
}

/* The block at byte off of the 8 rows at rows[] into block b of panel p. */
ALWAYS_INLINE void unpack_block(enum ggml_type t, const uint8_t *const *rows, size_t off, struct yb_slice *sl, int p,
                                int b)
{
        __m256i z[8];

        for (int i = 0; i < 8; i++)
                z[i] = block_bytes(t, rows[i] + off);
        store_transposed8(sl->w[p][8 * b], z);
        unpack_scales(t, rows, off, sl->dw[p][b], sl->m[p][b], YB_PANEL);
}

B32_UNPACKERS(unpack_block)

/*
 * Block b's exact sums of MR panels from p0 times NR tokens, in int32
 * lanes (row i of a panel in lane i), without the offset term.
 */
ALWAYS_INLINE void yb_block_sums(__m256i in[B32_MR][B32_NR], const struct yb_slice *sl, int p0, int b,
                                 const struct b32_tokens *tk, const int MR, const int NR, const enum yb_mode mode)
{
        const __m256i ones = _mm256_set1_epi16(1);

        for (int i = 0; i < MR; i++)
                for (int j = 0; j < NR; j++)
                        in[i][j] = _mm256_setzero_si256();
        if (mode == YB_SIGNED) {
                for (int g = 8 * b; g < 8 * b + 8; g++) {
                        __m256i wv[B32_MR], wa[B32_MR];
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
                __m256i s16[B32_MR][B32_NR];
                for (int i = 0; i < MR; i++)
                        for (int j = 0; j < NR; j++)
                                s16[i][j] = _mm256_setzero_si256();
#pragma GCC unroll 8
                for (int g = 8 * b + h; g < 8 * b + h + run; g++) {
                        __m256i wv[B32_MR];
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
ALWAYS_INLINE void yb_tile(const struct yb_slice *sl, int p0, int nb, const struct b32_tokens *tk, const int MR,
                           const int NR, const int FLAG)
{
        const enum yb_mode mode = (enum yb_mode)(FLAG & 3);
        const bool with_m = FLAG & YB_WITH_M;

        for (int b = 0; b < nb; b++) {
                __m256i in[B32_MR][B32_NR];
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

PANEL_TILES(yb_nibble, void, struct b32_tokens, yb_tile, YB_NIBBLE)
PANEL_TILES(yb_nibble_m, void, struct b32_tokens, yb_tile, YB_NIBBLE | YB_WITH_M)
PANEL_TILES(yb_five, void, struct b32_tokens, yb_tile, YB_FIVE)
PANEL_TILES(yb_five_m, void, struct b32_tokens, yb_tile, YB_FIVE | YB_WITH_M)
PANEL_TILES(yb_signed, void, struct b32_tokens, yb_tile, YB_SIGNED)

static b32_tile_fn *const yb_tiles_nibble[B32_MR][B32_NR + 1] = PANEL_TILE_TABLE(yb_nibble);
static b32_tile_fn *const yb_tiles_nibble_m[B32_MR][B32_NR + 1] = PANEL_TILE_TABLE(yb_nibble_m);
static b32_tile_fn *const yb_tiles_five[B32_MR][B32_NR + 1] = PANEL_TILE_TABLE(yb_five);
static b32_tile_fn *const yb_tiles_five_m[B32_MR][B32_NR + 1] = PANEL_TILE_TABLE(yb_five_m);
static b32_tile_fn *const yb_tiles_signed[B32_MR][B32_NR + 1] = PANEL_TILE_TABLE(yb_signed);

/* The tile reads isum0 only with an offset (Q4_0, Q5_0). */
static void yb_isum0(int32_t *isum0, const int32_t *asum, int nb, int offset)
{
        const __m256i neg_off = _mm256_set1_epi32(-offset);

        for (int b = 0; offset && b < nb; b += 8) {
                /* whole vectors (isum0 holds B32_NB): the tile's broadcasts take them from the store */
                const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(nb - b), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                const __m256i as = _mm256_maskload_epi32(asum + b, m);
                _mm256_storeu_si256((__m256i *)(isum0 + b), _mm256_mullo_epi32(as, neg_off));
        }
}

/*
 * Tokens per tile, with 16 ymm registers (2 weight vectors, a broadcast, a
 * product): 2 x 5 int16 sums (nibbles), 2 x 3 int16 and int32 sums (five
 * bits), 2 x 3 int32 sums and |w| (Q8_0); measured on TinyLlama's shape,
 * 2 x 6 and 2 x 4 spill and run slower. Q8_0's bytes stay signed: no
 * offset.
 */
static const struct b32_isa yb_avx2 = {
        .panel = YB_PANEL,
        .panels = YB_PANELS,
        .isum0 = yb_isum0,
        .types = {
                [B32_Q4_0] = { unpack_q4_0, yb_tiles_nibble, 5, 8 },
                [B32_Q4_1] = { unpack_q4_1, yb_tiles_nibble_m, 5, 0 },
                [B32_Q5_0] = { unpack_q5_0, yb_tiles_five, 3, 16 },
                [B32_Q5_1] = { unpack_q5_1, yb_tiles_five_m, 3, 0 },
                [B32_Q8_0] = { unpack_q8_0, yb_tiles_signed, 3, 0 },
        },
};

B32_GEMM(gemm_block32_avx2, yb_avx2, struct yb_slice)
