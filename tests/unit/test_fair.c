/* fair: the fair shares of upstream fetches, as a simulation of slots and finishing fetches. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "fair.h"
#include "peer.h"

static struct fair_share *share;

static void create(void) {
  share = fair_new(8);
  cr_assert_not_null(share);
}

static void destroy(void) { fair_free(share); }

TestSuite(fair, .init = create, .fini = destroy);

#define ITEMS 4096
static struct fair_item items[ITEMS];

Test(fair, a_lone_flow_gets_every_slot_and_waits_in_order) {
  for (int i = 0; i < 4; i++)
    cr_expect_eq(fair_admit(share, 1000, &items[i], 4), FAIR_START, "slot %d is free", i);
  for (int i = 4; i < 7; i++)
    cr_expect_eq(fair_admit(share, 1000, &items[i], 4), FAIR_QUEUED);
  cr_expect_eq(fair_running(share), 4);
  cr_expect_eq(fair_waiting(share), 3);
  cr_expect_null(fair_next(share, 4), "no slot is free");
  fair_done(share, &items[0]);
  cr_expect_eq(fair_next(share, 4), &items[4], "first come, first served within a flow");
  fair_done(share, &items[1]);
  fair_done(share, &items[2]);
  cr_expect_eq(fair_next(share, 4), &items[5]);
  cr_expect_eq(fair_next(share, 4), &items[6]);
  cr_expect_null(fair_next(share, 4), "nothing waits");
  for (int i = 3; i < 7; i++)
    fair_done(share, &items[i]);
  cr_expect_eq(fair_running(share), 0);
  size_t running, waiting;
  fair_flow_counts(share, 1000, &running, &waiting);
  cr_expect(running == 0 && waiting == 0, "an idle flow is gone");
}

Test(fair, a_newcomer_does_not_jump_the_queue_when_a_slot_frees_later) {
  for (int i = 0; i < 2; i++)
    fair_admit(share, 1, &items[i], 2);
  cr_expect_eq(fair_admit(share, 1, &items[2], 2), FAIR_QUEUED);
  fair_done(share, &items[0]);
  /* A slot is free but someone waits: the newcomer queues behind it. */
  cr_expect_eq(fair_admit(share, 1, &items[3], 2), FAIR_QUEUED);
  cr_expect_eq(fair_next(share, 2), &items[2]);
  fair_done(share, &items[1]);
  /* Another user's newcomer also queues, and is served first: flow 1 holds its share (1 of 2). */
  cr_expect_eq(fair_admit(share, 2, &items[4], 2), FAIR_QUEUED);
  cr_expect_eq(fair_next(share, 2), &items[4]);
}

Test(fair, a_full_queue_refuses_and_a_cancelled_item_leaves_it) {
  fair_admit(share, 1, &items[0], 1);
  for (int i = 1; i <= 8; i++)
    cr_expect_eq(fair_admit(share, 1, &items[i], 1), FAIR_QUEUED);
  cr_expect_eq(fair_admit(share, 1, &items[9], 1), FAIR_FULL, "8 wait already");
  cr_expect_eq(fair_admit(share, 2, &items[9], 1), FAIR_QUEUED, "another flow has its own queue");
  fair_cancel(share, &items[4]);
  cr_expect_eq(fair_admit(share, 1, &items[10], 1), FAIR_QUEUED, "room again");
  fair_cancel(share, &items[9]);
  size_t running, waiting;
  fair_flow_counts(share, 2, &running, &waiting);
  cr_expect(running == 0 && waiting == 0);
  fair_done(share, &items[0]);
  int order[] = {1, 2, 3, 5, 6, 7, 8, 10};
  for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
    struct fair_item *next = fair_next(share, 1);
    cr_expect_eq(next, &items[order[i]], "turn %zu", i);
    fair_done(share, next);
  }
  cr_expect_eq(fair_waiting(share), 0);
}

/* The adversary's flood holds every slot and a deep queue; the other user's one miss takes the
 * next slot that frees, not the flood's queued ones. */
Test(fair, another_users_miss_takes_the_next_free_slot) {
  struct fair_share *wide = fair_new(1024);
  for (int i = 0; i < 64; i++)
    fair_admit(wide, 65534, &items[i], 16);
  cr_expect_eq(fair_admit(wide, 0, &items[100], 16), FAIR_QUEUED);
  fair_done(wide, &items[0]);
  cr_expect_eq(fair_next(wide, 16), &items[100], "root goes first");
  cr_expect_eq(fair_next(wide, 16), NULL);
  fair_done(wide, &items[1]);
  cr_expect_eq(fair_next(wide, 16), &items[16], "then the flood, in order");
  fair_free(wide);
}

/* A simulation: fetches of flow f take duration[f] rounds; every round, the finished ones end and
 * freed slots are handed out. Counts each flow's running fetches while both are backlogged. */
struct sim {
  int ends_at[ITEMS];
  int next_item;
};

static void run_round(struct fair_share *s, struct sim *sim, int round, size_t capacity) {
  for (int i = 0; i < sim->next_item; i++) {
    if (sim->ends_at[i] == round) {
      fair_done(s, &items[i]);
      sim->ends_at[i] = -1;
    }
  }
  (void)capacity;
}

static void admit(struct fair_share *s, struct sim *sim, uint64_t flow, int round, int duration,
                  size_t capacity) {
  int i = sim->next_item++;
  cr_assert_lt(i, ITEMS);
  enum fair_admission admission = fair_admit(s, flow, &items[i], capacity);
  cr_assert(admission == FAIR_START || admission == FAIR_QUEUED);
  sim->ends_at[i] = admission == FAIR_START ? round + duration : 0;
}

static void hand_out(struct fair_share *s, struct sim *sim, int round, const int *duration_of,
                     size_t capacity) {
  struct fair_item *item;
  while ((item = fair_next(s, capacity)) != NULL) {
    int i = (int)(item - items);
    sim->ends_at[i] = round + duration_of[fair_item_flow(item)];
  }
}

Test(fair, two_backlogged_flows_share_the_slots_equally_even_when_one_is_slow) {
  struct fair_share *s = fair_new(ITEMS);
  struct sim *sim = calloc(1, sizeof(*sim));
  const int duration_of[2] = {10, 1}; /* flow 0's fetches hold a slot ten times longer */
  const size_t capacity = 16;
  for (int i = 0; i < 600; i++)
    admit(s, sim, 0, 0, duration_of[0], capacity);
  for (int i = 0; i < 600; i++)
    admit(s, sim, 1, 0, duration_of[1], capacity);
  size_t most_slow = 0;
  int rounds_both_waiting = 0;
  for (int round = 1; round < 400; round++) {
    run_round(s, sim, round, capacity);
    hand_out(s, sim, round, duration_of, capacity);
    size_t running0, waiting0, running1, waiting1;
    fair_flow_counts(s, 0, &running0, &waiting0);
    fair_flow_counts(s, 1, &running1, &waiting1);
    cr_assert_leq(fair_running(s), capacity);
    if (waiting0 && waiting1 && round > 10) {
      rounds_both_waiting++;
      if (running0 > most_slow)
        most_slow = running0;
    }
  }
  cr_expect_gt(rounds_both_waiting, 20);
  /* By turns alone the slow flow would hold ~10 of every 11 slots; its share is 8. */
  cr_expect_leq(most_slow, 8, "the slow flow held %zu of 16 slots", most_slow);
  free(sim);
  fair_free(s);
}

Test(fair, three_flows_in_turn_including_the_background_one) {
  struct fair_share *s = fair_new(ITEMS);
  const size_t capacity = 3;
  uint64_t flows[] = {0, 65534, FAIR_FLOW_BACKGROUND};
  int n = 0;
  for (int k = 0; k < 30; k++)
    for (int f = 0; f < 3; f++)
      fair_admit(s, flows[f], &items[n++], capacity);
  /* The first three started (flow 0's three): afterwards each freed slot goes by turn. */
  int started[3] = {0, 0, 0};
  for (int k = 0; k < 60; k++) {
    struct fair_item *done = NULL;
    for (int i = 0; i < n && !done; i++)
      if (items[i].flow && !items[i].waiting)
        done = &items[i];
    fair_done(s, done);
    struct fair_item *next = fair_next(s, capacity);
    cr_assert_not_null(next);
    for (int f = 0; f < 3; f++)
      started[f] += fair_item_flow(next) == flows[f];
  }
  for (int f = 0; f < 3; f++)
    cr_expect(started[f] >= 19 && started[f] <= 21, "flow %d started %d of 60", f, started[f]);
  fair_free(s);
}

Test(fair, a_smaller_capacity_holds_back_until_enough_have_ended) {
  for (int i = 0; i < 8; i++)
    fair_admit(share, 1, &items[i], 8);
  fair_admit(share, 1, &items[8], 8);
  /* The upstream turned out to speak HTTP/1: capacity 4 from now on. */
  for (int i = 0; i < 4; i++) {
    fair_done(share, &items[i]);
    cr_expect_null(fair_next(share, 4), "%d running of 4", 7 - i);
  }
  fair_done(share, &items[4]);
  cr_expect_eq(fair_next(share, 4), &items[8]);
}

Test(fair, unknown_peers_and_background_work_have_flows_apart_from_every_uid) {
  cr_expect_neq(PEER_UNKNOWN_KEY, FAIR_FLOW_BACKGROUND);
  cr_expect_gt(PEER_UNKNOWN_KEY, UINT32_MAX);
  fair_admit(share, PEER_UNKNOWN_KEY, &items[0], 1);
  cr_expect_eq(fair_admit(share, FAIR_FLOW_BACKGROUND, &items[1], 1), FAIR_QUEUED);
  cr_expect_eq(fair_flows_waiting(share), 1);
  cr_expect_eq(fair_item_flow(&items[1]), FAIR_FLOW_BACKGROUND);
}

/* At production size: 1,000 users' flows waiting, handed out in turn without losing one. */
Test(fair, a_thousand_flows) {
  struct fair_share *s = fair_new(4);
  for (int i = 0; i < 4000; i++)
    cr_assert_eq(fair_admit(s, (uint64_t)(i % 1000), &items[i], 0), FAIR_QUEUED);
  cr_expect_eq(fair_flows_waiting(s), 1000);
  int seen[1000] = {0};
  for (int k = 0; k < 1000; k++) {
    struct fair_item *next = fair_next(s, 1);
    cr_assert_not_null(next);
    seen[fair_item_flow(next)]++;
    fair_done(s, next);
  }
  for (int f = 0; f < 1000; f++)
    cr_expect_eq(seen[f], 1, "flow %d served %d times in the first round", f, seen[f]);
  struct fair_item *next;
  int rest = 0;
  while ((next = fair_next(s, 1)) != NULL) {
    fair_done(s, next);
    rest++;
  }
  cr_expect_eq(rest, 3000);
  fair_free(s);
}

/* Another user now waits on a fetch deep in the flood's queue: moved to that user's (empty)
 * queue, it takes the next free slot; a full queue, or its own flow, leaves it in place. */
Test(fair, a_waiting_item_moved_to_a_shorter_queue_goes_next) {
  struct fair_share *s = fair_new(8);
  for (int i = 0; i < 4; i++)
    fair_admit(s, 65534, &items[i], 4);
  for (int i = 4; i < 12; i++)
    cr_assert_eq(fair_admit(s, 65534, &items[i], 4), FAIR_QUEUED);
  cr_expect_not(fair_move(s, &items[11], 65534), "already there");
  cr_expect_not(fair_move(s, &items[0], 0), "running, not waiting");
  cr_expect(fair_move(s, &items[11], 0));
  cr_expect_eq(fair_item_flow(&items[11]), 0);
  size_t running, waiting;
  fair_flow_counts(s, 65534, &running, &waiting);
  cr_expect(running == 4 && waiting == 7);
  cr_expect_eq(fair_waiting(s), 8);
  fair_done(s, &items[0]);
  cr_expect_eq(fair_next(s, 4), &items[11], "root's now, ahead of the flood's queue");
  fair_done(s, &items[11]);
  fair_flow_counts(s, 0, &running, &waiting);
  cr_expect(running == 0 && waiting == 0, "root's flow is gone with it");
  /* Into a full queue: no move. */
  for (int i = 20; i < 28; i++)
    cr_assert_eq(fair_admit(s, 7, &items[i], 4), FAIR_QUEUED);
  cr_expect_not(fair_move(s, &items[10], 7));
  cr_expect_eq(fair_item_flow(&items[10]), 65534);
  fair_free(s);
}
