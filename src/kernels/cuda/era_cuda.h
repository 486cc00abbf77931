/* The parameter blocks of era's CUDA kernels: the one contract between the
 * kernels (src/kernels/cuda/*.cu) and their launcher (src/kernels/cuda/mod.rs,
 * which mirrors every struct below with #[repr(C)]). This header is internal:
 * it is not installed and is not part of the C ABI.
 *
 * Conventions (every kernel):
 * - Each kernel is `extern "C" __global__ void era_<op>_<dtype>(const Params p)`,
 *   one parameter block passed by value; <dtype> is the dtype of the large
 *   tensor (f32, f64, bf16, f16). Other tensors carry their dtype at run time.
 * - Work is distributed with grid-stride loops, so any gridDim.x >= 1 gives
 *   the same result; blockDim.x must be the ERA_CUDA_BLOCK_* constant the
 *   kernel names (its shared memory is sized for it).
 * - Nothing synchronises the host or the device; a kernel never allocates.
 *   Scratch memory is a `workspace` the launcher allocates stream-ordered.
 * - Results never depend on the grid size or on timing: reductions run in a
 *   fixed order (no floating-point atomics).
 * - Arithmetic follows docs/math.md; f32/bf16/f16 inputs are computed in f32
 *   with per-row sums in f64, f64 inputs in f64.
 */
#ifndef ERA_CUDA_H
#define ERA_CUDA_H

#include <stdint.h>

/** Batch axes a tensor may keep after the launcher merged contiguous ones. */
#define ERA_CUDA_MAX_BATCH 6

/** Element types (EraCudaTensor.dtype). */
#define ERA_CUDA_F32 0
#define ERA_CUDA_F64 1
#define ERA_CUDA_BF16 2
#define ERA_CUDA_F16 3
#define ERA_CUDA_I32 4
#define ERA_CUDA_I64 5

/** Threads per block of each kernel family. */
#define ERA_CUDA_BLOCK_ROWS 256   /* one thread per row (Gaussian head, Gaussian and truncated-normal entropy) */
#define ERA_CUDA_BLOCK_VECTOR 256 /* one block per row of a long vector (softmax head, softmax entropy, token head) */
#define ERA_CUDA_BLOCK_ITEMS 256  /* one thread per item (per-token steps, reductions of per-row values) */

/** A strided tensor seen as `rows` rows: the batch axes (every axis but the
 * last, for a tensor with columns; every axis, for a per-row tensor) in
 * row-major order, and the last axis as columns.
 *
 * Row r sits at element offset  sum_i idx_i(r) * stride[i], where idx(r) is r
 * written in the mixed radix of shape[0..nbatch) (shape[nbatch-1] varies
 * fastest); column c adds c * col_stride. Offsets are in elements, may be
 * negative, and `data` is the address of element (0, ..., 0). nbatch = 0 means
 * a single row. data == NULL marks an absent optional tensor. */
typedef struct EraCudaTensor {
    char *data;
    int32_t dtype;
    int32_t nbatch;
    int64_t col_stride;
    int64_t shape[ERA_CUDA_MAX_BATCH];
    int64_t stride[ERA_CUDA_MAX_BATCH];
} EraCudaTensor;

/** Gaussian head (docs/math.md#gaussian-forward, #gaussian-backward).
 *
 * era_gaussian_forward_{f32,f64}:  out = clip(hi + k_r * softmax(z_r), lo, hi)
 * era_gaussian_backward_{f32,f64}: out = grad_z (docs/math.md#gaussian-backward), and
 *   d/d delta of row r (sum_i g_i m_i s_i) into grad_delta[r] (grad_delta_mode 1)
 *   or into row_sums[r] (grad_delta_mode 2; era_sum_rows_* then stores the total).
 * k_r = k_scalar (delta_mode 0) or k_base + delta[r] (delta_mode 1).
 * One thread per row, block ERA_CUDA_BLOCK_ROWS. `out` may alias `z` or `grad_out`
 * (same layout): a row is read completely before it is written.
 * z, grad_out, out, delta, grad_delta: dtype of the kernel. */
typedef struct EraCudaGaussian {
    EraCudaTensor z;
    EraCudaTensor grad_out;
    EraCudaTensor out;
    EraCudaTensor delta;
    EraCudaTensor grad_delta;
    double *row_sums;
    int64_t rows;
    int64_t dim;
    int32_t delta_mode;
    int32_t grad_delta_mode;
    double k_scalar;
    double k_base;
    double lo;
    double hi;
} EraCudaGaussian;

/** Gaussian head under a per-row active-dimension mask (docs/math.md#gaussian-mask).
 *
 * era_gaussian_masked_forward_{f32,f64}, era_gaussian_masked_backward_{f32,f64}:
 * `g` as for the unmasked kernels (its k_r is the unmasked head's k of row r);
 * `mask` has the layout rules of `z` and the kernel's dtype. Row r with `a` of
 * its D entries equal to 1 gets, at those, the head of target (a/D)*(H0 + delta):
 * out = clip(hi + (a/D) k_r softmax_active(z_r), lo, hi), grad_z as the unmasked
 * backward with (a/D) k_r, d/d delta = (a/D) sum_active g_i m_i s_i (0 for a = 0);
 * at entries equal to 0, `fill` (fill_mode 1; gradient 0) or z (fill_mode 0;
 * gradient grad_out). A row with any other mask entry (unchecked on the device)
 * gets NaN at every coordinate and a NaN d/d delta. A row of ones is computed as
 * by the unmasked kernels; other rows in f64 for every dtype, as the CPU's masked
 * rows are. One thread per row, block ERA_CUDA_BLOCK_ROWS;
 * `out` may alias `z`, `grad_out` or `mask` (same layout). */
typedef struct EraCudaGaussianMasked {
    EraCudaGaussian g;
    EraCudaTensor mask;
    double fill;
    int32_t fill_mode;
    int32_t pad;
} EraCudaGaussianMasked;

/** era_sum_rows: one block of ERA_CUDA_BLOCK_ITEMS threads sums src[0..n) in
 * f64, in an order fixed by n alone, and stores the total in element 0 of
 * dst (dtype dst_dtype, f32 or f64). */
typedef struct EraCudaSumRows {
    const double *src;
    int64_t n;
    char *dst;
    int32_t dst_dtype;
    int32_t pad;
} EraCudaSumRows;

/** Softmax head (docs/math.md#softmax-forward, #softmax-backward), with the
 * constants of SoftmaxConstants (src/kernels/softmax.rs).
 * era_softmax_forward_{f32,f64}: out = the head's logits for z.
 * era_softmax_backward_{f32,f64}: out = grad_z.
 * One block per row, block ERA_CUDA_BLOCK_VECTOR; `out` may alias `z` or
 * `grad_out` (a row is read completely before it is written). `f64_math`: 1
 * when the head's constants do not fit the f32 kernels (SoftmaxHead::f32_kernels
 * is false), so f32 rows are computed in f64. */
typedef struct EraCudaSoftmax {
    EraCudaTensor z;
    EraCudaTensor grad_out;
    EraCudaTensor out;
    int64_t rows;
    int64_t n;
    double slope;
    double b;
    double ub;
    double u_ub;
    int32_t f64_math;
    int32_t pad;
} EraCudaSoftmax;

/** Entropies that need no head.
 * era_gaussian_entropy_{f32,f64}: x = log_std [rows, cols] -> out [rows]
 *   (docs/math.md#gaussian-entropy); one thread per row, ERA_CUDA_BLOCK_ROWS.
 * era_softmax_entropy_{f32,f64,bf16,f16}: x = logits [rows, cols] -> out [rows]
 *   (f32 or f64, out.dtype), H(softmax(x * inv_temperature))
 *   (docs/math.md#categorical-entropy); one block per row, ERA_CUDA_BLOCK_VECTOR.
 * era_truncnorm_entropy_{f32,f64}: x = mean, x2 = log_std [rows, cols] -> out
 *   [rows], summed over the row (docs/math.md#truncated-normal-entropy), bounds
 *   low < high (either may be infinite); one thread per row, ERA_CUDA_BLOCK_ROWS. */
typedef struct EraCudaEntropy {
    EraCudaTensor x;
    EraCudaTensor x2;
    EraCudaTensor out;
    int64_t rows;
    int64_t cols;
    double inv_temperature;
    double low;
    double high;
} EraCudaEntropy;

/** Token head (docs/math.md#token-head).
 *
 * Forward, launched in this order on one stream, all with `p` identical:
 *   1. era_token_stats_{f32,f64,bf16,f16}: one block per token, ERA_CUDA_BLOCK_VECTOR;
 *      one read of the logits row: the per-token statistics into the workspace.
 *   2. era_token_group: one thread per token, ERA_CUDA_BLOCK_ITEMS: each token's
 *      response entropy (the mean of the max(1, floor(rho*n)) largest entropies of
 *      its response) into the workspace.
 *   3. era_token_finish: one thread per token, ERA_CUDA_BLOCK_ITEMS: the scale
 *      decision and the outputs (each optional: data == NULL skips its store).
 * Backward: era_token_backward_{f32,f64,bf16,f16}: one block per token,
 *   ERA_CUDA_BLOCK_VECTOR; reads logits, labels, ids, scale, grad_logprobs, writes
 *   grad_logits (one read, one write of the row).
 *
 * labels, ids: int32 or int64 (their dtype fields). advantages, scale,
 * grad_logprobs and the outputs: f32 or f64. vocab_topk = 0: full vocabulary
 * (the launcher passes 0 when K >= V). Labels and ids are not validated on the
 * device: a response id < 0 is a masked token; an unmasked token whose label is
 * outside [0, V) gets a NaN log-prob and a zero gradient row.
 * workspace: era_cuda_token_workspace_bytes(n) bytes, forward only. */
typedef struct EraCudaToken {
    EraCudaTensor logits;
    EraCudaTensor labels;
    EraCudaTensor ids;
    EraCudaTensor advantages;
    EraCudaTensor scale;
    EraCudaTensor grad_logprobs;
    EraCudaTensor logprobs_out;
    EraCudaTensor entropy_out;
    EraCudaTensor scale_out;
    EraCudaTensor advantages_out;
    EraCudaTensor response_entropy_out;
    EraCudaTensor grad_logits;
    int64_t n;
    int64_t v;
    int64_t vocab_topk;
    double k;
    double omega_low;
    double omega_high;
    double top_fraction;
    double inv_temperature;
    int32_t advantage_scaling;
    int32_t pad;
    void *workspace;
} EraCudaToken;

/** Bytes of the token forward's workspace for n tokens (a multiple of 16). */
#define ERA_CUDA_TOKEN_WORKSPACE_BYTES(n) ((int64_t)(n) * 64)

#endif /* ERA_CUDA_H */
