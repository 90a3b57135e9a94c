#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static enum log_level current_level = LOG_LEVEL_INFO;

static struct {
  const char *text;
  size_t len;
} secrets[LOG_MAX_SECRETS];

static const struct {
  const char *name;
  int syslog_priority; /* journald's <N> prefix */
} LEVELS[] = {
  [LOG_LEVEL_ERROR] = {"error", 3},
  [LOG_LEVEL_WARNING] = {"warning", 4},
  [LOG_LEVEL_INFO] = {"info", 6},
  [LOG_LEVEL_DEBUG] = {"debug", 7},
};

void log_set_level(enum log_level level) { current_level = level; }

bool log_enabled(enum log_level level) { return level <= current_level; }

bool log_level_from_name(const char *name, enum log_level *level) {
  for (size_t i = 0; i < sizeof(LEVELS) / sizeof(LEVELS[0]); i++) {
    if (strcmp(name, LEVELS[i].name) == 0) {
      *level = (enum log_level)i;
      return true;
    }
  }
  return false;
}

bool log_add_secret(const char *secret, size_t len) {
  if (!secret || len == 0)
    return true;
  for (size_t i = 0; i < LOG_MAX_SECRETS; i++) {
    if (!secrets[i].text) {
      secrets[i].text = secret;
      secrets[i].len = len;
      return true;
    }
  }
  return false;
}

void log_remove_secret(const char *secret) {
  for (size_t i = 0; i < LOG_MAX_SECRETS; i++) {
    if (secrets[i].text == secret) {
      secrets[i].text = NULL;
      secrets[i].len = 0;
    }
  }
}

/* Copies line into out (out_len bytes, NUL-terminated, truncated if need be) with every
 * occurrence of every registered secret replaced by "[REDACTED]". */
static void scrub_secrets(const char *line, char *out, size_t out_len) {
  static const char REDACTED[] = "[REDACTED]";
  size_t used = 0;
  while (*line && used + 1 < out_len) {
    size_t matched = 0;
    for (size_t i = 0; i < LOG_MAX_SECRETS && !matched; i++) {
      if (secrets[i].text && strncmp(line, secrets[i].text, secrets[i].len) == 0)
        matched = secrets[i].len;
    }
    if (matched) {
      size_t room = out_len - 1 - used;
      size_t n = sizeof(REDACTED) - 1 < room ? sizeof(REDACTED) - 1 : room;
      memcpy(out + used, REDACTED, n);
      used += n;
      line += matched;
    } else {
      out[used++] = *line++;
    }
  }
  out[used] = '\0';
}

/* Writes one line; the message as written (scrubbed, one line) into written[written_len] when
 * written is not NULL, truncated with "..." if it is longer. */
__attribute__((format(printf, 2, 0))) static void log_vmsg_written(enum log_level level,
                                                                const char *fmt, va_list ap,
                                                                char *written, size_t written_len) {
  char raw[LOG_LINE_MAX], message[LOG_LINE_MAX];
  vsnprintf(raw, sizeof(raw), fmt, ap);
  /* One line per event: a newline inside a message would forge a second log line. */
  for (char *p = raw; *p; p++) {
    if (*p == '\n' || *p == '\r')
      *p = ' ';
  }
  scrub_secrets(raw, message, sizeof(message));
  if (written) {
    size_t len = strlen(message);
    if (len < written_len)
      memcpy(written, message, len + 1);
    else
      snprintf(written, written_len, "%.*s...", (int)(written_len - 4), message);
  }

  char line[LOG_LINE_MAX + 64];
  int len;
  if (getenv("JOURNAL_STREAM")) {
    len = snprintf(line, sizeof(line), "<%d>%s\n", LEVELS[level].syslog_priority, message);
  } else {
    char stamp[32];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    len = snprintf(line, sizeof(line), "%s.%03ldZ flipcached[%ld] %s: %s\n", stamp,
                   now.tv_nsec / 1000000L, (long)getpid(), LEVELS[level].name, message);
  }
  if (len > 0) {
    size_t n = (size_t)len < sizeof(line) ? (size_t)len : sizeof(line) - 1;
    /* One write per line so that lines from concurrent writers never interleave. */
    ssize_t wrote = write(STDERR_FILENO, line, n);
    (void)wrote;
  }
}

__attribute__((format(printf, 2, 0))) static void log_vmsg(enum log_level level,
                                                        const char *fmt, va_list ap) {
  log_vmsg_written(level, fmt, ap, NULL, 0);
}

void log_msg(enum log_level level, const char *fmt, ...) {
  if (!log_enabled(level))
    return;
  va_list ap;
  va_start(ap, fmt);
  log_vmsg(level, fmt, ap);
  va_end(ap);
}

static long monotonic_seconds(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (long)now.tv_sec;
}

static long (*limit_clock)(void) = monotonic_seconds;
static struct log_limit *limits; /* every limit that ever logged; the loop's thread only */

void log_set_limit_clock(long (*seconds)(void)) {
  limit_clock = seconds ? seconds : monotonic_seconds;
}

static void report_suppressed(struct log_limit *limit) {
  if (limit->suppressed == 0)
    return;
  log_msg(limit->level, "%lu more line%s like \"%s\" suppressed (at most one a second)",
          limit->suppressed, limit->suppressed == 1 ? "" : "s", limit->example);
  limit->suppressed = 0;
}

void log_limited(struct log_limit *limit, enum log_level level, const char *fmt, ...) {
  if (!log_enabled(level))
    return;
  long now = limit_clock();
  if (!limit->registered) {
    limit->registered = true;
    limit->level = level;
    limit->second = now - 1;
    limit->next = limits;
    limits = limit;
  }
  if (limit->second == now) {
    limit->suppressed++;
    return;
  }
  report_suppressed(limit);
  limit->second = now;
  va_list ap;
  va_start(ap, fmt);
  log_vmsg_written(level, fmt, ap, limit->example, sizeof(limit->example));
  va_end(ap);
}

void log_flush_suppressed(void) {
  long now = limit_clock();
  for (struct log_limit *limit = limits; limit; limit = limit->next) {
    if (limit->second != now)
      report_suppressed(limit);
  }
}

