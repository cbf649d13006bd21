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

inline __m256 transform8(__m512i acc, const ConvTileArgs& a, int p, int k) {
  __m512i dot = _mm512_sub_epi64(_mm512_set1_epi64(a.kbits), _mm512_slli_epi64(acc, 1));
  if (a.corr != nullptr) {
    const __m256i c = _mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(a.corr + p * kOcBlock + k * 8));
    dot = _mm512_sub_epi64(dot, _mm512_cvtepi32_epi64(c));
  }
  __m256 f = _mm256_mul_ps(_mm512_cvtepi64_ps(dot), _mm256_loadu_ps(a.alpha + k * 8));
  f = _mm256_mul_ps(f, _mm256_set1_ps(a.scale[p]));
  return _mm256_add_ps(f, _mm256_loadu_ps(a.bias + k * 8));
}

// acc[k] += popcount(broadcast(word) xor w_k) for the 4 registers of 8 output channels.
inline void accumulate(__m512i* acc, uint64_t word, __m512i w0, __m512i w1, __m512i w2,
                       __m512i w3) {
  const __m512i b = _mm512_set1_epi64(static_cast<long long>(word));
  acc[0] = _mm512_add_epi64(acc[0], _mm512_popcnt_epi64(_mm512_xor_si512(b, w0)));
  acc[1] = _mm512_add_epi64(acc[1], _mm512_popcnt_epi64(_mm512_xor_si512(b, w1)));
  acc[2] = _mm512_add_epi64(acc[2], _mm512_popcnt_epi64(_mm512_xor_si512(b, w2)));
  acc[3] = _mm512_add_epi64(acc[3], _mm512_popcnt_epi64(_mm512_xor_si512(b, w3)));
}

template <int P>
void tile(const ConvTileArgs& a) {
  __m512i acc[P][4];
  for (int p = 0; p < P; ++p)
    for (int k = 0; k < 4; ++k) acc[p][k] = _mm512_setzero_si512();
  if (a.words == 1) {  // C <= 64: one word per tap, no inner loop (ResNet's 64-channel stage)
    for (int64_t t = 0; t < a.taps; ++t) {
      const uint64_t* w = a.weight + t * kOcBlock;
      const __m512i w0 = _mm512_loadu_si512(w), w1 = _mm512_loadu_si512(w + 8);
      const __m512i w2 = _mm512_loadu_si512(w + 16), w3 = _mm512_loadu_si512(w + 24);
      for (int p = 0; p < P; ++p) accumulate(acc[p], *a.act[p * a.taps + t], w0, w1, w2, w3);
    }
  } else {
    for (int64_t t = 0; t < a.taps; ++t) {
      const uint64_t* ap[P];
      for (int p = 0; p < P; ++p) ap[p] = a.act[p * a.taps + t];
      const uint64_t* w = a.weight + t * a.words * kOcBlock;
      for (int64_t j = 0; j < a.words; ++j) {
        const uint64_t* wj = w + j * kOcBlock;
        const __m512i w0 = _mm512_loadu_si512(wj), w1 = _mm512_loadu_si512(wj + 8);
        const __m512i w2 = _mm512_loadu_si512(wj + 16), w3 = _mm512_loadu_si512(wj + 24);
        for (int p = 0; p < P; ++p) accumulate(acc[p], ap[p][j], w0, w1, w2, w3);
      }
    }
  }
  for (int p = 0; p < P; ++p) {
    float* out = a.out + p * a.out_pixel_stride;
    for (int k = 0; k < 4; ++k) {
      const int left = a.oc_valid - k * 8;
      if (left <= 0) break;
      const __m256 f = transform8(acc[p][k], a, p, k);
      if (left >= 8) {
        _mm256_storeu_ps(out + k * 8, f);
      } else {
        _mm256_mask_storeu_ps(out + k * 8, static_cast<__mmask8>((1u << left) - 1u), f);
      }
    }
  }
}

void conv_tile(const ConvTileArgs& a) {
  switch (a.pixels) {
    case 6: tile<6>(a); break;
    case 5: tile<5>(a); break;
    case 4: tile<4>(a); break;
    case 3: tile<3>(a); break;
    case 2: tile<2>(a); break;
    default: tile<1>(a); break;
  }
}

inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
}

// NCHW: 64 pixels per step (4 registers of 16 floats per channel: 256 contiguous bytes per
// channel stream, which the prefetchers follow); each channel sets one bit in 64 per-pixel words
// (8 registers of 8 x 64-bit lanes); |x| summed in channel order.
void pack_nchw(const PackArgs& a) {
  const __m512 zero = _mm512_setzero_ps();
  const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
  for (int64_t p = a.p0; p < a.p1; p += 64) {
    const int count = static_cast<int>(a.p1 - p < 64 ? a.p1 - p : 64);
    __mmask16 m[4];
    for (int v = 0; v < 4; ++v) m[v] = tail_mask(count - 16 * v > 0 ? count - 16 * v : 0);
    __m512 sum[4] = {zero, zero, zero, zero};
    for (int64_t j = 0; j < a.words; ++j) {
      __m512i acc[8];
      for (int i = 0; i < 8; ++i) acc[i] = _mm512_setzero_si512();
      const int64_t cend = (j + 1) * 64 < a.channels ? (j + 1) * 64 : a.channels;
      for (int64_t c = j * 64; c < cend; ++c) {
        const float* xc = a.x + c * a.hw + p;
        const __m512i bit = _mm512_set1_epi64(static_cast<long long>(uint64_t{1} << (c & 63)));
        for (int v = 0; v < 4; ++v) {
          const __m512 x = _mm512_maskz_loadu_ps(m[v], xc + 16 * v);
          const __mmask16 neg = _mm512_cmp_ps_mask(x, zero, _CMP_LT_OQ);
          acc[2 * v] = _mm512_mask_or_epi64(acc[2 * v], static_cast<__mmask8>(neg), acc[2 * v], bit);
          acc[2 * v + 1] = _mm512_mask_or_epi64(acc[2 * v + 1], static_cast<__mmask8>(neg >> 8),
                                                acc[2 * v + 1], bit);
          sum[v] = _mm512_add_ps(sum[v], _mm512_and_ps(x, absmask));
        }
      }
      if (a.words == 1 && count == 64) {
        for (int i = 0; i < 8; ++i) _mm512_storeu_si512(a.packed + p + 8 * i, acc[i]);
        continue;
      }
      alignas(64) uint64_t words[64];
      for (int i = 0; i < 8; ++i) _mm512_store_si512(words + 8 * i, acc[i]);
      for (int i = 0; i < count; ++i) a.packed[(p + i) * a.words + j] = words[i];
    }
    for (int v = 0; v < 4; ++v) _mm512_mask_storeu_ps(a.absum + p + 16 * v, m[v], sum[v]);
  }
}

// NHWC: 16 channels per compare; four 16-bit masks make one 64-bit word.
void pack_nhwc(const PackArgs& a) {
  const __m512 zero = _mm512_setzero_ps();
  const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
  for (int64_t p = a.p0; p < a.p1; ++p) {
    const float* px = a.x + p * a.channels;
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < a.words; ++j) {
      uint64_t word = 0;
      for (int s = 0; s < 4; ++s) {
        const int64_t c = j * 64 + s * 16;
        if (c >= a.channels) break;
        const __mmask16 m = tail_mask(a.channels - c);
        const __m512 v = _mm512_maskz_loadu_ps(m, px + c);
        word |= static_cast<uint64_t>(_mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ)) << (16 * s);
        sum = _mm512_add_ps(sum, _mm512_and_ps(v, absmask));
      }
      a.packed[p * a.words + j] = word;
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

}  // namespace avx512
}  // namespace

const KernelTable& kernels_avx512() {
  static const KernelTable table{"avx512", avx512::kTile, avx512::conv_tile, avx512::pack_nchw,
                                 avx512::pack_nhwc, avx512::bwn_rows, false};
  return table;
}

}  // namespace xnorlab
