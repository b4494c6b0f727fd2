/* SPDX-License-Identifier: MIT */
/*
 * libnpu: userspace access to npu.ko (/dev/accel/accelN) and its netlink
 * family. Every function returns 0 or a negative errno; nothing exits.
 */
#ifndef NPU_H
#define NPU_H

#include <stddef.h>
#include <stdint.h>

#include <drm/npu_accel.h>

#ifdef __cplusplus
extern "C" {
#endif

struct npu_dev;

/**
 * struct npu_bo - a buffer object
 * @handle: GEM handle
 * @size: size in bytes
 * @map: cpu mapping after npu_bo_map(), else NULL
 */
struct npu_bo {
	uint32_t handle;
	uint64_t size;
	void *map;
};

/*
 * Open an accel node. npu_open_path() and npu_open_index() return -ENODEV
 * when the node belongs to another driver (checked with DRM_IOCTL_VERSION
 * before any npu ioctl is sent) and -EPROTO for an unknown uAPI major.
 */
int npu_open_index(unsigned int index, struct npu_dev **ret_dev);
int npu_open_path(const char *path, struct npu_dev **ret_dev);
/*
 * The same for a node opened elsewhere (e.g. passed over D-Bus): fd is
 * duplicated, the caller keeps its own descriptor.
 */
int npu_open_fd(int fd, struct npu_dev **ret_dev);
/*
 * Open the first /dev/accel/accelN of this driver; its path goes to path
 * (when not NULL). -ENODEV when there is none, or the error of the last
 * npu node that failed to open (e.g. -EACCES).
 */
int npu_open_first(struct npu_dev **ret_dev, char *path, size_t path_size);
void npu_close(struct npu_dev *dev);
int npu_fd(const struct npu_dev *dev);
/*
 * The DRM client id of this open file ("drm-client-id" in its fdinfo), by
 * which netlink events name the owner of a context; -ENODATA when the
 * kernel does not show it.
 */
int npu_client_id(struct npu_dev *dev, uint64_t *ret_id);
int npu_get_info(struct npu_dev *dev, struct drm_npu_get_info *info);

int npu_bo_alloc(struct npu_dev *dev, uint64_t size, struct npu_bo **ret_bo);
int npu_bo_map(struct npu_dev *dev, struct npu_bo *bo);
/*
 * Map the BO at addr (page aligned, MAP_FIXED: replaces what is mapped
 * there), so several BOs can form one contiguous range of memory.
 */
int npu_bo_map_at(struct npu_dev *dev, struct npu_bo *bo, void *addr);
int npu_bo_sync(struct npu_dev *dev, struct npu_bo *bo, uint32_t flags,
		uint64_t offset, uint64_t size);
void npu_bo_free(struct npu_dev *dev, struct npu_bo *bo);
/* PRIME: export to a dma-buf fd, import one (from any process). */
int npu_bo_export(struct npu_dev *dev, struct npu_bo *bo, int *ret_fd);
int npu_bo_import(struct npu_dev *dev, int fd, struct npu_bo **ret_bo);

int npu_ctx_create(struct npu_dev *dev, uint32_t priority, uint32_t *ret_ctx);
/*
 * The same, with the context's timeline syncobj: point n signals when job
 * n ends (npu_timeline_wait()). The handle is the caller's to destroy
 * (npu_syncobj_destroy()). -EINVAL from a kernel before uAPI 1.1.
 */
int npu_ctx_create_timeline(struct npu_dev *dev, uint32_t priority,
			    uint32_t *ret_ctx, uint32_t *ret_syncobj);
int npu_ctx_destroy(struct npu_dev *dev, uint32_t ctx);
int npu_ctx_configure(struct npu_dev *dev, uint32_t ctx, const void *xclbin,
		      size_t size, uint64_t *ret_ops_mask);
/* Build an xclbin enabling ops_mask and configure ctx with it. */
int npu_ctx_enable_ops(struct npu_dev *dev, uint32_t ctx, uint64_t ops_mask);
int npu_ctx_query(struct npu_dev *dev, uint32_t ctx,
		  struct drm_npu_ctx_query *q);

/*
 * xclbin images (xrt/xclbin.h) whose IP_LAYOUT has one IP_KERNEL entry
 * "npu_<op>:cu0" per op in ops_mask. Free the image with free().
 */
int npu_xclbin_build(uint64_t ops_mask, void **ret_img, size_t *ret_size);
/* Opcodes this library knows the names of: 1 ... NPU_OPS_KNOWN - 1. */
#define NPU_OPS_KNOWN (NPU_OP_CVT_F32_F16 + 1)
int npu_xclbin_parse(const void *img, size_t size, uint64_t *ret_ops_mask);
const char *npu_op_name(uint32_t opcode);

/* ERT header for a command buffer of nops ops, state NEW. */
uint32_t npu_ert_header(uint32_t nops);
uint32_t npu_ert_state(uint32_t header);

/* Command buffer builder: header followed by the ops, in a mapped BO. */
struct npu_cmd {
	struct npu_bo *bo;
	uint64_t offset;
	uint32_t nops;
	uint32_t max_ops;
};
int npu_cmd_init(struct npu_cmd *cmd, struct npu_bo *bo, uint64_t offset);
struct drm_npu_op *npu_cmd_add(struct npu_cmd *cmd, uint32_t opcode);
void npu_op_set_buf(struct drm_npu_op *op, unsigned int slot,
		    const struct npu_bo *bo, uint64_t offset);
void npu_op_set_fparam(struct drm_npu_op *op, unsigned int i, float v);
uint32_t npu_cmd_state(const struct npu_cmd *cmd);

int npu_submit(struct npu_dev *dev, uint32_t ctx, const struct npu_cmd *cmd,
	       const uint32_t *in_syncobjs, uint32_t n_in, uint32_t out_syncobj,
	       uint64_t *ret_seqno);
/* timeout_ns < 0 waits forever; returns -ETIME on timeout. */
int npu_wait(struct npu_dev *dev, uint32_t ctx, uint64_t seqno,
	     int64_t timeout_ns, uint32_t *ret_state);

/* DRM syncobjs, the in/out fences of npu_submit(). */
int npu_syncobj_create(struct npu_dev *dev, uint32_t *ret_handle);
void npu_syncobj_destroy(struct npu_dev *dev, uint32_t handle);
/*
 * Wait until the fence in the syncobj signals (with or without an error);
 * timeout_ns < 0 waits forever; -ETIME on timeout.
 */
int npu_syncobj_wait(struct npu_dev *dev, uint32_t handle, int64_t timeout_ns);
/* Wait for point of a timeline syncobj, as npu_syncobj_wait(). */
int npu_timeline_wait(struct npu_dev *dev, uint32_t handle, uint64_t point,
		      int64_t timeout_ns);

/* Netlink (generic netlink family "npu"). */
struct npu_nl;

struct npu_nl_device {
	uint32_t index;
	uint32_t accel_minor;
	uint32_t num_engines;
	uint32_t bo_count;
	uint32_t ctx_count;
	char name[32];
	uint64_t jobs_submitted;
	uint64_t jobs_completed;
	uint64_t jobs_failed;
	uint64_t jobs_timedout;
	uint64_t resets;
	uint64_t busy_ns;
	uint64_t bo_bytes;
};

struct npu_nl_event {
	uint32_t event;		/* enum npu_genl_event */
	uint32_t dev_index;
	uint32_t ctx_id;
	uint32_t pid;		/* only on the admin group */
	uint64_t seqno;
	uint64_t client_id;	/* the context owner's, see npu_client_id() */
};

int npu_nl_open(struct npu_nl **ret_nl);
void npu_nl_close(struct npu_nl *nl);
/* Dump all devices into devs[0..max); *ret_n is the number found. */
int npu_nl_get_devices(struct npu_nl *nl, struct npu_nl_device *devs,
		       size_t max, size_t *ret_n);
int npu_nl_get_device(struct npu_nl *nl, uint32_t index,
		      struct npu_nl_device *dev);
/*
 * Join the "events" group (open to every user: events name a context's
 * owner by its DRM client id, never by pid); then poll npu_nl_fd() and
 * read events.
 */
int npu_nl_subscribe_events(struct npu_nl *nl);
/*
 * Join the "events-admin" group instead, whose events also carry the
 * owner's pid; -EPERM without CAP_NET_ADMIN.
 */
int npu_nl_subscribe_owner_events(struct npu_nl *nl);
int npu_nl_fd(struct npu_nl *nl);
/* Wait up to timeout_ms (-1: forever) for one event; -ETIME on timeout. */
int npu_nl_recv_event(struct npu_nl *nl, int timeout_ms,
		      struct npu_nl_event *ev);

#ifdef __cplusplus
}
#endif

#endif /* NPU_H */
