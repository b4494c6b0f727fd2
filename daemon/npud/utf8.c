/* SPDX-License-Identifier: MIT */
#include "utf8.h"

/* The ranges of RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF. */
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

int utf8_sequence_length(const uint8_t *s, size_t n)
{
        uint8_t lead;
        int len;

        if (n == 0)
                return 0;
        lead = s[0];
        if (lead < 0x80)
                return 1;
        if (lead >= 0xC2 && lead <= 0xDF)
                len = 2;
        else if (lead >= 0xE0 && lead <= 0xEF)
                len = 3;
        else if (lead >= 0xF0 && lead <= 0xF4)
                len = 4;
        else
                return -1;
        for (int i = 1; i < len; i++) {
                if ((size_t)i >= n)
                        return 0;
                if (i == 1 ? !second_byte_ok(lead, s[1]) : (s[i] & 0xC0) != 0x80)
                        return -1;
        }
        return len;
}

bool utf8_is_valid(const uint8_t *s, size_t n)
{
        for (size_t i = 0; i < n;) {
                int len = utf8_sequence_length(s + i, n - i);
                if (len <= 0)
                        return false;
                i += len;
        }
        return true;
}
