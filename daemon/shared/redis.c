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
#include "stats.h"

/* One connection to Redis and its circuit. */
struct link {
  struct shared *owner;
  const char *role;                 /* "commands" or "subscriber", for messages */
  bool subscriber;
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
  char channel[128];
  char address[160];                /* for messages: "127.0.0.1:6379" or "unix:/run/redis.sock" */
  struct link commands, subscriber;
  bool freeing;                     /* shared_free runs: no command is accepted */
  char problem_text[600];
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
  enum { COMMAND_CALLER, COMMAND_AUTH, COMMAND_PING, COMMAND_SUBSCRIBE } kind;
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
  int64_t delay = link->breaker.state == BREAKER_OPEN && link->breaker.open_until_ms > now
                      ? link->breaker.open_until_ms - now
                      : SHARED_RECONNECT_MS;
  struct timeval tv = clock_timeval_of_ms(delay);
  event_add(link->retry_timer, &tv);
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
  link->ready = false;
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
    if (!link->logged_down)
      log_warning("shared tier: redis %s (%s) is unavailable: %s; serving from the local cache "
                  "and the upstream without it, retrying", shared->address, link->role,
                  link->problem);
    link->logged_down = true;
    shared->stats->shared_breaker_opens++;
    link_drop(link, NULL);
  }
}

static void link_ready(struct link *link) {
  link->ready = true;
  link->problem[0] = '\0';
  link_note(link, false, NULL);
  if (link->logged_down)
    log_info("shared tier: redis %s (%s) is available again", link->owner->address, link->role);
  else if (!link->announced)
    log_info("shared tier: connected to redis %s (%s)", link->owner->address, link->role);
  link->logged_down = false;
  link->announced = true;
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
  link->ready = false;
  link->owner->stats->shared_disconnects++;
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
  link->ready = false; /* before the caller runs: it must not send on this connection */
  link_note(link, true, "a command took longer than [shared] timeout_ms");
  link_drop(link, "a command took longer than [shared] timeout_ms");
  if (command->kind == COMMAND_CALLER && command->done)
    command->done(NULL, command->arg);
}

static void handshake_reply(struct link *link, struct command *command, const redisReply *reply,
                            const char *lost) {
  char why[256];
  if (link->handshake_failed)
    return;
  if (!reply) {
    snprintf(why, sizeof(why), "%s", lost);
  } else if (reply->type == REDIS_REPLY_ERROR) {
    bool noauth = strncmp(reply->str, "NOAUTH", 6) == 0;
    snprintf(why, sizeof(why), "%s: %.160s%s", command->kind == COMMAND_AUTH ? "AUTH refused"
                                               : "handshake refused", reply->str,
             noauth && !link->owner->password_len ? " (set [shared] password_file)" : "");
  } else if (command->kind == COMMAND_AUTH) {
    return; /* +OK: the PING or SUBSCRIBE behind it finishes the handshake */
  } else if (command->kind == COMMAND_PING && reply->type == REDIS_REPLY_STATUS &&
             strcmp(reply->str, "PONG") == 0) {
    link_ready(link);
    return;
  } else if (command->kind == COMMAND_SUBSCRIBE && reply->type == REDIS_REPLY_ARRAY &&
             reply->elements == 3 && reply->element[0]->type == REDIS_REPLY_STRING &&
             strcmp(reply->element[0]->str, "subscribe") == 0) {
    bool again = link->subscribed_before;
    link->subscribed_before = true;
    link_ready(link);
    if (link->owner->handlers.subscribed)
      link->owner->handlers.subscribed(again, link->owner->handlers.arg);
    return;
  } else {
    snprintf(why, sizeof(why), "an unexpected answer to the handshake: not a Redis server?");
  }
  link->handshake_failed = true;
  link_note(link, true, why);
  link_drop(link, why);
}

/* A message on the subscribed connection: ["message", channel, payload]. */
static void subscription_message(struct link *link, const redisReply *reply) {
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
      reply->element[0]->type != REDIS_REPLY_STRING ||
      strcmp(reply->element[0]->str, "message") != 0 ||
      reply->element[2]->type != REDIS_REPLY_STRING)
    return;
  struct shared *shared = link->owner;
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
    link->ready = false;
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

static void send_handshake(struct link *link) {
  struct shared *shared = link->owner;
  bool sent = true;
  if (shared->password_len) {
    const char *argv[] = {"AUTH", shared->password};
    size_t len[] = {4, shared->password_len};
    sent = send_raw(link, COMMAND_AUTH, NULL, NULL, 2, argv, len);
  }
  if (link->subscriber) {
    const char *argv[] = {"SUBSCRIBE", shared->channel};
    size_t len[] = {9, strlen(shared->channel)};
    sent = sent && send_raw(link, COMMAND_SUBSCRIBE, NULL, NULL, 2, argv, len);
  } else {
    const char *argv[] = {"PING"};
    size_t len[] = {4};
    sent = sent && send_raw(link, COMMAND_PING, NULL, NULL, 1, argv, len);
  }
  if (!sent) {
    link_note(link, true, "out of memory");
    link_drop(link, "out of memory");
  }
}

static void link_connect(struct link *link) {
  struct shared *shared = link->owner;
  const struct listen_addr *addr = &shared->cfg->shared_addr;
  redisAsyncContext *ctx = addr->kind == LISTEN_UNIX ? redisAsyncConnectUnix(addr->path)
                                                     : redisAsyncConnect(addr->host, addr->port);
  if (!ctx || ctx->err) {
    const char *why = ctx ? ctx->errstr : "out of memory";
    link_note(link, true, why);
    if (ctx)
      redisAsyncFree(ctx); /* never attached: no hook runs */
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

static int link_init(struct shared *shared, struct link *link, const char *role, bool subscriber) {
  link->owner = shared;
  link->role = role;
  link->subscriber = subscriber;
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

struct shared *shared_new(struct event_base *base, const struct config *cfg, const char *password,
                          const char *channel, const struct shared_handlers *handlers,
                          struct stats *stats) {
  struct shared *shared = calloc(1, sizeof(*shared));
  if (!shared)
    return NULL;
  shared->base = base;
  shared->cfg = cfg;
  shared->stats = stats;
  shared->handlers = *handlers;
  snprintf(shared->channel, sizeof(shared->channel), "%s", channel);
  if (password && password[0]) {
    snprintf(shared->password, sizeof(shared->password), "%s", password);
    shared->password_len = strlen(shared->password);
    log_add_secret(shared->password, shared->password_len);
  }
  const struct listen_addr *addr = &cfg->shared_addr;
  if (addr->kind == LISTEN_UNIX)
    snprintf(shared->address, sizeof(shared->address), "unix:%s", addr->path);
  else
    snprintf(shared->address, sizeof(shared->address), strchr(addr->host, ':') ? "[%s]:%u" : "%s:%u",
             addr->host, addr->port);
  if (link_init(shared, &shared->commands, "commands", false) != 0 ||
      link_init(shared, &shared->subscriber, "subscriber", true) != 0) {
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
  if (shared->password_len)
    log_remove_secret(shared->password);
  explicit_bzero(shared->password, sizeof(shared->password));
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
  if (!shared_available(s))
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

size_t shared_pending(const struct shared *shared) {
  return shared ? shared->commands.pending : 0;
}
