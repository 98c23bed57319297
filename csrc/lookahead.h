// Input checks shared by the CPU (lookahead.cpp) and CUDA (cuda/lookahead_cuda.cu) kernels.
//
// Rules (also enforced by python/autolora/lookahead_reference.py for the Python paths):
// - every tensor is fp32, fp16 or bf16, contiguous, and on the device of the first tensor of the
//   first list (one device per call, so one launch can cover all tensors);
// - lists that pair with the first list have its length, and position by position its shape and
//   dtype. Dtypes may differ across positions (math is fp32 anyway).
// TORCH_CHECK_VALUE raises c10::ValueError, which reaches Python as ValueError.
#pragma once

#include <ATen/ATen.h>

namespace autolora {

inline bool supported_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16;
}

inline void check_tensors(at::TensorList ts, const char* name, const at::Device& device) {
  for (size_t i = 0; i < ts.size(); ++i) {
    const at::Tensor& t = ts[i];
    TORCH_CHECK_VALUE(t.defined(), name, "[", i, "]: expected a tensor, got None");
    TORCH_CHECK_VALUE(supported_dtype(t.scalar_type()), name, "[", i,
                      "]: expected dtype float32, float16 or bfloat16, got ", t.scalar_type());
    TORCH_CHECK_VALUE(t.device() == device, name, "[", i, "]: expected device ", device,
                      " (all tensors of one call share a device), got ", t.device());
    TORCH_CHECK_VALUE(t.is_contiguous(), name, "[", i, "]: expected a contiguous tensor, got shape ",
                      t.sizes(), " with strides ", t.strides());
  }
}

// `other` pairs with `ref`: same length, and per position the same shape and dtype.
inline void check_like(at::TensorList other, const char* name, at::TensorList ref,
                       const char* ref_name) {
  TORCH_CHECK_VALUE(other.size() == ref.size(), name, ": expected ", ref.size(),
                    " tensors (as many as ", ref_name, "), got ", other.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    TORCH_CHECK_VALUE(other[i].defined(), name, "[", i, "]: expected a tensor, got None");
    TORCH_CHECK_VALUE(other[i].sizes() == ref[i].sizes(), name, "[", i, "]: expected shape ",
                      ref[i].sizes(), " (as ", ref_name, "[", i, "]), got ", other[i].sizes());
    TORCH_CHECK_VALUE(other[i].scalar_type() == ref[i].scalar_type(), name, "[", i,
                      "]: expected dtype ", ref[i].scalar_type(), " (as ", ref_name, "[", i,
                      "]), got ", other[i].scalar_type());
  }
  if (!ref.empty()) check_tensors(other, name, ref[0].device());
}

// The AdamW step's moment lists pair with `params` (already checked); step is this update's number.
inline void check_adam(at::TensorList params, at::TensorList grads, at::TensorList exp_avg,
                       at::TensorList exp_avg_sq, int64_t step) {
  check_like(grads, "grads", params, "params");
  check_like(exp_avg, "exp_avg", params, "params");
  check_like(exp_avg_sq, "exp_avg_sq", params, "params");
  TORCH_CHECK_VALUE(step >= 1, "step: expected the step number of this update (>= 1), got ", step);
}

inline void check_first(at::TensorList ts, const char* name) {
  if (!ts.empty()) {
    TORCH_CHECK_VALUE(ts[0].defined(), name, "[0]: expected a tensor, got None");
    check_tensors(ts, name, ts[0].device());
  }
}

// A backup `out` list must not share memory with `ref` at the same position (it would hold the
// stepped values, and restore_ would then restore nothing). Call after check_like.
inline void check_no_overlap(at::TensorList out, const char* name, at::TensorList ref,
                             const char* ref_name) {
  for (size_t i = 0; i < ref.size(); ++i) {
    const auto* a = static_cast<const char*>(out[i].const_data_ptr());
    const auto* b = static_cast<const char*>(ref[i].const_data_ptr());
    const int64_t n = ref[i].numel() * ref[i].element_size();
    TORCH_CHECK_VALUE(n == 0 || a + n <= b || b + n <= a, name, "[", i, "]: expected memory apart from ",
                      ref_name, "[", i, "], got an overlapping tensor");
  }
}

// eps of set_perturbed_: one fp32 value on the params' device, read by the kernel (no host sync).
inline void check_eps(const at::Tensor& eps, at::TensorList params) {
  TORCH_CHECK_VALUE(eps.scalar_type() == at::kFloat && eps.numel() == 1,
                    "eps: expected a 0-d float32 tensor, got dtype ", eps.scalar_type(), " and shape ",
                    eps.sizes());
  if (!params.empty()) {
    TORCH_CHECK_VALUE(eps.device() == params[0].device(), "eps: expected device ",
                      params[0].device(), ", got ", eps.device());
  }
}

}  // namespace autolora
