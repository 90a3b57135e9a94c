/* Upstream discipline and the credential: reload, rotation, health, limits, retries, rate
 * limits, the circuit breaker and OAuth2, against the fake upstream. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "harness.h"

#define ID "497f6eca-6276-4993-bfeb-53cbbbba6f08"
#define ID2 "0b7a2c1e-2f3d-4e5f-8a9b-0c1d2e3f4a5b"
#define ID3 "3c1d2e3f-4a5b-4e5f-8a9b-0b7a2c1e2f3d"

static long status_of(const char *id) {
  struct http_response response;
  get_enrollment(id, &response);
  long status = response.status;
  http_response_free(&response);
  return status;
}

static void expect_log_lacks(const char *secret, const char *what) {
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, secret) == NULL, "the %s is in the log", what);
  free(log);
}

TestSuite(reload, .fini = stop_all, .timeout = 60);

Test(reload, sighup_rotates_the_token_without_a_restart) {
  start_with(NULL);
  char old_token[64], new_token[64];
  snprintf(old_token, sizeof(old_token), "%s", daemon_proc.token);
  make_token(new_token, sizeof(new_token));
  cr_expect_eq(status_of(ID), 200);

  /* Flip rotates the key: the old one is refused until the daemon is given the new one. */
  fake_expect_token(&fake, new_token);
  flipcached_write_token(&daemon_proc, new_token, 0600);
  cr_expect_eq(status_of(ID2), 502, "still the old key before SIGHUP");
  flipcached_reload(&daemon_proc, "new credential loaded from");
  cr_expect_eq(status_of(ID3), 200, "the new key after SIGHUP");
  cr_expect_eq(stat_of("credential_reloads"), 1);
  cr_expect_eq(flipcached_stop(&daemon_proc), 0);
  expect_log_lacks(old_token, "old token");
  expect_log_lacks(new_token, "new token");
}

static const char *cache_status_of(const char *id, char *out, size_t len) {
  struct http_response response;
  get_enrollment(id, &response);
  if (!http_header(&response, "Cache-Status", out, len))
    out[0] = '\0';
  http_response_free(&response);
  return out;
}

/* A lower ttl applies to entries stored after the reload; an entry stored before keeps the
 * freshness it was stored with. The log says both values, and that. */
Test(reload, a_changed_ttl_applies_to_entries_stored_from_then_on) {
  start_with(NULL); /* ttl 300 */
  char status[128];
  cr_expect_str_eq(cache_status_of(ID, status, sizeof(status)), "flipcached; fwd=uri-miss; stored");
  char command[600], out[512];
  snprintf(command, sizeof(command), "sed -i 's/^ttl = 300$/ttl = 1/' %s",
           daemon_proc.config);
  cr_assert_eq(run_command(command, out, sizeof(out)), 0, "%s", out);
  flipcached_reload(&daemon_proc, "reload: [cache] ttl: 300 -> 1 (for entries stored from now on");
  cr_expect_str_eq(cache_status_of(ID2, status, sizeof(status)), "flipcached; fwd=uri-miss; stored");
  pause_ms(2100);
  cache_status_of(ID, status, sizeof(status));
  cr_expect(strncmp(status, "flipcached; hit; ttl=29", 23) == 0, "stored before: %s", status);
  cache_status_of(ID2, status, sizeof(status));
  cr_expect(strncmp(status, "flipcached; hit; ttl=-", 22) == 0, "stored after: %s", status);
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, "reload: [upstream] max_connections") == NULL, "only what changed: %s", log);
  free(log);
}

Test(reload, a_key_that_needs_a_restart_is_logged_with_both_values) {
  start_with(NULL);
  char command[600], out[512];
  snprintf(command, sizeof(command), "printf '[upstream]\\nmax_connections = 3\\n' >> %s",
           daemon_proc.config);
  cr_assert_eq(run_command(command, out, sizeof(out)), 0, "%s", out);
  flipcached_reload(&daemon_proc, "reload: [upstream] max_connections: 16 -> 3 needs a restart");
}

Test(reload, an_unsafe_new_credential_file_keeps_the_old_key) {
  start_with(NULL);
  char leaked[64];
  make_token(leaked, sizeof(leaked));
  flipcached_write_token(&daemon_proc, leaked, 0644);
  flipcached_reload(&daemon_proc, "the current one stays");
  cr_expect_eq(status_of(ID), 200, "the old key is still in use");
  cr_expect_eq(stat_of("credential_reloads"), 0);
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, "lets group or others access it") != NULL, "the log says why");
  free(log);
  expect_log_lacks(leaked, "refused token");

  flipcached_write_token(&daemon_proc, "", 0600); /* empty */
  flipcached_reload(&daemon_proc, "empty; the current one stays");
  cr_expect_eq(status_of(ID2), 200);
}

Test(reload, sighup_applies_live_keys_and_names_those_needing_a_restart) {
  start_with(NULL);
  cr_expect_eq(status_of(ID), 200);
  /* ttl 300 -> 42, and a listener change that only a restart can apply */
  char *config = NULL;
  size_t len = 0;
  FILE *in = fopen(daemon_proc.config, "r");
  cr_assert_not_null(in);
  FILE *out = open_memstream(&config, &len);
  char line[512];
  while (fgets(line, sizeof(line), in)) {
    if (strncmp(line, "ttl = ", 6) == 0)
      fputs("ttl = 42\n", out);
    else if (strncmp(line, "listen = ", 9) == 0)
      fprintf(out, "listen = 127.0.0.1:%d\n", free_port());
    else
      fputs(line, out);
  }
  fclose(in);
  fclose(out);
  FILE *rewrite = fopen(daemon_proc.config, "w");
  fputs(config, rewrite);
  fclose(rewrite);
  free(config);

  flipcached_reload(&daemon_proc, "needs a restart; the running value stays");
  char *reload_log = flipcached_log(&daemon_proc);
  cr_expect(strstr(reload_log, "reload: [server] listen: 127.0.0.1:") != NULL, "%s", reload_log);
  free(reload_log);
  struct http_response response;
  get_enrollment(ID2, &response); /* still served on the old port */
  cr_expect_eq(response.status, 200);
  http_response_free(&response);
  get_enrollment(ID2, &response);
  char cache_status[128] = "";
  http_header(&response, "Cache-Status", cache_status, sizeof(cache_status));
  cr_expect(strcmp(cache_status, "flipcached; hit; ttl=42") == 0 ||
                strcmp(cache_status, "flipcached; hit; ttl=41") == 0,
            "the new ttl applies to new entries: %s", cache_status);
  http_response_free(&response);
  cr_expect_eq(stat_of("reloads"), 1);
}

Test(reload, a_configuration_with_errors_keeps_the_running_one) {
  start_with(NULL);
  FILE *append = fopen(daemon_proc.config, "a");
  fputs("[cache]\nnegative_ttl = soon\n", append);
  fclose(append);
  flipcached_reload(&daemon_proc, "the configuration has errors; the running one stays");
  char *log = flipcached_log(&daemon_proc);
  char expected[512];
  snprintf(expected, sizeof(expected), "reload: %s:", daemon_proc.config);
  cr_expect(strstr(log, expected) != NULL && strstr(log, "negative_ttl: 'soon'") != NULL,
            "the error names the file and line:\n%s", log);
  free(log);
  cr_expect_eq(status_of(ID), 200);
  cr_expect_eq(stat_of("reloads"), 0);
}

Test(reload, healthz_reports_a_rejected_credential_until_it_works_again) {
  start_with(NULL);
  char url[256];
  snprintf(url, sizeof(url), "%s/healthz", daemon_proc.url);
  fake_set_mode(&fake, ID, "401", 0);
  cr_expect_eq(status_of(ID), 502);
  struct http_response health;
  http_get(url, &health);
  cr_expect_eq(health.status, 503);
  cr_expect(strstr(health.body, "\"status\":\"degraded\"") != NULL, "%s", health.body);
  cr_expect(strstr(health.body, "rejected the credential (HTTP 401)") != NULL, "%s", health.body);
  cr_expect(strstr(health.body, daemon_proc.token) == NULL);
  http_response_free(&health);
  cr_expect_eq(status_of(ID2), 200, "a working answer clears it");
  http_get(url, &health);
  cr_expect_eq(health.status, 200);
  http_response_free(&health);
}

/* --- limits ------------------------------------------------------------------------------------ */

TestSuite(limits, .fini = stop_all, .timeout = 60);

Test(limits, a_redirect_is_not_followed_and_its_target_never_contacted) {
  start_with(NULL);
  fake_set_mode(&fake, ID, "redirect", 0);
  struct http_response response;
  get_enrollment(ID, &response);
  cr_expect_eq(response.status, 502);
  cr_expect(strstr(response.body, "\"code\":\"upstream_invalid_response\"") != NULL);
  http_response_free(&response);
  cr_expect_eq(fake_stat(&fake, "redirect_target_hits"), 0);
  cr_expect_eq(status_of(ID), 502, "a redirect is never stored");
}

Test(limits, a_64_mib_body_is_refused_without_being_buffered) {
  start_with(NULL);
  long before = proc_status_kb(daemon_proc.pid, "VmHWM");
  fake_set_mode(&fake, ID, "huge", 0);
  struct http_response response;
  get_enrollment(ID, &response);
  cr_expect_eq(response.status, 502);
  cr_expect(strstr(response.body, "\"code\":\"upstream_invalid_response\"") != NULL);
  http_response_free(&response);
  long after = proc_status_kb(daemon_proc.pid, "VmHWM");
  cr_log_info("peak RSS %ld kB before, %ld kB after a 64 MiB answer", before, after);
  cr_expect_lt(after - before, 32 * 1024, "the peak grew by %ld kB: the body was buffered",
               after - before);
  cr_expect_eq(status_of(ID2), 200, "and the daemon still serves");
}

Test(limits, a_hanging_upstream_gives_504) {
  struct daemon_options options = {.timeout_ms = 500};
  start_with(&options);
  fake_set_mode(&fake, ID, "slow", 30000);
  cr_expect_eq(status_of(ID), 504);
}

Test(limits, connections_to_the_upstream_are_reused) {
  start_with(NULL);
  for (unsigned i = 0; i < 10; i++) {
    char id[40];
    snprintf(id, sizeof(id), "%08x-0000-4000-8000-000000000000", i);
    cr_expect_eq(status_of(id), 200);
  }
  cr_expect_eq(fake_stat(&fake, "total"), 10);
  cr_expect_eq(fake_stat(&fake, "connections"), 1, "ten sequential misses over one connection");
}

/* --- retries ---------------------------------------------------------------------------------- */

TestSuite(retries, .fini = stop_all, .timeout = 60);

Test(retries, a_503_is_retried_until_it_succeeds) {
  start_with(NULL);
  fake_fail_times(&fake, ID, "503", 2);
  cr_expect_eq(status_of(ID), 200);
  cr_expect_eq(fake_count(&fake, ID), 3, "two retries");
  cr_expect_eq(stat_of("upstream_retries"), 2);
  cr_expect_eq(stat_of("upstream_requests"), 3);
}

Test(retries, 502_and_504_are_retried_and_the_attempts_are_bounded) {
  start_with(NULL);
  fake_set_mode(&fake, ID, "502", 0);
  struct http_response response;
  get_enrollment(ID, &response);
  cr_expect_eq(response.status, 502);
  char cache_status[128] = "";
  http_header(&response, "Cache-Status", cache_status, sizeof(cache_status));
  cr_expect_str_eq(cache_status, "flipcached; fwd=uri-miss; fwd-status=502; detail=upstream_unavailable");
  http_response_free(&response);
  cr_expect_eq(fake_count(&fake, ID), 3, "one try and two retries, no more");
}

Test(retries, a_500_is_not_retried) {
  start_with(NULL);
  fake_set_mode(&fake, ID, "500", 0);
  cr_expect_eq(status_of(ID), 502);
  cr_expect_eq(fake_count(&fake, ID), 1);
  cr_expect_eq(stat_of("upstream_retries"), 0);
}

/* timeout_ms 300 and a 503 that takes 150 ms: what is left cannot hold a backoff and another
 * attempt, so none is made. */
Test(retries, retries_stay_within_the_time_budget) {
  struct daemon_options options = {.timeout_ms = 300};
  start_with(&options);
  fake_set_mode(&fake, ID, "503", 150);
  cr_expect_eq(status_of(ID), 502);
  cr_expect_eq(fake_count(&fake, ID), 1);
}

Test(retries, a_refused_connection_is_retried) {
  char closed[64];
  snprintf(closed, sizeof(closed), "http://127.0.0.1:%d", free_port());
  struct daemon_options options = {.base_url = closed};
  start_with(&options);
  cr_expect_eq(status_of(ID), 502);
  cr_expect_eq(stat_of("upstream_retries"), 2);
}

/* --- rate limits ------------------------------------------------------------------------------ */

TestSuite(rate_limit, .fini = stop_all, .timeout = 60);

Test(rate_limit, a_429_pauses_upstream_traffic_for_every_id) {
  start_with(NULL);
  fake_retry_after(&fake, 60);
  fake_set_mode(&fake, ID, "429", 0);
  struct http_response response;
  get_enrollment(ID, &response);
  cr_expect_eq(response.status, 503);
  char retry_after[16] = "";
  cr_expect(http_header(&response, "Retry-After", retry_after, sizeof(retry_after)));
  cr_expect_eq(atoi(retry_after), 60, "the upstream's Retry-After is passed on");
  http_response_free(&response);

  get_enrollment(ID2, &response); /* another id, never asked for */
  cr_expect_eq(response.status, 503);
  cr_expect(strstr(response.body, "\"code\":\"upstream_rate_limited\"") != NULL);
  http_header(&response, "Retry-After", retry_after, sizeof(retry_after));
  cr_expect(atoi(retry_after) >= 55 && atoi(retry_after) <= 60, "Retry-After %s", retry_after);
  http_response_free(&response);
  cr_expect_eq(fake_stat(&fake, "total"), 1, "nothing reached the upstream during the pause");
  cr_expect_eq(stat_of("rate_limit_pauses"), 1);
  cr_expect_eq(stat_of("upstream_refused"), 1);
  cr_expect_gt(stat_of("upstream_paused_seconds"), 50);
}

Test(rate_limit, the_pause_ends_after_retry_after) {
  start_with(NULL);
  fake_retry_after(&fake, 1);
  fake_set_mode(&fake, ID, "429", 0);
  cr_expect_eq(status_of(ID), 503);
  pause_ms(1200);
  cr_expect_eq(status_of(ID2), 200);
  cr_expect_eq(stat_of("upstream_paused_seconds"), 0);
}

/* --- the circuit breaker ------------------------------------------------------------------------ */

TestSuite(breaker, .fini = stop_all, .timeout = 60);

static void url_for(char *url, size_t len, unsigned n) {
  snprintf(url, len, "%s/v1/enrollments/%08x-0000-4000-8000-000000000000", daemon_proc.url, n);
}

static long status_of_n(unsigned n) {
  char url[256];
  url_for(url, sizeof(url), n);
  struct http_response response;
  http_get(url, &response);
  long status = response.status;
  http_response_free(&response);
  return status;
}

Test(breaker, opens_after_consecutive_failures_then_lets_one_probe_through) {
  struct daemon_options options = {
    .extra_upstream = "breaker_failures = 3\nbreaker_cooldown_ms = 500\n"};
  start_with(&options);
  fake_set_mode(&fake, "*", "500", 0);
  for (unsigned n = 0; n < 3; n++)
    cr_expect_eq(status_of_n(n), 502);
  cr_expect_eq(stat_of("breaker_opens"), 1);
  cr_expect_eq(stat_of("breaker_state"), 1);

  char url[256];
  url_for(url, sizeof(url), 10);
  struct http_response response;
  http_get(url, &response);
  cr_expect_eq(response.status, 503, "the open circuit answers at once");
  cr_expect(strstr(response.body, "\"code\":\"upstream_unavailable\"") != NULL);
  char retry_after[16] = "";
  cr_expect(http_header(&response, "Retry-After", retry_after, sizeof(retry_after)));
  http_response_free(&response);
  cr_expect_eq(fake_stat(&fake, "total"), 3, "nothing was sent while open");

  /* After the cooldown one probe goes through; the others are refused while it is out. */
  pause_ms(600);
  fake_set_mode(&fake, "*", "slow", 400);
  char urls_text[3][256];
  const char *urls[3];
  for (unsigned i = 0; i < 3; i++) {
    url_for(urls_text[i], sizeof(urls_text[i]), 20 + i);
    urls[i] = urls_text[i];
  }
  struct http_response responses[3];
  http_get_concurrently(urls, 3, responses);
  int ok = 0, refused = 0;
  for (int i = 0; i < 3; i++) {
    ok += responses[i].status == 200;
    refused += responses[i].status == 503;
    http_response_free(&responses[i]);
  }
  cr_expect_eq(ok, 1, "one probe");
  cr_expect_eq(refused, 2);
  cr_expect_eq(stat_of("breaker_state"), 0, "the probe's success closed the circuit");
  fake_set_mode(&fake, "*", "ok", 0);
  cr_expect_eq(status_of_n(30), 200);
}

Test(breaker, a_failed_probe_opens_it_again) {
  struct daemon_options options = {
    .extra_upstream = "breaker_failures = 2\nbreaker_cooldown_ms = 300\n"};
  start_with(&options);
  fake_set_mode(&fake, "*", "500", 0);
  cr_expect_eq(status_of_n(0), 502);
  cr_expect_eq(status_of_n(1), 502);
  cr_expect_eq(status_of_n(2), 503);
  pause_ms(400);
  cr_expect_eq(status_of_n(3), 502, "the probe reaches the upstream and fails");
  cr_expect_eq(status_of_n(4), 503, "open again");
  cr_expect_eq(stat_of("breaker_opens"), 2);
  cr_expect_eq(fake_stat(&fake, "total"), 3);
}

Test(breaker, serves_stale_copies_while_open) {
  struct daemon_options options = {
    .ttl = 1, .extra_upstream = "breaker_failures = 1\nbreaker_cooldown_ms = 60000\n",
    .extra_cache = "stale_while_revalidate = 0\nstale_if_error = 600\n"};
  start_with(&options);
  cr_expect_eq(status_of(ID), 200);
  pause_ms(2100);
  fake_set_mode(&fake, "*", "500", 0);
  cr_expect_eq(status_of_n(0), 502); /* opens the circuit */
  struct http_response response;
  get_enrollment(ID, &response);
  cr_expect_eq(response.status, 200);
  char cache_status[128] = "";
  http_header(&response, "Cache-Status", cache_status, sizeof(cache_status));
  cr_expect(strstr(cache_status, "hit; ttl=-") && strstr(cache_status, "detail=upstream_unavailable"),
            "%s", cache_status);
  http_response_free(&response);
}

/* --- OAuth2 client credentials ------------------------------------------------------------------ */

TestSuite(oauth, .fini = stop_all, .timeout = 60);

#define CLIENT_ID "flipcached-test"

static void start_oauth(const char *secret_for_daemon, const struct daemon_options *given) {
  struct daemon_options options = given ? *given : (struct daemon_options){0};
  char token[64], secret[64];
  make_token(token, sizeof(token));
  make_token(secret, sizeof(secret));
  fake_start_oauth(&fake, token, CLIENT_ID, secret);
  options.token = "fl_static_key_not_used"; /* the API accepts only the static key above, */
  options.oauth_client_id = CLIENT_ID;       /* or the access tokens bought with the secret */
  options.oauth_client_secret = secret_for_daemon ? secret_for_daemon : secret;
  flipcached_start(&daemon_proc, &fake, &options);
}

static long fake_token_count(void) { return fake_stat(&fake, "tokens_issued"); }

Test(oauth, a_token_is_fetched_and_used) {
  start_oauth(NULL, NULL);
  cr_expect_eq(status_of(ID), 200);
  cr_expect_eq(fake_token_count(), 1, "one token, bought at start");
  cr_expect_eq(fake_stat(&fake, "auth_ok"), 1);
  cr_expect_eq(fake_stat(&fake, "auth_bad"), 0);
  cr_expect_eq(stat_of("token_refreshes"), 1);
}

Test(oauth, the_token_is_renewed_before_it_expires) {
  char url[256];
  start_oauth(NULL, NULL);
  /* from now on the fake issues tokens valid for 2 s: renewed at 1.6 s */
  snprintf(url, sizeof(url), "%s/_fake/oauth?expires_in=2", fake.base_url);
  struct http_response response;
  http_request("POST", url, NULL, &response);
  http_response_free(&response);
  fake_oauth_revoke(&fake); /* the start-up token is gone: the next fetch gets a 401 and buys a
                               2 s token */
  cr_expect_eq(status_of(ID), 200);
  long after_first = fake_token_count();
  pause_ms(2600); /* past that token's life, and past its 80% renewal */
  cr_expect_gt(fake_token_count(), after_first, "renewed without waiting for a request");
  long bad_before = fake_stat(&fake, "auth_bad");
  cr_expect_eq(status_of(ID2), 200);
  cr_expect_eq(fake_stat(&fake, "auth_bad"), bad_before, "the renewed token was accepted at once");
}

Test(oauth, a_401_buys_a_new_token_and_the_request_is_retried_once) {
  start_oauth(NULL, NULL);
  cr_expect_eq(status_of(ID), 200);
  fake_oauth_revoke(&fake);
  cr_expect_eq(status_of(ID2), 200, "refreshed and retried");
  cr_expect_eq(fake_token_count(), 2);
  cr_expect_eq(fake_stat(&fake, "auth_bad"), 1, "one 401, then success");
  cr_expect_eq(fake_stat(&fake, "total"), 3, "ID, then ID2 refused and ID2 again");
  cr_expect_eq(fake_count(&fake, ID2), 1, "the fake counts only authorized requests");
}

/* The token endpoint trickles its answer: the trickle guard cuts the token request as it cuts an
 * enrollment's (a byte every 100 ms, timeout_ms 5000: after 2.5 s), the fetch waiting for the
 * token fails 502, and once the endpoint answers again the next fetch buys a token and is served
 * (the cut request was released: under ASan a dangling one would not pass). */
Test(oauth, a_trickling_token_endpoint_is_cut_and_the_next_token_is_bought) {
  start_oauth(NULL, NULL);
  char url[256];
  snprintf(url, sizeof(url), "%s/_fake/oauth-trickle?on=1", fake.base_url);
  struct http_response response;
  http_request("POST", url, NULL, &response);
  http_response_free(&response);
  fake_oauth_revoke(&fake);
  cr_expect_eq(status_of(ID), 502, "no token: the waiting fetch fails");
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, "OAuth token request to") != NULL && strstr(log, "the answer trickled") != NULL,
            "%s", log);
  free(log);
  snprintf(url, sizeof(url), "%s/_fake/oauth-trickle?on=0", fake.base_url);
  http_request("POST", url, NULL, &response);
  http_response_free(&response);
  cr_expect_eq(status_of(ID2), 200, "a new token, and the fetch served");
}

Test(oauth, a_rejected_client_secret_gives_502_and_degraded_health) {
  start_oauth("not-the-right-secret", NULL);
  struct http_response response;
  get_enrollment(ID, &response);
  cr_expect_eq(response.status, 502);
  cr_expect(strstr(response.body, "\"code\":\"upstream_auth_failed\"") != NULL, "%s", response.body);
  http_response_free(&response);
  cr_expect_eq(fake_stat(&fake, "total"), 0, "no enrollment request went out without a token");
  cr_expect_gt(stat_of("token_failures"), 0);
  char url[256];
  snprintf(url, sizeof(url), "%s/healthz", daemon_proc.url);
  http_get(url, &response);
  cr_expect_eq(response.status, 503);
  http_response_free(&response);
}

Test(oauth, secrets_and_tokens_never_reach_the_log) {
  start_oauth(NULL, NULL);
  cr_expect_eq(status_of(ID), 200);
  fake_oauth_revoke(&fake);
  cr_expect_eq(status_of(ID2), 200);
  cr_assert_eq(flipcached_stop(&daemon_proc), 0);

  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, "OAuth access token obtained") != NULL, "%s", log);
  FILE *secret_file = fopen(daemon_proc.client_secret_path, "r");
  char secret[128] = "";
  cr_assert(fgets(secret, sizeof(secret), secret_file));
  fclose(secret_file);
  secret[strcspn(secret, "\n")] = '\0';
  cr_expect(strstr(log, secret) == NULL, "the client secret is in the log");
  char url[256];
  snprintf(url, sizeof(url), "%s/_fake/oauth-tokens", fake.base_url);
  struct http_response response;
  http_get(url, &response);
  cr_assert(strstr(response.body, "at_") != NULL, "%s", response.body);
  for (char *token = strstr(response.body, "at_"); token; token = strstr(token + 1, "at_")) {
    char value[64];
    sscanf(token, "%63[^\"]", value);
    cr_expect(strstr(log, value) == NULL, "access token %s is in the log", value);
  }
  http_response_free(&response);
  free(log);
}

Test(reload, a_request_in_flight_survives_sighup) {
  start_with(NULL);
  fake_set_mode(&fake, ID, "slow", 600);
  const char request[] = "GET /v1/enrollments/" ID " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  int fd = raw_send(daemon_proc.port, request, sizeof(request) - 1);
  pause_ms(150);
  flipcached_reload(&daemon_proc, "reload: credential unchanged");
  char answer[4096];
  raw_read_all(fd, answer, sizeof(answer));
  close(fd);
  cr_expect(strncmp(answer, "HTTP/1.1 200", 12) == 0, "answered: %.60s", answer);
  cr_expect(strstr(answer, "\"id\":\"" ID "\"") != NULL);
}

/* A fetch that never gets a fetch slot is told so, not blamed on the upstream or on name
 * resolution. One connection (so one slot: HTTP/1), held 3 s by a fetch made with a 10 s budget;
 * then a reload lowers timeout_ms to 500 ms for the next fetch, which waits for the slot until
 * too little of it is left to send it: 503 overloaded, and the upstream never sees it. */
Test(limits, a_fetch_waiting_for_a_slot_is_logged_as_such) {
  struct daemon_options options = {.timeout_ms = 10000, .extra_upstream = "max_connections = 1\n"};
  start_with(&options);
  int fd = hold_the_upstream_connection(ID, 3000, 10000);
  struct http_response response;
  get_enrollment_from(&daemon_proc, "497f6eca-6276-4993-bfeb-53cbbbba6f09", &response);
  cr_expect_eq(response.status, 503);
  cr_expect(strstr(response.body, "\"code\":\"overloaded\"") != NULL, "%s", response.body);
  http_response_free(&response);
  cr_expect_eq(fake_count(&fake, "497f6eca-6276-4993-bfeb-53cbbbba6f09"), 0);
  cr_expect_eq(stat_of("fetch_wait_timeouts"), 1);
  char *log = flipcached_log(&daemon_proc);
  cr_expect(strstr(log, "/v1/enrollments/497f6eca-6276-4993-bfeb-53cbbbba6f09 waited ") != NULL &&
                strstr(log, " ms for a fetch slot (all 1 busy) and is not sent") != NULL, "%s", log);
  cr_expect(strstr(log, "Failed to resolve host") == NULL, "%s", log);
  cr_expect(strstr(log, "no answer within timeout_ms") == NULL, "%s", log);
  free(log);
  expect_held_answer_200(fd);
}

/* --- bounded work ----------------------------------------------------------------------------- */

TestSuite(bounded_work, .fini = stop_all, .timeout = 120);

static void id_of(unsigned n, char id[40]) { snprintf(id, 40, "%08x-0000-4000-8000-00000000aaaa", n); }

static void enrollment_urls(unsigned count, char (*storage)[160], const char **urls) {
  for (unsigned i = 0; i < count; i++) {
    char id[40];
    id_of(i, id);
    snprintf(storage[i], 160, "%s/v1/enrollments/%s", daemon_proc.url, id);
    urls[i] = storage[i];
  }
}

/* n distinct misses at once from one user, max_fetches = 4 and an upstream taking 800 ms: how
 * many were 200, and how many 503 overloaded (each checked for Retry-After: 1 and its code). */
static int misses_at_once(unsigned n, int *overloaded) {
  struct daemon_options options = {.extra_upstream = "max_fetches = 4\n"};
  start_with(&options);
  fake_set_mode(&fake, "*", "slow", 800);
  char (*storage)[160] = calloc(n, sizeof(*storage));
  const char **urls = calloc(n, sizeof(*urls));
  struct http_response *responses = calloc(n, sizeof(*responses));
  cr_assert(storage && urls && responses);
  enrollment_urls(n, storage, urls);
  http_get_concurrently(urls, n, responses);
  int ok = 0;
  *overloaded = 0;
  for (unsigned i = 0; i < n; i++) {
    ok += responses[i].status == 200;
    if (responses[i].status == 503) {
      (*overloaded)++;
      char retry_after[16] = "";
      cr_expect(http_header(&responses[i], "Retry-After", retry_after, sizeof(retry_after)) &&
                strcmp(retry_after, "1") == 0, "Retry-After %s", retry_after);
      cr_expect(strstr(responses[i].body, "\"code\":\"overloaded\"") != NULL, "%s",
                responses[i].body);
    }
    http_response_free(&responses[i]);
  }
  free(storage);
  free(urls);
  free(responses);
  return ok;
}

/* Eight distinct misses at once with max_fetches = 4: four are fetched at once, four wait for
 * a slot and are fetched after them (no refusal while the budget lasts), and the upstream never
 * holds more than four at a time. */
Test(bounded_work, a_fetch_beyond_max_fetches_waits_for_a_slot) {
  int overloaded;
  cr_expect_eq(misses_at_once(8, &overloaded), 8);
  cr_expect_eq(overloaded, 0);
  cr_expect_eq(stat_of("fetches_waited"), 4);
  cr_expect_eq(stat_of("fetches_refused"), 0);
  cr_expect_eq(fake_stat(&fake, "total"), 8);
  cr_expect_eq(fake_stat(&fake, "held_most"), 4, "the upstream held at most max_fetches at once");
  cr_expect_eq(stat_of("cache_entries"), 8);
}

/* Twelve at once with max_fetches = 4: four run, four wait (a user's queue holds max_fetches),
 * four are told to come back in a second, and the upstream sees eight requests. */
Test(bounded_work, a_fetch_beyond_its_users_full_queue_is_answered_503_overloaded) {
  int overloaded;
  cr_expect_eq(misses_at_once(12, &overloaded), 8);
  cr_expect_eq(overloaded, 4);
  cr_expect_eq(stat_of("fetches_refused"), 4);
  cr_expect_eq(fake_stat(&fake, "total"), 8, "nothing beyond the bound reached the upstream");
  cr_expect_eq(stat_of("cache_entries"), 8);
}

/* Stale ids are served stale at once; their refreshes take the background's share of the slots:
 * with max_fetches = 2, two run, two wait in the background's queue, two find it full and are
 * not started (the stale copy keeps serving). */
Test(bounded_work, background_refreshes_wait_in_their_own_bounded_queue) {
  struct daemon_options options = {.ttl = 1, .extra_upstream = "max_fetches = 2\n",
                                   .extra_cache = "stale_while_revalidate = 60\n"};
  start_with(&options);
  char storage[6][160];
  const char *urls[6];
  enrollment_urls(6, storage, urls);
  for (int i = 0; i < 6; i++) {
    struct http_response response;
    http_get(urls[i], &response);
    cr_assert_eq(response.status, 200);
    http_response_free(&response);
  }
  pause_ms(2100);
  fake_set_mode(&fake, "*", "slow", 1500);
  for (int i = 0; i < 6; i++) {
    struct http_response response;
    http_get_within(urls[i], 1000, &response);
    cr_expect_eq(response.status, 200, "served stale at once");
    char cache_status[128] = "";
    http_header(&response, "Cache-Status", cache_status, sizeof(cache_status));
    cr_expect(strncmp(cache_status, "flipcached; hit; ttl=-", 22) == 0, "%s", cache_status);
    http_response_free(&response);
  }
  cr_expect_eq(stat_of("background_refreshes"), 4);
  cr_expect_eq(stat_of("fetches_waited"), 2);
  cr_expect_eq(stat_of("fetches_refused"), 2);
  cr_expect_eq(stat_of("stale_served"), 6);
  for (int i = 0; i < 300 && fake_stat(&fake, "total") < 10; i++)
    pause_ms(20);
  cr_expect_eq(fake_stat(&fake, "total"), 10, "the four refreshes were sent, two at a time");
  cr_expect_eq(fake_stat(&fake, "held_most"), 2);
}

/* With one connection to the upstream and four fetches, the counter says what was sent, not
 * what waits for the connection. */
Test(bounded_work, upstream_requests_counts_requests_sent_not_queued) {
  struct daemon_options options = {.timeout_ms = 15000, .extra_upstream = "max_connections = 1\n"};
  start_with(&options);
  fake_set_mode(&fake, "*", "slow", 1500);
  int fds[4];
  for (unsigned i = 0; i < 4; i++) {
    char id[40], request[256];
    id_of(i, id);
    int len = snprintf(request, sizeof(request),
                       "GET /v1/enrollments/%s HTTP/1.1\r\nHost: localhost\r\n\r\n", id);
    fds[i] = raw_send(daemon_proc.port, request, (size_t)len);
  }
  /* the first is on the wire (held 1.5 s by the fake), the other three wait for the connection */
  for (int i = 0; i < 100 && (stat_of("inflight") < 4 || fake_stat(&fake, "total") < 1); i++)
    pause_ms(10);
  cr_expect_eq(stat_of("inflight"), 4, "four fetches in progress");
  cr_expect_eq(fake_stat(&fake, "total"), 1, "one connection: one request at a time");
  cr_expect_eq(stat_of("upstream_requests"), 1, "the three queued are not counted as sent");
  for (int i = 0; i < 4; i++) {
    char answer[4096];
    cr_expect_gt(raw_read_response(fds[i], answer, sizeof(answer), 10000), 0);
    close(fds[i]);
  }
  cr_expect_eq(stat_of("upstream_requests"), 4);
  cr_expect_eq(fake_stat(&fake, "total"), 4);
}

/* A failing upstream and 300 distinct misses: the warning about them is written at most once a
 * second, then one line tells how many were left out. */
Test(bounded_work, a_repeated_warning_is_rate_limited_and_counted) {
  struct daemon_options options = {.log_level = "warning", .extra_upstream = "breaker_failures = 0\n"};
  start_with(&options);
  fake_set_mode(&fake, "*", "500", 0);
  char (*storage)[160] = calloc(300, sizeof(*storage));
  const char **urls = calloc(300, sizeof(*urls));
  struct http_response *responses = calloc(300, sizeof(*responses));
  enrollment_urls(300, storage, urls);
  http_get_many(urls, 300, 16, responses);
  for (int i = 0; i < 300; i++) {
    cr_expect_eq(responses[i].status, 502);
    http_response_free(&responses[i]);
  }
  pause_ms(1100);
  /* one more failure after the second has passed brings the count of those left out */
  struct http_response response;
  char id[40];
  id_of(301, id);
  get_enrollment(id, &response);
  http_response_free(&response);
  char *log = flipcached_log(&daemon_proc);
  int lines = 0; /* the warnings written, not the suppression lines that quote one */
  for (const char *p = log; (p = strstr(p, ": HTTP 500")) != NULL; p++) {
    const char *end = strchr(p, '\n'), *start = p;
    while (start > log && start[-1] != '\n')
      start--;
    char line[1024];
    snprintf(line, sizeof(line), "%.*s", (int)((end ? end : p + strlen(p)) - start), start);
    if (!strstr(line, "suppressed (at most one a second)"))
      lines++;
    p = end ? end : p + strlen(p) - 1;
  }
  cr_expect_leq(lines, 8, "%d warning lines for 301 failures", lines);
  cr_expect_geq(lines, 2);
  cr_expect(strstr(log, "suppressed (at most one a second)") != NULL, "%s", log);
  long suppressed = 0;
  for (const char *p = log; (p = strstr(p, "\n")) != NULL; p++) {
    unsigned long n;
    if (sscanf(p + 1, "%*s flipcached[%*d] warning: %lu more line", &n) == 1)
      suppressed += (long)n;
  }
  cr_expect_eq(suppressed + lines, 301, "every failure is either written or counted");
  free(log);
  free(storage);
  free(urls);
  free(responses);
}
