/* Cache semantics against the fake upstream: coalescing, stale-while-revalidate, stale-if-error,
 * negative caching, a bounded map, the sweeper, purge and inspect, offline start. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "harness.h"

#define ID "497f6eca-6276-4993-bfeb-53cbbbba6f08"
#define ID2 "0b7a2c1e-2f3d-4e5f-8a9b-0c1d2e3f4a5b"

/* A fresh hit, whatever second of its ttl it is in. */
static bool is_fresh_hit(const struct http_response *response);

static char *cache_status_of(const struct http_response *response) {
  static char value[256];
  value[0] = '\0';
  http_header(response, "Cache-Status", value, sizeof(value));
  return value;
}

static bool is_fresh_hit(const struct http_response *response) {
  char value[256] = "";
  http_header(response, "Cache-Status", value, sizeof(value));
  return strncmp(value, "flipcached; hit; ttl=", 21) == 0 && value[21] != '-';
}

/* Waits (bounded) until the fake has seen `count` requests for id. */
static void wait_for_upstream_count(const char *id, long count) {
  for (int i = 0; i < 200 && fake_count(&fake, id) < count; i++)
    pause_ms(25);
}

static void prime(const char *id) {
  struct http_response response;
  get_enrollment(id, &response);
  cr_assert_eq(response.status, 200);
  http_response_free(&response);
}

/* --- coalescing -------------------------------------------------------------------------------- */

Test(coalescing, hundred_concurrent_misses_make_one_upstream_request, .fini = stop_all, .timeout = 60) {
  start_with(NULL);
  fake_set_mode(&fake, ID, "slow", 600);
  char url[256];
  snprintf(url, sizeof(url), "%s/v1/enrollments/%s", daemon_proc.url, ID);
  const char *urls[100];
  for (size_t i = 0; i < 100; i++)
    urls[i] = url;
  struct http_response responses[100];
  http_get_concurrently(urls, 100, responses);
  size_t stored = 0, collapsed = 0;
  for (size_t i = 0; i < 100; i++) {
    cr_expect_eq(responses[i].status, 200, "response %zu: %ld", i, responses[i].status);
    cr_expect(responses[i].body && strstr(responses[i].body, "\"id\":\"" ID "\""));
    const char *cs = cache_status_of(&responses[i]);
    stored += strcmp(cs, "flipcached; fwd=uri-miss; stored") == 0;
    collapsed += strcmp(cs, "flipcached; fwd=uri-miss; collapsed") == 0;
    http_response_free(&responses[i]);
  }
  cr_expect_eq(fake_count(&fake, ID), 1, "exactly one upstream request");
  cr_expect_eq(stored, 1, "one request caused the fetch and stored it");
  cr_expect_eq(collapsed, 99, "the others were collapsed into it");
  cr_expect_eq(stat_of("coalesced"), 99);
  cr_expect_eq(stat_of("upstream_requests"), 1);
}

Test(coalescing, one_error_answers_every_waiter, .fini = stop_all, .timeout = 60) {
  start_with(NULL);
  fake_set_mode(&fake, ID, "500", 400);
  char url[256];
  snprintf(url, sizeof(url), "%s/v1/enrollments/%s", daemon_proc.url, ID);
  const char *urls[20];
  for (size_t i = 0; i < 20; i++)
    urls[i] = url;
  struct http_response responses[20];
  http_get_concurrently(urls, 20, responses);
  for (size_t i = 0; i < 20; i++) {
    cr_expect_eq(responses[i].status, 502);
    cr_expect(strstr(responses[i].body, "\"code\":\"upstream_unavailable\"") != NULL);
    http_response_free(&responses[i]);
  }
  cr_expect_eq(fake_count(&fake, ID), 1);
}

/* Waiters that hang up are answered (and so freed) when the fetch ends; the fetch goes on and is
 * stored. The daemon exits 0 afterwards, which under AddressSanitizer also means no leak. */
Test(coalescing, waiters_that_hang_up_are_harmless, .fini = stop_all, .timeout = 60) {
  start_with(NULL);
  fake_set_mode(&fake, ID, "slow", 500);
  const char request[] = "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  int fds[200];
  for (int i = 0; i < 200; i++)
    fds[i] = raw_send(daemon_proc.port, request, sizeof(request) - 1);
  pause_ms(150);
  for (int i = 0; i < 200; i++)
    close(fds[i]);
  wait_for_upstream_count(ID, 1);
  pause_ms(600);
  struct http_response response;
  get_enrollment(ID, &response);
  cr_expect_eq(response.status, 200);
  cr_expect(is_fresh_hit(&response), "got %s", cache_status_of(&response));
  http_response_free(&response);
  cr_expect_eq(fake_count(&fake, ID), 1);
  cr_expect_eq(stat_of("coalesced"), 199);
}

/* --- stale-while-revalidate ------------------------------------------------------------------- */

Test(stale_while_revalidate, stale_copy_at_once_and_exactly_one_refresh, .fini = stop_all,
     .timeout = 60) {
  struct daemon_options options = {.ttl = 1, .extra_cache = "stale_while_revalidate = 60\nstale_if_error = 0\n"};
  start_with(&options);
  prime(ID);
  pause_ms(2100); /* past ttl, within stale_while_revalidate */
  fake_set_mode(&fake, ID, "slow", 1500);

  /* A client that gives up after 1 s still gets its answer: the stale copy did not wait for the
   * 1.5 s upstream. */
  char url[256];
  snprintf(url, sizeof(url), "%s/v1/enrollments/%s", daemon_proc.url, ID);
  for (int i = 0; i < 5; i++) {
    struct http_response response;
    http_get_within(url, 1000, &response);
    cr_expect_eq(response.status, 200, "request %d waited for the upstream", i);
    cr_expect(strncmp(cache_status_of(&response), "flipcached; hit; ttl=-", 22) == 0, "got '%s'",
              cache_status_of(&response));
    char age[16] = "";
    cr_expect(http_header(&response, "Age", age, sizeof(age)) && atoi(age) >= 2, "Age %s", age);
    http_response_free(&response);
  }
  wait_for_upstream_count(ID, 2);
  pause_ms(1700); /* the refresh completes and is stored */
  cr_expect_eq(fake_count(&fake, ID), 2, "exactly one background refresh");
  cr_expect_eq(stat_of("background_refreshes"), 1);
  cr_expect_eq(stat_of("stale_served"), 5);
}

/* --- stale-if-error --------------------------------------------------------------------------- */

static void expect_stale_copy(const char *expected_cache_status) {
  struct http_response response;
  get_enrollment(ID, &response);
  cr_expect_eq(response.status, 200, "a stale copy, not the error");
  cr_expect(strstr(response.body, "\"id\":\"" ID "\"") != NULL);
  cr_expect_str_eq(cache_status_of(&response), expected_cache_status);
  char age[16] = "";
  cr_expect(http_header(&response, "Age", age, sizeof(age)) && atoi(age) >= 2, "Age %s", age);
  http_response_free(&response);
}

/* timeout_ms 1000, not less: under load (ASan, parallel suites) a refused connect and its retry
 * could outlast a 300 ms budget and be reported as a timeout instead. */
Test(stale_if_error, failures_get_the_stale_copy, .fini = stop_all, .timeout = 60) {
  struct daemon_options options = {.ttl = 1, .timeout_ms = 1000,
                                   .extra_cache = "stale_while_revalidate = 0\nstale_if_error = 600\n"};
  start_with(&options);
  prime(ID);
  pause_ms(2100);
  fake_set_mode(&fake, ID, "500", 0);
  expect_stale_copy("flipcached; fwd=stale; fwd-status=500");
  fake_set_mode(&fake, ID, "garbage", 0);
  expect_stale_copy("flipcached; fwd=stale; fwd-status=200; detail=upstream_invalid_response");
  fake_set_mode(&fake, ID, "slow", 2000);
  expect_stale_copy("flipcached; fwd=stale; detail=upstream_timeout");
  fake_stop(&fake);
  expect_stale_copy("flipcached; fwd=stale; detail=upstream_unavailable");
  cr_expect_eq(stat_of("stale_served"), 4);
  /* each answer counted once: the priming miss, then four stale copies */
  cr_expect_eq(stat_of("misses"), 1, "a stale copy served for a failure is not also a miss");
  cr_expect_eq(stat_of("hits") + stat_of("stale_served") + stat_of("negative_hits") +
                   stat_of("misses"),
               stat_of("enrollment_requests"));
}

/* A 429 is a failure too; and it pauses the upstream, so the next request is not even sent: the
 * stale copy answers as a stale hit. */
Test(stale_if_error, a_429_gets_the_stale_copy_and_pauses_the_upstream, .fini = stop_all,
     .timeout = 60) {
  struct daemon_options options = {.ttl = 1,
                                   .extra_cache = "stale_while_revalidate = 0\nstale_if_error = 600\n"};
  start_with(&options);
  prime(ID);
  pause_ms(2100);
  fake_set_mode(&fake, ID, "429", 0);
  expect_stale_copy("flipcached; fwd=stale; fwd-status=429");
  struct http_response response;
  get_enrollment(ID, &response);
  cr_expect_eq(response.status, 200);
  cr_expect(strncmp(cache_status_of(&response), "flipcached; hit; ttl=-", 22) == 0 &&
                strstr(cache_status_of(&response), "; detail=upstream_rate_limited") != NULL,
            "got %s", cache_status_of(&response));
  http_response_free(&response);
  cr_expect_eq(fake_count(&fake, ID), 2, "nothing was sent during the pause");
}

Test(stale_if_error, past_every_window_the_error_is_returned, .fini = stop_all, .timeout = 60) {
  struct daemon_options options = {.ttl = 1,
                                   .extra_cache = "stale_while_revalidate = 0\nstale_if_error = 1\n"};
  start_with(&options);
  prime(ID);
  pause_ms(3100); /* past ttl (1 s) and stale_if_error (1 s more) */
  fake_set_mode(&fake, ID, "500", 0);
  struct http_response response;
  get_enrollment(ID, &response);
  cr_expect_eq(response.status, 502);
  cr_expect(strstr(response.body, "\"code\":\"upstream_unavailable\"") != NULL);
  http_response_free(&response);
}

/* --- negative caching ------------------------------------------------------------------------- */

Test(negative_caching, a_404_is_remembered_for_negative_ttl, .fini = stop_all, .timeout = 60) {
  struct daemon_options options = {.extra_cache = "negative_ttl = 1\n"};
  start_with(&options);
  fake_set_mode(&fake, ID, "404", 0);
  struct http_response first, second, third;
  get_enrollment(ID, &first);
  cr_expect_eq(first.status, 404);
  cr_expect_str_eq(cache_status_of(&first), "flipcached; fwd=uri-miss; fwd-status=404; stored");
  get_enrollment(ID, &second);
  cr_expect_eq(second.status, 404);
  cr_expect(strncmp(cache_status_of(&second), "flipcached; hit; ttl=", 21) == 0, "%s",
            cache_status_of(&second));
  cr_expect_str_eq(second.body, first.body);
  cr_expect_eq(fake_count(&fake, ID), 1, "the 404 was remembered");
  cr_expect_eq(stat_of("negative_hits"), 1);
  pause_ms(2100); /* past negative_ttl: asked again, and the enrollment exists now */
  fake_set_mode(&fake, ID, "ok", 0);
  get_enrollment(ID, &third);
  cr_expect_eq(third.status, 200);
  cr_expect_eq(fake_count(&fake, ID), 2);
  http_response_free(&first);
  http_response_free(&second);
  http_response_free(&third);
}

Test(negative_caching, errors_are_never_stored, .fini = stop_all, .timeout = 60) {
  start_with(NULL);
  const char *modes[] = {"401", "500", "429"};
  for (size_t i = 0; i < 3; i++) {
    fake_set_mode(&fake, ID, modes[i], 0);
    for (int attempt = 0; attempt < 2; attempt++) {
      struct http_response response;
      get_enrollment(ID, &response);
      cr_expect_neq(response.status, 200);
      http_response_free(&response);
    }
  }
  /* 401 and 500 twice each reached the upstream (nothing stored to answer from); after the first
   * 429 the upstream is paused, so the second never left the daemon. */
  cr_expect_eq(fake_count(&fake, ID), 5);
  cr_expect_eq(stat_of("cache_entries"), 0);
}

/* --- a bounded map ----------------------------------------------------------------------------- */

/* The case: a 4 MiB map (about 2,500 entries) filled with 9,000 distinct misses. Once
 * full it stays at or above 70% of its peak, keeps the newest entries and not the oldest, never
 * skips a write and never recreates its file. */
Test(bounded_size, a_small_map_filled_many_times_over_stays_full_of_the_newest, .fini = stop_all,
     .timeout = 300) {
  struct daemon_options options = {.max_size = "4M", .log_level = "info"};
  start_with(&options);
  char url[256];
  int failures = 0;
  long peak = 0, lowest_after_full = -1;
  const unsigned total = 9000;
  for (unsigned i = 0; i < total; i++) {
    snprintf(url, sizeof(url), "%s/v1/enrollments/%08x-0000-4000-8000-000000000000",
             daemon_proc.url, i);
    struct http_response response;
    http_get(url, &response);
    failures += response.status != 200;
    http_response_free(&response);
    if (i % 50 == 49) {
      long entries = stat_of("cache_entries");
      if (entries > peak)
        peak = entries;
      if (stat_of("evictions") > 0 && (lowest_after_full < 0 || entries < lowest_after_full))
        lowest_after_full = entries;
    }
  }
  cr_expect_eq(failures, 0, "every request answered 200");
  cr_assert_gt(stat_of("evictions"), 0, "the map filled");
  cr_expect_geq(lowest_after_full * 100, peak * 70, "entries fell to %ld of a peak of %ld",
                lowest_after_full, peak);
  long kept = stat_of("cache_entries");
  cr_expect_eq(stat_of("cache_writes"), total);
  cr_expect_eq(stat_of("cache_write_errors"), 0, "no write failed");
  cr_expect_eq(stat_of("cache_full_skips"), 0, "room was made before the map was full");
  cr_expect_eq(stat_of("evictions"), (long)total - kept);
  cr_expect_leq(stat_of("cache_bytes"), 4 << 20);
  /* the newest `kept` are in the cache, the older ones are not (sampled: every 7th id) */
  for (unsigned i = 0; i < total; i += 7) {
    snprintf(url, sizeof(url), "%s/cache/enrollments/%08x-0000-4000-8000-000000000000",
             daemon_proc.url, i);
    struct http_response response;
    http_get(url, &response);
    cr_expect_eq(response.status, i >= total - (unsigned)kept ? 200 : 404, "entry %u of %u, %ld kept",
                 i, total, kept);
    http_response_free(&response);
  }
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, "recreat") == NULL && strstr(log, "MDB_MAP_FULL") == NULL, "%s", log);
  free(log);
  cr_expect_eq(stat_of("cache_rebuilds"), 0);
  cr_log_info("%u entries through 4 MiB: peak %ld, lowest once full %ld, kept %ld", total, peak,
              lowest_after_full, kept);
}

Test(bounded_size, the_sweeper_removes_entries_past_every_window, .fini = stop_all, .timeout = 60) {
  struct daemon_options options = {
    .ttl = 1, .extra_cache = "stale_while_revalidate = 0\nstale_if_error = 0\nsweep_interval = 1\n"};
  start_with(&options);
  for (unsigned i = 0; i < 5; i++) {
    char id[40];
    snprintf(id, sizeof(id), "%08x-0000-4000-8000-000000000000", i);
    prime(id);
  }
  cr_expect_eq(stat_of("cache_entries"), 5);
  for (int i = 0; i < 100 && stat_of("cache_entries") > 0; i++)
    pause_ms(50);
  cr_expect_eq(stat_of("cache_entries"), 0);
  cr_expect_eq(stat_of("expired_removed"), 5);
}

/* --- purge and inspect -------------------------------------------------------------------------- */

static void data_file(char *path, size_t len) { snprintf(path, len, "%s/cache/data.mdb", daemon_proc.dir); }

Test(admin, inspect_shows_the_record_without_asking_upstream, .fini = stop_all, .timeout = 60) {
  start_with(NULL);
  char url[256];
  url_of(url, sizeof(url), "/cache/enrollments/" ID);
  struct http_response response;
  http_get(url, &response);
  cr_expect_eq(response.status, 404, "nothing cached yet");
  http_response_free(&response);
  prime(ID);
  http_get(url, &response);
  cr_assert_eq(response.status, 200);
  cr_expect(strstr(response.body, "\"state\":\"fresh\"") != NULL, "%s", response.body);
  cr_expect_eq(json_field(response.body, "upstream_status"), 200);
  cr_expect_gt(json_field(response.body, "body_bytes"), 1000);
  long ttl_seconds = json_field(response.body, "ttl_seconds");
  cr_expect(ttl_seconds >= 298 && ttl_seconds <= 300, "ttl_seconds %ld", ttl_seconds);
  cr_expect(strstr(response.body, "\"fetched_at\":\"20") != NULL);
  http_response_free(&response);
  cr_expect_eq(fake_count(&fake, ID), 1, "inspecting never contacts upstream");

  fake_set_mode(&fake, ID2, "404", 0);
  {
    struct http_response missing;
    get_enrollment(ID2, &missing);
    cr_expect_eq(missing.status, 404);
    http_response_free(&missing);
  }
  url_of(url, sizeof(url), "/cache/enrollments/" ID2);
  http_get(url, &response);
  cr_expect(strstr(response.body, "\"state\":\"negative\"") != NULL, "%s", response.body);
  http_response_free(&response);

  url_of(url, sizeof(url), "/cache/enrollments/nope");
  http_get(url, &response);
  cr_expect_eq(response.status, 422);
  http_response_free(&response);
  url_of(url, sizeof(url), "/cache");
  http_request("POST", url, NULL, &response);
  cr_expect_eq(response.status, 405);
  char allow[32];
  cr_expect(http_header(&response, "Allow", allow, sizeof(allow)) && strcmp(allow, "GET, DELETE") == 0,
            "GET /cache lists the entries (issue 15): %s", allow);
  http_response_free(&response);
}

/* One entry goes in one short transaction: the file is not rewritten (its freed pages keep the
 * old bytes until LMDB reuses them, as the README says), the entry is never served again. */
Test(admin, delete_one_removes_the_entry_and_leaves_the_others, .fini = stop_all, .timeout = 60) {
  start_with(NULL);
  prime(ID);
  prime(ID2);
  char url[256];
  url_of(url, sizeof(url), "/cache/enrollments/" ID);
  struct http_response response;
  http_request("DELETE", url, NULL, &response);
  cr_expect_eq(response.status, 200, "%s", response.body);
  cr_expect(strstr(response.body, "\"deleted\":true") != NULL, "%s", response.body);
  http_response_free(&response);
  http_get(url, &response);
  cr_expect_eq(response.status, 404, "inspect: gone");
  http_response_free(&response);
  http_request("DELETE", url, NULL, &response);
  cr_expect_eq(response.status, 404, "already gone");
  http_response_free(&response);
  cr_expect_eq(stat_of("cache_entries"), 1);
  cr_expect_eq(stat_of("purged"), 1);

  get_enrollment(ID2, &response);
  cr_expect(is_fresh_hit(&response), "got %s", cache_status_of(&response));
  http_response_free(&response);
  get_enrollment(ID, &response);
  cr_expect_str_eq(cache_status_of(&response), "flipcached; fwd=uri-miss; stored");
  http_response_free(&response);
  cr_expect_eq(fake_count(&fake, ID), 2, "fetched again after the delete");
}

/* A GET whose fetch is in flight, then a DELETE (of the id, or of everything): the GET is
 * answered, but the result is not stored. */
static void expect_delete_wins_over_the_fetch(const char *delete_path) {
  start_with(NULL);
  fake_set_mode(&fake, ID, "slow", 1500);
  static const char request[] = "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  int fd = raw_send(daemon_proc.port, request, sizeof(request) - 1);
  wait_for_upstream_count(ID, 1);
  pause_ms(50);
  char url[256];
  url_of(url, sizeof(url), delete_path);
  struct http_response response;
  http_request("DELETE", url, NULL, &response);
  cr_expect(response.status == 200 || response.status == 404, "%ld", response.status);
  http_response_free(&response);
  char answer[8192];
  size_t len = raw_read_response(fd, answer, sizeof(answer), 5000);
  close(fd);
  cr_assert_gt(len, 0);
  cr_expect(strncmp(answer, "HTTP/1.1 200", 12) == 0, "the waiter is answered: %.80s", answer);
  cr_expect(strstr(answer, "; stored") == NULL, "nothing stored: %.300s", answer);
  cr_expect_eq(stat_of("cache_entries"), 0);
  url_of(url, sizeof(url), "/cache/enrollments/" ID);
  http_get(url, &response);
  cr_expect_eq(response.status, 404, "not in the cache");
  http_response_free(&response);
  fake_set_mode(&fake, ID, "ok", 0);
  get_enrollment(ID, &response);
  cr_expect_str_eq(cache_status_of(&response), "flipcached; fwd=uri-miss; stored");
  http_response_free(&response);
}

Test(admin, a_delete_wins_over_a_fetch_in_flight, .fini = stop_all, .timeout = 60) {
  expect_delete_wins_over_the_fetch("/cache/enrollments/" ID);
}

Test(admin, a_full_purge_wins_over_a_fetch_in_flight, .fini = stop_all, .timeout = 60) {
  expect_delete_wins_over_the_fetch("/cache");
}

Test(admin, delete_all_empties_the_cache_and_the_file, .fini = stop_all, .timeout = 60) {
  start_with(NULL);
  prime(ID);
  prime(ID2);
  char path[400];
  data_file(path, sizeof(path));
  cr_assert(file_contains(path, ID));
  char url[256];
  url_of(url, sizeof(url), "/cache");
  struct http_response response;
  http_request("DELETE", url, NULL, &response);
  cr_expect_eq(response.status, 200);
  cr_expect_eq(json_field(response.body, "deleted"), 2);
  http_response_free(&response);
  cr_expect_not(file_contains(path, ID));
  cr_expect_not(file_contains(path, ID2));
  /* the old file is deleted off the loop, at once: no file in the directory holds them */
  char command[600], out[512];
  snprintf(command, sizeof(command), "grep -rl -e " ID " -e " ID2 " %s/cache", daemon_proc.dir);
  int found = 0;
  for (int i = 0; i < 40 && (found = run_command(command, out, sizeof(out))) == 0; i++)
    pause_ms(50);
  cr_expect_neq(found, 0, "a file still holds a purged entry: %s", out);
  cr_expect_eq(stat_of("cache_entries"), 0);
  get_enrollment(ID, &response);
  cr_expect_str_eq(cache_status_of(&response), "flipcached; fwd=uri-miss; stored");
  http_response_free(&response);
}

Test(admin, routes_are_absent_when_admin_is_off, .fini = stop_all, .timeout = 60) {
  fake.pid = 0;
  struct daemon_options options = {.base_url = "http://127.0.0.1:9"};
  flipcached_prepare(&daemon_proc, NULL, &options);
  FILE *file = fopen(daemon_proc.config, "a");
  fputs("[server]\nadmin = no\n", file); /* a second [server] section is allowed */
  fclose(file);
  flipcached_launch(&daemon_proc);
  char url[256];
  url_of(url, sizeof(url), "/cache");
  struct http_response response;
  http_request("DELETE", url, NULL, &response);
  cr_expect_eq(response.status, 404);
  http_response_free(&response);
  url_of(url, sizeof(url), "/cache/enrollments/" ID);
  http_get(url, &response);
  cr_expect_eq(response.status, 404);
  http_response_free(&response);
}

/* --- offline start --------------------------------------------------------------------------- */

Test(offline, restart_with_the_upstream_down_still_serves, .fini = stop_all, .timeout = 60) {
  struct daemon_options options = {.extra_cache = "stale_if_error = 600\n"};
  start_with(&options);
  prime(ID);
  cr_assert_eq(flipcached_stop(&daemon_proc), 0);
  fake_stop(&fake);
  flipcached_launch(&daemon_proc);
  struct http_response response;
  get_enrollment(ID, &response);
  cr_expect_eq(response.status, 200);
  cr_expect(is_fresh_hit(&response), "got %s", cache_status_of(&response));
  http_response_free(&response);
  get_enrollment(ID2, &response);
  cr_expect_eq(response.status, 502, "what was never cached needs the upstream");
  http_response_free(&response);
}

/* --- refresh-ahead ---------------------------------------------------------------------------- */

/* A hot id asked every quarter second over three ttls: with refresh_ahead = 0.5 it is refreshed
 * before it expires (by the schedule, being hot; or by a hit past half its ttl), so no answer is
 * ever stale or a miss; with it off, the same loop meets a stale copy once the ttl has run out.
 * Returns the answers that were not a fresh hit, and how many said detail=refresh-ahead. */
static int hot_id_loop(const char *refresh_ahead, int *refresh_ahead_hits) {
  char extra[128];
  snprintf(extra, sizeof(extra), "refresh_ahead = %s\nstale_while_revalidate = 60\n", refresh_ahead);
  struct daemon_options options = {.ttl = 2, .extra_cache = extra};
  start_with(&options);
  prime(ID);
  int not_fresh = 0;
  *refresh_ahead_hits = 0;
  for (int i = 0; i < 24; i++) { /* 6 s: three ttls */
    pause_ms(250);
    struct http_response response;
    get_enrollment(ID, &response);
    if (response.status != 200 || !is_fresh_hit(&response))
      not_fresh++; /* a stale copy at the very second of expiry says ttl=0: stale_served counts it */
    if (strstr(cache_status_of(&response), "detail=refresh-ahead"))
      (*refresh_ahead_hits)++;
    http_response_free(&response);
  }
  return not_fresh;
}

Test(refresh_ahead, a_hot_id_never_gets_anything_but_a_fresh_hit, .fini = stop_all, .timeout = 60) {
  int started;
  cr_expect_eq(hot_id_loop("0.5", &started), 0, "an answer was stale or a miss");
  cr_expect_eq(stat_of("stale_served"), 0, "a stale copy was served");
  cr_expect_eq(stat_of("refresh_ahead"), started, "hit-started refreshes say so in Cache-Status");
  long refreshes = stat_of("refresh_ahead") + stat_of("refresh_scheduled");
  cr_expect_geq(refreshes, 2);
  long fetched = fake_count(&fake, ID);
  cr_expect(fetched >= 3 && fetched <= 1 + refreshes, "%ld upstream requests for %ld refreshes",
            fetched, refreshes);
  cr_expect_leq(fetched, 8, "one fetch at most each second (ttl 2 s less its 1 s lead): %ld",
                fetched);
  cr_expect_eq(stat_of("misses"), 1, "only the first request");
  long scheduled = refreshes;
  cr_expect_eq(stat_of("refresh_unused"), 0, "every refresh was asked for");
  cr_expect_geq(stat_of("refresh_used"), scheduled - 1, "all but one still awaited: %ld of %ld",
                stat_of("refresh_used"), scheduled);
}

/* The schedule predicts: an entry whose id is expected to be asked at least three times in its
 * next ttl (its rate since the daemon started, which is younger than the rate's horizon of four
 * ttls) is refreshed before it expires, even with no hit late in its life; one expected to be
 * asked less is left to expire. ttl 6, refresh_ahead 0.5: due 3 s before expiry (the lead is
 * timeout_ms, 5 s, at most half the ttl). `quiet_ms` passes before the first request, so that
 * the same requests make a lower rate. */
static void asked_then_silent(int hits, int quiet_ms) {
  struct daemon_options options = {.ttl = 6, .extra_cache = "refresh_ahead = 0.5\n"};
  start_with(&options);
  pause_ms(quiet_ms);
  prime(ID);
  for (int i = 0; i < hits; i++) {
    pause_ms(300);
    struct http_response response;
    get_enrollment(ID, &response);
    cr_assert(is_fresh_hit(&response));
    http_response_free(&response);
  }
  pause_ms(7200 - 300 * hits); /* a second past the first entry's ttl, no hit in its last half */
}

Test(refresh_ahead, an_entry_asked_often_is_refreshed_before_it_expires_without_a_late_hit,
     .fini = stop_all, .timeout = 60) {
  asked_then_silent(4, 0); /* 5 requests in the first 3 s: 10 expected in a ttl */
  cr_expect_eq(stat_of("refresh_scheduled"), 1);
  cr_expect_eq(stat_of("refresh_ahead"), 0, "no hit came past half the ttl");
  cr_expect_eq(fake_count(&fake, ID), 2);
  cr_expect_eq(stat_of("refresh_used"), 0, "not asked for yet");
  struct http_response response;
  get_enrollment(ID, &response);
  cr_expect(is_fresh_hit(&response), "the refreshed entry: %s", cache_status_of(&response));
  http_response_free(&response);
  cr_expect_eq(stat_of("stale_served"), 0);
  cr_expect_eq(stat_of("refresh_used"), 1, "the refresh was asked for");
  cr_expect_eq(stat_of("refresh_unused"), 0);
}

Test(refresh_ahead, an_entry_asked_less_than_three_times_a_ttl_is_left_to_expire,
     .fini = stop_all, .timeout = 60) {
  asked_then_silent(1, 5000); /* 2 requests in the daemon's first 8 s: 1.5 expected in a ttl */
  cr_expect_eq(stat_of("refresh_scheduled"), 0);
  cr_expect_eq(stat_of("refresh_ahead"), 0, "nor by the hit trigger");
  cr_expect_eq(fake_count(&fake, ID), 1);
  struct http_response response;
  get_enrollment(ID, &response);
  cr_expect(!is_fresh_hit(&response), "expired, as without refresh-ahead: %s",
            cache_status_of(&response));
  http_response_free(&response);
}

/* An id asked four times a second for half a second, then never again (ttl 2, lead 1 s): it is
 * refreshed while its rate says so, but a refresh nobody asks for is counted unused and not
 * repeated, so the silent id stops costing fetches within a ttl or two. */
Test(refresh_ahead, a_refresh_nobody_asks_for_is_counted_and_not_repeated, .fini = stop_all,
     .timeout = 60) {
  struct daemon_options options = {.ttl = 2};
  start_with(&options);
  prime(ID);
  for (int i = 0; i < 2; i++) {
    pause_ms(250);
    struct http_response response;
    get_enrollment(ID, &response);
    http_response_free(&response);
  }
  pause_ms(6000); /* three ttls of silence */
  long scheduled = stat_of("refresh_scheduled") + stat_of("refresh_ahead");
  cr_expect(scheduled >= 1 && scheduled <= 2, "%ld refreshes", scheduled);
  cr_expect_geq(stat_of("refresh_unused"), 1);
  cr_expect_eq(stat_of("refresh_used") + stat_of("refresh_unused"), scheduled,
               "each refresh is counted once, used or not");
  cr_expect_eq(fake_count(&fake, ID), 1 + scheduled);
  cr_expect_eq(stat_of("hot_scheduled"), 0, "the silent id has left the schedule");
}

Test(refresh_ahead, off_the_same_hot_id_meets_stale_copies, .fini = stop_all, .timeout = 60) {
  int started;
  hot_id_loop("0", &started);
  cr_expect_geq(stat_of("stale_served"), 2, "without refresh-ahead the ttl runs out each time");
  cr_expect_eq(started, 0);
  cr_expect_eq(stat_of("refresh_ahead"), 0);
}

/* A refresh that fails leaves the entry as it was: still fresh until its own ttl, still served. */
Test(refresh_ahead, a_failed_refresh_leaves_the_entry_as_it_was, .fini = stop_all, .timeout = 60) {
  struct daemon_options options = {.ttl = 4, .extra_cache = "refresh_ahead = 0.25\n"};
  start_with(&options);
  prime(ID);
  fake_set_mode(&fake, ID, "500", 0);
  pause_ms(1200);
  struct http_response response;
  get_enrollment(ID, &response);
  cr_expect(is_fresh_hit(&response) && strstr(cache_status_of(&response), "detail=refresh-ahead"),
            "%s", cache_status_of(&response));
  http_response_free(&response);
  wait_for_upstream_count(ID, 2);
  pause_ms(100);
  get_enrollment(ID, &response);
  cr_expect_eq(response.status, 200);
  cr_expect(is_fresh_hit(&response), "the failed refresh took the entry away: %s",
            cache_status_of(&response));
  char age[16] = "";
  cr_expect(http_header(&response, "Age", age, sizeof(age)) && atoi(age) >= 1,
            "the same entry, not a new one (Age %s)", age);
  http_response_free(&response);
}

/* --- the client's own cache directives -------------------------------------------------------- */

static long get_with(const char *id, const char *header, char *cache_status, size_t len,
                     char *body, size_t body_len) {
  char url[256];
  snprintf(url, sizeof(url), "%s/v1/enrollments/%s", daemon_proc.url, id);
  const char *headers[] = {header, NULL};
  struct http_response response;
  http_request(NULL, url, headers, &response);
  long status = response.status;
  if (!http_header(&response, "Cache-Status", cache_status, len))
    cache_status[0] = '\0';
  if (body)
    snprintf(body, body_len, "%s", response.body ? response.body : "");
  http_response_free(&response);
  return status;
}

Test(client_directives, only_if_cached_never_goes_upstream, .fini = stop_all, .timeout = 60) {
  struct daemon_options options = {.ttl = 1, .extra_cache = "stale_while_revalidate = 60\n"};
  start_with(&options);
  char cs[256], body[2048];
  cr_expect_eq(get_with(ID, "Cache-Control: only-if-cached", cs, sizeof(cs), body, sizeof(body)), 504);
  cr_expect(strstr(body, "\"code\":\"not_cached\"") != NULL, "%s", body);
  cr_expect_eq(fake_count(&fake, ID), 0, "only-if-cached went upstream");
  prime(ID);
  cr_expect_eq(get_with(ID, "Cache-Control: only-if-cached", cs, sizeof(cs), NULL, 0), 200);
  cr_expect(strncmp(cs, "flipcached; hit; ttl=", 21) == 0, "%s", cs);
  pause_ms(2100); /* stale now, within stale_while_revalidate */
  cr_expect_eq(get_with(ID, "Cache-Control: only-if-cached", cs, sizeof(cs), NULL, 0), 200);
  cr_expect(strncmp(cs, "flipcached; hit; ttl=-", 22) == 0, "a stale copy: %s", cs);
  pause_ms(200);
  cr_expect_eq(fake_count(&fake, ID), 1, "not even a background refresh");
}

Test(client_directives, max_age_and_no_cache_fetch_a_newer_copy, .fini = stop_all, .timeout = 60) {
  start_with(NULL); /* ttl 300 */
  prime(ID);
  char cs[256];
  cr_expect_eq(get_with(ID, "Cache-Control: max-age=3600", cs, sizeof(cs), NULL, 0), 200);
  cr_expect(strncmp(cs, "flipcached; hit", 15) == 0, "young enough: %s", cs);
  pause_ms(1100);
  cr_expect_eq(get_with(ID, "Cache-Control: max-age=0", cs, sizeof(cs), NULL, 0), 200);
  cr_expect(strstr(cs, "stored") != NULL, "fetched again: %s", cs);
  cr_expect_eq(fake_count(&fake, ID), 2);
  cr_expect_eq(get_with(ID, "Cache-Control: no-cache", cs, sizeof(cs), NULL, 0), 200);
  cr_expect_eq(fake_count(&fake, ID), 3, "no-cache is max-age=0");
  cr_expect_eq(get_with(ID, "Cache-Control: private, no-store", cs, sizeof(cs), NULL, 0), 200);
  cr_expect(strncmp(cs, "flipcached; hit", 15) == 0, "other directives are ignored: %s", cs);
  cr_expect_eq(fake_count(&fake, ID), 3);
}
