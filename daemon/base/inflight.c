#include "inflight.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define INFLIGHT_BUCKETS 1024 /* a power of two */

struct inflight_table {
  struct inflight_fetch *buckets[INFLIGHT_BUCKETS];
  size_t count;
  size_t max_waiters;
};

static size_t bucket_of(const char *enrollment_id) {
  return uuid_hash(enrollment_id) & (INFLIGHT_BUCKETS - 1);
}

struct inflight_table *inflight_table_new(size_t max_waiters) {
  struct inflight_table *table = calloc(1, sizeof(*table));
  if (table)
    table->max_waiters = max_waiters;
  return table;
}

static void fetch_free(struct inflight_fetch *fetch) {
  free(fetch->waiters);
  free(fetch->held_copy);
  free(fetch);
}

void inflight_table_free(struct inflight_table *table) {
  if (!table)
    return;
  for (size_t i = 0; i < INFLIGHT_BUCKETS; i++) {
    while (table->buckets[i]) {
      struct inflight_fetch *fetch = table->buckets[i];
      table->buckets[i] = fetch->next_in_bucket;
      fetch_free(fetch);
    }
  }
  free(table);
}

struct inflight_fetch *inflight_find(struct inflight_table *table, const char *enrollment_id) {
  for (struct inflight_fetch *fetch = table->buckets[bucket_of(enrollment_id)]; fetch;
       fetch = fetch->next_in_bucket) {
    if (strcmp(fetch->enrollment_id, enrollment_id) == 0)
      return fetch;
  }
  return NULL;
}

struct inflight_fetch *inflight_start(struct inflight_table *table, const char *enrollment_id) {
  if (strlen(enrollment_id) != UUID_TEXT_LEN || inflight_find(table, enrollment_id))
    return NULL;
  struct inflight_fetch *fetch = calloc(1, sizeof(*fetch));
  if (!fetch)
    return NULL;
  memcpy(fetch->enrollment_id, enrollment_id, UUID_TEXT_LEN + 1);
  size_t bucket = bucket_of(enrollment_id);
  fetch->next_in_bucket = table->buckets[bucket];
  table->buckets[bucket] = fetch;
  table->count++;
  return fetch;
}

bool inflight_add_waiter(struct inflight_table *table, struct inflight_fetch *fetch,
                         struct client_request *waiter) {
  if (fetch->waiter_count >= table->max_waiters)
    return false;
  if (fetch->waiter_count == fetch->waiter_cap) {
    size_t cap = fetch->waiter_cap ? fetch->waiter_cap * 2 : 4;
    if (cap > table->max_waiters)
      cap = table->max_waiters;
    struct client_request **grown = realloc(fetch->waiters, cap * sizeof(*grown));
    if (!grown)
      return false;
    fetch->waiters = grown;
    fetch->waiter_cap = cap;
  }
  fetch->waiters[fetch->waiter_count++] = waiter;
  return true;
}

void inflight_finish(struct inflight_table *table, struct inflight_fetch *fetch) {
  struct inflight_fetch **link = &table->buckets[bucket_of(fetch->enrollment_id)];
  while (*link && *link != fetch)
    link = &(*link)->next_in_bucket;
  if (*link) {
    *link = fetch->next_in_bucket;
    table->count--;
  }
  fetch_free(fetch);
}

size_t inflight_count(const struct inflight_table *table) { return table->count; }

void inflight_forbid_stores(struct inflight_table *table) {
  for (size_t i = 0; i < INFLIGHT_BUCKETS; i++) {
    for (struct inflight_fetch *fetch = table->buckets[i]; fetch; fetch = fetch->next_in_bucket)
      fetch->store_forbidden = true;
  }
}
