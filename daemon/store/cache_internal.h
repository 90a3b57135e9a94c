/* cache_internal: what the cache's three files share: cache.c (the environment, opening,
 * rebuilding, closing, and the keeper thread), cache_entries.c (reads, writes, deletes, purges,
 * pages) and cache_evict.c (the sweeper of expired entries and the reclaimer that evicts the
 * oldest). No other module includes it: the rest of the daemon sees cache.h. */
#ifndef FLIPCACHED_CACHE_INTERNAL_H
#define FLIPCACHED_CACHE_INTERNAL_H

#include <event2/event.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "cache.h"
#include "uuid.h"

#define SEQ_LEN 8
#define EXPIRY_KEY_LEN (8 + SEQ_LEN)          /* stale_until, seq */
#define VALUE_ID_LEN UUID_TEXT_LEN            /* a record's value starts with its id */
#define FORMAT_FILE "format"
#define FORMAT_TEXT "flipcached cache format 2\n" /* records/ids/expiry, RECORD_FORMAT_VERSION */
#define SYNC_INTERVAL_MS 1000 /* the keeper flushes committed writes to disk this often */
#define BROKEN_PREFIX "data.mdb.broken-"
#define PURGED_PREFIX "data.mdb.purged-"
#define DB_COUNT 3
/* get_value's code for an id whose record is missing or another id's: the databases disagree (a
 * bug, never LMDB's damage). Not one of LMDB's codes, which are all below -30000. */
#define DISAGREE (-1)
/* env_open's code for a file shorter than its own last page. */
#define TRUNCATED (-2)

struct cache {
  char dir[4096];
  uint64_t max_size;
  struct stats *stats;
  MDB_env *env;       /* NULL while unavailable: every call then degrades */
  MDB_dbi records, ids, expiry;
  MDB_txn *read_txn;  /* reused: reset after each read, renewed before the next */
  int last_open_rc;   /* the LMDB code of the last failed env_open, to tell damage apart */
  uint64_t next_seq;  /* the seq of the next record written: one past the last in "records" */
  uint64_t map_pages; /* the map's size in pages */
  char unavailable[256];    /* why env is NULL, for /healthz; empty while open */
  uint64_t purges;          /* names the purged files apart */
  uint64_t deletes;         /* cache_delete and cache_purge_all calls (cache_deletes) */

  /* Upkeep on the loop (cache_start_upkeep). */
  struct event *sweep_timer;   /* a sweeper step; a pass every sweep_interval seconds */
  struct event *reclaim_timer; /* a reclaimer step, armed with a zero timeout between requests */
  unsigned sweep_interval;
  bool reclaim_wanted;         /* past the high-water mark, or a write found the map full */
  size_t reclaim_batch;        /* halved when a reclaimer step itself finds the map full */

  /* The keeper thread: flushes commits with fdatasync on a dup() of the data file's descriptor,
   * taken under `lock`, which is held for nothing longer than that dup or a flag: the loop never
   * waits for a flush. It also deletes purged files and every set-aside damaged file but the
   * newest. The loop is the only thread that opens or closes env. */
  pthread_mutex_t lock;
  pthread_cond_t wake;
  pthread_t keeper;
  bool keeper_running;
  bool keeper_stop;            /* under lock */
  bool cleanup_wanted;         /* under lock */
  char set_aside[4400];        /* under lock: the newest damaged file's path, "" when none */
  atomic_uint_fast64_t syncs;  /* flushes that succeeded */
};

/* LMDB's ways of saying the file is not a sound environment of ours. MDB_BAD_TXN is not one: it
 * says a transaction is in an error state, not that the file is damaged. */
static inline bool is_damage(int rc) {
  return rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND ||
         rc == MDB_VERSION_MISMATCH;
}

static inline void put_be64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (56 - 8 * i));
}

static inline uint64_t get_be64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | p[i];
  return v;
}

/* The "ids" key of enrollment_id, in bytes (LMDB's MDB_val is not const). */
static inline MDB_val id_key_of(const char *enrollment_id, char bytes[UUID_TEXT_LEN]) {
  memcpy(bytes, enrollment_id, UUID_TEXT_LEN);
  return (MDB_val){.mv_size = UUID_TEXT_LEN, .mv_data = bytes};
}

static inline void expiry_key(int64_t stale_until, uint64_t seq, unsigned char key[EXPIRY_KEY_LEN]) {
  put_be64(key, stale_until < 0 ? 0 : (uint64_t)stale_until);
  put_be64(key + 8, seq);
}

/* cache.c: the keeper deletes purged files; the environment closed, opened again (or rebuilt);
 * a damaged environment (is_damage) moved aside and started afresh. */
void cache_wake_keeper(struct cache *cache);
void cache_env_close(struct cache *cache);
int cache_open_or_rebuild(struct cache *cache, char *err, size_t err_len);
void cache_rebuild(struct cache *cache, int rc);
/* cache_entries.c: pages of the map in use (in txn), and whether they are past percent of what
 * may be used; the reclaimer armed; one record removed from all three databases; a write
 * transaction committed when rc is 0, else aborted (returns the first failure). */
uint64_t cache_pages_in_use(struct cache *cache, MDB_txn *txn);
bool cache_past_percent(const struct cache *cache, uint64_t pages, unsigned percent);
void cache_schedule_reclaim(struct cache *cache);
int cache_remove_record(struct cache *cache, MDB_txn *txn, uint64_t seq, const MDB_val *value);
int cache_finish_txn(MDB_txn *txn, int rc);

#endif
