// SPDX-License-Identifier: MIT
/*
 * npu_test: contexts and jobs over their lives, the tests written for the
 * review of issue 16 (each names the bug it would have caught):
 * create racing destroy, destroy and close with jobs queued, process exit,
 * a hang seen by WAIT, the syncobj and the header at once, the debugfs
 * queue racing job retirement, WAIT interrupted by signals, context ids,
 * CTX_QUERY's completed count, contexts destroyed under a storm of jobs.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/sync_file.h>
#include <xf86drm.h>

#include "npu_test.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Status of the fence in a syncobj, through a sync_file: 1 signaled, 0 not yet, <0 its error. */
static int syncobj_status(int fd, uint32_t syncobj)
{
	struct sync_file_info info;
	int sf, r;

	if (drmSyncobjExportSyncFile(fd, syncobj, &sf))
		return -1000 - errno;
	memset(&info, 0, sizeof(info));
	r = ioctl(sf, SYNC_IOC_FILE_INFO, &info);
	close(sf);
	return r ? -2000 - errno : info.status;
}

/* The ERT state a fence status stands for (see the uAPI's DOC). */
static uint32_t state_of_status(int status)
{
	switch (status) {
	case 1:
		return NPU_ERT_STATE_COMPLETED;
	case -EIO:
		return NPU_ERT_STATE_ERROR;
	case -ETIMEDOUT:
		return NPU_ERT_STATE_TIMEOUT;
	case -ECANCELED:
	case -ESRCH:
		return NPU_ERT_STATE_ABORT;
	default:
		return 0xff;
	}
}

static uint32_t hdr_state(const void *map, uint64_t off)
{
	return npu_ert_state(__atomic_load_n((const uint32_t *)((const char *)map + off),
					     __ATOMIC_ACQUIRE));
}

/* Wait (up to tries x 10 ms) until thread tid sleeps inside an ioctl. */
static int blocked_in_ioctl(pid_t tid, int tries)
{
	char p[96], buf[128];
	int i;

	for (i = 0; i < tries; i++) {
		FILE *f;
		char st = 0;
		long nr = -1;

		snprintf(p, sizeof(p), "/proc/self/task/%d/stat", tid);
		f = fopen(p, "r");
		if (f) {
			if (fgets(buf, sizeof(buf), f) && strrchr(buf, ')'))
				st = strrchr(buf, ')')[2];
			fclose(f);
		}
		snprintf(p, sizeof(p), "/proc/self/task/%d/syscall", tid);
		f = fopen(p, "r");
		if (f) {
			if (fscanf(f, "%ld", &nr) != 1)
				nr = -1;
			fclose(f);
		}
		if (st == 'S' && nr == SYS_ioctl)
			return 0;
		usleep(10000);
	}
	return -1;
}

/*
 * n one-op COPY jobs, command i at offset i * 256 of cb, each with its own
 * out syncobj.
 */
#define MAX_JOBS 64

struct jobs {
	struct npu_dev *dev;
	struct npu_bo *cb;
	struct npu_cmd cmd[MAX_JOBS];
	uint32_t sync[MAX_JOBS];
	uint64_t seq[MAX_JOBS];
	int n;
};

static int jobs_build(struct jobs *j, struct npu_dev *dev, struct npu_bo *cb,
		      struct npu_bo *data, int n)
{
	int i, r;

	memset(j, 0, sizeof(*j));
	j->dev = dev;
	j->cb = cb;
	j->n = n;
	for (i = 0; i < n; i++) {
		struct drm_npu_op *op;

		r = npu_cmd_init(&j->cmd[i], cb, (uint64_t)i * 256);
		if (r < 0)
			return r;
		op = npu_cmd_add(&j->cmd[i], NPU_OP_COPY);
		if (!op)
			return -E2BIG;
		op->dim[0] = 64;
		npu_op_set_buf(op, 0, data, 0);
		npu_op_set_buf(op, 1, data, 64);
		r = npu_syncobj_create(dev, &j->sync[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

static int jobs_submit(struct jobs *j, uint32_t ctx, int first, int n)
{
	int i, r;

	for (i = first; i < first + n; i++) {
		r = npu_submit(j->dev, ctx, &j->cmd[i], NULL, 0, j->sync[i], &j->seq[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- bug 1: CTX_CREATE published the context before setting its id ---- */

struct ctx_race {
	struct npu_dev *dev;
	volatile uint32_t latest;	/* the id a creator got last */
	volatile int stop;
	int iters;
	int bad;			/* unexpected results */
	int stolen;			/* contexts another thread destroyed */
};

static void *ctx_race_creator(void *p)
{
	struct ctx_race *r = p;
	uint32_t id;
	int i, e;

	for (i = 0; i < r->iters; i++) {
		e = npu_ctx_create(r->dev, NPU_CTX_PRIORITY_NORMAL, &id);
		if (e < 0) {
			__atomic_add_fetch(&r->bad, 1, __ATOMIC_RELAXED);
			continue;
		}
		r->latest = id;
		e = npu_ctx_destroy(r->dev, id);
		if (e == -ENOENT)
			__atomic_add_fetch(&r->stolen, 1, __ATOMIC_RELAXED);
		else if (e < 0)
			__atomic_add_fetch(&r->bad, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void *ctx_race_destroyer(void *p)
{
	struct ctx_race *r = p;
	uint32_t d;
	int e;

	while (!r->stop) {
		/* the ids the creators are about to get */
		for (d = 0; d < 4; d++) {
			e = npu_ctx_destroy(r->dev, r->latest + d);
			if (e < 0 && e != -ENOENT)
				__atomic_add_fetch(&r->bad, 1, __ATOMIC_RELAXED);
		}
	}
	return NULL;
}

void test_ctx_race(void)
{
	struct ctx_race r = { .dev = open_dev(), .latest = 1, .iters = 3000 };
	pthread_t c[2], d[2];
	int i;

	CHECK(r.dev, "open");
	for (i = 0; i < 2; i++) {
		CHECK(pthread_create(&c[i], NULL, ctx_race_creator, &r) == 0, "thread");
		CHECK(pthread_create(&d[i], NULL, ctx_race_destroyer, &r) == 0, "thread");
	}
	for (i = 0; i < 2; i++)
		pthread_join(c[i], NULL);
	r.stop = 1;
	for (i = 0; i < 2; i++)
		pthread_join(d[i], NULL);
	fprintf(stderr, "  ctx_race: %d creates, %d destroyed by the other threads\n",
		2 * r.iters, r.stolen);
	CHECK(!r.bad, "%d unexpected results", r.bad);
	npu_close(r.dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/*
 * ---- bug 2: destroy and close waited for every queued job to run; the
 * uAPI says they get a short grace period and are then aborted ----
 */

struct waiter {
	struct npu_dev *dev;
	uint32_t ctx;
	uint64_t seq;
	uint32_t state;
	int ret;
	pid_t tid;
	int done;
	pthread_t thread;
};

static void *waiter_main(void *p)
{
	struct waiter *w = p;

	__atomic_store_n(&w->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
	w->ret = npu_wait(w->dev, w->ctx, w->seq, -1, &w->state);
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Until the waiter sleeps in WAIT, or has returned (its job ended first). */
static int waiter_ready(struct waiter *w)
{
	int i;

	while (!__atomic_load_n(&w->tid, __ATOMIC_ACQUIRE))
		usleep(1000);
	for (i = 0; i < 2000; i++) {
		if (__atomic_load_n(&w->done, __ATOMIC_ACQUIRE) || blocked_in_ioctl(w->tid, 1) == 0)
			return 0;
	}
	return -1;
}

/*
 * Each job's state on WAIT (when wstate is not NULL), its syncobj and its
 * header agree, and is COMPLETED or ABORT; returns the aborted count or -1.
 */
static int check_states(const struct jobs *j, const uint32_t *wstate, char *why,
			size_t why_size)
{
	int i, aborted = 0;

	for (i = 0; i < j->n; i++) {
		uint32_t h = hdr_state(j->cb->map, (uint64_t)i * 256);
		int s = syncobj_status(npu_fd(j->dev), j->sync[i]);

		if (state_of_status(s) != h || (wstate && wstate[i] != h) ||
		    (h != NPU_ERT_STATE_COMPLETED && h != NPU_ERT_STATE_ABORT)) {
			snprintf(why, why_size, "job %d: header %u, fence status %d, WAIT %u", i, h, s,
				 wstate ? wstate[i] : 0);
			return -1;
		}
		aborted += h == NPU_ERT_STATE_ABORT;
	}
	return aborted;
}

void test_destroy_abort(void)
{
	enum { N = 12 };
	struct npu_dev *dev = open_dev();
	struct waiter w[N];
	struct npu_bo *cb, *data;
	struct jobs j;
	uint32_t ctx, wstate[N];
	char why[128];
	double t0, dt;
	int i, aborted, done;

	CHECK(dev, "open");
	ctx = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, N * 256);
	data = alloc_map(dev, 4096);
	CHECK(ctx && cb && data, "setup");
	CHECK_ERR(jobs_build(&j, dev, cb, data, N), 0);
	/* 200 ms a job: N of them take 2.4 s */
	CHECK_ERR(write_dbg("engine_delay_us", 200000), 0);
	CHECK_ERR(jobs_submit(&j, ctx, 0, N), 0);
	for (i = 0; i < N; i++) {
		w[i] = (struct waiter){ .dev = dev, .ctx = ctx, .seq = j.seq[i] };
		CHECK(pthread_create(&w[i].thread, NULL, waiter_main, &w[i]) == 0, "thread");
	}
	for (i = 0; i < N; i++)
		CHECK(waiter_ready(&w[i]) == 0, "waiter %d never blocked in WAIT", i);
	/* the jobs that have ended while the waiters got ready */
	for (i = 0, done = 0; i < N; i++)
		done += hdr_state(cb->map, (uint64_t)i * 256) == NPU_ERT_STATE_COMPLETED;
	t0 = now_s();
	CHECK_ERR(npu_ctx_destroy(dev, ctx), 0);
	dt = now_s() - t0;
	for (i = 0; i < N; i++) {
		pthread_join(w[i].thread, NULL);
		CHECK(w[i].ret == 0, "WAIT of job %d: %d", i, w[i].ret);
		wstate[i] = w[i].state;
	}
	CHECK_ERR(write_dbg("engine_delay_us", 0), 0);
	aborted = check_states(&j, wstate, why, sizeof(why));
	CHECK(aborted >= 0, "%s", why);
	fprintf(stderr, "  destroy_abort: destroy took %.2f s, %d of %d jobs aborted (%d done before)\n",
		dt, aborted, N, done);
	/* the running job ends, one more may start within the grace period */
	CHECK(aborted >= N - done - 2, "only %d of %d queued jobs aborted", aborted, N - done);
	CHECK(dt < 1.5, "destroy took %.2f s", dt);
	for (i = 0; i < N; i++)
		npu_syncobj_destroy(dev, j.sync[i]);
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/*
 * close() with jobs queued on several contexts: the flush waits one bounded
 * budget for the whole file, the release aborts the rest. The command BO is
 * read through a dma-buf mapping: a mapping of the accel fd would keep the
 * file open.
 */
void test_close_abort(void)
{
	enum { NCTX = 6, PER = 4, N = NCTX * PER };
	struct npu_dev *dev = open_dev();
	struct npu_bo *cb = NULL, *data = NULL;
	struct jobs j;
	uint32_t ctx[NCTX];
	int dmabuf = -1, i, aborted, sf[N];
	void *map;
	double t0, dt;

	CHECK(dev, "open");
	CHECK_ERR(npu_bo_alloc(dev, N * 256, &cb), 0);
	CHECK_ERR(npu_bo_alloc(dev, 4096, &data), 0);
	CHECK_ERR(npu_bo_export(dev, cb, &dmabuf), 0);
	map = mmap(NULL, cb->size, PROT_READ | PROT_WRITE, MAP_SHARED, dmabuf, 0);
	CHECK(map != MAP_FAILED, "mmap dma-buf");
	cb->map = map;
	for (i = 0; i < NCTX; i++) {
		ctx[i] = new_ctx(dev, ALL_OPS);
		CHECK(ctx[i], "ctx");
	}
	CHECK_ERR(jobs_build(&j, dev, cb, data, N), 0);
	CHECK_ERR(write_dbg("engine_delay_us", 200000), 0);
	for (i = 0; i < NCTX; i++)
		CHECK_ERR(jobs_submit(&j, ctx[i], i * PER, PER), 0);
	/* the fences outlive the file as sync_files */
	for (i = 0; i < N; i++)
		CHECK(drmSyncobjExportSyncFile(npu_fd(dev), j.sync[i], &sf[i]) == 0, "export");
	t0 = now_s();
	npu_close(dev);
	dt = now_s() - t0;
	aborted = 0;
	for (i = 0; i < N; i++) {
		struct sync_file_info info;
		uint32_t h;

		memset(&info, 0, sizeof(info));
		/* the aborted ones signal when the scheduler has dropped them */
		CHECK(ioctl(sf[i], SYNC_IOC_FILE_INFO, &info) == 0, "sync_file info of job %d: %s",
		      i, strerror(errno));
		if (info.status == 0) {
			struct pollfd pfd = { .fd = sf[i], .events = POLLIN };

			CHECK(poll(&pfd, 1, 30000) == 1, "job %d never signaled", i);
			memset(&info, 0, sizeof(info));
			CHECK(ioctl(sf[i], SYNC_IOC_FILE_INFO, &info) == 0,
			      "sync_file info of job %d: %s", i, strerror(errno));
		}
		close(sf[i]);
		h = hdr_state(map, (uint64_t)i * 256);
		CHECK(state_of_status(info.status) == h, "job %d: header %u, fence status %d",
		      i, h, info.status);
		CHECK(h == NPU_ERT_STATE_COMPLETED || h == NPU_ERT_STATE_ABORT,
		      "job %d: state %u", i, h);
		aborted += h == NPU_ERT_STATE_ABORT;
	}
	CHECK_ERR(write_dbg("engine_delay_us", 0), 0);
	fprintf(stderr, "  close_abort: close took %.2f s, %d of %d jobs aborted\n",
		dt, aborted, N);
	CHECK(aborted >= N / 2, "only %d of %d queued jobs aborted", aborted, N);
	CHECK(dt < 2.5, "close took %.2f s", dt);
	munmap(map, cb->size);
	close(dmabuf);
	free(cb);
	free(data);
	CHECK(wait_no_leaks() == 0, "leak");
}

/* A process exiting with jobs queued on 16 contexts: one budget, not one a context. */
void test_exit_budget(void)
{
	enum { NCTX = 16, PER = 2 };
	double t0, dt;
	int status, p[2];
	pid_t pid;
	char c;

	CHECK_ERR(write_dbg("engine_delay_us", 200000), 0);
	CHECK(pipe(p) == 0, "pipe");
	pid = fork();
	if (pid == 0) {
		struct npu_dev *dev = open_dev();
		struct npu_bo *cb, *data;
		struct jobs j;
		int i;

		if (!dev)
			_exit(2);
		cb = alloc_map(dev, NCTX * PER * 256);
		data = alloc_map(dev, 4096);
		if (!cb || !data || jobs_build(&j, dev, cb, data, NCTX * PER) < 0)
			_exit(3);
		for (i = 0; i < NCTX; i++) {
			uint32_t ctx = new_ctx(dev, ALL_OPS);

			if (!ctx || jobs_submit(&j, ctx, i * PER, PER) < 0)
				_exit(4);
		}
		if (write(p[1], "x", 1) != 1)
			_exit(5);
		_exit(0);	/* 6.4 s of queued work */
	}
	CHECK(pid > 0, "fork");
	close(p[1]);
	CHECK(read(p[0], &c, 1) == 1, "child setup failed");
	t0 = now_s();
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
	dt = now_s() - t0;
	close(p[0]);
	CHECK_ERR(write_dbg("engine_delay_us", 0), 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
	fprintf(stderr, "  exit_budget: exit took %.2f s\n", dt);
	CHECK(dt < 3.0, "exit with %d contexts took %.2f s", NCTX, dt);
	CHECK(wait_no_leaks() == 0, "leak");
}

/*
 * ---- bug 6: drm_sched (6.12) put a context's entity back into its run
 * queue's FIFO tree while CTX_DESTROY was taking it out, when it popped a
 * job with another queued behind; the freed context stayed in the tree, the
 * other contexts' jobs were not found any more and their submitters waited
 * on a full window forever (destroy_race, about one run in ten) ----
 */
enum { STORM_THREADS = 4 };

struct storm {
	struct npu_dev *dev;
	struct npu_cmd *cmd;
	volatile int stop;
	uint32_t ctx[STORM_THREADS];	/* each thread's current context */
	int bad[STORM_THREADS];		/* a submit error other than ENOENT */
	long jobs;
	long contexts;
};

struct storm_arg {
	struct storm *s;
	int i;
};

/* Submits on a context of its own until it is destroyed, then on a new one. */
static void *storm_submitter(void *p)
{
	struct storm_arg *a = p;
	struct storm *s = a->s;
	uint64_t seq;
	int r = 0;

	while (!s->stop) {
		uint32_t ctx = new_ctx(s->dev, ALL_OPS);

		if (!ctx) {
			s->bad[a->i] = -ENOMEM;
			return NULL;
		}
		__atomic_add_fetch(&s->contexts, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&s->ctx[a->i], ctx, __ATOMIC_RELEASE);
		while (!s->stop && (r = npu_submit(s->dev, ctx, s->cmd, NULL, 0, 0, &seq)) == 0)
			__atomic_add_fetch(&s->jobs, 1, __ATOMIC_RELAXED);
		if (!s->stop && r != -ENOENT) {
			s->bad[a->i] = r;
			return NULL;
		}
	}
	return NULL;
}

void test_destroy_storm(void)
{
	struct npu_dev *dev = open_dev();
	struct storm_arg args[STORM_THREADS];
	pthread_t t[STORM_THREADS];
	struct storm s = { 0 };
	struct npu_bo *cb, *data;
	struct npu_cmd cmd;
	uint32_t ctx, state = 0;
	uint64_t seq;
	int i, destroys = 0;
	double t0;

	CHECK(dev, "open");
	cb = alloc_map(dev, 4096);
	data = alloc_map(dev, 4096);
	CHECK(cb && data, "alloc");
	CHECK_ERR(copy_cmd_within(&cmd, cb, data, 512), 0);
	s.dev = dev;
	s.cmd = &cmd;
	/* each pop of a job stalls 300 us: a destroy lands in one often */
	CHECK_ERR(race_delay(300), 0);
	for (i = 0; i < STORM_THREADS; i++) {
		args[i] = (struct storm_arg){ .s = &s, .i = i };
		CHECK(pthread_create(&t[i], NULL, storm_submitter, &args[i]) == 0, "thread");
	}
	/* Contexts destroyed while their jobs are queued and being taken. */
	for (t0 = now_s(); now_s() - t0 < 3.0; destroys++) {
		uint32_t victim = __atomic_load_n(&s.ctx[rnd() % STORM_THREADS],
						  __ATOMIC_ACQUIRE);
		int r;

		usleep(200 + rnd() % 1500);
		r = victim ? npu_ctx_destroy(dev, victim) : -ENOENT;
		if (r && r != -ENOENT)
			break;
	}
	s.stop = 1;
	for (i = 0; i < STORM_THREADS; i++)
		pthread_join(t[i], NULL);
	CHECK_ERR(race_delay(0), 0);
	fprintf(stderr, "  destroy_storm: %d destroys, %ld contexts, %ld jobs\n",
		destroys, s.contexts, s.jobs);
	for (i = 0; i < STORM_THREADS; i++)
		CHECK(!s.bad[i], "submitter %d: %d", i, s.bad[i]);
	/* The scheduler still finds a new context's job. */
	ctx = new_ctx(dev, ALL_OPS);
	CHECK(ctx, "ctx after the storm");
	CHECK_ERR(npu_submit(dev, ctx, &cmd, NULL, 0, 0, &seq), 0);
	CHECK_ERR(npu_wait(dev, ctx, seq, 20ll * 1000 * 1000 * 1000, &state), 0);
	CHECK(state == NPU_ERT_STATE_COMPLETED, "job after the storm: state %u", state);
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/*
 * ---- bug 4: after a timeout, syncobj waiters saw -ECANCELED while WAIT and
 * the header said TIMEOUT ----
 */
void test_hang_states(void)
{
	struct npu_dev *dev = open_dev();
	struct npu_bo *cb, *data;
	struct waiter w[2];
	struct jobs j;
	uint32_t ctx, wstate[2];
	int i;

	CHECK(dev, "open");
	ctx = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, 2 * 256);
	data = alloc_map(dev, 4096);
	CHECK(ctx && cb && data, "setup");
	CHECK_ERR(jobs_build(&j, dev, cb, data, 2), 0);
	CHECK_ERR(inject_hang(), 0);
	/* the first job hangs and times out; the second is aborted with its faulted context */
	CHECK_ERR(jobs_submit(&j, ctx, 0, 2), 0);
	for (i = 0; i < 2; i++) {
		w[i] = (struct waiter){ .dev = dev, .ctx = ctx, .seq = j.seq[i] };
		CHECK(pthread_create(&w[i].thread, NULL, waiter_main, &w[i]) == 0, "thread");
	}
	for (i = 0; i < 2; i++) {
		pthread_join(w[i].thread, NULL);
		CHECK(w[i].ret == 0, "WAIT %d: %d", i, w[i].ret);
		wstate[i] = w[i].state;
	}
	for (i = 0; i < 2; i++) {
		uint32_t h = hdr_state(cb->map, (uint64_t)i * 256);
		int s = syncobj_status(npu_fd(dev), j.sync[i]);

		CHECK(wstate[i] == h && state_of_status(s) == h,
		      "job %d: WAIT %u, header %u, fence status %d", i, wstate[i], h, s);
	}
	CHECK(wstate[0] == NPU_ERT_STATE_TIMEOUT, "hung job state %u", wstate[0]);
	CHECK(wstate[1] == NPU_ERT_STATE_ABORT, "queued job state %u", wstate[1]);
	for (i = 0; i < 2; i++)
		npu_syncobj_destroy(dev, j.sync[i]);
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/*
 * ---- bug 5: the debugfs queue file read the running job after its fence
 * had signaled, when free_job may already have freed it and its context ----
 */
struct reader {
	volatile int stop;
	long reads;
};

static void *queue_reader(void *p)
{
	struct reader *r = p;
	char path[300], buf[4096];

	snprintf(path, sizeof(path), "%s/queue", debugfs_dir);
	while (!r->stop) {
		int fd = open(path, O_RDONLY);

		if (fd < 0)
			break;
		while (read(fd, buf, sizeof(buf)) > 0)
			;
		close(fd);
		r->reads++;
	}
	return NULL;
}

void test_queue_race(void)
{
	struct npu_dev *dev = open_dev();
	struct reader r = { 0 };
	struct npu_bo *cb, *data;
	struct jobs j;
	pthread_t t;
	int i;

	CHECK(dev, "open");
	cb = alloc_map(dev, 256);
	data = alloc_map(dev, 4096);
	CHECK(cb && data, "setup");
	CHECK_ERR(jobs_build(&j, dev, cb, data, 1), 0);
	CHECK(pthread_create(&t, NULL, queue_reader, &r) == 0, "thread");
	/* short jobs whose context goes with them: the job and its context are freed together */
	for (i = 0; i < 400; i++) {
		uint32_t ctx = new_ctx(dev, ALL_OPS), state;

		CHECK(ctx, "ctx");
		CHECK_ERR(jobs_submit(&j, ctx, 0, 1), 0);
		CHECK_ERR(npu_wait(dev, ctx, j.seq[0], -1, &state), 0);
		CHECK_ERR(npu_ctx_destroy(dev, ctx), 0);
	}
	r.stop = 1;
	pthread_join(t, NULL);
	fprintf(stderr, "  queue_race: %ld reads of the queue file\n", r.reads);
	CHECK(r.reads > 0, "debugfs queue unreadable");
	npu_syncobj_destroy(dev, j.sync[0]);
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/*
 * ---- bug 7: WAIT took a relative timeout that restarted in full after
 * every signal ----
 */
static void on_signal(int sig)
{
	(void)sig;
}

struct pester {
	pthread_t target;
	volatile int stop;
	long sent;
};

static void *pester_main(void *p)
{
	struct pester *ps = p;
	double t0 = now_s();

	/* a signal every 5 ms for up to 20 s */
	while (!ps->stop && now_s() - t0 < 20) {
		pthread_kill(ps->target, SIGUSR1);
		ps->sent++;
		usleep(5000);
	}
	return NULL;
}

/* WAIT for seqno with a 300 ms timeout under a signal every 5 ms. */
static int wait_pestered(struct npu_dev *dev, uint32_t ctx, uint64_t seqno, int raw,
			 double *dt, long *sent)
{
	struct pester ps = { .target = pthread_self() };
	struct sigaction sa, old;
	pthread_t t;
	double t0;
	int r;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, &old);
	if (pthread_create(&t, NULL, pester_main, &ps))
		return -EAGAIN;
	t0 = now_s();
	if (raw) {
		/* the relative timeout of the ioctl itself */
		struct drm_npu_wait w = { .ctx_id = ctx, .seqno = seqno,
					  .timeout_ns = 300000000 };

		r = ioc(npu_fd(dev), DRM_IOCTL_NPU_WAIT, &w);
	} else {
		/* libnpu: an absolute deadline */
		uint32_t state;

		r = npu_wait(dev, ctx, seqno, 300000000, &state);
	}
	*dt = now_s() - t0;
	ps.stop = 1;
	pthread_join(t, NULL);
	sigaction(SIGUSR1, &old, NULL);
	*sent = ps.sent;
	return r;
}

void test_wait_signals(void)
{
	enum { N = 20 };
	struct npu_dev *dev = open_dev();
	struct npu_bo *cb, *data;
	struct jobs j;
	uint32_t ctx;
	double dt = 0;
	long sent = 0;
	int r, raw;

	CHECK(dev, "open");
	ctx = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, N * 256);
	data = alloc_map(dev, 4096);
	CHECK(ctx && cb && data, "setup");
	CHECK_ERR(jobs_build(&j, dev, cb, data, N), 0);
	CHECK_ERR(write_dbg("engine_delay_us", 200000), 0);
	CHECK_ERR(jobs_submit(&j, ctx, 0, N), 0);	/* 4 s of work */
	for (raw = 1; raw >= 0; raw--) {
		r = wait_pestered(dev, ctx, j.seq[N - 1], raw, &dt, &sent);
		fprintf(stderr, "  wait_signals: %s WAIT (300 ms) returned %d after %.2f s and %ld signals\n",
			raw ? "relative" : "absolute", r, dt, sent);
		CHECK(r == -ETIME, "a 300 ms %s WAIT under signals returned %d after %.2f s",
		      raw ? "relative" : "absolute", r, dt);
		CHECK(dt < 2.0, "a 300 ms WAIT under signals took %.2f s", dt);
	}
	CHECK_ERR(npu_ctx_destroy(dev, ctx), 0);
	CHECK_ERR(write_dbg("engine_delay_us", 0), 0);
	for (r = 0; r < N; r++)
		npu_syncobj_destroy(dev, j.sync[r]);
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/* ---- bug 11: ids reused at once; CTX_QUERY's completed lagging the fence ---- */
void test_ctx_ids(void)
{
	struct npu_dev *dev = open_dev();
	uint32_t a, b, c;

	CHECK(dev, "open");
	CHECK_ERR(npu_ctx_create(dev, NPU_CTX_PRIORITY_NORMAL, &a), 0);
	CHECK_ERR(npu_ctx_destroy(dev, a), 0);
	CHECK_ERR(npu_ctx_create(dev, NPU_CTX_PRIORITY_NORMAL, &b), 0);
	CHECK(b != a, "id %u reused at once", a);
	CHECK_ERR(npu_ctx_destroy(dev, b), 0);
	CHECK_ERR(npu_ctx_create(dev, NPU_CTX_PRIORITY_NORMAL, &c), 0);
	CHECK(c != a && c != b, "id %u reused", c);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

void test_completed(void)
{
	struct npu_dev *dev = open_dev();
	struct drm_npu_ctx_query q;
	struct npu_bo *cb, *data;
	struct jobs j;
	uint32_t ctx, state;
	int i;

	CHECK(dev, "open");
	ctx = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, 256);
	data = alloc_map(dev, 4096);
	CHECK(ctx && cb && data, "setup");
	CHECK_ERR(jobs_build(&j, dev, cb, data, 1), 0);
	for (i = 1; i <= 100; i++) {
		CHECK_ERR(jobs_submit(&j, ctx, 0, 1), 0);
		CHECK_ERR(npu_wait(dev, ctx, j.seq[0], -1, &state), 0);
		CHECK_ERR(npu_ctx_query(dev, ctx, &q), 0);
		CHECK(q.submitted == (uint64_t)i && q.completed == (uint64_t)i,
		      "after WAIT of job %d: submitted %llu, completed %llu", i,
		      (unsigned long long)q.submitted, (unsigned long long)q.completed);
	}
	npu_syncobj_destroy(dev, j.sync[0]);
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}
