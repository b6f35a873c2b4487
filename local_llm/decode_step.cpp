// decode_step: the lean forward pass's layers for a decode step (one new token per row), in one call, built into
// the same library as kernels.cpp and attention.cpp, loaded by kernels.py; with the rotary embedding's operations
// (`rotary`, and `side_states` for the tool scoring's rows side by side).
//
// The Python loop (local_llm/llama.py) runs ~35 tensor operations a layer; at one row their fixed costs took as long
// as the products. This runs the same operations in the same order with the same kernels' pieces (q4mm's, rms_norm's
// and decode_attention's, from kernels.h), PyTorch's silu and, for Qwen3, its RMS norm, and the elementwise steps
// as plain float32 arithmetic that rounds as PyTorch's does: each product rounded before its sum (no fused
// multiply-add), float16 by rounding to nearest even. The logits and the cache are the Python loop's, bit for bit
// (tests/test_decode_step.py). The whole step is one parallel region: its threads meet at barriers between the
// parts rather than starting ~5 regions a layer (3.5 % more tokens/s at one row, 2026-12-06).
//
// Per layer, `weights` holds kPerLayer tensors (an empty tensor where a model has none): norm1, qkv (packed,
// scale_zero, bias), out (...), norm2, gate_up (...), down (...), qk_norm (Qwen3's [heads + kv_heads, dim]).
// keys and values: per layer the cache's buffers [rows, kv_heads, room, dim] (float16), `length` columns filled;
// the step writes column `length`. cos and sin [rows, dim] (sin with rotate_half's signs folded in).

#include <ATen/core/Tensor.h>
#include <ATen/Parallel.h>
#include <ATen/TensorIterator.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/rms_norm.h>
#include <ATen/ops/silu.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "kernels.h"

namespace {

constexpr int64_t kPerLayer = 15;

// x kept from being fused with the operation that uses it: PyTorch rounds each product before adding.
inline float opaque(float x) {
  asm("" : "+x"(x));
  return x;
}

// h += y, element by element.
void add_into(float* h, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] += y[i];
}

inline __m512 opaque(__m512 x) {
  asm("" : "+v"(x));
  return x;
}

// The rotary embedding of one head (dim floats from x): x cos + roll(x, dim / 2) sin, into out; 16 lanes at a time
// where half a head is whole vectors.
inline void rotate(const float* x, const float* cos, const float* sin, int64_t dim, float* out) {
  const int64_t half = dim / 2;
  if (half % 16 == 0) {
    for (int64_t j = 0; j < half; j += 16) {
      const __m512 a = _mm512_loadu_ps(x + j), b = _mm512_loadu_ps(x + j + half);
      const __m512 first = _mm512_add_ps(opaque(_mm512_mul_ps(a, _mm512_loadu_ps(cos + j))),
                                         opaque(_mm512_mul_ps(b, _mm512_loadu_ps(sin + j))));
      const __m512 second = _mm512_add_ps(opaque(_mm512_mul_ps(b, _mm512_loadu_ps(cos + j + half))),
                                          opaque(_mm512_mul_ps(a, _mm512_loadu_ps(sin + j + half))));
      _mm512_storeu_ps(out + j, first);
      _mm512_storeu_ps(out + j + half, second);
    }
    return;
  }
  for (int64_t j = 0; j < dim; ++j) {
    const float rolled = x[j < half ? j + half : j - half];  // roll by half: element j takes j + half (mod dim)
    out[j] = opaque(x[j] * cos[j]) + opaque(rolled * sin[j]);
  }
}

// rotary: the rotary embedding of every head of x [tokens, heads, dim] (float32, each head's floats contiguous)
// with cos and sin [tokens, dim], the bits of the lean pass's PyTorch operations (x cos + roll(x, dim / 2) sin, each
// product rounded), as one operation rather than four; [tokens, heads, dim], contiguous.
at::Tensor rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  TORCH_CHECK(x.dim() == 3 && x.scalar_type() == at::kFloat && x.stride(2) == 1 && x.size(2) % 2 == 0,
              "rotary: x must be float32 [tokens, heads, dim], dim even, each head's floats contiguous");
  const int64_t tokens = x.size(0), heads = x.size(1), dim = x.size(2);
  TORCH_CHECK(cos.is_contiguous() && sin.is_contiguous() && cos.scalar_type() == at::kFloat &&
                  sin.scalar_type() == at::kFloat && cos.dim() == 2 && cos.size(0) == tokens && cos.size(1) == dim &&
                  sin.sizes() == cos.sizes(),
              "rotary: cos and sin must be float32 [tokens, dim], contiguous");
  at::Tensor out = at::empty({tokens, heads, dim}, x.options());
  const float* xp = x.data_ptr<float>();
  const float* cp = cos.data_ptr<float>();
  const float* sp = sin.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int64_t ts = x.stride(0), hs = x.stride(1);
  at::parallel_for(0, tokens, 64, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t)
      for (int64_t i = 0; i < heads; ++i) rotate(xp + t * ts + i * hs, cp + t * dim, sp + t * dim, dim, op + (t * heads + i) * dim);
  });
  return out;
}

// side_states: the new tokens' queries, keys and values of rows read side by side (the tool scoring,
// batch.SideBySide), from a qkv product's output [tokens, (heads + 2 kv_heads) dim] (float32 or bfloat16) of the
// tokens at `slots` (row * n + column in a [rows, n] grid). Queries and keys are rotated as `rotary` rotates them;
// the keys and values go into the cache's buffers [rows, kv_heads, room, dim] (float32) at column `length` +
// column, zeros where a row has no token; the queries are returned, [rows, n, heads, dim] (zeros where none). The
// bits of the lean pass's conversion, rotary, spreading and cache update, in one call.
at::Tensor side_states(const at::Tensor& states, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& slots,
                       int64_t n, int64_t heads, at::Tensor keys, at::Tensor values, int64_t length) {
  TORCH_CHECK(keys.dim() == 4 && keys.scalar_type() == at::kFloat && keys.is_contiguous() &&
                  values.sizes() == keys.sizes() && values.scalar_type() == at::kFloat && values.is_contiguous(),
              "side_states: keys and values must be contiguous float32 [rows, kv_heads, room, dim]");
  const int64_t rows = keys.size(0), kv_heads = keys.size(1), room = keys.size(2), dim = keys.size(3);
  const int64_t width = (heads + 2 * kv_heads) * dim, tokens = states.size(0);
  TORCH_CHECK(states.dim() == 2 && states.size(1) == width && states.is_contiguous() &&
                  (states.scalar_type() == at::kFloat || states.scalar_type() == at::kBFloat16),
              "side_states: states must be contiguous float32 or bfloat16 [tokens, (heads + 2 kv_heads) dim]");
  TORCH_CHECK(length >= 0 && length + n <= room && dim % 2 == 0, "side_states: no room for n more columns");
  TORCH_CHECK(slots.scalar_type() == at::kLong && slots.is_contiguous() && slots.numel() == tokens,
              "side_states: slots must be int64 [tokens]");
  TORCH_CHECK(cos.is_contiguous() && sin.is_contiguous() && cos.scalar_type() == at::kFloat &&
                  sin.scalar_type() == at::kFloat && cos.dim() == 2 && cos.size(0) == tokens && cos.size(1) == dim &&
                  sin.sizes() == cos.sizes(),
              "side_states: cos and sin must be float32 [tokens, dim], contiguous");
  const int64_t* sp = slots.data_ptr<int64_t>();
  for (int64_t t = 0; t < tokens; ++t)
    TORCH_CHECK(sp[t] >= 0 && sp[t] < rows * n, "side_states: a slot outside the rows' grid");
  at::Tensor q = at::zeros({rows, n, heads, dim}, keys.options());
  float* qp = q.data_ptr<float>();
  float* kp = keys.data_ptr<float>();
  float* vp = values.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r)  // the new columns' zeros, where a row has no token
    for (int64_t c = 0; c < kv_heads; ++c) {
      const int64_t at = ((r * kv_heads + c) * room + length) * dim;
      std::fill(kp + at, kp + at + n * dim, 0.0f);
      std::fill(vp + at, vp + at + n * dim, 0.0f);
    }
  const float* cp = cos.data_ptr<float>();
  const float* np = sin.data_ptr<float>();
  at::parallel_for(0, tokens, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> row(width);
    for (int64_t t = begin; t < end; ++t) {
      if (states.scalar_type() == at::kFloat) {
        std::copy_n(states.data_ptr<float>() + t * width, width, row.data());
      } else {
        const auto* x = reinterpret_cast<const uint16_t*>(states.data_ptr<at::BFloat16>()) + t * width;
        for (int64_t j = 0; j < width; j += 16) {  // exactly, 16 at a time
          const __mmask16 in = autoqwen::lanes(width - j);
          _mm512_mask_storeu_ps(row.data() + j, in, autoqwen::bf16_bits_to_float(_mm256_maskz_loadu_epi16(in, x + j)));
        }
      }
      const int64_t r = sp[t] / n, column = sp[t] % n;
      for (int64_t i = 0; i < heads; ++i)
        rotate(row.data() + i * dim, cp + t * dim, np + t * dim, dim, qp + ((r * n + column) * heads + i) * dim);
      for (int64_t c = 0; c < kv_heads; ++c) {
        const int64_t at = ((r * kv_heads + c) * room + length + column) * dim;
        rotate(row.data() + (heads + c) * dim, cp + t * dim, np + t * dim, dim, kp + at);
        std::copy_n(row.data() + (heads + kv_heads + c) * dim, dim, vp + at);
      }
    }
  });
  return q;
}

inline void store_half(const float* x, int64_t dim, at::Half* out) {
  for (int64_t j = 0; j < dim; j += 16) {
    const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(x + j), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j), h);
  }
}

// One 4-bit product inside the step's parallel region, as local_llm.quantize's fused products compute it: its
// input (`rows` rows of k floats, rounded once by one thread), then its blocks of 32 columns shared among the
// threads (in shares that shrink as threads come free), then the bias (one thread). Every thread calls it.
struct Product {
  const at::Tensor* w;  // packed, scale_zero, bias (empty if none)
  int64_t k, n;

  Product(const at::Tensor* weights) : w(weights), k(weights[0].size(1) * 32), n(weights[0].size(0) * 32) {}

  void run(const float* x, int64_t rows, uint16_t* x16, float* sums, float* y) const {
#pragma omp single
    autoqwen::q4_round(x, rows, k, x16, sums);
    const uint8_t* wp = w[0].data_ptr<uint8_t>();
    const int16_t* szp = w[1].data_ptr<int16_t>();
#pragma omp for schedule(guided)
    for (int64_t b = 0; b < n / 32; ++b) autoqwen::q4_columns(x16, sums, rows, k, wp, szp, b, y, n);
    if (w[2].numel() == 0) return;
    const float* bp = w[2].data_ptr<float>();
#pragma omp single
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < n; ++j) y[r * n + j] += bp[j];
  }
};

at::Tensor decode_step(const at::Tensor& hidden, at::TensorList weights, at::TensorList keys, at::TensorList values,
                       int64_t length, const at::Tensor& cos, const at::Tensor& sin,
                       const std::optional<at::Tensor>& real, int64_t heads, int64_t kv_heads, double eps) {
  const int64_t layers = static_cast<int64_t>(keys.size()), rows = hidden.size(0), dim = cos.size(1);
  const int64_t width = hidden.size(1), states = heads + 2 * kv_heads, rotated = heads + kv_heads;
  TORCH_CHECK(hidden.dim() == 2 && hidden.scalar_type() == at::kFloat, "decode_step: hidden float32 [rows, width]");
  TORCH_CHECK(static_cast<int64_t>(weights.size()) == layers * kPerLayer && values.size() == keys.size() &&
                  layers > 0, "decode_step: ", kPerLayer, " weights and one key and value buffer per layer");
  TORCH_CHECK(cos.is_contiguous() && sin.is_contiguous() && cos.size(0) == rows && sin.sizes() == cos.sizes() &&
                  dim % 16 == 0 && dim >= 16 && dim <= 256 && heads > 0 && kv_heads > 0 && heads % kv_heads == 0 &&
                  heads / kv_heads <= 8 &&
                  cos.scalar_type() == at::kFloat && sin.scalar_type() == at::kFloat,
              "decode_step: cos and sin float32 [rows, dim], dim a multiple of 16 (at most 256)");
  TORCH_CHECK(!real.has_value() || (real->scalar_type() == at::kBool && real->is_contiguous() &&
                                    real->size(0) == rows && real->size(1) == length + 1),
              "decode_step: real must be bool [rows, length + 1]");
  int64_t inner = 0;
  for (int64_t l = 0; l < layers; ++l) {
    TORCH_CHECK(keys[l].scalar_type() == at::kHalf && values[l].scalar_type() == at::kHalf &&
                    keys[l].is_contiguous() && values[l].is_contiguous() && keys[l].size(0) == rows &&
                    keys[l].size(1) == kv_heads && keys[l].size(2) > length && keys[l].size(3) == dim &&
                    values[l].sizes() == keys[l].sizes(),
                "decode_step: layer ", l, "'s buffers must be float16 [rows, kv_heads, > length, dim]");
    const at::Tensor* w = weights.data() + l * kPerLayer;
    for (const int64_t at : {1, 4, 8, 11})
      TORCH_CHECK(w[at].scalar_type() == at::kByte && w[at].dim() == 4 && w[at].is_contiguous() &&
                      w[at].size(2) == 8 && w[at].size(3) == 64 && w[at + 1].scalar_type() == at::kShort &&
                      w[at + 1].is_contiguous() && w[at + 1].numel() == w[at].size(0) * w[at].size(1) * 64 &&
                      (w[at + 2].numel() == 0 || (w[at + 2].scalar_type() == at::kFloat &&
                                                  w[at + 2].is_contiguous() && w[at + 2].numel() == w[at].size(0) * 32)),
                  "decode_step: layer ", l, "'s 4-bit products as q4mm takes them");
    for (const int64_t at : {0, 7})
      TORCH_CHECK(w[at].scalar_type() == at::kFloat && w[at].is_contiguous() && w[at].numel() == width,
                  "decode_step: layer ", l, "'s norm weights float32 [width]");
    TORCH_CHECK(w[14].numel() == 0 || (w[14].scalar_type() == at::kFloat && w[14].numel() == rotated * dim),
                "decode_step: layer ", l, "'s q/k norm weight float32 [heads + kv_heads, dim] or empty");
    TORCH_CHECK(Product(w + 1).k == width && Product(w + 1).n == states * dim && Product(w + 4).k == heads * dim &&
                    Product(w + 4).n == width && Product(w + 8).k == width && Product(w + 11).n == width &&
                    Product(w + 8).n == 2 * Product(w + 11).k,
                "decode_step: layer ", l, "'s products' shapes");
    TORCH_CHECK(l == 0 || Product(w + 11).k == inner, "decode_step: every layer's MLP of one size");
    inner = Product(w + 11).k;
  }
  at::Tensor h = hidden.contiguous().clone();
  // Scratch for the whole step: the normalised input, its bfloat16 rounding and group sums, a product's output,
  // the queries, a token's keys, the attention's output, and the MLP's activations.
  const int64_t most = std::max({width, heads * dim, inner, states * dim, 2 * inner});
  at::Tensor xn = at::empty({rows, most}, h.options());
  at::Tensor x16 = at::empty({rows, most}, h.options().dtype(at::kShort));
  at::Tensor sums = at::empty({rows, most / 32 + 1}, h.options());
  at::Tensor y = at::empty({rows, most}, h.options());
  at::Tensor q = at::empty({rows, heads, dim}, h.options());
  at::Tensor k = at::empty({rows, kv_heads, dim}, h.options());
  at::Tensor attended = at::empty({rows, heads * dim}, h.options());
  float *hp = h.data_ptr<float>(), *xp = xn.data_ptr<float>(), *yp = y.data_ptr<float>();
  float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *ap = attended.data_ptr<float>();
  float* sp = sums.data_ptr<float>();
  uint16_t* x16p = reinterpret_cast<uint16_t*>(x16.data_ptr<int16_t>());
  const float* cp = cos.data_ptr<float>();
  const float* snp = sin.data_ptr<float>();
  const bool* mask = real.has_value() ? real->data_ptr<bool>() : nullptr;
  const float epsilon = static_cast<float>(eps);
  const int64_t group = heads / kv_heads;
  // The step's parts, run by every thread of a parallel region (their worksharing binds to it): the layer up to
  // gate and up, PyTorch's silu of the gate times up (by one thread, or by PyTorch outside the region), and down.
  const auto attend_and_gate_up = [&](int64_t l) {
    const at::Tensor* w = weights.data() + l * kPerLayer;
#pragma omp single
    autoqwen::rms_norm_rows(hp, rows, width, w[0].data_ptr<float>(), epsilon, xp);
    Product(w + 1).run(xp, rows, x16p, sp, yp);  // [rows, states * dim]
    at::Half* kb = keys[l].data_ptr<at::Half>();
    at::Half* vb = values[l].data_ptr<at::Half>();
    const int64_t room = keys[l].size(2);
#pragma omp single
    {
      const float* qkp = yp;  // the states the rotary embedding reads, `stride` floats a row
      int64_t stride = states * dim;
      at::Tensor normed;
      if (w[14].numel() != 0) {  // Qwen3: as Qwen3RMSNorm, PyTorch's norm in float32, then the weight
        const at::Tensor x = at::from_blob(yp, {rows, 1, states, dim}, h.options());
        normed = at::mul(at::rms_norm(x.narrow(2, 0, rotated), {dim}, std::nullopt, eps), w[14]).contiguous();
        qkp = normed.data_ptr<float>();
        stride = rotated * dim;
      }
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t i = 0; i < heads; ++i)
          rotate(qkp + r * stride + i * dim, cp + r * dim, snp + r * dim, dim, qp + (r * heads + i) * dim);
        for (int64_t c = 0; c < kv_heads; ++c) {
          const int64_t at = ((r * kv_heads + c) * room + length) * dim;
          float* kr = kp + (r * kv_heads + c) * dim;
          rotate(qkp + r * stride + (heads + c) * dim, cp + r * dim, snp + r * dim, dim, kr);
          store_half(kr, dim, kb + at);
          store_half(yp + r * states * dim + (rotated + c) * dim, dim, vb + at);
        }
      }
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < rows * kv_heads; ++item) {
      const int64_t r = item / kv_heads, c = item % kv_heads;
      const int64_t at = (r * kv_heads + c) * room * dim;
      autoqwen::attend_item(qp + (r * heads + c * group) * dim, dim, kb + at, dim, vb + at, dim,
                            mask ? mask + r * (length + 1) : nullptr, length + 1, group, dim,
                            ap + r * heads * dim + c * group * dim);
    }
    Product(w + 4).run(ap, rows, x16p, sp, yp);  // [rows, width]
#pragma omp single
    {
      add_into(hp, yp, rows * width);
      autoqwen::rms_norm_rows(hp, rows, width, w[7].data_ptr<float>(), epsilon, xp);
    }
    Product(w + 8).run(xp, rows, x16p, sp, yp);  // [rows, 2 * inner]: gate, up
  };
  const auto mix = [&]() {
    const at::Tensor gate = at::from_blob(yp, {rows, 2 * inner}, h.options()).narrow(1, 0, inner);
    const at::Tensor mixed = at::silu(gate);  // PyTorch's, for its exp's rounding
    const float* mp = mixed.data_ptr<float>();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < inner; ++j) xp[r * inner + j] = mp[r * inner + j] * yp[r * 2 * inner + inner + j];
  };
  const auto down = [&](int64_t l) {
    const at::Tensor* w = weights.data() + l * kPerLayer;
    Product(w + 11).run(xp, rows, x16p, sp, yp);  // [rows, width]
#pragma omp single
    add_into(hp, yp, rows * width);
  };
  const int threads = at::get_num_threads();
  if (rows * inner < at::internal::GRAIN_SIZE) {
    // One parallel region for the whole step: its threads meet at a barrier between the parts (a product's blocks,
    // the attention's heads, and the small parts one thread runs) instead of starting a region for each. PyTorch's
    // silu runs on one thread at this size too, so its bits are the same.
#pragma omp parallel num_threads(threads)
    for (int64_t l = 0; l < layers; ++l) {
      attend_and_gate_up(l);
#pragma omp single
      mix();
      down(l);
    }
  } else {
    // Larger: PyTorch would split silu among the threads, and the split decides which elements take its scalar
    // tail (1 ulp apart from its vector exp): it runs outside, as the Python loop runs it, between two regions.
    for (int64_t l = 0; l < layers; ++l) {
#pragma omp parallel num_threads(threads)
      attend_and_gate_up(l);
      mix();
#pragma omp parallel num_threads(threads)
      down(l);
    }
  }
  return h;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(autoqwen, m) {
  m.def(
      "decode_step(Tensor hidden, Tensor[] weights, Tensor[] keys, Tensor[] values, int length, Tensor cos, "
      "Tensor sin, Tensor? real, int heads, int kv_heads, float eps) -> Tensor",
      &decode_step);
  m.def("rotary(Tensor x, Tensor cos, Tensor sin) -> Tensor", &rotary);
  m.def(
      "side_states(Tensor states, Tensor cos, Tensor sin, Tensor slots, int n, int heads, Tensor(a!) keys, "
      "Tensor(b!) values, int length) -> Tensor",
      &side_states);
}
