// Film grain on CUDA: the templates, block offsets and strength curves are built on the host by the
// shared C++ code and uploaded on the caller's stream; one thread per pixel then runs the per-pixel
// rules of grain.h for every channel. Nothing here waits for the device.
#include <algorithm>
#include <vector>

#include "clarifx/ops.h"
#include "common.cuh"

namespace clarifx::cuda {
namespace {

constexpr int kThreadsX = 32;  // one warp along a row: mostly one grain block, so reads stay together
constexpr int kThreadsY = 8;
constexpr int64_t kMaxGridYZ = 65535;

struct GrainTables {
  const float* templates;  // N x grain_channels x kGrainSize^2
  const int32_t* offsets;  // N x blocks_y x blocks_x x 2
  const float* lut;        // grain_channels x kGrainLut
  int grain_channels;
  int64_t blocks_y, blocks_x;
};

template <typename T>
__global__ void grain_kernel(View4<T> im, View4<T> out, GrainTables t, bool copy_rest, bool clip, float lo, float hi) {
  const int64_t x = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (x >= im.w) return;
  for (int64_t n = blockIdx.z; n < im.n; n += gridDim.z) {
    const float* frame_templates = t.templates + n * t.grain_channels * kGrainSize * kGrainSize;
    const int32_t* frame_offsets = t.offsets + n * t.blocks_y * t.blocks_x * 2;
    for (int64_t y = int64_t(blockIdx.y) * blockDim.y + threadIdx.y; y < im.h; y += int64_t(gridDim.y) * blockDim.y) {
      for (int c = 0; c < t.grain_channels; ++c) {
        const float v = im.get(n, c, y, x);
        const float g = grain_value(frame_templates + c * kGrainSize * kGrainSize, frame_offsets, t.blocks_x, x, y);
        out.set(n, c, y, x, grain_apply(v, grain_strength(t.lut + c * kGrainLut, v), g, clip, lo, hi));
      }
      if (copy_rest)
        for (int64_t c = t.grain_channels; c < im.c; ++c) *out.ptr(n, c, y, x) = *im.ptr(n, c, y, x);
    }
  }
}

}  // namespace

void grain(const GrainArgs& a, void* stream) {
  const GrainSpec& spec = *a.spec;
  const int64_t N = a.image.shape[0], H = a.image.shape[2], W = a.image.shape[3];
  const int64_t blocks_y = (H + kGrainBlock - 1) / kGrainBlock, blocks_x = (W + kGrainBlock - 1) / kGrainBlock;

  // Host side first: an unstable filter throws before anything is queued.
  std::vector<float> templates;
  std::vector<int32_t> offsets;
  for (int64_t n = 0; n < N; ++n) {
    const std::vector<float> tmpl = grain_template(spec, a.seed, a.frame + n);
    const std::vector<int32_t> offs = grain_offsets(a.seed, a.frame + n, blocks_y, blocks_x);
    templates.insert(templates.end(), tmpl.begin(), tmpl.end());
    offsets.insert(offsets.end(), offs.begin(), offs.end());
  }

  DeviceGuard guard(a.image.device);
  const cudaStream_t s = as_cuda(stream);
  const StreamBuffer<float> d_templates(templates, s), d_lut(spec.lut, s);
  const StreamBuffer<int32_t> d_offsets(offsets, s);
  const GrainTables tables{d_templates.get(), d_offsets.get(), d_lut.get(), spec.channels, blocks_y, blocks_x};
  const bool copy_rest = a.out.data != a.image.data;  // the bindings allow only exact aliasing

  const dim3 threads(kThreadsX, kThreadsY);
  const dim3 grid(blocks_for(W, kThreadsX), unsigned(std::min(int64_t(blocks_for(H, kThreadsY)), kMaxGridYZ)),
                  unsigned(std::min(N, kMaxGridYZ)));
  dispatch_dtype(a.image.dtype, [&](auto tag) {
    using T = decltype(tag);
    grain_kernel<T><<<grid, threads, 0, s>>>(view<T>(a.image), view<T>(a.out), tables, copy_rest, a.clip, a.lo, a.hi);
  });
  check_launch("grain_kernel");
}

}  // namespace clarifx::cuda
