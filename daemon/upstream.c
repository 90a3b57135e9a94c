#include "upstream.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "config.h"
#include "creds.h"
#include "log.h"
#include "stats.h"

struct transfer {
  struct upstream *upstream;
  CURL *easy;
  struct curl_slist *request_headers; /* this transfer's own copy, credential included */
  char url[CONFIG_URL_MAX + 64];
  char *body;
  size_t body_len, body_cap;
  bool body_too_large;
  long retry_after_seconds;
  struct timespec started;
  upstream_done_fn done;
  void *arg;
  struct transfer *prev, *next; /* upstream->transfers, so that shutdown can abort them */
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
  struct transfer *transfers;
  size_t inflight;
};

static void collect_finished(struct upstream *upstream);

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
  struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
  return evtimer_add(upstream->timer, &tv);
}

/* --- one transfer ----------------------------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t count, void *arg) {
  struct transfer *transfer = arg;
  size_t len = size * count;
  if (transfer->body_len + len > UPSTREAM_MAX_BODY) {
    transfer->body_too_large = true;
    return 0; /* makes libcurl fail the transfer with CURLE_WRITE_ERROR: nothing more is buffered */
  }
  if (transfer->body_len + len > transfer->body_cap) {
    size_t cap = transfer->body_cap ? transfer->body_cap : 4096;
    while (cap < transfer->body_len + len)
      cap *= 2;
    char *grown = realloc(transfer->body, cap);
    if (!grown)
      return 0;
    transfer->body = grown;
    transfer->body_cap = cap;
  }
  memcpy(transfer->body + transfer->body_len, data, len);
  transfer->body_len += len;
  return len;
}

/* Remembers Retry-After (delta-seconds only; an HTTP-date is ignored and the default applies). */
static size_t on_header(char *line, size_t size, size_t count, void *arg) {
  struct transfer *transfer = arg;
  size_t len = size * count;
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

static struct curl_slist *build_request_headers(const struct creds *creds) {
  struct curl_slist *headers = NULL, *next;
  const char *lines[] = {creds->authorization, "Accept: application/json",
                         "User-Agent: flipcached/" FLIPCACHED_VERSION};
  for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
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
}

static long elapsed_ms(const struct timespec *since) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

/* Hands a finished (or aborted) transfer's result to its owner and frees it. The transfer has
 * already left the multi handle. */
static void finish(struct upstream *upstream, struct transfer *transfer, CURLcode code,
                   bool aborted) {
  unlink_transfer(upstream, transfer);
  struct upstream_result result = {.retry_after_seconds = transfer->retry_after_seconds};
  if (aborted) {
    result.outcome = UPSTREAM_ABORTED;
    result.error_text = "aborted at shutdown";
  } else if (code == CURLE_OK) {
    result.outcome = UPSTREAM_RESPONSE;
    curl_easy_getinfo(transfer->easy, CURLINFO_RESPONSE_CODE, &result.http_status);
    result.body = transfer->body ? transfer->body : "";
    result.body_len = transfer->body_len;
    result.error_text = "";
  } else if (transfer->body_too_large) {
    result.outcome = UPSTREAM_BODY_TOO_LARGE;
    result.error_text = "response body over the size limit";
  } else {
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      result.outcome = UPSTREAM_TIMEOUT;
      break;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
      result.outcome = UPSTREAM_UNREACHABLE;
      break;
    default:
      result.outcome = UPSTREAM_FAILED;
      break;
    }
    result.error_text = transfer->error[0] ? transfer->error : curl_easy_strerror(code);
  }
  if (result.outcome != UPSTREAM_RESPONSE && result.outcome != UPSTREAM_ABORTED)
    upstream->stats->upstream_errors++;
  log_debug("upstream: GET %s -> %s %ld in %ld ms%s%s", transfer->url,
            result.outcome == UPSTREAM_RESPONSE ? "HTTP" : "failed", result.http_status,
            elapsed_ms(&transfer->started), result.error_text[0] ? ": " : "", result.error_text);
  transfer->done(&result, transfer->arg);
  transfer_free(transfer);
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
    finish(upstream, transfer, code, false);
  }
}

/* The low-speed cut-off: a transfer slower than UPSTREAM_LOW_SPEED_BYTES per second for half the
 * total timeout (at least 1 s, at most 30 s) is abandoned as timed out: a trickling upstream
 * cannot hold a fetch, and the clients waiting on it, for the whole timeout. */
static long low_speed_seconds(const struct config *cfg) {
  long seconds = (long)cfg->timeout_ms / 2000;
  return seconds < 1 ? 1 : seconds > 30 ? 30 : seconds;
}

int upstream_fetch_enrollment(struct upstream *upstream, const char *enrollment_id,
                              upstream_done_fn done, void *arg) {
  struct transfer *transfer = calloc(1, sizeof(*transfer));
  if (!transfer)
    return -1;
  transfer->upstream = upstream;
  transfer->done = done;
  transfer->arg = arg;
  transfer->retry_after_seconds = -1;
  snprintf(transfer->url, sizeof(transfer->url), "%s/v1/enrollments/%s", upstream->cfg->base_url,
           enrollment_id);
  transfer->easy = curl_easy_init();
  /* Each transfer owns its headers: a credential reloaded meanwhile never changes or frees the
   * headers of a transfer in progress. */
  transfer->request_headers = build_request_headers(upstream->creds);
  if (!transfer->easy || !transfer->request_headers)
    goto fail;
  CURL *easy = transfer->easy;
  bool ok = curl_easy_setopt(easy, CURLOPT_URL, transfer->url) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_HTTPHEADER, transfer->request_headers) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, upstream->protocols) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, upstream->protocols) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)upstream->cfg->timeout_ms) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                             (long)upstream->cfg->connect_timeout_ms) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, (long)UPSTREAM_LOW_SPEED_BYTES) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, low_speed_seconds(upstream->cfg)) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "") == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_WRITEDATA, transfer) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_HEADERDATA, transfer) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, transfer->error) == CURLE_OK &&
            curl_easy_setopt(easy, CURLOPT_PRIVATE, transfer) == CURLE_OK;
  if (!ok)
    goto fail;
  clock_gettime(CLOCK_MONOTONIC, &transfer->started);
  if (curl_multi_add_handle(upstream->multi, easy) != CURLM_OK)
    goto fail;
  transfer->next = upstream->transfers;
  if (transfer->next)
    transfer->next->prev = transfer;
  upstream->transfers = transfer;
  upstream->inflight++;
  upstream->stats->upstream_requests++;
  return 0;
fail:
  log_error("upstream: could not start a transfer for %s", enrollment_id);
  transfer_free(transfer);
  return -1;
}

size_t upstream_inflight(const struct upstream *upstream) { return upstream->inflight; }

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
  upstream->protocols = strncmp(cfg->base_url, "http://", 7) == 0 ? "http,https" : "https";
  upstream->multi = curl_multi_init();
  upstream->timer = evtimer_new(base, on_timer, upstream);
  if (!upstream->multi || !upstream->timer) {
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
  return upstream;
}

void upstream_free(struct upstream *upstream) {
  if (!upstream)
    return;
  while (upstream->transfers) {
    struct transfer *transfer = upstream->transfers;
    curl_multi_remove_handle(upstream->multi, transfer->easy);
    finish(upstream, transfer, CURLE_OK, true);
  }
  if (upstream->multi)
    curl_multi_cleanup(upstream->multi);
  if (upstream->timer)
    event_free(upstream->timer);
  free(upstream);
}
