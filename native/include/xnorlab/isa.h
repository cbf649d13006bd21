// ISA identifiers and the run-time dispatch contract shared by every kernel source.
#pragma once
#include <string>
#include <vector>

namespace xnorlab {

enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);
// ISAs whose kernels were compiled into this module (Scalar always).
std::vector<Isa> compiled_isas();
// ISAs the running CPU supports among the compiled ones.
std::vector<Isa> supported_isas();
// The ISA in use: chosen once (best supported, or XNORLAB_ISA if set), cached.
Isa active_isa();
// Override at run time (tests, benchmarks). Throws std::invalid_argument if unsupported.
void set_active_isa(Isa isa);
Isa parse_isa(const std::string& name);

// Per-ISA probe symbols: each kernels_<isa>.cpp defines one, so the linker proves every
// per-ISA translation unit is present.
int probe_scalar();
int probe_avx2();
int probe_avx512();

}  // namespace xnorlab
