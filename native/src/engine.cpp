// Drivers: sign+pack (fused with sum|x|), K map / beta, tiled popcount conv with fused output
// transform, BWN linear. Bit layout and weight order: include/xnorlab/kernels.h.
#include "xnorlab/engine.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <vector>

#include "xnorlab/isa.h"
#include "xnorlab/kernels.h"
#include "xnorlab/threadpool.h"

namespace xnorlab {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

const KernelTable& active_table() {
  switch (active_isa()) {
#if defined(XNORLAB_HAVE_AVX512)
    case Isa::Avx512: return kernels_avx512();
#endif
#if defined(XNORLAB_HAVE_AVX2)
    case Isa::Avx2: return kernels_avx2();
#endif
    default: return kernels_scalar();
  }
}

// Grow-only scratch owned by the calling thread (no page faults on repeated calls).
template <typename T>
T* scratch(std::vector<T>& buf, int64_t count) {
  if (static_cast<int64_t>(buf.size()) < count) buf.resize(static_cast<size_t>(count));
  return buf.data();
}

thread_local std::vector<uint64_t> t_packed;
thread_local std::vector<float> t_absum, t_scale, t_rows, t_tile;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Halo geometry of the packed input: image n is [hp][wp][words] words, the input pixel (h, w)
// at (h + pad_top, w + pad_left); the rest (the conv's padding) is all-zero words (= +1).
struct Halo {
  int64_t hp, wp, words;
  int64_t top, left;
  int64_t image_words() const { return hp * wp * words; }
};

Halo halo_of(const ConvShape& s, int64_t words) {
  const int64_t span_h = s.dilation_h * (s.kernel_h - 1) + 1;
  const int64_t span_w = s.dilation_w * (s.kernel_w - 1) + 1;
  // Rows / columns the last output pixel's taps reach, in halo coordinates.
  const int64_t need_h = (s.out_h - 1) * s.stride_h + span_h;
  const int64_t need_w = (s.out_w - 1) * s.stride_w + span_w;
  return Halo{std::max(s.pad_top + s.height, need_h), std::max(s.pad_left + s.width, need_w),
              words, s.pad_top, s.pad_left};
}

// Zero the halo words of every image (the interior is written by the pack pass).
void zero_halo(const ConvShape& s, const Halo& h, uint64_t* packed) {
  const int64_t row = h.wp * h.words;
  const int64_t right = h.wp - h.left - s.width;
  for (int64_t n = 0; n < s.batch; ++n) {
    uint64_t* img = packed + n * h.image_words();
    std::memset(img, 0, static_cast<size_t>(h.top * row) * 8);
    const int64_t bottom = h.top + s.height;
    std::memset(img + bottom * row, 0, static_cast<size_t>((h.hp - bottom) * row) * 8);
    if (h.left == 0 && right == 0) continue;
    for (int64_t r = h.top; r < bottom; ++r) {
      uint64_t* line = img + r * row;
      std::memset(line, 0, static_cast<size_t>(h.left * h.words) * 8);
      std::memset(line + (h.left + s.width) * h.words, 0, static_cast<size_t>(right * h.words) * 8);
    }
  }
}

// Pixels per pack task of an image of `hw` pixels: whole images for small inputs (they run on
// the calling thread: waking a worker costs more than the work), else ~1/8 image, >= 256.
int64_t pack_chunk_pixels(const ConvShape& s) {
  const int64_t hw = s.height * s.width;
  const bool small = s.batch * hw * s.channels < (int64_t{1} << 16);
  return small ? hw : std::max<int64_t>(256, ceil_div(hw, 8));
}

// Sign + pack + sum|x| of pack task `task` (image task / chunks, its pixel chunk task % chunks),
// with the prologue of `b` if any (NHWC input: the binding refuses it for NCHW).
void pack_task(const KernelTable& k, const ConvShape& s, const ConvBuffers& b, const Halo& h,
               const float* x, uint64_t* packed, float* absum, int64_t chunk, int64_t chunks,
               int64_t task) {
  const int64_t hw = s.height * s.width;
  const int64_t n = task / chunks, c0 = (task % chunks) * chunk, c1 = std::min(hw, c0 + chunk);
  PackArgs a{x + n * s.channels * hw, s.channels, hw, c0, c1, h.words,
             packed + n * h.image_words() + (h.top * h.wp + h.left) * h.words, s.width,
             h.wp * h.words, absum + n * hw, b.in_scale, b.in_shift, b.in_lo, b.in_hi};
  (s.channels_last ? k.pack_nhwc : k.pack_nchw)(a);
}

// Sign + pack + sum|x| of the whole batch into the halo buffer; true if the input holds a NaN.
bool pack_input(const KernelTable& k, const ConvShape& s, const ConvBuffers& b, const Halo& h,
                const float* x, uint64_t* packed, float* absum) {
  const int64_t hw = s.height * s.width;
  zero_halo(s, h, packed);
  const int64_t chunk = pack_chunk_pixels(s);
  const bool small = chunk == hw && s.batch * hw * s.channels < (int64_t{1} << 16);
  const int64_t chunks = ceil_div(hw, chunk);
  const auto body = [&](int64_t task) {
    pack_task(k, s, b, h, x, packed, absum, chunk, chunks, task);
  };
  if (small) {
    for (int64_t task = 0; task < s.batch * chunks; ++task) body(task);
  } else {
    parallel_for(s.batch * chunks, body);
  }
  for (int64_t i = 0; i < s.batch * hw; ++i) {
    if (std::isnan(absum[i])) return true;
  }
  return false;
}

// Output positions o in [lo, hi) whose input index o * stride + shift lies in [0, size).
void valid_range(int64_t out, int64_t stride, int64_t shift, int64_t size, int64_t& lo,
                 int64_t& hi) {
  lo = shift >= 0 ? 0 : ceil_div(-shift, stride);
  hi = size - shift <= 0 ? 0 : std::min(out, ceil_div(size - shift, stride));
  if (hi < lo) hi = lo;
}

// Input rows [lo, hi) that the output rows [oh0, oh1) read (clipped to the image).
void kmap_input_rows(const ConvShape& s, int64_t oh0, int64_t oh1, int64_t& lo, int64_t& hi) {
  lo = std::max<int64_t>(0, oh0 * s.stride_h - s.pad_top);
  hi = std::min<int64_t>(s.height, (oh1 - 1) * s.stride_h - s.pad_top +
                                       (s.kernel_h - 1) * s.dilation_h + 1);
  if (hi < lo) hi = lo;
}

// K map of the output rows [oh0, oh1) of one image: box filter (kh x kw, stride, dilation,
// zero padding) of absum * factor; `rows` holds (input rows read) x out_w floats.
// Separable: rows[ih][ow] = sum_kx A[ih][ow*stride_w + kx*dil_w - pad_left] over valid columns
// (contiguous loops over precomputed valid ranges, so they vectorize), then
// K[oh][ow] = factor * sum_ky rows[oh*stride_h + ky*dil_h - pad_top][ow] over valid rows.
// Every value is summed in the same order whatever the row range, so a K map computed in row
// bands equals the whole image's bit for bit.
void kmap_rows(const ConvShape& s, const float* absum, float factor, float* rows, float* out,
               int64_t oh0, int64_t oh1) {
  int64_t ih0 = 0, ih1 = 0;
  kmap_input_rows(s, oh0, oh1, ih0, ih1);
  std::fill(rows, rows + (ih1 - ih0) * s.out_w, 0.0f);
  for (int64_t kx = 0; kx < s.kernel_w; ++kx) {
    const int64_t shift = kx * s.dilation_w - s.pad_left;  // iw = ow * stride_w + shift
    int64_t lo = 0, hi = 0;
    valid_range(s.out_w, s.stride_w, shift, s.width, lo, hi);
    for (int64_t ih = ih0; ih < ih1; ++ih) {
      const float* a = absum + ih * s.width;
      float* r = rows + (ih - ih0) * s.out_w;
      if (s.stride_w == 1) {
        for (int64_t ow = lo; ow < hi; ++ow) r[ow] += a[ow + shift];
      } else {
        for (int64_t ow = lo; ow < hi; ++ow) r[ow] += a[ow * s.stride_w + shift];
      }
    }
  }
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    float* k = out + oh * s.out_w;
    std::fill(k, k + s.out_w, 0.0f);
    for (int64_t ky = 0; ky < s.kernel_h; ++ky) {
      const int64_t ih = oh * s.stride_h - s.pad_top + ky * s.dilation_h;
      if (ih < 0 || ih >= s.height) continue;
      const float* r = rows + (ih - ih0) * s.out_w;
      for (int64_t ow = 0; ow < s.out_w; ++ow) k[ow] += r[ow];
    }
    for (int64_t ow = 0; ow < s.out_w; ++ow) k[ow] *= factor;
  }
}

// beta = mean |x| of one image (the scalar input scale), summed in double in pixel order.
float image_beta(const ConvShape& s, const float* absum) {
  const int64_t hw = s.height * s.width;
  double sum = 0.0;
  for (int64_t i = 0; i < hw; ++i) sum += absum[i];
  return static_cast<float>(sum / static_cast<double>(s.channels * hw));
}

// The K map's factor 1 / (C * taps), applied to each box sum of absum.
float kmap_factor(const ConvShape& s) {
  const float inv_c = 1.0f / static_cast<float>(s.channels);
  const float inv_taps = 1.0f / static_cast<float>(s.kernel_h * s.kernel_w);
  return inv_c * inv_taps;
}

// Per output pixel input scale: K map (box filter of mean_c|x|, zero padded), beta or 1.
void input_scale(const ConvShape& s, const float* absum, float* scale) {
  const int64_t hw = s.height * s.width, ohw = s.out_h * s.out_w;
  if (s.scaling == Scaling::None) {
    std::fill(scale, scale + s.batch * ohw, 1.0f);
    return;
  }
  if (s.scaling == Scaling::Scalar) {
    for (int64_t n = 0; n < s.batch; ++n) {
      std::fill(scale + n * ohw, scale + (n + 1) * ohw, image_beta(s, absum + n * hw));
    }
    return;
  }
  // Separable box filter: rows[ih][ow] = sum_kx A[ih][iw(ow, kx)], then K = sum_ky rows / taps.
  const float factor = kmap_factor(s);
  const int64_t work = s.batch * (s.height + s.out_h) * s.out_w * (s.kernel_h + s.kernel_w);
  parallel_for(work < (int64_t{1} << 17) ? 1 : s.batch, [&](int64_t task) {
    const int64_t n0 = work < (int64_t{1} << 17) ? 0 : task;
    const int64_t n1 = work < (int64_t{1} << 17) ? s.batch : task + 1;
    std::vector<float> rows(static_cast<size_t>(s.height * s.out_w));
    for (int64_t n = n0; n < n1; ++n) {
      kmap_rows(s, absum + n * hw, factor, rows.data(), scale + n * ohw, 0, s.out_h);
    }
  });
}

struct ConvPlan {
  ConvPlan(const ConvShape& shape, const ConvBuffers& buffers, const KernelTable& table,
           const Halo& h, const uint64_t* packed_input, const float* input_scale)
      : s(shape), b(buffers), k(table), halo(h), packed(packed_input), scale(input_scale),
        taps(shape.kernel_h * shape.kernel_w), blocks(ceil_div(shape.out_channels, kOcBlock)) {
    for (int64_t ky = 0; ky < s.kernel_h; ++ky) {
      for (int64_t kx = 0; kx < s.kernel_w; ++kx) {
        tap_offset.push_back((ky * s.dilation_h * halo.wp + kx * s.dilation_w) * halo.words);
      }
    }
  }
  ConvShape s;    // of the slab of images being computed (batch = images in the slab)
  ConvBuffers b;  // x and out point at the slab's first image
  const KernelTable& k;
  Halo halo;
  const uint64_t* packed;  // halo buffer of the slab
  const float* scale;
  int64_t taps, blocks;
  int64_t group_blocks = 0, tiles = 0, tiles_per_chunk = 0, chunks = 0;
  // Input of the next slab, prefetched a few lines per tile while this slab computes.
  const char* prefetch = nullptr;
  int64_t prefetch_lines = 0, lines_per_tile = 0;
  std::vector<int64_t> tap_offset;  // word offset of tap t from the pixel's origin
  // Zero-padding correction per border pattern: the halo taps of an output pixel depend only
  // on (which kernel rows fall outside, which columns do), so every pixel of the same
  // (row pattern, column pattern) shares one precomputed [blocks][32] correction.
  std::vector<int32_t> row_pattern, col_pattern;  // per oh / ow: pattern index
  std::vector<uint8_t> row_inside, col_inside;    // per oh / ow: every kernel row/col inside
  int64_t col_patterns = 0;
  std::vector<int32_t> pattern_corr;              // [row pat * col_patterns + col pat][blocks*32]
  std::vector<int32_t> no_correction;             // [blocks*32] zeros (pixels without halo taps)
  bool stream_out = false;                        // streaming stores of the output (fenced)
  // Bit output (BitOutput): the next conv's halo, and the first image of this plan's slab.
  const BitOutput* bits = nullptr;
  Halo next_halo{};
  int64_t first_image = 0;
  bool epilogue = false;                          // residual add and / or clamp (ConvTileArgs)
};

// Position of an output pixel: image n, row oh, column ow (advanced without divisions).
struct PixelCursor {
  int64_t n, oh, ow;
  PixelCursor(const ConvShape& s, int64_t q) {
    const int64_t ohw = s.out_h * s.out_w;
    n = q / ohw;
    oh = (q % ohw) / s.out_w;
    ow = q % s.out_w;
  }
  void advance(const ConvShape& s) {
    if (++ow == s.out_w) {
      ow = 0;
      if (++oh == s.out_h) oh = 0, ++n;
    }
  }
};

// Origins of the next `pixels` pixels from `at` (advanced past them) and, with zero padding,
// the correction row ([blocks][32]) of each pixel with halo taps (nullptr for the others);
// returns true if any pixel has one.
bool tile_origins(const ConvPlan& pl, PixelCursor& at, int pixels, const uint64_t** origin,
                  const int32_t** corr_row) {
  const ConvShape& s = pl.s;
  const int64_t corr_stride = pl.blocks * kOcBlock;
  bool border = false;
  for (int p = 0; p < pixels; ++p, at.advance(s)) {
    origin[p] = pl.packed + at.n * pl.halo.image_words() +
                (at.oh * s.stride_h * pl.halo.wp + at.ow * s.stride_w) * pl.halo.words;
    corr_row[p] = nullptr;
    if (s.zero_padding && !(pl.row_inside[at.oh] && pl.col_inside[at.ow])) {
      corr_row[p] = pl.pattern_corr.data() +
                    (pl.row_pattern[at.oh] * pl.col_patterns + pl.col_pattern[at.ow]) * corr_stride;
      border = true;
    }
  }
  return border;
}

// Border patterns of one axis: index per output position; valid[pattern][k] says whether
// kernel index k falls inside the image; inside[o] says whether all of them do.
int64_t axis_patterns(int64_t out, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation,
                      int64_t size, std::vector<int32_t>& index, std::vector<uint8_t>& inside,
                      std::vector<std::vector<bool>>& valid) {
  index.assign(static_cast<size_t>(out), 0);
  inside.assign(static_cast<size_t>(out), 1);
  for (int64_t o = 0; o < out; ++o) {
    std::vector<bool> ok(static_cast<size_t>(kernel));
    for (int64_t k = 0; k < kernel; ++k) {
      const int64_t i = o * stride - pad + k * dilation;
      ok[k] = i >= 0 && i < size;
      if (!ok[k]) inside[o] = 0;
    }
    size_t found = 0;
    while (found < valid.size() && valid[found] != ok) ++found;
    if (found == valid.size()) valid.push_back(ok);
    index[o] = static_cast<int32_t>(found);
  }
  return static_cast<int64_t>(valid.size());
}

void plan_border_patterns(ConvPlan& pl) {
  const ConvShape& s = pl.s;
  std::vector<std::vector<bool>> rows, cols;
  const int64_t nr = axis_patterns(s.out_h, s.kernel_h, s.stride_h, s.pad_top, s.dilation_h,
                                   s.height, pl.row_pattern, pl.row_inside, rows);
  const int64_t nc = axis_patterns(s.out_w, s.kernel_w, s.stride_w, s.pad_left, s.dilation_w,
                                   s.width, pl.col_pattern, pl.col_inside, cols);
  pl.col_patterns = nc;
  if (!s.zero_padding) return;  // one padding: the all-zero halo words already give +1 taps
  const int64_t stride = pl.blocks * kOcBlock;
  pl.no_correction.assign(static_cast<size_t>(stride), 0);
  pl.pattern_corr.assign(static_cast<size_t>(nr * nc * stride), 0);
  for (int64_t r = 0; r < nr; ++r) {
    for (int64_t c = 0; c < nc; ++c) {
      int32_t* dst = pl.pattern_corr.data() + (r * nc + c) * stride;
      for (int64_t ky = 0; ky < s.kernel_h; ++ky) {
        for (int64_t kx = 0; kx < s.kernel_w; ++kx) {
          if (rows[r][ky] && cols[c][kx]) continue;
          const int64_t t = ky * s.kernel_w + kx;
          for (int64_t blk = 0; blk < pl.blocks; ++blk) {
            const int32_t* st = pl.b.tap_sums + (blk * pl.taps + t) * kOcBlock;
            for (int oc = 0; oc < kOcBlock; ++oc) dst[blk * kOcBlock + oc] += st[oc];
          }
        }
      }
    }
  }
}

// Orders this thread's streaming (non-temporal) stores before its later stores, i.e. before
// the pool's task-done counter that the caller waits on, so the output is complete when read.
inline void store_fence() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_sfence();
#endif
}

// Output written with streaming stores: outputs larger than a core's L2 (> 1 MiB per call; the
// next layer reads them from memory or L3 anyway, and their writes then skip the read for
// ownership) whose 32-channel blocks are 64-byte aligned. Smaller outputs - every single
// image of ResNet-18 - keep ordinary stores, so the next call (which may add this output in
// its epilogue) finds them in L2 instead of reading them back from memory.
bool stream_output(const ConvShape& s, const float* out) {
  constexpr int64_t kStreamBytes = (int64_t{1} << 20) + 1;
  const int64_t bytes = s.batch * s.out_h * s.out_w * s.out_channels * 4;
  return bytes >= kStreamBytes && s.out_channels % 16 == 0 &&
         reinterpret_cast<uintptr_t>(out) % 64 == 0;
}

// Prefetch tile ti's share of the next slab's input (into L2; it lands in L3 at worst), so the
// next pack pass reads from cache instead of memory.
void prefetch_lines(const ConvPlan& pl, int64_t ti) {
  const int64_t l0 = ti * pl.lines_per_tile;
  const int64_t l1 = std::min(pl.prefetch_lines, l0 + pl.lines_per_tile);
  for (int64_t l = l0; l < l1; ++l) __builtin_prefetch(pl.prefetch + l * 64, 0, 2);
}

// Bit output of one tile (BitOutput): the ISA's emit_bits writes each pixel's blocks [b0, b1)
// as sign bits into the next conv's packed words (block b is the 32-bit half b) and their sums
// of |v| into block_absum.
void emit_tile_bits(const ConvPlan& pl, PixelCursor at, int pixels, int64_t b0, int64_t b1,
                    const float* tile) {
  const ConvShape& s = pl.s;
  const Halo& h = pl.next_halo;
  uint32_t* halves[kMaxTile];
  float* sums[kMaxTile];
  for (int p = 0; p < pixels; ++p, at.advance(s)) {
    const int64_t n = pl.first_image + at.n;
    halves[p] = reinterpret_cast<uint32_t*>(
        pl.bits->bits + n * h.image_words() + ((at.oh + h.top) * h.wp + at.ow + h.left) * h.words);
    sums[p] = pl.bits->block_absum + ((n * s.out_h + at.oh) * s.out_w + at.ow) * pl.blocks;
  }
  pl.k.emit_bits(BitsArgs{tile, pixels, s.out_channels, b0, b1, s.out_channels, halves, sums});
}

void conv_task(const ConvPlan& pl, int64_t task) {
  const ConvShape& s = pl.s;
  const int64_t group = task / pl.chunks, chunk = task % pl.chunks;
  const int64_t b0 = group * pl.group_blocks, b1 = std::min(pl.blocks, b0 + pl.group_blocks);
  const int64_t total = s.batch * s.out_h * s.out_w, tile = pl.k.tile;
  const int64_t t0 = chunk * pl.tiles_per_chunk, t1 = std::min(pl.tiles, t0 + pl.tiles_per_chunk);
  const uint64_t* origin[kMaxTile];
  const int32_t* corr_row[kMaxTile];
  const int32_t* corr[kMaxTile];
  const auto tile_fn = pl.epilogue ? pl.k.conv_tile_epilogue : pl.k.conv_tile;
  // With a bit output each tile is written to this scratch (in the output's layout) and
  // turned into bits while in L1.
  float* tile_out = pl.bits == nullptr ? nullptr : scratch(t_tile, tile * s.out_channels);
  PixelCursor at(s, t0 * tile);
  for (int64_t ti = t0; ti < t1; ++ti) {
    const int64_t q0 = ti * tile;
    const int pixels = static_cast<int>(std::min(tile, total - q0));
    const PixelCursor tile_at = at;
    const bool border = tile_origins(pl, at, pixels, origin, corr_row);
    if (group == 0) prefetch_lines(pl, ti);
    if (border) {
      for (int p = 0; p < pixels; ++p) {
        corr[p] = (corr_row[p] != nullptr ? corr_row[p] : pl.no_correction.data()) + b0 * kOcBlock;
      }
    }
    const int64_t first = q0 * s.out_channels + b0 * kOcBlock;  // of the tile in out / residual
    ConvTileArgs a{origin, pl.tap_offset.data(), pixels, static_cast<int>(b1 - b0),
                   pl.taps, pl.halo.words,
                   pl.b.weight + b0 * pl.taps * pl.halo.words * kOcBlock,
                   static_cast<int>(s.out_channels - b0 * kOcBlock),
                   pl.b.alpha + b0 * kOcBlock, pl.b.bias + b0 * kOcBlock, pl.scale + q0,
                   border ? corr : nullptr, 0, pl.taps * s.channels,
                   tile_out == nullptr ? pl.b.out + first : tile_out + b0 * kOcBlock,
                   s.out_channels, pl.stream_out};
    if (pl.epilogue) {
      a.epilogue = true;
      a.residual = pl.b.residual == nullptr ? nullptr : pl.b.residual + first;
      a.clamp_lo = pl.b.clamp_lo;
      a.clamp_hi = pl.b.clamp_hi;
    }
    tile_fn(a);
    if (tile_out != nullptr) emit_tile_bits(pl, tile_at, pixels, b0, b1, tile_out);
  }
  if (pl.stream_out) store_fence();
}

// Output-channel blocks handled together: as many as keep their weights within 16 KiB of L1.
int64_t group_blocks_for(int64_t taps, int64_t words, int64_t blocks) {
  const int64_t weight_block_bytes = taps * words * kOcBlock * 8;
  return std::min(blocks, std::max<int64_t>(1, (16 * 1024) / weight_block_bytes));
}

// Word operations of a conv (xor + popcount + add of one 64-bit word for one output channel,
// padded blocks included). Below kWorkerWordOps waking a worker costs more than the work; the
// threshold sits below the smallest 3x3 conv of a batch-1 ResNet-18 so that every one splits.
constexpr int64_t kWorkerWordOps = int64_t{1} << 19;

// A call whose pack pass alone is worth a worker (input floats) runs phased on all threads,
// and there its conv phase splits from kPhasedWordOps word operations.
constexpr int64_t kPhasedInputFloats = int64_t{1} << 15;
constexpr int64_t kPhasedWordOps = int64_t{1} << 16;

int64_t conv_word_ops(const ConvShape& s, int64_t words) {
  return s.batch * s.out_h * s.out_w * s.kernel_h * s.kernel_w * words *
         ceil_div(s.out_channels, kOcBlock) * kOcBlock;
}

// Splits the conv of pl into tasks (block group, chunk of pixel tiles): one task below
// kWorkerWordOps, else ~16 per thread (handed out dynamically). Returns the task count.
int64_t plan_conv_tasks(ConvPlan& pl, int64_t min_word_ops = kWorkerWordOps) {
  pl.group_blocks = group_blocks_for(pl.taps, pl.halo.words, pl.blocks);
  const int64_t groups = ceil_div(pl.blocks, pl.group_blocks);
  const int64_t total = pl.s.batch * pl.s.out_h * pl.s.out_w;
  pl.tiles = ceil_div(total, pl.k.tile);
  pl.lines_per_tile = ceil_div(pl.prefetch_lines, pl.tiles);
  const int64_t want_tasks =
      conv_word_ops(pl.s, pl.halo.words) < min_word_ops ? 1 : 16 * int64_t{get_threads()};
  const int64_t chunks_wanted =
      want_tasks == 1 ? 1 : std::max<int64_t>(1, ceil_div(want_tasks, groups));
  pl.tiles_per_chunk = std::max<int64_t>(1, ceil_div(pl.tiles, chunks_wanted));
  pl.chunks = ceil_div(pl.tiles, pl.tiles_per_chunk);
  return want_tasks == 1 ? 1 : groups * pl.chunks;
}

void run_conv(ConvPlan& pl) {
  const int64_t tasks = plan_conv_tasks(pl);
  if (tasks == 1) {
    const int64_t groups = ceil_div(pl.blocks, pl.group_blocks);
    for (int64_t task = 0; task < groups * pl.chunks; ++task) conv_task(pl, task);
  } else {
    parallel_for(tasks, [&](int64_t task) { conv_task(pl, task); });
  }
}

// Phase times of one call, summed over the slabs or images it computed (seconds).
struct PhaseTimes {
  double pack = 0, scale = 0, conv = 0;
  bool input_has_nan = false;
};

// Pack, input scale and conv of the pl.s.batch images at pl.b.x, into `packed` / `absum` /
// `scale` (the buffers pl.packed and pl.scale point at); adds the phase times to `t`.
void compute_images(ConvPlan& pl, uint64_t* packed, float* absum, float* scale, PhaseTimes& t) {
  const auto t0 = Clock::now();
  t.input_has_nan |= pack_input(pl.k, pl.s, pl.b, pl.halo, pl.b.x, packed, absum);
  const auto t1 = Clock::now();
  input_scale(pl.s, absum, scale);
  const auto t2 = Clock::now();
  run_conv(pl);
  t.pack += std::chrono::duration<double>(t1 - t0).count();
  t.scale += std::chrono::duration<double>(t2 - t1).count();
  t.conv += seconds_since(t2);
}

constexpr int64_t kWholeBatchBytes = int64_t{1} << 20;

// Floats of one input image and of one output image.
int64_t image_floats(const ConvShape& s) { return s.channels * s.height * s.width; }
int64_t out_image_floats(const ConvShape& s) { return s.out_h * s.out_w * s.out_channels; }
int64_t image_bytes(const ConvShape& s) { return image_floats(s) * 4; }

// Images per slab on one thread. Inputs larger than the L2 cache are computed a few images at
// a time (pack, scale, conv per slab): the packed slab stays in cache and each slab's conv is
// long enough to hide the prefetch of the next slab's input.
int64_t slab_images(const ConvShape& s) {
  constexpr int64_t kSlabBytes = int64_t{1} << 19;
  if (s.batch * image_bytes(s) <= kWholeBatchBytes) return s.batch;
  return std::max<int64_t>(1, kSlabBytes / image_bytes(s));
}

// One thread (or a small batch): slab after slab, each slab's phases spread over the pool.
PhaseTimes conv_in_slabs(ConvPlan& pl, const ConvBuffers& b) {
  const ConvShape s = pl.s;
  const int64_t in_floats = image_floats(s), out_floats = out_image_floats(s);
  const int64_t slab = get_threads() > 1 ? s.batch : slab_images(s);
  uint64_t* packed = scratch(t_packed, slab * pl.halo.image_words());
  float* absum = scratch(t_absum, slab * s.height * s.width);
  float* scale = scratch(t_scale, slab * s.out_h * s.out_w);
  pl.packed = packed;
  pl.scale = scale;
  PhaseTimes t;
  for (int64_t n0 = 0; n0 < s.batch; n0 += slab) {
    const int64_t images = std::min(slab, s.batch - n0);
    const int64_t next = std::min(slab, s.batch - n0 - images);
    pl.s.batch = images;
    pl.first_image = n0;
    pl.b.x = b.x + n0 * in_floats;
    pl.b.out = b.out + n0 * out_floats;
    if (b.residual != nullptr) pl.b.residual = b.residual + n0 * out_floats;
    pl.prefetch = reinterpret_cast<const char*>(pl.b.x + images * in_floats);
    pl.prefetch_lines = ceil_div(next * in_floats * 4, 64);
    compute_images(pl, packed, absum, scale, t);
  }
  return t;
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// One phase of a phased region. Its items are split into one contiguous range per place of
// the region (region_thread_place): a thread claims the items of its own range first, then
// those left in the others'. Phases split alike (by image and pixel) so a thread mostly reads
// what it wrote in the phase or call before, which sits in its own core's cache. A thread that
// finds no item left waits until the items the others took are done, so the next phase sees
// this one's results. Only items in progress are waited for, never a thread: a worker that
// joins late skips finished phases, one that never joins leaves its range to the others.
// An item's exception is kept for the caller and still counts the item as done.
class Phase {
 public:
  Phase(int64_t items, int64_t places)
      : items_(items), places_(std::max<int64_t>(1, places)), ranges_(new Range[places_]) {
    for (int64_t p = 0; p < places_; ++p) {
      ranges_[p].next.store(items * p / places_, std::memory_order_relaxed);
      ranges_[p].end = items * (p + 1) / places_;
    }
  }

  template <typename Item>
  void run(const Item& item) {
    const int64_t place = region_thread_place() % places_;
    for (int64_t k = 0; k < places_; ++k) {
      Range& range = ranges_[(place + k) % places_];
      for (;;) {
        const int64_t i = range.next.fetch_add(1, std::memory_order_relaxed);
        if (i >= range.end) break;
        try {
          item(i);
        } catch (...) {
          const std::lock_guard<std::mutex> lock(error_mutex_);
          if (!error_) error_ = std::current_exception();
        }
        if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == items_) {
          end_.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
        }
      }
    }
    // The items left run on threads that are computing; yield after a short spin in case one
    // of them waits for this CPU.
    for (int spins = 0; done_.load(std::memory_order_acquire) < items_; ++spins) {
      if (spins < 256) {
        cpu_relax();
      } else {
        sched_yield();
      }
    }
  }

  // When the last item finished (call after the region).
  Clock::time_point end() const { return Clock::time_point(Clock::duration(end_.load())); }
  void rethrow() const {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // A place's claim counter, on its own cache line: the places claim at the same time.
  struct alignas(64) Range {
    std::atomic<int64_t> next{0};
    int64_t end = 0;
  };
  int64_t items_, places_;
  std::unique_ptr<Range[]> ranges_;
  alignas(64) std::atomic<int64_t> done_{0};
  std::atomic<Clock::rep> end_{0};
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

// Several threads, batch-wide (a single image, or a batch that is not image parallel): one
// parallel region per call, whose threads run the phases in order - pack chunks, K map row
// bands (or beta / 1 per image), conv tasks - each phase's items shared dynamically (Phase).
// Against one region per phase this saves the hand-over of the worker between phases and
// splits the K map too, which otherwise ran on the calling thread. Every value is computed as
// on one thread (the K map's bands sum in the same order), so outputs are bit-equal.
PhaseTimes conv_phased(ConvPlan& pl, const ConvBuffers& b) {
  const ConvShape& s = pl.s;
  const int64_t hw = s.height * s.width, ohw = s.out_h * s.out_w;
  const int64_t threads = get_threads();
  uint64_t* packed = scratch(t_packed, s.batch * pl.halo.image_words());
  float* absum = scratch(t_absum, s.batch * hw);
  float* scale = scratch(t_scale, s.batch * ohw);
  pl.b = b;
  pl.packed = packed;
  pl.scale = scale;
  pl.prefetch = nullptr;
  pl.prefetch_lines = 0;
  // The workers are awake for the pack phase already: the conv phase splits from less work.
  // Below that it is one task per block group (plan_conv_tasks counts them as one serial run).
  int64_t conv_tasks = plan_conv_tasks(pl, kPhasedWordOps);
  const int64_t groups = ceil_div(pl.blocks, pl.group_blocks);
  if (conv_tasks == 1) conv_tasks = groups * pl.chunks;
  // NHWC: at least two pack chunks per thread over the batch, as a small image packed by one
  // thread leaves the other waiting at the phase's end. NCHW keeps whole-image or long chunks:
  // a chunk of a few pixels reads part of a cache line from every channel plane.
  int64_t chunk = pack_chunk_pixels(s);
  if (s.channels_last) chunk = std::min(chunk, ceil_div(hw, ceil_div(2 * threads, s.batch)));
  const int64_t chunks = ceil_div(hw, chunk);
  // K map bands of >= ~1024 output pixels, at most 4 per thread; beta and 1: whole images.
  int64_t band_rows = s.out_h;
  if (s.scaling == Scaling::Kmap) {
    const int64_t bands = std::clamp<int64_t>(ohw / 1024, 1, std::min(s.out_h, 4 * threads));
    band_rows = ceil_div(s.out_h, bands);
  }
  const int64_t bands = ceil_div(s.out_h, band_rows);
  const float factor = kmap_factor(s);
  Phase pack(s.batch * chunks, threads), scaling(s.batch * bands, threads),
      conv(conv_tasks, threads);
  std::atomic<bool> has_nan{false};
  const auto start = Clock::now();
  zero_halo(s, pl.halo, packed);
  parallel_for(threads, [&](int64_t) {
    pack.run([&](int64_t task) {
      pack_task(pl.k, s, b, pl.halo, b.x, packed, absum, chunk, chunks, task);
      const float* sums = absum + (task / chunks) * hw;
      const int64_t p0 = (task % chunks) * chunk, p1 = std::min(hw, p0 + chunk);
      for (int64_t p = p0; p < p1; ++p) {
        if (std::isnan(sums[p])) has_nan.store(true, std::memory_order_relaxed);
      }
    });
    scaling.run([&](int64_t task) {
      const int64_t n = task / bands, oh0 = (task % bands) * band_rows;
      const int64_t oh1 = std::min(s.out_h, oh0 + band_rows);
      float* image_scale = scale + n * ohw;
      if (s.scaling == Scaling::None) {
        std::fill(image_scale, image_scale + ohw, 1.0f);
      } else if (s.scaling == Scaling::Scalar) {
        std::fill(image_scale, image_scale + ohw, image_beta(s, absum + n * hw));
      } else {
        int64_t ih0 = 0, ih1 = 0;
        kmap_input_rows(s, oh0, oh1, ih0, ih1);
        float* rows = scratch(t_rows, (ih1 - ih0) * s.out_w);
        kmap_rows(s, absum + n * hw, factor, rows, image_scale, oh0, oh1);
      }
    });
    // Pixel-chunk major, so each place's range is a run of pixels over all channel groups.
    conv.run([&](int64_t item) { conv_task(pl, (item % groups) * pl.chunks + item / groups); });
  });
  pack.rethrow();
  scaling.rethrow();
  conv.rethrow();
  PhaseTimes t;
  t.input_has_nan = has_nan.load();
  t.pack = std::chrono::duration<double>(pack.end() - start).count();
  t.scale = std::chrono::duration<double>(scaling.end() - pack.end()).count();
  t.conv = std::chrono::duration<double>(conv.end() - scaling.end()).count();
  return t;
}

// Several threads: image parallel when every thread gets at least two images, the batch
// divides evenly or is large (the share of the last round is small), the call is worth waking
// a worker (kWorkerWordOps), and either the input is large (its pack then
// overlaps the other thread's conv) or the packed weights are small (<= 128 KiB: each task
// re-reads them from L2 cheaply, and one region per call replaces the three of batch-wide
// passes). Layers with neither (512@7x7) stay batch-wide, where the per-image split lost.
bool image_parallel(const ConvShape& s, int64_t words) {
  const int64_t threads = get_threads();
  if (threads < 2 || s.batch < 2 * threads) return false;
  if (s.batch % threads != 0 && s.batch < 4 * threads) return false;
  if (conv_word_ops(s, words) < kWorkerWordOps) return false;
  const int64_t weight_bytes =
      ceil_div(s.out_channels, kOcBlock) * s.kernel_h * s.kernel_w * words * kOcBlock * 8;
  return s.batch * image_bytes(s) > kWholeBatchBytes || weight_bytes <= (int64_t{128} << 10);
}

// Images per task: one, except for small images, which are grouped up to ~64 KiB of input per
// task (a task's set-up then stays small against its work) while keeping >= 4 tasks per thread
// for the dynamic balance. Larger images gain nothing from grouping, so they stay one per task.
int64_t images_per_task(const ConvShape& s, int64_t threads) {
  constexpr int64_t kTaskInputBytes = int64_t{64} << 10;
  const int64_t by_balance = s.batch / (4 * threads);
  const int64_t by_cache = kTaskInputBytes / image_bytes(s);
  return std::max<int64_t>(1, std::min(by_balance, by_cache));
}

// Each task computes its images (one, or a group of small ones) from start to end (pack, K map,
// conv) on its thread's scratch and prefetches the input its thread likely takes next. The
// threads drift apart, so one thread's memory-bound pack overlaps the other's compute-bound
// conv, where a batch-wide pack pass has every thread wait on memory at once.
// The phases overlap across threads, so each gets the wall time of the region in proportion to
// its thread time summed over the images (the split then adds up to the wall time).
PhaseTimes conv_per_image(const ConvPlan& shared, const ConvBuffers& b) {
  const ConvShape& s = shared.s;
  const int64_t threads = get_threads();
  const int64_t in_floats = image_floats(s), out_floats = out_image_floats(s);
  const int64_t per_task = images_per_task(s, threads);
  const int64_t tasks = ceil_div(s.batch, per_task);
  std::mutex sum_mutex;
  PhaseTimes sum;
  const auto start = Clock::now();
  parallel_for(tasks, [&](int64_t task) {
    const int64_t n0 = task * per_task, images = std::min(per_task, s.batch - n0);
    ConvPlan pl = shared;
    pl.s.batch = images;
    pl.first_image = n0;
    pl.b.x = b.x + n0 * in_floats;
    pl.b.out = b.out + n0 * out_floats;
    if (b.residual != nullptr) pl.b.residual = b.residual + n0 * out_floats;
    uint64_t* packed = scratch(t_packed, images * pl.halo.image_words());
    float* absum = scratch(t_absum, images * s.height * s.width);
    float* scale = scratch(t_scale, images * s.out_h * s.out_w);
    pl.packed = packed;
    pl.scale = scale;
    const int64_t next = n0 + threads * per_task;  // the first image this thread likely takes next
    pl.prefetch = reinterpret_cast<const char*>(b.x + std::min(next, s.batch - 1) * in_floats);
    pl.prefetch_lines =
        next < s.batch ? ceil_div(std::min(per_task, s.batch - next) * in_floats * 4, 64) : 0;
    PhaseTimes t;
    compute_images(pl, packed, absum, scale, t);
    const std::lock_guard<std::mutex> lock(sum_mutex);
    sum.pack += t.pack, sum.scale += t.scale, sum.conv += t.conv;
    sum.input_has_nan |= t.input_has_nan;
  });
  const double busy = sum.pack + sum.scale + sum.conv;
  const double share = busy > 0.0 ? seconds_since(start) / busy : 0.0;
  sum.pack *= share, sum.scale *= share, sum.conv *= share;
  return sum;
}

// The plan of a call: border patterns, epilogue and store mode, bit output.
ConvPlan plan_call(const ConvShape& s, const ConvBuffers& b, const BitOutput* bits) {
  const Halo halo = halo_of(s, ceil_div(s.channels, 64));
  ConvPlan pl(s, b, active_table(), halo, nullptr, nullptr);
  plan_border_patterns(pl);
  pl.epilogue = b.residual != nullptr || b.clamp_lo > -__builtin_inff() ||
                b.clamp_hi < __builtin_inff();
  // Calls with an epilogue keep ordinary stores: the ISAs without an in-register epilogue read
  // each tile back, and streaming stores would send it to memory first.
  pl.stream_out = bits == nullptr && !pl.epilogue && stream_output(s, b.out);
  if (bits != nullptr) {
    pl.bits = bits;
    pl.next_halo = halo_of(*bits->next, ceil_div(bits->next->channels, 64));
  }
  return pl;
}

}  // namespace

int64_t packed_input_words(const ConvShape& s) {
  return s.batch * halo_of(s, ceil_div(s.channels, 64)).image_words();
}

ConvResult xnor_conv2d(const ConvShape& s, const ConvBuffers& b, const BitOutput* bits) {
  const auto start = Clock::now();
  ConvPlan pl = plan_call(s, b, bits);
  const double plan_s = seconds_since(start);
  PhaseTimes t;
  if (image_parallel(s, pl.halo.words)) {
    t = conv_per_image(pl, b);
  } else if (get_threads() > 1 && (conv_word_ops(s, pl.halo.words) >= kWorkerWordOps ||
                                     s.batch * image_floats(s) >= kPhasedInputFloats)) {
    t = conv_phased(pl, b);
  } else {
    t = conv_in_slabs(pl, b);
  }
  ConvResult result{};
  result.input_has_nan = t.input_has_nan;
  result.timing.pack_s = t.pack;
  result.timing.scale_s = t.scale;
  result.timing.popcount_s = plan_s + t.conv;
  result.timing.total_s = seconds_since(start);
  return result;
}

ConvResult xnor_conv2d_packed(const ConvShape& s, const ConvBuffers& b, const PackedInput& in,
                              const BitOutput* bits) {
  const auto start = Clock::now();
  ConvPlan pl = plan_call(s, b, bits);
  const int64_t hw = s.height * s.width, blocks = ceil_div(s.channels, kOcBlock);
  float* absum = scratch(t_absum, s.batch * hw);
  float* scale = scratch(t_scale, s.batch * s.out_h * s.out_w);
  const auto t0 = Clock::now();
  // The K map's sums of |x| per pixel, the blocks added in order; a NaN input shows here.
  bool has_nan = false;
  for (int64_t i = 0; i < s.batch * hw; ++i) {
    const float* parts = in.block_absum + i * blocks;
    float sum = 0.0f;
    for (int64_t blk = 0; blk < blocks; ++blk) sum += parts[blk];
    absum[i] = sum;
    has_nan |= std::isnan(sum);
  }
  const auto t1 = Clock::now();
  input_scale(s, absum, scale);
  const auto t2 = Clock::now();
  pl.packed = in.bits;
  pl.scale = scale;
  run_conv(pl);
  ConvResult result{};
  result.input_has_nan = has_nan;
  result.timing.pack_s = std::chrono::duration<double>(t1 - t0).count();
  result.timing.scale_s = std::chrono::duration<double>(t2 - t1).count();
  result.timing.popcount_s = std::chrono::duration<double>(t0 - start).count() + seconds_since(t2);
  result.timing.total_s = seconds_since(start);
  return result;
}

double microkernel_rate(int64_t kernel, int64_t channels, int64_t out_channels, double seconds) {
  const KernelTable& k = active_table();
  const int64_t taps = kernel * kernel, words = ceil_div(channels, 64);
  const int64_t blocks = group_blocks_for(taps, words, ceil_div(out_channels, kOcBlock));
  const int pixels = k.tile;
  // A small halo-free image of `kernel` rows x (pixels + kernel - 1) columns: the tile's pixels
  // are consecutive in one row, as in the driver's interior tiles.
  const int64_t row = pixels + kernel - 1;
  std::vector<uint64_t> act(static_cast<size_t>(kernel * row * words));
  std::vector<uint64_t> weight(static_cast<size_t>(blocks * taps * words * kOcBlock));
  uint64_t state = 0x9E3779B97F4A7C15ull;  // xorshift64: fixed pseudo-random bits
  const auto next = [&state] {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    return state;
  };
  const uint64_t tail = channels % 64 == 0 ? ~uint64_t{0} : (uint64_t{1} << (channels % 64)) - 1;
  for (size_t i = 0; i < act.size(); ++i) {
    const bool last_word = static_cast<int64_t>(i) % words == words - 1;
    act[i] = next() & (last_word ? tail : ~uint64_t{0});  // padding bits stay 0, as packed
  }
  for (auto& v : weight) v = next();
  std::vector<int64_t> tap_offset;
  for (int64_t ky = 0; ky < kernel; ++ky) {
    for (int64_t kx = 0; kx < kernel; ++kx) tap_offset.push_back((ky * row + kx) * words);
  }
  std::vector<const uint64_t*> origin(static_cast<size_t>(pixels));
  for (int p = 0; p < pixels; ++p) origin[p] = act.data() + p * words;
  std::vector<float> alpha(static_cast<size_t>(blocks * kOcBlock), 0.5f);
  std::vector<float> bias(alpha.size(), 0.25f), scale(static_cast<size_t>(pixels), 1.5f);
  std::vector<float> out(static_cast<size_t>(pixels * blocks * kOcBlock));
  const ConvTileArgs a{origin.data(), tap_offset.data(), pixels, static_cast<int>(blocks), taps,
                       words, weight.data(), static_cast<int>(blocks * kOcBlock), alpha.data(),
                       bias.data(), scale.data(), nullptr, 0, taps * channels, out.data(),
                       blocks * kOcBlock};
  int64_t calls = 0;
  const auto start = Clock::now();
  double elapsed = 0.0;
  do {
    for (int i = 0; i < 64; ++i) k.conv_tile(a);
    calls += 64;
    elapsed = seconds_since(start);
  } while (elapsed < seconds);
  const double macs_per_call = static_cast<double>(pixels) * blocks * kOcBlock * taps * channels;
  return static_cast<double>(calls) * macs_per_call / elapsed;
}

namespace {

// Below this many window reads a pool runs on the calling thread (waking a worker costs more).
constexpr int64_t kPoolWorkerReads = int64_t{1} << 18;

}  // namespace

void max_pool2d_nhwc(const PoolShape& s, const float* x, float* out) {
  const int64_t rows = s.batch * s.out_h;
  const int64_t reads = rows * s.out_w * s.channels * s.kernel_h * s.kernel_w;
  const KernelTable& k = active_table();
  const int64_t image_floats = s.height * s.width * s.channels;
  const auto body = [&](int64_t r) {
    const int64_t n = r / s.out_h, oh = r % s.out_h;
    const int64_t start = oh * s.stride_h - s.pad_h;
    const PoolRowArgs a{x + n * image_floats, out + r * s.out_w * s.channels, s.channels,
                        s.width, s.out_w, std::max<int64_t>(0, start),
                        std::min<int64_t>(s.height, start + s.kernel_h), s.kernel_w,
                        s.stride_w, s.pad_w, s.clamp_lo, s.clamp_hi};
    k.max_pool_row(a);
  };
  if (get_threads() == 1 || reads < kPoolWorkerReads) {
    for (int64_t r = 0; r < rows; ++r) body(r);
  } else {
    parallel_for(rows, body);
  }
}

void pack_weight(const float* w, int64_t out_channels, int64_t channels, int64_t taps,
                 uint64_t* bits) {
  const int64_t words = ceil_div(channels, 64), blocks = ceil_div(out_channels, kOcBlock);
  std::memset(bits, 0, static_cast<size_t>(blocks * taps * words * kOcBlock) * 8);
  parallel_for(out_channels, [&](int64_t o) {
    const int64_t blk = o / kOcBlock, lane = o % kOcBlock;
    const float* wo = w + o * channels * taps;
    for (int64_t c = 0; c < channels; ++c) {
      for (int64_t t = 0; t < taps; ++t) {
        if (wo[c * taps + t] < 0.0f) {
          bits[((blk * taps + t) * words + (c >> 6)) * kOcBlock + lane] |= uint64_t{1} << (c & 63);
        }
      }
    }
  });
}

Timing bwn_linear(const float* x, int64_t batch, int64_t features, const uint64_t* weight,
                  const float* alpha, const float* bias, int64_t out_features, float* out) {
  const auto start = Clock::now();
  const KernelTable& k = active_table();
  Timing timing{};
  const int64_t words = ceil_div(features, 64);
  // Zero-padded copy of x (features rounded up to whole words) so kernels read full words.
  float* xpad = scratch(t_absum, batch * (words * 64 + 1));
  float* xsum = xpad + batch * words * 64;
  for (int64_t n = 0; n < batch; ++n) {
    float* dst = xpad + n * words * 64;
    std::memcpy(dst, x + n * features, static_cast<size_t>(features) * sizeof(float));
    std::fill(dst + features, dst + words * 64, 0.0f);
    float sum = 0.0f;
    for (int64_t f = 0; f < features; ++f) sum += dst[f];
    xsum[n] = sum;
  }
  // Byte subset-sum table (ISAs without masked adds), worth it while the batch is small; at
  // most 2^24 floats, as it stays in this thread's scratch.
  const float* lut = nullptr;
  const int64_t groups = words * 8;
  if (k.bwn_wants_lut && batch <= 16 && batch * groups * 256 <= (int64_t{1} << 24)) {
    float* table = scratch(t_scale, batch * groups * 256);
    parallel_for(batch, [&](int64_t n) {
      for (int64_t g = 0; g < groups; ++g) {
        const float* xg = xpad + n * words * 64 + g * 8;
        float* t = table + (n * groups + g) * 256;
        t[0] = 0.0f;
        for (int b = 1; b < 256; ++b) t[b] = t[b & (b - 1)] + xg[__builtin_ctz(b)];
      }
    });
    lut = table;
  }
  const auto t_pack = Clock::now();
  timing.pack_s = std::chrono::duration<double>(t_pack - start).count();
  const int64_t rows_per_task = 64;
  const int64_t tasks = ceil_div(out_features, rows_per_task);
  parallel_for(tasks, [&](int64_t task) {
    const int64_t o0 = task * rows_per_task;
    BwnArgs a{xpad, xsum, batch, words * 64, words, weight, alpha, bias, o0,
              std::min(out_features, o0 + rows_per_task), out_features, out, lut};
    k.bwn_rows(a);
  });
  timing.popcount_s = seconds_since(t_pack);
  timing.total_s = seconds_since(start);
  return timing;
}

}  // namespace xnorlab
