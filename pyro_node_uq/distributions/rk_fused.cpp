// The fixed-step explicit Runge-Kutta solve of a tanh MLP field and its discrete adjoint, as plain loops over
// contiguous buffers (see rk_fused.py, which builds this file and calls it through ctypes).
//
// Layouts (all contiguous, row-major): states h (B, H, M); stage inputs x (K, S, B, D, M); per member b the
// first layer's input weights W_in (n1, D) and bias (n1), the layers' weights W_l (out, in) (the first acting on
// the state only) and the biases of the layers after the first (out).  The M columns share the member's weights;
// every inner loop runs over them, so that the compiler vectorises it.  Each member is an independent solve: the
// loops go over members outermost, keeping one member's weights and buffers in cache.
//
// No torch header is included (it would cost tens of seconds of compile); the Python side passes data pointers.
#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <vector>

#if defined(PYRO_NODE_UQ_SLEEF) && defined(__AVX__)
#include <immintrin.h>
// the vectorised tanh of the SLEEF library bundled (and exported) by libtorch_cpu, the one ATen's tanh uses
extern "C" __m256 Sleef_tanhf8_u10(__m256);
extern "C" __m256d Sleef_tanhd4_u10(__m256d);

static void tanh_inplace(float* p, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(p + i, Sleef_tanhf8_u10(_mm256_loadu_ps(p + i)));
  if (i < n) {
    float tmp[8] = {0};
    std::memcpy(tmp, p + i, (n - i) * sizeof(float));
    _mm256_storeu_ps(tmp, Sleef_tanhf8_u10(_mm256_loadu_ps(tmp)));
    std::memcpy(p + i, tmp, (n - i) * sizeof(float));
  }
}

static void tanh_inplace(double* p, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) _mm256_storeu_pd(p + i, Sleef_tanhd4_u10(_mm256_loadu_pd(p + i)));
  if (i < n) {
    double tmp[4] = {0};
    std::memcpy(tmp, p + i, (n - i) * sizeof(double));
    _mm256_storeu_pd(tmp, Sleef_tanhd4_u10(_mm256_loadu_pd(tmp)));
    std::memcpy(p + i, tmp, (n - i) * sizeof(double));
  }
}
#else
template <typename T>
static void tanh_inplace(T* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = std::tanh(p[i]);
}
#endif

namespace {

// out (o, M) = bias (o), each row
template <typename T>
inline void fill_rows(T* __restrict out, const T* __restrict bias, int64_t o, int64_t M) {
  for (int64_t r = 0; r < o; ++r)
    for (int64_t m = 0; m < M; ++m) out[r * M + m] = bias[r];
}

// out (o, M) += W (o, in) X (in, M)
template <typename T>
inline void gemm_acc(T* __restrict out, const T* __restrict W, const T* __restrict X, int64_t o, int64_t in,
                     int64_t M) {
  for (int64_t r = 0; r < o; ++r) {
    T* orow = out + r * M;
    for (int64_t c = 0; c < in; ++c) {
      const T w = W[r * in + c];
      const T* x = X + c * M;
      for (int64_t m = 0; m < M; ++m) orow[m] += w * x[m];
    }
  }
}

// out (in, M) = W (o, in)^T G (o, M)
template <typename T>
inline void gemm_t(T* __restrict out, const T* __restrict W, const T* __restrict G, int64_t o, int64_t in,
                   int64_t M) {
  std::memset(out, 0, sizeof(T) * in * M);
  for (int64_t r = 0; r < o; ++r) {
    const T* g = G + r * M;
    for (int64_t c = 0; c < in; ++c) {
      const T w = W[r * in + c];
      T* orow = out + c * M;
      for (int64_t m = 0; m < M; ++m) orow[m] += w * g[m];
    }
  }
}

// per-column partial sums of a weight gradient: P (o, in, M) += G (o, M) * X (in, M), column by column (the sum
// over the columns is taken once at the end, so that every loop here is elementwise)
template <typename T>
inline void outer_acc(T* __restrict P, const T* __restrict G, const T* __restrict X, int64_t o, int64_t in,
                      int64_t M) {
  for (int64_t r = 0; r < o; ++r) {
    const T* g = G + r * M;
    for (int64_t c = 0; c < in; ++c) {
      T* p = P + (r * in + c) * M;
      const T* x = X + c * M;
      for (int64_t m = 0; m < M; ++m) p[m] += g[m] * x[m];
    }
  }
}

// out (n) = sum over the M columns of P (n, M)
template <typename T>
inline void column_sums(T* __restrict out, const T* __restrict P, int64_t n, int64_t M) {
  for (int64_t r = 0; r < n; ++r) {
    T s = 0;
    for (int64_t m = 0; m < M; ++m) s += P[r * M + m];
    out[r] = s;
  }
}

template <typename T>
inline void axpy(T* __restrict y, T alpha, const T* __restrict x, int64_t n) {
  for (int64_t m = 0; m < n; ++m) y[m] += alpha * x[m];
}

// The shapes of one solve; sizes[l], sizes[l + 1] are layer l's (in, out) widths, sizes[0] = sizes[L + 1] = H.
struct Problem {
  int64_t B, H, M, D, K, S, L;  // L: hidden (tanh) layers; the layers are 0..L
  const int64_t* sizes;
  const double* dts;  // (K)
  const double* a;    // (S, S), row i's first i entries used
  const double* b;    // (S)
};

// The forward solve of member `m0`: states into `states` (K + 1, B, H, M); with `save` the stage inputs
// (K, S, H, M) and the hidden activations (K, S, n_l, M) of this member.
template <typename T>
void forward_member(const Problem& p, int64_t mb, const T* h0, const T* x, const T* w_in, const T* b_in,
                    const T* const* weights, const T* const* biases, T* states, T* Ysave, T* const* acts) {
  const int64_t B = p.B, H = p.H, M = p.M, D = p.D, S = p.S, L = p.L;
  const int64_t HM = H * M, n1 = p.sizes[1];
  const bool save = Ysave != nullptr;
  const T* Wi = w_in + mb * n1 * D;
  const T* bi = b_in + mb * n1;
  std::vector<const T*> W(L + 1), bias(L + 1);
  for (int64_t l = 0; l <= L; ++l) W[l] = weights[l] + mb * p.sizes[l] * p.sizes[l + 1];
  for (int64_t l = 1; l <= L; ++l) bias[l] = biases[l - 1] + mb * p.sizes[l + 1];
  int64_t widest = 0;
  for (int64_t l = 1; l <= L; ++l) widest = std::max(widest, p.sizes[l]);
  std::vector<T> h(h0 + mb * HM, h0 + (mb + 1) * HM), kbuf(S * HM), ybuf(save ? 0 : HM),
      zbuf(save ? 0 : 2 * widest * M);
  std::memcpy(states + mb * HM, h.data(), sizeof(T) * HM);
  for (int64_t k = 0; k < p.K; ++k) {
    const T dt = static_cast<T>(p.dts[k]);
    for (int64_t i = 0; i < S; ++i) {
      const int64_t idx = k * S + i;
      T* Y = save ? Ysave + idx * HM : ybuf.data();
      std::memcpy(Y, h.data(), sizeof(T) * HM);
      for (int64_t j = 0; j < i; ++j)
        if (p.a[i * S + j] != 0.0) axpy(Y, static_cast<T>(dt * p.a[i * S + j]), kbuf.data() + j * HM, HM);
      T* ki = kbuf.data() + i * HM;
      T* z = L == 0 ? ki : (save ? acts[0] + idx * n1 * M : zbuf.data());
      fill_rows(z, bi, n1, M);
      if (x != nullptr) gemm_acc(z, Wi, x + (idx * B + mb) * D * M, n1, D, M);
      gemm_acc(z, W[0], Y, n1, H, M);
      if (L == 0) continue;
      tanh_inplace(z, n1 * M);
      for (int64_t l = 1; l < L; ++l) {
        const int64_t o = p.sizes[l + 1];
        T* zn = save ? acts[l] + idx * o * M : zbuf.data() + (l % 2) * widest * M;
        fill_rows(zn, bias[l], o, M);
        gemm_acc(zn, W[l], z, o, p.sizes[l], M);
        tanh_inplace(zn, o * M);
        z = zn;
      }
      fill_rows(ki, bias[L], H, M);
      gemm_acc(ki, W[L], z, H, p.sizes[L], M);
    }
    for (int64_t i = 0; i < S; ++i)
      if (p.b[i] != 0.0) axpy(h.data(), static_cast<T>(dt * p.b[i]), kbuf.data() + i * HM, HM);
    std::memcpy(states + ((k + 1) * B + mb) * HM, h.data(), sizeof(T) * HM);
  }
}

// The discrete adjoint of member `mb` (see rk_backprop.py): from the gradients of every state `gs`
// (K + 1, B, H, M) back to the initial state (grad_h), the weights and biases (grad_w, grad_b: this member's
// blocks of (B, out, in) and (B, out)), the first layer's input weights and bias, and when `grad_x` is given the
// stage inputs (K, S, B, D, M).
template <typename T>
void backward_member(const Problem& p, int64_t mb, const T* gs, const T* x, const T* w_in,
                     const T* const* weights, const T* Ysave, const T* const* acts, T* grad_h, T* grad_w_in,
                     T* grad_b_in, T* const* grad_w, T* const* grad_b, T* grad_x) {
  const int64_t B = p.B, H = p.H, M = p.M, D = p.D, S = p.S, L = p.L;
  const int64_t HM = H * M, n1 = p.sizes[1];
  const T* Wi = w_in + mb * n1 * D;
  std::vector<const T*> W(L + 1);
  for (int64_t l = 0; l <= L; ++l) W[l] = weights[l] + mb * p.sizes[l] * p.sizes[l + 1];
  // per-column partial sums of the gradients: weights (out, in, M) and biases (out, M) per layer, W_in, b_in
  std::vector<std::vector<T>> PW(L + 1), Pb(L + 1);
  for (int64_t l = 0; l <= L; ++l) {
    PW[l].assign(p.sizes[l] * p.sizes[l + 1] * M, T(0));
    Pb[l].assign(p.sizes[l + 1] * M, T(0));  // Pb[0]: the first layer's bias b_in
  }
  std::vector<T> PWi(x != nullptr ? n1 * D * M : 0, T(0));
  int64_t widest = 0;
  for (int64_t l = 1; l <= L; ++l) widest = std::max(widest, p.sizes[l]);
  std::vector<T> lam(HM, T(0)), gk(S * HM), gY(HM), ga(2 * widest * M);
  for (int64_t k = p.K - 1; k >= 0; --k) {
    const T dt = static_cast<T>(p.dts[k]);
    axpy(lam.data(), T(1), gs + ((k + 1) * B + mb) * HM, HM);  // the gradient of the state after step k
    for (int64_t i = 0; i < S; ++i)
      for (int64_t m = 0; m < HM; ++m) gk[i * HM + m] = static_cast<T>(dt * p.b[i]) * lam[m];
    for (int64_t i = S - 1; i >= 0; --i) {
      const int64_t idx = k * S + i;
      T* g = gk.data() + i * HM;  // the gradient of the stage value k_i, then of each layer's pre-activation
      for (int64_t l = L; l >= 1; --l) {  // back through layer l: out = W_l act_{l-1} + b_l
        const int64_t o = p.sizes[l + 1], in = p.sizes[l];
        const T* act = acts[l - 1] + idx * in * M;
        axpy(Pb[l].data(), T(1), g, o * M);
        outer_acc(PW[l].data(), g, act, o, in, M);
        T* gn = ga.data() + (l % 2) * widest * M;
        gemm_t(gn, W[l], g, o, in, M);
        for (int64_t m = 0; m < in * M; ++m) gn[m] *= T(1) - act[m] * act[m];  // tanh'
        g = gn;
      }
      // the first layer: z = W_0 Y_i + W_in x + b_in
      axpy(Pb[0].data(), T(1), g, n1 * M);
      outer_acc(PW[0].data(), g, Ysave + idx * HM, n1, H, M);
      if (x != nullptr) {
        const T* xi = x + (idx * B + mb) * D * M;
        outer_acc(PWi.data(), g, xi, n1, D, M);
        if (grad_x != nullptr) gemm_t(grad_x + (idx * B + mb) * D * M, Wi, g, n1, D, M);
      }
      gemm_t(gY.data(), W[0], g, n1, H, M);
      axpy(lam.data(), T(1), gY.data(), HM);
      for (int64_t j = 0; j < i; ++j)
        if (p.a[i * S + j] != 0.0) axpy(gk.data() + j * HM, static_cast<T>(dt * p.a[i * S + j]), gY.data(), HM);
    }
  }
  for (int64_t m = 0; m < HM; ++m) grad_h[mb * HM + m] = lam[m] + gs[mb * HM + m];
  for (int64_t l = 0; l <= L; ++l) {
    const int64_t o = p.sizes[l + 1], in = p.sizes[l];
    column_sums(grad_w[l] + mb * o * in, PW[l].data(), o * in, M);
    column_sums(l == 0 ? grad_b_in + mb * n1 : grad_b[l - 1] + mb * o, Pb[l].data(), o, M);
  }
  if (x != nullptr) column_sums(grad_w_in + mb * n1 * D, PWi.data(), n1 * D, M);
}

template <typename T>
void forward_all(const Problem& p, const void* h0, const void* x, const void* w_in, const void* b_in,
                 const void* const* weights, const void* const* biases, void* states, void* Ysave,
                 void* const* acts) {
  const int64_t L = p.L, KS = p.K * p.S;
  std::vector<T*> a(L);
  for (int64_t mb = 0; mb < p.B; ++mb) {
    for (int64_t l = 0; l < L; ++l)
      a[l] = Ysave ? static_cast<T*>(acts[l]) + mb * KS * p.sizes[l + 1] * p.M : nullptr;
    forward_member<T>(p, mb, static_cast<const T*>(h0), static_cast<const T*>(x), static_cast<const T*>(w_in),
                      static_cast<const T*>(b_in), reinterpret_cast<const T* const*>(weights),
                      reinterpret_cast<const T* const*>(biases), static_cast<T*>(states),
                      Ysave ? static_cast<T*>(Ysave) + mb * KS * p.H * p.M : nullptr, a.data());
  }
}

template <typename T>
void backward_all(const Problem& p, const void* gs, const void* x, const void* w_in, const void* const* weights,
                  const void* Ysave, const void* const* acts, void* grad_h, void* grad_w_in, void* grad_b_in,
                  void* const* grad_w, void* const* grad_b, void* grad_x) {
  const int64_t L = p.L, KS = p.K * p.S;
  std::vector<const T*> a(L);
  for (int64_t mb = 0; mb < p.B; ++mb) {
    for (int64_t l = 0; l < L; ++l) a[l] = static_cast<const T*>(acts[l]) + mb * KS * p.sizes[l + 1] * p.M;
    backward_member<T>(p, mb, static_cast<const T*>(gs), static_cast<const T*>(x), static_cast<const T*>(w_in),
                       reinterpret_cast<const T* const*>(weights),
                       static_cast<const T*>(Ysave) + mb * KS * p.H * p.M, a.data(), static_cast<T*>(grad_h),
                       static_cast<T*>(grad_w_in), static_cast<T*>(grad_b_in), reinterpret_cast<T* const*>(grad_w),
                       reinterpret_cast<T* const*>(grad_b), static_cast<T*>(grad_x));
  }
}

}  // namespace

extern "C" {

// dims: B, H, M, D, K, S, L; sizes: L + 2 layer widths; double_precision: 1 for float64, 0 for float32.
// Ysave and acts null: no saving (a solve without gradient).
void pnu_rk_forward(int double_precision, const int64_t* dims, const int64_t* sizes, const double* dts,
                    const double* a, const double* b, const void* h0, const void* x, const void* w_in,
                    const void* b_in, const void* const* weights, const void* const* biases, void* states,
                    void* Ysave, void* const* acts) {
  const Problem p{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], sizes, dts, a, b};
  if (double_precision)
    forward_all<double>(p, h0, x, w_in, b_in, weights, biases, states, Ysave, acts);
  else
    forward_all<float>(p, h0, x, w_in, b_in, weights, biases, states, Ysave, acts);
}

void pnu_rk_backward(int double_precision, const int64_t* dims, const int64_t* sizes, const double* dts,
                     const double* a, const double* b, const void* gs, const void* x, const void* w_in,
                     const void* const* weights, const void* Ysave, const void* const* acts, void* grad_h,
                     void* grad_w_in, void* grad_b_in, void* const* grad_w, void* const* grad_b, void* grad_x) {
  const Problem p{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], sizes, dts, a, b};
  if (double_precision)
    backward_all<double>(p, gs, x, w_in, weights, Ysave, acts, grad_h, grad_w_in, grad_b_in, grad_w, grad_b,
                         grad_x);
  else
    backward_all<float>(p, gs, x, w_in, weights, Ysave, acts, grad_h, grad_w_in, grad_b_in, grad_w, grad_b,
                        grad_x);
}

}  // extern "C"
