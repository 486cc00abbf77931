/* test_token_errors.c: the token head's error statuses through the C API: bad shapes,
 * dtypes, layouts and values of each argument, and calls on heads of another kind. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "helpers.h"
#include "token_helpers.h"

static void test_token_errors(void) {
  SECTION("token errors");
  EraHead* h = new_token(2.0, 0.45, 1.2, 0.2, 1.0, 1, 0, NULL);
  EraHead* gh = new_gaussian(5, -2.0, -8.0, 0.0);
  EraHead* sh = new_softmax(5, 1.0, 4.0);
  CHECK(h && gh && sh);
  if (!h || !gh || !sh) return;
  enum { N = 6, V = 5 };
  double lg[N * V], adv[N] = {1, 1, 1, 1, 1, 1}, lp[N], H[N], sc[N], ao[N], hr[N], g[N] = {1, 1, 1, 1, 1, 1},
                    grad[N * V];
  memcpy(lg, small_logits, sizeof lg);
  int64_t lab[N], rid[N];
  memcpy(lab, small_labels, sizeof lab);
  memcpy(rid, small_rid, sizeof rid);
  int64_t sl[2] = {N, V}, sn[1] = {N}, snm[1] = {N - 1}, sl2[2] = {N, 1};
  DLTensor tl = tensor_f64(lg, 2, sl), tlab = tensor(lab, DT_I64, 1, sn, NULL), trid = tensor(rid, DT_I64, 1, sn, NULL),
           ta = tensor_f64(adv, 1, sn), tlp = tensor_f64(lp, 1, sn), tH = tensor_f64(H, 1, sn),
           tc = tensor_f64(sc, 1, sn), tao = tensor_f64(ao, 1, sn), thr = tensor_f64(hr, 1, sn),
           tg = tensor_f64(g, 1, sn), tgr = tensor_f64(grad, 2, sl);
  CHECK_OK(era_token_forward(h, &tl, &tlab, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL));
  CHECK_OK(era_token_backward(h, &tl, &tlab, &trid, &tc, &tg, &tgr, NULL));

  /* labels */
  lab[0] = V;
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_INVALID_VALUE);
  CHECK_STATUS(era_token_backward(h, &tl, &tlab, &trid, &tc, &tg, &tgr, NULL), ERA_STATUS_INVALID_VALUE);
  lab[0] = -1;
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_INVALID_VALUE);
  lab[0] = small_labels[0];
  lab[2] = 123456; /* masked: not read */
  CHECK_OK(era_token_forward(h, &tl, &tlab, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL));
  CHECK_OK(era_token_backward(h, &tl, &tlab, &trid, &tc, &tg, &tgr, NULL));
  lab[2] = -100;
  int32_t lab32[N];
  for (int t = 0; t < N; t++) lab32[t] = (int32_t)lab[t];
  lab32[4] = V + 3;
  DLTensor tlab32 = tensor(lab32, DT_I32, 1, sn, NULL);
  CHECK_STATUS(era_token_forward(h, &tl, &tlab32, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_INVALID_VALUE);
  /* response ids */
  rid[3] = -2;
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_INVALID_VALUE);
  rid[3] = small_rid[3];
  /* shapes */
  DLTensor bad = tensor(lab, DT_I64, 1, snm, NULL);
  CHECK_STATUS(era_token_forward(h, &tl, &bad, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, &bad, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_token_backward(h, &tl, &bad, &trid, &tc, &tg, &tgr, NULL), ERA_STATUS_INVALID_SHAPE);
  DLTensor badf = tensor_f64(adv, 1, snm);
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, &trid, &badf, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, &trid, &ta, &badf, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, &trid, &ta, &tlp, &badf, &tc, &tao, &thr, NULL),
               ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, &trid, &ta, &tlp, &tH, &badf, &tao, &thr, NULL),
               ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, &trid, &ta, &tlp, &tH, &tc, &badf, &thr, NULL),
               ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, &trid, &ta, &tlp, &tH, &tc, &tao, &badf, NULL),
               ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_token_backward(h, &tl, &tlab, &trid, &badf, &tg, &tgr, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_token_backward(h, &tl, &tlab, &trid, &tc, &badf, &tgr, NULL), ERA_STATUS_INVALID_SHAPE);
  DLTensor badg = tensor_f64(grad, 2, sl2);
  CHECK_STATUS(era_token_backward(h, &tl, &tlab, &trid, &tc, &tg, &badg, NULL), ERA_STATUS_INVALID_SHAPE);
  DLTensor tl0 = tensor_f64(lg, 0, NULL);
  CHECK_STATUS(era_token_forward(h, &tl0, &tlab, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_INVALID_SHAPE);
  /* dtypes */
  DLTensor labf = tensor_f64(adv, 1, sn);
  CHECK_STATUS(era_token_forward(h, &tl, &labf, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, &labf, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_UNSUPPORTED_DTYPE);
  int64_t li[N * V] = {0};
  DLTensor tli = tensor(li, DT_I64, 2, sl, NULL);
  CHECK_STATUS(era_token_forward(h, &tli, &tlab, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_UNSUPPORTED_DTYPE);
  DLTensor advi = tensor(lab, DT_I64, 1, sn, NULL);
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, &trid, &advi, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, &trid, &ta, &advi, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_UNSUPPORTED_DTYPE);
  DLTensor lab_lanes = tlab;
  lab_lanes.dtype.lanes = 2;
  CHECK_STATUS(era_token_forward(h, &tl, &lab_lanes, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_UNSUPPORTED_DTYPE);
  DLTensor lab_u8 = tensor(lab, (DLDataType){kDLInt, 8, 1}, 1, sn, NULL);
  CHECK_STATUS(era_token_forward(h, &tl, &lab_u8, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_UNSUPPORTED_DTYPE);
  /* devices */
  DLTensor lcuda = tl;
  lcuda.device.device_type = kDLCUDA;
  CHECK_STATUS(era_token_forward(h, &lcuda, &tlab, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_UNSUPPORTED_DEVICE);
  CHECK_STATUS(era_token_backward(h, &lcuda, &tlab, &trid, &tc, &tg, &tgr, NULL), ERA_STATUS_UNSUPPORTED_DEVICE);
  DLTensor labweird = tlab;
  labweird.device.device_type = (DLDeviceType)999;
  CHECK_STATUS(era_token_forward(h, &tl, &labweird, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_UNSUPPORTED_DEVICE);
  /* NULL pointers */
  CHECK_STATUS(era_token_forward(NULL, &tl, &tlab, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_forward(h, NULL, &tlab, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_forward(h, &tl, NULL, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, NULL, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, &trid, NULL, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_NULL_POINTER);
  /* every output is optional (NULL = not wanted): tested in test_optional_outputs */
  CHECK_STATUS(era_token_backward(NULL, &tl, &tlab, &trid, &tc, &tg, &tgr, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_backward(h, NULL, &tlab, &trid, &tc, &tg, &tgr, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_backward(h, &tl, NULL, &trid, &tc, &tg, &tgr, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_backward(h, &tl, &tlab, NULL, &tc, &tg, &tgr, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_backward(h, &tl, &tlab, &trid, NULL, &tg, &tgr, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_backward(h, &tl, &tlab, &trid, &tc, NULL, &tgr, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_backward(h, &tl, &tlab, &trid, &tc, &tg, NULL, NULL), ERA_STATUS_NULL_POINTER);
  /* scale must be finite and positive */
  double badsc[N];
  memcpy(badsc, sc, sizeof badsc);
  DLTensor tbs = tensor_f64(badsc, 1, sn);
  badsc[1] = 0.0;
  CHECK_STATUS(era_token_backward(h, &tl, &tlab, &trid, &tbs, &tg, &tgr, NULL), ERA_STATUS_INVALID_VALUE);
  badsc[1] = -2.0;
  CHECK_STATUS(era_token_backward(h, &tl, &tlab, &trid, &tbs, &tg, &tgr, NULL), ERA_STATUS_INVALID_VALUE);
  badsc[1] = NAN;
  CHECK_STATUS(era_token_backward(h, &tl, &tlab, &trid, &tbs, &tg, &tgr, NULL), ERA_STATUS_INVALID_VALUE);
  /* scale and grad_logprobs must share a dtype; grad_logits has the logits' dtype */
  float gf32[N] = {1, 1, 1, 1, 1, 1};
  DLTensor tgf = tensor_f32(gf32, 1, sn);
  CHECK_STATUS(era_token_backward(h, &tl, &tlab, &trid, &tc, &tgf, &tgr, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  float grf[N * V];
  DLTensor tgrf = tensor_f32(grf, 2, sl);
  CHECK_STATUS(era_token_backward(h, &tl, &tlab, &trid, &tc, &tg, &tgrf, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  /* outputs take the advantages' dtype */
  float lpf[N];
  DLTensor tlpf = tensor_f32(lpf, 1, sn);
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, &trid, &ta, &tlpf, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_UNSUPPORTED_DTYPE);
  /* two outputs sharing memory */
  double both[N + 1];
  DLTensor tb1 = tensor_f64(both, 1, sn), tb2 = tensor_f64(both + 1, 1, sn);
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, &trid, &ta, &tb1, &tb1, &tc, &tao, &thr, NULL),
               ERA_STATUS_INVALID_LAYOUT);
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, &trid, &ta, &tlp, &tH, &tb1, &tb2, &thr, NULL),
               ERA_STATUS_INVALID_LAYOUT);
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, &trid, &ta, &tlp, &tH, &tc, &tb1, &tb2, NULL),
               ERA_STATUS_INVALID_LAYOUT);
  /* an output overlapping an input is fine (inputs are read first) */
  double advcopy[N];
  memcpy(advcopy, adv, sizeof adv);
  DLTensor tain = tensor_f64(advcopy, 1, sn);
  CHECK_OK(era_token_forward(h, &tl, &tlab, &trid, &tain, &tlp, &tH, &tc, &tain, &thr, NULL));
  CHECK_ARRAY_CLOSE(advcopy, ao, N, 0, 0);
  /* an output with a zero stride */
  int64_t zst[1] = {0};
  DLTensor tz0 = tensor(lp, DT_F64, 1, sn, zst);
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, &trid, &ta, &tz0, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_INVALID_LAYOUT);
  /* misaligned labels */
  static int64_t lab_raw[N + 1];
  memcpy((char*)lab_raw + 4, lab, sizeof lab);
  DLTensor tlmis = tensor((char*)lab_raw + 4, DT_I64, 1, sn, NULL);
  CHECK_STATUS(era_token_forward(h, &tl, &tlmis, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_INVALID_LAYOUT);
  /* NULL data with elements */
  DLTensor tlnull = tensor(NULL, DT_F64, 2, sl, NULL);
  CHECK_STATUS(era_token_forward(h, &tlnull, &tlab, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_INVALID_LAYOUT);
  /* head kinds */
  CHECK_STATUS(era_token_forward(gh, &tl, &tlab, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_token_forward(sh, &tl, &tlab, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL),
               ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_token_backward(gh, &tl, &tlab, &trid, &tc, &tg, &tgr, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_token_backward(sh, &tl, &tlab, &trid, &tc, &tg, &tgr, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  /* zero tokens succeed */
  int64_t s0[2] = {0, V}, s0n[1] = {0};
  DLTensor z_l = tensor_f64(lg, 2, s0), z_lab = tensor(lab, DT_I64, 1, s0n, NULL),
           z_rid = tensor(rid, DT_I64, 1, s0n, NULL), z_a = tensor_f64(adv, 1, s0n), z_o = tensor_f64(lp, 1, s0n),
           z_H = tensor_f64(H, 1, s0n), z_c = tensor_f64(sc, 1, s0n), z_ao = tensor_f64(ao, 1, s0n);
  lp[0] = H[0] = sc[0] = ao[0] = -777;
  CHECK_OK(era_token_forward(h, &z_l, &z_lab, &z_rid, &z_a, &z_o, &z_H, &z_c, &z_ao, NULL, NULL));
  CHECK(lp[0] == -777 && H[0] == -777 && sc[0] == -777 && ao[0] == -777);
  DLTensor z_g = tensor_f64(grad, 2, s0);
  grad[0] = -777;
  CHECK_OK(era_token_backward(h, &z_l, &z_lab, &z_rid, &z_c, &z_o, &z_g, NULL));
  CHECK(grad[0] == -777);
  era_head_free(h);
  era_head_free(gh);
  era_head_free(sh);
}

int main(void) {
  test_token_errors();
  return check_finish();
}
