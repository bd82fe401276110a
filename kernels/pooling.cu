// pooling.cu -- max / average pooling forward and backward, including the exact max-pool rule.
//
// Semantics: fastlift/backends/ops.py (Ops.max_pool_forward ... Ops.max_pool_backward); CPU twin:
// csrc/fl_kernels_impl.h; the exact rule's lambda: fl_max_pool_backward_lambda in csrc/fl_math.h.
// Geometry as in conv.cu; padding cells are ignored by pooling (never the max, not counted in
// the mean). Conventions: fl_cuda.cuh.
#include "fl_cuda.cuh"
#include "fl_math.h"

// max_pool_forward: out[n, i, j, ch] = max of x[n, r, s, ch] over the window's cells inside the
// input (-inf if there are none). avg_pool_forward: their sum in row-major tap order divided by
// their count (0/0 for an all-padding window, as the oracle).
// Layout: x__nhwc (n, h, w, c); out__nijc (n, h_out, w_out, c).
// Threads: one per output element (grid-stride), channel fastest.
template <typename T>
__global__ void max_pool_forward(const T* __restrict__ x__nhwc, T* __restrict__ out__nijc,
                                 long long n, FL_GEOM_PARAMS)
{
    FL_GEOM(g);
    FL_FOR_EACH(idx, n * g.h_out * g.w_out * g.c) {
        long long q = idx / g.c;
        const long long ch = idx - q * g.c;
        const long long j = q % g.w_out;
        q /= g.w_out;
        const long long i = q % g.h_out, nn = q / g.h_out;
        long long a_lo, a_hi, b_lo, b_hi;
        fli_tap_range(i * g.sh - g.pt, g.dh, g.kh, g.h, &a_lo, &a_hi);
        fli_tap_range(j * g.sw - g.pl, g.dw, g.kw, g.w, &b_lo, &b_hi);
        const T* xn = x__nhwc + nn * g.h * g.w * g.c + ch;
        T best = fl_neg_inf<T>();
        for (long long a = a_lo; a < a_hi; ++a) {
            const long long r = i * g.sh - g.pt + a * g.dh;
            for (long long b = b_lo; b < b_hi; ++b) {
                const T v = xn[(r * g.w + j * g.sw - g.pl + b * g.dw) * g.c];
                best = v > best ? v : best;
            }
        }
        out__nijc[idx] = best;
    }
}

template <typename T>
__global__ void avg_pool_forward(const T* __restrict__ x__nhwc, T* __restrict__ out__nijc,
                                 long long n, FL_GEOM_PARAMS)
{
    FL_GEOM(g);
    FL_FOR_EACH(idx, n * g.h_out * g.w_out * g.c) {
        long long q = idx / g.c;
        const long long ch = idx - q * g.c;
        const long long j = q % g.w_out;
        q /= g.w_out;
        const long long i = q % g.h_out, nn = q / g.h_out;
        long long a_lo, a_hi, b_lo, b_hi;
        fli_tap_range(i * g.sh - g.pt, g.dh, g.kh, g.h, &a_lo, &a_hi);
        fli_tap_range(j * g.sw - g.pl, g.dw, g.kw, g.w, &b_lo, &b_hi);
        const T* xn = x__nhwc + nn * g.h * g.w * g.c + ch;
        T acc = T(0);
        for (long long a = a_lo; a < a_hi; ++a) {
            const long long r = i * g.sh - g.pt + a * g.dh;
            for (long long b = b_lo; b < b_hi; ++b)
                acc += xn[(r * g.w + j * g.sw - g.pl + b * g.dw) * g.c];
        }
        out__nijc[idx] = acc / (T)((a_hi - a_lo) * (b_hi - b_lo));
    }
}

// avg_pool_backward (adjoint of avg_pool_forward):
//   m_in[p, r, s, ch] = sum over taps (a, b) in row-major order of m_out[p, i, j, ch] / count(i, j)
// for the output cell (i, j) whose tap (a, b) reads (r, s); count = valid cells of window (i, j).
// Gather form as col2im (conv.cu): same terms, same order as the oracle, no atomics.
// Layout: m_out__pijc (n_pairs, h_out, w_out, c); m_in__phwc (n_pairs, h, w, c).
// Threads: one per input element (grid-stride), channel fastest.
template <typename T>
__global__ void avg_pool_backward(const T* __restrict__ m_out__pijc, T* __restrict__ m_in__phwc,
                                  long long n_pairs, FL_GEOM_PARAMS)
{
    FL_GEOM(g);
    FL_FOR_EACH(idx, n_pairs * g.h * g.w * g.c) {
        long long q = idx / g.c;
        const long long ch = idx - q * g.c;
        const long long s = q % g.w;
        q /= g.w;
        const long long r = q % g.h, p = q / g.h;
        const T* mp = m_out__pijc + p * g.h_out * g.w_out * g.c + ch;
        T acc = T(0);
        for (long long a = 0; a < g.kh; ++a) {
            const long long ti = r + g.pt - a * g.dh;
            if (ti < 0)
                break;
            if (ti % g.sh != 0 || ti / g.sh >= g.h_out)
                continue;
            const long long i = ti / g.sh;
            long long a_lo, a_hi;
            fli_tap_range(i * g.sh - g.pt, g.dh, g.kh, g.h, &a_lo, &a_hi);
            for (long long b = 0; b < g.kw; ++b) {
                const long long tj = s + g.pl - b * g.dw;
                if (tj < 0)
                    break;
                if (tj % g.sw != 0 || tj / g.sw >= g.w_out)
                    continue;
                const long long j = tj / g.sw;
                long long b_lo, b_hi;
                fli_tap_range(j * g.sw - g.pl, g.dw, g.kw, g.w, &b_lo, &b_hi);
                acc += mp[(i * g.w_out + j) * g.c] / (T)((a_hi - a_lo) * (b_hi - b_lo));
            }
        }
        m_in__phwc[idx] = acc;
    }
}

// Offset ((r*w + s)*c) of the first arg-max cell of window (i, j) in image v (already offset to
// the channel), over the valid taps [a_lo, a_hi) x [b_lo, b_hi) in row-major order (strict >:
// the first of equal maxima wins, as numpy's argmax).
template <typename T>
__device__ __forceinline__ long long fl_window_argmax(const T* __restrict__ v, const fl_geom& g,
                                                      long long r0, long long s0, long long a_lo,
                                                      long long a_hi, long long b_lo, long long b_hi)
{
    long long at = ((r0 + a_lo * g.dh) * g.w + s0 + b_lo * g.dw) * g.c;
    T best = v[at];
    for (long long a = a_lo; a < a_hi; ++a) {
        for (long long b = b_lo; b < b_hi; ++b) {
            const long long off = ((r0 + a * g.dh) * g.w + s0 + b * g.dw) * g.c;
            if (v[off] > best) {
                best = v[off];
                at = off;
            }
        }
    }
    return at;
}

// max_pool_backward: routes each window's multiplier m = m_out[p, i, j, ch] to arg-max cells of
// the pair's example x[pair_x[p]] and reference ref[pair_r[p]] (padding ignored). Cell A = first
// arg-max of the window in x, cell B = first arg-max in ref.
//   exact == 0 (the original's gradient rule): A receives m.
//   exact != 0: A == B receives m; otherwise A receives lambda*m and B (1 - lambda)*m with
//   lambda = fl_max_pool_backward_lambda(x[A], x[B], ref[A], ref[B]), so contributions sum to
//   x[A] - ref[B] for any reference.
// Gather form: each thread owns one input element (p, r, s, ch), visits the windows containing
// it in row-major tap order (the oracle's col2im order; = windows in descending (i, j), the CPU
// kernel's order), recomputes A and B for each and adds its own share. No atomics, no scratch
// memory; each window's arg-max is recomputed by the (few) threads whose cell it covers.
// Layout: m_out__pijc (n_pairs, h_out, w_out, c); x__nhwc (n_x, h, w, c); ref__nhwc (n_r, h, w, c);
//   pair_x__p, pair_r__p (n_pairs,); m_in__phwc (n_pairs, h, w, c).
// Threads: one per input element (grid-stride), channel fastest.
template <typename T>
__global__ void max_pool_backward(const T* __restrict__ m_out__pijc, const T* __restrict__ x__nhwc,
                                  const T* __restrict__ ref__nhwc,
                                  const long long* __restrict__ pair_x__p,
                                  const long long* __restrict__ pair_r__p, int exact,
                                  T* __restrict__ m_in__phwc, long long n_pairs, FL_GEOM_PARAMS)
{
    FL_GEOM(g);
    const long long hwc = g.h * g.w * g.c;
    FL_FOR_EACH(idx, n_pairs * hwc) {
        const long long p = idx / hwc, cell = idx - p * hwc;  // cell = (r*w + s)*c + ch
        const long long ch = cell % g.c, s = (cell / g.c) % g.w, r = cell / (g.c * g.w);
        const long long mine = cell - ch;  // offsets below are relative to channel ch
        const T* xp = x__nhwc + pair_x__p[p] * hwc + ch;
        const T* rp = ref__nhwc + pair_r__p[p] * hwc + ch;
        const T* mp = m_out__pijc + p * g.h_out * g.w_out * g.c + ch;
        T acc = T(0);
        for (long long a = 0; a < g.kh; ++a) {
            const long long ti = r + g.pt - a * g.dh;
            if (ti < 0)
                break;
            if (ti % g.sh != 0 || ti / g.sh >= g.h_out)
                continue;
            const long long i = ti / g.sh, r0 = i * g.sh - g.pt;
            long long a_lo, a_hi;
            fli_tap_range(r0, g.dh, g.kh, g.h, &a_lo, &a_hi);
            for (long long b = 0; b < g.kw; ++b) {
                const long long tj = s + g.pl - b * g.dw;
                if (tj < 0)
                    break;
                if (tj % g.sw != 0 || tj / g.sw >= g.w_out)
                    continue;
                const long long j = tj / g.sw, s0 = j * g.sw - g.pl;
                long long b_lo, b_hi;
                fli_tap_range(s0, g.dw, g.kw, g.w, &b_lo, &b_hi);
                const T m = mp[(i * g.w_out + j) * g.c];
                const long long cell_a = fl_window_argmax(xp, g, r0, s0, a_lo, a_hi, b_lo, b_hi);
                if (!exact) {
                    if (cell_a == mine)
                        acc += m;
                    continue;
                }
                const long long cell_b = fl_window_argmax(rp, g, r0, s0, a_lo, a_hi, b_lo, b_hi);
                if (cell_a == cell_b) {
                    if (cell_a == mine)
                        acc += m;
                } else if (cell_a == mine || cell_b == mine) {
                    const T lam = fl_max_pool_backward_lambda(xp[cell_a], xp[cell_b], rp[cell_a], rp[cell_b]);
                    acc += cell_a == mine ? lam * m : (T(1) - lam) * m;
                }
            }
        }
        m_in__phwc[idx] = acc;
    }
}
