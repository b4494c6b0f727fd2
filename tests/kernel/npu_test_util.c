// SPDX-License-Identifier: MIT
/*
 * npu_test: helpers shared by the tests (random data, debugfs, the kernel
 * log, devices, BOs, contexts, command buffers).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xf86drm.h>

#include "npu_test.h"

char fail_msg[512];
int failed;

/* ---- helpers ---- */

uint64_t rng_state = 0x853c49e6748fea9bull;

uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 11);
}

uint32_t rnd_range(uint32_t lo, uint32_t hi)
{
	return lo + rnd() % (hi - lo + 1);
}

float rnd_float(float lo, float hi)
{
	return lo + (hi - lo) * (float)(rnd() & 0xffffff) / 16777216.0f;
}

int ioc(int fd, unsigned long req, void *arg)
{
	return drmIoctl(fd, req, arg) ? -errno : 0;
}

char debugfs_dir[256];

void find_debugfs(void)
{
	const char *cands[] = {
		"/sys/kernel/debug/accel/npu.0",
		"/sys/kernel/debug/accel/0",
	};
	char p[300];
	size_t i;

	for (i = 0; i < sizeof(cands) / sizeof(cands[0]); i++) {
		snprintf(p, sizeof(p), "%s/bo_count", cands[i]);
		if (access(p, F_OK) == 0) {
			snprintf(debugfs_dir, sizeof(debugfs_dir), "%s", cands[i]);
			return;
		}
	}
}

long read_dbg(const char *name)
{
	char p[300], buf[64];
	long v = -1;
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", debugfs_dir, name);
	f = fopen(p, "r");
	if (!f)
		return -1;
	if (fgets(buf, sizeof(buf), f))
		v = strtol(buf, NULL, 0);
	fclose(f);
	return v;
}

int write_dbg(const char *name, long v)
{
	char p[300];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", debugfs_dir, name);
	f = fopen(p, "w");
	if (!f)
		return -errno;
	fprintf(f, "%ld\n", v);
	return fclose(f) ? -errno : 0;
}

/*
 * The device holds no BO, context or job: the debugfs file "idle" returns
 * once every job has been retired (the jobs hold the last references to
 * BOs and contexts), so nothing here depends on how fast the host is.
 */
int wait_no_leaks(void)
{
	long idle = read_dbg("idle"), bos, ctxs, jobs;

	bos = read_dbg("bo_count");
	ctxs = read_dbg("ctx_count");
	jobs = read_dbg("jobs_alive");
	if (idle == 1 && !bos && !ctxs && !jobs)
		return 0;
	fprintf(stderr, "  leak: idle %ld bo_count %ld ctx_count %ld jobs_alive %ld\n",
		idle, bos, ctxs, jobs);
	return -1;
}

/*
 * Kernel reports (KASAN, lockdep, WARN, debug objects, ...) logged since
 * the last call: the test that caused one fails with its first line. On
 * the debug kernel this is what catches races and fence-rule breaches.
 */
static int kmsg_fd = -1;

void kmsg_open(void)
{
	kmsg_fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (kmsg_fd >= 0)
		lseek(kmsg_fd, 0, SEEK_END);
}

int kmsg_reports(char *first, size_t size)
{
	static const char *const pats[] = {
		"BUG:", "WARNING:", "Oops", "KASAN", "kmemleak", "lockdep",
		"possible circular", "possible recursive", "inconsistent lock",
		"suspicious RCU", "ODEBUG", "sleeping function called",
		"scheduling while atomic", "DEBUG_LOCKS_WARN_ON", "corruption",
		"general protection", "Call Trace", "refcount_t", "INFO: task",
		"blocked for more than", "*ERROR*", "UBSAN",
	};
	char rec[8192];
	int n = 0;
	size_t i;

	if (kmsg_fd < 0)
		return 0;
	for (;;) {
		ssize_t r = read(kmsg_fd, rec, sizeof(rec) - 1);
		char *text, *nl;

		if (r < 0 && errno == EPIPE)
			continue;	/* records lost to the ring buffer */
		if (r <= 0)
			break;
		rec[r] = '\0';
		text = strchr(rec, ';');
		text = text ? text + 1 : rec;
		nl = strchr(text, '\n');
		if (nl)
			*nl = '\0';
		for (i = 0; i < sizeof(pats) / sizeof(pats[0]); i++) {
			if (strstr(text, pats[i])) {
				if (!n++)
					snprintf(first, size, "%s", text);
				fprintf(stderr, "  kernel: %s\n", text);
				break;
			}
		}
	}
	return n;
}

struct npu_dev *open_dev(void)
{
	struct npu_dev *dev = NULL;
	int r = npu_open_index(0, &dev);

	if (r < 0) {
		fprintf(stderr, "  open accel0: %s\n", strerror(-r));
		return NULL;
	}
	return dev;
}

struct npu_bo *alloc_map(struct npu_dev *dev, uint64_t size)
{
	struct npu_bo *bo;

	if (npu_bo_alloc(dev, size, &bo) < 0)
		return NULL;
	if (npu_bo_map(dev, bo) < 0) {
		npu_bo_free(dev, bo);
		return NULL;
	}
	return bo;
}

uint32_t new_ctx(struct npu_dev *dev, uint64_t ops)
{
	uint32_t ctx = 0;

	if (npu_ctx_create(dev, NPU_CTX_PRIORITY_NORMAL, &ctx) < 0)
		return 0;
	if (npu_ctx_enable_ops(dev, ctx, ops) < 0) {
		npu_ctx_destroy(dev, ctx);
		return 0;
	}
	return ctx;
}

uint64_t arena_get(struct arena *a, uint64_t size)
{
	uint64_t off = (a->used + 63) & ~63ull;

	if (off + size > a->bo->size)
		return UINT64_MAX;
	a->used = off + size;
	return off;
}

void *at(struct arena *a, uint64_t off)
{
	return (char *)a->bo->map + off;
}

/* cmd: one COPY op at offset 0 of cb, n bytes within data (from its start to 1024 on). */
int copy_cmd_within(struct npu_cmd *cmd, struct npu_bo *cb, struct npu_bo *data, uint32_t n)
{
	struct drm_npu_op *op;
	int r = npu_cmd_init(cmd, cb, 0);

	if (r < 0)
		return r;
	op = npu_cmd_add(cmd, NPU_OP_COPY);
	if (!op)
		return -E2BIG;
	op->dim[0] = n;
	npu_op_set_buf(op, 0, data, 0);
	npu_op_set_buf(op, 1, data, 1024);
	return 0;
}

/* Submit one cmd and wait; returns final ERT state or negative errno. */
int run_cmd(struct npu_dev *dev, uint32_t ctx, struct npu_cmd *cmd)
{
	uint64_t seq;
	uint32_t state;
	int r;

	r = npu_submit(dev, ctx, cmd, NULL, 0, 0, &seq);
	if (r < 0)
		return r;
	r = npu_wait(dev, ctx, seq, 20000000000ll, &state);
	if (r < 0)
		return r;
	if (npu_cmd_state(cmd) != state)
		return -EPROTO;
	return (int)state;
}

void fill_i8(int8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (int8_t)(rnd() & 0xff);
}

void fill_f32(float *p, size_t n, float lo, float hi)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = rnd_float(lo, hi);
}

int cmp_bytes(const void *a, const void *b, size_t n, const char *what)
{
	if (memcmp(a, b, n)) {
		const unsigned char *x = a, *y = b;
		size_t i;

		for (i = 0; i < n && x[i] == y[i]; i++)
			;
		fprintf(stderr, "  %s differs at byte %zu of %zu\n", what, i, n);
		return -1;
	}
	return 0;
}

/*
 * Arm a one-shot fault: the kernel's fault injection (debugfs DIR/ of a
 * fault_attr: always, once, quietly) where the kernel has it, else the
 * driver's own switch FALLBACK.
 */
static int inject_once(const char *dir, const char *fallback)
{
	char p[300], f[64];
	static const char *const knobs[][2] = {
		{ "verbose", "0" }, { "interval", "1" }, { "probability", "100" },
		{ "space", "0" }, { "times", "1" },
	};
	size_t i;

	snprintf(p, sizeof(p), "%s/%s/probability", debugfs_dir, dir);
	if (access(p, F_OK) != 0)
		return write_dbg(fallback, 1);
	for (i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++) {
		int r;

		snprintf(f, sizeof(f), "%s/%s", dir, knobs[i][0]);
		r = write_dbg(f, atol(knobs[i][1]));
		if (r < 0)
			return r;
	}
	return 0;
}

/* The next job hangs until the job timeout resets the engine. */
int inject_hang(void)
{
	return inject_once("fail_hang", "inject_hang");
}

/*
 * The test module that stalls the scheduler's pop of a job by us
 * microseconds (tests/kernel/race_delay), loaded, or removed with us 0.
 */
int race_delay(unsigned int us)
{
	char cmd[96];

	if (us)
		snprintf(cmd, sizeof(cmd), "insmod /npu_race_delay.ko delay_us=%u", us);
	else
		snprintf(cmd, sizeof(cmd), "rmmod npu_race_delay");
	return system(cmd) == 0 ? 0 : -1;
}

/* The next BO_CREATE fails with -ENOMEM. */
int inject_alloc_fail(void)
{
	return inject_once("fail_bo_alloc", "inject_alloc_fail");
}
