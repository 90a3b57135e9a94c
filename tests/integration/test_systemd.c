/* Running it the way operators do: systemd's notify protocol, watchdog and socket activation
 * (played for real: a NOTIFY_SOCKET datagram socket, sockets passed as fd 3...), shutdown during
 * a fetch, /metrics through promtool, the unit's security score, the man pages through mandoc,
 * the install layout, the stats command and the access log. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sys/time.h>

#include "fixture.h"
#include "harness.h"

#define ID "497f6eca-6276-4993-bfeb-53cbbbba6f08"

static long status_of(const char *id) {
  struct http_response response;
  get_enrollment_from(&daemon_proc, id, &response);
  long status = response.status;
  http_response_free(&response);
  return status;
}

/* A fake upstream and a prepared (not started) daemon sharing a credential. */
static void prepare(const struct daemon_options *given) {
  struct daemon_options options = given ? *given : (struct daemon_options){0};
  char token[64];
  make_token(token, sizeof(token));
  options.token = token;
  fake_start(&fake, token);
  flipcached_prepare(&daemon_proc, &fake, &options);
}

/* --- sd_notify ---------------------------------------------------------------------------------- */

static int notify_fd = -1;

static void open_notify_socket(char *path, size_t len) {
  snprintf(path, len, "%s/notify.sock", daemon_proc.dir);
  notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  cr_assert_lt(strlen(path), sizeof(addr.sun_path));
  memcpy(addr.sun_path, path, strlen(path) + 1);
  cr_assert(bind(notify_fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
}

/* Reads datagrams until one contains `wanted` (within timeout_ms); true if it came. */
static bool notified(const char *wanted, int timeout_ms) {
  char message[1024];
  for (int waited = 0; waited < timeout_ms; waited += 50) {
    struct pollfd pfd = {.fd = notify_fd, .events = POLLIN};
    if (poll(&pfd, 1, 50) == 1) {
      ssize_t n = recv(notify_fd, message, sizeof(message) - 1, 0);
      if (n > 0) {
        message[n] = '\0';
        if (strstr(message, wanted))
          return true;
      }
    }
  }
  return false;
}

Test(systemd, notify_ready_status_reloading_stopping_and_watchdog, .fini = stop_all, .timeout = 60) {
  prepare(NULL);
  char path[400];
  open_notify_socket(path, sizeof(path));
  snprintf(daemon_proc.env[0], sizeof(daemon_proc.env[0]), "NOTIFY_SOCKET=%s", path);
  snprintf(daemon_proc.env[1], sizeof(daemon_proc.env[1]), "WATCHDOG_USEC=400000");
  flipcached_launch(&daemon_proc);
  cr_expect(notified("READY=1", 3000), "READY=1 once listening with the cache open");
  cr_expect(notified("STATUS=", 3000), "a STATUS= line");
  cr_expect(notified("WATCHDOG=1", 1000), "a first watchdog ping");
  cr_expect(notified("WATCHDOG=1", 1000), "pings keep coming from the loop");
  kill(daemon_proc.pid, SIGHUP);
  cr_expect(notified("RELOADING=1", 3000));
  cr_expect(notified("READY=1", 3000), "READY=1 again after the reload");
  kill(daemon_proc.pid, SIGTERM);
  cr_expect(notified("STOPPING=1", 3000));
  int status;
  waitpid(daemon_proc.pid, &status, 0);
  daemon_proc.pid = 0;
  cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(notify_fd);
}

/* --- socket activation ------------------------------------------------------------------------ */

static int listening_tcp(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0); /* no CLOEXEC: it is passed on */
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert(bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 && listen(fd, 16) == 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, (struct sockaddr *)&addr, &len);
  *port = ntohs(addr.sin_port);
  return fcntl(fd, F_DUPFD, 100); /* far from 3 and 4, where the daemon expects them */
}

static int listening_unix(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  cr_assert_lt(strlen(path), sizeof(addr.sun_path));
  memcpy(addr.sun_path, path, strlen(path) + 1);
  cr_assert(bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 && listen(fd, 16) == 0);
  return fcntl(fd, F_DUPFD, 110);
}

Test(systemd, serves_sockets_passed_by_systemd, .fini = stop_all, .timeout = 60) {
  prepare(NULL);
  int port;
  char unix_path[400];
  snprintf(unix_path, sizeof(unix_path), "%s/activated.sock", daemon_proc.dir);
  daemon_proc.inherited[0] = listening_tcp(&port);
  daemon_proc.inherited[1] = listening_unix(unix_path);
  daemon_proc.inherited_count = 2;
  FILE *config = fopen(daemon_proc.config, "a");
  fputs("[log]\naccess = yes\n", config); /* who asked, on each kind of inherited socket */
  fclose(config);
  int configured_port = daemon_proc.port; /* what the config says: not bound when activated */
  daemon_proc.port = port;
  snprintf(daemon_proc.url, sizeof(daemon_proc.url), "http://127.0.0.1:%d", port);
  flipcached_launch(&daemon_proc);
  close(daemon_proc.inherited[0]);
  close(daemon_proc.inherited[1]);

  cr_expect_eq(status_of(ID), 200, "served on the inherited TCP socket");
  struct http_response response;
  http_get_unix(unix_path, "http://localhost/v1/enrollments/" ID, &response);
  cr_expect_eq(response.status, 200, "served on the inherited unix socket");
  http_response_free(&response);
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, " ms uid=0\n") != NULL, "the inherited TCP socket's peer: %s", log);
  cr_expect(strstr(log, " ms uid=0 pid=") != NULL, "the inherited unix socket's peer: %s", log);
  char listening[600];
  snprintf(listening, sizeof(listening), "listening on 127.0.0.1:%d (socket fd 3 passed by systemd)", port);
  cr_expect(strstr(log, listening) != NULL, "the log names the inherited address: %s", log);
  snprintf(listening, sizeof(listening), "listening on unix:%s (socket fd 4", unix_path);
  cr_expect(strstr(log, listening) != NULL, "%s", log);
  free(log);
  char url[128];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", configured_port);
  http_get(url, &response);
  cr_expect_eq(response.status, 0, "the configured listener is not bound when activated");
  http_response_free(&response);
  cr_expect_eq(flipcached_stop(&daemon_proc), 0);
  struct stat st;
  cr_expect_eq(stat(unix_path, &st), 0, "systemd's socket file is left to systemd");
}

/* --- shutdown --------------------------------------------------------------------------------- */

Test(systemd, sigterm_during_a_slow_fetch_still_answers_it_and_exits_0, .fini = stop_all,
     .timeout = 60) {
  prepare(NULL);
  flipcached_launch(&daemon_proc);
  fake_set_mode(&fake, ID, "slow", 800);
  const char request[] = "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  int fd = raw_send(daemon_proc.port, request, sizeof(request) - 1);
  pause_ms(200);
  kill(daemon_proc.pid, SIGTERM);
  char answer[4096];
  raw_read_all(fd, answer, sizeof(answer));
  close(fd);
  cr_expect(strncmp(answer, "HTTP/1.1 200", 12) == 0, "answered: %.60s", answer);
  int status;
  waitpid(daemon_proc.pid, &status, 0);
  daemon_proc.pid = 0;
  cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
}

/* --- observability ---------------------------------------------------------------------------- */

Test(systemd, metrics_pass_promtool_check_metrics, .fini = stop_all, .timeout = 60) {
  prepare(NULL);
  flipcached_launch(&daemon_proc);
  cr_expect_eq(status_of(ID), 200);
  cr_expect_eq(status_of(ID), 200);
  char command[600], out[32768]; /* /metrics is over 8 KiB */
  snprintf(command, sizeof(command), "curl -sf %s/metrics | promtool check metrics", daemon_proc.url);
  int status = run_command(command, out, sizeof(out));
  cr_expect_eq(status, 0, "promtool says:\n%s", out);
  snprintf(command, sizeof(command), "curl -sf %s/metrics", daemon_proc.url);
  run_command(command, out, sizeof(out));
  cr_expect(strstr(out, "flipcached_upstream_request_duration_seconds_count 1\n") != NULL, "%s", out);
  cr_expect(strstr(out, "flipcached_hits_total 1\n") != NULL);
}

/* Every flipcached_* name in text (the alerting rules, the dashboard) that /metrics lacks, into
 * missing (space separated); how many names were checked. */
static size_t names_not_exported(const char *text, const char *metrics, char *missing, size_t len) {
  size_t checked = 0;
  missing[0] = '\0';
  for (const char *p = strstr(text, "flipcached_"); p; p = strstr(p + 1, "flipcached_")) {
    char name[128];
    size_t n = 0;
    while (n + 1 < sizeof(name) && ((p[n] >= 'a' && p[n] <= 'z') || p[n] == '_' ||
                                    (p[n] >= '0' && p[n] <= '9')))
      name[n] = p[n], n++;
    name[n] = '\0';
    if (strcmp(name, "flipcached_") == 0 || strstr(name, "flipcached_alerts") ||
        strcmp(name, "flipcached_dashboard") == 0)
      continue; /* a file name in a comment, not a metric */
    checked++;
    char exported[140];
    snprintf(exported, sizeof(exported), "\n%s", name);
    const char *at = strstr(metrics, exported);
    char after = at ? at[strlen(exported)] : 0;
    if (!at || (after != ' ' && after != '{')) {
      strncat(missing, name, len - strlen(missing) - 2);
      strncat(missing, " ", len - strlen(missing) - 1);
    }
  }
  return checked;
}

static char *read_source_file(const char *relative) {
  char path[400];
  snprintf(path, sizeof(path), "%s/%s", SOURCE_DIR, relative);
  FILE *file = fopen(path, "r");
  cr_assert_not_null(file, "%s", path);
  static char text[1 << 17];
  size_t len = fread(text, 1, sizeof(text) - 1, file);
  text[len] = '\0';
  fclose(file);
  return strdup(text);
}

/* The shipped alerting rules pass promtool, the dashboard is JSON, and both use only metrics the
 * daemon exports (with the answer histogram by outcome among them). */
Test(systemd, the_shipped_alerts_and_dashboard_use_only_exported_metrics, .fini = stop_all,
     .timeout = 60) {
  prepare(NULL);
  flipcached_launch(&daemon_proc);
  cr_expect_eq(status_of(ID), 200); /* a miss */
  cr_expect_eq(status_of(ID), 200); /* a hit */
  cr_expect_eq(status_of("not-a-uuid"), 422); /* an error */
  char command[600];
  static char metrics[1 << 16];
  snprintf(command, sizeof(command), "curl -sf %s/metrics", daemon_proc.url);
  cr_assert_eq(run_command(command, metrics, sizeof(metrics)), 0);
  cr_expect(strstr(metrics, "\nflipcached_answer_duration_seconds_count{outcome=\"hit\"} 1\n") &&
                strstr(metrics, "\nflipcached_answer_duration_seconds_count{outcome=\"miss\"} 1\n") &&
                strstr(metrics, "\nflipcached_answer_duration_seconds_count{outcome=\"error\"} 1\n") &&
                strstr(metrics, "\nflipcached_answer_duration_seconds_count{outcome=\"stale\"} 0\n"),
            "%s", metrics);
  char out[8192], missing[2048];
  snprintf(command, sizeof(command), "promtool check rules %s/conf/flipcached-alerts.yml", SOURCE_DIR);
  cr_expect_eq(run_command(command, out, sizeof(out)), 0, "%s", out);
  char *alerts = read_source_file("conf/flipcached-alerts.yml");
  cr_expect_geq(names_not_exported(alerts, metrics, missing, sizeof(missing)), 7);
  cr_expect_str_eq(missing, "", "the alerts use metrics /metrics lacks");
  char *dashboard = read_source_file("conf/flipcached-dashboard.json");
  json_object *parsed = json_tokener_parse(dashboard);
  cr_expect(parsed && json_object_is_type(parsed, json_type_object), "the dashboard is not JSON");
  json_object_put(parsed);
  cr_expect_geq(names_not_exported(dashboard, metrics, missing, sizeof(missing)), 10);
  cr_expect_str_eq(missing, "", "the dashboard uses metrics /metrics lacks");
  free(alerts);
  free(dashboard);
}

Test(systemd, the_stats_command_prints_a_table_with_the_hit_ratio, .fini = stop_all, .timeout = 60) {
  prepare(NULL);
  flipcached_launch(&daemon_proc);
  cr_expect_eq(status_of(ID), 200);
  for (int i = 0; i < 3; i++)
    cr_expect_eq(status_of(ID), 200);
  char command[600], out[8192];
  snprintf(command, sizeof(command), "%s stats -c %s", FLIPCACHED_BIN, daemon_proc.config);
  cr_expect_eq(run_command(command, out, sizeof(out)), 0, "%s", out);
  cr_expect(strstr(out, "hit ratio                  75.0%") != NULL, "%s", out);
  cr_expect(strstr(out, "hits                                    3\n") != NULL, "%s", out);
  cr_expect(strstr(out, daemon_proc.token) == NULL);
}

Test(systemd, the_stats_command_takes_a_base_url_json_and_help, .fini = stop_all, .timeout = 60) {
  prepare(NULL);
  flipcached_launch(&daemon_proc);
  cr_expect_eq(status_of(ID), 200);
  char command[600], out[16384];
  snprintf(command, sizeof(command), "%s stats --url %s/", FLIPCACHED_BIN, daemon_proc.url);
  cr_expect_eq(run_command(command, out, sizeof(out)), 0, "the base URL: %s", out);
  cr_expect(strstr(out, "breaker_state                      closed\n") != NULL, "by name: %s", out);
  cr_expect(strstr(out, "shared_state                          off\n") != NULL, "by name: %s", out);
  cr_expect(strstr(out, "shared_lookups") == NULL && strstr(out, "shared_errors") == NULL,
            "the tier is off: its rows are left out: %s", out);
  cr_expect(strstr(out, "rows of the shared tier left out: it is off") != NULL, "%s", out);
  cr_expect(strstr(out, "cache_max_bytes                  16.0 MiB  (16777216)\n") != NULL,
            "sizes in units: %s", out);
  char fresh[80], stale[80];
  snprintf(fresh, sizeof(fresh), "%-24s %6.1f%%  (0 of 1 enrollment answers)\n", "  fresh", 0.0);
  snprintf(stale, sizeof(stale), "%-24s %6.1f%%  (0 of 1 enrollment answers)\n", "  stale", 0.0);
  cr_expect(strstr(out, fresh) && strstr(out, stale), "fresh and stale apart: %s", out);
  snprintf(command, sizeof(command), "%s stats --json -u %s/stats", FLIPCACHED_BIN, daemon_proc.url);
  cr_expect_eq(run_command(command, out, sizeof(out)), 0, "%s", out);
  cr_expect(out[0] == '{' && strstr(out, "\"misses\":1") != NULL, "%s", out);
  cr_expect(strstr(out, "\"shared_lookups\":0") != NULL, "--json has every counter: %s", out);
  cr_expect_eq(run_command(FLIPCACHED_BIN " stats --help", out, sizeof(out)), 0);
  cr_expect(strstr(out, "usage: flipcached stats [-c FILE] [--url URL] [--json]\n") != NULL, "%s",
            out);
  cr_expect_eq(run_command(FLIPCACHED_BIN " -h", out, sizeof(out)), 0);
  cr_expect(strstr(out, "flipcached stats [-c FILE] [--url URL] [--json]\n") != NULL,
            "-h and stats --help agree: %s", out);
  cr_expect_eq(run_command(FLIPCACHED_BIN " stats extra", out, sizeof(out)), 2);
}

Test(systemd, the_stats_command_says_when_no_daemon_answers) {
  char out[1024];
  cr_expect_eq(run_command(FLIPCACHED_BIN " stats --url http://127.0.0.1:9/stats", out, sizeof(out)), 1);
  cr_expect(strstr(out, "flipcached stats: http://127.0.0.1:9/stats:") != NULL, "%s", out);
}

Test(systemd, access_log_lines_without_query_or_credentials, .fini = stop_all, .timeout = 60) {
  struct daemon_options options = {.log_level = "info"};
  prepare(&options);
  FILE *config = fopen(daemon_proc.config, "a");
  fputs("[log]\naccess = yes\n", config); /* a second [log] section is allowed */
  fclose(config);
  flipcached_launch(&daemon_proc);
  const char *headers[] = {"Authorization: Bearer client-secret-xyz", NULL};
  char url[256];
  snprintf(url, sizeof(url), "%s/v1/enrollments/%s?email=someone@example.com", daemon_proc.url, ID);
  struct http_response response;
  http_request(NULL, url, headers, &response);
  cr_expect_eq(response.status, 200);
  http_response_free(&response);
  cr_assert_eq(flipcached_stop(&daemon_proc), 0);
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, "info: access: GET /v1/enrollments/" ID " 200 \"flipcached; fwd=uri-miss; stored\" ") != NULL,
            "%s", log);
  cr_expect(strstr(log, "someone@example.com") == NULL, "the query is not logged");
  cr_expect(strstr(log, "client-secret-xyz") == NULL);
  cr_expect(strstr(log, daemon_proc.token) == NULL);
  free(log);
}

/* $CREDENTIALS_DIRECTORY/flip-token with `token`, as systemd's LoadCredential= makes it. */
static void write_systemd_credential(const char *token) {
  snprintf(daemon_proc.credentials_directory, sizeof(daemon_proc.credentials_directory),
           "%s/credentials", daemon_proc.dir);
  mkdir(daemon_proc.credentials_directory, 0700);
  char path[400];
  snprintf(path, sizeof(path), "%s/flip-token", daemon_proc.credentials_directory);
  unlink(path);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0400);
  cr_assert(fd >= 0);
  dprintf(fd, "%s\n", token);
  close(fd);
}

/* Rotating the key under systemd 252 is a restart (LoadCredential= copies the key only at start).
 * With the sockets systemd holds (flipcached.socket), a client that connects while no daemon runs
 * waits in the backlog and is answered by the next one, from the cache kept on disk; the new key
 * is then the one sent. */
Test(systemd, a_restart_with_socket_activation_refuses_no_connection_and_loads_the_new_key,
     .fini = stop_all, .timeout = 60) {
  char old_token[64], new_token[64];
  make_token(old_token, sizeof(old_token));
  make_token(new_token, sizeof(new_token));
  fake_start(&fake, old_token);
  flipcached_prepare(&daemon_proc, &fake, NULL);
  write_systemd_credential(old_token);
  int port;
  int listener = listening_tcp(&port); /* held by "systemd", this test, across the restart */
  daemon_proc.inherited[0] = listener;
  daemon_proc.inherited_count = 1;
  daemon_proc.port = port;
  snprintf(daemon_proc.url, sizeof(daemon_proc.url), "http://127.0.0.1:%d", port);
  flipcached_launch(&daemon_proc);
  cr_expect_eq(status_of(ID), 200);

  /* A reload with the key untouched says nothing of systemd's copy. */
  flipcached_reload(&daemon_proc, "reload: credential unchanged");
  pause_ms(100);
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, "systemd's copy") == NULL, "a warning with nothing replaced: %s", log);
  free(log);

  /* The operator replaces the key at its source; systemd's copy stays the old one until a start. */
  pause_ms(20); /* past the file system's timestamp granularity */
  flipcached_write_token(&daemon_proc, new_token, 0600);
  /* As `cp -p` of a key kept aside would: a modification time older than systemd's copy. The
   * change time still says the file was replaced. */
  struct timeval long_ago[2] = {{.tv_sec = 946684800}, {.tv_sec = 946684800}};
  cr_assert_eq(utimes(daemon_proc.token_path, long_ago), 0);
  fake_expect_token(&fake, new_token);
  flipcached_reload(&daemon_proc, "changed, but the credential is systemd's copy");
  log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, "restart the service (systemctl restart flipcached") != NULL, "%s", log);
  free(log);

  cr_assert_eq(flipcached_stop(&daemon_proc), 0);
  write_systemd_credential(new_token); /* the restart: systemd copies the key again */
  const char request[] = "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  int client = raw_send(port, request, sizeof(request) - 1); /* no daemon runs now */
  flipcached_launch(&daemon_proc);
  char answer[8192];
  cr_assert_gt(raw_read_response(client, answer, sizeof(answer), 10000), 0,
               "the connection made during the restart was not answered");
  close(client);
  cr_expect(strncmp(answer, "HTTP/1.1 200", 12) == 0, "%.60s", answer);
  cr_expect(strstr(answer, "Cache-Status: flipcached; hit") != NULL, "the cache was kept: %s", answer);
  cr_expect_eq(status_of("497f6eca-6276-4993-bfeb-53cbbbba6f09"), 200,
               "a miss with the new key (the fake now refuses the old one)");
  cr_expect_eq(fake_stat(&fake, "auth_bad"), 0);
  close(listener);
}

/* The upstream refuses the key: /healthz says what to do, and under systemd that is a restart. */
Test(systemd, healthz_advises_a_restart_for_a_systemd_credential, .fini = stop_all, .timeout = 60) {
  prepare(NULL);
  char refused[64];
  make_token(refused, sizeof(refused));
  write_systemd_credential(refused);
  flipcached_launch(&daemon_proc);
  cr_expect_eq(status_of(ID), 502);
  char url[128];
  snprintf(url, sizeof(url), "%s/healthz", daemon_proc.url);
  struct http_response response;
  http_get(url, &response);
  cr_expect_eq(response.status, 503);
  cr_expect(strstr(response.body, "replace it and restart the service (systemctl restart flipcached") !=
                NULL, "%s", response.body);
  http_response_free(&response);
}

Test(systemd, journald_gets_priority_prefixes, .fini = stop_all, .timeout = 60) {
  prepare(NULL);
  snprintf(daemon_proc.env[0], sizeof(daemon_proc.env[0]), "JOURNAL_STREAM=8:12345");
  flipcached_launch(&daemon_proc);
  cr_assert_eq(flipcached_stop(&daemon_proc), 0);
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strncmp(log, "<6>credential loaded from", 25) == 0, "%s", log);
  free(log);
}

/* --- packaging ---------------------------------------------------------------------------------- */

Test(packaging, the_service_unit_is_exposed_2_0_or_less) {
  char command[600], out[16384];
  snprintf(command, sizeof(command),
           "systemd-analyze security --offline=yes %s/systemd/flipcached.service", SOURCE_DIR);
  run_command(command, out, sizeof(out));
  const char *line = strstr(out, "Overall exposure level for flipcached.service: ");
  cr_assert_not_null(line, "%s", out);
  double exposure = atof(line + strlen("Overall exposure level for flipcached.service: "));
  cr_log_info("exposure %.1f", exposure);
  cr_expect_leq(exposure, 2.0, "exposure %.1f", exposure);
}

static char *read_unit(const char *name) {
  char path[400];
  snprintf(path, sizeof(path), "%s/systemd/%s", SOURCE_DIR, name);
  FILE *file = fopen(path, "r");
  cr_assert_not_null(file, "%s", path);
  static char text[16384];
  size_t len = fread(text, 1, sizeof(text) - 1, file);
  text[len] = '\0';
  fclose(file);
  return text;
}

/* The daemon decides who may use it from the kernel's word on each peer: the unit must not hide
 * other users behind a user namespace, and must let it ask the socket table. */
Test(packaging, the_units_let_the_daemon_tell_its_peers_apart) {
  const char *service = read_unit("flipcached.service");
  cr_expect(strstr(service, "\nPrivateUsers=yes") == NULL, "PrivateUsers=yes maps every peer to nobody");
  const char *families = strstr(service, "\nRestrictAddressFamilies=");
  cr_assert_not_null(families);
  const char *line_end = strchr(families + 1, '\n');
  cr_expect(memmem(families, (size_t)(line_end - families), "AF_NETLINK", 10) != NULL,
            "inet_diag needs AF_NETLINK");
  cr_expect(strstr(service, "\nRuntimeDirectory=flipcached\n") != NULL);
  cr_expect(strstr(service, "\nRuntimeDirectoryPreserve=yes\n") != NULL,
            "flipcached.socket's socket lives in the runtime directory");
  cr_expect(strstr(service, "\nSupplementaryGroups=flipcached-clients\n") != NULL);
  /* A static user: with DynamicUser=yes, systemd 252 puts a preserved runtime directory under
   * /run/private (0700), where no client reaches the unix sockets (.ci/systemd-check found it). */
  cr_expect(strstr(service, "\nDynamicUser=yes") == NULL);
  cr_expect(strstr(service, "\nUser=flipcached\n") != NULL);
  /* socket_group chowns the daemon's own socket: ~@privileged takes @chown away, so the unit must
   * give it back after (the unit failed with EPERM under systemd otherwise). */
  const char *denied = strstr(service, "\nSystemCallFilter=~@privileged\n");
  const char *chown_back = strstr(service, "\nSystemCallFilter=@chown\n");
  cr_expect(denied && chown_back && chown_back > denied, "@chown allowed after ~@privileged");
  char command[600], out[16384];
  snprintf(command, sizeof(command), "systemd-analyze syscall-filter @privileged");
  run_command(command, out, sizeof(out));
  cr_expect(strstr(out, "@chown") != NULL, "systemd's @privileged holds @chown (what makes the "
            "line above needed): %s", out);
  const char *socket_unit = read_unit("flipcached.socket"); /* read_unit's buffer is reused */
  cr_expect(strstr(socket_unit, "\nListenStream=/run/flipcached/http.sock\n") != NULL);
  const char *sysusers = read_unit("flipcached.sysusers");
  cr_expect(strstr(sysusers, "\nu flipcached ") != NULL, "the user comes from sysusers.d");
}

/* cmake --install --prefix P writes only under P (every path it says it installed), the
 * units run P's binary with P's configuration, and a second install keeps an edited
 * configuration, putting the shipped one beside it as .new. */
Test(packaging, install_stays_inside_its_prefix_and_keeps_an_edited_configuration, .timeout = 120) {
  char prefix[] = "/tmp/flipprefix.XXXXXX";
  cr_assert(mkdtemp(prefix));
  char command[1600], out[16384];
  /* Its own "-- Installing: PATH" lines, not install_manifest.txt, which another test's install
   * may be rewriting meanwhile. */
  snprintf(command, sizeof(command), "cmake --install %s --prefix %s", BINARY_DIR, prefix);
  cr_assert_eq(run_command(command, out, sizeof(out)), 0, "%s", out);
  size_t files = 0;
  for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
    const char *path = strstr(line, ": /");
    if (strncmp(line, "-- ", 3) != 0 || !path)
      continue;
    files++;
    cr_expect(strncmp(path + 2, prefix, strlen(prefix)) == 0, "installed outside the prefix: %s", line);
  }
  cr_expect_geq(files, 8);
  snprintf(command, sizeof(command), "grep '^ExecStart=' %s/lib/systemd/system/flipcached.service",
           prefix);
  run_command(command, out, sizeof(out));
  char expected[600];
  snprintf(expected, sizeof(expected), "ExecStart=%s/sbin/flipcached -c %s/etc/flipcached/flipcached.conf",
           prefix, prefix);
  cr_expect(strstr(out, expected) != NULL, "%s", out);

  snprintf(command, sizeof(command),
           "echo '# edited by the operator' >> %s/etc/flipcached/flipcached.conf && "
           "cmake --install %s --prefix %s >/dev/null && tail -1 %s/etc/flipcached/flipcached.conf && "
           "cmp %s/etc/flipcached/flipcached.conf.new %s/conf/flipcached.conf && echo same",
           prefix, BINARY_DIR, prefix, prefix, prefix, SOURCE_DIR);
  run_command(command, out, sizeof(out));
  cr_expect(strstr(out, "# edited by the operator\nsame") != NULL, "%s", out);
  remove_tree(prefix);
}

/* What systemd-analyze verify says of the unit with systemd/`drop_in` installed as
 * flipcached.service.d/`as`, into out (nothing but its remarks on the binary's absence). */
static void verify_with_drop_in(const char *drop_in, const char *as, char *out, size_t out_len) {
  char dir[] = "/tmp/flipunit.XXXXXX";
  cr_assert(mkdtemp(dir));
  char command[1600];
  snprintf(command, sizeof(command),
           "mkdir -p %s/flipcached.service.d && cp %s/systemd/flipcached.service %s/ && "
           "cp %s/systemd/%s %s/flipcached.service.d/%s && "
           "SYSTEMD_UNIT_PATH=%s: systemd-analyze verify --man=no %s/flipcached.service 2>&1 | "
           "grep -v 'is not executable' | grep -v '^$' || true",
           dir, SOURCE_DIR, dir, SOURCE_DIR, drop_in, dir, as, dir, dir);
  run_command(command, out, out_len);
  remove_tree(dir);
}

/* The OAuth2 drop-in must reset the unit's flip-token: a missing LoadCredential= source fails the
 * unit, and with OAuth2 there is no /etc/flipcached/token. */
Test(packaging, the_oauth_drop_in_resets_the_static_key_and_the_unit_accepts_it) {
  const char *drop_in = read_unit("flipcached-oauth.conf");
  const char *reset = strstr(drop_in, "\nLoadCredential=\n");
  const char *secret = strstr(drop_in, "\nLoadCredential=flip-client-secret:");
  cr_expect(reset && secret && reset < secret, "%s", drop_in);
  char out[8192];
  verify_with_drop_in("flipcached-oauth.conf", "oauth.conf", out, sizeof(out));
  cr_expect(strstr(out, "LoadCredential") == NULL && strstr(out, "oauth.conf") == NULL,
            "systemd-analyze verify: %s", out);
}

/* The shared key's drop-in adds its credential to the unit's, and the unit accepts it. */
Test(packaging, the_shared_key_drop_in_loads_flip_shared_key_and_the_unit_accepts_it) {
  const char *drop_in = read_unit("flipcached-shared.conf");
  cr_expect(strstr(drop_in, "\nLoadCredential=flip-shared-key:/etc/flipcached/shared-key\n"),
            "%s", drop_in);
  cr_expect(!strstr(drop_in, "\nLoadCredential=\n"), "it must keep the unit's flip-token");
  char out[8192];
  verify_with_drop_in("flipcached-shared.conf", "shared.conf", out, sizeof(out));
  cr_expect(strstr(out, "LoadCredential") == NULL && strstr(out, "shared.conf") == NULL,
            "systemd-analyze verify: %s", out);
}

Test(packaging, the_man_pages_pass_mandoc_lint) {
  char command[600], out[8192];
  snprintf(command, sizeof(command), "cd %s/docs && mandoc -Tlint flipcached.8 flipcached.conf.5",
           SOURCE_DIR);
  int status = run_command(command, out, sizeof(out));
  cr_expect_eq(status, 0, "%s", out);
  /* mandoc may also remark on the machine's own man database; nothing about our pages */
  cr_expect(strstr(out, "flipcached.8:") == NULL && strstr(out, "flipcached.conf.5:") == NULL, "%s", out);
}

/* What `man flipcached` shows on Debian 12 (groff 1.22.4): the volume's own title, not "BSD". */
Test(packaging, the_man_pages_are_not_headed_bsd_under_groff) {
  const char *pages[][2] = {{"flipcached.8", "System Manager's Manual"},
                            {"flipcached.conf.5", "File Formats Manual"}};
  for (size_t i = 0; i < 2; i++) {
    char command[600], out[65536];
    snprintf(command, sizeof(command), "groff -mdoc -Tutf8 -P-c %s/docs/%s | head -1", SOURCE_DIR,
             pages[i][0]);
    cr_expect_eq(run_command(command, out, sizeof(out)), 0, "%s", out);
    cr_expect(strstr(out, pages[i][1]) != NULL && strstr(out, "BSD") == NULL, "%s: %s",
              pages[i][0], out);
  }
}

Test(packaging, install_lays_out_the_contract_files, .timeout = 120) {
  char dir[] = "/tmp/flipinstall.XXXXXX";
  cr_assert(mkdtemp(dir));
  char command[800], out[8192];
  snprintf(command, sizeof(command), "DESTDIR=%s cmake --install %s", dir, BINARY_DIR);
  cr_assert_eq(run_command(command, out, sizeof(out)), 0, "%s", out);
  const char *files[] = {"/usr/sbin/flipcached", "/etc/flipcached/flipcached.conf",
                         "/lib/systemd/system/flipcached.service",
                         "/lib/systemd/system/flipcached.socket",
                         "/usr/share/man/man8/flipcached.8", "/usr/share/man/man5/flipcached.conf.5",
                         "/usr/lib/sysusers.d/flipcached.conf"};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    char path[600];
    snprintf(path, sizeof(path), "%s%s", dir, files[i]);
    struct stat st;
    cr_expect_eq(stat(path, &st), 0, "%s was not installed", files[i]);
  }
  /* -t checks the credential too: give it the one systemd would (LoadCredential=). */
  char binary[1200];
  snprintf(binary, sizeof(binary),
           "mkdir -m 700 %s/credentials && printf 'fl_installed_check\\n' > %s/credentials/flip-token && "
           "chmod 600 %s/credentials/flip-token && CREDENTIALS_DIRECTORY=%s/credentials "
           "%s/usr/sbin/flipcached -t -c %s/etc/flipcached/flipcached.conf",
           dir, dir, dir, dir, dir, dir);
  cr_expect_eq(run_command(binary, out, sizeof(out)), 0, "the installed configuration: %s", out);
  remove_tree(dir);
}
