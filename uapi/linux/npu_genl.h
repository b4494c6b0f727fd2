/* SPDX-License-Identifier: GPL-2.0-only WITH Linux-syscall-note */
/*
 * Copyright (c) 2026 The npud authors
 */

#ifndef _UAPI_LINUX_NPU_GENL_H
#define _UAPI_LINUX_NPU_GENL_H

/**
 * DOC: npu generic netlink family
 *
 * Family %NPU_GENL_NAME, version %NPU_GENL_VERSION. %NPU_GENL_CMD_GET_DEVICE
 * with NLM_F_DUMP lists every npu device with its counters; with
 * %NPU_GENL_A_DEV_INDEX it returns one device. Events are multicast as
 * %NPU_GENL_CMD_EVENT messages to two groups:
 *
 * - %NPU_GENL_MCGRP_EVENTS, open to every user: an event about a context
 *   names its owner only by %NPU_GENL_A_CLIENT_ID, the DRM client id of
 *   the owner's open file, which the owner reads in its fdinfo
 *   ("drm-client-id");
 * - %NPU_GENL_MCGRP_EVENTS_ADMIN, joined only with CAP_NET_ADMIN: the same
 *   events, with the pid of the context's creator (%NPU_GENL_A_PID).
 */

#define NPU_GENL_NAME		"npu"
#define NPU_GENL_VERSION	1
#define NPU_GENL_MCGRP_EVENTS	"events"
#define NPU_GENL_MCGRP_EVENTS_ADMIN	"events-admin"

/**
 * enum npu_genl_cmd - commands
 * @NPU_GENL_CMD_UNSPEC: invalid.
 * @NPU_GENL_CMD_GET_DEVICE: query one device or dump all (reply carries
 *	the device and counter attributes).
 * @NPU_GENL_CMD_EVENT: an event notification (kernel to user only).
 * @__NPU_GENL_CMD_MAX: internal.
 */
enum npu_genl_cmd {
	NPU_GENL_CMD_UNSPEC,
	NPU_GENL_CMD_GET_DEVICE,
	NPU_GENL_CMD_EVENT,
	__NPU_GENL_CMD_MAX,
};

#define NPU_GENL_CMD_MAX (__NPU_GENL_CMD_MAX - 1)

/**
 * enum npu_genl_event - values of %NPU_GENL_A_EVENT
 * @NPU_GENL_EVENT_UNSPEC: invalid.
 * @NPU_GENL_EVENT_JOB_TIMEOUT: a job hit the timeout (ctx id, client id,
 *	seqno).
 * @NPU_GENL_EVENT_RESET: the engine was reset.
 * @NPU_GENL_EVENT_CTX_FAULT: a context faulted (ctx id, client id, seqno).
 * @NPU_GENL_EVENT_DEVICE_ADDED: a device appeared.
 * @NPU_GENL_EVENT_DEVICE_REMOVED: a device is going away.
 */
enum npu_genl_event {
	NPU_GENL_EVENT_UNSPEC,
	NPU_GENL_EVENT_JOB_TIMEOUT,
	NPU_GENL_EVENT_RESET,
	NPU_GENL_EVENT_CTX_FAULT,
	NPU_GENL_EVENT_DEVICE_ADDED,
	NPU_GENL_EVENT_DEVICE_REMOVED,
};

/**
 * enum npu_genl_attr - attributes
 * @NPU_GENL_A_UNSPEC: invalid.
 * @NPU_GENL_A_PAD: padding for 64-bit attributes.
 * @NPU_GENL_A_DEV_INDEX: u32, device index (the N of the platform device
 *	npu.N).
 * @NPU_GENL_A_DEV_NAME: string, device name.
 * @NPU_GENL_A_ACCEL_MINOR: u32, N of /dev/accel/accelN.
 * @NPU_GENL_A_NUM_ENGINES: u32, number of engines.
 * @NPU_GENL_A_JOBS_SUBMITTED: u64, jobs submitted.
 * @NPU_GENL_A_JOBS_COMPLETED: u64, jobs completed successfully.
 * @NPU_GENL_A_JOBS_FAILED: u64, jobs that ended in error or abort.
 * @NPU_GENL_A_JOBS_TIMEDOUT: u64, jobs that hit the timeout.
 * @NPU_GENL_A_RESETS: u64, engine resets.
 * @NPU_GENL_A_BUSY_NS: u64, time the engine spent executing, in ns.
 * @NPU_GENL_A_BO_BYTES: u64, bytes in live BOs.
 * @NPU_GENL_A_BO_COUNT: u32, live BOs.
 * @NPU_GENL_A_CTX_COUNT: u32, live contexts.
 * @NPU_GENL_A_EVENT: u32, an &enum npu_genl_event value.
 * @NPU_GENL_A_CTX_ID: u32, context id of an event.
 * @NPU_GENL_A_SEQNO: u64, job sequence number of an event.
 * @NPU_GENL_A_PID: u32, pid of the process that created the context; only
 *	on the %NPU_GENL_MCGRP_EVENTS_ADMIN group.
 * @NPU_GENL_A_CLIENT_ID: u64, DRM client id of the open file that owns the
 *	context of an event (the "drm-client-id" of that file's fdinfo).
 * @__NPU_GENL_A_MAX: internal.
 */
enum npu_genl_attr {
	NPU_GENL_A_UNSPEC,
	NPU_GENL_A_PAD,
	NPU_GENL_A_DEV_INDEX,
	NPU_GENL_A_DEV_NAME,
	NPU_GENL_A_ACCEL_MINOR,
	NPU_GENL_A_NUM_ENGINES,
	NPU_GENL_A_JOBS_SUBMITTED,
	NPU_GENL_A_JOBS_COMPLETED,
	NPU_GENL_A_JOBS_FAILED,
	NPU_GENL_A_JOBS_TIMEDOUT,
	NPU_GENL_A_RESETS,
	NPU_GENL_A_BUSY_NS,
	NPU_GENL_A_BO_BYTES,
	NPU_GENL_A_BO_COUNT,
	NPU_GENL_A_CTX_COUNT,
	NPU_GENL_A_EVENT,
	NPU_GENL_A_CTX_ID,
	NPU_GENL_A_SEQNO,
	NPU_GENL_A_PID,
	NPU_GENL_A_CLIENT_ID,
	__NPU_GENL_A_MAX,
};

#define NPU_GENL_A_MAX (__NPU_GENL_A_MAX - 1)

#endif /* _UAPI_LINUX_NPU_GENL_H */
