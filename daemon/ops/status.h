/* status: every rendering of the counters: /stats (JSON), /metrics (Prometheus), /healthz, and
 * systemd's STATUS= line. */
#ifndef FLIPCACHED_STATUS_H
#define FLIPCACHED_STATUS_H

struct client_request;
struct flipcached;

/* Route handlers (front_routes); arg is the struct flipcached. */
void status_stats(struct client_request *request, void *arg);
void status_metrics(struct client_request *request, void *arg);
void status_healthz(struct client_request *request, void *arg);
/* systemd's STATUS= line, what `systemctl status` shows: entries, the hit ratio, the upstream's
 * state. */
void status_send_systemd(struct flipcached *daemon);

#endif
