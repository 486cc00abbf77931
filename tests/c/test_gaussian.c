/* test_gaussian.c: the Gaussian head (docs/math.md#gaussian-head) through the C API:
 * worked example, batches, ranks, strides, in-place, entropy, delta learning,
 * delta as a tensor, truncated normal entropy. */
#include <pthread.h>
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
  test_worked_example();
  test_batch();
  test_ranks();
  test_strides();
  test_degenerate_and_nonfinite();
  test_delta_learning();
  test_delta_concurrency();
  test_forward_delta();
  test_truncated_normal();
  test_head_free_entropies();
  return check_finish();
}
