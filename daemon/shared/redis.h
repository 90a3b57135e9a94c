/* redis: the client of the fleet's Redis ([shared] redis, or the master [shared] sentinels
 * name), on the daemon's one loop. fleet.h holds what is stored there and why; this module only
 * talks to Redis and to its sentinels.
 *
 * hiredis 0.14's asynchronous API, driven by libevent through our own glue rather than the
 * adapter hiredis ships (which has no timeouts; and hiredis frees at once a context freed from
 * inside its connect callback, then goes on using it):
 *
 *   - two connections to the master: one for commands, one subscribed to the fleet's channel (a
 *     subscribed connection takes no other commands); with sentinels, a third to one sentinel.
 *     Each has one read and one write event, assigned to each new socket; hiredis's cleanup hook
 *     only deletes them, so nothing is freed inside a libevent or hiredis callback;
 *   - a timer per command ([shared] timeout_ms): a command that times out is answered as failed
 *     at once, and its connection is dropped (the replies behind it would be late too);
 *   - a connection is dropped only from our own callbacks, through a deferred event, never from
 *     inside one of hiredis's; no connect callback is set at all;
 *   - the connect is hiredis's non-blocking one, to a numeric address (config.h refuses names,
 *     sentinel.h refuses a sentinel's: no lookup on the loop); AUTH (password_file) and PING, or
 *     SUBSCRIBE, are its handshake;
 *   - retry_breaker.c's circuit per connection: 3 failed commands or handshakes in a row open it for
 *     500 ms, doubling up to 5 s; then one reconnect is the probe. While the command connection
 *     is not ready, shared_command refuses at once and the caller goes on without the tier.
 *
 * With [shared] sentinels (Redis Sentinel), the master is whatever the sentinels say, checked:
 *   - the sentinel connection asks one sentinel (in turn, the next after each failure) with
 *     AUTH (sentinel_password_file), SENTINEL get-master-addr-by-name and SUBSCRIBE +switch-master;
 *     the connections to the master wait for its first answer;
 *   - the master's connections send ROLE instead of PING: a server that is not a master (a lying
 *     or late sentinel named a replica) fails the handshake, and another sentinel is asked;
 *   - a master's connection lost, or refused, also asks again (a +switch-master may be missed
 *     while the sentinel connection reconnects: asking again is what does not miss it);
 *   - a new master (a +switch-master, or an answer naming another address) drops both master
 *     connections at once (their commands are answered NULL: the callers go to the upstream),
 *     closes their circuits, and connects to it without a backoff; counted in shared_switches.
 *
 * Nothing here blocks; nothing is logged but state changes (once each) and never a password or
 * a command's arguments. */
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
/* The subscription to the fleet's channel has just been made, again after a drop or on a new
 * master (again: true): messages sent while it was down were missed. */
typedef void (*shared_subscribed_fn)(bool again, void *arg);

/* The command connection has just become ready (shared_command works from here). new_master:
 * for the first time since the sentinels named another master, so writes acknowledged by the
 * old one may be missing (fleet_purge.c repeats its recent purges). Commands sent from inside
 * go before any other caller's. */
typedef void (*shared_available_fn)(bool new_master, void *arg);

struct shared_handlers {
  shared_message_fn message;
  shared_subscribed_fn subscribed;
  shared_available_fn available;
  void *arg;
};

/* Connects (on the loop, not within this call) to cfg->shared_addr, or to the master that
 * cfg->sentinels name, with the password (NULL or "": no AUTH), and subscribes to channel;
 * sentinel_password is the sentinels' AUTH (NULL or "": none). Both are copied, and wiped at
 * free. cfg is read live (timeout_ms follows a reload). NULL when out of memory. */
struct shared *shared_new(struct event_base *base, const struct config *cfg, const char *password,
                          const char *sentinel_password, const char *channel,
                          const struct shared_handlers *handlers, struct stats *stats);
/* Frees both connections: every command not answered yet is answered NULL first. Accepts NULL. */
void shared_free(struct shared *shared);

/* Sends one command (argv with lengths: binary safe). true: done will be called exactly once,
 * never inside this call. false: the tier is unavailable (not connected, circuit open, or out of
 * memory) and done is never called. done may be NULL: the reply is not wanted. */
bool shared_command(struct shared *shared, shared_reply_fn done, void *arg, int argc,
                    const char **argv, const size_t *argv_len);

/* The command connection is ready and its circuit closed. */
bool shared_available(const struct shared *shared);
/* The subscriber connection has its SUBSCRIBE confirmed: Redis sends it every message published
 * on the channel from then on. */
bool shared_subscribed(const struct shared *shared);
/* NULL while both connections are up; else why one is not, for /healthz ("redis 127.0.0.1:6379:
 * Connection refused", "... : subscription down: purges from other hosts are missed"). */
const char *shared_problem(struct shared *shared);
/* Commands sent and not answered yet. */
size_t shared_pending(const struct shared *shared);
/* The master in use ("127.0.0.1:6379"), or "" while the sentinels have named none. */
const char *shared_master(const struct shared *shared);
/* Milliseconds the command connection has not been ready since the start, the current outage
 * included (the /stats counter shared_unavailable_seconds counts it in whole seconds). */
uint64_t shared_unavailable_ms(const struct shared *shared);
/* With sentinels: NULL while one is connected and subscribed; else why not ("sentinel
 * 127.0.0.1:26379: Connection refused"): a failover would be followed late or not at all. */
const char *shared_sentinel_problem(struct shared *shared);

#endif
