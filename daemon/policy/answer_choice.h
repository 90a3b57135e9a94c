/* answer_choice: what a request's Cache-Control directives (RFC 9111 5.2.1) and the configured
 * stale windows (RFC 5861) make of the copy the cache holds. Pure: one function decides every
 * combination, so that the precedence is in one place and unit-tested (test_answer_choice.c).
 *
 * A copy is acceptable to a request when every directive it sent allows it:
 *   no-cache (or Pragma: no-cache)  never, without asking the upstream
 *   max-age=N                       its age is at most N (max-age=0: never; ages are whole
 *                                   seconds, so a copy of this second could be up to 1 s old)
 *   min-fresh=N                     it stays fresh for at least N more seconds
 *   max-stale[=N]                   a stale copy too, up to N seconds past its freshness (bare:
 *                                   any), while the cache still keeps it (its stale_until)
 * Then:
 *   acceptable and fresh                           -> the copy (a hit)
 *   acceptable, stale, within max-stale            -> the copy at once, and one background refresh
 *   acceptable, stale, within stale_while_revalidate -> the same
 *   only-if-cached                                 -> an acceptable copy, fresh or stale within
 *                                                     a window or max-stale; else 504, never
 *                                                     upstream
 *   otherwise                                      -> wait for the id's fetch; Cache-Status says
 *                                                     why: uri-miss (no copy), stale (a stale
 *                                                     one), request (a fresh one the directives
 *                                                     refused)
 * no-store: what that fetch brings is not stored (here or in the shared tier). */
#ifndef FLIPCACHED_ANSWER_CHOICE_H
#define FLIPCACHED_ANSWER_CHOICE_H

#include <stdbool.h>
#include <stdint.h>

#include "http1.h"
#include "record.h"

enum answer_way {
  ANSWER_FRESH,         /* the copy, fresh: a hit */
  ANSWER_STALE_REFRESH, /* the stale copy at once, and one background refresh of the id */
  ANSWER_STALE,         /* the stale copy, nothing upstream (only-if-cached) */
  ANSWER_FETCH,         /* wait on the id's fetch */
  ANSWER_NOT_CACHED,    /* 504 not_cached (only-if-cached) */
};

/* RFC 9211's fwd, why a request went upstream. 0 is "not decided" (front_request_tag's start). */
enum answer_fwd {
  FWD_NONE,
  FWD_URI_MISS, /* no copy */
  FWD_STALE,    /* a stale copy */
  FWD_REQUEST,  /* a fresh copy the request's directives did not accept */
};

struct answer_choice {
  enum answer_way way;
  enum answer_fwd fwd;    /* with ANSWER_FETCH */
  int64_t min_fetched_at; /* with ANSWER_FETCH: a shared tier's copy fetched earlier will not do
                             (0: any); max-age=N asks now - N, no-cache and min-fresh now */
  bool store;             /* with ANSWER_FETCH: its answer may be stored (no no-store) */
};

struct stale_windows {
  unsigned stale_while_revalidate;
  unsigned stale_if_error;
};

/* copy is NULL when the cache holds none. */
struct answer_choice answer_choose(const struct request_directives *directives,
                                   const struct cache_record *copy, int64_t now,
                                   struct stale_windows windows);
/* Whether copy may answer this request when its fetch failed or was refused (stale-if-error):
 * fresh, within a stale window or within its max-stale; never with no-cache (it asked for a
 * validated answer). */
bool answer_copy_covers_failure(const struct request_directives *directives,
                                const struct cache_record *copy, int64_t now,
                                struct stale_windows windows);
/* "uri-miss", "stale", "request"; NULL for FWD_NONE. */
const char *answer_fwd_text(enum answer_fwd fwd);

#endif
