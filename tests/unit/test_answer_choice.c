/* answer_choice: every request directive of RFC 9111 5.2.1 against the copy held, and their
 * precedence, on an injected clock. */
#include <criterion/criterion.h>
#include <string.h>

#include "answer_choice.h"

/* D(...) sets the directives named over "none given": a later designator overrides an earlier. */
#pragma GCC diagnostic ignored "-Woverride-init"

#define NOW 1764000000LL
static const struct stale_windows WINDOWS = {.stale_while_revalidate = 60, .stale_if_error = 600};

/* A 200 fetched `age` seconds ago with a ttl of 300 s, kept 600 s past it. */
static struct cache_record copy_aged(int64_t age) {
  return (struct cache_record){.upstream_status = 200, .fetched_at = NOW - age,
                               .fresh_until = NOW - age + 300, .stale_until = NOW - age + 900};
}

static struct request_directives none(void) {
  return (struct request_directives){.max_age = -1, .min_fresh = -1, .max_stale = -1};
}

struct answer_case {
  const char *what;
  struct request_directives d;
  int64_t age; /* < 0: no copy */
  enum answer_way way;
  enum answer_fwd fwd; /* checked with ANSWER_FETCH */
};

static void check(const struct answer_case *c) {
  struct cache_record copy = copy_aged(c->age);
  struct answer_choice got = answer_choose(&c->d, c->age >= 0 ? &copy : NULL, NOW, WINDOWS);
  cr_expect_eq(got.way, c->way, "%s: way %d, not %d", c->what, got.way, c->way);
  if (c->way == ANSWER_FETCH)
    cr_expect_eq(got.fwd, c->fwd, "%s: fwd %d, not %d", c->what, got.fwd, c->fwd);
}

#define D(...) ((struct request_directives){.max_age = -1, .min_fresh = -1, .max_stale = -1, __VA_ARGS__})

Test(answer_choice, each_directive_alone) {
  const struct answer_case cases[] = {
    {"no copy", D(), -1, ANSWER_FETCH, FWD_URI_MISS},
    {"fresh", D(), 10, ANSWER_FRESH, 0},
    {"within stale_while_revalidate", D(), 330, ANSWER_STALE_REFRESH, 0},
    {"within stale_if_error only", D(), 500, ANSWER_FETCH, FWD_STALE},
    {"past every window", D(), 1000, ANSWER_FETCH, FWD_STALE},
    {"no-cache on a fresh copy", D(.no_cache = true), 10, ANSWER_FETCH, FWD_REQUEST},
    {"no-cache on a stale one", D(.no_cache = true), 330, ANSWER_FETCH, FWD_STALE},
    {"max-age=0", D(.max_age = 0), 0, ANSWER_FETCH, FWD_REQUEST},
    {"max-age above the age", D(.max_age = 20), 10, ANSWER_FRESH, 0},
    {"max-age equal to the age", D(.max_age = 10), 10, ANSWER_FRESH, 0},
    {"max-age below the age", D(.max_age = 5), 10, ANSWER_FETCH, FWD_REQUEST},
    {"min-fresh within what is left", D(.min_fresh = 290), 10, ANSWER_FRESH, 0},
    {"min-fresh over what is left", D(.min_fresh = 291), 10, ANSWER_FETCH, FWD_REQUEST},
    {"min-fresh on a stale copy", D(.min_fresh = 0), 330, ANSWER_FETCH, FWD_STALE},
    {"max-stale past stale_while_revalidate", D(.max_stale = 300), 500, ANSWER_STALE_REFRESH, 0},
    {"max-stale, the staleness equal", D(.max_stale = 200), 500, ANSWER_STALE_REFRESH, 0},
    {"max-stale too short", D(.max_stale = 199), 500, ANSWER_FETCH, FWD_STALE},
    {"bare max-stale", D(.max_stale = HTTP1_DELTA_MAX), 850, ANSWER_STALE_REFRESH, 0},
    {"bare max-stale past what is kept", D(.max_stale = HTTP1_DELTA_MAX), 900, ANSWER_FETCH, FWD_STALE},
    {"max-stale on a fresh copy", D(.max_stale = 5), 10, ANSWER_FRESH, 0},
    {"only-if-cached, fresh", D(.only_if_cached = true), 10, ANSWER_FRESH, 0},
    {"only-if-cached, within stale_if_error", D(.only_if_cached = true), 500, ANSWER_STALE, 0},
    {"only-if-cached, past the windows", D(.only_if_cached = true), 1000, ANSWER_NOT_CACHED, 0},
    {"only-if-cached, no copy", D(.only_if_cached = true), -1, ANSWER_NOT_CACHED, 0},
    {"no-store on a fresh copy", D(.no_store = true), 10, ANSWER_FRESH, 0},
    {"no-store, no copy", D(.no_store = true), -1, ANSWER_FETCH, FWD_URI_MISS},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    check(&cases[i]);
}

/* Every directive is a constraint, and the answer must meet them all; only-if-cached then turns
 * "ask the upstream" into 504. */
Test(answer_choice, combinations_follow_the_rfc_precedence) {
  const struct answer_case cases[] = {
    {"no-cache beats max-stale", D(.no_cache = true, .max_stale = 1000), 330, ANSWER_FETCH, FWD_STALE},
    {"no-cache with only-if-cached", D(.no_cache = true, .only_if_cached = true), 10, ANSWER_NOT_CACHED, 0},
    {"max-age with max-stale: both met", D(.max_age = 600, .max_stale = 300), 500, ANSWER_STALE_REFRESH, 0},
    {"max-age with max-stale: too old", D(.max_age = 400, .max_stale = 300), 500, ANSWER_FETCH, FWD_STALE},
    {"max-age=0 with only-if-cached", D(.max_age = 0, .only_if_cached = true), 0, ANSWER_NOT_CACHED, 0},
    {"max-age with only-if-cached, met", D(.max_age = 20, .only_if_cached = true), 10, ANSWER_FRESH, 0},
    {"min-fresh with only-if-cached", D(.min_fresh = 295, .only_if_cached = true), 10, ANSWER_NOT_CACHED, 0},
    {"min-fresh beats max-stale", D(.min_fresh = 0, .max_stale = 1000), 330, ANSWER_FETCH, FWD_STALE},
    {"max-stale with only-if-cached", D(.max_stale = 600, .only_if_cached = true), 850, ANSWER_STALE, 0},
    {"max-stale too short, only-if-cached within a window", D(.max_stale = 1, .only_if_cached = true), 500, ANSWER_STALE, 0},
    {"min-fresh and max-age met", D(.min_fresh = 100, .max_age = 50), 10, ANSWER_FRESH, 0},
    {"min-fresh met, max-age not", D(.min_fresh = 100, .max_age = 5), 10, ANSWER_FETCH, FWD_REQUEST},
    {"no-store with max-age=0", D(.no_store = true, .max_age = 0), 10, ANSWER_FETCH, FWD_REQUEST},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    check(&cases[i]);
}

Test(answer_choice, what_a_fetch_may_store_and_which_shared_copy_will_do) {
  struct cache_record copy = copy_aged(10);
  struct request_directives d = none();
  struct answer_choice c = answer_choose(&d, NULL, NOW, WINDOWS);
  cr_expect(c.store);
  cr_expect_eq(c.min_fetched_at, 0, "a miss takes any shared copy the tier still calls fresh");
  d.no_store = true;
  cr_expect(!answer_choose(&d, NULL, NOW, WINDOWS).store);
  d = none();
  d.max_age = 5;
  cr_expect_eq(answer_choose(&d, &copy, NOW, WINDOWS).min_fetched_at, NOW - 5);
  d = none();
  d.no_cache = true;
  cr_expect_eq(answer_choose(&d, &copy, NOW, WINDOWS).min_fetched_at, NOW);
  d = none();
  d.min_fresh = 295;
  cr_expect_eq(answer_choose(&d, &copy, NOW, WINDOWS).min_fetched_at, NOW);
}

/* A remembered 404 has no stale window: fresh, or asked again, even with max-stale. */
Test(answer_choice, a_remembered_404_is_never_served_stale) {
  struct cache_record gone = {.upstream_status = 404, .fetched_at = NOW - 40,
                              .fresh_until = NOW - 10, .stale_until = NOW - 10};
  struct request_directives d = none();
  d.max_stale = HTTP1_DELTA_MAX;
  cr_expect_eq(answer_choose(&d, &gone, NOW, WINDOWS).way, ANSWER_FETCH);
  d.only_if_cached = true;
  cr_expect_eq(answer_choose(&d, &gone, NOW, WINDOWS).way, ANSWER_NOT_CACHED);
}

Test(answer_choice, a_failed_fetch_is_covered_unless_the_client_said_no_cache) {
  struct request_directives d = none();
  struct cache_record fresh = copy_aged(10), in_error_window = copy_aged(500),
                      past = copy_aged(1000);
  cr_expect(answer_copy_covers_failure(&d, &fresh, NOW, WINDOWS), "max-age refused it: still the best");
  cr_expect(answer_copy_covers_failure(&d, &in_error_window, NOW, WINDOWS));
  cr_expect(!answer_copy_covers_failure(&d, &past, NOW, WINDOWS));
  struct stale_windows closed = {0, 0};
  cr_expect(!answer_copy_covers_failure(&d, &in_error_window, NOW, closed));
  d.max_stale = 300;
  cr_expect(answer_copy_covers_failure(&d, &in_error_window, NOW, closed), "its own max-stale");
  d.no_cache = true;
  cr_expect(!answer_copy_covers_failure(&d, &fresh, NOW, WINDOWS), "it asked for a validated answer");
  cr_expect_str_eq(answer_fwd_text(FWD_REQUEST), "request");
  cr_expect_str_eq(answer_fwd_text(FWD_STALE), "stale");
  cr_expect_str_eq(answer_fwd_text(FWD_URI_MISS), "uri-miss");
  cr_expect_null(answer_fwd_text(FWD_NONE));
}
