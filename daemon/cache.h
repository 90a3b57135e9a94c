/* cache: the LMDB environment holding one record (record.h) per enrollment id.
 *
 * One environment per process, opened once (after any fork) in a directory created mode 0700 (the
 * bodies carry personal data). Reads run in one reused read transaction (reset/renew) and copy the
 * value out before it ends: LMDB's memory is never handed to a reply. Writes are one short write
 * transaction each. Keys are "e:" + the lower-case UUID. */
#ifndef FLIPCACHED_CACHE_H
#define FLIPCACHED_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "record.h"

struct cache;

/* A record copied out of the cache; release with cache_entry_release. */
struct cache_entry {
  unsigned char *copy;        /* owned: the encoded value */
  struct cache_record record; /* record.body points into copy */
};

enum cache_lookup { CACHE_FOUND, CACHE_ABSENT, CACHE_ERROR };

/* Creates dir (0700) if missing, tightens it to 0700 if looser, and opens the environment with
 * map size max_size. Returns NULL with err set. */
struct cache *cache_open(const char *dir, uint64_t max_size, char *err, size_t err_len);
/* Flushes and closes. Accepts NULL. */
void cache_close(struct cache *cache);

/* Looks up enrollment_id. CACHE_FOUND fills entry. A record that does not decode is CACHE_ABSENT
 * (and logged): it will be overwritten by the next fetch. */
enum cache_lookup cache_get(struct cache *cache, const char *enrollment_id,
                            struct cache_entry *entry);
void cache_entry_release(struct cache_entry *entry);

/* Stores record under enrollment_id, replacing any older one. 0, or -1 with err set. */
int cache_put(struct cache *cache, const char *enrollment_id, const struct cache_record *record,
              char *err, size_t err_len);

/* Entries stored and bytes of the map in use. */
void cache_usage(struct cache *cache, uint64_t *entries, uint64_t *bytes);

#endif
