// TEMPORARY: replaced by the real kernels.
#include "clarifx/ops.h"
namespace clarifx {
namespace cpu {
void fused_upsample(const FusedUpsampleArgs&) { fail("fused_upsample: not implemented yet"); }
void resample(const ResampleArgs&) { fail("resample: not implemented yet"); }
void grain(const GrainArgs&) { fail("grain: not implemented yet"); }
}
std::vector<float> grain_template(const GrainSpec&, uint64_t, int64_t) { fail("not implemented"); }
std::vector<int32_t> grain_offsets(uint64_t, int64_t, int64_t, int64_t) { fail("not implemented"); }
}
