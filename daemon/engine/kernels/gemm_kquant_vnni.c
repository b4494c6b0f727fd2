/* SPDX-License-Identifier: MIT */
/*
 * The K-quant GEMM on AVX-512 VNNI (gemm_kquant.h): Q4_K and Q6_K panels
 * (and interleaved Q5_K ones) unpacked once per slice, then a register
 * tile of 2 panels x 6 tokens.
 *
 * Loops, for a block of up to 4 panels (64 rows, a thread's chunk): slices
 * of KQ_SLICE columns outside, each unpacked once (64 KiB of weights, in
 * L2); then pairs of panels (32 KiB, in L1), and inside them the token
 * groups of KQ_NR, each walking the slice super-block after super-block
 * with its sums in registers. Every weight is read from memory once per
 * call, whatever the number of tokens.
 *
 * Each tile does, per 64 columns of a row and token, 16 vpdpbusd, then
 * per 16 columns one vpdpwssd (Q4_K) or vpmulld + vpaddd (Q6_K) for the
 * scale, and per 256 one or two float steps: on this host (Sapphire
 * Rapids) about 55 % of vpdpbusd's peak for Q4_K, against 70 % for the
 * instruction mix alone.
 *
 * This file is compiled with -ffp-contract=off: the float steps are the
 * definition's (kernels_quant.h), written out with _mm512_fmadd_ps.
 */
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")
#include <immintrin.h>

#include "gemm_kquant.h"
#include "gemm_panel_zmm.h"
#include "kquant_scales.h"
#include "quant_interleave_zmm.h"

#define KQ_SLICE 1024 /* columns unpacked at once */
#define KQ_SB (KQ_SLICE / QK_K)
#define KQ_MR PANEL_MR /* panels of a register tile */
#define KQ_NR PANEL_NR /* tokens of a register tile */

/* A slice of a block of panels, unpacked. */
struct kq_slice {
        /* group g of panel p: bytes 4i..4i+3 are row i's columns 4g..4g+3 (unsigned) */
        uint8_t w[GEMM_KQ_PANELS][KQ_SLICE / 4][64];
        /* the scale of each 16 columns, one int32 lane per row */
        int32_t sc[GEMM_KQ_PANELS][KQ_SLICE / 16][GEMM_KQ_PANEL];
        /*
         * per super-block, int16 pairs per row against pairs of the
         * activations' sums: Q4_K, M: (min_2q, min_2q+1), q < 4, against
         * the sums of sub-blocks 2q, 2q + 1 (32 each); Q6_K, the offset
         * out of isum: (-32 sc_2j, -32 sc_2j+1), j < 8, against the sums
         * of 16
         */
        int32_t pr[GEMM_KQ_PANELS][KQ_SB][8][GEMM_KQ_PANEL];
        float dw[GEMM_KQ_PANELS][KQ_SB][GEMM_KQ_PANEL]; /* d of each row */
        float dm[GEMM_KQ_PANELS][KQ_SB][GEMM_KQ_PANEL]; /* Q4_K: dmin of each row */
} __attribute__((aligned(64)));

/* 16 vectors of 16 int32 in place: r[g] lane i = old r[i] lane g. */
ALWAYS_INLINE void transpose16(__m512i *r)
{
        __m512i a[16], b[16];

        for (int i = 0; i < 8; i++) {
                a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
                a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
        }
        /* b[4i + c], 128-bit lane L: rows 4i..4i+3 at column 4L + c */
        for (int i = 0; i < 4; i++) {
                b[4 * i] = _mm512_unpacklo_epi64(a[4 * i], a[4 * i + 2]);
                b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i], a[4 * i + 2]);
                b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
                b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
        }
        for (int c = 0; c < 4; c++) {
                const __m512i s0 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0x88);
                const __m512i s1 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0xdd);
                const __m512i s2 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0x88);
                const __m512i s3 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0xdd);
                r[c] = _mm512_shuffle_i32x4(s0, s2, 0x88);
                r[8 + c] = _mm512_shuffle_i32x4(s0, s2, 0xdd);
                r[4 + c] = _mm512_shuffle_i32x4(s1, s3, 0x88);
                r[12 + c] = _mm512_shuffle_i32x4(s1, s3, 0xdd);
        }
}

/* 16 rows' vectors of 64 columns (64c .. 64c + 63 of super-block s) into panel p's groups. */
ALWAYS_INLINE void store_groups(struct kq_slice *sl, int p, int s, int c, __m512i *r)
{
        transpose16(r);
        for (int g = 0; g < 16; g++)
                _mm512_store_si512(sl->w[p][64 * s + 16 * c + g], r[g]);
}

/*
 * The per-row numbers of super-block s of panel p, one vector per row
 * (num: lanes 0-7 the pairs, 8 d, 9 dmin as float bits; sc: the scale of
 * each 16 columns), turned into one vector per number with a lane per row.
 */
ALWAYS_INLINE void store_numbers(struct kq_slice *sl, int p, int s, __m512i *num, __m512i *sc)
{
        transpose16(num);
        for (int j = 0; j < 8; j++)
                _mm512_store_si512(sl->pr[p][s][j], num[j]);
        _mm512_store_si512((void *)sl->dw[p][s], num[8]);
        _mm512_store_si512((void *)sl->dm[p][s], num[9]);
        transpose16(sc);
        for (int h = 0; h < 16; h++)
                _mm512_store_si512(sl->sc[p][16 * s + h], sc[h]);
}

/* The two f16 of h (low half first) as floats in lanes 8 and 9 of v. */
ALWAYS_INLINE __m512i with_f16_pair(__m512i v, uint32_t h)
{
        return _mm512_inserti32x4(v, _mm_castps_si128(_mm_cvtph_ps(_mm_cvtsi32_si128((int)h))), 2);
}

/* Super-block b of the 16 rows at rows[] into super-block s of panel p. */
static void unpack_q4_k(const uint8_t *const *rows, int64_t b, struct kq_slice *sl, int p, int s)
{
        const __m512i m4 = _mm512_set1_epi8(15);
        __m512i num[8], sc[8];

        /* 32 bytes of nibbles a row: columns 64c + 4g.. (low nibbles) and 64c + 32 + 4g.. (high) */
        for (int c = 0; c < 4; c++) {
                __m512i z[8];
                for (int i = 0; i < 8; i++) {
                        const struct block_q4_K *x0 = (const struct block_q4_K *)(const void *)rows[2 * i] + b;
                        const struct block_q4_K *x1 = (const struct block_q4_K *)(const void *)rows[2 * i + 1] + b;
                        z[i] = _mm512_inserti64x4(
                                _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(x0->qs + 32 * c))),
                                _mm256_loadu_si256((const __m256i *)(x1->qs + 32 * c)), 1);
                }
                transpose16x8(z);
                for (int g = 0; g < 8; g++) {
                        _mm512_store_si512(sl->w[p][64 * s + 16 * c + g], _mm512_and_si512(z[g], m4));
                        _mm512_store_si512(sl->w[p][64 * s + 16 * c + 8 + g],
                                           _mm512_and_si512(_mm512_srli_epi16(z[g], 4), m4));
                }
        }
        /* per row 8 int32: the scales (sc), and the 4 min pairs, d, dmin (num) */
        for (int i = 0; i < 8; i++) {
                __m256i scr[2], numr[2];
                for (int h = 0; h < 2; h++) {
                        const struct block_q4_K *x = (const struct block_q4_K *)(const void *)rows[2 * i + h] + b;
                        const __m128i sm = k4_scales_mins(x->scales);
                        uint32_t d_dmin;
                        memcpy(&d_dmin, &x->d, 4);
                        /* (min_2q, min_2q+1) as int16 pairs, q < 4; then d and dmin as floats */
                        const __m128i m = _mm_cvtepu8_epi16(_mm_srli_si128(sm, 8));
                        const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)d_dmin));
                        numr[h] = _mm256_inserti128_si256(_mm256_castsi128_si256(m), _mm_castps_si128(dd), 1);
                        scr[h] = _mm256_cvtepu8_epi32(sm);
                }
                sc[i] = _mm512_inserti64x4(_mm512_castsi256_si512(scr[0]), scr[1], 1);
                num[i] = _mm512_inserti64x4(_mm512_castsi256_si512(numr[0]), numr[1], 1);
        }
        transpose16x8(sc);
        transpose16x8(num);
        for (int j = 0; j < 8; j++) {
                _mm512_store_si512(sl->sc[p][16 * s + 2 * j], sc[j]);
                _mm512_store_si512(sl->sc[p][16 * s + 2 * j + 1], sc[j]);
        }
        for (int q = 0; q < 4; q++)
                _mm512_store_si512(sl->pr[p][s][q], num[q]);
        _mm512_store_si512((void *)sl->dw[p][s], num[4]);
        _mm512_store_si512((void *)sl->dm[p][s], num[5]);
}

/* (bytes 0, 1) or (2, 3) of each 32-bit lane of v as an int16 pair (hi: the second) */
ALWAYS_INLINE __m512i byte_pair(__m512i v, bool hi)
{
        const __m512i lane = _mm512_set4_epi32(12 * 0x10001, 8 * 0x10001, 4 * 0x10001, 0);
        const __m512i ctl = _mm512_set1_epi32(hi ? (int)0x80038002u : (int)0x80018000u);
        return _mm512_shuffle_epi8(v, _mm512_or_si512(ctl, lane));
}

/*
 * Q4_K or Q5_K interleaved (quant_interleave.h): super-block b of the
 * group at rows[0] into super-block s of panel p. Its vectors of nibbles
 * (Q5_K's with the fifth bits added) are the panel's groups already (vector 8 c + n: columns 64 c + 4 n .. low,
 * 64 c + 32 + 4 n .. high); the 16 rows' packed scales are three vectors,
 * a row a lane, unpacked by shifts and masks (quant_interleave_vnni.c's
 * qk_block does the same).
 */
ALWAYS_INLINE void unpack_k_interleaved(enum ggml_type t, const uint8_t *const *rows, int64_t b, struct kq_slice *sl,
                                        int p, int s)
{
        struct qi_layout l;
        qi_layout_of(t, &l);
        const uint8_t *x = rows[0] + b * (int64_t)l.bytes;
        const __m512i pair = _mm512_set1_epi32(0x003f003f);

        for (int v = 0; v < 32; v++) {
                __m512i lo, hi;
                qi_nibbles(x, &l, v, &lo, &hi);
                const int g = 64 * s + 16 * (v / 8) + v % 8;
                _mm512_store_si512(sl->w[p][g], lo);
                _mm512_store_si512(sl->w[p][g + 8], hi);
        }
        __m512i sc[2], m[2];
        qi_k4_scales(x, &l, &sc[0], &m[0], &sc[1], &m[1]);
        for (int j = 0; j < 8; j++) {
                const __m512i scale = qi_lane_byte(sc, j, 63);
                _mm512_store_si512(sl->sc[p][16 * s + 2 * j], scale);
                _mm512_store_si512(sl->sc[p][16 * s + 2 * j + 1], scale);
        }
        /* (min_2q, min_2q+1) as int16 pairs: bytes 0, 1 or 2, 3 of each lane of bm (q < 2) or m_h */
        for (int q = 0; q < 4; q++)
                _mm512_store_si512(sl->pr[p][s][q], _mm512_and_si512(byte_pair(m[q / 2], q % 2), pair));
        _mm512_store_ps(sl->dw[p][s], qi_f16x16(x + l.d));
        _mm512_store_ps(sl->dm[p][s], qi_f16x16(x + l.m));
}

static void unpack_q4_k_interleaved(const uint8_t *const *rows, int64_t b, struct kq_slice *sl, int p, int s)
{
        unpack_k_interleaved(GGML_TYPE_Q4_K, rows, b, sl, p, s);
}

static void unpack_q5_k_interleaved(const uint8_t *const *rows, int64_t b, struct kq_slice *sl, int p, int s)
{
        unpack_k_interleaved(GGML_TYPE_Q5_K, rows, b, sl, p, s);
}

/*
 * Q2_K or Q3_K interleaved (quant_interleave.h): super-block b of the
 * group at rows[0] into super-block s of panel p. Vector 8 h + n's bits
 * 2 t, 2 t + 1 are columns 128 h + 32 t + 4 n .. of the 16 rows (Q3_K:
 * plus 4 under the hmask masks); the per-16 scales come out of each row's
 * lane as in quant_interleave_vnni.c, and the pairs: Q2_K the mins
 * (min_2j, min_2j+1), Q3_K (-4 sc_2j, -4 sc_2j+1), against the activations'
 * sums of 16.
 */
ALWAYS_INLINE void unpack_k2_interleaved(enum ggml_type t, const uint8_t *const *rows, int64_t b, struct kq_slice *sl,
                                         int p, int s)
{
        struct qi_layout l;
        qi_layout_of(t, &l);
        const uint8_t *x = rows[0] + b * (int64_t)l.bytes;
        __m512i v[4];

        for (int vi = 0; vi < 16; vi++)
                for (int sh = 0; sh < 4; sh++)
                        _mm512_store_si512(sl->w[p][64 * s + 32 * (vi / 8) + 8 * sh + vi % 8],
                                           qi_crumbs(x, &l, vi, sh));
        if (t == GGML_TYPE_Q2_K) {
                for (int i = 0; i < 4; i++)
                        v[i] = _mm512_loadu_si512(x + l.sc + 64 * i);
                for (int j = 0; j < 16; j++)
                        _mm512_store_si512(sl->sc[p][16 * s + j], qi_lane_byte(v, j, 15));
                for (int jp = 0; jp < 8; jp++)
                        _mm512_store_si512(sl->pr[p][s][jp],
                                           _mm512_and_si512(_mm512_srli_epi16(byte_pair(v[jp / 2], jp % 2), 4),
                                                            _mm512_set1_epi32(0x000f000f)));
                _mm512_store_ps(sl->dm[p][s], qi_f16x16(x + l.m));
        } else {
                /* scale 4 i + j, plus 32, in byte j of v[i] */
                qi_q3k_scales(x, &l, v);
                for (int j = 0; j < 16; j++)
                        _mm512_store_si512(sl->sc[p][16 * s + j], qi_q3k_scale(v, j));
                for (int jp = 0; jp < 8; jp++) {
                        const __m512i sc = _mm512_sub_epi16(
                                _mm512_and_si512(byte_pair(v[jp / 2], jp % 2), _mm512_set1_epi32(0x003f003f)),
                                _mm512_set1_epi32(0x00200020));
                        _mm512_store_si512(sl->pr[p][s][jp],
                                           _mm512_sub_epi16(_mm512_setzero_si512(), _mm512_slli_epi16(sc, 2)));
                }
        }
        _mm512_store_ps(sl->dw[p][s], qi_f16x16(x + l.d));
}

static void unpack_q2_k_interleaved(const uint8_t *const *rows, int64_t b, struct kq_slice *sl, int p, int s)
{
        unpack_k2_interleaved(GGML_TYPE_Q2_K, rows, b, sl, p, s);
}

static void unpack_q3_k_interleaved(const uint8_t *const *rows, int64_t b, struct kq_slice *sl, int p, int s)
{
        unpack_k2_interleaved(GGML_TYPE_Q3_K, rows, b, sl, p, s);
}

/*
 * Q6_K, columns 64c .. 64c + 63 (h = c / 2): the nibbles of ql[64h ..
 * 64h + 63], low for even c and high for odd, and bits 2s, 2s + 1 of
 * qh[32h + l] for s = 2 (c % 2) + (which half of the 64).
 */
static void unpack_q6_k(const uint8_t *const *rows, int64_t b, struct kq_slice *sl, int p, int s)
{
        const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30);
        __m512i num[16], sc[16];

        for (int c = 0; c < 4; c++) {
                const int h = c / 2, sh = 4 * (c % 2);
                __m512i r[16];
                for (int i = 0; i < 16; i++) {
                        const struct block_q6_K *x = (const struct block_q6_K *)(const void *)rows[i] + b;
                        __m512i lo = _mm512_loadu_si512(x->ql + 64 * h);
                        const __m256i qh = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
                        __m512i hi = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
                        lo = _mm512_and_si512(_mm512_srli_epi16(lo, (unsigned)sh), m4);
                        hi = _mm512_and_si512(_mm512_slli_epi16(_mm512_srli_epi16(hi, (unsigned)sh), 4), m30);
                        r[i] = _mm512_or_si512(lo, hi);
                }
                store_groups(sl, p, s, c, r);
        }
        for (int i = 0; i < 16; i++) {
                const struct block_q6_K *x = (const struct block_q6_K *)(const void *)rows[i] + b;
                const __m128i s8 = _mm_loadu_si128((const __m128i *)x->scales);
                /* (-32 sc_2j, -32 sc_2j+1) as int16 pairs */
                const __m256i off = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(_mm256_cvtepi8_epi16(s8), 5));
                uint16_t d;
                memcpy(&d, &x->d, 2);
                num[i] = with_f16_pair(_mm512_zextsi256_si512(off), d);
                sc[i] = _mm512_cvtepi8_epi32(s8);
        }
        store_numbers(sl, p, s, num, sc);
}

/*
 * Q6_K interleaved (quant_interleave.h): super-block b of the group at
 * rows[0] into super-block s of panel p. Vector 8 h + m of qh tops the
 * low and high nibbles of ql vectors 16 h + m and 16 h + m + 8 (columns
 * 128 h + 4 m .., + 32, + 64, + 96), as quant_interleave_vnni.c's
 * q6k_block_tokens; the scales are signed bytes of four vectors, a row a
 * lane, and the offset pairs (-32 sc_2j, -32 sc_2j+1) against the sums of
 * 16.
 */
static void unpack_q6_k_interleaved(const uint8_t *const *rows, int64_t b, struct kq_slice *sl, int p, int s)
{
        struct qi_layout l;
        qi_layout_of(GGML_TYPE_Q6_K, &l);
        const uint8_t *x = rows[0] + b * (int64_t)l.bytes;
        __m512i v[4];

        for (int h = 0; h < 2; h++)
                for (int m = 0; m < 8; m++) {
                        uint8_t(*w)[64] = sl->w[p] + 64 * s + 32 * h + m;
                        __m512i u[4];
                        qi_q6k_run(x, &l, 8 * h + m, u);
                        for (int i = 0; i < 4; i++)
                                _mm512_store_si512(w[8 * i], u[i]);
                }
        for (int i = 0; i < 4; i++)
                v[i] = _mm512_loadu_si512(x + l.sc + 64 * i);
        for (int j = 0; j < 16; j++)
                _mm512_store_si512(sl->sc[p][16 * s + j], qi_q6k_scale(v, j));
        for (int jp = 0; jp < 8; jp++) {
                const __m512i sc = _mm512_srai_epi16(_mm512_slli_epi16(byte_pair(v[jp / 2], jp % 2), 8), 8);
                _mm512_store_si512(sl->pr[p][s][jp], _mm512_sub_epi16(_mm512_setzero_si512(), _mm512_slli_epi16(sc, 5)));
        }
        _mm512_store_ps(sl->dw[p][s], qi_f16x16(x + l.d));
}

/*
 * A token group's activations at the slice's start (bs: Q6_K the Q8_K
 * sums of 16, Q4_K those of 32 in bs32), and its outputs at the block's
 * first row.
 */
struct kq_tokens {
        const int8_t *q[KQ_NR];
        const float *d[KQ_NR];
        const int16_t *bs[KQ_NR];
        float *y[KQ_NR];
        bool first; /* the slice starts at column 0 */
        int16_t bs32[KQ_NR][KQ_SB * 8];
};

/* What a tile does with the scales and the mins or offsets. */
enum kq_kind {
        KQ_Q4_K, /* vpdpwssd for the scales (the inner sum fits int16), 4 min pairs into M */
        KQ_Q6_K, /* vpmulld for the scales, 8 offset pairs into isum (and Q3_K, interleaved) */
        KQ_Q5_K, /* vpmulld for the scales, 4 min pairs into M (interleaved weights only) */
        KQ_Q2_K, /* vpdpwssd for the scales, 8 min pairs into M (interleaved weights only) */
        KQ_KINDS,
};

/* MR panels from p0 times NR tokens over the slice's nsb super-blocks, for a kind of kq_kind. */
ALWAYS_INLINE void kq_tile(const struct kq_slice *sl, int p0, int nsb, const struct kq_tokens *tk, const int MR,
                           const int NR, const enum kq_kind KIND)
{
        /* OFF: offset pairs into isum, not min pairs into M; P16: 8 pairs against sums of 16, not 4 of 32 */
        const bool OFF = KIND == KQ_Q6_K, MULLD = KIND == KQ_Q6_K || KIND == KQ_Q5_K;
        const bool P16 = KIND == KQ_Q6_K || KIND == KQ_Q2_K;

        for (int s = 0; s < nsb; s++) {
                __m512i isum[KQ_MR][KQ_NR], in[KQ_MR][KQ_NR];
                for (int i = 0; i < MR; i++)
                        for (int j = 0; j < NR; j++)
                                isum[i][j] = _mm512_setzero_si512();
                for (int h = 0; h < 16; h++) {
                        for (int i = 0; i < MR; i++)
                                for (int j = 0; j < NR; j++)
                                        in[i][j] = _mm512_setzero_si512();
                        for (int gg = 0; gg < 4; gg++) {
                                const int g = 64 * s + 4 * h + gg;
                                const uint8_t *wg[PANEL_MR] = { sl->w[p0][g], sl->w[p0 + MR - 1][g] };
                                panel_group_dot(in, wg, tk->q, g, MR, NR);
                        }
                        /*
                         * isum += sc * in: Q4_K's |in| <= 16 * 15 * 128 < 2^15, so the int32 lane is
                         * its int16 low half sign-extended, and vpdpwssd against (sc, 0) multiplies it
                         */
                        for (int i = 0; i < MR; i++) {
                                const __m512i sc = _mm512_load_si512(sl->sc[p0 + i][16 * s + h]);
                                for (int j = 0; j < NR; j++)
                                        isum[i][j] = MULLD ? _mm512_add_epi32(isum[i][j],
                                                                              _mm512_mullo_epi32(in[i][j], sc))
                                                           : _mm512_dpwssd_epi32(isum[i][j], in[i][j], sc);
                        }
                }
                /* Q2_K, Q4_K, Q5_K: M into the inner sums; Q3_K, Q6_K: the offset out of isum */
                if (!OFF)
                        for (int i = 0; i < MR; i++)
                                for (int j = 0; j < NR; j++)
                                        in[i][j] = _mm512_setzero_si512();
                for (int jp = 0; jp < (P16 ? 8 : 4); jp++)
                        for (int j = 0; j < NR; j++) {
                                const __m512i bs = bcast4(tk->bs[j] + (P16 ? 16 : 8) * s + 2 * jp);
                                for (int i = 0; i < MR; i++) {
                                        const __m512i pr = _mm512_load_si512(sl->pr[p0 + i][s][jp]);
                                        if (OFF)
                                                isum[i][j] = _mm512_dpwssd_epi32(isum[i][j], pr, bs);
                                        else
                                                in[i][j] = _mm512_dpwssd_epi32(in[i][j], pr, bs);
                                }
                        }
                /* the float steps of the definition, on 16 rows at once */
                for (int j = 0; j < NR; j++) {
                        const __m512 da = _mm512_set1_ps(tk->d[j][s]);
                        for (int i = 0; i < MR; i++) {
                                float *yp = tk->y[j] + GEMM_KQ_PANEL * (p0 + i);
                                const __m512 dw = _mm512_load_ps(sl->dw[p0 + i][s]);
                                /* the definition's acc = 0 before K's first super-block */
                                __m512 acc = tk->first && s == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(yp);
                                acc = _mm512_fmadd_ps(_mm512_mul_ps(dw, da), _mm512_cvtepi32_ps(isum[i][j]), acc);
                                if (!OFF) {
                                        const __m512 dm = _mm512_mul_ps(_mm512_load_ps(sl->dm[p0 + i][s]), da);
                                        const __m512 neg = _mm512_castsi512_ps(_mm512_xor_si512(
                                                _mm512_castps_si512(dm), _mm512_set1_epi32((int)0x80000000u)));
                                        acc = _mm512_fmadd_ps(neg, _mm512_cvtepi32_ps(in[i][j]), acc);
                                }
                                _mm512_storeu_ps(yp, acc);
                        }
                }
        }
}

typedef void kq_tile_fn(const struct kq_slice *sl, int p0, int nsb, const struct kq_tokens *tk);

PANEL_TILES(kq_q4_k, struct kq_slice, struct kq_tokens, kq_tile, KQ_Q4_K)
PANEL_TILES(kq_q6_k, struct kq_slice, struct kq_tokens, kq_tile, KQ_Q6_K)
PANEL_TILES(kq_q5_k, struct kq_slice, struct kq_tokens, kq_tile, KQ_Q5_K)
PANEL_TILES(kq_q2_k, struct kq_slice, struct kq_tokens, kq_tile, KQ_Q2_K)

static kq_tile_fn *const kq_tiles[KQ_KINDS][KQ_MR][KQ_NR + 1] = {
        [KQ_Q4_K] = PANEL_TILE_TABLE(kq_q4_k),
        [KQ_Q6_K] = PANEL_TILE_TABLE(kq_q6_k),
        [KQ_Q5_K] = PANEL_TILE_TABLE(kq_q5_k),
        [KQ_Q2_K] = PANEL_TILE_TABLE(kq_q2_k),
};

/* Tokens [t0, t0 + nr): their activations from column k0 (nsb super-blocks), their outputs from row rb. */
static void kq_tokens_at(struct kq_tokens *tk, const struct act_blocks *a, int64_t K, int64_t t0, int nr, int64_t k0,
                         int nsb, float *y, size_t ys, int64_t rb, bool sums16)
{
        tk->first = k0 == 0;
        for (int j = 0; j < nr; j++) {
                const int64_t t = t0 + j;
                tk->q[j] = a->q + t * K + k0;
                tk->d[j] = a->d + t * (K / QK_K) + k0 / QK_K;
                tk->bs[j] = a->bsums + t * (K / 16) + k0 / 16;
                tk->y[j] = y + t * ys + rb;
                if (sums16)
                        continue;
                for (int s = 0; s < nsb; s++) {
                        const __m128i b0 = _mm_loadu_si128((const __m128i *)(tk->bs[j] + 16 * s));
                        const __m128i b1 = _mm_loadu_si128((const __m128i *)(tk->bs[j] + 16 * s + 8));
                        _mm_storeu_si128((__m128i *)(tk->bs32[j] + 8 * s), _mm_hadd_epi16(b0, b1));
                }
                tk->bs[j] = tk->bs32[j];
        }
}

typedef void kq_unpack_fn(const uint8_t *const *rows, int64_t b, struct kq_slice *sl, int p, int s);

/* np panels of rows from rb, all tokens, columns [k0, k0 + KQ_SLICE) or to K. */
static void kq_slice_run(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok, float *y, size_t ys,
                         int64_t rb, int np, int64_t k0, struct kq_slice *sl)
{
        enum kq_kind kind;
        kq_unpack_fn *unpack;
        const int64_t K = w->cols, sb0 = k0 / QK_K;
        const int nsb = (int)(MIN(KQ_SLICE, K - k0) / QK_K);

        switch (w->type) {
        case GGML_TYPE_Q6_K:
                kind = KQ_Q6_K, unpack = w->interleave ? unpack_q6_k_interleaved : unpack_q6_k;
                break;
        case GGML_TYPE_Q5_K:
                kind = KQ_Q5_K, unpack = unpack_q5_k_interleaved;
                break;
        case GGML_TYPE_Q3_K:
                kind = KQ_Q6_K, unpack = unpack_q3_k_interleaved;
                break;
        case GGML_TYPE_Q2_K:
                kind = KQ_Q2_K, unpack = unpack_q2_k_interleaved;
                break;
        default:
                kind = KQ_Q4_K, unpack = w->interleave ? unpack_q4_k_interleaved : unpack_q4_k;
                break;
        }
        for (int p = 0; p < np; p++) {
                const uint8_t *rows[GEMM_KQ_PANEL];
                for (int i = 0; i < GEMM_KQ_PANEL; i++)
                        rows[i] = (const uint8_t *)w->data + (rb + GEMM_KQ_PANEL * p + i) * w->row_bytes;
                for (int s = 0; s < nsb; s++)
                        unpack(rows, sb0 + s, sl, p, s);
        }
        /* pairs of panels outside: their 32 KiB of weights stay in L1 while the token groups pass */
        for (int p = 0; p < np; p += KQ_MR) {
                const int mr = MIN(KQ_MR, np - p);
                for (int64_t t0 = 0; t0 < n_tok; t0 += KQ_NR) {
                        const int nr = (int)MIN(KQ_NR, n_tok - t0);
                        struct kq_tokens tk;
                        kq_tokens_at(&tk, a, K, t0, nr, k0, nsb, y, ys, rb, kind == KQ_Q6_K || kind == KQ_Q2_K);
                        kq_tiles[kind][mr - 1][nr](sl, p, nsb, &tk);
                }
        }
}

int64_t gemm_kquant_vnni(const struct npu_weight *w, const struct act_blocks *a, int64_t n_tok, float *y, size_t ys,
                         int64_t r0, int64_t r1)
{
        const int64_t np_all = (r1 - r0) / GEMM_KQ_PANEL;
        struct kq_slice sl;

        /* Q4_K and Q6_K as stored or interleaved; Q2_K, Q3_K and Q5_K interleaved */
        if (a->scheme != ACT_SCHEME_Q8_K || ggml_type_block_elems(w->type) != QK_K ||
            (w->type != GGML_TYPE_Q4_K && w->type != GGML_TYPE_Q6_K && !w->interleave))
                return r0;
        /* an interleaved weight: its groups are the panels, from a group's first row */
        if (w->interleave && (w->interleave != GEMM_KQ_PANEL || r0 % GEMM_KQ_PANEL))
                return r0;
        for (int64_t pb = 0; pb < np_all; pb += GEMM_KQ_PANELS) {
                const int np = (int)MIN(GEMM_KQ_PANELS, np_all - pb);
                const int64_t rb = r0 + GEMM_KQ_PANEL * pb;
                for (int64_t k0 = 0; k0 < w->cols; k0 += KQ_SLICE)
                        kq_slice_run(w, a, n_tok, y, ys, rb, np, k0, &sl);
        }
        return r0 + GEMM_KQ_PANEL * np_all;
}
