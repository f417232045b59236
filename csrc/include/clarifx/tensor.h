// Tensor views shared by every kernel: a 4-D strided view (N, C, H, W) of memory owned by the caller.
// The bindings build these from DLPack capsules; kernels never allocate or own image memory.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
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
// float16 on the CPU is its bit pattern (as numpy and torch store it), converted by integer arithmetic:
// at baseline x86-64 (no F16C) the compiler's _Float16 casts are a library call per element that does
// not vectorise, ~10-20x slower than float32. Cases are chosen by bit masks, not branches, because the
// vectoriser will not speculate float operations into branches (-ftrapping-math). No intermediate is a
// float denormal, so hosts running with FTZ/DAZ get the same results; (a + magic) - magic needs IEEE
// evaluation order, so never build with -ffast-math. Checked against _Float16 casts for all 2^16 halves
// and all 2^32 floats.
struct half_t {
  uint16_t bits;
};

namespace half_detail {
inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline uint32_t pick(bool cond, uint32_t if_true, uint32_t if_false) {
  const uint32_t mask = 0u - uint32_t(cond);
  return (if_true & mask) | (if_false & ~mask);
}
}  // namespace half_detail

inline float to_float(float v) { return v; }
inline float to_float(half_t h) {
  using namespace half_detail;
  const uint32_t magnitude = h.bits & 0x7fffu, sign = uint32_t(h.bits & 0x8000u) << 16;
  const uint32_t normal = (magnitude << 13) + ((127u - 15u) << 23);             // rebias the exponent
  const uint32_t special = (magnitude << 13) | 0x7f800000u;                     // inf, NaN
  const uint32_t subnormal = float_bits(float(int32_t(magnitude)) * 0x1p-24f);  // mantissa * 2^-24, exact
  return bits_float(pick(magnitude >= 0x7c00u, special, pick(magnitude >= 0x0400u, normal, subnormal)) | sign);
}

template <typename T>
T from_float(float v);
template <>
inline float from_float<float>(float v) { return v; }
// Round to nearest even: adding and subtracting 2^13 half-steps above |v|'s binade (half-steps of
// 2^-24 below 2^-14, where halves are subnormal) leaves |v| on the half grid, rounded by the FPU.
// Comparisons are on bit patterns, which order like the values for |v| (NaN above everything).
template <>
inline half_t from_float<half_t>(float v) {
  using namespace half_detail;
  constexpr uint32_t kMinNormal = 113u << 23;  // 2^-14, the smallest normal half
  const uint32_t sign = (float_bits(v) >> 16) & 0x8000u;
  const float a = std::fabs(v);
  const uint32_t binade = std::max(float_bits(a) & 0x7f800000u, kMinNormal);
  const float magic = bits_float(binade + (13u << 23));
  const uint32_t r = float_bits((a + magic) - magic);
  const uint32_t normal = (r >> 13) - ((127u - 15u) << 10);
  const uint32_t subnormal = uint32_t(int32_t(bits_float(std::min(r, kMinNormal)) * 0x1p24f));  // min: in range
  const uint32_t finite = pick(r >= kMinNormal, normal, subnormal);
  const uint32_t special = pick(float_bits(a) > 0x7f800000u, 0x7e00u, 0x7c00u);  // NaN, inf
  return half_t{uint16_t(pick(float_bits(a) < 0x477ff000u, finite, special) | sign)};  // from 65520 up: inf
}
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
