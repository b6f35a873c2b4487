// decode_step: the lean forward pass's layers for a decode step (one new token per row), in one call, built into
// the same library as kernels.cpp and attention.cpp, loaded by kernels.py.
//
// The Python loop (local_llm/llama.py) runs ~35 tensor operations a layer; at one row their fixed costs took as long
// as the products. This runs the same operations in the same order with the same kernels (q4mm, rms_norm and
// decode_attention through the dispatcher, PyTorch's silu and, for Qwen3, its RMS norm), and the elementwise steps
// as plain float32 arithmetic that rounds as PyTorch's does: each product rounded before its sum (no fused
// multiply-add), float16 by rounding to nearest even. The logits and the cache are the Python loop's, bit for bit
// (tests/test_decode_step.py).
//
// Per layer, `weights` holds kPerLayer tensors (an empty tensor where a model has none): norm1, qkv (packed,
// scale_zero, bias), out (...), norm2, gate_up (...), down (...), qk_norm (Qwen3's [heads + kv_heads, dim]).
// keys and values: per layer the cache's buffers [rows, kv_heads, room, dim] (float16), `length` columns filled;
// the step writes column `length`. cos and sin [rows, dim] (sin with rotate_half's signs folded in).

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/rms_norm.h>
#include <ATen/ops/silu.h>
#include <torch/library.h>

#include <immintrin.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace {

constexpr int64_t kPerLayer = 15;

using Product = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&);
using Norm = at::Tensor(const at::Tensor&, const at::Tensor&, double);
using Attention = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&);

template <typename Signature>
c10::TypedOperatorHandle<Signature> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

// x kept from being fused with the operation that uses it: PyTorch rounds each product before adding.
inline float opaque(float x) {
  asm("" : "+x"(x));
  return x;
}

// The 4-bit product x W^T (+ bias), as local_llm.quantize's fused products compute it.
at::Tensor product(const c10::TypedOperatorHandle<Product>& q4mm, const at::Tensor& x, const at::Tensor* w) {
  at::Tensor y = q4mm.call(x, w[0], w[1]);
  if (w[2].numel() == 0) return y;
  const int64_t rows = y.size(0), n = y.size(1);
  float* yp = y.data_ptr<float>();
  const float* bp = w[2].data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) yp[r * n + j] += bp[j];
  return y;
}

// h += y, element by element (both [rows, width], contiguous).
void add_into(at::Tensor& h, const at::Tensor& y) {
  float* hp = h.data_ptr<float>();
  const float* yp = y.data_ptr<float>();
  for (int64_t i = 0, n = h.numel(); i < n; ++i) hp[i] += yp[i];
}

// The rotary embedding of one head (dim floats from x): x cos + roll(x, dim / 2) sin, into out.
inline void rotate(const float* x, const float* cos, const float* sin, int64_t dim, float* out) {
  const int64_t half = dim / 2;
  for (int64_t j = 0; j < dim; ++j) {
    const float rolled = x[j < half ? j + half : j - half];  // roll by half: element j takes j + half (mod dim)
    out[j] = opaque(x[j] * cos[j]) + opaque(rolled * sin[j]);
  }
}

inline void store_half(const float* x, int64_t dim, at::Half* out) {
  for (int64_t j = 0; j < dim; j += 16) {
    const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(x + j), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j), h);
  }
}

at::Tensor decode_step(const at::Tensor& hidden, at::TensorList weights, at::TensorList keys, at::TensorList values,
                       int64_t length, const at::Tensor& cos, const at::Tensor& sin,
                       const std::optional<at::Tensor>& real, int64_t heads, int64_t kv_heads, double eps) {
  static const auto q4mm = op<Product>("autoqwen::q4mm");
  static const auto rms_norm = op<Norm>("autoqwen::rms_norm");
  static const auto attention = op<Attention>("autoqwen::decode_attention");
  const int64_t layers = static_cast<int64_t>(keys.size()), rows = hidden.size(0), dim = cos.size(1);
  const int64_t states = heads + 2 * kv_heads, rotated = heads + kv_heads;
  TORCH_CHECK(hidden.dim() == 2 && hidden.scalar_type() == at::kFloat, "decode_step: hidden float32 [rows, width]");
  TORCH_CHECK(static_cast<int64_t>(weights.size()) == layers * kPerLayer && values.size() == keys.size(),
              "decode_step: ", kPerLayer, " weights and one key and value buffer per layer");
  TORCH_CHECK(cos.is_contiguous() && sin.is_contiguous() && cos.size(0) == rows && sin.sizes() == cos.sizes() &&
                  dim % 16 == 0 && cos.scalar_type() == at::kFloat && sin.scalar_type() == at::kFloat,
              "decode_step: cos and sin float32 [rows, dim], dim a multiple of 16");
  for (int64_t l = 0; l < layers; ++l)
    TORCH_CHECK(keys[l].scalar_type() == at::kHalf && values[l].scalar_type() == at::kHalf &&
                    keys[l].is_contiguous() && values[l].is_contiguous() && keys[l].size(0) == rows &&
                    keys[l].size(1) == kv_heads && keys[l].size(2) > length && keys[l].size(3) == dim &&
                    values[l].sizes() == keys[l].sizes(),
                "decode_step: layer ", l, "'s buffers must be float16 [rows, kv_heads, > length, dim]");
  at::Tensor h = hidden.contiguous().clone();
  at::Tensor q = at::empty({rows, heads, 1, dim}, h.options());
  at::Tensor k = at::empty({rows, kv_heads, dim}, h.options());
  const float* cp = cos.data_ptr<float>();
  const float* sp = sin.data_ptr<float>();
  float* qp = q.data_ptr<float>();
  float* kp = k.data_ptr<float>();
  for (int64_t l = 0; l < layers; ++l) {
    const at::Tensor* w = weights.data() + l * kPerLayer;
    at::Tensor x = product(q4mm, rms_norm.call(h, w[0], eps), w + 1);  // [rows, states * dim]
    at::Tensor qk = x;  // the states the rotary embedding reads, `stride` floats a row
    int64_t stride = states * dim;
    if (w[14].numel() != 0) {  // Qwen3: as Qwen3RMSNorm, PyTorch's norm in float32, then the weight
      qk = at::mul(at::rms_norm(x.view({rows, 1, states, dim}).narrow(2, 0, rotated), {dim}, std::nullopt, eps), w[14]);
      stride = rotated * dim;
    }
    const float* qkp = qk.data_ptr<float>();
    const float* xp = x.data_ptr<float>();
    at::Half* kb = keys[l].data_ptr<at::Half>();
    at::Half* vb = values[l].data_ptr<at::Half>();
    const int64_t room = keys[l].size(2);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < heads; ++i)
        rotate(qkp + r * stride + i * dim, cp + r * dim, sp + r * dim, dim, qp + (r * heads + i) * dim);
      for (int64_t c = 0; c < kv_heads; ++c) {
        const int64_t at = ((r * kv_heads + c) * room + length) * dim;
        float* kr = kp + (r * kv_heads + c) * dim;
        rotate(qkp + r * stride + (heads + c) * dim, cp + r * dim, sp + r * dim, dim, kr);
        store_half(kr, dim, kb + at);
        store_half(xp + r * states * dim + (rotated + c) * dim, dim, vb + at);
      }
    }
    const at::Tensor attended =
        attention.call(q, keys[l].narrow(2, 0, length + 1), values[l].narrow(2, 0, length + 1), real);
    add_into(h, product(q4mm, attended, w + 4));
    const at::Tensor gate_up = product(q4mm, rms_norm.call(h, w[7], eps), w + 8);
    const int64_t inner = gate_up.size(1) / 2;
    at::Tensor mixed = at::silu(gate_up.narrow(1, 0, inner));  // PyTorch's, for its exp's rounding
    float* mp = mixed.data_ptr<float>();
    const float* up = gate_up.data_ptr<float>() + inner;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < inner; ++j) mp[r * inner + j] *= up[r * 2 * inner + j];
    add_into(h, product(q4mm, mixed, w + 11));
  }
  return h;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(autoqwen, m) {
  m.def(
      "decode_step(Tensor hidden, Tensor[] weights, Tensor[] keys, Tensor[] values, int length, Tensor cos, "
      "Tensor sin, Tensor? real, int heads, int kv_heads, float eps) -> Tensor",
      &decode_step);
}
