// rules.cu -- elementwise activations and the per-pair DeepLIFT rule kernels.
//
// Semantics: fastlift/backends/ops.py (Ops.activation_forward ... Ops.reveal_cancel_backward), the
// numpy oracle the tests compare against; per-element math: csrc/fl_math.h, shared unchanged with
// the Cython CPU kernels (csrc/fl_kernels_impl.h), so the CPU tests also test this math.
// Conventions (grid-stride loops, 64-bit indices, no atomics, dimension suffixes): fl_cuda.cuh.
//
// Thread mapping of every kernel here: one thread per output element of a (rows, n_features)
// array, element i = row * n_features + f, in a grid-stride loop. Rows are gathered through the
// pair index (pair_x__p / pair_r__p), so consecutive threads read consecutive features of the
// same example or reference row: coalesced loads. `act` is the same for every thread, so the
// switch inside fl_activation_forward_elem / fl_activation_grad_elem never diverges within a
// warp. Each kernel computes its elements with the fl_<op>_elem function of csrc/fl_math.h.
#include "fl_cuda.cuh"
#include "fl_math.h"

// activation_forward: out[n, f] = act(x[n, f]; alpha[f % n_alpha]).
// Layout: x__nf, out__nf (n_rows, n_features); a__a (n_alpha,).
template <typename T>
__global__ void activation_forward(int act, const T* __restrict__ x__nf, const T* __restrict__ a__a,
                                   long long n_alpha, T* __restrict__ out__nf, long long n_rows,
                                   long long n_features)
{
    FL_FOR_EACH(i, n_rows * n_features) {
        const long long f = i % n_features;
        out__nf[i] = fl_activation_forward_elem(act, x__nf[i], a__a[f % n_alpha]);
    }
}

// add_activation: out[n, f] = other[n, f] + act(x[n, f]; alpha[f % n_alpha]) (a residual merge of an
// activation nothing else reads). Layout as activation_forward; other__nf (n_rows, n_features).
template <typename T>
__global__ void add_activation(int act, const T* __restrict__ x__nf, const T* __restrict__ a__a,
                               long long n_alpha, const T* __restrict__ other__nf, T* __restrict__ out__nf,
                               long long n_rows, long long n_features)
{
    FL_FOR_EACH(i, n_rows * n_features) {
        const long long f = i % n_features;
        out__nf[i] = other__nf[i] + fl_activation_forward_elem(act, x__nf[i], a__a[f % n_alpha]);
    }
}

// activation_grad: out[n, f] = act'(x[n, f]; alpha[f % n_alpha]). Layout as activation_forward.
template <typename T>
__global__ void activation_grad(int act, const T* __restrict__ x__nf, const T* __restrict__ a__a,
                                long long n_alpha, T* __restrict__ out__nf, long long n_rows,
                                long long n_features)
{
    FL_FOR_EACH(i, n_rows * n_features) {
        const long long f = i % n_features;
        out__nf[i] = fl_activation_grad_elem(act, x__nf[i], a__a[f % n_alpha]);
    }
}

// rescale_backward (Rescale rule), for pair p = i / n_features and feature f:
//   m_in[p, f] = m_out[p, f] * s,  s = (x_out[px, f] - r_out[pr, f]) / (x_in[px, f] - r_in[pr, f]),
//   or s = act'(r_in[pr, f]) where |x_in - r_in| < FL_NEAR_ZERO  (fl_rescale_backward_elem),
//   with px = pair_x[p], pr = pair_r[p].
// Layout: m_out__pf, m_in__pf (n_pairs, F); x_in__nf, x_out__nf (n_x, F); r_in__nf, r_out__nf
//   (n_r, F); pair_x__p, pair_r__p (n_pairs,).
template <typename T>
__global__ void rescale_backward(int act, const T* __restrict__ m_out__pf,
                                 const T* __restrict__ x_in__nf, const T* __restrict__ r_in__nf,
                                 const T* __restrict__ x_out__nf, const T* __restrict__ r_out__nf,
                                 const long long* __restrict__ pair_x__p,
                                 const long long* __restrict__ pair_r__p,
                                 const T* __restrict__ a__a, long long n_alpha,
                                 T* __restrict__ m_in__pf, long long n_pairs, long long n_features)
{
    FL_FOR_EACH(i, n_pairs * n_features) {
        const long long p = i / n_features, f = i - p * n_features;
        const long long kx = pair_x__p[p] * n_features + f, kr = pair_r__p[p] * n_features + f;
        m_in__pf[i] = fl_rescale_backward_elem(act, m_out__pf[i], x_in__nf[kx], r_in__nf[kr], x_out__nf[kx],
                                               r_out__nf[kr], a__a[f % n_alpha]);
    }
}

// gradient_backward (gradient rule): m_in[p, f] = m_out[p, f] * act'(x_in[pair_x[p], f]).
// Layout: m_out__pf, m_in__pf (n_pairs, F); x_in__nf (n_x, F); pair_x__p (n_pairs,).
template <typename T>
__global__ void gradient_backward(int act, const T* __restrict__ m_out__pf,
                                  const T* __restrict__ x_in__nf,
                                  const long long* __restrict__ pair_x__p,
                                  const T* __restrict__ a__a, long long n_alpha,
                                  T* __restrict__ m_in__pf, long long n_pairs, long long n_features)
{
    FL_FOR_EACH(i, n_pairs * n_features) {
        const long long p = i / n_features, f = i - p * n_features;
        const T g = fl_activation_grad_elem(act, x_in__nf[pair_x__p[p] * n_features + f],
                                            a__a[f % n_alpha]);
        m_in__pf[i] = m_out__pf[i] * g;
    }
}

// guided_backprop_backward: m_in[p, f] = m_out[p, f] * act'(x_in[pair_x[p], f]) where
// m_out[p, f] > 0, else 0. Layout as gradient_backward.
template <typename T>
__global__ void guided_backprop_backward(int act, const T* __restrict__ m_out__pf,
                                         const T* __restrict__ x_in__nf,
                                         const long long* __restrict__ pair_x__p,
                                         const T* __restrict__ a__a, long long n_alpha,
                                         T* __restrict__ m_in__pf, long long n_pairs,
                                         long long n_features)
{
    FL_FOR_EACH(i, n_pairs * n_features) {
        const long long p = i / n_features, f = i - p * n_features;
        const T m = m_out__pf[i];
        const T v = m * fl_activation_grad_elem(act, x_in__nf[pair_x__p[p] * n_features + f],
                                                a__a[f % n_alpha]);
        m_in__pf[i] = m > T(0) ? v : T(0);
    }
}

// reveal_cancel_split (RevealCancel output split), x0 = r_in[pair_r[p], f]:
//   dy_pos = 0.5*[(f(x0+d_pos) - f(x0)) + (f(x0+d_pos+d_neg) - f(x0+d_neg))]
//   dy_neg = 0.5*[(f(x0+d_neg) - f(x0)) + (f(x0+d_pos+d_neg) - f(x0+d_pos))]
//   (fl_reveal_cancel_split_elem)
// Layout: d_pos__pf, d_neg__pf, dy_pos__pf, dy_neg__pf (n_pairs, F); r_in__nf (n_r, F).
template <typename T>
__global__ void reveal_cancel_split(int act, const T* __restrict__ r_in__nf,
                                    const T* __restrict__ d_pos__pf, const T* __restrict__ d_neg__pf,
                                    const long long* __restrict__ pair_r__p,
                                    const T* __restrict__ a__a, long long n_alpha,
                                    T* __restrict__ dy_pos__pf, T* __restrict__ dy_neg__pf,
                                    long long n_pairs, long long n_features)
{
    FL_FOR_EACH(i, n_pairs * n_features) {
        const long long p = i / n_features, f = i - p * n_features;
        T dy_pos, dy_neg;
        fl_reveal_cancel_split_elem(act, r_in__nf[pair_r__p[p] * n_features + f], d_pos__pf[i],
                                    d_neg__pf[i], a__a[f % n_alpha], &dy_pos, &dy_neg);
        dy_pos__pf[i] = dy_pos;
        dy_neg__pf[i] = dy_neg;
    }
}

// reveal_cancel_backward (RevealCancel rule), x0 = r_in[pair_r[p], f]:
//   m_in_pos = m_pos * dy_pos / d_pos,  m_in_neg = m_neg * dy_neg / d_neg, where |d_pos| <
//   FL_NEAR_ZERO uses the limit 0.5*(f'(x0) + f'(x0 + d_neg)) for dy_pos / d_pos, and
//   symmetrically for d_neg (fl_reveal_cancel_backward_elem; the split is recomputed in the same
//   pass).
// Layout: m_pos__pf, m_neg__pf, d_pos__pf, d_neg__pf, m_in_pos__pf, m_in_neg__pf (n_pairs, F);
//   r_in__nf (n_r, F).
template <typename T>
__global__ void reveal_cancel_backward(int act, const T* __restrict__ m_pos__pf,
                                       const T* __restrict__ m_neg__pf,
                                       const T* __restrict__ r_in__nf,
                                       const T* __restrict__ d_pos__pf,
                                       const T* __restrict__ d_neg__pf,
                                       const long long* __restrict__ pair_r__p,
                                       const T* __restrict__ a__a, long long n_alpha,
                                       T* __restrict__ m_in_pos__pf, T* __restrict__ m_in_neg__pf,
                                       long long n_pairs, long long n_features)
{
    FL_FOR_EACH(i, n_pairs * n_features) {
        const long long p = i / n_features, f = i - p * n_features;
        T m_in_pos, m_in_neg;
        fl_reveal_cancel_backward_elem(act, m_pos__pf[i], m_neg__pf[i], r_in__nf[pair_r__p[p] * n_features + f],
                                       d_pos__pf[i], d_neg__pf[i], a__a[f % n_alpha], &m_in_pos, &m_in_neg);
        m_in_pos__pf[i] = m_in_pos;
        m_in_neg__pf[i] = m_in_neg;
    }
}
