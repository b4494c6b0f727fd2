/* SPDX-License-Identifier: MIT */
/*
 * Who is calling: a client is one bus connection (a unique name) and its
 * uid; a user is one uid with all its connections. Both only index what
 * they own (the requests and sessions live in their model) and count it for
 * the limits; neither frees anything. When a connection leaves the bus, the
 * server closes what its client indexes, then the client.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

struct server;
struct request;
struct session;
struct npud_config;

struct user {
        struct user *next;
        uid_t uid;
        int32_t n_clients;
        int32_t n_requests; /* unfinished, over all its connections */
        int32_t n_sessions;
        /* of its finished requests (kept while npud runs, for GetStats) */
        uint64_t prompt_tokens, cached_prompt_tokens, generated_tokens;
};

struct client {
        struct client *next;
        struct server *srv;
        char *name; /* unique bus name */
        uid_t uid;
        struct user *user;
        /* what it owns, oldest first */
        struct request *requests_head, *requests_tail;
        struct session *sessions_head, *sessions_tail;
        int32_t n_requests;      /* unfinished */
        int64_t n_prompt_tokens; /* prompt tokens of unfinished requests */
        int32_t n_sessions;
        int32_t n_finished;      /* finished requests still on the bus */
        /*
         * Streaming: tokens sent to the connection, and how many of them it
         * has read for sure (a Peer.Ping it answered was behind them). Past
         * max_unread_tokens_per_client unread, its requests are held (they
         * keep their KV) until an answer comes.
         */
        uint64_t sent, read;
        uint64_t ping_mark; /* sent when the ping in flight went out */
        sd_bus_slot *ping;
};

/* The caller of m: found, or made (its uid asked of the bus once). */
int clients_get(struct server *srv, sd_bus_message *m, struct client **ret, sd_bus_error *error);
struct client *clients_find(struct server *srv, const char *name);
/* The caller's uid, without making a client. */
int bus_message_uid(sd_bus_message *m, uid_t *ret);
/* Forgets a client that indexes nothing (its uid is asked again if it comes back). */
void client_maybe_forget(struct client *c);
void client_free(struct client *c);
/* Every client, then every user. */
void clients_free_all(struct server *srv);

/* Limits of one connection and one uid, checked before a request or a session is made. */
int client_check_request(const struct client *c, const struct npud_config *cfg, sd_bus_error *error);
/* r (counted already) with a prompt of n_prompt tokens. */
int client_check_prompt(const struct client *c, const struct npud_config *cfg, const struct request *r,
                        int64_t n_prompt, sd_bus_error *error);
int client_check_session(const struct client *c, const struct npud_config *cfg, sd_bus_error *error);

/* The index: requests and sessions report their changes here. */
void client_add_request(struct client *c, struct request *r);
void client_set_prompt(struct client *c, struct request *r, int32_t n_prompt);
void client_request_finished(struct client *c, struct request *r);
void client_remove_request(struct client *c, struct request *r);
void client_add_session(struct client *c, struct session *s);
void client_remove_session(struct client *c, struct session *s);
/* The oldest finished request of c, or NULL. */
struct request *client_oldest_finished(const struct client *c);

/* Streaming: may n more tokens go to c now? (If not, a ping is on its way to find out when.) */
bool client_may_send(struct client *c, size_t n);
/* n tokens went to c. */
void client_sent(struct client *c, size_t n);
