/* SPDX-License-Identifier: MIT */
/*
 * Continuous batching over one model. Requests wait in a queue until the KV
 * pool can hold them (prompt plus max_tokens, reserved at admission, so a
 * running request never runs out of cache); every step then runs one token
 * of each decoding request and chunks of the prompts being prefilled through
 * the model together. Prompt blocks go to the prefix cache, so a prompt that
 * starts like an earlier one of the same uid shares its blocks.
 *
 * Who runs, and who gives way, is decided in one place: fairness.c (per-uid
 * shares of the running slots and of the KV pool, round robin across uids).
 * A running request may be paused (it keeps its KV) or pre-empted (its KV is
 * freed, and its tokens are computed again when it is admitted again); a
 * request whose consumer does not keep up is paused until it does.
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

/* Why an admitted request does not run now (bits). */
enum sched_pause {
        SCHED_PAUSE_FAIR = 1 << 0,   /* its uid is over its share of the running slots while another waits */
        SCHED_PAUSE_STREAM = 1 << 1, /* its consumer has not taken the tokens sent so far */
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

/* One uid with requests in this scheduler. */
struct sched_tenant {
        struct sched_tenant *next;
        uint32_t uid;
        int32_t n_requests; /* queued, running or paused */
        int32_t n_queued;
        int32_t n_running;
        int32_t n_paused;
        int32_t blocks;     /* KV blocks its admitted requests hold */
        uint64_t last_turn; /* when it last got a slot (round robin among equals) */
};

struct sched_request {
        struct sched_request *prev, *next;
        struct scheduler *sched;
        uint32_t uid;      /* whose it is: the prefix cache's salt, and the unit of fairness */
        struct sched_tenant *tenant;
        const void *owner; /* within a uid, requests of one owner (connection) take turns with others' */
        void *userdata;
        enum sched_state state;
        enum sched_stop stop;
        unsigned pause;    /* enum sched_pause bits, while admitted */
        bool stream_held;  /* SCHED_PAUSE_STREAM asked for, whatever the state */
        char *error;
        int32_t *tokens; /* prompt (with any history), then the generated tokens */
        int32_t n_tokens, cap_tokens;
        int32_t n_prompt;
        int32_t n_cached; /* prompt positions that came from the prefix cache or a session */
        int32_t n_generated;
        int32_t max_tokens;
        uint32_t n_preempted;  /* times its KV was taken back (computed again after) */
        uint64_t preempted_at; /* the step it was last pre-empted in */
        uint64_t capped_at;    /* the step its uid's own KV cap last held it back in */
        bool admitted;         /* once (its counters are in the stats) */
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
        int32_t max_queue;        /* requests waiting; past it, a uid holding its share of the queue is refused */
        int32_t max_active_per_uid;  /* running requests of one uid; 0: only its fair share limits it */
        int32_t kv_percent_per_uid;  /* the most of the KV pool one uid may hold (1 to 100) */
};

struct sched_stats {
        uint64_t steps;
        uint64_t prompt_tokens;
        uint64_t cached_prompt_tokens;
        uint64_t generated_tokens;
        uint64_t recomputed_tokens; /* of pre-empted requests, computed again */
        uint64_t preemptions;
        uint64_t step_ns;
};

/* The step's pass; the engine's forward() unless a test replaces it. */
typedef int (*sched_forward_fn)(struct scheduler *s, const struct npu_batch *b, float *logits, struct npu_err *err);

struct scheduler {
        struct runtime *rt;
        struct prefix_cache *pc;
        struct sched_limits lim;
        struct sched_events ev;
        sched_forward_fn forward;
        void *forward_data;
        struct sched_request *queue_head, *queue_tail; /* oldest first */
        struct sched_request *active_head, *active_tail;
        int32_t n_queued, n_active; /* n_active: running or paused */
        int32_t n_running;
        struct sched_tenant *tenants;
        uint64_t clock; /* steps prepared */
        uint64_t turns; /* slots handed out (the tenants' round robin) */
        /* the step */
        bool running;
        struct npu_batch batch;
        int32_t *b_tokens, *b_pos;
        struct kv_seq **b_seqs;
        uint8_t *b_want;
        struct sched_request **b_req; /* per batch token */
        struct sched_request **step_reqs; /* each request in the step once */
        struct sched_request **b_order;   /* the prefill order of a step */
        int32_t n_step_reqs;
        int32_t n_logit_rows;
        float *logits;
        int32_t logits_rows; /* max_active when it was made: the most rows a step asks for */
        uint64_t t_step;
        struct sched_stats stats;
};

int scheduler_new(struct runtime *rt, const struct sched_limits *lim, const struct sched_events *ev,
                  struct scheduler **ret, struct npu_err *err);
/* Finishes every request with reason stop first. */
void scheduler_free(struct scheduler *s, enum sched_stop stop);
/* New limits (a reload); they apply from the next step. -EINVAL when out of range. */
int scheduler_set_limits(struct scheduler *s, const struct sched_limits *lim, struct npu_err *err);

/*
 * Creates a request of uid for tokens (copied). seq, when not NULL, holds KV
 * for a prefix of tokens (a session's history) and is moved into the
 * request. -E2BIG: the prompt does not fit the context; -ENOSPC: the
 * request could never fit the KV pool (or the share a uid may hold);
 * -EBUSY: the queue is full and uid holds its share of it; -EINVAL: bad
 * parameters.
 */
int sched_submit(struct scheduler *s, const int32_t *tokens, int32_t n, const struct sched_params *p, uint32_t uid,
                 const void *owner, struct kv_seq *seq, struct sched_request **ret, struct npu_err *err);
/* Stops a request: at once, or at the end of the running step if it is in it. */
void sched_cancel(struct sched_request *r, enum sched_stop stop);
/* Frees a finished request. */
void sched_request_free(struct sched_request *r);
/*
 * A finished request, kept for its counters and timings: its tokens, its
 * unsent pieces and its KV table go (its sampler went when it finished).
 */
void sched_request_shrink(struct sched_request *r);
/* Holds a request back (its consumer is behind) or lets it go on; it keeps its KV while held. */
void sched_hold_stream(struct sched_request *r, bool hold);

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
/* KV blocks a request needs in all (its prompt or history, and what is left to generate). */
int32_t sched_request_blocks(const struct scheduler *s, const struct sched_request *r);

const char *sched_stop_name(enum sched_stop stop);
const char *sched_state_name(enum sched_state state);

/* --- for fairness.c: the mechanics it decides with --- */

/* Frees blocks (cache, idle sessions, KV of queued requests other than for_r) until need are free. */
bool sched_make_room(struct scheduler *s, const struct sched_request *for_r, int32_t need);
/* Queued to running: reserves its KV; -ENOSPC when the pool cannot hold it now (nothing changes). */
int sched_admit(struct scheduler *s, struct sched_request *r);
void sched_pause(struct sched_request *r, enum sched_pause why);
void sched_resume(struct sched_request *r, enum sched_pause why);
/* Running or paused to queued: its KV goes back to the pool; it is computed again when admitted. */
void sched_preempt(struct sched_request *r);
/* KV blocks held by a tenant's admitted requests (running or paused; a queued request's KV is anyone's). */
int32_t sched_tenant_blocks(const struct scheduler *s, const struct sched_tenant *t);
