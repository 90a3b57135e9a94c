#include "cache.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "route.h"
#include "stats.h"

#define KEY_PREFIX "e:"
#define KEY_LEN (sizeof(KEY_PREFIX) - 1 + UUID_TEXT_LEN)
#define EVICT_ATTEMPTS 8    /* evictions tried for one write before it is given up */
#define EVICT_OLDEST_SHARE 10 /* with nothing expired, evict 1/10 of the entries, oldest first */
#define COMPACT_DIR "compact.tmp"
#define FORMAT_FILE "format"
#define FORMAT_TEXT "flipcached cache format 1\n" /* RECORD_FORMAT_VERSION, keys "e:"+uuid */
#define SYNC_INTERVAL_MS 1000 /* the syncer flushes committed writes to disk this often */

struct cache {
  char dir[4096];
  uint64_t max_size;
  struct stats *stats;
  MDB_env *env;       /* NULL only if reopening after a purge failed: every call then degrades */
  MDB_dbi dbi;
  MDB_txn *read_txn;  /* reused: reset after each read, renewed before the next */
  int last_open_rc;   /* the LMDB code of the last failed env_open, to tell damage apart */
  char sweep_next[KEY_LEN]; /* the sweeper resumes at this key; empty at the start of a pass */
  size_t sweep_next_len;
  char unavailable[256];    /* why env is NULL, for /healthz; empty while open */
  /* The syncer thread: commits on the loop only write (MDB_NOSYNC); this thread makes them
   * durable with mdb_env_sync every SYNC_INTERVAL_MS. env_lock is held by the loop while it opens
   * or closes env, and by the syncer while it syncs, so env is never closed under a sync. The
   * loop reads env without the lock: it is the only thread that changes it. */
  pthread_mutex_t env_lock;
  pthread_cond_t syncer_wake;
  pthread_t syncer;
  bool syncer_running;
  bool syncer_stop;            /* under env_lock */
  atomic_uint_fast64_t syncs;  /* mdb_env_sync calls that succeeded */
};

/* LMDB's ways of saying the file is not a sound environment of ours. */
static bool is_damage(int rc) {
  return rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND ||
         rc == MDB_VERSION_MISMATCH || rc == MDB_BAD_TXN;
}

static void make_key(const char *enrollment_id, char key[KEY_LEN]) {
  memcpy(key, KEY_PREFIX, sizeof(KEY_PREFIX) - 1);
  memcpy(key + sizeof(KEY_PREFIX) - 1, enrollment_id, UUID_TEXT_LEN);
}

static int prepare_directory(const char *dir, char *err, size_t err_len) {
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    snprintf(err, err_len, "cache path %s: cannot create: %s", dir, strerror(errno));
    return -1;
  }
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, err_len, "cache path %s: not a directory", dir);
    return -1;
  }
  if ((st.st_mode & 0777) != 0700) {
    if (chmod(dir, 0700) != 0) {
      snprintf(err, err_len, "cache path %s: mode %04o and cannot chmod 0700: %s", dir,
               (unsigned)(st.st_mode & 07777), strerror(errno));
      return -1;
    }
    log_warning("cache path %s: mode was %04o, set to 0700 (it holds personal data)", dir,
                (unsigned)(st.st_mode & 07777));
  }
  return 0;
}

static void env_close(struct cache *cache) {
  if (cache->read_txn)
    mdb_txn_abort(cache->read_txn);
  cache->read_txn = NULL;
  pthread_mutex_lock(&cache->env_lock);
  if (cache->env) {
    mdb_env_sync(cache->env, 1); /* what the syncer has not flushed yet */
    mdb_env_close(cache->env);
  }
  cache->env = NULL;
  pthread_mutex_unlock(&cache->env_lock);
}

static void *run_syncer(void *arg) {
  struct cache *cache = arg;
  pthread_mutex_lock(&cache->env_lock);
  while (!cache->syncer_stop) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)(SYNC_INTERVAL_MS % 1000) * 1000000L;
    until.tv_sec += SYNC_INTERVAL_MS / 1000 + until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&cache->syncer_wake, &cache->env_lock, &until);
    if (!cache->syncer_stop && cache->env && mdb_env_sync(cache->env, 1) == 0)
      atomic_fetch_add(&cache->syncs, 1);
  }
  pthread_mutex_unlock(&cache->env_lock);
  return NULL;
}

/* Opens the environment in cache->dir; on failure leaves cache->env NULL and sets err. */
static int env_open_locked(struct cache *cache, char *err, size_t err_len);

static int env_open(struct cache *cache, char *err, size_t err_len) {
  pthread_mutex_lock(&cache->env_lock);
  int rc = env_open_locked(cache, err, err_len);
  pthread_mutex_unlock(&cache->env_lock);
  if (rc != 0)
    env_close(cache);
  return rc;
}

static int env_open_locked(struct cache *cache, char *err, size_t err_len) {
  const char *step = "mdb_env_create";
  MDB_txn *txn = NULL;
  int rc = mdb_env_create(&cache->env);
  if (rc == 0) {
    step = "mdb_env_set_mapsize";
    rc = mdb_env_set_mapsize(cache->env, (size_t)cache->max_size);
  }
  if (rc == 0) {
    /* NOSYNC: a commit writes, the syncer thread flushes every SYNC_INTERVAL_MS, so no fsync
     * ever runs on the loop. A killed daemon loses nothing (the kernel has every write); a
     * system crash can lose the last second, or damage the file, which the next start moves
     * aside (docs/architecture.md). NOTLS: one thread reads, with one reused transaction. */
    step = "mdb_env_open";
    rc = mdb_env_open(cache->env, cache->dir, MDB_NOSYNC | MDB_NOTLS, 0600);
  }
  if (rc == 0) {
    int dead = 0;
    step = "mdb_reader_check";
    rc = mdb_reader_check(cache->env, &dead);
    if (rc == 0 && dead > 0)
      log_warning("cache: cleared %d stale reader slot(s) left by a crashed process", dead);
  }
  if (rc == 0) {
    step = "mdb_txn_begin";
    rc = mdb_txn_begin(cache->env, NULL, 0, &txn);
  }
  if (rc == 0) {
    step = "mdb_dbi_open";
    rc = mdb_dbi_open(txn, NULL, 0, &cache->dbi);
    if (rc == 0) {
      step = "mdb_txn_commit";
      rc = mdb_txn_commit(txn); /* frees txn whatever it returns */
    } else {
      mdb_txn_abort(txn);
    }
  }
  if (rc == 0) {
    step = "mdb_txn_begin(read)";
    rc = mdb_txn_begin(cache->env, NULL, MDB_RDONLY, &cache->read_txn);
    if (rc == 0)
      mdb_txn_reset(cache->read_txn);
  }
  if (rc != 0) {
    snprintf(err, err_len, "cache %s: %s: %s", cache->dir, step, mdb_strerror(rc));
    cache->last_open_rc = rc;
    return -1;
  }
  return 0;
}

/* Renames data.mdb to data.mdb.broken-<time> (kept for a post-mortem: it holds personal data,
 * so it stays in the 0700 directory until an operator removes it) and drops the lock file. */
static void move_aside(struct cache *cache, const char *why) {
  char from[4200], to[4300];
  snprintf(from, sizeof(from), "%s/data.mdb", cache->dir);
  snprintf(to, sizeof(to), "%s/data.mdb.broken-%lld", cache->dir, (long long)time(NULL));
  if (rename(from, to) != 0 && errno != ENOENT) {
    log_error("cache: %s, and it cannot be moved aside (%s): removing it", why, strerror(errno));
    unlink(from);
  } else {
    log_warning("cache: %s; moved it aside to %s and starting with an empty cache", why, to);
  }
  snprintf(from, sizeof(from), "%s/lock.mdb", cache->dir);
  unlink(from);
  cache->stats->cache_rebuilds++;
}

/* Whether the format file names this format (or there is no data yet, and it is written now). */
static bool format_matches(struct cache *cache, char *why, size_t why_len) {
  char data[4200], format[4200], text[64] = "";
  snprintf(data, sizeof(data), "%s/data.mdb", cache->dir);
  snprintf(format, sizeof(format), "%s/" FORMAT_FILE, cache->dir);
  FILE *file = fopen(format, "re");
  if (file) {
    size_t got = fread(text, 1, sizeof(text) - 1, file);
    text[got] = '\0';
    fclose(file);
    if (strcmp(text, FORMAT_TEXT) == 0)
      return true;
    snprintf(why, why_len, "data.mdb was written in another format (%.*s)",
             (int)strcspn(text, "\n"), text);
    return access(data, F_OK) != 0; /* no data: nothing to misread */
  }
  if (access(data, F_OK) == 0) {
    snprintf(why, why_len, "data.mdb has no format file beside it");
    return false;
  }
  return true;
}

static void write_format(struct cache *cache) {
  char format[4200];
  snprintf(format, sizeof(format), "%s/" FORMAT_FILE, cache->dir);
  FILE *file = fopen(format, "we");
  if (file) {
    fputs(FORMAT_TEXT, file);
    fclose(file);
  }
}

/* A file shorter than its last page would be mapped past its end: the first read there is a
 * SIGBUS, and the daemon would crash again at every start. */
static bool truncated(struct cache *cache) {
  MDB_envinfo info;
  MDB_stat stat;
  struct stat st;
  char data[4200];
  snprintf(data, sizeof(data), "%s/data.mdb", cache->dir);
  if (mdb_env_info(cache->env, &info) != 0 || mdb_env_stat(cache->env, &stat) != 0 ||
      lstat(data, &st) != 0)
    return false;
  return (uint64_t)st.st_size < ((uint64_t)info.me_last_pgno + 1) * stat.ms_psize;
}

/* Opens the environment, moving a damaged, truncated or foreign data.mdb aside first. */
static int open_or_rebuild(struct cache *cache, char *err, size_t err_len) {
  char why[256];
  if (!format_matches(cache, why, sizeof(why)))
    move_aside(cache, why);
  int rc = env_open(cache, err, err_len);
  if (rc != 0 && is_damage(cache->last_open_rc)) {
    snprintf(why, sizeof(why), "data.mdb is damaged (%s)", mdb_strerror(cache->last_open_rc));
    move_aside(cache, why);
    rc = env_open(cache, err, err_len);
  } else if (rc == 0 && truncated(cache)) {
    env_close(cache);
    move_aside(cache, "data.mdb is shorter than its own last page (truncated)");
    rc = env_open(cache, err, err_len);
  }
  if (rc == 0) {
    write_format(cache);
    cache->unavailable[0] = '\0';
  } else {
    snprintf(cache->unavailable, sizeof(cache->unavailable), "%s", err);
  }
  return rc;
}

struct cache *cache_open(const char *dir, uint64_t max_size, struct stats *stats, char *err,
                         size_t err_len) {
  struct cache *cache = calloc(1, sizeof(*cache));
  if (!cache) {
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  snprintf(cache->dir, sizeof(cache->dir), "%s", dir);
  cache->max_size = max_size;
  cache->stats = stats;
  pthread_mutex_init(&cache->env_lock, NULL);
  pthread_cond_init(&cache->syncer_wake, NULL);
  cache->syncer_running = pthread_create(&cache->syncer, NULL, run_syncer, cache) == 0;
  if (!cache->syncer_running)
    log_warning("cache: no syncer thread: commits reach the disk when the kernel writes them");
  if (prepare_directory(dir, err, err_len) != 0 || open_or_rebuild(cache, err, err_len) != 0) {
    snprintf(cache->unavailable, sizeof(cache->unavailable), "%s", err);
    log_error("cache: %s; serving from the upstream only until it can be opened", err);
  }
  return cache;
}

const char *cache_unavailable(const struct cache *cache) {
  return cache->env ? NULL : cache->unavailable;
}

int cache_try_reopen(struct cache *cache) {
  if (cache->env)
    return 0;
  char err[256];
  if (prepare_directory(cache->dir, err, sizeof(err)) != 0 ||
      open_or_rebuild(cache, err, sizeof(err)) != 0)
    return -1;
  log_info("cache: %s is open again", cache->dir);
  return 0;
}

/* Damage found while running: the environment is closed, the file moved aside, a new one
 * opened. The request at hand goes on as a miss. */
static void rebuild(struct cache *cache, int rc) {
  char why[128], err[256];
  snprintf(why, sizeof(why), "data.mdb is damaged (%s)", mdb_strerror(rc));
  env_close(cache);
  move_aside(cache, why);
  if (open_or_rebuild(cache, err, sizeof(err)) != 0)
    log_error("cache: %s; serving from the upstream only until it can be opened", err);
}

void cache_close(struct cache *cache) {
  if (!cache)
    return;
  if (cache->syncer_running) {
    pthread_mutex_lock(&cache->env_lock);
    cache->syncer_stop = true;
    pthread_cond_signal(&cache->syncer_wake);
    pthread_mutex_unlock(&cache->env_lock);
    pthread_join(cache->syncer, NULL);
  }
  env_close(cache);
  pthread_cond_destroy(&cache->syncer_wake);
  pthread_mutex_destroy(&cache->env_lock);
  free(cache);
}

uint64_t cache_syncs(const struct cache *cache) {
  return (uint64_t)atomic_load(&cache->syncs);
}

/* Looks enrollment_id up in the reused read transaction. copy: the value is copied out and the
 * transaction reset; else a found record borrows the map and the transaction stays open until
 * cache_entry_release. */
static enum cache_lookup lookup(struct cache *cache, const char *enrollment_id,
                                struct cache_entry *entry, bool copy) {
  memset(entry, 0, sizeof(*entry));
  if (!cache->env)
    return CACHE_ERROR;
  char key_bytes[KEY_LEN];
  make_key(enrollment_id, key_bytes);
  MDB_val key = {.mv_size = KEY_LEN, .mv_data = key_bytes}, value;
  int rc = mdb_txn_renew(cache->read_txn);
  if (rc != 0) {
    log_error("cache: mdb_txn_renew: %s", mdb_strerror(rc));
    return CACHE_ERROR;
  }
  enum cache_lookup result = CACHE_ABSENT;
  rc = mdb_get(cache->read_txn, cache->dbi, &key, &value);
  if (rc == 0) {
    const void *bytes = value.mv_data;
    if (copy) {
      /* Copied out before the transaction ends: the mapped page may be reused after the reset. */
      entry->copy = malloc(value.mv_size ? value.mv_size : 1);
      if (entry->copy) {
        memcpy(entry->copy, value.mv_data, value.mv_size);
        entry->copy_len = value.mv_size;
      }
      bytes = entry->copy;
    }
    if (!bytes) {
      result = CACHE_ERROR;
    } else {
      enum record_decode_result decoded = record_decode(bytes, value.mv_size, &entry->record);
      if (decoded == RECORD_OK) {
        result = CACHE_FOUND;
        if (!copy) {
          entry->lender = cache;
          return result; /* the transaction stays open until cache_entry_release */
        }
      } else {
        log_warning("cache: entry %s ignored: %s", enrollment_id, record_decode_strerror(decoded));
        cache_entry_release(entry);
      }
    }
  } else if (rc != MDB_NOTFOUND) {
    log_error("cache: mdb_get %s: %s", enrollment_id, mdb_strerror(rc));
    result = CACHE_ERROR;
  }
  mdb_txn_reset(cache->read_txn);
  if (rc != 0 && is_damage(rc)) {
    rebuild(cache, rc);
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

/* An entry of the eviction scan: its key and when it was fetched. */
struct eviction_candidate {
  int64_t fetched_at;
  char key[KEY_LEN];
  size_t key_len;
};

static int by_fetched_at(const void *a, const void *b) {
  const struct eviction_candidate *x = a, *y = b;
  return (x->fetched_at > y->fetched_at) - (x->fetched_at < y->fetched_at);
}

/* Makes room in one write transaction: deletes every entry past stale_until (or undecodable);
 * when none was, deletes the oldest tenth. Returns how many it deleted, or -1 (err set). */
static long evict(struct cache *cache, int64_t now, char *err, size_t err_len) {
  MDB_txn *txn = NULL;
  MDB_cursor *cursor = NULL;
  MDB_stat stat;
  struct eviction_candidate *candidates = NULL;
  size_t candidate_count = 0;
  long deleted = 0;
  int rc = mdb_txn_begin(cache->env, NULL, 0, &txn);
  if (rc == 0)
    rc = mdb_stat(txn, cache->dbi, &stat);
  if (rc == 0 && stat.ms_entries > 0) {
    candidates = calloc(stat.ms_entries, sizeof(*candidates));
    if (!candidates)
      rc = ENOMEM;
  }
  if (rc == 0)
    rc = mdb_cursor_open(txn, cache->dbi, &cursor);
  MDB_val key, value;
  int step = rc == 0 ? mdb_cursor_get(cursor, &key, &value, MDB_FIRST) : rc;
  while (rc == 0 && step == 0) {
    struct cache_record record;
    bool expired = record_decode(value.mv_data, value.mv_size, &record) != RECORD_OK ||
                   now >= record.stale_until;
    if (expired) {
      rc = mdb_cursor_del(cursor, 0);
      deleted++;
    } else if (candidate_count < stat.ms_entries && key.mv_size <= KEY_LEN) {
      struct eviction_candidate *candidate = &candidates[candidate_count++];
      candidate->fetched_at = record.fetched_at;
      memcpy(candidate->key, key.mv_data, key.mv_size);
      candidate->key_len = key.mv_size;
    }
    if (rc == 0)
      step = mdb_cursor_get(cursor, &key, &value, MDB_NEXT);
  }
  if (rc == 0 && step != MDB_NOTFOUND)
    rc = step;
  if (cursor)
    mdb_cursor_close(cursor);
  if (rc == 0 && deleted == 0 && candidate_count > 0) {
    qsort(candidates, candidate_count, sizeof(*candidates), by_fetched_at);
    size_t oldest = candidate_count / EVICT_OLDEST_SHARE ? candidate_count / EVICT_OLDEST_SHARE : 1;
    for (size_t i = 0; rc == 0 && i < oldest; i++) {
      MDB_val victim = {.mv_size = candidates[i].key_len, .mv_data = candidates[i].key};
      rc = mdb_del(txn, cache->dbi, &victim, NULL);
      deleted++;
    }
  }
  free(candidates);
  if (rc == 0) {
    rc = mdb_txn_commit(txn); /* frees txn whatever it returns */
    txn = NULL;
  }
  if (txn)
    mdb_txn_abort(txn);
  if (rc != 0) {
    snprintf(err, err_len, "eviction: %s", mdb_strerror(rc));
    return -1;
  }
  return deleted;
}

/* An empty environment: for a full purge, and the last resort when even an eviction does not
 * fit. Reopens through open_or_rebuild, like every reopen, so that a failure leaves the cache
 * "unavailable" with its reason. */
static int recreate(struct cache *cache, char *err, size_t err_len) {
  char path[4200];
  env_close(cache);
  snprintf(path, sizeof(path), "%s/data.mdb", cache->dir);
  if (unlink(path) != 0 && errno != ENOENT) {
    snprintf(err, err_len, "cannot remove %s: %s", path, strerror(errno));
    char reopen_err[256];
    open_or_rebuild(cache, reopen_err, sizeof(reopen_err));
    return -1;
  }
  snprintf(path, sizeof(path), "%s/lock.mdb", cache->dir);
  unlink(path);
  cache->sweep_next_len = 0;
  return open_or_rebuild(cache, err, err_len);
}

static int put_once(struct cache *cache, MDB_val *key, const struct cache_record *record) {
  MDB_val value = {.mv_size = record_encoded_len(record)};
  MDB_txn *txn = NULL;
  int rc = mdb_txn_begin(cache->env, NULL, 0, &txn);
  if (rc != 0)
    return rc;
  /* MDB_RESERVE: LMDB hands out the space and the record is encoded straight into it. */
  rc = mdb_put(txn, cache->dbi, key, &value, MDB_RESERVE);
  if (rc != 0) {
    mdb_txn_abort(txn);
    return rc;
  }
  record_encode(record, value.mv_data);
  return mdb_txn_commit(txn); /* frees txn whatever it returns: never abort after this */
}

/* The key of enrollment_id, in key_bytes, for a write; -1 with err set when the cache is not
 * open (a failed reopen after a purge). */
static int write_key(struct cache *cache, const char *enrollment_id, char key_bytes[KEY_LEN],
                     MDB_val *key, char *err, size_t err_len) {
  if (!cache->env) {
    snprintf(err, err_len, "the cache is not open");
    return -1;
  }
  make_key(enrollment_id, key_bytes);
  key->mv_size = KEY_LEN;
  key->mv_data = key_bytes;
  return 0;
}

int cache_put(struct cache *cache, const char *enrollment_id, const struct cache_record *record,
              int64_t now, char *err, size_t err_len) {
  char key_bytes[KEY_LEN];
  MDB_val key;
  if (write_key(cache, enrollment_id, key_bytes, &key, err, err_len) != 0)
    return -1;
  int rc = put_once(cache, &key, record);
  for (int attempt = 0; rc == MDB_MAP_FULL && attempt < EVICT_ATTEMPTS; attempt++) {
    long evicted = evict(cache, now, err, err_len);
    if (evicted < 0) {
      log_warning("cache: full and %s: recreating the cache file", err);
      uint64_t entries = 0, bytes = 0;
      cache_usage(cache, &entries, &bytes);
      if (recreate(cache, err, err_len) != 0)
        return -1;
      evicted = (long)entries;
    }
    cache->stats->evictions += (uint64_t)evicted;
    log_debug("cache: map full, evicted %ld entr%s", evicted, evicted == 1 ? "y" : "ies");
    if (evicted == 0)
      break; /* empty and still too small: the record is larger than the map */
    rc = put_once(cache, &key, record);
  }
  if (rc != 0) {
    snprintf(err, err_len, "%s", mdb_strerror(rc));
    if (is_damage(rc))
      rebuild(cache, rc);
    return -1;
  }
  return 0;
}

/* Copies the live data into COMPACT_DIR/data.mdb and swaps it in: freed pages, and the bytes of
 * deleted entries in them, are not copied. The loop waits for the copy; purges are rare. */
static int compact(struct cache *cache, char *err, size_t err_len) {
  char tmp_dir[4200], tmp_file[4300], data_file[4200];
  snprintf(tmp_dir, sizeof(tmp_dir), "%s/" COMPACT_DIR, cache->dir);
  snprintf(tmp_file, sizeof(tmp_file), "%s/data.mdb", tmp_dir);
  snprintf(data_file, sizeof(data_file), "%s/data.mdb", cache->dir);
  unlink(tmp_file);
  if (mkdir(tmp_dir, 0700) != 0 && errno != EEXIST) {
    snprintf(err, err_len, "cannot create %s: %s", tmp_dir, strerror(errno));
    return -1;
  }
  int rc = mdb_env_copy2(cache->env, tmp_dir, MDB_CP_COMPACT);
  if (rc != 0) {
    snprintf(err, err_len, "mdb_env_copy2: %s", mdb_strerror(rc));
    unlink(tmp_file);
    rmdir(tmp_dir);
    return -1;
  }
  env_close(cache);
  int renamed = rename(tmp_file, data_file);
  int rename_errno = errno;
  rmdir(tmp_dir);
  if (open_or_rebuild(cache, err, err_len) != 0)
    return -1;
  if (renamed != 0) {
    snprintf(err, err_len, "cannot replace %s: %s", data_file, strerror(rename_errno));
    return -1;
  }
  cache->sweep_next_len = 0;
  return 0;
}

int cache_delete(struct cache *cache, const char *enrollment_id, bool *found, char *err,
                 size_t err_len) {
  *found = false;
  char key_bytes[KEY_LEN];
  MDB_val key;
  if (write_key(cache, enrollment_id, key_bytes, &key, err, err_len) != 0)
    return -1;
  MDB_txn *txn = NULL;
  int rc = mdb_txn_begin(cache->env, NULL, 0, &txn);
  if (rc == 0) {
    rc = mdb_del(txn, cache->dbi, &key, NULL);
    if (rc == MDB_NOTFOUND) {
      mdb_txn_abort(txn);
      return 0;
    }
    if (rc == 0)
      rc = mdb_txn_commit(txn);
    else
      mdb_txn_abort(txn);
  }
  if (rc != 0) {
    snprintf(err, err_len, "delete: %s", mdb_strerror(rc));
    return -1;
  }
  *found = true;
  return compact(cache, err, err_len);
}

int cache_purge_all(struct cache *cache, uint64_t *removed, char *err, size_t err_len) {
  uint64_t bytes = 0;
  *removed = 0;
  if (cache->env)
    cache_usage(cache, removed, &bytes);
  return recreate(cache, err, err_len);
}

long cache_sweep_step(struct cache *cache, int64_t now, size_t max_entries, bool *pass_done) {
  *pass_done = false;
  if (!cache->env)
    return -1;
  MDB_txn *txn = NULL;
  MDB_cursor *cursor = NULL;
  long deleted = 0;
  int rc = mdb_txn_begin(cache->env, NULL, 0, &txn);
  if (rc == 0)
    rc = mdb_cursor_open(txn, cache->dbi, &cursor);
  MDB_val key = {.mv_size = cache->sweep_next_len, .mv_data = cache->sweep_next}, value;
  int step = rc;
  if (rc == 0)
    step = cache->sweep_next_len ? mdb_cursor_get(cursor, &key, &value, MDB_SET_RANGE)
                                 : mdb_cursor_get(cursor, &key, &value, MDB_FIRST);
  size_t seen = 0;
  while (rc == 0 && step == 0 && seen < max_entries) {
    struct cache_record record;
    if (record_decode(value.mv_data, value.mv_size, &record) != RECORD_OK ||
        now >= record.stale_until) {
      rc = mdb_cursor_del(cursor, 0);
      deleted++;
    }
    seen++;
    if (rc == 0)
      step = mdb_cursor_get(cursor, &key, &value, MDB_NEXT);
  }
  if (rc == 0 && step == 0 && key.mv_size <= KEY_LEN) {
    memcpy(cache->sweep_next, key.mv_data, key.mv_size); /* resume here next step */
    cache->sweep_next_len = key.mv_size;
  } else if (rc == 0 && step == MDB_NOTFOUND) {
    cache->sweep_next_len = 0;
    *pass_done = true;
  } else if (rc == 0) {
    rc = step;
  }
  if (cursor)
    mdb_cursor_close(cursor);
  if (rc == 0) {
    rc = mdb_txn_commit(txn);
    txn = NULL;
  }
  if (txn)
    mdb_txn_abort(txn);
  if (rc != 0) {
    log_warning("cache: sweep: %s", mdb_strerror(rc));
    cache->sweep_next_len = 0;
    if (is_damage(rc))
      rebuild(cache, rc);
    return -1;
  }
  cache->stats->expired_removed += (uint64_t)deleted;
  return deleted;
}

/* Pages on LMDB's freelist (database 0), counted as mdb_stat -f does: each record is an ID list
 * whose first element is its length. Runs inside the reused read transaction. */
static uint64_t free_pages(struct cache *cache) {
  uint64_t pages = 0;
  MDB_cursor *cursor = NULL;
  MDB_val key, value;
  if (mdb_txn_renew(cache->read_txn) != 0)
    return 0;
  if (mdb_cursor_open(cache->read_txn, 0, &cursor) == 0) {
    while (mdb_cursor_get(cursor, &key, &value, MDB_NEXT) == 0) {
      size_t count;
      memcpy(&count, value.mv_data, sizeof(count));
      pages += count;
    }
    mdb_cursor_close(cursor);
  }
  mdb_txn_reset(cache->read_txn);
  return pages;
}

void cache_usage(struct cache *cache, uint64_t *entries, uint64_t *bytes) {
  MDB_stat stat;
  MDB_envinfo info;
  *entries = 0;
  *bytes = 0;
  if (cache->env && mdb_env_stat(cache->env, &stat) == 0 && mdb_env_info(cache->env, &info) == 0) {
    uint64_t used_pages = (uint64_t)info.me_last_pgno + 1;
    uint64_t free = free_pages(cache);
    *entries = stat.ms_entries;
    *bytes = (used_pages > free ? used_pages - free : 0) * stat.ms_psize;
  }
}
