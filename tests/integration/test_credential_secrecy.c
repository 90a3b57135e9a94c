/* The credential never leaves the daemon, and unsafe credential files stop it at start. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "harness.h"

#define ID "497f6eca-6276-4993-bfeb-53cbbbba6f08"
#define ID_404 "11111111-2222-4333-8444-555555555555"
#define ID_500 "22222222-2222-4333-8444-555555555555"
#define ID_401 "33333333-2222-4333-8444-555555555555"
#define ID_BAD "44444444-2222-4333-8444-555555555555"

static void stop_without_exit_check(void) {
  if (daemon_proc.pid > 0)
    flipcached_stop(&daemon_proc);
  fake_stop(&fake);
  remove_tree(daemon_proc.dir);
}

static void expect_no_token_in(const struct http_response *response, const char *what) {
  const char *token = daemon_proc.token;
  cr_expect(!response->body || !strstr(response->body, token), "the token is in the body of %s", what);
  cr_expect(!response->headers || !strstr(response->headers, token), "the token is in the headers of %s", what);
}

/* Every kind of answer, at log level debug: the token is in none of them, nor in the log, nor in
 * the cache file. */
Test(credential, never_in_responses_logs_or_the_cache_file, .fini = stop_without_exit_check, .timeout = 60) {
  char token[64];
  make_token(token, sizeof(token));
  fake_start(&fake, token);
  struct daemon_options options = {.token = token, .log_level = "debug", .timeout_ms = 400};
  flipcached_start(&daemon_proc, &fake, &options);
  fake_set_mode(&fake, ID_404, "404", 0);
  fake_set_mode(&fake, ID_500, "500", 0);
  fake_set_mode(&fake, ID_401, "401", 0);
  fake_set_mode(&fake, ID_BAD, "garbage", 0);

  const char *paths[] = {"/v1/enrollments/" ID, "/v1/enrollments/" ID, "/v1/enrollments/" ID_404,
                         "/v1/enrollments/" ID_500, "/v1/enrollments/" ID_401,
                         "/v1/enrollments/" ID_BAD, "/v1/enrollments/nope", "/stats", "/metrics",
                         "/healthz", "/nothing-here"};
  const char *headers[] = {"Authorization: Bearer client-token", NULL};
  for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
    char url[256];
    snprintf(url, sizeof(url), "%s%s", daemon_proc.url, paths[i]);
    struct http_response response;
    http_request(NULL, url, headers, &response);
    cr_expect_gt(response.status, 0, "%s got no answer", paths[i]);
    expect_no_token_in(&response, paths[i]);
    http_response_free(&response);
  }
  cr_expect_eq(fake_stat(&fake, "auth_ok"), 5, "the token was used upstream");
  cr_assert_eq(flipcached_stop(&daemon_proc), 0);

  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, "debug: upstream: GET") != NULL, "the log really is at debug level");
  cr_expect(strstr(log, token) == NULL, "the token is in the log:\n%s", log);
  free(log);
  char data_path[400];
  snprintf(data_path, sizeof(data_path), "%s/cache/data.mdb", daemon_proc.dir);
  cr_expect(file_contains(data_path, ID), "the cache file holds the entry (sanity)");
  cr_expect_not(file_contains(data_path, token), "the token is in the cache file");
}

/* Runs the prepared daemon, which must fail to start; returns its exit status. */
static int run_expecting_failure(struct flipcached_proc *proc) {
  int status;
  waitpid(flipcached_spawn(proc), &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

Test(credential, a_token_file_readable_by_others_stops_the_start, .fini = stop_without_exit_check, .timeout = 30) {
  fake.pid = 0;
  struct daemon_options options = {.base_url = "http://127.0.0.1:9"};
  flipcached_prepare(&daemon_proc, NULL, &options);
  chmod(daemon_proc.token_path, 0644);
  cr_expect_eq(run_expecting_failure(&daemon_proc), 1);
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, "lets group or others access it; run chmod 600") != NULL, "log:\n%s", log);
  cr_expect(strstr(log, daemon_proc.token) == NULL, "the refusal must not quote the token");
  free(log);
}

Test(credential, a_missing_token_file_stops_the_start, .fini = stop_without_exit_check, .timeout = 30) {
  fake.pid = 0;
  struct daemon_options options = {.base_url = "http://127.0.0.1:9"};
  flipcached_prepare(&daemon_proc, NULL, &options);
  unlink(daemon_proc.token_path);
  cr_expect_eq(run_expecting_failure(&daemon_proc), 1);
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, "credential:") != NULL && strstr(log, "No such file") != NULL, "log:\n%s", log);
  free(log);
}

/* systemd's LoadCredential= puts the key in $CREDENTIALS_DIRECTORY/flip-token: it wins. */
Test(credential, the_systemd_credential_is_used_when_present, .fini = stop_without_exit_check, .timeout = 30) {
  char systemd_token[64];
  make_token(systemd_token, sizeof(systemd_token));
  fake_start(&fake, systemd_token);
  flipcached_prepare(&daemon_proc, &fake, NULL); /* its token_file holds another token */
  snprintf(daemon_proc.credentials_directory, sizeof(daemon_proc.credentials_directory),
           "%s/credentials", daemon_proc.dir);
  mkdir(daemon_proc.credentials_directory, 0700);
  char path[400];
  snprintf(path, sizeof(path), "%s/flip-token", daemon_proc.credentials_directory);
  int fd = open(path, O_WRONLY | O_CREAT, 0400);
  dprintf(fd, "%s\n", systemd_token);
  close(fd);
  flipcached_launch(&daemon_proc);

  char url[256];
  snprintf(url, sizeof(url), "%s/v1/enrollments/%s", daemon_proc.url, ID);
  struct http_response response;
  http_get(url, &response);
  cr_expect_eq(response.status, 200, "the fake accepts only the systemd credential");
  cr_expect_eq(fake_stat(&fake, "auth_bad"), 0);
  http_response_free(&response);
  cr_expect_eq(flipcached_stop(&daemon_proc), 0);
}
