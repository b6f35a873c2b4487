// Attention kernels (AVX-512 F), built into the same library as kernels.cpp, loaded by kernels.py.
//
// decode_attention: attention of one new token per row (a decode step), grouped-query, skipping the batch's holes;
// keys and values in float32 or float16. Also of several tokens a row, each over the columns its own mask says (the
// tool scoring's rows side by side, batch.SideBySide): each token's arithmetic that of a decode step.
//
// prompt_attention: attention of a prompt's new tokens (one sequence, causal, after any keys already cached), with
// each token's arithmetic that of decode_attention for it: the same products, sums and softmax in the same order.
// A prompt read in one pass, in chunks, or token by token therefore gets the same bits, and so does one read partly
// from the prefix cache. The work is laid out for many queries at once: the keys are transposed once per call so
// that one instruction scores 16 keys, and each key block or value row, once loaded, serves several queries.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "kernels.h"

namespace {

using autoqwen::exp_nonpositive;

// f(i) for each i in [0, n) on torch's threads: in shares that shrink as threads come free (guided, as in
// kernels.cpp), or one at a time to whichever thread comes free (`each`: for items of very different sizes, of which
// a guided schedule's first share, half the items, would hold most of the work).
template <typename F>
void parallel_items(int64_t n, const F& f, bool each = false) {
  if (n <= 0) return;
  const int threads = static_cast<int>(std::min<int64_t>(n, at::get_num_threads()));
  if (each) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#pragma omp parallel for schedule(guided) num_threads(threads)
  for (int64_t i = 0; i < n; ++i) f(i);
}

// Attention of one new token per row (a decode step), grouped-query: out [rows, heads * dim] =
// softmax(q k^T / sqrt(dim)) v over the row's real columns (real: bool [rows, width], or undefined for all).
// q [rows, heads, 1, dim], keys and values [rows, kv_heads, width, dim], any strides with unit stride along dim.
// With n tokens a row, q [rows, heads, n, dim], real [rows, n, width] and out [rows * n, heads * dim]. `rounded`: out
// rounded to bfloat16 (the input of a bfloat16 product), as `.to(torch.bfloat16)` rounds it.
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
      const __mmask16 in = autoqwen::lanes(width - j);
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

// One key head's share of a row (attend_heads) with scratch for its scores, for any dim / 16 blocks.
template <typename T>
void attend_item(const float* q, int64_t qs, const T* keys, int64_t ks, const T* values, int64_t vs, const bool* real,
                 int64_t width, int64_t group, int64_t dim, float* out) {
  thread_local std::vector<float> scores;
  scores.resize(group * width);
  with_blocks(dim / 16, [&]<int B>() {
    attend_heads<T, B>(q, qs, keys, ks, values, vs, real, width, group, scores.data(), out);
  });
}

template <typename T>
at::Tensor attend(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values,
                  const std::optional<at::Tensor>& real, bool rounded) {
  const int64_t rows = q.size(0), heads = q.size(1), n = q.size(2), dim = q.size(3), kv_heads = keys.size(1),
                width = keys.size(2);
  TORCH_CHECK(dim % 16 == 0 && dim >= 16 && dim <= 256 && heads % kv_heads == 0 && q.stride(3) == 1 &&
                  keys.stride(3) == 1 && values.stride(3) == 1 && values.sizes() == keys.sizes() &&
                  keys.size(0) == rows && keys.size(3) == dim,
              "decode_attention: dim a multiple of 16 (at most 256), unit stride along dim");
  const bool* mask = nullptr;
  if (real.has_value()) {
    const bool shaped = real->dim() == 3 ? real->size(0) == rows && real->size(1) == n && real->size(2) == width
                                         : n == 1 && real->dim() == 2 && real->size(0) == rows && real->size(1) == width;
    TORCH_CHECK(real->scalar_type() == at::kBool && real->is_contiguous() && shaped,
                "decode_attention: real must be bool [rows, n, width] ([rows, width] for one query a row)");
    mask = real->data_ptr<bool>();
  } else {
    TORCH_CHECK(n == 1, "decode_attention: several queries a row need real");
  }
  const int64_t group = heads / kv_heads;
  TORCH_CHECK(group <= 8, "decode_attention: at most 8 query heads per key head");
  at::Tensor out = at::empty({rows * n, heads * dim}, q.options().dtype(rounded ? at::kBFloat16 : at::kFloat));
  if (width == 0) return out.zero_();
  const float* qp = q.data_ptr<float>();
  const T* kp = keys.data_ptr<T>();
  const T* vp = values.data_ptr<T>();
  parallel_items(rows * n * kv_heads, [&](int64_t item) {
    const int64_t r = item / (n * kv_heads), i = item / kv_heads % n, c = item % kv_heads;
    const int64_t at = (r * n + i) * heads * dim + c * group * dim, size = group * dim;
    thread_local std::vector<float> scratch;  // the item's float32 output, before it is rounded
    if (rounded) scratch.resize(size);
    attend_item(qp + r * q.stride(0) + i * q.stride(2) + c * group * q.stride(1), q.stride(1),
                kp + r * keys.stride(0) + c * keys.stride(1), keys.stride(2), vp + r * values.stride(0) + c * values.stride(1),
                values.stride(2), mask ? mask + (r * n + i) * width : nullptr, width, group, dim,
                rounded ? scratch.data() : out.data_ptr<float>() + at);
    if (rounded) {  // dim is a multiple of 16
      auto* bits = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>() + at);
      for (int64_t j = 0; j < size; j += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(bits + j),
                            _mm512_cvtepi32_epi16(autoqwen::float_to_bf16_bits(_mm512_loadu_ps(scratch.data() + j))));
    }
  });
  return out;
}

at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values,
                            const std::optional<at::Tensor>& real, bool rounded) {
  TORCH_CHECK(q.dim() == 4 && keys.dim() == 4 && values.dim() == 4, "decode_attention: shapes");
  TORCH_CHECK(q.scalar_type() == at::kFloat && keys.scalar_type() == values.scalar_type(),
              "decode_attention: q float32, keys and values of one type");
  if (keys.scalar_type() == at::kHalf) return attend<at::Half>(q, keys, values, real, rounded);
  TORCH_CHECK(keys.scalar_type() == at::kFloat, "decode_attention: keys and values float32 or float16");
  return attend<float>(q, keys, values, real, rounded);
}

// f.template operator()<N>() for N = n in 1..Max.
template <int Max, int N = 1, typename F>
void with_count(int64_t n, const F& f) {
  if constexpr (N <= Max) {
    if (n == N) return f.template operator()<N>();
    with_count<Max, N + 1>(n, f);
  }
}

// x as it is, kept from being fused with the operation that uses it (a product fused into the next addition would
// round differently from decode_attention, whose horizontal sums shuffle lanes between the two).
inline __m512 opaque(__m512 x) {
  asm("" : "+v"(x));
  return x;
}

// The first address from p on at the start of a cache line (p must have 15 floats to spare).
inline float* aligned(float* p) { return p + (16 - reinterpret_cast<uintptr_t>(p) / sizeof(float) % 16) % 16; }

// The 16 x 16 floats of r transposed (r[i] lane j becomes r[j] lane i).
inline void transpose16(__m512* r) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 16; i += 8)
    for (int j = 0; j < 4; ++j) {
      t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
      t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xdd);
    }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
  }
}

// Blocks of 16 keys [16 B][16] in float32 (key i of a block in lane i), from keys [width, 16 B] (`ks` apart); past
// the end, copies of the last key (scored, never used).
template <typename T, int B>
void transpose_keys(const T* keys, int64_t ks, int64_t width, int64_t block, float* out) {
  for (int b = 0; b < B; ++b) {
    __m512 r[16];
    for (int64_t i = 0; i < 16; ++i) r[i] = load16(keys + std::min(block * 16 + i, width - 1) * ks + 16 * b);
    transpose16(r);
    for (int l = 0; l < 16; ++l) _mm512_storeu_ps(out + (16 * b + l) * 16, r[l]);
  }
}

// The scaled scores of N queries (q[n], 16 B each) for K blocks of 16 transposed keys (kt), into out[n][0..16 K):
// per key, lane l sums q[16 b + l] k[16 b + l] over b as decode_attention's products do, then the lanes are added
// in sum4's order: ((0 + 2) + (1 + 3)) within each group of four lanes, and the four groups likewise. Each key
// vector loaded serves N queries, each query element broadcast serves K blocks.
template <int N, int K, int B>
inline void score_blocks(const float* const* q, const float* kt, float scale, float* const* out) {
  __m512 even[N][K], odd[N][K];  // groups 0 + 2 and 1 + 3
  for (int g = 0; g < 4; ++g) {
    __m512 x[N][K][4];
    for (int b = 0; b < B; ++b)
      for (int m = 0; m < 4; ++m) {
        const int lane = 16 * b + 4 * g + m;
        __m512 k[K];
        for (int c = 0; c < K; ++c) k[c] = _mm512_loadu_ps(kt + (c * 16 * B + lane) * 16);
        for (int n = 0; n < N; ++n) {
          const __m512 qn = _mm512_set1_ps(q[n][lane]);
          for (int c = 0; c < K; ++c)
            x[n][c][m] = b == 0 ? _mm512_mul_ps(qn, k[c]) : _mm512_fmadd_ps(qn, k[c], x[n][c][m]);
        }
      }
    for (int n = 0; n < N; ++n)
      for (int c = 0; c < K; ++c) {
        for (int m = 0; m < 4; ++m) x[n][c][m] = opaque(x[n][c][m]);
        const __m512 sum = _mm512_add_ps(_mm512_add_ps(x[n][c][0], x[n][c][2]), _mm512_add_ps(x[n][c][1], x[n][c][3]));
        if (g == 0) even[n][c] = sum;
        if (g == 1) odd[n][c] = sum;
        if (g == 2) even[n][c] = _mm512_add_ps(even[n][c], sum);
        if (g == 3) odd[n][c] = _mm512_add_ps(odd[n][c], sum);
      }
  }
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < K; ++c)
      _mm512_storeu_ps(out[n] + 16 * c, _mm512_mul_ps(_mm512_add_ps(even[n][c], odd[n][c]), _mm512_set1_ps(scale)));
}

// Values weighted by N queries' weights (w[n], one per key), keys j0..j1, onto their sums acc[n] and the weights'
// sums total[n], key after key as decode_attention adds them; a query skips the keys after its own (last[n]).
template <typename T, int B, int N>
void weigh_values(const T* values, int64_t vs, int64_t j0, int64_t j1, const float* const* w, const int64_t* last,
                  float* const* acc, float* total) {
  __m512 a[N][B];
  float t[N];
  for (int n = 0; n < N; ++n) {
    t[n] = total[n];
    for (int b = 0; b < B; ++b) a[n][b] = _mm512_loadu_ps(acc[n] + 16 * b);
  }
  const auto weigh = [&]<bool Check>(int64_t from, int64_t to) {
    for (int64_t j = from; j < to; ++j) {
      __m512 v[B];
      for (int b = 0; b < B; ++b) v[b] = load16(values + j * vs + 16 * b);
      for (int n = 0; n < N; ++n) {
        if (Check && j > last[n]) continue;
        // The weight broadcast straight from memory (a load, not a shuffle), apart from its scalar sum.
        const __m512 wv = _mm512_broadcastss_ps(_mm_load_ss(w[n] + j));
        t[n] += w[n][j];
        for (int b = 0; b < B; ++b) a[n][b] = _mm512_fmadd_ps(wv, v[b], a[n][b]);
      }
    }
  };
  int64_t shared = j1;  // keys every query of the pass sees
  for (int n = 0; n < N; ++n) shared = std::max(j0, std::min(shared, last[n] + 1));
  weigh.template operator()<false>(j0, shared);
  weigh.template operator()<true>(shared, j1);
  for (int n = 0; n < N; ++n) {
    total[n] = t[n];
    for (int b = 0; b < B; ++b) _mm512_storeu_ps(acc[n] + 16 * b, a[n][b]);
  }
}

// One key head's queries at `count` consecutive positions from `first` (the prompt's new tokens are at positions
// past + 0, 1, ...), its `group` query heads each: rows r = t group + g. q points at the key head's first query
// head at new token 0 (`qh` between heads, `qt` between tokens); out likewise (`ot` between tokens).
template <typename T, int B>
void prompt_tile(const float* q, int64_t qh, int64_t qt, const float* kt, const T* values, int64_t vs, int64_t past,
                 int64_t first, int64_t count, int64_t group, std::vector<float>& scores, float* out, int64_t ot) {
  const int64_t rows = count * group, width = past + first + count, stride = (width + 31) / 32 * 32;
  const float scale = 1.0f / std::sqrt(16.0f * B);
  scores.resize(std::max<size_t>(scores.size(), rows * stride + 16));
  float* s = aligned(scores.data());
  const float* qr[16];
  int64_t last[16];
  for (int64_t r = 0; r < rows; ++r) {
    qr[r] = q + (r % group) * qh + (first + r / group) * qt;
    last[r] = past + first + r / group;
  }
  // Scores, two queries and 32 keys at a time; a query's later keys then score -inf.
  for (int64_t j = 0; j < width; j += 32)
    for (int64_t r = 0; r < rows; r += 2)
      with_count<2>(std::min<int64_t>(2, rows - r), [&]<int N>() {
        float* o[N];
        for (int n = 0; n < N; ++n) o[n] = s + (r + n) * stride + j;
        score_blocks<N, 2, B>(qr + r, kt + j * 16 * B, scale, o);
      });
  for (int64_t r = 0; r < rows; ++r)
    std::fill(s + r * stride + last[r] + 1, s + (r + 1) * stride, -INFINITY);
  // Weights exp(score - top), in place.
  for (int64_t r = 0; r < rows; ++r) {
    float* sr = s + r * stride;
    __m512 top = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j <= last[r]; j += 16) top = _mm512_max_ps(top, _mm512_loadu_ps(sr + j));
    const __m512 shift = _mm512_set1_ps(_mm512_reduce_max_ps(top));
    for (int64_t j = 0; j <= last[r]; j += 16) {
      const __m512 x = _mm512_loadu_ps(sr + j);
      const __mmask16 real = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-INFINITY), _CMP_NEQ_OQ);
      _mm512_storeu_ps(sr + j, _mm512_maskz_mov_ps(real, exp_nonpositive(_mm512_sub_ps(x, shift))));
    }
  }
  // Weighted sums of the values, 64 keys at a time for as many queries as their sums, the weights' sums and a
  // value row fit in registers.
  constexpr int kRows = std::max(1, (30 - B) / (B + 1));
  alignas(64) float acc[16][16 * B] = {};
  float total[16] = {};
  for (int64_t j0 = 0; j0 < width; j0 += 64)
    for (int64_t r = 0; r < rows; r += kRows)
      with_count<kRows>(std::min<int64_t>(kRows, rows - r), [&]<int N>() {
        const float* w[N];
        float* a[N];
        for (int n = 0; n < N; ++n) w[n] = s + (r + n) * stride, a[n] = acc[r + n];
        weigh_values<T, B, N>(values, vs, j0, std::min(width, j0 + 64), w, last + r, a, total + r);
      });
  for (int64_t r = 0; r < rows; ++r) {
    const __m512 inverse = _mm512_set1_ps(1.0f / total[r]);
    float* o = out + (first + r / group) * ot + (r % group) * 16 * B;
    for (int b = 0; b < B; ++b) _mm512_storeu_ps(o + 16 * b, _mm512_mul_ps(_mm512_loadu_ps(acc[r] + 16 * b), inverse));
  }
}

template <typename T>
at::Tensor attend_prompt(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values) {
  const int64_t heads = q.size(1), n = q.size(2), dim = q.size(3), kv_heads = keys.size(1), width = keys.size(2);
  TORCH_CHECK(dim % 16 == 0 && dim >= 16 && dim <= 256 && heads % kv_heads == 0 && q.stride(3) == 1 &&
                  keys.stride(3) == 1 && values.stride(3) == 1 && values.sizes() == keys.sizes() &&
                  keys.size(3) == dim && n <= width,
              "prompt_attention: dim a multiple of 16 (at most 256), unit stride along dim, n <= width");
  const int64_t group = heads / kv_heads;
  TORCH_CHECK(group <= 8, "prompt_attention: at most 8 query heads per key head");
  at::Tensor out = at::empty({n, heads * dim}, q.options());
  if (n == 0) return out;
  // Key blocks in pairs (scored 32 keys at a time); tiles of up to 16 query rows, `tokens` new tokens each.
  const int64_t blocks = (width + 31) / 32 * 2, tokens = std::max<int64_t>(1, 16 / group);
  const int64_t tiles = (n + tokens - 1) / tokens;
  // The transposed keys in a buffer kept for the next call (a fresh one is memory the OS hands out page by page,
  // which for a prompt's short chunks took as long as the transposing itself), aligned to cache lines (loads that
  // straddle two made scoring slower by a third).
  thread_local std::vector<float> kt;
  kt.resize(std::max<size_t>(kt.size(), kv_heads * blocks * 16 * dim + 16));
  const float* qp = q.data_ptr<float>();
  const T* kp = keys.data_ptr<T>();
  const T* vp = values.data_ptr<T>();
  float* ktp = aligned(kt.data());
  float* op = out.data_ptr<float>();
  with_blocks(dim / 16, [&]<int B>() {
    parallel_items(kv_heads * blocks, [&](int64_t item) {
      const int64_t c = item / blocks, block = item % blocks;
      transpose_keys<T, B>(kp + c * keys.stride(1), keys.stride(2), width, block,
                           ktp + c * blocks * 16 * dim + block * 16 * 16 * B);
    });
    // The tiles with the most keys first, so that the last ones handed out are the smallest.
    parallel_items(kv_heads * tiles, [&](int64_t item) {
      thread_local std::vector<float> scores;
      const int64_t c = item % kv_heads, first = (tiles - 1 - item / kv_heads) * tokens;
      prompt_tile<T, B>(qp + c * group * q.stride(1), q.stride(1), q.stride(2), ktp + c * blocks * 16 * dim,
                        vp + c * values.stride(1), values.stride(2), width - n, first,
                        std::min(tokens, n - first), group, scores, op + c * group * dim, heads * dim);
    }, /*each=*/true);
  });
  return out;
}

at::Tensor prompt_attention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values) {
  TORCH_CHECK(q.dim() == 4 && keys.dim() == 4 && values.dim() == 4 && q.size(0) == 1 && keys.size(0) == 1,
              "prompt_attention: q [1, heads, n, dim], keys and values [1, kv_heads, width, dim]");
  TORCH_CHECK(q.scalar_type() == at::kFloat && keys.scalar_type() == values.scalar_type(),
              "prompt_attention: q float32, keys and values of one type");
  if (keys.scalar_type() == at::kHalf) return attend_prompt<at::Half>(q, keys, values);
  TORCH_CHECK(keys.scalar_type() == at::kFloat, "prompt_attention: keys and values float32 or float16");
  return attend_prompt<float>(q, keys, values);
}

}  // namespace

void autoqwen::attend_item(const float* q, int64_t qs, const c10::Half* keys, int64_t ks, const c10::Half* values,
                           int64_t vs, const bool* real, int64_t width, int64_t group, int64_t dim, float* out) {
  ::attend_item<at::Half>(q, qs, keys, ks, values, vs, real, width, group, dim, out);
}

TORCH_LIBRARY_FRAGMENT(autoqwen, m) {
  m.def("decode_attention(Tensor q, Tensor keys, Tensor values, Tensor? real, bool rounded=False) -> Tensor",
        &decode_attention);
  m.def("prompt_attention(Tensor q, Tensor keys, Tensor values) -> Tensor", &prompt_attention);
}
