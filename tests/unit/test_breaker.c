/* breaker: retries, the 429 pause and the circuit breaker, on an injected clock. */
#include <criterion/criterion.h>

#include "retry_breaker.h"

static const struct breaker_settings SETTINGS = {.failures = 3, .cooldown_ms = 1000};

static enum breaker_event fail(struct breaker *breaker, int64_t now, bool probe) {
  long paused;
  return breaker_note(breaker, &SETTINGS, now, probe, false, true, -1, &paused);
}

Test(breaker, opens_after_consecutive_failures_and_a_success_resets_the_count) {
  struct breaker breaker = {0};
  cr_expect_eq(fail(&breaker, 0, false), BREAKER_EVENT_NONE);
  cr_expect_eq(fail(&breaker, 0, false), BREAKER_EVENT_NONE);
  long paused;
  cr_expect_eq(breaker_note(&breaker, &SETTINGS, 0, false, false, false, -1, &paused),
               BREAKER_EVENT_NONE, "a success while closed is no event");
  cr_expect_eq(breaker.consecutive_failures, 0);
  for (int i = 0; i < 2; i++)
    cr_expect_eq(fail(&breaker, 0, false), BREAKER_EVENT_NONE);
  cr_expect_eq(fail(&breaker, 10, false), BREAKER_EVENT_OPENED);
  cr_expect_eq(breaker.state, BREAKER_OPEN);
  cr_expect_eq(breaker_admit(&breaker, &SETTINGS, 500), BREAKER_REFUSE_OPEN);
  cr_expect_eq(breaker_retry_after(&breaker, 500), 1, "510 ms left: 1 s");
}

Test(breaker, half_open_lets_one_probe_through_and_its_result_decides) {
  struct breaker breaker = {0};
  for (int i = 0; i < 3; i++)
    fail(&breaker, 0, false);
  cr_expect_eq(breaker_admit(&breaker, &SETTINGS, 999), BREAKER_REFUSE_OPEN);
  cr_expect_eq(breaker_admit(&breaker, &SETTINGS, 1000), BREAKER_ADMIT_PROBE);
  cr_expect_eq(breaker_admit(&breaker, &SETTINGS, 1001), BREAKER_REFUSE_OPEN, "one probe at a time");
  cr_expect_eq(fail(&breaker, 1100, true), BREAKER_EVENT_OPENED);
  cr_expect_eq(breaker.cooldown_ms, 2000, "a failed probe doubles the cooldown");
  cr_expect_eq(breaker_admit(&breaker, &SETTINGS, 3099), BREAKER_REFUSE_OPEN);
  cr_expect_eq(breaker_admit(&breaker, &SETTINGS, 3100), BREAKER_ADMIT_PROBE);
  long paused;
  cr_expect_eq(breaker_note(&breaker, &SETTINGS, 3200, true, false, false, -1, &paused),
               BREAKER_EVENT_CLOSED);
  cr_expect_eq(breaker_admit(&breaker, &SETTINGS, 3201), BREAKER_ADMIT);
  cr_expect_eq(breaker.cooldown_ms, 1000, "closing restores the first cooldown");
}

Test(breaker, the_doubled_cooldown_is_capped_at_a_minute) {
  struct breaker breaker = {0};
  for (int i = 0; i < 3; i++)
    fail(&breaker, 0, false);
  int64_t now = 0;
  for (int round = 0; round < 10; round++) {
    now = breaker.open_until_ms;
    cr_assert_eq(breaker_admit(&breaker, &SETTINGS, now), BREAKER_ADMIT_PROBE);
    fail(&breaker, now, true);
  }
  cr_expect_eq(breaker.cooldown_ms, BREAKER_COOLDOWN_CAP_MS);
}

Test(breaker, a_settings_cap_bounds_the_doubling_instead) {
  /* The shared tier's circuit (redis.h): 500 ms doubling to at most 5 s, so that a Redis that
   * comes back is used again within seconds, not a minute. */
  const struct breaker_settings redis = {.failures = 3, .cooldown_ms = 500,
                                         .cooldown_cap_ms = 5000};
  struct breaker breaker = {0};
  long paused;
  for (int i = 0; i < 3; i++)
    breaker_note(&breaker, &redis, 0, false, false, true, -1, &paused);
  long seen[8];
  for (int round = 0; round < 8; round++) {
    int64_t now = breaker.open_until_ms;
    cr_assert_eq(breaker_admit(&breaker, &redis, now), BREAKER_ADMIT_PROBE);
    breaker_note(&breaker, &redis, now, true, false, true, -1, &paused);
    seen[round] = breaker.cooldown_ms;
  }
  cr_expect_eq(seen[0], 1000);
  cr_expect_eq(seen[1], 2000);
  cr_expect_eq(seen[2], 4000);
  cr_expect_eq(seen[3], 5000, "capped");
  cr_expect_eq(seen[7], 5000);
}

Test(breaker, an_abandoned_probe_lets_the_next_fetch_probe) {
  struct breaker breaker = {0};
  for (int i = 0; i < 3; i++)
    fail(&breaker, 0, false);
  cr_expect_eq(breaker_admit(&breaker, &SETTINGS, 1000), BREAKER_ADMIT_PROBE);
  breaker_probe_abandoned(&breaker);
  cr_expect_eq(breaker_admit(&breaker, &SETTINGS, 1000), BREAKER_ADMIT_PROBE);
}

Test(breaker, zero_failures_never_opens) {
  struct breaker breaker = {0};
  struct breaker_settings never = {.failures = 0, .cooldown_ms = 1000};
  long paused;
  for (int i = 0; i < 100; i++)
    cr_assert_eq(breaker_note(&breaker, &never, 0, false, false, true, -1, &paused),
                 BREAKER_EVENT_NONE);
  cr_expect_eq(breaker_admit(&breaker, &never, 0), BREAKER_ADMIT);
}

Test(breaker, a_429_pauses_everything_for_its_clamped_retry_after) {
  struct breaker breaker = {0};
  long paused = 0;
  cr_expect_eq(breaker_note(&breaker, &SETTINGS, 0, false, true, false, 7, &paused),
               BREAKER_EVENT_PAUSED);
  cr_expect_eq(paused, 7);
  cr_expect_eq(breaker_admit(&breaker, &SETTINGS, 6999), BREAKER_REFUSE_PAUSED);
  cr_expect_eq(breaker_paused_seconds(&breaker, 5500), 2);
  cr_expect_eq(breaker_retry_after(&breaker, 5500), 2);
  cr_expect_eq(breaker_admit(&breaker, &SETTINGS, 7000), BREAKER_ADMIT);
  cr_expect_eq(breaker_paused_seconds(&breaker, 7000), 0);
  cr_expect_eq(breaker.consecutive_failures, 0, "a 429 is not a failure of the circuit");
  /* A shorter pause never cuts a longer one. */
  breaker_note(&breaker, &SETTINGS, 8000, false, true, false, 60, &paused);
  breaker_note(&breaker, &SETTINGS, 9000, false, true, false, 1, &paused);
  cr_expect_eq(breaker.paused_until_ms, 68000);
}

Test(breaker, retry_after_is_clamped_in_one_place) {
  cr_expect_eq(breaker_clamp_retry_after(0), 0);
  cr_expect_eq(breaker_clamp_retry_after(120), 120);
  cr_expect_eq(breaker_clamp_retry_after(BREAKER_RETRY_AFTER_MAX), BREAKER_RETRY_AFTER_MAX);
  cr_expect_eq(breaker_clamp_retry_after(BREAKER_RETRY_AFTER_MAX + 1), BREAKER_RETRY_AFTER_DEFAULT);
  cr_expect_eq(breaker_clamp_retry_after(-1), BREAKER_RETRY_AFTER_DEFAULT, "none or an HTTP-date");
}

Test(breaker, retries_back_off_with_jitter_within_the_budget) {
  /* attempt 1 failed: step 100 ms, delay in [50, 100] */
  cr_expect_eq(breaker_retry_delay(1, true, 0, -1, 0, 10000, 0), 50);
  cr_expect_eq(breaker_retry_delay(1, true, 0, -1, 0, 10000, 50), 100);
  cr_expect_eq(breaker_retry_delay(1, true, 0, -1, 0, 10000, 51), 50, "wraps within the step");
  cr_expect_eq(breaker_retry_delay(2, true, 0, -1, 0, 10000, 0), 100, "step 200 ms");
  cr_expect_eq(breaker_retry_delay(3, true, 0, -1, 0, 10000, 0), -1, "three attempts in all");
  cr_expect_eq(breaker_retry_delay(1, false, 500, -1, 0, 10000, 0), -1, "a 500 is not retried");
  cr_expect_eq(breaker_retry_delay(1, false, 404, -1, 0, 10000, 0), -1);
  cr_expect_eq(breaker_retry_delay(1, false, 502, -1, 0, 10000, 0), 50);
  cr_expect_eq(breaker_retry_delay(1, false, 504, -1, 0, 10000, 0), 50);
  cr_expect_eq(breaker_retry_delay(1, false, 503, 2, 0, 10000, 0), 2000, "at least a 503's Retry-After");
  cr_expect_eq(breaker_retry_delay(1, true, 0, -1, 9700, 10000, 50), 100, "exactly enough budget");
  cr_expect_eq(breaker_retry_delay(1, true, 0, -1, 9701, 10000, 50), -1,
               "the attempt after it would have less than 200 ms");
}

/* What refuses a fetch before it may wait for a slot: the pause, and an open circuit's cooldown;
 * never a half-open circuit (its probe may come back while the fetch waits). Asking changes
 * nothing: the probe is still the next breaker_admit's. */
Test(breaker, the_refusal_now_is_the_pause_or_an_unexpired_cooldown_and_changes_nothing) {
  struct breaker breaker = {0};
  cr_expect_eq(breaker_refusal_now(&breaker, 0), BREAKER_ADMIT, "closed");
  for (int i = 0; i < 3; i++)
    fail(&breaker, 0, false);
  cr_assert_eq(breaker.state, BREAKER_OPEN);
  cr_expect_eq(breaker_refusal_now(&breaker, 999), BREAKER_REFUSE_OPEN, "cooldown of 1000 ms");
  cr_expect_eq(breaker_refusal_now(&breaker, 1000), BREAKER_ADMIT, "the cooldown is over");
  cr_expect_eq(breaker.state, BREAKER_OPEN, "asking moved nothing");
  cr_expect_eq(breaker_admit(&breaker, &SETTINGS, 1000), BREAKER_ADMIT_PROBE);
  cr_expect_eq(breaker_refusal_now(&breaker, 1000), BREAKER_ADMIT,
               "half open with the probe out: decided when the fetch is sent");
  long paused;
  breaker_note(&breaker, &SETTINGS, 1000, true, true, false, 5, &paused);
  cr_expect_eq(breaker_refusal_now(&breaker, 5999), BREAKER_REFUSE_PAUSED, "a 429's 5 s");
  cr_expect_eq(breaker_refusal_now(&breaker, 6000), BREAKER_ADMIT);
}
