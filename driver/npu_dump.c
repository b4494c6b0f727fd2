// SPDX-License-Identifier: GPL-2.0-only
/*
 * npu devcoredump: the job that hit the timeout, as text in
 * /sys/class/devcoredump/devcdN/data (its context and owner, its ops with
 * their dims and operands). The timeout handler is on the fence signalling
 * path and only hands the job's op snapshot over; a work item allocates
 * and writes the dump.
 *
 * Copyright (c) 2026 The npud authors
 */

#include <linux/devcoredump.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

#include <drm/drm_print.h>

#include "npu_drv.h"

/* Bytes of text per op (a line of dims, a line per operand) and around. */
#define NPU_DUMP_OP_TEXT	(96 + NPU_OP_MAX_BUFS * 64)
#define NPU_DUMP_HEAD_TEXT	512

static void npu_dump_work(struct work_struct *work)
{
	struct npu_dump *d = container_of(work, struct npu_dump, work);
	struct npu_device *ndev = container_of(d, struct npu_device, dump);
	size_t size, len = 0;
	u32 i, j;
	char *buf;

	size = NPU_DUMP_HEAD_TEXT + (size_t)d->nops * NPU_DUMP_OP_TEXT;
	buf = vmalloc(size);
	if (buf) {
		len += scnprintf(buf + len, size - len,
				 "npu job timeout\ndevice: %s\ncontext: %u (client %llu, pid %d)\n"
				 "job: %llu, %u ops, command at offset %llu\n",
				 dev_name(ndev->drm.dev), d->ctx_id, d->client_id,
				 d->pid, d->seqno, d->nops, d->cmd_offset);
		for (i = 0; i < d->nops; i++) {
			const struct drm_npu_op *op = &d->ops[i];

			len += scnprintf(buf + len, size - len,
					 "op %u: %s flags %#x dim %u %u %u %u %u %u %u %u\n",
					 i, npu_op_name(op->opcode), op->flags,
					 op->dim[0], op->dim[1], op->dim[2], op->dim[3],
					 op->dim[4], op->dim[5], op->dim[6], op->dim[7]);
			for (j = 0; j < NPU_OP_MAX_BUFS; j++)
				if (op->buf[j].handle)
					len += scnprintf(buf + len, size - len,
							 "  buf %u: handle %u offset %llu\n",
							 j, op->buf[j].handle,
							 op->buf[j].offset);
		}
		/* devcoredump owns buf from here and vfree()s it. */
		dev_coredumpv(ndev->drm.dev, buf, len, GFP_KERNEL);
	}

	spin_lock(&d->lock);
	kvfree(d->ops);
	d->ops = NULL;
	spin_unlock(&d->lock);
}

void npu_dump_init(struct npu_device *ndev)
{
	spin_lock_init(&ndev->dump.lock);
	INIT_WORK(&ndev->dump.work, npu_dump_work);
}

void npu_dump_fini(struct npu_device *ndev)
{
	cancel_work_sync(&ndev->dump.work);
	kvfree(ndev->dump.ops);
	ndev->dump.ops = NULL;
}

/**
 * npu_dump_job - dump a job that hit the timeout
 * @job: the job; its hardware fence has signaled
 *
 * Takes the job's op snapshot (free_job will not need it) unless a dump is
 * being written. Allocates nothing: called by the timeout handler.
 */
void npu_dump_job(struct npu_job *job)
{
	struct npu_dump *d = &job->ndev->dump;

	spin_lock(&d->lock);
	if (d->ops) {
		spin_unlock(&d->lock);
		return;
	}
	d->ops = job->ops;
	d->nops = job->nops;
	job->ops = NULL;
	d->ctx_id = job->ctx->id;
	d->client_id = job->ctx->client_id;
	d->pid = job->ctx->pid;
	d->seqno = job->seqno;
	d->cmd_offset = job->cmd_offset;
	spin_unlock(&d->lock);
	queue_work(system_wq, &d->work);
}
