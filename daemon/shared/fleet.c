/* fleet: the shared second tier (fleet.h says what is kept in Redis and how a fetch goes): the
 * module's start, stop and state. A fetch's way through it is fleet_lock.c, the purges
 * fleet_purge.c. */
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
#include "seal.h"
#include "validate.h"

/* ---- keys and values ---------------------------------------------------------------------- */

size_t fleet_key_of(const struct fleet *fleet, const char *kind, size_t key_index,
                    const char *enrollment_id, char out[KEY_MAX]) {
  char name[SEAL_NAME_HEX + 1];
  seal_name(&fleet->keys, key_index, enrollment_id, name);
  return (size_t)snprintf(out, KEY_MAX, "%s%s%s", fleet->daemon->cfg.shared_prefix, kind, name);
}

size_t fleet_entry_keys(const struct fleet *fleet, const char *enrollment_id,
                        char names[SEAL_MAX_KEYS][KEY_MAX], const char **argv, size_t *len,
                        int *argc) {
  for (size_t i = 0; i < fleet->keys.count; i++) {
    argv[*argc] = names[i];
    len[(*argc)++] = fleet_key_of(fleet, "e:", i, enrollment_id, names[i]);
  }
  return fleet->keys.count;
}

size_t fleet_fixed_key(const struct fleet *fleet, const char *what, char out[KEY_MAX]) {
  return (size_t)snprintf(out, KEY_MAX, "%s%s", fleet->daemon->cfg.shared_prefix, what);
}

/* What an entry's value is sealed for: the record format, the prefix and the id, so that a
 * value does not open under another id's key, another fleet's prefix or another format. */
static void entry_context(const struct fleet *fleet, const char *enrollment_id,
                          char out[SEAL_MAX_CONTEXT]) {
  snprintf(out, SEAL_MAX_CONTEXT, "flipcached entry record-v%u prefix=%s id=%s",
           RECORD_FORMAT_VERSION, fleet->daemon->cfg.shared_prefix, enrollment_id);
}

static void message_context(const struct fleet *fleet, char out[SEAL_MAX_CONTEXT]) {
  snprintf(out, SEAL_MAX_CONTEXT, "flipcached message v1 prefix=%s",
           fleet->daemon->cfg.shared_prefix);
}

static void put_i64(unsigned char *out, int64_t value) {
  uint64_t v = (uint64_t)value;
  for (int i = 0; i < 8; i++)
    out[i] = (unsigned char)(v >> (8 * i));
}

static int64_t get_i64(const unsigned char *in) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | in[i];
  return (int64_t)v;
}

unsigned char *fleet_seal_record(const struct fleet *fleet, const char *enrollment_id,
                                 const struct cache_record *record, size_t *len) {
  size_t plain_len = record_encoded_len(record);
  unsigned char *plain = malloc(plain_len);
  unsigned char *value = malloc(seal_sealed_len(VALUE_CLEAR_LEN, plain_len));
  unsigned char clear[VALUE_CLEAR_LEN];
  char context[SEAL_MAX_CONTEXT];
  bool sealed = false;
  if (plain && value) {
    record_encode(record, plain);
    put_i64(clear, record->fetched_at);
    put_i64(clear + 8, record->fresh_until);
    entry_context(fleet, enrollment_id, context);
    sealed = seal_value(&fleet->keys, context, clear, sizeof(clear), plain, plain_len, value);
  }
  free(plain);
  if (!sealed) {
    free(value);
    return NULL;
  }
  *len = seal_sealed_len(VALUE_CLEAR_LEN, plain_len);
  return value;
}

bool fleet_open_record(const struct fleet *fleet, const char *enrollment_id, const char *value,
                       size_t len, struct cache_record *record, unsigned char **plain) {
  *plain = NULL;
  if (len < VALUE_MIN_LEN || len > VALUE_MAX_LEN)
    return false;
  *plain = malloc(len - VALUE_MIN_LEN + 1);
  char context[SEAL_MAX_CONTEXT];
  entry_context(fleet, enrollment_id, context);
  size_t plain_len = 0;
  const unsigned char *sealed = (const unsigned char *)value;
  if (!*plain || !seal_open(&fleet->keys, context, sealed, len, VALUE_CLEAR_LEN, *plain,
                            &plain_len) ||
      record_decode(*plain, plain_len, record) != RECORD_OK)
    return false;
  /* The scripts judged the value by its clear times: they must be the record's. */
  return get_i64(sealed + SEAL_HEAD_BYTES) == record->fetched_at &&
         get_i64(sealed + SEAL_HEAD_BYTES + 8) == record->fresh_until;
}

size_t fleet_message_of(const struct fleet *fleet, const char *verb, const char *enrollment_id,
                        unsigned char out[SEALED_MESSAGE_MAX]) {
  char text[MESSAGE_MAX], context[SEAL_MAX_CONTEXT];
  int len = snprintf(text, sizeof(text), "%s %s%s%s", verb, fleet->host, enrollment_id ? " " : "",
                     enrollment_id ? enrollment_id : "");
  message_context(fleet, context);
  if (len <= 0 || (size_t)len >= sizeof(text) ||
      !seal_value(&fleet->keys, context, NULL, 0, text, (size_t)len, out))
    return 0;
  return seal_sealed_len(0, (size_t)len);
}

bool fleet_open_message(const struct fleet *fleet, const char *payload, size_t len,
                        char text[MESSAGE_MAX]) {
  char context[SEAL_MAX_CONTEXT];
  size_t text_len = 0;
  if (len < SEAL_OVERHEAD || len - SEAL_OVERHEAD >= MESSAGE_MAX)
    return false;
  message_context(fleet, context);
  if (!seal_open(&fleet->keys, context, (const unsigned char *)payload, len, 0,
                 (unsigned char *)text, &text_len))
    return false;
  text[text_len] = '\0';
  return strlen(text) == text_len;
}

int fleet_load_keys(const struct config *cfg, struct seal_keys *keys, char *err, size_t err_len) {
  char path[PATH_MAX] = "", problem[PATH_MAX + 256];
  char text[16384]; /* keys and comment lines */
  size_t len = 0;
  int rc = creds_choose_path(CONFIG_SHARED_KEY_CREDENTIAL, cfg->shared_key_file, path,
                             sizeof(path), problem, sizeof(problem));
  if (rc == 0)
    rc = creds_read_private_file(path, text, sizeof(text), &len, problem, sizeof(problem));
  bool read = rc == 0;
  if (read && seal_keys_parse(text, len, keys, problem, sizeof(problem)) != 0)
    rc = -1;
  explicit_bzero(text, sizeof(text));
  if (rc != 0) /* a parse error names the line; the path comes first */
    snprintf(err, err_len, "[shared] key_file: %s%s%s", read ? path : "", read ? ": " : "",
             problem);
  return rc;
}

/* ---- the module ----------------------------------------------------------------------------- */

struct fleet *fleet_new(struct flipcached *daemon, const struct fleet_purges *purges, char *err,
                        size_t err_len) {
  struct fleet *fleet = calloc(1, sizeof(*fleet));
  if (!fleet) {
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  fleet->daemon = daemon;
  fleet->purges = *purges;
  TAILQ_INIT(&fleet->fetches);
  const struct config *cfg = &daemon->cfg;
  if (!cfg->shared_on)
    return fleet;
  unsigned char random[FLEET_HOST_LEN / 2];
  if (getrandom(random, sizeof(random), 0) != (ssize_t)sizeof(random)) {
    snprintf(err, err_len, "[shared]: no random name for this host");
    free(fleet);
    return NULL;
  }
  for (size_t i = 0; i < sizeof(random); i++)
    snprintf(fleet->host + 2 * i, 3, "%02x", random[i]);
  if (fleet_load_keys(cfg, &fleet->keys, err, err_len) != 0) {
    free(fleet);
    return NULL;
  }
  snprintf(fleet->channel, sizeof(fleet->channel), "%sevents", cfg->shared_prefix);
  char password[SHARED_PASSWORD_MAX + 1] = "", sentinel_password[SHARED_PASSWORD_MAX + 1] = "";
  if (fleet_read_password(cfg, false, password, sizeof(password), err, err_len) != 0 ||
      fleet_read_password(cfg, true, sentinel_password, sizeof(sentinel_password), err,
                          err_len) != 0) {
    explicit_bzero(password, sizeof(password));
    seal_keys_wipe(&fleet->keys);
    free(fleet);
    return NULL;
  }
  struct shared_handlers handlers = {.message = fleet_on_message, .subscribed = fleet_on_subscribed,
                                     .available = fleet_on_available, .arg = fleet};
  fleet->shared = shared_new(daemon->base, cfg, password, sentinel_password, fleet->channel,
                             &handlers, &daemon->stats);
  explicit_bzero(password, sizeof(password));
  explicit_bzero(sentinel_password, sizeof(sentinel_password));
  if (!fleet->shared) {
    snprintf(err, err_len, "out of memory");
    seal_keys_wipe(&fleet->keys);
    free(fleet);
    return NULL;
  }
  log_info("shared tier: %s %s%s%s, prefix %s, this host %s, %zu key%s (values sealed, names "
           "keyed)", cfg->sentinel_count ? "sentinels" : "redis",
           cfg->sentinel_count ? cfg->shared_sentinels : cfg->shared_redis,
           cfg->sentinel_count ? " for master " : "", cfg->sentinel_count ? cfg->sentinel_master : "",
           cfg->shared_prefix, fleet->host, fleet->keys.count, fleet->keys.count == 1 ? "" : "s");
  return fleet;
}

int fleet_read_password(const struct config *cfg, bool sentinel, char *out, size_t out_size,
                        char *err, size_t err_len) {
  const char *path = sentinel ? cfg->sentinel_password_file : cfg->shared_password_file;
  char problem[PATH_MAX + 256];
  size_t len = 0;
  out[0] = '\0';
  if (!path[0])
    return 0;
  if (creds_read_secret_file(path, out, out_size, &len, problem, sizeof(problem)) != 0) {
    snprintf(err, err_len, "[shared] %s: %s", sentinel ? "sentinel_password_file" : "password_file",
             problem);
    explicit_bzero(out, out_size);
    return -1;
  }
  return 0;
}

void fleet_free(struct fleet *fleet) {
  if (!fleet)
    return;
  /* Fetches not yet at the upstream are answered now; those with a command out are only
   * detached, and freed when shared_free answers the command. */
  struct fleet_fetch *ff, *next;
  for (ff = TAILQ_FIRST(&fleet->fetches); ff; ff = next) {
    next = TAILQ_NEXT(ff, link);
    if (ff->step == STEP_UPSTREAM)
      continue;
    struct inflight_fetch *fetch = ff->fetch;
    upstream_done_fn fetched = ff->fetched;
    fetch->fleet = NULL;
    ff->fetch = NULL;
    if (!ff->command_out)
      fleet_fetch_free(ff);
    struct upstream_result aborted = {.outcome = UPSTREAM_ABORTED, .error_text = "shutting down"};
    fetched(&aborted, fetch);
  }
  struct shared *shared = fleet->shared;
  fleet->shared = NULL; /* nothing more is sent: write-backs of aborted fetches are dropped */
  shared_free(shared);
  while ((ff = TAILQ_FIRST(&fleet->fetches))) {
    if (ff->fetch)
      ff->fetch->fleet = NULL;
    ff->fetch = NULL;
    fleet_fetch_free(ff);
  }
  seal_keys_wipe(&fleet->keys);
  free(fleet);
}

bool fleet_enabled(const struct fleet *fleet) { return fleet && fleet->shared; }

unsigned fleet_state(const struct fleet *fleet) {
  if (!fleet_enabled(fleet))
    return 0;
  return shared_available(fleet->shared) ? 1 : 2;
}

const char *fleet_problem(const struct fleet *fleet) {
  return fleet_enabled(fleet) ? shared_problem(fleet->shared) : NULL;
}

const char *fleet_master(const struct fleet *fleet) {
  return fleet_enabled(fleet) ? shared_master(fleet->shared) : "";
}

uint64_t fleet_unavailable_ms(const struct fleet *fleet) {
  return fleet_enabled(fleet) ? shared_unavailable_ms(fleet->shared) : 0;
}

const char *fleet_sentinel_problem(const struct fleet *fleet) {
  return fleet_enabled(fleet) ? shared_sentinel_problem(fleet->shared) : NULL;
}

size_t fleet_waiting(const struct fleet *fleet) { return fleet ? fleet->waiting : 0; }

size_t fleet_pending(const struct fleet *fleet) { return fleet ? fleet->pending : 0; }
