// SPDX-License-Identifier: MIT
/*
 * npu_test: how the engine executes (issue 16, bugs 8 and 9): attention in
 * bounded FPU sections; positions read once, validated, used as read.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npu_ref.h"
#include "npu_test.h"

/* Work of one kernel_fpu_begin/end section of the engine, in multiply-adds. */
#define FPU_CHUNK_MACS 65536

/*
 * ---- bug 8: attention ran a whole row (up to 32768 x 512 multiply-adds
 * and an exp per position) in one FPU section ----
 */
void test_attention_chunks(void)
{
	enum { HD = 256, CTX = 2048 };
	struct npu_dev *dev = open_dev();
	struct npu_bo *cb, *bo;
	struct arena ar;
	struct npu_cmd cmd;
	struct drm_npu_op *op;
	uint64_t oq, ok, ov, opos, oout, macs;
	long before, after;
	uint32_t ctx;

	CHECK(dev, "open");
	CHECK(read_dbg("fpu_sections") >= 0, "no fpu_sections in debugfs");
	ctx = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, 4096);
	bo = alloc_map(dev, 8 << 20);
	CHECK(ctx && cb && bo, "setup");
	ar = (struct arena){ .bo = bo };
	oq = arena_get(&ar, HD * 4);
	ok = arena_get(&ar, (uint64_t)CTX * HD * 4);
	ov = arena_get(&ar, (uint64_t)CTX * HD * 4);
	opos = arena_get(&ar, 4);
	oout = arena_get(&ar, HD * 4);
	CHECK(oout != UINT64_MAX, "arena");
	fill_f32(at(&ar, oq), HD, -1, 1);
	fill_f32(at(&ar, ok), (size_t)CTX * HD, -1, 1);
	fill_f32(at(&ar, ov), (size_t)CTX * HD, -1, 1);
	*(int32_t *)at(&ar, opos) = CTX - 1;
	CHECK_ERR(npu_cmd_init(&cmd, cb, 0), 0);
	op = npu_cmd_add(&cmd, NPU_OP_ATTENTION);
	op->dim[0] = 1; op->dim[1] = 1; op->dim[2] = 1; op->dim[3] = HD;
	op->dim[4] = CTX;
	npu_op_set_buf(op, 0, bo, oq);
	npu_op_set_buf(op, 1, bo, ok);
	npu_op_set_buf(op, 2, bo, ov);
	npu_op_set_buf(op, 3, bo, opos);
	npu_op_set_buf(op, 4, bo, oout);
	before = read_dbg("fpu_sections");
	CHECK(run_cmd(dev, ctx, &cmd) == NPU_ERT_STATE_COMPLETED, "attention state");
	after = read_dbg("fpu_sections");
	/* q.k and p.v over every position, an exp each: at least this many sections */
	macs = 2ull * CTX * HD;
	fprintf(stderr, "  attention_chunks: %llu multiply-adds in %ld FPU sections\n",
		(unsigned long long)macs, after - before);
	CHECK((uint64_t)(after - before) >= macs / FPU_CHUNK_MACS,
	      "%llu multiply-adds of one row in %ld FPU sections (at most %d a section)",
	      (unsigned long long)macs, after - before, FPU_CHUNK_MACS);
	npu_bo_free(dev, cb);
	npu_bo_free(dev, bo);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}

/*
 * ---- bug 9: pos[] was read from user memory by every head while the
 * block table was copied first: a concurrent writer could give the heads
 * of one row different positions, and a bad position stopped the op half
 * done ----
 */
struct flipper {
	volatile int32_t *pos;
	int32_t a, b;
	volatile int stop;
	long flips;
};

static void *flip_main(void *p)
{
	struct flipper *f = p;

	while (!f->stop) {
		*f->pos = f->a;
		*f->pos = f->b;
		f->flips++;
	}
	*f->pos = f->a;
	return NULL;
}

void test_pos_snapshot(void)
{
	enum { H = 16, HD = 64, CTX = 256 };
	struct npu_dev *dev = open_dev();
	struct npu_bo *cb, *bo;
	struct arena ar;
	struct npu_cmd cmd;
	struct drm_npu_op *op;
	struct npu_ref_attn a;
	uint64_t oq, ok, ov, opos, oout;
	float *ref[2], *scratch;
	int32_t vals[2] = { 100, 200 };
	int32_t bad[2] = { 100, CTX };
	int round, k, errors = 0, mixed = 0, completed = 0;
	uint32_t ctx;
	size_t out_n = (size_t)H * HD;

	CHECK(dev, "open");
	ctx = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, 4096);
	bo = alloc_map(dev, 4 << 20);
	CHECK(ctx && cb && bo, "setup");
	ar = (struct arena){ .bo = bo };
	oq = arena_get(&ar, out_n * 4);
	ok = arena_get(&ar, (uint64_t)CTX * HD * 4);
	ov = arena_get(&ar, (uint64_t)CTX * HD * 4);
	opos = arena_get(&ar, 4);
	oout = arena_get(&ar, out_n * 4);
	CHECK(oout != UINT64_MAX, "arena");
	fill_f32(at(&ar, oq), out_n, -1, 1);
	fill_f32(at(&ar, ok), (size_t)CTX * HD, -1, 1);
	fill_f32(at(&ar, ov), (size_t)CTX * HD, -1, 1);
	CHECK_ERR(npu_cmd_init(&cmd, cb, 0), 0);
	op = npu_cmd_add(&cmd, NPU_OP_ATTENTION);
	op->dim[0] = 1; op->dim[1] = H; op->dim[2] = 1; op->dim[3] = HD;
	op->dim[4] = CTX;
	npu_op_set_buf(op, 0, bo, oq);
	npu_op_set_buf(op, 1, bo, ok);
	npu_op_set_buf(op, 2, bo, ov);
	npu_op_set_buf(op, 3, bo, opos);
	npu_op_set_buf(op, 4, bo, oout);

	/* the output for each of the two positions, from the reference */
	scratch = malloc(CTX * 4);
	for (k = 0; k < 2; k++) {
		uint32_t h;

		ref[k] = malloc(out_n * 4);
		memset(&a, 0, sizeof(a));
		a.q = at(&ar, oq); a.k = at(&ar, ok); a.v = at(&ar, ov);
		a.pos = &vals[k]; a.out = ref[k];
		a.n_heads = H; a.n_kv_heads = 1; a.head_dim = HD; a.n_ctx = CTX;
		for (h = 0; h < H; h++)
			npu_ref_attention(&a, 0, h, scratch);
	}
	free(scratch);

	for (round = 0; round < 16; round++) {
		/* rounds 0-7 flip between two valid positions, 8-15 to an invalid one */
		struct flipper f = {
			.pos = at(&ar, opos),
			.a = round < 8 ? vals[0] : bad[0],
			.b = round < 8 ? vals[1] : bad[1],
		};
		const float *out = at(&ar, oout);
		pthread_t t;
		int st, h, which = -1, untouched = 1;

		memset(at(&ar, oout), 0xcc, out_n * 4);
		*f.pos = f.a;
		CHECK(pthread_create(&t, NULL, flip_main, &f) == 0, "thread");
		st = run_cmd(dev, ctx, &cmd);
		f.stop = 1;
		pthread_join(t, NULL);
		for (k = 0; k < (int)out_n * 4; k++)
			untouched &= ((const unsigned char *)out)[k] == 0xcc;
		if (st == NPU_ERT_STATE_ERROR) {
			/* a bad position: found before anything was written */
			CHECK(round >= 8, "round %d: ERROR with two valid positions", round);
			CHECK(untouched, "round %d: ERROR after part of the output was written",
			      round);
			errors++;
			continue;
		}
		CHECK(st == NPU_ERT_STATE_COMPLETED, "round %d: state %d", round, st);
		completed++;
		for (h = 0; h < H; h++) {
			int k2 = -1;

			for (k = 0; k < 2; k++)
				if (!memcmp(out + (size_t)h * HD, ref[k] + (size_t)h * HD, HD * 4))
					k2 = k;
			CHECK(k2 >= 0, "round %d head %d: output of neither position", round, h);
			if (which < 0)
				which = k2;
			if (which != k2)
				mixed++;
		}
		CHECK(!mixed, "round %d: the heads of one row used different positions "
		      "(%ld flips during the op)", round, f.flips);
		CHECK(round < 8 || which == 0, "round %d: an invalid position was used", round);
	}
	fprintf(stderr, "  pos_snapshot: %d completed, %d refused a bad position\n",
		completed, errors);
	free(ref[0]);
	free(ref[1]);
	npu_bo_free(dev, cb);
	npu_bo_free(dev, bo);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}
