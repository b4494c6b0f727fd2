/* SPDX-License-Identifier: MIT */
#include "unicode.h"
#include "util.h"

int utf8_repair(const char *text, size_t len, char **ret, size_t *ret_len)
{
        /* each replaced byte grows to at most three */
        size_t cap, o = 0;
        char *s;
        uint32_t cp;

        if (!size_mul(len, 3, &cap) || !size_add(cap, 1, &cap))
                return -E2BIG;
        s = malloc(cap);
        if (!s)
                return -ENOMEM;
        for (size_t i = 0; i < len;) {
                int l = utf8_decode(text + i, len - i, &cp);
                if (l > 0) {
                        memcpy(s + o, text + i, (size_t)l);
                        o += (size_t)l;
                        i += (size_t)l;
                } else {
                        o += utf8_encode(UNICODE_REPLACEMENT, s + o);
                        i += (size_t)-l;
                }
        }
        s[o] = 0;
        *ret = s;
        *ret_len = o;
        return 0;
}
