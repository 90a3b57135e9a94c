#include "fixture.h"

#include <stdio.h>

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
