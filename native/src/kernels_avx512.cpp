// AVX-512 (F/BW/DQ/VL + VPOPCNTDQ) kernels, compiled with per-source flags (CMakeLists.txt).
// Bit layout: include/xnorlab/kernels.h (bit 1 = negative, channel c -> word c/64 bit c%64,
// padding bits 0 in activations and weights, weights blocked by 32 output channels).
// The conv tile vectorizes across output channels: one activation word is broadcast and xored
// with 4 registers holding 32 output channels' weight words, vpopcntq, 64-bit adds; 6 pixels x
// 32 channels = 24 accumulators stay in registers. No horizontal reductions.
#include <immintrin.h>

#include "xnorlab/isa.h"
#include "xnorlab/kernels.h"

namespace xnorlab {

int probe_avx512() { return static_cast<int>(Isa::Avx512); }

namespace {
namespace avx512 {

constexpr int kTile = 6;

// acc[k] += popcount(broadcast(word) xor w_k) for the 4 registers of 8 output channels.
inline void accumulate(__m512i* acc, uint64_t word, __m512i w0, __m512i w1, __m512i w2,
                       __m512i w3) {
  const __m512i b = _mm512_set1_epi64(static_cast<long long>(word));
  acc[0] = _mm512_add_epi64(acc[0], _mm512_popcnt_epi64(_mm512_xor_si512(b, w0)));
  acc[1] = _mm512_add_epi64(acc[1], _mm512_popcnt_epi64(_mm512_xor_si512(b, w1)));
  acc[2] = _mm512_add_epi64(acc[2], _mm512_popcnt_epi64(_mm512_xor_si512(b, w2)));
  acc[3] = _mm512_add_epi64(acc[3], _mm512_popcnt_epi64(_mm512_xor_si512(b, w3)));
}

// Output transform of one pixel's 32 channels, counts in int32 lanes (K < 2^30, so every count
// and dot fits): the low dwords of two 8 x 64-bit accumulators are merged into 16 int32 lanes
// in channel order, then out = float(K - 2*count - corr) * alpha * scale + bias (same rounding
// order as the scalar kernel).
struct Transform32 {
  __m512i kbits, even, alpha_lo, alpha_hi, bias_lo, bias_hi;
  __m512 clamp_lo, clamp_hi;
  __mmask16 store_lo, store_hi;
  bool stream;  // whole 32-channel blocks bypass the caches (aligned; the driver fences)
  explicit Transform32(const ConvTileArgs& a)
      : kbits(_mm512_set1_epi32(static_cast<int>(a.kbits))),
        even(_mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)),
        alpha_lo(_mm512_castps_si512(_mm512_loadu_ps(a.alpha))),
        alpha_hi(_mm512_castps_si512(_mm512_loadu_ps(a.alpha + 16))),
        bias_lo(_mm512_castps_si512(_mm512_loadu_ps(a.bias))),
        bias_hi(_mm512_castps_si512(_mm512_loadu_ps(a.bias + 16))),
        clamp_lo(_mm512_set1_ps(a.clamp_lo)),
        clamp_hi(_mm512_set1_ps(a.clamp_hi)),
        store_lo(a.oc_valid >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << a.oc_valid) - 1u)),
        store_hi(a.oc_valid >= 32   ? 0xFFFF
                 : a.oc_valid <= 16 ? 0
                                    : static_cast<__mmask16>((1u << (a.oc_valid - 16)) - 1u)),
        stream(a.stream_out) {}

  __m512 half(__m512i lo8, __m512i hi8, const int32_t* corr, __m512i alpha, __m512i bias,
              float scale) const {
    const __m512i count = _mm512_permutex2var_epi32(lo8, even, hi8);
    __m512i dot = _mm512_sub_epi32(kbits, _mm512_slli_epi32(count, 1));
    if (corr != nullptr) dot = _mm512_sub_epi32(dot, _mm512_loadu_si512(corr));
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(dot), _mm512_castsi512_ps(alpha));
    f = _mm512_mul_ps(f, _mm512_set1_ps(scale));
    return _mm512_add_ps(f, _mm512_castsi512_ps(bias));
  }

  // The fused epilogue of 16 channels: (v + residual), then clamp, the same float operations
  // as torch's add and clamp (NaN compares false and is kept). Lanes past `valid` are not
  // stored; their residual is not read.
  __m512 epilogue(__m512 v, const float* res, __mmask16 valid) const {
    if (res != nullptr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(valid, res));
    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, clamp_lo, _CMP_LT_OQ), clamp_lo);
    return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, clamp_hi, _CMP_GT_OQ), clamp_hi);
  }

  // Accumulators by value: an address-taken accumulator array would live on the stack.
  template <bool kEpilogue>
  void pixel(__m512i acc0, __m512i acc1, __m512i acc2, __m512i acc3, const int32_t* corr,
             float scale, float* out, const float* res) const {
    __m512 lo = half(acc0, acc1, corr, alpha_lo, bias_lo, scale);
    __m512 hi = half(acc2, acc3, corr == nullptr ? nullptr : corr + 16, alpha_hi, bias_hi,
                     scale);
    if constexpr (kEpilogue) {
      lo = epilogue(lo, res, store_lo);
      hi = epilogue(hi, res == nullptr ? nullptr : res + 16, store_hi);
    }
    if (store_hi == 0xFFFF && stream) {  // two whole cache lines: no read for ownership
      _mm512_stream_ps(out, lo);
      _mm512_stream_ps(out + 16, hi);
    } else if (store_hi == 0xFFFF) {
      _mm512_storeu_ps(out, lo);
      _mm512_storeu_ps(out + 16, hi);
    } else {
      _mm512_mask_storeu_ps(out, store_lo, lo);
      _mm512_mask_storeu_ps(out + 16, store_hi, hi);
    }
  }
};

// Transform for K >= 2^30 (64-bit dot products; never met by real layers, kept exact).
void transform_wide(const ConvTileArgs& a, int p, __m512i acc0, __m512i acc1, __m512i acc2,
                    __m512i acc3) {
  alignas(64) int64_t count[kOcBlock];
  _mm512_store_si512(count, acc0);
  _mm512_store_si512(count + 8, acc1);
  _mm512_store_si512(count + 16, acc2);
  _mm512_store_si512(count + 24, acc3);
  float* out = a.out + p * a.out_pixel_stride;
  for (int oc = 0; oc < a.oc_valid; ++oc) {
    int64_t dot = a.kbits - 2 * count[oc];
    if (a.corr != nullptr) dot -= a.corr[p][a.corr_shift + oc];
    out[oc] = static_cast<float>(dot) * a.alpha[oc] * a.scale[p] + a.bias[oc];
  }
  if (!a.epilogue) return;
  ConvTileArgs one = a;  // this pixel's output of this block
  one.pixels = 1;
  one.blocks = 1;
  one.out = out;
  if (a.residual != nullptr) one.residual = a.residual + p * a.out_pixel_stride;
  epilogue_after(one);
}

// One block of 32 output channels for P pixels (a: single-block arguments); with kEpilogue the
// residual add and clamp run in registers before the store.
template <int P, bool kEpilogue>
inline __attribute__((always_inline)) void tile_block(const ConvTileArgs& a,
                                                      const uint64_t* const* origin) {
  __m512i acc[P][4];
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p) {
    for (int k = 0; k < 4; ++k) acc[p][k] = _mm512_setzero_si512();
  }
  if (a.words == 1) {  // C <= 64: one word per tap, no inner loop (ResNet's 64-channel stage)
    for (int64_t t = 0; t < a.taps; ++t) {
      const int64_t off = a.tap_offset[t];
      const uint64_t* w = a.weight + t * kOcBlock;
      const __m512i w0 = _mm512_loadu_si512(w), w1 = _mm512_loadu_si512(w + 8);
      const __m512i w2 = _mm512_loadu_si512(w + 16), w3 = _mm512_loadu_si512(w + 24);
      for (int p = 0; p < P; ++p) accumulate(acc[p], origin[p][off], w0, w1, w2, w3);
    }
  } else {
    for (int64_t t = 0; t < a.taps; ++t) {
      const uint64_t* ap[P];
      for (int p = 0; p < P; ++p) ap[p] = origin[p] + a.tap_offset[t];
      const uint64_t* w = a.weight + t * a.words * kOcBlock;
      for (int64_t j = 0; j < a.words; ++j) {
        const uint64_t* wj = w + j * kOcBlock;
        const __m512i w0 = _mm512_loadu_si512(wj), w1 = _mm512_loadu_si512(wj + 8);
        const __m512i w2 = _mm512_loadu_si512(wj + 16), w3 = _mm512_loadu_si512(wj + 24);
        for (int p = 0; p < P; ++p) accumulate(acc[p], ap[p][j], w0, w1, w2, w3);
      }
    }
  }
  if (a.kbits >= (int64_t{1} << 30)) {
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) transform_wide(a, p, acc[p][0], acc[p][1], acc[p][2], acc[p][3]);
    return;
  }
  const Transform32 tr(a);
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p) {
    tr.pixel<kEpilogue>(acc[p][0], acc[p][1], acc[p][2], acc[p][3],
                        a.corr == nullptr ? nullptr : a.corr[p] + a.corr_shift, a.scale[p],
                        a.out + p * a.out_pixel_stride,
                        kEpilogue && a.residual != nullptr
                            ? a.residual + p * a.out_pixel_stride
                            : nullptr);
  }
}

template <int P, bool kEpilogue>
void tile(const ConvTileArgs& a) {
  const uint64_t* origin[P];
  for (int p = 0; p < P; ++p) origin[p] = a.origin[p];
  if (a.blocks == 1) {
    tile_block<P, kEpilogue>(a, origin);
    return;
  }
  for (int b = 0; b < a.blocks; ++b) tile_block<P, kEpilogue>(block_args(a, b), origin);
}

// Instantiated with and without the epilogue, so plain convs run the loop they always ran.
template <bool kEpilogue>
void conv_tile_with(const ConvTileArgs& a) {
  switch (a.pixels) {
    case 6: tile<6, kEpilogue>(a); break;
    case 5: tile<5, kEpilogue>(a); break;
    case 4: tile<4, kEpilogue>(a); break;
    case 3: tile<3, kEpilogue>(a); break;
    case 2: tile<2, kEpilogue>(a); break;
    default: tile<1, kEpilogue>(a); break;
  }
}

void conv_tile(const ConvTileArgs& a) { conv_tile_with<false>(a); }
void conv_tile_epilogue(const ConvTileArgs& a) { conv_tile_with<true>(a); }

inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
}

// NCHW, blocked for long sequential reads: for a block of up to 256 pixels, channels are read
// 4 at a time (4 streams of 1 KiB runs, which the prefetchers follow, unlike 64 streams of
// reading all planes of a word at once) and each channel ORs its bit into the block's 64-bit
// words kept in L1; |x| is summed per pixel in channel order (as the scalar kernel).
constexpr int64_t kPackBlock = 256;

struct PackBlock {
  alignas(64) uint64_t word[kPackBlock];
  alignas(64) float absum[kPackBlock];
};

// ORs the sign bits of `n` (1..4) consecutive channels starting at `c` into blk.word and adds
// their |x| to blk.absum, for `count` pixels of the block; optionally prefetches the next N
// channels' lines (the hardware prefetchers start each new stream late).
template <int N>
inline void pack_channels(const float* x0, int64_t hw, int64_t c, int64_t count, PackBlock& blk,
                          bool prefetch_next) {
  const __m512 zero = _mm512_setzero_ps();
  const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
  __m512i bit[N];
  const float* xs[N];
  for (int i = 0; i < N; ++i) {
    bit[i] = _mm512_set1_epi64(static_cast<long long>(uint64_t{1} << ((c + i) & 63)));
    xs[i] = x0 + i * hw;
  }
  for (int64_t v = 0; v < count; v += 16) {
    const __mmask16 m = tail_mask(count - v);
    if (prefetch_next) {  // the same pixels of the next N channels (the next call's streams)
      for (int i = 0; i < N; ++i) {
        _mm_prefetch(reinterpret_cast<const char*>(xs[i] + N * hw + v), _MM_HINT_T0);
      }
    }
    __m512i lo = _mm512_load_si512(blk.word + v), hi = _mm512_load_si512(blk.word + v + 8);
    __m512 sum = _mm512_load_ps(blk.absum + v);
    for (int i = 0; i < N; ++i) {
      const __m512 y = _mm512_maskz_loadu_ps(m, xs[i] + v);
      const __mmask16 neg = _mm512_cmp_ps_mask(y, zero, _CMP_LT_OQ);
      lo = _mm512_mask_or_epi64(lo, static_cast<__mmask8>(neg), lo, bit[i]);
      hi = _mm512_mask_or_epi64(hi, static_cast<__mmask8>(neg >> 8), hi, bit[i]);
      sum = _mm512_add_ps(sum, _mm512_and_ps(y, absmask));
    }
    _mm512_store_si512(blk.word + v, lo);
    _mm512_store_si512(blk.word + v + 8, hi);
    _mm512_store_ps(blk.absum + v, sum);
  }
}

void pack_nchw(const PackArgs& a) {
  PackBlock blk;
  for (int64_t p = a.p0; p < a.p1; p += kPackBlock) {
    const int64_t count = a.p1 - p < kPackBlock ? a.p1 - p : kPackBlock;
    for (int64_t i = 0; i < kPackBlock; i += 16) _mm512_store_ps(blk.absum + i, _mm512_setzero_ps());
    for (int64_t j = 0; j < a.words; ++j) {
      for (int64_t i = 0; i < kPackBlock; i += 8) {
        _mm512_store_si512(blk.word + i, _mm512_setzero_si512());
      }
      const int64_t cend = (j + 1) * 64 < a.channels ? (j + 1) * 64 : a.channels;
      int64_t c = j * 64;
      for (; c + 4 <= cend; c += 4) {
        pack_channels<4>(a.x + c * a.hw + p, a.hw, c, count, blk, c + 8 <= a.channels);
      }
      for (; c < cend; ++c) pack_channels<1>(a.x + c * a.hw + p, a.hw, c, count, blk, false);
      if (a.row_stride == a.width * a.words) {  // no halo columns: rows are contiguous
        uint64_t* dst = a.packed + p * a.words + j;
        for (int64_t i = 0; i < count; ++i) dst[i * a.words] = blk.word[i];
      } else {
        int64_t row = p / a.width, col = p % a.width;
        for (int64_t i = 0; i < count; ++i) {
          a.packed[row * a.row_stride + col * a.words + j] = blk.word[i];
          if (++col == a.width) col = 0, ++row;
        }
      }
    }
    for (int64_t i = 0; i < count; ++i) a.absum[p + i] = blk.absum[i];
  }
}

// NHWC: 16 channels per compare; four 16-bit masks make one 64-bit word.
void pack_nhwc(const PackArgs& a) {
  const __m512 zero = _mm512_setzero_ps();
  const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
  const __m512 lo = _mm512_set1_ps(a.lo), hi = _mm512_set1_ps(a.hi);
  for (int64_t p = a.p0; p < a.p1; ++p) {
    const float* px = a.x + p * a.channels;
    uint64_t* row = packed_row(a, p);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < a.words; ++j) {
      uint64_t word = 0;
      for (int s = 0; s < 4; ++s) {
        const int64_t c = j * 64 + s * 16;
        if (c >= a.channels) break;
        const __mmask16 m = tail_mask(a.channels - c);
        __m512 v = _mm512_maskz_loadu_ps(m, px + c);
        if (a.scale != nullptr) {  // lanes past the channels stay 0
          v = _mm512_maskz_add_ps(m, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, a.scale + c)),
                                  _mm512_maskz_loadu_ps(m, a.shift + c));
          v = _mm512_mask_mov_ps(v, _mm512_mask_cmp_ps_mask(m, lo, v, _CMP_GT_OQ), lo);
          v = _mm512_mask_mov_ps(v, _mm512_mask_cmp_ps_mask(m, v, hi, _CMP_GT_OQ), hi);
        }
        word |= static_cast<uint64_t>(_mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ)) << (16 * s);
        sum = _mm512_add_ps(sum, _mm512_and_ps(v, absmask));
      }
      row[j] = word;
    }
    a.absum[p] = _mm512_reduce_add_ps(sum);
  }
}

// 16 rows at a time (one load of x serves 16 rows): sum of x over the features whose weight bit is 1 (negative), 4 masked adds
// of 16 floats per 64-bit word; out = alpha * (sum x - 2 * neg) + bias.
template <int R>
void bwn_group(const BwnArgs& a, const float* x, float xsum, int64_t o, float* out) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const uint64_t* w = a.weight + (o / kOcBlock) * a.words * kOcBlock + (o % kOcBlock);
  for (int64_t j = 0; j < a.words; ++j) {
    const float* xj = x + j * 64;
    const __m512 x0 = _mm512_loadu_ps(xj), x1 = _mm512_loadu_ps(xj + 16);
    const __m512 x2 = _mm512_loadu_ps(xj + 32), x3 = _mm512_loadu_ps(xj + 48);
    for (int r = 0; r < R; ++r) {
      const uint64_t bits = w[j * kOcBlock + r];
      acc[r] = _mm512_mask_add_ps(acc[r], static_cast<__mmask16>(bits), acc[r], x0);
      acc[r] = _mm512_mask_add_ps(acc[r], static_cast<__mmask16>(bits >> 16), acc[r], x1);
      acc[r] = _mm512_mask_add_ps(acc[r], static_cast<__mmask16>(bits >> 32), acc[r], x2);
      acc[r] = _mm512_mask_add_ps(acc[r], static_cast<__mmask16>(bits >> 48), acc[r], x3);
    }
  }
  for (int r = 0; r < R; ++r) {
    const float neg = _mm512_reduce_add_ps(acc[r]);
    out[o + r] = (xsum - 2.0f * neg) * a.alpha[o + r] + a.bias[o + r];
  }
}

void bwn_rows(const BwnArgs& a) {
  for (int64_t n = 0; n < a.batch; ++n) {
    const float* x = a.x + n * a.features;
    float* out = a.out + n * a.out_features;
    int64_t o = a.o0;
    for (; o + 16 <= a.o1; o += 16) bwn_group<16>(a, x, a.xsum[n], o, out);
    for (; o < a.o1; ++o) bwn_group<1>(a, x, a.xsum[n], o, out);
  }
}

// Max pool row: 16 channels per register (the last ones masked), held across the window's
// taps; a tap is taken where v > max or v is NaN.
void max_pool_row(const PoolRowArgs& a) {
  const int64_t channels = a.channels;
  const __m512 lo = _mm512_set1_ps(a.clamp_lo), hi = _mm512_set1_ps(a.clamp_hi);
  for (int64_t ow = 0; ow < a.out_w; ++ow) {
    float* o = a.row + ow * channels;
    int64_t w0 = 0, w1 = 0;
    pool_columns(a, ow, w0, w1);
    for (int64_t c0 = 0; c0 < channels; c0 += 16) {
      const int64_t left = channels - c0;
      const __mmask16 lanes = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
      __m512 best = _mm512_set1_ps(-__builtin_inff());
      for (int64_t ih = a.h0; ih < a.h1; ++ih) {
        for (int64_t iw = w0; iw < w1; ++iw) {
          const __m512 v =
              _mm512_maskz_loadu_ps(lanes, a.image + (ih * a.width + iw) * channels + c0);
          const __mmask16 take = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) |
                                 _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
          best = _mm512_mask_mov_ps(best, take, v);
        }
      }
      best = _mm512_mask_mov_ps(best, _mm512_cmp_ps_mask(best, lo, _CMP_LT_OQ), lo);
      best = _mm512_mask_mov_ps(best, _mm512_cmp_ps_mask(best, hi, _CMP_GT_OQ), hi);
      _mm512_mask_storeu_ps(o + c0, lanes, best);
    }
  }
}

// Bit output: sign masks by compare, |v| summed in sign_block's tree (lanes l and l + 16,
// then halves of 256, 128, 64 and 32 bits); lanes past out_channels load as 0.
void emit_bits(const BitsArgs& a) {
  const __m512 zero = _mm512_setzero_ps();
  for (int p = 0; p < a.pixels; ++p) {
    for (int64_t b = a.b0; b < a.b1; ++b) {
      const float* v = a.tile + p * a.pixel_stride + b * kOcBlock;
      const int64_t lanes = block_lanes(b, a.out_channels);
      const __mmask32 valid = lanes >= 32 ? ~__mmask32(0) : (__mmask32(1) << lanes) - 1;
      const __m512 lo = _mm512_maskz_loadu_ps(__mmask16(valid), v);
      const __m512 hi = _mm512_maskz_loadu_ps(__mmask16(valid >> 16), v + 16);
      const uint32_t mask = static_cast<uint32_t>(_mm512_cmp_ps_mask(lo, zero, _CMP_LT_OQ)) |
                            static_cast<uint32_t>(_mm512_cmp_ps_mask(hi, zero, _CMP_LT_OQ)) << 16;
      const __m512 t16 = _mm512_add_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi));
      const __m256 t8 = _mm256_add_ps(_mm512_castps512_ps256(t16),
                                      _mm256_castpd_ps(_mm512_extractf64x4_pd(
                                          _mm512_castps_pd(t16), 1)));
      const __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
      const __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
      const __m128 t1 = _mm_add_ss(t2, _mm_shuffle_ps(t2, t2, 1));
      a.halves[p][b] = mask;
      a.sums[p][b] = _mm_cvtss_f32(t1);
    }
  }
}

}  // namespace avx512
}  // namespace

const KernelTable& kernels_avx512() {
  static const KernelTable table{"avx512", avx512::kTile, avx512::conv_tile,
                                 avx512::conv_tile_epilogue, avx512::pack_nchw,
                                 avx512::pack_nhwc, avx512::bwn_rows, false,
                                 avx512::max_pool_row, avx512::emit_bits};
  return table;
}

}  // namespace xnorlab
