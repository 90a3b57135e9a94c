/* cache_evict: the cache's upkeep on the loop (cache.h): the sweeper, which removes entries past
 * every stale window in small steps, and the reclaimer, which evicts the oldest entries in
 * batches when the map fills. */
#include <errno.h>
#include <event2/event.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_internal.h"
#include "clock.h"
#include "log.h"
#include "stats.h"

static int first_key(MDB_cursor *cursor, size_t key_len, MDB_val *key, MDB_val *value) {
  int rc;
  while ((rc = mdb_cursor_get(cursor, key, value, MDB_FIRST)) == 0 && key->mv_size != key_len) {
    if ((rc = mdb_cursor_del(cursor, 0)) != 0)
      break;
  }
  return rc;
}

/* Deletes up to max_entries entries past stale_until at now, in txn. *none_left is set when the
 * first remaining one is not past it. */
static int remove_expired(struct cache *cache, MDB_txn *txn, int64_t now, size_t max_entries,
                          size_t *removed, bool *none_left) {
  MDB_cursor *cursor = NULL;
  *none_left = false;
  int rc = mdb_cursor_open(txn, cache->expiry, &cursor);
  while (rc == 0 && *removed < max_entries) {
    MDB_val key, value;
    rc = first_key(cursor, EXPIRY_KEY_LEN, &key, &value);
    if (rc == MDB_NOTFOUND) {
      *none_left = true;
      rc = 0;
      break;
    }
    if (rc != 0)
      break;
    unsigned char key_bytes[EXPIRY_KEY_LEN];
    memcpy(key_bytes, key.mv_data, EXPIRY_KEY_LEN);
    if ((int64_t)get_be64(key_bytes) > now) {
      *none_left = true;
      break;
    }
    unsigned char seq_key[SEQ_LEN];
    memcpy(seq_key, key_bytes + 8, SEQ_LEN);
    MDB_val record_key = {.mv_size = SEQ_LEN, .mv_data = seq_key}, record;
    rc = mdb_get(txn, cache->records, &record_key, &record);
    if (rc == 0) {
      rc = cache_remove_record(cache, txn, get_be64(seq_key), &record);
      (*removed)++;
    }
    if (rc == 0 || rc == MDB_NOTFOUND) {
      /* remove_record took this key already unless the record did not decode */
      MDB_val again = {.mv_size = EXPIRY_KEY_LEN, .mv_data = key_bytes};
      rc = mdb_del(txn, cache->expiry, &again, NULL);
      rc = rc == MDB_NOTFOUND ? 0 : rc;
    }
  }
  if (cursor)
    mdb_cursor_close(cursor);
  return rc;
}

/* Deletes up to max_entries of the oldest stored entries in txn. */
static int remove_oldest(struct cache *cache, MDB_txn *txn, size_t max_entries, size_t *removed) {
  MDB_cursor *cursor = NULL;
  int rc = mdb_cursor_open(txn, cache->records, &cursor);
  while (rc == 0 && *removed < max_entries) {
    MDB_val key, value;
    rc = first_key(cursor, SEQ_LEN, &key, &value);
    if (rc == MDB_NOTFOUND) {
      rc = 0;
      break;
    }
    if (rc == 0)
      rc = cache_remove_record(cache, txn, get_be64(key.mv_data), &value);
    if (rc == 0)
      (*removed)++;
  }
  if (cursor)
    mdb_cursor_close(cursor);
  return rc;
}

/* Logs and handles a failed upkeep transaction. */
static void upkeep_failed(struct cache *cache, const char *what, int rc) {
  log_warning_limited("cache: %s: %s", what, mdb_strerror(rc));
  if (is_damage(rc))
    cache_rebuild(cache, rc);
}

long cache_sweep_step(struct cache *cache, int64_t now, size_t max_entries, bool *pass_done) {
  *pass_done = false;
  if (!cache->env)
    return -1;
  MDB_txn *txn = NULL;
  size_t removed = 0;
  int rc = mdb_txn_begin(cache->env, NULL, 0, &txn);
  if (rc == 0)
    rc = cache_finish_txn(txn, remove_expired(cache, txn, now, max_entries, &removed, pass_done));
  if (rc != 0) {
    *pass_done = false;
    upkeep_failed(cache, "sweep", rc);
    return -1;
  }
  cache->stats->expired_removed += removed;
  return (long)removed;
}

bool cache_needs_room(struct cache *cache) {
  if (!cache->env)
    return false;
  if (cache->reclaim_wanted)
    return true;
  bool needed = false;
  if (mdb_txn_renew(cache->read_txn) == 0) {
    needed = cache_past_percent(cache, cache_pages_in_use(cache, cache->read_txn), CACHE_HIGH_WATER_PERCENT);
    mdb_txn_reset(cache->read_txn);
  }
  return needed;
}

long cache_reclaim_step(struct cache *cache, int64_t now, size_t max_entries, bool *done) {
  *done = false;
  if (!cache->env)
    return -1;
  size_t batch = max_entries < cache->reclaim_batch ? max_entries : cache->reclaim_batch;
  MDB_txn *txn = NULL;
  size_t expired = 0, oldest = 0;
  bool no_expired = false;
  uint64_t pages = 0;
  int rc = mdb_txn_begin(cache->env, NULL, 0, &txn);
  if (rc == 0)
    rc = remove_expired(cache, txn, now, batch, &expired, &no_expired);
  if (rc == 0 && expired < batch)
    rc = remove_oldest(cache, txn, batch - expired, &oldest);
  if (rc == 0)
    pages = cache_pages_in_use(cache, txn);
  rc = cache_finish_txn(txn, rc);
  if (rc == MDB_MAP_FULL && cache->reclaim_batch > 1) {
    /* Even the deletes need new pages (copy-on-write) and found none: ask for fewer next time. */
    cache->reclaim_batch /= 2;
    log_debug("cache: reclaiming found the map full; next batch %zu", cache->reclaim_batch);
    return 0;
  }
  if (rc != 0) {
    upkeep_failed(cache, "reclaim", rc);
    return -1;
  }
  if (cache->reclaim_batch < CACHE_RECLAIM_BATCH)
    cache->reclaim_batch *= 2;
  cache->stats->expired_removed += expired;
  cache->stats->evictions += oldest;
  bool empty = expired + oldest == 0;
  *done = empty || !cache_past_percent(cache, pages, CACHE_LOW_WATER_PERCENT);
  if (*done)
    cache->reclaim_wanted = false;
  return (long)(expired + oldest);
}

/* --- upkeep on the loop ------------------------------------------------------------------------ */

/* One sweeper step; the next follows at once (after the requests waiting) until the pass is done,
 * then after sweep_interval. */
static void on_sweep(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct cache *cache = arg;
  bool pass_done = false;
  if (!cache->env)
    cache_try_reopen(cache); /* a disk that failed may be back */
  long removed = cache_sweep_step(cache, clock_wall_seconds(), CACHE_SWEEP_BATCH, &pass_done);
  if (removed > 0)
    log_debug("cache: sweeper removed %ld expired entr%s", removed, removed == 1 ? "y" : "ies");
  struct timeval next = {.tv_sec = pass_done || removed < 0 ? cache->sweep_interval : 0};
  evtimer_add(cache->sweep_timer, &next);
}

/* One reclaimer step; the next follows at once (after the requests waiting) until the pages in
 * use are back at the low-water mark. */
static void on_reclaim(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct cache *cache = arg;
  bool done = false;
  long removed = cache_reclaim_step(cache, clock_wall_seconds(), CACHE_RECLAIM_BATCH, &done);
  if (removed >= 0 && !done)
    cache_schedule_reclaim(cache);
}

int cache_start_upkeep(struct cache *cache, struct event_base *base, unsigned sweep_interval) {
  cache->sweep_interval = sweep_interval;
  cache->sweep_timer = evtimer_new(base, on_sweep, cache);
  cache->reclaim_timer = evtimer_new(base, on_reclaim, cache);
  struct timeval first_sweep = {.tv_sec = sweep_interval};
  if (!cache->sweep_timer || !cache->reclaim_timer ||
      evtimer_add(cache->sweep_timer, &first_sweep) != 0)
    return -1;
  if (cache_needs_room(cache))
    cache_schedule_reclaim(cache);
  return 0;
}

void cache_set_sweep_interval(struct cache *cache, unsigned sweep_interval) {
  cache->sweep_interval = sweep_interval;
}
