// Shared helpers of the emulator tests (tests/cuda/emu): host tensors with
// arbitrary layouts (permuted, padded, negative strides, a strided last axis)
// seen both as DLPack tensors (for the CPU library, the reference) and as
// EraCudaTensor rows (for the kernels); random fills; comparison with a
// tolerance; a results table; checks that exit non-zero on failure.
//
// Include after cuda_emu.hpp (the kernels' common.cuh needs its qualifiers).
#pragma once

#include <era.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common.cuh"
#include "era_cuda.h"

namespace harness {

// ------------------------------------------------------------- failures

inline int g_failures = 0;
inline int g_checks = 0;

/** Records a failed check with a message (printf-style); the test exits non-zero at the end. */
#define HCHECK(cond, ...)                                                     \
    do {                                                                      \
        ++harness::g_checks;                                                  \
        if (!(cond)) {                                                        \
            ++harness::g_failures;                                            \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);              \
            fprintf(stderr, __VA_ARGS__);                                     \
            fprintf(stderr, "\n");                                            \
        }                                                                     \
    } while (0)

/** Checks an EraStatus of the CPU library; prints era_last_error on failure. */
#define HCHECK_OK(call)                                                       \
    do {                                                                      \
        EraStatus st_ = (call);                                               \
        char msg_[512] = {0};                                                 \
        if (st_ != ERA_STATUS_OK) era_last_error(msg_, sizeof msg_);          \
        HCHECK(st_ == ERA_STATUS_OK, "%s -> %d (%s)", #call, (int)st_, msg_); \
    } while (0)

// ------------------------------------------------------------- dtypes

inline int dtype_size(int dt) { return era_cuda::dtype_size(dt); }

inline const char *dtype_name(int dt) {
    switch (dt) {
        case ERA_CUDA_F32: return "f32";
        case ERA_CUDA_F64: return "f64";
        case ERA_CUDA_BF16: return "bf16";
        case ERA_CUDA_F16: return "f16";
        case ERA_CUDA_I32: return "i32";
        default: return "i64";
    }
}

inline DLDataType dl_dtype(int dt) {
    DLDataType t;
    t.lanes = 1;
    switch (dt) {
        case ERA_CUDA_F32: t.code = kDLFloat; t.bits = 32; break;
        case ERA_CUDA_F64: t.code = kDLFloat; t.bits = 64; break;
        case ERA_CUDA_BF16: t.code = kDLBfloat; t.bits = 16; break;
        case ERA_CUDA_F16: t.code = kDLFloat; t.bits = 16; break;
        case ERA_CUDA_I32: t.code = kDLInt; t.bits = 32; break;
        default: t.code = kDLInt; t.bits = 64; break;
    }
    return t;
}

inline double load_elem(int dt, const char *p) {
    switch (dt) {
        case ERA_CUDA_F32: { float v; memcpy(&v, p, 4); return v; }
        case ERA_CUDA_F64: { double v; memcpy(&v, p, 8); return v; }
        case ERA_CUDA_BF16: { uint16_t v; memcpy(&v, p, 2); return era_cuda::bf16_to_f32(v); }
        case ERA_CUDA_F16: { uint16_t v; memcpy(&v, p, 2); return era_cuda::f16_to_f32(v); }
        case ERA_CUDA_I32: { int32_t v; memcpy(&v, p, 4); return v; }
        default: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    }
}

inline void store_elem(int dt, char *p, double x) {
    switch (dt) {
        case ERA_CUDA_F32: { float v = (float)x; memcpy(p, &v, 4); break; }
        case ERA_CUDA_F64: memcpy(p, &x, 8); break;
        case ERA_CUDA_BF16: { uint16_t v = era_cuda::f32_to_bf16((float)x); memcpy(p, &v, 2); break; }
        case ERA_CUDA_F16: { uint16_t v = era_cuda::f32_to_f16((float)x); memcpy(p, &v, 2); break; }
        case ERA_CUDA_I32: { int32_t v = (int32_t)x; memcpy(p, &v, 4); break; }
        default: { int64_t v = (int64_t)x; memcpy(p, &v, 8); break; }
    }
}

// ------------------------------------------------------------- layouts

/** How a tensor is laid out in memory. `order` lists the axes from the
 * outermost to the innermost in memory (empty: row-major); `pad[i]` adds gaps
 * after axis i's extent (empty: none); `flip[i]` makes axis i's stride negative. */
struct Layout {
    std::vector<int> order;
    std::vector<int64_t> pad;
    std::vector<bool> flip;
};

inline Layout contiguous() { return Layout{}; }

/** Byte value that fills every buffer before use; elements outside a
 * tensor's logical extent must keep it. */
constexpr unsigned char kSentinel = 0x7b;

/** A host tensor: its own storage, a shape, strides in elements and the
 * element offset of logical element (0, ..., 0). */
struct Tensor {
    int dtype = ERA_CUDA_F32;
    std::vector<int64_t> shape, strides;
    int64_t offset = 0;
    std::shared_ptr<std::vector<uint64_t>> storage;  // 8-byte aligned
    int64_t storage_bytes = 0;
    DLTensor dl_;  // filled by dl()

    char *base() const { return (char *)storage->data(); }
    char *first() const { return base() + offset * dtype_size(dtype); }
    int ndim() const { return (int)shape.size(); }
    int64_t numel() const {
        int64_t n = 1;
        for (auto s : shape) n *= s;
        return n;
    }
    /** Element offset (from element 0) of the logical element with row-major index `i`. */
    int64_t elem(int64_t i) const {
        int64_t off = 0;
        for (int a = ndim() - 1; a >= 0; --a) {
            int64_t q = i / shape[a];
            off += (i - q * shape[a]) * strides[a];
            i = q;
        }
        return off;
    }
    char *ptr(int64_t i) const { return first() + elem(i) * dtype_size(dtype); }
    double get(int64_t i) const { return load_elem(dtype, ptr(i)); }
    void set(int64_t i, double v) const { store_elem(dtype, ptr(i), v); }
    /** The last axis' extent (1 for a 0-d tensor). */
    int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
    int64_t rows() const { return numel() / std::max<int64_t>(cols(), 1); }

    /** A DLPack descriptor of this tensor on the CPU (valid while this object lives, unmoved). */
    DLTensor *dl() {
        dl_.data = base();
        dl_.device.device_type = kDLCPU;
        dl_.device.device_id = 0;
        dl_.ndim = ndim();
        dl_.dtype = dl_dtype(dtype);
        dl_.shape = shape.data();
        dl_.strides = strides.data();
        dl_.byte_offset = (uint64_t)(offset * dtype_size(dtype));
        return &dl_;
    }

    /** The kernels' view, as the launcher builds it (src/capi/dlpack.rs, cuda_rows):
     * `cols` true: every axis but the last is a batch axis and the last one the
     * columns; false: every axis is a batch axis (a per-row tensor). Axes of
     * extent 1 are dropped and neighbours that address memory like one axis merged. */
    EraCudaTensor rows_view(bool cols) const {
        EraCudaTensor t;
        memset(&t, 0, sizeof t);
        t.data = first();
        t.dtype = dtype;
        int nb = cols ? std::max(ndim() - 1, 0) : ndim();
        t.col_stride = (cols && ndim() > 0) ? strides[nb] : 0;
        std::vector<std::pair<int64_t, int64_t>> axes;
        for (int a = 0; a < nb; ++a) {
            int64_t n = shape[a], s = strides[a];
            if (n == 1) continue;
            if (!axes.empty() && axes.back().second == s * n) {
                axes.back().first *= n;
                axes.back().second = s;
            } else {
                axes.push_back({n, s});
            }
        }
        if (axes.size() > ERA_CUDA_MAX_BATCH) {
            fprintf(stderr, "harness: too many batch axes\n");
            abort();
        }
        t.nbatch = (int32_t)axes.size();
        for (size_t i = 0; i < axes.size(); ++i) {
            t.shape[i] = axes[i].first;
            t.stride[i] = axes[i].second;
        }
        return t;
    }
};

/** A tensor of `shape` laid out as `lay`, its storage filled with kSentinel. */
inline Tensor make(int dtype, const std::vector<int64_t> &shape, const Layout &lay = Layout{}) {
    Tensor t;
    t.dtype = dtype;
    t.shape = shape;
    int nd = (int)shape.size();
    t.strides.assign(nd, 0);
    std::vector<int> order = lay.order;
    if (order.empty())
        for (int a = 0; a < nd; ++a) order.push_back(a);
    int64_t running = 1;
    for (int k = nd - 1; k >= 0; --k) {
        int a = order[k];
        t.strides[a] = running;
        int64_t pad = a < (int)lay.pad.size() ? lay.pad[a] : 0;
        running *= std::max<int64_t>(shape[a] + pad, 1);
    }
    for (int a = 0; a < nd; ++a)
        if (a < (int)lay.flip.size() && lay.flip[a] && shape[a] > 1) {
            t.offset += (shape[a] - 1) * t.strides[a];
            t.strides[a] = -t.strides[a];
        }
    t.storage_bytes = std::max<int64_t>(running, 1) * dtype_size(dtype);
    t.storage = std::make_shared<std::vector<uint64_t>>((t.storage_bytes + 7) / 8 + 1);
    memset(t.storage->data(), kSentinel, t.storage->size() * 8);
    return t;
}

/** A new tensor with the layout of `t` (fresh storage, sentinel-filled). */
inline Tensor make_like(const Tensor &t) {
    Tensor u = t;
    u.storage = std::make_shared<std::vector<uint64_t>>(t.storage->size());
    memset(u.storage->data(), kSentinel, u.storage->size() * 8);
    return u;
}

/** A deep copy of `t` (same layout, copied storage). */
inline Tensor clone(const Tensor &t) {
    Tensor u = t;
    u.storage = std::make_shared<std::vector<uint64_t>>(*t.storage);
    return u;
}

/** Bytes of `t`'s storage outside its logical elements still hold kSentinel. */
inline bool untouched_outside(const Tensor &t) {
    std::vector<char> mask(t.storage->size() * 8, 0);
    int sz = dtype_size(t.dtype);
    for (int64_t i = 0; i < t.numel(); ++i) {
        int64_t b = t.ptr(i) - t.base();
        for (int k = 0; k < sz; ++k) mask[b + k] = 1;
    }
    const unsigned char *p = (const unsigned char *)t.base();
    for (size_t b = 0; b < mask.size(); ++b)
        if (!mask[b] && p[b] != kSentinel) return false;
    return true;
}

/** Every logical element of `a` and `b` has the same bits. */
inline bool bitwise_equal(const Tensor &a, const Tensor &b) {
    if (a.numel() != b.numel() || a.dtype != b.dtype) return false;
    int sz = dtype_size(a.dtype);
    for (int64_t i = 0; i < a.numel(); ++i)
        if (memcmp(a.ptr(i), b.ptr(i), sz) != 0) return false;
    return true;
}

// ------------------------------------------------------------- shapes

/** `batch` with a last axis of `cols` appended. */
inline std::vector<int64_t> with_cols(std::vector<int64_t> batch, int64_t cols) {
    batch.push_back(cols);
    return batch;
}

/** The product of the extents (1 for none). */
inline int64_t prod(const std::vector<int64_t> &v) {
    int64_t n = 1;
    for (auto x : v) n *= x;
    return n;
}

/** "[a,b,c]". */
inline std::string shape_str(const std::vector<int64_t> &s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? "," : "") + std::to_string(s[i]);
    return r + "]";
}

// ------------------------------------------------------------- random data

struct Rng {
    std::mt19937_64 g;
    explicit Rng(uint64_t seed) : g(seed) {}
    double normal() { return std::normal_distribution<double>(0.0, 1.0)(g); }
    double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(g); }
    int64_t below(int64_t n) { return (int64_t)(g() % (uint64_t)n); }
};

/** Fills every logical element with `scale * N(0, 1) + shift` (rounded to the dtype). */
inline void fill_normal(Tensor &t, Rng &rng, double scale, double shift = 0.0) {
    for (int64_t i = 0; i < t.numel(); ++i) t.set(i, scale * rng.normal() + shift);
}

/** Copies logical values (converted through double) from `src` into `dst`. */
inline void copy_values(const Tensor &src, Tensor &dst) {
    for (int64_t i = 0; i < src.numel(); ++i) dst.set(i, src.get(i));
}

/** A row-major copy of `t`'s values. */
inline Tensor contiguous_copy(const Tensor &t) {
    Tensor u = make(t.dtype, t.shape);
    copy_values(t, u);
    return u;
}

// ------------------------------------------------------------- comparison

/** Largest error of `got` against `want` over logical elements: per row of
 * `row_len` consecutive logical elements, |got - want| / scale, where scale is
 * `row_scale[row]` if given, else max(max_row |want|, floor) (a row-normwise
 * relative error; floor keeps rows of tiny values from asking for more than
 * absolute accuracy). NaN must match NaN and an infinity the same infinity,
 * else the error is +inf. `worst` receives the index of the largest error. */
inline double max_error(const Tensor &got, const Tensor &want, int64_t row_len, double floor, int64_t *worst = nullptr,
                        const std::vector<double> *row_scale = nullptr) {
    double err = 0.0;
    int64_t n = want.numel();
    row_len = std::max<int64_t>(row_len, 1);
    for (int64_t r0 = 0; r0 < n; r0 += row_len) {
        double scale = floor;
        if (row_scale) {
            scale = (*row_scale)[r0 / row_len];
        } else {
            for (int64_t i = r0; i < std::min(n, r0 + row_len); ++i) {
                double b = want.get(i);
                if (std::isfinite(b)) scale = std::max(scale, std::fabs(b));
            }
        }
        for (int64_t i = r0; i < std::min(n, r0 + row_len); ++i) {
            double a = got.get(i), b = want.get(i), e;
            if (std::isnan(a) || std::isnan(b)) e = (std::isnan(a) && std::isnan(b)) ? 0.0 : INFINITY;
            else if (std::isinf(a) || std::isinf(b)) e = (a == b) ? 0.0 : INFINITY;
            else e = a == b ? 0.0 : std::fabs(a - b) / scale;
            if (e > err || (e != e)) {
                err = e;
                if (worst) *worst = i;
            }
        }
    }
    return err;
}

/** Prints the element with the largest error of a failed comparison. */
inline void explain(const Tensor &got, const Tensor &want, int64_t worst, int64_t row_len) {
    if (worst < 0) return;
    fprintf(stderr, "  worst: row %lld col %lld: kernel %.17g, cpu %.17g\n", (long long)(worst / std::max<int64_t>(row_len, 1)),
            (long long)(worst % std::max<int64_t>(row_len, 1)), got.get(worst), want.get(worst));
}

// ------------------------------------------------------------- results table

struct Result {
    double max_err = 0.0;
    double tol = 0.0;
    int cases = 0;
    int fails = 0;
};

inline std::map<std::string, Result> &results() {
    static std::map<std::string, Result> r;
    return r;
}

/** Records one comparison under `op`/`dtype` and fails the check if err > tol. */
inline bool record(const std::string &op, const std::string &dtype, double err, double tol, const std::string &what) {
    Result &r = results()[op + " " + dtype];
    r.tol = tol;
    r.cases += 1;
    if (err > r.max_err || err != err) r.max_err = err;
    bool ok = err <= tol;
    if (!ok) r.fails += 1;
    HCHECK(ok, "%s %s: error %.3g > tolerance %.3g (%s)", op.c_str(), dtype.c_str(), err, tol, what.c_str());
    return ok;
}

/** max_error + record + explain on failure. */
inline bool check_close(const std::string &op, const std::string &dtype, const Tensor &got, const Tensor &want,
                        int64_t row_len, double floor, double tol, const std::string &what,
                        const std::vector<double> *row_scale = nullptr) {
    int64_t worst = -1;
    double err = max_error(got, want, row_len, floor, &worst, row_scale);
    bool ok = record(op, dtype, err, tol, what);
    if (!ok) explain(got, want, worst, row_len);
    return ok;
}

/** Prints the table and the summary; returns the process exit code. */
inline int report(const char *name) {
    printf("%-34s %7s %12s %12s  %s\n", "op dtype", "cases", "max error", "tolerance", "status");
    for (auto &kv : results())
        printf("%-34s %7d %12.3g %12.3g  %s\n", kv.first.c_str(), kv.second.cases, kv.second.max_err, kv.second.tol,
               kv.second.fails ? "FAIL" : "ok");
    printf("%s: %d checks, %d failed\n", name, g_checks, g_failures);
    return g_failures == 0 ? 0 : 1;
}

/** Grid size of the launcher (src/kernels/cuda/mod.rs, grid): blocks for
 * `items` units of `per_block`, at least 1, at most 2^20. */
inline unsigned launcher_grid(int64_t items, int64_t per_block) {
    int64_t b = (items + per_block - 1) / per_block;
    return (unsigned)std::clamp<int64_t>(b, 1, 1 << 20);
}

}  // namespace harness
