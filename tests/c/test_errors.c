/* test_errors.c: the tensor-descriptor checks of era_head_forward,
 * era_head_backward and era_head_entropy: every failure status they can
 * return, for the Gaussian and the softmax head. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "helpers.h"

enum { B = 4, D = 3 };

static int untouched(const double* a, int n) {
  for (int i = 0; i < n; i++)
    if (a[i] != -777.0) return 0;
  return 1;
}
static void poison(double* a, int n) {
  for (int i = 0; i < n; i++) a[i] = -777.0;
}

static void run_checks(EraHead* h, const char* name) {
  char sec[128];
  double z[B * D], out[B * D], g[B * D], dz[B * D], ent[B];
  for (int i = 0; i < B * D; i++) {
    z[i] = 0.1 * i - 0.5;
    g[i] = 1.0 - 0.2 * i;
  }
  int64_t shape[2] = {B, D}, eshape[1] = {B};
  DLTensor tz = tensor_f64(z, 2, shape), to = tensor_f64(out, 2, shape), tg = tensor_f64(g, 2, shape),
           td = tensor_f64(dz, 2, shape), te = tensor_f64(ent, 1, eshape);
  CHECK_OK(era_head_forward(h, &tz, &to, NULL));
  CHECK_OK(era_head_backward(h, &tz, &tg, &td, NULL));
  CHECK_OK(era_head_entropy(h, &to, &te, NULL));

  snprintf(sec, sizeof sec, "%s: NULL pointers", name);
  SECTION(sec);
  CHECK_STATUS(era_head_forward(NULL, &tz, &to, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_head_forward(h, NULL, &to, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_head_forward(h, &tz, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_head_backward(NULL, &tz, &tg, &td, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_head_backward(h, NULL, &tg, &td, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_head_backward(h, &tz, NULL, &td, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_ERR_MENTIONS("grad_out");
  CHECK_STATUS(era_head_backward(h, &tz, &tg, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_ERR_MENTIONS("grad_z");
  CHECK_STATUS(era_head_entropy(NULL, &to, &te, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_head_entropy(h, NULL, &te, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_head_entropy(h, &to, NULL, NULL), ERA_STATUS_NULL_POINTER);

  snprintf(sec, sizeof sec, "%s: NULL data / shape / rank", name);
  SECTION(sec);
  DLTensor t = tensor_f64(NULL, 2, shape);
  poison(out, B * D);
  CHECK_STATUS(era_head_forward(h, &t, &to, NULL), ERA_STATUS_INVALID_LAYOUT);
  CHECK(untouched(out, B * D));
  CHECK_STATUS(era_head_forward(h, &tz, &t, NULL), ERA_STATUS_INVALID_LAYOUT);
  CHECK_STATUS(era_head_backward(h, &tz, &t, &td, NULL), ERA_STATUS_INVALID_LAYOUT);
  DLTensor zeroed;
  memset(&zeroed, 0, sizeof zeroed); /* all-zero descriptor: must fail cleanly, not crash */
  CHECK(era_head_entropy(h, &to, &zeroed, NULL) != ERA_STATUS_OK);
  CHECK(era_head_forward(h, &zeroed, &to, NULL) != ERA_STATUS_OK);
  t = tensor_f64(z, 2, NULL);
  CHECK_STATUS(era_head_forward(h, &t, &to, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_head_forward(h, &tz, &t, NULL), ERA_STATUS_INVALID_SHAPE);
  t = tensor_f64(z, 0, NULL);
  CHECK_STATUS(era_head_forward(h, &t, &t, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_head_entropy(h, &t, &te, NULL), ERA_STATUS_INVALID_SHAPE);
  t = tensor_f64(z, -1, shape);
  CHECK_STATUS(era_head_forward(h, &t, &to, NULL), ERA_STATUS_INVALID_SHAPE);
  t = tensor_f64(z, -2147483647 - 1, shape);
  CHECK_STATUS(era_head_forward(h, &t, &to, NULL), ERA_STATUS_INVALID_SHAPE);

  snprintf(sec, sizeof sec, "%s: shapes", name);
  SECTION(sec);
  int64_t wrong_last[2] = {B, D + 1};
  double big[B * (D + 1)];
  t = tensor_f64(big, 2, wrong_last);
  poison(big, B * (D + 1));
  CHECK_STATUS(era_head_forward(h, &t, &t, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK(untouched(big, B * (D + 1)));
  int64_t short_last[2] = {B + 1, D - 1};
  t = tensor_f64(z, 2, short_last);
  CHECK_STATUS(era_head_forward(h, &t, &t, NULL), ERA_STATUS_INVALID_SHAPE);
  int64_t rows_mismatch[2] = {B - 1, D};
  t = tensor_f64(out, 2, rows_mismatch);
  poison(out, B * D);
  CHECK_STATUS(era_head_forward(h, &tz, &t, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK(untouched(out, B * D));
  int64_t rank_mismatch[3] = {2, 2, D};
  t = tensor_f64(out, 3, rank_mismatch);
  CHECK_STATUS(era_head_forward(h, &tz, &t, NULL), ERA_STATUS_INVALID_SHAPE);
  int64_t flat[1] = {B * D};
  t = tensor_f64(out, 1, flat);
  CHECK_STATUS(era_head_forward(h, &tz, &t, NULL), ERA_STATUS_INVALID_SHAPE);
  t = tensor_f64(g, 2, rows_mismatch);
  CHECK_STATUS(era_head_backward(h, &tz, &t, &td, NULL), ERA_STATUS_INVALID_SHAPE);
  t = tensor_f64(dz, 2, rows_mismatch);
  CHECK_STATUS(era_head_backward(h, &tz, &tg, &t, NULL), ERA_STATUS_INVALID_SHAPE);
  int64_t negative[2] = {-1, D};
  t = tensor_f64(z, 2, negative);
  CHECK_STATUS(era_head_forward(h, &t, &t, NULL), ERA_STATUS_INVALID_SHAPE);
  int64_t negative_last[2] = {B, -D};
  t = tensor_f64(z, 2, negative_last);
  CHECK_STATUS(era_head_forward(h, &t, &t, NULL), ERA_STATUS_INVALID_SHAPE);
  int64_t overflow[3] = {(int64_t)1 << 62, 4, D};
  t = tensor_f64(z, 3, overflow);
  CHECK_STATUS(era_head_forward(h, &t, &t, NULL), ERA_STATUS_INVALID_SHAPE);
  int64_t eshape_bad[1] = {B + 1};
  t = tensor_f64(ent, 1, eshape_bad);
  CHECK_STATUS(era_head_entropy(h, &to, &t, NULL), ERA_STATUS_INVALID_SHAPE);
  t = tensor_f64(ent, 2, shape);
  CHECK_STATUS(era_head_entropy(h, &to, &t, NULL), ERA_STATUS_INVALID_SHAPE);
  t = tensor_f64(big, 2, wrong_last);
  CHECK_STATUS(era_head_entropy(h, &t, &te, NULL), ERA_STATUS_INVALID_SHAPE);

  snprintf(sec, sizeof sec, "%s: dtypes", name);
  SECTION(sec);
  int32_t zi[B * D] = {0};
  t = tensor(zi, DT_I32, 2, shape, NULL);
  CHECK_STATUS(era_head_forward(h, &t, &t, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_head_forward(h, &t, &to, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  uint16_t zh[B * D];
  memset(zh, 0, sizeof zh);
  DLTensor th = tensor(zh, DT_F16, 2, shape, NULL), tb = tensor(zh, DT_BF16, 2, shape, NULL);
  CHECK_STATUS(era_head_forward(h, &th, &th, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_head_forward(h, &tb, &tb, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  t = tz;
  t.dtype.lanes = 2;
  CHECK_STATUS(era_head_forward(h, &t, &to, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  t = tz;
  t.dtype.lanes = 0;
  CHECK_STATUS(era_head_forward(h, &t, &to, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  t = tz;
  t.dtype.bits = 8;
  CHECK_STATUS(era_head_forward(h, &t, &to, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  t = tz;
  t.dtype.code = kDLComplex;
  t.dtype.bits = 128;
  CHECK_STATUS(era_head_forward(h, &t, &to, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  float of[B * D], zf[B * D];
  for (int i = 0; i < B * D; i++) zf[i] = (float)z[i];
  DLTensor tof = tensor_f32(of, 2, shape), tzf = tensor_f32(zf, 2, shape);
  CHECK_STATUS(era_head_forward(h, &tz, &tof, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_head_forward(h, &tzf, &to, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_head_backward(h, &tz, &tof, &td, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_head_backward(h, &tz, &tg, &tof, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_head_backward(h, &tzf, &tg, &td, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  float ef[B];
  DLTensor tef = tensor_f32(ef, 1, eshape);
  CHECK_STATUS(era_head_entropy(h, &to, &tef, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_head_entropy(h, &t, &te, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);

  snprintf(sec, sizeof sec, "%s: devices", name);
  SECTION(sec);
  t = tz;
  t.device.device_type = kDLCUDA;
  CHECK_STATUS(era_head_forward(h, &t, &to, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  CHECK_STATUS(era_head_backward(h, &t, &tg, &td, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  CHECK_STATUS(era_head_entropy(h, &t, &te, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  DLTensor tc = to;
  tc.device.device_type = kDLCUDA;
  CHECK_STATUS(era_head_forward(h, &tz, &tc, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  t = tz;
  t.device.device_type = (DLDeviceType)999;
  CHECK_STATUS(era_head_forward(h, &t, &to, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  t.device.device_type = (DLDeviceType)0;
  CHECK_STATUS(era_head_forward(h, &t, &to, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  t.device.device_type = kDLROCM;
  CHECK_STATUS(era_head_forward(h, &t, &to, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  DLTensor tgc = tg;
  tgc.device.device_type = kDLMetal;
  CHECK_STATUS(era_head_backward(h, &tz, &tgc, &td, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  DLTensor tec = te;
  tec.device.device_type = kDLCUDA;
  CHECK_STATUS(era_head_entropy(h, &to, &tec, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);

  snprintf(sec, sizeof sec, "%s: layouts", name);
  SECTION(sec);
  /* misaligned data pointer */
  static double raw[B * D + 2];
  char* cb = (char*)raw;
  memcpy(cb + 1, z, sizeof z);
  t = tensor(cb + 1, DT_F64, 2, shape, NULL);
  CHECK_STATUS(era_head_forward(h, &t, &to, NULL), ERA_STATUS_INVALID_LAYOUT);
  CHECK_STATUS(era_head_forward(h, &tz, &t, NULL), ERA_STATUS_INVALID_LAYOUT);
  /* misaligned through byte_offset */
  t = tz;
  t.byte_offset = 4;
  CHECK_STATUS(era_head_forward(h, &t, &to, NULL), ERA_STATUS_INVALID_LAYOUT);
  static float rawf[B * D + 2];
  t = tensor((char*)rawf + 2, DT_F32, 2, shape, NULL);
  DLTensor tof2 = tensor_f32(of, 2, shape);
  CHECK_STATUS(era_head_forward(h, &t, &tof2, NULL), ERA_STATUS_INVALID_LAYOUT);
  /* an output that overlaps itself */
  int64_t zero_rows[2] = {0, 1};
  t = tensor(out, DT_F64, 2, shape, zero_rows);
  poison(out, B * D);
  CHECK_STATUS(era_head_forward(h, &tz, &t, NULL), ERA_STATUS_INVALID_LAYOUT);
  CHECK(untouched(out, B * D));
  int64_t zero_cols[2] = {D, 0};
  t = tensor(out, DT_F64, 2, shape, zero_cols);
  CHECK_STATUS(era_head_forward(h, &tz, &t, NULL), ERA_STATUS_INVALID_LAYOUT);
  int64_t overlap_rows[2] = {1, 1};
  t = tensor(out, DT_F64, 2, shape, overlap_rows);
  CHECK_STATUS(era_head_forward(h, &tz, &t, NULL), ERA_STATUS_INVALID_LAYOUT);
  t = tensor(dz, DT_F64, 2, shape, zero_rows);
  CHECK_STATUS(era_head_backward(h, &tz, &tg, &t, NULL), ERA_STATUS_INVALID_LAYOUT);
  int64_t e_zero[1] = {0};
  t = tensor(ent, DT_F64, 1, eshape, e_zero);
  CHECK_STATUS(era_head_entropy(h, &to, &t, NULL), ERA_STATUS_INVALID_LAYOUT);
  /* a zero stride on an extent-1 dim is no overlap */
  int64_t one_row[2] = {1, D}, st_one[2] = {0, 1};
  double o1[D];
  DLTensor tz1 = tensor_f64(z, 2, one_row), to1 = tensor(o1, DT_F64, 2, one_row, st_one);
  CHECK_OK(era_head_forward(h, &tz1, &to1, NULL));
  /* an output partially overlapping an input (shifted by one row / one
   * element): inputs are read as if copied first, so the result is exact */
  double zq[B * D], gq[B * D], ref_o[B * D], ref_d[B * D];
  for (int i = 0; i < B * D; i++) {
    zq[i] = 0.05 * i * i - 0.5; /* rows that are not shifts of each other */
    gq[i] = 0.3 * i - 1.0;
  }
  DLTensor tzq = tensor_f64(zq, 2, shape), tgq = tensor_f64(gq, 2, shape), tro = tensor_f64(ref_o, 2, shape),
           trd = tensor_f64(ref_d, 2, shape);
  CHECK_OK(era_head_forward(h, &tzq, &tro, NULL));
  CHECK_OK(era_head_backward(h, &tzq, &tgq, &trd, NULL));
  static double shared[(B + 1) * D];
  memcpy(shared, zq, sizeof zq);
  DLTensor tzs = tensor_f64(shared, 2, shape), tos = tensor_f64(shared + D, 2, shape);
  CHECK_OK(era_head_forward(h, &tzs, &tos, NULL));
  CHECK_ARRAY_CLOSE(shared + D, ref_o, B * D, 0, 0);
  memcpy(shared + D, zq, sizeof zq);
  tzs = tensor_f64(shared + D, 2, shape);
  tos = tensor_f64(shared + 1, 2, shape);
  CHECK_OK(era_head_forward(h, &tzs, &tos, NULL));
  CHECK_ARRAY_CLOSE(shared + 1, ref_o, B * D, 0, 0);
  /* grad_z partially overlapping grad_out */
  memcpy(shared, gq, sizeof gq);
  DLTensor tgs = tensor_f64(shared, 2, shape), tds = tensor_f64(shared + 1, 2, shape);
  CHECK_OK(era_head_backward(h, &tzq, &tgs, &tds, NULL));
  CHECK_ARRAY_CLOSE(shared + 1, ref_d, B * D, 0, 0);

  /* after all those failures the head still works */
  poison(out, B * D);
  CHECK_OK(era_head_forward(h, &tz, &to, NULL));
  CHECK(!untouched(out, B * D));
}

int main(void) {
  EraHead* gh = new_gaussian(D, -1.5, -5.0, 0.0);
  EraHead* sh = new_softmax(D, 0.5, 4.0);
  EraHead* th = new_token_default();
  CHECK(gh && sh && th);
  if (gh) run_checks(gh, "gaussian");
  if (sh) run_checks(sh, "softmax");

  SECTION("out of memory: a broadcast input of huge extent");
  if (th) {
    /* one real element, read as a [2, 2^50] tensor (zero strides): more bytes than any
       machine's memory, which no call of real data describes (reading it would take hours) */
    double x = 0.5, ent[2] = {7.0, 7.0};
    int64_t shape[2] = {2, (int64_t)1 << 50}, strides[2] = {0, 0}, eshape[1] = {2};
    DLTensor tx = tensor(&x, (DLDataType){kDLFloat, 64, 1}, 2, shape, strides);
    DLTensor te = tensor_f64(ent, 1, eshape);
    CHECK_STATUS(era_head_entropy(th, &tx, &te, NULL), ERA_STATUS_OUT_OF_MEMORY);
    CHECK_ERR_MENTIONS("more than this machine's memory");
    CHECK(ent[0] == 7.0 && ent[1] == 7.0);
  }

  SECTION("wrong head kind");
  if (th) {
    double z[B * D] = {0}, out[B * D], g[B * D] = {0};
    int64_t shape[2] = {B, D};
    DLTensor tz = tensor_f64(z, 2, shape), to = tensor_f64(out, 2, shape), tg = tensor_f64(g, 2, shape);
    CHECK_STATUS(era_head_forward(th, &tz, &to, NULL), ERA_STATUS_WRONG_HEAD_KIND);
    CHECK_STATUS(era_head_backward(th, &tz, &tg, &to, NULL), ERA_STATUS_WRONG_HEAD_KIND);
    /* entropy is defined for token heads */
    double ent[B];
    int64_t es[1] = {B};
    DLTensor te = tensor_f64(ent, 1, es);
    CHECK_OK(era_head_entropy(th, &tz, &te, NULL));
    for (int b = 0; b < B; b++) CHECK_NEAR(ent[b], log((double)D), 1e-12);
  }
  era_head_free(gh);
  era_head_free(sh);
  era_head_free(th);
  return check_finish();
}
