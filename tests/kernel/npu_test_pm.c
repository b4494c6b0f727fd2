// SPDX-License-Identifier: MIT
/*
 * npu_test: the rest of the accel conventions (issue 16): jobs across a
 * system suspend, the kernel's fault injection where it has it, and the
 * uAPI of version 1.0 still accepted as it was (the uAPI only grows).
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "npu_test.h"

static int put_str(const char *path, const char *v)
{
	int fd = open(path, O_WRONLY), r = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, v, strlen(v)) != (ssize_t)strlen(v))
		r = -errno;
	close(fd);
	return r;
}

static int get_str(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	if (n > 0 && buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	return 0;
}

static int copy_job(struct npu_cmd *cmd, struct npu_bo *cb, uint64_t off,
		    struct npu_bo *data)
{
	struct drm_npu_op *op;
	int r = npu_cmd_init(cmd, cb, off);

	if (r < 0)
		return r;
	op = npu_cmd_add(cmd, NPU_OP_COPY);
	if (!op)
		return -E2BIG;
	op->dim[0] = 64;
	npu_op_set_buf(op, 0, data, 0);
	npu_op_set_buf(op, 1, data, 64);
	return 0;
}

/*
 * ---- system suspend: jobs queued when it starts end as they would have
 * without it. The tasks stay frozen for 1 s (pm_test "freezer"), twice the
 * job timeout: a job the engine holds while frozen would time out. ----
 */
#define SUSPEND_JOBS 8

void test_system_suspend(void)
{
	struct npu_dev *dev = open_dev();
	struct npu_cmd cmd[SUSPEND_JOBS];
	struct npu_bo *cb, *data;
	uint64_t seq[SUSPEND_JOBS] = { 0 };
	struct npu_nl_device nd0, nd;
	struct npu_nl *nl;
	uint32_t ctx, state;
	char states[64] = "", old_test[64] = "", old_delay[16] = "";
	int i, r;

	CHECK(dev, "open");
	CHECK(get_str("/sys/power/state", states, sizeof(states)) == 0 &&
	      strstr(states, "freeze"), "no suspend to idle: /sys/power/state \"%s\"", states);
	CHECK(get_str("/sys/power/pm_test", old_test, sizeof(old_test)) == 0,
	      "no /sys/power/pm_test (CONFIG_PM_DEBUG)");
	CHECK(get_str("/sys/module/suspend/parameters/pm_test_delay", old_delay,
		      sizeof(old_delay)) == 0, "no pm_test_delay");
	ctx = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, 4096 * SUSPEND_JOBS);
	data = alloc_map(dev, 4096);
	CHECK(ctx && cb && data, "setup");
	for (i = 0; i < SUSPEND_JOBS; i++)
		CHECK_ERR(copy_job(&cmd[i], cb, 4096 * i, data), 0);
	CHECK_ERR(npu_nl_open(&nl), 0);
	CHECK_ERR(npu_nl_get_device(nl, 0, &nd0), 0);

	CHECK_ERR(put_str("/sys/power/pm_test", "freezer"), 0);
	CHECK_ERR(put_str("/sys/module/suspend/parameters/pm_test_delay", "1"), 0);
	/* the engine is idle: it freezes, and the first job after it runs */
	r = put_str("/sys/power/state", "freeze");
	if (r == 0) {
		CHECK(run_cmd(dev, ctx, &cmd[0]) == NPU_ERT_STATE_COMPLETED,
		      "job after an idle suspend");
		/* 8 jobs of 100 ms queued, the first one running */
		r = write_dbg("engine_delay_us", 100000);
		for (i = 0; r == 0 && i < SUSPEND_JOBS; i++)
			r = npu_submit(dev, ctx, &cmd[i], NULL, 0, 0, &seq[i]);
		if (r == 0)
			r = put_str("/sys/power/state", "freeze");
		write_dbg("engine_delay_us", 0);
	}
	put_str("/sys/power/pm_test", "none");
	put_str("/sys/module/suspend/parameters/pm_test_delay", old_delay);
	CHECK_ERR(r, 0);
	for (i = 0; i < SUSPEND_JOBS; i++) {
		CHECK_ERR(npu_wait(dev, ctx, seq[i], 30000000000ll, &state), 0);
		CHECK(state == NPU_ERT_STATE_COMPLETED && npu_cmd_state(&cmd[i]) == state,
		      "job %d of %d queued across the suspend: state %u, header %u", i + 1,
		      SUSPEND_JOBS, state, npu_cmd_state(&cmd[i]));
	}
	CHECK_ERR(npu_nl_get_device(nl, 0, &nd), 0);
	npu_nl_close(nl);
	CHECK(nd.resets == nd0.resets && nd.jobs_timedout == nd0.jobs_timedout,
	      "engine resets during the suspend: %llu",
	      (unsigned long long)(nd.resets - nd0.resets));
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/*
 * ---- fault injection: the kernel's fault_attr (fail_hang/,
 * fail_bo_alloc/) where it has fault injection, the driver's one-shot
 * switches elsewhere; never both ----
 */
static int dbg_exists(const char *name)
{
	char p[300];

	snprintf(p, sizeof(p), "%s/%s", debugfs_dir, name);
	return access(p, F_OK) == 0;
}

static int fault_attr(const char *dir, long probability, long times)
{
	static const char *const knobs[] = { "verbose", "interval", "space" };
	static const long values[] = { 0, 1, 0 };
	char p[128];
	size_t i;
	int r;

	for (i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, knobs[i]);
		r = write_dbg(p, values[i]);
		if (r < 0)
			return r;
	}
	snprintf(p, sizeof(p), "%s/times", dir);
	r = write_dbg(p, times);
	if (r < 0)
		return r;
	snprintf(p, sizeof(p), "%s/probability", dir);
	return write_dbg(p, probability);
}

void test_fault_injection(void)
{
	struct npu_dev *dev = open_dev();
	int kernel_fi = access("/proc/self/make-it-fail", F_OK) == 0;
	int debug_kernel = 0, attrs, own, i;
	struct npu_bo *cb, *data, *bo;
	struct npu_cmd cmd;
	char cmdline[1024] = "";
	uint32_t ctx, state;
	uint64_t seq[3];

	CHECK(dev, "open");
	get_str("/proc/cmdline", cmdline, sizeof(cmdline));
	debug_kernel = strstr(cmdline, "npu_debug") != NULL;
	attrs = dbg_exists("fail_hang/probability") && dbg_exists("fail_bo_alloc/times");
	own = dbg_exists("inject_hang") && dbg_exists("inject_alloc_fail");
	fprintf(stderr, "  fault injection: %s\n",
		attrs ? "fault_attr fail_hang/, fail_bo_alloc/" : "inject_hang, inject_alloc_fail");
	CHECK(attrs != own, "fault_attr %d, own switches %d: want one of them", attrs, own);
	/* the debug kernel has FAULT_INJECTION_DEBUG_FS; without FAULT_INJECTION, no attrs */
	CHECK(!debug_kernel || attrs, "the debug kernel without fail_hang/");
	CHECK(kernel_fi || own, "fault_attr without CONFIG_FAULT_INJECTION");
	ctx = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, 3 * 4096);
	data = alloc_map(dev, 4096);
	CHECK(ctx && cb && data, "setup");
	CHECK_ERR(copy_job(&cmd, cb, 0, data), 0);
	if (!attrs) {
		/* one-shot: the next BO_CREATE fails, the one after works */
		CHECK_ERR(write_dbg("inject_alloc_fail", 1), 0);
		CHECK_ERR(npu_bo_alloc(dev, 4096, &bo), -ENOMEM);
		CHECK_ERR(npu_bo_alloc(dev, 4096, &bo), 0);
		npu_bo_free(dev, bo);
		goto out;
	}
	/* times = 2: two BO_CREATEs fail, the third works */
	CHECK_ERR(fault_attr("fail_bo_alloc", 100, 2), 0);
	CHECK_ERR(npu_bo_alloc(dev, 4096, &bo), -ENOMEM);
	CHECK_ERR(npu_bo_alloc(dev, 4096, &bo), -ENOMEM);
	CHECK_ERR(npu_bo_alloc(dev, 4096, &bo), 0);
	npu_bo_free(dev, bo);
	CHECK(read_dbg("fail_bo_alloc/times") == 0, "times left %ld",
	      read_dbg("fail_bo_alloc/times"));
	/* interval 2, times 1: the 2nd of three jobs hangs, the 1st and 3rd run */
	CHECK_ERR(fault_attr("fail_hang", 100, 1), 0);
	CHECK_ERR(write_dbg("fail_hang/interval", 2), 0);
	for (i = 0; i < 3; i++) {
		uint32_t want = i == 1 ? NPU_ERT_STATE_TIMEOUT : NPU_ERT_STATE_COMPLETED;

		CHECK_ERR(npu_submit(dev, ctx, &cmd, NULL, 0, 0, &seq[i]), 0);
		CHECK_ERR(npu_wait(dev, ctx, seq[i], 30000000000ll, &state), 0);
		CHECK(state == want, "job %d: state %u, want %u", i + 1, state, want);
		if (i == 1) {
			/* the hang faulted the context */
			CHECK_ERR(npu_ctx_destroy(dev, ctx), 0);
			ctx = new_ctx(dev, ALL_OPS);
			CHECK(ctx, "ctx");
		}
	}
	CHECK_ERR(write_dbg("fail_hang/interval", 1), 0);
	CHECK_ERR(write_dbg("fail_hang/probability", 0), 0);
out:
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/*
 * ---- the uAPI only grows: a binary built against uAPI 1.0 passes the
 * shorter structs of then (the ioctl number carries their size) and gets
 * what it got then ----
 */
struct npu_get_info_1_0 {
	uint32_t flags, version_major, version_minor, num_engines;
	uint32_t max_ops_per_cmd, max_in_syncobjs, max_contexts, fence_window;
	uint64_t ops_mask, max_bo_size, pad;
};

struct npu_ctx_create_1_0 {
	uint32_t priority, flags, ctx_id, pad;
};

struct npu_submit_1_0 {
	uint32_t ctx_id, flags, cmd_handle, out_syncobj;
	uint64_t cmd_offset, in_syncobjs;
	uint32_t in_syncobj_count, pad;
	uint64_t seqno;
};

#define SAME_PREFIX(new, old, f) \
	(offsetof(struct new, f) == offsetof(struct old, f))

void test_uapi_1_0(void)
{
	struct npu_dev *dev = open_dev();
	struct npu_get_info_1_0 info = { 0 };
	struct npu_ctx_create_1_0 cc = { .priority = NPU_CTX_PRIORITY_NORMAL };
	struct npu_submit_1_0 s = { 0 };
	struct npu_bo *cb, *data;
	struct npu_cmd cmd;
	uint32_t state;

	CHECK(dev, "open");
	/* the 1.0 fields where they were, the new ones after them */
	CHECK(SAME_PREFIX(drm_npu_get_info, npu_get_info_1_0, pad) &&
	      offsetof(struct drm_npu_get_info, max_bo_handles) == sizeof(info) &&
	      SAME_PREFIX(drm_npu_ctx_create, npu_ctx_create_1_0, pad) &&
	      offsetof(struct drm_npu_ctx_create, syncobj_handle) == sizeof(cc) &&
	      SAME_PREFIX(drm_npu_submit, npu_submit_1_0, seqno) &&
	      SAME_PREFIX(drm_npu_submit, npu_submit_1_0, in_syncobj_count) &&
	      offsetof(struct drm_npu_submit, bo_handles) == sizeof(s),
	      "a uAPI 1.0 field moved");
	CHECK_ERR(ioc(npu_fd(dev), DRM_IOWR(DRM_COMMAND_BASE + DRM_NPU_GET_INFO,
					    struct npu_get_info_1_0), &info), 0);
	CHECK(info.version_major == 1 && info.max_ops_per_cmd && info.fence_window,
	      "GET_INFO 1.0: version %u.%u", info.version_major, info.version_minor);
	CHECK_ERR(ioc(npu_fd(dev), DRM_IOWR(DRM_COMMAND_BASE + DRM_NPU_CTX_CREATE,
					    struct npu_ctx_create_1_0), &cc), 0);
	CHECK(cc.ctx_id, "CTX_CREATE 1.0: no id");
	CHECK_ERR(npu_ctx_enable_ops(dev, cc.ctx_id, ALL_OPS), 0);
	cb = alloc_map(dev, 4096);
	data = alloc_map(dev, 4096);
	CHECK(cb && data, "setup");
	CHECK_ERR(copy_job(&cmd, cb, 0, data), 0);
	memset(data->map, 5, 64);
	s.ctx_id = cc.ctx_id;
	s.cmd_handle = cb->handle;
	CHECK_ERR(ioc(npu_fd(dev), DRM_IOWR(DRM_COMMAND_BASE + DRM_NPU_SUBMIT,
					    struct npu_submit_1_0), &s), 0);
	CHECK(s.seqno == 1, "SUBMIT 1.0: seqno %llu", (unsigned long long)s.seqno);
	CHECK_ERR(npu_wait(dev, cc.ctx_id, s.seqno, 30000000000ll, &state), 0);
	CHECK(state == NPU_ERT_STATE_COMPLETED && ((char *)data->map)[100] == 5,
	      "SUBMIT 1.0: state %u", state);
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}
