#include "llhttp_oracle.h"

#include <llhttp.h>
#include <stdlib.h>
#include <string.h>

struct judging {
  struct llhttp_verdict *out;
};

static int on_url(llhttp_t *parser, const char *at, size_t length) {
  struct llhttp_verdict *out = ((struct judging *)parser->data)->out;
  if (out->url_len + length > HTTP1_MAX_HEAD)
    return HPE_USER;
  memcpy(out->url + out->url_len, at, length);
  out->url_len += length;
  out->url[out->url_len] = '\0';
  return 0;
}

static int on_headers_complete(llhttp_t *parser) {
  struct llhttp_verdict *out = ((struct judging *)parser->data)->out;
  out->head_complete = true;
  out->body = (parser->flags & F_CHUNKED) || (parser->flags & F_TRANSFER_ENCODING) ||
              ((parser->flags & F_CONTENT_LENGTH) && parser->content_length > 0);
  const char *name = llhttp_method_name((llhttp_method_t)parser->method);
  strncpy(out->method, name ? name : "?", sizeof(out->method) - 1);
  out->major = parser->http_major;
  out->minor = parser->http_minor;
  return HPE_PAUSED; /* the head is what is judged: stop here */
}

void llhttp_judge(const char *data, size_t len, struct llhttp_verdict *out) {
  memset(out, 0, sizeof(*out));
  llhttp_settings_t settings;
  llhttp_settings_init(&settings);
  settings.on_url = on_url;
  settings.on_headers_complete = on_headers_complete;
  llhttp_t parser;
  llhttp_init(&parser, HTTP_REQUEST, &settings);
  struct judging judging = {.out = out};
  parser.data = &judging;
  llhttp_errno_t result = llhttp_execute(&parser, data, len);
  if (out->head_complete)
    return;
  if (result != HPE_OK && result != HPE_PAUSED) {
    out->rejected = true;
    out->reason = llhttp_get_error_reason(&parser);
    if (!out->reason)
      out->reason = llhttp_errno_name(result);
  }
}

const char *llhttp_disagreement(const char *data, size_t len, bool *flipcached_accepted,
                                struct llhttp_verdict *verdict) {
  char *buf = malloc(len ? len : 1);
  if (!buf)
    abort();
  memcpy(buf, data, len);
  size_t scanned = 0;
  struct http1_request request;
  int status = 0;
  enum http1_result result = http1_parse(buf, len, &scanned, &request, &status);
  /* A head that announces a body, or names a method no route knows, is answered (400, 501) and
   * its connection closed: a refusal, as a malformed head is. */
  *flipcached_accepted =
      result == HTTP1_COMPLETE && !request.carries_body && request.method != HTTP1_UNKNOWN;
  const char *why = NULL;
  if (!*flipcached_accepted) {
    /* Refused, or waiting for more: llhttp is asked nothing. A complete head flipcached refuses
     * is as strict as can be. */
    llhttp_judge(data, len, verdict);
  } else {
    /* Only the head flipcached took: what follows it is the next request's. */
    llhttp_judge(data, request.head_len, verdict);
    if (verdict->rejected)
      why = "flipcached accepted a head that llhttp's strict mode rejects";
    else if (!verdict->head_complete)
      why = "flipcached accepted a head that llhttp does not see end";
    else if (verdict->body)
      why = "llhttp expects a body after a head flipcached takes as bodiless (smuggling)";
    else if (strcmp(verdict->method, http1_method_name(request.method)) != 0)
      why = "the method is read differently";
    else if (verdict->url_len != request.raw_target_len ||
             memcmp(verdict->url, request.raw_target, request.raw_target_len) != 0)
      why = "the request-target is read differently";
    else if (verdict->major != 1 || verdict->minor != request.version_minor)
      why = "the version is read differently";
  }
  free(buf);
  return why;
}
