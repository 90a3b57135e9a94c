/* inflight: enrollment id -> the one upstream fetch in progress for it, and the client requests
 * waiting on it (request coalescing, as nginx's proxy_cache_lock and Varnish's waiting list).
 *
 * Pure bookkeeping: no I/O. Waiters are opaque pointers owned by the caller; the table only lists
 * them. A fetch is in the table from inflight_start until inflight_finish, which the caller calls
 * after answering every waiter. */
#ifndef FLIPCACHED_INFLIGHT_H
#define FLIPCACHED_INFLIGHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uuid.h"
#include "validators.h"

struct client_request;
struct fleet_fetch;
struct transfer;
struct inflight_table;

struct inflight_fetch {
  char enrollment_id[UUID_TEXT_LEN + 1];
  bool background;           /* started to refresh a stale entry, not for a waiting client */
  uint64_t flow;             /* whose share of the upstream's fetch slots it takes (fair.h): the
                                user of the request that caused it, or FAIR_FLOW_BACKGROUND */
  bool had_expired_copy;     /* the cache held an expired entry when the fetch started */
  bool store_forbidden;      /* nothing may be stored: the id (or the whole cache) was deleted
                                after the fetch started, or the request that caused it said
                                Cache-Control: no-store */
  /* A refresh of a copy the upstream gave validators for: they go with the request (the
   * conditions, NUL-terminated, "" for none), and the copy itself, encoded (record.h; owned,
   * freed by inflight_finish), is what a 304 renews, even if the cache lost it meanwhile. */
  char if_none_match[UPSTREAM_ETAG_MAX + 1];
  char if_modified_since[UPSTREAM_LAST_MODIFIED_MAX + 1];
  unsigned char *held_copy;
  size_t held_copy_len;
  void *owner;               /* the caller's; the table never touches it */
  struct fleet_fetch *fleet; /* fleet.c's state while the shared tier is asked or its lock held;
                                NULL otherwise (fleet.h) */
  struct transfer *transfer; /* the upstream fetch (upstream.h's handle) once it is started; NULL
                                before, and from its result on */
  struct client_request **waiters; /* in arrival order; waiters[0] caused the fetch unless background */
  size_t waiter_count;
  size_t waiter_cap;
  struct inflight_fetch *next_in_bucket;
};

/* The daemon's bound on the requests that may wait on one enrollment's fetch; one more is
 * answered 503 overloaded (enrollment.c). */
#define INFLIGHT_MAX_WAITERS 4096

/* max_waiters bounds the waiters of one fetch (INFLIGHT_MAX_WAITERS in the daemon; tests pass
 * smaller ones). NULL when out of memory. */
struct inflight_table *inflight_table_new(size_t max_waiters);
/* Frees the table and any fetch still in it (not the waiters). Accepts NULL. */
void inflight_table_free(struct inflight_table *table);

struct inflight_fetch *inflight_find(struct inflight_table *table, const char *enrollment_id);
/* Adds a fetch for an id that has none; NULL when out of memory or one is already in progress. */
struct inflight_fetch *inflight_start(struct inflight_table *table, const char *enrollment_id);
/* Appends a waiter. false when the fetch already has max_waiters (or out of memory). */
bool inflight_add_waiter(struct inflight_table *table, struct inflight_fetch *fetch,
                         struct client_request *waiter);
/* Removes the fetch from the table and frees it. */
void inflight_finish(struct inflight_table *table, struct inflight_fetch *fetch);
/* Marks every fetch in progress store_forbidden (the whole cache was purged). */
void inflight_forbid_stores(struct inflight_table *table);
/* Fetches in progress. */
size_t inflight_count(const struct inflight_table *table);

#endif
