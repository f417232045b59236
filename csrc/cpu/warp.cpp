// Backward warp and forward-backward occlusion on the CPU: one OpenMP loop over rows, the sampling
// math shared with CUDA (sample.h), a sample plan per pixel reused across channels.
#include <cmath>

#include "clarifx/ops.h"

namespace clarifx::cpu {
namespace {

template <typename T, typename F>
bool warp_typed(const WarpArgs& a) {
  const View4<T> im = view<T>(a.image), out = view<T>(a.out);
  const View4<F> flow = view<F>(a.flow);
  const bool has_mask = a.mask.defined();
  const View4<T> mask = has_mask ? view<T>(a.mask) : View4<T>{};
  const int64_t N = im.n, C = im.c, H = im.h, W = im.w;
  int bad = 0;
#pragma omp parallel for collapse(2) schedule(static) reduction(| : bad)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t y = 0; y < H; ++y) {
      for (int64_t x = 0; x < W; ++x) {
        const float sx = float(x) + flow.get(n, 0, y, x);
        const float sy = float(y) + flow.get(n, 1, y, x);
        if (!std::isfinite(sx) || !std::isfinite(sy)) {
          bad = 1;
          for (int64_t c = 0; c < C; ++c) out.set(n, c, y, x, 0.f);
          if (has_mask) mask.set(n, 0, y, x, 0.f);
          continue;
        }
        const SamplePlan p = plan_sample(sx, sy, W, H, a.interp, a.border);
        for (int64_t c = 0; c < C; ++c) out.set(n, c, y, x, apply_sample(p, im, n, c));
        if (has_mask) mask.set(n, 0, y, x, inside(sx, sy, W, H) ? 1.f : 0.f);
      }
    }
  }
  return !bad;
}

template <typename F>
bool occlusion_typed(const OcclusionArgs& a) {
  const View4<F> fw = view<F>(a.forward), bw = view<F>(a.backward), out = view<F>(a.out);
  const int64_t N = fw.n, H = fw.h, W = fw.w;
  int bad = 0;
#pragma omp parallel for collapse(2) schedule(static) reduction(| : bad)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t y = 0; y < H; ++y) {
      for (int64_t x = 0; x < W; ++x) {
        const float fx = fw.get(n, 0, y, x), fy = fw.get(n, 1, y, x);
        if (!std::isfinite(fx) || !std::isfinite(fy) || !std::isfinite(bw.get(n, 0, y, x)) ||
            !std::isfinite(bw.get(n, 1, y, x))) {
          bad = 1;
          out.set(n, 0, y, x, 1.f);
          continue;
        }
        const float px = float(x) + fx, py = float(y) + fy;
        bool occluded = !inside(px, py, W, H);
        if (!occluded) {
          const SamplePlan p = plan_sample(px, py, W, H, Interp::bilinear, Border::clamp);
          occluded = inconsistent(fx, fy, apply_sample(p, bw, n, 0), apply_sample(p, bw, n, 1), a.alpha1, a.alpha2);
        }
        out.set(n, 0, y, x, occluded ? 1.f : 0.f);
      }
    }
  }
  return !bad;
}

}  // namespace

bool warp(const WarpArgs& a) {
  return dispatch_dtype(a.image.dtype, [&](auto t) {
    using T = decltype(t);
    return dispatch_dtype(a.flow.dtype, [&](auto f) { return warp_typed<T, decltype(f)>(a); });
  });
}

bool occlusion(const OcclusionArgs& a) {
  return dispatch_dtype(a.forward.dtype, [&](auto f) { return occlusion_typed<decltype(f)>(a); });
}

}  // namespace clarifx::cpu
