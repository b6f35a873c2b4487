// Our CPU kernels (AVX-512 F, BW, VNNI; q4mm also BF16), loaded by kernels.py.
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
// decode_attention: attention of one new token per row (a decode step), grouped-query, skipping the batch's holes;
// keys and values in float32 or float16.
//
// rms_norm: x / sqrt(mean(x^2) + eps) * weight per row, in one pass of our own: PyTorch's runs six operations
// (timings: docs/benchmarks.md).

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <vector>

namespace {

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

#define Q4_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))

// x rounded to bfloat16 (nearest even) and, per group of 32, the sum of the rounded values.
Q4_TARGET void round_bf16(const float* x, uint16_t* out, float* sums, int64_t k) {
  for (int64_t g = 0; g < k / kGroup; ++g) {
    __m512 sum = _mm512_setzero_ps();
    for (int h = 0; h < 2; ++h) {
      const int64_t at = g * kGroup + h * 16;
      const __m256i rounded = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_loadu_ps(x + at)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + at), rounded);
      sum = _mm512_add_ps(sum, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(rounded), 16)));
    }
    sums[g] = _mm512_reduce_add_ps(sum);
  }
}

Q4_TARGET inline __m512 bf16_to_float(const int16_t* p) {
  const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
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
    for (int c = 0; c < 8; ++c) {
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
    for (int64_t r = begin; r < end; ++r) round_bf16(xp + r * k, x16p + r * k, sp + r * groups, k);
  });
  at::Tensor y = at::empty({rows, n}, x.options());
  const uint8_t* wp = w.data_ptr<uint8_t>();
  const int16_t* szp = scale_zero.data_ptr<int16_t>();
  float* yp = y.data_ptr<float>();
  parallel_items(blocks, [&](int64_t b) {
    const uint8_t* wb = wp + b * groups * 512;
    const int16_t* szb = szp + b * groups * 64;
    row_tiles(rows, [&]<int R>(int64_t r) {
      q4_block<R>(x16p + r * k, sp + r * groups, k, wb, szb, yp + r * n + b * kQ4Columns, n);
    });
  });
  return y;
}

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

// Attention of one new token per row (a decode step), grouped-query: out [rows, heads * dim] =
// softmax(q k^T / sqrt(dim)) v over the row's real columns (real: bool [rows, width], or undefined for all).
// q [rows, heads, 1, dim], keys and values [rows, kv_heads, width, dim], any strides with unit stride along dim.
// 16 keys' or values' elements as float32: stored as float32, or as float16 (half the memory traffic).
inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const at::Half* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// The sums of p0, p1, p2 and p3's 16 lanes each, in that order: four keys' scores from their lane-wise products
// (a horizontal sum per key costs about as much as the products themselves).
inline __m128 sum4(__m512 p0, __m512 p1, __m512 p2, __m512 p3) {
  // Per 128-bit lane: a = [p0 p1 p0 p1] and b = [p2 p3 p2 p3], each element the sum of two of that lane's.
  const __m512 a = _mm512_add_ps(_mm512_unpacklo_ps(p0, p1), _mm512_unpackhi_ps(p0, p1));
  const __m512 b = _mm512_add_ps(_mm512_unpacklo_ps(p2, p3), _mm512_unpackhi_ps(p2, p3));
  // Per lane [p0 p1 p2 p3], each the sum of the lane's four; then the four lanes are added.
  __m512 s = _mm512_add_ps(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
  s = _mm512_add_ps(s, _mm512_shuffle_f32x4(s, s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm512_add_ps(s, _mm512_shuffle_f32x4(s, s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_castps512_ps128(s);
}

// One key head's share of a row: its `group` query heads (q, `qs` apart) attend over `width` keys and values
// (`ks` and `vs` apart; real: which columns hold tokens, or null for all), into out [group, 16 B].
// B (dim / 16) is a template argument so that keys, products and sums stay in registers.
template <typename T, int B>
void attend_heads(const float* q, int64_t qs, const T* keys, int64_t ks, const T* values, int64_t vs, const bool* real,
                  int64_t width, int64_t group, float* scores, float* out) {
  const float scale = 1.0f / std::sqrt(16.0f * B);
  __m128 top[8];
  for (int64_t g = 0; g < group; ++g) top[g] = _mm_set1_ps(-INFINITY);
  for (int64_t j = 0; j < width; j += 4) {  // scores, 4 keys at a time
    const int64_t n = std::min<int64_t>(4, width - j);
    __mmask8 in = static_cast<__mmask8>((1u << n) - 1);
    __m512 k[4][B];
    for (int i = 0; i < 4; ++i) {
      const int64_t column = std::min(j + i, width - 1);  // past the end: a copy of the last key, not stored
      if (real && !real[column]) in &= static_cast<__mmask8>(~(1u << i));
      for (int b = 0; b < B; ++b) k[i][b] = load16(keys + column * ks + 16 * b);
    }
    for (int64_t g = 0; g < group; ++g) {
      const float* qg = q + g * qs;
      __m512 p[4];
      for (int i = 0; i < 4; ++i) {
        p[i] = _mm512_mul_ps(_mm512_loadu_ps(qg), k[i][0]);
        for (int b = 1; b < B; ++b) p[i] = _mm512_fmadd_ps(_mm512_loadu_ps(qg + 16 * b), k[i][b], p[i]);
      }
      const __m128 s = _mm_mask_mov_ps(_mm_set1_ps(-INFINITY), in,  // holes score -inf
                                       _mm_mul_ps(sum4(p[0], p[1], p[2], p[3]), _mm_set1_ps(scale)));
      _mm_mask_storeu_ps(scores + g * width + j, static_cast<__mmask8>((1u << n) - 1), s);
      top[g] = _mm_max_ps(top[g], s);
    }
  }
  // Weights exp(score - top), 16 columns at a time; holes weigh nothing.
  for (int64_t g = 0; g < group; ++g) {
    float* sg = scores + g * width;
    __m128 t = _mm_max_ps(top[g], _mm_shuffle_ps(top[g], top[g], _MM_SHUFFLE(1, 0, 3, 2)));
    t = _mm_max_ps(t, _mm_shuffle_ps(t, t, _MM_SHUFFLE(2, 3, 0, 1)));
    const __m512 shift = _mm512_broadcastss_ps(t);
    for (int64_t j = 0; j < width; j += 16) {
      const __mmask16 in = _cvtu32_mask16(width - j >= 16 ? 0xFFFFu : (1u << (width - j)) - 1);
      const __m512 x = _mm512_maskz_loadu_ps(in, sg + j);
      const __m512 p = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(-INFINITY), _CMP_NEQ_OQ) & in,
                                           exp_nonpositive(_mm512_sub_ps(x, shift)));
      _mm512_mask_storeu_ps(sg + j, in, p);
    }
  }
  // The weighted sum of the values and the sum of the weights, key after key, skipping holes: the same additions
  // in the same order wherever the row's tokens sit in the batch. Up to 16 / B query heads at a time (their sums
  // fill 16 registers).
  constexpr int kHeads = 16 / B;
  for (int64_t g0 = 0; g0 < group; g0 += kHeads) {
    __m512 acc[kHeads][B];
    float total[kHeads] = {};
    for (int h = 0; h < kHeads; ++h)
      for (int b = 0; b < B; ++b) acc[h][b] = _mm512_setzero_ps();
    for (int64_t j = 0; j < width; ++j) {
      if (real && !real[j]) continue;
      __m512 v[B];
      for (int b = 0; b < B; ++b) v[b] = load16(values + j * vs + 16 * b);
      for (int h = 0; h < kHeads && g0 + h < group; ++h) {
        const float weight = scores[(g0 + h) * width + j];
        total[h] += weight;
        const __m512 w = _mm512_set1_ps(weight);
        for (int b = 0; b < B; ++b) acc[h][b] = _mm512_fmadd_ps(w, v[b], acc[h][b]);
      }
    }
    for (int h = 0; h < kHeads && g0 + h < group; ++h) {
      const __m512 inverse = _mm512_set1_ps(1.0f / total[h]);
      for (int b = 0; b < B; ++b) _mm512_storeu_ps(out + (g0 + h) * 16 * B + 16 * b, _mm512_mul_ps(acc[h][b], inverse));
    }
  }
}

// f.template operator()<B>() for the B = blocks in 1..16.
template <int B = 1, typename F>
void with_blocks(int64_t blocks, const F& f) {
  if constexpr (B <= 16) {
    if (blocks == B) return f.template operator()<B>();
    with_blocks<B + 1>(blocks, f);
  }
}

template <typename T>
at::Tensor attend(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values,
                  const std::optional<at::Tensor>& real) {
  const int64_t rows = q.size(0), heads = q.size(1), dim = q.size(3), kv_heads = keys.size(1), width = keys.size(2);
  TORCH_CHECK(dim % 16 == 0 && dim >= 16 && dim <= 256 && heads % kv_heads == 0 && q.stride(3) == 1 &&
                  keys.stride(3) == 1 && values.stride(3) == 1 && values.sizes() == keys.sizes() &&
                  keys.size(0) == rows && keys.size(3) == dim,
              "decode_attention: dim a multiple of 16 (at most 256), unit stride along dim");
  const bool* mask = nullptr;
  if (real.has_value()) {
    TORCH_CHECK(real->scalar_type() == at::kBool && real->is_contiguous() && real->size(0) == rows &&
                    real->size(1) == width, "decode_attention: real must be bool [rows, width]");
    mask = real->data_ptr<bool>();
  }
  const int64_t group = heads / kv_heads;
  TORCH_CHECK(group <= 8, "decode_attention: at most 8 query heads per key head");
  at::Tensor out = at::empty({rows, heads * dim}, q.options());
  if (width == 0) return out.zero_();
  const float* qp = q.data_ptr<float>();
  const T* kp = keys.data_ptr<T>();
  const T* vp = values.data_ptr<T>();
  float* op = out.data_ptr<float>();
  with_blocks(dim / 16, [&]<int B>() {
    parallel_items(rows * kv_heads, [&](int64_t item) {
      thread_local std::vector<float> scores;
      scores.resize(group * width);
      const int64_t r = item / kv_heads, c = item % kv_heads;
      attend_heads<T, B>(qp + r * q.stride(0) + c * group * q.stride(1), q.stride(1),
                         kp + r * keys.stride(0) + c * keys.stride(1), keys.stride(2),
                         vp + r * values.stride(0) + c * values.stride(1), values.stride(2),
                         mask ? mask + r * width : nullptr, width, group, scores.data(),
                         op + r * heads * dim + c * group * dim);
    });
  });
  return out;
}

at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values,
                            const std::optional<at::Tensor>& real) {
  TORCH_CHECK(q.dim() == 4 && keys.dim() == 4 && values.dim() == 4 && q.size(2) == 1, "decode_attention: shapes");
  TORCH_CHECK(q.scalar_type() == at::kFloat && keys.scalar_type() == values.scalar_type(),
              "decode_attention: q float32, keys and values of one type");
  if (keys.scalar_type() == at::kHalf) return attend<at::Half>(q, keys, values, real);
  TORCH_CHECK(keys.scalar_type() == at::kFloat, "decode_attention: keys and values float32 or float16");
  return attend<float>(q, keys, values, real);
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
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = xp + r * n;
      float* yr = yp + r * n;
      __m512 sum = _mm512_setzero_ps();
      for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 in = _cvtu32_mask16(n - j >= 16 ? 0xFFFFu : (1u << (n - j)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(in, xr + j);
        sum = _mm512_fmadd_ps(v, v, sum);
      }
      const float mean = _mm512_reduce_add_ps(sum) / static_cast<float>(n);
      const __m512 inverse = _mm512_set1_ps(1.0f / std::sqrt(mean + static_cast<float>(eps)));
      for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 in = _cvtu32_mask16(n - j >= 16 ? 0xFFFFu : (1u << (n - j)) - 1);
        const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(in, xr + j), inverse);
        _mm512_mask_storeu_ps(yr + j, in, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(in, wp + j)));
      }
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY(autoqwen, m) {
  m.def("q8mm(Tensor x, Tensor w, Tensor scale) -> Tensor", &q8mm);
  m.def("q4mm(Tensor x, Tensor w, Tensor scale_zero) -> Tensor", &q4mm);
  m.def("decode_attention(Tensor q, Tensor keys, Tensor values, Tensor? real) -> Tensor", &decode_attention);
  m.def("rms_norm(Tensor x, Tensor weight, float eps) -> Tensor", &rms_norm);
}
