/* settings: loading the configuration file (start-up and SIGHUP), and -t's checks. */
#include "settings.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "creds.h"
#include "fleet.h"
#include "seal.h"
#include "redis.h"
#include "upstream.h"

/* Loads the configuration: a missing default file means "all defaults", a missing file named
 * with -c is an error. Every error goes to `report` (stderr at start-up, the log on SIGHUP), and
 * so does the warning of an allow_users = * that makes allow_groups moot. */
int settings_load(const char *path, bool path_given, struct config *cfg,
                  void (*report)(const char *line)) {
  static struct config_errors errors; /* large; only ever used from the loop's one thread */
  if (!path_given && access(path, F_OK) != 0 && errno == ENOENT) {
    config_defaults(cfg);
    return 0;
  }
  if (config_load(path, cfg, &errors) == 0) {
    if (cfg->allow_users.any && (cfg->allow_groups.count > 0 || cfg->allow_groups.any)) {
      /* Valid, but almost surely not meant: the shipped file says allow_users = *, and an
       * operator who only fills in allow_groups expects the group to restrict. */
      char warning[PATH_MAX + 200];
      snprintf(warning, sizeof(warning), "%s: warning: allow_users = * admits every local user, "
               "so allow_groups restricts nothing; empty allow_users to admit only the groups",
               path);
      report(warning);
    }
    return 0;
  }
  for (size_t i = 0; i < errors.count && i < CONFIG_MAX_ERRORS; i++)
    report(errors.text[i]);
  if (errors.count > CONFIG_MAX_ERRORS) {
    char more[64];
    snprintf(more, sizeof(more), "%zu more errors", errors.count - CONFIG_MAX_ERRORS);
    report(more);
  }
  return errors.count == 1 && errors.line[0] == 0 ? SETTINGS_UNREADABLE : -1;
}

void settings_report_to_stderr(const char *line) { fprintf(stderr, "%s\n", line); }

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
 * (a message names the file and the rule, never the content), the cache directory, the TLS files,
 * the Redis password's file ([shared] password_file), the shared key's ([shared] key_file). */
int settings_check(const struct config *cfg, bool config_has_errors) {
  char problem[2 * PATH_MAX + 512], key_path[PATH_MAX];
  struct creds probe = {0};
  int rc = config_has_errors ? 1 : 0;
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
  for (int sentinel = 0; sentinel < 2; sentinel++) {
    char password[SHARED_PASSWORD_MAX + 1];
    if (fleet_read_password(cfg, sentinel, password, sizeof(password), problem,
                            sizeof(problem)) != 0) {
      fprintf(stderr, "%s\n", problem);
      rc = 1;
    }
    explicit_bzero(password, sizeof(password));
  }
  if (cfg->shared_on) {
    struct seal_keys keys;
    if (fleet_load_keys(cfg, &keys, problem, sizeof(problem)) != 0) {
      fprintf(stderr, "%s\n", problem);
      rc = 1;
    }
    seal_keys_wipe(&keys);
  }
  if (rc == 0)
    printf("configuration OK\n");
  return rc;
}
