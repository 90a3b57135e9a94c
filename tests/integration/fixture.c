#include "fixture.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct fake_upstream fake;
struct flipcached_proc daemon_proc;

void start_with(const struct daemon_options *options) {
  fixture_start(&fake, &daemon_proc, options);
}

void stop_all(void) { fixture_stop(&fake, &daemon_proc); }

void get_enrollment(const char *id, struct http_response *response) {
  get_enrollment_from(&daemon_proc, id, response);
}

long stat_of(const char *field) { return flipcached_stat(&daemon_proc, field); }

void url_of(char *url, size_t len, const char *path) {
  snprintf(url, len, "%s%s", daemon_proc.url, path);
}

int hold_the_upstream_connection(const char *id, unsigned hold_ms, unsigned timeout_ms) {
  fake_set_mode(&fake, id, "slow", hold_ms);
  char request[256];
  int len = snprintf(request, sizeof(request),
                     "GET /v1/enrollments/%s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                     id);
  int fd = raw_send(daemon_proc.port, request, (size_t)len);
  for (int i = 0; fake_count(&fake, id) == 0 && i < 200; i++)
    pause_ms(20);
  char command[600], out[512];
  snprintf(command, sizeof(command), "sed -i 's/^timeout_ms = %u$/timeout_ms = 500/' %s",
           timeout_ms, daemon_proc.config);
  cr_assert_eq(run_command(command, out, sizeof(out)), 0, "%s", out);
  flipcached_reload(&daemon_proc, "reload: credential unchanged");
  return fd;
}

void expect_held_answer_200(int fd) {
  char answer[4096];
  raw_read_all(fd, answer, sizeof(answer));
  close(fd);
  cr_expect(strncmp(answer, "HTTP/1.1 200", 12) == 0, "the first fetch kept its connection: %.60s",
            answer);
}
