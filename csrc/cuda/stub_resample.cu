// TEMPORARY stub: delete when resample.cu and upsample.cu land.
#include "clarifx/ops.h"
namespace clarifx::cuda {
void fused_upsample(const FusedUpsampleArgs&, void*) { fail("fused_upsample: not implemented yet"); }
void resample(const ResampleArgs&, void*) { fail("resample: not implemented yet"); }
}  // namespace clarifx::cuda
