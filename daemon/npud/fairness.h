/* SPDX-License-Identifier: MIT */
/*
 * Per-uid fairness of one scheduler: every decision of who runs, who waits
 * and who gives way is made here.
 *
 * - Submission: a request that could never fit the pool, or the share of it
 *   one uid may hold (kv_percent_per_uid), is refused for good; a full
 *   queue refuses only a uid that holds its share of it. Nobody is refused
 *   because of another uid's load.
 * - Slots: among uids with work waiting, the one running the fewest requests
 *   goes first (the longest unserved among equals), and within a uid the
 *   connection running the fewest. While another uid waits for a slot, a
 *   uid running more than its share (max_active / uids with work) and at
 *   least two more than the waiting uid has its newest running request
 *   paused; it keeps its KV and resumes when the share allows.
 * - KV: a request that does not fit takes first what nobody uses (the
 *   prefix cache's idle blocks, idle sessions, KV of queued requests), then
 *   the KV of requests held back for a slow consumer; then, if its uid with
 *   it stays within its share of the pool (pool / uids with requests), the
 *   KV of uids holding more than their share, newest request first: those
 *   are pre-empted and computed again later. The pool only moves towards
 *   even shares, so nothing thrashes, and a new uid's request that fits its
 *   share starts at the next step, whatever another uid holds.
 * - A request that still does not fit holds the line: no other request is
 *   admitted before it (it would take the room it waits for), except that
 *   of a uid with nothing admitted that asks for no more than its share. A
 *   request larger than its uid's share may so wait while other uids use
 *   theirs.
 * - Prefill chunks of a step go round robin across uids.
 */
#pragma once

#include "scheduler.h"

/* Submission checks for a request of uid needing need blocks in all: 0, -ENOSPC or -EBUSY (err says why). */
int fair_check_submit(const struct scheduler *s, uint32_t uid, int32_t need, struct npu_err *err);
/* May the paused request r run again now (a free slot, its uid under its cap)? */
bool fair_may_run(const struct scheduler *s, const struct sched_request *r);
/* Before a step: pauses, resumes, pre-empts and admits. */
void fair_schedule(struct scheduler *s);
/* The running requests in prefill, in the order their chunks go into the step (n_order of them). */
void fair_prefill_order(const struct scheduler *s, struct sched_request **order, int32_t *n_order);
