/* SPDX-License-Identifier: MIT */
/* A request's text and token ids as sent (see generated.h). */
#include "generated.h"
#include "util.h"

int generated_add(struct generated *g, uint32_t id, const char *piece)
{
        size_t n = strlen(piece);

        if (g->n_ids == g->cap_ids) {
                size_t cap = MAX(g->cap_ids * 2, (size_t)32);
                uint32_t *v = reallocarray(g->ids, cap, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                g->ids = v;
                g->cap_ids = cap;
        }
        if (g->len + n + 1 > g->cap) {
                size_t cap = MAX(g->cap * 2, g->len + n + 1);
                char *t = realloc(g->text, MAX(cap, (size_t)256));
                if (!t)
                        return -ENOMEM;
                g->text = t;
                g->cap = MAX(cap, (size_t)256);
        }
        memcpy(g->text + g->len, piece, n + 1);
        g->len += n;
        g->ids[g->n_ids++] = id;
        return 0;
}

void generated_done(struct generated *g)
{
        free(g->text);
        free(g->ids);
        *g = (struct generated) {};
}
