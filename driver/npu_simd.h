/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Copyright (c) 2026 The npud authors
 */

#ifndef __NPU_SIMD_H__
#define __NPU_SIMD_H__

#include <linux/types.h>

/* One output row m, columns [n0, n1); see npu_ref_gemm_w8a8(). */
void npu_simd_gemm_w8a8(const s8 *a, const s8 *w, const float *a_scale,
			const float *w_scale, void *out, bool raw_i32, u32 n,
			u32 k, u32 m, u32 n0, u32 n1);
void npu_simd_gemm_w8a16(const s16 *a, const s8 *w, const float *a_scale,
			 const float *w_scale, float *out, u32 n, u32 k, u32 m,
			 u32 n0, u32 n1);

#endif /* __NPU_SIMD_H__ */
