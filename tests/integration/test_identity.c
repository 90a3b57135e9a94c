/* Who may use it, tried as real other users: every client here that is not root runs as another
 * uid through setpriv (curl under --reuid/--regid), over TCP loopback and over the unix socket.
 * 65534 is nobody (primary group nogroup in /etc/passwd); 65533 has no passwd entry at all. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "harness.h"

#define ID "497f6eca-6276-4993-bfeb-53cbbbba6f08"
#define OTHER_ID "497f6eca-6276-4993-bfeb-53cbbbba6f09"
#define NOBODY "--reuid=65534 --regid=65534 --clear-groups"
#define STRANGER "--reuid=65533 --regid=65533 --clear-groups"

/* A daemon with these [server] lines, the access log on, and (with unix) a unix socket that
 * other users can reach: the test directory is made traversable (its files stay private) and
 * the socket's group is nogroup through socket_group. */
static void start(const char *extra_server, bool unix_socket, unsigned miss_rate,
                  const char *extra_upstream) {
  char token[64];
  make_token(token, sizeof(token));
  fake_start(&fake, token);
  char server[1024];
  snprintf(server, sizeof(server), "%s%s", extra_server ? extra_server : "",
           unix_socket ? "socket_group = nogroup\n" : "");
  struct daemon_options options = {.token = token, .extra_server = server,
                                   .unix_socket = unix_socket, .miss_rate = miss_rate,
                                   .extra_upstream = extra_upstream};
  flipcached_prepare(&daemon_proc, &fake, &options);
  cr_assert_eq(chmod(daemon_proc.dir, 0711), 0);
  FILE *config = fopen(daemon_proc.config, "a");
  cr_assert_not_null(config);
  fputs("[log]\naccess = yes\n", config);
  fclose(config);
  flipcached_launch(&daemon_proc);
}

static char *daemon_url(const char *path) {
  static char url[256];
  snprintf(url, sizeof(url), "%s%s", daemon_proc.url, path);
  return url;
}

/* The status of one request by `identity` (NULL: root, through libcurl in this process). */
static long status_as(const char *identity, const char *method, const char *path, bool unix_socket,
                      const char *const *headers, struct http_response *kept) {
  struct http_response response;
  if (identity) {
    char url[256];
    snprintf(url, sizeof(url), "%s%s", unix_socket ? "http://localhost" : daemon_proc.url, path);
    http_as(identity, method, url, unix_socket ? daemon_proc.unix_socket : NULL, headers, &response);
  } else {
    http_request(method, daemon_url(path), headers, &response);
  }
  long status = response.status;
  if (kept)
    *kept = response;
  else
    http_response_free(&response);
  return status;
}

static void expect_error_code(const struct http_response *response, const char *code) {
  char wanted[64];
  snprintf(wanted, sizeof(wanted), "\"code\":\"%s\"", code);
  cr_expect(strstr(response->body, wanted) != NULL, "body: %s", response->body);
}

static bool log_has(const char *text) {
  char *log = flipcached_log(&daemon_proc);
  bool found = strstr(log, text) != NULL;
  free(log);
  return found;
}

TestSuite(identity, .fini = stop_all, .timeout = 120);

Test(identity, a_tcp_client_is_the_user_that_owns_its_socket) {
  start(NULL, false, 0, NULL);
  cr_expect_eq(status_as(NOBODY, NULL, "/v1/enrollments/" ID, false, NULL, NULL), 200);
  cr_expect_eq(status_as(NULL, NULL, "/v1/enrollments/" ID, false, NULL, NULL), 200);
  cr_expect(log_has("access: GET /v1/enrollments/" ID " 200 \"flipcached; fwd=uri-miss; stored\""),
            "the first answer was logged");
  cr_expect(log_has(" ms uid=65534\n"), "the access log names the TCP peer's uid");
  cr_expect(log_has(" ms uid=0\n"), "and root's");
}

/* The same over IPv6 loopback: inet_diag is asked with the AF_INET6 four-tuple. */
Test(identity, an_ipv6_tcp_client_is_the_user_that_owns_its_socket) {
  char token[64];
  make_token(token, sizeof(token));
  fake_start(&fake, token);
  struct daemon_options options = {.token = token};
  flipcached_prepare(&daemon_proc, &fake, &options);
  int v6_port = free_port();
  char command[800], out[1024];
  snprintf(command, sizeof(command),
           "sed -i 's/^listen = 127.0.0.1:%d$/listen = 127.0.0.1:%d [::1]:%d/' %s && "
           "printf '[log]\\naccess = yes\\n' >> %s",
           daemon_proc.port, daemon_proc.port, v6_port, daemon_proc.config, daemon_proc.config);
  cr_assert_eq(run_command(command, out, sizeof(out)), 0, "%s", out);
  flipcached_launch(&daemon_proc);
  char url[128];
  snprintf(url, sizeof(url), "http://[::1]:%d/v1/enrollments/" ID, v6_port);
  struct http_response response;
  http_as(NOBODY, NULL, url, NULL, NULL, &response);
  cr_expect_eq(response.status, 200, "%s", response.body);
  http_response_free(&response);
  cr_expect(log_has(" ms uid=65534\n"), "the access log names the IPv6 peer's uid");
}

Test(identity, a_unix_client_has_its_uid_and_pid) {
  start(NULL, true, 0, NULL);
  struct stat st;
  cr_assert_eq(stat(daemon_proc.unix_socket, &st), 0);
  cr_expect_eq(st.st_gid, 65534u, "socket_group = nogroup gave the socket that group");
  cr_expect_eq(st.st_mode & 0777, 0660);
  cr_expect_eq(status_as(NOBODY, NULL, "/v1/enrollments/" ID, true, NULL, NULL), 200);
  cr_expect(log_has(" ms uid=65534 pid="), "the access log names the unix peer's uid and pid");
  /* The file mode still counts: a user outside the socket's group cannot connect at all. */
  cr_expect_eq(status_as(STRANGER, NULL, "/v1/enrollments/" ID, true, NULL, NULL), 0);
}

Test(identity, allow_users_refuses_other_users_on_tcp_and_unix_and_nothing_goes_upstream) {
  start("allow_users = root\n", true, 0, NULL);
  struct http_response response;
  cr_expect_eq(status_as(NOBODY, NULL, "/v1/enrollments/" ID, false, NULL, &response), 403);
  expect_error_code(&response, "forbidden");
  http_response_free(&response);
  cr_expect_eq(status_as(NOBODY, NULL, "/v1/enrollments/" ID, true, NULL, NULL), 403);
  cr_expect_eq(status_as(NOBODY, NULL, "/v1/enrollments/not-a-uuid", false, NULL, NULL), 403,
               "a refused user learns nothing, not even that the id is malformed");
  cr_expect_eq(fake_stat(&fake, "total"), 0, "a refused request went upstream");
  cr_expect_eq(flipcached_stat(&daemon_proc, "cache_entries"), 0);
  /* Status routes hold no personal data: open to every local user, for monitoring. */
  cr_expect_eq(status_as(NOBODY, NULL, "/stats", false, NULL, NULL), 200);
  cr_expect_eq(status_as(NOBODY, NULL, "/healthz", true, NULL, NULL), 200);
  cr_expect_eq(status_as(NULL, NULL, "/v1/enrollments/" ID, false, NULL, NULL), 200);
  cr_expect_eq(flipcached_stat(&daemon_proc, "refused_not_allowed"), 3);
  cr_expect(log_has("refused GET /v1/enrollments/" ID " from uid=65534: not in allow_users"));
}

Test(identity, allow_groups_over_tcp_counts_the_primary_group_the_user_database_lists) {
  start("allow_groups = nogroup\n", false, 0, NULL);
  /* --clear-groups and a primary gid of its own: only /etc/passwd says nobody is in nogroup. */
  cr_expect_eq(status_as("--reuid=65534 --regid=65533 --clear-groups", NULL,
                         "/v1/enrollments/" ID, false, NULL, NULL), 200);
  cr_expect_eq(status_as(STRANGER, NULL, "/v1/enrollments/" ID, false, NULL, NULL), 403,
               "allow_groups alone drops the default '*' of allow_users");
  cr_expect_eq(status_as(NULL, NULL, "/v1/enrollments/" ID, false, NULL, NULL), 200,
               "root, an admin, may use it too");
}

Test(identity, allow_groups_over_unix_counts_the_groups_the_client_process_holds) {
  start("allow_groups = 65532\n", true, 0, NULL);
  cr_expect_eq(status_as("--reuid=65533 --regid=65534 --groups=65532", NULL,
                         "/v1/enrollments/" ID, true, NULL, NULL), 200);
  cr_expect_eq(status_as("--reuid=65533 --regid=65534 --clear-groups", NULL,
                         "/v1/enrollments/" ID, true, NULL, NULL), 403);
  cr_expect_eq(status_as("--reuid=65533 --regid=65532 --groups=65534", NULL,
                         "/v1/enrollments/" ID, true, NULL, NULL), 200, "a primary gid counts");
}

Test(identity, only_admins_may_use_the_cache_routes_on_every_transport) {
  start(NULL, true, 0, NULL);
  cr_expect_eq(status_as(NULL, NULL, "/v1/enrollments/" ID, false, NULL, NULL), 200);
  struct http_response response;
  cr_expect_eq(status_as(NOBODY, "DELETE", "/cache", false, NULL, &response), 403);
  expect_error_code(&response, "forbidden");
  http_response_free(&response);
  cr_expect_eq(status_as(NOBODY, "DELETE", "/cache/enrollments/" ID, true, NULL, NULL), 403);
  cr_expect_eq(status_as(NOBODY, NULL, "/cache/enrollments/" ID, false, NULL, NULL), 403);
  cr_expect_eq(status_as(NOBODY, "POST", "/cache", true, NULL, NULL), 403,
               "every method on an admin path");
  cr_expect_eq(flipcached_stat(&daemon_proc, "cache_entries"), 1, "nothing was purged");
  cr_expect_eq(flipcached_stat(&daemon_proc, "refused_not_admin"), 4);
  char out[32768];
  char command[400];
  snprintf(command, sizeof(command), "curl -sf %s/metrics", daemon_proc.url);
  run_command(command, out, sizeof(out));
  cr_expect(strstr(out, "\nflipcached_refused_not_admin_total 4\n") != NULL, "%s", out);
  cr_expect(log_has("refused DELETE /cache from uid=65534: not in admin_users or admin_groups"));

  cr_expect_eq(status_as(NULL, "DELETE", "/cache/enrollments/" ID, false, NULL, NULL), 200);
  cr_expect(log_has("admin: purged enrollment " ID " from the cache (by uid=0)"));
  cr_expect_eq(fake_stat(&fake, "total"), 1);
}

Test(identity, admin_groups_make_admins_and_the_purge_log_says_who) {
  start("admin_groups = nogroup\n", true, 0, NULL);
  cr_expect_eq(status_as(NULL, NULL, "/v1/enrollments/" ID, false, NULL, NULL), 200);
  cr_expect_eq(status_as(NOBODY, "DELETE", "/cache", true, NULL, NULL), 200);
  cr_expect(log_has("admin: purged the whole cache (1 entries; by uid=65534 pid="));
  cr_expect_eq(status_as(STRANGER, "DELETE", "/cache", false, NULL, NULL), 403);
}

Test(identity, a_foreign_host_is_421_on_tcp_and_unix_and_nothing_goes_upstream) {
  start("host_names = flip.internal\n", true, 0, NULL);
  const char *evil[] = {"Host: evil.example", NULL};
  struct http_response response;
  cr_expect_eq(status_as(NOBODY, NULL, "/v1/enrollments/" ID, false, evil, &response), 421);
  expect_error_code(&response, "misdirected_request");
  http_response_free(&response);
  cr_expect_eq(status_as(NOBODY, NULL, "/v1/enrollments/" ID, true, evil, NULL), 421);
  const char *rebound[] = {"Host: 127.0.0.1.evil.example:8750", NULL};
  cr_expect_eq(status_as(NULL, NULL, "/v1/enrollments/" ID, false, rebound, NULL), 421);
  cr_expect_eq(fake_stat(&fake, "total"), 0, "a misdirected request went upstream");
  cr_expect_eq(flipcached_stat(&daemon_proc, "refused_misdirected"), 3);

  const char *accepted[][2] = {{"Host: localhost:8750", NULL}, {"Host: 127.0.0.1", NULL},
                               {"Host: [::1]:8750", NULL},    {"Host: LOCALHOST", NULL},
                               {"Host: flip.internal:80", NULL}, {"Host: 127.3.4.5:1", NULL}};
  for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++)
    cr_expect_eq(status_as(NULL, NULL, "/v1/enrollments/" ID, false, accepted[i], NULL), 200,
                 "%s", accepted[i][0]);

  /* The connection closes after a 421: the client meant another server. */
  const char raw[] = "GET /healthz HTTP/1.1\r\nHost: evil.example\r\n\r\n";
  char answer[4096];
  size_t got = raw_exchange(daemon_proc.port, raw, sizeof(raw) - 1, answer, sizeof(answer));
  const char status_line[] = "HTTP/1.1 421 Misdirected Request\r\n";
  cr_expect(got > 0 && strncmp(answer, status_line, strlen(status_line)) == 0, "%s", answer);
  cr_expect(strstr(answer, "Connection: close\r\n") != NULL, "%s", answer);
}

Test(identity, a_web_page_is_refused_unless_its_origin_is_listed) {
  start("allow_origins = http://localhost:3000\n", false, 0, NULL);
  const char *foreign[] = {"Origin: http://evil.example", NULL};
  struct http_response response;
  cr_expect_eq(status_as(NOBODY, NULL, "/v1/enrollments/" ID, false, foreign, &response), 403);
  expect_error_code(&response, "forbidden");
  http_response_free(&response);
  const char *cross_site[] = {"Sec-Fetch-Site: cross-site", NULL};
  cr_expect_eq(status_as(NULL, NULL, "/v1/enrollments/" ID, false, cross_site, NULL), 403);
  const char *same_origin[] = {"Sec-Fetch-Site: same-origin", NULL};
  cr_expect_eq(status_as(NULL, NULL, "/v1/enrollments/" ID, false, same_origin, NULL), 403);
  const char *two[] = {"Origin: http://localhost:3000", "Origin: http://evil.example", NULL};
  cr_expect_eq(status_as(NULL, NULL, "/v1/enrollments/" ID, false, two, NULL), 403);
  cr_expect_eq(fake_stat(&fake, "total"), 0, "a web page's request went upstream");
  cr_expect_eq(flipcached_stat(&daemon_proc, "refused_web_page"), 4);

  const char *typed[] = {"Sec-Fetch-Site: none", NULL}; /* a URL typed in the address bar */
  cr_expect_eq(status_as(NULL, NULL, "/v1/enrollments/" ID, false, typed, NULL), 200);
  const char *listed[] = {"Origin: http://localhost:3000", "Sec-Fetch-Site: same-site", NULL};
  cr_expect_eq(status_as(NOBODY, NULL, "/v1/enrollments/" ID, false, listed, &response), 200);
  char value[128];
  cr_expect(http_header(&response, "Access-Control-Allow-Origin", value, sizeof(value)) &&
                strcmp(value, "http://localhost:3000") == 0, "%s", response.headers);
  cr_expect(http_header(&response, "Vary", value, sizeof(value)) && strcmp(value, "Origin") == 0);
  http_response_free(&response);
  cr_expect_eq(status_as(NULL, NULL, "/v1/enrollments/" ID, false, NULL, &response), 200);
  cr_expect(!http_header(&response, "Access-Control-Allow-Origin", value, sizeof(value)),
            "no CORS header without a listed Origin");
  http_response_free(&response);
}

Test(identity, misses_beyond_the_users_quota_are_429_and_hits_are_never_limited) {
  start(NULL, false, 3, NULL);
  cr_expect_eq(status_as(NULL, NULL, "/v1/enrollments/" ID, false, NULL, NULL), 200);
  long statuses[5];
  for (int i = 0; i < 5; i++) {
    char path[80];
    snprintf(path, sizeof(path), "/v1/enrollments/497f6eca-6276-4993-bfeb-53cbbbba6f1%d", i);
    struct http_response response;
    statuses[i] = status_as(NOBODY, NULL, path, false, NULL, &response);
    if (statuses[i] == 429) {
      expect_error_code(&response, "client_rate_limited");
      char retry_after[16];
      cr_expect(http_header(&response, "Retry-After", retry_after, sizeof(retry_after)) &&
                    atol(retry_after) >= 1, "%s", response.headers);
    }
    http_response_free(&response);
  }
  int ok = 0, limited = 0;
  for (int i = 0; i < 5; i++) {
    ok += statuses[i] == 200;
    limited += statuses[i] == 429;
  }
  /* A burst of 3, refilled at 3 a second: each setpriv+curl takes a few milliseconds, so a fourth
   * token may have come by the end. */
  cr_expect(ok >= 3 && ok <= 4 && limited == 5 - ok, "%d answered, %d limited", ok, limited);
  cr_expect_eq(fake_stat(&fake, "total"), 1 + ok, "a limited miss went upstream");
  cr_expect_eq(flipcached_stat(&daemon_proc, "refused_miss_quota"), limited);
  for (int i = 0; i < 10; i++)
    cr_expect_eq(status_as(NOBODY, NULL, "/v1/enrollments/" ID, false, NULL, NULL), 200,
                 "a hit is never limited");
  cr_expect_eq(status_as(NULL, NULL, "/v1/enrollments/" OTHER_ID, false, NULL, NULL), 200,
               "another user's misses have their own quota");
}

/* n requests by `identity` at once (one curl each, xargs -P), started in the background; pclose
 * gives their statuses, one a line. */
static FILE *flood_as(const char *identity, const char *const *paths, size_t n) {
  size_t cap = 256 + n * 200;
  char *command = malloc(cap);
  int len = snprintf(command, cap, "printf '%%s\\n'");
  for (size_t i = 0; i < n; i++)
    len += snprintf(command + len, cap - (size_t)len, " '%s%s'", daemon_proc.url, paths[i]);
  snprintf(command + len, cap - (size_t)len,
           " | setpriv %s xargs -P %zu -n 1 curl -s -o /dev/null -w '%%{http_code}\\n'", identity, n);
  FILE *pipe = popen(command, "r");
  free(command);
  cr_assert_not_null(pipe);
  return pipe;
}

static void count_statuses(FILE *pipe, int *ok, int *limited) {
  char line[32];
  *ok = *limited = 0;
  while (fgets(line, sizeof(line), pipe)) {
    *ok += atoi(line) == 200;
    *limited += atoi(line) == 429;
  }
  pclose(pipe);
}

Test(identity, joining_a_fetch_in_progress_costs_no_quota) {
  start(NULL, false, 1, NULL);
  fake_set_mode(&fake, ID, "slow", 500);
  const char *paths[20];
  for (size_t i = 0; i < 20; i++)
    paths[i] = "/v1/enrollments/" ID;
  int ok, limited;
  count_statuses(flood_as(NOBODY, paths, 20), &ok, &limited);
  cr_expect_eq(ok, 20, "%d answered, %d limited", ok, limited);
  cr_expect_eq(fake_count(&fake, ID), 1);
}

/* The upstream holds every answer for 1 s. Without a quota, nobody's 60 distinct misses would
 * all be queued for the upstream ahead of root's one miss, which would reach the upstream only
 * after them; with a burst of 3, root's miss is at most the fifth request the upstream sees. The
 * assertion counts requests, not time. */
Test(identity, one_users_flood_of_misses_does_not_delay_another_users_miss) {
  start(NULL, false, 3, "max_connections = 4\n");
  fake_set_mode(&fake, "*", "slow", 1000);
  enum { FLOOD = 60 };
  static char ids[FLOOD][80];
  const char *paths[FLOOD];
  for (int i = 0; i < FLOOD; i++) {
    snprintf(ids[i], sizeof(ids[i]), "/v1/enrollments/497f6eca-6276-4993-bfeb-%012d", i);
    paths[i] = ids[i];
  }
  FILE *flood = flood_as(NOBODY, paths, FLOOD);
  for (int waited = 0; flipcached_stat(&daemon_proc, "enrollment_requests") +
                           flipcached_stat(&daemon_proc, "inflight") < FLOOD && waited < 250;
       waited++)
    pause_ms(20); /* every request of the flood has been answered 429 or is being fetched */
  const char request[] = "GET /v1/enrollments/" OTHER_ID " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  int fd = raw_send(daemon_proc.port, request, sizeof(request) - 1);
  for (int waited = 0; fake_count(&fake, OTHER_ID) == 0 && waited < 500; waited++)
    pause_ms(20);
  long before_root = fake_stat(&fake, "total") - 1;
  cr_expect_eq(fake_count(&fake, OTHER_ID), 1, "root's miss never reached the upstream");
  cr_expect_leq(before_root, 5, "%ld of the flood's requests went upstream before root's",
                before_root);
  int ok, limited;
  count_statuses(flood, &ok, &limited);
  close(fd);
  cr_expect(ok >= 3 && ok <= 5, "the flood had %d fetched (burst 3, 3 a second), %d limited", ok,
            limited);
  cr_expect_eq(ok + limited, FLOOD, "%d answered, %d limited", ok, limited);
}

Test(identity, a_reload_applies_new_lists_to_connections_already_open) {
  start("admin_users = root\n", false, 0, NULL);
  int fd = raw_connect(daemon_proc.port);
  const char inspect[] = "GET /cache/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  char answer[4096];
  cr_assert_eq(write(fd, inspect, sizeof(inspect) - 1), (ssize_t)(sizeof(inspect) - 1));
  cr_assert_gt(raw_read_response(fd, answer, sizeof(answer), 5000), 0);
  cr_expect(strncmp(answer, "HTTP/1.1 404", 12) == 0, "root may inspect: %.40s", answer);
  char command[600], out[1024];
  snprintf(command, sizeof(command), "sed -i 's/^admin_users = root$/admin_users = nobody/' %s",
           daemon_proc.config);
  cr_assert_eq(run_command(command, out, sizeof(out)), 0, "%s", out);
  flipcached_reload(&daemon_proc, "reload: credential unchanged");
  cr_assert_eq(write(fd, inspect, sizeof(inspect) - 1), (ssize_t)(sizeof(inspect) - 1));
  cr_assert_gt(raw_read_response(fd, answer, sizeof(answer), 5000), 0);
  cr_expect(strncmp(answer, "HTTP/1.1 403", 12) == 0, "the kept-alive connection lost its rights: %.40s",
            answer);
  close(fd);
  cr_expect_eq(status_as(NOBODY, NULL, "/cache/enrollments/" ID, false, NULL, NULL), 404,
               "the new admin may inspect");
}
