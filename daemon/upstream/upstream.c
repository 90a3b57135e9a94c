/* upstream: the multi handle on the daemon's loop, the fetch slots, the credential, attempts,
 * retries and results (upstream.h says what they do). One transfer's libcurl side is
 * transfer.c (transfer.h is what the two share), the retry, pause and circuit policy retry_breaker.c,
 * the fair shares fair.c; the OAuth token client (oauth.c) uses upstream.h only. */
#include "clock.h"
#include "transfer.h"
#include "upstream.h"

#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "retry_breaker.h"
#include "config.h"
#include "creds.h"
#include "log.h"
#include "stats.h"


static void collect_finished(struct upstream *upstream);
static void on_wait_over(struct upstream *upstream, struct transfer *transfer);
static bool wait_for_auth(struct upstream *upstream, struct transfer *transfer);


/* --- libcurl <-> libevent glue --------------------------------------------------------------- */

static void on_socket_event(evutil_socket_t fd, short what, void *arg) {
  struct upstream *upstream = arg;
  int action = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
  int running = 0;
  CURLMcode rc = curl_multi_socket_action(upstream->multi, fd, action, &running);
  if (rc != CURLM_OK)
    log_error("upstream: curl_multi_socket_action: %s", curl_multi_strerror(rc));
  collect_finished(upstream);
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct upstream *upstream = arg;
  int running = 0;
  CURLMcode rc = curl_multi_socket_action(upstream->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  if (rc != CURLM_OK)
    log_error("upstream: curl_multi_socket_action: %s", curl_multi_strerror(rc));
  collect_finished(upstream);
}

/* CURLMOPT_SOCKETFUNCTION: keep one persistent libevent event per socket libcurl uses, stored with
 * curl_multi_assign. Only (re)arms or frees events; never calls back into libcurl. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
  (void)easy;
  struct upstream *upstream = userp;
  struct event *ev = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (ev) {
      event_free(ev);
      curl_multi_assign(upstream->multi, fd, NULL);
    }
    return 0;
  }
  short kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
  if (ev) {
    event_del(ev);
    event_assign(ev, upstream->base, fd, kind, on_socket_event, upstream);
  } else {
    ev = event_new(upstream->base, fd, kind, on_socket_event, upstream);
    if (!ev)
      return -1;
    curl_multi_assign(upstream->multi, fd, ev);
  }
  return event_add(ev, NULL) == 0 ? 0 : -1;
}

/* CURLMOPT_TIMERFUNCTION: schedule (or with -1 cancel) the single timer. Never calls libcurl. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  struct upstream *upstream = userp;
  if (timeout_ms < 0) {
    evtimer_del(upstream->timer);
    return 0;
  }
  struct timeval tv = clock_timeval_of_ms(timeout_ms);
  return evtimer_add(upstream->timer, &tv);
}

static void unlink_transfer(struct upstream *upstream, struct transfer *transfer) {
  if (transfer->prev)
    transfer->prev->next = transfer->next;
  else
    upstream->transfers = transfer->next;
  if (transfer->next)
    transfer->next->prev = transfer->prev;
  upstream->inflight--;
  /* A fetch's slot is free (or its place in the queue): the waiting get it, from the loop. */
  if (transfer->slot.waiting)
    fair_cancel(upstream->fair, &transfer->slot);
  else
    fair_done(upstream->fair, &transfer->slot);
  if (fair_waiting(upstream->fair))
    event_active(upstream->hand_out_slots, EV_TIMEOUT, 1);
}

/* Adds the attempt to the multi handle, or holds it while a new connection is being made to an
 * upstream that multiplexes. Why: libcurl 7.88 opens a new connection for every transfer that
 * finds the others full while the next connection's handshake is still running (it skips a
 * connection that is connecting instead of waiting for it, PIPEWAIT or not), so 200 misses took
 * 16 connections, 14 of them for one request each. Made one at a time, each new connection is
 * filled before the next is opened. */
static bool add_to_multi(struct upstream *upstream, struct transfer *transfer) {
  if (upstream->multiplexing && upstream->connecting) {
    transfer->held = true;
    transfer->next_held = NULL;
    if (upstream->held_tail)
      upstream->held_tail->next_held = transfer;
    else
      upstream->held_head = transfer;
    upstream->held_tail = transfer;
    return true;
  }
  if (curl_multi_add_handle(upstream->multi, transfer->easy) != CURLM_OK)
    return false;
  transfer->in_multi = true;
  if (upstream->multiplexing) {
    /* Let libcurl place it now, so that a new connection it opens is known (`connecting`)
     * before the next attempt is added. What finishes meanwhile is collected from the loop,
     * never from here: the caller may be upstream_fetch_enrollment. */
    int running = 0;
    curl_multi_socket_action(upstream->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    event_active(upstream->release_held, EV_TIMEOUT, 1);
  }
  return true;
}

/* The connection being made is up (or failed): the held attempts may go, from the loop. */
void upstream_connection_settled(struct upstream *upstream) {
  upstream->connecting = false;
  if (upstream->held_head)
    event_active(upstream->release_held, EV_TIMEOUT, 1);
}


/* Adds held attempts one at a time, letting libcurl place each at once: the first that needs a
 * new connection sets `connecting` again, and the rest keep waiting. Then collects what finished
 * (this event also runs after add_to_multi let libcurl work outside the loop's callbacks). */
static void on_release_held(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct upstream *upstream = arg;
  while (upstream->held_head && !(upstream->multiplexing && upstream->connecting)) {
    struct transfer *transfer = upstream->held_head;
    upstream->held_head = transfer->next_held;
    if (!upstream->held_head)
      upstream->held_tail = NULL;
    transfer->held = false;
    /* The wait counts in the fetch's budget: its time limit is what is left of it now. */
    long budget = (long)(transfer->deadline_ms - clock_monotonic_ms());
    if (budget < 1) {
      snprintf(transfer->error, sizeof(transfer->error), "no time left after waiting for a connection");
      transfer_finish(upstream, transfer, CURLE_OPERATION_TIMEDOUT);
      continue;
    }
    if (curl_easy_setopt(transfer->easy, CURLOPT_TIMEOUT_MS, budget) != CURLE_OK ||
        curl_multi_add_handle(upstream->multi, transfer->easy) != CURLM_OK) {
      transfer_finish(upstream, transfer, CURLE_OUT_OF_MEMORY);
      continue;
    }
    transfer->in_multi = true;
    int running = 0;
    curl_multi_socket_action(upstream->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  }
  collect_finished(upstream);
}

static void unhold(struct upstream *upstream, struct transfer *transfer) {
  struct transfer **link = &upstream->held_head, *previous = NULL;
  while (*link && *link != transfer) {
    previous = *link;
    link = &(*link)->next_held;
  }
  if (*link) {
    *link = transfer->next_held;
    if (upstream->held_tail == transfer)
      upstream->held_tail = previous;
  }
  transfer->held = false;
}

/* Arms the transfer's one timer (made on first use) to fire in ms: the backoff before a retry,
 * or the end of a wait for a credential or a slot (transfer_on_retry_timer tells which). false
 * when out of memory. */
static bool arm_retry_timer(struct upstream *upstream, struct transfer *transfer, long ms) {
  if (!transfer->retry_timer)
    transfer->retry_timer = evtimer_new(upstream->base, transfer_on_retry_timer, transfer);
  struct timeval tv = clock_timeval_of_ms(ms);
  return transfer->retry_timer && evtimer_add(transfer->retry_timer, &tv) == 0;
}

/* --- the credential of a provider (upstream_set_auth) ---------------------------------------- */

/* Queues an enrollment fetch until the provider has a credential. Its retry timer is armed for
 * what is left of its budget: if none comes by then, it ends as a timeout, from the loop, never
 * from inside the call that queued it. */
static bool wait_for_auth(struct upstream *upstream, struct transfer *transfer) {
  long left = (long)(transfer->deadline_ms - clock_monotonic_ms());
  if (!arm_retry_timer(upstream, transfer, left > 0 ? left : 1))
    return false;
  transfer->waiting_token = true;
  transfer->next_waiting = NULL;
  if (upstream->auth_waiting_tail)
    upstream->auth_waiting_tail->next_waiting = transfer;
  else
    upstream->auth_waiting_head = transfer;
  upstream->auth_waiting_tail = transfer;
  return true;
}

static void stop_waiting_for_auth(struct upstream *upstream, struct transfer *transfer) {
  struct transfer **link = &upstream->auth_waiting_head, *previous = NULL;
  while (*link && *link != transfer) {
    previous = *link;
    link = &(*link)->next_waiting;
  }
  if (*link) {
    *link = transfer->next_waiting;
    if (upstream->auth_waiting_tail == transfer)
      upstream->auth_waiting_tail = previous;
  }
  transfer->waiting_token = false;
  transfer->next_waiting = NULL;
  evtimer_del(transfer->retry_timer);
}

void upstream_set_auth(struct upstream *upstream, const struct upstream_auth *auth) {
  upstream->auth = *auth;
  upstream->has_auth = true;
}

void upstream_auth_changed(struct upstream *upstream, bool ok, long http_status) {
  struct transfer *waiting = upstream->auth_waiting_head;
  while (waiting) {
    struct transfer *next = waiting->next_waiting;
    stop_waiting_for_auth(upstream, waiting);
    if (ok) {
      if (!transfer_launch(upstream, waiting))
        transfer_finish(upstream, waiting, CURLE_OPERATION_TIMEDOUT);
    } else {
      struct upstream_result failed = {.outcome = UPSTREAM_TOKEN_FAILED,
                                       .http_status = http_status,
                                       .retry_after_seconds = -1,
                                       .error_text = "no OAuth access token"};
      transfer_deliver(upstream, waiting, &failed);
    }
    waiting = next;
  }
}

/* A 401 to a provider's credential: the provider is told (it drops that one and gets another)
 * and the fetch is sent once more. Once per fetch; false when that does not apply. */
static bool reauthorize(struct upstream *upstream, struct transfer *transfer, CURLcode code) {
  long status = 0;
  if (code == CURLE_OK)
    curl_easy_getinfo(transfer->easy, CURLINFO_RESPONSE_CODE, &status);
  if (!upstream->has_auth || status != 401 || transfer->auth_retried)
    return false;
  transfer->auth_retried = true;
  if (!upstream->auth.rejected(upstream->auth.arg, transfer->token_generation))
    return false;
  return transfer_launch(upstream, transfer);
}

/* Sends the transfer's next attempt: fresh headers from the current credential, the time left of
 * its budget. An enrollment fetch that needs an access token and has none is queued until one
 * arrives (true: it is in hand). false when it cannot be sent: the caller finishes it. */
bool transfer_launch(struct upstream *upstream, struct transfer *transfer) {
  const char *authorization = upstream->creds->authorization;
  if (transfer->kind == TRANSFER_TOKEN) {
    authorization = transfer->form_authorization;
  } else if (upstream->has_auth) {
    unsigned generation = 0;
    authorization = upstream->auth.authorization(upstream->auth.arg, &generation);
    if (!authorization)
      return wait_for_auth(upstream, transfer);
    transfer->token_generation = generation;
  }
  long budget = (long)(transfer->deadline_ms - clock_monotonic_ms());
  if (transfer->attempts > 0 && budget < BREAKER_MIN_ATTEMPT_MS)
    return false;
  transfer_free_request_headers(transfer->request_headers);
  transfer->request_headers = transfer_build_request_headers(transfer, authorization);
  transfer->answer_etag[0] = transfer->answer_last_modified[0] = '\0';
  transfer->body_len = 0;
  transfer->body_too_large = false;
  transfer->resolving_started = false;
  transfer->opened_connection = false;
  transfer->request_sent = false;
  transfer->answer_started = false;
  transfer->trickled = false;
  if (transfer->trickle_timer)
    event_del(transfer->trickle_timer);
  transfer->retry_after_seconds = -1;
  transfer->error[0] = '\0';
  if (!transfer->request_headers ||
      curl_easy_setopt(transfer->easy, CURLOPT_HTTPHEADER, transfer->request_headers) != CURLE_OK ||
      curl_easy_setopt(transfer->easy, CURLOPT_TIMEOUT_MS, budget > 1 ? budget : 1L) != CURLE_OK ||
      !add_to_multi(upstream, transfer))
    return false;
  transfer->attempts++;
  return true;
}

static struct breaker_settings breaker_settings_of(const struct config *cfg) {
  return (struct breaker_settings){.failures = cfg->breaker_failures,
                                   .cooldown_ms = (long)cfg->breaker_cooldown_ms};
}

/* The pause and the breaker learn from each finished fetch (after its retries). */
static void note_outcome(struct upstream *upstream, struct transfer *transfer,
                         const struct upstream_result *result) {
  struct breaker_settings settings = breaker_settings_of(upstream->cfg);
  bool rate_limited = result->outcome == UPSTREAM_RESPONSE && result->http_status == 429;
  bool failed = result->outcome != UPSTREAM_RESPONSE || result->http_status >= 500;
  long paused_seconds = 0;
  switch (breaker_note(&upstream->breaker, &settings, clock_monotonic_ms(), transfer->breaker_probe,
                       rate_limited, failed, result->retry_after_seconds, &paused_seconds)) {
  case BREAKER_EVENT_PAUSED:
    upstream->stats->rate_limit_pauses++;
    log_warning("upstream: rate limited (429); no request is sent for %ld s", paused_seconds);
    break;
  case BREAKER_EVENT_OPENED:
    upstream->stats->breaker_opens++;
    log_warning("upstream: circuit open for %ld ms after %u consecutive failed fetches",
                upstream->breaker.cooldown_ms, upstream->breaker.consecutive_failures);
    break;
  case BREAKER_EVENT_CLOSED:
    log_info("upstream: circuit closed; the upstream answers again");
    break;
  case BREAKER_EVENT_NONE:
    break;
  }
}

/* Hands a fetch's final result to its owner and frees the transfer. */
void transfer_deliver(struct upstream *upstream, struct transfer *transfer,
                    const struct upstream_result *result) {
  if (transfer->in_multi) {
    curl_multi_remove_handle(upstream->multi, transfer->easy);
    transfer->in_multi = false;
  }
  if (transfer->held)
    unhold(upstream, transfer);
  unlink_transfer(upstream, transfer);
  /* Only enrollment fetches that reached a verdict feed the counters and the breaker: a token
   * request talks to another host, and an abort, a missing token or a fetch never sent says
   * nothing of the API. */
  bool verdict = transfer->kind == TRANSFER_ENROLLMENT && result->outcome != UPSTREAM_ABORTED &&
                 result->outcome != UPSTREAM_TOKEN_FAILED && result->outcome != UPSTREAM_REFUSED;
  if (verdict && result->outcome != UPSTREAM_RESPONSE)
    upstream->stats->upstream_errors++;
  log_debug("upstream: %s %s -> %s %ld in %ld ms, %d attempt%s%s%s",
            transfer->kind == TRANSFER_TOKEN ? "POST" : "GET", transfer->url,
            result->outcome == UPSTREAM_RESPONSE ? "HTTP" : "failed", result->http_status,
            transfer_elapsed_ms(&transfer->started), transfer->attempts, transfer->attempts == 1 ? "" : "s",
            result->error_text[0] ? ": " : "", result->error_text);
  if (verdict) {
    note_outcome(upstream, transfer, result);
    stats_observe_upstream_latency(upstream->stats, (double)transfer_elapsed_ms(&transfer->started) / 1e3);
  }
  else if (transfer->breaker_probe)
    breaker_probe_abandoned(&upstream->breaker);
  if (transfer->done)
    transfer->done(result, transfer->arg);
  transfer_free(transfer);
}

void transfer_finish(struct upstream *upstream, struct transfer *transfer, CURLcode code) {
  struct upstream_result result = transfer_result(transfer, code);
  transfer_deliver(upstream, transfer, &result);
}

void transfer_abort(struct upstream *upstream, struct transfer *transfer) {
  struct upstream_result result = {.outcome = UPSTREAM_ABORTED, .retry_after_seconds = -1,
                                   .error_text = "aborted at shutdown"};
  transfer_deliver(upstream, transfer, &result);
}

/* --- attempts, retries, completion ------------------------------------------------------------- */

/* Sends the next attempt once its backoff has passed. */
void transfer_on_retry_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct transfer *transfer = arg;
  if (transfer->slot.waiting) {
    on_wait_over(transfer->upstream, transfer);
    return;
  }
  if (transfer->waiting_token) {
    /* Its budget ran out while it waited for a credential. */
    stop_waiting_for_auth(transfer->upstream, transfer);
    transfer_finish(transfer->upstream, transfer, CURLE_OPERATION_TIMEDOUT);
    return;
  }
  if (!transfer_launch(transfer->upstream, transfer))
    transfer_finish(transfer->upstream, transfer, CURLE_OPERATION_TIMEDOUT);
}

/* After a failed connection or a 502/503/504, schedules another attempt when retry_breaker.h's rules
 * and the time budget allow one; returns false when the result is final. The handle has left
 * the multi. */
static bool schedule_retry(struct upstream *upstream, struct transfer *transfer, CURLcode code) {
  long status = 0;
  bool retryable = false;
  if (code == CURLE_OK)
    curl_easy_getinfo(transfer->easy, CURLINFO_RESPONSE_CODE, &status);
  else
    transfer_classify_failure(transfer, code, &retryable);
  long delay = breaker_retry_delay(transfer->attempts, retryable, status,
                                   transfer->retry_after_seconds, clock_monotonic_ms(),
                                   transfer->deadline_ms, arc4random());
  if (delay < 0)
    return false;
  if (!arm_retry_timer(upstream, transfer, delay))
    return false;
  upstream->stats->upstream_retries++;
  log_debug("upstream: GET %s: %s; attempt %d in %ld ms", transfer->url,
            status ? "HTTP 5xx" : transfer->reason, transfer->attempts + 1, delay);
  return true;
}

/* An attempt ended: a connection it was making has settled either way; and an answer over
 * HTTP/1 shows that the upstream does not multiplex, so nothing is held for it any more. */
static void note_connection(struct upstream *upstream, struct transfer *transfer, CURLcode code) {
  long version = 0;
  if (code == CURLE_OK && transfer->kind == TRANSFER_ENROLLMENT &&
      curl_easy_getinfo(transfer->easy, CURLINFO_HTTP_VERSION, &version) == CURLE_OK &&
      version != CURL_HTTP_VERSION_2_0 && version != 0 && upstream->multiplexing) {
    upstream->multiplexing = false;
    log_info("upstream: answered over HTTP/1.x: one request per connection (max_connections)");
  }
  if (transfer->opened_connection && (upstream->connecting || !upstream->multiplexing))
    upstream_connection_settled(upstream);
}

static void collect_finished(struct upstream *upstream) {
  CURLMsg *message;
  int pending;
  while ((message = curl_multi_info_read(upstream->multi, &pending)) != NULL) {
    if (message->msg != CURLMSG_DONE)
      continue;
    CURL *easy = message->easy_handle;
    CURLcode code = message->data.result; /* read before the handle leaves: message dies with it */
    struct transfer *transfer = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&transfer);
    curl_multi_remove_handle(upstream->multi, easy);
    transfer->in_multi = false;
    if (transfer->trickle_timer)
      event_del(transfer->trickle_timer); /* the attempt is over: nothing more to measure */
    note_connection(upstream, transfer, code);
    if (transfer->kind == TRANSFER_TOKEN)
      transfer_finish(upstream, transfer, code); /* one attempt, to its owner */
    else if (!reauthorize(upstream, transfer, code) && !schedule_retry(upstream, transfer, code))
      transfer_finish(upstream, transfer, code);
  }
}

long upstream_retry_after(const struct upstream *upstream) {
  return breaker_retry_after(&upstream->breaker, clock_monotonic_ms());
}

long upstream_refusal_retry_after(const struct upstream *upstream, enum upstream_start refusal) {
  switch (refusal) {
  case UPSTREAM_PAUSED:
  case UPSTREAM_CIRCUIT_OPEN:
    return upstream_retry_after(upstream);
  case UPSTREAM_OVERLOADED:
    return UPSTREAM_OVERLOADED_RETRY_AFTER;
  default:
    return -1;
  }
}

enum breaker_state upstream_breaker_state(const struct upstream *upstream) {
  return upstream->breaker.state;
}

long upstream_paused_seconds(const struct upstream *upstream) {
  return breaker_paused_seconds(&upstream->breaker, clock_monotonic_ms());
}

/* The fetch slots now: max_fetches, and over HTTP/1 (one request a connection) no more than
 * max_connections, so that a fetch given a slot never waits inside libcurl for a connection
 * (libcurl's queue is first come first served: the fair shares would be lost there). */
static size_t fetch_slots(const struct upstream *upstream) {
  size_t slots = upstream->cfg->max_fetches;
  if (!upstream->multiplexing && upstream->cfg->upstream_max_connections < slots)
    slots = upstream->cfg->upstream_max_connections;
  return slots;
}

/* The least of its budget a fetch is worth sending with, after waiting for a slot. */
static long least_budget_to_send(const struct config *cfg) {
  long half = (long)cfg->timeout_ms / 2;
  return half < BREAKER_MIN_ATTEMPT_MS ? half : BREAKER_MIN_ATTEMPT_MS;
}

static enum upstream_start refusal_of(enum breaker_admission admission) {
  return admission == BREAKER_REFUSE_PAUSED ? UPSTREAM_PAUSED : UPSTREAM_CIRCUIT_OPEN;
}

/* A fetch that waited for a slot ends unsent: its owner is told `refusal` (as a refusal at once
 * would be answered: 503 or a stale copy). */
static void deliver_unsent(struct upstream *upstream, struct transfer *transfer,
                           enum upstream_start refusal, const char *why) {
  struct upstream_result result = {
    .outcome = UPSTREAM_REFUSED, .refusal = refusal, .error_text = why,
    .retry_after_seconds = upstream_refusal_retry_after(upstream, refusal),
  };
  transfer_deliver(upstream, transfer, &result);
}

/* The waiting fetch's budget would be spent before its slot comes: it is not sent. */
static void wait_ran_out(struct upstream *upstream, struct transfer *transfer) {
  upstream->stats->fetch_wait_timeouts++;
  log_warning_limited("upstream: %s waited %ld ms for a fetch slot (all %zu busy) and is not sent: "
                      "too little of timeout_ms was left", transfer->url,
                      transfer_elapsed_ms(&transfer->started), fetch_slots(upstream));
  deliver_unsent(upstream, transfer, UPSTREAM_OVERLOADED,
                 "waited for a fetch slot until too little of timeout_ms was left");
}

/* Starts a fetch that holds a slot: the breaker is asked, then its first attempt is sent. false:
 * refused by the breaker (*refusal says why) or not startable (UPSTREAM_START_FAILED). */
static bool send_with_slot(struct upstream *upstream, struct transfer *transfer,
                           enum upstream_start *refusal) {
  struct breaker_settings settings = breaker_settings_of(upstream->cfg);
  enum breaker_admission admission = breaker_admit(&upstream->breaker, &settings, clock_monotonic_ms());
  if (admission == BREAKER_REFUSE_PAUSED || admission == BREAKER_REFUSE_OPEN) {
    upstream->stats->upstream_refused++;
    *refusal = refusal_of(admission);
    return false;
  }
  transfer->breaker_probe = admission == BREAKER_ADMIT_PROBE;
  if (transfer->breaker_probe)
    log_info("upstream: circuit half-open; one probe request goes through");
  if (transfer_launch(upstream, transfer))
    return true;
  log_error("upstream: could not start a transfer for %s", transfer->url);
  if (transfer->breaker_probe)
    breaker_probe_abandoned(&upstream->breaker);
  transfer->breaker_probe = false;
  *refusal = UPSTREAM_START_FAILED;
  return false;
}

/* hand_out_slots: each free slot to the waiting fetch fair.h names; one whose budget is nearly
 * spent, or that the breaker now refuses, ends unsent (freeing the slot for the next). */
static void on_hand_out_slots(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct upstream *upstream = arg;
  struct fair_item *item;
  while ((item = fair_next(upstream->fair, fetch_slots(upstream))) != NULL) {
    struct transfer *transfer = (struct transfer *)((char *)item - offsetof(struct transfer, slot));
    evtimer_del(transfer->retry_timer);
    enum upstream_start refusal;
    if (transfer->deadline_ms - clock_monotonic_ms() < least_budget_to_send(upstream->cfg))
      wait_ran_out(upstream, transfer);
    else if (!send_with_slot(upstream, transfer, &refusal))
      deliver_unsent(upstream, transfer, refusal, refusal == UPSTREAM_START_FAILED
                     ? "could not start a transfer" : "refused by the breaker after waiting");
  }
}

/* A waiting fetch's timer: the end of its wait. */
static void on_wait_over(struct upstream *upstream, struct transfer *transfer) {
  fair_cancel(upstream->fair, &transfer->slot);
  wait_ran_out(upstream, transfer);
}

/* Starts GET url for done(arg) in `flow`'s share of the fetch slots (fair.h), asking the breaker
 * first; `what` names it in log lines. */
static enum upstream_start start_api_get(struct upstream *upstream, const char *url,
                                         const char *what, size_t max_body, uint64_t flow,
                                         const struct upstream_conditions *conditions,
                                         upstream_done_fn done, void *arg,
                                         struct transfer **handle) {
  /* A paused or open upstream refuses at once, whether a slot is free or not. */
  enum breaker_admission refused = breaker_refusal_now(&upstream->breaker, clock_monotonic_ms());
  if (refused != BREAKER_ADMIT) {
    upstream->stats->upstream_refused++;
    return refusal_of(refused);
  }
  struct transfer *transfer = transfer_new(upstream, TRANSFER_ENROLLMENT, url);
  if (!transfer) {
    log_error("upstream: could not set up a transfer for %s", what);
    return UPSTREAM_START_FAILED;
  }
  transfer->max_body = max_body;
  if (conditions && conditions->etag[0])
    snprintf(transfer->if_none_match_line, sizeof(transfer->if_none_match_line),
             "If-None-Match: %s", conditions->etag);
  if (conditions && conditions->last_modified[0])
    snprintf(transfer->if_modified_since_line, sizeof(transfer->if_modified_since_line),
             "If-Modified-Since: %s", conditions->last_modified);
  enum upstream_start refusal = UPSTREAM_OVERLOADED;
  switch (fair_admit(upstream->fair, flow, &transfer->slot, fetch_slots(upstream))) {
  case FAIR_START:
    if (send_with_slot(upstream, transfer, &refusal))
      break;
    unlink_transfer(upstream, transfer);
    transfer_free(transfer);
    return refusal;
  case FAIR_QUEUED: {
    /* It waits for a slot until too little of its budget would be left to send it. */
    long wait = (long)(transfer->deadline_ms - clock_monotonic_ms()) -
                least_budget_to_send(upstream->cfg);
    if (!arm_retry_timer(upstream, transfer, wait > 0 ? wait : 0)) {
      unlink_transfer(upstream, transfer);
      transfer_free(transfer);
      return UPSTREAM_START_FAILED;
    }
    upstream->stats->fetches_waited++;
    break;
  }
  case FAIR_FULL:
  case FAIR_NO_MEMORY:
    upstream->stats->fetches_refused++;
    unlink_transfer(upstream, transfer);
    transfer_free(transfer);
    return UPSTREAM_OVERLOADED;
  }
  /* Only now: a refusal above must not call back into the owner. */
  transfer->done = done;
  transfer->arg = arg;
  if (handle)
    *handle = transfer;
  return UPSTREAM_STARTED;
}

void upstream_fetch_shared_with(struct upstream *upstream, struct transfer *handle, uint64_t flow) {
  if (!handle || !handle->slot.waiting || fair_item_flow(&handle->slot) == flow)
    return;
  size_t running, waiting_there, waiting_here;
  fair_flow_counts(upstream->fair, flow, &running, &waiting_there);
  fair_flow_counts(upstream->fair, fair_item_flow(&handle->slot), &running, &waiting_here);
  /* At the tail of the other queue it would be behind waiting_there; where it is, behind at most
   * waiting_here - 1. */
  if (waiting_there + 1 < waiting_here && fair_move(upstream->fair, &handle->slot, flow))
    upstream->stats->fetches_moved++;
}

enum upstream_start upstream_fetch_enrollment(struct upstream *upstream, const char *enrollment_id,
                                              uint64_t flow,
                                              const struct upstream_conditions *conditions,
                                              upstream_done_fn done, void *arg,
                                              struct transfer **handle) {
  char url[CONFIG_URL_MAX + 64];
  snprintf(url, sizeof(url), "%s/v1/enrollments/%s", upstream->cfg->base_url, enrollment_id);
  return start_api_get(upstream, url, enrollment_id, UPSTREAM_MAX_BODY, flow, conditions, done,
                       arg, handle);
}

enum upstream_start upstream_fetch_program(struct upstream *upstream, const char *program_id,
                                           upstream_done_fn done, void *arg) {
  char url[CONFIG_URL_MAX + 64];
  snprintf(url, sizeof(url), "%s/v1/enrollments?program_id=%s", upstream->cfg->base_url,
           program_id);
  char what[CONFIG_PROGRAM_ID_MAX + 16];
  snprintf(what, sizeof(what), "program %s", program_id);
  return start_api_get(upstream, url, what, UPSTREAM_MAX_LIST_BODY, FAIR_FLOW_BACKGROUND, NULL,
                       done, arg, NULL);
}

enum upstream_start upstream_post_form(struct upstream *upstream, const char *url,
                                       const char *authorization, const char *form,
                                       upstream_done_fn done, void *arg) {
  struct transfer *transfer = transfer_new(upstream, TRANSFER_TOKEN, url);
  if (!transfer)
    return UPSTREAM_START_FAILED;
  transfer->form_authorization = authorization;
  bool sent = curl_easy_setopt(transfer->easy, CURLOPT_COPYPOSTFIELDS, form) == CURLE_OK &&
              transfer_launch(upstream, transfer);
  transfer->form_authorization = NULL;
  if (!sent) {
    unlink_transfer(upstream, transfer);
    transfer_free(transfer);
    return UPSTREAM_START_FAILED;
  }
  /* Only now: a failure above must not call back into the owner. */
  transfer->done = done;
  transfer->arg = arg;
  return UPSTREAM_STARTED;
}

size_t upstream_inflight(const struct upstream *upstream) { return upstream->inflight; }

void upstream_fetch_slots(const struct upstream *upstream, uint64_t *slots, uint64_t *waiting) {
  *slots = fetch_slots(upstream);
  *waiting = fair_waiting(upstream->fair);
}

struct upstream *upstream_new(struct event_base *base, const struct config *cfg,
                              const struct creds *creds, struct stats *stats, char *err,
                              size_t err_len) {
  const curl_version_info_data *version = curl_version_info(CURLVERSION_NOW);
  if (!(version->features & CURL_VERSION_ASYNCHDNS)) {
    snprintf(err, err_len, "libcurl %s resolves names synchronously; it would block the loop",
             version->version);
    return NULL;
  }
  struct upstream *upstream = calloc(1, sizeof(*upstream));
  if (!upstream) {
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  upstream->base = base;
  upstream->cfg = cfg;
  upstream->stats = stats;
  upstream->creds = creds;
  upstream->protocols = transfer_protocols_for(cfg->base_url);
  upstream->multiplexing = strncmp(cfg->base_url, "https://", 8) == 0;
  upstream->multi = curl_multi_init();
  upstream->timer = evtimer_new(base, on_timer, upstream);
  upstream->release_held = event_new(base, -1, 0, on_release_held, upstream);
  upstream->hand_out_slots = event_new(base, -1, 0, on_hand_out_slots, upstream);
  upstream->fair = fair_new(cfg->max_fetches);
  if (!upstream->multi || !upstream->timer || !upstream->release_held || !upstream->hand_out_slots || !upstream->fair) {
    snprintf(err, err_len, "cannot set up libcurl's multi handle");
    upstream_free(upstream);
    return NULL;
  }
  curl_multi_setopt(upstream->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
  curl_multi_setopt(upstream->multi, CURLMOPT_SOCKETDATA, upstream);
  curl_multi_setopt(upstream->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
  curl_multi_setopt(upstream->multi, CURLMOPT_TIMERDATA, upstream);
  curl_multi_setopt(upstream->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                    (long)cfg->upstream_max_connections);
  curl_multi_setopt(upstream->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  /* HTTP/2: as many streams on a connection as there can be fetches. libcurl 7.88 opens a new
   * connection for every transfer beyond this limit while the next connection's handshake runs
   * (a connection still connecting is skipped, not waited for, despite PIPEWAIT): with its
   * default of 100, 200 misses took 16 connections, 14 of them for one request each. Streams
   * beyond the server's own limit (SETTINGS_MAX_CONCURRENT_STREAMS) wait inside nghttp2 for a
   * free one, on the same connection. */
  curl_multi_setopt(upstream->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, (long)cfg->max_fetches);
  return upstream;
}

void upstream_free(struct upstream *upstream) {
  if (!upstream)
    return;
  /* Every transfer, in the multi, waiting to retry, for a slot or for a credential, is answered. */
  upstream->auth_waiting_head = upstream->auth_waiting_tail = NULL;
  upstream->has_auth = false; /* its provider may be freed once this returns */
  for (struct transfer *t = upstream->held_head; t; t = t->next_held)
    t->held = false;
  upstream->held_head = upstream->held_tail = NULL;
  while (upstream->transfers)
    transfer_abort(upstream, upstream->transfers);
  if (upstream->multi)
    curl_multi_cleanup(upstream->multi);
  if (upstream->timer)
    event_free(upstream->timer);
  if (upstream->release_held)
    event_free(upstream->release_held);
  if (upstream->hand_out_slots)
    event_free(upstream->hand_out_slots); /* never run: the aborts above only activated it */
  fair_free(upstream->fair);
  free(upstream);
}
