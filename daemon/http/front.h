/* front: the HTTP front end, flipcached's own HTTP/1.1 connection layer (front.c, with the
 * parser in http1.c). Handlers see a client_request and answer it with front_reply.
 *
 * Lifetime: a client_request is created for each routed request and is answered exactly once with
 * front_reply, which also releases it, even when the client has gone away meanwhile (answering
 * is the only way to release it and its connection). Nothing else may free it. */
#ifndef FLIPCACHED_FRONT_H
#define FLIPCACHED_FRONT_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct config;
struct stats;
struct front;
struct client_request;
struct access_policy;
struct peer_finder;
struct peer;
struct request_directives;

struct front_routes {
  /* GET/HEAD on the enrollment route; enrollment_id is NULL when the id is not a UUID. */
  void (*enrollment)(struct client_request *request, const char *enrollment_id, void *arg);
  void (*stats)(struct client_request *request, void *arg);
  void (*metrics)(struct client_request *request, void *arg);
  void (*healthz)(struct client_request *request, void *arg);
  /* The admin routes, reached only when [server] admin = yes (else 404), and only by a peer with
   * ACCESS_ADMIN (else 403). */
  void (*cache_inspect)(struct client_request *request, const char *enrollment_id, void *arg);
  void (*cache_delete)(struct client_request *request, const char *enrollment_id, void *arg);
  void (*cache_purge)(struct client_request *request, void *arg);
  /* GET /cache: query is what follows the '?' (NULL without one). */
  void (*cache_list)(struct client_request *request, const char *query, void *arg);
  void (*cache_warm)(struct client_request *request, void *arg);
  void *arg;
};

struct reply {
  int status;
  const char *content_type;  /* NULL: application/json */
  const char *cache_status;  /* NULL: no Cache-Status header */
  const char *cache_control; /* the Cache-Control value; NULL: "no-store" (errors, /stats, ...) */
  const char *etag;          /* NULL: no ETag header */
  long long age;             /* < 0: no Age header */
  long retry_after;          /* < 0: no Retry-After header */
  const char *allow;         /* NULL: no Allow header */
  const char *headers;       /* NULL, or more header lines, each ending in CRLF */
  const char *body;          /* a 304 sends none (and no Content-Length), whatever is here */
  size_t body_len;
};

/* Who is asking and what they may do (access.h, peer.h); both borrowed for the front's life (the
 * policy until front_set_policy replaces it). peer_finder may be NULL: TCP peers are unknown. */
struct front_access {
  const struct access_policy *policy;
  struct peer_finder *peer_finder;
};

/* Serves the listening sockets systemd passed (inherited_count > 0), or else binds every
 * configured listener. Every connection's peer is found at accept and its rights decided by the
 * policy; a request is then refused 421 or 403 before any route runs when the Host, Origin and
 * Sec-Fetch-Site rules or the rights say so. Returns NULL with err set. */
struct front *front_new(struct event_base *base, const struct config *cfg, struct stats *stats,
                        const struct front_routes *routes, const struct front_access *access,
                        const int *inherited, size_t inherited_count, char *err, size_t err_len);
/* A new policy (a reload): every open connection's rights are decided again under it at once, so
 * that a user taken off a list loses a kept-alive connection's rights too. The old policy may be
 * freed once this returns. */
void front_set_policy(struct front *front, const struct access_policy *policy);
/* The client's Cache-Control request directives (http1.h); valid until it is answered. */
const struct request_directives *front_request_directives(const struct client_request *request);
/* The client's If-None-Match field value (*len bytes, not NUL-terminated), or NULL when there is
 * none to evaluate (absent, or more than one field); valid until it is answered. */
const char *front_request_if_none_match(const struct client_request *request, size_t *len);
/* A word the route's handler keeps with the request until it is answered (0 at first): the
 * enrollment policy's note of why the request went upstream. */
void front_request_set_tag(struct client_request *request, unsigned tag);
unsigned front_request_tag(const struct client_request *request);
/* Seconds since the request's first byte was parsed (its start), for the answer histogram. */
double front_request_seconds(const struct client_request *request);
/* Who sent the request (found when its connection was accepted); valid until it is answered. */
const struct peer *front_request_peer(const struct client_request *request);
/* Stops accepting new connections (for shutdown). */
void front_stop_listening(struct front *front);
/* Requests not answered yet, plus answers not yet written out to a connected client: shutdown
 * waits for this to reach 0, so that no answer given is lost by closing the connections. */
size_t front_unfinished(const struct front *front);
/* Client connections open now (those counted against [server] max_connections). */
size_t front_connections(const struct front *front);
/* Frees the server and every connection. Every client_request must have been answered. */
void front_free(struct front *front);

void front_reply(struct client_request *request, const struct reply *reply);
/* Answers with `status` and no body (out of memory, or a cache that failed under an admin route). */
void front_reply_empty(struct client_request *request, int status);
/* Answers with the error body and status of api_error (errors.h). cache_status and allow may be
 * NULL; retry_after < 0 sends no Retry-After. */
void front_reply_error(struct client_request *request, int api_error, const char *cache_status,
                       long retry_after, const char *allow);

#endif
