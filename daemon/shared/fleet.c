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
#include "validate.h"

/* ---- keys and values ---------------------------------------------------------------------- */

size_t fleet_key_of(const struct fleet *fleet, const char *kind, const char *enrollment_id,
                     char out[KEY_MAX]) {
  return (size_t)snprintf(out, KEY_MAX, "%s%s%s", fleet->daemon->cfg.shared_prefix, kind,
                          enrollment_id);
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
  snprintf(fleet->channel, sizeof(fleet->channel), "%sevents", cfg->shared_prefix);
  char password[SHARED_PASSWORD_MAX + 1] = "";
  size_t password_len = 0;
  char problem[PATH_MAX + 256];
  if (cfg->shared_password_file[0] &&
      creds_read_secret_file(cfg->shared_password_file, password, sizeof(password), &password_len,
                             problem, sizeof(problem)) != 0) {
    snprintf(err, err_len, "[shared] password_file: %s", problem);
    free(fleet);
    return NULL;
  }
  struct shared_handlers handlers = {.message = fleet_on_message, .subscribed = fleet_on_subscribed,
                                     .arg = fleet};
  fleet->shared = shared_new(daemon->base, cfg, password, fleet->channel, &handlers, &daemon->stats);
  explicit_bzero(password, sizeof(password));
  if (!fleet->shared) {
    snprintf(err, err_len, "out of memory");
    free(fleet);
    return NULL;
  }
  log_info("shared tier: redis %s, prefix %s, this host %s", cfg->shared_redis, cfg->shared_prefix,
           fleet->host);
  return fleet;
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

size_t fleet_waiting(const struct fleet *fleet) { return fleet ? fleet->waiting : 0; }

size_t fleet_pending(const struct fleet *fleet) { return fleet ? fleet->pending : 0; }
