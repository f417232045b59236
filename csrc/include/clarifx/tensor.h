// Tensor views shared by every kernel: a 4-D strided view (N, C, H, W) of memory owned by the caller.
// The bindings build these from DLPack capsules; kernels never allocate or own image memory.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
#define CLARIFX_HD __host__ __device__ __forceinline__
#include <cuda_fp16.h>
#else
#define CLARIFX_HD inline
#endif

namespace clarifx {

enum class DType { f32, f16 };

struct Tensor4 {
  void* data = nullptr;   // first element (byte offset already applied)
  DType dtype = DType::f32;
  bool cuda = false;      // false: host memory, true: CUDA device memory
  int device = 0;         // CUDA ordinal when cuda
  bool readonly = false;
  int64_t shape[4] = {0, 0, 0, 0};   // N, C, H, W
  int64_t stride[4] = {0, 0, 0, 0};  // in elements, may be any non-negative value

  bool defined() const { return data != nullptr; }
  int64_t numel() const { return shape[0] * shape[1] * shape[2] * shape[3]; }
};

// Raised for bad arguments; pybind11 turns std::invalid_argument into ValueError.
[[noreturn]] inline void fail(const std::string& msg) { throw std::invalid_argument(msg); }

inline void expect(bool ok, const std::string& msg) {
  if (!ok) fail(msg);
}

// Typed element access. `T` is the storage type (float or half); math always happens in float.
#if defined(__CUDACC__)
using half_t = __half;
CLARIFX_HD float to_float(float v) { return v; }
CLARIFX_HD float to_float(__half v) { return __half2float(v); }
template <typename T> CLARIFX_HD T from_float(float v);
template <> CLARIFX_HD float from_float<float>(float v) { return v; }
template <> CLARIFX_HD __half from_float<__half>(float v) { return __float2half_rn(v); }
#else
using half_t = _Float16;
CLARIFX_HD float to_float(float v) { return v; }
CLARIFX_HD float to_float(_Float16 v) { return static_cast<float>(v); }
template <typename T> CLARIFX_HD T from_float(float v) { return static_cast<T>(v); }
#endif

// Plain-old-data strided accessor, cheap to pass by value into CUDA kernels.
template <typename T>
struct View4 {
  T* p;
  int64_t n, c, h, w;
  int64_t sn, sc, sh, sw;
  CLARIFX_HD T* ptr(int64_t in, int64_t ic, int64_t iy, int64_t ix) const {
    return p + in * sn + ic * sc + iy * sh + ix * sw;
  }
  CLARIFX_HD float get(int64_t in, int64_t ic, int64_t iy, int64_t ix) const {
    return to_float(*ptr(in, ic, iy, ix));
  }
  CLARIFX_HD void set(int64_t in, int64_t ic, int64_t iy, int64_t ix, float v) const {
    *ptr(in, ic, iy, ix) = from_float<T>(v);
  }
};

template <typename T>
View4<T> view(const Tensor4& t) {
  return View4<T>{static_cast<T*>(t.data), t.shape[0], t.shape[1], t.shape[2], t.shape[3],
                  t.stride[0], t.stride[1], t.stride[2], t.stride[3]};
}

// Calls f(float{}) or f(half_t{}) according to the tensor's dtype, so kernels are written once as templates.
template <typename F>
decltype(auto) dispatch_dtype(DType d, F&& f) {
  if (d == DType::f16) return f(half_t{});
  return f(float{});
}

}  // namespace clarifx
