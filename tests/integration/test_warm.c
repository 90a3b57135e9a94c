/* The warm-up from the list endpoint ([warm], POST /cache/warm) and GET /cache's pages, against
 * the fake upstream's GET /v1/enrollments?program_id=P, at the size of a big program. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "harness.h"

/* Waits (bounded by timeout_ms) until /stats' field reaches at least value; returns it. */
static long wait_for_stat(const char *field, long value, long timeout_ms) {
  long seen = stat_of(field);
  for (long waited = 0; seen < value && waited < timeout_ms; waited += 25) {
    pause_ms(25);
    seen = stat_of(field);
  }
  return seen;
}

/* Waits until no run is in progress. */
static void wait_until_idle(long timeout_ms) {
  for (long waited = 0; stat_of("warm_running") != 0 && waited < timeout_ms; waited += 25)
    pause_ms(25);
  cr_assert_eq(stat_of("warm_running"), 0, "the run did not end within %ld ms", timeout_ms);
}

static void id_of(char *out, const char *prefix, unsigned i) {
  sprintf(out, "%s-0000-4000-8000-%012x", prefix, i);
}

/* The fixture's daemon shares the fake's token: fixture_start does both; here the fake must be
 * told about programs first, so the two are started apart with the same token. */
static void start_pair(const char *programs, const char *more, unsigned ttl,
                       void (*configure_fake)(void)) {
  char token[64];
  make_token(token, sizeof(token));
  fake_start(&fake, token);
  if (configure_fake)
    configure_fake();
  static char sections[512];
  snprintf(sections, sizeof(sections), "[warm]\nprogram_ids = %s\n%s\n", programs, more ? more : "");
  struct daemon_options options = {.ttl = ttl, .extra_sections = sections, .max_size = "256M",
                                   .log_level = "info", .token = token};
  flipcached_prepare(&daemon_proc, &fake, &options);
  flipcached_launch(&daemon_proc);
}

static size_t count_in_log(const char *needle) {
  char *log = flipcached_log(&daemon_proc);
  size_t n = 0;
  for (const char *p = log; (p = strstr(p, needle)) != NULL; p++)
    n++;
  free(log);
  return n;
}

/* --- a big program at start ------------------------------------------------------------------- */

#define BIG 20000

static void big_program_listed_slowly(void) {
  fake_set_program(&fake, "big", BIG, "0000b16a", "ok", 1500);
}

Test(warm, a_big_program_is_warmed_after_ready_and_every_id_is_then_a_hit, .fini = stop_all,
     .timeout = 120) {
  start_pair("big", NULL, 600, big_program_listed_slowly);
  /* /healthz answered (flipcached_launch waited for it) while the list is still on its way. */
  cr_expect_eq(stat_of("warm_running"), 1, "READY and /healthz did not wait for the warm-up");
  cr_expect_eq(stat_of("cache_entries"), 0);
  cr_assert_eq(wait_for_stat("warm_stored", BIG, 60000), BIG);
  wait_until_idle(5000);
  cr_expect_eq(stat_of("warm_runs"), 1);
  cr_expect_eq(stat_of("warm_failures"), 0);
  cr_expect_eq(stat_of("cache_entries"), BIG);
  cr_expect_eq(fake_program_count(&fake, "big"), 1);

  /* Every listed id is now answered from the cache: the upstream sees nothing more. */
  long upstream_before = fake_stat(&fake, "total");
  char (*ids)[40] = calloc(BIG, sizeof(*ids));
  char (*urls)[128] = calloc(BIG, sizeof(*urls));
  const char **url_list = calloc(BIG, sizeof(*url_list));
  struct http_response *responses = calloc(BIG, sizeof(*responses));
  for (unsigned i = 0; i < BIG; i++) {
    id_of(ids[i], "0000b16a", i);
    snprintf(urls[i], sizeof(urls[i]), "%s/v1/enrollments/%s", daemon_proc.url, ids[i]);
    url_list[i] = urls[i];
  }
  http_get_many(url_list, BIG, 8, responses);
  size_t hits = 0, right_body = 0;
  for (unsigned i = 0; i < BIG; i++) {
    char status[128] = "";
    http_header(&responses[i], "Cache-Status", status, sizeof(status));
    hits += responses[i].status == 200 && strncmp(status, "flipcached; hit", 15) == 0;
    right_body += responses[i].body && strstr(responses[i].body, ids[i]) != NULL &&
                  responses[i].body[0] == '{' && responses[i].body[responses[i].body_len - 1] == '}';
    http_response_free(&responses[i]);
  }
  cr_expect_eq(hits, BIG, "%zu of %d ids were hits", hits, BIG);
  cr_expect_eq(right_body, BIG, "each id answered with its own element, exactly");
  cr_expect_eq(fake_stat(&fake, "total"), upstream_before, "no id went upstream");
  free(ids);
  free(urls);
  free(url_list);
  free(responses);
}

/* --- spread expiry and the pages of GET /cache ------------------------------------------------- */

static void spread_program(void) { fake_set_program(&fake, "spread", 5000, "005b7ead", "ok", 0); }

Test(warm, entries_expire_spread_over_the_last_tenth_of_ttl_and_page_through_in_id_order,
     .fini = stop_all, .timeout = 120) {
  start_pair("spread", NULL, 1000, spread_program);
  cr_assert_eq(wait_for_stat("warm_stored", 5000, 30000), 5000);
  wait_until_idle(5000);
  /* Page through 1,000 at a time: every entry once, ids in order, and their fresh lifetimes. */
  unsigned lifetimes[1001] = {0};
  size_t listed = 0, pages = 0;
  char after[64] = "", previous[64] = "";
  bool in_order = true;
  for (;;) {
    char url[256];
    snprintf(url, sizeof(url), "%s/cache?limit=1000%s%s", daemon_proc.url, after[0] ? "&after=" : "",
             after);
    struct http_response response;
    http_get(url, &response);
    cr_assert_eq(response.status, 200, "%s", response.body ? response.body : "");
    json_object *root = json_tokener_parse(response.body);
    cr_assert_not_null(root);
    json_object *entries = json_object_object_get(root, "entries");
    size_t n = json_object_array_length(entries);
    cr_expect_eq((long)n, json_object_get_int(json_object_object_get(root, "count")));
    for (size_t i = 0; i < n; i++) {
      json_object *entry = json_object_array_get_idx(entries, i);
      const char *id = json_object_get_string(json_object_object_get(entry, "id"));
      in_order = in_order && strcmp(previous, id) < 0;
      snprintf(previous, sizeof(previous), "%s", id);
      cr_expect_str_eq(json_object_get_string(json_object_object_get(entry, "state")), "fresh");
      long fresh_for = json_object_get_int(json_object_object_get(entry, "ttl_seconds")) +
                       json_object_get_int(json_object_object_get(entry, "age_seconds"));
      cr_expect(fresh_for >= 900 && fresh_for <= 1000, "%s: fresh for %ld s of a 1000 s ttl", id,
                fresh_for);
      if (fresh_for >= 0 && fresh_for <= 1000)
        lifetimes[fresh_for]++;
      listed++;
    }
    pages++;
    json_object *next = json_object_object_get(root, "next_after");
    if (!next) {
      json_object_put(root);
      http_response_free(&response);
      break;
    }
    snprintf(after, sizeof(after), "%s", json_object_get_string(next));
    cr_expect_str_eq(after, previous, "next_after is the page's last id");
    json_object_put(root);
    http_response_free(&response);
    cr_assert_lt(pages, 10);
  }
  cr_expect_eq(listed, 5000, "every entry listed exactly once across the pages");
  cr_expect_eq(pages, 5);
  cr_expect(in_order, "ids in key order");
  /* Spread: 101 possible lifetimes (900..1000 s) for 5,000 entries, about 50 each. Not spread,
   * they would all be 1000 s (or two neighbouring seconds). */
  unsigned used = 0, most = 0;
  for (unsigned s = 900; s <= 1000; s++) {
    used += lifetimes[s] > 0;
    most = lifetimes[s] > most ? lifetimes[s] : most;
  }
  cr_expect_geq(used, 90, "only %u distinct lifetimes", used);
  cr_expect_leq(most, 150, "%u entries share one lifetime: not spread", most);
}

Test(warm, the_pages_refuse_bad_parameters_and_need_the_admin_right, .fini = stop_all) {
  struct daemon_options options = {0};
  fixture_start(&fake, &daemon_proc, &options);
  const char *bad[] = {"limit=0", "limit=1001", "limit=x", "after=nope", "sort=id",
                       "limit=5&limit=6"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char url[256];
    snprintf(url, sizeof(url), "%s/cache?%s", daemon_proc.url, bad[i]);
    struct http_response response;
    http_get(url, &response);
    cr_expect_eq(response.status, 400, "%s: %ld", bad[i], response.status);
    cr_expect(response.body && strstr(response.body, "\"code\":\"bad_request\""), "%s", bad[i]);
    http_response_free(&response);
  }
  char url[256];
  snprintf(url, sizeof(url), "%s/cache", daemon_proc.url);
  struct http_response response;
  http_get(url, &response);
  cr_expect_eq(response.status, 200);
  cr_expect(strstr(response.body, "\"entries\":[]") && strstr(response.body, "\"next_after\":null"),
            "%s", response.body);
  http_response_free(&response);
  http_as("--reuid=65534 --regid=65534 --clear-groups", NULL, url, NULL, NULL, &response);
  cr_expect_eq(response.status, 403, "another local user may not list the cache");
  http_response_free(&response);
  http_request("POST", url, NULL, &response);
  cr_expect_eq(response.status, 405, "GET and DELETE only");
  http_response_free(&response);
  snprintf(url, sizeof(url), "%s/cache/warm", daemon_proc.url);
  http_as("--reuid=65534 --regid=65534 --clear-groups", "POST", url, NULL, NULL, &response);
  cr_expect_eq(response.status, 403, "nor start a warm-up");
  http_response_free(&response);
  http_request("POST", url, NULL, &response);
  cr_expect_eq(response.status, 409, "no program_ids");
  cr_expect(strstr(response.body, "\"code\":\"not_configured\""), "%s", response.body);
  http_response_free(&response);
  cr_expect_eq(fake_stat(&fake, "list_requests"), 0);
}

/* --- lists refused whole ---------------------------------------------------------------------- */

static void bad_programs(void) {
  fake_set_program(&fake, "bad-element", 500, "0000bad1", "bad-element", 0);
  fake_set_program(&fake, "garbage", 10, "0000bad2", "garbage", 0);
  fake_set_program(&fake, "not-object", 10, "0000bad3", "not-object", 0);
  fake_set_program(&fake, "failing", 10, "0000bad4", "500", 0);
  fake_set_program(&fake, "huge", 0, "0000bad5", "huge", 0);
  fake_set_program(&fake, "good", 300, "00000900", "ok", 0);
}

Test(warm, a_list_of_the_wrong_shape_or_size_is_refused_whole_with_one_line, .fini = stop_all,
     .timeout = 120) {
  start_pair("bad-element garbage not-object failing huge good", "interval = 0", 300,
             bad_programs);
  cr_assert_eq(wait_for_stat("warm_stored", 300, 60000), 300, "the good program is stored");
  wait_until_idle(30000);
  cr_expect_eq(stat_of("warm_failures"), 5);
  cr_expect_eq(stat_of("cache_entries"), 300, "nothing of a refused list is stored");
  cr_expect_eq(count_in_log("program bad-element: list refused whole: element 250: an element's "
                            "\"id\" is not a UUID"), 1);
  cr_expect_eq(count_in_log("program garbage: list refused whole: not a JSON object"), 1);
  cr_expect_eq(count_in_log("program not-object: list refused whole: not a JSON object"), 1);
  cr_expect_eq(count_in_log("program failing: the list endpoint answered HTTP 500"), 1);
  cr_expect_eq(count_in_log("program huge: the list was not fetched: response body over the size "
                            "limit"), 1);
  cr_expect_eq(count_in_log("program good: 300 enrollments listed, 300 stored"), 1);
  /* The first half of the bad list was valid: none of it was stored. */
  char url[256];
  snprintf(url, sizeof(url), "%s/cache/enrollments/0000bad1-0000-4000-8000-000000000000",
           daemon_proc.url);
  struct http_response response;
  http_get(url, &response);
  cr_expect_eq(response.status, 404);
  http_response_free(&response);
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, daemon_proc.token) == NULL, "the credential is not in the log");
  free(log);
}

/* --- runs: the interval, POST /cache/warm, reload ---------------------------------------------- */

static void small_program(void) { fake_set_program(&fake, "small", 50, "00005a11", "ok", 0); }

Test(warm, the_interval_repeats_runs_counted_from_their_start, .fini = stop_all, .timeout = 60) {
  start_pair("small", "interval = 1", 300, small_program);
  cr_assert_geq(wait_for_stat("warm_runs", 4, 10000), 4);
  long lists = fake_program_count(&fake, "small");
  cr_expect_geq(lists, 3);
  cr_expect_eq(stat_of("cache_entries"), 50, "each run replaces the same entries");
  cr_expect_geq(stat_of("warm_stored"), 150);
}

static void slow_program(void) { fake_set_program(&fake, "slow", 50, "0000510e", "ok", 1000); }

Test(warm, post_cache_warm_starts_one_run_now_and_never_two_at_once, .fini = stop_all,
     .timeout = 60) {
  start_pair("slow", "interval = 0", 300, slow_program);
  cr_assert_eq(wait_for_stat("warm_stored", 50, 10000), 50);
  wait_until_idle(5000);
  cr_expect_eq(fake_program_count(&fake, "slow"), 1, "interval 0: one run, at start");
  char url[256];
  snprintf(url, sizeof(url), "%s/cache/warm", daemon_proc.url);
  struct http_response response;
  http_request("POST", url, NULL, &response);
  cr_expect_eq(response.status, 202);
  cr_expect(strstr(response.body, "\"started\":true"), "%s", response.body);
  http_response_free(&response);
  http_request("POST", url, NULL, &response);
  cr_expect_eq(response.status, 202);
  cr_expect(strstr(response.body, "\"started\":false") && strstr(response.body, "\"running\":true"),
            "a run is in progress: %s", response.body);
  http_response_free(&response);
  cr_assert_eq(wait_for_stat("warm_stored", 100, 10000), 100);
  wait_until_idle(5000);
  cr_expect_eq(fake_program_count(&fake, "slow"), 2, "one more list, not two");
  cr_expect_eq(stat_of("warm_runs"), 2);
  cr_expect_eq(count_in_log("admin: warm-up run started (by uid=0"), 1);
}

static void two_programs(void) {
  fake_set_program(&fake, "first", 20, "000f1257", "ok", 0);
  fake_set_program(&fake, "second", 30, "00005ec0", "ok", 0);
}

Test(warm, a_reload_that_adds_a_program_warms_it_at_once, .fini = stop_all, .timeout = 60) {
  start_pair("first", "interval = 0", 300, two_programs);
  cr_assert_eq(wait_for_stat("warm_stored", 20, 10000), 20);
  wait_until_idle(5000);
  char command[600], out[512];
  snprintf(command, sizeof(command), "sed -i 's/^program_ids = first$/program_ids = first second/' %s",
           daemon_proc.config);
  cr_assert_eq(run_command(command, out, sizeof(out)), 0, "%s", out);
  flipcached_reload(&daemon_proc, "reload: [warm] program_ids: first -> first second");
  cr_assert_eq(wait_for_stat("warm_stored", 70, 10000), 70, "both lists again: 20 + 20 + 30");
  cr_expect_eq(stat_of("cache_entries"), 50);
}

/* --- what a run must not overwrite or keep ----------------------------------------------------- */

static void delayed_program(void) {
  fake_set_program(&fake, "late", 100, "0000da7e", "ok", 1800);
}

Test(warm, a_copy_fetched_by_id_after_the_list_was_asked_for_is_kept, .fini = stop_all,
     .timeout = 60) {
  start_pair("late", NULL, 300, delayed_program);
  pause_ms(1100); /* a second later than the list's request, whole seconds being the times' unit */
  struct http_response response;
  get_enrollment_from(&daemon_proc, "0000da7e-0000-4000-8000-000000000007", &response);
  cr_assert_eq(response.status, 200);
  http_response_free(&response);
  cr_assert_eq(fake_count(&fake, "0000da7e-0000-4000-8000-000000000007"), 1);
  wait_for_stat("warm_runs", 1, 1000);
  wait_until_idle(10000);
  cr_expect_eq(stat_of("warm_stored"), 99);
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, "program late: 100 enrollments listed, 99 stored, 1 kept"), "%s", log);
  free(log);
}

static void purged_program(void) {
  fake_set_program(&fake, "purged", 2000, "000d0e1e", "ok", 1500);
}

Test(warm, an_admin_purge_during_a_run_keeps_its_list_out_of_the_cache, .fini = stop_all,
     .timeout = 60) {
  start_pair("purged", NULL, 300, purged_program);
  cr_assert_eq(stat_of("warm_running"), 1);
  char url[256];
  snprintf(url, sizeof(url), "%s/cache", daemon_proc.url);
  struct http_response response;
  http_request("DELETE", url, NULL, &response);
  cr_expect_eq(response.status, 200);
  http_response_free(&response);
  wait_until_idle(10000);
  cr_expect_eq(stat_of("cache_entries"), 0, "the purge wins over the list fetched before it");
  cr_expect_eq(stat_of("warm_stored"), 0);
  cr_expect_eq(count_in_log("program purged: an admin delete during the run; 2000 entries of its "
                            "list not stored"), 1);
}

Test(warm, a_stop_during_a_run_exits_cleanly, .fini = stop_all, .timeout = 60) {
  start_pair("purged", NULL, 300, purged_program);
  cr_assert_eq(stat_of("warm_running"), 1);
  cr_expect_eq(flipcached_stop(&daemon_proc), 0, "stopped with the list in flight, no leak");
}

/* --- the same breaker as single fetches -------------------------------------------------------- */

static void breaker_program(void) {
  fake_set_program(&fake, "guarded", 10, "00009a2d", "ok", 0);
  fake_set_mode(&fake, "497f6eca-6276-4993-bfeb-53cbbbba6f08", "500", 0);
}

Test(warm, an_open_circuit_keeps_the_list_from_being_asked_for, .fini = stop_all, .timeout = 60) {
  start_pair("guarded", "interval = 0", 300, breaker_program);
  cr_assert_eq(wait_for_stat("warm_stored", 10, 10000), 10);
  wait_until_idle(5000);
  /* One failed fetch opens the circuit (breaker_failures = 1, set below by a reload). */
  char command[600], out[512];
  snprintf(command, sizeof(command),
           "sed -i 's/^\\[upstream\\]$/[upstream]\\nbreaker_failures = 1\\nbreaker_cooldown_ms = 60000/' %s",
           daemon_proc.config);
  cr_assert_eq(run_command(command, out, sizeof(out)), 0, "%s", out);
  flipcached_reload(&daemon_proc, "reload: [upstream] breaker_failures: 5 -> 1");
  struct http_response response;
  get_enrollment_from(&daemon_proc, "497f6eca-6276-4993-bfeb-53cbbbba6f08", &response);
  cr_expect_eq(response.status, 502);
  http_response_free(&response);
  cr_assert_eq(stat_of("breaker_state"), 1, "the circuit is open");
  char url[256];
  snprintf(url, sizeof(url), "%s/cache/warm", daemon_proc.url);
  http_request("POST", url, NULL, &response);
  cr_expect_eq(response.status, 202);
  http_response_free(&response);
  wait_until_idle(5000);
  cr_expect_eq(fake_program_count(&fake, "guarded"), 1, "not asked again while the circuit is open");
  cr_expect_eq(stat_of("warm_failures"), 1);
  cr_expect_eq(count_in_log("warm: program guarded: the list was not asked for: circuit open"), 1);
}
