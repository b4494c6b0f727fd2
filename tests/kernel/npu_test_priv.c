// SPDX-License-Identifier: MIT
/*
 * npu_test: what an unprivileged local user may do (issue 16, bug 6):
 * HIGH priority contexts need CAP_SYS_NICE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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
