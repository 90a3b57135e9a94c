/* HTTP caching as a client sees it: ETag and If-None-Match (304), Cache-Control on every
 * answer, the request directives of RFC 9111 5.2.1, conditional refreshes the upstream answers
 * 304, and every Cache-Status value of docs/http.md's table produced by the request it names. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "harness.h"

#define ID "497f6eca-6276-4993-bfeb-53cbbbba6f08"
#define ID2 "0b7a2c1e-2f3d-4e5f-8a9b-0c1d2e3f4a5b"
#define ID3 "1c8b3d2f-3a4e-4f60-9bac-1d2e3f4a5b6c"

/* One answer's status, headers and body, asked with up to two extra header lines. */
struct answer {
  long status;
  char cache_status[256];
  char cache_control[64];
  char etag[64];
  char age[32];
  size_t body_len;
  bool has_content_length;
};

static struct answer ask_as(const char *method, const char *id, const char *header1,
                            const char *header2) {
  char url[256];
  snprintf(url, sizeof(url), "%s/v1/enrollments/%s", daemon_proc.url, id);
  const char *headers[] = {header1, header2, NULL};
  struct http_response response;
  http_request(method, url, headers, &response);
  struct answer a = {.status = response.status, .body_len = response.body_len};
  http_header(&response, "Cache-Status", a.cache_status, sizeof(a.cache_status));
  http_header(&response, "Cache-Control", a.cache_control, sizeof(a.cache_control));
  http_header(&response, "ETag", a.etag, sizeof(a.etag));
  http_header(&response, "Age", a.age, sizeof(a.age));
  char length[32];
  a.has_content_length = http_header(&response, "Content-Length", length, sizeof(length));
  http_response_free(&response);
  return a;
}

static struct answer ask(const char *id, const char *header) { return ask_as(NULL, id, header, NULL); }

static void if_none_match(char *line, size_t len, const char *list) {
  snprintf(line, len, "If-None-Match: %s", list);
}

static long max_age_of(const struct answer *a) {
  const char *at = strstr(a->cache_control, "max-age=");
  return at ? atol(at + 8) : -1;
}

/* --- validators ------------------------------------------------------------------------------ */

Test(validators, every_200_has_an_etag_and_a_matching_if_none_match_is_a_304, .fini = stop_all,
     .timeout = 60) {
  start_with(NULL);
  struct answer miss = ask(ID, NULL);
  cr_assert_eq(miss.status, 200);
  cr_expect_eq(strlen(miss.etag), 34, "a strong, quoted ETag: %s", miss.etag);
  cr_expect(miss.etag[0] == '"' && miss.etag[33] == '"', "%s", miss.etag);
  struct answer hit = ask(ID, NULL);
  cr_expect_str_eq(hit.etag, miss.etag, "the stored body's ETag, on a hit as on the miss");
  char line[160];
  const char *lists[] = {miss.etag, "*", NULL, NULL};
  char weak[80], list[160];
  snprintf(weak, sizeof(weak), "W/%s", miss.etag);
  snprintf(list, sizeof(list), "\"other\", %s", miss.etag);
  lists[2] = weak;
  lists[3] = list;
  for (size_t i = 0; i < 4; i++) {
    if_none_match(line, sizeof(line), lists[i]);
    struct answer revalidated = ask(ID, line);
    cr_expect_eq(revalidated.status, 304, "If-None-Match: %s", lists[i]);
    cr_expect_eq(revalidated.body_len, 0, "a 304 has no body");
    cr_expect(!revalidated.has_content_length, "nor a Content-Length");
    cr_expect_str_eq(revalidated.etag, miss.etag);
    cr_expect(strncmp(revalidated.cache_status, "flipcached; hit; ttl=", 21) == 0, "%s",
              revalidated.cache_status);
    cr_expect(strncmp(revalidated.cache_control, "private, max-age=", 17) == 0, "%s",
              revalidated.cache_control);
    cr_expect_neq(revalidated.age[0], '\0', "Age as on the 200");
  }
  if_none_match(line, sizeof(line), "\"other\", W/\"still-other\"");
  cr_expect_eq(ask(ID, line).status, 200, "no member matches");
  if_none_match(line, sizeof(line), miss.etag);
  struct answer head = ask_as("HEAD", ID, line, NULL);
  cr_expect_eq(head.status, 304, "HEAD agrees");
  head = ask_as("HEAD", ID, NULL, NULL);
  cr_expect_eq(head.status, 200);
  cr_expect_str_eq(head.etag, miss.etag);
  cr_expect_str_eq(head.cache_control, hit.cache_control);
  /* Two If-None-Match fields are not evaluated: the full answer, always a correct one. */
  cr_expect_eq(ask_as(NULL, ID, line, "If-None-Match: *").status, 200);
  cr_expect_eq(stat_of("not_modified"), 5);
  cr_expect_eq(fake_count(&fake, ID), 1, "the upstream was asked once");
}

Test(validators, a_new_body_gets_a_new_etag, .fini = stop_all, .timeout = 60) {
  start_with(NULL);
  struct answer first = ask(ID, NULL);
  fake_control(&fake, "/_fake/version?id=" ID);
  char line[160];
  if_none_match(line, sizeof(line), first.etag);
  struct answer changed = ask_as(NULL, ID, line, "Cache-Control: no-cache");
  cr_expect_eq(changed.status, 200, "the stored body changed: its old ETag does not match");
  cr_expect_str_neq(changed.etag, first.etag);
  struct answer again = ask(ID, line);
  cr_expect_eq(again.status, 200);
  if_none_match(line, sizeof(line), changed.etag);
  cr_expect_eq(ask(ID, line).status, 304);
}

/* A miss whose fetched body matches the client's ETag is a 304 as well: the client polls with
 * its ETag across the entry's expiry and still receives no body. */
Test(validators, a_refetch_of_the_same_body_is_a_304_too, .fini = stop_all, .timeout = 60) {
  struct daemon_options options = {.ttl = 1, .extra_cache = "stale_while_revalidate = 0\n"};
  start_with(&options);
  struct answer first = ask(ID, NULL);
  pause_ms(2100);
  char line[160];
  if_none_match(line, sizeof(line), first.etag);
  struct answer refetched = ask(ID, line);
  cr_expect_eq(refetched.status, 304);
  cr_expect(strstr(refetched.cache_status, "fwd=stale") != NULL, "%s", refetched.cache_status);
  cr_expect_eq(fake_count(&fake, ID), 2);
}

/* --- freshness on every answer --------------------------------------------------------------- */

Test(freshness, every_answer_says_how_long_it_stays_fresh, .fini = stop_all, .timeout = 60) {
  struct daemon_options options = {.ttl = 2, .extra_cache = "stale_while_revalidate = 60\n"};
  start_with(&options);
  struct answer miss = ask(ID, NULL);
  cr_expect_str_eq(miss.cache_control, "private, max-age=2");
  cr_expect_str_eq(miss.age, "0");
  pause_ms(1100);
  struct answer hit = ask(ID, NULL);
  long left = max_age_of(&hit);
  cr_expect(left >= 0 && left <= 1, "the seconds left: %s", hit.cache_control);
  cr_expect_eq(left + atol(hit.age), 2, "max-age and Age add up to the ttl: %s, Age %s",
               hit.cache_control, hit.age);
  pause_ms(2000);
  struct answer stale = ask(ID, NULL);
  /* Times are whole seconds: past its ttl the copy says ttl=0 or less, never more. */
  const char *ttl = strstr(stale.cache_status, "ttl=");
  cr_expect(ttl && atol(ttl + 4) <= 0, "%s", stale.cache_status);
  cr_expect_str_eq(stale.cache_control, "private, max-age=0", "a stale answer says so");
  struct answer bad = ask("not-a-uuid", NULL);
  cr_expect_eq(bad.status, 422);
  cr_expect_str_eq(bad.cache_control, "no-store", "an error is never to be kept");
  cr_expect_str_eq(bad.etag, "");
}

Test(freshness, a_remembered_404_says_its_negative_ttl, .fini = stop_all, .timeout = 60) {
  struct daemon_options options = {.extra_cache = "negative_ttl = 30\n"};
  start_with(&options);
  fake_set_mode(&fake, ID, "404", 0);
  struct answer gone = ask(ID, NULL);
  cr_expect_eq(gone.status, 404);
  cr_expect_str_eq(gone.cache_control, "private, max-age=30");
  cr_expect_str_eq(gone.etag, "", "no ETag on a 404");
}

/* --- request directives ---------------------------------------------------------------------- */

Test(directives, min_fresh_refreshes_a_copy_that_would_expire_too_soon, .fini = stop_all,
     .timeout = 60) {
  struct daemon_options options = {.ttl = 30};
  start_with(&options);
  ask(ID, NULL);
  pause_ms(1100);
  struct answer enough = ask(ID, "Cache-Control: min-fresh=5");
  cr_expect(strncmp(enough.cache_status, "flipcached; hit", 15) == 0, "%s", enough.cache_status);
  struct answer too_soon = ask(ID, "Cache-Control: min-fresh=30");
  cr_expect_str_eq(too_soon.cache_status, "flipcached; fwd=request; stored");
  cr_expect_eq(fake_count(&fake, ID), 2);
  cr_expect_str_eq(too_soon.cache_control, "private, max-age=30", "the new copy");
}

/* max-stale: a copy stale past stale_while_revalidate (only stale_if_error's, which would ask the
 * upstream first) is served at once, while the upstream holds every request. */
Test(directives, max_stale_serves_a_stale_copy_without_waiting, .fini = stop_all, .timeout = 60) {
  struct daemon_options options = {
    .ttl = 1, .extra_cache = "stale_while_revalidate = 0\nstale_if_error = 600\n"};
  start_with(&options);
  ask(ID, NULL);
  pause_ms(2100);
  fake_set_mode(&fake, ID, "hold", 0);
  struct answer too_short = ask(ID2, "Cache-Control: max-stale=1"); /* another id: a miss */
  (void)too_short;
  struct answer stale = ask(ID, "Cache-Control: max-stale=60");
  cr_expect_eq(stale.status, 200);
  cr_expect(strncmp(stale.cache_status, "flipcached; hit; ttl=-", 22) == 0, "%s",
            stale.cache_status);
  cr_expect_str_eq(stale.cache_control, "private, max-age=0");
  cr_expect_eq(stat_of("background_refreshes"), 1, "and one background refresh started");
  struct answer bare = ask(ID, "Cache-Control: max-stale");
  cr_expect(strncmp(bare.cache_status, "flipcached; hit; ttl=-", 22) == 0, "%s", bare.cache_status);
  fake_release(&fake, ID, 0);
}

Test(directives, max_stale_too_short_waits_for_the_upstream, .fini = stop_all, .timeout = 60) {
  struct daemon_options options = {
    .ttl = 1, .extra_cache = "stale_while_revalidate = 0\nstale_if_error = 600\n"};
  start_with(&options);
  ask(ID, NULL);
  pause_ms(3100);
  struct answer fetched = ask(ID, "Cache-Control: max-stale=1");
  cr_expect_str_eq(fetched.cache_status, "flipcached; fwd=stale; stored");
  cr_expect_eq(fake_count(&fake, ID), 2);
}

Test(directives, no_store_keeps_nothing_of_a_miss, .fini = stop_all, .timeout = 60) {
  start_with(NULL);
  struct answer miss = ask(ID, "Cache-Control: no-store");
  cr_expect_eq(miss.status, 200);
  cr_expect_str_eq(miss.cache_status, "flipcached; fwd=uri-miss");
  cr_expect_eq(stat_of("cache_writes"), 0);
  struct answer next = ask(ID, NULL);
  cr_expect_str_eq(next.cache_status, "flipcached; fwd=uri-miss; stored", "nothing was kept");
  struct answer hit = ask(ID, "Cache-Control: no-store");
  cr_expect(strncmp(hit.cache_status, "flipcached; hit", 15) == 0,
            "a stored answer may still serve it: %s", hit.cache_status);
  cr_expect_eq(fake_count(&fake, ID), 2);
}

Test(directives, no_cache_on_a_fresh_copy_is_fwd_request_even_when_the_upstream_fails,
     .fini = stop_all, .timeout = 60) {
  start_with(NULL);
  ask(ID, NULL);
  struct answer refetched = ask(ID, "Cache-Control: no-cache");
  cr_expect_str_eq(refetched.cache_status, "flipcached; fwd=request; stored");
  struct answer pragma = ask(ID, "Pragma: no-cache");
  cr_expect_str_eq(pragma.cache_status, "flipcached; fwd=request; stored", "Pragma as no-cache");
  fake_set_mode(&fake, ID, "500", 0);
  struct answer failed = ask(ID, "Cache-Control: no-cache");
  cr_expect_eq(failed.status, 502, "no-cache asked for a validated answer: none could be had");
  cr_expect_str_eq(failed.cache_status,
                   "flipcached; fwd=request; fwd-status=500; detail=upstream_unavailable");
  struct answer max_age = ask(ID, "Cache-Control: max-age=0");
  cr_expect_eq(max_age.status, 200, "max-age is a preference: the fresh copy covers the failure");
  cr_expect_str_eq(max_age.cache_status, "flipcached; fwd=request; fwd-status=500");
}

/* --- conditional refreshes -------------------------------------------------------------------- */

/* The fake sends `send` validators; the entry expires (ttl 1, no stale window); the refresh is
 * conditional and renewed by a 304 without a body. */
static void expect_renewed_by_304(const char *send) {
  struct daemon_options options = {.ttl = 1, .extra_cache = "stale_while_revalidate = 0\n"};
  start_with(&options);
  char control[64];
  snprintf(control, sizeof(control), "/_fake/validators?send=%s", send);
  fake_control(&fake, control);
  struct answer first = ask(ID, NULL);
  pause_ms(2100);
  struct answer renewed = ask(ID, NULL);
  cr_expect_eq(renewed.status, 200);
  cr_expect_str_eq(renewed.cache_status, "flipcached; fwd=stale; fwd-status=304; stored", "%s", send);
  cr_expect_str_eq(renewed.etag, first.etag, "the same body");
  cr_expect_eq(renewed.body_len, first.body_len);
  cr_expect_str_eq(renewed.cache_control, "private, max-age=1", "fresh again");
  cr_expect_eq(fake_stat(&fake, "conditional_seen"), 1);
  cr_expect_eq(fake_stat(&fake, "not_modified"), 1);
  cr_expect_eq(stat_of("upstream_not_modified"), 1);
  cr_expect(strncmp(ask(ID, NULL).cache_status, "flipcached; hit", 15) == 0);
  /* A changed enrollment: the condition fails, and the new body comes. */
  fake_control(&fake, "/_fake/version?id=" ID);
  struct answer changed = ask(ID, "Cache-Control: no-cache");
  cr_expect_str_eq(changed.cache_status, "flipcached; fwd=request; stored");
  cr_expect_str_neq(changed.etag, first.etag);
  cr_expect_eq(fake_stat(&fake, "conditional_seen"), 2);
  cr_expect_eq(fake_stat(&fake, "not_modified"), 1);
}

Test(conditional_refresh, an_etag_is_sent_back_as_if_none_match, .fini = stop_all, .timeout = 60) {
  expect_renewed_by_304("etag");
}

Test(conditional_refresh, a_last_modified_is_sent_back_as_if_modified_since, .fini = stop_all,
     .timeout = 60) {
  expect_renewed_by_304("last-modified");
}

Test(conditional_refresh, both_are_sent, .fini = stop_all, .timeout = 60) {
  expect_renewed_by_304("both");
}

/* Validators that break their grammar are never sent on: the refresh is unconditional. */
Test(conditional_refresh, malformed_validators_are_dropped, .fini = stop_all, .timeout = 60) {
  struct daemon_options options = {.ttl = 1, .extra_cache = "stale_while_revalidate = 0\n"};
  start_with(&options);
  fake_control(&fake, "/_fake/validators?send=bad");
  ask(ID, NULL);
  pause_ms(2100);
  struct answer refetched = ask(ID, NULL);
  cr_expect_str_eq(refetched.cache_status, "flipcached; fwd=stale; stored");
  cr_expect_eq(fake_stat(&fake, "conditional_seen"), 0);
}

/* A background refresh (stale-while-revalidate) is conditional as well. */
Test(conditional_refresh, a_background_refresh_is_renewed_by_a_304, .fini = stop_all,
     .timeout = 60) {
  struct daemon_options options = {.ttl = 1, .extra_cache = "stale_while_revalidate = 60\n"};
  start_with(&options);
  fake_control(&fake, "/_fake/validators?send=etag");
  ask(ID, NULL);
  pause_ms(2100);
  struct answer stale = ask(ID, NULL);
  cr_expect(strncmp(stale.cache_status, "flipcached; hit; ttl=-", 22) == 0, "%s", stale.cache_status);
  for (int i = 0; i < 100 && stat_of("upstream_not_modified") < 1; i++)
    pause_ms(20);
  cr_expect_eq(stat_of("upstream_not_modified"), 1);
  struct answer fresh = ask(ID, NULL);
  cr_expect(strncmp(fresh.cache_status, "flipcached; hit; ttl=", 21) == 0 &&
                fresh.cache_status[21] != '-',
            "renewed: %s", fresh.cache_status);
}

/* --- docs/http.md's table of every Cache-Status ---------------------------------------------- */

/* A scenario starts its own daemon, asks what the row says and returns that answer. */
struct row_scenario {
  const char *documented; /* the row's value, as docs/http.md has it */
  struct answer (*run)(void);
};

static const struct daemon_options STALE_IF_ERROR_ONLY = {
  .ttl = 1, .extra_cache = "stale_while_revalidate = 0\nstale_if_error = 600\n"};

static struct answer primed_then(const struct daemon_options *options, const char *header) {
  start_with(options);
  ask(ID, NULL);
  return ask(ID, header);
}

/* ID cached, then past its ttl (ttl 1: 2.1 s later). */
static void primed_and_expired(const struct daemon_options *options) {
  start_with(options);
  ask(ID, NULL);
  pause_ms(2100);
}

static struct answer row_hit(void) { return primed_then(NULL, NULL); }

static struct answer row_refresh_ahead(void) {
  struct daemon_options options = {.ttl = 4, .extra_cache = "refresh_ahead = 0.25\n"};
  start_with(&options);
  ask(ID, NULL);
  pause_ms(1200);
  return ask(ID, NULL);
}

static struct answer row_stale_while_revalidate(void) {
  struct daemon_options options = {.ttl = 1, .extra_cache = "stale_while_revalidate = 60\n"};
  primed_and_expired(&options);
  return ask(ID, NULL);
}

static struct answer row_miss(void) {
  start_with(NULL);
  return ask(ID, NULL);
}

static struct answer row_no_store(void) {
  start_with(NULL);
  return ask(ID, "Cache-Control: no-store");
}

static struct answer row_collapsed(void) {
  start_with(NULL);
  fake_set_mode(&fake, ID, "slow", 600);
  char url[256];
  snprintf(url, sizeof(url), "%s/v1/enrollments/%s", daemon_proc.url, ID);
  const char *urls[] = {url, url};
  struct http_response responses[2];
  http_get_concurrently(urls, 2, responses);
  struct answer a = {0};
  for (size_t i = 0; i < 2; i++) {
    char cs[256] = "";
    http_header(&responses[i], "Cache-Status", cs, sizeof(cs));
    if (strstr(cs, "collapsed")) {
      a.status = responses[i].status;
      snprintf(a.cache_status, sizeof(a.cache_status), "%s", cs);
    }
    http_response_free(&responses[i]);
  }
  return a;
}

static struct answer row_404(void) {
  start_with(NULL);
  fake_set_mode(&fake, ID, "404", 0);
  return ask(ID, NULL);
}

static struct answer row_refetched(void) {
  struct daemon_options options = {.ttl = 1, .extra_cache = "stale_while_revalidate = 0\n"};
  primed_and_expired(&options);
  return ask(ID, NULL);
}

static struct answer row_renewed(void) {
  struct daemon_options options = {.ttl = 1, .extra_cache = "stale_while_revalidate = 0\n"};
  start_with(&options);
  fake_control(&fake, "/_fake/validators?send=both");
  ask(ID, NULL);
  pause_ms(2100);
  return ask(ID, NULL);
}

static struct answer row_no_cache(void) { return primed_then(NULL, "Cache-Control: no-cache"); }

static struct answer row_stale_if_error_status(void) {
  primed_and_expired(&STALE_IF_ERROR_ONLY);
  fake_set_mode(&fake, ID, "500", 0);
  return ask(ID, NULL);
}

static struct answer row_stale_if_error_timeout(void) {
  struct daemon_options options = STALE_IF_ERROR_ONLY;
  options.timeout_ms = 400;
  primed_and_expired(&options);
  fake_set_mode(&fake, ID, "slow", 2000);
  return ask(ID, NULL);
}

static struct answer row_max_age_0_failed(void) {
  start_with(NULL);
  ask(ID, NULL);
  fake_set_mode(&fake, ID, "500", 0);
  return ask(ID, "Cache-Control: max-age=0");
}

static struct answer row_no_cache_failed(void) {
  start_with(NULL);
  ask(ID, NULL);
  fake_set_mode(&fake, ID, "500", 0);
  return ask(ID, "Cache-Control: no-cache");
}

static struct answer miss_in_mode(const char *mode, unsigned delay_ms, unsigned timeout_ms) {
  struct daemon_options options = {.timeout_ms = timeout_ms};
  start_with(&options);
  fake_set_mode(&fake, ID, mode, delay_ms);
  return ask(ID, NULL);
}

static struct answer row_miss_5xx(void) { return miss_in_mode("500", 0, 0); }
static struct answer row_miss_timeout(void) { return miss_in_mode("slow", 2000, 400); }
static struct answer row_miss_wrong_id(void) { return miss_in_mode("wrong-id", 0, 0); }
static struct answer row_miss_401(void) { return miss_in_mode("401", 0, 0); }
static struct answer row_miss_429(void) { return miss_in_mode("429", 0, 0); }

static struct answer row_paused_miss(void) {
  row_miss_429();
  return ask(ID2, NULL);
}

static struct answer row_paused_stale(void) {
  start_with(&STALE_IF_ERROR_ONLY);
  ask(ID2, NULL);
  pause_ms(2100);
  fake_set_mode(&fake, ID, "429", 0);
  ask(ID, NULL);
  return ask(ID2, NULL);
}

static struct answer row_circuit_open(void) {
  struct daemon_options options = {
    .extra_upstream = "breaker_failures = 1\nbreaker_cooldown_ms = 60000\n"};
  start_with(&options);
  fake_set_mode(&fake, ID, "500", 0);
  ask(ID, NULL);
  return ask(ID2, NULL);
}

static struct answer row_overloaded(void) {
  struct daemon_options options = {.extra_upstream = "max_fetches = 1\n"};
  start_with(&options);
  fake_set_mode(&fake, "*", "hold", 0);
  int running = raw_ask_enrollment(daemon_proc.port, ID);
  for (int i = 0; i < 200 && fake_stat(&fake, "held") < 1; i++)
    pause_ms(10);
  int queued = raw_ask_enrollment(daemon_proc.port, ID2);
  for (int i = 0; i < 200 && stat_of("fetches_waiting") < 1; i++)
    pause_ms(10);
  struct answer a = ask(ID3, NULL);
  fake_release(&fake, NULL, 0);
  raw_answer_status(running);
  raw_answer_status(queued);
  return a;
}

static struct answer row_client_rate_limited(void) {
  struct daemon_options options = {.miss_rate = 1};
  start_with(&options);
  ask(ID, NULL);
  return ask(ID2, NULL);
}

static struct answer row_not_cached(void) {
  start_with(NULL);
  return ask(ID, "Cache-Control: only-if-cached");
}

static struct answer row_invalid_id(void) {
  start_with(NULL);
  return ask("497f6eca-6276-4993-bfeb-53cbbbba6f0", NULL);
}

static const struct row_scenario ROWS[] = {
  {"flipcached; hit; ttl=N", row_hit},
  {"flipcached; hit; ttl=N; detail=refresh-ahead", row_refresh_ahead},
  {"flipcached; hit; ttl=-N", row_stale_while_revalidate},
  {"flipcached; fwd=uri-miss; stored", row_miss},
  {"flipcached; fwd=uri-miss", row_no_store},
  {"flipcached; fwd=uri-miss; collapsed", row_collapsed},
  {"flipcached; fwd=uri-miss; fwd-status=404; stored", row_404},
  {"flipcached; fwd=stale; stored", row_refetched},
  {"flipcached; fwd=stale; fwd-status=304; stored", row_renewed},
  {"flipcached; fwd=request; stored", row_no_cache},
  {"flipcached; fwd=stale; fwd-status=500", row_stale_if_error_status},
  {"flipcached; fwd=stale; detail=upstream_timeout", row_stale_if_error_timeout},
  {"flipcached; fwd=request; fwd-status=500", row_max_age_0_failed},
  {"flipcached; fwd=request; fwd-status=500; detail=upstream_unavailable", row_no_cache_failed},
  {"flipcached; fwd=uri-miss; fwd-status=500; detail=upstream_unavailable", row_miss_5xx},
  {"flipcached; fwd=uri-miss; detail=upstream_timeout", row_miss_timeout},
  {"flipcached; fwd=uri-miss; fwd-status=200; detail=upstream_invalid_response", row_miss_wrong_id},
  {"flipcached; fwd=uri-miss; fwd-status=401; detail=upstream_auth_failed", row_miss_401},
  {"flipcached; fwd=uri-miss; fwd-status=429; detail=upstream_rate_limited", row_miss_429},
  {"flipcached; detail=upstream_rate_limited", row_paused_miss},
  {"flipcached; hit; ttl=-N; detail=upstream_rate_limited", row_paused_stale},
  {"flipcached; detail=upstream_unavailable", row_circuit_open},
  {"flipcached; detail=overloaded", row_overloaded},
  {"flipcached; detail=client_rate_limited", row_client_rate_limited},
  {"flipcached; detail=not_cached", row_not_cached},
  {"flipcached; detail=invalid_id", row_invalid_id},
};
#define ROW_COUNT (sizeof(ROWS) / sizeof(ROWS[0]))
/* Rows another suite checks: the shared tier's needs Redis (test_fleet.c). */
static const char *const ROWS_ELSEWHERE[] = {
  "flipcached-shared; hit; ttl=N, flipcached; fwd=uri-miss; stored"};

/* The table and the scenarios name the same values, each once. */
Test(cache_status_table, every_documented_row_has_its_request_and_no_other) {
  char values[64][DOC_CACHE_STATUS_MAX];
  long statuses[64];
  size_t rows = documented_cache_statuses(values, statuses, 64);
  cr_assert_eq(rows, ROW_COUNT + 1, "docs/http.md has %zu rows, the scenarios %zu (+1 elsewhere)",
               rows, ROW_COUNT);
  for (size_t r = 0; r < rows; r++) {
    size_t found = strcmp(values[r], ROWS_ELSEWHERE[0]) == 0;
    for (size_t s = 0; s < ROW_COUNT; s++)
      found += strcmp(values[r], ROWS[s].documented) == 0;
    cr_expect_eq(found, 1, "docs/http.md's row `%s` has %zu scenarios", values[r], found);
  }
}

ParameterizedTestParameters(cache_status_table, each_row_is_what_its_request_gets) {
  static size_t indexes[ROW_COUNT];
  for (size_t i = 0; i < ROW_COUNT; i++)
    indexes[i] = i;
  return cr_make_param_array(size_t, indexes, ROW_COUNT);
}

ParameterizedTest(size_t *index, cache_status_table, each_row_is_what_its_request_gets,
                  .fini = stop_all, .timeout = 60) {
  const struct row_scenario *row = &ROWS[*index];
  char values[64][DOC_CACHE_STATUS_MAX];
  long statuses[64];
  size_t rows = documented_cache_statuses(values, statuses, 64);
  long status = -1;
  for (size_t r = 0; r < rows; r++)
    if (strcmp(values[r], row->documented) == 0)
      status = statuses[r];
  cr_assert_neq(status, -1, "`%s` is not in docs/http.md", row->documented);
  struct answer got = row->run();
  cr_expect(cache_status_matches(row->documented, got.cache_status),
            "documented `%s`, sent `%s`", row->documented, got.cache_status);
  cr_expect_eq(got.status, status, "`%s`: documented %ld, answered %ld", row->documented, status,
               got.status);
}

/* --- real client libraries that cache ---------------------------------------------------------- */

/* curl's own ETag cache: the second poll sends the saved ETag and costs a 304. */
Test(clients, curl_etag_compare_polls_with_a_304, .fini = stop_all, .timeout = 60) {
  start_with(NULL);
  char command[2048], out[256], url[256];
  snprintf(url, sizeof(url), "%s/v1/enrollments/%s", daemon_proc.url, ID);
  snprintf(command, sizeof(command),
           "curl -s -o /dev/null -w '%%{http_code}' --etag-save %s/etag %s && echo &&"
           " curl -s -o /dev/null -w '%%{http_code}' --etag-compare %s/etag %s",
           daemon_proc.dir, url, daemon_proc.dir, url);
  cr_assert_eq(run_command(command, out, sizeof(out)), 0, "%s", out);
  cr_expect_str_eq(out, "200\n304", "curl saw: %s", out);
  cr_expect_eq(stat_of("not_modified"), 1);
}

/* requests with CacheControl: the first poll stores the answer (private, max-age=1); once it is
 * stale the library revalidates with If-None-Match, and the daemon's 304 lets it reuse its body. */
Test(clients, python_cachecontrol_revalidates_with_a_304, .fini = stop_all, .timeout = 60) {
  struct daemon_options options = {.ttl = 1};
  start_with(&options);
  char command[2048], out[512], url[256];
  snprintf(url, sizeof(url), "%s/v1/enrollments/%s", daemon_proc.url, ID);
  snprintf(command, sizeof(command), "/usr/bin/python3 %s/tests/clients/poll_cachecontrol.py %s 3 1.6",
           SOURCE_DIR, url);
  cr_assert_eq(run_command(command, out, sizeof(out)), 0, "%s", out);
  cr_expect(strstr(out, "\"statuses\": [200, 200, 200]") != NULL, "%s", out);
  cr_expect(strstr(out, "\"from_cache\": [false, true, true]") != NULL,
            "the later polls reused the library's copy: %s", out);
  cr_expect(strstr(out, "\"same_body\": true") != NULL, "%s", out);
  cr_expect_eq(stat_of("not_modified"), 2, "each revalidation cost a 304, no body");
}
