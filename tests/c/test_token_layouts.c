/* test_token_layouts.c: the token head (docs/math.md#token-head) through the C API on
 * every layout it accepts: int32/int64 indices, f32/bf16/f16 logits, rank 3, strides,
 * against the reference of helpers.h. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "helpers.h"
#include "token_helpers.h"

static void test_dtypes_and_layouts(void) {
  SECTION("token f32 / bf16 / f16 logits");
  EraConfig cfg;
  EraHead* h = new_token(2.0, 0.45, 1.2, 0.2, 1.0, 1, 0, &cfg);
  CHECK(h != NULL);
  if (!h) return;
  TokCfg c = tokcfg_from(&cfg);
  enum { N = 6, V = 5 };
  /* logits that bf16, f16 and f32 represent exactly: multiples of 1/16 in (-8, 8) */
  Rng rng = {8};
  double lg[N * V];
  for (int i = 0; i < N * V; i++) lg[i] = (double)rng_int(&rng, -127, 128) / 16.0;
  for (int v = 0; v < V; v++) { /* make two responses sharp */
    lg[0 * V + v] = v == 1 ? 7.5 : -2.0;
    lg[1 * V + v] = v == 0 ? 7.0 : -1.5;
    lg[5 * V + v] = v == 4 ? 6.5 : -3.0;
  }
  double adv[N] = {1.5, 1.5, 0.3, 0.8, 0.8, 1.5};
  double rlp[N], rH[N], rs[N], rao[N];
  ref_token_forward(lg, N, V, small_labels, small_rid, adv, c, rlp, rH, rs, rao, NULL);
  CHECK_MSG(rs[0] == 2.0, "test design: sharpened response (scale %g)", rs[0]);
  float lf[N * V], af[N], lpf[N], Hf[N], sf[N], aof[N], hrf[N];
  uint16_t lb[N * V], lh[N * V];
  for (int i = 0; i < N * V; i++) {
    lf[i] = (float)lg[i];
    lb[i] = f32_to_bf16(lf[i]);
    lh[i] = f32_to_f16(lf[i]);
    CHECK(bf16_to_f32(lb[i]) == lf[i] && f16_to_f32(lh[i]) == lf[i]);
  }
  for (int t = 0; t < N; t++) af[t] = (float)adv[t];
  int32_t lab32[N], rid32[N];
  for (int t = 0; t < N; t++) {
    lab32[t] = (int32_t)small_labels[t];
    rid32[t] = (int32_t)small_rid[t];
  }
  int64_t sl[2] = {N, V}, sn[1] = {N};
  void* datas[3] = {lf, lb, lh};
  DLDataType dts[3] = {DT_F32, DT_BF16, DT_F16};
  const char* names[3] = {"f32", "bf16", "f16"};
  for (int d = 0; d < 3; d++) {
    DLTensor tl = tensor(datas[d], dts[d], 2, sl, NULL);
    DLTensor tlab = tensor(lab32, DT_I32, 1, sn, NULL), trid = tensor(rid32, DT_I32, 1, sn, NULL);
    DLTensor ta = tensor_f32(af, 1, sn), tlp = tensor_f32(lpf, 1, sn), tH = tensor_f32(Hf, 1, sn),
             tc = tensor_f32(sf, 1, sn), tao = tensor_f32(aof, 1, sn), thr = tensor_f32(hrf, 1, sn);
    EraStatus st = era_token_forward(h, &tl, &tlab, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL);
    CHECK_MSG(st == ERA_STATUS_OK, "%s logits: status %s (%s)", names[d], era_status_str(st), check_last_error_());
    double lp64[N], s64[N], ao64[N];
    f32_to_f64_array(lpf, lp64, N);
    f32_to_f64_array(sf, s64, N);
    f32_to_f64_array(aof, ao64, N);
    CHECK_ARRAY_CLOSE(lp64, rlp, N, 1e-4, 1e-5);
    CHECK_ARRAY_CLOSE(s64, rs, N, 0, 0);
    CHECK_ARRAY_CLOSE(ao64, rao, N, 1e-6, 1e-6);
    /* backward in the logits' dtype */
    float gf[N] = {1, -1, 0.5f, 0.25f, 2, -0.5f};
    double g64[N], rgrad[N * V], grad64[N * V];
    f32_to_f64_array(gf, g64, N);
    ref_token_backward(lg, N, V, small_labels, small_rid, rs, g64, c, rgrad);
    float gradf[N * V];
    uint16_t grad16[N * V];
    void* gd = d == 0 ? (void*)gradf : (void*)grad16;
    DLTensor tgr = tensor(gd, dts[d], 2, sl, NULL), tg = tensor_f32(gf, 1, sn);
    st = era_token_backward(h, &tl, &tlab, &trid, &tc, &tg, &tgr, NULL);
    CHECK_MSG(st == ERA_STATUS_OK, "%s backward: status %s (%s)", names[d], era_status_str(st),
              check_last_error_());
    for (int i = 0; i < N * V; i++)
      grad64[i] = d == 0 ? gradf[i] : d == 1 ? bf16_to_f32(grad16[i]) : f16_to_f32(grad16[i]);
    double tol = d == 0 ? 1e-5 : d == 1 ? 1e-2 : 2e-3; /* output rounding of 16-bit floats */
    CHECK_ARRAY_CLOSE(grad64, rgrad, N * V, tol, tol);
  }

  SECTION("token rank 3 and strided logits");
  /* the same 6 tokens as [2, 3, V] */
  int64_t s3[3] = {2, 3, V}, s2[2] = {2, 3};
  double lp[N], H[N], sc[N], ao[N];
  DLTensor tl3 = tensor_f64(lg, 3, s3), tlab3 = tensor((void*)small_labels, DT_I64, 2, s2, NULL),
           trid3 = tensor((void*)small_rid, DT_I64, 2, s2, NULL), ta3 = tensor_f64(adv, 2, s2),
           tlp3 = tensor_f64(lp, 2, s2), tH3 = tensor_f64(H, 2, s2), tc3 = tensor_f64(sc, 2, s2),
           tao3 = tensor_f64(ao, 2, s2);
  CHECK_OK(era_token_forward(h, &tl3, &tlab3, &trid3, &ta3, &tlp3, &tH3, &tc3, &tao3, NULL, NULL));
  CHECK_ARRAY_CLOSE(lp, rlp, N, 1e-10, 1e-10);
  CHECK_ARRAY_CLOSE(sc, rs, N, 0, 0);
  CHECK_ARRAY_CLOSE(ao, rao, N, 1e-12, 1e-12);
  double g[N] = {1, -1, 0.5, 0.25, 2, -0.5}, gr3[N * V], rgrad[N * V];
  ref_token_backward(lg, N, V, small_labels, small_rid, rs, g, c, rgrad);
  DLTensor tg3 = tensor_f64(g, 2, s2), tgr3 = tensor_f64(gr3, 3, s3);
  CHECK_OK(era_token_backward(h, &tl3, &tlab3, &trid3, &tc3, &tg3, &tgr3, NULL));
  CHECK_ARRAY_CLOSE(gr3, rgrad, N * V, 1e-12, 1e-10);
  /* every other row of a [2N, V] buffer, with strided index/advantage vectors */
  double lg2[2 * N * V];
  int64_t lab2[2 * N], rid2[2 * N];
  double adv2[2 * N];
  for (int i = 0; i < 2 * N * V; i++) lg2[i] = 1e3;
  for (int t = 0; t < N; t++) {
    memcpy(lg2 + 2 * t * V, lg + t * V, sizeof(double) * V);
    lab2[2 * t] = small_labels[t];
    rid2[2 * t] = small_rid[t];
    adv2[2 * t] = adv[t];
    lab2[2 * t + 1] = 999;
    rid2[2 * t + 1] = -5;
    adv2[2 * t + 1] = NAN;
  }
  int64_t sN[1] = {N}, st2[2] = {2 * V, 1}, st1[1] = {2};
  double lps[2 * N];
  for (int i = 0; i < 2 * N; i++) lps[i] = -777;
  DLTensor tls = tensor(lg2, DT_F64, 2, sl, st2), tlabs = tensor(lab2, DT_I64, 1, sN, st1),
           trids = tensor(rid2, DT_I64, 1, sN, st1), tas = tensor(adv2, DT_F64, 1, sN, st1),
           tlps = tensor(lps, DT_F64, 1, sN, st1), tHs = tensor_f64(H, 1, sN), tcs = tensor_f64(sc, 1, sN),
           taos = tensor_f64(ao, 1, sN);
  CHECK_OK(era_token_forward(h, &tls, &tlabs, &trids, &tas, &tlps, &tHs, &tcs, &taos, NULL, NULL));
  double lpc[N];
  int gaps = 1;
  for (int t = 0; t < N; t++) {
    lpc[t] = lps[2 * t];
    gaps &= lps[2 * t + 1] == -777;
  }
  CHECK_ARRAY_CLOSE(lpc, rlp, N, 1e-10, 1e-10);
  CHECK_ARRAY_CLOSE(sc, rs, N, 0, 0);
  CHECK(gaps);

  SECTION("era_head_entropy on a token head");
  double ent[N], went[N];
  CHECK_OK(ent_f64(h, lg, ent, 2, sl));
  for (int t = 0; t < N; t++) went[t] = ref_entropy_logits(lg + t * V, V);
  CHECK_ARRAY_CLOSE(ent, went, N, 1e-12, 1e-12);
  /* 16-bit and f32 logits, f32 entropies */
  for (int d = 0; d < 3; d++) {
    float ef[N];
    double e64[N];
    DLTensor tl16 = tensor(datas[d], dts[d], 2, sl, NULL), tef = tensor_f32(ef, 1, sn);
    EraStatus st = era_head_entropy(h, &tl16, &tef, NULL);
    CHECK_MSG(st == ERA_STATUS_OK, "%s entropy: %s (%s)", names[d], era_status_str(st), check_last_error_());
    f32_to_f64_array(ef, e64, N);
    CHECK_ARRAY_CLOSE(e64, went, N, 1e-5, 1e-5);
  }
  era_head_free(h);
  EraHead* hT = new_token(2.0, 0.45, 3.0, 0.2, 0.5, 1, 0, NULL);
  CHECK(hT != NULL);
  if (hT) {
    double zt[V];
    CHECK_OK(ent_f64(hT, lg, ent, 2, sl));
    for (int t = 0; t < N; t++) {
      for (int v = 0; v < V; v++) zt[v] = lg[t * V + v] / 0.5;
      went[t] = ref_entropy_logits(zt, V);
    }
    CHECK_ARRAY_CLOSE(ent, went, N, 1e-12, 1e-12);
    era_head_free(hT);
  }
}

int main(void) {
  test_dtypes_and_layouts();
  return check_finish();
}
