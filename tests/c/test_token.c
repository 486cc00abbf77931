/* test_token.c: the token head (docs/math.md#token-head) through the C API:
 * a hand-made batch and random batches against an independent reference,
 * int32/int64 indices, f32/bf16/f16 logits, rank 3, strides, masking,
 * backward vs the formula and vs finite differences, vocabulary top-K,
 * and the token-specific error statuses. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "helpers.h"

#define MAXT 256

typedef struct {
  double logp[MAXT], H[MAXT], scale[MAXT], adv[MAXT], hresp[MAXT];
} TokOut;

static EraHead* new_token(double k, double wl, double wh, double rho, double T, int scaling, uint64_t topk,
                          EraConfig* cfg_out) {
  EraConfig c;
  era_config_default(ERA_HEAD_KIND_TOKEN, &c);
  c.k = k;
  c.omega_low = wl;
  c.omega_high = wh;
  c.top_fraction = rho;
  c.temperature = T;
  c.advantage_scaling = (uint32_t)scaling;
  c.vocab_topk = topk;
  if (cfg_out) *cfg_out = c;
  EraHead* h = NULL;
  if (era_head_new(&c, &h) != ERA_STATUS_OK) return NULL;
  return h;
}

/* era_token_forward on f64 [N, V] logits; indices as int32 (idx_bits 32) or int64 */
static EraStatus tok_fwd(const EraHead* h, double* logits, int N, int V, const int64_t* labels, const int64_t* rid,
                         double* adv, int idx_bits, TokOut* o, int with_hresp) {
  static int32_t l32[MAXT], r32[MAXT];
  static int64_t l64[MAXT], r64[MAXT];
  for (int t = 0; t < N; t++) {
    l32[t] = (int32_t)labels[t];
    r32[t] = (int32_t)rid[t];
    l64[t] = labels[t];
    r64[t] = rid[t];
  }
  int64_t sl[2] = {N, V}, sn[1] = {N};
  DLTensor tl = tensor_f64(logits, 2, sl);
  DLTensor tlab = idx_bits == 32 ? tensor(l32, DT_I32, 1, sn, NULL) : tensor(l64, DT_I64, 1, sn, NULL);
  DLTensor trid = idx_bits == 32 ? tensor(r32, DT_I32, 1, sn, NULL) : tensor(r64, DT_I64, 1, sn, NULL);
  DLTensor ta = tensor_f64(adv, 1, sn);
  DLTensor tlp = tensor_f64(o->logp, 1, sn), tH = tensor_f64(o->H, 1, sn), tc = tensor_f64(o->scale, 1, sn),
           tao = tensor_f64(o->adv, 1, sn), thr = tensor_f64(o->hresp, 1, sn);
  return era_token_forward(h, &tl, &tlab, &trid, &ta, &tlp, &tH, &tc, &tao, with_hresp ? &thr : NULL, NULL);
}

static EraStatus tok_bwd(const EraHead* h, double* logits, int N, int V, const int64_t* labels, const int64_t* rid,
                         double* scale, double* g, double* grad) {
  int64_t sl[2] = {N, V}, sn[1] = {N};
  DLTensor tl = tensor_f64(logits, 2, sl);
  DLTensor tlab = tensor((void*)labels, DT_I64, 1, sn, NULL), trid = tensor((void*)rid, DT_I64, 1, sn, NULL);
  DLTensor tc = tensor_f64(scale, 1, sn), tg = tensor_f64(g, 1, sn), tgr = tensor_f64(grad, 2, sl);
  return era_token_backward(h, &tl, &tlab, &trid, &tc, &tg, &tgr, NULL);
}

/* compares every forward output with the reference; masked entropies are not specified */
static void compare_forward(const TokOut* o, const double* logits, int N, int V, const int64_t* labels,
                            const int64_t* rid, const double* adv, TokCfg c, int with_hresp, double tol) {
  static double logp[MAXT], H[MAXT], scale[MAXT], ao[MAXT], hr[MAXT];
  ref_token_forward(logits, N, V, labels, rid, adv, c, logp, H, scale, ao, hr);
  CHECK_ARRAY_CLOSE(o->logp, logp, N, tol, tol);
  CHECK_ARRAY_CLOSE(o->scale, scale, N, 0, 0);
  CHECK_ARRAY_CLOSE(o->adv, ao, N, tol, tol);
  double Hv[MAXT], Hr[MAXT];
  int nv = 0;
  for (int t = 0; t < N; t++)
    if (rid[t] >= 0) {
      Hv[nv] = o->H[t];
      Hr[nv++] = H[t];
    }
  CHECK_ARRAY_CLOSE(Hv, Hr, nv, tol, tol);
  if (with_hresp) CHECK_ARRAY_CLOSE(o->hresp, hr, N, tol, tol);
}

/* N = 6, V = 5: two responses (non-contiguous) and a masked token labelled -100 */
static double small_logits[6 * 5] = {
    6.0, 0.5, -1.0, 0.0, -2.0,  /* t0: r0, peaked */
    7.0, -1.0, 0.0, 0.2, -3.0,  /* t1: r0, peaked */
    1.0, 2.0, 3.0, 4.0, 5.0,    /* t2: masked */
    0.1, -0.1, 0.05, 0.0, 0.2,  /* t3: r1, near uniform */
    0.3, 0.0, -0.2, 0.1, 0.0,   /* t4: r1, near uniform */
    5.5, 1.0, 0.0, -1.0, 0.5,   /* t5: r0, peaked */
};
static int64_t small_labels[6] = {1, 0, -100, 3, 2, 4};
static int64_t small_rid[6] = {0, 0, -1, 1, 1, 0};

static void test_small(void) {
  SECTION("token small batch");
  EraConfig cfg;
  EraHead* h = new_token(2.0, 0.45, 1.2, 0.2, 1.0, 1, 0, &cfg);
  CHECK(h != NULL);
  if (!h) return;
  TokCfg c = tokcfg_from(&cfg);
  double adv[6] = {1.5, 1.5, 0.3, 0.8, 0.8, 1.5};
  /* the design hits all three scale choices */
  double rs[6], rh[6], rlp[6], rao[6], rhr[6];
  ref_token_forward(small_logits, 6, 5, small_labels, small_rid, adv, c, rlp, rh, rs, rao, rhr);
  CHECK_MSG(rs[0] == 2.0 && rs[3] == 0.5 && rs[2] == 1.0, "test design: scales %g %g %g", rs[0], rs[3], rs[2]);
  /* k_r = max(1, floor(0.2 * 3)) = 1: Hresp of r0 is its largest token entropy */
  CHECK_NEAR(rhr[0], fmax(rh[0], fmax(rh[1], rh[5])), 1e-15);
  for (int bits = 32; bits <= 64; bits += 32) {
    TokOut o;
    for (int t = 0; t < 6; t++) o.logp[t] = o.H[t] = o.scale[t] = o.adv[t] = o.hresp[t] = -777;
    CHECK_OK(tok_fwd(h, small_logits, 6, 5, small_labels, small_rid, adv, bits, &o, 1));
    compare_forward(&o, small_logits, 6, 5, small_labels, small_rid, adv, c, 1, 1e-10);
    /* masked token: logprob 0, scale 1, advantage unchanged, response entropy 0 */
    CHECK(o.logp[2] == 0.0 && o.scale[2] == 1.0 && o.adv[2] == 0.3 && o.hresp[2] == 0.0);
    CHECK_NEAR(o.adv[0], 0.75, 1e-15);
    CHECK_NEAR(o.adv[3], 1.6, 1e-15);
    /* response_entropy_out may be NULL */
    TokOut o2;
    CHECK_OK(tok_fwd(h, small_logits, 6, 5, small_labels, small_rid, adv, bits, &o2, 0));
    CHECK_ARRAY_CLOSE(o2.logp, o.logp, 6, 0, 0);
  }
  /* negative advantages: no scaling at all */
  double nadv[6] = {-1.0, -1.0, 0.0, -0.5, -0.5, -1.0};
  TokOut o;
  CHECK_OK(tok_fwd(h, small_logits, 6, 5, small_labels, small_rid, nadv, 64, &o, 1));
  compare_forward(&o, small_logits, 6, 5, small_labels, small_rid, nadv, c, 1, 1e-10);
  int ones = 1;
  for (int t = 0; t < 6; t++) ones &= o.scale[t] == 1.0;
  CHECK(ones);
  /* plain log-softmax when c == 1 */
  CHECK_NEAR(o.logp[0], small_logits[1] - ref_lse(small_logits, 5), 1e-12);
  era_head_free(h);

  SECTION("token small batch, scaling off, temperature 0.5");
  h = new_token(2.0, 0.45, 1.2, 0.2, 0.5, 0, 0, &cfg);
  CHECK(h != NULL);
  if (h) {
    c = tokcfg_from(&cfg);
    CHECK_OK(tok_fwd(h, small_logits, 6, 5, small_labels, small_rid, adv, 64, &o, 1));
    compare_forward(&o, small_logits, 6, 5, small_labels, small_rid, adv, c, 1, 1e-10);
    int same = 1;
    for (int t = 0; t < 6; t++) same &= o.adv[t] == adv[t];
    CHECK_MSG(same, "advantage_scaling = 0 must leave advantages unchanged");
    era_head_free(h);
  }
}

static void fill_random_batch(Rng* rng, int N, int V, double* logits, int64_t* labels, int64_t* rid, double* adv) {
  const int64_t ids[5] = {-1, 0, 1, 3, 2};
  double radv[4];
  double rscale[4];
  for (int r = 0; r < 4; r++) {
    radv[r] = rng_normal(rng);
    rscale[r] = (r % 2 == 0) ? 6.0 : 0.3; /* sharp and flat responses */
  }
  for (int t = 0; t < N; t++) {
    rid[t] = ids[rng_int(rng, 0, 5)];
    int r = rid[t] < 0 ? 0 : (int)rid[t];
    for (int v = 0; v < V; v++) logits[t * V + v] = rscale[r] * rng_normal(rng);
    labels[t] = rid[t] < 0 ? -100 : rng_int(rng, 0, V);
    adv[t] = (t % 7 == 3) ? rng_normal(rng) : radv[r]; /* mostly per response, some per token */
  }
}

static void test_random(void) {
  SECTION("token random batches vs reference");
  enum { N = 48, V = 9 };
  static double logits[N * V], adv[N];
  static int64_t labels[N], rid[N];
  Rng rng = {31337};
  double rhos[3] = {0.25, 0.5, 1.0};
  int sharpen = 0, flatten = 0;
  for (int trial = 0; trial < 6; trial++) {
    fill_random_batch(&rng, N, V, logits, labels, rid, adv);
    EraConfig cfg;
    EraHead* h = new_token(trial % 2 ? 3.0 : 2.0, 0.6, 1.5, rhos[trial % 3], trial % 2 ? 0.8 : 1.0, trial != 4,
                           0, &cfg);
    CHECK(h != NULL);
    if (!h) continue;
    TokCfg c = tokcfg_from(&cfg);
    TokOut o;
    CHECK_OK(tok_fwd(h, logits, N, V, labels, rid, adv, trial % 2 ? 32 : 64, &o, 1));
    compare_forward(&o, logits, N, V, labels, rid, adv, c, 1, 1e-10);
    for (int t = 0; t < N; t++) {
      sharpen += o.scale[t] > 1.0;
      flatten += o.scale[t] < 1.0;
    }
    /* backward against the formula */
    static double g[N], grad[N * V], rgrad[N * V];
    for (int t = 0; t < N; t++) g[t] = rng_normal(&rng);
    CHECK_OK(tok_bwd(h, logits, N, V, labels, rid, o.scale, g, grad));
    ref_token_backward(logits, N, V, labels, rid, o.scale, g, c, rgrad);
    CHECK_ARRAY_CLOSE(grad, rgrad, N * V, 1e-12, 1e-10);
    era_head_free(h);
  }
  CHECK_MSG(sharpen > 0 && flatten > 0, "random batches should sharpen (%d) and flatten (%d) some tokens", sharpen,
            flatten);
}

static void test_backward_fd(void) {
  SECTION("token backward vs finite differences");
  EraConfig cfg;
  EraHead* h = new_token(2.0, 0.45, 1.2, 0.2, 0.7, 1, 0, &cfg);
  CHECK(h != NULL);
  if (!h) return;
  enum { N = 6, V = 5 };
  double logits[N * V];
  memcpy(logits, small_logits, sizeof logits);
  double adv[N] = {1.5, 1.5, 0.3, 0.8, 0.8, 1.5}, g[N] = {0.7, -1.3, 2.0, 0.4, -0.9, 1.1};
  TokOut o;
  CHECK_OK(tok_fwd(h, logits, N, V, small_labels, small_rid, adv, 64, &o, 0));
  double grad[N * V], fd[N * V];
  for (int i = 0; i < N * V; i++) grad[i] = -777;
  CHECK_OK(tok_bwd(h, logits, N, V, small_labels, small_rid, o.scale, g, grad));
  const double eps = 1e-6;
  int scale_stable = 1;
  for (int i = 0; i < N * V; i++) {
    double save = logits[i];
    TokOut p, m;
    logits[i] = save + eps;
    tok_fwd(h, logits, N, V, small_labels, small_rid, adv, 64, &p, 0);
    logits[i] = save - eps;
    tok_fwd(h, logits, N, V, small_labels, small_rid, adv, 64, &m, 0);
    logits[i] = save;
    double lp = 0, lm = 0;
    for (int t = 0; t < N; t++) {
      lp += g[t] * p.logp[t];
      lm += g[t] * m.logp[t];
      if (p.scale[t] != o.scale[t] || m.scale[t] != o.scale[t]) scale_stable = 0;
    }
    fd[i] = (lp - lm) / (2 * eps);
  }
  CHECK(scale_stable);
  CHECK_ARRAY_CLOSE(grad, fd, N * V, 1e-7, 1e-6);
  /* masked token: zero gradient */
  int zero = 1;
  for (int v = 0; v < V; v++) zero &= grad[2 * V + v] == 0.0;
  CHECK(zero);
  /* each row's gradient sums to zero (onehot - softmax) */
  for (int t = 0; t < N; t++) {
    double s = 0;
    for (int v = 0; v < V; v++) s += grad[t * V + v];
    CHECK_NEAR(s, 0.0, 1e-12);
  }
  era_head_free(h);
}

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

static void test_topk(void) {
  SECTION("token vocabulary top-K");
  enum { N = 4, V = 8, K = 3 };
  EraConfig cfg;
  EraHead* h = new_token(2.0, 0.45, 3.0, 0.2, 1.0, 1, K, &cfg);
  CHECK(h != NULL);
  if (!h) return;
  TokCfg c = tokcfg_from(&cfg);
  /* one sharp response: both full-vocabulary and top-K entropies are tiny, so c = k */
  double lg[N * V] = {
      9.0, 1.0, 0.5, 0.2, -0.3, -1.0, 0.7, -2.0, /* label 0: top-1 */
      0.4, 8.5, 0.3, -0.2, 1.2, 0.0, -1.5, 0.9,  /* label 6 (-1.5): outside top-3 */
      -0.5, 0.2, 0.8, 10.0, 0.6, -0.7, 0.1, 0.0, /* label 4 (0.6): 3rd largest */
      1.0, 0.3, 9.5, -0.4, 0.2, 0.5, 0.9, -0.1,  /* label 5 (0.5): 4th largest -> outside */
  };
  int64_t labels[N] = {0, 6, 4, 5};
  int64_t rid[N] = {0, 0, 0, 0};
  double adv[N] = {1.0, 1.0, 1.0, 1.0};
  double rlp[N], rs[N], rH[N];
  ref_token_forward(lg, N, V, labels, rid, adv, c, rlp, rH, rs, NULL, NULL);
  CHECK_MSG(rs[0] == 2.0, "test design: sharpened (scale %g)", rs[0]);
  CHECK_MSG(rlp[1] == -1e4 && rlp[3] == -1e4 && rlp[0] > -1e4 && rlp[2] > -1e4, "test design: top-K membership");
  TokOut o;
  CHECK_OK(tok_fwd(h, lg, N, V, labels, rid, adv, 64, &o, 0));
  CHECK_ARRAY_CLOSE(o.logp, rlp, N, 1e-10, 1e-10);
  CHECK(o.logp[1] == ERA_OUTSIDE_TOPK_LOGPROB && o.logp[3] == ERA_OUTSIDE_TOPK_LOGPROB);
  CHECK_ARRAY_CLOSE(o.scale, rs, N, 0, 0);
  /* H_t is the full-vocabulary entropy (docs/math.md#token-head: entropy(softmax(z_t))) */
  CHECK_ARRAY_CLOSE(o.H, rH, N, 1e-10, 1e-10);
  double g[N] = {1.0, 2.0, -0.5, 0.7}, grad[N * V], rgrad[N * V];
  CHECK_OK(tok_bwd(h, lg, N, V, labels, rid, o.scale, g, grad));
  ref_token_backward(lg, N, V, labels, rid, o.scale, g, c, rgrad);
  CHECK_ARRAY_CLOSE(grad, rgrad, N * V, 1e-12, 1e-10);
  int zero = 1;
  for (int v = 0; v < V; v++) zero &= grad[1 * V + v] == 0.0 && grad[3 * V + v] == 0.0;
  CHECK_MSG(zero, "a label outside the top-K gets zero gradient");
  /* entries outside the top-K get no gradient on in-top-K rows either */
  CHECK(grad[0 * V + 7] == 0.0 && grad[2 * V + 0] == 0.0);
  /* negative advantages (c = 1) with random logits */
  Rng rng = {4};
  double lr[N * V];
  for (int i = 0; i < N * V; i++) lr[i] = rng_normal(&rng);
  int64_t lab2[N] = {0, 3, 5, 7};
  double nadv[N] = {-1, -1, -1, -1};
  ref_token_forward(lr, N, V, lab2, rid, nadv, c, rlp, rH, rs, NULL, NULL);
  CHECK_OK(tok_fwd(h, lr, N, V, lab2, rid, nadv, 32, &o, 0));
  CHECK_ARRAY_CLOSE(o.logp, rlp, N, 1e-10, 1e-10);
  CHECK_OK(tok_bwd(h, lr, N, V, lab2, rid, o.scale, g, grad));
  ref_token_backward(lr, N, V, lab2, rid, o.scale, g, c, rgrad);
  CHECK_ARRAY_CLOSE(grad, rgrad, N * V, 1e-12, 1e-10);
  era_head_free(h);
  /* K >= V is the full vocabulary */
  h = new_token(2.0, 0.45, 3.0, 0.2, 1.0, 1, 100, &cfg);
  CHECK(h != NULL);
  if (h) {
    c = tokcfg_from(&cfg);
    c.topk = 0;
    ref_token_forward(lr, N, V, lab2, rid, nadv, c, rlp, rH, rs, NULL, NULL);
    CHECK_OK(tok_fwd(h, lr, N, V, lab2, rid, nadv, 64, &o, 0));
    CHECK_ARRAY_CLOSE(o.logp, rlp, N, 1e-10, 1e-10);
    era_head_free(h);
  }
}

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

/* Outputs a caller does not want are NULL: the others are the same as with all of them. */
static void test_optional_outputs(void) {
  SECTION("optional token outputs");
  enum { N = 6, V = 40 };
  Rng rng = {17};
  float logits[N * V];
  for (int i = 0; i < N * V; i++) logits[i] = (float)rng_normal(&rng);
  int64_t labels[N] = {1, 5, 9, 0, 39, 3}, rid[N] = {0, 0, 1, 1, -1, 1};
  double adv[N] = {1, 1, -1, -1, 0.5, -1};
  double lp[N], H[N], c[N], ao[N], hr[N];
  int64_t sl[2] = {N, V}, sn[1] = {N};
  DLTensor tl = tensor_f32(logits, 2, sl), tlab = tensor(labels, DT_I64, 1, sn, NULL),
           trid = tensor(rid, DT_I64, 1, sn, NULL), ta = tensor_f64(adv, 1, sn), tlp = tensor_f64(lp, 1, sn),
           tH = tensor_f64(H, 1, sn), tc = tensor_f64(c, 1, sn), tao = tensor_f64(ao, 1, sn),
           thr = tensor_f64(hr, 1, sn);
  EraHead* h = new_token_default();
  CHECK_OK(era_token_forward(h, &tl, &tlab, &trid, &ta, &tlp, &tH, &tc, &tao, &thr, NULL));
  /* log-probs only (PPO/GRPO old log-probs) */
  double lp2[N];
  for (int i = 0; i < N; i++) lp2[i] = -123.0;
  DLTensor tlp2 = tensor_f64(lp2, 1, sn);
  CHECK_OK(era_token_forward(h, &tl, &tlab, &trid, &ta, &tlp2, NULL, NULL, NULL, NULL, NULL));
  CHECK_ARRAY_NEAR(lp2, lp, N, 0.0);
  /* scale only (what the backward needs) and entropy only */
  double c2[N], H2[N];
  DLTensor tc2 = tensor_f64(c2, 1, sn), tH2 = tensor_f64(H2, 1, sn);
  CHECK_OK(era_token_forward(h, &tl, &tlab, &trid, &ta, NULL, NULL, &tc2, NULL, NULL, NULL));
  CHECK_ARRAY_NEAR(c2, c, N, 0.0);
  CHECK_OK(era_token_forward(h, &tl, &tlab, &trid, &ta, NULL, &tH2, NULL, NULL, NULL, NULL));
  CHECK_ARRAY_NEAR(H2, H, N, 0.0);
  /* no output at all is allowed too: only the inputs are checked */
  CHECK_OK(era_token_forward(h, &tl, &tlab, &trid, &ta, NULL, NULL, NULL, NULL, NULL, NULL));
  int64_t bad[N] = {1, 5, 9, 0, 39, 40};
  DLTensor tbad = tensor(bad, DT_I64, 1, sn, NULL);
  CHECK_STATUS(era_token_forward(h, &tl, &tbad, &trid, &ta, NULL, NULL, NULL, NULL, NULL, NULL),
               ERA_STATUS_INVALID_VALUE);
  /* an output of the wrong shape is still rejected when given */
  int64_t sbad[1] = {N - 1};
  DLTensor tshort = tensor_f64(lp2, 1, sbad);
  CHECK_STATUS(era_token_forward(h, &tl, &tlab, &trid, &ta, NULL, &tshort, NULL, NULL, NULL, NULL),
               ERA_STATUS_INVALID_SHAPE);
  era_head_free(h);
}

int main(void) {
  test_small();
  test_random();
  test_backward_fd();
  test_dtypes_and_layouts();
  test_topk();
  test_token_errors();
  test_optional_outputs();
  return check_finish();
}
