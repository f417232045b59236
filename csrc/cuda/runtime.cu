// Whether CUDA can run here. cudart is static and loads the driver lazily, so on a machine without a
// GPU or driver this answers false instead of failing to import.
#include "clarifx/ops.h"
#include "common.cuh"

namespace clarifx::cuda {

bool available() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls report their own
    return false;
  }
  return count > 0;
}

}  // namespace clarifx::cuda
