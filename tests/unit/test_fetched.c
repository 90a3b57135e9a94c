/* fetched: the decision over an enrollment fetch's result, every kind of result. */
#include <criterion/criterion.h>
#include <string.h>

#include "fetched.h"

#define ID "497f6eca-6276-4993-bfeb-53cbbbba6f08"

static struct upstream_result response(long status, const char *body) {
  return (struct upstream_result){.outcome = UPSTREAM_RESPONSE, .http_status = status,
                                  .body = body, .body_len = strlen(body),
                                  .retry_after_seconds = -1, .error_text = ""};
}

Test(fetched, a_valid_200_is_stored_and_served) {
  struct upstream_result r = response(200, "{\"id\":\"" ID "\"}");
  struct fetched_decision d = fetched_decide(&r, ID, false);
  cr_expect_eq(d.action, FETCHED_SERVE_200);
  cr_expect(d.credential_works);
  cr_expect_not(d.counts_as_upstream_error);
  cr_expect_eq(d.note, FETCHED_NOTE_NONE);
}

Test(fetched, a_200_of_another_id_or_not_json_fails_as_invalid) {
  const char *bodies[] = {"{\"id\":\"0b7a2c1e-2f3d-4e5f-8a9b-0c1d2e3f4a5b\"}", "<html>", ""};
  for (size_t i = 0; i < 3; i++) {
    struct upstream_result r = response(200, bodies[i]);
    struct fetched_decision d = fetched_decide(&r, ID, false);
    cr_expect_eq(d.action, FETCHED_FAIL, "%s", bodies[i]);
    cr_expect_eq(d.error, API_ERROR_UPSTREAM_INVALID_RESPONSE);
    cr_expect_eq(d.note, FETCHED_NOTE_INVALID_BODY);
    cr_expect_neq(d.verdict, BODY_OK);
    cr_expect(d.counts_as_upstream_error);
    cr_expect_eq(d.fwd_status, 200);
  }
}

Test(fetched, a_404_is_served_with_our_body_when_its_own_is_not_json) {
  struct upstream_result json = response(404, "{\"code\":\"not_found\"}");
  struct fetched_decision d = fetched_decide(&json, ID, false);
  cr_expect_eq(d.action, FETCHED_SERVE_404);
  cr_expect_not(d.own_404_body);
  cr_expect(d.credential_works);
  struct upstream_result text = response(404, "Not Found");
  d = fetched_decide(&text, ID, false);
  cr_expect_eq(d.action, FETCHED_SERVE_404);
  cr_expect(d.own_404_body);
}

Test(fetched, statuses_map_to_the_contract_codes) {
  struct {
    long status;
    enum api_error error;
    enum fetched_note note;
  } cases[] = {
    {401, API_ERROR_UPSTREAM_AUTH_FAILED, FETCHED_NOTE_CREDENTIAL},
    {403, API_ERROR_UPSTREAM_AUTH_FAILED, FETCHED_NOTE_CREDENTIAL},
    {429, API_ERROR_UPSTREAM_RATE_LIMITED, FETCHED_NOTE_STATUS},
    {500, API_ERROR_UPSTREAM_UNAVAILABLE, FETCHED_NOTE_STATUS},
    {503, API_ERROR_UPSTREAM_UNAVAILABLE, FETCHED_NOTE_STATUS},
    {302, API_ERROR_UPSTREAM_INVALID_RESPONSE, FETCHED_NOTE_STATUS},
    {422, API_ERROR_UPSTREAM_INVALID_RESPONSE, FETCHED_NOTE_STATUS},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct upstream_result r = response(cases[i].status, "{}");
    struct fetched_decision d = fetched_decide(&r, ID, false);
    cr_expect_eq(d.action, FETCHED_FAIL, "%ld", cases[i].status);
    cr_expect_eq(d.error, cases[i].error, "%ld", cases[i].status);
    cr_expect_eq(d.note, cases[i].note, "%ld", cases[i].status);
    cr_expect_eq(d.fwd_status, cases[i].status);
    cr_expect_eq(d.credential_rejected,
                 cases[i].error == API_ERROR_UPSTREAM_AUTH_FAILED ? cases[i].status : 0);
    cr_expect_not(d.credential_works);
  }
}

Test(fetched, a_429_carries_its_clamped_retry_after) {
  struct upstream_result r = response(429, "{}");
  r.retry_after_seconds = 7;
  cr_expect_eq(fetched_decide(&r, ID, false).retry_after, 7);
  r.retry_after_seconds = 999999;
  cr_expect_eq(fetched_decide(&r, ID, false).retry_after, breaker_clamp_retry_after(999999));
  r = response(500, "{}");
  r.retry_after_seconds = 7;
  cr_expect_eq(fetched_decide(&r, ID, false).retry_after, -1, "only a 429's is passed on");
}

Test(fetched, nginx_400_for_a_client_certificate_is_named) {
  struct upstream_result r = response(400, "<html>No required SSL certificate was sent</html>");
  cr_expect_eq(fetched_decide(&r, ID, false).note, FETCHED_NOTE_CLIENT_CERT);
}

Test(fetched, transport_failures_and_token_failures) {
  struct upstream_result r = {.outcome = UPSTREAM_TIMEOUT, .retry_after_seconds = -1,
                              .error_text = "timed out"};
  struct fetched_decision d = fetched_decide(&r, ID, false);
  cr_expect_eq(d.error, API_ERROR_UPSTREAM_TIMEOUT);
  cr_expect_eq(d.note, FETCHED_NOTE_TRANSPORT);
  cr_expect_not(d.counts_as_upstream_error, "upstream.c counts transport failures");
  cr_expect_eq(d.fwd_status, 0);
  r.outcome = UPSTREAM_BODY_TOO_LARGE;
  cr_expect_eq(fetched_decide(&r, ID, false).error, API_ERROR_UPSTREAM_INVALID_RESPONSE);
  r.outcome = UPSTREAM_UNREACHABLE;
  cr_expect_eq(fetched_decide(&r, ID, false).error, API_ERROR_UPSTREAM_UNAVAILABLE);
  r = (struct upstream_result){.outcome = UPSTREAM_TOKEN_FAILED, .http_status = 401,
                               .retry_after_seconds = -1, .error_text = ""};
  d = fetched_decide(&r, ID, false);
  cr_expect_eq(d.error, API_ERROR_UPSTREAM_AUTH_FAILED, "the token endpoint refused the client");
  cr_expect_eq(d.credential_rejected, 401);
  cr_expect_eq(d.fwd_status, 0, "not the API's status");
  r.http_status = 503;
  d = fetched_decide(&r, ID, false);
  cr_expect_eq(d.error, API_ERROR_UPSTREAM_UNAVAILABLE);
  cr_expect_eq(d.credential_rejected, 0);
}

Test(fetched, a_refusal_met_after_the_shared_tier_answers_like_one_met_at_once) {
  struct {
    enum upstream_start refusal;
    enum api_error error;
    long retry_after;
  } cases[] = {
    {UPSTREAM_PAUSED, API_ERROR_UPSTREAM_RATE_LIMITED, 12},
    {UPSTREAM_CIRCUIT_OPEN, API_ERROR_CIRCUIT_OPEN, 3},
    {UPSTREAM_OVERLOADED, API_ERROR_OVERLOADED, 1},
    {UPSTREAM_START_FAILED, API_ERROR_UPSTREAM_UNAVAILABLE, -1},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct upstream_result r = {.outcome = UPSTREAM_REFUSED, .refusal = cases[i].refusal,
                                .retry_after_seconds = cases[i].retry_after,
                                .error_text = "not sent"};
    struct fetched_decision d = fetched_decide(&r, ID, false);
    cr_expect_eq(d.action, FETCHED_FAIL);
    cr_expect_eq(d.error, cases[i].error, "refusal %d", cases[i].refusal);
    cr_expect_eq(d.error, fetched_refusal_error(cases[i].refusal));
    cr_expect_eq(d.retry_after, cases[i].retry_after);
    cr_expect_eq(d.note, FETCHED_NOTE_NONE, "nothing was sent: nothing to log");
    cr_expect(!d.counts_as_upstream_error && !d.credential_rejected && !d.credential_works);
  }
}

Test(fetched, a_304_renews_only_a_conditional_refresh) {
  struct upstream_result r = {.outcome = UPSTREAM_RESPONSE, .http_status = 304, .body = "",
                              .error_text = ""};
  struct fetched_decision d = fetched_decide(&r, ID, true);
  cr_expect_eq(d.action, FETCHED_RENEW);
  cr_expect_eq(d.fwd_status, 304);
  cr_expect(d.credential_works && !d.counts_as_upstream_error);
  d = fetched_decide(&r, ID, false);
  cr_expect_eq(d.action, FETCHED_FAIL, "a 304 nobody asked for renews nothing");
  cr_expect_eq(d.error, API_ERROR_UPSTREAM_INVALID_RESPONSE);
  cr_expect(d.counts_as_upstream_error);
}
