/* SPDX-License-Identifier: MIT */
#pragma once

#include "threadpool.h"

/* Read bandwidth of this machine in bytes/s: all pool threads stream a large buffer (STREAM-like sum). */
double measure_read_bandwidth(struct threadpool *tp, size_t bytes);
