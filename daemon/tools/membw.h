/* SPDX-License-Identifier: MIT */
#pragma once

#include "model.h"
#include "threadpool.h"

/*
 * Read bandwidth of this machine in bytes/s for the pool's threads: the
 * best of 24 runs of 1 GiB each over mem (the model's weights: the pages
 * decode reads, its 1 GiB windows in turn), or over a huge-page buffer of
 * its own where mem is NULL or smaller. The threads take 256 KiB chunks
 * from a counter as decode takes its 64-row chunks, each read as 4 (as
 * decode reads 4 panels), 2 or 1 concurrent streams; *how names the
 * pattern of the best run. Every page is read once before the timed runs.
 */
double measure_read_bandwidth(struct threadpool *tp, const void *mem, size_t bytes, const char **how);

/*
 * The same probe, a sample at a time (between decode steps): _new reads
 * every page once; each _sample is one run of each pattern over the next
 * window, the best in bytes/s (*how its pattern).
 */
struct bw_probe;
int bw_probe_new(struct threadpool *tp, const void *mem, size_t bytes, struct bw_probe **ret);
double bw_probe_sample(struct bw_probe *p, const char **how);
void bw_probe_free(struct bw_probe *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct bw_probe *, bw_probe_free);

/*
 * The machine's int8 peak in multiply-accumulates per second: independent
 * chains of unsigned x signed byte products summed into int32 lanes
 * (vpdpbusd where the kernels use AVX-512 VNNI, vpmaddubsw + vpmaddwd on
 * AVX2), from registers, the best of many short runs on all pool threads
 * or on one thread times their number. *how names the instructions.
 */
double measure_int8_peak(struct threadpool *tp, const char **how);

/*
 * Where the kernels use AMX (KERNEL_ISA_AMX), the tiles' peak in
 * multiply-accumulates per second: tdpbssd into four independent
 * accumulator tiles, measured as measure_int8_peak's; else 0.
 */
double measure_amx_peak(struct threadpool *tp);

/*
 * The int8 GEMM alone on one of the model's matrices (an I8 weight): n_tok
 * tokens of random activations quantized for prec, the rows shared out as
 * the cpu back end does; the best of ten runs, in int8 ops (2 per
 * multiply-accumulate) per second.
 */
double measure_gemm(struct threadpool *tp, const struct npu_weight *w, enum npu_precision prec, int64_t n_tok);
