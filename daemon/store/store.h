/* store: how an answer fetched from the upstream becomes a cache record and is written: the one
 * store of the request policy (enrollment.c), the shared tier's copies and the warm-up (warm.c),
 * so that none of them calls another to store. */
#ifndef FLIPCACHED_STORE_H
#define FLIPCACHED_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cache_record;
struct config;
struct flipcached;

/* The record of an answer fetched at `now`: a validated 200 fresh for ttl less sooner_by
 * seconds, then the longer of the stale windows; a 404 fresh for negative_ttl, no stale window.
 * The record points into body, and carries its digest (the ETag), computed here, once; no
 * upstream validators (the caller adds them). false: nothing is kept (a 404 with negative_ttl 0). */
bool store_record_of(const struct config *cfg, uint16_t upstream_status, const char *body,
                     size_t body_len, long long now, unsigned sooner_by,
                     struct cache_record *record);
/* The record of a copy Flip's 304 renewed at `now`: held's body, digest and validators, fresh
 * for ttl from now, then the longer of the stale windows (as store_record_of's 200). The record
 * points into held's buffers. */
void store_record_renewed(const struct config *cfg, const struct cache_record *held, long long now,
                          struct cache_record *record);
/* Writes record locally; true when stored (a full map or a failed write is counted in
 * daemon->stats and logged, rate-limited). */
bool store_put(struct flipcached *daemon, const char *enrollment_id,
               const struct cache_record *record);
/* store_record_of, then store_put. */
bool store_fetched(struct flipcached *daemon, const char *enrollment_id, uint16_t upstream_status,
                   const char *body, size_t body_len, long long now, unsigned sooner_by);

#endif
