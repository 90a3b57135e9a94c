#include "cache.h"

#include <errno.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "route.h"

#define KEY_PREFIX "e:"
#define KEY_LEN (sizeof(KEY_PREFIX) - 1 + UUID_TEXT_LEN)

struct cache {
  MDB_env *env;
  MDB_dbi dbi;
  MDB_txn *read_txn; /* reused: reset after each read, renewed before the next */
};

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

struct cache *cache_open(const char *dir, uint64_t max_size, char *err, size_t err_len) {
  if (prepare_directory(dir, err, err_len) != 0)
    return NULL;
  struct cache *cache = calloc(1, sizeof(*cache));
  if (!cache) {
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  const char *step = "mdb_env_create";
  int rc = mdb_env_create(&cache->env);
  if (rc == 0) {
    step = "mdb_env_set_mapsize";
    rc = mdb_env_set_mapsize(cache->env, (size_t)max_size);
  }
  if (rc == 0) {
    /* NOMETASYNC: a commit syncs the data but not the meta page; a system crash can lose the last
     * commit, never the file's integrity (docs/architecture.md). NOTLS: one thread, reused txn. */
    step = "mdb_env_open";
    rc = mdb_env_open(cache->env, dir, MDB_NOMETASYNC | MDB_NOTLS, 0600);
  }
  if (rc == 0) {
    int dead = 0;
    step = "mdb_reader_check";
    rc = mdb_reader_check(cache->env, &dead);
    if (rc == 0 && dead > 0)
      log_warning("cache: cleared %d stale reader slot(s) left by a crashed process", dead);
  }
  MDB_txn *txn = NULL;
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
    snprintf(err, err_len, "cache %s: %s: %s", dir, step, mdb_strerror(rc));
    cache_close(cache);
    return NULL;
  }
  return cache;
}

void cache_close(struct cache *cache) {
  if (!cache)
    return;
  if (cache->read_txn)
    mdb_txn_abort(cache->read_txn);
  if (cache->env) {
    mdb_env_sync(cache->env, 1);
    mdb_env_close(cache->env);
  }
  free(cache);
}

enum cache_lookup cache_get(struct cache *cache, const char *enrollment_id,
                            struct cache_entry *entry) {
  memset(entry, 0, sizeof(*entry));
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
    /* Copy out before the transaction ends: the mapped page may be reused after the reset. */
    entry->copy = malloc(value.mv_size ? value.mv_size : 1);
    if (!entry->copy) {
      result = CACHE_ERROR;
    } else {
      memcpy(entry->copy, value.mv_data, value.mv_size);
      enum record_decode_result decoded = record_decode(entry->copy, value.mv_size, &entry->record);
      if (decoded == RECORD_OK) {
        result = CACHE_FOUND;
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
  return result;
}

void cache_entry_release(struct cache_entry *entry) {
  if (!entry)
    return;
  free(entry->copy);
  memset(entry, 0, sizeof(*entry));
}

int cache_put(struct cache *cache, const char *enrollment_id, const struct cache_record *record,
              char *err, size_t err_len) {
  char key_bytes[KEY_LEN];
  make_key(enrollment_id, key_bytes);
  MDB_val key = {.mv_size = KEY_LEN, .mv_data = key_bytes};
  MDB_val value = {.mv_size = record_encoded_len(record)};
  MDB_txn *txn = NULL;
  int rc = mdb_txn_begin(cache->env, NULL, 0, &txn);
  if (rc != 0) {
    snprintf(err, err_len, "mdb_txn_begin: %s", mdb_strerror(rc));
    return -1;
  }
  /* MDB_RESERVE: LMDB hands out the space and the record is encoded straight into it. */
  rc = mdb_put(txn, cache->dbi, &key, &value, MDB_RESERVE);
  if (rc != 0) {
    mdb_txn_abort(txn);
    snprintf(err, err_len, "mdb_put: %s", mdb_strerror(rc));
    return -1;
  }
  record_encode(record, value.mv_data);
  rc = mdb_txn_commit(txn); /* frees txn whatever it returns: never abort after this */
  if (rc != 0) {
    snprintf(err, err_len, "mdb_txn_commit: %s", mdb_strerror(rc));
    return -1;
  }
  return 0;
}

void cache_usage(struct cache *cache, uint64_t *entries, uint64_t *bytes) {
  MDB_stat stat;
  MDB_envinfo info;
  *entries = 0;
  *bytes = 0;
  if (mdb_env_stat(cache->env, &stat) == 0 && mdb_env_info(cache->env, &info) == 0) {
    *entries = stat.ms_entries;
    *bytes = (uint64_t)(info.me_last_pgno + 1) * stat.ms_psize;
  }
}
