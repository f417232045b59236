// Row kernels shared by the CPU resampler and the fused upsampler. Work happens on float32 rows in
// thread-local buffers; only the first read and the last write see the caller's dtype and strides,
// so the hot loops run over contiguous floats and vectorise.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "clarifx/filters.h"
#include "clarifx/tensor.h"

namespace clarifx::cpu {

// One pass over dst for Count taps: dst[x] (+)= sum_j w[j] * rows[j][x * col_stride].
template <bool Accumulate, int Count, typename T>
void blend_pass(const T* const* rows, const float* w, int64_t col_stride, int64_t width, float* dst) {
  if (col_stride == 1) {
    for (int64_t x = 0; x < width; ++x) {
      float v = Accumulate ? dst[x] : 0.f;
      for (int j = 0; j < Count; ++j) v += w[j] * to_float(rows[j][x]);
      dst[x] = v;
    }
  } else {
    for (int64_t x = 0; x < width; ++x) {
      float v = Accumulate ? dst[x] : 0.f;
      for (int j = 0; j < Count; ++j) v += w[j] * to_float(rows[j][x * col_stride]);
      dst[x] = v;
    }
  }
}

template <bool Accumulate, typename T>
void blend_pass(int count, const T* const* rows, const float* w, int64_t col_stride, int64_t width, float* dst) {
  switch (count) {
    case 1: return blend_pass<Accumulate, 1>(rows, w, col_stride, width, dst);
    case 2: return blend_pass<Accumulate, 2>(rows, w, col_stride, width, dst);
    case 3: return blend_pass<Accumulate, 3>(rows, w, col_stride, width, dst);
    case 4: return blend_pass<Accumulate, 4>(rows, w, col_stride, width, dst);
  }
}

// dst[x] = sum_k w[k] * row_at(k)[x * col_stride], vectorised along x. Taps go up to four to a pass,
// so dst is stored ceil(taps / 4) times rather than once per tap; zero weights (the table's padding)
// are skipped without touching their rows.
template <typename RowAt>
void blend(RowAt row_at, int64_t col_stride, const float* w, int64_t taps, int64_t width, float* dst) {
  using T = std::remove_cv_t<std::remove_pointer_t<decltype(row_at(int64_t{0}))>>;
  constexpr int kPerPass = 4;
  const T* rows[kPerPass];
  float weights[kPerPass];
  int pending = 0;
  bool started = false;
  for (int64_t k = 0; k < taps; ++k) {
    if (w[k] == 0.f) continue;
    rows[pending] = row_at(k);
    weights[pending] = w[k];
    if (++pending < kPerPass) continue;
    started ? blend_pass<true>(pending, rows, weights, col_stride, width, dst)
            : blend_pass<false>(pending, rows, weights, col_stride, width, dst);
    started = true;
    pending = 0;
  }
  if (!started && pending == 0) std::fill(dst, dst + width, 0.f);
  if (pending == 0) return;
  started ? blend_pass<true>(pending, rows, weights, col_stride, width, dst)
          : blend_pass<false>(pending, rows, weights, col_stride, width, dst);
}

// The vertical pass for output row y of plane (n, c): its input rows blended at the input width.
template <typename T>
void blend_rows_for(const View4<T>& in, int64_t n, int64_t c, const Contributions& cy, int64_t y, float* dst) {
  blend([&](int64_t k) { return static_cast<const T*>(in.ptr(n, c, cy.start[y] + k, 0)); }, in.sw,
        &cy.weight[y * cy.taps], cy.taps, in.w, dst);
}

// sum_k weight[i, k] * src[start[i] + k]. Four partial sums (a reordering written out, which the
// compiler may not do for floats itself) let the long dot products of a reduction vectorise.
inline float table_dot(const Contributions& c, int64_t i, const float* src) {
  const float* w = &c.weight[i * c.taps];
  const float* s = src + c.start[i];
  float part[4] = {0.f, 0.f, 0.f, 0.f};
  int64_t k = 0;
  for (; k + 4 <= c.taps; k += 4)
    for (int j = 0; j < 4; ++j) part[j] += w[k + j] * s[k + j];
  for (; k < c.taps; ++k) part[0] += w[k] * s[k];
  return (part[0] + part[1]) + (part[2] + part[3]);
}

// dst[i] = sum_k weight[i, k] * src[start[i] + k], a gather per output. A compile-time tap count
// lets the compiler unroll short dot products; from eight taps the vectorised table_dot is faster.
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
  }
  for (int64_t i = 0; i < c.out_size; ++i) dst[i] = table_dot(c, i, src);
}

// The horizontal pass of one row. When the output is an integer multiple s of the input, away from the
// borders output s*x + p reads src[x + offset[p] + k] with weights that depend on the phase p alone,
// so each phase is a sum of shifted rows and vectorises instead of gathering.
// Columns whose table row departs from the phase pattern (the renormalised borders) use the table.
class HorizontalPass {
 public:
  HorizontalPass(int64_t in_size, int64_t out_size, Filter filter)
      : in_(in_size), table_(contributions(in_size, out_size, filter)) {
    if (out_size % in_size == 0) plan_phases(out_size / in_size);
  }

  const Contributions& table() const { return table_; }
  bool vectorised() const { return phases_ > 0; }

  // The filtered row in natural column order; scratch holds out_size floats.
  void run(const float* src, float* dst, float* scratch) const {
    if (!vectorised()) return gather_row(src, table_, dst);
    if (phases_ == 1) return run_phases(src, dst);
    run_phases(src, scratch);
    switch (phases_) {
      case 2: return interleave<2>(scratch, dst);
      case 3: return interleave<3>(scratch, dst);
      case 4: return interleave<4>(scratch, dst);
    }
    for (int64_t x = 0; x < in_; ++x)
      for (int64_t p = 0; p < phases_; ++p) dst[x * phases_ + p] = scratch[p * in_ + x];
  }

  // Vectorised passes only: the filtered row phase-major, element p * in + x being output column s*x + p.
  void run_phases(const float* src, float* dst) const {
    const int64_t taps = table_.taps;
    for (int64_t p = 0; p < phases_; ++p) {
      float* out = dst + p * in_;
      if (end_ > begin_) {
        const float* first = src + begin_ + offset_[p];
        blend([first](int64_t k) { return first + k; }, 1, &weight_[p * taps], taps, end_ - begin_, out + begin_);
      }
      for (int64_t x : irregular_) out[x] = table_dot(table_, x * phases_ + p, src);
    }
  }

 private:
  template <int S>
  void interleave(const float* phase_major, float* dst) const {
    for (int64_t x = 0; x < in_; ++x)
      for (int p = 0; p < S; ++p) dst[x * S + p] = phase_major[p * in_ + x];
  }

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
  if (col_stride == 1) {
    for (int64_t x = 0; x < width; ++x) buf[x] = to_float(row[x]);
  } else {
    for (int64_t x = 0; x < width; ++x) buf[x] = to_float(row[x * col_stride]);
  }
  return buf;
}

// rows: `count` float rows of `width`, stored as channels c0.. of one output row (x outer, so an
// interleaved pixel's channels are written together).
template <typename T>
void store_rows(const float* rows, int64_t count, int64_t width, T* dst, int64_t channel_stride, int64_t col_stride) {
  if (count == 1 && col_stride == 1) {
    for (int64_t x = 0; x < width; ++x) dst[x] = from_float<T>(rows[x]);
    return;
  }
  for (int64_t x = 0; x < width; ++x)
    for (int64_t c = 0; c < count; ++c) dst[x * col_stride + c * channel_stride] = from_float<T>(rows[c * width + x]);
}

// Output rows are made a channel group at a time: one channel for planar layouts, all channels for
// interleaved colour pixels (HWC arrive as stride_c == 1), whose pixels are then stored whole. Wider
// interleaved tensors go a channel at a time, since per-thread buffers grow with the group.
struct RowOrder {
  static constexpr int64_t kMaxGroup = 4;
  int64_t n, c, h;
  int64_t group;  // channels per task

  RowOrder(int64_t n_, int64_t c_, int64_t h_, const int64_t* stride)
      : n(n_), c(c_), h(h_), group(c_ > 1 && c_ <= kMaxGroup && stride[1] < stride[2] ? c_ : 1) {}

  int64_t count() const { return n * (c / group) * h; }
  // Task r -> (batch, first channel, row).
  void split(int64_t r, int64_t& in, int64_t& c0, int64_t& iy) const {
    iy = r % h, r /= h;
    c0 = (r % (c / group)) * group, in = r / (c / group);
  }
};

}  // namespace clarifx::cpu
