/* cache_entries: reading, writing, deleting and purging entries of the LMDB environment
 * (cache.h), and its usage. */
#include <time.h>
#include <unistd.h>

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

/* --- reading ------------------------------------------------------------------------------------ */

/* The record value of enrollment_id in txn: the id, then the encoded record. *seq is set. */
static int get_value(struct cache *cache, MDB_txn *txn, const char *enrollment_id, uint64_t *seq,
                     MDB_val *value) {
  char id_bytes[UUID_TEXT_LEN];
  MDB_val key = id_key_of(enrollment_id, id_bytes), seq_value;
  int rc = mdb_get(txn, cache->ids, &key, &seq_value);
  if (rc != 0)
    return rc;
  if (seq_value.mv_size != SEQ_LEN)
    return DISAGREE;
  unsigned char seq_key[SEQ_LEN];
  memcpy(seq_key, seq_value.mv_data, SEQ_LEN);
  *seq = get_be64(seq_key);
  MDB_val record_key = {.mv_size = SEQ_LEN, .mv_data = seq_key};
  rc = mdb_get(txn, cache->records, &record_key, value);
  if (rc == MDB_NOTFOUND || (rc == 0 && (value->mv_size < VALUE_ID_LEN ||
                                         memcmp(value->mv_data, enrollment_id, UUID_TEXT_LEN) != 0)))
    rc = DISAGREE; /* never hand out another id's record */
  return rc;
}

/* Looks enrollment_id up in the reused read transaction. copy: the value is copied out and the
 * transaction reset; else a found record borrows the map and the transaction stays open until
 * cache_entry_release. */
static enum cache_lookup lookup(struct cache *cache, const char *enrollment_id,
                                struct cache_entry *entry, bool copy) {
  memset(entry, 0, sizeof(*entry));
  if (!cache->env)
    return CACHE_ERROR;
  int rc = mdb_txn_renew(cache->read_txn);
  if (rc != 0) {
    log_error("cache: mdb_txn_renew: %s", mdb_strerror(rc));
    return CACHE_ERROR;
  }
  enum cache_lookup result = CACHE_ABSENT;
  uint64_t seq;
  MDB_val value;
  rc = get_value(cache, cache->read_txn, enrollment_id, &seq, &value);
  if (rc == 0) {
    const unsigned char *bytes = (const unsigned char *)value.mv_data + VALUE_ID_LEN;
    size_t len = value.mv_size - VALUE_ID_LEN;
    if (copy) {
      /* Copied out before the transaction ends: the mapped page may be reused after the reset. */
      entry->copy = malloc(len ? len : 1);
      if (entry->copy) {
        memcpy(entry->copy, bytes, len);
        entry->copy_len = len;
      }
      bytes = entry->copy;
    }
    if (!bytes) {
      result = CACHE_ERROR;
    } else {
      enum record_decode_result decoded = record_decode(bytes, len, &entry->record);
      if (decoded == RECORD_OK) {
        result = CACHE_FOUND;
        if (!copy) {
          entry->copy_len = len;
          entry->lender = cache;
          return result; /* the transaction stays open until cache_entry_release */
        }
      } else {
        log_warning("cache: entry %s ignored: %s", enrollment_id, record_decode_strerror(decoded));
        cache_entry_release(entry);
      }
    }
  } else if (rc == DISAGREE) {
    log_warning("cache: entry %s ignored: its id names no record of its own", enrollment_id);
  } else if (rc != MDB_NOTFOUND) {
    log_error("cache: lookup of %s: %s", enrollment_id, mdb_strerror(rc));
    result = CACHE_ERROR;
  }
  mdb_txn_reset(cache->read_txn);
  if (rc != 0 && is_damage(rc)) {
    cache_rebuild(cache, rc);
    result = CACHE_ABSENT;
  }
  return result;
}

enum cache_lookup cache_get(struct cache *cache, const char *enrollment_id,
                            struct cache_entry *entry) {
  return lookup(cache, enrollment_id, entry, true);
}

enum cache_lookup cache_get_borrowed(struct cache *cache, const char *enrollment_id,
                                     struct cache_entry *entry) {
  return lookup(cache, enrollment_id, entry, false);
}

void cache_entry_release(struct cache_entry *entry) {
  if (!entry)
    return;
  if (entry->lender && entry->lender->read_txn)
    mdb_txn_reset(entry->lender->read_txn);
  free(entry->copy);
  memset(entry, 0, sizeof(*entry));
}

/* One page of GET /cache: the ids stored after `after`, in key order, each with its record. */
long cache_list(struct cache *cache, const char *after, size_t limit, cache_list_fn fn, void *arg,
                bool *more) {
  *more = false;
  if (!cache->env)
    return -1;
  int rc = mdb_txn_renew(cache->read_txn);
  if (rc != 0) {
    log_error("cache: mdb_txn_renew: %s", mdb_strerror(rc));
    return -1;
  }
  MDB_cursor *cursor;
  rc = mdb_cursor_open(cache->read_txn, cache->ids, &cursor);
  if (rc != 0) {
    mdb_txn_reset(cache->read_txn);
    return -1;
  }
  char after_bytes[UUID_TEXT_LEN];
  MDB_val key, seq_value;
  if (after[0]) {
    key = id_key_of(after, after_bytes);
    rc = mdb_cursor_get(cursor, &key, &seq_value, MDB_SET_RANGE);
    if (rc == 0 && key.mv_size == UUID_TEXT_LEN && memcmp(key.mv_data, after, UUID_TEXT_LEN) == 0)
      rc = mdb_cursor_get(cursor, &key, &seq_value, MDB_NEXT);
  } else {
    rc = mdb_cursor_get(cursor, &key, &seq_value, MDB_FIRST);
  }
  long listed = 0;
  size_t examined = 0; /* bounded even if many records are damaged and skipped */
  for (; rc == 0 && (size_t)listed < limit && examined++ < 4 * limit;
       rc = mdb_cursor_get(cursor, &key, &seq_value, MDB_NEXT)) {
    char id[UUID_TEXT_LEN + 1];
    if (key.mv_size != UUID_TEXT_LEN || seq_value.mv_size != SEQ_LEN)
      continue; /* not one of ours: never listed */
    memcpy(id, key.mv_data, UUID_TEXT_LEN);
    id[UUID_TEXT_LEN] = '\0';
    MDB_val record_key = {.mv_size = SEQ_LEN, .mv_data = seq_value.mv_data}, value;
    struct cache_record record;
    if (mdb_get(cache->read_txn, cache->records, &record_key, &value) != 0 ||
        value.mv_size < VALUE_ID_LEN || memcmp(value.mv_data, id, UUID_TEXT_LEN) != 0 ||
        record_decode((const unsigned char *)value.mv_data + VALUE_ID_LEN,
                      value.mv_size - VALUE_ID_LEN, &record) != RECORD_OK)
      continue; /* lookups ignore it too; the next fetch of the id replaces it */
    fn(id, &record, value.mv_size - VALUE_ID_LEN, arg);
    listed++;
  }
  *more = rc == 0;
  bool failed = rc != 0 && rc != MDB_NOTFOUND;
  if (failed)
    log_error("cache: listing: %s", mdb_strerror(rc));
  mdb_cursor_close(cursor);
  mdb_txn_reset(cache->read_txn);
  return failed ? -1 : listed;
}

/* --- writing ------------------------------------------------------------------------------------ */

/* Pages of every tree (the freelist's included) and the two meta pages: what the map holds that
 * is not free. Reads only the databases' headers: constant time. */
uint64_t cache_pages_in_use(struct cache *cache, MDB_txn *txn) {
  const MDB_dbi dbis[] = {0 /* the freelist */, 1 /* the main DB: the names */, cache->records,
                          cache->ids, cache->expiry};
  uint64_t pages = 2;
  for (size_t i = 0; i < sizeof(dbis) / sizeof(dbis[0]); i++) {
    MDB_stat stat;
    if (mdb_stat(txn, dbis[i], &stat) == 0)
      pages += stat.ms_branch_pages + stat.ms_leaf_pages + stat.ms_overflow_pages;
  }
  return pages;
}

/* The pages writes may fill: all but a reserve. The reserve covers the pages that the last
 * transactions freed and LMDB cannot reuse yet, and the reclaimer's own deletes, which copy pages
 * too (copy-on-write): a map filled to its last page could never be emptied. */
static uint64_t usable_pages(const struct cache *cache) {
  uint64_t reserve = cache->map_pages * CACHE_RESERVE_PERCENT / 100;
  if (reserve < CACHE_RESERVE_MIN_PAGES)
    reserve = CACHE_RESERVE_MIN_PAGES;
  return cache->map_pages > 2 * reserve ? cache->map_pages - reserve : cache->map_pages / 2;
}

/* Whether pages in use are past percent of the usable pages. */
bool cache_past_percent(const struct cache *cache, uint64_t pages, unsigned percent) {
  return pages * 100 > usable_pages(cache) * percent;
}

void cache_schedule_reclaim(struct cache *cache) {
  cache->reclaim_wanted = true;
  if (cache->reclaim_timer && !evtimer_pending(cache->reclaim_timer, NULL)) {
    struct timeval now = {0, 0};
    evtimer_add(cache->reclaim_timer, &now);
  }
}

/* Deletes the record at seq (whose value is `value`) with its id and expiry keys. */
int cache_remove_record(struct cache *cache, MDB_txn *txn, uint64_t seq, const MDB_val *value) {
  unsigned char seq_key[SEQ_LEN];
  put_be64(seq_key, seq);
  int rc = 0;
  if (value->mv_size >= VALUE_ID_LEN) {
    char id[UUID_TEXT_LEN];
    memcpy(id, value->mv_data, UUID_TEXT_LEN);
    struct cache_record record;
    if (record_decode((const unsigned char *)value->mv_data + VALUE_ID_LEN,
                      value->mv_size - VALUE_ID_LEN, &record) == RECORD_OK) {
      unsigned char key_bytes[EXPIRY_KEY_LEN];
      expiry_key(record.stale_until, seq, key_bytes);
      MDB_val key = {.mv_size = EXPIRY_KEY_LEN, .mv_data = key_bytes};
      rc = mdb_del(txn, cache->expiry, &key, NULL);
    }
    /* The id's key goes only if it still names this record. */
    MDB_val id_key = {.mv_size = UUID_TEXT_LEN, .mv_data = id}, id_seq;
    if (rc == 0 || rc == MDB_NOTFOUND)
      rc = mdb_get(txn, cache->ids, &id_key, &id_seq);
    if (rc == 0 && id_seq.mv_size == SEQ_LEN && memcmp(id_seq.mv_data, seq_key, SEQ_LEN) == 0)
      rc = mdb_del(txn, cache->ids, &id_key, NULL);
  }
  MDB_val record_key = {.mv_size = SEQ_LEN, .mv_data = seq_key};
  if (rc == 0 || rc == MDB_NOTFOUND)
    rc = mdb_del(txn, cache->records, &record_key, NULL);
  return rc;
}

/* Deletes enrollment_id's entry, if any, in txn; *found says whether there was one. */
static int remove_entry(struct cache *cache, MDB_txn *txn, const char *enrollment_id,
                        bool *found) {
  uint64_t seq;
  MDB_val value;
  *found = false;
  int rc = get_value(cache, txn, enrollment_id, &seq, &value);
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc == DISAGREE) {
    /* An id whose record is missing or another's: drop the id's key alone. */
    char id_bytes[UUID_TEXT_LEN];
    MDB_val key = id_key_of(enrollment_id, id_bytes);
    rc = mdb_del(txn, cache->ids, &key, NULL);
  } else if (rc == 0) {
    rc = cache_remove_record(cache, txn, seq, &value);
  }
  *found = rc == 0;
  return rc;
}

/* Commits txn (or aborts it when rc is not 0); returns the first error. */
int cache_finish_txn(MDB_txn *txn, int rc) {
  if (rc != 0) {
    mdb_txn_abort(txn);
    return rc;
  }
  return mdb_txn_commit(txn); /* frees txn whatever it returns: never abort after this */
}

static int put_txn(struct cache *cache, const char *enrollment_id,
                   const struct cache_record *record, uint64_t *pages_after) {
  MDB_txn *txn = NULL;
  int rc = mdb_txn_begin(cache->env, NULL, 0, &txn);
  if (rc != 0)
    return rc;
  bool replaced;
  rc = remove_entry(cache, txn, enrollment_id, &replaced);
  uint64_t seq = cache->next_seq;
  unsigned char seq_key[SEQ_LEN];
  put_be64(seq_key, seq);
  MDB_val key = {.mv_size = SEQ_LEN, .mv_data = seq_key};
  MDB_val value = {.mv_size = VALUE_ID_LEN + record_encoded_len(record)};
  /* MDB_APPEND: seq is past every stored one, so the record goes at the tree's end and its pages
   * fill up; MDB_RESERVE: the record is encoded straight into the space LMDB hands out. */
  if (rc == 0)
    rc = mdb_put(txn, cache->records, &key, &value, MDB_APPEND | MDB_RESERVE);
  if (rc == 0) {
    memcpy(value.mv_data, enrollment_id, UUID_TEXT_LEN);
    record_encode(record, (unsigned char *)value.mv_data + VALUE_ID_LEN);
    char id_bytes[UUID_TEXT_LEN];
    MDB_val id_key = id_key_of(enrollment_id, id_bytes);
    MDB_val id_seq = {.mv_size = SEQ_LEN, .mv_data = seq_key};
    rc = mdb_put(txn, cache->ids, &id_key, &id_seq, 0);
  }
  if (rc == 0) {
    unsigned char expiry_bytes[EXPIRY_KEY_LEN];
    expiry_key(record->stale_until, seq, expiry_bytes);
    MDB_val expiry = {.mv_size = EXPIRY_KEY_LEN, .mv_data = expiry_bytes}, none = {0, NULL};
    rc = mdb_put(txn, cache->expiry, &expiry, &none, 0);
  }
  if (rc == 0) {
    *pages_after = cache_pages_in_use(cache, txn);
    if (*pages_after > usable_pages(cache))
      rc = MDB_MAP_FULL; /* the reserve is the reclaimer's */
  }
  rc = cache_finish_txn(txn, rc);
  if (rc == 0)
    cache->next_seq = seq + 1;
  return rc;
}

enum cache_put_result cache_put(struct cache *cache, const char *enrollment_id,
                                const struct cache_record *record, char *err, size_t err_len) {
  if (!cache->env) {
    snprintf(err, err_len, "the cache is not open");
    return CACHE_PUT_FAILED;
  }
  uint64_t pages = 0;
  int rc = put_txn(cache, enrollment_id, record, &pages);
  if (rc == MDB_MAP_FULL) {
    cache->stats->cache_full_skips++;
    cache_schedule_reclaim(cache);
    snprintf(err, err_len, "the cache map is full; room is being made");
    return CACHE_SKIPPED_FULL;
  }
  if (rc != 0) {
    snprintf(err, err_len, "%s", mdb_strerror(rc));
    if (is_damage(rc))
      cache_rebuild(cache, rc);
    return CACHE_PUT_FAILED;
  }
  if (cache_past_percent(cache, pages, CACHE_HIGH_WATER_PERCENT))
    cache_schedule_reclaim(cache);
  return CACHE_STORED;
}

int cache_delete(struct cache *cache, const char *enrollment_id, bool *found, char *err,
                 size_t err_len) {
  *found = false;
  cache->deletes++;
  if (!cache->env) {
    snprintf(err, err_len, "the cache is not open");
    return -1;
  }
  MDB_txn *txn = NULL;
  int rc = mdb_txn_begin(cache->env, NULL, 0, &txn);
  if (rc == 0)
    rc = cache_finish_txn(txn, remove_entry(cache, txn, enrollment_id, found));
  if (rc != 0) {
    *found = false;
    snprintf(err, err_len, "delete: %s", mdb_strerror(rc));
    if (is_damage(rc))
      cache_rebuild(cache, rc);
    return -1;
  }
  return 0;
}

uint64_t cache_deletes(const struct cache *cache) { return cache->deletes; }

int cache_purge_all(struct cache *cache, uint64_t *removed, char *err, size_t err_len) {
  cache->deletes++;
  uint64_t bytes = 0;
  *removed = 0;
  cache_usage(cache, removed, &bytes);
  cache_env_close(cache);
  char from[4200], to[4300];
  snprintf(from, sizeof(from), "%s/data.mdb", cache->dir);
  snprintf(to, sizeof(to), "%s/" PURGED_PREFIX "%lld-%llu", cache->dir, (long long)time(NULL),
           (unsigned long long)++cache->purges);
  /* A rename, not an unlink: freeing a large file's blocks takes a while, so the keeper does it. */
  int renamed = rename(from, to) == 0 || errno == ENOENT ? 0 : errno;
  if (renamed == 0)
    cache_wake_keeper(cache);
  if (cache_open_or_rebuild(cache, err, err_len) != 0)
    return -1;
  if (renamed != 0) {
    snprintf(err, err_len, "cannot set %s aside: %s", from, strerror(renamed));
    return -1;
  }
  return 0;
}

/* Positions cursor on its database's first key, deleting before it any key that is not key_len
 * long (not one of ours: nothing refers to it). MDB_NOTFOUND when the database is empty. */

void cache_usage(struct cache *cache, uint64_t *entries, uint64_t *bytes) {
  *entries = 0;
  *bytes = 0;
  MDB_stat stat;
  if (!cache->env || mdb_env_stat(cache->env, &stat) != 0 ||
      mdb_txn_renew(cache->read_txn) != 0)
    return;
  MDB_stat records;
  if (mdb_stat(cache->read_txn, cache->ids, &records) == 0)
    *entries = records.ms_entries;
  *bytes = cache_pages_in_use(cache, cache->read_txn) * stat.ms_psize;
  mdb_txn_reset(cache->read_txn);
}
