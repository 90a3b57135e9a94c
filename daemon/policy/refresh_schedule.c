#include "refresh_schedule.h"

#include <stdlib.h>
#include <string.h>

#define INDEX_SLOTS (2 * HOT_MAX_IDS) /* a power of two, at most half full */
#define NO_SLOT UINT32_MAX

struct hot_entry {
  char id[UUID_TEXT_LEN + 1];
  int64_t fetched_at;
  int64_t due;
  uint32_t heap_pos;
};

struct hot_table {
  uint32_t filter[HOT_FILTER_SLOTS]; /* fingerprints of first hits; 0: empty */
  struct hot_entry entries[HOT_MAX_IDS];
  uint32_t free_list[HOT_MAX_IDS];   /* entry indexes not in use */
  uint32_t free_count;
  uint32_t index[INDEX_SLOTS];       /* open addressing by id: entry index, NO_SLOT when empty */
  uint32_t heap[HOT_MAX_IDS];        /* entry indexes, a binary min-heap by due */
  uint32_t heap_len;
};

struct hot_table *hot_new(void) {
  struct hot_table *table = calloc(1, sizeof(*table));
  if (!table)
    return NULL;
  memset(table->index, 0xff, sizeof(table->index));
  for (uint32_t i = 0; i < HOT_MAX_IDS; i++)
    table->free_list[i] = HOT_MAX_IDS - 1 - i;
  table->free_count = HOT_MAX_IDS;
  return table;
}

void hot_free(struct hot_table *table) { free(table); }

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

enum hot_note hot_note_hit(struct hot_table *table, const char *enrollment_id, int64_t fetched_at,
                           int64_t due) {
  uint32_t *slot = find_slot(table, enrollment_id);
  if (*slot != NO_SLOT) {
    struct hot_entry *entry = &table->entries[*slot];
    if (entry->fetched_at == fetched_at)
      return HOT_ALREADY;
    /* A newer entry of a scheduled id: hot again only once it is hit twice itself. */
    if (fetched_at < entry->fetched_at)
      return HOT_ALREADY;
  }
  uint32_t hash = uuid_hash(enrollment_id);
  uint32_t fingerprint = (hash ^ ((uint32_t)fetched_at * 2654435761u) ^
                          (uint32_t)((uint64_t)fetched_at >> 32)) | 1u;
  uint32_t *seen = &table->filter[(hash >> 7) & (HOT_FILTER_SLOTS - 1)];
  if (*seen != fingerprint) {
    *seen = fingerprint;
    return HOT_FIRST_HIT;
  }
  *seen = 0;
  if (*slot != NO_SLOT) { /* an older generation's schedule: replaced by this one's */
    struct hot_entry *entry = &table->entries[*slot];
    entry->fetched_at = fetched_at;
    entry->due = due;
    sift_up(table, entry->heap_pos);
    sift_down(table, entry->heap_pos);
    return HOT_SCHEDULED;
  }
  if (table->free_count == 0)
    return HOT_FULL;
  uint32_t index = table->free_list[--table->free_count];
  struct hot_entry *entry = &table->entries[index];
  memcpy(entry->id, enrollment_id, UUID_TEXT_LEN);
  entry->id[UUID_TEXT_LEN] = '\0';
  entry->fetched_at = fetched_at;
  entry->due = due;
  entry->heap_pos = table->heap_len;
  table->heap[table->heap_len++] = index;
  sift_up(table, entry->heap_pos);
  *slot = index;
  return HOT_SCHEDULED;
}

int64_t hot_next_due(const struct hot_table *table) {
  return table->heap_len ? table->entries[table->heap[0]].due : INT64_MAX;
}

bool hot_pop_due(struct hot_table *table, int64_t now, char id_out[UUID_TEXT_LEN + 1],
                 int64_t *fetched_at) {
  if (table->heap_len == 0 || table->entries[table->heap[0]].due > now)
    return false;
  uint32_t index = table->heap[0];
  struct hot_entry *entry = &table->entries[index];
  memcpy(id_out, entry->id, UUID_TEXT_LEN + 1);
  *fetched_at = entry->fetched_at;
  heap_swap(table, 0, table->heap_len - 1);
  table->heap_len--;
  if (table->heap_len)
    sift_down(table, 0);
  remove_from_index(table, entry->id);
  table->free_list[table->free_count++] = index;
  return true;
}

size_t hot_scheduled(const struct hot_table *table) { return table->heap_len; }
