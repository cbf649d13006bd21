// Portable kernels (no ISA flags): the reference behaviour every SIMD table must reproduce.
// Bit layout: see include/xnorlab/kernels.h (bit 1 = negative, channel c -> word c/64 bit c%64,
// padding bits 0, weights blocked by kOcBlock output channels).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "xnorlab/isa.h"
#include "xnorlab/kernels.h"

namespace xnorlab {

int probe_scalar() { return static_cast<int>(Isa::Scalar); }

namespace {

inline int popcount64(uint64_t v) { return __builtin_popcountll(v); }

// One output block of one pixel: acc[oc] = popcount over all taps and words.
void block_scalar(const ConvTileArgs& a) {
  for (int p = 0; p < a.pixels; ++p) {
    int64_t acc[kOcBlock] = {0};
    for (int64_t t = 0; t < a.taps; ++t) {
      const uint64_t* act = a.origin[p] + a.tap_offset[t];
      const uint64_t* w = a.weight + t * a.words * kOcBlock;
      for (int64_t j = 0; j < a.words; ++j) {
        const uint64_t word = act[j];
        for (int oc = 0; oc < kOcBlock; ++oc) acc[oc] += popcount64(word ^ w[j * kOcBlock + oc]);
      }
    }
    float* out = a.out + p * a.out_pixel_stride;
    for (int oc = 0; oc < a.oc_valid; ++oc) {
      int64_t dot = a.kbits - 2 * acc[oc];
      if (a.corr != nullptr) dot -= a.corr[p][a.corr_shift + oc];
      out[oc] = static_cast<float>(dot) * a.alpha[oc] * a.scale[p] + a.bias[oc];
    }
  }
}

void tile_scalar(const ConvTileArgs& a) {
  for (int b = 0; b < a.blocks; ++b) block_scalar(block_args(a, b));
}

void tile_scalar_epilogue(const ConvTileArgs& a) {
  tile_scalar(a);
  epilogue_after(a);
}

void bwn_rows_scalar(const BwnArgs& a) {
  if (a.lut != nullptr) {
    bwn_rows_lut(a);
    return;
  }
  for (int64_t n = 0; n < a.batch; ++n) {
    const float* x = a.x + n * a.features;
    for (int64_t o = a.o0; o < a.o1; ++o) {
      const uint64_t* w = a.weight + (o / kOcBlock) * a.words * kOcBlock + (o % kOcBlock);
      float neg = 0.0f;
      for (int64_t j = 0; j < a.words; ++j) {
        uint64_t bits = w[j * kOcBlock];
        const float* xj = x + j * 64;
        while (bits != 0) {
          neg += xj[__builtin_ctzll(bits)];
          bits &= bits - 1;
        }
      }
      const float dot = a.xsum[n] - 2.0f * neg;
      a.out[n * a.out_features + o] = dot * a.alpha[o] + a.bias[o];
    }
  }
}

}  // namespace

// Channel-outer (contiguous reads of each channel plane); one 64-channel word at a time for
// a block of up to 256 pixels, built in a local buffer and then stored into the halo buffer.
void epilogue_after(const ConvTileArgs& a) {
  const int64_t channels = std::min<int64_t>(a.oc_valid, int64_t{a.blocks} * kOcBlock);
  const float lo = a.clamp_lo, hi = a.clamp_hi;
  for (int p = 0; p < a.pixels; ++p) {
    float* __restrict out = a.out + p * a.out_pixel_stride;
    if (a.residual != nullptr) {
      const float* __restrict res = a.residual + p * a.out_pixel_stride;
      for (int64_t c = 0; c < channels; ++c) out[c] += res[c];
    }
    for (int64_t c = 0; c < channels; ++c) {
      const float v = out[c];
      out[c] = v < lo ? lo : (v > hi ? hi : v);  // NaN compares false: kept, as torch.clamp
    }
  }
}

void pack_nchw_scalar(const PackArgs& a) {
  constexpr int64_t kBlock = 256;
  uint64_t word[kBlock];
  for (int64_t p = a.p0; p < a.p1; p += kBlock) {
    const int64_t count = a.p1 - p < kBlock ? a.p1 - p : kBlock;
    for (int64_t i = 0; i < count; ++i) a.absum[p + i] = 0.0f;
    for (int64_t j = 0; j < a.words; ++j) {
      std::memset(word, 0, sizeof(word));
      const int64_t cend = (j + 1) * 64 < a.channels ? (j + 1) * 64 : a.channels;
      for (int64_t c = j * 64; c < cend; ++c) {
        const float* xc = a.x + c * a.hw + p;
        const uint64_t bit = uint64_t{1} << (c & 63);
        for (int64_t i = 0; i < count; ++i) {
          a.absum[p + i] += std::fabs(xc[i]);
          if (xc[i] < 0.0f) word[i] |= bit;
        }
      }
      for (int64_t i = 0; i < count; ++i) packed_row(a, p + i)[j] = word[i];
    }
  }
}

void pack_nhwc_scalar(const PackArgs& a) {
  for (int64_t p = a.p0; p < a.p1; ++p) {
    const float* px = a.x + p * a.channels;
    uint64_t* row = packed_row(a, p);
    float sum = 0.0f;
    for (int64_t j = 0; j < a.words; ++j) {
      uint64_t word = 0;
      const int64_t end = (j + 1) * 64 < a.channels ? (j + 1) * 64 : a.channels;
      for (int64_t c = j * 64; c < end; ++c) {
        const float v = a.scale == nullptr ? px[c] : prologue_value(a, c, px[c]);
        sum += std::fabs(v);
        word |= static_cast<uint64_t>(v < 0.0f) << (c & 63);
      }
      row[j] = word;
    }
    a.absum[p] = sum;
  }
}

void bwn_rows_lut(const BwnArgs& a) {
  const int64_t groups = a.words * 8;
  for (int64_t n = 0; n < a.batch; ++n) {
    const float* lut = a.lut + n * groups * 256;
    for (int64_t o = a.o0; o < a.o1; ++o) {
      const uint64_t* w = a.weight + (o / kOcBlock) * a.words * kOcBlock + (o % kOcBlock);
      float neg0 = 0.0f, neg1 = 0.0f;
      for (int64_t j = 0; j < a.words; ++j) {
        const uint64_t bits = w[j * kOcBlock];
        const float* t = lut + j * 8 * 256;
        neg0 += t[bits & 0xFF] + t[256 + ((bits >> 8) & 0xFF)] + t[512 + ((bits >> 16) & 0xFF)] +
                t[768 + ((bits >> 24) & 0xFF)];
        neg1 += t[1024 + ((bits >> 32) & 0xFF)] + t[1280 + ((bits >> 40) & 0xFF)] +
                t[1536 + ((bits >> 48) & 0xFF)] + t[1792 + (bits >> 56)];
      }
      const float dot = a.xsum[n] - 2.0f * (neg0 + neg1);
      a.out[n * a.out_features + o] = dot * a.alpha[o] + a.bias[o];
    }
  }
}

void max_pool_row_scalar(const PoolRowArgs& a) {
  const int64_t channels = a.channels;
  for (int64_t ow = 0; ow < a.out_w; ++ow) {
    float* o = a.row + ow * channels;
    std::fill(o, o + channels, -__builtin_inff());
    int64_t w0 = 0, w1 = 0;
    pool_columns(a, ow, w0, w1);
    for (int64_t ih = a.h0; ih < a.h1; ++ih) {
      for (int64_t iw = w0; iw < w1; ++iw) {
        const float* v = a.image + (ih * a.width + iw) * channels;
        for (int64_t c = 0; c < channels; ++c) {
          if (v[c] > o[c] || std::isnan(v[c])) o[c] = v[c];
        }
      }
    }
    for (int64_t c = 0; c < channels; ++c) o[c] = pool_clamp(o[c], a.clamp_lo, a.clamp_hi);
  }
}

void emit_bits_scalar(const BitsArgs& a) {
  for (int p = 0; p < a.pixels; ++p) {
    for (int64_t b = a.b0; b < a.b1; ++b) {
      sign_block(a.tile + p * a.pixel_stride + b * kOcBlock, block_lanes(b, a.out_channels),
                 a.halves[p][b], a.sums[p][b]);
    }
  }
}

const KernelTable& kernels_scalar() {
  static const KernelTable table{"scalar", 1, tile_scalar, tile_scalar_epilogue,
                                 pack_nchw_scalar, pack_nhwc_scalar, bwn_rows_scalar, true,
                                 max_pool_row_scalar, emit_bits_scalar};
  return table;
}

}  // namespace xnorlab
