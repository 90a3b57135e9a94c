/* validate: which upstream 200 bodies may be stored and served. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

#define ID "497f6eca-6276-4993-bfeb-53cbbbba6f08"

struct body_case {
  char body[200];
  enum body_verdict verdict;
};

ParameterizedTestParameters(validate, classifies_bodies) {
  static struct body_case cases[] = {
    {"{\"id\":\"" ID "\",\"status\":\"ACTIVE\"}", BODY_OK},
    {"  {\"id\":\"" ID "\"}\n", BODY_OK},
    {"{\"id\":\"497F6ECA-6276-4993-BFEB-53CBBBBA6F08\"}", BODY_OK},
    {"{\"status\":\"ACTIVE\",\"site\":{\"id\":\"abc\"},\"id\":\"" ID "\"}", BODY_OK},
    {"", BODY_NOT_JSON},
    {"not json", BODY_NOT_JSON},
    {"{\"id\":\"" ID "\"", BODY_NOT_JSON},
    {"{\"id\":\"" ID "\"} trailing", BODY_NOT_JSON},
    {"{\"id\":\"" ID "\"}{}", BODY_NOT_JSON},
    {"{'id':'" ID "'}", BODY_NOT_JSON},
    {"{\"id\":\"" ID "\",}", BODY_NOT_JSON},
    {"[{\"id\":\"" ID "\"}]", BODY_NOT_OBJECT},
    {"\"" ID "\"", BODY_NOT_OBJECT},
    {"null", BODY_NOT_OBJECT},
    {"{}", BODY_NO_ID},
    {"{\"id\":42}", BODY_NO_ID},
    {"{\"id\":null}", BODY_NO_ID},
    {"{\"site\":{\"id\":\"" ID "\"}}", BODY_NO_ID},
    {"{\"id\":\"00000000-0000-4000-8000-000000000000\"}", BODY_WRONG_ID},
    {"{\"id\":\"" ID "x\"}", BODY_WRONG_ID},
    {"{\"id\":\"" ID "\\u0000\"}", BODY_WRONG_ID},
  };
  return cr_make_param_array(struct body_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct body_case *c, validate, classifies_bodies) {
  enum body_verdict verdict = validate_enrollment_body(c->body, strlen(c->body), ID);
  cr_expect_eq(verdict, c->verdict, "'%s': %s", c->body, body_verdict_text(verdict));
}

Test(validate, invalid_utf8_is_refused) {
  const char body[] = "{\"id\":\"" ID "\",\"name\":\"\xff\xfe\"}";
  cr_expect_eq(validate_enrollment_body(body, sizeof(body) - 1, ID), BODY_NOT_JSON);
}

Test(validate, embedded_nul_is_refused) {
  const char body[] = "{\"id\":\"" ID "\"}\0{}";
  cr_expect_eq(validate_enrollment_body(body, sizeof(body) - 1, ID), BODY_NOT_JSON);
}

Test(validate, nesting_deeper_than_the_limit_is_refused) {
  size_t depth = VALIDATE_MAX_DEPTH + 8;
  char *body = calloc(1, depth * 8 + 64);
  strcpy(body, "{\"id\":\"" ID "\",\"x\":");
  for (size_t i = 0; i < depth; i++)
    strcat(body, "[");
  for (size_t i = 0; i < depth; i++)
    strcat(body, "]");
  strcat(body, "}");
  cr_expect_eq(validate_enrollment_body(body, strlen(body), ID), BODY_NOT_JSON);
  free(body);
}

Test(validate, every_verdict_has_a_text) {
  for (int verdict = BODY_OK; verdict <= BODY_WRONG_ID; verdict++)
    cr_expect(strlen(body_verdict_text((enum body_verdict)verdict)) > 0);
}

struct token_case {
  char body[200];
  bool ok;
  char token[40];
  long expires_in;
};

ParameterizedTestParameters(token_response, classifies_token_responses) {
  static struct token_case cases[] = {
    {"{\"access_token\":\"at_1\",\"token_type\":\"Bearer\",\"expires_in\":3600}", true, "at_1", 3600},
    {"{\"access_token\":\"at_2\",\"token_type\":\"bearer\",\"expires_in\":60}", true, "at_2", 60},
    {"{\"access_token\":\"at_3\"}", true, "at_3", TOKEN_DEFAULT_EXPIRES_IN},
    {"{\"access_token\":\"at_4\",\"expires_in\":99999999999}", true, "at_4", TOKEN_MAX_EXPIRES_IN},
    {"{\"access_token\":\"at_5\",\"token_type\":\"mac\"}", false, "", 0},
    {"{\"access_token\":\"at 6\"}", false, "", 0},
    {"{\"access_token\":\"\"}", false, "", 0},
    {"{\"access_token\":42}", false, "", 0},
    {"{\"access_token\":\"at_7\",\"expires_in\":0}", false, "", 0},
    {"{\"access_token\":\"at_8\",\"expires_in\":\"3600\"}", false, "", 0},
    {"{\"token\":\"at_9\"}", false, "", 0},
    {"[\"at_10\"]", false, "", 0},
    {"not json", false, "", 0},
    {"", false, "", 0},
  };
  return cr_make_param_array(struct token_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct token_case *c, token_response, classifies_token_responses) {
  char token[64] = "";
  long expires_in = 0;
  const char *problem = validate_token_response(c->body, strlen(c->body), token, sizeof(token),
                                                &expires_in);
  if (c->ok) {
    cr_expect_null(problem, "'%s': %s", c->body, problem);
    cr_expect_str_eq(token, c->token);
    cr_expect_eq(expires_in, c->expires_in);
  } else {
    cr_expect_not_null(problem, "'%s' accepted", c->body);
    cr_expect(strstr(problem, "at_") == NULL, "the message never quotes the body");
  }
}

Test(token_response, a_token_longer_than_the_buffer_is_refused) {
  char token[8];
  long expires_in;
  const char body[] = "{\"access_token\":\"0123456789\"}";
  cr_expect_not_null(validate_token_response(body, sizeof(body) - 1, token, sizeof(token), &expires_in));
}
