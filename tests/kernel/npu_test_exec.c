// SPDX-License-Identifier: MIT
/*
 * npu_test: how the engine executes (issue 16, bugs 8 and 9): attention in
 * bounded FPU sections; positions read once, validated, used as read.
 */
#include <errno.h>
#include <math.h>
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

/*
 * ---- the engine against float64 formulas written from the uAPI's
 * definitions, not against npu_ref (whose code the engine runs: comparing
 * the two proves only the plumbing) ----
 */
static double max_rel(double worst, double got, double want, double floor_)
{
	double d = fabs(got - want) / fmax(fabs(want), floor_);

	return d > worst ? d : worst;
}

void test_ops_float64(void)
{
	enum { M = 5, N = 37, K = 200, D = 96, H = 4, KVH = 2, HD = 16, CTX = 24, BS = 4, NB = 8 };
	struct npu_dev *dev = open_dev();
	struct npu_bo *cb, *bo;
	struct arena ar;
	struct npu_cmd cmd;
	struct drm_npu_op *op;
	uint64_t oa, oa16, ow, oas, ows, og8, og16, ox, orw, orn, orp, orx, osu, osv, oad,
		oq8, os8, oh, oq, ok, ov, opos, otb, oat;
	double e_gemm = 0, e_gemm16 = 0, e_norm = 0, e_rope = 0, e_silu = 0, e_add = 0,
		e_attn = 0;
	int q_off = 0, h_off = 0, i, j, m, h, t, d;
	static float rope_in[M * D];
	uint32_t ctx;

	CHECK(dev, "open");
	ctx = new_ctx(dev, ALL_OPS);
	cb = alloc_map(dev, 8192);
	bo = alloc_map(dev, 1 << 20);
	CHECK(ctx && cb && bo, "setup");
	ar = (struct arena){ .bo = bo };
#define A(var, bytes) var = arena_get(&ar, (bytes))
	A(oa, M * K); A(oa16, M * K * 2); A(ow, N * K); A(oas, M * 4); A(ows, N * 4);
	A(og8, M * N * 4); A(og16, M * N * 4);
	A(ox, M * D * 4); A(orw, D * 4); A(orn, M * D * 4); A(orp, M * 4); A(orx, M * D * 4);
	A(osu, M * D * 4); A(osv, M * D * 4); A(oad, M * D * 4); A(oq8, M * D); A(os8, M * 4);
	A(oh, M * D * 2);
	A(oq, M * H * HD * 4); A(ok, NB * BS * KVH * HD * 2); A(ov, NB * BS * KVH * HD * 2);
	A(opos, M * 4); A(otb, (CTX / BS) * 4); A(oat, M * H * HD * 4);
#undef A
	CHECK(oat != UINT64_MAX, "arena");
	fill_i8(at(&ar, oa), M * K);
	for (i = 0; i < M * K; i++)
		((int16_t *)at(&ar, oa16))[i] = (int16_t)(rnd() & 0xffff);
	fill_i8(at(&ar, ow), N * K);
	fill_f32(at(&ar, oas), M, 0.001f, 0.1f);
	fill_f32(at(&ar, ows), N, 0.001f, 0.1f);
	fill_f32(at(&ar, ox), M * D, -3, 3);
	fill_f32(at(&ar, orw), D, 0.5f, 1.5f);
	fill_f32(at(&ar, orx), M * D, -2, 2);
	memcpy(rope_in, at(&ar, orx), sizeof(rope_in));
	fill_f32(at(&ar, osv), M * D, -2, 2);
	fill_f32(at(&ar, oq), M * H * HD, -1, 1);
	for (i = 0; i < NB * BS * KVH * HD; i++) {
		_Float16 kh = (_Float16)rnd_float(-1, 1), vh = (_Float16)rnd_float(-1, 1);

		memcpy((uint16_t *)at(&ar, ok) + i, &kh, 2);
		memcpy((uint16_t *)at(&ar, ov) + i, &vh, 2);
	}
	for (m = 0; m < M; m++) {
		((int32_t *)at(&ar, orp))[m] = (int32_t)rnd_range(0, 3000);
		((int32_t *)at(&ar, opos))[m] = (int32_t)rnd_range(0, CTX - 1);
	}
	for (i = 0; i < CTX / BS; i++)
		((int32_t *)at(&ar, otb))[i] = (i * 3 + 1) % NB;

	CHECK_ERR(npu_cmd_init(&cmd, cb, 0), 0);
	op = npu_cmd_add(&cmd, NPU_OP_GEMM_W8A8);
	op->dim[0] = M; op->dim[1] = N; op->dim[2] = K;
	npu_op_set_buf(op, 0, bo, oa); npu_op_set_buf(op, 1, bo, ow);
	npu_op_set_buf(op, 2, bo, oas); npu_op_set_buf(op, 3, bo, ows);
	npu_op_set_buf(op, 4, bo, og8);
	op = npu_cmd_add(&cmd, NPU_OP_GEMM_W8A16);
	op->dim[0] = M; op->dim[1] = N; op->dim[2] = K;
	npu_op_set_buf(op, 0, bo, oa16); npu_op_set_buf(op, 1, bo, ow);
	npu_op_set_buf(op, 2, bo, oas); npu_op_set_buf(op, 3, bo, ows);
	npu_op_set_buf(op, 4, bo, og16);
	op = npu_cmd_add(&cmd, NPU_OP_RMSNORM);
	op->dim[0] = M; op->dim[1] = D;
	npu_op_set_fparam(op, 0, 1e-5f);
	npu_op_set_buf(op, 0, bo, ox); npu_op_set_buf(op, 1, bo, orw);
	npu_op_set_buf(op, 2, bo, orn);
	op = npu_cmd_add(&cmd, NPU_OP_ROPE);
	op->dim[0] = M; op->dim[1] = D / 16; op->dim[2] = 16;
	npu_op_set_fparam(op, 0, 10000.0f);
	npu_op_set_buf(op, 0, bo, orx); npu_op_set_buf(op, 1, bo, orp);
	npu_op_set_buf(op, 2, bo, orx);
	op = npu_cmd_add(&cmd, NPU_OP_SILU_MUL);
	op->dim[0] = M * D;
	npu_op_set_buf(op, 0, bo, ox); npu_op_set_buf(op, 1, bo, osv);
	npu_op_set_buf(op, 2, bo, osu);
	op = npu_cmd_add(&cmd, NPU_OP_ADD);
	op->dim[0] = M * D;
	npu_op_set_buf(op, 0, bo, ox); npu_op_set_buf(op, 1, bo, osv);
	npu_op_set_buf(op, 2, bo, oad);
	op = npu_cmd_add(&cmd, NPU_OP_QUANT_I8);
	op->dim[0] = M; op->dim[1] = D;
	npu_op_set_buf(op, 0, bo, ox); npu_op_set_buf(op, 1, bo, oq8);
	npu_op_set_buf(op, 2, bo, os8);
	op = npu_cmd_add(&cmd, NPU_OP_CVT_F32_F16);
	op->dim[0] = M * D;
	npu_op_set_buf(op, 0, bo, ox); npu_op_set_buf(op, 1, bo, oh);
	op = npu_cmd_add(&cmd, NPU_OP_ATTENTION);
	op->flags = NPU_OP_F_KV_F16;
	op->dim[0] = M; op->dim[1] = H; op->dim[2] = KVH; op->dim[3] = HD;
	op->dim[4] = CTX; op->dim[5] = BS; op->dim[6] = NB;
	npu_op_set_buf(op, 0, bo, oq); npu_op_set_buf(op, 1, bo, ok);
	npu_op_set_buf(op, 2, bo, ov); npu_op_set_buf(op, 3, bo, opos);
	npu_op_set_buf(op, 4, bo, oat); npu_op_set_buf(op, 5, bo, otb);
	CHECK(run_cmd(dev, ctx, &cmd) == NPU_ERT_STATE_COMPLETED, "state");

	for (m = 0; m < M; m++) {
		const float *as = at(&ar, oas), *ws = at(&ar, ows), *x = at(&ar, ox);
		const float *xm = x + m * D, *rw = at(&ar, orw);
		double ss = 0, amax = 0, scale;

		for (j = 0; j < N; j++) {
			int64_t acc = 0, acc16 = 0;

			for (i = 0; i < K; i++) {
				acc += (int64_t)((int8_t *)at(&ar, oa))[m * K + i] *
					((int8_t *)at(&ar, ow))[j * K + i];
				acc16 += (int64_t)((int16_t *)at(&ar, oa16))[m * K + i] *
					((int8_t *)at(&ar, ow))[j * K + i];
			}
			e_gemm = max_rel(e_gemm, ((float *)at(&ar, og8))[m * N + j],
					 (double)acc * as[m] * ws[j], 1e-6);
			e_gemm16 = max_rel(e_gemm16, ((float *)at(&ar, og16))[m * N + j],
					   (double)acc16 * as[m] * ws[j], 1e-3);
		}
		for (i = 0; i < D; i++) {
			ss += (double)xm[i] * xm[i];
			amax = fmax(amax, fabs(xm[i]));
		}
		for (i = 0; i < D; i++)
			e_norm = max_rel(e_norm, ((float *)at(&ar, orn))[m * D + i],
					 xm[i] / sqrt(ss / D + 1e-5) * rw[i], 1e-3);
		scale = amax / 127;
		CHECK(fabs(((float *)at(&ar, os8))[m] - scale) <= scale * 1e-6,
		      "quant scale of row %d", m);
		for (i = 0; i < D; i++) {
			double v = xm[i] / scale;
			int want = (int)(v < 0 ? -floor(-v + 0.5) : floor(v + 0.5));

			q_off += abs(((int8_t *)at(&ar, oq8))[m * D + i] - want) > 1;
		}
	}
	for (i = 0; i < M * D; i++) {
		const float *x = at(&ar, ox), *v = at(&ar, osv);
		_Float16 want = (_Float16)x[i];
		uint16_t wbits, got = ((uint16_t *)at(&ar, oh))[i];

		memcpy(&wbits, &want, 2);
		h_off += got != wbits;
		e_silu = max_rel(e_silu, ((float *)at(&ar, osu))[i],
				 x[i] / (1 + exp(-(double)x[i])) * v[i], 1e-3);
		e_add = max_rel(e_add, ((float *)at(&ar, oad))[i], (double)x[i] + v[i], 1e-3);
	}
	for (m = 0; m < M; m++) {
		/* rope rotated its input in place: the copy taken before the run */
		int32_t p = ((int32_t *)at(&ar, orp))[m];

		for (h = 0; h < D / 16; h++) {
			for (i = 0; i < 8; i++) {
				double th = p * pow(10000.0, -2.0 * i / 16), c = cos(th), sn = sin(th);
				const float *x0 = rope_in + m * D + h * 16 + 2 * i;
				const float *y = (float *)at(&ar, orx) + m * D + h * 16 + 2 * i;

				e_rope = fmax(e_rope, fabs(y[0] - (x0[0] * c - x0[1] * sn)));
				e_rope = fmax(e_rope, fabs(y[1] - (x0[0] * sn + x0[1] * c)));
			}
		}
	}
	for (m = 0; m < M; m++) {
		const float *qv = at(&ar, oq);
		int32_t p = ((int32_t *)at(&ar, opos))[m];

		for (h = 0; h < H; h++) {
			int kvh = h / (H / KVH);
			double s[CTX], mx = -1e300, sum = 0;

			for (t = 0; t <= p; t++) {
				int row = ((int32_t *)at(&ar, otb))[t / BS] * BS + t % BS;

				s[t] = 0;
				for (d = 0; d < HD; d++) {
					_Float16 kh;

					memcpy(&kh, (uint16_t *)at(&ar, ok) + (row * KVH + kvh) * HD + d, 2);
					s[t] += (double)qv[(m * H + h) * HD + d] * (double)kh;
				}
				s[t] /= sqrt((double)HD);
				mx = fmax(mx, s[t]);
			}
			for (t = 0; t <= p; t++)
				sum += exp(s[t] - mx);
			for (d = 0; d < HD; d++) {
				double o = 0;

				for (t = 0; t <= p; t++) {
					int row = ((int32_t *)at(&ar, otb))[t / BS] * BS + t % BS;
					_Float16 vh;

					memcpy(&vh, (uint16_t *)at(&ar, ov) + (row * KVH + kvh) * HD + d, 2);
					o += exp(s[t] - mx) / sum * (double)vh;
				}
				e_attn = fmax(e_attn, fabs(((float *)at(&ar, oat))[(m * H + h) * HD + d] - o));
			}
		}
	}
	fprintf(stderr, "  ops_float64: relative error gemm %.1e w8a16 %.1e rmsnorm %.1e silu %.1e "
		"add %.1e; absolute rope %.1e attention %.1e\n", e_gemm, e_gemm16, e_norm, e_silu,
		e_add, e_rope, e_attn);
	CHECK(e_gemm < 1e-6 && e_gemm16 < 1e-6, "gemm off by %.1e / %.1e", e_gemm, e_gemm16);
	CHECK(e_norm < 1e-5, "rmsnorm off by %.1e", e_norm);
	CHECK(e_silu < 1e-5 && e_add < 1e-6, "silu_mul %.1e add %.1e", e_silu, e_add);
	CHECK(!q_off, "%d quantized values off by more than one step", q_off);
	CHECK(!h_off, "%d f16 conversions differ from the compiler's", h_off);
	CHECK(e_attn < 1e-5, "attention off by %.1e", e_attn);
	CHECK(e_rope < 1e-5, "rope off by %.1e", e_rope);
	npu_bo_free(dev, cb);
	npu_bo_free(dev, bo);
	npu_close(dev);
	CHECK(wait_no_leaks() == 0, "leak");
}
