/* creds: the credential file's rules, and the logger never printing a registered secret. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "creds.h"
#include "log.h"

static char dir[] = "/tmp/flipcreds.XXXXXX";

/* A configuration whose token_file is path (the static-key kind). */
static const struct config *static_key_config(const char *path) {
  static struct config cfg;
  config_defaults(&cfg);
  snprintf(cfg.token_file, sizeof(cfg.token_file), "%s", path);
  return &cfg;
}
static char err[512];

static void make_dir(void) { cr_assert(mkdtemp(dir)); }

static void remove_dir(void) {
  char command[128];
  snprintf(command, sizeof(command), "rm -rf '%s'", dir);
  cr_assert_eq(system(command), 0);
}

static const char *write_secret(const char *name, const char *content, size_t len, mode_t mode) {
  static char path[256];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  cr_assert(fd >= 0);
  cr_assert_eq(write(fd, content, len), (ssize_t)len);
  fchmod(fd, mode);
  close(fd);
  return path;
}

TestSuite(creds, .init = make_dir, .fini = remove_dir);

/* What the test wrote to stderr (redirected by .init = cr_redirect_stderr). */
static void captured_stderr(char *out, size_t out_len) {
  fflush(stderr);
  FILE *captured = cr_get_redirected_stderr();
  size_t got = fread(out, 1, out_len - 1, captured);
  out[got] = '\0';
}

Test(creds, loads_a_private_file_and_strips_one_newline) {
  const char *path = write_secret("token", "fl_secret_value\n", 16, 0600);
  struct creds creds = {0};
  unsetenv("CREDENTIALS_DIRECTORY");
  cr_assert_eq(creds_load(&creds, static_key_config(path), err, sizeof(err)), 0, "%s", err);
  cr_expect_str_eq(creds.authorization, "Authorization: Bearer fl_secret_value");
  cr_expect_eq(creds.token_len, 15);
  cr_expect_str_eq(creds.source, path);
  creds_wipe(&creds);
  cr_expect_eq(creds.authorization[0], '\0', "wiped");
  cr_expect_null(creds.token);
}

Test(creds, move_keeps_the_key_redacted_at_its_new_place, .init = cr_redirect_stderr) {
  const char *path = write_secret("token", "fl_moving_key\n", 14, 0600);
  unsetenv("CREDENTIALS_DIRECTORY");
  struct creds loaded = {0}, live = {0};
  cr_assert_eq(creds_load(&loaded, static_key_config(path), err, sizeof(err)), 0, "%s", err);
  creds_move(&live, &loaded);
  cr_expect_str_eq(live.token, "fl_moving_key");
  cr_expect_str_eq(live.authorization, "Authorization: Bearer fl_moving_key");
  cr_expect_null(loaded.token);
  cr_expect_eq(loaded.authorization[0], '\0', "the source is wiped");
  log_set_level(LOG_LEVEL_INFO);
  log_info("key %s", live.token);
  creds_wipe(&live);
  char all[1024];
  captured_stderr(all, sizeof(all));
  cr_expect(strstr(all, "key [REDACTED]") != NULL, "%s", all);
}

Test(creds, crlf_is_stripped_too) {
  const char *path = write_secret("token", "fl_abcdef\r\n", 11, 0400);
  char out[64];
  size_t len;
  cr_assert_eq(creds_read_secret_file(path, out, sizeof(out), &len, err, sizeof(err)), 0, "%s", err);
  cr_expect_str_eq(out, "fl_abcdef");
}

/* A 1-byte key would be no secret, and redacting it would mangle every log line. */
Test(creds, a_key_shorter_than_8_characters_is_refused) {
  const char *path = write_secret("token", "fl_abcd\n", 8, 0400);
  char out[64];
  size_t len;
  cr_expect_eq(creds_read_secret_file(path, out, sizeof(out), &len, err, sizeof(err)), -1);
  cr_expect(strstr(err, "holds 7 characters; a key or secret has at least 8") != NULL, "%s", err);
  cr_expect(strstr(err, "fl_abcd") == NULL, "the message quotes the key: %s", err);
}

Test(creds, group_or_world_access_is_refused_and_the_message_says_how_to_fix_it) {
  mode_t modes[] = {0640, 0604, 0644, 0660, 0610};
  for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
    const char *path = write_secret("token", "fl_leaky_secret\n", 16, modes[i]);
    char out[64];
    size_t len;
    cr_expect_eq(creds_read_secret_file(path, out, sizeof(out), &len, err, sizeof(err)), -1,
                 "mode %o accepted", modes[i]);
    cr_expect(strstr(err, "chmod 600") != NULL, "%s", err);
    cr_expect(strstr(err, "fl_leaky_secret") == NULL, "the message must not quote the secret");
  }
}

Test(creds, a_symlink_is_refused) {
  const char *target = write_secret("real", "fl_abc\n", 7, 0600);
  char link_path[300];
  snprintf(link_path, sizeof(link_path), "%s/link", dir);
  cr_assert_eq(symlink(target, link_path), 0);
  char out[64];
  size_t len;
  cr_expect_eq(creds_read_secret_file(link_path, out, sizeof(out), &len, err, sizeof(err)), -1);
  cr_expect(strstr(err, "symbolic link") != NULL, "%s", err);
}

Test(creds, a_directory_is_refused) {
  char out[64];
  size_t len;
  chmod(dir, 0700);
  cr_expect_eq(creds_read_secret_file(dir, out, sizeof(out), &len, err, sizeof(err)), -1);
  cr_expect(strstr(err, "not a regular file") != NULL, "%s", err);
}

Test(creds, empty_oversized_and_multiline_files_are_refused) {
  char out[64];
  size_t len;
  const char *empty = write_secret("empty", "\n", 1, 0600);
  cr_expect_eq(creds_read_secret_file(empty, out, sizeof(out), &len, err, sizeof(err)), -1);
  cr_expect(strstr(err, "empty") != NULL, "%s", err);

  char big[200];
  memset(big, 'a', sizeof(big));
  const char *oversized = write_secret("big", big, sizeof(big), 0600);
  cr_expect_eq(creds_read_secret_file(oversized, out, sizeof(out), &len, err, sizeof(err)), -1);

  const char *two_lines = write_secret("two", "fl_a\nfl_b\n", 10, 0600);
  cr_expect_eq(creds_read_secret_file(two_lines, out, sizeof(out), &len, err, sizeof(err)), -1);
  cr_expect(strstr(err, "one line of visible ASCII") != NULL, "%s", err);

  const char *with_space = write_secret("space", "fl a\n", 5, 0600);
  cr_expect_eq(creds_read_secret_file(with_space, out, sizeof(out), &len, err, sizeof(err)), -1);
}

Test(creds, the_systemd_credential_wins_over_token_file) {
  const char *fallback = write_secret("token", "fl_from_token_file\n", 19, 0600);
  char fallback_path[256];
  snprintf(fallback_path, sizeof(fallback_path), "%s", fallback);
  write_secret(CREDS_SYSTEMD_NAME, "fl_from_systemd\n", 16, 0400);
  setenv("CREDENTIALS_DIRECTORY", dir, 1);
  struct creds creds = {0};
  cr_assert_eq(creds_load(&creds, static_key_config(fallback_path), err, sizeof(err)), 0, "%s", err);
  cr_expect_str_eq(creds.token, "fl_from_systemd");
  creds_wipe(&creds);
  unsetenv("CREDENTIALS_DIRECTORY");
}

Test(creds, token_file_is_used_when_the_systemd_credential_is_absent) {
  const char *fallback = write_secret("token", "fl_from_token_file\n", 19, 0600);
  setenv("CREDENTIALS_DIRECTORY", "/nonexistent", 1);
  struct creds creds = {0};
  cr_assert_eq(creds_load(&creds, static_key_config(fallback), err, sizeof(err)), 0, "%s", err);
  cr_expect_str_eq(creds.token, "fl_from_token_file");
  creds_wipe(&creds);
  unsetenv("CREDENTIALS_DIRECTORY");
}

Test(log, a_registered_secret_is_redacted_from_every_line, .init = cr_redirect_stderr) {
  static const char secret[] = "fl_super_secret_key";
  log_set_level(LOG_LEVEL_DEBUG);
  cr_assert(log_add_secret(secret, strlen(secret)));
  log_error("header was Authorization: Bearer %s and again %s", secret, secret);
  log_debug("debug %s", secret);
  log_remove_secret(secret);
  log_info("after removal: plain text");
  char all[4096];
  captured_stderr(all, sizeof(all));
  cr_expect(strstr(all, secret) == NULL, "the secret leaked: %s", all);
  cr_expect(strstr(all, "Bearer [REDACTED] and again [REDACTED]") != NULL, "%s", all);
  cr_expect(strstr(all, "debug [REDACTED]") != NULL, "%s", all);
  cr_expect(strstr(all, "after removal: plain text") != NULL);
}

Test(log, a_line_never_spans_two_lines, .init = cr_redirect_stderr) {
  log_set_level(LOG_LEVEL_INFO);
  log_warning("forged\nflipcached[1] error: fake line");
  char all[1024];
  captured_stderr(all, sizeof(all));
  cr_expect_eq(strchr(all, '\n'), all + strlen(all) - 1, "one line: %s", all);
}

Test(log, journald_gets_priority_prefixes, .init = cr_redirect_stderr) {
  setenv("JOURNAL_STREAM", "8:12345", 1);
  log_set_level(LOG_LEVEL_DEBUG);
  log_error("e");
  log_warning("w");
  log_info("i");
  log_debug("d");
  unsetenv("JOURNAL_STREAM");
  fflush(stderr);
  cr_expect_stderr_eq_str("<3>e\n<4>w\n<6>i\n<7>d\n");
}

Test(log, levels_filter) {
  log_set_level(LOG_LEVEL_WARNING);
  cr_expect(log_enabled(LOG_LEVEL_ERROR));
  cr_expect(log_enabled(LOG_LEVEL_WARNING));
  cr_expect_not(log_enabled(LOG_LEVEL_INFO));
  enum log_level level;
  cr_expect(log_level_from_name("debug", &level) && level == LOG_LEVEL_DEBUG);
  cr_expect_not(log_level_from_name("verbose", &level));
}

Test(creds, base64_matches_rfc4648) {
  char out[32];
  const char *vectors[][2] = {{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"},
                              {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
  for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
    size_t len = creds_base64((const unsigned char *)vectors[i][0], strlen(vectors[i][0]), out,
                              sizeof(out));
    cr_expect_str_eq(out, vectors[i][1]);
    cr_expect_eq(len, strlen(vectors[i][1]));
  }
  cr_expect_eq(creds_base64((const unsigned char *)"foobar", 6, out, 8), 0, "too small");
}

Test(creds, an_oauth_client_authenticates_with_basic_and_both_secrets_are_redacted,
     .init = cr_redirect_stderr) {
  const char *path = write_secret("client-secret", "s3cr:t/x\n", 9, 0600);
  unsetenv("CREDENTIALS_DIRECTORY");
  struct config cfg;
  config_defaults(&cfg);
  snprintf(cfg.oauth_token_url, sizeof(cfg.oauth_token_url), "https://oauth.flip.energy/token");
  snprintf(cfg.oauth_client_id, sizeof(cfg.oauth_client_id), "client-1");
  snprintf(cfg.oauth_client_secret_file, sizeof(cfg.oauth_client_secret_file), "%s", path);
  struct creds creds = {0};
  cr_assert_eq(creds_load(&creds, &cfg, err, sizeof(err)), 0, "%s", err);
  cr_expect_eq(creds.kind, CREDS_OAUTH_CLIENT);
  /* base64("client-1:s3cr%3At%2Fx"): the secret is form-urlencoded first (RFC 6749 2.3.1) */
  cr_expect_str_eq(creds.authorization, "Authorization: Basic Y2xpZW50LTE6czNjciUzQXQlMkZ4");
  cr_expect_str_eq(creds.secret, "s3cr:t/x");
  log_set_level(LOG_LEVEL_INFO);
  log_info("secret %s basic %s", creds.secret, creds.token);
  creds_wipe(&creds);
  char all[1024];
  captured_stderr(all, sizeof(all));
  cr_expect(strstr(all, "secret [REDACTED] basic [REDACTED]") != NULL, "%s", all);
}

Test(creds, the_systemd_client_secret_wins_over_the_configured_file) {
  const char *fallback = write_secret("client-secret", "from_file\n", 10, 0600);
  char fallback_path[256];
  snprintf(fallback_path, sizeof(fallback_path), "%s", fallback);
  write_secret(CREDS_SYSTEMD_CLIENT_SECRET_NAME, "from_systemd\n", 13, 0400);
  setenv("CREDENTIALS_DIRECTORY", dir, 1);
  struct config cfg;
  config_defaults(&cfg);
  snprintf(cfg.oauth_token_url, sizeof(cfg.oauth_token_url), "https://oauth.flip.energy/token");
  snprintf(cfg.oauth_client_id, sizeof(cfg.oauth_client_id), "c");
  snprintf(cfg.oauth_client_secret_file, sizeof(cfg.oauth_client_secret_file), "%s", fallback_path);
  struct creds creds = {0};
  cr_assert_eq(creds_load(&creds, &cfg, err, sizeof(err)), 0, "%s", err);
  cr_expect_str_eq(creds.secret, "from_systemd");
  creds_wipe(&creds);
  unsetenv("CREDENTIALS_DIRECTORY");
}

Test(creds, an_oauth_client_without_a_secret_file_is_refused) {
  unsetenv("CREDENTIALS_DIRECTORY");
  struct config cfg;
  config_defaults(&cfg);
  snprintf(cfg.oauth_token_url, sizeof(cfg.oauth_token_url), "https://oauth.flip.energy/token");
  snprintf(cfg.oauth_client_id, sizeof(cfg.oauth_client_id), "c");
  struct creds creds = {0};
  cr_expect_eq(creds_load(&creds, &cfg, err, sizeof(err)), -1);
  cr_expect(strstr(err, "flip-client-secret") != NULL, "%s", err);
}
