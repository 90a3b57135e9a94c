/* admin: the /cache routes (front_routes; arg is the struct flipcached), reached only by peers
 * with the admin right (front.c). Each answers its request at once. */
#ifndef FLIPCACHED_ADMIN_H
#define FLIPCACHED_ADMIN_H

struct client_request;

void admin_cache_inspect(struct client_request *request, const char *enrollment_id, void *arg);
void admin_cache_delete(struct client_request *request, const char *enrollment_id, void *arg);
void admin_cache_purge(struct client_request *request, void *arg);
void admin_cache_list(struct client_request *request, const char *query, void *arg);
void admin_cache_warm(struct client_request *request, void *arg);

#endif
