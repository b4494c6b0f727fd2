/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * npu tracepoints: a job's life (submit, run, done with its final state,
 * timeout), events/npu/ in tracefs.
 *
 * Copyright (c) 2026 The npud authors
 */

#undef TRACE_SYSTEM
#define TRACE_SYSTEM npu

#if !defined(__NPU_TRACE_H__) || defined(TRACE_HEADER_MULTI_READ)
#define __NPU_TRACE_H__

#include <linux/tracepoint.h>

#include "npu_drv.h"

DECLARE_EVENT_CLASS(npu_job,
		    TP_PROTO(const struct npu_job *job),
		    TP_ARGS(job),
		    TP_STRUCT__entry(__field(u32, dev)
				     __field(u32, ctx)
				     __field(u64, client)
				     __field(u64, seqno)
				     __field(u32, nops)
				     __field(u32, state)),
		    TP_fast_assign(__entry->dev = job->ndev->index;
				   __entry->ctx = job->ctx->id;
				   __entry->client = job->ctx->client_id;
				   __entry->seqno = job->seqno;
				   __entry->nops = job->nops;
				   __entry->state = atomic_read(&job->state);),
		    TP_printk("dev=%u ctx=%u client=%llu seqno=%llu ops=%u state=%u",
			      __entry->dev, __entry->ctx, __entry->client,
			      __entry->seqno, __entry->nops, __entry->state)
);

/* Pushed to the context's queue. */
DEFINE_EVENT(npu_job, npu_job_submit,
	     TP_PROTO(const struct npu_job *job),
	     TP_ARGS(job)
);

/* Handed to the engine. */
DEFINE_EVENT(npu_job, npu_job_run,
	     TP_PROTO(const struct npu_job *job),
	     TP_ARGS(job)
);

/* Its final state recorded (state=), its fence about to signal. */
DEFINE_EVENT(npu_job, npu_job_done,
	     TP_PROTO(const struct npu_job *job),
	     TP_ARGS(job)
);

/* It hit the job timeout while running; the engine reset ended it. */
DEFINE_EVENT(npu_job, npu_job_timeout,
	     TP_PROTO(const struct npu_job *job),
	     TP_ARGS(job)
);

#endif /* __NPU_TRACE_H__ */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE npu_trace
#include <trace/define_trace.h>
