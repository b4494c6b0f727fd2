// SPDX-License-Identifier: MIT
/*
 * npu_test: what an unprivileged local user may do (issue 16, bugs 6 and
 * 10): HIGH priority contexts need CAP_SYS_NICE; the open netlink event
 * group carries no PIDs; the group that does refuses unprivileged listeners.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/npu_genl.h>

#include "npu_test.h"

/* Become nobody: every capability goes with uid 0. */
static int drop_privileges(void)
{
	if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) ||
	    setresuid(65534, 65534, 65534))
		return -errno;
	return 0;
}

/* Runs fn in a child; returns its exit status (0 is success) or -1. */
static int in_child(int (*fn)(void *), void *arg)
{
	int status;
	pid_t pid = fork();

	if (pid == 0)
		_exit(fn(arg));
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/* ---- bug 6: any user could create HIGH priority contexts ---- */

static int high_priority_child(void *arg)
{
	struct npu_dev *dev = open_dev();	/* opened as root, used as nobody */
	uint32_t ctx;
	int r;

	(void)arg;
	if (!dev)
		return 10;
	if (drop_privileges() < 0)
		return 11;
	r = npu_ctx_create(dev, NPU_CTX_PRIORITY_HIGH, &ctx);
	if (r != -EPERM) {
		fprintf(stderr, "  unprivileged HIGH priority context: %d\n", r);
		return 12;
	}
	if (npu_ctx_create(dev, NPU_CTX_PRIORITY_NORMAL, &ctx) < 0 ||
	    npu_ctx_create(dev, NPU_CTX_PRIORITY_LOW, &ctx) < 0)
		return 13;
	npu_close(dev);
	return 0;
}

void test_high_priority(void)
{
	struct npu_dev *dev = open_dev();
	uint32_t ctx;
	int r;

	CHECK(dev, "open");
	r = in_child(high_priority_child, NULL);
	CHECK(r == 0, "unprivileged child: exit %d (12: HIGH was allowed)", r);
	/* root has CAP_SYS_NICE */
	CHECK_ERR(npu_ctx_create(dev, NPU_CTX_PRIORITY_HIGH, &ctx), 0);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/*
 * ---- bug 10: the open event group carried the PIDs of other users'
 * processes ----
 */

struct listener {
	int ready[2];	/* the child says it listens */
	int result[2];	/* what it saw */
};

/* An unprivileged listener: joins the open group, is refused the other. */
static int listener_child(void *arg)
{
	struct listener *l = arg;
	struct npu_nl *nl = NULL, *adm = NULL;
	struct npu_nl_event ev;
	int got = 0, pids = 0, r, i;
	char msg[64];

	if (drop_privileges() < 0)
		return 10;
	if (npu_nl_open(&nl) < 0 || npu_nl_subscribe_events(nl) < 0)
		return 11;
	if (npu_nl_open(&adm) < 0)
		return 12;
	r = npu_nl_subscribe_owner_events(adm);
	npu_nl_close(adm);
	if (write(l->ready[1], "x", 1) != 1)
		return 13;
	for (i = 0; i < 20 && got < 2; i++) {
		if (npu_nl_recv_event(nl, 5000, &ev) < 0)
			break;
		if (ev.event == NPU_GENL_EVENT_CTX_FAULT ||
		    ev.event == NPU_GENL_EVENT_JOB_TIMEOUT) {
			got++;
			pids += ev.pid != 0;
		}
	}
	npu_nl_close(nl);
	snprintf(msg, sizeof(msg), "%d %d %d", r, got, pids);
	if (write(l->result[1], msg, strlen(msg) + 1) < 0)
		return 14;
	return 0;
}

struct child_run {
	int (*fn)(void *);
	void *arg;
	int status;
};

static void *child_thread(void *p)
{
	struct child_run *c = p;

	c->status = in_child(c->fn, c->arg);
	return NULL;
}

void test_netlink_privacy(void)
{
	struct npu_dev *dev = open_dev();
	struct npu_nl *nl = NULL, *adm = NULL;
	struct listener l;
	struct child_run cr = { .fn = listener_child, .arg = &l };
	struct npu_bo *cb, *data;
	struct npu_cmd cmd;
	struct drm_npu_op *op;
	uint64_t cid = 0, seq;
	uint32_t ctx, state;
	int seen_open = 0, seen_adm = 0, r, got, pids, i;
	pthread_t t;
	char c, msg[64] = "";

	CHECK(dev, "open");
	CHECK(pipe(l.ready) == 0 && pipe(l.result) == 0, "pipe");
	CHECK(pthread_create(&t, NULL, child_thread, &cr) == 0, "thread");
	CHECK(read(l.ready[0], &c, 1) == 1, "listener did not start");
	CHECK_ERR(npu_nl_open(&nl), 0);
	CHECK_ERR(npu_nl_subscribe_events(nl), 0);
	CHECK_ERR(npu_nl_open(&adm), 0);
	CHECK_ERR(npu_nl_subscribe_owner_events(adm), 0);
	CHECK_ERR(npu_client_id(dev, &cid), 0);

	ctx = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, 4096);
	data = alloc_map(dev, 4096);
	CHECK(ctx && cb && data, "setup");
	CHECK_ERR(npu_cmd_init(&cmd, cb, 0), 0);
	op = npu_cmd_add(&cmd, NPU_OP_COPY);
	op->dim[0] = 64;
	npu_op_set_buf(op, 0, data, 0);
	npu_op_set_buf(op, 1, data, 64);
	CHECK_ERR(inject_hang(), 0);
	CHECK_ERR(npu_submit(dev, ctx, &cmd, NULL, 0, 0, &seq), 0);
	CHECK_ERR(npu_wait(dev, ctx, seq, -1, &state), 0);
	CHECK(state == NPU_ERT_STATE_TIMEOUT, "state %u", state);

	/* open group: who (the client id the owner can read in its fdinfo), never a pid */
	for (i = 0; i < 20 && seen_open != 3; i++) {
		struct npu_nl_event ev;

		if (npu_nl_recv_event(nl, 5000, &ev) < 0)
			break;
		CHECK(ev.pid == 0, "event %u on the open group carries pid %u", ev.event, ev.pid);
		if (ev.event == NPU_GENL_EVENT_CTX_FAULT && ev.ctx_id == ctx &&
		    ev.client_id == cid)
			seen_open |= 1;
		if (ev.event == NPU_GENL_EVENT_JOB_TIMEOUT && ev.ctx_id == ctx &&
		    ev.client_id == cid && ev.seqno == seq)
			seen_open |= 2;
	}
	CHECK(seen_open == 3, "open group: fault/timeout events with the client id: %d", seen_open);
	/* the admin group: the same with the pid */
	for (i = 0; i < 20 && seen_adm != 3; i++) {
		struct npu_nl_event ev;

		if (npu_nl_recv_event(adm, 5000, &ev) < 0)
			break;
		if (ev.event == NPU_GENL_EVENT_CTX_FAULT && ev.ctx_id == ctx &&
		    ev.client_id == cid && ev.pid == (uint32_t)getpid())
			seen_adm |= 1;
		if (ev.event == NPU_GENL_EVENT_JOB_TIMEOUT && ev.ctx_id == ctx &&
		    ev.pid == (uint32_t)getpid())
			seen_adm |= 2;
	}
	CHECK(seen_adm == 3, "admin group: fault/timeout events with the pid: %d", seen_adm);

	pthread_join(t, NULL);
	CHECK(cr.status == 0, "unprivileged listener: exit %d", cr.status);
	CHECK(read(l.result[0], msg, sizeof(msg)) > 0, "no result from the listener");
	CHECK(sscanf(msg, "%d %d %d", &r, &got, &pids) == 3, "listener said %s", msg);
	CHECK(r == -EPERM, "unprivileged join of the admin group: %d", r);
	CHECK(got == 2 && pids == 0, "unprivileged listener: %d events, %d with a pid", got, pids);
	close(l.ready[0]);
	close(l.ready[1]);
	close(l.result[0]);
	close(l.result[1]);
	npu_nl_close(nl);
	npu_nl_close(adm);
	npu_bo_free(dev, cb);
	npu_bo_free(dev, data);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}
