// SPDX-License-Identifier: MIT
/*
 * ref_test: host checks of daemon/libnpu/npu_ref, the ground truth that
 * the kernel engine and the daemon's cpu kernels are compared against, and
 * of the ERT header layout against XRT's xrt/ert.h.
 * Prints "PASS <name>" or "FAIL <name>: <why>" per test.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xrt/ert.h>

#include "npu.h"
#include "npu_ref.h"

static int nfail;

static void result(const char *name, int ok, const char *why)
{
	if (ok) {
		printf("PASS ref-%s\n", name);
	} else {
		printf("FAIL ref-%s: %s\n", name, why);
		nfail++;
	}
}

static void test_math(void)
{
	double x, e = 0, l = 0, t = 0;

	for (x = -700; x < 700; x += 0.0137) {
		double r = fabs(npu_ref_exp(x) - exp(x)) / exp(x);

		e = r > e ? r : e;
	}
	for (x = 1e-300; x < 1e300; x *= 1.37) {
		double r = fabs(npu_ref_log(x) - log(x));

		if (fabs(log(x)) > 1e-3)
			r /= fabs(log(x));
		l = r > l ? r : l;
	}
	for (x = -70000; x < 70000; x += 0.731) {
		double s, c;

		npu_ref_sincos(x, &s, &c);
		t = fabs(s - sin(x)) > t ? fabs(s - sin(x)) : t;
		t = fabs(c - cos(x)) > t ? fabs(c - cos(x)) : t;
	}
	result("exp", e < 1e-15, "exp error");
	result("log", l < 1e-15, "log error");
	result("sincos", t < 1e-12, "sincos error");
	result("sqrt", npu_ref_sqrt(2.0) == sqrt(2.0) && npu_ref_sqrt(1e-300) == sqrt(1e-300),
	       "sqrt not correctly rounded");
	result("exp-edges", npu_ref_exp(0) == 1.0 && npu_ref_exp(-800) == 0.0 &&
	       isinf(npu_ref_exp(800)), "exp edges");
}

static void test_f16(void)
{
	unsigned int u, bad = 0;

	for (u = 0; u < 65536; u++) {
		float f = npu_ref_f16_to_f32((uint16_t)u);
		_Float16 h;
		uint16_t hb;

		memcpy(&h, &(uint16_t){ (uint16_t)u }, 2);
		if (isnan(f) != isnan((float)h) || (!isnan(f) && f != (float)h))
			bad++;
		if (!isnan(f) && npu_ref_f32_to_f16(f) != u)
			bad++;
		(void)hb;
	}
	for (u = 0; u < 0xffffffffu - 4097; u += 4097) {
		float f;
		_Float16 h;
		uint16_t hb;

		memcpy(&f, &u, 4);
		if (isnan(f))
			continue;
		h = (_Float16)f;
		memcpy(&hb, &h, 2);
		if (npu_ref_f32_to_f16(f) != hb)
			bad++;
	}
	result("f16", bad == 0, "f16 conversions differ from the compiler's");
}

static void test_quant(void)
{
	float x[5] = { 127.0f, 63.5f, -63.5f, 0.49f, -0.5f };
	float z[3] = { 0, 0, 0 };
	float n[3] = { NAN, 2.0f, -1.0f };
	float s, s16;
	int8_t q[5];
	int16_t q16[5];

	npu_ref_quant_i8(x, q, &s, 5, 0, 1);
	result("quant-half-away", s == 1.0f && q[0] == 127 && q[1] == 64 &&
	       q[2] == -64 && q[3] == 0 && q[4] == -1, "rounding");
	npu_ref_quant_i8(z, q, &s, 3, 0, 1);
	result("quant-zero-row", s == 1.0f && !q[0] && !q[1] && !q[2], "zero row");
	npu_ref_quant_i8(n, q, &s, 3, 0, 1);
	result("quant-nan", s == 2.0f / 127.0f && q[0] == 0 && q[1] == 127,
	       "NaN handling");
	npu_ref_quant_i16(x, q16, &s16, 5, 0, 1);
	result("quant-i16", s16 == 127.0f / 32767.0f && q16[0] == 32767 &&
	       q16[4] == (int16_t)-129, "i16 scale");
}

static void test_gemm(void)
{
	int8_t a[4] = { 1, 2, 3, 4 }, w[4] = { 5, 6, 7, 8 };
	float as[2] = { 1, 0.5f }, ws[2] = { 2, 0.25f }, o[4];
	int32_t acc[4];
	int8_t *big_a, *big_w;
	int16_t *a16;
	int32_t big;
	float bo, one = 1.0f;
	int i;

	npu_ref_gemm_w8a8_i32(a, w, acc, 2, 2, 0, 2, 0, 2);
	result("gemm-i32", acc[0] == 17 && acc[1] == 23 && acc[2] == 39 && acc[3] == 53,
	       "2x2");
	npu_ref_gemm_w8a8(a, w, as, ws, o, 2, 2, 0, 2, 0, 2);
	result("gemm-scales", o[0] == 34.0f && o[1] == 5.75f && o[2] == 39.0f &&
	       o[3] == 6.625f, "scales");
	big_a = malloc(65536);
	big_w = malloc(65536);
	a16 = malloc(65536 * 2);
	for (i = 0; i < 65536; i++) {
		big_a[i] = -128;
		big_w[i] = -128;
		a16[i] = -32768;
	}
	npu_ref_gemm_w8a8_i32(big_a, big_w, &big, 1, 65536, 0, 1, 0, 1);
	result("gemm-i32-max", big == 1 << 30, "int32 range");
	npu_ref_gemm_w8a16(a16, big_w, &one, &one, &bo, 1, 65536, 0, 1, 0, 1);
	result("gemm-w8a16-max", bo == 274877906944.0f, "int64 range");
	free(big_a);
	free(big_w);
	free(a16);
}

static void test_layer(void)
{
	float x = 2.0f, wt = 1.0f, out, r[4] = { 1, 2, 3, 4 }, ro[4];
	int32_t pos0 = 0, pos1 = 1;
	float q[4 * 2] = { 1, 0, 1, 0, 1, 0, 1, 0 };
	float kc[2 * 2] = { 0.5f, 0.5f, 0.5f, 0.5f };
	float vc[2 * 2] = { 3.0f, -1.0f, 7.0f, 9.0f };
	float ao[8], scratch[4], g = 0.0f, up = 5.0f;
	struct npu_ref_attn at = {
		.q = q, .k = kc, .v = vc, .pos = &pos0, .out = ao,
		.n_heads = 4, .n_kv_heads = 2, .head_dim = 2, .n_ctx = 1,
	};
	int ok = 1, h;

	npu_ref_rmsnorm(&x, &wt, &out, 1, 0.0f, 0, 1);
	result("rmsnorm", out == 1.0f, "x / rms");
	npu_ref_rope(r, &pos0, ro, 1, 4, 10000.0f, 0, 1);
	result("rope-pos0", !memcmp(r, ro, sizeof(r)), "identity at pos 0");
	npu_ref_rope(r, &pos1, ro, 1, 2, 10000.0f, 0, 1);
	result("rope-pos1", fabsf(ro[0] - (float)(cos(1) - 2 * sin(1))) < 1e-6f &&
	       fabsf(ro[1] - (float)(sin(1) + 2 * cos(1))) < 1e-6f, "rotation");
	for (h = 0; h < 4; h++)
		ok &= npu_ref_attention(&at, 0, (uint32_t)h, scratch) == 0;
	/* one position: out equals the V row of the head's kv head */
	result("attention-one-position", ok && ao[0] == 3.0f && ao[1] == -1.0f &&
	       ao[2] == 3.0f && ao[4] == 7.0f && ao[7] == 9.0f, "GQA head mapping");
	pos0 = 1;
	result("attention-bounds", npu_ref_attention(&at, 0, 0, scratch) == -1,
	       "pos past n_ctx");
	npu_ref_silu_mul(&g, &up, &out, 0, 1);
	result("silu-zero", out == 0.0f, "silu(0)");
}

/* Deterministic values in [-1, 1). */
static float frand(unsigned int *s)
{
	*s = *s * 1103515245u + 12345u;
	return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/*
 * Attention over several positions with grouped heads, against a float64
 * softmax written here from the definition (kv head = h / (n_heads /
 * n_kv_heads), scores q.k * scale over positions 0 ... pos, weights
 * exp(s - max) / sum, out = sum weight * v).
 */
static void test_attention_float64(void)
{
	enum { H = 6, KVH = 2, HD = 8, CTX = 19, M = 3 };
	static float q[M * H * HD], k[CTX * KVH * HD], v[CTX * KVH * HD];
	static float out[M * H * HD];
	int32_t pos[M] = { 0, 7, CTX - 1 };
	struct npu_ref_attn a = {
		.q = q, .k = k, .v = v, .pos = pos, .out = out,
		.n_heads = H, .n_kv_heads = KVH, .head_dim = HD, .n_ctx = CTX,
	};
	double worst = 0;
	unsigned int seed = 7;
	float scratch[CTX];
	int m, h, d, t, i, ok = 1;

	for (i = 0; i < M * H * HD; i++)
		q[i] = 2 * frand(&seed);
	for (i = 0; i < CTX * KVH * HD; i++) {
		k[i] = 2 * frand(&seed);
		v[i] = frand(&seed);
	}
	for (m = 0; m < M; m++)
		for (h = 0; h < H; h++)
			ok &= npu_ref_attention(&a, m, h, scratch) == 0;
	for (m = 0; m < M; m++) {
		for (h = 0; h < H; h++) {
			int kvh = h / (H / KVH);
			double s[CTX], mx = -1e300, sum = 0;

			for (t = 0; t <= pos[m]; t++) {
				s[t] = 0;
				for (d = 0; d < HD; d++)
					s[t] += (double)q[(m * H + h) * HD + d] *
						k[(t * KVH + kvh) * HD + d];
				s[t] /= sqrt((double)HD);
				mx = s[t] > mx ? s[t] : mx;
			}
			for (t = 0; t <= pos[m]; t++)
				sum += exp(s[t] - mx);
			for (d = 0; d < HD; d++) {
				double o = 0, e;

				for (t = 0; t <= pos[m]; t++)
					o += exp(s[t] - mx) / sum * v[(t * KVH + kvh) * HD + d];
				e = fabs(o - out[(m * H + h) * HD + d]);
				worst = e > worst ? e : worst;
			}
		}
	}
	result("attention-gqa-float64", ok && worst < 1e-5,
	       "differs from a float64 softmax by more than 1e-5");
}

/* silu(g) * up = g / (1 + exp(-g)) * up, against float64, away from 0. */
static void test_silu_float64(void)
{
	static const float g[] = { 0.5f, 1.0f, 2.5f, -3.0f, 7.75f, -0.125f, 20.0f };
	float up[7], out[7];
	double worst = 0;
	int i;

	for (i = 0; i < 7; i++)
		up[i] = 1.5f - i * 0.25f;
	npu_ref_silu_mul(g, up, out, 0, 7);
	for (i = 0; i < 7; i++) {
		double r = (double)g[i] / (1.0 + exp(-(double)g[i])) * up[i];
		double e = fabs(out[i] - r) / (fabs(r) > 1e-30 ? fabs(r) : 1);

		worst = e > worst ? e : worst;
	}
	result("silu-float64", worst < 1e-6, "silu_mul differs from float64");
}

static void test_ert(void)
{
	struct ert_packet p;

	memset(&p, 0, sizeof(p));
	p.header = npu_ert_header(2);
	result("ert-header", p.state == ERT_CMD_STATE_NEW && p.opcode == ERT_START_CU &&
	       p.type == ERT_CU && p.count == 2 * NPU_OP_WORDS && p.custom == 0,
	       "fields");
	result("ert-states", NPU_ERT_STATE_COMPLETED == ERT_CMD_STATE_COMPLETED &&
	       NPU_ERT_STATE_ERROR == ERT_CMD_STATE_ERROR &&
	       NPU_ERT_STATE_ABORT == ERT_CMD_STATE_ABORT &&
	       NPU_ERT_STATE_TIMEOUT == ERT_CMD_STATE_TIMEOUT, "values");
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_math();
	test_f16();
	test_quant();
	test_gemm();
	test_layer();
	test_attention_float64();
	test_silu_float64();
	test_ert();
	return nfail ? 1 : 0;
}
