/* SPDX-License-Identifier: MIT */
/*
 * A block of an interleaved group (quant_interleave.h) in AVX-512
 * registers: what the one-token kernel (quant_interleave_vnni.c) and the
 * GEMMs' unpacking (gemm_block_vnni.c for the 32-element types,
 * gemm_kquant_vnni.c for the K-quants) all read.
 */
#pragma once

#include <immintrin.h>
#include <string.h>

#include "quant_interleave.h"

#define QI_ZMM_INLINE static inline __attribute__((always_inline, target("avx512f,avx512bw,f16c")))

/*
 * Vector m of the group block at x: its low nibbles (each row's columns
 * 4 m .. 4 m + 3) into *lo, its high ones (16 + 4 m ..) into *hi, as
 * unsigned bytes; Q5's fifth bits added as 16 under their masks. Q8_0's
 * vectors are whole bytes: vector m into *lo, vector 4 + m (columns
 * 16 + 4 m ..) into *hi, each plus 128 (its offset).
 */
QI_ZMM_INLINE void qi_nibbles(const uint8_t *x, const struct qi_layout *l, int m, __m512i *lo, __m512i *hi)
{
        const __m512i m4 = _mm512_set1_epi8(15), m16 = _mm512_set1_epi8(16);
        const __m512i n = _mm512_loadu_si512(x + 64 * m);

        if (l->bits == 8) {
                /* Q8_0: whole bytes, vectors m and 4 + m, signed made unsigned (q + 128) */
                const __m512i sign = _mm512_set1_epi8((char)0x80);
                *lo = _mm512_xor_si512(n, sign);
                *hi = _mm512_xor_si512(_mm512_loadu_si512(x + 64 * (4 + m)), sign);
                return;
        }
        *lo = _mm512_and_si512(n, m4);
        *hi = _mm512_and_si512(_mm512_srli_epi16(n, 4), m4);
        if (l->qh) {
                uint64_t k[2];
                memcpy(k, x + l->qh + 16 * m, sizeof(k));
                *lo = _mm512_mask_add_epi8(*lo, _cvtu64_mask64(k[0]), *lo, m16);
                *hi = _mm512_mask_add_epi8(*hi, _cvtu64_mask64(k[1]), *hi, m16);
        }
}

/* The sixteen rows' f16 at x (d or m of a group block) as floats. */
QI_ZMM_INLINE __m512 qi_f16x16(const uint8_t *x)
{
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)x));
}

/*
 * Q4_K, Q5_K: a group block's packed scales, bytes 0-3 (*a), 4-7 (*b) and
 * 8-11 (c) of each row's lane, and in *sc_h, *m_h byte j of each lane:
 * sc[4 + j] = (c_j & 15) | (a_j >> 6) << 4 and m[4 + j] = (c_j >> 4) |
 * (b_j >> 6) << 4 (quant_types.h's k_scale_min), in their low six bits;
 * sc[j] and m[j] (j < 4) are the low six bits of a_j and b_j.
 */
QI_ZMM_INLINE void qi_k4_scales(const uint8_t *x, const struct qi_layout *l, __m512i *a, __m512i *b, __m512i *sc_h,
                                __m512i *m_h)
{
        const __m512i low4 = _mm512_set1_epi8(15), c = _mm512_loadu_si512(x + l->sc + 128);

        *a = _mm512_loadu_si512(x + l->sc);
        *b = _mm512_loadu_si512(x + l->sc + 64);
        /* 0xca: the first operand's bits pick the second's, the others the third's */
        *sc_h = _mm512_ternarylogic_epi32(low4, c, _mm512_srli_epi32(*a, 2), 0xca);
        *m_h = _mm512_ternarylogic_epi32(low4, _mm512_srli_epi32(c, 4), _mm512_srli_epi32(*b, 2), 0xca);
}

/*
 * Q3_K: a group block's scales, each plus 32 in the low six bits of byte
 * j of v[t]'s lanes (scale 4 t + j). With the packed bytes 0-3 (a), 4-7
 * (b), 8-11 (c) of a row: t 0: (a & 15) | (c & 3) << 4; 1: (b & 15) |
 * (c >> 2 & 3) << 4; 2: (a >> 4) | (c >> 4 & 3) << 4; 3: (b >> 4) |
 * (c >> 6) << 4 (quant_types.h's q3_k_scale).
 */
QI_ZMM_INLINE void qi_q3k_scales(const uint8_t *x, const struct qi_layout *l, __m512i *v)
{
        const __m512i low4 = _mm512_set1_epi8(15), a = _mm512_loadu_si512(x + l->sc);
        const __m512i b = _mm512_loadu_si512(x + l->sc + 64), c = _mm512_loadu_si512(x + l->sc + 128);

        v[0] = _mm512_ternarylogic_epi32(low4, a, _mm512_slli_epi32(c, 4), 0xca);
        v[1] = _mm512_ternarylogic_epi32(low4, b, _mm512_slli_epi32(c, 2), 0xca);
        v[2] = _mm512_ternarylogic_epi32(low4, _mm512_srli_epi32(a, 4), c, 0xca);
        v[3] = _mm512_ternarylogic_epi32(low4, _mm512_srli_epi32(b, 4), _mm512_srli_epi32(c, 2), 0xca);
}

/* Byte j % 4 of the lanes of v[j / 4], its bits under mask, as int32 lanes. */
QI_ZMM_INLINE __m512i qi_lane_byte(const __m512i *v, int j, int mask)
{
        return _mm512_and_si512(_mm512_srli_epi32(v[j / 4], 8 * (unsigned)(j % 4)), _mm512_set1_epi32(mask));
}

/* Q3_K: scale j of qi_q3k_scales' v, less its 32, as int32 lanes (signed). */
QI_ZMM_INLINE __m512i qi_q3k_scale(const __m512i *v, int j)
{
        return _mm512_sub_epi32(qi_lane_byte(v, j, 63), _mm512_set1_epi32(32));
}

/*
 * Q6_K: run j (8 h + m) of a group block, its q (0..63) as unsigned bytes
 * (quant_interleave.h): u[0] the low nibbles of qs vector 16 h + m, u[1]
 * of 16 h + m + 8, u[2] and u[3] their high nibbles, each topped (bits
 * 4-5) by its two bits of the run's qh vector. One vpternlogd each (0xca:
 * the first operand's bits pick the second's, the others the third's).
 */
QI_ZMM_INLINE void qi_q6k_run(const uint8_t *x, const struct qi_layout *l, int j, __m512i *u)
{
        const __m512i m4 = _mm512_set1_epi8(15), top = _mm512_set1_epi8(0x30);
        const __m512i lo = _mm512_loadu_si512(x + qi_qs_at(l, 16 * (j / 8) + j % 8));
        const __m512i hi = _mm512_loadu_si512(x + qi_qs_at(l, 16 * (j / 8) + j % 8 + 8));
        const __m512i qh = _mm512_loadu_si512(x + qi_qh_at(l, j));

        u[0] = _mm512_ternarylogic_epi32(top, _mm512_slli_epi16(qh, 4), _mm512_and_si512(lo, m4), 0xca);
        u[1] = _mm512_ternarylogic_epi32(top, _mm512_slli_epi16(qh, 2), _mm512_and_si512(hi, m4), 0xca);
        u[2] = _mm512_ternarylogic_epi32(top, qh, _mm512_and_si512(_mm512_srli_epi16(lo, 4), m4), 0xca);
        u[3] = _mm512_ternarylogic_epi32(top, _mm512_srli_epi16(qh, 2), _mm512_and_si512(_mm512_srli_epi16(hi, 4), m4),
                                         0xca);
}

/* Q6_K: scale j (signed byte j % 4 of the lanes of v[j / 4]) as int32 lanes. */
QI_ZMM_INLINE __m512i qi_q6k_scale(const __m512i *v, int j)
{
        return _mm512_srai_epi32(_mm512_slli_epi32(v[j / 4], 24 - 8 * (unsigned)(j % 4)), 24);
}

/*
 * Q2_K, Q3_K: bits 2 s, 2 s + 1 of vector v of a group block (z, loaded),
 * each in its byte; Q3_K's plus 4 under its hmask mask (quant_interleave.h).
 */
QI_ZMM_INLINE __m512i qi_crumbs_of(__m512i z, const uint8_t *x, const struct qi_layout *l, int v, int s)
{
        const __m512i zs = s ? _mm512_srli_epi16(z, 2 * (unsigned)s) : z;
        uint64_t m;

        if (!l->qh)
                return _mm512_and_si512(zs, _mm512_set1_epi8(3));
        /*
         * (zs & 3) | 4 under the mask: the 4s by a zero-masked move, then one
         * vpternlogd, where an and then a merge-masked add had GCC copy the
         * register first. Q3_K one token, npu-kbench at 11008x4096, 2
         * threads, paired with the probe, 3 rounds alternated: 79/81/96 %
         * against 74/69/76 % (at 5632x2048 72/78/82 against 75/71/79).
         */
        memcpy(&m, x + l->qh + 8 * (4 * v + s), 8);
        return _mm512_ternarylogic_epi32(zs, _mm512_set1_epi8(3),
                                         _mm512_maskz_mov_epi8(_cvtu64_mask64(m), _mm512_set1_epi8(4)), 0xea);
}

/* qi_crumbs_of vector v as stored */
QI_ZMM_INLINE __m512i qi_crumbs(const uint8_t *x, const struct qi_layout *l, int v, int s)
{
        return qi_crumbs_of(_mm512_loadu_si512(x + 64 * v), x, l, v, s);
}
