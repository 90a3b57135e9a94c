#include "systemd.h"

#include <event2/event.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-daemon.h>

#include "log.h"

struct sd_watchdog {
  struct event *timer;
};

void sd_send(const char *state) { sd_notify(0, state); }

void sd_send_status(const char *fmt, ...) {
  char status[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(status, sizeof(status), fmt, ap);
  va_end(ap);
  sd_notifyf(0, "STATUS=%s", status);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  (void)arg;
  sd_notify(0, "WATCHDOG=1");
}

struct sd_watchdog *sd_watchdog_start(struct event_base *base) {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
    return NULL;
  struct sd_watchdog *watchdog = calloc(1, sizeof(*watchdog));
  if (!watchdog)
    return NULL;
  watchdog->timer = event_new(base, -1, EV_PERSIST, on_watchdog, watchdog);
  uint64_t half = usec / 2;
  struct timeval interval = {.tv_sec = (time_t)(half / 1000000), .tv_usec = (suseconds_t)(half % 1000000)};
  if (!watchdog->timer || event_add(watchdog->timer, &interval) != 0) {
    sd_watchdog_free(watchdog);
    return NULL;
  }
  sd_notify(0, "WATCHDOG=1");
  log_info("systemd watchdog: pinging every %llu ms", (unsigned long long)(half / 1000));
  return watchdog;
}

void sd_watchdog_free(struct sd_watchdog *watchdog) {
  if (!watchdog)
    return;
  if (watchdog->timer)
    event_free(watchdog->timer);
  free(watchdog);
}

size_t sd_inherited_sockets(int *fds, size_t max) {
  int count = sd_listen_fds(1); /* 1: unset LISTEN_* so that children do not inherit them */
  if (count <= 0)
    return 0;
  size_t taken = 0;
  for (int i = 0; i < count; i++) {
    int fd = SD_LISTEN_FDS_START + i;
    if (sd_is_socket(fd, 0, SOCK_STREAM, 1) <= 0) {
      log_warning("systemd passed fd %d, which is not a listening stream socket; ignored", fd);
      continue;
    }
    if (taken < max)
      fds[taken++] = fd;
  }
  return taken;
}
