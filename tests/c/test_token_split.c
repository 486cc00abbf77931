/* test_token_split.c: the split token forward (docs/math.md#split-token-forward)
 * through the C API: era_token_logprob_columns and era_token_decide against
 * era_token_forward (the same bits) and against an independent reference;
 * the per-token temperature of era_token_forward_temperature and
 * era_token_backward_temperature; era_token_columns_backward against
 * era_token_backward (the same bits), in place, and against central finite
 * differences of the columns and the entropy; every error status of the new calls. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "helpers.h"

enum { N = 12, V = 7 };

static EraHead* new_tok(double k, double T, uint64_t topk) {
  EraConfig c;
  era_config_default(ERA_HEAD_KIND_TOKEN, &c);
  c.k = k;
  c.omega_low = 0.45;
  c.omega_high = 1.6;
  c.temperature = T;
  c.vocab_topk = topk;
  EraHead* h = NULL;
  return era_head_new(&c, &h) == ERA_STATUS_OK ? h : NULL;
}

/* three responses: peaked (sharpen), flat (flatten), middling; one masked token */
static void batch(Rng* rng, double* x, int64_t* lab, int64_t* rid, double* adv) {
  for (int t = 0; t < N; t++) {
    int r = t < 11 ? t / 4 : -1;
    rid[t] = r;
    lab[t] = rng_int(rng, 0, V);
    adv[t] = 0.5 + 0.1 * rng_normal(rng);
    for (int v = 0; v < V; v++) x[t * V + v] = (r == 1 ? 0.02 : 1.0) * rng_normal(rng);
    if (r == 0) x[t * V + lab[t]] = 40.0;
  }
}

static int same_bits(const double* a, const double* b, int n) { return memcmp(a, b, sizeof(double) * (size_t)n) == 0; }

static void test_split_equals_one_call(void) {
  SECTION("split forward = era_token_forward, bit for bit");
  Rng rng = {5};
  double x[N * V], adv[N];
  int64_t lab[N], rid[N], slab[N];
  batch(&rng, x, lab, rid, adv);
  for (int t = 0; t < N; t++) slab[t] = rid[t] < 0 ? -100 : lab[t];
  int64_t sl[2] = {N, V}, sn[1] = {N}, sc3[2] = {N, 3};
  for (int topk = 0; topk <= 3; topk += 3) {
    EraHead* h = new_tok(3.0, 0.8, (uint64_t)topk);
    CHECK(h != NULL);
    if (!h) return;
    double lp[N], H[N], sc[N], ao[N], hr[N];
    DLTensor tl = tensor_f64(x, 2, sl), tlab = tensor(lab, DT_I64, 1, sn, NULL),
             tslab = tensor(slab, DT_I64, 1, sn, NULL), trid = tensor(rid, DT_I64, 1, sn, NULL),
             ta = tensor_f64(adv, 1, sn), tlp = tensor_f64(lp, 1, sn), tH = tensor_f64(H, 1, sn),
             tsc = tensor_f64(sc, 1, sn), tao = tensor_f64(ao, 1, sn), thr = tensor_f64(hr, 1, sn);
    CHECK_OK(era_token_forward(h, &tl, &tlab, &trid, &ta, &tlp, &tH, &tsc, &tao, &thr, NULL));
    double cols[N * 3], H2[N], sq[N], lp2[N], sc2[N], ao2[N], hr2[N];
    int64_t col[N];
    DLTensor tcols = tensor_f64(cols, 2, sc3), tH2 = tensor_f64(H2, 1, sn), tsq = tensor_f64(sq, 1, sn),
             tlp2 = tensor_f64(lp2, 1, sn), tsc2 = tensor_f64(sc2, 1, sn), tao2 = tensor_f64(ao2, 1, sn),
             thr2 = tensor_f64(hr2, 1, sn), tcol = tensor(col, DT_I64, 1, sn, NULL);
    CHECK_OK(era_token_logprob_columns(h, &tl, &tslab, NULL, &tcols, &tH2, &tsq, NULL));
    CHECK_OK(era_token_decide(h, &tH2, &trid, &ta, &tcols, &tlp2, &tsc2, &tao2, &thr2, &tcol, NULL));
    CHECK(same_bits(H, H2, N));
    CHECK(same_bits(lp, lp2, N));
    CHECK(same_bits(sc, sc2, N));
    CHECK(same_bits(ao, ao2, N));
    CHECK(same_bits(hr, hr2, N));
    int branches = 0;
    for (int t = 0; t < N; t++) {
      branches |= sc[t] == 3.0 ? 1 : sc[t] == 1.0 / 3.0 ? 2 : 4;
      CHECK(col[t] == (sc[t] == 1.0 ? 0 : sc[t] == 3.0 ? 1 : 2));
    }
    CHECK_MSG(branches == 7, "test design: every scale branch occurs (%d)", branches);
    /* the columns and the squared sum against an independent reference */
    for (int t = 0; t < N; t++) {
      double z[V], p2 = 0, l = 0;
      for (int v = 0; v < V; v++) z[v] = x[t * V + v] / 0.8;
      l = ref_lse(z, V);
      for (int v = 0; v < V; v++) p2 += exp(2 * (z[v] - l));
      CHECK_CLOSE(sq[t], p2, 1e-13, 1e-12);
      CHECK_CLOSE(H2[t], ref_entropy_logits(z, V), 1e-12, 1e-12);
      if (slab[t] < 0) {
        CHECK(cols[3 * t] == 0 && cols[3 * t + 1] == 0 && cols[3 * t + 2] == 0);
        continue;
      }
      double cs[3] = {1.0, 3.0, 1.0 / 3.0};
      for (int j = 0; j < 3; j++) {
        double zc[V];
        for (int v = 0; v < V; v++) zc[v] = cs[j] * z[v];
        double want = zc[slab[t]] - ref_lse_topk(zc, V, topk);
        int outside = 0;
        if (topk) {
          int above = 0;
          for (int v = 0; v < V; v++) above += z[v] > z[slab[t]];
          outside = above >= topk;
        }
        CHECK_CLOSE(cols[3 * t + j], outside ? -1e4 : want, 1e-12, 1e-12);
      }
    }
    /* every output optional; the decision alone needs no columns */
    CHECK_OK(era_token_logprob_columns(h, &tl, &tslab, NULL, NULL, NULL, NULL, NULL));
    CHECK_OK(era_token_decide(h, &tH2, &trid, &ta, NULL, NULL, &tsc2, NULL, NULL, NULL, NULL));
    CHECK(same_bits(sc, sc2, N));
    era_head_free(h);
  }
}

static void test_temperature(void) {
  SECTION("a temperature per token");
  Rng rng = {9};
  double x[N * V], adv[N];
  int64_t lab[N], rid[N];
  batch(&rng, x, lab, rid, adv);
  int64_t sl[2] = {N, V}, sn[1] = {N};
  EraHead* h1 = new_tok(2.0, 1.0, 0);
  EraHead* h7 = new_tok(2.0, 0.7, 0);
  CHECK(h1 && h7);
  if (!h1 || !h7) return;
  double T[N], lp[N], H[N], sc[N], lp7[N], H7[N], sc7[N];
  for (int t = 0; t < N; t++) T[t] = 0.7;
  DLTensor tl = tensor_f64(x, 2, sl), tlab = tensor(lab, DT_I64, 1, sn, NULL), trid = tensor(rid, DT_I64, 1, sn, NULL),
           ta = tensor_f64(adv, 1, sn), tT = tensor_f64(T, 1, sn), tlp = tensor_f64(lp, 1, sn),
           tH = tensor_f64(H, 1, sn), tsc = tensor_f64(sc, 1, sn), tlp7 = tensor_f64(lp7, 1, sn),
           tH7 = tensor_f64(H7, 1, sn), tsc7 = tensor_f64(sc7, 1, sn);
  /* a head at T = 1 given 0.7 for every token is the head configured at 0.7 */
  CHECK_OK(era_token_forward_temperature(h1, &tl, &tlab, &trid, &ta, &tT, &tlp, &tH, &tsc, NULL, NULL, NULL));
  CHECK_OK(era_token_forward(h7, &tl, &tlab, &trid, &ta, &tlp7, &tH7, &tsc7, NULL, NULL, NULL));
  CHECK(same_bits(lp, lp7, N) && same_bits(H, H7, N) && same_bits(sc, sc7, N));
  /* NULL temperature: the head's */
  CHECK_OK(era_token_forward_temperature(h7, &tl, &tlab, &trid, &ta, NULL, &tlp, &tH, &tsc, NULL, NULL, NULL));
  CHECK(same_bits(lp, lp7, N));
  double g[N], gr[N * V], gr7[N * V];
  for (int t = 0; t < N; t++) g[t] = rng_normal(&rng);
  DLTensor tg = tensor_f64(g, 1, sn), tgr = tensor_f64(gr, 2, sl), tgr7 = tensor_f64(gr7, 2, sl);
  CHECK_OK(era_token_backward_temperature(h1, &tl, &tlab, &trid, &tT, &tsc, &tg, &tgr, NULL));
  CHECK_OK(era_token_backward(h7, &tl, &tlab, &trid, &tsc7, &tg, &tgr7, NULL));
  CHECK(same_bits(gr, gr7, N * V));
  /* each token at its own temperature: token t of a mixed call = token t of a uniform call */
  for (int t = 0; t < N; t++) T[t] = t % 2 ? 0.7 : 1.0;
  double cols[N * 3], cols1[N * 3], cols7[N * 3];
  int64_t sc3[2] = {N, 3};
  DLTensor tc = tensor_f64(cols, 2, sc3), tc1 = tensor_f64(cols1, 2, sc3), tc7 = tensor_f64(cols7, 2, sc3);
  CHECK_OK(era_token_logprob_columns(h1, &tl, &tlab, &tT, &tc, NULL, NULL, NULL));
  CHECK_OK(era_token_logprob_columns(h1, &tl, &tlab, NULL, &tc1, NULL, NULL, NULL));
  CHECK_OK(era_token_logprob_columns(h7, &tl, &tlab, NULL, &tc7, NULL, NULL, NULL));
  for (int t = 0; t < N; t++) CHECK(same_bits(cols + 3 * t, (t % 2 ? cols7 : cols1) + 3 * t, 3));
  era_head_free(h1);
  era_head_free(h7);
}

/* sum_t (a_t . columns_t + b_t H_t) */
static double split_loss(const EraHead* h, double* x, int64_t* lab, double* T, const double* a, const double* b) {
  int64_t sl[2] = {N, V}, sn[1] = {N}, sc3[2] = {N, 3};
  double cols[N * 3], H[N];
  DLTensor tl = tensor_f64(x, 2, sl), tlab = tensor(lab, DT_I64, 1, sn, NULL), tT = tensor_f64(T, 1, sn),
           tc = tensor_f64(cols, 2, sc3), tH = tensor_f64(H, 1, sn);
  if (era_token_logprob_columns(h, &tl, &tlab, &tT, &tc, &tH, NULL, NULL) != ERA_STATUS_OK) return NAN;
  double s = 0;
  for (int t = 0; t < N; t++) s += a[3 * t] * cols[3 * t] + a[3 * t + 1] * cols[3 * t + 1] + a[3 * t + 2] * cols[3 * t + 2] + b[t] * H[t];
  return s;
}

static void test_columns_backward(void) {
  SECTION("era_token_columns_backward");
  Rng rng = {13};
  double x[N * V], adv[N];
  int64_t lab[N], rid[N], slab[N];
  batch(&rng, x, lab, rid, adv);
  for (int t = 0; t < N; t++) slab[t] = rid[t] < 0 ? -100 : lab[t];
  int64_t sl[2] = {N, V}, sn[1] = {N}, sc3[2] = {N, 3};
  EraHead* h = new_tok(3.0, 1.0, 0);
  CHECK(h != NULL);
  if (!h) return;
  /* one column: era_token_backward at that column's scale */
  double cs[3] = {1.0, 3.0, 1.0 / 3.0};
  for (int j = 0; j < 3; j++) {
    double gc[N * 3] = {0}, g[N], sc[N], want[N * V], got[N * V], inplace[N * V];
    for (int t = 0; t < N; t++) {
      g[t] = rng_normal(&rng);
      gc[3 * t + j] = g[t];
      sc[t] = cs[j];
    }
    DLTensor tl = tensor_f64(x, 2, sl), tlab = tensor(lab, DT_I64, 1, sn, NULL), tslab = tensor(slab, DT_I64, 1, sn, NULL),
             trid = tensor(rid, DT_I64, 1, sn, NULL), tsc = tensor_f64(sc, 1, sn), tg = tensor_f64(g, 1, sn),
             tgc = tensor_f64(gc, 2, sc3), tw = tensor_f64(want, 2, sl), tgot = tensor_f64(got, 2, sl);
    CHECK_OK(era_token_backward(h, &tl, &tlab, &trid, &tsc, &tg, &tw, NULL));
    CHECK_OK(era_token_columns_backward(h, &tl, &tslab, NULL, &tgc, NULL, &tgot, NULL));
    CHECK_MSG(same_bits(want, got, N * V), "column %d", j);
    memcpy(inplace, x, sizeof inplace);
    DLTensor tin = tensor_f64(inplace, 2, sl);
    CHECK_OK(era_token_columns_backward(h, &tin, &tslab, NULL, &tgc, NULL, &tin, NULL));
    CHECK_MSG(same_bits(want, inplace, N * V), "in place, column %d", j);
  }
  /* all columns and the entropy at per-token temperatures: central differences */
  double T[N], a[N * 3], b[N], grad[N * V];
  for (int t = 0; t < N; t++) {
    T[t] = 0.6 + 0.1 * (t % 5);
    b[t] = rng_normal(&rng);
    for (int j = 0; j < 3; j++) a[3 * t + j] = rng_normal(&rng);
  }
  DLTensor tl = tensor_f64(x, 2, sl), tslab = tensor(slab, DT_I64, 1, sn, NULL), tT = tensor_f64(T, 1, sn),
           ta = tensor_f64(a, 2, sc3), tb = tensor_f64(b, 1, sn), tgr = tensor_f64(grad, 2, sl);
  CHECK_OK(era_token_columns_backward(h, &tl, &tslab, &tT, &ta, &tb, &tgr, NULL));
  double worst = 0;
  for (int i = 0; i < N * V; i++) {
    double keep = x[i], eps = 1e-6;
    x[i] = keep + eps;
    double fp = split_loss(h, x, slab, T, a, b);
    x[i] = keep - eps;
    double fm = split_loss(h, x, slab, T, a, b);
    x[i] = keep;
    double fd = (fp - fm) / (2 * eps), err = fabs(fd - grad[i]) / (1 + fabs(fd));
    worst = err > worst ? err : worst;
  }
  CHECK_MSG(worst < 1e-7, "worst relative error against finite differences: %g", worst);
  era_head_free(h);
}

static void test_split_errors(void) {
  SECTION("split token calls: errors");
  EraHead* h = new_tok(2.0, 1.0, 0);
  EraHead* sh = new_softmax(5, 1.0, 4.0);
  CHECK(h != NULL && sh != NULL);
  if (!h || !sh) return;
  double x[N * V] = {0}, T[N], cols[N * 3], H[N], sq[N], adv[N] = {0}, lp[N], sc[N], gcol[N * 3] = {0}, grad[N * V];
  int64_t lab[N] = {0}, rid[N] = {0}, col[N];
  int32_t bad32[N] = {0};
  for (int t = 0; t < N; t++) T[t] = 1.0;
  int64_t sl[2] = {N, V}, sn[1] = {N}, sc3[2] = {N, 3}, sc2[2] = {N, 2}, snm[1] = {N - 1};
  DLTensor tl = tensor_f64(x, 2, sl), tlab = tensor(lab, DT_I64, 1, sn, NULL), trid = tensor(rid, DT_I64, 1, sn, NULL),
           tT = tensor_f64(T, 1, sn), tc = tensor_f64(cols, 2, sc3), tH = tensor_f64(H, 1, sn), tsq = tensor_f64(sq, 1, sn),
           ta = tensor_f64(adv, 1, sn), tlp = tensor_f64(lp, 1, sn), tsc = tensor_f64(sc, 1, sn),
           tcol = tensor(col, DT_I64, 1, sn, NULL), tgc = tensor_f64(gcol, 2, sc3), tgr = tensor_f64(grad, 2, sl);
  CHECK_OK(era_token_logprob_columns(h, &tl, &tlab, &tT, &tc, &tH, &tsq, NULL));
  /* NULL pointers and the wrong kind of head */
  CHECK_STATUS(era_token_logprob_columns(NULL, &tl, &tlab, NULL, &tc, NULL, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_logprob_columns(h, NULL, &tlab, NULL, &tc, NULL, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_logprob_columns(sh, &tl, &tlab, NULL, &tc, NULL, NULL, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_token_decide(NULL, &tH, &trid, &ta, NULL, NULL, &tsc, NULL, NULL, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_decide(h, &tH, NULL, &ta, NULL, NULL, &tsc, NULL, NULL, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_decide(sh, &tH, &trid, &ta, NULL, NULL, &tsc, NULL, NULL, NULL, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_token_columns_backward(NULL, &tl, &tlab, NULL, &tgc, NULL, &tgr, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_columns_backward(h, &tl, &tlab, NULL, &tgc, NULL, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_columns_backward(sh, &tl, &tlab, NULL, &tgc, NULL, &tgr, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_token_forward_temperature(sh, &tl, &tlab, &trid, &ta, &tT, &tlp, NULL, NULL, NULL, NULL, NULL),
               ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_token_backward_temperature(sh, &tl, &tlab, &trid, &tT, &tsc, &ta, &tgr, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  /* shapes */
  DLTensor tc2 = tensor_f64(cols, 2, sc2), tshort = tensor_f64(T, 1, snm);
  CHECK_STATUS(era_token_logprob_columns(h, &tl, &tlab, NULL, &tc2, NULL, NULL, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_token_logprob_columns(h, &tl, &tlab, &tshort, &tc, NULL, NULL, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_token_decide(h, &tH, &trid, &ta, &tc2, &tlp, NULL, NULL, NULL, NULL, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_token_decide(h, &tH, &trid, &tshort, NULL, NULL, &tsc, NULL, NULL, NULL, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_token_columns_backward(h, &tl, &tlab, NULL, &tc2, NULL, &tgr, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_token_forward_temperature(h, &tl, &tlab, &trid, &ta, &tshort, &tlp, NULL, NULL, NULL, NULL, NULL),
               ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_token_backward_temperature(h, &tl, &tlab, &trid, &tshort, &tsc, &ta, &tgr, NULL), ERA_STATUS_INVALID_SHAPE);
  /* dtypes: an integer temperature, a float column index */
  DLTensor tTi = tensor(bad32, DT_I32, 1, sn, NULL), tcolf = tensor_f64(lp, 1, sn);
  CHECK_STATUS(era_token_logprob_columns(h, &tl, &tlab, &tTi, &tc, NULL, NULL, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_token_decide(h, &tH, &trid, &ta, NULL, NULL, NULL, NULL, NULL, &tcolf, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_token_forward_temperature(h, &tl, &tlab, &trid, &ta, &tTi, &tlp, NULL, NULL, NULL, NULL, NULL),
               ERA_STATUS_UNSUPPORTED_DTYPE);
  /* values: a temperature that is not positive, a label beyond the vocabulary, an id below -1 */
  T[3] = 0.0;
  CHECK_STATUS(era_token_logprob_columns(h, &tl, &tlab, &tT, &tc, NULL, NULL, NULL), ERA_STATUS_INVALID_VALUE);
  CHECK_STATUS(era_token_forward_temperature(h, &tl, &tlab, &trid, &ta, &tT, &tlp, NULL, NULL, NULL, NULL, NULL),
               ERA_STATUS_INVALID_VALUE);
  CHECK_STATUS(era_token_columns_backward(h, &tl, &tlab, &tT, &tgc, NULL, &tgr, NULL), ERA_STATUS_INVALID_VALUE);
  CHECK_STATUS(era_token_backward_temperature(h, &tl, &tlab, &trid, &tT, &tsc, &ta, &tgr, NULL), ERA_STATUS_INVALID_VALUE);
  T[3] = NAN;
  CHECK_STATUS(era_token_logprob_columns(h, &tl, &tlab, &tT, &tc, NULL, NULL, NULL), ERA_STATUS_INVALID_VALUE);
  T[3] = 1.0;
  lab[2] = V;
  CHECK_STATUS(era_token_logprob_columns(h, &tl, &tlab, NULL, &tc, NULL, NULL, NULL), ERA_STATUS_INVALID_VALUE);
  CHECK_STATUS(era_token_columns_backward(h, &tl, &tlab, NULL, &tgc, NULL, &tgr, NULL), ERA_STATUS_INVALID_VALUE);
  lab[2] = -100; /* ignored */
  CHECK_OK(era_token_logprob_columns(h, &tl, &tlab, NULL, &tc, NULL, NULL, NULL));
  CHECK(cols[6] == 0 && cols[7] == 0 && cols[8] == 0);
  rid[1] = -2;
  CHECK_STATUS(era_token_decide(h, &tH, &trid, &ta, NULL, NULL, &tsc, NULL, NULL, NULL, NULL), ERA_STATUS_INVALID_VALUE);
  rid[1] = 0;
  /* logprobs_out needs the columns */
  CHECK_STATUS(era_token_decide(h, &tH, &trid, &ta, NULL, &tlp, NULL, NULL, NULL, NULL, NULL), ERA_STATUS_INVALID_ARGUMENT);
  /* outputs that overlap */
  CHECK_STATUS(era_token_logprob_columns(h, &tl, &tlab, NULL, NULL, &tH, &tH, NULL), ERA_STATUS_INVALID_LAYOUT);
  CHECK_STATUS(era_token_decide(h, &tH, &trid, &ta, NULL, NULL, &tsc, &tsc, NULL, NULL, NULL), ERA_STATUS_INVALID_LAYOUT);
  (void)tcol;
  era_head_free(h);
  era_head_free(sh);
}

int main(void) {
  test_split_equals_one_call();
  test_temperature();
  test_columns_backward();
  test_split_errors();
  return check_finish();
}
