// Our CPU kernels (AVX-512 F, BW, VNNI; q4mm also BF16), loaded by kernels.py: the products and the RMS norm here,
// attention in attention.cpp (built into the same library).
//
// q8mm: y = x W^T for an 8-bit W (one int8 row per output, one float32 scale per row), with integer dot products.
// Each row of x is rounded per group of 32 inputs to two 8-bit integers, x ~ d (254 hi + lo), one d per group: hi
// alone is GGUF's Q8_0 (what llama.cpp does on CPUs); lo keeps ~16 bits, finer than the bfloat16 inputs of
// PyTorch's `_weight_int8pack_mm`. A group's products then sum exactly in integers (vpdpbusd), so a row's result
// depends on nothing but that row and W, in a fixed order: batching rows changes no bit of it.
//
// W is stored as uint8 w + 128 (vpdpbusd multiplies unsigned by signed bytes) in [N / 16, K / 32, 8, 64]: per block
// of 16 output columns and group of 32 inputs, chunk j holds inputs 4j..4j+3, byte 4c + t column c's input 4j + t.
// The offset comes back out exactly: 128 * sum_k a[k] per group.
//
// rms_norm: x / sqrt(mean(x^2) + eps) * weight per row, in one pass of our own: PyTorch's runs six operations
// (timings: docs/benchmarks.md). add_rms_norm and silu_mul: the lean pass's steps between its products, each in one
// call (llama.py).

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <immintrin.h>
#include <sleef.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels.h"

namespace {

using autoqwen::lanes;

constexpr int64_t kGroup = 32;
constexpr int64_t kColumns = 16;

// f(i) for each i in [0, n) on torch's threads (its OpenMP runtime), in shares that shrink as threads come free
// (guided): on a small machine that also runs the server and its clients, a thread the OS preempts holds up only
// its current share, not half of the work (at::parallel_for's fixed shares made the others wait for it).
template <typename F>
void parallel_items(int64_t n, const F& f) {
  if (n <= 0) return;
  const int threads = static_cast<int>(std::min<int64_t>(n, at::get_num_threads()));
#pragma omp parallel for schedule(guided) num_threads(threads)
  for (int64_t i = 0; i < n; ++i) f(i);
}

// f.template operator()<R>(r) for each tile of R <= 4 rows from row r: a block's weights, once loaded, serve
// 4 rows at a time.
template <typename F>
void row_tiles(int64_t rows, const F& f) {
  for (int64_t r = 0; r < rows; r += 4) {
    switch (std::min<int64_t>(4, rows - r)) {
      case 4: f.template operator()<4>(r); break;
      case 3: f.template operator()<3>(r); break;
      case 2: f.template operator()<2>(r); break;
      default: f.template operator()<1>(r); break;
    }
  }
}

// The rows of x rounded per group of 32: hi and lo (int8), and per group d (the scale) and the sum of 254 hi + lo.
struct Rounded {
  at::Tensor hi, lo, d, asum;
  int64_t k, groups;

  explicit Rounded(const at::Tensor& x) : k(x.size(1)), groups(x.size(1) / kGroup) {
    const int64_t rows = x.size(0);
    hi = at::empty({rows, k}, x.options().dtype(at::kChar));
    lo = at::empty({rows, k}, x.options().dtype(at::kChar));
    d = at::empty({rows, groups}, x.options());
    asum = at::empty({rows, groups}, x.options().dtype(at::kInt));
    const float* xp = x.data_ptr<float>();
    int8_t* hp = hi.data_ptr<int8_t>();
    int8_t* lp = lo.data_ptr<int8_t>();
    float* dp = d.data_ptr<float>();
    int32_t* sp = asum.data_ptr<int32_t>();
    at::parallel_for(0, rows, 64, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r)
        for (int64_t g = 0; g < groups; ++g) {
          const int64_t at = r * groups + g, offset = r * k + g * kGroup;
          round_group(xp + offset, hp + offset, lp + offset, dp + at, sp + at);
        }
    });
  }

  static void round_group(const float* in, int8_t* hi_out, int8_t* lo_out, float* d_out, int32_t* asum_out) {
    const __m512 x0 = _mm512_loadu_ps(in);
    const __m512 x1 = _mm512_loadu_ps(in + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
    const __m512 inverse = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
    // Round to nearest even, as the default MXCSR mode does: |x| * 127 / amax <= 127, and 254 times what is left
    // is within 127, so neither saturates.
    const __m512 y0 = _mm512_mul_ps(x0, inverse), y1 = _mm512_mul_ps(x1, inverse);
    const __m512i h0 = _mm512_cvtps_epi32(y0), h1 = _mm512_cvtps_epi32(y1);
    const __m512 times = _mm512_set1_ps(254.0f);
    const __m512i l0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_sub_ps(y0, _mm512_cvtepi32_ps(h0)), times));
    const __m512i l1 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_sub_ps(y1, _mm512_cvtepi32_ps(h1)), times));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(hi_out), _mm512_cvtsepi32_epi8(h0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(hi_out + 16), _mm512_cvtsepi32_epi8(h1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(lo_out), _mm512_cvtsepi32_epi8(l0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(lo_out + 16), _mm512_cvtsepi32_epi8(l1));
    *d_out = amax / (127.0f * 254.0f);
    const __m512i a = _mm512_add_epi32(_mm512_mullo_epi32(_mm512_add_epi32(h0, h1), _mm512_set1_epi32(254)),
                                       _mm512_add_epi32(l0, l1));
    *asum_out = _mm512_reduce_add_epi32(a);
  }
};

inline __m512i broadcast4(const int8_t* a) {
  int32_t four;
  std::memcpy(&four, a, sizeof four);
  return _mm512_set1_epi32(four);
}

// Per column of a block, the sum over a group of (254 hi + lo) q: q[j] holds inputs 4j..4j+3 of 16 columns.
inline __m512i dot_group(const __m512i* q, const int8_t* hi, const int8_t* lo) {
  __m512i high = _mm512_setzero_si512(), low = _mm512_setzero_si512();  // two chains: the adds overlap
  for (int j = 0; j < 8; ++j) {
    high = _mm512_dpbusd_epi32(high, q[j], broadcast4(hi + 4 * j));
    low = _mm512_dpbusd_epi32(low, q[j], broadcast4(lo + 4 * j));
  }
  return _mm512_add_epi32(_mm512_mullo_epi32(high, _mm512_set1_epi32(254)), low);
}

// ROWS rows of y, from row r of x, for one block of 16 columns of 8-bit W.
template <int ROWS>
void q8_block(const Rounded& x, int64_t r, const uint8_t* w, const float* scale, float* y, int64_t n) {
  const int64_t k = x.k, groups = x.groups;
  const int8_t* hi = x.hi.data_ptr<int8_t>() + r * k;
  const int8_t* lo = x.lo.data_ptr<int8_t>() + r * k;
  const float* d = x.d.data_ptr<float>() + r * groups;
  const int32_t* asum = x.asum.data_ptr<int32_t>() + r * groups;
  __m512 acc[ROWS];
  for (int i = 0; i < ROWS; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m512i q[8];
    for (int j = 0; j < 8; ++j) q[j] = _mm512_loadu_si512(w + (g * 8 + j) * 64);
    for (int i = 0; i < ROWS; ++i) {
      const __m512i dot_u = dot_group(q, hi + i * k + g * kGroup, lo + i * k + g * kGroup);
      const __m512i offset = _mm512_set1_epi32(128 * asum[i * groups + g]);
      const __m512 dot = _mm512_cvtepi32_ps(_mm512_sub_epi32(dot_u, offset));
      acc[i] = _mm512_fmadd_ps(dot, _mm512_set1_ps(d[i * groups + g]), acc[i]);
    }
  }
  const __m512 s = _mm512_loadu_ps(scale);
  for (int i = 0; i < ROWS; ++i) _mm512_storeu_ps(y + i * n, _mm512_mul_ps(acc[i], s));
}

at::Tensor q8mm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& scale) {
  TORCH_CHECK(w.dim() == 4 && w.scalar_type() == at::kByte && w.is_contiguous() && w.size(2) == 8 && w.size(3) == 64,
              "q8mm: w must be uint8 [N / 16, K / 32, 8, 64]");
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.is_contiguous(), "q8mm: x must be float32 [M, K]");
  TORCH_CHECK(x.size(1) == w.size(1) * kGroup, "q8mm: x has ", x.size(1), " columns, W ", w.size(1) * kGroup,
              " inputs");
  TORCH_CHECK(scale.is_contiguous() && scale.scalar_type() == at::kFloat && scale.numel() == w.size(0) * kColumns,
              "q8mm: scale must be float32 [N]");
  const Rounded rounded(x);
  const int64_t rows = x.size(0), blocks = w.size(0), n = blocks * kColumns, groups = rounded.groups;
  at::Tensor y = at::empty({rows, n}, x.options());
  const uint8_t* wp = w.data_ptr<uint8_t>();
  const float* sp = scale.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  parallel_items(blocks, [&](int64_t b) {
    const uint8_t* wb = wp + b * groups * 512;
    const float* sb = sp + b * kColumns;
    row_tiles(rows, [&]<int R>(int64_t r) { q8_block<R>(rounded, r, wb, sb, yp + r * n + b * kColumns, n); });
  });
  return y;
}

// q4mm: y = x W^T for a 4-bit W, per group of 32 inputs w = (q - 8) scale + zero with q in 0..15 (GGUF's Q4_1 up to
// the offset; scale and zero in bfloat16, as PyTorch's `_weight_int4pack_mm_for_cpu` takes them), x rounded to
// bfloat16 as that kernel does. Instead of converting each weight to float32, a q becomes the bfloat16 number
// 128 + q by setting the exponent bits (0x4300 | q) and vdpbf16ps sums two products per lane; both are exact in
// float32, and per group sum x w = scale T + (zero - 136 scale) sum x, T = sum x (128 + q). Each row's result comes
// from that row and W alone, in a fixed order: batching rows changes no bit of it.
//
// W is stored in blocks of 32 output columns: q4 uint8 [N / 32, K / 32, 8, 64], per group chunk t holds inputs
// 4t..4t+3 of the block's two halves of 16 columns (32 bytes each; byte 2c + u: column c, low nibble input 4t + u,
// high nibble input 4t + 2 + u); scale_zero bfloat16 (as int16) [N / 32, K / 32, 2, 32].

constexpr int64_t kQ4Columns = 32;
constexpr int64_t kPrefetch = 8;  // groups (512 bytes of weights each) to prefetch ahead

#define Q4_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))

// x rounded to bfloat16 (nearest even) and, per group of 32, the sum of the rounded values.
Q4_TARGET void round_bf16(const float* x, uint16_t* out, float* sums, int64_t k) {
  for (int64_t g = 0; g < k / kGroup; ++g) {
    __m512 sum = _mm512_setzero_ps();
    for (int h = 0; h < 2; ++h) {
      const int64_t at = g * kGroup + h * 16;
      const __m256i rounded = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_loadu_ps(x + at)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + at), rounded);
      sum = _mm512_add_ps(sum, autoqwen::bf16_bits_to_float(rounded));
    }
    sums[g] = _mm512_reduce_add_ps(sum);
  }
}

Q4_TARGET inline __m512 bf16_to_float(const int16_t* p) {
  return autoqwen::bf16_bits_to_float(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

Q4_TARGET inline __m512bh pair(const uint16_t* x) {
  int32_t two;
  std::memcpy(&two, x, sizeof two);
  return reinterpret_cast<__m512bh>(_mm512_set1_epi32(two));
}

// ROWS rows of y (row stride n) for one block of 32 columns, from rows of x16 (row stride k).
template <int ROWS>
Q4_TARGET void q4_block(const uint16_t* x16, const float* sums, int64_t k, const uint8_t* w, const int16_t* sz,
                        float* y, int64_t n) {
  const int64_t groups = k / kGroup;
  const __m512i nibble = _mm512_set1_epi16(0x000F), exponent = _mm512_set1_epi16(0x4300);
  __m512 acc[ROWS][2];
  for (int i = 0; i < ROWS; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m512 t[ROWS][2];
    for (int i = 0; i < ROWS; ++i) t[i][0] = t[i][1] = _mm512_setzero_ps();
    const uint8_t* wg = w + g * 512;
    // Weights and scales kPrefetch groups ahead (past a block's end: the next block's, often this thread's next):
    // on weights read from memory the kernel waited for them; 5-8 % faster at one row, 2026-12-06.
    _mm_prefetch(reinterpret_cast<const char*>(sz + (g + kPrefetch) * 64), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(sz + (g + kPrefetch) * 64 + 32), _MM_HINT_T0);
    for (int c = 0; c < 8; ++c) {
      _mm_prefetch(reinterpret_cast<const char*>(wg + kPrefetch * 512 + c * 64), _MM_HINT_T0);
      for (int h = 0; h < 2; ++h) {
        const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wg + c * 64 + h * 32));
        const __m512i v = _mm512_cvtepu8_epi16(bytes);
        const __m512bh low = reinterpret_cast<__m512bh>(_mm512_ternarylogic_epi32(v, nibble, exponent, 0xEA));
        const __m512bh high = reinterpret_cast<__m512bh>(_mm512_or_si512(_mm512_srli_epi16(v, 4), exponent));
        for (int i = 0; i < ROWS; ++i) {
          const uint16_t* xi = x16 + i * k + g * kGroup + c * 4;
          t[i][h] = _mm512_dpbf16_ps(t[i][h], low, pair(xi));
          t[i][h] = _mm512_dpbf16_ps(t[i][h], high, pair(xi + 2));
        }
      }
    }
    for (int h = 0; h < 2; ++h) {
      const __m512 scale = bf16_to_float(sz + g * 64 + h * 16);
      const __m512 offset = _mm512_fnmadd_ps(_mm512_set1_ps(136.0f), scale, bf16_to_float(sz + g * 64 + 32 + h * 16));
      for (int i = 0; i < ROWS; ++i) {
        acc[i][h] = _mm512_fmadd_ps(t[i][h], scale, acc[i][h]);
        acc[i][h] = _mm512_fmadd_ps(offset, _mm512_set1_ps(sums[i * groups + g]), acc[i][h]);
      }
    }
  }
  for (int i = 0; i < ROWS; ++i)
    for (int h = 0; h < 2; ++h) _mm512_storeu_ps(y + i * n + h * 16, acc[i][h]);
}

Q4_TARGET at::Tensor q4mm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& scale_zero) {
  TORCH_CHECK(w.dim() == 4 && w.scalar_type() == at::kByte && w.is_contiguous() && w.size(2) == 8 && w.size(3) == 64,
              "q4mm: w must be uint8 [N / 32, K / 32, 8, 64]");
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.is_contiguous(), "q4mm: x must be float32 [M, K]");
  TORCH_CHECK(x.size(1) == w.size(1) * kGroup, "q4mm: x has ", x.size(1), " columns, W ", w.size(1) * kGroup,
              " inputs");
  TORCH_CHECK(scale_zero.scalar_type() == at::kShort && scale_zero.is_contiguous() &&
                  scale_zero.sizes() == at::IntArrayRef({w.size(0), w.size(1), 2, kQ4Columns}),
              "q4mm: scale_zero must be bfloat16 bits (int16) [N / 32, K / 32, 2, 32]");
  const int64_t rows = x.size(0), k = x.size(1), groups = k / kGroup, blocks = w.size(0), n = blocks * kQ4Columns;
  at::Tensor x16 = at::empty({rows, k}, x.options().dtype(at::kShort));
  at::Tensor sums = at::empty({rows, groups}, x.options());
  const float* xp = x.data_ptr<float>();
  uint16_t* x16p = reinterpret_cast<uint16_t*>(x16.data_ptr<int16_t>());
  float* sp = sums.data_ptr<float>();
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    autoqwen::q4_round(xp + begin * k, end - begin, k, x16p + begin * k, sp + begin * groups);
  });
  at::Tensor y = at::empty({rows, n}, x.options());
  const uint8_t* wp = w.data_ptr<uint8_t>();
  const int16_t* szp = scale_zero.data_ptr<int16_t>();
  float* yp = y.data_ptr<float>();
  parallel_items(blocks, [&](int64_t b) { autoqwen::q4_columns(x16p, sp, rows, k, wp, szp, b, yp, n); });
  return y;
}

void rms_norm_row(const float* xr, int64_t n, const float* wp, float eps, float* yr) {
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 in = lanes(n - j);
    const __m512 v = _mm512_maskz_loadu_ps(in, xr + j);
    sum = _mm512_fmadd_ps(v, v, sum);
  }
  const float mean = _mm512_reduce_add_ps(sum) / static_cast<float>(n);
  const __m512 inverse = _mm512_set1_ps(1.0f / std::sqrt(mean + eps));
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 in = lanes(n - j);
    const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(in, xr + j), inverse);
    _mm512_mask_storeu_ps(yr + j, in, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(in, wp + j)));
  }
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.is_contiguous(),
              "rms_norm: x must be contiguous float32 [M, N]");
  const int64_t rows = x.size(0), n = x.size(1);
  TORCH_CHECK(weight.scalar_type() == at::kFloat && weight.is_contiguous() && weight.numel() == n,
              "rms_norm: weight must be float32 [N]");
  at::Tensor y = at::empty({rows, n}, x.options());
  const float* xp = x.data_ptr<float>();
  const float* wp = weight.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  // A decode step's few rows run inline on this thread (no parallel region to start); a prompt's, on all threads.
  at::parallel_for(0, rows, 64, [&](int64_t begin, int64_t end) {
    autoqwen::rms_norm_rows(xp + begin * n, end - begin, n, wp, static_cast<float>(eps), yp + begin * n);
  });
  return y;
}

// 16 floats (fewer: `in`) from float32 or bfloat16, and rounded to bfloat16 (`float_to_bf16_bits`).
inline __m512 load16(const float* p, __mmask16 in) { return _mm512_maskz_loadu_ps(in, p); }
inline __m512 load16(const at::BFloat16* p, __mmask16 in) {
  return autoqwen::bf16_bits_to_float(_mm256_maskz_loadu_epi16(in, p));
}
inline void store_bf16(at::BFloat16* p, __m512 v, __mmask16 in) {
  _mm256_mask_storeu_epi16(p, in, _mm512_cvtepi32_epi16(autoqwen::float_to_bf16_bits(v)));
}

// add_rms_norm: h += y in place (h float32 [M, N], y float32 or bfloat16), then rms_norm(h, weight), in float32 or
// rounded to bfloat16 (`rounded`, the input of a bfloat16 product): a layer's residual addition and the next norm
// in one call, the arithmetic of `h + y`, rms_norm and `.to(torch.bfloat16)`.
template <typename T>
void add_rms_norm_rows(float* h, const T* y, int64_t rows, int64_t n, const float* weight, float eps, float* normed,
                       at::BFloat16* rounded) {
  for (int64_t r = 0; r < rows; ++r) {
    float* hr = h + r * n;
    for (int64_t j = 0; j < n; j += 16) {
      const __mmask16 in = lanes(n - j);
      _mm512_mask_storeu_ps(hr + j, in, _mm512_add_ps(load16(hr + j, in), load16(y + r * n + j, in)));
    }
    float* out = rounded ? normed : normed + r * n;
    rms_norm_row(hr, n, weight, eps, out);
    if (rounded)
      for (int64_t j = 0; j < n; j += 16) store_bf16(rounded + r * n + j, load16(out + j, lanes(n - j)), lanes(n - j));
  }
}

at::Tensor add_rms_norm(at::Tensor h, const at::Tensor& y, const at::Tensor& weight, double eps, bool rounded) {
  TORCH_CHECK(h.dim() == 2 && h.scalar_type() == at::kFloat && h.is_contiguous(),
              "add_rms_norm: h must be contiguous float32 [M, N]");
  const int64_t rows = h.size(0), n = h.size(1);
  TORCH_CHECK(y.sizes() == h.sizes() && (y.scalar_type() == at::kFloat || y.scalar_type() == at::kBFloat16),
              "add_rms_norm: y must be float32 or bfloat16 [M, N]");
  TORCH_CHECK(weight.scalar_type() == at::kFloat && weight.is_contiguous() && weight.numel() == n,
              "add_rms_norm: weight must be float32 [N]");
  const at::Tensor added = y.contiguous();
  at::Tensor out = at::empty({rows, n}, h.options().dtype(rounded ? at::kBFloat16 : at::kFloat));
  float* hp = h.data_ptr<float>();
  const float* wp = weight.data_ptr<float>();
  const float e = static_cast<float>(eps);
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> row(rounded ? n : 0);  // one row's norm before rounding
    float* normed = rounded ? row.data() : out.data_ptr<float>() + begin * n;
    at::BFloat16* bf16 = rounded ? out.data_ptr<at::BFloat16>() + begin * n : nullptr;
    if (added.scalar_type() == at::kFloat)
      add_rms_norm_rows(hp + begin * n, added.data_ptr<float>() + begin * n, end - begin, n, wp, e, normed, bf16);
    else
      add_rms_norm_rows(hp + begin * n, added.data_ptr<at::BFloat16>() + begin * n, end - begin, n, wp, e, normed, bf16);
  });
  return out;
}

// silu_mul: silu(gate) * up from a gate and up product's output [M, 2I] (float32 or bfloat16), in float32 or
// rounded to bfloat16 (`rounded`), in one pass: the gate's silu as PyTorch's vectorised loop computes it in
// float32, x / (1 + exp(-x)) with Sleef's exponential (aten/src/ATen/native/cpu/Activation.cpp), so the same bits as
// `F.silu(gate.float()) * up` and `.to(torch.bfloat16)` (its tests) wherever PyTorch's loop is vectorised: it
// leaves a thread's last elements past a multiple of 32 to std::exp, which may round them otherwise (not at
// SmolLM2's 1536 or Qwen's 4864 and 3072 inner widths on 2 threads). 2.3x faster than PyTorch's silu and our pass
// after it (70 rows of SmolLM2-135M's).
inline __m512 silu16(__m512 x) {
  const __m512 e = Sleef_expf16_u10(_mm512_xor_ps(_mm512_set1_ps(-0.0f), x));
  return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

template <typename T>
void silu_times_up(const T* both, int64_t rows, int64_t inner, float* mixed, at::BFloat16* rounded) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* gr = both + r * 2 * inner;
    for (int64_t j = 0; j < inner; j += 16) {
      const __mmask16 in = lanes(inner - j);
      const __m512 v = _mm512_mul_ps(silu16(load16(gr + j, in)), load16(gr + inner + j, in));
      if (rounded)
        store_bf16(rounded + r * inner + j, v, in);
      else
        _mm512_mask_storeu_ps(mixed + r * inner + j, in, v);
    }
  }
}

at::Tensor silu_mul(const at::Tensor& gate_up, bool rounded) {
  TORCH_CHECK(gate_up.dim() == 2 && gate_up.size(1) % 2 == 0 &&
                  (gate_up.scalar_type() == at::kFloat || gate_up.scalar_type() == at::kBFloat16),
              "silu_mul: gate_up must be float32 or bfloat16 [M, 2I]");
  const int64_t rows = gate_up.size(0), inner = gate_up.size(1) / 2;
  const at::Tensor both = gate_up.contiguous();
  at::Tensor out = at::empty({rows, inner}, both.options().dtype(rounded ? at::kBFloat16 : at::kFloat));
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    float* mixed = rounded ? nullptr : out.data_ptr<float>() + begin * inner;
    at::BFloat16* bf16 = rounded ? out.data_ptr<at::BFloat16>() + begin * inner : nullptr;
    if (both.scalar_type() == at::kFloat)
      silu_times_up(both.data_ptr<float>() + begin * 2 * inner, end - begin, inner, mixed, bf16);
    else
      silu_times_up(both.data_ptr<at::BFloat16>() + begin * 2 * inner, end - begin, inner, mixed, bf16);
  });
  return out;
}

// masked_logits: logits [V] (float32) with every token a grammar forbids set to -inf, from llguidance's token
// bitmask `bits` (uint8 [B]: token t allowed where bit t % 8 of byte t / 8 is set; tokens past its 8 B bits
// forbidden), as a new tensor: 80x faster than unpacking the bits with numpy and `masked_fill` (49k tokens).
at::Tensor masked_logits(const at::Tensor& logits, const at::Tensor& bits) {
  TORCH_CHECK(logits.dim() == 1 && logits.scalar_type() == at::kFloat && logits.is_contiguous(),
              "masked_logits: logits must be contiguous float32 [V]");
  TORCH_CHECK(bits.dim() == 1 && bits.scalar_type() == at::kByte && bits.is_contiguous(),
              "masked_logits: bits must be contiguous uint8 [B]");
  const int64_t n = logits.size(0), known = std::min<int64_t>(n, 8 * bits.size(0));
  at::Tensor out = at::empty({n}, logits.options());
  const float* x = logits.data_ptr<float>();
  const uint8_t* b = bits.data_ptr<uint8_t>();
  float* y = out.data_ptr<float>();
  const __m512 forbidden = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 in = lanes(n - i);
    uint32_t allowed = 0;  // the bits of tokens i..i+15 that `bits` holds
    for (int64_t j = i; j < std::min(i + 16, known); j += 8) allowed |= static_cast<uint32_t>(b[j / 8]) << (j - i);
    if (known - i < 16) allowed &= known > i ? (1u << (known - i)) - 1 : 0u;
    _mm512_mask_storeu_ps(y + i, in, _mm512_mask_mov_ps(forbidden, _cvtu32_mask16(allowed) & in, load16(x + i, in)));
  }
  return out;
}

}  // namespace

void autoqwen::rms_norm_rows(const float* x, int64_t rows, int64_t n, const float* weight, float eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) rms_norm_row(x + r * n, n, weight, eps, y + r * n);
}

Q4_TARGET void autoqwen::q4_round(const float* x, int64_t rows, int64_t k, uint16_t* x16, float* sums) {
  for (int64_t r = 0; r < rows; ++r) round_bf16(x + r * k, x16 + r * k, sums + r * (k / kGroup), k);
}

Q4_TARGET void autoqwen::q4_columns(const uint16_t* x16, const float* sums, int64_t rows, int64_t k, const uint8_t* w,
                                   const int16_t* sz, int64_t b, float* y, int64_t n) {
  const int64_t groups = k / kGroup;
  const uint8_t* wb = w + b * groups * 512;
  const int16_t* szb = sz + b * groups * 64;
  row_tiles(rows, [&]<int R>(int64_t r) {
    q4_block<R>(x16 + r * k, sums + r * groups, k, wb, szb, y + r * n + b * kQ4Columns, n);
  });
}

TORCH_LIBRARY(autoqwen, m) {
  m.def("q8mm(Tensor x, Tensor w, Tensor scale) -> Tensor", &q8mm);
  m.def("q4mm(Tensor x, Tensor w, Tensor scale_zero) -> Tensor", &q4mm);
  m.def("rms_norm(Tensor x, Tensor weight, float eps) -> Tensor", &rms_norm);
  m.def("add_rms_norm(Tensor(a!) h, Tensor y, Tensor weight, float eps, bool rounded) -> Tensor", &add_rms_norm);
  m.def("silu_mul(Tensor gate_up, bool rounded) -> Tensor", &silu_mul);
  m.def("masked_logits(Tensor logits, Tensor bits) -> Tensor", &masked_logits);
}
