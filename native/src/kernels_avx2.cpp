// Kernels compiled for the avx2 ISA (flags set per source in CMakeLists.txt).
#include "xnorlab/isa.h"

namespace xnorlab {

int probe_avx2() { return static_cast<int>(Isa::Avx2); }

}  // namespace xnorlab
