/* clock: the daemon's time sources. CLOCK_MONOTONIC for durations, deadlines and schedules (it
 * never jumps); wall-clock seconds only for what is stored or shown (record.h's times).
 * (Issue 16 moves the older helpers here: upstream_monotonic_ms, quota_clock_ms, record_wall_now.) */
#ifndef FLIPCACHED_CLOCK_H
#define FLIPCACHED_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds. */
int64_t clock_monotonic_ms(void);

#endif
