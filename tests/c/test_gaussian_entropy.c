/* test_gaussian_entropy.c: the entropies that need no head through the C API: the truncated
 * normal entropy (era_truncated_normal_entropy) and the Gaussian and softmax entropies
 * (era_gaussian_entropy, era_softmax_entropy). */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "helpers.h"

static void test_truncated_normal(void) {
  SECTION("truncated normal entropy");
  enum { B = 3, D = 2 };
  double mean[B * D] = {0.3, -0.9, 0.0, 0.5, 1.5, -0.2};
  double lstd[B * D] = {-0.5, 0.7, 0.0, -2.0, log(0.5), 1.0};
  double ent[B], want[B];
  const double lo = -1.0, hi = 1.0;
  for (int b = 0; b < B; b++) {
    want[b] = 0;
    for (int j = 0; j < D; j++) want[b] += ref_tn_entropy(mean[b * D + j], exp(lstd[b * D + j]), lo, hi);
  }
  int64_t s[2] = {B, D}, se[1] = {B};
  DLTensor tm = tensor_f64(mean, 2, s), tl = tensor_f64(lstd, 2, s), te = tensor_f64(ent, 1, se);
  CHECK_OK(era_truncated_normal_entropy(&tm, &tl, lo, hi, &te, NULL));
  CHECK_ARRAY_CLOSE(ent, want, B, 1e-9, 1e-9);
  /* a truncated normal has less entropy than the Gaussian */
  for (int b = 0; b < B; b++) {
    double gauss = 0;
    for (int j = 0; j < D; j++) gauss += lstd[b * D + j] + 0.5 * L2PE;
    CHECK(ent[b] < gauss);
  }
  /* huge interval: the Gaussian entropy */
  double m0[D] = {0, 0}, l0[D] = {0, 0.5}, e0 = 0;
  int64_t sd[1] = {D};
  DLTensor tm0 = tensor_f64(m0, 1, sd), tl0 = tensor_f64(l0, 1, sd), te0 = tensor_f64(&e0, 0, NULL);
  CHECK_OK(era_truncated_normal_entropy(&tm0, &tl0, -1e6, 1e6, &te0, NULL));
  CHECK_NEAR(e0, 2 * 0.5 * L2PE + 0.5, 1e-9);
  /* infinite bounds are allowed: the Gaussian, and the half-normal 0.5*ln(pi*e*sigma^2/2) */
  CHECK_OK(era_truncated_normal_entropy(&tm0, &tl0, -INFINITY, INFINITY, &te0, NULL));
  CHECK_NEAR(e0, 2 * 0.5 * L2PE + 0.5, 1e-9);
  CHECK_OK(era_truncated_normal_entropy(&tm0, &tl0, 0.0, INFINITY, &te0, NULL));
  CHECK_NEAR(e0, 0.5 * log(3.14159265358979323846 * exp(1.0) / 2) * 2 + 0.5, 1e-9);
  /* another interval */
  CHECK_OK(era_truncated_normal_entropy(&tm0, &tl0, -0.5, 2.0, &te0, NULL));
  CHECK_NEAR(e0, ref_tn_entropy(0, 1, -0.5, 2.0) + ref_tn_entropy(0, exp(0.5), -0.5, 2.0), 1e-9);
  /* f32 */
  float mf[B * D], lf[B * D], ef[B];
  double e64[B];
  f64_to_f32_array(mean, mf, B * D);
  f64_to_f32_array(lstd, lf, B * D);
  DLTensor tmf = tensor_f32(mf, 2, s), tlf = tensor_f32(lf, 2, s), tef = tensor_f32(ef, 1, se);
  CHECK_OK(era_truncated_normal_entropy(&tmf, &tlf, lo, hi, &tef, NULL));
  f32_to_f64_array(ef, e64, B);
  CHECK_ARRAY_CLOSE(e64, want, B, 1e-4, 1e-4);

  SECTION("truncated normal entropy errors");
  CHECK_STATUS(era_truncated_normal_entropy(&tm, &tl, 1.0, 1.0, &te, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_truncated_normal_entropy(&tm, &tl, 1.0, -1.0, &te, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_truncated_normal_entropy(&tm, &tl, NAN, 1.0, &te, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_truncated_normal_entropy(&tm, &tl, -1.0, NAN, &te, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_truncated_normal_entropy(NULL, &tl, lo, hi, &te, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_truncated_normal_entropy(&tm, NULL, lo, hi, &te, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_truncated_normal_entropy(&tm, &tl, lo, hi, NULL, NULL), ERA_STATUS_NULL_POINTER);
  int64_t sbad[2] = {B, 1};
  DLTensor tlbad = tensor_f64(lstd, 2, sbad);
  CHECK_STATUS(era_truncated_normal_entropy(&tm, &tlbad, lo, hi, &te, NULL), ERA_STATUS_INVALID_SHAPE);
  int64_t sebad[1] = {B - 1};
  DLTensor tebad = tensor_f64(ent, 1, sebad);
  CHECK_STATUS(era_truncated_normal_entropy(&tm, &tl, lo, hi, &tebad, NULL), ERA_STATUS_INVALID_SHAPE);
  DLTensor tcuda = tm;
  tcuda.device.device_type = kDLCUDA;
  CHECK_STATUS(era_truncated_normal_entropy(&tcuda, &tl, lo, hi, &te, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  int32_t mi[B * D] = {0};
  DLTensor tmi = tensor(mi, DT_I32, 2, s, NULL);
  CHECK_STATUS(era_truncated_normal_entropy(&tmi, &tl, lo, hi, &te, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
}

/* Head-free entropies: era_gaussian_entropy and era_softmax_entropy. */
static void test_head_free_entropies(void) {
  SECTION("head-free gaussian entropy");
  enum { B = 3, D = 2 };
  double ls[B * D] = {-1.0, 0.5, -8.0, 0.0, 2.0, -3.5}, ent[B], want[B];
  for (int b = 0; b < B; b++) want[b] = ls[b * D] + ls[b * D + 1] + D * 0.5 * ERA_LN_2PI_E;
  int64_t s[2] = {B, D}, se[1] = {B};
  DLTensor tl = tensor_f64(ls, 2, s), te = tensor_f64(ent, 1, se);
  CHECK_OK(era_gaussian_entropy(&tl, &te, NULL));
  CHECK_ARRAY_NEAR(ent, want, B, 1e-12);
  /* the same as a Gaussian head's entropy of the same rows */
  EraHead* h = new_gaussian(D, -1.0, -8.0, 0.0);
  double ent_head[B];
  DLTensor teh = tensor_f64(ent_head, 1, se);
  CHECK_OK(era_head_entropy(h, &tl, &teh, NULL));
  CHECK_ARRAY_NEAR(ent_head, ent, B, 0.0);
  era_head_free(h);
  CHECK_NEAR(ERA_LN_2PI_E, log(2 * 3.14159265358979323846 * exp(1.0)), 1e-15);

  SECTION("head-free gaussian entropy errors");
  CHECK_STATUS(era_gaussian_entropy(NULL, &te, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_entropy(&tl, NULL, NULL), ERA_STATUS_NULL_POINTER);
  int64_t sebad[1] = {B + 1};
  DLTensor tebad = tensor_f64(ent, 1, sebad);
  CHECK_STATUS(era_gaussian_entropy(&tl, &tebad, NULL), ERA_STATUS_INVALID_SHAPE);
  float ef[B];
  DLTensor tef = tensor_f32(ef, 1, se);
  CHECK_STATUS(era_gaussian_entropy(&tl, &tef, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  DLTensor tcuda = tl;
  tcuda.device.device_type = kDLCUDA;
  CHECK_STATUS(era_gaussian_entropy(&tcuda, &te, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);

  SECTION("head-free categorical entropy");
  enum { N = 2, V = 4 };
  double z[N * V] = {0, 0, 0, 0, 2, -1, 0.5, 3}, hz[N];
  int64_t sz[2] = {N, V}, sh[1] = {N};
  DLTensor tz = tensor_f64(z, 2, sz), th = tensor_f64(hz, 1, sh);
  for (int k = 0; k < 2; k++) {
    double temperature = k == 0 ? 1.0 : 0.7;
    CHECK_OK(era_softmax_entropy(&tz, temperature, &th, NULL));
    CHECK_NEAR(hz[0], log((double)V), 1e-12);
    double m = 3 / temperature, sum = 0, sz_ = 0;
    for (int j = 0; j < V; j++) {
      double e = exp(z[V + j] / temperature - m);
      sum += e;
      sz_ += e * (z[V + j] / temperature - m);
    }
    CHECK_NEAR(hz[1], log(sum) - sz_ / sum, 1e-12);
  }
  /* bf16 logits, f32 entropies */
  uint16_t zb[N * V];
  for (int i = 0; i < N * V; i++) zb[i] = f32_to_bf16((float)z[i]);
  float hf[N];
  DLTensor tzb = tensor(zb, DT_BF16, 2, sz, NULL), thf = tensor_f32(hf, 1, sh);
  CHECK_OK(era_softmax_entropy(&tzb, 1.0, &thf, NULL));
  CHECK_NEAR(hf[0], log((double)V), 1e-6);

  SECTION("head-free categorical entropy errors");
  CHECK_STATUS(era_softmax_entropy(NULL, 1.0, &th, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_softmax_entropy(&tz, 1.0, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_softmax_entropy(&tz, 0.0, &th, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_softmax_entropy(&tz, -1.0, &th, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_softmax_entropy(&tz, NAN, &th, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_softmax_entropy(&tz, INFINITY, &th, NULL), ERA_STATUS_INVALID_ARGUMENT);
  DLTensor thbad = tensor_f64(hz, 1, sebad);
  CHECK_STATUS(era_softmax_entropy(&tz, 1.0, &thbad, NULL), ERA_STATUS_INVALID_SHAPE);
  int32_t zi[N * V] = {0};
  DLTensor tzi = tensor(zi, DT_I32, 2, sz, NULL);
  CHECK_STATUS(era_softmax_entropy(&tzi, 1.0, &th, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
}

int main(void) {
  test_truncated_normal();
  test_head_free_entropies();
  return check_finish();
}
