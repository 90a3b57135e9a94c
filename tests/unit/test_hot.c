/* hot: the schedule of hot entries' refreshes. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refresh_schedule.h"

static void id_of(char *out, unsigned i) { sprintf(out, "%08x-0000-4000-8000-000000000000", i); }

Test(hot, an_entry_is_hot_at_its_second_hit_and_due_then) {
  struct hot_table *table = hot_new();
  cr_assert_not_null(table);
  const char *id = "497f6eca-6276-4993-bfeb-53cbbbba6f08";
  cr_expect_eq(hot_note_hit(table, id, 1000, 1290), HOT_FIRST_HIT);
  cr_expect_eq(hot_scheduled(table), 0);
  cr_expect_eq(hot_note_hit(table, id, 1000, 1290), HOT_SCHEDULED);
  cr_expect_eq(hot_note_hit(table, id, 1000, 1290), HOT_ALREADY);
  cr_expect_eq(hot_scheduled(table), 1);
  cr_expect_eq(hot_next_due(table), 1290);
  char out[UUID_TEXT_LEN + 1];
  int64_t generation;
  cr_expect_not(hot_pop_due(table, 1289, out, &generation), "not before it is due");
  cr_expect(hot_pop_due(table, 1290, out, &generation));
  cr_expect_str_eq(out, id);
  cr_expect_eq(generation, 1000);
  cr_expect_eq(hot_scheduled(table), 0, "once due, it leaves");
  cr_expect_eq(hot_next_due(table), INT64_MAX);
  /* The refreshed entry is a new generation: hot again after two hits of its own. */
  cr_expect_eq(hot_note_hit(table, id, 1291, 1581), HOT_FIRST_HIT);
  cr_expect_eq(hot_note_hit(table, id, 1291, 1581), HOT_SCHEDULED);
  hot_free(table);
}

Test(hot, one_hit_a_generation_is_never_hot) {
  struct hot_table *table = hot_new();
  const char *id = "497f6eca-6276-4993-bfeb-53cbbbba6f08";
  for (int64_t generation = 0; generation < 50; generation++)
    cr_expect_eq(hot_note_hit(table, id, generation * 300, generation * 300 + 290), HOT_FIRST_HIT);
  cr_expect_eq(hot_scheduled(table), 0);
  hot_free(table);
}

Test(hot, due_times_come_out_in_order_at_production_size) {
  /* 60,000 hot entries due at scattered times: each popped exactly once, in due order, and the
   * index still finds every one left after thousands of removals (its backward-shift deletes). */
  struct hot_table *table = hot_new();
  const unsigned n = 60000;
  char id[UUID_TEXT_LEN + 1];
  for (unsigned i = 0; i < n; i++) {
    id_of(id, i);
    int64_t due = (int64_t)((i * 7919u) % 100000u);
    hot_note_hit(table, id, 1, due);
    cr_assert_eq(hot_note_hit(table, id, 1, due), HOT_SCHEDULED, "%u", i);
  }
  cr_expect_eq(hot_scheduled(table), n);
  unsigned char *seen = calloc(n, 1);
  int64_t last = -1, generation;
  size_t popped = 0;
  for (int64_t now = 0; now < 100000 + 997; now += 997) {
    while (hot_pop_due(table, now, id, &generation)) {
      unsigned i = (unsigned)strtoul(id, NULL, 16);
      int64_t due = (int64_t)((i * 7919u) % 100000u);
      cr_assert(due <= now && due >= last, "%s due %lld popped at %lld after %lld", id,
                (long long)due, (long long)now, (long long)last);
      cr_assert_not(seen[i], "%s twice", id);
      seen[i] = 1;
      last = due;
      popped++;
    }
    /* Every entry not yet popped is still found: a second hit says it is scheduled already. */
    if (now % (997 * 20) == 0)
      for (unsigned i = 0; i < n; i += 101)
        if (!seen[i]) {
          id_of(id, i);
          cr_assert_eq(hot_note_hit(table, id, 1, 0), HOT_ALREADY, "%s lost from the index", id);
        }
  }
  cr_expect_eq(popped, n);
  free(seen);
  hot_free(table);
}

Test(hot, the_table_is_bounded) {
  struct hot_table *table = hot_new();
  char id[UUID_TEXT_LEN + 1];
  size_t full = 0;
  for (unsigned i = 0; i < HOT_MAX_IDS + 100; i++) {
    id_of(id, i);
    hot_note_hit(table, id, 5, 100);
    full += hot_note_hit(table, id, 5, 100) == HOT_FULL;
  }
  cr_expect_eq(hot_scheduled(table), HOT_MAX_IDS);
  cr_expect_eq(full, 100);
  hot_free(table);
}
