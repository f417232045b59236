// Contribution tables (filters.h, the one definition of the weights) uploaded for the CUDA resampler
// and fused upsampler: copied on the caller's stream, freed on it after the kernels that read them.
#pragma once

#include <vector>

#include "clarifx/filters.h"
#include "common.cuh"

namespace clarifx::cuda {

// What a kernel needs of one axis: output i reads taps inputs from start[i] with weight[i * taps + k].
struct DeviceAxis {
  const int* start;
  const float* weight;
  int taps;
};

class AxisTable {
 public:
  AxisTable(const Contributions& c, cudaStream_t stream)
      : start_(std::vector<int>(c.start.begin(), c.start.end()), stream), weight_(c.weight, stream), taps_(int(c.taps)) {}
  DeviceAxis device() const { return {start_.get(), weight_.get(), taps_}; }

 private:
  StreamBuffer<int> start_;
  StreamBuffer<float> weight_;
  int taps_;
};

// Grid dimensions y and z are limited to 65535; kernels stride over whatever does not fit.
inline unsigned grid_dim_yz(int64_t count) {
  return static_cast<unsigned>(count < 1 ? 1 : (count < 65535 ? count : 65535));
}

}  // namespace clarifx::cuda
