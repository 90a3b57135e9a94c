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

/* Writes the entry unless a purge changed the generation since this fetch's lookup (then the
 * fetch began before the purge and leaves nothing behind), releases this host's lock and says
 * "ready", in one round trip; returns 1 when stored. A lock or a generation of the wrong type
 * is no reason to fail half-way (a script's writes are not undone): pcall, then repaired.
 * KEYS: entry, lock, channel, generation. ARGV: value, px, host, message, generation seen. */
static const char STORE_SCRIPT[] =
    LUA_READ_GENERATION("KEYS[4]")
    "local stored = 0 "
    "if g == ARGV[5] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) stored = 1 end "
    LUA_LOCK_IS_MINE("KEYS[2]", "ARGV[3]")
    "if mine then redis.call('DEL', KEYS[2]) end "
    "redis.call('PUBLISH', KEYS[3], ARGV[4]) return stored";
/* Releases this host's lock (nothing was stored) and says "ready": the waiters look again. */
static const char UNLOCK_SCRIPT[] =
    LUA_LOCK_IS_MINE("KEYS[1]", "ARGV[1]")
    "if mine then redis.call('DEL', KEYS[1]) redis.call('PUBLISH', KEYS[2], ARGV[2]) end "
    "return 1";
/* Deletes a lock that is still the one a fetch waited on past its bound (its holder never wrote
 * the entry nor let go: dead, or a lock written by someone else). */
static const char STALE_LOCK_SCRIPT[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 1";
/* The one command of a lookup: the entry, and the lock when the entry will not do. Atomically,
 * so that no host takes the lock just after another wrote the entry and released it (a GET,
 * then a SET NX, would: bench/fleet measured 1.63 upstream requests per id per ttl so).
 * KEYS: the id's entry under each key of the file (the sealing key's first), its lock, the
 * purge generation. ARGV: host, lock px, now, min fetched_at, this host's longest freshness
 * (the larger of ttl and negative_ttl), the longest value accepted.
 * Each entry key in turn: one of another type, or longer than ARGV[6], is deleted unread (flag
 * 1); the first string is the candidate, returned as it is ({value, 2, ...}) when fresh at now
 * (fresh_until bounded by fetched_at + ARGV[5]) and fetched no earlier than ARGV[4]. Otherwise
 * the lock is tried ({value or false, 1 taken, 0 held elsewhere, ...}); a lock of another type,
 * without an expiry, or longer than any host's name, is deleted first (flag 2): it would never
 * go. Only the clear times of a value are read here (little-endian i64 at offsets 8 and 16:
 * fleet_internal.h); the daemon opens and checks the whole value. Returns {value, lock, flags,
 * generation, index of the value's key (0: none)[, the lock's value when another holds it]}. */
static const char LOOKUP_SCRIPT[] =
    "local n = #KEYS - 2 local lock = KEYS[n + 1] "
    LUA_READ_GENERATION("KEYS[n + 2]")
    "local flags = 0 local v = false local at = 0 "
    "for i = 1, n do "
    "local t = redis.call('TYPE', KEYS[i])['ok'] "
    "if t ~= 'none' then "
    "if t ~= 'string' or redis.call('STRLEN', KEYS[i]) > tonumber(ARGV[6]) then "
    "redis.call('UNLINK', KEYS[i]) flags = 1 "
    "elseif not v then "
    "v = redis.call('GET', KEYS[i]) at = i "
    "if string.len(v) >= 24 then "
    "local fetched = struct.unpack('<i8', v, 9) "
    "local fresh = struct.unpack('<i8', v, 17) "
    "if fresh > fetched + tonumber(ARGV[5]) then fresh = fetched + tonumber(ARGV[5]) end "
    "if fresh > tonumber(ARGV[3]) and fetched >= tonumber(ARGV[4]) then return {v, 2, flags, g, i} end "
    "end end end end "
    "local lt = redis.call('TYPE', lock)['ok'] "
    "if lt ~= 'none' and (lt ~= 'string' or redis.call('PTTL', lock) < 0 or "
    "redis.call('STRLEN', lock) > 64) then redis.call('DEL', lock) flags = flags + 2 end "
    "if redis.call('SET', lock, ARGV[1], 'NX', 'PX', ARGV[2]) then return {v, 1, flags, g, at} end "
    "return {v, 0, flags, g, at, redis.call('GET', lock)}";
/* What a value in Redis is worth to this fetch. */
enum copy_verdict { COPY_USABLE, COPY_UNUSABLE, COPY_GARBAGE };

/* A copy's times bounded by this host's policy, as if this host had fetched it at its
 * fetched_at: fresh at most ttl (negative_ttl for a 404) after it, stale at most the longer of
 * the stale windows after that (a 404 has none). A peer's longer ttl, or a writer's, never keeps
 * a copy fresher here than this host's own answers. */
static void bound_times(const struct config *cfg, struct cache_record *record) {
  bool found = record->upstream_status == 200;
  int64_t fresh_most = record->fetched_at + (found ? cfg->ttl : cfg->negative_ttl);
  if (record->fresh_until > fresh_most)
    record->fresh_until = fresh_most;
  unsigned window = cfg->stale_while_revalidate > cfg->stale_if_error ? cfg->stale_while_revalidate
                                                                      : cfg->stale_if_error;
  int64_t stale_most = record->fresh_until + (found ? window : 0);
  if (record->stale_until > stale_most)
    record->stale_until = stale_most;
}

/* Judges a value as an upstream answer is judged: it must open with a key of this host's for
 * this id (so its bytes are what some host of the fleet stored), decode, and its body must pass
 * what the upstream's would (a 200 one JSON object of this id; a 404 JSON, as kept locally);
 * its times are then bounded by this host's policy. The record points into *plain (the
 * caller frees it). */
static enum copy_verdict judge_copy(const struct fleet_fetch *ff, const redisReply *reply,
                                    struct cache_record *record, int64_t now,
                                    unsigned char **plain) {
  const char *enrollment_id = ff->fetch->enrollment_id;
  *plain = NULL;
  if (reply->type == REDIS_REPLY_NIL)
    return COPY_UNUSABLE;
  if (reply->type != REDIS_REPLY_STRING ||
      !fleet_open_record(ff->fleet, enrollment_id, reply->str, reply->len, record, plain))
    return COPY_GARBAGE;
  if (record->upstream_status == 200) {
    if (validate_enrollment_body((const char *)record->body, record->body_len, enrollment_id) !=
        BODY_OK)
      return COPY_GARBAGE;
  } else if (record->upstream_status != 404 ||
             !validate_not_found_body((const char *)record->body, record->body_len)) {
    return COPY_GARBAGE;
  }
  bound_times(&ff->fleet->daemon->cfg, record);
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
  struct upstream_conditions conditions = {.etag = fetch->if_none_match,
                                            .last_modified = fetch->if_modified_since};
  return upstream_fetch_enrollment(daemon->upstream, fetch->enrollment_id, fetch->flow,
                                   &conditions, fetched, fetch, &fetch->transfer);
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

/* Counts and logs (rate-limited) what Redis held for enrollment_id that was refused: `what`
 * ("an entry", "a lock") and why. */
static void note_garbage(struct fleet *fleet, const char *enrollment_id, const char *what,
                         const char *why) {
  fleet->daemon->stats.shared_invalid++;
  log_warning_limited("shared tier: %s of %s in redis was refused (%s) and deleted", what,
                      enrollment_id, why);
}

static const char WHY_UNSOUND[] = "it does not open with this host's keys for that id, or fails "
                                  "its checks";
static const char WHY_SHAPE[] = "of another type, too long, or never expiring";

/* Deletes the value the lookup found under key `key_index`'s name. */
static void forget_garbage(struct fleet *fleet, const char *enrollment_id, size_t key_index) {
  char key[KEY_MAX];
  size_t key_len = fleet_key_of(fleet, "e:", key_index, enrollment_id, key);
  const char *argv[] = {"UNLINK", key};
  size_t len[] = {6, key_len};
  note_garbage(fleet, enrollment_id, "an entry", WHY_UNSOUND);
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

/* The lock ff waited on past lock_ms is still there: deleted if it is still the same (a holder
 * that died, or a lock written by someone else), so that the next miss does not wait again. */
static void drop_stale_lock(struct fleet_fetch *ff) {
  struct fleet *fleet = ff->fleet;
  char lock[KEY_MAX];
  size_t lock_len = fleet_key_of(fleet, "lock:", 0, ff->fetch->enrollment_id, lock);
  const char *argv[] = {"EVAL", STALE_LOCK_SCRIPT, "1", lock, ff->lock_seen};
  size_t len[] = {4, sizeof(STALE_LOCK_SCRIPT) - 1, 1, lock_len, strlen(ff->lock_seen)};
  shared_command(fleet->shared, NULL, NULL, 5, argv, len);
}

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
                        "the upstream, and deleting the lock", ff->fetch->enrollment_id);
    drop_stale_lock(ff);
    step_upstream(ff);
    return;
  }
  set_step(ff, STEP_WAIT);
  int64_t next = ff->wait_until_ms - now < FLEET_POLL_MS ? ff->wait_until_ms - now : FLEET_POLL_MS;
  struct timeval tv = clock_timeval_of_ms(next);
  if (event_add(ff->poll_timer, &tv) != 0)
    step_upstream(ff);
}

/* LOOKUP_SCRIPT's answer is that script's shape. */
static bool lookup_reply_sound(const redisReply *reply) {
  if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 5 || reply->elements > 6)
    return false;
  for (size_t i = 1; i < 5; i++) {
    int type = reply->element[i]->type;
    if (i == 3 ? type != REDIS_REPLY_STRING : type != REDIS_REPLY_INTEGER)
      return false;
  }
  return reply->element[3]->len < GENERATION_MAX &&
         (reply->elements == 5 || reply->element[5]->type == REDIS_REPLY_STRING);
}

/* LOOKUP_SCRIPT's answer: the entry, and what became of the lock. */
static void on_lookup(const redisReply *reply, void *arg) {
  struct fleet_fetch *ff = arg;
  if (!command_back(ff))
    return;
  struct fleet *fleet = ff->fleet;
  if (!lookup_reply_sound(reply)) {
    step_upstream(ff); /* the tier failed: Flip, as without it */
    return;
  }
  long long lock = reply->element[1]->integer; /* 1 taken, 0 held elsewhere, 2 not tried */
  long long flags = reply->element[2]->integer;
  long long key_number = reply->element[4]->integer; /* 1-based; 0: no value */
  memcpy(ff->generation, reply->element[3]->str, reply->element[3]->len);
  ff->generation[reply->element[3]->len] = '\0';
  ff->has_generation = true;
  if (reply->elements == 6)
    snprintf(ff->lock_seen, sizeof(ff->lock_seen), "%.*s", (int)reply->element[5]->len,
             reply->element[5]->str);
  if (flags & 1)
    note_garbage(fleet, ff->fetch->enrollment_id, "an entry", WHY_SHAPE); /* the script deleted it */
  if (flags & 2)
    note_garbage(fleet, ff->fetch->enrollment_id, "a lock", WHY_SHAPE);
  struct cache_record record;
  unsigned char *plain = NULL;
  enum copy_verdict verdict = fleet->purging_all ? COPY_UNUSABLE
                              : judge_copy(ff, reply->element[0], &record, clock_wall_seconds(),
                                           &plain);
  if (verdict == COPY_USABLE) {
    if (lock == 1) /* the script judged it stale a moment before this host's clock did not */
      unlock(fleet, ff->fetch->enrollment_id);
    deliver_copy(ff, &record);
    free(plain);
    return;
  }
  free(plain);
  if (verdict == COPY_GARBAGE && key_number >= 1 && (size_t)key_number <= fleet->keys.count)
    forget_garbage(fleet, ff->fetch->enrollment_id, (size_t)key_number - 1);
  ff->lock_held = lock == 1;
  if (lock == 1) {
    step_upstream(ff);
  } else if (lock == 2) {
    /* The script took the value for a fresh entry and did not try the lock, but it will not do:
     * garbage (now deleted: look once more, for the lock), or a copy this host's policy or clock
     * does not take. */
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
  const struct config *cfg = &fleet->daemon->cfg;
  enum { ARGS_MAX = 3 + SEAL_MAX_KEYS + 2 + 6 };
  char entries[SEAL_MAX_KEYS][KEY_MAX], lock[KEY_MAX], generation[KEY_MAX], key_count[8];
  char px[24], now[24], min[24], fresh_most[24], value_most[24];
  const char *argv[ARGS_MAX];
  size_t len[ARGS_MAX];
  int argc = 0;
#define ARG(text, length) (argv[argc] = (text), len[argc++] = (length))
  size_t keys = fleet->keys.count;
  snprintf(key_count, sizeof(key_count), "%zu", keys + 2);
  ARG("EVAL", 4);
  ARG(LOOKUP_SCRIPT, sizeof(LOOKUP_SCRIPT) - 1);
  ARG(key_count, strlen(key_count));
  fleet_entry_keys(fleet, ff->fetch->enrollment_id, entries, argv, len, &argc);
  ARG(lock, fleet_key_of(fleet, "lock:", 0, ff->fetch->enrollment_id, lock));
  ARG(generation, fleet_fixed_key(fleet, "gen", generation));
  snprintf(px, sizeof(px), "%u", lock_ms(fleet));
  snprintf(now, sizeof(now), "%lld", (long long)clock_wall_seconds());
  /* While a purge-all runs no entry may come back from Redis: none is "fetched late enough". */
  snprintf(min, sizeof(min), "%lld", fleet->purging_all ? (long long)INT64_MAX / 2
                                                        : (long long)ff->min_fetched_at);
  snprintf(fresh_most, sizeof(fresh_most), "%u",
           cfg->ttl > cfg->negative_ttl ? cfg->ttl : cfg->negative_ttl);
  snprintf(value_most, sizeof(value_most), "%zu", (size_t)VALUE_MAX_LEN);
  ARG(fleet->host, FLEET_HOST_LEN);
  ARG(px, strlen(px));
  ARG(now, strlen(now));
  ARG(min, strlen(min));
  ARG(fresh_most, strlen(fresh_most));
  ARG(value_most, strlen(value_most));
#undef ARG
  ff->command_out = shared_command(fleet->shared, on_lookup, ff, argc, argv, len);
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

/* Writes record back (under the sealing key's name), refused by Redis if a purge came since
 * `generation`, and releases the lock. */
static void write_back(struct fleet *fleet, const char *enrollment_id,
                       const struct cache_record *record, const char *generation) {
  int64_t now = clock_wall_seconds();
  size_t value_len = 0;
  unsigned char *value = record->stale_until > now
                             ? fleet_seal_record(fleet, enrollment_id, record, &value_len) : NULL;
  if (!value) {
    unlock(fleet, enrollment_id);
    return;
  }
  char entry[KEY_MAX], lock[KEY_MAX], gen_key[KEY_MAX], px[24];
  unsigned char message[SEALED_MESSAGE_MAX];
  size_t entry_len = fleet_key_of(fleet, "e:", 0, enrollment_id, entry);
  size_t lock_len = fleet_key_of(fleet, "lock:", 0, enrollment_id, lock);
  size_t gen_len = fleet_fixed_key(fleet, "gen", gen_key);
  snprintf(px, sizeof(px), "%lld", (long long)(record->stale_until - now) * 1000);
  size_t message_len = fleet_message_of(fleet, "ready", enrollment_id, message);
  const char *argv[] = {"EVAL", STORE_SCRIPT, "4", entry, lock, fleet->channel, gen_key,
                        (const char *)value, px, fleet->host, (const char *)message, generation};
  size_t len[] = {4, sizeof(STORE_SCRIPT) - 1, 1, entry_len, lock_len, strlen(fleet->channel),
                  gen_len, value_len, strlen(px), FLEET_HOST_LEN, message_len,
                  strlen(generation)};
  if (message_len && shared_command(fleet->shared, NULL, NULL, 12, argv, len))
    fleet->daemon->stats.shared_writes++;
  free(value);
}

static void unlock(struct fleet *fleet, const char *enrollment_id) {
  char lock[KEY_MAX];
  unsigned char message[SEALED_MESSAGE_MAX];
  size_t lock_len = fleet_key_of(fleet, "lock:", 0, enrollment_id, lock);
  size_t message_len = fleet_message_of(fleet, "ready", enrollment_id, message);
  const char *argv[] = {"EVAL", UNLOCK_SCRIPT, "2", lock, fleet->channel, fleet->host,
                        (const char *)message};
  size_t len[] = {4, sizeof(UNLOCK_SCRIPT) - 1, 1, lock_len, strlen(fleet->channel),
                  FLEET_HOST_LEN, message_len};
  if (message_len)
    shared_command(fleet->shared, NULL, NULL, 7, argv, len);
}

void fleet_fetched(struct fleet *fleet, struct inflight_fetch *fetch,
                   const struct cache_record *stored) {
  struct fleet_fetch *ff = fetch->fleet;
  bool lock_held = ff && ff->lock_held;
  /* Only a fetch that looked in Redis knows the purge generation it began under; one that went
   * to Flip without the tier writes nothing back (it could not tell a purge it missed). */
  char generation[GENERATION_MAX] = "";
  bool has_generation = ff && ff->has_generation;
  if (has_generation)
    memcpy(generation, ff->generation, sizeof(generation));
  if (ff)
    fleet_fetch_free(ff);
  if (!fleet->shared)
    return;
  if (stored && has_generation)
    write_back(fleet, fetch->enrollment_id, stored, generation); /* releases the lock too */
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
