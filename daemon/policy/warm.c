#include "warm.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "clock.h"
#include "flipcached.h"
#include "log.h"
#include "record.h"
#include "store.h"
#include "upstream.h"
#include "validate.h"

/* A run goes program by program; for each, one of these phases in turn. */
enum warm_phase {
  WARM_IDLE,      /* no run, or between two programs */
  WARM_FETCHING,  /* the list's request is out; on_list comes next */
  WARM_CHECKING,  /* the list arrived: checked in slices */
  WARM_STORING,   /* the list passed: stored in slices */
};

struct warm {
  struct flipcached *daemon;
  struct event *next_run;          /* the next scheduled run */
  struct event *slice;             /* the next slice of a check or of the stores (zero timeout) */
  bool running, stopped;
  bool ever_ran;
  struct program_list configured;  /* as at the last warm_configure, to see what a reload changed */
  struct program_list programs;    /* this run's, copied at its start: a reload does not shift it */
  unsigned program;                /* index of the program in hand */
  enum warm_phase phase;
  int64_t run_started_ms;          /* CLOCK_MONOTONIC */
  int64_t list_asked_at;           /* wall seconds: the list's request was sent then or later */
  int64_t list_started_ms;         /* for the log line's duration */
  char *body;                      /* the list's body, taken over from the upstream: one copy */
  size_t body_len;
  struct list_scan scan;           /* its check, then its spans */
  size_t next_store, stored, skipped_newer;
  uint64_t deletes_when_asked;     /* cache_deletes when the list was asked for: another since
                                      forbids storing the rest of it */
};

static const char *current_program(const struct warm *warm) {
  return warm->programs.ids[warm->program];
}

static void schedule(struct event *event, int64_t delay_ms) {
  struct timeval tv = clock_timeval_of_ms(delay_ms);
  if (event_add(event, &tv) != 0)
    log_error("warm: cannot schedule a timer");
}

/* Lets go of the list in hand (its body and spans). */
static void drop_list(struct warm *warm) {
  if (warm->phase == WARM_CHECKING || warm->phase == WARM_STORING)
    list_scan_end(&warm->scan);
  free(warm->body);
  warm->body = NULL;
  warm->body_len = 0;
  warm->phase = WARM_IDLE;
  if (warm->slice)
    event_del(warm->slice);
}

static void fetch_next_list(struct warm *warm);

/* The run ends: the next one is due `interval` after this one started (at once when it took
 * longer), or never with interval 0. */
static void end_run(struct warm *warm) {
  warm->running = false;
  unsigned interval = warm->daemon->cfg.warm_interval;
  if (warm->stopped || interval == 0 || warm->daemon->cfg.warm_programs.count == 0)
    return;
  int64_t due = warm->run_started_ms + (int64_t)interval * 1000 - clock_monotonic_ms();
  schedule(warm->next_run, due > 0 ? due : 0);
}

/* Lets go of the list in hand and asks for the next program's. */
static void next_program(struct warm *warm) {
  drop_list(warm);
  warm->program++;
  fetch_next_list(warm);
}

/* The list in hand failed (already logged): counted, and the run goes on. */
static void list_failed(struct warm *warm) {
  warm->daemon->stats.warm_failures++;
  next_program(warm);
}

static void on_list(const struct upstream_result *result, void *arg) {
  struct warm *warm = arg;
  const char *program = current_program(warm);
  if (warm->stopped || result->outcome == UPSTREAM_ABORTED) {
    warm->phase = WARM_IDLE;
    warm->running = false;
    return;
  }
  if (result->outcome != UPSTREAM_RESPONSE) {
    log_warning("warm: program %s: the list was not fetched: %s", program, result->error_text);
    list_failed(warm);
    return;
  }
  if (result->http_status != 200) {
    log_warning("warm: program %s: the list endpoint answered HTTP %ld; nothing stored", program,
                result->http_status);
    list_failed(warm);
    return;
  }
  /* Kept without a copy: the check and the stores read it in place over several turns. */
  warm->body_len = result->body_len;
  if (result->body_owner) {
    warm->body = *result->body_owner;
    *result->body_owner = NULL;
  }
  if (list_scan_begin(&warm->scan, warm->body ? warm->body : "", warm->body_len) != 0) {
    log_error("warm: program %s: out of memory", program);
    list_failed(warm);
    return;
  }
  warm->phase = WARM_CHECKING;
  schedule(warm->slice, 0);
}

/* Stores one element unless the cache holds a copy fetched after the list was asked for. */
static void store_element(struct warm *warm, const struct list_element *element, int64_t now) {
  struct flipcached *daemon = warm->daemon;
  struct cache_entry entry;
  if (cache_get_borrowed(daemon->cache, element->id, &entry) == CACHE_FOUND) {
    bool newer = entry.record.fetched_at > warm->list_asked_at;
    cache_entry_release(&entry);
    if (newer) {
      warm->skipped_newer++;
      return;
    }
  }
  /* Spread over the last tenth of ttl: fresh for ttl less 0 to ttl/10 seconds. */
  unsigned tenth = daemon->cfg.ttl / 10;
  unsigned sooner_by = tenth ? arc4random_uniform(tenth + 1) : 0;
  if (store_fetched(daemon, element->id, 200, warm->body + element->offset, element->len, now,
                    sooner_by)) {
    warm->stored++;
    daemon->stats.warm_stored++;
  }
}

static void store_slice(struct warm *warm) {
  const char *program = current_program(warm);
  if (cache_deletes(warm->daemon->cache) != warm->deletes_when_asked) {
    log_info("warm: program %s: an admin delete during the run; %zu entries of its list not stored",
             program, warm->scan.count - warm->next_store);
    next_program(warm);
    return;
  }
  int64_t now = clock_wall_seconds();
  size_t end = warm->next_store + WARM_STORE_BATCH;
  if (end > warm->scan.count)
    end = warm->scan.count;
  for (; warm->next_store < end; warm->next_store++)
    store_element(warm, &warm->scan.elements[warm->next_store], now);
  if (warm->next_store < warm->scan.count) {
    schedule(warm->slice, 0);
    return;
  }
  log_info("warm: program %s: %zu enrollments listed, %zu stored, %zu kept (fetched since), in "
           "%lld ms", program, warm->scan.count, warm->stored, warm->skipped_newer,
           (long long)(clock_monotonic_ms() - warm->list_started_ms));
  next_program(warm);
}

static void on_slice(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct warm *warm = arg;
  if (warm->phase == WARM_STORING) {
    store_slice(warm);
    return;
  }
  switch (list_scan_step(&warm->scan, WARM_CHECK_BATCH)) {
  case LIST_MORE:
    schedule(warm->slice, 0);
    return;
  case LIST_REFUSED:
    if (warm->scan.bad_index >= 0)
      log_warning("warm: program %s: list refused whole: element %ld: %s", current_program(warm),
                  warm->scan.bad_index, warm->scan.problem);
    else
      log_warning("warm: program %s: list refused whole: %s", current_program(warm),
                  warm->scan.problem);
    list_failed(warm);
    return;
  case LIST_DONE:
    warm->phase = WARM_STORING;
    warm->next_store = warm->stored = warm->skipped_newer = 0;
    store_slice(warm);
    return;
  }
}

static const char *refusal_text(enum upstream_start started) {
  switch (started) {
  case UPSTREAM_PAUSED:
    return "upstream paused by a 429";
  case UPSTREAM_CIRCUIT_OPEN:
    return "circuit open";
  case UPSTREAM_OVERLOADED:
    return "the background's queue for a fetch slot is full";
  default:
    return "could not start the transfer";
  }
}

/* Asks for the next program's list; programs whose request cannot be sent count as failures. */
static void fetch_next_list(struct warm *warm) {
  for (; warm->program < warm->programs.count; warm->program++) {
    warm->list_asked_at = clock_wall_seconds();
    warm->list_started_ms = clock_monotonic_ms();
    warm->deletes_when_asked = cache_deletes(warm->daemon->cache);
    warm->phase = WARM_FETCHING;
    enum upstream_start started = upstream_fetch_program(warm->daemon->upstream,
                                                         current_program(warm), on_list, warm);
    if (started == UPSTREAM_STARTED)
      return;
    warm->phase = WARM_IDLE;
    warm->daemon->stats.warm_failures++;
    log_warning("warm: program %s: the list was not asked for: %s", current_program(warm),
                refusal_text(started));
  }
  end_run(warm);
}

static void start_run(struct warm *warm) {
  warm->running = true;
  warm->ever_ran = true;
  warm->programs = warm->daemon->cfg.warm_programs;
  warm->program = 0;
  warm->run_started_ms = clock_monotonic_ms();
  warm->daemon->stats.warm_runs++;
  fetch_next_list(warm);
}

static void on_next_run(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  struct warm *warm = arg;
  if (!warm->running && !warm->stopped && warm->daemon->cfg.warm_programs.count > 0)
    start_run(warm);
}

struct warm *warm_new(struct flipcached *daemon) {
  struct warm *warm = calloc(1, sizeof(*warm));
  if (!warm)
    return NULL;
  warm->daemon = daemon;
  warm->next_run = evtimer_new(daemon->base, on_next_run, warm);
  warm->slice = evtimer_new(daemon->base, on_slice, warm);
  if (!warm->next_run || !warm->slice) {
    warm_free(warm);
    return NULL;
  }
  return warm;
}

void warm_configure(struct warm *warm) {
  const struct config *cfg = &warm->daemon->cfg;
  bool programs_changed = memcmp(&warm->configured, &cfg->warm_programs,
                                 sizeof(warm->configured)) != 0;
  warm->configured = cfg->warm_programs;
  if (warm->running || warm->stopped)
    return; /* the run's end schedules the next one under the new settings */
  event_del(warm->next_run);
  if (cfg->warm_programs.count == 0)
    return;
  if (programs_changed || !warm->ever_ran) {
    schedule(warm->next_run, 0);
  } else if (cfg->warm_interval > 0) {
    int64_t due = warm->run_started_ms + (int64_t)cfg->warm_interval * 1000 - clock_monotonic_ms();
    schedule(warm->next_run, due > 0 ? due : 0);
  }
}

enum warm_start warm_run_now(struct warm *warm) {
  if (warm->daemon->cfg.warm_programs.count == 0)
    return WARM_NOT_CONFIGURED;
  if (warm->running)
    return WARM_ALREADY_RUNNING;
  event_del(warm->next_run);
  start_run(warm);
  return WARM_STARTED;
}

bool warm_running(const struct warm *warm) { return warm->running; }

unsigned warm_program_count(const struct warm *warm) {
  return warm->daemon->cfg.warm_programs.count;
}

void warm_stop(struct warm *warm) {
  warm->stopped = true;
  event_del(warm->next_run);
  if (warm->phase != WARM_FETCHING) { /* a list in flight is dropped when it arrives */
    drop_list(warm);
    warm->running = false;
  }
}

void warm_free(struct warm *warm) {
  if (!warm)
    return;
  drop_list(warm);
  if (warm->next_run)
    event_free(warm->next_run);
  if (warm->slice)
    event_free(warm->slice);
  free(warm);
}
