/* hot: refresh-ahead's rule (the rate of each id, on an injected clock) and the schedule of the
 * refreshes it predicts will be asked for. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refresh_schedule.h"

static void id_of(char *out, unsigned i) { sprintf(out, "%08x-0000-4000-8000-000000000000", i); }

static const char *ID = "497f6eca-6276-4993-bfeb-53cbbbba6f08";
#define HORIZON_MS (4 * 20 * 1000) /* four ttls of 20 s */

/* --- the rate --- */

Test(hot, a_steady_rate_is_measured) {
  struct hot_table *table = hot_new(HORIZON_MS, 5000);
  double rate = 0;
  for (int64_t t = 5000; t < 5000 + 400 * 1000; t += 500) /* 2 a second for five horizons */
    rate = hot_note_request(table, ID, t);
  cr_expect(fabs(rate - 2.0) < 0.1, "rate %f, asked 2/s", rate);
  cr_expect(fabs(hot_rate(table, ID, 5000 + 400 * 1000) - 2.0) < 0.1);
  hot_free(table);
}

Test(hot, a_young_daemon_is_not_taken_for_a_quiet_one) {
  /* Six seconds in, an id asked once a second has a rate of about 1, not 6 over the horizon. */
  struct hot_table *table = hot_new(HORIZON_MS, 0);
  double rate = 0;
  for (int64_t t = 1000; t <= 6000; t += 1000)
    rate = hot_note_request(table, ID, t);
  cr_expect(rate > 0.9 && rate < 1.3, "rate %f", rate);
  cr_expect(hot_worth_refreshing(rate, 20), "20 expected a ttl");
  hot_free(table);
}

Test(hot, an_id_no_longer_asked_decays_by_e_each_horizon) {
  struct hot_table *table = hot_new(HORIZON_MS, 0);
  int64_t t = 0;
  for (; t < 10 * HORIZON_MS; t += 250)
    hot_note_request(table, ID, t);
  double before = hot_rate(table, ID, t);
  double after = hot_rate(table, ID, t + HORIZON_MS);
  cr_expect(fabs(after / before - exp(-1.0)) < 0.02, "%f then %f", before, after);
  cr_expect_not(hot_worth_refreshing(hot_rate(table, ID, t + 5 * HORIZON_MS), 20),
                "asked 4/s, silent five horizons: %f", hot_rate(table, ID, t + 5 * HORIZON_MS));
  hot_free(table);
}

Test(hot, the_rule_wants_three_requests_expected_in_the_next_ttl) {
  cr_expect(hot_worth_refreshing(0.15, 20));
  cr_expect_not(hot_worth_refreshing(0.149, 20));
  cr_expect(hot_worth_refreshing(0.01, 300));
  cr_expect_not(hot_worth_refreshing(0.5, 5));
  cr_expect_not(hot_worth_refreshing(1000, 0), "no ttl, nothing to refresh");
}

Test(hot, at_production_size_the_hot_stand_out_and_the_cold_do_not) {
  /* 1,000,000 requests over 200 s (5,000 a second) for 400,000 ids asked once or twice each,
   * and ten ids asked 0.2 times a second (four times a 20 s ttl): each hot id is measured at its
   * rate or above (the sketch only ever adds), and the cold ids are not worth a refresh. */
  struct hot_table *table = hot_new(HORIZON_MS, 0);
  char id[UUID_TEXT_LEN + 1];
  const int64_t span_ms = 200 * 1000;
  for (unsigned i = 0; i < 1000000; i++) {
    int64_t t = (int64_t)i * span_ms / 1000000;
    id_of(id, 1000 + (i * 2654435761u) % 400000u);
    hot_note_request(table, id, t);
    if (i % 5000 == 0) /* every second: one of the ten hot ids, each every 5 s */
      for (unsigned hot = 0; hot < 10; hot++)
        if ((i / 5000) % 5 == hot % 5) {
          id_of(id, hot);
          hot_note_request(table, id, t);
        }
  }
  for (unsigned hot = 0; hot < 10; hot++) {
    id_of(id, hot);
    double rate = hot_rate(table, id, span_ms);
    cr_expect(rate >= 0.19 && rate < 0.3, "hot id %u: %f", hot, rate);
    cr_expect(hot_worth_refreshing(rate, 20));
  }
  unsigned worth = 0;
  for (unsigned i = 0; i < 400000; i += 7) {
    id_of(id, 1000 + i);
    worth += hot_worth_refreshing(hot_rate(table, id, span_ms), 20);
  }
  cr_expect_eq(worth, 0, "%u cold ids taken for hot", worth);
  id_of(id, 999999);
  cr_expect_lt(hot_rate(table, id, span_ms) * 20, 1.0, "an id never asked");
  hot_free(table);
}

/* --- the schedule --- */

Test(hot, a_worthy_entry_is_scheduled_refreshed_and_its_refresh_used) {
  struct hot_table *table = hot_new(HORIZON_MS, 0);
  bool used;
  cr_expect_eq(hot_note_hit(table, ID, true, 1000, 1019, &used), HOT_SCHEDULED);
  cr_expect_not(used);
  cr_expect_eq(hot_note_hit(table, ID, true, 1000, 1019, &used), HOT_ALREADY);
  cr_expect_eq(hot_next_due(table), 1019);
  char out[UUID_TEXT_LEN + 1];
  int64_t generation;
  enum hot_due why;
  cr_expect_not(hot_pop_due(table, 1018, out, &generation, &why), "not before it is due");
  cr_expect(hot_pop_due(table, 1019, out, &generation, &why));
  cr_expect_str_eq(out, ID);
  cr_expect_eq(generation, 1000);
  cr_expect_eq(why, HOT_DUE_DECIDE);
  cr_expect_eq(hot_scheduled(table), 0);
  cr_expect(hot_refresh_started(table, ID, 1000, 1039));
  cr_expect_eq(hot_note_hit(table, ID, true, 1000, 1019, &used), HOT_REFRESHING,
               "the old copy, read while the refresh runs");
  cr_expect_not(used);
  cr_expect_eq(hot_note_hit(table, ID, true, 1019, 1038, &used), HOT_SCHEDULED,
               "the refreshed generation, scheduled in turn");
  cr_expect(used, "its first hit uses the refresh");
  cr_expect_eq(hot_note_hit(table, ID, true, 1019, 1038, &used), HOT_ALREADY);
  cr_expect_not(used, "counted once");
  cr_expect(hot_pop_due(table, 1038, out, &generation, &why));
  cr_expect_eq(why, HOT_DUE_DECIDE);
  cr_expect_eq(generation, 1019);
  hot_free(table);
}

/* ID scheduled at a hit on its generation 1000 (due 1019), decided at 1019 and refreshed, the
 * refresh to be checked at check_at. */
static struct hot_table *refreshed_at_1019(int64_t check_at) {
  struct hot_table *table = hot_new(HORIZON_MS, 0);
  bool used;
  cr_assert_eq(hot_note_hit(table, ID, true, 1000, 1019, &used), HOT_SCHEDULED);
  char out[UUID_TEXT_LEN + 1];
  int64_t generation;
  enum hot_due why;
  cr_assert(hot_pop_due(table, 1019, out, &generation, &why));
  cr_assert_eq(why, HOT_DUE_DECIDE);
  cr_assert(hot_refresh_started(table, ID, 1000, check_at));
  return table;
}

Test(hot, a_refresh_nobody_asks_for_is_checked_when_it_expires) {
  struct hot_table *table = refreshed_at_1019(1039);
  bool used;
  char out[UUID_TEXT_LEN + 1];
  int64_t generation;
  enum hot_due why;
  cr_expect_eq(hot_next_due(table), 1039);
  cr_expect_eq(hot_note_hit(table, ID, true, 1000, 1019, &used), HOT_REFRESHING);
  cr_expect_not(hot_pop_due(table, 1038, out, &generation, &why), "not decided at its due time");
  cr_expect(hot_pop_due(table, 1039, out, &generation, &why));
  cr_expect_eq(why, HOT_DUE_CHECK);
  cr_expect_eq(generation, 1000, "unused if the cache holds a newer generation than this");
  cr_expect_eq(hot_scheduled(table), 0, "it leaves the schedule");
  cr_expect_eq(hot_note_hit(table, ID, true, 1019, 1038, &used), HOT_SCHEDULED,
               "a later hit puts it back");
  cr_expect_not(used, "after its check, the refresh is no longer awaited");
  hot_free(table);
}

Test(hot, an_entry_not_worth_refreshing_is_never_held) {
  struct hot_table *table = hot_new(HORIZON_MS, 0);
  bool used;
  for (int64_t generation = 0; generation < 50; generation++)
    cr_expect_eq(hot_note_hit(table, ID, false, generation * 300, generation * 300 + 290, &used),
                 HOT_COLD);
  cr_expect_eq(hot_scheduled(table), 0);
  hot_free(table);
}

Test(hot, an_entry_that_cools_leaves_the_schedule_at_its_next_generation) {
  struct hot_table *table = refreshed_at_1019(1039);
  bool used;
  cr_expect_eq(hot_note_hit(table, ID, false, 1019, 1038, &used), HOT_COLD);
  cr_expect(used, "the refresh was still asked for");
  cr_expect_eq(hot_scheduled(table), 0);
  hot_free(table);
}

Test(hot, due_times_come_out_in_order_at_production_size) {
  /* 60,000 entries due at scattered times: each popped exactly once, in due order, and the index
   * still finds every one left after thousands of removals (its backward-shift deletes). */
  struct hot_table *table = hot_new(HORIZON_MS, 0);
  const unsigned n = 60000;
  char id[UUID_TEXT_LEN + 1];
  bool used;
  for (unsigned i = 0; i < n; i++) {
    id_of(id, i);
    int64_t due = (int64_t)((i * 7919u) % 100000u);
    cr_assert_eq(hot_note_hit(table, id, true, 1, due, &used), HOT_SCHEDULED, "%u", i);
  }
  cr_expect_eq(hot_scheduled(table), n);
  unsigned char *seen = calloc(n, 1);
  int64_t last = -1, generation;
  enum hot_due why;
  size_t popped = 0;
  for (int64_t now = 0; now < 100000 + 997; now += 997) {
    while (hot_pop_due(table, now, id, &generation, &why)) {
      unsigned i = (unsigned)strtoul(id, NULL, 16);
      int64_t due = (int64_t)((i * 7919u) % 100000u);
      cr_assert(due <= now && due >= last, "%s due %lld popped at %lld after %lld", id,
                (long long)due, (long long)now, (long long)last);
      cr_assert_not(seen[i], "%s twice", id);
      seen[i] = 1;
      last = due;
      popped++;
    }
    /* Every entry not yet popped is still found: a hit says it is scheduled already. */
    if (now % (997 * 20) == 0)
      for (unsigned i = 0; i < n; i += 101)
        if (!seen[i]) {
          id_of(id, i);
          cr_assert_eq(hot_note_hit(table, id, true, 1, 0, &used), HOT_ALREADY,
                       "%s lost from the index", id);
        }
  }
  cr_expect_eq(popped, n);
  free(seen);
  hot_free(table);
}

Test(hot, the_table_is_bounded) {
  struct hot_table *table = hot_new(HORIZON_MS, 0);
  char id[UUID_TEXT_LEN + 1];
  size_t full = 0;
  bool used;
  for (unsigned i = 0; i < HOT_MAX_IDS + 100; i++) {
    id_of(id, i);
    full += hot_note_hit(table, id, true, 5, 100, &used) == HOT_FULL;
  }
  cr_expect_eq(hot_scheduled(table), HOT_MAX_IDS);
  cr_expect_eq(full, 100);
  id_of(id, HOT_MAX_IDS + 500);
  cr_expect_not(hot_refresh_started(table, id, 5, 200), "full for refreshes too");
  hot_free(table);
}
