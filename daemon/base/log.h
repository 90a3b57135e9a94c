/* log: leveled lines to stderr, one line per event.
 *
 * When JOURNAL_STREAM is set (stderr is connected to journald) each line starts with its syslog
 * priority ("<3>") and carries no timestamp, since the journal adds one. Secrets registered with
 * log_add_secret are replaced by "[REDACTED]" in every line before it is written: the credential
 * is never passed to the logger on purpose, and this keeps a future mistake from leaking it. */
#ifndef FLIPCACHED_LOG_H
#define FLIPCACHED_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARNING, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);
/* "error", "warning", "info", "debug" -> level; returns false for anything else. */
bool log_level_from_name(const char *name, enum log_level *level);

/* Registers a secret to scrub from every line; the pointer must stay valid until
 * log_remove_secret(secret). At most LOG_MAX_SECRETS at once; returns false beyond. */
#define LOG_MAX_SECRETS 4
bool log_add_secret(const char *secret, size_t len);
void log_remove_secret(const char *secret);

__attribute__((format(printf, 2, 3))) void log_msg(enum log_level level, const char *fmt, ...);

/* A call site's rate limit: at most one line a second; the lines past it are counted and
 * reported in one line ('N more lines like "<the last written>" suppressed') when the kind next
 * logs after that second, or at the next log_flush_suppressed. Static, one per call site (log_limited's macros). */
struct log_limit {
  char example[120];      /* the last line written, as written (truncated with "..."): the
                             suppression line names the lines it counts by it */
  enum log_level level;
  long second;            /* the clock's second of the last line written */
  unsigned long suppressed;
  bool registered;
  struct log_limit *next; /* every limit that ever logged, for log_flush_suppressed */
};

__attribute__((format(printf, 3, 4))) void log_limited(struct log_limit *limit,
                                                       enum log_level level, const char *fmt, ...);
/* Writes the suppression line of every kind whose second has passed. From a periodic timer. */
void log_flush_suppressed(void);

/* For tests: the clock of the rate limits (CLOCK_MONOTONIC seconds by default); NULL restores. */
void log_set_limit_clock(long (*seconds)(void));

#define log_warning_limited(...)                                                                   \
  do {                                                                                             \
    static struct log_limit log_limit_;                                                            \
    log_limited(&log_limit_, LOG_LEVEL_WARNING, __VA_ARGS__);                                      \
  } while (0)

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
  do {                                                                                             \
    if (log_enabled(LOG_LEVEL_DEBUG))                                                              \
      log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__);                                                       \
  } while (0)

#endif
