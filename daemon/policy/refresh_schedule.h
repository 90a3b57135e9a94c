/* refresh_schedule: refresh-ahead's schedule (hot_*): which cached ids are hot, and when each is
 * due for its scheduled refresh. Pure: no I/O, no clock (times are passed in), fixed memory.
 *
 * Refresh-ahead's hit trigger (a hit past refresh_ahead of an entry's ttl) needs a hit in that
 * last stretch of the entry's life; an id asked for a few times a ttl often has none there, and
 * turns stale. The schedule covers it: an entry hit twice in its life (its "generation", named
 * by its fetched_at) is hot, and is refreshed at its due time (fresh_until less a lead) whether
 * or not a hit comes then. Once due, it leaves the table; the next hits on the new entry make it
 * hot again.
 *
 * Bounds: the first hit of a generation is remembered in a filter of HOT_FILTER_SLOTS 32-bit
 * fingerprints (two ids may share a slot: one then needs a third hit, or is taken for hot a hit
 * early: harmless either way); hot entries are at most HOT_MAX_IDS (about 72 bytes each); beyond,
 * a new hot entry is not scheduled (counted), and the hit trigger alone serves it. */
#ifndef FLIPCACHED_HOT_H
#define FLIPCACHED_HOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uuid.h"

#define HOT_MAX_IDS 65536
#define HOT_FILTER_SLOTS 131072 /* a power of two */

struct hot_table;

struct hot_table *hot_new(void);
void hot_free(struct hot_table *table);

enum hot_note {
  HOT_FIRST_HIT,  /* remembered in the filter only */
  HOT_SCHEDULED,  /* hot: due for a refresh at `due` */
  HOT_ALREADY,    /* hot and scheduled already (this generation) */
  HOT_FULL,       /* hot, but HOT_MAX_IDS are scheduled: not tracked */
};
/* A fresh hit on id's entry fetched at fetched_at, which is due for its refresh at due. */
enum hot_note hot_note_hit(struct hot_table *table, const char *enrollment_id, int64_t fetched_at,
                           int64_t due);
/* The earliest due time scheduled, or INT64_MAX when none is. */
int64_t hot_next_due(const struct hot_table *table);
/* Takes the earliest entry due at or before now out of the table: its id into id_out and the
 * generation it was scheduled for into *fetched_at; false when none is due. */
bool hot_pop_due(struct hot_table *table, int64_t now, char id_out[UUID_TEXT_LEN + 1],
                 int64_t *fetched_at);
/* Entries scheduled now. */
size_t hot_scheduled(const struct hot_table *table);

#endif
