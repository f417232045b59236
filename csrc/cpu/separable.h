// Row kernels shared by the CPU resampler and the fused upsampler. Work happens on float32 rows in
// thread-local buffers; only the first read and the last write see the caller's dtype and strides,
// so the hot loops run over contiguous floats and vectorise.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "clarifx/filters.h"
#include "clarifx/tensor.h"

namespace clarifx::cpu {

// dst[x] = sum_k w[k] * rows[k][x * col_stride]: the vertical pass, vectorised along x.
template <typename T>
void blend_rows(const T* const* rows, int64_t col_stride, const float* w, int64_t taps, int64_t width, float* dst) {
  std::fill(dst, dst + width, 0.f);
  for (int64_t k = 0; k < taps; ++k) {
    const float wk = w[k];
    if (wk == 0.f) continue;  // padding taps of the uniform-width table
    const T* row = rows[k];
    if (col_stride == 1) {
      for (int64_t x = 0; x < width; ++x) dst[x] += wk * to_float(row[x]);
    } else {
      for (int64_t x = 0; x < width; ++x) dst[x] += wk * to_float(row[x * col_stride]);
    }
  }
}

// dst[x] = sum_k w[k] * src[x + k]: one phase of an integer enlargement, vectorised along x.
inline void blend_shifted(const float* src, const float* w, int64_t taps, int64_t width, float* dst) {
  std::fill(dst, dst + width, 0.f);
  for (int64_t k = 0; k < taps; ++k) {
    const float wk = w[k];
    if (wk == 0.f) continue;
    const float* s = src + k;
    for (int64_t x = 0; x < width; ++x) dst[x] += wk * s[x];
  }
}

inline float table_dot(const Contributions& c, int64_t i, const float* src) {
  const float* w = &c.weight[i * c.taps];
  const float* s = src + c.start[i];
  float acc = 0.f;
  for (int64_t k = 0; k < c.taps; ++k) acc += w[k] * s[k];
  return acc;
}

// dst[i] = sum_k weight[i, k] * src[start[i] + k], a gather per output. A compile-time tap count
// lets the compiler unroll the dot product; wide reductions take the generic loop.
template <int Taps>
void gather_row_fixed(const float* src, const Contributions& c, float* dst) {
  const int64_t* start = c.start.data();
  const float* w = c.weight.data();
  for (int64_t i = 0; i < c.out_size; ++i) {
    const float* s = src + start[i];
    const float* wi = w + i * Taps;
    float acc = 0.f;
    for (int k = 0; k < Taps; ++k) acc += wi[k] * s[k];
    dst[i] = acc;
  }
}

inline void gather_row(const float* src, const Contributions& c, float* dst) {
  switch (c.taps) {
    case 1: return gather_row_fixed<1>(src, c, dst);
    case 2: return gather_row_fixed<2>(src, c, dst);
    case 3: return gather_row_fixed<3>(src, c, dst);
    case 4: return gather_row_fixed<4>(src, c, dst);
    case 5: return gather_row_fixed<5>(src, c, dst);
    case 6: return gather_row_fixed<6>(src, c, dst);
    case 7: return gather_row_fixed<7>(src, c, dst);
    case 8: return gather_row_fixed<8>(src, c, dst);
  }
  for (int64_t i = 0; i < c.out_size; ++i) dst[i] = table_dot(c, i, src);
}

// The horizontal pass of one row. When the output is an integer multiple s of the input, away from the
// borders output s*x + p reads src[x + offset[p] + k] with weights that depend on the phase p alone,
// so each phase is a sum of shifted rows and vectorises instead of gathering. Such rows come out
// phase-major (element p * in + x is output column s*x + p); store() writes them in natural order.
// Columns whose table row departs from the phase pattern (the renormalised borders) use the table.
class HorizontalPass {
 public:
  HorizontalPass(int64_t in_size, int64_t out_size, Filter filter)
      : in_(in_size), table_(contributions(in_size, out_size, filter)) {
    if (out_size % in_size == 0) plan_phases(out_size / in_size);
  }

  const Contributions& table() const { return table_; }
  int64_t scale() const { return phases_; }
  bool vectorised() const { return phases_ > 0; }
  // Rows come out in natural column order (so they may be written straight into a contiguous output).
  bool natural_order() const { return phases_ <= 1; }

  void run(const float* src, float* dst) const {
    if (!vectorised()) return gather_row(src, table_, dst);
    const int64_t taps = table_.taps;
    for (int64_t p = 0; p < phases_; ++p) {
      float* out = dst + p * in_;
      if (end_ > begin_) blend_shifted(src + begin_ + offset_[p], &weight_[p * taps], taps, end_ - begin_, out + begin_);
      for (int64_t x : irregular_) out[x] = table_dot(table_, x * phases_ + p, src);
    }
  }

  template <typename T>
  void store(const float* row, T* dst, int64_t stride) const {
    if (natural_order()) {
      for (int64_t i = 0; i < table_.out_size; ++i) dst[i * stride] = from_float<T>(row[i]);
      return;
    }
    for (int64_t x = 0; x < in_; ++x)
      for (int64_t p = 0; p < phases_; ++p) dst[(x * phases_ + p) * stride] = from_float<T>(row[p * in_ + x]);
  }

 private:
  // Takes the pattern from the middle column, then marks every column whose table row reads
  // differently (beyond float rounding of the weights) as irregular.
  void plan_phases(int64_t s) {
    const int64_t taps = table_.taps, mid = in_ / 2;
    phases_ = s;
    offset_.resize(s);
    weight_.resize(s * taps);
    begin_ = 0, end_ = in_;
    for (int64_t p = 0; p < s; ++p) {
      offset_[p] = table_.start[mid * s + p] - mid;
      std::copy_n(&table_.weight[(mid * s + p) * taps], taps, &weight_[p * taps]);
      begin_ = std::max(begin_, -offset_[p]);          // x + offset >= 0
      end_ = std::min(end_, in_ - taps - offset_[p] + 1);  // x + offset + taps <= in
    }
    end_ = std::max(end_, begin_);
    for (int64_t x = 0; x < in_; ++x) {
      bool regular = x >= begin_ && x < end_;
      for (int64_t p = 0; p < s && regular; ++p) regular = follows_pattern(x, p);
      if (!regular) irregular_.push_back(x);
    }
  }

  // Output s*x + p gives every input the same weight as the pattern does (within float rounding).
  bool follows_pattern(int64_t x, int64_t p) const {
    constexpr float kTolerance = 1e-7f;
    const int64_t taps = table_.taps, i = x * phases_ + p;
    const int64_t first = std::min(table_.start[i], x + offset_[p]);
    const int64_t last = std::max(table_.start[i], x + offset_[p]) + taps;
    for (int64_t j = first; j < last; ++j) {
      const int64_t kt = j - table_.start[i], kp = j - x - offset_[p];
      const float wt = kt >= 0 && kt < taps ? table_.weight[i * taps + kt] : 0.f;
      const float wp = kp >= 0 && kp < taps ? weight_[p * taps + kp] : 0.f;
      if (std::fabs(wt - wp) > kTolerance) return false;
    }
    return true;
  }

  int64_t in_;
  Contributions table_;
  int64_t phases_ = 0;              // s for an integer enlargement, else 0 (gather)
  std::vector<int64_t> offset_;     // per phase
  std::vector<float> weight_;       // per phase, taps each
  int64_t begin_ = 0, end_ = 0;     // columns where every phase reads inside the row
  std::vector<int64_t> irregular_;  // columns computed from the table
};

// A contiguous float view of a strided row: the row itself when it already is one, else a converted copy in buf.
template <typename T>
const float* float_row(const T* row, int64_t col_stride, int64_t width, float* buf) {
  if constexpr (std::is_same_v<T, float>) {
    if (col_stride == 1) return row;
  }
  for (int64_t x = 0; x < width; ++x) buf[x] = to_float(row[x * col_stride]);
  return buf;
}

// Row tasks in the order that walks memory forwards: channel-innermost for interleaved layouts
// (HWC arrive as stride_c == 1), so the cache lines of one pixel's channels are written together.
struct RowOrder {
  int64_t n, c, h;
  bool channels_inner;

  RowOrder(int64_t n_, int64_t c_, int64_t h_, const int64_t* stride)
      : n(n_), c(c_), h(h_), channels_inner(c_ > 1 && stride[1] < stride[2]) {}

  int64_t count() const { return n * c * h; }
  // Task r -> (batch, channel, row).
  void split(int64_t r, int64_t& in, int64_t& ic, int64_t& iy) const {
    if (channels_inner) {
      ic = r % c, r /= c;
      iy = r % h, in = r / h;
    } else {
      iy = r % h, r /= h;
      ic = r % c, in = r / c;
    }
  }
};

}  // namespace clarifx::cpu
