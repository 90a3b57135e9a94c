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
#include "seal.h"
#include "record.h"
#include "upstream.h"

#define KEY_MAX 128
#define MESSAGE_MAX 96
#define SEALED_MESSAGE_MAX (MESSAGE_MAX + SEAL_OVERHEAD)
#define GENERATION_MAX 24 /* the purge generation's decimal digits */
/* Lua the scripts share (fleet_lock.c, fleet_purge.c); KEY and HOST are Lua expressions. A key
 * of another type where a string is expected is no reason to fail half-way (a script's writes
 * are not undone): it is read with pcall and repaired.
 * The purge generation at KEY into the local g ("" when there is none). */
#define LUA_READ_GENERATION(KEY)                                                               \
  "local g = redis.pcall('GET', " KEY ") "                                                     \
  "if type(g) == 'table' then redis.call('DEL', " KEY ") g = false end g = g or '' "
/* The purge generation at KEY moved on (one of another type is replaced). */
#define LUA_BUMP_GENERATION(KEY)                                                               \
  "if type(redis.pcall('INCR', " KEY ")) == 'table' then "                                     \
  "redis.call('DEL', " KEY ") redis.call('INCR', " KEY ") end "
/* Whether the lock at KEY may be released by HOST, into the local mine: it is HOST's, or of a
 * type no host could have written. */
#define LUA_LOCK_IS_MINE(KEY, HOST)                                                            \
  "local l = redis.pcall('GET', " KEY ") local mine = type(l) == 'table' or l == " HOST " "
/* An entry's value in Redis: seal.h's sealed value whose clear part is the record's fetched_at
 * and fresh_until (little-endian i64 each; the lookup script reads them at offsets 8 and 16) and
 * whose plaintext is the record as stored locally (record.h). */
#define VALUE_CLEAR_LEN 16
#define VALUE_MIN_LEN (SEAL_OVERHEAD + VALUE_CLEAR_LEN)
/* The longest value a lookup accepts: a whole record of the largest body the upstream may send.
 * Redis's script refuses (and deletes) a longer one without sending it. */
#define VALUE_MAX_LEN \
  (VALUE_MIN_LEN + RECORD_HEADER_LEN + UPSTREAM_ETAG_MAX + UPSTREAM_LAST_MODIFIED_MAX + UPSTREAM_MAX_BODY)
#define SCAN_COUNT "1000"
/* The purges this host sent or owes, remembered to repeat (fleet_purge.c): an owed one (the tier
 * was unavailable, or the command failed) when the tier is next available; an acknowledged one
 * within FLEET_PURGE_REPEAT_S when a new master is (a failover may lose a write not yet
 * replicated). At most FLEET_PURGE_LOG: past that they fold into one purge of everything. */
#define FLEET_PURGE_LOG 256
#define FLEET_PURGE_REPEAT_S 60

struct logged_purge {
  uint64_t serial;                /* this host's, from 1 */
  char enrollment_id[40];         /* "" : every entry */
  int64_t acked_ms;               /* monotonic time Redis acknowledged it; 0: owed */
  bool sending;                   /* a (repeated) purge of it is in flight */
};

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
  bool has_generation;            /* a lookup answered: generation is set */
  char generation[GENERATION_MAX]; /* the purge generation the lookup saw ("" before one): a
                                      write-back is refused by Redis once a purge has changed it */
  char lock_seen[65];             /* the lock's value when another host held it (at most 64) */
  int64_t wait_until_ms;
  struct event *poll_timer;
  TAILQ_ENTRY(fleet_fetch) link;
};
TAILQ_HEAD(fleet_fetch_list, fleet_fetch);

struct fleet {
  struct flipcached *daemon;
  struct fleet_purges purges;     /* another host's purges, applied here (fleet.h) */
  struct shared *shared;          /* NULL when [shared] is off */
  struct seal_keys keys;          /* [shared] key_file's (seal.h); wiped at fleet_free */
  char host[FLEET_HOST_LEN + 1];  /* this daemon's random name, in locks and messages */
  char channel[KEY_MAX];
  struct fleet_fetch_list fetches; /* every fleet_fetch alive */
  size_t waiting;                 /* of them, in STEP_WAIT */
  size_t pending;                 /* of them, not yet at the upstream */
  unsigned purging_all;           /* purge-all scans running: lookups take no entry meanwhile */
  struct logged_purge purge_log[FLEET_PURGE_LOG]; /* oldest first */
  size_t purge_log_len;
  uint64_t purge_serial;          /* the last one given */
  /* Catching up (fleet_purge.c): a host that has just subscribed says "hello", and the others
   * publish their recent purges again for it. */
  bool hello_owed;                /* subscribed: this host's hello has not gone yet */
  bool answer_owed;               /* another host said hello: recent purges to publish again */
  bool catch_up_out;              /* a CATCH_UP_SCRIPT is in flight (one at a time) */
};

/* fleet.c: the Redis key of an entry ("e:") or a lock ("lock:") of enrollment_id, named under
 * key `key_index` of the file (0: the sealing key; seal_name: no id in it); its length. */
size_t fleet_key_of(const struct fleet *fleet, const char *kind, size_t key_index,
                    const char *enrollment_id, char out[KEY_MAX]);
/* fleet.c: appends enrollment_id's entry keys, one under each key of the file (the sealing key's
 * first), to argv and len at *argc; names holds their text. Returns how many (keys.count). */
size_t fleet_entry_keys(const struct fleet *fleet, const char *enrollment_id,
                        char names[SEAL_MAX_KEYS][KEY_MAX], const char **argv, size_t *len,
                        int *argc);
/* fleet.c: prefix + `what` ("gen": the purge generation's key; "e:*": every entry's pattern). */
size_t fleet_fixed_key(const struct fleet *fleet, const char *what, char out[KEY_MAX]);
/* fleet.c: the sealed value of enrollment_id's record (malloc'd, *len bytes); NULL: none. */
unsigned char *fleet_seal_record(const struct fleet *fleet, const char *enrollment_id,
                                 const struct cache_record *record, size_t *len);
/* fleet.c: opens a value as enrollment_id's record: *plain (malloc'd, the caller frees it, also
 * on failure) holds what record points into. false: it does not open with any key, or opens
 * but is no record, or its clear times are not the record's. */
bool fleet_open_record(const struct fleet *fleet, const char *enrollment_id, const char *value,
                       size_t len, struct cache_record *record, unsigned char **plain);
/* fleet.c: a channel message "VERB HOST[ ID]" of this host, sealed (out: SEALED_MESSAGE_MAX);
 * its length, 0 when it could not be sealed. */
size_t fleet_message_of(const struct fleet *fleet, const char *verb, const char *enrollment_id,
                        unsigned char out[SEALED_MESSAGE_MAX]);
/* fleet.c: a message from the channel opened into text (NUL-terminated); false: not sealed by a
 * key of this host's, or too long. */
bool fleet_open_message(const struct fleet *fleet, const char *payload, size_t len,
                        char text[MESSAGE_MAX]);
/* fleet_lock.c: frees a fetch's state (out of the tier's counts; its poll timer). */
void fleet_fetch_free(struct fleet_fetch *ff);
/* fleet_lock.c: another host wrote enrollment_id, or gave up its lock: a fetch waiting on it
 * looks again at once. */
void fleet_on_ready(struct fleet *fleet, const char *enrollment_id);
/* fleet_purge.c: the channel's messages and its subscription (redis.h's callbacks; arg: the
 * fleet). Once subscribed, the host says "hello" with its own recent purges; another host's hello
 * is answered with them. */
void fleet_on_message(const char *payload, size_t len, void *arg);
void fleet_on_subscribed(bool again, void *arg);
/* fleet_purge.c: the tier is available (again, or on a new master): the owed purges go, and on
 * a new master the recent ones again (redis.h's shared_available_fn; arg: the fleet). */
void fleet_on_available(bool new_master, void *arg);

#endif
