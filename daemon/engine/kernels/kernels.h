/* SPDX-License-Identifier: MIT */
/*
 * Compute kernels. Every SIMD kernel has a portable C twin; the choice is
 * made once, at start-up (NPU_KERNELS=scalar|avx2|avx512vnni|amx forces one).
 * AVX-512 VNNI implies AVX2: it changes only the int8 kernels, which use
 * vpdpbusd/vpdpwssd where AVX2 takes two instructions. AMX implies AVX-512
 * VNNI: it changes only the w8a8 GEMM of 16 tokens or more, which runs on
 * AMX-INT8 tiles (gemm_int8_amx.c).
 *
 * Matrix kernels are batch-invariant: each output y[t][r] is reduced in the
 * same order whether one token or many are computed together, so a sequence
 * gives the same results alone and batched.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "model.h"

enum kernel_isa {
        KERNEL_ISA_SCALAR = 0,
        KERNEL_ISA_AVX2 = 1,
        KERNEL_ISA_AVX512_VNNI = 2,
        KERNEL_ISA_AMX = 3,
};
#define KERNEL_ISA_COUNT (KERNEL_ISA_AMX + 1)

void kernels_init(void);
enum kernel_isa kernels_isa(void);
const char *kernels_isa_name(enum kernel_isa isa);
/* Tests use this to run every path; returns -EOPNOTSUPP when the cpu lacks it. */
int kernels_force_isa(enum kernel_isa isa);
/* Back to the choice made at start-up. */
void kernels_reset_isa(void);

/*
 * y[t * y_stride + r] = dot(W[r], x[t * x_stride]) for r in [r0, r1), t < n_tok.
 * W is a float weight (F32, F16 or BF16).
 */
void matmul_float_rows(const struct npu_weight *w, const float *x, int64_t n_tok, size_t x_stride,
                       float *y, size_t y_stride, int64_t r0, int64_t r1);

/*
 * element-wise operations (ops.c); RMSNorm, RoPE and SiLU follow the
 * device's definitions and live with the cpu back end (backend.h)
 */
void softmax_inplace(float *x, int64_t n);
void vec_add(float *y, const float *x, int64_t n);
float vec_dot_f32(const float *a, const float *b, int64_t n);

/* f32 . f16 dot product and y += a * x(f16), for attention over an f16 KV cache */
float vec_dot_f32_f16(const float *a, const uint16_t *b, int64_t n);
void vec_mad_f16(float *y, const uint16_t *x, float a, int64_t n);
void vec_mad_f32(float *y, const float *x, float a, int64_t n);
/* y = x rounded to the nearest f16 (ties to even) and back: bit-identical in C and AVX2 (F16C) */
void vec_round_f16(float *y, const float *x, int64_t n);
void vec_scale(float *y, float a, int64_t n);

/*
 * Attention over n consecutive cache rows (row p at base + p * stride elements):
 * scores[p] = scale * dot(q, K[p]); out += sum_p w[p] * V[p]. f16 or f32 rows.
 */
void attn_scores_f16(const float *q, const uint16_t *k, size_t stride, int32_t n, int32_t hd, float scale,
                     float *scores);
void attn_scores_f32(const float *q, const float *k, size_t stride, int32_t n, int32_t hd, float scale,
                     float *scores);
void attn_accum_f16(float *out, const uint16_t *v, size_t stride, const float *w, int32_t n, int32_t hd);
void attn_accum_f32(float *out, const float *v, size_t stride, const float *w, int32_t n, int32_t hd);

/*
 * The same over every query head of n consecutive cache rows: query head h
 * (q + h * hd) reads its K/V head h / group at (h / group) * hd within a row;
 * scores and weights of head h are at h * ld. Each score and each output
 * lane is bit-identical to what attn_scores_* / attn_accum_* compute for
 * that head (the same sums in the same order; test-attention checks it);
 * only the walk differs: row by row, the heads' part of a row in address
 * order, with the next rows prefetched.
 */
void attn_scores_rows_f16(const float *q, const uint16_t *k, size_t stride, int32_t n, int32_t n_heads, int32_t group,
                          int32_t hd, float scale, float *scores, size_t ld);
void attn_scores_rows_f32(const float *q, const float *k, size_t stride, int32_t n, int32_t n_heads, int32_t group,
                          int32_t hd, float scale, float *scores, size_t ld);
void attn_accum_rows_f16(float *out, const uint16_t *v, size_t stride, const float *w, size_t ld, int32_t n,
                         int32_t n_heads, int32_t group, int32_t hd);
void attn_accum_rows_f32(float *out, const float *v, size_t stride, const float *w, size_t ld, int32_t n,
                         int32_t n_heads, int32_t group, int32_t hd);
/*
 * attn_*_rows_f16 for nq queries over the same rows at once (a prompt's
 * tokens): query i's heads are at q + i * q_stride (its output at
 * out + i * o_stride), it takes rows [0, rows[i]) (none if rows[i] <= 0),
 * its head h's scores or weights are at i * s_stride + h * ld[i]. Each
 * K/V vector is converted once for every query; each query's results are
 * bit-identical to attn_*_rows_f16 over its own rows (test-attention).
 */
void attn_scores_rows_f16_multi(const float *q, size_t q_stride, int32_t nq, const int32_t *rows, const uint16_t *k,
                                size_t stride, int32_t n_heads, int32_t group, int32_t hd, float scale, float *scores,
                                size_t s_stride, const size_t *ld);
void attn_accum_rows_f16_multi(float *out, size_t o_stride, int32_t nq, const int32_t *rows, const uint16_t *v,
                               size_t stride, const float *w, size_t w_stride, const size_t *ld, int32_t n_heads,
                               int32_t group, int32_t hd);
/*
 * The same over int8 rows (the q8 KV cache, kv_cache.h): element e of the
 * head at k in row p is ks[p * sstride] * k[p * stride + e], the row's
 * per-head scale times the byte (ks points at the head's scale in row 0;
 * for the _rows_ kernels, at the first head's, with head h / group's at
 * ks[p * sstride + h / group]). Key bytes are in [-127, 127]. The query
 * is int8 too, a head's hd bytes q times its scale qs
 * (attn_quantize_query: the cache's own rule), with the sum of its bytes
 * qsum (attn_query_sums; the VNNI kernels' correction for their unsigned
 * operand), so a score's dot product is an integer, summed exactly:
 *   score[p] = ((float)dot(q, k[p]) * (qs * ks[p])) * scale
 *   out     += (w[p] * vs[p]) * v[p]        (p ascending, one fused
 *                                            multiply-add per lane and row)
 * Scores are the same bits on every kernel path; the _rows_ kernels'
 * sums are bit-identical to the per-head ones, head by head
 * (test-attention checks both).
 */
void attn_quantize_query(const float *q, int8_t *qi, float *qs, int32_t *qsum, int32_t n_heads, int32_t hd);
/* qsum[h]: the sum of head h's hd bytes of qi */
void attn_query_sums(const int8_t *qi, int32_t *qsum, int32_t n_heads, int32_t hd);
void attn_scores_q8(const int8_t *q, float qs, int32_t qsum, const int8_t *k, const float *ks, size_t stride,
                    size_t sstride, int32_t n, int32_t hd, float scale, float *scores);
void attn_accum_q8(float *out, const int8_t *v, const float *vs, size_t stride, size_t sstride, const float *w,
                   int32_t n, int32_t hd);
/* qs, qsum: one scale and one byte sum per query head */
void attn_scores_rows_q8(const int8_t *q, const float *qs, const int32_t *qsum, const int8_t *k, const float *ks, size_t stride,
                         size_t sstride, int32_t n, int32_t n_heads, int32_t group, int32_t hd, float scale,
                         float *scores, size_t ld);
void attn_accum_rows_q8(float *out, const int8_t *v, const float *vs, size_t stride, size_t sstride, const float *w,
                        size_t ld, int32_t n, int32_t n_heads, int32_t group, int32_t hd);

/* m = max x[i < n]; x[i] = exp(x[i] - m); returns their sum (one fixed order per kernel path) and m in *max */
float attn_exp_sum(float *x, int32_t n, float *max);
