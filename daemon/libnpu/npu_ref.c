// SPDX-License-Identifier: MIT
/*
 * Scalar reference of the npu ops; see npu_ref.h for the exact semantics.
 * This file is also compiled into npu.ko, so it uses no libc or libm.
 */
#include "npu_ref.h"

union npu_ref_dbits {
	double d;
	uint64_t u;
};

union npu_ref_fbits {
	float f;
	uint32_t u;
};

#define NPU_REF_LN2_HI 6.93147180369123816490e-01
#define NPU_REF_LN2_LO 1.90821492927058770002e-10
#define NPU_REF_INV_LN2 1.44269504088896338700e+00
#define NPU_REF_PIO2_1 1.57079632673412561417e+00
#define NPU_REF_PIO2_2 6.07710050650619224932e-11
#define NPU_REF_PIO2_3 2.02226624879595063154e-21
#define NPU_REF_2_PI 6.36619772367581382433e-01
/* ln 2 in two f32 parts, the first with 9 significant bits (k * it is exact) */
#define NPU_REF_LN2_HI_F 0.693359375f
#define NPU_REF_LN2_LO_F -2.12194440e-4f
#define NPU_REF_INV_LN2_F 1.44269504f
/* 1 / k!, rounded to f32 once, at compile time */
#define NPU_REF_EXPF_C3 ((float)(1.0 / 6))
#define NPU_REF_EXPF_C4 ((float)(1.0 / 24))
#define NPU_REF_EXPF_C5 ((float)(1.0 / 120))
#define NPU_REF_EXPF_C6 ((float)(1.0 / 720))
#define NPU_REF_EXPF_C7 ((float)(1.0 / 5040))

static double npu_ref_round(double x)
{
	/* nearest integer, halves away from zero, |x| < 2^52 */
	int64_t i = (int64_t)x;
	double f = x - (double)i;

	if (f >= 0.5)
		i++;
	else if (f <= -0.5)
		i--;
	return (double)i;
}

double npu_ref_sqrt(double x)
{
#if defined(__x86_64__) || defined(__i386__)
	double r;

	__asm__("sqrtsd %1, %0" : "=x"(r) : "x"(x));
	return r;
#else
	return __builtin_sqrt(x);
#endif
}

double npu_ref_exp(double x)
{
	union npu_ref_dbits b;
	double k, r, p;
	int i;

	if (x != x)
		return x;
	if (x > 709.0) {
		b.u = 0x7ff0000000000000ull;
		return b.d;
	}
	if (x < -745.0)
		return 0.0;
	k = npu_ref_round(x * NPU_REF_INV_LN2);
	r = (x - k * NPU_REF_LN2_HI) - k * NPU_REF_LN2_LO;
	/* |r| <= 0.35: Taylor series to degree 13 */
	p = 1.0;
	for (i = 13; i >= 1; i--)
		p = 1.0 + p * r / i;
	/* scale by 2^k in two steps so subnormal results work */
	i = (int)k;
	if (i < -1000) {
		b.u = (uint64_t)(1023 - 1000) << 52;
		p *= b.d;
		i += 1000;
	} else if (i > 1000) {
		b.u = (uint64_t)(1023 + 1000) << 52;
		p *= b.d;
		i -= 1000;
	}
	b.u = (uint64_t)(1023 + i) << 52;
	return p * b.d;
}

double npu_ref_log(double x)
{
	union npu_ref_dbits b;
	double m, s, s2, t, sum;
	int e, i;

	if (x != x || x < 0.0)
		return 0.0 / 0.0;
	if (x == 0.0)
		return -1.0 / 0.0;
	b.d = x;
	if ((b.u >> 52) == 0x7ff)
		return x;
	if ((b.u >> 52) == 0) {		/* subnormal */
		b.d = x * 18014398509481984.0;	/* 2^54 */
		e = -54;
	} else {
		e = 0;
	}
	e += (int)(b.u >> 52) - 1023;
	b.u = (b.u & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
	m = b.d;			/* [1, 2) */
	if (m > 1.4142135623730951) {
		m *= 0.5;
		e++;
	}
	s = (m - 1.0) / (m + 1.0);	/* |s| < 0.172 */
	s2 = s * s;
	t = s;
	sum = 0.0;
	for (i = 1; i <= 27; i += 2) {
		sum += t / i;
		t *= s2;
	}
	return e * NPU_REF_LN2_HI + (2.0 * sum + e * NPU_REF_LN2_LO);
}

void npu_ref_sincos(double x, double *s, double *c)
{
	double n, r, r2, ts, tc, sn, cs;
	int64_t q;
	int i;

	if (x != x || x > 1e15 || x < -1e15) {
		*s = 0.0 / 0.0;
		*c = 0.0 / 0.0;
		return;
	}
	n = npu_ref_round(x * NPU_REF_2_PI);
	r = ((x - n * NPU_REF_PIO2_1) - n * NPU_REF_PIO2_2) - n * NPU_REF_PIO2_3;
	q = (int64_t)n;
	r2 = r * r;
	/* |r| <= pi/4: Taylor series */
	ts = 1.0;
	tc = 1.0;
	for (i = 22; i >= 2; i -= 2) {
		ts = 1.0 - ts * r2 / ((double)i * (i + 1));
		tc = 1.0 - tc * r2 / ((double)(i - 1) * i);
	}
	sn = r * ts;
	cs = tc;
	switch (q & 3) {
	case 0:
		*s = sn;
		*c = cs;
		break;
	case 1:
		*s = cs;
		*c = -sn;
		break;
	case 2:
		*s = -sn;
		*c = -cs;
		break;
	default:
		*s = -cs;
		*c = sn;
		break;
	}
}

float npu_ref_f16_to_f32(uint16_t h)
{
	union npu_ref_fbits b;
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f;
	uint32_t man = h & 0x3ff;

	if (exp == 0x1f) {
		b.u = sign | 0x7f800000u | (man << 13);
	} else if (exp != 0) {
		b.u = sign | ((exp + 112) << 23) | (man << 13);
	} else if (man == 0) {
		b.u = sign;
	} else {
		/* subnormal: normalize */
		exp = 113;
		while (!(man & 0x400)) {
			man <<= 1;
			exp--;
		}
		b.u = sign | (exp << 23) | ((man & 0x3ff) << 13);
	}
	return b.f;
}

uint16_t npu_ref_f32_to_f16(float f)
{
	union npu_ref_fbits b;
	uint32_t sign, exp, man, res, rest, half;
	int e, shift;

	b.f = f;
	sign = (b.u >> 16) & 0x8000;
	exp = (b.u >> 23) & 0xff;
	man = b.u & 0x7fffff;
	if (exp == 0xff)
		return (uint16_t)(sign | 0x7c00 | (man ? 0x200 | (man >> 13) : 0));
	e = (int)exp - 127 + 15;
	if (e >= 31)
		return (uint16_t)(sign | 0x7c00);
	if (e <= 0) {
		/* subnormal or zero in f16 */
		if (e < -10)
			return (uint16_t)sign;
		man |= 0x800000;
		shift = 14 - e;
		res = man >> shift;
		rest = man & ((1u << shift) - 1);
		half = 1u << (shift - 1);
		if (rest > half || (rest == half && (res & 1)))
			res++;
		return (uint16_t)(sign | res);
	}
	res = ((uint32_t)e << 10) | (man >> 13);
	rest = man & 0x1fff;
	if (rest > 0x1000 || (rest == 0x1000 && (res & 1)))
		res++;			/* may carry into the exponent: fine */
	return (uint16_t)(sign | res);
}

/* The exact int32 dot product of two int8 rows of k elements. */
static int32_t dot_i8(const int8_t *a, const int8_t *b, uint32_t k)
{
	int32_t acc = 0;
	uint32_t i;

	for (i = 0; i < k; i++)
		acc += (int32_t)a[i] * (int32_t)b[i];
	return acc;
}

void npu_ref_gemm_w8a8_i32(const int8_t *a, const int8_t *w, int32_t *out,
			   uint32_t n, uint32_t k, uint32_t m0, uint32_t m1,
			   uint32_t n0, uint32_t n1)
{
	uint32_t m, j;

	for (m = m0; m < m1; m++)
		for (j = n0; j < n1; j++)
			out[(size_t)m * n + j] = dot_i8(a + (size_t)m * k,
							w + (size_t)j * k, k);
}

void npu_ref_gemm_w8a8(const int8_t *a, const int8_t *w, const float *a_scale,
		       const float *w_scale, float *out, uint32_t n, uint32_t k,
		       uint32_t m0, uint32_t m1, uint32_t n0, uint32_t n1)
{
	uint32_t m, j;

	for (m = m0; m < m1; m++)
		for (j = n0; j < n1; j++) {
			int32_t acc = dot_i8(a + (size_t)m * k,
					     w + (size_t)j * k, k);

			out[(size_t)m * n + j] = ((float)acc * a_scale[m]) * w_scale[j];
		}
}

void npu_ref_gemm_w8a16(const int16_t *a, const int8_t *w,
			const float *a_scale, const float *w_scale, float *out,
			uint32_t n, uint32_t k, uint32_t m0, uint32_t m1,
			uint32_t n0, uint32_t n1)
{
	uint32_t m, j, i;

	for (m = m0; m < m1; m++) {
		const int16_t *ar = a + (size_t)m * k;

		for (j = n0; j < n1; j++) {
			const int8_t *wr = w + (size_t)j * k;
			int64_t acc = 0;

			for (i = 0; i < k; i++)
				acc += (int64_t)((int32_t)ar[i] * (int32_t)wr[i]);
			out[(size_t)m * n + j] = ((float)acc * a_scale[m]) * w_scale[j];
		}
	}
}

void npu_ref_rmsnorm(const float *x, const float *weight, float *out,
		     uint32_t d, float eps, uint32_t m0, uint32_t m1)
{
	uint32_t m, i;

	for (m = m0; m < m1; m++) {
		const float *xr = x + (size_t)m * d;
		float *o = out + (size_t)m * d;
		double ss = 0.0;
		float inv;

		for (i = 0; i < d; i++)
			ss += (double)xr[i] * (double)xr[i];
		inv = (float)(1.0 / npu_ref_sqrt(ss / d + (double)eps));
		for (i = 0; i < d; i++)
			o[i] = (xr[i] * inv) * weight[i];
	}
}

void npu_ref_rope(const float *x, const int32_t *pos, float *out,
		  uint32_t n_heads, uint32_t head_dim, float base,
		  uint32_t m0, uint32_t m1)
{
	double lb = npu_ref_log((double)base);
	uint32_t m, h, i;

	for (m = m0; m < m1; m++) {
		for (i = 0; i < head_dim / 2; i++) {
			double theta = (double)pos[m] *
				npu_ref_exp(-(2.0 * i / head_dim) * lb);
			double sd, cd;
			float s, c;

			npu_ref_sincos(theta, &sd, &cd);
			s = (float)sd;
			c = (float)cd;
			for (h = 0; h < n_heads; h++) {
				size_t o = ((size_t)m * n_heads + h) * head_dim + 2 * i;
				float x0 = x[o], x1 = x[o + 1];

				out[o] = x0 * c - x1 * s;
				out[o + 1] = x0 * s + x1 * c;
			}
		}
	}
}

static float npu_ref_bits_f32(uint32_t bits)
{
	union npu_ref_fbits b;

	b.u = bits;
	return b.f;
}

void npu_ref_rmsnorm_bits(const float *x, const float *weight, float *out,
			  uint32_t d, uint32_t eps_bits, uint32_t m0, uint32_t m1)
{
	npu_ref_rmsnorm(x, weight, out, d, npu_ref_bits_f32(eps_bits), m0, m1);
}

void npu_ref_rope_bits(const float *x, const int32_t *pos, float *out,
		       uint32_t n_heads, uint32_t head_dim, uint32_t base_bits,
		       uint32_t m0, uint32_t m1)
{
	npu_ref_rope(x, pos, out, n_heads, head_dim, npu_ref_bits_f32(base_bits),
		     m0, m1);
}

float npu_ref_expf(float x)
{
	union npu_ref_fbits b;
	float v, t, f, r, p;

	if (x != x)
		return x;
	if (x > NPU_REF_EXPF_MAX) {
		b.u = 0x7f800000u;
		return b.f;
	}
	if (x < NPU_REF_EXPF_MIN)
		return 0.0f;
	/* k = x / ln 2 rounded half away from zero, in [-126, 127] */
	v = x * NPU_REF_INV_LN2_F;
	t = (float)(int32_t)v;
	f = v - t;
	if (f >= 0.5f)
		t += 1.0f;
	else if (f <= -0.5f)
		t -= 1.0f;
	r = (x - t * NPU_REF_LN2_HI_F) - t * NPU_REF_LN2_LO_F;
	p = NPU_REF_EXPF_C7;
	p = p * r + NPU_REF_EXPF_C6;
	p = p * r + NPU_REF_EXPF_C5;
	p = p * r + NPU_REF_EXPF_C4;
	p = p * r + NPU_REF_EXPF_C3;
	p = p * r + 0.5f;
	p = p * r + 1.0f;
	p = p * r + 1.0f;
	b.u = (uint32_t)(127 + (int32_t)t) << 23;
	return p * b.f;
}

void npu_ref_silu_mul(const float *gate, const float *up, float *out,
		      size_t i0, size_t i1)
{
	size_t i;

	for (i = i0; i < i1; i++) {
		float g = gate[i];
		float e = npu_ref_expf(-g);

		out[i] = (g / (1.0f + e)) * up[i];
	}
}

void npu_ref_add(const float *a, const float *b, float *out,
		 size_t i0, size_t i1)
{
	size_t i;

	for (i = i0; i < i1; i++)
		out[i] = a[i] + b[i];
}

static float npu_ref_row_scale(const float *x, uint32_t k, float qmax)
{
	float amax = 0.0f;
	uint32_t i;

	for (i = 0; i < k; i++) {
		float v = x[i] < 0.0f ? -x[i] : x[i];

		if (v > amax)
			amax = v;
	}
	return amax == 0.0f ? 1.0f : amax / qmax;
}

static int32_t npu_ref_quant_one(float x, float scale, float qmax)
{
	float v = x / scale, d;
	int32_t t;

	if (v != v)
		return 0;
	if (v > qmax)
		v = qmax;
	if (v < -qmax)
		v = -qmax;
	t = (int32_t)v;
	d = v - (float)t;
	if (d >= 0.5f)
		t++;
	else if (d <= -0.5f)
		t--;
	return t;
}

void npu_ref_quant_i8(const float *x, int8_t *q, float *scale, uint32_t k,
		      uint32_t m0, uint32_t m1)
{
	uint32_t m, i;

	for (m = m0; m < m1; m++) {
		const float *xr = x + (size_t)m * k;
		float s = npu_ref_row_scale(xr, k, 127.0f);

		scale[m] = s;
		for (i = 0; i < k; i++)
			q[(size_t)m * k + i] = (int8_t)npu_ref_quant_one(xr[i], s, 127.0f);
	}
}

void npu_ref_quant_i16(const float *x, int16_t *q, float *scale, uint32_t k,
		       uint32_t m0, uint32_t m1)
{
	uint32_t m, i;

	for (m = m0; m < m1; m++) {
		const float *xr = x + (size_t)m * k;
		float s = npu_ref_row_scale(xr, k, 32767.0f);

		scale[m] = s;
		for (i = 0; i < k; i++)
			q[(size_t)m * k + i] = (int16_t)npu_ref_quant_one(xr[i], s, 32767.0f);
	}
}

void npu_ref_cvt_f32_f16(const float *src, uint16_t *dst, size_t i0, size_t i1)
{
	size_t i;

	for (i = i0; i < i1; i++)
		dst[i] = npu_ref_f32_to_f16(src[i]);
}

static float npu_ref_kv(const struct npu_ref_attn *p, const void *base,
			size_t row, uint32_t kvh, uint32_t d)
{
	size_t idx = (row * p->n_kv_heads + kvh) * p->head_dim + d;

	if (p->kv_f16)
		return npu_ref_f16_to_f32(((const uint16_t *)base)[idx]);
	return ((const float *)base)[idx];
}

int npu_ref_attn_begin(const struct npu_ref_attn *p, uint32_t m, uint32_t h,
			struct npu_ref_attn_row *r)
{
	int32_t last = p->pos[m];
	uint32_t t, d;

	if (last < 0 || (uint32_t)last >= p->n_ctx)
		return -1;
	if (p->block_size) {
		for (t = 0; t <= (uint32_t)last / p->block_size; t++)
			if (p->block_table[t] < 0 ||
			    (uint32_t)p->block_table[t] >= p->n_blocks)
				return -1;
	}
	r->kvh = h / (p->n_heads / p->n_kv_heads);
	r->q = p->q + ((size_t)m * p->n_heads + h) * p->head_dim;
	r->out = p->out + ((size_t)m * p->n_heads + h) * p->head_dim;
	r->n = (uint32_t)last + 1;
	r->scale = p->scale;
	if (r->scale == 0.0f)
		r->scale = (float)(1.0 / npu_ref_sqrt((double)p->head_dim));
	r->mx = 0.0f;
	r->sum = 0.0f;
	for (d = 0; d < p->head_dim; d++)
		r->out[d] = 0.0f;
	return 0;
}

static size_t npu_ref_attn_row_of(const struct npu_ref_attn *p, uint32_t t)
{
	if (!p->block_size)
		return t;
	return (size_t)p->block_table[t / p->block_size] * p->block_size +
		t % p->block_size;
}

void npu_ref_attn_scores(const struct npu_ref_attn *p, struct npu_ref_attn_row *r,
			 uint32_t t0, uint32_t t1, float *scratch)
{
	uint32_t t, d;

	for (t = t0; t < t1; t++) {
		size_t row = npu_ref_attn_row_of(p, t);
		float s = 0.0f;

		for (d = 0; d < p->head_dim; d++)
			s += r->q[d] * npu_ref_kv(p, p->k, row, r->kvh, d);
		s *= r->scale;
		scratch[t] = s;
		if (t == 0 || s > r->mx)
			r->mx = s;
	}
}

void npu_ref_attn_exp(struct npu_ref_attn_row *r, uint32_t t0, uint32_t t1,
		      float *scratch)
{
	uint32_t t;

	for (t = t0; t < t1; t++) {
		scratch[t] = (float)npu_ref_exp((double)(scratch[t] - r->mx));
		r->sum += scratch[t];
	}
}

void npu_ref_attn_values(const struct npu_ref_attn *p,
			 const struct npu_ref_attn_row *r, uint32_t t0,
			 uint32_t t1, const float *scratch)
{
	uint32_t t, d;

	for (t = t0; t < t1; t++) {
		size_t row = npu_ref_attn_row_of(p, t);

		for (d = 0; d < p->head_dim; d++)
			r->out[d] += scratch[t] * npu_ref_kv(p, p->v, row, r->kvh, d);
	}
}

void npu_ref_attn_end(const struct npu_ref_attn *p,
		      const struct npu_ref_attn_row *r)
{
	uint32_t d;

	for (d = 0; d < p->head_dim; d++)
		r->out[d] = r->out[d] / r->sum;
}

int npu_ref_attention(const struct npu_ref_attn *p, uint32_t m, uint32_t h,
		      float *scratch)
{
	struct npu_ref_attn_row r;

	if (npu_ref_attn_begin(p, m, h, &r))
		return -1;
	npu_ref_attn_scores(p, &r, 0, r.n, scratch);
	npu_ref_attn_exp(&r, 0, r.n, scratch);
	npu_ref_attn_values(p, &r, 0, r.n, scratch);
	npu_ref_attn_end(p, &r);
	return 0;
}
