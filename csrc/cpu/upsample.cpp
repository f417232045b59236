// Fused super-resolution tail on the CPU: out = pixel_shuffle(features) + resample(base), clamped,
// written in one pass. Per output row: blend the base rows it needs at the low-resolution width,
// filter that row horizontally into a thread-local buffer, then add the shuffled features and clamp
// straight into out.
#include <limits>
#include <vector>

#include "clarifx/ops.h"
#include "separable.h"

namespace clarifx::cpu {
namespace {

// out[s*x + p] = clamp(upsampled[p][x] + planes[p][x]): the upsampled row is phase-major (HorizontalPass)
// and the features of one output row come from s planes, one per column phase p.
template <int S, typename T, bool Contiguous>
void add_shuffled(const float* upsampled, const T* const* planes, int64_t feature_stride, T* dst,
                  int64_t out_stride, int64_t width, float lo, float hi) {
  const int64_t fs = Contiguous ? 1 : feature_stride, os = Contiguous ? 1 : out_stride;
  for (int64_t x = 0; x < width; ++x) {
    for (int p = 0; p < S; ++p) {
      float v = upsampled[p * width + x] + to_float(planes[p][x * fs]);
      v = v < lo ? lo : v;  // comparisons, not fmin/fmax, so NaN passes through as in torch
      v = v > hi ? hi : v;
      dst[(x * S + p) * os] = from_float<T>(v);
    }
  }
}

template <typename T, int S>
void fused_upsample_typed(const FusedUpsampleArgs& a) {
  const View4<T> features = view<T>(a.features), base = view<T>(a.base), out = view<T>(a.out);
  const HorizontalPass hp(base.w, out.w, a.filter);  // out.w = S * base.w: phase-major rows
  const Contributions cy = contributions(base.h, out.h, a.filter);
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const float lo = a.clamp ? a.lo : -kInf, hi = a.clamp ? a.hi : kInf;
  const bool contiguous = features.sw == 1 && out.sw == 1;
  const RowOrder order(out.n, out.c, out.h, a.out.stride);
#pragma omp parallel
  {
    std::vector<float> blended(base.w), upsampled(out.w);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < order.count(); ++r) {
      int64_t n, c0, y;
      order.split(r, n, c0, y);
      for (int64_t c = c0; c < c0 + order.group; ++c) {
        blend_rows_for(base, n, c, cy, y, blended.data());
        hp.run_phases(blended.data(), upsampled.data());
        const T* planes[S];
        for (int p = 0; p < S; ++p) planes[p] = features.ptr(n, c * S * S + (y % S) * S + p, y / S, 0);
        T* dst = out.ptr(n, c, y, 0);
        if (contiguous)
          add_shuffled<S, T, true>(upsampled.data(), planes, 1, dst, 1, base.w, lo, hi);
        else
          add_shuffled<S, T, false>(upsampled.data(), planes, features.sw, dst, out.sw, base.w, lo, hi);
      }
    }
  }
}

}  // namespace

void fused_upsample(const FusedUpsampleArgs& a) {
  dispatch_dtype(a.base.dtype, [&](auto t) {
    using T = decltype(t);
    switch (a.scale) {
      case 2: return fused_upsample_typed<T, 2>(a);
      case 3: return fused_upsample_typed<T, 3>(a);
      case 4: return fused_upsample_typed<T, 4>(a);
    }
    fail("fused_upsample: scale must be 2, 3 or 4");
  });
}

}  // namespace clarifx::cpu
