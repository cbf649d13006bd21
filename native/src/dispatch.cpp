// Run-time ISA selection: decided once, cached, overridable by XNORLAB_ISA.
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "xnorlab/isa.h"

namespace xnorlab {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "unknown";
}

std::vector<Isa> compiled_isas() {
  std::vector<Isa> out{Isa::Scalar};
#if defined(XNORLAB_HAVE_AVX2)
  out.push_back(Isa::Avx2);
#endif
#if defined(XNORLAB_HAVE_AVX512)
  out.push_back(Isa::Avx512);
#endif
  return out;
}

static bool cpu_supports(Isa isa) {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt") &&
             __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
    case Isa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512vpopcntdq");
  }
  return false;
#else
  return isa == Isa::Scalar;
#endif
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : compiled_isas()) {
    if (cpu_supports(isa)) out.push_back(isa);
  }
  return out;
}

Isa parse_isa(const std::string& name) {
  if (name == "scalar") return Isa::Scalar;
  if (name == "avx2") return Isa::Avx2;
  if (name == "avx512") return Isa::Avx512;
  throw std::invalid_argument("unknown ISA '" + name + "' (expected scalar, avx2 or avx512)");
}

static std::atomic<int> g_active{-1};

static Isa choose_default() {
  const char* env = std::getenv("XNORLAB_ISA");
  if (env != nullptr && *env != '\0' && std::string(env) != "auto") {
    Isa wanted = parse_isa(env);
    if (!cpu_supports(wanted)) {
      throw std::runtime_error(std::string("XNORLAB_ISA=") + env +
                               " is not supported by this CPU or build");
    }
    return wanted;
  }
  auto sup = supported_isas();
  return sup.back();
}

Isa active_isa() {
  int v = g_active.load();
  if (v < 0) {
    Isa chosen = choose_default();
    g_active.store(static_cast<int>(chosen));
    return chosen;
  }
  return static_cast<Isa>(v);
}

void set_active_isa(Isa isa) {
  if (!cpu_supports(isa)) {
    throw std::invalid_argument(std::string("ISA '") + isa_name(isa) +
                                "' is not supported by this CPU or build");
  }
  g_active.store(static_cast<int>(isa));
}

}  // namespace xnorlab
