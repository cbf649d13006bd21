// Per-ISA kernel table and the data layouts every kernel shares.
//
// Bit layout (identical for activations and weights, documented again in
// xnorlab/engine/packed.py):
//   * A vector of C channel values is packed into W = ceil(C / 64) little-endian uint64 words.
//   * Channel c lives in word c / 64, bit c % 64 (bit 0 = least significant bit).
//   * Bit value 1 means the value is NEGATIVE (sign -1); bit 0 means +1. sign(0) = +1 and NaN is
//     binarized to +1 (x < 0 is false), as in xnorlab.binary.binarize.sign_nonzero.
//   * Padding bits (channels C..64*W-1 of the last word) are 0 in activations AND in weights,
//     so they xor to 0 and never count; the dot product uses the true bit count K = taps * C.
//   * Activations are NHWC-packed: one row of W words per pixel, pixels in (n, h, w) order,
//     inside a zero "halo" of the conv's padding: image n is [Hp][Wp][W] words with the input
//     pixel (h, w) at (h + pad_top, w + pad_left) and all-zero words (= +1) around it, so every
//     tap of every output pixel reads a valid word (origin + tap offset, no bounds checks).
//   * Weights are packed once in kernel order, blocked by kOcBlock output channels:
//     word index ((block * taps + tap) * W + word) * kOcBlock + (oc % kOcBlock), with
//     tap = ky * kw + kx. Output channels past C_out in the last block are all-zero words and
//     their results are never stored.
// The binary dot product of one output is dot = K - 2 * popcount(a xor w) over all taps; taps in
// the halo read all-zero words (= +1, i.e. "one" padding); for zero padding a per-tap correction
// removes their contribution: dot_zero = dot_one - sum_{halo taps t} S[oc][t], with
// S[oc][t] = C - 2 * popcount(w[oc][t]) = sum_c sign(w[oc][c][t]).
#pragma once
#include <cstddef>
#include <cstdint>

namespace xnorlab {

constexpr int kOcBlock = 32;  // output channels per weight block (all ISAs)
constexpr int kMaxTile = 8;   // upper bound of pixels per micro-kernel call

// One micro-kernel call: <= tile pixels x `blocks` consecutive blocks of kOcBlock output
// channels, with the fused output transform out = (K - 2*popcount - corr) * alpha * scale[p] +
// bias. Block b reads weight + b * taps * W * kOcBlock and writes channels [32 b, 32 b + 32) of
// alpha / bias / out / corr (all laid out contiguously across blocks).
// The activation words of tap t, word j of pixel p are origin[p][tap_offset[t] + j].
struct ConvTileArgs {
  const uint64_t* const* origin;  // [pixels] packed row of each pixel's tap (0, 0) (in the halo)
  const int64_t* tap_offset;      // [taps] word offset of tap t from the origin
  int pixels;                     // 1..tile of the ISA
  int blocks;                     // output-channel blocks of this call (>= 1)
  int64_t taps;
  int64_t words;                  // W = ceil(C / 64)
  const uint64_t* weight;         // first block: [blocks][taps][W][kOcBlock]
  int oc_valid;                   // output channels that exist from the first block's first one
  const float* alpha;             // blocks * kOcBlock floats (padded)
  const float* bias;              // blocks * kOcBlock floats (padded; zeros without a bias)
  const float* scale;             // [pixels] input scale per pixel (K map, beta or 1)
  const int32_t* const* corr;     // nullptr, or [pixels] pointers to the zero-padding corrections
                                  // of the first block (blocks * kOcBlock int32, zeros for pixels
                                  // without halo taps); block b uses corr[p] + corr_shift + 32 b
  int64_t corr_shift;             // added to every corr[p] (0 in a driver's call)
  int64_t kbits;                  // K = taps * C
  float* out;                     // output of the first pixel at the first block's first channel
  int64_t out_pixel_stride;       // floats between consecutive pixels (= C_out, NHWC output)
  // Non-temporal (streaming) stores allowed for whole blocks: every block's output is 64-byte
  // aligned (the driver checks out and out_pixel_stride). The ISA may ignore it; one that uses
  // it needs the driver's store fence before the output is read (see engine.cpp).
  bool stream_out = false;
  // Fused epilogue after the transform, in registers where the ISA can: out = clamp(out +
  // residual, clamp_lo, clamp_hi) in torch's order (add, then clamp; NaN kept). `residual`
  // (nullptr: no add) has out's layout; bounds without a clamp are -inf / +inf.
  bool epilogue = false;
  const float* residual = nullptr;
  float clamp_lo = -__builtin_inff(), clamp_hi = __builtin_inff();
};

// The single-block arguments of block b of a call (for kernels that loop over blocks).
inline ConvTileArgs block_args(const ConvTileArgs& a, int b) {
  ConvTileArgs one = a;
  const int64_t first = int64_t{b} * kOcBlock;
  one.blocks = 1;
  one.weight = a.weight + first * a.taps * a.words;
  one.oc_valid = a.oc_valid - static_cast<int>(first) < kOcBlock
                     ? a.oc_valid - static_cast<int>(first)
                     : kOcBlock;
  one.alpha = a.alpha + first;
  one.bias = a.bias + first;
  one.corr_shift = a.corr_shift + first;
  one.out = a.out + first;
  if (a.residual != nullptr) one.residual = a.residual + first;
  return one;
}

// The epilogue of a whole call (all its pixels and blocks) on the output already written, for
// kernels without a fused one (defined in kernels_scalar.cpp, with baseline flags).
void epilogue_after(const ConvTileArgs& a);

// Sign + pack + sum|x| of pixels [p0, p1) of one image.
struct PackArgs {
  const float* x;          // image start (NCHW: [C][HW]; NHWC: [HW][C])
  int64_t channels;
  int64_t hw;              // pixels per image (the channel stride of NCHW input)
  int64_t p0, p1;          // pixel range
  int64_t words;           // W
  uint64_t* packed;        // the image's pixel (0, 0) inside the halo buffer
  int64_t width;           // pixels per input row
  int64_t row_stride;      // words between the starts of consecutive rows (Wp * W)
  float* absum;            // image start: [HW] (sum over channels of |x|), dense
  // Prologue (NHWC only; engine.h's ConvBuffers): pack v = clamp(x * scale[c] + shift[c], lo,
  // hi) instead of x: a multiply and an add, each rounded, then "lo if lo > v, hi if v > hi"
  // (NaN stays NaN). scale == nullptr: none.
  const float* scale = nullptr;
  const float* shift = nullptr;
  float lo = -__builtin_inff(), hi = __builtin_inff();
};

// The prologue of PackArgs on one value (the portable form every ISA matches bit for bit).
inline float prologue_value(const PackArgs& a, int64_t c, float x) {
  float v = x * a.scale[c] + a.shift[c];
  v = a.lo > v ? a.lo : v;
  return v > a.hi ? a.hi : v;
}

// Packed row of pixel p (row-major index into the H x W image) inside the halo buffer.
inline uint64_t* packed_row(const PackArgs& a, int64_t p) {
  return a.packed + (p / a.width) * a.row_stride + (p % a.width) * a.words;
}

// BWN linear: out[n][o] = alpha[o] * sum_f x[n][f] * sign(w[o][f]) + bias[o], rows [o0, o1).
struct BwnArgs {
  const float* x;          // [batch][features]
  const float* xsum;       // [batch] sum_f x[n][f]
  int64_t batch, features, words;
  const uint64_t* weight;  // kernel order with taps = 1
  const float* alpha;      // padded
  const float* bias;       // padded
  int64_t o0, o1, out_features;  // o0 a multiple of 64; o1 too, or o1 == out_features
  float* out;              // [batch][out_features]
  // Optional [batch][words * 8][256] table: entry b of byte group g = sum of the x of group g
  // whose bit is set in b (subset sums), or nullptr. Filled by the driver for tables that ask.
  const float* lut;
};

// One output row of a max pool over an NHWC image (engine.h's max_pool2d_nhwc): output pixel
// ow takes the input rows [h0, h1) (already clipped) and the columns of its window clipped to
// the image; it starts at -inf and takes each tap v in (ky, kx) order when v > max or v is
// NaN (torch's rule, so the result is torch's bit for bit); then the clamp, torch's rule
// (pool_clamp), before the store.
struct PoolRowArgs {
  const float* image;  // [height][width][channels]
  float* row;          // [out_w][channels]
  int64_t channels, width, out_w;
  int64_t h0, h1;
  int64_t kernel_w, stride_w, pad_w;
  float clamp_lo = -__builtin_inff(), clamp_hi = __builtin_inff();
};

// torch.clamp's rule for one value: below lo gives lo, above hi gives hi, NaN stays NaN.
inline float pool_clamp(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

// First and one-past-last input column of output column ow's window, clipped to the image.
inline void pool_columns(const PoolRowArgs& a, int64_t ow, int64_t& w0, int64_t& w1) {
  const int64_t start = ow * a.stride_w - a.pad_w;
  w0 = start < 0 ? 0 : start;
  w1 = start + a.kernel_w < a.width ? start + a.kernel_w : a.width;
}

// Bit output of one conv tile (engine.h's BitOutput): for each pixel p and block b in
// [b0, b1), the sign bits of its 32 values (bit l set when v[l] < 0; NaN and the channels past
// out_channels give 0) go to halves[p][b] and their sum of |v| to sums[p][b].
struct BitsArgs {
  const float* tile;        // pixel p's block b at tile + p * pixel_stride + b * kOcBlock
  int pixels;
  int64_t pixel_stride;
  int64_t b0, b1, out_channels;
  uint32_t* const* halves;  // [pixels]: the pixel's packed words as 32-bit halves
  float* const* sums;       // [pixels]: the pixel's per-block sums
};

// Sign bits and sum of |v| of one block (its first `lanes` values; the others count as 0).
// The sum is a fixed tree that every ISA computes alike, so bit outputs are the same on all:
// t[i] = |v[i]| + |v[i + 16]|, then t[i] += t[i + w] for w = 8, 4, 2, 1; the sum is t[0].
inline void sign_block(const float* v, int64_t lanes, uint32_t& mask, float& sum) {
  float t[kOcBlock];
  mask = 0;
  for (int l = 0; l < kOcBlock; ++l) {
    const float x = l < lanes ? v[l] : 0.0f;
    mask |= static_cast<uint32_t>(x < 0.0f) << l;
    t[l] = __builtin_fabsf(x);
  }
  for (int w = kOcBlock / 2; w >= 1; w /= 2) {
    for (int i = 0; i < w; ++i) t[i] += t[i + w];
  }
  sum = t[0];
}

// Valid lanes of block b of a conv with `out_channels` outputs.
inline int64_t block_lanes(int64_t b, int64_t out_channels) {
  const int64_t left = out_channels - b * kOcBlock;
  return left < kOcBlock ? left : kOcBlock;
}

struct KernelTable {
  const char* name;
  int tile;  // pixels per micro-kernel call (<= kMaxTile)
  void (*conv_tile)(const ConvTileArgs&);
  // The same with ConvTileArgs::epilogue set: a separate entry, so a plain conv's tile loop
  // carries no test of the epilogue.
  void (*conv_tile_epilogue)(const ConvTileArgs&);
  void (*pack_nchw)(const PackArgs&);
  void (*pack_nhwc)(const PackArgs&);
  void (*bwn_rows)(const BwnArgs&);
  bool bwn_wants_lut;  // the driver builds BwnArgs::lut (byte lookup beats bit-by-bit work)
  void (*max_pool_row)(const PoolRowArgs&);
  void (*emit_bits)(const BitsArgs&);
};

const KernelTable& kernels_scalar();
#if defined(XNORLAB_HAVE_AVX2)
const KernelTable& kernels_avx2();
#endif
#if defined(XNORLAB_HAVE_AVX512)
const KernelTable& kernels_avx512();
#endif

// Portable implementations shared by the ISA tables as fall-backs (defined in kernels_scalar.cpp).
void pack_nchw_scalar(const PackArgs& a);
void pack_nhwc_scalar(const PackArgs& a);
// BWN rows by byte lookup in BwnArgs::lut: one load + add per 8 weights.
void bwn_rows_lut(const BwnArgs& a);

}  // namespace xnorlab
