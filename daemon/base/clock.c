#include "clock.h"

#include <time.h>

static int64_t ms_of(clockid_t clock) {
  struct timespec now;
  clock_gettime(clock, &now);
  return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int64_t clock_monotonic_ms(void) { return ms_of(CLOCK_MONOTONIC); }

int64_t clock_coarse_ms(void) { return ms_of(CLOCK_MONOTONIC_COARSE); }

int64_t clock_wall_seconds(void) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return (int64_t)now.tv_sec;
}

struct timeval clock_timeval_of_ms(int64_t ms) {
  return (struct timeval){.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
}
