/* SPDX-License-Identifier: MIT */
/*
 * What a request has sent its client so far: the text pieces joined and
 * their token ids, in order, for the Finished signal (a client that does not
 * follow the Tokens signals gets the whole reply there).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct generated {
        char *text; /* NUL-terminated */
        size_t len, cap;
        uint32_t *ids;
        size_t n_ids, cap_ids;
};

int generated_add(struct generated *g, uint32_t id, const char *piece);
void generated_done(struct generated *g);
