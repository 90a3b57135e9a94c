/* flipcached: the command line, start-up in order, the loop, tear-down in reverse. */
#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
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
#include "fleet.h"
#include "flipcached.h"
#include "front.h"
#include "inflight.h"
#include "log.h"
#include "oauth.h"
#include "peer.h"
#include "quota.h"
#include "systemd.h"
#include "settings.h"
#include "signals.h"
#include "status.h"
#include "upstream.h"
#include "warm.h"


static void usage(FILE *out) {
  fprintf(out,
          "usage: flipcached [-c FILE] [-t] [-h] [--version]\n"
          "       " CLI_STATS_SYNOPSIS "\n"
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
  printf("flipcached %s\nlibevent %s\nlibcurl %s\njson-c %s\nLMDB %d.%d.%d\nhiredis %d.%d.%d\n",
         FLIPCACHED_VERSION, event_get_version(), curl->version, json_c_version(), lmdb_major,
         lmdb_minor, lmdb_patch, HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
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
 * upstream, the shared tier, the fetch table, the warm-up and refresh schedule, the access rules and the cache's
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
  if (daemon->cfg.oauth_token_url[0]) {
    daemon->oauth = oauth_new(daemon->base, daemon->upstream, &daemon->cfg, &daemon->creds,
                              &daemon->stats, err, sizeof(err));
    if (!daemon->oauth) {
      log_error("upstream: OAuth: %s", err);
      return -1;
    }
  }
  static const struct fleet_purges purges = {.forget = enrollment_forget,
                                             .forget_all = enrollment_forget_all};
  daemon->fleet = fleet_new(daemon, &purges, err, sizeof(err));
  if (!daemon->fleet) {
    log_error("%s", err);
    return -1;
  }
  daemon->inflight = inflight_table_new(INFLIGHT_MAX_WAITERS);
  daemon->warm = warm_new(daemon);
  if (!daemon->inflight || !daemon->warm || enrollment_start_schedule(daemon) != 0 ||
      signals_start_access(daemon) != 0 ||
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
  signals->stop_term = evsignal_new(daemon->base, SIGTERM, signals_on_stop, daemon);
  signals->stop_int = evsignal_new(daemon->base, SIGINT, signals_on_stop, daemon);
  signals->hangup = evsignal_new(daemon->base, SIGHUP, signals_on_hangup, daemon);
  if (!signals->stop_term || !signals->stop_int || !signals->hangup ||
      evsignal_add(signals->stop_term, NULL) != 0 || evsignal_add(signals->stop_int, NULL) != 0 ||
      evsignal_add(signals->hangup, NULL) != 0) {
    log_error("cannot install signal handlers");
    return -1;
  }
  daemon->status_timer = event_new(daemon->base, -1, EV_PERSIST, signals_on_status_timer, daemon);
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
  upstream_free(daemon->upstream); /* an aborted fetch still releases its lock in the fleet */
  oauth_free(daemon->oauth);        /* after: its token request was aborted with the rest */
  fleet_free(daemon->fleet);
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
  int loaded = settings_load(args.config_path, args.config_given, &daemon.cfg,
                             settings_report_to_stderr);
  if (args.check_only && loaded != SETTINGS_UNREADABLE) /* every problem in one run */
    return settings_check(&daemon.cfg, loaded != 0);
  if (loaded != 0)
    return 1;

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
