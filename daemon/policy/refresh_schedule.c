#include "refresh_schedule.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define INDEX_SLOTS (2 * HOT_MAX_IDS) /* a power of two, at most half full */
#define NO_SLOT UINT32_MAX

/* A scheduled entry (HOT_DUE_DECIDE at due for the generation fetched_at), or one whose refresh
 * of the generation fetched_at awaits a hit on a newer one (HOT_DUE_CHECK at due). */
struct hot_entry {
  char id[UUID_TEXT_LEN + 1];
  bool refreshed;
  int64_t fetched_at;
  int64_t due;
  uint32_t heap_pos;
};

/* A sketch cell: the decayed count as of `stamp` (tenths of a second since the sketch began:
 * 13 years fit in 32 bits). */
struct hot_cell {
  float count;
  uint32_t stamp;
};

struct hot_table {
  struct hot_cell sketch[HOT_SKETCH_ROWS][HOT_SKETCH_COLUMNS];
  int64_t started_ms;
  double horizon_s;
  struct hot_entry entries[HOT_MAX_IDS];
  uint32_t free_list[HOT_MAX_IDS];   /* entry indexes not in use */
  uint32_t free_count;
  uint32_t index[INDEX_SLOTS];       /* open addressing by id: entry index, NO_SLOT when empty */
  uint32_t heap[HOT_MAX_IDS];        /* entry indexes, a binary min-heap by due */
  uint32_t heap_len;
};

struct hot_table *hot_new(int64_t horizon_ms, int64_t now_ms) {
  struct hot_table *table = calloc(1, sizeof(*table));
  if (!table)
    return NULL;
  table->started_ms = now_ms;
  table->horizon_s = (double)(horizon_ms > 0 ? horizon_ms : 1) / 1000.0;
  memset(table->index, 0xff, sizeof(table->index));
  for (uint32_t i = 0; i < HOT_MAX_IDS; i++)
    table->free_list[i] = HOT_MAX_IDS - 1 - i;
  table->free_count = HOT_MAX_IDS;
  return table;
}

void hot_free(struct hot_table *table) { free(table); }

/* --- the rate: a count-min sketch of decayed counts --- */

/* The id's cell in each row: 16 bits each of a 64-bit FNV-1a of its text (uuid_hash is 32). */
static void cells_of(const char *id, uint32_t columns[HOT_SKETCH_ROWS]) {
  uint64_t hash = 14695981039346656037ull;
  for (size_t i = 0; i < UUID_TEXT_LEN; i++)
    hash = (hash ^ (unsigned char)id[i]) * 1099511628211ull;
  hash ^= hash >> 29; /* FNV's low bits mix poorly on their own */
  hash *= 0xbf58476d1ce4e5b9ull;
  hash ^= hash >> 32;
  for (int row = 0; row < HOT_SKETCH_ROWS; row++)
    columns[row] = (uint32_t)(hash >> (16 * row)) & (HOT_SKETCH_COLUMNS - 1);
}

static uint32_t stamp_of(const struct hot_table *table, int64_t now_ms) {
  int64_t tenths = (now_ms - table->started_ms) / 100;
  return tenths < 0 ? 0 : (uint32_t)tenths;
}

static double decayed(const struct hot_table *table, const struct hot_cell *cell, uint32_t now) {
  if (cell->count == 0.0f || now <= cell->stamp)
    return cell->count;
  return cell->count * exp(-(double)(now - cell->stamp) / (10.0 * table->horizon_s));
}

/* The least count over the id's cells, per second of the time counted. */
static double rate_of(const struct hot_table *table, double least, int64_t now_ms) {
  double age_s = (double)(now_ms - table->started_ms) / 1000.0;
  double counted_s = table->horizon_s * -expm1(-(age_s > 0.1 ? age_s : 0.1) / table->horizon_s);
  return least / counted_s;
}

/* The id's cells (into columns), each one's count decayed to now (into counts), and the least
 * of them: the id's count, never below its own requests, raised only by collisions. */
static double least_count(const struct hot_table *table, const char *enrollment_id, uint32_t now,
                          uint32_t columns[HOT_SKETCH_ROWS], double counts[HOT_SKETCH_ROWS]) {
  cells_of(enrollment_id, columns);
  double least = INFINITY;
  for (int row = 0; row < HOT_SKETCH_ROWS; row++) {
    counts[row] = decayed(table, &table->sketch[row][columns[row]], now);
    if (counts[row] < least)
      least = counts[row];
  }
  return least;
}

/* Conservative update: a cell is raised only as far as the id's new least count, so a cell the
 * id shares with busier ids is not inflated further; the least is still never below the id's
 * own decayed count. */
double hot_note_request(struct hot_table *table, const char *enrollment_id, int64_t now_ms) {
  uint32_t columns[HOT_SKETCH_ROWS], now = stamp_of(table, now_ms);
  double counts[HOT_SKETCH_ROWS];
  double least = least_count(table, enrollment_id, now, columns, counts) + 1.0;
  for (int row = 0; row < HOT_SKETCH_ROWS; row++) {
    struct hot_cell *cell = &table->sketch[row][columns[row]];
    cell->count = (float)(counts[row] > least ? counts[row] : least);
    cell->stamp = now;
  }
  return rate_of(table, least, now_ms);
}

double hot_rate(const struct hot_table *table, const char *enrollment_id, int64_t now_ms) {
  uint32_t columns[HOT_SKETCH_ROWS];
  double counts[HOT_SKETCH_ROWS];
  return rate_of(table, least_count(table, enrollment_id, stamp_of(table, now_ms), columns, counts),
                 now_ms);
}

bool hot_worth_refreshing(double rate, int64_t ttl_seconds) {
  return ttl_seconds > 0 && rate * (double)ttl_seconds >= HOT_EXPECTED_REQUESTS;
}

/* --- the heap, by due time --- */

static bool earlier(const struct hot_table *table, uint32_t a, uint32_t b) {
  return table->entries[table->heap[a]].due < table->entries[table->heap[b]].due;
}

static void heap_swap(struct hot_table *table, uint32_t a, uint32_t b) {
  uint32_t entry = table->heap[a];
  table->heap[a] = table->heap[b];
  table->heap[b] = entry;
  table->entries[table->heap[a]].heap_pos = a;
  table->entries[table->heap[b]].heap_pos = b;
}

static void sift_up(struct hot_table *table, uint32_t pos) {
  while (pos > 0 && earlier(table, pos, (pos - 1) / 2)) {
    heap_swap(table, pos, (pos - 1) / 2);
    pos = (pos - 1) / 2;
  }
}

static void sift_down(struct hot_table *table, uint32_t pos) {
  for (;;) {
    uint32_t first = pos, left = 2 * pos + 1, right = 2 * pos + 2;
    if (left < table->heap_len && earlier(table, left, first))
      first = left;
    if (right < table->heap_len && earlier(table, right, first))
      first = right;
    if (first == pos)
      return;
    heap_swap(table, pos, first);
    pos = first;
  }
}

/* --- the index, by id (linear probing, deletion by backward shift) --- */

static uint32_t *find_slot(struct hot_table *table, const char *id) {
  uint32_t slot = uuid_hash(id) & (INDEX_SLOTS - 1);
  while (table->index[slot] != NO_SLOT &&
         memcmp(table->entries[table->index[slot]].id, id, UUID_TEXT_LEN) != 0)
    slot = (slot + 1) & (INDEX_SLOTS - 1);
  return &table->index[slot];
}

static void remove_from_index(struct hot_table *table, const char *id) {
  uint32_t hole = (uint32_t)(find_slot(table, id) - table->index);
  table->index[hole] = NO_SLOT;
  /* Moves back each later entry of the run that its home slot allows, so that no probe stops
   * at the hole before reaching it. */
  for (uint32_t slot = (hole + 1) & (INDEX_SLOTS - 1); table->index[slot] != NO_SLOT;
       slot = (slot + 1) & (INDEX_SLOTS - 1)) {
    uint32_t home = uuid_hash(table->entries[table->index[slot]].id) & (INDEX_SLOTS - 1);
    bool movable = hole <= slot ? (home <= hole || home > slot) : (home <= hole && home > slot);
    if (movable) {
      table->index[hole] = table->index[slot];
      table->index[slot] = NO_SLOT;
      hole = slot;
    }
  }
}

/* Holds a new entry for id (not held): NULL when the table is full. */
static struct hot_entry *hold(struct hot_table *table, uint32_t *slot, const char *id,
                              bool refreshed, int64_t fetched_at, int64_t due) {
  if (table->free_count == 0)
    return NULL;
  uint32_t index = table->free_list[--table->free_count];
  struct hot_entry *entry = &table->entries[index];
  memcpy(entry->id, id, UUID_TEXT_LEN);
  entry->id[UUID_TEXT_LEN] = '\0';
  entry->refreshed = refreshed;
  entry->fetched_at = fetched_at;
  entry->due = due;
  entry->heap_pos = table->heap_len;
  table->heap[table->heap_len++] = index;
  sift_up(table, entry->heap_pos);
  *slot = index;
  return entry;
}

static void reschedule(struct hot_table *table, struct hot_entry *entry, bool refreshed,
                       int64_t fetched_at, int64_t due) {
  entry->refreshed = refreshed;
  entry->fetched_at = fetched_at;
  entry->due = due;
  sift_up(table, entry->heap_pos);
  sift_down(table, entry->heap_pos);
}

/* Takes the entry at heap position pos out of the heap, the index and the table. */
static void release(struct hot_table *table, uint32_t pos) {
  uint32_t index = table->heap[pos];
  struct hot_entry *entry = &table->entries[index];
  heap_swap(table, pos, table->heap_len - 1);
  table->heap_len--;
  if (pos < table->heap_len) {
    sift_up(table, pos);
    sift_down(table, pos);
  }
  remove_from_index(table, entry->id);
  table->free_list[table->free_count++] = index;
}

enum hot_note hot_note_hit(struct hot_table *table, const char *enrollment_id, bool worth,
                           int64_t fetched_at, int64_t due, bool *refresh_used) {
  *refresh_used = false;
  uint32_t *slot = find_slot(table, enrollment_id);
  if (*slot == NO_SLOT) {
    if (!worth)
      return HOT_COLD;
    return hold(table, slot, enrollment_id, false, fetched_at, due) ? HOT_SCHEDULED : HOT_FULL;
  }
  struct hot_entry *entry = &table->entries[*slot];
  if (fetched_at <= entry->fetched_at) /* the generation held, or an older copy still being read */
    return entry->refreshed ? HOT_REFRESHING : HOT_ALREADY;
  /* A newer generation: the one a refresh brought (used, then), or another fetch's. */
  *refresh_used = entry->refreshed;
  if (!worth) {
    release(table, entry->heap_pos);
    return HOT_COLD;
  }
  reschedule(table, entry, false, fetched_at, due);
  return HOT_SCHEDULED;
}

int64_t hot_next_due(const struct hot_table *table) {
  return table->heap_len ? table->entries[table->heap[0]].due : INT64_MAX;
}

bool hot_pop_due(struct hot_table *table, int64_t now, char id_out[UUID_TEXT_LEN + 1],
                 int64_t *fetched_at, enum hot_due *why) {
  if (table->heap_len == 0 || table->entries[table->heap[0]].due > now)
    return false;
  struct hot_entry *entry = &table->entries[table->heap[0]];
  memcpy(id_out, entry->id, UUID_TEXT_LEN + 1);
  *fetched_at = entry->fetched_at;
  *why = entry->refreshed ? HOT_DUE_CHECK : HOT_DUE_DECIDE;
  release(table, 0);
  return true;
}

bool hot_refresh_started(struct hot_table *table, const char *enrollment_id, int64_t fetched_at,
                         int64_t check_at) {
  uint32_t *slot = find_slot(table, enrollment_id);
  if (*slot != NO_SLOT) {
    reschedule(table, &table->entries[*slot], true, fetched_at, check_at);
    return true;
  }
  return hold(table, slot, enrollment_id, true, fetched_at, check_at) != NULL;
}

size_t hot_scheduled(const struct hot_table *table) { return table->heap_len; }
