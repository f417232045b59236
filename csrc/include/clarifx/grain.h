// Film grain synthesis, modelled on AV1 film grain (auto-regressive grain templates, a piecewise-linear
// intensity-to-strength curve per channel, randomly offset 32x32 blocks blended over a 2-pixel overlap),
// computed in float. Not bit-exact AV1. Everything random derives from (seed, frame), so any frame renders
// the same grain on any machine, backend or chunking of a render.
//
//   template_c  = AR-filtered white Gaussian noise (lag L, causal raster neighbourhood, plus for c > 0 a
//                 tap on channel 0's grain at the same position), cropped to 64x64 and scaled to unit RMS
//   G_c(x, y)   = template_c read through the offset of the 32x32 block holding (x, y), blended with the
//                 neighbouring block's 2-pixel overhang at block edges (weights 27/32, 17/32)
//   out         = image + strength_c(image) * G_c      (optionally clipped)
//
// The exact rules (tests/kernels/ref_grain.py implements them independently):
//
// Random streams. mix64 is the SplitMix64 finaliser; grain_key(seed, frame, s) below keys stream s.
// Stream 0 gives the block offsets, stream 1 + c the noise of channel c. Integer arithmetic wraps mod 2^64
// and a negative frame is taken as its two's complement.
//
// Template of channel c (host, double precision):
//   1. Field of kGrainFieldRows x kGrainFieldCols = (16 + 64) x (8 + 64 + 8): the 64x64 crop plus 16 warm-up
//      rows above it and 8 columns on each side. (With only 3 warm-up rows and columns, strongly
//      correlated grain came out up to ~20% lower in variance in the crop's first rows and columns;
//      with 16 and 8 the crop's variance is uniform within measurement noise.)
//   2. Noise, draw i in raster order over the field: with key = grain_key(seed, frame, 1 + c) and
//      u(k) = (double(mix64(key + k) >> 11) + 0.5) * 2^-53 (in (0, 1], double rounding included),
//      noise_i = sqrt(-2 ln u(2i)) * cos(2 pi u(2i + 1)).
//   3. AR filter, in raster order over the whole field, in place:
//        g[y][x] = noise[y][x] + sum_k ar_coeffs[c][k] * g[y + dy_k][x + dx_k]  +  (c > 0 ? ar_luma[c] * g_0[y][x] : 0)
//      with neighbours k = (dy = -lag..0, dx = -lag..lag) in raster order, stopping before (0, 0)
//      (2 * lag * (lag + 1) of them); neighbours outside the field read 0. g_0 is channel 0's filtered
//      field before normalisation. Coefficients are the float values of the spec, widened to double.
//   4. Crop rows [16, 80) and columns [8, 72) and divide by the crop's RMS, sqrt(mean(crop^2)); an
//      all-zero crop stays zero. Stored as float.
//   Stability, checked first: each channel's filter (its own taps, no luma tap) is run as in step 3 over
//   a probe, the channel-0 noise field of seed 0, frame 0. If the probe's crop RMS is above 20 or not
//   finite, std::invalid_argument("ar_coeffs make the grain filter unstable") is thrown. A fixed probe
//   accepts or rejects a filter identically for every seed and frame, so a render cannot fail halfway.
//   Decaying filters stay well below 20 (even a unit root, a single up tap of 1, reaches only 6.4);
//   taps that grow the grain by ~4% per pixel step exceed it, and would fill the crop with a ramp.
//
// Block offsets (blocks of 32x32 pixels, (by, bx) = (y / 32, x / 32), shared by all channels, independent
// of the image size): u = mix64(grain_key(seed, frame, 0) + ((uint64(by) << 32) | uint64(bx))),
// oy = (u >> 32) % 31, ox = (u & 0xffffffff) % 31.
//
// Grain of channel c at pixel (x, y), with lx = x % 32, ly = y % 32 (grain_value):
//   P(by, bx, dy, dx) = template_c[oy(by, bx) + dy][ox(by, bx) + dx] for dx, dy in [0, 34): each block's
//                       patch overhangs 2 pixels right and down into its neighbours
//   H(by, x, dy)      = P(by, bx, dy, lx), or where lx < 2 and bx > 0:
//                       blend(P(by, bx - 1, dy, lx + 32), P(by, bx, dy, lx), lx)
//   G(x, y)           = H(by, x, ly), or where ly < 2 and by > 0: blend(H(by - 1, x, ly + 32), H(by, x, ly), ly)
//   blend(prev, cur, 0) = 27/32 prev + 17/32 cur, blend(prev, cur, 1) = 17/32 prev + 27/32 cur, in float
//   (27^2 + 17^2 ~ 32^2: the variance stays ~99% of the interior's and no seam shows).
//
// Applying it (float math, storage float32 or float16; any strides; out may be image itself):
//   out[n][c] = image + strength_c(image) * G_c, optionally clipped to [lo, hi], for c < spec.channels;
//   other channels (alpha, say) are copied unchanged, unclipped. Batch item n uses frame + n.
//   strength_c(v) = linear interpolation in spec.lut[c] at t = clamp(v, 0, 1) * (kGrainLut - 1); NaN reads
//   entry 0, and the clip keeps NaN as NaN.
//
// The templates and block offsets are small and built on the host (grain_template, grain_offsets);
// backends only run the per-pixel pass, sharing the functions below.
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
constexpr int kGrainWarmRows = 16;  // AR warm-up rows above the template's crop
constexpr int kGrainWarmCols = 8;   // AR warm-up columns left and right of the crop
constexpr int kGrainFieldRows = kGrainWarmRows + kGrainSize;
constexpr int kGrainFieldCols = kGrainWarmCols + kGrainSize + kGrainWarmCols;
// Stability probe: the channel-0 noise field of this seed and frame, and the largest crop RMS it may have.
constexpr uint64_t kGrainProbeSeed = 0;
constexpr int64_t kGrainProbeFrame = 0;
constexpr double kGrainMaxGain = 20.0;

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

// channels x kGrainSize x kGrainSize floats. Throws std::invalid_argument if an AR filter diverges.
std::vector<float> grain_template(const GrainSpec& spec, uint64_t seed, int64_t frame);

// blocks_y x blocks_x x 2 ints: (oy, ox) in [0, kGrainMaxOffset] for each block, shared by all channels.
std::vector<int32_t> grain_offsets(uint64_t seed, int64_t frame, int64_t blocks_y, int64_t blocks_x);

// blend(prev, cur, i) for the pixel i (0 or 1) of an overlap: prev is the earlier block's overhang.
CLARIFX_HD float grain_blend(float prev, float cur, int i) {
  return i == 0 ? (27.f / 32.f) * prev + (17.f / 32.f) * cur : (17.f / 32.f) * prev + (27.f / 32.f) * cur;
}

// P(by, bx, dy, dx): the template read through block (by, bx)'s offset.
CLARIFX_HD float grain_patch(const float* tmpl, const int32_t* offsets, int64_t blocks_x, int64_t by, int64_t bx,
                             int dy, int dx) {
  const int32_t* o = offsets + 2 * (by * blocks_x + bx);
  return tmpl[(o[0] + dy) * kGrainSize + o[1] + dx];
}

// H(by, x, dy): row dy of block row by's patches, blended across the vertical seams.
CLARIFX_HD float grain_blocks_row(const float* tmpl, const int32_t* offsets, int64_t blocks_x, int64_t by, int64_t x,
                                  int dy) {
  const int64_t bx = x / kGrainBlock;
  const int lx = static_cast<int>(x % kGrainBlock);
  const float cur = grain_patch(tmpl, offsets, blocks_x, by, bx, dy, lx);
  if (lx >= kGrainOverlap || bx == 0) return cur;
  return grain_blend(grain_patch(tmpl, offsets, blocks_x, by, bx - 1, dy, lx + kGrainBlock), cur, lx);
}

// G(x, y) of one channel; `tmpl` is that channel's kGrainSize^2 template, `offsets` the frame's
// (blocks_y, blocks_x, 2) block offsets.
CLARIFX_HD float grain_value(const float* tmpl, const int32_t* offsets, int64_t blocks_x, int64_t x, int64_t y) {
  const int64_t by = y / kGrainBlock;
  const int ly = static_cast<int>(y % kGrainBlock);
  const float cur = grain_blocks_row(tmpl, offsets, blocks_x, by, x, ly);
  if (ly >= kGrainOverlap || by == 0) return cur;
  return grain_blend(grain_blocks_row(tmpl, offsets, blocks_x, by - 1, x, ly + kGrainBlock), cur, ly);
}

// strength_c(v): one channel's kGrainLut-entry curve interpolated at clamp(v, 0, 1); the selects are
// ordered so that NaN reads entry 0 and the index stays in range.
CLARIFX_HD float grain_strength(const float* lut, float v) {
  float t = v > 0.f ? v : 0.f;
  t = t < 1.f ? t : 1.f;
  t *= float(kGrainLut - 1);
  int i = static_cast<int>(t);
  i = i < kGrainLut - 2 ? i : kGrainLut - 2;
  const float f = t - float(i);
  return lut[i] + f * (lut[i + 1] - lut[i]);
}

// The output value of one grain channel; clipping keeps NaN as NaN on every backend.
CLARIFX_HD float grain_apply(float v, float strength, float g, bool clip, float lo, float hi) {
  float r = v + strength * g;
  if (clip) {
    r = lo > r ? lo : r;
    r = hi < r ? hi : r;
  }
  return r;
}

}  // namespace clarifx
