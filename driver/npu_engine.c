// SPDX-License-Identifier: GPL-2.0-only
/*
 * npu software execution engine: a kernel thread per device that runs the
 * ops of one job at a time on the BOs, with the scalar reference code of
 * daemon/libnpu/npu_ref.c, in bounded chunks inside kernel_fpu_begin/end.
 *
 * Copyright (c) 2026 The npud authors
 */

#include <linux/delay.h>
#include <linux/dma-fence.h>
#include <linux/freezer.h>
#include <linux/kthread.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

#include <asm/fpu/api.h>

#include <drm/drm_print.h>

#include "npu_drv.h"
#include "npu_ref.h"
#include "npu_simd.h"

static bool npu_simd = true;
module_param_named(simd, npu_simd, bool, 0444);
MODULE_PARM_DESC(simd, "Use AVX2 integer GEMMs when the cpu has them");

/* Work per kernel_fpu_begin/end section, in multiply-accumulates. */
#define NPU_CHUNK_WORK	BIT(16)

struct npu_exec {
	struct npu_engine *eng;
	const struct drm_npu_op *op;
	void *p[NPU_OP_MAX_BUFS];
	float *scratch;
	s32 *table;
};

static bool npu_engine_aborted(struct npu_engine *eng)
{
	return READ_ONCE(eng->abort) || kthread_should_stop();
}

/* Every FPU section of the engine starts here (counted for debugfs). */
static void npu_engine_fpu_begin(struct npu_engine *eng)
{
	kernel_fpu_begin();
	atomic64_inc(&eng->fpu_sections);
}

/* Between chunks: leave the FPU section and let others run. */
static int npu_engine_yield(struct npu_engine *eng)
{
	kernel_fpu_end();
	cond_resched();
	if (npu_engine_aborted(eng))
		return -ETIMEDOUT;
	npu_engine_fpu_begin(eng);
	return 0;
}

static u32 npu_rows_per_chunk(u64 work_per_row)
{
	u64 rows = NPU_CHUNK_WORK / max_t(u64, work_per_row, 1);

	return clamp_t(u64, rows, 1, U32_MAX);
}

static void npu_exec_gemm_chunk(struct npu_exec *x, u32 m, u32 n0, u32 n1)
{
	const u32 *d = x->op->dim;
	bool avx2 = x->eng->avx2;

	switch (x->op->opcode) {
	case NPU_OP_GEMM_W8A8:
	case NPU_OP_GEMM_W8A8_I32:
		if (avx2)
			npu_simd_gemm_w8a8(x->p[0], x->p[1], x->p[2], x->p[3], x->p[4],
					   x->op->opcode == NPU_OP_GEMM_W8A8_I32,
					   d[1], d[2], m, n0, n1);
		else if (x->op->opcode == NPU_OP_GEMM_W8A8)
			npu_ref_gemm_w8a8(x->p[0], x->p[1], x->p[2], x->p[3],
					  x->p[4], d[1], d[2], m, m + 1, n0, n1);
		else
			npu_ref_gemm_w8a8_i32(x->p[0], x->p[1], x->p[4],
					      d[1], d[2], m, m + 1, n0, n1);
		break;
	default:
		if (avx2)
			npu_simd_gemm_w8a16(x->p[0], x->p[1], x->p[2], x->p[3],
					    x->p[4], d[1], d[2], m, n0, n1);
		else
			npu_ref_gemm_w8a16(x->p[0], x->p[1], x->p[2], x->p[3],
					   x->p[4], d[1], d[2], m, m + 1, n0, n1);
		break;
	}
}

static int npu_exec_gemm(struct npu_exec *x)
{
	const u32 *d = x->op->dim;
	u32 m, n0, n1, cols = npu_rows_per_chunk(d[2]);
	int ret;

	for (m = 0; m < d[0]; m++) {
		for (n0 = 0; n0 < d[1]; n0 = n1) {
			n1 = min(d[1], n0 + cols);
			npu_exec_gemm_chunk(x, m, n0, n1);
			ret = npu_engine_yield(x->eng);
			if (ret)
				return ret;
		}
	}
	return 0;
}

static int npu_exec_rows(struct npu_exec *x)
{
	const struct drm_npu_op *op = x->op;
	const u32 *d = op->dim;
	u32 m0, m1, step;
	int ret;

	if (op->opcode == NPU_OP_ROPE)
		step = npu_rows_per_chunk((u64)d[1] * d[2] * 8);
	else
		step = npu_rows_per_chunk(d[1]);

	for (m0 = 0; m0 < d[0]; m0 = m1) {
		m1 = min(d[0], m0 + step);
		switch (op->opcode) {
		case NPU_OP_RMSNORM:
			npu_ref_rmsnorm_bits(x->p[0], x->p[1], x->p[2], d[1],
					     op->fparam[0], m0, m1);
			break;
		case NPU_OP_ROPE:
			npu_ref_rope_bits(x->p[0], x->p[1], x->p[2], d[1], d[2],
					  op->fparam[0], m0, m1);
			break;
		case NPU_OP_QUANT_I8:
			npu_ref_quant_i8(x->p[0], x->p[1], x->p[2], d[1], m0, m1);
			break;
		default:
			npu_ref_quant_i16(x->p[0], x->p[1], x->p[2], d[1], m0, m1);
			break;
		}
		ret = npu_engine_yield(x->eng);
		if (ret)
			return ret;
	}
	return 0;
}

static int npu_exec_elementwise(struct npu_exec *x)
{
	const struct drm_npu_op *op = x->op;
	size_t n = op->dim[0], i0, i1;
	int ret;

	for (i0 = 0; i0 < n; i0 = i1) {
		i1 = min_t(size_t, n, i0 + NPU_CHUNK_WORK / 8);
		switch (op->opcode) {
		case NPU_OP_SILU_MUL:
			npu_ref_silu_mul(x->p[0], x->p[1], x->p[2], i0, i1);
			break;
		case NPU_OP_ADD:
			npu_ref_add(x->p[0], x->p[1], x->p[2], i0, i1);
			break;
		case NPU_OP_CVT_F32_F16:
			npu_ref_cvt_f32_f16(x->p[0], x->p[1], i0, i1);
			break;
		default:
			memmove((u8 *)x->p[1] + i0, (u8 *)x->p[0] + i0, i1 - i0);
			break;
		}
		ret = npu_engine_yield(x->eng);
		if (ret)
			return ret;
	}
	return 0;
}

/* Work of one exponential of the softmax, in multiply-adds. */
#define NPU_EXP_WORK	32

enum npu_attn_step {
	NPU_ATTN_SCORES,
	NPU_ATTN_EXP,
	NPU_ATTN_VALUES,
	NPU_ATTN_STEPS,
};

/*
 * One (row, head) of attention: up to n_ctx positions of head_dim each,
 * twice, plus an exponential each; in chunks of positions like every
 * other op.
 */
static int npu_exec_attention_row(struct npu_exec *x, const struct npu_ref_attn *a,
				  struct npu_ref_attn_row *r)
{
	u32 t0, t1, n;
	int step, ret;

	for (step = 0; step < NPU_ATTN_STEPS; step++) {
		n = npu_rows_per_chunk(step == NPU_ATTN_EXP ? NPU_EXP_WORK : a->head_dim);
		for (t0 = 0; t0 < r->n; t0 = t1) {
			t1 = min(r->n, t0 + n);
			if (step == NPU_ATTN_SCORES)
				npu_ref_attn_scores(a, r, t0, t1, x->scratch);
			else if (step == NPU_ATTN_EXP)
				npu_ref_attn_exp(r, t0, t1, x->scratch);
			else
				npu_ref_attn_values(a, r, t0, t1, x->scratch);
			ret = npu_engine_yield(x->eng);
			if (ret)
				return ret;
		}
	}
	npu_ref_attn_end(a, r);
	return 0;
}

static int npu_exec_attention(struct npu_exec *x)
{
	const struct drm_npu_op *op = x->op;
	const u32 *d = op->dim;
	struct npu_ref_attn a = {
		.q = x->p[0],
		.k = x->p[1],
		.v = x->p[2],
		.pos = x->p[3],
		.out = x->p[4],
		.block_table = x->table,
		.n_heads = d[1],
		.n_kv_heads = d[2],
		.head_dim = d[3],
		.n_ctx = d[4],
		.block_size = d[5],
		.n_blocks = d[6],
		.kv_f16 = !!(op->flags & NPU_OP_F_KV_F16),
	};
	struct npu_ref_attn_row r;
	u32 m, h;
	int ret;

	/* Copy the float's bits: no float math outside the FPU section. */
	BUILD_BUG_ON(sizeof(a.scale) != sizeof(op->fparam[0]));
	memcpy(&a.scale, &op->fparam[0], sizeof(a.scale));

	for (m = 0; m < d[0]; m++) {
		for (h = 0; h < d[1]; h++) {
			if (npu_ref_attn_begin(&a, m, h, &r))
				return -EINVAL;
			ret = npu_exec_attention_row(x, &a, &r);
			if (ret)
				return ret;
		}
	}
	return 0;
}

/* Copy n s32 of user-mapped memory, each read once and whole. */
static void npu_copy_s32(s32 *dst, const s32 *src, u64 n)
{
	u64 i;

	for (i = 0; i < n; i++)
		dst[i] = READ_ONCE(src[i]);
}

/*
 * Positions and the block table live in user-mapped memory that may change
 * while the op runs: the op uses one copy (in the scratch allocated at
 * submit, npu_op_scratch_size()), taken when it starts and validated whole
 * before anything is written.
 */
static int npu_exec_snapshot(struct npu_job *job, struct npu_exec *x,
			     const u64 sizes[NPU_OP_MAX_BUFS])
{
	const u32 *d = x->op->dim;
	s32 *pos, last = 0;
	u32 m, t;

	switch (x->op->opcode) {
	case NPU_OP_ROPE:
		pos = job->scratch;
		npu_copy_s32(pos, x->p[1], d[0]);
		x->p[1] = pos;
		return 0;
	case NPU_OP_ATTENTION:
		/* n_ctx scores, then the positions, then the table */
		x->scratch = job->scratch;
		pos = (s32 *)(x->scratch + d[4]);
		npu_copy_s32(pos, x->p[3], d[0]);
		x->p[3] = pos;
		for (m = 0; m < d[0]; m++) {
			if (pos[m] < 0 || pos[m] >= d[4])
				return -EINVAL;
			last = max(last, pos[m]);
		}
		if (!d[5])
			return 0;
		x->table = pos + d[0];
		npu_copy_s32(x->table, x->p[5], sizes[5] / sizeof(s32));
		for (t = 0; t <= last / d[5]; t++)
			if (x->table[t] < 0 || x->table[t] >= d[6])
				return -EINVAL;
		return 0;
	default:
		return 0;
	}
}

/*
 * The debugfs engine_delay_us, in CLOCK_MONOTONIC time like the busy time
 * it adds to (a VM's jiffies can run ahead of it, so msleep() may not).
 */
static void npu_engine_delay(u32 us)
{
	ktime_t end = ktime_add_us(ktime_get(), us);
	s64 left;

	while ((left = ktime_us_delta(end, ktime_get())) > 0)
		usleep_range(left, left + 100);
}

static int npu_exec_op(struct npu_device *ndev, struct npu_job *job, u32 i)
{
	struct npu_bo **bos = &job->bos[i * NPU_OP_MAX_BUFS];
	const struct drm_npu_op *op = &job->ops[i];
	struct npu_exec x = { .eng = &ndev->engine, .op = op };
	u64 sizes[NPU_OP_MAX_BUFS];
	int ret, j;

	/* Check every operand again right before touching memory. */
	ret = npu_op_sizes(op, sizes);
	if (!ret)
		ret = npu_op_check_bufs(op, bos, sizes);
	if (ret)
		return ret;
	for (j = 0; j < NPU_OP_MAX_BUFS; j++)
		if (sizes[j])
			x.p[j] = bos[j]->vaddr + op->buf[j].offset;

	ret = npu_exec_snapshot(job, &x, sizes);
	if (ret)
		return ret;

	if (ndev->engine_delay_us)
		npu_engine_delay(ndev->engine_delay_us);

	npu_engine_fpu_begin(&ndev->engine);
	switch (op->opcode) {
	case NPU_OP_GEMM_W8A8:
	case NPU_OP_GEMM_W8A8_I32:
	case NPU_OP_GEMM_W8A16:
		ret = npu_exec_gemm(&x);
		break;
	case NPU_OP_RMSNORM:
	case NPU_OP_ROPE:
	case NPU_OP_QUANT_I8:
	case NPU_OP_QUANT_I16:
		ret = npu_exec_rows(&x);
		break;
	case NPU_OP_ATTENTION:
		ret = npu_exec_attention(&x);
		break;
	default:
		ret = npu_exec_elementwise(&x);
		break;
	}
	/* On -ETIMEDOUT npu_engine_yield() already left the FPU section. */
	if (ret != -ETIMEDOUT)
		kernel_fpu_end();
	return ret;
}

static int npu_engine_exec(struct npu_device *ndev, struct npu_job *job)
{
	struct npu_engine *eng = &ndev->engine;
	u32 i;
	int ret;

	if (job->hang) {
		/* Injected hang: do nothing until the timeout resets us. */
		wait_event(eng->wake, npu_engine_aborted(eng));
		return -ETIMEDOUT;
	}
	for (i = 0; i < job->nops; i++) {
		if (npu_engine_aborted(eng))
			return -ETIMEDOUT;
		ret = npu_exec_op(ndev, job, i);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * Record the job's final state, take it off the engine, then signal its
 * fence: from the signal on, free_job may free the job and its context, so
 * nothing (debugfs included) may find it through the engine any more.
 */
static void npu_engine_complete(struct npu_device *ndev, struct npu_job *job,
				int err)
{
	struct npu_engine *eng = &ndev->engine;
	struct dma_fence *fence = dma_fence_get(job->hw_fence);
	u32 state;

	switch (err) {
	case 0:
		state = NPU_ERT_STATE_COMPLETED;
		break;
	case -ETIMEDOUT:
		state = NPU_ERT_STATE_TIMEOUT;
		break;
	default:
		err = -EIO;
		state = NPU_ERT_STATE_ERROR;
		break;
	}
	npu_job_end(job, state);
	if (err)
		dma_fence_set_error(fence, err);

	spin_lock(&eng->lock);
	if (eng->current_job == job) {
		eng->current_job = NULL;
		eng->abort = false;
	}
	spin_unlock(&eng->lock);

	dma_fence_signal(fence);
	dma_fence_put(fence);
	wake_up_all(&eng->done);
}

/* A job to take: the engine runs jobs unless runtime PM suspended it. */
static bool npu_engine_has_work(struct npu_engine *eng)
{
	return !READ_ONCE(eng->suspended) && !list_empty_careful(&eng->queue);
}

static int npu_engine_thread(void *data)
{
	struct npu_device *ndev = data;
	struct npu_engine *eng = &ndev->engine;
	struct npu_job *job;
	ktime_t start;
	bool cookie;
	s64 busy;
	int ret;

	/*
	 * System suspend freezes the engine while it waits for a job, the
	 * only place it sleeps; runtime suspend keeps it waiting there too
	 * (a parked thread could not be frozen).
	 */
	set_freezable();
	while (!kthread_should_stop()) {
		wait_event_freezable(eng->wake, kthread_should_stop() ||
				     npu_engine_has_work(eng));
		job = NULL;
		spin_lock(&eng->lock);
		if (!eng->suspended) {
			job = list_first_entry_or_null(&eng->queue, struct npu_job,
						       engine_node);
			if (job) {
				list_del_init(&job->engine_node);
				eng->current_job = job;
				job->started = ktime_get();
			}
		}
		spin_unlock(&eng->lock);
		if (!job)
			continue;

		/* From here to the fence, nothing may allocate. */
		cookie = dma_fence_begin_signalling();
		start = ktime_get();
		ret = npu_engine_exec(ndev, job);
		busy = ktime_to_ns(ktime_sub(ktime_get(), start));
		atomic64_add(busy, &ndev->cnt.busy_ns);
		atomic64_add(busy, &job->ctx->stats->busy_ns);

		if (READ_ONCE(eng->abort))
			ret = -ETIMEDOUT;
		npu_engine_complete(ndev, job, ret);
		dma_fence_end_signalling(cookie);
	}
	return 0;
}

static int npu_sw_engine_init(struct npu_device *ndev)
{
	struct npu_engine *eng = &ndev->engine;
	struct task_struct *t;

	spin_lock_init(&eng->lock);
	INIT_LIST_HEAD(&eng->queue);
	eng->avx2 = npu_simd && boot_cpu_has(X86_FEATURE_AVX2) &&
		boot_cpu_has(X86_FEATURE_OSXSAVE);
	drm_info(&ndev->drm, "engine: %s integer GEMMs\n",
		 eng->avx2 ? "AVX2" : "scalar");
	init_waitqueue_head(&eng->wake);
	init_waitqueue_head(&eng->done);

	t = kthread_run(npu_engine_thread, ndev, "npu%u-engine", ndev->index);
	if (IS_ERR(t))
		return PTR_ERR(t);
	eng->thread = t;
	return 0;
}

static void npu_sw_engine_fini(struct npu_device *ndev)
{
	struct npu_engine *eng = &ndev->engine;

	kthread_stop(eng->thread);
	drm_WARN_ON(&ndev->drm, !list_empty(&eng->queue));
}

static void npu_sw_engine_run(struct npu_device *ndev, struct npu_job *job)
{
	struct npu_engine *eng = &ndev->engine;

	spin_lock(&eng->lock);
	list_add_tail(&job->engine_node, &eng->queue);
	spin_unlock(&eng->lock);
	wake_up_all(&eng->wake);
}

static int npu_sw_engine_reset(struct npu_device *ndev, struct npu_job *job)
{
	struct npu_engine *eng = &ndev->engine;
	bool abort = false;
	int ret = 0;

	/*
	 * A job hangs when it has run for the job timeout. drm_sched counts
	 * the timeout from when it handed the job over, and the engine thread
	 * takes it at once unless it was frozen for a system suspend or not
	 * scheduled: then it took the job later (it has run for less than
	 * 9/10 of the timeout) or not yet (a job reaches the engine once the
	 * one before it has ended, so it waits for nothing else).
	 */
	spin_lock(&eng->lock);
	if (eng->current_job == job &&
	    ktime_ms_delta(ktime_get(), job->started) * 10 >=
	    (s64)npu_job_timeout_ms * 9)
		abort = true;
	else if (eng->current_job == job || !list_empty(&job->engine_node))
		ret = -EBUSY;
	if (abort)
		eng->abort = true;
	spin_unlock(&eng->lock);
	if (!abort)
		return ret;

	/* The job is not freed before the timeout handler returns. */
	wake_up_all(&eng->wake);
	wait_event(eng->done, dma_fence_is_signaled(job->hw_fence));
	/* It may have completed just before the abort. */
	return atomic_read(&job->state) == NPU_ERT_STATE_TIMEOUT;
}

/*
 * Runtime PM: no job holds a reference, so the engine is idle; it takes no
 * job until resumed.
 */
static int npu_sw_engine_suspend(struct npu_device *ndev)
{
	struct npu_engine *eng = &ndev->engine;
	bool busy;

	spin_lock(&eng->lock);
	busy = eng->current_job || !list_empty(&eng->queue);
	if (!busy)
		eng->suspended = true;
	spin_unlock(&eng->lock);
	return busy ? -EBUSY : 0;
}

static int npu_sw_engine_resume(struct npu_device *ndev)
{
	struct npu_engine *eng = &ndev->engine;

	spin_lock(&eng->lock);
	eng->suspended = false;
	spin_unlock(&eng->lock);
	wake_up_all(&eng->wake);
	return 0;
}

const struct npu_engine_ops npu_sw_engine_ops = {
	.init = npu_sw_engine_init,
	.fini = npu_sw_engine_fini,
	.run = npu_sw_engine_run,
	.reset = npu_sw_engine_reset,
	.suspend = npu_sw_engine_suspend,
	.resume = npu_sw_engine_resume,
};
