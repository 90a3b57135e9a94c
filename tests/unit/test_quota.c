/* quota: the per-user token bucket of miss_rate_per_user, on an injected clock. */
#include <criterion/criterion.h>

#include "peer.h"
#include "quota.h"

static struct quota *quota;

static void create(void) {
  quota = quota_new();
  cr_assert_not_null(quota);
}

static void destroy(void) { quota_free(quota); }

TestSuite(quota, .init = create, .fini = destroy);

/* Takes until refused at one instant; returns how many were granted. */
static int drain(uint64_t key, unsigned rate, int64_t now_ms) {
  long retry_after;
  int granted = 0;
  while (quota_take(quota, key, rate, now_ms, &retry_after) && granted < 100000)
    granted++;
  return granted;
}

Test(quota, a_burst_of_rate_then_rate_a_second) {
  cr_expect_eq(drain(1000, 5, 0), 5, "the burst is the rate");
  long retry_after = 0;
  cr_expect(!quota_take(quota, 1000, 5, 0, &retry_after));
  cr_expect_eq(retry_after, 1);
  cr_expect(!quota_take(quota, 1000, 5, 199, &retry_after), "one token takes 200 ms at 5/s");
  cr_expect(quota_take(quota, 1000, 5, 200, &retry_after));
  cr_expect_eq(drain(1000, 5, 1200), 5, "a second refills five");
  cr_expect_eq(drain(1000, 5, 60000), 5, "and never more than the burst");
}

Test(quota, retry_after_says_when_the_next_token_comes) {
  long retry_after = 0;
  cr_expect_eq(drain(7, 1, 0), 1);
  cr_expect(!quota_take(quota, 7, 1, 0, &retry_after));
  cr_expect_eq(retry_after, 1);
  /* At a rate below one a second is impossible (a whole number); a slow refill still rounds up. */
  cr_expect(!quota_take(quota, 7, 1, 10, &retry_after));
  cr_expect_eq(retry_after, 1, "990 ms left: 1 s");
}

Test(quota, users_have_buckets_of_their_own) {
  cr_expect_eq(drain(1000, 3, 0), 3);
  cr_expect_eq(drain(1001, 3, 0), 3, "another user is not charged for the first one's misses");
  cr_expect_eq(drain(PEER_UNKNOWN_KEY, 3, 0), 3);
  cr_expect_eq(drain(0, 3, 0), 3, "root too");
}

Test(quota, rate_zero_is_no_limit) {
  long retry_after;
  for (int i = 0; i < 10000; i++)
    cr_assert(quota_take(quota, 1000, 0, 0, &retry_after));
}

Test(quota, a_lower_rate_after_a_reload_caps_what_is_left) {
  cr_expect_eq(drain(1000, 100, 0), 100);
  cr_expect_eq(drain(1000, 2, 10000), 2, "the burst is the new rate's");
}

/* More users than the table holds: while every slot's user is still paying back a burst, the
 * rest share one overflow bucket; once a bucket is full again its slot is free. */
Test(quota, the_table_is_bounded_and_full_buckets_free_their_slots) {
  for (uint64_t uid = 0; uid < QUOTA_USERS; uid++)
    cr_assert_eq(drain(uid, 2, 0), 2);
  cr_expect_eq(drain(50000, 2, 0), 2, "the first user beyond the table gets the overflow's burst");
  cr_expect_eq(drain(50001, 2, 0), 0, "and shares it with the next");
  /* One second later every bucket is full again: new users take slots of their own. */
  for (uint64_t uid = 60000; uid < 60000 + QUOTA_USERS; uid++)
    cr_assert_eq(drain(uid, 2, 1000), 2, "uid %llu", (unsigned long long)uid);
  cr_expect_eq(drain(5, 2, 1000), 2, "uid 5's slot went to a new user: the overflow, refilled");
  cr_expect_eq(drain(6, 2, 1000), 0, "shared while the new users pay back");
  cr_expect_eq(drain(60000 + 17, 2, 1000), 0, "a user keeps its own bucket");
}
