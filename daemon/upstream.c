/* upstream: the libcurl transfers on the daemon's loop (upstream.h says what they do). The OAuth2
 * token client is oauth.c, the retry, pause and circuit policy breaker.c; upstream_internal.h is
 * what they share. */
#include "clock.h"
#include "upstream.h"
#include "upstream_internal.h"

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

#include "breaker.h"
#include "config.h"
#include "creds.h"
#include "log.h"
#include "stats.h"


static void collect_finished(struct upstream *upstream);
static void on_wait_over(struct upstream *upstream, struct transfer *transfer);
static void connection_settled(struct upstream *upstream);
static curl_socket_t on_open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *address);

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

/* --- one transfer ----------------------------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t count, void *arg) {
  struct transfer *transfer = arg;
  size_t len = size * count;
  if (transfer->body_len + len > transfer->max_body) {
    transfer->body_too_large = true;
    return 0; /* makes libcurl fail the transfer with CURLE_WRITE_ERROR: nothing more is buffered */
  }
  if (transfer->body_len + len > transfer->body_cap) {
    size_t cap = transfer->body_cap ? transfer->body_cap : 4096;
    while (cap < transfer->body_len + len)
      cap *= 2;
    if (cap > transfer->max_body)
      cap = transfer->max_body; /* a list's buffer never grows past its limit */
    char *grown = realloc(transfer->body, cap);
    if (!grown)
      return 0;
    transfer->body = grown;
    transfer->body_cap = cap;
  }
  memcpy(transfer->body + transfer->body_len, data, len);
  transfer->body_len += len;
  transfer->window_bytes += len;
  return len;
}

/* CURLOPT_PREREQFUNCTION: the connection is up and the request is about to be sent. Counting
 * here, not when a transfer is queued, makes upstream_requests the requests the API received
 * (a transfer waiting for one of max_connections is not one). */
static int on_request_sent(void *arg, char *primary_ip, char *local_ip, int primary_port,
                           int local_port) {
  (void)primary_ip;
  (void)local_ip;
  (void)primary_port;
  (void)local_port;
  struct transfer *transfer = arg;
  transfer->request_sent = true;
  if (transfer->kind == TRANSFER_ENROLLMENT)
    transfer->upstream->stats->upstream_requests++;
  if (transfer->opened_connection)
    connection_settled(transfer->upstream); /* its connection is up: the held may use it */
  return CURL_PREREQFUNC_OK;
}

/* CURLOPT_RESOLVER_START_FUNCTION: the attempt left the queue for a connection. */
static int on_resolver_start(void *resolver_state, void *reserved, void *arg) {
  (void)resolver_state;
  (void)reserved;
  ((struct transfer *)arg)->resolving_started = true;
  return 0;
}

/* The trickle guard's window: an answer that, once begun, brings fewer than
 * UPSTREAM_LOW_SPEED_BYTES a second over a window of half of timeout_ms (at least 1 s, at most
 * 30 s) is cut as timed out: a trickling upstream cannot hold a fetch, and the clients waiting on
 * it, for the whole timeout. The wait for the first byte is not measured: a silent upstream is
 * waited for until timeout_ms (libcurl's own CURLOPT_LOW_SPEED_TIME counts that wait too, and
 * cut a slow first byte at half the timeout). */
static long trickle_window_ms(const struct config *cfg) {
  long ms = (long)cfg->timeout_ms / 2;
  return ms < 1000 ? 1000 : ms > 30000 ? 30000 : ms;
}

/* The trickle guard's timer: the window ended; too few bytes in it cut the transfer here, on
 * the loop (never inside a libcurl callback), as timed out. */
static void on_trickle_check(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct transfer *transfer = arg;
  long window = trickle_window_ms(transfer->upstream->cfg);
  if (transfer->window_bytes >= (size_t)UPSTREAM_LOW_SPEED_BYTES * (size_t)window / 1000) {
    transfer->window_bytes = 0;
    struct timeval tv = clock_timeval_of_ms(window);
    evtimer_add(transfer->trickle_timer, &tv);
    return;
  }
  snprintf(transfer->reason, sizeof(transfer->reason),
           "the answer trickled: fewer than %u bytes a second for %ld ms after it began (cut "
           "before timeout_ms)", UPSTREAM_LOW_SPEED_BYTES, window);
  transfer->trickled = true;
  struct upstream *upstream = transfer->upstream;
  if (transfer->in_multi) {
    curl_multi_remove_handle(upstream->multi, transfer->easy);
    transfer->in_multi = false;
  }
  /* A token request ends through oauth.c, which holds it (oauth.fetching) and its waiters. */
  if (transfer->kind == TRANSFER_TOKEN)
    oauth_token_finished(upstream, transfer, CURLE_OPERATION_TIMEDOUT);
  else
    transfer_finish(upstream, transfer, CURLE_OPERATION_TIMEDOUT);
}

/* The answer's first byte came: the trickle guard starts measuring. */
static void answer_began(struct transfer *transfer) {
  transfer->answer_started = true;
  transfer->window_bytes = 0;
  if (!transfer->trickle_timer)
    transfer->trickle_timer = evtimer_new(transfer->upstream->base, on_trickle_check, transfer);
  struct timeval tv = clock_timeval_of_ms(trickle_window_ms(transfer->upstream->cfg));
  if (transfer->trickle_timer)
    evtimer_add(transfer->trickle_timer, &tv);
}

/* Remembers Retry-After (delta-seconds only; an HTTP-date is ignored and the default applies);
 * the first header line is the answer's first byte. */
static size_t on_header(char *line, size_t size, size_t count, void *arg) {
  struct transfer *transfer = arg;
  size_t len = size * count;
  if (!transfer->answer_started)
    answer_began(transfer);
  transfer->window_bytes += len;
  static const char NAME[] = "retry-after:";
  if (len > sizeof(NAME) - 1 && strncasecmp(line, NAME, sizeof(NAME) - 1) == 0) {
    const char *p = line + sizeof(NAME) - 1;
    const char *end = line + len;
    while (p < end && (*p == ' ' || *p == '\t'))
      p++;
    long seconds = 0;
    bool digits = false;
    while (p < end && *p >= '0' && *p <= '9' && seconds < 1000000) {
      seconds = seconds * 10 + (*p++ - '0');
      digits = true;
    }
    if (digits)
      transfer->retry_after_seconds = seconds;
  }
  return len;
}

/* The header list of one attempt: the authorization line given, plus the fixed ones. */
static struct curl_slist *build_request_headers(const char *authorization, bool form_body) {
  struct curl_slist *headers = NULL, *next;
  const char *lines[] = {authorization, "Accept: application/json",
                         "User-Agent: flipcached/" FLIPCACHED_VERSION,
                         form_body ? "Content-Type: application/x-www-form-urlencoded" : NULL};
  for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]) && lines[i]; i++) {
    next = curl_slist_append(headers, lines[i]);
    if (!next) {
      curl_slist_free_all(headers);
      return NULL;
    }
    headers = next;
  }
  return headers;
}

/* curl_slist_append copied the credential: wipe the copies before they go back to the heap. */
static void free_request_headers(struct curl_slist *headers) {
  for (struct curl_slist *item = headers; item; item = item->next)
    explicit_bzero(item->data, strlen(item->data));
  curl_slist_free_all(headers);
}

static void transfer_free(struct transfer *transfer) {
  if (!transfer)
    return;
  if (transfer->retry_timer)
    event_free(transfer->retry_timer);
  if (transfer->trickle_timer)
    event_free(transfer->trickle_timer);
  if (transfer->easy)
    curl_easy_cleanup(transfer->easy);
  free_request_headers(transfer->request_headers);
  free(transfer->body);
  free(transfer);
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

static long elapsed_ms(const struct timespec *since) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

/* Where a transfer goes and whom it trusts: [upstream] proxy, or none at all (CURLOPT_PROXY "",
 * so that libcurl never reads http_proxy, https_proxy, ALL_PROXY or NO_PROXY: a daemon that
 * carries a credential must not be redirected by its environment), always through a CONNECT
 * tunnel; ca_file and ca_path (else the system store); the client certificate and key. */
static bool set_route_options(CURL *easy, const struct upstream *upstream) {
  const struct config *cfg = upstream->cfg;
  bool ok = curl_easy_setopt(easy, CURLOPT_PROXY, cfg->proxy) == CURLE_OK;
  if (ok && cfg->proxy[0])
    ok = curl_easy_setopt(easy, CURLOPT_HTTPPROXYTUNNEL, 1L) == CURLE_OK;
  if (ok && cfg->ca_file[0])
    ok = curl_easy_setopt(easy, CURLOPT_CAINFO, cfg->ca_file) == CURLE_OK;
  if (ok && cfg->ca_path[0])
    ok = curl_easy_setopt(easy, CURLOPT_CAPATH, cfg->ca_path) == CURLE_OK;
  if (ok && cfg->client_cert[0])
    ok = curl_easy_setopt(easy, CURLOPT_SSLCERT, cfg->client_cert) == CURLE_OK &&
         curl_easy_setopt(easy, CURLOPT_SSLCERTTYPE, "PEM") == CURLE_OK &&
         curl_easy_setopt(easy, CURLOPT_SSLKEY, upstream->creds->client_key_path) == CURLE_OK;
  return ok;
}

/* A transfer with every option but its headers and time limit (set per attempt by transfer_launch), in
 * upstream->transfers. NULL when out of memory or libcurl refuses an option. */
struct transfer *transfer_new(struct upstream *upstream, enum transfer_kind kind,
                                     const char *url) {
  struct transfer *transfer = calloc(1, sizeof(*transfer));
  if (!transfer)
    return NULL;
  transfer->upstream = upstream;
  transfer->kind = kind;
  transfer->retry_after_seconds = -1;
  transfer->max_body = UPSTREAM_MAX_BODY;
  snprintf(transfer->url, sizeof(transfer->url), "%s", url);
  transfer->easy = curl_easy_init();
  CURL *easy = transfer->easy;
  const char *protocols = kind == TRANSFER_TOKEN ? upstream->token_protocols : upstream->protocols;
  bool ok = easy &&
            curl_easy_setopt(easy, CURLOPT_URL, transfer->url) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, protocols) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, protocols) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                             (long)upstream->cfg->connect_timeout_ms) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_WRITEDATA, transfer) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_HEADERDATA, transfer) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, transfer->error) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, on_request_sent) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_PREREQDATA, transfer) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_RESOLVER_START_FUNCTION, on_resolver_start) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, on_open_socket) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, transfer) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_RESOLVER_START_DATA, transfer) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_PRIVATE, transfer) == CURLE_OK &&
            set_route_options(easy, upstream);
  /* PIPEWAIT: wait for a connection that may multiplex rather than open another. Only over
   * https, where HTTP/2 can be negotiated: over http:// (HTTP/1.1 only) it would hold every
   * transfer on the first connection until that one's answer. */
  if (ok && kind == TRANSFER_ENROLLMENT)
    ok = curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L) == CURLE_OK &&
         curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "") == CURLE_OK &&
         curl_easy_setopt(easy, CURLOPT_PIPEWAIT, upstream->multiplexing ? 1L : 0L) == CURLE_OK;
  if (ok && kind == TRANSFER_TOKEN)
    ok = curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, "grant_type=client_credentials") == CURLE_OK;
  if (!ok) {
    transfer_free(transfer);
    return NULL;
  }
  clock_gettime(CLOCK_MONOTONIC, &transfer->started);
  transfer->deadline_ms = clock_monotonic_ms() + upstream->cfg->timeout_ms;
  transfer->next = upstream->transfers;
  if (transfer->next)
    transfer->next->prev = transfer;
  upstream->transfers = transfer;
  upstream->inflight++;
  return transfer;
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
static void connection_settled(struct upstream *upstream) {
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

/* CURLOPT_OPENSOCKETFUNCTION: libcurl makes a new connection for this attempt. */
static curl_socket_t on_open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *address) {
  (void)purpose;
  struct transfer *transfer = arg;
  transfer->opened_connection = true;
  transfer->upstream->connecting = true;
  return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

/* Sends the transfer's next attempt: fresh headers from the current credential, the time left of
 * its budget. An enrollment fetch that needs an access token and has none is queued until one
 * arrives (true: it is in hand). false when it cannot be sent: the caller finishes it. */
bool transfer_launch(struct upstream *upstream, struct transfer *transfer) {
  if (transfer->kind == TRANSFER_ENROLLMENT && upstream->oauth.enabled && !upstream->oauth.valid)
    return oauth_wait_for_token(upstream, transfer);
  long budget = (long)(transfer->deadline_ms - clock_monotonic_ms());
  if (transfer->attempts > 0 && budget < BREAKER_MIN_ATTEMPT_MS)
    return false;
  const char *authorization = transfer->kind == TRANSFER_TOKEN ? upstream->creds->authorization
                              : upstream->oauth.enabled        ? upstream->oauth.authorization
                                                               : upstream->creds->authorization;
  free_request_headers(transfer->request_headers);
  transfer->request_headers = build_request_headers(authorization, transfer->kind == TRANSFER_TOKEN);
  transfer->token_generation = upstream->oauth.generation;
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

/* What a TLS failure was, from OpenSSL's verify result and libcurl's message; NULL when neither
 * says. */
static const char *tls_reason(CURLcode code, long verify_result, const char *text, bool has_cert) {
  if (code == CURLE_PEER_FAILED_VERIFICATION) {
    switch (verify_result) { /* X509_V_ERR_* */
    case 9:
      return "TLS: the upstream's certificate is not valid yet";
    case 10:
      return "TLS: the upstream's certificate has expired";
    case 2: case 18: case 19: case 20: case 21: case 27:
      return "TLS: the upstream's certificate is not from a trusted CA (ca_file, ca_path, or the "
             "system store)";
    default:
      break;
    }
    if (strstr(text, "subject name") || strstr(text, "host name"))
      return "TLS: the upstream's certificate does not name its host";
    return "TLS: the upstream's certificate was refused";
  }
  if (code == CURLE_SSL_CERTPROBLEM)
    return "TLS: client_cert or client_key cannot be used";
  if (code == CURLE_SSL_CACERT_BADFILE)
    return "TLS: ca_file or ca_path cannot be read";
  if ((code == CURLE_SSL_CONNECT_ERROR || code == CURLE_RECV_ERROR || code == CURLE_SEND_ERROR) &&
      (strstr(text, "certificate required") || strstr(text, "bad certificate") ||
       strstr(text, "unknown ca") || strstr(text, "certificate unknown")))
    return has_cert ? "TLS: the upstream refused the client certificate (client_cert)"
                    : "TLS: the upstream asks for a client certificate (set client_cert and "
                      "client_key)";
  if (code == CURLE_SSL_CONNECT_ERROR)
    return "TLS: the handshake with the upstream failed";
  return NULL;
}

/* The one classification of a failed attempt (libcurl's code): its outcome; *retryable when
 * another attempt may do better (the connection failed or broke: breaker.h retries it); and
 * transfer->reason saying whose failure it was: the proxy's, TLS's (naming the certificate
 * problem), a wait for a free connection, or the upstream's. */
static enum upstream_outcome classify_failure(struct transfer *transfer, CURLcode code,
                                              bool *retryable) {
  const struct config *cfg = transfer->upstream->cfg;
  const char *text = transfer->error[0] ? transfer->error : curl_easy_strerror(code);
  long connect_code = 0, verify_result = 0;
  curl_easy_getinfo(transfer->easy, CURLINFO_HTTP_CONNECTCODE, &connect_code);
  curl_easy_getinfo(transfer->easy, CURLINFO_SSL_VERIFYRESULT, &verify_result);
  char *reason = transfer->reason;
  size_t reason_len = sizeof(transfer->reason);
  *retryable = code == CURLE_COULDNT_RESOLVE_HOST || code == CURLE_COULDNT_CONNECT ||
               code == CURLE_SEND_ERROR || code == CURLE_RECV_ERROR || code == CURLE_GOT_NOTHING;
  if (cfg->proxy[0] && (code == CURLE_COULDNT_RESOLVE_PROXY || code == CURLE_PROXY ||
                        code == CURLE_COULDNT_CONNECT || connect_code >= 300)) {
    if (connect_code >= 300)
      snprintf(reason, reason_len, "proxy %s refused the tunnel to the upstream (HTTP %ld)",
               cfg->proxy, connect_code);
    else
      snprintf(reason, reason_len, "proxy %s: %s", cfg->proxy, text);
    return UPSTREAM_UNREACHABLE;
  }
  if (code == CURLE_OPERATION_TIMEDOUT && transfer->trickled)
    return UPSTREAM_TIMEOUT; /* on_trickle_check wrote the reason */
  if (code == CURLE_OPERATION_TIMEDOUT && transfer->request_sent) {
    /* Sent on a connection, new or reused: the upstream took the request. */
    if (transfer->answer_started)
      snprintf(reason, reason_len, "the answer was not complete within timeout_ms (%u ms)",
               cfg->timeout_ms);
    else
      snprintf(reason, reason_len, "no answer within timeout_ms (%u ms): the request was sent "
               "and the upstream was silent", cfg->timeout_ms);
    return UPSTREAM_TIMEOUT;
  }
  if ((code == CURLE_OPERATION_TIMEDOUT || code == CURLE_COULDNT_RESOLVE_HOST) &&
      !transfer->resolving_started && !transfer->opened_connection) {
    /* No request sent, no name lookup, no connection opened: libcurl held it the whole time
     * waiting for one of max_connections (it says "Failed to resolve host ... after 0 ms"). */
    snprintf(reason, reason_len, "waited for a free upstream connection until timeout_ms (%u ms): "
             "all %u of [upstream] max_connections were busy", cfg->timeout_ms,
             cfg->upstream_max_connections);
    return UPSTREAM_TIMEOUT;
  }
  const char *tls = tls_reason(code, verify_result, text, cfg->client_cert[0] != '\0');
  if (tls) {
    snprintf(reason, reason_len, "%s (%s)", tls, text);
    return UPSTREAM_UNREACHABLE;
  }
  snprintf(reason, reason_len, "%s", text);
  switch (code) {
  case CURLE_OPERATION_TIMEDOUT:
    return UPSTREAM_TIMEOUT;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_CONNECT:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
    return UPSTREAM_UNREACHABLE;
  default:
    return UPSTREAM_FAILED;
  }
}

/* What a finished attempt amounts to, for the owner. */
struct upstream_result transfer_result(struct transfer *transfer, CURLcode code) {
  struct upstream_result result = {.retry_after_seconds = transfer->retry_after_seconds};
  if (code == CURLE_OK) {
    result.outcome = UPSTREAM_RESPONSE;
    curl_easy_getinfo(transfer->easy, CURLINFO_RESPONSE_CODE, &result.http_status);
    result.body = transfer->body ? transfer->body : "";
    result.body_len = transfer->body_len;
    result.body_owner = transfer->body ? &transfer->body : NULL;
    result.error_text = "";
    return result;
  }
  if (transfer->body_too_large) {
    result.outcome = UPSTREAM_BODY_TOO_LARGE;
    result.error_text = "response body over the size limit";
    return result;
  }
  bool retryable;
  result.outcome = classify_failure(transfer, code, &retryable);
  result.error_text = transfer->reason;
  return result;
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
            elapsed_ms(&transfer->started), transfer->attempts, transfer->attempts == 1 ? "" : "s",
            result->error_text[0] ? ": " : "", result->error_text);
  if (verdict) {
    note_outcome(upstream, transfer, result);
    stats_observe_upstream_latency(upstream->stats, (double)elapsed_ms(&transfer->started) / 1e3);
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
    /* Its budget ran out while it waited for an access token. */
    oauth_stop_waiting(transfer->upstream, transfer);
    transfer_finish(transfer->upstream, transfer, CURLE_OPERATION_TIMEDOUT);
    return;
  }
  if (!transfer_launch(transfer->upstream, transfer))
    transfer_finish(transfer->upstream, transfer, CURLE_OPERATION_TIMEDOUT);
}

/* After a failed connection or a 502/503/504, schedules another attempt when breaker.h's rules
 * and the time budget allow one; returns false when the result is final. The handle has left
 * the multi. */
static bool schedule_retry(struct upstream *upstream, struct transfer *transfer, CURLcode code) {
  long status = 0;
  bool retryable = false;
  if (code == CURLE_OK)
    curl_easy_getinfo(transfer->easy, CURLINFO_RESPONSE_CODE, &status);
  else
    classify_failure(transfer, code, &retryable);
  long delay = breaker_retry_delay(transfer->attempts, retryable, status,
                                   transfer->retry_after_seconds, clock_monotonic_ms(),
                                   transfer->deadline_ms, arc4random());
  if (delay < 0)
    return false;
  if (!transfer->retry_timer)
    transfer->retry_timer = evtimer_new(upstream->base, transfer_on_retry_timer, transfer);
  struct timeval tv = clock_timeval_of_ms(delay);
  if (!transfer->retry_timer || evtimer_add(transfer->retry_timer, &tv) != 0)
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
    connection_settled(upstream);
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
      oauth_token_finished(upstream, transfer, code);
    else if (!oauth_reauthorize(upstream, transfer, code) && !schedule_retry(upstream, transfer, code))
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
                      elapsed_ms(&transfer->started), fetch_slots(upstream));
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
                                         upstream_done_fn done, void *arg,
                                         struct transfer **handle) {
  /* A paused or open upstream refuses at once, whether a slot is free or not. */
  if (upstream_paused_seconds(upstream) > 0 ||
      (upstream->breaker.state == BREAKER_OPEN &&
       clock_monotonic_ms() < upstream->breaker.open_until_ms)) {
    upstream->stats->upstream_refused++;
    return upstream_paused_seconds(upstream) > 0 ? UPSTREAM_PAUSED : UPSTREAM_CIRCUIT_OPEN;
  }
  struct transfer *transfer = transfer_new(upstream, TRANSFER_ENROLLMENT, url);
  if (!transfer) {
    log_error("upstream: could not set up a transfer for %s", what);
    return UPSTREAM_START_FAILED;
  }
  transfer->max_body = max_body;
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
    if (!transfer->retry_timer)
      transfer->retry_timer = evtimer_new(upstream->base, transfer_on_retry_timer, transfer);
    struct timeval tv = clock_timeval_of_ms(wait > 0 ? wait : 0);
    if (!transfer->retry_timer || evtimer_add(transfer->retry_timer, &tv) != 0) {
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
                                              uint64_t flow, upstream_done_fn done, void *arg,
                                              struct transfer **handle) {
  char url[CONFIG_URL_MAX + 64];
  snprintf(url, sizeof(url), "%s/v1/enrollments/%s", upstream->cfg->base_url, enrollment_id);
  return start_api_get(upstream, url, enrollment_id, UPSTREAM_MAX_BODY, flow, done, arg, handle);
}

enum upstream_start upstream_fetch_program(struct upstream *upstream, const char *program_id,
                                           upstream_done_fn done, void *arg) {
  char url[CONFIG_URL_MAX + 64];
  snprintf(url, sizeof(url), "%s/v1/enrollments?program_id=%s", upstream->cfg->base_url,
           program_id);
  char what[CONFIG_PROGRAM_ID_MAX + 16];
  snprintf(what, sizeof(what), "program %s", program_id);
  return start_api_get(upstream, url, what, UPSTREAM_MAX_LIST_BODY, FAIR_FLOW_BACKGROUND, done,
                       arg, NULL);
}

size_t upstream_inflight(const struct upstream *upstream) { return upstream->inflight; }

void upstream_fetch_slots(const struct upstream *upstream, uint64_t *slots, uint64_t *waiting) {
  *slots = fetch_slots(upstream);
  *waiting = fair_waiting(upstream->fair);
}

void upstream_scrub_environment(void) {
  static const char *const NAMES[] = {
    "SSLKEYLOGFILE", "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
    "ALL_PROXY", "no_proxy", "NO_PROXY",
  };
  for (size_t i = 0; i < sizeof(NAMES) / sizeof(NAMES[0]); i++) {
    if (getenv(NAMES[i])) {
      log_warning("environment: %s is ignored (the daemon's proxy is [upstream] proxy)", NAMES[i]);
      unsetenv(NAMES[i]);
    }
  }
}

/* One file or directory that libcurl will read: it must exist and be readable now. */
static int check_readable(const char *key, const char *path, bool directory, char *err,
                          size_t err_len) {
  struct stat st;
  if (stat(path, &st) != 0 || access(path, R_OK | (directory ? X_OK : 0)) != 0) {
    snprintf(err, err_len, "[upstream] %s %s: %s", key, path, strerror(errno));
    return -1;
  }
  if (directory ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
    snprintf(err, err_len, "[upstream] %s %s: not a %s", key, path,
             directory ? "directory" : "regular file");
    return -1;
  }
  return 0;
}

int upstream_check_tls_files(const struct config *cfg, char *err, size_t err_len) {
  if ((cfg->ca_file[0] && check_readable("ca_file", cfg->ca_file, false, err, err_len) != 0) ||
      (cfg->ca_path[0] && check_readable("ca_path", cfg->ca_path, true, err, err_len) != 0) ||
      (cfg->client_cert[0] &&
       check_readable("client_cert", cfg->client_cert, false, err, err_len) != 0))
    return -1;
  return 0;
}

static const char *protocols_for(const char *url) {
  return strncmp(url, "http://", 7) == 0 ? "http,https" : "https";
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
  upstream->protocols = protocols_for(cfg->base_url);
  upstream->multiplexing = strncmp(cfg->base_url, "https://", 8) == 0;
  upstream->token_protocols = protocols_for(cfg->oauth_token_url);
  upstream->oauth.enabled = cfg->oauth_token_url[0] != '\0';
  upstream->multi = curl_multi_init();
  upstream->timer = evtimer_new(base, on_timer, upstream);
  upstream->oauth.refresh_timer = evtimer_new(base, oauth_on_token_refresh, upstream);
  upstream->release_held = event_new(base, -1, 0, on_release_held, upstream);
  upstream->hand_out_slots = event_new(base, -1, 0, on_hand_out_slots, upstream);
  upstream->fair = fair_new(cfg->max_fetches);
  if (!upstream->multi || !upstream->timer || !upstream->oauth.refresh_timer ||
      !upstream->release_held || !upstream->hand_out_slots || !upstream->fair) {
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
  /* An access token is bought at once, so that the first miss does not wait for it; a failure
   * here is logged and retried by the first fetch. */
  oauth_start_token_fetch(upstream);
  return upstream;
}

void upstream_free(struct upstream *upstream) {
  if (!upstream)
    return;
  /* Every transfer, in the multi, waiting to retry or waiting for a token, is answered. */
  upstream->oauth.waiting_head = upstream->oauth.waiting_tail = NULL;
  upstream->oauth.fetching = NULL;
  for (struct transfer *t = upstream->held_head; t; t = t->next_held)
    t->held = false;
  upstream->held_head = upstream->held_tail = NULL;
  while (upstream->transfers)
    transfer_abort(upstream, upstream->transfers);
  if (upstream->multi)
    curl_multi_cleanup(upstream->multi);
  if (upstream->timer)
    event_free(upstream->timer);
  if (upstream->oauth.refresh_timer)
    event_free(upstream->oauth.refresh_timer);
  if (upstream->release_held)
    event_free(upstream->release_held);
  if (upstream->hand_out_slots)
    event_free(upstream->hand_out_slots); /* never run: the aborts above only activated it */
  fair_free(upstream->fair);
  if (upstream->oauth.token)
    log_remove_secret(upstream->oauth.token);
  explicit_bzero(upstream->oauth.authorization, sizeof(upstream->oauth.authorization));
  free(upstream);
}
