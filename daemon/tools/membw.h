/* SPDX-License-Identifier: MIT */
#pragma once

#include "threadpool.h"

/* Read bandwidth of this machine in bytes/s: all pool threads stream a large buffer (STREAM-like sum). */
double measure_read_bandwidth(struct threadpool *tp, size_t bytes);

/*
 * The machine's int8 peak in multiply-accumulates per second: independent
 * chains of unsigned x signed byte products summed into int32 lanes
 * (vpdpbusd where the kernels use AVX-512 VNNI, vpmaddubsw + vpmaddwd on
 * AVX2), from registers on all pool threads. *how names the instructions.
 */
double measure_int8_peak(struct threadpool *tp, const char **how);
