// CUDA implementation of the lookahead ops declared in csrc/lookahead.cpp (multi-tensor apply).
//
// Built only when torch is a CUDA build and a toolkit is present (python/autolora/_ext.py, setup.py).
// NEVER RUN: written without a GPU; the CPU kernels and the Python reference are the tested oracle.
// It compiles for sm_90 with the JIT build's flags (tests/test_lookahead.py runs nvcc, no GPU needed).
//
// One launch per op and dtype present (adapter lists are single-dtype in practice, so one launch):
// the host writes a table of tensor addresses, sizes and chunk starts into pinned memory, copies it
// to the device asynchronously (the caching host allocator keeps the block alive until the copy has
// run), and each CUDA block handles one kChunk-element chunk of one tensor. global_norm / fd_eps
// write per-block partial sums, then one single-block kernel adds them in a fixed order and writes
// the 0-d result on the device: no host sync, deterministic. set_perturbed_ reads eps from device
// memory.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../lookahead.h"

namespace autolora {
namespace {

constexpr int kThreads = 512;
constexpr int64_t kChunk = 1 << 14;  // elements per block: 32 per thread

// Table layout (int64): [L lists x nt addresses][nt numel][nchunks tensor index][nchunks start].
struct Table {
  const int64_t* data;
  int64_t nt, nchunks;
  int lists;
  __device__ int64_t addr(int list, int64_t t) const { return data[list * nt + t]; }
  __device__ int64_t numel(int64_t t) const { return data[lists * nt + t]; }
  __device__ int64_t tensor(int64_t c) const { return data[(lists + 1) * nt + c]; }
  __device__ int64_t start(int64_t c) const { return data[(lists + 1) * nt + nchunks + c]; }
};

// Builds and uploads the table for positions `idx` of `lists`; returns the device tensor.
at::Tensor upload_table(const std::vector<at::TensorList>& lists, const std::vector<int64_t>& idx,
                        int64_t& nchunks) {
  const int64_t nt = idx.size(), L = lists.size();
  std::vector<int64_t> ct, cs;
  for (int64_t j = 0; j < nt; ++j) {
    const int64_t n = lists[0][idx[j]].numel();
    for (int64_t b = 0; b < n; b += kChunk) {
      ct.push_back(j);
      cs.push_back(b);
    }
  }
  nchunks = ct.size();
  at::Tensor host = at::empty({L * nt + nt + 2 * nchunks},
                              at::TensorOptions().dtype(at::kLong).pinned_memory(true));
  int64_t* h = host.data_ptr<int64_t>();
  for (int64_t l = 0; l < L; ++l)
    for (int64_t j = 0; j < nt; ++j)
      h[l * nt + j] = reinterpret_cast<int64_t>(lists[l][idx[j]].data_ptr());
  for (int64_t j = 0; j < nt; ++j) h[L * nt + j] = lists[0][idx[j]].numel();
  std::copy(ct.begin(), ct.end(), h + (L + 1) * nt);
  std::copy(cs.begin(), cs.end(), h + (L + 1) * nt + nchunks);
  const auto dev = at::TensorOptions().dtype(at::kLong).device(lists[0][0].device());
  return host.to(dev, /*non_blocking=*/true);
}

// Positions of `ts` grouped by dtype, in order of first appearance.
std::vector<std::pair<at::ScalarType, std::vector<int64_t>>> by_dtype(at::TensorList ts) {
  std::vector<std::pair<at::ScalarType, std::vector<int64_t>>> groups;
  for (size_t i = 0; i < ts.size(); ++i) {
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const auto& g) { return g.first == ts[i].scalar_type(); });
    if (it == groups.end()) {
      groups.push_back({ts[i].scalar_type(), {}});
      it = groups.end() - 1;
    }
    it->second.push_back(i);
  }
  return groups;
}

template <typename F>
void dispatch_dtype(at::ScalarType t, const F& f) {
  switch (t) {
    case at::kFloat: return f(float{});
    case at::kHalf: return f(at::Half{});
    case at::kBFloat16: return f(at::BFloat16{});
    default: TORCH_CHECK_VALUE(false, "unsupported dtype ", t);
  }
}

__device__ __forceinline__ int64_t chunk_end(const Table& tab, int64_t t, int64_t begin) {
  const int64_t n = tab.numel(t);
  return begin + kChunk < n ? begin + kChunk : n;
}

// List 0 is written: out[i] = f(x) with x[k] = float(input k [i]), k < N. The inputs are lists
// 1..N, or 2..N+1 with SAVE, where list 1 receives input 0 as stored (the fused backup: input 0 is
// read once; it may be list 0 itself, so it is read before out[i] is written).
template <typename T, int N, bool SAVE, typename F>
__global__ void map_kernel(Table tab, F f) {
  const int64_t c = blockIdx.x, t = tab.tensor(c), begin = tab.start(c);
  const int64_t end = chunk_end(tab, t, begin);
  T* out = reinterpret_cast<T*>(tab.addr(0, t));
  T* save = SAVE ? reinterpret_cast<T*>(tab.addr(1, t)) : nullptr;
  const T* in[N];
#pragma unroll
  for (int k = 0; k < N; ++k) in[k] = reinterpret_cast<const T*>(tab.addr(k + 1 + SAVE, t));
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    float x[N];
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const T raw = in[k][i];
      if (SAVE && k == 0) save[i] = raw;  // bit-exact: T as stored, not through float
      x[k] = static_cast<float>(raw);
    }
    out[i] = static_cast<T>(f(x));
  }
}

// Bit-exact: T is copied as stored, never through float.
template <typename T>
__global__ void copy_kernel(Table tab) {
  const int64_t c = blockIdx.x, t = tab.tensor(c), begin = tab.start(c);
  const int64_t end = chunk_end(tab, t, begin);
  T* out = reinterpret_cast<T*>(tab.addr(0, t));
  const T* in = reinterpret_cast<const T*>(tab.addr(1, t));
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) out[i] = in[i];
}

__device__ float block_sum(float v) {
  __shared__ float s[kThreads];
  s[threadIdx.x] = v;
  __syncthreads();
  for (int o = kThreads / 2; o > 0; o >>= 1) {
    if (threadIdx.x < o) s[threadIdx.x] += s[threadIdx.x + o];
    __syncthreads();
  }
  return s[0];
}

template <typename T>
__global__ void sumsq_kernel(Table tab, float* partial) {
  const int64_t c = blockIdx.x, t = tab.tensor(c), begin = tab.start(c);
  const int64_t end = chunk_end(tab, t, begin);
  const T* p = reinterpret_cast<const T*>(tab.addr(0, t));
  float acc = 0.f;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const float x = static_cast<float>(p[i]);
    acc += x * x;
  }
  const float s = block_sum(acc);
  if (threadIdx.x == 0) partial[c] = s;
}

// One block: out = sqrt(sum partial), or r / that norm (r when the norm is 0 or not finite).
__global__ void finish_norm_kernel(const float* partial, int64_t n, float* out, float r, bool eps) {
  __shared__ double s[kThreads];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int o = kThreads / 2; o > 0; o >>= 1) {
    if (threadIdx.x < o) s[threadIdx.x] += s[threadIdx.x + o];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const float norm = static_cast<float>(sqrt(s[0]));
    *out = !eps ? norm : (norm > 0.f && isfinite(norm)) ? r / norm : r;
  }
}

// Launches map_kernel<T, N, SAVE> once per dtype group; lists[0] is the output list, then the
// backup list when SAVE, then the N inputs.
template <int N, bool SAVE = false, typename F>
void map_lists(const std::vector<at::TensorList>& lists, const F& f) {
  const c10::cuda::CUDAGuard guard(lists[0][0].device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  for (const auto& group : by_dtype(lists[0])) {
    int64_t nchunks = 0;
    const at::Tensor table = upload_table(lists, group.second, nchunks);
    if (nchunks == 0) continue;
    const Table tab{table.data_ptr<int64_t>(), (int64_t)group.second.size(), nchunks, N + 1 + SAVE};
    dispatch_dtype(group.first, [&](auto tag) {
      using T = decltype(tag);
      map_kernel<T, N, SAVE, F><<<static_cast<unsigned>(nchunks), kThreads, 0, stream>>>(tab, f);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
}

void copy_lists(at::TensorList dst, at::TensorList src) {
  const c10::cuda::CUDAGuard guard(dst[0].device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  for (const auto& group : by_dtype(dst)) {
    int64_t nchunks = 0;
    const at::Tensor table = upload_table({dst, src}, group.second, nchunks);
    if (nchunks == 0) continue;
    const Table tab{table.data_ptr<int64_t>(), (int64_t)group.second.size(), nchunks, 2};
    dispatch_dtype(group.first, [&](auto tag) {
      using T = decltype(tag);
      copy_kernel<T><<<static_cast<unsigned>(nchunks), kThreads, 0, stream>>>(tab);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
}

at::Tensor norm_or_eps(at::TensorList ts, bool eps, double r) {
  const c10::cuda::CUDAGuard guard(ts[0].device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(ts[0].device());
  std::vector<std::pair<at::Tensor, int64_t>> tables;  // kept alive until all launches are queued
  int64_t total = 0;
  const auto groups = by_dtype(ts);
  for (const auto& group : groups) {
    int64_t nchunks = 0;
    tables.push_back({upload_table({ts}, group.second, nchunks), nchunks});
    total += nchunks;
  }
  at::Tensor partial = at::empty({std::max<int64_t>(total, 1)}, opts);
  int64_t offset = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    const int64_t nchunks = tables[g].second;
    if (nchunks == 0) continue;
    const Table tab{tables[g].first.data_ptr<int64_t>(), (int64_t)groups[g].second.size(), nchunks, 1};
    dispatch_dtype(groups[g].first, [&](auto tag) {
      using T = decltype(tag);
      sumsq_kernel<T><<<static_cast<unsigned>(nchunks), kThreads, 0, stream>>>(tab, partial.data_ptr<float>() + offset);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    offset += nchunks;
  }
  at::Tensor out = at::empty({}, opts);
  finish_norm_kernel<<<1, kThreads, 0, stream>>>(partial.data_ptr<float>(), total,
                                                 out.data_ptr<float>(), static_cast<float>(r), eps);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

struct SgdOp {
  float xi;
  __device__ float operator()(const float* x) const { return x[0] - xi * x[1]; }
};

struct AdamOp {
  float decay, w1, b2, w2, bc2_sqrt, eps, neg_step;
  __device__ float operator()(const float* x) const {  // x = p, g, exp_avg, exp_avg_sq
    const float m = x[2] + w1 * (x[1] - x[2]);
    const float v = x[3] * b2 + w2 * (x[1] * x[1]);
    const float denom = sqrtf(v) / bc2_sqrt + eps;
    return x[0] * decay + neg_step * (m / denom);
  }
};

AdamOp make_adam_op(int64_t step, double lr, double beta1, double beta2, double eps,
                    double weight_decay) {
  const double bc1 = 1.0 - std::pow(beta1, (double)step);
  const double bc2 = 1.0 - std::pow(beta2, (double)step);
  return AdamOp{(float)(1.0 - lr * weight_decay), (float)(1.0 - beta1), (float)beta2,
                (float)(1.0 - beta2), (float)std::sqrt(bc2), (float)eps, (float)(-lr / bc1)};
}

struct PerturbOp {
  const float* eps;
  float sign;
  __device__ float operator()(const float* x) const { return x[0] + (sign * *eps) * x[1]; }
};

// ---- the ops (CUDA) ----

std::vector<at::Tensor> backup_cuda(at::TensorList params) {
  check_first(params, "params");
  std::vector<at::Tensor> out;
  out.reserve(params.size());
  for (const auto& p : params) out.push_back(at::empty(p.sizes(), p.options()));
  if (!params.empty()) copy_lists(out, params);
  return out;
}

void backup_into_cuda(at::TensorList out, at::TensorList params) {
  check_first(params, "params");
  check_like(out, "out", params, "params");
  check_no_overlap(out, "out", params, "params");
  if (!params.empty()) copy_lists(out, params);
}

void restore_cuda(at::TensorList params, at::TensorList backups) {
  check_first(params, "params");
  check_like(backups, "backups", params, "params");
  if (!params.empty()) copy_lists(params, backups);
}

void sgd_step_cuda(at::TensorList params, at::TensorList grads, double xi) {
  check_first(params, "params");
  check_like(grads, "grads", params, "params");
  if (!params.empty()) map_lists<2>({params, params, grads}, SgdOp{static_cast<float>(xi)});
}

void backup_and_sgd_step_cuda(at::TensorList params, at::TensorList out, at::TensorList grads,
                              double xi) {
  check_first(params, "params");
  check_like(out, "out", params, "params");
  check_like(grads, "grads", params, "params");
  check_no_overlap(out, "out", params, "params");
  if (!params.empty()) map_lists<2, true>({params, out, params, grads}, SgdOp{static_cast<float>(xi)});
}

void adam_step_cuda(at::TensorList params, at::TensorList grads, at::TensorList exp_avg,
                    at::TensorList exp_avg_sq, int64_t step, double lr, double beta1, double beta2,
                    double eps, double weight_decay) {
  check_first(params, "params");
  check_adam(params, grads, exp_avg, exp_avg_sq, step);
  if (params.empty()) return;
  map_lists<4>({params, params, grads, exp_avg, exp_avg_sq},
               make_adam_op(step, lr, beta1, beta2, eps, weight_decay));
}

void backup_and_adam_step_cuda(at::TensorList params, at::TensorList out, at::TensorList grads,
                               at::TensorList exp_avg, at::TensorList exp_avg_sq, int64_t step,
                               double lr, double beta1, double beta2, double eps,
                               double weight_decay) {
  check_first(params, "params");
  check_like(out, "out", params, "params");
  check_adam(params, grads, exp_avg, exp_avg_sq, step);
  check_no_overlap(out, "out", params, "params");
  if (params.empty()) return;
  map_lists<4, true>({params, out, params, grads, exp_avg, exp_avg_sq},
                     make_adam_op(step, lr, beta1, beta2, eps, weight_decay));
}

at::Tensor global_norm_cuda(at::TensorList tensors) {
  check_first(tensors, "tensors");
  return norm_or_eps(tensors, false, 0.0);
}

at::Tensor fd_eps_cuda(at::TensorList v, double r) {
  check_first(v, "v");
  return norm_or_eps(v, true, r);
}

void set_perturbed_cuda(at::TensorList params, at::TensorList backups, at::TensorList v,
                        const at::Tensor& eps, double sign) {
  check_first(params, "params");
  check_like(backups, "backups", params, "params");
  check_like(v, "v", params, "params");
  check_eps(eps, params);
  if (params.empty()) return;
  const at::Tensor e = eps.contiguous();  // a 1-element view may carry an offset; data_ptr handles it
  map_lists<2>({params, backups, v}, PerturbOp{e.data_ptr<float>(), static_cast<float>(sign)});
}

}  // namespace

TORCH_LIBRARY_IMPL(autolora, CUDA, m) {
  m.impl("backup", &backup_cuda);
  m.impl("backup_into_", &backup_into_cuda);
  m.impl("restore_", &restore_cuda);
  m.impl("sgd_step_", &sgd_step_cuda);
  m.impl("backup_and_sgd_step_", &backup_and_sgd_step_cuda);
  m.impl("adam_step_", &adam_step_cuda);
  m.impl("backup_and_adam_step_", &backup_and_adam_step_cuda);
  m.impl("global_norm", &global_norm_cuda);
  m.impl("fd_eps", &fd_eps_cuda);
  m.impl("set_perturbed_", &set_perturbed_cuda);
}

}  // namespace autolora
