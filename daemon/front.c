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
#include "front.h"

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
#include "config.h"
#include "http1.h"
#include "log.h"
#include "peer.h"
#include "render.h"
#include "route.h"
#include "stats.h"

#define FRONT_LISTEN_BACKLOG 511
#define FRONT_ACCEPTS_PER_WAKEUP 64
#define FRONT_ACCEPT_PAUSE_MS 100   /* out of file descriptors: accept again after this */
#define FRONT_IN_INITIAL 2048       /* input buffer; grows to HTTP1_MAX_HEAD for one long head */
#define FRONT_OUT_INITIAL 2048
#define FRONT_OUT_HIGH_WATER 65536  /* unsent answer bytes beyond which no more requests are read */
#define FRONT_LINGER_MS 2000        /* after a close, unread input is drained for this long */
#define FRONT_MAX_LINGERING 256     /* connections lingering at once; beyond, closed at once */
#define FRONT_SWEEP_MS 250
#define FRONT_RETRY_AFTER_SECONDS 1 /* for a refused connection */
#define FRONT_ADMIN_RESERVE 8       /* connections an admin may open beyond max_connections */
#define FRONT_USER_BUCKETS 64       /* the hash of users with open connections */

enum connection_state {
  CONNECTION_OPEN,      /* reading requests and answering them */
  CONNECTION_LINGERING, /* answered and shut for writing; input drained until EOF or timeout */
  CONNECTION_ORPHANED,  /* socket closed while a request was unanswered; freed by front_reply */
};

struct client_request {
  struct connection *connection;
  enum http1_method method;
  bool unanswered;
  bool keep_alive;    /* the client wants the connection kept after the answer */
  int version_minor;
  const char *target; /* inside the connection's input buffer until answered */
  size_t head_len;    /* input bytes to drop once answered */
  const char *listed_origin; /* an Origin of allow_origins, in the input buffer; else NULL */
  bool only_if_cached;       /* the client's Cache-Control (http1.h) */
  long max_age;
  size_t listed_origin_len;
  struct timespec started; /* CLOCK_MONOTONIC, for the access log */
};

struct connection {
  struct front *front;
  int fd;
  enum connection_state state;
  struct event *read_event;  /* persistent; added while reading_enabled */
  struct event *write_event; /* added only while an answer waits for room in the socket */
  bool reading_enabled;
  bool writing_enabled;
  bool busy;          /* inside connection_run: an answer given now is flushed by it */
  bool close_after;   /* close once the answer queued so far is written */
  bool peer_closed;   /* read EOF: answer what was received, then close */
  bool broken;        /* a read or write failed: close without writing more */
  bool counted_open;  /* counted in open_count (against max_connections), else in lingering_count */
  unsigned rights;    /* access_rights of the peer under the policy in force (ACCESS_USE...) */
  struct peer peer;   /* found once, at accept */
  struct user_slots *user; /* while counted_open: its user's slots */
  bool idle;          /* on user->idle: open, nothing read, nothing to write, nothing pending */
  TAILQ_ENTRY(connection) idle_link;
  char *in;
  size_t in_len, in_cap, in_scanned;
  char *out;
  size_t out_len, out_cap, out_sent;
  int64_t head_started_ms;  /* first byte of the head being read, 0 when none */
  int64_t out_started_ms;   /* when unsent answer bytes appeared, 0 when none */
  int64_t idle_since_ms;
  int64_t linger_until_ms;
  struct client_request request; /* one at a time; request.unanswered says if it is in use */
  TAILQ_ENTRY(connection) link;
};

TAILQ_HEAD(connection_list, connection);

/* One user's share of the connection slots: the connections of a uid (or, together, of every
 * peer whose uid is unknown) counted against max_connections. Exists while it has one; found by
 * uid through front->user_buckets. */
struct user_slots {
  bool uid_known;
  uint32_t uid;
  unsigned open;                /* its connections counted against max_connections */
  struct connection_list idle;  /* its idle connections, longest idle first (idle_link) */
  LIST_ENTRY(user_slots) bucket_link;
};

LIST_HEAD(user_list, user_slots);

struct listener {
  struct front *front;
  int fd;
  bool unix_socket;  /* AF_UNIX: peers are found by SO_PEERCRED, else by inet_diag */
  struct event *accept_event;
  const struct listen_addr *addr; /* NULL: inherited, systemd owns its path */
};

struct front {
  struct event_base *base;
  const struct config *cfg;
  struct stats *stats;
  struct front_routes routes;
  const struct access_policy *policy; /* who may use it; replaced by front_set_policy */
  struct peer_finder *peer_finder;    /* NULL: TCP peers are unknown */
  struct listener listeners[CONFIG_MAX_LISTEN];
  size_t listener_count;
  struct event *accept_resume;  /* after EMFILE */
  struct event *sweep;          /* deadlines */
  struct connection_list connections;
  size_t open_count;       /* connections counted against max_connections */
  struct user_list user_buckets[FRONT_USER_BUCKETS]; /* user_slots by uid */
  size_t lingering_count;
  size_t unanswered;       /* client_requests alive */
  bool stopping;           /* front_stop_listening was called: every answer closes */
  char *refusal;           /* the whole 503 answer to a connection beyond max_connections */
  size_t refusal_len;
  time_t last_refusal_log;
  time_t date_second;
  char date[40];           /* IMF-fixdate of date_second */
};


/* ---- output ---------------------------------------------------------------------------- */

static bool out_reserve(struct connection *c, size_t more) {
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
static void out_add(struct connection *c, const void *bytes, size_t len) {
  memcpy(c->out + c->out_len, bytes, len);
  c->out_len += len;
}

static void out_add_str(struct connection *c, const char *text) { out_add(c, text, strlen(text)); }

static void out_add_header(struct connection *c, const char *name, const char *value) {
  out_add_str(c, name);
  out_add(c, ": ", 2);
  out_add_str(c, value);
  out_add(c, "\r\n", 2);
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

static void connection_run(struct connection *c);
static void on_readable(evutil_socket_t fd, short what, void *arg);
static void on_writable(evutil_socket_t fd, short what, void *arg);

static void set_reading(struct connection *c, bool enabled) {
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

/* ---- connection slots ------------------------------------------------------------------- */

static struct user_list *user_bucket(struct front *front, const struct peer *peer) {
  return &front->user_buckets[peer->uid_known ? peer->uid % FRONT_USER_BUCKETS : 0];
}

static struct user_slots *find_user(struct front *front, const struct peer *peer) {
  struct user_slots *user;
  LIST_FOREACH(user, user_bucket(front, peer), bucket_link)
    if (user->uid_known == peer->uid_known && (!peer->uid_known || user->uid == peer->uid))
      return user;
  return NULL;
}

/* Counts c (whose peer is known) in its user's slots; false when out of memory. */
static bool take_slot(struct front *front, struct connection *c) {
  struct user_slots *user = find_user(front, &c->peer);
  if (!user) {
    user = calloc(1, sizeof(*user));
    if (!user)
      return false;
    user->uid_known = c->peer.uid_known;
    user->uid = c->peer.uid;
    TAILQ_INIT(&user->idle);
    LIST_INSERT_HEAD(user_bucket(front, &c->peer), user, bucket_link);
  }
  user->open++;
  front->open_count++;
  c->user = user;
  return true;
}

static void set_idle(struct connection *c, bool idle) {
  if (c->idle == idle || !c->user)
    return;
  if (idle)
    TAILQ_INSERT_TAIL(&c->user->idle, c, idle_link);
  else
    TAILQ_REMOVE(&c->user->idle, c, idle_link);
  c->idle = idle;
}

/* c no longer counts against max_connections (it closes, or only lingers now). */
static void leave_slot(struct connection *c) {
  struct user_slots *user = c->user;
  c->front->open_count--;
  if (!user)
    return;
  set_idle(c, false);
  c->user = NULL;
  if (--user->open == 0) {
    LIST_REMOVE(user, bucket_link);
    free(user);
  }
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
    leave_slot(c);
  else
    c->front->lingering_count--;
}

static void connection_free(struct connection *c) {
  release_socket(c);
  TAILQ_REMOVE(&c->front->connections, c, link);
  free(c->in);
  free(c->out);
  free(c);
}

/* The socket is done with. An unanswered request keeps the rest alive until it is answered. */
static void connection_close(struct connection *c) {
  if (c->request.unanswered) {
    release_socket(c);
    c->state = CONNECTION_ORPHANED;
    log_debug("client went away before its answer");
    return;
  }
  connection_free(c);
}

/* peer: who it is (found before, to decide whether it may have a slot); NULL for a refused one. */
static struct connection *connection_new(struct front *front, int fd, bool refused,
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
  else if (!take_slot(front, c)) {
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
    connection_close(c);
    return;
  }
  if (c->counted_open) {
    leave_slot(c);
    front->lingering_count++;
    c->counted_open = false;
  }
  c->state = CONNECTION_LINGERING;
  shutdown(c->fd, SHUT_WR);
  c->linger_until_ms = clock_coarse_ms() + FRONT_LINGER_MS;
  c->in_len = c->in_scanned = 0;
  set_writing(c, false);
  set_reading(c, true);
}

/* ---- answers --------------------------------------------------------------------------- */

/* The request's access log line (log.h's log_access). */
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
  size_t need = 360 + strlen(content_type) + (reply->cache_status ? strlen(reply->cache_status) : 0) +
                (reply->allow ? strlen(reply->allow) : 0) + origin_len +
                (reply->headers ? strlen(reply->headers) : 0) + (head ? 0 : reply->body_len);
  if (!out_reserve(c, need))
    return false;
  if (c->out_len == c->out_sent)
    c->out_started_ms = clock_coarse_ms();
  char digits[RENDER_DECIMAL_MAX];
  out_add(c, "HTTP/1.1 ", 9);
  out_add_str(c, render_decimal(reply->status, digits));
  out_add(c, " ", 1);
  const char *phrase = http_reason_phrase(reply->status);
  out_add_str(c, phrase ? phrase : ""); /* RFC 9112 4: the phrase may be empty, never absent */
  out_add(c, "\r\n", 2);
  out_add_header(c, "Date", http_date(c->front));
  out_add_header(c, "Content-Type", content_type);
  if (reply->cache_status)
    out_add_header(c, "Cache-Status", reply->cache_status);
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
    out_add(c, request->listed_origin, origin_len);
    out_add_str(c, "\r\nVary: Origin\r\n");
  }
  if (c->close_after)
    out_add_str(c, "Connection: close\r\n");
  else if (version_minor == 0)
    out_add_str(c, "Connection: keep-alive\r\n");
  out_add_number_header(c, "Content-Length", (long long)reply->body_len);
  out_add(c, "\r\n", 2);
  if (!head && reply->body_len > 0)
    out_add(c, reply->body, reply->body_len);
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
  if (c->state == CONNECTION_ORPHANED) {
    connection_free(c);
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
    .only_if_cached = parsed->only_if_cached,
    .max_age = parsed->max_age,
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
    connection_close(c);
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
  bool idle = !unsent && !c->request.unanswered && c->in_len == 0 && !c->close_after &&
              !c->peer_closed;
  if (idle && !c->idle)
    c->idle_since_ms = clock_coarse_ms();
  set_idle(c, idle);
  /* After EOF, reading stops (EOF stays readable: reading on would spin). While a request waits
   * for its answer the input buffer must not move (its target is in it): once it is full,
   * reading stops until the answer. */
  set_reading(c, !c->peer_closed && !c->close_after &&
                     !(c->request.unanswered && c->in_len == c->in_cap));
}

static void connection_run(struct connection *c) {
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
      connection_free(c);
    return;
  }
  if (c->in_len == c->in_cap) {
    size_t cap = c->in_cap ? c->in_cap * 2 : FRONT_IN_INITIAL;
    if (cap > HTTP1_MAX_HEAD)
      cap = HTTP1_MAX_HEAD;
    char *grown = cap > c->in_cap && !c->request.unanswered ? realloc(c->in, cap) : NULL;
    if (!grown) { /* full while a request waits (or out of memory): wait for its answer */
      set_reading(c, false);
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
  connection_run(c);
}

static void on_writable(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  connection_run(arg);
}

/* ---- deadlines ------------------------------------------------------------------------- */

static void on_deadline_sweep(evutil_socket_t fd, short what, void *arg) {
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
        connection_free(c);
    } else if (c->state == CONNECTION_OPEN && !c->request.unanswered) {
      if (c->out_sent < c->out_len) {
        if (now - c->out_started_ms >= request_ms) {
          log_debug("a client did not take its answer within request_timeout: closed");
          connection_close(c);
        }
      } else if (c->in_len > 0) {
        if (now - c->head_started_ms >= request_ms) {
          front->stats->request_timeouts++;
          refuse_head(c, API_ERROR_REQUEST_TIMEOUT);
          connection_run(c);
        }
      } else if (now - c->idle_since_ms >= idle_ms) {
        connection_close(c);
      }
    }
    c = next;
  }
}

/* ---- listening ------------------------------------------------------------------------- */

static void set_accepting(struct front *front, bool enabled) {
  for (size_t i = 0; i < front->listener_count; i++) {
    if (enabled)
      event_add(front->listeners[i].accept_event, NULL);
    else
      event_del(front->listeners[i].accept_event);
  }
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  set_accepting(arg, true);
}

/* A connection that may not have a slot: a whole 503 answer, then a close. The answer is written
 * at once (it is small enough for any socket buffer); the connection then only lingers. */
static void refuse_connection(struct front *front, int fd, const struct peer *peer,
                              bool per_user) {
  (*(per_user ? &front->stats->connections_refused_per_user : &front->stats->connections_refused))++;
  time_t now = time(NULL);
  if (now - front->last_refusal_log >= 10) {
    char who[PEER_TEXT_MAX];
    if (per_user)
      log_warning("refusing connections of %s: it holds max_connections_per_user (%u), none idle",
                  peer_text(peer, who), config_connections_per_user(front->cfg));
    else
      log_warning("refusing connections: max_connections (%u) are open, none idle",
                  front->cfg->max_connections);
    front->last_refusal_log = now;
  }
  struct connection *c =
      front->lingering_count < FRONT_MAX_LINGERING ? connection_new(front, fd, true, NULL) : NULL;
  if (!c || !out_reserve(c, front->refusal_len)) {
    if (send(fd, front->refusal, front->refusal_len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
      log_debug("refusal not sent: %s", strerror(errno));
    if (c)
      connection_free(c);
    else
      close(fd);
    return;
  }
  out_add(c, front->refusal, front->refusal_len);
  c->out_started_ms = clock_coarse_ms();
  c->close_after = true;
  connection_run(c);
}

/* Closes the connection of `user` that has been idle longest, to make room; false when it has
 * none idle. An idle connection has no request in progress and nothing unread or unwritten: its
 * client loses nothing but the connection (HTTP clients open another, RFC 9112 9.3.1). */
static bool close_longest_idle(struct user_slots *user, struct stats *stats) {
  struct connection *c = TAILQ_FIRST(&user->idle);
  if (!c)
    return false;
  char who[PEER_TEXT_MAX];
  log_debug("closed an idle connection of %s to make room", peer_text(&c->peer, who));
  stats->connections_closed_idle++;
  connection_close(c);
  return true;
}

/* The user that holds the most connections with one of them idle, or NULL. Runs only when every
 * slot is taken, over the users with connections (a few on most machines, at most one per
 * connection). */
static struct user_slots *busiest_with_idle(struct front *front) {
  struct user_slots *busiest = NULL, *user;
  for (size_t i = 0; i < FRONT_USER_BUCKETS; i++)
    LIST_FOREACH(user, &front->user_buckets[i], bucket_link)
      if (!TAILQ_EMPTY(&user->idle) && (!busiest || user->open > busiest->open))
        busiest = user;
  return busiest;
}

/* Whether a new connection of `peer` (with `rights`) gets a slot, making room if it must:
 *   - its user holds max_connections_per_user: the user's longest idle connection is closed for
 *     it, else it is refused (the user's own busy connections are its share);
 *   - every slot is taken: the longest idle connection of the user holding the most is closed
 *     for it; with none idle anywhere, an admin may still use one of FRONT_ADMIN_RESERVE slots
 *     beyond max_connections (the operator can always look in), anyone else is refused.
 * False: refused, *per_user says why. */
static bool make_room(struct front *front, const struct peer *peer, unsigned rights,
                      bool *per_user) {
  *per_user = false;
  struct user_slots *own = find_user(front, peer);
  if (own && own->open >= config_connections_per_user(front->cfg)) {
    *per_user = true;
    return close_longest_idle(own, front->stats);
  }
  if (front->open_count < front->cfg->max_connections)
    return true;
  struct user_slots *busiest = busiest_with_idle(front);
  if (busiest)
    return close_longest_idle(busiest, front->stats);
  return (rights & ACCESS_ADMIN) &&
         front->open_count < (size_t)front->cfg->max_connections + FRONT_ADMIN_RESERVE;
}

static void on_acceptable(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  struct listener *listener = arg;
  struct front *front = listener->front;
  for (int i = 0; i < FRONT_ACCEPTS_PER_WAKEUP; i++) {
    int client = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (client < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        log_warning("accept: %s; accepting again in %d ms", strerror(errno), FRONT_ACCEPT_PAUSE_MS);
        set_accepting(front, false);
        struct timeval pause = {.tv_usec = FRONT_ACCEPT_PAUSE_MS * 1000};
        evtimer_add(front->accept_resume, &pause);
      }
      return;
    }
    front->stats->connections_accepted++;
    /* Once per connection: every request on it is that peer's (keep-alive hits pay nothing). */
    struct peer peer;
    if (listener->unix_socket) {
      peer_of_unix(client, &peer);
    } else {
      int one = 1; /* answers go out whole; never hold one back waiting for an ACK */
      setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      peer_of_tcp(front->peer_finder, client, &peer);
    }
    if (!peer.uid_known)
      front->stats->peer_unknown++;
    unsigned rights = access_rights(front->policy, &peer);
    bool per_user = false;
    if (front->stopping || !make_room(front, &peer, rights, &per_user)) {
      refuse_connection(front, client, &peer, per_user && !front->stopping);
      continue;
    }
    struct connection *c = connection_new(front, client, false, &peer);
    if (!c) {
      close(client);
      continue;
    }
    c->rights = rights;
    set_idle(c, true);
    set_reading(c, true);
  }
}

static int listen_socket_tcp(const struct listen_addr *addr, char *err, size_t err_len) {
  struct sockaddr_storage storage;
  memset(&storage, 0, sizeof(storage));
  socklen_t len;
  int family;
  struct sockaddr_in *v4 = (struct sockaddr_in *)&storage;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&storage;
  if (inet_pton(AF_INET, addr->host, &v4->sin_addr) == 1) {
    family = v4->sin_family = AF_INET;
    v4->sin_port = htons(addr->port);
    len = sizeof(*v4);
  } else if (inet_pton(AF_INET6, addr->host, &v6->sin6_addr) == 1) {
    family = v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(addr->port);
    len = sizeof(*v6);
  } else {
    snprintf(err, err_len, "listen %s: not a numeric address", addr->host);
    return -1;
  }
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, err_len, "listen %s:%u: socket: %s", addr->host, addr->port, strerror(errno));
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (bind(fd, (struct sockaddr *)&storage, len) != 0 || listen(fd, FRONT_LISTEN_BACKLOG) != 0) {
    snprintf(err, err_len, "listen %s%s%s:%u: %s", family == AF_INET6 ? "[" : "", addr->host,
             family == AF_INET6 ? "]" : "", addr->port, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

/* Mode 0660: the socket's owner and group may connect. Its group is [server] socket_group when
 * set (the daemon must be root or a member), else the daemon's own. */
static int listen_socket_unix(const struct listen_addr *addr, const struct id_list *group,
                              char *err, size_t err_len) {
  struct sockaddr_un sun = {.sun_family = AF_UNIX};
  snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", addr->path);
  struct stat st;
  /* A socket left by an earlier run is replaced; any other file at that path is never touched. */
  if (lstat(addr->path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      snprintf(err, err_len, "listen unix:%s: exists and is not a socket", addr->path);
      return -1;
    }
    unlink(addr->path);
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, err_len, "listen unix:%s: socket: %s", addr->path, strerror(errno));
    return -1;
  }
  if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 || chmod(addr->path, 0660) != 0 ||
      listen(fd, FRONT_LISTEN_BACKLOG) != 0) {
    snprintf(err, err_len, "listen unix:%s: %s", addr->path, strerror(errno));
    close(fd);
    return -1;
  }
  if (group->count == 1 && chown(addr->path, (uid_t)-1, (gid_t)group->ids[0]) != 0) {
    snprintf(err, err_len, "listen unix:%s: socket_group %u: %s (the daemon must be root or a "
             "member of the group)", addr->path, group->ids[0], strerror(errno));
    close(fd);
    unlink(addr->path);
    return -1;
  }
  return fd;
}

/* "127.0.0.1:8750", "[::1]:8750" or "unix:/run/flipcached/http.sock": where a socket listens. */
static const char *socket_address_text(int fd, char *out, size_t out_len) {
  struct sockaddr_storage storage;
  socklen_t len = sizeof(storage);
  char host[INET6_ADDRSTRLEN] = "?";
  snprintf(out, out_len, "an unknown address");
  if (getsockname(fd, (struct sockaddr *)&storage, &len) != 0)
    return out;
  if (storage.ss_family == AF_UNIX) {
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&storage;
    snprintf(out, out_len, "unix:%s", sun->sun_path[0] ? sun->sun_path : "(abstract)");
  } else if (storage.ss_family == AF_INET) {
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)&storage;
    inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host));
    snprintf(out, out_len, "%s:%u", host, ntohs(v4->sin_port));
  } else if (storage.ss_family == AF_INET6) {
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&storage;
    inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
    snprintf(out, out_len, "[%s]:%u", host, ntohs(v6->sin6_port));
  }
  return out;
}

/* Takes a listening socket (inherited or our own) into the loop; closes it on failure. */
static int serve_socket(struct front *front, int fd, const struct listen_addr *addr, char *err,
                        size_t err_len) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    snprintf(err, err_len, "listening socket %d: %s", fd, strerror(errno));
    close(fd);
    return -1;
  }
  struct listener *listener = &front->listeners[front->listener_count];
  listener->front = front;
  listener->fd = fd;
  listener->addr = addr;
  int domain = 0;
  socklen_t domain_len = sizeof(domain);
  listener->unix_socket = addr ? addr->kind == LISTEN_UNIX
                               : getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &domain_len) == 0 &&
                                     domain == AF_UNIX;
  listener->accept_event = event_new(front->base, fd, EV_READ | EV_PERSIST, on_acceptable, listener);
  if (!listener->accept_event || event_add(listener->accept_event, NULL) != 0) {
    if (listener->accept_event)
      event_free(listener->accept_event);
    close(fd);
    snprintf(err, err_len, "listening socket %d: cannot watch it", fd);
    return -1;
  }
  front->listener_count++;
  return 0;
}

/* The answer to every connection beyond max_connections, rendered once. */
static char *render_refusal(size_t *len) {
  char *body = render_error_body(API_ERROR_TOO_MANY_CONNECTIONS);
  if (!body)
    return NULL;
  char *text = NULL;
  int status = api_error_http_status(API_ERROR_TOO_MANY_CONNECTIONS);
  int n = asprintf(&text,
                   "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                   "Retry-After: %d\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
                   status, http_reason_phrase(status), FRONT_RETRY_AFTER_SECONDS, strlen(body), body);
  free(body);
  if (n < 0)
    return NULL;
  *len = (size_t)n;
  return text;
}

struct front *front_new(struct event_base *base, const struct config *cfg, struct stats *stats,
                        const struct front_routes *routes, const struct front_access *access,
                        const int *inherited, size_t inherited_count, char *err, size_t err_len) {
  struct front *front = calloc(1, sizeof(*front));
  if (!front) {
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  front->base = base;
  front->cfg = cfg;
  front->stats = stats;
  front->routes = *routes;
  front->policy = access->policy;
  front->peer_finder = access->peer_finder;
  TAILQ_INIT(&front->connections);
  for (size_t i = 0; i < FRONT_USER_BUCKETS; i++)
    LIST_INIT(&front->user_buckets[i]);
  front->refusal = render_refusal(&front->refusal_len);
  front->accept_resume = evtimer_new(base, on_accept_resume, front);
  front->sweep = event_new(base, -1, EV_PERSIST, on_deadline_sweep, front);
  struct timeval sweep_every = {.tv_usec = FRONT_SWEEP_MS * 1000};
  if (!front->refusal || !front->accept_resume || !front->sweep ||
      event_add(front->sweep, &sweep_every) != 0) {
    snprintf(err, err_len, "out of memory");
    goto fail;
  }

  /* Socket activation: systemd's sockets replace the configured listeners (the .socket unit
   * says where to listen; binding the same addresses again would fail). */
  for (size_t i = 0; i < inherited_count && i < CONFIG_MAX_LISTEN; i++) {
    if (serve_socket(front, inherited[i], NULL, err, err_len) != 0)
      goto fail;
    char where[160];
    log_info("listening on %s (socket fd %d passed by systemd)",
             socket_address_text(inherited[i], where, sizeof(where)), inherited[i]);
  }
  for (size_t i = 0; inherited_count == 0 && i < cfg->listen_count; i++) {
    const struct listen_addr *addr = &cfg->listen[i];
    int fd = addr->kind == LISTEN_UNIX ? listen_socket_unix(addr, &cfg->socket_group, err, err_len)
                                       : listen_socket_tcp(addr, err, err_len);
    if (fd < 0 || serve_socket(front, fd, addr, err, err_len) != 0)
      goto fail;
    if (addr->kind == LISTEN_UNIX)
      log_info("listening on unix:%s", addr->path);
    else if (strchr(addr->host, ':'))
      log_info("listening on [%s]:%u", addr->host, addr->port);
    else
      log_info("listening on %s:%u", addr->host, addr->port);
  }
  return front;
fail:
  front_free(front);
  return NULL;
}

void front_set_policy(struct front *front, const struct access_policy *policy) {
  front->policy = policy;
  struct connection *c;
  TAILQ_FOREACH(c, &front->connections, link)
    c->rights = access_rights(policy, &c->peer);
}

void front_request_cache_control(const struct client_request *request, bool *only_if_cached,
                                 long *max_age) {
  *only_if_cached = request->only_if_cached;
  *max_age = request->max_age;
}

double front_request_seconds(const struct client_request *request) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - request->started.tv_sec) +
         (double)(now.tv_nsec - request->started.tv_nsec) / 1e9;
}

const struct peer *front_request_peer(const struct client_request *request) {
  return &request->connection->peer;
}

void front_stop_listening(struct front *front) {
  if (!front)
    return;
  front->stopping = true;
  for (size_t i = 0; i < front->listener_count; i++) {
    struct listener *listener = &front->listeners[i];
    event_free(listener->accept_event);
    close(listener->fd);
    if (listener->addr && listener->addr->kind == LISTEN_UNIX)
      unlink(listener->addr->path); /* ours: bound by this process */
  }
  front->listener_count = 0;
  /* Idle keep-alive connections have nothing left to wait for. */
  struct connection *c = TAILQ_FIRST(&front->connections);
  while (c) {
    struct connection *next = TAILQ_NEXT(c, link);
    if (c->state == CONNECTION_OPEN && !c->request.unanswered && c->in_len == 0 &&
        c->out_sent == c->out_len)
      connection_close(c);
    c = next;
  }
}

void front_free(struct front *front) {
  if (!front)
    return;
  /* main.c frees the upstream first, which answers every request waiting on a fetch. */
  assert(front->unanswered == 0 && "no request is left unanswered at shutdown");
  front_stop_listening(front);
  while (!TAILQ_EMPTY(&front->connections))
    connection_free(TAILQ_FIRST(&front->connections));
  if (front->sweep)
    event_free(front->sweep);
  if (front->accept_resume)
    event_free(front->accept_resume);
  free(front->refusal);
  free(front);
}
