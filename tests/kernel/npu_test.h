/* SPDX-License-Identifier: MIT */
/*
 * npu_test: shared checks and helpers of the in-VM tests of npu.ko.
 */
#ifndef NPU_TEST_H
#define NPU_TEST_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "npu.h"

extern char fail_msg[512];
extern int failed;
extern uint64_t rng_state;
extern char debugfs_dir[256];

/* Fail the running test (first failure wins) and return from it. */
#define CHECK(cond, ...) do {						\
	if (!(cond)) {							\
		if (!failed) {						\
			snprintf(fail_msg, sizeof(fail_msg), __VA_ARGS__); \
			fprintf(stderr, "  check failed at %s:%d: %s\n", \
				__FILE__, __LINE__, fail_msg);		\
		}							\
		failed = 1;						\
		return;							\
	}								\
} while (0)

#define CHECK_ERR(expr, err) do {					\
	int _r = (expr);						\
	CHECK(_r == (err), "%s: got %d (%s), want %d", #expr, _r,	\
	      _r < 0 ? strerror(-_r) : "ok", (err));			\
} while (0)

#define ALL_OPS (((1ull << NPU_OPS_KNOWN) - 1) & ~1ull)

/* A simple arena over one BO: hands out aligned offsets. */
struct arena {
	struct npu_bo *bo;
	uint64_t used;
};

uint32_t rnd(void);
uint32_t rnd_range(uint32_t lo, uint32_t hi);
float rnd_float(float lo, float hi);
int ioc(int fd, unsigned long req, void *arg);
void find_debugfs(void);
long read_dbg(const char *name);
int write_dbg(const char *name, long v);
int wait_no_leaks(void);
void kmsg_open(void);
int kmsg_reports(char *first, size_t size);
struct npu_dev *open_dev(void);
struct npu_bo *alloc_map(struct npu_dev *dev, uint64_t size);
uint32_t new_ctx(struct npu_dev *dev, uint64_t ops);
uint64_t arena_get(struct arena *a, uint64_t size);
void *at(struct arena *a, uint64_t off);
int run_cmd(struct npu_dev *dev, uint32_t ctx, struct npu_cmd *cmd);
int copy_cmd_within(struct npu_cmd *cmd, struct npu_bo *cb, struct npu_bo *data, uint32_t n);
void fill_i8(int8_t *p, size_t n);
void fill_f32(float *p, size_t n, float lo, float hi);
int cmp_bytes(const void *a, const void *b, size_t n, const char *what);
int inject_hang(void);
int inject_alloc_fail(void);
int race_delay(unsigned int us);

/* Tests in the other files (named in npu_test.c's table). */
void test_ctx_race(void);
void test_destroy_abort(void);
void test_close_abort(void);
void test_destroy_storm(void);
void test_exit_budget(void);
void test_hang_states(void);
void test_queue_race(void);
void test_wait_signals(void);
void test_ctx_ids(void);
void test_completed(void);
void test_high_priority(void);
void test_netlink_privacy(void);
void test_attention_chunks(void);
void test_pos_snapshot(void);
void test_ops_float64(void);
void test_timeline(void);
void test_implicit_sync(void);
void test_bo_list(void);
void test_fdinfo(void);
void test_trace(void);
void test_devcoredump(void);
void test_runtime_pm(void);
void test_system_suspend(void);
void test_fault_injection(void);
void test_uapi_1_0(void);

#endif /* NPU_TEST_H */
