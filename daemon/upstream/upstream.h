/* upstream: fetching enrollments from the Flip API through one libcurl multi handle driven by the
 * daemon's libevent loop (the shape of curl's docs/examples/hiperfifo.c; upstream.c). Requests
 * carry the static key, or the credential of a provider registered with upstream_set_auth (the
 * OAuth2 client, oauth.h, which buys its tokens with upstream_post_form).
 * Retries, the 429 pause and the circuit breaker are retry_breaker.c's pure policy; which fetch may
 * start when the upstream is busy is fair.c's (fair shares per local user).
 *
 * Nothing here blocks: sockets and the single timer are libevent events; name lookups use libcurl's
 * asynchronous resolver (checked at start-up). Finished transfers are collected after every
 * curl_multi_socket_action and their callbacks run there, never inside a libcurl callback.
 * The only headers sent besides Accept and User-Agent are the daemon's own Authorization and, on
 * a refresh of a copy the upstream gave validators for, If-None-Match and If-Modified-Since with
 * those validators (checked by validators.h when they were received). */
#ifndef FLIPCACHED_UPSTREAM_H
#define FLIPCACHED_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "retry_breaker.h"

struct event_base;
struct config;
struct creds;
struct stats;
struct upstream;
struct transfer;

#define UPSTREAM_MAX_BODY (4u * 1024u * 1024u) /* an enrollment is ~1 KB; more is refused */
#define UPSTREAM_MAX_LIST_BODY (64u * 1024u * 1024u) /* a program's list: ~50,000 enrollments */
#define UPSTREAM_LOW_SPEED_BYTES 1024          /* per second, see trickle_window_ms() */

enum upstream_outcome {
  UPSTREAM_RESPONSE,       /* an HTTP response arrived: see http_status and body */
  UPSTREAM_TIMEOUT,        /* connect or total timeout */
  UPSTREAM_UNREACHABLE,    /* name lookup, connection, TLS or the proxy failed */
  UPSTREAM_BODY_TOO_LARGE, /* the body passed UPSTREAM_MAX_BODY and the transfer was cut */
  UPSTREAM_FAILED,         /* any other transfer error */
  UPSTREAM_ABORTED,        /* the daemon is shutting down */
  UPSTREAM_TOKEN_FAILED,   /* OAuth: no access token could be had; http_status is the token
                              endpoint's (0 when it gave none) */
  UPSTREAM_REFUSED,        /* not sent: `refusal` says why (fleet.h delivers a refusal met after
                              the shared tier was asked as a result) */
};

struct upstream_result {
  enum upstream_outcome outcome;
  long http_status;          /* with UPSTREAM_RESPONSE */
  const char *body;          /* with UPSTREAM_RESPONSE; valid only during the callback */
  size_t body_len;
  char **body_owner;         /* with a non-empty body: the callback may keep it, without a copy,
                                by taking *body_owner and setting it to NULL; it free()s it later */
  long retry_after_seconds;  /* a 429's or 503's Retry-After in seconds, or -1; with
                                UPSTREAM_REFUSED, upstream_refusal_retry_after's */
  int refusal;               /* with UPSTREAM_REFUSED: the enum upstream_start that refused */
  /* With UPSTREAM_RESPONSE: the answer's ETag and Last-Modified when each came well-formed
   * (validators.h), else NULL; valid only during the callback. */
  const char *etag;
  size_t etag_len;
  const char *last_modified;
  size_t last_modified_len;
  const char *error_text;    /* a short reason for logs, never containing a header: whose failure
                                it was (the proxy's, TLS's with the certificate problem named, a
                                wait for a free connection) and libcurl's words */
};

/* Called exactly once per upstream_fetch_enrollment that returned UPSTREAM_STARTED, never from
 * inside upstream_fetch_enrollment. */
typedef void (*upstream_done_fn)(const struct upstream_result *result, void *arg);

enum upstream_start {
  UPSTREAM_STARTED,
  UPSTREAM_PAUSED,       /* a 429 paused every upstream request; nothing is sent until it ends */
  UPSTREAM_CIRCUIT_OPEN, /* the breaker is open, or its one probe is already out */
  UPSTREAM_OVERLOADED,   /* the user's queue for a fetch slot is full, or its fetch waited there
                            until too little of timeout_ms was left to send it */
  UPSTREAM_START_FAILED, /* out of memory or a libcurl error */
};

/* Before curl_global_init: unsets what would let the environment redirect or weaken the daemon's
 * transfers (SSLKEYLOGFILE, which would write the TLS session secrets to a file, and the proxy
 * variables, which CURLOPT_PROXY overrides anyway), logging each one found. CURL_CA_BUNDLE,
 * SSL_CERT_FILE and SSL_CERT_DIR need nothing: libcurl sets its CA bundle explicitly. */
void upstream_scrub_environment(void);
/* For -t and start-up: ca_file, ca_path and client_cert exist and can be read (the client key is
 * creds.h's). 0 or -1 with err naming the key and the file. */
int upstream_check_tls_files(const struct config *cfg, char *err, size_t err_len);

/* cfg, creds and stats must outlive the upstream. Returns NULL with err set. */
struct upstream *upstream_new(struct event_base *base, const struct config *cfg,
                              const struct creds *creds, struct stats *stats, char *err,
                              size_t err_len);
/* The validators of the copy a refresh would replace (NUL-terminated, "" for none): sent as
 * If-None-Match and If-Modified-Since, so that an unchanged enrollment costs a 304 without a
 * body. Each must have passed validators.h's check. */
struct upstream_conditions {
  const char *etag;
  const char *last_modified;
};

/* Starts GET {base_url}/v1/enrollments/{enrollment_id} for `flow` (fair.h: peer_user_key of the
 * user whose miss it is, or FAIR_FLOW_BACKGROUND), or says why it was not sent. conditions may
 * be NULL (an unconditional GET); they are copied.
 *
 * Fetch slots: at most upstream_fetch_slots' `slots` fetches run at once ([upstream]
 * max_fetches; over HTTP/1, no more than max_connections, so that no fetch waits inside libcurl
 * for a connection, first come first served). A fetch that finds every slot taken waits in its
 * flow's queue (at most max_fetches of them a flow) and is handed a slot in fair shares (fair.h);
 * UPSTREAM_STARTED either way. A full queue is UPSTREAM_OVERLOADED at once; a fetch whose budget
 * runs out while it waits (too little of timeout_ms left to be worth sending) ends with
 * UPSTREAM_REFUSED and refusal UPSTREAM_OVERLOADED, the upstream not asked.
 *
 * With UPSTREAM_STARTED, *handle (when handle is not NULL) names the fetch for
 * upstream_fetch_shared_with until done is called.
 *
 * Retries, the 429 pause and the circuit breaker follow retry_breaker.h (asked when the fetch starts,
 * and again when a waiting one is handed its slot); the done callback sees the last attempt's
 * result, and the whole fetch, the wait for a slot and retries included, stays within
 * timeout_ms. */
enum upstream_start upstream_fetch_enrollment(struct upstream *upstream, const char *enrollment_id,
                                              uint64_t flow,
                                              const struct upstream_conditions *conditions,
                                              upstream_done_fn done, void *arg,
                                              struct transfer **handle);
/* Another user (`flow`) now waits on the fetch `handle` (upstream_fetch_enrollment's, valid until
 * its done callback runs) too: a fetch still waiting for a slot moves to that user's queue when
 * it is the shorter, so that a request joining another user's fetch waits no longer behind that
 * user's flood than one of its own would. */
void upstream_fetch_shared_with(struct upstream *upstream, struct transfer *handle, uint64_t flow);
/* Starts GET {base_url}/v1/enrollments?program_id={program_id} (the list endpoint, for the warm-up;
 * program_id of unreserved URL characters only, config.h), exactly as an enrollment fetch of
 * FAIR_FLOW_BACKGROUND: a fetch slot, the same breaker, retries, pause, credential and
 * timeout_ms. Its body may be up to UPSTREAM_MAX_LIST_BODY. */
enum upstream_start upstream_fetch_program(struct upstream *upstream, const char *program_id,
                                           upstream_done_fn done, void *arg);
/* The credential enrollment requests carry when it is not the static key (the OAuth client).
 *   authorization(arg, &generation): the whole "Authorization: ..." line to send now and its
 *     generation, or NULL while none is held: the fetch then waits, within its budget, until
 *     upstream_auth_changed (the provider is getting one).
 *   rejected(arg, generation): the API answered 401 to a request sent with that generation;
 *     true: the fetch is sent once more (once per fetch) with whatever authorization() gives. */
struct upstream_auth {
  const char *(*authorization)(void *arg, unsigned *generation);
  bool (*rejected)(void *arg, unsigned generation);
  void *arg;
};
/* Copies auth; from now on every enrollment request asks it for its credential. */
void upstream_set_auth(struct upstream *upstream, const struct upstream_auth *auth);
/* The provider's credential changed: ok, the fetches waiting for one are sent; !ok (none could be
 * had; http_status the endpoint's, 0 for none), they end with UPSTREAM_TOKEN_FAILED. */
void upstream_auth_changed(struct upstream *upstream, bool ok, long http_status);
/* POST form (application/x-www-form-urlencoded) to url with the Authorization line given: one
 * attempt, outside the fetch slots, the breaker and the enrollment counters (they are the API's),
 * within timeout_ms, a body of at most UPSTREAM_MAX_BODY, the trickle guard as for fetches. done
 * as for fetches, never from inside this call. For the OAuth token request. */
enum upstream_start upstream_post_form(struct upstream *upstream, const char *url,
                                       const char *authorization, const char *form,
                                       upstream_done_fn done, void *arg);
/* For a refused fetch: whole seconds until the upstream may be asked again (at least 1). */
long upstream_retry_after(const struct upstream *upstream);
/* The Retry-After to answer a refusal with: upstream_retry_after for a pause or an open circuit,
 * UPSTREAM_OVERLOADED_RETRY_AFTER when the fetch found no slot, -1 (none) otherwise. */
#define UPSTREAM_OVERLOADED_RETRY_AFTER 1
long upstream_refusal_retry_after(const struct upstream *upstream, enum upstream_start refusal);
enum breaker_state upstream_breaker_state(const struct upstream *upstream);
/* Whole seconds left of a 429's pause, 0 when not paused. */
long upstream_paused_seconds(const struct upstream *upstream);
/* Transfers in progress (enrollment fetches, retries and waits for a slot included, and token
 * requests). */
size_t upstream_inflight(const struct upstream *upstream);
/* The fetch slots now (max_fetches, or max_connections over HTTP/1 when fewer), and the fetches
 * waiting for one. */
void upstream_fetch_slots(const struct upstream *upstream, uint64_t *slots, uint64_t *waiting);
/* Aborts every transfer (each callback runs with UPSTREAM_ABORTED), then frees. Accepts NULL. */
void upstream_free(struct upstream *upstream);

#endif
