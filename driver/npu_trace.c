// SPDX-License-Identifier: GPL-2.0-only
/*
 * npu tracepoints (npu_trace.h).
 *
 * Copyright (c) 2026 The npud authors
 */

#define CREATE_TRACE_POINTS
#include "npu_trace.h"
