// SPDX-License-Identifier: GPL-2.0-only
/*
 * npu op validation: field checks and operand sizes, used at submit time
 * and again by the engine right before it touches memory.
 *
 * Copyright (c) 2026 The npud authors
 */

#include <linux/overflow.h>

#include "npu_drv.h"

/*
 * Limits (see enum drm_npu_opcode): they keep int32 accumulation exact and
 * bound the work done inside one kernel_fpu_begin/end section.
 */
#define NPU_DIM_MAX	BIT(24)
#define NPU_K_MAX	BIT(16)
#define NPU_ROW_MAX	BIT(16)
#define NPU_HEADS_MAX	1024
#define NPU_HEAD_DIM_MAX 512
#define NPU_CTX_MAX	BIT(15)

static const char *const npu_op_names[NPU_OPS] = NPU_OP_NAMES;

const char *npu_op_name(u32 opcode)
{
	if (!opcode || opcode >= NPU_OPS)
		return "invalid";
	return npu_op_names[opcode];
}

/* Product of up to three factors in bytes; 0 on overflow. */
static u64 npu_mul3(u64 a, u64 b, u64 c)
{
	u64 r;

	if (check_mul_overflow(a, b, &r) || check_mul_overflow(r, c, &r))
		return 0;
	return r;
}

/*
 * Number of dims, fparams and buffers each op uses, for the "unused must be
 * zero" rule.
 */
static const u8 npu_op_ndims[NPU_OPS] = {
	[NPU_OP_GEMM_W8A8] = 3, [NPU_OP_GEMM_W8A8_I32] = 3,
	[NPU_OP_GEMM_W8A16] = 3, [NPU_OP_RMSNORM] = 2, [NPU_OP_ROPE] = 3,
	[NPU_OP_SILU_MUL] = 1, [NPU_OP_ADD] = 1, [NPU_OP_QUANT_I8] = 2,
	[NPU_OP_QUANT_I16] = 2, [NPU_OP_ATTENTION] = 7, [NPU_OP_COPY] = 1,
	[NPU_OP_CVT_F32_F16] = 1,
};

static const u8 npu_op_nfparams[NPU_OPS] = {
	[NPU_OP_RMSNORM] = 1, [NPU_OP_ROPE] = 1, [NPU_OP_ATTENTION] = 1,
};

/* Buffer operands each op uses (attention adds bit 5 with a block table). */
static const u8 npu_op_bufs[NPU_OPS] = {
	[NPU_OP_GEMM_W8A8] = 0x1f, [NPU_OP_GEMM_W8A8_I32] = 0x13,
	[NPU_OP_GEMM_W8A16] = 0x1f, [NPU_OP_RMSNORM] = 0x7, [NPU_OP_ROPE] = 0x7,
	[NPU_OP_SILU_MUL] = 0x7, [NPU_OP_ADD] = 0x7, [NPU_OP_QUANT_I8] = 0x7,
	[NPU_OP_QUANT_I16] = 0x7, [NPU_OP_ATTENTION] = 0x1f, [NPU_OP_COPY] = 0x3,
	[NPU_OP_CVT_F32_F16] = 0x3,
};

/* Buffer operands each op writes. */
static const u8 npu_op_out[NPU_OPS] = {
	[NPU_OP_GEMM_W8A8] = 0x10, [NPU_OP_GEMM_W8A8_I32] = 0x10,
	[NPU_OP_GEMM_W8A16] = 0x10, [NPU_OP_RMSNORM] = 0x4, [NPU_OP_ROPE] = 0x4,
	[NPU_OP_SILU_MUL] = 0x4, [NPU_OP_ADD] = 0x4, [NPU_OP_QUANT_I8] = 0x6,
	[NPU_OP_QUANT_I16] = 0x6, [NPU_OP_ATTENTION] = 0x10, [NPU_OP_COPY] = 0x2,
	[NPU_OP_CVT_F32_F16] = 0x2,
};

/**
 * npu_op_writes - does an op write one of its operands?
 * @op: the op, already checked by npu_op_sizes()
 * @slot: the operand
 *
 * Return: true when the op writes operand @slot.
 */
bool npu_op_writes(const struct drm_npu_op *op, u32 slot)
{
	return npu_op_out[op->opcode] & BIT(slot);
}

static bool npu_f32_positive_finite(u32 bits)
{
	return !(bits & 0x80000000u) && (bits & 0x7f800000u) != 0x7f800000u &&
		(bits & 0x7fffffffu);
}

static bool npu_f32_finite(u32 bits)
{
	return (bits & 0x7f800000u) != 0x7f800000u;
}

/**
 * npu_op_sizes - validate an op's fields and compute its operand sizes
 * @op: the op
 * @sizes: out: required byte size of each buffer operand, 0 if unused
 *
 * Return: 0, or -EINVAL for any invalid or unknown field.
 */
int npu_op_sizes(const struct drm_npu_op *op, u64 sizes[NPU_OP_MAX_BUFS])
{
	const u32 *d = op->dim;
	u64 row, kv, n;
	u32 used;
	int i;

	memset(sizes, 0, sizeof(u64) * NPU_OP_MAX_BUFS);
	if (!op->opcode || op->opcode >= NPU_OPS)
		return -EINVAL;
	if (op->flags & ~NPU_OP_FLAGS_MASK)
		return -EINVAL;
	if (op->flags && op->opcode != NPU_OP_ATTENTION)
		return -EINVAL;
	if (op->reserved[0] || op->reserved[1])
		return -EINVAL;
	for (i = npu_op_ndims[op->opcode]; i < NPU_OP_MAX_DIMS; i++)
		if (d[i])
			return -EINVAL;
	for (i = npu_op_nfparams[op->opcode]; i < NPU_OP_MAX_FPARAMS; i++)
		if (op->fparam[i])
			return -EINVAL;
	for (i = 0; i < npu_op_ndims[op->opcode]; i++)
		if (d[i] > NPU_DIM_MAX)
			return -EINVAL;

	switch (op->opcode) {
	case NPU_OP_GEMM_W8A8:
	case NPU_OP_GEMM_W8A8_I32:
	case NPU_OP_GEMM_W8A16:
		if (!d[0] || !d[1] || !d[2] || d[2] > NPU_K_MAX)
			return -EINVAL;
		sizes[0] = npu_mul3(d[0], d[2],
				    op->opcode == NPU_OP_GEMM_W8A16 ? 2 : 1);
		sizes[1] = npu_mul3(d[1], d[2], 1);
		if (op->opcode != NPU_OP_GEMM_W8A8_I32) {
			sizes[2] = npu_mul3(d[0], 4, 1);
			sizes[3] = npu_mul3(d[1], 4, 1);
		}
		sizes[4] = npu_mul3(d[0], d[1], 4);
		break;
	case NPU_OP_RMSNORM:
		if (!d[0] || !d[1] || d[1] > NPU_ROW_MAX || !npu_f32_finite(op->fparam[0]) ||
		    (op->fparam[0] & 0x80000000u))
			return -EINVAL;
		sizes[0] = npu_mul3(d[0], d[1], 4);
		sizes[1] = npu_mul3(d[1], 4, 1);
		sizes[2] = sizes[0];
		break;
	case NPU_OP_ROPE:
		if (!d[0] || !d[1] || !d[2] || (d[2] & 1) ||
		    d[1] > NPU_HEADS_MAX || d[2] > NPU_HEAD_DIM_MAX ||
		    !npu_f32_positive_finite(op->fparam[0]))
			return -EINVAL;
		sizes[0] = npu_mul3(d[0], d[1], npu_mul3(d[2], 4, 1));
		sizes[1] = npu_mul3(d[0], 4, 1);
		sizes[2] = sizes[0];
		break;
	case NPU_OP_SILU_MUL:
	case NPU_OP_ADD:
		if (!d[0])
			return -EINVAL;
		sizes[0] = npu_mul3(d[0], 4, 1);
		sizes[1] = sizes[0];
		sizes[2] = sizes[0];
		break;
	case NPU_OP_QUANT_I8:
	case NPU_OP_QUANT_I16:
		if (!d[0] || !d[1] || d[1] > NPU_ROW_MAX)
			return -EINVAL;
		sizes[0] = npu_mul3(d[0], d[1], 4);
		sizes[1] = npu_mul3(d[0], d[1],
				    op->opcode == NPU_OP_QUANT_I16 ? 2 : 1);
		sizes[2] = npu_mul3(d[0], 4, 1);
		break;
	case NPU_OP_ATTENTION:
		/* M, n_heads, n_kv_heads, head_dim, n_ctx, block_size, n_blocks */
		if (!d[0] || !d[1] || !d[2] || !d[3] || !d[4] ||
		    d[1] % d[2] || d[4] > NPU_CTX_MAX || d[1] > NPU_HEADS_MAX ||
		    d[3] > NPU_HEAD_DIM_MAX ||
		    !npu_f32_finite(op->fparam[0]) ||
		    (op->fparam[0] & 0x80000000u))
			return -EINVAL;
		if (!d[5] != !d[6])
			return -EINVAL;
		row = npu_mul3(d[2], d[3], (op->flags & NPU_OP_F_KV_F16) ? 2 : 4);
		sizes[0] = npu_mul3(d[0], d[1], npu_mul3(d[3], 4, 1));
		if (d[5]) {
			kv = npu_mul3(d[5], d[6], row);
			n = DIV_ROUND_UP((u64)d[4], d[5]);
			sizes[5] = npu_mul3(n, 4, 1);
		} else {
			kv = npu_mul3(d[4], row, 1);
		}
		sizes[1] = kv;
		sizes[2] = kv;
		sizes[3] = npu_mul3(d[0], 4, 1);
		sizes[4] = sizes[0];
		break;
	case NPU_OP_COPY:
		if (!d[0])
			return -EINVAL;
		sizes[0] = d[0];
		sizes[1] = d[0];
		break;
	case NPU_OP_CVT_F32_F16:
		if (!d[0])
			return -EINVAL;
		sizes[0] = npu_mul3(d[0], 4, 1);
		sizes[1] = npu_mul3(d[0], 2, 1);
		break;
	}

	used = npu_op_bufs[op->opcode];
	if (op->opcode == NPU_OP_ATTENTION && d[5])
		used |= BIT(5);
	for (i = 0; i < NPU_OP_MAX_BUFS; i++) {
		if (op->buf[i].pad)
			return -EINVAL;
		if (!(used & BIT(i))) {
			if (op->buf[i].handle || op->buf[i].offset)
				return -EINVAL;
			sizes[i] = 0;
			continue;
		}
		/* A zero size of a used operand means an overflow. */
		if (!op->buf[i].handle || !sizes[i])
			return -EINVAL;
	}
	return 0;
}

/**
 * npu_op_check_bufs - check that every operand lies inside its BO
 * @op: the op, already checked by npu_op_sizes()
 * @bos: the op's resolved BOs
 * @sizes: operand sizes from npu_op_sizes()
 *
 * Return: 0 or -EINVAL.
 */
int npu_op_check_bufs(const struct drm_npu_op *op, struct npu_bo *const *bos,
		      const u64 sizes[NPU_OP_MAX_BUFS])
{
	u64 end;
	int i;

	for (i = 0; i < NPU_OP_MAX_BUFS; i++) {
		if (!sizes[i])
			continue;
		if (!bos[i])
			return -EINVAL;
		if (check_add_overflow(op->buf[i].offset, sizes[i], &end) ||
		    end > bos[i]->base.base.size)
			return -EINVAL;
	}
	return 0;
}

/**
 * npu_op_scratch_size - working memory the engine needs for an op
 * @op: the op, already checked by npu_op_sizes()
 *
 * RoPE: a copy of the positions. Attention: a score per position, a copy
 * of the positions, a copy of the block table.
 *
 * Return: bytes, 0 for none.
 */
u64 npu_op_scratch_size(const struct drm_npu_op *op)
{
	const u32 *d = op->dim;
	u64 n;

	switch (op->opcode) {
	case NPU_OP_ROPE:
		return (u64)d[0] * sizeof(s32);
	case NPU_OP_ATTENTION:
		n = (u64)d[4] * sizeof(float) + (u64)d[0] * sizeof(s32);
		if (d[5])
			n += DIV_ROUND_UP((u64)d[4], d[5]) * sizeof(s32);
		return n;
	default:
		return 0;
	}
}
