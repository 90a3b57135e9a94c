#include "tls_peers.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* In a child about to exec: its stdout to /dev/null (the servers print banners). */
static void quiet_stdout(void) {
  int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (devnull >= 0)
    dup2(devnull, STDOUT_FILENO);
}

/* Whether something accepts connections on 127.0.0.1:port within timeout_ms (a server just
 * started in a child). */
static bool listening_within(int port, long timeout_ms) {
  for (long waited = 0; waited < timeout_ms; waited += 10) {
    int fd = raw_connect_quietly(port);
    if (fd >= 0) {
      close(fd);
      return true;
    }
    pause_ms(10);
  }
  return false;
}

#define EC_KEY "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

static void openssl(const char *dir, const char *command) {
  char line[2048], out[4096];
  snprintf(line, sizeof(line), "cd %s && %s", dir, command);
  cr_assert_eq(run_command(line, out, sizeof(out)), 0, "%s:\n%s", command, out);
}

/* A key and a certificate signed by the CA: name.pem, name.key. */
static void signed_certificate(const char *dir, const char *name, const char *subject,
                               const char *extensions, const char *days) {
  char command[1024];
  snprintf(command, sizeof(command),
           "openssl req " EC_KEY " -keyout %s.key -out %s.csr -subj '%s' 2>&1 && "
           "printf '%s\\n' > %s.ext && "
           "openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out %s.pem "
           "-days %s -extfile %s.ext 2>&1 && chmod 600 %s.key",
           name, name, subject, extensions, name, name, name, days, name, name);
  openssl(dir, command);
}

void tls_make_certificates(const char *dir) {
  openssl(dir, "openssl req -x509 " EC_KEY " -keyout ca.key -out ca.pem -days 2 "
               "-subj '/CN=flipcached test CA' 2>&1");
  /* -days 0: valid until the second it was made, so expired a second later. */
  signed_certificate(dir, "expired", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1", "0");
  signed_certificate(dir, "good", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1", "2");
  signed_certificate(dir, "other", "/CN=other.example", "subjectAltName=DNS:other.example", "2");
  signed_certificate(dir, "client", "/CN=flipcached", "extendedKeyUsage=clientAuth", "2");
  pause_ms(1100); /* the expired one is now past its notAfter */
}

static void start_nginx(struct nginx *nginx, const char *dir, const char *certificate,
                        bool client_certificates, int upstream_port, bool http2) {
  memset(nginx, 0, sizeof(*nginx));
  snprintf(nginx->dir, sizeof(nginx->dir), "%s", dir);
  snprintf(nginx->access_log, sizeof(nginx->access_log), "%s/nginx-access.log", dir);
  nginx->port = free_port();
  char config_path[400], config[4096];
  snprintf(config_path, sizeof(config_path), "%s/nginx.conf", dir);
  snprintf(config, sizeof(config),
           "daemon off;\nmaster_process off;\nworker_processes 1;\npid %s/nginx.pid;\n"
           "error_log %s/nginx-error.log info;\nevents { worker_connections 1024; }\n"
           "http {\n"
           "  log_format connections '$connection $request_uri $status';\n"
           "  access_log %s connections;\n"
           "  client_body_temp_path %s/nginx-body;\n  proxy_temp_path %s/nginx-proxy;\n"
           "  upstream fake { server 127.0.0.1:%d; keepalive 32; }\n"
           "  server {\n"
           "    listen 127.0.0.1:%d ssl%s;\n"
           "    ssl_certificate %s/%s.pem;\n    ssl_certificate_key %s/%s.key;\n"
           "    %s\n"
           "    location / {\n"
           "      proxy_pass http://fake;\n      proxy_http_version 1.1;\n"
           "      proxy_set_header Connection \"\";\n"
           "    }\n"
           "    location /static/ {\n"
           "      alias %s/static/;\n      default_type application/json;\n"
           "    }\n"
           "  }\n"
           "}\n",
           dir, dir, nginx->access_log, dir, dir, upstream_port, nginx->port, http2 ? " http2" : "",
           dir, certificate, dir, certificate,
           client_certificates ? "ssl_client_certificate ca.pem;\n    ssl_verify_client on;" : "",
           dir);
  FILE *file = fopen(config_path, "w");
  cr_assert_not_null(file);
  fputs(config, file);
  fclose(file);
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    char error_log[400];
    snprintf(error_log, sizeof(error_log), "%s/nginx-error.log", dir);
    quiet_stdout();
    execlp("nginx", "nginx", "-p", dir, "-e", error_log, "-c", config_path, (char *)NULL);
    _exit(127);
  }
  nginx->pid = pid;
  cr_assert(listening_within(nginx->port, 4000), "nginx did not start on port %d (see %s/nginx-error.log)",
            nginx->port, dir);
}

void nginx_start(struct nginx *nginx, const char *dir, const char *certificate,
                 bool client_certificates, int upstream_port) {
  start_nginx(nginx, dir, certificate, client_certificates, upstream_port, true);
}

void nginx_start_http1(struct nginx *nginx, const char *dir, const char *certificate,
                       int upstream_port) {
  start_nginx(nginx, dir, certificate, false, upstream_port, false);
}

void nginx_stop(struct nginx *nginx) {
  if (nginx->pid > 0) {
    kill(-nginx->pid, SIGTERM);
    waitpid(nginx->pid, NULL, 0);
    nginx->pid = 0;
  }
}

long nginx_connections_used(const struct nginx *nginx, const char *prefix) {
  FILE *log = fopen(nginx->access_log, "r");
  if (!log)
    return 0;
  static long seen[4096];
  long count = 0;
  char line[1024];
  while (fgets(line, sizeof(line), log)) {
    long connection;
    char uri[900];
    if (sscanf(line, "%ld %899s", &connection, uri) != 2 || strncmp(uri, prefix, strlen(prefix)) != 0)
      continue;
    bool known = false;
    for (long i = 0; i < count && !known; i++)
      known = seen[i] == connection;
    if (!known && count < 4096)
      seen[count++] = connection;
  }
  fclose(log);
  return count;
}

void connect_proxy_start(struct connect_proxy *proxy, const char *dir) {
  memset(proxy, 0, sizeof(*proxy));
  proxy->port = free_port();
  snprintf(proxy->log, sizeof(proxy->log), "%s/proxy.log", dir);
  FILE *log = fopen(proxy->log, "w");
  cr_assert_not_null(log);
  fclose(log);
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    char port[16];
    snprintf(port, sizeof(port), "%d", proxy->port);
    quiet_stdout();
    execl(CONNECT_PROXY_BIN, CONNECT_PROXY_BIN, port, proxy->log, (char *)NULL);
    _exit(127);
  }
  proxy->pid = pid;
  cr_assert(listening_within(proxy->port, 2000), "the CONNECT proxy did not start");
}

void connect_proxy_stop(struct connect_proxy *proxy) {
  if (proxy->pid > 0) {
    kill(-proxy->pid, SIGTERM); /* with every tunnel it forked */
    waitpid(proxy->pid, NULL, 0);
    proxy->pid = 0;
  }
}
