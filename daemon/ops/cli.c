#include "cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "stats.h"

struct text {
  char *data;
  size_t len;
};

static size_t on_data(char *data, size_t size, size_t count, void *arg) {
  struct text *text = arg;
  size_t len = size * count;
  char *grown = realloc(text->data, text->len + len + 1);
  if (!grown)
    return 0;
  text->data = grown;
  memcpy(text->data + text->len, data, len);
  text->len += len;
  text->data[text->len] = '\0';
  return len;
}

#define SOCKET_UNIT_PATH "/run/flipcached/http.sock" /* flipcached.socket's unix socket */
#define SOCKET_UNIT_TCP "http://127.0.0.1:8750"

/* Where to ask: a URL (and, for a unix socket, its path). */
struct target {
  char url[CONFIG_URL_MAX + 16];
  char unix_path[128]; /* empty: TCP */
};

/* From --url: a base URL ("http://127.0.0.1:8750", "/stats" appended), the /stats URL itself (the
 * older form), or unix:/PATH. */
static void target_of_url(const char *given, struct target *target) {
  memset(target, 0, sizeof(*target));
  if (strncmp(given, "unix:", 5) == 0) {
    snprintf(target->unix_path, sizeof(target->unix_path), "%s", given + 5);
    snprintf(target->url, sizeof(target->url), "http://localhost/stats");
    return;
  }
  size_t len = strlen(given);
  while (len > 0 && given[len - 1] == '/')
    len--;
  bool has_stats = len >= 6 && memcmp(given + len - 6, "/stats", 6) == 0;
  snprintf(target->url, sizeof(target->url), "%.*s%s", (int)len, given, has_stats ? "" : "/stats");
}

/* The first configured listener. */
static void target_of_listener(const struct listen_addr *addr, struct target *target) {
  memset(target, 0, sizeof(*target));
  if (addr->kind == LISTEN_UNIX) {
    snprintf(target->unix_path, sizeof(target->unix_path), "%s", addr->path);
    snprintf(target->url, sizeof(target->url), "http://localhost/stats");
  } else if (strchr(addr->host, ':')) {
    snprintf(target->url, sizeof(target->url), "http://[%s]:%u/stats", addr->host, addr->port);
  } else {
    snprintf(target->url, sizeof(target->url), "http://%s:%u/stats", addr->host, addr->port);
  }
}

static uint64_t number(json_object *root, const char *name) {
  json_object *value = NULL;
  return json_object_object_get_ex(root, name, &value) ? (uint64_t)json_object_get_int64(value) : 0;
}

static const char *breaker_name(uint64_t state) {
  return state == 0 ? "closed" : state == 1 ? "open" : state == 2 ? "half-open" : "?";
}

static const char *shared_state_name(uint64_t state) {
  return state == 0 ? "off" : state == 1 ? "up" : state == 2 ? "down" : "?";
}

static bool is_byte_count(const char *name) {
  size_t len = strlen(name);
  return len > 6 && strcmp(name + len - 6, "_bytes") == 0;
}

/* 1536 -> "1.5 KiB". */
static void human_bytes(uint64_t bytes, char *out, size_t out_len) {
  static const char *const UNITS[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = (double)bytes;
  size_t unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    unit++;
  }
  snprintf(out, out_len, unit ? "%.1f %s" : "%.0f %s", value, UNITS[unit]);
}

static void print_ratio_line(const char *label, uint64_t part, uint64_t whole) {
  printf("%-24s %6.1f%%  (%llu of %llu enrollment answers)\n", label,
         100.0 * (double)part / (double)whole, (unsigned long long)part, (unsigned long long)whole);
}

/* The hit ratio, honestly: answers from a fresh entry (hits and remembered 404s) apart from stale
 * copies, which are answers the upstream could not or did not yet refresh. */
static void print_table(json_object *root) {
  struct stats counted = {.hits = number(root, "hits"), .stale_served = number(root, "stale_served"),
                          .negative_hits = number(root, "negative_hits"),
                          .misses = number(root, "misses")};
  uint64_t answered, from_cache;
  stats_cache_share(&counted, &answered, &from_cache);
  uint64_t uptime = number(root, "uptime_seconds");
  json_object *version = NULL;
  json_object_object_get_ex(root, "version", &version);
  printf("flipcached %s, up %llud %02lluh %02llum\n", version ? json_object_get_string(version) : "?",
         (unsigned long long)(uptime / 86400), (unsigned long long)(uptime / 3600 % 24),
         (unsigned long long)(uptime / 60 % 60));
  if (answered) {
    print_ratio_line("hit ratio", from_cache, answered);
    print_ratio_line("  fresh", counted.hits + counted.negative_hits, answered);
    print_ratio_line("  stale", counted.stale_served, answered);
  } else {
    printf("%-24s %7s  (no enrollment request yet)\n", "hit ratio", "-");
  }
  /* A feature that is off has nothing to count: its rows are left out (--json has them all). */
  bool shared_off = number(root, "shared_state") == 0;
  unsigned hidden = 0;
  json_object_object_foreach(root, key, value) {
    if (shared_off && strncmp(key, "shared_", 7) == 0 && strcmp(key, "shared_state") != 0) {
      hidden++;
      continue;
    }
    if (strcmp(key, "shared_master") == 0 && json_object_get_string_len(value) > 0)
      printf("%-24s %16s\n", key, json_object_get_string(value));
    if (!json_object_is_type(value, json_type_int))
      continue;
    uint64_t n = (uint64_t)json_object_get_int64(value);
    char human[32];
    if (strcmp(key, "breaker_state") == 0) {
      printf("%-24s %16s\n", key, breaker_name(n));
    } else if (strcmp(key, "shared_state") == 0) {
      printf("%-24s %16s\n", key, shared_state_name(n));
    } else if (is_byte_count(key)) {
      human_bytes(n, human, sizeof(human));
      printf("%-24s %16s  (%llu)\n", key, human, (unsigned long long)n);
    } else {
      printf("%-24s %16llu\n", key, (unsigned long long)n);
    }
  }
  if (hidden)
    printf("(%u rows of the shared tier left out: it is off; --json prints every counter)\n",
           hidden);
}

/* GET target's /stats into body; the HTTP status, or 0 with *code set when nothing answered. */
static long fetch(const struct target *target, struct text *body, CURLcode *code) {
  CURL *easy = curl_easy_init();
  long http_status = 0;
  *code = CURLE_FAILED_INIT;
  if (!easy)
    return 0;
  curl_easy_setopt(easy, CURLOPT_URL, target->url);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, body);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_PROXY, ""); /* never through the environment's proxy */
  if (target->unix_path[0])
    curl_easy_setopt(easy, CURLOPT_UNIX_SOCKET_PATH, target->unix_path);
  *code = curl_easy_perform(easy);
  if (*code == CURLE_OK)
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http_status);
  curl_easy_cleanup(easy);
  return http_status;
}

static const char USAGE[] =
    "usage: " CLI_STATS_SYNOPSIS "\n"
    "  -c, --config FILE  the daemon's configuration (default " CONFIG_DEFAULT_PATH "); its first\n"
    "                     listener is asked, then flipcached.socket's (" SOCKET_UNIT_PATH ",\n"
    "                     " SOCKET_UNIT_TCP ")\n"
    "  -u, --url URL      the daemon's base URL (http://127.0.0.1:8750; /stats is added) or\n"
    "                     unix:/PATH\n"
    "  -j, --json         the counters as the daemon's JSON, unformatted\n"
    "  -h, --help         this text\n";

/* The command line: -1 to go on, else the exit status (help, or a usage error). */
struct stats_options {
  const char *config_path, *url;
  bool config_given, json;
};

static int read_options(int argc, char **argv, struct stats_options *options) {
  static const struct option OPTIONS[] = {
    {"config", required_argument, NULL, 'c'},
    {"url", required_argument, NULL, 'u'},
    {"json", no_argument, NULL, 'j'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
  };
  *options = (struct stats_options){.config_path = CONFIG_DEFAULT_PATH};
  int option;
  optind = 1;
  while ((option = getopt_long(argc, argv, "c:u:jh", OPTIONS, NULL)) != -1) {
    switch (option) {
    case 'c':
      options->config_path = optarg;
      options->config_given = true;
      break;
    case 'u':
      options->url = optarg;
      break;
    case 'j':
      options->json = true;
      break;
    case 'h':
      fputs(USAGE, stdout);
      return 0;
    default:
      fputs(USAGE, stderr);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "flipcached stats: unexpected argument '%s'\n%s", argv[optind], USAGE);
    return 2;
  }
  return -1;
}

/* Whom to ask, in order: --url alone; else the configured listener, then the socket unit's.
 * The count, or 0 when the configuration has errors (printed). */
static size_t choose_targets(const struct stats_options *options, struct target targets[3]) {
  if (options->url) {
    target_of_url(options->url, &targets[0]);
    return 1;
  }
  static struct config cfg;
  static struct config_errors errors;
  if (!options->config_given && access(options->config_path, F_OK) != 0 && errno == ENOENT) {
    config_defaults(&cfg);
  } else if (config_load(options->config_path, &cfg, &errors) != 0) {
    for (size_t i = 0; i < errors.count && i < CONFIG_MAX_ERRORS; i++)
      fprintf(stderr, "%s\n", errors.text[i]);
    return 0;
  }
  target_of_listener(&cfg.listen[0], &targets[0]);
  target_of_url("unix:" SOCKET_UNIT_PATH, &targets[1]);
  target_of_url(SOCKET_UNIT_TCP, &targets[2]);
  return 3;
}

/* Asks each target until one answers: its body, HTTP status and index in *asked; *code is the
 * last transfer's result (not CURLE_OK: none answered). */
static long ask_first_answering(const struct target *targets, size_t count, struct text *body,
                                CURLcode *code, size_t *asked) {
  long http_status = 0;
  *asked = 0;
  *code = CURLE_OK;
  for (size_t i = 0; i < count; i++) {
    free(body->data);
    *body = (struct text){0};
    http_status = fetch(&targets[i], body, code);
    if (*code == CURLE_OK) {
      *asked = i;
      break;
    }
  }
  return http_status;
}

int cli_stats(int argc, char **argv) {
  struct stats_options options;
  int early = read_options(argc, argv, &options);
  if (early >= 0)
    return early;
  struct target targets[3];
  size_t target_count = choose_targets(&options, targets);
  if (target_count == 0)
    return 1;
  struct text body = {0};
  CURLcode code;
  size_t asked;
  long http_status = ask_first_answering(targets, target_count, &body, &code, &asked);
  int status = 1;
  json_object *root = body.data && http_status == 200 ? json_tokener_parse(body.data) : NULL;
  if (code != CURLE_OK) {
    for (size_t i = 0; i < target_count; i++) /* each one asked, and why none answered */
      fprintf(stderr, "flipcached stats: %s%s%s: %s\n", targets[i].unix_path,
              targets[i].unix_path[0] ? " " : "", targets[i].url,
              i + 1 == target_count ? curl_easy_strerror(code) : "no answer");
  } else if (!root || !json_object_is_type(root, json_type_object)) {
    fprintf(stderr, "flipcached stats: %s answered HTTP %ld without the counters\n",
            targets[asked].url, http_status);
  } else {
    if (options.json)
      printf("%s\n", body.data);
    else
      print_table(root);
    status = 0;
  }
  json_object_put(root);
  free(body.data);
  return status;
}
