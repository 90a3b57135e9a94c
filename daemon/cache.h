/* cache: the LMDB environment holding one record (record.h) per enrollment id.
 *
 * One environment per process, opened once (after any fork) in a directory created mode 0700 (the
 * bodies carry personal data). Reads run in one reused read transaction (reset/renew) and copy the
 * value out before it ends: LMDB's memory is never handed to a reply. Writes are one short write
 * transaction each. Keys are "e:" + the lower-case UUID.
 *
 * The map is bounded by max_size. A write that finds it full evicts (entries past their
 * stale_until first, then the oldest tenth by fetched_at) and retries, so a full map never fails a
 * request. Purges really remove the data: LMDB leaves a freed page's old bytes in the file until
 * the page is reused, so deleting one entry compacts the file, and purging all recreates it. */
#ifndef FLIPCACHED_CACHE_H
#define FLIPCACHED_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "record.h"

struct cache;
struct stats;

/* A record copied out of the cache, or borrowed from its map; release with
 * cache_entry_release. */
struct cache_entry {
  unsigned char *copy;        /* owned: the encoded value; NULL when borrowed */
  size_t copy_len;
  struct cache_record record; /* record.body points into copy, or into LMDB's map */
  struct cache *lender;       /* set while borrowed: its read transaction is open */
};

enum cache_lookup { CACHE_FOUND, CACHE_ABSENT, CACHE_ERROR };

/* Creates dir (0700) if missing, tightens it to 0700 if looser, and opens the environment with
 * map size max_size. A data.mdb that is damaged, truncated, or written in another format (the
 * "format" file beside it) is moved aside to data.mdb.broken-<time> with a log line, and an empty
 * cache starts. When the cache cannot be opened at all (a read-only or failing disk), the cache
 * is returned unavailable: lookups find nothing, writes are refused, and the daemon serves from
 * the upstream. stats must outlive the cache. NULL only when out of memory. */
struct cache *cache_open(const char *dir, uint64_t max_size, struct stats *stats, char *err,
                         size_t err_len);
/* NULL while the cache is open; else why it is not. */
const char *cache_unavailable(const struct cache *cache);
/* Tries to open an unavailable cache again (from a timer). 0 when it is open. */
int cache_try_reopen(struct cache *cache);
/* Flushes and closes. Accepts NULL. */
void cache_close(struct cache *cache);

/* Looks up enrollment_id. CACHE_FOUND fills entry. A record that does not decode is CACHE_ABSENT
 * (and logged): it will be overwritten by the next fetch. */
enum cache_lookup cache_get(struct cache *cache, const char *enrollment_id,
                            struct cache_entry *entry);
void cache_entry_release(struct cache_entry *entry);
/* The hit path's lookup: like cache_get, but the record is not copied; it points into the
 * mapped file and stays valid only until cache_entry_release, which must come before any other
 * call on this cache (the one reused read transaction stays open until then). */
enum cache_lookup cache_get_borrowed(struct cache *cache, const char *enrollment_id,
                                     struct cache_entry *entry);

/* Stores record under enrollment_id, replacing any older one, evicting when the map is full.
 * now is the wall clock, for choosing what to evict. 0, or -1 with err set. */
int cache_put(struct cache *cache, const char *enrollment_id, const struct cache_record *record,
              int64_t now, char *err, size_t err_len);

/* Deletes one entry and compacts the file so that its bytes are gone. *found says whether it
 * existed. 0, or -1 with err set. */
int cache_delete(struct cache *cache, const char *enrollment_id, bool *found, char *err,
                 size_t err_len);
/* Removes every entry by recreating the environment. *removed: how many there were. */
int cache_purge_all(struct cache *cache, uint64_t *removed, char *err, size_t err_len);

/* One step of the sweeper: looks at up to max_entries entries from where the last step stopped
 * and deletes those past stale_until, in one short write transaction. Returns how many it deleted
 * (-1 on error); *pass_done is set when the step reached the end of the keys. */
long cache_sweep_step(struct cache *cache, int64_t now, size_t max_entries, bool *pass_done);

/* Entries stored and bytes of the map in use. */
void cache_usage(struct cache *cache, uint64_t *entries, uint64_t *bytes);
/* Times the syncer thread flushed the committed writes to disk (every second while open). */
uint64_t cache_syncs(const struct cache *cache);

#endif
