/* SPDX-License-Identifier: MIT */
/* Command-line values: every number parses in full and in range, or it is a usage error. */
#include <math.h>

#include "npuctl.h"

int log_usage(const char *fmt, ...)
{
        va_list ap;
        fputs("npuctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return -EINVAL;
}

int parse_u32(const char *s, uint32_t min, uint32_t max, const char *what, uint32_t *ret)
{
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || end == s || *end || v < min || v > max)
                return log_usage("%s: '%s' is not a whole number in %u..%u", what, s, min, max);
        *ret = (uint32_t)v;
        return 0;
}

int parse_u64(const char *s, const char *what, uint64_t *ret)
{
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || *end || s[strspn(s, " \t")] == '-')
                return log_usage("%s: '%s' is not a non-negative whole number", what, s);
        *ret = v;
        return 0;
}

int parse_double(const char *s, double min, double max, bool min_open, const char *what, double *ret)
{
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || *end || !isfinite(v) || v < min || v > max || (min_open && v == min))
                return log_usage("%s: '%s' is not a number in %s%g, %g]", what, s, min_open ? "(" : "[", min,
                                 max);
        *ret = v;
        return 0;
}

int parse_u32_list(const char *s, uint32_t min, uint32_t max, const char *what, uint32_t *ret, size_t max_n,
                   size_t *ret_n)
{
        _cleanup_free_ char *copy = strdup(s);
        char *save = NULL;
        size_t n = 0;
        int r;

        if (!copy)
                return -ENOMEM;
        if (s[0] == ',' || (s[0] && s[strlen(s) - 1] == ',') || strstr(s, ",,"))
                return log_usage("%s: '%s' has an empty item", what, s);
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (n == max_n)
                        return log_usage("%s: at most %zu items", what, max_n);
                r = parse_u32(t, min, max, what, &ret[n++]);
                if (r < 0)
                        return r;
        }
        if (n == 0)
                return log_usage("%s: empty list", what);
        *ret_n = n;
        return 0;
}

static int read_all(FILE *f, char **ret, size_t *ret_len)
{
        size_t cap = 4096, n = 0;
        _cleanup_free_ char *buf = malloc(cap);

        if (!buf)
                return -ENOMEM;
        for (;;) {
                size_t got = fread(buf + n, 1, cap - n - 1, f);
                n += got;
                if (got == 0)
                        break;
                if (n + 1 == cap) {
                        if (cap >= (SIZE_MAX >> 2))
                                return -E2BIG;
                        char *t = realloc(buf, cap * 2);
                        if (!t)
                                return -ENOMEM;
                        buf = t;
                        cap *= 2;
                }
        }
        if (ferror(f))
                return -EIO;
        buf[n] = 0;
        *ret_len = n;
        *ret = TAKE_PTR(buf);
        return 0;
}

int read_prompt(int argc, char **argv, char **ret, size_t *ret_len)
{
        int r;

        if (argc == 0 || (argc == 1 && strcmp(argv[0], "-") == 0)) {
                r = read_all(stdin, ret, ret_len);
                if (r < 0) {
                        fprintf(stderr, "npuctl: cannot read the prompt from stdin: %s\n", strerror(-r));
                        return r == -EINVAL ? -EIO : r;
                }
                /* what echo and here-documents add is not part of the prompt */
                if (*ret_len > 0 && (*ret)[*ret_len - 1] == '\n')
                        (*ret)[--*ret_len] = 0;
                return 0;
        }
        size_t len = 0;
        for (int i = 0; i < argc; i++)
                len += strlen(argv[i]) + 1;
        char *s = malloc(len);
        if (!s)
                return -ENOMEM;
        char *p = s;
        for (int i = 0; i < argc; i++) {
                if (i)
                        *p++ = ' ';
                p = stpcpy(p, argv[i]);
        }
        *ret = s;
        *ret_len = (size_t)(p - s);
        return 0;
}

int parse_duration(const char *s, const char *what, double *ret)
{
        static const struct {
                char unit;
                double sec;
        } units[] = { { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 } };
        char *end;
        double v;

        errno = 0;
        v = strtod(s, &end);
        if (errno || end == s || !isfinite(v))
                return log_usage("%s: '%s' is not a duration (300, 10m, 2h, -1)", what, s);
        if (*end) {
                size_t i;
                for (i = 0; i < ARRAY_SIZE(units) && units[i].unit != *end; i++)
                        ;
                if (i == ARRAY_SIZE(units) || end[1])
                        return log_usage("%s: '%s' is not a duration (300, 10m, 2h, -1)", what, s);
                v *= units[i].sec;
        }
        if (v > 10 * 366 * 86400.0)
                return log_usage("%s: at most 10 years", what);
        *ret = v < 0 ? -1 : v;
        return 0;
}
