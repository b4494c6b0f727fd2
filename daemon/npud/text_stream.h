/* SPDX-License-Identifier: MIT */
/*
 * From generated token bytes to the text pieces a client receives: bytes are
 * assembled into valid UTF-8 (a character split over byte tokens goes out
 * with the token that completes it; invalid bytes become U+FFFD), and tokens
 * whose text might begin a stop string are held back until it is clear.
 * When a stop string appears, the text before it is sent and the rest is not.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define TEXT_STREAM_MAX_STOPS 8
#define TEXT_STREAM_MAX_STOP_LEN 256

struct token_piece {
        int32_t id;
        char *text;
};

struct piece_queue {
        struct token_piece *v;
        size_t n, cap;
};

int piece_queue_push(struct piece_queue *q, int32_t id, const char *text, size_t len);
void piece_queue_clear(struct piece_queue *q);
void piece_queue_done(struct piece_queue *q);

struct text_stream {
        char **stops;
        size_t n_stops;
        size_t max_stop;
        uint8_t partial[4]; /* the start of a character whose last bytes have not come yet */
        size_t n_partial;
        struct piece_queue held;
        char *tail; /* the last max_stop - 1 bytes of the text already sent */
        size_t n_tail;
};

/* stops: NULL-terminated or NULL. Each must be valid UTF-8 of 1..TEXT_STREAM_MAX_STOP_LEN bytes. */
int text_stream_init(struct text_stream *ts, char *const *stops);
void text_stream_done(struct text_stream *ts);

/* Adds a token's bytes; pieces ready to send go to out. Returns 1 when a stop string ended the text. */
int text_stream_push(struct text_stream *ts, int32_t id, const char *bytes, size_t len, struct piece_queue *out);
/* The end of generation: held pieces go out, an unfinished character as U+FFFD. */
int text_stream_finish(struct text_stream *ts, struct piece_queue *out);
