// Separable resampling on the CPU: two 1-D passes through a float32 intermediate that never leaves
// the thread (a row buffer, or a small cache of filtered rows), parallel over output rows.
#include <vector>

#include "clarifx/ops.h"
#include "separable.h"

namespace clarifx::cpu {
namespace {

// Vertical-first runs the vertical pass at the input width on every output row; horizontal-first runs
// the horizontal pass once per input row. Pick the one that does less work, counting a gathered
// horizontal tap as about three vectorised ones, and a vertical tap on float16 input (widened each
// time it is read) as about four; horizontal-first widens each input row once.
bool vertical_first(const HorizontalPass& hp, const Contributions& cy, int64_t in_h, int64_t in_w, bool half_input) {
  const double horizontal_tap = hp.vectorised() ? 1.0 : 3.0, input_tap = half_input ? 4.0 : 1.0;
  const double out_h = double(cy.out_size), out_w = double(hp.table().out_size);
  const double per_out_row = horizontal_tap * out_w * double(hp.table().taps);
  const double vertical = out_h * (input_tap * double(in_w) * double(cy.taps) + per_out_row);
  const double horizontal = double(in_h) * per_out_row + out_h * out_w * double(cy.taps);
  return vertical < horizontal;
}

// A float row in natural order goes straight into a contiguous float output row (planar layouts);
// anything else is made in row buffers and stored a channel group at a time.
template <typename T>
bool writes_in_place(const View4<T>& out, const RowOrder& order) {
  return std::is_same_v<T, float> && out.sw == 1 && order.group == 1;
}

// Each output row: blend its input rows at the input width, then filter that row horizontally.
template <typename T>
void resample_vertical_first(const View4<T>& in, const View4<T>& out, const HorizontalPass& hp,
                             const Contributions& cy, const RowOrder& order) {
  const bool in_place = writes_in_place(out, order);
#pragma omp parallel
  {
    std::vector<float> blended(in.w), rows(order.group * out.w), scratch(out.w);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < order.count(); ++r) {
      int64_t n, c0, y;
      order.split(r, n, c0, y);
      for (int64_t c = c0; c < c0 + order.group; ++c) {
        blend_rows_for(in, n, c, cy, y, blended.data());
        float* dst = in_place ? reinterpret_cast<float*>(out.ptr(n, c, y, 0)) : &rows[(c - c0) * out.w];
        hp.run(blended.data(), dst, scratch.data());
      }
      if (!in_place) store_rows(rows.data(), order.group, out.w, out.ptr(n, c0, y, 0), out.sc, out.sw);
    }
  }
}

// Each output row: blend horizontally filtered input rows. A thread's rows arrive in order
// (static schedule: one contiguous range per thread), so a filtered row is cached in a ring and
// reused by every output row whose window covers it.
template <typename T>
void resample_horizontal_first(const View4<T>& in, const View4<T>& out, const HorizontalPass& hp,
                               const Contributions& cy, const RowOrder& order) {
  // Rows of one window map to distinct ring slots; a channel group keeps one ring per channel.
  const int64_t slots = cy.taps * order.group;
  const bool in_place = writes_in_place(out, order);
#pragma omp parallel
  {
    std::vector<float> filtered(slots * out.w), src(in.w), rows(order.group * out.w), scratch(out.w);
    std::vector<int64_t> cached(slots, -1);  // global input row id held in each slot
    std::vector<const float*> window(cy.taps);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < order.count(); ++r) {
      int64_t n, c0, y;
      order.split(r, n, c0, y);
      const float* w = &cy.weight[y * cy.taps];
      for (int64_t c = c0; c < c0 + order.group; ++c) {
        for (int64_t k = 0; k < cy.taps; ++k) {
          if (w[k] == 0.f) continue;  // blend skips it too
          const int64_t iy = cy.start[y] + k;
          const int64_t id = (n * in.c + c) * in.h + iy;
          const int64_t slot = (iy % cy.taps) * order.group + (c - c0);
          float* row = &filtered[slot * out.w];
          if (cached[slot] != id) {
            hp.run(float_row(in.ptr(n, c, iy, 0), in.sw, in.w, src.data()), row, scratch.data());
            cached[slot] = id;
          }
          window[k] = row;
        }
        float* dst = in_place ? reinterpret_cast<float*>(out.ptr(n, c, y, 0)) : &rows[(c - c0) * out.w];
        blend([&](int64_t k) { return window[k]; }, 1, w, cy.taps, out.w, dst);
      }
      if (!in_place) store_rows(rows.data(), order.group, out.w, out.ptr(n, c0, y, 0), out.sc, out.sw);
    }
  }
}

template <typename T>
void resample_typed(const ResampleArgs& a) {
  const View4<T> in = view<T>(a.in), out = view<T>(a.out);
  const HorizontalPass hp(in.w, out.w, a.filter);
  const Contributions cy = contributions(in.h, out.h, a.filter);
  const RowOrder order(out.n, out.c, out.h, a.out.stride);
  if (vertical_first(hp, cy, in.h, in.w, std::is_same_v<T, half_t>))
    resample_vertical_first(in, out, hp, cy, order);
  else
    resample_horizontal_first(in, out, hp, cy, order);
}

}  // namespace

void resample(const ResampleArgs& a) {
  dispatch_dtype(a.in.dtype, [&](auto t) { resample_typed<decltype(t)>(a); });
}

}  // namespace clarifx::cpu
