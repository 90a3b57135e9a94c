/* clock: the daemon's one module of time. CLOCK_MONOTONIC for durations, deadlines and schedules
 * (it never jumps); its coarse variant where a tick of a few milliseconds is enough and the call
 * must cost nothing (per request, per quota check); wall-clock seconds only for what is stored
 * or shown (record.h's times, which must survive a restart). */
#ifndef FLIPCACHED_CLOCK_H
#define FLIPCACHED_CLOCK_H

#include <stdint.h>
#include <sys/time.h>

/* CLOCK_MONOTONIC in milliseconds. */
int64_t clock_monotonic_ms(void);
/* CLOCK_MONOTONIC_COARSE in milliseconds (a tick of about 4 ms, read without a syscall). */
int64_t clock_coarse_ms(void);
/* CLOCK_REALTIME in whole seconds: the clock of the cache records' times. */
int64_t clock_wall_seconds(void);
/* A libevent timeout of ms milliseconds (ms >= 0). */
struct timeval clock_timeval_of_ms(int64_t ms);

#endif
