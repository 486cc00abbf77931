/*
 * helpers.h: DLTensor builders, a deterministic RNG, float format conversions
 * and independent double-precision reference implementations of
 * docs/math.md (the three heads) for the era C tests.
 */
#ifndef ERA_TESTS_HELPERS_H
#define ERA_TESTS_HELPERS_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "era.h"

#define L2PE ERA_LN_2PI_E /* ln(2*pi*e), from era.h */

/* ------------------------------------------------------------------ dtypes */

static const DLDataType DT_F64 = {kDLFloat, 64, 1};
static const DLDataType DT_F32 = {kDLFloat, 32, 1};
static const DLDataType DT_F16 = {kDLFloat, 16, 1};
static const DLDataType DT_BF16 = {kDLBfloat, 16, 1};
static const DLDataType DT_I32 = {kDLInt, 32, 1};
static const DLDataType DT_I64 = {kDLInt, 64, 1};

/* A borrowed DLTensor on the CPU. shape/strides are caller-owned arrays. */
static DLTensor tensor(void* data, DLDataType dtype, int32_t ndim, int64_t* shape, int64_t* strides) {
  DLTensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.device.device_type = kDLCPU;
  t.device.device_id = 0;
  t.ndim = ndim;
  t.dtype = dtype;
  t.shape = shape;
  t.strides = strides;
  t.byte_offset = 0;
  return t;
}

static DLTensor tensor_f64(double* data, int32_t ndim, int64_t* shape) {
  return tensor(data, DT_F64, ndim, shape, NULL);
}
static DLTensor tensor_f32(float* data, int32_t ndim, int64_t* shape) {
  return tensor(data, DT_F32, ndim, shape, NULL);
}

/* ---------------------------------------------------------------- configs */

static EraHead* new_gaussian(uint64_t dim, double h0, double lmin, double lmax) {
  EraConfig c;
  if (era_config_default(ERA_HEAD_KIND_GAUSSIAN, &c) != ERA_STATUS_OK) return NULL;
  c.dim = dim;
  c.target_entropy = h0;
  c.log_std_min = lmin;
  c.log_std_max = lmax;
  EraHead* h = NULL;
  if (era_head_new(&c, &h) != ERA_STATUS_OK) return NULL;
  return h;
}

static EraHead* new_softmax(uint64_t n, double h0, double tau) {
  EraConfig c;
  if (era_config_default(ERA_HEAD_KIND_SOFTMAX, &c) != ERA_STATUS_OK) return NULL;
  c.num_classes = n;
  c.target_entropy = h0;
  c.tau = tau;
  EraHead* h = NULL;
  if (era_head_new(&c, &h) != ERA_STATUS_OK) return NULL;
  return h;
}

static EraHead* new_token_default(void) {
  EraConfig c;
  if (era_config_default(ERA_HEAD_KIND_TOKEN, &c) != ERA_STATUS_OK) return NULL;
  EraHead* h = NULL;
  if (era_head_new(&c, &h) != ERA_STATUS_OK) return NULL;
  return h;
}

/* -------------------------------------------------------------------- RNG */

typedef struct {
  uint64_t s;
} Rng;

static uint64_t rng_next(Rng* r) {
  /* splitmix64 */
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
/* uniform in [0, 1) */
static double rng_uniform(Rng* r) { return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }
static double rng_range(Rng* r, double lo, double hi) { return lo + (hi - lo) * rng_uniform(r); }
static double rng_normal(Rng* r) {
  double u1 = rng_uniform(r), u2 = rng_uniform(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
static int64_t rng_int(Rng* r, int64_t lo, int64_t hi_exclusive) {
  return lo + (int64_t)(rng_next(r) % (uint64_t)(hi_exclusive - lo));
}

/* ------------------------------------------------------- float conversion */

static uint16_t f32_to_bf16(float f) {
  /* round to nearest even; exact for values with <= 8 significant bits */
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t rounding = 0x7FFFu + ((u >> 16) & 1u);
  return (uint16_t)((u + rounding) >> 16);
}
static float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
/* IEEE half; handles zero and normal numbers exactly representable in half
 * (what the tests feed it), otherwise rounds toward zero. */
static uint16_t f32_to_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  int32_t exp = (int32_t)((u >> 23) & 0xFF) - 127 + 15;
  uint32_t mant = u & 0x7FFFFFu;
  if ((u & 0x7FFFFFFFu) == 0) return sign;
  if (exp <= 0) return sign; /* flush tiny values (not used by the tests) */
  if (exp >= 31) return (uint16_t)(sign | 0x7C00u);
  return (uint16_t)(sign | (uint16_t)(exp << 10) | (uint16_t)(mant >> 13));
}
static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FFu;
  uint32_t u;
  if (exp == 0 && mant == 0) {
    u = sign;
  } else if (exp == 0) { /* subnormal */
    float f = (float)mant * (1.0f / 16777216.0f);
    return (h & 0x8000u) ? -f : f;
  } else if (exp == 31) {
    u = sign | 0x7F800000u | (mant << 13);
  } else {
    u = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* ------------------------------------------------------ reference: misc */

static double ref_lse(const double* z, int n) {
  double m = -INFINITY;
  for (int i = 0; i < n; i++) m = z[i] > m ? z[i] : m;
  double s = 0;
  for (int i = 0; i < n; i++) s += exp(z[i] - m);
  return m + log(s);
}
static void ref_softmax(const double* z, int n, double* p) {
  double l = ref_lse(z, n);
  for (int i = 0; i < n; i++) p[i] = exp(z[i] - l);
}
/* entropy of softmax(z) */
static double ref_entropy_logits(const double* z, int n) {
  double l = ref_lse(z, n);
  double s = 0;
  for (int i = 0; i < n; i++) s += exp(z[i] - l) * z[i];
  return l - s;
}

/* ---------------------------------------------------- reference: gaussian */

/* docs/math.md#gaussian-head: out and (optionally) s, k, mask */
static void ref_gaussian(const double* z, int D, double h0, double delta, double lmin, double lmax, double* out,
                         double* grad_out_g, double* dz, double* ddelta) {
  double p[256];
  ref_softmax(z, D, p);
  double S = h0 + delta - 0.5 * D * L2PE;
  double k = S - D * lmax;
  double sgs = 0;
  double gm[256];
  for (int i = 0; i < D; i++) {
    double y = lmax + k * p[i];
    double o = y < lmin ? lmin : (y > lmax ? lmax : y);
    if (out) out[i] = o;
    int m = (y > lmin && y < lmax) ? 1 : 0;
    gm[i] = grad_out_g ? grad_out_g[i] * m : 0;
    sgs += gm[i] * p[i];
  }
  if (dz && grad_out_g)
    for (int j = 0; j < D; j++) dz[j] = k * p[j] * (gm[j] - sgs);
  if (ddelta) *ddelta = sgs;
}

/* ----------------------------------------------------- reference: softmax */

static void ref_softmax_head(const double* z, int n, double h0, double tau, double* out, const double* g,
                             double* dz) {
  double p[1024], h[1024], u[1024], w[1024], a[1024];
  double C = exp(h0 - 1.0);
  double ub = log(tau) / tau;
  double slope = (ub - C / n) / (1.0 - 1.0 / n);
  double b = (C - slope) / n;
  ref_softmax(z, n, p);
  double wmin = INFINITY;
  for (int i = 0; i < n; i++) {
    h[i] = slope * p[i] + b;
    u[i] = -1.0 - log(h[i]);
    w[i] = -1.0 - sqrt(2.0 * u[i]) - 0.75 * u[i];
    if (w[i] < wmin) wmin = w[i];
  }
  if (out)
    for (int i = 0; i < n; i++) out[i] = w[i] - wmin;
  if (g && dz) {
    double sa = 0;
    for (int i = 0; i < n; i++) {
      a[i] = g[i] * (1.0 / sqrt(2.0 * u[i]) + 0.75) / h[i];
      sa += a[i] * p[i];
    }
    for (int j = 0; j < n; j++) dz[j] = slope * p[j] * (a[j] - sa);
  }
}

/* ------------------------------------------- reference: truncated normal */

static double ref_phi(double x) { return exp(-0.5 * x * x) / sqrt(2.0 * 3.14159265358979323846); }
static double ref_Phi(double x) { return 0.5 * (1.0 + erf(x / sqrt(2.0))); }
static double ref_tn_entropy(double m, double sigma, double a, double b) {
  double al = (a - m) / sigma, be = (b - m) / sigma;
  double Z = ref_Phi(be) - ref_Phi(al);
  double t1 = isinf(al) ? 0.0 : al * ref_phi(al);
  double t2 = isinf(be) ? 0.0 : be * ref_phi(be);
  return log(sqrt(2.0 * 3.14159265358979323846 * exp(1.0)) * sigma * Z) + (t1 - t2) / (2.0 * Z);
}

/* ------------------------------------------------------- reference: token */

typedef struct {
  double k, omega_low, omega_high, rho, T;
  int adv_scaling;
  int topk; /* 0 = full vocabulary */
} TokCfg;

static TokCfg tokcfg_from(const EraConfig* c) {
  TokCfg t;
  t.k = c->k;
  t.omega_low = c->omega_low;
  t.omega_high = c->omega_high;
  t.rho = c->top_fraction;
  t.T = c->temperature;
  t.adv_scaling = c->advantage_scaling != 0;
  t.topk = (int)c->vocab_topk;
  return t;
}

static int ref_cmp_desc(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x < y) - (x > y);
}

/* is z[y] among the K largest of z[0..V) (no ties in the tests) */
static int ref_in_topk(const double* z, int V, int y, int K) {
  if (K <= 0 || K >= V) return 1;
  int greater = 0;
  for (int i = 0; i < V; i++)
    if (z[i] > z[y]) greater++;
  return greater < K;
}
/* lse over the K largest entries of z (all when K == 0) */
static double ref_lse_topk(const double* z, int V, int K) {
  if (K <= 0 || K >= V) return ref_lse(z, V);
  double tmp[4096];
  memcpy(tmp, z, sizeof(double) * (size_t)V);
  qsort(tmp, (size_t)V, sizeof(double), ref_cmp_desc);
  return ref_lse(tmp, K);
}

/* docs/math.md#token-head, forward. logits [N, V] row-major; rid[t] = -1 masked. Any output may be NULL. */
static void ref_token_forward(const double* logits, int N, int V, const int64_t* labels, const int64_t* rid,
                              const double* adv, TokCfg c, double* logp, double* H, double* scale, double* adv_out,
                              double* hresp_tok) {
  double* z = (double*)malloc(sizeof(double) * (size_t)V);
  double* Ht = (double*)malloc(sizeof(double) * (size_t)(N > 0 ? N : 1));
  int R = 0;
  for (int t = 0; t < N; t++) {
    for (int v = 0; v < V; v++) z[v] = logits[(size_t)t * V + v] / c.T;
    Ht[t] = ref_entropy_logits(z, V);
    if (H) H[t] = Ht[t];
    if (rid[t] + 1 > R) R = (int)rid[t] + 1;
  }
  double* hresp = (double*)malloc(sizeof(double) * (size_t)(R > 0 ? R : 1));
  double* buf = (double*)malloc(sizeof(double) * (size_t)(N > 0 ? N : 1));
  for (int r = 0; r < R; r++) {
    int n = 0;
    for (int t = 0; t < N; t++)
      if (rid[t] == r) buf[n++] = Ht[t];
    if (n == 0) {
      hresp[r] = 0;
      continue;
    }
    qsort(buf, (size_t)n, sizeof(double), ref_cmp_desc);
    int kr = (int)floor(c.rho * n);
    if (kr < 1) kr = 1;
    double s = 0;
    for (int i = 0; i < kr; i++) s += buf[i];
    hresp[r] = s / kr;
  }
  for (int t = 0; t < N; t++) {
    double ct = 1.0;
    if (rid[t] >= 0) {
      double hr = hresp[rid[t]];
      if (adv[t] > 0 && hr < c.omega_low)
        ct = c.k;
      else if (adv[t] > 0 && hr > c.omega_high)
        ct = 1.0 / c.k;
    }
    if (scale) scale[t] = ct;
    if (hresp_tok) hresp_tok[t] = rid[t] >= 0 ? hresp[rid[t]] : 0.0;
    if (adv_out) adv_out[t] = (rid[t] >= 0 && c.adv_scaling) ? adv[t] / ct : adv[t];
    if (logp) {
      if (rid[t] < 0) {
        logp[t] = 0.0;
      } else {
        for (int v = 0; v < V; v++) z[v] = ct * logits[(size_t)t * V + v] / c.T;
        int y = (int)labels[t];
        if (!ref_in_topk(z, V, y, c.topk))
          logp[t] = -1e4;
        else
          logp[t] = z[y] - ref_lse_topk(z, V, c.topk);
      }
    }
  }
  free(z);
  free(Ht);
  free(hresp);
  free(buf);
}

/* docs/math.md#token-head, backward: grad [N, V] */
static void ref_token_backward(const double* logits, int N, int V, const int64_t* labels, const int64_t* rid,
                               const double* scale, const double* g, TokCfg c, double* grad) {
  double* z = (double*)malloc(sizeof(double) * (size_t)V);
  for (int t = 0; t < N; t++) {
    double* gr = grad + (size_t)t * V;
    for (int v = 0; v < V; v++) gr[v] = 0.0;
    if (rid[t] < 0) continue;
    double ct = scale[t];
    for (int v = 0; v < V; v++) z[v] = ct * logits[(size_t)t * V + v] / c.T;
    int y = (int)labels[t];
    if (!ref_in_topk(z, V, y, c.topk)) continue;
    double l = ref_lse_topk(z, V, c.topk);
    for (int v = 0; v < V; v++) {
      double p = ref_in_topk(z, V, v, c.topk) ? exp(z[v] - l) : 0.0;
      gr[v] = (ct / c.T) * (((v == y) ? 1.0 : 0.0) - p) * g[t];
    }
  }
  free(z);
}

/* ------------------------------------------------- call shorthands (f64) */

/* forward on compact row-major f64 buffers of the given shape */
static EraStatus fwd_f64(const EraHead* h, double* z, double* out, int32_t ndim, int64_t* shape) {
  DLTensor tz = tensor_f64(z, ndim, shape), to = tensor_f64(out, ndim, shape);
  return era_head_forward(h, &tz, &to, NULL);
}
static EraStatus bwd_f64(const EraHead* h, double* z, double* g, double* dz, int32_t ndim, int64_t* shape) {
  DLTensor tz = tensor_f64(z, ndim, shape), tg = tensor_f64(g, ndim, shape), td = tensor_f64(dz, ndim, shape);
  return era_head_backward(h, &tz, &tg, &td, NULL);
}
static EraStatus fwd_f32(const EraHead* h, float* z, float* out, int32_t ndim, int64_t* shape) {
  DLTensor tz = tensor_f32(z, ndim, shape), to = tensor_f32(out, ndim, shape);
  return era_head_forward(h, &tz, &to, NULL);
}
static EraStatus bwd_f32(const EraHead* h, float* z, float* g, float* dz, int32_t ndim, int64_t* shape) {
  DLTensor tz = tensor_f32(z, ndim, shape), tg = tensor_f32(g, ndim, shape), td = tensor_f32(dz, ndim, shape);
  return era_head_backward(h, &tz, &tg, &td, NULL);
}
/* entropy of out [.., D] (ndim) into ent [..] (ndim - 1) */
static EraStatus ent_f64(const EraHead* h, double* out, double* ent, int32_t ndim, int64_t* shape) {
  DLTensor to = tensor_f64(out, ndim, shape), te = tensor_f64(ent, ndim - 1, ndim > 1 ? shape : NULL);
  return era_head_entropy(h, &to, &te, NULL);
}

static void f32_to_f64_array(const float* a, double* b, size_t n) {
  for (size_t i = 0; i < n; i++) b[i] = (double)a[i];
}
static void f64_to_f32_array(const double* a, float* b, size_t n) {
  for (size_t i = 0; i < n; i++) b[i] = (float)a[i];
}

#endif /* ERA_TESTS_HELPERS_H */
