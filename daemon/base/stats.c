#include "stats.h"

#include <json-c/json.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct stat_field {
  const char *name; /* the /stats key; /metrics adds "flipcached_" and "_total" for counters */
  const char *help;
  size_t offset;
  int sampled;  /* 0: in struct stats; 1: in struct stats_gauges (sampled at render time) */
  int is_gauge; /* Prometheus type: 0 counter, 1 gauge */
};

#define COUNTER(name, help) {#name, help, offsetof(struct stats, name), 0, 0}
#define GAUGE(name, help) {#name, help, offsetof(struct stats_gauges, name), 1, 1}
/* A counter kept outside struct stats (by another thread) and sampled like a gauge. */
#define SAMPLED_COUNTER(name, help) {#name, help, offsetof(struct stats_gauges, name), 1, 0}

static const struct stat_field FIELDS[] = {
  COUNTER(requests_total, "HTTP requests answered"),
  COUNTER(enrollment_requests, "Enrollment requests answered"),
  COUNTER(hits, "Enrollments answered from a fresh cache entry"),
  COUNTER(misses, "Enrollments answered by an upstream fetch's result or an error"),
  COUNTER(stale_served, "Stale copies answered"),
  COUNTER(negative_hits, "Remembered 404s answered"),
  COUNTER(coalesced, "Requests answered by another request's upstream fetch"),
  COUNTER(invalid_requests, "Requests refused by flipcached itself (4xx)"),
  COUNTER(upstream_requests, "Requests sent to the upstream (each attempt, once sent)"),
  COUNTER(upstream_errors, "Upstream requests that failed or answered unusably"),
  COUNTER(upstream_retries, "Upstream attempts repeated after a failed connection or a 502/503/504"),
  COUNTER(rate_limit_pauses, "Upstream 429 answers that paused every upstream request"),
  COUNTER(upstream_refused, "Fetches not sent because of a rate-limit pause or an open circuit"),
  COUNTER(fetches_refused, "Fetches refused because their user's queue for a fetch slot was full"),
  COUNTER(fetches_waited, "Fetches that waited in their user's queue for a free fetch slot"),
  COUNTER(fetch_wait_timeouts, "Fetches not sent because their timeout_ms ran out while they waited for a slot"),
  COUNTER(fetches_moved, "Waiting fetches moved to the shorter queue of another user who joined them"),
  COUNTER(breaker_opens, "Times the upstream circuit breaker opened"),
  COUNTER(token_refreshes, "OAuth access tokens obtained"),
  COUNTER(token_failures, "OAuth token requests that failed"),
  COUNTER(cache_writes, "Entries written to the cache"),
  COUNTER(cache_write_errors, "Cache writes that failed"),
  COUNTER(cache_full_skips, "Cache writes skipped because the map was full"),
  COUNTER(evictions, "Entries evicted (oldest first) to make room in the cache"),
  COUNTER(expired_removed, "Entries past every stale window removed by the sweeper or the reclaimer"),
  COUNTER(purged, "Entries removed through the admin routes"),
  COUNTER(cache_rebuilds, "Damaged or foreign cache files moved aside"),
  COUNTER(background_refreshes, "Upstream fetches started to refresh a stale copy"),
  COUNTER(refresh_ahead, "Refresh-ahead's upstream fetches started by a fresh hit at or past the entry's due time"),
  COUNTER(refresh_scheduled, "Upstream fetches started by refresh-ahead's schedule before an entry expires"),
  COUNTER(hot_untracked, "Entries worth refreshing that the full refresh schedule could not hold"),
  COUNTER(refresh_used, "Scheduled refreshes whose new copy was asked for afterwards"),
  COUNTER(refresh_unused, "Scheduled refreshes whose new copy nobody asked for before its own due time"),
  COUNTER(not_modified, "Enrollment answers that were 304 Not Modified (If-None-Match matched)"),
  COUNTER(upstream_not_modified, "Upstream 304s to a conditional refresh: a copy renewed without its body"),
  COUNTER(waiters_refused, "Requests refused because one fetch had too many waiters"),
  COUNTER(reloads, "SIGHUPs that applied a configuration"),
  COUNTER(credential_reloads, "Credentials replaced by a SIGHUP"),
  COUNTER(connections_accepted, "Client connections accepted, refused ones included"),
  COUNTER(connections_refused, "Client connections answered 503 because max_connections were open"),
  COUNTER(connections_refused_per_user, "Client connections answered 503 because their user held max_connections_per_user"),
  COUNTER(connections_closed_idle, "Idle client connections closed to make room for a new one"),
  COUNTER(peer_unknown, "Client connections whose peer's user could not be proven (uid=?)"),
  COUNTER(request_timeouts, "Request heads not complete within request_timeout (answered 408)"),
  COUNTER(refused_misdirected, "Requests refused 421: the Host was not this daemon's"),
  COUNTER(refused_web_page, "Requests refused 403: sent by a web page (Origin, Sec-Fetch-Site)"),
  COUNTER(refused_not_allowed, "Enrollment requests refused 403: the peer is not in the allow lists"),
  COUNTER(refused_not_admin, "Admin requests refused 403: the peer is not in the admin lists"),
  COUNTER(refused_miss_quota, "Misses refused 429: the user's miss_rate_per_user was spent"),
  COUNTER(warm_runs, "Warm-up runs started"),
  COUNTER(warm_stored, "Entries stored from the list endpoint by the warm-up"),
  COUNTER(warm_failures, "Program lists the warm-up could not ask for, fetch, or accept"),
  COUNTER(shared_lookups, "Entries asked of the shared tier (Redis)"),
  COUNTER(shared_hits, "Shared-tier lookups that found a usable copy (the upstream not asked)"),
  COUNTER(shared_invalid, "Shared-tier values, locks and messages refused: not sealed for their "
                          "id by a key of this host, failing a check, too long or of another "
                          "type (deleted)"),
  COUNTER(shared_writes, "Entries fetched here and written to the shared tier"),
  COUNTER(shared_lock_waits, "Fetches that waited on another host's fetch of the same id"),
  COUNTER(shared_lock_timeouts, "Fetches that gave up waiting on another host and asked the upstream"),
  COUNTER(shared_purges_sent, "Admin purges sent to every host through the shared tier"),
  COUNTER(shared_purges_received, "Purges from other hosts applied here"),
  COUNTER(shared_errors, "Shared-tier commands that failed, timed out or lost their connection"),
  COUNTER(shared_breaker_opens, "Times a shared-tier connection's circuit opened"),
  COUNTER(shared_disconnects, "Shared-tier connections closed or lost"),
  COUNTER(shared_switches, "New Redis masters named by the sentinels that this host shares through"),
  COUNTER(shared_purges_repeated, "Purges sent again: owed while the tier was unavailable, or "
                                  "repeated to a new master"),
  GAUGE(uptime_seconds, "Seconds since start"),
  GAUGE(inflight, "Upstream fetches in progress"),
  GAUGE(fetches_waiting, "Fetches waiting in their users' queues for a free fetch slot"),
  GAUGE(fetch_slots, "Fetches the upstream may carry at once: max_fetches, at most max_connections over HTTP/1"),
  GAUGE(breaker_state, "Upstream circuit breaker: 0 closed, 1 open, 2 half-open"),
  GAUGE(upstream_paused_seconds, "Seconds left of a rate-limit pause"),
  GAUGE(cache_entries, "Entries in the cache"),
  GAUGE(cache_bytes, "Bytes of the cache map in use"),
  GAUGE(cache_max_bytes, "Size limit of the cache map in bytes"),
  GAUGE(connections, "Client connections open"),
  SAMPLED_COUNTER(cache_syncs, "Flushes of committed cache writes to disk (one a second)"),
  GAUGE(cache_set_aside, "1 while a damaged cache file is kept for a post-mortem"),
  GAUGE(cache_unavailable, "1 while the cache cannot be opened and every request goes upstream"),
  GAUGE(credential_rejected, "1 while the upstream rejects the daemon's credential"),
  GAUGE(warm_running, "1 while a warm-up run is in progress"),
  GAUGE(hot_scheduled, "Entries refresh-ahead's schedule holds (due for a refresh, or awaiting its use)"),
  GAUGE(shared_state, "The shared tier: 0 off, 1 up, 2 down"),
  GAUGE(shared_waiting, "Fetches waiting on another host's fetch now"),
  SAMPLED_COUNTER(shared_unavailable_seconds, "Whole seconds without the shared tier since the "
                                              "start (Redis down, a failover, the circuit open)"),
};
#define FIELD_COUNT (sizeof(FIELDS) / sizeof(FIELDS[0]))

const double STATS_LATENCY_BOUNDS[STATS_LATENCY_BUCKETS] = {
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
};

void stats_cache_share(const struct stats *stats, uint64_t *answered, uint64_t *from_cache) {
  *answered = stats->hits + stats->stale_served + stats->negative_hits + stats->misses;
  *from_cache = *answered - stats->misses;
}

const double STATS_ANSWER_BOUNDS[STATS_ANSWER_BUCKETS] = {
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30,
};

static const char *const ANSWER_NAMES[STATS_ANSWER_KINDS] = {"hit", "stale", "miss", "error"};

void stats_observe_answer(struct stats *stats, enum stats_answer outcome, double seconds) {
  size_t bucket = 0;
  while (bucket < STATS_ANSWER_BUCKETS && seconds > STATS_ANSWER_BOUNDS[bucket])
    bucket++;
  stats->answer_bucket[outcome][bucket]++;
  stats->answer_count[outcome]++;
  stats->answer_sum_seconds[outcome] += seconds;
}

void stats_observe_upstream_latency(struct stats *stats, double seconds) {
  size_t bucket = 0;
  while (bucket < STATS_LATENCY_BUCKETS && seconds > STATS_LATENCY_BOUNDS[bucket])
    bucket++;
  stats->upstream_latency_bucket[bucket]++;
  stats->upstream_latency_count++;
  stats->upstream_latency_sum_seconds += seconds;
}

static uint64_t field_value(const struct stat_field *field, const struct stats *stats,
                            const struct stats_gauges *gauges) {
  const char *base = field->sampled ? (const char *)gauges : (const char *)stats;
  uint64_t value;
  memcpy(&value, base + field->offset, sizeof(value));
  return value;
}

char *stats_render_json(const struct stats *stats, const struct stats_gauges *gauges) {
  json_object *root = json_object_new_object();
  if (!root)
    return NULL;
  json_object_object_add(root, "version", json_object_new_string(FLIPCACHED_VERSION));
  for (size_t i = 0; i < FIELD_COUNT; i++)
    json_object_object_add(root, FIELDS[i].name,
                           json_object_new_uint64(field_value(&FIELDS[i], stats, gauges)));
  json_object_object_add(root, "shared_master", json_object_new_string(gauges->shared_master));
  char *text = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
  json_object_put(root);
  return text;
}

char *stats_render_prometheus(const struct stats *stats, const struct stats_gauges *gauges) {
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  if (!out)
    return NULL;
  fprintf(out, "# HELP flipcached_build_info Version of flipcached\n");
  fprintf(out, "# TYPE flipcached_build_info gauge\n");
  fprintf(out, "flipcached_build_info{version=\"%s\"} 1\n", FLIPCACHED_VERSION);
  if (gauges->shared_master[0]) { /* numeric addresses: nothing to escape in a label */
    fprintf(out, "# HELP flipcached_shared_master_info The Redis master the shared tier uses\n");
    fprintf(out, "# TYPE flipcached_shared_master_info gauge\n");
    fprintf(out, "flipcached_shared_master_info{address=\"%s\"} 1\n", gauges->shared_master);
  }
  for (size_t i = 0; i < FIELD_COUNT; i++) {
    const struct stat_field *field = &FIELDS[i];
    /* Prometheus counters end in _total; requests_total already does. */
    const char *suffix =
        field->is_gauge || strstr(field->name, "_total") ? "" : "_total";
    fprintf(out, "# HELP flipcached_%s%s %s\n", field->name, suffix, field->help);
    fprintf(out, "# TYPE flipcached_%s%s %s\n", field->name, suffix,
            field->is_gauge ? "gauge" : "counter");
    fprintf(out, "flipcached_%s%s %llu\n", field->name, suffix,
            (unsigned long long)field_value(field, stats, gauges));
  }
  /* A Prometheus histogram: cumulative buckets, then +Inf, _sum and _count. */
  const char *name = "flipcached_upstream_request_duration_seconds";
  fprintf(out, "# HELP %s Duration of upstream fetches, retries included\n", name);
  fprintf(out, "# TYPE %s histogram\n", name);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < STATS_LATENCY_BUCKETS; i++) {
    cumulative += stats->upstream_latency_bucket[i];
    fprintf(out, "%s_bucket{le=\"%g\"} %llu\n", name, STATS_LATENCY_BOUNDS[i],
            (unsigned long long)cumulative);
  }
  cumulative += stats->upstream_latency_bucket[STATS_LATENCY_BUCKETS];
  fprintf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cumulative);
  fprintf(out, "%s_sum %.6f\n", name, stats->upstream_latency_sum_seconds);
  fprintf(out, "%s_count %llu\n", name, (unsigned long long)stats->upstream_latency_count);
  /* The daemon's own answers, one histogram with an outcome label. */
  name = "flipcached_answer_duration_seconds";
  fprintf(out, "# HELP %s Enrollment answers from the request's first byte, by outcome\n", name);
  fprintf(out, "# TYPE %s histogram\n", name);
  for (size_t kind = 0; kind < STATS_ANSWER_KINDS; kind++) {
    uint64_t total = 0;
    for (size_t i = 0; i < STATS_ANSWER_BUCKETS; i++) {
      total += stats->answer_bucket[kind][i];
      fprintf(out, "%s_bucket{outcome=\"%s\",le=\"%g\"} %llu\n", name, ANSWER_NAMES[kind],
              STATS_ANSWER_BOUNDS[i], (unsigned long long)total);
    }
    total += stats->answer_bucket[kind][STATS_ANSWER_BUCKETS];
    fprintf(out, "%s_bucket{outcome=\"%s\",le=\"+Inf\"} %llu\n", name, ANSWER_NAMES[kind],
            (unsigned long long)total);
    fprintf(out, "%s_sum{outcome=\"%s\"} %.6f\n", name, ANSWER_NAMES[kind],
            stats->answer_sum_seconds[kind]);
    fprintf(out, "%s_count{outcome=\"%s\"} %llu\n", name, ANSWER_NAMES[kind],
            (unsigned long long)stats->answer_count[kind]);
  }
  if (fclose(out) != 0) {
    free(text);
    return NULL;
  }
  return text;
}
