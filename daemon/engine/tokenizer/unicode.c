/* SPDX-License-Identifier: MIT */
#include "unicode.h"
#include "util.h"

/* The well-formed byte sequences of Unicode's table 3-7: the second byte's range depends on the first. */
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
        uint8_t lead = p[0];
        uint32_t c;
        int len;

        if (lead < 0x80) {
                *cp = lead;
                return 1;
        }
        if (lead >= 0xC2 && lead <= 0xDF) {
                len = 2;
                c = lead & 0x1F;
        } else if (lead >= 0xE0 && lead <= 0xEF) {
                len = 3;
                c = lead & 0x0F;
        } else if (lead >= 0xF0 && lead <= 0xF4) {
                len = 4;
                c = lead & 0x07;
        } else
                return -1;
        for (int i = 1; i < len; i++) {
                if ((size_t)i >= n)
                        return -i;
                if (i == 1 ? !second_byte_ok(lead, p[1]) : (p[i] & 0xC0) != 0x80)
                        return -i;
                c = (c << 6) | (p[i] & 0x3F);
        }
        *cp = c;
        return len;
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
