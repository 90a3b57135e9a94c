#include "harness.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <signal.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void pause_ms(long ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

void fill_random(void *out, size_t len) {
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  cr_assert(fd >= 0 && read(fd, out, len) == (ssize_t)len, "cannot read /dev/urandom");
  close(fd);
}

void ephemeral_port_range(int *low, int *high) {
  *low = 32768;
  *high = 60999;
  FILE *range = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
  if (range) {
    if (fscanf(range, "%d %d", low, high) != 2) {
      *low = 32768;
      *high = 60999;
    }
    fclose(range);
  }
}

void reservable_port_range(int low, int high, int *first, int *count) {
  enum { ENOUGH = 1000 };
  if (low - 20000 >= ENOUGH) { /* Linux's default: 20000..32767, clear of common services */
    *first = 20000;
    *count = low - 20000;
  } else if (low - 1024 >= ENOUGH) {
    *first = 1024;
    *count = low - 1024;
  } else if (65535 - high >= ENOUGH) {
    *first = high + 1;
    *count = 65535 - high;
  } else { /* the ephemeral range is nearly everything: the locks still keep tests apart */
    *first = 1024;
    *count = 65536 - 1024;
  }
}

#define PORT_LOCK_DIR "/tmp/flipcached-test-ports"

int free_port(void) {
  /* A port merely free at the time of asking can be handed to a concurrent test's daemon too
   * (Criterion runs tests in parallel, ctest runs suites in parallel): the second daemon then
   * fails to bind while its test talks to the first. So each port is claimed with a lock file
   * held until this test process exits, and taken outside the ephemeral range where there is
   * room, so no bind(0) or outgoing connection lands on it. */
  int low, high, first, count;
  ephemeral_port_range(&low, &high);
  reservable_port_range(low, high, &first, &count);
  if (mkdir(PORT_LOCK_DIR, 01777) == 0)
    chmod(PORT_LOCK_DIR, 01777); /* whatever the umask: every user's tests share it */
  unsigned char random_byte[2];
  fill_random(random_byte, sizeof(random_byte));
  int start = (random_byte[0] << 8 | random_byte[1]) % count;
  for (int i = 0; i < count; i++) {
    int port = first + (start + i) % count;
    char lock_path[sizeof(PORT_LOCK_DIR) + 16];
    snprintf(lock_path, sizeof(lock_path), PORT_LOCK_DIR "/%d", port);
    int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (lock < 0)
      continue;
    if (flock(lock, LOCK_EX | LOCK_NB) != 0) { /* another test holds it */
      close(lock);
      continue;
    }
    /* Free of anything outside the tests too? The lock stays held (the descriptor is left open,
     * closed by the process's exit) whether or not the port is taken, so it is not tried again. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)); /* as the daemon binds */
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool bound = bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
    close(fd);
    if (bound)
      return port;
  }
  cr_assert_fail("no free port to reserve in %d..%d", first, first + count - 1);
  return -1;
}

void make_token(char *out, size_t out_len) {
  static const char ALPHABET[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  unsigned char random_bytes[24];
  fill_random(random_bytes, sizeof(random_bytes));
  int n = snprintf(out, out_len, "fl_test_");
  for (size_t i = 0; i < sizeof(random_bytes) && (size_t)n + 1 < out_len; i++)
    out[n++] = ALPHABET[random_bytes[i] % (sizeof(ALPHABET) - 1)];
  out[n] = '\0';
}

static void write_file(const char *path, const char *text, mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
  cr_assert(fd >= 0, "cannot write %s: %s", path, strerror(errno));
  cr_assert(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
  fchmod(fd, mode);
  close(fd);
}

void fake_start(struct fake_upstream *fake, const char *token) {
  fake_start_oauth(fake, token, NULL, NULL);
}

void fake_start_oauth(struct fake_upstream *fake, const char *token, const char *client_id,
                      const char *client_secret) {
  char dir[] = "/tmp/flipfake.XXXXXX";
  cr_assert(mkdtemp(dir));
  char token_path[64], secret_path[64];
  snprintf(token_path, sizeof(token_path), "%s/token", dir);
  snprintf(secret_path, sizeof(secret_path), "%s/client-secret", dir);
  char token_line[128];
  snprintf(token_line, sizeof(token_line), "%s\n", token);
  write_file(token_path, token_line, 0600);
  if (client_secret) {
    snprintf(token_line, sizeof(token_line), "%s\n", client_secret);
    write_file(secret_path, token_line, 0600);
  }

  int out[2];
  cr_assert(pipe(out) == 0);
  pid_t pid = fork();
  cr_assert(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* dies with the test, even one killed by its timeout */
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    close(out[1]);
    /* The fake's own leaks (requests it abandons on purpose) are not the daemon's: quiet them
     * when the suite runs under AddressSanitizer. */
    setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
    if (client_id && client_secret)
      execl(FAKE_UPSTREAM_BIN, FAKE_UPSTREAM_BIN, "--port", "0", "--token-file", token_path,
            "--client-id", client_id, "--client-secret-file", secret_path, (char *)NULL);
    else
      execl(FAKE_UPSTREAM_BIN, FAKE_UPSTREAM_BIN, "--port", "0", "--token-file", token_path,
            (char *)NULL);
    _exit(127);
  }
  close(out[1]);
  char line[128] = "";
  FILE *stream = fdopen(out[0], "r");
  cr_assert(fgets(line, sizeof(line), stream), "the fake upstream did not start");
  fclose(stream);
  unlink(token_path);
  unlink(secret_path);
  rmdir(dir);
  fake->pid = pid;
  cr_assert(sscanf(line, "listening on 127.0.0.1:%d", &fake->port) == 1, "fake said: %s", line);
  snprintf(fake->base_url, sizeof(fake->base_url), "http://127.0.0.1:%d", fake->port);
}

void fake_stop(struct fake_upstream *fake) {
  if (fake->pid > 0) {
    kill(fake->pid, SIGTERM);
    waitpid(fake->pid, NULL, 0);
    fake->pid = 0;
  }
}

/* GETs url and returns one number of its JSON body, or -1. */
static long json_field_at(const char *url, const char *field) {
  struct http_response response;
  http_get(url, &response);
  long value = json_field(response.body, field);
  http_response_free(&response);
  return value;
}

size_t documented_cache_statuses(char (*values)[DOC_CACHE_STATUS_MAX], long *statuses, size_t max) {
  FILE *doc = fopen(SOURCE_DIR "/docs/http.md", "r");
  cr_assert(doc, "docs/http.md");
  char line[1024];
  size_t count = 0;
  while (fgets(line, sizeof(line), doc) && count < max) {
    /* "| `VALUE` | STATUS | ..." */
    if (strncmp(line, "| `flipcached", 13) != 0)
      continue;
    const char *start = line + 3, *end = strchr(start, '`');
    cr_assert(end && (size_t)(end - start) < DOC_CACHE_STATUS_MAX, "%s", line);
    memcpy(values[count], start, (size_t)(end - start));
    values[count][end - start] = '\0';
    cr_assert(strncmp(end, "` | ", 4) == 0, "%s", line);
    statuses[count] = atol(end + 4);
    count++;
  }
  fclose(doc);
  return count;
}

bool cache_status_matches(const char *documented, const char *actual) {
  while (*documented) {
    if (*documented == 'N') {
      if (*actual < '0' || *actual > '9')
        return false;
      while (*actual >= '0' && *actual <= '9')
        actual++;
      documented++;
    } else if (*documented++ != *actual++) {
      return false;
    }
  }
  return *actual == '\0';
}

/* POSTs a control request to the fake and requires a 200. */
void fake_control(struct fake_upstream *fake, const char *path_and_query) {
  char url[256];
  snprintf(url, sizeof(url), "%s%s", fake->base_url, path_and_query);
  struct http_response response;
  http_request("POST", url, NULL, &response);
  cr_assert_eq(response.status, 200, "the fake refused %s", path_and_query);
  http_response_free(&response);
}

void fake_set_mode(struct fake_upstream *fake, const char *id, const char *mode, unsigned delay_ms) {
  char query[160];
  snprintf(query, sizeof(query), "/_fake/mode?id=%s&mode=%s&delay_ms=%u", id, mode, delay_ms);
  fake_control(fake, query);
}


void fake_fail_times(struct fake_upstream *fake, const char *id, const char *mode, unsigned times) {
  char query[160];
  snprintf(query, sizeof(query), "/_fake/mode?id=%s&mode=%s&fail_times=%u", id, mode, times);
  fake_control(fake, query);
}

void fake_retry_after(struct fake_upstream *fake, unsigned seconds) {
  char query[64];
  snprintf(query, sizeof(query), "/_fake/retry-after?seconds=%u", seconds);
  fake_control(fake, query);
}

int raw_ask_enrollment(int port, const char *id) {
  char request[160];
  int length = snprintf(request, sizeof(request),
                        "GET /v1/enrollments/%s HTTP/1.1\r\nHost: localhost\r\n\r\n", id);
  return raw_send(port, request, (size_t)length);
}

long raw_answer_status(int connection) {
  char answer[16384];
  size_t got = raw_read_response(connection, answer, sizeof(answer) - 1, 10000);
  answer[got] = '\0';
  close(connection);
  return strncmp(answer, "HTTP/1.1 ", 9) == 0 ? atol(answer + 9) : 0;
}

long fake_release(struct fake_upstream *fake, const char *id, unsigned most) {
  char url[256];
  snprintf(url, sizeof(url), "%s/_fake/release?n=%u%s%s", fake->base_url, most, id ? "&id=" : "",
           id ? id : "");
  struct http_response response;
  http_request("POST", url, NULL, &response);
  cr_assert_eq(response.status, 200, "the fake refused to release");
  long released = json_field(response.body, "released");
  http_response_free(&response);
  return released;
}

void fake_expect_token(struct fake_upstream *fake, const char *token) {
  char query[160];
  snprintf(query, sizeof(query), "/_fake/token?value=%s", token);
  fake_control(fake, query);
}

long fake_count(struct fake_upstream *fake, const char *id) {
  char url[256];
  snprintf(url, sizeof(url), "%s/_fake/count?id=%s", fake->base_url, id);
  return json_field_at(url, "count");
}

void fake_set_program(struct fake_upstream *fake, const char *program_id, unsigned count,
                      const char *prefix, const char *mode, unsigned delay_ms) {
  char query[200];
  snprintf(query, sizeof(query), "/_fake/program?id=%s&count=%u&prefix=%s&mode=%s&delay_ms=%u",
           program_id, count, prefix, mode, delay_ms);
  fake_control(fake, query);
}

long fake_program_count(struct fake_upstream *fake, const char *program_id) {
  char url[256];
  snprintf(url, sizeof(url), "%s/_fake/count?program_id=%s", fake->base_url, program_id);
  return json_field_at(url, "count");
}

long fake_stat(struct fake_upstream *fake, const char *field) {
  char url[256];
  snprintf(url, sizeof(url), "%s/_fake/stats", fake->base_url);
  return json_field_at(url, field);
}

void flipcached_prepare(struct flipcached_proc *proc, const struct fake_upstream *fake,
                        const struct daemon_options *options) {
  static const struct daemon_options DEFAULTS = {0};
  if (!options)
    options = &DEFAULTS;
  memset(proc, 0, sizeof(*proc));
  snprintf(proc->dir, sizeof(proc->dir), "/tmp/flipcached-test.XXXXXX");
  cr_assert(mkdtemp(proc->dir));
  snprintf(proc->config, sizeof(proc->config), "%s/flipcached.conf", proc->dir);
  snprintf(proc->token_path, sizeof(proc->token_path), "%s/token", proc->dir);
  snprintf(proc->log_path, sizeof(proc->log_path), "%s/flipcached.log", proc->dir);
  proc->port = free_port();
  snprintf(proc->url, sizeof(proc->url), "http://127.0.0.1:%d", proc->port);
  if (options->token)
    snprintf(proc->token, sizeof(proc->token), "%s", options->token);
  else
    make_token(proc->token, sizeof(proc->token));

  char token_line[128];
  snprintf(token_line, sizeof(token_line), "%s\n", proc->token);
  write_file(proc->token_path, token_line, 0600);
  char listen_unix[340] = "";
  if (options->unix_socket) {
    snprintf(proc->unix_socket, sizeof(proc->unix_socket), "%s/http.sock", proc->dir);
    snprintf(listen_unix, sizeof(listen_unix), " unix:%s", proc->unix_socket);
  }
  char oauth[800] = "";
  if (options->oauth_client_id && options->oauth_client_secret) {
    snprintf(proc->client_secret_path, sizeof(proc->client_secret_path), "%s/client-secret",
             proc->dir);
    char secret_line[128];
    snprintf(secret_line, sizeof(secret_line), "%s\n", options->oauth_client_secret);
    write_file(proc->client_secret_path, secret_line, 0600);
    snprintf(oauth, sizeof(oauth),
             "oauth_token_url = %s/oauth/token\noauth_client_id = %s\noauth_client_secret_file = %s\n",
             fake->base_url, options->oauth_client_id, proc->client_secret_path);
  }
  char miss_rate[64] = ""; /* 0: the daemon's default (off) */
  if (options->miss_rate)
    snprintf(miss_rate, sizeof(miss_rate), "miss_rate_per_user = %u\n", options->miss_rate);
  char config[3072];
  snprintf(config, sizeof(config),
           "[server]\nlisten = 127.0.0.1:%d%s\n%s%s\n"
           "[upstream]\nbase_url = %s\ntoken_file = %s\ntimeout_ms = %u\nconnect_timeout_ms = 1000\n%s%s\n"
           "[cache]\npath = %s/cache\nttl = %u\nmax_size = %s\n%s\n%s"
           "[log]\nlevel = %s\n",
           proc->port, listen_unix, miss_rate, options->extra_server ? options->extra_server : "",
           options->base_url ? options->base_url : fake->base_url,
           proc->token_path,
           options->timeout_ms ? options->timeout_ms : 5000, oauth,
           options->extra_upstream ? options->extra_upstream : "", proc->dir,
           options->ttl ? options->ttl : 300, options->max_size ? options->max_size : "16M",
           options->extra_cache ? options->extra_cache : "",
           options->extra_sections ? options->extra_sections : "",
           options->log_level ? options->log_level : "debug");
  write_file(proc->config, config, 0644);
}

pid_t flipcached_spawn(const struct flipcached_proc *proc) {
  pid_t pid = fork();
  cr_assert(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* dies with the test, even one killed by its timeout */
    int log_fd = open(proc->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    dup2(log_fd, STDERR_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    close(log_fd);
    if (proc->credentials_directory[0])
      setenv("CREDENTIALS_DIRECTORY", proc->credentials_directory, 1);
    else
      unsetenv("CREDENTIALS_DIRECTORY");
    unsetenv("JOURNAL_STREAM");
    for (size_t i = 0; i < sizeof(proc->env) / sizeof(proc->env[0]); i++) {
      if (proc->env[i][0])
        putenv(strdup(proc->env[i]));
    }
    /* sd_listen_fds(3): the sockets at 3, 4, ..., LISTEN_FDS their number, LISTEN_PID ours. */
    for (size_t i = 0; i < proc->inherited_count; i++) {
      int target = 3 + (int)i;
      if (proc->inherited[i] != target) {
        dup2(proc->inherited[i], target);
        close(proc->inherited[i]);
      }
    }
    if (proc->inherited_count) {
      char value[32];
      snprintf(value, sizeof(value), "%zu", proc->inherited_count);
      setenv("LISTEN_FDS", value, 1);
      snprintf(value, sizeof(value), "%d", (int)getpid());
      setenv("LISTEN_PID", value, 1);
    }
    /* FLIPCACHED_VALGRIND=1 runs the daemon under memcheck: any memory error or definite or
     * indirect leak makes it exit 99, which the tests' "exits 0" assertions catch. */
    const char *valgrind = getenv("FLIPCACHED_VALGRIND");
    if (proc->strace_output[0])
      execlp("strace", "strace", "-f", "-qq", "-e", "trace=fsync,fdatasync,msync,sync_file_range",
             "-o", proc->strace_output, FLIPCACHED_BIN, "-c", proc->config, (char *)NULL);
    else if (valgrind && strcmp(valgrind, "1") == 0)
      execlp("valgrind", "valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
             "--errors-for-leak-kinds=definite,indirect", "--show-leak-kinds=definite,indirect",
             FLIPCACHED_BIN, "-c", proc->config, (char *)NULL);
    else
      execl(FLIPCACHED_BIN, FLIPCACHED_BIN, "-c", proc->config, (char *)NULL);
    _exit(127);
  }
  return pid;
}

void flipcached_launch(struct flipcached_proc *proc) {
  pid_t pid = flipcached_spawn(proc);
  proc->pid = pid;
  const char *valgrind = getenv("FLIPCACHED_VALGRIND");
  int attempts = valgrind && strcmp(valgrind, "1") == 0 ? 1200 : 200; /* 30 s under valgrind */
  for (int attempt = 0; attempt < attempts; attempt++) {
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      char *log = flipcached_log(proc);
      proc->pid = 0;
      cr_assert_fail("flipcached exited during start-up; its log:\n%s", log);
    }
    if (flipcached_healthz_status(proc) == 200)
      return;
    pause_ms(25);
  }
  cr_assert_fail("flipcached did not answer /healthz in time");
}

void flipcached_start(struct flipcached_proc *proc, const struct fake_upstream *fake,
                      const struct daemon_options *options) {
  flipcached_prepare(proc, fake, options);
  flipcached_launch(proc);
}

void flipcached_write_token(const struct flipcached_proc *proc, const char *token, mode_t mode) {
  char line[128];
  snprintf(line, sizeof(line), "%s\n", token);
  unlink(proc->token_path);
  write_file(proc->token_path, line, mode);
}

void flipcached_reload(struct flipcached_proc *proc, const char *then_logged) {
  char *before = flipcached_log(proc);
  size_t before_len = strlen(before);
  free(before);
  kill(proc->pid, SIGHUP);
  for (int attempt = 0; attempt < 200; attempt++) {
    char *log = flipcached_log(proc);
    bool done = strstr(log + before_len, then_logged) != NULL;
    free(log);
    if (done)
      return;
    pause_ms(25);
  }
  cr_assert_fail("no \"%s\" in the log within 5 s of SIGHUP", then_logged);
}

pid_t flipcached_daemon_pid(const struct flipcached_proc *proc) {
  if (!proc->strace_output[0])
    return proc->pid;
  char path[64], text[64] = "";
  snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)proc->pid, (int)proc->pid);
  FILE *file = fopen(path, "r");
  if (file) {
    if (!fgets(text, sizeof(text), file))
      text[0] = '\0';
    fclose(file);
  }
  return (pid_t)atoi(text);
}

int flipcached_stop(struct flipcached_proc *proc) {
  if (proc->pid <= 0)
    return -1;
  /* strace blocks fatal signals while it runs a command: the daemon itself is told to stop */
  pid_t daemon_pid = flipcached_daemon_pid(proc);
  kill(daemon_pid > 0 ? daemon_pid : proc->pid, SIGTERM);
  int status = 0;
  waitpid(proc->pid, &status, 0);
  proc->pid = 0;
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

char *flipcached_log(const struct flipcached_proc *proc) {
  FILE *file = fopen(proc->log_path, "r");
  if (!file)
    return strdup("");
  fseek(file, 0, SEEK_END);
  long len = ftell(file);
  rewind(file);
  char *text = calloc(1, (size_t)len + 1);
  size_t got = fread(text, 1, (size_t)len, file);
  text[got] = '\0';
  fclose(file);
  return text;
}

void fixture_start(struct fake_upstream *fake, struct flipcached_proc *proc,
                   const struct daemon_options *given) {
  struct daemon_options options = given ? *given : (struct daemon_options){0};
  char token[64];
  make_token(token, sizeof(token));
  options.token = token;
  fake_start(fake, token);
  flipcached_start(proc, fake, &options);
}

void fixture_stop(struct fake_upstream *fake, struct flipcached_proc *proc) {
  if (proc->pid > 0)
    cr_expect_eq(flipcached_stop(proc), 0, "flipcached must exit 0 on SIGTERM");
  fake_stop(fake);
  remove_tree(proc->dir);
}

long flipcached_stat(const struct flipcached_proc *proc, const char *field) {
  char url[256];
  snprintf(url, sizeof(url), "%s/stats", proc->url);
  return json_field_at(url, field);
}

long flipcached_healthz_status(const struct flipcached_proc *proc) {
  char url[256];
  snprintf(url, sizeof(url), "%s/healthz", proc->url);
  struct http_response response;
  http_get(url, &response);
  long status = response.status;
  http_response_free(&response);
  return status;
}

void fake_oauth_revoke(struct fake_upstream *fake) { fake_control(fake, "/_fake/oauth-revoke"); }

void get_enrollment_from(const struct flipcached_proc *proc, const char *id,
                         struct http_response *response) {
  char url[256];
  snprintf(url, sizeof(url), "%s/v1/enrollments/%s", proc->url, id);
  http_get(url, response);
}

int run_command(const char *command, char *out, size_t out_cap) {
  char wrapped[2048];
  snprintf(wrapped, sizeof(wrapped), "(%s) 2>&1", command);
  FILE *pipe = popen(wrapped, "r");
  cr_assert_not_null(pipe, "cannot run %s", command);
  size_t got = fread(out, 1, out_cap - 1, pipe);
  out[got] = '\0';
  int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

void http_as(const char *identity, const char *method, const char *url, const char *unix_socket,
             const char *const *headers, struct http_response *response) {
  char command[2048];
  int len = snprintf(command, sizeof(command), "setpriv %s curl -s -D - -w '\\n%%{http_code}' -X %s",
                     identity, method ? method : "GET");
  if (unix_socket)
    len += snprintf(command + len, sizeof(command) - (size_t)len, " --unix-socket '%s'", unix_socket);
  for (size_t i = 0; headers && headers[i]; i++)
    len += snprintf(command + len, sizeof(command) - (size_t)len, " -H '%s'", headers[i]);
  snprintf(command + len, sizeof(command) - (size_t)len, " '%s'", url);
  cr_assert_lt(strlen(command), sizeof(command) - 1, "command too long");
  static char out[1 << 20];
  run_command(command, out, sizeof(out));
  memset(response, 0, sizeof(*response));
  char *status_line = strrchr(out, '\n'); /* -w puts the status after a newline of its own */
  response->status = status_line ? atol(status_line + 1) : 0;
  if (status_line)
    *status_line = '\0';
  char *end_of_head = strstr(out, "\r\n\r\n");
  size_t head_len = end_of_head ? (size_t)(end_of_head - out) + 4 : 0;
  response->headers = strndup(out, head_len);
  response->body = strdup(out + head_len);
  response->body_len = strlen(response->body);
}

struct growing {
  char *data;
  size_t len;
};

static size_t on_data(char *data, size_t size, size_t count, void *arg) {
  struct growing *buffer = arg;
  size_t len = size * count;
  buffer->data = realloc(buffer->data, buffer->len + len + 1);
  memcpy(buffer->data + buffer->len, data, len);
  buffer->len += len;
  buffer->data[buffer->len] = '\0';
  return len;
}

struct transfer {
  CURL *easy;
  struct curl_slist *headers;
  struct growing body, header_block;
};

static void transfer_setup(struct transfer *transfer, const char *method, const char *url,
                           const char *const *headers, const char *socket_path, long timeout_ms) {
  memset(transfer, 0, sizeof(*transfer));
  transfer->easy = curl_easy_init();
  transfer->body.data = calloc(1, 1);
  transfer->header_block.data = calloc(1, 1);
  for (size_t i = 0; headers && headers[i]; i++)
    transfer->headers = curl_slist_append(transfer->headers, headers[i]);
  CURL *easy = transfer->easy;
  curl_easy_setopt(easy, CURLOPT_URL, url);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, transfer->headers);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &transfer->body);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_data);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &transfer->header_block);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_PATH_AS_IS, 1L); /* send "..", "//" as written */
  curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, 1L);
  if (socket_path)
    curl_easy_setopt(easy, CURLOPT_UNIX_SOCKET_PATH, socket_path);
  if (method && strcmp(method, "HEAD") == 0)
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
  else if (method)
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
}

/* Hands the transfer's results to response (status 0 when it failed) and frees the rest. */
static void transfer_finish(struct transfer *transfer, bool ok, struct http_response *response) {
  memset(response, 0, sizeof(*response));
  if (ok)
    curl_easy_getinfo(transfer->easy, CURLINFO_RESPONSE_CODE, &response->status);
  response->body = transfer->body.data;
  response->body_len = transfer->body.len;
  response->headers = transfer->header_block.data;
  curl_slist_free_all(transfer->headers);
  curl_easy_cleanup(transfer->easy);
}

static void http_perform(const char *method, const char *url, const char *const *headers,
                         const char *socket_path, long timeout_ms, struct http_response *response) {
  struct transfer transfer;
  transfer_setup(&transfer, method, url, headers, socket_path, timeout_ms);
  bool ok = curl_easy_perform(transfer.easy) == CURLE_OK;
  transfer_finish(&transfer, ok, response);
}

void http_get_many(const char *const *urls, size_t n, size_t connections,
                   struct http_response *responses) {
  struct transfer *transfers = calloc(n, sizeof(*transfers));
  bool *ok = calloc(n, sizeof(*ok));
  cr_assert(transfers && ok);
  CURLM *multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)connections);
  size_t started = 0, finished = 0;
  while (finished < n) {
    while (started < n && started - finished < connections) {
      transfer_setup(&transfers[started], NULL, urls[started], NULL, NULL, 60000L);
      curl_easy_setopt(transfers[started].easy, CURLOPT_FORBID_REUSE, 0L);
      curl_easy_setopt(transfers[started].easy, CURLOPT_PRIVATE, (char *)&ok[started]);
      curl_multi_add_handle(multi, transfers[started].easy);
      started++;
    }
    int running = 0;
    curl_multi_perform(multi, &running);
    CURLMsg *message;
    int left;
    size_t finished_before = finished;
    while ((message = curl_multi_info_read(multi, &left)) != NULL) {
      if (message->msg != CURLMSG_DONE)
        continue;
      bool *done_ok = NULL;
      CURL *easy = message->easy_handle;
      curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&done_ok);
      *done_ok = message->data.result == CURLE_OK;
      curl_multi_remove_handle(multi, easy); /* the connection stays in the multi's pool */
      size_t i = (size_t)(done_ok - ok);
      transfer_finish(&transfers[i], *done_ok, &responses[i]);
      finished++;
    }
    /* Something finished: start the next ones before waiting (polling first would wait the
     * whole timeout with the freed connection idle: 100 ms a request over one connection). */
    if (finished < n && finished == finished_before)
      curl_multi_poll(multi, NULL, 0, 100, NULL);
  }
  curl_multi_cleanup(multi);
  free(ok);
  free(transfers);
}

/* All started at once: one connection each. */
void http_get_concurrently(const char *const *urls, size_t n, struct http_response *responses) {
  http_get_many(urls, n, n, responses);
}

void http_request(const char *method, const char *url, const char *const *headers,
                  struct http_response *response) {
  http_perform(method, url, headers, NULL, 20000L, response);
}

void http_get(const char *url, struct http_response *response) {
  http_perform(NULL, url, NULL, NULL, 20000L, response);
}

void http_get_within(const char *url, long timeout_ms, struct http_response *response) {
  http_perform(NULL, url, NULL, NULL, timeout_ms, response);
}

void http_get_unix(const char *socket_path, const char *url, struct http_response *response) {
  http_perform(NULL, url, NULL, socket_path, 20000L, response);
}


bool http_header(const struct http_response *response, const char *name, char *out, size_t out_len) {
  size_t name_len = strlen(name);
  for (const char *line = response->headers; line && *line;) {
    const char *end = strstr(line, "\r\n");
    size_t line_len = end ? (size_t)(end - line) : strlen(line);
    if (line_len > name_len && strncasecmp(line, name, name_len) == 0 && line[name_len] == ':') {
      const char *value = line + name_len + 1;
      while (*value == ' ')
        value++;
      size_t value_len = line_len - (size_t)(value - line);
      if (value_len >= out_len)
        value_len = out_len - 1;
      memcpy(out, value, value_len);
      out[value_len] = '\0';
      return true;
    }
    line = end ? end + 2 : line + line_len;
  }
  return false;
}

void http_response_free(struct http_response *response) {
  free(response->body);
  free(response->headers);
  memset(response, 0, sizeof(*response));
}

long json_field(const char *json, const char *field) {
  json_object *root = json ? json_tokener_parse(json) : NULL;
  json_object *value = NULL;
  long result = -1;
  if (root && json_object_object_get_ex(root, field, &value))
    result = (long)json_object_get_int64(value);
  json_object_put(root);
  return result;
}

int raw_connect_quietly(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int raw_connect(int port) {
  int fd = raw_connect_quietly(port);
  cr_assert(fd >= 0, "cannot connect to 127.0.0.1:%d", port);
  return fd;
}

int raw_send(int port, const char *request, size_t len) {
  int fd = raw_connect(port);
  cr_assert(write(fd, request, len) == (ssize_t)len);
  return fd;
}

static long ms_since(const struct timespec *start) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

size_t raw_read_response(int fd, char *out, size_t out_cap, long timeout_ms) {
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  size_t got = 0;
  out[0] = '\0';
  while (got + 1 < out_cap) {
    const char *end = strstr(out, "\r\n\r\n");
    if (end) {
      const char *length = strcasestr(out, "\r\nContent-Length:");
      size_t want = (size_t)(end + 4 - out) + (length ? strtoul(length + 17, NULL, 10) : 0);
      if (got >= want)
        return got;
    }
    long left = timeout_ms - ms_since(&start);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
      return 0;
    ssize_t n = read(fd, out + got, out_cap - 1 - got);
    if (n <= 0)
      return 0;
    got += (size_t)n;
    out[got] = '\0';
  }
  return 0;
}

bool raw_wait_closed(int fd, long timeout_ms) {
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  char sink[65536];
  for (;;) {
    long left = timeout_ms - ms_since(&start);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
      return false;
    ssize_t n = read(fd, sink, sizeof(sink));
    if (n <= 0)
      return true; /* EOF, or reset */
  }
}

size_t raw_read_all(int fd, char *out, size_t out_cap) {
  size_t got = 0;
  ssize_t n;
  while (got + 1 < out_cap && (n = read(fd, out + got, out_cap - 1 - got)) > 0)
    got += (size_t)n;
  out[got] = '\0';
  return got;
}

size_t raw_exchange(int port, const char *request, size_t len, char *out, size_t out_cap) {
  int fd = raw_send(port, request, len);
  size_t got = raw_read_all(fd, out, out_cap);
  close(fd);
  return got;
}

long proc_cpu_ms(pid_t pid) {
  char path[64], line[1024];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  FILE *file = fopen(path, "r");
  if (!file)
    return -1;
  bool read_line = fgets(line, sizeof(line), file) != NULL;
  fclose(file);
  /* "pid (comm) state ppid ...": comm may hold spaces, so fields are counted after its ')';
   * utime and stime are fields 14 and 15, in clock ticks. */
  char *after_comm = read_line ? strrchr(line, ')') : NULL;
  unsigned long utime = 0, stime = 0;
  if (!after_comm || sscanf(after_comm + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                            &utime, &stime) != 2)
    return -1;
  return (long)((utime + stime) * 1000 / (unsigned long)sysconf(_SC_CLK_TCK));
}

long proc_status_kb(pid_t pid, const char *field) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  size_t field_len = strlen(field);
  FILE *file = fopen(path, "r");
  long kb = -1;
  while (file && fgets(line, sizeof(line), file)) {
    if (strncmp(line, field, field_len) == 0 && line[field_len] == ':') {
      kb = strtol(line + field_len + 1, NULL, 10);
      break;
    }
  }
  if (file)
    fclose(file);
  return kb;
}

