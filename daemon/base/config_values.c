/* config_values: one parser a key type (config_internal.h's set_fn table): each sets the key's
 * field from the text of its value, or adds an error naming the line. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "access_lists.h"
#include "config_internal.h"
#include "log.h"

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
    config_add_error(state, line, "%s: %s", key->name, why);
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
    config_add_error(state, line, "%s: '%s' is not a boolean (use yes or no)", key->name, value);
}

static void set_uint(struct parse_state *state, const struct config_key *key, char *field,
                     const char *value, int line) {
  uint64_t number;
  if (!parse_uint(value, &number))
    config_add_error(state, line, "%s: '%s' is not a whole number", key->name, value);
  else if (number < key->min || number > key->max)
    config_add_error(state, line, "%s: %s is out of range [%llu, %llu]", key->name, value,
              (unsigned long long)key->min, (unsigned long long)key->max);
  else
    *(unsigned *)field = (unsigned)number;
}

static void set_size(struct parse_state *state, const struct config_key *key, char *field,
                     const char *value, int line) {
  uint64_t number;
  if (!config_parse_size(value, &number))
    config_add_error(state, line, "%s: '%s' is not a size (a number with an optional K, M or G)",
              key->name, value);
  else if (number < key->min || number > key->max)
    config_add_error(state, line, "%s: %s is out of range [%lluK, %lluG]", key->name, value,
              (unsigned long long)key->min >> 10, (unsigned long long)key->max >> 30);
  else
    *(uint64_t *)field = number;
}

static void set_string(struct parse_state *state, const struct config_key *key, char *field,
                       const char *value, int line) {
  if (strlen(value) >= key->size)
    config_add_error(state, line, "%s: longer than %zu characters", key->name, key->size - 1);
  else
    strcpy(field, value);
}

static void set_path(struct parse_state *state, const struct config_key *key, char *field,
                     const char *value, int line) {
  if (value[0] == '\0')
    config_add_error(state, line, "%s: must not be empty", key->name);
  else
    set_string(state, key, field, value, line);
}

static void set_path_or_empty(struct parse_state *state, const struct config_key *key,
                              char *field, const char *value, int line) {
  if (value[0] && value[0] != '/')
    config_add_error(state, line, "%s: '%s' is not an absolute path", key->name, value);
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
    config_add_error(state, line, "listen: value too long");
    return;
  }
  strcpy(copy, value);
  char *saveptr = NULL;
  for (char *item = strtok_r(copy, " \t", &saveptr); item; item = strtok_r(NULL, " \t", &saveptr)) {
    if (cfg->listen_count == CONFIG_MAX_LISTEN) {
      config_add_error(state, line, "listen: more than %d addresses", CONFIG_MAX_LISTEN);
      return;
    }
    if (!config_parse_listen(item, &cfg->listen[cfg->listen_count]))
      config_add_error(state, line,
                "listen: '%s' is not 127.0.0.1:PORT, [::1]:PORT or unix:/PATH (numeric "
                "addresses only)", item);
    else
      cfg->listen_count++;
  }
  if (cfg->listen_count == 0 && state->errors->count == 0)
    config_add_error(state, line, "listen: needs at least one address");
}

static void set_base_url(struct parse_state *state, const struct config_key *key, char *field,
                         const char *value, int line) {
  const char *problem = parse_base_url(value, field, key->size);
  if (problem)
    config_add_error(state, line, "%s: '%s' %s", key->name, value, problem);
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
    config_add_error(state, line, "level: '%s' is not one of error, warning, info, debug", value);
}

static void set_share(struct parse_state *state, const struct config_key *key, char *field,
                      const char *value, int line) {
  if (!parse_share(value, (unsigned *)field))
    config_add_error(state, line, "%s: '%s' is not a share from 0 to 1 (such as 0.8)", key->name, value);
}

static void set_proxy(struct parse_state *state, const struct config_key *key, char *field,
                      const char *value, int line) {
  const char *problem = parse_proxy_url(value, field, key->size);
  if (problem)
    config_add_error(state, line, "proxy: '%s' %s", value, problem);
}

static void set_redis(struct parse_state *state, const struct config_key *key, char *field,
                      const char *value, int line) {
  struct config *cfg = state->cfg;
  if (value[0] != '\0' && (strlen(value) >= key->size ||
                         !config_parse_listen(value, &cfg->shared_addr))) {
    config_add_error(state, line, "redis: '%s' is not HOST:PORT, [V6]:PORT or unix:/PATH (numeric "
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
    config_add_error(state, line, "%s: '%s' is not 1 to %zu letters, digits or \":._-{}\"", key->name,
              value, key->size - 1);
  else
    strcpy(field, value);
}

static void set_sentinels(struct parse_state *state, const struct config_key *key, char *field,
                          const char *value, int line) {
  struct config *cfg = state->cfg;
  cfg->sentinel_count = 0;
  if (strlen(value) >= key->size) {
    config_add_error(state, line, "sentinels: value too long");
    return;
  }
  char copy[512];
  strcpy(copy, value);
  char *saveptr = NULL;
  for (char *item = strtok_r(copy, " \t", &saveptr); item; item = strtok_r(NULL, " \t", &saveptr)) {
    if (cfg->sentinel_count == CONFIG_MAX_SENTINELS) {
      config_add_error(state, line, "sentinels: more than %d addresses", CONFIG_MAX_SENTINELS);
      return;
    }
    struct listen_addr *addr = &cfg->sentinels[cfg->sentinel_count];
    if (!config_parse_listen(item, addr) || addr->kind != LISTEN_TCP)
      config_add_error(state, line, "sentinels: '%s' is not HOST:PORT or [V6]:PORT (numeric "
                "addresses only: a name would need a lookup on the loop)", item);
    else
      cfg->sentinel_count++;
  }
  strcpy(field, value);
}

static void set_name_or_empty(struct parse_state *state, const struct config_key *key,
                              char *field, const char *value, int line) {
  if (value[0] == '\0')
    field[0] = '\0';
  else
    set_prefix(state, key, field, value, line);
}

static void set_programs(struct parse_state *state, const struct config_key *key, char *field,
                         const char *value, int line) {
  char problem[96];
  const char *why = parse_programs(value, (struct program_list *)field, problem, sizeof(problem));
  if (why)
    config_add_error(state, line, "%s: %s %s", key->name, problem, why);
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
  [KEY_SENTINELS] = set_sentinels,
  [KEY_NAME_OR_EMPTY] = set_name_or_empty,
};
_Static_assert(sizeof(SETTERS) / sizeof(SETTERS[0]) == KEY_NAME_OR_EMPTY + 1,
               "a parser for every type");

void config_set_value(struct parse_state *state, const struct config_key *key, const char *value,
                      int line) {
  SETTERS[key->type](state, key, (char *)state->cfg + key->offset, value, line);
}
