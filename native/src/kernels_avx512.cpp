// Kernels compiled for the avx512 ISA (flags set per source in CMakeLists.txt).
#include "xnorlab/isa.h"

namespace xnorlab {

int probe_avx512() { return static_cast<int>(Isa::Avx512); }

}  // namespace xnorlab
