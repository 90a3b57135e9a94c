/* fleet_internal: what the shared tier's three files share: fleet.c (the module: start, stop,
 * state, keys), fleet_lock.c (a fetch's way through the tier: the lookup, the lock and its
 * timeout, waiting on the host that holds it, the write-back) and fleet_purge.c (purges, and the
 * messages of the other hosts). No other module includes it: the rest of the daemon sees
 * fleet.h. */
#ifndef FLIPCACHED_FLEET_INTERNAL_H
#define FLIPCACHED_FLEET_INTERNAL_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "fleet.h"
#include "upstream.h"

#define KEY_MAX 128
#define MESSAGE_MAX 96
#define SCAN_COUNT "1000"

enum step {
  STEP_LOOKUP,   /* LOOKUP_SCRIPT in flight: the entry, or the lock */
  STEP_WAIT,     /* another host holds the lock: waiting for "ready" or the poll */
  STEP_UPSTREAM, /* asking Flip (lock_held says whether for the fleet) */
};

/* One fetch's way through the tier: from fleet_fetch_enrollment to fleet_fetched (or to the copy
 * that answered it). While a command of it is out (command_out), it outlives an abort: the
 * command's answer frees it. */
struct fleet_fetch {
  struct fleet *fleet;
  struct inflight_fetch *fetch;   /* NULL once aborted */
  upstream_done_fn fetched;
  fleet_copy_fn copied;
  int64_t min_fetched_at;
  enum step step;
  bool command_out;
  bool lock_held;
  bool counted_wait;
  bool looked_again;              /* a second lookup after garbage the script took for an entry */
  int64_t wait_until_ms;
  struct event *poll_timer;
  TAILQ_ENTRY(fleet_fetch) link;
};
TAILQ_HEAD(fleet_fetch_list, fleet_fetch);

struct fleet {
  struct flipcached *daemon;
  struct fleet_purges purges;     /* another host's purges, applied here (fleet.h) */
  struct shared *shared;          /* NULL when [shared] is off */
  char host[FLEET_HOST_LEN + 1];  /* this daemon's random name, in locks and messages */
  char channel[KEY_MAX];
  struct fleet_fetch_list fetches; /* every fleet_fetch alive */
  size_t waiting;                 /* of them, in STEP_WAIT */
  size_t pending;                 /* of them, not yet at the upstream */
  unsigned purging_all;           /* purge-all scans running: lookups take no entry meanwhile */
};

/* fleet.c: the Redis key of an entry ("e:") or a lock ("lock:") of enrollment_id; its length. */
size_t fleet_key_of(const struct fleet *fleet, const char *kind, const char *enrollment_id,
                    char out[KEY_MAX]);
/* fleet_lock.c: a channel message "VERB HOST[ ID]" of this host; its length. */
size_t fleet_message_of(const struct fleet *fleet, const char *verb, const char *enrollment_id,
                        char out[MESSAGE_MAX]);
/* fleet_lock.c: frees a fetch's state (out of the tier's counts; its poll timer). */
void fleet_fetch_free(struct fleet_fetch *ff);
/* fleet_lock.c: another host wrote enrollment_id, or gave up its lock: a fetch waiting on it
 * looks again at once. */
void fleet_on_ready(struct fleet *fleet, const char *enrollment_id);
/* fleet_purge.c: the channel's messages and its subscription (redis.h's callbacks; arg: the
 * fleet). */
void fleet_on_message(const char *payload, size_t len, void *arg);
void fleet_on_subscribed(bool again, void *arg);

#endif
