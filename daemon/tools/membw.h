/* SPDX-License-Identifier: MIT */
#pragma once

#include "model.h"
#include "threadpool.h"

/*
 * Read bandwidth of this machine in bytes/s: all pool threads stream a
 * large buffer (a STREAM-like sum), one stream per thread or four with
 * software prefetch, the best of both.
 */
double measure_read_bandwidth(struct threadpool *tp, size_t bytes);

/*
 * The machine's int8 peak in multiply-accumulates per second: independent
 * chains of unsigned x signed byte products summed into int32 lanes
 * (vpdpbusd where the kernels use AVX-512 VNNI, vpmaddubsw + vpmaddwd on
 * AVX2), from registers, the best of many short runs on all pool threads
 * or on one thread times their number. *how names the instructions.
 */
double measure_int8_peak(struct threadpool *tp, const char **how);

/*
 * The int8 GEMM alone on one of the model's matrices (an I8 weight): n_tok
 * tokens of random activations quantized for prec, the rows shared out as
 * the cpu back end does; the best of ten runs, in int8 ops (2 per
 * multiply-accumulate) per second.
 */
double measure_gemm(struct threadpool *tp, const struct npu_weight *w, enum npu_precision prec, int64_t n_tok);
