// Film grain on the CPU, and the host-side pieces every backend shares (templates, block offsets).
// The pixel pass builds each output row's grain a block segment at a time (a copy from the template)
// and patches the 2-pixel overlaps afterwards, so the per-pixel work is one curve lookup and one
// multiply-add; OpenMP splits the rows.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "clarifx/ops.h"

namespace clarifx {
namespace {

constexpr double kPi = 3.14159265358979323846;

// The AR filter runs on a zero-padded copy of the field, so neighbours outside it read 0 without tests.
constexpr int kPad = kGrainMaxLag;
constexpr int kPaddedCols = kPad + kGrainFieldCols + kPad;
constexpr int kPaddedRows = kPad + kGrainFieldRows;

double uniform(uint64_t bits) { return (double(bits >> 11) + 0.5) * 0x1p-53; }

// White Gaussian noise of every channel's field, zero-padded as above (channels x kPaddedRows x kPaddedCols).
// The draws are independent, so they are shared among threads.
std::vector<double> noise_fields(int channels, uint64_t seed, int64_t frame) {
  std::vector<double> fields(size_t(channels) * kPaddedRows * kPaddedCols, 0.0);
  constexpr int64_t kCells = int64_t(kGrainFieldRows) * kGrainFieldCols;
#pragma omp parallel for schedule(static)
  for (int64_t ci = 0; ci < channels * kCells; ++ci) {
    const int64_t c = ci / kCells, i = ci % kCells, y = i / kGrainFieldCols, x = i % kGrainFieldCols;
    const uint64_t key = grain_key(seed, frame, 1 + uint64_t(c));
    const double u1 = uniform(mix64(key + 2 * uint64_t(i))), u2 = uniform(mix64(key + 2 * uint64_t(i) + 1));
    fields[size_t(c * kPaddedRows + y + kPad) * kPaddedCols + x + kPad] =
        std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * kPi * u2);
  }
  return fields;
}

// Runs channel c's AR filter in place over its padded field `g`, adding ar_luma[c] times `luma_field`
// (channel 0's filtered field) unless that is null.
void ar_filter(const GrainSpec& spec, int c, double* g, const double* luma_field) {
  const int lag = spec.lag;
  const int taps = 2 * lag * (lag + 1);
  std::vector<int> tap_offset;
  for (int dy = -lag; dy <= 0; ++dy)
    for (int dx = -lag; dx <= lag && (dy < 0 || dx < 0); ++dx) tap_offset.push_back(dy * kPaddedCols + dx);
  std::vector<double> coeff(taps);
  for (int k = 0; k < taps; ++k) coeff[k] = spec.ar_coeffs[size_t(c) * taps + k];
  const double luma = luma_field ? double(spec.ar_luma[c]) : 0.0;

  for (int y = 0; y < kGrainFieldRows; ++y) {
    for (int x = 0; x < kGrainFieldCols; ++x) {
      const size_t at = size_t(y + kPad) * kPaddedCols + x + kPad;
      double v = g[at];
      for (int k = 0; k < taps; ++k) v += coeff[k] * g[at + tap_offset[k]];
      if (luma_field) v += luma * luma_field[at];
      g[at] = v;
    }
  }
}

const double* crop_of(const double* padded_field) {
  return padded_field + size_t(kPad + kGrainWarmRows) * kPaddedCols + kPad + kGrainWarmCols;
}

double crop_rms(const double* padded_field) {
  const double* crop = crop_of(padded_field);
  double sum_sq = 0.0;
  for (int y = 0; y < kGrainSize; ++y)
    for (int x = 0; x < kGrainSize; ++x) sum_sq += crop[y * kPaddedCols + x] * crop[y * kPaddedCols + x];
  return std::sqrt(sum_sq / (kGrainSize * kGrainSize));
}

// Runs every channel's filter over one fixed noise field (the probe), so that a filter is accepted or
// rejected the same way for every seed and frame.
void check_stable(const GrainSpec& spec) {
  static const std::vector<double> probe = noise_fields(1, kGrainProbeSeed, kGrainProbeFrame);
  for (int c = 0; c < spec.channels; ++c) {
    std::vector<double> g = probe;
    ar_filter(spec, c, g.data(), nullptr);
    if (!(crop_rms(g.data()) <= kGrainMaxGain)) fail("ar_coeffs make the grain filter unstable");
  }
}

// H(by, ., dy) over a whole image row: each block's patch row copied in, then the 2 overlap pixels
// at every vertical seam blended with the left block's overhang.
void blocks_row(const float* tmpl, const int32_t* row_offsets, int64_t blocks_x, int dy, int64_t width, float* dst) {
  const float* left = nullptr;
  for (int64_t bx = 0; bx < blocks_x; ++bx) {
    const float* src = tmpl + (row_offsets[2 * bx] + dy) * kGrainSize + row_offsets[2 * bx + 1];
    const int64_t x0 = bx * kGrainBlock;
    const int64_t count = std::min<int64_t>(kGrainBlock, width - x0);
    std::memcpy(dst + x0, src, size_t(count) * sizeof(float));
    if (left)
      for (int i = 0; i < std::min<int64_t>(kGrainOverlap, count); ++i)
        dst[x0 + i] = grain_blend(left[kGrainBlock + i], src[i], i);
    left = src;
  }
}

// G(., y) of one channel into `row`; `above` is scratch of the same width.
void grain_row(const float* tmpl, const int32_t* offsets, int64_t blocks_x, int64_t y, int64_t width, float* row,
               float* above) {
  const int64_t by = y / kGrainBlock;
  const int ly = int(y % kGrainBlock);
  blocks_row(tmpl, offsets + 2 * by * blocks_x, blocks_x, ly, width, row);
  if (ly >= kGrainOverlap || by == 0) return;
  blocks_row(tmpl, offsets + 2 * (by - 1) * blocks_x, blocks_x, ly + kGrainBlock, width, above);
  for (int64_t x = 0; x < width; ++x) row[x] = grain_blend(above[x], row[x], ly);
}

template <typename T>
void grain_typed(const GrainArgs& a) {
  const View4<T> im = view<T>(a.image), out = view<T>(a.out);
  const GrainSpec& spec = *a.spec;
  const int64_t N = im.n, C = im.c, H = im.h, W = im.w;
  const int64_t blocks_y = (H + kGrainBlock - 1) / kGrainBlock, blocks_x = (W + kGrainBlock - 1) / kGrainBlock;
  const bool in_place = a.out.data == a.image.data;  // the bindings allow only exact aliasing

  std::vector<std::vector<float>> templates(N);
  std::vector<std::vector<int32_t>> offsets(N);
  for (int64_t n = 0; n < N; ++n) {
    templates[n] = grain_template(spec, a.seed, a.frame + n);
    offsets[n] = grain_offsets(a.seed, a.frame + n, blocks_y, blocks_x);
  }

#pragma omp parallel
  {
    std::vector<float> row(W), above(W);
#pragma omp for collapse(2) schedule(dynamic, 16)
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t y = 0; y < H; ++y) {
        for (int64_t c = 0; c < C; ++c) {
          const T* src = im.ptr(n, c, y, 0);
          T* dst = out.ptr(n, c, y, 0);
          if (c >= spec.channels) {
            if (!in_place)
              for (int64_t x = 0; x < W; ++x) dst[x * out.sw] = src[x * im.sw];
            continue;
          }
          grain_row(templates[n].data() + c * kGrainSize * kGrainSize, offsets[n].data(), blocks_x, y, W, row.data(),
                    above.data());
          const float* lut = spec.lut.data() + c * kGrainLut;
          for (int64_t x = 0; x < W; ++x) {
            const float v = to_float(src[x * im.sw]);
            dst[x * out.sw] = from_float<T>(grain_apply(v, grain_strength(lut, v), row[x], a.clip, a.lo, a.hi));
          }
        }
      }
    }
  }
}

}  // namespace

std::vector<float> grain_template(const GrainSpec& spec, uint64_t seed, int64_t frame) {
  check_stable(spec);
  std::vector<double> fields = noise_fields(spec.channels, seed, frame);
  std::vector<float> out(size_t(spec.channels) * kGrainSize * kGrainSize);
  for (int c = 0; c < spec.channels; ++c) {
    double* g = fields.data() + size_t(c) * kPaddedRows * kPaddedCols;
    ar_filter(spec, c, g, c > 0 ? fields.data() : nullptr);
    const double rms = crop_rms(g);
    const double scale = rms > 0.0 ? 1.0 / rms : 0.0;
    const double* crop = crop_of(g);
    float* t = out.data() + size_t(c) * kGrainSize * kGrainSize;
    for (int y = 0; y < kGrainSize; ++y)
      for (int x = 0; x < kGrainSize; ++x) t[y * kGrainSize + x] = float(crop[y * kPaddedCols + x] * scale);
  }
  return out;
}

std::vector<int32_t> grain_offsets(uint64_t seed, int64_t frame, int64_t blocks_y, int64_t blocks_x) {
  std::vector<int32_t> out(size_t(blocks_y * blocks_x) * 2);
  const uint64_t key = grain_key(seed, frame, 0);
  for (int64_t by = 0; by < blocks_y; ++by) {
    for (int64_t bx = 0; bx < blocks_x; ++bx) {
      const uint64_t u = mix64(key + ((uint64_t(by) << 32) | uint64_t(bx)));
      int32_t* o = out.data() + 2 * (by * blocks_x + bx);
      o[0] = int32_t((u >> 32) % (kGrainMaxOffset + 1));
      o[1] = int32_t((u & 0xffffffffull) % (kGrainMaxOffset + 1));
    }
  }
  return out;
}

namespace cpu {

void grain(const GrainArgs& a) {
  dispatch_dtype(a.image.dtype, [&](auto t) { grain_typed<decltype(t)>(a); });
}

}  // namespace cpu
}  // namespace clarifx
