// Separable resampling weights, computed once on the host and shared by every backend.
// Pixel centres sit at i + 0.5; when reducing, the filter is stretched by in/out so the result is
// antialiased; taps that fall outside the image are dropped and the rest renormalised to sum to 1.
// This is the convention of PIL and of torch.nn.functional.interpolate(..., antialias=True).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace clarifx {

enum class Filter { box, bilinear, bicubic, lanczos3 };

namespace filters {
constexpr double kPi = 3.14159265358979323846;
inline double box(double x) { return (x >= -0.5 && x < 0.5) ? 1.0 : 0.0; }
inline double triangle(double x) { x = std::fabs(x); return x < 1.0 ? 1.0 - x : 0.0; }
// Keys cubic with a = -0.5 (Catmull-Rom): interpolating and third-order accurate.
inline double cubic(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
  return 0.0;
}
inline double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= kPi;
  return std::sin(x) / x;
}
inline double lanczos3(double x) { return std::fabs(x) < 3.0 ? sinc(x) * sinc(x / 3.0) : 0.0; }
}  // namespace filters

struct FilterShape {
  double support;          // half-width in source pixels at scale 1
  double (*eval)(double);  // weight at distance x (in source pixels at scale 1)
};

inline FilterShape filter_shape(Filter f) {
  switch (f) {
    case Filter::box: return {0.5, filters::box};  // nearest when enlarging, area average when reducing
    case Filter::bilinear: return {1.0, filters::triangle};
    case Filter::bicubic: return {2.0, filters::cubic};
    case Filter::lanczos3: return {3.0, filters::lanczos3};
  }
  return {1.0, filters::triangle};
}

// Every output sample reads exactly `taps` consecutive inputs starting at start[i] (always inside
// [0, in_size)); unused taps carry weight 0. Uniform tap counts keep the inner loops branch-free.
struct Contributions {
  int64_t out_size = 0;
  int64_t taps = 0;
  std::vector<int64_t> start;  // out_size
  std::vector<float> weight;   // out_size * taps
};

inline Contributions contributions(int64_t in_size, int64_t out_size, Filter filter) {
  const FilterShape shape = filter_shape(filter);
  const double scale = double(in_size) / double(out_size);
  const double stretch = std::max(scale, 1.0);
  const double support = shape.support * stretch;

  std::vector<int64_t> lo(out_size), hi(out_size);
  std::vector<std::vector<double>> w(out_size);
  int64_t taps = 1;
  for (int64_t i = 0; i < out_size; ++i) {
    const double center = (double(i) + 0.5) * scale;
    lo[i] = std::max<int64_t>(int64_t(std::floor(center - support + 0.5)), 0);
    hi[i] = std::min<int64_t>(int64_t(std::floor(center + support + 0.5)), in_size);
    if (hi[i] <= lo[i]) {  // cannot happen for sane sizes; keep one tap so the sample is defined
      lo[i] = std::min<int64_t>(int64_t(center), in_size - 1);
      hi[i] = lo[i] + 1;
    }
    double total = 0.0;
    for (int64_t j = lo[i]; j < hi[i]; ++j) {
      const double v = shape.eval((double(j) - center + 0.5) / stretch);
      w[i].push_back(v);
      total += v;
    }
    for (double& v : w[i]) v = total != 0.0 ? v / total : 0.0;
    taps = std::max(taps, hi[i] - lo[i]);
  }

  Contributions c;
  c.out_size = out_size;
  c.taps = taps;
  c.start.resize(out_size);
  c.weight.assign(out_size * taps, 0.f);
  for (int64_t i = 0; i < out_size; ++i) {
    const int64_t s = std::min(lo[i], in_size - taps);  // taps <= in_size, so s >= 0
    c.start[i] = s;
    for (int64_t j = lo[i]; j < hi[i]; ++j) c.weight[i * taps + (j - s)] = float(w[i][j - lo[i]]);
  }
  return c;
}

}  // namespace clarifx
