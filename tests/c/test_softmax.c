/* test_softmax.c: the softmax head (docs/math.md#softmax-head) through the C API:
 * worked example, batches, ranks, strides, in-place, the entropy bound on
 * random and adversarial rows, finite differences. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "helpers.h"

static void test_worked_example(void) {
  SECTION("softmax worked example f64");
  EraHead* h = new_softmax(4, 0.6, 4.0);
  CHECK(h != NULL);
  if (!h) return;
  double z[4] = {2, 0, -1, 0.5}, out[4], g[4] = {1, -0.5, 0.25, 0}, dz[4];
  double want_out[4] = {1.41745, 0.167547, 0, 0.325278};
  double want_dz[4] = {0.440352, -0.239131, -0.015823, -0.185398};
  int64_t s[1] = {4};
  CHECK_OK(fwd_f64(h, z, out, 1, s));
  CHECK_ARRAY_NEAR(out, want_out, 4, 1e-5);
  CHECK(out[2] == 0.0); /* the shift makes the smallest output exactly 0 */
  CHECK_NEAR(ref_entropy_logits(out, 4), 1.195788, 1e-5);
  double ent = 0;
  CHECK_OK(ent_f64(h, out, &ent, 1, s));
  CHECK_NEAR(ent, 1.195788, 1e-5);
  CHECK_OK(bwd_f64(h, z, g, dz, 1, s));
  CHECK_ARRAY_NEAR(dz, want_dz, 4, 1e-5);
  /* against the independent reference too */
  double ro[4], rdz[4];
  ref_softmax_head(z, 4, 0.6, 4.0, ro, g, rdz);
  CHECK_ARRAY_CLOSE(out, ro, 4, 1e-12, 1e-12);
  CHECK_ARRAY_CLOSE(dz, rdz, 4, 1e-12, 1e-10);

  SECTION("softmax worked example f32");
  float zf[4] = {2, 0, -1, 0.5f}, of[4], gf[4] = {1, -0.5f, 0.25f, 0}, dzf[4], ef = 0;
  double o64[4], d64[4];
  CHECK_OK(fwd_f32(h, zf, of, 1, s));
  f32_to_f64_array(of, o64, 4);
  CHECK_ARRAY_NEAR(o64, want_out, 4, 1e-4);
  CHECK_OK(bwd_f32(h, zf, gf, dzf, 1, s));
  f32_to_f64_array(dzf, d64, 4);
  CHECK_ARRAY_NEAR(d64, want_dz, 4, 1e-4);
  DLTensor to = tensor_f32(of, 1, s), te = tensor_f32(&ef, 0, NULL);
  CHECK_OK(era_head_entropy(h, &to, &te, NULL));
  CHECK_NEAR((double)ef, 1.195788, 1e-4);
  era_head_free(h);
}

static void test_batch(void) {
  SECTION("softmax batch vs reference");
  enum { B = 13, N = 7 };
  const double H0 = 1.1, TAU = 5.0;
  EraHead* h = new_softmax(N, H0, TAU);
  CHECK(h != NULL);
  if (!h) return;
  Rng rng = {2024};
  static double z[B * N], g[B * N], out[B * N], dz[B * N], ro[B * N], rdz[B * N], ent[B];
  for (int b = 0; b < B; b++) {
    double gs = 0;
    for (int j = 0; j < N; j++) {
      z[b * N + j] = 2.0 * rng_normal(&rng);
      g[b * N + j] = rng_normal(&rng);
      gs += g[b * N + j];
    }
    /* zero-sum cotangents so that finite differences of the shifted output
     * match the stop-gradient VJP */
    for (int j = 0; j < N; j++) g[b * N + j] -= gs / N;
    ref_softmax_head(z + b * N, N, H0, TAU, ro + b * N, g + b * N, rdz + b * N);
  }
  int64_t s[2] = {B, N};
  CHECK_OK(fwd_f64(h, z, out, 2, s));
  CHECK_ARRAY_CLOSE(out, ro, B * N, 1e-12, 1e-12);
  CHECK_OK(bwd_f64(h, z, g, dz, 2, s));
  CHECK_ARRAY_CLOSE(dz, rdz, B * N, 1e-12, 1e-10);
  CHECK_OK(ent_f64(h, out, ent, 2, s));
  int ok = 1, ord = 1;
  for (int b = 0; b < B; b++) {
    if (!(ent[b] >= H0) || fabs(ent[b] - ref_entropy_logits(out + b * N, N)) > 1e-12) ok = 0;
    /* the map preserves the order of the classes */
    for (int i = 0; i < N; i++)
      for (int j = 0; j < N; j++)
        if (z[b * N + i] > z[b * N + j] && !(out[b * N + i] >= out[b * N + j])) ord = 0;
  }
  CHECK(ok);
  CHECK(ord);

  static double zp[B * N], op[B * N], fd[B * N];
  memcpy(zp, z, sizeof z);
  const double eps = 1e-6;
  for (int i = 0; i < B * N; i++) {
    int b = i / N;
    double save = zp[i], lp = 0, lm = 0;
    zp[i] = save + eps;
    fwd_f64(h, zp, op, 2, s);
    for (int j = 0; j < N; j++) lp += g[b * N + j] * op[b * N + j];
    zp[i] = save - eps;
    fwd_f64(h, zp, op, 2, s);
    for (int j = 0; j < N; j++) lm += g[b * N + j] * op[b * N + j];
    zp[i] = save;
    fd[i] = (lp - lm) / (2 * eps);
  }
  CHECK_ARRAY_CLOSE(dz, fd, B * N, 1e-6, 1e-5);

  SECTION("softmax batch f32");
  static float zf[B * N], gf[B * N], of[B * N], dzf[B * N];
  static double o64[B * N], d64[B * N];
  f64_to_f32_array(z, zf, B * N);
  f64_to_f32_array(g, gf, B * N);
  CHECK_OK(fwd_f32(h, zf, of, 2, s));
  f32_to_f64_array(of, o64, B * N);
  CHECK_ARRAY_CLOSE(o64, ro, B * N, 1e-4, 1e-4);
  CHECK_OK(bwd_f32(h, zf, gf, dzf, 2, s));
  f32_to_f64_array(dzf, d64, B * N);
  CHECK_ARRAY_CLOSE(d64, rdz, B * N, 1e-4, 1e-4);

  SECTION("softmax rank 3");
  int64_t s3[3] = {B, 1, N};
  memset(out, 0, sizeof out);
  CHECK_OK(fwd_f64(h, z, out, 3, s3));
  CHECK_ARRAY_CLOSE(out, ro, B * N, 1e-12, 1e-12);
  memset(dz, 0, sizeof dz);
  CHECK_OK(bwd_f64(h, z, g, dz, 3, s3));
  CHECK_ARRAY_CLOSE(dz, rdz, B * N, 1e-12, 1e-10);
  double ent2[B];
  DLTensor to3 = tensor_f64(out, 3, s3), te2 = tensor_f64(ent2, 2, s3);
  CHECK_OK(era_head_entropy(h, &to3, &te2, NULL));
  CHECK_ARRAY_CLOSE(ent2, ent, B, 1e-13, 1e-13);

  SECTION("softmax strides / in place / zero rows");
  /* transposed */
  static double zt[B * N], ot[B * N], gt[B * N], dzt[B * N], back[B * N];
  for (int b = 0; b < B; b++)
    for (int j = 0; j < N; j++) {
      zt[j * B + b] = z[b * N + j];
      gt[j * B + b] = g[b * N + j];
    }
  int64_t st[2] = {1, B};
  DLTensor tz = tensor(zt, DT_F64, 2, s, st), tot = tensor(ot, DT_F64, 2, s, st);
  CHECK_OK(era_head_forward(h, &tz, &tot, NULL));
  for (int b = 0; b < B; b++)
    for (int j = 0; j < N; j++) back[b * N + j] = ot[j * B + b];
  CHECK_ARRAY_CLOSE(back, ro, B * N, 1e-12, 1e-12);
  DLTensor tg = tensor(gt, DT_F64, 2, s, st), tdz = tensor(dzt, DT_F64, 2, s, st);
  CHECK_OK(era_head_backward(h, &tz, &tg, &tdz, NULL));
  for (int b = 0; b < B; b++)
    for (int j = 0; j < N; j++) back[b * N + j] = dzt[j * B + b];
  CHECK_ARRAY_CLOSE(back, rdz, B * N, 1e-12, 1e-10);
  /* entropy from a transposed output */
  double ent3[B];
  int64_t se[1] = {B};
  DLTensor te3 = tensor_f64(ent3, 1, se);
  CHECK_OK(era_head_entropy(h, &tot, &te3, NULL));
  CHECK_ARRAY_CLOSE(ent3, ent, B, 1e-12, 1e-12);
  /* every other row, reversed (negative stride) */
  static double z2[2 * B * N], o2[2 * B * N];
  for (int i = 0; i < 2 * B * N; i++) z2[i] = o2[i] = -999.0;
  for (int b = 0; b < B; b++) memcpy(z2 + 2 * (B - 1 - b) * N, z + b * N, sizeof(double) * N);
  int64_t sn[2] = {-2 * N, 1};
  DLTensor tz2 = tensor(z2 + 2 * (B - 1) * N, DT_F64, 2, s, sn);
  DLTensor to = tensor_f64(out, 2, s);
  memset(out, 0, sizeof out);
  CHECK_OK(era_head_forward(h, &tz2, &to, NULL));
  CHECK_ARRAY_CLOSE(out, ro, B * N, 1e-12, 1e-12);
  /* in place */
  static double zi[B * N];
  memcpy(zi, z, sizeof z);
  CHECK_OK(fwd_f64(h, zi, zi, 2, s));
  CHECK_ARRAY_CLOSE(zi, ro, B * N, 1e-12, 1e-12);
  /* in-place backward: grad_z may alias grad_out */
  static double gi[B * N];
  memcpy(gi, g, sizeof g);
  CHECK_OK(bwd_f64(h, z, gi, gi, 2, s));
  CHECK_ARRAY_CLOSE(gi, rdz, B * N, 1e-12, 1e-10);
  memcpy(zi, z, sizeof z);
  CHECK_OK(bwd_f64(h, zi, g, zi, 2, s));
  CHECK_ARRAY_CLOSE(zi, rdz, B * N, 1e-12, 1e-10);
  /* zero rows */
  double sentinel[N];
  for (int j = 0; j < N; j++) sentinel[j] = -777;
  int64_t s0[2] = {0, N};
  CHECK_OK(fwd_f64(h, z, sentinel, 2, s0));
  CHECK_OK(bwd_f64(h, z, g, sentinel, 2, s0));
  int untouched = 1;
  for (int j = 0; j < N; j++) untouched &= sentinel[j] == -777;
  CHECK(untouched);
  era_head_free(h);
}

static void test_entropy_bound(void) {
  SECTION("softmax entropy bound, random and adversarial rows");
  const int ns[] = {2, 3, 10, 100, 1000, 32000};
  Rng rng = {77};
  for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
    int n = ns[ni];
    double tau = 4.0;
    double lo = 1.0 + log(log(tau) / tau), hi = 1.0 + log(n * log(tau) / tau);
    double targets[3] = {lo + 1e-3, 0.5 * (lo + hi), hi - 1e-3};
    enum { R = 12 };
    double* z = (double*)malloc(sizeof(double) * (size_t)n * R);
    double* out = (double*)malloc(sizeof(double) * (size_t)n * R);
    for (int ti = 0; ti < 3; ti++) {
      double H0 = targets[ti];
      EraHead* h = new_softmax((uint64_t)n, H0, tau);
      CHECK_MSG(h != NULL, "softmax head n=%d H0=%g", n, H0);
      if (!h) continue;
      for (int r = 0; r < R; r++) {
        double* row = z + (size_t)r * n;
        double scale = pow(10.0, -1.0 + 4.0 * r / (R - 1)); /* 0.1 .. 1000 */
        for (int j = 0; j < n; j++) row[j] = scale * rng_normal(&rng);
        if (r == 0)
          for (int j = 0; j < n; j++) row[j] = (j == 0) ? 1000.0 : -1000.0; /* one-hot */
        if (r == 1)
          for (int j = 0; j < n; j++) row[j] = 0.0; /* uniform */
        if (r == 2)
          for (int j = 0; j < n; j++) row[j] = (j < 2) ? 50.0 : 0.0; /* two-hot */
        if (r == 3)
          for (int j = 0; j < n; j++) row[j] = (j == n - 1) ? -1e4 : 0.0; /* one tiny */
      }
      int64_t s[2] = {R, n};
      CHECK_OK(fwd_f64(h, z, out, 2, s));
      double ent[R];
      CHECK_OK(ent_f64(h, out, ent, 2, s));
      double worst = INFINITY;
      int finite = 1;
      for (int r = 0; r < R; r++) {
        double e = ref_entropy_logits(out + (size_t)r * n, n);
        if (!isfinite(e) || !isfinite(ent[r])) finite = 0;
        if (e - H0 < worst) worst = e - H0;
        if (fabs(e - ent[r]) > 1e-9) finite = 0;
      }
      CHECK_MSG(finite, "n=%d H0=%g: non-finite or inconsistent entropies", n, H0);
      CHECK_MSG(worst >= 0.0, "n=%d H0=%g: entropy below target by %g", n, H0, -worst);
      era_head_free(h);
    }
    free(z);
    free(out);
  }
}

static void test_nonfinite_row(void) {
  SECTION("softmax non-finite row");
  enum { N = 5 };
  EraHead* h = new_softmax(N, 1.0, 4.0);
  CHECK(h != NULL);
  if (!h) return;
  double z[3 * N] = {0.1, 0.2, 0.3, -1, 2, NAN, 0, 0, 0, 0, 3, -2, 1, 0, 0.5};
  double out[3 * N], ro[3 * N];
  int64_t s[2] = {3, N};
  CHECK_OK(fwd_f64(h, z, out, 2, s));
  ref_softmax_head(z, N, 1.0, 4.0, ro, NULL, NULL);
  ref_softmax_head(z + 2 * N, N, 1.0, 4.0, ro + 2 * N, NULL, NULL);
  CHECK_ARRAY_CLOSE(out, ro, N, 1e-12, 1e-12);
  CHECK_ARRAY_CLOSE(out + 2 * N, ro + 2 * N, N, 1e-12, 1e-12);
  int nf = 0;
  for (int j = 0; j < N; j++) nf += !isfinite(out[N + j]);
  CHECK(nf > 0);
  era_head_free(h);
}

int main(void) {
  test_worked_example();
  test_batch();
  test_entropy_bound();
  test_nonfinite_row();
  return check_finish();
}
