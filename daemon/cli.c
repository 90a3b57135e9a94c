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

/* The URL of /stats on the first configured listener (and the unix socket's path, if it is one). */
static void stats_url_of(const struct config *cfg, char *url, size_t url_len, const char **unix_path) {
  const struct listen_addr *addr = &cfg->listen[0];
  *unix_path = NULL;
  if (addr->kind == LISTEN_UNIX) {
    *unix_path = addr->path;
    snprintf(url, url_len, "http://localhost/stats");
  } else if (strchr(addr->host, ':')) {
    snprintf(url, url_len, "http://[%s]:%u/stats", addr->host, addr->port);
  } else {
    snprintf(url, url_len, "http://%s:%u/stats", addr->host, addr->port);
  }
}

static uint64_t number(json_object *root, const char *name) {
  json_object *value = NULL;
  return json_object_object_get_ex(root, name, &value) ? (uint64_t)json_object_get_int64(value) : 0;
}

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
  if (answered)
    printf("%-24s %6.1f%%  (%llu of %llu enrollment answers from the cache)\n", "hit ratio",
           100.0 * (double)from_cache / (double)answered, (unsigned long long)from_cache,
           (unsigned long long)answered);
  else
    printf("%-24s %7s  (no enrollment request yet)\n", "hit ratio", "-");
  json_object_object_foreach(root, key, value) {
    if (json_object_is_type(value, json_type_int))
      printf("%-24s %16llu\n", key, (unsigned long long)json_object_get_int64(value));
  }
}

int cli_stats(int argc, char **argv) {
  static const struct option OPTIONS[] = {
    {"config", required_argument, NULL, 'c'},
    {"url", required_argument, NULL, 'u'},
    {NULL, 0, NULL, 0},
  };
  const char *config_path = CONFIG_DEFAULT_PATH, *url_given = NULL;
  bool config_given = false;
  int option;
  optind = 1;
  while ((option = getopt_long(argc, argv, "c:u:", OPTIONS, NULL)) != -1) {
    if (option == 'c') {
      config_path = optarg;
      config_given = true;
    } else if (option == 'u') {
      url_given = optarg;
    } else {
      fprintf(stderr, "usage: flipcached stats [-c FILE] [--url URL]\n");
      return 2;
    }
  }
  static struct config cfg;
  static struct config_errors errors;
  if (!config_given && access(config_path, F_OK) != 0 && errno == ENOENT) {
    config_defaults(&cfg);
  } else if (config_load(config_path, &cfg, &errors) != 0) {
    for (size_t i = 0; i < errors.count && i < CONFIG_MAX_ERRORS; i++)
      fprintf(stderr, "%s\n", errors.text[i]);
    return 1;
  }
  char url[CONFIG_URL_MAX];
  const char *unix_path = NULL;
  if (url_given)
    snprintf(url, sizeof(url), "%s", url_given);
  else
    stats_url_of(&cfg, url, sizeof(url), &unix_path);

  int status = 1;
  struct text body = {0};
  CURL *easy = curl_easy_init();
  long http_status = 0;
  if (!easy)
    return 1;
  curl_easy_setopt(easy, CURLOPT_URL, url);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  if (unix_path)
    curl_easy_setopt(easy, CURLOPT_UNIX_SOCKET_PATH, unix_path);
  CURLcode code = curl_easy_perform(easy);
  if (code == CURLE_OK)
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http_status);
  json_object *root = body.data && http_status == 200 ? json_tokener_parse(body.data) : NULL;
  if (code != CURLE_OK) {
    fprintf(stderr, "flipcached stats: %s%s%s: %s\n", unix_path ? unix_path : "", unix_path ? " " : "",
            url, curl_easy_strerror(code));
  } else if (!root || !json_object_is_type(root, json_type_object)) {
    fprintf(stderr, "flipcached stats: %s answered HTTP %ld without the counters\n", url, http_status);
  } else {
    print_table(root);
    status = 0;
  }
  json_object_put(root);
  free(body.data);
  curl_easy_cleanup(easy);
  return status;
}
