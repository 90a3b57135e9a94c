/* flipcached: start-up in order, the loop, tear-down in reverse. */
#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <json-c/json.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access.h"
#include "admin.h"
#include "cache.h"
#include "cli.h"
#include "enrollment.h"
#include "flipcached.h"
#include "front.h"
#include "inflight.h"
#include "log.h"
#include "peer.h"
#include "quota.h"
#include "sd.h"
#include "status.h"
#include "upstream.h"
#include "warm.h"

#define STOP_POLL_MS 50
#define STATUS_INTERVAL_SECONDS 10

static void usage(FILE *out) {
  fprintf(out,
          "usage: flipcached [-c FILE] [-t] [-h] [--version]\n"
          "       flipcached stats [-c FILE] [--url URL]\n"
          "  -c, --config FILE    configuration file (default " CONFIG_DEFAULT_PATH ")\n"
          "  -t, --check-config   validate the configuration and exit 0 (OK) or 1\n"
          "  -h, --help           this text\n"
          "      --version        versions of flipcached and its libraries\n"
          "  stats                a running daemon's counters, with the hit ratio\n");
}

static void print_versions(void) {
  const curl_version_info_data *curl = curl_version_info(CURLVERSION_NOW);
  int lmdb_major, lmdb_minor, lmdb_patch;
  mdb_version(&lmdb_major, &lmdb_minor, &lmdb_patch);
  printf("flipcached %s\nlibevent %s\nlibcurl %s\njson-c %s\nLMDB %d.%d.%d\n", FLIPCACHED_VERSION,
         event_get_version(), curl->version, json_c_version(), lmdb_major, lmdb_minor, lmdb_patch);
}

/* Loads the configuration: a missing default file means "all defaults", a missing file named
 * with -c is an error. Every error goes to `report` (stderr at start-up, the log on SIGHUP). */
static int load_config(const char *path, bool path_given, struct config *cfg,
                       void (*report)(const char *line)) {
  static struct config_errors errors; /* large; only ever used from the loop's one thread */
  if (!path_given && access(path, F_OK) != 0 && errno == ENOENT) {
    config_defaults(cfg);
    return 0;
  }
  if (config_load(path, cfg, &errors) == 0)
    return 0;
  for (size_t i = 0; i < errors.count && i < CONFIG_MAX_ERRORS; i++)
    report(errors.text[i]);
  if (errors.count > CONFIG_MAX_ERRORS) {
    char more[64];
    snprintf(more, sizeof(more), "%zu more errors", errors.count - CONFIG_MAX_ERRORS);
    report(more);
  }
  return -1;
}

static void report_to_stderr(const char *line) { fprintf(stderr, "%s\n", line); }

/* The cache directory can be opened, or created (its parent exists and may be written). -t must
 * not create it. */
static int check_cache_path(const char *path, char *err, size_t err_len) {
  struct stat st;
  if (stat(path, &st) == 0) {
    if (!S_ISDIR(st.st_mode) || access(path, R_OK | W_OK | X_OK) != 0) {
      snprintf(err, err_len, "[cache] path %s: %s", path,
               S_ISDIR(st.st_mode) ? "cannot be written by this user" : "not a directory");
      return -1;
    }
    return 0;
  }
  char parent[PATH_MAX];
  snprintf(parent, sizeof(parent), "%s", path);
  char *slash = strrchr(parent, '/');
  if (slash == parent)
    slash[1] = '\0';
  else if (slash)
    *slash = '\0';
  if (!slash || stat(parent, &st) != 0 || !S_ISDIR(st.st_mode) ||
      access(parent, W_OK | X_OK) != 0) {
    snprintf(err, err_len, "[cache] path %s: cannot be created (%s: %s)", path, parent,
             errno ? strerror(errno) : "not writable");
    return -1;
  }
  return 0;
}

/* -t: what start-up would check, short of binding and the network: the credential files' rules
 * (a message names the file and the rule, never the content), the cache directory, the TLS files. */
static int check_configuration(const struct config *cfg) {
  char problem[PATH_MAX + 256], key_path[PATH_MAX];
  struct creds probe = {0};
  int rc = 0;
  if (creds_load(&probe, cfg, problem, sizeof(problem)) != 0) {
    fprintf(stderr, "credential: %s\n", problem);
    rc = 1;
  }
  creds_wipe(&probe);
  if (check_cache_path(cfg->cache_path, problem, sizeof(problem)) != 0) {
    fprintf(stderr, "%s\n", problem);
    rc = 1;
  }
  if (upstream_check_tls_files(cfg, problem, sizeof(problem)) != 0 ||
      creds_find_client_key(cfg, key_path, sizeof(key_path), problem, sizeof(problem)) != 0) {
    fprintf(stderr, "%s\n", problem);
    rc = 1;
  }
  if (rc == 0)
    printf("configuration OK\n");
  return rc;
}

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

static void on_status_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  status_send_systemd(arg);
  log_flush_suppressed(); /* a flood of one warning that stopped still reports its count */
}

static void on_stop_signal(evutil_socket_t signal_number, short what, void *arg) {
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
static int start_access(struct flipcached *daemon) {
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
static void on_hangup(evutil_socket_t signal_number, short what, void *arg) {
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
  if (load_config(daemon->config_path, daemon->config_given, fresh, report_to_log) != 0) {
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
  if (!changed && daemon->creds.from_systemd)
    log_warning("reload: the credential is systemd's copy (LoadCredential=), made when the "
                "service started; after replacing the key, %s",
                creds_how_to_replace(&daemon->creds));
  }
}

/* The command line: -c, -t, -h, -V. Returns -1 to go on, else the exit status to return now
 * (after --help, --version or a usage error). */
struct arguments {
  const char *config_path;
  bool config_given, check_only;
};

static int parse_arguments(int argc, char **argv, struct arguments *args) {
  static const struct option OPTIONS[] = {
    {"config", required_argument, NULL, 'c'},
    {"check-config", no_argument, NULL, 't'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
  };
  *args = (struct arguments){.config_path = CONFIG_DEFAULT_PATH};
  int option;
  while ((option = getopt_long(argc, argv, "c:th", OPTIONS, NULL)) != -1) {
    switch (option) {
    case 'c':
      args->config_path = optarg;
      args->config_given = true;
      break;
    case 't':
      args->check_only = true;
      break;
    case 'h':
      usage(stdout);
      return 0;
    case 'V':
      print_versions();
      return 0;
    default:
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "flipcached: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return 2;
  }
  return -1;
}

/* The signals the loop handles: SIGTERM and SIGINT stop, SIGHUP reloads. */
struct signal_events {
  struct event *stop_term, *stop_int, *hangup;
};

/* Start-up, in order: the process's hardening, libcurl, the credential, the loop, the cache, the
 * upstream, the fetch table, the warm-up and refresh schedule, the access rules and the cache's
 * upkeep. 0, or -1 with the reason logged (stop() then releases what was acquired). */
static int start_core(struct flipcached *daemon) {
  /* The credential must not be readable through /proc/PID/mem or a core dump. */
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  umask(077);
  signal(SIGPIPE, SIG_IGN);
  log_set_level(daemon->cfg.log_level);
  clock_gettime(CLOCK_MONOTONIC, &daemon->started);
  char err[512];
  upstream_scrub_environment(); /* before libcurl reads SSLKEYLOGFILE at its global init */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    log_error("curl_global_init failed");
    return -1;
  }
  daemon->curl_initialized = true;
  if (creds_load(&daemon->creds, &daemon->cfg, err, sizeof(err)) != 0) {
    log_error("credential: %s", err);
    return -1;
  }
  log_info("credential loaded from %s", daemon->creds.source);
  daemon->base = event_base_new();
  if (!daemon->base) {
    log_error("event_base_new failed");
    return -1;
  }
  daemon->cache = cache_open(daemon->cfg.cache_path, daemon->cfg.max_size, &daemon->stats, err,
                             sizeof(err));
  if (!daemon->cache) {
    log_error("%s", err);
    return -1;
  }
  if (upstream_check_tls_files(&daemon->cfg, err, sizeof(err)) != 0) {
    log_error("%s", err);
    return -1;
  }
  daemon->upstream = upstream_new(daemon->base, &daemon->cfg, &daemon->creds, &daemon->stats, err,
                                  sizeof(err));
  if (!daemon->upstream) {
    log_error("upstream: %s", err);
    return -1;
  }
  daemon->inflight = inflight_table_new(INFLIGHT_MAX_WAITERS);
  daemon->warm = warm_new(daemon);
  if (!daemon->inflight || !daemon->warm || enrollment_start_schedule(daemon) != 0 ||
      start_access(daemon) != 0 ||
      cache_start_upkeep(daemon->cache, daemon->base, daemon->cfg.sweep_interval) != 0) {
    log_error("out of memory");
    return -1;
  }
  return 0;
}

/* Then the front end (listeners, inherited sockets), the signals, the STATUS= timer and the
 * watchdog; READY=1 once all of it is in place. */
static int start_serving(struct flipcached *daemon, struct signal_events *signals) {
  char err[512];
  struct front_routes routes = {.enrollment = enrollment_handle, .stats = status_stats,
                                .metrics = status_metrics, .healthz = status_healthz,
                                .cache_inspect = admin_cache_inspect,
                                .cache_delete = admin_cache_delete,
                                .cache_purge = admin_cache_purge,
                                .cache_list = admin_cache_list, .cache_warm = admin_cache_warm,
                                .arg = daemon};
  int inherited[SD_MAX_INHERITED];
  size_t inherited_count = sd_inherited_sockets(inherited, SD_MAX_INHERITED);
  struct front_access access = {.policy = daemon->access, .peer_finder = daemon->peer_finder};
  daemon->front = front_new(daemon->base, &daemon->cfg, &daemon->stats, &routes, &access, inherited,
                            inherited_count, err, sizeof(err));
  if (!daemon->front) {
    log_error("%s", err);
    return -1;
  }
  signals->stop_term = evsignal_new(daemon->base, SIGTERM, on_stop_signal, daemon);
  signals->stop_int = evsignal_new(daemon->base, SIGINT, on_stop_signal, daemon);
  signals->hangup = evsignal_new(daemon->base, SIGHUP, on_hangup, daemon);
  if (!signals->stop_term || !signals->stop_int || !signals->hangup ||
      evsignal_add(signals->stop_term, NULL) != 0 || evsignal_add(signals->stop_int, NULL) != 0 ||
      evsignal_add(signals->hangup, NULL) != 0) {
    log_error("cannot install signal handlers");
    return -1;
  }
  daemon->status_timer = event_new(daemon->base, -1, EV_PERSIST, on_status_timer, daemon);
  struct timeval status_interval = {.tv_sec = STATUS_INTERVAL_SECONDS};
  if (!daemon->status_timer || event_add(daemon->status_timer, &status_interval) != 0) {
    log_error("out of memory");
    return -1;
  }
  daemon->watchdog = sd_watchdog_start(daemon->base);
  log_info("flipcached %s ready: upstream %s, cache %s (max %llu MiB), ttl %us", FLIPCACHED_VERSION,
           daemon->cfg.base_url, daemon->cfg.cache_path,
           (unsigned long long)(daemon->cfg.max_size >> 20), daemon->cfg.ttl);
  sd_send("READY=1");
  status_send_systemd(daemon);
  warm_configure(daemon->warm); /* the first run starts on the loop, after READY=1 */
  return 0;
}

/* Tear-down, in reverse order of start-up. Aborting the upstream first answers every waiting
 * request, so that no request is left unanswered when the front end is freed. */
static void stop(struct flipcached *daemon, struct signal_events *signals) {
  upstream_free(daemon->upstream);
  warm_free(daemon->warm);
  enrollment_stop_schedule(daemon);
  inflight_table_free(daemon->inflight);
  front_free(daemon->front);
  quota_free(daemon->quota);
  access_policy_free(daemon->access);
  peer_finder_free(daemon->peer_finder);
  if (daemon->stop_poll)
    event_free(daemon->stop_poll);
  if (daemon->status_timer)
    event_free(daemon->status_timer);
  sd_watchdog_free(daemon->watchdog);
  if (signals->hangup)
    event_free(signals->hangup);
  if (signals->stop_int)
    event_free(signals->stop_int);
  if (signals->stop_term)
    event_free(signals->stop_term);
  cache_close(daemon->cache);
  if (daemon->base)
    event_base_free(daemon->base);
  creds_wipe(&daemon->creds);
  if (daemon->curl_initialized)
    curl_global_cleanup();
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "stats") == 0)
    return cli_stats(argc - 1, argv + 1);
  struct arguments args;
  int exit_now = parse_arguments(argc, argv, &args);
  if (exit_now >= 0)
    return exit_now;

  static struct flipcached daemon; /* static: large, and signal callbacks reach it via arg */
  daemon.config_path = args.config_path;
  daemon.config_given = args.config_given;
  if (load_config(args.config_path, args.config_given, &daemon.cfg, report_to_stderr) != 0)
    return 1;
  if (args.check_only)
    return check_configuration(&daemon.cfg);

  struct signal_events signals = {0};
  int status = 1;
  if (start_core(&daemon) == 0 && start_serving(&daemon, &signals) == 0) {
    if (event_base_dispatch(daemon.base) < 0) {
      log_error("event loop failed");
    } else {
      status = 0;
      log_info("stopped");
    }
  }
  stop(&daemon, &signals);
  return status;
}
