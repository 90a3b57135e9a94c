/* signals: what the loop does for SIGTERM and SIGINT (a graceful stop), for SIGHUP (a reload:
 * the configuration, the access lists and the credential applied while running), and every
 * STATUS_INTERVAL_SECONDS (systemd's STATUS= line). */
#include "signals.h"

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "access.h"
#include "cache.h"
#include "flipcached.h"
#include "front.h"
#include "log.h"
#include "peer.h"
#include "quota.h"
#include "systemd.h"
#include "settings.h"
#include "status.h"
#include "upstream.h"
#include "warm.h"

#define STOP_POLL_MS 50

static void report_to_log(const char *line) { log_error("reload: %s", line); }

/* One line per key a reload changed, with both values; ttl and negative_ttl also say that they
 * apply to entries stored from now on (each entry keeps the freshness it was stored with). */
static void note_change(const struct config_change *change, void *arg) {
  (void)arg;
  if (!change->applied) {
    log_warning("reload: [%s] %s: %s -> %s needs a restart; the running value stays",
                change->section, change->name, change->old_value, change->new_value);
    return;
  }
  bool freshness = strcmp(change->name, "ttl") == 0 || strcmp(change->name, "negative_ttl") == 0 ||
                   strcmp(change->name, "stale_while_revalidate") == 0 ||
                   strcmp(change->name, "stale_if_error") == 0;
  log_info("reload: [%s] %s: %s -> %s%s", change->section, change->name, change->old_value,
           change->new_value,
           freshness ? " (for entries stored from now on: stored ones keep their own times)" : "");
}

/* Graceful stop: listeners closed at once, in-flight upstream fetches allowed to finish (libcurl's
 * own timeout bounds them) and their answers written out, then the loop ends. */
static void on_stop_poll(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct flipcached *daemon = arg;
  if (upstream_inflight(daemon->upstream) == 0 && front_unfinished(daemon->front) == 0)
    event_base_loopexit(daemon->base, NULL);
}

void signals_on_status_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  status_send_systemd(arg);
  log_flush_suppressed(); /* a flood of one warning that stopped still reports its count */
}

void signals_on_stop(evutil_socket_t signal_number, short what, void *arg) {
  (void)what;
  struct flipcached *daemon = arg;
  if (daemon->stopping)
    return;
  daemon->stopping = true;
  sd_send("STOPPING=1");
  log_info("%s received: stopping (%zu upstream fetch(es) in flight)",
           signal_number == SIGINT ? "SIGINT" : "SIGTERM", upstream_inflight(daemon->upstream));
  front_stop_listening(daemon->front);
  warm_stop(daemon->warm);
  daemon->stop_poll = event_new(daemon->base, -1, EV_PERSIST, on_stop_poll, daemon);
  struct timeval interval = {.tv_sec = 0, .tv_usec = STOP_POLL_MS * 1000};
  if (!daemon->stop_poll || event_add(daemon->stop_poll, &interval) != 0) {
    event_base_loopexit(daemon->base, NULL);
    return;
  }
  struct timeval deadline = {.tv_sec = (daemon->cfg.timeout_ms + 1000) / 1000};
  event_base_loopexit(daemon->base, &deadline);
}

static void reload(struct flipcached *daemon, struct config *fresh);

/* The access policy of cfg's lists, with the group members the user database lists now (NSS,
 * which may block: only at start and on SIGHUP). NULL when out of memory. */
static struct access_policy *build_access_policy(const struct config *cfg) {
  struct access_lists lists = {.allow_users = &cfg->allow_users,
                               .allow_groups = &cfg->allow_groups,
                               .admin_users = &cfg->admin_users,
                               .admin_groups = &cfg->admin_groups};
  return access_policy_new(&lists, access_each_member_nss, NULL);
}

/* Who may use it: the policy, the finder of TCP peers and the miss quotas. A finder that cannot be
 * opened leaves TCP peers unknown (admitted only by "*"), with a warning. */
int signals_start_access(struct flipcached *daemon) {
  char err[256];
  daemon->peer_finder = peer_finder_new(err, sizeof(err));
  if (!daemon->peer_finder)
    log_warning("access: %s; TCP clients are unknown users (only '*' admits them)", err);
  daemon->access = build_access_policy(&daemon->cfg);
  daemon->quota = quota_new();
  return daemon->access && daemon->quota ? 0 : -1;
}

/* After a reload: the lists (and the database's group members) decided again for every open
 * connection. Out of memory keeps the policy in force. */
static void reload_access(struct flipcached *daemon) {
  struct access_policy *fresh = build_access_policy(&daemon->cfg);
  if (!fresh) {
    log_error("reload: out of memory building the access lists; the running ones stay");
    return;
  }
  front_set_policy(daemon->front, fresh);
  access_policy_free(daemon->access);
  daemon->access = fresh;
}

/* SIGHUP: re-reads the configuration and applies what can change while running; re-reads the
 * credential. Nothing is dropped: a transfer in progress keeps the headers it started with. An
 * invalid file or an unusable credential keeps the running one, with the reason logged. */
void signals_on_hangup(evutil_socket_t signal_number, short what, void *arg) {
  (void)signal_number;
  (void)what;
  struct flipcached *daemon = arg;
  static struct config fresh; /* large; the loop's thread only */
  log_info("SIGHUP received: reloading %s", daemon->config_path);
  sd_send("RELOADING=1");
  reload(daemon, &fresh);
  sd_send("READY=1");
  status_send_systemd(daemon);
}

static void reload(struct flipcached *daemon, struct config *fresh) {
  if (settings_load(daemon->config_path, daemon->config_given, fresh, report_to_log) != 0) {
    log_error("reload: the configuration has errors; the running one stays");
    return;
  }
  config_apply_reload(&daemon->cfg, fresh, note_change, NULL);
  log_set_level(daemon->cfg.log_level);
  reload_access(daemon);
  cache_set_sweep_interval(daemon->cache, daemon->cfg.sweep_interval);
  warm_configure(daemon->warm);
  daemon->stats.reloads++;

  struct creds fresh_creds = {0};
  char err[512];
  if (creds_load(&fresh_creds, &daemon->cfg, err, sizeof(err)) != 0) {
    log_error("reload: credential: %s; the current one stays", err);
    return;
  }
  bool changed = fresh_creds.token_len != daemon->creds.token_len ||
                 memcmp(fresh_creds.token, daemon->creds.token, fresh_creds.token_len) != 0;
  creds_move(&daemon->creds, &fresh_creds);
  if (changed) {
    daemon->stats.credential_reloads++;
    daemon->auth_rejected_status = 0; /* a new credential deserves a new verdict */
    log_info("reload: new credential loaded from %s", daemon->creds.source);
  } else {
    log_info("reload: credential unchanged (%s)", daemon->creds.source);
    /* Only when the key was replaced at its source since systemd copied it, not on every
     * reload. */
    if (creds_source_replaced(&daemon->creds))
      log_warning("reload: %s changed, but the credential is systemd's copy (LoadCredential=), "
                  "made when the service started; to load the new key, %s",
                  daemon->creds.copied_from, creds_how_to_replace(&daemon->creds));
  }
}
