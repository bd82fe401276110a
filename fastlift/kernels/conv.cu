// conv.cu -- convolution helpers: im2col and its adjoint col2im. The GEMMs themselves run on
// cuBLAS through cupy.matmul (fastlift/backends/cupy_ops.py).
//
// Semantics: fastlift/backends/ops.py (Ops.im2col, Ops.col2im); CPU twin: csrc/fl_kernels_impl.h.
// Geometry: output cell (i, j) reads input row i*sh - pt + a*dh and column j*sw - pl + b*dw for
// tap t = a*kw + b; positions outside the input are padding (zero). Conventions: fl_cuda.cuh.
#include "fl_cuda.cuh"

// im2col: cols[n, i, j, t*c + ch] = x[n, i*sh - pt + a*dh, j*sw - pl + b*dw, ch] (t = a*kw + b),
// or 0 where that position is padding.
// Layout: x__nhwc (n, h, w, c); cols__nijtc (n, h_out, w_out, kh*kw*c).
// Threads: one per output element (grid-stride), channel fastest: consecutive threads copy
// consecutive channels of one input cell.
template <typename T>
__global__ void im2col(const T* __restrict__ x__nhwc, T* __restrict__ cols__nijtc, long long n,
                       FL_GEOM_PARAMS)
{
    FL_GEOM(g);
    const long long taps = g.kh * g.kw;
    FL_FOR_EACH(idx, n * g.h_out * g.w_out * taps * g.c) {
        long long q = idx / g.c;
        const long long ch = idx - q * g.c;
        const long long t = q % taps;
        q /= taps;
        const long long j = q % g.w_out;
        q /= g.w_out;
        const long long i = q % g.h_out, nn = q / g.h_out;
        const long long a = t / g.kw, b = t - a * g.kw;
        const long long r = i * g.sh - g.pt + a * g.dh, s = j * g.sw - g.pl + b * g.dw;
        const bool inside = r >= 0 && r < g.h && s >= 0 && s < g.w;
        cols__nijtc[idx] = inside ? x__nhwc[((nn * g.h + r) * g.w + s) * g.c + ch] : T(0);
    }
}

// col2im (adjoint of im2col): x[n, r, s, ch] = sum over taps (a, b), in row-major tap order, of
// cols[n, i, j, (a*kw + b)*c + ch] for the output cell (i, j) whose tap (a, b) reads (r, s).
// Gather form, not scatter: each thread owns one input element and sums its own terms from 0 in
// the oracle's order, so there are no atomics and the result is bitwise the oracle's.
// Layout: cols__nijtc (n, h_out, w_out, kh*kw*c); x__nhwc (n, h, w, c).
// Threads: one per input element (grid-stride), channel fastest.
template <typename T>
__global__ void col2im(const T* __restrict__ cols__nijtc, T* __restrict__ x__nhwc, long long n,
                       FL_GEOM_PARAMS)
{
    FL_GEOM(g);
    const long long tc = g.kh * g.kw * g.c;
    FL_FOR_EACH(idx, n * g.h * g.w * g.c) {
        long long q = idx / g.c;
        const long long ch = idx - q * g.c;
        const long long s = q % g.w;
        q /= g.w;
        const long long r = q % g.h, nn = q / g.h;
        const T* cn = cols__nijtc + nn * g.h_out * g.w_out * tc;
        T acc = T(0);
        for (long long a = 0; a < g.kh; ++a) {
            const long long ti = r + g.pt - a * g.dh;  // = i*sh; decreases with a
            if (ti < 0)
                break;
            if (ti % g.sh != 0 || ti / g.sh >= g.h_out)
                continue;
            const T* ci = cn + (ti / g.sh) * g.w_out * tc + a * g.kw * g.c + ch;
            for (long long b = 0; b < g.kw; ++b) {
                const long long tj = s + g.pl - b * g.dw;  // = j*sw; decreases with b
                if (tj < 0)
                    break;
                if (tj % g.sw != 0 || tj / g.sw >= g.w_out)
                    continue;
                acc += ci[(tj / g.sw) * tc + b * g.c];
            }
        }
        x__nhwc[idx] = acc;
    }
}
