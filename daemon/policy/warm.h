/* warm: filling the cache from the list endpoint ([warm] program_ids, interval).
 *
 * A run fetches GET /v1/enrollments?program_id=P for each configured program, one list at a time,
 * through upstream_fetch_program (the same multi handle, credential, timeouts, breaker, pause and
 * the background's share of the fetch slots as refreshes). Each list is checked whole before
 * anything of it is stored (validate.h: a JSON object whose "enrollments" holds enrollments
 * with UUID ids, at most UPSTREAM_MAX_LIST_BODY bytes and VALIDATE_LIST_MAX_ELEMENTS
 * elements); a list that fails is refused whole with one log line. Its elements are then stored
 * as if each had been fetched by id, but with fresh_until spread over the last tenth of ttl, so
 * that a program's thousands of entries do not expire, and come back to the upstream, in the
 * same second.
 *
 * Nothing waits for it: the first run starts after READY=1, and both the check and the stores
 * go in slices (WARM_CHECK_BATCH elements, WARM_STORE_BATCH writes) between which the loop serves
 * everything else. An entry fetched by id after the list was asked for is newer and stays. An
 * admin delete (one id or all) during a run drops what the run has not stored yet.
 *
 * Runs: the first right after start; then, with interval > 0, each `interval` seconds after the
 * previous one started (a run still going when the next is due delays it; runs never overlap).
 * POST /cache/warm starts one now. What is held: one list's body and its spans (48 bytes an
 * element), never more than one list at a time. */
#ifndef FLIPCACHED_WARM_H
#define FLIPCACHED_WARM_H

#include <stdbool.h>

struct flipcached;
struct warm;

#define WARM_CHECK_BATCH 64  /* list elements checked per turn of the loop (about 1 ms) */
#define WARM_STORE_BATCH 16  /* entries stored per turn of the loop (about 1 ms) */

/* The daemon's cfg, cache, upstream and stats must outlive it. NULL when out of memory. */
struct warm *warm_new(struct flipcached *daemon);
/* Schedules runs for the configuration in force: at start, the first run at once; after a reload,
 * a changed program list is warmed at once and a changed interval counts from the last run's
 * start. */
void warm_configure(struct warm *warm);

enum warm_start {
  WARM_STARTED,
  WARM_ALREADY_RUNNING,
  WARM_NOT_CONFIGURED, /* no program_ids */
};
enum warm_start warm_run_now(struct warm *warm);
/* Whether a run is in progress, and how many programs it has. */
bool warm_running(const struct warm *warm);
unsigned warm_program_count(const struct warm *warm);
/* Shutdown: no more runs; a list still arriving is dropped. */
void warm_stop(struct warm *warm);
/* After upstream_free (which may still deliver a list to it). Accepts NULL. */
void warm_free(struct warm *warm);

#endif
