/* The production upstream, played by real servers: Debian's nginx-light serving HTTPS and HTTP/2
 * (certificates made with openssl for each test) in front of the fake upstream, and a CONNECT
 * proxy that writes down every request head it sees. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "harness.h"
#include "tls_peers.h"

#define ID "497f6eca-6276-4993-bfeb-53cbbbba6f08"

static struct nginx nginx;
static struct connect_proxy proxy;
static char dir[] = "/tmp/flipcached-tls.XXXXXX";
static char token[64];

static void stop_all_peers(void) {
  fixture_stop(&fake, &daemon_proc);
  nginx_stop(&nginx);
  connect_proxy_stop(&proxy);
  remove_tree(dir);
}

/* Certificates in a fresh dir, the fake, and nginx with `certificate` in front of it. */
static void start_peers(const char *certificate, bool client_certificates) {
  cr_assert(mkdtemp(dir));
  tls_make_certificates(dir);
  make_token(token, sizeof(token));
  fake_start(&fake, token);
  nginx_start(&nginx, dir, certificate, client_certificates, fake.port);
}

/* The daemon against nginx, with these [upstream] lines; env: "NAME=value" entries or NULL. */
static void start_daemon(const char *upstream_lines, const char *const *env) {
  static char base_url[64], extra[2048];
  snprintf(base_url, sizeof(base_url), "https://127.0.0.1:%d", nginx.port);
  snprintf(extra, sizeof(extra), "%s", upstream_lines ? upstream_lines : "");
  struct daemon_options options = {.token = token, .base_url = base_url, .extra_upstream = extra};
  flipcached_prepare(&daemon_proc, &fake, &options);
  for (size_t i = 0; env && env[i] && i < 4; i++)
    snprintf(daemon_proc.env[i], sizeof(daemon_proc.env[i]), "%s", env[i]);
  flipcached_launch(&daemon_proc);
}

static char *ca_line(void) {
  static char line[400];
  snprintf(line, sizeof(line), "ca_file = %s/ca.pem\n", dir);
  return line;
}

static long status_of(const char *id, char *cache_status, size_t len) {
  struct http_response response;
  get_enrollment_from(&daemon_proc, id, &response);
  long status = response.status;
  if (cache_status && !http_header(&response, "Cache-Status", cache_status, len))
    cache_status[0] = '\0';
  http_response_free(&response);
  return status;
}

static bool log_has(const char *text) {
  char *log = flipcached_log(&daemon_proc);
  bool found = strstr(log, text) != NULL;
  free(log);
  return found;
}

static bool file_has(const char *path, const char *text) {
  FILE *file = fopen(path, "r");
  if (!file)
    return false;
  static char content[1 << 20];
  size_t len = fread(content, 1, sizeof(content) - 1, file);
  content[len] = '\0';
  fclose(file);
  return strstr(content, text) != NULL;
}

TestSuite(tls, .fini = stop_all_peers, .timeout = 120);

Test(tls, trusted_through_ca_file_then_a_hit) {
  start_peers("good", false);
  start_daemon(ca_line(), NULL);
  char cache_status[128];
  cr_expect_eq(status_of(ID, cache_status, sizeof(cache_status)), 200);
  cr_expect_str_eq(cache_status, "flipcached; fwd=uri-miss; stored");
  cr_expect_eq(status_of(ID, cache_status, sizeof(cache_status)), 200);
  cr_expect_str_eq(cache_status, "flipcached; hit; ttl=300");
  cr_expect_eq(fake_count(&fake, ID), 1);
}

/* The warm-up's list endpoint through the real front: nginx over TLS and HTTP/2, a program of
 * 5,000 enrollments (5 MB) listed in one request, every id then a hit. */
Test(tls, a_program_is_warmed_through_nginx_over_http2) {
  start_peers("good", false);
  fake_set_program(&fake, "tls-program", 5000, "0000715a", "ok", 0);
  static char base_url[64];
  snprintf(base_url, sizeof(base_url), "https://127.0.0.1:%d", nginx.port);
  struct daemon_options options = {.token = token, .base_url = base_url, .extra_upstream = ca_line(),
                                   .extra_sections = "[warm]\nprogram_ids = tls-program\n",
                                   .max_size = "64M"};
  flipcached_prepare(&daemon_proc, &fake, &options);
  flipcached_launch(&daemon_proc);
  long stored = 0;
  for (int i = 0; i < 400 && (stored = flipcached_stat(&daemon_proc, "warm_stored")) < 5000; i++)
    pause_ms(25);
  cr_assert_eq(stored, 5000, "%s", log_has("warm:") ? "(see the log's warm: line)" : "");
  cr_expect_eq(flipcached_stat(&daemon_proc, "warm_failures"), 0);
  cr_expect_eq(fake_program_count(&fake, "tls-program"), 1);
  char cache_status[128];
  cr_expect_eq(status_of("0000715a-0000-4000-8000-000000001387", cache_status,
                         sizeof(cache_status)), 200);
  cr_expect(strncmp(cache_status, "flipcached; hit", 15) == 0, "%s", cache_status);
  cr_expect_eq(fake_stat(&fake, "total"), 1, "only the list went upstream");
}

Test(tls, without_the_ca_the_answer_is_502_and_the_log_says_the_ca_is_unknown) {
  start_peers("good", false);
  start_daemon(NULL, NULL); /* the system store does not know the test CA */
  cr_expect_eq(status_of(ID, NULL, 0), 502);
  cr_expect(log_has("TLS: the upstream's certificate is not from a trusted CA"));
  cr_expect_eq(fake_count(&fake, ID), 0);
}

Test(tls, an_expired_certificate_is_502_and_logged_as_expired) {
  start_peers("expired", false);
  start_daemon(ca_line(), NULL);
  cr_expect_eq(status_of(ID, NULL, 0), 502);
  cr_expect(log_has("TLS: the upstream's certificate has expired"));
}

Test(tls, a_certificate_for_another_name_is_502_and_logged_as_a_name_mismatch) {
  start_peers("other", false);
  start_daemon(ca_line(), NULL);
  cr_expect_eq(status_of(ID, NULL, 0), 502);
  cr_expect(log_has("TLS: the upstream's certificate does not name its host"));
}

Test(tls, mutual_tls_without_and_with_the_client_certificate) {
  start_peers("good", true);
  start_daemon(ca_line(), NULL);
  cr_expect_eq(status_of(ID, NULL, 0), 502, "nginx wants a client certificate");
  /* nginx finishes the handshake and answers 400; a server that refuses the handshake instead is
   * named by upstream.c as "TLS: the upstream asks for a client certificate". */
  cr_expect(log_has("the upstream refused the client certificate, or got none"),
            "the log names the cause");
  cr_expect_eq(flipcached_stop(&daemon_proc), 0);
  remove_tree(daemon_proc.dir);

  char lines[1200];
  snprintf(lines, sizeof(lines), "%sclient_cert = %s/client.pem\nclient_key = %s/client.key\n",
           ca_line(), dir, dir);
  start_daemon(lines, NULL);
  cr_expect_eq(status_of(ID, NULL, 0), 200);
  cr_expect_eq(fake_count(&fake, ID), 1);
}

Test(tls, a_client_key_others_may_read_is_refused_by_check_config) {
  start_peers("good", false);
  char lines[1200];
  snprintf(lines, sizeof(lines), "%sclient_cert = %s/client.pem\nclient_key = %s/client.key\n",
           ca_line(), dir, dir);
  static char base_url[64];
  snprintf(base_url, sizeof(base_url), "https://127.0.0.1:%d", nginx.port);
  struct daemon_options options = {.token = token, .base_url = base_url, .extra_upstream = lines};
  flipcached_prepare(&daemon_proc, &fake, &options);
  char key[400], command[1200], out[4096];
  snprintf(key, sizeof(key), "%s/client.key", dir);
  cr_assert_eq(chmod(key, 0644), 0);
  snprintf(command, sizeof(command), "%s -t -c %s", FLIPCACHED_BIN, daemon_proc.config);
  cr_expect_eq(run_command(command, out, sizeof(out)), 1, "%s", out);
  cr_expect(strstr(out, "client.key: mode 0644: lets group or others access it") != NULL, "%s", out);
  cr_assert_eq(chmod(key, 0600), 0);
  snprintf(command, sizeof(command), "rm %s/ca.pem && %s -t -c %s", dir, FLIPCACHED_BIN,
           daemon_proc.config);
  cr_expect_eq(run_command(command, out, sizeof(out)), 1, "%s", out);
  cr_expect(strstr(out, "[upstream] ca_file") != NULL && strstr(out, "No such file") != NULL, "%s",
            out);
}

/* 200 concurrent misses, each held 300 ms by the fake: over HTTP/2 they share connections. */
Test(tls, two_hundred_concurrent_misses_over_http2_use_at_most_3_connections) {
  start_peers("good", false);
  start_daemon(ca_line(), NULL);
  fake_set_mode(&fake, "*", "slow", 300);
  enum { N = 200 };
  static char urls[N][128];
  const char *list[N];
  for (int i = 0; i < N; i++) {
    snprintf(urls[i], sizeof(urls[i]), "%s/v1/enrollments/497f6eca-6276-4993-bfeb-%012d",
             daemon_proc.url, i);
    list[i] = urls[i];
  }
  static struct http_response responses[N];
  http_get_concurrently(list, N, responses);
  int ok = 0;
  for (int i = 0; i < N; i++) {
    ok += responses[i].status == 200;
    http_response_free(&responses[i]);
  }
  cr_expect_eq(ok, N);
  long connections = nginx_connections_used(&nginx, "/v1/enrollments/");
  cr_log_info("%ld connections for %d concurrent misses", connections, N);
  cr_expect(connections >= 1 && connections <= 3, "%ld connections", connections);
}

/* nginx speaking HTTP/1.1 only, one connection allowed. Until its first answer the daemon takes
 * an https upstream for one that may multiplex, so a second fetch is handed to libcurl and waits
 * there for the one connection, held 3 s by the first; a reload lowers timeout_ms to 500 ms for
 * it. That fetch really waited for a connection, and the log says so (and nothing else does). */
Test(tls, a_fetch_that_waits_inside_libcurl_for_a_connection_is_logged_as_such) {
  cr_assert(mkdtemp(dir));
  tls_make_certificates(dir);
  make_token(token, sizeof(token));
  fake_start(&fake, token);
  nginx_start_http1(&nginx, dir, "good", fake.port);
  char lines[600];
  snprintf(lines, sizeof(lines), "%smax_connections = 1\n", ca_line());
  start_daemon(lines, NULL);
  int fd = hold_the_upstream_connection(ID, 3000, 5000);
  cr_expect_eq(status_of("497f6eca-6276-4993-bfeb-53cbbbba6f09", NULL, 0), 504);
  cr_expect(log_has("waited for a free upstream connection until timeout_ms (500 ms): all 1 of "
                    "[upstream] max_connections were busy"));
  cr_expect(!log_has("Failed to resolve host"));
  cr_expect(!log_has("no answer within"));
  expect_held_answer_200(fd);
}

Test(tls, through_a_connect_proxy_which_never_sees_the_credential) {
  start_peers("good", false);
  cr_assert(dir[0]);
  connect_proxy_start(&proxy, dir);
  char lines[1200];
  snprintf(lines, sizeof(lines), "%sproxy = http://127.0.0.1:%d\n", ca_line(), proxy.port);
  start_daemon(lines, NULL);
  cr_expect_eq(status_of(ID, NULL, 0), 200);
  char connect_line[64];
  snprintf(connect_line, sizeof(connect_line), "CONNECT 127.0.0.1:%d HTTP/1.1", nginx.port);
  cr_expect(file_has(proxy.log, connect_line), "the proxy tunnelled the request");
  cr_expect(!file_has(proxy.log, "PLAIN"), "a request went through the proxy in clear text");
  cr_expect(!file_has(proxy.log, token), "the proxy saw the credential");
  cr_expect(!file_has(proxy.log, "uthorization"), "the proxy saw an Authorization header");
}

Test(tls, a_proxy_that_is_down_is_logged_as_the_proxys_failure) {
  start_peers("good", false);
  int nobody_listens = free_port();
  char lines[1200], expected[128];
  snprintf(lines, sizeof(lines), "%sproxy = http://127.0.0.1:%d\n", ca_line(), nobody_listens);
  start_daemon(lines, NULL);
  cr_expect_eq(status_of(ID, NULL, 0), 502);
  snprintf(expected, sizeof(expected), "proxy http://127.0.0.1:%d: ", nobody_listens);
  cr_expect(log_has(expected), "the log blames the proxy");
}

Test(tls, the_environment_can_neither_redirect_it_nor_have_its_tls_secrets_written) {
  start_peers("good", false);
  connect_proxy_start(&proxy, dir);
  static char proxy_url[96], https_proxy[128], all_proxy[128], keylog[400];
  snprintf(proxy_url, sizeof(proxy_url), "http_proxy=http://127.0.0.1:%d", proxy.port);
  snprintf(https_proxy, sizeof(https_proxy), "https_proxy=http://127.0.0.1:%d", proxy.port);
  snprintf(all_proxy, sizeof(all_proxy), "ALL_PROXY=http://127.0.0.1:%d", proxy.port);
  snprintf(keylog, sizeof(keylog), "SSLKEYLOGFILE=%s/tls-keys", dir);
  const char *env[] = {proxy_url, https_proxy, all_proxy, keylog, NULL};
  start_daemon(ca_line(), env);
  cr_expect_eq(status_of(ID, NULL, 0), 200);
  struct stat st;
  cr_expect_neq(stat(strchr(keylog, '=') + 1, &st), 0, "TLS session secrets were written");
  cr_expect(!file_has(proxy.log, "CONNECT") && !file_has(proxy.log, "PLAIN"),
            "the environment's proxy was used");
  cr_expect(log_has("environment: SSLKEYLOGFILE is ignored"));
  cr_expect(log_has("environment: https_proxy is ignored"));
}

/* nginx serving the enrollment as a static file sends its own ETag and Last-Modified; the
 * daemon's refresh of an expired copy sends both back, and nginx's 304 renews the copy without
 * a body. A changed file is a 200 with a new body and a new ETag. */
static void write_static_enrollment(const char *body) {
  char path[400];
  snprintf(path, sizeof(path), "%s/static", dir);
  mkdir(path, 0755);
  snprintf(path, sizeof(path), "%s/static/v1", dir);
  mkdir(path, 0755);
  snprintf(path, sizeof(path), "%s/static/v1/enrollments", dir);
  mkdir(path, 0755);
  snprintf(path, sizeof(path), "%s/static/v1/enrollments/%s", dir, ID);
  FILE *file = fopen(path, "w");
  cr_assert_not_null(file);
  fputs(body, file);
  fclose(file);
}

Test(tls, nginx_answers_a_conditional_refresh_with_304_and_the_copy_is_renewed) {
  start_peers("good", false);
  char url[256], authorization[128];
  snprintf(url, sizeof(url), "%s/v1/enrollments/%s", fake.base_url, ID);
  snprintf(authorization, sizeof(authorization), "Authorization: Bearer %s", token);
  const char *headers[] = {authorization, NULL};
  struct http_response from_fake;
  http_request(NULL, url, headers, &from_fake);
  cr_assert_eq(from_fake.status, 200);
  write_static_enrollment(from_fake.body);
  static char base_url[64];
  snprintf(base_url, sizeof(base_url), "https://127.0.0.1:%d/static", nginx.port);
  struct daemon_options options = {.token = token, .base_url = base_url, .ttl = 1,
                                   .extra_upstream = ca_line(),
                                   .extra_cache = "stale_while_revalidate = 0\n"};
  flipcached_prepare(&daemon_proc, &fake, &options);
  flipcached_launch(&daemon_proc);
  struct http_response first;
  get_enrollment_from(&daemon_proc, ID, &first);
  cr_assert_eq(first.status, 200, "%s", first.body);
  char etag[64] = "", cache_status[256] = "";
  http_header(&first, "ETag", etag, sizeof(etag));
  pause_ms(2100);
  struct http_response renewed;
  get_enrollment_from(&daemon_proc, ID, &renewed);
  http_header(&renewed, "Cache-Status", cache_status, sizeof(cache_status));
  cr_expect_str_eq(cache_status, "flipcached; fwd=stale; fwd-status=304; stored");
  cr_expect(renewed.body_len == first.body_len &&
            memcmp(renewed.body, first.body, first.body_len) == 0, "the kept body");
  cr_expect_eq(flipcached_stat(&daemon_proc, "upstream_not_modified"), 1);
  cr_expect(file_has(nginx.access_log, " 304"), "nginx answered 304");
  http_response_free(&renewed);
  /* The file changes (another size, so nginx's ETag changes whatever the clock says). */
  char *changed = strdup(from_fake.body);
  char *status = strstr(changed, "\"ACTIVE\"");
  cr_assert_not_null(status);
  memcpy(status, "\"PAUSED\"", 8);
  char bigger[4096];
  snprintf(bigger, sizeof(bigger), "%s\n\n", changed);
  write_static_enrollment(bigger);
  pause_ms(2100);
  struct http_response fetched;
  get_enrollment_from(&daemon_proc, ID, &fetched);
  cache_status[0] = '\0';
  char new_etag[64] = "";
  http_header(&fetched, "Cache-Status", cache_status, sizeof(cache_status));
  http_header(&fetched, "ETag", new_etag, sizeof(new_etag));
  cr_expect_str_eq(cache_status, "flipcached; fwd=stale; stored");
  cr_expect(strstr(fetched.body, "PAUSED") != NULL);
  cr_expect_str_neq(new_etag, etag);
  http_response_free(&fetched);
  http_response_free(&first);
  http_response_free(&from_fake);
  free(changed);
}
