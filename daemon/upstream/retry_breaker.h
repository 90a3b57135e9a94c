/* retry_breaker: the retry backoff, the Retry-After clamp, the 429 pause and the circuit breaker
 * (breaker_*): the upstream's failure policy, apart from libcurl. Pure: the caller passes the
 * monotonic time in milliseconds (and, for the backoff's jitter, a random number), so the unit
 * tests drive every rule on an injected clock.
 *
 *   retries    a failed connection or a 502/503/504 is tried again, at most BREAKER_MAX_ATTEMPTS
 *              in all, after 100 ms, 200 ms, ... (capped at 1 s, "equal jitter": between half
 *              and all of the step; at least a 503's Retry-After), and only while the attempt
 *              after it would still have BREAKER_MIN_ATTEMPT_MS of the fetch's budget
 *   pause      a 429 stops every request for its Retry-After (clamped by breaker_clamp_retry_after)
 *   circuit    after `failures` consecutive failed fetches it opens for the cooldown; then one
 *              probe goes through, whose success closes it and whose failure opens it again for
 *              twice as long (at most cooldown_cap_ms, by default BREAKER_COOLDOWN_CAP_MS) */
#ifndef FLIPCACHED_BREAKER_H
#define FLIPCACHED_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

#define BREAKER_MAX_ATTEMPTS 3         /* one try and at most two retries */
#define BREAKER_RETRY_BASE_MS 100
#define BREAKER_RETRY_CAP_MS 1000
#define BREAKER_MIN_ATTEMPT_MS 200     /* a retry is not worth starting with less budget than this */
#define BREAKER_COOLDOWN_CAP_MS 60000
#define BREAKER_RETRY_AFTER_DEFAULT 30 /* seconds: a 429 without a usable Retry-After */
#define BREAKER_RETRY_AFTER_MAX 3600

enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };

struct breaker_settings {
  unsigned failures;   /* [upstream] breaker_failures: consecutive failed fetches; 0: never opens */
  long cooldown_ms;    /* [upstream] breaker_cooldown_ms: the first opening's length */
  long cooldown_cap_ms; /* the longest opening; 0: BREAKER_COOLDOWN_CAP_MS */
};

struct breaker {
  enum breaker_state state;
  unsigned consecutive_failures; /* fetches, not attempts */
  long cooldown_ms;              /* of the current or next opening; 0: the settings' */
  int64_t open_until_ms;
  bool probe_in_flight;
  int64_t paused_until_ms;       /* a 429's pause ends here */
};

enum breaker_admission {
  BREAKER_ADMIT,
  BREAKER_ADMIT_PROBE,  /* half open: this fetch is the one probe */
  BREAKER_REFUSE_PAUSED,
  BREAKER_REFUSE_OPEN,  /* open, or its probe is already out */
};

/* What one fetch's final result did to the policy, for the caller to log and count. */
enum breaker_event {
  BREAKER_EVENT_NONE,
  BREAKER_EVENT_PAUSED,   /* a 429: *paused_seconds of pause */
  BREAKER_EVENT_OPENED,   /* the circuit opened (again): for cooldown_ms */
  BREAKER_EVENT_CLOSED,   /* it was open or half open, and closed */
};

/* A Retry-After's seconds as the daemon uses them: the given delta-seconds when within
 * [0, BREAKER_RETRY_AFTER_MAX], else BREAKER_RETRY_AFTER_DEFAULT (an HTTP-date, none, garbage). */
long breaker_clamp_retry_after(long seconds);

/* What refuses any fetch asked for now, whenever it is sent: a 429's pause (BREAKER_REFUSE_PAUSED),
 * or an open circuit whose cooldown still runs (BREAKER_REFUSE_OPEN); else BREAKER_ADMIT, and
 * breaker_admit decides when the fetch is sent (a half-open circuit's probe may be out by then, or
 * back). Changes nothing: for a fetch that may wait for a slot first. */
enum breaker_admission breaker_refusal_now(const struct breaker *breaker, int64_t now_ms);
/* Whether a fetch may be sent now; a half-open circuit admits exactly one probe. */
enum breaker_admission breaker_admit(struct breaker *breaker, const struct breaker_settings *settings,
                                     int64_t now_ms);
/* A fetch's final result (after its retries): rate_limited for a 429 (retry_after_seconds its
 * header's, or -1), failed for no answer or a 5xx. probe: it was admitted as the probe. */
enum breaker_event breaker_note(struct breaker *breaker, const struct breaker_settings *settings,
                                int64_t now_ms, bool probe, bool rate_limited, bool failed,
                                long retry_after_seconds, long *paused_seconds);
/* A probe that ended without a verdict (aborted, no token): the next fetch may probe. */
void breaker_probe_abandoned(struct breaker *breaker);

/* Whole seconds until the upstream may be asked again (the pause, or the open circuit; at least
 * 1), and seconds left of the pause (0 when none). */
long breaker_retry_after(const struct breaker *breaker, int64_t now_ms);
long breaker_paused_seconds(const struct breaker *breaker, int64_t now_ms);

/* After attempts_sent attempts of a fetch whose last one is retryable (a failed connection, or a
 * 502, 503 or 504 in http_status), the delay before the next, or -1 for none: the bound reached,
 * or no budget left before deadline_ms. random: any 32-bit number (the jitter). */
long breaker_retry_delay(int attempts_sent, bool retryable, long http_status,
                         long retry_after_seconds, int64_t now_ms, int64_t deadline_ms,
                         uint32_t random);

#endif
