/* SPDX-License-Identifier: MIT */
/*
 * A session: a conversation whose KV cache stays in npud between turns
 * (CreateSession: /org/npud/Inference1/session/N), or the one turn of a
 * Generate call (no object of its own). Its model owns it; it owns its
 * requests: the turn running or queued, and finished ones kept for their
 * properties. Each turn runs as a request over the whole history, starting
 * from the cached positions; an idle session's blocks may be reclaimed for
 * other work, and its next turn computes them again.
 *
 * A chat session (session_chat.h) keeps the conversation as messages: each
 * turn renders them through the template and runs from the longest prefix
 * of the cached tokens the rendering shares.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "scheduler.h"

struct served_model;
struct session_chat;
struct client;
struct request;
struct tokenize_job;
struct prop_snapshot;

struct session {
        struct session *prev, *next;               /* in its model */
        struct session *client_prev, *client_next; /* in its client's index (sessions on the bus only) */
        struct served_model *model;
        struct client *client; /* NULL once it is closed or its owner left */
        uid_t uid;
        uint64_t id;
        char *path; /* NULL: the one turn of a Generate call */
        struct sched_params defaults;
        char **default_stops;
        int32_t *history;
        int32_t n_history;
        int32_t n_system; /* history tokens of the system prompt */
        uint32_t turns;
        struct kv_seq seq; /* KV of a prefix of history; empty when reclaimed */
        bool evicted;
        uint64_t last_used;
        struct request *turn; /* running or queued */
        struct request *requests_head, *requests_tail;
        /* while its system prompt is tokenized: the CreateSession call to answer */
        struct tokenize_job *tokenizing;
        sd_bus_message *call;
        /* a chat session's messages; NULL: each turn's tokens are appended to the history */
        struct session_chat *chat;
        struct prop_snapshot *published; /* its properties as its owner was last told */
};

/* A conversation for c (on the bus once session_start answers); stops is taken. */
int session_new(struct served_model *m, struct client *c, const struct sched_params *defaults, char **stops,
                struct session **ret);
/*
 * Answers CreateSession with the session's path once its system prompt (NULL
 * or empty: none) is tokenized, off the event loop. 1: call is answered
 * (now or then); < 0: error is set, and the caller closes s.
 */
int session_start(struct session *s, sd_bus_message *call, const char *system_prompt, sd_bus_error *error);
/* The session of one Generate call. */
int session_new_single(struct served_model *m, struct client *c, struct session **ret);
bool session_is_single(const struct session *s);

/*
 * Starts a turn: its request, for the history and tokens (not yet submitted;
 * request_submit with session_turn_prompt follows).
 */
int session_start_turn(struct session *s, struct request **ret, sd_bus_error *error);
/*
 * The history followed by tokens, and the session's KV (moved into the
 * request by request_submit). A chat session's tokens are the whole
 * rendered conversation: its KV keeps the prefix they share with the history.
 */
int session_turn_prompt(struct session *s, const int32_t *tokens, int32_t n, int32_t **ret, int32_t *ret_n);
void session_reset(struct session *s);

/* From the request: its turn ended (the history and the KV come back to the session). */
void session_turn_finished(struct session *s, struct request *r);
/* Closes one request: frees it (and the session, for a Generate's). */
void session_drop_request(struct session *s, struct request *r);
/* Closes the session: its requests are cancelled and freed, then the session. */
void session_close(struct session *s);
/* Drops c's oldest finished requests until it keeps at most keep (c may be freed after). */
void sessions_trim_finished(struct client *c, int32_t keep);
/* Releases up to n idle KV blocks of the model's sessions, least recently used first; the number. */
int32_t sessions_reclaim(struct served_model *m, int32_t n);
