#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum key_type {
  KEY_BOOL,      /* yes/no, true/false, on/off, 1/0 */
  KEY_UINT,      /* whole number within [min, max] */
  KEY_SIZE,      /* bytes with an optional K, M or G suffix (powers of 1024), within [min, max] */
  KEY_STRING,    /* free text, may be empty */
  KEY_PATH,      /* a non-empty file system path */
  KEY_LISTEN,    /* space-separated listener addresses */
  KEY_BASE_URL,  /* the upstream's scheme://host[:port][/prefix] */
  KEY_URL_OR_EMPTY, /* empty, or a URL with the rules of KEY_BASE_URL */
  KEY_LOG_LEVEL, /* error, warning, info, debug */
  KEY_PATH_OR_EMPTY, /* empty, or an absolute file system path */
  KEY_SHARE,     /* a share from 0 to 1 with at most three decimals, kept in thousandths */
  KEY_PROXY,     /* empty, or http://, https:// or socks5h:// with a host and a port */
  KEY_USERS,     /* space-separated user names, uids or "*" (struct id_list) */
  KEY_GROUPS,    /* the same for groups */
  KEY_HOSTS,     /* space-separated host names or address literals (struct name_list) */
  KEY_ORIGINS,   /* space-separated http(s) origins (struct name_list) */
  KEY_GROUP_OR_EMPTY, /* one group name or gid, or empty (struct id_list of at most one) */
  KEY_PROGRAMS,  /* space-separated program ids (struct program_list) */
  KEY_REDIS,     /* empty, or one HOST:PORT (numeric), [V6]:PORT or unix:/PATH (also parsed into
                    shared_addr) */
  KEY_PREFIX,    /* 1 to 63 characters of letters, digits and ":._-{}" */
};

struct config_key {
  const char *section;
  const char *name;
  enum key_type type;
  size_t offset; /* of the target field in struct config */
  size_t size;   /* of the target field, for strings */
  uint64_t min, max;
  const char *default_value;
  bool restart; /* SIGHUP cannot apply a change of this key: it needs a restart */
};

#define FIELD(member) offsetof(struct config, member), sizeof(((struct config *)0)->member)
#define DAY 86400u
#define YEAR (365u * DAY)

static const struct config_key KEYS[] = {
  {"server", "listen", KEY_LISTEN, FIELD(listen), 0, 0, "127.0.0.1:8750", true},
  {"server", "allow_remote", KEY_BOOL, FIELD(allow_remote), 0, 0, "no", true},
  {"server", "admin", KEY_BOOL, FIELD(admin), 0, 0, "yes", false},
  {"server", "max_connections", KEY_UINT, FIELD(max_connections), 1, 65536, "1024", false},
  {"server", "max_connections_per_user", KEY_UINT, FIELD(max_connections_per_user), 0, 65536, "0", false},
  {"server", "request_timeout", KEY_UINT, FIELD(request_timeout), 1, 3600, "10", false},
  {"server", "idle_timeout", KEY_UINT, FIELD(idle_timeout), 1, 3600, "60", false},
  {"server", "allow_users", KEY_USERS, FIELD(allow_users), 0, 0, "*", false},
  {"server", "allow_groups", KEY_GROUPS, FIELD(allow_groups), 0, 0, "", false},
  {"server", "admin_users", KEY_USERS, FIELD(admin_users), 0, 0, "root", false},
  {"server", "admin_groups", KEY_GROUPS, FIELD(admin_groups), 0, 0, "", false},
  {"server", "host_names", KEY_HOSTS, FIELD(host_names), 0, 0, "", false},
  {"server", "allow_origins", KEY_ORIGINS, FIELD(allow_origins), 0, 0, "", false},
  {"server", "miss_rate_per_user", KEY_UINT, FIELD(miss_rate_per_user), 0, 100000, "0", false},
  {"server", "socket_group", KEY_GROUP_OR_EMPTY, FIELD(socket_group), 0, 0, "", true},
  {"upstream", "base_url", KEY_BASE_URL, FIELD(base_url), 0, 0, "https://api-utility.flip.energy", true},
  {"upstream", "token_file", KEY_PATH, FIELD(token_file), 0, 0, "/etc/flipcached/token", false},
  {"upstream", "oauth_token_url", KEY_URL_OR_EMPTY, FIELD(oauth_token_url), 0, 0, "", true},
  {"upstream", "oauth_client_id", KEY_STRING, FIELD(oauth_client_id), 0, 0, "", true},
  {"upstream", "oauth_client_secret_file", KEY_STRING, FIELD(oauth_client_secret_file), 0, 0, "", true},
  {"upstream", "connect_timeout_ms", KEY_UINT, FIELD(connect_timeout_ms), 10, 600000, "3000", false},
  {"upstream", "timeout_ms", KEY_UINT, FIELD(timeout_ms), 10, 600000, "10000", false},
  {"upstream", "max_connections", KEY_UINT, FIELD(upstream_max_connections), 1, 1024, "16", true},
  {"upstream", "breaker_failures", KEY_UINT, FIELD(breaker_failures), 0, 1000, "5", false},
  {"upstream", "breaker_cooldown_ms", KEY_UINT, FIELD(breaker_cooldown_ms), 100, 60000, "5000", false},
  {"upstream", "max_fetches", KEY_UINT, FIELD(max_fetches), 1, 65536, "1024", false},
  {"upstream", "ca_file", KEY_PATH_OR_EMPTY, FIELD(ca_file), 0, 0, "", true},
  {"upstream", "ca_path", KEY_PATH_OR_EMPTY, FIELD(ca_path), 0, 0, "", true},
  {"upstream", "client_cert", KEY_PATH_OR_EMPTY, FIELD(client_cert), 0, 0, "", true},
  {"upstream", "client_key", KEY_PATH_OR_EMPTY, FIELD(client_key), 0, 0, "", true},
  {"upstream", "proxy", KEY_PROXY, FIELD(proxy), 0, 0, "", true},
  {"cache", "path", KEY_PATH, FIELD(cache_path), 0, 0, "/var/cache/flipcached", true},
  {"cache", "max_size", KEY_SIZE, FIELD(max_size), 256u * 1024u, 1024ull << 30, "256M", true},
  {"cache", "ttl", KEY_UINT, FIELD(ttl), 0, YEAR, "300", false},
  {"cache", "stale_while_revalidate", KEY_UINT, FIELD(stale_while_revalidate), 0, YEAR, "60", false},
  {"cache", "stale_if_error", KEY_UINT, FIELD(stale_if_error), 0, YEAR, "86400", false},
  {"cache", "negative_ttl", KEY_UINT, FIELD(negative_ttl), 0, YEAR, "30", false},
  {"cache", "sweep_interval", KEY_UINT, FIELD(sweep_interval), 1, DAY, "60", false},
  {"cache", "refresh_ahead", KEY_SHARE, FIELD(refresh_ahead_permille), 0, 1000, "0.8", false},
  {"warm", "program_ids", KEY_PROGRAMS, FIELD(warm_programs), 0, 0, "", false},
  {"warm", "interval", KEY_UINT, FIELD(warm_interval), 0, YEAR, "0", false},
  {"shared", "redis", KEY_REDIS, FIELD(shared_redis), 0, 0, "", true},
  {"shared", "password_file", KEY_PATH_OR_EMPTY, FIELD(shared_password_file), 0, 0, "", true},
  {"shared", "prefix", KEY_PREFIX, FIELD(shared_prefix), 0, 0, "flipcached:", true},
  {"shared", "timeout_ms", KEY_UINT, FIELD(shared_timeout_ms), 1, 60000, "200", false},
  {"log", "level", KEY_LOG_LEVEL, FIELD(log_level), 0, 0, "info", false},
  {"log", "access", KEY_BOOL, FIELD(access_log), 0, 0, "no", false},
};
#define KEY_COUNT (sizeof(KEYS) / sizeof(KEYS[0]))

struct parse_state {
  struct config *cfg;
  struct config_errors *errors;
  const char *name;     /* the file's name, for messages */
  int lineno;           /* the line the reader handed to inih last */
  int key_line[KEY_COUNT];
  /* the source: a FILE, or a string */
  FILE *file;
  const char *text;
};

__attribute__((format(printf, 3, 4))) static void add_error(struct parse_state *state, int line,
                                                            const char *fmt, ...) {
  struct config_errors *errors = state->errors;
  if (errors->count < CONFIG_MAX_ERRORS) {
    char message[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    snprintf(errors->text[errors->count], sizeof(errors->text[0]), "%s:%d: %s", state->name, line,
             message);
    errors->line[errors->count] = line;
  }
  errors->count++;
}

bool config_parse_size(const char *text, uint64_t *bytes) {
  if (!isdigit((unsigned char)text[0]))
    return false;
  errno = 0;
  char *end;
  unsigned long long number = strtoull(text, &end, 10);
  if (errno)
    return false;
  unsigned shift = 0;
  switch (*end) {
  case '\0':
    break;
  case 'k': case 'K':
    shift = 10;
    break;
  case 'm': case 'M':
    shift = 20;
    break;
  case 'g': case 'G':
    shift = 30;
    break;
  default:
    return false;
  }
  if (*end && end[1] != '\0')
    return false;
  if (number > (UINT64_MAX >> shift))
    return false;
  *bytes = (uint64_t)number << shift;
  return true;
}

static bool parse_uint(const char *text, uint64_t *value) {
  if (!isdigit((unsigned char)text[0]))
    return false;
  errno = 0;
  char *end;
  unsigned long long number = strtoull(text, &end, 10);
  if (errno || *end)
    return false;
  *value = number;
  return true;
}

static bool parse_bool(const char *text, bool *value) {
  static const char *const YES[] = {"yes", "true", "on", "1"};
  static const char *const NO[] = {"no", "false", "off", "0"};
  for (size_t i = 0; i < 4; i++) {
    if (strcasecmp(text, YES[i]) == 0)
      return (*value = true), true;
    if (strcasecmp(text, NO[i]) == 0)
      return (*value = false), true;
  }
  return false;
}

bool config_parse_listen(const char *text, struct listen_addr *addr) {
  memset(addr, 0, sizeof(*addr));
  if (strncmp(text, "unix:", 5) == 0) {
    const char *path = text + 5;
    if (path[0] != '/' || strlen(path) >= sizeof(addr->path))
      return false;
    addr->kind = LISTEN_UNIX;
    addr->loopback = true;
    strcpy(addr->path, path);
    return true;
  }
  const char *host = text, *host_end, *colon;
  if (text[0] == '[') {
    host = text + 1;
    host_end = strchr(host, ']');
    if (!host_end || host_end[1] != ':')
      return false;
    colon = host_end + 1;
  } else {
    colon = strrchr(text, ':');
    if (!colon)
      return false;
    host_end = colon;
  }
  size_t host_len = (size_t)(host_end - host);
  if (host_len == 0 || host_len >= sizeof(addr->host))
    return false;
  memcpy(addr->host, host, host_len);
  addr->host[host_len] = '\0';
  uint64_t port;
  if (!parse_uint(colon + 1, &port) || port == 0 || port > 65535)
    return false;
  addr->port = (uint16_t)port;
  addr->kind = LISTEN_TCP;

  struct in_addr v4;
  struct in6_addr v6;
  if (text[0] != '[' && inet_pton(AF_INET, addr->host, &v4) == 1) {
    addr->loopback = (ntohl(v4.s_addr) >> 24) == 127;
  } else if (text[0] == '[' && inet_pton(AF_INET6, addr->host, &v6) == 1) {
    addr->loopback = IN6_IS_ADDR_LOOPBACK(&v6);
  } else {
    return false; /* numeric addresses only: a name would need a blocking lookup at start-up */
  }
  return true;
}

static bool host_is_loopback(const char *host, size_t len) {
  char text[64];
  if (len >= sizeof(text))
    return false;
  memcpy(text, host, len);
  text[len] = '\0';
  if (strcasecmp(text, "localhost") == 0 || strcmp(text, "[::1]") == 0)
    return true;
  struct in_addr v4;
  return inet_pton(AF_INET, text, &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
}

/* Copies a URL into out without its trailing slashes (a path is appended to it later); NULL, or
 * what is wrong. */
static const char *store_without_trailing_slashes(const char *text, char *out, size_t out_len) {
  size_t len = strlen(text);
  while (len > 0 && text[len - 1] == '/')
    len--;
  if (len >= out_len)
    return "is too long";
  memcpy(out, text, len);
  out[len] = '\0';
  return NULL;
}

/* scheme://host[:port][/prefix]: https, or http for a loopback host only; no user info (a
 * credential in the URL would leak into logs), no query, no fragment. Stores it without a trailing
 * slash so that "/v1/enrollments/..." can be appended. */
static const char *parse_base_url(const char *text, char *out, size_t out_len) {
  bool https = strncmp(text, "https://", 8) == 0;
  bool http = strncmp(text, "http://", 7) == 0;
  if (!https && !http)
    return "must start with https:// (or http:// for a loopback host)";
  const char *authority = text + (https ? 8 : 7);
  size_t authority_len = strcspn(authority, "/");
  const char *host_end = authority + authority_len;
  if (authority_len == 0)
    return "has no host";
  for (const char *p = text; *p; p++) {
    if (*p == '@')
      return "must not carry user information (put the credential in token_file)";
    if (*p == '?' || *p == '#')
      return "must not have a query or fragment";
    if ((unsigned char)*p <= ' ' || *p == 0x7f)
      return "must not contain spaces or control characters";
  }
  if (authority[0] == '[') {
    const char *bracket = memchr(authority, ']', authority_len);
    if (!bracket)
      return "has an unterminated [IPv6] host";
    host_end = bracket + 1;
  } else {
    const char *port = memchr(authority, ':', authority_len);
    if (port)
      host_end = port;
  }
  if (http && !host_is_loopback(authority, (size_t)(host_end - authority)))
    return "http:// is accepted only for a loopback host; use https://";
  return store_without_trailing_slashes(text, out, out_len);
}

/* The access keys (access.h): names are resolved to ids here, at load, so that no connection
 * ever waits on NSS; a name that does not resolve is an error on its line. */
static void set_access_value(struct parse_state *state, const struct config_key *key, char *field,
                             const char *value, int line) {
  char problem[200];
  const char *why = NULL;
  switch (key->type) {
  case KEY_USERS:
    why = access_parse_ids(value, access_resolve_user, NULL, (struct id_list *)field, problem,
                           sizeof(problem));
    break;
  case KEY_GROUPS:
    why = access_parse_ids(value, access_resolve_group, NULL, (struct id_list *)field, problem,
                           sizeof(problem));
    break;
  case KEY_HOSTS:
    why = access_parse_hosts(value, (struct name_list *)field, problem, sizeof(problem));
    break;
  case KEY_ORIGINS:
    why = access_parse_origins(value, (struct name_list *)field, problem, sizeof(problem));
    break;
  default: /* KEY_GROUP_OR_EMPTY */
    why = access_parse_ids(value, access_resolve_group, NULL, (struct id_list *)field, problem,
                           sizeof(problem));
    if (!why && (((struct id_list *)field)->any || ((struct id_list *)field)->count > 1))
      why = "must be one group name or id";
    break;
  }
  if (why)
    add_error(state, line, "%s: %s", key->name, why);
}

/* "0", "1", "0.8", "0.75", ".5": a share from 0 to 1 in thousandths (at most three decimals). */
static bool parse_share(const char *text, unsigned *permille) {
  const char *p = text;
  unsigned whole = 0, fraction = 0, digits = 0;
  if (*p >= '0' && *p <= '1' && (p[1] == '\0' || p[1] == '.'))
    whole = (unsigned)(*p++ - '0');
  else if (*p != '.')
    return false;
  if (*p == '.') {
    p++;
    while (*p >= '0' && *p <= '9' && digits < 3) {
      fraction = fraction * 10 + (unsigned)(*p++ - '0');
      digits++;
    }
    if (digits == 0)
      return false;
    while (digits++ < 3)
      fraction *= 10;
  }
  if (*p != '\0' || whole * 1000 + fraction > 1000)
    return false;
  *permille = whole * 1000 + fraction;
  return true;
}

/* An egress proxy: http:// or https:// (a CONNECT tunnel) or socks5h:// (names resolved by the
 * proxy), with a host and a port, nothing else. No user information: a proxy password in the
 * URL would reach the logs. */
/* [warm] program_ids: NULL, or what is wrong (naming the id in problem). */
static const char *parse_programs(const char *value, struct program_list *list, char *problem,
                                  size_t problem_len) {
  memset(list, 0, sizeof(*list));
  for (const char *p = value; *p;) {
    size_t len = strcspn(p, " \t");
    if (len == 0) {
      p++;
      continue;
    }
    snprintf(problem, problem_len, "'%.*s'", (int)(len > 80 ? 80 : len), p);
    if (list->count == CONFIG_MAX_PROGRAMS)
      return "is one more than the 64 programs allowed";
    if (len > CONFIG_PROGRAM_ID_MAX)
      return "is longer than 64 characters";
    for (size_t i = 0; i < len; i++)
      if (!isalnum((unsigned char)p[i]) && !strchr("-._~", p[i]))
        return "is not a program id (letters, digits, '-', '.', '_' and '~' only)";
    for (unsigned i = 0; i < list->count; i++)
      if (strlen(list->ids[i]) == len && memcmp(list->ids[i], p, len) == 0)
        return "is listed twice";
    memcpy(list->ids[list->count++], p, len);
    p += len;
  }
  return NULL;
}

static const char *parse_proxy_url(const char *text, char *out, size_t out_len) {
  out[0] = '\0';
  if (!text[0])
    return NULL;
  static const char *const SCHEMES[] = {"http://", "https://", "socks5h://"};
  const char *authority = NULL;
  for (size_t i = 0; i < 3 && !authority; i++)
    if (strncmp(text, SCHEMES[i], strlen(SCHEMES[i])) == 0)
      authority = text + strlen(SCHEMES[i]);
  if (!authority)
    return "must start with http://, https:// or socks5h://";
  for (const char *p = authority; *p; p++) {
    if (*p == '@')
      return "must not carry user information";
    if (*p == '/' && p[1] != '\0')
      return "must be scheme://host:port, without a path";
    if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '?' || *p == '#')
      return "must not contain spaces, control characters, a query or a fragment";
  }
  const char *colon = strrchr(authority, ':');
  const char *bracket = strrchr(authority, ']');
  if (!colon || (bracket && colon < bracket) || colon == authority || !isdigit((unsigned char)colon[1]))
    return "needs a port (scheme://host:port)";
  return store_without_trailing_slashes(text, out, out_len);
}

/* One parser a key type: each sets the key's field from value, or adds an error naming line. */
typedef void set_fn(struct parse_state *state, const struct config_key *key, char *field,
                    const char *value, int line);

static void set_bool(struct parse_state *state, const struct config_key *key, char *field,
                     const char *value, int line) {
  if (!parse_bool(value, (bool *)field))
    add_error(state, line, "%s: '%s' is not a boolean (use yes or no)", key->name, value);
}

static void set_uint(struct parse_state *state, const struct config_key *key, char *field,
                     const char *value, int line) {
  uint64_t number;
  if (!parse_uint(value, &number))
    add_error(state, line, "%s: '%s' is not a whole number", key->name, value);
  else if (number < key->min || number > key->max)
    add_error(state, line, "%s: %s is out of range [%llu, %llu]", key->name, value,
              (unsigned long long)key->min, (unsigned long long)key->max);
  else
    *(unsigned *)field = (unsigned)number;
}

static void set_size(struct parse_state *state, const struct config_key *key, char *field,
                     const char *value, int line) {
  uint64_t number;
  if (!config_parse_size(value, &number))
    add_error(state, line, "%s: '%s' is not a size (a number with an optional K, M or G)",
              key->name, value);
  else if (number < key->min || number > key->max)
    add_error(state, line, "%s: %s is out of range [%lluK, %lluG]", key->name, value,
              (unsigned long long)key->min >> 10, (unsigned long long)key->max >> 30);
  else
    *(uint64_t *)field = number;
}

static void set_string(struct parse_state *state, const struct config_key *key, char *field,
                       const char *value, int line) {
  if (strlen(value) >= key->size)
    add_error(state, line, "%s: longer than %zu characters", key->name, key->size - 1);
  else
    strcpy(field, value);
}

static void set_path(struct parse_state *state, const struct config_key *key, char *field,
                     const char *value, int line) {
  if (value[0] == '\0')
    add_error(state, line, "%s: must not be empty", key->name);
  else
    set_string(state, key, field, value, line);
}

static void set_path_or_empty(struct parse_state *state, const struct config_key *key,
                              char *field, const char *value, int line) {
  if (value[0] && value[0] != '/')
    add_error(state, line, "%s: '%s' is not an absolute path", key->name, value);
  else
    set_string(state, key, field, value, line);
}

static void set_listen(struct parse_state *state, const struct config_key *key, char *field,
                       const char *value, int line) {
  (void)key;
  (void)field;
  struct config *cfg = state->cfg;
  cfg->listen_count = 0;
  char copy[1024];
  if (strlen(value) >= sizeof(copy)) {
    add_error(state, line, "listen: value too long");
    return;
  }
  strcpy(copy, value);
  char *saveptr = NULL;
  for (char *item = strtok_r(copy, " \t", &saveptr); item; item = strtok_r(NULL, " \t", &saveptr)) {
    if (cfg->listen_count == CONFIG_MAX_LISTEN) {
      add_error(state, line, "listen: more than %d addresses", CONFIG_MAX_LISTEN);
      return;
    }
    if (!config_parse_listen(item, &cfg->listen[cfg->listen_count]))
      add_error(state, line,
                "listen: '%s' is not 127.0.0.1:PORT, [::1]:PORT or unix:/PATH (numeric "
                "addresses only)", item);
    else
      cfg->listen_count++;
  }
  if (cfg->listen_count == 0 && state->errors->count == 0)
    add_error(state, line, "listen: needs at least one address");
}

static void set_base_url(struct parse_state *state, const struct config_key *key, char *field,
                         const char *value, int line) {
  const char *problem = parse_base_url(value, field, key->size);
  if (problem)
    add_error(state, line, "%s: '%s' %s", key->name, value, problem);
}

static void set_url_or_empty(struct parse_state *state, const struct config_key *key,
                             char *field, const char *value, int line) {
  if (value[0] == '\0')
    field[0] = '\0';
  else
    set_base_url(state, key, field, value, line);
}

static void set_log_level(struct parse_state *state, const struct config_key *key, char *field,
                          const char *value, int line) {
  (void)key;
  if (!log_level_from_name(value, (enum log_level *)field))
    add_error(state, line, "level: '%s' is not one of error, warning, info, debug", value);
}

static void set_share(struct parse_state *state, const struct config_key *key, char *field,
                      const char *value, int line) {
  if (!parse_share(value, (unsigned *)field))
    add_error(state, line, "%s: '%s' is not a share from 0 to 1 (such as 0.8)", key->name, value);
}

static void set_proxy(struct parse_state *state, const struct config_key *key, char *field,
                      const char *value, int line) {
  const char *problem = parse_proxy_url(value, field, key->size);
  if (problem)
    add_error(state, line, "proxy: '%s' %s", value, problem);
}

static void set_redis(struct parse_state *state, const struct config_key *key, char *field,
                      const char *value, int line) {
  struct config *cfg = state->cfg;
  cfg->shared_on = value[0] != '\0';
  if (cfg->shared_on && (strlen(value) >= key->size ||
                         !config_parse_listen(value, &cfg->shared_addr))) {
    add_error(state, line, "redis: '%s' is not HOST:PORT, [V6]:PORT or unix:/PATH (numeric "
              "addresses only: a name would need a lookup on the loop)", value);
    return;
  }
  strcpy(field, value);
}

static void set_prefix(struct parse_state *state, const struct config_key *key, char *field,
                       const char *value, int line) {
  if (value[0] == '\0' || strlen(value) >= key->size ||
      strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:._-{}") !=
          strlen(value))
    add_error(state, line, "%s: '%s' is not 1 to %zu letters, digits or \":._-{}\"", key->name,
              value, key->size - 1);
  else
    strcpy(field, value);
}

static void set_programs(struct parse_state *state, const struct config_key *key, char *field,
                         const char *value, int line) {
  char problem[96];
  const char *why = parse_programs(value, (struct program_list *)field, problem, sizeof(problem));
  if (why)
    add_error(state, line, "%s: %s %s", key->name, problem, why);
}

static set_fn *const SETTERS[] = {
  [KEY_BOOL] = set_bool,
  [KEY_UINT] = set_uint,
  [KEY_SIZE] = set_size,
  [KEY_STRING] = set_string,
  [KEY_PATH] = set_path,
  [KEY_LISTEN] = set_listen,
  [KEY_BASE_URL] = set_base_url,
  [KEY_URL_OR_EMPTY] = set_url_or_empty,
  [KEY_LOG_LEVEL] = set_log_level,
  [KEY_PATH_OR_EMPTY] = set_path_or_empty,
  [KEY_SHARE] = set_share,
  [KEY_PROXY] = set_proxy,
  [KEY_USERS] = set_access_value,
  [KEY_GROUPS] = set_access_value,
  [KEY_HOSTS] = set_access_value,
  [KEY_ORIGINS] = set_access_value,
  [KEY_GROUP_OR_EMPTY] = set_access_value,
  [KEY_PROGRAMS] = set_programs,
  [KEY_REDIS] = set_redis,
  [KEY_PREFIX] = set_prefix,
};
_Static_assert(sizeof(SETTERS) / sizeof(SETTERS[0]) == KEY_PREFIX + 1, "a parser for every type");

static void set_value(struct parse_state *state, const struct config_key *key, const char *value,
                      int line) {
  SETTERS[key->type](state, key, (char *)state->cfg + key->offset, value, line);
}

static int on_key(void *user, const char *section, const char *name, const char *value) {
  struct parse_state *state = user;
  for (size_t i = 0; i < KEY_COUNT; i++) {
    if (strcmp(KEYS[i].section, section) != 0 || strcmp(KEYS[i].name, name) != 0)
      continue;
    if (state->key_line[i]) {
      add_error(state, state->lineno, "%s: set again (first set at line %d)", name,
                state->key_line[i]);
      return 1;
    }
    state->key_line[i] = state->lineno;
    set_value(state, &KEYS[i], value, state->lineno);
    return 1;
  }
  bool known_section = false;
  for (size_t i = 0; i < KEY_COUNT && !known_section; i++)
    known_section = strcmp(KEYS[i].section, section) == 0;
  if (section[0] == '\0')
    add_error(state, state->lineno, "'%s' is outside any [section]", name);
  else if (!known_section)
    add_error(state, state->lineno, "'%s' is in an unknown section [%s] (the sections are "
              "[server], [upstream], [cache], [warm], [shared] and [log])", name, section);
  else
    add_error(state, state->lineno, "unknown key '%s' in section [%s]", name, section);
  return 1; /* keep going: every error is reported, not only the first */
}

/* Checks the shape of one raw line, so that a syntax error is reported with its line like any
 * other, and so that inih never sees a line it would truncate or misread. Returns false for a
 * line that inih must skip. */
static bool check_line_syntax(struct parse_state *state, const char *line) {
  const char *p = line;
  while (*p == ' ' || *p == '\t')
    p++;
  if (*p == '\0' || *p == '\n' || *p == '\r' || *p == '#' || *p == ';')
    return true;
  if (*p == '[') {
    if (!strchr(p, ']')) {
      add_error(state, state->lineno, "section header without a closing ']'");
      return false;
    }
    return true;
  }
  if (!strpbrk(p, "=:")) {
    add_error(state, state->lineno, "expected 'key = value' or '[section]'");
    return false;
  }
  return true;
}

/* inih's fgets-style reader: counts lines (so that on_key knows its line) and refuses lines
 * longer than inih's buffer instead of letting inih parse their pieces as separate lines. */
static char *read_line(char *out, int out_len, void *stream) {
  struct parse_state *state = stream;
  size_t cap = (size_t)out_len;
  char line[4096];
  size_t len = 0;
  bool got_any = false;
  for (;;) {
    int c;
    if (state->file) {
      c = fgetc(state->file);
    } else {
      c = *state->text ? (unsigned char)*state->text++ : EOF;
    }
    if (c == EOF)
      break;
    got_any = true;
    if (len + 1 < sizeof(line))
      line[len] = (char)c;
    len++;
    if (c == '\n')
      break;
  }
  if (!got_any)
    return NULL;
  state->lineno++;
  if (len + 1 > cap || len + 1 > sizeof(line)) {
    add_error(state, state->lineno, "line longer than %zu characters", cap - 2);
    strcpy(out, "#\n");
    return out;
  }
  line[len] = '\0';
  /* A UTF-8 byte order mark (some Windows editors write one) is not part of the first line. */
  if (state->lineno == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
    memmove(line, line + 3, len - 2);
    len -= 3;
  }
  if (memchr(line, '\0', len)) {
    add_error(state, state->lineno, "line contains a NUL byte");
    strcpy(out, "#\n");
    return out;
  }
  if (!check_line_syntax(state, line)) {
    strcpy(out, "#\n");
    return out;
  }
  memcpy(out, line, len + 1);
  return out;
}

void config_defaults(struct config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  struct config_errors errors = {0};
  struct parse_state state = {.cfg = cfg, .errors = &errors, .name = "(defaults)"};
  for (size_t i = 0; i < KEY_COUNT; i++)
    set_value(&state, &KEYS[i], KEYS[i].default_value, 0);
}

/* The line where the file set [upstream] `name`, or 0. */
static int upstream_key_line(const struct parse_state *state, const char *name) {
  for (size_t i = 0; i < KEY_COUNT; i++)
    if (strcmp(KEYS[i].name, name) == 0 && strcmp(KEYS[i].section, "upstream") == 0)
      return state->key_line[i];
  return 0;
}

/* Rules that involve more than one key, checked once the whole file is read. */
static void check_cross_keys(struct parse_state *state) {
  struct config *cfg = state->cfg;
  int listen_line = 0, oauth_line = 0, allow_users_line = 0, allow_groups_line = 0;
  int per_user_line = 0;
  for (size_t i = 0; i < KEY_COUNT; i++) {
    if (strcmp(KEYS[i].name, "max_connections_per_user") == 0)
      per_user_line = state->key_line[i];
    if (strcmp(KEYS[i].name, "listen") == 0)
      listen_line = state->key_line[i];
    if (strcmp(KEYS[i].name, "oauth_token_url") == 0)
      oauth_line = state->key_line[i];
    if (strcmp(KEYS[i].name, "allow_users") == 0)
      allow_users_line = state->key_line[i];
    if (strcmp(KEYS[i].name, "allow_groups") == 0)
      allow_groups_line = state->key_line[i];
  }
  /* allow_groups alone restricts: the default "*" of allow_users would otherwise admit everyone
   * still, which is not what an operator who names a group means. */
  if (allow_groups_line && !allow_users_line)
    memset(&cfg->allow_users, 0, sizeof(cfg->allow_users));
  if (!cfg->allow_remote) {
    for (size_t i = 0; i < cfg->listen_count; i++) {
      if (!cfg->listen[i].loopback)
        add_error(state, listen_line,
                  "listen: %s is not a loopback address; set allow_remote = yes to permit it",
                  cfg->listen[i].host);
    }
  }
  if (cfg->max_connections_per_user > cfg->max_connections)
    add_error(state, per_user_line,
              "max_connections_per_user: %u is more than max_connections (%u)",
              cfg->max_connections_per_user, cfg->max_connections);
  if (cfg->oauth_token_url[0] && !cfg->oauth_client_id[0])
    add_error(state, oauth_line, "oauth_token_url: needs oauth_client_id as well");
  if (!cfg->client_cert[0] != !cfg->client_key[0])
    add_error(state, upstream_key_line(state, cfg->client_cert[0] ? "client_cert" : "client_key"),
              "client_cert and client_key go together (mutual TLS needs both)");
  /* The credential never crosses a proxy in clear text: a proxy only tunnels to https://. */
  if (cfg->proxy[0] && (strncmp(cfg->base_url, "https://", 8) != 0 ||
                        (cfg->oauth_token_url[0] && strncmp(cfg->oauth_token_url, "https://", 8) != 0)))
    add_error(state, upstream_key_line(state, "proxy"),
              "proxy: only for an https:// base_url and oauth_token_url (the proxy would see the "
              "credential of an http:// request)");
  for (const char *p = cfg->oauth_client_id; *p; p++) {
    if ((unsigned char)*p <= ' ' || *p == ':' || (unsigned char)*p >= 0x7f) {
      add_error(state, oauth_line, "oauth_client_id: only visible ASCII without ':' is allowed");
      break;
    }
  }
}

static void set_inih_options(void) {
  /* Debian's inih takes its options at run time. Inline '#' comments as the shipped file uses
   * them; no multi-line values, since an indented key would otherwise silently continue the value
   * above it. */
  static char inline_prefixes[] = ";#";
  ini_inline_comment_prefixes = inline_prefixes;
  ini_allow_multiline = false;
  ini_stop_on_first_error = false;
}

/* Insertion sort by line, stable: errors found after the whole file was read (cross-key rules)
 * take their place among the others. */
static void sort_errors(struct config_errors *errors) {
  size_t count = errors->count < CONFIG_MAX_ERRORS ? errors->count : CONFIG_MAX_ERRORS;
  for (size_t i = 1; i < count; i++) {
    int line = errors->line[i];
    char text[sizeof(errors->text[0])];
    memcpy(text, errors->text[i], sizeof(text));
    size_t j = i;
    for (; j > 0 && errors->line[j - 1] > line; j--) {
      errors->line[j] = errors->line[j - 1];
      memcpy(errors->text[j], errors->text[j - 1], sizeof(text));
    }
    errors->line[j] = line;
    memcpy(errors->text[j], text, sizeof(text));
  }
}

static int parse(struct parse_state *state) {
  set_inih_options();
  int rc = ini_parse_stream(read_line, state, on_key, state);
  if (rc == -2)
    add_error(state, 0, "out of memory");
  if (rc > 0 && state->errors->count == 0)
    add_error(state, rc, "syntax error");
  check_cross_keys(state);
  sort_errors(state->errors);
  return state->errors->count == 0 ? 0 : -1;
}

void config_each_key(void (*fn)(const char *section, const char *name, const char *default_value,
                                void *arg),
                     void *arg) {
  for (size_t i = 0; i < KEY_COUNT; i++)
    fn(KEYS[i].section, KEYS[i].name, KEYS[i].default_value, arg);
}

/* A key's value as a file would write it, for the reload's log lines (no key holds a secret). */
static void value_text(const struct config_key *key, const struct config *cfg, char *out,
                       size_t out_len) {
  static const char *const LEVELS[] = {"error", "warning", "info", "debug"};
  const char *field = (const char *)cfg + key->offset;
  size_t used = 0;
  out[0] = '\0';
#define APPEND(...)                                                                               \
  do {                                                                                            \
    if (used < out_len)                                                                           \
      used += (size_t)snprintf(out + used, out_len - used, __VA_ARGS__);                          \
  } while (0)
  switch (key->type) {
  case KEY_BOOL:
    APPEND("%s", *(const bool *)field ? "yes" : "no");
    break;
  case KEY_UINT:
    APPEND("%u", *(const unsigned *)field);
    break;
  case KEY_SIZE:
    APPEND("%llu", (unsigned long long)*(const uint64_t *)field);
    break;
  case KEY_LOG_LEVEL:
    APPEND("%s", LEVELS[*(const enum log_level *)field]);
    break;
  case KEY_SHARE:
    APPEND("%u.%03u", *(const unsigned *)field / 1000, *(const unsigned *)field % 1000);
    break;
  case KEY_LISTEN:
    for (size_t i = 0; i < cfg->listen_count; i++) {
      const struct listen_addr *addr = &cfg->listen[i];
      if (addr->kind == LISTEN_UNIX)
        APPEND("%sunix:%s", i ? " " : "", addr->path);
      else if (strchr(addr->host, ':'))
        APPEND("%s[%s]:%u", i ? " " : "", addr->host, addr->port);
      else
        APPEND("%s%s:%u", i ? " " : "", addr->host, addr->port);
    }
    break;
  case KEY_USERS:
  case KEY_GROUPS:
  case KEY_GROUP_OR_EMPTY: {
    const struct id_list *list = (const struct id_list *)field;
    if (list->any)
      APPEND("*");
    for (unsigned i = 0; i < list->count; i++)
      APPEND("%s%u", used ? " " : "", list->ids[i]);
    break;
  }
  case KEY_HOSTS:
  case KEY_ORIGINS: {
    const struct name_list *list = (const struct name_list *)field;
    for (unsigned i = 0; i < list->count; i++)
      APPEND("%s%s", i ? " " : "", list->names[i]);
    break;
  }
  case KEY_PROGRAMS: {
    const struct program_list *list = (const struct program_list *)field;
    for (unsigned i = 0; i < list->count; i++)
      APPEND("%s%s", i ? " " : "", list->ids[i]);
    break;
  }
  default: /* the strings: paths, URLs, the client id */
    APPEND("%s", field);
    break;
  }
#undef APPEND
  if (!out[0])
    snprintf(out, out_len, "(empty)");
}

void config_apply_reload(struct config *live, const struct config *fresh,
                         void (*report)(const struct config_change *change, void *arg),
                         void *arg) {
  for (size_t i = 0; i < KEY_COUNT; i++) {
    const struct config_key *key = &KEYS[i];
    char *live_field = (char *)live + key->offset;
    const char *fresh_field = (const char *)fresh + key->offset;
    bool changed = memcmp(live_field, fresh_field, key->size) != 0;
    if (key->type == KEY_LISTEN)
      changed = changed || live->listen_count != fresh->listen_count;
    if (!changed)
      continue;
    char old_text[256], new_text[256];
    value_text(key, live, old_text, sizeof(old_text));
    value_text(key, fresh, new_text, sizeof(new_text));
    struct config_change change = {.section = key->section, .name = key->name,
                                   .old_value = old_text, .new_value = new_text,
                                   .applied = !key->restart};
    if (!key->restart) {
      memcpy(live_field, fresh_field, key->size);
      if (key->type == KEY_LISTEN)
        live->listen_count = fresh->listen_count;
    }
    report(&change, arg);
  }
}

int config_load(const char *path, struct config *cfg, struct config_errors *errors) {
  memset(errors, 0, sizeof(*errors));
  config_defaults(cfg);
  struct parse_state state = {.cfg = cfg, .errors = errors, .name = path};
  state.file = fopen(path, "re");
  if (!state.file) {
    add_error(&state, 0, "cannot open: %s", strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fileno(state.file), &st) != 0 || !S_ISREG(st.st_mode)) {
    add_error(&state, 0, "not a regular file (a directory?): name the configuration file itself");
    fclose(state.file);
    return -1;
  }
  int rc = parse(&state);
  fclose(state.file);
  return rc;
}

int config_load_string(const char *text, const char *name, struct config *cfg,
                       struct config_errors *errors) {
  memset(errors, 0, sizeof(*errors));
  config_defaults(cfg);
  struct parse_state state = {.cfg = cfg, .errors = errors, .name = name, .text = text};
  return parse(&state);
}

unsigned config_connections_per_user(const struct config *cfg) {
  if (cfg->max_connections_per_user)
    return cfg->max_connections_per_user;
  unsigned quarter = cfg->max_connections / 4;
  return quarter ? quarter : 1;
}
