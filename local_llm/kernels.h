// What kernels.cpp and attention.cpp give decode_step.cpp to run inside its own parallel region: the pieces of
// q4mm, rms_norm and decode_attention for one block, row or item, each the arithmetic of the operator it is from;
// and the exponential and bfloat16 conversion that the kernels share.

#pragma once

#include <c10/util/Half.h>
#include <immintrin.h>

#include <cstdint>

namespace autoqwen {

// exp(x) for x <= 0 (x > -inf), 16 at a time: 2^n e^r with |r| <= ln 2 / 2, e^r by its Taylor series to r^7
// (relative error < 1e-7, about float32's rounding).
inline __m512 exp_nonpositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));  // e^-104 is below float32's smallest subnormal
  const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);  // ln 2 in two parts: n * hi is exact
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  for (const float c : {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f})
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
  return _mm512_scalef_ps(p, n);
}

// The lanes of 16 that hold the `left` elements still to go (all 16 from 16 on).
inline __mmask16 lanes(int64_t left) { return _cvtu32_mask16(left >= 16 ? 0xFFFFu : (1u << left) - 1); }

// 16 bfloat16 numbers, given as their bits, as float32 (exactly).
inline __m512 bf16_bits_to_float(__m256i bits) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
}

// 16 float32 numbers rounded to bfloat16, to nearest even as PyTorch's conversion rounds numbers (not NaNs: the
// states these round hold none), as their bits in the low 16 bits of each lane.
inline __m512i float_to_bf16_bits(__m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i even = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  return _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(even, _mm512_set1_epi32(0x7FFF))), 16);
}

// rms_norm's rows: y = x / sqrt(mean(x^2) + eps) * weight, x and y [rows, n].
void rms_norm_rows(const float* x, int64_t rows, int64_t n, const float* weight, float eps, float* y);

// q4mm's input: x [rows, k] rounded to bfloat16 (x16) and per group of 32 the rounded values' sum (sums).
void q4_round(const float* x, int64_t rows, int64_t k, uint16_t* x16, float* sums);

// q4mm's output columns of block b (32 columns): y [rows, n] from the rounded x, W [N / 32, K / 32, 8, 64] and
// its scales and offsets [N / 32, K / 32, 2, 32].
void q4_columns(const uint16_t* x16, const float* sums, int64_t rows, int64_t k, const uint8_t* w, const int16_t* sz,
                int64_t b, float* y, int64_t n);

// decode_attention's item: one key head's `group` query heads of one row, keys and values float16 (`ks` and `vs`
// apart along the width), real: which of the `width` columns hold tokens (null: all), out [group, dim].
void attend_item(const float* q, int64_t qs, const c10::Half* keys, int64_t ks, const c10::Half* values, int64_t vs,
                 const bool* real, int64_t width, int64_t group, int64_t dim, float* out);

}  // namespace autoqwen
