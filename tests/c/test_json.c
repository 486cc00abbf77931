/* test_json.c: era_head_to_json / era_head_from_json: size queries, buffer
 * sizes, lossless round trips (config, learned delta, forward results) and
 * every failure status of era_head_from_json. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "helpers.h"

#define SENTINEL_HEAD ((EraHead*)(uintptr_t)0x5EA1)

/* malloc'd JSON of h (NULL on failure) */
static char* to_json(const EraHead* h) {
  size_t n = 0;
  if (era_head_to_json(h, NULL, 0, &n) != ERA_STATUS_OK) return NULL;
  char* buf = (char*)malloc(n + 1);
  size_t w = 0;
  if (era_head_to_json(h, buf, n + 1, &w) != ERA_STATUS_OK || w != n) {
    free(buf);
    return NULL;
  }
  return buf;
}

/* malloc'd copy of s with the first occurrence of from replaced by to (NULL if absent) */
static char* replace_first(const char* s, const char* from, const char* to) {
  const char* p = strstr(s, from);
  if (!p) return NULL;
  size_t a = (size_t)(p - s), lf = strlen(from), lt = strlen(to), ls = strlen(s);
  char* r = (char*)malloc(ls - lf + lt + 1);
  memcpy(r, s, a);
  memcpy(r + a, to, lt);
  memcpy(r + a + lt, p + lf, ls - a - lf + 1);
  return r;
}

static void test_to_json_buffers(void) {
  SECTION("to_json buffers");
  EraHead* h = new_gaussian(3, -1.5, -5.0, 0.0);
  CHECK(h != NULL);
  if (!h) return;
  size_t n = 0;
  CHECK_OK(era_head_to_json(h, NULL, 0, &n));
  CHECK(n > 2);
  char* buf = (char*)malloc(n + 8);
  memset(buf, 'x', n + 8);
  size_t w = 0;
  CHECK_OK(era_head_to_json(h, buf, n + 1, &w));
  CHECK(w == n);
  CHECK(buf[n] == '\0' && strlen(buf) == n);
  CHECK(buf[0] == '{' && buf[n - 1] == '}');
  CHECK(buf[n + 1] == 'x'); /* nothing beyond len */
  /* a larger buffer is fine */
  memset(buf, 'x', n + 8);
  w = 0;
  CHECK_OK(era_head_to_json(h, buf, n + 8, &w));
  CHECK(w == n && strlen(buf) == n);
  /* too small: BUFFER_TOO_SMALL, nothing written */
  memset(buf, 'x', n + 8);
  CHECK_STATUS(era_head_to_json(h, buf, n, &w), ERA_STATUS_BUFFER_TOO_SMALL);
  int untouched = 1;
  for (size_t i = 0; i < n + 8; i++) untouched &= buf[i] == 'x';
  CHECK(untouched);
  CHECK_STATUS(era_head_to_json(h, buf, 1, &w), ERA_STATUS_BUFFER_TOO_SMALL);
  CHECK(buf[0] == 'x');
  CHECK_STATUS(era_head_to_json(h, buf, 0, &w), ERA_STATUS_BUFFER_TOO_SMALL); /* a real buffer of length 0 */
  CHECK(buf[0] == 'x');
  /* NULL pointers */
  CHECK_STATUS(era_head_to_json(NULL, buf, n + 1, &w), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_head_to_json(NULL, NULL, 0, &w), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_head_to_json(h, buf, n + 1, NULL), ERA_STATUS_NULL_POINTER);
  free(buf);
  era_head_free(h);
}

static void check_same_config(const EraHead* a, const EraHead* b) {
  EraConfig ca, cb;
  memset(&ca, 0, sizeof ca);
  memset(&cb, 0, sizeof cb);
  ca.struct_size = cb.struct_size = sizeof(EraConfig);
  CHECK_OK(era_head_config(a, &ca));
  CHECK_OK(era_head_config(b, &cb));
  CHECK(ca.kind == cb.kind);
  if (ca.kind == ERA_HEAD_KIND_GAUSSIAN) {
    CHECK(ca.target_entropy == cb.target_entropy && ca.dim == cb.dim && ca.log_std_min == cb.log_std_min &&
          ca.log_std_max == cb.log_std_max && ca.delta == cb.delta && ca.delta_optimizer == cb.delta_optimizer &&
          ca.delta_lr == cb.delta_lr && ca.delta_beta1 == cb.delta_beta1 && ca.delta_beta2 == cb.delta_beta2 &&
          ca.delta_eps == cb.delta_eps);
  } else if (ca.kind == ERA_HEAD_KIND_SOFTMAX) {
    CHECK(ca.target_entropy == cb.target_entropy && ca.num_classes == cb.num_classes && ca.tau == cb.tau);
  } else {
    CHECK(ca.k == cb.k && ca.omega_low == cb.omega_low && ca.omega_high == cb.omega_high &&
          ca.top_fraction == cb.top_fraction && ca.temperature == cb.temperature &&
          ca.advantage_scaling == cb.advantage_scaling && ca.vocab_topk == cb.vocab_topk);
  }
}

static void test_round_trip_gaussian(void) {
  SECTION("json round trip gaussian");
  EraConfig c;
  era_config_default(ERA_HEAD_KIND_GAUSSIAN, &c);
  c.dim = 3;
  c.target_entropy = -1.2345;
  c.log_std_min = -6.0;
  c.log_std_max = 0.5;
  c.delta_optimizer = ERA_DELTA_OPTIMIZER_SGD;
  c.delta_lr = 0.05;
  EraHead* h = NULL;
  CHECK_OK(era_head_new(&c, &h));
  if (!h) return;
  double ents[5] = {-0.3, -2.0, -1.0, -0.77, -1.9};
  for (int i = 0; i < 5; i++) CHECK_OK(era_head_update_delta(h, ents[i], NULL));
  double d = 0;
  CHECK_OK(era_head_delta(h, &d));
  CHECK(d != 0.0);
  char* js = to_json(h);
  CHECK(js != NULL);
  if (!js) return;
  EraHead* h2 = SENTINEL_HEAD;
  CHECK_OK(era_head_from_json(js, &h2));
  CHECK(h2 != NULL && h2 != SENTINEL_HEAD);
  if (h2 && h2 != SENTINEL_HEAD) {
    EraHeadKind k;
    CHECK_OK(era_head_kind(h2, &k));
    CHECK(k == ERA_HEAD_KIND_GAUSSIAN);
    double d2 = 0;
    CHECK_OK(era_head_delta(h2, &d2));
    CHECK_MSG(d2 == d, "learned delta %.17g came back as %.17g", d, d2);
    check_same_config(h, h2);
    double z[6] = {0.5, -1.0, 2.0, 3.0, -3.0, 0.1}, o1[6], o2[6];
    int64_t s[2] = {2, 3};
    CHECK_OK(fwd_f64(h, z, o1, 2, s));
    CHECK_OK(fwd_f64(h2, z, o2, 2, s));
    CHECK(memcmp(o1, o2, sizeof o1) == 0);
    /* serialising again gives the same text */
    char* js2 = to_json(h2);
    CHECK(js2 && strcmp(js, js2) == 0);
    free(js2);
    /* both keep learning identically (SGD has no state) */
    double n1, n2;
    CHECK_OK(era_head_update_delta(h, -1.1, &n1));
    CHECK_OK(era_head_update_delta(h2, -1.1, &n2));
    CHECK(n1 == n2);
    era_head_free(h2);
  }

  SECTION("json from_json infeasible target");
  char* bad = replace_first(js, "-1.2345", "1234.5");
  CHECK_MSG(bad != NULL, "to_json output does not contain the target -1.2345: %s", js);
  if (bad) {
    EraHead* h3 = SENTINEL_HEAD;
    CHECK_STATUS(era_head_from_json(bad, &h3), ERA_STATUS_INFEASIBLE_TARGET);
    CHECK(h3 == SENTINEL_HEAD);
    free(bad);
  }
  /* trailing garbage and a truncated document */
  size_t n = strlen(js);
  char* trail = (char*)malloc(n + 3);
  memcpy(trail, js, n);
  memcpy(trail + n, "x", 2);
  EraHead* h4 = SENTINEL_HEAD;
  CHECK_STATUS(era_head_from_json(trail, &h4), ERA_STATUS_JSON);
  trail[n / 2] = '\0';
  CHECK_STATUS(era_head_from_json(trail, &h4), ERA_STATUS_JSON);
  CHECK(h4 == SENTINEL_HEAD);
  /* invalid UTF-8 appended after a valid document (the header: JSON status) */
  memcpy(trail, js, n);
  trail[n] = (char)0xFF;
  trail[n + 1] = '\0';
  CHECK_STATUS(era_head_from_json(trail, &h4), ERA_STATUS_JSON);
  free(trail);
  free(js);

  SECTION("json round trip with Adam");
  c.delta_optimizer = ERA_DELTA_OPTIMIZER_ADAM;
  c.delta_lr = 0.01;
  EraHead* ha = NULL;
  CHECK_OK(era_head_new(&c, &ha));
  if (ha) {
    for (int i = 0; i < 3; i++) CHECK_OK(era_head_update_delta(ha, ents[i], NULL));
    char* ja = to_json(ha);
    EraHead* hb = NULL;
    CHECK_OK(era_head_from_json(ja ? ja : "", &hb));
    if (hb) {
      double da, db;
      CHECK_OK(era_head_delta(ha, &da));
      CHECK_OK(era_head_delta(hb, &db));
      CHECK(da == db);
      check_same_config(ha, hb);
      /* the Adam moments travel with the JSON: the next step is identical */
      double na = 0, nb = 1;
      CHECK_OK(era_head_update_delta(ha, -0.5, &na));
      CHECK_OK(era_head_update_delta(hb, -0.5, &nb));
      CHECK_MSG(na == nb, "next Adam step after a JSON round trip: %.17g vs %.17g", na, nb);
      era_head_free(hb);
    }
    free(ja);
    era_head_free(ha);
  }
  era_head_free(h);
}

static void test_round_trip_softmax_token(void) {
  SECTION("json round trip softmax");
  EraHead* h = new_softmax(4, 0.6123, 4.5);
  CHECK(h != NULL);
  if (!h) return;
  char* js = to_json(h);
  CHECK(js != NULL);
  EraHead* h2 = NULL;
  CHECK_OK(era_head_from_json(js ? js : "", &h2));
  if (h2) {
    EraHeadKind k;
    CHECK_OK(era_head_kind(h2, &k));
    CHECK(k == ERA_HEAD_KIND_SOFTMAX);
    check_same_config(h, h2);
    double z[4] = {2, 0, -1, 0.5}, o1[4], o2[4];
    int64_t s[1] = {4};
    CHECK_OK(fwd_f64(h, z, o1, 1, s));
    CHECK_OK(fwd_f64(h2, z, o2, 1, s));
    CHECK(memcmp(o1, o2, sizeof o1) == 0);
    era_head_free(h2);
  }
  if (js) {
    char* bad = replace_first(js, "0.6123", "7.5");
    CHECK_MSG(bad != NULL, "to_json output does not contain the target 0.6123: %s", js);
    if (bad) {
      EraHead* h3 = SENTINEL_HEAD;
      CHECK_STATUS(era_head_from_json(bad, &h3), ERA_STATUS_INFEASIBLE_TARGET);
      CHECK(h3 == SENTINEL_HEAD);
      free(bad);
    }
    bad = replace_first(js, "4.5", "2.5"); /* tau < e */
    CHECK_MSG(bad != NULL, "to_json output does not contain tau 4.5: %s", js);
    if (bad) {
      EraHead* h3 = SENTINEL_HEAD;
      CHECK_STATUS(era_head_from_json(bad, &h3), ERA_STATUS_INVALID_CONFIG);
      CHECK(h3 == SENTINEL_HEAD);
      free(bad);
    }
  }
  free(js);
  era_head_free(h);

  SECTION("json round trip token");
  EraConfig c;
  era_config_default(ERA_HEAD_KIND_TOKEN, &c);
  c.k = 2.5;
  c.omega_low = 0.375;
  c.omega_high = 2.25;
  c.top_fraction = 0.3;
  c.temperature = 0.9;
  c.advantage_scaling = 0;
  c.vocab_topk = 7;
  CHECK_OK(era_head_new(&c, &h));
  if (!h) return;
  js = to_json(h);
  CHECK(js != NULL);
  h2 = NULL;
  CHECK_OK(era_head_from_json(js ? js : "", &h2));
  if (h2) {
    EraHeadKind k;
    CHECK_OK(era_head_kind(h2, &k));
    CHECK(k == ERA_HEAD_KIND_TOKEN);
    check_same_config(h, h2);
    char* js2 = to_json(h2);
    CHECK(js && js2 && strcmp(js, js2) == 0);
    free(js2);
    era_head_free(h2);
  }
  if (js) {
    char* bad = replace_first(js, "2.5", "0.5"); /* k <= 1 */
    CHECK_MSG(bad != NULL, "to_json output does not contain k 2.5: %s", js);
    if (bad) {
      EraHead* h3 = SENTINEL_HEAD;
      CHECK_STATUS(era_head_from_json(bad, &h3), ERA_STATUS_INVALID_CONFIG);
      CHECK(h3 == SENTINEL_HEAD);
      free(bad);
    }
  }
  free(js);
  era_head_free(h);
}

static void test_from_json_errors(void) {
  SECTION("from_json errors");
  const char* malformed[] = {"", "{", "null", "{\"kind\":\"nope\"}", "[]", "{}", "42", "\"gaussian\"", "{\"kind\":1,}"};
  for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
    EraHead* h = SENTINEL_HEAD;
    EraStatus st = era_head_from_json(malformed[i], &h);
    CHECK_MSG(st == ERA_STATUS_JSON, "era_head_from_json(%s) = %s, want ERA_STATUS_JSON", malformed[i],
              era_status_str(st));
    CHECK_MSG(st == ERA_STATUS_OK || era_last_error(NULL, 0) > 0, "no last error after from_json(%s)", malformed[i]);
    CHECK(h == SENTINEL_HEAD);
  }
  EraHead* h = SENTINEL_HEAD;
  CHECK_STATUS(era_head_from_json(NULL, &h), ERA_STATUS_NULL_POINTER);
  CHECK(h == SENTINEL_HEAD);
  CHECK_STATUS(era_head_from_json("{}", NULL), ERA_STATUS_NULL_POINTER);
  /* invalid UTF-8: ERA_STATUS_JSON per include/era.h (the draft said INVALID_ARGUMENT) */
  CHECK_STATUS(era_head_from_json("{\"kind\":\"\xff\xfe\"}", &h), ERA_STATUS_JSON);
  CHECK_STATUS(era_head_from_json("\xc3\x28", &h), ERA_STATUS_JSON);
  CHECK(h == SENTINEL_HEAD);
  /* unknown fields */
  CHECK_STATUS(era_head_from_json("{\"kind\":\"softmax\",\"num_classes\":10,\"target_entropy\":1.0,\"bogus\":1}", &h),
               ERA_STATUS_JSON);
  CHECK(h == SENTINEL_HEAD);

  SECTION("from_json bare config documents");
  h = NULL;
  CHECK_OK(era_head_from_json("{\"kind\": \"softmax\", \"num_classes\": 10, \"target_entropy\": 1.0}", &h));
  if (h) {
    EraConfig c;
    memset(&c, 0, sizeof c);
    c.struct_size = sizeof c;
    CHECK_OK(era_head_config(h, &c));
    CHECK(c.kind == ERA_HEAD_KIND_SOFTMAX && c.num_classes == 10 && c.target_entropy == 1.0 && c.tau == 4.0);
    era_head_free(h);
  }
  h = SENTINEL_HEAD;
  CHECK_STATUS(era_head_from_json("{\"kind\": \"softmax\", \"num_classes\": 10, \"target_entropy\": 5.0}", &h),
               ERA_STATUS_INFEASIBLE_TARGET);
  CHECK_STATUS(era_head_from_json("{\"kind\": \"softmax\", \"num_classes\": 1, \"target_entropy\": 0.0}", &h),
               ERA_STATUS_INVALID_CONFIG);
  CHECK_STATUS(era_head_from_json("{\"kind\": \"gaussian\", \"dim\": 3, \"target_entropy\": 10.0}", &h),
               ERA_STATUS_INFEASIBLE_TARGET);
  CHECK(h == SENTINEL_HEAD);
  h = NULL;
  CHECK_OK(era_head_from_json("{\"kind\": \"gaussian\", \"dim\": 3, \"target_entropy\": -1.5, \"log_std_min\": -5.0}", &h));
  if (h) {
    double z[3] = {0.5, -1.0, 2.0}, out[3], want[3] = {-1.009114, -0.225164, -4.522537};
    int64_t s[1] = {3};
    CHECK_OK(fwd_f64(h, z, out, 1, s));
    CHECK_ARRAY_NEAR(out, want, 3, 1e-5);
    era_head_free(h);
  }
  h = NULL;
  CHECK_OK(era_head_from_json("{\"kind\": \"token\"}", &h));
  era_head_free(h);
}

int main(void) {
  test_to_json_buffers();
  test_round_trip_gaussian();
  test_round_trip_softmax_token();
  test_from_json_errors();
  return check_finish();
}
