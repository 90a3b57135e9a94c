/* stats: /stats JSON carries the documented fields; /metrics is Prometheus text. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

Test(stats, json_has_every_documented_field) {
  struct stats stats = {.requests_total = 7, .hits = 3, .misses = 2, .upstream_requests = 2};
  struct stats_gauges gauges = {.uptime_seconds = 12, .inflight = 1, .cache_entries = 2,
                                .cache_bytes = 8192};
  char *text = stats_render_json(&stats, &gauges);
  json_object *root = json_tokener_parse(text);
  cr_assert_not_null(root, "%s", text);
  const char *fields[] = {"uptime_seconds", "requests_total", "hits", "misses", "stale_served",
                          "negative_hits", "coalesced", "upstream_requests", "upstream_errors",
                          "inflight", "cache_entries", "cache_bytes", "evictions"};
  for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
    json_object *value;
    cr_expect(json_object_object_get_ex(root, fields[i], &value), "missing %s", fields[i]);
  }
  json_object *value;
  cr_assert(json_object_object_get_ex(root, "hits", &value));
  cr_expect_eq(json_object_get_int64(value), 3);
  cr_assert(json_object_object_get_ex(root, "uptime_seconds", &value));
  cr_expect_eq(json_object_get_int64(value), 12);
  cr_assert(json_object_object_get_ex(root, "version", &value));
  cr_expect_str_eq(json_object_get_string(value), FLIPCACHED_VERSION);
  json_object_put(root);
  free(text);
}

/* docs/stats.md describes every field /stats sends, each named in backquotes in its table. */
Test(stats, every_field_is_described_in_docs_stats_md) {
  FILE *file = fopen(SOURCE_DIR "/docs/stats.md", "r");
  cr_assert_not_null(file);
  static char doc[1 << 16];
  size_t len = fread(doc, 1, sizeof(doc) - 1, file);
  doc[len] = '\0';
  fclose(file);
  struct stats stats = {0};
  struct stats_gauges gauges = {0};
  char *text = stats_render_json(&stats, &gauges);
  json_object *root = json_tokener_parse(text);
  cr_assert_not_null(root);
  size_t fields = 0;
  json_object_object_foreach(root, key, value) {
    (void)value;
    char quoted[96];
    snprintf(quoted, sizeof(quoted), "`%s`", key);
    cr_expect(strstr(doc, quoted) != NULL, "docs/stats.md does not describe %s", key);
    fields++;
  }
  cr_expect_gt(fields, 50);
  json_object_put(root);
  free(text);
}

Test(stats, prometheus_counters_end_in_total_and_have_help_and_type) {
  struct stats stats = {.requests_total = 5, .hits = 4};
  struct stats_gauges gauges = {.cache_entries = 9, .cache_syncs = 3};
  char *text = stats_render_prometheus(&stats, &gauges);
  cr_expect(strstr(text, "# TYPE flipcached_cache_syncs_total counter\nflipcached_cache_syncs_total 3\n") != NULL,
            "a counter sampled at render time is still a counter");
  cr_expect(strstr(text, "# HELP flipcached_hits_total ") != NULL);
  cr_expect(strstr(text, "# TYPE flipcached_hits_total counter\nflipcached_hits_total 4\n") != NULL);
  cr_expect(strstr(text, "# TYPE flipcached_requests_total counter\nflipcached_requests_total 5\n") != NULL,
            "requests_total is not suffixed twice");
  cr_expect(strstr(text, "# TYPE flipcached_cache_entries gauge\nflipcached_cache_entries 9\n") != NULL);
  cr_expect(strstr(text, "_total_total") == NULL);
  free(text);
}

Test(stats, the_latency_histogram_is_cumulative_with_sum_and_count) {
  struct stats stats = {0};
  struct stats_gauges gauges = {0};
  stats_observe_upstream_latency(&stats, 0.003);  /* le 0.005 */
  stats_observe_upstream_latency(&stats, 0.2);    /* le 0.25 */
  stats_observe_upstream_latency(&stats, 0.25);   /* le 0.25: bounds are inclusive */
  stats_observe_upstream_latency(&stats, 99);     /* +Inf only */
  char *text = stats_render_prometheus(&stats, &gauges);
  const char *name = "flipcached_upstream_request_duration_seconds";
  char line[160];
  snprintf(line, sizeof(line), "# TYPE %s histogram\n", name);
  cr_expect(strstr(text, line) != NULL, "%s", text);
  snprintf(line, sizeof(line), "%s_bucket{le=\"0.005\"} 1\n", name);
  cr_expect(strstr(text, line) != NULL, "%s", text);
  snprintf(line, sizeof(line), "%s_bucket{le=\"0.1\"} 1\n", name);
  cr_expect(strstr(text, line) != NULL);
  snprintf(line, sizeof(line), "%s_bucket{le=\"0.25\"} 3\n", name);
  cr_expect(strstr(text, line) != NULL);
  snprintf(line, sizeof(line), "%s_bucket{le=\"30\"} 3\n", name);
  cr_expect(strstr(text, line) != NULL);
  snprintf(line, sizeof(line), "%s_bucket{le=\"+Inf\"} 4\n", name);
  cr_expect(strstr(text, line) != NULL);
  snprintf(line, sizeof(line), "%s_count 4\n", name);
  cr_expect(strstr(text, line) != NULL);
  snprintf(line, sizeof(line), "%s_sum 99.453000\n", name);
  cr_expect(strstr(text, line) != NULL, "%s", text);
  free(text);
}

Test(stats, the_cache_share_counts_every_answered_enrollment_but_misses_as_from_the_cache) {
  struct stats stats = {.hits = 5, .stale_served = 2, .negative_hits = 1, .misses = 4,
                        .coalesced = 3, .invalid_requests = 9};
  uint64_t answered = 0, from_cache = 0;
  stats_cache_share(&stats, &answered, &from_cache);
  cr_expect_eq(answered, 12);
  cr_expect_eq(from_cache, 8);
}
