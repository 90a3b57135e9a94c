/* systemd: the daemon's side of systemd, through libsystemd.
 *
 * sd_notify messages (a no-op when NOTIFY_SOCKET is unset): READY=1 once the listeners and the
 * cache are up, RELOADING=1 ... READY=1 around SIGHUP, STOPPING=1 on SIGTERM, and STATUS= with a
 * one-line summary. When the unit sets WatchdogSec=, a loop timer sends WATCHDOG=1 at half the
 * interval: if the loop ever stops turning, systemd restarts the service. Socket activation:
 * sockets passed by systemd (LISTEN_FDS) are served like the daemon's own. */
#ifndef FLIPCACHED_SD_H
#define FLIPCACHED_SD_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct sd_watchdog;

#define SD_MAX_INHERITED 16

/* Sends a notification (sd_notify's message syntax). */
void sd_send(const char *state);
/* Sends STATUS=<text>. */
__attribute__((format(printf, 1, 2))) void sd_send_status(const char *fmt, ...);

/* Starts the watchdog timer if systemd asked for one; NULL when it did not (or on failure). */
struct sd_watchdog *sd_watchdog_start(struct event_base *base);
void sd_watchdog_free(struct sd_watchdog *watchdog);

/* The listening sockets systemd passed (SD_LISTEN_FDS_START...), at most max; returns how many
 * were taken, and unsets LISTEN_FDS so that nothing started later inherits them. */
size_t sd_inherited_sockets(int *fds, size_t max);

#endif
