// SPDX-License-Identifier: MIT
/*
 * npu_test: the accel subsystem's conventions (issue 16): the context's
 * timeline syncobj, implicit sync through dma-buf reservation objects, the
 * BO list of SUBMIT, fdinfo usage stats, tracepoints, a devcoredump of a
 * hung job, runtime PM with autosuspend.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

#include <linux/dma-buf.h>
#include <linux/sync_file.h>
#include <xf86drm.h>

#include "npu_test.h"

/* One COPY op of 64 bytes from data[0] to data[64], at offset off of cb. */
static int copy_cmd(struct npu_cmd *cmd, struct npu_bo *cb, uint64_t off,
		    struct npu_bo *src, struct npu_bo *dst)
{
	struct drm_npu_op *op;
	int r = npu_cmd_init(cmd, cb, off);

	if (r < 0)
		return r;
	op = npu_cmd_add(cmd, NPU_OP_COPY);
	if (!op)
		return -E2BIG;
	op->dim[0] = 64;
	npu_op_set_buf(op, 0, src, 0);
	npu_op_set_buf(op, 1, dst, 64);
	return 0;
}

static int read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY), n = 0, r;

	if (fd < 0)
		return -errno;
	while ((size_t)n < size - 1 && (r = read(fd, buf + n, size - 1 - n)) > 0)
		n += r;
	close(fd);
	buf[n] = '\0';
	return n;
}

/* ---- the context's timeline syncobj: point n is job n ---- */
void test_timeline(void)
{
	struct npu_dev *dev = open_dev();
	struct npu_bo *cb, *data;
	struct npu_cmd cmd;
	uint32_t ctx, sync, state;
	uint64_t seq, point = 0;
	int i;

	CHECK(dev, "open");
	CHECK_ERR(npu_ctx_create_timeline(dev, NPU_CTX_PRIORITY_NORMAL, &ctx, &sync), 0);
	CHECK(sync, "no syncobj handle");
	CHECK_ERR(npu_ctx_enable_ops(dev, ctx, ALL_OPS), 0);
	cb = alloc_map(dev, 4096);
	data = alloc_map(dev, 4096);
	CHECK(cb && data, "alloc");
	CHECK_ERR(copy_cmd(&cmd, cb, 0, data, data), 0);
	/* more jobs than the fence window: the timeline still answers */
	for (i = 0; i < 300; i++)
		CHECK_ERR(npu_submit(dev, ctx, &cmd, NULL, 0, 0, &seq), 0);
	CHECK_ERR(npu_timeline_wait(dev, sync, seq, 20000000000ll), 0);
	CHECK(drmSyncobjQuery(npu_fd(dev), &sync, &point, 1) == 0, "query");
	CHECK(point == seq, "timeline at %llu, last job %llu", (unsigned long long)point,
	      (unsigned long long)seq);
	CHECK_ERR(npu_timeline_wait(dev, sync, 1, 0), 0);
	/* a point not submitted yet is not signaled */
	CHECK_ERR(npu_timeline_wait(dev, sync, seq + 1, 100000000), -ETIME);
	CHECK_ERR(npu_wait(dev, ctx, seq, -1, &state), 0);
	CHECK(state == NPU_ERT_STATE_COMPLETED, "state %u", state);
	/* the context keeps its own reference: the handle may go first */
	npu_syncobj_destroy(dev, sync);
	CHECK_ERR(npu_submit(dev, ctx, &cmd, NULL, 0, 0, &seq), 0);
	CHECK_ERR(npu_wait(dev, ctx, seq, -1, &state), 0);
	{
		struct drm_npu_ctx_create c = { .flags = 2 };

		CHECK_ERR(ioc(npu_fd(dev), DRM_IOCTL_NPU_CTX_CREATE, &c), -EINVAL);
		c.flags = 0;
		c.pad2 = 1;
		CHECK_ERR(ioc(npu_fd(dev), DRM_IOCTL_NPU_CTX_CREATE, &c), -EINVAL);
		c.pad2 = 0;
		CHECK_ERR(ioc(npu_fd(dev), DRM_IOCTL_NPU_CTX_CREATE, &c), 0);
		CHECK(c.syncobj_handle == 0, "a syncobj without the flag");
	}
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/*
 * ---- implicit sync: the fence of a job writing a BO is in the BO's
 * reservation object, so its dma-buf waits for it ----
 */
static int export_sync_file(int dmabuf, uint32_t flags, int *ret_fd)
{
	struct dma_buf_export_sync_file e = { .flags = flags, .fd = -1 };

	if (ioctl(dmabuf, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &e))
		return -errno;
	*ret_fd = e.fd;
	return 0;
}

static int sync_file_status(int fd)
{
	struct sync_file_info info;

	memset(&info, 0, sizeof(info));
	if (ioctl(fd, SYNC_IOC_FILE_INFO, &info))
		return -1000 - errno;
	return info.status;
}

void test_implicit_sync(void)
{
	struct npu_dev *dev = open_dev();
	struct npu_bo *cb, *src, *dst;
	struct npu_cmd cmd;
	uint32_t ctx, state;
	uint64_t seq;
	int dmabuf, sf_read = -1, sf_write = -1, busy;
	struct pollfd pfd;

	CHECK(dev, "open");
	ctx = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, 4096);
	src = alloc_map(dev, 4096);
	dst = alloc_map(dev, 4096);
	CHECK(ctx && cb && src && dst, "setup");
	CHECK_ERR(copy_cmd(&cmd, cb, 0, src, dst), 0);
	CHECK_ERR(npu_bo_export(dev, dst, &dmabuf), 0);
	CHECK_ERR(write_dbg("engine_delay_us", 300000), 0);
	CHECK_ERR(npu_submit(dev, ctx, &cmd, NULL, 0, 0, &seq), 0);
	/* a reader of the dma-buf waits for the job writing it */
	CHECK_ERR(export_sync_file(dmabuf, DMA_BUF_SYNC_READ, &sf_read), 0);
	CHECK_ERR(export_sync_file(dmabuf, DMA_BUF_SYNC_WRITE, &sf_write), 0);
	busy = sync_file_status(sf_read);
	pfd = (struct pollfd){ .fd = dmabuf, .events = POLLIN };
	CHECK(busy == 0, "the dma-buf's fences: status %d while the job runs", busy);
	CHECK(poll(&pfd, 1, 0) == 0, "dma-buf readable while the job writes it");
	CHECK_ERR(npu_wait(dev, ctx, seq, -1, &state), 0);
	CHECK(state == NPU_ERT_STATE_COMPLETED, "state %u", state);
	CHECK(poll(&pfd, 1, 10000) == 1, "dma-buf not readable after the job");
	CHECK(sync_file_status(sf_read) == 1 && sync_file_status(sf_write) == 1,
	      "sync_files after the job: %d %d", sync_file_status(sf_read),
	      sync_file_status(sf_write));
	CHECK_ERR(write_dbg("engine_delay_us", 0), 0);
	close(sf_read);
	close(sf_write);
	close(dmabuf);
	npu_bo_free(dev, cb);
	npu_bo_free(dev, src);
	npu_bo_free(dev, dst);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/* ---- SUBMIT's explicit BO list ---- */
static int submit_list(struct npu_dev *dev, uint32_t ctx, const struct npu_cmd *cmd,
		       const uint32_t *bos, uint32_t n, uint64_t *seq)
{
	struct drm_npu_submit s = {
		.ctx_id = ctx, .cmd_handle = cmd->bo->handle, .cmd_offset = cmd->offset,
		.bo_handles = (uintptr_t)bos, .bo_handle_count = n,
	};
	int r = ioc(npu_fd(dev), DRM_IOCTL_NPU_SUBMIT, &s);

	if (r == 0 && seq)
		*seq = s.seqno;
	return r;
}

void test_bo_list(void)
{
	struct npu_dev *dev = open_dev();
	struct drm_npu_get_info info;
	struct npu_bo *cb, *data, *other;
	struct npu_cmd cmd;
	uint32_t ctx, state, list[4], big[300];
	uint64_t seq;
	int i;

	CHECK(dev, "open");
	CHECK_ERR(npu_get_info(dev, &info), 0);
	CHECK(info.max_bo_handles == NPU_MAX_BO_HANDLES, "max_bo_handles %u", info.max_bo_handles);
	CHECK(info.version_major == 1 && info.version_minor >= 1, "version %u.%u",
	      info.version_major, info.version_minor);
	ctx = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, 4096);
	data = alloc_map(dev, 4096);
	other = alloc_map(dev, 4096);
	CHECK(ctx && cb && data && other, "setup");
	CHECK_ERR(copy_cmd(&cmd, cb, 0, data, data), 0);
	memset(data->map, 3, 64);
	/* the command BO, the operand and one more the job only orders against */
	list[0] = cb->handle;
	list[1] = data->handle;
	list[2] = other->handle;
	CHECK_ERR(submit_list(dev, ctx, &cmd, list, 3, &seq), 0);
	CHECK_ERR(npu_wait(dev, ctx, seq, -1, &state), 0);
	CHECK(state == NPU_ERT_STATE_COMPLETED && ((char *)data->map)[100] == 3, "state %u", state);
	/* an operand missing from the list, the command BO missing, a BO twice */
	CHECK_ERR(submit_list(dev, ctx, &cmd, list, 1, NULL), -EINVAL);
	list[0] = data->handle;
	list[1] = other->handle;
	CHECK_ERR(submit_list(dev, ctx, &cmd, list, 2, NULL), -EINVAL);
	list[0] = cb->handle;
	list[1] = data->handle;
	list[2] = cb->handle;
	CHECK_ERR(submit_list(dev, ctx, &cmd, list, 3, NULL), -EINVAL);
	/* unknown handle, bad pointer, too many, a pointer without a count */
	list[2] = 9999;
	CHECK_ERR(submit_list(dev, ctx, &cmd, list, 3, NULL), -ENOENT);
	CHECK_ERR(submit_list(dev, ctx, &cmd, (const uint32_t *)16, 3, NULL), -EFAULT);
	for (i = 0; i < 300; i++)
		big[i] = cb->handle;
	CHECK_ERR(submit_list(dev, ctx, &cmd, big, NPU_MAX_BO_HANDLES + 1, NULL), -E2BIG);
	CHECK_ERR(submit_list(dev, ctx, &cmd, list, 0, NULL), -EINVAL);
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_bo_free(dev, other);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/* ---- fdinfo: drm-usage-stats (memory, engine time) per open file ---- */
static long long fdinfo_value(int fd, const char *key)
{
	char path[64], buf[4096], *p;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	p = strstr(buf, key);
	if (!p)
		return -1;
	return strtoll(p + strlen(key), NULL, 10);
}

void test_fdinfo(void)
{
	struct npu_dev *dev = open_dev(), *other = open_dev();
	struct npu_bo *cb, *data;
	struct npu_cmd cmd;
	uint32_t ctx;
	long long busy0, busy1, total, busy_other;
	uint64_t cid;

	CHECK(dev && other, "open");
	CHECK_ERR(npu_client_id(dev, &cid), 0);
	CHECK(fdinfo_value(npu_fd(dev), "drm-client-id:") == (long long)cid, "fdinfo");
	ctx = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, 4096);
	data = alloc_map(dev, 3 * 4096);
	CHECK(ctx && cb && data, "setup");
	total = fdinfo_value(npu_fd(dev), "drm-total-memory:");
	CHECK(total == 16, "drm-total-memory %lld KiB, want 16", total);
	CHECK(fdinfo_value(npu_fd(dev), "drm-resident-memory:") == 16, "resident");
	busy0 = fdinfo_value(npu_fd(dev), "drm-engine-npu:");
	CHECK(busy0 == 0, "drm-engine-npu %lld before any job", busy0);
	CHECK_ERR(write_dbg("engine_delay_us", 50000), 0);
	CHECK_ERR(copy_cmd(&cmd, cb, 0, data, data), 0);
	CHECK(run_cmd(dev, ctx, &cmd) == NPU_ERT_STATE_COMPLETED, "job");
	CHECK_ERR(write_dbg("engine_delay_us", 0), 0);
	busy1 = fdinfo_value(npu_fd(dev), "drm-engine-npu:");
	busy_other = fdinfo_value(npu_fd(other), "drm-engine-npu:");
	fprintf(stderr, "  fdinfo: client %llu, engine %lld ns for a 50 ms job\n",
		(unsigned long long)cid, busy1);
	CHECK(busy1 >= 50000000, "drm-engine-npu %lld ns after a 50 ms job", busy1);
	CHECK(busy_other == 0, "another file's drm-engine-npu is %lld", busy_other);
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_close(dev);
	npu_close(other);
	CHECK(wait_no_leaks() == 0, "leak");
}

/* ---- tracepoints: a job's submit, run and done, its timeout ---- */
static const char *tracefs(void)
{
	static const char *const dirs[] = { "/sys/kernel/tracing", "/sys/kernel/debug/tracing" };
	char p[128];
	size_t i;

	for (i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), "%s/events/npu", dirs[i]);
		if (access(p, F_OK) == 0)
			return dirs[i];
	}
	mount("nodev", "/sys/kernel/tracing", "tracefs", 0, NULL);
	snprintf(p, sizeof(p), "%s/events/npu", dirs[0]);
	return access(p, F_OK) == 0 ? dirs[0] : NULL;
}

static int write_str(const char *dir, const char *name, const char *v)
{
	char p[256];
	int fd, r;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	fd = open(p, O_WRONLY | O_TRUNC);
	if (fd < 0)
		return -errno;
	r = write(fd, v, strlen(v)) == (ssize_t)strlen(v) ? 0 : -errno;
	close(fd);
	return r;
}

void test_trace(void)
{
	struct npu_dev *dev = open_dev();
	const char *tr = tracefs();
	struct npu_bo *cb, *data;
	struct npu_cmd cmd;
	char path[256], want[128], *buf;
	uint32_t ctx;
	uint64_t seq;
	int i;
	static const char *const events[] = {
		"npu_job_submit", "npu_job_run", "npu_job_done", "npu_job_timeout",
	};

	CHECK(dev, "open");
	CHECK(tr, "no events/npu in tracefs");
	ctx = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, 4096);
	data = alloc_map(dev, 4096);
	CHECK(ctx && cb && data, "setup");
	CHECK_ERR(copy_cmd(&cmd, cb, 0, data, data), 0);
	CHECK_ERR(write_str(tr, "trace", ""), 0);
	CHECK_ERR(write_str(tr, "events/npu/enable", "1"), 0);
	CHECK(run_cmd(dev, ctx, &cmd) == NPU_ERT_STATE_COMPLETED, "job");
	CHECK_ERR(inject_hang(), 0);
	CHECK_ERR(npu_submit(dev, ctx, &cmd, NULL, 0, 0, &seq), 0);
	CHECK_ERR(npu_wait(dev, ctx, seq, -1, NULL), 0);
	CHECK_ERR(write_str(tr, "events/npu/enable", "0"), 0);
	buf = malloc(1 << 20);
	snprintf(path, sizeof(path), "%s/trace", tr);
	CHECK(buf && read_file(path, buf, 1 << 20) > 0, "read trace");
	for (i = 0; i < 4; i++) {
		/* job 1 ran and completed (4); job 2 hung and timed out (8) */
		if (i < 3)
			snprintf(want, sizeof(want), "%s: dev=0 ctx=%u client=", events[i], ctx);
		else
			snprintf(want, sizeof(want), "%s: dev=0 ctx=%u", events[i], ctx);
		if (!strstr(buf, want)) {
			free(buf);
			CHECK(0, "no \"%s\" in the trace", want);
		}
	}
	i = strstr(buf, "npu_job_done") && strstr(buf, "seqno=1 ops=1 state=4") &&
		strstr(buf, "seqno=2 ops=1 state=8");
	free(buf);
	CHECK(i, "npu_job_done without the final states 4 and 8");
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/* ---- devcoredump: the hung job's context and ops, to read once ---- */
static int devcd_find(char *path, size_t size)
{
	DIR *d = opendir("/sys/class/devcoredump");
	struct dirent *e;
	int found = 0;

	if (!d)
		return 0;
	while (!found && (e = readdir(d))) {
		char link[512], target[512];
		ssize_t n;

		if (strncmp(e->d_name, "devcd", 5))
			continue;
		snprintf(link, sizeof(link), "/sys/class/devcoredump/%s/failing_device",
			 e->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		if (strstr(target, "npu.0")) {
			snprintf(path, size, "/sys/class/devcoredump/%s/data", e->d_name);
			found = 1;
		}
	}
	closedir(d);
	return found;
}

void test_devcoredump(void)
{
	struct npu_dev *dev = open_dev();
	struct npu_bo *cb, *data;
	struct npu_cmd cmd;
	char path[300], buf[4096], want[64];
	uint32_t ctx, state;
	uint64_t seq;
	int i;

	CHECK(dev, "open");
	CHECK(access("/sys/class/devcoredump", F_OK) == 0, "no devcoredump in this kernel");
	while (devcd_find(path, sizeof(path)))	/* old dumps go first */
		write_str("/", path + 1, "1");
	ctx = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, 4096);
	data = alloc_map(dev, 4096);
	CHECK(ctx && cb && data, "setup");
	CHECK_ERR(copy_cmd(&cmd, cb, 0, data, data), 0);
	CHECK_ERR(inject_hang(), 0);
	CHECK_ERR(npu_submit(dev, ctx, &cmd, NULL, 0, 0, &seq), 0);
	CHECK_ERR(npu_wait(dev, ctx, seq, -1, &state), 0);
	CHECK(state == NPU_ERT_STATE_TIMEOUT, "state %u", state);
	/* the dump is written by a work item after the reset */
	for (i = 0; i < 500 && !devcd_find(path, sizeof(path)); i++)
		usleep(10000);
	CHECK(devcd_find(path, sizeof(path)), "no devcoredump of npu.0");
	CHECK(read_file(path, buf, sizeof(buf)) > 0, "read %s", path);
	snprintf(want, sizeof(want), "context: %u (client ", ctx);
	CHECK(strstr(buf, "npu job timeout") && strstr(buf, want) &&
	      strstr(buf, "op 0: copy flags 0x0 dim 64") &&
	      strstr(buf, "buf 1: handle"), "dump: %.200s", buf);
	write_str("/", path + 1, "1");
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/* ---- runtime PM: idle suspends the engine, a job resumes it ---- */
static int runtime_status(char *buf, size_t size)
{
	int n = read_file("/sys/bus/platform/devices/npu.0/power/runtime_status", buf, size);

	if (n > 0 && buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	return n;
}

static int wait_status(const char *want)
{
	char st[32] = "";
	int i;

	for (i = 0; i < 1000; i++) {
		if (runtime_status(st, sizeof(st)) > 0 && !strcmp(st, want))
			return 0;
		usleep(10000);
	}
	return -1;
}

void test_runtime_pm(void)
{
	struct npu_dev *dev = open_dev();
	struct npu_bo *cb, *data;
	struct npu_cmd cmd;
	char st[32] = "";
	uint32_t ctx, state;
	uint64_t seq;

	CHECK(dev, "open");
	ctx = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, 4096);
	data = alloc_map(dev, 4096);
	CHECK(ctx && cb && data, "setup");
	CHECK(runtime_status(st, sizeof(st)) > 0, "no runtime PM status");
	/* idle (an open file and a context hold no reference) */
	CHECK(wait_status("suspended") == 0, "idle engine not suspended");
	CHECK_ERR(copy_cmd(&cmd, cb, 0, data, data), 0);
	CHECK_ERR(write_dbg("engine_delay_us", 300000), 0);
	memset(data->map, 9, 64);
	CHECK_ERR(npu_submit(dev, ctx, &cmd, NULL, 0, 0, &seq), 0);
	runtime_status(st, sizeof(st));
	CHECK(!strcmp(st, "active"), "status %s with a job running", st);
	CHECK_ERR(npu_wait(dev, ctx, seq, -1, &state), 0);
	CHECK_ERR(write_dbg("engine_delay_us", 0), 0);
	CHECK(state == NPU_ERT_STATE_COMPLETED && ((char *)data->map)[100] == 9,
	      "job after resume: state %u", state);
	CHECK(wait_status("suspended") == 0, "engine not suspended again");
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}
