#include "clock.h"
#include "cache.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
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
static bool is_damage(int rc) {
  return rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND ||
         rc == MDB_VERSION_MISMATCH;
}

static void put_be64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (56 - 8 * i));
}

static uint64_t get_be64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | p[i];
  return v;
}

/* The "ids" key of enrollment_id, in bytes (LMDB's MDB_val is not const). */
static MDB_val id_key_of(const char *enrollment_id, char bytes[UUID_TEXT_LEN]) {
  memcpy(bytes, enrollment_id, UUID_TEXT_LEN);
  return (MDB_val){.mv_size = UUID_TEXT_LEN, .mv_data = bytes};
}

static void expiry_key(int64_t stale_until, uint64_t seq, unsigned char key[EXPIRY_KEY_LEN]) {
  put_be64(key, stale_until < 0 ? 0 : (uint64_t)stale_until);
  put_be64(key + 8, seq);
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

/* --- the keeper thread ---------------------------------------------------------------------- */

/* Deletes the purged files, and every set-aside damaged file but `keep`. Runs on the keeper
 * (or, without one, on the caller): deleting a large file can take a while. */
static void remove_left_behind(const char *dir, const char *keep) {
  DIR *listing = opendir(dir);
  if (!listing)
    return;
  const char *kept_name = strrchr(keep, '/') ? strrchr(keep, '/') + 1 : keep;
  struct dirent *item;
  while ((item = readdir(listing)) != NULL) {
    bool purged = strncmp(item->d_name, PURGED_PREFIX, sizeof(PURGED_PREFIX) - 1) == 0;
    bool broken = strncmp(item->d_name, BROKEN_PREFIX, sizeof(BROKEN_PREFIX) - 1) == 0;
    if (!purged && !(broken && strcmp(item->d_name, kept_name) != 0))
      continue;
    char path[4400];
    snprintf(path, sizeof(path), "%s/%s", dir, item->d_name);
    if (unlink(path) != 0 && errno != ENOENT)
      log_warning("cache: cannot remove %s: %s", path, strerror(errno));
    else if (broken)
      log_info("cache: removed %s (only the newest damaged file is kept)", path);
  }
  closedir(listing);
}

/* The keeper deletes what a purge or a damaged start left behind; without a keeper thread (it
 * could not be started) the caller does it at once. */
static void wake_keeper_for_cleanup(struct cache *cache) {
  if (!cache->keeper_running) {
    remove_left_behind(cache->dir, cache->set_aside);
    return;
  }
  pthread_mutex_lock(&cache->lock);
  cache->cleanup_wanted = true;
  pthread_cond_signal(&cache->wake);
  pthread_mutex_unlock(&cache->lock);
}

static void *run_keeper(void *arg) {
  struct cache *cache = arg;
  char keep[sizeof(cache->set_aside)];
  pthread_mutex_lock(&cache->lock);
  while (!cache->keeper_stop) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)(SYNC_INTERVAL_MS % 1000) * 1000000L;
    until.tv_sec += SYNC_INTERVAL_MS / 1000 + until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    if (!cache->cleanup_wanted)
      pthread_cond_timedwait(&cache->wake, &cache->lock, &until);
    if (cache->keeper_stop)
      break;
    int fd = -1;
    mdb_filehandle_t env_fd;
    if (cache->env && mdb_env_get_fd(cache->env, &env_fd) == 0)
      fd = dup(env_fd);
    bool cleanup = cache->cleanup_wanted;
    cache->cleanup_wanted = false;
    snprintf(keep, sizeof(keep), "%s", cache->set_aside);
    pthread_mutex_unlock(&cache->lock);
    /* Outside the lock: the loop may close env, or rename its file, while this flushes. */
    if (fd >= 0) {
      if (fdatasync(fd) == 0)
        atomic_fetch_add(&cache->syncs, 1);
      close(fd);
    }
    if (cleanup)
      remove_left_behind(cache->dir, keep);
    pthread_mutex_lock(&cache->lock);
  }
  pthread_mutex_unlock(&cache->lock);
  return NULL;
}

/* --- opening and closing --------------------------------------------------------------------- */

/* Closes the environment without a flush: what the keeper has not flushed yet stays in the
 * kernel's page cache and reaches the disk anyway (a crash of the machine can lose it). The lock
 * is held only while env changes, so that the keeper never dups a descriptor being closed. */
static void env_close(struct cache *cache) {
  if (cache->read_txn)
    mdb_txn_abort(cache->read_txn);
  cache->read_txn = NULL;
  pthread_mutex_lock(&cache->lock);
  if (cache->env)
    mdb_env_close(cache->env);
  cache->env = NULL;
  pthread_mutex_unlock(&cache->lock);
}

static int open_databases(struct cache *cache, MDB_txn *txn, const char **step) {
  *step = "mdb_dbi_open";
  int rc = mdb_dbi_open(txn, "records", MDB_CREATE, &cache->records);
  if (rc == 0)
    rc = mdb_dbi_open(txn, "ids", MDB_CREATE, &cache->ids);
  if (rc == 0)
    rc = mdb_dbi_open(txn, "expiry", MDB_CREATE, &cache->expiry);
  if (rc != 0)
    return rc;
  /* The next seq: one past the last record's. */
  MDB_cursor *cursor = NULL;
  MDB_val key, value;
  *step = "mdb_cursor_get(last record)";
  rc = mdb_cursor_open(txn, cache->records, &cursor);
  if (rc != 0)
    return rc;
  rc = mdb_cursor_get(cursor, &key, &value, MDB_LAST);
  cache->next_seq = 1;
  if (rc == 0 && key.mv_size == SEQ_LEN)
    cache->next_seq = get_be64(key.mv_data) + 1;
  mdb_cursor_close(cursor);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

/* A file shorter than its last page would be mapped past its end: the first read there is a
 * SIGBUS, and the daemon would crash again at every start. Checked before any page is read. */
static bool truncated(struct cache *cache, MDB_env *env) {
  MDB_envinfo info;
  MDB_stat stat;
  struct stat st;
  char data[4200];
  snprintf(data, sizeof(data), "%s/data.mdb", cache->dir);
  if (mdb_env_info(env, &info) != 0 || mdb_env_stat(env, &stat) != 0 ||
      lstat(data, &st) != 0)
    return false;
  return (uint64_t)st.st_size < ((uint64_t)info.me_last_pgno + 1) * stat.ms_psize;
}

/* Opens the environment in cache->dir; on failure closes it and sets err. */
static int env_open(struct cache *cache, char *err, size_t err_len) {
  const char *step = "mdb_env_create";
  MDB_env *env = NULL;
  MDB_txn *txn = NULL;
  int rc = mdb_env_create(&env);
  if (rc == 0) {
    step = "mdb_env_set_mapsize";
    rc = mdb_env_set_mapsize(env, (size_t)cache->max_size);
  }
  if (rc == 0) {
    step = "mdb_env_set_maxdbs";
    rc = mdb_env_set_maxdbs(env, DB_COUNT);
  }
  if (rc == 0) {
    /* NOSYNC: a commit writes, the keeper thread flushes every SYNC_INTERVAL_MS, so no fsync
     * ever runs on the loop. A killed daemon loses nothing (the kernel has every write); a
     * system crash can lose the last second, or damage the file, which the next start moves
     * aside (docs/architecture.md). NOTLS: one thread reads, with one reused transaction. */
    step = "mdb_env_open";
    rc = mdb_env_open(env, cache->dir, MDB_NOSYNC | MDB_NOTLS, 0600);
  }
  if (rc == 0 && truncated(cache, env)) {
    step = "the file is shorter than its last page";
    rc = TRUNCATED;
  }
  if (rc == 0) {
    int dead = 0;
    step = "mdb_reader_check";
    rc = mdb_reader_check(env, &dead);
    if (rc == 0 && dead > 0)
      log_warning("cache: cleared %d stale reader slot(s) left by a crashed process", dead);
  }
  if (rc == 0) {
    step = "mdb_txn_begin";
    rc = mdb_txn_begin(env, NULL, 0, &txn);
  }
  if (rc == 0) {
    rc = open_databases(cache, txn, &step);
    if (rc == 0) {
      step = "mdb_txn_commit";
      rc = mdb_txn_commit(txn); /* frees txn whatever it returns */
    } else {
      mdb_txn_abort(txn);
    }
  }
  if (rc == 0) {
    step = "mdb_txn_begin(read)";
    rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &cache->read_txn);
    if (rc == 0)
      mdb_txn_reset(cache->read_txn);
  }
  MDB_envinfo info;
  MDB_stat stat;
  if (rc == 0 && mdb_env_info(env, &info) == 0 && mdb_env_stat(env, &stat) == 0)
    cache->map_pages = info.me_mapsize / stat.ms_psize;
  if (rc != 0) {
    snprintf(err, err_len, "cache %s: %s: %s", cache->dir, step,
             rc == TRUNCATED ? "truncated" : mdb_strerror(rc));
    cache->last_open_rc = rc;
    if (cache->read_txn)
      mdb_txn_abort(cache->read_txn);
    cache->read_txn = NULL;
    if (env)
      mdb_env_close(env);
    return -1;
  }
  pthread_mutex_lock(&cache->lock);
  cache->env = env;
  pthread_mutex_unlock(&cache->lock);
  return 0;
}

/* The newest data.mdb.broken-* in the directory (by the time in its name), for /stats. */
static void find_set_aside(struct cache *cache) {
  DIR *listing = opendir(cache->dir);
  long long newest = -1;
  char name[256] = "";
  struct dirent *item;
  while (listing && (item = readdir(listing)) != NULL) {
    if (strncmp(item->d_name, BROKEN_PREFIX, sizeof(BROKEN_PREFIX) - 1) != 0)
      continue;
    long long when = strtoll(item->d_name + sizeof(BROKEN_PREFIX) - 1, NULL, 10);
    if (when > newest) {
      newest = when;
      snprintf(name, sizeof(name), "%s", item->d_name);
    }
  }
  if (listing)
    closedir(listing);
  pthread_mutex_lock(&cache->lock);
  if (name[0])
    snprintf(cache->set_aside, sizeof(cache->set_aside), "%s/%s", cache->dir, name);
  pthread_mutex_unlock(&cache->lock);
}

/* Renames data.mdb to data.mdb.broken-<time> (kept for a post-mortem: it holds personal data,
 * so it stays in the 0700 directory until an operator removes it, and only the newest is kept)
 * and drops the lock file. */
static void move_aside(struct cache *cache, const char *why) {
  char from[4200], to[4300];
  snprintf(from, sizeof(from), "%s/data.mdb", cache->dir);
  snprintf(to, sizeof(to), "%s/" BROKEN_PREFIX "%lld", cache->dir, (long long)time(NULL));
  if (rename(from, to) != 0 && errno != ENOENT) {
    log_error("cache: %s, and it cannot be moved aside (%s): removing it", why, strerror(errno));
    unlink(from);
  } else {
    log_warning("cache: %s; moved it aside to %s and starting with an empty cache", why, to);
    pthread_mutex_lock(&cache->lock);
    snprintf(cache->set_aside, sizeof(cache->set_aside), "%s", to);
    pthread_mutex_unlock(&cache->lock);
    wake_keeper_for_cleanup(cache);
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
  } else if (rc != 0 && cache->last_open_rc == TRUNCATED) {
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
  cache->reclaim_batch = CACHE_RECLAIM_BATCH;
  pthread_mutex_init(&cache->lock, NULL);
  pthread_cond_init(&cache->wake, NULL);
  cache->keeper_running = pthread_create(&cache->keeper, NULL, run_keeper, cache) == 0;
  if (!cache->keeper_running)
    log_warning("cache: no keeper thread: commits reach the disk when the kernel writes them");
  if (prepare_directory(dir, err, err_len) != 0 || open_or_rebuild(cache, err, err_len) != 0) {
    snprintf(cache->unavailable, sizeof(cache->unavailable), "%s", err);
    log_error("cache: %s; serving from the upstream only until it can be opened", err);
  }
  find_set_aside(cache);
  wake_keeper_for_cleanup(cache); /* what an earlier run left behind */
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
  if (cache->sweep_timer)
    event_free(cache->sweep_timer);
  if (cache->reclaim_timer)
    event_free(cache->reclaim_timer);
  if (cache->keeper_running) {
    pthread_mutex_lock(&cache->lock);
    cache->keeper_stop = true;
    pthread_cond_signal(&cache->wake);
    pthread_mutex_unlock(&cache->lock);
    pthread_join(cache->keeper, NULL);
  }
  if (cache->env)
    mdb_env_sync(cache->env, 1); /* at shutdown: what the keeper has not flushed yet */
  env_close(cache);
  pthread_cond_destroy(&cache->wake);
  pthread_mutex_destroy(&cache->lock);
  free(cache);
}

uint64_t cache_syncs(const struct cache *cache) {
  return (uint64_t)atomic_load(&cache->syncs);
}

const char *cache_set_aside_file(struct cache *cache) {
  struct stat st;
  /* Only the loop writes set_aside (the keeper reads it), so reading it here needs no lock. */
  if (!cache->set_aside[0] || stat(cache->set_aside, &st) != 0)
    return NULL;
  return cache->set_aside;
}

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
static uint64_t pages_in_use(struct cache *cache, MDB_txn *txn) {
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
static bool past_percent(const struct cache *cache, uint64_t pages, unsigned percent) {
  return pages * 100 > usable_pages(cache) * percent;
}

static void schedule_reclaim(struct cache *cache) {
  cache->reclaim_wanted = true;
  if (cache->reclaim_timer && !evtimer_pending(cache->reclaim_timer, NULL)) {
    struct timeval now = {0, 0};
    evtimer_add(cache->reclaim_timer, &now);
  }
}

/* Deletes the record at seq (whose value is `value`) with its id and expiry keys. */
static int remove_record(struct cache *cache, MDB_txn *txn, uint64_t seq, const MDB_val *value) {
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
    rc = remove_record(cache, txn, seq, &value);
  }
  *found = rc == 0;
  return rc;
}

/* Commits txn (or aborts it when rc is not 0); returns the first error. */
static int finish_txn(MDB_txn *txn, int rc) {
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
    *pages_after = pages_in_use(cache, txn);
    if (*pages_after > usable_pages(cache))
      rc = MDB_MAP_FULL; /* the reserve is the reclaimer's */
  }
  rc = finish_txn(txn, rc);
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
    schedule_reclaim(cache);
    snprintf(err, err_len, "the cache map is full; room is being made");
    return CACHE_SKIPPED_FULL;
  }
  if (rc != 0) {
    snprintf(err, err_len, "%s", mdb_strerror(rc));
    if (is_damage(rc))
      rebuild(cache, rc);
    return CACHE_PUT_FAILED;
  }
  if (past_percent(cache, pages, CACHE_HIGH_WATER_PERCENT))
    schedule_reclaim(cache);
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
    rc = finish_txn(txn, remove_entry(cache, txn, enrollment_id, found));
  if (rc != 0) {
    *found = false;
    snprintf(err, err_len, "delete: %s", mdb_strerror(rc));
    if (is_damage(rc))
      rebuild(cache, rc);
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
  env_close(cache);
  char from[4200], to[4300];
  snprintf(from, sizeof(from), "%s/data.mdb", cache->dir);
  snprintf(to, sizeof(to), "%s/" PURGED_PREFIX "%lld-%llu", cache->dir, (long long)time(NULL),
           (unsigned long long)++cache->purges);
  /* A rename, not an unlink: freeing a large file's blocks takes a while, so the keeper does it. */
  int renamed = rename(from, to) == 0 || errno == ENOENT ? 0 : errno;
  if (renamed == 0)
    wake_keeper_for_cleanup(cache);
  if (open_or_rebuild(cache, err, err_len) != 0)
    return -1;
  if (renamed != 0) {
    snprintf(err, err_len, "cannot set %s aside: %s", from, strerror(renamed));
    return -1;
  }
  return 0;
}

/* Positions cursor on its database's first key, deleting before it any key that is not key_len
 * long (not one of ours: nothing refers to it). MDB_NOTFOUND when the database is empty. */
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
      rc = remove_record(cache, txn, get_be64(seq_key), &record);
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
      rc = remove_record(cache, txn, get_be64(key.mv_data), &value);
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
    rebuild(cache, rc);
}

long cache_sweep_step(struct cache *cache, int64_t now, size_t max_entries, bool *pass_done) {
  *pass_done = false;
  if (!cache->env)
    return -1;
  MDB_txn *txn = NULL;
  size_t removed = 0;
  int rc = mdb_txn_begin(cache->env, NULL, 0, &txn);
  if (rc == 0)
    rc = finish_txn(txn, remove_expired(cache, txn, now, max_entries, &removed, pass_done));
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
    needed = past_percent(cache, pages_in_use(cache, cache->read_txn), CACHE_HIGH_WATER_PERCENT);
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
    pages = pages_in_use(cache, txn);
  rc = finish_txn(txn, rc);
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
  *done = empty || !past_percent(cache, pages, CACHE_LOW_WATER_PERCENT);
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
    schedule_reclaim(cache);
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
    schedule_reclaim(cache);
  return 0;
}

void cache_set_sweep_interval(struct cache *cache, unsigned sweep_interval) {
  cache->sweep_interval = sweep_interval;
}

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
  *bytes = pages_in_use(cache, cache->read_txn) * stat.ms_psize;
  mdb_txn_reset(cache->read_txn);
}
