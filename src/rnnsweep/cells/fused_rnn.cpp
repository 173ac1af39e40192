// Per-step loops of rnnsweep's fused CPU GRU and tanh RNN (see fast_gru.py for the math):
// one GEMM a step through ATen and one vectorised pass over the step's gates, where the
// Python loop dispatches 5 ops forward and 3 backward, a few microseconds each.
#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <torch/library.h>

#include <cstdint>
#include <vector>

namespace {

// exp for float, branch-free so that the compiler vectorises the loops that call it
// (Cephes' expf: range reduction by ln 2 split in two, degree-6 polynomial, 2^n from the
// exponent bits); relative error ~1e-7 on [-87, 88], inputs clamped to that range.
inline float exp_f(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  return p * __builtin_bit_cast(float, bits);
}
inline float sigmoid_f(float x) { return 1.0f / (1.0f + exp_f(-x)); }
// 1 - 2 / (e^{2x} + 1): absolute error ~1e-7 near 0, exact limits +-1.
inline float tanh_f(float x) { return 1.0f - 2.0f / (exp_f(2.0f * x) + 1.0f); }

// One step's gates from its pre-activations s_t = [r | z | W_hn h + b_hn] (B, 3H) and
// n_t = W_in x + b_in (B, H): r and z overwrite their pre-activations, the candidate
// overwrites n_t, h_t goes to h.
void gru_step_forward(float* __restrict s, float* __restrict n, float* __restrict h,
                      const float* __restrict h_prev, int64_t B, int64_t H) {
  for (int64_t b = 0; b < B; ++b, s += 3 * H, n += H, h += H, h_prev += H) {
    for (int64_t j = 0; j < H; ++j) {
      const float r = sigmoid_f(s[j]), z = sigmoid_f(s[H + j]);
      const float c = tanh_f(n[j] + r * s[2 * H + j]);
      s[j] = r;
      s[H + j] = z;
      n[j] = c;
      h[j] = c + z * (h_prev[j] - c);
    }
  }
}

// One step backward: from dh_t and the forward's values, the gradients at the step's
// pre-activations d = [W_hn h + b_hn | r | z | W_in x + b_in] (B, 4H), and dh_{t-1}'s
// part that needs no matmul: g_{t-1} + dh_t z.
void gru_step_backward(const float* __restrict s, const float* __restrict n,
                       const float* __restrict h_prev, const float* __restrict dh,
                       const float* __restrict g_prev, float* __restrict d,
                       float* __restrict dh_prev, int64_t B, int64_t H) {
  for (int64_t b = 0; b < B; ++b, s += 3 * H, n += H, h_prev += H, dh += H, g_prev += H,
       d += 4 * H, dh_prev += H) {
    for (int64_t j = 0; j < H; ++j) {
      const float r = s[j], z = s[H + j], c = n[j], dhj = dh[j];
      const float di = dhj * (1.0f - z) * (1.0f - c * c);
      d[j] = di * r;
      d[H + j] = di * s[2 * H + j] * r * (1.0f - r);
      d[2 * H + j] = dhj * (h_prev[j] - c) * z * (1.0f - z);
      d[3 * H + j] = di;
      dh_prev[j] = g_prev[j] + dhj * z;
    }
  }
}

// tanh RNN: h_t = tanh(pre_t) in place.
void tanh_step(float* __restrict h, int64_t n) {
  for (int64_t j = 0; j < n; ++j) h[j] = tanh_f(h[j]);
}

// tanh RNN backward: d_t = dh_t (1 - h_t^2) in place of h_t's coefficient; dh_t in d.
void tanh_step_backward(const float* __restrict h, float* __restrict d, int64_t n) {
  for (int64_t j = 0; j < n; ++j) d[j] *= 1.0f - h[j] * h[j];
}

void check(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat && t.is_contiguous() && t.device().is_cpu(),
              name, " must be a contiguous float32 CPU tensor");
}

}  // namespace

// s (T, B, 3H): r and z pre-activations' input side (both biases) | b_hn; becomes r | z |
// W_hn h + b_hn. n (T, B, H): W_in x + b_in, becomes the candidate. out (T, B, H): h_t.
// w_hh_t: W_hh^T (H, 3H), any strides.
void gru_forward(at::Tensor s, at::Tensor n, at::Tensor out, const at::Tensor& w_hh_t) {
  check(s, "s"); check(n, "n"); check(out, "out");
  at::AutoDispatchBelowADInplaceOrView guard;  // buffers only: autograd records nothing here
  const int64_t T = s.size(0), B = s.size(1), H = out.size(2), BH = B * H;
  float* sp = s.data_ptr<float>();
  float* np = n.data_ptr<float>();
  float* op = out.data_ptr<float>();
  std::vector<float> zeros(BH, 0.0f);
  for (int64_t t = 0; t < T; ++t) {
    const float* hp = zeros.data();
    if (t) {
      at::Tensor s_t = s.select(0, t);
      at::addmm_out(s_t, s_t, out.select(0, t - 1), w_hh_t);
      hp = op + (t - 1) * BH;
    }
    float* st = sp + t * B * 3 * H;
    float* nt = np + t * BH;
    float* ht = op + t * BH;
    gru_step_forward(st, nt, ht, hp, B, H);
  }
}

// From gru_forward's s, n, out and the outputs' gradient g (T, B, H), fills d (T, B, 4H)
// with the gradients at [W_hn h + b_hn | r | z | W_in x + b_in] pre-activations.
// w_hh_perm: W_hh's rows as (n, r, z), (3H, H).
void gru_backward(const at::Tensor& s, const at::Tensor& n, const at::Tensor& out,
                  const at::Tensor& g, at::Tensor d, const at::Tensor& w_hh_perm) {
  check(s, "s"); check(n, "n"); check(out, "out"); check(g, "grad"); check(d, "d");
  at::AutoDispatchBelowADInplaceOrView guard;  // buffers only: autograd records nothing here
  const int64_t T = s.size(0), B = s.size(1), H = out.size(2), BH = B * H;
  const float* sp = s.data_ptr<float>();
  const float* np = n.data_ptr<float>();
  const float* op = out.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  float* dp = d.data_ptr<float>();
  at::Tensor dh_cur = at::empty({B, H}, out.options());
  at::Tensor dh_prev = at::empty({B, H}, out.options());
  std::vector<float> zeros(BH, 0.0f);
  std::copy(gp + (T - 1) * BH, gp + T * BH, dh_cur.data_ptr<float>());
  for (int64_t t = T - 1; t >= 0; --t) {
    const float* hp = t ? op + (t - 1) * BH : zeros.data();
    const float* gprev = t ? gp + (t - 1) * BH : zeros.data();
    const float* dh = dh_cur.data_ptr<float>();
    float* dhp = dh_prev.data_ptr<float>();
    gru_step_backward(sp + t * B * 3 * H, np + t * BH, hp, dh, gprev, dp + t * B * 4 * H, dhp, B, H);
    if (t) {
      at::Tensor d_hh = d.select(0, t).narrow(1, 0, 3 * H);
      at::addmm_out(dh_prev, dh_prev, d_hh, w_hh_perm);
      std::swap(dh_cur, dh_prev);
    }
  }
}

// out (T, B, H): the input side W_ih x + b_ih + b_hh for every step; becomes h_t.
// w_hh_t: W_hh^T (H, H), any strides.
void rnn_tanh_forward(at::Tensor out, const at::Tensor& w_hh_t) {
  check(out, "out");
  at::AutoDispatchBelowADInplaceOrView guard;  // buffers only: autograd records nothing here
  const int64_t T = out.size(0), BH = out.size(1) * out.size(2);
  float* op = out.data_ptr<float>();
  for (int64_t t = 0; t < T; ++t) {
    if (t) {
      at::Tensor o_t = out.select(0, t);
      at::addmm_out(o_t, o_t, out.select(0, t - 1), w_hh_t);
    }
    tanh_step(op + t * BH, BH);
  }
}

// From the outputs h (T, B, H) and their gradient g: d (T, B, H), the gradient at every
// step's pre-activation. w_hh: (H, H).
void rnn_tanh_backward(const at::Tensor& out, const at::Tensor& g, at::Tensor d,
                       const at::Tensor& w_hh) {
  check(out, "out"); check(g, "grad"); check(d, "d");
  at::AutoDispatchBelowADInplaceOrView guard;
  const int64_t T = out.size(0), BH = out.size(1) * out.size(2);
  const float* op = out.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  float* dp = d.data_ptr<float>();
  std::copy(gp + (T - 1) * BH, gp + T * BH, dp + (T - 1) * BH);
  for (int64_t t = T - 1; t >= 0; --t) {
    tanh_step_backward(op + t * BH, dp + t * BH, BH);
    if (t) {  // dh_{t-1} = g_{t-1} + d_t W_hh, written where d_{t-1} is computed next
      at::Tensor d_prev = d.select(0, t - 1);
      std::copy(gp + (t - 1) * BH, gp + t * BH, dp + (t - 1) * BH);
      at::addmm_out(d_prev, d_prev, d.select(0, t), w_hh);
    }
  }
}

TORCH_LIBRARY(rnnsweep_native, m) {
  m.def("gru_forward(Tensor(a!) s, Tensor(b!) n, Tensor(c!) out, Tensor w_hh_t) -> ()",
        gru_forward);
  m.def("gru_backward(Tensor s, Tensor n, Tensor out, Tensor grad, Tensor(a!) d, "
        "Tensor w_hh_perm) -> ()", gru_backward);
  m.def("rnn_tanh_forward(Tensor(a!) out, Tensor w_hh_t) -> ()", rnn_tanh_forward);
  m.def("rnn_tanh_backward(Tensor out, Tensor grad, Tensor(a!) d, Tensor w_hh) -> ()",
        rnn_tanh_backward);
}
