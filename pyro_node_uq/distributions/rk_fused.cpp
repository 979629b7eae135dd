// The fixed-step explicit Runge-Kutta solve of a tanh MLP field and its discrete adjoint, as plain loops over
// contiguous buffers (see rk_fused.py, which builds this file and calls it through ctypes).
//
// Layouts (all contiguous, row-major): states h (B, H, M); stage inputs x (K, S, B, D, M); per member b the
// first layer's input weights W_in (n1, D) and bias (n1), the layers' weights W_l (out, in) (the first acting on
// the state only) and the biases of the layers after the first (out).  The M columns share the member's weights;
// each member's columns are solved in blocks of V columns (V a compile-time width, the last block padded), so
// that every inner loop is a fixed-size loop over a block's columns that the compiler turns into a few vector
// instructions.  Each member and block is an independent solve: one member's weights and one block's buffers stay
// in cache.
//
// No torch header is included (it would cost tens of seconds of compile); the Python side passes data pointers.
#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#if defined(PYRO_NODE_UQ_SLEEF) && (defined(__AVX512F__) || defined(__AVX__))
#include <immintrin.h>
// the vectorised tanh of the SLEEF library bundled (and exported) by libtorch_cpu (ATen's own tanh), in its
// 3.5-ulp accuracy class: more than twice as fast as the 1-ulp one, and far below the solve's rounding
#if defined(__AVX512F__)
typedef __m512 pnu_vf;
typedef __m512d pnu_vd;
#define PNU_TANH_F Sleef_tanhf16_u35
#define PNU_TANH_D Sleef_tanhd8_u35
#define PNU_MM(op) _mm512_##op
#else
typedef __m256 pnu_vf;
typedef __m256d pnu_vd;
#define PNU_TANH_F Sleef_tanhf8_u35
#define PNU_TANH_D Sleef_tanhd4_u35
#define PNU_MM(op) _mm256_##op
#endif
constexpr int kFloats = sizeof(pnu_vf) / sizeof(float), kDoubles = sizeof(pnu_vd) / sizeof(double);
extern "C" pnu_vf PNU_TANH_F(pnu_vf);
extern "C" pnu_vd PNU_TANH_D(pnu_vd);
static inline void tanh_vec(float* p) { PNU_MM(storeu_ps)(p, PNU_TANH_F(PNU_MM(loadu_ps)(p))); }
static inline void tanh_vec(double* p) { PNU_MM(storeu_pd)(p, PNU_TANH_D(PNU_MM(loadu_pd)(p))); }

template <typename T>
static void tanh_inplace(T* p, int64_t n) {
  constexpr int W = sizeof(T) == 4 ? kFloats : kDoubles;
  int64_t i = 0;
  for (; i + W <= n; i += W) tanh_vec(p + i);
  if (i < n) {  // the tail through a padded copy
    T tmp[W] = {};
    std::memcpy(tmp, p + i, (n - i) * sizeof(T));
    tanh_vec(tmp);
    std::memcpy(p + i, tmp, (n - i) * sizeof(T));
  }
}
#else
template <typename T>
static void tanh_inplace(T* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = std::tanh(p[i]);
}
#endif

namespace {

// The shapes of one solve; sizes[l], sizes[l + 1] are layer l's (in, out) widths, sizes[0] = sizes[L + 1] = H.
struct Problem {
  int64_t B, H, M, D, K, S, L, V;  // L: hidden (tanh) layers, the layers being 0..L; V: the block width
  int64_t ld0, ldi;  // row strides of the first layer's state and input weights (H and D, or both H + D: one matrix)
  int64_t h0_shared;  // 1: the initial state is one (H) vector for every column, else (B, H, M)
  const int64_t* sizes;
  const double* dts;  // (K)
  const double* a;    // (S, S), row i's first i entries used
  const double* b;    // (S)
  int64_t blocks() const { return (M + V - 1) / V; }
};

// dst (rows, V) = columns col0.. of src (rows, M); a short last block is padded with copies of its last column
// (`replicate`, for states and inputs: the padding solves a real trajectory, so stays finite where it does) or
// zeros (for gradients: the padding adds nothing)
template <typename T, int V>
inline void load_block(T* __restrict dst, const T* __restrict src, int64_t rows, int64_t M, int64_t col0,
                       bool replicate) {
  const int64_t n = std::min<int64_t>(V, M - col0);
  for (int64_t r = 0; r < rows; ++r) {
    const T* s = src + r * M + col0;
    T* d = dst + r * V;
    if (n == V) {
      for (int v = 0; v < V; ++v) d[v] = s[v];
    } else {
      for (int64_t v = 0; v < V; ++v) d[v] = v < n ? s[v] : (replicate ? s[n - 1] : T(0));
    }
  }
}

// the real columns of src (rows, V) into columns col0.. of dst (rows, M)
template <typename T, int V>
inline void store_block(T* __restrict dst, const T* __restrict src, int64_t rows, int64_t M, int64_t col0) {
  const int64_t n = std::min<int64_t>(V, M - col0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t v = 0; v < n; ++v) dst[r * M + col0 + v] = src[r * V + v];
}

// A block row of V values as one GCC/Clang vector: the kernels below are written with it, so that each row
// operation is a few vector instructions (left to the auto-vectoriser, loops this short get shuffled across rows).
template <typename T, int V>
struct Lanes {
  typedef T vec __attribute__((vector_size(sizeof(T) * V)));
  static inline vec load(const T* p) {
    vec v;
    std::memcpy(&v, p, sizeof(vec));
    return v;
  }
  static inline void store(T* p, vec v) { std::memcpy(p, &v, sizeof(vec)); }
};

// rows r .. r + N - 1 of affine (below): N independent sums over the inputs, each in the same order as alone
template <typename T, int V, int N>
inline void affine_rows(T* __restrict out, const T* __restrict bias, const T* __restrict W, const T* __restrict X,
                        int64_t r, int64_t in) {
  using L = Lanes<T, V>;
  typename L::vec acc[N];
  for (int j = 0; j < N; ++j) acc[j] = typename L::vec{} + (bias ? bias[r + j] : T(0));
  for (int64_t c = 0; c < in; ++c) {
    const typename L::vec x = L::load(X + c * V);
    for (int j = 0; j < N; ++j) acc[j] += W[(r + j) * in + c] * x;
  }
  for (int j = 0; j < N; ++j) L::store(out + (r + j) * V, acc[j]);
}

// out (o, V) = bias (o) + W (o, in) X (in, V); bias may be null.  Rows go four at a time (three, two or one
// at the end): independent sums whose latencies overlap
template <typename T, int V>
inline void affine(T* __restrict out, const T* __restrict bias, const T* __restrict W, const T* __restrict X,
                   int64_t o, int64_t in) {
  int64_t r = 0;
  for (; r + 4 <= o; r += 4) affine_rows<T, V, 4>(out, bias, W, X, r, in);
  switch (o - r) {
    case 3: affine_rows<T, V, 3>(out, bias, W, X, r, in); break;
    case 2: affine_rows<T, V, 2>(out, bias, W, X, r, in); break;
    case 1: affine_rows<T, V, 1>(out, bias, W, X, r, in); break;
    default: break;
  }
}

// out (o, V) += W (o, in) X (in, V)
template <typename T, int V>
inline void affine_acc(T* __restrict out, const T* __restrict W, const T* __restrict X, int64_t o, int64_t in) {
  using L = Lanes<T, V>;
  for (int64_t r = 0; r < o; ++r) {
    typename L::vec acc = L::load(out + r * V);
    for (int64_t c = 0; c < in; ++c) acc += W[r * in + c] * L::load(X + c * V);
    L::store(out + r * V, acc);
  }
}

// out (in, V) = W (o, in)^T G (o, V), times tanh'(z) = 1 - act^2 when act is given
template <typename T, int V>
inline void transposed(T* __restrict out, const T* __restrict W, const T* __restrict G, const T* __restrict act,
                       int64_t o, int64_t in) {
  using L = Lanes<T, V>;
  int64_t c = 0;
  for (; c + 4 <= in; c += 4) {  // four outputs at once (each summed in the same order as alone)
    typename L::vec a0 = {}, a1 = {}, a2 = {}, a3 = {};
    for (int64_t r = 0; r < o; ++r) {
      const typename L::vec g = L::load(G + r * V);
      const T* w = W + r * in + c;
      a0 += w[0] * g, a1 += w[1] * g, a2 += w[2] * g, a3 += w[3] * g;
    }
    typename L::vec* acc[4] = {&a0, &a1, &a2, &a3};
    for (int j = 0; j < 4; ++j) {
      if (act) {
        const typename L::vec y = L::load(act + (c + j) * V);
        *acc[j] *= T(1) - y * y;
      }
      L::store(out + (c + j) * V, *acc[j]);
    }
  }
  for (; c < in; ++c) {
    typename L::vec acc = {};
    for (int64_t r = 0; r < o; ++r) acc += W[r * in + c] * L::load(G + r * V);
    if (act) {
      const typename L::vec y = L::load(act + c * V);
      acc *= T(1) - y * y;
    }
    L::store(out + c * V, acc);
  }
}

// per-column partial sums of a weight gradient: P (o, in, V) += G (o, V) * X (in, V), column by column (the sum
// over the columns is taken once per member, so that every operation here is elementwise)
template <typename T, int V>
inline void outer_acc(T* __restrict P, const T* __restrict G, const T* __restrict X, int64_t o, int64_t in) {
  using L = Lanes<T, V>;
  for (int64_t r = 0; r < o; ++r) {
    const typename L::vec g = L::load(G + r * V);
    for (int64_t c = 0; c < in; ++c) L::store(P + (r * in + c) * V, L::load(P + (r * in + c) * V) + g * L::load(X + c * V));
  }
}

// y (rows, V) += alpha x (rows, V)
template <typename T, int V>
inline void axpy(T* __restrict y, T alpha, const T* __restrict x, int64_t rows) {
  using L = Lanes<T, V>;
  for (int64_t r = 0; r < rows; ++r) L::store(y + r * V, L::load(y + r * V) + alpha * L::load(x + r * V));
}

// out (n) = sum over the V columns of P (n, V)
template <typename T, int V>
inline void column_sums(T* __restrict out, const T* __restrict P, int64_t n) {
  for (int64_t r = 0; r < n; ++r) {
    T s = 0;
    for (int v = 0; v < V; ++v) s += P[r * V + v];
    out[r] = s;
  }
}

// the same for a matrix P (rows, cols, V) into out (rows, cols) of row stride ld
template <typename T, int V>
inline void column_sums(T* __restrict out, const T* __restrict P, int64_t rows, int64_t cols, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) column_sums<T, V>(out + r * ld, P + r * cols * V, cols);
}

// rows (n, cols) of src with row stride ld, contiguous: src itself when ld == cols, else copied into buf
template <typename T>
inline const T* packed(const T* src, int64_t n, int64_t cols, int64_t ld, std::vector<T>& buf) {
  if (ld == cols) return src;
  buf.resize(n * cols);
  for (int64_t r = 0; r < n; ++r) std::memcpy(buf.data() + r * cols, src + r * ld, sizeof(T) * cols);
  return buf.data();
}

template <typename T>
struct Member {  // one member's parameters (pointers into the batched tensors, or packed copies)
  std::vector<T> wi_buf, w0_buf;
  const T* Wi;  // (n1, D)
  const T* bi;  // (n1)
  std::vector<const T*> W, bias;  // per layer 0..L; bias[0] unused (the first layer's is bi)
  Member(const Problem& p, int64_t mb, const T* w_in, const T* b_in, const T* const* weights,
         const T* const* biases)
      : Wi(packed(w_in + mb * p.sizes[1] * p.ldi, p.sizes[1], p.D, p.ldi, wi_buf)),
        bi(b_in ? b_in + mb * p.sizes[1] : nullptr), W(p.L + 1), bias(p.L + 1) {
    W[0] = packed(weights[0] + mb * p.sizes[1] * p.ld0, p.sizes[1], p.H, p.ld0, w0_buf);
    for (int64_t l = 1; l <= p.L; ++l) W[l] = weights[l] + mb * p.sizes[l] * p.sizes[l + 1];
    for (int64_t l = 1; l <= p.L; ++l) bias[l] = biases ? biases[l - 1] + mb * p.sizes[l + 1] : nullptr;
  }
};

inline int64_t widest_hidden(const Problem& p) {
  int64_t w = 1;
  for (int64_t l = 1; l <= p.L; ++l) w = std::max(w, p.sizes[l]);
  return w;
}

// The forward solve of member mb's column block `blk`: its states into `states` (K + 1, B, H, M); with `Ysave`
// the block's stage inputs (K, S, H, V) and hidden activations acts[l] (K, S, n_l, V).
template <typename T, int V>
void forward_block(const Problem& p, const Member<T>& w, int64_t mb, int64_t blk, const T* h0, const T* x,
                   T* states, T* Ysave, T* const* acts) {
  const int64_t B = p.B, H = p.H, M = p.M, D = p.D, S = p.S, L = p.L, HV = H * V, n1 = p.sizes[1];
  const int64_t col0 = blk * V, widest = widest_hidden(p);
  const bool save = Ysave != nullptr;
  std::vector<T> h(HV), kbuf(S * HV), ybuf(HV), xb(std::max<int64_t>(D, 1) * V), zbuf(2 * widest * V);
  if (p.h0_shared) {
    for (int64_t r = 0; r < H; ++r) std::fill(h.data() + r * V, h.data() + (r + 1) * V, h0[r]);
  } else {
    load_block<T, V>(h.data(), h0 + mb * H * M, H, M, col0, true);
  }
  store_block<T, V>(states + mb * H * M, h.data(), H, M, col0);
  for (int64_t k = 0; k < p.K; ++k) {
    const T dt = static_cast<T>(p.dts[k]);
    for (int64_t i = 0; i < S; ++i) {
      const int64_t idx = k * S + i;
      T* Y = save ? Ysave + idx * HV : ybuf.data();
      std::memcpy(Y, h.data(), sizeof(T) * HV);
      for (int64_t j = 0; j < i; ++j)
        if (p.a[i * S + j] != 0.0) axpy<T, V>(Y, static_cast<T>(dt * p.a[i * S + j]), kbuf.data() + j * HV, H);
      T* ki = kbuf.data() + i * HV;
      T* z = L == 0 ? ki : (save ? acts[0] + idx * n1 * V : zbuf.data());
      if (x != nullptr) {
        load_block<T, V>(xb.data(), x + (idx * B + mb) * D * M, D, M, col0, true);
        affine<T, V>(z, w.bi, w.Wi, xb.data(), n1, D);
        affine_acc<T, V>(z, w.W[0], Y, n1, H);
      } else {
        affine<T, V>(z, w.bi, w.W[0], Y, n1, H);
      }
      if (L == 0) continue;
      tanh_inplace(z, n1 * V);
      for (int64_t l = 1; l < L; ++l) {
        const int64_t o = p.sizes[l + 1];
        T* zn = save ? acts[l] + idx * o * V : zbuf.data() + (l % 2) * widest * V;
        affine<T, V>(zn, w.bias[l], w.W[l], z, o, p.sizes[l]);
        tanh_inplace(zn, o * V);
        z = zn;
      }
      affine<T, V>(ki, w.bias[L], w.W[L], z, H, p.sizes[L]);
    }
    for (int64_t i = 0; i < S; ++i)
      if (p.b[i] != 0.0) axpy<T, V>(h.data(), static_cast<T>(dt * p.b[i]), kbuf.data() + i * HV, H);
    store_block<T, V>(states + ((k + 1) * B + mb) * H * M, h.data(), H, M, col0);
  }
}

// The discrete adjoint of member mb's column block `blk` (see rk_backprop.py): from the gradients of every state
// gs (K + 1, B, H, M) back to the initial state (grad_h, (B, H, M)) and, when grad_x is given, the stage inputs
// (K, S, B, D, M); the weight gradients are added to the member's per-column partial sums PW (per layer
// (out, in, V)), Pb (per layer (out, V), the first layer's being b_in's) and PWi ((n1, D, V)).
template <typename T, int V>
void backward_block(const Problem& p, const Member<T>& w, int64_t mb, int64_t blk, const T* gs, const T* x,
                    const T* Ysave, const T* const* acts, T* grad_h, T* grad_x, std::vector<std::vector<T>>& PW,
                    std::vector<std::vector<T>>& Pb, std::vector<T>& PWi) {
  const int64_t B = p.B, H = p.H, M = p.M, D = p.D, S = p.S, L = p.L, HV = H * V, n1 = p.sizes[1];
  const int64_t col0 = blk * V, widest = widest_hidden(p);
  std::vector<T> lam(HV, T(0)), gsb(HV), gk(S * HV), gY(HV), xb(std::max<int64_t>(D, 1) * V),
      gxb(std::max<int64_t>(D, 1) * V), ga(2 * widest * V);
  for (int64_t k = p.K - 1; k >= 0; --k) {
    const T dt = static_cast<T>(p.dts[k]);
    load_block<T, V>(gsb.data(), gs + ((k + 1) * B + mb) * H * M, H, M, col0, false);
    axpy<T, V>(lam.data(), T(1), gsb.data(), H);  // the gradient of the state after step k
    for (int64_t i = 0; i < S; ++i) {
      const T c = static_cast<T>(dt * p.b[i]);
      for (int64_t m = 0; m < HV; ++m) gk[i * HV + m] = c * lam[m];
    }
    for (int64_t i = S - 1; i >= 0; --i) {
      const int64_t idx = k * S + i;
      const T* g = gk.data() + i * HV;  // the gradient of the stage value k_i, then of each pre-activation
      for (int64_t l = L; l >= 1; --l) {  // back through layer l: out = W_l act_{l-1} + b_l
        const int64_t o = p.sizes[l + 1], in = p.sizes[l];
        const T* act = acts[l - 1] + idx * in * V;
        axpy<T, V>(Pb[l].data(), T(1), g, o);
        outer_acc<T, V>(PW[l].data(), g, act, o, in);
        T* gn = ga.data() + (l % 2) * widest * V;
        transposed<T, V>(gn, w.W[l], g, act, o, in);
        g = gn;
      }
      // the first layer: z = W_0 Y_i + W_in x + b_in
      axpy<T, V>(Pb[0].data(), T(1), g, n1);
      outer_acc<T, V>(PW[0].data(), g, Ysave + idx * HV, n1, H);
      if (x != nullptr) {
        load_block<T, V>(xb.data(), x + (idx * B + mb) * D * M, D, M, col0, true);
        outer_acc<T, V>(PWi.data(), g, xb.data(), n1, D);
        if (grad_x != nullptr) {
          transposed<T, V>(gxb.data(), w.Wi, g, static_cast<const T*>(nullptr), n1, D);
          store_block<T, V>(grad_x + (idx * B + mb) * D * M, gxb.data(), D, M, col0);
        }
      }
      transposed<T, V>(gY.data(), w.W[0], g, static_cast<const T*>(nullptr), n1, H);
      axpy<T, V>(lam.data(), T(1), gY.data(), H);
      for (int64_t j = 0; j < i; ++j)
        if (p.a[i * S + j] != 0.0) axpy<T, V>(gk.data() + j * HV, static_cast<T>(dt * p.a[i * S + j]), gY.data(), H);
    }
  }
  load_block<T, V>(gsb.data(), gs + mb * H * M, H, M, col0, false);
  axpy<T, V>(lam.data(), T(1), gsb.data(), H);
  store_block<T, V>(grad_h + mb * H * M, lam.data(), H, M, col0);
}

// offsets of member mb's block blk in the saved buffers (B, blocks, K, S, n, V)
inline int64_t saved_offset(const Problem& p, int64_t mb, int64_t blk, int64_t n) {
  return (mb * p.blocks() + blk) * p.K * p.S * n * p.V;
}

template <typename T, int V>
void forward_all(const Problem& p, const void* h0, const void* x, const void* w_in, const void* b_in,
                 const void* const* weights, const void* const* biases, void* states, void* Ysave,
                 void* const* acts) {
  std::vector<T*> a(p.L);
  for (int64_t mb = 0; mb < p.B; ++mb) {
    const Member<T> w(p, mb, static_cast<const T*>(w_in), static_cast<const T*>(b_in),
                      reinterpret_cast<const T* const*>(weights), reinterpret_cast<const T* const*>(biases));
    for (int64_t blk = 0; blk < p.blocks(); ++blk) {
      for (int64_t l = 0; l < p.L; ++l)
        a[l] = Ysave ? static_cast<T*>(acts[l]) + saved_offset(p, mb, blk, p.sizes[l + 1]) : nullptr;
      forward_block<T, V>(p, w, mb, blk, static_cast<const T*>(h0), static_cast<const T*>(x),
                          static_cast<T*>(states),
                          Ysave ? static_cast<T*>(Ysave) + saved_offset(p, mb, blk, p.H) : nullptr, a.data());
    }
  }
}

template <typename T, int V>
void backward_all(const Problem& p, const void* gs, const void* x, const void* w_in, const void* const* weights,
                  const void* Ysave, const void* const* acts, void* grad_h, void* grad_w_in, void* grad_b_in,
                  void* const* grad_w, void* const* grad_b, void* grad_x) {
  const int64_t L = p.L, n1 = p.sizes[1];
  std::vector<const T*> a(L);
  std::vector<std::vector<T>> PW(L + 1), Pb(L + 1);
  std::vector<T> PWi(x != nullptr ? n1 * p.D * V : 0);
  for (int64_t mb = 0; mb < p.B; ++mb) {
    const Member<T> w(p, mb, static_cast<const T*>(w_in), nullptr, reinterpret_cast<const T* const*>(weights),
                      nullptr);
    for (int64_t l = 0; l <= L; ++l) {
      PW[l].assign(p.sizes[l] * p.sizes[l + 1] * V, T(0));
      Pb[l].assign(p.sizes[l + 1] * V, T(0));
    }
    std::fill(PWi.begin(), PWi.end(), T(0));
    for (int64_t blk = 0; blk < p.blocks(); ++blk) {
      for (int64_t l = 0; l < L; ++l)
        a[l] = static_cast<const T*>(acts[l]) + saved_offset(p, mb, blk, p.sizes[l + 1]);
      backward_block<T, V>(p, w, mb, blk, static_cast<const T*>(gs), static_cast<const T*>(x),
                           static_cast<const T*>(Ysave) + saved_offset(p, mb, blk, p.H), a.data(),
                           static_cast<T*>(grad_h), static_cast<T*>(grad_x), PW, Pb, PWi);
    }
    column_sums<T, V>(static_cast<T*>(grad_w[0]) + mb * n1 * p.ld0, PW[0].data(), n1, p.H, p.ld0);
    for (int64_t l = 0; l <= L; ++l) {
      const int64_t o = p.sizes[l + 1], in = p.sizes[l];
      if (l > 0) column_sums<T, V>(static_cast<T*>(grad_w[l]) + mb * o * in, PW[l].data(), o * in);
      column_sums<T, V>(l == 0 ? static_cast<T*>(grad_b_in) + mb * n1 : static_cast<T*>(grad_b[l - 1]) + mb * o,
                        Pb[l].data(), o);
    }
    if (x != nullptr)
      column_sums<T, V>(static_cast<T*>(grad_w_in) + mb * n1 * p.ldi, PWi.data(), n1, p.D, p.ldi);
  }
}

// largest |value| of n values; NaN when one is not finite
template <typename T>
inline T largest_abs(const T* v, int64_t n) {
  T m = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) return std::numeric_limits<T>::quiet_NaN();
    m = std::max(m, std::abs(v[i]));
  }
  return m;
}

// The step-doubling check after a forward solve (see fixed_grid.py): from the observation time k (every
// `substeps`-th state of `states` (K + 1, B, H, M), not the last) where the states are largest, one step of the
// widest width against two half steps, out = {max |one - two| / (max |two| + max |y| + tiny), k}, or k = -1 when
// a state is not finite (nothing checked).  Per observation time: reuse[k] (the solve's own step from k is that
// one step), widths (3) of the one step and the two halves, and their stage inputs xs (3, S, B, D, M).  scratch
// holds 5 states (B, H, M).
template <typename T, int V>
void check_all(const Problem& p, int64_t substeps, const unsigned char* reuse, const double* widths,
               const void* states, const void* xs, const void* w_in, const void* b_in, const void* const* weights,
               const void* const* biases, void* scratch, double* out) {
  const int64_t n = p.B * p.H * p.M, times = p.K / substeps + 1;
  const T* s = static_cast<const T*>(states);
  int64_t k = -1;
  T best = -1;
  for (int64_t i = 0; i < times; ++i) {
    const T m = largest_abs(s + i * substeps * n, n);
    if (std::isnan(m)) {
      out[0] = std::numeric_limits<double>::quiet_NaN(), out[1] = -1;
      return;
    }
    if (i < times - 1 && m > best) best = m, k = i;
  }
  const T* y = s + k * substeps * n;
  const int64_t stage_inputs = p.S * p.B * p.D * p.M;
  const T* x = static_cast<const T*>(xs);
  T* one_buf = static_cast<T*>(scratch);  // (2, B, H, M)
  T* two_buf = one_buf + 2 * n;           // (3, B, H, M)
  Problem q = p;
  q.h0_shared = 0;  // the check starts from solved states
  const T* one = s + (k * substeps + 1) * n;
  if (!reuse[k]) {
    q.K = 1, q.dts = widths + 3 * k;
    forward_all<T, V>(q, y, x ? x + 3 * k * stage_inputs : nullptr, w_in, b_in, weights, biases, one_buf, nullptr,
                      nullptr);
    one = one_buf + n;
  }
  q.K = 2, q.dts = widths + 3 * k + 1;
  forward_all<T, V>(q, y, x ? x + (3 * k + 1) * stage_inputs : nullptr, w_in, b_in, weights, biases, two_buf,
                    nullptr, nullptr);
  const T* two = two_buf + 2 * n;
  T diff = 0;
  for (int64_t i = 0; i < n; ++i) diff = std::max(diff, std::abs(one[i] - two[i]));
  const T denominator = largest_abs(two, n) + largest_abs(y, n) + std::numeric_limits<T>::min();
  out[0] = std::isfinite(diff) ? static_cast<double>(diff / denominator) : std::numeric_limits<double>::quiet_NaN();
  out[1] = static_cast<double>(k);
}

// The solve's outputs from its states (K + 1, B, H, M): at every `substeps`-th state, the states hidden (B, M, T, H)
// and their first O components mean (B, M, T, O), and bad (B, M): a state of the column is not finite or above
// max_abs (its outputs are then zero).
template <typename T>
void outputs_all(const Problem& p, int64_t substeps, int64_t O, double max_abs, const T* states, T* hidden, T* mean,
                 bool* bad) {
  const int64_t B = p.B, H = p.H, M = p.M, Tn = p.K / substeps + 1;
  const T limit = static_cast<T>(max_abs);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t m = 0; m < M; ++m) {
      const int64_t col = b * M + m;
      bool diverged = false;
      for (int64_t t = 0; t < Tn && !diverged; ++t)
        for (int64_t h = 0; h < H; ++h)
          if (!(std::abs(states[((t * substeps) * B + b) * H * M + h * M + m]) <= limit)) diverged = true;
      bad[col] = diverged;
      for (int64_t t = 0; t < Tn; ++t)
        for (int64_t h = 0; h < H; ++h) {
          const T v = diverged ? T(0) : states[((t * substeps) * B + b) * H * M + h * M + m];
          hidden[(col * Tn + t) * H + h] = v;
          if (h < O) mean[(col * Tn + t) * O + h] = v;
        }
    }
}

// The gradients of the states gs (K + 1, B, H, M) from those of the outputs (outputs_all): g_hidden (B, M, T, H)
// plus g_mean (B, M, T, O) (either null) at every `substeps`-th state, zero elsewhere and for the bad columns.
template <typename T>
void output_grads_all(const Problem& p, int64_t substeps, int64_t O, const T* g_hidden, const T* g_mean,
                      const bool* bad, T* gs) {
  const int64_t B = p.B, H = p.H, M = p.M, Tn = p.K / substeps + 1;
  std::fill(gs, gs + (p.K + 1) * B * H * M, T(0));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t m = 0; m < M; ++m) {
      const int64_t col = b * M + m;
      if (bad[col]) continue;
      for (int64_t t = 0; t < Tn; ++t)
        for (int64_t h = 0; h < H; ++h) {
          T v = g_hidden ? g_hidden[(col * Tn + t) * H + h] : T(0);
          if (g_mean && h < O) v = g_hidden ? v + g_mean[(col * Tn + t) * O + h] : g_mean[(col * Tn + t) * O + h];
          gs[((t * substeps) * B + b) * H * M + h * M + m] = v;
        }
    }
}

// FN<T, V>(args...) for the problem's dtype and block width
#define PNU_DISPATCH(FN, ...)                                                        \
  switch ((double_precision ? 100 : 0) + p.V) {                                      \
    case 1: FN<float, 1>(__VA_ARGS__); break;                                        \
    case 2: FN<float, 2>(__VA_ARGS__); break;                                        \
    case 4: FN<float, 4>(__VA_ARGS__); break;                                        \
    case 8: FN<float, 8>(__VA_ARGS__); break;                                        \
    case 16: FN<float, 16>(__VA_ARGS__); break;                                      \
    case 101: FN<double, 1>(__VA_ARGS__); break;                                     \
    case 102: FN<double, 2>(__VA_ARGS__); break;                                     \
    case 104: FN<double, 4>(__VA_ARGS__); break;                                     \
    case 108: FN<double, 8>(__VA_ARGS__); break;                                     \
    default: return 1;                                                               \
  }

}  // namespace

extern "C" {

// dims: B, H, M, D, K, S, L, V (V one of 1, 2, 4, 8, and 16 in float32), ld0, ldi, h0_shared (see Problem); sizes: L + 2 layer widths; double_precision: 1 for
// float64, 0 for float32.  Saved buffers (B, blocks, K, S, n, V), blocks = ceil(M / V); Ysave and acts null: no
// saving (a solve without gradient).  Returns 0, or 1 for an unsupported V.
int pnu_rk_forward(int double_precision, const int64_t* dims, const int64_t* sizes, const double* dts,
                   const double* a, const double* b, const void* h0, const void* x, const void* w_in,
                   const void* b_in, const void* const* weights, const void* const* biases, void* states,
                   void* Ysave, void* const* acts) {
  const Problem p{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7], dims[8], dims[9], dims[10], sizes, dts, a, b};
  PNU_DISPATCH(forward_all, p, h0, x, w_in, b_in, weights, biases, states, Ysave, acts)
  return 0;
}

int pnu_rk_backward(int double_precision, const int64_t* dims, const int64_t* sizes, const double* dts,
                    const double* a, const double* b, const void* gs, const void* x, const void* w_in,
                    const void* const* weights, const void* Ysave, const void* const* acts, void* grad_h,
                    void* grad_w_in, void* grad_b_in, void* const* grad_w, void* const* grad_b, void* grad_x) {
  const Problem p{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7], dims[8], dims[9], dims[10], sizes, dts, a, b};
  PNU_DISPATCH(backward_all, p, gs, x, w_in, weights, Ysave, acts, grad_h, grad_w_in, grad_b_in, grad_w, grad_b,
               grad_x)
  return 0;
}

// The step-doubling check after a forward solve (check_all above); dims as pnu_rk_forward's, K the solve's steps.
int pnu_rk_check(int double_precision, const int64_t* dims, const int64_t* sizes, const double* a, const double* b,
                 int64_t substeps, const unsigned char* reuse, const double* widths, const void* states,
                 const void* xs, const void* w_in, const void* b_in, const void* const* weights,
                 const void* const* biases, void* scratch, double* out) {
  const Problem p{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7], dims[8], dims[9], dims[10], sizes, nullptr, a, b};
  PNU_DISPATCH(check_all, p, substeps, reuse, widths, states, xs, w_in, b_in, weights, biases, scratch, out)
  return 0;
}

// A NODE solve in one call: the forward solve (pnu_rk_forward's arguments, through acts), the step-doubling check
// when `reuse` is given (pnu_rk_check's arguments), then the outputs of outputs_all.
int pnu_node_forward(int double_precision, const int64_t* dims, const int64_t* sizes, const double* dts,
                     const double* a, const double* b, const void* h0, const void* x, const void* w_in,
                     const void* b_in, const void* const* weights, const void* const* biases, void* states,
                     void* Ysave, void* const* acts, int64_t substeps, const unsigned char* reuse,
                     const double* widths, const void* xs_check, void* scratch, double* check_out, int64_t O,
                     double max_abs, void* hidden, void* mean, bool* bad) {
  const Problem p{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7], dims[8], dims[9], dims[10], sizes, dts, a, b};
  PNU_DISPATCH(forward_all, p, h0, x, w_in, b_in, weights, biases, states, Ysave, acts)
  if (reuse != nullptr) {
    PNU_DISPATCH(check_all, p, substeps, reuse, widths, states, xs_check, w_in, b_in, weights, biases, scratch,
                 check_out)
  }
  if (double_precision)
    outputs_all<double>(p, substeps, O, max_abs, static_cast<const double*>(states), static_cast<double*>(hidden),
                        static_cast<double*>(mean), bad);
  else
    outputs_all<float>(p, substeps, O, max_abs, static_cast<const float*>(states), static_cast<float*>(hidden),
                       static_cast<float*>(mean), bad);
  return 0;
}

// Its gradient in one call: the states' gradients gs (scratch, (K + 1, B, H, M)) from the outputs' (output_grads_all),
// then pnu_rk_backward.
int pnu_node_backward(int double_precision, const int64_t* dims, const int64_t* sizes, const double* dts,
                      const double* a, const double* b, int64_t substeps, int64_t O, const void* g_hidden,
                      const void* g_mean, const bool* bad, void* gs, const void* x, const void* w_in,
                      const void* const* weights, const void* Ysave, const void* const* acts, void* grad_h,
                      void* grad_w_in, void* grad_b_in, void* const* grad_w, void* const* grad_b) {
  const Problem p{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], dims[7], dims[8], dims[9], dims[10], sizes, dts, a, b};
  if (double_precision)
    output_grads_all<double>(p, substeps, O, static_cast<const double*>(g_hidden), static_cast<const double*>(g_mean),
                             bad, static_cast<double*>(gs));
  else
    output_grads_all<float>(p, substeps, O, static_cast<const float*>(g_hidden), static_cast<const float*>(g_mean),
                            bad, static_cast<float*>(gs));
  PNU_DISPATCH(backward_all, p, gs, x, w_in, weights, Ysave, acts, grad_h, grad_w_in, grad_b_in, grad_w, grad_b,
               nullptr)
  return 0;
}

}  // extern "C"
