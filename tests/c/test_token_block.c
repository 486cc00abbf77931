/* test_token_block.c: the token head over vocabulary blocks
 * (docs/math.md#vocabulary-blocks) through the C API: block passes over a
 * padded vocabulary in blocks that do not divide it, with a top-K, merged by
 * accumulation and by era_token_stats_merge / era_token_stats_rebase as ranks
 * would; the finish against era_token_logprob_columns on the whole logits;
 * the block backward against era_token_columns_backward, in place and not;
 * every error status of the new calls. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "helpers.h"

enum { N = 6, V = 23, VP = 26, BW = 5, K = 4 };

static EraHead* new_tok(double k, uint64_t topk) {
  EraConfig c;
  era_config_default(ERA_HEAD_KIND_TOKEN, &c);
  c.k = k;
  c.vocab_topk = topk;
  EraHead* h = NULL;
  return era_head_new(&c, &h) == ERA_STATUS_OK ? h : NULL;
}

static double max_diff(const double* a, const double* b, int n) {
  double m = 0;
  for (int i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]));
  return m;
}

/* logits [N, VP] (the last VP - V columns padding), labels with one ignored token */
static void fill(Rng* rng, double* xp, double* x, int64_t* lab, double* T) {
  for (int t = 0; t < N; t++) {
    lab[t] = t == 2 ? -100 : (t * 5) % V;
    T[t] = 0.7 + 0.1 * t;
    for (int v = 0; v < VP; v++) {
      double z = v < V ? 2.0 * rng_normal(rng) : NAN;
      xp[t * VP + v] = z;
      if (v < V) x[t * V + v] = z;
    }
  }
}

/* the block [N, w] at column `off` of xp, copied out contiguous */
static void block_of(const double* xp, int off, int w, double* out) {
  for (int t = 0; t < N; t++)
    for (int v = 0; v < w; v++) out[t * w + v] = xp[t * VP + off + v];
}

static void test_blocks_match_whole_logits(void) {
  SECTION("blocks (accumulated, merged, rebased) = the whole logits; block backward = columns backward");
  Rng rng = {21};
  double xp[N * VP], x[N * V], T[N];
  int64_t lab[N];
  fill(&rng, xp, x, lab, T);
  for (int topk = 0; topk <= K; topk += K) {
    EraHead* h = new_tok(2.0, (uint64_t)topk);
    CHECK(h != NULL);
    if (!h) return;
    int64_t sl[2] = {N, V}, sn[1] = {N}, s3[2] = {N, 3}, ss[2] = {ERA_TOKEN_STATS_ROWS, N}, sk[2] = {N, K},
            sv[2] = {N, ERA_TOKEN_SAVED};
    double cols[N * 3], H[N], sq[N];
    DLTensor tl = tensor_f64(x, 2, sl), tlab = tensor(lab, DT_I64, 1, sn, NULL), tT = tensor_f64(T, 1, sn),
             tc = tensor_f64(cols, 2, s3), tH = tensor_f64(H, 1, sn), tsq = tensor_f64(sq, 1, sn);
    CHECK_OK(era_token_logprob_columns(h, &tl, &tlab, &tT, &tc, &tH, &tsq, NULL));
    /* accumulated block passes over the padded vocabulary */
    double st[ERA_TOKEN_STATS_ROWS * N], tv[N * K], blk[N * BW];
    int64_t ti[N * K];
    DLTensor tst = tensor_f64(st, 2, ss), ttv = tensor_f64(tv, 2, sk), tti = tensor(ti, DT_I64, 2, sk, NULL);
    DLTensor* pv = topk ? &ttv : NULL;
    DLTensor* pi = topk ? &tti : NULL;
    for (int off = 0; off < VP; off += BW) {
      int w = off + BW <= VP ? BW : VP - off;
      int64_t sb[2] = {N, w};
      block_of(xp, off, w, blk);
      DLTensor tb = tensor_f64(blk, 2, sb);
      CHECK_OK(era_token_block_stats(h, &tb, &tlab, &tT, off, VP, V, off > 0, &tst, pv, pi, NULL));
    }
    double cols2[N * 3], H2[N], sq2[N], saved[N * ERA_TOKEN_SAVED];
    DLTensor tc2 = tensor_f64(cols2, 2, s3), tH2 = tensor_f64(H2, 1, sn), tsq2 = tensor_f64(sq2, 1, sn),
             tsv = tensor_f64(saved, 2, sv);
    CHECK_OK(era_token_block_finish(h, &tst, pv, pi, &tlab, V, &tc2, &tH2, &tsq2, &tsv, NULL));
    CHECK(max_diff(cols, cols2, N * 3) < 1e-12);
    CHECK(max_diff(H, H2, N) < 1e-12);
    CHECK(max_diff(sq, sq2, N) < 1e-12);
    /* two "ranks" [0, 12) and [12, 26): merged, and max-reduced + rebased + summed */
    double a[ERA_TOKEN_STATS_ROWS * N], b[ERA_TOKEN_STATS_ROWS * N], av[N * K], bv[N * K], ba[N * 12], bb[N * 14];
    int64_t ai[N * K], bi[N * K], sa[2] = {N, 12}, sbb[2] = {N, 14};
    DLTensor ta = tensor_f64(a, 2, ss), tb2 = tensor_f64(b, 2, ss), tav = tensor_f64(av, 2, sk), tbv = tensor_f64(bv, 2, sk),
             tai = tensor(ai, DT_I64, 2, sk, NULL), tbi = tensor(bi, DT_I64, 2, sk, NULL);
    block_of(xp, 0, 12, ba);
    block_of(xp, 12, 14, bb);
    DLTensor tba = tensor_f64(ba, 2, sa), tbb = tensor_f64(bb, 2, sbb);
    CHECK_OK(era_token_block_stats(h, &tba, &tlab, &tT, 0, VP, V, 0, &ta, topk ? &tav : NULL, topk ? &tai : NULL, NULL));
    CHECK_OK(era_token_block_stats(h, &tbb, &tlab, &tT, 12, VP, V, 0, &tb2, topk ? &tbv : NULL, topk ? &tbi : NULL, NULL));
    double m[N], ra[ERA_TOKEN_STATS_ROWS * N], rb[ERA_TOKEN_STATS_ROWS * N];
    memcpy(ra, a, sizeof a);
    memcpy(rb, b, sizeof b);
    for (int t = 0; t < N; t++) m[t] = fmax(a[8 * N + t], b[8 * N + t]);
    DLTensor tm = tensor_f64(m, 1, sn), tra = tensor_f64(ra, 2, ss), trb = tensor_f64(rb, 2, ss);
    CHECK_OK(era_token_stats_rebase(h, &tra, &tm, NULL));
    CHECK_OK(era_token_stats_rebase(h, &trb, &tm, NULL));
    for (int i = 0; i < 8 * N; i++) ra[i] += rb[i];
    CHECK_OK(era_token_stats_merge(h, &ta, &tb2, topk ? &tav : NULL, topk ? &tai : NULL, topk ? &tbv : NULL,
                                   topk ? &tbi : NULL, NULL));
    double cols3[N * 3], cols4[N * 3];
    DLTensor tc3 = tensor_f64(cols3, 2, s3), tc4 = tensor_f64(cols4, 2, s3);
    CHECK_OK(era_token_block_finish(h, &ta, topk ? &tav : NULL, topk ? &tai : NULL, &tlab, V, &tc3, NULL, NULL, NULL, NULL));
    CHECK_OK(era_token_block_finish(h, &tra, topk ? &tav : NULL, topk ? &tai : NULL, &tlab, V, &tc4, NULL, NULL, NULL, NULL));
    CHECK(max_diff(cols, cols3, N * 3) < 1e-12);
    CHECK(max_diff(cols, cols4, N * 3) < 1e-12);
    /* the backward, block by block: from the logits, then in place */
    double gc[N * 3], ge[N], want[N * V], got[N * VP];
    for (int i = 0; i < N * 3; i++) gc[i] = rng_normal(&rng);
    for (int t = 0; t < N; t++) ge[t] = rng_normal(&rng);
    DLTensor tgc = tensor_f64(gc, 2, s3), tge = tensor_f64(ge, 1, sn), tw = tensor_f64(want, 2, sl);
    CHECK_OK(era_token_columns_backward(h, &tl, &tlab, &tT, &tgc, &tge, &tw, NULL));
    for (int off = 0; off < VP; off += BW) {
      int w = off + BW <= VP ? BW : VP - off;
      int64_t sb[2] = {N, w};
      double gb[N * BW];
      block_of(xp, off, w, blk);
      DLTensor tb = tensor_f64(blk, 2, sb), tg = tensor_f64(gb, 2, sb);
      if ((off / BW) % 2)
        CHECK_OK(era_token_block_backward(h, &tb, &tlab, &tT, off, VP, V, &tsv, &tgc, &tge, &tb, NULL));
      else
        CHECK_OK(era_token_block_backward(h, &tb, &tlab, &tT, off, VP, V, &tsv, &tgc, &tge, &tg, NULL));
      const double* src = (off / BW) % 2 ? blk : gb;
      for (int t = 0; t < N; t++)
        for (int v = 0; v < w; v++) got[t * VP + off + v] = src[t * w + v];
    }
    double worst = 0;
    int padding_zero = 1;
    for (int t = 0; t < N; t++) {
      for (int v = 0; v < V; v++) worst = fmax(worst, fabs(got[t * VP + v] - want[t * V + v]));
      for (int v = V; v < VP; v++) padding_zero &= got[t * VP + v] == 0.0;
    }
    CHECK(worst < 1e-12);
    CHECK(padding_zero);
    era_head_free(h);
  }
}

static void test_errors(void) {
  SECTION("block calls: every error status");
  EraHead* h = new_tok(2.0, 2);
  EraHead* h0 = new_tok(2.0, 0);
  EraHead* sh = new_softmax(5, 1.0, 4.0);
  CHECK(h && h0 && sh);
  if (!h || !h0 || !sh) return;
  double x[N * BW] = {0}, st[ERA_TOKEN_STATS_ROWS * N] = {0}, tv[N * 2], m[N], cols[N * 3], sv[N * ERA_TOKEN_SAVED] = {0},
         g[N * BW], T[N];
  float T32[N];
  int64_t lab[N] = {0}, ti[N * 2];
  int32_t bad[N] = {0};
  for (int t = 0; t < N; t++) T[t] = T32[t] = 1.0f;
  int64_t sb[2] = {N, BW}, sn[1] = {N}, ss[2] = {ERA_TOKEN_STATS_ROWS, N}, s8[2] = {8, N}, sk[2] = {N, 2}, s3[2] = {N, 3},
          sv8[2] = {N, ERA_TOKEN_SAVED};
  DLTensor tx = tensor_f64(x, 2, sb), tlab = tensor(lab, DT_I64, 1, sn, NULL), tst = tensor_f64(st, 2, ss),
           tv2 = tensor_f64(tv, 2, sk), ti2 = tensor(ti, DT_I64, 2, sk, NULL), tm = tensor_f64(m, 1, sn),
           tc = tensor_f64(cols, 2, s3), tsv = tensor_f64(sv, 2, sv8), tg = tensor_f64(g, 2, sb), tT = tensor_f64(T, 1, sn),
           tT32 = tensor_f32(T32, 1, sn), tbad = tensor(bad, DT_I32, 1, sn, NULL), tst8 = tensor_f64(st, 2, s8),
           tv2i = tensor(tv, DT_I64, 2, sk, NULL);
  CHECK_OK(era_token_block_stats(h, &tx, &tlab, &tT, 0, 20, 20, 0, &tst, &tv2, &ti2, NULL));
  CHECK_OK(era_token_block_stats(h, &tx, &tlab, &tT32, 5, 20, 20, 1, &tst, &tv2, &ti2, NULL));
  /* NULL pointers, the wrong kind of head */
  CHECK_STATUS(era_token_block_stats(NULL, &tx, &tlab, NULL, 0, 20, 20, 0, &tst, &tv2, &ti2, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_block_stats(h, &tx, &tlab, NULL, 0, 20, 20, 0, NULL, &tv2, &ti2, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_block_stats(sh, &tx, &tlab, NULL, 0, 20, 20, 0, &tst, &tv2, &ti2, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_token_stats_merge(NULL, &tst, &tst, NULL, NULL, NULL, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_stats_merge(sh, &tst, &tst, NULL, NULL, NULL, NULL, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_token_stats_rebase(h, &tst, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_stats_rebase(sh, &tst, &tm, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_token_block_finish(h, NULL, &tv2, &ti2, &tlab, 20, &tc, NULL, NULL, NULL, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_block_finish(sh, &tst, &tv2, &ti2, &tlab, 20, &tc, NULL, NULL, NULL, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  CHECK_STATUS(era_token_block_backward(h, &tx, &tlab, NULL, 0, 20, 20, NULL, &tc, NULL, &tg, NULL), ERA_STATUS_NULL_POINTER);
  CHECK_STATUS(era_token_block_backward(sh, &tx, &tlab, NULL, 0, 20, 20, &tsv, &tc, NULL, &tg, NULL), ERA_STATUS_WRONG_HEAD_KIND);
  /* the block's place: negative, past the vocabulary, padding bound outside [1, V] */
  CHECK_STATUS(era_token_block_stats(h, &tx, &tlab, NULL, -1, 20, 20, 0, &tst, &tv2, &ti2, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_token_block_stats(h, &tx, &tlab, NULL, 16, 20, 20, 0, &tst, &tv2, &ti2, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_token_block_stats(h, &tx, &tlab, NULL, 0, 20, 21, 0, &tst, &tv2, &ti2, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_token_block_stats(h, &tx, &tlab, NULL, 0, 20, 0, 0, &tst, &tv2, &ti2, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_token_block_backward(h, &tx, &tlab, NULL, 0, 3, 3, &tsv, &tc, NULL, &tg, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_token_block_finish(h, &tst, &tv2, &ti2, &tlab, 0, &tc, NULL, NULL, NULL, NULL), ERA_STATUS_INVALID_ARGUMENT);
  /* top-K tensors missing, half given, or given to a head without a top-K */
  CHECK_STATUS(era_token_block_stats(h, &tx, &tlab, NULL, 0, 20, 20, 0, &tst, NULL, NULL, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_token_block_stats(h, &tx, &tlab, NULL, 0, 20, 20, 0, &tst, &tv2, NULL, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_token_block_stats(h0, &tx, &tlab, NULL, 0, 20, 20, 0, &tst, &tv2, &ti2, NULL), ERA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(era_token_stats_merge(h, &tst, &tst, &tv2, &ti2, NULL, NULL, NULL), ERA_STATUS_INVALID_ARGUMENT);
  /* blocks that do not cover the vocabulary (20 entries, 10 seen) */
  CHECK_STATUS(era_token_block_finish(h, &tst, &tv2, &ti2, &tlab, 20, &tc, NULL, NULL, NULL, NULL), ERA_STATUS_INVALID_ARGUMENT);
  /* shapes and dtypes */
  CHECK_STATUS(era_token_block_stats(h, &tx, &tlab, NULL, 0, 20, 20, 0, &tst8, &tv2, &ti2, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_token_block_backward(h, &tx, &tlab, NULL, 0, 20, 20, &tst, &tc, NULL, &tg, NULL), ERA_STATUS_INVALID_SHAPE);
  CHECK_STATUS(era_token_block_stats(h, &tx, &tlab, NULL, 0, 20, 20, 0, &tst, &tv2i, &ti2, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_token_block_stats(h, &tx, &tlab, &tbad, 0, 20, 20, 0, &tst, &tv2, &ti2, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  CHECK_STATUS(era_token_stats_rebase(h, &tst, &tbad, NULL), ERA_STATUS_UNSUPPORTED_DTYPE);
  /* values: a label in the padding, a temperature of 0, a maximum below the token's own */
  lab[1] = 18;
  CHECK_STATUS(era_token_block_stats(h, &tx, &tlab, NULL, 0, 20, 18, 0, &tst, &tv2, &ti2, NULL), ERA_STATUS_INVALID_VALUE);
  lab[1] = 0;
  T[0] = 0.0;
  CHECK_STATUS(era_token_block_stats(h, &tx, &tlab, &tT, 0, 20, 20, 0, &tst, &tv2, &ti2, NULL), ERA_STATUS_INVALID_VALUE);
  for (int t = 0; t < N; t++) m[t] = -1.0;
  CHECK_STATUS(era_token_stats_rebase(h, &tst, &tm, NULL), ERA_STATUS_INVALID_VALUE);
  /* outputs that overlap */
  CHECK_STATUS(era_token_block_stats(h, &tx, &tlab, NULL, 0, 20, 20, 0, &tst, &tv2, &tv2i, NULL), ERA_STATUS_INVALID_LAYOUT);
  era_head_free(h);
  era_head_free(h0);
  era_head_free(sh);
}

int main(void) {
  test_blocks_match_whole_logits();
  test_errors();
  return check_finish();
}
