/* enrollment: the policy of GET/HEAD /v1/enrollments/{id}: fresh hit, miss, upstream error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "flipcached.h"
#include "front.h"
#include "log.h"
#include "record.h"
#include "render.h"
#include "route.h"
#include "upstream.h"
#include "validate.h"

#define CACHE_STATUS_MAX 160
#define RETRY_AFTER_DEFAULT_SECONDS 30
#define RETRY_AFTER_MAX_SECONDS 3600

/* One request waiting for its upstream fetch. */
struct pending_fetch {
  struct flipcached *daemon;
  struct client_request *request;
  char enrollment_id[UUID_TEXT_LEN + 1];
  bool had_expired_copy; /* the cache held an expired entry: Cache-Status says fwd=stale */
};

long long flipcached_wall_now(void) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return (long long)now.tv_sec;
}

static void reply_body(struct client_request *request, int status, const struct cache_status *cs,
                       long long age, const char *body, size_t body_len) {
  char cache_status[CACHE_STATUS_MAX];
  render_cache_status(cs, cache_status, sizeof(cache_status));
  struct reply reply = {.status = status, .cache_status = cache_status, .age = age,
                        .retry_after = -1, .body = body, .body_len = body_len};
  front_reply(request, &reply);
}

static void reply_error(struct client_request *request, enum api_error error,
                        struct cache_status *cs, long retry_after) {
  char cache_status[CACHE_STATUS_MAX];
  cs->detail = api_error_code(error);
  render_cache_status(cs, cache_status, sizeof(cache_status));
  front_reply_error(request, error, cache_status, retry_after, NULL);
}

/* What the client is told for an upstream answer that cannot be served. */
static enum api_error error_for_status(long http_status) {
  if (http_status == 401 || http_status == 403)
    return API_ERROR_UPSTREAM_AUTH_FAILED;
  if (http_status == 429)
    return API_ERROR_UPSTREAM_RATE_LIMITED;
  if (http_status >= 500)
    return API_ERROR_UPSTREAM_UNAVAILABLE;
  return API_ERROR_UPSTREAM_INVALID_RESPONSE; /* 1xx, 3xx (never followed), other 4xx */
}

static enum api_error error_for_outcome(enum upstream_outcome outcome) {
  switch (outcome) {
  case UPSTREAM_TIMEOUT:
    return API_ERROR_UPSTREAM_TIMEOUT;
  case UPSTREAM_BODY_TOO_LARGE:
    return API_ERROR_UPSTREAM_INVALID_RESPONSE;
  default:
    return API_ERROR_UPSTREAM_UNAVAILABLE;
  }
}

/* Stores a validated 200 body; true when it was stored. */
static bool store_enrollment(struct flipcached *daemon, const char *enrollment_id,
                             const char *body, size_t body_len, long long now) {
  const struct config *cfg = &daemon->cfg;
  unsigned grace = cfg->stale_while_revalidate > cfg->stale_if_error ? cfg->stale_while_revalidate
                                                                     : cfg->stale_if_error;
  struct cache_record record = {
    .upstream_status = 200,
    .fetched_at = now,
    .fresh_until = now + cfg->ttl,
    .stale_until = now + cfg->ttl + grace,
    .body = (const unsigned char *)body,
    .body_len = (uint32_t)body_len,
  };
  char err[256];
  if (cache_put(daemon->cache, enrollment_id, &record, err, sizeof(err)) != 0) {
    daemon->stats.cache_write_errors++;
    log_warning("cache: could not store %s: %s (served without storing)", enrollment_id, err);
    return false;
  }
  daemon->stats.cache_writes++;
  return true;
}

static void on_fetched(const struct upstream_result *result, void *arg) {
  struct pending_fetch *pending = arg;
  struct flipcached *daemon = pending->daemon;
  struct client_request *request = pending->request;
  const char *enrollment_id = pending->enrollment_id;
  struct cache_status cs = {.fwd = pending->had_expired_copy ? "stale" : "uri-miss"};

  if (result->outcome != UPSTREAM_RESPONSE) {
    log_warning("upstream: enrollment %s: %s", enrollment_id, result->error_text);
    reply_error(request, error_for_outcome(result->outcome), &cs, -1);
    goto done;
  }
  long status = result->http_status;
  if (status != 200)
    cs.fwd_status = (int)status;
  if (status == 200) {
    enum body_verdict verdict = validate_enrollment_body(result->body, result->body_len,
                                                         enrollment_id);
    if (verdict != BODY_OK) {
      daemon->stats.upstream_errors++;
      log_warning("upstream: enrollment %s: 200 body refused: %s", enrollment_id,
                  body_verdict_text(verdict));
      reply_error(request, API_ERROR_UPSTREAM_INVALID_RESPONSE, &cs, -1);
      goto done;
    }
    cs.stored = store_enrollment(daemon, enrollment_id, result->body, result->body_len,
                                 flipcached_wall_now());
    reply_body(request, 200, &cs, 0, result->body, result->body_len);
  } else if (status == 404) {
    /* Passed on with the upstream's own body when it is JSON in the error shape's spirit; an
     * empty or non-JSON 404 body gets ours, so clients always parse the same shape. */
    if (validate_enrollment_body(result->body, result->body_len, enrollment_id) == BODY_NOT_JSON) {
      reply_error(request, API_ERROR_NOT_FOUND, &cs, -1);
    } else {
      reply_body(request, 404, &cs, 0, result->body, result->body_len);
    }
  } else {
    daemon->stats.upstream_errors++;
    enum api_error error = error_for_status(status);
    if (error == API_ERROR_UPSTREAM_AUTH_FAILED)
      log_error("upstream rejected the credential from %s (HTTP %ld)", daemon->creds.source,
                status);
    else
      log_warning("upstream: enrollment %s: HTTP %ld", enrollment_id, status);
    long retry_after = -1;
    if (error == API_ERROR_UPSTREAM_RATE_LIMITED)
      retry_after = result->retry_after_seconds >= 0 &&
                            result->retry_after_seconds <= RETRY_AFTER_MAX_SECONDS
                        ? result->retry_after_seconds
                        : RETRY_AFTER_DEFAULT_SECONDS;
    reply_error(request, error, &cs, retry_after);
  }
done:
  free(pending);
}

void enrollment_handle(struct client_request *request, const char *enrollment_id, void *arg) {
  struct flipcached *daemon = arg;
  daemon->stats.enrollment_requests++;
  if (!enrollment_id) {
    daemon->stats.invalid_requests++;
    struct cache_status cs = {0};
    reply_error(request, API_ERROR_INVALID_ID, &cs, -1);
    return;
  }

  long long now = flipcached_wall_now();
  struct cache_entry entry;
  enum cache_lookup lookup = cache_get(daemon->cache, enrollment_id, &entry);
  bool had_expired_copy = false;
  if (lookup == CACHE_FOUND) {
    const struct cache_record *record = &entry.record;
    if (now < record->fresh_until && record->upstream_status == 200) {
      daemon->stats.hits++;
      struct cache_status cs = {.hit = true, .ttl = record_ttl_left(record, now)};
      reply_body(request, 200, &cs, record_age(record, now), (const char *)record->body,
                 record->body_len);
      cache_entry_release(&entry);
      return;
    }
    had_expired_copy = true;
    cache_entry_release(&entry);
  }

  daemon->stats.misses++;
  struct pending_fetch *pending = calloc(1, sizeof(*pending));
  if (!pending) {
    struct cache_status cs = {.fwd = "uri-miss"};
    reply_error(request, API_ERROR_UPSTREAM_UNAVAILABLE, &cs, -1);
    return;
  }
  pending->daemon = daemon;
  pending->request = request;
  pending->had_expired_copy = had_expired_copy;
  memcpy(pending->enrollment_id, enrollment_id, sizeof(pending->enrollment_id));
  if (upstream_fetch_enrollment(daemon->upstream, enrollment_id, on_fetched, pending) != 0) {
    struct cache_status cs = {.fwd = had_expired_copy ? "stale" : "uri-miss"};
    free(pending);
    reply_error(request, API_ERROR_UPSTREAM_UNAVAILABLE, &cs, -1);
  }
}
