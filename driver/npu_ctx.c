// SPDX-License-Identifier: GPL-2.0-only
/*
 * npu hardware contexts: one scheduler entity each, configured with an
 * xclbin that names the ops the context may run.
 *
 * Copyright (c) 2026 The npud authors
 */

#include <linux/capability.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/unaligned.h>
#include <linux/vmalloc.h>

#include <drm/drm_drv.h>
#include <drm/drm_print.h>
#include <linux/npu_genl.h>

#include "npu_drv.h"

/* xclbin layout (xrt/xclbin.h): struct axlf and friends, little endian. */
#define XCLBIN_MAGIC			"xclbin2"
#define XCLBIN_AXLF_SIZE		496
#define XCLBIN_OFF_LENGTH		304
#define XCLBIN_OFF_NUM_SECTIONS		448
#define XCLBIN_OFF_SECTIONS		456
#define XCLBIN_SECTION_SIZE		40
#define XCLBIN_SECT_OFF_KIND		0
#define XCLBIN_SECT_OFF_OFFSET		24
#define XCLBIN_SECT_OFF_SIZE		32
#define XCLBIN_KIND_IP_LAYOUT		8
#define XCLBIN_IP_LAYOUT_HDR		8
#define XCLBIN_IP_DATA_SIZE		80
#define XCLBIN_IP_OFF_TYPE		0
#define XCLBIN_IP_OFF_NAME		16
#define XCLBIN_IP_NAME_LEN		64
#define XCLBIN_IP_KERNEL		1

static void npu_ctx_release(struct kref *ref)
{
	struct npu_ctx *ctx = container_of(ref, struct npu_ctx, ref);
	int i;

	for (i = 0; i < NPU_FENCE_WINDOW; i++)
		dma_fence_put(ctx->fences[i]);
	atomic_dec(&ctx->ndev->cnt.ctx_count);
	npu_file_stats_put(ctx->stats);
	if (ctx->syncobj)
		drm_syncobj_put(ctx->syncobj);
	mutex_destroy(&ctx->lock);
	kfree(ctx);
}

void npu_ctx_put(struct npu_ctx *ctx)
{
	kref_put(&ctx->ref, npu_ctx_release);
}

struct npu_ctx *npu_ctx_lookup(struct npu_file *nfile, u32 id)
{
	struct npu_ctx *ctx;

	xa_lock(&nfile->ctx_xa);
	ctx = xa_load(&nfile->ctx_xa, id);
	if (ctx)
		kref_get(&ctx->ref);
	xa_unlock(&nfile->ctx_xa);
	return ctx;
}

/**
 * npu_ctx_fault - mark a context faulted and report it
 * @ctx: the context
 * @seqno: sequence number of the job that faulted
 */
void npu_ctx_fault(struct npu_ctx *ctx, u64 seqno)
{
	if (atomic_xchg(&ctx->faulted, 1))
		return;
	atomic64_set(&ctx->fault_seqno, seqno);
	drm_info(&ctx->ndev->drm, "context %u (pid %d) faulted at job %llu\n",
		 ctx->id, ctx->pid, seqno);
	npu_genl_event(ctx->ndev, NPU_GENL_EVENT_CTX_FAULT, ctx, seqno);
}

/*
 * Destroy a context removed from its file: queued jobs get @grace to start,
 * then are aborted; a running job ends on its own.
 */
static void npu_ctx_destroy(struct npu_ctx *ctx, long grace)
{
	struct npu_job *job;

	/* No submission may push to the entity once it is being destroyed. */
	mutex_lock(&ctx->lock);
	ctx->destroyed = true;
	mutex_unlock(&ctx->lock);

	if (grace)
		wait_event_timeout(ctx->idle_wq, !atomic_read(&ctx->queued), grace);
	spin_lock(&ctx->job_lock);
	list_for_each_entry(job, &ctx->jobs, ctx_node)
		npu_job_abort(job);
	spin_unlock(&ctx->job_lock);
	/*
	 * Without waiting: the scheduler drops the jobs it still holds (their
	 * fences signal with -ESRCH once their in-fences have) and never runs
	 * this entity again.
	 */
	npu_sched_entity_fini(ctx->ndev, &ctx->entity);
	npu_ctx_put(ctx);
}

int npu_ctx_file_init(struct npu_file *nfile)
{
	xa_init_flags(&nfile->ctx_xa, XA_FLAGS_ALLOC1);
	return 0;
}

/**
 * npu_ctx_file_flush - let the queued jobs of a file start, for a while
 * @nfile: the file being closed (file_operations.flush)
 *
 * One budget of %NPU_FLUSH_BUDGET_MS for all the file's contexts; the
 * release then aborts what has not started.
 */
void npu_ctx_file_flush(struct npu_file *nfile)
{
	long budget = msecs_to_jiffies(NPU_FLUSH_BUDGET_MS);
	struct npu_ctx *entry, *ctx;
	unsigned long id;

	xa_for_each(&nfile->ctx_xa, id, entry) {
		ctx = npu_ctx_lookup(nfile, id);
		if (!ctx)
			continue;
		budget = wait_event_timeout(ctx->idle_wq,
					    !atomic_read(&ctx->queued), budget);
		npu_ctx_put(ctx);
		if (!budget)
			break;
	}
}

void npu_ctx_file_fini(struct npu_file *nfile)
{
	struct npu_ctx *ctx;
	unsigned long id;

	xa_for_each(&nfile->ctx_xa, id, ctx) {
		xa_erase(&nfile->ctx_xa, id);
		npu_ctx_destroy(ctx, 0);
	}
	xa_destroy(&nfile->ctx_xa);
}

int npu_ioctl_ctx_create(struct drm_device *dev, void *data, struct drm_file *file)
{
	static const enum drm_sched_priority prio[] = {
		[NPU_CTX_PRIORITY_LOW] = DRM_SCHED_PRIORITY_LOW,
		[NPU_CTX_PRIORITY_NORMAL] = DRM_SCHED_PRIORITY_NORMAL,
		[NPU_CTX_PRIORITY_HIGH] = DRM_SCHED_PRIORITY_HIGH,
	};
	struct npu_device *ndev = to_npu_device(dev);
	struct npu_file *nfile = file->driver_priv;
	struct drm_npu_ctx_create *args = data;
	struct drm_gpu_scheduler *sched = &ndev->sched;
	struct npu_ctx *ctx;
	u32 id;
	int ret, idx;

	if (args->flags & ~NPU_CTX_CREATE_FLAGS_MASK || args->pad || args->pad2)
		return -EINVAL;
	if (args->priority >= ARRAY_SIZE(prio))
		return -EINVAL;
	/* Accel nodes have no DRM master: the capability is the only gate. */
	if (args->priority > NPU_CTX_PRIORITY_NORMAL && !capable(CAP_SYS_NICE))
		return -EPERM;
	if (!drm_dev_enter(dev, &idx))
		return -ENODEV;
	if (atomic_inc_return(&nfile->ctx_count) > NPU_MAX_CONTEXTS) {
		ret = -ENOSPC;
		goto err_count;
	}

	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL);
	if (!ctx) {
		ret = -ENOMEM;
		goto err_count;
	}
	kref_init(&ctx->ref);
	mutex_init(&ctx->lock);
	spin_lock_init(&ctx->job_lock);
	INIT_LIST_HEAD(&ctx->jobs);
	init_waitqueue_head(&ctx->idle_wq);
	ctx->ndev = ndev;
	ctx->pid = nfile->pid;
	ctx->client_id = file->client_id;

	ret = drm_sched_entity_init(&ctx->entity, prio[args->priority],
				    &sched, 1, NULL);
	if (ret)
		goto err_free;

	/*
	 * Reserve the id, finish the context, publish it last: once stored,
	 * another thread of this file may destroy it.
	 */
	ret = xa_alloc_cyclic(&nfile->ctx_xa, &id, NULL, XA_LIMIT(1, U32_MAX),
			      &nfile->ctx_next, GFP_KERNEL);
	if (ret < 0)
		goto err_entity_destroy;
	args->syncobj_handle = 0;
	if (args->flags & NPU_CTX_CREATE_F_SYNCOBJ) {
		/* The last step that can fail: the handle is the caller's. */
		ret = drm_syncobj_create(&ctx->syncobj, 0, NULL);
		if (!ret)
			ret = drm_syncobj_get_handle(file, ctx->syncobj,
						     &args->syncobj_handle);
		if (ret)
			goto err_id_release;
	}
	ctx->id = id;
	ctx->stats = nfile->stats;
	kref_get(&ctx->stats->ref);
	atomic_inc(&ndev->cnt.ctx_count);
	args->ctx_id = id;
	/* The reserved slot exists: storing into it allocates nothing. */
	xa_store(&nfile->ctx_xa, id, ctx, GFP_KERNEL);

	drm_dev_exit(idx);
	return 0;

err_id_release:
	if (ctx->syncobj)
		drm_syncobj_put(ctx->syncobj);
	xa_erase(&nfile->ctx_xa, id);
err_entity_destroy:
	drm_sched_entity_destroy(&ctx->entity);
err_free:
	mutex_destroy(&ctx->lock);
	kfree(ctx);
err_count:
	atomic_dec(&nfile->ctx_count);
	drm_dev_exit(idx);
	return ret;
}

int npu_ioctl_ctx_destroy(struct drm_device *dev, void *data, struct drm_file *file)
{
	struct npu_file *nfile = file->driver_priv;
	struct drm_npu_ctx_destroy *args = data;
	struct npu_ctx *ctx;
	int idx;

	if (args->pad)
		return -EINVAL;
	if (!drm_dev_enter(dev, &idx))
		return -ENODEV;

	/* A reserved id (a context still being created) is not erased. */
	xa_lock(&nfile->ctx_xa);
	ctx = xa_load(&nfile->ctx_xa, args->ctx_id);
	if (ctx)
		__xa_erase(&nfile->ctx_xa, args->ctx_id);
	xa_unlock(&nfile->ctx_xa);
	if (!ctx) {
		drm_dev_exit(idx);
		return -ENOENT;
	}
	atomic_dec(&nfile->ctx_count);
	npu_ctx_destroy(ctx, msecs_to_jiffies(NPU_DESTROY_GRACE_MS));

	drm_dev_exit(idx);
	return 0;
}

static u32 npu_xclbin_op(const u8 *name)
{
	char buf[XCLBIN_IP_NAME_LEN];
	char *colon;
	u32 op;

	if (!memchr(name, '\0', XCLBIN_IP_NAME_LEN))
		return 0;
	strscpy(buf, name, sizeof(buf));
	colon = strchr(buf, ':');
	if (colon)
		*colon = '\0';
	if (strncmp(buf, "npu_", 4))
		return 0;
	for (op = 1; op < NPU_OPS; op++)
		if (!strcmp(buf + 4, npu_op_name(op)))
			return op;
	return 0;
}

/* Parse an xclbin image; returns the mask of ops its IP_LAYOUT enables. */
static int npu_xclbin_parse(const u8 *img, u32 size, u64 *mask)
{
	u32 nsect, i, j;
	bool found = false;

	if (size < XCLBIN_AXLF_SIZE || memcmp(img, XCLBIN_MAGIC, 8))
		return -EINVAL;
	if (get_unaligned_le64(img + XCLBIN_OFF_LENGTH) != size)
		return -EINVAL;
	nsect = get_unaligned_le32(img + XCLBIN_OFF_NUM_SECTIONS);
	if (!nsect || nsect > (size - XCLBIN_OFF_SECTIONS) / XCLBIN_SECTION_SIZE)
		return -EINVAL;

	*mask = 0;
	for (i = 0; i < nsect; i++) {
		const u8 *sh = img + XCLBIN_OFF_SECTIONS + i * XCLBIN_SECTION_SIZE;
		u64 off = get_unaligned_le64(sh + XCLBIN_SECT_OFF_OFFSET);
		u64 len = get_unaligned_le64(sh + XCLBIN_SECT_OFF_SIZE);
		const u8 *ipl;
		s32 count;

		if (get_unaligned_le32(sh + XCLBIN_SECT_OFF_KIND) !=
		    XCLBIN_KIND_IP_LAYOUT)
			continue;
		if (off > size || len > size - off || len < XCLBIN_IP_LAYOUT_HDR)
			return -EINVAL;
		ipl = img + off;
		count = (s32)get_unaligned_le32(ipl);
		if (count < 0 ||
		    count > (len - XCLBIN_IP_LAYOUT_HDR) / XCLBIN_IP_DATA_SIZE)
			return -EINVAL;
		for (j = 0; j < count; j++) {
			const u8 *ip = ipl + XCLBIN_IP_LAYOUT_HDR +
				j * XCLBIN_IP_DATA_SIZE;
			u32 op;

			if (get_unaligned_le32(ip + XCLBIN_IP_OFF_TYPE) !=
			    XCLBIN_IP_KERNEL)
				continue;
			op = npu_xclbin_op(ip + XCLBIN_IP_OFF_NAME);
			if (op)
				*mask |= BIT_ULL(op);
		}
		found = true;
	}
	return found ? 0 : -EINVAL;
}

int npu_ioctl_ctx_configure(struct drm_device *dev, void *data,
			    struct drm_file *file)
{
	struct npu_file *nfile = file->driver_priv;
	struct drm_npu_ctx_configure *args = data;
	struct npu_ctx *ctx;
	u64 mask = 0;
	u8 *img;
	int ret, idx;

	if (args->flags || args->pad)
		return -EINVAL;
	if (!args->xclbin_size)
		return -EINVAL;
	if (args->xclbin_size > NPU_XCLBIN_MAX_SIZE)
		return -E2BIG;
	if (!drm_dev_enter(dev, &idx))
		return -ENODEV;

	ctx = npu_ctx_lookup(nfile, args->ctx_id);
	if (!ctx) {
		ret = -ENOENT;
		goto err_exit;
	}

	img = vmemdup_user(u64_to_user_ptr(args->xclbin_ptr), args->xclbin_size);
	if (IS_ERR(img)) {
		ret = PTR_ERR(img);
		goto err_put;
	}

	ret = npu_xclbin_parse(img, args->xclbin_size, &mask);
	kvfree(img);
	if (ret)
		goto err_put;

	mutex_lock(&ctx->lock);
	ctx->ops_mask = mask & NPU_OPS_ALL;
	args->ops_mask = ctx->ops_mask;
	mutex_unlock(&ctx->lock);

err_put:
	npu_ctx_put(ctx);
err_exit:
	drm_dev_exit(idx);
	return ret;
}

int npu_ioctl_ctx_query(struct drm_device *dev, void *data, struct drm_file *file)
{
	struct npu_file *nfile = file->driver_priv;
	struct drm_npu_ctx_query *args = data;
	struct npu_ctx *ctx;
	int idx;

	if (args->flags || args->pad)
		return -EINVAL;
	if (!drm_dev_enter(dev, &idx))
		return -ENODEV;

	ctx = npu_ctx_lookup(nfile, args->ctx_id);
	if (!ctx) {
		drm_dev_exit(idx);
		return -ENOENT;
	}
	args->state = atomic_read(&ctx->faulted) ? NPU_CTX_STATE_FAULTED :
		NPU_CTX_STATE_ACTIVE;
	mutex_lock(&ctx->lock);
	args->submitted = ctx->seqno;
	mutex_unlock(&ctx->lock);
	args->completed = atomic64_read(&ctx->completed);
	args->fault_seqno = atomic64_read(&ctx->fault_seqno);
	npu_ctx_put(ctx);

	drm_dev_exit(idx);
	return 0;
}
