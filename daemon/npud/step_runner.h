/* SPDX-License-Identifier: MIT */
/*
 * Runs a scheduler step's forward pass on a thread of its own, so the event
 * loop keeps answering the bus; the loop hears of the end through an eventfd.
 */
#pragma once

#include <systemd/sd-event.h>

#include "scheduler.h"

struct step_runner;

typedef void (*step_done_fn)(struct scheduler *s, int r, const char *error, void *userdata);

int step_runner_new(sd_event *e, step_done_fn done, void *userdata, struct step_runner **ret);
void step_runner_free(struct step_runner *sr);
bool step_runner_busy(const struct step_runner *sr);
/* Runs sched_step_run(s) on the thread; done() is called from the event loop afterwards. */
void step_runner_start(struct step_runner *sr, struct scheduler *s);
