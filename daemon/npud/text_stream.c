/* SPDX-License-Identifier: MIT */
#include "text_stream.h"
#include "utf8.h"

#define REPLACEMENT_CHAR "\xEF\xBF\xBD"

int piece_queue_push(struct piece_queue *q, int32_t id, const char *text, size_t len)
{
        char *t;

        if (q->n == q->cap) {
                size_t cap = MAX(q->cap * 2, (size_t)8);
                struct token_piece *v = realloc(q->v, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                q->v = v;
                q->cap = cap;
        }
        t = strndup(text, len);
        if (!t)
                return -ENOMEM;
        q->v[q->n++] = (struct token_piece) { .id = id, .text = t };
        return 0;
}

void piece_queue_clear(struct piece_queue *q)
{
        for (size_t i = 0; i < q->n; i++)
                free(q->v[i].text);
        q->n = 0;
}

void piece_queue_done(struct piece_queue *q)
{
        piece_queue_clear(q);
        free(q->v);
        *q = (struct piece_queue) {};
}

int text_stream_init(struct text_stream *ts, char *const *stops)
{
        *ts = (struct text_stream) {};
        for (size_t i = 0; stops && stops[i]; i++) {
                size_t n = strlen(stops[i]);
                if (n == 0 || n > TEXT_STREAM_MAX_STOP_LEN || i >= TEXT_STREAM_MAX_STOPS ||
                    !utf8_valid(stops[i], n)) {
                        text_stream_done(ts);
                        return -EINVAL;
                }
                char **v = realloc(ts->stops, (ts->n_stops + 1) * sizeof(char *));
                if (!v) {
                        text_stream_done(ts);
                        return -ENOMEM;
                }
                ts->stops = v;
                ts->stops[ts->n_stops] = strdup(stops[i]);
                if (!ts->stops[ts->n_stops]) {
                        text_stream_done(ts);
                        return -ENOMEM;
                }
                ts->n_stops++;
                ts->max_stop = MAX(ts->max_stop, n);
        }
        if (ts->max_stop > 1) {
                ts->tail = malloc(ts->max_stop);
                if (!ts->tail) {
                        text_stream_done(ts);
                        return -ENOMEM;
                }
        }
        return 0;
}

void text_stream_done(struct text_stream *ts)
{
        for (size_t i = 0; i < ts->n_stops; i++)
                free(ts->stops[i]);
        free(ts->stops);
        free(ts->tail);
        piece_queue_done(&ts->held);
        *ts = (struct text_stream) {};
}

/* Valid UTF-8 from the carried partial character and new bytes; an unfinished last character is carried on. */
static int assemble(struct text_stream *ts, const char *bytes, size_t len, char **ret, size_t *ret_len)
{
        size_t n = ts->n_partial + len, o = 0;
        _cleanup_free_ uint8_t *in = malloc(n + 1);
        _cleanup_free_ char *out = malloc(n * 3 + 1);

        if (!in || !out)
                return -ENOMEM;
        memcpy(in, ts->partial, ts->n_partial);
        memcpy(in + ts->n_partial, bytes, len);
        ts->n_partial = 0;
        for (size_t i = 0; i < n;) {
                int l = utf8_sequence_length((const char *)in + i, n - i);
                if (l == 0) {
                        memcpy(ts->partial, in + i, n - i);
                        ts->n_partial = n - i;
                        break;
                }
                if (l < 0) {
                        memcpy(out + o, REPLACEMENT_CHAR, 3);
                        o += 3;
                        i++;
                        continue;
                }
                memcpy(out + o, in + i, l);
                o += l;
                i += l;
        }
        out[o] = 0;
        *ret = TAKE_PTR(out);
        *ret_len = o;
        return 0;
}

static void remember_sent(struct text_stream *ts, const char *text, size_t len)
{
        size_t keep;

        if (ts->max_stop <= 1)
                return;
        keep = ts->max_stop - 1;
        if (len >= keep) {
                memcpy(ts->tail, text + len - keep, keep);
                ts->n_tail = keep;
                return;
        }
        size_t old = MIN(ts->n_tail, keep - len);
        memmove(ts->tail, ts->tail + ts->n_tail - old, old);
        memcpy(ts->tail + old, text, len);
        ts->n_tail = old + len;
}

/* Sends the first n held pieces; the piece at index n is cut to cut bytes when cut >= 0. */
static int release_held(struct text_stream *ts, size_t n, struct piece_queue *out)
{
        for (size_t i = 0; i < n; i++) {
                struct token_piece *p = &ts->held.v[i];
                int r = piece_queue_push(out, p->id, p->text, strlen(p->text));
                if (r < 0)
                        return r;
                remember_sent(ts, p->text, strlen(p->text));
                free(p->text);
        }
        if (n > 0 && ts->held.n > n)
                memmove(ts->held.v, ts->held.v + n, (ts->held.n - n) * sizeof(*ts->held.v));
        ts->held.n -= n;
        return 0;
}

static bool is_prefix_of_a_stop(const struct text_stream *ts, const char *s, size_t n)
{
        for (size_t i = 0; i < ts->n_stops; i++)
                if (strlen(ts->stops[i]) > n && memcmp(ts->stops[i], s, n) == 0)
                        return true;
        return false;
}

static int check_stops(struct text_stream *ts, struct piece_queue *out)
{
        size_t n = ts->n_tail, match = SIZE_MAX, hold_from;
        _cleanup_free_ char *s = NULL;

        for (size_t i = 0; i < ts->held.n; i++)
                n += strlen(ts->held.v[i].text);
        s = malloc(n + 1);
        if (!s)
                return -ENOMEM;
        if (ts->n_tail > 0)
                memcpy(s, ts->tail, ts->n_tail);
        n = ts->n_tail;
        for (size_t i = 0; i < ts->held.n; i++) {
                size_t l = strlen(ts->held.v[i].text);
                memcpy(s + n, ts->held.v[i].text, l);
                n += l;
        }
        s[n] = 0;

        for (size_t i = 0; i < ts->n_stops; i++) {
                const char *m = memmem(s, n, ts->stops[i], strlen(ts->stops[i]));
                if (m && (size_t)(m - s) < match)
                        match = m - s;
        }
        if (match != SIZE_MAX) {
                /* send what comes before the stop string, cutting the piece it starts in */
                size_t off = ts->n_tail, i = 0;
                for (; i < ts->held.n; i++) {
                        size_t l = strlen(ts->held.v[i].text);
                        if (off + l > match) {
                                ts->held.v[i].text[match > off ? match - off : 0] = 0;
                                i++;
                                break;
                        }
                        off += l;
                }
                int r = release_held(ts, i, out);
                if (r < 0)
                        return r;
                piece_queue_clear(&ts->held);
                return 1;
        }

        /* the earliest point from which the text could still grow into a stop string */
        hold_from = n;
        for (size_t k = 0; k < n; k++)
                if (is_prefix_of_a_stop(ts, s + k, n - k)) {
                        hold_from = k;
                        break;
                }
        size_t off = ts->n_tail, release = 0;
        for (; release < ts->held.n; release++) {
                off += strlen(ts->held.v[release].text);
                if (off > hold_from)
                        break;
        }
        /* a token whose character is unfinished stays until it is */
        if (ts->n_partial && release == ts->held.n && release > 0)
                release--;
        return release_held(ts, release, out);
}

int text_stream_push(struct text_stream *ts, int32_t id, const char *bytes, size_t len, struct piece_queue *out)
{
        _cleanup_free_ char *text = NULL;
        size_t n;
        int r;

        r = assemble(ts, bytes, len, &text, &n);
        if (r < 0)
                return r;
        r = piece_queue_push(&ts->held, id, text, n);
        if (r < 0)
                return r;
        if (ts->n_stops == 0)
                return release_held(ts, ts->n_partial ? ts->held.n - 1 : ts->held.n, out);
        return check_stops(ts, out);
}

int text_stream_finish(struct text_stream *ts, struct piece_queue *out)
{
        if (ts->n_partial && ts->held.n > 0) {
                struct token_piece *p = &ts->held.v[ts->held.n - 1];
                size_t l = strlen(p->text);
                char *t = realloc(p->text, l + sizeof(REPLACEMENT_CHAR));
                if (!t)
                        return -ENOMEM;
                memcpy(t + l, REPLACEMENT_CHAR, sizeof(REPLACEMENT_CHAR));
                p->text = t;
        }
        ts->n_partial = 0;
        return release_held(ts, ts->held.n, out);
}
