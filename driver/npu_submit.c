// SPDX-License-Identifier: GPL-2.0-only
/*
 * npu SUBMIT: the command buffer's ops snapshotted and checked, the job's
 * BO set (explicit list or the ops' operands) with implicit sync through
 * their reservation objects, in-syncobjs, the out syncobj and the
 * context's timeline syncobj, then the drm_sched queue.
 *
 * Copyright (c) 2026 The npud authors
 */

#include <linux/dma-fence-chain.h>
#include <linux/dma-resv.h>
#include <linux/pm_runtime.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include <drm/drm_drv.h>
#include <drm/drm_gem.h>
#include <drm/drm_syncobj.h>

#include "npu_drv.h"
#include "npu_trace.h"

/* Copy the ops out of the command BO and resolve and check every operand. */
static int npu_submit_load_cmd(struct npu_job *job, struct drm_file *file,
			       u64 ops_mask)
{
	struct npu_bo *cmd = to_npu_bo(job->cmd_bo);
	u64 size = cmd->base.base.size;
	u64 sizes[NPU_OP_MAX_BUFS], scratch = 0;
	u32 hdr, count, i, j;
	int ret;

	if (job->cmd_offset & 3 || job->cmd_offset > size - 4)
		return -EINVAL;
	hdr = READ_ONCE(*(u32 *)(cmd->vaddr + job->cmd_offset));
	count = (hdr & NPU_ERT_COUNT_MASK) >> NPU_ERT_COUNT_SHIFT;
	if ((hdr & NPU_ERT_OPCODE_MASK) >> NPU_ERT_OPCODE_SHIFT != NPU_ERT_START_CU ||
	    (hdr & NPU_ERT_TYPE_MASK) >> NPU_ERT_TYPE_SHIFT != NPU_ERT_CU ||
	    (hdr & NPU_ERT_CUSTOM_MASK))
		return -EINVAL;
	if (!count || count % NPU_OP_WORDS)
		return -EINVAL;
	if ((u64)count * 4 > size - 4 - job->cmd_offset)
		return -EINVAL;

	job->nops = count / NPU_OP_WORDS;
	job->ops = kvmalloc_array(job->nops, sizeof(*job->ops), GFP_KERNEL);
	job->bos = kvcalloc(job->nops * NPU_OP_MAX_BUFS, sizeof(*job->bos),
			    GFP_KERNEL);
	if (!job->ops || !job->bos)
		return -ENOMEM;
	memcpy(job->ops, cmd->vaddr + job->cmd_offset + 4,
	       job->nops * sizeof(*job->ops));

	for (i = 0; i < job->nops; i++) {
		const struct drm_npu_op *op = &job->ops[i];
		struct npu_bo **bos = &job->bos[i * NPU_OP_MAX_BUFS];

		ret = npu_op_sizes(op, sizes);
		if (ret)
			return ret;
		if (!(ops_mask & BIT_ULL(op->opcode)))
			return -EPERM;
		for (j = 0; j < NPU_OP_MAX_BUFS; j++) {
			if (!sizes[j])
				continue;
			bos[j] = npu_bo_lookup(file, op->buf[j].handle);
			if (!bos[j])
				return -ENOENT;
		}
		ret = npu_op_check_bufs(op, bos, sizes);
		if (ret)
			return ret;
		scratch = max(scratch, npu_op_scratch_size(op));
	}

	/* The engine's working memory: it may not allocate while it runs. */
	job->hw_fence = kzalloc(sizeof(*job->hw_fence), GFP_KERNEL);
	if (!job->hw_fence)
		return -ENOMEM;
	if (scratch) {
		job->scratch = kvmalloc(scratch, GFP_KERNEL_ACCOUNT);
		if (!job->scratch)
			return -ENOMEM;
	}
	return 0;
}

/* Index of obj in the job's BO set, or -1. */
static int npu_submit_find_obj(const struct npu_job *job,
			       const struct drm_gem_object *obj)
{
	u32 i;

	for (i = 0; i < job->nobjs; i++)
		if (job->objs[i] == obj)
			return i;
	return -1;
}

/*
 * The BOs the job uses, each once, with whether the job writes it: the
 * explicit list of SUBMIT (every operand and the command BO must be in it)
 * or else the ops' operands and the command BO.
 */
static int npu_submit_bo_set(struct npu_job *job, struct drm_file *file,
			     const struct drm_npu_submit *args)
{
	u32 max = args->bo_handle_count ?: job->nops * NPU_OP_MAX_BUFS + 1;
	u32 *handles = NULL;
	u32 i;
	int k;

	job->objs = kvcalloc(max, sizeof(*job->objs), GFP_KERNEL);
	job->obj_write = kvcalloc(max, sizeof(*job->obj_write), GFP_KERNEL);
	if (!job->objs || !job->obj_write)
		return -ENOMEM;

	if (args->bo_handle_count) {
		handles = memdup_array_user(u64_to_user_ptr(args->bo_handles),
					    args->bo_handle_count, sizeof(u32));
		if (IS_ERR(handles))
			return PTR_ERR(handles);
		for (i = 0; i < args->bo_handle_count; i++) {
			struct npu_bo *bo = npu_bo_lookup(file, handles[i]);

			if (!bo) {
				kvfree(handles);
				return -ENOENT;
			}
			if (npu_submit_find_obj(job, &bo->base.base) >= 0) {
				drm_gem_object_put(&bo->base.base);
				kvfree(handles);
				return -EINVAL;	/* listed twice */
			}
			job->objs[job->nobjs++] = &bo->base.base;
		}
		kvfree(handles);
	}

	/* The command BO (its header gets the state) and every operand. */
	for (i = 0; i <= job->nops * NPU_OP_MAX_BUFS; i++) {
		struct drm_gem_object *obj;
		bool write;

		if (i == job->nops * NPU_OP_MAX_BUFS) {
			obj = job->cmd_bo;
			write = true;
		} else if (job->bos[i]) {
			obj = &job->bos[i]->base.base;
			write = npu_op_writes(&job->ops[i / NPU_OP_MAX_BUFS],
					      i % NPU_OP_MAX_BUFS);
		} else {
			continue;
		}
		k = npu_submit_find_obj(job, obj);
		if (k < 0) {
			if (args->bo_handle_count)
				return -EINVAL;	/* not in the list */
			k = job->nobjs++;
			drm_gem_object_get(obj);
			job->objs[k] = obj;
		}
		job->obj_write[k] |= write;
	}
	return 0;
}

static int npu_submit_in_syncobjs(struct npu_job *job, struct drm_file *file,
				  const struct drm_npu_submit *args)
{
	u32 handles[NPU_MAX_IN_SYNCOBJS];
	u32 i;
	int ret;

	if (!args->in_syncobj_count)
		return 0;
	if (copy_from_user(handles, u64_to_user_ptr(args->in_syncobjs),
			   args->in_syncobj_count * sizeof(u32)))
		return -EFAULT;
	for (i = 0; i < args->in_syncobj_count; i++) {
		ret = drm_sched_job_add_syncobj_dependency(&job->base, file,
							   handles[i], 0);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * Implicit sync with other devices: the job waits for the fences they put
 * in its BOs (writers, and readers of the BOs it writes). This device's own
 * jobs are ordered by their contexts and syncobjs, never by the BOs they
 * share (a HIGH priority job does not queue behind a LOW one that wrote the
 * same BO).
 */
static int npu_submit_foreign_deps(struct npu_job *job, struct drm_gem_object *obj,
				   bool write)
{
	struct dma_resv_iter cursor;
	struct dma_fence *fence;
	int ret;

	dma_resv_for_each_fence(&cursor, obj->resv, dma_resv_usage_rw(write), fence) {
		struct drm_sched_fence *s_fence = to_drm_sched_fence(fence);

		if (s_fence && s_fence->sched == &job->ndev->sched)
			continue;
		ret = drm_sched_job_add_dependency(&job->base, dma_fence_get(fence));
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * Lock the job's BOs; fence slots are reserved now, so adding the job's
 * own fence later allocates nothing.
 */
static int npu_submit_lock_bos(struct npu_job *job, struct ww_acquire_ctx *ww)
{
	u32 i;
	int ret;

	ret = drm_gem_lock_reservations(job->objs, job->nobjs, ww);
	if (ret)
		return ret;
	for (i = 0; i < job->nobjs; i++) {
		ret = dma_resv_reserve_fences(job->objs[i]->resv, 1);
		if (!ret)
			ret = npu_submit_foreign_deps(job, job->objs[i],
						      job->obj_write[i]);
		if (ret) {
			drm_gem_unlock_reservations(job->objs, job->nobjs, ww);
			return ret;
		}
	}
	return 0;
}

/*
 * The job's fence goes out everywhere, then the job to the queue: from
 * drm_sched_job_arm() on nothing may allocate (the fence exists, its
 * signalling may wait for us), so everything was allocated before.
 */
static void npu_submit_push(struct npu_job *job, struct npu_ctx *ctx,
			    struct drm_syncobj *out_sync,
			    struct dma_fence_chain *chain,
			    struct dma_fence **slot, struct ww_acquire_ctx *ww,
			    u64 *ret_seqno)
{
	struct npu_device *ndev = job->ndev;
	struct dma_fence *done;
	bool cookie;
	u32 i;

	drm_sched_job_arm(&job->base);
	cookie = dma_fence_begin_signalling();
	done = &job->base.s_fence->finished;
	job->seqno = ++ctx->seqno;
	dma_fence_put(*slot);
	*slot = dma_fence_get(done);
	atomic64_set(&ctx->states[job->seqno % NPU_FENCE_WINDOW], job->seqno << 8);
	if (out_sync)
		drm_syncobj_replace_fence(out_sync, done);
	if (chain)
		drm_syncobj_add_point(ctx->syncobj, chain, done, job->seqno);
	for (i = 0; i < job->nobjs; i++)
		dma_resv_add_fence(job->objs[i]->resv, done,
				   job->obj_write[i] ? DMA_RESV_USAGE_WRITE :
				   DMA_RESV_USAGE_READ);
	drm_gem_unlock_reservations(job->objs, job->nobjs, ww);
	npu_job_write_state(job, NPU_ERT_STATE_SUBMITTED);
	atomic_inc(&ndev->cnt.jobs_alive);
	atomic64_inc(&ndev->cnt.jobs_submitted);
	*ret_seqno = job->seqno;
	/* Under ctx->lock: CTX_DESTROY finds every pushed job in the list. */
	atomic_inc(&ctx->queued);
	spin_lock(&ctx->job_lock);
	list_add_tail(&job->ctx_node, &ctx->jobs);
	spin_unlock(&ctx->job_lock);
	trace_npu_job_submit(job);
	/* The job may run and be freed from here on: no access after this. */
	drm_sched_entity_push_job(&job->base);
	dma_fence_end_signalling(cookie);
}

/*
 * The window's slot for the next job, once the job NPU_FENCE_WINDOW back
 * has ended; returns 0 with ctx->lock held. Waits for that job without the
 * lock, so that CTX_DESTROY (and the other submitters) go on meanwhile.
 */
static int npu_submit_slot(struct npu_ctx *ctx, struct dma_fence ***ret_slot)
{
	struct dma_fence **slot, *oldest;
	int ret;

	for (;;) {
		mutex_lock(&ctx->lock);
		if (ctx->destroyed) {
			mutex_unlock(&ctx->lock);
			return -ENOENT;
		}
		slot = &ctx->fences[(ctx->seqno + 1) % NPU_FENCE_WINDOW];
		if (!*slot || dma_fence_is_signaled(*slot)) {
			*ret_slot = slot;
			return 0;
		}
		oldest = dma_fence_get(*slot);
		mutex_unlock(&ctx->lock);
		ret = dma_fence_wait(oldest, true);
		dma_fence_put(oldest);
		if (ret)
			return ret;
	}
}

/* Queue a checked job: ctx->lock orders the sequence numbers. */
static int npu_submit_queue(struct npu_job *job, struct npu_ctx *ctx,
			    struct drm_syncobj *out_sync,
			    struct dma_fence_chain *chain, u64 *ret_seqno)
{
	struct ww_acquire_ctx ww;
	struct dma_fence **slot;
	int ret;

	ret = npu_submit_slot(ctx, &slot);
	if (ret)
		return ret;
	ret = npu_submit_lock_bos(job, &ww);
	if (ret)
		goto out_unlock;
	/* Unlocks the BOs before the job is queued: it may be freed then. */
	npu_submit_push(job, ctx, out_sync, chain, slot, &ww, ret_seqno);
out_unlock:
	mutex_unlock(&ctx->lock);
	return ret;
}

int npu_ioctl_submit(struct drm_device *dev, void *data, struct drm_file *file)
{
	struct npu_device *ndev = to_npu_device(dev);
	struct npu_file *nfile = file->driver_priv;
	struct drm_npu_submit *args = data;
	struct drm_syncobj *out_sync = NULL;
	struct dma_fence_chain *chain = NULL;
	struct npu_bo *cmd_bo;
	struct npu_ctx *ctx;
	struct npu_job *job;
	u64 ops_mask;
	int ret, idx;

	if (args->flags || args->pad || args->pad2)
		return -EINVAL;
	if (args->in_syncobj_count > NPU_MAX_IN_SYNCOBJS ||
	    args->bo_handle_count > NPU_MAX_BO_HANDLES)
		return -E2BIG;
	if ((!args->in_syncobj_count && args->in_syncobjs) ||
	    (!args->bo_handle_count && args->bo_handles))
		return -EINVAL;
	if (!drm_dev_enter(dev, &idx))
		return -ENODEV;

	ctx = npu_ctx_lookup(nfile, args->ctx_id);
	if (!ctx) {
		ret = -ENOENT;
		goto err_exit;
	}
	if (atomic_read(&ctx->faulted)) {
		ret = -EIO;
		goto err_ctx_put;
	}

	cmd_bo = npu_bo_lookup(file, args->cmd_handle);
	if (!cmd_bo) {
		ret = -ENOENT;
		goto err_ctx_put;
	}

	if (args->out_syncobj) {
		out_sync = drm_syncobj_find(file, args->out_syncobj);
		if (!out_sync) {
			ret = -ENOENT;
			goto err_bo_put;
		}
	}

	job = kzalloc(sizeof(*job), GFP_KERNEL);
	if (!job) {
		ret = -ENOMEM;
		goto err_sync_put;
	}
	job->ndev = ndev;
	job->ctx = ctx;
	job->cmd_bo = &cmd_bo->base.base;
	job->cmd_offset = args->cmd_offset;
	INIT_LIST_HEAD(&job->engine_node);
	INIT_LIST_HEAD(&job->ctx_node);

	mutex_lock(&ctx->lock);
	ops_mask = ctx->ops_mask;
	mutex_unlock(&ctx->lock);

	ret = npu_submit_load_cmd(job, file, ops_mask);
	if (!ret)
		ret = npu_submit_bo_set(job, file, args);
	if (ret)
		goto err_free_job;

	ret = drm_sched_job_init(&job->base, &ctx->entity, 1, NULL,
				 file->client_id);
	if (ret)
		goto err_free_job;

	ret = npu_submit_in_syncobjs(job, file, args);
	if (ret)
		goto err_job_cleanup;

	if (ctx->syncobj) {
		chain = dma_fence_chain_alloc();
		if (!chain) {
			ret = -ENOMEM;
			goto err_job_cleanup;
		}
	}

	/* The engine stays awake while the job lives: free_job lets it go. */
	ret = pm_runtime_resume_and_get(dev->dev);
	if (ret)
		goto err_chain_free;

	ret = npu_submit_queue(job, ctx, out_sync, chain, &args->seqno);
	if (ret)
		goto err_pm_put;

	if (out_sync)
		drm_syncobj_put(out_sync);
	drm_dev_exit(idx);
	return 0;

err_pm_put:
	pm_runtime_put_autosuspend(dev->dev);
err_chain_free:
	dma_fence_chain_free(chain);
err_job_cleanup:
	drm_sched_job_cleanup(&job->base);
err_free_job:
	npu_job_put_resources(job);
	kfree(job);
err_sync_put:
	if (out_sync)
		drm_syncobj_put(out_sync);
err_bo_put:
	drm_gem_object_put(&cmd_bo->base.base);
err_ctx_put:
	npu_ctx_put(ctx);
err_exit:
	drm_dev_exit(idx);
	return ret;
}
