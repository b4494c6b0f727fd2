/* SPDX-License-Identifier: MIT */
/*
 * A request: one generation of a session (Generate makes a session of one
 * turn for it). It is on the bus as /org/npud/Inference1/request/N for its
 * owner: its tokens go out as unicast signals, its end as Finished, and once
 * finished it stays (for its properties) until its client keeps more than
 * max_finished_kept, or it is closed.
 *
 * Its session owns it and frees it (session_drop_request); while the
 * scheduler still has it in a running step, it is only cancelled, and freed
 * when the step ends.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "generated.h"
#include "scheduler.h"

struct chat_prompt;
struct session;
struct tokenize_job;
struct prompt_arg;
struct client;
struct served_model;
struct prop_snapshot;

struct request {
        struct request *prev, *next;               /* in its session */
        struct request *client_prev, *client_next; /* in its client's index */
        struct session *session;
        struct client *client; /* NULL once it is closed or its owner left */
        uint64_t id;
        char *path;
        struct sched_request *sr;
        int32_t n_prompt;
        /* where its steps ran, and the device trouble they met */
        uint32_t steps_npu, steps_cpu;
        uint32_t device_faults, device_retries, cpu_fallbacks;
        bool finished;
        bool cancel_requested;
        bool dropped; /* closed: freed as soon as the scheduler lets go */
        bool freeing; /* request_free is cancelling it */
        enum sched_stop stop;
        /* before it is queued: its prompt being tokenized, the call to answer, its parameters */
        struct tokenize_job *tokenizing;
        sd_bus_message *call;
        struct sched_params params;
        char **stops;
        struct generated sent; /* the pieces sent, for Finished ... */
        size_t n_sent;         /* ... their number ... */
        bool sent_incomplete;  /* ... and whether sent lacks some (out of memory) */
        struct prop_snapshot *published; /* its properties as its owner was last told */
        int64_t keep_alive_us; /* its model stays this long after it (keep_alive.h) */
};

/* A request of session s for owner c (not yet submitted). */
int request_new(struct session *s, struct client *c, struct request **ret);
/*
 * Starts r for the Generate or Send call: text prompts are tokenized off the
 * event loop first (too long by their bytes alone: PromptTooLong at once).
 * 1: call is answered (now or when the prompt is queued); < 0: error is set,
 * and the caller drops r.
 */
int request_start(struct request *r, sd_bus_message *call, const struct prompt_arg *pa, bool add_bos,
                  const struct sched_params *p, sd_bus_error *error);
/*
 * The same for a Chat call or a chat session's turn: the rendered chat is
 * tokenized off the event loop, control tokens read only outside its
 * messages' text.
 */
int request_start_chat(struct request *r, sd_bus_message *call, const struct chat_prompt *chat, bool add_bos,
                       const struct sched_params *p, sd_bus_error *error);
/* Hands the prompt (and KV for a prefix of it, moved) to the model's scheduler. */
int request_submit(struct request *r, const int32_t *tokens, int32_t n, const struct sched_params *p,
                   struct kv_seq *seq, sd_bus_error *error);
void request_cancel(struct request *r, enum sched_stop stop);
/* Frees r now, or marks it to be freed when the running step ends; only its session calls this. */
void request_free(struct request *r);

/* From the scheduler, through the model: new pieces, and the end. */
void request_on_tokens(struct request *r);
void request_on_finished(struct request *r);
/* Sends the pieces waiting (force: whatever the bus' queue). */
void request_flush(struct request *r, bool force);
struct served_model *request_model(const struct request *r);
