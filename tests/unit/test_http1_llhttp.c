/* The request-head parser against llhttp (Node.js's parser, strict mode, built from Debian's
 * node-llhttp sources) as the oracle: every head in this table that llhttp rejects, flipcached
 * rejects too, and a head both take is read alike (llhttp_oracle.h). The table holds every
 * request-smuggling and desync shape we know, each with what flipcached must do with it, and
 * the valid forms both must take. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#include "llhttp_oracle.h"

enum expect { SERVE, REFUSE };

struct head_case {
  char name[48];
  char text[200];
  size_t len; /* 0: strlen */
  enum expect flipcached;
};

#define H "Host: localhost\r\n"

ParameterizedTestParameters(llhttp, every_head_llhttp_rejects_flipcached_rejects) {
  static struct head_case cases[] = {
    /* valid forms: both take them */
    {"plain GET", "GET /healthz HTTP/1.1\r\n" H "\r\n", 0, SERVE},
    {"HEAD", "HEAD /stats HTTP/1.1\r\n" H "\r\n", 0, SERVE},
    {"HTTP/1.0 without Host", "GET /stats HTTP/1.0\r\n\r\n", 0, SERVE},
    {"keep-alive 1.0", "GET /stats HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0, SERVE},
    {"a query", "GET /cache?limit=5&after=x HTTP/1.1\r\n" H "\r\n", 0, SERVE},
    {"absolute-form", "GET http://localhost/healthz HTTP/1.1\r\n" H "\r\n", 0, SERVE},
    {"absolute-form with port", "GET http://127.0.0.1:8750/stats HTTP/1.1\r\n" H "\r\n", 0, SERVE},
    {"Content-Length: 0", "GET / HTTP/1.1\r\n" H "Content-Length: 0\r\n\r\n", 0, SERVE},
    {"tab in a value", "GET / HTTP/1.1\r\n" H "X-A: a\tb\r\n\r\n", 0, SERVE},
    {"empty value", "GET / HTTP/1.1\r\n" H "X-A:\r\n\r\n", 0, SERVE},
    {"obs-text in a value", "GET / HTTP/1.1\r\n" H "X-A: caf\xc3\xa9\r\n\r\n", 0, SERVE},
    {"blank line first", "\r\nGET / HTTP/1.1\r\n" H "\r\n", 0, SERVE},
    {"DELETE", "DELETE /cache HTTP/1.1\r\n" H "\r\n", 0, SERVE},
    {"OPTIONS preflight", "OPTIONS /v1/enrollments/x HTTP/1.1\r\n" H
     "Origin: http://localhost:3000\r\nAccess-Control-Request-Method: GET\r\n\r\n", 0, SERVE},
    /* framing: anything announcing a body, every way of saying it twice or oddly */
    {"CL and TE", "GET / HTTP/1.1\r\n" H "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 0, REFUSE},
    {"TE and CL", "GET / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 0, REFUSE},
    {"TE chunked", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n", 0, REFUSE},
    {"TE chunked, identity", "GET / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, identity\r\n\r\n", 0, REFUSE},
    {"TE identity", "GET / HTTP/1.1\r\n" H "Transfer-Encoding: identity\r\n\r\n", 0, REFUSE},
    {"TE xchunked", "GET / HTTP/1.1\r\n" H "Transfer-Encoding: xchunked\r\n\r\n", 0, REFUSE},
    {"TE twice", "GET / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n", 0, REFUSE},
    {"TE with a space before the colon", "GET / HTTP/1.1\r\n" H "Transfer-Encoding : chunked\r\n\r\n", 0, REFUSE},
    {"TE with a tab before the colon", "GET / HTTP/1.1\r\n" H "Transfer-Encoding\t: chunked\r\n\r\n", 0, REFUSE},
    {"TE folded", "GET / HTTP/1.1\r\n" H "Transfer-Encoding:\r\n chunked\r\n\r\n", 0, REFUSE},
    {"TE with a vertical tab", "GET / HTTP/1.1\r\n" H "Transfer-Encoding:\x0b" "chunked\r\n\r\n", 0, REFUSE},
    {"TE name with NUL", "GET / HTTP/1.1\r\n" H "Transfer-Encoding\0: chunked\r\n\r\n", 64, REFUSE},
    {"CL 5", "GET / HTTP/1.1\r\n" H "Content-Length: 5\r\n\r\n", 0, REFUSE},
    {"CL twice, equal", "GET / HTTP/1.1\r\n" H "Content-Length: 0\r\nContent-Length: 0\r\n\r\n", 0, REFUSE},
    {"CL twice, different", "GET / HTTP/1.1\r\n" H "Content-Length: 0\r\nContent-Length: 5\r\n\r\n", 0, REFUSE},
    {"CL list", "GET / HTTP/1.1\r\n" H "Content-Length: 0, 5\r\n\r\n", 0, REFUSE},
    {"CL plus", "GET / HTTP/1.1\r\n" H "Content-Length: +0\r\n\r\n", 0, REFUSE},
    {"CL minus", "GET / HTTP/1.1\r\n" H "Content-Length: -1\r\n\r\n", 0, REFUSE},
    {"CL hex", "GET / HTTP/1.1\r\n" H "Content-Length: 0x5\r\n\r\n", 0, REFUSE},
    {"CL empty", "GET / HTTP/1.1\r\n" H "Content-Length:\r\n\r\n", 0, REFUSE},
    {"CL inner space", "GET / HTTP/1.1\r\n" H "Content-Length: 1 0\r\n\r\n", 0, REFUSE},
    {"CL space before the colon", "GET / HTTP/1.1\r\n" H "Content-Length : 5\r\n\r\n", 0, REFUSE},
    {"CL huge", "GET / HTTP/1.1\r\n" H "Content-Length: 99999999999999999999999\r\n\r\n", 0, REFUSE},
    {"CL folded", "GET / HTTP/1.1\r\n" H "Content-Length:\r\n 5\r\n\r\n", 0, REFUSE},
    /* line endings */
    {"bare LF everywhere", "GET / HTTP/1.1\n" H "\n", 0, REFUSE},
    {"bare LF after the request line", "GET / HTTP/1.1\nHost: localhost\r\n\r\n", 0, REFUSE},
    {"bare LF in a field", "GET / HTTP/1.1\r\nHost: localhost\nX-A: b\r\n\r\n", 0, REFUSE},
    {"bare CR in a value", "GET / HTTP/1.1\r\n" H "X-A: a\rb\r\n\r\n", 0, REFUSE},
    {"bare CR ends a line", "GET / HTTP/1.1\r" H "\r\n", 0, REFUSE},
    {"CR CR LF", "GET / HTTP/1.1\r\r\n" H "\r\n", 0, REFUSE},
    {"LF CR LF at the end", "GET / HTTP/1.1\r\nHost: localhost\n\r\n", 0, REFUSE},
    /* field names and values */
    {"obs-fold", "GET / HTTP/1.1\r\n" H "X-A: a\r\n b\r\n\r\n", 0, REFUSE},
    {"obs-fold with a tab", "GET / HTTP/1.1\r\n" H "X-A: a\r\n\tb\r\n\r\n", 0, REFUSE},
    {"space before a colon", "GET / HTTP/1.1\r\n" H "X-A : b\r\n\r\n", 0, REFUSE},
    {"space in a name", "GET / HTTP/1.1\r\n" H "X A: b\r\n\r\n", 0, REFUSE},
    {"no name", "GET / HTTP/1.1\r\n" H ": b\r\n\r\n", 0, REFUSE},
    {"no colon", "GET / HTTP/1.1\r\n" H "X-A\r\n\r\n", 0, REFUSE},
    {"NUL in a value", "GET / HTTP/1.1\r\n" H "X-A: a\0b\r\n\r\n", 45, REFUSE},
    {"DEL in a value", "GET / HTTP/1.1\r\n" H "X-A: a\x7f\r\n\r\n", 0, REFUSE},
    {"control byte in a value", "GET / HTTP/1.1\r\n" H "X-A: a\x01\r\n\r\n", 0, REFUSE},
    {"a name with a slash", "GET / HTTP/1.1\r\n" H "X/A: b\r\n\r\n", 0, REFUSE},
    {"a name with a non-ASCII byte", "GET / HTTP/1.1\r\n" H "X\xc3\xa9: b\r\n\r\n", 0, REFUSE},
    {"a leading space before the first field", "GET / HTTP/1.1\r\n " H "\r\n", 0, REFUSE},
    /* Host */
    {"no Host in 1.1", "GET / HTTP/1.1\r\n\r\n", 0, REFUSE},
    {"two Hosts", "GET / HTTP/1.1\r\n" H "Host: evil.example\r\n\r\n", 0, REFUSE},
    /* request line */
    {"two spaces", "GET  / HTTP/1.1\r\n" H "\r\n", 0, REFUSE},
    {"tab separator", "GET\t/ HTTP/1.1\r\n" H "\r\n", 0, REFUSE},
    {"trailing space", "GET / HTTP/1.1 \r\n" H "\r\n", 0, REFUSE},
    {"lower-case version", "GET / http/1.1\r\n" H "\r\n", 0, REFUSE},
    {"HTTP/0.9", "GET /\r\n\r\n", 0, REFUSE},
    {"HTTP/1.10", "GET / HTTP/1.10\r\n" H "\r\n", 0, REFUSE},
    {"HTTP/01.1", "GET / HTTP/01.1\r\n" H "\r\n", 0, REFUSE},
    {"HTTP/1", "GET / HTTP/1\r\n" H "\r\n", 0, REFUSE},
    {"HTTP/2.0", "GET / HTTP/2.0\r\n" H "\r\n", 0, REFUSE},
    {"HTTP/1.2", "GET / HTTP/1.2\r\n" H "\r\n", 0, REFUSE},
    {"HTTP/1.9", "GET / HTTP/1.9\r\n" H "\r\n", 0, REFUSE},
    {"an unknown method", "GEL / HTTP/1.1\r\n" H "\r\n", 0, REFUSE},
    {"PRI", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0, REFUSE},
    {"method with @", "G@T / HTTP/1.1\r\n" H "\r\n", 0, REFUSE},
    {"a space in the target", "GET /a b HTTP/1.1\r\n" H "\r\n", 0, REFUSE},
    {"non-ASCII target", "GET /\x80 HTTP/1.1\r\n" H "\r\n", 0, REFUSE},
    {"control byte in the target", "GET /\x01 HTTP/1.1\r\n" H "\r\n", 0, REFUSE},
    {"NUL in the target", "GET /\0 HTTP/1.1\r\nHost: localhost\r\n\r\n", 36, REFUSE},
    {"DEL in the target", "GET /\x7f HTTP/1.1\r\n" H "\r\n", 0, REFUSE},
    {"empty target", "GET  HTTP/1.1\r\n" H "\r\n", 0, REFUSE},
    {"no method", " / HTTP/1.1\r\n" H "\r\n", 0, REFUSE},
    {"user info in absolute-form", "GET http://u@localhost/ HTTP/1.1\r\n" H "\r\n", 0, REFUSE},
    {"another scheme", "GET ftp://localhost/ HTTP/1.1\r\n" H "\r\n", 0, REFUSE},
    {"a bare authority", "GET localhost/x HTTP/1.1\r\n" H "\r\n", 0, REFUSE},
    {"a fragment", "GET http://localhost#x HTTP/1.1\r\n" H "\r\n", 0, REFUSE},
  };
  return cr_make_param_array(struct head_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct head_case *c, llhttp, every_head_llhttp_rejects_flipcached_rejects) {
  size_t len = c->len ? c->len : strlen(c->text);
  cr_assert(len >= 3 && (memcmp(c->text + len - 2, "\n\n", 2) == 0 ||
                         memcmp(c->text + len - 3, "\n\r\n", 3) == 0),
            "%s: the case is not a whole head (its length is wrong?)", c->name);
  bool accepted;
  struct llhttp_verdict verdict;
  const char *why = llhttp_disagreement(c->text, len, &accepted, &verdict);
  cr_expect_null(why, "%s: %s", c->name, why);
  cr_expect_eq(accepted, c->flipcached == SERVE, "%s: flipcached %s it", c->name,
               accepted ? "took" : "refused");
  /* The oracle itself, on the same bytes whole: what it says, for the record. */
  llhttp_judge(c->text, len, &verdict);
  cr_log_info("%-40s llhttp %s%s%s", c->name,
              verdict.rejected ? "rejects: " : verdict.head_complete ? (verdict.body ? "takes, with a body" : "takes") : "waits",
              verdict.rejected ? verdict.reason : "", "");
  if (c->flipcached == SERVE)
    cr_expect(verdict.head_complete && !verdict.body, "%s: llhttp does not take a valid head",
              c->name);
}
