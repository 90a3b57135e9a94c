#include "config.h"
#include "config_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>



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
  {"shared", "key_file", KEY_PATH_OR_EMPTY, FIELD(shared_key_file), 0, 0, "", true},
  {"shared", "sentinels", KEY_SENTINELS, FIELD(shared_sentinels), 0, 0, "", true},
  {"shared", "sentinel_master", KEY_NAME_OR_EMPTY, FIELD(sentinel_master), 0, 0, "", true},
  {"shared", "sentinel_password_file", KEY_PATH_OR_EMPTY, FIELD(sentinel_password_file), 0, 0, "",
   true},
  {"shared", "prefix", KEY_PREFIX, FIELD(shared_prefix), 0, 0, "flipcached:", true},
  {"shared", "timeout_ms", KEY_UINT, FIELD(shared_timeout_ms), 1, 60000, "200", false},
  {"log", "level", KEY_LOG_LEVEL, FIELD(log_level), 0, 0, "info", false},
  {"log", "access", KEY_BOOL, FIELD(access_log), 0, 0, "no", false},
};
#define KEY_COUNT (sizeof(KEYS) / sizeof(KEYS[0]))
_Static_assert(KEY_COUNT <= CONFIG_KEY_MAX, "key_line holds every key");

void config_add_error(struct parse_state *state, int line, const char *fmt, ...) {
  struct config_errors *errors = state->errors;
  if (errors->count < CONFIG_MAX_ERRORS) {
    char message[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    if (line > 0)
      snprintf(errors->text[errors->count], sizeof(errors->text[0]), "%s:%d: %s", state->name,
               line, message);
    else /* the file as a whole: no line to name */
      snprintf(errors->text[errors->count], sizeof(errors->text[0]), "%s: %s", state->name,
               message);
    errors->line[errors->count] = line;
  }
  errors->count++;
}

/* Levenshtein distance of a and b, both shorter than 64 characters (else "far": 64). */
static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la >= 64 || lb >= 64)
    return 64;
  size_t row[64];
  for (size_t j = 0; j <= lb; j++)
    row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t above = row[j];
      size_t best = diagonal + (a[i - 1] != b[j - 1]);
      if (above + 1 < best)
        best = above + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diagonal = above;
    }
  }
  return row[lb];
}

/* The key an unknown name most likely meant: within two edits, the same section's first; else
 * another section's (with its section named). "" when none is that close. */
static void suggest_key(const char *section, const char *name, char *out, size_t len) {
  const struct config_key *best = NULL;
  size_t best_distance = 3;
  for (int pass = 0; pass < 2 && !best; pass++)
    for (size_t i = 0; i < KEY_COUNT; i++) {
      if ((strcmp(KEYS[i].section, section) == 0) != (pass == 0))
        continue;
      size_t distance = edit_distance(name, KEYS[i].name);
      if (distance < best_distance) {
        best_distance = distance;
        best = &KEYS[i];
      }
    }
  if (!best)
    out[0] = '\0';
  else if (strcmp(best->section, section) == 0)
    snprintf(out, len, " (did you mean %s?)", best->name);
  else
    snprintf(out, len, " (did you mean %s in [%s]?)", best->name, best->section);
}

static int on_key(void *user, const char *section, const char *name, const char *value) {
  struct parse_state *state = user;
  for (size_t i = 0; i < KEY_COUNT; i++) {
    if (strcmp(KEYS[i].section, section) != 0 || strcmp(KEYS[i].name, name) != 0)
      continue;
    if (state->key_line[i]) {
      config_add_error(state, state->lineno, "%s: set again (first set at line %d)", name,
                state->key_line[i]);
      return 1;
    }
    state->key_line[i] = state->lineno;
    config_set_value(state, &KEYS[i], value, state->lineno);
    return 1;
  }
  bool known_section = false;
  for (size_t i = 0; i < KEY_COUNT && !known_section; i++)
    known_section = strcmp(KEYS[i].section, section) == 0;
  if (section[0] == '\0')
    config_add_error(state, state->lineno, "'%s' is outside any [section]", name);
  else if (!known_section)
    config_add_error(state, state->lineno, "'%s' is in an unknown section [%s] (the sections are "
              "[server], [upstream], [cache], [warm], [shared] and [log])", name, section);
  else {
    char suggestion[96];
    suggest_key(section, name, suggestion, sizeof(suggestion));
    config_add_error(state, state->lineno, "unknown key '%s' in section [%s]%s", name, section,
                     suggestion);
  }
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
      config_add_error(state, state->lineno, "section header without a closing ']'");
      return false;
    }
    return true;
  }
  if (!strpbrk(p, "=:")) {
    config_add_error(state, state->lineno, "expected 'key = value' or '[section]'");
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
    config_add_error(state, state->lineno, "line longer than %zu characters", cap - 2);
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
    config_add_error(state, state->lineno, "line contains a NUL byte");
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
    config_set_value(&state, &KEYS[i], KEYS[i].default_value, 0);
}

/* The line where the file set [upstream] `name`, or 0. */
static int upstream_key_line(const struct parse_state *state, const char *name) {
  for (size_t i = 0; i < KEY_COUNT; i++)
    if (strcmp(KEYS[i].name, name) == 0 && strcmp(KEYS[i].section, "upstream") == 0)
      return state->key_line[i];
  return 0;
}

/* systemd's copy of the shared key ($CREDENTIALS_DIRECTORY/flip-shared-key) exists. */
static bool shared_key_credential_exists(void) {
  const char *dir = getenv("CREDENTIALS_DIRECTORY");
  char path[PATH_MAX];
  int n = dir && dir[0] ? snprintf(path, sizeof(path), "%s/%s", dir, CONFIG_SHARED_KEY_CREDENTIAL)
                        : -1;
  return n > 0 && (size_t)n < sizeof(path) && access(path, F_OK) == 0;
}

/* Rules that involve more than one key, checked once the whole file is read. */
static void check_cross_keys(struct parse_state *state) {
  struct config *cfg = state->cfg;
  int listen_line = 0, oauth_line = 0, allow_users_line = 0, allow_groups_line = 0;
  int per_user_line = 0, redis_line = 0, sentinels_line = 0, master_line = 0;
  int sentinel_password_line = 0;
  for (size_t i = 0; i < KEY_COUNT; i++) {
    if (strcmp(KEYS[i].name, "redis") == 0)
      redis_line = state->key_line[i];
    if (strcmp(KEYS[i].name, "sentinels") == 0)
      sentinels_line = state->key_line[i];
    if (strcmp(KEYS[i].name, "sentinel_master") == 0)
      master_line = state->key_line[i];
    if (strcmp(KEYS[i].name, "sentinel_password_file") == 0)
      sentinel_password_line = state->key_line[i];
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
        config_add_error(state, listen_line,
                  "listen: %s is not a loopback address; set allow_remote = yes to permit it",
                  cfg->listen[i].host);
    }
  }
  if (cfg->max_connections_per_user > cfg->max_connections)
    config_add_error(state, per_user_line,
              "max_connections_per_user: %u is more than max_connections (%u)",
              cfg->max_connections_per_user, cfg->max_connections);
  if (cfg->oauth_token_url[0] && !cfg->oauth_client_id[0])
    config_add_error(state, oauth_line, "oauth_token_url: needs oauth_client_id as well");
  if (!cfg->client_cert[0] != !cfg->client_key[0])
    config_add_error(state, upstream_key_line(state, cfg->client_cert[0] ? "client_cert" : "client_key"),
              "client_cert and client_key go together (mutual TLS needs both)");
  /* The credential never crosses a proxy in clear text: a proxy only tunnels to https://. */
  if (cfg->proxy[0] && (strncmp(cfg->base_url, "https://", 8) != 0 ||
                        (cfg->oauth_token_url[0] && strncmp(cfg->oauth_token_url, "https://", 8) != 0)))
    config_add_error(state, upstream_key_line(state, "proxy"),
              "proxy: only for an https:// base_url and oauth_token_url (the proxy would see the "
              "credential of an http:// request)");
  /* One Redis: named, or found through the sentinels, never both. */
  bool sentinels = cfg->sentinel_count > 0;
  cfg->shared_on = cfg->shared_redis[0] != '\0' || sentinels;
  if (cfg->shared_redis[0] && sentinels)
    config_add_error(state, sentinels_line, "sentinels: not with redis (the sentinels say where "
              "the master is; name one or the other)");
  if (sentinels && !cfg->sentinel_master[0])
    config_add_error(state, sentinels_line, "sentinels: needs sentinel_master, the name they "
              "monitor");
  if (cfg->sentinel_master[0] && !sentinels)
    config_add_error(state, master_line, "sentinel_master: needs sentinels");
  if (cfg->sentinel_password_file[0] && !sentinels)
    config_add_error(state, sentinel_password_line, "sentinel_password_file: needs sentinels");
  /* The shared tier holds nothing in clear: no Redis without the key that seals it. */
  if (cfg->shared_on && !cfg->shared_key_file[0] && !shared_key_credential_exists())
    config_add_error(state, redis_line ? redis_line : sentinels_line,
              "%s: needs key_file, the fleet's shared key (hex, one key a line: openssl rand "
              "-hex 32), or systemd's credential " CONFIG_SHARED_KEY_CREDENTIAL,
              redis_line || !sentinels ? "redis" : "sentinels");
  for (const char *p = cfg->oauth_client_id; *p; p++) {
    if ((unsigned char)*p <= ' ' || *p == ':' || (unsigned char)*p >= 0x7f) {
      config_add_error(state, oauth_line, "oauth_client_id: only visible ASCII without ':' is allowed");
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
    config_add_error(state, 0, "out of memory");
  if (rc > 0 && state->errors->count == 0)
    config_add_error(state, rc, "syntax error");
  check_cross_keys(state);
  sort_errors(state->errors);
  return state->errors->count == 0 ? 0 : -1;
}

void config_each_key(void (*fn)(const char *section, const char *name, const char *default_value,
                                bool needs_restart, void *arg),
                     void *arg) {
  for (size_t i = 0; i < KEY_COUNT; i++)
    fn(KEYS[i].section, KEYS[i].name, KEYS[i].default_value, KEYS[i].restart, arg);
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
    config_add_error(&state, 0, "cannot open: %s", strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fileno(state.file), &st) != 0 || !S_ISREG(st.st_mode)) {
    config_add_error(&state, 0, "not a regular file (a directory?): name the configuration file itself");
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
