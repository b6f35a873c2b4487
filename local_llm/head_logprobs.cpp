// head_logprobs: the log-probability of one token at each of many positions, from the 8-bit head's bfloat16
// logits (the tool scoring's, `Int8Linear.dense` in quantize.py), built into the same library as kernels.cpp.
//
// A row's logits are y_j scale_j, y the bfloat16 product of the row's inputs x (rounded to bfloat16) and the head's
// integers; its `exact` largest are computed again in float32, x . integers_j scale_j, which makes most of the
// log-sum-exp as exact as the 8-bit head's own product. log P(target) = logit_target - log sum_j e^logit_j. That
// is the arithmetic of PyTorch's `(y.float() * scale)`, `topk`, the product again, `scatter_`, `gather` and
// `logsumexp` over [rows, vocab] floats but for the order of its sums, in two passes over each row that stay in
// the core's cache (those operations took 1.5x the head's product at 70 rows, docs/engine.md#scoring).

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <immintrin.h>

#include <algorithm>
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

}  // namespace

TORCH_LIBRARY_FRAGMENT(autoqwen, m) {
  m.def("head_logprobs(Tensor y, Tensor scale, Tensor x, Tensor integers, Tensor targets, int exact) -> Tensor",
        &head_logprobs);
}
