// Kernels compiled for the scalar ISA (flags set per source in CMakeLists.txt).
#include "xnorlab/isa.h"

namespace xnorlab {

int probe_scalar() { return static_cast<int>(Isa::Scalar); }

}  // namespace xnorlab
