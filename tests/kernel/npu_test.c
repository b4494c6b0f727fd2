// SPDX-License-Identifier: MIT
/*
 * npu_test: in-VM tests of npu.ko through libnpu and raw ioctls.
 * Usage: npu_test [test...]   (no argument: all tests)
 *        npu_test --list      (the names of all tests)
 * Prints "PASS <name>" or "FAIL <name>: <why>" per test.
 */
#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <xf86drm.h>
#include <xrt/ert.h>
#include <xrt/xclbin.h>

#include <linux/npu_genl.h>

#include "npu.h"
#include "npu_ref.h"
#include "npu_test.h"

/* ---- tests ---- */

static void test_ert_layout(void)
{
	struct ert_packet p;
	uint32_t hdr = npu_ert_header(3);

	memset(&p, 0, sizeof(p));
	p.header = hdr;
	CHECK(p.state == NPU_ERT_STATE_NEW, "state field");
	CHECK(p.count == 3 * NPU_OP_WORDS, "count field %u", p.count);
	CHECK(p.opcode == ERT_START_CU && p.type == ERT_CU, "opcode/type");
	p.header = 0;
	p.state = 0xf;
	CHECK(p.header == NPU_ERT_STATE_MASK, "state mask");
	p.header = 0;
	p.custom = 0xff;
	CHECK(p.header == NPU_ERT_CUSTOM_MASK, "custom mask");
	p.header = 0;
	p.count = 0x7ff;
	CHECK(p.header == NPU_ERT_COUNT_MASK, "count mask");
	CHECK(NPU_ERT_MAX_COUNT == 0x7ff, "max count");
	p.header = 0;
	p.opcode = 0x1f;
	CHECK(p.header == NPU_ERT_OPCODE_MASK, "opcode mask");
	p.header = 0;
	p.type = 0xf;
	CHECK(p.header == NPU_ERT_TYPE_MASK, "type mask");
	CHECK(NPU_ERT_STATE_NEW == ERT_CMD_STATE_NEW &&
	      NPU_ERT_STATE_QUEUED == ERT_CMD_STATE_QUEUED &&
	      NPU_ERT_STATE_RUNNING == ERT_CMD_STATE_RUNNING &&
	      NPU_ERT_STATE_COMPLETED == ERT_CMD_STATE_COMPLETED &&
	      NPU_ERT_STATE_ERROR == ERT_CMD_STATE_ERROR &&
	      NPU_ERT_STATE_ABORT == ERT_CMD_STATE_ABORT &&
	      NPU_ERT_STATE_SUBMITTED == ERT_CMD_STATE_SUBMITTED &&
	      NPU_ERT_STATE_TIMEOUT == ERT_CMD_STATE_TIMEOUT, "state values");
	CHECK(NPU_ERT_START_CU == ERT_START_CU && NPU_ERT_CU == ERT_CU, "opcode values");
	CHECK(sizeof(struct drm_npu_op) == 192, "op size %zu", sizeof(struct drm_npu_op));
}

static void test_xclbin(void)
{
	uint64_t mask = 0;
	size_t size;
	void *img;
	struct axlf *ax;

	CHECK_ERR(npu_xclbin_build(ALL_OPS, &img, &size), 0);
	ax = img;
	CHECK(!memcmp(ax->m_magic, "xclbin2", 8), "magic");
	CHECK_ERR(npu_xclbin_parse(img, size, &mask), 0);
	CHECK(mask == ALL_OPS, "mask %#" PRIx64, mask);
	free(img);
	CHECK_ERR(npu_xclbin_build((1ull << NPU_OP_ADD) | (1ull << NPU_OP_COPY), &img, &size), 0);
	CHECK_ERR(npu_xclbin_parse(img, size, &mask), 0);
	CHECK(mask == ((1ull << NPU_OP_ADD) | (1ull << NPU_OP_COPY)), "mask2");
	CHECK_ERR(npu_xclbin_parse(img, size - 1, &mask), -EINVAL);
	free(img);
}

static void test_info(void)
{
	struct npu_dev *dev = open_dev();
	struct drm_npu_get_info info;

	CHECK(dev, "open");
	CHECK_ERR(npu_get_info(dev, &info), 0);
	CHECK(info.version_major == 1, "version");
	CHECK(info.num_engines == 1 && info.max_ops_per_cmd == NPU_ERT_MAX_COUNT / NPU_OP_WORDS,
	      "engines/ops");
	CHECK(info.ops_mask == ALL_OPS, "ops mask %#" PRIx64, (uint64_t)info.ops_mask);
	memset(&info, 0, sizeof(info));
	info.flags = 1;
	CHECK_ERR(ioc(npu_fd(dev), DRM_IOCTL_NPU_GET_INFO, &info), -EINVAL);
	memset(&info, 0, sizeof(info));
	info.pad = 1;
	CHECK_ERR(ioc(npu_fd(dev), DRM_IOCTL_NPU_GET_INFO, &info), -EINVAL);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

static void test_bo(void)
{
	struct npu_dev *dev = open_dev();
	struct drm_npu_bo_create c;
	struct drm_npu_bo_info in;
	struct drm_npu_bo_sync s;
	struct npu_bo *bo;
	int fd;

	CHECK(dev, "open");
	fd = npu_fd(dev);
	/* happy path */
	bo = alloc_map(dev, 5000);
	CHECK(bo, "alloc");
	CHECK(bo->size == 8192, "size rounded %" PRIu64, bo->size);
	memset(bo->map, 0xab, bo->size);
	CHECK(read_dbg("bo_count") == 1, "bo_count 1");
	CHECK_ERR(npu_bo_sync(dev, bo, NPU_BO_SYNC_TO_DEVICE, 0, bo->size), 0);
	CHECK_ERR(npu_bo_sync(dev, bo, NPU_BO_SYNC_FROM_DEVICE, 100, 1), 0);

	/* create: size 0, huge, flags */
	memset(&c, 0, sizeof(c));
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_BO_CREATE, &c), -EINVAL);
	c.size = 1ull << 40;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_BO_CREATE, &c), -E2BIG);
	c.size = UINT64_MAX;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_BO_CREATE, &c), -E2BIG);
	c.size = 4096;
	c.flags = 1;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_BO_CREATE, &c), -EINVAL);
	c.flags = 0x80000000u;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_BO_CREATE, &c), -EINVAL);
	/* injected allocation failure */
	CHECK_ERR(inject_alloc_fail(), 0);
	c.flags = 0;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_BO_CREATE, &c), -ENOMEM);
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_BO_CREATE, &c), 0);
	{
		struct drm_gem_close gc = { .handle = c.handle };

		CHECK_ERR(ioc(fd, DRM_IOCTL_GEM_CLOSE, &gc), 0);
	}

	/* info: bad handle, pad */
	memset(&in, 0, sizeof(in));
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_BO_INFO, &in), -ENOENT);
	in.handle = 12345;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_BO_INFO, &in), -ENOENT);
	in.handle = bo->handle;
	in.pad = 1;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_BO_INFO, &in), -EINVAL);
	in.pad = 0;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_BO_INFO, &in), 0);
	CHECK(in.size == bo->size && in.mmap_offset, "info out");

	/* sync: flags, range, overflow, handle */
	memset(&s, 0, sizeof(s));
	s.handle = bo->handle;
	s.size = 1;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_BO_SYNC, &s), -EINVAL);
	s.flags = NPU_BO_SYNC_TO_DEVICE | NPU_BO_SYNC_FROM_DEVICE;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_BO_SYNC, &s), -EINVAL);
	s.flags = 4;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_BO_SYNC, &s), -EINVAL);
	s.flags = NPU_BO_SYNC_TO_DEVICE;
	s.size = 0;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_BO_SYNC, &s), -EINVAL);
	s.size = bo->size + 1;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_BO_SYNC, &s), -EINVAL);
	s.offset = bo->size;
	s.size = 1;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_BO_SYNC, &s), -EINVAL);
	s.offset = UINT64_MAX - 1;
	s.size = 4;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_BO_SYNC, &s), -EINVAL);
	s.offset = 0;
	s.handle = 999;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_BO_SYNC, &s), -ENOENT);
	/* bad user pointer for the ioctl argument itself */
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_BO_INFO, (void *)16), -EFAULT);

	npu_bo_free(dev, bo);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

static void test_prime(void)
{
	struct npu_dev *dev = open_dev();
	struct npu_bo *bo;
	int dmafd, status;
	pid_t pid;

	CHECK(dev, "open");
	bo = alloc_map(dev, 4096);
	CHECK(bo, "alloc");
	memset(bo->map, 0x5a, 4096);
	CHECK_ERR(npu_bo_export(dev, bo, &dmafd), 0);
	pid = fork();
	if (pid == 0) {
		/* another process, its own open file: import, check, write */
		struct npu_dev *d2 = NULL;
		struct npu_bo *b2 = NULL;
		uint32_t ctx;
		struct npu_bo *cb;
		struct npu_cmd cmd;
		struct drm_npu_op *op;

		if (npu_open_index(0, &d2) < 0 || npu_bo_import(d2, dmafd, &b2) < 0 ||
		    npu_bo_map(d2, b2) < 0)
			_exit(2);
		if (((unsigned char *)b2->map)[100] != 0x5a)
			_exit(3);
		/* the device copies the first half onto the second half */
		ctx = new_ctx(d2, ALL_OPS);
		cb = alloc_map(d2, 4096);
		if (!ctx || !cb || npu_cmd_init(&cmd, cb, 0) < 0)
			_exit(4);
		memset(b2->map, 0x11, 2048);
		op = npu_cmd_add(&cmd, NPU_OP_COPY);
		op->dim[0] = 2048;
		npu_op_set_buf(op, 0, b2, 0);
		npu_op_set_buf(op, 1, b2, 2048);
		if (run_cmd(d2, ctx, &cmd) != NPU_ERT_STATE_COMPLETED)
			_exit(5);
		npu_close(d2);
		_exit(0);
	}
	CHECK(pid > 0, "fork");
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
	CHECK(((unsigned char *)bo->map)[4000] == 0x11, "copy visible in exporter");
	/* another npu device cannot import it (no kernel mapping of foreign BOs) */
	{
		struct npu_dev *d1 = NULL;
		struct npu_bo *b1 = NULL;

		CHECK_ERR(npu_open_index(1, &d1), 0);
		CHECK_ERR(npu_bo_import(d1, dmafd, &b1), -EOPNOTSUPP);
		npu_close(d1);
	}
	close(dmafd);
	npu_bo_free(dev, bo);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

static void test_ctx(void)
{
	struct npu_dev *dev = open_dev();
	struct drm_npu_ctx_create c;
	struct drm_npu_ctx_destroy d;
	struct drm_npu_ctx_configure cf;
	struct drm_npu_ctx_query q;
	uint32_t ids[64], ctx;
	size_t size;
	void *img;
	int fd, i;

	CHECK(dev, "open");
	fd = npu_fd(dev);
	memset(&c, 0, sizeof(c));
	c.priority = 3;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_CTX_CREATE, &c), -EINVAL);
	c.priority = 0;
	c.flags = 2;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_CTX_CREATE, &c), -EINVAL);
	c.flags = 0;
	c.pad = 1;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_CTX_CREATE, &c), -EINVAL);
	for (i = 0; i < 64; i++)
		CHECK_ERR(npu_ctx_create(dev, i % 3, &ids[i]), 0);
	CHECK(read_dbg("ctx_count") == 64, "ctx_count 64");
	CHECK_ERR(npu_ctx_create(dev, 0, &ctx), -ENOSPC);
	for (i = 0; i < 64; i += 2)
		CHECK_ERR(npu_ctx_destroy(dev, ids[i]), 0);
	CHECK_ERR(npu_ctx_destroy(dev, ids[0]), -ENOENT);
	CHECK_ERR(npu_ctx_destroy(dev, 0), -ENOENT);
	CHECK_ERR(npu_ctx_destroy(dev, 1000), -ENOENT);
	memset(&d, 0, sizeof(d));
	d.ctx_id = ids[1];
	d.pad = 1;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_CTX_DESTROY, &d), -EINVAL);

	/* configure */
	ctx = ids[1];
	CHECK_ERR(npu_xclbin_build(ALL_OPS, &img, &size), 0);
	memset(&cf, 0, sizeof(cf));
	cf.ctx_id = ctx;
	cf.xclbin_ptr = (uintptr_t)img;
	cf.xclbin_size = (uint32_t)size;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_CTX_CONFIGURE, &cf), 0);
	CHECK(cf.ops_mask == ALL_OPS, "configure mask");
	cf.flags = 1;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_CTX_CONFIGURE, &cf), -EINVAL);
	cf.flags = 0;
	cf.pad = 1;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_CTX_CONFIGURE, &cf), -EINVAL);
	cf.pad = 0;
	cf.xclbin_size = 0;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_CTX_CONFIGURE, &cf), -EINVAL);
	cf.xclbin_size = NPU_XCLBIN_MAX_SIZE + 1;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_CTX_CONFIGURE, &cf), -E2BIG);
	cf.xclbin_size = (uint32_t)size - 1;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_CTX_CONFIGURE, &cf), -EINVAL);
	cf.xclbin_size = (uint32_t)size;
	cf.xclbin_ptr = 0x10;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_CTX_CONFIGURE, &cf), -EFAULT);
	cf.xclbin_ptr = (uintptr_t)img;
	cf.ctx_id = 999;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_CTX_CONFIGURE, &cf), -ENOENT);
	((char *)img)[0] = 'X';
	cf.ctx_id = ctx;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_CTX_CONFIGURE, &cf), -EINVAL);
	((char *)img)[0] = 'x';
	/* section pointing outside the image */
	((struct axlf *)img)->m_sections[0].m_sectionOffset = size;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_CTX_CONFIGURE, &cf), -EINVAL);
	free(img);

	/* query */
	CHECK_ERR(npu_ctx_query(dev, ctx, &q), 0);
	CHECK(q.state == NPU_CTX_STATE_ACTIVE && q.submitted == 0, "query");
	CHECK_ERR(npu_ctx_query(dev, 777, &q), -ENOENT);
	memset(&q, 0, sizeof(q));
	q.ctx_id = ctx;
	q.flags = 2;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_CTX_QUERY, &q), -EINVAL);

	/* the rest are destroyed by close */
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

static void test_submit(void)
{
	struct npu_dev *dev = open_dev();
	struct npu_bo *cb, *data;
	struct npu_cmd cmd;
	struct drm_npu_op *op, saved;
	struct drm_npu_submit s;
	struct drm_npu_wait w;
	uint32_t ctx, ctx_noops, sync, state, handles[17];
	uint64_t seq;
	int fd, i;

	CHECK(dev, "open");
	fd = npu_fd(dev);
	ctx = new_ctx(dev, ALL_OPS);
	CHECK(ctx, "ctx");
	CHECK_ERR(npu_ctx_create(dev, 1, &ctx_noops), 0);
	cb = alloc_map(dev, 8192);
	data = alloc_map(dev, 4096);
	CHECK(cb && data, "alloc");
	fill_f32(data->map, 1024, -1, 1);

	CHECK_ERR(npu_cmd_init(&cmd, cb, 0), 0);
	op = npu_cmd_add(&cmd, NPU_OP_ADD);
	op->dim[0] = 256;
	npu_op_set_buf(op, 0, data, 0);
	npu_op_set_buf(op, 1, data, 1024);
	npu_op_set_buf(op, 2, data, 2048);
	saved = *op;

	/* happy path with out syncobj, then in syncobj */
	CHECK(drmSyncobjCreate(fd, 0, &sync) == 0, "syncobj");
	CHECK_ERR(npu_submit(dev, ctx, &cmd, NULL, 0, sync, &seq), 0);
	CHECK(seq == 1, "seq 1");
	CHECK(drmSyncobjWait(fd, &sync, 1, INT64_MAX, 0, NULL) == 0, "syncobj wait");
	CHECK_ERR(npu_wait(dev, ctx, seq, -1, &state), 0);
	CHECK(state == NPU_ERT_STATE_COMPLETED && npu_cmd_state(&cmd) == state, "state");
	CHECK_ERR(npu_submit(dev, ctx, &cmd, &sync, 1, 0, &seq), 0);
	CHECK(seq == 2, "seq 2");
	CHECK_ERR(npu_wait(dev, ctx, seq, -1, &state), 0);
	CHECK(state == NPU_ERT_STATE_COMPLETED, "state 2");

	/* submit: flags, pad, ctx, handle, offsets */
	memset(&s, 0, sizeof(s));
	s.ctx_id = ctx;
	s.cmd_handle = cb->handle;
	s.flags = 1;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -EINVAL);
	s.flags = 0;
	s.pad = 1;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -EINVAL);
	s.pad = 0;
	s.ctx_id = 99;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -ENOENT);
	s.ctx_id = ctx;
	s.cmd_handle = 0;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -ENOENT);
	s.cmd_handle = cb->handle;
	s.cmd_offset = 2;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -EINVAL);
	s.cmd_offset = cb->size;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -EINVAL);
	s.cmd_offset = UINT64_MAX - 3;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -EINVAL);
	s.cmd_offset = cb->size - 4;	/* header fits, ops do not */
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -EINVAL);
	s.cmd_offset = 0;
	s.in_syncobj_count = 17;
	s.in_syncobjs = (uintptr_t)handles;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -E2BIG);
	s.in_syncobj_count = 1;
	s.in_syncobjs = 0x20;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -EFAULT);
	handles[0] = 4242;
	s.in_syncobjs = (uintptr_t)handles;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -ENOENT);
	s.in_syncobj_count = 0;
	s.in_syncobjs = (uintptr_t)handles;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -EINVAL);
	s.in_syncobjs = 0;
	s.out_syncobj = 4242;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -ENOENT);
	s.out_syncobj = 0;
	/* ops not enabled for the context */
	s.ctx_id = ctx_noops;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -EPERM);
	s.ctx_id = ctx;

	/* ERT header fields */
	{
		uint32_t *hdr = cb->map, good = *hdr;

		*hdr = good | (1u << NPU_ERT_CUSTOM_SHIFT);
		CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -EINVAL);
		*hdr = (good & ~NPU_ERT_OPCODE_MASK) | (ERT_CONFIGURE << NPU_ERT_OPCODE_SHIFT);
		CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -EINVAL);
		*hdr = (good & ~NPU_ERT_TYPE_MASK) | (ERT_CTRL << NPU_ERT_TYPE_SHIFT);
		CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -EINVAL);
		*hdr = good & ~NPU_ERT_COUNT_MASK;
		CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -EINVAL);
		*hdr = (good & ~NPU_ERT_COUNT_MASK) | (47u << NPU_ERT_COUNT_SHIFT);
		CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -EINVAL);
		*hdr = good | NPU_ERT_COUNT_MASK;	/* count 2047: not a multiple */
		CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -EINVAL);
		*hdr = good;
	}

	/* op fields */
#define OP_BAD(stmt, err) do {						\
		*op = saved;						\
		stmt;							\
		CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), err);	\
	} while (0)
	OP_BAD(op->opcode = 0, -EINVAL);
	OP_BAD(op->opcode = NPU_OPS_KNOWN, -EINVAL);
	OP_BAD(op->opcode = 0xffffffffu, -EINVAL);
	OP_BAD(op->flags = NPU_OP_F_KV_F16, -EINVAL);
	OP_BAD(op->flags = 0x80, -EINVAL);
	OP_BAD(op->dim[0] = 0, -EINVAL);
	OP_BAD(op->dim[1] = 1, -EINVAL);
	OP_BAD(op->dim[7] = 1, -EINVAL);
	OP_BAD(op->dim[0] = 0xffffffffu, -EINVAL);
	OP_BAD(op->fparam[0] = 1, -EINVAL);
	OP_BAD(op->reserved[1] = 1, -EINVAL);
	OP_BAD(op->buf[0].pad = 1, -EINVAL);
	OP_BAD(op->buf[3].handle = data->handle, -EINVAL);
	OP_BAD(op->buf[7].offset = 4, -EINVAL);
	OP_BAD(op->buf[2].handle = 0, -EINVAL);
	OP_BAD(op->buf[2].handle = 31337, -ENOENT);
	OP_BAD(op->buf[2].offset = 4096 - 1023, -EINVAL);	/* past the end */
	OP_BAD(op->buf[2].offset = 4096, -EINVAL);
	OP_BAD(op->buf[2].offset = UINT64_MAX - 512, -EINVAL);	/* overflow */
	OP_BAD(op->dim[0] = 1025, -EINVAL);
	*op = saved;
	/* GEMM with overflowing sizes */
	memset(op, 0, sizeof(*op));
	op->opcode = NPU_OP_GEMM_W8A8;
	op->dim[0] = 1u << 24;
	op->dim[1] = 1u << 24;
	op->dim[2] = 1u << 16;
	for (i = 0; i < 5; i++)
		npu_op_set_buf(op, i, data, 0);
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -EINVAL);
	op->dim[2] = (1u << 16) + 1;	/* K too large for exact int32 */
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_SUBMIT, &s), -EINVAL);
	*op = saved;

	/* wait: bad seqno, ctx, flags, timeouts */
	memset(&w, 0, sizeof(w));
	w.ctx_id = ctx;
	w.seqno = 0;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_WAIT, &w), -EINVAL);
	w.seqno = 100;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_WAIT, &w), -EINVAL);
	w.seqno = 1;
	w.flags = 2;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_WAIT, &w), -EINVAL);
	w.flags = 0;
	w.pad = 1;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_WAIT, &w), -EINVAL);
	w.pad = 0;
	w.ctx_id = 77;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_WAIT, &w), -ENOENT);
	w.ctx_id = ctx;
	w.timeout_ns = 0;
	CHECK_ERR(ioc(fd, DRM_IOCTL_NPU_WAIT, &w), 0);
	CHECK(w.state == NPU_ERT_STATE_COMPLETED, "poll state");

	/* a slow job: wait with a short timeout gets -ETIME */
	CHECK_ERR(write_dbg("engine_delay_us", 300000), 0);
	CHECK_ERR(npu_submit(dev, ctx, &cmd, NULL, 0, 0, &seq), 0);
	CHECK_ERR(npu_wait(dev, ctx, seq, 1000000, &state), -ETIME);
	CHECK_ERR(npu_wait(dev, ctx, seq, 0, &state), -ETIME);
	CHECK_ERR(npu_wait(dev, ctx, seq, -1, &state), 0);
	CHECK(state == NPU_ERT_STATE_COMPLETED, "slow state");
	/* destroy a context with a job in flight */
	CHECK_ERR(npu_submit(dev, ctx, &cmd, NULL, 0, 0, &seq), 0);
	CHECK_ERR(npu_submit(dev, ctx, &cmd, NULL, 0, 0, &seq), 0);
	CHECK_ERR(npu_ctx_destroy(dev, ctx), 0);
	CHECK_ERR(write_dbg("engine_delay_us", 0), 0);

	/* runtime error: attention with a bad block table entry */
	ctx = new_ctx(dev, ALL_OPS);
	CHECK(ctx, "ctx2");
	{
		struct npu_cmd c2;
		int32_t *tbl = (int32_t *)((char *)data->map + 3072);
		int32_t *pos = (int32_t *)((char *)data->map + 3200);

		CHECK_ERR(npu_cmd_init(&c2, cb, 4096), 0);
		op = npu_cmd_add(&c2, NPU_OP_ATTENTION);
		op->dim[0] = 1; op->dim[1] = 1; op->dim[2] = 1; op->dim[3] = 4;
		op->dim[4] = 8; op->dim[5] = 4; op->dim[6] = 2;
		npu_op_set_buf(op, 0, data, 0);
		npu_op_set_buf(op, 1, data, 256);
		npu_op_set_buf(op, 2, data, 512);
		npu_op_set_buf(op, 3, data, 3200);
		npu_op_set_buf(op, 4, data, 1024);
		npu_op_set_buf(op, 5, data, 3072);
		tbl[0] = 1;
		tbl[1] = 5;
		pos[0] = 7;
		CHECK(run_cmd(dev, ctx, &c2) == NPU_ERT_STATE_ERROR, "bad table -> ERROR");
		tbl[1] = 0;
		CHECK(run_cmd(dev, ctx, &c2) == NPU_ERT_STATE_COMPLETED, "good table");
		pos[0] = 8;
		CHECK(run_cmd(dev, ctx, &c2) == NPU_ERT_STATE_ERROR, "bad pos -> ERROR");
	}
	CHECK_ERR(npu_ctx_query(dev, ctx, &(struct drm_npu_ctx_query){0}), 0);

	/* more jobs than the fence window: old seqnos report state 0 */
	{
		struct drm_npu_get_info info;
		struct drm_npu_ctx_query q;
		uint64_t n;

		CHECK_ERR(npu_get_info(dev, &info), 0);
		for (n = 0; n < info.fence_window + 10; n++)
			CHECK_ERR(npu_submit(dev, ctx, &cmd, NULL, 0, 0, &seq), 0);
		CHECK_ERR(npu_wait(dev, ctx, seq, -1, &state), 0);
		CHECK(state == NPU_ERT_STATE_COMPLETED, "last state");
		CHECK_ERR(npu_wait(dev, ctx, seq - info.fence_window, 0, &state), 0);
		CHECK(state == 0, "state outside the window %u", state);
		CHECK_ERR(npu_wait(dev, ctx, seq - info.fence_window + 1, 0, &state), 0);
		CHECK(state == NPU_ERT_STATE_COMPLETED, "state inside the window");
		CHECK_ERR(npu_ctx_query(dev, ctx, &q), 0);
		CHECK(q.submitted == seq && q.state == NPU_CTX_STATE_ACTIVE, "query");
	}

	drmSyncobjDestroy(fd, sync);
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/* ---- results vs npu_ref ---- */

static void test_gemm(void)
{
	struct npu_dev *dev = open_dev();
	struct npu_bo *cb, *bo;
	uint32_t ctx;
	int iter, variant;

	CHECK(dev, "open");
	ctx = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, 4096);
	bo = alloc_map(dev, 4 << 20);
	CHECK(ctx && cb && bo, "setup");

	for (iter = 0; iter < 60; iter++) {
		for (variant = 0; variant < 3; variant++) {
			struct arena ar = { .bo = bo };
			uint32_t M, N, K;
			uint64_t oa, ow, oas, ows, oo;
			struct npu_cmd cmd;
			struct drm_npu_op *op;
			void *ref;
			size_t osz;

			if (iter < 50) {
				M = rnd_range(1, 9);
				N = rnd_range(1, 67);
				K = rnd_range(1, 300);
			} else {
				M = rnd_range(8, 32);
				N = rnd_range(64, 300);
				K = rnd_range(256, 1100);
			}
			oa = arena_get(&ar, (uint64_t)M * K * (variant == 2 ? 2 : 1));
			ow = arena_get(&ar, (uint64_t)N * K);
			oas = arena_get(&ar, M * 4);
			ows = arena_get(&ar, N * 4);
			osz = (size_t)M * N * 4;
			oo = arena_get(&ar, osz);
			CHECK(oo != UINT64_MAX, "arena");
			if (variant == 2) {
				int16_t *a16 = at(&ar, oa);
				uint32_t i;

				for (i = 0; i < M * K; i++)
					a16[i] = (int16_t)(rnd() & 0xffff);
			} else {
				fill_i8(at(&ar, oa), (size_t)M * K);
			}
			fill_i8(at(&ar, ow), (size_t)N * K);
			fill_f32(at(&ar, oas), M, 0.001f, 0.1f);
			fill_f32(at(&ar, ows), N, 0.001f, 0.1f);
			memset(at(&ar, oo), 0xcc, osz);

			CHECK_ERR(npu_cmd_init(&cmd, cb, 0), 0);
			op = npu_cmd_add(&cmd, variant == 0 ? NPU_OP_GEMM_W8A8 :
					 variant == 1 ? NPU_OP_GEMM_W8A8_I32 :
					 NPU_OP_GEMM_W8A16);
			op->dim[0] = M;
			op->dim[1] = N;
			op->dim[2] = K;
			npu_op_set_buf(op, 0, bo, oa);
			npu_op_set_buf(op, 1, bo, ow);
			if (variant != 1) {
				npu_op_set_buf(op, 2, bo, oas);
				npu_op_set_buf(op, 3, bo, ows);
			}
			npu_op_set_buf(op, 4, bo, oo);
			CHECK(run_cmd(dev, ctx, &cmd) == NPU_ERT_STATE_COMPLETED,
			      "gemm %d %ux%ux%u state", variant, M, N, K);

			ref = malloc(osz);
			if (variant == 0)
				npu_ref_gemm_w8a8(at(&ar, oa), at(&ar, ow), at(&ar, oas),
						  at(&ar, ows), ref, N, K, 0, M, 0, N);
			else if (variant == 1)
				npu_ref_gemm_w8a8_i32(at(&ar, oa), at(&ar, ow), ref,
						      N, K, 0, M, 0, N);
			else
				npu_ref_gemm_w8a16(at(&ar, oa), at(&ar, ow), at(&ar, oas),
						   at(&ar, ows), ref, N, K, 0, M, 0, N);
			if (cmp_bytes(at(&ar, oo), ref, osz, "gemm")) {
				free(ref);
				CHECK(0, "gemm variant %d M %u N %u K %u not bit-exact",
				      variant, M, N, K);
			}
			free(ref);
		}
	}
	npu_bo_free(dev, cb);
	npu_bo_free(dev, bo);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/* One op per call; checks device output against the reference. */
static void test_layer_ops(void)
{
	struct npu_dev *dev = open_dev();
	struct npu_bo *cb, *bo;
	uint32_t ctx;
	int iter;

	CHECK(dev, "open");
	ctx = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, 4096);
	bo = alloc_map(dev, 8 << 20);
	CHECK(ctx && cb && bo, "setup");

	for (iter = 0; iter < 24; iter++) {
		struct arena ar = { .bo = bo };
		struct npu_cmd cmd;
		struct drm_npu_op *op;
		uint32_t M = rnd_range(1, 7), D = rnd_range(1, 67) * 2;
		uint32_t H = rnd_range(1, 4), KVH, HD = rnd_range(1, 12) * 2;
		uint32_t NCTX = rnd_range(1, 40), BS, NB;
		size_t n = (size_t)M * D, i;
		uint64_t ox, ow, oo, op2, oq, os;
		int f16 = iter & 1, paged = (iter >> 1) & 1;
		float eps = 1e-5f, base = 10000.0f;
		void *ref, *ref2;

		/* rmsnorm */
		ox = arena_get(&ar, n * 4);
		ow = arena_get(&ar, D * 4);
		oo = arena_get(&ar, n * 4);
		fill_f32(at(&ar, ox), n, -3, 3);
		fill_f32(at(&ar, ow), D, 0.5f, 1.5f);
		CHECK_ERR(npu_cmd_init(&cmd, cb, 0), 0);
		op = npu_cmd_add(&cmd, NPU_OP_RMSNORM);
		op->dim[0] = M;
		op->dim[1] = D;
		npu_op_set_fparam(op, 0, eps);
		npu_op_set_buf(op, 0, bo, ox);
		npu_op_set_buf(op, 1, bo, ow);
		npu_op_set_buf(op, 2, bo, oo);
		/* silu_mul and add on the same data, in the same command */
		op2 = arena_get(&ar, n * 4);
		op = npu_cmd_add(&cmd, NPU_OP_SILU_MUL);
		op->dim[0] = (uint32_t)n;
		npu_op_set_buf(op, 0, bo, ox);
		npu_op_set_buf(op, 1, bo, oo);
		npu_op_set_buf(op, 2, bo, op2);
		oq = arena_get(&ar, n * 4);
		op = npu_cmd_add(&cmd, NPU_OP_ADD);
		op->dim[0] = (uint32_t)n;
		npu_op_set_buf(op, 0, bo, op2);
		npu_op_set_buf(op, 1, bo, ox);
		npu_op_set_buf(op, 2, bo, oq);
		CHECK(run_cmd(dev, ctx, &cmd) == NPU_ERT_STATE_COMPLETED, "rmsnorm state");
		ref = malloc(n * 4);
		ref2 = malloc(n * 4);
		npu_ref_rmsnorm(at(&ar, ox), at(&ar, ow), ref, D, eps, 0, M);
		CHECK(cmp_bytes(at(&ar, oo), ref, n * 4, "rmsnorm") == 0, "rmsnorm M %u D %u", M, D);
		npu_ref_silu_mul(at(&ar, ox), ref, ref2, 0, n);
		CHECK(cmp_bytes(at(&ar, op2), ref2, n * 4, "silu") == 0, "silu_mul n %zu", n);
		npu_ref_add(ref2, at(&ar, ox), ref, 0, n);
		CHECK(cmp_bytes(at(&ar, oq), ref, n * 4, "add") == 0, "add n %zu", n);
		free(ref);
		free(ref2);

		/* quant i8 / i16 and cvt */
		{
			uint64_t q8 = arena_get(&ar, n), s8 = arena_get(&ar, M * 4);
			uint64_t q16 = arena_get(&ar, n * 2), s16 = arena_get(&ar, M * 4);
			uint64_t h = arena_get(&ar, n * 2);
			int8_t *r8 = malloc(n);
			int16_t *r16 = malloc(n * 2);
			uint16_t *rh = malloc(n * 2);
			float rs8[8], rs16[8];

			if (iter == 3)	/* an all-zero row */
				memset(at(&ar, ox), 0, D * 4);
			CHECK_ERR(npu_cmd_init(&cmd, cb, 0), 0);
			op = npu_cmd_add(&cmd, NPU_OP_QUANT_I8);
			op->dim[0] = M;
			op->dim[1] = D;
			npu_op_set_buf(op, 0, bo, ox);
			npu_op_set_buf(op, 1, bo, q8);
			npu_op_set_buf(op, 2, bo, s8);
			op = npu_cmd_add(&cmd, NPU_OP_QUANT_I16);
			op->dim[0] = M;
			op->dim[1] = D;
			npu_op_set_buf(op, 0, bo, ox);
			npu_op_set_buf(op, 1, bo, q16);
			npu_op_set_buf(op, 2, bo, s16);
			op = npu_cmd_add(&cmd, NPU_OP_CVT_F32_F16);
			op->dim[0] = (uint32_t)n;
			npu_op_set_buf(op, 0, bo, ox);
			npu_op_set_buf(op, 1, bo, h);
			CHECK(run_cmd(dev, ctx, &cmd) == NPU_ERT_STATE_COMPLETED, "quant state");
			npu_ref_quant_i8(at(&ar, ox), r8, rs8, D, 0, M);
			npu_ref_quant_i16(at(&ar, ox), r16, rs16, D, 0, M);
			npu_ref_cvt_f32_f16(at(&ar, ox), rh, 0, n);
			CHECK(cmp_bytes(at(&ar, q8), r8, n, "q8") == 0 &&
			      cmp_bytes(at(&ar, s8), rs8, M * 4, "s8") == 0, "quant_i8");
			CHECK(cmp_bytes(at(&ar, q16), r16, n * 2, "q16") == 0 &&
			      cmp_bytes(at(&ar, s16), rs16, M * 4, "s16") == 0, "quant_i16");
			CHECK(cmp_bytes(at(&ar, h), rh, n * 2, "f16") == 0, "cvt_f32_f16");
			free(r8);
			free(r16);
			free(rh);
		}

		/* rope, in place */
		{
			size_t rn = (size_t)M * H * HD;
			uint64_t rx = arena_get(&ar, rn * 4), rp = arena_get(&ar, M * 4);
			int32_t *pos = at(&ar, rp);
			float *orig = malloc(rn * 4), *rref = malloc(rn * 4);

			fill_f32(at(&ar, rx), rn, -2, 2);
			for (i = 0; i < M; i++)
				pos[i] = (int32_t)rnd_range(0, 5000);
			memcpy(orig, at(&ar, rx), rn * 4);
			CHECK_ERR(npu_cmd_init(&cmd, cb, 0), 0);
			op = npu_cmd_add(&cmd, NPU_OP_ROPE);
			op->dim[0] = M;
			op->dim[1] = H;
			op->dim[2] = HD;
			npu_op_set_fparam(op, 0, base);
			npu_op_set_buf(op, 0, bo, rx);
			npu_op_set_buf(op, 1, bo, rp);
			npu_op_set_buf(op, 2, bo, rx);
			CHECK(run_cmd(dev, ctx, &cmd) == NPU_ERT_STATE_COMPLETED, "rope state");
			npu_ref_rope(orig, pos, rref, H, HD, base, 0, M);
			CHECK(cmp_bytes(at(&ar, rx), rref, rn * 4, "rope") == 0,
			      "rope M %u H %u HD %u", M, H, HD);
			free(orig);
			free(rref);
		}

		/* attention, GQA, f32/f16, contiguous/paged */
		{
			struct npu_ref_attn a;
			size_t qn, rowe, kvrows;
			uint64_t oqq, ok, ov, opos, oout, otb = 0;
			int32_t *pos, *tb = NULL;
			float *rout, *scratch;
			uint32_t t;

			KVH = rnd_range(1, 2);
			H = KVH * rnd_range(1, 3);
			BS = paged ? rnd_range(1, 8) : 0;
			NB = paged ? (NCTX + BS - 1) / BS + rnd_range(0, 3) : 0;
			qn = (size_t)M * H * HD;
			rowe = (size_t)KVH * HD;
			kvrows = paged ? (size_t)NB * BS : NCTX;
			oqq = arena_get(&ar, qn * 4);
			ok = arena_get(&ar, kvrows * rowe * (f16 ? 2 : 4));
			ov = arena_get(&ar, kvrows * rowe * (f16 ? 2 : 4));
			opos = arena_get(&ar, M * 4);
			oout = arena_get(&ar, qn * 4);
			CHECK(oout != UINT64_MAX, "arena attn");
			fill_f32(at(&ar, oqq), qn, -1, 1);
			if (f16) {
				uint16_t *k = at(&ar, ok), *v = at(&ar, ov);

				for (i = 0; i < kvrows * rowe; i++) {
					k[i] = npu_ref_f32_to_f16(rnd_float(-1, 1));
					v[i] = npu_ref_f32_to_f16(rnd_float(-1, 1));
				}
			} else {
				fill_f32(at(&ar, ok), kvrows * rowe, -1, 1);
				fill_f32(at(&ar, ov), kvrows * rowe, -1, 1);
			}
			pos = at(&ar, opos);
			for (i = 0; i < M; i++)
				pos[i] = (int32_t)rnd_range(0, NCTX - 1);
			if (paged) {
				uint32_t nt = (NCTX + BS - 1) / BS;

				otb = arena_get(&ar, nt * 4);
				tb = at(&ar, otb);
				for (t = 0; t < nt; t++)
					tb[t] = (int32_t)((t * 7 + 3) % NB);
			}
			CHECK_ERR(npu_cmd_init(&cmd, cb, 0), 0);
			op = npu_cmd_add(&cmd, NPU_OP_ATTENTION);
			op->flags = f16 ? NPU_OP_F_KV_F16 : 0;
			op->dim[0] = M; op->dim[1] = H; op->dim[2] = KVH; op->dim[3] = HD;
			op->dim[4] = NCTX; op->dim[5] = BS; op->dim[6] = NB;
			npu_op_set_buf(op, 0, bo, oqq);
			npu_op_set_buf(op, 1, bo, ok);
			npu_op_set_buf(op, 2, bo, ov);
			npu_op_set_buf(op, 3, bo, opos);
			npu_op_set_buf(op, 4, bo, oout);
			if (paged)
				npu_op_set_buf(op, 5, bo, otb);
			CHECK(run_cmd(dev, ctx, &cmd) == NPU_ERT_STATE_COMPLETED, "attn state");
			memset(&a, 0, sizeof(a));
			a.q = at(&ar, oqq); a.k = at(&ar, ok); a.v = at(&ar, ov);
			a.pos = pos; a.block_table = tb;
			rout = malloc(qn * 4);
			scratch = malloc(NCTX * 4);
			a.out = rout;
			a.n_heads = H; a.n_kv_heads = KVH; a.head_dim = HD;
			a.n_ctx = NCTX; a.block_size = BS; a.n_blocks = NB;
			a.kv_f16 = f16;
			for (i = 0; i < M; i++)
				for (t = 0; t < H; t++)
					npu_ref_attention(&a, (uint32_t)i, t, scratch);
			CHECK(cmp_bytes(at(&ar, oout), rout, qn * 4, "attention") == 0,
			      "attention M %u H %u KVH %u HD %u ctx %u bs %u f16 %d",
			      M, H, KVH, HD, NCTX, BS, f16);
			free(rout);
			free(scratch);
		}
		(void)os;
	}
	npu_bo_free(dev, cb);
	npu_bo_free(dev, bo);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/*
 * A whole Llama decoder layer as one submission (w8a8), against the same
 * sequence of reference calls.
 */
static void test_decoder_layer(void)
{
	enum { M = 3, DIM = 64, NH = 4, NKV = 2, HD = 16, FF = 96, CTX = 16 };
	struct npu_dev *dev = open_dev();
	struct npu_bo *cb, *bo;
	struct arena ar;
	struct npu_cmd cmd;
	struct drm_npu_op *op;
	uint32_t ctx;
	uint64_t x, wn1, wn2, xn, xq, xs, wq, wk, wv, wo, w1, w3, w2, sq, sk, sv,
		so, s1, s3, s2, q, k, v, kc, vc, pos, att, aq, as, o, h, hn, hq,
		hs, g, u, gu, gq, gs, dn, out;
	size_t kvb = (size_t)NKV * HD * 4;
	char *ref;
	int i;

	CHECK(dev, "open");
	ctx = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, 8192);
	bo = alloc_map(dev, 1 << 20);
	CHECK(ctx && cb && bo, "setup");
	ar.bo = bo;
	ar.used = 0;
#define A(var, bytes) var = arena_get(&ar, (bytes))
	A(x, M * DIM * 4); A(wn1, DIM * 4); A(wn2, DIM * 4);
	A(xn, M * DIM * 4); A(xq, M * DIM); A(xs, M * 4);
	A(wq, NH * HD * DIM); A(wk, NKV * HD * DIM); A(wv, NKV * HD * DIM);
	A(wo, DIM * NH * HD); A(w1, FF * DIM); A(w3, FF * DIM); A(w2, DIM * FF);
	A(sq, NH * HD * 4); A(sk, NKV * HD * 4); A(sv, NKV * HD * 4);
	A(so, DIM * 4); A(s1, FF * 4); A(s3, FF * 4); A(s2, DIM * 4);
	A(q, M * NH * HD * 4); A(k, M * kvb); A(v, M * kvb);
	A(kc, CTX * kvb); A(vc, CTX * kvb); A(pos, M * 4);
	A(att, M * NH * HD * 4); A(aq, M * NH * HD); A(as, M * 4);
	A(o, M * DIM * 4); A(h, M * DIM * 4); A(hn, M * DIM * 4);
	A(hq, M * DIM); A(hs, M * 4); A(g, M * FF * 4); A(u, M * FF * 4);
	A(gu, M * FF * 4); A(gq, M * FF); A(gs, M * 4); A(dn, M * DIM * 4);
	A(out, M * DIM * 4);
#undef A
	CHECK(out != UINT64_MAX, "arena");
	fill_f32(at(&ar, x), M * DIM, -1, 1);
	fill_f32(at(&ar, wn1), DIM, 0.8f, 1.2f);
	fill_f32(at(&ar, wn2), DIM, 0.8f, 1.2f);
	fill_i8(at(&ar, wq), (size_t)(sq - wq));	/* all weights */
	fill_f32(at(&ar, sq), (size_t)(q - sq) / 4, 0.001f, 0.02f); /* all scales */
	fill_f32(at(&ar, kc), CTX * NKV * HD, -1, 1);	/* older cache rows */
	fill_f32(at(&ar, vc), CTX * NKV * HD, -1, 1);
	for (i = 0; i < M; i++)
		((int32_t *)at(&ar, pos))[i] = 5 + i;	/* tokens 5, 6, 7 */
	/* Keep a pristine copy of the inputs for the reference run. */
	ref = malloc(ar.used);
	memcpy(ref, bo->map, ar.used);

	CHECK_ERR(npu_cmd_init(&cmd, cb, 0), 0);
#define OP(code) (op = npu_cmd_add(&cmd, code))
#define B(slot, off) npu_op_set_buf(op, slot, bo, off)
#define GEMM(a, as_, w, ws, o_, n_, k_) do { OP(NPU_OP_GEMM_W8A8); \
	op->dim[0] = M; op->dim[1] = n_; op->dim[2] = k_; \
	B(0, a); B(1, w); B(2, as_); B(3, ws); B(4, o_); } while (0)
#define QUANT(x_, q_, s_, k_) do { OP(NPU_OP_QUANT_I8); op->dim[0] = M; \
	op->dim[1] = k_; B(0, x_); B(1, q_); B(2, s_); } while (0)
	OP(NPU_OP_RMSNORM); op->dim[0] = M; op->dim[1] = DIM;
	npu_op_set_fparam(op, 0, 1e-5f); B(0, x); B(1, wn1); B(2, xn);
	QUANT(xn, xq, xs, DIM);
	GEMM(xq, xs, wq, sq, q, NH * HD, DIM);
	GEMM(xq, xs, wk, sk, k, NKV * HD, DIM);
	GEMM(xq, xs, wv, sv, v, NKV * HD, DIM);
	OP(NPU_OP_ROPE); op->dim[0] = M; op->dim[1] = NH; op->dim[2] = HD;
	npu_op_set_fparam(op, 0, 10000.0f); B(0, q); B(1, pos); B(2, q);
	OP(NPU_OP_ROPE); op->dim[0] = M; op->dim[1] = NKV; op->dim[2] = HD;
	npu_op_set_fparam(op, 0, 10000.0f); B(0, k); B(1, pos); B(2, k);
	OP(NPU_OP_COPY); op->dim[0] = (uint32_t)(M * kvb); B(0, k); B(1, kc + 5 * kvb);
	OP(NPU_OP_COPY); op->dim[0] = (uint32_t)(M * kvb); B(0, v); B(1, vc + 5 * kvb);
	OP(NPU_OP_ATTENTION); op->dim[0] = M; op->dim[1] = NH; op->dim[2] = NKV;
	op->dim[3] = HD; op->dim[4] = CTX;
	B(0, q); B(1, kc); B(2, vc); B(3, pos); B(4, att);
	QUANT(att, aq, as, NH * HD);
	GEMM(aq, as, wo, so, o, DIM, NH * HD);
	OP(NPU_OP_ADD); op->dim[0] = M * DIM; B(0, x); B(1, o); B(2, h);
	OP(NPU_OP_RMSNORM); op->dim[0] = M; op->dim[1] = DIM;
	npu_op_set_fparam(op, 0, 1e-5f); B(0, h); B(1, wn2); B(2, hn);
	QUANT(hn, hq, hs, DIM);
	GEMM(hq, hs, w1, s1, g, FF, DIM);
	GEMM(hq, hs, w3, s3, u, FF, DIM);
	OP(NPU_OP_SILU_MUL); op->dim[0] = M * FF; B(0, g); B(1, u); B(2, gu);
	op = NULL;
	{
		/* ops need the M-row quant of the FF activations */
		OP(NPU_OP_QUANT_I8); op->dim[0] = M; op->dim[1] = FF;
		B(0, gu); B(1, gq); B(2, gs);
	}
	GEMM(gq, gs, w2, s2, dn, DIM, FF);
	OP(NPU_OP_ADD); op->dim[0] = M * DIM; B(0, h); B(1, dn); B(2, out);
	CHECK(cmd.nops == 21, "nops %u", cmd.nops);
	CHECK(run_cmd(dev, ctx, &cmd) == NPU_ERT_STATE_COMPLETED, "layer state");

	/* reference on the pristine copy */
#define R(off) (ref + (off))
	npu_ref_rmsnorm((float *)R(x), (float *)R(wn1), (float *)R(xn), DIM, 1e-5f, 0, M);
	npu_ref_quant_i8((float *)R(xn), (int8_t *)R(xq), (float *)R(xs), DIM, 0, M);
	npu_ref_gemm_w8a8((int8_t *)R(xq), (int8_t *)R(wq), (float *)R(xs), (float *)R(sq),
			  (float *)R(q), NH * HD, DIM, 0, M, 0, NH * HD);
	npu_ref_gemm_w8a8((int8_t *)R(xq), (int8_t *)R(wk), (float *)R(xs), (float *)R(sk),
			  (float *)R(k), NKV * HD, DIM, 0, M, 0, NKV * HD);
	npu_ref_gemm_w8a8((int8_t *)R(xq), (int8_t *)R(wv), (float *)R(xs), (float *)R(sv),
			  (float *)R(v), NKV * HD, DIM, 0, M, 0, NKV * HD);
	npu_ref_rope((float *)R(q), (int32_t *)R(pos), (float *)R(q), NH, HD, 10000.0f, 0, M);
	npu_ref_rope((float *)R(k), (int32_t *)R(pos), (float *)R(k), NKV, HD, 10000.0f, 0, M);
	memcpy(R(kc + 5 * kvb), R(k), M * kvb);
	memcpy(R(vc + 5 * kvb), R(v), M * kvb);
	{
		struct npu_ref_attn a = {
			.q = (float *)R(q), .k = R(kc), .v = R(vc),
			.pos = (int32_t *)R(pos), .out = (float *)R(att),
			.n_heads = NH, .n_kv_heads = NKV, .head_dim = HD, .n_ctx = CTX,
		};
		float scratch[CTX];
		int mm, hh;

		for (mm = 0; mm < M; mm++)
			for (hh = 0; hh < NH; hh++)
				npu_ref_attention(&a, mm, hh, scratch);
	}
	npu_ref_quant_i8((float *)R(att), (int8_t *)R(aq), (float *)R(as), NH * HD, 0, M);
	npu_ref_gemm_w8a8((int8_t *)R(aq), (int8_t *)R(wo), (float *)R(as), (float *)R(so),
			  (float *)R(o), DIM, NH * HD, 0, M, 0, DIM);
	npu_ref_add((float *)R(x), (float *)R(o), (float *)R(h), 0, M * DIM);
	npu_ref_rmsnorm((float *)R(h), (float *)R(wn2), (float *)R(hn), DIM, 1e-5f, 0, M);
	npu_ref_quant_i8((float *)R(hn), (int8_t *)R(hq), (float *)R(hs), DIM, 0, M);
	npu_ref_gemm_w8a8((int8_t *)R(hq), (int8_t *)R(w1), (float *)R(hs), (float *)R(s1),
			  (float *)R(g), FF, DIM, 0, M, 0, FF);
	npu_ref_gemm_w8a8((int8_t *)R(hq), (int8_t *)R(w3), (float *)R(hs), (float *)R(s3),
			  (float *)R(u), FF, DIM, 0, M, 0, FF);
	npu_ref_silu_mul((float *)R(g), (float *)R(u), (float *)R(gu), 0, M * FF);
	npu_ref_quant_i8((float *)R(gu), (int8_t *)R(gq), (float *)R(gs), FF, 0, M);
	npu_ref_gemm_w8a8((int8_t *)R(gq), (int8_t *)R(w2), (float *)R(gs), (float *)R(s2),
			  (float *)R(dn), DIM, FF, 0, M, 0, DIM);
	npu_ref_add((float *)R(h), (float *)R(dn), (float *)R(out), 0, M * DIM);
#undef R
	CHECK(cmp_bytes(bo->map, ref, ar.used, "layer") == 0, "decoder layer differs");
	free(ref);
	npu_bo_free(dev, cb);
	npu_bo_free(dev, bo);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/* ---- priority ---- */

/*
 * Low-priority jobs queued ahead, then a high-priority one: the scheduler
 * gives the engine (one job at a time) to the high one next, so at most the
 * low job running when it came, one the scheduler was already handing over
 * and one finishing while the wait returns complete in between. Counted
 * from the high job's submission, not from the start, so a slow guest
 * (TCG, debug kernel) submitting the low jobs slowly does not fail it; if
 * so few low jobs are left that FIFO order could not be told apart, that is
 * reported as its own failure.
 */
static void test_priority(void)
{
	enum { N_LOW = 30, DELAY_US = 40000, MIN_LEFT = 8, MAX_BETWEEN = 3 };
	struct npu_dev *dev = open_dev();
	struct npu_bo *cb, *data;
	struct npu_cmd cmd;
	struct drm_npu_op *op;
	struct drm_npu_ctx_query q0, q;
	uint32_t lo, hi, state;
	uint64_t seq, last;
	int i;

	CHECK(dev, "open");
	cb = alloc_map(dev, 4096);
	data = alloc_map(dev, 4096);
	CHECK(cb && data, "alloc");
	CHECK_ERR(npu_ctx_create(dev, NPU_CTX_PRIORITY_LOW, &lo), 0);
	CHECK_ERR(npu_ctx_create(dev, NPU_CTX_PRIORITY_HIGH, &hi), 0);
	CHECK_ERR(npu_ctx_enable_ops(dev, lo, ALL_OPS), 0);
	CHECK_ERR(npu_ctx_enable_ops(dev, hi, ALL_OPS), 0);
	CHECK_ERR(npu_cmd_init(&cmd, cb, 0), 0);
	op = npu_cmd_add(&cmd, NPU_OP_COPY);
	op->dim[0] = 64;
	npu_op_set_buf(op, 0, data, 0);
	npu_op_set_buf(op, 1, data, 64);
	CHECK_ERR(write_dbg("engine_delay_us", DELAY_US), 0);
	for (i = 0; i < N_LOW; i++)
		CHECK_ERR(npu_submit(dev, lo, &cmd, NULL, 0, 0, &last), 0);
	CHECK_ERR(npu_ctx_query(dev, lo, &q0), 0);
	CHECK_ERR(npu_submit(dev, hi, &cmd, NULL, 0, 0, &seq), 0);
	CHECK_ERR(npu_wait(dev, hi, seq, -1, &state), 0);
	CHECK(state == NPU_ERT_STATE_COMPLETED, "high state");
	CHECK_ERR(npu_ctx_query(dev, lo, &q), 0);
	fprintf(stderr, "  priority: %llu of %d low jobs done when the high one came, %llu when it finished\n",
		(unsigned long long)q0.completed, N_LOW, (unsigned long long)q.completed);
	CHECK(N_LOW - q0.completed >= MIN_LEFT,
	      "only %llu low jobs left when the high one came: too few to tell priority from FIFO",
	      (unsigned long long)(N_LOW - q0.completed));
	CHECK(q.completed - q0.completed <= MAX_BETWEEN, "high priority job waited for %llu low ones",
	      (unsigned long long)(q.completed - q0.completed));
	CHECK_ERR(npu_wait(dev, lo, last, -1, &state), 0);
	CHECK_ERR(write_dbg("engine_delay_us", 0), 0);
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/* ---- concurrency ---- */

static int conc_child(int id, int nsub, int wait_all)
{
	enum { M = 4, N = 32, K = 64 };
	struct npu_dev *dev = NULL;
	struct npu_bo *cb, *bo;
	uint32_t ctx[2];
	uint64_t *seqs;
	size_t cmd_stride = 4 + sizeof(struct drm_npu_op);
	size_t out_sz = M * N * 4, in_off = 0, w_off = M * K, as_off = w_off + N * K,
		ws_off = as_off + M * 4, out_off = 8192;
	float ref[M * N];
	int i, r;

	rng_state = 0x9e3779b97f4a7c15ull * (uint64_t)(id + 1);
	if (npu_open_index(0, &dev) < 0)
		return 10;
	ctx[0] = new_ctx(dev, ALL_OPS);
	ctx[1] = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, cmd_stride * nsub + 64);
	bo = alloc_map(dev, out_off + out_sz * nsub);
	seqs = calloc(nsub, sizeof(*seqs));
	if (!ctx[0] || !ctx[1] || !cb || !bo || !seqs)
		return 11;
	fill_i8((int8_t *)bo->map + in_off, M * K);
	fill_i8((int8_t *)bo->map + w_off, N * K);
	fill_f32((float *)((char *)bo->map + as_off), M, 0.01f, 0.1f);
	fill_f32((float *)((char *)bo->map + ws_off), N, 0.01f, 0.1f);
	npu_ref_gemm_w8a8((int8_t *)bo->map + in_off, (int8_t *)bo->map + w_off,
			  (float *)((char *)bo->map + as_off),
			  (float *)((char *)bo->map + ws_off), ref, N, K, 0, M, 0, N);
	for (i = 0; i < nsub; i++) {
		struct npu_cmd cmd;
		struct drm_npu_op *op;

		if (npu_cmd_init(&cmd, cb, (uint64_t)i * cmd_stride) < 0)
			return 12;
		op = npu_cmd_add(&cmd, NPU_OP_GEMM_W8A8);
		op->dim[0] = M;
		op->dim[1] = N;
		op->dim[2] = K;
		npu_op_set_buf(op, 0, bo, in_off);
		npu_op_set_buf(op, 1, bo, w_off);
		npu_op_set_buf(op, 2, bo, as_off);
		npu_op_set_buf(op, 3, bo, ws_off);
		npu_op_set_buf(op, 4, bo, out_off + (uint64_t)i * out_sz);
		r = npu_submit(dev, ctx[i & 1], &cmd, NULL, 0, 0, &seqs[i]);
		if (r < 0) {
			fprintf(stderr, "  child %d submit %d: %s\n", id, i, strerror(-r));
			return 13;
		}
	}
	if (!wait_all)
		_exit(0);	/* close everything with jobs in flight */
	for (i = 0; i < nsub; i++) {
		uint32_t state;

		r = npu_wait(dev, ctx[i & 1], seqs[i], 60000000000ll, &state);
		if (r < 0 || state != NPU_ERT_STATE_COMPLETED) {
			fprintf(stderr, "  child %d wait %d: %d state %u\n", id, i, r, state);
			return 14;
		}
		if (memcmp((char *)bo->map + out_off + (size_t)i * out_sz, ref, out_sz))
			return 15;
	}
	npu_close(dev);
	return 0;
}

static void test_concurrency(void)
{
	pid_t pids[12];
	int i, status, bad = 0;

	for (i = 0; i < 12; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			_exit(i < 8 ? conc_child(i, 200, 1) : conc_child(i, 100, 0));
		CHECK(pids[i] > 0, "fork");
	}
	for (i = 0; i < 12; i++) {
		CHECK(waitpid(pids[i], &status, 0) == pids[i], "waitpid");
		if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			fprintf(stderr, "  child %d status %#x\n", i, status);
			bad++;
		}
	}
	CHECK(!bad, "%d children failed", bad);
	CHECK(wait_no_leaks() == 0, "leak");
}

/* ---- destroy racing with submit ---- */

struct race_arg {
	struct npu_dev *dev;
	struct npu_cmd *cmd;
	uint32_t ctx;
	int err;
	int n;
};

static void *race_submitter(void *p)
{
	struct race_arg *a = p;
	uint64_t seq;
	int r;

	for (;;) {
		r = npu_submit(a->dev, a->ctx, a->cmd, NULL, 0, 0, &seq);
		if (r < 0) {
			a->err = r;
			return NULL;
		}
		a->n++;
	}
}

static void test_destroy_race(void)
{
	struct npu_dev *dev = open_dev();
	struct npu_bo *cb, *data;
	struct npu_cmd cmd;
	int i, total = 0;

	CHECK(dev, "open");
	cb = alloc_map(dev, 4096);
	data = alloc_map(dev, 4096);
	CHECK(cb && data, "alloc");
	CHECK_ERR(copy_cmd_within(&cmd, cb, data, 512), 0);
	for (i = 0; i < 12; i++) {
		struct race_arg a = { .dev = dev, .cmd = &cmd };
		pthread_t t;

		a.ctx = new_ctx(dev, ALL_OPS);
		CHECK(a.ctx, "ctx");
		CHECK(pthread_create(&t, NULL, race_submitter, &a) == 0, "thread");
		usleep(500 + (rnd() % 2000));
		CHECK_ERR(npu_ctx_destroy(dev, a.ctx), 0);
		pthread_join(t, NULL);
		CHECK(a.err == -ENOENT, "submit after destroy: %d", a.err);
		total += a.n;
	}
	fprintf(stderr, "  destroy_race: %d submissions before the destroys\n", total);
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/* ---- fault handling ---- */

static void test_hang(void)
{
	struct npu_dev *dev = open_dev(), *dev2 = open_dev();
	struct npu_nl *nl = NULL;
	struct npu_bo *cb, *cb2, *data, *data2;
	struct npu_cmd cmd, cmd2;
	struct drm_npu_op *op;
	struct drm_npu_ctx_query q;
	struct npu_nl_device nd;
	uint32_t ca, cbx, state;
	uint64_t sa, sb, timedout0, cid;
	int got_fault = 0, got_timeout = 0, i;

	CHECK(dev && dev2, "open");
	CHECK_ERR(npu_nl_open(&nl), 0);
	CHECK_ERR(npu_nl_subscribe_events(nl), 0);
	CHECK_ERR(npu_nl_get_device(nl, 0, &nd), 0);
	timedout0 = nd.jobs_timedout;
	CHECK_ERR(npu_client_id(dev, &cid), 0);

	ca = new_ctx(dev, ALL_OPS);
	cbx = new_ctx(dev2, ALL_OPS);
	cb = alloc_map(dev, 4096);
	cb2 = alloc_map(dev2, 4096);
	data = alloc_map(dev, 4096);
	data2 = alloc_map(dev2, 4096);
	CHECK(ca && cbx && cb && cb2 && data && data2, "setup");
	CHECK_ERR(npu_cmd_init(&cmd, cb, 0), 0);
	op = npu_cmd_add(&cmd, NPU_OP_COPY);
	op->dim[0] = 64;
	npu_op_set_buf(op, 0, data, 0);
	npu_op_set_buf(op, 1, data, 64);
	CHECK_ERR(npu_cmd_init(&cmd2, cb2, 0), 0);
	op = npu_cmd_add(&cmd2, NPU_OP_COPY);
	op->dim[0] = 64;
	npu_op_set_buf(op, 0, data2, 0);
	npu_op_set_buf(op, 1, data2, 64);
	memset(data2->map, 7, 64);

	CHECK_ERR(inject_hang(), 0);
	CHECK_ERR(npu_submit(dev, ca, &cmd, NULL, 0, 0, &sa), 0);
	/* the other context queues behind the hung job and must complete */
	CHECK_ERR(npu_submit(dev2, cbx, &cmd2, NULL, 0, 0, &sb), 0);
	CHECK_ERR(npu_wait(dev, ca, sa, 30000000000ll, &state), 0);
	CHECK(state == NPU_ERT_STATE_TIMEOUT, "hung job state %u", state);
	CHECK(npu_cmd_state(&cmd) == NPU_ERT_STATE_TIMEOUT, "header state");
	CHECK_ERR(npu_wait(dev2, cbx, sb, 30000000000ll, &state), 0);
	CHECK(state == NPU_ERT_STATE_COMPLETED, "other ctx state %u", state);
	CHECK(((char *)data2->map)[100] == 7, "other ctx result");
	CHECK_ERR(npu_ctx_query(dev, ca, &q), 0);
	CHECK(q.state == NPU_CTX_STATE_FAULTED && q.fault_seqno == sa, "ctx faulted");
	CHECK_ERR(npu_submit(dev, ca, &cmd, NULL, 0, 0, &sa), -EIO);
	CHECK_ERR(npu_ctx_query(dev2, cbx, &q), 0);
	CHECK(q.state == NPU_CTX_STATE_ACTIVE, "other ctx active");
	for (i = 0; i < 10 && !(got_fault && got_timeout); i++) {
		struct npu_nl_event ev;

		if (npu_nl_recv_event(nl, 2000, &ev) < 0)
			break;
		if (ev.event == NPU_GENL_EVENT_CTX_FAULT && ev.ctx_id == ca &&
		    ev.client_id == cid)
			got_fault = 1;
		if (ev.event == NPU_GENL_EVENT_JOB_TIMEOUT && ev.ctx_id == ca &&
		    ev.seqno == 1)
			got_timeout = 1;
	}
	CHECK(got_fault && got_timeout, "netlink events fault %d timeout %d",
	      got_fault, got_timeout);
	/* counted with its final state, before its fence signaled */
	CHECK_ERR(npu_nl_get_device(nl, 0, &nd), 0);
	CHECK(nd.jobs_timedout == timedout0 + 1 && nd.resets >= 1,
	      "counters: timed out %" PRIu64 " (before %" PRIu64 "), resets %" PRIu64,
	      nd.jobs_timedout, timedout0, nd.resets);
	/* a new context on the same file works */
	CHECK_ERR(npu_ctx_destroy(dev, ca), 0);
	ca = new_ctx(dev, ALL_OPS);
	CHECK(ca, "new ctx");
	CHECK(run_cmd(dev, ca, &cmd) == NPU_ERT_STATE_COMPLETED, "after reset");
	/* hang again, then close the fd while the hung job is in flight */
	CHECK_ERR(inject_hang(), 0);
	CHECK_ERR(npu_submit(dev, ca, &cmd, NULL, 0, 0, &sa), 0);
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_bo_free(dev2, cb2);
	npu_bo_free(dev2, data2);
	npu_close(dev);
	npu_close(dev2);
	npu_nl_close(nl);
	CHECK(wait_no_leaks() == 0, "leak");
}

static void test_netlink(void)
{
	struct npu_nl *nl = NULL;
	struct npu_nl_device devs[8], after;
	struct npu_dev *dev = open_dev();
	struct npu_bo *bo, *cb;
	struct npu_cmd cmd;
	struct drm_npu_op *op;
	uint32_t ctx;
	size_t n = 0;
	int i;

	CHECK(dev, "open");
	CHECK_ERR(npu_nl_open(&nl), 0);
	bo = alloc_map(dev, 3 * 4096);
	CHECK(bo, "alloc");
	CHECK_ERR(npu_nl_get_devices(nl, devs, 8, &n), 0);
	CHECK(n == 2, "two devices, got %zu", n);
	CHECK(devs[0].index == 0 && devs[1].index == 1, "indexes");
	CHECK(!strcmp(devs[0].name, "npu.0"), "name %s", devs[0].name);
	CHECK(devs[0].bo_count == 1 && devs[0].bo_bytes == 3 * 4096, "bo counters");
	CHECK(devs[0].num_engines == 1, "engines");
	CHECK(devs[0].ctx_count == 0, "ctx_count %u", devs[0].ctx_count);
	/* three jobs that complete and one that fails, counted exactly */
	ctx = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, 4096);
	CHECK(ctx && cb, "setup");
	CHECK_ERR(npu_cmd_init(&cmd, cb, 0), 0);
	op = npu_cmd_add(&cmd, NPU_OP_ATTENTION);
	op->dim[0] = 1; op->dim[1] = 1; op->dim[2] = 1; op->dim[3] = 4; op->dim[4] = 8;
	npu_op_set_buf(op, 0, bo, 0);
	npu_op_set_buf(op, 1, bo, 256);
	npu_op_set_buf(op, 2, bo, 512);
	npu_op_set_buf(op, 3, bo, 1024);
	npu_op_set_buf(op, 4, bo, 2048);
	/* 10 ms each: longer than a tick of a coarse guest clock */
	CHECK_ERR(write_dbg("engine_delay_us", 10000), 0);
	for (i = 0; i < 4; i++) {
		((int32_t *)bo->map)[1024 / 4] = i < 3 ? 7 : 8;	/* 8: past n_ctx */
		CHECK(run_cmd(dev, ctx, &cmd) == (i < 3 ? NPU_ERT_STATE_COMPLETED :
						  NPU_ERT_STATE_ERROR), "job %d state", i);
	}
	CHECK_ERR(write_dbg("engine_delay_us", 0), 0);
	CHECK_ERR(npu_nl_get_device(nl, 0, &after), 0);
	CHECK(after.jobs_submitted == devs[0].jobs_submitted + 4 &&
	      after.jobs_completed == devs[0].jobs_completed + 3 &&
	      after.jobs_failed == devs[0].jobs_failed + 1 &&
	      after.jobs_timedout == devs[0].jobs_timedout,
	      "jobs: submitted +%llu completed +%llu failed +%llu timed out +%llu",
	      (unsigned long long)(after.jobs_submitted - devs[0].jobs_submitted),
	      (unsigned long long)(after.jobs_completed - devs[0].jobs_completed),
	      (unsigned long long)(after.jobs_failed - devs[0].jobs_failed),
	      (unsigned long long)(after.jobs_timedout - devs[0].jobs_timedout));
	CHECK(after.ctx_count == 1 && after.bo_count == 2, "ctx_count %u bo_count %u",
	      after.ctx_count, after.bo_count);
	CHECK(after.busy_ns > devs[0].busy_ns, "busy_ns did not grow");
	npu_bo_free(dev, cb);
	CHECK_ERR(npu_nl_get_device(nl, 1, &devs[2]), 0);
	CHECK(devs[2].index == 1, "doit index");
	CHECK(npu_nl_get_device(nl, 5, &devs[2]) < 0, "missing device");
	npu_bo_free(dev, bo);
	npu_close(dev);
	npu_nl_close(nl);
	CHECK(wait_no_leaks() == 0, "leak");
}

/* ---- fuzzer ---- */

static const unsigned long fuzz_reqs[] = {
	DRM_IOCTL_NPU_GET_INFO, DRM_IOCTL_NPU_BO_CREATE, DRM_IOCTL_NPU_BO_INFO,
	DRM_IOCTL_NPU_BO_SYNC, DRM_IOCTL_NPU_CTX_CREATE, DRM_IOCTL_NPU_CTX_DESTROY,
	DRM_IOCTL_NPU_CTX_CONFIGURE, DRM_IOCTL_NPU_CTX_QUERY, DRM_IOCTL_NPU_SUBMIT,
	DRM_IOCTL_NPU_WAIT, DRM_IOCTL_GEM_CLOSE,
	DRM_IOCTL_NPU_SUBMIT, DRM_IOCTL_NPU_SUBMIT,
	DRM_IOCTL_PRIME_HANDLE_TO_FD, DRM_IOCTL_PRIME_FD_TO_HANDLE,
	DRM_IOCTL_SYNCOBJ_CREATE, DRM_IOCTL_SYNCOBJ_DESTROY,
};

static uint64_t fuzz_val(const uint32_t *handles, int nh)
{
	switch (rnd() % 10) {
	case 0: return 0;
	case 1: return 1;
	case 2: return UINT64_MAX;
	case 3: return rnd() % 64;
	case 4: return nh ? handles[rnd() % nh] : 1;
	case 5: return (uint64_t)1 << (rnd() % 64);
	case 6: return rnd() % 4096;
	case 7: return ((uint64_t)rnd() << 32) | rnd();
	default: return rnd() % 3;
	}
}

static void test_fuzz(void)
{
	struct npu_dev *dev = open_dev();
	uint32_t handles[32], ctxs[8];
	int nh = 0, nc = 0, fd, i, calls = 100000;
	struct npu_bo *cb, *data;
	void *img;
	size_t isz;
	unsigned char arg[256];
	int ok_submit = 0, ok_total = 0, dmabufs[8], ndmabuf = 0, k;
	uint32_t syncs[8], sync_in[1];
	int nsync = 0;

	CHECK(dev, "open");
	fd = npu_fd(dev);
	rng_state = 0x1234567890abcdefull;	/* fixed seed */
	CHECK_ERR(npu_xclbin_build(ALL_OPS, &img, &isz), 0);
	cb = alloc_map(dev, 16384);
	data = alloc_map(dev, 4096);
	CHECK(cb && data, "cmd bo");
	handles[nh++] = cb->handle;
	handles[nh++] = data->handle;
	ctxs[nc++] = new_ctx(dev, ALL_OPS);
	ctxs[nc++] = new_ctx(dev, ALL_OPS);
	for (i = 0; i < calls; i++) {
		unsigned long req = fuzz_reqs[rnd() % (sizeof(fuzz_reqs) / sizeof(fuzz_reqs[0]))];
		size_t sz = _IOC_SIZE(req), j;
		uint64_t *w = (uint64_t *)arg;
		int r;

		memset(arg, 0, sizeof(arg));
		for (j = 0; j < sz / 8; j++)
			if (rnd() % 3 == 0)
				w[j] = fuzz_val(handles, nh);
		if (rnd() % 4 == 0) {
			/* mostly-valid struct: fill fields from the pools */
			uint32_t *u = (uint32_t *)arg;

			u[0] = nc && rnd() % 2 ? ctxs[rnd() % nc] : (uint32_t)fuzz_val(handles, nh);
		}
		switch (req) {
		case DRM_IOCTL_NPU_BO_CREATE:
			((struct drm_npu_bo_create *)arg)->size &= rnd() % 8 ? 0xfffff : ~0ull;
			break;
		case DRM_IOCTL_NPU_CTX_CONFIGURE:
			if (rnd() % 2) {
				((struct drm_npu_ctx_configure *)arg)->xclbin_ptr = (uintptr_t)img;
				((struct drm_npu_ctx_configure *)arg)->xclbin_size =
					rnd() % 4 ? (uint32_t)isz : rnd() % (uint32_t)(isz + 8);
			}
			break;
		case DRM_IOCTL_NPU_WAIT:
			((struct drm_npu_wait *)arg)->timeout_ns = rnd() % 1000000;
			break;
		case DRM_IOCTL_NPU_SUBMIT: {
			struct drm_npu_submit *s = (void *)arg;
			uint32_t *hdr;
			struct drm_npu_op *op;

			s->cmd_handle = cb->handle;
			s->cmd_offset = rnd() % 8 ? 0 : fuzz_val(handles, nh);
			if (rnd() % 4) {
				s->in_syncobjs = 0;
				s->in_syncobj_count = 0;
			}
			if (rnd() % 4)
				s->out_syncobj = 0;
			if (rnd() % 8) {
				s->bo_handles = 0;
				s->bo_handle_count = 0;
				s->pad2 = 0;
			}
			if (nc && rnd() % 2)
				s->ctx_id = ctxs[rnd() % nc];
			s->flags = rnd() % 8 ? 0 : s->flags;
			s->pad = rnd() % 8 ? 0 : s->pad;
			hdr = cb->map;
			*hdr = npu_ert_header(rnd() % 3);
			if (rnd() % 8 == 0)
				*hdr ^= 1u << (rnd() % 32);
			op = (struct drm_npu_op *)(hdr + 1);
			for (j = 0; j < 2; j++) {
				/* a valid op, then maybe one corrupted word */
				memset(&op[j], 0, sizeof(op[j]));
				switch (rnd() % 3) {
				case 0:
					op[j].opcode = NPU_OP_COPY;
					op[j].dim[0] = rnd_range(1, 1024);
					op[j].buf[0].handle = data->handle;
					op[j].buf[1].handle = data->handle;
					op[j].buf[1].offset = 2048;
					break;
				case 1:
					op[j].opcode = NPU_OP_ADD;
					op[j].dim[0] = rnd_range(1, 128);
					op[j].buf[0].handle = data->handle;
					op[j].buf[1].handle = data->handle;
					op[j].buf[1].offset = 512;
					op[j].buf[2].handle = data->handle;
					op[j].buf[2].offset = 1024;
					break;
				default:
					op[j].opcode = NPU_OP_GEMM_W8A8_I32;
					op[j].dim[0] = rnd_range(1, 4);
					op[j].dim[1] = rnd_range(1, 4);
					op[j].dim[2] = rnd_range(1, 16);
					op[j].buf[0].handle = data->handle;
					op[j].buf[1].handle = data->handle;
					op[j].buf[1].offset = 256;
					op[j].buf[4].handle = data->handle;
					op[j].buf[4].offset = 512;
					break;
				}
				if (rnd() % 2)
					((uint32_t *)&op[j])[rnd() % NPU_OP_WORDS] =
						(uint32_t)fuzz_val(handles, nh);
			}
			break;
		}
		case DRM_IOCTL_GEM_CLOSE:
			if (nh > 2 && rnd() % 2) {
				int k = 2 + rnd() % (nh - 2);

				((struct drm_gem_close *)arg)->handle = handles[k];
				((struct drm_gem_close *)arg)->pad = 0;
				handles[k] = handles[--nh];
			}
			/* keep the command and data BOs */
			if (((struct drm_gem_close *)arg)->handle == cb->handle ||
			    ((struct drm_gem_close *)arg)->handle == data->handle)
				((struct drm_gem_close *)arg)->handle = 0;
			break;
		case DRM_IOCTL_NPU_CTX_DESTROY:
			if (nc && rnd() % 2) {
				int k = rnd() % nc;

				((struct drm_npu_ctx_destroy *)arg)->ctx_id = ctxs[k];
				ctxs[k] = ctxs[--nc];
			}
			break;
		}
		if (req == DRM_IOCTL_PRIME_FD_TO_HANDLE && ndmabuf && rnd() % 2)
			((struct drm_prime_handle *)arg)->fd = dmabufs[rnd() % ndmabuf];
		if (req == DRM_IOCTL_NPU_SUBMIT && nsync && rnd() % 4 == 0) {
			struct drm_npu_submit *s = (void *)arg;

			sync_in[0] = syncs[rnd() % nsync];
			s->in_syncobjs = (uintptr_t)sync_in;
			s->in_syncobj_count = 1;
			s->out_syncobj = syncs[rnd() % nsync];
		}
		r = ioc(fd, req, (rnd() % 200 == 0) ? (void *)(uintptr_t)fuzz_val(handles, nh) : arg);
		if (r == 0 && req == DRM_IOCTL_PRIME_HANDLE_TO_FD) {
			int dfd = ((struct drm_prime_handle *)arg)->fd;

			if (ndmabuf < 8)
				dmabufs[ndmabuf++] = dfd;
			else
				close(dfd);
		}
		if (r == 0 && req == DRM_IOCTL_SYNCOBJ_CREATE && nsync < 8)
			syncs[nsync++] = ((struct drm_syncobj_create *)arg)->handle;
		if (r == 0 && req == DRM_IOCTL_PRIME_FD_TO_HANDLE && nh < 32)
			handles[nh++] = ((struct drm_prime_handle *)arg)->handle;
		ok_total += r == 0;
		ok_submit += r == 0 && req == DRM_IOCTL_NPU_SUBMIT;
		if (r == 0 && req == DRM_IOCTL_NPU_BO_CREATE && nh < 32)
			handles[nh++] = ((struct drm_npu_bo_create *)arg)->handle;
		if (r == 0 && req == DRM_IOCTL_NPU_CTX_CREATE && nc < 8) {
			ctxs[nc++] = ((struct drm_npu_ctx_create *)arg)->ctx_id;
			if (rnd() % 2)
				npu_ctx_enable_ops(dev, ctxs[nc - 1], ALL_OPS);
		}
		if (r == 0 && req == DRM_IOCTL_NPU_CTX_DESTROY) {
			int k;

			for (k = 0; k < nc; k++)
				if (ctxs[k] == ((struct drm_npu_ctx_destroy *)arg)->ctx_id)
					ctxs[k--] = ctxs[--nc];
		}
		if (r == -EINVAL || r == -ENOENT || r == 0 || r == -E2BIG ||
		    r == -EFAULT || r == -ETIME || r == -EPERM || r == -ENOSPC ||
		    r == -EIO || r == -ENOMEM || r == -EOPNOTSUPP || r == -EBADF ||
		    r == -ENODEV || r == -EOVERFLOW)
			continue;
		CHECK(0, "call %d req %#lx: unexpected %d (%s)", i, req, r, strerror(-r));
	}
	free(img);
	for (k = 0; k < ndmabuf; k++)
		close(dmabufs[k]);
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_close(dev);
	fprintf(stderr, "  fuzz: %d calls, %d succeeded, %d submissions accepted\n",
		calls, ok_total, ok_submit);
	CHECK(ok_submit > 100, "too few valid submissions (%d)", ok_submit);
	CHECK(wait_no_leaks() == 0, "leak");
}

/* ---- main ---- */

struct test {
	const char *name;
	void (*fn)(void);
};

static const struct test tests[] = {
	{ "ert_layout", test_ert_layout },
	{ "xclbin", test_xclbin },
	{ "info", test_info },
	{ "bo", test_bo },
	{ "prime", test_prime },
	{ "ctx", test_ctx },
	{ "submit", test_submit },
	{ "netlink", test_netlink },
	{ "gemm", test_gemm },
	{ "layer_ops", test_layer_ops },
	{ "decoder_layer", test_decoder_layer },
	{ "priority", test_priority },
	{ "concurrency", test_concurrency },
	{ "destroy_race", test_destroy_race },
	{ "destroy_storm", test_destroy_storm },
	{ "ctx_race", test_ctx_race },
	{ "destroy_abort", test_destroy_abort },
	{ "close_abort", test_close_abort },
	{ "exit_budget", test_exit_budget },
	{ "hang_states", test_hang_states },
	{ "queue_race", test_queue_race },
	{ "high_priority", test_high_priority },
	{ "wait_signals", test_wait_signals },
	{ "attention_chunks", test_attention_chunks },
	{ "pos_snapshot", test_pos_snapshot },
	{ "netlink_privacy", test_netlink_privacy },
	{ "ctx_ids", test_ctx_ids },
	{ "completed", test_completed },
	{ "ops_float64", test_ops_float64 },
	{ "timeline", test_timeline },
	{ "implicit_sync", test_implicit_sync },
	{ "bo_list", test_bo_list },
	{ "fdinfo", test_fdinfo },
	{ "trace", test_trace },
	{ "devcoredump", test_devcoredump },
	{ "runtime_pm", test_runtime_pm },
	{ "system_suspend", test_system_suspend },
	{ "fault_injection", test_fault_injection },
	{ "uapi_1_0", test_uapi_1_0 },
	{ "hang", test_hang },
	{ "fuzz", test_fuzz },
};

/*
 * npu_test --wait-removed FILE: subscribe to the events group, create FILE,
 * then expect NPU_GENL_EVENT_DEVICE_REMOVED for devices 0 and 1 (rmmod).
 */
static int wait_removed(const char *ready)
{
	struct npu_nl *nl = NULL;
	struct npu_nl_event ev;
	int seen = 0, i;
	FILE *f;

	if (npu_nl_open(&nl) < 0 || npu_nl_subscribe_events(nl) < 0) {
		printf("FAIL event-device-removed: subscribe\n");
		return 1;
	}
	f = fopen(ready, "w");
	if (f)
		fclose(f);
	for (i = 0; i < 20 && seen != 3; i++) {
		if (npu_nl_recv_event(nl, 10000, &ev) < 0)
			break;
		if (ev.event == NPU_GENL_EVENT_DEVICE_REMOVED && ev.dev_index < 2)
			seen |= 1 << ev.dev_index;
	}
	npu_nl_close(nl);
	if (seen != 3) {
		printf("FAIL event-device-removed: got mask %d\n", seen);
		return 1;
	}
	printf("PASS event-device-removed\n");
	return 0;
}

/*
 * A test still running after this long has hung: no test takes a tenth of
 * it, even on the debug kernel under TCG (fuzz, the longest, about 21 s).
 */
#define TEST_DEADLINE_S 180

/*
 * What a hung test leaves to look at: the kernel's blocked tasks (sysrq w
 * writes them to the kernel log), the device's queue and counters, then
 * the kernel log's tail, on the console where the runner shows it.
 */
static void report_hang(void)
{
	static const char *const counters[] = { "jobs_alive", "ctx_count", "bo_count" };
	char cmd[sizeof(debugfs_dir) + 128];
	size_t i;
	int fd;

	fd = open("/proc/sysrq-trigger", O_WRONLY);
	if (fd >= 0) {
		if (write(fd, "w", 1) != 1)
			fprintf(stderr, "npu_test: sysrq w: %s\n", strerror(errno));
		close(fd);
	}
	for (i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
		printf("  hang: %s %ld\n", counters[i], read_dbg(counters[i]));
	fflush(stdout);
	snprintf(cmd, sizeof(cmd), "sed 's/^/  hang: queue: /' %s/queue; "
		 "dmesg | tail -n 150 | sed 's/^/  hang: dmesg: /'", debugfs_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "npu_test: could not show the hang's state\n");
}

/*
 * The child's result from the pipe, or -1 when it gave none: it ended
 * early, or is still running at the deadline (then it is killed and the
 * state of the kernel shown).
 */
static int read_result(int fd, pid_t pid)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r, i;

	do
		r = poll(&p, 1, TEST_DEADLINE_S * 1000);
	while (r < 0 && errno == EINTR);
	if (r == 0) {
		snprintf(fail_msg, sizeof(fail_msg), "no result after %d s: hung",
			 TEST_DEADLINE_S);
		report_hang();
		kill(pid, SIGKILL);
		/* A task asleep uninterruptibly in the kernel cannot die. */
		for (i = 0; i < 50 && waitpid(pid, NULL, WNOHANG) == 0; i++)
			usleep(100 * 1000);
		return -1;
	}
	if (read(fd, &failed, sizeof(failed)) != sizeof(failed) ||
	    read(fd, fail_msg, sizeof(fail_msg)) != sizeof(fail_msg)) {
		snprintf(fail_msg, sizeof(fail_msg), "the test process ended early");
		return -1;
	}
	return 0;
}

/*
 * Each test runs in its own child process: when a check fails and the test
 * returns early, the exit closes the files it left open, so its contexts
 * and BOs do not show up as the next test's leak. A test that hangs fails
 * alone, with the kernel's state shown, and the others still run.
 */
static void run_isolated(void (*fn)(void))
{
	int fds[2], status;
	pid_t pid;

	if (pipe(fds) < 0) {
		fn();
		return;
	}
	pid = fork();
	if (pid == 0) {
		close(fds[0]);
		fn();
		fflush(NULL);
		if (write(fds[1], &failed, sizeof(failed)) != sizeof(failed) ||
		    write(fds[1], fail_msg, sizeof(fail_msg)) != sizeof(fail_msg))
			_exit(2);
		_exit(0);
	}
	close(fds[1]);
	if (pid < 0) {
		close(fds[0]);
		failed = 1;
		snprintf(fail_msg, sizeof(fail_msg), "fork: %s", strerror(errno));
		return;
	}
	if (read_result(fds[0], pid) < 0) {
		failed = 1;
		close(fds[0]);
		return;
	}
	fail_msg[sizeof(fail_msg) - 1] = '\0';
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFSIGNALED(status) && !failed) {
		failed = 1;
		snprintf(fail_msg, sizeof(fail_msg), "killed by signal %d",
			 WTERMSIG(status));
	}
}

/*
 * After a failed test: put back the engine delay and the scheduler stall
 * (race_delay) a test may have left set (it returned before its own
 * reset), then give what its exit closed time to go.
 */
static void settle_after_failure(void)
{
	int i;

	if (write_dbg("engine_delay_us", 0) < 0)
		fprintf(stderr, "npu_test: cannot reset engine_delay_us\n");
	if (access("/sys/module/npu_race_delay", F_OK) == 0 && race_delay(0) < 0)
		fprintf(stderr, "npu_test: cannot remove npu_race_delay\n");

	for (i = 0; i < 100 && read_dbg("ctx_count") + read_dbg("bo_count") +
	     read_dbg("jobs_alive") > 0; i++)
		usleep(100 * 1000);
}

/* Runs one test, prints its result; returns 1 when it failed. */
static int run_one(size_t i, const char *tag)
{
	struct timespec t0, t1;
	char first[256];

	failed = 0;
	fail_msg[0] = '\0';
	clock_gettime(CLOCK_MONOTONIC, &t0);
	run_isolated(tests[i].fn);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (kmsg_reports(first, sizeof(first)) && !failed) {
		failed = 1;
		snprintf(fail_msg, sizeof(fail_msg), "kernel report: %s", first);
	}
	if (!failed) {
		printf("PASS %s%s (%.1fs)\n", tests[i].name, tag,
		       (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
		return 0;
	}
	printf("FAIL %s%s: %s\n", tests[i].name, tag, fail_msg);
	settle_after_failure();
	return 1;
}

static int selected(size_t i, int argc, char **argv)
{
	int j;

	for (j = 1; j < argc; j++)
		if (!strcmp(argv[j], tests[i].name))
			return 1;
	return argc < 2;
}

/*
 * NPU_TEST_REPEAT=N runs the selection up to N times, to catch a rare
 * failure: it stops after the first round with one.
 */
int main(int argc, char **argv)
{
	const char *tag = getenv("NPU_TEST_TAG") ? getenv("NPU_TEST_TAG") : "";
	const char *repeat = getenv("NPU_TEST_REPEAT");
	long rounds = repeat && atol(repeat) > 1 ? atol(repeat) : 1;
	size_t i;
	long r;
	int nfail = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "--wait-removed"))
		return wait_removed(argv[2]);
	if (argc == 2 && !strcmp(argv[1], "--list")) {
		/* the results a full run prints: the runner checks each one came */
		for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
			printf("%s%s\n", tests[i].name, tag);
		return 0;
	}
	find_debugfs();
	kmsg_open();
	if (!debugfs_dir[0])
		fprintf(stderr, "npu_test: debugfs directory not found\n");
	for (r = 0; r < rounds; r++) {
		if (rounds > 1)
			printf("# round %ld of %ld\n", r + 1, rounds);
		for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
			if (selected(i, argc, argv))
				nfail += run_one(i, tag);
		if (nfail)
			break;
	}
	return nfail ? 1 : 0;
}
