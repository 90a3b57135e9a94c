/* fleet_lock: a fetch's way through the shared tier (fleet.h): one script looks the entry up and
 * takes the lock when it will not do; the lock's timeout (lock_ms); waiting on the host that
 * holds it (its "ready", or a poll); the upstream; the write-back that releases the lock. */
#include "fleet_internal.h"

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

/* The fetch goes to Flip in its user's share (fetch->flow); its handle, for a later join by
 * another user, in fetch->transfer. As upstream_fetch_enrollment returns. */
static enum upstream_start ask_upstream(struct flipcached *daemon, struct inflight_fetch *fetch,
                                        upstream_done_fn fetched) {
  return upstream_fetch_enrollment(daemon->upstream, fetch->enrollment_id, fetch->flow, fetched,
                                   fetch, &fetch->transfer);
}

void fleet_fetch_free(struct fleet_fetch *ff) {
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
  enum upstream_start started = ask_upstream(daemon, fetch, ff->fetched);
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
  size_t key_len = fleet_key_of(fleet, "e:", enrollment_id, key);
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
  size_t entry_len = fleet_key_of(fleet, "e:", ff->fetch->enrollment_id, entry);
  size_t lock_len = fleet_key_of(fleet, "lock:", ff->fetch->enrollment_id, lock);
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
    return ask_upstream(daemon, fetch, fetched);
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
  return ask_upstream(daemon, fetch, fetched);
}

/* ---- results, written back ------------------------------------------------------------------ */

size_t fleet_message_of(const struct fleet *fleet, const char *verb, const char *enrollment_id,
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
  size_t entry_len = fleet_key_of(fleet, "e:", enrollment_id, entry);
  size_t lock_len = fleet_key_of(fleet, "lock:", enrollment_id, lock);
  snprintf(px, sizeof(px), "%lld", (long long)(record->stale_until - now) * 1000);
  size_t message_len = fleet_message_of(fleet, "ready", enrollment_id, message);
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
  size_t lock_len = fleet_key_of(fleet, "lock:", enrollment_id, lock);
  size_t message_len = fleet_message_of(fleet, "ready", enrollment_id, message);
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

void fleet_on_ready(struct fleet *fleet, const char *enrollment_id) {
  struct inflight_fetch *fetch = inflight_find(fleet->daemon->inflight, enrollment_id);
  struct fleet_fetch *ff = fetch ? fetch->fleet : NULL;
  if (ff && ff->step == STEP_WAIT && !ff->command_out) {
    event_del(ff->poll_timer);
    step_lookup(ff);
  }
}
