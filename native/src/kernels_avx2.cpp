// AVX2 kernels (popcount by nibble lookup, vpshufb + vpsadbw), compiled with per-source flags.
// Bit layout: include/xnorlab/kernels.h (bit 1 = negative, channel c -> word c/64 bit c%64,
// padding bits 0 in activations and weights, weights blocked by 32 output channels).
// The conv tile: 4 pixels x 8 output channels (2 registers of 4 x 64-bit lanes) per pass,
// four passes per 32-channel weight block.
#include <immintrin.h>

#include "xnorlab/isa.h"
#include "xnorlab/kernels.h"

namespace xnorlab {

int probe_avx2() { return static_cast<int>(Isa::Avx2); }

namespace {
namespace avx2 {

constexpr int kTile = 4;

struct Popcount {
  __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1,
                                 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  __m256i low = _mm256_set1_epi8(0x0F);
  // Per-byte popcounts of v (0..8 in each byte).
  __m256i bytes(__m256i v) const {
    const __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(v, low));
    const __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), low));
    return _mm256_add_epi8(lo, hi);
  }
};

// Scalar transform of 8 output channels (used when K does not fit the int32 fast path).
inline void store8_scalar(const ConvTileArgs& a, int p, int oc0, const long long* v) {
  float* out = a.out + p * a.out_pixel_stride;
  const float s = a.scale[p];
  for (int i = 0; i < 8; ++i) {
    const int oc = oc0 + i;
    if (oc >= a.oc_valid) break;
    long long dot = a.kbits - 2 * v[i];
    if (a.corr != nullptr) dot -= a.corr[p][a.corr_shift + oc];
    out[oc] = static_cast<float>(dot) * a.alpha[oc] * s + a.bias[oc];
  }
}

// out[oc0..oc0+8) = (K - 2*popcount - corr) * alpha * scale + bias, in int32/float lanes.
inline void store8(const ConvTileArgs& a, int p, int oc0, __m256i acc_lo, __m256i acc_hi) {
  if (a.kbits >= (int64_t{1} << 30)) {
    alignas(32) long long v[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(v), acc_lo);
    _mm256_store_si256(reinterpret_cast<__m256i*>(v + 4), acc_hi);
    store8_scalar(a, p, oc0, v);
    return;
  }
  const __m256i low_dwords = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  const __m128i lo = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(acc_lo, low_dwords));
  const __m128i hi = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(acc_hi, low_dwords));
  const __m256i count = _mm256_set_m128i(hi, lo);
  __m256i dot = _mm256_sub_epi32(_mm256_set1_epi32(static_cast<int>(a.kbits)),
                                 _mm256_slli_epi32(count, 1));
  if (a.corr != nullptr) {
    dot = _mm256_sub_epi32(dot,
                           _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.corr[p] + a.corr_shift + oc0)));
  }
  __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_loadu_ps(a.alpha + oc0));
  f = _mm256_add_ps(_mm256_mul_ps(f, _mm256_set1_ps(a.scale[p])), _mm256_loadu_ps(a.bias + oc0));
  float* out = a.out + p * a.out_pixel_stride + oc0;
  const int left = a.oc_valid - oc0;
  if (left >= 8) {
    _mm256_storeu_ps(out, f);
  } else {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(out, _mm256_cmpgt_epi32(_mm256_set1_epi32(left), lane), f);
  }
}

// Byte counters take at most 31 words (31 * 8 = 248 < 256) before they are summed into 64-bit
// lanes with vpsadbw.
template <int P>
void tile_part(const ConvTileArgs& a, int oc0) {
  const Popcount pc;
  const __m256i zero = _mm256_setzero_si256();
  __m256i acc[P][2], bytes[P][2];
  for (int p = 0; p < P; ++p) {
    acc[p][0] = acc[p][1] = bytes[p][0] = bytes[p][1] = zero;
  }
  int pending = 0;
  for (int64_t t = 0; t < a.taps; ++t) {
    const uint64_t* w = a.weight + t * a.words * kOcBlock + oc0;
    const int64_t off = a.tap_offset[t];
    for (int64_t j = 0; j < a.words; ++j) {
      const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * kOcBlock));
      const __m256i w1 =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * kOcBlock + 4));
      for (int p = 0; p < P; ++p) {
        const __m256i b = _mm256_set1_epi64x(static_cast<long long>(a.origin[p][off + j]));
        bytes[p][0] = _mm256_add_epi8(bytes[p][0], pc.bytes(_mm256_xor_si256(b, w0)));
        bytes[p][1] = _mm256_add_epi8(bytes[p][1], pc.bytes(_mm256_xor_si256(b, w1)));
      }
      if (++pending == 31) {
        for (int p = 0; p < P; ++p) {
          for (int k = 0; k < 2; ++k) {
            acc[p][k] = _mm256_add_epi64(acc[p][k], _mm256_sad_epu8(bytes[p][k], zero));
            bytes[p][k] = zero;
          }
        }
        pending = 0;
      }
    }
  }
  for (int p = 0; p < P; ++p) {
    for (int k = 0; k < 2; ++k) {
      acc[p][k] = _mm256_add_epi64(acc[p][k], _mm256_sad_epu8(bytes[p][k], zero));
    }
    store8(a, p, oc0, acc[p][0], acc[p][1]);
  }
}

template <int P>
void tile(const ConvTileArgs& a) {
  for (int b = 0; b < a.blocks; ++b) {
    const ConvTileArgs one = block_args(a, b);
    for (int oc0 = 0; oc0 < one.oc_valid; oc0 += 8) tile_part<P>(one, oc0);
  }
}

void conv_tile(const ConvTileArgs& a) {
  switch (a.pixels) {
    case 4: tile<4>(a); break;
    case 3: tile<3>(a); break;
    case 2: tile<2>(a); break;
    default: tile<1>(a); break;
  }
}

void conv_tile_epilogue(const ConvTileArgs& a) {
  conv_tile(a);
  epilogue_after(a);
}

// NCHW: 8 pixels per step, 64-bit per-pixel words in two registers of 4 lanes.
void pack_nchw(const PackArgs& a) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t p = a.p0; p < a.p1; p += 8) {
    if (a.p1 - p < 8) {
      PackArgs tail = a;
      tail.p0 = p;
      pack_nchw_scalar(tail);
      return;
    }
    __m256 sum = _mm256_setzero_ps();
    for (int64_t j = 0; j < a.words; ++j) {
      __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
      const int64_t cend = (j + 1) * 64 < a.channels ? (j + 1) * 64 : a.channels;
      for (int64_t c = j * 64; c < cend; ++c) {
        const __m256 v = _mm256_loadu_ps(a.x + c * a.hw + p);
        const __m256i neg = _mm256_castps_si256(_mm256_cmp_ps(v, zero, _CMP_LT_OQ));
        const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(uint64_t{1} << (c & 63)));
        lo = _mm256_or_si256(lo, _mm256_and_si256(
                                     _mm256_cvtepi32_epi64(_mm256_castsi256_si128(neg)), bit));
        hi = _mm256_or_si256(hi, _mm256_and_si256(
                                     _mm256_cvtepi32_epi64(_mm256_extracti128_si256(neg, 1)), bit));
        sum = _mm256_add_ps(sum, _mm256_and_ps(v, absmask));
      }
      alignas(32) uint64_t words[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(words), lo);
      _mm256_store_si256(reinterpret_cast<__m256i*>(words + 4), hi);
      for (int i = 0; i < 8; ++i) packed_row(a, p + i)[j] = words[i];
    }
    _mm256_storeu_ps(a.absum + p, sum);
  }
}

// NHWC: 8 channels per compare (movemask), 8 masks make one word; scalar tail channels.
void pack_nhwc(const PackArgs& a) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  const __m256 zero = _mm256_setzero_ps();
  const __m256 lo = _mm256_set1_ps(a.lo), hi = _mm256_set1_ps(a.hi);
  for (int64_t p = a.p0; p < a.p1; ++p) {
    const float* px = a.x + p * a.channels;
    uint64_t* row = packed_row(a, p);
    __m256 sum = _mm256_setzero_ps();
    float tail_sum = 0.0f;
    for (int64_t j = 0; j < a.words; ++j) {
      uint64_t word = 0;
      int64_t c = j * 64;
      const int64_t cend = c + 64 < a.channels ? c + 64 : a.channels;
      for (; c + 8 <= cend; c += 8) {
        __m256 v = _mm256_loadu_ps(px + c);
        if (a.scale != nullptr) {
          v = _mm256_add_ps(_mm256_mul_ps(v, _mm256_loadu_ps(a.scale + c)),
                            _mm256_loadu_ps(a.shift + c));
          v = _mm256_blendv_ps(v, lo, _mm256_cmp_ps(lo, v, _CMP_GT_OQ));
          v = _mm256_blendv_ps(v, hi, _mm256_cmp_ps(v, hi, _CMP_GT_OQ));
        }
        const auto bits = static_cast<uint64_t>(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ)));
        word |= bits << (c & 63);
        sum = _mm256_add_ps(sum, _mm256_and_ps(v, absmask));
      }
      for (; c < cend; ++c) {
        const float v = a.scale == nullptr ? px[c] : prologue_value(a, c, px[c]);
        tail_sum += __builtin_fabsf(v);
        word |= static_cast<uint64_t>(v < 0.0f) << (c & 63);
      }
      row[j] = word;
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, sum);
    float total = tail_sum;
    for (float v : lanes) total += v;
    a.absum[p] = total;
  }
}

// One row at a time; each byte of a weight word selects 8 floats (compare against bit masks).
void bwn_rows(const BwnArgs& a) {
  if (a.lut != nullptr) {
    bwn_rows_lut(a);
    return;
  }
  const __m256i select = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  for (int64_t n = 0; n < a.batch; ++n) {
    const float* x = a.x + n * a.features;
    for (int64_t o = a.o0; o < a.o1; ++o) {
      const uint64_t* w = a.weight + (o / kOcBlock) * a.words * kOcBlock + (o % kOcBlock);
      __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
      for (int64_t j = 0; j < a.words; ++j) {
        const uint64_t bits = w[j * kOcBlock];
        if (bits == 0) continue;
        const float* xj = x + j * 64;
        for (int s = 0; s < 8; s += 2) {
          const __m256i b0 = _mm256_set1_epi32(static_cast<int>((bits >> (8 * s)) & 0xFF));
          const __m256i b1 = _mm256_set1_epi32(static_cast<int>((bits >> (8 * s + 8)) & 0xFF));
          const __m256i m0 = _mm256_cmpeq_epi32(_mm256_and_si256(b0, select), select);
          const __m256i m1 = _mm256_cmpeq_epi32(_mm256_and_si256(b1, select), select);
          acc0 = _mm256_add_ps(acc0, _mm256_and_ps(_mm256_castsi256_ps(m0), _mm256_loadu_ps(xj + 8 * s)));
          acc1 = _mm256_add_ps(acc1, _mm256_and_ps(_mm256_castsi256_ps(m1), _mm256_loadu_ps(xj + 8 * s + 8)));
        }
      }
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, _mm256_add_ps(acc0, acc1));
      float neg = 0.0f;
      for (float v : lanes) neg += v;
      a.out[n * a.out_features + o] = (a.xsum[n] - 2.0f * neg) * a.alpha[o] + a.bias[o];
    }
  }
}

// Max pool row: 8 channels per register, held across the window's taps; the last channels
// (fewer than 8) one by one.
void max_pool_row(const PoolRowArgs& a) {
  const int64_t channels = a.channels, vectors = channels / 8;
  const __m256 lo = _mm256_set1_ps(a.clamp_lo), hi = _mm256_set1_ps(a.clamp_hi);
  for (int64_t ow = 0; ow < a.out_w; ++ow) {
    float* o = a.row + ow * channels;
    int64_t w0 = 0, w1 = 0;
    pool_columns(a, ow, w0, w1);
    for (int64_t vi = 0; vi < vectors; ++vi) {
      __m256 best = _mm256_set1_ps(-__builtin_inff());
      for (int64_t ih = a.h0; ih < a.h1; ++ih) {
        for (int64_t iw = w0; iw < w1; ++iw) {
          const __m256 v = _mm256_loadu_ps(a.image + (ih * a.width + iw) * channels + vi * 8);
          const __m256 take = _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ),
                                           _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
          best = _mm256_blendv_ps(best, v, take);
        }
      }
      best = _mm256_blendv_ps(best, lo, _mm256_cmp_ps(best, lo, _CMP_LT_OQ));
      best = _mm256_blendv_ps(best, hi, _mm256_cmp_ps(best, hi, _CMP_GT_OQ));
      _mm256_storeu_ps(o + vi * 8, best);
    }
    for (int64_t c = vectors * 8; c < channels; ++c) {
      float best = -__builtin_inff();
      for (int64_t ih = a.h0; ih < a.h1; ++ih) {
        for (int64_t iw = w0; iw < w1; ++iw) {
          const float v = a.image[(ih * a.width + iw) * channels + c];
          if (v > best || v != v) best = v;
        }
      }
      o[c] = pool_clamp(best, a.clamp_lo, a.clamp_hi);
    }
  }
}

// Bit output: sign masks by movemask, |v| summed in sign_block's tree (16 + 16, then halves);
// a partial last block takes the portable path.
void emit_bits(const BitsArgs& a) {
  const __m256 zero = _mm256_setzero_ps();
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int p = 0; p < a.pixels; ++p) {
    for (int64_t b = a.b0; b < a.b1; ++b) {
      const float* v = a.tile + p * a.pixel_stride + b * kOcBlock;
      if (block_lanes(b, a.out_channels) < kOcBlock) {
        sign_block(v, block_lanes(b, a.out_channels), a.halves[p][b], a.sums[p][b]);
        continue;
      }
      __m256 q[4];
      uint32_t mask = 0;
      for (int i = 0; i < 4; ++i) {
        q[i] = _mm256_loadu_ps(v + 8 * i);
        mask |= static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(q[i], zero, _CMP_LT_OQ)))
                << (8 * i);
      }
      const __m256 low = _mm256_add_ps(_mm256_and_ps(q[0], abs_mask), _mm256_and_ps(q[2], abs_mask));
      const __m256 high = _mm256_add_ps(_mm256_and_ps(q[1], abs_mask), _mm256_and_ps(q[3], abs_mask));
      const __m256 t8 = _mm256_add_ps(low, high);
      const __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
      const __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
      const __m128 t1 = _mm_add_ss(t2, _mm_shuffle_ps(t2, t2, 1));
      a.halves[p][b] = mask;
      a.sums[p][b] = _mm_cvtss_f32(t1);
    }
  }
}

}  // namespace avx2
}  // namespace

const KernelTable& kernels_avx2() {
  static const KernelTable table{"avx2", avx2::kTile, avx2::conv_tile, avx2::conv_tile_epilogue,
                                 avx2::pack_nchw, avx2::pack_nhwc, avx2::bwn_rows, true,
                                 avx2::max_pool_row, avx2::emit_bits};
  return table;
}

}  // namespace xnorlab
