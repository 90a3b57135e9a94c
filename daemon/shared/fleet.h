/* fleet: the shared second tier ([shared]): many hosts' flipcached over one Redis, so that the
 * fleet asks Flip once per id and a purge on one host reaches all of them. redis.h is the Redis
 * client, seal.h what makes Redis hold nothing it can read or forge; this is what is kept there
 * and how a fetch goes through it.
 *
 * Redis holds, for an id whose NAME is seal_name(id) (a keyed hash: no id in Redis):
 *   prefix + "e:" + NAME     the entry: the record sealed for that id (fleet_internal.h)
 *   prefix + "lock:" + NAME  the fetching host's random name, PX lock_ms
 *   prefix + "gen"           the purge generation, moved on by every purge
 * and the channel prefix + "events" carries sealed "ready HOST ID", "purge HOST ID" and
 * "purge-all HOST": each daemon subscribes, and a purge from another host drops the local copy
 * (or every copy).
 *
 * A fetch (one per id on a host, inflight.h) with the tier available:
 *   1. One script (LOOKUP_SCRIPT): the entry under each key's name if its clear times make it
 *      fresh and new enough for this fetch, else the lock (SET NX PX lock_ms) in the same atomic
 *      step (so no host takes the lock just after another wrote the entry and released it), and
 *      the purge generation. A value is judged as an upstream answer: it must open with one of
 *      this host's keys for this id, decode, pass validate.c's checks; its times are bounded by
 *      this host's ttl, and a copy fetched in this host's future is not used. A usable copy is
 *      stored locally and answers every waiter; one that does not open or fails a check is
 *      deleted and counted. The script deletes unread a value too long for any answer, and a
 *      key (entry or lock) of another type or a lock that would never expire.
 *   2. The lock taken: this host asks Flip, then writes the entry (PX until its stale_until)
 *      unless the generation moved since the lookup (a purge came: the fetch leaves nothing),
 *      releases the lock and publishes "ready", in one script. Held by another host: the fetch
 *      waits, for "ready" or the next poll (FLEET_POLL_MS), and then does 1 again; a lock whose
 *      holder died expires and the next host takes it. It waits at most lock_ms (timeout_ms and
 *      the time to write back), then deletes that lock if unchanged and asks Flip itself.
 * Without the tier (off, down, or a command failing), the fetch goes to Flip at once, as if there
 * were no tier, and writes nothing back (it cannot know the generation it began under). */
#ifndef FLIPCACHED_FLEET_H
#define FLIPCACHED_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "upstream.h"

struct flipcached;
struct inflight_fetch;
struct cache_record;
struct config;
struct fleet;
struct seal_keys;

#define FLEET_POLL_MS 200        /* a waiting fetch looks again this often without a message */
#define FLEET_MAX_WAITING 4096   /* fetches waiting on other hosts' locks; more ask Flip at once */
#define FLEET_MAX_CLOCK_SKEW 60  /* seconds: a copy fetched later than now plus this is not used */
#define FLEET_HOST_LEN 16        /* hex characters of a daemon's random name in locks and messages */

/* A copy found in the shared tier, for the fetch's owner to store and answer with. */
typedef void (*fleet_copy_fn)(const struct cache_record *record, void *arg);

/* The answer to an admin purge through the tier: deleted, the keys removed from Redis, and
 * notified, the daemons that received the message (this one included); or error (NULL: none). */
struct fleet_purge_result {
  uint64_t deleted;
  uint64_t notified;
  const char *error;
};
typedef void (*fleet_purged_fn)(const struct fleet_purge_result *result, void *arg);

/* Reads [shared] password_file (the token file's rules) and starts the Redis client; with
 * [shared] redis empty, a fleet that does nothing. NULL with err set. */
/* What another host's purge does here: the request policy's invalidation, given by the caller
 * (main.c: enrollment_forget, enrollment_forget_all), so that the shared tier never calls up into
 * the policy. Each returns 0, or -1 with err set. */
struct fleet_purges {
  int (*forget)(struct flipcached *daemon, const char *enrollment_id, bool *found, char *err,
                size_t err_len);
  int (*forget_all)(struct flipcached *daemon, uint64_t *removed, char *err, size_t err_len);
};
struct fleet *fleet_new(struct flipcached *daemon, const struct fleet_purges *purges, char *err,
                        size_t err_len);
/* Reads the shared key ($CREDENTIALS_DIRECTORY/flip-shared-key when present, else [shared]
 * key_file; a secret file's rules, then seal.h's format) into keys. 0, or -1 with err naming
 * the file and the line, never a key. fleet_new calls it; so does -t. */
int fleet_load_keys(const struct config *cfg, struct seal_keys *keys, char *err, size_t err_len);
/* Reads [shared] password_file, or sentinel_password_file (sentinel), into out (out_size:
 * SHARED_PASSWORD_MAX + 1; "" when the key is empty): a secret file's rules. 0, or -1 with err naming the key, never the password.
 * fleet_new calls it; so does -t. */
int fleet_read_password(const struct config *cfg, bool sentinel, char *out, size_t out_size,
                        char *err, size_t err_len);
/* Every fetch still looking or waiting gets UPSTREAM_ABORTED, then Redis is left. Accepts NULL. */
void fleet_free(struct fleet *fleet);

/* Starts a fetch for fetch->enrollment_id through the tier, or straight at the upstream when it
 * is off or unavailable (then the upstream's refusal is returned at once, as
 * upstream_fetch_enrollment's). On UPSTREAM_STARTED exactly one of fetched(result, fetch) or
 * copied(record, fetch) is called later; a refusal met later comes as an UPSTREAM_REFUSED result.
 * min_fetched_at: a shared copy fetched earlier is not good enough (a refresh, max-age). */
enum upstream_start fleet_fetch_enrollment(struct fleet *fleet, struct inflight_fetch *fetch,
                                           int64_t min_fetched_at, upstream_done_fn fetched,
                                           fleet_copy_fn copied);
/* Called by fetched() once the result is handled and before inflight_finish: writes `stored` (the
 * record kept locally, or NULL for none) to the tier and releases the fetch's lock. */
void fleet_fetched(struct fleet *fleet, struct inflight_fetch *fetch,
                   const struct cache_record *stored);

/* Admin purges through the tier: DEL (or SCAN and UNLINK of every entry) and the message to
 * every daemon. false: the tier is off or unavailable, and done is never called; else done is
 * called once, later. */
bool fleet_purge_enrollment(struct fleet *fleet, const char *enrollment_id, fleet_purged_fn done,
                            void *arg);
bool fleet_purge_all(struct fleet *fleet, fleet_purged_fn done, void *arg);

bool fleet_enabled(const struct fleet *fleet);
/* 0 off, 1 up, 2 down (the /stats gauge shared_state). */
unsigned fleet_state(const struct fleet *fleet);
/* NULL when off or up; else why not, for /healthz. */
const char *fleet_problem(const struct fleet *fleet);
/* The Redis master in use, "" when off or none is known yet; milliseconds without the tier since
 * the start (0 when off); with sentinels, why none is connected (NULL: one is, or none are
 * configured): a failover would not be followed. */
const char *fleet_master(const struct fleet *fleet);
uint64_t fleet_unavailable_ms(const struct fleet *fleet);
const char *fleet_sentinel_problem(const struct fleet *fleet);
/* Fetches waiting on another host's lock. */
size_t fleet_waiting(const struct fleet *fleet);
/* Fetches looking in, or waiting on, the tier (not yet at the upstream): for a graceful stop. */
size_t fleet_pending(const struct fleet *fleet);

#endif
