// The fused lookahead step of AutoLoRA's bilevel search (docs/METHOD.md section 4, steps 2, 4, 5 and 8):
// elementwise ops over lists of small adapter tensors. This file declares the ops (TORCH_LIBRARY)
// and holds the CPU implementation; csrc/cuda/lookahead_cuda.cu holds the CUDA one.
//
// CPU strategy: the adapter tensors are small (6k elements for RoBERTa-base, 32k for LLaMA-7B) and
// many (48-448), so one aten call per tensor is dominated by dispatch overhead and never uses a
// second thread (aten's grain is 32k elements). Here every call splits all tensors into chunks of
// kChunk elements and runs the chunks with at::parallel_for; inside a chunk, at::vec::Vectorized
// does the fp32 math (fp16/bf16 are widened on load and rounded once on store).
//
// Large fp32 lists are memory-bound, so the ops keep traffic down: backup_and_*_step_ write the
// backup in the pass that reads W (W read once, not twice), backup_into_ fills a caller-owned
// workspace (no fresh pages to fault in), and calls past kStreamAbove use streaming stores. The
// search's sequence is then 13 list traversals: 4 + 1 (norm) + 3 + 3 (W+, W-) + 2 (restore).
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <vector>

#if defined(CPU_CAPABILITY_AVX2) && !defined(CPU_CAPABILITY_AVX512) && !defined(_MSC_VER)
#include <immintrin.h>
#define AUTOLORA_STREAM_STORES 1
#endif

#include "lookahead.h"

namespace autolora {
namespace {

using fVec = at::vec::Vectorized<float>;
constexpr int64_t kW = fVec::size();
constexpr int64_t kStep = 2 * kW;          // elements per inner iteration: two float vectors
constexpr int64_t kChunk = 1 << 14;        // elements per work item: 64 KB of fp32, L2-sized
// Below this many elements (4 MB of fp32, ~0.3 ms of one core's work) a call stays on one thread:
// an OpenMP region must wait for its slowest thread, and when other processes hold the cores that
// wait is a scheduler slice (4-16 ms measured on 2 cores), 200x the work of a 48-tensor call.
constexpr int64_t kSerialBelow = 1 << 20;

// A call that touches at least this many bytes (reads + writes) writes with non-temporal stores:
// its lines would be evicted before anything reads them again, so the read-for-ownership that a
// normal store makes is wasted traffic. 3/4 of a 32 MB L3, as glibc's memcpy threshold. Measured
// (AMD EPYC, 1 thread, 128 fp32 tensors of 32k): perturb 1.66 -> 1.30 ms, restore 1.04 -> 0.77 ms;
// below the threshold (48 tensors of 6k, cache-resident) streaming made every op 40-60% slower.
// fp16/bf16 arithmetic is bound by the conversions here (x86 AVX2) and measured no gain: only fp32
// arithmetic and bit copies of any dtype stream.
constexpr int64_t kStreamAbove = int64_t{24} << 20;

struct Chunk {
  int64_t tensor, begin, end;
};

std::vector<Chunk> make_chunks(at::TensorList ts) {
  std::vector<Chunk> chunks;
  for (size_t t = 0; t < ts.size(); ++t) {
    const int64_t n = ts[t].numel();
    for (int64_t b = 0; b < n; b += kChunk) chunks.push_back({(int64_t)t, b, std::min(b + kChunk, n)});
  }
  return chunks;
}

int64_t list_bytes(at::TensorList ts) {
  int64_t n = 0;
  for (const auto& t : ts) n += t.numel() * t.element_size();
  return n;
}

// Runs f(i) for every chunk index i in parallel (serially when the total work is small).
template <typename F>
void parallel_chunks(const std::vector<Chunk>& chunks, const F& f) {
  const int64_t n = chunks.size();
  const int64_t grain = n * kChunk < kSerialBelow ? std::max<int64_t>(1, n) : 1;
  at::parallel_for(0, n, grain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) f(i);
  });
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

inline bool aligned32(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 31) == 0; }

// Non-temporal stores write a full line without first reading it (no read-for-ownership) and
// keep it out of the cache; `nt` is true only for 32-byte aligned addresses.
inline void fence_streams(bool nt) {
#ifdef AUTOLORA_STREAM_STORES
  if (nt) _mm_sfence();
#endif
}

// store2 writes n <= kStep elements from two float vectors (rounded once for 16-bit types);
// load2 is the inverse (missing lanes are 0).
template <typename T>
inline void store2(T* p, int64_t n, const fVec& a, const fVec& b, bool nt = false) {
  if constexpr (std::is_same_v<T, float>) {
    if (n == kStep) {
#ifdef AUTOLORA_STREAM_STORES
      if (nt) {
        _mm256_stream_ps(p, a);
        _mm256_stream_ps(p + kW, b);
        return;
      }
#endif
      a.store(p);
      b.store(p + kW);
    } else {
      a.store(p, std::min(n, kW));
      if (n > kW) b.store(p + kW, n - kW);
    }
  } else {
    at::vec::convert_from_float<T>(a, b).store(p, n);  // never streamed: see kStreamAbove
  }
}

// With `save`, the elements are also copied to save[0, n) as stored (bit-exact, before widening).
template <typename T>
inline void load2(const T* p, int64_t n, fVec& a, fVec& b, T* save = nullptr, bool nt = false) {
  if constexpr (std::is_same_v<T, float>) {
    if (n == kStep) {
      a = fVec::loadu(p);
      b = fVec::loadu(p + kW);
    } else {
      a = fVec::loadu(p, std::min(n, kW));
      b = n > kW ? fVec::loadu(p + kW, n - kW) : fVec(0.f);
    }
    if (save) store2(save, n, a, b, nt);  // float vectors are moved, never converted: bit-exact
  } else {
    using V = at::vec::Vectorized<T>;
    static_assert(V::size() == kStep, "a reduced-float vector must hold two float vectors");
    const V raw = n == kStep ? V::loadu(p) : V::loadu(p, n);
    if (save) raw.store(save, n);
    std::tie(a, b) = at::vec::convert_to_float<T>(raw);
  }
}

// out[t] = f(in[0][t], ..., in[N-1][t]) elementwise in fp32, for every tensor t; f maps
// std::array<fVec, N> to fVec. out may alias in[0]. When `save` is not empty, in[0] is also copied
// to it bit for bit in the same pass (the backup of a fused backup-and-step: one read of in[0]).
template <size_t N, typename F>
void map_lists(at::TensorList out, std::array<at::TensorList, N> in, const F& f,
               at::TensorList save = {}) {
  const auto chunks = make_chunks(out);
  int64_t touched = list_bytes(out) + list_bytes(save);
  for (const auto& l : in) touched += l.data() == out.data() ? 0 : list_bytes(l);
  const bool stream = touched >= kStreamAbove;
  parallel_chunks(chunks, [&](int64_t ci) {
    const Chunk& c = chunks[ci];
    dispatch_dtype(out[c.tensor].scalar_type(), [&](auto tag) {
      using T = decltype(tag);
      T* o = out[c.tensor].template data_ptr<T>();
      T* sv = save.empty() ? nullptr : save[c.tensor].template data_ptr<T>();
      const bool nt_o = stream && std::is_same_v<T, float> && aligned32(o + c.begin);
      const bool nt_s = stream && std::is_same_v<T, float> && sv && aligned32(sv + c.begin);
      std::array<const T*, N> src;
      for (size_t k = 0; k < N; ++k) src[k] = in[k][c.tensor].template const_data_ptr<T>();
      for (int64_t i = c.begin; i < c.end; i += kStep) {
        const int64_t n = std::min(kStep, c.end - i);
        std::array<fVec, N> a, b;
        load2(src[0] + i, n, a[0], b[0], sv ? sv + i : nullptr, nt_s);
        for (size_t k = 1; k < N; ++k) load2(src[k] + i, n, a[k], b[k]);
        store2(o + i, n, f(a), f(b), nt_o);
      }
      fence_streams(nt_o || nt_s);
    });
  });
}

// Copies n bytes; streamed (non-temporal) when `nt` and the CPU build has them.
void copy_bytes(char* dst, const char* src, int64_t n, bool nt) {
#ifdef AUTOLORA_STREAM_STORES
  if (nt) {
    const int64_t head = std::min<int64_t>(n, (32 - (reinterpret_cast<std::uintptr_t>(dst) & 31)) & 31);
    std::memcpy(dst, src, head);
    int64_t i = head;
    for (; i + 64 <= n; i += 64) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
      const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 32));
      _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i), x);
      _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i + 32), y);
    }
    std::memcpy(dst + i, src + i, n - i);
    _mm_sfence();
    return;
  }
#endif
  std::memcpy(dst, src, n);
}

// Bit-exact copy (no float round trip, so NaN payloads and -0.0 survive).
void copy_lists(at::TensorList dst, at::TensorList src) {
  const auto chunks = make_chunks(dst);
  const bool stream = 2 * list_bytes(dst) >= kStreamAbove;
  parallel_chunks(chunks, [&](int64_t ci) {
    const Chunk& c = chunks[ci];
    const int64_t es = dst[c.tensor].element_size();
    copy_bytes(static_cast<char*>(dst[c.tensor].data_ptr()) + c.begin * es,
               static_cast<const char*>(src[c.tensor].const_data_ptr()) + c.begin * es,
               (c.end - c.begin) * es, stream);
  });
}

// sqrt(sum of squares) over all tensors: fp32 sums per chunk, added in double in a fixed order,
// so the result does not depend on the number of threads. Four accumulators: one FMA chain
// (4 cycles per vector) would cap the read rate below what memory delivers.
float global_norm_value(at::TensorList ts) {
  const auto chunks = make_chunks(ts);
  std::vector<double> partial(chunks.size(), 0.0);
  parallel_chunks(chunks, [&](int64_t ci) {
    const Chunk& c = chunks[ci];
    dispatch_dtype(ts[c.tensor].scalar_type(), [&](auto tag) {
      using T = decltype(tag);
      const T* p = ts[c.tensor].template const_data_ptr<T>();
      fVec acc0(0.f), acc1(0.f), acc2(0.f), acc3(0.f), a, b, d, e;
      int64_t i = c.begin;
      for (; i + 2 * kStep <= c.end; i += 2 * kStep) {
        load2(p + i, kStep, a, b);
        load2(p + i + kStep, kStep, d, e);
        acc0 = at::vec::fmadd(a, a, acc0);
        acc1 = at::vec::fmadd(b, b, acc1);
        acc2 = at::vec::fmadd(d, d, acc2);
        acc3 = at::vec::fmadd(e, e, acc3);
      }
      for (; i < c.end; i += kStep) {
        load2(p + i, std::min(kStep, c.end - i), a, b);
        acc0 = at::vec::fmadd(a, a, acc0);
        acc1 = at::vec::fmadd(b, b, acc1);
      }
      alignas(64) float lanes[kW];
      ((acc0 + acc1) + (acc2 + acc3)).store(lanes);
      double s = 0.0;
      for (int64_t l = 0; l < kW; ++l) s += lanes[l];
      partial[ci] = s;
    });
  });
  double total = 0.0;
  for (double s : partial) total += s;
  return static_cast<float>(std::sqrt(total));
}

at::Tensor scalar_tensor(float value) {
  at::Tensor out = at::empty({}, at::TensorOptions().dtype(at::kFloat));
  *out.data_ptr<float>() = value;
  return out;
}

// ---- the ops (CPU) ----

std::vector<at::Tensor> backup_cpu(at::TensorList params) {
  check_first(params, "params");
  std::vector<at::Tensor> out;
  out.reserve(params.size());
  for (const auto& p : params) out.push_back(at::empty(p.sizes(), p.options()));
  copy_lists(out, params);
  return out;
}

// The backup into a caller-owned workspace: no allocation, and no page faults on fresh memory
// (freed MBs go back to the OS, and touching them again costs a fault per 4 KB page).
void backup_into_cpu(at::TensorList out, at::TensorList params) {
  check_first(params, "params");
  check_like(out, "out", params, "params");
  check_no_overlap(out, "out", params, "params");
  copy_lists(out, params);
}

void restore_cpu(at::TensorList params, at::TensorList backups) {
  check_first(params, "params");
  check_like(backups, "backups", params, "params");
  copy_lists(params, backups);
}

void sgd_step_cpu(at::TensorList params, at::TensorList grads, double xi) {
  check_first(params, "params");
  check_like(grads, "grads", params, "params");
  const fVec vxi(static_cast<float>(xi));
  map_lists<2>(params, {params, grads}, [&](const std::array<fVec, 2>& x) { return x[0] - vxi * x[1]; });
}

// out <- params (bit-exact), then params <- params - xi * grads: one read of params instead of two.
void backup_and_sgd_step_cpu(at::TensorList params, at::TensorList out, at::TensorList grads, double xi) {
  check_first(params, "params");
  check_like(out, "out", params, "params");
  check_like(grads, "grads", params, "params");
  check_no_overlap(out, "out", params, "params");
  const fVec vxi(static_cast<float>(xi));
  map_lists<2>(
      params, {params, grads}, [&](const std::array<fVec, 2>& x) { return x[0] - vxi * x[1]; }, out);
}

// AdamW's update of x = (p, g, exp_avg, exp_avg_sq), moments read only. Scalars exactly as
// torch.optim.AdamW (single-tensor path) computes them, in double.
struct AdamFn {
  fVec decay, w1, b2, w2, bc2_sqrt, eps, neg_step;
  AdamFn(int64_t step, double lr, double beta1, double beta2, double eps_, double weight_decay)
      : decay((float)(1.0 - lr * weight_decay)),
        w1((float)(1.0 - beta1)),
        b2((float)beta2),
        w2((float)(1.0 - beta2)),
        bc2_sqrt((float)std::sqrt(1.0 - std::pow(beta2, (double)step))),
        eps((float)eps_),
        neg_step((float)(-lr / (1.0 - std::pow(beta1, (double)step)))) {}
  fVec operator()(const std::array<fVec, 4>& x) const {
    const fVec m = x[2] + w1 * (x[1] - x[2]);      // exp_avg.lerp(g, 1 - beta1)
    const fVec v = x[3] * b2 + w2 * (x[1] * x[1]);  // exp_avg_sq * beta2 + (1 - beta2) g^2
    const fVec denom = v.sqrt() / bc2_sqrt + eps;
    return x[0] * decay + neg_step * (m / denom);  // decoupled decay, then addcdiv
  }
};

void adam_step_cpu(at::TensorList params, at::TensorList grads, at::TensorList exp_avg,
                   at::TensorList exp_avg_sq, int64_t step, double lr, double beta1, double beta2,
                   double eps, double weight_decay) {
  check_first(params, "params");
  check_adam(params, grads, exp_avg, exp_avg_sq, step);
  map_lists<4>(params, {params, grads, exp_avg, exp_avg_sq},
               AdamFn(step, lr, beta1, beta2, eps, weight_decay));
}

void backup_and_adam_step_cpu(at::TensorList params, at::TensorList out, at::TensorList grads,
                              at::TensorList exp_avg, at::TensorList exp_avg_sq, int64_t step,
                              double lr, double beta1, double beta2, double eps, double weight_decay) {
  check_first(params, "params");
  check_like(out, "out", params, "params");
  check_adam(params, grads, exp_avg, exp_avg_sq, step);
  check_no_overlap(out, "out", params, "params");
  map_lists<4>(params, {params, grads, exp_avg, exp_avg_sq},
               AdamFn(step, lr, beta1, beta2, eps, weight_decay), out);
}

at::Tensor global_norm_cpu(at::TensorList tensors) {
  check_first(tensors, "tensors");
  return scalar_tensor(global_norm_value(tensors));
}

at::Tensor fd_eps_cpu(at::TensorList v, double r) {
  check_first(v, "v");
  const float norm = global_norm_value(v);
  // Zero (or non-finite) norm: eps = r, finite, and v * eps = 0 when v = 0.
  const bool ok = norm > 0.f && std::isfinite(norm);
  return scalar_tensor(ok ? static_cast<float>(r) / norm : static_cast<float>(r));
}

void set_perturbed_cpu(at::TensorList params, at::TensorList backups, at::TensorList v,
                       const at::Tensor& eps, double sign) {
  check_first(params, "params");
  check_like(backups, "backups", params, "params");
  check_like(v, "v", params, "params");
  check_eps(eps, params);
  const fVec s(static_cast<float>(sign) * eps.item<float>());
  map_lists<2>(params, {backups, v}, [&](const std::array<fVec, 2>& x) { return x[0] + s * x[1]; });
}

}  // namespace

TORCH_LIBRARY(autolora, m) {
  m.def("backup(Tensor[] params) -> Tensor[]");
  m.def("backup_into_(Tensor(a!)[] out, Tensor[] params) -> ()");
  m.def("restore_(Tensor(a!)[] params, Tensor[] backups) -> ()");
  m.def("sgd_step_(Tensor(a!)[] params, Tensor[] grads, float xi) -> ()");
  m.def("backup_and_sgd_step_(Tensor(a!)[] params, Tensor(b!)[] out, Tensor[] grads, float xi) -> ()");
  m.def(
      "adam_step_(Tensor(a!)[] params, Tensor[] grads, Tensor[] exp_avg, Tensor[] exp_avg_sq, "
      "int step, float lr, float beta1, float beta2, float eps, float weight_decay) -> ()");
  m.def(
      "backup_and_adam_step_(Tensor(a!)[] params, Tensor(b!)[] out, Tensor[] grads, "
      "Tensor[] exp_avg, Tensor[] exp_avg_sq, int step, float lr, float beta1, float beta2, "
      "float eps, float weight_decay) -> ()");
  m.def("global_norm(Tensor[] tensors) -> Tensor");
  m.def("fd_eps(Tensor[] v, float r) -> Tensor");
  m.def("set_perturbed_(Tensor(a!)[] params, Tensor[] backups, Tensor[] v, Tensor eps, float sign) -> ()");
}

TORCH_LIBRARY_IMPL(autolora, CPU, m) {
  m.impl("backup", &backup_cpu);
  m.impl("backup_into_", &backup_into_cpu);
  m.impl("restore_", &restore_cpu);
  m.impl("sgd_step_", &sgd_step_cpu);
  m.impl("backup_and_sgd_step_", &backup_and_sgd_step_cpu);
  m.impl("adam_step_", &adam_step_cpu);
  m.impl("backup_and_adam_step_", &backup_and_adam_step_cpu);
  m.impl("global_norm", &global_norm_cpu);
  m.impl("fd_eps", &fd_eps_cpu);
  m.impl("set_perturbed_", &set_perturbed_cpu);
}

}  // namespace autolora
