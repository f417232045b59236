// Film grain synthesis, modelled on AV1 film grain (auto-regressive grain templates, a piecewise-linear
// intensity-to-strength curve per channel, randomly offset 32x32 blocks blended over a 2-pixel overlap),
// computed in float. Everything random derives from (seed, frame), so any frame renders the same grain
// on any machine, backend or chunking of a render.
//
//   template_c  = AR-filtered white Gaussian noise (lag L, causal raster neighbourhood, plus for c > 0 a
//                 tap on channel 0's grain at the same position), cropped to 64x64 and scaled to unit RMS
//   G_c(x, y)   = template_c read through the offset of the 32x32 block holding (x, y), blended with the
//                 neighbouring block's 2-pixel overhang at block edges (weights 27/32, 17/32)
//   out         = image + strength_c(image) * G_c      (optionally clipped)
//
// The templates and block offsets are small and built on the host (grain_template, grain_offsets);
// backends only run the per-pixel pass, sharing grain_value below.
#pragma once

#include <cstdint>
#include <vector>

#include "clarifx/tensor.h"

namespace clarifx {

constexpr int kGrainBlock = 32;     // block edge in pixels
constexpr int kGrainOverlap = 2;    // each block's grain overhangs right and down by this much
constexpr int kGrainSize = 64;      // usable template edge
constexpr int kGrainMaxOffset = kGrainSize - kGrainBlock - kGrainOverlap;  // offsets in [0, 30]
constexpr int kGrainMaxLag = 3;
constexpr int kGrainLut = 256;      // strength curve samples over intensity [0, 1]

struct GrainSpec {
  int channels = 0;              // grain goes on channels [0, channels); the rest pass through
  int lag = 0;                   // 0..kGrainMaxLag
  std::vector<float> ar_coeffs;  // channels x 2*lag*(lag+1): neighbours (dy = -lag..0, dx = -lag..lag) in
                                 // raster order, stopping before (0, 0)
  std::vector<float> ar_luma;    // channels: weight of channel 0's grain at the same position (c > 0 only)
  std::vector<float> lut;        // channels x kGrainLut: grain standard deviation at intensity i/(kGrainLut-1)
};

// SplitMix64 finaliser: the one source of randomness.
CLARIFX_HD uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Key of an independent random stream for (seed, frame, stream id).
CLARIFX_HD uint64_t grain_key(uint64_t seed, int64_t frame, uint64_t stream) {
  return mix64(mix64(mix64(seed) ^ static_cast<uint64_t>(frame)) ^ stream);
}

// channels x kGrainSize x kGrainSize floats. Throws std::invalid_argument if the AR filter diverges.
std::vector<float> grain_template(const GrainSpec& spec, uint64_t seed, int64_t frame);

// blocks_y x blocks_x x 2 ints: (oy, ox) in [0, kGrainMaxOffset] for each block, shared by all channels.
std::vector<int32_t> grain_offsets(uint64_t seed, int64_t frame, int64_t blocks_y, int64_t blocks_x);

// Grain of one channel at image pixel (x, y); `tmpl` is that channel's kGrainSize^2 template.
CLARIFX_HD float grain_value(const float* tmpl, const int32_t* offsets, int64_t blocks_x, int64_t x, int64_t y);

}  // namespace clarifx
