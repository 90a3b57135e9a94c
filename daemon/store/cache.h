/* cache: the LMDB environment holding one record (record.h) per enrollment id, and the upkeep
 * that keeps it within its map: the sweeper (entries past every window) and the reclaimer (room
 * made before the map is full).
 *
 * Layout (format 2, three named databases in one environment):
 *   "records" seq (8 bytes, big-endian) -> the 36-character id, then the encoded record. seq grows
 *             with every write, so the records lie in the order they were stored (the order of
 *             fetched_at) and each write appends at the end of the tree (MDB_APPEND: full pages).
 *   "ids"     the 36-character lower-case id -> its record's seq. Lookups go through it.
 *   "expiry"  stale_until (8 bytes, big-endian) + seq -> nothing. The entries past every window
 *             are a prefix of it.
 * All three change together in one write transaction per write, so they always agree.
 *
 * One environment per process, opened once (after any fork) in a directory created mode 0700 (the
 * bodies carry personal data). Reads run in one reused read transaction (reset/renew): cache_get
 * copies the record out; cache_get_borrowed hands out a pointer into the map, valid until
 * cache_entry_release, for the hit path to copy straight into the reply. Every write is one short
 * write transaction, whatever the size of the cache: nothing here scans or sorts every entry.
 *
 * Room: past CACHE_HIGH_WATER_PERCENT of the usable pages in use, the reclaimer removes entries in
 * batches of at most CACHE_RECLAIM_BATCH, each its own write transaction run from the loop
 * between requests, until CACHE_LOW_WATER_PERCENT: first those past every window, then the
 * oldest. A write that still finds the map full, or that would eat into the reserve (kept for
 * the reclaimer, whose deletes copy pages too, and for pages LMDB cannot reuse yet), is skipped
 * (counted in cache_full_skips) and room is made right after; the file is never recreated for
 * being full.
 *
 * Durability: commits write (MDB_NOSYNC); the cache's keeper thread flushes them to disk every
 * second (fdatasync on its own descriptor of the file, so the loop never waits for a flush), and
 * cache_close flushes at shutdown. The keeper also deletes the files a purge or a damaged start
 * leaves behind, off the loop.
 *
 * Deleting: one entry is one short transaction. Its pages go back to LMDB's freelist and their
 * old bytes stay in the file until LMDB reuses the pages, as a filesystem reuses freed blocks.
 * A full purge starts a new, empty file: the old one's content is removed with it. */
#ifndef FLIPCACHED_CACHE_H
#define FLIPCACHED_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "record.h"

/* The map's pages less a reserve (CACHE_RESERVE_PERCENT, at least CACHE_RESERVE_MIN_PAGES) are
 * the usable pages; the marks are shares of them. */
#define CACHE_RESERVE_PERCENT 2     /* of the map's pages, never filled by writes */
#define CACHE_RESERVE_MIN_PAGES 32
#define CACHE_HIGH_WATER_PERCENT 90 /* of the usable pages in use: the reclaimer starts */
#define CACHE_LOW_WATER_PERCENT 80  /* the reclaimer stops */
#define CACHE_RECLAIM_BATCH 64      /* entries removed per reclaimer transaction, at most */
#define CACHE_SWEEP_BATCH 256       /* entries removed per sweeper transaction, at most */

struct cache;
struct stats;
struct event_base;

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
 * cache starts; only the newest such file is kept (the keeper deletes older ones). When the cache
 * cannot be opened at all (a read-only or failing disk), the cache is returned unavailable:
 * lookups find nothing, writes are refused, and the daemon serves from the upstream. stats must
 * outlive the cache. NULL only when out of memory. */
struct cache *cache_open(const char *dir, uint64_t max_size, struct stats *stats, char *err,
                         size_t err_len);
/* Runs the sweeper (a pass every sweep_interval seconds) and the reclaimer on base's loop; also
 * tries to reopen an unavailable cache at each sweep. Without it (tools, unit tests) nothing
 * happens between calls: cache_sweep_step and cache_reclaim_step are called by hand. 0 or -1. */
int cache_start_upkeep(struct cache *cache, struct event_base *base, unsigned sweep_interval);
void cache_set_sweep_interval(struct cache *cache, unsigned sweep_interval);
/* NULL while the cache is open; else why it is not. */
const char *cache_unavailable(const struct cache *cache);
/* Tries to open an unavailable cache again. 0 when it is open. */
int cache_try_reopen(struct cache *cache);
/* Stops the upkeep and the keeper, flushes (the one fsync on the loop's thread) and closes.
 * Accepts NULL. */
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

/* One listed entry: its id and record (the body is not to be read: it is not the page's concern).
 * Valid during the call only; fn must not call the cache. */
typedef void (*cache_list_fn)(const char *enrollment_id, const struct cache_record *record,
                              size_t record_bytes, void *arg);
/* A page of entries in id order: fn for at most limit of them, the first after `after` ("": from
 * the first id), in one read transaction. A page costs what its entries cost (a cursor seek and
 * one read each), whatever the size of the cache. Returns how many were listed, with *more set
 * when entries follow; -1 when the cache is unavailable or failed. */
long cache_list(struct cache *cache, const char *after, size_t limit, cache_list_fn fn, void *arg,
                bool *more);

enum cache_put_result {
  CACHE_STORED,
  CACHE_SKIPPED_FULL, /* the map was full: not stored, counted, and room is being made */
  CACHE_PUT_FAILED,   /* err says why */
};
/* Stores record under enrollment_id, replacing any older one, in one write transaction. */
enum cache_put_result cache_put(struct cache *cache, const char *enrollment_id,
                                const struct cache_record *record, char *err, size_t err_len);

/* Deletes one entry in one short write transaction. *found says whether it existed. 0, or -1
 * with err set. */
int cache_delete(struct cache *cache, const char *enrollment_id, bool *found, char *err,
                 size_t err_len);
/* Removes every entry: the environment is closed, its file renamed for the keeper to delete, and
 * a new empty one opened; no step grows with the size of the cache. *removed: how many there
 * were. 0, or -1 with err set. */
int cache_purge_all(struct cache *cache, uint64_t *removed, char *err, size_t err_len);
/* Deletes and purges so far (cache_delete and cache_purge_all, found or not): one who holds
 * entries to store compares it with its value when they were fetched (the warm-up). */
uint64_t cache_deletes(const struct cache *cache);

/* One step of the sweeper: deletes up to max_entries entries past stale_until at `now`, oldest
 * stale_until first, in one write transaction. Returns how many (-1 on error); *pass_done is set
 * when no entry past stale_until is left. */
long cache_sweep_step(struct cache *cache, int64_t now, size_t max_entries, bool *pass_done);
/* Whether the map's pages in use are past the high-water mark (or a write found it full) and the
 * reclaimer has work. */
bool cache_needs_room(struct cache *cache);
/* One step of the reclaimer: deletes up to max_entries entries, first those past stale_until at
 * `now`, then the oldest stored, in one write transaction. Returns how many (-1 on error); *done
 * is set once the pages in use are at or below the low-water mark. A step that itself finds the
 * map full halves the next step's batch. */
long cache_reclaim_step(struct cache *cache, int64_t now, size_t max_entries, bool *done);

/* Entries stored and bytes of the map in use (the pages of every tree). Constant time. */
void cache_usage(struct cache *cache, uint64_t *entries, uint64_t *bytes);
/* Times the keeper thread flushed the committed writes to disk (every second while open). */
uint64_t cache_syncs(const struct cache *cache);
/* The damaged file kept for a post-mortem when it still exists, else NULL. */
const char *cache_set_aside_file(struct cache *cache);

#endif
