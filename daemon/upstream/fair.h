/* fair: the admission of upstream fetches in fair shares, one queue per local user (fair.c).
 *
 * A fetch belongs to a flow: the user whose miss caused it (peer_user_key: the uid, or one key
 * for every peer of no known uid), or FAIR_FLOW_BACKGROUND for refreshes and the warm-up. At
 * most `capacity` fetches run at once (upstream.c passes what the upstream can carry now:
 * [upstream] max_fetches, and no more than max_connections over HTTP/1). A fetch starts at once
 * while a slot is free and nobody waits; otherwise it waits, in its flow's FIFO, for a slot.
 *
 * Which flow a freed slot goes to: deficit round robin over the flows with fetches waiting, with
 * a quantum of one fetch (every fetch costs the upstream one request, so each deficit is always
 * one and DRR is plain round robin), and a flow already running its share of the capacity
 * (capacity / flows waiting, rounded up) is passed over while another is under it. So while
 * several flows wait each gets an equal share of the slots, a flow whose fetches are slow cannot
 * keep more than its share by holding them, and a lone flow gets them all.
 *
 * Pure bookkeeping, no clock, no I/O: items are the caller's (embedded in its transfer), and the
 * caller says when a started item ends (fair_done) or a waiting one leaves (fair_cancel). Bounds:
 * each flow's queue holds at most max_queued_per_flow items; flows exist only while they have an
 * item waiting or running. */
#ifndef FLIPCACHED_FAIR_H
#define FLIPCACHED_FAIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FAIR_FLOW_BACKGROUND UINT64_C(0x100000001) /* above every peer_user_key (peer.h) */

struct fair_flow;
struct fair_share;

/* One fetch's place; the caller embeds it and must not touch its fields. */
struct fair_item {
  uint64_t key;                /* its flow's, from fair_admit on */
  struct fair_flow *flow;      /* NULL: neither waiting nor running */
  bool waiting;                /* in its flow's queue; false once started */
  struct fair_item *prev, *next;
};

enum fair_admission {
  FAIR_START,     /* a slot was free and nobody waited: the item runs now (counted) */
  FAIR_QUEUED,    /* it waits in its flow's queue; fair_next hands it out later */
  FAIR_FULL,      /* its flow's queue holds max_queued_per_flow already: refused */
  FAIR_NO_MEMORY,
};

/* NULL when out of memory. */
struct fair_share *fair_new(size_t max_queued_per_flow);
/* Frees the bookkeeping, not the items. Accepts NULL. */
void fair_free(struct fair_share *share);

enum fair_admission fair_admit(struct fair_share *share, uint64_t flow, struct fair_item *item,
                               size_t capacity);
/* The next waiting item to start when fewer than `capacity` run, now counted as running; NULL
 * when no slot is free or nothing waits. */
struct fair_item *fair_next(struct fair_share *share, size_t capacity);
/* A started item ended: its slot is free. */
void fair_done(struct fair_share *share, struct fair_item *item);
/* A waiting item leaves its queue without starting (its budget ran out, or shutdown). */
void fair_cancel(struct fair_share *share, struct fair_item *item);
/* A waiting item moves to the tail of `flow`'s queue (upstream.c: another user now waits on the
 * fetch too, and that user's queue is the shorter). false, the item left where it was: `flow`'s
 * queue is full, or out of memory. */
bool fair_move(struct fair_share *share, struct fair_item *item, uint64_t flow);

uint64_t fair_item_flow(const struct fair_item *item);
size_t fair_running(const struct fair_share *share);
size_t fair_waiting(const struct fair_share *share);
/* Items of `flow` running and waiting now (0 and 0 for a flow with none). */
void fair_flow_counts(const struct fair_share *share, uint64_t flow, size_t *running,
                      size_t *waiting);
/* Flows with items waiting. */
size_t fair_flows_waiting(const struct fair_share *share);

#endif
