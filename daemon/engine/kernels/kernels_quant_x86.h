/* SPDX-License-Identifier: MIT */
/*
 * The x86 kernels of the block-quantized types, included once per
 * instruction set by kernels_quant.c, which defines before each inclusion:
 *   SIMD(name)              this set's copy of name (name_avx2, name_vnni)
 *   SIMD_FN, SIMD_INLINE    function attributes: the target
 *   MAC_U8S8(s, u, v)       s + per int32 lane the sum of the four products
 *                           of unsigned u and signed v bytes
 *   MAC_SCALED(s, u, v, sc) s + per int32 lane sc times that sum, sc the
 *                           lane's int16 scale (vpmaddubsw, then vpmaddwd or
 *                           vpdpwssd: the pair sums never saturate here)
 * Both give exact integers in every set, so every copy computes the lanes L
 * of kernels_quant.h's definition, then the same float operations in the
 * same order.
 *
 * Weights stay in their blocks: each row is streamed once, its nibbles
 * unpacked in registers. Signed weights meet the activations as
 * |w| x sign(a, w) (vpsignb), unsigned ones directly.
 */

SIMD_INLINE float SIMD(hsum8)(__m256 v)
{
        __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
        lo = _mm_add_ps(lo, hi);
        lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
        lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
        return _mm_cvtss_f32(lo);
}

SIMD_INLINE int32_t SIMD(hsum_i32x4)(__m128i s)
{
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
        return _mm_cvtsi128_si32(s);
}

SIMD_INLINE int32_t SIMD(hsum_i32x8)(__m256i v)
{
        return SIMD(hsum_i32x4)(_mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
}

SIMD_INLINE float SIMD(f16)(npu_f16 h)
{
        return _cvtsh_ss(h);
}

/* 16 bytes of nibbles: the 16 low nibbles, then the 16 high ones. */
SIMD_INLINE __m256i SIMD(nibbles32)(const uint8_t *qs)
{
        __m128i v = _mm_loadu_si128((const __m128i *)qs);
        __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1);
        return _mm256_and_si256(b, _mm256_set1_epi8(15));
}

/* Byte k is 16 where bit k of the little-endian word at p is set, else 0. */
SIMD_INLINE __m256i SIMD(bits32_16)(const uint8_t *p)
{
        const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                              2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
        const __m256i bit = _mm256_set1_epi64x(0x8040201008040201ll);
        uint32_t x;
        memcpy(&x, p, 4);
        __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
        return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit), _mm256_set1_epi8(16));
}

/* s + the lanes of w x a for signed w (|w| <= 128) and a (|a| <= 127). */
SIMD_INLINE __m256i SIMD(mac_signed)(__m256i s, __m256i w, __m256i a)
{
        return MAC_U8S8(s, _mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
}

SIMD_INLINE __m256i SIMD(mac_signed_scaled)(__m256i s, __m256i w, __m256i a, __m256i sc)
{
        return MAC_SCALED(s, _mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w), sc);
}

SIMD_INLINE __m256i SIMD(load32)(const void *p)
{
        return _mm256_loadu_si256((const __m256i *)p);
}

/* --- the 32-element types: the lanes of one block --- */

SIMD_INLINE __m256i SIMD(lanes_q4_0)(const struct block_q4_0 *b, const int8_t *a)
{
        __m256i w = _mm256_sub_epi8(SIMD(nibbles32)(b->qs), _mm256_set1_epi8(8));
        return SIMD(mac_signed)(_mm256_setzero_si256(), w, SIMD(load32)(a));
}

SIMD_INLINE __m256i SIMD(lanes_q4_1)(const struct block_q4_1 *b, const int8_t *a)
{
        return MAC_U8S8(_mm256_setzero_si256(), SIMD(nibbles32)(b->qs), SIMD(load32)(a));
}

SIMD_INLINE __m256i SIMD(lanes_q5_0)(const struct block_q5_0 *b, const int8_t *a)
{
        __m256i q = _mm256_or_si256(SIMD(nibbles32)(b->qs), SIMD(bits32_16)(b->qh));
        return SIMD(mac_signed)(_mm256_setzero_si256(), _mm256_sub_epi8(q, _mm256_set1_epi8(16)), SIMD(load32)(a));
}

SIMD_INLINE __m256i SIMD(lanes_q5_1)(const struct block_q5_1 *b, const int8_t *a)
{
        __m256i q = _mm256_or_si256(SIMD(nibbles32)(b->qs), SIMD(bits32_16)(b->qh));
        return MAC_U8S8(_mm256_setzero_si256(), q, SIMD(load32)(a));
}

SIMD_INLINE __m256i SIMD(lanes_q8_0)(const struct block_q8_0 *b, const int8_t *a)
{
        return SIMD(mac_signed)(_mm256_setzero_si256(), SIMD(load32)(b->qs), SIMD(load32)(a));
}

#ifndef LEGACY_MIN_DEFINED
#define LEGACY_MIN_DEFINED
/* Q4_1 and Q5_1 keep their f16 m right after d. */
static inline npu_f16 legacy_min(const void *blk)
{
        npu_f16 m;
        memcpy(&m, (const uint8_t *)blk + 2, 2);
        return m;
}
#endif

/*
 * One row of 32-element blocks against one token: q the token's int8
 * values, d its block scales, s (Q4_1, Q5_1) its scaled block sums.
 */
#define DEFINE_ROW_LEGACY(name, btype, has_min)                                                               \
        SIMD_INLINE float SIMD(row_##name)(const btype *blk, int64_t nb, const int8_t *q, const float *d,     \
                                           const float *s)                                                    \
        {                                                                                                     \
                __m256 acc = _mm256_setzero_ps();                                                             \
                float accm = 0;                                                                               \
                for (int64_t b = 0; b < nb; b++) {                                                            \
                        __m256i L = SIMD(lanes_##name)(&blk[b], q + 32 * b);                                  \
                        const float dw = SIMD(f16)(blk[b].d) * d[b];                                          \
                        acc = _mm256_fmadd_ps(_mm256_set1_ps(dw), _mm256_cvtepi32_ps(L), acc);                \
                        if (has_min)                                                                          \
                                accm = fmaf(SIMD(f16)(legacy_min(&blk[b])), s[b], accm);                      \
                }                                                                                             \
                float y = SIMD(hsum8)(acc);                                                                   \
                if (has_min)                                                                                  \
                        y = y + accm;                                                                         \
                return y;                                                                                     \
        }

DEFINE_ROW_LEGACY(q4_0, struct block_q4_0, false)
DEFINE_ROW_LEGACY(q4_1, struct block_q4_1, true)
DEFINE_ROW_LEGACY(q5_0, struct block_q5_0, false)
DEFINE_ROW_LEGACY(q5_1, struct block_q5_1, true)
DEFINE_ROW_LEGACY(q8_0, struct block_q8_0, false)

/* --- the K-quants (256-element blocks) --- */

/* Broadcast int16 element j of each 128-bit lane to the whole lane. */
#define BCAST16(v, j) _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(0x0100 * (2 * (j) + 1) + 2 * (j))))
/*
 * A scale vector for a 32-element chunk made of two 16-element sub-blocks
 * (lanes 0-3 the first, 4-7 the second): sub-blocks 2c and 2c + 1 from lo
 * (int16 scales 0..7 in both lanes) or hi (8..15).
 */
#define PAIR16(lo, hi, c)                                                                                      \
        _mm256_shuffle_epi8((c) < 4 ? (lo) : (hi),                                                            \
                            _mm256_setr_epi8(4 * (c) % 16, 4 * (c) % 16 + 1, 4 * (c) % 16, 4 * (c) % 16 + 1,   \
                                             4 * (c) % 16, 4 * (c) % 16 + 1, 4 * (c) % 16, 4 * (c) % 16 + 1,   \
                                             4 * (c) % 16, 4 * (c) % 16 + 1, 4 * (c) % 16, 4 * (c) % 16 + 1,   \
                                             4 * (c) % 16, 4 * (c) % 16 + 1, 4 * (c) % 16, 4 * (c) % 16 + 1,   \
                                             (4 * (c) + 2) % 16, (4 * (c) + 2) % 16 + 1, (4 * (c) + 2) % 16,  \
                                             (4 * (c) + 2) % 16 + 1, (4 * (c) + 2) % 16,                      \
                                             (4 * (c) + 2) % 16 + 1, (4 * (c) + 2) % 16,                      \
                                             (4 * (c) + 2) % 16 + 1, (4 * (c) + 2) % 16,                      \
                                             (4 * (c) + 2) % 16 + 1, (4 * (c) + 2) % 16,                      \
                                             (4 * (c) + 2) % 16 + 1, (4 * (c) + 2) % 16,                      \
                                             (4 * (c) + 2) % 16 + 1, (4 * (c) + 2) % 16,                      \
                                             (4 * (c) + 2) % 16 + 1))

/* The 8 int16 scales of a 16-byte vector's low (or high) 8 bytes, in both lanes. */
SIMD_INLINE __m256i SIMD(scales16_u)(__m128i bytes)
{
        return _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(bytes));
}

SIMD_INLINE __m256i SIMD(scales16_s)(__m128i bytes)
{
        return _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(bytes));
}

/* Q4_K/Q5_K: the 8 6-bit scales (bytes 0-7) and mins (bytes 8-15) of a block. */
SIMD_INLINE __m128i SIMD(k4_scales_mins)(const uint8_t *scales)
{
        uint32_t w0, w1, w2;
        memcpy(&w0, scales, 4);
        memcpy(&w1, scales + 4, 4);
        memcpy(&w2, scales + 8, 4);
        uint32_t sc_lo = w0 & 0x3f3f3f3f, sc_hi = (w2 & 0x0f0f0f0f) | ((w0 >> 6) & 0x03030303) << 4;
        uint32_t m_lo = w1 & 0x3f3f3f3f, m_hi = ((w2 >> 4) & 0x0f0f0f0f) | ((w1 >> 6) & 0x03030303) << 4;
        return _mm_setr_epi32((int)sc_lo, (int)sc_hi, (int)m_lo, (int)m_hi);
}

/* sum over the 8 sub-blocks of min * (the activations' sum over it): bsums holds sums of 16. */
SIMD_INLINE int32_t SIMD(mins32)(__m128i mins16, const int16_t *bsums)
{
        __m128i b0 = _mm_loadu_si128((const __m128i *)bsums), b1 = _mm_loadu_si128((const __m128i *)(bsums + 8));
        return SIMD(hsum_i32x4)(_mm_madd_epi16(mins16, _mm_hadd_epi16(b0, b1)));
}

/* The same over 16 sub-blocks of 16. */
SIMD_INLINE int32_t SIMD(mins16)(__m256i mins16, const int16_t *bsums)
{
        return SIMD(hsum_i32x8)(_mm256_madd_epi16(mins16, SIMD(load32)(bsums)));
}

SIMD_INLINE float SIMD(row_q4_k)(const struct block_q4_K *blk, int64_t nb, const int8_t *q, const float *d,
                                 const int16_t *bsums)
{
        __m256 acc = _mm256_setzero_ps();
        float accm = 0;
        for (int64_t b = 0; b < nb; b++) {
                const struct block_q4_K *x = &blk[b];
                const int8_t *a = q + QK_K * b;
                const __m128i sm = SIMD(k4_scales_mins)(x->scales);
                const __m256i sc = SIMD(scales16_u)(sm);
                const int32_t M = SIMD(mins32)(_mm_cvtepu8_epi16(_mm_srli_si128(sm, 8)), bsums + 16 * b);
                __m256i L = _mm256_setzero_si256();
#define Q4K_CHUNK(c)                                                                                          \
                do {                                                                                          \
                        __m256i v = SIMD(load32)(x->qs + 32 * (c));                                           \
                        __m256i lo = _mm256_and_si256(v, _mm256_set1_epi8(15));                               \
                        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(15));         \
                        L = MAC_SCALED(L, lo, SIMD(load32)(a + 64 * (c)), BCAST16(sc, 2 * (c)));              \
                        L = MAC_SCALED(L, hi, SIMD(load32)(a + 64 * (c) + 32), BCAST16(sc, 2 * (c) + 1));     \
                } while (0)
                Q4K_CHUNK(0);
                Q4K_CHUNK(1);
                Q4K_CHUNK(2);
                Q4K_CHUNK(3);
#undef Q4K_CHUNK
                acc = _mm256_fmadd_ps(_mm256_set1_ps(SIMD(f16)(x->d) * d[b]), _mm256_cvtepi32_ps(L), acc);
                accm = fmaf(SIMD(f16)(x->dmin) * d[b], (float)M, accm);
        }
        return SIMD(hsum8)(acc) - accm;
}

SIMD_INLINE float SIMD(row_q5_k)(const struct block_q5_K *blk, int64_t nb, const int8_t *q, const float *d,
                                 const int16_t *bsums)
{
        __m256 acc = _mm256_setzero_ps();
        float accm = 0;
        for (int64_t b = 0; b < nb; b++) {
                const struct block_q5_K *x = &blk[b];
                const int8_t *a = q + QK_K * b;
                const __m128i sm = SIMD(k4_scales_mins)(x->scales);
                const __m256i sc = SIMD(scales16_u)(sm);
                const int32_t M = SIMD(mins32)(_mm_cvtepu8_epi16(_mm_srli_si128(sm, 8)), bsums + 16 * b);
                const __m256i qh = SIMD(load32)(x->qh), one = _mm256_set1_epi8(1);
                __m256i L = _mm256_setzero_si256();
#define Q5K_CHUNK(c)                                                                                          \
                do {                                                                                          \
                        __m256i v = SIMD(load32)(x->qs + 32 * (c));                                           \
                        __m256i hl = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * (c)), one);                   \
                        __m256i hh = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * (c) + 1), one);               \
                        __m256i lo = _mm256_or_si256(_mm256_and_si256(v, _mm256_set1_epi8(15)),               \
                                                     _mm256_slli_epi16(hl, 4));                               \
                        __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4),                \
                                                                      _mm256_set1_epi8(15)),                  \
                                                     _mm256_slli_epi16(hh, 4));                               \
                        L = MAC_SCALED(L, lo, SIMD(load32)(a + 64 * (c)), BCAST16(sc, 2 * (c)));              \
                        L = MAC_SCALED(L, hi, SIMD(load32)(a + 64 * (c) + 32), BCAST16(sc, 2 * (c) + 1));     \
                } while (0)
                Q5K_CHUNK(0);
                Q5K_CHUNK(1);
                Q5K_CHUNK(2);
                Q5K_CHUNK(3);
#undef Q5K_CHUNK
                acc = _mm256_fmadd_ps(_mm256_set1_ps(SIMD(f16)(x->d) * d[b]), _mm256_cvtepi32_ps(L), acc);
                accm = fmaf(SIMD(f16)(x->dmin) * d[b], (float)M, accm);
        }
        return SIMD(hsum8)(acc) - accm;
}

SIMD_INLINE float SIMD(row_q6_k)(const struct block_q6_K *blk, int64_t nb, const int8_t *q, const float *d,
                                 const int16_t *bsums)
{
        __m256 acc = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
                const struct block_q6_K *x = &blk[b];
                const int8_t *a = q + QK_K * b;
                const __m128i s8 = _mm_loadu_si128((const __m128i *)x->scales);
                const __m256i slo = SIMD(scales16_s)(s8), shi = SIMD(scales16_s)(_mm_srli_si128(s8, 8));
                const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30), k32 = _mm256_set1_epi8(32);
                __m256i L = _mm256_setzero_si256();
#define Q6K_HALF(h)                                                                                           \
                do {                                                                                          \
                        __m256i l0 = SIMD(load32)(x->ql + 64 * (h)), l1 = SIMD(load32)(x->ql + 64 * (h) + 32); \
                        __m256i qh = SIMD(load32)(x->qh + 32 * (h));                                          \
                        __m256i q0 = _mm256_or_si256(_mm256_and_si256(l0, m4),                                \
                                                     _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));        \
                        __m256i q1 = _mm256_or_si256(_mm256_and_si256(l1, m4),                                \
                                                     _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));        \
                        __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),          \
                                                     _mm256_and_si256(qh, m30));                              \
                        __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),          \
                                                     _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));        \
                        L = SIMD(mac_signed_scaled)(L, _mm256_sub_epi8(q0, k32), SIMD(load32)(a + 128 * (h)), \
                                                    PAIR16(slo, shi, 4 * (h)));                               \
                        L = SIMD(mac_signed_scaled)(L, _mm256_sub_epi8(q1, k32),                              \
                                                    SIMD(load32)(a + 128 * (h) + 32), PAIR16(slo, shi, 4 * (h) + 1)); \
                        L = SIMD(mac_signed_scaled)(L, _mm256_sub_epi8(q2, k32),                              \
                                                    SIMD(load32)(a + 128 * (h) + 64), PAIR16(slo, shi, 4 * (h) + 2)); \
                        L = SIMD(mac_signed_scaled)(L, _mm256_sub_epi8(q3, k32),                              \
                                                    SIMD(load32)(a + 128 * (h) + 96), PAIR16(slo, shi, 4 * (h) + 3)); \
                } while (0)
                Q6K_HALF(0);
                Q6K_HALF(1);
#undef Q6K_HALF
                acc = _mm256_fmadd_ps(_mm256_set1_ps(SIMD(f16)(x->d) * d[b]), _mm256_cvtepi32_ps(L), acc);
        }
        return SIMD(hsum8)(acc);
}

SIMD_INLINE float SIMD(row_q2_k)(const struct block_q2_K *blk, int64_t nb, const int8_t *q, const float *d,
                                 const int16_t *bsums)
{
        __m256 acc = _mm256_setzero_ps();
        float accm = 0;
        for (int64_t b = 0; b < nb; b++) {
                const struct block_q2_K *x = &blk[b];
                const int8_t *a = q + QK_K * b;
                const __m128i s8 = _mm_loadu_si128((const __m128i *)x->scales), m4 = _mm_set1_epi8(15);
                const __m128i sc8 = _mm_and_si128(s8, m4), mn8 = _mm_and_si128(_mm_srli_epi16(s8, 4), m4);
                const __m256i slo = SIMD(scales16_u)(sc8), shi = SIMD(scales16_u)(_mm_srli_si128(sc8, 8));
                const int32_t M = SIMD(mins16)(_mm256_cvtepu8_epi16(mn8), bsums + 16 * b);
                const __m256i three = _mm256_set1_epi8(3);
                __m256i L = _mm256_setzero_si256();
#define Q2K_CHUNK(h, s)                                                                                       \
                L = MAC_SCALED(L, _mm256_and_si256(_mm256_srli_epi16(v, 2 * (s)), three),                     \
                               SIMD(load32)(a + 128 * (h) + 32 * (s)), PAIR16(slo, shi, 4 * (h) + (s)))
                {
                        __m256i v = SIMD(load32)(x->qs);
                        Q2K_CHUNK(0, 0);
                        Q2K_CHUNK(0, 1);
                        Q2K_CHUNK(0, 2);
                        Q2K_CHUNK(0, 3);
                        v = SIMD(load32)(x->qs + 32);
                        Q2K_CHUNK(1, 0);
                        Q2K_CHUNK(1, 1);
                        Q2K_CHUNK(1, 2);
                        Q2K_CHUNK(1, 3);
                }
#undef Q2K_CHUNK
                acc = _mm256_fmadd_ps(_mm256_set1_ps(SIMD(f16)(x->d) * d[b]), _mm256_cvtepi32_ps(L), acc);
                accm = fmaf(SIMD(f16)(x->dmin) * d[b], (float)M, accm);
        }
        return SIMD(hsum8)(acc) - accm;
}

/* Q3_K: the 16 6-bit scales, minus 32, as int8. */
SIMD_INLINE __m128i SIMD(q3k_scales)(const uint8_t *scales)
{
        uint32_t w0, w1, w2;
        memcpy(&w0, scales, 4);
        memcpy(&w1, scales + 4, 4);
        memcpy(&w2, scales + 8, 4);
        const uint32_t lo4 = 0x0f0f0f0f, lo2 = 0x03030303;
        uint32_t s0 = (w0 & lo4) | (w2 & lo2) << 4;
        uint32_t s1 = (w1 & lo4) | ((w2 >> 2) & lo2) << 4;
        uint32_t s2 = ((w0 >> 4) & lo4) | ((w2 >> 4) & lo2) << 4;
        uint32_t s3 = ((w1 >> 4) & lo4) | ((w2 >> 6) & lo2) << 4;
        return _mm_sub_epi8(_mm_setr_epi32((int)s0, (int)s1, (int)s2, (int)s3), _mm_set1_epi8(32));
}

SIMD_INLINE float SIMD(row_q3_k)(const struct block_q3_K *blk, int64_t nb, const int8_t *q, const float *d,
                                 const int16_t *bsums)
{
        __m256 acc = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
                const struct block_q3_K *x = &blk[b];
                const int8_t *a = q + QK_K * b;
                const __m128i s8 = SIMD(q3k_scales)(x->scales);
                const __m256i slo = SIMD(scales16_s)(s8), shi = SIMD(scales16_s)(_mm_srli_si128(s8, 8));
                const __m256i hm = SIMD(load32)(x->hmask), three = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
                __m256i L = _mm256_setzero_si256();
#define Q3K_CHUNK(h, s)                                                                                       \
                do {                                                                                          \
                        const __m256i bit = _mm256_set1_epi8((char)(1 << (4 * (h) + (s))));                   \
                        __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit);                      \
                        __m256i w = _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(v, 2 * (s)), three),   \
                                                    _mm256_andnot_si256(set, four));                          \
                        L = SIMD(mac_signed_scaled)(L, w, SIMD(load32)(a + 128 * (h) + 32 * (s)),             \
                                                    PAIR16(slo, shi, 4 * (h) + (s)));                         \
                } while (0)
                {
                        __m256i v = SIMD(load32)(x->qs);
                        Q3K_CHUNK(0, 0);
                        Q3K_CHUNK(0, 1);
                        Q3K_CHUNK(0, 2);
                        Q3K_CHUNK(0, 3);
                        v = SIMD(load32)(x->qs + 32);
                        Q3K_CHUNK(1, 0);
                        Q3K_CHUNK(1, 1);
                        Q3K_CHUNK(1, 2);
                        Q3K_CHUNK(1, 3);
                }
#undef Q3K_CHUNK
                acc = _mm256_fmadd_ps(_mm256_set1_ps(SIMD(f16)(x->d) * d[b]), _mm256_cvtepi32_ps(L), acc);
        }
        return SIMD(hsum8)(acc);
}

/* --- rows x tokens --- */

/* One weight row against token t of a. */
#define DEFINE_DOT(name, btype, be)                                                                           \
        SIMD_INLINE float SIMD(dot_##name)(const void *row, int64_t K, const struct act_blocks *a, int64_t t) \
        {                                                                                                     \
                const int64_t ab = act_scheme_block(a->scheme);                                               \
                const int8_t *q = (a->scheme == ACT_SCHEME_TOKEN_I8 ? a->tok.q8 : a->q) + t * K;              \
                const float *s = a->s ? a->s + t * (K / ab) : NULL;                                           \
                const int16_t *bs = a->bsums ? a->bsums + t * (K / 16) : NULL;                                \
                (void)s;                                                                                      \
                (void)bs;                                                                                     \
                return SIMD(row_##name)((const btype *)row, K / (be), q, a->d + t * (K / ab),                 \
                                        be == QK_K ? (const void *)bs : (const void *)s);                     \
        }                                                                                                     \
                                                                                                              \
        SIMD_FN static void SIMD(rows_##name)(const struct npu_weight *w, const struct act_blocks *a,         \
                                              int64_t n_tok, float *y, size_t ys, int64_t r0, int64_t r1)     \
        {                                                                                                     \
                for (int64_t r = r0; r < r1; r++) {                                                           \
                        const uint8_t *row = (const uint8_t *)w->data + r * w->row_bytes;                     \
                        for (int64_t t = 0; t < n_tok; t++)                                                   \
                                y[t * ys + r] = SIMD(dot_##name)(row, w->cols, a, t);                         \
                }                                                                                             \
        }

DEFINE_DOT(q4_0, struct block_q4_0, QK4_0)
DEFINE_DOT(q4_1, struct block_q4_1, QK4_1)
DEFINE_DOT(q5_0, struct block_q5_0, QK5_0)
DEFINE_DOT(q5_1, struct block_q5_1, QK5_1)
DEFINE_DOT(q8_0, struct block_q8_0, QK8_0)
DEFINE_DOT(q2_k, struct block_q2_K, QK_K)
DEFINE_DOT(q3_k, struct block_q3_K, QK_K)
DEFINE_DOT(q4_k, struct block_q4_K, QK_K)
DEFINE_DOT(q5_k, struct block_q5_K, QK_K)
DEFINE_DOT(q6_k, struct block_q6_K, QK_K)

static const quant_rows_fn SIMD(quant_rows)[_GGML_TYPE_MAX] = {
        [GGML_TYPE_Q4_0] = SIMD(rows_q4_0), [GGML_TYPE_Q4_1] = SIMD(rows_q4_1), [GGML_TYPE_Q5_0] = SIMD(rows_q5_0),
        [GGML_TYPE_Q5_1] = SIMD(rows_q5_1), [GGML_TYPE_Q8_0] = SIMD(rows_q8_0), [GGML_TYPE_Q2_K] = SIMD(rows_q2_k),
        [GGML_TYPE_Q3_K] = SIMD(rows_q3_k), [GGML_TYPE_Q4_K] = SIMD(rows_q4_k), [GGML_TYPE_Q5_K] = SIMD(rows_q5_k),
        [GGML_TYPE_Q6_K] = SIMD(rows_q6_k),
};

#undef DEFINE_ROW_LEGACY
#undef DEFINE_DOT
#undef BCAST16
#undef PAIR16
