/* status: /stats, /metrics, /healthz and systemd's STATUS= line (status.h). */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

#include "cache.h"
#include "fleet.h"
#include "flipcached.h"
#include "front.h"
#include "systemd.h"
#include "upstream.h"
#include "refresh_schedule.h"
#include "warm.h"

static void sample_gauges(struct flipcached *daemon, struct stats_gauges *gauges) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  memset(gauges, 0, sizeof(*gauges));
  gauges->uptime_seconds = (uint64_t)(now.tv_sec - daemon->started.tv_sec);
  gauges->inflight = upstream_inflight(daemon->upstream);
  upstream_fetch_slots(daemon->upstream, &gauges->fetch_slots, &gauges->fetches_waiting);
  gauges->breaker_state = (uint64_t)upstream_breaker_state(daemon->upstream);
  gauges->upstream_paused_seconds = (uint64_t)upstream_paused_seconds(daemon->upstream);
  gauges->cache_max_bytes = daemon->cfg.max_size;
  cache_usage(daemon->cache, &gauges->cache_entries, &gauges->cache_bytes);
  gauges->connections = front_connections(daemon->front);
  gauges->cache_syncs = cache_syncs(daemon->cache);
  gauges->cache_set_aside = cache_set_aside_file(daemon->cache) != NULL;
  gauges->cache_unavailable = cache_unavailable(daemon->cache) != NULL;
  gauges->credential_rejected = daemon->auth_rejected_status != 0;
  gauges->warm_running = daemon->warm && warm_running(daemon->warm);
  gauges->hot_scheduled = daemon->hot ? hot_scheduled(daemon->hot) : 0;
  gauges->shared_state = fleet_state(daemon->fleet);
  gauges->shared_waiting = fleet_waiting(daemon->fleet);
  gauges->shared_unavailable_seconds = fleet_unavailable_ms(daemon->fleet) / 1000;
  snprintf(gauges->shared_master, sizeof(gauges->shared_master), "%s",
           fleet_master(daemon->fleet));
}

static void reply_text(struct client_request *request, int status, const char *content_type,
                       char *text) {
  if (!text) {
    front_reply_empty(request, 500); /* out of memory */
    return;
  }
  struct reply reply = {.status = status, .content_type = content_type, .age = -1,
                        .retry_after = -1, .body = text, .body_len = strlen(text)};
  front_reply(request, &reply);
  free(text);
}

void status_stats(struct client_request *request, void *arg) {
  struct flipcached *daemon = arg;
  struct stats_gauges gauges;
  sample_gauges(daemon, &gauges);
  reply_text(request, 200, NULL, stats_render_json(&daemon->stats, &gauges));
}

void status_metrics(struct client_request *request, void *arg) {
  struct flipcached *daemon = arg;
  struct stats_gauges gauges;
  sample_gauges(daemon, &gauges);
  reply_text(request, 200, "text/plain; version=0.0.4; charset=utf-8",
             stats_render_prometheus(&daemon->stats, &gauges));
}

/* 200 while the daemon can serve; 503 with a reason when it is stopping, or when the upstream
 * rejected its credential (nothing new can be fetched until an operator acts: cached entries are
 * still served). An unavailable cache makes it "degraded" with the reason but stays 200:
 * everything is served from the upstream meanwhile. */
void status_healthz(struct client_request *request, void *arg) {
  struct flipcached *daemon = arg;
  struct stats_gauges gauges;
  sample_gauges(daemon, &gauges);
  json_object *root = json_object_new_object();
  char *text = NULL;
  if (root) {
    char reason[512] = "";
    const char *cache_problem = cache_unavailable(daemon->cache);
    const char *shared_problem = fleet_problem(daemon->fleet);
    const char *sentinel_problem = fleet_sentinel_problem(daemon->fleet);
    if (daemon->stopping)
      snprintf(reason, sizeof(reason), "shutting down");
    else if (daemon->auth_rejected_status)
      snprintf(reason, sizeof(reason), "the upstream rejected the credential (HTTP %ld); replace it "
               "and %s", daemon->auth_rejected_status, creds_how_to_replace(&daemon->creds));
    else if (cache_problem)
      snprintf(reason, sizeof(reason), "the cache is unavailable (%s): every request goes to the "
               "upstream; opening it is retried every sweep_interval", cache_problem);
    else if (shared_problem)
      snprintf(reason, sizeof(reason), "the shared tier is unavailable (%s): serving from the "
               "local cache and the upstream without it", shared_problem);
    else if (sentinel_problem)
      snprintf(reason, sizeof(reason), "no sentinel is reachable (%s): sharing through master %s, "
               "but a failover would not be followed", sentinel_problem,
               fleet_master(daemon->fleet));
    json_object_object_add(root, "status",
                           json_object_new_string(daemon->stopping          ? "stopping"
                                                  : reason[0]               ? "degraded"
                                                                            : "ok"));
    if (reason[0])
      json_object_object_add(root, "reason", json_object_new_string(reason));
    json_object_object_add(root, "version", json_object_new_string(FLIPCACHED_VERSION));
    json_object_object_add(root, "uptime_seconds", json_object_new_uint64(gauges.uptime_seconds));
    json_object_object_add(root, "cache_entries", json_object_new_uint64(gauges.cache_entries));
    json_object_object_add(root, "cache",
                           json_object_new_string(cache_problem ? "unavailable" : "ok"));
    if (cache_problem)
      json_object_object_add(root, "cache_reason", json_object_new_string(cache_problem));
    json_object_object_add(root, "upstream_inflight", json_object_new_uint64(gauges.inflight));
    if (fleet_enabled(daemon->fleet)) {
      json_object_object_add(root, "shared",
                             json_object_new_string(shared_problem ? "unavailable" : "ok"));
      if (shared_problem)
        json_object_object_add(root, "shared_reason", json_object_new_string(shared_problem));
      if (fleet_master(daemon->fleet)[0])
        json_object_object_add(root, "shared_master",
                               json_object_new_string(fleet_master(daemon->fleet)));
      if (sentinel_problem)
        json_object_object_add(root, "sentinel_reason", json_object_new_string(sentinel_problem));
    }
    text = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
    json_object_put(root);
  }
  reply_text(request, daemon->stopping || daemon->auth_rejected_status ? 503 : 200, NULL, text);
}

void status_send_systemd(struct flipcached *daemon) {
  uint64_t entries = 0, bytes = 0;
  cache_usage(daemon->cache, &entries, &bytes);
  uint64_t answered, from_cache;
  stats_cache_share(&daemon->stats, &answered, &from_cache);
  const char *upstream = daemon->auth_rejected_status ? "credential rejected"
                         : upstream_paused_seconds(daemon->upstream) > 0 ? "rate limited"
                         : upstream_breaker_state(daemon->upstream) != BREAKER_CLOSED ? "circuit open"
                                                                                     : "ok";
  sd_send_status("%llu entries, %llu%% from cache of %llu enrollment requests, upstream %s",
                 (unsigned long long)entries,
                 (unsigned long long)(answered ? from_cache * 100 / answered : 0),
                 (unsigned long long)answered, upstream);
}
