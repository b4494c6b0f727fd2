/* SPDX-License-Identifier: MIT */
/* common/utf8.c: the one UTF-8 checker of npud, npuctl, npud-http and the engine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "utf8.h"

#define S(lit) (lit), (sizeof(lit) - 1)

static void test_well_formed(void **state)
{
        assert_true(utf8_valid(S("")));
        assert_true(utf8_valid(S("plain ascii")));
        assert_true(utf8_valid(S("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80")));
        assert_true(utf8_valid(S("\xED\x9F\xBF")));     /* U+D7FF, last before the surrogates */
        assert_true(utf8_valid(S("\xEE\x80\x80")));     /* U+E000, first after them */
        assert_true(utf8_valid(S("\xF4\x8F\xBF\xBF"))); /* U+10FFFF */
}

static void test_ill_formed(void **state)
{
        assert_false(utf8_valid(S("\xC0\xAF")));         /* overlong '/' */
        assert_false(utf8_valid(S("\xC1\xBF")));
        assert_false(utf8_valid(S("\xE0\x80\xAF")));     /* overlong, 3 bytes */
        assert_false(utf8_valid(S("\xF0\x80\x80\xAF"))); /* overlong, 4 bytes */
        assert_false(utf8_valid(S("\xED\xA0\x80")));     /* U+D800, a surrogate */
        assert_false(utf8_valid(S("\xED\xBF\xBF")));     /* U+DFFF */
        assert_false(utf8_valid(S("\xF4\x90\x80\x80"))); /* U+110000 */
        assert_false(utf8_valid(S("\xF5\x80\x80\x80")));
        assert_false(utf8_valid(S("\x80")));             /* a lone continuation */
        assert_false(utf8_valid(S("ab\xE2\x82")));       /* cut short at the end */
        assert_false(utf8_valid(S("\xE2\x82" "a")));
        assert_false(utf8_valid(S("\xFF")));
}

static void test_nul(void **state)
{
        assert_true(utf8_valid(S("a\0b")));
        assert_false(utf8_valid_string(S("a\0b")));
        assert_true(utf8_valid_string(S("a\xC3\xA9")));
        assert_false(utf8_valid_string(S("a\xC3")));
}

static void test_decode_maximal_subpart(void **state)
{
        uint32_t cp = 0;

        assert_int_equal(utf8_decode(S("\xF0\x9F\x98\x80"), &cp), 4);
        assert_int_equal(cp, 0x1F600);
        assert_int_equal(utf8_decode(S("\xC3\xA9"), &cp), 2);
        assert_int_equal(cp, 0xE9);
        /* U+FFFD replaces the maximal subpart: lead plus the continuation bytes that fit */
        assert_int_equal(utf8_decode(S("\xF0\x9F\x98" "a"), &cp), -3);
        assert_int_equal(utf8_decode(S("\xE0\x80"), &cp), -1);
        assert_int_equal(utf8_decode(S("\xF0\x9F"), &cp), -2);
}

static void test_sequence_length_waits_for_more(void **state)
{
        assert_int_equal(utf8_sequence_length(S("")), 0);
        assert_int_equal(utf8_sequence_length(S("a")), 1);
        assert_int_equal(utf8_sequence_length(S("\xF0")), 0);
        assert_int_equal(utf8_sequence_length(S("\xF0\x9F")), 0);
        assert_int_equal(utf8_sequence_length(S("\xF0\x9F\x98")), 0);
        assert_int_equal(utf8_sequence_length(S("\xF0\x9F\x98\x80")), 4);
        /* never completes: answered now, not held */
        assert_int_equal(utf8_sequence_length(S("\xFF")), -1);
        assert_int_equal(utf8_sequence_length(S("\x80")), -1);
        assert_int_equal(utf8_sequence_length(S("\xC0")), -1);
        assert_int_equal(utf8_sequence_length(S("\xE0\x80")), -1);
        assert_int_equal(utf8_sequence_length(S("\xF0\x9F" "a")), -1);
}

static void test_encode_round_trip(void **state)
{
        static const uint32_t cps[] = { 0, 0x7F, 0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFF, 0x10000, 0x10FFFF };
        char buf[4];
        uint32_t cp;

        for (size_t i = 0; i < sizeof(cps) / sizeof(cps[0]); i++) {
                size_t n = utf8_encode(cps[i], buf);
                assert_int_equal(utf8_decode(buf, n, &cp), (int)n);
                assert_int_equal(cp, cps[i]);
        }
        assert_int_equal(utf8_chars("caf\xC3\xA9 \xF0\x9F\x98\x80"), 6);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_well_formed),
                cmocka_unit_test(test_ill_formed),
                cmocka_unit_test(test_nul),
                cmocka_unit_test(test_decode_maximal_subpart),
                cmocka_unit_test(test_sequence_length_waits_for_more),
                cmocka_unit_test(test_encode_round_trip),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
