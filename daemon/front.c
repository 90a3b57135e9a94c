#include "front.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "render.h"
#include "route.h"
#include "stats.h"

#define FRONT_MAX_HEADERS_SIZE 16384   /* request line and headers */
#define FRONT_MAX_BODY_SIZE 1024       /* no route takes a body; a larger one is 413 at once */
#define FRONT_TIMEOUT_SECONDS 30       /* idle keep-alive and slow-request cut-off */
#define FRONT_LISTEN_BACKLOG 511

struct front {
  struct evhttp *http;
  const struct config *cfg;
  struct stats *stats;
  size_t unanswered;      /* client_requests alive */
  size_t unwritten;       /* answers handed to evhttp and not yet written out */
  struct front_routes routes;
  struct {
    struct evhttp_bound_socket *socket;
    const struct listen_addr *addr;
  } bound[CONFIG_MAX_LISTEN];
  size_t bound_count;
};

struct client_request {
  struct front *front;
  struct evhttp_request *req;
  bool head;
  bool gone; /* the connection closed; evhttp detached req, answering frees it */
  struct timespec started; /* CLOCK_MONOTONIC, for the access log */
};

static const char *method_name(enum evhttp_cmd_type command) {
  switch (command) {
  case EVHTTP_REQ_GET:
    return "GET";
  case EVHTTP_REQ_HEAD:
    return "HEAD";
  case EVHTTP_REQ_POST:
    return "POST";
  case EVHTTP_REQ_PUT:
    return "PUT";
  case EVHTTP_REQ_DELETE:
    return "DELETE";
  case EVHTTP_REQ_OPTIONS:
    return "OPTIONS";
  case EVHTTP_REQ_TRACE:
    return "TRACE";
  case EVHTTP_REQ_CONNECT:
    return "CONNECT";
  case EVHTTP_REQ_PATCH:
    return "PATCH";
  }
  return "?";
}

/* One line per request: method, path (the query is left out: it is the client's data and no
 * route uses it), status, Cache-Status, milliseconds. Nothing of the request's headers. */
static void log_access(const struct client_request *request, int status, const char *cache_status) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  double ms = (double)(now.tv_sec - request->started.tv_sec) * 1e3 +
              (double)(now.tv_nsec - request->started.tv_nsec) / 1e6;
  const char *target = evhttp_request_get_uri(request->req);
  int path_len = target ? (int)strcspn(target, "?") : 0;
  if (path_len > 200)
    path_len = 200;
  log_info("access: %s %.*s %d \"%s\" %.1f ms", method_name(evhttp_request_get_command(request->req)),
           path_len, target ? target : "", status, cache_status ? cache_status : "-", ms);
}

static void on_connection_close(struct evhttp_connection *connection, void *arg) {
  (void)connection;
  struct client_request *request = arg;
  request->gone = true;
  log_debug("client went away before its answer");
}

/* evhttp's "this answer has been written out" (or the connection died trying). */
static void on_answer_written(struct evhttp_request *req, void *arg) {
  (void)req;
  struct front *front = arg;
  front->unwritten--;
}

size_t front_unfinished(const struct front *front) { return front->unanswered + front->unwritten; }

bool client_request_is_head(const struct client_request *request) { return request->head; }

bool client_request_gone(const struct client_request *request) { return request->gone; }

void front_reply(struct client_request *request, const struct reply *reply) {
  struct evhttp_request *req = request->req;
  struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
  char number[32];
  evhttp_add_header(headers, "Content-Type",
                    reply->content_type ? reply->content_type : "application/json");
  if (reply->cache_status)
    evhttp_add_header(headers, "Cache-Status", reply->cache_status);
  if (reply->age >= 0) {
    snprintf(number, sizeof(number), "%lld", reply->age);
    evhttp_add_header(headers, "Age", number);
  }
  if (reply->retry_after >= 0) {
    snprintf(number, sizeof(number), "%ld", reply->retry_after);
    evhttp_add_header(headers, "Retry-After", number);
  }
  if (reply->allow)
    evhttp_add_header(headers, "Allow", reply->allow);
  if (request->head) {
    /* evhttp sends no body to HEAD and so adds no Content-Length: say what GET would send. */
    snprintf(number, sizeof(number), "%zu", reply->body_len);
    evhttp_add_header(headers, "Content-Length", number);
  }
  struct evhttp_connection *connection = evhttp_request_get_connection(req);
  if (connection) {
    evhttp_connection_set_closecb(connection, NULL, NULL);
    /* Only a connected request is written out and completes; a detached one is freed at once. */
    evhttp_request_set_on_complete_cb(req, on_answer_written, request->front);
    request->front->unwritten++;
  }
  if (request->front->cfg->access_log)
    log_access(request, reply->status, reply->cache_status);

  struct evbuffer *body = evbuffer_new();
  if (body && reply->body_len > 0 && evbuffer_add(body, reply->body, reply->body_len) != 0) {
    evbuffer_free(body);
    body = NULL;
  }
  if (body) {
    evhttp_send_reply(req, reply->status, NULL, body);
    evbuffer_free(body);
  } else {
    evhttp_send_error(req, 500, NULL); /* out of memory: still the one terminal call */
  }
  request->front->stats->requests_total++;
  request->front->unanswered--;
  free(request);
}

void front_reply_empty(struct client_request *request, int status) {
  struct reply reply = {.status = status, .age = -1, .retry_after = -1, .body = ""};
  front_reply(request, &reply);
}

void front_reply_error(struct client_request *request, int api_error, const char *cache_status,
                       long retry_after, const char *allow) {
  char *body = render_error_body((enum api_error)api_error);
  struct reply reply = {
    .status = api_error_http_status((enum api_error)api_error),
    .cache_status = cache_status,
    .age = -1,
    .retry_after = retry_after,
    .allow = allow,
    .body = body ? body : "",
    .body_len = body ? strlen(body) : 0,
  };
  front_reply(request, &reply);
  free(body);
}

static enum route_method route_method_of(enum evhttp_cmd_type command) {
  switch (command) {
  case EVHTTP_REQ_GET:
    return ROUTE_METHOD_GET;
  case EVHTTP_REQ_HEAD:
    return ROUTE_METHOD_HEAD;
  case EVHTTP_REQ_POST:
    return ROUTE_METHOD_POST;
  case EVHTTP_REQ_PUT:
    return ROUTE_METHOD_PUT;
  case EVHTTP_REQ_DELETE:
    return ROUTE_METHOD_DELETE;
  default:
    return ROUTE_METHOD_OTHER;
  }
}

/* No route takes a body, so any sign of one is refused: a body read, any Transfer-Encoding, a
 * Content-Length other than 0, or more than one Content-Length (whose disagreement is how
 * requests get smuggled past a proxy). */
static bool carries_body(struct evhttp_request *req) {
  if (evbuffer_get_length(evhttp_request_get_input_buffer(req)) > 0)
    return true;
  int lengths = 0;
  struct evkeyval *header;
  TAILQ_FOREACH(header, evhttp_request_get_input_headers(req), next) {
    if (strcasecmp(header->key, "Transfer-Encoding") == 0)
      return true;
    if (strcasecmp(header->key, "Content-Length") == 0 &&
        (++lengths > 1 || strcmp(header->value, "0") != 0))
      return true;
  }
  return false;
}

static void on_request(struct evhttp_request *req, void *arg) {
  struct front *front = arg;
  struct client_request *request = calloc(1, sizeof(*request));
  if (!request) {
    evhttp_send_error(req, 503, NULL);
    return;
  }
  request->front = front;
  request->req = req;
  front->unanswered++;
  clock_gettime(CLOCK_MONOTONIC, &request->started);
  enum route_method method = route_method_of(evhttp_request_get_command(req));
  request->head = method == ROUTE_METHOD_HEAD;
  struct evhttp_connection *connection = evhttp_request_get_connection(req);
  if (connection)
    evhttp_connection_set_closecb(connection, on_connection_close, request);

  const char *target = evhttp_request_get_uri(req);
  if (carries_body(req)) {
    /* The stream's framing cannot be trusted any more: answer, then close. */
    front->stats->invalid_requests++;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    front_reply_error(request, API_ERROR_BAD_REQUEST, NULL, -1, NULL);
    return;
  }
  struct route_match match;
  route_match(target, method, &match);
  if (match.admin && !front->cfg->admin)
    match.kind = ROUTE_NOT_FOUND; /* admin routes off: they do not exist */
  switch (match.kind) {
  case ROUTE_ENROLLMENT:
    front->routes.enrollment(request, match.enrollment_id, front->routes.arg);
    return;
  case ROUTE_INVALID_ID:
    if (match.admin) {
      front->stats->invalid_requests++;
      front_reply_error(request, API_ERROR_INVALID_ID, NULL, -1, NULL);
    } else {
      front->routes.enrollment(request, NULL, front->routes.arg);
    }
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
    front->stats->invalid_requests++;
    front_reply_error(request, API_ERROR_METHOD_NOT_ALLOWED, NULL, -1, match.allow);
    return;
  case ROUTE_BAD_TARGET:
    front->stats->invalid_requests++;
    front_reply_error(request, API_ERROR_BAD_REQUEST, NULL, -1, NULL);
    return;
  case ROUTE_NOT_FOUND:
    front->stats->invalid_requests++;
    front_reply_error(request, API_ERROR_NOT_FOUND, NULL, -1, NULL);
    return;
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

static int listen_socket_unix(const struct listen_addr *addr, char *err, size_t err_len) {
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
  return fd;
}

/* Takes a listening socket (inherited or our own) into evhttp; closes it on failure. */
static int serve_socket(struct front *front, int fd, const struct listen_addr *addr, char *err,
                        size_t err_len) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    snprintf(err, err_len, "listening socket %d: %s", fd, strerror(errno));
    close(fd);
    return -1;
  }
  struct evhttp_bound_socket *bound = evhttp_accept_socket_with_handle(front->http, fd);
  if (!bound) {
    close(fd);
    snprintf(err, err_len, "evhttp_accept_socket_with_handle failed");
    return -1;
  }
  front->bound[front->bound_count].socket = bound;
  front->bound[front->bound_count].addr = addr; /* NULL: inherited, systemd owns its path */
  front->bound_count++;
  return 0;
}

struct front *front_new(struct event_base *base, const struct config *cfg, struct stats *stats,
                        const struct front_routes *routes, const int *inherited,
                        size_t inherited_count, char *err, size_t err_len) {
  struct front *front = calloc(1, sizeof(*front));
  if (!front) {
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  front->cfg = cfg;
  front->stats = stats;
  front->routes = *routes;
  front->http = evhttp_new(base);
  if (!front->http) {
    snprintf(err, err_len, "evhttp_new failed");
    goto fail;
  }
  /* evhttp's limits default to unlimited. */
  evhttp_set_max_headers_size(front->http, FRONT_MAX_HEADERS_SIZE);
  evhttp_set_max_body_size(front->http, FRONT_MAX_BODY_SIZE);
  struct timeval timeout = {.tv_sec = FRONT_TIMEOUT_SECONDS};
  evhttp_set_timeout_tv(front->http, &timeout);
  /* Every method reaches on_request, so that a known path answers 405 with its Allow header. */
  evhttp_set_allowed_methods(front->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                              EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                              EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
  evhttp_set_gencb(front->http, on_request, front);

  /* Socket activation: systemd's sockets replace the configured listeners (the .socket unit
   * says where to listen; binding the same addresses again would fail). */
  for (size_t i = 0; i < inherited_count && i < CONFIG_MAX_LISTEN; i++) {
    if (serve_socket(front, inherited[i], NULL, err, err_len) != 0)
      goto fail;
    log_info("listening on socket fd %d passed by systemd", inherited[i]);
  }
  for (size_t i = 0; inherited_count == 0 && i < cfg->listen_count; i++) {
    const struct listen_addr *addr = &cfg->listen[i];
    int fd = addr->kind == LISTEN_UNIX ? listen_socket_unix(addr, err, err_len)
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

void front_stop_listening(struct front *front) {
  if (!front)
    return;
  for (size_t i = 0; i < front->bound_count; i++) {
    evhttp_del_accept_socket(front->http, front->bound[i].socket); /* closes the socket */
    if (front->bound[i].addr && front->bound[i].addr->kind == LISTEN_UNIX)
      unlink(front->bound[i].addr->path); /* ours: bound by this process */
  }
  front->bound_count = 0;
}

void front_free(struct front *front) {
  if (!front)
    return;
  front_stop_listening(front);
  if (front->http)
    evhttp_free(front->http);
  free(front);
}
