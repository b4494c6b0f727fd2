/* SPDX-License-Identifier: MIT */
/*
 * A chat session's conversation: its messages (the system message, then
 * each finished turn's user message and reply), rendered through its chat
 * template for every turn. The running turn's user message waits apart
 * until the turn ends, so a turn that never ran leaves the messages as
 * they were.
 */
#pragma once

#include "chat_template.h"
#include "scheduler.h"

struct session_chat {
        struct chat_template tmpl;
        struct chat_message *m; /* content owned */
        size_t n, cap;
        size_t n_system; /* the messages Reset keeps: the system message, or none */
        char *pending;   /* the running turn's user message */
        size_t pending_len;
};

/* Takes t; system (NULL or "": none) becomes the first message. */
int session_chat_new(struct chat_template *t, const char *system, struct session_chat **ret);
void session_chat_free(struct session_chat *ch);
/* The messages and the user's new one (kept as the pending turn), rendered with the assistant's turn opened. */
int session_chat_render(struct session_chat *ch, const char *text, size_t len, struct chat_prompt *ret,
                        struct npu_err *err);
/* The turn ended: its user message and the reply join the messages. */
int session_chat_finish_turn(struct session_chat *ch, const char *reply, size_t len);
void session_chat_reset(struct session_chat *ch);
/*
 * The reply as its client received it: the generated tokens of sr through a
 * text stream like the request's (the same U+FFFD for broken characters, the
 * text cut before a stop string).
 */
int session_chat_reply_text(const struct npu_vocab *v, const struct sched_request *sr, char **ret);
