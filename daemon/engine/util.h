/* SPDX-License-Identifier: MIT */
#pragma once

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define DIV_ROUND_UP(a, b) (((a) + (b) - 1) / (b))
#define ALIGN_TO(x, a) (((x) + (a) - 1) / (a) * (a))

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _likely_(x) __builtin_expect(!!(x), 1)
#define _unlikely_(x) __builtin_expect(!!(x), 0)

/* Hand a pointer out of a _cleanup_ scope. */
#define TAKE_PTR(p)                          \
        ({                                   \
                __typeof__(p) _p_ = (p);     \
                (p) = NULL;                  \
                _p_;                         \
        })

#define TAKE_FD(fd)                          \
        ({                                   \
                int _fd_ = (fd);             \
                (fd) = -1;                   \
                _fd_;                        \
        })

/*
 * n zeroed bytes at a 64-byte boundary (a cache line), freed with free():
 * a 64-byte vector or tile row loaded from it then never straddles two
 * lines. NULL when out of memory.
 */
static inline void *calloc_lines(size_t n)
{
        const size_t bytes = ALIGN_TO(n ? n : 1, 64);
        void *p = aligned_alloc(64, bytes);

        if (p)
                memset(p, 0, bytes);
        return p;
}

static inline void freep(void *p)
{
        free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd)
{
        if (*fd >= 0)
                close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

/* Closes fd when open; returns -1 for the variable that held it. */
static inline int safe_close(int fd)
{
        if (fd >= 0)
                close(fd);
        return -1;
}

static inline void fclosep(FILE **f)
{
        if (*f)
                fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)  \
        static inline void func##p(type *p)      \
        {                                        \
                if (*p)                          \
                        func(*p);                \
        }

/* Overflow-checked size arithmetic: return false on overflow. */
static inline int size_mul(size_t a, size_t b, size_t *ret)
{
        return !__builtin_mul_overflow(a, b, ret);
}
static inline int size_add(size_t a, size_t b, size_t *ret)
{
        return !__builtin_add_overflow(a, b, ret);
}

/* FNV-1a, 64 bit: hash tables and content fingerprints. */
static inline uint64_t fnv1a64(const void *data, size_t n)
{
        const uint8_t *p = data;
        uint64_t h = 1469598103934665603ull;
        for (size_t i = 0; i < n; i++)
                h = (h ^ p[i]) * 1099511628211ull;
        return h;
}

/* Error text that travels with a negative errno out of the engine. */
#define NPU_ERR_MAX 256
struct npu_err {
        char msg[NPU_ERR_MAX];
};

_printf_(3, 4) static inline int npu_err_set(struct npu_err *e, int r, const char *fmt, ...)
{
        if (e) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
                va_end(ap);
        }
        return r < 0 ? r : -r;
}

/* Prepend "prefix: " to the message. */
static inline void npu_err_prefix(struct npu_err *e, const char *prefix)
{
        if (!e)
                return;
        char tmp[NPU_ERR_MAX];
        size_t n = strlen(prefix);
        if (n + 2 >= sizeof(tmp))
                return;
        memcpy(tmp, prefix, n);
        memcpy(tmp + n, ": ", 2);
        size_t m = MIN(strlen(e->msg), sizeof(tmp) - n - 3);
        memcpy(tmp + n + 2, e->msg, m);
        tmp[n + 2 + m] = 0;
        memcpy(e->msg, tmp, sizeof(tmp));
}

static inline uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline double now_ms(void)
{
        return (double)now_ns() / 1e6;
}
