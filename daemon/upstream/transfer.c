/* transfer: one upstream request's libcurl side (transfer.h): its options, the callbacks that
 * collect its answer, the trickle guard, and what a finished attempt amounts to, its failures
 * named truthfully (whose they were, and what the transfer saw). */
#include "transfer.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <errno.h>
#include <time.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "stats.h"

static curl_socket_t on_open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *address);

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
    upstream_connection_settled(transfer->upstream); /* its connection is up: the held may use it */
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
  transfer_finish(transfer->upstream, transfer, CURLE_OPERATION_TIMEDOUT);
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

/* The value of header line `line` (len bytes, CRLF included) when its name is `name` (lower
 * case, with the colon), whitespace trimmed; NULL otherwise. */
static const char *header_value(const char *line, size_t len, const char *name, size_t *value_len) {
  size_t n = strlen(name);
  if (len <= n || strncasecmp(line, name, n) != 0)
    return NULL;
  const char *p = line + n, *end = line + len;
  while (p < end && (*p == ' ' || *p == '\t'))
    p++;
  while (end > p && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
    end--;
  *value_len = (size_t)(end - p);
  return p;
}

/* Keeps a validator of the answer when its grammar checks (validators.h); else drops it. */
static void keep_validator(char *out, size_t out_size, const char *value, size_t len,
                           bool (*valid)(const char *, size_t)) {
  if (len < out_size && valid(value, len)) {
    memcpy(out, value, len);
    out[len] = '\0';
  } else {
    out[0] = '\0';
  }
}

/* Remembers Retry-After (delta-seconds only; an HTTP-date is ignored and the default applies),
 * ETag and Last-Modified; the first header line is the answer's first byte. */
static size_t on_header(char *line, size_t size, size_t count, void *arg) {
  struct transfer *transfer = arg;
  size_t len = size * count;
  if (!transfer->answer_started)
    answer_began(transfer);
  transfer->window_bytes += len;
  size_t value_len;
  const char *p;
  if ((p = header_value(line, len, "retry-after:", &value_len))) {
    const char *end = p + value_len;
    long seconds = 0;
    bool digits = false;
    while (p < end && *p >= '0' && *p <= '9' && seconds < 1000000) {
      seconds = seconds * 10 + (*p++ - '0');
      digits = true;
    }
    if (digits)
      transfer->retry_after_seconds = seconds;
  } else if ((p = header_value(line, len, "etag:", &value_len))) {
    keep_validator(transfer->answer_etag, sizeof(transfer->answer_etag), p, value_len,
                   upstream_etag_valid);
  } else if ((p = header_value(line, len, "last-modified:", &value_len))) {
    keep_validator(transfer->answer_last_modified, sizeof(transfer->answer_last_modified), p,
                   value_len, upstream_last_modified_valid);
  }
  return len;
}

struct curl_slist *transfer_build_request_headers(const struct transfer *transfer,
                                                  const char *authorization) {
  struct curl_slist *headers = NULL, *next;
  bool form_body = transfer->kind == TRANSFER_TOKEN;
  const char *lines[] = {authorization, "Accept: application/json",
                         "User-Agent: flipcached/" FLIPCACHED_VERSION,
                         form_body ? "Content-Type: application/x-www-form-urlencoded" : NULL,
                         transfer->if_none_match_line, transfer->if_modified_since_line};
  for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
    if (!lines[i] || !lines[i][0])
      continue;
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
void transfer_free_request_headers(struct curl_slist *headers) {
  for (struct curl_slist *item = headers; item; item = item->next)
    explicit_bzero(item->data, strlen(item->data));
  curl_slist_free_all(headers);
}

void transfer_free(struct transfer *transfer) {
  if (!transfer)
    return;
  if (transfer->retry_timer)
    event_free(transfer->retry_timer);
  if (transfer->trickle_timer)
    event_free(transfer->trickle_timer);
  if (transfer->easy)
    curl_easy_cleanup(transfer->easy);
  transfer_free_request_headers(transfer->request_headers);
  free(transfer->body);
  free(transfer);
}


/* libcurl's allowed protocols for url: https, and http too for an http:// one (the
 * configuration allows that for a loopback host only). */
const char *transfer_protocols_for(const char *url) {
  return strncmp(url, "http://", 7) == 0 ? "http,https" : "https";
}

long transfer_elapsed_ms(const struct timespec *since) {
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
  const char *protocols = kind == TRANSFER_TOKEN ? transfer_protocols_for(url) : upstream->protocols;
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



/* CURLOPT_OPENSOCKETFUNCTION: libcurl makes a new connection for this attempt. */
static curl_socket_t on_open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *address) {
  (void)purpose;
  struct transfer *transfer = arg;
  transfer->opened_connection = true;
  transfer->upstream->connecting = true;
  return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
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
 * another attempt may do better (the connection failed or broke: retry_breaker.h retries it); and
 * transfer->reason saying whose failure it was: the proxy's, TLS's (naming the certificate
 * problem), a wait for a free connection, or the upstream's. */
enum upstream_outcome transfer_classify_failure(struct transfer *transfer, CURLcode code,
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
    result.etag = transfer->answer_etag[0] ? transfer->answer_etag : NULL;
    result.etag_len = strlen(transfer->answer_etag);
    result.last_modified = transfer->answer_last_modified[0] ? transfer->answer_last_modified : NULL;
    result.last_modified_len = strlen(transfer->answer_last_modified);
    result.error_text = "";
    return result;
  }
  if (transfer->body_too_large) {
    result.outcome = UPSTREAM_BODY_TOO_LARGE;
    result.error_text = "response body over the size limit";
    return result;
  }
  bool retryable;
  result.outcome = transfer_classify_failure(transfer, code, &retryable);
  result.error_text = transfer->reason;
  return result;
}

/* --- the environment and the TLS files (upstream.h) ------------------------------------------- */

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
