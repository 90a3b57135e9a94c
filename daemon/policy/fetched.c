#include "fetched.h"

#include <string.h>

#include "retry_breaker.h"

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

enum api_error fetched_refusal_error(int refusal) {
  switch (refusal) {
  case UPSTREAM_PAUSED:
    return API_ERROR_UPSTREAM_RATE_LIMITED;
  case UPSTREAM_CIRCUIT_OPEN:
    return API_ERROR_CIRCUIT_OPEN;
  case UPSTREAM_OVERLOADED:
    return API_ERROR_OVERLOADED;
  default:
    return API_ERROR_UPSTREAM_UNAVAILABLE;
  }
}

/* A failure: nothing stored. */
static void decide_failure(const struct upstream_result *result, long status,
                           struct fetched_decision *d) {
  d->action = FETCHED_FAIL;
  d->fwd_status = status;
  if (result->outcome == UPSTREAM_TOKEN_FAILED) {
    /* The token endpoint's 4xx means it rejected the client credentials. */
    bool rejected = result->http_status >= 400 && result->http_status < 500;
    d->error = rejected ? API_ERROR_UPSTREAM_AUTH_FAILED : API_ERROR_UPSTREAM_UNAVAILABLE;
    d->credential_rejected = rejected ? result->http_status : 0;
    d->fwd_status = 0; /* not the API's status: no fwd-status */
    return;
  }
  if (result->outcome == UPSTREAM_REFUSED) {
    /* Not sent (after the shared tier was asked): as a refusal at once would be answered. */
    d->error = fetched_refusal_error(result->refusal);
    d->retry_after = result->retry_after_seconds;
    return;
  }
  if (result->outcome != UPSTREAM_RESPONSE) {
    d->error = error_for_outcome(result->outcome);
    d->note = FETCHED_NOTE_TRANSPORT;
    return;
  }
  d->counts_as_upstream_error = true;
  if (status == 200) {
    d->error = API_ERROR_UPSTREAM_INVALID_RESPONSE;
    d->note = FETCHED_NOTE_INVALID_BODY;
    return;
  }
  d->error = error_for_status(status);
  if (d->error == API_ERROR_UPSTREAM_AUTH_FAILED) {
    d->credential_rejected = status;
    d->note = FETCHED_NOTE_CREDENTIAL;
  } else if (status == 400 && result->body && memmem(result->body, result->body_len,
                                                     "SSL certificate", 15)) {
    /* nginx answers a missing or refused client certificate with a 400 of this text after the
     * handshake (others refuse the handshake itself: upstream.c names that). */
    d->note = FETCHED_NOTE_CLIENT_CERT;
  } else {
    d->note = FETCHED_NOTE_STATUS;
  }
  if (d->error == API_ERROR_UPSTREAM_RATE_LIMITED)
    d->retry_after = breaker_clamp_retry_after(result->retry_after_seconds);
}

struct fetched_decision fetched_decide(const struct upstream_result *result,
                                       const char *enrollment_id, bool conditional) {
  struct fetched_decision d = {.retry_after = -1, .verdict = BODY_OK};
  long status = result->outcome == UPSTREAM_RESPONSE ? result->http_status : 0;
  if (status == 200)
    d.verdict = validate_enrollment_body(result->body, result->body_len, enrollment_id);
  d.credential_works = status == 200 || status == 404 || (status == 304 && conditional);
  if (status == 304 && conditional) {
    /* RFC 9111 4.3.3/4.3.4: the held copy is still current; it is renewed, body unchanged. */
    d.action = FETCHED_RENEW;
    d.fwd_status = 304;
  } else if (status == 200 && d.verdict == BODY_OK) {
    d.action = FETCHED_SERVE_200;
    d.fwd_status = 200;
  } else if (status == 404) {
    /* The upstream's own body when it is JSON; an empty or non-JSON body gets ours, so that
     * clients always parse the same shape. What is sent is what is remembered. */
    d.action = FETCHED_SERVE_404;
    d.fwd_status = 404;
    d.own_404_body = !validate_not_found_body(result->body, result->body_len);
  } else {
    decide_failure(result, status, &d);
  }
  return d;
}
