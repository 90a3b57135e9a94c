/* front_listen: the front end's listeners (front.h): the listening sockets (TCP, unix, or passed
 * by systemd), accepting, the admission of a connection against max_connections and its user's
 * max_connections_per_user (closing an idle one for room, or answering 503), and starting and
 * stopping the front end. Connections themselves are front.c's. */
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
#include "config.h"
#include "http1.h"
#include "log.h"
#include "peer.h"
#include "cache_status.h"
#include "errors.h"
#include "route.h"
#include "stats.h"
/* ---- connection slots ------------------------------------------------------------------- */

static struct user_list *user_bucket(struct front *front, const struct peer *peer) {
  return &front->user_buckets[peer->uid_known ? peer->uid % FRONT_USER_BUCKETS : 0];
}

struct user_slots *front_find_user(struct front *front, const struct peer *peer) {
  struct user_slots *user;
  LIST_FOREACH(user, user_bucket(front, peer), bucket_link)
    if (user->uid_known == peer->uid_known && (!peer->uid_known || user->uid == peer->uid))
      return user;
  return NULL;
}

/* Counts c (whose peer is known) in its user's slots; false when out of memory. */
bool front_take_slot(struct front *front, struct connection *c) {
  struct user_slots *user = front_find_user(front, &c->peer);
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

void front_set_idle(struct connection *c, bool idle) {
  if (c->idle == idle || !c->user)
    return;
  if (idle)
    TAILQ_INSERT_TAIL(&c->user->idle, c, idle_link);
  else
    TAILQ_REMOVE(&c->user->idle, c, idle_link);
  c->idle = idle;
}

/* c no longer counts against max_connections (it closes, or only lingers now). */
void front_leave_slot(struct connection *c) {
  struct user_slots *user = c->user;
  c->front->open_count--;
  if (!user)
    return;
  front_set_idle(c, false);
  c->user = NULL;
  if (--user->open == 0) {
    LIST_REMOVE(user, bucket_link);
    free(user);
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
      front->lingering_count < FRONT_MAX_LINGERING ? front_connection_new(front, fd, true, NULL) : NULL;
  if (!c || !front_out_reserve(c, front->refusal_len)) {
    if (send(fd, front->refusal, front->refusal_len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
      log_debug("refusal not sent: %s", strerror(errno));
    if (c)
      front_connection_free(c);
    else
      close(fd);
    return;
  }
  front_out_add(c, front->refusal, front->refusal_len);
  c->out_started_ms = clock_coarse_ms();
  c->close_after = true;
  front_connection_run(c);
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
  front_connection_close(c);
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
  struct user_slots *own = front_find_user(front, peer);
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
    struct connection *c = front_connection_new(front, client, false, &peer);
    if (!c) {
      close(client);
      continue;
    }
    c->rights = rights;
    front_set_reading(c, true);
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
  front->sweep = event_new(base, -1, EV_PERSIST, front_on_deadline_sweep, front);
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
      front_connection_close(c);
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
    front_connection_free(TAILQ_FIRST(&front->connections));
  if (front->sweep)
    event_free(front->sweep);
  if (front->accept_resume)
    event_free(front->accept_resume);
  free(front->refusal);
  free(front);
}
