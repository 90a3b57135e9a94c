/* redis: the client of the fleet's Redis ([shared] redis), on the daemon's one loop. fleet.h
 * holds what is stored there and why; this module only talks to Redis.
 *
 * hiredis 0.14's asynchronous API, driven by libevent through our own glue rather than the
 * adapter hiredis ships (which has no timeouts; and hiredis frees at once a context freed from
 * inside its connect callback, then goes on using it):
 *
 *   - two connections: one for commands, one subscribed to the fleet's channel (a subscribed
 *     connection takes no other commands). Each has one read and one write event, assigned to
 *     each new socket; hiredis's cleanup hook only deletes them, so nothing is freed inside a
 *     libevent or hiredis callback;
 *   - a timer per command ([shared] timeout_ms): a command that times out is answered as failed
 *     at once, and its connection is dropped (the replies behind it would be late too);
 *   - a connection is dropped only from our own callbacks, through a deferred event, never from
 *     inside one of hiredis's; no connect callback is set at all;
 *   - the connect is hiredis's non-blocking one, to a numeric address (config.h refuses names:
 *     no lookup on the loop); AUTH (password_file) and PING, or SUBSCRIBE, are its handshake;
 *   - retry_breaker.c's circuit per connection: 3 failed commands or handshakes in a row open it for
 *     500 ms, doubling up to 5 s; then one reconnect is the probe. While the command connection
 *     is not ready, shared_command refuses at once and the caller goes on without the tier.
 *
 * Nothing here blocks; nothing is logged but state changes (once each) and never the password
 * or a command's arguments. */
#ifndef FLIPCACHED_SHARED_H
#define FLIPCACHED_SHARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

struct event_base;
struct config;
struct stats;
struct shared;

#define SHARED_FAILURES_TO_OPEN 3
#define SHARED_COOLDOWN_MS 500
#define SHARED_COOLDOWN_CAP_MS 5000
#define SHARED_RECONNECT_MS 100 /* after a drop while the circuit is still closed */
#define SHARED_PASSWORD_MAX 512

/* A command's answer: the reply (never an error reply), or NULL when it failed (timed out, the
 * connection dropped, an error reply). Valid only during the call. */
typedef void (*shared_reply_fn)(const redisReply *reply, void *arg);
/* A message on the subscribed channel; payload not NUL-terminated. */
typedef void (*shared_message_fn)(const char *payload, size_t len, void *arg);
/* The subscription has just been made, again after a drop (again: true): messages sent while it
 * was down were missed. */
typedef void (*shared_subscribed_fn)(bool again, void *arg);

struct shared_handlers {
  shared_message_fn message;
  shared_subscribed_fn subscribed;
  void *arg;
};

/* Connects (on the loop, not within this call) to cfg->shared_addr with the password (NULL or
 * "": no AUTH; copied, and wiped at free) and subscribes to channel. cfg is read live (timeout_ms
 * follows a reload). NULL when out of memory. */
struct shared *shared_new(struct event_base *base, const struct config *cfg, const char *password,
                          const char *channel, const struct shared_handlers *handlers,
                          struct stats *stats);
/* Frees both connections: every command not answered yet is answered NULL first. Accepts NULL. */
void shared_free(struct shared *shared);

/* Sends one command (argv with lengths: binary safe). true: done will be called exactly once,
 * never inside this call. false: the tier is unavailable (not connected, circuit open, or out of
 * memory) and done is never called. done may be NULL: the reply is not wanted. */
bool shared_command(struct shared *shared, shared_reply_fn done, void *arg, int argc,
                    const char **argv, const size_t *argv_len);

/* The command connection is ready and its circuit closed. */
bool shared_available(const struct shared *shared);
/* NULL while both connections are up; else why one is not, for /healthz ("redis 127.0.0.1:6379:
 * Connection refused", "... : subscription down: purges from other hosts are missed"). */
const char *shared_problem(struct shared *shared);
/* Commands sent and not answered yet. */
size_t shared_pending(const struct shared *shared);

#endif
