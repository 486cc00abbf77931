/* test_saved.c: the forward that also writes saved = softmax(z) and the backward
 * from it (docs/math.md#saved-softmax) through the C API, Gaussian and softmax
 * heads, float32 and float64: the same bits as era_gaussian_forward_delta /
 * era_gaussian_backward_delta and era_head_forward / era_head_backward (a scalar
 * delta tensor, a per-row delta tensor, the head's stored delta), saved against a
 * softmax computed here, strided and in-place layouts, and every error status of
 * era_gaussian_forward_saved, era_gaussian_backward_saved,
 * era_softmax_forward_saved and era_softmax_backward_saved, and of their forms
 * with the second residual dw/dh (era_softmax_forward_saved_dw,
 * era_softmax_backward_saved_dw). */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "helpers.h"

/* CHECK_SAME_BITS(a, b, bytes): the two buffers hold the same bytes. */
#define CHECK_SAME_BITS(a, b, bytes) \
  CHECK_MSG(memcmp((a), (b), (bytes)) == 0, "%s and %s differ (%zu bytes compared)", #a, #b, (size_t)(bytes))

/* The dtype under test: float32 or float64. */
typedef struct {
  DLDataType dt;
  size_t size;
  const char* name;
  double tol; /* saved against the softmax computed here */
} Dt;

static const Dt DTS[2] = {{{kDLFloat, 64, 1}, 8, "f64", 1e-14}, {{kDLFloat, 32, 1}, 4, "f32", 2e-6}};

static void put(const Dt* d, void* buf, const double* v, size_t n) {
  if (d->size == 8)
    memcpy(buf, v, n * sizeof(double));
  else
    for (size_t i = 0; i < n; i++) ((float*)buf)[i] = (float)v[i];
}
static void get(const Dt* d, const void* buf, double* v, size_t n) {
  if (d->size == 8)
    memcpy(v, buf, n * sizeof(double));
  else
    for (size_t i = 0; i < n; i++) v[i] = (double)((const float*)buf)[i];
}

/* The row-wise softmax of the values the library sees (z rounded to the dtype). */
static void softmax_rows(const Dt* d, const void* zbuf, int rows, int n, double* p) {
  double zr[256];
  for (int r = 0; r < rows; r++) {
    get(d, (const char*)zbuf + (size_t)r * n * d->size, zr, (size_t)n);
    ref_softmax(zr, n, p + (size_t)r * n);
  }
}

/* rows x n, row-major, into column-major (the transpose in memory) */
static void transpose(const Dt* d, const void* src, void* dst, int rows, int n) {
  for (int r = 0; r < rows; r++)
    for (int j = 0; j < n; j++)
      memcpy((char*)dst + ((size_t)j * rows + r) * d->size, (const char*)src + ((size_t)r * n + j) * d->size, d->size);
}

enum { B = 37, D = 6, N = 7 }; /* 37 rows: two groups of 16 and a tail */
#define GH0 (-3.0)
#define GMIN (-5.0)

static EraHead* gaussian_head(void) { return new_gaussian(D, GH0, GMIN, 0.0); }

/* ------------------------------------------------------------ Gaussian head */

static void test_gaussian(const Dt* d) {
  char sec[128];
  EraHead* h = gaussian_head();
  CHECK(h != NULL);
  if (!h) return;
  const size_t nz = (size_t)B * D, bytes = nz * d->size;
  Rng rng = {77};
  double zv[B * D], gv[B * D], p[B * D], sv[B * D], drow[B];
  for (size_t i = 0; i < nz; i++) {
    zv[i] = 2.0 * rng_normal(&rng);
    gv[i] = rng_normal(&rng);
  }
  for (int b = 0; b < B; b++) drow[b] = 0.1 * (b % 5) - 0.2;
  static unsigned char z[B * D * 8], g[B * D * 8], out[B * D * 8], out_ref[B * D * 8], saved[B * D * 8],
      dz[B * D * 8], dz_ref[B * D * 8], work[B * D * 8], work2[B * D * 8];
  unsigned char dscal[8], dper[B * 8], gd[B * 8], gd_ref[B * 8];
  put(d, z, zv, nz);
  put(d, g, gv, nz);
  double ds = 0.3;
  put(d, dscal, &ds, 1);
  put(d, dper, drow, B);
  softmax_rows(d, z, B, D, p);

  int64_t shape[2] = {B, D}, sb[1] = {B};
  DLTensor tz = tensor(z, d->dt, 2, shape, NULL), tg = tensor(g, d->dt, 2, shape, NULL);
  DLTensor to = tensor(out, d->dt, 2, shape, NULL), tor = tensor(out_ref, d->dt, 2, shape, NULL);
  DLTensor ts = tensor(saved, d->dt, 2, shape, NULL);
  DLTensor tdz = tensor(dz, d->dt, 2, shape, NULL), tdzr = tensor(dz_ref, d->dt, 2, shape, NULL);
  DLTensor tds = tensor(dscal, d->dt, 0, NULL, NULL), tdp = tensor(dper, d->dt, 1, sb, NULL);
  DLTensor tgd0 = tensor(gd, d->dt, 0, NULL, NULL), tgd0r = tensor(gd_ref, d->dt, 0, NULL, NULL);
  DLTensor tgdp = tensor(gd, d->dt, 1, sb, NULL), tgdpr = tensor(gd_ref, d->dt, 1, sb, NULL);

  snprintf(sec, sizeof sec, "gaussian %s: scalar delta tensor", d->name);
  SECTION(sec);
  CHECK_OK(era_gaussian_forward_delta(h, &tz, &tds, &tor, NULL));
  memset(out, 0xAB, bytes);
  memset(saved, 0xAB, bytes);
  CHECK_OK(era_gaussian_forward_saved(h, &tz, &tds, &to, &ts, NULL));
  CHECK_SAME_BITS(out, out_ref, bytes);
  get(d, saved, sv, nz);
  CHECK_ARRAY_CLOSE(sv, p, nz, d->tol, d->tol);
  /* and the reference forward, to show the delta tensor was used */
  {
    double ro[B * D], ov[B * D], zr[D];
    for (int b = 0; b < B; b++) {
      get(d, z + (size_t)b * D * d->size, zr, D);
      ref_gaussian(zr, D, GH0, ds, GMIN, 0.0, ro + b * D, NULL, NULL, NULL);
    }
    get(d, out, ov, nz);
    CHECK_ARRAY_CLOSE(ov, ro, nz, d->size == 8 ? 1e-12 : 1e-4, d->size == 8 ? 1e-12 : 1e-5);
  }
  memset(gd, 0, sizeof gd);
  memset(gd_ref, 0, sizeof gd_ref);
  CHECK_OK(era_gaussian_backward_delta(h, &tz, &tds, &tg, &tdzr, &tgd0r, NULL));
  memset(dz, 0xAB, bytes);
  CHECK_OK(era_gaussian_backward_saved(h, &ts, &tds, &tg, &tdz, &tgd0, NULL));
  CHECK_SAME_BITS(dz, dz_ref, bytes);
  CHECK_SAME_BITS(gd, gd_ref, d->size);
  /* grad_delta may be NULL */
  memset(dz, 0xAB, bytes);
  CHECK_OK(era_gaussian_backward_saved(h, &ts, &tds, &tg, &tdz, NULL, NULL));
  CHECK_SAME_BITS(dz, dz_ref, bytes);

  snprintf(sec, sizeof sec, "gaussian %s: per-row delta tensor", d->name);
  SECTION(sec);
  CHECK_OK(era_gaussian_forward_delta(h, &tz, &tdp, &tor, NULL));
  memset(out, 0xAB, bytes);
  memset(saved, 0xAB, bytes);
  CHECK_OK(era_gaussian_forward_saved(h, &tz, &tdp, &to, &ts, NULL));
  CHECK_SAME_BITS(out, out_ref, bytes);
  get(d, saved, sv, nz);
  CHECK_ARRAY_CLOSE(sv, p, nz, d->tol, d->tol);
  CHECK_OK(era_gaussian_backward_delta(h, &tz, &tdp, &tg, &tdzr, &tgdpr, NULL));
  memset(dz, 0xAB, bytes);
  memset(gd, 0xAB, sizeof gd);
  CHECK_OK(era_gaussian_backward_saved(h, &ts, &tdp, &tg, &tdz, &tgdp, NULL));
  CHECK_SAME_BITS(dz, dz_ref, bytes);
  CHECK_SAME_BITS(gd, gd_ref, (size_t)B * d->size);
  /* rank 3 [B, 1, D] with a per-row delta [B, 1] */
  int64_t s3[3] = {B, 1, D}, sd3[2] = {B, 1};
  DLTensor tz3 = tensor(z, d->dt, 3, s3, NULL), to3 = tensor(out, d->dt, 3, s3, NULL);
  DLTensor ts3 = tensor(saved, d->dt, 3, s3, NULL), tg3 = tensor(g, d->dt, 3, s3, NULL);
  DLTensor tdz3 = tensor(dz, d->dt, 3, s3, NULL), tdp3 = tensor(dper, d->dt, 2, sd3, NULL);
  DLTensor tgd3 = tensor(gd, d->dt, 2, sd3, NULL);
  memset(out, 0xAB, bytes);
  memset(saved, 0xAB, bytes);
  CHECK_OK(era_gaussian_forward_saved(h, &tz3, &tdp3, &to3, &ts3, NULL));
  CHECK_SAME_BITS(out, out_ref, bytes);
  memset(dz, 0xAB, bytes);
  memset(gd, 0xAB, sizeof gd);
  CHECK_OK(era_gaussian_backward_saved(h, &ts3, &tdp3, &tg3, &tdz3, &tgd3, NULL));
  CHECK_SAME_BITS(dz, dz_ref, bytes);
  CHECK_SAME_BITS(gd, gd_ref, (size_t)B * d->size);

  snprintf(sec, sizeof sec, "gaussian %s: NULL delta (the head's value)", d->name);
  SECTION(sec);
  CHECK_OK(era_head_set_delta(h, 0.45));
  CHECK_OK(era_head_forward(h, &tz, &tor, NULL));
  memset(out, 0xAB, bytes);
  memset(saved, 0xAB, bytes);
  CHECK_OK(era_gaussian_forward_saved(h, &tz, NULL, &to, &ts, NULL));
  CHECK_SAME_BITS(out, out_ref, bytes);
  get(d, saved, sv, nz);
  CHECK_ARRAY_CLOSE(sv, p, nz, d->tol, d->tol);
  CHECK_OK(era_head_backward(h, &tz, &tg, &tdzr, NULL));
  memset(dz, 0xAB, bytes);
  CHECK_OK(era_gaussian_backward_saved(h, &ts, NULL, &tg, &tdz, NULL, NULL));
  CHECK_SAME_BITS(dz, dz_ref, bytes);
  CHECK_OK(era_head_set_delta(h, 0.0));

  snprintf(sec, sizeof sec, "gaussian %s: transposed layouts", d->name);
  SECTION(sec);
  {
    static unsigned char zt[B * D * 8], gt[B * D * 8], st[B * D * 8];
    int64_t str[2] = {1, B};
    transpose(d, z, zt, B, D);
    transpose(d, g, gt, B, D);
    DLTensor tzt = tensor(zt, d->dt, 2, shape, str), tgt = tensor(gt, d->dt, 2, shape, str);
    DLTensor tot = tensor(out, d->dt, 2, shape, str), tort = tensor(out_ref, d->dt, 2, shape, str);
    DLTensor tst = tensor(st, d->dt, 2, shape, str);
    DLTensor tdzt = tensor(dz, d->dt, 2, shape, str), tdzrt = tensor(dz_ref, d->dt, 2, shape, str);
    CHECK_OK(era_gaussian_forward_delta(h, &tzt, &tdp, &tort, NULL));
    memset(out, 0xAB, bytes);
    CHECK_OK(era_gaussian_forward_saved(h, &tzt, &tdp, &tot, &tst, NULL));
    CHECK_SAME_BITS(out, out_ref, bytes);
    transpose(d, st, saved, D, B); /* back to row-major */
    get(d, saved, sv, nz);
    CHECK_ARRAY_CLOSE(sv, p, nz, d->tol, d->tol);
    CHECK_OK(era_gaussian_backward_delta(h, &tzt, &tdp, &tgt, &tdzrt, &tgdpr, NULL));
    memset(dz, 0xAB, bytes);
    CHECK_OK(era_gaussian_backward_saved(h, &tst, &tdp, &tgt, &tdzt, &tgdp, NULL));
    CHECK_SAME_BITS(dz, dz_ref, bytes);
    CHECK_SAME_BITS(gd, gd_ref, (size_t)B * d->size);
    /* the stored delta: as era_head_forward / era_head_backward on the same layout */
    CHECK_OK(era_head_set_delta(h, 0.45));
    CHECK_OK(era_head_forward(h, &tzt, &tort, NULL));
    memset(out, 0xAB, bytes);
    CHECK_OK(era_gaussian_forward_saved(h, &tzt, NULL, &tot, &tst, NULL));
    CHECK_SAME_BITS(out, out_ref, bytes);
    CHECK_OK(era_head_backward(h, &tzt, &tgt, &tdzrt, NULL));
    memset(dz, 0xAB, bytes);
    CHECK_OK(era_gaussian_backward_saved(h, &tst, NULL, &tgt, &tdzt, NULL, NULL));
    CHECK_SAME_BITS(dz, dz_ref, bytes);
    CHECK_OK(era_head_set_delta(h, 0.0));
    CHECK_OK(era_gaussian_forward_delta(h, &tzt, &tdp, &tort, NULL));
    /* a contiguous saved from strided z, and back */
    memset(saved, 0xAB, bytes);
    CHECK_OK(era_gaussian_forward_saved(h, &tzt, &tdp, &tot, &ts, NULL));
    CHECK_SAME_BITS(out, out_ref, bytes);
    get(d, saved, sv, nz);
    CHECK_ARRAY_CLOSE(sv, p, nz, d->tol, d->tol);
  }

  snprintf(sec, sizeof sec, "gaussian %s: in place", d->name);
  SECTION(sec);
  /* reference results with a scalar delta */
  CHECK_OK(era_gaussian_forward_saved(h, &tz, &tds, &tor, &ts, NULL));
  CHECK_OK(era_gaussian_backward_delta(h, &tz, &tds, &tg, &tdzr, &tgd0r, NULL));
  DLTensor tw = tensor(work, d->dt, 2, shape, NULL), tw2 = tensor(work2, d->dt, 2, shape, NULL);
  /* saved written over z */
  memcpy(work, z, bytes);
  CHECK_OK(era_gaussian_forward_saved(h, &tw, &tds, &to, &tw, NULL));
  CHECK_SAME_BITS(out, out_ref, bytes);
  CHECK_SAME_BITS(work, saved, bytes);
  /* out written over z */
  memcpy(work, z, bytes);
  CHECK_OK(era_gaussian_forward_saved(h, &tw, &tds, &tw, &tw2, NULL));
  CHECK_SAME_BITS(work, out_ref, bytes);
  CHECK_SAME_BITS(work2, saved, bytes);
  /* grad_z written over saved, then over grad_out */
  memcpy(work, saved, bytes);
  CHECK_OK(era_gaussian_backward_saved(h, &tw, &tds, &tg, &tw, &tgd0, NULL));
  CHECK_SAME_BITS(work, dz_ref, bytes);
  CHECK_SAME_BITS(gd, gd_ref, d->size);
  memcpy(work, g, bytes);
  CHECK_OK(era_gaussian_backward_saved(h, &ts, &tds, &tw, &tw, NULL, NULL));
  CHECK_SAME_BITS(work, dz_ref, bytes);

  snprintf(sec, sizeof sec, "gaussian %s: zero rows", d->name);
  SECTION(sec);
  int64_t s0[2] = {0, D};
  DLTensor tz0 = tensor(z, d->dt, 2, s0, NULL), to0 = tensor(out, d->dt, 2, s0, NULL);
  DLTensor ts0 = tensor(saved, d->dt, 2, s0, NULL), tdz0 = tensor(dz, d->dt, 2, s0, NULL);
  CHECK_OK(era_gaussian_forward_saved(h, &tz0, NULL, &to0, &ts0, NULL));
  CHECK_OK(era_gaussian_backward_saved(h, &ts0, NULL, &tz0, &tdz0, NULL, NULL));
  era_head_free(h);
}

/* ------------------------------------------------------------- softmax head */

static void test_softmax(const Dt* d) {
  char sec[128];
  const double H0 = 1.1, TAU = 5.0;
  EraHead* h = new_softmax(N, H0, TAU);
  CHECK(h != NULL);
  if (!h) return;
  const size_t nz = (size_t)B * N, bytes = nz * d->size;
  Rng rng = {2025};
  double zv[B * N], gv[B * N], p[B * N], sv[B * N], v1[B * N], v2[B * N];
  for (size_t i = 0; i < nz; i++) {
    zv[i] = 2.0 * rng_normal(&rng);
    gv[i] = rng_normal(&rng);
  }
  static unsigned char z[B * N * 8], g[B * N * 8], out[B * N * 8], out_ref[B * N * 8], saved[B * N * 8],
      dz[B * N * 8], dz_ref[B * N * 8], work[B * N * 8], work2[B * N * 8];
  put(d, z, zv, nz);
  put(d, g, gv, nz);
  softmax_rows(d, z, B, N, p);
  /* the backward from z and from saved: equal to rounding where not bit for bit */
  const double atol = d->size == 8 ? 1e-14 : 1e-6, rtol = d->size == 8 ? 1e-12 : 1e-5;

  int64_t shape[2] = {B, N};
  DLTensor tz = tensor(z, d->dt, 2, shape, NULL), tg = tensor(g, d->dt, 2, shape, NULL);
  DLTensor to = tensor(out, d->dt, 2, shape, NULL), tor = tensor(out_ref, d->dt, 2, shape, NULL);
  DLTensor ts = tensor(saved, d->dt, 2, shape, NULL);
  DLTensor tdz = tensor(dz, d->dt, 2, shape, NULL), tdzr = tensor(dz_ref, d->dt, 2, shape, NULL);

  snprintf(sec, sizeof sec, "softmax %s: against era_head_forward / era_head_backward", d->name);
  SECTION(sec);
  CHECK_OK(era_head_forward(h, &tz, &tor, NULL));
  memset(out, 0xAB, bytes);
  memset(saved, 0xAB, bytes);
  CHECK_OK(era_softmax_forward_saved(h, &tz, &to, &ts, NULL));
  CHECK_SAME_BITS(out, out_ref, bytes);
  get(d, saved, sv, nz);
  CHECK_ARRAY_CLOSE(sv, p, nz, d->tol, d->tol);
  CHECK_OK(era_head_backward(h, &tz, &tg, &tdzr, NULL));
  memset(dz, 0xAB, bytes);
  CHECK_OK(era_softmax_backward_saved(h, &ts, &tg, &tdz, NULL));
  if (d->size == 4) {
    /* contiguous float32 (tau = 5 is far from e): the vectorised kernels, the same bits */
    CHECK_SAME_BITS(dz, dz_ref, bytes);
  } else {
    get(d, dz, v1, nz);
    get(d, dz_ref, v2, nz);
    CHECK_ARRAY_CLOSE(v1, v2, nz, atol, rtol);
  }
  /* and the reference backward */
  {
    double rdz[B * N], zr[N];
    for (int b = 0; b < B; b++) {
      get(d, z + (size_t)b * N * d->size, zr, N);
      ref_softmax_head(zr, N, H0, TAU, NULL, gv + b * N, rdz + b * N);
    }
    get(d, dz, v1, nz);
    CHECK_ARRAY_CLOSE(v1, rdz, nz, d->size == 8 ? 1e-12 : 1e-4, d->size == 8 ? 1e-10 : 1e-4);
  }

  snprintf(sec, sizeof sec, "softmax %s: with the second residual dw/dh", d->name);
  SECTION(sec);
  {
    static unsigned char q[B * N * 8], s2[B * N * 8], dz2[B * N * 8], qw[B * N * 8];
    DLTensor tq = tensor(q, d->dt, 2, shape, NULL), ts2 = tensor(s2, d->dt, 2, shape, NULL);
    DLTensor tdz2 = tensor(dz2, d->dt, 2, shape, NULL), tqw = tensor(qw, d->dt, 2, shape, NULL);
    memset(out, 0xAB, bytes);
    memset(s2, 0xAB, bytes);
    memset(q, 0xAB, bytes);
    CHECK_OK(era_softmax_forward_saved_dw(h, &tz, &to, &ts2, &tq, NULL));
    CHECK_SAME_BITS(out, out_ref, bytes);
    CHECK_SAME_BITS(s2, saved, bytes);
    /* dw/dh = (1/sqrt(2u) + 0.75)/h at the saved probabilities, computed here */
    const double C = exp(H0 - 1.0), ub = log(TAU) / TAU, slope = (ub - C / N) / (1.0 - 1.0 / N), b0 = (C - slope) / N;
    double qv[B * N], qref[B * N];
    get(d, s2, sv, nz);
    get(d, q, qv, nz);
    for (size_t i = 0; i < nz; i++) {
      double hh = slope * sv[i] + b0, u = -1.0 - log(hh);
      qref[i] = (1.0 / sqrt(2.0 * u) + 0.75) / hh;
    }
    CHECK_ARRAY_CLOSE(qv, qref, nz, 0.0, d->size == 8 ? 1e-12 : 2e-5);
    /* the backward: the same bits as from saved alone (and, in float32, as from z) */
    memset(dz2, 0xAB, bytes);
    CHECK_OK(era_softmax_backward_saved_dw(h, &ts2, &tq, &tg, &tdz2, NULL));
    CHECK_SAME_BITS(dz2, dz, bytes);
    if (d->size == 4) CHECK_SAME_BITS(dz2, dz_ref, bytes);
    /* grad_z over dwdh */
    memcpy(qw, q, bytes);
    CHECK_OK(era_softmax_backward_saved_dw(h, &ts2, &tqw, &tg, &tqw, NULL));
    CHECK_SAME_BITS(qw, dz, bytes);
    /* rank 3 */
    DLTensor tz3 = tensor(z, d->dt, 3, (int64_t[3]){B, 1, N}, NULL), ts3 = tensor(s2, d->dt, 3, (int64_t[3]){B, 1, N}, NULL);
    DLTensor tq3 = tensor(q, d->dt, 3, (int64_t[3]){B, 1, N}, NULL), to3 = tensor(out, d->dt, 3, (int64_t[3]){B, 1, N}, NULL);
    DLTensor tg3 = tensor(g, d->dt, 3, (int64_t[3]){B, 1, N}, NULL), tw3 = tensor(work2, d->dt, 3, (int64_t[3]){B, 1, N}, NULL);
    CHECK_OK(era_softmax_forward_saved_dw(h, &tz3, &to3, &ts3, &tq3, NULL));
    CHECK_SAME_BITS(out, out_ref, bytes);
    CHECK_OK(era_softmax_backward_saved_dw(h, &ts3, &tq3, &tg3, &tw3, NULL));
    CHECK_SAME_BITS(work2, dz, bytes);
  }

  snprintf(sec, sizeof sec, "softmax %s: rank 3", d->name);
  SECTION(sec);
  int64_t s3[3] = {B, 1, N};
  DLTensor tz3 = tensor(z, d->dt, 3, s3, NULL), to3 = tensor(out, d->dt, 3, s3, NULL);
  DLTensor ts3 = tensor(saved, d->dt, 3, s3, NULL), tg3 = tensor(g, d->dt, 3, s3, NULL);
  DLTensor tdz3 = tensor(work, d->dt, 3, s3, NULL);
  memset(out, 0xAB, bytes);
  CHECK_OK(era_softmax_forward_saved(h, &tz3, &to3, &ts3, NULL));
  CHECK_SAME_BITS(out, out_ref, bytes);
  CHECK_OK(era_softmax_backward_saved(h, &ts3, &tg3, &tdz3, NULL));
  CHECK_SAME_BITS(work, dz, bytes);

  snprintf(sec, sizeof sec, "softmax %s: transposed layouts", d->name);
  SECTION(sec);
  {
    static unsigned char zt[B * N * 8], gt[B * N * 8], st[B * N * 8];
    int64_t str[2] = {1, B};
    transpose(d, z, zt, B, N);
    transpose(d, g, gt, B, N);
    DLTensor tzt = tensor(zt, d->dt, 2, shape, str), tgt = tensor(gt, d->dt, 2, shape, str);
    DLTensor tot = tensor(out, d->dt, 2, shape, str), tort = tensor(out_ref, d->dt, 2, shape, str);
    DLTensor tst = tensor(st, d->dt, 2, shape, str);
    DLTensor tdzt = tensor(dz, d->dt, 2, shape, str), tdzrt = tensor(dz_ref, d->dt, 2, shape, str);
    CHECK_OK(era_head_forward(h, &tzt, &tort, NULL));
    memset(out, 0xAB, bytes);
    CHECK_OK(era_softmax_forward_saved(h, &tzt, &tot, &tst, NULL));
    CHECK_SAME_BITS(out, out_ref, bytes);
    transpose(d, st, saved, N, B);
    get(d, saved, sv, nz);
    CHECK_ARRAY_CLOSE(sv, p, nz, d->tol, d->tol);
    CHECK_OK(era_head_backward(h, &tzt, &tgt, &tdzrt, NULL));
    CHECK_OK(era_softmax_backward_saved(h, &tst, &tgt, &tdzt, NULL));
    get(d, dz, v1, nz);
    get(d, dz_ref, v2, nz);
    CHECK_ARRAY_CLOSE(v1, v2, nz, atol, rtol);
  }

  snprintf(sec, sizeof sec, "softmax %s: in place", d->name);
  SECTION(sec);
  CHECK_OK(era_softmax_forward_saved(h, &tz, &tor, &ts, NULL));
  CHECK_OK(era_softmax_backward_saved(h, &ts, &tg, &tdzr, NULL));
  DLTensor tw = tensor(work, d->dt, 2, shape, NULL), tw2 = tensor(work2, d->dt, 2, shape, NULL);
  memcpy(work, z, bytes);
  CHECK_OK(era_softmax_forward_saved(h, &tw, &to, &tw, NULL));
  CHECK_SAME_BITS(out, out_ref, bytes);
  CHECK_SAME_BITS(work, saved, bytes);
  memcpy(work, z, bytes);
  CHECK_OK(era_softmax_forward_saved(h, &tw, &tw, &tw2, NULL));
  CHECK_SAME_BITS(work, out_ref, bytes);
  CHECK_SAME_BITS(work2, saved, bytes);
  memcpy(work, saved, bytes);
  CHECK_OK(era_softmax_backward_saved(h, &tw, &tg, &tw, NULL));
  CHECK_SAME_BITS(work, dz_ref, bytes);
  memcpy(work, g, bytes);
  CHECK_OK(era_softmax_backward_saved(h, &ts, &tw, &tw, NULL));
  CHECK_SAME_BITS(work, dz_ref, bytes);
  era_head_free(h);
}

/* ------------------------------------------------------------------- errors */

static int untouched(const double* a, int n) {
  for (int i = 0; i < n; i++)
    if (a[i] != -777.0) return 0;
  return 1;
}
static void poison(double* a, int n) {
  for (int i = 0; i < n; i++) a[i] = -777.0;
}

static void test_gaussian_errors(void) {
  SECTION("gaussian saved: errors");
  EraHead* h = gaussian_head();
  EraHead* sm = new_softmax(D, 1.0, 4.0);
  EraHead* tk = new_token_default();
  CHECK(h != NULL && sm != NULL && tk != NULL);
  if (!h || !sm || !tk) {
    era_head_free(h);
    era_head_free(sm);
    era_head_free(tk);
    return;
  }
  enum { R = 4 };
  double z[R * D], g[R * D], out[R * D], saved[R * D], dz[R * D], both[2 * R * D];
  double dscal = 0.1, drow[R] = {0, 0.1, -0.1, 0.2}, gd = 0, gdr[R];
  for (int i = 0; i < R * D; i++) {
    z[i] = 0.3 * i - 2.0;
    g[i] = 0.1 * (i % 7) - 0.3;
  }
  int64_t shape[2] = {R, D}, sr[1] = {R};
  DLTensor tz = tensor_f64(z, 2, shape), tg = tensor_f64(g, 2, shape), to = tensor_f64(out, 2, shape);
  DLTensor ts = tensor_f64(saved, 2, shape), tdz = tensor_f64(dz, 2, shape);
  DLTensor tds = tensor_f64(&dscal, 0, NULL), tdr = tensor_f64(drow, 1, sr);
  DLTensor tgd = tensor_f64(&gd, 0, NULL), tgdr = tensor_f64(gdr, 1, sr);
  CHECK_OK(era_gaussian_forward_saved(h, &tz, &tds, &to, &ts, NULL));

  /* NULL pointers (delta and grad_delta may be NULL) */
  CHECK_STATUS(era_gaussian_forward_saved(NULL, &tz, &tds, &to, &ts, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_forward_saved(h, NULL, &tds, &to, &ts, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_forward_saved(h, &tz, &tds, NULL, &ts, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_forward_saved(h, &tz, &tds, &to, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_backward_saved(NULL, &ts, &tds, &tg, &tdz, &tgd, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_backward_saved(h, NULL, &tds, &tg, &tdz, &tgd, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, &tds, NULL, &tdz, &tgd, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, &tds, &tg, NULL, &tgd, NULL), ERA_STATUS_NULL_POINTER);
  DLTensor tnull = tz; /* a NULL data pointer with elements: a layout error */
  tnull.data = NULL;
  CHECK_STATUS(era_gaussian_forward_saved(h, &tnull, NULL, &to, &ts, NULL), ERA_STATUS_INVALID_LAYOUT);
  /* grad_delta without a delta tensor */
  poison(dz, R * D);
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, NULL, &tg, &tdz, &tgd, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_ERR_MENTIONS("grad_delta");
  CHECK(untouched(dz, R * D));

  /* wrong head kind */
  CHECK_STATUS(era_gaussian_forward_saved(sm, &tz, &tds, &to, &ts, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_gaussian_forward_saved(tk, &tz, NULL, &to, &ts, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_gaussian_backward_saved(sm, &ts, &tds, &tg, &tdz, &tgd, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_gaussian_backward_saved(tk, &ts, NULL, &tg, &tdz, NULL, NULL), ERA_STATUS_WRONG_HEAD_KIND);

  /* shapes */
  int64_t wrong_d[2] = {R, D - 1}, wrong_b[2] = {R - 1, D}, sr1[1] = {R + 1};
  DLTensor t = tz;
  t.shape = wrong_d;
  CHECK_STATUS(era_gaussian_forward_saved(h, &t, NULL, &to, &ts, NULL), ERA_STATUS_INVALID_SHAPE);
  t = ts;
  t.shape = wrong_b;
  poison(out, R * D);
  CHECK_STATUS(era_gaussian_forward_saved(h, &tz, NULL, &to, &t, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK(untouched(out, R * D));
  t = to;
  t.shape = wrong_b;
  CHECK_STATUS(era_gaussian_forward_saved(h, &tz, NULL, &t, &ts, NULL), ERA_STATUS_INVALID_SHAPE);
  t = tz;
  t.ndim = 0;
  t.shape = NULL;
  CHECK_STATUS(era_gaussian_forward_saved(h, &t, NULL, &t, &ts, NULL), ERA_STATUS_INVALID_SHAPE);
  DLTensor tdw = tensor_f64(gdr, 1, sr1);
  CHECK_STATUS(era_gaussian_forward_saved(h, &tz, &tdw, &to, &ts, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK_OK(era_gaussian_forward_saved(h, &tz, &tds, &to, &ts, NULL));
  t = tg;
  t.shape = wrong_b;
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, &tds, &t, &tdz, NULL, NULL), ERA_STATUS_INVALID_SHAPE);
  t = tdz;
  t.shape = wrong_b;
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, &tds, &tg, &t, NULL, NULL), ERA_STATUS_INVALID_SHAPE);
  t = ts;
  t.shape = wrong_d;
  CHECK_STATUS(era_gaussian_backward_saved(h, &t, &tds, &tg, &tdz, NULL, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, &tdw, &tg, &tdz, NULL, NULL), ERA_STATUS_INVALID_SHAPE);
  /* grad_delta of the wrong shape: [R] for a scalar delta, [] for a per-row one */
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, &tds, &tg, &tdz, &tgdr, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, &tdr, &tg, &tdz, &tgd, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK_OK(era_gaussian_backward_saved(h, &ts, &tdr, &tg, &tdz, &tgdr, NULL));

  /* dtypes */
  float f[R * D], fd = 0.1f;
  int32_t zi[R * D];
  memset(zi, 0, sizeof zi);
  for (int i = 0; i < R * D; i++) f[i] = (float)z[i];
  DLTensor tf = tensor_f32(f, 2, shape), tfd = tensor(&fd, DT_F32, 0, NULL, NULL);
  DLTensor ti = tensor(zi, DT_I32, 2, shape, NULL);
  CHECK_STATUS(era_gaussian_forward_saved(h, &ti, NULL, &to, &ts, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_gaussian_forward_saved(h, &tz, NULL, &tf, &ts, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_gaussian_forward_saved(h, &tz, NULL, &to, &tf, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_gaussian_forward_saved(h, &tz, &tfd, &to, &ts, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_gaussian_backward_saved(h, &ti, NULL, &tg, &tdz, NULL, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, NULL, &tf, &tdz, NULL, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, NULL, &tg, &tf, NULL, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, &tfd, &tg, &tdz, NULL, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  float gdf = 0;
  DLTensor tgdf = tensor(&gdf, DT_F32, 0, NULL, NULL);
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, &tds, &tg, &tdz, &tgdf, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);

  /* out and saved overlap; grad_delta inside grad_z */
  DLTensor tb1 = tensor_f64(both, 2, shape), tb2 = tensor_f64(both + D, 2, shape);
  CHECK_STATUS(era_gaussian_forward_saved(h, &tz, NULL, &to, &to, NULL), ERA_STATUS_INVALID_LAYOUT);
  CHECK_STATUS(era_gaussian_forward_saved(h, &tz, NULL, &tb1, &tb2, NULL), ERA_STATUS_INVALID_LAYOUT);
  CHECK_ERR_MENTIONS("overlap");
  DLTensor tgin = tensor_f64(dz + 1, 1, sr);
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, &tdr, &tg, &tdz, &tgin, NULL), ERA_STATUS_INVALID_LAYOUT);
  /* a misaligned input */
  static double raw[R * D + 1];
  DLTensor tmis = tensor((char*)raw + 1, DT_F64, 2, shape, NULL);
  CHECK_STATUS(era_gaussian_forward_saved(h, &tmis, NULL, &to, &ts, NULL), ERA_STATUS_INVALID_LAYOUT);
  CHECK_STATUS(era_gaussian_backward_saved(h, &tmis, NULL, &tg, &tdz, NULL, NULL), ERA_STATUS_INVALID_LAYOUT);

  /* delta values: NaN, infeasible (a scalar and one row of a per-row tensor) */
  const double dmax = D * 0.5 * L2PE - GH0;
  double dnan = NAN, dbig = dmax + 0.5, dbad[R] = {0.0, dmax + 0.01, 0.0, 0.0}, dnanr[R] = {0.0, 0.0, NAN, 0.0};
  DLTensor tdnan = tensor_f64(&dnan, 0, NULL), tdbig = tensor_f64(&dbig, 0, NULL);
  DLTensor tdbad = tensor_f64(dbad, 1, sr), tdnanr = tensor_f64(dnanr, 1, sr);
  poison(out, R * D);
  poison(saved, R * D);
  CHECK_STATUS(era_gaussian_forward_saved(h, &tz, &tdnan, &to, &ts, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_gaussian_forward_saved(h, &tz, &tdnanr, &to, &ts, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_gaussian_forward_saved(h, &tz, &tdbig, &to, &ts, NULL), ERA_STATUS_INFEASIBLE_TARGET);
  CHECK_STATUS(era_gaussian_forward_saved(h, &tz, &tdbad, &to, &ts, NULL), ERA_STATUS_INFEASIBLE_TARGET);
  CHECK(untouched(out, R * D));
  CHECK(untouched(saved, R * D));
  CHECK_OK(era_gaussian_forward_saved(h, &tz, &tds, &to, &ts, NULL));
  poison(dz, R * D);
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, &tdnan, &tg, &tdz, &tgd, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, &tdnanr, &tg, &tdz, &tgdr, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, &tdbig, &tg, &tdz, NULL, NULL), ERA_STATUS_INFEASIBLE_TARGET);
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, &tdbad, &tg, &tdz, &tgdr, NULL), ERA_STATUS_INFEASIBLE_TARGET);
  CHECK(untouched(dz, R * D));

  /* CUDA buffers: host memory only (each tensor in turn, then all of them: in a build
   * with CUDA support the message names the call to use there) */
  DLTensor c;
  c = tz;
  c.device.device_type = kDLCUDA;
  CHECK_STATUS(era_gaussian_forward_saved(h, &c, NULL, &to, &ts, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  c = to;
  c.device.device_type = kDLCUDA;
  CHECK_STATUS(era_gaussian_forward_saved(h, &tz, NULL, &c, &ts, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  c = ts;
  c.device.device_type = kDLCUDA;
  CHECK_STATUS(era_gaussian_forward_saved(h, &tz, NULL, &to, &c, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  c = tds;
  c.device.device_type = kDLCUDA;
  CHECK_STATUS(era_gaussian_forward_saved(h, &tz, &c, &to, &ts, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, &c, &tg, &tdz, NULL, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  c = tgd;
  c.device.device_type = kDLCUDA;
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, &tds, &tg, &tdz, &c, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  c = ts;
  c.device.device_type = kDLCUDA;
  CHECK_STATUS(era_gaussian_backward_saved(h, &c, NULL, &tg, &tdz, NULL, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  c = tg;
  c.device.device_type = kDLCUDA;
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, NULL, &c, &tdz, NULL, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  c = tdz;
  c.device.device_type = kDLCUDA;
  CHECK_STATUS(era_gaussian_backward_saved(h, &ts, NULL, &tg, &c, NULL, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  {
    DLTensor cz = tz, co = to, cs = ts, cg = tg, cdz = tdz, cd = tds, cgd = tgd;
    DLTensor* all[7] = {&cz, &co, &cs, &cg, &cdz, &cd, &cgd};
    for (int i = 0; i < 7; i++) all[i]->device.device_type = kDLCUDA;
    CHECK_STATUS(era_gaussian_forward_saved(h, &cz, &cd, &co, &cs, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
    CHECK_ERR_MENTIONS("CUDA");
    CHECK_STATUS(era_gaussian_backward_saved(h, &cs, &cd, &cg, &cdz, &cgd, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
    CHECK_ERR_MENTIONS("CUDA");
  }
  era_head_free(h);
  era_head_free(sm);
  era_head_free(tk);
}

static void test_softmax_errors(void) {
  SECTION("softmax saved: errors");
  EraHead* h = new_softmax(N, 1.1, 5.0);
  EraHead* ga = new_gaussian(N, -3.0, -5.0, 0.0);
  EraHead* tk = new_token_default();
  CHECK(h != NULL && ga != NULL && tk != NULL);
  if (!h || !ga || !tk) {
    era_head_free(h);
    era_head_free(ga);
    era_head_free(tk);
    return;
  }
  enum { R = 3 };
  double z[R * N], g[R * N], out[R * N], saved[R * N], dz[R * N], both[2 * R * N];
  for (int i = 0; i < R * N; i++) {
    z[i] = 0.25 * i - 2.0;
    g[i] = 0.1 * (i % 5) - 0.2;
  }
  int64_t shape[2] = {R, N};
  DLTensor tz = tensor_f64(z, 2, shape), tg = tensor_f64(g, 2, shape), to = tensor_f64(out, 2, shape);
  DLTensor ts = tensor_f64(saved, 2, shape), tdz = tensor_f64(dz, 2, shape);
  CHECK_OK(era_softmax_forward_saved(h, &tz, &to, &ts, NULL));
  CHECK_OK(era_softmax_backward_saved(h, &ts, &tg, &tdz, NULL));

  CHECK_STATUS(era_softmax_forward_saved(NULL, &tz, &to, &ts, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_softmax_forward_saved(h, NULL, &to, &ts, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_softmax_forward_saved(h, &tz, NULL, &ts, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_softmax_forward_saved(h, &tz, &to, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_softmax_backward_saved(NULL, &ts, &tg, &tdz, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_softmax_backward_saved(h, NULL, &tg, &tdz, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_softmax_backward_saved(h, &ts, NULL, &tdz, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_softmax_backward_saved(h, &ts, &tg, NULL, NULL), ERA_STATUS_NULL_POINTER);
  DLTensor tnull = tz; /* a NULL data pointer with elements: a layout error */
  tnull.data = NULL;
  CHECK_STATUS(era_softmax_forward_saved(h, &tnull, &to, &ts, NULL), ERA_STATUS_INVALID_LAYOUT);

  CHECK_STATUS(era_softmax_forward_saved(ga, &tz, &to, &ts, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_softmax_forward_saved(tk, &tz, &to, &ts, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_softmax_backward_saved(ga, &ts, &tg, &tdz, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_softmax_backward_saved(tk, &ts, &tg, &tdz, NULL), ERA_STATUS_WRONG_HEAD_KIND);

  int64_t wrong_n[2] = {R, N - 1}, wrong_b[2] = {R - 1, N};
  DLTensor t = tz;
  t.shape = wrong_n;
  DLTensor t2 = to, t3 = ts;
  t2.shape = wrong_n;
  t3.shape = wrong_n;
  CHECK_STATUS(era_softmax_forward_saved(h, &t, &t2, &t3, NULL), ERA_STATUS_INVALID_SHAPE); /* n != num_classes */
  t = ts;
  t.shape = wrong_b;
  poison(out, R * N);
  CHECK_STATUS(era_softmax_forward_saved(h, &tz, &to, &t, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK(untouched(out, R * N));
  t = to;
  t.shape = wrong_b;
  CHECK_STATUS(era_softmax_forward_saved(h, &tz, &t, &ts, NULL), ERA_STATUS_INVALID_SHAPE);
  t = tz;
  t.ndim = 0;
  t.shape = NULL;
  CHECK_STATUS(era_softmax_forward_saved(h, &t, &t, &ts, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK_OK(era_softmax_forward_saved(h, &tz, &to, &ts, NULL));
  t = tg;
  t.shape = wrong_b;
  poison(dz, R * N);
  CHECK_STATUS(era_softmax_backward_saved(h, &ts, &t, &tdz, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK(untouched(dz, R * N));
  t = tdz;
  t.shape = wrong_b;
  CHECK_STATUS(era_softmax_backward_saved(h, &ts, &tg, &t, NULL), ERA_STATUS_INVALID_SHAPE);
  t = ts;
  t.shape = wrong_n;
  t2 = tg;
  t2.shape = wrong_n;
  t3 = tdz;
  t3.shape = wrong_n;
  CHECK_STATUS(era_softmax_backward_saved(h, &t, &t2, &t3, NULL), ERA_STATUS_INVALID_SHAPE);

  float f[R * N];
  int32_t zi[R * N];
  memset(zi, 0, sizeof zi);
  for (int i = 0; i < R * N; i++) f[i] = (float)z[i];
  DLTensor tf = tensor_f32(f, 2, shape), ti = tensor(zi, DT_I32, 2, shape, NULL);
  uint16_t zh[R * N];
  memset(zh, 0, sizeof zh);
  DLTensor th = tensor(zh, DT_BF16, 2, shape, NULL);
  CHECK_STATUS(era_softmax_forward_saved(h, &ti, &to, &ts, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_softmax_forward_saved(h, &th, &th, &ts, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_softmax_forward_saved(h, &tz, &tf, &ts, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_softmax_forward_saved(h, &tz, &to, &tf, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_softmax_backward_saved(h, &ti, &tg, &tdz, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_softmax_backward_saved(h, &ts, &tf, &tdz, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_softmax_backward_saved(h, &ts, &tg, &tf, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);

  DLTensor tb1 = tensor_f64(both, 2, shape), tb2 = tensor_f64(both + 1, 2, shape);
  CHECK_STATUS(era_softmax_forward_saved(h, &tz, &to, &to, NULL), ERA_STATUS_INVALID_LAYOUT);
  CHECK_STATUS(era_softmax_forward_saved(h, &tz, &tb1, &tb2, NULL), ERA_STATUS_INVALID_LAYOUT);
  CHECK_ERR_MENTIONS("overlap");
  int64_t zero_rows[2] = {0, 1};
  DLTensor tself = tensor(dz, DT_F64, 2, shape, zero_rows); /* an output that overlaps itself */
  CHECK_STATUS(era_softmax_backward_saved(h, &ts, &tg, &tself, NULL), ERA_STATUS_INVALID_LAYOUT);
  static double raw[R * N + 1];
  DLTensor tmis = tensor((char*)raw + 1, DT_F64, 2, shape, NULL);
  CHECK_STATUS(era_softmax_forward_saved(h, &tmis, &to, &ts, NULL), ERA_STATUS_INVALID_LAYOUT);
  CHECK_STATUS(era_softmax_backward_saved(h, &tmis, &tg, &tdz, NULL), ERA_STATUS_INVALID_LAYOUT);

  DLTensor c;
  c = tz;
  c.device.device_type = kDLCUDA;
  CHECK_STATUS(era_softmax_forward_saved(h, &c, &to, &ts, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  c = to;
  c.device.device_type = kDLCUDA;
  CHECK_STATUS(era_softmax_forward_saved(h, &tz, &c, &ts, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  c = ts;
  c.device.device_type = kDLCUDA;
  CHECK_STATUS(era_softmax_forward_saved(h, &tz, &to, &c, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  CHECK_STATUS(era_softmax_backward_saved(h, &c, &tg, &tdz, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  c = tg;
  c.device.device_type = kDLCUDA;
  CHECK_STATUS(era_softmax_backward_saved(h, &ts, &c, &tdz, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  c = tdz;
  c.device.device_type = kDLCUDA;
  CHECK_STATUS(era_softmax_backward_saved(h, &ts, &tg, &c, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  {
    DLTensor cz = tz, co = to, cs = ts, cg = tg, cdz = tdz;
    DLTensor* all[5] = {&cz, &co, &cs, &cg, &cdz};
    for (int i = 0; i < 5; i++) all[i]->device.device_type = kDLCUDA;
    CHECK_STATUS(era_softmax_forward_saved(h, &cz, &co, &cs, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
    CHECK_ERR_MENTIONS("CUDA");
    CHECK_STATUS(era_softmax_backward_saved(h, &cs, &cg, &cdz, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
    CHECK_ERR_MENTIONS("CUDA");
  }
  era_head_free(h);
  era_head_free(ga);
  era_head_free(tk);
}

static void test_softmax_dw_errors(void) {
  SECTION("softmax saved with dw/dh: errors");
  EraHead* h = new_softmax(N, 1.1, 5.0);
  EraHead* ga = new_gaussian(N, -3.0, -5.0, 0.0);
  CHECK(h != NULL && ga != NULL);
  if (!h || !ga) {
    era_head_free(h);
    era_head_free(ga);
    return;
  }
  enum { R = 3 };
  double z[R * N], g[R * N], out[R * N], saved[R * N], q[R * N], dz[R * N], both[2 * R * N];
  for (int i = 0; i < R * N; i++) {
    z[i] = 0.25 * i - 2.0;
    g[i] = 0.1 * (i % 5) - 0.2;
  }
  int64_t shape[2] = {R, N}, wrong_b[2] = {R - 1, N};
  DLTensor tz = tensor_f64(z, 2, shape), tg = tensor_f64(g, 2, shape), to = tensor_f64(out, 2, shape);
  DLTensor ts = tensor_f64(saved, 2, shape), tq = tensor_f64(q, 2, shape), tdz = tensor_f64(dz, 2, shape);
  CHECK_OK(era_softmax_forward_saved_dw(h, &tz, &to, &ts, &tq, NULL));
  CHECK_OK(era_softmax_backward_saved_dw(h, &ts, &tq, &tg, &tdz, NULL));

  CHECK_STATUS(era_softmax_forward_saved_dw(NULL, &tz, &to, &ts, &tq, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_softmax_forward_saved_dw(h, NULL, &to, &ts, &tq, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_softmax_forward_saved_dw(h, &tz, NULL, &ts, &tq, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_softmax_forward_saved_dw(h, &tz, &to, NULL, &tq, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_softmax_forward_saved_dw(h, &tz, &to, &ts, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_softmax_backward_saved_dw(NULL, &ts, &tq, &tg, &tdz, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_softmax_backward_saved_dw(h, NULL, &tq, &tg, &tdz, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_softmax_backward_saved_dw(h, &ts, NULL, &tg, &tdz, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_softmax_backward_saved_dw(h, &ts, &tq, NULL, &tdz, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_softmax_backward_saved_dw(h, &ts, &tq, &tg, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_softmax_forward_saved_dw(ga, &tz, &to, &ts, &tq, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_softmax_backward_saved_dw(ga, &ts, &tq, &tg, &tdz, NULL), ERA_STATUS_WRONG_HEAD_KIND);

  DLTensor t = tq;
  t.shape = wrong_b;
  poison(out, R * N);
  CHECK_STATUS(era_softmax_forward_saved_dw(h, &tz, &to, &ts, &t, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK(untouched(out, R * N));
  poison(dz, R * N);
  CHECK_STATUS(era_softmax_backward_saved_dw(h, &ts, &t, &tg, &tdz, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK(untouched(dz, R * N));

  float f[R * N];
  for (int i = 0; i < R * N; i++) f[i] = (float)z[i];
  DLTensor tf = tensor_f32(f, 2, shape);
  CHECK_STATUS(era_softmax_forward_saved_dw(h, &tz, &to, &ts, &tf, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_softmax_backward_saved_dw(h, &ts, &tf, &tg, &tdz, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);

  DLTensor tb1 = tensor_f64(both, 2, shape), tb2 = tensor_f64(both + 1, 2, shape);
  CHECK_STATUS(era_softmax_forward_saved_dw(h, &tz, &to, &ts, &ts, NULL), ERA_STATUS_INVALID_LAYOUT);
  CHECK_STATUS(era_softmax_forward_saved_dw(h, &tz, &to, &tb1, &tb2, NULL), ERA_STATUS_INVALID_LAYOUT);
  CHECK_ERR_MENTIONS("overlap");

  DLTensor c = tq;
  c.device.device_type = kDLCUDA;
  CHECK_STATUS(era_softmax_forward_saved_dw(h, &tz, &to, &ts, &c, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  CHECK_STATUS(era_softmax_backward_saved_dw(h, &ts, &c, &tg, &tdz, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  era_head_free(h);
  era_head_free(ga);
}

int main(void) {
  for (int i = 0; i < 2; i++) {
    test_gaussian(&DTS[i]);
    test_softmax(&DTS[i]);
  }
  test_gaussian_errors();
  test_softmax_errors();
  test_softmax_dw_errors();
  return check_finish();
}
