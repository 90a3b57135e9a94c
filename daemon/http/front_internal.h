/* front_internal: what the front end's two files share: front.c (connections: reading, parsing,
 * routing, answering, deadlines) and front_listen.c (listeners: accepting, the connection slots'
 * admission, refusing, start and stop). No other module includes it: the rest of the daemon sees
 * front.h. */
#ifndef FLIPCACHED_FRONT_INTERNAL_H
#define FLIPCACHED_FRONT_INTERNAL_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <time.h>

#include "config.h"
#include "front.h"
#include "http1.h"
#include "peer.h"

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
  size_t listed_origin_len;
  struct request_directives directives; /* the client's Cache-Control (http1.h) */
  const char *if_none_match;  /* in the input buffer until answered; NULL: none to evaluate */
  size_t if_none_match_len;
  unsigned handler_tag;       /* the route handler's (front_request_set_tag) */
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
  bool idle;          /* on user->idle: kept alive after an answer, nothing read, nothing to
                         write, nothing pending; a newcomer may close it for room */
  bool answered_one;  /* a request of it was answered: it is a kept-alive connection now */
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

/* front_listen.c, for front.c: a new connection's slot against max_connections and its user's
 * share (false: out of memory), and giving it back when the connection closes. */
bool front_take_slot(struct front *front, struct connection *c);
void front_leave_slot(struct connection *c);
/* The slots of peer's user, or NULL when it holds none; a connection on or off its user's idle
 * list (the longest idle is closed first for room). */
struct user_slots *front_find_user(struct front *front, const struct peer *peer);
void front_set_idle(struct connection *c, bool idle);

/* front.c, for front_listen.c. */
/* The output buffer: room for `more` bytes (false: out of memory), and appending to it. */
bool front_out_reserve(struct connection *c, size_t more);
void front_out_add(struct connection *c, const void *bytes, size_t len);
void front_set_reading(struct connection *c, bool enabled);
void front_connection_free(struct connection *c);
void front_connection_close(struct connection *c);
/* A connection for an accepted fd (refused: only to be answered 503 and closed); NULL when out
 * of memory. */
struct connection *front_connection_new(struct front *front, int fd, bool refused,
                                        const struct peer *peer);
/* Reads, parses and answers what the connection has, as far as it can now. */
void front_connection_run(struct connection *c);
/* The sweep timer's callback: the deadlines of every connection (arg: the front). */
void front_on_deadline_sweep(evutil_socket_t fd, short what, void *arg);

#endif
