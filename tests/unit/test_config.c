/* config: defaults, values, and every error reported with its line. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <dirent.h>
#include <criterion/parameterized.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static struct config cfg;
static struct config_errors errors;

static bool has_error(const char *needle) {
  for (size_t i = 0; i < errors.count && i < CONFIG_MAX_ERRORS; i++) {
    if (strstr(errors.text[i], needle))
      return true;
  }
  return false;
}

static void dump_errors(void) {
  for (size_t i = 0; i < errors.count && i < CONFIG_MAX_ERRORS; i++)
    cr_log_info("%s", errors.text[i]);
}

Test(config, defaults_match_the_contract) {
  config_defaults(&cfg);
  cr_assert_eq(cfg.listen_count, 1);
  cr_expect_str_eq(cfg.listen[0].host, "127.0.0.1");
  cr_expect_eq(cfg.listen[0].port, 8750);
  cr_expect_not(cfg.allow_remote);
  cr_expect(cfg.admin);
  cr_expect_eq(cfg.max_connections, 1024);
  cr_expect_str_eq(cfg.base_url, "https://api-utility.flip.energy");
  cr_expect_str_eq(cfg.token_file, "/etc/flipcached/token");
  cr_expect_str_eq(cfg.oauth_token_url, "");
  cr_expect_eq(cfg.connect_timeout_ms, 3000);
  cr_expect_eq(cfg.timeout_ms, 10000);
  cr_expect_eq(cfg.upstream_max_connections, 16);
  cr_expect_str_eq(cfg.cache_path, "/var/cache/flipcached");
  cr_expect_eq(cfg.max_size, 256ull << 20);
  cr_expect_eq(cfg.ttl, 300);
  cr_expect_eq(cfg.stale_while_revalidate, 60);
  cr_expect_eq(cfg.stale_if_error, 86400);
  cr_expect_eq(cfg.negative_ttl, 30);
  cr_expect_eq(cfg.sweep_interval, 60);
  cr_expect_eq(cfg.log_level, LOG_LEVEL_INFO);
}

Test(config, a_full_file_with_comments_parses) {
  const char *text =
      "# flipcached\n"
      "; another comment style\n"
      "[server]\n"
      "listen = 127.0.0.1:9000 [::1]:9001 unix:/run/flipcached/http.sock   # three\n"
      "allow_remote = no\n"
      "admin = off\n"
      "max_connections = 64\n"
      "\n"
      "[upstream]\n"
      "base_url = https://api-utility-sandbox.flip.energy/\n"
      "token_file = /etc/flipcached/token ; inline\n"
      "connect_timeout_ms = 500\n"
      "timeout_ms = 2500\n"
      "max_connections = 4\n"
      "[cache]\n"
      "path = /tmp/x\n"
      "max_size = 1G\n"
      "ttl = 60\n"
      "stale_while_revalidate = 0\n"
      "stale_if_error = 3600\n"
      "negative_ttl = 5\n"
      "[log]\n"
      "level = debug\n";
  int rc = config_load_string(text, "test.conf", &cfg, &errors);
  dump_errors();
  cr_assert_eq(rc, 0);
  cr_assert_eq(cfg.listen_count, 3);
  cr_expect_eq(cfg.listen[1].port, 9001);
  cr_expect_str_eq(cfg.listen[1].host, "::1");
  cr_expect(cfg.listen[1].loopback);
  cr_expect_eq(cfg.listen[2].kind, LISTEN_UNIX);
  cr_expect_str_eq(cfg.listen[2].path, "/run/flipcached/http.sock");
  cr_expect_not(cfg.admin);
  cr_expect_eq(cfg.max_connections, 64);
  cr_expect_str_eq(cfg.base_url, "https://api-utility-sandbox.flip.energy", "trailing slash dropped");
  cr_expect_str_eq(cfg.token_file, "/etc/flipcached/token");
  cr_expect_eq(cfg.timeout_ms, 2500);
  cr_expect_eq(cfg.upstream_max_connections, 4);
  cr_expect_eq(cfg.max_size, 1ull << 30);
  cr_expect_eq(cfg.ttl, 60);
  cr_expect_eq(cfg.stale_while_revalidate, 0);
  cr_expect_eq(cfg.log_level, LOG_LEVEL_DEBUG);
}

struct bad_config {
  char text[160];
  char error[120]; /* a part of the expected message, with its line */
};

ParameterizedTestParameters(config, bad_values_name_their_line) {
  static struct bad_config cases[] = {
    {"[server]\nlisten = 10.1.2.3:80\n", "t.conf:2: listen: 10.1.2.3 is not a loopback address"},
    {"[server]\nlisten = 0.0.0.0:80\n", "t.conf:2: listen: 0.0.0.0 is not a loopback"},
    {"[server]\nlisten = localhost:80\n", "t.conf:2: listen: 'localhost:80' is not"},
    {"[server]\nlisten = 127.0.0.1:0\n", "t.conf:2: listen: '127.0.0.1:0'"},
    {"[server]\nlisten = 127.0.0.1:65536\n", "t.conf:2: listen"},
    {"[server]\nlisten = unix:relative.sock\n", "t.conf:2: listen: 'unix:relative.sock'"},
    {"[server]\nlisten =\n", "t.conf:2: listen: needs at least one address"},
    {"[server]\nallow_remote = maybe\n", "t.conf:2: allow_remote: 'maybe' is not a boolean"},
    {"[server]\nmax_connections = 0\n", "t.conf:2: max_connections: 0 is out of range"},
    {"[server]\nmax_connections = 10\n\nmax_connections_per_user = 11\n",
     "t.conf:4: max_connections_per_user: 11 is more than max_connections (10)"},
    {"\n[upstream]\nbase_url = http://api-utility.flip.energy\n", "t.conf:3: base_url: 'http://api-utility.flip.energy' http:// is accepted only for a loopback"},
    {"[upstream]\nbase_url = ftp://x\n", "t.conf:2: base_url: 'ftp://x' must start with https://"},
    {"[upstream]\nbase_url = https://user:pw@api.example\n", "t.conf:2: base_url: 'https://user:pw@api.example' must not carry user information"},
    {"[upstream]\nbase_url = https://api.example/?q=1\n", "must not have a query"},
    {"[upstream]\nbase_url = https://\n", "t.conf:2: base_url: 'https://' has no host"},
    {"[upstream]\ntimeout_ms = 10s\n", "t.conf:2: timeout_ms: '10s' is not a whole number"},
    {"[upstream]\ntoken_file =\n", "t.conf:2: token_file: must not be empty"},
    {"[upstream]\noauth_token_url = https://oauth.flip.energy/token\n", "t.conf:2: oauth_token_url: needs oauth_client_id as well"},
    {"[upstream]\noauth_token_url = http://oauth.flip.energy/token\noauth_client_id = c\n", "t.conf:2: oauth_token_url: 'http://oauth.flip.energy/token' http:// is accepted only for a loopback"},
    {"[upstream]\noauth_token_url = https://x/token\noauth_client_id = a:b\n", "oauth_client_id: only visible ASCII without ':'"},
    {"[cache]\nmax_size = 12Q\n", "t.conf:2: max_size: '12Q' is not a size"},
    {"[cache]\nmax_size = 1K\n", "t.conf:2: max_size: 1K is out of range"},
    {"[cache]\nttl = -1\n", "t.conf:2: ttl: '-1' is not a whole number"},
    {"[cache]\nttl = 99999999999999999999999\n", "t.conf:2: ttl"},
    {"[log]\nlevel = loud\n", "t.conf:2: level: 'loud' is not one of error, warning, info, debug"},
    {"[cache]\nsweep_interval = 0\n", "t.conf:2: sweep_interval: 0 is out of range [1, 86400]"},
    {"[server]\nbogus = 1\n", "t.conf:2: unknown key 'bogus' in section [server]"},
    {"[nosuch]\nttl = 1\n", "t.conf:2: 'ttl' is in an unknown section [nosuch]"},
    {"[cach]\nttl = 1\n", "t.conf:2: 'ttl' is in an unknown section [cach] (the sections are"},
    {"ttl = 1\n", "t.conf:1: 'ttl' is outside any [section]"},
    {"[cache]\nttl = 1\nttl = 2\n", "t.conf:3: ttl: set again (first set at line 2)"},
    {"[cache\n", "t.conf:1: section header without a closing ']'"},
    {"[cache]\njust words\n", "t.conf:2: expected 'key = value' or '[section]'"},
  };
  return cr_make_param_array(struct bad_config, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct bad_config *c, config, bad_values_name_their_line) {
  cr_assert_eq(config_load_string(c->text, "t.conf", &cfg, &errors), -1, "accepted: %s", c->text);
  dump_errors();
  cr_expect(has_error(c->error), "expected an error containing \"%s\"", c->error);
}

Test(config, every_error_is_reported_in_line_order) {
  const char *text = "[server]\n"
                     "listen = 10.0.0.1:80\n"  /* 2: non-loopback, found after the whole file */
                     "bogus = 1\n"             /* 3 */
                     "[cache]\n"
                     "ttl = x\n"               /* 5 */
                     "junk\n"                  /* 6 */
                     "[log]\n"
                     "level = loud\n";         /* 8 */
  cr_assert_eq(config_load_string(text, "t.conf", &cfg, &errors), -1);
  cr_assert_eq(errors.count, 5);
  const char *lines[] = {"t.conf:2:", "t.conf:3:", "t.conf:5:", "t.conf:6:", "t.conf:8:"};
  for (size_t i = 0; i < 5; i++)
    cr_expect(strncmp(errors.text[i], lines[i], strlen(lines[i])) == 0, "error %zu: %s", i,
              errors.text[i]);
}

Test(config, allow_remote_permits_any_address_in_either_order) {
  const char *text = "[server]\nlisten = 0.0.0.0:8750\nallow_remote = yes\n";
  cr_expect_eq(config_load_string(text, "t.conf", &cfg, &errors), 0);
  cr_expect_not(cfg.listen[0].loopback);
}

Test(config, http_is_accepted_for_loopback_hosts) {
  const char *hosts[] = {"http://127.0.0.1:8751", "http://localhost:9000/prefix", "http://[::1]:80",
                         "http://127.1.2.3"};
  for (size_t i = 0; i < 4; i++) {
    char text[200];
    snprintf(text, sizeof(text), "[upstream]\nbase_url = %s\n", hosts[i]);
    cr_expect_eq(config_load_string(text, "t.conf", &cfg, &errors), 0, "%s refused", hosts[i]);
  }
}

Test(config, indented_keys_are_keys_not_continuations) {
  const char *text = "[cache]\npath = /tmp/a\n  ttl = 7\n";
  cr_assert_eq(config_load_string(text, "t.conf", &cfg, &errors), 0);
  cr_expect_str_eq(cfg.cache_path, "/tmp/a");
  cr_expect_eq(cfg.ttl, 7);
}

Test(config, an_overlong_line_is_an_error_not_two_lines) {
  char text[600];
  snprintf(text, sizeof(text), "[cache]\npath = /%0400d\n", 0);
  cr_assert_eq(config_load_string(text, "t.conf", &cfg, &errors), -1);
  cr_expect(has_error("t.conf:2: line longer than"));
  cr_expect_eq(errors.count, 1);
}

Test(config, a_missing_file_is_an_error) {
  cr_assert_eq(config_load("/nonexistent/flipcached.conf", &cfg, &errors), -1);
  cr_expect(has_error("/nonexistent/flipcached.conf: cannot open: No such file"),
            "the file named as such, no line 0");
}

Test(config, an_unknown_key_close_to_a_known_one_gets_a_did_you_mean) {
  cr_assert_eq(config_load_string("[server]\nlistn = 127.0.0.1:1\n[cache]\nttll = 5\n"
                                  "timeout_ms = 5\nfrobnicate = 1\n",
                                  "t.conf", &cfg, &errors), -1);
  cr_expect(has_error("t.conf:2: unknown key 'listn' in section [server] (did you mean listen?)"));
  cr_expect(has_error("t.conf:4: unknown key 'ttll' in section [cache] (did you mean ttl?)"));
  cr_expect(has_error("t.conf:5: unknown key 'timeout_ms' in section [cache] (did you mean "
                      "timeout_ms in [upstream]?)"), "another section's key, named with it");
  cr_expect(has_error("t.conf:6: unknown key 'frobnicate' in section [cache]"));
  cr_expect_not(has_error("frobnicate' in section [cache] (did"), "nothing close: no guess");
}

Test(config, sizes) {
  uint64_t bytes;
  cr_expect(config_parse_size("1024", &bytes) && bytes == 1024);
  cr_expect(config_parse_size("64K", &bytes) && bytes == 65536);
  cr_expect(config_parse_size("256m", &bytes) && bytes == 256ull << 20);
  cr_expect(config_parse_size("2G", &bytes) && bytes == 2ull << 30);
  cr_expect_not(config_parse_size("", &bytes));
  cr_expect_not(config_parse_size("M", &bytes));
  cr_expect_not(config_parse_size("1MB", &bytes));
  cr_expect_not(config_parse_size("-1M", &bytes));
  cr_expect_not(config_parse_size("1 M", &bytes));
  cr_expect_not(config_parse_size("99999999999999999999G", &bytes));
}

static char restart_keys[512];

static char applied_keys[1024];

static void collect_restart(const struct config_change *change, void *arg) {
  (void)arg;
  char item[200];
  if (change->applied) {
    snprintf(item, sizeof(item), "%s: %s -> %s;", change->name, change->old_value, change->new_value);
    strcat(applied_keys, item);
    return;
  }
  snprintf(item, sizeof(item), "[%s] %s;", change->section, change->name);
  strcat(restart_keys, item);
}

Test(config, reload_applies_live_keys_and_names_the_rest) {
  struct config live, fresh;
  cr_assert_eq(config_load_string("[cache]\nttl = 300\n", "a.conf", &live, &errors), 0);
  cr_assert_eq(config_load_string("[server]\nlisten = 127.0.0.1:9999\nadmin = no\n"
                                  "[upstream]\ntimeout_ms = 1234\nmax_connections = 3\n"
                                  "[cache]\nttl = 42\nmax_size = 1G\n[log]\nlevel = debug\n",
                                  "b.conf", &fresh, &errors), 0);
  restart_keys[0] = applied_keys[0] = '\0';
  config_apply_reload(&live, &fresh, collect_restart, NULL);
  cr_expect_str_eq(applied_keys, "admin: yes -> no;timeout_ms: 10000 -> 1234;ttl: 300 -> 42;"
                                 "level: info -> debug;");
  cr_expect_eq(live.ttl, 42);
  cr_expect_eq(live.timeout_ms, 1234);
  cr_expect_not(live.admin);
  cr_expect_eq(live.log_level, LOG_LEVEL_DEBUG);
  cr_expect_eq(live.listen[0].port, 8750, "listeners need a restart");
  cr_expect_eq(live.upstream_max_connections, 16);
  cr_expect_eq(live.max_size, 256ull << 20);
  cr_expect_str_eq(restart_keys, "[server] listen;[upstream] max_connections;[cache] max_size;");
}

Test(config, reload_of_the_same_file_changes_nothing) {
  struct config live, fresh;
  config_defaults(&live);
  config_defaults(&fresh);
  restart_keys[0] = '\0';
  config_apply_reload(&live, &fresh, collect_restart, NULL);
  cr_expect_str_eq(restart_keys, "");
}

/* The shipped configuration and the man page keep up with the table of keys. */
struct documents {
  char *conf;
  char *manual;
};

static char *read_text(const char *path) {
  FILE *file = fopen(path, "r");
  cr_assert_not_null(file, "%s", path);
  fseek(file, 0, SEEK_END);
  long len = ftell(file);
  rewind(file);
  char *text = calloc(1, (size_t)len + 1);
  cr_assert_eq(fread(text, 1, (size_t)len, file), (size_t)len);
  fclose(file);
  return text;
}

/* The comment that documents the key line at `key` in the shipped configuration: the '#' lines
 * right above it, or above the key lines right above it (keys documented together). */
static void comment_above(const char *text, const char *key, char *out, size_t len) {
  const char *end = key; /* the start of the key's line */
  const char *start = end;
  bool in_comment = false;
  while (start > text) {
    const char *line = start - 1;
    while (line > text && line[-1] != '\n')
      line--;
    if (line[0] == '#')
      in_comment = true;
    else if (in_comment || line[0] == '\n' || line[0] == '[')
      break;
    start = line;
  }
  while (start < end && start[0] != '#') /* the key lines above, if any */
    start = strchr(start, '\n') + 1;
  size_t n = (size_t)(end - start) < len - 1 ? (size_t)(end - start) : len - 1;
  memcpy(out, start, n);
  out[n] = '\0';
}

static void check_documented(const char *section, const char *name, const char *default_value,
                             bool needs_restart, void *arg) {
  struct documents *documents = arg;
  char header[64], line[300], entry[128];
  snprintf(header, sizeof(header), "\n[%s]\n", section);
  if (default_value[0])
    snprintf(line, sizeof(line), "\n%s = %s\n", name, default_value);
  else
    snprintf(line, sizeof(line), "\n%s =\n", name); /* an empty default: no trailing space */
  const char *section_start = strstr(documents->conf, header);
  cr_assert_not_null(section_start, "conf/flipcached.conf has no [%s]", section);
  const char *next_section = strstr(section_start + 1, "\n[");
  const char *found = strstr(section_start, line);
  cr_expect(found && (!next_section || found < next_section),
            "conf/flipcached.conf lacks \"%s = %s\" in [%s]", name, default_value, section);
  if (found) {
    char comment[4096];
    comment_above(documents->conf, found + 1, comment, sizeof(comment));
    cr_expect_eq(strstr(comment, "(restart)") != NULL, needs_restart,
                 "[%s] %s %s in conf/flipcached.conf:\n%s", section, name,
                 needs_restart ? "needs a restart, which its comment does not say"
                               : "is applied by a reload, but its comment says (restart)",
                 comment);
  }
  snprintf(entry, sizeof(entry), ".It Cm %s ", name);
  cr_expect(strstr(documents->manual, entry) != NULL, "flipcached.conf(5) lacks %s", name);
}

/* docs/configuration.md: each key in a row of its table (alone, "`[section] name`", or after the
 * row's first key, "`name`"), and the row's "on SIGHUP" column right. */
static void check_reference_row(const char *section, const char *name, const char *default_value,
                                bool needs_restart, void *arg) {
  (void)default_value;
  const char *reference = arg;
  char first[96], later[96], row_start[64];
  snprintf(first, sizeof(first), "`[%s] %s`", section, name);
  snprintf(later, sizeof(later), ", `%s`", name);
  snprintf(row_start, sizeof(row_start), "\n| `[%s] ", section);
  const char *row = NULL;
  for (const char *p = reference; !row && (p = strstr(p, row_start)) != NULL; p++) {
    const char *key_cell_end = strstr(p + 3, " | ");
    size_t key_len = (size_t)(key_cell_end - p);
    char key_cell[512];
    snprintf(key_cell, sizeof(key_cell), "%.*s", (int)key_len, p);
    if (strstr(key_cell, first) || strstr(key_cell, later))
      row = p;
  }
  cr_expect(row != NULL, "docs/configuration.md has no row for [%s] %s", section, name);
  if (!row)
    return;
  /* | key | default | on SIGHUP | ... : the third cell */
  const char *cell = row + 2;
  for (int i = 0; i < 2 && cell; i++)
    cell = strstr(cell, " | ") ? strstr(cell, " | ") + 3 : NULL;
  cr_assert_not_null(cell);
  const char *expected = needs_restart ? "restart | " : "reload | ";
  cr_expect(strncmp(cell, expected, strlen(expected)) == 0,
            "docs/configuration.md: [%s] %s should say %.*s", section, name,
            (int)strlen(expected) - 3, expected);
}

Test(config, every_key_is_in_docs_configuration_md_with_whether_a_reload_applies_it) {
  char *reference = read_text(SOURCE_DIR "/docs/configuration.md");
  config_each_key(check_reference_row, reference);
  free(reference);
}

Test(config, every_key_is_documented_with_its_default) {
  struct documents documents = {read_text(SOURCE_DIR "/conf/flipcached.conf"),
                                read_text(SOURCE_DIR "/docs/flipcached.conf.5")};
  config_each_key(check_documented, &documents);
  cr_expect_eq(config_load(SOURCE_DIR "/conf/flipcached.conf", &cfg, &errors), 0);
  free(documents.conf);
  free(documents.manual);
}

/* The reader never saw the project's contract: the README, docs/ and the shipped configuration
 * do not speak of it. */
static void expect_no_contract(const char *path) {
  char *text = read_text(path);
  for (char *p = text; *p; p++)
    *p = (char)tolower((unsigned char)*p);
  cr_expect(strstr(text, "contract") == NULL, "%s speaks of the contract", path);
  free(text);
}

Test(config, the_readme_docs_and_configuration_never_speak_of_the_contract) {
  expect_no_contract(SOURCE_DIR "/README.md");
  expect_no_contract(SOURCE_DIR "/conf/flipcached.conf");
  DIR *docs = opendir(SOURCE_DIR "/docs");
  cr_assert_not_null(docs);
  size_t checked = 0;
  for (struct dirent *entry; (entry = readdir(docs)) != NULL;) {
    if (entry->d_name[0] == '.')
      continue;
    char path[512];
    snprintf(path, sizeof(path), "%s/docs/%s", SOURCE_DIR, entry->d_name);
    expect_no_contract(path);
    checked++;
  }
  closedir(docs);
  cr_expect_geq(checked, 5, "docs/ read");
}

Test(config, a_users_share_of_connections_is_a_quarter_unless_set) {
  config_defaults(&cfg);
  cr_expect_eq(cfg.max_connections_per_user, 0);
  cr_expect_eq(config_connections_per_user(&cfg), 256, "a quarter of the default 1024");
  cfg.max_connections = 3;
  cr_expect_eq(config_connections_per_user(&cfg), 1, "at least one");
  cr_assert_eq(config_load_string("[server]\nmax_connections = 20\nmax_connections_per_user = 20\n",
                                  "t.conf", &cfg, &errors), 0);
  cr_expect_eq(config_connections_per_user(&cfg), 20);
}

Test(config, access_defaults) {
  config_defaults(&cfg);
  cr_expect(cfg.allow_users.any, "every local user, so that the quick start works");
  cr_expect(!cfg.allow_groups.any && cfg.allow_groups.count == 0);
  cr_expect(!cfg.admin_users.any && cfg.admin_users.count == 1 && cfg.admin_users.ids[0] == 0,
            "admin_users = root");
  cr_expect_eq(cfg.miss_rate_per_user, 0, "off: fairness is by share of the fetch slots");
  cr_expect_eq(cfg.host_names.count, 0);
  cr_expect_eq(cfg.allow_origins.count, 0);
  cr_expect_eq(cfg.socket_group.count, 0);
}

Test(config, access_lists_resolve_names_and_allow_groups_alone_drops_the_star) {
  cr_assert_eq(config_load_string("[server]\nallow_groups = root 4242\nadmin_users = 0 root\n"
                                  "socket_group = root\nhost_names = flip.internal\n"
                                  "allow_origins = http://localhost:3000\n",
                                  "t.conf", &cfg, &errors), 0);
  cr_expect(!cfg.allow_users.any && cfg.allow_users.count == 0);
  cr_expect(cfg.allow_groups.count == 2 && cfg.allow_groups.ids[0] == 0 &&
            cfg.allow_groups.ids[1] == 4242);
  cr_expect_eq(cfg.admin_users.count, 1, "0 and root are one user");
  cr_expect(cfg.socket_group.count == 1 && cfg.socket_group.ids[0] == 0);
  cr_expect_str_eq(cfg.host_names.names[0], "flip.internal");
  cr_assert_eq(config_load_string("[server]\nallow_users = *\nallow_groups = root\n", "t.conf",
                                  &cfg, &errors), 0);
  cr_expect(cfg.allow_users.any, "allow_users said explicitly stays");
}

Test(config, a_user_that_does_not_exist_or_a_stray_character_is_an_error_naming_its_line) {
  cr_expect_eq(config_load_string("[server]\n\nallow_users = root no-such-user-flipcached\n"
                                  "admin_groups = root,\nsocket_group = root 1\n"
                                  "allow_origins = *\nhost_names = http://x\n"
                                  "miss_rate_per_user = -1\n",
                                  "t.conf", &cfg, &errors), -1);
  dump_errors();
  cr_expect(has_error("t.conf:3: allow_users: 'no-such-user-flipcached' does not exist"));
  cr_expect(has_error("t.conf:4: admin_groups: 'root,' is not a user or group name"));
  cr_expect(has_error("t.conf:5: socket_group: must be one group name or id"));
  cr_expect(has_error("t.conf:6: allow_origins: '*' would admit every web page"));
  cr_expect(has_error("t.conf:7: host_names: 'http://x' is not a host name"));
  cr_expect(has_error("t.conf:8: miss_rate_per_user:"));
}

Test(config, tls_and_proxy_keys) {
  cr_assert_eq(config_load_string("[upstream]\nca_file = /etc/flipcached/ca.pem\nca_path = /etc/ssl/certs\n"
                                  "client_cert = /etc/flipcached/client.pem\n"
                                  "client_key = /etc/flipcached/client.key\n"
                                  "proxy = http://proxy.internal:3128/\n",
                                  "t.conf", &cfg, &errors), 0);
  dump_errors();
  cr_expect_str_eq(cfg.proxy, "http://proxy.internal:3128");
  cr_expect_str_eq(cfg.client_key, "/etc/flipcached/client.key");
  const char *good[] = {"https://[fd00::1]:3129", "socks5h://127.0.0.1:1080", ""};
  for (size_t i = 0; i < 3; i++) {
    char text[200];
    snprintf(text, sizeof(text), "[upstream]\nproxy = %s\n", good[i]);
    cr_expect_eq(config_load_string(text, "t.conf", &cfg, &errors), 0, "%s", good[i]);
  }
}

Test(config, tls_and_proxy_mistakes_are_errors_naming_their_line) {
  const char *bad[][2] = {
    {"proxy = ftp://proxy:21", "must start with http://"},
    {"proxy = http://user:secret@proxy:3128", "must not carry user information"},
    {"proxy = http://proxy", "needs a port"},
    {"proxy = http://proxy:3128/path", "without a path"},
    {"ca_file = ca.pem", "is not an absolute path"},
    {"client_cert = /etc/flipcached/client.pem", "client_cert and client_key go together"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char text[300], wanted[200];
    snprintf(text, sizeof(text), "[upstream]\n%s\n", bad[i][0]);
    cr_expect_eq(config_load_string(text, "t.conf", &cfg, &errors), -1, "%s", bad[i][0]);
    snprintf(wanted, sizeof(wanted), "t.conf:2: ");
    cr_expect(has_error(wanted) && has_error(bad[i][1]), "%s", bad[i][0]);
  }
  cr_expect_eq(config_load_string("[upstream]\nbase_url = http://127.0.0.1:9000\n"
                                  "proxy = http://proxy:3128\n", "t.conf", &cfg, &errors), -1);
  cr_expect(has_error("t.conf:3: proxy: only for an https:// base_url"),
            "the credential of an http:// request would cross the proxy in clear text");
}

Test(config, a_utf8_byte_order_mark_is_not_part_of_the_first_line) {
  cr_expect_eq(config_load_string("\xEF\xBB\xBF[cache]\nttl = 7\n", "t.conf", &cfg, &errors), 0);
  dump_errors();
  cr_expect_eq(cfg.ttl, 7);
  cr_expect_eq(config_load_string("[cache]\n\xEF\xBB\xBFttl = 7\n", "t.conf", &cfg, &errors), -1,
               "only at the start of the file");
}

Test(config, refresh_ahead_is_a_share_from_0_to_1) {
  const char *good[][2] = {{"0", "0"}, {"1", "1000"}, {"0.8", "800"}, {"0.75", "750"},
                           {".5", "500"}, {"0.125", "125"}, {"1.0", "1000"}};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    char text[100];
    snprintf(text, sizeof(text), "[cache]\nrefresh_ahead = %s\n", good[i][0]);
    cr_expect_eq(config_load_string(text, "t.conf", &cfg, &errors), 0, "%s", good[i][0]);
    cr_expect_eq(cfg.refresh_ahead_permille, (unsigned)atoi(good[i][1]), "%s", good[i][0]);
  }
  const char *bad[] = {"1.5", "2", "-0.5", "0.8.1", "0.1234", "abc", "", ".", "0,8"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char text[100];
    snprintf(text, sizeof(text), "[cache]\nrefresh_ahead = %s\n", bad[i]);
    cr_expect_eq(config_load_string(text, "t.conf", &cfg, &errors), -1, "'%s' was accepted", bad[i]);
  }
  config_defaults(&cfg);
  cr_expect_eq(cfg.refresh_ahead_permille, 800);
}

Test(config, warm_program_ids_are_a_list_of_url_safe_ids) {
  cr_expect_eq(config_load_string("[warm]\nprogram_ids = p-1  Prog_2\tp.3~x\ninterval = 600\n",
                                  "t.conf", &cfg, &errors), 0);
  dump_errors();
  cr_assert_eq(cfg.warm_programs.count, 3);
  cr_expect_str_eq(cfg.warm_programs.ids[0], "p-1");
  cr_expect_str_eq(cfg.warm_programs.ids[1], "Prog_2");
  cr_expect_str_eq(cfg.warm_programs.ids[2], "p.3~x");
  cr_expect_eq(cfg.warm_interval, 600);
  struct {
    const char *value, *error;
  } bad[] = {
    {"a&b=c", "t.conf:2: program_ids: 'a&b=c' is not a program id"},
    {"p%20q", "t.conf:2: program_ids: 'p%20q' is not a program id"},
    {"p q p", "t.conf:2: program_ids: 'p' is listed twice"},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     "is longer than 64 characters"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char text[200];
    snprintf(text, sizeof(text), "[warm]\nprogram_ids = %s\n", bad[i].value);
    cr_expect_eq(config_load_string(text, "t.conf", &cfg, &errors), -1, "'%s' was accepted",
                 bad[i].value);
    cr_expect(has_error(bad[i].error), "%s: %s", bad[i].value, errors.text[0]);
  }
  /* 65 short ids fit on a line (of at most 198 characters): one too many. */
  const char *names = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  char many[256] = "[warm]\nprogram_ids =";
  for (int i = 0; names[i]; i++)
    snprintf(many + strlen(many), sizeof(many) - strlen(many), " %c", names[i]);
  strcat(many, " aa ab cc");
  cr_expect_eq(config_load_string(many, "t.conf", &cfg, &errors), -1, "65 programs");
  cr_expect(has_error("'cc' is one more than the 64 programs allowed"), "%s", errors.text[0]);
  config_defaults(&cfg);
  cr_expect_eq(cfg.warm_programs.count, 0, "off unless set");
  cr_expect_eq(cfg.warm_interval, 0);
}

Test(config, shared_is_off_by_default_and_takes_numeric_addresses_or_a_unix_socket) {
  config_defaults(&cfg);
  cr_expect(!cfg.shared_on);
  cr_expect_str_eq(cfg.shared_prefix, "flipcached:");
  cr_expect_eq(cfg.shared_timeout_ms, 200);
  cr_expect_eq(config_load_string("[shared]\nredis = 10.0.0.5:6380\nprefix = fleet{a}:\n"
                                  "timeout_ms = 50\npassword_file = /etc/flipcached/redis\n"
                                  "key_file = /etc/flipcached/shared-key\n",
                                  "t.conf", &cfg, &errors), 0);
  dump_errors();
  cr_expect(cfg.shared_on);
  cr_expect_eq(cfg.shared_addr.kind, LISTEN_TCP);
  cr_expect_str_eq(cfg.shared_addr.host, "10.0.0.5");
  cr_expect_eq(cfg.shared_addr.port, 6380);
  cr_expect_str_eq(cfg.shared_prefix, "fleet{a}:");
  cr_expect_eq(cfg.shared_timeout_ms, 50);
  cr_expect_str_eq(cfg.shared_password_file, "/etc/flipcached/redis");
  cr_expect_str_eq(cfg.shared_key_file, "/etc/flipcached/shared-key");
  cr_expect_eq(config_load_string("[shared]\nredis = unix:/run/redis/redis.sock\nkey_file = /k\n",
                                  "t.conf", &cfg, &errors), 0);
  cr_expect_eq(cfg.shared_addr.kind, LISTEN_UNIX);
  cr_expect_eq(config_load_string("[shared]\nkey_file = /k\nredis = [::1]:6379\n", "t.conf", &cfg,
                                  &errors), 0);
  cr_expect_str_eq(cfg.shared_addr.host, "::1");
  struct {
    const char *text, *error;
  } bad[] = {
    {"[shared]\nredis = redis.internal:6379\nkey_file = /k\n",
     "t.conf:2: redis: 'redis.internal:6379' is not"},
    {"[shared]\nredis = 127.0.0.1\n", "t.conf:2: redis: '127.0.0.1' is not"},
    {"[shared]\nredis = 127.0.0.1:0\n", "t.conf:2: redis:"},
    {"[shared]\nprefix = has space\n", "t.conf:2: prefix: 'has space' is not"},
    {"[shared]\nprefix =\n", "t.conf:2: prefix: '' is not"},
    {"[shared]\ntimeout_ms = 0\n", "t.conf:2: timeout_ms: 0 is out of range"},
    {"[shared]\npassword_file = relative\n", "t.conf:2: password_file: 'relative' is not an"},
    {"[shared]\nkey_file = relative\n", "t.conf:2: key_file: 'relative' is not an"},
    {"[shared]\nprefix = a:\nredis = 127.0.0.1:6379\n", "t.conf:3: redis: needs key_file"},
    {"[shard]\nredis = 127.0.0.1:6379\n", "[warm], [shared] and [log]"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cr_expect_eq(config_load_string(bad[i].text, "t.conf", &cfg, &errors), -1, "accepted: %s",
                 bad[i].text);
    cr_expect(has_error(bad[i].error), "%s: %s", bad[i].text, errors.text[0]);
  }
}

/* [shared] sentinels: the master found through Redis Sentinel, instead of redis, never with it. */
Test(config, sentinels_name_the_master_instead_of_redis) {
  cr_expect_eq(config_load_string("[shared]\nsentinels = 10.0.0.1:26379  10.0.0.2:26379\t[::1]:26380\n"
                                  "sentinel_master = flip-fleet\nkey_file = /k\n"
                                  "sentinel_password_file = /etc/flipcached/sentinel\n",
                                  "t.conf", &cfg, &errors), 0);
  dump_errors();
  cr_expect(cfg.shared_on, "the sentinels turn the tier on");
  cr_expect_eq(cfg.sentinel_count, 3);
  cr_expect_str_eq(cfg.sentinels[0].host, "10.0.0.1");
  cr_expect_eq(cfg.sentinels[1].port, 26379);
  cr_expect_str_eq(cfg.sentinels[2].host, "::1");
  cr_expect_eq(cfg.sentinels[2].port, 26380);
  cr_expect_str_eq(cfg.sentinel_master, "flip-fleet");
  cr_expect_str_eq(cfg.sentinel_password_file, "/etc/flipcached/sentinel");
  cr_expect_str_eq(cfg.shared_redis, "");
  struct {
    const char *text, *error;
  } bad[] = {
    {"[shared]\nkey_file = /k\nredis = 127.0.0.1:6379\nsentinels = 127.0.0.1:26379\n"
     "sentinel_master = m\n", "t.conf:4: sentinels: not with redis"},
    {"[shared]\nkey_file = /k\nsentinels = 127.0.0.1:26379\n",
     "t.conf:3: sentinels: needs sentinel_master"},
    {"[shared]\nkey_file = /k\nsentinel_master = m\n", "t.conf:3: sentinel_master: needs sentinels"},
    {"[shared]\nsentinels = 127.0.0.1:26379\nsentinel_master = m\n",
     "t.conf:2: sentinels: needs key_file"},
    {"[shared]\nkey_file = /k\nsentinels = sentinel-a:26379\nsentinel_master = m\n",
     "t.conf:3: sentinels: 'sentinel-a:26379' is not"},
    {"[shared]\nkey_file = /k\nsentinels = unix:/run/s.sock\nsentinel_master = m\n",
     "t.conf:3: sentinels: 'unix:/run/s.sock' is not"},
    {"[shared]\nkey_file = /k\nsentinels = 127.0.0.1:1 127.0.0.1:2 127.0.0.1:3 127.0.0.1:4 "
     "127.0.0.1:5 127.0.0.1:6 127.0.0.1:7 127.0.0.1:8 127.0.0.1:9\nsentinel_master = m\n",
     "t.conf:3: sentinels: more than 8"},
    {"[shared]\nkey_file = /k\nsentinels = 127.0.0.1:26379\nsentinel_master = has space\n",
     "t.conf:4: sentinel_master: 'has space' is not"},
    {"[shared]\nkey_file = /k\nredis = 127.0.0.1:6379\nsentinel_password_file = /s\n",
     "t.conf:4: sentinel_password_file: needs sentinels"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cr_expect_eq(config_load_string(bad[i].text, "t.conf", &cfg, &errors), -1, "accepted: %s",
                 bad[i].text);
    cr_expect(has_error(bad[i].error), "%s: %s", bad[i].text, errors.text[0]);
  }
}

/* systemd's credential flip-shared-key stands in for key_file, as flip-token does for token_file. */
Test(config, shared_takes_the_key_from_systemds_credential_without_key_file) {
  char dir[] = "/tmp/flipcreds.XXXXXX";
  cr_assert(mkdtemp(dir));
  char path[64];
  snprintf(path, sizeof(path), "%s/flip-shared-key", dir);
  FILE *f = fopen(path, "w");
  cr_assert(f);
  fclose(f);
  setenv("CREDENTIALS_DIRECTORY", dir, 1);
  cr_expect_eq(config_load_string("[shared]\nredis = 127.0.0.1:6379\n", "t.conf", &cfg, &errors),
               0);
  unlink(path);
  cr_expect_eq(config_load_string("[shared]\nredis = 127.0.0.1:6379\n", "t.conf", &cfg, &errors),
               -1, "the credential gone, key_file is needed");
  unsetenv("CREDENTIALS_DIRECTORY");
  rmdir(dir);
}
