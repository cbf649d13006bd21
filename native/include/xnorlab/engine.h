// Drivers of the bit-packed engine: validated sizes in, raw pointers to contiguous buffers.
// The binding (src/module.cpp) checks every size against the limits below before calling.
#pragma once
#include <cstdint>

namespace xnorlab {

// Every size, geometry parameter and padded extent fits int32 (the micro-kernel arguments and
// the zero-padding corrections are int32), and so does K = C * kh * kw.
constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;
// Every buffer a driver reads, writes or allocates (input, output, packed input with its halo,
// K map rows) holds at most 2^32 elements, so no product of sizes overflows int64 and no absurd
// request reaches the allocator.
constexpr int64_t kMaxElements = int64_t{1} << 32;

enum class Scaling : int { Kmap = 0, Scalar = 1, None = 2 };

// Wall-clock split of one call (steady clock), seconds.
struct Timing {
  double pack_s = 0, popcount_s = 0, scale_s = 0, total_s = 0;
};

struct ConvShape {
  int64_t batch, channels, height, width;  // input
  bool channels_last;                      // input memory is NHWC (else NCHW)
  int64_t out_channels, kernel_h, kernel_w;
  int64_t stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w;
  int64_t out_h, out_w;                    // computed by the caller (padding may be asymmetric)
  bool zero_padding;                       // true: padded taps add 0; false: they are +1
  Scaling scaling;
};

struct ConvBuffers {
  const float* x;             // input, layout per channels_last
  const uint64_t* weight;     // kernel order (kernels.h)
  const int32_t* tap_sums;    // [blocks][taps][kOcBlock]: sum_c sign(w) per tap (zero padding)
  const float* alpha;         // [blocks * kOcBlock]
  const float* bias;          // [blocks * kOcBlock]
  float* out;                 // NHWC [batch][out_h][out_w][out_channels]
  // Fused epilogue, out = clamp(transform + residual, clamp_lo, clamp_hi), applied per tile
  // while the tile is in L1: `residual` (NHWC like out, or nullptr) and the clamp bounds
  // (-inf / +inf: none; NaN stays NaN, as in torch.clamp).
  const float* residual = nullptr;
  float clamp_lo = -__builtin_inff(), clamp_hi = __builtin_inff();
  // Fused prologue (channels_last input only): the conv binarizes, and its K map / beta
  // averages the magnitude of, v = clamp(x * in_scale[c] + in_shift[c], in_lo, in_hi) (an eval
  // BatchNorm and the clamp after it) instead of x, so that pass never writes a tensor.
  // in_scale == nullptr: v = x. NaN stays NaN, as in torch.clamp.
  const float* in_scale = nullptr;
  const float* in_shift = nullptr;
  float in_lo = -__builtin_inff(), in_hi = __builtin_inff();
};

struct ConvResult {
  bool input_has_nan;
  Timing timing;
};

// A conv's input already packed by the conv before it (its bit output): the sign bits in this
// conv's halo layout, [batch][Hp][Wp][W] words (kernels.h; halo words zero), and per pixel the
// sums of |x| over each block of 32 channels, [batch * H * W][ceil(C / 32)], which the K map /
// beta add up in block order.
struct PackedInput {
  const uint64_t* bits;
  const float* block_absum;
};

// Bit output of a conv whose only reader is another XNOR conv (`next`, whose input is this
// conv's output): the conv writes the next conv's PackedInput instead of its float output (the
// signs and |.| of its values after the epilogue), so no float output is written and the next
// conv skips its pack pass. `bits` must be zeroed by the caller (halo and padding bits).
struct BitOutput {
  const ConvShape* next = nullptr;
  uint64_t* bits = nullptr;         // packed_input_words(*next) words
  float* block_absum = nullptr;     // next->batch * next->height * next->width * blocks floats
};

// Words of a conv's packed input with its halo (the size of a BitOutput's `bits`).
int64_t packed_input_words(const ConvShape& s);

// XNOR conv2d with fused sign/pack, K map / beta, popcount and output transform; with `bits`
// the output goes to the next conv's packed input instead of b.out (which may be null).
ConvResult xnor_conv2d(const ConvShape& s, const ConvBuffers& b, const BitOutput* bits = nullptr);

// The same conv on an input packed by the conv before it (b.x is not read).
ConvResult xnor_conv2d_packed(const ConvShape& s, const ConvBuffers& b, const PackedInput& in,
                              const BitOutput* bits = nullptr);

// Binary MACs per second of the active ISA's micro-kernel alone (the popcount loop with its
// fused output transform) on L1-resident data: one tile of pixels x the output-channel blocks
// the driver would group, for a kernel x kernel conv with `channels` inputs; calls it for at
// least `seconds` on the calling thread.
double microkernel_rate(int64_t kernel, int64_t channels, int64_t out_channels, double seconds);

// Pack a float weight [O][C][taps] (contiguous) into kernel order; padding words are zeroed.
void pack_weight(const float* w, int64_t out_channels, int64_t channels, int64_t taps,
                 uint64_t* bits);

// Max pool of NHWC float input (the float stem's pool before a binary ResNet's first block).
// Padded taps never win (-inf), a NaN in the window wins, and among equal values the first tap
// in (ky, kx) order is kept: torch's max_pool2d, bit for bit. Then the clamp, torch's rule
// (below lo: lo, above hi: hi, NaN stays): the ReLU before the pool, applied after it (max is
// monotonic), so the clamped tensor is never written. Sizes are checked by the binding.
struct PoolShape {
  int64_t batch, channels, height, width;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
  int64_t out_h, out_w;
  float clamp_lo = -__builtin_inff(), clamp_hi = __builtin_inff();
};
void max_pool2d_nhwc(const PoolShape& s, const float* x, float* out);

// BWN linear: out[n][o] = alpha[o] * (x[n] . sign(w[o])) + bias[o]; out is [batch][O].
Timing bwn_linear(const float* x, int64_t batch, int64_t features, const uint64_t* weight,
                  const float* alpha, const float* bias, int64_t out_features, float* out);

}  // namespace xnorlab
