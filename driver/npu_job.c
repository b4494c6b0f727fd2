// SPDX-License-Identifier: GPL-2.0-only
/*
 * npu jobs: their states, the drm_sched backend (run, timeout with engine
 * reset, free) and waiting by sequence number.
 *
 * Copyright (c) 2026 The npud authors
 */

#include <linux/dma-fence.h>
#include <linux/pm_runtime.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include <drm/drm_drv.h>
#include <drm/drm_managed.h>
#include <drm/drm_print.h>
#include <drm/drm_syncobj.h>
#include <linux/npu_genl.h>

#include "npu_drv.h"
#include "npu_trace.h"

static const char *npu_fence_driver_name(struct dma_fence *fence)
{
	return NPU_DRIVER_NAME;
}

static const char *npu_fence_timeline_name(struct dma_fence *fence)
{
	return "npu-engine";
}

static const struct dma_fence_ops npu_fence_ops = {
	.get_driver_name = npu_fence_driver_name,
	.get_timeline_name = npu_fence_timeline_name,
};

/**
 * npu_job_write_state - write a state into the job's ERT header
 * @job: the job
 * @state: an NPU_ERT_STATE_* value
 */
void npu_job_write_state(struct npu_job *job, u32 state)
{
	struct npu_bo *bo = to_npu_bo(job->cmd_bo);
	u32 *hdr = bo->vaddr + job->cmd_offset;
	u32 v;

	v = READ_ONCE(*hdr);
	WRITE_ONCE(*hdr, (v & ~NPU_ERT_STATE_MASK) | (state << NPU_ERT_STATE_SHIFT));
	/* Make the state visible before the fence signals. */
	wmb();
}

/*
 * A final state, where WAIT, the command header, CTX_QUERY and the counters
 * show it: before the job's fence signals. So does a timeout's trace event,
 * netlink event and context fault: whoever the fence wakes finds them all.
 */
static void npu_job_record(struct npu_job *job, u32 state)
{
	atomic64_t *slot = &job->ctx->states[job->seqno % NPU_FENCE_WINDOW];
	struct npu_counters *cnt = &job->ndev->cnt;

	npu_job_write_state(job, state);
	if (state == NPU_ERT_STATE_TIMEOUT) {
		trace_npu_job_timeout(job);
		npu_genl_event(job->ndev, NPU_GENL_EVENT_JOB_TIMEOUT, job->ctx,
			       job->seqno);
		npu_ctx_fault(job->ctx, job->seqno);
	}
	trace_npu_job_done(job);
	/* Only if the slot still belongs to this job. */
	atomic64_cmpxchg(slot, job->seqno << 8, (job->seqno << 8) | state);
	if (state == NPU_ERT_STATE_COMPLETED) {
		atomic64_inc(&cnt->jobs_completed);
	} else if (state == NPU_ERT_STATE_TIMEOUT) {
		atomic64_inc(&cnt->jobs_timedout);
		/* Only an engine reset ends a job with TIMEOUT. */
		atomic64_inc(&cnt->resets);
	} else {
		atomic64_inc(&cnt->jobs_failed);
	}
	atomic64_inc(&job->ctx->completed);
}

/* The job left the queued state: destroy and close wait for that. */
static void npu_job_dequeued(struct npu_job *job)
{
	if (atomic_dec_and_test(&job->ctx->queued))
		wake_up_all(&job->ctx->idle_wq);
}

/* A queued job starts; false when it was aborted first. */
static bool npu_job_start(struct npu_job *job)
{
	if (atomic_cmpxchg(&job->state, 0, NPU_ERT_STATE_RUNNING))
		return false;
	npu_job_dequeued(job);
	return true;
}

/**
 * npu_job_abort - abort a job that has not started
 * @job: the job
 *
 * Records %NPU_ERT_STATE_ABORT before any fence of the job signals.
 *
 * Return: true when the job was still queued and is now aborted.
 */
bool npu_job_abort(struct npu_job *job)
{
	if (atomic_cmpxchg(&job->state, 0, NPU_ERT_STATE_ABORT))
		return false;
	npu_job_record(job, NPU_ERT_STATE_ABORT);
	npu_job_dequeued(job);
	return true;
}

/**
 * npu_job_end - record the final state of a started job
 * @job: the job
 * @state: an NPU_ERT_STATE_* final state
 *
 * Called once by the engine, before the job's hardware fence signals.
 */
void npu_job_end(struct npu_job *job, u32 state)
{
	if (atomic_cmpxchg(&job->state, NPU_ERT_STATE_RUNNING, state) ==
	    NPU_ERT_STATE_RUNNING)
		npu_job_record(job, state);
}

static u32 npu_state_from_error(int err)
{
	switch (err) {
	case 0:
		return NPU_ERT_STATE_COMPLETED;
	case -ETIMEDOUT:
		return NPU_ERT_STATE_TIMEOUT;
	case -EINVAL:
	case -EIO:
	case -ENOMEM:
		return NPU_ERT_STATE_ERROR;
	default:
		return NPU_ERT_STATE_ABORT;
	}
}

static struct dma_fence *npu_job_hand_over(struct drm_sched_job *sched_job)
{
	struct npu_job *job = to_npu_job(sched_job);
	struct npu_device *ndev = job->ndev;
	struct dma_fence *fence;

	if (sched_job->s_fence->finished.error || atomic_read(&job->ctx->faulted))
		/* Its context faulted (or CTX_DESTROY aborted it first). */
		return ERR_PTR(npu_job_abort(job) ? -ECANCELED : -ESRCH);
	if (!npu_job_start(job))
		/* Aborted by CTX_DESTROY or the close of its file. */
		return ERR_PTR(-ESRCH);

	/* Allocated at submit: run_job is on the fence signalling path. */
	fence = job->hw_fence;
	dma_fence_init(fence, &npu_fence_ops, &ndev->fence_lock,
		       ndev->fence_context, atomic64_inc_return(&ndev->fence_seqno));
	job->hw_fence_live = true;
	job->hang = npu_fault_hang(ndev);
	trace_npu_job_run(job);
	ndev->engine_ops->run(ndev, job);
	return dma_fence_get(fence);
}

/*
 * The scheduler's callbacks are on the fence signalling path: a job's fence
 * waits for them, so they must not allocate memory (lockdep checks it in
 * these sections).
 */
static struct dma_fence *npu_job_run(struct drm_sched_job *sched_job)
{
	struct dma_fence *fence;
	bool cookie;

	cookie = dma_fence_begin_signalling();
	fence = npu_job_hand_over(sched_job);
	dma_fence_end_signalling(cookie);
	return fence;
}

static void npu_job_reset(struct drm_sched_job *sched_job);

static enum drm_gpu_sched_stat npu_job_timedout(struct drm_sched_job *sched_job)
{
	struct npu_device *ndev = to_npu_job(sched_job)->ndev;
	bool cookie;

	/*
	 * No job starts meanwhile, and no entity teardown restarts the
	 * submission under us (sched_lock). Stopped before the signalling
	 * section: waiting in it for run_job, a signalling section itself,
	 * reads to lockdep as a circular dependency on dma_fence_map.
	 */
	mutex_lock(&ndev->sched_lock);
	drm_sched_wqueue_stop(&ndev->sched);
	cookie = dma_fence_begin_signalling();
	npu_job_reset(sched_job);
	dma_fence_end_signalling(cookie);
	mutex_unlock(&ndev->sched_lock);
	return DRM_GPU_SCHED_STAT_NOMINAL;
}

static void npu_job_reset(struct drm_sched_job *sched_job)
{
	struct npu_job *job = to_npu_job(sched_job);
	struct npu_device *ndev = job->ndev;
	struct drm_gpu_scheduler *sched = &ndev->sched;
	int ret;

	/*
	 * The scheduler's queues are stopped; the engine ends this job with
	 * its single final state (TIMEOUT, or COMPLETED if it finished just
	 * before) and signals its fence before drm_sched_stop() looks at it.
	 * So the scheduler finds no job in flight and cancels none: the fence
	 * error is the engine's, the same state WAIT and the header show.
	 */
	ret = ndev->engine_ops->reset(ndev, job);
	if (ret < 0) {
		/*
		 * It has not run for the timeout yet: back at the head of the
		 * pending list, where drm_sched took it from, and drm_sched
		 * arms a new timeout (drm_sched_stop() would cancel the job).
		 */
		spin_lock(&sched->job_list_lock);
		list_add(&sched_job->list, &sched->pending_list);
		spin_unlock(&sched->job_list_lock);
		drm_sched_wqueue_start(sched);
		return;
	}
	if (ret) {
		/* The timeout itself was recorded before the fence signalled. */
		drm_info(&ndev->drm, "context %u job %llu timed out, engine reset\n",
			 job->ctx->id, job->seqno);
		npu_genl_event(ndev, NPU_GENL_EVENT_RESET, NULL, 0);
		npu_dump_job(job);
	}

	/* Puts the job back to be freed; restarts the queues. */
	drm_sched_stop(sched, sched_job);
	drm_sched_start(sched);
}

/**
 * npu_job_put_resources - release what submit took for a job
 * @job: the job
 *
 * Operands, the BO set, ops, scratch, the hardware fence.
 */
void npu_job_put_resources(struct npu_job *job)
{
	u32 i;

	for (i = 0; i < job->nobjs; i++)
		drm_gem_object_put(job->objs[i]);
	kvfree(job->objs);
	kvfree(job->obj_write);
	if (job->bos) {
		for (i = 0; i < job->nops * NPU_OP_MAX_BUFS; i++)
			if (job->bos[i])
				drm_gem_object_put(&job->bos[i]->base.base);
		kvfree(job->bos);
	}
	kvfree(job->ops);
	kvfree(job->scratch);
	if (job->hw_fence_live)
		dma_fence_put(job->hw_fence);
	else
		kfree(job->hw_fence);
}

static void npu_job_free(struct drm_sched_job *sched_job)
{
	struct npu_job *job = to_npu_job(sched_job);
	struct npu_device *ndev = job->ndev;

	drm_sched_job_cleanup(sched_job);

	spin_lock(&job->ctx->job_lock);
	list_del(&job->ctx_node);
	spin_unlock(&job->ctx->job_lock);
	/* Never started: dropped with its entity. */
	npu_job_abort(job);

	npu_job_put_resources(job);
	drm_gem_object_put(job->cmd_bo);
	npu_ctx_put(job->ctx);
	kfree(job);

	pm_runtime_mark_last_busy(ndev->drm.dev);
	pm_runtime_put_autosuspend(ndev->drm.dev);
	if (atomic_dec_and_test(&ndev->cnt.jobs_alive))
		wake_up_all(&ndev->idle_wq);
}

static const struct drm_sched_backend_ops npu_sched_ops = {
	.run_job = npu_job_run,
	.timedout_job = npu_job_timedout,
	.free_job = npu_job_free,
};

int npu_sched_init(struct npu_device *ndev)
{
	struct drm_sched_init_args args = {
		.ops = &npu_sched_ops,
		.num_rqs = DRM_SCHED_PRIORITY_COUNT,
		.credit_limit = 1,
		.hang_limit = 0,
		.timeout = msecs_to_jiffies(npu_job_timeout_ms),
		.name = dev_name(ndev->drm.dev),
		.dev = ndev->drm.dev,
	};
	int ret;

	ret = drmm_mutex_init(&ndev->drm, &ndev->sched_lock);
	if (ret)
		return ret;
	ndev->fence_context = dma_fence_context_alloc(1);
	ret = drm_sched_init(&ndev->sched, &args);
	if (ret)
		return ret;
	ndev->sched_live = true;
	return 0;
}

void npu_sched_fini(struct npu_device *ndev)
{
	/* A context destroyed from now on (a file closed after removal) leaves the queues alone. */
	mutex_lock(&ndev->sched_lock);
	ndev->sched_live = false;
	mutex_unlock(&ndev->sched_lock);
	drm_sched_fini(&ndev->sched);
}

/**
 * npu_sched_entity_fini - tear down a context's entity while no job is taken from it
 * @ndev: device
 * @entity: the context's entity
 *
 * drm_sched_entity_kill() takes the entity off its run queue, then waits
 * until the scheduler is done with it. Meanwhile the scheduler, popping a
 * job from it with another one queued behind, puts it back into the run
 * queue's FIFO tree (drm_sched_entity_pop_job() in 6.12). Once the context
 * is freed, that tree holds freed memory: other contexts' jobs stop being
 * found, submitters wait on a full fence window forever, and a later
 * removal from the tree oopses (seen in the destroy_race test, about one
 * run in ten). With the scheduler's submission stopped, nothing pops.
 */
void npu_sched_entity_fini(struct npu_device *ndev, struct drm_sched_entity *entity)
{
	bool live;

	mutex_lock(&ndev->sched_lock);
	live = ndev->sched_live;
	if (live)
		drm_sched_wqueue_stop(&ndev->sched);
	drm_sched_entity_fini(entity);
	if (live)
		drm_sched_wqueue_start(&ndev->sched);
	mutex_unlock(&ndev->sched_lock);
}

/* Jiffies from now until deadline, rounded up; 0 once it has passed. */
static long npu_jiffies_until(ktime_t deadline)
{
	s64 ns = ktime_to_ns(ktime_sub(deadline, ktime_get()));

	if (ns <= 0)
		return 0;
	return min_t(u64, nsecs_to_jiffies64(ns) + 1, MAX_SCHEDULE_TIMEOUT - 1);
}

int npu_ioctl_wait(struct drm_device *dev, void *data, struct drm_file *file)
{
	struct npu_file *nfile = file->driver_priv;
	struct drm_npu_wait *args = data;
	bool absolute = args->flags & NPU_WAIT_F_ABSOLUTE;
	bool forever = !absolute && args->timeout_ns < 0;
	struct dma_fence *fence = NULL;
	ktime_t deadline = 0;
	struct npu_ctx *ctx;
	long timeout, ret;
	int idx;

	if (args->flags & ~NPU_WAIT_FLAGS_MASK || args->pad)
		return -EINVAL;
	/* The deadline from the moment of the call, before anything waits. */
	if (absolute)
		deadline = ns_to_ktime(args->timeout_ns);
	else if (!forever)
		deadline = ktime_add_ns(ktime_get(), args->timeout_ns);
	if (!drm_dev_enter(dev, &idx))
		return -ENODEV;

	ctx = npu_ctx_lookup(nfile, args->ctx_id);
	if (!ctx) {
		ret = -ENOENT;
		goto out_exit;
	}

	mutex_lock(&ctx->lock);
	if (!args->seqno || args->seqno > ctx->seqno) {
		mutex_unlock(&ctx->lock);
		ret = -EINVAL;
		goto out_put;
	}
	if (ctx->seqno - args->seqno < NPU_FENCE_WINDOW)
		fence = dma_fence_get(ctx->fences[args->seqno % NPU_FENCE_WINDOW]);
	mutex_unlock(&ctx->lock);

	if (!fence) {
		/* Older than the window: done, state only in the header. */
		args->state = 0;
		ret = 0;
		goto out_put;
	}

	timeout = forever ? MAX_SCHEDULE_TIMEOUT : npu_jiffies_until(deadline);
	if (!timeout)
		ret = dma_fence_is_signaled(fence) ? 1 : 0;
	else
		ret = dma_fence_wait_timeout(fence, true, timeout);
	if (ret == 0) {
		ret = -ETIME;
	} else if (ret > 0) {
		u64 v = atomic64_read(&ctx->states[args->seqno % NPU_FENCE_WINDOW]);

		/* The recorded state; the fence error can only say "aborted". */
		if (v >> 8 == args->seqno && (v & 0xff))
			args->state = v & 0xff;
		else
			args->state = npu_state_from_error(fence->error);
		ret = 0;
	} else if (ret == -ERESTARTSYS && !absolute && !forever) {
		/* The restarted call waits for what is left, not all again. */
		args->timeout_ns = max_t(s64, 0, ktime_to_ns(ktime_sub(deadline,
								       ktime_get())));
	}
	dma_fence_put(fence);

out_put:
	npu_ctx_put(ctx);
out_exit:
	drm_dev_exit(idx);
	return ret;
}
