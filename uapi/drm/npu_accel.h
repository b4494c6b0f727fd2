/* SPDX-License-Identifier: GPL-2.0-only WITH Linux-syscall-note */
/*
 * Copyright (c) 2026 The npud authors
 */

#ifndef _UAPI_DRM_NPU_ACCEL_H_
#define _UAPI_DRM_NPU_ACCEL_H_

#include "drm.h"

#if defined(__cplusplus)
extern "C" {
#endif

/**
 * DOC: npu accel uAPI
 *
 * The npu driver exposes one DRM accel node (/dev/accel/accelN) per engine
 * instance. Userspace allocates shmem backed buffer objects (BOs), creates
 * hardware contexts, configures each context with an xclbin whose IP_LAYOUT
 * section names the ops (compute units) the context may run, and submits
 * command buffers.
 *
 * A command buffer lives in a BO. It starts with a 32-bit header whose bit
 * layout is that of XRT's struct ert_packet (xrt/ert.h): state in bits
 * [3:0], custom in [11:4], count in [22:12], opcode in [27:23], type in
 * [31:28]. The opcode must be %NPU_ERT_START_CU, the type %NPU_ERT_CU and
 * custom zero; count is the number of 32-bit words after the header, and
 * they hold an array of &struct drm_npu_op. Only the header follows XRT:
 * the payload is not XRT's struct ert_start_kernel_cmd, whose word 1 is the
 * cu_mask (and whose custom bits [11:10] count extra cu masks), so XRT tools
 * can read a command's state, not decode its ops. The driver snapshots the
 * ops at submit time and writes the final state (%NPU_ERT_STATE_COMPLETED,
 * _ERROR, _TIMEOUT or _ABORT) into the header's state bits before the job's
 * fence signals.
 *
 * The uAPI only grows: structs gain fields at their end (older binaries
 * pass the shorter struct, the kernel reads the new fields as zero), flags
 * gain bits, nothing changes meaning. version_major stays 1;
 * version_minor counts the additions.
 *
 * Every ioctl rejects unknown flags, nonzero padding ("MBZ") and out of
 * range values with -EINVAL, unknown handles or ids with -ENOENT, bad user
 * pointers with -EFAULT and arrays above the advertised limits with -E2BIG.
 * DRM_IOCTL_NPU_SUBMIT also returns -EPERM for an op the context's xclbin
 * does not enable and -EIO on a faulted context. Out fields are ignored on
 * input.
 *
 * An op that fails at run time (e.g. a position or block table entry out of
 * range) ends its job with %NPU_ERT_STATE_ERROR; the context stays usable.
 * A job that exceeds the job timeout (module parameter job_timeout_ms)
 * ends with %NPU_ERT_STATE_TIMEOUT, the engine is reset, the context is
 * marked faulted and its queued jobs end with %NPU_ERT_STATE_ABORT; jobs of
 * other contexts run on.
 *
 * A job ends with one final state, the same in its header, on
 * DRM_IOCTL_NPU_WAIT and as the error of its fence (the out syncobj and the
 * sync_files made from it): %NPU_ERT_STATE_COMPLETED signals without an
 * error, _ERROR with -EIO, _TIMEOUT with -ETIMEDOUT, _ABORT with -ECANCELED
 * (its context faulted) or -ESRCH (its context was destroyed or its file
 * closed before it started).
 *
 * DRM_IOCTL_NPU_CTX_DESTROY gives the context's queued jobs up to 100 ms
 * to start, then aborts the ones that have not (%NPU_ERT_STATE_ABORT); a
 * running job runs to its end. Closing the file does the same for all its
 * contexts, with one wait of at most 1 s in all (when the file is closed)
 * before its release aborts the rest.
 */

#define DRM_NPU_GET_INFO	0x00
#define DRM_NPU_BO_CREATE	0x01
#define DRM_NPU_BO_INFO		0x02
#define DRM_NPU_BO_SYNC		0x03
#define DRM_NPU_CTX_CREATE	0x04
#define DRM_NPU_CTX_DESTROY	0x05
#define DRM_NPU_CTX_CONFIGURE	0x06
#define DRM_NPU_CTX_QUERY	0x07
#define DRM_NPU_SUBMIT		0x08
#define DRM_NPU_WAIT		0x09

/* ERT packet header, bit layout of XRT's struct ert_packet. */
#define NPU_ERT_STATE_SHIFT	0
#define NPU_ERT_STATE_MASK	0x0000000fu
#define NPU_ERT_CUSTOM_SHIFT	4
#define NPU_ERT_CUSTOM_MASK	0x00000ff0u
#define NPU_ERT_COUNT_SHIFT	12
#define NPU_ERT_COUNT_MASK	0x007ff000u
#define NPU_ERT_OPCODE_SHIFT	23
#define NPU_ERT_OPCODE_MASK	0x0f800000u
#define NPU_ERT_TYPE_SHIFT	28
#define NPU_ERT_TYPE_MASK	0xf0000000u

/* Maximum of the 11-bit count field. */
#define NPU_ERT_MAX_COUNT	2047

/* ERT opcode (enum ert_cmd_opcode) and type (enum ert_cmd_type) values. */
#define NPU_ERT_START_CU	0
#define NPU_ERT_CU		3

/* Command states, values of XRT's enum ert_cmd_state. */
#define NPU_ERT_STATE_NEW	1
#define NPU_ERT_STATE_QUEUED	2
#define NPU_ERT_STATE_RUNNING	3
#define NPU_ERT_STATE_COMPLETED	4
#define NPU_ERT_STATE_ERROR	5
#define NPU_ERT_STATE_ABORT	6
#define NPU_ERT_STATE_SUBMITTED	7
#define NPU_ERT_STATE_TIMEOUT	8

/**
 * enum drm_npu_opcode - operations of the engine
 *
 * Matrices are row major and tightly packed. W is [N x K] int8, one row per
 * output channel. A is [M x K], one row per token. Exact semantics of every
 * op are in daemon/libnpu/npu_ref.h. Limits: every dim <= 2^24; GEMM K <=
 * 65536; RMSNORM D and QUANT K <= 65536; n_heads <= 1024; head_dim <= 512
 * (even for ROPE); n_ctx <= 32768; all buffer sizes must fit in 64 bits.
 *
 * @NPU_OP_GEMM_W8A8: dim = {M, N, K}; buf = {A s8, W s8, a_scale f32[M],
 *	w_scale f32[N], out f32[M x N]}.
 * @NPU_OP_GEMM_W8A8_I32: dim = {M, N, K}; buf = {A s8, W s8, -, -,
 *	out s32[M x N]}, the raw int32 accumulators.
 * @NPU_OP_GEMM_W8A16: dim = {M, N, K}; buf = {A s16, W s8, a_scale f32[M],
 *	w_scale f32[N], out f32[M x N]}.
 * @NPU_OP_RMSNORM: dim = {M, D}; fparam[0] = eps; buf = {x f32[M x D],
 *	weight f32[D], out f32[M x D]}.
 * @NPU_OP_ROPE: dim = {M, n_heads, head_dim}; fparam[0] = base;
 *	buf = {x f32[M x n_heads x head_dim], pos s32[M], out (same as x)};
 *	pos is read once, when the op starts.
 * @NPU_OP_SILU_MUL: dim = {n}; buf = {gate f32[n], up f32[n], out f32[n]}.
 * @NPU_OP_ADD: dim = {n}; buf = {a f32[n], b f32[n], out f32[n]}.
 * @NPU_OP_QUANT_I8: dim = {M, K}; buf = {x f32[M x K], q s8[M x K],
 *	scale f32[M]}.
 * @NPU_OP_QUANT_I16: dim = {M, K}; buf = {x f32[M x K], q s16[M x K],
 *	scale f32[M]}.
 * @NPU_OP_ATTENTION: dim = {M, n_heads, n_kv_heads, head_dim, n_ctx,
 *	block_size, n_blocks}; fparam[0] = scale (0: 1/sqrt(head_dim));
 *	buf = {q f32[M x n_heads x head_dim], K cache, V cache, pos s32[M],
 *	out f32[M x n_heads x head_dim], block table s32 (block_size != 0)}.
 *	The caches hold rows of n_kv_heads x head_dim elements, f32, or f16
 *	with %NPU_OP_F_KV_F16. With block_size 0 they hold n_ctx contiguous
 *	rows; otherwise n_blocks blocks of block_size rows and the block table
 *	maps logical block i (positions i * block_size ...) to a physical
 *	block. Query row m attends to positions 0 ... pos[m] (< n_ctx). The
 *	engine reads pos and the block table once, when the op starts: a
 *	position or a table entry out of range ends the job with
 *	%NPU_ERT_STATE_ERROR before the op writes anything.
 * @NPU_OP_COPY: dim = {bytes}; buf = {src, dst}.
 * @NPU_OP_CVT_F32_F16: dim = {n}; buf = {src f32[n], dst f16[n]}.
 *
 * New ops get new values; which ones a device runs is its ops_mask
 * (&struct drm_npu_get_info).
 */
enum drm_npu_opcode {
	NPU_OP_GEMM_W8A8 = 1,
	NPU_OP_GEMM_W8A8_I32 = 2,
	NPU_OP_GEMM_W8A16 = 3,
	NPU_OP_RMSNORM = 4,
	NPU_OP_ROPE = 5,
	NPU_OP_SILU_MUL = 6,
	NPU_OP_ADD = 7,
	NPU_OP_QUANT_I8 = 8,
	NPU_OP_QUANT_I16 = 9,
	NPU_OP_ATTENTION = 10,
	NPU_OP_COPY = 11,
	NPU_OP_CVT_F32_F16 = 12,
};

/**
 * NPU_OP_NAMES - initializer of a table of op names indexed by opcode
 *
 * The <op> of the "npu_<op>" IP names in an xclbin
 * (&struct drm_npu_ctx_configure), one per &enum drm_npu_opcode value.
 */
#define NPU_OP_NAMES { \
	[NPU_OP_GEMM_W8A8] = "gemm_w8a8", \
	[NPU_OP_GEMM_W8A8_I32] = "gemm_w8a8_i32", \
	[NPU_OP_GEMM_W8A16] = "gemm_w8a16", \
	[NPU_OP_RMSNORM] = "rmsnorm", \
	[NPU_OP_ROPE] = "rope", \
	[NPU_OP_SILU_MUL] = "silu_mul", \
	[NPU_OP_ADD] = "add", \
	[NPU_OP_QUANT_I8] = "quant_i8", \
	[NPU_OP_QUANT_I16] = "quant_i16", \
	[NPU_OP_ATTENTION] = "attention", \
	[NPU_OP_COPY] = "copy", \
	[NPU_OP_CVT_F32_F16] = "cvt_f32_f16", \
}

/* K and V caches of NPU_OP_ATTENTION hold f16 values. */
#define NPU_OP_F_KV_F16		0x1u
#define NPU_OP_FLAGS_MASK	NPU_OP_F_KV_F16

#define NPU_OP_MAX_DIMS		8
#define NPU_OP_MAX_FPARAMS	4
#define NPU_OP_MAX_BUFS		8

/**
 * struct drm_npu_op_buf - a buffer operand of an op
 * @handle: GEM handle of the BO, 0 for an unused operand.
 * @pad: MBZ.
 * @offset: byte offset of the operand inside the BO. The whole operand,
 *	offset + size, must lie inside the BO.
 */
struct drm_npu_op_buf {
	__u32 handle;
	__u32 pad;
	__u64 offset;
};

/**
 * struct drm_npu_op - one op of a command buffer (192 bytes, 48 words)
 * @opcode: an &enum drm_npu_opcode value.
 * @flags: %NPU_OP_F_* flags; bits outside %NPU_OP_FLAGS_MASK must be zero.
 * @dim: op-specific sizes (see &enum drm_npu_opcode); unused entries MBZ.
 * @fparam: op-specific IEEE-754 binary32 parameters, stored as bit patterns;
 *	unused entries MBZ.
 * @buf: op-specific operands; unused entries must be all zero.
 * @reserved: MBZ.
 */
struct drm_npu_op {
	__u32 opcode;
	__u32 flags;
	__u32 dim[NPU_OP_MAX_DIMS];
	__u32 fparam[NPU_OP_MAX_FPARAMS];
	struct drm_npu_op_buf buf[NPU_OP_MAX_BUFS];
	__u32 reserved[2];
};

#define NPU_OP_WORDS		(sizeof(struct drm_npu_op) / 4)

/**
 * struct drm_npu_get_info - device information (DRM_IOCTL_NPU_GET_INFO)
 * @flags: MBZ.
 * @version_major: 1, always: the uAPI is never changed incompatibly.
 * @version_minor: additions to the uAPI. 1: %NPU_WAIT_F_ABSOLUTE, the
 *	context's timeline syncobj (%NPU_CTX_CREATE_F_SYNCOBJ), the BO list of
 *	a submission, @max_bo_handles, the "events-admin" netlink group and
 *	the client id of events.
 * @num_engines: number of execution engines behind this node.
 * @max_ops_per_cmd: most ops one command buffer may carry.
 * @max_in_syncobjs: most in-syncobjs one submission may name.
 * @max_contexts: most contexts one open file may hold.
 * @ops_mask: bit n set when opcode n is supported.
 * @max_bo_size: largest BO size in bytes.
 * @fence_window: how many of a context's most recent sequence numbers
 *	DRM_IOCTL_NPU_WAIT can report on.
 * @pad: MBZ.
 * @max_bo_handles: most entries of &drm_npu_submit.bo_handles (uAPI 1.1).
 * @pad2: MBZ.
 */
struct drm_npu_get_info {
	__u32 flags;
	__u32 version_major;
	__u32 version_minor;
	__u32 num_engines;
	__u32 max_ops_per_cmd;
	__u32 max_in_syncobjs;
	__u32 max_contexts;
	__u32 fence_window;
	__u64 ops_mask;
	__u64 max_bo_size;
	__u64 pad;
	__u32 max_bo_handles;
	__u32 pad2;
};

/**
 * struct drm_npu_bo_create - create a BO (DRM_IOCTL_NPU_BO_CREATE)
 * @size: in: size in bytes, 1 ... max_bo_size, rounded up to pages.
 * @flags: in: MBZ, no flags are defined yet.
 * @handle: out: GEM handle of the new BO.
 */
struct drm_npu_bo_create {
	__u64 size;
	__u32 flags;
	__u32 handle;
};

/**
 * struct drm_npu_bo_info - query a BO (DRM_IOCTL_NPU_BO_INFO)
 * @handle: in: GEM handle.
 * @pad: MBZ.
 * @mmap_offset: out: offset to pass to mmap() on the accel fd.
 * @size: out: size of the BO in bytes.
 */
struct drm_npu_bo_info {
	__u32 handle;
	__u32 pad;
	__u64 mmap_offset;
	__u64 size;
};

#define NPU_BO_SYNC_TO_DEVICE	0x1u
#define NPU_BO_SYNC_FROM_DEVICE	0x2u
#define NPU_BO_SYNC_FLAGS_MASK	(NPU_BO_SYNC_TO_DEVICE | NPU_BO_SYNC_FROM_DEVICE)

/**
 * struct drm_npu_bo_sync - sync a BO range for cpu or device access
 * (DRM_IOCTL_NPU_BO_SYNC)
 * @handle: GEM handle.
 * @flags: exactly one of %NPU_BO_SYNC_TO_DEVICE, %NPU_BO_SYNC_FROM_DEVICE.
 * @offset: start of the range.
 * @size: length of the range, nonzero; offset + size must not pass the end.
 *
 * The software engine is cache coherent with the cpu, so the sync is a
 * full memory barrier; a hardware back end flushes or invalidates caches.
 */
struct drm_npu_bo_sync {
	__u32 handle;
	__u32 flags;
	__u64 offset;
	__u64 size;
};

/* DRM_IOCTL_NPU_CTX_CREATE: also create the context's timeline syncobj. */
#define NPU_CTX_CREATE_F_SYNCOBJ	0x1u
#define NPU_CTX_CREATE_FLAGS_MASK	NPU_CTX_CREATE_F_SYNCOBJ

#define NPU_CTX_PRIORITY_LOW	0
#define NPU_CTX_PRIORITY_NORMAL	1
#define NPU_CTX_PRIORITY_HIGH	2

/**
 * struct drm_npu_ctx_create - create a context (DRM_IOCTL_NPU_CTX_CREATE)
 * @priority: in: %NPU_CTX_PRIORITY_*; %NPU_CTX_PRIORITY_HIGH needs
 *	CAP_SYS_NICE (-EPERM without it).
 * @flags: in: 0 or %NPU_CTX_CREATE_F_SYNCOBJ.
 * @ctx_id: out: context id, unique within the open file, never 0; ids are
 *	not reused while the file is open (they count up).
 * @pad: MBZ.
 * @syncobj_handle: out: with %NPU_CTX_CREATE_F_SYNCOBJ, a timeline syncobj
 *	of the file whose point n signals when the context's job n ends
 *	(DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT, any number of jobs back); else 0.
 *	The handle is the caller's to destroy (DRM_IOCTL_SYNCOBJ_DESTROY);
 *	the context keeps its own reference. uAPI 1.1.
 * @pad2: MBZ.
 *
 * A new context may run no op until DRM_IOCTL_NPU_CTX_CONFIGURE.
 */
struct drm_npu_ctx_create {
	__u32 priority;
	__u32 flags;
	__u32 ctx_id;
	__u32 pad;
	__u32 syncobj_handle;
	__u32 pad2;
};

/**
 * struct drm_npu_ctx_destroy - destroy a context (DRM_IOCTL_NPU_CTX_DESTROY)
 * @ctx_id: context id.
 * @pad: MBZ.
 *
 * Queued jobs get up to 100 ms to start; the ones that have not are
 * aborted. A running job runs to its end.
 */
struct drm_npu_ctx_destroy {
	__u32 ctx_id;
	__u32 pad;
};

/* Largest xclbin accepted by DRM_IOCTL_NPU_CTX_CONFIGURE. */
#define NPU_XCLBIN_MAX_SIZE	0x100000u

/**
 * struct drm_npu_ctx_configure - set the ops a context may run
 * (DRM_IOCTL_NPU_CTX_CONFIGURE)
 * @ctx_id: context id.
 * @flags: MBZ.
 * @xclbin_ptr: user pointer to an xclbin image (xrt/xclbin.h, magic
 *	"xclbin2") with an IP_LAYOUT section. Each IP of type IP_KERNEL
 *	whose name is "npu_<op>" or "npu_<op>:<instance>" (op in lower case,
 *	e.g. "npu_gemm_w8a8:cu0") enables that op.
 * @xclbin_size: size of the image, at most %NPU_XCLBIN_MAX_SIZE.
 * @pad: MBZ.
 * @ops_mask: out: bit n set when opcode n is now enabled.
 */
struct drm_npu_ctx_configure {
	__u32 ctx_id;
	__u32 flags;
	__u64 xclbin_ptr;
	__u32 xclbin_size;
	__u32 pad;
	__u64 ops_mask;
};

#define NPU_CTX_STATE_ACTIVE	0
#define NPU_CTX_STATE_FAULTED	1

/**
 * struct drm_npu_ctx_query - context status (DRM_IOCTL_NPU_CTX_QUERY)
 * @ctx_id: in: context id.
 * @flags: in: MBZ.
 * @state: out: %NPU_CTX_STATE_*. A faulted context refuses new
 *	submissions with -EIO until destroyed.
 * @pad: MBZ.
 * @submitted: out: last sequence number handed out.
 * @completed: out: number of jobs that reached a final state.
 * @fault_seqno: out: sequence number of the job that faulted, or 0.
 */
struct drm_npu_ctx_query {
	__u32 ctx_id;
	__u32 flags;
	__u32 state;
	__u32 pad;
	__u64 submitted;
	__u64 completed;
	__u64 fault_seqno;
};

/* Most in-syncobjs of one submission. */
#define NPU_MAX_IN_SYNCOBJS	16
/* Most entries of a submission's BO list. */
#define NPU_MAX_BO_HANDLES	256

/**
 * struct drm_npu_submit - submit a command buffer (DRM_IOCTL_NPU_SUBMIT)
 * @ctx_id: in: context id.
 * @flags: in: MBZ.
 * @cmd_handle: in: GEM handle of the BO holding the command buffer.
 * @out_syncobj: in: syncobj handle to receive the job's fence, or 0.
 * @cmd_offset: in: byte offset of the ERT header, a multiple of 4.
 * @in_syncobjs: in: user pointer to an array of __u32 syncobj handles
 *	the job waits for, or 0 when @in_syncobj_count is 0.
 * @in_syncobj_count: in: entries in @in_syncobjs, at most
 *	%NPU_MAX_IN_SYNCOBJS.
 * @pad: MBZ.
 * @seqno: out: sequence number of the job within the context, from 1.
 * @bo_handles: in: user pointer to an array of __u32 GEM handles, the BOs
 *	the job uses, each once: the command BO and every operand must be
 *	among them (else -EINVAL). 0 when @bo_handle_count is 0: the job's
 *	BOs are then its command BO and operands. uAPI 1.1.
 * @bo_handle_count: in: entries in @bo_handles, at most
 *	%NPU_MAX_BO_HANDLES.
 * @pad2: MBZ.
 *
 * Implicit sync: the job's fence joins its BOs' reservation objects (as a
 * writer of the command BO and of every operand an op writes, a reader of
 * the others), so a dma-buf exported from a BO carries the fences of the
 * jobs using it; and the job waits for the fences other devices put there
 * (for a BO it writes, every fence; else the writers'). Jobs of this
 * device are ordered by their contexts and syncobjs, not by their BOs.
 */
struct drm_npu_submit {
	__u32 ctx_id;
	__u32 flags;
	__u32 cmd_handle;
	__u32 out_syncobj;
	__u64 cmd_offset;
	__u64 in_syncobjs;
	__u32 in_syncobj_count;
	__u32 pad;
	__u64 seqno;
	__u64 bo_handles;
	__u32 bo_handle_count;
	__u32 pad2;
};

/* DRM_IOCTL_NPU_WAIT: timeout_ns is a CLOCK_MONOTONIC time. */
#define NPU_WAIT_F_ABSOLUTE	0x1u
#define NPU_WAIT_FLAGS_MASK	NPU_WAIT_F_ABSOLUTE

/**
 * struct drm_npu_wait - wait for a job (DRM_IOCTL_NPU_WAIT)
 * @ctx_id: in: context id.
 * @flags: in: 0 or %NPU_WAIT_F_ABSOLUTE.
 * @seqno: in: sequence number from DRM_IOCTL_NPU_SUBMIT.
 * @timeout_ns: in: without flags, a relative timeout in ns: 0 polls,
 *	negative waits forever. When a signal interrupts the wait, the time
 *	left is written back here, so the restarted call waits only for the
 *	rest. With %NPU_WAIT_F_ABSOLUTE, the CLOCK_MONOTONIC time in ns to
 *	wait until (a time passed polls).
 * @state: out: final %NPU_ERT_STATE_* of the job, or 0 when the job is
 *	older than the fence window (read the command header instead).
 * @pad: MBZ.
 *
 * Returns 0 when the job is done, -ETIME when the timeout passed first,
 * -EINVAL for a sequence number not yet handed out.
 */
struct drm_npu_wait {
	__u32 ctx_id;
	__u32 flags;
	__u64 seqno;
	__s64 timeout_ns;
	__u32 state;
	__u32 pad;
};

#define DRM_IOCTL_NPU_GET_INFO \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_NPU_GET_INFO, struct drm_npu_get_info)
#define DRM_IOCTL_NPU_BO_CREATE \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_NPU_BO_CREATE, struct drm_npu_bo_create)
#define DRM_IOCTL_NPU_BO_INFO \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_NPU_BO_INFO, struct drm_npu_bo_info)
#define DRM_IOCTL_NPU_BO_SYNC \
	DRM_IOW(DRM_COMMAND_BASE + DRM_NPU_BO_SYNC, struct drm_npu_bo_sync)
#define DRM_IOCTL_NPU_CTX_CREATE \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_NPU_CTX_CREATE, struct drm_npu_ctx_create)
#define DRM_IOCTL_NPU_CTX_DESTROY \
	DRM_IOW(DRM_COMMAND_BASE + DRM_NPU_CTX_DESTROY, struct drm_npu_ctx_destroy)
#define DRM_IOCTL_NPU_CTX_CONFIGURE \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_NPU_CTX_CONFIGURE, struct drm_npu_ctx_configure)
#define DRM_IOCTL_NPU_CTX_QUERY \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_NPU_CTX_QUERY, struct drm_npu_ctx_query)
#define DRM_IOCTL_NPU_SUBMIT \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_NPU_SUBMIT, struct drm_npu_submit)
#define DRM_IOCTL_NPU_WAIT \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_NPU_WAIT, struct drm_npu_wait)

#if defined(__cplusplus)
}
#endif

#endif /* _UAPI_DRM_NPU_ACCEL_H_ */
