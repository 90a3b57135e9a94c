/* refresh_schedule: refresh-ahead's prediction and schedule (hot_*): how often each id is asked,
 * which cached entries will be asked again before they would expire (so are worth refreshing),
 * when each is due, and whether a refresh was asked for afterwards. Pure: no I/O, no clock (times
 * are passed in), fixed memory.
 *
 * The rule. Every request for an id adds one to its decayed count: a count-min sketch of
 * HOT_SKETCH_ROWS x HOT_SKETCH_COLUMNS cells, each a float decayed by exp(-dt / horizon) when it
 * is next touched (no scan ever), raised conservatively (only as far as the id's new least). The
 * id's rate is the least of its cells over the time the
 * sketch has counted (horizon x (1 - exp(-age / horizon)), so a young daemon is not taken for a
 * quiet one); collisions only ever add to it. An entry is worth refreshing when it is expected
 * to be asked HOT_EXPECTED_REQUESTS times or more in its next ttl (rate x ttl): a steady id asked
 * that often asks for its refresh with probability 1 - e^-3 = 95%; one asked less is left to
 * expire and is then served as without refresh-ahead (stale-while-revalidate, or a miss), which
 * costs one fetch a ttl plus the wait for its next request instead of one a ttl less the lead.
 *
 * The schedule. A fresh hit on an entry worth refreshing puts it in a table of at most
 * HOT_MAX_IDS entries, with a binary heap by due time (fresh_until less the lead). At its due
 * time (hot_pop_due, HOT_DUE_DECIDE) the caller asks the rule again and, if the entry is still
 * worth it and the cache still holds that generation (named by fetched_at), refreshes it and
 * tells the table (hot_refresh_started). The first fresh hit on a newer generation counts the
 * refresh as used, and schedules that generation in turn if it is worth it (a hit at or past an
 * entry's due time may start the refresh itself, and tell the table the same way); a refresh that
 * no request came for before the refreshed generation expired (HOT_DUE_CHECK) counts as unused.
 * A refreshed generation no hit has come for by its own due time is not refreshed again: it
 * stays in the table only for that check, and a hit before it expires schedules it again (its
 * due time past, the hit starts the refresh itself).
 *
 * Bounds: the sketch is HOT_SKETCH_ROWS x HOT_SKETCH_COLUMNS x 8 bytes (2 MiB); the table
 * HOT_MAX_IDS x 64 bytes plus its index and heap (about 5 MiB); beyond, a new entry is not
 * scheduled (HOT_FULL, counted), and refresh-ahead's hit trigger alone serves it. */
#ifndef FLIPCACHED_HOT_H
#define FLIPCACHED_HOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uuid.h"

#define HOT_MAX_IDS 65536
#define HOT_SKETCH_ROWS 4
#define HOT_SKETCH_COLUMNS 65536 /* a power of two, at most 65536 (16 bits of hash a row) */
/* An entry is refreshed before it expires when at least this many requests are expected in
 * its next ttl. */
#define HOT_EXPECTED_REQUESTS 3.0
/* The rate's horizon, in ttls: long enough that an id asked 3 times a ttl has 12 requests in
 * its count (the estimate's spread about 20%), short enough to follow a day's changes. */
#define HOT_HORIZON_TTLS 4

struct hot_table;

/* horizon_ms: the decay's time constant (HOT_HORIZON_TTLS x the configured ttl in the daemon);
 * now_ms: the time the counting starts. NULL when out of memory. */
struct hot_table *hot_new(int64_t horizon_ms, int64_t now_ms);
void hot_free(struct hot_table *table);

/* A request for id at now_ms (times never go back): counted; returns the id's rate, in requests a
 * second, this one included. */
double hot_note_request(struct hot_table *table, const char *enrollment_id, int64_t now_ms);
/* The id's rate at now_ms without counting a request. */
double hot_rate(const struct hot_table *table, const char *enrollment_id, int64_t now_ms);
/* The rule: true when an entry of this ttl, for an id asked at rate, is worth refreshing. */
bool hot_worth_refreshing(double rate, int64_t ttl_seconds);

enum hot_note {
  HOT_COLD,      /* not worth refreshing: not scheduled */
  HOT_SCHEDULED, /* scheduled now: due for its decision at `due` */
  HOT_ALREADY,   /* scheduled already, this generation */
  HOT_REFRESHING, /* a refresh of this generation, or of a newer one, is started */
  HOT_FULL,      /* worth it, but HOT_MAX_IDS are held: not tracked */
};
/* A fresh hit on id's entry fetched at fetched_at, due for its refresh at due; worth says whether
 * the rule holds it worth refreshing. *refresh_used is set when this is the first hit on the
 * generation a refresh brought (one count per refresh). */
enum hot_note hot_note_hit(struct hot_table *table, const char *enrollment_id, bool worth,
                           int64_t fetched_at, int64_t due, bool *refresh_used);

enum hot_due {
  HOT_DUE_DECIDE, /* a scheduled entry's due time: refresh it now if it is still worth it */
  HOT_DUE_CHECK,  /* a refresh's generation expired with no hit on it: unused, if
                     the refresh brought one (the cache holds a generation newer than `fetched_at`) */
};
/* Takes the earliest entry due at or before now out of the table: its id into id_out, the
 * generation it names into *fetched_at and why it is due into *why; false when none is due. */
bool hot_pop_due(struct hot_table *table, int64_t now, char id_out[UUID_TEXT_LEN + 1],
                 int64_t *fetched_at, enum hot_due *why);
/* A refresh of the generation fetched_at was started: its result is checked for use at check_at
 * (HOT_DUE_CHECK; the daemon passes the refreshed generation's expiry), unless a hit on a newer
 * generation comes first. false when the table is full. */
bool hot_refresh_started(struct hot_table *table, const char *enrollment_id, int64_t fetched_at,
                         int64_t check_at);
/* The earliest due time held, or INT64_MAX when none is. */
int64_t hot_next_due(const struct hot_table *table);
/* Entries held now (scheduled, or awaiting the use of their refresh). */
size_t hot_scheduled(const struct hot_table *table);

#endif
