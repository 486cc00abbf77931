/* test_head_lifecycle.c: era_head_new's configuration validation for every head
 * kind (generic fields, Gaussian, softmax, token), head lifetime, era_head_kind /
 * era_head_config. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "helpers.h"

#define SENTINEL_HEAD ((EraHead*)(uintptr_t)0x5EA1)

/* Expects era_head_new(c) to fail with `want`, leaving the out pointer alone. */
#define EXPECT_NEW_FAILS(cfgp, want)                      \
  do {                                                    \
    EraHead* h_ = SENTINEL_HEAD;                          \
    CHECK_STATUS(era_head_new((cfgp), &h_), (want));      \
    CHECK(h_ == SENTINEL_HEAD);                           \
  } while (0)
#define EXPECT_NEW_OK(cfgp)                               \
  do {                                                    \
    EraHead* h_ = NULL;                                   \
    CHECK_OK(era_head_new((cfgp), &h_));                  \
    CHECK(h_ != NULL);                                    \
    era_head_free(h_);                                    \
  } while (0)

static EraConfig gauss_cfg(uint64_t D, double h0) {
  EraConfig c;
  era_config_default(ERA_HEAD_KIND_GAUSSIAN, &c);
  c.dim = D;
  c.target_entropy = h0;
  return c;
}
static EraConfig softmax_cfg(uint64_t n, double h0) {
  EraConfig c;
  era_config_default(ERA_HEAD_KIND_SOFTMAX, &c);
  c.num_classes = n;
  c.target_entropy = h0;
  return c;
}
static EraConfig token_cfg(void) {
  EraConfig c;
  era_config_default(ERA_HEAD_KIND_TOKEN, &c);
  return c;
}

static void test_head_new_generic(void) {
  SECTION("head_new generic");
  EraConfig c = gauss_cfg(3, -1.5);
  CHECK_STATUS(era_head_new(NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_head_new(&c, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_ERR_MENTIONS("out");
  EXPECT_NEW_OK(&c);

  /* struct_size too small */
  c.struct_size = 4;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  CHECK_ERR_MENTIONS("struct");
  c.struct_size = 0;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c.struct_size = 7;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  /* 8 bytes (struct_size, kind): an old caller; every other field takes its
   * default, and a Gaussian's required target/dim are then missing */
  c.struct_size = 8;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);

  /* a shorter struct from an older caller: the fields beyond struct_size are
   * not read (here: an infeasible delta that must be ignored) */
  c = gauss_cfg(3, -1.5);
  c.delta = 1e3;
  c.struct_size = (uint32_t)offsetof(EraConfig, delta);
  {
    EraHead* h_ = NULL;
    CHECK_OK(era_head_new(&c, &h_));
    if (h_) {
      EraConfig r_;
      memset(&r_, 0, sizeof r_);
      r_.struct_size = sizeof r_;
      CHECK_OK(era_head_config(h_, &r_));
      CHECK(r_.dim == 3 && r_.target_entropy == -1.5 && r_.delta == 0.0);
      CHECK(r_.delta_optimizer == ERA_DELTA_OPTIMIZER_ADAM && r_.delta_lr == 3e-4);
      era_head_free(h_);
    }
  }

  /* a struct_size that ends inside a field (here in the middle of the 8-byte dim) */
  c = gauss_cfg(3, -1.5);
  c.struct_size = (uint32_t)offsetof(EraConfig, dim) + 4;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  CHECK_ERR_MENTIONS("dim");
  c.struct_size = (uint32_t)offsetof(EraConfig, log_std_min);
  EXPECT_NEW_OK(&c);
  /* reserved fields must be 0 */
  c = gauss_cfg(3, -1.5);
  c.reserved1 = 1;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  CHECK_ERR_MENTIONS("reserved");

  /* struct_size larger than ours: a newer caller; zero trailing bytes are fine */
  struct {
    EraConfig c;
    unsigned char extra[32];
  } big;
  memset(&big, 0, sizeof big);
  big.c = gauss_cfg(3, -1.5);
  big.c.struct_size = (uint32_t)(sizeof(EraConfig) + sizeof big.extra);
  EXPECT_NEW_OK(&big.c);
  big.extra[17] = 1;
  EXPECT_NEW_FAILS(&big.c, ERA_STATUS_INVALID_CONFIG);
  big.extra[17] = 0;
  big.extra[0] = 0xFF;
  EXPECT_NEW_FAILS(&big.c, ERA_STATUS_INVALID_CONFIG);

  /* unknown kind */
  c = gauss_cfg(3, -1.5);
  c.kind = (EraHeadKind)0;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c.kind = (EraHeadKind)7;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
}

static void test_head_new_gaussian(void) {
  SECTION("head_new gaussian");
  EraConfig c;
  era_config_default(ERA_HEAD_KIND_GAUSSIAN, &c);
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG); /* defaults: H0 NaN, dim 0 must be set */
  c = gauss_cfg(3, NAN);
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c = gauss_cfg(0, -1.0);
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  CHECK_ERR_MENTIONS("dim");
  c = gauss_cfg(3, -1.0);
  c.log_std_min = 0.0;
  c.log_std_max = 0.0;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c.log_std_min = 1.0;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c.log_std_min = NAN;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c.log_std_min = -8.0;
  c.log_std_max = NAN;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c = gauss_cfg(3, -1.0);
  c.delta = NAN;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c = gauss_cfg(3, -1.0);
  c.delta_optimizer = (EraDeltaOptimizer)7;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);

  /* feasibility: H0 + delta <= D*(log_std_max + 0.5*L2PE) */
  double hmax = 3 * (0.0 + 0.5 * L2PE); /* 4.2568 */
  c = gauss_cfg(3, 10.0);
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INFEASIBLE_TARGET);
  c = gauss_cfg(3, hmax + 1e-3);
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INFEASIBLE_TARGET);
  c = gauss_cfg(3, hmax - 1e-3);
  EXPECT_NEW_OK(&c);
  c = gauss_cfg(3, 4.0);
  c.delta = 1.0; /* 5 > 4.2568 */
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INFEASIBLE_TARGET);
  c = gauss_cfg(3, 7.0);
  c.log_std_max = 1.0; /* max 7.2568 */
  EXPECT_NEW_OK(&c);
  c = gauss_cfg(1, -1.0); /* D = 1 is legal */
  EXPECT_NEW_OK(&c);
  c = gauss_cfg(6, -6.0);
  c.delta_optimizer = ERA_DELTA_OPTIMIZER_FIXED;
  EXPECT_NEW_OK(&c);
  c.delta_optimizer = ERA_DELTA_OPTIMIZER_SGD;
  EXPECT_NEW_OK(&c);
}

static void test_head_new_softmax(void) {
  SECTION("head_new softmax");
  EraConfig c;
  era_config_default(ERA_HEAD_KIND_SOFTMAX, &c);
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG); /* H0 NaN, n = 0 */
  c = softmax_cfg(10, 1.0);
  EXPECT_NEW_OK(&c);
  c.tau = 2.5; /* < e */
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  CHECK_ERR_MENTIONS("tau");
  c.tau = NAN;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c.tau = 2.718281828459045; /* == e: allowed, valid H0 in [0, 1+ln(10/e)] */
  EXPECT_NEW_OK(&c);
  c = softmax_cfg(10, -1.0); /* below 1 + ln(ln4/4) = -0.0597 */
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INFEASIBLE_TARGET);
  c = softmax_cfg(10, 5.0); /* above 1 + ln(10 ln4/4) = 2.243 */
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INFEASIBLE_TARGET);
  c = softmax_cfg(10, -0.05);
  EXPECT_NEW_OK(&c);
  c = softmax_cfg(10, 2.24);
  EXPECT_NEW_OK(&c);
  c = softmax_cfg(10, 2.25);
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INFEASIBLE_TARGET);
  c = softmax_cfg(2, 0.63);
  EXPECT_NEW_OK(&c);
  c = softmax_cfg(2, 0.64); /* n = 2: upper end 0.633 */
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INFEASIBLE_TARGET);
  c = softmax_cfg(10, NAN);
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c = softmax_cfg(1, 0.0);
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c = softmax_cfg(0, 0.0);
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
}

static void test_head_new_token(void) {
  SECTION("head_new token");
  EraConfig c = token_cfg();
  EXPECT_NEW_OK(&c); /* token defaults are complete */
  c.k = 1.0;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c.k = 0.5;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c.k = NAN;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c.k = 1.5;
  EXPECT_NEW_OK(&c);
  c = token_cfg();
  c.omega_low = 2.0;
  c.omega_high = 1.0;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c.omega_low = -0.1;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c.omega_low = 1.0;
  EXPECT_NEW_OK(&c); /* omega_low == omega_high allowed */
  c.omega_low = NAN;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c = token_cfg();
  c.top_fraction = 0.0;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c.top_fraction = 1.5;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c.top_fraction = -0.2;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c.top_fraction = NAN;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c.top_fraction = 1.0;
  EXPECT_NEW_OK(&c);
  c = token_cfg();
  c.temperature = 0.0;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c.temperature = -1.0;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c.temperature = NAN;
  EXPECT_NEW_FAILS(&c, ERA_STATUS_INVALID_CONFIG);
  c.temperature = 0.7;
  c.advantage_scaling = 0;
  c.vocab_topk = 20;
  EXPECT_NEW_OK(&c);
}

static void test_free_kind_config(void) {
  SECTION("free / kind / config");
  era_head_free(NULL);
  CHECK(1); /* did not crash */

  EraConfig c = gauss_cfg(4, -2.0);
  c.log_std_min = -6.0;
  c.log_std_max = 0.5;
  c.delta = 0.25;
  c.delta_optimizer = ERA_DELTA_OPTIMIZER_SGD;
  c.delta_lr = 0.01;
  c.delta_beta1 = 0.8;
  c.delta_beta2 = 0.99;
  c.delta_eps = 1e-6;
  EraHead* g = NULL;
  CHECK_OK(era_head_new(&c, &g));
  EraHeadKind kind = (EraHeadKind)0;
  CHECK_OK(era_head_kind(g, &kind));
  CHECK(kind == ERA_HEAD_KIND_GAUSSIAN);
  CHECK_STATUS(era_head_kind(NULL, &kind), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_head_kind(g, NULL), ERA_STATUS_NULL_POINTER);
  EraConfig r;
  memset(&r, 0, sizeof r);
  r.struct_size = sizeof r;
  CHECK_OK(era_head_config(g, &r));
  CHECK(r.struct_size == sizeof r);
  CHECK(r.kind == ERA_HEAD_KIND_GAUSSIAN);
  CHECK(r.dim == 4);
  CHECK(r.target_entropy == -2.0);
  CHECK(r.log_std_min == -6.0 && r.log_std_max == 0.5);
  CHECK(r.delta == 0.25);
  CHECK(r.delta_optimizer == ERA_DELTA_OPTIMIZER_SGD);
  CHECK(r.delta_lr == 0.01 && r.delta_beta1 == 0.8 && r.delta_beta2 == 0.99 && r.delta_eps == 1e-6);
  /* the config can build an identical head */
  EXPECT_NEW_OK(&r);
  /* current delta is reported */
  CHECK_OK(era_head_set_delta(g, -0.75));
  CHECK_OK(era_head_config(g, &r));
  CHECK(r.delta == -0.75);
  CHECK_STATUS(era_head_config(NULL, &r), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_head_config(g, NULL), ERA_STATUS_NULL_POINTER);
  /* struct_size < 8 -> INVALID_ARGUMENT; a short struct gets at most struct_size bytes */
  memset(&r, 0x5A, sizeof r);
  r.struct_size = 4;
  EraConfig before = r;
  CHECK_STATUS(era_head_config(g, &r), ERA_STATUS_INVALID_ARGUMENT);
  CHECK(memcmp(&r, &before, sizeof r) == 0);
  memset(&r, 0x5A, sizeof r);
  r.struct_size = (uint32_t)offsetof(EraConfig, log_std_min);
  before = r;
  CHECK_OK(era_head_config(g, &r));
  CHECK(r.kind == ERA_HEAD_KIND_GAUSSIAN && r.dim == 4 && r.target_entropy == -2.0);
  CHECK(memcmp((char*)&r + offsetof(EraConfig, log_std_min), (char*)&before + offsetof(EraConfig, log_std_min),
               sizeof r - offsetof(EraConfig, log_std_min)) == 0);
  era_head_free(g);

  EraConfig s = softmax_cfg(7, 1.25);
  s.tau = 5.0;
  EraHead* sh = NULL;
  CHECK_OK(era_head_new(&s, &sh));
  CHECK_OK(era_head_kind(sh, &kind));
  CHECK(kind == ERA_HEAD_KIND_SOFTMAX);
  memset(&r, 0, sizeof r);
  r.struct_size = sizeof r;
  CHECK_OK(era_head_config(sh, &r));
  CHECK(r.kind == ERA_HEAD_KIND_SOFTMAX && r.num_classes == 7 && r.target_entropy == 1.25 && r.tau == 5.0);
  era_head_free(sh);

  EraConfig t = token_cfg();
  t.k = 3.0;
  t.omega_low = 0.3;
  t.omega_high = 2.5;
  t.top_fraction = 0.5;
  t.temperature = 0.8;
  t.advantage_scaling = 0;
  t.vocab_topk = 20;
  EraHead* th = NULL;
  CHECK_OK(era_head_new(&t, &th));
  CHECK_OK(era_head_kind(th, &kind));
  CHECK(kind == ERA_HEAD_KIND_TOKEN);
  memset(&r, 0, sizeof r);
  r.struct_size = sizeof r;
  CHECK_OK(era_head_config(th, &r));
  CHECK(r.kind == ERA_HEAD_KIND_TOKEN && r.k == 3.0 && r.omega_low == 0.3 && r.omega_high == 2.5 &&
        r.top_fraction == 0.5 && r.temperature == 0.8 && r.advantage_scaling == 0 && r.vocab_topk == 20);
  era_head_free(th);
}

int main(void) {
  test_head_new_generic();
  test_head_new_gaussian();
  test_head_new_softmax();
  test_head_new_token();
  test_free_kind_config();
  return check_finish();
}
