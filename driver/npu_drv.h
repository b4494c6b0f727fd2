/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Copyright (c) 2026 The npud authors
 */

#ifndef __NPU_DRV_H__
#define __NPU_DRV_H__

#include <linux/fault-inject.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/platform_device.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/xarray.h>

#include <drm/drm_device.h>
#include <drm/drm_file.h>
#include <drm/drm_gem_shmem_helper.h>
#include <drm/drm_syncobj.h>
#include <drm/gpu_scheduler.h>

#include <drm/npu_accel.h>

#define NPU_DRIVER_NAME		"npu"
#define NPU_UAPI_MAJOR		1
#define NPU_UAPI_MINOR		1

#define NPU_MAX_DEVICES		8
#define NPU_MAX_BO_SIZE		(256ull << 20)
#define NPU_MAX_CONTEXTS	64
#define NPU_FENCE_WINDOW	256
#define NPU_MAX_OPS		(NPU_ERT_MAX_COUNT / NPU_OP_WORDS)

/* Opcodes this driver runs: 1 ... NPU_OPS - 1. */
#define NPU_OPS			(NPU_OP_CVT_F32_F16 + 1)
#define NPU_OPS_ALL		(GENMASK_ULL(NPU_OPS - 1, 1))

/* Idle time before runtime PM suspends the engine. */
#define NPU_AUTOSUSPEND_MS	100

/* How long CTX_DESTROY lets queued jobs start before it aborts them. */
#define NPU_DESTROY_GRACE_MS	100
/* How long closing a file waits, in all, for its queued jobs to start. */
#define NPU_FLUSH_BUDGET_MS	1000

struct npu_device;
struct npu_job;

/**
 * struct npu_engine_ops - an execution back end
 * @init: set up the engine of @ndev.
 * @fini: stop it; no job is queued or running by then.
 * @run: queue @job; the engine signals @job->hw_fence when the job ends,
 *	after recording its final state with npu_job_end().
 * @reset: abort @job if the engine has run it for (9/10 of) the job
 *	timeout and end it with -ETIMEDOUT. Returns once @job->hw_fence has
 *	signaled: 1 when the reset ended the job, 0 when it had ended on its
 *	own; or at once -EBUSY when the job has not run that long (it waited
 *	for an engine that was frozen for a system suspend, or not
 *	scheduled), and is left as it was.
 * @suspend: power the idle engine down (runtime PM; no job is queued or
 *	running).
 * @resume: power it up again.
 */
struct npu_engine_ops {
	int (*init)(struct npu_device *ndev);
	void (*fini)(struct npu_device *ndev);
	void (*run)(struct npu_device *ndev, struct npu_job *job);
	int (*reset)(struct npu_device *ndev, struct npu_job *job);
	int (*suspend)(struct npu_device *ndev);
	int (*resume)(struct npu_device *ndev);
};

/**
 * struct npu_engine - the software execution engine
 * @thread: the kthread that runs jobs one at a time
 * @lock: protects @queue, @current_job, @abort and @suspended
 * @queue: jobs handed over by run() and not started yet
 * @current_job: the job being executed, or NULL
 * @abort: set by reset() to stop @current_job
 * @suspended: runtime suspended: @thread takes no job until resume
 * @avx2: use the AVX2 GEMMs; set at init
 * @wake: wakes @thread (new job, abort, stop)
 * @done: wakes reset() when a job's fence has signaled
 * @fpu_sections: kernel_fpu_begin/end sections run so far
 */
struct npu_engine {
	struct task_struct *thread;
	/* Protects queue, current_job, abort and suspended. */
	spinlock_t lock;
	struct list_head queue;
	struct npu_job *current_job;
	bool abort;
	bool suspended;
	bool avx2;
	wait_queue_head_t wake;
	wait_queue_head_t done;
	atomic64_t fpu_sections;
};

/* Events waiting for npu_genl's work item to send them. */
#define NPU_EVENT_RING		32

struct npu_event {
	u32 event;
	u32 ctx_id;
	u64 seqno;
	u64 client_id;
	pid_t pid;
};

/**
 * struct npu_events - netlink events queued on the fence signalling path
 * @lock: protects the ring
 * @ring: the queued events
 * @head: index of the oldest event
 * @count: events in the ring
 * @dropped: events lost to a full ring
 * @work: sends them (it may allocate; the signalling path may not)
 */
struct npu_events {
	/* Protects ring, head, count and dropped. */
	spinlock_t lock;
	struct npu_event ring[NPU_EVENT_RING];
	u32 head;
	u32 count;
	u32 dropped;
	struct work_struct work;
};

/**
 * struct npu_dump - the timed-out job being written to devcoredump
 * @lock: protects the fields below
 * @ops: the job's op snapshot, NULL when no dump is pending
 * @nops: ops in @ops
 * @ctx_id: its context
 * @client_id: DRM client id of the context's file
 * @pid: pid of the context's creator
 * @seqno: its sequence number
 * @cmd_offset: offset of its command in the command BO
 * @work: writes the dump (npu_dump.c)
 */
struct npu_dump {
	/* Protects the fields below. */
	spinlock_t lock;
	struct drm_npu_op *ops;
	u32 nops;
	u32 ctx_id;
	u64 client_id;
	pid_t pid;
	u64 seqno;
	u64 cmd_offset;
	struct work_struct work;
};

struct npu_counters {
	atomic64_t jobs_submitted;
	atomic64_t jobs_completed;
	atomic64_t jobs_failed;
	atomic64_t jobs_timedout;
	atomic64_t resets;
	atomic64_t busy_ns;
	atomic64_t bo_bytes;
	atomic_t bo_count;
	atomic_t ctx_count;
	atomic_t jobs_alive;
};

struct npu_device {
	struct drm_device drm;
	struct platform_device *pdev;
	u32 index;
	/* Entry in the global device list, under npu_dev_lock. */
	struct list_head node;

	const struct npu_engine_ops *engine_ops;
	struct npu_engine engine;

	struct drm_gpu_scheduler sched;
	/*
	 * Held while the scheduler's submission is stopped: by the timeout
	 * handler, and around a context's entity teardown. sched_live: the
	 * scheduler is initialized and not yet finished (drm_sched_fini).
	 */
	struct mutex sched_lock;
	bool sched_live;
	u64 fence_context;
	atomic64_t fence_seqno;
	/* Protects the state of the hardware fences (dma_fence lock). */
	spinlock_t fence_lock;

	struct npu_counters cnt;
	struct npu_events events;
	struct npu_dump dump;
	/* Woken when jobs_alive drops to zero. */
	wait_queue_head_t idle_wq;

	/* Fault injection (npu_fault.c) and tuning, set through debugfs. */
#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
	struct fault_attr fail_hang;
	struct fault_attr fail_bo_alloc;
#else
	atomic_t inject_hang;
	atomic_t inject_alloc_fail;
#endif
	u32 engine_delay_us;
};

#define to_npu_device(dev) container_of(dev, struct npu_device, drm)

struct npu_bo {
	struct drm_gem_shmem_object base;
	/* Kernel mapping, valid from creation to free. */
	void *vaddr;
};

#define to_npu_bo(obj) container_of(to_drm_gem_shmem_obj(obj), struct npu_bo, base)

/*
 * Per open file, shared with its contexts (jobs may run after the close):
 * the engine time its jobs used, for fdinfo.
 */
struct npu_file_stats {
	struct kref ref;
	atomic64_t busy_ns;
};

struct npu_file {
	struct npu_device *ndev;
	struct npu_file_stats *stats;
	pid_t pid;
	/* Context id -> struct npu_ctx; the xarray's lock protects it. */
	struct xarray ctx_xa;
	/* Next id to try: ids cycle, a stale id finds no new context. */
	u32 ctx_next;
	/* Contexts of the file, at most NPU_MAX_CONTEXTS. */
	atomic_t ctx_count;
};

struct npu_ctx {
	struct kref ref;
	struct npu_device *ndev;
	u32 id;
	pid_t pid;
	/* drm_file.client_id of the file that created it. */
	u64 client_id;
	struct npu_file_stats *stats;
	/* Timeline: point n signals when job n ends; NULL if not asked for. */
	struct drm_syncobj *syncobj;
	struct drm_sched_entity entity;
	/* Serializes submissions; protects destroyed, seqno, ops_mask, fences. */
	struct mutex lock;
	bool destroyed;
	u64 seqno;
	u64 ops_mask;
	struct dma_fence *fences[NPU_FENCE_WINDOW];
	/* Final state of the job in each fence slot: seqno << 8 | state. */
	atomic64_t states[NPU_FENCE_WINDOW];
	atomic64_t completed;
	atomic_t faulted;
	atomic64_t fault_seqno;
	/* Protects jobs. */
	spinlock_t job_lock;
	/* Jobs pushed to the entity and not freed yet. */
	struct list_head jobs;
	/* Jobs of the list that have neither started nor been aborted. */
	atomic_t queued;
	/* Woken when queued drops to zero. */
	wait_queue_head_t idle_wq;
};

struct npu_job {
	struct drm_sched_job base;
	struct npu_device *ndev;
	struct npu_ctx *ctx;
	u64 seqno;
	struct drm_gem_object *cmd_bo;
	u64 cmd_offset;
	u32 nops;
	struct drm_npu_op *ops;
	/* Resolved operands: nops * NPU_OP_MAX_BUFS entries, NULL if unused. */
	struct npu_bo **bos;
	/* The BOs the job uses, each once, and whether it writes each. */
	struct drm_gem_object **objs;
	bool *obj_write;
	u32 nobjs;
	/*
	 * Allocated at submit, for the engine: nothing is allocated once the
	 * job's fence exists. hw_fence is initialized by run_job.
	 */
	struct dma_fence *hw_fence;
	bool hw_fence_live;
	void *scratch;
	struct drm_syncobj *out_syncobj;
	bool hang;
	/*
	 * 0 while queued, NPU_ERT_STATE_RUNNING once started, then its final
	 * NPU_ERT_STATE_*: each change is one cmpxchg, so one final state wins.
	 */
	atomic_t state;
	/* Entry in the engine queue, under npu_engine.lock. */
	struct list_head engine_node;
	/* When the engine took it, under npu_engine.lock. */
	ktime_t started;
	/* Entry in npu_ctx.jobs, under npu_ctx.job_lock. */
	struct list_head ctx_node;
};

#define to_npu_job(job) container_of(job, struct npu_job, base)

extern unsigned int npu_job_timeout_ms;

/* npu_gem.c */
struct drm_gem_object *npu_gem_create_object(struct drm_device *dev, size_t size);
struct drm_gem_object *npu_gem_prime_import_sg_table(struct drm_device *dev,
						     struct dma_buf_attachment *attach,
						     struct sg_table *sgt);
struct npu_bo *npu_bo_lookup(struct drm_file *file, u32 handle);
int npu_ioctl_bo_create(struct drm_device *dev, void *data, struct drm_file *file);
int npu_ioctl_bo_info(struct drm_device *dev, void *data, struct drm_file *file);
int npu_ioctl_bo_sync(struct drm_device *dev, void *data, struct drm_file *file);

/* npu_drv.c */
void npu_file_stats_put(struct npu_file_stats *stats);

/* npu_ctx.c */
int npu_ctx_file_init(struct npu_file *nfile);
void npu_ctx_file_flush(struct npu_file *nfile);
void npu_ctx_file_fini(struct npu_file *nfile);
struct npu_ctx *npu_ctx_lookup(struct npu_file *nfile, u32 id);
void npu_ctx_put(struct npu_ctx *ctx);
void npu_ctx_fault(struct npu_ctx *ctx, u64 seqno);
int npu_ioctl_ctx_create(struct drm_device *dev, void *data, struct drm_file *file);
int npu_ioctl_ctx_destroy(struct drm_device *dev, void *data, struct drm_file *file);
int npu_ioctl_ctx_configure(struct drm_device *dev, void *data, struct drm_file *file);
int npu_ioctl_ctx_query(struct drm_device *dev, void *data, struct drm_file *file);

/* npu_job.c */
int npu_sched_init(struct npu_device *ndev);
void npu_sched_fini(struct npu_device *ndev);
void npu_sched_entity_fini(struct npu_device *ndev, struct drm_sched_entity *entity);
bool npu_job_abort(struct npu_job *job);
void npu_job_end(struct npu_job *job, u32 state);
void npu_job_write_state(struct npu_job *job, u32 state);
void npu_job_put_resources(struct npu_job *job);
int npu_ioctl_wait(struct drm_device *dev, void *data, struct drm_file *file);

/* npu_submit.c */
int npu_ioctl_submit(struct drm_device *dev, void *data, struct drm_file *file);

/* npu_op.c */
int npu_op_sizes(const struct drm_npu_op *op, u64 sizes[NPU_OP_MAX_BUFS]);
int npu_op_check_bufs(const struct drm_npu_op *op, struct npu_bo *const *bos,
		      const u64 sizes[NPU_OP_MAX_BUFS]);
const char *npu_op_name(u32 opcode);
u64 npu_op_scratch_size(const struct drm_npu_op *op);
bool npu_op_writes(const struct drm_npu_op *op, u32 slot);

/* npu_engine.c */
extern const struct npu_engine_ops npu_sw_engine_ops;

/* npu_dump.c */
void npu_dump_init(struct npu_device *ndev);
void npu_dump_fini(struct npu_device *ndev);
void npu_dump_job(struct npu_job *job);

/* npu_fault.c */
void npu_fault_init(struct npu_device *ndev);
void npu_fault_debugfs(struct npu_device *ndev, struct dentry *root);
bool npu_fault_hang(struct npu_device *ndev);
bool npu_fault_bo_alloc(struct npu_device *ndev, size_t size);

/* npu_genl.c */
int npu_genl_register(void);
void npu_genl_unregister(void);
void npu_genl_device_init(struct npu_device *ndev);
void npu_genl_device_fini(struct npu_device *ndev);
void npu_genl_device_add(struct npu_device *ndev);
void npu_genl_device_remove(struct npu_device *ndev);
void npu_genl_event(struct npu_device *ndev, u32 event,
		    const struct npu_ctx *ctx, u64 seqno);

/* npu_sysfs.c */
extern const struct attribute_group *npu_sysfs_groups[];

/* npu_debugfs.c */
#ifdef CONFIG_DEBUG_FS
void npu_debugfs_init(struct npu_device *ndev);
#else
static inline void npu_debugfs_init(struct npu_device *ndev) { }
#endif

#endif /* __NPU_DRV_H__ */
