/* signals: the loop's handlers of SIGTERM/SIGINT (stop), SIGHUP (reload) and the STATUS= timer,
 * and the access rules they rebuild. arg is the struct flipcached. */
#ifndef FLIPCACHED_SIGNALS_H
#define FLIPCACHED_SIGNALS_H

#include <event2/util.h>

struct flipcached;

#define STATUS_INTERVAL_SECONDS 10

/* Graceful stop: listeners closed at once, fetches in flight allowed to finish (their own
 * timeout bounds them) and their answers written, then the loop ends. */
void signals_on_stop(evutil_socket_t signal_number, short what, void *arg);
/* SIGHUP: re-reads the configuration and applies what can change while running (each key
 * logged), rebuilds the access lists, re-reads the credential; an invalid file or an unusable
 * credential keeps the running one. */
void signals_on_hangup(evutil_socket_t signal_number, short what, void *arg);
/* systemd's STATUS= line, and the count of suppressed warnings. */
void signals_on_status_timer(evutil_socket_t fd, short what, void *arg);
/* Who may use it, at start: the policy, the finder of TCP peers, the miss quotas. 0 or -1. */
int signals_start_access(struct flipcached *daemon);

#endif
