// TEMPORARY stub: delete when grain.cpp lands.
#include "clarifx/ops.h"
namespace clarifx {
namespace cpu {
void grain(const GrainArgs&) { fail("grain: not implemented yet"); }
}  // namespace cpu
std::vector<float> grain_template(const GrainSpec&, uint64_t, int64_t) { fail("grain: not implemented yet"); }
std::vector<int32_t> grain_offsets(uint64_t, int64_t, int64_t, int64_t) { fail("grain: not implemented yet"); }
}  // namespace clarifx
