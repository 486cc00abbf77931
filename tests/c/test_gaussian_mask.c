/*
 * test_gaussian_mask.c: era_gaussian_forward_masked and era_gaussian_backward_masked
 * (docs/math.md#gaussian-mask) against an independent reference (the unmasked head of
 * the row's active count applied to its active sub-vector), and every error status.
 */
#include "check.h"
#include "helpers.h"

enum { B = 5, D = 4 };
static const double H0 = -2.0, LO = -6.0, HI = 1.0;

/* The masked row by the reference: the head of dimension a with target (a/D)*H0 and
 * compensation (a/D)*delta on the active entries; fill (or z, pass-through) elsewhere. */
static void ref_masked(const double* z, const double* mask, double delta, const double* fill, const double* g,
                       double* out, double* dz, double* dd) {
  double zs[D], gs[D], os[D], dzs[D], dds = 0;
  int idx[D], a = 0;
  for (int i = 0; i < D; i++)
    if (mask[i] != 0) {
      idx[a] = i;
      zs[a] = z[i];
      gs[a] = g ? g[i] : 0;
      a++;
    }
  double f = (double)a / D;
  if (a > 0) ref_gaussian(zs, a, H0 * f, delta * f, LO, HI, os, g ? gs : NULL, dzs, &dds);
  for (int i = 0; i < D; i++) {
    if (out) out[i] = fill ? *fill : z[i];
    if (dz) dz[i] = fill ? 0.0 : (g ? g[i] : 0.0);
  }
  for (int j = 0; j < a; j++) {
    if (out) out[idx[j]] = os[j];
    if (dz) dz[idx[j]] = dzs[j];
  }
  if (dd) *dd = a > 0 ? dds * f : 0.0;
}

static const double MASK[B * D] = {1, 1, 1, 1, /* all active */ 1, 0, 1, 0, /* two */ 0, 0, 0, 1, /* one */
                                   0, 0, 0, 0, /* none */ 0, 1, 1, 1};

static void test_values(EraHead* h) {
  SECTION("gaussian_forward_masked / backward_masked values");
  Rng rng = {11};
  double z[B * D], g[B * D], out[B * D], dz[B * D], ro[B * D], rdz[B * D], rdd[B];
  for (int i = 0; i < B * D; i++) {
    z[i] = 2.0 * rng_normal(&rng);
    g[i] = rng_normal(&rng);
  }
  int64_t shape[2] = {B, D}, sb[1] = {B};
  double mask[B * D];
  memcpy(mask, MASK, sizeof mask);
  DLTensor tz = tensor_f64(z, 2, shape), tm = tensor_f64(mask, 2, shape), to = tensor_f64(out, 2, shape);
  DLTensor tg = tensor_f64(g, 2, shape), tdz = tensor_f64(dz, 2, shape);
  double fill = -0.25, dscal = 0.3, gd = 0, drow[B] = {0.3, -0.5, 0.0, 1.0, 0.2}, gdrow[B];
  DLTensor tdel = tensor_f64(&dscal, 0, NULL), tgd = tensor_f64(&gd, 0, NULL);
  DLTensor tdr = tensor_f64(drow, 1, sb), tgdr = tensor_f64(gdrow, 1, sb);
  for (int pass = 0; pass < 2; pass++) {
    const double* fp = pass ? NULL : &fill;
    /* scalar delta: grad_delta is the sum over rows */
    CHECK_OK(era_gaussian_forward_masked(h, &tz, &tm, &tdel, fp, &to, NULL));
    CHECK_OK(era_gaussian_backward_masked(h, &tz, &tm, &tdel, fp, &tg, &tdz, &tgd, NULL));
    double sum = 0;
    for (int b = 0; b < B; b++) {
      ref_masked(z + b * D, mask + b * D, dscal, fp, g + b * D, ro + b * D, rdz + b * D, &rdd[b]);
      sum += rdd[b];
    }
    CHECK_ARRAY_CLOSE(out, ro, B * D, 1e-12, 1e-12);
    CHECK_ARRAY_CLOSE(dz, rdz, B * D, 1e-12, 1e-12);
    CHECK_NEAR(gd, sum, 1e-12);
    /* per-row delta: one d/d delta per row */
    CHECK_OK(era_gaussian_forward_masked(h, &tz, &tm, &tdr, fp, &to, NULL));
    CHECK_OK(era_gaussian_backward_masked(h, &tz, &tm, &tdr, fp, &tg, &tdz, &tgdr, NULL));
    for (int b = 0; b < B; b++) ref_masked(z + b * D, mask + b * D, drow[b], fp, g + b * D, ro + b * D, rdz + b * D, &rdd[b]);
    CHECK_ARRAY_CLOSE(out, ro, B * D, 1e-12, 1e-12);
    CHECK_ARRAY_CLOSE(dz, rdz, B * D, 1e-12, 1e-12);
    CHECK_ARRAY_CLOSE(gdrow, rdd, B, 1e-12, 1e-12);
  }
  /* delta NULL: the head's stored value; grad_delta may then be NULL */
  CHECK_OK(era_head_set_delta(h, 0.3));
  CHECK_OK(era_gaussian_forward_masked(h, &tz, &tm, NULL, NULL, &to, NULL));
  CHECK_OK(era_gaussian_backward_masked(h, &tz, &tm, NULL, NULL, &tg, &tdz, NULL, NULL));
  for (int b = 0; b < B; b++) ref_masked(z + b * D, mask + b * D, 0.3, NULL, g + b * D, ro + b * D, rdz + b * D, NULL);
  CHECK_ARRAY_CLOSE(out, ro, B * D, 1e-12, 1e-12);
  CHECK_ARRAY_CLOSE(dz, rdz, B * D, 1e-12, 1e-12);
  CHECK_OK(era_head_set_delta(h, 0.0));

  SECTION("gaussian_forward_masked: a mask of ones is era_gaussian_forward_delta, bit for bit");
  float zf[B * D], mf[B * D], of1[B * D], of2[B * D], df = 0.3f;
  f64_to_f32_array(z, zf, B * D);
  for (int i = 0; i < B * D; i++) mf[i] = 1.0f;
  DLTensor tzf = tensor_f32(zf, 2, shape), tmf = tensor_f32(mf, 2, shape);
  DLTensor to1 = tensor_f32(of1, 2, shape), to2 = tensor_f32(of2, 2, shape), tdf = tensor_f32(&df, 0, NULL);
  CHECK_OK(era_gaussian_forward_delta(h, &tzf, &tdf, &to1, NULL));
  CHECK_OK(era_gaussian_forward_masked(h, &tzf, &tmf, &tdf, &fill, &to2, NULL));
  CHECK(memcmp(of1, of2, sizeof of1) == 0);
  /* f32 with a mixed mask: within f32 rounding of the f64 reference */
  for (int i = 0; i < B * D; i++) mf[i] = (float)mask[i];
  CHECK_OK(era_gaussian_forward_masked(h, &tzf, &tmf, &tdf, &fill, &to2, NULL));
  double o64[B * D];
  f32_to_f64_array(of2, o64, B * D);
  for (int b = 0; b < B; b++) {
    double zr[D];
    for (int i = 0; i < D; i++) zr[i] = (double)zf[b * D + i];
    ref_masked(zr, mask + b * D, 0.3, &fill, NULL, ro + b * D, NULL, NULL);
  }
  CHECK_ARRAY_CLOSE(o64, ro, B * D, 1e-5, 1e-5);
  /* in place: out == z */
  double zc[B * D];
  memcpy(zc, z, sizeof zc);
  DLTensor tzc = tensor_f64(zc, 2, shape);
  CHECK_OK(era_gaussian_forward_masked(h, &tzc, &tm, &tdel, NULL, &tzc, NULL));
  for (int b = 0; b < B; b++) ref_masked(z + b * D, mask + b * D, dscal, NULL, NULL, ro + b * D, NULL, NULL);
  CHECK_ARRAY_CLOSE(zc, ro, B * D, 1e-12, 1e-12);
}

static void test_errors(EraHead* h) {
  SECTION("gaussian_forward_masked / backward_masked errors");
  double z[B * D] = {0}, out[B * D], g[B * D] = {0}, dz[B * D], mask[B * D], dscal = 0.0, gd;
  memcpy(mask, MASK, sizeof mask);
  int64_t shape[2] = {B, D}, swrong[2] = {B, D - 1}, sb1[1] = {B + 1};
  DLTensor tz = tensor_f64(z, 2, shape), tm = tensor_f64(mask, 2, shape), to = tensor_f64(out, 2, shape);
  DLTensor tg = tensor_f64(g, 2, shape), tdz = tensor_f64(dz, 2, shape), tdel = tensor_f64(&dscal, 0, NULL);
  DLTensor tgd = tensor_f64(&gd, 0, NULL);
  /* NULL pointers */
  CHECK_STATUS(era_gaussian_forward_masked(NULL, &tz, &tm, &tdel, NULL, &to, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_forward_masked(h, NULL, &tm, &tdel, NULL, &to, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_forward_masked(h, &tz, NULL, &tdel, NULL, &to, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_forward_masked(h, &tz, &tm, &tdel, NULL, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_backward_masked(NULL, &tz, &tm, &tdel, NULL, &tg, &tdz, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_backward_masked(h, &tz, NULL, &tdel, NULL, &tg, &tdz, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_backward_masked(h, &tz, &tm, &tdel, NULL, NULL, &tdz, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_backward_masked(h, &tz, &tm, &tdel, NULL, &tg, NULL, NULL, NULL), ERA_STATUS_NULL_POINTER);
  /* grad_delta without delta */
  CHECK_STATUS(era_gaussian_backward_masked(h, &tz, &tm, NULL, NULL, &tg, &tdz, &tgd, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_ERR_MENTIONS("grad_delta");
  /* a mask entry other than 0 or 1 */
  mask[5] = 0.5;
  CHECK_STATUS(era_gaussian_forward_masked(h, &tz, &tm, &tdel, NULL, &to, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_ERR_MENTIONS("mask");
  mask[5] = NAN;
  CHECK_STATUS(era_gaussian_backward_masked(h, &tz, &tm, &tdel, NULL, &tg, &tdz, &tgd, NULL), ERA_STATUS_INVALID_ARGUMENT);
  mask[5] = 0.0;
  /* shapes */
  DLTensor tmw = tensor_f64(mask, 2, swrong);
  CHECK_STATUS(era_gaussian_forward_masked(h, &tz, &tmw, &tdel, NULL, &to, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_gaussian_backward_masked(h, &tz, &tmw, &tdel, NULL, &tg, &tdz, NULL, NULL), ERA_STATUS_INVALID_SHAPE);
  double drow[B + 1] = {0};
  DLTensor tdw = tensor_f64(drow, 1, sb1);
  CHECK_STATUS(era_gaussian_forward_masked(h, &tz, &tm, &tdw, NULL, &to, NULL), ERA_STATUS_INVALID_SHAPE);
  int64_t sbb[1] = {B};
  double drow5[B] = {0}, gdw[B + 1];
  DLTensor tdr = tensor_f64(drow5, 1, sbb), tgdw = tensor_f64(gdw, 1, sb1);
  CHECK_STATUS(era_gaussian_backward_masked(h, &tz, &tm, &tdr, NULL, &tg, &tdz, &tgdw, NULL), ERA_STATUS_INVALID_SHAPE);
  DLTensor tz0 = tensor_f64(z, 0, NULL);
  CHECK_STATUS(era_gaussian_forward_masked(h, &tz0, &tz0, &tdel, NULL, &to, NULL), ERA_STATUS_INVALID_SHAPE);
  /* a last axis other than the head's D */
  double zwd[B * (D + 1)] = {0};
  int64_t swd2[2] = {B, D + 1};
  DLTensor tzw = tensor_f64(zwd, 2, swd2), tmw2 = tensor_f64(zwd, 2, swd2);
  double owd[B * (D + 1)];
  DLTensor tow = tensor_f64(owd, 2, swd2);
  CHECK_STATUS(era_gaussian_forward_masked(h, &tzw, &tmw2, &tdel, NULL, &tow, NULL), ERA_STATUS_INVALID_SHAPE);
  /* dtypes */
  float mf[B * D] = {0};
  DLTensor tmf = tensor_f32(mf, 2, shape);
  CHECK_STATUS(era_gaussian_forward_masked(h, &tz, &tmf, &tdel, NULL, &to, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_gaussian_backward_masked(h, &tz, &tmf, &tdel, NULL, &tg, &tdz, NULL, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  uint8_t mb[B * D] = {0};
  DLTensor tmb = tensor(mb, (DLDataType){kDLUInt, 8, 1}, 2, shape, NULL);
  CHECK_STATUS(era_gaussian_forward_masked(h, &tz, &tmb, &tdel, NULL, &to, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  int32_t zi[B * D] = {0};
  DLTensor tzi = tensor(zi, DT_I32, 2, shape, NULL), tmi = tensor(zi, DT_I32, 2, shape, NULL);
  CHECK_STATUS(era_gaussian_forward_masked(h, &tzi, &tmi, NULL, NULL, &to, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  /* delta: NaN, infeasible */
  double dnan = NAN, dbig = 100.0;
  DLTensor tdnan = tensor_f64(&dnan, 0, NULL), tdbig = tensor_f64(&dbig, 0, NULL);
  CHECK_STATUS(era_gaussian_forward_masked(h, &tz, &tm, &tdnan, NULL, &to, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_gaussian_forward_masked(h, &tz, &tm, &tdbig, NULL, &to, NULL), ERA_STATUS_INFEASIBLE_TARGET);
  CHECK_STATUS(era_gaussian_backward_masked(h, &tz, &tm, &tdbig, NULL, &tg, &tdz, &tgd, NULL), ERA_STATUS_INFEASIBLE_TARGET);
  /* overlapping outputs */
  CHECK_STATUS(era_gaussian_backward_masked(h, &tz, &tm, &tdel, NULL, &tg, &tdz, &tdz, NULL), ERA_STATUS_INVALID_LAYOUT);
  /* a head of another kind */
  EraHead* sm = new_softmax(D, 0.5, 4.0);
  CHECK_STATUS(era_gaussian_forward_masked(sm, &tz, &tm, &tdel, NULL, &to, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_gaussian_backward_masked(sm, &tz, &tm, &tdel, NULL, &tg, &tdz, NULL, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  era_head_free(sm);
  /* outputs are written only on success */
  for (int i = 0; i < B * D; i++) out[i] = 42.0;
  mask[0] = 2.0;
  CHECK_STATUS(era_gaussian_forward_masked(h, &tz, &tm, &tdel, NULL, &to, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK(out[0] == 42.0 && out[B * D - 1] == 42.0);
}

int main(void) {
  EraHead* h = new_gaussian(D, H0, LO, HI);
  CHECK(h != NULL);
  if (h) {
    test_values(h);
    test_errors(h);
  }
  era_head_free(h);
  return check_finish();
}
