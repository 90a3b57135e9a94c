/* config: the INI configuration, as a table of keys (section, name, type, bounds, default).
 *
 * config_load parses into a fresh struct and reports every error with its line; a caller swaps
 * the result in only when it is valid. Defaults go through the same parsers as the file's values,
 * so a default can never be a value the file would refuse. */
#ifndef FLIPCACHED_CONFIG_H
#define FLIPCACHED_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "access_lists.h"
#include "log.h"

#define CONFIG_DEFAULT_PATH "/etc/flipcached/flipcached.conf"
#define CONFIG_MAX_LISTEN 8
#define CONFIG_MAX_ERRORS 32
#define CONFIG_URL_MAX 512
#define CONFIG_MAX_PROGRAMS 64    /* [warm] program_ids */
#define CONFIG_PROGRAM_ID_MAX 64  /* characters of one program id */
#define CONFIG_MAX_SENTINELS 8
#define CONFIG_SHARED_KEY_CREDENTIAL "flip-shared-key" /* systemd's credential of [shared] key_file */

/* [warm] program_ids: ids of unreserved URL characters (RFC 3986: letters, digits, "-._~"), so
 * that each goes into the list endpoint's query as it is, never encoded. */
struct program_list {
  unsigned count;
  char ids[CONFIG_MAX_PROGRAMS][CONFIG_PROGRAM_ID_MAX + 1];
};

enum listen_kind { LISTEN_TCP, LISTEN_UNIX };

struct listen_addr {
  enum listen_kind kind;
  char host[64];          /* TCP: a numeric IPv4 or IPv6 address, without brackets */
  uint16_t port;          /* TCP */
  char path[108];         /* unix: the socket's path (sun_path's size) */
  bool loopback;          /* TCP on 127.0.0.0/8 or ::1, or a unix socket */
};

struct config {
  /* [server] */
  struct listen_addr listen[CONFIG_MAX_LISTEN];
  size_t listen_count;
  bool allow_remote;             /* permit non-loopback listeners */
  bool admin;                    /* the /cache/... routes */
  unsigned max_connections;      /* client connections at once; more are answered 503 */
  unsigned max_connections_per_user; /* one uid's share of them; 0: a quarter (see below) */
  unsigned request_timeout;      /* seconds from a request's first byte to its last header, and
                                    for an answer to be taken by the client */
  unsigned idle_timeout;         /* seconds a keep-alive connection may wait for a request */
  /* Who may use it (access_lists.h): ids resolved from names when the file is loaded. */
  struct id_list allow_users;    /* the enrollment route; default "*" */
  struct id_list allow_groups;
  struct id_list admin_users;    /* the /cache routes; default root */
  struct id_list admin_groups;
  struct name_list host_names;   /* Host values beyond localhost and loopback literals */
  struct name_list allow_origins; /* Origin values a browser may send; default none */
  unsigned miss_rate_per_user;   /* upstream misses a second (and burst) per uid; 0: no limit */
  struct id_list socket_group;   /* none, or the one group that unix sockets we bind get */
  /* [upstream] */
  char base_url[CONFIG_URL_MAX]; /* scheme://host[:port][/prefix], no trailing slash */
  char token_file[PATH_MAX];
  char oauth_token_url[CONFIG_URL_MAX];
  char oauth_client_id[256];
  char oauth_client_secret_file[PATH_MAX];
  unsigned connect_timeout_ms;
  unsigned timeout_ms;
  unsigned upstream_max_connections;
  unsigned breaker_failures;     /* consecutive failed fetches that open the circuit; 0: never */
  unsigned breaker_cooldown_ms;  /* how long it stays open first (doubling, at most a minute) */
  unsigned max_fetches;          /* enrollment fetches started or waiting for a connection, in all */
  char ca_file[PATH_MAX];        /* PEM CA bundle that replaces the system store; empty: system */
  char ca_path[PATH_MAX];        /* a c_rehash'd directory of CA certificates; empty: none */
  char client_cert[PATH_MAX];    /* mutual TLS: the PEM certificate... */
  char client_key[PATH_MAX];     /* ...and its key (a secret file); both or neither */
  char proxy[CONFIG_URL_MAX];    /* http://, https:// or socks5h://HOST:PORT; empty: direct */
  /* [cache] */
  char cache_path[PATH_MAX];
  uint64_t max_size;             /* bytes: the LMDB map size */
  unsigned ttl;                  /* seconds fresh after a fetch */
  unsigned stale_while_revalidate;
  unsigned stale_if_error;
  unsigned negative_ttl;
  unsigned sweep_interval;       /* seconds between passes of the expired-entry sweeper */
  unsigned refresh_ahead_permille; /* [cache] refresh_ahead x 1000: a hit on a 200 older than this
                                    share of its ttl starts a background refresh; 0: off */
  /* [warm] */
  struct program_list warm_programs; /* each run fetches GET /v1/enrollments?program_id=P */
  unsigned warm_interval;        /* seconds from one run's start to the next; 0: once at start */
  /* [shared] (fleet.h): the fleet's second tier in Redis; off unless redis is set */
  char shared_redis[128];        /* as written: HOST:PORT, [V6]:PORT or unix:/PATH; empty: off */
  bool shared_on;                /* shared_redis or shared_sentinels is set */
  char shared_sentinels[512];    /* as written: HOST:PORT ... of Redis Sentinels; empty: none */
  struct listen_addr sentinels[CONFIG_MAX_SENTINELS]; /* parsed (TCP, numeric) */
  size_t sentinel_count;
  char sentinel_master[64];      /* the name the sentinels monitor */
  char sentinel_password_file[PATH_MAX]; /* the sentinels' AUTH (requirepass), a secret file;
                                            empty: none */
  struct listen_addr shared_addr; /* shared_redis parsed (numeric addresses only) */
  char shared_password_file[PATH_MAX]; /* Redis AUTH, a secret file; empty: no AUTH */
  char shared_key_file[PATH_MAX];  /* the seal's keys (seal.h); $CREDENTIALS_DIRECTORY/
                                      CONFIG_SHARED_KEY_CREDENTIAL wins when present */
  char shared_prefix[64];        /* of every key and of the channel */
  unsigned shared_timeout_ms;    /* each Redis command's limit (the handshake's too) */
  /* [log] */
  enum log_level log_level;
  bool access_log;               /* one info line per request answered */
};

struct config_errors {
  size_t count;      /* errors recorded; may exceed CONFIG_MAX_ERRORS (the rest are counted only) */
  int line[CONFIG_MAX_ERRORS];        /* sorted by line once parsing ends */
  char text[CONFIG_MAX_ERRORS][320];
};

/* Fills cfg with every default. */
void config_defaults(struct config *cfg);
/* Parses the file at path over the defaults. Returns 0 when valid, -1 otherwise with every error
 * in errors as "PATH:LINE: message" (LINE 0 for errors that belong to no line). */
int config_load(const char *path, struct config *cfg, struct config_errors *errors);
/* The same from a string (for tests); `name` is used in error messages. */
int config_load_string(const char *text, const char *name, struct config *cfg,
                       struct config_errors *errors);

/* One key that differs between the running configuration and a reloaded one. */
struct config_change {
  const char *section, *name;
  const char *old_value, *new_value; /* as a file would write them (lists of names as ids) */
  bool applied;                      /* false: it needs a restart, and keeps its running value */
};

/* For SIGHUP: copies into live the value of every key that can change while running, from fresh
 * (a valid configuration just loaded), and reports every key that differs, applied or (the
 * listeners, the upstream's address and connections, the cache's path and size...) kept until a
 * restart. */
void config_apply_reload(struct config *live, const struct config *fresh,
                         void (*report)(const struct config_change *change, void *arg),
                         void *arg);

/* Calls fn for every key of the table, in order: its section, name, default (as written in a
 * file) and whether a change of it needs a restart. For documentation checks. */
void config_each_key(void (*fn)(const char *section, const char *name, const char *default_value,
                                bool needs_restart, void *arg),
                     void *arg);

/* Pure value parsers, exposed for the unit tests. Each returns true on success. */
/* One uid's share of [server] max_connections: max_connections_per_user, or when that is 0 (the
 * default) a quarter of max_connections, at least 1. */
unsigned config_connections_per_user(const struct config *cfg);

bool config_parse_size(const char *text, uint64_t *bytes);
bool config_parse_listen(const char *text, struct listen_addr *addr);

#endif
