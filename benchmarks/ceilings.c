/* Per-core throughput ceilings of this CPU, measured with register-only loops.
 *
 * Used by xnorlab.core.benchmark to state "fraction of the popcount ceiling" with a figure
 * measured on the machine that runs the benchmark (kernel.md's table is for a Xeon; other x86
 * cores, e.g. AMD Zen 4 which double-pumps 512-bit ops, differ).
 * Built at run time with the system C compiler (no -march=native; per-function target
 * attributes), loaded with ctypes. Every function runs `iters` iterations on one thread and
 * returns the rate in G operations per second, where one operation is
 *   - a binary multiply-accumulate (one bit of xor + popcount + add) for the popcount loops,
 *   - a multiply-accumulate (one lane of an FMA or of vpdpbusd's 4 byte products) otherwise.
 * Loops keep several independent accumulator chains so that latency does not limit them; an
 * empty asm statement makes one operand opaque each iteration so nothing is hoisted.
 */
#include <immintrin.h>
#include <stdint.h>
#include <time.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define OPAQUE(v) __asm__ volatile("" : "+v"(v))

/* xor + vpopcntq + add on 512-bit registers: 8 chains x 512 bMAC per iteration. */
__attribute__((target("avx512f,avx512vpopcntdq")))
double popcount_avx512_gbmac(int64_t iters, int64_t* sink) {
  __m512i w[8];
  for (int k = 0; k < 8; ++k) w[k] = _mm512_set1_epi64((long long)(0x0123456789abcdefULL * (uint64_t)(k + 3)));
  __m512i a = _mm512_set1_epi64(0x7777777777777777LL);
  __m512i s[8];
  for (int k = 0; k < 8; ++k) s[k] = _mm512_setzero_si512();
  double t0 = now_s();
  for (int64_t i = 0; i < iters; ++i) {
    OPAQUE(a);
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) s[k] = _mm512_add_epi64(s[k], _mm512_popcnt_epi64(_mm512_xor_si512(a, w[k])));
  }
  double dt = now_s() - t0;
  __m512i t = s[0];
  for (int k = 1; k < 8; ++k) t = _mm512_add_epi64(t, s[k]);
  *sink = _mm512_reduce_add_epi64(t);
  return (double)iters * 8.0 * 512.0 / dt * 1e-9;
}

/* AVX2 nibble-lookup popcount (vpshufb), byte accumulators folded with vpsadbw every 8 steps. */
__attribute__((target("avx2")))
double popcount_avx2_lut_gbmac(int64_t iters, int64_t* sink) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  __m256i w0 = _mm256_set1_epi64x(0x0123456789abcdefLL), w1 = _mm256_set1_epi64x(0x55aa55aa55aa55aaLL);
  __m256i a = _mm256_set1_epi64x(0x7777777777777777LL);
  __m256i t0 = _mm256_setzero_si256(), t1 = t0;
  double start = now_s();
  int64_t blocks = iters / 8;
  for (int64_t i = 0; i < blocks; ++i) {
    __m256i c0 = _mm256_setzero_si256(), c1 = c0;
    for (int j = 0; j < 8; ++j) {
      OPAQUE(a);
      __m256i x0 = _mm256_xor_si256(a, w0), x1 = _mm256_xor_si256(a, w1);
      c0 = _mm256_add_epi8(c0, _mm256_add_epi8(
          _mm256_shuffle_epi8(lut, _mm256_and_si256(x0, low)),
          _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(x0, 4), low))));
      c1 = _mm256_add_epi8(c1, _mm256_add_epi8(
          _mm256_shuffle_epi8(lut, _mm256_and_si256(x1, low)),
          _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(x1, 4), low))));
    }
    t0 = _mm256_add_epi64(t0, _mm256_sad_epu8(c0, _mm256_setzero_si256()));
    t1 = _mm256_add_epi64(t1, _mm256_sad_epu8(c1, _mm256_setzero_si256()));
  }
  double dt = now_s() - start;
  __m256i t = _mm256_add_epi64(t0, t1);
  *sink = _mm256_extract_epi64(t, 0) + _mm256_extract_epi64(t, 1) + _mm256_extract_epi64(t, 2) +
          _mm256_extract_epi64(t, 3);
  return (double)blocks * 8.0 * 2.0 * 256.0 / dt * 1e-9;
}

/* Scalar popcnt: 8 chains of xor + popcnt + add on 64-bit words. */
__attribute__((target("popcnt")))
double popcount_scalar_gbmac(int64_t iters, int64_t* sink) {
  uint64_t a = 0x7777777777777777ULL;
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
  double start = now_s();
  for (int64_t i = 0; i < iters; ++i) {
    __asm__ volatile("" : "+r"(a));
    s0 += (uint64_t)__builtin_popcountll(a ^ 0x0123456789abcdefULL);
    s1 += (uint64_t)__builtin_popcountll(a ^ 0x55aa55aa55aa55aaULL);
    s2 += (uint64_t)__builtin_popcountll(a ^ 0x0f0f0f0ff0f0f0f0ULL);
    s3 += (uint64_t)__builtin_popcountll(a ^ 0x1111222233334444ULL);
    s4 += (uint64_t)__builtin_popcountll(a ^ 0x1234123412341234ULL);
    s5 += (uint64_t)__builtin_popcountll(a ^ 0x00ff00ff00ff00ffULL);
    s6 += (uint64_t)__builtin_popcountll(a ^ 0x0000ffff0000ffffULL);
    s7 += (uint64_t)__builtin_popcountll(a ^ 0x3333333333333333ULL);
  }
  double dt = now_s() - start;
  *sink = (int64_t)(s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7);
  return (double)iters * 8.0 * 64.0 / dt * 1e-9;
}

/* fp32 FMA on 512-bit registers: 12 chains x 16 MAC per iteration. */
__attribute__((target("avx512f")))
double fma_avx512_gmac(int64_t iters, int64_t* sink) {
  __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-7f);
  __m512 s[12];
  for (int k = 0; k < 12; ++k) s[k] = _mm512_set1_ps((float)k);
  double start = now_s();
  for (int64_t i = 0; i < iters; ++i) {
    OPAQUE(x);
#pragma GCC unroll 12
    for (int k = 0; k < 12; ++k) s[k] = _mm512_fmadd_ps(s[k], x, y);
  }
  double dt = now_s() - start;
  __m512 t = s[0];
  for (int k = 1; k < 12; ++k) t = _mm512_add_ps(t, s[k]);
  *sink = (int64_t)_mm512_reduce_add_ps(t);
  return (double)iters * 12.0 * 16.0 / dt * 1e-9;
}

/* fp32 FMA on 256-bit registers: 12 chains x 8 MAC per iteration. */
__attribute__((target("avx2,fma")))
double fma_avx2_gmac(int64_t iters, int64_t* sink) {
  __m256 x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(1e-7f);
  __m256 s[12];
  for (int k = 0; k < 12; ++k) s[k] = _mm256_set1_ps((float)k);
  double start = now_s();
  for (int64_t i = 0; i < iters; ++i) {
    OPAQUE(x);
#pragma GCC unroll 12
    for (int k = 0; k < 12; ++k) s[k] = _mm256_fmadd_ps(s[k], x, y);
  }
  double dt = now_s() - start;
  __m256 t = s[0];
  for (int k = 1; k < 12; ++k) t = _mm256_add_ps(t, s[k]);
  float lanes[8];
  _mm256_storeu_ps(lanes, t);
  *sink = (int64_t)(lanes[0] + lanes[7]);
  return (double)iters * 12.0 * 8.0 / dt * 1e-9;
}

/* int8 VNNI vpdpbusd on 512-bit registers: 12 chains x 64 byte MAC per iteration. */
__attribute__((target("avx512f,avx512vnni")))
double vnni_avx512_gmac(int64_t iters, int64_t* sink) {
  __m512i x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(5);
  __m512i s[12];
  for (int k = 0; k < 12; ++k) s[k] = _mm512_setzero_si512();
  double start = now_s();
  for (int64_t i = 0; i < iters; ++i) {
    OPAQUE(x);
#pragma GCC unroll 12
    for (int k = 0; k < 12; ++k) s[k] = _mm512_dpbusd_epi32(s[k], x, y);
  }
  double dt = now_s() - start;
  __m512i t = s[0];
  for (int k = 1; k < 12; ++k) t = _mm512_add_epi32(t, s[k]);
  *sink = _mm512_reduce_add_epi32(t);
  return (double)iters * 12.0 * 64.0 / dt * 1e-9;
}
