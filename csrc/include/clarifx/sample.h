// Sampling an image at a fractional position under a border rule: the per-pixel math of warp and
// occlusion, shared verbatim by the CPU and CUDA kernels.
#pragma once

#include <cmath>
#include <cstdint>

#include "clarifx/tensor.h"

namespace clarifx {

enum class Interp { bilinear, bicubic };
enum class Border { clamp, zero, reflect };

// Index that tap i (any integer) reads along an axis of n pixels; -1 means it reads zero.
CLARIFX_HD int64_t border_index(int64_t i, int64_t n, Border b) {
  if (i >= 0 && i < n) return i;
  if (b == Border::zero) return -1;
  if (b == Border::clamp || n == 1) return i < 0 ? 0 : n - 1;
  const int64_t period = 2 * (n - 1);  // reflect about the edge pixels: -1 -> 1, n -> n-2
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

// Moves a sample coordinate where its taps stay small integers without changing what it reads:
// clamp/zero saturate just past the edge (every tap there reads the edge value, or zero);
// reflect folds the coordinate into [0, n-1].
CLARIFX_HD float border_coord(float x, int64_t n, Border b) {
  if (b == Border::reflect) {
    if (n == 1) return 0.f;
    const float period = 2.f * float(n - 1);
    x = fmodf(fabsf(x), period);
    return x > float(n - 1) ? period - x : x;
  }
  return fminf(fmaxf(x, -2.f), float(n) + 1.f);
}

// Keys cubic convolution weights, a = -0.5, for taps at offsets -1, 0, 1, 2 from floor(x), t = x - floor(x).
CLARIFX_HD void cubic_weights(float t, float w[4]) {
  const float a = -0.5f;
  const float t1 = t + 1.f, t2 = 1.f - t, t3 = 2.f - t;
  w[0] = ((a * t1 - 5.f * a) * t1 + 8.f * a) * t1 - 4.f * a;
  w[1] = ((a + 2.f) * t - (a + 3.f)) * t * t + 1.f;
  w[2] = ((a + 2.f) * t2 - (a + 3.f)) * t2 * t2 + 1.f;
  w[3] = ((a * t3 - 5.f * a) * t3 + 8.f * a) * t3 - 4.f * a;
}

// Where and how much each tap of one sample reads; built once per pixel, applied to every channel.
struct SamplePlan {
  int taps;  // 2 (bilinear) or 4 (bicubic) per axis
  int64_t ix[4], iy[4];  // -1 reads zero
  float wx[4], wy[4];
};

CLARIFX_HD SamplePlan plan_sample(float x, float y, int64_t w, int64_t h, Interp interp, Border border) {
  SamplePlan p;
  x = border_coord(x, w, border);
  y = border_coord(y, h, border);
  const float fx = floorf(x), fy = floorf(y);
  const float tx = x - fx, ty = y - fy;
  const int64_t x0 = int64_t(fx), y0 = int64_t(fy);
  if (interp == Interp::bilinear) {
    p.taps = 2;
    p.wx[0] = 1.f - tx, p.wx[1] = tx;
    p.wy[0] = 1.f - ty, p.wy[1] = ty;
    for (int k = 0; k < 2; ++k) {
      p.ix[k] = border_index(x0 + k, w, border);
      p.iy[k] = border_index(y0 + k, h, border);
    }
  } else {
    p.taps = 4;
    cubic_weights(tx, p.wx);
    cubic_weights(ty, p.wy);
    for (int k = 0; k < 4; ++k) {
      p.ix[k] = border_index(x0 - 1 + k, w, border);
      p.iy[k] = border_index(y0 - 1 + k, h, border);
    }
  }
  return p;
}

// The loops run to the constant 4 (not to p.taps) so that CUDA unrolls them and keeps the plan in
// registers; a loop bound read from the plan puts the whole plan in local memory.
template <typename T>
CLARIFX_HD float apply_sample(const SamplePlan& p, const View4<T>& im, int64_t n, int64_t c) {
  float acc = 0.f;
  for (int j = 0; j < 4; ++j) {
    if (j >= p.taps || p.iy[j] < 0) continue;
    float row = 0.f;
    for (int i = 0; i < 4; ++i)
      if (i < p.taps && p.ix[i] >= 0) row += p.wx[i] * im.get(n, c, p.iy[j], p.ix[i]);
    acc += p.wy[j] * row;
  }
  return acc;
}

CLARIFX_HD bool inside(float x, float y, int64_t w, int64_t h) {
  return x >= 0.f && x <= float(w - 1) && y >= 0.f && y <= float(h - 1);
}

// Forward-backward consistency at one pixel: f = forward flow there, b = backward flow sampled at p + f.
CLARIFX_HD bool inconsistent(float fx, float fy, float bx, float by, float alpha1, float alpha2) {
  const float sx = fx + bx, sy = fy + by;
  return sx * sx + sy * sy > alpha1 * (fx * fx + fy * fy + bx * bx + by * by) + alpha2;
}

// False for NaN and +-inf; plain arithmetic, so host and device agree without libm.
CLARIFX_HD bool is_finite(float v) { return fabsf(v) <= 3.40282347e38f; }

// One output pixel of the warp, all channels and the mask. Where the sample point is not finite the
// pixel reads 0 with mask 0, and the result is false.
template <typename T, typename F>
CLARIFX_HD bool warp_pixel(const View4<T>& im, const View4<F>& flow, const View4<T>& out, const View4<T>& mask,
                           int64_t n, int64_t y, int64_t x, Interp interp, Border border) {
  const float sx = float(x) + flow.get(n, 0, y, x);
  const float sy = float(y) + flow.get(n, 1, y, x);
  const bool finite = is_finite(sx) && is_finite(sy);
  if (finite) {
    const SamplePlan p = plan_sample(sx, sy, im.w, im.h, interp, border);
    for (int64_t c = 0; c < im.c; ++c) out.set(n, c, y, x, apply_sample(p, im, n, c));
  } else {
    for (int64_t c = 0; c < im.c; ++c) out.set(n, c, y, x, 0.f);
  }
  if (mask.p) mask.set(n, 0, y, x, finite && inside(sx, sy, im.w, im.h) ? 1.f : 0.f);
  return finite;
}

// One pixel of the occlusion mask (1 occluded, 0 visible). Where either flow is not finite the pixel
// counts as occluded and the result is false.
template <typename F>
CLARIFX_HD bool occlusion_pixel(const View4<F>& fw, const View4<F>& bw, const View4<F>& out, int64_t n, int64_t y,
                                int64_t x, float alpha1, float alpha2) {
  const float fx = fw.get(n, 0, y, x), fy = fw.get(n, 1, y, x);
  if (!is_finite(fx) || !is_finite(fy) || !is_finite(bw.get(n, 0, y, x)) || !is_finite(bw.get(n, 1, y, x))) {
    out.set(n, 0, y, x, 1.f);
    return false;
  }
  const float px = float(x) + fx, py = float(y) + fy;
  bool occluded = !inside(px, py, fw.w, fw.h);
  if (!occluded) {
    const SamplePlan p = plan_sample(px, py, fw.w, fw.h, Interp::bilinear, Border::clamp);
    occluded = inconsistent(fx, fy, apply_sample(p, bw, n, 0), apply_sample(p, bw, n, 1), alpha1, alpha2);
  }
  out.set(n, 0, y, x, occluded ? 1.f : 0.f);
  return true;
}

}  // namespace clarifx
