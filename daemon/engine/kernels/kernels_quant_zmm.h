/* SPDX-License-Identifier: MIT */
/*
 * The one-token kernels of the K-quants and the 32-element types on 512-bit vectors, included by
 * kernels_quant_x86.h into its AVX-512 VNNI copy only (SIMD_ZMM). They
 * compute kernels_quant.h's definition like every other copy: each block's
 * isum exactly (in another order), then the same float steps in the same
 * order, on eight rows at once.
 *
 * What makes them faster than the 256-bit copies, per block of eight rows:
 *   - the eight rows' block heads (f16 scales, packed 6-bit scales) are
 *     loaded as two vectors and unpacked for all rows together, instead of
 *     scalar code and sixteen inserts per row;
 *   - the activations of a block are arranged once, in registers, in the
 *     order the weights' 64-byte vectors hold their sub-blocks, and shared
 *     by the eight rows;
 *   - a row's block is 2 (Q4_K) or 4 (Q6_K) vectors of products, summed
 *     into one vector of int32 lanes, the eight rows' lanes reduced by one
 *     transpose;
 *   - the rows are prefetched ahead (on Sapphire Rapids, 2 threads,
 *     weights in huge pages: Q4_K 8.6 GB/s with the 256-bit copy
 *     unprefetched, 21-30 GB/s with this, by shape).
 */

/* 64 bytes: the 32 at lo, then the 32 at hi */
SIMD_INLINE __m512i SIMD(load2x32)(const void *lo, const void *hi)
{
        return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)lo)),
                                  _mm256_loadu_si256((const __m256i *)hi), 1);
}

/* 16 bytes at off of rows[0..3], one per 128-bit lane */
SIMD_INLINE __m512i SIMD(load4x16)(const uint8_t *const *rows, size_t off)
{
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(rows[0] + off)));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rows[1] + off)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rows[2] + off)), 2);
        return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rows[3] + off)), 3);
}

/*
 * The first two steps of folding eight rows' int32 lanes (v[i]: row i):
 * u[i]'s 128-bit lanes each hold rows 4i .. 4i + 3, summed within that
 * 128-bit lane of v.
 */
SIMD_INLINE void SIMD(hsum8_rows4)(const __m512i *v, __m512i *u)
{
        __m512i t[4];
        for (int i = 0; i < 4; i++)
                t[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                                        _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
        /* t[i], each 128-bit lane: rows 2i, 2i + 1, 2i, 2i + 1 */
        for (int i = 0; i < 2; i++)
                u[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(t[2 * i], t[2 * i + 1]),
                                        _mm512_unpackhi_epi64(t[2 * i], t[2 * i + 1]));
}

/*
 * Eight vectors of int32 lanes (v[i]: row i) into one: lane i the sum of
 * v[i]'s sixteen lanes.
 */
SIMD_INLINE __m256i SIMD(hsum8x16)(const __m512i *v)
{
        __m512i u[2];
        SIMD(hsum8_rows4)(v, u);
        /* u[i], each 128-bit lane: rows 4i .. 4i + 3 */
        __m512i w = _mm512_add_epi32(_mm512_shuffle_i32x4(u[0], u[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                     _mm512_shuffle_i32x4(u[0], u[1], _MM_SHUFFLE(3, 2, 3, 2)));
        /* w's 128-bit lanes: rows 0-3, rows 0-3, rows 4-7, rows 4-7 */
        w = _mm512_shuffle_i32x4(w, w, _MM_SHUFFLE(3, 1, 2, 0));
        return _mm256_add_epi32(_mm512_castsi512_si256(w), _mm512_extracti64x4_epi64(w, 1));
}

/* The f16 pairs of dword 0 of each 128-bit lane of a and b (rows 0-3, 4-7): low halves and high halves as floats. */
SIMD_INLINE void SIMD(f16_pairs8)(__m512i a, __m512i b, __m256 *lo, __m256 *hi)
{
        const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0);
        const __m256i dd = _mm512_castsi512_si256(_mm512_permutex2var_epi32(a, idx, b));
        *lo = _mm256_cvtph_ps(_mm256_cvtepi32_epi16(dd));
        *hi = _mm256_cvtph_ps(_mm256_cvtepi32_epi16(_mm256_srli_epi32(dd, 16)));
}

/*
 * Q4_K's head (d, dmin, scales[12]) in each 128-bit lane: dwords dd, w0,
 * w1, w2; into the 8 6-bit scales (bytes 0-7) and the 8 mins (bytes 8-15),
 * as k4_scales_mins unpacks them.
 */
SIMD_INLINE __m512i SIMD(k4_scales_mins4)(__m512i v)
{
        const __m512i p = _mm512_shuffle_epi32(v, (_MM_PERM_ENUM)_MM_SHUFFLE(3, 2, 3, 1)); /* w0 w2 w1 w2 */
        const __m512i q = _mm512_shuffle_epi32(v, (_MM_PERM_ENUM)_MM_SHUFFLE(2, 2, 1, 1)); /* w0 w0 w1 w1 */
        const __m512i lo = _mm512_and_si512(p, _mm512_set1_epi32(0x3f3f3f3f));
        const __m512i hi = _mm512_or_si512(
                _mm512_and_si512(_mm512_srlv_epi32(p, _mm512_setr_epi32(0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4)),
                                 _mm512_set1_epi32(0x0f0f0f0f)),
                _mm512_and_si512(_mm512_srli_epi32(q, 2), _mm512_set1_epi32(0x30303030)));
        return _mm512_mask_blend_epi32(0xaaaa, lo, hi);
}

/*
 * Step `step` of `steps` over eight rows. Rows row_bytes apart (consecutive
 * in memory): prefetch the step's share of the next group's bytes, in
 * order, into L1 (one stream running a group ahead). Rows further apart
 * (STREAM_ROWS: each row the next of its stream): each stream's bytes
 * STREAM_AHEAD on, as the F16 head's rows (npu-kbench, paired, alternated
 * with the consecutive rows on Zen 5: Q4_K 11008x4096 89-95 % of the read
 * bandwidth in 5 of 6 rounds against 67-80 %; Q6_K 4096x11008 88-99 %
 * against 75-83 %; 512 and 2048 bytes ahead no better; Q6_K and Q8_0 have
 * taken consecutive rows on AMD's cores since, STREAM_ROWS). On a Sapphire
 * Rapids class Xeon, Q6_K takes 512 (Q6K_STREAM_AHEAD), Q8_0 1024: four
 * rounds alternated, Q6_K 11008x4096 86 % against 82-85 %, 32000x2048
 * 80-83 against 79-80 % (256: 85-86 and 81 %; 2048: 79-81 %); Q8_0 with
 * 512 lost (11008x4096 93 % against 97-99 %).
 */
#define STREAM_AHEAD 1024
#define Q6K_STREAM_AHEAD 512 /* Q6_K's rows take the streams on Intel's cores only */
/* rows further apart than consecutive ones (a short last group repeats its last row: nearer) */
SIMD_INLINE bool SIMD(rows_in_streams)(const uint8_t *const *rows, int64_t row_bytes)
{
        return rows[RB - 1] > rows[0] + (RB - 1) * row_bytes;
}

/* the bytes a step of `steps` fetches: of each stream's row, or of the next group (64-byte lines) */
SIMD_INLINE int64_t SIMD(prefetch_share)(const uint8_t *const *rows, int64_t row_bytes, int64_t steps)
{
        if (SIMD(rows_in_streams)(rows, row_bytes))
                return DIV_ROUND_UP(row_bytes, steps);
        return DIV_ROUND_UP(RB * row_bytes, 64 * steps) * 64;
}

/* step `step` of the prefetch, share as prefetch_share gives it (once per group: no division a step) */
SIMD_INLINE void SIMD(prefetch_step_ahead)(const uint8_t *const *rows, int64_t row_bytes, int64_t share,
                                           int64_t step, int64_t ahead)
{
        if (SIMD(rows_in_streams)(rows, row_bytes)) {
                /* rows a stream apart (STREAM_ROWS): each stream's lines `ahead` bytes on, each line once */
                for (int i = 0; i < RB; i++) {
                        const uintptr_t a = (uintptr_t)rows[i] + step * share + ahead, z = a + share;
                        for (uintptr_t l = (a + 63) & ~(uintptr_t)63; l < z; l += 64)
                                _mm_prefetch((const char *)l, _MM_HINT_T0);
                }
                return;
        }
        const char *next = (const char *)rows[0] + RB * row_bytes + step * share;
        for (int64_t c = 0; c < share; c += 64)
                _mm_prefetch(next + c, _MM_HINT_T0);
}

SIMD_INLINE void SIMD(prefetch_step)(const uint8_t *const *rows, int64_t row_bytes, int64_t share, int64_t step)
{
        SIMD(prefetch_step_ahead)(rows, row_bytes, share, step, STREAM_AHEAD);
}

SIMD_INLINE void SIMD(prefetch_next_group)(const uint8_t *const *rows, int64_t row_bytes, int64_t steps, int64_t step)
{
        SIMD(prefetch_step)(rows, row_bytes, SIMD(prefetch_share)(rows, row_bytes, steps), step);
}

/* the pshufb control of an int32 lane: both its int16 halves byte j, zero-extended */
#define I16_PAIR_OF_BYTE(j) ((int)(0x80008000u | 0x10001u * (j)))
/* pshufb control: in 128-bit lane L, int16 lanes 0-3 byte jL and 4-7 byte kL (zero-extended) */
#define SCALE_LANES4(j0, k0, j1, k1, j2, k2, j3, k3)                                                          \
        _mm512_setr_epi32(I16_PAIR_OF_BYTE(j0), I16_PAIR_OF_BYTE(j0), I16_PAIR_OF_BYTE(k0), I16_PAIR_OF_BYTE(k0), \
                          I16_PAIR_OF_BYTE(j1), I16_PAIR_OF_BYTE(j1), I16_PAIR_OF_BYTE(k1), I16_PAIR_OF_BYTE(k1), \
                          I16_PAIR_OF_BYTE(j2), I16_PAIR_OF_BYTE(j2), I16_PAIR_OF_BYTE(k2), I16_PAIR_OF_BYTE(k2), \
                          I16_PAIR_OF_BYTE(j3), I16_PAIR_OF_BYTE(j3), I16_PAIR_OF_BYTE(k3), I16_PAIR_OF_BYTE(k3))

/* the same with lanes 0 and 1 alike (bytes a0, b0) and lanes 2 and 3 (a1, b1) */
#define SCALE_QUADS(a0, b0, a1, b1) SCALE_LANES4(a0, b0, a0, b0, a1, b1, a1, b1)

/*
 * Q4_K and Q5_K (five), eight rows, one token. Q5_K is Q4_K with a fifth
 * bit per element, qh[l] bit j for element l of sub-block j: qh goes into
 * both 256-bit halves of a vector and each u[c] takes its two sub-blocks'
 * bits by one rotate (a bit into bit 4 of its own byte) and an or. Zen 5,
 * against the 256-bit copy: 1 thread from L2 26 -> 41 GB/s; 2 threads,
 * paired, 11008x4096 49-61 -> 86-89 % of the read bandwidth, 5632x2048
 * 58-64 -> 83-88 % (rows in streams no better: 81-86 %, 78-87 %).
 * A block's 128 bytes of nibbles are two
 * 64-byte vectors; the low nibbles of the first hold sub-blocks 0 and 2,
 * its high nibbles 1 and 3, the second vector's 4, 6 and 5, 7. The
 * activations are arranged the same way (a[0], a[1], a[2], a[3]). Each
 * vector's products are summed in fours (vpdpbusd), two vectors' sums
 * packed to int16 (|sum| <= 4 * 15 * 128: exact), and each int16 pair
 * multiplied by its sub-block's scale (vpdpwssd): per row ten vector
 * operations where vpmaddubsw, a shuffle of the scales and vpdpwssd per
 * vector were twelve (TinyLlama Q4_K_M decode +2 %, 7 of 8 paired runs
 * faster, on a shared machine).
 *
 * Prefetching: each block fetches a share of the next group's bytes in
 * order into L1 (the eight rows are consecutive in memory: one stream
 * running a group ahead). On Zen 5 (EPYC, 2 threads, kernel alone, 1 GB
 * of weights) this read 62-65 GB/s where the L2 share (rows under 16
 * blocks) or each row QPD blocks ahead (longer rows) read 53-59; each row
 * 2-4 blocks ahead 52-64, none 38-42.
 */
SIMD_INLINE void SIMD(group_k4_k5)(const uint8_t *const *rows, int64_t K, const int8_t *q, const float *d,
                                   const int16_t *bs, float *out, bool five)
{
        const __m512i m4 = _mm512_set1_epi8(15), m16 = _mm512_set1_epi8(16);
        /* Q5_K: the qh bit of sub-blocks (u[c]'s halves) 2c - c % 2 and + 2 ... rotated to bit 4 */
        const __m512i qh_rot[4] = { _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2), _mm512_setr_epi64(3, 3, 3, 3, 1, 1, 1, 1),
                                    _mm512_setr_epi64(0, 0, 0, 0, 62, 62, 62, 62),
                                    _mm512_setr_epi64(63, 63, 63, 63, 61, 61, 61, 61) };
        const size_t qs_at = five ? offsetof(struct block_q5_K, qs) : offsetof(struct block_q4_K, qs);
        const size_t block_bytes = five ? sizeof(struct block_q5_K) : sizeof(struct block_q4_K);
        const __m512i sc_ctl[2] = { SCALE_QUADS(0, 1, 2, 3), SCALE_QUADS(4, 5, 6, 7) };
        const __m512i mins_ctl = _mm512_set4_epi32((int)0x800f800e, (int)0x800d800c, (int)0x800b800a,
                                                   (int)0x80098008);
        const int64_t nb = K / QK_K, row_bytes = nb * (int64_t)block_bytes;
        __m256 acc = _mm256_setzero_ps();

        for (int64_t b = 0; b < nb; b++) {
                const size_t off = (size_t)b * block_bytes;
                const int8_t *qb = q + QK_K * b;
                SIMD(prefetch_next_group)(rows, row_bytes, nb, b);
                const __m512i a[4] = { SIMD(load2x32)(qb, qb + 64), SIMD(load2x32)(qb + 32, qb + 96),
                                       SIMD(load2x32)(qb + 128, qb + 192), SIMD(load2x32)(qb + 160, qb + 224) };
                /* the eight rows' heads: scales and mins of rows 0-3 and 4-7 */
                const __m512i h0 = SIMD(load4x16)(rows, off), h1 = SIMD(load4x16)(rows + 4, off);
                const __m512i sm[2] = { SIMD(k4_scales_mins4)(h0), SIMD(k4_scales_mins4)(h1) };
                __m512i L[RB];
                for (int i = 0; i < RB; i++) {
                        const uint8_t *x = rows[i] + off, *qs = x + qs_at;
                        /* row i's 8 scale bytes in every 64-bit lane */
                        const __m512i sb = _mm512_permutexvar_epi64(_mm512_set1_epi64(2 * (i % 4)), sm[i / 4]);
                        const __m512i v0 = _mm512_loadu_si512(qs), v1 = _mm512_loadu_si512(qs + 64);
                        __m512i u[4] = { _mm512_and_si512(v0, m4), _mm512_and_si512(_mm512_srli_epi16(v0, 4), m4),
                                         _mm512_and_si512(v1, m4), _mm512_and_si512(_mm512_srli_epi16(v1, 4), m4) };
                        if (five) {
                                /* qh[l] bit j is the fifth bit of sub-block j's element l */
                                const __m512i hb = _mm512_broadcast_i64x4(
                                        SIMD(load32)(x + offsetof(struct block_q5_K, qh)));
                                for (int c = 0; c < 4; c++)
                                        u[c] = _mm512_or_si512(u[c],
                                                               _mm512_and_si512(_mm512_rolv_epi64(hb, qh_rot[c]), m16));
                        }
                        __m512i r[4], l = _mm512_setzero_si512();
                        for (int c = 0; c < 4; c++)
                                r[c] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[c], a[c]);
                        /* |r| <= 4 * 15 * 128: int16 pairs of one sub-block each, times its scale */
                        for (int c = 0; c < 2; c++)
                                l = _mm512_dpwssd_epi32(l, _mm512_packs_epi32(r[2 * c], r[2 * c + 1]),
                                                        _mm512_shuffle_epi8(sb, sc_ctl[c]));
                        L[i] = l;
                }
                const __m256i isum = SIMD(hsum8x16)(L);
                /* M: each row's 8 mins (int16) times the activations' sums of 32 */
                const __m128i bs32 = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)(bs + 16 * b)),
                                                    _mm_loadu_si128((const __m128i *)(bs + 16 * b + 8)));
                const __m512i bsv = _mm512_broadcast_i32x4(bs32);
                const __m512i ma = _mm512_madd_epi16(_mm512_shuffle_epi8(sm[0], mins_ctl), bsv);
                const __m512i mb = _mm512_madd_epi16(_mm512_shuffle_epi8(sm[1], mins_ctl), bsv);
                /* each 128-bit lane i: four partial sums of row i (ma) and of row 4 + i (mb) */
                __m512i mm = _mm512_add_epi32(_mm512_unpacklo_epi64(ma, mb), _mm512_unpackhi_epi64(ma, mb));
                mm = _mm512_add_epi32(mm, _mm512_shuffle_epi32(mm, (_MM_PERM_ENUM)_MM_SHUFFLE(2, 3, 0, 1)));
                const __m256i M = _mm512_castsi512_si256(_mm512_permutexvar_epi32(
                        _mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 0, 0, 0, 0, 0, 0, 0, 0), mm));
                __m256 dw, dm;
                SIMD(f16_pairs8)(h0, h1, &dw, &dm);
                const __m256 da = _mm256_set1_ps(d[b]);
                acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, da), _mm256_cvtepi32_ps(isum), acc);
                const __m256 neg = _mm256_xor_ps(_mm256_mul_ps(dm, da), _mm256_set1_ps(-0.0f));
                acc = _mm256_fmadd_ps(neg, _mm256_cvtepi32_ps(M), acc);
        }
        _mm256_storeu_ps(out, acc);
}

SIMD_INLINE void SIMD(group_q4_k)(const uint8_t *const *rows, int64_t K, const int8_t *q, const float *d,
                                  const float *s, const int16_t *bs, const int32_t *asum, float *out)
{
        SIMD(group_k4_k5)(rows, K, q, d, bs, out, false);
}

SIMD_INLINE void SIMD(group_q5_k)(const uint8_t *const *rows, int64_t K, const int8_t *q, const float *d,
                                  const float *s, const int16_t *bs, const int32_t *asum, float *out)
{
        SIMD(group_k4_k5)(rows, K, q, d, bs, out, true);
}

/* A block's activations as Q2_K's and Q3_K's u[c] hold their elements: 32c .. 32c + 31, then 128 + 32c .. */
SIMD_INLINE void SIMD(acts_2bit)(const int8_t *qb, __m512i *a)
{
        for (int c = 0; c < 4; c++)
                a[c] = SIMD(load2x32)(qb + 32 * c, qb + 128 + 32 * c);
}

/*
 * Q2_K, eight rows, one token. The block's 64 bytes of qs are one vector:
 * its bit pairs 2c, 2c + 1 hold elements 32c .. 32c + 31 (low 256 bits)
 * and 128 + 32c .. (high), so each 128-bit lane of u[c] is one sub-block
 * of 16 (2c, 2c + 1, 8 + 2c, 9 + 2c), met by the activations arranged the
 * same way. Products summed in fours (vpdpbusd), two vectors' sums packed
 * to int16 (|sum| <= 4 * 3 * 128: exact) and multiplied by their
 * sub-blocks' 4-bit scales (vpdpwssd, the scales picked by pshufb from the
 * row's 16 scale bytes in every lane). The mins and the float steps are
 * the 256-bit copy's (block_step8).
 */
SIMD_INLINE void SIMD(group_q2_k)(const uint8_t *const *rows, int64_t K, const int8_t *q, const float *d,
                                  const float *s, const int16_t *bs, const int32_t *asum, float *out)
{
        const __m512i three = _mm512_set1_epi8(3), m4 = _mm512_set1_epi8(15), zero = _mm512_setzero_si512();
        /* packs of (u[0], u[1]): lane L sub-blocks 0, 1, 8, 9 then 2, 3, 10, 11; of (u[2], u[3]): + 4 */
        const __m512i sc_ctl[2] = { SCALE_LANES4(0, 2, 1, 3, 8, 10, 9, 11), SCALE_LANES4(4, 6, 5, 7, 12, 14, 13, 15) };
        const int64_t nb = K / QK_K, row_bytes = nb * (int64_t)sizeof(struct block_q2_K);
        __m256 acc = _mm256_setzero_ps();

        for (int64_t b = 0; b < nb; b++) {
                const size_t off = (size_t)b * sizeof(struct block_q2_K);
                const int8_t *qb = q + QK_K * b;
                SIMD(prefetch_next_group)(rows, row_bytes, nb, b);
                __m512i a[4];
                SIMD(acts_2bit)(qb, a);
                const __m256i bsv = SIMD(load32)(bs + 16 * b);
                __m512i L[RB];
                __m256i M[RB];
                for (int i = 0; i < RB; i++) {
                        const struct block_q2_K *x = (const void *)(rows[i] + off);
                        const __m128i s8 = _mm_loadu_si128((const __m128i *)x->scales);
                        const __m512i sb = _mm512_and_si512(_mm512_broadcast_i32x4(s8), m4);
                        /* the mins (high nibbles) times the activations' sums of 16 */
                        M[i] = _mm256_madd_epi16(
                                _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s8, 4), _mm_set1_epi8(15))), bsv);
                        const __m512i v = _mm512_loadu_si512(x->qs);
                        __m512i r[4];
                        for (int c = 0; c < 4; c++)
                                r[c] = _mm512_dpbusd_epi32(zero,
                                                           _mm512_and_si512(c ? _mm512_srli_epi16(v, 2 * c) : v, three),
                                                           a[c]);
                        const __m512i l = _mm512_dpwssd_epi32(zero, _mm512_packs_epi32(r[0], r[1]),
                                                              _mm512_shuffle_epi8(sb, sc_ctl[0]));
                        L[i] = _mm512_dpwssd_epi32(l, _mm512_packs_epi32(r[2], r[3]), _mm512_shuffle_epi8(sb, sc_ctl[1]));
                }
                acc = SIMD(block_step8)(acc, rows, off, SIMD(hsum8x16)(L), M, b, d, s, asum, 0, 2,
                                        offsetof(struct block_q2_K, d), offsetof(struct block_q2_K, dmin));
        }
        _mm256_storeu_ps(out, acc);
}

/* vpermw control: in 128-bit lane L, int16 lanes 0-3 word jL and 4-7 word kL */
#define WORD_LANES4(j0, k0, j1, k1, j2, k2, j3, k3)                                                           \
        _mm512_setr_epi32(0x10001 * (j0), 0x10001 * (j0), 0x10001 * (k0), 0x10001 * (k0), 0x10001 * (j1),     \
                          0x10001 * (j1), 0x10001 * (k1), 0x10001 * (k1), 0x10001 * (j2), 0x10001 * (j2),     \
                          0x10001 * (k2), 0x10001 * (k2), 0x10001 * (j3), 0x10001 * (j3), 0x10001 * (k3),     \
                          0x10001 * (k3))

/*
 * Q3_K's 16 6-bit scales, minus 32, as int8, of four rows at once
 * (q3k_scales on each 128-bit lane). v's lane i: row i's 16 bytes ending
 * at the block's end (qs[62..63], scales[12], d), so nothing past a block
 * is read.
 */
SIMD_INLINE __m512i SIMD(q3k_scales4)(__m512i v)
{
        const __m512i lo4 = _mm512_set1_epi32(0x0f0f0f0f), lo2 = _mm512_set1_epi32(0x03030303);
        /* scales[0..11] into bytes 0-11: dwords w0, w1, w2 */
        v = _mm512_shuffle_epi8(v, _mm512_broadcast_i32x4(_mm_setr_epi8(2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, -1, -1,
                                                                         -1, -1)));
        /* s0..s3: w0, w1, w0 >> 4, w1 >> 4 (low nibbles), with w2's pairs 0, 1, 2, 3 on top */
        const __m512i lo = _mm512_and_si512(
                _mm512_srlv_epi32(_mm512_shuffle_epi32(v, (_MM_PERM_ENUM)_MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_set4_epi32(4, 4, 0, 0)),
                lo4);
        const __m512i hi = _mm512_and_si512(
                _mm512_srlv_epi32(_mm512_shuffle_epi32(v, (_MM_PERM_ENUM)_MM_SHUFFLE(2, 2, 2, 2)),
                                  _mm512_set4_epi32(6, 4, 2, 0)),
                lo2);
        return _mm512_sub_epi8(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)), _mm512_set1_epi8(32));
}

/*
 * Q3_K, eight rows, one token: Q2_K's walk of the qs (each 128-bit lane of
 * u[c] one sub-block of 16) with the high bit of each element from hmask
 * (bit c for the low 256 bits, 4 + c for the high ones) tested per byte
 * (vptestmb) and added as 4 under that mask, where a rotate, an and and
 * an or were three operations (Zen 5, 1 thread, from L2, best of 4
 * alternated: 27.9 -> 31.0 GB/s). So q = w + 4 (0..7); |sum of four| <=
 * 4 * 7 * 128, so two vectors' sums pack to int16 exactly and meet the
 * signed 6-bit scales (vpdpwssd, picked by vpermw). The 4 comes back out
 * as in the 256-bit copy: the row's lanes start at -(4 * scale) times the
 * activations' sums of 16. The float steps are block_step8's.
 */
SIMD_INLINE void SIMD(group_q3_k)(const uint8_t *const *rows, int64_t K, const int8_t *q, const float *d,
                                  const float *s, const int16_t *bs, const int32_t *asum, float *out)
{
        const __m512i three = _mm512_set1_epi8(3), four = _mm512_set1_epi8(4), zero = _mm512_setzero_si512();
        const __m512i h_bit[4] = { _mm512_mask_set1_epi8(_mm512_set1_epi8(1), 0xffffffff00000000ull, 16),
                                   _mm512_mask_set1_epi8(_mm512_set1_epi8(2), 0xffffffff00000000ull, 32),
                                   _mm512_mask_set1_epi8(_mm512_set1_epi8(4), 0xffffffff00000000ull, 64),
                                   _mm512_mask_set1_epi8(_mm512_set1_epi8(8), 0xffffffff00000000ull, (char)128) };
        /* [c][half]: the words of the row in half `half` of a two-row vector */
        const __m512i sc_idx[2][2] = {
                { WORD_LANES4(0, 2, 1, 3, 8, 10, 9, 11), WORD_LANES4(16, 18, 17, 19, 24, 26, 25, 27) },
                { WORD_LANES4(4, 6, 5, 7, 12, 14, 13, 15), WORD_LANES4(20, 22, 21, 23, 28, 30, 29, 31) },
        };
        const int64_t nb = K / QK_K, row_bytes = nb * (int64_t)sizeof(struct block_q3_K);
        __m256 acc = _mm256_setzero_ps();

        for (int64_t b = 0; b < nb; b++) {
                const size_t off = (size_t)b * sizeof(struct block_q3_K);
                const int8_t *qb = q + QK_K * b;
                SIMD(prefetch_next_group)(rows, row_bytes, nb, b);
                __m512i a[4];
                SIMD(acts_2bit)(qb, a);
                /* minus the activations' sums of 16 (|sum| <= 16 * 128) */
                const __m256i nb16 = _mm256_sub_epi16(_mm256_setzero_si256(), SIMD(load32)(bs + 16 * b));
                /* [half]: in the words of that half of a two-row vector */
                const __m512i nbs[2] = { _mm512_zextsi256_si512(nb16),
                                         _mm512_inserti64x4(_mm512_setzero_si512(), nb16, 1) };
                /* the eight rows' scales, int16: rows 2j (words 0-15) and 2j + 1 (16-31) */
                const size_t sc_at = off + sizeof(struct block_q3_K) - 16;
                const __m512i S[2] = { SIMD(q3k_scales4)(SIMD(load4x16)(rows, sc_at)),
                                       SIMD(q3k_scales4)(SIMD(load4x16)(rows + 4, sc_at)) };
                __m512i T[4];
                for (int j = 0; j < 4; j++)
                        T[j] = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(S[j / 2], j % 2));
                __m512i L[RB];
                for (int i = 0; i < RB; i++) {
                        const struct block_q3_K *x = (const void *)(rows[i] + off);
                        const __m512i s16 = T[i / 2];
                        const __m512i hm = _mm512_broadcast_i64x4(SIMD(load32)(x->hmask));
                        const __m512i v = _mm512_loadu_si512(x->qs);
                        /* -4 * sum over sub-blocks of scale * bsum; |4 * scale| <= 128 */
                        __m512i l = _mm512_dpwssd_epi32(zero, _mm512_slli_epi16(s16, 2), nbs[i % 2]), r[4];
                        for (int c = 0; c < 4; c++) {
                                const __m512i lo = _mm512_and_si512(c ? _mm512_srli_epi16(v, 2 * c) : v, three);
                                r[c] = _mm512_dpbusd_epi32(
                                        zero, _mm512_mask_add_epi8(lo, _mm512_test_epi8_mask(hm, h_bit[c]), lo, four),
                                        a[c]);
                        }
                        l = _mm512_dpwssd_epi32(l, _mm512_packs_epi32(r[0], r[1]),
                                                _mm512_permutexvar_epi16(sc_idx[0][i % 2], s16));
                        L[i] = _mm512_dpwssd_epi32(l, _mm512_packs_epi32(r[2], r[3]),
                                                   _mm512_permutexvar_epi16(sc_idx[1][i % 2], s16));
                }
                acc = SIMD(block_step8)(acc, rows, off, SIMD(hsum8x16)(L), NULL, b, d, s, asum, 0, 0,
                                        offsetof(struct block_q3_K, d), 0);
        }
        _mm256_storeu_ps(out, acc);
}

/* vpermw control: the words of 128-bit lane L take int16 scale j + L (words 0-3) and j + 4 + L (4-7) */
#define SCALE_PAIR(j) ((int)(0x10001u * (j)))
#define SCALE_LANES(j)                                                                                        \
        _mm512_setr_epi32(SCALE_PAIR(j), SCALE_PAIR(j), SCALE_PAIR((j) + 4), SCALE_PAIR((j) + 4),           \
                          SCALE_PAIR((j) + 1), SCALE_PAIR((j) + 1), SCALE_PAIR((j) + 5), SCALE_PAIR((j) + 5), \
                          SCALE_PAIR((j) + 2), SCALE_PAIR((j) + 2), SCALE_PAIR((j) + 6), SCALE_PAIR((j) + 6), \
                          SCALE_PAIR((j) + 3), SCALE_PAIR((j) + 3), SCALE_PAIR((j) + 7), SCALE_PAIR((j) + 7))

/*
 * Q6_K, eight rows, one token. Half h of a block (128 elements) is 64
 * bytes of ql and 32 of qh: ql's low nibbles are elements 0-63 of the
 * half in order, its high nibbles 64-127, and qh's 2-bit pairs 0 and 1
 * (elements 0-31, 32-63) or 2 and 3 (64-95, 96-127) go on top, from qh
 * broadcast to both 256-bit halves and shifted per half. So each 64-byte
 * vector of q = w + 32 (0..63) meets 64 activations as they lie, and each
 * of its 128-bit lanes is one sub-block of 16: the products summed in
 * fours (vpdpbusd), two vectors' sums packed to int16 (|sum| <= 4 * 63 *
 * 128: exact) and multiplied by their sub-blocks' scales (vpdpwssd). The
 * offset comes back out as in the 256-bit copy: the row's lanes start at
 * -(32 * scale) times the activations' sums of 16. Prefetching as
 * group_q4_k: the next group's bytes into L1, a share per block.
 *
 * group_q6_k_nt takes NT (<= Q6K_TOKENS) tokens at once (token t's
 * activations at q + t K, scales at d + t K / QK_K, sums of 16 at bs + t K
 * / 16; its eight rows' sums into out[t]): each row's block unpacked once
 * (its 6-bit q and its scales) for the NT tokens, each token's numbers
 * group_q6_k's, operation for operation after the exact integer sums (the
 * one-token kernel stays its own: it keeps the block's activations in
 * registers across the eight rows).
 */
#define Q6K_TOKENS 4
SIMD_INLINE void SIMD(group_q6_k_nt)(const uint8_t *const *rows, int64_t K, const int8_t *q, const float *d,
                                     const int16_t *bs, float (*out)[RB], const int NT)
{
        const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30), zero = _mm512_setzero_si512();
        const __m512i shl = _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2), shr = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
        const __m512i sc_idx[2] = { SCALE_LANES(0), SCALE_LANES(8) };
        const int64_t nb = K / QK_K, row_bytes = nb * (int64_t)sizeof(struct block_q6_K);
        const int64_t share = SIMD(prefetch_share)(rows, row_bytes, nb), ahead = Q6K_STREAM_AHEAD;
        __m256 acc[Q6K_TOKENS];

        for (int t = 0; t < NT; t++)
                acc[t] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
                const size_t off = (size_t)b * sizeof(struct block_q6_K);
                __m512i nbs[Q6K_TOKENS], L[Q6K_TOKENS][RB];
                SIMD(prefetch_step_ahead)(rows, row_bytes, share, b, ahead);
                for (int t = 0; t < NT; t++)
                        nbs[t] = _mm512_zextsi256_si512(
                                _mm256_sub_epi16(_mm256_setzero_si256(), SIMD(load32)(bs + t * (K / 16) + 16 * b)));
                for (int i = 0; i < RB; i++) {
                        const struct block_q6_K *x = (const void *)(rows[i] + off);
                        const __m512i s16 = _mm512_zextsi256_si512(
                                _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales)));
                        const __m512i s32 = _mm512_slli_epi16(s16, 5);
                        __m512i l[Q6K_TOKENS];
                        for (int t = 0; t < NT; t++)
                                l[t] = _mm512_dpwssd_epi32(zero, s32, nbs[t]);
                        for (int h = 0; h < 2; h++) {
                                const __m512i v = _mm512_loadu_si512(x->ql + 64 * h);
                                const __m512i hb = _mm512_broadcast_i64x4(SIMD(load32)(x->qh + 32 * h));
                                const __m512i u0 = _mm512_or_si512(_mm512_and_si512(v, m4),
                                                                   _mm512_and_si512(_mm512_sllv_epi64(hb, shl), m30));
                                const __m512i u1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4),
                                                                   _mm512_and_si512(_mm512_srlv_epi64(hb, shr), m30));
                                const __m512i sc = _mm512_permutexvar_epi16(sc_idx[h], s16);
                                for (int t = 0; t < NT; t++) {
                                        const int8_t *qb = q + t * K + QK_K * b + 128 * h;
                                        const __m512i r0 = _mm512_dpbusd_epi32(zero, u0, _mm512_loadu_si512(qb));
                                        const __m512i r1 = _mm512_dpbusd_epi32(zero, u1, _mm512_loadu_si512(qb + 64));
                                        l[t] = _mm512_dpwssd_epi32(l[t], _mm512_packs_epi32(r0, r1), sc);
                                }
                        }
                        for (int t = 0; t < NT; t++)
                                L[t][i] = l[t];
                }
                const __m256 dw = SIMD(load_f16x8)(rows, off + offsetof(struct block_q6_K, d));
                for (int t = 0; t < NT; t++)
                        acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(d[t * nb + b])),
                                                 _mm256_cvtepi32_ps(SIMD(hsum8x16)(L[t])), acc[t]);
        }
        for (int t = 0; t < NT; t++)
                _mm256_storeu_ps(out[t], acc[t]);
}

/* group_q6_k_nt for tokens [t, t + nt) of a, nt (2 to Q6K_TOKENS) a constant */
SIMD_FN static void SIMD(group_tokens_q6_k)(const uint8_t *const *rows, int64_t K, const struct act_blocks *a,
                                            int64_t t, int nt, float (*out)[RB])
{
        const int8_t *q = a->q + t * K;
        const float *d = a->d + t * (K / QK_K);
        const int16_t *bs = a->bsums + t * (K / 16);

        if (nt == 2)
                SIMD(group_q6_k_nt)(rows, K, q, d, bs, out, 2);
        else if (nt == 3)
                SIMD(group_q6_k_nt)(rows, K, q, d, bs, out, 3);
        else
                SIMD(group_q6_k_nt)(rows, K, q, d, bs, out, 4);
}
#define GROUP_TOKENS_Q6_K SIMD(group_tokens_q6_k)

SIMD_INLINE void SIMD(group_q6_k)(const uint8_t *const *rows, int64_t K, const int8_t *q, const float *d,
                                  const float *s, const int16_t *bs, const int32_t *asum, float *out)
{
        const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30), zero = _mm512_setzero_si512();
        /* qh's pairs into bits 4-5: pair 0 | pair 1 (first half), pair 2 | pair 3 (second) */
        const __m512i shl = _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2), shr = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
        const __m512i sc_idx[2] = { SCALE_LANES(0), SCALE_LANES(8) };
        const int64_t nb = K / QK_K, row_bytes = nb * (int64_t)sizeof(struct block_q6_K);
        const int64_t share = SIMD(prefetch_share)(rows, row_bytes, nb), ahead = Q6K_STREAM_AHEAD;
        __m256 acc = _mm256_setzero_ps();

        for (int64_t b = 0; b < nb; b++) {
                const size_t off = (size_t)b * sizeof(struct block_q6_K);
                const int8_t *qb = q + QK_K * b;
                SIMD(prefetch_step_ahead)(rows, row_bytes, share, b, ahead);
                const __m512i a[4] = { _mm512_loadu_si512(qb), _mm512_loadu_si512(qb + 64),
                                       _mm512_loadu_si512(qb + 128), _mm512_loadu_si512(qb + 192) };
                /* minus the activations' sums of 16 (|sum| <= 16 * 128) */
                const __m512i nbs = _mm512_zextsi256_si512(
                        _mm256_sub_epi16(_mm256_setzero_si256(), SIMD(load32)(bs + 16 * b)));
                __m512i L[RB];
                for (int i = 0; i < RB; i++) {
                        const struct block_q6_K *x = (const void *)(rows[i] + off);
                        const __m512i s16 = _mm512_zextsi256_si512(
                                _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales)));
                        /* -32 * sum over sub-blocks of scale * bsum; |32 * scale| <= 4096 */
                        __m512i l = _mm512_dpwssd_epi32(zero, _mm512_slli_epi16(s16, 5), nbs);
                        for (int h = 0; h < 2; h++) {
                                const __m512i v = _mm512_loadu_si512(x->ql + 64 * h);
                                const __m512i hb = _mm512_broadcast_i64x4(SIMD(load32)(x->qh + 32 * h));
                                const __m512i u0 = _mm512_or_si512(_mm512_and_si512(v, m4),
                                                                   _mm512_and_si512(_mm512_sllv_epi64(hb, shl), m30));
                                const __m512i u1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4),
                                                                   _mm512_and_si512(_mm512_srlv_epi64(hb, shr), m30));
                                const __m512i r0 = _mm512_dpbusd_epi32(zero, u0, a[2 * h]);
                                const __m512i r1 = _mm512_dpbusd_epi32(zero, u1, a[2 * h + 1]);
                                l = _mm512_dpwssd_epi32(l, _mm512_packs_epi32(r0, r1),
                                                        _mm512_permutexvar_epi16(sc_idx[h], s16));
                        }
                        L[i] = l;
                }
                const __m256 dw = SIMD(load_f16x8)(rows, off + offsetof(struct block_q6_K, d));
                acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(d[b])), _mm256_cvtepi32_ps(SIMD(hsum8x16)(L)),
                                      acc);
        }
        _mm256_storeu_ps(out, acc);
}

#undef SCALE_LANES
#undef SCALE_PAIR

/*
 * --- the 32-element types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), two blocks per vector ---
 * A row's blocks b and b + 1 are one 512-bit vector of unsigned bytes in
 * element order (lanes 0-7 of the products block b, 8-15 block b + 1),
 * against the token's 64 activations as they lie. The eight rows' lanes
 * are reduced by one transpose into sixteen isums, the sixteen f16 scales
 * come out of the rows' loads (Q8_0's by scalar loads), and the float
 * steps run block after block as everywhere else: per row, block b's, then
 * block b + 1's.
 */

/* v[i] (row i, lanes 0-7 block b, 8-15 block b + 1) into: lanes 0-7 block b of rows 0-7, 8-15 block b + 1 */
SIMD_INLINE __m512i SIMD(hsum8x2x8)(const __m512i *v)
{
        __m512i u[2];
        SIMD(hsum8_rows4)(v, u);
        /* u[i]'s 128-bit lanes: rows 4i .. 4i + 3, halves of block b (lanes 0, 1) and of b + 1 (2, 3) */
        const __m512i w = _mm512_add_epi32(_mm512_shuffle_i32x4(u[0], u[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                           _mm512_shuffle_i32x4(u[0], u[1], _MM_SHUFFLE(3, 1, 3, 1)));
        /* w's 128-bit lanes: b rows 0-3, b + 1 rows 0-3, b rows 4-7, b + 1 rows 4-7 */
        return _mm512_shuffle_i32x4(w, w, _MM_SHUFFLE(3, 1, 2, 0));
}

/* vpermw controls: word pairs (w, w + 1) and (w, w) as int32 lanes */
#define WORD_PAIR(w) ((int)((uint32_t)(w) | (uint32_t)((w) + 1) << 16))
#define WORD_TWICE(w) ((int)(0x10001u * (uint32_t)(w)))
/* the 16 bytes of words w0.. in 128-bit lanes 0 and 1, of words w1.. in lanes 2 and 3 */
#define NIBBLE_WORDS(w0, w1)                                                                                  \
        _mm512_setr_epi32(WORD_PAIR(w0), WORD_PAIR((w0) + 2), WORD_PAIR((w0) + 4), WORD_PAIR((w0) + 6),     \
                          WORD_PAIR(w0), WORD_PAIR((w0) + 2), WORD_PAIR((w0) + 4), WORD_PAIR((w0) + 6),     \
                          WORD_PAIR(w1), WORD_PAIR((w1) + 2), WORD_PAIR((w1) + 4), WORD_PAIR((w1) + 6),     \
                          WORD_PAIR(w1), WORD_PAIR((w1) + 2), WORD_PAIR((w1) + 4), WORD_PAIR((w1) + 6))
/* word w0 in words 0-7, w1 in words 8-15 */
#define F16_WORDS(w0, w1)                                                                                     \
        _mm512_setr_epi32(WORD_TWICE(w0), WORD_TWICE(w0), WORD_TWICE(w0), WORD_TWICE(w0), WORD_TWICE(w1),   \
                          WORD_TWICE(w1), WORD_TWICE(w1), WORD_TWICE(w1), 0, 0, 0, 0, 0, 0, 0, 0)

/*
 * Two blocks of nibbles from X, the blocks' bytes as loaded (qs at words
 * idx picks out, each 16 bytes twice): the first block's 16 low nibbles,
 * its 16 high ones, then the second block's.
 */
SIMD_INLINE __m512i SIMD(nibbles2x32)(__m512i X, __m512i idx)
{
        const __m512i v = _mm512_permutexvar_epi16(idx, X);
        return _mm512_and_si512(_mm512_srlv_epi64(v, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4)),
                                _mm512_set1_epi8(15));
}

/* + 16 on the bytes whose bit is set in the two little-endian words (the fifth bits of Q5_0, Q5_1) */
SIMD_INLINE __m512i SIMD(add_bits2x32)(__m512i v, const uint8_t *lo, const uint8_t *hi)
{
        uint32_t a, b;
        memcpy(&a, lo, 4);
        memcpy(&b, hi, 4);
        return _mm512_mask_add_epi8(v, (__mmask64)a | (__mmask64)b << 32, v, _mm512_set1_epi8(16));
}

/*
 * Blocks x[0] and x[1] of a row as unsigned bytes: w + OFF, or q as
 * stored (Q4_1, Q5_1). X: the two blocks' bytes (not Q8_0's, 68 bytes),
 * nib: NIBBLE_WORDS of their qs.
 */
SIMD_INLINE __m512i SIMD(pair_q4_0)(const struct block_q4_0 *x, __m512i X, __m512i nib)
{
        return SIMD(nibbles2x32)(X, nib);
}

SIMD_INLINE __m512i SIMD(pair_q4_1)(const struct block_q4_1 *x, __m512i X, __m512i nib)
{
        return SIMD(nibbles2x32)(X, nib);
}

SIMD_INLINE __m512i SIMD(pair_q5_0)(const struct block_q5_0 *x, __m512i X, __m512i nib)
{
        return SIMD(add_bits2x32)(SIMD(nibbles2x32)(X, nib), x[0].qh, x[1].qh);
}

SIMD_INLINE __m512i SIMD(pair_q5_1)(const struct block_q5_1 *x, __m512i X, __m512i nib)
{
        return SIMD(add_bits2x32)(SIMD(nibbles2x32)(X, nib), x[0].qh, x[1].qh);
}

/* w + 128 (xor of the sign bit), as the 256-bit copy does */
SIMD_INLINE __m512i SIMD(pair_q8_0)(const struct block_q8_0 *x, __m512i X, __m512i nib)
{
        const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(SIMD(load32)(x[0].qs)), SIMD(load32)(x[1].qs), 1);
        return _mm512_xor_si512(v, _mm512_set1_epi8(-128));
}

/* eight floats: the high half of v */
SIMD_INLINE __m256 SIMD(high8)(__m512 v)
{
        return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

/*
 * The f16 at byte off0 of the eight rows (lanes 0-7) and at off1 (8-15), as floats, from
 * scalar loads: a 16-lane vpgatherdd left the Q4_0 kernel 1.36x slower on Zen 5 (from L2).
 */
SIMD_INLINE __m512 SIMD(load_f16x16)(const uint8_t *const *rows, size_t off0, size_t off1)
{
        return _mm512_cvtph_ps(_mm256_set_m128i(SIMD(f16x8_at)(rows, off1), SIMD(f16x8_at)(rows, off0)));
}

/* the 16 bytes at x of four blocks bb bytes apart, block j's in 128-bit lane j, by broadcast loads */
SIMD_INLINE __m512i SIMD(bytes4x16)(const uint8_t *x, size_t bb)
{
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)x));
        v = _mm512_mask_broadcast_i32x4(v, 0x00f0, _mm_loadu_si128((const __m128i *)(x + bb)));
        v = _mm512_mask_broadcast_i32x4(v, 0x0f00, _mm_loadu_si128((const __m128i *)(x + 2 * bb)));
        return _mm512_mask_broadcast_i32x4(v, 0xf000, _mm_loadu_si128((const __m128i *)(x + 3 * bb)));
}

/*
 * vpermt2w control over four blocks of bb bytes (the first 64 bytes, then
 * the rest): 128-bit lane j block j's n words from byte `at`, repeated.
 */
SIMD_INLINE __m512i SIMD(block_words4)(size_t bb, size_t at, int n)
{
        _Alignas(64) int16_t w[32];
        for (int j = 0; j < 4; j++)
                for (int k = 0; k < 8; k++)
                        w[8 * j + k] = (int16_t)((j * bb + at) / 2 + k % n);
        return _mm512_load_si512(w);
}

/* vpermt2w control: words a and b as one int32 lane */
#define WORDS_AB(a, b) ((int)((uint32_t)(a) | (uint32_t)(b) << 16))
/* the words 8j + i (row i) of block j from u[0]'s dwords 4j + i (rows 0-3) and u[1]'s (4-7), word o of each */
#define ROW_WORDS_LANE(w)                                                                                     \
        WORDS_AB(w, (w) + 2), WORDS_AB((w) + 4, (w) + 6), WORDS_AB((w) + 32, (w) + 34), WORDS_AB((w) + 36, (w) + 38)
#define SETR_EPI32(...) _mm512_setr_epi32(__VA_ARGS__)
#define ROW_WORDS(o) SETR_EPI32(ROW_WORDS_LANE(o), ROW_WORDS_LANE(8 + (o)), ROW_WORDS_LANE(16 + (o)), ROW_WORDS_LANE(24 + (o)))

/*
 * The f16 pairs at dwords 0, w, 2w and 3w of h[i] (row i's blocks 0-3) of
 * eight rows, gathered by a tree of two-source permutes (seven, eight with
 * mv) where a masked vpermw per row and f16 takes eight or sixteen: the first
 * halves into *dv, the second into *mv (when mv), word 8j + i block j's
 * of row i.
 */
SIMD_INLINE void SIMD(f16_pairs8x4)(const __m512i *h, int w, __m512i *dv, __m512i *mv)
{
        const __m512i i1 = _mm512_setr_epi32(0, 16, w, 16 + w, 2 * w, 16 + 2 * w, 3 * w, 16 + 3 * w, 0, 0, 0, 0, 0,
                                             0, 0, 0);
        const __m512i i2 = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
        __m512i t[4], u[2];
        /* t[k], dword 2j + r: block j of row 2k + r */
        for (int k = 0; k < 4; k++)
                t[k] = _mm512_permutex2var_epi32(h[2 * k], i1, h[2 * k + 1]);
        /* u[k], dword 4j + r: block j of row 4k + r */
        for (int k = 0; k < 2; k++)
                u[k] = _mm512_permutex2var_epi32(t[2 * k], i2, t[2 * k + 1]);
        *dv = _mm512_permutex2var_epi16(u[0], ROW_WORDS(0), u[1]);
        if (mv)
                *mv = _mm512_permutex2var_epi16(u[0], ROW_WORDS(1), u[1]);
}

/*
 * The 32-element types with nibbles (Q4_0, Q4_1, Q5_0, Q5_1), eight rows,
 * four blocks a step, from b = 0 while four remain; returns the first
 * block left. Each block's 16 bytes of nibbles go into their own 128-bit
 * lane: Q4_0's by broadcast loads (no shuffle), the others' by one
 * vpermt2w from the four blocks' bytes as two loads (the first 64 bytes,
 * a masked load of the rest), which also give Q5_0's and Q5_1's block
 * heads (the first 8 bytes of each block, by another vpermt2w). Zen 5, 1
 * thread, from L2, alternated with the broadcast loads (and scalar loads
 * of the Q5 heads): Q4_1 best 28-30 -> 39-40 GB/s, Q5_0 31 -> 35, Q5_1
 * 30-31 -> 34; Q4_0 no faster (36 -> 35). The low nibbles meet the four
 * blocks' activations 0-15 and the high ones 16-31 (the activations
 * rearranged once a step, for all eight rows). Q4_0's f16 scales of the
 * four blocks come out of the 64-byte load (at bytes 0, 18, 36 and 54) by
 * one vpermw; Q4_1's d and m pairs (dwords 0, 5, 10, 15 of it) and the Q5
 * heads go through f16_pairs8x4. The fifth bits
 * (qh, bit k for element k) are picked per 128-bit lane by pshufb from the
 * head, tested against each byte's bit (vptestmb) and added as 16 under
 * that mask. Against the two-block step below this halves the shuffles and
 * the loads per byte of weights (Zen 5, 1 thread, from L2: Q4_0 35 -> 45
 * GB/s, Q4_1 33-36 -> 35-38; Q5_0 and Q5_1 no faster there, 29-31, but
 * ahead from memory: see STREAM_ROWS and QUADS_ALWAYS). The float steps
 * are DEFINE_GROUP's, block after block: the scaled isum, then (Q4_1,
 * Q5_1) the min times the activations' block sum. The block's size, its
 * qs offset, the offset to subtract (off) and whether it has a min come
 * from DEFINE_GROUP32_ZMM's arguments; t picks how the heads are read.
 */
SIMD_INLINE int64_t SIMD(quads32)(const uint8_t *const *rows, int64_t nb, const int8_t *q, const float *d,
                                  const float *s, const int32_t *asum, __m256 *accp, enum ggml_type t, size_t bb,
                                  size_t qs, int off, bool mink)
{
        const bool five = t == GGML_TYPE_Q5_0 || t == GGML_TYPE_Q5_1;
        const int qh = t == GGML_TYPE_Q5_0 ? offsetof(struct block_q5_0, qh) : offsetof(struct block_q5_1, qh);
        const int64_t row_bytes = nb * (int64_t)bb;
        const __m512i m4 = _mm512_set1_epi8(15), m16 = _mm512_set1_epi8(16);
        /* Q4_0, word 8j + i (row i, block j): block j's d, word 9j of the row's four blocks */
        const __m512i d_idx = WORD_LANES4(0, 0, 9, 9, 18, 18, 27, 27);
        /* the fifth bits: bytes 0-7 of a lane qh byte 0 (low nibbles) or 2 (high), 8-15 byte 1 or 3 */
        const __m512i qh_lo = _mm512_set4_epi64(0x0101010101010101ll * (qh + 1), 0x0101010101010101ll * qh,
                                                0x0101010101010101ll * (qh + 1), 0x0101010101010101ll * qh);
        const __m512i qh_hi = _mm512_add_epi8(qh_lo, _mm512_set1_epi8(2));
        const __m512i bit = _mm512_set1_epi64(0x8040201008040201ll);
        /* activations: lane j of lo the block's elements 0-15, of hi 16-31 */
        const __m512i lo_idx = _mm512_setr_epi64(0, 1, 4, 5, 8, 9, 12, 13);
        const __m512i hi_idx = _mm512_setr_epi64(2, 3, 6, 7, 10, 11, 14, 15);
        /* [block j rows 0-3, block j rows 4-7, block j + 1 rows 0-3, ...] */
        const __m512i pair01 = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
        const __m512i pair23 = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
        const int64_t share = SIMD(prefetch_share)(rows, row_bytes, MAX(nb / 4, 1));
        /*
         * the words of the blocks past the first 64 bytes; each lane's qs
         * (16 bytes) and head (8 bytes, twice): built once per group of rows,
         * and only for the types that read them
         */
        const __mmask32 rest = (__mmask32)((1u << (4 * bb - 64) / 2) - 1);
        const __m512i qs_words = t == GGML_TYPE_Q4_0 ? _mm512_setzero_si512() : SIMD(block_words4)(bb, qs, 8);
        const __m512i head_words = five ? SIMD(block_words4)(bb, 0, 4) : _mm512_setzero_si512();
        __m256 acc = *accp;
        int64_t b = 0;

        for (; b + 4 <= nb; b += 4) {
                SIMD(prefetch_step)(rows, row_bytes, share, b / 4);
                const __m512i a0 = _mm512_loadu_si512(q + 32 * b), a1 = _mm512_loadu_si512(q + 32 * b + 64);
                const __m512i alo = _mm512_permutex2var_epi64(a0, lo_idx, a1);
                const __m512i ahi = _mm512_permutex2var_epi64(a0, hi_idx, a1);
                __m512i L[RB], H[RB], dv = _mm512_setzero_si512(), mv = _mm512_setzero_si512();
                for (int i = 0; i < RB; i++) {
                        const uint8_t *x = rows[i] + b * bb;
                        /* the four blocks' bytes: the first 64, then the rest (not Q4_0's) */
                        const __m512i X0 = _mm512_loadu_si512(x);
                        const __m512i X1 = t == GGML_TYPE_Q4_0 ? _mm512_setzero_si512()
                                                               : _mm512_maskz_loadu_epi16(rest, x + 64);
                        const __m512i v = t == GGML_TYPE_Q4_0 ? SIMD(bytes4x16)(x + qs, bb)
                                                              : _mm512_permutex2var_epi16(X0, qs_words, X1);
                        __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                        if (t == GGML_TYPE_Q4_0)
                                dv = _mm512_mask_permutexvar_epi16(dv, 0x01010101u << i, d_idx, X0);
                        else if (t == GGML_TYPE_Q4_1)
                                H[i] = X0;
                        else
                                H[i] = _mm512_permutex2var_epi16(X0, head_words, X1);
                        if (five) {
                                lo = _mm512_mask_add_epi8(
                                        lo, _mm512_test_epi8_mask(_mm512_shuffle_epi8(H[i], qh_lo), bit), lo, m16);
                                hi = _mm512_mask_add_epi8(
                                        hi, _mm512_test_epi8_mask(_mm512_shuffle_epi8(H[i], qh_hi), bit), hi, m16);
                        }
                        L[i] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, alo), hi, ahi);
                }
                if (t != GGML_TYPE_Q4_0)
                        SIMD(f16_pairs8x4)(H, t == GGML_TYPE_Q4_1 ? 5 : 4, &dv, mink ? &mv : NULL);
                __m512i u[2];
                SIMD(hsum8_rows4)(L, u);
                /* u[h]'s 128-bit lane j: block b + j, rows 4h .. 4h + 3 */
                __m512i s01 = _mm512_permutex2var_epi64(u[0], pair01, u[1]);
                __m512i s23 = _mm512_permutex2var_epi64(u[0], pair23, u[1]);
                if (off) {
                        s01 = _mm512_sub_epi32(s01, _mm512_mask_set1_epi32(_mm512_set1_epi32(off * asum[b]), 0xff00,
                                                                           off * asum[b + 1]));
                        s23 = _mm512_sub_epi32(s23, _mm512_mask_set1_epi32(_mm512_set1_epi32(off * asum[b + 2]),
                                                                           0xff00, off * asum[b + 3]));
                }
                const __m512 f01 = _mm512_cvtepi32_ps(s01), f23 = _mm512_cvtepi32_ps(s23);
                const __m512 p01 = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(dv)),
                                                 _mm512_mask_mov_ps(_mm512_set1_ps(d[b]), 0xff00,
                                                                    _mm512_set1_ps(d[b + 1])));
                const __m512 p23 = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(dv, 1)),
                                                 _mm512_mask_mov_ps(_mm512_set1_ps(d[b + 2]), 0xff00,
                                                                    _mm512_set1_ps(d[b + 3])));
                const __m512 m01 = _mm512_cvtph_ps(_mm512_castsi512_si256(mv));
                const __m512 m23 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(mv, 1));
                /* per block: the scaled isum, then (Q4_1, Q5_1) the min times the activations' sum */
                acc = _mm256_fmadd_ps(_mm512_castps512_ps256(p01), _mm512_castps512_ps256(f01), acc);
                if (mink)
                        acc = _mm256_fmadd_ps(_mm512_castps512_ps256(m01), _mm256_set1_ps(s[b]), acc);
                acc = _mm256_fmadd_ps(SIMD(high8)(p01), SIMD(high8)(f01), acc);
                if (mink)
                        acc = _mm256_fmadd_ps(SIMD(high8)(m01), _mm256_set1_ps(s[b + 1]), acc);
                acc = _mm256_fmadd_ps(_mm512_castps512_ps256(p23), _mm512_castps512_ps256(f23), acc);
                if (mink)
                        acc = _mm256_fmadd_ps(_mm512_castps512_ps256(m23), _mm256_set1_ps(s[b + 2]), acc);
                acc = _mm256_fmadd_ps(SIMD(high8)(p23), SIMD(high8)(f23), acc);
                if (mink)
                        acc = _mm256_fmadd_ps(SIMD(high8)(m23), _mm256_set1_ps(s[b + 3]), acc);
        }
        *accp = acc;
        return b;
}

#undef ROW_WORDS
#undef SETR_EPI32
#undef ROW_WORDS_LANE
#undef WORDS_AB

/*
 * out[i] = row i . token, as DEFINE_GROUP's copy computes it, two blocks
 * a step (an odd last block alone, on 256-bit vectors). Where two blocks
 * fit in 64 bytes (ONE, all but Q8_0), a row's two blocks are one masked
 * load: the nibbles come out of it by vpermw, and so do the f16 scales
 * (and Q4_1/Q5_1's m), each row's merged into its lanes of one vector, in
 * place of 16 scalar loads and inserts (Zen 5, Q4_0 from L2, 1 thread:
 * the step is bound by its instruction count). Q8_0's scales come in by
 * scalar loads. QS_AT: byte offset of qs in a block. Prefetching: the
 * next group's bytes in order into L1, a share per step, as group_q4_k
 * (Zen 5, Q4_0, 2 threads: 40-45 GB/s, into L2 38-41, none 26-28). The
 * types with nibbles run four blocks a step first where QUADS(K) says
 * (quads32; TYPE: the block's ggml type).
 */
#define DEFINE_GROUP32_ZMM(name, btype, OFF, MINK, D_AT, DMIN_AT, ONE, QS_AT, QUADS, TYPE)                         \
        SIMD_INLINE void SIMD(group_##name)(const uint8_t *const *rows, int64_t K, const int8_t *q,          \
                                            const float *d, const float *s, const int16_t *bs,               \
                                            const int32_t *asum, float *out)                                 \
        {                                                                                                     \
                const int64_t nb = K / 32, row_bytes = nb * (int64_t)sizeof(btype);                           \
                const __m512i nib = NIBBLE_WORDS((QS_AT) / 2, (sizeof(btype) + (QS_AT)) / 2);                 \
                const __m512i d_idx = F16_WORDS((D_AT) / 2, (sizeof(btype) + (D_AT)) / 2);                    \
                const __m512i m_idx = F16_WORDS((DMIN_AT) / 2, (sizeof(btype) + (DMIN_AT)) / 2);              \
                const int64_t share = SIMD(prefetch_share)(rows, row_bytes, MAX(nb / 2, 1));                  \
                __m256 acc = _mm256_setzero_ps();                                                             \
                int64_t b = 0;                                                                                \
                if (QUADS(K))                                                                                 \
                        b = SIMD(quads32)(rows, nb, q, d, s, asum, &acc, TYPE, sizeof(btype), QS_AT, OFF,     \
                                          (MINK) == 1);                                                       \
                for (; b + 2 <= nb; b += 2) {                                                                 \
                        __m512i L[RB], dv = _mm512_setzero_si512(), mv = _mm512_setzero_si512();              \
                        SIMD(prefetch_step)(rows, row_bytes, share, b / 2);                                   \
                        const __m512i av = _mm512_loadu_si512(q + 32 * b);                                    \
                        for (int i = 0; i < RB; i++) {                                                        \
                                const btype *x = (const btype *)(const void *)rows[i] + b;                    \
                                /* the two blocks' bytes, sizeof(btype) words */                              \
                                const __m512i X = ONE ? _mm512_maskz_loadu_epi16(                             \
                                                                (__mmask32)((1ull << sizeof(btype)) - 1), x) \
                                                      : _mm512_setzero_si512();                               \
                                L[i] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), SIMD(pair_##name)(x, X, nib), \
                                                           av);                                               \
                                if (ONE)                                                                      \
                                        dv = _mm512_mask_permutexvar_epi16(dv, 0x101u << i, d_idx, X);        \
                                if (ONE && (MINK) == 1)                                                       \
                                        mv = _mm512_mask_permutexvar_epi16(mv, 0x101u << i, m_idx, X);        \
                        }                                                                                     \
                        __m512i isum = SIMD(hsum8x2x8)(L);                                                    \
                        if (OFF)                                                                              \
                                isum = _mm512_sub_epi32(isum, _mm512_mask_set1_epi32(                         \
                                                                      _mm512_set1_epi32((OFF) * asum[b]),     \
                                                                      0xff00, (OFF) * asum[b + 1]));          \
                        const __m512 da = _mm512_mask_mov_ps(_mm512_set1_ps(d[b]), 0xff00,                    \
                                                             _mm512_set1_ps(d[b + 1]));                       \
                        const size_t at = b * sizeof(btype);                                                 \
                        const __m512 dw = ONE ? _mm512_cvtph_ps(_mm512_castsi512_si256(dv))                   \
                                              : SIMD(load_f16x16)(rows, at + (D_AT), at + sizeof(btype) + (D_AT)); \
                        const __m512 p = _mm512_mul_ps(dw, da), f = _mm512_cvtepi32_ps(isum);                 \
                        __m512 mw = _mm512_setzero_ps();                                                      \
                        if ((MINK) == 1)                                                                      \
                                mw = ONE ? _mm512_cvtph_ps(_mm512_castsi512_si256(mv))                        \
                                         : SIMD(load_f16x16)(rows, at + (DMIN_AT), at + sizeof(btype) + (DMIN_AT)); \
                        acc = _mm256_fmadd_ps(_mm512_castps512_ps256(p), _mm512_castps512_ps256(f), acc);     \
                        if ((MINK) == 1)                                                                      \
                                acc = _mm256_fmadd_ps(_mm512_castps512_ps256(mw), _mm256_set1_ps(s[b]), acc); \
                        acc = _mm256_fmadd_ps(SIMD(high8)(p), SIMD(high8)(f), acc);                           \
                        if ((MINK) == 1)                                                                      \
                                acc = _mm256_fmadd_ps(SIMD(high8)(mw), _mm256_set1_ps(s[b + 1]), acc);        \
                }                                                                                             \
                if (b < nb) {                                                                                 \
                        __m256i L[RB];                                                                        \
                        for (int i = 0; i < RB; i++)                                                          \
                                L[i] = SIMD(block_##name)((const btype *)(const void *)rows[i] + b,           \
                                                          q + 32 * b, NULL, NULL, NULL, NULL);                \
                        acc = SIMD(block_step8)(acc, rows, b * sizeof(btype), SIMD(hsum8x8)(L), NULL, b, d,   \
                                                s, asum, OFF, MINK, D_AT, DMIN_AT);                           \
                }                                                                                             \
                _mm256_storeu_ps(out, acc);                                                                   \
        }

/*
 * Where the four-block steps run: Q4_0 and Q4_1 on rows in streams only
 * (at 5632x2048, consecutive rows, the two-block steps stay ahead: Q4_0
 * 76-86 % against 66-79 %, Q4_1 73-80 against 59-70 %), Q5_0 and Q5_1 on
 * every row (5632x2048: Q5_0 65-70 against 60-68 %, Q5_1 65-69 against
 * 58-62 %, five rounds).
 */
#define QUADS_IN_STREAMS(K) STREAM_ROWS(GGML_TYPE_Q4_0, K)
#define QUADS_ALWAYS(K) 1
#define QUADS_NONE(K) 0
DEFINE_GROUP32_ZMM(q4_0, struct block_q4_0, 8, 0, 0, 0, 1, offsetof(struct block_q4_0, qs), QUADS_IN_STREAMS, GGML_TYPE_Q4_0)
DEFINE_GROUP32_ZMM(q4_1, struct block_q4_1, 0, 1, 0, 2, 1, offsetof(struct block_q4_1, qs), QUADS_IN_STREAMS, GGML_TYPE_Q4_1)
DEFINE_GROUP32_ZMM(q5_0, struct block_q5_0, 16, 0, 0, 0, 1, offsetof(struct block_q5_0, qs), QUADS_ALWAYS, GGML_TYPE_Q5_0)
DEFINE_GROUP32_ZMM(q5_1, struct block_q5_1, 0, 1, 0, 2, 1, offsetof(struct block_q5_1, qs), QUADS_ALWAYS, GGML_TYPE_Q5_1)
DEFINE_GROUP32_ZMM(q8_0, struct block_q8_0, 128, 0, 0, 0, 0, offsetof(struct block_q8_0, qs), QUADS_NONE, GGML_TYPE_Q8_0)

/*
 * group_q8_0 for NT (<= Q8_0_TOKENS) tokens at once, two blocks a step
 * (nb even): each row's pair of blocks loaded and made unsigned once for
 * the NT tokens, each token's numbers group_q8_0's, operation for
 * operation after the exact integer sums (token t's activations at q + t
 * K, their scales at d + t nb, their sums at asum + t nb; its eight rows'
 * sums into out[t]).
 */
#define Q8_0_TOKENS 4
SIMD_INLINE void SIMD(group_q8_0_nt)(const uint8_t *const *rows, int64_t K, const int8_t *q, const float *d,
                                     const int32_t *asum, float (*out)[RB], const int NT)
{
        const int64_t nb = K / 32, row_bytes = nb * (int64_t)sizeof(struct block_q8_0);
        const int64_t share = SIMD(prefetch_share)(rows, row_bytes, MAX(nb / 2, 1));
        const __m512i zero = _mm512_setzero_si512();
        __m256 acc[Q8_0_TOKENS];

        for (int t = 0; t < NT; t++)
                acc[t] = _mm256_setzero_ps();
        for (int64_t b = 0; b + 2 <= nb; b += 2) {
                __m512i L[Q8_0_TOKENS][RB];
                SIMD(prefetch_step)(rows, row_bytes, share, b / 2);
                for (int i = 0; i < RB; i++) {
                        const struct block_q8_0 *x = (const struct block_q8_0 *)(const void *)rows[i] + b;
                        const __m512i u = SIMD(pair_q8_0)(x, zero, zero);
                        for (int t = 0; t < NT; t++)
                                L[t][i] = _mm512_dpbusd_epi32(zero, u, _mm512_loadu_si512(q + t * K + 32 * b));
                }
                const size_t at = b * sizeof(struct block_q8_0);
                const __m512 dw = SIMD(load_f16x16)(rows, at + offsetof(struct block_q8_0, d),
                                                    at + sizeof(struct block_q8_0) + offsetof(struct block_q8_0, d));
                for (int t = 0; t < NT; t++) {
                        const int32_t *as = asum + t * nb;
                        const __m512i isum = _mm512_sub_epi32(SIMD(hsum8x2x8)(L[t]),
                                                              _mm512_mask_set1_epi32(_mm512_set1_epi32(128 * as[b]),
                                                                                     0xff00, 128 * as[b + 1]));
                        const __m512 da = _mm512_mask_mov_ps(_mm512_set1_ps(d[t * nb + b]), 0xff00,
                                                             _mm512_set1_ps(d[t * nb + b + 1]));
                        const __m512 p = _mm512_mul_ps(dw, da), f = _mm512_cvtepi32_ps(isum);
                        acc[t] = _mm256_fmadd_ps(_mm512_castps512_ps256(p), _mm512_castps512_ps256(f), acc[t]);
                        acc[t] = _mm256_fmadd_ps(SIMD(high8)(p), SIMD(high8)(f), acc[t]);
                }
        }
        for (int t = 0; t < NT; t++)
                _mm256_storeu_ps(out[t], acc[t]);
}

/*
 * group_q8_0_nt for tokens [t, t + nt) of a (nt 2 to Q8_0_TOKENS a
 * constant); an odd count of blocks, or other activations, a token at a
 * time through group_q8_0
 */
SIMD_FN static void SIMD(group_tokens_q8_0)(const uint8_t *const *rows, int64_t K, const struct act_blocks *a,
                                            int64_t t, int nt, float (*out)[RB])
{
        const int8_t *q = (a->scheme == ACT_SCHEME_TOKEN_I8 ? a->tok.q8 : a->q) + t * K;
        const float *d = a->d + t * (K / 32);
        const int32_t *asum = a->asum ? a->asum + t * (K / 32) : NULL;

        if (a->scheme != ACT_SCHEME_Q8_0 || (K / 32) % 2) {
                for (int u = 0; u < nt; u++)
                        SIMD(group_q8_0)(rows, K, q + u * K, d + u * (K / 32), NULL, NULL,
                                         asum ? asum + u * (K / 32) : NULL, out[u]);
                return;
        }
        if (nt == 2)
                SIMD(group_q8_0_nt)(rows, K, q, d, asum, out, 2);
        else if (nt == 3)
                SIMD(group_q8_0_nt)(rows, K, q, d, asum, out, 3);
        else
                SIMD(group_q8_0_nt)(rows, K, q, d, asum, out, 4);
}
#define GROUP_TOKENS_Q8_0 SIMD(group_tokens_q8_0)

#undef DEFINE_GROUP32_ZMM
#undef QUADS_IN_STREAMS
#undef QUADS_ALWAYS
#undef QUADS_NONE
#undef F16_WORDS
#undef NIBBLE_WORDS
#undef WORD_TWICE
#undef WORD_PAIR

#undef SCALE_QUADS
#undef SCALE_LANES4
#undef WORD_LANES4
#undef I16_PAIR_OF_BYTE

