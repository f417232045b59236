// TEMPORARY stub: delete when resample.cpp and upsample.cpp land.
#include "clarifx/ops.h"
namespace clarifx::cpu {
void fused_upsample(const FusedUpsampleArgs&) { fail("fused_upsample: not implemented yet"); }
void resample(const ResampleArgs&) { fail("resample: not implemented yet"); }
}  // namespace clarifx::cpu
