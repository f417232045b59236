// Fused super-resolution tail on CUDA: out = pixel_shuffle(features) + resample(base), clamped, in one
// kernel that reads features and writes out exactly once (it is meant to run at memory bandwidth).
// A block owns a tile of kTileH x kTileW outputs of one plane: it first blends the base rows each
// output row needs at low resolution into shared memory (the vertical pass, coalesced along x), then
// every thread filters horizontally from shared memory, adds the shuffled feature and stores.
#include <algorithm>
#include <limits>

#include "clarifx/ops.h"
#include "separable.cuh"

namespace clarifx::cuda {
namespace {

constexpr int kTileW = 128;                      // output columns per tile = threads along x
constexpr int kBlockRows = 2;                    // threads along y
constexpr int kRowsPerThread = 4;                // output rows per thread in a tile
constexpr int kTileH = kBlockRows * kRowsPerThread;
constexpr int kMaxTaps = 6;                      // horizontal taps kept in registers: lanczos3 enlarging needs 6

// Four resident blocks (1024 threads) per SM: registers are capped at 64.
template <typename T, int S>
__global__ void __launch_bounds__(kTileW* kBlockRows, 4)
    fused_upsample_kernel(View4<T> features, View4<T> base, View4<T> out, DeviceAxis ax, DeviceAxis ay,
                          int blend_stride, float lo, float hi) {
  extern __shared__ float blended[];  // kTileH rows of blend_stride low-resolution columns
  const int threads = kTileW * kBlockRows;
  const int tid = threadIdx.y * kTileW + threadIdx.x;
  const int64_t x0 = int64_t(blockIdx.x) * kTileW;
  const int cols = int(min(int64_t(kTileW), out.w - x0));
  const int lx0 = ax.start[x0];                            // first base column the tile reads
  const int lw = ax.start[x0 + cols - 1] + ax.taps - lx0;  // base columns the tile reads (<= blend_stride)

  // This thread's output column, its horizontal taps and where its column sits in features and out:
  // the same for every row of every tile.
  const int64_t x = x0 + threadIdx.x;
  const bool active = threadIdx.x < cols;
  float wx[kMaxTaps];
  int sx = 0;
  if (active) {
    sx = ax.start[x] - lx0;
#pragma unroll
    for (int k = 0; k < kMaxTaps; ++k) wx[k] = k < ax.taps ? ax.weight[x * ax.taps + k] : 0.f;
  }
  const int64_t feature_column = (x % S) * features.sc + (x / S) * features.sw;
  const int64_t out_column = x * out.sw;

  for (int64_t plane = blockIdx.z; plane < out.n * out.c; plane += gridDim.z) {
    const int64_t n = plane / out.c, c = plane % out.c;
    const T* base_plane = base.ptr(n, c, 0, 0);
    const T* feature_planes = features.ptr(n, c * S * S, 0, 0);  // the S*S planes feeding this channel
    T* out_plane = out.ptr(n, c, 0, 0);
    for (int64_t y0 = int64_t(blockIdx.y) * kTileH; y0 < out.h; y0 += int64_t(gridDim.y) * kTileH) {
      const int rows = int(min(int64_t(kTileH), out.h - y0));
      // Issue this thread's feature loads first: they stream from DRAM while the block blends base rows.
      float feature[kRowsPerThread];
#pragma unroll
      for (int i = 0; i < kRowsPerThread; ++i) {
        const int64_t y = y0 + threadIdx.y + i * kBlockRows;
        const int64_t row_offset = (y % S) * S * features.sc + (y / S) * features.sh;
        feature[i] = active && y < out.h ? to_float(feature_planes[row_offset + feature_column]) : 0.f;
      }
      for (int i = tid; i < rows * lw; i += threads) {
        const int r = i / lw, j = i - r * lw;
        const int64_t y = y0 + r;
        const float* wy = ay.weight + y * ay.taps;
        const T* src = base_plane + ay.start[y] * base.sh + (lx0 + j) * base.sw;
        float acc = 0.f;
        for (int k = 0; k < ay.taps; ++k) acc += wy[k] * to_float(src[k * base.sh]);
        blended[r * blend_stride + j] = acc;
      }
      __syncthreads();
      if (active) {
#pragma unroll
        for (int i = 0; i < kRowsPerThread; ++i) {
          const int r = threadIdx.y + i * kBlockRows;
          if (r >= rows) break;
          const float* row = blended + r * blend_stride + sx;
          float v = 0.f;
#pragma unroll
          for (int k = 0; k < kMaxTaps; ++k)
            if (k < ax.taps) v += wx[k] * row[k];
          v += feature[i];      // the CPU's order of additions
          v = v < lo ? lo : v;  // comparisons, not fminf/fmaxf, so NaN passes through as on the CPU
          v = v > hi ? hi : v;
          out_plane[(y0 + r) * out.sh + out_column] = from_float<T>(v);
        }
      }
      __syncthreads();  // the next tile overwrites blended
    }
  }
}

// Widest run of base columns any tile reads: the shared row stride.
int blend_stride(const Contributions& cx) {
  int64_t widest = 1;
  for (int64_t x0 = 0; x0 < cx.out_size; x0 += kTileW) {
    const int64_t last = std::min(x0 + kTileW, cx.out_size) - 1;
    widest = std::max(widest, cx.start[last] + cx.taps - cx.start[x0]);
  }
  return int(widest);
}

template <typename T, int S>
void fused_upsample_typed(const FusedUpsampleArgs& a, cudaStream_t stream) {
  const View4<T> features = view<T>(a.features), base = view<T>(a.base), out = view<T>(a.out);
  const Contributions cx = contributions(base.w, out.w, a.filter);
  const Contributions cy = contributions(base.h, out.h, a.filter);
  expect(cx.taps <= kMaxTaps, "fused_upsample: filter too wide for the CUDA kernel");
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const float lo = a.clamp ? a.lo : -kInf, hi = a.clamp ? a.hi : kInf;
  const int stride = blend_stride(cx);
  const size_t shared = size_t(kTileH) * stride * sizeof(float);

  const AxisTable tx(cx, stream), ty(cy, stream);
  const dim3 block(kTileW, kBlockRows);
  const dim3 grid(blocks_for(out.w, kTileW), grid_dim_yz((out.h + kTileH - 1) / kTileH), grid_dim_yz(out.n * out.c));
  fused_upsample_kernel<T, S><<<grid, block, shared, stream>>>(features, base, out, tx.device(), ty.device(), stride,
                                                                lo, hi);
  check_launch("fused_upsample_kernel");
}

}  // namespace

void fused_upsample(const FusedUpsampleArgs& a, void* stream) {
  const DeviceGuard guard(a.base.device);
  dispatch_dtype(a.base.dtype, [&](auto t) {
    using T = decltype(t);
    switch (a.scale) {
      case 2: return fused_upsample_typed<T, 2>(a, as_cuda(stream));
      case 3: return fused_upsample_typed<T, 3>(a, as_cuda(stream));
      case 4: return fused_upsample_typed<T, 4>(a, as_cuda(stream));
    }
    fail("fused_upsample: scale must be 2, 3 or 4");
  });
}

}  // namespace clarifx::cuda
