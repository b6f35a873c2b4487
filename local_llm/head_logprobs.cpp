// head_logprobs: the log-probability of one token at each of many positions, from the 8-bit head's bfloat16
// logits (the tool scoring's, `Int8Linear.dense` in quantize.py), built into the same library as kernels.cpp.
//
// A row's logits are y_j scale_j, y the bfloat16 product of the row's inputs x (rounded to bfloat16) and the head's
// integers; its `exact` largest are computed again in float32, x . integers_j scale_j, which makes most of the
// log-sum-exp as exact as the 8-bit head's own product. log P(target) = logit_target - log sum_j e^logit_j. That
// is the arithmetic of PyTorch's `(y.float() * scale)`, `topk`, the product again, `scatter_`, `gather` and
// `logsumexp` over [rows, vocab] floats but for the order of its sums, in two passes over each row that stay in
// the core's cache (those operations took 1.5x the head's product at 70 rows, docs/engine.md#scoring).
//
// head_logprobs_amx: the same log-probabilities on a CPU with AMX's 8-bit tiles, with no logits written out at all:
// each row's inputs become 16-bit integers of one scale (max |x| / 32767), split into a signed high byte and an
// unsigned low one, and AMX sums each byte's products with the head's integers exactly in 32 bits (TDPBSSD,
// TDPBUSD); a logit is (256 high + low) x-scale scale_j, as close to float32's as the 8-bit head's own product
// (q8mm's ~16-bit inputs), so none is computed again. The logits of each block of 32 outputs go straight into a
// running log-sum-exp per row (its largest so far, and the sum of e^(logit - it) in 16 lanes), one per thread,
// merged at the end: the [rows, vocab] product PyTorch writes and head_logprobs reads (11 MB at 117 rows) is
// never written, and the head's weights are read in 8 bits, not 16.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <utility>
#include <vector>

#include "kernels.h"

namespace {

// x . w for float32 x and int8 w (k a multiple of 16), in float32.
float dot_int8(const float* x, const int8_t* w, int64_t k) {
  __m512 sum = _mm512_setzero_ps();
  for (int64_t i = 0; i < k; i += 16) {
    const __m512 wi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i))));
    sum = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), wi, sum);
  }
  return _mm512_reduce_add_ps(sum);
}

// One row: its logits into `logits` [n], then log P(target).
float row_logprob(const uint16_t* y, const float* scale, const float* x, const int8_t* integers, int64_t n, int64_t k,
                  int64_t target, int64_t exact, float* logits, std::vector<std::pair<float, int64_t>>& kept) {
  // The `exact` largest logits so far, a heap with the smallest first; `floor` the smallest once there are enough.
  kept.clear();
  float floor = -std::numeric_limits<float>::infinity();
  __m512 top = _mm512_set1_ps(floor);
  for (int64_t j = 0; j < n; j += 16) {
    const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + j));
    const __m512 v = _mm512_mul_ps(autoqwen::bf16_bits_to_float(bits), _mm512_loadu_ps(scale + j));
    _mm512_storeu_ps(logits + j, v);
    top = _mm512_max_ps(top, v);
    for (uint32_t above = _mm512_cmp_ps_mask(v, _mm512_set1_ps(floor), _CMP_GT_OQ); above; above &= above - 1) {
      const int64_t at = j + __builtin_ctz(above);
      if (static_cast<int64_t>(kept.size()) == exact) {
        if (!(logits[at] > floor)) continue;  // the floor rose within these 16
        std::pop_heap(kept.begin(), kept.end(), std::greater<>());
        kept.pop_back();
      }
      kept.emplace_back(logits[at], at);
      std::push_heap(kept.begin(), kept.end(), std::greater<>());
      if (static_cast<int64_t>(kept.size()) == exact) floor = kept.front().first;
    }
  }
  float most = _mm512_reduce_max_ps(top);
  for (const auto& [value, at] : kept) {
    logits[at] = dot_int8(x, integers + at * k, k) * scale[at];
    most = std::max(most, logits[at]);
  }
  __m512 sum = _mm512_setzero_ps();
  const __m512 shift = _mm512_set1_ps(most);
  for (int64_t j = 0; j < n; j += 16)
    sum = _mm512_add_ps(sum, autoqwen::exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(logits + j), shift)));
  return logits[target] - (most + std::log(_mm512_reduce_add_ps(sum)));
}

at::Tensor head_logprobs(const at::Tensor& y, const at::Tensor& scale, const at::Tensor& x, const at::Tensor& integers,
                         const at::Tensor& targets, int64_t exact) {
  TORCH_CHECK(y.dim() == 2 && y.scalar_type() == at::kBFloat16 && y.is_contiguous() && y.size(1) % 16 == 0,
              "head_logprobs: y must be contiguous bfloat16 [M, N], N a multiple of 16");
  const int64_t rows = y.size(0), n = y.size(1);
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.is_contiguous() && x.size(0) == rows &&
                  x.size(1) % 16 == 0,
              "head_logprobs: x must be contiguous float32 [M, K], K a multiple of 16");
  const int64_t k = x.size(1);
  TORCH_CHECK(integers.scalar_type() == at::kChar && integers.is_contiguous() && integers.dim() == 2 &&
                  integers.size(0) == n && integers.size(1) == k,
              "head_logprobs: integers must be contiguous int8 [N, K]");
  TORCH_CHECK(scale.scalar_type() == at::kFloat && scale.is_contiguous() && scale.numel() == n,
              "head_logprobs: scale must be float32 [N]");
  TORCH_CHECK(targets.scalar_type() == at::kLong && targets.is_contiguous() && targets.numel() == rows,
              "head_logprobs: targets must be int64 [M]");
  TORCH_CHECK(exact >= 1 && exact <= n, "head_logprobs: exact must be in [1, N]");
  const int64_t* tp = targets.data_ptr<int64_t>();
  for (int64_t r = 0; r < rows; ++r) TORCH_CHECK(tp[r] >= 0 && tp[r] < n, "head_logprobs: target out of range");
  at::Tensor out = at::empty({rows}, x.options());
  const auto* yp = reinterpret_cast<const uint16_t*>(y.data_ptr<at::BFloat16>());
  const float* sp = scale.data_ptr<float>();
  const float* xp = x.data_ptr<float>();
  const int8_t* ip = integers.data_ptr<int8_t>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> logits(n);  // one row's, in the core's cache
    std::vector<std::pair<float, int64_t>> kept;
    kept.reserve(exact);
    for (int64_t r = begin; r < end; ++r)
      op[r] = row_logprob(yp + r * n, sp, xp + r * k, ip, n, k, tp[r], exact, logits.data(), kept);
  });
  return out;
}

// Compilers since GCC 11 and Clang 12 know AMX's instructions; with an older one the kernel is left out.
#if (defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11)
#define AUTOQWEN_AMX 1

// AMX's tile registers, all 8 of 16 rows of 64 bytes (palette 1).
struct TileConfig {
  uint8_t palette = 1, start = 0;
  uint8_t reserved[14] = {};
  uint16_t bytes[16] = {};
  uint8_t rows[16] = {};
};

#define AMX_INT8 __attribute__((target("avx512f,avx512bw,amx-tile,amx-int8")))

// Linux lets a process use AMX's tile data only once it asks (oneDNN asks too, for its own products).
bool amx_allowed() {
  static const bool allowed = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
  return allowed;
}

// Each row of x [rows, k] as 16-bit integers q = round(x / scale), scale = max |x| / 32767 (1 for a row of zeros):
// q = 256 high + low, high signed and low unsigned bytes, [rows, k] each. A row holding NaN or infinity gets a NaN
// scale (and its log-probability NaN, as float32's arithmetic gives).
AMX_INT8 void split_rows(const float* x, int64_t rows, int64_t k, int8_t* high, uint8_t* low, float* scale) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * k;
    __m512 most = _mm512_setzero_ps(), finite = _mm512_setzero_ps();  // finite: 0 x each value, NaN for NaN or inf
    for (int64_t i = 0; i < k; i += 16) {
      const __m512 v = _mm512_loadu_ps(xr + i);
      most = _mm512_max_ps(most, _mm512_abs_ps(v));
      finite = _mm512_add_ps(finite, _mm512_mul_ps(v, _mm512_setzero_ps()));
    }
    const float largest = _mm512_reduce_max_ps(most);
    scale[r] = largest > 0 ? largest / 32767.0f : 1.0f;
    if (std::isnan(_mm512_reduce_add_ps(finite))) {
      scale[r] = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    const __m512 inverse = _mm512_set1_ps(1.0f / scale[r]);
    const __m512i top = _mm512_set1_epi32(32767), bottom = _mm512_set1_epi32(-32767), byte = _mm512_set1_epi32(255);
    for (int64_t i = 0; i < k; i += 16) {
      __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xr + i), inverse));  // to nearest, even
      q = _mm512_max_epi32(_mm512_min_epi32(q, top), bottom);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(high + r * k + i), _mm512_cvtepi32_epi8(_mm512_srai_epi32(q, 8)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(low + r * k + i), _mm512_cvtepi32_epi8(_mm512_and_si512(q, byte)));
    }
  }
}

// A row's running log-sum-exp over the logits seen, lane by lane (16 lanes: each the largest logit it saw, and the
// sum of e^(logit - it)), and its target's logit once seen (NaN before).
struct RowSum {
  alignas(64) std::array<float, 16> most;
  alignas(64) std::array<float, 16> sum{};
  float target = std::numeric_limits<float>::quiet_NaN();
  RowSum() { most.fill(-std::numeric_limits<float>::infinity()); }
};

// Blocks [begin, end) of 32 outputs (tiles [N / 16, K / 64, 16, 64]: 16 outputs' 4 consecutive inputs side by side
// in each 64-byte row) for every row of `high` and `low` (padded to 16 rows), into the rows' running sums.
AMX_INT8 void head_blocks(const int8_t* high, const uint8_t* low, const float* xscale, const int8_t* tiles,
                          const float* scale, const int64_t* targets, int64_t rows, int64_t k, int64_t begin,
                          int64_t end, RowSum* sums) {
  const int64_t steps = k / 64, blocks16 = (rows + 15) / 16;
  TileConfig config;
  for (int i = 0; i < 8; ++i) {
    config.rows[i] = 16;
    config.bytes[i] = 64;
  }
  _tile_loadconfig(&config);
  // Each block's 32 x rows int32 products (high, then low) are read after all its products: a tile just stored
  // is slow to read back.
  std::vector<int32_t> products(blocks16 * 1024);
  const int64_t lines = 2 * steps * 16, every = (lines + blocks16 * steps - 1) / (blocks16 * steps);
  for (int64_t b = begin; b < end; ++b) {
    const int8_t* w0 = tiles + 2 * b * steps * 1024;  // outputs 32b..32b+15, then 32b+16..32b+31
    const int8_t* w1 = w0 + steps * 1024;
    const char* next = reinterpret_cast<const char*>(w1 + steps * 1024);  // the next block's, fetched meanwhile
    int64_t line = b + 1 < end ? 0 : lines;
    for (int64_t j = 0; j < blocks16; ++j) {
      _tile_zero(4);
      _tile_zero(5);
      _tile_zero(6);
      _tile_zero(7);
      for (int64_t s = 0; s < steps; ++s) {
        _tile_loadd(0, high + j * 16 * k + s * 64, k);
        _tile_loadd(1, low + j * 16 * k + s * 64, k);
        _tile_loadd(2, w0 + s * 1024, 64);
        _tile_loadd(3, w1 + s * 1024, 64);
        _tile_dpbssd(4, 0, 2);
        _tile_dpbssd(5, 0, 3);
        _tile_dpbusd(6, 1, 2);
        _tile_dpbusd(7, 1, 3);
        for (int64_t p = 0; p < every && line < lines; ++p, ++line) _mm_prefetch(next + 64 * line, _MM_HINT_T0);
      }
      int32_t* out = products.data() + j * 1024;
      _tile_stored(4, out, 64);
      _tile_stored(5, out + 256, 64);
      _tile_stored(6, out + 512, 64);
      _tile_stored(7, out + 768, 64);
    }
    const __m512 scales[2] = {_mm512_loadu_ps(scale + 32 * b), _mm512_loadu_ps(scale + 32 * b + 16)};
    for (int64_t r = 0; r < rows; ++r) {
      const int32_t* product = products.data() + (r / 16) * 1024 + (r % 16) * 16;
      const __m512 row_scale = _mm512_set1_ps(xscale[r]);
      __m512 logits[2];
      for (int h = 0; h < 2; ++h) {
        const __m512 upper = _mm512_cvtepi32_ps(_mm512_loadu_si512(product + 256 * h));
        const __m512 lower = _mm512_cvtepi32_ps(_mm512_loadu_si512(product + 512 + 256 * h));
        const __m512 q = _mm512_fmadd_ps(upper, _mm512_set1_ps(256.0f), lower);
        logits[h] = _mm512_mul_ps(_mm512_mul_ps(q, row_scale), scales[h]);
      }
      RowSum& row = sums[r];
      const __m512 before = _mm512_load_ps(row.most.data());
      const __m512 most = _mm512_max_ps(before, _mm512_max_ps(logits[0], logits[1]));
      __m512 sum = _mm512_load_ps(row.sum.data());
      if (_mm512_cmp_ps_mask(most, before, _CMP_GT_OQ))  // a lane's largest rose (seldom after the first blocks)
        sum = _mm512_mul_ps(sum, autoqwen::exp_nonpositive(_mm512_sub_ps(before, most)));
      for (const __m512 logit : logits) sum = _mm512_add_ps(sum, autoqwen::exp_nonpositive(_mm512_sub_ps(logit, most)));
      _mm512_store_ps(row.most.data(), most);
      _mm512_store_ps(row.sum.data(), sum);
      if (const int64_t t = targets[r] - 32 * b; t >= 0 && t < 32) {
        alignas(64) float both[32];
        _mm512_store_ps(both, logits[0]);
        _mm512_store_ps(both + 16, logits[1]);
        row.target = both[t];
      }
    }
  }
  _tile_release();
}

at::Tensor head_logprobs_amx(const at::Tensor& x, const at::Tensor& tiles, const at::Tensor& scale,
                             const at::Tensor& targets) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.is_contiguous() && x.size(1) % 64 == 0,
              "head_logprobs_amx: x must be contiguous float32 [M, K], K a multiple of 64");
  const int64_t rows = x.size(0), k = x.size(1), steps = k / 64;
  TORCH_CHECK(tiles.scalar_type() == at::kChar && tiles.is_contiguous() && tiles.dim() == 4 && tiles.size(0) % 2 == 0 &&
                  tiles.size(1) == steps && tiles.size(2) == 16 && tiles.size(3) == 64,
              "head_logprobs_amx: tiles must be contiguous int8 [N / 16, K / 64, 16, 64], N a multiple of 32");
  const int64_t n = tiles.size(0) * 16, blocks = n / 32;
  TORCH_CHECK(scale.scalar_type() == at::kFloat && scale.is_contiguous() && scale.numel() == n,
              "head_logprobs_amx: scale must be float32 [N]");
  TORCH_CHECK(targets.scalar_type() == at::kLong && targets.is_contiguous() && targets.numel() == rows,
              "head_logprobs_amx: targets must be int64 [M]");
  const int64_t* tp = targets.data_ptr<int64_t>();
  for (int64_t r = 0; r < rows; ++r) TORCH_CHECK(tp[r] >= 0 && tp[r] < n, "head_logprobs_amx: target out of range");
  TORCH_CHECK(amx_allowed(), "head_logprobs_amx: Linux did not let this process use AMX tiles");
  at::Tensor out = at::empty({rows}, x.options());
  if (rows == 0) return out;
  const int64_t padded = (rows + 15) / 16 * 16;  // the tiles' rows past the last: zeros
  at::Tensor high = at::zeros({padded, k}, x.options().dtype(at::kChar));
  at::Tensor low = at::zeros({padded, k}, x.options().dtype(at::kByte));
  at::Tensor xscale = at::empty({rows}, x.options());
  split_rows(x.data_ptr<float>(), rows, k, high.data_ptr<int8_t>(), low.data_ptr<uint8_t>(), xscale.data_ptr<float>());
  const int64_t parts = std::min<int64_t>(at::get_num_threads(), blocks);  // each a share of the outputs
  std::vector<RowSum> sums(parts * rows);
  at::parallel_for(0, parts, 1, [&](int64_t first, int64_t last) {
    for (int64_t p = first; p < last; ++p)
      head_blocks(high.data_ptr<int8_t>(), low.data_ptr<uint8_t>(), xscale.data_ptr<float>(), tiles.data_ptr<int8_t>(),
                  scale.data_ptr<float>(), tp, rows, k, p * blocks / parts, (p + 1) * blocks / parts,
                  sums.data() + p * rows);
  });
  float* op = out.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) {
    float most = -std::numeric_limits<float>::infinity(), target = 0;
    for (int64_t p = 0; p < parts; ++p) {
      const RowSum& part = sums[p * rows + r];
      most = std::max(most, *std::max_element(part.most.begin(), part.most.end()));
      if (!std::isnan(part.target)) target = part.target;
    }
    double total = 0;
    for (int64_t p = 0; p < parts; ++p)
      for (int lane = 0; lane < 16; ++lane) {
        const RowSum& part = sums[p * rows + r];
        total += part.sum[lane] * std::exp(static_cast<double>(part.most[lane]) - most);
      }
    op[r] = std::isnan(xscale.data_ptr<float>()[r]) ? xscale.data_ptr<float>()[r]
                                                    : target - (most + static_cast<float>(std::log(total)));
  }
  return out;
}
#endif  // AUTOQWEN_AMX

}  // namespace

TORCH_LIBRARY_FRAGMENT(autoqwen, m) {
  m.def("head_logprobs(Tensor y, Tensor scale, Tensor x, Tensor integers, Tensor targets, int exact) -> Tensor",
        &head_logprobs);
#ifdef AUTOQWEN_AMX
  m.def("head_logprobs_amx(Tensor x, Tensor tiles, Tensor scale, Tensor targets) -> Tensor", &head_logprobs_amx);
#endif
}
