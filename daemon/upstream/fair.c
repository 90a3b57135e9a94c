/* fair: deficit round robin over per-flow queues, with a share cap (fair.h). */
#include "fair.h"

#include <stdlib.h>

#define FAIR_BUCKETS 1024 /* a power of two; flows are few (users with fetches), chains short */

struct fair_flow {
  uint64_t key;
  size_t running;
  size_t waiting;
  struct fair_item *head, *tail;        /* waiting items, oldest first */
  bool in_round;                        /* in the round of flows with items waiting */
  struct fair_flow *round_prev, *round_next;
  struct fair_flow *next_in_bucket;
};

struct fair_share {
  size_t max_queued_per_flow;
  size_t running, waiting;
  struct fair_flow *round_head, *round_tail; /* flows with items waiting, in turn order */
  size_t flows_waiting;
  struct fair_flow *buckets[FAIR_BUCKETS];
};

static size_t bucket_of(uint64_t key) {
  return (size_t)((key * UINT64_C(0x9E3779B97F4A7C15)) >> 54) & (FAIR_BUCKETS - 1);
}

struct fair_share *fair_new(size_t max_queued_per_flow) {
  struct fair_share *share = calloc(1, sizeof(*share));
  if (share)
    share->max_queued_per_flow = max_queued_per_flow;
  return share;
}

void fair_free(struct fair_share *share) {
  if (!share)
    return;
  for (size_t i = 0; i < FAIR_BUCKETS; i++) {
    while (share->buckets[i]) {
      struct fair_flow *flow = share->buckets[i];
      share->buckets[i] = flow->next_in_bucket;
      free(flow);
    }
  }
  free(share);
}

static struct fair_flow *find_flow(const struct fair_share *share, uint64_t key) {
  for (struct fair_flow *flow = share->buckets[bucket_of(key)]; flow; flow = flow->next_in_bucket)
    if (flow->key == key)
      return flow;
  return NULL;
}

/* A flow lives while it has an item running or waiting. */
static void release_if_idle(struct fair_share *share, struct fair_flow *flow) {
  if (flow->running || flow->waiting)
    return;
  struct fair_flow **link = &share->buckets[bucket_of(flow->key)];
  while (*link != flow)
    link = &(*link)->next_in_bucket;
  *link = flow->next_in_bucket;
  free(flow);
}

static void join_round(struct fair_share *share, struct fair_flow *flow) {
  flow->in_round = true;
  flow->round_next = NULL;
  flow->round_prev = share->round_tail;
  if (share->round_tail)
    share->round_tail->round_next = flow;
  else
    share->round_head = flow;
  share->round_tail = flow;
  share->flows_waiting++;
}

static void leave_round(struct fair_share *share, struct fair_flow *flow) {
  if (flow->round_prev)
    flow->round_prev->round_next = flow->round_next;
  else
    share->round_head = flow->round_next;
  if (flow->round_next)
    flow->round_next->round_prev = flow->round_prev;
  else
    share->round_tail = flow->round_prev;
  flow->in_round = false;
  flow->round_prev = flow->round_next = NULL;
  share->flows_waiting--;
}

static void unlink_waiting(struct fair_share *share, struct fair_flow *flow,
                           struct fair_item *item) {
  if (item->prev)
    item->prev->next = item->next;
  else
    flow->head = item->next;
  if (item->next)
    item->next->prev = item->prev;
  else
    flow->tail = item->prev;
  item->prev = item->next = NULL;
  item->waiting = false;
  flow->waiting--;
  share->waiting--;
  if (!flow->waiting && flow->in_round)
    leave_round(share, flow);
}

/* key's flow, made when it has none; NULL when out of memory. */
static struct fair_flow *flow_of(struct fair_share *share, uint64_t key) {
  struct fair_flow *flow = find_flow(share, key);
  if (flow)
    return flow;
  flow = calloc(1, sizeof(*flow));
  if (!flow)
    return NULL;
  flow->key = key;
  size_t bucket = bucket_of(key);
  flow->next_in_bucket = share->buckets[bucket];
  share->buckets[bucket] = flow;
  return flow;
}

/* Appends item to flow's queue, and flow to the round if it was not in it. */
static void enqueue(struct fair_share *share, struct fair_flow *flow, struct fair_item *item) {
  *item = (struct fair_item){.key = flow->key, .flow = flow, .waiting = true};
  item->prev = flow->tail;
  if (flow->tail)
    flow->tail->next = item;
  else
    flow->head = item;
  flow->tail = item;
  flow->waiting++;
  share->waiting++;
  if (!flow->in_round)
    join_round(share, flow);
}

enum fair_admission fair_admit(struct fair_share *share, uint64_t key, struct fair_item *item,
                               size_t capacity) {
  const struct fair_flow *existing = find_flow(share, key);
  bool start = share->running < capacity && share->waiting == 0;
  size_t waiting = existing ? existing->waiting : 0;
  if (!start && waiting >= share->max_queued_per_flow)
    return FAIR_FULL;
  struct fair_flow *flow = flow_of(share, key);
  if (!flow)
    return FAIR_NO_MEMORY;
  if (start) {
    *item = (struct fair_item){.key = key, .flow = flow};
    flow->running++;
    share->running++;
    return FAIR_START;
  }
  enqueue(share, flow, item);
  return FAIR_QUEUED;
}

bool fair_move(struct fair_share *share, struct fair_item *item, uint64_t key) {
  struct fair_flow *from = item->flow;
  if (!from || !item->waiting || key == item->key)
    return false;
  const struct fair_flow *existing = find_flow(share, key);
  if (existing && existing->waiting >= share->max_queued_per_flow)
    return false;
  struct fair_flow *to = flow_of(share, key);
  if (!to)
    return false;
  unlink_waiting(share, from, item);
  release_if_idle(share, from);
  enqueue(share, to, item);
  return true;
}

struct fair_item *fair_next(struct fair_share *share, size_t capacity) {
  if (share->running >= capacity || !share->round_head)
    return NULL;
  /* Each waiting flow's share of the slots; the first in turn under it is served, else the
   * first in turn (every flow is at its share: the slot is the next one's by rotation). The
   * walk passes only flows at their share, at most flows_waiting of them. */
  size_t flow_share = (capacity + share->flows_waiting - 1) / share->flows_waiting;
  struct fair_flow *chosen = share->round_head;
  for (struct fair_flow *flow = share->round_head; flow; flow = flow->round_next) {
    if (flow->running < flow_share) {
      chosen = flow;
      break;
    }
  }
  struct fair_item *item = chosen->head;
  unlink_waiting(share, chosen, item);
  chosen->running++;
  share->running++;
  if (chosen->in_round) { /* still waiting: its next turn is after every other flow's */
    leave_round(share, chosen);
    join_round(share, chosen);
  }
  return item;
}

void fair_done(struct fair_share *share, struct fair_item *item) {
  struct fair_flow *flow = item->flow;
  if (!flow || item->waiting)
    return;
  flow->running--;
  share->running--;
  item->flow = NULL;
  release_if_idle(share, flow);
}

void fair_cancel(struct fair_share *share, struct fair_item *item) {
  struct fair_flow *flow = item->flow;
  if (!flow || !item->waiting)
    return;
  unlink_waiting(share, flow, item);
  item->flow = NULL;
  release_if_idle(share, flow);
}

uint64_t fair_item_flow(const struct fair_item *item) { return item->key; }

size_t fair_running(const struct fair_share *share) { return share->running; }

size_t fair_waiting(const struct fair_share *share) { return share->waiting; }

void fair_flow_counts(const struct fair_share *share, uint64_t key, size_t *running,
                      size_t *waiting) {
  const struct fair_flow *flow = find_flow(share, key);
  *running = flow ? flow->running : 0;
  *waiting = flow ? flow->waiting : 0;
}

size_t fair_flows_waiting(const struct fair_share *share) { return share->flows_waiting; }
