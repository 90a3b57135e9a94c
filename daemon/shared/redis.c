/* redis: the client of the fleet's Redis (redis.h says how it is driven and why). */
#include "redis.h"

#include <event2/event.h>
#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "retry_breaker.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "sentinel.h"
#include "stats.h"

#define SENTINEL_CHANNEL "+switch-master"

/* What a connection is for. */
enum link_kind {
  LINK_COMMANDS,   /* to the master: the callers' commands */
  LINK_SUBSCRIBER, /* to the master: subscribed to the fleet's channel */
  LINK_SENTINEL,   /* to one sentinel: the master's address, subscribed to its switches */
};

/* One connection to Redis (or a sentinel) and its circuit. */
struct link {
  struct shared *owner;
  const char *role;                 /* "commands", "subscriber" or "sentinel", for messages */
  enum link_kind kind;
  redisAsyncContext *ctx;           /* NULL while disconnected; hiredis frees it (cleanup hook) */
  struct event *read_event, *write_event; /* assigned to each new socket, deleted at cleanup */
  struct event *drop_event;         /* drops ctx from our own callback (link_drop) */
  struct event *retry_timer;        /* the next connection attempt */
  bool ready;                       /* the handshake succeeded and nothing has failed since */
  bool probe;                       /* this attempt is the circuit's half-open probe */
  bool subscribed_before;           /* for shared_handlers.subscribed(again) */
  bool announced;                   /* "connected" was logged once */
  bool logged_down;                 /* the outage's one warning was written */
  bool handshake_failed;            /* this connection's handshake failed: the replies behind
                                       the first refusal (a PING after a refused AUTH) say less */
  bool reconnect_now;               /* the next attempt goes without the usual delay (a new
                                       master, or another sentinel to ask) */
  struct breaker breaker;
  size_t pending;                   /* commands sent, their reply callback not yet run */
  char problem[256];                /* why it is not ready; empty when ready */
};

struct shared {
  struct event_base *base;
  const struct config *cfg;
  struct stats *stats;
  struct shared_handlers handlers;
  char password[SHARED_PASSWORD_MAX + 1];
  size_t password_len;
  char sentinel_password[SHARED_PASSWORD_MAX + 1];
  size_t sentinel_password_len;
  char channel[128];
  /* The master: cfg->shared_addr, or the sentinels' latest answer (master_known). */
  bool sentinel_mode;
  struct listen_addr master;
  bool master_known;
  struct listen_addr ready_master;  /* where the command connection was last ready (port 0:
                                       nowhere yet): a ready one elsewhere is a switch followed */
  char address[160];                /* the master's, for messages: "127.0.0.1:6379" or
                                       "unix:/run/redis.sock"; "" while none is known */
  size_t sentinel_next;             /* cfg->sentinels' index the sentinel connection asks next */
  char sentinel_address[80];        /* the one it is on, for messages */
  struct link commands, subscriber, sentinel;
  int64_t unavailable_since_ms;     /* -1 while the command connection is ready */
  uint64_t unavailable_total_ms;    /* earlier outages */
  bool freeing;                     /* shared_free runs: no command is accepted */
  char problem_text[600];
  char sentinel_problem_text[400];
};

/* One command in flight. It lives until hiredis runs its reply callback (a reply, or NULL when
 * the connection goes), even after its timer answered the caller. */
struct command {
  struct link *link;
  shared_reply_fn done;
  void *arg;
  struct event *timer;
  bool answered;                    /* the caller has had its answer (a timeout): the reply, when
                                       it comes, only frees this */
  enum { COMMAND_CALLER, COMMAND_AUTH, COMMAND_PING, COMMAND_ROLE, COMMAND_SENTINEL_MASTER,
         COMMAND_SUBSCRIBE } kind;
};

static const struct breaker_settings CIRCUIT = {.failures = SHARED_FAILURES_TO_OPEN,
                                                .cooldown_ms = SHARED_COOLDOWN_MS,
                                                .cooldown_cap_ms = SHARED_COOLDOWN_CAP_MS};

static void link_connect(struct link *link);

/* ---- the connection's life ------------------------------------------------------------- */

static void arm_retry(struct link *link) {
  if (link->owner->freeing)
    return;
  int64_t now = clock_monotonic_ms();
  int64_t delay = link->reconnect_now ? 0
                  : link->breaker.state == BREAKER_OPEN && link->breaker.open_until_ms > now
                      ? link->breaker.open_until_ms - now
                      : SHARED_RECONNECT_MS;
  link->reconnect_now = false;
  struct timeval tv = clock_timeval_of_ms(delay);
  event_add(link->retry_timer, &tv);
}

/* The connection can no longer take commands; the command connection's outage starts. */
static void link_not_ready(struct link *link) {
  struct shared *shared = link->owner;
  if (link->kind == LINK_COMMANDS && shared->unavailable_since_ms < 0)
    shared->unavailable_since_ms = clock_monotonic_ms();
  link->ready = false;
}

static void on_retry(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct link *link = arg;
  if (link->ctx || link->owner->freeing)
    return;
  enum breaker_admission admission = breaker_admit(&link->breaker, &CIRCUIT, clock_monotonic_ms());
  if (admission == BREAKER_REFUSE_OPEN || admission == BREAKER_REFUSE_PAUSED) {
    arm_retry(link);
    return;
  }
  link->probe = admission == BREAKER_ADMIT_PROBE;
  link_connect(link);
}

/* Drops the connection, from the next turn of the loop: never inside a hiredis callback. */
static void link_drop(struct link *link, const char *why) {
  link_not_ready(link);
  if (why)
    snprintf(link->problem, sizeof(link->problem), "%s", why);
  if (link->ctx)
    event_active(link->drop_event, EV_TIMEOUT, 0);
}

static void on_drop(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct link *link = arg;
  if (link->ctx)
    redisAsyncFree(link->ctx); /* runs every pending callback with NULL, then cleanup_hook */
}

/* The result of a command or a handshake for the circuit: logs the outage once when it opens
 * (and drops the connection), and the recovery once. */
static void link_note(struct link *link, bool failed, const char *why) {
  struct shared *shared = link->owner;
  bool probe = link->probe;
  link->probe = false;
  long unused;
  enum breaker_event event = breaker_note(&link->breaker, &CIRCUIT, clock_monotonic_ms(), probe,
                                          false, failed, -1, &unused);
  if (failed && why)
    snprintf(link->problem, sizeof(link->problem), "%s", why);
  if (event == BREAKER_EVENT_OPENED) {
    if (!link->logged_down && link->kind == LINK_SENTINEL)
      log_warning("shared tier: sentinel %s is unavailable: %s; asking the next one",
                  shared->sentinel_address, link->problem);
    else if (!link->logged_down)
      log_warning("shared tier: redis %s (%s) is unavailable: %s; serving from the local cache "
                  "and the upstream without it, retrying", shared->address, link->role,
                  link->problem);
    link->logged_down = true;
    shared->stats->shared_breaker_opens++;
    link_drop(link, NULL);
  }
}

static const char *link_peer(const struct link *link) {
  return link->kind == LINK_SENTINEL ? link->owner->sentinel_address : link->owner->address;
}

/* The command connection is ready: its outage ends, and the fleet is told (first). */
static void commands_ready(struct shared *shared) {
  int64_t now = clock_monotonic_ms();
  if (shared->unavailable_since_ms >= 0)
    shared->unavailable_total_ms += (uint64_t)(now - shared->unavailable_since_ms);
  shared->unavailable_since_ms = -1;
  bool new_master = false;
  if (shared->sentinel_mode) {
    new_master = shared->ready_master.kind == LISTEN_TCP && shared->ready_master.port &&
                 !sentinel_same_address(&shared->ready_master, &shared->master);
    if (new_master) {
      char old[80];
      sentinel_format_address(&shared->ready_master, old, sizeof(old));
      shared->stats->shared_switches++;
      log_warning("shared tier: sharing through the new master %s of %s (was %s)",
                  shared->address, shared->cfg->sentinel_master, old);
    }
    shared->ready_master = shared->master;
  }
  if (shared->handlers.available)
    shared->handlers.available(new_master, shared->handlers.arg);
}

static void link_ready(struct link *link) {
  link->ready = true;
  link->problem[0] = '\0';
  link_note(link, false, NULL);
  const char *what = link->kind == LINK_SENTINEL ? "sentinel" : "redis";
  if (link->logged_down)
    log_info("shared tier: %s %s (%s) is available again", what, link_peer(link), link->role);
  else if (!link->announced)
    log_info("shared tier: connected to %s %s (%s)", what, link_peer(link), link->role);
  link->logged_down = false;
  link->announced = true;
  if (link->kind == LINK_COMMANDS)
    commands_ready(link->owner);
}

/* Another sentinel is asked where the master is: the connection to this one goes (when it is
 * up; one being made asks anyway), and the next one in the list is asked at once. */
static void sentinel_ask_again(struct shared *shared) {
  struct link *link = &shared->sentinel;
  if (!shared->sentinel_mode || shared->freeing || !link->ctx || !link->ready)
    return;
  link->reconnect_now = true;
  link_drop(link, "asking another sentinel");
}

/* The sentinels named this master: the master's connections go to it, at once and with their
 * circuits closed (the old master's failures say nothing of the new one). */
static void set_master(struct shared *shared, const struct listen_addr *addr) {
  if (shared->master_known && sentinel_same_address(&shared->master, addr))
    return;
  shared->master = *addr;
  shared->master_known = true;
  sentinel_format_address(addr, shared->address, sizeof(shared->address));
  log_info("shared tier: sentinel %s names %s as master %s", shared->sentinel_address,
           shared->address, shared->cfg->sentinel_master);
  struct link *links[] = {&shared->commands, &shared->subscriber};
  for (size_t i = 0; i < 2; i++) {
    struct link *link = links[i];
    link->breaker = (struct breaker){.state = BREAKER_CLOSED};
    link->probe = false;
    link->reconnect_now = true;
    if (link->ctx) {
      link_drop(link, "the sentinels named another master");
    } else {
      event_del(link->retry_timer);
      arm_retry(link);
    }
  }
}

/* hiredis's event hooks: the read and write events are added and deleted as it asks. */
static void hook_add_read(void *data) { event_add(((struct link *)data)->read_event, NULL); }
static void hook_del_read(void *data) { event_del(((struct link *)data)->read_event); }
static void hook_add_write(void *data) { event_add(((struct link *)data)->write_event, NULL); }
static void hook_del_write(void *data) { event_del(((struct link *)data)->write_event); }
/* hiredis is freeing the context (our drop, an error it met, or a failed connect): from here on
 * it is gone. Only deletes events; the next attempt is armed. */
static void hook_cleanup(void *data) {
  struct link *link = data;
  event_del(link->read_event);
  event_del(link->write_event);
  event_del(link->drop_event);
  if (link->ctx && link->ctx->errstr[0] && !link->problem[0])
    snprintf(link->problem, sizeof(link->problem), "%s", link->ctx->errstr);
  if (!link->problem[0])
    snprintf(link->problem, sizeof(link->problem), "connection closed");
  link->ctx = NULL;
  link_not_ready(link);
  struct shared *shared = link->owner;
  shared->stats->shared_disconnects++;
  if (link->kind == LINK_SENTINEL)
    shared->sentinel_next = (shared->sentinel_next + 1) % shared->cfg->sentinel_count;
  else if (!link->reconnect_now) /* lost, not left for a new master: is there one? */
    sentinel_ask_again(shared);
  arm_retry(link);
}

static void on_readable(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct link *link = arg;
  if (link->ctx)
    redisAsyncHandleRead(link->ctx); /* may free the context: link->ctx is NULL after it */
}

static void on_writable(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct link *link = arg;
  if (link->ctx)
    redisAsyncHandleWrite(link->ctx);
}

/* ---- commands ---------------------------------------------------------------------------- */

static void free_command(struct command *command) {
  if (command->timer)
    event_free(command->timer);
  free(command);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct command *command = arg;
  struct link *link = command->link;
  command->answered = true;
  link->owner->stats->shared_errors++;
  link_not_ready(link); /* before the caller runs: it must not send on this connection */
  link_note(link, true, "a command took longer than [shared] timeout_ms");
  link_drop(link, "a command took longer than [shared] timeout_ms");
  if (command->kind == COMMAND_CALLER && command->done)
    command->done(NULL, command->arg);
}

static bool is_string(const redisReply *reply) {
  return reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS;
}

/* ROLE's answer: true when the server is a master (the command connection is then ready; the
 * subscriber's SUBSCRIBE is still to come). Else why not into why. */
static bool role_is_master(const redisReply *reply, char *why, size_t len) {
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 || !is_string(reply->element[0])) {
    snprintf(why, len, "an unexpected answer to ROLE: not a Redis server?");
    return false;
  }
  if (strcmp(reply->element[0]->str, "master") == 0)
    return true;
  snprintf(why, len, "the server is a %.16s, not the master the sentinels named: asking another "
           "sentinel", reply->element[0]->str);
  return false;
}

/* SENTINEL get-master-addr-by-name's answer: true when it named a usable address (followed). */
static bool sentinel_named(struct link *link, const redisReply *reply, char *why, size_t len) {
  struct shared *shared = link->owner;
  struct listen_addr addr;
  if (reply->type == REDIS_REPLY_NIL) {
    snprintf(why, len, "the sentinel monitors no master named %s", shared->cfg->sentinel_master);
    return false;
  }
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 || !is_string(reply->element[0]) ||
      !is_string(reply->element[1])) {
    snprintf(why, len, "an unexpected answer to SENTINEL get-master-addr-by-name: not a sentinel?");
    return false;
  }
  const redisReply *host = reply->element[0], *port = reply->element[1];
  if (!sentinel_parse_address(host->str, host->len, port->str, port->len, &addr)) {
    snprintf(why, len, "the sentinel names '%.64s' port '%.8s', not a numeric address (a name "
             "would need a lookup on the loop; set resolve-hostnames no)", host->str, port->str);
    return false;
  }
  set_master(shared, &addr);
  return true;
}

static void handshake_reply(struct link *link, struct command *command, const redisReply *reply,
                            const char *lost) {
  char why[256];
  if (link->handshake_failed)
    return;
  if (!reply) {
    snprintf(why, sizeof(why), "%s", lost);
  } else if (reply->type == REDIS_REPLY_ERROR) {
    bool sentinel = link->kind == LINK_SENTINEL;
    bool noauth = strncmp(reply->str, "NOAUTH", 6) == 0;
    bool no_password = sentinel ? !link->owner->sentinel_password_len : !link->owner->password_len;
    snprintf(why, sizeof(why), "%s: %.160s%s", command->kind == COMMAND_AUTH ? "AUTH refused"
                                               : "handshake refused", reply->str,
             !noauth || !no_password ? ""
             : sentinel              ? " (set [shared] sentinel_password_file)"
                                     : " (set [shared] password_file)");
  } else if (command->kind == COMMAND_AUTH) {
    return; /* +OK: the PING or SUBSCRIBE behind it finishes the handshake */
  } else if (command->kind == COMMAND_PING && reply->type == REDIS_REPLY_STATUS &&
             strcmp(reply->str, "PONG") == 0) {
    link_ready(link);
    return;
  } else if (command->kind == COMMAND_ROLE) {
    if (role_is_master(reply, why, sizeof(why))) {
      if (link->kind == LINK_COMMANDS)
        link_ready(link);
      return;
    }
    log_warning_limited("shared tier: redis %s (%s): %s", link_peer(link), link->role, why);
  } else if (command->kind == COMMAND_SENTINEL_MASTER) {
    if (sentinel_named(link, reply, why, sizeof(why)))
      return; /* the SUBSCRIBE behind it finishes the handshake */
    log_warning_limited("shared tier: sentinel %s: %s", link_peer(link), why);
  } else if (command->kind == COMMAND_SUBSCRIBE && reply->type == REDIS_REPLY_ARRAY &&
             reply->elements == 3 && reply->element[0]->type == REDIS_REPLY_STRING &&
             strcmp(reply->element[0]->str, "subscribe") == 0) {
    bool again = link->subscribed_before;
    link->subscribed_before = true;
    link_ready(link);
    /* The fleet's channel only: the sentinel's subscription carries no purge. */
    if (link->kind == LINK_SUBSCRIBER && link->owner->handlers.subscribed)
      link->owner->handlers.subscribed(again, link->owner->handlers.arg);
    return;
  } else {
    snprintf(why, sizeof(why), "an unexpected answer to the handshake: not a Redis server?");
  }
  link->handshake_failed = true;
  link_note(link, true, why);
  link_drop(link, why);
}

/* A message on a subscribed connection: ["message", channel, payload]. On the sentinel's, a
 * +switch-master of this master is followed; anything else there is ignored. */
static void subscription_message(struct link *link, const redisReply *reply) {
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
      reply->element[0]->type != REDIS_REPLY_STRING ||
      strcmp(reply->element[0]->str, "message") != 0 ||
      reply->element[2]->type != REDIS_REPLY_STRING)
    return;
  struct shared *shared = link->owner;
  struct listen_addr addr;
  if (link->kind == LINK_SENTINEL) {
    if (sentinel_parse_switch(reply->element[2]->str, reply->element[2]->len,
                              shared->cfg->sentinel_master, &addr))
      set_master(shared, &addr);
    return;
  }
  if (shared->handlers.message)
    shared->handlers.message(reply->element[2]->str, reply->element[2]->len, shared->handlers.arg);
}

/* Every reply, and the NULL that hiredis gives each command still waiting when the connection
 * goes. Runs inside hiredis: it never frees the context (link_drop defers that). */
static void on_reply(redisAsyncContext *ctx, void *raw_reply, void *privdata) {
  struct command *command = privdata;
  struct link *link = command->link;
  const redisReply *reply = raw_reply;
  const char *lost = ctx->errstr[0] ? ctx->errstr : "connection lost";
  if (command->kind == COMMAND_SUBSCRIBE && command->answered) {
    if (!reply) {
      link->pending--;
      free_command(command);
    } else {
      subscription_message(link, reply);
    }
    return;
  }
  if (command->kind != COMMAND_SUBSCRIBE || !reply)
    link->pending--;
  if (command->answered) {
    free_command(command);
    return;
  }
  event_del(command->timer);
  if (!reply)
    link_not_ready(link);
  if (command->kind != COMMAND_CALLER) {
    handshake_reply(link, command, reply, lost);
    if (command->kind == COMMAND_SUBSCRIBE && reply) {
      command->answered = true; /* stays as the subscription's callback until the connection goes */
      return;
    }
    free_command(command);
    return;
  }
  bool failed = !reply || reply->type == REDIS_REPLY_ERROR;
  if (failed)
    link->owner->stats->shared_errors++;
  link_note(link, failed, failed ? (reply ? reply->str : lost) : NULL);
  if (command->done)
    command->done(failed ? NULL : reply, command->arg);
  free_command(command);
}

static bool send_raw(struct link *link, int kind, shared_reply_fn done, void *arg, int argc,
                     const char **argv, const size_t *argv_len) {
  struct command *command = calloc(1, sizeof(*command));
  if (!command)
    return false;
  command->link = link;
  command->done = done;
  command->arg = arg;
  command->kind = kind;
  command->timer = evtimer_new(link->owner->base, on_timeout, command);
  if (!command->timer ||
      redisAsyncCommandArgv(link->ctx, on_reply, command, argc, argv, argv_len) != REDIS_OK) {
    free_command(command);
    return false;
  }
  link->pending++;
  struct timeval tv = clock_timeval_of_ms(link->owner->cfg->shared_timeout_ms);
  event_add(command->timer, &tv);
  return true;
}

/* Pipelined, in order: [AUTH]; to a sentinel, where the master is and SUBSCRIBE to its
 * switches; to the master, ROLE when the sentinels named it (else PING for the command
 * connection), and the subscriber's SUBSCRIBE. */
static void send_handshake(struct link *link) {
  struct shared *shared = link->owner;
  bool sent = true;
  bool sentinel = link->kind == LINK_SENTINEL;
  const char *password = sentinel ? shared->sentinel_password : shared->password;
  size_t password_len = sentinel ? shared->sentinel_password_len : shared->password_len;
  if (password_len) {
    const char *argv[] = {"AUTH", password};
    size_t len[] = {4, password_len};
    sent = send_raw(link, COMMAND_AUTH, NULL, NULL, 2, argv, len);
  }
  if (sentinel) {
    const char *ask[] = {"SENTINEL", "get-master-addr-by-name", shared->cfg->sentinel_master};
    size_t ask_len[] = {8, 23, strlen(shared->cfg->sentinel_master)};
    const char *subscribe[] = {"SUBSCRIBE", SENTINEL_CHANNEL};
    size_t subscribe_len[] = {9, sizeof(SENTINEL_CHANNEL) - 1};
    sent = sent && send_raw(link, COMMAND_SENTINEL_MASTER, NULL, NULL, 3, ask, ask_len) &&
           send_raw(link, COMMAND_SUBSCRIBE, NULL, NULL, 2, subscribe, subscribe_len);
  } else if (shared->sentinel_mode || link->kind == LINK_COMMANDS) {
    const char *argv[] = {shared->sentinel_mode ? "ROLE" : "PING"};
    size_t len[] = {4};
    sent = sent && send_raw(link, shared->sentinel_mode ? COMMAND_ROLE : COMMAND_PING, NULL, NULL,
                            1, argv, len);
  }
  if (link->kind == LINK_SUBSCRIBER) {
    const char *argv[] = {"SUBSCRIBE", shared->channel};
    size_t len[] = {9, strlen(shared->channel)};
    sent = sent && send_raw(link, COMMAND_SUBSCRIBE, NULL, NULL, 2, argv, len);
  }
  if (!sent) {
    link_note(link, true, "out of memory");
    link_drop(link, "out of memory");
  }
}

static void link_connect(struct link *link) {
  struct shared *shared = link->owner;
  const struct config *cfg = shared->cfg;
  const struct listen_addr *addr = &shared->master;
  if (link->kind == LINK_SENTINEL) {
    addr = &cfg->sentinels[shared->sentinel_next % cfg->sentinel_count];
    sentinel_format_address(addr, shared->sentinel_address, sizeof(shared->sentinel_address));
  } else if (!shared->master_known) {
    snprintf(link->problem, sizeof(link->problem), "no sentinel has named master %s yet",
             cfg->sentinel_master);
    return; /* set_master starts it */
  }
  redisAsyncContext *ctx = addr->kind == LISTEN_UNIX ? redisAsyncConnectUnix(addr->path)
                                                     : redisAsyncConnect(addr->host, addr->port);
  if (!ctx || ctx->err) {
    const char *why = ctx ? ctx->errstr : "out of memory";
    link_note(link, true, why);
    if (ctx)
      redisAsyncFree(ctx); /* never attached: no hook runs */
    if (link->kind == LINK_SENTINEL)
      shared->sentinel_next = (shared->sentinel_next + 1) % cfg->sentinel_count;
    arm_retry(link);
    return;
  }
  link->ctx = ctx;
  link->handshake_failed = false;
  snprintf(link->problem, sizeof(link->problem), "connecting");
  ctx->data = link;
  ctx->ev.data = link;
  ctx->ev.addRead = hook_add_read;
  ctx->ev.delRead = hook_del_read;
  ctx->ev.addWrite = hook_add_write;
  ctx->ev.delWrite = hook_del_write;
  ctx->ev.cleanup = hook_cleanup;
  event_assign(link->read_event, shared->base, ctx->c.fd, EV_READ | EV_PERSIST, on_readable, link);
  event_assign(link->write_event, shared->base, ctx->c.fd, EV_WRITE | EV_PERSIST, on_writable,
               link);
  event_add(link->read_event, NULL);
  event_add(link->write_event, NULL); /* the connect completes on the first write event */
  send_handshake(link);
}

/* ---- the module ---------------------------------------------------------------------------- */

static int link_init(struct shared *shared, struct link *link, const char *role,
                     enum link_kind kind) {
  link->owner = shared;
  link->role = role;
  link->kind = kind;
  link->read_event = event_new(shared->base, -1, 0, on_readable, link);
  link->write_event = event_new(shared->base, -1, 0, on_writable, link);
  link->drop_event = event_new(shared->base, -1, 0, on_drop, link);
  link->retry_timer = evtimer_new(shared->base, on_retry, link);
  snprintf(link->problem, sizeof(link->problem), "connecting");
  if (!link->read_event || !link->write_event || !link->drop_event || !link->retry_timer)
    return -1;
  struct timeval now = {0, 0};
  return event_add(link->retry_timer, &now);
}

static void link_free(struct link *link) {
  if (link->ctx)
    redisAsyncFree(link->ctx);
  if (link->read_event)
    event_free(link->read_event);
  if (link->write_event)
    event_free(link->write_event);
  if (link->drop_event)
    event_free(link->drop_event);
  if (link->retry_timer)
    event_free(link->retry_timer);
}

/* A password kept for AUTH (and kept out of every log line); len 0: none. */
static void keep_password(const char *password, char out[SHARED_PASSWORD_MAX + 1], size_t *len) {
  if (password && password[0]) {
    snprintf(out, SHARED_PASSWORD_MAX + 1, "%s", password);
    *len = strlen(out);
    log_add_secret(out, *len);
  }
}

static void forget_password(char out[SHARED_PASSWORD_MAX + 1], size_t len) {
  if (len)
    log_remove_secret(out);
  explicit_bzero(out, SHARED_PASSWORD_MAX + 1);
}

struct shared *shared_new(struct event_base *base, const struct config *cfg, const char *password,
                          const char *sentinel_password, const char *channel,
                          const struct shared_handlers *handlers, struct stats *stats) {
  struct shared *shared = calloc(1, sizeof(*shared));
  if (!shared)
    return NULL;
  shared->base = base;
  shared->cfg = cfg;
  shared->stats = stats;
  shared->handlers = *handlers;
  shared->unavailable_since_ms = clock_monotonic_ms();
  snprintf(shared->channel, sizeof(shared->channel), "%s", channel);
  keep_password(password, shared->password, &shared->password_len);
  keep_password(sentinel_password, shared->sentinel_password, &shared->sentinel_password_len);
  shared->sentinel_mode = cfg->sentinel_count > 0;
  if (!shared->sentinel_mode) {
    shared->master = cfg->shared_addr;
    shared->master_known = true;
    sentinel_format_address(&shared->master, shared->address, sizeof(shared->address));
  }
  if (link_init(shared, &shared->commands, "commands", LINK_COMMANDS) != 0 ||
      link_init(shared, &shared->subscriber, "subscriber", LINK_SUBSCRIBER) != 0 ||
      (shared->sentinel_mode &&
       link_init(shared, &shared->sentinel, "sentinel", LINK_SENTINEL) != 0)) {
    shared_free(shared);
    return NULL;
  }
  return shared;
}

void shared_free(struct shared *shared) {
  if (!shared)
    return;
  shared->freeing = true;
  link_free(&shared->commands);
  link_free(&shared->subscriber);
  link_free(&shared->sentinel);
  forget_password(shared->password, shared->password_len);
  forget_password(shared->sentinel_password, shared->sentinel_password_len);
  free(shared);
}

bool shared_command(struct shared *shared, shared_reply_fn done, void *arg, int argc,
                    const char **argv, const size_t *argv_len) {
  if (!shared || shared->freeing || !shared_available(shared))
    return false;
  return send_raw(&shared->commands, COMMAND_CALLER, done, arg, argc, argv, argv_len);
}

bool shared_available(const struct shared *shared) {
  return shared && shared->commands.ready && shared->commands.ctx &&
         shared->commands.breaker.state == BREAKER_CLOSED;
}

const char *shared_problem(struct shared *s) {
  if (!shared_available(s) && !s->master_known)
    snprintf(s->problem_text, sizeof(s->problem_text), "sentinels: none has named master %s yet "
             "(sentinel %s: %s)", s->cfg->sentinel_master, s->sentinel_address,
             s->sentinel.problem[0] ? s->sentinel.problem : "not connected");
  else if (!shared_available(s))
    snprintf(s->problem_text, sizeof(s->problem_text), "redis %s: %s", s->address,
             s->commands.problem[0] ? s->commands.problem : "not connected");
  else if (!s->subscriber.ready)
    snprintf(s->problem_text, sizeof(s->problem_text), "redis %s: subscription down (%s): purges "
             "from other hosts are not received", s->address,
             s->subscriber.problem[0] ? s->subscriber.problem : "not connected");
  else
    return NULL;
  return s->problem_text;
}

bool shared_subscribed(const struct shared *shared) {
  return shared && shared->subscriber.ready && shared->subscriber.ctx;
}

size_t shared_pending(const struct shared *shared) {
  return shared ? shared->commands.pending : 0;
}

const char *shared_master(const struct shared *shared) {
  return shared && shared->master_known ? shared->address : "";
}

uint64_t shared_unavailable_ms(const struct shared *shared) {
  if (!shared)
    return 0;
  uint64_t total = shared->unavailable_total_ms;
  if (shared->unavailable_since_ms >= 0)
    total += (uint64_t)(clock_monotonic_ms() - shared->unavailable_since_ms);
  return total;
}

const char *shared_sentinel_problem(struct shared *s) {
  if (!s || !s->sentinel_mode || s->sentinel.ready)
    return NULL;
  snprintf(s->sentinel_problem_text, sizeof(s->sentinel_problem_text), "sentinel %s: %s",
           s->sentinel_address, s->sentinel.problem[0] ? s->sentinel.problem : "not connected");
  return s->sentinel_problem_text;
}
