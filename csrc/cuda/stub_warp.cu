// TEMPORARY stub: delete when warp.cu lands.
#include "clarifx/ops.h"
namespace clarifx::cuda {
bool warp(const WarpArgs&, void*, bool) { fail("warp: not implemented yet"); }
bool occlusion(const OcclusionArgs&, void*, bool) { fail("occlusion: not implemented yet"); }
}  // namespace clarifx::cuda
