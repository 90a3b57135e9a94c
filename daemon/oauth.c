/* oauth: the OAuth2 client-credentials token client of the upstream module (RFC 6749 4.4). It
 * buys access tokens from oauth_token_url through the same multi handle as the fetches, keeps the
 * current one in memory only (registered with the logger as a secret), renews it at 80% of its
 * lifetime, holds fetches back while it has none, and answers an API 401 with one new token and
 * one more attempt of that fetch. */
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "stats.h"
#include "upstream_internal.h"
#include "validate.h"

/* Queues an enrollment fetch until an access token arrives. Its retry timer is armed for what is
 * left of its budget: if no token comes by then, it ends as a timeout, from the loop, never from
 * inside the call that queued it. */
bool oauth_wait_for_token(struct upstream *upstream, struct transfer *transfer) {
  if (!transfer->retry_timer)
    transfer->retry_timer = evtimer_new(upstream->base, transfer_on_retry_timer, transfer);
  long left = (long)(transfer->deadline_ms - clock_monotonic_ms());
  struct timeval tv = clock_timeval_of_ms(left > 0 ? left : 1);
  if (!transfer->retry_timer || evtimer_add(transfer->retry_timer, &tv) != 0)
    return false;
  transfer->waiting_token = true;
  transfer->next_waiting = NULL;
  if (upstream->oauth.waiting_tail)
    upstream->oauth.waiting_tail->next_waiting = transfer;
  else
    upstream->oauth.waiting_head = transfer;
  upstream->oauth.waiting_tail = transfer;
  oauth_start_token_fetch(upstream);
  return true;
}

void oauth_stop_waiting(struct upstream *upstream, struct transfer *transfer) {
  struct transfer **link = &upstream->oauth.waiting_head, *previous = NULL;
  while (*link && *link != transfer) {
    previous = *link;
    link = &(*link)->next_waiting;
  }
  if (*link) {
    *link = transfer->next_waiting;
    if (upstream->oauth.waiting_tail == transfer)
      upstream->oauth.waiting_tail = previous;
  }
  transfer->waiting_token = false;
  transfer->next_waiting = NULL;
  evtimer_del(transfer->retry_timer);
}

void oauth_on_token_refresh(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  oauth_start_token_fetch(arg);
}

/* Asks the token endpoint for an access token, unless a request is already out. */
void oauth_start_token_fetch(struct upstream *upstream) {
  if (!upstream->oauth.enabled || upstream->oauth.fetching)
    return;
  struct transfer *transfer = transfer_new(upstream, TRANSFER_TOKEN, upstream->cfg->oauth_token_url);
  if (!transfer || !transfer_launch(upstream, transfer)) {
    log_error("upstream: could not start the OAuth token request; trying again in 1 s");
    if (transfer)
      transfer_abort(upstream, transfer);
    struct timeval again = {.tv_sec = 1};
    evtimer_add(upstream->oauth.refresh_timer, &again);
    return;
  }
  upstream->oauth.fetching = transfer;
}

/* Replaces the access token (wiping the old one) and schedules its refresh. */
static void install_token(struct upstream *upstream, const char *token, long expires_in) {
  static const char PREFIX[] = CREDS_BEARER_PREFIX;
  if (upstream->oauth.token)
    log_remove_secret(upstream->oauth.token);
  explicit_bzero(upstream->oauth.authorization, sizeof(upstream->oauth.authorization));
  snprintf(upstream->oauth.authorization, sizeof(upstream->oauth.authorization), "%s%s", PREFIX,
           token);
  upstream->oauth.token = upstream->oauth.authorization + sizeof(PREFIX) - 1;
  log_add_secret(upstream->oauth.token, strlen(upstream->oauth.token));
  upstream->oauth.valid = true;
  upstream->oauth.generation++;
  upstream->stats->token_refreshes++;
  /* Refresh at 80% of the lifetime, so that a token never expires in use. */
  long refresh_ms = expires_in * 800;
  struct timeval tv = clock_timeval_of_ms(refresh_ms);
  evtimer_add(upstream->oauth.refresh_timer, &tv);
  log_info("upstream: OAuth access token obtained; valid for %ld s, renewed in %ld ms", expires_in,
           refresh_ms);
}

/* The token request ended: install the token and send the fetches that waited for it, or fail
 * them (when no valid token is left). */
void oauth_token_finished(struct upstream *upstream, struct transfer *transfer, CURLcode code) {
  upstream->oauth.fetching = NULL;
  struct upstream_result result = transfer_result(transfer, code);
  char token[CREDS_MAX_TOKEN + 1];
  long expires_in = 0;
  const char *problem = NULL;
  if (result.outcome != UPSTREAM_RESPONSE)
    problem = result.error_text;
  else if (result.http_status != 200)
    problem = "the token endpoint refused the request";
  else
    problem = validate_token_response(result.body, result.body_len, token, sizeof(token),
                                      &expires_in);
  long token_status = result.http_status;
  if (!problem) {
    install_token(upstream, token, expires_in);
    explicit_bzero(token, sizeof(token));
  } else {
    upstream->stats->token_failures++;
    log_error("upstream: OAuth token request to %s failed (HTTP %ld): %s",
              upstream->cfg->oauth_token_url, token_status, problem);
    if (upstream->oauth.valid) {
      /* The current token still works: try again in a while. */
      struct timeval again = {.tv_sec = 10};
      evtimer_add(upstream->oauth.refresh_timer, &again);
    }
  }
  transfer_deliver(upstream, transfer, &result); /* no owner: logged and freed */
  struct transfer *waiting = upstream->oauth.waiting_head;
  while (waiting) {
    struct transfer *next = waiting->next_waiting;
    oauth_stop_waiting(upstream, waiting);
    if (upstream->oauth.valid) {
      if (!transfer_launch(upstream, waiting))
        transfer_finish(upstream, waiting, CURLE_OPERATION_TIMEDOUT);
    } else {
      struct upstream_result failed = {.outcome = UPSTREAM_TOKEN_FAILED,
                                       .http_status = token_status,
                                       .retry_after_seconds = -1,
                                       .error_text = "no OAuth access token"};
      transfer_deliver(upstream, waiting, &failed);
    }
    waiting = next;
  }
}

/* A 401 to an OAuth access token: that token is dropped (unless a newer one exists already), a
 * new one is requested, and the fetch is sent once more with it. Once per fetch. */
bool oauth_reauthorize(struct upstream *upstream, struct transfer *transfer, CURLcode code) {
  long status = 0;
  if (code == CURLE_OK)
    curl_easy_getinfo(transfer->easy, CURLINFO_RESPONSE_CODE, &status);
  if (!upstream->oauth.enabled || status != 401 || transfer->auth_retried)
    return false;
  transfer->auth_retried = true;
  if (transfer->token_generation == upstream->oauth.generation && upstream->oauth.valid) {
    upstream->oauth.valid = false;
    log_warning("upstream: the API refused the OAuth access token (401); requesting a new one");
  }
  return transfer_launch(upstream, transfer);
}
