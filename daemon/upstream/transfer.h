/* transfer: one upstream request with its retries, and the upstream it belongs to: what
 * upstream.c (the multi handle on the loop, the fetch slots, the credential, attempts and
 * results) and transfer.c (one transfer's options, libcurl callbacks, trickle guard and the
 * classification of its failures) share. No other module includes it: the rest of the daemon,
 * the OAuth client included, sees upstream.h. */
#ifndef FLIPCACHED_TRANSFER_H
#define FLIPCACHED_TRANSFER_H

#include <curl/curl.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "retry_breaker.h"
#include "config.h"
#include "creds.h"
#include "fair.h"
#include "upstream.h"
#include "validators.h"

enum transfer_kind {
  TRANSFER_ENROLLMENT, /* GET an enrollment for the owner's callback */
  TRANSFER_TOKEN,      /* upstream_post_form's request (the OAuth2 token endpoint's) */
};

struct transfer {
  struct upstream *upstream;
  enum transfer_kind kind;
  CURL *easy;
  bool in_multi;              /* added to the multi handle (not waiting to retry or for a token) */
  int attempts;               /* sent so far */
  int64_t deadline_ms;        /* CLOCK_MONOTONIC: the whole fetch, retries included, ends here */
  bool breaker_probe;         /* let through by a half-open breaker */
  bool auth_retried;          /* a 401 already bought a new access token for this fetch */
  bool waiting_token;         /* in upstream->auth_waiting_*; retry_timer bounds the wait */
  unsigned token_generation;  /* the generation of the credential its headers carry (auth) */
  const char *form_authorization; /* upstream_post_form's Authorization line: the caller's,
                                     read by the one launch within that call */
  struct event *retry_timer;  /* the backoff before the next attempt, or the end of the wait
                                 for a fetch slot (slot.waiting) */
  struct fair_item slot;      /* an enrollment fetch's place in fair.h: waiting, or running */
  struct curl_slist *request_headers; /* this attempt's own copy, credential included */
  /* An enrollment refresh's conditions, whole header lines ("" for none), sent with every
   * attempt; and the validators of this attempt's answer ("" for none), checked on receipt. */
  char if_none_match_line[UPSTREAM_ETAG_MAX + 32];
  char if_modified_since_line[UPSTREAM_LAST_MODIFIED_MAX + 32];
  char answer_etag[UPSTREAM_ETAG_MAX + 1];
  char answer_last_modified[UPSTREAM_LAST_MODIFIED_MAX + 1];
  char url[CONFIG_URL_MAX + 64];
  char *body;
  size_t body_len, body_cap;
  size_t max_body;            /* a longer body is cut and refused (UPSTREAM_BODY_TOO_LARGE) */
  bool body_too_large;
  bool resolving_started;     /* this attempt reached a name lookup: it had a connection slot */
  bool opened_connection;     /* this attempt made libcurl open a new connection */
  bool request_sent;          /* this attempt's request went out on a connection (new or reused) */
  bool answer_started;        /* the first byte of this attempt's answer came */
  bool trickled;              /* the trickle guard cut this attempt (reason says so) */
  size_t window_bytes;        /* answer bytes since the trickle guard's window began */
  struct event *trickle_timer; /* from the answer's first byte: checks the rate, each window */
  bool held;                  /* in upstream->held: waiting for a connection being made */
  struct transfer *next_held;
  long retry_after_seconds;
  struct timespec started;
  char reason[CONFIG_URL_MAX + CURL_ERROR_SIZE + 160]; /* the failure as logged: whose, and why */
  upstream_done_fn done;      /* NULL for a token transfer */
  void *arg;
  struct transfer *prev, *next;   /* upstream->transfers, so that shutdown can abort them */
  struct transfer *next_waiting;  /* upstream->auth_waiting_*: fetches waiting for a credential */
  char error[CURL_ERROR_SIZE];
};

struct upstream {
  struct event_base *base;
  CURLM *multi;
  struct event *timer;              /* the one timer libcurl asks for */
  const struct config *cfg;
  struct stats *stats;
  const struct creds *creds;        /* the daemon's; may be replaced between transfers (SIGHUP) */
  const char *protocols;            /* "https", or "http,https" for a loopback http base_url */
  bool multiplexing;                /* https, and no answer over HTTP/1 yet: HTTP/2 may be in use,
                                       so PIPEWAIT pays and connections are made one at a time */
  bool connecting;                  /* multiplexing: a new connection is being made; attempts
                                       wait in `held` until it can carry them */
  struct transfer *held_head, *held_tail;
  struct event *release_held;       /* sends the held attempts, from the loop */
  struct transfer *transfers;
  size_t inflight;                  /* transfers in the list: enrollment fetches and token requests */
  struct fair_share *fair;          /* the enrollment fetches' slots and queues (fair.h) */
  struct event *hand_out_slots;     /* gives freed slots to waiting fetches, from the loop */
  struct breaker breaker;           /* retries, the 429 pause and the circuit (retry_breaker.h),
                                       on CLOCK_MONOTONIC milliseconds */
  bool has_auth;                    /* upstream_set_auth was called: `auth` gives the credential */
  struct upstream_auth auth;
  struct transfer *auth_waiting_head, *auth_waiting_tail; /* fetches waiting for a credential */
};

/* transfer.c */
/* A transfer with every option but its headers and time limit, in upstream->transfers. NULL when
 * out of memory or libcurl refuses an option. */
struct transfer *transfer_new(struct upstream *upstream, enum transfer_kind kind, const char *url);
/* Frees it (the caller has unlinked it from upstream->transfers and the multi handle). */
void transfer_free(struct transfer *transfer);
/* The header list of one attempt: the authorization line given, the fixed ones, and the
 * transfer's conditions; NULL when out of memory. Freed (the credential's copies wiped) by
 * transfer_free_request_headers. */
struct curl_slist *transfer_build_request_headers(const struct transfer *transfer,
                                                  const char *authorization);
void transfer_free_request_headers(struct curl_slist *headers);
/* What a finished attempt amounts to (body and texts valid until the transfer is freed). */
struct upstream_result transfer_result(struct transfer *transfer, CURLcode code);
/* The one classification of a failed attempt: its outcome, *retryable, and transfer->reason. */
enum upstream_outcome transfer_classify_failure(struct transfer *transfer, CURLcode code,
                                                bool *retryable);
/* libcurl's allowed protocols for url ("https", or "http,https" for an http:// one). */
const char *transfer_protocols_for(const char *url);
long transfer_elapsed_ms(const struct timespec *since);

/* upstream.c */
/* Sends its next attempt (an enrollment fetch without a credential waits for one: true, it is in
 * hand). false: it cannot be sent, and the caller finishes it. */
bool transfer_launch(struct upstream *upstream, struct transfer *transfer);
/* Hands a fetch's final result to its owner (counted, fed to the breaker) and frees it. */
void transfer_deliver(struct upstream *upstream, struct transfer *transfer,
                      const struct upstream_result *result);
void transfer_finish(struct upstream *upstream, struct transfer *transfer, CURLcode code);
void transfer_abort(struct upstream *upstream, struct transfer *transfer);
/* A transfer's retry_timer: the backoff ended, or its wait for a slot or a credential ran out. */
void transfer_on_retry_timer(evutil_socket_t fd, short what, void *arg);
/* The connection being made (upstream->connecting) is up or failed: held attempts may go. */
void upstream_connection_settled(struct upstream *upstream);

#endif
