/* SPDX-License-Identifier: MIT */
/*
 * A thread that runs jobs in order off the event loop (tokenizing a prompt,
 * loading a model), so the loop keeps answering the bus. Each job's run()
 * goes on the thread; its done() comes back on the event loop afterwards.
 */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

struct worker;

struct worker_job {
        struct worker_job *next;
        /* on the thread: touches only what the job owns */
        void (*run)(struct worker_job *job);
        /* on the event loop, once: cancelled when the worker was freed before run() (the job is freed here) */
        void (*done)(struct worker_job *job, bool cancelled);
};

int worker_new(sd_event *e, const char *name, struct worker **ret);
/* Waits for the running job; jobs not started get done(cancelled). */
void worker_free(struct worker *w);
void worker_queue(struct worker *w, struct worker_job *job);
/* Jobs queued or running. */
unsigned worker_pending(const struct worker *w);
