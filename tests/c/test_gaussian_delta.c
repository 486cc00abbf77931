/* test_gaussian_delta.c: the Gaussian head's delta (docs/math.md#gaussian-head) through the
 * C API: delta get/set and learning with each optimizer, concurrent updates, and the delta
 * as a tensor (era_gaussian_forward_delta, era_gaussian_backward_delta). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "helpers.h"

static EraHead* new_gaussian_opt(uint64_t D, double h0, EraDeltaOptimizer opt, double lr) {
  EraConfig c;
  era_config_default(ERA_HEAD_KIND_GAUSSIAN, &c);
  c.dim = D;
  c.target_entropy = h0;
  c.delta_optimizer = opt;
  c.delta_lr = lr;
  EraHead* h = NULL;
  if (era_head_new(&c, &h) != ERA_STATUS_OK) return NULL;
  return h;
}

static void test_delta_learning(void) {
  SECTION("delta get / set");
  const int D = 3;
  const double H0 = -1.5;
  const double dmax = D * (0.0 + 0.5 * L2PE) - H0; /* log_std_max = 0 */
  EraHead* h = new_gaussian_opt(D, H0, ERA_DELTA_OPTIMIZER_SGD, 0.1);
  CHECK(h != NULL);
  if (!h) return;
  double d = -1;
  CHECK_OK(era_head_delta(h, &d));
  CHECK(d == 0.0);
  CHECK_STATUS(era_head_delta(NULL, &d), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_head_delta(h, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_OK(era_head_set_delta(h, 0.5));
  CHECK_OK(era_head_delta(h, &d));
  CHECK(d == 0.5);
  CHECK_STATUS(era_head_set_delta(h, NAN), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_OK(era_head_delta(h, &d));
  CHECK(d == 0.5); /* unchanged by the failed call */
  CHECK_STATUS(era_head_set_delta(NULL, 0.0), ERA_STATUS_NULL_POINTER);
  /* clamped to the feasible maximum */
  CHECK_OK(era_head_set_delta(h, 1e9));
  CHECK_OK(era_head_delta(h, &d));
  CHECK_NEAR(d, dmax, 1e-9);
  double z[3] = {0.5, -1.0, 2.0}, out[3];
  int64_t s[1] = {3};
  CHECK_OK(fwd_f64(h, z, out, 1, s)); /* k == 0: every log-std at log_std_max */
  for (int i = 0; i < 3; i++) CHECK_NEAR(out[i], 0.0, 1e-9);
  CHECK_OK(era_head_set_delta(h, -2.0));
  CHECK_OK(era_head_delta(h, &d));
  CHECK(d == -2.0);

  SECTION("update_delta SGD");
  CHECK_OK(era_head_set_delta(h, 0.0));
  double nd = 123;
  CHECK_OK(era_head_update_delta(h, -1.0, &nd)); /* entropy above target: delta falls */
  CHECK_NEAR(nd, 0.0 - 0.1 * (-1.0 - H0), 1e-15);
  CHECK_OK(era_head_delta(h, &d));
  CHECK(d == nd);
  double expect = nd - 0.1 * (-2.5 - H0);
  CHECK_OK(era_head_update_delta(h, -2.5, NULL)); /* new_delta may be NULL */
  CHECK_OK(era_head_delta(h, &d));
  CHECK_NEAR(d, expect, 1e-15);
  CHECK(d > nd); /* entropy below target: delta rises */
  /* forward uses the learned delta */
  double ro[3];
  ref_gaussian(z, D, H0, d, -8.0, 0.0, ro, NULL, NULL, NULL);
  CHECK_OK(fwd_f64(h, z, out, 1, s));
  CHECK_ARRAY_CLOSE(out, ro, 3, 1e-12, 1e-12);
  /* updates clamp to the feasible maximum */
  CHECK_OK(era_head_update_delta(h, -1e6, &nd));
  CHECK_NEAR(nd, dmax, 1e-9);
  /* non-finite mean entropy */
  CHECK_OK(era_head_delta(h, &d));
  CHECK_STATUS(era_head_update_delta(h, NAN, &nd), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_head_update_delta(h, INFINITY, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_head_update_delta(h, -INFINITY, NULL), ERA_STATUS_INVALID_ARGUMENT);
  double d2;
  CHECK_OK(era_head_delta(h, &d2));
  CHECK(d2 == d);
  CHECK_STATUS(era_head_update_delta(NULL, 0.0, NULL), ERA_STATUS_NULL_POINTER);
  era_head_free(h);

  SECTION("update_delta FIXED");
  h = new_gaussian_opt(D, H0, ERA_DELTA_OPTIMIZER_FIXED, 0.1);
  CHECK(h != NULL);
  if (h) {
    CHECK_OK(era_head_set_delta(h, 0.3));
    nd = 0;
    CHECK_OK(era_head_update_delta(h, 5.0, &nd));
    CHECK(nd == 0.3);
    CHECK_OK(era_head_update_delta(h, -50.0, NULL));
    CHECK_OK(era_head_delta(h, &d));
    CHECK(d == 0.3);
    era_head_free(h);
  }

  SECTION("update_delta Adam");
  const double lr = 0.01;
  h = new_gaussian_opt(D, H0, ERA_DELTA_OPTIMIZER_ADAM, lr);
  CHECK(h != NULL);
  if (h) {
    CHECK_OK(era_head_update_delta(h, H0 + 2.0, &nd)); /* above target: falls by ~lr (bias-corrected) */
    CHECK_NEAR(nd, -lr, 1e-3 * lr);
    double nd2;
    CHECK_OK(era_head_update_delta(h, H0 + 2.0, &nd2)); /* same gradient: another ~lr */
    CHECK_NEAR(nd2 - nd, -lr, 1e-3 * lr);
    era_head_free(h);
  }
  h = new_gaussian_opt(D, H0, ERA_DELTA_OPTIMIZER_ADAM, lr);
  if (h) {
    CHECK_OK(era_head_update_delta(h, H0 - 0.5, &nd)); /* below target: rises */
    CHECK_NEAR(nd, lr, 1e-3 * lr);
    era_head_free(h);
  }

  SECTION("delta on other head kinds");
  EraHead* sm = new_softmax(4, 0.6, 4.0);
  EraHead* tk = new_token_default();
  CHECK(sm != NULL && tk != NULL);
  CHECK_STATUS(era_head_delta(sm, &d), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_head_set_delta(sm, 0.0), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_head_update_delta(sm, 0.0, &nd), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_head_delta(tk, &d), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_head_set_delta(tk, 0.0), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_head_update_delta(tk, 0.0, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  era_head_free(sm);
  era_head_free(tk);
}

typedef struct {
  EraHead* h;
  int iters;
  int failures;
  int forward;
} Worker;

static void* worker(void* arg) {
  Worker* w = (Worker*)arg;
  double z[8 * 3], out[8 * 3];
  for (int i = 0; i < 24; i++) z[i] = 0.1 * i - 1.0;
  int64_t s[2] = {8, 3};
  for (int i = 0; i < w->iters; i++) {
    if (w->forward) {
      if (fwd_f64(w->h, z, out, 2, s) != ERA_STATUS_OK) w->failures++;
      for (int j = 0; j < 24; j++)
        if (!(out[j] >= -8.0 && out[j] <= 0.0)) w->failures++;
    } else if (era_head_update_delta(w->h, -1.0, NULL) != ERA_STATUS_OK) {
      w->failures++;
    }
  }
  return NULL;
}

static void test_delta_concurrency(void) {
  SECTION("update_delta is synchronised");
  const double H0 = -1.5, lr = 1e-3;
  EraHead* h = new_gaussian_opt(3, H0, ERA_DELTA_OPTIMIZER_SGD, lr);
  CHECK(h != NULL);
  if (!h) return;
  Worker w[4] = {{h, 2000, 0, 0}, {h, 2000, 0, 0}, {h, 300, 0, 1}, {h, 300, 0, 1}};
  pthread_t th[4];
  for (int i = 0; i < 4; i++) CHECK(pthread_create(&th[i], NULL, worker, &w[i]) == 0);
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < 4; i++) CHECK(w[i].failures == 0);
  double want = 0.0;
  for (int i = 0; i < 4000; i++) want = want - lr * (-1.0 - H0);
  double d;
  CHECK_OK(era_head_delta(h, &d));
  CHECK_MSG(fabs(d - want) < 1e-9, "after 4000 concurrent SGD updates delta = %.17g, want %.17g (lost updates?)", d,
            want);
  era_head_free(h);
}

static void test_forward_delta(void) {
  SECTION("gaussian_forward_delta");
  enum { B = 4, D = 3 };
  const double H0 = -1.5;
  EraHead* h = new_gaussian_opt(D, H0, ERA_DELTA_OPTIMIZER_SGD, 0.1);
  CHECK(h != NULL);
  if (!h) return;
  Rng rng = {5};
  double z[B * D], g[B * D], out[B * D], out2[B * D], ro[B * D], dz[B * D], rdz[B * D];
  for (int i = 0; i < B * D; i++) {
    z[i] = 1.5 * rng_normal(&rng);
    g[i] = rng_normal(&rng);
  }
  int64_t shape[2] = {B, D};
  DLTensor tz = tensor_f64(z, 2, shape), to = tensor_f64(out, 2, shape);

  /* scalar (0-d) delta == forward after set_delta */
  double dscal = 0.7;
  DLTensor tdel = tensor_f64(&dscal, 0, NULL);
  CHECK_OK(era_gaussian_forward_delta(h, &tz, &tdel, &to, NULL));
  for (int b = 0; b < B; b++) ref_gaussian(z + b * D, D, H0, dscal, -8, 0, ro + b * D, NULL, NULL, NULL);
  CHECK_ARRAY_CLOSE(out, ro, B * D, 1e-12, 1e-12);
  CHECK_OK(era_head_set_delta(h, dscal));
  CHECK_OK(fwd_f64(h, z, out2, 2, shape));
  CHECK_ARRAY_CLOSE(out, out2, B * D, 1e-13, 1e-13);
  /* the tensor replaces (does not add to) the head's delta */
  CHECK_OK(era_head_set_delta(h, -0.4));
  CHECK_OK(era_gaussian_forward_delta(h, &tz, &tdel, &to, NULL));
  CHECK_ARRAY_CLOSE(out, ro, B * D, 1e-12, 1e-12);
  CHECK_OK(era_head_set_delta(h, 0.0));
  /* one-element [1] */
  int64_t s1[1] = {1};
  DLTensor tdel1 = tensor_f64(&dscal, 1, s1);
  memset(out, 0, sizeof out);
  CHECK_OK(era_gaussian_forward_delta(h, &tz, &tdel1, &to, NULL));
  CHECK_ARRAY_CLOSE(out, ro, B * D, 1e-12, 1e-12);
  /* per-row delta [B] */
  double drow[B] = {0.0, -1.0, 0.5, 2.0};
  int64_t sb[1] = {B};
  DLTensor tdr = tensor_f64(drow, 1, sb);
  CHECK_OK(era_gaussian_forward_delta(h, &tz, &tdr, &to, NULL));
  for (int b = 0; b < B; b++) ref_gaussian(z + b * D, D, H0, drow[b], -8, 0, ro + b * D, NULL, NULL, NULL);
  CHECK_ARRAY_CLOSE(out, ro, B * D, 1e-12, 1e-12);
  /* rank 3 z [2, 2, D] with per-row delta [2, 2] */
  int64_t s3[3] = {2, 2, D}, sd3[2] = {2, 2};
  DLTensor tz3 = tensor_f64(z, 3, s3), to3 = tensor_f64(out, 3, s3), td3 = tensor_f64(drow, 2, sd3);
  memset(out, 0, sizeof out);
  CHECK_OK(era_gaussian_forward_delta(h, &tz3, &td3, &to3, NULL));
  CHECK_ARRAY_CLOSE(out, ro, B * D, 1e-12, 1e-12);
  /* f32 */
  float zf[B * D], of[B * D], dfl[B];
  double o64[B * D];
  f64_to_f32_array(z, zf, B * D);
  f64_to_f32_array(drow, dfl, B);
  DLTensor tzf = tensor_f32(zf, 2, shape), tof = tensor_f32(of, 2, shape), tdf = tensor_f32(dfl, 1, sb);
  CHECK_OK(era_gaussian_forward_delta(h, &tzf, &tdf, &tof, NULL));
  f32_to_f64_array(of, o64, B * D);
  CHECK_ARRAY_CLOSE(o64, ro, B * D, 1e-4, 1e-5);

  SECTION("gaussian_forward_delta errors");
  double dmax = D * 0.5 * L2PE - H0;
  double dbad[B] = {0.0, dmax + 0.01, 0.0, 0.0};
  DLTensor tdb = tensor_f64(dbad, 1, sb);
  CHECK_STATUS(era_gaussian_forward_delta(h, &tz, &tdb, &to, NULL), ERA_STATUS_INFEASIBLE_TARGET);
  double dnan = NAN;
  DLTensor tdnan = tensor_f64(&dnan, 0, NULL);
  CHECK_STATUS(era_gaussian_forward_delta(h, &tz, &tdnan, &to, NULL), ERA_STATUS_INVALID_ARGUMENT);
  double dbig = 100.0;
  DLTensor tdbig = tensor_f64(&dbig, 0, NULL);
  CHECK_STATUS(era_gaussian_forward_delta(h, &tz, &tdbig, &to, NULL), ERA_STATUS_INFEASIBLE_TARGET);
  int64_t sbad[1] = {B + 1};
  double dwrong[B + 1] = {0};
  DLTensor tdw = tensor_f64(dwrong, 1, sbad);
  CHECK_STATUS(era_gaussian_forward_delta(h, &tz, &tdw, &to, NULL), ERA_STATUS_INVALID_SHAPE);
  int64_t s2d[2] = {B, 1};
  DLTensor tdw2 = tensor_f64(dwrong, 2, s2d);
  CHECK_STATUS(era_gaussian_forward_delta(h, &tz, &tdw2, &to, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_gaussian_forward_delta(NULL, &tz, &tdel, &to, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_forward_delta(h, NULL, &tdel, &to, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_forward_delta(h, &tz, NULL, &to, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_forward_delta(h, &tz, &tdel, NULL, NULL), ERA_STATUS_NULL_POINTER);
  int32_t di = 0;
  DLTensor tdi = tensor(&di, DT_I32, 0, NULL, NULL);
  CHECK_STATUS(era_gaussian_forward_delta(h, &tz, &tdi, &to, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  float dmix = 0.0f;
  DLTensor tdmix = tensor(&dmix, DT_F32, 0, NULL, NULL);
  CHECK_STATUS(era_gaussian_forward_delta(h, &tz, &tdmix, &to, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  EraHead* sm = new_softmax(3, 0.5, 4.0);
  CHECK_STATUS(era_gaussian_forward_delta(sm, &tz, &tdel, &to, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  double gdd = 0;
  DLTensor tgd = tensor_f64(&gdd, 0, NULL), tg = tensor_f64(g, 2, shape), tdz = tensor_f64(dz, 2, shape);
  CHECK_STATUS(era_gaussian_backward_delta(sm, &tz, &tdel, &tg, &tdz, &tgd, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  era_head_free(sm);

  SECTION("gaussian_backward_delta");
  /* scalar delta: grad_delta is the sum over rows */
  double rdd[B], rsum = 0;
  for (int b = 0; b < B; b++) {
    ref_gaussian(z + b * D, D, H0, dscal, -8, 0, NULL, g + b * D, rdz + b * D, &rdd[b]);
    rsum += rdd[b];
  }
  gdd = 12345;
  CHECK_OK(era_gaussian_backward_delta(h, &tz, &tdel, &tg, &tdz, &tgd, NULL));
  CHECK_ARRAY_CLOSE(dz, rdz, B * D, 1e-12, 1e-10);
  CHECK_CLOSE(gdd, rsum, 1e-12, 1e-10);
  /* finite difference in delta */
  const double eps = 1e-6;
  double lp = 0, lm = 0, dp = dscal + eps, dm = dscal - eps;
  DLTensor tdp = tensor_f64(&dp, 0, NULL), tdm = tensor_f64(&dm, 0, NULL);
  CHECK_OK(era_gaussian_forward_delta(h, &tz, &tdp, &to, NULL));
  for (int i = 0; i < B * D; i++) lp += g[i] * out[i];
  CHECK_OK(era_gaussian_forward_delta(h, &tz, &tdm, &to, NULL));
  for (int i = 0; i < B * D; i++) lm += g[i] * out[i];
  CHECK_CLOSE(gdd, (lp - lm) / (2 * eps), 1e-6, 1e-5);
  /* grad_delta NULL is fine */
  memset(dz, 0, sizeof dz);
  CHECK_OK(era_gaussian_backward_delta(h, &tz, &tdel, &tg, &tdz, NULL, NULL));
  CHECK_ARRAY_CLOSE(dz, rdz, B * D, 1e-12, 1e-10);
  /* per-row delta: per-row gradient, checked by finite differences row by row */
  double gdr[B];
  DLTensor tgdr = tensor_f64(gdr, 1, sb);
  CHECK_OK(era_gaussian_backward_delta(h, &tz, &tdr, &tg, &tdz, &tgdr, NULL));
  for (int b = 0; b < B; b++) ref_gaussian(z + b * D, D, H0, drow[b], -8, 0, NULL, g + b * D, rdz + b * D, &rdd[b]);
  CHECK_ARRAY_CLOSE(dz, rdz, B * D, 1e-12, 1e-10);
  CHECK_ARRAY_CLOSE(gdr, rdd, B, 1e-12, 1e-10);
  double fdr[B];
  for (int b = 0; b < B; b++) {
    double dd[B];
    memcpy(dd, drow, sizeof dd);
    DLTensor tdd = tensor_f64(dd, 1, sb);
    dd[b] = drow[b] + eps;
    era_gaussian_forward_delta(h, &tz, &tdd, &to, NULL);
    lp = 0;
    for (int j = 0; j < D; j++) lp += g[b * D + j] * out[b * D + j];
    dd[b] = drow[b] - eps;
    era_gaussian_forward_delta(h, &tz, &tdd, &to, NULL);
    lm = 0;
    for (int j = 0; j < D; j++) lm += g[b * D + j] * out[b * D + j];
    fdr[b] = (lp - lm) / (2 * eps);
  }
  CHECK_ARRAY_CLOSE(gdr, fdr, B, 1e-6, 1e-5);
  /* grad_delta with the wrong shape */
  DLTensor tgbad = tensor_f64(gdr, 1, sb); /* [B] for a scalar delta */
  CHECK_STATUS(era_gaussian_backward_delta(h, &tz, &tdel, &tg, &tdz, &tgbad, NULL), ERA_STATUS_INVALID_SHAPE);
  DLTensor tg0 = tensor_f64(&gdd, 0, NULL); /* [] for a per-row delta */
  CHECK_STATUS(era_gaussian_backward_delta(h, &tz, &tdr, &tg, &tdz, &tg0, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_gaussian_backward_delta(h, &tz, &tdb, &tg, &tdz, NULL, NULL), ERA_STATUS_INFEASIBLE_TARGET);
  /* grad_delta inside grad_z: two outputs sharing memory */
  DLTensor tgin = tensor_f64(dz + 1, 1, sb);
  CHECK_STATUS(era_gaussian_backward_delta(h, &tz, &tdr, &tg, &tdz, &tgin, NULL), ERA_STATUS_INVALID_LAYOUT);
  CHECK_STATUS(era_gaussian_backward_delta(h, &tz, NULL, &tg, &tdz, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_backward_delta(h, &tz, &tdel, NULL, &tdz, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_backward_delta(h, &tz, &tdel, &tg, NULL, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_backward_delta(NULL, &tz, &tdel, &tg, &tdz, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_backward_delta(h, NULL, &tdel, &tg, &tdz, NULL, NULL), ERA_STATUS_NULL_POINTER);
  era_head_free(h);
}

int main(void) {
  test_delta_learning();
  test_delta_concurrency();
  test_forward_delta();
  return check_finish();
}
