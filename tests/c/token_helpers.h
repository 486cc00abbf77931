/*
 * token_helpers.h: what the token head's C tests share: a token head from its parameters,
 * era_token_forward/backward on f64 logits, the comparison of every forward output with
 * the reference of helpers.h, and a hand-made batch (N = 6, V = 5). Include after helpers.h.
 */
#ifndef ERA_TESTS_TOKEN_HELPERS_H
#define ERA_TESTS_TOKEN_HELPERS_H

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

/* a file may use only some of the batch's arrays */
#if defined(__GNUC__) || defined(__clang__)
#define TOKEN_BATCH_ __attribute__((unused))
#else
#define TOKEN_BATCH_
#endif

/* N = 6, V = 5: two responses (non-contiguous) and a masked token labelled -100 */
static TOKEN_BATCH_ double small_logits[6 * 5] = {
    6.0, 0.5, -1.0, 0.0, -2.0,  /* t0: r0, peaked */
    7.0, -1.0, 0.0, 0.2, -3.0,  /* t1: r0, peaked */
    1.0, 2.0, 3.0, 4.0, 5.0,    /* t2: masked */
    0.1, -0.1, 0.05, 0.0, 0.2,  /* t3: r1, near uniform */
    0.3, 0.0, -0.2, 0.1, 0.0,   /* t4: r1, near uniform */
    5.5, 1.0, 0.0, -1.0, 0.5,   /* t5: r0, peaked */
};
static TOKEN_BATCH_ int64_t small_labels[6] = {1, 0, -100, 3, 2, 4};
static TOKEN_BATCH_ int64_t small_rid[6] = {0, 0, -1, 1, 1, 0};

#endif /* ERA_TESTS_TOKEN_HELPERS_H */
