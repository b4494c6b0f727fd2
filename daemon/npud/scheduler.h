/* SPDX-License-Identifier: MIT */
/*
 * Continuous batching over one model. Requests wait in a queue until the KV
 * pool can hold them (prompt plus max_tokens, reserved at admission, so a
 * running request never runs out of cache); every step then runs one token
 * of each decoding request and chunks of the prompts being prefilled through
 * the model together. Prompt blocks go to the prefix cache, so a prompt that
 * starts like an earlier one shares its blocks.
 *
 * A step is prepared and completed on the caller's thread; forward() in
 * between may run on another thread, and touches only the step's sequences.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "prefix_cache.h"
#include "runtime.h"
#include "text_stream.h"
#include "token_logprobs.h"

enum sched_state {
        SCHED_QUEUED,
        SCHED_PREFILL,
        SCHED_DECODE,
        SCHED_FINISHED,
};

enum sched_stop {
        SCHED_STOP_NONE,
        SCHED_STOP_EOS,
        SCHED_STOP_LENGTH,
        SCHED_STOP_STRING,
        SCHED_STOP_CONTEXT,
        SCHED_STOP_CANCELLED,
        SCHED_STOP_UNLOADED,
        SCHED_STOP_SHUTDOWN,
        SCHED_STOP_ERROR,
};

struct sched_params {
        int32_t max_tokens;
        struct sampler_params sampling;
        bool ignore_eos;
        char **stops; /* NULL-terminated, or NULL */
        bool logprobs;        /* keep each token's log-probability ... */
        int32_t top_logprobs; /* ... and this many of the most likely tokens with theirs */
        int64_t keep_alive_us; /* npud's, not the scheduler's: keep_alive.h (KEEP_ALIVE_DEFAULT: not given) */
};

struct scheduler;

struct sched_request {
        struct sched_request *prev, *next;
        struct scheduler *sched;
        uint32_t uid;      /* whose it is: the prefix cache's salt, and the unit of fairness */
        const void *owner; /* within a uid, requests of one owner (connection) take turns with others' */
        void *userdata;
        enum sched_state state;
        enum sched_stop stop;
        char *error;
        int32_t *tokens; /* prompt (with any history), then the generated tokens */
        int32_t n_tokens, cap_tokens;
        int32_t n_prompt;
        int32_t n_cached; /* prompt positions that came from the prefix cache or a session */
        int32_t n_generated;
        int32_t max_tokens;
        bool ignore_eos;
        bool keep_seq; /* leave seq in the request when it finishes (sessions) */
        bool cancel;
        struct kv_seq seq;
        struct sampler *smp;
        struct text_stream text;
        struct piece_queue out; /* pieces not yet sent */
        int32_t step_tokens; /* tokens in the running step */
        int32_t logits_row;
        uint64_t t_submit, t_admit, t_first, t_done; /* ns */
        struct token_logprobs logprobs;
};

struct sched_events {
        /* out holds new pieces (called after a step) */
        void (*tokens)(struct sched_request *r, void *userdata);
        /* the request finished; it is off the scheduler's lists */
        void (*finished)(struct sched_request *r, void *userdata);
        /* release up to n idle KV blocks held elsewhere (idle sessions); the number released */
        int32_t (*reclaim)(struct scheduler *s, int32_t n, void *userdata);
        void *userdata;
};

struct sched_limits {
        int32_t max_active;       /* requests decoding or prefilling at once */
        int32_t max_batch_tokens; /* tokens per step */
        int32_t prefill_chunk;    /* prompt tokens per request per step */
};

struct sched_stats {
        uint64_t steps;
        uint64_t prompt_tokens;
        uint64_t cached_prompt_tokens;
        uint64_t generated_tokens;
        uint64_t step_ns;
};

struct scheduler {
        struct runtime *rt;
        struct prefix_cache *pc;
        struct sched_limits lim;
        struct sched_events ev;
        struct sched_request *queue_head, *queue_tail;
        struct sched_request *active_head, *active_tail;
        int32_t n_queued, n_active;
        /* the step */
        bool running;
        struct npu_batch batch;
        int32_t *b_tokens, *b_pos;
        struct kv_seq **b_seqs;
        uint8_t *b_want;
        struct sched_request **b_req; /* per batch token */
        struct sched_request **step_reqs; /* each request in the step once */
        int32_t n_step_reqs;
        int32_t n_logit_rows;
        float *logits;
        uint64_t t_step;
        struct sched_stats stats;
};

int scheduler_new(struct runtime *rt, const struct sched_limits *lim, const struct sched_events *ev,
                  struct scheduler **ret, struct npu_err *err);
/* Finishes every request with reason stop first. */
void scheduler_free(struct scheduler *s, enum sched_stop stop);

/*
 * Creates a request for tokens (copied). seq, when not NULL, holds KV for a
 * prefix of tokens (a session's history) and is moved into the request.
 * -E2BIG: the prompt does not fit the context; -ENOSPC: the request could
 * never fit the KV pool; -EINVAL: bad parameters.
 */
int sched_submit(struct scheduler *s, const int32_t *tokens, int32_t n, const struct sched_params *p, uint32_t uid,
                 const void *owner, struct kv_seq *seq, struct sched_request **ret, struct npu_err *err);
/* Stops a request: at once, or at the end of the running step if it is in it. */
void sched_cancel(struct sched_request *r, enum sched_stop stop);
/* Frees a finished request. */
void sched_request_free(struct sched_request *r);

bool sched_has_work(const struct scheduler *s);
/* Admits what fits and builds the next batch; false when there is nothing to run. */
bool sched_step_prepare(struct scheduler *s);
/* Runs the prepared batch (the only part that may run on another thread). */
int sched_step_run(struct scheduler *s, struct npu_err *err);
/* Samples, streams and finishes after the step; r < 0 fails the step's requests. */
void sched_step_complete(struct scheduler *s, int r, const char *error);
/* prepare + run + complete; false when there was nothing to do. */
bool sched_step(struct scheduler *s);

/* KV blocks held by requests and sessions (not those only the prefix cache keeps). */
int32_t sched_kv_blocks_used(const struct scheduler *s);
int32_t sched_positions_needed(const struct scheduler *s, int32_t n_tokens, int32_t max_tokens);

const char *sched_stop_name(enum sched_stop stop);
const char *sched_state_name(enum sched_state state);
