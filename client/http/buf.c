/* SPDX-License-Identifier: MIT */
/* A growable byte buffer, always NUL-terminated after its bytes. */
#include <stdarg.h>

#include "gateway.h"

static int buf_reserve(struct buf *b, size_t extra)
{
        size_t need;

        if (!size_add(b->len, extra, &need) || !size_add(need, 1, &need))
                return -ENOMEM;
        if (need <= b->cap)
                return 0;
        size_t cap = MAX(need, b->cap * 2);
        cap = MAX(cap, (size_t)256);
        char *d = realloc(b->data, cap);
        if (!d)
                return -ENOMEM;
        b->data = d;
        b->cap = cap;
        return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
        int r = buf_reserve(b, n);
        if (r < 0)
                return r;
        if (n)
                memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = 0;
        return 0;
}

int buf_appendf(struct buf *b, const char *fmt, ...)
{
        va_list ap;
        int n, r;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        r = buf_reserve(b, (size_t)n);
        if (r < 0)
                return r;
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
        b->len += (size_t)n;
        return 0;
}

void buf_consume(struct buf *b, size_t n)
{
        if (n >= b->len) {
                b->len = 0;
        } else {
                memmove(b->data, b->data + n, b->len - n);
                b->len -= n;
        }
        if (b->data)
                b->data[b->len] = 0;
}

void buf_done(struct buf *b)
{
        free(b->data);
        *b = (struct buf) {};
}

int64_t now_unix(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec;
}
