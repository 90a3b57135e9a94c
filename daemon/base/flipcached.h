/* The daemon's one context, passed explicitly to every handler. */
#ifndef FLIPCACHED_FLIPCACHED_H
#define FLIPCACHED_FLIPCACHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "creds.h"
#include "stats.h"

struct event;
struct event_base;
struct cache;
struct upstream;
struct oauth;
struct inflight_table;
struct front;
struct client_request;
struct access_policy;
struct peer_finder;
struct quota;
struct warm;
struct hot_table;
struct fleet;

struct flipcached {
  struct event_base *base;
  const char *config_path;     /* for SIGHUP */
  bool config_given;           /* -c named it: a missing file is an error, not "defaults" */
  struct config cfg;
  struct creds creds;          /* the upstream credential; wiped at exit */
  struct stats stats;
  struct cache *cache;
  struct upstream *upstream;
  struct oauth *oauth;             /* with [upstream] oauth_token_url: the token client */
  struct inflight_table *inflight; /* the one fetch per enrollment id and its waiters */
  struct front *front;
  struct access_policy *access;   /* who may use it, built from cfg at start and each reload */
  struct peer_finder *peer_finder; /* the NETLINK_SOCK_DIAG socket; NULL: TCP peers unknown */
  struct quota *quota;            /* miss_rate_per_user's buckets */
  struct warm *warm;              /* the warm-up from the list endpoint ([warm]) */
  struct hot_table *hot;          /* refresh-ahead's prediction and schedule (refresh_schedule.h) */
  struct fleet *fleet;            /* the shared tier in Redis ([shared]; does nothing when off) */
  struct event *refresh_timer;    /* refreshes the scheduled entries as they fall due */
  struct timespec started;     /* CLOCK_MONOTONIC at start, for uptime */
  bool stopping;               /* SIGTERM or SIGINT received: /healthz answers 503 */
  long auth_rejected_status;   /* the upstream's 401/403 to the current credential, or 0 */
  struct event *stop_poll;     /* while stopping: ends the loop once no fetch is in flight */
  struct event *status_timer;  /* refreshes systemd's STATUS= line */
  struct sd_watchdog *watchdog; /* WATCHDOG=1 pings, when the unit asks for them */
  bool curl_initialized;       /* curl_global_init succeeded: tear-down cleans it up */
};

#endif
