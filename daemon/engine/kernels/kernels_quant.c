/* SPDX-License-Identifier: MIT */
/*
 * Block-quantized weights times block-quantized activations: the portable C
 * definition (kernels_quant.h says what it computes) and the choice of the
 * x86 copies (kernels_quant_x86.h, once per instruction set), which compute
 * the same numbers in the same order.
 *
 * This file is compiled with -ffp-contract=off: every fused multiply-add is
 * written out (fmaf, _mm256_fmadd_ps), none is made up by the compiler.
 */
#include <immintrin.h>
#include <math.h>

#include "gemm_block.h"
#include "gemm_kquant.h"
#include "kernels.h"
#include "kernels_quant.h"
#include "kquant_scales.h"
#include "quant_interleave.h"

/* How a block's minimum enters the sum. */
enum min_kind {
        MIN_NONE,
        MIN_ADD_S,     /* Q4_1, Q5_1: + m * s */
        MIN_SUB_BSUMS, /* Q2_K, Q4_K, Q5_K: - dmin * d_a * sum(min * bsum) */
};

static enum min_kind type_min_kind(enum ggml_type t)
{
        switch (t) {
        case GGML_TYPE_Q4_1:
        case GGML_TYPE_Q5_1:
                return MIN_ADD_S;
        case GGML_TYPE_Q2_K:
        case GGML_TYPE_Q4_K:
        case GGML_TYPE_Q5_K:
                return MIN_SUB_BSUMS;
        default:
                return MIN_NONE;
        }
}

/* One weight block as integers: w(k), the scale and min of every 16 elements, and the float scales. */
struct wblock {
        int8_t w[QK_K];
        int16_t sc[QK_K / 16];
        int16_t m[QK_K / 16];
        float d;
        float dmin; /* K-quants' dmin; Q4_1/Q5_1's m */
};

static void unpack_legacy(enum ggml_type t, const uint8_t *p, struct wblock *u)
{
        uint32_t qh = 0;

        for (int j = 0; j < 2; j++)
                u->sc[j] = 1;
        switch (t) {
        case GGML_TYPE_Q4_0: {
                const struct block_q4_0 *b = (const void *)p;
                u->d = f16_to_f32(b->d);
                for (int k = 0; k < 16; k++) {
                        u->w[k] = (int8_t)((b->qs[k] & 15) - 8);
                        u->w[k + 16] = (int8_t)((b->qs[k] >> 4) - 8);
                }
                return;
        }
        case GGML_TYPE_Q4_1: {
                const struct block_q4_1 *b = (const void *)p;
                u->d = f16_to_f32(b->d);
                u->dmin = f16_to_f32(b->m);
                for (int k = 0; k < 16; k++) {
                        u->w[k] = (int8_t)(b->qs[k] & 15);
                        u->w[k + 16] = (int8_t)(b->qs[k] >> 4);
                }
                return;
        }
        case GGML_TYPE_Q5_0: {
                const struct block_q5_0 *b = (const void *)p;
                u->d = f16_to_f32(b->d);
                memcpy(&qh, b->qh, 4);
                for (int k = 0; k < 16; k++) {
                        u->w[k] = (int8_t)(((b->qs[k] & 15) | ((qh >> k) & 1) << 4) - 16);
                        u->w[k + 16] = (int8_t)(((b->qs[k] >> 4) | ((qh >> (k + 16)) & 1) << 4) - 16);
                }
                return;
        }
        case GGML_TYPE_Q5_1: {
                const struct block_q5_1 *b = (const void *)p;
                u->d = f16_to_f32(b->d);
                u->dmin = f16_to_f32(b->m);
                memcpy(&qh, b->qh, 4);
                for (int k = 0; k < 16; k++) {
                        u->w[k] = (int8_t)((b->qs[k] & 15) | ((qh >> k) & 1) << 4);
                        u->w[k + 16] = (int8_t)((b->qs[k] >> 4) | ((qh >> (k + 16)) & 1) << 4);
                }
                return;
        }
        case GGML_TYPE_Q8_0: {
                const struct block_q8_0 *b = (const void *)p;
                u->d = f16_to_f32(b->d);
                memcpy(u->w, b->qs, 32);
                return;
        }
        default:
                return;
        }
}

static void unpack_k(enum ggml_type t, const uint8_t *p, struct wblock *u)
{
        switch (t) {
        case GGML_TYPE_Q2_K: {
                const struct block_q2_K *b = (const void *)p;
                u->d = f16_to_f32(b->d);
                u->dmin = f16_to_f32(b->dmin);
                for (int j = 0; j < 16; j++) {
                        u->sc[j] = b->scales[j] & 15;
                        u->m[j] = b->scales[j] >> 4;
                }
                for (int k = 0; k < QK_K; k++)
                        u->w[k] = (int8_t)((b->qs[32 * (k / 128) + k % 32] >> (2 * ((k / 32) % 4))) & 3);
                return;
        }
        case GGML_TYPE_Q3_K: {
                const struct block_q3_K *b = (const void *)p;
                u->d = f16_to_f32(b->d);
                for (int j = 0; j < 16; j++)
                        u->sc[j] = (int16_t)q3_k_scale(b->scales, j);
                for (int k = 0; k < QK_K; k++) {
                        int h = k / 128, s = (k / 32) % 4, l = k % 32;
                        int q = (b->qs[32 * h + l] >> (2 * s)) & 3;
                        u->w[k] = (int8_t)(((b->hmask[l] >> (4 * h + s)) & 1) ? q : q - 4);
                }
                return;
        }
        case GGML_TYPE_Q4_K:
        case GGML_TYPE_Q5_K: {
                const bool five = t == GGML_TYPE_Q5_K;
                const struct block_q4_K *b4 = (const void *)p;
                const struct block_q5_K *b5 = (const void *)p;
                const uint8_t *scales = five ? b5->scales : b4->scales, *qs = five ? b5->qs : b4->qs;
                u->d = f16_to_f32(b4->d);
                u->dmin = f16_to_f32(b4->dmin);
                for (int j = 0; j < 8; j++) {
                        uint8_t sc, m;
                        k_scale_min(scales, j, &sc, &m);
                        u->sc[2 * j] = u->sc[2 * j + 1] = sc;
                        u->m[2 * j] = u->m[2 * j + 1] = m;
                }
                for (int k = 0; k < QK_K; k++) {
                        int c = k / 64, hi = (k / 32) % 2, l = k % 32;
                        int q = hi ? qs[32 * c + l] >> 4 : qs[32 * c + l] & 15;
                        if (five)
                                q |= ((b5->qh[l] >> (k / 32)) & 1) << 4;
                        u->w[k] = (int8_t)q;
                }
                return;
        }
        case GGML_TYPE_Q6_K: {
                const struct block_q6_K *b = (const void *)p;
                u->d = f16_to_f32(b->d);
                for (int j = 0; j < 16; j++)
                        u->sc[j] = b->scales[j];
                for (int k = 0; k < QK_K; k++) {
                        int h = k / 128, s = (k / 32) % 4, l = k % 32;
                        uint8_t lo = b->ql[64 * h + 32 * (s & 1) + l];
                        int q = (s < 2 ? lo & 15 : lo >> 4) | ((b->qh[32 * h + l] >> (2 * s)) & 3) << 4;
                        u->w[k] = (int8_t)(q - 32);
                }
                return;
        }
        default:
                return;
        }
}

/* The definition: weight row times the quantized activations of token t. */
static float dot_scalar(enum ggml_type type, const uint8_t *row, int64_t K, const struct act_blocks *a, int64_t t)
{
        const int64_t be = (int64_t)ggml_type_block_elems(type), bb = (int64_t)ggml_type_block_bytes(type);
        const enum min_kind mk = type_min_kind(type);
        const int64_t ab = act_scheme_block(a->scheme);
        const int8_t *q = (a->scheme == ACT_SCHEME_TOKEN_I8 ? a->tok.q8 : a->q) + t * K;
        const float *d = a->d + t * (K / ab), *s = a->s ? a->s + t * (K / ab) : NULL;
        const int16_t *bsums = a->bsums ? a->bsums + t * (K / 16) : NULL;
        float acc = 0;
        struct wblock u;

        for (int64_t b = 0; b < K / be; b++) {
                const int8_t *qb = q + b * be;
                int32_t isum = 0;
                if (be == QK_K)
                        unpack_k(type, row + b * bb, &u);
                else
                        unpack_legacy(type, row + b * bb, &u);
                for (int64_t k = 0; k < be; k++)
                        isum += (int32_t)u.sc[k / 16] * u.w[k] * qb[k];
                acc = fmaf(u.d * d[b], (float)isum, acc);
                if (mk == MIN_ADD_S) {
                        acc = fmaf(u.dmin, s[b], acc);
                } else if (mk == MIN_SUB_BSUMS) {
                        int32_t M = 0;
                        for (int j = 0; j < 16; j++)
                                M += (int32_t)u.m[j] * bsums[16 * b + j];
                        acc = fmaf(-(u.dmin * d[b]), (float)M, acc);
                }
        }
        return acc;
}

static void matmul_scalar(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok, float *y, size_t ys,
                          int64_t r0, int64_t r1)
{
        for (int64_t r = r0; r < r1; r++) {
                const uint8_t *row = (const uint8_t *)w->data + r * w->row_bytes;
                for (int64_t t = 0; t < n_tok; t++)
                        y[t * ys + r] = dot_scalar(w->type, row, w->cols, a, t);
        }
}

/* --- x86: AVX2, and AVX-512 VNNI (vpdpbusd / vpdpwssd on 256-bit vectors) --- */

#define AVX2_TARGET "avx2,fma,f16c"
#define VNNI_TARGET "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni"

typedef void (*quant_rows_fn)(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok, float *y,
                              size_t ys, int64_t r0, int64_t r1);

/*
 * The tile path (prefill, batched decode): TILE_RB rows unpacked once per
 * slice of TILE_K elements, every token then run against the tile. The
 * numbers are the one-token kernels': the same isum per block, the same
 * float steps in the same order (acc rests in y between slices).
 */
#define TILE_RB 8
#define TILE_K 2048
/*
 * Fewer tokens run through the one-token kernels, each row read once for
 * all of them: unpacking a slice costs a fixed share of a step, which a
 * few tokens do not win back. How many depends on the kernels.
 *
 * AVX2 (and the first measurement, on an Intel host): 4. TinyLlama shape,
 * 2 threads, best step of npu-bench --task batch-decode, GEMM -> one-token
 * kernels: 2 tokens 51-78 -> 35-55 ms (Q4_0, Q5_0, Q8_0, w4a8, Q4_K_M, on
 * avx2 and avx512vnni), 3 tokens Q8_0 67-85 -> 64-69 ms, Q4_K_M 49-73 ->
 * 45-58, Q5_0 65-73 -> 70-77 (the one loss). Forced to AVX2 on a Zen 5
 * host, npu-kbench --rows 5632 --cols 2048 --tokens M, GB/s of weights,
 * GEMM / one-token kernels: at 4 tokens Q4_K 15.2 / 13.7, Q3_K 10.4 / 8.5,
 * Q6_K 15.3 / 17.9, Q4_0 11.7 / 12.9, Q8_0 15.4 / 26.1; at 6 the GEMM
 * leads for all but Q8_0 (12.7 / 17.4).
 *
 * AVX-512 VNNI, the same command on the Zen 5 host: the one-token kernels
 * of the K-quants (interleaved, 512-bit) lead up to 10 or 11 tokens (at 8:
 * Q4_K 12.4 / 14.8, Q6_K 10.6 / 15.5, Q2_K 9.2 / 15.4; at 12 about even),
 * the 32-element types' up to 6 (at 6: Q4_0 20.0 / 22.2, Q8_0 22.1 / 23.7,
 * w4a8 19.4 / 20.8; at 8 the GEMM leads: Q4_0 20.1 / 16.9, Q8_0 21.6 /
 * 18.4). A TinyLlama Q4_K_M step of 4 sequences took 49.0 ms through the
 * GEMM against 26.6 through the one-token kernels, of 8 56.2 against 43.0.
 * (The interleaved nibble types have walks of four tokens since, and keep
 * them further: interleaved_min_tokens. So does Q6_K: the same command,
 * GEMM / four tokens a walk, at 8 tokens 14.4 / 26.1, at 12 9.4 / 18.5, at
 * 16 8.9 / 14.3, at 24 7.9 / 9.6, at 32 7.2 / 7.2; one token a walk at 4
 * had 20.0. Interleaved on AMD's cores since, through tile_min_tokens: at
 * 16 11.8 / 16.6, at 24 10.4 / 11.4, at 32 8.9 / 8.6. And Q8_0: at 4 tokens 42.1 (a walk per token) / 51.7, at 8
 * 22.6 / 29.6, at 12 20.2 / 20.0, at 16 18.4 / 15.0.)
 */
static int64_t tile_min_tokens(enum ggml_type t, enum kernel_isa isa)
{
        if (isa < KERNEL_ISA_AVX512_VNNI)
                return 4;
        /* their one-token kernels take four tokens at once (group_q6_k_nt, group_q8_0_nt) */
        if (t == GGML_TYPE_Q6_K)
                return 32;
        if (t == GGML_TYPE_Q8_0)
                return 12;
        return ggml_type_block_elems(t) == QK_K ? 12 : 7;
}

/*
 * The interleaved types on AVX-512 VNNI walk their groups for four tokens
 * at once (matmul_interleaved_vnni), each vector of q unpacked once for the
 * four, and keep that walk up to these counts. The
 * Zen 5 host, npu-kbench --rows 5632 --cols 2048 --tokens M, GB/s of
 * weights, GEMM / the four-token walk: Q4_K at 8 tokens 18.4 / 32.7, at
 * 16 8.3 / 13.9, at 24 7.9 / 12.2, at 32 7.1 / 9.5, at 64 4.5 / 4.7; Q5_K
 * at 24 8.6 / 8.3, at 32 7.3 / 7.8; Q4_0 at 8 19.8 / 30.2, at 16 14.4 /
 * 15.1, at 24 11.1 / 10.3; Q5_1 at 16 17.3 / 17.5, at 24 13.6 / 12.5;
 * Q3_K at 8 10.9 (a walk per token) / 18.1, at 12 7.9 / 12.0, at 16 6.8 /
 * 9.6, at 24 6.3 / 6.5, at 32 5.1 / 5.2; Q2_K at 8 13.5 / 17.8, at 16 6.5
 * / 9.9, at 24 5.2 / 6.7.
 */
static int64_t interleaved_min_tokens(enum ggml_type t)
{
        switch (t) {
        case GGML_TYPE_Q4_K:
        case GGML_TYPE_Q5_K:
                return 32;
        case GGML_TYPE_Q2_K:
        case GGML_TYPE_Q3_K:
                return 24;
        case GGML_TYPE_Q4_0:
        case GGML_TYPE_Q4_1:
        case GGML_TYPE_Q5_0:
        case GGML_TYPE_Q5_1:
                return 20;
        default:
                return tile_min_tokens(t, KERNEL_ISA_AVX512_VNNI);
        }
}

struct qtile {
        uint8_t u[TILE_RB][TILE_K];                /* the weights, unsigned (w + offset), or Q8_0 as stored */
        int16_t sc[TILE_RB][TILE_K / 32][16];      /* K-quants: each 32-element chunk's int16 scale vector */
        float dw[TILE_K / 32][TILE_RB];            /* per block: d of each row */
        float dm[TILE_K / 32][TILE_RB];            /* dmin (K-quants) or m (Q4_1, Q5_1) */
        int32_t mp[TILE_K / QK_K][8][TILE_RB];     /* K-quants' mins of sub-blocks (2j, 2j + 1), int16 pairs */
        int32_t op[TILE_K / QK_K][8][TILE_RB];     /* Q3_K, Q6_K: offset times scale, the same pairs */
} __attribute__((aligned(64)));

/* What the tile kernel does per block. */
struct tile_kind {
        int be;        /* 32 or QK_K */
        int off;       /* 32-element types: offset taken out through asum */
        int mink;      /* 1: + m * s (Q4_1, Q5_1); 2: - dmin * d * M (Q2_K, Q4_K, Q5_K) */
        bool k_off;    /* Q3_K, Q6_K: offset taken out through op */
        bool signed_q8; /* Q8_0 kept signed (AVX2) */
};

typedef void (*tile_unpack_fn)(const uint8_t *const *rows, int64_t kb0, int64_t nb, struct qtile *tl);

#define QSIMD_CAT2(a, b) a##_##b
#define QSIMD_CAT(a, b) QSIMD_CAT2(a, b)
#define SIMD(name) QSIMD_CAT(name, SIMD_ISA)

#define SIMD_ISA avx2
#define SIMD_FN __attribute__((target(AVX2_TARGET)))
#define SIMD_INLINE static inline __attribute__((always_inline, target(AVX2_TARGET)))
#define MAC_U8S8(s, u, v) _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(u, v), _mm256_set1_epi16(1)))
#define MAC_SCALED(s, u, v, sc) _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(u, v), sc))
#define Q8_0_WIDE 0
#define SIMD_ZMM 0
#include "kernels_quant_x86.h"
#undef Q8_0_WIDE
#undef SIMD_ZMM
#undef SIMD_ISA
#undef SIMD_FN
#undef SIMD_INLINE
#undef MAC_U8S8
#undef MAC_SCALED

#define SIMD_ISA vnni
#define SIMD_FN __attribute__((target(VNNI_TARGET)))
#define SIMD_INLINE static inline __attribute__((always_inline, target(VNNI_TARGET)))
#define MAC_U8S8(s, u, v) _mm256_dpbusd_epi32(s, u, v)
#define MAC_SCALED(s, u, v, sc) _mm256_dpwssd_epi32(s, _mm256_maddubs_epi16(u, v), sc)
#define Q8_0_WIDE 1
#define SIMD_ZMM 1
#include "kernels_quant_x86.h"
#undef Q8_0_WIDE
#undef SIMD_ZMM
#undef SIMD_ISA
#undef SIMD_FN
#undef SIMD_INLINE
#undef MAC_U8S8
#undef MAC_SCALED

/* Each instruction set's kernels, by weight type. */
struct quant_x86_kernels {
        const quant_rows_fn *rows;
        const tile_unpack_fn *unpack;
        void (*token)(const struct qtile *tl, const struct tile_kind *tk, int64_t nb, const int8_t *q, const float *d,
                      const float *s, const int16_t *bs, const int32_t *asum, float *out);
        int q8_0_offset; /* 128 where Q8_0 is made unsigned, 0 where it stays signed */
        /* the register-blocked GEMMs (gemm_kquant.h, gemm_block.h): the first row they left, or r0 */
        int64_t (*gemm[3])(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok, float *y,
                           size_t ys, int64_t r0, int64_t r1);
};

/*
 * AVX-512 VNNI takes the AVX2 K-quant GEMM for the K-quants its own
 * leaves (Q2_K, Q3_K, Q5_K): the same numbers, and faster than the tile
 * path.
 */
static const struct quant_x86_kernels quant_x86[] = {
        [KERNEL_ISA_AVX2] = { quant_rows_avx2, tile_unpack_avx2, tile_token_avx2, 0,
                              { gemm_kquant_avx2, gemm_block32_avx2, NULL } },
        [KERNEL_ISA_AVX512_VNNI] = { quant_rows_vnni, tile_unpack_vnni, tile_token_vnni, 128,
                                     { gemm_kquant_vnni, gemm_kquant_avx2, gemm_block32_vnni } },
};

static struct tile_kind tile_kind_of(enum ggml_type t, int q8_0_offset)
{
        struct tile_kind k = { .be = (int)ggml_type_block_elems(t) };
        switch (t) {
        case GGML_TYPE_Q4_0: k.off = 8; break;
        case GGML_TYPE_Q5_0: k.off = 16; break;
        case GGML_TYPE_Q8_0:
                k.off = q8_0_offset;
                k.signed_q8 = q8_0_offset == 0;
                break;
        case GGML_TYPE_Q4_1:
        case GGML_TYPE_Q5_1: k.mink = 1; break;
        case GGML_TYPE_Q2_K:
        case GGML_TYPE_Q4_K:
        case GGML_TYPE_Q5_K: k.mink = 2; break;
        case GGML_TYPE_Q3_K:
        case GGML_TYPE_Q6_K: k.k_off = true; break;
        default: break;
        }
        return k;
}

static int32_t pair16(int a, int b)
{
        return (int32_t)(((uint32_t)(uint16_t)(int16_t)b << 16) | (uint16_t)(int16_t)a);
}

/* The tile's per-block numbers (scales, mins, offsets) of row i, block b of the slice. */
static void tile_block_numbers(enum ggml_type t, const uint8_t *p, int i, int64_t b, struct qtile *tl)
{
        int16_t m[16] = {}, sc[16] = {};
        int off = 0;

        switch (t) {
        case GGML_TYPE_Q4_1:
        case GGML_TYPE_Q5_1:
                tl->dw[b][i] = f16_to_f32(((const struct block_q4_1 *)(const void *)p)->d);
                tl->dm[b][i] = f16_to_f32(((const struct block_q4_1 *)(const void *)p)->m);
                return;
        case GGML_TYPE_Q4_0:
        case GGML_TYPE_Q5_0:
        case GGML_TYPE_Q8_0: {
                npu_f16 d;
                memcpy(&d, p, 2);
                tl->dw[b][i] = f16_to_f32(d);
                return;
        }
        case GGML_TYPE_Q2_K: {
                const struct block_q2_K *x = (const void *)p;
                tl->dw[b][i] = f16_to_f32(x->d);
                tl->dm[b][i] = f16_to_f32(x->dmin);
                for (int j = 0; j < 16; j++)
                        m[j] = x->scales[j] >> 4;
                break;
        }
        case GGML_TYPE_Q4_K:
        case GGML_TYPE_Q5_K: {
                const struct block_q4_K *x4 = (const void *)p;
                const uint8_t *scales = t == GGML_TYPE_Q5_K ? ((const struct block_q5_K *)(const void *)p)->scales
                                                            : x4->scales;
                tl->dw[b][i] = f16_to_f32(x4->d);
                tl->dm[b][i] = f16_to_f32(x4->dmin);
                for (int j = 0; j < 8; j++) {
                        uint8_t s8, m8;
                        k_scale_min(scales, j, &s8, &m8);
                        m[2 * j] = m[2 * j + 1] = m8;
                }
                break;
        }
        case GGML_TYPE_Q3_K: {
                const struct block_q3_K *x = (const void *)p;
                tl->dw[b][i] = f16_to_f32(x->d);
                for (int j = 0; j < 16; j++)
                        sc[j] = (int16_t)q3_k_scale(x->scales, j);
                off = 4;
                break;
        }
        case GGML_TYPE_Q6_K: {
                const struct block_q6_K *x = (const void *)p;
                tl->dw[b][i] = f16_to_f32(x->d);
                for (int j = 0; j < 16; j++)
                        sc[j] = x->scales[j];
                off = 32;
                break;
        }
        default:
                return;
        }
        for (int j = 0; j < 8; j++) {
                tl->mp[b][j][i] = pair16(m[2 * j], m[2 * j + 1]);
                tl->op[b][j][i] = pair16(off * sc[2 * j], off * sc[2 * j + 1]);
        }
}

static void matmul_tiled(const struct quant_x86_kernels *x86, const struct npu_weight *w,
                         const struct act_blocks *a, int64_t n_tok, float *y, size_t ys, int64_t r0, int64_t r1)
{
        const int64_t K = w->cols, be = (int64_t)ggml_type_block_elems(w->type);
        const int64_t bb = (int64_t)ggml_type_block_bytes(w->type), ab = act_scheme_block(a->scheme);
        const struct tile_kind tk = tile_kind_of(w->type, x86->q8_0_offset);
        const int8_t *q = a->scheme == ACT_SCHEME_TOKEN_I8 ? a->tok.q8 : a->q;
        struct qtile tl;
        int64_t r = r0;

        for (size_t i = 0; i < ARRAY_SIZE(x86->gemm) && r == r0; i++)
                r = x86->gemm[i] ? x86->gemm[i](w, a, n_tok, y, ys, r0, r1) : r0;
        for (; r + TILE_RB <= r1; r += TILE_RB) {
                const uint8_t *rows[TILE_RB];
                for (int i = 0; i < TILE_RB; i++)
                        rows[i] = (const uint8_t *)w->data + (r + i) * w->row_bytes;
                for (int64_t t = 0; t < n_tok; t++)
                        memset(y + t * ys + r, 0, sizeof(float) * TILE_RB);
                for (int64_t k0 = 0; k0 < K; k0 += TILE_K) {
                        const int64_t kb0 = k0 / be, nb = MIN(TILE_K, K - k0) / be;
                        x86->unpack[w->type](rows, kb0, nb, &tl);
                        for (int i = 0; i < TILE_RB; i++)
                                for (int64_t b = 0; b < nb; b++)
                                        tile_block_numbers(w->type, rows[i] + (kb0 + b) * bb, i, b, &tl);
                        for (int64_t t = 0; t < n_tok; t++)
                                x86->token(&tl, &tk, nb, q + t * K + k0, a->d + t * (K / ab) + k0 / ab,
                                           a->s ? a->s + t * (K / 32) + k0 / 32 : NULL,
                                           a->bsums ? a->bsums + t * (K / 16) + k0 / 16 : NULL,
                                           a->asum ? a->asum + t * (K / 32) + k0 / 32 : NULL, y + t * ys + r);
                }
        }
        /* rows short of a tile: the one-token kernels, which compute the same numbers */
        if (r < r1)
                x86->rows[w->type](w, a, n_tok, y, ys, r, r1);
}

static void matmul_rows(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok, float *y, size_t ys,
                        int64_t r0, int64_t r1);

/*
 * Each row of [r0, r1) of an interleaved w by itself, put back in its own
 * layout, where there was no memory for more; with none for a row, its
 * outputs are NaN (matmuls return nothing to fail with).
 */
static void matmul_interleaved_each(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok, float *y,
                                    size_t ys, int64_t r0, int64_t r1)
{
        _cleanup_free_ uint8_t *row = malloc(w->row_bytes);

        for (int64_t r = r0; r < r1; r++) {
                if (row)
                        quant_interleaved_rows(w, r, r + 1, row);
                for (int64_t t = 0; t < n_tok; t++)
                        y[t * ys + r] = row ? dot_scalar(w->type, row, w->cols, a, t) : NAN;
        }
}

/*
 * An interleaved w (quant_interleave.h): on AVX-512 VNNI, one token or a
 * few its own kernel, more the 32-element types' GEMM or the K-quants',
 * which unpack the groups as they are; every other path reads the groups
 * of [r0, r1) put back in their own layout (the same numbers).
 */
static void matmul_interleaved(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok, float *y,
                               size_t ys, int64_t r0, int64_t r1)
{
        if (kernels_isa() >= KERNEL_ISA_AVX512_VNNI) {
                if (n_tok < interleaved_min_tokens(w->type)) {
                        matmul_interleaved_vnni(w, a, n_tok, y, ys, r0, r1);
                        return;
                }
                /* the GEMMs read whole groups from a group's start; the rest as the other paths */
                r0 = gemm_block32_vnni(w, a, n_tok, y, ys, r0, r1);
                r0 = gemm_kquant_vnni(w, a, n_tok, y, ys, r0, r1);
                if (r0 == r1)
                        return;
        }
        const int64_t g0 = r0 / QI_ROWS * QI_ROWS, g1 = ALIGN_TO(r1, QI_ROWS);
        _cleanup_free_ uint8_t *rows = malloc((size_t)(g1 - g0) * w->row_bytes);
        if (!rows) {
                matmul_interleaved_each(w, a, n_tok, y, ys, r0, r1);
                return;
        }
        quant_interleaved_rows(w, g0, g1, rows);
        struct npu_weight v = *w;
        v.data = rows;
        v.rows = g1 - g0;
        v.interleave = 0;
        matmul_rows(&v, a, n_tok, y + g0, ys, r0 - g0, r1 - g0);
}

static void matmul_rows(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok, float *y, size_t ys,
                        int64_t r0, int64_t r1)
{
        const enum kernel_isa isa = kernels_isa();
        const struct quant_x86_kernels *x86 = isa >= KERNEL_ISA_AVX2 ? &quant_x86[MIN(isa, KERNEL_ISA_AVX512_VNNI)] : NULL;

        if (w->interleave)
                matmul_interleaved(w, a, n_tok, y, ys, r0, r1);
        else if (!x86 || (unsigned)w->type >= _GGML_TYPE_MAX || !x86->rows[w->type])
                matmul_scalar(w, a, n_tok, y, ys, r0, r1);
        else if (n_tok >= tile_min_tokens(w->type, isa))
                matmul_tiled(x86, w, a, n_tok, y, ys, r0, r1);
        else
                x86->rows[w->type](w, a, n_tok, y, ys, r0, r1);
}

void matmul_quant_rows(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok, float *y, size_t ys,
                       int64_t r0, int64_t r1)
{
        matmul_rows(w, a, n_tok, y, ys, r0, r1);
        if (a->scheme == ACT_SCHEME_TOKEN_I8)
                for (int64_t t = 0; t < n_tok; t++)
                        for (int64_t r = r0; r < r1; r++)
                                y[t * ys + r] = y[t * ys + r] * a->tok.scale[t];
}
