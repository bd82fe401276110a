// pairs.cu -- pair gathers and the mean over references.
//
// Semantics: fastlift/backends/ops.py (Ops.pair_delta, pair_contributions, mean_over_refs); CPU
// twin: csrc/fl_kernels_impl.h. Conventions: fl_cuda.cuh. Pair p of example e with reference k is
// row e*n_refs + k (example-major, as everywhere in fastlift: csrc/fl_kernels.h).
#include "fl_cuda.cuh"

// pair_delta: delta[p, f] = x[pair_x[p], f] - r[pair_r[p], f].
// Layout: x__nf (n_x, F); r__nf (n_r, F); pair_x__p, pair_r__p (n_pairs,); delta__pf (n_pairs, F).
// Threads: one per output element i = p*F + f (grid-stride); consecutive threads read
// consecutive features of one gathered row.
template <typename T>
__global__ void pair_delta(const T* __restrict__ x__nf, const T* __restrict__ r__nf,
                           const long long* __restrict__ pair_x__p,
                           const long long* __restrict__ pair_r__p, T* __restrict__ delta__pf,
                           long long n_pairs, long long n_features)
{
    FL_FOR_EACH(i, n_pairs * n_features) {
        const long long p = i / n_features, f = i - p * n_features;
        delta__pf[i] = x__nf[pair_x__p[p] * n_features + f] - r__nf[pair_r__p[p] * n_features + f];
    }
}

// pair_contributions: c[p, f] = m[p, f] * (x[pair_x[p], f] - r[pair_r[p], f]).
// Layout: m__pf, c__pf (n_pairs, F); x__nf (n_x, F); r__nf (n_r, F). Threads as pair_delta.
template <typename T>
__global__ void pair_contributions(const T* __restrict__ m__pf, const T* __restrict__ x__nf,
                                   const T* __restrict__ r__nf,
                                   const long long* __restrict__ pair_x__p,
                                   const long long* __restrict__ pair_r__p, T* __restrict__ c__pf,
                                   long long n_pairs, long long n_features)
{
    FL_FOR_EACH(i, n_pairs * n_features) {
        const long long p = i / n_features, f = i - p * n_features;
        c__pf[i] = m__pf[i] * (x__nf[pair_x__p[p] * n_features + f] - r__nf[pair_r__p[p] * n_features + f]);
    }
}

// mean_over_refs: out[e, f] = (sum over k = 0, 1, ... of a[e*n_refs + k, f]) / n_refs, summed in
// double in reference order and rounded once, exactly as the oracle and the CPU kernel do, so the
// result is the same bits on every backend and for every chunking.
// Layout: a__ekf (n_examples*n_refs, F), example-major; out__ef (n_examples, F).
// Threads: one per output element i = e*F + f (grid-stride); the K reads of a thread are F apart,
// and consecutive threads read consecutive features (coalesced).
template <typename T>
__global__ void mean_over_refs(const T* __restrict__ a__ekf, T* __restrict__ out__ef,
                               long long n_examples, long long n_refs, long long n_features)
{
    FL_FOR_EACH(i, n_examples * n_features) {
        const long long e = i / n_features, f = i - e * n_features;
        const T* a = a__ekf + e * n_refs * n_features + f;
        double acc = 0.0;
        for (long long k = 0; k < n_refs; ++k)
            acc += (double)a[k * n_features];
        out__ef[i] = (T)(acc / (double)n_refs);
    }
}
