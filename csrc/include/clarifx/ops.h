// The native ops, one declaration per backend. bindings.cpp validates arguments and picks the backend;
// cpu/<op>.cpp is always built, cuda/<op>.cu only when CLARIFX_WITH_CUDA is defined.
// CUDA entry points take the caller's stream as an opaque handle (cudaStream_t) and never synchronise
// the device; the only host waits are the optional non-finite checks, which wait on that stream alone.
#pragma once

#include <cstdint>

#include "clarifx/filters.h"
#include "clarifx/grain.h"
#include "clarifx/sample.h"
#include "clarifx/tensor.h"

namespace clarifx {

struct WarpArgs {
  Tensor4 image;  // (N, C, H, W)
  Tensor4 flow;   // (N, 2, H, W): channel 0 = dx, channel 1 = dy, in pixels
  Tensor4 out;    // (N, C, H, W)
  Tensor4 mask;   // (N, 1, H, W) or undefined: 1 where the sample point lies inside the image, else 0
  Interp interp = Interp::bilinear;
  Border border = Border::clamp;
};

struct OcclusionArgs {
  Tensor4 forward;   // (N, 2, H, W) flow t -> t+1
  Tensor4 backward;  // (N, 2, H, W) flow t+1 -> t
  Tensor4 out;       // (N, 1, H, W): 1 where occluded (inconsistent or leaving the frame), else 0
  float alpha1 = 0.01f;  // |f + b|^2 > alpha1 * (|f|^2 + |b|^2) + alpha2  =>  occluded
  float alpha2 = 0.5f;
};

struct FusedUpsampleArgs {
  Tensor4 features;  // (N, C*s*s, H, W), pixel-shuffled into (N, C, H*s, W*s)
  Tensor4 base;      // (N, C, H, W), resampled by s with `filter`
  Tensor4 out;       // (N, C, H*s, W*s)
  int scale = 2;
  Filter filter = Filter::bilinear;
  bool clamp = false;
  float lo = 0.f, hi = 1.f;
};

struct ResampleArgs {
  Tensor4 in;   // (N, C, H, W)
  Tensor4 out;  // (N, C, H', W'): any size; reductions are antialiased
  Filter filter = Filter::lanczos3;
};

struct GrainArgs {
  Tensor4 image;  // (N, C, H, W); batch item n is frame `frame + n`
  Tensor4 out;    // (N, C, H, W), may alias image
  const GrainSpec* spec = nullptr;
  uint64_t seed = 0;
  int64_t frame = 0;
  bool clip = false;
  float lo = 0.f, hi = 1.f;
};

namespace cpu {
// Each returns false when the flow holds a non-finite value (the output is then unspecified).
bool warp(const WarpArgs& a);
bool occlusion(const OcclusionArgs& a);
void fused_upsample(const FusedUpsampleArgs& a);
void resample(const ResampleArgs& a);
void grain(const GrainArgs& a);
}  // namespace cpu

namespace cuda {
bool available();  // a CUDA device and driver are usable
// check_finite: copy a non-finite flag back and wait on `stream` (not the device); otherwise fully async
// and non-finite flow samples give 0 with mask 0.
bool warp(const WarpArgs& a, void* stream, bool check_finite);
bool occlusion(const OcclusionArgs& a, void* stream, bool check_finite);
void fused_upsample(const FusedUpsampleArgs& a, void* stream);
void resample(const ResampleArgs& a, void* stream);
void grain(const GrainArgs& a, void* stream);
}  // namespace cuda

}  // namespace clarifx
