/* enrollment: the policy of GET/HEAD /v1/enrollments/{id} (enrollment.c's opening comment says
 * what is served, fetched, coalesced and stored), and refresh-ahead's schedule on the loop. */
#ifndef FLIPCACHED_ENROLLMENT_H
#define FLIPCACHED_ENROLLMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct client_request;
struct flipcached;

/* The enrollment route (front_routes); arg is the struct flipcached. enrollment_id is NULL when
 * the id is not a UUID. Answers the request exactly once, now or when its fetch ends. */
void enrollment_handle(struct client_request *request, const char *enrollment_id, void *arg);
/* Refresh-ahead's schedule (refresh_schedule.h) and its timer on the loop: 0 or -1 (out of memory). */
int enrollment_start_schedule(struct flipcached *daemon);
void enrollment_stop_schedule(struct flipcached *daemon);
/* Drops one id's local copy, and keeps any fetch in progress from storing it again (an admin
 * DELETE here, or another host's purge through the shared tier); a warm-up in progress learns of
 * it from the cache (cache_deletes). 0, or -1 with err. */
int enrollment_forget(struct flipcached *daemon, const char *enrollment_id, bool *found,
                      char *err, size_t err_len);
/* The same for every entry (DELETE /cache, or another host's purge-all). */
int enrollment_forget_all(struct flipcached *daemon, uint64_t *removed, char *err, size_t err_len);

#endif
