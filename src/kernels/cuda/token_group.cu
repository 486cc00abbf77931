#include "token.cuh"

// The token head's per-token forward launches after era_token_stats_<dtype>
// (token_forward.cu): era_token_group (count and rank of each token in its
// response) and era_token_finish (response entropy, scale decision, outputs);
// docs/math.md#token-forward, #scale-decision, #masked-tokens. They read and
// write the per-token workspace records (TokenWs, token.cuh).

namespace era_tok {

/** NaN sorts as the largest entropy (docs/math.md#scale-decision). */
__device__ inline bool entropy_before(double a, int64_t ia, double b, int64_t ib) {
    bool na = a != a, nb = b != b;
    if (na != nb) return na;
    if (!na && a != b) return a > b;
    return ia < ib;  // equal values (or both NaN): the lower index first
}

}  // namespace era_tok

/** Count and rank of every token in its response: a deterministic O(N) scan
 * per token (O(N^2) in all), through tiles of ERA_CUDA_BLOCK_ITEMS records
 * staged in shared memory, so that the scan reads broadcasts from shared
 * memory instead of dependent global loads. Fine for the N of a policy-update
 * batch (16k tokens: 2.7e8 pair visits); a sort-based grouping would make it
 * O(N log N). */
extern "C" __global__ void era_token_group(const EraCudaToken p) {
    using era_tok::TokenWs;
    constexpr int B = ERA_CUDA_BLOCK_ITEMS;
    __shared__ int64_t tid_[B];
    __shared__ double th_[B];
    TokenWs *ws = (TokenWs *)p.workspace;
    const int64_t n = p.n, stride = (int64_t)B * gridDim.x;
    for (int64_t base = (int64_t)blockIdx.x * B; base < n; base += stride) {  // uniform over the block
        const int64_t t = base + threadIdx.x;
        const bool active = t < n;
        const int64_t id = active ? ws[t].id : -1;
        const double h = active ? ws[t].entropy : 0.0;
        int64_t count = 0, rank = 0;
        for (int64_t s0 = 0; s0 < n; s0 += B) {
            const int64_t m = n - s0 < B ? n - s0 : B;
            if (threadIdx.x < m) {
                tid_[threadIdx.x] = ws[s0 + threadIdx.x].id;
                th_[threadIdx.x] = ws[s0 + threadIdx.x].entropy;
            }
            __syncthreads();
            if (id >= 0) {
                for (int64_t j = 0; j < m; ++j) {
                    if (tid_[j] != id) continue;
                    ++count;
                    rank += era_tok::entropy_before(th_[j], s0 + j, h, t);
                }
            }
            __syncthreads();
        }
        if (active) {
            ws[t].count = count;
            ws[t].rank = rank;
        }
    }
}

/** The response entropy (the mean of the max(1, floor(rho*n_r)) largest
 * entropies of the response: its tokens of rank < that count, summed in column
 * order; an O(N) scan per token through shared-memory tiles, O(N^2) in all),
 * the scale decision (kernels::token::choose_scale) and the outputs. */
extern "C" __global__ void era_token_finish(const EraCudaToken p) {
    using namespace era_cuda;
    using era_tok::TokenWs;
    constexpr int B = ERA_CUDA_BLOCK_ITEMS;
    __shared__ int64_t fid_[B];
    __shared__ int64_t frank_[B];
    __shared__ double fh_[B];
    TokenWs *ws = (TokenWs *)p.workspace;
    const int64_t n = p.n, stride = (int64_t)B * gridDim.x;
    for (int64_t base = (int64_t)blockIdx.x * B; base < n; base += stride) {  // uniform over the block
        const int64_t t = base + threadIdx.x;
        const bool active = t < n;
        const int64_t id = active ? ws[t].id : -1;
        int64_t kr = 1;
        if (id >= 0) {
            kr = (int64_t)floor(p.top_fraction * (double)ws[t].count);
            if (kr < 1) kr = 1;
        }
        double sum = 0.0;
        for (int64_t s0 = 0; s0 < n; s0 += B) {
            const int64_t m = n - s0 < B ? n - s0 : B;
            if (threadIdx.x < m) {
                fid_[threadIdx.x] = ws[s0 + threadIdx.x].id;
                frank_[threadIdx.x] = ws[s0 + threadIdx.x].rank;
                fh_[threadIdx.x] = ws[s0 + threadIdx.x].entropy;
            }
            __syncthreads();
            if (id >= 0)
                for (int64_t j = 0; j < m; ++j)
                    if (fid_[j] == id && frank_[j] < kr) sum += fh_[j];
            __syncthreads();
        }
        if (!active) continue;
        const TokenWs w = ws[t];
        const double a = load_dyn(p.advantages, t);
        double c = 1.0, hresp = 0.0, lp = 0.0;
        if (id >= 0) {
            hresp = sum / (double)kr;
            if (a > 0.0 && hresp < p.omega_low)
                c = p.k;
            else if (a > 0.0 && hresp > p.omega_high)
                c = 1.0 / p.k;
            lp = w.logprob[c == 1.0 ? 0 : (c == p.k ? 1 : 2)];
        }
        store_dyn(p.logprobs_out, t, lp);
        store_dyn(p.entropy_out, t, w.entropy);
        store_dyn(p.scale_out, t, c);
        store_dyn(p.advantages_out, t, p.advantage_scaling ? a / c : a);
        store_dyn(p.response_entropy_out, t, hresp);
    }
}
