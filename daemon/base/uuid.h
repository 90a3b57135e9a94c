/* uuid: an enrollment id's text: the canonical 8-4-4-4-12 form and the one hash of the tables
 * keyed by it. Pure. */
#ifndef FLIPCACHED_UUID_H
#define FLIPCACHED_UUID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UUID_TEXT_LEN 36 /* 8-4-4-4-12 hex digits and dashes */

/* Writes the canonical (lower-case) form of the UUID in text[0..len) to out and returns true, or
 * returns false when it is not exactly 8-4-4-4-12 hex digits. out needs UUID_TEXT_LEN + 1 bytes. */
bool uuid_canonicalize(const char *text, size_t len, char *out);
/* FNV-1a of a canonical id's UUID_TEXT_LEN characters: the one hash of the tables keyed by
 * enrollment id (inflight.c, refresh_schedule.c). */
uint32_t uuid_hash(const char *canonical_id);

#endif
