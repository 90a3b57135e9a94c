/* tls_peers: real TLS servers for the integration tests. Certificates made with openssl at test
 * time, Debian's nginx-light serving HTTPS and HTTP/2 in front of the fake upstream, and the
 * harness's CONNECT proxy (connect_proxy.c). Every helper succeeds or fails the test. */
#ifndef FLIPCACHED_TEST_TLS_PEERS_H
#define FLIPCACHED_TEST_TLS_PEERS_H

#include <stdbool.h>
#include <sys/types.h>

/* In dir: ca.pem (and ca.key), and for the server: good.pem/.key (localhost, 127.0.0.1),
 * expired.pem/.key (the same names, expired), other.pem/.key (names another host only); for the
 * client: client.pem/.key (signed by the same CA, for clientAuth). */
void tls_make_certificates(const char *dir);

struct nginx {
  pid_t pid;
  int port;
  char dir[320];
  char access_log[400];
};

/* nginx on 127.0.0.1:port, TLS with DIR/<certificate>.pem, HTTP/2, serving the files under
 * DIR/static/ at /static/ (as JSON, with nginx's own ETag, Last-Modified and 304s), proxying the
 * rest to the fake at
 * upstream_port; with client_certificates it requires a client certificate from ca.pem. Its
 * access log has "$connection $request $status" per request. */
void nginx_start(struct nginx *nginx, const char *dir, const char *certificate,
                 bool client_certificates, int upstream_port);
/* The same speaking HTTP/1.1 only (no ALPN h2), without client certificates. */
void nginx_start_http1(struct nginx *nginx, const char *dir, const char *certificate,
                       int upstream_port);
void nginx_stop(struct nginx *nginx);
/* Distinct connections over which nginx answered requests for paths starting with prefix. */
long nginx_connections_used(const struct nginx *nginx, const char *prefix);

struct connect_proxy {
  pid_t pid;
  int port;
  char log[400]; /* every request head it received */
};

void connect_proxy_start(struct connect_proxy *proxy, const char *dir);
void connect_proxy_stop(struct connect_proxy *proxy);

#endif
