// Backward warp and forward-backward occlusion on CUDA: one thread per output pixel, looping over the
// channels, with sample.h's per-pixel math called exactly as the CPU's generic path calls it (results
// differ from the CPU's only where nvcc contracts a multiply-add). Threads of a warp take consecutive x,
// so flow, output and (for smooth flow) image reads coalesce.
#include <algorithm>
#include <optional>

#include "clarifx/ops.h"
#include "common.cuh"

namespace clarifx::cuda {
namespace {

// 32 x 8 threads: a warp per row segment, 8 rows per block. Grid y covers rows and grid z batch items,
// each up to CUDA's 65535 limit; grid-stride loops take the rest.
constexpr int kThreadsX = 32, kThreadsY = 8;
constexpr int64_t kMaxBlocksYZ = 65535;

struct PixelGrid {
  dim3 blocks, threads;
};

PixelGrid pixel_grid(int64_t batch, int64_t height, int64_t width) {
  const int64_t blocks_y = std::min<int64_t>((height + kThreadsY - 1) / kThreadsY, kMaxBlocksYZ);
  const int64_t blocks_z = std::min<int64_t>(batch, kMaxBlocksYZ);
  return {dim3(blocks_for(width, kThreadsX), unsigned(blocks_y), unsigned(blocks_z)),
          dim3(kThreadsX, kThreadsY)};
}

// Loops `body(n, y, x)` over this thread's pixels.
template <typename Body>
__device__ void for_each_pixel(int64_t batch, int64_t height, int64_t width, Body&& body) {
  const int64_t x = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (x >= width) return;
  for (int64_t n = blockIdx.z; n < batch; n += gridDim.z)
    for (int64_t y = int64_t(blockIdx.y) * blockDim.y + threadIdx.y; y < height;
         y += int64_t(gridDim.y) * blockDim.y)
      body(n, y, x);
}

template <Interp I, Border B, typename T, typename F>
__global__ void warp_kernel(View4<T> im, View4<F> flow, View4<T> out, View4<T> mask, int* nonfinite) {
  for_each_pixel(im.n, im.h, im.w, [&](int64_t n, int64_t y, int64_t x) {
    // every writer stores 1, so the race on the flag is benign
    if (!warp_pixel(im, flow, out, mask, n, y, x, I, B) && nonfinite) *nonfinite = 1;
  });
}

template <typename F>
__global__ void occlusion_kernel(View4<F> fw, View4<F> bw, View4<F> out, float alpha1, float alpha2,
                                 int* nonfinite) {
  for_each_pixel(fw.n, fw.h, fw.w, [&](int64_t n, int64_t y, int64_t x) {
    if (!occlusion_pixel(fw, bw, out, n, y, x, alpha1, alpha2) && nonfinite) *nonfinite = 1;
  });
}

template <Interp I, Border B, typename T, typename F>
void launch_warp(const WarpArgs& a, cudaStream_t stream, int* nonfinite) {
  const View4<T> im = view<T>(a.image);
  const PixelGrid g = pixel_grid(im.n, im.h, im.w);
  const View4<T> mask = a.mask.defined() ? view<T>(a.mask) : View4<T>{};
  warp_kernel<I, B, T, F><<<g.blocks, g.threads, 0, stream>>>(im, view<F>(a.flow), view<T>(a.out), mask, nonfinite);
  check_launch("warp_kernel");
}

template <Interp I, typename T, typename F>
void launch_warp_border(const WarpArgs& a, cudaStream_t stream, int* nonfinite) {
  switch (a.border) {
    case Border::clamp: return launch_warp<I, Border::clamp, T, F>(a, stream, nonfinite);
    case Border::zero: return launch_warp<I, Border::zero, T, F>(a, stream, nonfinite);
    case Border::reflect: return launch_warp<I, Border::reflect, T, F>(a, stream, nonfinite);
  }
}

// Runs `launch(nonfinite)` on the stream; with check_finite, waits on the stream for the flag.
template <typename Launch>
bool run_checked(cudaStream_t stream, bool check_finite, Launch&& launch) {
  std::optional<Flag> flag;
  if (check_finite) flag.emplace(stream);
  launch(flag ? flag->get() : nullptr);
  return !flag || !flag->read();
}

}  // namespace

bool warp(const WarpArgs& a, void* stream, bool check_finite) {
  DeviceGuard guard(a.image.device);
  const cudaStream_t s = as_cuda(stream);
  return run_checked(s, check_finite, [&](int* nonfinite) {
    dispatch_dtype(a.image.dtype, [&](auto t) {
      using T = decltype(t);
      dispatch_dtype(a.flow.dtype, [&](auto f) {
        using F = decltype(f);
        if (a.interp == Interp::bilinear) launch_warp_border<Interp::bilinear, T, F>(a, s, nonfinite);
        else launch_warp_border<Interp::bicubic, T, F>(a, s, nonfinite);
      });
    });
  });
}

bool occlusion(const OcclusionArgs& a, void* stream, bool check_finite) {
  DeviceGuard guard(a.forward.device);
  const cudaStream_t s = as_cuda(stream);
  return run_checked(s, check_finite, [&](int* nonfinite) {
    dispatch_dtype(a.forward.dtype, [&](auto f) {
      using F = decltype(f);
      const View4<F> fw = view<F>(a.forward);
      const PixelGrid g = pixel_grid(fw.n, fw.h, fw.w);
      occlusion_kernel<F><<<g.blocks, g.threads, 0, s>>>(fw, view<F>(a.backward), view<F>(a.out), a.alpha1,
                                                         a.alpha2, nonfinite);
      check_launch("occlusion_kernel");
    });
  });
}

}  // namespace clarifx::cuda
