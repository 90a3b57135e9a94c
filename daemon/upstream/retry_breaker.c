#include "retry_breaker.h"

long breaker_clamp_retry_after(long seconds) {
  return seconds >= 0 && seconds <= BREAKER_RETRY_AFTER_MAX ? seconds : BREAKER_RETRY_AFTER_DEFAULT;
}

enum breaker_admission breaker_refusal_now(const struct breaker *breaker, int64_t now_ms) {
  if (now_ms < breaker->paused_until_ms)
    return BREAKER_REFUSE_PAUSED;
  if (breaker->state == BREAKER_OPEN && now_ms < breaker->open_until_ms)
    return BREAKER_REFUSE_OPEN;
  return BREAKER_ADMIT;
}

enum breaker_admission breaker_admit(struct breaker *breaker, const struct breaker_settings *settings,
                                     int64_t now_ms) {
  if (now_ms < breaker->paused_until_ms)
    return BREAKER_REFUSE_PAUSED;
  if (settings->failures == 0)
    return BREAKER_ADMIT;
  if (breaker->state == BREAKER_OPEN && now_ms >= breaker->open_until_ms)
    breaker->state = BREAKER_HALF_OPEN;
  switch (breaker->state) {
  case BREAKER_CLOSED:
    return BREAKER_ADMIT;
  case BREAKER_HALF_OPEN:
    if (breaker->probe_in_flight)
      return BREAKER_REFUSE_OPEN;
    breaker->probe_in_flight = true;
    return BREAKER_ADMIT_PROBE;
  case BREAKER_OPEN:
    break;
  }
  return BREAKER_REFUSE_OPEN;
}

static void open_circuit(struct breaker *breaker, int64_t now_ms, long cooldown_ms) {
  breaker->state = BREAKER_OPEN;
  breaker->cooldown_ms = cooldown_ms;
  breaker->open_until_ms = now_ms + cooldown_ms;
}

enum breaker_event breaker_note(struct breaker *breaker, const struct breaker_settings *settings,
                                int64_t now_ms, bool probe, bool rate_limited, bool failed,
                                long retry_after_seconds, long *paused_seconds) {
  if (probe)
    breaker->probe_in_flight = false;
  if (rate_limited) {
    long seconds = breaker_clamp_retry_after(retry_after_seconds);
    if (now_ms + seconds * 1000 > breaker->paused_until_ms)
      breaker->paused_until_ms = now_ms + seconds * 1000;
    *paused_seconds = seconds;
    return BREAKER_EVENT_PAUSED;
  }
  if (!failed) {
    bool was_open = breaker->state != BREAKER_CLOSED;
    breaker->state = BREAKER_CLOSED;
    breaker->consecutive_failures = 0;
    breaker->cooldown_ms = settings->cooldown_ms;
    return was_open ? BREAKER_EVENT_CLOSED : BREAKER_EVENT_NONE;
  }
  breaker->consecutive_failures++;
  if (settings->failures == 0)
    return BREAKER_EVENT_NONE;
  if (breaker->state == BREAKER_HALF_OPEN && probe) {
    long current = breaker->cooldown_ms > 0 ? breaker->cooldown_ms : settings->cooldown_ms;
    long doubled = current * 2;
    long cap = settings->cooldown_cap_ms > 0 ? settings->cooldown_cap_ms : BREAKER_COOLDOWN_CAP_MS;
    open_circuit(breaker, now_ms, doubled < cap ? doubled : cap);
    return BREAKER_EVENT_OPENED;
  }
  if (breaker->state == BREAKER_CLOSED && breaker->consecutive_failures >= settings->failures) {
    open_circuit(breaker, now_ms, settings->cooldown_ms);
    return BREAKER_EVENT_OPENED;
  }
  return BREAKER_EVENT_NONE;
}

void breaker_probe_abandoned(struct breaker *breaker) { breaker->probe_in_flight = false; }

static long whole_seconds_until(int64_t until_ms, int64_t now_ms) {
  return until_ms > now_ms ? (long)((until_ms - now_ms + 999) / 1000) : 0;
}

long breaker_retry_after(const struct breaker *breaker, int64_t now_ms) {
  int64_t until = now_ms < breaker->paused_until_ms ? breaker->paused_until_ms
                  : breaker->state == BREAKER_OPEN  ? breaker->open_until_ms
                                                    : now_ms;
  long seconds = whole_seconds_until(until, now_ms);
  return seconds < 1 ? 1 : seconds;
}

long breaker_paused_seconds(const struct breaker *breaker, int64_t now_ms) {
  return whole_seconds_until(breaker->paused_until_ms, now_ms);
}

long breaker_retry_delay(int attempts_sent, bool retryable, long http_status,
                         long retry_after_seconds, int64_t now_ms, int64_t deadline_ms,
                         uint32_t random) {
  bool worth = retryable || http_status == 502 || http_status == 503 || http_status == 504;
  if (!worth || attempts_sent >= BREAKER_MAX_ATTEMPTS || attempts_sent < 1)
    return -1;
  /* Exponential, capped, with "equal jitter": between half and all of the step, so that the
   * retries of many fetches do not arrive together. */
  long step = BREAKER_RETRY_BASE_MS << (attempts_sent - 1);
  if (step > BREAKER_RETRY_CAP_MS)
    step = BREAKER_RETRY_CAP_MS;
  long delay = step / 2 + (long)(random % (uint32_t)(step / 2 + 1));
  if (http_status == 503 && retry_after_seconds > 0 && retry_after_seconds * 1000 > delay)
    delay = retry_after_seconds * 1000;
  if (now_ms + delay + BREAKER_MIN_ATTEMPT_MS > deadline_ms)
    return -1;
  return delay;
}
