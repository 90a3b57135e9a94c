/* route: raw request targets and methods -> routes; UUID canonicalising. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include "route.h"

#define ID "497f6eca-6276-4993-bfeb-53cbbbba6f08"

struct route_case {
  char target[200];
  enum route_method method;
  enum route_kind kind;
  char enrollment_id[40]; /* expected when kind is ROUTE_ENROLLMENT */
  char allow[16];         /* expected when kind is ROUTE_METHOD_NOT_ALLOWED */
};

ParameterizedTestParameters(route, matches_raw_targets) {
  static struct route_case cases[] = {
    {"/v1/enrollments/" ID, ROUTE_METHOD_GET, ROUTE_ENROLLMENT, ID, ""},
    {"/v1/enrollments/" ID, ROUTE_METHOD_HEAD, ROUTE_ENROLLMENT, ID, ""},
    {"/v1/enrollments/497F6ECA-6276-4993-BFEB-53CBBBBA6F08", ROUTE_METHOD_GET, ROUTE_ENROLLMENT, ID, ""},
    {"/v1/enrollments/497f6eca-6276-4993-BFEB-53cbbbba6f08", ROUTE_METHOD_GET, ROUTE_ENROLLMENT, ID, ""},
    {"/v1/enrollments/" ID "?expand=site", ROUTE_METHOD_GET, ROUTE_ENROLLMENT, ID, ""},
    /* a query string is ignored, a fragment or anything else in the segment is not */
    {"/v1/enrollments/" ID "#x", ROUTE_METHOD_GET, ROUTE_INVALID_ID, "", ""},
    /* wrong lengths and characters: the route, with an invalid id */
    {"/v1/enrollments/abc", ROUTE_METHOD_GET, ROUTE_INVALID_ID, "", ""},
    {"/v1/enrollments/497f6eca-6276-4993-bfeb-53cbbbba6f0", ROUTE_METHOD_GET, ROUTE_INVALID_ID, "", ""},
    {"/v1/enrollments/497f6eca-6276-4993-bfeb-53cbbbba6f088", ROUTE_METHOD_GET, ROUTE_INVALID_ID, "", ""},
    {"/v1/enrollments/497f6eca62764993bfeb53cbbbba6f08", ROUTE_METHOD_GET, ROUTE_INVALID_ID, "", ""},
    {"/v1/enrollments/497f6eca-6276-4993-bfeb_53cbbbba6f08", ROUTE_METHOD_GET, ROUTE_INVALID_ID, "", ""},
    {"/v1/enrollments/497f6ecag6276-4993-bfeb-53cbbbba6f08", ROUTE_METHOD_GET, ROUTE_INVALID_ID, "", ""},
    {"/v1/enrollments/{497f6eca-6276-4993-bfeb-53cbbbba6f0}", ROUTE_METHOD_GET, ROUTE_INVALID_ID, "", ""},
    {"/v1/enrollments/ 497f6eca-6276-4993-bfeb-53cbbbba6f0", ROUTE_METHOD_GET, ROUTE_INVALID_ID, "", ""},
    /* never the enrollment route: trailing slash, %2F, //, .., ;params, more segments */
    {"/v1/enrollments/" ID "/", ROUTE_METHOD_GET, ROUTE_NOT_FOUND, "", ""},
    {"/v1/enrollments/" ID "/devices", ROUTE_METHOD_GET, ROUTE_NOT_FOUND, "", ""},
    {"/v1/enrollments/%2F" ID, ROUTE_METHOD_GET, ROUTE_NOT_FOUND, "", ""},
    {"/v1/enrollments/497f6eca%2D6276-4993-bfeb-53cbbbba6f08", ROUTE_METHOD_GET, ROUTE_NOT_FOUND, "", ""},
    {"/v1/enrollments//" ID, ROUTE_METHOD_GET, ROUTE_NOT_FOUND, "", ""},
    {"/v1//enrollments/" ID, ROUTE_METHOD_GET, ROUTE_NOT_FOUND, "", ""},
    {"/v1/enrollments/..", ROUTE_METHOD_GET, ROUTE_NOT_FOUND, "", ""},
    {"/v1/enrollments/.", ROUTE_METHOD_GET, ROUTE_NOT_FOUND, "", ""},
    {"/v1/enrollments/../stats", ROUTE_METHOD_GET, ROUTE_NOT_FOUND, "", ""},
    {"/v1/enrollments/" ID ";jsessionid=1", ROUTE_METHOD_GET, ROUTE_NOT_FOUND, "", ""},
    {"/v1/enrollments/", ROUTE_METHOD_GET, ROUTE_NOT_FOUND, "", ""},
    {"/v1/enrollments/?id=" ID, ROUTE_METHOD_GET, ROUTE_NOT_FOUND, "", ""},
    {"/v1/enrollments", ROUTE_METHOD_GET, ROUTE_NOT_FOUND, "", ""},
    {"/V1/enrollments/" ID, ROUTE_METHOD_GET, ROUTE_NOT_FOUND, "", ""},
    {"/", ROUTE_METHOD_GET, ROUTE_NOT_FOUND, "", ""},
    {"/stats/", ROUTE_METHOD_GET, ROUTE_NOT_FOUND, "", ""},
    /* not origin-form */
    {"http://example.com/v1/enrollments/" ID, ROUTE_METHOD_GET, ROUTE_BAD_TARGET, "", ""},
    {"*", ROUTE_METHOD_OTHER, ROUTE_BAD_TARGET, "", ""},
    {"", ROUTE_METHOD_GET, ROUTE_BAD_TARGET, "", ""},
    /* other routes and methods */
    {"/stats", ROUTE_METHOD_GET, ROUTE_STATS, "", ""},
    {"/stats?pretty=1", ROUTE_METHOD_GET, ROUTE_STATS, "", ""},
    {"/metrics", ROUTE_METHOD_GET, ROUTE_METRICS, "", ""},
    {"/healthz", ROUTE_METHOD_GET, ROUTE_HEALTHZ, "", ""},
    {"/stats", ROUTE_METHOD_POST, ROUTE_METHOD_NOT_ALLOWED, "", "GET, HEAD"},
    {"/healthz", ROUTE_METHOD_HEAD, ROUTE_HEALTHZ, "", ""},
    {"/stats", ROUTE_METHOD_HEAD, ROUTE_STATS, "", ""},
    {"/metrics", ROUTE_METHOD_HEAD, ROUTE_METRICS, "", ""},
    {"/healthz", ROUTE_METHOD_DELETE, ROUTE_METHOD_NOT_ALLOWED, "", "GET, HEAD"},
    {"/v1/enrollments/" ID, ROUTE_METHOD_DELETE, ROUTE_METHOD_NOT_ALLOWED, "", "GET, HEAD"},
    {"/v1/enrollments/" ID, ROUTE_METHOD_POST, ROUTE_METHOD_NOT_ALLOWED, "", "GET, HEAD"},
    {"/v1/enrollments/abc", ROUTE_METHOD_PUT, ROUTE_METHOD_NOT_ALLOWED, "", "GET, HEAD"},
    {"/v1/enrollments/" ID "/", ROUTE_METHOD_DELETE, ROUTE_NOT_FOUND, "", ""},
    /* admin routes */
    {"/cache/enrollments/" ID, ROUTE_METHOD_GET, ROUTE_CACHE_INSPECT, ID, ""},
    {"/cache/enrollments/497F6ECA-6276-4993-BFEB-53CBBBBA6F08", ROUTE_METHOD_DELETE, ROUTE_CACHE_DELETE, ID, ""},
    {"/cache/enrollments/abc", ROUTE_METHOD_GET, ROUTE_INVALID_ID, "", ""},
    {"/cache/enrollments/abc", ROUTE_METHOD_DELETE, ROUTE_INVALID_ID, "", ""},
    {"/cache/enrollments/" ID, ROUTE_METHOD_HEAD, ROUTE_METHOD_NOT_ALLOWED, "", "GET, DELETE"},
    {"/cache/enrollments/" ID, ROUTE_METHOD_POST, ROUTE_METHOD_NOT_ALLOWED, "", "GET, DELETE"},
    {"/cache/enrollments/" ID "/", ROUTE_METHOD_DELETE, ROUTE_NOT_FOUND, "", ""},
    {"/cache/enrollments/%2F" ID, ROUTE_METHOD_DELETE, ROUTE_NOT_FOUND, "", ""},
    {"/cache/enrollments/..", ROUTE_METHOD_DELETE, ROUTE_NOT_FOUND, "", ""},
    {"/cache", ROUTE_METHOD_DELETE, ROUTE_CACHE_PURGE, "", ""},
    {"/cache?all=1", ROUTE_METHOD_DELETE, ROUTE_CACHE_PURGE, "", ""},
    {"/cache", ROUTE_METHOD_GET, ROUTE_CACHE_LIST, "", ""},
    {"/cache?after=" ID "&limit=5", ROUTE_METHOD_GET, ROUTE_CACHE_LIST, "", ""},
    {"/cache", ROUTE_METHOD_POST, ROUTE_METHOD_NOT_ALLOWED, "", "GET, DELETE"},
    {"/cache", ROUTE_METHOD_HEAD, ROUTE_METHOD_NOT_ALLOWED, "", "GET, DELETE"},
    {"/cache/warm", ROUTE_METHOD_POST, ROUTE_CACHE_WARM, "", ""},
    {"/cache/warm?now=1", ROUTE_METHOD_POST, ROUTE_CACHE_WARM, "", ""},
    {"/cache/warm", ROUTE_METHOD_GET, ROUTE_METHOD_NOT_ALLOWED, "", "POST"},
    {"/cache/warm/", ROUTE_METHOD_POST, ROUTE_NOT_FOUND, "", ""},
    {"/cache/", ROUTE_METHOD_DELETE, ROUTE_NOT_FOUND, "", ""},
    {"/cache/enrollments", ROUTE_METHOD_DELETE, ROUTE_NOT_FOUND, "", ""},
  };
  return cr_make_param_array(struct route_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct route_case *c, route, matches_raw_targets) {
  struct route_match match;
  enum route_kind kind = route_match(c->target, c->method, &match);
  cr_assert_eq(kind, c->kind, "'%s' (method %d): kind %d, expected %d", c->target, c->method, kind,
               c->kind);
  cr_assert_eq(match.kind, kind);
  if (c->kind == ROUTE_ENROLLMENT)
    cr_assert_str_eq(match.enrollment_id, c->enrollment_id);
  if (c->kind == ROUTE_METHOD_NOT_ALLOWED)
    cr_assert_str_eq(match.allow, c->allow);
}

Test(route, admin_routes_say_so) {
  struct route_match match;
  route_match("/cache/enrollments/abc", ROUTE_METHOD_GET, &match);
  cr_expect(match.admin, "an invalid id on an admin route is still an admin route");
  route_match("/cache", ROUTE_METHOD_POST, &match);
  cr_expect(match.admin);
  route_match("/v1/enrollments/abc", ROUTE_METHOD_GET, &match);
  cr_expect_not(match.admin);
}

Test(route, null_target_is_a_bad_target) {
  struct route_match match;
  cr_assert_eq(route_match(NULL, ROUTE_METHOD_GET, &match), ROUTE_BAD_TARGET);
}

Test(uuid, canonical_form_is_lower_case) {
  char out[UUID_TEXT_LEN + 1];
  const char *upper = "ABCDEF01-2345-6789-ABCD-EF0123456789";
  cr_assert(uuid_canonicalize(upper, strlen(upper), out));
  cr_assert_str_eq(out, "abcdef01-2345-6789-abcd-ef0123456789");
}

Test(uuid, refuses_dashes_out_of_place_and_non_hex) {
  char out[UUID_TEXT_LEN + 1];
  const char *bad[] = {
    "497f6eca6-276-4993-bfeb-53cbbbba6f08", "497f6eca-6276-4993-bfeb-53cbbbba6f0-",
    "497f6eca-6276-4993-bfeb-53cbbbba6f0g", "-97f6eca-6276-4993-bfeb-53cbbbba6f08",
    "497f6eca-6276-4993-bfeb-53cbbbba6f08 ", "497f6eca-6276+4993-bfeb-53cbbbba6f08",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    cr_expect_not(uuid_canonicalize(bad[i], strlen(bad[i]), out), "%s accepted", bad[i]);
  cr_expect_not(uuid_canonicalize(ID, UUID_TEXT_LEN - 1, out), "a short length is refused");
  cr_expect_not(uuid_canonicalize("", 0, out));
}

Test(uuid, embedded_nul_is_refused) {
  char text[UUID_TEXT_LEN + 1];
  char out[UUID_TEXT_LEN + 1];
  memcpy(text, ID, sizeof(text));
  text[5] = '\0';
  cr_assert_not(uuid_canonicalize(text, UUID_TEXT_LEN, out));
}

Test(route, admin_routes_are_marked_admin_and_the_list_gets_its_query) {
  struct route_match m;
  const char *targets[] = {"/cache", "/cache/warm", "/cache/enrollments/" ID};
  enum route_method methods[] = {ROUTE_METHOD_GET, ROUTE_METHOD_POST, ROUTE_METHOD_PUT};
  for (size_t i = 0; i < 3; i++)
    for (size_t j = 0; j < 3; j++) {
      route_match(targets[i], methods[j], &m);
      cr_expect(m.admin, "%s", targets[i]);
    }
  route_match("/cache?limit=3", ROUTE_METHOD_GET, &m);
  cr_expect_str_eq(m.query, "limit=3");
  route_match("/cache", ROUTE_METHOD_GET, &m);
  cr_expect_null(m.query);
}

Test(cache_page, parses_after_and_limit) {
  struct cache_page page;
  cr_expect_null(route_parse_cache_page(NULL, &page));
  cr_expect_str_eq(page.after, "");
  cr_expect_eq(page.limit, ROUTE_PAGE_DEFAULT_LIMIT);
  cr_expect_null(route_parse_cache_page("", &page));
  cr_expect_null(route_parse_cache_page("limit=7&after=497F6ECA-6276-4993-BFEB-53CBBBBA6F08", &page));
  cr_expect_str_eq(page.after, ID, "canonical");
  cr_expect_eq(page.limit, 7);
  cr_expect_null(route_parse_cache_page("limit=1000", &page));
  cr_expect_eq(page.limit, 1000);
  cr_expect_null(route_parse_cache_page("after=" ID "&", &page), "a trailing & is harmless");
  const char *bad[] = {"limit=0", "limit=1001", "limit=", "limit", "limit=-1", "limit=1e3",
                       "limit=99999999999999999999", "after=abc", "after=", "after",
                       "after=" ID "&after=" ID, "limit=1&limit=2", "sort=id", "after=%34" ID};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    cr_expect_not_null(route_parse_cache_page(bad[i], &page), "'%s' accepted", bad[i]);
}
