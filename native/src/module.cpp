// pybind11 entry point of xnorlab._native. Python validates arguments before calling in.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "xnorlab/isa.h"

namespace py = pybind11;
using namespace xnorlab;

namespace {
constexpr int kAbiVersion = 1;

std::vector<std::string> names(const std::vector<Isa>& isas) {
  std::vector<std::string> out;
  for (Isa i : isas) out.emplace_back(isa_name(i));
  return out;
}
}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "xnorlab native bit-packed XNOR engine";
  m.attr("ABI_VERSION") = kAbiVersion;
  m.attr("COMPILER") = XNORLAB_COMPILER;
  m.attr("BUILD_TYPE") = XNORLAB_BUILD_TYPE;
  m.def("compiled_isas", [] { return names(compiled_isas()); },
        "ISAs whose kernels are compiled into this module.");
  m.def("supported_isas", [] { return names(supported_isas()); },
        "Compiled ISAs that this CPU can run.");
  m.def("active_isa", [] { return std::string(isa_name(active_isa())); },
        "The ISA in use (chosen once; XNORLAB_ISA overrides).");
  m.def("set_active_isa", [](const std::string& name) { set_active_isa(parse_isa(name)); },
        py::arg("name"), "Switch the ISA in use; raises ValueError if unsupported.");
  m.def("probe", [] {
    return std::vector<int>{probe_scalar(),
#if defined(XNORLAB_HAVE_AVX2)
                            probe_avx2(),
#endif
#if defined(XNORLAB_HAVE_AVX512)
                            probe_avx512(),
#endif
    };
  });
}
