/* fetched: what an enrollment fetch's result amounts to. Pure: the decision only (what to store,
 * what every waiter is answered, what to log and to remember of the credential); enrollment.c's
 * on_fetched carries it out.
 *
 *   a 200 whose body validate.c accepts  -> stored (ttl) and served
 *   a 404                                -> stored (negative_ttl) and served, with our error body
 *                                           when the upstream's is not JSON
 *   a 304 to a conditional refresh       -> the held copy renewed (fresh for ttl again) and served
 *                                           (a 304 to an unconditional GET is a failure)
 *   anything else                        -> nothing stored; the waiters get a usable stale copy,
 *                                           else `error` (with Retry-After for a 429) */
#ifndef FLIPCACHED_FETCHED_H
#define FLIPCACHED_FETCHED_H

#include <stdbool.h>

#include "cache_status.h"
#include "errors.h"
#include "upstream.h"
#include "validate.h"

enum fetched_action {
  FETCHED_SERVE_200,  /* store and serve the body */
  FETCHED_SERVE_404,  /* store and serve the 404 (our own body when `own_404_body`) */
  FETCHED_RENEW,      /* a 304 to a conditional refresh: renew and serve the held copy */
  FETCHED_FAIL,       /* store nothing; a stale copy or `error` */
};

/* Why a failure is logged, for the line on_fetched writes. */
enum fetched_note {
  FETCHED_NOTE_NONE,
  FETCHED_NOTE_TRANSPORT,       /* the transfer failed: result->error_text says how */
  FETCHED_NOTE_INVALID_BODY,    /* a 200 that validate.c refused: `verdict` says why */
  FETCHED_NOTE_CREDENTIAL,      /* the API refused the credential (401/403): an error line */
  FETCHED_NOTE_CLIENT_CERT,     /* nginx's 400 for a missing or refused client certificate */
  FETCHED_NOTE_STATUS,          /* another unusable status */
};

struct fetched_decision {
  enum fetched_action action;
  bool own_404_body;            /* FETCHED_SERVE_404: the upstream's body is not JSON */
  enum api_error error;         /* FETCHED_FAIL: what the waiters are told */
  long fwd_status;              /* the upstream's status for Cache-Status (0: none to tell) */
  long retry_after;             /* FETCHED_FAIL: seconds for Retry-After, or -1 */
  enum fetched_note note;
  enum body_verdict verdict;    /* of a 200's body */
  bool credential_works;        /* a 200 or a 404: the credential was accepted */
  long credential_rejected;     /* the status that rejected it (the API's 401/403, or the token
                                   endpoint's 4xx), or 0 */
  bool counts_as_upstream_error; /* an HTTP answer that could not be used (transport failures
                                    are counted by upstream.c) */
};

/* What a client is told when the upstream module did not send the fetch (enum upstream_start). */
enum api_error fetched_refusal_error(int refusal);

/* conditional: the fetch carried If-None-Match or If-Modified-Since. */
struct fetched_decision fetched_decide(const struct upstream_result *result,
                                       const char *enrollment_id, bool conditional);

#endif
