/* admin: the /cache routes (when [server] admin = yes). They read and delete the cache only and
 * never contact the upstream, but for POST /cache/warm, which starts a warm-up run (warm.h). A
 * delete also wins over a fetch of that id in progress: the fetch answers its waiters but stores
 * nothing (cache.h says what becomes of the deleted bytes). With the shared tier on, a delete
 * also removes the entry (or every entry) from Redis and tells every host (fleet.h); it is
 * answered when Redis has answered, within [shared] timeout_ms per command.
 * Only peers with ACCESS_ADMIN reach them (front.c); every delete is logged with who did it. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"

#include "clock.h"
#include "cache.h"
#include "enrollment.h"
#include "fleet.h"
#include "flipcached.h"
#include "front.h"
#include "inflight.h"
#include "log.h"
#include "peer.h"
#include "record.h"
#include "cache_status.h"
#include "errors.h"
#include "route.h"
#include "warm.h"

static void reply_json(struct client_request *request, int status, json_object *root) {
  const char *text = root ? json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN) : NULL;
  struct reply reply = {.status = root ? status : 500, .age = -1, .retry_after = -1,
                        .body = text ? text : "", .body_len = text ? strlen(text) : 0};
  front_reply(request, &reply);
  json_object_put(root);
}

static void add_time(json_object *root, const char *name, int64_t seconds) {
  char text[32] = "";
  time_t when = (time_t)seconds;
  struct tm tm;
  if (gmtime_r(&when, &tm))
    strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
  json_object_object_add(root, name, json_object_new_string(text));
}

static const char *state_name(const struct cache_record *record, int64_t now,
                              const struct config *cfg) {
  switch (record_freshness(record, now, cfg->stale_while_revalidate, cfg->stale_if_error)) {
  case FRESHNESS_FRESH:
    return record->upstream_status == 200 ? "fresh" : "negative";
  case FRESHNESS_STALE_WHILE_REVALIDATE:
  case FRESHNESS_STALE_IF_ERROR:
    return "stale";
  case FRESHNESS_EXPIRED:
    break;
  }
  return "expired";
}

/* What the admin routes say of one entry (never its body). */
static json_object *entry_json(const char *enrollment_id, const struct cache_record *record,
                               size_t record_bytes, const struct config *cfg, int64_t now) {
  json_object *root = json_object_new_object();
  if (!root)
    return NULL;
  json_object_object_add(root, "id", json_object_new_string(enrollment_id));
  json_object_object_add(root, "state", json_object_new_string(state_name(record, now, cfg)));
  json_object_object_add(root, "upstream_status", json_object_new_int(record->upstream_status));
  add_time(root, "fetched_at", record->fetched_at);
  add_time(root, "fresh_until", record->fresh_until);
  add_time(root, "stale_until", record->stale_until);
  json_object_object_add(root, "age_seconds", json_object_new_int64(record_age(record, now)));
  json_object_object_add(root, "ttl_seconds", json_object_new_int64(record_ttl_left(record, now)));
  json_object_object_add(root, "body_bytes", json_object_new_int64(record->body_len));
  json_object_object_add(root, "record_bytes", json_object_new_int64((int64_t)record_bytes));
  return root;
}

void admin_cache_inspect(struct client_request *request, const char *enrollment_id, void *arg) {
  struct flipcached *daemon = arg;
  struct cache_entry entry;
  enum cache_lookup lookup = cache_get(daemon->cache, enrollment_id, &entry);
  if (lookup == CACHE_ERROR) {
    front_reply_empty(request, 500);
    return;
  }
  if (lookup == CACHE_ABSENT) {
    front_reply_error(request, API_ERROR_NOT_FOUND, NULL, -1, NULL);
    return;
  }
  json_object *root = entry_json(enrollment_id, &entry.record, entry.copy_len, &daemon->cfg,
                                 clock_wall_seconds());
  if (root)
    json_object_object_add(root, "fetch_in_progress",
                           json_object_new_boolean(inflight_find(daemon->inflight, enrollment_id) != NULL));
  cache_entry_release(&entry);
  reply_json(request, 200, root);
}

struct page_builder {
  json_object *entries;
  const struct config *cfg;
  int64_t now;
  char last[UUID_TEXT_LEN + 1];
};

static void add_listed(const char *enrollment_id, const struct cache_record *record,
                       size_t record_bytes, void *arg) {
  struct page_builder *page = arg;
  json_object *entry = entry_json(enrollment_id, record, record_bytes, page->cfg, page->now);
  if (entry)
    json_object_array_add(page->entries, entry);
  memcpy(page->last, enrollment_id, sizeof(page->last));
}

void admin_cache_list(struct client_request *request, const char *query, void *arg) {
  struct flipcached *daemon = arg;
  struct cache_page page;
  if (route_parse_cache_page(query, &page)) {
    front_reply_error(request, API_ERROR_BAD_PAGE, NULL, -1, NULL);
    return;
  }
  struct page_builder builder = {.entries = json_object_new_array(), .cfg = &daemon->cfg,
                                 .now = clock_wall_seconds()};
  json_object *root = json_object_new_object();
  bool more = false;
  long listed = builder.entries ? cache_list(daemon->cache, page.after, page.limit, add_listed,
                                             &builder, &more)
                                : -1;
  if (listed < 0 || !root) {
    json_object_put(builder.entries);
    json_object_put(root);
    front_reply_empty(request, 500);
    return;
  }
  json_object_object_add(root, "entries", builder.entries);
  json_object_object_add(root, "count", json_object_new_int64(listed));
  if (more && listed > 0) {
    char next[96];
    snprintf(next, sizeof(next), "/cache?after=%s&limit=%u", builder.last, page.limit);
    json_object_object_add(root, "next_after", json_object_new_string(builder.last));
    json_object_object_add(root, "next", json_object_new_string(next));
  } else {
    json_object_object_add(root, "next_after", NULL);
    json_object_object_add(root, "next", NULL);
  }
  reply_json(request, 200, root);
}

void admin_cache_warm(struct client_request *request, void *arg) {
  struct flipcached *daemon = arg;
  char who[PEER_TEXT_MAX];
  peer_text(front_request_peer(request), who);
  enum warm_start started = warm_run_now(daemon->warm);
  if (started == WARM_NOT_CONFIGURED) {
    front_reply_error(request, API_ERROR_WARM_NOT_CONFIGURED, NULL, -1, NULL);
    return;
  }
  if (started == WARM_STARTED)
    log_info("admin: warm-up run started (by %s)", who);
  json_object *root = json_object_new_object();
  if (root) {
    json_object_object_add(root, "started", json_object_new_boolean(started == WARM_STARTED));
    json_object_object_add(root, "running", json_object_new_boolean(1));
    json_object_object_add(root, "programs",
                           json_object_new_int64(warm_program_count(daemon->warm)));
  }
  reply_json(request, 202, root);
}

/* An admin purge waiting for the shared tier's answer (fleet.h), to answer its request. */
struct fleet_purge_wait {
  struct client_request *request;
  char enrollment_id[UUID_TEXT_LEN + 1]; /* empty: the whole cache */
  bool found;                            /* the local copy existed (one id) */
  uint64_t removed;                      /* local entries removed (the whole cache) */
};

/* The "shared" member of a purge's answer: what Redis deleted and how many daemons heard it, or
 * why the other hosts may not have. */
static json_object *shared_json(const struct fleet_purge_result *result, const char *unavailable) {
  json_object *shared = json_object_new_object();
  if (!shared)
    return NULL;
  const char *error = result ? result->error : unavailable;
  if (error) {
    json_object_object_add(shared, "error", json_object_new_string(error));
  } else {
    json_object_object_add(shared, "deleted", json_object_new_uint64(result->deleted));
    json_object_object_add(shared, "hosts_notified", json_object_new_uint64(result->notified));
  }
  return shared;
}

/* Answers a purge: 200 with what was deleted, or 404 for one id that neither this host nor Redis
 * held. shared: NULL when the tier is off. */
static void answer_purge(struct client_request *request, const char *enrollment_id, bool found,
                         uint64_t removed, json_object *shared) {
  if (enrollment_id && !found) {
    json_object_put(shared);
    front_reply_error(request, API_ERROR_NOT_FOUND, NULL, -1, NULL);
    return;
  }
  json_object *root = json_object_new_object();
  if (root) {
    if (enrollment_id) {
      json_object_object_add(root, "id", json_object_new_string(enrollment_id));
      json_object_object_add(root, "deleted", json_object_new_boolean(1));
    } else {
      json_object_object_add(root, "deleted", json_object_new_uint64(removed));
    }
    if (shared)
      json_object_object_add(root, "shared", shared);
  } else {
    json_object_put(shared);
  }
  reply_json(request, 200, root);
}

static void on_fleet_purged(const struct fleet_purge_result *result, void *arg) {
  struct fleet_purge_wait *wait = arg;
  bool one = wait->enrollment_id[0] != '\0';
  bool found = wait->found || (!result->error && result->deleted > 0);
  answer_purge(wait->request, one ? wait->enrollment_id : NULL, found, wait->removed,
               shared_json(result, NULL));
  free(wait);
}

/* After the local purge: through the shared tier when it is on (answered when Redis has), else
 * answered now. */
static void purge_through_fleet(struct flipcached *daemon, struct client_request *request,
                                const char *enrollment_id, bool found, uint64_t removed) {
  if (!fleet_enabled(daemon->fleet)) {
    answer_purge(request, enrollment_id, found, removed, NULL);
    return;
  }
  struct fleet_purge_wait *wait = calloc(1, sizeof(*wait));
  if (wait) {
    *wait = (struct fleet_purge_wait){.request = request, .found = found, .removed = removed};
    if (enrollment_id)
      snprintf(wait->enrollment_id, sizeof(wait->enrollment_id), "%s", enrollment_id);
    bool sent = enrollment_id ? fleet_purge_enrollment(daemon->fleet, enrollment_id,
                                                       on_fleet_purged, wait)
                              : fleet_purge_all(daemon->fleet, on_fleet_purged, wait);
    if (sent)
      return;
    free(wait);
  }
  log_warning("admin: the purge did not reach the other hosts yet: the shared tier is "
              "unavailable; it is sent when the tier is back");
  answer_purge(request, enrollment_id, found, removed,
               shared_json(NULL, "the shared tier is unavailable: other hosts keep their copies "
                           "until it is back, when this host sends the purge"));
}

void admin_cache_delete(struct client_request *request, const char *enrollment_id, void *arg) {
  struct flipcached *daemon = arg;
  bool found = false;
  char err[256], who[PEER_TEXT_MAX];
  peer_text(front_request_peer(request), who);
  if (enrollment_forget(daemon, enrollment_id, &found, err, sizeof(err)) != 0) {
    log_error("admin: purging %s for %s failed: %s", enrollment_id, who, err);
    front_reply_empty(request, 500);
    return;
  }
  if (found) {
    daemon->stats.purged++;
    log_info("admin: purged enrollment %s from the cache (by %s)", enrollment_id, who);
  }
  purge_through_fleet(daemon, request, enrollment_id, found, 0);
}

void admin_cache_purge(struct client_request *request, void *arg) {
  struct flipcached *daemon = arg;
  uint64_t removed = 0;
  char err[256], who[PEER_TEXT_MAX];
  peer_text(front_request_peer(request), who);
  if (enrollment_forget_all(daemon, &removed, err, sizeof(err)) != 0) {
    log_error("admin: purging the cache for %s failed: %s", who, err);
    front_reply_empty(request, 500);
    return;
  }
  daemon->stats.purged += removed;
  log_info("admin: purged the whole cache (%llu entries; by %s)", (unsigned long long)removed, who);
  purge_through_fleet(daemon, request, NULL, true, removed);
}
