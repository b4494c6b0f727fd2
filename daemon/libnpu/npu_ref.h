/* SPDX-License-Identifier: MIT */
/*
 * npu_ref: scalar reference of every npu op, the ground truth for the
 * kernel engine (which compiles this same file) and the daemon's cpu kernels.
 *
 * Plain C, no SIMD, no libm: the math helpers below are part of the
 * definition, so the kernel and userspace builds produce identical floats
 * (compile with -ffp-contract=off and SSE2 scalar math, never -ffast-math).
 *
 * Conventions: matrices are row major and tightly packed. W is [N x K] int8,
 * one row per output channel; A is [M x K], one row per token. Every
 * function works on a sub range (rows [m0, m1), columns [n0, n1)) of the
 * full problem so callers can split the work; pointers are always the start
 * of the full operands.
 *
 * Semantics:
 * - GEMM W8A8: acc[m][n] = sum_k (int32)A[m][k] * (int32)W[n][k], exact in
 *   int32 (K <= 65536 keeps it in range); out = ((float)acc * a_scale[m]) *
 *   w_scale[n], two f32 multiplies in that order. The _i32 variant stores acc.
 * - GEMM W8A16: A int16; acc exact in int64; (float)acc rounds to nearest;
 *   then as W8A8.
 * - RMSNORM: ss = sum_i (double)x[i]^2 in double, in index order;
 *   inv = (float)(1.0 / npu_ref_sqrt(ss / D + (double)eps));
 *   out[i] = (x[i] * inv) * weight[i] in f32.
 * - ROPE (llama.cpp "normal" mode, adjacent pairs): for pair i of each head,
 *   theta = (double)pos * npu_ref_exp(-(2.0 * i / head_dim) *
 *   npu_ref_log(base)); c = (float)cos(theta), s = (float)sin(theta) from
 *   npu_ref_sincos; out[2i] = x[2i]*c - x[2i+1]*s; out[2i+1] = x[2i]*s +
 *   x[2i+1]*c in f32. out may alias x.
 * - SILU_MUL: e = npu_ref_expf(-g); out = (g / (1.0f + e)) * up, all in f32.
 * - ADD: out = a + b in f32.
 * - QUANT_I8 (per token row): absmax = max |x| (NaN ignored); scale =
 *   absmax / 127.0f, or 1.0f when absmax is 0; v = x / scale (f32 division),
 *   clamped to [-127, 127] (NaN -> 0), then rounded half away from zero.
 *   QUANT_I16 is the same with 32767.
 * - ATTENTION: for query row m and head h, kv head = h / (n_heads /
 *   n_kv_heads); for p = 0 ... pos[m]: s[p] = (sum_d q[d] * k[p][d], f32 in
 *   index order) * scale; mx = max s; e[p] = (float)npu_ref_exp((double)(s[p]
 *   - mx)); sum = sum_p e[p] (f32, in order); out[d] = (sum_p e[p] *
 *   v[p][d], f32, in order) / sum. f16 caches are converted exactly.
 *   With block_size != 0, position p lives in physical row
 *   table[p / block_size] * block_size + p % block_size.
 * - CVT_F32_F16: IEEE round to nearest even, overflow to inf, NaN kept.
 */
#ifndef NPU_REF_H
#define NPU_REF_H

#ifdef __KERNEL__
#include <linux/types.h>
#else
#include <stddef.h>
#include <stdint.h>
#endif

double npu_ref_exp(double x);
/*
 * e^x in f32, with a few ulp of error, in f32 operations only (each one
 * correctly rounded, none fused), so SIMD code doing the same steps gets
 * the same bits: NaN stays NaN; x > NPU_REF_EXPF_MAX gives inf and
 * x < NPU_REF_EXPF_MIN gives 0; else t = x * 1.44269504f rounded half away
 * from zero (an integer in [-126, 127]), r = (x - t * 0.693359375f) -
 * t * -2.12194440e-4f, p = 1/5040 then p = p * r + c for c = 1/720, 1/120,
 * 1/24, 1/6, 0.5, 1, 1 (each 1/k! as the nearest f32), and the result is
 * p * 2^t.
 */
#define NPU_REF_EXPF_MAX 88.0f
#define NPU_REF_EXPF_MIN -87.0f
float npu_ref_expf(float x);
double npu_ref_log(double x);
double npu_ref_sqrt(double x);
void npu_ref_sincos(double x, double *s, double *c);
float npu_ref_f16_to_f32(uint16_t h);
uint16_t npu_ref_f32_to_f16(float f);

void npu_ref_gemm_w8a8_i32(const int8_t *a, const int8_t *w, int32_t *out,
			   uint32_t n, uint32_t k, uint32_t m0, uint32_t m1,
			   uint32_t n0, uint32_t n1);
void npu_ref_gemm_w8a8(const int8_t *a, const int8_t *w, const float *a_scale,
		       const float *w_scale, float *out, uint32_t n, uint32_t k,
		       uint32_t m0, uint32_t m1, uint32_t n0, uint32_t n1);
void npu_ref_gemm_w8a16(const int16_t *a, const int8_t *w,
			const float *a_scale, const float *w_scale, float *out,
			uint32_t n, uint32_t k, uint32_t m0, uint32_t m1,
			uint32_t n0, uint32_t n1);
void npu_ref_rmsnorm(const float *x, const float *weight, float *out,
		     uint32_t d, float eps, uint32_t m0, uint32_t m1);
void npu_ref_rope(const float *x, const int32_t *pos, float *out,
		  uint32_t n_heads, uint32_t head_dim, float base,
		  uint32_t m0, uint32_t m1);
/* The same, with the float parameter as its IEEE bit pattern (for callers
 * such as the kernel that may not pass floats in registers). */
void npu_ref_rmsnorm_bits(const float *x, const float *weight, float *out,
			  uint32_t d, uint32_t eps_bits, uint32_t m0, uint32_t m1);
void npu_ref_rope_bits(const float *x, const int32_t *pos, float *out,
		       uint32_t n_heads, uint32_t head_dim, uint32_t base_bits,
		       uint32_t m0, uint32_t m1);
void npu_ref_silu_mul(const float *gate, const float *up, float *out,
		      size_t i0, size_t i1);
void npu_ref_add(const float *a, const float *b, float *out,
		 size_t i0, size_t i1);
void npu_ref_quant_i8(const float *x, int8_t *q, float *scale, uint32_t k,
		      uint32_t m0, uint32_t m1);
void npu_ref_quant_i16(const float *x, int16_t *q, float *scale, uint32_t k,
		       uint32_t m0, uint32_t m1);
void npu_ref_cvt_f32_f16(const float *src, uint16_t *dst, size_t i0, size_t i1);

/**
 * struct npu_ref_attn - operands of one attention op
 * (see NPU_OP_ATTENTION in uapi/drm/npu_accel.h)
 */
struct npu_ref_attn {
	const float *q;
	const void *k;
	const void *v;
	const int32_t *pos;
	const int32_t *block_table;	/* NULL when block_size == 0 */
	float *out;
	uint32_t n_heads;
	uint32_t n_kv_heads;
	uint32_t head_dim;
	uint32_t n_ctx;
	uint32_t block_size;
	uint32_t n_blocks;
	int kv_f16;
	float scale;			/* 0: 1/sqrt(head_dim) */
};

/*
 * One (row m, head h) of attention. scratch holds n_ctx floats.
 * Returns 0, or -1 (nothing written) when pos[m] is outside [0, n_ctx) or a
 * block table entry it needs is outside [0, n_blocks).
 */
int npu_ref_attention(const struct npu_ref_attn *p, uint32_t m, uint32_t h,
		      float *scratch);

/*
 * The same in steps, for callers that bound the work of one call (the
 * kernel engine, between FPU sections): npu_ref_attn_begin() (validates,
 * clears the output; -1 as above), then npu_ref_attn_scores() over
 * consecutive ranges covering [0, r->n), then npu_ref_attn_exp() over the
 * same, then npu_ref_attn_values() over the same, then npu_ref_attn_end().
 * The float operations and their order are npu_ref_attention()'s.
 */
struct npu_ref_attn_row {
	const float *q;
	float *out;
	uint32_t kvh;
	uint32_t n;		/* positions attended: pos[m] + 1 */
	float scale;
	float mx;		/* running maximum of the scores */
	float sum;		/* running sum of the exponentials */
};

int npu_ref_attn_begin(const struct npu_ref_attn *p, uint32_t m, uint32_t h,
		       struct npu_ref_attn_row *r);
void npu_ref_attn_scores(const struct npu_ref_attn *p, struct npu_ref_attn_row *r,
			 uint32_t t0, uint32_t t1, float *scratch);
void npu_ref_attn_exp(struct npu_ref_attn_row *r, uint32_t t0, uint32_t t1,
		      float *scratch);
void npu_ref_attn_values(const struct npu_ref_attn *p,
			 const struct npu_ref_attn_row *r, uint32_t t0,
			 uint32_t t1, const float *scratch);
void npu_ref_attn_end(const struct npu_ref_attn *p,
		      const struct npu_ref_attn_row *r);

#endif /* NPU_REF_H */
