// pybind11 entry point of xnorlab._native. This module is private: xnorlab.kernels validates
// dtype, device, shape, contiguity and sizes, allocates every buffer, and passes raw addresses
// of contiguous tensors. The checks below are a second line of defence against misuse.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>

#include "xnorlab/engine.h"
#include "xnorlab/isa.h"
#include "xnorlab/kernels.h"
#include "xnorlab/threadpool.h"

namespace py = pybind11;
using namespace xnorlab;

namespace {
constexpr int kAbiVersion = 2;
constexpr int64_t kMaxDim = int64_t{1} << 31;

std::vector<std::string> names(const std::vector<Isa>& isas) {
  std::vector<std::string> out;
  for (Isa i : isas) out.emplace_back(isa_name(i));
  return out;
}

template <typename T>
T* ptr(uintptr_t address, const char* what) {
  if (address == 0) throw std::invalid_argument(std::string("null buffer: ") + what);
  return reinterpret_cast<T*>(address);
}

void check_dims(std::initializer_list<int64_t> dims, const char* what) {
  for (int64_t d : dims) {
    if (d < 1 || d > kMaxDim) throw std::invalid_argument(std::string("bad size in ") + what);
  }
}

using TimingTuple = std::tuple<double, double, double, double>;
TimingTuple as_tuple(const Timing& t) { return {t.pack_s, t.popcount_s, t.scale_s, t.total_s}; }

// Parameter order of xnor_conv2d (a flat list keeps the call cheap; see xnorlab/_native.pyi).
enum P {
  kBatch, kChannels, kHeight, kWidth, kChannelsLast, kOutChannels, kKernelH, kKernelW, kStrideH,
  kStrideW, kPadTop, kPadLeft, kPadBottom, kPadRight, kDilationH, kDilationW, kOutH, kOutW,
  kZeroPadding, kScaling, kX, kWeight, kTapSums, kAlpha, kBias, kOut, kParamCount
};

std::tuple<bool, TimingTuple> conv2d_binding(const std::vector<int64_t>& a) {
  if (a.size() != kParamCount) throw std::invalid_argument("xnor_conv2d: wrong parameter count");
  auto i = [&](P key) { return a[key]; };
  auto u = [&](P key) { return static_cast<uintptr_t>(a[key]); };
  ConvShape s{i(kBatch), i(kChannels), i(kHeight), i(kWidth), i(kChannelsLast) != 0,
              i(kOutChannels), i(kKernelH), i(kKernelW), i(kStrideH), i(kStrideW), i(kPadTop),
              i(kPadLeft), i(kDilationH), i(kDilationW), i(kOutH), i(kOutW),
              i(kZeroPadding) != 0, static_cast<Scaling>(i(kScaling))};
  const int64_t pad_bottom = i(kPadBottom), pad_right = i(kPadRight);
  check_dims({s.batch, s.channels, s.height, s.width, s.out_channels, s.kernel_h, s.kernel_w,
              s.stride_h, s.stride_w, s.dilation_h, s.dilation_w, s.out_h, s.out_w},
             "xnor_conv2d");
  if (s.pad_top < 0 || s.pad_left < 0 || pad_bottom < 0 || pad_right < 0 ||
      i(kScaling) < 0 || i(kScaling) > 2) {
    throw std::invalid_argument("bad padding or scaling in xnor_conv2d");
  }
  const int64_t span_h = s.dilation_h * (s.kernel_h - 1) + 1;
  const int64_t span_w = s.dilation_w * (s.kernel_w - 1) + 1;
  if (s.out_h != (s.height + s.pad_top + pad_bottom - span_h) / s.stride_h + 1 ||
      s.out_w != (s.width + s.pad_left + pad_right - span_w) / s.stride_w + 1 ||
      s.height + s.pad_top + pad_bottom < span_h || s.width + s.pad_left + pad_right < span_w) {
    throw std::invalid_argument("output size does not match the conv geometry");
  }
  ConvBuffers b{ptr<const float>(u(kX), "x"), ptr<const uint64_t>(u(kWeight), "weight"),
                ptr<const int32_t>(u(kTapSums), "tap_sums"), ptr<const float>(u(kAlpha), "alpha"),
                ptr<const float>(u(kBias), "bias"), ptr<float>(u(kOut), "out")};
  ConvResult r;
  {
    py::gil_scoped_release release;
    r = xnor_conv2d(s, b);
  }
  return {r.input_has_nan, as_tuple(r.timing)};
}

TimingTuple bwn_binding(uintptr_t x, int64_t batch, int64_t features, uintptr_t weight,
                        uintptr_t alpha, uintptr_t bias, int64_t out_features, uintptr_t out) {
  check_dims({batch, features, out_features}, "bwn_linear");
  const float* xp = ptr<const float>(x, "x");
  const uint64_t* wp = ptr<const uint64_t>(weight, "weight");
  const float* ap = ptr<const float>(alpha, "alpha");
  const float* bp = ptr<const float>(bias, "bias");
  float* op = ptr<float>(out, "out");
  py::gil_scoped_release release;
  return as_tuple(bwn_linear(xp, batch, features, wp, ap, bp, out_features, op));
}

void pack_weight_binding(uintptr_t w, int64_t out_channels, int64_t channels, int64_t taps,
                         uintptr_t bits) {
  check_dims({out_channels, channels, taps}, "pack_weight");
  const float* wp = ptr<const float>(w, "weight");
  uint64_t* bp = ptr<uint64_t>(bits, "bits");
  py::gil_scoped_release release;
  pack_weight(wp, out_channels, channels, taps, bp);
}

double microkernel_binding(int64_t kernel, int64_t channels, int64_t out_channels,
                           double seconds) {
  check_dims({kernel, channels, out_channels}, "microkernel_rate");
  if (kernel > 15 || !(seconds > 0.0 && seconds <= 10.0)) {
    throw std::invalid_argument("microkernel_rate: kernel must be <= 15 and 0 < seconds <= 10");
  }
  py::gil_scoped_release release;
  return microkernel_rate(kernel, channels, out_channels, seconds);
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "xnorlab native bit-packed XNOR engine (private; use xnorlab.kernels)";
  m.attr("ABI_VERSION") = kAbiVersion;
  m.attr("COMPILER") = XNORLAB_COMPILER;
  m.attr("BUILD_TYPE") = XNORLAB_BUILD_TYPE;
  m.attr("OC_BLOCK") = kOcBlock;
  m.def("compiled_isas", [] { return names(compiled_isas()); },
        "ISAs whose kernels are compiled into this module.");
  m.def("supported_isas", [] { return names(supported_isas()); },
        "Compiled ISAs that this CPU can run.");
  m.def("active_isa", [] { return std::string(isa_name(active_isa())); },
        "The ISA in use (chosen once; XNORLAB_ISA overrides).");
  m.def("set_active_isa", [](const std::string& name) { set_active_isa(parse_isa(name)); },
        py::arg("name"), "Switch the ISA in use; raises ValueError if unsupported.");
  m.def("get_threads", &get_threads, "Threads of the persistent pool.");
  m.def("set_threads", &set_threads, py::arg("threads"), "Resize the pool (1..256).");
  m.def("xnor_conv2d", &conv2d_binding, py::arg("params"),
        "XNOR conv2d on raw buffers; returns (input_has_nan, (pack_s, popcount_s, scale_s, "
        "total_s)).");
  m.def("bwn_linear", &bwn_binding, "BWN linear on raw buffers; returns the timing tuple.");
  m.def("microkernel_rate", &microkernel_binding, py::arg("kernel"), py::arg("channels"),
        py::arg("out_channels"), py::arg("seconds"),
        "Binary MAC/s of the active ISA's conv micro-kernel alone on L1-resident data.");
  m.def("pack_weight", &pack_weight_binding, "Pack a float [O][C][taps] weight in kernel order.");
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
