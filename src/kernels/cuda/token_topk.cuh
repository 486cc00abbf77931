// The token head's vocabulary top-K select (docs/math.md#vocabulary-top-k),
// shared by the forward (token_forward.cu: the log-probs of a label inside the
// top-K) and the backward (token_backward.cu: the gradient over the selection).
//
// Vocabulary top-K (0 < K < V; the launcher passes 0 for K >= V): the K-th
// largest logit is found by a radix select over order-preserving integer keys
// of x (8-bit digits, one histogram bin per thread, integer shared-memory
// atomics only, so the result does not depend on timing), ties at the K-th
// value to the lower index (a second radix select over the indices of the tied
// entries, only when the tie splits and the split matters: always in the
// backward, in the forward only when the label is one of the ties). A lower
// bound prunes the candidates: the K-th largest of the 256 per-thread maxima
// (K <= 256), so the histogram passes touch few entries (atomics) but still read
// the row. Extra reads of the row with K > 0: 1..4 histogram passes (f32 keys;
// 1..8 for f64), one more when a digit isolates the K-th entry (it is fetched),
// one for the top-K sums (forward) or for the maxima and the sum (backward),
// plus up to 5 for the index select of a split tie. K is meant to be small (20
// in the official recipe). NaN entries are never selected; -0.0 and +0.0 are
// equal (one key). Counts are 32-bit: V < 2^32.
#pragma once

#include "token.cuh"

namespace era_tok {

// ------------------------------------------------------------- shared memory

__shared__ uint32_t sh_hist[NT]; // radix select: histogram
__shared__ uint32_t sh_scan[NT]; // radix select: descending cumulative counts
__shared__ uint32_t sh_sel[3];   // radix select: chosen bin, count above it, count in it
__shared__ uint64_t sh_key;      // radix select: the key of a unique candidate

// ------------------------------------------------------------- top-K selection

/** Order-preserving keys of floats (NaN excluded by the callers); -0.0 and
 * +0.0 share the key of +0.0, as they compare equal. Key 0 belongs to no
 * non-NaN value. */
__device__ inline uint32_t sort_key(float x) {
    uint32_t b = x == 0.0f ? 0u : f32_to_bits(x);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ inline uint64_t sort_key(double x) {
    uint64_t b = 0;
    if (x != 0.0) memcpy(&b, &x, 8);
    return (b >> 63) ? ~b : (b | 0x8000000000000000ull);
}
__device__ inline float key_value(uint32_t k) { return bits_to_f32((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k); }
__device__ inline double key_value(uint64_t k) {
    uint64_t b = (k >> 63) ? (k & 0x7fffffffffffffffull) : ~k;
    double d;
    memcpy(&d, &b, 8);
    return d;
}

template <class C>
struct KeyOf;
template <>
struct KeyOf<float> {
    typedef uint32_t U;
};
template <>
struct KeyOf<double> {
    typedef uint64_t U;
};

template <class U>
struct Selection {
    U key;        // key of the K-th largest candidate (0 when `all`)
    uint32_t gt;  // candidates with a larger key
    uint32_t eq;  // candidates with this key
    bool all;     // fewer than K candidates: every candidate is selected
};

/** Radix select over the block: the K-th largest key among the candidates
 * (keyfn(i, key) true) of columns [0, v); 8-bit digits from the top, one
 * histogram bin per thread. A digit whose bin holds a single candidate ends
 * the search with a pass that fetches its key. Every thread gets the result.
 * Counts are 32-bit (v < 2^32). */
template <class U, class KeyFn>
__device__ inline Selection<U> radix_select(int64_t v, uint32_t k, KeyFn &&keyfn) {
    const unsigned tid = threadIdx.x;
    constexpr int BITS = 8 * (int)sizeof(U);
    U prefix = 0, mask = 0;
    uint32_t r = k, gt = 0, eq = 0;
    for (int shift = BITS - 8; shift >= 0; shift -= 8) {
        sh_hist[tid] = 0;
        __syncthreads();
        for (int64_t i = tid; i < v; i += NT) {
            U key;
            if (keyfn(i, key) && (key & mask) == prefix) atomicAdd(&sh_hist[(unsigned)(key >> shift) & 255u], 1u);
        }
        __syncthreads();
        sh_scan[tid] = sh_hist[NT - 1 - tid];  // bins in descending order
        __syncthreads();
        for (unsigned off = 1; off < NT; off <<= 1) {
            uint32_t add = tid >= off ? sh_scan[tid - off] : 0u;
            __syncthreads();
            sh_scan[tid] += add;
            __syncthreads();
        }
        if (shift == BITS - 8 && sh_scan[NT - 1] < k) {
            __syncthreads();
            Selection<U> s;
            s.key = 0;
            s.gt = 0;
            s.eq = 0;
            s.all = true;
            return s;
        }
        uint32_t before = tid ? sh_scan[tid - 1] : 0u;
        if (before < r && r <= sh_scan[tid]) {
            sh_sel[0] = NT - 1 - tid;
            sh_sel[1] = before;
            sh_sel[2] = sh_hist[NT - 1 - tid];
        }
        __syncthreads();
        uint32_t bin = sh_sel[0], above = sh_sel[1], cnt = sh_sel[2];
        gt += above;
        r -= above;
        prefix |= (U)bin << shift;
        mask |= (U)255 << shift;
        eq = cnt;
        __syncthreads();  // sh_sel and the histogram are read before they change
        if (cnt == 1 && shift > 0) {
            for (int64_t i = tid; i < v; i += NT) {
                U key;
                if (keyfn(i, key) && (key & mask) == prefix) sh_key = (uint64_t)key;
            }
            __syncthreads();
            prefix = (U)sh_key;
            __syncthreads();
            break;
        }
    }
    Selection<U> s;
    s.key = prefix;
    s.gt = gt;
    s.eq = eq;
    s.all = false;
    return s;
}

/** The top-K of a row as a threshold: column i (value x, not NaN) is selected
 * iff key(x) > key, or key(x) == key and i <= j (docs/math.md#vocabulary-top-k). */
template <class U>
struct Threshold {
    U key;
    uint32_t need;  // selected columns with this key (K - gt)
    uint32_t eq;    // columns with this key
    int64_t j;      // last selected column of this key (INT64_MAX: all of them)
};

template <class C>
__device__ inline bool in_topk(C x, int64_t i, const Threshold<typename KeyOf<C>::U> &th) {
    if (x != x) return false;
    auto key = sort_key(x);
    return key > th.key || (key == th.key && i <= th.j);
}

/** The top-K threshold of a row (its tie column j left INT64_MAX: every tie
 * selected; see tie_column); `xm` is this thread's largest non-NaN value (-inf
 * if none) and prunes the candidates. */
template <class T, class C>
__device__ inline Threshold<typename KeyOf<C>::U> topk_threshold(const char *base, int64_t v, int64_t cs, uint32_t k, C xm) {
    typedef typename KeyOf<C>::U U;
    // the K-th largest per-thread maximum is <= the K-th largest entry
    C lower = k <= (uint32_t)NT ? kth_largest_of_threads(xm, k) : (C)-INFINITY;
    const U lower_key = sort_key(lower);
    Selection<U> s = radix_select<U>(v, k, [&](int64_t i, U &key) {
        C x = load_elem<T, C>(base, cs, i);
        if (x != x) return false;
        key = sort_key(x);
        return key >= lower_key;
    });
    Threshold<U> th;
    th.j = INT64_MAX;
    if (s.all) {  // fewer than K non-NaN entries: all of them (key 0 is below every value)
        th.key = 0;
        th.need = 0;
        th.eq = 0;
        return th;
    }
    th.key = s.key;
    th.need = k - s.gt;
    th.eq = s.eq;
    return th;
}

/** Sets th.j when the tie at the K-th value splits (need < eq): the need-th
 * smallest column among the ties, i.e. the need-th largest of ~column. */
template <class T, class C>
__device__ inline void tie_column(const char *base, int64_t v, int64_t cs, Threshold<typename KeyOf<C>::U> &th) {
    if (th.need >= th.eq) return;
    const typename KeyOf<C>::U vkey = th.key;
    Selection<uint32_t> sj = radix_select<uint32_t>(v, th.need, [&](int64_t i, uint32_t &key) {
        C x = load_elem<T, C>(base, cs, i);
        if (x != x || sort_key(x) != vkey) return false;
        key = 0xffffffffu - (uint32_t)i;
        return true;
    });
    th.j = (int64_t)(0xffffffffu - sj.key);
}

}  // namespace era_tok
