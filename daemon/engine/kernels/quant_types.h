/* SPDX-License-Identifier: MIT */
/*
 * GGUF's block-quantized tensor types: their block layouts, as the GGUF
 * specification and ggml's public header lay them out, what a block means
 * (dequantization), and which activation scheme each is computed with.
 *
 * A row of K elements is K / block_elems blocks stored back to back; f16
 * fields are IEEE half floats, little endian. Per type (k is the element
 * index inside the block, q its stored integer, "v =" its value):
 *
 *   Q4_0  32 elems, 18 B: d, qs[16]. q = nibble of qs[k % 16], low nibble
 *         for k < 16, high for k >= 16; v = d * (q - 8).
 *   Q4_1  32 elems, 20 B: d, m, qs[16]. q as Q4_0; v = d * q + m.
 *   Q5_0  32 elems, 22 B: d, qh[4], qs[16]. q = Q4_0's nibble | bit k of the
 *         little-endian u32 qh << 4; v = d * (q - 16).
 *   Q5_1  32 elems, 24 B: d, m, qh[4], qs[16]. q as Q5_0; v = d * q + m.
 *   Q8_0  32 elems, 34 B: d, qs[32] (int8); v = d * qs[k].
 *   Q2_K  256 elems, 84 B: scales[16], qs[64], d, dmin. 16 sub-blocks of 16;
 *         scales[j] = scale (low nibble) | min (high nibble) of sub-block j.
 *         For k = 128 h + 32 s + l (h < 2, s < 4, l < 32): q = 2 bits at
 *         bit 2 s of qs[32 h + l], sub-block j = k / 16;
 *         v = d * scale_j * q - dmin * min_j.
 *   Q3_K  256 elems, 110 B: hmask[32], qs[64], scales[12], d. 16 sub-blocks
 *         of 16 with 6-bit scales: low 4 bits of sub-block j are the low
 *         (j < 8) or high (j >= 8) nibble of scales[j % 8], high 2 bits are
 *         bits 2 (j / 4) of scales[8 + j % 4]. q's low 2 bits as Q2_K, its
 *         third is bit (4 h + s) of hmask[l]; v = d * (scale_j - 32) *
 *         (q2 - (hbit ? 0 : 4)).
 *   Q4_K  256 elems, 144 B: d, dmin, scales[12], qs[128]. 8 sub-blocks of
 *         32 with 6-bit scale and min (packing below); for k = 64 c + 32 u + l:
 *         q = low (u = 0) or high (u = 1) nibble of qs[32 c + l], sub-block
 *         j = 2 c + u; v = d * scale_j * q - dmin * min_j.
 *   Q5_K  256 elems, 176 B: d, dmin, scales[12], qh[32], qs[128]. As Q4_K
 *         with a fifth bit: bit j of qh[l] adds 16 to q.
 *   Q6_K  256 elems, 210 B: ql[128], qh[64], scales[16] (int8), d. For
 *         k = 128 h + 32 s + l: q = 4 bits of ql[64 h + 32 (s & 1) + l]
 *         (low nibble for s < 2, high for s >= 2) | 2 bits at bit 2 s of
 *         qh[32 h + l] << 4; sub-block j = k / 16; v = d * scales[j] * (q - 32).
 *
 * K-quant 6-bit scale/min packing (Q4_K, Q5_K), sub-block j < 8: for j < 4,
 * scale = scales[j] & 63 and min = scales[j + 4] & 63; for j >= 4, scale =
 * (scales[j + 4] & 15) | (scales[j - 4] >> 6) << 4 and min =
 * (scales[j + 4] >> 4) | (scales[j] >> 6) << 4.
 *
 * The activation schemes ggml pairs with them (quant_act.c):
 *   Q8_0 (with Q4_0, Q5_0, Q8_0): per 32 elements d = absmax / 127 (kept as
 *        f16), q = x * (127 / absmax) rounded to nearest even.
 *   Q8_1 (with Q4_1, Q5_1): Q8_0 plus s = d * sum(q) (kept as f16).
 *   Q8_K (with the K-quants): per 256 elements d = absmax / 127 as f32,
 *        q = x * (127 / absmax) rounded to nearest even, sums of 16.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "fp16.h"
#include "gguf.h"

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256
#define K_SCALE_SIZE 12

struct block_q4_0 {
        npu_f16 d;
        uint8_t qs[QK4_0 / 2];
};
_Static_assert(sizeof(struct block_q4_0) == 18, "block_q4_0 is 18 bytes");

struct block_q4_1 {
        npu_f16 d;
        npu_f16 m;
        uint8_t qs[QK4_1 / 2];
};
_Static_assert(sizeof(struct block_q4_1) == 20, "block_q4_1 is 20 bytes");

struct block_q5_0 {
        npu_f16 d;
        uint8_t qh[4];
        uint8_t qs[QK5_0 / 2];
};
_Static_assert(sizeof(struct block_q5_0) == 22, "block_q5_0 is 22 bytes");

struct block_q5_1 {
        npu_f16 d;
        npu_f16 m;
        uint8_t qh[4];
        uint8_t qs[QK5_1 / 2];
};
_Static_assert(sizeof(struct block_q5_1) == 24, "block_q5_1 is 24 bytes");

struct block_q8_0 {
        npu_f16 d;
        int8_t qs[QK8_0];
};
_Static_assert(sizeof(struct block_q8_0) == 34, "block_q8_0 is 34 bytes");

struct block_q2_K {
        uint8_t scales[QK_K / 16];
        uint8_t qs[QK_K / 4];
        npu_f16 d;
        npu_f16 dmin;
};
_Static_assert(sizeof(struct block_q2_K) == 84, "block_q2_K is 84 bytes");

struct block_q3_K {
        uint8_t hmask[QK_K / 8];
        uint8_t qs[QK_K / 4];
        uint8_t scales[K_SCALE_SIZE];
        npu_f16 d;
};
_Static_assert(sizeof(struct block_q3_K) == 110, "block_q3_K is 110 bytes");

struct block_q4_K {
        npu_f16 d;
        npu_f16 dmin;
        uint8_t scales[K_SCALE_SIZE];
        uint8_t qs[QK_K / 2];
};
_Static_assert(sizeof(struct block_q4_K) == 144, "block_q4_K is 144 bytes");

struct block_q5_K {
        npu_f16 d;
        npu_f16 dmin;
        uint8_t scales[K_SCALE_SIZE];
        uint8_t qh[QK_K / 8];
        uint8_t qs[QK_K / 2];
};
_Static_assert(sizeof(struct block_q5_K) == 176, "block_q5_K is 176 bytes");

struct block_q6_K {
        uint8_t ql[QK_K / 2];
        uint8_t qh[QK_K / 4];
        int8_t scales[QK_K / 16];
        npu_f16 d;
};
_Static_assert(sizeof(struct block_q6_K) == 210, "block_q6_K is 210 bytes");

/* How a weight type's activations are quantized (see above). */
enum act_scheme {
        ACT_SCHEME_NONE = -1,  /* float activations (F32/F16/BF16 weights) */
        ACT_SCHEME_Q8_0 = 0,
        ACT_SCHEME_Q8_1 = 1,
        ACT_SCHEME_Q8_K = 2,
        ACT_SCHEME_TOKEN_I8 = 3, /* w4a8: one int8 scale per token (quant.h's), read as Q8_0 blocks with d = 1 */
        _ACT_SCHEME_MAX,
};

/* True for the block-quantized weight types the quantized kernels run. */
bool quant_type_supported(enum ggml_type t);
/* The activation scheme llama.cpp pairs with t; ACT_SCHEME_NONE for others. */
enum act_scheme quant_type_act_scheme(enum ggml_type t);
const char *act_scheme_name(enum act_scheme s);

/* The K-quants' 6-bit scale and min of sub-block j < 8 (Q4_K, Q5_K). */
static inline void k_scale_min(const uint8_t *scales, int j, uint8_t *sc, uint8_t *m)
{
        if (j < 4) {
                *sc = scales[j] & 63;
                *m = scales[j + 4] & 63;
        } else {
                *sc = (uint8_t)((scales[j + 4] & 15) | ((scales[j - 4] >> 6) << 4));
                *m = (uint8_t)((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
        }
}

/* Q3_K's 6-bit scale of sub-block j < 16, minus 32. */
static inline int q3_k_scale(const uint8_t *scales, int j)
{
        int lo = j < 8 ? scales[j] & 15 : scales[j - 8] >> 4;
        int hi = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
        return (lo | hi << 4) - 32;
}

/* Dequantize n elements (a multiple of t's block) of blocks of type t into f32. */
void dequantize_row(enum ggml_type t, const void *blocks, float *out, int64_t n);

/*
 * Every float field of the blocks of one row (d, dmin, m) is finite; else
 * -EBADMSG naming the block. A NaN or infinite scale is a corrupt tensor.
 */
int quant_row_check(enum ggml_type t, const void *blocks, int64_t n, int64_t *ret_bad_block);
