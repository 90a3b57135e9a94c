/* The command line of the contract: -t, --version, -h, errors; SIGINT stops cleanly. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* Runs flipcached with args; returns its exit status and what it printed (stdout + stderr). */
static int run(const char *const *args, char *out, size_t out_cap) {
  int pipe_fds[2];
  cr_assert(pipe(pipe_fds) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    dup2(pipe_fds[1], STDERR_FILENO);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    char *argv[16] = {strdup(FLIPCACHED_BIN)};
    for (size_t i = 0; args[i] && i < 14; i++)
      argv[i + 1] = strdup(args[i]);
    execv(FLIPCACHED_BIN, argv);
    _exit(127);
  }
  close(pipe_fds[1]);
  size_t got = 0;
  ssize_t n;
  while (got + 1 < out_cap && (n = read(pipe_fds[0], out + got, out_cap - 1 - got)) > 0)
    got += (size_t)n;
  out[got] = '\0';
  close(pipe_fds[0]);
  int status;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static char dir[] = "/tmp/flipcli.XXXXXX";
static bool dir_made; /* not "does dir still end in X": mkdtemp may well put an X there */

static const char *write_config(const char *text) {
  static char path[128];
  if (!dir_made)
    cr_assert(mkdtemp(dir));
  dir_made = true;
  snprintf(path, sizeof(path), "%s/flipcached.conf", dir);
  FILE *file = fopen(path, "w");
  fputs(text, file);
  fclose(file);
  return path;
}

static void cleanup(void) { remove_tree(dir); }

TestSuite(command_line, .fini = cleanup, .timeout = 30);

/* A configuration whose token file (mode `mode`, or none when mode is 0) and cache path are in
 * this test's directory; extra lines go after [cache]'s path. */
static const char *test_dir(void) {
  if (!dir_made)
    cr_assert(mkdtemp(dir));
  dir_made = true;
  return dir;
}

static const char *config_with(mode_t mode, const char *cache_path, const char *extra) {
  test_dir();
  char token[200];
  snprintf(token, sizeof(token), "%s/token", dir);
  unlink(token);
  if (mode) {
    FILE *file = fopen(token, "w");
    fputs("fl_secret_check_config\n", file);
    fclose(file);
    chmod(token, mode);
  }
  static char text[1024];
  snprintf(text, sizeof(text), "[upstream]\ntoken_file = %s\n[cache]\npath = %s\n%s", token,
           cache_path, extra ? extra : "");
  return write_config(text);
}

Test(command_line, check_config_accepts_a_good_file) {
  char cache[200];
  snprintf(cache, sizeof(cache), "%s/cache-not-created", test_dir());
  const char *path = config_with(0600, cache, NULL);
  char out[4096];
  const char *args[] = {"-t", "-c", path, NULL};
  cr_expect_eq(run(args, out, sizeof(out)), 0, "%s", out);
  cr_expect_str_eq(out, "configuration OK\n");
  cr_expect_neq(access(cache, F_OK), 0, "-t touches no cache: the path was not created");
}

/* -t checks what start-up would, short of binding and the network. */
Test(command_line, check_config_checks_the_credential_the_cache_path_and_the_file) {
  char out[4096];
  const char *path = config_with(0, "/tmp", NULL);
  const char *args[] = {"-t", "-c", path, NULL};
  cr_expect_eq(run(args, out, sizeof(out)), 1);
  cr_expect(strstr(out, "credential: ") != NULL && strstr(out, "token: cannot open: No such file") != NULL,
            "%s", out);
  path = config_with(0644, "/tmp", NULL);
  cr_expect_eq(run(args, out, sizeof(out)), 1);
  cr_expect(strstr(out, "lets group or others access it") != NULL, "%s", out);
  cr_expect(strstr(out, "fl_secret_check_config") == NULL, "-t printed the key: %s", out);
  path = config_with(0600, "/nonexistent/never/created", NULL);
  cr_expect_eq(run(args, out, sizeof(out)), 1);
  cr_expect(strstr(out, "[cache] path /nonexistent/never/created: cannot be created") != NULL, "%s", out);
  cr_expect_neq(access("/nonexistent/never/created", F_OK), 0);
  /* The Redis password's file follows the token's rules; its content is never printed. */
  char redis_password[256], extra[1200];
  snprintf(redis_password, sizeof(redis_password), "%s/redis-password", test_dir());
  FILE *file = fopen(redis_password, "w");
  fputs("fl_redis_password_check\n", file);
  fclose(file);
  chmod(redis_password, 0644);
  /* So do the shared key's: a bad line is named, a key never shown. */
  char shared_key[256];
  snprintf(shared_key, sizeof(shared_key), "%s/shared-key", test_dir());
  file = fopen(shared_key, "w");
  fputs("# the fleet's\n5ec2e7ab5ec2e7ab5ec2e7ab5ec2e7ab5ec2e7ab5ec2e7ab5ec2e7ab5ec2e7ab\nnot-hex\n",
        file);
  fclose(file);
  chmod(shared_key, 0600);
  char extra_no_key[400];
  snprintf(extra_no_key, sizeof(extra_no_key),
           "[shared]\nredis = 127.0.0.1:6379\npassword_file = %s\n", redis_password);
  path = config_with(0600, "/tmp", extra_no_key);
  cr_expect_eq(run(args, out, sizeof(out)), 1);
  cr_expect(strstr(out, ": redis: needs key_file") != NULL, "named at redis's line: %s", out);
  snprintf(extra, sizeof(extra),
           "[shared]\nredis = 127.0.0.1:6379\npassword_file = %s\nkey_file = %s\n",
           redis_password, shared_key);
  path = config_with(0600, "/tmp", extra);
  cr_expect_eq(run(args, out, sizeof(out)), 1);
  cr_expect(strstr(out, "[shared] password_file: ") && strstr(out, "lets group or others access it"),
            "%s", out);
  cr_expect(strstr(out, "fl_redis_password_check") == NULL, "-t printed the password: %s", out);
  cr_expect(strstr(out, "[shared] key_file: ") && strstr(out, "line 3 is not a key"), "%s", out);
  cr_expect(strstr(out, "5ec2e7ab") == NULL, "-t printed the key: %s", out);
  chmod(redis_password, 0600);
  file = fopen(shared_key, "w");
  fputs("5ec2e7ab5ec2e7ab5ec2e7ab5ec2e7ab5ec2e7ab5ec2e7ab5ec2e7ab5ec2e7ab\n", file);
  fclose(file);
  chmod(shared_key, 0644);
  cr_expect_eq(run(args, out, sizeof(out)), 1);
  cr_expect(strstr(out, "[shared] key_file: ") && strstr(out, "lets group or others access it"),
            "%s", out);
  chmod(shared_key, 0600);
  cr_expect_eq(run(args, out, sizeof(out)), 0, "%s", out);
  /* With sentinels, their password file too (the master's is password_file). */
  char sentinel_password[256];
  snprintf(sentinel_password, sizeof(sentinel_password), "%s/sentinel-password", test_dir());
  file = fopen(sentinel_password, "w");
  fputs("fl_sentinel_password_check\n", file);
  fclose(file);
  chmod(sentinel_password, 0640);
  snprintf(extra, sizeof(extra),
           "[shared]\nsentinels = 127.0.0.1:26379 127.0.0.1:26380\nsentinel_master = flip\n"
           "sentinel_password_file = %s\npassword_file = %s\nkey_file = %s\n",
           sentinel_password, redis_password, shared_key);
  path = config_with(0600, "/tmp", extra);
  cr_expect_eq(run(args, out, sizeof(out)), 1);
  cr_expect(strstr(out, "[shared] sentinel_password_file: ") &&
            strstr(out, "lets group or others access it"), "%s", out);
  cr_expect(strstr(out, "fl_sentinel_password_check") == NULL, "-t printed the password: %s", out);
  chmod(sentinel_password, 0600);
  cr_expect_eq(run(args, out, sizeof(out)), 0, "%s", out);
  const char *directory[] = {"-t", "-c", "/tmp", NULL};
  cr_expect_eq(run(directory, out, sizeof(out)), 1);
  cr_expect(strstr(out, "/tmp: not a regular file") != NULL, "-c naming a directory: %s", out);
}

/* The shipped file says allow_users = *: an operator who fills in only allow_groups must hear that
 * the group restricts nothing. */
Test(command_line, check_config_warns_that_allow_users_star_makes_allow_groups_moot) {
  char cache[200];
  snprintf(cache, sizeof(cache), "%s/cache", test_dir());
  const char *path = config_with(0600, cache, "[server]\nallow_users = *\nallow_groups = root\n");
  char out[4096];
  const char *args[] = {"-t", "-c", path, NULL};
  cr_expect_eq(run(args, out, sizeof(out)), 0, "valid, only a warning: %s", out);
  cr_expect(strstr(out, "warning: allow_users = * admits every local user, so allow_groups "
                        "restricts nothing") != NULL, "%s", out);
  path = config_with(0600, cache, "[server]\nallow_users =\nallow_groups = root\n");
  cr_expect_eq(run(args, out, sizeof(out)), 0, "%s", out);
  cr_expect_str_eq(out, "configuration OK\n");
}

Test(command_line, check_config_prints_every_error_with_its_line) {
  const char *path = write_config("[server]\nlisten = 10.0.0.1:80\n[cache]\nttl = soon\n[log]\nlevel = loud\n");
  char out[4096];
  const char *args[] = {"--check-config", "--config", path, NULL};
  cr_expect_eq(run(args, out, sizeof(out)), 1);
  char expected[3][256];
  snprintf(expected[0], sizeof(expected[0]), "%s:2: listen: 10.0.0.1 is not a loopback", path);
  snprintf(expected[1], sizeof(expected[1]), "%s:4: ttl: 'soon' is not a whole number", path);
  snprintf(expected[2], sizeof(expected[2]), "%s:6: level: 'loud'", path);
  for (int i = 0; i < 3; i++)
    cr_expect(strstr(out, expected[i]) != NULL, "missing \"%s\" in:\n%s", expected[i], out);
  cr_expect(strstr(out, "configuration OK") == NULL);
}

Test(command_line, check_config_names_the_line_of_a_user_that_does_not_exist) {
  const char *path = write_config("[server]\nallow_users = root\nadmin_groups = no-such-group-flipcached\n");
  char out[4096];
  const char *args[] = {"-t", "-c", path, NULL};
  cr_expect_eq(run(args, out, sizeof(out)), 1);
  char expected[256];
  snprintf(expected, sizeof(expected),
           "%s:3: admin_groups: 'no-such-group-flipcached' does not exist", path);
  cr_expect(strstr(out, expected) != NULL, "missing \"%s\" in:\n%s", expected, out);
}

Test(command_line, a_missing_file_named_with_c_is_an_error) {
  char out[4096];
  const char *args[] = {"-t", "-c", "/nonexistent/flipcached.conf", NULL};
  cr_expect_eq(run(args, out, sizeof(out)), 1);
  cr_expect(strstr(out, "/nonexistent/flipcached.conf: cannot open: No such file") != NULL, "%s", out);
  cr_expect(strstr(out, "credential") == NULL, "nothing was read: nothing else is checked: %s",
            out);
}

/* One run of -t reports every problem: the file's errors and the files it names, together. */
Test(command_line, check_config_reports_file_errors_and_a_missing_token_in_one_run) {
  char cache[200];
  snprintf(cache, sizeof(cache), "%s/cache-not-created", test_dir());
  const char *path = config_with(0, cache, "ttl = soon\n"); /* and no token file */
  char out[4096];
  const char *args[] = {"-t", "-c", path, NULL};
  cr_expect_eq(run(args, out, sizeof(out)), 1);
  cr_expect(strstr(out, ":5: ttl: 'soon' is not a whole number") != NULL, "%s", out);
  cr_expect(strstr(out, "credential: ") != NULL && strstr(out, "/token") != NULL,
            "the missing token file, in the same run: %s", out);
  cr_expect(strstr(out, "configuration OK") == NULL, "%s", out);
}

Test(command_line, version_names_every_library) {
  char out[4096];
  const char *args[] = {"--version", NULL};
  cr_expect_eq(run(args, out, sizeof(out)), 0);
  const char *names[] = {"flipcached ", "libevent 2.1", "libcurl 7.", "json-c 0.", "LMDB 0.9", "hiredis 0.14"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    cr_expect(strstr(out, names[i]) != NULL, "no \"%s\" in:\n%s", names[i], out);
}

Test(command_line, help_and_bad_options) {
  char out[4096];
  const char *help[] = {"-h", NULL};
  cr_expect_eq(run(help, out, sizeof(out)), 0);
  cr_expect(strstr(out, "usage: flipcached") != NULL);
  const char *bad[] = {"--no-such-option", NULL};
  cr_expect_eq(run(bad, out, sizeof(out)), 2);
  const char *extra[] = {"stray", NULL};
  cr_expect_eq(run(extra, out, sizeof(out)), 2);
}

Test(command_line, sigint_stops_cleanly_with_exit_0) {
  char token[64];
  make_token(token, sizeof(token));
  struct fake_upstream fake;
  fake_start(&fake, token);
  struct flipcached_proc proc;
  struct daemon_options options = {.token = token};
  flipcached_start(&proc, &fake, &options);
  kill(proc.pid, SIGINT);
  int status;
  waitpid(proc.pid, &status, 0);
  cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
  char *log = flipcached_log(&proc);
  cr_expect(strstr(log, "SIGINT received: stopping") != NULL, "%s", log);
  cr_expect(strstr(log, "stopped") != NULL);
  free(log);
  fake_stop(&fake);
  remove_tree(proc.dir);
}
