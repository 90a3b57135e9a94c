/* validators: the body's ETag, If-None-Match's weak comparison, the upstream's validators. */
#include <criterion/criterion.h>
#include <string.h>

#include "validators.h"

static void etag_of(const char *body, char out[ETAG_TEXT_MAX]) {
  unsigned char digest[BODY_DIGEST_LEN];
  cr_assert(body_digest(body, strlen(body), digest));
  etag_render(digest, out);
}

Test(validators, the_etag_is_the_quoted_sha256_prefix_of_the_body) {
  char etag[ETAG_TEXT_MAX];
  etag_of("abc", etag); /* SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223... */
  cr_expect_str_eq(etag, "\"ba7816bf8f01cfea414140de5dae2223\"");
  char other[ETAG_TEXT_MAX];
  etag_of("abd", other);
  cr_expect_str_neq(etag, other, "another body, another ETag");
}

Test(validators, if_none_match_uses_weak_comparison_over_a_list) {
  const char *ours = "\"ba7816bf8f01cfea414140de5dae2223\"";
  const struct {
    const char *list;
    bool matches;
  } cases[] = {
    {"\"ba7816bf8f01cfea414140de5dae2223\"", true},
    {"W/\"ba7816bf8f01cfea414140de5dae2223\"", true},
    {"\"a\", \"ba7816bf8f01cfea414140de5dae2223\"", true},
    {"\"a\",W/\"b\" ,  \"ba7816bf8f01cfea414140de5dae2223\"  ", true},
    {"*", true},
    {"  *  ", true},
    {"\"a\", *", false},
    {"\"a\", \"b\"", false},
    {"ba7816bf8f01cfea414140de5dae2223", false},
    {"\"ba7816bf8f01cfea414140de5dae222\"", false},
    {"\"BA7816BF8F01CFEA414140DE5DAE2223\"", false},
    {"", false},
    {"\"unterminated, \"ba7816bf8f01cfea414140de5dae2223\"", true}, /* a space ends the first */
    {"garbage, \"ba7816bf8f01cfea414140de5dae2223\"", true},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    cr_expect_eq(if_none_match_matches(cases[i].list, strlen(cases[i].list), ours),
                 cases[i].matches, "%s", cases[i].list);
}

Test(validators, upstream_etags_are_checked_against_their_grammar_and_bound) {
  const char *good[] = {"\"abc\"", "W/\"abc\"", "\"\"", "\"67ab43-5e1\""};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
    cr_expect(upstream_etag_valid(good[i], strlen(good[i])), "%s", good[i]);
  const char *bad[] = {"abc", "\"abc", "w/\"abc\"", "\"a\"b\"", "\"a\" ", "\"a\r\nX: y\"",
                       "\"a\x7f\"", "", "\"a\"\"b\""};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    cr_expect(!upstream_etag_valid(bad[i], strlen(bad[i])), "%s", bad[i]);
  char longest[UPSTREAM_ETAG_MAX + 2];
  memset(longest, 'a', sizeof(longest));
  longest[0] = '"';
  longest[UPSTREAM_ETAG_MAX - 1] = '"';
  cr_expect(upstream_etag_valid(longest, UPSTREAM_ETAG_MAX));
  longest[UPSTREAM_ETAG_MAX - 1] = 'a';
  longest[UPSTREAM_ETAG_MAX] = '"';
  cr_expect(!upstream_etag_valid(longest, UPSTREAM_ETAG_MAX + 1), "one byte over the bound");
}

Test(validators, last_modified_must_be_an_imf_fixdate) {
  const char *good = "Sun, 06 Nov 1994 08:49:37 GMT";
  cr_expect(upstream_last_modified_valid(good, strlen(good)));
  const char *bad[] = {"Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
                       "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Nov 1994 08:49:37 GMT\r\nX: y",
                       "Xyz, 06 Nov 1994 08:49:37 GMT", "Sun, 06 Nox 1994 08:49:37 GMT",
                       "Sun, 0a Nov 1994 08:49:37 GMT", ""};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    cr_expect(!upstream_last_modified_valid(bad[i], strlen(bad[i])), "%s", bad[i]);
}
