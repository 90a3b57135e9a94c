/* upstream_internal: what upstream.c (the libcurl transfers on the loop) and oauth.c (the OAuth2
 * token client) share; no other module includes it. A transfer is one upstream request with its
 * retries: an enrollment fetch for an owner, or a token request for oauth.c. */
#ifndef FLIPCACHED_UPSTREAM_INTERNAL_H
#define FLIPCACHED_UPSTREAM_INTERNAL_H

#include <curl/curl.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "breaker.h"
#include "config.h"
#include "creds.h"
#include "fair.h"
#include "upstream.h"

enum transfer_kind {
  TRANSFER_ENROLLMENT, /* GET an enrollment for the owner's callback */
  TRANSFER_TOKEN,      /* POST the OAuth2 token endpoint for the upstream module itself */
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
  bool waiting_token;         /* in upstream->oauth's queue; retry_timer bounds the wait */
  unsigned token_generation;  /* the access token its headers carry (OAuth) */
  struct event *retry_timer;  /* the backoff before the next attempt, or the end of the wait
                                 for a fetch slot (slot.waiting) */
  struct fair_item slot;      /* an enrollment fetch's place in fair.h: waiting, or running */
  struct curl_slist *request_headers; /* this attempt's own copy, credential included */
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
  struct transfer *next_waiting;  /* upstream->oauth's queue of fetches waiting for a token */
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
  const char *token_protocols;      /* the same for oauth_token_url */
  struct transfer *transfers;
  size_t inflight;                  /* transfers in the list: enrollment fetches and token requests */
  struct fair_share *fair;          /* the enrollment fetches' slots and queues (fair.h) */
  struct event *hand_out_slots;     /* gives freed slots to waiting fetches, from the loop */
  struct breaker breaker;           /* retries, the 429 pause and the circuit (breaker.h),
                                       on CLOCK_MONOTONIC milliseconds */
  struct {
    bool enabled;                   /* oauth_token_url is set */
    bool valid;                     /* `authorization` holds a token believed good */
    char authorization[CREDS_MAX_TOKEN + 32]; /* "Authorization: Bearer <access token>" */
    char *token;                    /* into authorization; registered with the logger */
    unsigned generation;            /* grows with each token obtained */
    struct transfer *fetching;      /* the token request in flight, or NULL */
    struct transfer *waiting_head, *waiting_tail; /* fetches waiting for a token */
    struct event *refresh_timer;    /* at 80% of expires_in */
  } oauth;
};


/* A transfer with every option but its headers and time limit, in upstream->transfers. NULL when
 * out of memory or libcurl refuses an option. */
struct transfer *transfer_new(struct upstream *upstream, enum transfer_kind kind, const char *url);
/* Sends its next attempt (an enrollment fetch without an access token waits in oauth.c's queue:
 * true, it is in hand). false: it cannot be sent, and the caller finishes it. */
bool transfer_launch(struct upstream *upstream, struct transfer *transfer);
/* What a finished attempt amounts to (body and texts valid until the transfer is freed). */
struct upstream_result transfer_result(struct transfer *transfer, CURLcode code);
/* Hands a fetch's final result to its owner (counted, fed to the breaker) and frees it. */
void transfer_deliver(struct upstream *upstream, struct transfer *transfer,
                      const struct upstream_result *result);
void transfer_finish(struct upstream *upstream, struct transfer *transfer, CURLcode code);
void transfer_abort(struct upstream *upstream, struct transfer *transfer);
/* A transfer's retry_timer: the backoff ended, or its wait for a token ran out of budget. */
void transfer_on_retry_timer(evutil_socket_t fd, short what, void *arg);

/* oauth.c: with oauth_token_url set, the access token in upstream->oauth. */
/* Queues an enrollment fetch until a token arrives, bounded by its budget; false when it cannot. */
bool oauth_wait_for_token(struct upstream *upstream, struct transfer *transfer);
void oauth_stop_waiting(struct upstream *upstream, struct transfer *transfer);
/* Asks the token endpoint, unless a request is already out. */
void oauth_start_token_fetch(struct upstream *upstream);
/* oauth.refresh_timer's callback (arg: the upstream): the token is due for renewal. */
void oauth_on_token_refresh(evutil_socket_t fd, short what, void *arg);
/* The token request ended: the token installed and the waiting fetches sent, or failed. */
void oauth_token_finished(struct upstream *upstream, struct transfer *transfer, CURLcode code);
/* A 401 to an access token: a new token and one more attempt, once per fetch; false when that
 * does not apply. */
bool oauth_reauthorize(struct upstream *upstream, struct transfer *transfer, CURLcode code);

#endif
