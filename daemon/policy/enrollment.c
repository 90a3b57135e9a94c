/* enrollment: the policy of GET/HEAD /v1/enrollments/{id}.
 *
 *   fresh entry                      -> served (a remembered 404 too)
 *   stale within stale_while_revalidate -> served at once; one background refresh for the id
 *   otherwise                        -> one upstream fetch per id; every request for the id waits
 *                                       on it (coalescing) and gets its result
 *   that fetch fails                 -> a stale copy within stale_if_error, else the error
 * with the client's Cache-Control directives applied first (answer_choice.h decides; here it is
 * carried out). Every 200 carries its ETag (the stored digest) and answers an If-None-Match that
 * matches it with a 304 and no body; every enrollment answer says its freshness in
 * Cache-Control: private, max-age=N. A refresh of a copy the upstream gave validators for is
 * conditional, and the upstream's 304 renews the copy without a body.
 * What is stored: validated 200 bodies (ttl) and 404s (negative_ttl); never 401, 403, 429, 5xx
 * or an invalid body, and nothing for an id deleted through the admin routes while its fetch ran.
 *
 * A miss that starts a fetch takes its user's share of the upstream's fetch slots (fair.h, in
 * upstream.c: it waits in its user's queue while the slots are busy); a background refresh
 * takes the background's share. With miss_rate_per_user set (off by default), such a miss
 * first takes a token of its user's bucket (quota.h); joining a fetch in progress, a hit and a
 * background refresh take none.
 *
 * Counting: each answer counts once, in hits, negative_hits, stale_served (a stale copy, whether
 * served while revalidating or for a failed fetch) or misses (the upstream's result or an error). */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "retry_breaker.h"
#include "enrollment.h"

#include <assert.h>

#include "cache.h"
#include "fair.h"
#include "fetched.h"
#include "fleet.h"
#include "flipcached.h"
#include "front.h"
#include "refresh_schedule.h"
#include "inflight.h"
#include "log.h"
#include "peer.h"
#include "quota.h"
#include "record.h"
#include "answer_choice.h"
#include "cache_status.h"
#include "errors.h"
#include "validators.h"
#include "uuid.h"
#include "store.h"
#include "upstream.h"
#include "validate.h"

#define CACHE_STATUS_MAX 160

static struct stale_windows windows_of(const struct flipcached *daemon) {
  return (struct stale_windows){.stale_while_revalidate = daemon->cfg.stale_while_revalidate,
                                .stale_if_error = daemon->cfg.stale_if_error};
}

/* Answers with a copy: its body, age, freshness (Cache-Control) and, for a 200, its ETag; a 304
 * without the body when the client's If-None-Match matches that ETag (RFC 9110 13.1.2, weak
 * comparison: the same answer whatever the way it was found, hit, stale or fetched). */
static void reply_copy(struct flipcached *daemon, struct client_request *request,
                       enum stats_answer outcome, const struct cache_status *cs,
                       const struct cache_record *record, long long now) {
  stats_observe_answer(&daemon->stats, outcome, front_request_seconds(request));
  char cache_status[CACHE_STATUS_MAX], cache_control[CACHE_CONTROL_MAX], etag[ETAG_TEXT_MAX];
  render_cache_status(cs, cache_status, sizeof(cache_status));
  render_cache_control(record_ttl_left(record, now), cache_control, sizeof(cache_control));
  struct reply reply = {.status = record->upstream_status, .cache_status = cache_status,
                        .cache_control = cache_control, .age = record_age(record, now),
                        .retry_after = -1, .body = (const char *)record->body,
                        .body_len = record->body_len};
  if (record->upstream_status == 200) {
    unsigned char digest[BODY_DIGEST_LEN];
    record_digest(record, digest);
    etag_render(digest, etag);
    reply.etag = etag;
    size_t list_len;
    const char *list = front_request_if_none_match(request, &list_len);
    if (list && if_none_match_matches(list, list_len, etag)) {
      reply.status = 304;
      daemon->stats.not_modified++;
    }
  }
  front_reply(request, &reply);
}

static void reply_error(struct flipcached *daemon, struct client_request *request,
                        enum api_error error, struct cache_status *cs, long retry_after) {
  stats_observe_answer(&daemon->stats, STATS_ANSWER_ERROR, front_request_seconds(request));
  char cache_status[CACHE_STATUS_MAX];
  cs->detail = api_error_code(error);
  render_cache_status(cs, cache_status, sizeof(cache_status));
  front_reply_error(request, error, cache_status, retry_after, NULL);
}

/* Answers from a cached record: a hit (ttl >= 0) or a stale copy (ttl < 0). */
static void reply_record(struct flipcached *daemon, struct client_request *request,
                         const struct cache_record *record, struct cache_status *cs,
                         long long now) {
  cs->ttl = record_ttl_left(record, now);
  reply_copy(daemon, request, cs->ttl >= 0 ? STATS_ANSWER_HIT : STATS_ANSWER_STALE, cs, record,
             now);
}

/* The copy a fetch would replace, kept with the fetch so that the upstream's 304 can renew it
 * (inflight.h): encoded and malloc'd, with the conditions its validators make; bytes NULL when
 * it has no validator that passes record_conditions (a refresh of it is then unconditional) or
 * memory is short. */
struct held_copy {
  unsigned char *bytes;
  size_t len;
  char if_none_match[UPSTREAM_ETAG_MAX + 1];
  char if_modified_since[UPSTREAM_LAST_MODIFIED_MAX + 1];
};

static struct held_copy hold_copy(const struct cache_record *copy) {
  struct held_copy held = {0};
  if (!copy || copy->upstream_status != 200 ||
      !record_conditions(copy, held.if_none_match, held.if_modified_since))
    return held;
  held.len = record_encoded_len(copy);
  held.bytes = malloc(held.len);
  if (held.bytes)
    record_encode(copy, held.bytes);
  return held;
}

/* Gives the held copy to the fetch, and its conditions to the fetch's request. */
static void give_held_copy(struct inflight_fetch *fetch, struct held_copy *held) {
  if (!held->bytes)
    return;
  memcpy(fetch->if_none_match, held->if_none_match, sizeof(fetch->if_none_match));
  memcpy(fetch->if_modified_since, held->if_modified_since, sizeof(fetch->if_modified_since));
  fetch->held_copy = held->bytes;
  fetch->held_copy_len = held->len;
  held->bytes = NULL;
}

int enrollment_forget(struct flipcached *daemon, const char *enrollment_id, bool *found,
                      char *err, size_t err_len) {
  struct inflight_fetch *fetch = inflight_find(daemon->inflight, enrollment_id);
  if (fetch)
    fetch->store_forbidden = true;
  return cache_delete(daemon->cache, enrollment_id, found, err, err_len);
}

int enrollment_forget_all(struct flipcached *daemon, uint64_t *removed, char *err,
                          size_t err_len) {
  inflight_forbid_stores(daemon->inflight);
  return cache_purge_all(daemon->cache, removed, err, err_len);
}

/* The Cache-Status of waiter i: why it went upstream (its tag, answer_choice.h; else what the
 * fetch found), whether the request that caused the fetch stored its answer; the others say
 * they were collapsed into it. */
static struct cache_status waiter_status(const struct inflight_fetch *fetch, size_t i) {
  enum answer_fwd fwd = (enum answer_fwd)front_request_tag(fetch->waiters[i]);
  if (fwd == FWD_NONE)
    fwd = fetch->had_expired_copy ? FWD_STALE : FWD_URI_MISS;
  struct cache_status cs = {.fwd = answer_fwd_text(fwd)};
  cs.collapsed = fetch->background || i > 0;
  return cs;
}

/* Every waiter gets the fetch's answer, a miss here: the record made of the upstream's answer
 * (age 0; a status other than 200, or a 304 that renewed the copy, is told as fwd-status), or,
 * with shared_copy, another host's copy from the shared tier, with its own age and the shared
 * tier's hit named in Cache-Status. */
static void fan_out_record(struct flipcached *daemon, struct inflight_fetch *fetch,
                           const struct cache_record *record, long fwd_status, bool stored,
                           bool shared_copy) {
  long long now = clock_wall_seconds();
  daemon->stats.misses += fetch->waiter_count;
  for (size_t i = 0; i < fetch->waiter_count; i++) {
    struct cache_status cs = waiter_status(fetch, i);
    cs.stored = stored && !cs.collapsed;
    if (shared_copy) {
      cs.shared_hit = true;
      cs.shared_ttl = record_ttl_left(record, now);
    } else if (fwd_status != 200) {
      cs.fwd_status = (int)fwd_status;
    }
    reply_copy(daemon, fetch->waiters[i], STATS_ANSWER_MISS, &cs, record, now);
  }
}

/* Counts an answer given with a cached copy in place of a fetch's: a hit (a remembered 404's
 * negative hit) while it is fresh, else a stale copy served. */
static void count_copy_answer(struct flipcached *daemon, const struct cache_record *copy,
                              long long now) {
  if (now >= copy->fresh_until)
    daemon->stats.stale_served++;
  else if (copy->upstream_status == 200)
    daemon->stats.hits++;
  else
    daemon->stats.negative_hits++;
}

/* The fetch failed: each waiter gets the cached copy when it covers the failure for that
 * request (answer_choice.h: fresh, or within a stale window or its max-stale, and no no-cache),
 * else the error. */
static void fan_out_failure(struct flipcached *daemon, struct inflight_fetch *fetch,
                            enum api_error error, long fwd_status, long retry_after,
                            long long now) {
  struct cache_entry entry;
  bool have_copy = fetch->waiter_count > 0 &&
                   cache_get(daemon->cache, fetch->enrollment_id, &entry) == CACHE_FOUND;
  for (size_t i = 0; i < fetch->waiter_count; i++) {
    struct client_request *waiter = fetch->waiters[i];
    struct cache_status cs = waiter_status(fetch, i);
    cs.fwd_status = (int)fwd_status;
    if (have_copy && answer_copy_covers_failure(front_request_directives(waiter), &entry.record,
                                                now, windows_of(daemon))) {
      /* RFC 9211: forwarded, so not a "hit"; the fwd reason and the upstream's status, plus a
       * detail when the status does not say what failed (none, or a 200 with an invalid body).
       * Age tells the copy's age. */
      if (fwd_status <= 0 || fwd_status == 200)
        cs.detail = api_error_code(error);
      count_copy_answer(daemon, &entry.record, now);
      reply_record(daemon, waiter, &entry.record, &cs, now);
    } else {
      daemon->stats.misses++;
      reply_error(daemon, waiter, error, &cs, retry_after);
    }
  }
  if (have_copy)
    cache_entry_release(&entry);
}

/* The upstream was not asked: the cached copy answers as a hit when it covers the failure for
 * this request (its detail says why), else `error` with retry_after (< 0: none). */
static void answer_unfetched(struct flipcached *daemon, struct client_request *request,
                             const char *enrollment_id, enum api_error error, long retry_after,
                             long long now) {
  struct cache_status cs = {0};
  struct cache_entry entry;
  if (cache_get(daemon->cache, enrollment_id, &entry) == CACHE_FOUND) {
    if (answer_copy_covers_failure(front_request_directives(request), &entry.record, now,
                                   windows_of(daemon))) {
      cs.hit = true;
      cs.detail = api_error_code(error);
      count_copy_answer(daemon, &entry.record, now);
      reply_record(daemon, request, &entry.record, &cs, now);
      cache_entry_release(&entry);
      return;
    }
    cache_entry_release(&entry);
  }
  daemon->stats.misses++;
  reply_error(daemon, request, error, &cs, retry_after);
}

/* The upstream module did not start the fetch (a 429's pause, an open circuit, or its user's
 * queue for a fetch slot full): 503 with the Retry-After it knows (1 s when overloaded), or a
 * stale copy. */
static void answer_refused(struct flipcached *daemon, struct client_request *request,
                           const char *enrollment_id, enum upstream_start refusal,
                           long long now) {
  answer_unfetched(daemon, request, enrollment_id, fetched_refusal_error(refusal),
                   upstream_refusal_retry_after(daemon->upstream, refusal), now);
}

/* Takes a token of the asking user's miss_rate_per_user; false: refused (answered 429, or with
 * a usable stale copy), and nothing goes upstream. */
static bool take_miss_quota(struct flipcached *daemon, struct client_request *request,
                            const char *enrollment_id, long long now) {
  const struct peer *peer = front_request_peer(request);
  uint64_t key = peer_user_key(peer);
  long retry_after;
  if (quota_take(daemon->quota, key, daemon->cfg.miss_rate_per_user, clock_coarse_ms(),
                 &retry_after))
    return true;
  daemon->stats.refused_miss_quota++;
  char who[PEER_TEXT_MAX];
  log_warning_limited("refused a miss of %s from %s: over miss_rate_per_user (%u a second)",
                      enrollment_id, peer_text(peer, who), daemon->cfg.miss_rate_per_user);
  answer_unfetched(daemon, request, enrollment_id, API_ERROR_CLIENT_RATE_LIMITED, retry_after, now);
  return false;
}

/* Logs what a failed fetch's decision says (warnings rate-limited; a rejected credential is an
 * error line). */
static void log_failure(const struct flipcached *daemon, const char *enrollment_id,
                        const struct upstream_result *result, const struct fetched_decision *d) {
  switch (d->note) {
  case FETCHED_NOTE_NONE:
    return;
  case FETCHED_NOTE_TRANSPORT:
    log_warning_limited("upstream: enrollment %s: %s", enrollment_id, result->error_text);
    return;
  case FETCHED_NOTE_INVALID_BODY:
    log_warning_limited("upstream: enrollment %s: 200 body refused: %s", enrollment_id,
                        body_verdict_text(d->verdict));
    return;
  case FETCHED_NOTE_CREDENTIAL:
    log_error("upstream rejected the credential from %s (HTTP %ld)", daemon->creds.source,
              d->fwd_status);
    return;
  case FETCHED_NOTE_CLIENT_CERT:
    log_warning_limited("upstream: enrollment %s: HTTP 400: the upstream refused the client "
                        "certificate, or got none (client_cert, client_key)", enrollment_id);
    return;
  case FETCHED_NOTE_STATUS:
    log_warning_limited("upstream: enrollment %s: HTTP %ld", enrollment_id, d->fwd_status);
    return;
  }
}

/* The upstream's validators of a 200 (or of a 304, which RFC 9111 4.3.4 says updates the
 * stored ones), pointed to by record; those that did not come stay as they were. */
static void take_validators(const struct upstream_result *result, struct cache_record *record) {
  if (result->etag) {
    record->upstream_etag = result->etag;
    record->upstream_etag_len = (uint8_t)result->etag_len;
  }
  if (result->last_modified) {
    record->last_modified = result->last_modified;
    record->last_modified_len = (uint8_t)result->last_modified_len;
  }
}

/* The record a successful fetch answers with: a 200 or 404 made of the upstream's answer, or
 * the held copy renewed by a 304 (its body, digest and validators, fresh from now). *kept:
 * worth storing (not a 404 with negative_ttl 0). false: no record (a 304 with no held copy,
 * which fetched_decide never asks for). *own_body is malloc'd when the record points into it. */
static bool record_of_fetch(struct flipcached *daemon, const struct inflight_fetch *fetch,
                            const struct upstream_result *result,
                            const struct fetched_decision *d, long long now,
                            struct cache_record *record, bool *kept, char **own_body) {
  *own_body = NULL;
  if (d->action == FETCHED_RENEW) {
    struct cache_record held;
    if (!fetch->held_copy || record_decode(fetch->held_copy, fetch->held_copy_len, &held) != RECORD_OK)
      return false;
    store_record_renewed(&daemon->cfg, &held, now, record);
    take_validators(result, record);
    *kept = true;
    return true;
  }
  int status = d->action == FETCHED_SERVE_200 ? 200 : 404;
  if (d->own_404_body)
    *own_body = render_error_body(API_ERROR_NOT_FOUND);
  const char *body = d->own_404_body ? (*own_body ? *own_body : "") : result->body;
  size_t len = d->own_404_body ? strlen(body) : result->body_len;
  *kept = store_record_of(&daemon->cfg, (uint16_t)status, body, len, now, 0, record);
  if (!*kept) /* a 404 not to remember: answered once, stale at once */
    *record = (struct cache_record){.upstream_status = (uint16_t)status, .fetched_at = now,
                                    .fresh_until = now, .stale_until = now,
                                    .body = (const unsigned char *)body,
                                    .body_len = (uint32_t)len};
  if (status == 200)
    take_validators(result, record);
  return true;
}

/* The fetch's result: decided by fetched.h (pure), then carried out here: the credential's
 * verdict, the log line, the store, and every waiter answered once. */
static void on_fetched(const struct upstream_result *result, void *arg) {
  struct inflight_fetch *fetch = arg;
  struct flipcached *daemon = fetch->owner;
  fetch->transfer = NULL; /* freed once this returns */
  const char *enrollment_id = fetch->enrollment_id;
  long long now = clock_wall_seconds();
  size_t waiters = fetch->waiter_count;
  uint64_t answered_before = daemon->stats.misses + daemon->stats.stale_served +
                             daemon->stats.hits + daemon->stats.negative_hits;
  bool conditional = fetch->if_none_match[0] || fetch->if_modified_since[0];
  struct fetched_decision d = fetched_decide(result, enrollment_id, conditional);
  if (d.credential_works)
    daemon->auth_rejected_status = 0;
  if (d.credential_rejected)
    daemon->auth_rejected_status = d.credential_rejected;
  if (d.counts_as_upstream_error)
    daemon->stats.upstream_errors++; /* transport failures are counted by upstream.c */
  if (d.action == FETCHED_RENEW)
    daemon->stats.upstream_not_modified++;
  log_failure(daemon, enrollment_id, result, &d);
  /* A delete of this id (or of the whole cache) after the fetch started wins, and so does the
   * no-store of the request that caused it: the waiters are answered, but nothing is stored. */
  bool may_store = !fetch->store_forbidden;
  struct cache_record record;
  bool kept = false, stored = false;
  char *own_body = NULL;
  if (d.action != FETCHED_FAIL &&
      record_of_fetch(daemon, fetch, result, &d, now, &record, &kept, &own_body)) {
    stored = may_store && kept && store_put(daemon, enrollment_id, &record);
    fan_out_record(daemon, fetch, &record, d.fwd_status, stored, false);
    /* The fleet gets what this host kept (and its lock back), while the body is still valid. */
    fleet_fetched(daemon->fleet, fetch, stored ? &record : NULL);
  } else {
    fan_out_failure(daemon, fetch, d.error, d.fwd_status, d.retry_after, now);
    fleet_fetched(daemon->fleet, fetch, NULL);
  }
  free(own_body);
  /* Every waiter is answered exactly once: a miss, a copy, or an error. */
  assert(daemon->stats.misses + daemon->stats.stale_served + daemon->stats.hits +
             daemon->stats.negative_hits ==
         answered_before + waiters);
  (void)waiters;
  (void)answered_before;
  inflight_finish(daemon->inflight, fetch);
}

/* Another host's copy, from the shared tier (fleet.h): stored here with its own times, unless a
 * delete (or no-store) came meanwhile, and every waiter answered with it (a miss here,
 * collapsed after the first: Cache-Status names the shared tier's hit). */
static void on_shared_copy(const struct cache_record *record, void *arg) {
  struct inflight_fetch *fetch = arg;
  struct flipcached *daemon = fetch->owner;
  bool stored = !fetch->store_forbidden && store_put(daemon, fetch->enrollment_id, record);
  fan_out_record(daemon, fetch, record, 200, stored, true);
  inflight_finish(daemon->inflight, fetch);
}

/* Starts the one fetch for an id; *fetch is set when it returns UPSTREAM_STARTED. A copy in the
 * shared tier fetched before min_fetched_at does not answer it. held (taken, freed on refusal)
 * makes the upstream request conditional. store false: its answer is not stored (no-store). */
static enum upstream_start start_fetch(struct flipcached *daemon, const char *enrollment_id,
                                       bool had_expired_copy, uint64_t flow,
                                       int64_t min_fetched_at, struct held_copy *held, bool store,
                                       struct inflight_fetch **fetch) {
  *fetch = inflight_start(daemon->inflight, enrollment_id);
  if (!*fetch) {
    free(held->bytes);
    held->bytes = NULL;
    return UPSTREAM_START_FAILED;
  }
  (*fetch)->owner = daemon;
  (*fetch)->had_expired_copy = had_expired_copy;
  (*fetch)->background = flow == FAIR_FLOW_BACKGROUND;
  (*fetch)->flow = flow;
  (*fetch)->store_forbidden = !store;
  give_held_copy(*fetch, held);
  enum upstream_start started = fleet_fetch_enrollment(daemon->fleet, *fetch, min_fetched_at,
                                                       on_fetched, on_shared_copy);
  if (started != UPSTREAM_STARTED) {
    inflight_finish(daemon->inflight, *fetch);
    *fetch = NULL;
  }
  return started;
}

/* The request waits on the id's fetch, joining one in progress or starting it (with held, taken,
 * and the store of its choice). Its tag keeps why it went upstream, for its Cache-Status. */
static void wait_for_fetch(struct flipcached *daemon, struct client_request *request,
                           const char *enrollment_id, bool had_expired_copy,
                           const struct answer_choice *choice, struct held_copy *held,
                           long long now) {
  front_request_set_tag(request, choice->fwd);
  struct inflight_fetch *fetch = inflight_find(daemon->inflight, enrollment_id);
  bool joined = fetch != NULL;
  uint64_t flow = peer_user_key(front_request_peer(request));
  if (fetch && fetch->flow != flow && fetch->transfer) {
    /* Joining another user's fetch (or a refresh) that still waits for a slot: it waits no
     * longer in that user's queue than in this one's. */
    upstream_fetch_shared_with(daemon->upstream, fetch->transfer, flow);
  }
  if (!fetch) {
    if (!take_miss_quota(daemon, request, enrollment_id, now)) {
      free(held->bytes);
      held->bytes = NULL;
      return;
    }
    enum upstream_start started = start_fetch(daemon, enrollment_id, had_expired_copy, flow,
                                              choice->min_fetched_at, held, choice->store,
                                              &fetch);
    if (started != UPSTREAM_STARTED) {
      answer_refused(daemon, request, enrollment_id, started, now);
      return;
    }
  }
  free(held->bytes); /* a fetch joined: the copy it holds, if any, is its own */
  held->bytes = NULL;
  if (!inflight_add_waiter(daemon->inflight, fetch, request)) {
    daemon->stats.waiters_refused++;
    daemon->stats.misses++;
    struct cache_status cs = {.fwd = answer_fwd_text(choice->fwd), .collapsed = true};
    reply_error(daemon, request, API_ERROR_OVERLOADED, &cs, UPSTREAM_OVERLOADED_RETRY_AFTER);
    return;
  }
  if (joined)
    daemon->stats.coalesced++;
}

/* A background fetch of an id a hit was answered from, unless one is in progress: nobody waits
 * on it (a refusal, a full queue or the breaker, needs no answer), no quota is taken, it takes
 * the background's share of the fetch slots, and a failure leaves the entry as it was. A shared
 * copy must be newer than the one held (held_copy's fetched_at); a 304 renews held_copy (its
 * validators make the request conditional). true when started. */
static bool start_refresh(struct flipcached *daemon, const char *enrollment_id, bool stale_copy,
                          const struct cache_record *held_copy) {
  if (inflight_find(daemon->inflight, enrollment_id))
    return false;
  struct inflight_fetch *fetch;
  struct held_copy held = hold_copy(held_copy);
  return start_fetch(daemon, enrollment_id, stale_copy, FAIR_FLOW_BACKGROUND,
                     held_copy->fetched_at + 1, &held, true, &fetch) == UPSTREAM_STARTED;
}

/* Refresh-ahead's hit trigger: a fresh 200 past refresh_ahead of the ttl it was stored with, for
 * an entry the full schedule could not hold (refresh_schedule.h), is refreshed by the hit; the
 * entry's own times are never extended meanwhile. */
static bool refresh_ahead_due(const struct flipcached *daemon, const struct cache_record *record,
                              long long now) {
  unsigned permille = daemon->cfg.refresh_ahead_permille;
  long long ttl = record->fresh_until - record->fetched_at;
  return permille > 0 && ttl > 0 && (now - record->fetched_at) * 1000 >= ttl * (long long)permille;
}

/* The schedule's lead: an entry's scheduled refresh starts this many seconds before its
 * fresh_until, late enough to cost no more than one fetch a ttl, early enough for a fetch that
 * takes all of timeout_ms, and never earlier than refresh_ahead of its ttl; but at least 1 s
 * (times are whole seconds). */
static int64_t refresh_lead(const struct flipcached *daemon, int64_t ttl) {
  int64_t latest = (ttl * (1000 - (int64_t)daemon->cfg.refresh_ahead_permille)) / 1000;
  int64_t needed = ((int64_t)daemon->cfg.timeout_ms + 999) / 1000;
  int64_t lead = needed < latest ? needed : latest;
  return lead < 1 ? 1 : lead;
}

/* The rate refresh-ahead's rule predicts from (refresh_schedule.h): every request for a valid id
 * is counted; 0 with refresh-ahead off. */
static double note_request(struct flipcached *daemon, const char *enrollment_id) {
  if (!daemon->hot || daemon->cfg.refresh_ahead_permille == 0)
    return 0;
  return hot_note_request(daemon->hot, enrollment_id, clock_coarse_ms());
}

/* A fresh hit on a 200 with refresh-ahead on, from an id asked at rate: noted for the schedule,
 * and a refresh it brought counted as used. true when the hit itself must start the refresh: the
 * schedule holds the entry and its due time has come (the timer would start it within its next
 * turn; the hit saves that wait), or the schedule is full and the hit is past refresh_ahead of
 * the ttl. */
static bool schedule_hot(struct flipcached *daemon, const char *enrollment_id,
                         const struct cache_record *record, double rate, int64_t now) {
  if (!daemon->hot || daemon->cfg.refresh_ahead_permille == 0)
    return false;
  int64_t ttl = record->fresh_until - record->fetched_at, lead = refresh_lead(daemon, ttl);
  int64_t due = record->fresh_until - lead;
  /* An entry whose ttl is no longer than the lead would be refreshed as soon as it is stored. */
  bool worth = ttl > lead && hot_worth_refreshing(rate, ttl), used;
  enum hot_note note = hot_note_hit(daemon->hot, enrollment_id, worth, record->fetched_at, due,
                                    &used);
  if (used)
    daemon->stats.refresh_used++;
  if (note == HOT_FULL) {
    daemon->stats.hot_untracked++;
    return refresh_ahead_due(daemon, record, now);
  }
  return (note == HOT_SCHEDULED || note == HOT_ALREADY) && due <= now;
}

/* A refresh of the generation record names was started (by the schedule or a hit): the table
 * checks its use when the refreshed generation expires (it is fetched now, within timeout_ms).
 * A full table (counted when the hit found it so) leaves the refresh unaccounted. */
static void refresh_started(struct flipcached *daemon, const char *enrollment_id,
                            const struct cache_record *record, int64_t now) {
  (void)hot_refresh_started(daemon->hot, enrollment_id, record->fetched_at,
                            now + (record->fresh_until - record->fetched_at));
}

/* One entry the schedule says is due: a decision (refresh it if the cache still holds the
 * generation scheduled, fresh, and the rule still holds it worth it; a newer copy or a delete
 * makes it moot), or the check of a refresh nobody asked for (unused if it brought a newer
 * generation; a refresh that failed brought none and counts as neither). */
static void refresh_due(struct flipcached *daemon, const char *enrollment_id, int64_t generation,
                        enum hot_due why, int64_t now) {
  struct cache_entry entry;
  if (cache_get_borrowed(daemon->cache, enrollment_id, &entry) != CACHE_FOUND)
    return;
  const struct cache_record *record = &entry.record;
  int64_t ttl = record->fresh_until - record->fetched_at;
  if (why == HOT_DUE_CHECK) {
    if (record->fetched_at > generation)
      daemon->stats.refresh_unused++;
  } else if (record->fetched_at == generation && record->upstream_status == 200 &&
             now < record->fresh_until &&
             hot_worth_refreshing(hot_rate(daemon->hot, enrollment_id, clock_coarse_ms()), ttl) &&
             start_refresh(daemon, enrollment_id, false, record)) {
    /* Started while borrowed, as a refresh-ahead is: start_refresh copies what it keeps. */
    daemon->stats.refresh_scheduled++;
    refresh_started(daemon, enrollment_id, record, now);
  }
  cache_entry_release(&entry);
}

/* The schedule's timer: handles the entries due now, at most REFRESH_BATCH a turn. */
#define REFRESH_BATCH 256
static void on_refresh_due(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct flipcached *daemon = arg;
  if (daemon->stopping)
    return;
  int64_t now = clock_wall_seconds(), generation;
  char enrollment_id[UUID_TEXT_LEN + 1];
  enum hot_due why;
  for (int i = 0;
       i < REFRESH_BATCH && hot_pop_due(daemon->hot, now, enrollment_id, &generation, &why); i++)
    refresh_due(daemon, enrollment_id, generation, why, now);
}

int enrollment_start_schedule(struct flipcached *daemon) {
  int64_t horizon_ms = (int64_t)HOT_HORIZON_TTLS * daemon->cfg.ttl * 1000;
  daemon->hot = hot_new(horizon_ms, clock_coarse_ms());
  daemon->refresh_timer = event_new(daemon->base, -1, EV_PERSIST, on_refresh_due, daemon);
  struct timeval every = {.tv_sec = 0, .tv_usec = 250 * 1000};
  if (!daemon->hot || !daemon->refresh_timer || event_add(daemon->refresh_timer, &every) != 0)
    return -1;
  return 0;
}

void enrollment_stop_schedule(struct flipcached *daemon) {
  if (daemon->refresh_timer)
    event_free(daemon->refresh_timer);
  daemon->refresh_timer = NULL;
  hot_free(daemon->hot);
  daemon->hot = NULL;
}

void enrollment_handle(struct client_request *request, const char *enrollment_id, void *arg) {
  struct flipcached *daemon = arg;
  daemon->stats.enrollment_requests++;
  if (!enrollment_id) {
    daemon->stats.invalid_requests++;
    struct cache_status cs = {0};
    reply_error(daemon, request, API_ERROR_INVALID_ID, &cs, -1);
    return;
  }

  double rate = note_request(daemon, enrollment_id);
  long long now = clock_wall_seconds();
  /* Borrowed: the answer is copied into the connection's output before the release, and
   * nothing else touches the cache until then. */
  struct cache_entry entry;
  bool had_copy = cache_get_borrowed(daemon->cache, enrollment_id, &entry) == CACHE_FOUND;
  struct answer_choice choice = answer_choose(front_request_directives(request),
                                              had_copy ? &entry.record : NULL, now,
                                              windows_of(daemon));
  struct cache_status cs = {.hit = true};
  switch (choice.way) {
  case ANSWER_FRESH:
    if (entry.record.upstream_status == 200) {
      daemon->stats.hits++;
      /* only-if-cached: this request starts nothing upstream (the schedule's timer may). */
      if (schedule_hot(daemon, enrollment_id, &entry.record, rate, now) &&
          !front_request_directives(request)->only_if_cached &&
          start_refresh(daemon, enrollment_id, false, &entry.record)) {
        daemon->stats.refresh_ahead++;
        refresh_started(daemon, enrollment_id, &entry.record, now);
        cs.detail = "refresh-ahead";
      }
    } else {
      daemon->stats.negative_hits++;
    }
    reply_record(daemon, request, &entry.record, &cs, now);
    cache_entry_release(&entry);
    return;
  case ANSWER_STALE_REFRESH:
    daemon->stats.stale_served++;
    reply_record(daemon, request, &entry.record, &cs, now);
    if (start_refresh(daemon, enrollment_id, true, &entry.record))
      daemon->stats.background_refreshes++;
    cache_entry_release(&entry);
    return;
  case ANSWER_STALE: /* only-if-cached: never upstream, not even a background refresh */
    daemon->stats.stale_served++;
    reply_record(daemon, request, &entry.record, &cs, now);
    cache_entry_release(&entry);
    return;
  case ANSWER_NOT_CACHED: {
    if (had_copy)
      cache_entry_release(&entry);
    daemon->stats.misses++;
    struct cache_status none = {0};
    reply_error(daemon, request, API_ERROR_NOT_CACHED, &none, -1);
    return;
  }
  case ANSWER_FETCH:
    break;
  }
  /* The copy, if any, is released before the fetch starts (a refusal reads the cache again);
   * what a 304 would renew is copied first. */
  struct held_copy held = hold_copy(had_copy ? &entry.record : NULL);
  if (had_copy)
    cache_entry_release(&entry);
  wait_for_fetch(daemon, request, enrollment_id, had_copy, &choice, &held, now);
}
