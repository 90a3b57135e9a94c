/* access_log: the access log line ([log] access = yes), one info line per request answered. */
#ifndef FLIPCACHED_ACCESS_LOG_H
#define FLIPCACHED_ACCESS_LOG_H

/* Method, path (the query is left out: it is the client's data; at most 200 characters),
 * status, Cache-Status ("-" when NULL), milliseconds, and who asked (peer.h's "uid=N pid=N",
 * last, so that a reader of the line without it still finds every field where it was). Nothing
 * of the request's headers. */
void log_access(const char *method, const char *target, int status, const char *cache_status,
                double ms, const char *who);

#endif
