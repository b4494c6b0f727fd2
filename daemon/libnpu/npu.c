// SPDX-License-Identifier: MIT
/*
 * libnpu: device, buffer objects, contexts, submission.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <xf86drm.h>

#include "npu.h"

struct npu_dev {
	int fd;
};

static int npu_ioctl(struct npu_dev *dev, unsigned long req, void *arg)
{
	return drmIoctl(dev->fd, req, arg) ? -errno : 0;
}

/* Is fd a node of this driver? Asked before any npu ioctl is sent to it. */
static int npu_check_driver(int fd)
{
	drmVersionPtr v = drmGetVersion(fd);
	int r;

	if (!v)
		return -ENODEV;
	r = v->name && !strcmp(v->name, "npu") ? 0 : -ENODEV;
	drmFreeVersion(v);
	return r;
}

/* Takes fd: on success it belongs to *ret_dev, on failure it is closed. */
static int npu_adopt_fd(int fd, struct npu_dev **ret_dev)
{
	struct drm_npu_get_info info;
	struct npu_dev *dev;
	int r;

	dev = calloc(1, sizeof(*dev));
	if (!dev) {
		close(fd);
		return -ENOMEM;
	}
	dev->fd = fd;
	r = npu_check_driver(dev->fd);
	if (r < 0)
		goto fail;
	r = npu_get_info(dev, &info);
	if (r < 0)
		goto fail;
	if (info.version_major != 1) {
		r = -EPROTO;
		goto fail;
	}
	*ret_dev = dev;
	return 0;
fail:
	close(dev->fd);
	free(dev);
	return r;
}

int npu_open_path(const char *path, struct npu_dev **ret_dev)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	return npu_adopt_fd(fd, ret_dev);
}

int npu_open_fd(int fd, struct npu_dev **ret_dev)
{
	int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);

	if (copy < 0)
		return -errno;
	return npu_adopt_fd(copy, ret_dev);
}

int npu_open_index(unsigned int index, struct npu_dev **ret_dev)
{
	char path[64];

	snprintf(path, sizeof(path), "/dev/accel/accel%u", index);
	return npu_open_path(path, ret_dev);
}

int npu_open_first(struct npu_dev **ret_dev, char *path, size_t path_size)
{
	char p[64];
	unsigned int i;
	int r, best = -ENODEV;

	for (i = 0; i < 64; i++) {
		snprintf(p, sizeof(p), "/dev/accel/accel%u", i);
		r = npu_open_path(p, ret_dev);
		if (r == 0) {
			if (path && path_size)
				snprintf(path, path_size, "%s", p);
			return 0;
		}
		/* keep the most telling error: a node of ours we cannot open */
		if (r != -ENOENT && r != -ENODEV)
			best = r;
	}
	return best;
}

void npu_close(struct npu_dev *dev)
{
	if (!dev)
		return;
	close(dev->fd);
	free(dev);
}

int npu_fd(const struct npu_dev *dev)
{
	return dev->fd;
}

int npu_client_id(struct npu_dev *dev, uint64_t *ret_id)
{
	char path[64], line[128];
	unsigned long long id;
	FILE *f;
	int r = -ENODATA;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", dev->fd);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "drm-client-id: %llu", &id) == 1) {
			*ret_id = id;
			r = 0;
			break;
		}
	fclose(f);
	return r;
}

int npu_get_info(struct npu_dev *dev, struct drm_npu_get_info *info)
{
	memset(info, 0, sizeof(*info));
	return npu_ioctl(dev, DRM_IOCTL_NPU_GET_INFO, info);
}

int npu_bo_alloc(struct npu_dev *dev, uint64_t size, struct npu_bo **ret_bo)
{
	struct drm_npu_bo_create c = { .size = size };
	struct drm_npu_bo_info i = { 0 };
	struct npu_bo *bo;
	int r;

	bo = calloc(1, sizeof(*bo));
	if (!bo)
		return -ENOMEM;
	r = npu_ioctl(dev, DRM_IOCTL_NPU_BO_CREATE, &c);
	if (r < 0) {
		free(bo);
		return r;
	}
	i.handle = c.handle;
	r = npu_ioctl(dev, DRM_IOCTL_NPU_BO_INFO, &i);
	if (r < 0) {
		struct drm_gem_close gc = { .handle = c.handle };

		drmIoctl(dev->fd, DRM_IOCTL_GEM_CLOSE, &gc);
		free(bo);
		return r;
	}
	bo->handle = c.handle;
	bo->size = i.size;
	*ret_bo = bo;
	return 0;
}

int npu_bo_map(struct npu_dev *dev, struct npu_bo *bo)
{
	struct drm_npu_bo_info i = { .handle = bo->handle };
	void *p;
	int r;

	if (bo->map)
		return 0;
	r = npu_ioctl(dev, DRM_IOCTL_NPU_BO_INFO, &i);
	if (r < 0)
		return r;
	p = mmap(NULL, i.size, PROT_READ | PROT_WRITE, MAP_SHARED, dev->fd,
		 (off_t)i.mmap_offset);
	if (p == MAP_FAILED)
		return -errno;
	bo->map = p;
	return 0;
}

int npu_bo_map_at(struct npu_dev *dev, struct npu_bo *bo, void *addr)
{
	struct drm_npu_bo_info i = { .handle = bo->handle };
	void *p;
	int r;

	if (bo->map || ((uintptr_t)addr & 4095))
		return -EINVAL;
	r = npu_ioctl(dev, DRM_IOCTL_NPU_BO_INFO, &i);
	if (r < 0)
		return r;
	p = mmap(addr, i.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		 dev->fd, (off_t)i.mmap_offset);
	if (p == MAP_FAILED)
		return -errno;
	bo->map = p;
	return 0;
}

int npu_bo_sync(struct npu_dev *dev, struct npu_bo *bo, uint32_t flags,
		uint64_t offset, uint64_t size)
{
	struct drm_npu_bo_sync s = {
		.handle = bo->handle, .flags = flags,
		.offset = offset, .size = size,
	};

	return npu_ioctl(dev, DRM_IOCTL_NPU_BO_SYNC, &s);
}

void npu_bo_free(struct npu_dev *dev, struct npu_bo *bo)
{
	struct drm_gem_close gc;

	if (!bo)
		return;
	if (bo->map)
		munmap(bo->map, bo->size);
	gc.handle = bo->handle;
	gc.pad = 0;
	drmIoctl(dev->fd, DRM_IOCTL_GEM_CLOSE, &gc);
	free(bo);
}

int npu_bo_export(struct npu_dev *dev, struct npu_bo *bo, int *ret_fd)
{
	return drmPrimeHandleToFD(dev->fd, bo->handle, DRM_CLOEXEC | DRM_RDWR,
				  ret_fd) ? -errno : 0;
}

int npu_bo_import(struct npu_dev *dev, int fd, struct npu_bo **ret_bo)
{
	struct drm_npu_bo_info i = { 0 };
	struct npu_bo *bo;
	uint32_t handle;
	int r;

	if (drmPrimeFDToHandle(dev->fd, fd, &handle))
		return -errno;
	i.handle = handle;
	r = npu_ioctl(dev, DRM_IOCTL_NPU_BO_INFO, &i);
	if (r < 0)
		return r;
	bo = calloc(1, sizeof(*bo));
	if (!bo)
		return -ENOMEM;
	bo->handle = handle;
	bo->size = i.size;
	*ret_bo = bo;
	return 0;
}

int npu_ctx_create(struct npu_dev *dev, uint32_t priority, uint32_t *ret_ctx)
{
	struct drm_npu_ctx_create c = { .priority = priority };
	int r;

	r = npu_ioctl(dev, DRM_IOCTL_NPU_CTX_CREATE, &c);
	if (r == 0)
		*ret_ctx = c.ctx_id;
	return r;
}

int npu_ctx_create_timeline(struct npu_dev *dev, uint32_t priority,
			    uint32_t *ret_ctx, uint32_t *ret_syncobj)
{
	struct drm_npu_ctx_create c = {
		.priority = priority, .flags = NPU_CTX_CREATE_F_SYNCOBJ,
	};
	int r;

	r = npu_ioctl(dev, DRM_IOCTL_NPU_CTX_CREATE, &c);
	if (r == 0) {
		*ret_ctx = c.ctx_id;
		*ret_syncobj = c.syncobj_handle;
	}
	return r;
}

int npu_ctx_destroy(struct npu_dev *dev, uint32_t ctx)
{
	struct drm_npu_ctx_destroy d = { .ctx_id = ctx };

	return npu_ioctl(dev, DRM_IOCTL_NPU_CTX_DESTROY, &d);
}

int npu_ctx_configure(struct npu_dev *dev, uint32_t ctx, const void *xclbin,
		      size_t size, uint64_t *ret_ops_mask)
{
	struct drm_npu_ctx_configure c = {
		.ctx_id = ctx,
		.xclbin_ptr = (uintptr_t)xclbin,
		.xclbin_size = (uint32_t)size,
	};
	int r;

	if (size > UINT32_MAX)
		return -E2BIG;
	r = npu_ioctl(dev, DRM_IOCTL_NPU_CTX_CONFIGURE, &c);
	if (r == 0 && ret_ops_mask)
		*ret_ops_mask = c.ops_mask;
	return r;
}

int npu_ctx_enable_ops(struct npu_dev *dev, uint32_t ctx, uint64_t ops_mask)
{
	size_t size;
	void *img;
	int r;

	r = npu_xclbin_build(ops_mask, &img, &size);
	if (r < 0)
		return r;
	r = npu_ctx_configure(dev, ctx, img, size, NULL);
	free(img);
	return r;
}

int npu_ctx_query(struct npu_dev *dev, uint32_t ctx, struct drm_npu_ctx_query *q)
{
	memset(q, 0, sizeof(*q));
	q->ctx_id = ctx;
	return npu_ioctl(dev, DRM_IOCTL_NPU_CTX_QUERY, q);
}

uint32_t npu_ert_header(uint32_t nops)
{
	uint32_t count = nops * (uint32_t)NPU_OP_WORDS;

	return (NPU_ERT_STATE_NEW << NPU_ERT_STATE_SHIFT) |
	       ((count << NPU_ERT_COUNT_SHIFT) & NPU_ERT_COUNT_MASK) |
	       ((uint32_t)NPU_ERT_START_CU << NPU_ERT_OPCODE_SHIFT) |
	       ((uint32_t)NPU_ERT_CU << NPU_ERT_TYPE_SHIFT);
}

uint32_t npu_ert_state(uint32_t header)
{
	return (header & NPU_ERT_STATE_MASK) >> NPU_ERT_STATE_SHIFT;
}

int npu_cmd_init(struct npu_cmd *cmd, struct npu_bo *bo, uint64_t offset)
{
	uint64_t room;

	if (!bo->map || offset % 4 || offset + 4 > bo->size)
		return -EINVAL;
	room = (bo->size - offset - 4) / sizeof(struct drm_npu_op);
	cmd->bo = bo;
	cmd->offset = offset;
	cmd->nops = 0;
	cmd->max_ops = room < NPU_ERT_MAX_COUNT / NPU_OP_WORDS ?
		(uint32_t)room : NPU_ERT_MAX_COUNT / NPU_OP_WORDS;
	*(uint32_t *)((char *)bo->map + offset) = npu_ert_header(0);
	return 0;
}

struct drm_npu_op *npu_cmd_add(struct npu_cmd *cmd, uint32_t opcode)
{
	struct drm_npu_op *op;

	if (cmd->nops >= cmd->max_ops)
		return NULL;
	op = (struct drm_npu_op *)((char *)cmd->bo->map + cmd->offset + 4) +
		cmd->nops;
	memset(op, 0, sizeof(*op));
	op->opcode = opcode;
	cmd->nops++;
	*(uint32_t *)((char *)cmd->bo->map + cmd->offset) =
		npu_ert_header(cmd->nops);
	return op;
}

void npu_op_set_buf(struct drm_npu_op *op, unsigned int slot,
		    const struct npu_bo *bo, uint64_t offset)
{
	op->buf[slot].handle = bo->handle;
	op->buf[slot].offset = offset;
}

void npu_op_set_fparam(struct drm_npu_op *op, unsigned int i, float v)
{
	memcpy(&op->fparam[i], &v, sizeof(v));
}

uint32_t npu_cmd_state(const struct npu_cmd *cmd)
{
	const volatile uint32_t *hdr =
		(const volatile uint32_t *)((char *)cmd->bo->map + cmd->offset);

	return npu_ert_state(*hdr);
}

int npu_submit(struct npu_dev *dev, uint32_t ctx, const struct npu_cmd *cmd,
	       const uint32_t *in_syncobjs, uint32_t n_in, uint32_t out_syncobj,
	       uint64_t *ret_seqno)
{
	struct drm_npu_submit s = {
		.ctx_id = ctx,
		.cmd_handle = cmd->bo->handle,
		.cmd_offset = cmd->offset,
		.in_syncobjs = (uintptr_t)in_syncobjs,
		.in_syncobj_count = n_in,
		.out_syncobj = out_syncobj,
	};
	int r;

	if (!n_in)
		s.in_syncobjs = 0;
	r = npu_ioctl(dev, DRM_IOCTL_NPU_SUBMIT, &s);
	if (r == 0 && ret_seqno)
		*ret_seqno = s.seqno;
	return r;
}

/* CLOCK_MONOTONIC now plus ns, saturated. */
static int64_t npu_deadline_ns(int64_t ns)
{
	struct timespec ts;
	int64_t now;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
	return ns > INT64_MAX - now ? INT64_MAX : now + ns;
}

int npu_wait(struct npu_dev *dev, uint32_t ctx, uint64_t seqno,
	     int64_t timeout_ns, uint32_t *ret_state)
{
	struct drm_npu_wait w = {
		.ctx_id = ctx, .seqno = seqno, .timeout_ns = timeout_ns,
	};
	int r;

	/* An absolute deadline: signals cannot stretch the wait. */
	if (timeout_ns > 0) {
		w.flags = NPU_WAIT_F_ABSOLUTE;
		w.timeout_ns = npu_deadline_ns(timeout_ns);
	}
	r = npu_ioctl(dev, DRM_IOCTL_NPU_WAIT, &w);
	if (r == -EINVAL && w.flags) {
		/* a kernel before the flag (uAPI 1.0): its relative timeout */
		w.flags = 0;
		w.timeout_ns = timeout_ns;
		r = npu_ioctl(dev, DRM_IOCTL_NPU_WAIT, &w);
	}
	if (r == 0 && ret_state)
		*ret_state = w.state;
	return r;
}

int npu_syncobj_create(struct npu_dev *dev, uint32_t *ret_handle)
{
	return drmSyncobjCreate(dev->fd, 0, ret_handle) ? -errno : 0;
}

void npu_syncobj_destroy(struct npu_dev *dev, uint32_t handle)
{
	if (handle)
		drmSyncobjDestroy(dev->fd, handle);
}

int npu_syncobj_wait(struct npu_dev *dev, uint32_t handle, int64_t timeout_ns)
{
	int64_t abs_ns = timeout_ns < 0 ? INT64_MAX : npu_deadline_ns(timeout_ns);
	uint32_t first;

	if (drmSyncobjWait(dev->fd, &handle, 1, abs_ns, 0, &first))
		return errno == ETIME || errno == ETIMEDOUT ? -ETIME : -errno;
	return 0;
}

int npu_timeline_wait(struct npu_dev *dev, uint32_t handle, uint64_t point,
		      int64_t timeout_ns)
{
	int64_t abs_ns = timeout_ns < 0 ? INT64_MAX : npu_deadline_ns(timeout_ns);
	uint32_t first;

	/* WAIT_FOR_SUBMIT: a point not submitted yet is waited for too */
	if (drmSyncobjTimelineWait(dev->fd, &handle, &point, 1, abs_ns,
				   DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT, &first))
		return errno == ETIME || errno == ETIMEDOUT ? -ETIME : -errno;
	return 0;
}
