// TEMPORARY stub: delete when grain.cu lands.
#include "clarifx/ops.h"
namespace clarifx::cuda {
void grain(const GrainArgs&, void*) { fail("grain: not implemented yet"); }
}  // namespace clarifx::cuda
