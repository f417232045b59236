// Backward warp and forward-backward occlusion on the CPU: one OpenMP loop over rows, the sampling
// math of sample.h.
//
// The warp has two paths with the same results. `warp_generic` is plan_sample + apply_sample per pixel,
// as the CUDA kernel does; it serves images whose offsets do not fit in 32 bits. The fast path is
// specialised at compile time on interpolation and border and works on blocks of pixels: first the taps
// and weights of each axis for the whole block (plain loops over arrays, which the compiler vectorises
// for float32 flow with clamp or zero borders), then each pixel's weighted sum, channel by channel.
// It computes what apply_sample computes in the same order, except that a sum starts from its first
// term instead of from 0, which can only change the sign of a zero result.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "clarifx/ops.h"

namespace clarifx::cpu {
namespace {

constexpr int taps_of(Interp interp) { return interp == Interp::bilinear ? 2 : 4; }

// Pixels per block: both axes' taps for a block (under 10 KiB for bicubic) stay in L1.
constexpr int64_t kBlock = 128;

// border_coord for finite x, written so that it vectorises: no libm calls (fminf/fmaxf are calls on
// baseline x86-64) and no nested conditions. The selects equal fminf/fmaxf on finite values, and
// fmodf(x, period) is x itself below the period.
template <Border B>
inline float border_coord_finite(float x, int64_t n) {
  if constexpr (B == Border::reflect) {
    if (n == 1) return 0.f;
    const float period = 2.f * float(n - 1);
    x = std::fabs(x);
    if (x >= period) x = std::fmod(x, period);
    return x > float(n - 1) ? period - x : x;
  } else {
    const float hi = float(n) + 1.f;
    x = x < -2.f ? -2.f : x;
    return x > hi ? hi : x;
  }
}

// border_index in 32 bits, for the taps of a coordinate from border_coord_finite (within [-3, n + 3]).
// Clamp and zero are written out so that they vectorise; reflect keeps sample.h's modulo.
template <Border B>
inline int32_t tap_index(int32_t i, int32_t n) {
  if constexpr (B == Border::clamp) {
    i = i < 0 ? 0 : i;
    return i > n - 1 ? n - 1 : i;
  } else if constexpr (B == Border::zero) {
    return i >= 0 && i < n ? i : -1;
  } else {
    return int32_t(border_index(i, n, B));
  }
}

// The taps of a block of samples along one axis of an image.
template <Interp I>
struct AxisBlock {
  static constexpr int K = taps_of(I);
  int32_t offset[K][kBlock];  // tap index times the axis stride; 0 where the tap reads zero
  bool reads[K][kBlock];      // false where the tap reads zero (Border::zero only)
  float weight[K][kBlock];
  bool finite[kBlock];
  bool inside[kBlock];  // 0 <= coordinate <= n - 1

  // Sample i sits at float(first + i * step) + flow[i * flow_stride] on an axis of n pixels.
  template <Border B, typename F>
  void fill(const F* flow, int64_t flow_stride, int64_t first, int64_t step, int64_t n, int64_t stride,
            int64_t len) {
    const int32_t n32 = int32_t(n), stride32 = int32_t(stride);
    const float last = float(n - 1);
    for (int64_t i = 0; i < len; ++i) {
      const float c = float(int32_t(first + i * step)) + to_float(flow[i * flow_stride]);
      const bool ok = std::isfinite(c);
      finite[i] = ok;
      inside[i] = (c >= 0.f) & (c <= last);
      const float x = border_coord_finite<B>(ok ? c : 0.f, n);  // a non-finite sample is zeroed later
      const int32_t truncated = int32_t(x);
      const int32_t floor_x = truncated - (float(truncated) > x);  // floorf, exact in this range
      const float t = x - float(floor_x);
      if constexpr (I == Interp::bilinear) {
        weight[0][i] = 1.f - t;
        weight[1][i] = t;
      } else {
        float w[4];
        cubic_weights(t, w);
        for (int k = 0; k < 4; ++k) weight[k][i] = w[k];
      }
      for (int k = 0; k < K; ++k) {
        const int32_t index = tap_index<B>(floor_x - (K == 4 ? 1 : 0) + k, n32);
        if constexpr (B == Border::zero) reads[k][i] = index >= 0;
        offset[k][i] = (index >= 0 ? index : 0) * stride32;
      }
    }
  }
};

template <Interp I>
struct Taps {
  AxisBlock<I> x, y;
};

// Sample i of the block from one channel plane: apply_sample's sum, in its order. A tap that reads
// zero still loads (from offset 0) and is then dropped, which keeps the loop free of branches.
template <Interp I, Border B, typename T>
inline float sample_at(const T* plane, const Taps<I>& taps, int64_t i) {
  constexpr int K = taps_of(I);
  const AxisBlock<I>&ax = taps.x, &ay = taps.y;
  float acc = 0.f;
#pragma GCC unroll 4
  for (int j = 0; j < K; ++j) {
    const T* line = plane + ay.offset[j][i];
    float row = 0.f;
#pragma GCC unroll 4
    for (int k = 0; k < K; ++k) {
      float term = ax.weight[k][i] * to_float(line[ax.offset[k][i]]);
      if constexpr (B == Border::zero) term = ax.reads[k][i] ? term : 0.f;
      row = k == 0 ? term : row + term;
    }
    float term = ay.weight[j][i] * row;
    if constexpr (B == Border::zero) term = ay.reads[j][i] ? term : 0.f;
    acc = j == 0 ? term : acc + term;
  }
  return acc;
}

// One output row; false if its flow holds a non-finite value (those pixels read 0, mask 0).
// kChannels = 3 fixes the channel count for RGB: the compiler then unrolls the channel loop, where
// with a run-time count it vectorises it (two plus one), 1.3 to 1.9 times slower here.
template <int kChannels, Interp I, Border B, typename T, typename F>
bool warp_row(const View4<T>& im, const View4<F>& flow, const View4<T>& out, const View4<T>& mask, int64_t n,
              int64_t y, Taps<I>& taps) {
  const int64_t C = kChannels ? kChannels : im.c;
  bool row_finite = true;
  for (int64_t x0 = 0; x0 < im.w; x0 += kBlock) {
    const int64_t len = std::min(kBlock, im.w - x0);
    taps.x.template fill<B>(flow.ptr(n, 0, y, x0), flow.sw, x0, 1, im.w, im.sw, len);
    taps.y.template fill<B>(flow.ptr(n, 1, y, x0), flow.sw, y, 0, im.h, im.sh, len);
    const T* src = im.ptr(n, 0, 0, 0);
    T* dst = out.ptr(n, 0, y, x0);
    for (int64_t i = 0; i < len; ++i) {
#pragma GCC unroll 4
      for (int64_t c = 0; c < C; ++c)
        dst[i * out.sw + c * out.sc] = from_float<T>(sample_at<I, B>(src + c * im.sc, taps, i));
    }
    if (mask.p) {
      T* valid = mask.ptr(n, 0, y, x0);
      for (int64_t i = 0; i < len; ++i)
        valid[i * mask.sw] = from_float<T>(taps.x.inside[i] && taps.y.inside[i] ? 1.f : 0.f);
    }
    for (int64_t i = 0; i < len; ++i) {
      if (taps.x.finite[i] && taps.y.finite[i]) continue;
      row_finite = false;
      for (int64_t c = 0; c < im.c; ++c) out.set(n, c, y, x0 + i, 0.f);
    }
  }
  return row_finite;
}

template <Interp I, Border B, typename T, typename F>
bool warp_blocks(const WarpArgs& a) {
  const View4<T> im = view<T>(a.image), out = view<T>(a.out);
  const View4<F> flow = view<F>(a.flow);
  const View4<T> mask = a.mask.defined() ? view<T>(a.mask) : View4<T>{};
  int bad = 0;
#pragma omp parallel reduction(| : bad)
  {
    Taps<I> taps;
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < im.n; ++n)
      for (int64_t y = 0; y < im.h; ++y)
        if (!(im.c == 3 ? warp_row<3, I, B>(im, flow, out, mask, n, y, taps)
                        : warp_row<0, I, B>(im, flow, out, mask, n, y, taps)))
          bad = 1;
  }
  return !bad;
}

// The definition, pixel by pixel: for images whose offsets do not fit the fast path's 32 bits.
template <typename T, typename F>
bool warp_generic(const WarpArgs& a) {
  const View4<T> im = view<T>(a.image), out = view<T>(a.out);
  const View4<F> flow = view<F>(a.flow);
  const View4<T> mask = a.mask.defined() ? view<T>(a.mask) : View4<T>{};
  int bad = 0;
#pragma omp parallel for collapse(2) schedule(static) reduction(| : bad)
  for (int64_t n = 0; n < im.n; ++n)
    for (int64_t y = 0; y < im.h; ++y)
      for (int64_t x = 0; x < im.w; ++x) bad |= !warp_pixel(im, flow, out, mask, n, y, x, a.interp, a.border);
  return !bad;
}

// Whether the fast path's 32-bit tap indices and offsets within a plane hold for this image, with
// room for taps a few pixels past the edges.
bool fits_32_bits(const Tensor4& image) {
  constexpr int64_t limit = std::numeric_limits<int32_t>::max() / 2;
  const int64_t h = image.shape[2], w = image.shape[3];
  return h < limit && w < limit && (h - 1) * image.stride[2] + (w - 1) * image.stride[3] < limit;
}

template <Interp I, typename T, typename F>
bool warp_border(const WarpArgs& a) {
  switch (a.border) {
    case Border::clamp: return warp_blocks<I, Border::clamp, T, F>(a);
    case Border::zero: return warp_blocks<I, Border::zero, T, F>(a);
    case Border::reflect: return warp_blocks<I, Border::reflect, T, F>(a);
  }
  return false;
}

template <typename F>
bool occlusion_typed(const OcclusionArgs& a) {
  const View4<F> fw = view<F>(a.forward), bw = view<F>(a.backward), out = view<F>(a.out);
  int bad = 0;
#pragma omp parallel for collapse(2) schedule(static) reduction(| : bad)
  for (int64_t n = 0; n < fw.n; ++n)
    for (int64_t y = 0; y < fw.h; ++y)
      for (int64_t x = 0; x < fw.w; ++x) bad |= !occlusion_pixel(fw, bw, out, n, y, x, a.alpha1, a.alpha2);
  return !bad;
}

}  // namespace

bool warp(const WarpArgs& a) {
  return dispatch_dtype(a.image.dtype, [&](auto t) {
    using T = decltype(t);
    return dispatch_dtype(a.flow.dtype, [&](auto f) {
      using F = decltype(f);
      if (!fits_32_bits(a.image)) return warp_generic<T, F>(a);
      return a.interp == Interp::bilinear ? warp_border<Interp::bilinear, T, F>(a)
                                          : warp_border<Interp::bicubic, T, F>(a);
    });
  });
}

bool occlusion(const OcclusionArgs& a) {
  return dispatch_dtype(a.forward.dtype, [&](auto f) { return occlusion_typed<decltype(f)>(a); });
}

}  // namespace clarifx::cpu
