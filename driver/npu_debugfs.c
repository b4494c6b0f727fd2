// SPDX-License-Identifier: GPL-2.0-only
/*
 * npu debugfs (under the accel device's debugfs directory):
 *   bo_count, ctx_count, jobs_alive  live object counts (read only)
 *   queue                            engine queue and counters
 *   fail_hang/, fail_bo_alloc/       fault_attr: jobs hang, BO_CREATE fails
 *                                    (kernels with fault-injection debugfs)
 *   inject_hang                      write 1: the next job hangs (others)
 *   inject_alloc_fail                write 1: the next BO_CREATE fails
 *   engine_delay_us                  sleep this long before each op
 *   fpu_sections                     FPU sections the engine ran (read only)
 *   idle                             read: waits (up to 60 s) until no job
 *                                    is alive, then 1, or 0 on timeout
 *
 * Copyright (c) 2026 The npud authors
 */

#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/seq_file.h>

#include "npu_drv.h"

static int npu_debugfs_queue_show(struct seq_file *m, void *unused)
{
	struct npu_device *ndev = m->private;
	struct npu_engine *eng = &ndev->engine;
	struct npu_job *job;

	spin_lock(&eng->lock);
	job = eng->current_job;
	if (job)
		seq_printf(m, "running: ctx %u seqno %llu ops %u\n",
			   job->ctx->id, job->seqno, job->nops);
	list_for_each_entry(job, &eng->queue, engine_node)
		seq_printf(m, "queued: ctx %u seqno %llu ops %u\n",
			   job->ctx->id, job->seqno, job->nops);
	spin_unlock(&eng->lock);

	seq_printf(m, "jobs_alive: %d\n", atomic_read(&ndev->cnt.jobs_alive));
	seq_printf(m, "jobs_submitted: %lld\n",
		   atomic64_read(&ndev->cnt.jobs_submitted));
	seq_printf(m, "jobs_completed: %lld\n",
		   atomic64_read(&ndev->cnt.jobs_completed));
	seq_printf(m, "jobs_failed: %lld\n",
		   atomic64_read(&ndev->cnt.jobs_failed));
	seq_printf(m, "jobs_timedout: %lld\n",
		   atomic64_read(&ndev->cnt.jobs_timedout));
	seq_printf(m, "resets: %lld\n", atomic64_read(&ndev->cnt.resets));
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(npu_debugfs_queue);

static int npu_debugfs_fpu_sections_get(void *data, u64 *val)
{
	struct npu_device *ndev = data;

	*val = atomic64_read(&ndev->engine.fpu_sections);
	return 0;
}
DEFINE_DEBUGFS_ATTRIBUTE(npu_debugfs_fpu_sections_fops,
			 npu_debugfs_fpu_sections_get, NULL, "%llu\n");

/* Tests wait for the device to retire every job instead of polling. */
static ssize_t npu_debugfs_idle_read(struct file *f, char __user *buf,
				     size_t len, loff_t *ppos)
{
	struct npu_device *ndev = f->private_data;
	char s[4];
	long ret;

	if (!*ppos) {
		ret = wait_event_killable_timeout(ndev->idle_wq,
						  !atomic_read(&ndev->cnt.jobs_alive),
						  60 * HZ);
		if (ret < 0)
			return ret;
	}
	snprintf(s, sizeof(s), "%d\n", !atomic_read(&ndev->cnt.jobs_alive));
	return simple_read_from_buffer(buf, len, ppos, s, strlen(s));
}

static const struct file_operations npu_debugfs_idle_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.read = npu_debugfs_idle_read,
	.llseek = default_llseek,
};

void npu_debugfs_init(struct npu_device *ndev)
{
	struct dentry *root = ndev->drm.debugfs_root;

	if (IS_ERR_OR_NULL(root))
		return;

	debugfs_create_atomic_t("bo_count", 0444, root, &ndev->cnt.bo_count);
	debugfs_create_atomic_t("ctx_count", 0444, root, &ndev->cnt.ctx_count);
	debugfs_create_atomic_t("jobs_alive", 0444, root, &ndev->cnt.jobs_alive);
	debugfs_create_file("queue", 0444, root, ndev, &npu_debugfs_queue_fops);
	npu_fault_debugfs(ndev, root);
	debugfs_create_u32("engine_delay_us", 0600, root, &ndev->engine_delay_us);
	debugfs_create_file_unsafe("fpu_sections", 0444, root, ndev,
				   &npu_debugfs_fpu_sections_fops);
	debugfs_create_file("idle", 0444, root, ndev, &npu_debugfs_idle_fops);
}
