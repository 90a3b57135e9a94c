/* inflight: one fetch per id, bounded waiters in arrival order. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>

#include "inflight.h"

#define ID1 "497f6eca-6276-4993-bfeb-53cbbbba6f08"
#define ID2 "0b7a2c1e-2f3d-4e5f-8a9b-0c1d2e3f4a5b"

static struct client_request *fake_waiter(uintptr_t n) { return (struct client_request *)n; }

Test(inflight, one_fetch_per_id) {
  struct inflight_table *table = inflight_table_new(8);
  cr_assert_null(inflight_find(table, ID1));
  struct inflight_fetch *first = inflight_start(table, ID1);
  cr_assert_not_null(first);
  cr_expect_str_eq(first->enrollment_id, ID1);
  cr_expect_null(inflight_start(table, ID1), "a second fetch for the same id is refused");
  cr_expect_eq(inflight_find(table, ID1), first);
  struct inflight_fetch *second = inflight_start(table, ID2);
  cr_assert_not_null(second);
  cr_expect_eq(inflight_count(table), 2);
  inflight_finish(table, first);
  cr_expect_null(inflight_find(table, ID1));
  cr_expect_eq(inflight_find(table, ID2), second);
  cr_expect_eq(inflight_count(table), 1);
  inflight_table_free(table); /* frees the fetch still in it */
}

Test(inflight, waiters_keep_arrival_order_and_are_bounded) {
  struct inflight_table *table = inflight_table_new(100);
  struct inflight_fetch *fetch = inflight_start(table, ID1);
  for (uintptr_t i = 1; i <= 100; i++)
    cr_assert(inflight_add_waiter(table, fetch, fake_waiter(i)));
  cr_expect_not(inflight_add_waiter(table, fetch, fake_waiter(101)), "the 101st is refused");
  cr_expect_eq(fetch->waiter_count, 100);
  for (uintptr_t i = 0; i < 100; i++)
    cr_expect_eq(fetch->waiters[i], fake_waiter(i + 1));
  inflight_finish(table, fetch);
  inflight_table_free(table);
}

Test(inflight, many_ids_share_buckets_correctly) {
  struct inflight_table *table = inflight_table_new(1);
  char ids[3000][UUID_TEXT_LEN + 1];
  struct inflight_fetch *fetches[3000];
  for (int i = 0; i < 3000; i++) {
    snprintf(ids[i], sizeof(ids[i]), "%08x-0000-4000-8000-000000000000", (unsigned)i);
    fetches[i] = inflight_start(table, ids[i]);
    cr_assert_not_null(fetches[i]);
  }
  cr_expect_eq(inflight_count(table), 3000);
  for (int i = 0; i < 3000; i += 2)
    inflight_finish(table, fetches[i]);
  for (int i = 0; i < 3000; i++) {
    if (i % 2)
      cr_expect_eq(inflight_find(table, ids[i]), fetches[i]);
    else
      cr_expect_null(inflight_find(table, ids[i]));
  }
  cr_expect_eq(inflight_count(table), 1500);
  inflight_table_free(table);
}

Test(inflight, refuses_ids_that_are_not_canonical_length) {
  struct inflight_table *table = inflight_table_new(1);
  cr_expect_null(inflight_start(table, "short"));
  inflight_table_free(table);
}
