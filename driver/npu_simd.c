// SPDX-License-Identifier: GPL-2.0-only
/*
 * npu engine: AVX2 versions of the integer GEMMs. Integer sums are exact,
 * so the results equal npu_ref bit for bit; the float epilogue is the same
 * expression as the reference. Only called between kernel_fpu_begin() and
 * kernel_fpu_end(), and only when the cpu has AVX2.
 *
 * Copyright (c) 2026 The npud authors
 */

#include <linux/string.h>
#include <linux/types.h>

#include "npu_simd.h"

typedef s8 npu_v16qi __attribute__((vector_size(16)));
typedef s16 npu_v16hi __attribute__((vector_size(32)));
typedef s32 npu_v8si __attribute__((vector_size(32)));

static s32 npu_simd_dot_s8(const s8 *a, const s8 *w, u32 k)
{
	npu_v8si acc = { 0 };
	s32 sum = 0;
	u32 i;

	for (i = 0; i + 16 <= k; i += 16) {
		npu_v16qi va, vw;

		memcpy(&va, a + i, sizeof(va));
		memcpy(&vw, w + i, sizeof(vw));
		acc += __builtin_ia32_pmaddwd256(__builtin_convertvector(va, npu_v16hi),
						 __builtin_convertvector(vw, npu_v16hi));
	}
	for (; i < k; i++)
		sum += (s32)a[i] * (s32)w[i];
	return sum + acc[0] + acc[1] + acc[2] + acc[3] + acc[4] + acc[5] +
		acc[6] + acc[7];
}

static s64 npu_simd_dot_s16_s8(const s16 *a, const s8 *w, u32 k)
{
	s64 sum = 0;
	u32 i;

	/* 16 products per step; a block of 16 sums to less than 2^27. */
	for (i = 0; i + 16 <= k; i += 16) {
		npu_v16hi va;
		npu_v16qi vw;
		npu_v8si p;

		memcpy(&va, a + i, sizeof(va));
		memcpy(&vw, w + i, sizeof(vw));
		p = __builtin_ia32_pmaddwd256(va, __builtin_convertvector(vw, npu_v16hi));
		sum += (s64)p[0] + p[1] + p[2] + p[3] + p[4] + p[5] + p[6] + p[7];
	}
	for (; i < k; i++)
		sum += (s64)((s32)a[i] * (s32)w[i]);
	return sum;
}

void npu_simd_gemm_w8a8(const s8 *a, const s8 *w, const float *a_scale,
			const float *w_scale, void *out, bool raw_i32, u32 n,
			u32 k, u32 m, u32 n0, u32 n1)
{
	const s8 *ar = a + (size_t)m * k;
	u32 j;

	for (j = n0; j < n1; j++) {
		s32 acc = npu_simd_dot_s8(ar, w + (size_t)j * k, k);

		if (raw_i32)
			((s32 *)out)[(size_t)m * n + j] = acc;
		else
			((float *)out)[(size_t)m * n + j] =
				((float)acc * a_scale[m]) * w_scale[j];
	}
}

void npu_simd_gemm_w8a16(const s16 *a, const s8 *w, const float *a_scale,
			 const float *w_scale, float *out, u32 n, u32 k, u32 m,
			 u32 n0, u32 n1)
{
	const s16 *ar = a + (size_t)m * k;
	u32 j;

	for (j = n0; j < n1; j++) {
		s64 acc = npu_simd_dot_s16_s8(ar, w + (size_t)j * k, k);

		out[(size_t)m * n + j] = ((float)acc * a_scale[m]) * w_scale[j];
	}
}
