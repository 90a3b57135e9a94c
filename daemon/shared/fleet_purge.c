/* fleet_purge: the shared tier's purges (fleet.h): one entry, or every entry by SCAN and UNLINK,
 * told to every daemon on the channel; and the other hosts' messages (purges, "ready"). */
#include "fleet_internal.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>

#include "cache.h"
#include "clock.h"
#include "creds.h"
#include "flipcached.h"
#include "inflight.h"
#include "log.h"
#include "record.h"
#include "uuid.h"
#include "redis.h"
#include "validate.h"

/* Moves the purge generation on (so that no fetch begun before it writes back: fleet_lock.c's
 * STORE_SCRIPT), deletes one id's entry under every key's name and tells every daemon: {keys
 * deleted, daemons that received it}. A generation of the wrong type is replaced.
 * KEYS: the entries, the generation, the channel. ARGV: the message. */
static const char PURGE_SCRIPT[] =
    "local n = #KEYS - 2 "
    LUA_BUMP_GENERATION("KEYS[n + 1]")
    "local deleted = 0 for i = 1, n do deleted = deleted + redis.call('DEL', KEYS[i]) end "
    "return {deleted, redis.call('PUBLISH', KEYS[n + 2], ARGV[1])}";
/* The first step of a purge of every entry: the generation moves on, and every daemon hears it.
 * KEYS: the generation, the channel. ARGV: the message. Returns the daemons that received it. */
static const char PURGE_ALL_SCRIPT[] =
    LUA_BUMP_GENERATION("KEYS[1]")
    "return redis.call('PUBLISH', KEYS[2], ARGV[1])";

/* ---- purges ------------------------------------------------------------------------------- */

struct purge {
  struct fleet *fleet;
  fleet_purged_fn done;           /* NULL: a repeat, answered to no one */
  void *arg;
  uint64_t serial;                /* its entry in the purge log */
  struct fleet_purge_result result;
  char cursor[32];
  bool announced;                 /* purge-all: the first message has gone */
};

static void catch_up(struct fleet *fleet);

/* ---- the purge log (fleet_internal.h) ----------------------------------------------------- */

static struct logged_purge *logged(struct fleet *fleet, uint64_t serial) {
  for (size_t i = 0; i < fleet->purge_log_len; i++)
    if (fleet->purge_log[i].serial == serial)
      return &fleet->purge_log[i];
  return NULL; /* folded, or covered by a later purge of everything */
}

static bool worth_repeating(const struct logged_purge *entry, int64_t now_ms) {
  return entry->acked_ms == 0 || now_ms - entry->acked_ms < FLEET_PURGE_REPEAT_S * 1000;
}

/* Forgets the acknowledged purges past the repeat window, keeping the order. */
static void prune_log(struct fleet *fleet, int64_t now_ms) {
  size_t kept = 0;
  for (size_t i = 0; i < fleet->purge_log_len; i++)
    if (worth_repeating(&fleet->purge_log[i], now_ms) || fleet->purge_log[i].sending)
      fleet->purge_log[kept++] = fleet->purge_log[i];
  fleet->purge_log_len = kept;
}

/* Remembers a purge (enrollment_id NULL: of everything, which covers every earlier one); its
 * entry, valid until the log next changes. A full log folds into one purge of everything, owed
 * if any of it was. */
static struct logged_purge *log_purge(struct fleet *fleet, const char *enrollment_id) {
  int64_t now = clock_monotonic_ms();
  prune_log(fleet, now);
  if (!enrollment_id) {
    fleet->purge_log_len = 0;
  } else if (fleet->purge_log_len == FLEET_PURGE_LOG) {
    bool owed = false;
    for (size_t i = 0; i < fleet->purge_log_len; i++)
      owed = owed || fleet->purge_log[i].acked_ms == 0;
    log_warning("shared tier: more than %d purges to remember for a repeat: folded into one "
                "purge of every entry", FLEET_PURGE_LOG);
    fleet->purge_log[0] = (struct logged_purge){.serial = ++fleet->purge_serial,
                                                .acked_ms = owed ? 0 : now};
    fleet->purge_log_len = 1;
  }
  struct logged_purge *entry = &fleet->purge_log[fleet->purge_log_len++];
  *entry = (struct logged_purge){.serial = ++fleet->purge_serial};
  snprintf(entry->enrollment_id, sizeof(entry->enrollment_id), "%s",
           enrollment_id ? enrollment_id : "");
  return entry;
}

static void purge_finish(struct purge *purge, const char *error) {
  purge->result.error = error;
  struct logged_purge *entry = logged(purge->fleet, purge->serial);
  if (entry) {
    entry->sending = false;
    entry->acked_ms = error ? 0 : clock_monotonic_ms(); /* failed: owed */
  }
  if (purge->done)
    purge->done(&purge->result, purge->arg);
  free(purge);
}

static void on_purged_one(const redisReply *reply, void *arg) {
  struct purge *purge = arg;
  if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
    purge_finish(purge, "the shared tier failed: other hosts may keep their copies");
    return;
  }
  purge->result.deleted = (uint64_t)reply->element[0]->integer;
  purge->result.notified = (uint64_t)reply->element[1]->integer;
  purge_finish(purge, NULL);
}

static bool send_purge_one(struct fleet *fleet, uint64_t serial, const char *enrollment_id,
                           fleet_purged_fn done, void *arg) {
  struct purge *purge = shared_available(fleet->shared) ? calloc(1, sizeof(*purge)) : NULL;
  if (!purge)
    return false;
  *purge = (struct purge){.fleet = fleet, .done = done, .arg = arg, .serial = serial};
  enum { ARGS_MAX = 3 + SEAL_MAX_KEYS + 3 };
  char entries[SEAL_MAX_KEYS][KEY_MAX], generation[KEY_MAX], key_count[8];
  unsigned char message[SEALED_MESSAGE_MAX];
  const char *argv[ARGS_MAX];
  size_t len[ARGS_MAX];
  int argc = 0;
  size_t keys = fleet->keys.count;
  snprintf(key_count, sizeof(key_count), "%zu", keys + 2);
  argv[argc] = "EVAL", len[argc++] = 4;
  argv[argc] = PURGE_SCRIPT, len[argc++] = sizeof(PURGE_SCRIPT) - 1;
  argv[argc] = key_count, len[argc++] = strlen(key_count);
  fleet_entry_keys(fleet, enrollment_id, entries, argv, len, &argc);
  argv[argc] = generation, len[argc++] = fleet_fixed_key(fleet, "gen", generation);
  argv[argc] = fleet->channel, len[argc++] = strlen(fleet->channel);
  argv[argc] = (const char *)message;
  len[argc++] = fleet_message_of(fleet, "purge", enrollment_id, message);
  if (len[argc - 1] == 0 || !shared_command(fleet->shared, on_purged_one, purge, argc, argv, len)) {
    free(purge);
    return false;
  }
  return true;
}

static void scan_next(struct purge *purge);

static void purge_all_end(struct purge *purge, const char *error) {
  purge->fleet->purging_all--;
  purge_finish(purge, error);
}

static void on_purge_all_published(const redisReply *reply, void *arg) {
  struct purge *purge = arg;
  if (!reply || reply->type != REDIS_REPLY_INTEGER) {
    purge_all_end(purge, "the shared tier failed: other hosts may keep their copies");
    return;
  }
  purge->result.notified = (uint64_t)reply->integer;
  if (!purge->announced) {
    purge->announced = true;
    scan_next(purge);
    return;
  }
  purge_all_end(purge, NULL);
}

/* "purge-all" goes out twice: first, so that every host drops its copies within a round trip;
 * again after the scan, for copies taken from Redis while it ran. */
static bool publish_purge_all(struct purge *purge) {
  struct fleet *fleet = purge->fleet;
  unsigned char message[SEALED_MESSAGE_MAX];
  char generation[KEY_MAX];
  size_t message_len = fleet_message_of(fleet, "purge-all", NULL, message);
  if (message_len == 0)
    return false;
  if (!purge->announced) { /* the first: the generation moves on with it */
    size_t generation_len = fleet_fixed_key(fleet, "gen", generation);
    const char *argv[] = {"EVAL", PURGE_ALL_SCRIPT, "2", generation, fleet->channel,
                          (const char *)message};
    size_t len[] = {4, sizeof(PURGE_ALL_SCRIPT) - 1, 1, generation_len, strlen(fleet->channel),
                    message_len};
    return shared_command(fleet->shared, on_purge_all_published, purge, 6, argv, len);
  }
  const char *argv[] = {"PUBLISH", fleet->channel, (const char *)message};
  size_t len[] = {7, strlen(fleet->channel), message_len};
  return shared_command(fleet->shared, on_purge_all_published, purge, 3, argv, len);
}

static void on_scanned(const redisReply *reply, void *arg) {
  struct purge *purge = arg;
  if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
      reply->element[0]->type != REDIS_REPLY_STRING ||
      reply->element[1]->type != REDIS_REPLY_ARRAY) {
    purge_all_end(purge, "the shared tier failed during the scan: entries may remain in redis");
    return;
  }
  snprintf(purge->cursor, sizeof(purge->cursor), "%s", reply->element[0]->str);
  const redisReply *keys = reply->element[1];
  if (keys->elements > 0) {
    size_t count = keys->elements + 1;
    const char **argv = calloc(count, sizeof(*argv));
    size_t *len = calloc(count, sizeof(*len));
    bool sent = false;
    if (argv && len) {
      argv[0] = "UNLINK";
      len[0] = 6;
      for (size_t i = 0; i < keys->elements; i++) {
        argv[i + 1] = keys->element[i]->str;
        len[i + 1] = keys->element[i]->len;
      }
      sent = shared_command(purge->fleet->shared, NULL, NULL, (int)count, argv, len);
    }
    free(argv);
    free(len);
    if (!sent) {
      purge_all_end(purge, "the shared tier failed during the scan: entries may remain in redis");
      return;
    }
    purge->result.deleted += keys->elements;
  }
  if (strcmp(purge->cursor, "0") == 0) {
    if (!publish_purge_all(purge))
      purge_all_end(purge, "the shared tier failed: other hosts may keep copies");
    return;
  }
  scan_next(purge);
}

static void scan_next(struct purge *purge) {
  struct fleet *fleet = purge->fleet;
  char pattern[KEY_MAX];
  size_t pattern_len = fleet_fixed_key(fleet, "e:*", pattern);
  const char *argv[] = {"SCAN", purge->cursor, "MATCH", pattern, "COUNT", SCAN_COUNT};
  size_t len[] = {4, strlen(purge->cursor), 5, pattern_len, 5, strlen(SCAN_COUNT)};
  if (!shared_command(fleet->shared, on_scanned, purge, 6, argv, len))
    purge_all_end(purge, "the shared tier failed during the scan: entries may remain in redis");
}

static bool send_purge_all(struct fleet *fleet, uint64_t serial, fleet_purged_fn done,
                           void *arg) {
  struct purge *purge = shared_available(fleet->shared) ? calloc(1, sizeof(*purge)) : NULL;
  if (!purge)
    return false;
  *purge = (struct purge){.fleet = fleet, .done = done, .arg = arg, .serial = serial};
  strcpy(purge->cursor, "0");
  if (!publish_purge_all(purge)) {
    free(purge);
    return false;
  }
  fleet->purging_all++;
  return true;
}

/* A logged purge sent (again); false: the tier refused it at once (it stays owed). */
static bool send_logged(struct fleet *fleet, struct logged_purge *entry, fleet_purged_fn done,
                        void *arg) {
  bool sent = entry->enrollment_id[0]
                  ? send_purge_one(fleet, entry->serial, entry->enrollment_id, done, arg)
                  : send_purge_all(fleet, entry->serial, done, arg);
  entry->sending = sent;
  if (!sent)
    entry->acked_ms = 0;
  return sent;
}

/* An admin purge: logged first, so that one the tier cannot take now is owed, not lost. */
static bool purge_through_tier(struct fleet *fleet, const char *enrollment_id,
                               fleet_purged_fn done, void *arg) {
  if (!send_logged(fleet, log_purge(fleet, enrollment_id), done, arg))
    return false;
  fleet->daemon->stats.shared_purges_sent++;
  return true;
}

bool fleet_purge_enrollment(struct fleet *fleet, const char *enrollment_id, fleet_purged_fn done,
                            void *arg) {
  return purge_through_tier(fleet, enrollment_id, done, arg);
}

bool fleet_purge_all(struct fleet *fleet, fleet_purged_fn done, void *arg) {
  return purge_through_tier(fleet, NULL, done, arg);
}

void fleet_on_available(bool new_master, void *arg) {
  struct fleet *fleet = arg;
  int64_t now = clock_monotonic_ms();
  prune_log(fleet, now);
  size_t repeated = 0;
  /* A send may fold nothing and log nothing: the log does not move under this loop. */
  for (size_t i = 0; i < fleet->purge_log_len; i++) {
    struct logged_purge *entry = &fleet->purge_log[i];
    if (entry->sending || (entry->acked_ms != 0 && !new_master))
      continue;
    if (send_logged(fleet, entry, NULL, NULL))
      repeated++;
  }
  fleet->daemon->stats.shared_purges_repeated += repeated;
  if (repeated)
    log_info("shared tier: %zu purge%s sent again to redis %s (%s)", repeated,
             repeated == 1 ? "" : "s", shared_master(fleet->shared),
             new_master ? "a new master may have lost the recent ones" : "owed while it was away");
  catch_up(fleet); /* a hello that waited for the command connection */
}

/* ---- catching up: "hello" ------------------------------------------------------------------ */

/* Publishes each ARGV on the channel KEYS[1], in order. */
static const char CATCH_UP_SCRIPT[] =
    "for i = 1, #ARGV do redis.call('PUBLISH', KEYS[1], ARGV[i]) end return #ARGV";

/* A logged purge that was published, or is being, within the repeat window: what a host not
 * subscribed then has missed. An owed one is not yet: it goes to everyone when the tier is back. */
static bool recently_published(const struct logged_purge *entry, int64_t now_ms) {
  return entry->sending ||
         (entry->acked_ms != 0 && now_ms - entry->acked_ms < FLEET_PURGE_REPEAT_S * 1000);
}

static void on_caught_up(const redisReply *reply, void *arg) {
  (void)reply; /* failed: the connection is gone, and the next subscription says hello again */
  struct fleet *fleet = arg; /* outlives the command: fleet_free frees the tier first */
  fleet->catch_up_out = false;
  catch_up(fleet); /* a hello heard meanwhile */
}

/* Once this host is subscribed and can send, its "hello" goes out with its recent purges
 * published again; another host's hello is answered with those purges alone. Why both: of two
 * hosts, the one subscribed second either hears the other's purges and repeats (sent after the
 * other subscribed), or says hello after subscribing, which the other, subscribed by then,
 * answers. So a host that was restarted, lost its subscription, or moved to a new master later
 * than the host that purged still drops the copies purged within FLEET_PURGE_REPEAT_S. One script
 * at a time (at most FLEET_PURGE_LOG + 1 messages); a hello heard meanwhile is answered when it
 * ends. A replayed hello (a writer of Redis without the key) costs copies their fetch, as a
 * replayed purge does. */
static void catch_up(struct fleet *fleet) {
  if (fleet->catch_up_out || !(fleet->hello_owed || fleet->answer_owed) ||
      !shared_available(fleet->shared) || !shared_subscribed(fleet->shared))
    return;
  enum { FIXED = 4, ARGS_MAX = FIXED + 1 + FLEET_PURGE_LOG };
  unsigned char(*messages)[SEALED_MESSAGE_MAX] = malloc((ARGS_MAX - FIXED) * sizeof(*messages));
  if (!messages)
    return;
  const char *argv[ARGS_MAX];
  size_t len[ARGS_MAX];
  int argc = 0;
  argv[argc] = "EVAL", len[argc++] = 4;
  argv[argc] = CATCH_UP_SCRIPT, len[argc++] = sizeof(CATCH_UP_SCRIPT) - 1;
  argv[argc] = "1", len[argc++] = 1;
  argv[argc] = fleet->channel, len[argc++] = strlen(fleet->channel);
  bool hello = fleet->hello_owed;
  if (hello && (len[argc] = fleet_message_of(fleet, "hello", NULL, messages[argc - FIXED])))
    argv[argc] = (const char *)messages[argc - FIXED], argc++;
  size_t purges = 0;
  int64_t now = clock_monotonic_ms();
  for (size_t i = 0; i < fleet->purge_log_len; i++) {
    const struct logged_purge *entry = &fleet->purge_log[i];
    const char *id = entry->enrollment_id[0] ? entry->enrollment_id : NULL;
    if (!recently_published(entry, now) ||
        !(len[argc] = fleet_message_of(fleet, id ? "purge" : "purge-all", id,
                                       messages[argc - FIXED])))
      continue;
    argv[argc] = (const char *)messages[argc - FIXED], argc++;
    purges++;
  }
  bool answer = fleet->answer_owed;
  fleet->hello_owed = fleet->answer_owed = false;
  if (argc > FIXED) {
    fleet->catch_up_out = shared_command(fleet->shared, on_caught_up, fleet, argc, argv, len);
    if (!fleet->catch_up_out) { /* the tier is gone: owed until it is back */
      fleet->hello_owed = hello;
      fleet->answer_owed = answer;
    } else if (purges) {
      log_info("shared tier: %zu recent purge%s published again (%s)", purges,
               purges == 1 ? "" : "s",
               hello ? "this host has just subscribed" : "another host has just subscribed");
    }
  }
  free(messages);
}

/* ---- messages from the other hosts --------------------------------------------------------- */

/* "VERB HOST[ ID]", sealed (a writer of Redis without the key can only replay what a host sent;
 * a replayed purge deletes a copy, which costs a fetch): anything else is ignored. A daemon's
 * own purges were applied when it sent them. */
void fleet_on_message(const char *payload, size_t len, void *arg) {
  struct fleet *fleet = arg;
  char text[MESSAGE_MAX], verb[16], host[FLEET_HOST_LEN + 2], id_text[UUID_TEXT_LEN + 2];
  char enrollment_id[UUID_TEXT_LEN + 1];
  if (!fleet_open_message(fleet, payload, len, text)) {
    fleet->daemon->stats.shared_invalid++;
    log_warning_limited("shared tier: a message on the channel does not open with this host's "
                        "keys: ignored");
    return;
  }
  int fields = sscanf(text, "%15s %17s %37s", verb, host, id_text);
  if (fields < 2 || strlen(host) != FLEET_HOST_LEN)
    return;
  bool has_id = fields == 3 && uuid_canonicalize(id_text, strlen(id_text), enrollment_id);
  bool mine = strcmp(host, fleet->host) == 0;
  struct flipcached *daemon = fleet->daemon;
  if (strcmp(verb, "ready") == 0 && has_id) {
    fleet_on_ready(fleet, enrollment_id);
  } else if (strcmp(verb, "hello") == 0 && fields == 2 && !mine) {
    fleet->answer_owed = true;
    catch_up(fleet);
  } else if (strcmp(verb, "purge") == 0 && has_id && !mine) {
    daemon->stats.shared_purges_received++;
    bool found;
    char err[256];
    if (fleet->purges.forget(daemon, enrollment_id, &found, err, sizeof(err)) != 0)
      log_error("shared tier: purging %s for another host failed: %s", enrollment_id, err);
    else if (found)
      log_info("shared tier: purged enrollment %s (by host %s)", enrollment_id, host);
  } else if (strcmp(verb, "purge-all") == 0 && fields == 2 && !mine) {
    daemon->stats.shared_purges_received++;
    uint64_t removed;
    char err[256];
    if (fleet->purges.forget_all(daemon, &removed, err, sizeof(err)) != 0)
      log_error("shared tier: purging the cache for another host failed: %s", err);
    else
      log_info("shared tier: purged the whole cache (%llu entries; by host %s)",
               (unsigned long long)removed, host);
  }
}

void fleet_on_subscribed(bool again, void *arg) {
  struct fleet *fleet = arg;
  if (again)
    log_warning("shared tier: subscribed again: the other hosts publish their purges of the last "
                "%d s again; older ones sent while the subscription was down were missed (their "
                "entries here stay until they expire)", FLEET_PURGE_REPEAT_S);
  fleet->hello_owed = true;
  catch_up(fleet);
}
