/* front: flipcached's own HTTP/1.1 connection layer on the libevent loop.
 *
 * Why not evhttp (docs/architecture.md): evhttp spends four epoll_ctl, an ioctl and a readv per
 * request, hides the raw bytes (so NUL in a value or bare LF cannot be refused) and never says
 * when a connection opens or closes (so max_connections cannot be enforced). Here each connection
 * has one persistent read event; a request costs one read and one write:
 *
 *   read -> http1_parse -> route -> handler -> front_reply appends the answer -> ... -> one write
 *
 * Pipelined requests are answered one at a time, in order: the next head is parsed only once the
 * current request is answered (a handler may answer later, after an upstream fetch). The write
 * event is armed only when the socket would block. Deadlines (request_timeout for a head and for
 * an answer to be taken, idle_timeout between requests, a short linger after a close) are kept as
 * numbers and checked by one sweep timer, so the hot path touches no timer.
 *
 * Lifetime: a connection is freed when it closes, except while its request is unanswered: then
 * its socket is closed, the connection is orphaned, and front_reply frees the rest. */
#include "clock.h"
#include "front_internal.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "access_log.h"
#include "config.h"
#include "http1.h"
#include "log.h"
#include "peer.h"
#include "cache_status.h"
#include "errors.h"
#include "route.h"
#include "stats.h"
/* ---- output ---------------------------------------------------------------------------- */

bool front_out_reserve(struct connection *c, size_t more) {
  if (c->out_len + more <= c->out_cap)
    return true;
  size_t cap = c->out_cap ? c->out_cap : FRONT_OUT_INITIAL;
  while (cap < c->out_len + more)
    cap *= 2;
  char *grown = realloc(c->out, cap);
  if (!grown)
    return false;
  c->out = grown;
  c->out_cap = cap;
  return true;
}

/* Callers reserve first; these never fail. */
void front_out_add(struct connection *c, const void *bytes, size_t len) {
  memcpy(c->out + c->out_len, bytes, len);
  c->out_len += len;
}

static void out_add_str(struct connection *c, const char *text) { front_out_add(c, text, strlen(text)); }

static void out_add_header(struct connection *c, const char *name, const char *value) {
  out_add_str(c, name);
  front_out_add(c, ": ", 2);
  out_add_str(c, value);
  front_out_add(c, "\r\n", 2);
}

static void out_add_number_header(struct connection *c, const char *name, long long value) {
  char digits[RENDER_DECIMAL_MAX];
  out_add_header(c, name, render_decimal(value, digits));
}

static const char *http_date(struct front *front) {
  time_t now = time(NULL);
  if (now != front->date_second) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(front->date, sizeof(front->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    front->date_second = now;
  }
  return front->date;
}

/* ---- connections ----------------------------------------------------------------------- */

static void on_readable(evutil_socket_t fd, short what, void *arg);
static void on_writable(evutil_socket_t fd, short what, void *arg);

void front_set_reading(struct connection *c, bool enabled) {
  if (c->reading_enabled == enabled)
    return;
  if (enabled ? event_add(c->read_event, NULL) == 0 : event_del(c->read_event) == 0)
    c->reading_enabled = enabled;
}

static void set_writing(struct connection *c, bool enabled) {
  if (c->writing_enabled == enabled)
    return;
  if (enabled ? event_add(c->write_event, NULL) == 0 : event_del(c->write_event) == 0)
    c->writing_enabled = enabled;
}

static void release_socket(struct connection *c) {
  if (c->fd < 0)
    return;
  event_free(c->read_event);
  event_free(c->write_event);
  c->read_event = c->write_event = NULL;
  c->reading_enabled = c->writing_enabled = false;
  close(c->fd);
  c->fd = -1;
  if (c->counted_open)
    front_leave_slot(c);
  else
    c->front->lingering_count--;
}

void front_connection_free(struct connection *c) {
  release_socket(c);
  TAILQ_REMOVE(&c->front->connections, c, link);
  free(c->in);
  free(c->out);
  free(c);
}

/* The socket is done with. An unanswered request keeps the rest alive until it is answered. */
void front_connection_close(struct connection *c) {
  if (c->request.unanswered) {
    release_socket(c);
    c->state = CONNECTION_ORPHANED;
    log_debug("client went away before its answer");
    return;
  }
  front_connection_free(c);
}

/* peer: who it is (found before, to decide whether it may have a slot); NULL for a refused one. */
struct connection *front_connection_new(struct front *front, int fd, bool refused,
                                         const struct peer *peer) {
  struct connection *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  c->front = front;
  c->fd = fd;
  if (peer)
    c->peer = *peer;
  c->state = CONNECTION_OPEN;
  c->counted_open = !refused;
  c->read_event = event_new(front->base, fd, EV_READ | EV_PERSIST, on_readable, c);
  c->write_event = event_new(front->base, fd, EV_WRITE | EV_PERSIST, on_writable, c);
  if (!c->read_event || !c->write_event) {
    if (c->read_event)
      event_free(c->read_event);
    if (c->write_event)
      event_free(c->write_event);
    free(c);
    return NULL;
  }
  c->idle_since_ms = clock_coarse_ms();
  if (refused)
    front->lingering_count++;
  else if (!front_take_slot(front, c)) {
    event_free(c->read_event);
    event_free(c->write_event);
    free(c);
    return NULL;
  }
  TAILQ_INSERT_TAIL(&front->connections, c, link);
  return c;
}

/* Writes what it can of the queued answers: one send in the usual case. */
static void connection_flush(struct connection *c) {
  while (c->out_sent < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);
    if (n > 0) {
      c->out_sent += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    c->broken = true; /* the client is gone: what was queued for it goes nowhere */
    return;
  }
  c->out_len = c->out_sent = 0;
  c->out_started_ms = 0;
}

/* After a close-delimited answer is written: shut the write side (the client sees the end) and
 * drain what the client still sends, so that closing with unread input does not reset the
 * connection and destroy the answer in flight. */
static void connection_linger(struct connection *c) {
  struct front *front = c->front;
  if (c->peer_closed || front->lingering_count >= FRONT_MAX_LINGERING) {
    front_connection_close(c);
    return;
  }
  if (c->counted_open) {
    front_leave_slot(c);
    front->lingering_count++;
    c->counted_open = false;
  }
  c->state = CONNECTION_LINGERING;
  shutdown(c->fd, SHUT_WR);
  c->linger_until_ms = clock_coarse_ms() + FRONT_LINGER_MS;
  c->in_len = c->in_scanned = 0;
  set_writing(c, false);
  front_set_reading(c, true);
}

/* ---- answers --------------------------------------------------------------------------- */

/* The request's access log line (access_log.h). */
static void log_request(const struct client_request *request, int status, const char *cache_status) {
  char who[PEER_TEXT_MAX];
  log_access(http1_method_name(request->method), request->target, status, cache_status,
             front_request_seconds(request) * 1e3, peer_text(&request->connection->peer, who));
}

/* Queues one whole answer. head: the headers only, with the Content-Length GET would have.
 * version_minor 0 with the connection kept: HTTP/1.0 needs "Connection: keep-alive" said. */
static bool queue_answer(struct connection *c, const struct reply *reply, bool head,
                         int version_minor, const struct client_request *request) {
  const char *content_type = reply->content_type ? reply->content_type : "application/json";
  size_t origin_len = request && request->listed_origin ? request->listed_origin_len : 0;
  const char *cache_control = reply->cache_control ? reply->cache_control : "no-store";
  size_t need = 400 + strlen(content_type) + (reply->cache_status ? strlen(reply->cache_status) : 0) +
                strlen(cache_control) + (reply->etag ? strlen(reply->etag) : 0) +
                (reply->allow ? strlen(reply->allow) : 0) + origin_len +
                (reply->headers ? strlen(reply->headers) : 0) + (head ? 0 : reply->body_len);
  if (!front_out_reserve(c, need))
    return false;
  if (c->out_len == c->out_sent)
    c->out_started_ms = clock_coarse_ms();
  char digits[RENDER_DECIMAL_MAX];
  front_out_add(c, "HTTP/1.1 ", 9);
  out_add_str(c, render_decimal(reply->status, digits));
  front_out_add(c, " ", 1);
  const char *phrase = http_reason_phrase(reply->status);
  out_add_str(c, phrase ? phrase : ""); /* RFC 9112 4: the phrase may be empty, never absent */
  front_out_add(c, "\r\n", 2);
  out_add_header(c, "Date", http_date(c->front));
  out_add_header(c, "Content-Type", content_type);
  if (reply->cache_status)
    out_add_header(c, "Cache-Status", reply->cache_status);
  out_add_header(c, "Cache-Control", cache_control);
  if (reply->etag)
    out_add_header(c, "ETag", reply->etag);
  if (reply->age >= 0)
    out_add_number_header(c, "Age", reply->age);
  if (reply->retry_after >= 0)
    out_add_number_header(c, "Retry-After", reply->retry_after);
  if (reply->allow)
    out_add_header(c, "Allow", reply->allow);
  if (reply->headers)
    out_add_str(c, reply->headers);
  if (origin_len) { /* a page of allow_origins may read the answer (CORS) */
    out_add_str(c, "Access-Control-Allow-Origin: ");
    front_out_add(c, request->listed_origin, origin_len);
    out_add_str(c, "\r\nVary: Origin\r\n");
  }
  if (c->close_after)
    out_add_str(c, "Connection: close\r\n");
  else if (version_minor == 0)
    out_add_str(c, "Connection: keep-alive\r\n");
  /* A 304 has no body, and a Content-Length it had would have to be the 200's (RFC 9110
   * 15.4.5): none is sent. */
  if (reply->status != 304)
    out_add_number_header(c, "Content-Length", (long long)reply->body_len);
  front_out_add(c, "\r\n", 2);
  if (!head && reply->status != 304 && reply->body_len > 0)
    front_out_add(c, reply->body, reply->body_len);
  return true;
}

/* The contract's error answer for `error`. *body is malloc'd for it (NULL when out of memory:
 * the answer then has an empty body); the caller frees it once the answer is queued. */
static struct reply error_reply(enum api_error error, char **body) {
  *body = render_error_body(error);
  return (struct reply){.status = api_error_http_status(error), .age = -1, .retry_after = -1,
                        .body = *body ? *body : "", .body_len = *body ? strlen(*body) : 0};
}

/* Answers a request head that cannot be served (or did not arrive in time) and closes: after a
 * malformed head the stream's framing cannot be trusted. */
static void refuse_head(struct connection *c, enum api_error error) {
  struct front *front = c->front;
  front->stats->invalid_requests++;
  front->stats->requests_total++;
  log_debug("refused a request head: %d %s", api_error_http_status(error), api_error_code(error));
  char *body;
  struct reply reply = error_reply(error, &body);
  c->close_after = true;
  c->in_len = c->in_scanned = 0;
  c->head_started_ms = 0;
  if (!queue_answer(c, &reply, false, 1, NULL))
    c->broken = true;
  free(body);
}

static enum api_error error_of_refusal(int status) {
  switch (status) {
  case 414:
    return API_ERROR_URI_TOO_LONG;
  case 431:
    return API_ERROR_HEADERS_TOO_LARGE;
  case 505:
    return API_ERROR_VERSION_NOT_SUPPORTED;
  default:
    return API_ERROR_BAD_REQUEST;
  }
}

size_t front_unfinished(const struct front *front) {
  size_t unwritten = 0;
  const struct connection *c;
  TAILQ_FOREACH(c, &front->connections, link)
    if (c->fd >= 0 && c->out_sent < c->out_len)
      unwritten++;
  return front->unanswered + unwritten;
}

size_t front_connections(const struct front *front) { return front->open_count; }

void front_reply(struct client_request *request, const struct reply *reply) {
  struct connection *c = request->connection;
  struct front *front = c->front;
  assert(request->unanswered && "a request is answered exactly once");
  assert(front->unanswered > 0);
  if (front->cfg->access_log)
    log_request(request, reply->status, reply->cache_status);
  front->stats->requests_total++;
  front->unanswered--;
  request->unanswered = false;
  c->answered_one = true;
  if (c->state == CONNECTION_ORPHANED) {
    front_connection_free(c);
    return;
  }
  if (!request->keep_alive || front->stopping)
    c->close_after = true;
  if (!queue_answer(c, reply, request->method == HTTP1_HEAD, request->version_minor, request))
    c->broken = true; /* out of memory: the one thing left to do is to close */
  /* The head is done with: later pipelined bytes move to the front. */
  c->in_len -= request->head_len;
  memmove(c->in, c->in + request->head_len, c->in_len);
  c->in_scanned = 0;
  c->head_started_ms = c->in_len > 0 ? clock_coarse_ms() : 0;
  /* Answered later than its read (after an upstream fetch): written out and the next pipelined
   * request started from the loop, not from here, because the caller may be fanning one fetch
   * out to many requests, and a next request for the same id must not join that fetch midway. */
  if (!c->busy)
    event_active(c->write_event, EV_WRITE, 1);
}

void front_reply_empty(struct client_request *request, int status) {
  struct reply reply = {.status = status, .age = -1, .retry_after = -1, .body = ""};
  front_reply(request, &reply);
}

void front_reply_error(struct client_request *request, int api_error, const char *cache_status,
                       long retry_after, const char *allow) {
  char *body;
  struct reply reply = error_reply((enum api_error)api_error, &body);
  reply.cache_status = cache_status;
  reply.retry_after = retry_after;
  reply.allow = allow;
  front_reply(request, &reply);
  free(body);
}

/* ---- requests -------------------------------------------------------------------------- */

static enum route_method route_method_of(enum http1_method method) {
  switch (method) {
  case HTTP1_GET:
    return ROUTE_METHOD_GET;
  case HTTP1_HEAD:
    return ROUTE_METHOD_HEAD;
  case HTTP1_POST:
    return ROUTE_METHOD_POST;
  case HTTP1_PUT:
    return ROUTE_METHOD_PUT;
  case HTTP1_DELETE:
    return ROUTE_METHOD_DELETE;
  default:
    return ROUTE_METHOD_OTHER;
  }
}

/* A request the front end answers itself with an error (counted in invalid_requests). close:
 * the connection ends after the answer, for a client whose stream cannot be trusted further. */
static void refuse_request(struct client_request *request, enum api_error error, const char *allow,
                           bool close) {
  request->connection->front->stats->invalid_requests++;
  if (close)
    request->connection->close_after = true;
  front_reply_error(request, error, NULL, -1, allow);
}

/* A request the access rules refuse (403 forbidden, 421 misdirected_request): nothing past this
 * runs, so nothing goes upstream and nothing is stored. Counted by reason in *counter; logged,
 * rate-limited, with who asked. A 421 also closes: the client meant another server, and RFC 9110
 * 15.5.20 has it retry over another connection. */
static void refuse_access(struct client_request *request, enum api_error error, uint64_t *counter,
                          const char *why) {
  (*counter)++;
  if (error == API_ERROR_MISDIRECTED)
    request->connection->close_after = true;
  char who[PEER_TEXT_MAX];
  int path_len = (int)strcspn(request->target, "?");
  log_warning_limited("refused %s %.*s from %s: %s", http1_method_name(request->method),
                      path_len > 200 ? 200 : path_len, request->target,
                      peer_text(&request->connection->peer, who), why);
  front_reply_error(request, error, NULL, -1, NULL);
}

/* The route of a request (admin routes off: they do not exist). */
static void match_route(const struct front *front, const char *target, enum http1_method method,
                        struct route_match *match) {
  route_match(target, route_method_of(method), match);
  if (match->admin && !front->cfg->admin) {
    match->kind = ROUTE_NOT_FOUND;
    match->admin = false;
  }
}

/* The enrollment route's path, whatever the id. */
static bool is_enrollment_path(const struct route_match *match) {
  return match->kind == ROUTE_ENROLLMENT || (match->kind == ROUTE_INVALID_ID && !match->admin);
}

/* Who may use a route: the enrollment route needs ACCESS_USE, the admin routes ACCESS_ADMIN
 * (every method and id on them, so that a non-admin learns nothing of them); the status routes
 * carry no personal data and no credential, and are every local user's (monitoring needs them).
 * False: refused (answered). */
static bool permitted(struct front *front, struct client_request *request,
                      const struct route_match *match) {
  unsigned rights = request->connection->rights;
  if (match->admin) {
    if (rights & ACCESS_ADMIN)
      return true;
    refuse_access(request, API_ERROR_FORBIDDEN_ADMIN, &front->stats->refused_not_admin,
                  "not in admin_users or admin_groups");
    return false;
  }
  if (is_enrollment_path(match) && !(rights & ACCESS_USE)) {
    refuse_access(request, API_ERROR_FORBIDDEN_USER, &front->stats->refused_not_allowed,
                  "not in allow_users or allow_groups");
    return false;
  }
  return true;
}

/* The headers of a preflight's answer (Fetch, CORS protocol): what a listed page may do, which is
 * GET and HEAD of an enrollment with the one request header the daemon reads. */
#define PREFLIGHT_HEADERS                                                                          \
  "Access-Control-Allow-Methods: GET, HEAD\r\nAccess-Control-Allow-Headers: Cache-Control\r\n"  \
  "Access-Control-Max-Age: 600\r\n"

/* A request that carries an Origin of allow_origins (a listed web page). It may GET or HEAD the
 * enrollment route, or ask for that by a CORS preflight (OPTIONS with Access-Control-Request-
 * Method GET or HEAD); any other method or route is 403 forbidden without CORS headers, so the
 * page can neither read nor infer the answer of an admin or status route. False: answered here. */
static bool listed_page_may(struct front *front, struct client_request *request,
                            const struct http1_request *parsed) {
  struct route_match match;
  bool preflight = request->method == HTTP1_OPTIONS && parsed->cors_method;
  match_route(front, request->target, preflight ? HTTP1_GET : request->method, &match);
  bool page_method = request->method == HTTP1_GET || request->method == HTTP1_HEAD;
  bool asks_page_method =
      preflight && ((parsed->cors_method_len == 3 && memcmp(parsed->cors_method, "GET", 3) == 0) ||
                    (parsed->cors_method_len == 4 && memcmp(parsed->cors_method, "HEAD", 4) == 0));
  if (!is_enrollment_path(&match) || !(page_method || asks_page_method)) {
    refuse_access(request, API_ERROR_FORBIDDEN_PAGE_ROUTE, &front->stats->refused_web_page,
                  "a listed web page may only GET or HEAD /v1/enrollments/{id}");
    return false;
  }
  request->listed_origin = parsed->origin;
  request->listed_origin_len = parsed->origin_len;
  if (!preflight)
    return true;
  if (!(request->connection->rights & ACCESS_USE)) {
    request->listed_origin = NULL; /* refused: no CORS headers */
    refuse_access(request, API_ERROR_FORBIDDEN_USER, &front->stats->refused_not_allowed,
                  "not in allow_users or allow_groups");
    return false;
  }
  struct reply reply = {.status = 204, .age = -1, .retry_after = -1, .body = "",
                        .headers = parsed->cors_private_network
                                       ? PREFLIGHT_HEADERS "Access-Control-Allow-Private-Network: true\r\n"
                                       : PREFLIGHT_HEADERS};
  front_reply(request, &reply);
  return false;
}

static void dispatch(struct front *front, struct client_request *request) {
  if (request->method == HTTP1_UNKNOWN) { /* RFC 9110 15.6.2; a client speaking something else */
    refuse_request(request, API_ERROR_NOT_IMPLEMENTED, NULL, true);
    return;
  }
  struct route_match match;
  match_route(front, request->target, request->method, &match);
  if (!permitted(front, request, &match))
    return;
  switch (match.kind) {
  case ROUTE_ENROLLMENT:
    front->routes.enrollment(request, match.enrollment_id, front->routes.arg);
    return;
  case ROUTE_INVALID_ID:
    if (match.admin)
      refuse_request(request, API_ERROR_INVALID_ID, NULL, false);
    else
      front->routes.enrollment(request, NULL, front->routes.arg);
    return;
  case ROUTE_CACHE_INSPECT:
    front->routes.cache_inspect(request, match.enrollment_id, front->routes.arg);
    return;
  case ROUTE_CACHE_DELETE:
    front->routes.cache_delete(request, match.enrollment_id, front->routes.arg);
    return;
  case ROUTE_CACHE_PURGE:
    front->routes.cache_purge(request, front->routes.arg);
    return;
  case ROUTE_CACHE_LIST:
    front->routes.cache_list(request, match.query, front->routes.arg);
    return;
  case ROUTE_CACHE_WARM:
    front->routes.cache_warm(request, front->routes.arg);
    return;
  case ROUTE_STATS:
    front->routes.stats(request, front->routes.arg);
    return;
  case ROUTE_METRICS:
    front->routes.metrics(request, front->routes.arg);
    return;
  case ROUTE_HEALTHZ:
    front->routes.healthz(request, front->routes.arg);
    return;
  case ROUTE_METHOD_NOT_ALLOWED:
    refuse_request(request, API_ERROR_METHOD_NOT_ALLOWED, match.allow, false);
    return;
  case ROUTE_BAD_TARGET:
    refuse_request(request, API_ERROR_BAD_REQUEST, NULL, true);
    return;
  case ROUTE_NOT_FOUND:
    refuse_request(request, API_ERROR_NOT_FOUND, NULL, false);
    return;
  }
}

static void start_request(struct connection *c, const struct http1_request *parsed) {
  struct front *front = c->front;
  struct client_request *request = &c->request;
  assert(!request->unanswered && "one request at a time on a connection");
  *request = (struct client_request){
    .connection = c,
    .method = parsed->method,
    .unanswered = true,
    .keep_alive = parsed->keep_alive,
    .version_minor = parsed->version_minor,
    .target = parsed->target,
    .head_len = parsed->head_len,
    .directives = parsed->directives,
    /* More than one If-None-Match field: not evaluated (http1.h). */
    .if_none_match = parsed->if_none_match_count == 1 ? parsed->if_none_match : NULL,
    .if_none_match_len = parsed->if_none_match_len,
  };
  clock_gettime(CLOCK_MONOTONIC, &request->started);
  front->unanswered++;
  if (parsed->carries_body) {
    /* No route takes a body; the stream's framing cannot be trusted any more: answer, close. */
    refuse_request(request, API_ERROR_BAD_REQUEST, NULL, true);
    return;
  }
  bool listed_origin;
  switch (access_check_web(&front->cfg->host_names, &front->cfg->allow_origins, parsed,
                           &listed_origin)) {
  case ACCESS_WEB_OK:
    break;
  case ACCESS_WEB_MISDIRECTED:
    refuse_access(request, API_ERROR_MISDIRECTED, &front->stats->refused_misdirected,
                  "Host is not localhost, a loopback address or one of host_names");
    return;
  case ACCESS_WEB_FOREIGN_ORIGIN:
  case ACCESS_WEB_CROSS_SITE:
    refuse_access(request, API_ERROR_FORBIDDEN_WEB, &front->stats->refused_web_page,
                  "sent by a web page (Origin not in allow_origins, or Sec-Fetch-Site)");
    return;
  }
  if (listed_origin && !listed_page_may(front, request, parsed))
    return;
  dispatch(front, request);
}

/* Parses and starts the requests already read, one at a time. */
static void process_requests(struct connection *c) {
  while (c->state == CONNECTION_OPEN && !c->request.unanswered && !c->close_after &&
         !c->broken && c->in_len > 0 && c->out_len - c->out_sent < FRONT_OUT_HIGH_WATER) {
    struct http1_request parsed;
    int status = 400;
    enum http1_result result = http1_parse(c->in, c->in_len, &c->in_scanned, &parsed, &status);
    if (result == HTTP1_INCOMPLETE)
      return;
    if (result == HTTP1_REFUSED) {
      refuse_head(c, error_of_refusal(status));
      return;
    }
    start_request(c, &parsed);
  }
}

/* Decides what the connection waits for next, once its input is processed and its output
 * written as far as the socket takes it. May free c. */
static void connection_settle(struct connection *c) {
  if (c->broken) {
    front_connection_close(c);
    return;
  }
  if (c->state != CONNECTION_OPEN)
    return;
  bool unsent = c->out_sent < c->out_len;
  set_writing(c, unsent);
  if (!unsent && !c->request.unanswered && (c->close_after || c->peer_closed)) {
    connection_linger(c);
    return;
  }
  /* Idle: kept alive between requests, which a newcomer may close for room. A connection that has
   * answered nothing yet is not: its request is on its way, and closing such ones for each other
   * let a client opening more than its share at once (a pool warming up, wrk -c1000) close every
   * one of its connections before any was served. */
  bool idle = c->answered_one && !unsent && !c->request.unanswered && c->in_len == 0 &&
              !c->close_after && !c->peer_closed;
  if (idle && !c->idle)
    c->idle_since_ms = clock_coarse_ms();
  front_set_idle(c, idle);
  /* After EOF, reading stops (EOF stays readable: reading on would spin). While a request waits
   * for its answer the input buffer must not move (its target is in it): once it is full,
   * reading stops until the answer. */
  front_set_reading(c, !c->peer_closed && !c->close_after &&
                     !(c->request.unanswered && c->in_len == c->in_cap));
}

void front_connection_run(struct connection *c) {
  c->busy = true;
  process_requests(c);
  c->busy = false;
  if (!c->broken && c->fd >= 0 && c->out_sent < c->out_len)
    connection_flush(c);
  connection_settle(c);
}

static void on_readable(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  struct connection *c = arg;
  if (c->state == CONNECTION_LINGERING) {
    char sink[4096];
    ssize_t n = recv(fd, sink, sizeof(sink), 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
      front_connection_free(c);
    return;
  }
  if (c->in_len == c->in_cap) {
    size_t cap = c->in_cap ? c->in_cap * 2 : FRONT_IN_INITIAL;
    if (cap > HTTP1_MAX_HEAD)
      cap = HTTP1_MAX_HEAD;
    char *grown = cap > c->in_cap && !c->request.unanswered ? realloc(c->in, cap) : NULL;
    if (!grown) { /* full while a request waits (or out of memory): wait for its answer */
      front_set_reading(c, false);
      return;
    }
    c->in = grown;
    c->in_cap = cap;
  }
  ssize_t n = recv(fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
  if (n > 0) {
    if (c->in_len == 0 && !c->request.unanswered)
      c->head_started_ms = clock_coarse_ms();
    c->in_len += (size_t)n;
  } else if (n == 0) {
    c->peer_closed = true; /* what was received is still answered */
  } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
    return;
  } else {
    c->broken = true;
  }
  front_connection_run(c);
}

static void on_writable(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  front_connection_run(arg);
}

/* ---- deadlines ------------------------------------------------------------------------- */

void front_on_deadline_sweep(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct front *front = arg;
  int64_t now = clock_coarse_ms();
  int64_t request_ms = (int64_t)front->cfg->request_timeout * 1000;
  int64_t idle_ms = (int64_t)front->cfg->idle_timeout * 1000;
  struct connection *c = TAILQ_FIRST(&front->connections);
  while (c) {
    struct connection *next = TAILQ_NEXT(c, link);
    if (c->state == CONNECTION_LINGERING) {
      if (now >= c->linger_until_ms)
        front_connection_free(c);
    } else if (c->state == CONNECTION_OPEN && !c->request.unanswered) {
      if (c->out_sent < c->out_len) {
        if (now - c->out_started_ms >= request_ms) {
          log_debug("a client did not take its answer within request_timeout: closed");
          front_connection_close(c);
        }
      } else if (c->in_len > 0) {
        if (now - c->head_started_ms >= request_ms) {
          front->stats->request_timeouts++;
          refuse_head(c, API_ERROR_REQUEST_TIMEOUT);
          front_connection_run(c);
        }
      } else if (now - c->idle_since_ms >= idle_ms) {
        front_connection_close(c);
      }
    }
    c = next;
  }
}

void front_set_policy(struct front *front, const struct access_policy *policy) {
  front->policy = policy;
  struct connection *c;
  TAILQ_FOREACH(c, &front->connections, link)
    c->rights = access_rights(policy, &c->peer);
}

const struct request_directives *front_request_directives(const struct client_request *request) {
  return &request->directives;
}

const char *front_request_if_none_match(const struct client_request *request, size_t *len) {
  *len = request->if_none_match_len;
  return request->if_none_match;
}

void front_request_set_tag(struct client_request *request, unsigned tag) {
  request->handler_tag = tag;
}

unsigned front_request_tag(const struct client_request *request) { return request->handler_tag; }

double front_request_seconds(const struct client_request *request) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - request->started.tv_sec) +
         (double)(now.tv_nsec - request->started.tv_nsec) / 1e9;
}

const struct peer *front_request_peer(const struct client_request *request) {
  return &request->connection->peer;
}
