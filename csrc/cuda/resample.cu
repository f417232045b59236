// Separable resampling on CUDA: two 1-D passes through a float32 intermediate in stream-ordered
// scratch memory. One thread per output element along x, so every load and store is coalesced
// along rows (the vertical pass reads whole rows; the horizontal pass reads neighbouring inputs).
#include "clarifx/ops.h"
#include "separable.cuh"

namespace clarifx::cuda {
namespace {

constexpr int kThreads = 128;

template <typename In, typename Out>
__global__ void __launch_bounds__(kThreads) horizontal_pass(View4<In> src, View4<Out> dst, DeviceAxis ax) {
  const int64_t x = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (x >= dst.w) return;
  const int start = ax.start[x];
  const float* w = ax.weight + x * ax.taps;
  for (int64_t plane = blockIdx.z; plane < dst.n * dst.c; plane += gridDim.z) {
    const int64_t n = plane / dst.c, c = plane % dst.c;
    for (int64_t y = blockIdx.y; y < dst.h; y += gridDim.y) {
      float acc = 0.f;
      for (int k = 0; k < ax.taps; ++k) acc += w[k] * src.get(n, c, y, start + k);
      dst.set(n, c, y, x, acc);
    }
  }
}

template <typename In, typename Out>
__global__ void __launch_bounds__(kThreads) vertical_pass(View4<In> src, View4<Out> dst, DeviceAxis ay) {
  const int64_t x = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (x >= dst.w) return;
  for (int64_t plane = blockIdx.z; plane < dst.n * dst.c; plane += gridDim.z) {
    const int64_t n = plane / dst.c, c = plane % dst.c;
    for (int64_t y = blockIdx.y; y < dst.h; y += gridDim.y) {
      const int start = ay.start[y];  // the same for the whole block: broadcast loads
      const float* w = ay.weight + y * ay.taps;
      float acc = 0.f;
      for (int k = 0; k < ay.taps; ++k) acc += w[k] * src.get(n, c, start + k, x);
      dst.set(n, c, y, x, acc);
    }
  }
}

template <typename Out>
dim3 grid_for(const View4<Out>& dst) {
  return dim3(blocks_for(dst.w, kThreads), grid_dim_yz(dst.h), grid_dim_yz(dst.n * dst.c));
}

template <typename T>
void resample_typed(const ResampleArgs& a, cudaStream_t stream) {
  const View4<T> in = view<T>(a.in), out = view<T>(a.out);
  const Contributions cx = contributions(in.w, out.w, a.filter);
  const Contributions cy = contributions(in.h, out.h, a.filter);
  // Every tap is a load: run the vertical pass first when that loads less.
  const double vertical_first_taps = double(out.h) * (double(in.w) * cy.taps + double(out.w) * cx.taps);
  const double horizontal_first_taps = double(in.h) * double(out.w) * cx.taps + double(out.h) * double(out.w) * cy.taps;
  const bool vertical_first = vertical_first_taps <= horizontal_first_taps;

  const AxisTable tx(cx, stream), ty(cy, stream);
  const int64_t mid_h = vertical_first ? out.h : in.h, mid_w = vertical_first ? in.w : out.w;
  StreamBuffer<float> scratch(size_t(in.n * in.c * mid_h * mid_w), stream);
  const View4<float> mid{scratch.get(), in.n, in.c, mid_h, mid_w, in.c * mid_h * mid_w, mid_h * mid_w, mid_w, 1};
  if (vertical_first) {
    vertical_pass<<<grid_for(mid), kThreads, 0, stream>>>(in, mid, ty.device());
    check_launch("resample vertical_pass");
    horizontal_pass<<<grid_for(out), kThreads, 0, stream>>>(mid, out, tx.device());
    check_launch("resample horizontal_pass");
  } else {
    horizontal_pass<<<grid_for(mid), kThreads, 0, stream>>>(in, mid, tx.device());
    check_launch("resample horizontal_pass");
    vertical_pass<<<grid_for(out), kThreads, 0, stream>>>(mid, out, ty.device());
    check_launch("resample vertical_pass");
  }
}

}  // namespace

void resample(const ResampleArgs& a, void* stream) {
  const DeviceGuard guard(a.in.device);
  dispatch_dtype(a.in.dtype, [&](auto t) { resample_typed<decltype(t)>(a, as_cuda(stream)); });
}

}  // namespace clarifx::cuda
