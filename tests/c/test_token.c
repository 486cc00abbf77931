/* test_token.c: the token head (docs/math.md#token-head) through the C API:
 * a hand-made batch and random batches against an independent reference, backward
 * vs the formula and vs finite differences, vocabulary top-K, optional outputs.
 * Index and logit types, rank 3 and strides are in test_token_layouts.c, the
 * token-specific error statuses in test_token_errors.c. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "helpers.h"
#include "token_helpers.h"

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
  test_topk();
  test_optional_outputs();
  return check_finish();
}
