// pybind11 entry point of xnorlab.engine._native (private: xnorlab.engine is the API).
// A call takes typed objects, never addresses: ConvParams (validated conv geometry), PackedBuffers
// (the arrays of one packed weight, validated once) and numpy arrays (views of torch tensors,
// held by the call for its duration). Every dtype, shape, layout and size is checked here,
// whatever the facade checked, and outputs are allocated here once their size is bounded.
// Bad values raise ValueError, bad types and dtypes TypeError; the facade maps both.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <sys/syscall.h>
#include <unistd.h>

#include "xnorlab/engine.h"
#include "xnorlab/isa.h"
#include "xnorlab/kernels.h"
#include "xnorlab/threadpool.h"

namespace py = pybind11;
using namespace xnorlab;

namespace {
constexpr int kAbiVersion = 11;

using Pair = std::array<int64_t, 2>;
using Shape4 = std::array<int64_t, 4>;

[[noreturn]] void value_error(const std::string& message) { throw py::value_error(message); }

std::vector<std::string> names(const std::vector<Isa>& isas) {
  std::vector<std::string> out;
  for (Isa i : isas) out.emplace_back(isa_name(i));
  return out;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check_size(int64_t value, const char* name, int64_t minimum = 1) {
  if (value < minimum || value > kMaxDim) {
    value_error(std::string(name) + " must be in " + std::to_string(minimum) + ".." +
                std::to_string(kMaxDim) + ", got " + std::to_string(value));
  }
}

// Product of factors in 1..kMaxDim, or -1 once it exceeds `limit` (so it never overflows).
int64_t product_within(std::initializer_list<int64_t> factors, int64_t limit) {
  int64_t product = 1;
  for (int64_t f : factors) {
    if (f > limit / product) return -1;
    product *= f;
  }
  return product;
}

void check_elements(std::initializer_list<int64_t> factors, const std::string& what) {
  if (product_within(factors, kMaxElements) < 0) {
    value_error(what + " is too large (more than " + std::to_string(kMaxElements) + " elements)");
  }
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + (shape.size() == 1 ? ",)" : ")");
}

// The data of `a` after checking its dtype (T), shape, alignment and density: elements laid
// out without gaps, dimension order[0] outermost (C order when `order` is empty); the strides
// of size-1 dimensions are ignored, as numpy's and torch's contiguity flags do.
template <typename T>
T* dense(const py::array& a, const std::vector<int64_t>& shape, const std::string& what,
         const std::vector<int>& order = {}) {
  if (!py::isinstance<py::array_t<T>>(a)) {
    throw py::type_error(what + " must be " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(a.dtype())));
  }
  const auto ndim = static_cast<size_t>(a.ndim());
  bool same = ndim == shape.size();
  for (size_t d = 0; same && d < ndim; ++d) same = a.shape(static_cast<py::ssize_t>(d)) == shape[d];
  if (!same) {
    std::vector<int64_t> got(a.shape(), a.shape() + ndim);
    value_error(what + " must have shape " + shape_text(shape) + ", got " + shape_text(got));
  }
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) value_error(what + " is not aligned");
  int64_t expected = sizeof(T);
  for (size_t k = ndim; k-- > 0;) {
    const auto d = static_cast<py::ssize_t>(order.empty() ? k : static_cast<size_t>(order[k]));
    if (a.shape(d) != 1 && a.strides(d) != expected) {
      value_error(what + " is not dense in the expected memory order");
    }
    expected *= a.shape(d);
  }
  return static_cast<T*>(const_cast<void*>(a.data()));
}

// An uninitialized float32 array of `shape` (strides in elements) over a 64-byte aligned buffer:
// the AVX-512 kernel writes large outputs with streaming stores of whole aligned lines.
py::array aligned_floats(const std::vector<py::ssize_t>& shape,
                         const std::vector<py::ssize_t>& strides, int64_t count) {
  const auto bytes = static_cast<size_t>((count * 4 + 63) / 64 * 64);
  std::unique_ptr<void, decltype(&std::free)> data(std::aligned_alloc(64, bytes), &std::free);
  if (!data) throw std::bad_alloc();
  void* ptr = data.get();
  py::capsule owner(ptr, [](void* p) { std::free(p); });
  data.release();  // the capsule frees it with the array
  std::vector<py::ssize_t> byte_strides;
  for (py::ssize_t s : strides) byte_strides.push_back(s * 4);
  return py::array(py::dtype::of<float>(), shape, byte_strides, ptr, owner);
}

Scaling parse_scaling(const std::string& name) {
  if (name == "kmap") return Scaling::Kmap;
  if (name == "scalar") return Scaling::Scalar;
  if (name == "none") return Scaling::None;
  value_error("scaling must be 'kmap', 'scalar' or 'none', got '" + name + "'");
}

const char* scaling_name(Scaling s) {
  return s == Scaling::Kmap ? "kmap" : s == Scaling::Scalar ? "scalar" : "none";
}

bool parse_zero_padding(const std::string& name) {
  if (name == "zero") return true;
  if (name == "one") return false;
  value_error("pad_mode must be 'zero' or 'one', got '" + name + "'");
}

// The validated geometry of one conv call; immutable, so the facade reuses it per input shape.
struct ConvParams {
  ConvShape s;
  int64_t pad_bottom, pad_right;
};

int64_t padded_extent(int64_t size, int64_t before, int64_t after, int64_t span,
                      const char* axis) {
  const int64_t padded = size + before + after;
  if (padded > kMaxDim) value_error(std::string("padded input ") + axis + " is too large");
  if (span > padded) {
    value_error(std::string("the dilated kernel (") + std::to_string(span) +
                ") does not fit the padded input " + axis + " (" + std::to_string(padded) + ")");
  }
  return padded;
}

ConvParams make_conv_params(const Shape4& input, bool channels_last, int64_t out_channels,
                            const Pair& kernel, const Pair& stride, const Pair& dilation,
                            int64_t pad_top, int64_t pad_bottom, int64_t pad_left,
                            int64_t pad_right, const std::string& pad_mode,
                            const std::string& scaling) {
  const char* input_names[] = {"batch", "channels", "height", "width"};
  for (int d = 0; d < 4; ++d) check_size(input[d], input_names[d]);
  check_size(out_channels, "out_channels");
  check_size(kernel[0], "kernel_h"), check_size(kernel[1], "kernel_w");
  check_size(stride[0], "stride_h"), check_size(stride[1], "stride_w");
  check_size(dilation[0], "dilation_h"), check_size(dilation[1], "dilation_w");
  check_size(pad_top, "pad_top", 0), check_size(pad_bottom, "pad_bottom", 0);
  check_size(pad_left, "pad_left", 0), check_size(pad_right, "pad_right", 0);
  const auto [batch, channels, height, width] = input;
  if (product_within({channels, kernel[0], kernel[1]}, kMaxDim) < 0) {
    value_error("K = channels * kernel_h * kernel_w is too large");
  }
  const int64_t span_h = dilation[0] * (kernel[0] - 1) + 1;  // < 2^62: no overflow
  const int64_t span_w = dilation[1] * (kernel[1] - 1) + 1;
  const int64_t padded_h = padded_extent(height, pad_top, pad_bottom, span_h, "height");
  const int64_t padded_w = padded_extent(width, pad_left, pad_right, span_w, "width");
  const int64_t out_h = (padded_h - span_h) / stride[0] + 1;
  const int64_t out_w = (padded_w - span_w) / stride[1] + 1;
  check_elements({batch, channels, height, width}, "conv input");
  check_elements({batch, out_channels, out_h, out_w}, "conv output");
  // The packed input with its halo (and the K map rows, height x out_w) fit in this bound.
  check_elements({batch, padded_h, padded_w, ceil_div(channels, 64)}, "padded input");
  ConvShape s{batch,     channels,  height,     width,       channels_last, out_channels,
              kernel[0], kernel[1], stride[0],  stride[1],   pad_top,       pad_left,
              dilation[0], dilation[1], out_h,  out_w,       parse_zero_padding(pad_mode),
              parse_scaling(scaling)};
  return ConvParams{s, pad_bottom, pad_right};
}

std::string repr(const ConvParams& p) {
  const ConvShape& s = p.s;
  auto pair = [](int64_t a, int64_t b) {
    return "(" + std::to_string(a) + ", " + std::to_string(b) + ")";
  };
  return "ConvParams(input_shape=" + shape_text({s.batch, s.channels, s.height, s.width}) +
         ", channels_last=" + (s.channels_last ? "True" : "False") +
         ", out_channels=" + std::to_string(s.out_channels) +
         ", kernel=" + pair(s.kernel_h, s.kernel_w) + ", stride=" + pair(s.stride_h, s.stride_w) +
         ", dilation=" + pair(s.dilation_h, s.dilation_w) + ", padding(top, bottom, left, " +
         "right)=(" + std::to_string(s.pad_top) + ", " + std::to_string(p.pad_bottom) + ", " +
         std::to_string(s.pad_left) + ", " + std::to_string(p.pad_right) + "), pad_mode='" +
         (s.zero_padding ? "zero" : "one") + "', scaling='" + scaling_name(s.scaling) + "')";
}

// The arrays of one packed weight (kernel order, see kernels.h), validated once; holding them
// keeps their memory alive while the object lives.
struct PackedBuffers {
  py::array bits, tap_sums, alpha, bias;
  int64_t out_channels, in_channels, taps, words, blocks;
  const uint64_t* bits_data;
  const int32_t* tap_sums_data;
  const float* alpha_data;
  const float* bias_data;
};

PackedBuffers make_packed_buffers(const py::array& bits, const py::array& tap_sums,
                                  const py::array& alpha, const py::array& bias,
                                  int64_t out_channels, int64_t in_channels) {
  check_size(out_channels, "out_channels");
  check_size(in_channels, "in_channels");
  if (bits.ndim() != 4) value_error("bits must have 4 dims (blocks, taps, words, 32)");
  const int64_t taps = bits.shape(1), words = ceil_div(in_channels, 64);
  const int64_t blocks = ceil_div(out_channels, kOcBlock);
  check_size(taps, "taps");
  if (product_within({taps, in_channels}, kMaxDim) < 0) value_error("K = taps * C is too large");
  check_elements({blocks, taps, words, kOcBlock}, "packed weight");
  PackedBuffers w{bits, tap_sums, alpha, bias, out_channels, in_channels, taps, words, blocks,
                  nullptr, nullptr, nullptr, nullptr};
  w.bits_data = reinterpret_cast<const uint64_t*>(
      dense<int64_t>(bits, {blocks, taps, words, kOcBlock}, "bits"));
  w.tap_sums_data = dense<int32_t>(tap_sums, {blocks, taps, kOcBlock}, "tap_sums");
  w.alpha_data = dense<float>(alpha, {blocks * kOcBlock}, "alpha");
  w.bias_data = dense<float>(bias, {blocks * kOcBlock}, "bias");
  return w;
}

// The bias of a call: the packed one, or an override padded to whole blocks.
const float* call_bias(const PackedBuffers& w, const py::object& bias) {
  if (bias.is_none()) return w.bias_data;
  if (!py::isinstance<py::array>(bias)) throw py::type_error("bias must be a numpy array or None");
  return dense<float>(bias.cast<py::array>(), {w.blocks * kOcBlock}, "bias");
}

using TimingTuple = std::tuple<double, double, double, double>;
TimingTuple as_tuple(const Timing& t) { return {t.pack_s, t.popcount_s, t.scale_s, t.total_s}; }

// NHWC output of a conv, presented as an (N, C_out, H_out, W_out) array (channels_last).
py::array conv_output(const ConvShape& s) {
  const int64_t o = s.out_channels;
  return aligned_floats({s.batch, o, s.out_h, s.out_w},
                        {s.out_h * s.out_w * o, 1, s.out_w * o, o},
                        s.batch * s.out_h * s.out_w * o);
}

// The fused epilogue of a conv call: a residual added to the output, then a clamp.
struct Epilogue {
  const float* residual = nullptr;
  float clamp_lo = -__builtin_inff(), clamp_hi = __builtin_inff();
};

// The fused prologue of a conv call: clamp(x * scale[c] + shift[c], lo, hi) before the sign.
struct Prologue {
  const float* scale = nullptr;
  const float* shift = nullptr;
  float lo = -__builtin_inff(), hi = __builtin_inff();
};

// A plain conv call into `out` (the Linear calls, which shape their own output).
py::tuple run_conv(const ConvShape& s, const PackedBuffers& w, const float* x,
                   const float* bias, py::array out) {
  ConvBuffers b{x, w.bits_data, w.tap_sums_data, w.alpha_data, bias,
                static_cast<float*>(out.mutable_data())};
  ConvResult r;
  {
    py::gil_scoped_release release;
    r = xnor_conv2d(s, b);
  }
  return py::make_tuple(std::move(out), r.input_has_nan, as_tuple(r.timing));
}

// The packed input of the conv `next` (its input the output of the conv of shape `s`): the
// sign words with their halo and the per-block sums of |x|, zeroed; checked to fit.
struct BitArrays {
  py::array bits, block_absum;
  BitOutput target;
};

BitArrays bit_output(const ConvShape& s, const ConvParams& next) {
  const ConvShape& n = next.s;
  if (n.batch != s.batch || n.channels != s.out_channels || n.height != s.out_h ||
      n.width != s.out_w) {
    value_error("bits_for: the next conv's input is not this conv's output");
  }
  const int64_t blocks = ceil_div(n.channels, kOcBlock), pixels = n.batch * n.height * n.width;
  check_elements({pixels, blocks}, "bit output sums");
  BitArrays a{py::array_t<int64_t>(packed_input_words(n)),
              py::array_t<float>({pixels, blocks}), BitOutput{}};
  std::memset(a.bits.mutable_data(), 0, static_cast<size_t>(a.bits.nbytes()));
  a.target = BitOutput{&next.s, static_cast<uint64_t*>(a.bits.mutable_data()),
                       static_cast<float*>(a.block_absum.mutable_data())};
  return a;
}

// A conv call whose input is `x` (float) or `packed` (the previous conv's bit output), and
// whose output is a float array or, with `next`, that conv's packed input (bits, sums).
py::tuple run_conv_call(const ConvShape& s, const PackedBuffers& w, const float* x,
                        const PackedInput* packed, const float* bias, const Epilogue& e,
                        const Prologue& in, const ConvParams* next) {
  py::array out;
  BitArrays bits;
  if (next != nullptr) {
    bits = bit_output(s, *next);
  } else {
    out = conv_output(s);
  }
  ConvBuffers b{x, w.bits_data, w.tap_sums_data, w.alpha_data, bias,
                next != nullptr ? nullptr : static_cast<float*>(out.mutable_data()), e.residual,
                e.clamp_lo, e.clamp_hi, in.scale, in.shift, in.lo, in.hi};
  const BitOutput* target = next != nullptr ? &bits.target : nullptr;
  ConvResult r;
  {
    py::gil_scoped_release release;
    r = packed != nullptr ? xnor_conv2d_packed(s, b, *packed, target) : xnor_conv2d(s, b, target);
  }
  py::object result = out;
  if (next != nullptr) result = py::make_tuple(bits.bits, bits.block_absum);
  return py::make_tuple(result, r.input_has_nan, as_tuple(r.timing));
}

const ConvParams* next_params(const py::object& bits_for) {
  if (bits_for.is_none()) return nullptr;
  if (!py::isinstance<ConvParams>(bits_for)) throw py::type_error("bits_for must be ConvParams");
  return &bits_for.cast<const ConvParams&>();
}

void check_weight(const ConvShape& s, const PackedBuffers& w, const char* op) {
  if (s.channels != w.in_channels || s.out_channels != w.out_channels ||
      s.kernel_h * s.kernel_w != w.taps) {
    value_error(std::string(op) + ": the parameters do not match the packed weight");
  }
}

// (lo, hi) of a clamp argument: two numbers, lo <= hi, neither NaN.
std::array<float, 2> clamp_bounds(const py::object& clamp, const char* what) {
  const auto bounds = clamp.cast<std::array<double, 2>>();
  if (!(bounds[0] <= bounds[1])) {
    value_error(std::string(what) + " must be (lo, hi) with lo <= hi, no NaN");
  }
  return {static_cast<float>(bounds[0]), static_cast<float>(bounds[1])};
}

// A residual (None or float32 NHWC of the output's shape) and clamp bounds (None or lo <= hi,
// neither NaN) of a conv call.
Epilogue conv_epilogue(const ConvShape& s, const py::object& residual, const py::object& clamp) {
  Epilogue e;
  if (!residual.is_none()) {
    if (!py::isinstance<py::array>(residual)) {
      throw py::type_error("residual must be a numpy array or None");
    }
    e.residual = dense<float>(residual.cast<py::array>(),
                              {s.batch, s.out_channels, s.out_h, s.out_w}, "residual",
                              {0, 2, 3, 1});
  }
  if (!clamp.is_none()) {
    const auto bounds = clamp_bounds(clamp, "clamp");
    e.clamp_lo = bounds[0];
    e.clamp_hi = bounds[1];
  }
  return e;
}

// A prologue's per-channel scale and shift (both None, or both float32 of `channels`) and its
// clamp (None or lo <= hi); it needs NHWC input (the engine transforms pixel chunks).
Prologue conv_prologue(const ConvShape& s, const py::object& scale, const py::object& shift,
                       const py::object& clamp) {
  Prologue in;
  if (scale.is_none() != shift.is_none()) {
    value_error("prologue_scale and prologue_shift must be given together");
  }
  if (scale.is_none()) {
    if (!clamp.is_none()) value_error("prologue_clamp needs prologue_scale and prologue_shift");
    return in;
  }
  if (!py::isinstance<py::array>(scale) || !py::isinstance<py::array>(shift)) {
    throw py::type_error("prologue_scale and prologue_shift must be numpy arrays or None");
  }
  if (!s.channels_last) value_error("a prologue needs channels_last (NHWC) input");
  in.scale = dense<float>(scale.cast<py::array>(), {s.channels}, "prologue_scale");
  in.shift = dense<float>(shift.cast<py::array>(), {s.channels}, "prologue_shift");
  if (!clamp.is_none()) {
    const auto bounds = clamp_bounds(clamp, "prologue_clamp");
    in.lo = bounds[0];
    in.hi = bounds[1];
  }
  return in;
}

py::tuple conv2d_binding(const ConvParams& p, const PackedBuffers& w, const py::array& x,
                         const py::object& bias, const py::object& residual,
                         const py::object& clamp, const py::object& prologue_scale,
                         const py::object& prologue_shift, const py::object& prologue_clamp,
                         const py::object& bits_for) {
  const ConvShape& s = p.s;
  check_weight(s, w, "xnor_conv2d");
  const std::vector<int> nhwc{0, 2, 3, 1};
  const float* xp = dense<float>(x, {s.batch, s.channels, s.height, s.width}, "input",
                                 s.channels_last ? nhwc : std::vector<int>{});
  const float* bp = call_bias(w, bias);
  const Epilogue e = conv_epilogue(s, residual, clamp);
  const Prologue in = conv_prologue(s, prologue_scale, prologue_shift, prologue_clamp);
  return run_conv_call(s, w, xp, nullptr, bp, e, in, next_params(bits_for));
}

// The conv on the packed input another conv's bit output made for it (`bits_for` this call's
// params): `bits` (int64, packed_input_words) and `block_absum` (float32, pixels x blocks).
py::tuple conv2d_packed_binding(const ConvParams& p, const PackedBuffers& w,
                                const py::array& bits, const py::array& block_absum,
                                const py::object& bias, const py::object& residual,
                                const py::object& clamp, const py::object& bits_for) {
  const ConvShape& s = p.s;
  check_weight(s, w, "xnor_conv2d_packed");
  const int64_t blocks = ceil_div(s.channels, kOcBlock);
  const PackedInput packed{
      reinterpret_cast<const uint64_t*>(dense<int64_t>(bits, {packed_input_words(s)}, "bits")),
      dense<float>(block_absum, {s.batch * s.height * s.width, blocks}, "block_absum")};
  const float* bp = call_bias(w, bias);
  const Epilogue e = conv_epilogue(s, residual, clamp);
  return run_conv_call(s, w, nullptr, &packed, bp, e, Prologue{}, next_params(bits_for));
}

constexpr int kMaxLinearRank = 8;

// The input (..., F) and output (..., O) of a Linear call, checked against the packed weight;
// its rows M are the product of the leading dimensions.
struct LinearIo {
  const float* x;
  int64_t rows;
  py::array out;
};

LinearIo linear_io(const PackedBuffers& w, const py::array& x, const char* what) {
  const std::string op(what);
  if (w.taps != 1) value_error(op + ": the packed weight is not a Linear weight");
  const auto rank = static_cast<int>(x.ndim());
  if (rank < 1 || rank > kMaxLinearRank) value_error(op + ": input must have 1..8 dims");
  std::vector<int64_t> shape(x.shape(), x.shape() + rank);
  shape.back() = w.in_channels;  // the features the weight expects
  std::vector<py::ssize_t> out_shape(shape.begin(), shape.end()), out_strides(shape.size());
  out_shape.back() = w.out_channels;
  int64_t rows = 1;
  for (int d = rank - 2; d >= 0; --d) {
    check_size(shape[d], "input dimension");
    out_strides[d] = rows * w.out_channels;
    rows = product_within({rows, shape[d]}, kMaxDim);
    if (rows < 0) value_error(op + ": more than " + std::to_string(kMaxDim) + " input rows");
  }
  out_strides.back() = 1;
  check_elements({rows, w.in_channels}, op + " input");
  check_elements({rows, w.out_channels}, op + " output");
  check_elements({rows, w.words, 64}, op + " padded input");
  const float* xp = dense<float>(x, shape, "input");
  return LinearIo{xp, rows, aligned_floats(out_shape, out_strides, rows * w.out_channels)};
}

// Linear as a 1x1 conv over an image of M x 1 pixels with F channels (the rows are its NHWC
// memory). Beta is the mean |x| of each row for "kmap" and "scalar" alike: the 1x1 K map.
py::tuple linear_binding(const PackedBuffers& w, const py::array& x, const std::string& scaling,
                         const py::object& bias) {
  LinearIo io = linear_io(w, x, "xnor_linear");
  const float* bp = call_bias(w, bias);
  const Scaling mode = parse_scaling(scaling) == Scaling::None ? Scaling::None : Scaling::Kmap;
  const ConvShape s{1, w.in_channels, io.rows, 1, true, w.out_channels, 1, 1, 1, 1, 0, 0, 1, 1,
                    io.rows, 1, true, mode};
  return run_conv(s, w, io.x, bp, std::move(io.out));
}

py::tuple bwn_binding(const PackedBuffers& w, const py::array& x, const py::object& bias) {
  LinearIo io = linear_io(w, x, "bwn_linear");
  const float* bp = call_bias(w, bias);
  float* op = static_cast<float*>(io.out.mutable_data());
  Timing t;
  {
    py::gil_scoped_release release;
    t = bwn_linear(io.x, io.rows, w.in_channels, w.bits_data, w.alpha_data, bp, w.out_channels,
                   op);
  }
  return py::make_tuple(std::move(io.out), as_tuple(t));
}

// Max pool of a float32 NHWC input (N, C, H, W) into a new NHWC array; torch's rules for the
// geometry: padding at most half the kernel, no dilation, floor division (no ceil mode).
py::array max_pool_binding(const py::array& x, const Pair& kernel, const Pair& stride,
                           const Pair& padding, const py::object& clamp) {
  if (x.ndim() != 4) value_error("max_pool2d: input must have 4 dims (N, C, H, W)");
  const Shape4 in{x.shape(0), x.shape(1), x.shape(2), x.shape(3)};
  const char* input_names[] = {"batch", "channels", "height", "width"};
  for (int d = 0; d < 4; ++d) check_size(in[d], input_names[d]);
  check_elements({in[0], in[1], in[2], in[3]}, "max_pool2d input");
  check_size(kernel[0], "kernel_h"), check_size(kernel[1], "kernel_w");
  check_size(stride[0], "stride_h"), check_size(stride[1], "stride_w");
  check_size(padding[0], "pad_h", 0), check_size(padding[1], "pad_w", 0);
  if (2 * padding[0] > kernel[0] || 2 * padding[1] > kernel[1]) {
    value_error("max_pool2d: padding must be at most half the kernel size");
  }
  const int64_t padded_h = in[2] + 2 * padding[0], padded_w = in[3] + 2 * padding[1];
  if (kernel[0] > padded_h || kernel[1] > padded_w) {
    value_error("max_pool2d: the kernel does not fit the padded input");
  }
  PoolShape s{in[0], in[1], in[2], in[3], kernel[0], kernel[1], stride[0], stride[1],
              padding[0], padding[1], (padded_h - kernel[0]) / stride[0] + 1,
              (padded_w - kernel[1]) / stride[1] + 1};
  if (!clamp.is_none()) {
    const auto bounds = clamp_bounds(clamp, "max_pool2d: clamp");
    s.clamp_lo = bounds[0];
    s.clamp_hi = bounds[1];
  }
  const float* xp = dense<float>(x, {in[0], in[1], in[2], in[3]}, "input", {0, 2, 3, 1});
  const int64_t c = s.channels;
  py::array out = aligned_floats({s.batch, c, s.out_h, s.out_w},
                                 {s.out_h * s.out_w * c, 1, s.out_w * c, c},
                                 s.batch * s.out_h * s.out_w * c);
  auto* op = static_cast<float*>(out.mutable_data());
  {
    py::gil_scoped_release release;
    max_pool2d_nhwc(s, xp, op);
  }
  return out;
}

// Packs a float weight (O, C, taps) into `bits` (blocks, taps, words, 32), kernel order.
void pack_weight_binding(const py::array& weight, const py::array& bits) {
  if (weight.ndim() != 3) value_error("pack_weight: weight must have 3 dims (O, C, taps)");
  const int64_t out_channels = weight.shape(0), channels = weight.shape(1), taps = weight.shape(2);
  check_size(out_channels, "out_channels"), check_size(channels, "channels");
  check_size(taps, "taps");
  check_elements({out_channels, channels, taps}, "pack_weight: weight");
  const int64_t blocks = ceil_div(out_channels, kOcBlock), words = ceil_div(channels, 64);
  check_elements({blocks, taps, words, kOcBlock}, "pack_weight: bits");
  const float* wp = dense<float>(weight, {out_channels, channels, taps}, "weight");
  if (!bits.writeable()) value_error("pack_weight: bits must be writeable");
  auto* bp = reinterpret_cast<uint64_t*>(
      dense<int64_t>(bits, {blocks, taps, words, kOcBlock}, "bits"));
  py::gil_scoped_release release;
  pack_weight(wp, out_channels, channels, taps, bp);
}

double microkernel_binding(int64_t kernel, int64_t channels, int64_t out_channels,
                           double seconds) {
  check_size(kernel, "kernel"), check_size(channels, "channels");
  check_size(out_channels, "out_channels");
  if (kernel > 15 || !(seconds > 0.0 && seconds <= 10.0)) {
    value_error("microkernel_rate: kernel must be <= 15 and 0 < seconds <= 10");
  }
  py::gil_scoped_release release;
  return microkernel_rate(kernel, channels, out_channels, seconds);
}

// One conv of a ConvChain: its validated call, and where its operands come from. Slots number
// the chain's values: 0 is the chain's input, k the output of step k - 1.
struct ChainStep {
  ConvParams params;
  PackedBuffers weight;
  py::object prologue_arrays;  // holds the prologue's scale and shift alive
  Prologue prologue;
  Epilogue epilogue;  // the clamp; the residual pointer is set per run
  int64_t input = 0, residual = -1;
};

// Several conv calls run as one native call, the values between them in buffers the chain owns
// and reuses: no Python, no allocation and no page fault between the calls of a network. A
// buffer is reused as soon as its value's last reader ran, the one freed last first, so each
// step writes memory that is still in cache (as a fresh allocation per call did).
class ConvChain {
 public:
  explicit ConvChain(std::vector<ChainStep> steps) : steps_(std::move(steps)) { plan_buffers(); }

  const ConvShape& input_shape() const { return steps_.front().params.s; }
  const ConvShape& output_shape() const { return steps_.back().params.s; }
  size_t size() const { return steps_.size(); }

  // The last step's output (a new array); per step whether its input had NaN, and its timing.
  // `serial`: every step on the calling thread alone (SerialScope).
  py::tuple run(const py::array& x, bool serial) {
    const ConvShape& in = input_shape();
    const float* xp = dense<float>(x, {in.batch, in.channels, in.height, in.width}, "input",
                                   {0, 2, 3, 1});
    py::array out = conv_output(output_shape());
    std::vector<ConvResult> results(steps_.size());
    {
      py::gil_scoped_release release;
      // One run at a time: the runs share the value buffers.
      const std::lock_guard<std::mutex> lock(mutex_);
      std::optional<SerialScope> scope;
      if (serial) scope.emplace();
      if (buffers_.empty()) allocate_buffers();
      std::vector<const float*> slots{xp};
      for (size_t k = 0; k < steps_.size(); ++k) {
        const ChainStep& st = steps_[k];
        float* dst = k + 1 == steps_.size() ? static_cast<float*>(out.mutable_data())
                                             : buffers_[buffer_of_[k]].get();
        const PackedBuffers& w = st.weight;
        const Prologue& p = st.prologue;
        ConvBuffers b{slots[static_cast<size_t>(st.input)], w.bits_data, w.tap_sums_data,
                      w.alpha_data, w.bias_data, dst,
                      st.residual < 0 ? nullptr : slots[static_cast<size_t>(st.residual)],
                      st.epilogue.clamp_lo, st.epilogue.clamp_hi, p.scale, p.shift, p.lo, p.hi};
        results[k] = xnor_conv2d(st.params.s, b);
        slots.push_back(dst);
      }
    }
    py::list nan, timings;
    for (const ConvResult& r : results) {
      nan.append(r.input_has_nan);
      timings.append(as_tuple(r.timing));
    }
    return py::make_tuple(std::move(out), std::move(nan), std::move(timings));
  }

 private:
  static size_t output_bytes(const ConvShape& s) {
    return static_cast<size_t>((s.batch * s.out_h * s.out_w * s.out_channels * 4 + 63) / 64 * 64);
  }

  // buffer_of_[k]: the buffer step k writes (all but the last step); a value's buffer returns
  // to the free list after the last step that reads it.
  void plan_buffers() {
    const size_t n = steps_.size();
    std::vector<size_t> last_read(n, 0);  // per step's output (slot k + 1)
    for (size_t k = 0; k < n; ++k) {
      for (int64_t slot : {steps_[k].input, steps_[k].residual}) {
        if (slot >= 1) last_read[static_cast<size_t>(slot - 1)] = k;
      }
    }
    std::vector<size_t> free_list;
    buffer_of_.assign(n, 0);
    for (size_t k = 0; k + 1 < n; ++k) {
      if (free_list.empty()) {
        free_list.push_back(buffer_bytes_.size());
        buffer_bytes_.push_back(0);
      }
      buffer_of_[k] = free_list.back();
      free_list.pop_back();
      buffer_bytes_[buffer_of_[k]] =
          std::max(buffer_bytes_[buffer_of_[k]], output_bytes(steps_[k].params.s));
      for (size_t j = 0; j < k + 1; ++j) {  // values whose last reader is step k
        if (last_read[j] == k && j != k) free_list.push_back(buffer_of_[j]);
      }
      if (last_read[k] < k + 1) free_list.push_back(buffer_of_[k]);  // never read
    }
  }

  void allocate_buffers() {
    for (size_t bytes : buffer_bytes_) {
      float* data = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (data == nullptr) throw std::bad_alloc();
      buffers_.emplace_back(data, &std::free);
    }
  }

  std::vector<ChainStep> steps_;
  std::vector<size_t> buffer_of_, buffer_bytes_;
  std::vector<std::unique_ptr<float, decltype(&std::free)>> buffers_;
  std::mutex mutex_;
};

bool same_image(const ConvShape& reader, const ConvShape& writer) {
  return reader.batch == writer.batch && reader.channels == writer.out_channels &&
         reader.height == writer.out_h && reader.width == writer.out_w;
}

// A step's operand slot: an int in 0..k (None: no operand, -1), whose value has `fits` shape.
int64_t chain_slot(const py::object& slot, size_t k, const std::vector<ChainStep>& steps,
                   const char* what, const std::function<bool(const ConvShape*)>& fits) {
  const std::string where = "conv chain step " + std::to_string(k) + ": " + what;
  if (!py::isinstance<py::int_>(slot)) throw py::type_error(where + " must be an int");
  const auto v = slot.cast<int64_t>();
  if (v < 0 || v > static_cast<int64_t>(k)) {
    value_error(where + " must name the chain input (0) or an earlier step's output (1.." +
                std::to_string(k) + "), got " + std::to_string(v));
  }
  if (!fits(v == 0 ? nullptr : &steps[static_cast<size_t>(v - 1)].params.s)) {
    value_error(where + " " + std::to_string(v) + " does not have the shape this step needs");
  }
  return v;
}

// steps: (params, weight, input slot, residual slot or None, clamp, prologue_scale,
// prologue_shift, prologue_clamp) per conv, NHWC input, the packed bias; every step reading
// the chain input (slot 0) must take the same shape, every other operand the shape its step
// needs.
std::unique_ptr<ConvChain> make_conv_chain(const py::list& items) {
  if (items.empty()) value_error("a conv chain needs at least one step");
  std::vector<ChainStep> steps;
  for (size_t k = 0; k < items.size(); ++k) {
    const auto item = items[k].cast<py::tuple>();
    if (item.size() != 8) value_error("a conv chain step is 8 items");
    ChainStep st{item[0].cast<ConvParams>(), item[1].cast<PackedBuffers>(), py::none(), {}, {}};
    const ConvShape& s = st.params.s;
    check_weight(s, st.weight, "conv chain");
    if (!s.channels_last) value_error("a conv chain runs channels_last (NHWC) inputs only");
    const ConvShape* first = k == 0 ? &s : &steps.front().params.s;
    const auto input_fits = [&](const ConvShape* w) {
      if (w != nullptr) return same_image(s, *w);
      return s.batch == first->batch && s.channels == first->channels &&
             s.height == first->height && s.width == first->width;
    };
    if (k == 0 && !(py::isinstance<py::int_>(item[2]) && item[2].cast<int64_t>() == 0)) {
      value_error("conv chain step 0 must read the chain input (slot 0)");
    }
    st.input = chain_slot(item[2], k, steps, "input", input_fits);
    if (!item[3].is_none()) {
      const auto residual_fits = [&](const ConvShape* w) {
        if (w == nullptr) {
          return first->batch == s.batch && first->channels == s.out_channels &&
                 first->height == s.out_h && first->width == s.out_w;
        }
        return w->batch == s.batch && w->out_channels == s.out_channels && w->out_h == s.out_h &&
               w->out_w == s.out_w;
      };
      st.residual = chain_slot(item[3], k, steps, "residual", residual_fits);
    }
    st.epilogue = conv_epilogue(s, py::none(), item[4]);
    st.prologue = conv_prologue(s, item[5], item[6], item[7]);
    st.prologue_arrays = py::make_tuple(item[5], item[6]);
    steps.push_back(std::move(st));
  }
  return std::make_unique<ConvChain>(std::move(steps));
}

void bind_conv_chain(py::module_& m) {
  py::class_<ConvChain>(m, "ConvChain",
                        "Several XNOR conv calls run as one (validated once, on creation).")
      .def(py::init(&make_conv_chain), py::arg("steps"))
      .def("__len__", &ConvChain::size)
      .def("run", &ConvChain::run, py::arg("x").noconvert(), py::arg("serial") = false,
           "Run the chain on x (float32 NHWC), with serial=True on the calling thread alone; "
           "returns (last output, [input_has_nan per step], [(pack_s, popcount_s, scale_s, "
           "total_s) per step]).");
}

void bind_conv_params(py::module_& m) {
  py::class_<ConvParams>(m, "ConvParams",
                         "Validated geometry of one conv call (immutable; checked on creation).")
      .def(py::init(&make_conv_params), py::kw_only(), py::arg("input_shape"),
           py::arg("channels_last"), py::arg("out_channels"), py::arg("kernel"),
           py::arg("stride"), py::arg("dilation"), py::arg("pad_top"), py::arg("pad_bottom"),
           py::arg("pad_left"), py::arg("pad_right"), py::arg("pad_mode"), py::arg("scaling"))
      .def_property_readonly("input_shape", [](const ConvParams& p) {
        return py::make_tuple(p.s.batch, p.s.channels, p.s.height, p.s.width);
      })
      .def_property_readonly("channels_last", [](const ConvParams& p) { return p.s.channels_last; })
      .def_property_readonly("out_channels", [](const ConvParams& p) { return p.s.out_channels; })
      .def_property_readonly("kernel", [](const ConvParams& p) {
        return py::make_tuple(p.s.kernel_h, p.s.kernel_w);
      })
      .def_property_readonly("stride", [](const ConvParams& p) {
        return py::make_tuple(p.s.stride_h, p.s.stride_w);
      })
      .def_property_readonly("dilation", [](const ConvParams& p) {
        return py::make_tuple(p.s.dilation_h, p.s.dilation_w);
      })
      .def_property_readonly("padding", [](const ConvParams& p) {
        return py::make_tuple(p.s.pad_top, p.pad_bottom, p.s.pad_left, p.pad_right);
      }, "(top, bottom, left, right)")
      .def_property_readonly("pad_mode", [](const ConvParams& p) {
        return std::string(p.s.zero_padding ? "zero" : "one");
      })
      .def_property_readonly("scaling", [](const ConvParams& p) {
        return std::string(scaling_name(p.s.scaling));
      })
      .def_property_readonly("out_shape", [](const ConvParams& p) {
        return py::make_tuple(p.s.batch, p.s.out_channels, p.s.out_h, p.s.out_w);
      }, "(N, C_out, H_out, W_out)")
      .def("__repr__", &repr);
}

void bind_packed_buffers(py::module_& m) {
  py::class_<PackedBuffers>(m, "PackedBuffers",
                            "The arrays of one packed weight, validated once and kept alive.")
      .def(py::init(&make_packed_buffers), py::kw_only(), py::arg("bits").noconvert(),
           py::arg("tap_sums").noconvert(), py::arg("alpha").noconvert(),
           py::arg("bias").noconvert(), py::arg("out_channels"), py::arg("in_channels"))
      .def_readonly("out_channels", &PackedBuffers::out_channels)
      .def_readonly("in_channels", &PackedBuffers::in_channels)
      .def_readonly("taps", &PackedBuffers::taps);
}

// (region_thread_place(), OS thread id) of each task of `regions` parallel regions. Each task
// waits (up to 1 ms) for the region's other tasks to start, so every thread takes part.
std::vector<std::vector<std::pair<int, long>>> region_places_binding(int regions) {
  if (regions < 1 || regions > 10000) {
    throw std::invalid_argument("regions must be in 1..10000, got " + std::to_string(regions));
  }
  std::vector<std::vector<std::pair<int, long>>> out(static_cast<size_t>(regions));
  const py::gil_scoped_release release;
  for (auto& region : out) {
    const int tasks = get_threads();
    region.resize(static_cast<size_t>(tasks));
    std::atomic<int> started{0};
    parallel_for(tasks, [&](int64_t task) {
      const long tid = syscall(SYS_gettid);
      region[static_cast<size_t>(task)] = {region_thread_place(), tid};
      started.fetch_add(1);
      const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1);
      while (started.load() < tasks && std::chrono::steady_clock::now() < until) {
      }
    });
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "xnorlab native bit-packed XNOR engine (private; use xnorlab.engine)";
  m.attr("ABI_VERSION") = kAbiVersion;
  m.attr("COMPILER") = XNORLAB_COMPILER;
  m.attr("BUILD_TYPE") = XNORLAB_BUILD_TYPE;
  m.attr("OC_BLOCK") = kOcBlock;
  m.attr("MAX_DIM") = kMaxDim;
  m.attr("MAX_ELEMENTS") = kMaxElements;
  bind_conv_params(m);
  bind_packed_buffers(m);
  bind_conv_chain(m);
  m.def("compiled_isas", [] { return names(compiled_isas()); },
        "ISAs whose kernels are compiled into this module.");
  m.def("supported_isas", [] { return names(supported_isas()); },
        "Compiled ISAs that this CPU can run.");
  m.def("active_isa", [] { return std::string(isa_name(active_isa())); },
        "The ISA in use (chosen once; XNORLAB_ISA overrides).");
  m.def("set_active_isa", [](const std::string& name) { set_active_isa(parse_isa(name)); },
        py::arg("name"), "Switch the ISA in use; raises ValueError if unsupported.");
  m.def("get_threads", &get_threads, "Threads of the persistent pool.");
  m.def("get_thread_pool",
        [] { return std::string(get_thread_pool() == ThreadPool::kOpenMP ? "openmp" : "own"); },
        "The runtime parallel_for uses: 'openmp' (torch's team) or 'own' (our pool).");
  m.def(
      "set_thread_pool",
      [](const std::string& name) {
        if (name != "openmp" && name != "own") {
          throw std::invalid_argument("thread pool must be 'openmp' or 'own', got '" + name + "'");
        }
        set_thread_pool(name == "openmp" ? ThreadPool::kOpenMP : ThreadPool::kOwn);
      },
      py::arg("name"), "Switch parallel_for between torch's OpenMP team and our own pool.");
  m.def("set_threads", &set_threads, py::arg("threads"), "Resize the pool (1..256).");
  m.def("region_places", &region_places_binding, py::arg("regions"),
        "Runs `regions` parallel regions of get_threads() tasks; returns each region's "
        "(place, OS thread id) per task. The phased conv splits its work by place.");
  m.def("xnor_conv2d", &conv2d_binding, py::arg("params"), py::arg("weight"),
        py::arg("x").noconvert(), py::arg("bias") = py::none(),
        py::arg("residual").noconvert() = py::none(), py::arg("clamp") = py::none(),
        py::arg("prologue_scale").noconvert() = py::none(),
        py::arg("prologue_shift").noconvert() = py::none(),
        py::arg("prologue_clamp") = py::none(), py::arg("bits_for") = py::none(),
        "XNOR conv2d of clamp(x * prologue_scale + prologue_shift) when given, then out = "
        "clamp(out + residual) when given; returns (out, input_has_nan, (pack_s, popcount_s, "
        "scale_s, total_s)). With bits_for (the ConvParams of the conv that reads this "
        "output) out is that conv's packed input, (bits, block_absum).");
  m.def("xnor_conv2d_packed", &conv2d_packed_binding, py::arg("params"), py::arg("weight"),
        py::arg("bits").noconvert(), py::arg("block_absum").noconvert(),
        py::arg("bias") = py::none(), py::arg("residual").noconvert() = py::none(),
        py::arg("clamp") = py::none(), py::arg("bits_for") = py::none(),
        "XNOR conv2d of the packed input (bits, block_absum) that the conv before it wrote "
        "with bits_for=params; returns as xnor_conv2d.");
  m.def("xnor_linear", &linear_binding, py::arg("weight"), py::arg("x").noconvert(),
        py::arg("scaling"), py::arg("bias") = py::none(),
        "XNOR Linear on the last dim of x (..., F); returns (out (..., O), input_has_nan, "
        "timing).");
  m.def("bwn_linear", &bwn_binding, py::arg("weight"), py::arg("x").noconvert(),
        py::arg("bias") = py::none(),
        "BWN Linear on the last dim of x (..., F); returns (out (..., O), timing).");
  m.def("max_pool2d", &max_pool_binding, py::arg("x").noconvert(), py::arg("kernel"),
        py::arg("stride"), py::arg("padding"), py::arg("clamp") = py::none(),
        "Max pool of a float32 NHWC (channels_last) input; returns the NHWC output (torch's "
        "max_pool2d values, bit for bit), then clamped to (lo, hi) when clamp is given.");
  m.def("microkernel_rate", &microkernel_binding, py::arg("kernel"), py::arg("channels"),
        py::arg("out_channels"), py::arg("seconds"),
        "Binary MAC/s of the active ISA's conv micro-kernel alone on L1-resident data.");
  m.def("pack_weight", &pack_weight_binding, py::arg("weight").noconvert(),
        py::arg("bits").noconvert(), "Pack a float (O, C, taps) weight into kernel order.");
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
