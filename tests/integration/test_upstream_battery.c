/* A misbehaving upstream: each bad answer gives the contract's error (or a stale copy when one is
 * usable) within the time limits, and nothing invalid is stored. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#include "fixture.h"
#include "harness.h"

#define ID "497f6eca-6276-4993-bfeb-53cbbbba6f08"

struct bad_answer {
  char mode[32];
  long status;     /* what the client gets without a stale copy */
  char code[40];
};

ParameterizedTestParameters(upstream_battery, bad_answers_give_errors_and_store_nothing) {
  static struct bad_answer answers[] = {
    {"slow", 504, "upstream_timeout"}, /* no response at all within timeout_ms */
    {"trickle", 504, "upstream_timeout"},
    {"reset", 502, "upstream_unavailable"},
    {"truncated-chunked", 502, "upstream_unavailable"},
    {"short-length", 502, "upstream_invalid_response"},
    {"garbage-status", 502, "upstream_unavailable"},
    {"nested", 502, "upstream_invalid_response"},
    {"huge-json", 502, "upstream_invalid_response"},
    {"redirect", 502, "upstream_invalid_response"},
    {"garbage", 502, "upstream_invalid_response"},
    {"wrong-id", 502, "upstream_invalid_response"},
  };
  return cr_make_param_array(struct bad_answer, answers, sizeof(answers) / sizeof(answers[0]));
}

ParameterizedTest(struct bad_answer *answer, upstream_battery,
                  bad_answers_give_errors_and_store_nothing, .fini = stop_all, .timeout = 60) {
  struct daemon_options options = {.timeout_ms = 2000};
  fixture_start(&fake, &daemon_proc, &options);
  fake_set_mode(&fake, ID, answer->mode, 30000);
  if (strcmp(answer->mode, "slow") != 0)
    fake_set_mode(&fake, ID, answer->mode, 0);
  char url[256];
  snprintf(url, sizeof(url), "%s/v1/enrollments/%s", daemon_proc.url, ID);
  struct http_response response;
  /* bounded: the daemon's 2 s budget, plus slack, never the fake's 30 s */
  http_get_within(url, 4500, &response);
  cr_expect_eq(response.status, answer->status, "%s: HTTP %ld", answer->mode, response.status);
  char expected[64];
  snprintf(expected, sizeof(expected), "\"code\":\"%s\"", answer->code);
  cr_expect(response.body && strstr(response.body, expected) != NULL, "%s: %s", answer->mode,
            response.body);
  http_response_free(&response);
  cr_expect_eq(flipcached_stat(&daemon_proc, "cache_entries"), 0, "%s was stored", answer->mode);
  fake_set_mode(&fake, ID, "ok", 0);
  get_enrollment_from(&daemon_proc, ID, &response);
  cr_expect_eq(response.status, 200, "%s: the daemon recovers", answer->mode);
  http_response_free(&response);
}

Test(upstream_battery, every_bad_answer_is_replaced_by_a_stale_copy, .fini = stop_all, .timeout = 120) {
  struct daemon_options options = {
    .ttl = 1, .timeout_ms = 1500, .extra_cache = "stale_while_revalidate = 0\nstale_if_error = 600\n",
    .extra_upstream = "breaker_failures = 0\n"};
  fixture_start(&fake, &daemon_proc, &options);
  struct http_response response;
  get_enrollment_from(&daemon_proc, ID, &response);
  cr_assert_eq(response.status, 200);
  char good_body[2048];
  snprintf(good_body, sizeof(good_body), "%s", response.body);
  http_response_free(&response);
  pause_ms(2100);
  const char *modes[] = {"reset", "truncated-chunked", "short-length", "garbage-status", "nested",
                         "huge-json", "trickle"};
  for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
    fake_set_mode(&fake, ID, modes[i], 0);
    get_enrollment_from(&daemon_proc, ID, &response);
    cr_expect_eq(response.status, 200, "%s: HTTP %ld", modes[i], response.status);
    cr_expect(response.body && strcmp(response.body, good_body) == 0, "%s: the stale copy, intact",
              modes[i]);
    char cache_status[128] = "";
    http_header(&response, "Cache-Status", cache_status, sizeof(cache_status));
    cr_expect(strncmp(cache_status, "flipcached; fwd=stale", 21) == 0, "%s: %s", modes[i], cache_status);
    http_response_free(&response);
  }
}
