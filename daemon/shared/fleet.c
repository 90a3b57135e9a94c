/* fleet: the shared second tier (fleet.h says what is kept in Redis and how a fetch goes). */
#include "fleet.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>

#include "cache.h"
#include "clock.h"
#include "creds.h"
#include "flipcached.h"
#include "inflight.h"
#include "log.h"
#include "record.h"
#include "uuid.h"
#include "redis.h"
#include "validate.h"

#define KEY_MAX 128
#define MESSAGE_MAX 96
#define SCAN_COUNT "1000"

/* The value of an entry in Redis: the id, then the cache record (record.h) as stored locally. */
#define VALUE_HEADER UUID_TEXT_LEN

/* Writes the entry, releases this host's lock and says "ready", in one round trip. */
static const char STORE_SCRIPT[] =
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
    "if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end "
    "redis.call('PUBLISH', KEYS[3], ARGV[4]) return 1";
/* Releases this host's lock (nothing was stored) and says "ready": the waiters look again. */
static const char UNLOCK_SCRIPT[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) "
    "redis.call('PUBLISH', KEYS[2], ARGV[2]) end return 1";
/* The one command of a lookup: the entry, and the lock when the entry will not do. Atomically,
 * so that no host takes the lock just after another wrote the entry and released it (a GET,
 * then a SET NX, would: bench/fleet measured 1.63 upstream requests per id per ttl so). An entry
 * fresh at ARGV[3] (now) and fetched no earlier than ARGV[4] is returned as it is ({value, 2});
 * otherwise the lock is tried ({value or nil, 1 when taken, 0 when another host holds it}). Only the times of the record's
 * header are read here (struct.unpack, little-endian i64 at fetched_at's and fresh_until's
 * offsets after the id); the daemon checks the whole value as before. A key of another type
 * (GET fails) is deleted here, and the third element says so. */
static const char LOOKUP_SCRIPT[] =
    "local v = redis.pcall('GET', KEYS[1]) "
    "local wrong = 0 "
    "if type(v) == 'table' then redis.call('UNLINK', KEYS[1]) v = false wrong = 1 end "
    "if v and string.len(v) >= 60 then "
    "local fetched = struct.unpack('<i8', v, 45) "
    "local fresh = struct.unpack('<i8', v, 53) "
    "if fresh > tonumber(ARGV[3]) and fetched >= tonumber(ARGV[4]) then return {v, 2, 0} end "
    "end "
    "local taken = redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) "
    "return {v, taken and 1 or 0, wrong}";
/* Deletes one entry and tells every daemon: {keys deleted, daemons that received it}. */
static const char PURGE_SCRIPT[] =
    "return {redis.call('DEL', KEYS[1]), redis.call('PUBLISH', KEYS[2], ARGV[1])}";

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

/* ---- keys and values ---------------------------------------------------------------------- */

static size_t key_of(const struct fleet *fleet, const char *kind, const char *enrollment_id,
                     char out[KEY_MAX]) {
  return (size_t)snprintf(out, KEY_MAX, "%s%s%s", fleet->daemon->cfg.shared_prefix, kind,
                          enrollment_id);
}

/* What a value in Redis is worth to this fetch. */
enum copy_verdict { COPY_USABLE, COPY_UNUSABLE, COPY_GARBAGE };

static enum copy_verdict judge_copy(const struct fleet_fetch *ff, const redisReply *reply,
                                    struct cache_record *record, int64_t now) {
  const char *enrollment_id = ff->fetch->enrollment_id;
  if (reply->type == REDIS_REPLY_NIL)
    return COPY_UNUSABLE;
  if (reply->type != REDIS_REPLY_STRING || reply->len < VALUE_HEADER ||
      memcmp(reply->str, enrollment_id, UUID_TEXT_LEN) != 0 ||
      record_decode(reply->str + VALUE_HEADER, reply->len - VALUE_HEADER, record) != RECORD_OK)
    return COPY_GARBAGE;
  if (record->upstream_status == 200) {
    if (validate_enrollment_body((const char *)record->body, record->body_len, enrollment_id) !=
        BODY_OK)
      return COPY_GARBAGE;
  } else if (record->upstream_status != 404) {
    return COPY_GARBAGE;
  }
  if (now >= record->fresh_until || record->fetched_at < ff->min_fetched_at ||
      record->fetched_at > now + FLEET_MAX_CLOCK_SKEW)
    return COPY_UNUSABLE;
  return COPY_USABLE;
}

/* ---- one fetch's steps -------------------------------------------------------------------- */

/* How long a lock lives, and so how long another host waits on it: the holder's fetch (within
 * timeout_ms, retries included) and the Redis commands around it. */
static unsigned lock_ms(const struct fleet *fleet) {
  return fleet->daemon->cfg.timeout_ms + 4 * fleet->daemon->cfg.shared_timeout_ms;
}

static void step_lookup(struct fleet_fetch *ff);

static void set_step(struct fleet_fetch *ff, enum step step);

static void fleet_fetch_free(struct fleet_fetch *ff) {
  struct fleet *fleet = ff->fleet;
  set_step(ff, STEP_UPSTREAM); /* out of the tier's counts of waiting and pending fetches */
  if (ff->fetch)
    ff->fetch->fleet = NULL;
  if (ff->poll_timer)
    event_free(ff->poll_timer);
  TAILQ_REMOVE(&fleet->fetches, ff, link);
  free(ff);
}

static void set_step(struct fleet_fetch *ff, enum step step) {
  struct fleet *fleet = ff->fleet;
  if (ff->step == STEP_WAIT)
    fleet->waiting--;
  if (ff->step != STEP_UPSTREAM && step == STEP_UPSTREAM)
    fleet->pending--;
  ff->step = step;
  if (step == STEP_WAIT)
    fleet->waiting++;
}

/* To Flip: the fetch's own result comes to ff->fetched; a refusal now is delivered as a result. */
static void step_upstream(struct fleet_fetch *ff) {
  struct flipcached *daemon = ff->fleet->daemon;
  struct inflight_fetch *fetch = ff->fetch;
  set_step(ff, STEP_UPSTREAM);
  if (ff->poll_timer)
    event_del(ff->poll_timer);
  enum upstream_start started =
      upstream_fetch_enrollment(daemon->upstream, fetch->enrollment_id, fetch->flow, ff->fetched,
                                fetch, &fetch->transfer);
  if (started == UPSTREAM_STARTED)
    return;
  struct upstream_result refused = {
    .outcome = UPSTREAM_REFUSED, .refusal = started,
    .retry_after_seconds = upstream_refusal_retry_after(daemon->upstream, started),
    .error_text = "not sent",
  };
  ff->fetched(&refused, fetch); /* calls fleet_fetched, which frees ff */
}

/* The copy answers: stored locally and served by the owner; ff is freed first (the owner ends
 * the fetch). */
static void deliver_copy(struct fleet_fetch *ff, const struct cache_record *record) {
  struct inflight_fetch *fetch = ff->fetch;
  fleet_copy_fn copied = ff->copied;
  ff->fleet->daemon->stats.shared_hits++;
  fleet_fetch_free(ff);
  copied(record, fetch);
}

static void note_garbage(struct fleet *fleet, const char *enrollment_id) {
  fleet->daemon->stats.shared_invalid++;
  log_warning_limited("shared tier: the value of %s in redis is not a sound entry for that id: "
                      "ignored and deleted", enrollment_id);
}

static void forget_garbage(struct fleet *fleet, const char *enrollment_id) {
  char key[KEY_MAX];
  size_t key_len = key_of(fleet, "e:", enrollment_id, key);
  const char *argv[] = {"UNLINK", key};
  size_t len[] = {6, key_len};
  note_garbage(fleet, enrollment_id);
  shared_command(fleet->shared, NULL, NULL, 2, argv, len);
}

/* A command of ff came back. false: ff was aborted meanwhile and is now freed. */
static bool command_back(struct fleet_fetch *ff) {
  ff->command_out = false;
  if (ff->fetch)
    return true;
  fleet_fetch_free(ff);
  return false;
}

static void unlock(struct fleet *fleet, const char *enrollment_id);

/* Another host holds the lock: wait for its "ready" or the next poll, within wait_until_ms. */
static void wait_for_holder(struct fleet_fetch *ff) {
  struct fleet *fleet = ff->fleet;
  int64_t now = clock_monotonic_ms();
  if (!ff->counted_wait) {
    if (fleet->waiting >= FLEET_MAX_WAITING) {
      step_upstream(ff);
      return;
    }
    ff->counted_wait = true;
    fleet->daemon->stats.shared_lock_waits++;
    ff->wait_until_ms = now + lock_ms(fleet);
  }
  if (now >= ff->wait_until_ms) {
    fleet->daemon->stats.shared_lock_timeouts++;
    log_warning_limited("shared tier: %s: the host holding its lock gave no entry in time: asking "
                        "the upstream", ff->fetch->enrollment_id);
    step_upstream(ff);
    return;
  }
  set_step(ff, STEP_WAIT);
  int64_t next = ff->wait_until_ms - now < FLEET_POLL_MS ? ff->wait_until_ms - now : FLEET_POLL_MS;
  struct timeval tv = clock_timeval_of_ms(next);
  if (event_add(ff->poll_timer, &tv) != 0)
    step_upstream(ff);
}

/* LOOKUP_SCRIPT's answer: the entry, and what became of the lock. */
static void on_lookup(const redisReply *reply, void *arg) {
  struct fleet_fetch *ff = arg;
  if (!command_back(ff))
    return;
  struct fleet *fleet = ff->fleet;
  if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
      reply->element[1]->type != REDIS_REPLY_INTEGER ||
      reply->element[2]->type != REDIS_REPLY_INTEGER) {
    step_upstream(ff); /* the tier failed: Flip, as without it */
    return;
  }
  long long lock = reply->element[1]->integer; /* 1 taken, 0 held elsewhere, 2 not tried */
  if (reply->element[2]->integer == 1)
    note_garbage(fleet, ff->fetch->enrollment_id); /* of another type: the script deleted it */
  struct cache_record record;
  enum copy_verdict verdict = fleet->purging_all ? COPY_UNUSABLE
                              : judge_copy(ff, reply->element[0], &record, clock_wall_seconds());
  if (verdict == COPY_USABLE) {
    if (lock == 1) /* the script judged it stale a moment before this host's clock did not */
      unlock(fleet, ff->fetch->enrollment_id);
    deliver_copy(ff, &record);
    return;
  }
  if (verdict == COPY_GARBAGE)
    forget_garbage(fleet, ff->fetch->enrollment_id);
  ff->lock_held = lock == 1;
  if (lock == 1) {
    step_upstream(ff);
  } else if (lock == 2) {
    /* The script took the value for a fresh entry and did not try the lock, but it will not do:
     * garbage (now deleted: look once more, for the lock), or a copy from a clock too far ahead. */
    if (verdict == COPY_GARBAGE && !ff->looked_again) {
      ff->looked_again = true;
      step_lookup(ff);
    } else {
      step_upstream(ff);
    }
  } else {
    wait_for_holder(ff);
  }
}

/* Sends ff's LOOKUP_SCRIPT; false when the tier would not take it. */
static bool send_lookup(struct fleet_fetch *ff) {
  struct fleet *fleet = ff->fleet;
  char entry[KEY_MAX], lock[KEY_MAX], px[24], now[24], min[24];
  size_t entry_len = key_of(fleet, "e:", ff->fetch->enrollment_id, entry);
  size_t lock_len = key_of(fleet, "lock:", ff->fetch->enrollment_id, lock);
  snprintf(px, sizeof(px), "%u", lock_ms(fleet));
  snprintf(now, sizeof(now), "%lld", (long long)clock_wall_seconds());
  /* While a purge-all runs no entry may come back from Redis: none is "fetched late enough". */
  snprintf(min, sizeof(min), "%lld", fleet->purging_all ? (long long)INT64_MAX / 2
                                                        : (long long)ff->min_fetched_at);
  const char *argv[] = {"EVAL", LOOKUP_SCRIPT, "2", entry, lock, fleet->host, px, now, min};
  size_t len[] = {4, sizeof(LOOKUP_SCRIPT) - 1, 1, entry_len, lock_len, FLEET_HOST_LEN,
                  strlen(px), strlen(now), strlen(min)};
  ff->command_out = shared_command(fleet->shared, on_lookup, ff, 9, argv, len);
  if (ff->command_out)
    fleet->daemon->stats.shared_lookups++;
  return ff->command_out;
}

static void step_lookup(struct fleet_fetch *ff) {
  set_step(ff, STEP_LOOKUP);
  if (!send_lookup(ff))
    step_upstream(ff);
}

static void on_poll(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct fleet_fetch *ff = arg;
  if (ff->step == STEP_WAIT && !ff->command_out)
    step_lookup(ff);
}

enum upstream_start fleet_fetch_enrollment(struct fleet *fleet, struct inflight_fetch *fetch,
                                           int64_t min_fetched_at, upstream_done_fn fetched,
                                           fleet_copy_fn copied) {
  struct flipcached *daemon = fleet->daemon;
  struct fleet_fetch *ff = shared_available(fleet->shared) ? calloc(1, sizeof(*ff)) : NULL;
  if (ff)
    ff->poll_timer = evtimer_new(daemon->base, on_poll, ff);
  if (!ff || !ff->poll_timer) {
    free(ff);
    return upstream_fetch_enrollment(daemon->upstream, fetch->enrollment_id, fetch->flow, fetched,
                                   fetch, &fetch->transfer);
  }
  ff->fleet = fleet;
  ff->fetch = fetch;
  ff->fetched = fetched;
  ff->copied = copied;
  ff->min_fetched_at = min_fetched_at;
  ff->step = STEP_LOOKUP;
  fetch->fleet = ff;
  TAILQ_INSERT_TAIL(&fleet->fetches, ff, link);
  fleet->pending++;
  /* The first command is sent now; its answer (never within this call) moves the fetch on. */
  if (send_lookup(ff))
    return UPSTREAM_STARTED;
  fleet_fetch_free(ff);
  return upstream_fetch_enrollment(daemon->upstream, fetch->enrollment_id, fetch->flow, fetched,
                                   fetch, &fetch->transfer);
}

/* ---- results, written back ------------------------------------------------------------------ */

static size_t message_of(const struct fleet *fleet, const char *verb, const char *enrollment_id,
                         char out[MESSAGE_MAX]) {
  return (size_t)snprintf(out, MESSAGE_MAX, "%s %s%s%s", verb, fleet->host,
                          enrollment_id ? " " : "", enrollment_id ? enrollment_id : "");
}

static void write_back(struct fleet *fleet, const char *enrollment_id,
                       const struct cache_record *record) {
  int64_t now = clock_wall_seconds();
  if (record->stale_until <= now)
    return;
  size_t value_len = VALUE_HEADER + record_encoded_len(record);
  unsigned char *value = malloc(value_len);
  if (!value)
    return;
  memcpy(value, enrollment_id, UUID_TEXT_LEN);
  record_encode(record, value + VALUE_HEADER);
  char entry[KEY_MAX], lock[KEY_MAX], px[24], message[MESSAGE_MAX];
  size_t entry_len = key_of(fleet, "e:", enrollment_id, entry);
  size_t lock_len = key_of(fleet, "lock:", enrollment_id, lock);
  snprintf(px, sizeof(px), "%lld", (long long)(record->stale_until - now) * 1000);
  size_t message_len = message_of(fleet, "ready", enrollment_id, message);
  const char *argv[] = {"EVAL", STORE_SCRIPT, "3", entry, lock, fleet->channel,
                        (const char *)value, px, fleet->host, message};
  size_t len[] = {4, sizeof(STORE_SCRIPT) - 1, 1, entry_len, lock_len, strlen(fleet->channel),
                  value_len, strlen(px), FLEET_HOST_LEN, message_len};
  if (shared_command(fleet->shared, NULL, NULL, 10, argv, len))
    fleet->daemon->stats.shared_writes++;
  free(value);
}

static void unlock(struct fleet *fleet, const char *enrollment_id) {
  char lock[KEY_MAX], message[MESSAGE_MAX];
  size_t lock_len = key_of(fleet, "lock:", enrollment_id, lock);
  size_t message_len = message_of(fleet, "ready", enrollment_id, message);
  const char *argv[] = {"EVAL", UNLOCK_SCRIPT, "2", lock, fleet->channel, fleet->host, message};
  size_t len[] = {4, sizeof(UNLOCK_SCRIPT) - 1, 1, lock_len, strlen(fleet->channel),
                  FLEET_HOST_LEN, message_len};
  shared_command(fleet->shared, NULL, NULL, 7, argv, len);
}

void fleet_fetched(struct fleet *fleet, struct inflight_fetch *fetch,
                   const struct cache_record *stored) {
  struct fleet_fetch *ff = fetch->fleet;
  bool lock_held = ff && ff->lock_held;
  if (ff)
    fleet_fetch_free(ff);
  if (!fleet->shared)
    return;
  if (stored)
    write_back(fleet, fetch->enrollment_id, stored); /* releases the lock too */
  else if (lock_held)
    unlock(fleet, fetch->enrollment_id);
}

/* ---- purges ------------------------------------------------------------------------------- */

struct purge {
  struct fleet *fleet;
  fleet_purged_fn done;
  void *arg;
  struct fleet_purge_result result;
  char cursor[32];
  bool announced;                 /* purge-all: the first message has gone */
};

static void purge_finish(struct purge *purge, const char *error) {
  purge->result.error = error;
  purge->done(&purge->result, purge->arg);
  free(purge);
}

static void on_purged_one(const redisReply *reply, void *arg) {
  struct purge *purge = arg;
  if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
    purge_finish(purge, "the shared tier failed: other hosts may keep their copies");
    return;
  }
  purge->result.deleted = (uint64_t)reply->element[0]->integer;
  purge->result.notified = (uint64_t)reply->element[1]->integer;
  purge_finish(purge, NULL);
}

bool fleet_purge_enrollment(struct fleet *fleet, const char *enrollment_id, fleet_purged_fn done,
                            void *arg) {
  struct purge *purge = shared_available(fleet->shared) ? calloc(1, sizeof(*purge)) : NULL;
  if (!purge)
    return false;
  *purge = (struct purge){.fleet = fleet, .done = done, .arg = arg};
  char entry[KEY_MAX], message[MESSAGE_MAX];
  size_t entry_len = key_of(fleet, "e:", enrollment_id, entry);
  size_t message_len = message_of(fleet, "purge", enrollment_id, message);
  const char *argv[] = {"EVAL", PURGE_SCRIPT, "2", entry, fleet->channel, message};
  size_t len[] = {4, sizeof(PURGE_SCRIPT) - 1, 1, entry_len, strlen(fleet->channel), message_len};
  if (!shared_command(fleet->shared, on_purged_one, purge, 6, argv, len)) {
    free(purge);
    return false;
  }
  fleet->daemon->stats.shared_purges_sent++;
  return true;
}

static void scan_next(struct purge *purge);

static void purge_all_end(struct purge *purge, const char *error) {
  purge->fleet->purging_all--;
  purge_finish(purge, error);
}

static void on_purge_all_published(const redisReply *reply, void *arg) {
  struct purge *purge = arg;
  if (!reply || reply->type != REDIS_REPLY_INTEGER) {
    purge_all_end(purge, "the shared tier failed: other hosts may keep their copies");
    return;
  }
  purge->result.notified = (uint64_t)reply->integer;
  if (!purge->announced) {
    purge->announced = true;
    scan_next(purge);
    return;
  }
  purge_all_end(purge, NULL);
}

/* "purge-all" goes out twice: first, so that every host drops its copies within a round trip;
 * again after the scan, for copies taken from Redis while it ran. */
static bool publish_purge_all(struct purge *purge) {
  struct fleet *fleet = purge->fleet;
  char message[MESSAGE_MAX];
  size_t message_len = message_of(fleet, "purge-all", NULL, message);
  const char *argv[] = {"PUBLISH", fleet->channel, message};
  size_t len[] = {7, strlen(fleet->channel), message_len};
  return shared_command(fleet->shared, on_purge_all_published, purge, 3, argv, len);
}

static void on_scanned(const redisReply *reply, void *arg) {
  struct purge *purge = arg;
  if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
      reply->element[0]->type != REDIS_REPLY_STRING ||
      reply->element[1]->type != REDIS_REPLY_ARRAY) {
    purge_all_end(purge, "the shared tier failed during the scan: entries may remain in redis");
    return;
  }
  snprintf(purge->cursor, sizeof(purge->cursor), "%s", reply->element[0]->str);
  const redisReply *keys = reply->element[1];
  if (keys->elements > 0) {
    size_t count = keys->elements + 1;
    const char **argv = calloc(count, sizeof(*argv));
    size_t *len = calloc(count, sizeof(*len));
    bool sent = false;
    if (argv && len) {
      argv[0] = "UNLINK";
      len[0] = 6;
      for (size_t i = 0; i < keys->elements; i++) {
        argv[i + 1] = keys->element[i]->str;
        len[i + 1] = keys->element[i]->len;
      }
      sent = shared_command(purge->fleet->shared, NULL, NULL, (int)count, argv, len);
    }
    free(argv);
    free(len);
    if (!sent) {
      purge_all_end(purge, "the shared tier failed during the scan: entries may remain in redis");
      return;
    }
    purge->result.deleted += keys->elements;
  }
  if (strcmp(purge->cursor, "0") == 0) {
    if (!publish_purge_all(purge))
      purge_all_end(purge, "the shared tier failed: other hosts may keep copies");
    return;
  }
  scan_next(purge);
}

static void scan_next(struct purge *purge) {
  struct fleet *fleet = purge->fleet;
  char pattern[KEY_MAX];
  size_t pattern_len = key_of(fleet, "e:", "*", pattern);
  const char *argv[] = {"SCAN", purge->cursor, "MATCH", pattern, "COUNT", SCAN_COUNT};
  size_t len[] = {4, strlen(purge->cursor), 5, pattern_len, 5, strlen(SCAN_COUNT)};
  if (!shared_command(fleet->shared, on_scanned, purge, 6, argv, len))
    purge_all_end(purge, "the shared tier failed during the scan: entries may remain in redis");
}

bool fleet_purge_all(struct fleet *fleet, fleet_purged_fn done, void *arg) {
  struct purge *purge = shared_available(fleet->shared) ? calloc(1, sizeof(*purge)) : NULL;
  if (!purge)
    return false;
  *purge = (struct purge){.fleet = fleet, .done = done, .arg = arg};
  strcpy(purge->cursor, "0");
  if (!publish_purge_all(purge)) {
    free(purge);
    return false;
  }
  fleet->purging_all++;
  fleet->daemon->stats.shared_purges_sent++;
  return true;
}

/* ---- messages from the other hosts --------------------------------------------------------- */

static void on_ready(struct fleet *fleet, const char *enrollment_id) {
  struct inflight_fetch *fetch = inflight_find(fleet->daemon->inflight, enrollment_id);
  struct fleet_fetch *ff = fetch ? fetch->fleet : NULL;
  if (ff && ff->step == STEP_WAIT && !ff->command_out) {
    event_del(ff->poll_timer);
    step_lookup(ff);
  }
}

/* "VERB HOST[ ID]": anything else is ignored. A daemon's own purges were applied when it sent
 * them. */
static void on_message(const char *payload, size_t len, void *arg) {
  struct fleet *fleet = arg;
  char text[MESSAGE_MAX], verb[16], host[FLEET_HOST_LEN + 2], id_text[UUID_TEXT_LEN + 2];
  char enrollment_id[UUID_TEXT_LEN + 1];
  if (len >= sizeof(text))
    return;
  memcpy(text, payload, len);
  text[len] = '\0';
  int fields = sscanf(text, "%15s %17s %37s", verb, host, id_text);
  if (fields < 2 || strlen(host) != FLEET_HOST_LEN)
    return;
  bool has_id = fields == 3 && uuid_canonicalize(id_text, strlen(id_text), enrollment_id);
  bool mine = strcmp(host, fleet->host) == 0;
  struct flipcached *daemon = fleet->daemon;
  if (strcmp(verb, "ready") == 0 && has_id) {
    on_ready(fleet, enrollment_id);
  } else if (strcmp(verb, "purge") == 0 && has_id && !mine) {
    daemon->stats.shared_purges_received++;
    bool found;
    char err[256];
    if (fleet->purges.forget(daemon, enrollment_id, &found, err, sizeof(err)) != 0)
      log_error("shared tier: purging %s for another host failed: %s", enrollment_id, err);
    else if (found)
      log_info("shared tier: purged enrollment %s (by host %s)", enrollment_id, host);
  } else if (strcmp(verb, "purge-all") == 0 && fields == 2 && !mine) {
    daemon->stats.shared_purges_received++;
    uint64_t removed;
    char err[256];
    if (fleet->purges.forget_all(daemon, &removed, err, sizeof(err)) != 0)
      log_error("shared tier: purging the cache for another host failed: %s", err);
    else
      log_info("shared tier: purged the whole cache (%llu entries; by host %s)",
               (unsigned long long)removed, host);
  }
}

static void on_subscribed(bool again, void *arg) {
  (void)arg;
  if (again)
    log_warning("shared tier: subscribed again: purges other hosts sent while the subscription "
                "was down were missed (their entries here stay until they expire)");
}

/* ---- the module ----------------------------------------------------------------------------- */

struct fleet *fleet_new(struct flipcached *daemon, const struct fleet_purges *purges, char *err,
                        size_t err_len) {
  struct fleet *fleet = calloc(1, sizeof(*fleet));
  if (!fleet) {
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  fleet->daemon = daemon;
  fleet->purges = *purges;
  TAILQ_INIT(&fleet->fetches);
  const struct config *cfg = &daemon->cfg;
  if (!cfg->shared_on)
    return fleet;
  unsigned char random[FLEET_HOST_LEN / 2];
  if (getrandom(random, sizeof(random), 0) != (ssize_t)sizeof(random)) {
    snprintf(err, err_len, "[shared]: no random name for this host");
    free(fleet);
    return NULL;
  }
  for (size_t i = 0; i < sizeof(random); i++)
    snprintf(fleet->host + 2 * i, 3, "%02x", random[i]);
  snprintf(fleet->channel, sizeof(fleet->channel), "%sevents", cfg->shared_prefix);
  char password[SHARED_PASSWORD_MAX + 1] = "";
  size_t password_len = 0;
  char problem[PATH_MAX + 256];
  if (cfg->shared_password_file[0] &&
      creds_read_secret_file(cfg->shared_password_file, password, sizeof(password), &password_len,
                             problem, sizeof(problem)) != 0) {
    snprintf(err, err_len, "[shared] password_file: %s", problem);
    free(fleet);
    return NULL;
  }
  struct shared_handlers handlers = {.message = on_message, .subscribed = on_subscribed,
                                     .arg = fleet};
  fleet->shared = shared_new(daemon->base, cfg, password, fleet->channel, &handlers, &daemon->stats);
  explicit_bzero(password, sizeof(password));
  if (!fleet->shared) {
    snprintf(err, err_len, "out of memory");
    free(fleet);
    return NULL;
  }
  log_info("shared tier: redis %s, prefix %s, this host %s", cfg->shared_redis, cfg->shared_prefix,
           fleet->host);
  return fleet;
}

void fleet_free(struct fleet *fleet) {
  if (!fleet)
    return;
  /* Fetches not yet at the upstream are answered now; those with a command out are only
   * detached, and freed when shared_free answers the command. */
  struct fleet_fetch *ff, *next;
  for (ff = TAILQ_FIRST(&fleet->fetches); ff; ff = next) {
    next = TAILQ_NEXT(ff, link);
    if (ff->step == STEP_UPSTREAM)
      continue;
    struct inflight_fetch *fetch = ff->fetch;
    upstream_done_fn fetched = ff->fetched;
    fetch->fleet = NULL;
    ff->fetch = NULL;
    if (!ff->command_out)
      fleet_fetch_free(ff);
    struct upstream_result aborted = {.outcome = UPSTREAM_ABORTED, .error_text = "shutting down"};
    fetched(&aborted, fetch);
  }
  struct shared *shared = fleet->shared;
  fleet->shared = NULL; /* nothing more is sent: write-backs of aborted fetches are dropped */
  shared_free(shared);
  while ((ff = TAILQ_FIRST(&fleet->fetches))) {
    if (ff->fetch)
      ff->fetch->fleet = NULL;
    ff->fetch = NULL;
    fleet_fetch_free(ff);
  }
  free(fleet);
}

bool fleet_enabled(const struct fleet *fleet) { return fleet && fleet->shared; }

unsigned fleet_state(const struct fleet *fleet) {
  if (!fleet_enabled(fleet))
    return 0;
  return shared_available(fleet->shared) ? 1 : 2;
}

const char *fleet_problem(const struct fleet *fleet) {
  return fleet_enabled(fleet) ? shared_problem(fleet->shared) : NULL;
}

size_t fleet_waiting(const struct fleet *fleet) { return fleet ? fleet->waiting : 0; }

size_t fleet_pending(const struct fleet *fleet) { return fleet ? fleet->pending : 0; }
