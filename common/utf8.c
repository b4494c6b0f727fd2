/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "utf8.h"

/* The length a lead byte announces, 0 for a byte that cannot start a character. */
static int lead_length(uint8_t lead)
{
        if (lead < 0x80)
                return 1;
        if (lead >= 0xC2 && lead <= 0xDF)
                return 2;
        if (lead >= 0xE0 && lead <= 0xEF)
                return 3;
        if (lead >= 0xF0 && lead <= 0xF4)
                return 4;
        return 0;
}

/* The second byte's range depends on the first (table 3-7). */
static bool second_byte_ok(uint8_t lead, uint8_t b)
{
        switch (lead) {
        case 0xE0: return b >= 0xA0 && b <= 0xBF;
        case 0xED: return b >= 0x80 && b <= 0x9F;
        case 0xF0: return b >= 0x90 && b <= 0xBF;
        case 0xF4: return b >= 0x80 && b <= 0x8F;
        default: return b >= 0x80 && b <= 0xBF;
        }
}

int utf8_decode(const char *s, size_t n, uint32_t *cp)
{
        const uint8_t *p = (const uint8_t *)s;
        int len = lead_length(p[0]);
        uint32_t c;

        if (len == 0)
                return -1;
        if (len == 1) {
                *cp = p[0];
                return 1;
        }
        c = p[0] & (0x7F >> len);
        for (int i = 1; i < len; i++) {
                if ((size_t)i >= n)
                        return -i;
                if (i == 1 ? !second_byte_ok(p[0], p[1]) : (p[i] & 0xC0) != 0x80)
                        return -i;
                c = (c << 6) | (p[i] & 0x3F);
        }
        *cp = c;
        return len;
}

int utf8_sequence_length(const char *s, size_t n)
{
        uint32_t cp;
        int l;

        if (n == 0)
                return 0;
        l = utf8_decode(s, n, &cp);
        if (l > 0)
                return l;
        /* a maximal subpart that ends with the input, from a real lead byte, may still complete */
        if (lead_length((uint8_t)s[0]) > 1 && (size_t)-l == n)
                return 0;
        return -1;
}

size_t utf8_encode(uint32_t cp, char out[4])
{
        if (cp < 0x80) {
                out[0] = (char)cp;
                return 1;
        }
        if (cp < 0x800) {
                out[0] = (char)(0xC0 | (cp >> 6));
                out[1] = (char)(0x80 | (cp & 0x3F));
                return 2;
        }
        if (cp < 0x10000) {
                out[0] = (char)(0xE0 | (cp >> 12));
                out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[2] = (char)(0x80 | (cp & 0x3F));
                return 3;
        }
        out[0] = (char)(0xF0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        return 4;
}

bool utf8_valid(const char *s, size_t n)
{
        uint32_t cp;

        for (size_t i = 0; i < n;) {
                int l = utf8_decode(s + i, n - i, &cp);
                if (l < 0)
                        return false;
                i += (size_t)l;
        }
        return true;
}

bool utf8_valid_string(const char *s, size_t n)
{
        return !memchr(s, 0, n) && utf8_valid(s, n);
}

size_t utf8_chars(const char *s)
{
        size_t n = 0;

        for (; *s; s++)
                n += ((uint8_t)*s & 0xC0) != 0x80;
        return n;
}
