/* test_gaussian.c: the Gaussian head (docs/math.md#gaussian-head) through the C API:
 * worked example, batches, ranks, strides, in-place, degenerate and non-finite inputs.
 * The delta API is in test_gaussian_delta.c, the entropies in test_gaussian_entropy.c. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "helpers.h"

#define MAXN 4096

static void test_worked_example(void) {
  SECTION("gaussian worked example f64");
  EraHead* h = new_gaussian(3, -1.5, -5.0, 0.0);
  CHECK(h != NULL);
  if (!h) return;
  double z[3] = {0.5, -1.0, 2.0}, out[3], g[3] = {1, 2, -1}, dz[3];
  double want_out[3] = {-1.009114, -0.225164, -4.522537};
  double want_dz[3] = {-1.546046, -0.570133, 2.116179};
  int64_t shape[1] = {3};
  CHECK_OK(fwd_f64(h, z, out, 1, shape));
  CHECK_ARRAY_NEAR(out, want_out, 3, 1e-5);
  CHECK_OK(bwd_f64(h, z, g, dz, 1, shape));
  CHECK_ARRAY_NEAR(dz, want_dz, 3, 1e-5);
  /* z is not modified */
  CHECK(z[0] == 0.5 && z[1] == -1.0 && z[2] == 2.0);
  /* the entropy before the clip is exactly H0; nothing clips here */
  double ent = 0;
  CHECK_OK(ent_f64(h, out, &ent, 1, shape));
  CHECK_NEAR(ent, -1.5, 1e-9);
  CHECK_NEAR(ent, out[0] + out[1] + out[2] + 1.5 * L2PE, 1e-12);
  /* a non-NULL stream is ignored on the CPU */
  DLTensor tz = tensor_f64(z, 1, shape), to = tensor_f64(out, 1, shape);
  memset(out, 0, sizeof out);
  CHECK_OK(era_head_forward(h, &tz, &to, (void*)(uintptr_t)0x1234));
  CHECK_ARRAY_NEAR(out, want_out, 3, 1e-5);
  /* kDLCUDAHost (pinned host memory) is accepted in a CPU build */
  tz.device.device_type = kDLCUDAHost;
  to.device.device_type = kDLCUDAHost;
  memset(out, 0, sizeof out);
  CHECK_OK(era_head_forward(h, &tz, &to, NULL));
  CHECK_ARRAY_NEAR(out, want_out, 3, 1e-5);

  SECTION("gaussian worked example f32");
  float zf[3] = {0.5f, -1.0f, 2.0f}, of[3], gf[3] = {1, 2, -1}, dzf[3];
  double o64[3], d64[3];
  CHECK_OK(fwd_f32(h, zf, of, 1, shape));
  f32_to_f64_array(of, o64, 3);
  CHECK_ARRAY_NEAR(o64, want_out, 3, 1e-4);
  CHECK_OK(bwd_f32(h, zf, gf, dzf, 1, shape));
  f32_to_f64_array(dzf, d64, 3);
  CHECK_ARRAY_NEAR(d64, want_dz, 3, 1e-4);
  float entf = 0;
  DLTensor tof = tensor_f32(of, 1, shape), tef = tensor_f32(&entf, 0, NULL);
  CHECK_OK(era_head_entropy(h, &tof, &tef, NULL));
  CHECK_NEAR((double)entf, -1.5, 1e-4);
  era_head_free(h);
}

/* random batch vs the reference, f64 and f32, plus finite differences */
static void test_batch(void) {
  SECTION("gaussian batch vs reference");
  enum { B = 17, D = 6 };
  const double H0 = -3.0, LMIN = -5.0, LMAX = 1.0;
  EraHead* h = new_gaussian(D, H0, LMIN, LMAX);
  CHECK(h != NULL);
  if (!h) return;
  Rng rng = {42};
  static double z[B * D], g[B * D], out[B * D], dz[B * D], ro[B * D], rdz[B * D];
  for (int i = 0; i < B * D; i++) {
    z[i] = 3.0 * rng_normal(&rng);
    g[i] = rng_normal(&rng);
  }
  int clipped = 0;
  for (int b = 0; b < B; b++) {
    ref_gaussian(z + b * D, D, H0, 0.0, LMIN, LMAX, ro + b * D, g + b * D, rdz + b * D, NULL);
    for (int j = 0; j < D; j++) clipped += ro[b * D + j] == LMIN;
  }
  CHECK_MSG(clipped > 0, "the test data should exercise the clip (got %d clipped)", clipped);
  int64_t shape[2] = {B, D};
  CHECK_OK(fwd_f64(h, z, out, 2, shape));
  CHECK_ARRAY_CLOSE(out, ro, B * D, 1e-12, 1e-12);
  CHECK_OK(bwd_f64(h, z, g, dz, 2, shape));
  CHECK_ARRAY_CLOSE(dz, rdz, B * D, 1e-12, 1e-10);

  /* finite differences of the library's own forward */
  static double zp[B * D], op[B * D], fd[B * D];
  memcpy(zp, z, sizeof z);
  const double eps = 1e-6;
  for (int i = 0; i < B * D; i++) {
    int b = i / D;
    double save = zp[i], lp = 0, lm = 0;
    zp[i] = save + eps;
    fwd_f64(h, zp, op, 2, shape);
    for (int j = 0; j < D; j++) lp += g[b * D + j] * op[b * D + j];
    zp[i] = save - eps;
    fwd_f64(h, zp, op, 2, shape);
    for (int j = 0; j < D; j++) lm += g[b * D + j] * op[b * D + j];
    zp[i] = save;
    fd[i] = (lp - lm) / (2 * eps);
  }
  CHECK_ARRAY_CLOSE(dz, fd, B * D, 1e-6, 1e-5);

  SECTION("gaussian batch f32");
  static float zf[B * D], gf[B * D], of[B * D], dzf[B * D];
  static double o64[B * D], d64[B * D];
  f64_to_f32_array(z, zf, B * D);
  f64_to_f32_array(g, gf, B * D);
  CHECK_OK(fwd_f32(h, zf, of, 2, shape));
  f32_to_f64_array(of, o64, B * D);
  CHECK_ARRAY_CLOSE(o64, ro, B * D, 1e-4, 1e-5);
  CHECK_OK(bwd_f32(h, zf, gf, dzf, 2, shape));
  f32_to_f64_array(dzf, d64, B * D);
  CHECK_ARRAY_CLOSE(d64, rdz, B * D, 1e-4, 1e-4);

  SECTION("gaussian entropy bound on random rows");
  static double ent[B];
  CHECK_OK(ent_f64(h, out, ent, 2, shape));
  int ok = 1, exact = 1;
  for (int b = 0; b < B; b++) {
    double s = 0;
    for (int j = 0; j < D; j++) s += out[b * D + j];
    if (!(ent[b] >= H0 - 1e-9)) ok = 0;
    if (fabs(ent[b] - (s + 0.5 * D * L2PE)) > 1e-10) exact = 0;
  }
  CHECK(ok);
  CHECK(exact);
  /* many more rows, extreme scales */
  enum { BB = 400 };
  static double zz[BB * D], oo[BB * D], ee[BB];
  for (int b = 0; b < BB; b++) {
    double scale = pow(10.0, rng_range(&rng, -2, 3));
    for (int j = 0; j < D; j++) zz[b * D + j] = scale * rng_normal(&rng);
    if (b % 50 == 0) /* one-hot extremes */
      for (int j = 0; j < D; j++) zz[b * D + j] = (j == b / 50 % D) ? 1e4 : -1e4;
  }
  int64_t sh2[2] = {BB, D};
  CHECK_OK(fwd_f64(h, zz, oo, 2, sh2));
  CHECK_OK(ent_f64(h, oo, ee, 2, sh2));
  ok = 1;
  int inb = 1;
  for (int b = 0; b < BB; b++) {
    if (!(ee[b] >= H0 - 1e-9)) ok = 0;
    for (int j = 0; j < D; j++)
      if (!(oo[b * D + j] >= LMIN && oo[b * D + j] <= LMAX)) inb = 0;
  }
  CHECK_MSG(ok, "entropy below H0 on some row");
  CHECK_MSG(inb, "output outside [log_std_min, log_std_max]");
  era_head_free(h);
}

static void test_ranks(void) {
  SECTION("gaussian ranks");
  enum { D = 4 };
  const double H0 = -2.0;
  EraHead* h = new_gaussian(D, H0, -8.0, 0.0);
  CHECK(h != NULL);
  if (!h) return;
  Rng rng = {7};
  double z[2 * 3 * D], g[2 * 3 * D], out[2 * 3 * D], dz[2 * 3 * D], ro[2 * 3 * D], rdz[2 * 3 * D];
  for (int i = 0; i < 2 * 3 * D; i++) {
    z[i] = rng_normal(&rng);
    g[i] = rng_normal(&rng);
  }
  for (int r = 0; r < 6; r++) ref_gaussian(z + r * D, D, H0, 0, -8, 0, ro + r * D, g + r * D, rdz + r * D, NULL);
  int64_t s3[3] = {2, 3, D};
  CHECK_OK(fwd_f64(h, z, out, 3, s3));
  CHECK_ARRAY_CLOSE(out, ro, 24, 1e-12, 1e-12);
  CHECK_OK(bwd_f64(h, z, g, dz, 3, s3));
  CHECK_ARRAY_CLOSE(dz, rdz, 24, 1e-12, 1e-10);
  double ent[6], rent[6];
  for (int r = 0; r < 6; r++) {
    rent[r] = 0.5 * D * L2PE;
    for (int j = 0; j < D; j++) rent[r] += ro[r * D + j];
  }
  CHECK_OK(ent_f64(h, out, ent, 3, s3));
  CHECK_ARRAY_CLOSE(ent, rent, 6, 1e-12, 1e-12);
  /* rank 4 with a unit dim */
  int64_t s4[4] = {2, 1, 3, D};
  memset(out, 0, sizeof out);
  CHECK_OK(fwd_f64(h, z, out, 4, s4));
  CHECK_ARRAY_CLOSE(out, ro, 24, 1e-12, 1e-12);
  /* entropy with a wrongly shaped output */
  int64_t es_bad[2] = {3, 2};
  DLTensor to = tensor_f64(out, 3, s3), te = tensor_f64(ent, 2, es_bad);
  CHECK_STATUS(era_head_entropy(h, &to, &te, NULL), ERA_STATUS_INVALID_SHAPE);
  int64_t es_rank[1] = {6};
  te = tensor_f64(ent, 1, es_rank);
  CHECK_STATUS(era_head_entropy(h, &to, &te, NULL), ERA_STATUS_INVALID_SHAPE);
  te = tensor_f64(ent, 3, s3);
  CHECK_STATUS(era_head_entropy(h, &to, &te, NULL), ERA_STATUS_INVALID_SHAPE);
  /* entropy of a single row: 0-d output */
  double e0 = 0;
  int64_t s1[1] = {D};
  CHECK_OK(ent_f64(h, out, &e0, 1, s1));
  CHECK_NEAR(e0, rent[0], 1e-12);
  era_head_free(h);
}

static void test_strides(void) {
  SECTION("gaussian strided views");
  enum { B = 5, D = 3 };
  const double H0 = -1.0;
  EraHead* h = new_gaussian(D, H0, -4.0, 0.5);
  CHECK(h != NULL);
  if (!h) return;
  Rng rng = {99};
  double z[B * D], g[B * D], ro[B * D], rdz[B * D];
  for (int i = 0; i < B * D; i++) {
    z[i] = 2 * rng_normal(&rng);
    g[i] = rng_normal(&rng);
  }
  for (int b = 0; b < B; b++) ref_gaussian(z + b * D, D, H0, 0, -4, 0.5, ro + b * D, g + b * D, rdz + b * D, NULL);
  int64_t shape[2] = {B, D};

  /* transposed storage: zt[j*B + b] = z[b, j]; strides {1, B} */
  double zt[B * D], gt[B * D], ot[B * D], dzt[B * D], back[B * D];
  for (int b = 0; b < B; b++)
    for (int j = 0; j < D; j++) {
      zt[j * B + b] = z[b * D + j];
      gt[j * B + b] = g[b * D + j];
    }
  int64_t st_t[2] = {1, B};
  DLTensor tz = tensor(zt, DT_F64, 2, shape, st_t), to = tensor(ot, DT_F64, 2, shape, st_t);
  CHECK_OK(era_head_forward(h, &tz, &to, NULL));
  for (int b = 0; b < B; b++)
    for (int j = 0; j < D; j++) back[b * D + j] = ot[j * B + b];
  CHECK_ARRAY_CLOSE(back, ro, B * D, 1e-12, 1e-12);
  DLTensor tg = tensor(gt, DT_F64, 2, shape, st_t), td = tensor(dzt, DT_F64, 2, shape, st_t);
  CHECK_OK(era_head_backward(h, &tz, &tg, &td, NULL));
  for (int b = 0; b < B; b++)
    for (int j = 0; j < D; j++) back[b * D + j] = dzt[j * B + b];
  CHECK_ARRAY_CLOSE(back, rdz, B * D, 1e-12, 1e-10);

  /* transposed input, compact output */
  double oc[B * D];
  DLTensor toc = tensor_f64(oc, 2, shape);
  CHECK_OK(era_head_forward(h, &tz, &toc, NULL));
  CHECK_ARRAY_CLOSE(oc, ro, B * D, 1e-12, 1e-12);

  /* every other row: input and output live in [2B, D] buffers */
  double z2[2 * B * D], o2[2 * B * D];
  for (int i = 0; i < 2 * B * D; i++) {
    z2[i] = 1e6; /* poison: must not be read into the result */
    o2[i] = -777.0;
  }
  for (int b = 0; b < B; b++) memcpy(z2 + 2 * b * D, z + b * D, sizeof(double) * D);
  int64_t st_e[2] = {2 * D, 1};
  DLTensor tz2 = tensor(z2, DT_F64, 2, shape, st_e), to2 = tensor(o2, DT_F64, 2, shape, st_e);
  CHECK_OK(era_head_forward(h, &tz2, &to2, NULL));
  int gaps = 1;
  for (int b = 0; b < B; b++) {
    memcpy(back + b * D, o2 + 2 * b * D, sizeof(double) * D);
    for (int j = 0; j < D; j++)
      if (o2[(2 * b + 1) * D + j] != -777.0) gaps = 0;
  }
  CHECK_ARRAY_CLOSE(back, ro, B * D, 1e-12, 1e-12);
  CHECK_MSG(gaps, "the gaps of a strided output were written");

  /* explicit compact strides are the same as NULL strides */
  int64_t st_c[2] = {D, 1};
  DLTensor tzc = tensor(z, DT_F64, 2, shape, st_c), toc2 = tensor(oc, DT_F64, 2, shape, st_c);
  memset(oc, 0, sizeof oc);
  CHECK_OK(era_head_forward(h, &tzc, &toc2, NULL));
  CHECK_ARRAY_CLOSE(oc, ro, B * D, 1e-12, 1e-12);

  /* byte_offset */
  double zo[B * D + 2];
  zo[0] = zo[1] = 1e6;
  memcpy(zo + 2, z, sizeof z);
  DLTensor tzo = tensor_f64(zo, 2, shape);
  tzo.byte_offset = 2 * sizeof(double);
  memset(oc, 0, sizeof oc);
  CHECK_OK(era_head_forward(h, &tzo, &toc, NULL));
  CHECK_ARRAY_CLOSE(oc, ro, B * D, 1e-12, 1e-12);

  SECTION("gaussian negative strides");
  /* rows reversed: zr holds row B-1-b at b; view with stride -D starting at the last row */
  double zr[B * D], orv[B * D];
  for (int b = 0; b < B; b++) memcpy(zr + (B - 1 - b) * D, z + b * D, sizeof(double) * D);
  int64_t st_n[2] = {-D, 1};
  DLTensor tzr = tensor(zr + (B - 1) * D, DT_F64, 2, shape, st_n);
  memset(oc, 0, sizeof oc);
  CHECK_OK(era_head_forward(h, &tzr, &toc, NULL));
  CHECK_ARRAY_CLOSE(oc, ro, B * D, 1e-12, 1e-12);
  /* negative stride on the output too (via byte_offset instead of the pointer) */
  DLTensor tor = tensor(orv, DT_F64, 2, shape, st_n);
  tor.byte_offset = (uint64_t)((B - 1) * D * sizeof(double));
  CHECK_OK(era_head_forward(h, &tzc, &tor, NULL));
  for (int b = 0; b < B; b++) memcpy(back + b * D, orv + (B - 1 - b) * D, sizeof(double) * D);
  CHECK_ARRAY_CLOSE(back, ro, B * D, 1e-12, 1e-12);
  /* columns reversed: stride -1 on the last dim */
  double zc[B * D];
  for (int b = 0; b < B; b++)
    for (int j = 0; j < D; j++) zc[b * D + (D - 1 - j)] = z[b * D + j];
  int64_t st_cn[2] = {D, -1};
  DLTensor tzcn = tensor(zc + (D - 1), DT_F64, 2, shape, st_cn);
  memset(oc, 0, sizeof oc);
  CHECK_OK(era_head_forward(h, &tzcn, &toc, NULL));
  CHECK_ARRAY_CLOSE(oc, ro, B * D, 1e-12, 1e-12);

  SECTION("gaussian broadcast input (stride 0)");
  /* a zero stride on an input is a broadcast: every row equals row 0 */
  int64_t st_b[2] = {0, 1};
  DLTensor tzb = tensor(z, DT_F64, 2, shape, st_b);
  CHECK_OK(era_head_forward(h, &tzb, &toc, NULL));
  int same = 1;
  for (int b = 0; b < B; b++)
    for (int j = 0; j < D; j++)
      if (fabs(oc[b * D + j] - ro[j]) > 1e-12) same = 0;
  CHECK(same);

  SECTION("gaussian in place");
  double zi[B * D];
  memcpy(zi, z, sizeof z);
  CHECK_OK(fwd_f64(h, zi, zi, 2, shape));
  CHECK_ARRAY_CLOSE(zi, ro, B * D, 1e-12, 1e-12);
  /* in place through a transposed view */
  for (int b = 0; b < B; b++)
    for (int j = 0; j < D; j++) zt[j * B + b] = z[b * D + j];
  tz = tensor(zt, DT_F64, 2, shape, st_t);
  CHECK_OK(era_head_forward(h, &tz, &tz, NULL));
  for (int b = 0; b < B; b++)
    for (int j = 0; j < D; j++) back[b * D + j] = zt[j * B + b];
  CHECK_ARRAY_CLOSE(back, ro, B * D, 1e-12, 1e-12);

  SECTION("gaussian in-place backward");
  /* grad_z may alias grad_out or z */
  double gi[B * D], zi2[B * D];
  memcpy(gi, g, sizeof g);
  CHECK_OK(bwd_f64(h, z, gi, gi, 2, shape));
  CHECK_ARRAY_CLOSE(gi, rdz, B * D, 1e-12, 1e-10);
  memcpy(zi2, z, sizeof z);
  CHECK_OK(bwd_f64(h, zi2, g, zi2, 2, shape));
  CHECK_ARRAY_CLOSE(zi2, rdz, B * D, 1e-12, 1e-10);

  SECTION("gaussian zero rows");
  double sentinel[D] = {-777, -777, -777};
  int64_t s0[2] = {0, D};
  CHECK_OK(fwd_f64(h, z, sentinel, 2, s0));
  CHECK(sentinel[0] == -777 && sentinel[1] == -777 && sentinel[2] == -777);
  CHECK_OK(bwd_f64(h, z, g, sentinel, 2, s0));
  CHECK(sentinel[0] == -777 && sentinel[1] == -777 && sentinel[2] == -777);
  int64_t s30[3] = {3, 0, D};
  CHECK_OK(fwd_f64(h, z, sentinel, 3, s30));
  CHECK(sentinel[0] == -777);
  /* zero rows with NULL data are fine too */
  DLTensor tn = tensor_f64(NULL, 2, s0), tn2 = tensor_f64(NULL, 2, s0);
  CHECK_OK(era_head_forward(h, &tn, &tn2, NULL));
  double e_dummy = -777;
  DLTensor te0 = tensor_f64(&e_dummy, 1, s0);
  CHECK_OK(era_head_entropy(h, &tn, &te0, NULL));
  CHECK(e_dummy == -777);
  era_head_free(h);
}

static void test_degenerate_and_nonfinite(void) {
  SECTION("gaussian D = 1");
  EraHead* h = new_gaussian(1, -1.0, -8.0, 0.0);
  CHECK(h != NULL);
  if (h) {
    double z[3] = {-4.0, 0.0, 100.0}, out[3], g[3] = {1, -2, 3}, dz[3];
    int64_t s[2] = {3, 1};
    CHECK_OK(fwd_f64(h, z, out, 2, s));
    double S = -1.0 - 0.5 * L2PE;
    for (int i = 0; i < 3; i++) CHECK_NEAR(out[i], S, 1e-12);
    CHECK_OK(bwd_f64(h, z, g, dz, 2, s));
    for (int i = 0; i < 3; i++) CHECK_NEAR(dz[i], 0.0, 1e-15);
    era_head_free(h);
  }

  SECTION("gaussian non-finite row");
  enum { D = 4 };
  h = new_gaussian(D, -2.0, -8.0, 0.0);
  CHECK(h != NULL);
  if (!h) return;
  double z[3 * D] = {0.1, 0.2, -0.3, 1.0, 0.5, NAN, 0.0, 1.0, -1.0, 2.0, 0.25, 0.0};
  double out[3 * D], ro[3 * D], g[3 * D], dz[3 * D], rdz[3 * D];
  for (int i = 0; i < 3 * D; i++) g[i] = 1.0 + 0.1 * i;
  int64_t s[2] = {3, D};
  CHECK_OK(fwd_f64(h, z, out, 2, s));
  ref_gaussian(z, D, -2.0, 0, -8, 0, ro, g, rdz, NULL);
  ref_gaussian(z + 2 * D, D, -2.0, 0, -8, 0, ro + 2 * D, g + 2 * D, rdz + 2 * D, NULL);
  CHECK_ARRAY_CLOSE(out, ro, D, 1e-12, 1e-12);
  CHECK_ARRAY_CLOSE(out + 2 * D, ro + 2 * D, D, 1e-12, 1e-12);
  int nonfinite = 0;
  for (int j = 0; j < D; j++) nonfinite += !isfinite(out[D + j]);
  CHECK_MSG(nonfinite > 0, "a NaN input row should give non-finite outputs");
  CHECK_OK(bwd_f64(h, z, g, dz, 2, s));
  CHECK_ARRAY_CLOSE(dz, rdz, D, 1e-12, 1e-10);
  CHECK_ARRAY_CLOSE(dz + 2 * D, rdz + 2 * D, D, 1e-12, 1e-10);
  era_head_free(h);
}

int main(void) {
  test_worked_example();
  test_batch();
  test_ranks();
  test_strides();
  test_degenerate_and_nonfinite();
  return check_finish();
}
