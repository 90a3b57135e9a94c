/* stats: the daemon's counters and their renderings for /stats (JSON) and /metrics (Prometheus).
 * Counters only grow; gauges are sampled by the caller at render time. Nothing secret is ever
 * counted or rendered here. */
#ifndef FLIPCACHED_STATS_H
#define FLIPCACHED_STATS_H

#include <stdint.h>

/* Upper bounds (seconds) of the upstream latency histogram's buckets; +Inf is implied. */
#define STATS_LATENCY_BUCKETS 12
extern const double STATS_LATENCY_BOUNDS[STATS_LATENCY_BUCKETS];

/* The daemon's own enrollment answers, by outcome, for the answer-duration histogram. */
enum stats_answer {
  STATS_ANSWER_HIT,   /* a fresh entry (a remembered 404 too) */
  STATS_ANSWER_STALE, /* a stale copy */
  STATS_ANSWER_MISS,  /* the upstream's answer, fetched (or joined) */
  STATS_ANSWER_ERROR, /* an error answer: the upstream failed, a bad id, a refusal */
  STATS_ANSWER_KINDS,
};
#define STATS_ANSWER_BUCKETS 14
extern const double STATS_ANSWER_BOUNDS[STATS_ANSWER_BUCKETS];

struct stats {
  uint64_t requests_total;    /* every HTTP request answered */
  uint64_t enrollment_requests;
  uint64_t hits;              /* enrollment answered from a fresh cache entry */
  uint64_t misses;            /* enrollment answered by the upstream's result or an error */
  uint64_t stale_served;      /* a stale copy answered */
  uint64_t negative_hits;     /* a remembered 404 answered */
  uint64_t coalesced;         /* answered by another request's fetch */
  uint64_t invalid_requests;  /* 4xx answered by flipcached itself (bad id, route, method) */
  uint64_t upstream_requests; /* requests sent upstream (each attempt, once it is on the wire) */
  uint64_t upstream_errors;   /* upstream transfers that failed or answered unusably */
  uint64_t upstream_retries;  /* attempts repeated after a failed connection or a 502/503/504 */
  uint64_t rate_limit_pauses; /* 429s that paused every upstream request */
  uint64_t upstream_refused;  /* fetches not sent: paused for a 429, or the circuit open */
  uint64_t fetches_refused;   /* fetches not started: their user's queue was full */
  uint64_t fetches_waited;    /* fetches that waited in their user's queue for a free slot */
  uint64_t fetch_wait_timeouts; /* fetches not sent: their budget ran out while they waited */
  uint64_t fetches_moved;     /* waiting fetches moved to the shorter queue of a user joining them */
  uint64_t breaker_opens;     /* times the circuit breaker opened */
  uint64_t token_refreshes;   /* OAuth access tokens obtained */
  uint64_t token_failures;    /* OAuth token requests that failed */
  uint64_t cache_writes;
  uint64_t cache_write_errors;
  uint64_t cache_full_skips;  /* writes skipped because the map was full (room is made after) */
  uint64_t evictions;         /* the oldest entries, deleted by the reclaimer to make room */
  uint64_t expired_removed;   /* entries past every window, deleted by the sweeper or the reclaimer */
  uint64_t purged;            /* entries deleted through the admin routes */
  uint64_t cache_rebuilds;    /* damaged or foreign cache files moved aside */
  uint64_t background_refreshes; /* upstream fetches started to refresh a stale copy */
  uint64_t refresh_ahead;     /* refresh-ahead's fetches started by a fresh hit at or past its due time */
  uint64_t refresh_scheduled; /* fetches started by refresh-ahead's schedule (refresh_schedule.h) */
  uint64_t hot_untracked;     /* entries worth refreshing the full schedule could not hold */
  uint64_t refresh_used;      /* scheduled refreshes whose generation was asked for afterwards */
  uint64_t refresh_unused;    /* scheduled refreshes whose generation nobody asked for by its due time */
  uint64_t not_modified;      /* enrollment answers that were a 304 (the client's If-None-Match
                                 matched); each is also counted as its hit, stale or miss */
  uint64_t upstream_not_modified; /* the upstream's 304s to a conditional refresh: a copy renewed
                                     without its body */
  uint64_t waiters_refused;   /* requests refused because a fetch had too many waiters */
  uint64_t reloads;           /* SIGHUPs that applied a configuration */
  uint64_t credential_reloads; /* credentials replaced by a SIGHUP */
  uint64_t connections_accepted; /* client connections accepted (refused ones included) */
  uint64_t connections_refused;  /* answered 503 at once: [server] max_connections were open */
  uint64_t connections_refused_per_user; /* answered 503 at once: the peer's uid held
                                            max_connections_per_user, none of them idle */
  uint64_t connections_closed_idle; /* idle connections closed to make room for a new one */
  uint64_t peer_unknown;         /* connections whose peer's uid could not be proven (uid=?) */
  uint64_t request_timeouts;     /* request heads not complete within request_timeout (408) */
  /* Requests refused by the access rules (access.h), by reason; none is in invalid_requests. */
  uint64_t refused_misdirected;  /* 421: a Host that is not this daemon's */
  uint64_t refused_web_page;     /* 403: an Origin not allowed, or Sec-Fetch-Site from a page */
  uint64_t refused_not_allowed;  /* 403: the enrollment route, a peer not in the allow lists */
  uint64_t refused_not_admin;    /* 403: an admin route, a peer not in the admin lists */
  uint64_t refused_miss_quota;   /* 429: a miss beyond the user's miss_rate_per_user */
  uint64_t warm_runs;            /* warm-up runs started (warm.h) */
  uint64_t warm_stored;          /* entries stored from the list endpoint */
  uint64_t warm_failures;        /* program lists not asked for, failed, or refused whole */
  /* The shared tier (fleet.h, redis.h). */
  uint64_t shared_lookups;       /* entries asked of Redis */
  uint64_t shared_hits;          /* of them, a usable copy: stored here, answered, Flip not asked */
  uint64_t shared_invalid;       /* values that did not decode or named another id: deleted */
  uint64_t shared_writes;        /* entries fetched here and written to Redis */
  uint64_t shared_lock_waits;    /* fetches that waited on another host's fetch of the id */
  uint64_t shared_lock_timeouts; /* of them, those that gave up waiting and asked Flip */
  uint64_t shared_purges_sent;   /* admin purges sent to every host through Redis */
  uint64_t shared_purges_received; /* purges from other hosts applied here */
  uint64_t shared_errors;        /* Redis commands that failed, timed out or lost their connection */
  uint64_t shared_breaker_opens; /* times a Redis connection's circuit opened */
  uint64_t shared_disconnects;   /* Redis connections closed or lost */
  uint64_t shared_switches;      /* new masters named by the sentinels and shared through */
  uint64_t shared_purges_repeated; /* purges sent again: owed, or to a new master */
  /* Upstream fetch durations (retries included), for /metrics: counts per bucket (not
   * cumulative; the renderer accumulates), their number and their sum. */
  uint64_t upstream_latency_bucket[STATS_LATENCY_BUCKETS + 1];
  uint64_t upstream_latency_count;
  double upstream_latency_sum_seconds;
  /* The same for the daemon's answers, by outcome: from the request's first byte to its answer. */
  uint64_t answer_bucket[STATS_ANSWER_KINDS][STATS_ANSWER_BUCKETS + 1];
  uint64_t answer_count[STATS_ANSWER_KINDS];
  double answer_sum_seconds[STATS_ANSWER_KINDS];
};

/* Enrollment requests answered (hits, stale copies, remembered 404s and misses: each answer is
 * counted in exactly one of them) and, of them, those answered from the cache (hits, fresh or
 * stale): the hit ratio's two terms, for systemd's STATUS= line and `flipcached stats`. */
void stats_cache_share(const struct stats *stats, uint64_t *answered, uint64_t *from_cache);

/* Records one upstream fetch's duration. */
void stats_observe_upstream_latency(struct stats *stats, double seconds);
/* Records one enrollment answer's duration. */
void stats_observe_answer(struct stats *stats, enum stats_answer outcome, double seconds);

struct stats_gauges {
  uint64_t uptime_seconds;
  uint64_t inflight;          /* upstream fetches in progress */
  uint64_t fetches_waiting;   /* fetches waiting in their users' queues for a free slot now */
  uint64_t fetch_slots;       /* fetches the upstream may carry at once now (fair.h) */
  uint64_t breaker_state;     /* 0 closed, 1 open, 2 half-open (one probe allowed) */
  uint64_t upstream_paused_seconds; /* left of a 429's pause, 0 when not paused */
  uint64_t cache_entries;
  uint64_t cache_bytes;       /* bytes of the LMDB map in use */
  uint64_t cache_max_bytes;
  uint64_t connections;       /* client connections open now, counted against max_connections */
  uint64_t cache_syncs;       /* a counter: flushes of committed cache writes by the keeper thread */
  uint64_t cache_set_aside;   /* 1 while a damaged cache file is kept for a post-mortem */
  uint64_t cache_unavailable; /* 1 while the cache cannot be opened (everything goes upstream) */
  uint64_t credential_rejected; /* 1 while the upstream rejects the daemon's credential */
  uint64_t warm_running;      /* 1 while a warm-up run is in progress */
  uint64_t hot_scheduled;     /* entries refresh-ahead's schedule holds now */
  uint64_t shared_state;      /* the shared tier: 0 off, 1 up, 2 down */
  uint64_t shared_waiting;    /* fetches waiting on another host's lock now */
  uint64_t shared_unavailable_seconds; /* a counter: whole seconds without the tier since the start */
  char shared_master[80];     /* the master in use, "" when off or none is known (not a field of
                                 FIELDS: rendered as /stats' string and /metrics' info) */
};

/* malloc'd NUL-terminated texts, or NULL when out of memory. */
char *stats_render_json(const struct stats *stats, const struct stats_gauges *gauges);
char *stats_render_prometheus(const struct stats *stats, const struct stats_gauges *gauges);

#endif
