/* SPDX-License-Identifier: MIT */
#pragma once

#include "threadpool.h"

/* Read bandwidth of this machine in bytes/s: all pool threads stream a large buffer (STREAM-like sum). */
double measure_read_bandwidth(struct threadpool *tp, size_t bytes);

/*
 * Peak int8 multiply-accumulates per second of this machine with the
 * instruction mix the AVX2 w8a8 kernel uses (sign, vpmaddubsw, vpmaddwd,
 * vpaddd per 32 products), run from registers on all pool threads.
 */
double measure_int8_peak(struct threadpool *tp);
