/* cache: the LMDB environment (cache.h): opening it (or rebuilding a damaged one), closing it,
 * and the keeper thread that flushes its writes and deletes purged files. Reads and writes are
 * cache_entries.c, the sweeper and the reclaimer cache_evict.c. */
#include <dirent.h>
#include <pthread.h>
#include <sys/stat.h>
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
void cache_wake_keeper(struct cache *cache) {
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
void cache_env_close(struct cache *cache) {
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
    cache_wake_keeper(cache);
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
int cache_open_or_rebuild(struct cache *cache, char *err, size_t err_len) {
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
  if (prepare_directory(dir, err, err_len) != 0 || cache_open_or_rebuild(cache, err, err_len) != 0) {
    snprintf(cache->unavailable, sizeof(cache->unavailable), "%s", err);
    log_error("cache: %s; serving from the upstream only until it can be opened", err);
  }
  find_set_aside(cache);
  cache_wake_keeper(cache); /* what an earlier run left behind */
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
      cache_open_or_rebuild(cache, err, sizeof(err)) != 0)
    return -1;
  log_info("cache: %s is open again", cache->dir);
  return 0;
}

/* Damage found while running: the environment is closed, the file moved aside, a new one
 * opened. The request at hand goes on as a miss. */
void cache_rebuild(struct cache *cache, int rc) {
  char why[128], err[256];
  snprintf(why, sizeof(why), "data.mdb is damaged (%s)", mdb_strerror(rc));
  cache_env_close(cache);
  move_aside(cache, why);
  if (cache_open_or_rebuild(cache, err, sizeof(err)) != 0)
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
  cache_env_close(cache);
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
