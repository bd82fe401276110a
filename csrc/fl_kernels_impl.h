// fl_kernels_impl.h -- body of the CPU kernels for one element type. Do not include directly:
// fl_kernels.h includes it twice, with FL_T = float, FL_K(name) = fl_name_f (the API),
// FL_KI(name) = fli_name_f (internal helpers), FL_M(name) = fl_name_f (fl_math.h functions),
// and again for double with the _d suffix.
// The dimension-suffix alphabet and the conventions are at the top of fl_kernels.h.
// No include guard on purpose.
#ifndef FL_T
#  error "include fl_kernels.h, not fl_kernels_impl.h"
#endif

// ======================================================================== elementwise
// activation_forward: out[n, f] = act(x[n, f]; alpha[f]).
// activation_grad:    out[n, f] = act'(x[n, f]; alpha[f]).
// Layout: x__nf, out__nf (n_rows, n_features); alpha__f (n_features,).
// Threads: each thread takes a block of rows [row_begin, row_end).
FL_ROWS void FL_KI(activation_forward_rows)(const int act, const FL_T *FL_RESTRICT x__nf,
                                           const FL_T *FL_RESTRICT alpha__f,
                                           FL_T *FL_RESTRICT out__nf, int64_t n_features,
                                           int64_t row_begin, int64_t row_end)
{
    for (int64_t n = row_begin; n < row_end; ++n) {
        const FL_T *x = x__nf + n * n_features;
        FL_T *out = out__nf + n * n_features;
        for (int64_t f = 0; f < n_features; ++f)
            out[f] = FL_M(activation_forward_elem)(act, x[f], alpha__f[f]);
    }
}

FL_KERNEL void FL_K(activation_forward)(int act, const FL_T *FL_RESTRICT x__nf,    // IN
                                        const FL_T *FL_RESTRICT alpha__f,          // IN
                                        FL_T *FL_RESTRICT out__nf,                 // OUT
                                        int64_t n_features, int64_t row_begin, int64_t row_end)
{
#define FL_CALL(ACT) \
    FL_KI(activation_forward_rows)(ACT, x__nf, alpha__f, out__nf, n_features, row_begin, row_end)
    FL_ACT_DISPATCH(act, FL_CALL)
#undef FL_CALL
}

FL_ROWS void FL_KI(activation_grad_rows)(const int act, const FL_T *FL_RESTRICT x__nf,
                                        const FL_T *FL_RESTRICT alpha__f,
                                        FL_T *FL_RESTRICT out__nf, int64_t n_features,
                                        int64_t row_begin, int64_t row_end)
{
    for (int64_t n = row_begin; n < row_end; ++n) {
        const FL_T *x = x__nf + n * n_features;
        FL_T *out = out__nf + n * n_features;
        for (int64_t f = 0; f < n_features; ++f)
            out[f] = FL_M(activation_grad_elem)(act, x[f], alpha__f[f]);
    }
}

FL_KERNEL void FL_K(activation_grad)(int act, const FL_T *FL_RESTRICT x__nf,    // IN
                                     const FL_T *FL_RESTRICT alpha__f,          // IN
                                     FL_T *FL_RESTRICT out__nf,                 // OUT
                                     int64_t n_features, int64_t row_begin, int64_t row_end)
{
#define FL_CALL(ACT) \
    FL_KI(activation_grad_rows)(ACT, x__nf, alpha__f, out__nf, n_features, row_begin, row_end)
    FL_ACT_DISPATCH(act, FL_CALL)
#undef FL_CALL
}

// add_activation: out[n, f] = other[n, f] + act(x[n, f]; alpha[f]): a residual merge of an
// activation nothing else reads, in one pass instead of two (the same bits: the sum rounds once).
// Layout: x__nf, other__nf, out__nf (n_rows, n_features); alpha__f (n_features,).
// Threads: each thread takes a block of rows [row_begin, row_end).
FL_ROWS void FL_KI(add_activation_rows)(const int act, const FL_T *FL_RESTRICT x__nf,
                                       const FL_T *FL_RESTRICT alpha__f,
                                       const FL_T *FL_RESTRICT other__nf, FL_T *FL_RESTRICT out__nf,
                                       int64_t n_features, int64_t row_begin, int64_t row_end)
{
    for (int64_t n = row_begin; n < row_end; ++n) {
        const FL_T *x = x__nf + n * n_features, *other = other__nf + n * n_features;
        FL_T *out = out__nf + n * n_features;
        for (int64_t f = 0; f < n_features; ++f)
            out[f] = other[f] + FL_M(activation_forward_elem)(act, x[f], alpha__f[f]);
    }
}

FL_KERNEL void FL_K(add_activation)(int act, const FL_T *FL_RESTRICT x__nf,        // IN
                                    const FL_T *FL_RESTRICT alpha__f,              // IN
                                    const FL_T *FL_RESTRICT other__nf,             // IN
                                    FL_T *FL_RESTRICT out__nf,                     // OUT
                                    int64_t n_features, int64_t row_begin, int64_t row_end)
{
#define FL_CALL(ACT) \
    FL_KI(add_activation_rows)(ACT, x__nf, alpha__f, other__nf, out__nf, n_features, row_begin, row_end)
    FL_ACT_DISPATCH(act, FL_CALL)
#undef FL_CALL
}

// add: out[i] = a[i] + b[i] (residual merges forward, multipliers meeting in backward).
// Layout: flat arrays of equal length. Threads: each thread takes a range [begin, end).
FL_KERNEL void FL_K(add)(const FL_T *FL_RESTRICT a, const FL_T *FL_RESTRICT b,   // IN
                         FL_T *FL_RESTRICT out,                                 // OUT
                         int64_t begin, int64_t end)
{
    for (int64_t i = begin; i < end; ++i)
        out[i] = a[i] + b[i];
}

// ======================================================================== rule kernels
// All rule kernels fuse the gather through the pair index, the per-element rule and the write:
// one pass over the pair's row, no temporaries.

// rescale_backward (Rescale rule):
//   m_in[p, f] = m_out[p, f] * s,  x = x_in[pair_x[p], f], ref = r_in[pair_r[p], f],
//   s = (x_out[pair_x[p], f] - r_out[pair_r[p], f]) / (x - ref), or act'(ref) where
//   |x - ref| < FL_NEAR_ZERO (fl_rescale_backward_elem). x_out and r_out hold f(x_in), f(r_in);
//   with `recompute` (ReLU's rows) they are not read: f(x), f(ref) are recomputed (exact).
// Layout: m_out__pf, m_in__pf (n_pairs, F); x_in__nf, x_out__nf (n_x, F);
//   r_in__nf, r_out__nf (n_r, F); pair_x__p, pair_r__p (n_pairs,); alpha__f (F,).
// Threads: each thread takes a block of pairs [p_begin, p_end).
FL_ROWS void FL_KI(rescale_backward_rows)(
    const int act, const int recompute, const FL_T *FL_RESTRICT m_out__pf, const FL_T *FL_RESTRICT x_in__nf,
    const FL_T *FL_RESTRICT r_in__nf, const FL_T *FL_RESTRICT x_out__nf,
    const FL_T *FL_RESTRICT r_out__nf, const int64_t *FL_RESTRICT pair_x__p,
    const int64_t *FL_RESTRICT pair_r__p, const FL_T *FL_RESTRICT alpha__f,
    FL_T *FL_RESTRICT m_in__pf, int64_t n_features, int64_t p_begin, int64_t p_end)
{
    for (int64_t p = p_begin; p < p_end; ++p) {
        const int64_t row_x = pair_x__p[p] * n_features, row_r = pair_r__p[p] * n_features;
        const FL_T *x = x_in__nf + row_x, *y = x_out__nf + row_x;
        const FL_T *ref = r_in__nf + row_r, *y_ref = r_out__nf + row_r;
        const FL_T *m = m_out__pf + p * n_features;
        FL_T *out = m_in__pf + p * n_features;
        for (int64_t f = 0; f < n_features; ++f) {
            const FL_T a = alpha__f[f];
            const FL_T yf = recompute ? FL_M(activation_forward_elem)(act, x[f], a) : y[f];
            const FL_T yr = recompute ? FL_M(activation_forward_elem)(act, ref[f], a) : y_ref[f];
            out[f] = FL_M(rescale_backward_elem)(act, m[f], x[f], ref[f], yf, yr, a);
        }
    }
}

// rescale_backward's ReLU rows, f recomputed (a quarter less to read), on the best vector ISA with
// the baseline's bits (no product is followed by a sum, nothing to contract into an FMA). Other
// activations run on the baseline.
FL_ROWS void FL_KI(rescale_relu_rows)(const FL_T *FL_RESTRICT m_out__pf, const FL_T *FL_RESTRICT x_in__nf,
                                     const FL_T *FL_RESTRICT r_in__nf, const int64_t *FL_RESTRICT pair_x__p,
                                     const int64_t *FL_RESTRICT pair_r__p, const FL_T *FL_RESTRICT alpha__f,
                                     FL_T *FL_RESTRICT m_in__pf, int64_t n_features, int64_t p_begin, int64_t p_end)
{
    FL_KI(rescale_backward_rows)(FL_ACT_RELU, 1, m_out__pf, x_in__nf, r_in__nf, x_in__nf, r_in__nf, pair_x__p,
                                pair_r__p, alpha__f, m_in__pf, n_features, p_begin, p_end);
}

FL_ISA_VARIANTS(rescale_relu_rows,
                (const FL_T *m_out__pf, const FL_T *x_in__nf, const FL_T *r_in__nf, const int64_t *pair_x__p,
                 const int64_t *pair_r__p, const FL_T *alpha__f, FL_T *m_in__pf, int64_t n_features, int64_t p_begin,
                 int64_t p_end),
                (m_out__pf, x_in__nf, r_in__nf, pair_x__p, pair_r__p, alpha__f, m_in__pf, n_features, p_begin, p_end))

FL_KERNEL void FL_K(rescale_backward)(int act,
                                      const FL_T *FL_RESTRICT m_out__pf,   // IN
                                      const FL_T *FL_RESTRICT x_in__nf,    // IN
                                      const FL_T *FL_RESTRICT r_in__nf,    // IN
                                      const FL_T *FL_RESTRICT x_out__nf,   // IN
                                      const FL_T *FL_RESTRICT r_out__nf,   // IN
                                      const int64_t *FL_RESTRICT pair_x__p,  // IN
                                      const int64_t *FL_RESTRICT pair_r__p,  // IN
                                      const FL_T *FL_RESTRICT alpha__f,    // IN
                                      FL_T *FL_RESTRICT m_in__pf,          // OUT
                                      int64_t n_features, int64_t p_begin, int64_t p_end)
{
    if (act == FL_ACT_RELU) {
        FL_ISA_CALL(fl_isa(FL_ISA_AUTO), rescale_relu_rows,
                    (m_out__pf, x_in__nf, r_in__nf, pair_x__p, pair_r__p, alpha__f, m_in__pf, n_features, p_begin,
                     p_end));
        return;
    }
#define FL_CALL(ACT)                                                                      \
    FL_KI(rescale_backward_rows)(ACT, 0, m_out__pf, x_in__nf, r_in__nf, x_out__nf, r_out__nf, \
                                pair_x__p, pair_r__p, alpha__f, m_in__pf, n_features,    \
                                p_begin, p_end)
    FL_ACT_DISPATCH(act, FL_CALL)
#undef FL_CALL
}

// gradient_backward (gradient rule): m_in[p, f] = m_out[p, f] * act'(x_in[pair_x[p], f]).
// guided_backprop_backward: the same where m_out[p, f] > 0, else 0.
// Layout: m_out__pf, m_in__pf (n_pairs, F); x_in__nf (n_x, F); pair_x__p (n_pairs,).
// Threads: each thread takes a block of pairs [p_begin, p_end).
FL_ROWS void FL_KI(gradient_backward_rows)(
    const int act, const int guided, const FL_T *FL_RESTRICT m_out__pf,
    const FL_T *FL_RESTRICT x_in__nf, const int64_t *FL_RESTRICT pair_x__p,
    const FL_T *FL_RESTRICT alpha__f, FL_T *FL_RESTRICT m_in__pf, int64_t n_features,
    int64_t p_begin, int64_t p_end)
{
    for (int64_t p = p_begin; p < p_end; ++p) {
        const FL_T *x = x_in__nf + pair_x__p[p] * n_features;
        const FL_T *m = m_out__pf + p * n_features;
        FL_T *out = m_in__pf + p * n_features;
        if (guided) {
            for (int64_t f = 0; f < n_features; ++f) {
                const FL_T v = m[f] * FL_M(activation_grad_elem)(act, x[f], alpha__f[f]);
                out[f] = m[f] > (FL_T)0 ? v : (FL_T)0;
            }
        } else {
            for (int64_t f = 0; f < n_features; ++f)
                out[f] = m[f] * FL_M(activation_grad_elem)(act, x[f], alpha__f[f]);
        }
    }
}

FL_KERNEL void FL_K(gradient_backward)(int act,
                                       const FL_T *FL_RESTRICT m_out__pf,     // IN
                                       const FL_T *FL_RESTRICT x_in__nf,      // IN
                                       const int64_t *FL_RESTRICT pair_x__p,  // IN
                                       const FL_T *FL_RESTRICT alpha__f,      // IN
                                       FL_T *FL_RESTRICT m_in__pf,            // OUT
                                       int64_t n_features, int64_t p_begin, int64_t p_end)
{
#define FL_CALL(ACT)                                                                  \
    FL_KI(gradient_backward_rows)(ACT, 0, m_out__pf, x_in__nf, pair_x__p, alpha__f,    \
                                 m_in__pf, n_features, p_begin, p_end)
    FL_ACT_DISPATCH(act, FL_CALL)
#undef FL_CALL
}

FL_KERNEL void FL_K(guided_backprop_backward)(int act,
                                              const FL_T *FL_RESTRICT m_out__pf,     // IN
                                              const FL_T *FL_RESTRICT x_in__nf,      // IN
                                              const int64_t *FL_RESTRICT pair_x__p,  // IN
                                              const FL_T *FL_RESTRICT alpha__f,      // IN
                                              FL_T *FL_RESTRICT m_in__pf,            // OUT
                                              int64_t n_features, int64_t p_begin,
                                              int64_t p_end)
{
#define FL_CALL(ACT)                                                                  \
    FL_KI(gradient_backward_rows)(ACT, 1, m_out__pf, x_in__nf, pair_x__p, alpha__f,    \
                                 m_in__pf, n_features, p_begin, p_end)
    FL_ACT_DISPATCH(act, FL_CALL)
#undef FL_CALL
}

// reveal_cancel_split (RevealCancel output split), x0 = r_in[pair_r[p], f]:
//   dy_pos[p, f] = 0.5*[(f(x0+d_pos) - f(x0)) + (f(x0+d_pos+d_neg) - f(x0+d_neg))]
//   dy_neg[p, f] = 0.5*[(f(x0+d_neg) - f(x0)) + (f(x0+d_pos+d_neg) - f(x0+d_pos))]
// with d_pos = d_pos__pf[p, f], d_neg = d_neg__pf[p, f] (fl_reveal_cancel_split_elem).
// Layout: d_pos__pf, d_neg__pf, dy_pos__pf, dy_neg__pf (n_pairs, F); r_in__nf (n_r, F).
// Threads: each thread takes a block of pairs [p_begin, p_end).
FL_ROWS void FL_KI(reveal_cancel_split_rows)(
    const int act, const FL_T *FL_RESTRICT r_in__nf, const FL_T *FL_RESTRICT d_pos__pf,
    const FL_T *FL_RESTRICT d_neg__pf, const int64_t *FL_RESTRICT pair_r__p,
    const FL_T *FL_RESTRICT alpha__f, FL_T *FL_RESTRICT dy_pos__pf,
    FL_T *FL_RESTRICT dy_neg__pf, int64_t n_features, int64_t p_begin, int64_t p_end)
{
    for (int64_t p = p_begin; p < p_end; ++p) {
        const FL_T *x0 = r_in__nf + pair_r__p[p] * n_features;
        const int64_t row = p * n_features;
        const FL_T *dp = d_pos__pf + row, *dn = d_neg__pf + row;
        FL_T *out_pos = dy_pos__pf + row, *out_neg = dy_neg__pf + row;
        for (int64_t f = 0; f < n_features; ++f) {
            FL_T dy_pos, dy_neg;
            FL_M(reveal_cancel_split_elem)(act, x0[f], dp[f], dn[f], alpha__f[f], &dy_pos, &dy_neg);
            out_pos[f] = dy_pos;
            out_neg[f] = dy_neg;
        }
    }
}

FL_KERNEL void FL_K(reveal_cancel_split)(int act,
                                         const FL_T *FL_RESTRICT r_in__nf,      // IN
                                         const FL_T *FL_RESTRICT d_pos__pf,     // IN
                                         const FL_T *FL_RESTRICT d_neg__pf,     // IN
                                         const int64_t *FL_RESTRICT pair_r__p,  // IN
                                         const FL_T *FL_RESTRICT alpha__f,      // IN
                                         FL_T *FL_RESTRICT dy_pos__pf,          // OUT
                                         FL_T *FL_RESTRICT dy_neg__pf,          // OUT
                                         int64_t n_features, int64_t p_begin, int64_t p_end)
{
#define FL_CALL(ACT)                                                                       \
    FL_KI(reveal_cancel_split_rows)(ACT, r_in__nf, d_pos__pf, d_neg__pf, pair_r__p,         \
                                   alpha__f, dy_pos__pf, dy_neg__pf, n_features, p_begin, \
                                   p_end)
    FL_ACT_DISPATCH(act, FL_CALL)
#undef FL_CALL
}

// reveal_cancel_backward (RevealCancel rule), x0 = r_in[pair_r[p], f]:
//   m_in_pos[p, f] = m_pos[p, f] * dy_pos / d_pos,  m_in_neg[p, f] = m_neg[p, f] * dy_neg / d_neg,
// where |d_pos| < FL_NEAR_ZERO uses the limit 0.5*(f'(x0) + f'(x0 + d_neg)) for dy_pos / d_pos,
// and symmetrically for d_neg (fl_reveal_cancel_backward_elem). The split is recomputed in the same
// pass instead of being read back from reveal_cancel_split.
// Layout: m_pos__pf, m_neg__pf, d_pos__pf, d_neg__pf, m_in_pos__pf, m_in_neg__pf
//   (n_pairs, F); r_in__nf (n_r, F).
// Threads: each thread takes a block of pairs [p_begin, p_end).
FL_ROWS void FL_KI(reveal_cancel_backward_rows)(
    const int act, const FL_T *FL_RESTRICT m_pos__pf, const FL_T *FL_RESTRICT m_neg__pf,
    const FL_T *FL_RESTRICT r_in__nf, const FL_T *FL_RESTRICT d_pos__pf,
    const FL_T *FL_RESTRICT d_neg__pf, const int64_t *FL_RESTRICT pair_r__p,
    const FL_T *FL_RESTRICT alpha__f, FL_T *FL_RESTRICT m_in_pos__pf,
    FL_T *FL_RESTRICT m_in_neg__pf, int64_t n_features, int64_t p_begin, int64_t p_end)
{
    for (int64_t p = p_begin; p < p_end; ++p) {
        const FL_T *x0 = r_in__nf + pair_r__p[p] * n_features;
        const int64_t row = p * n_features;
        const FL_T *mp = m_pos__pf + row, *mn = m_neg__pf + row;
        const FL_T *dp = d_pos__pf + row, *dn = d_neg__pf + row;
        FL_T *out_pos = m_in_pos__pf + row, *out_neg = m_in_neg__pf + row;
        for (int64_t f = 0; f < n_features; ++f) {
            FL_T m_in_pos, m_in_neg;
            FL_M(reveal_cancel_backward_elem)(act, mp[f], mn[f], x0[f], dp[f], dn[f], alpha__f[f], &m_in_pos,
                                              &m_in_neg);
            out_pos[f] = m_in_pos;
            out_neg[f] = m_in_neg;
        }
    }
}

FL_KERNEL void FL_K(reveal_cancel_backward)(int act,
                                            const FL_T *FL_RESTRICT m_pos__pf,     // IN
                                            const FL_T *FL_RESTRICT m_neg__pf,     // IN
                                            const FL_T *FL_RESTRICT r_in__nf,      // IN
                                            const FL_T *FL_RESTRICT d_pos__pf,     // IN
                                            const FL_T *FL_RESTRICT d_neg__pf,     // IN
                                            const int64_t *FL_RESTRICT pair_r__p,  // IN
                                            const FL_T *FL_RESTRICT alpha__f,      // IN
                                            FL_T *FL_RESTRICT m_in_pos__pf,        // OUT
                                            FL_T *FL_RESTRICT m_in_neg__pf,        // OUT
                                            int64_t n_features, int64_t p_begin,
                                            int64_t p_end)
{
#define FL_CALL(ACT)                                                                        \
    FL_KI(reveal_cancel_backward_rows)(ACT, m_pos__pf, m_neg__pf, r_in__nf, d_pos__pf,       \
                                      d_neg__pf, pair_r__p, alpha__f, m_in_pos__pf,         \
                                      m_in_neg__pf, n_features, p_begin, p_end)
    FL_ACT_DISPATCH(act, FL_CALL)
#undef FL_CALL
}

// ======================================================================== pair gathers
// pair_delta:         delta[p, f] = x[pair_x[p], f] - r[pair_r[p], f]
// pair_contributions: c[p, f] = m[p, f] * (x[pair_x[p], f] - r[pair_r[p], f])
// Layout: x__nf (n_x, F); r__nf (n_r, F); m__pf, delta__pf, c__pf (n_pairs, F).
// Threads: each thread takes a block of pairs [p_begin, p_end).
FL_KERNEL void FL_K(pair_delta)(const FL_T *FL_RESTRICT x__nf,          // IN
                                const FL_T *FL_RESTRICT r__nf,          // IN
                                const int64_t *FL_RESTRICT pair_x__p,   // IN
                                const int64_t *FL_RESTRICT pair_r__p,   // IN
                                FL_T *FL_RESTRICT delta__pf,            // OUT
                                int64_t n_features, int64_t p_begin, int64_t p_end)
{
    for (int64_t p = p_begin; p < p_end; ++p) {
        const FL_T *x = x__nf + pair_x__p[p] * n_features;
        const FL_T *r = r__nf + pair_r__p[p] * n_features;
        FL_T *out = delta__pf + p * n_features;
        for (int64_t f = 0; f < n_features; ++f)
            out[f] = x[f] - r[f];
    }
}

FL_KERNEL void FL_K(pair_contributions)(const FL_T *FL_RESTRICT m__pf,          // IN
                                        const FL_T *FL_RESTRICT x__nf,          // IN
                                        const FL_T *FL_RESTRICT r__nf,          // IN
                                        const int64_t *FL_RESTRICT pair_x__p,   // IN
                                        const int64_t *FL_RESTRICT pair_r__p,   // IN
                                        FL_T *FL_RESTRICT c__pf,                // OUT
                                        int64_t n_features, int64_t p_begin, int64_t p_end)
{
    for (int64_t p = p_begin; p < p_end; ++p) {
        const FL_T *x = x__nf + pair_x__p[p] * n_features;
        const FL_T *r = r__nf + pair_r__p[p] * n_features;
        const FL_T *m = m__pf + p * n_features;
        FL_T *out = c__pf + p * n_features;
        for (int64_t f = 0; f < n_features; ++f)
            out[f] = m[f] * (x[f] - r[f]);
    }
}

// mean_over_refs: out[e, f] = (sum_k a[e*n_refs + k, f]) / n_refs, summed in double in
// reference order k = 0, 1, ... (so the result does not depend on chunking) and rounded once.
// Layout: a__ekf (n_examples*n_refs, F), example-major; out__ef (n_examples, F).
// Threads: each thread takes a block of examples [e_begin, e_end) and of features
// [f_begin, f_end) (a run of IG has one example per call: its threads split the features).
// Features are processed in FL_FBLOCK runs so the accumulators stay on the stack and every
// input row is read contiguously.
FL_KERNEL void FL_K(mean_over_refs)(const FL_T *FL_RESTRICT a__ekf,   // IN
                                    FL_T *FL_RESTRICT out__ef,        // OUT
                                    int64_t n_refs, int64_t n_features, int64_t e_begin,
                                    int64_t e_end, int64_t f_begin, int64_t f_end)
{
    double acc[FL_FBLOCK];
    for (int64_t e = e_begin; e < e_end; ++e) {
        const FL_T *a = a__ekf + e * n_refs * n_features;
        FL_T *out = out__ef + e * n_features;
        for (int64_t f0 = f_begin; f0 < f_end; f0 += FL_FBLOCK) {
            const int64_t nf = f_end - f0 < FL_FBLOCK ? f_end - f0 : FL_FBLOCK;
            for (int64_t f = 0; f < nf; ++f)
                acc[f] = 0.0;
            for (int64_t k = 0; k < n_refs; ++k) {
                const FL_T *row = a + k * n_features + f0;
                for (int64_t f = 0; f < nf; ++f)
                    acc[f] += (double)row[f];
            }
            for (int64_t f = 0; f < nf; ++f)
                out[f0 + f] = (FL_T)(acc[f] / (double)n_refs);
        }
    }
}

// ======================================================================== convolution helpers
// im2col_cell: one output cell (n, i, j) of im2col into dst (kh*kw*c values).
// Each tap row a copies its valid taps as contiguous channel runs (one run of (b_hi - b_lo)*c
// values when dw == 1) and zero-fills the padding taps.
FL_ROWS void FL_KI(im2col_cell)(const FL_T *FL_RESTRICT x__nhwc, FL_T *FL_RESTRICT dst,
                               fl_geometry g, int64_t n, int64_t i, int64_t j)
{
    const int64_t c = g.c, kwc = g.kw * g.c;
    const FL_T *xn = x__nhwc + n * g.h * g.w * c;
    long long a_lo, a_hi, b_lo, b_hi;
    fli_tap_range(i * g.sh - g.pt, g.dh, g.kh, g.h, &a_lo, &a_hi);
    fli_tap_range(j * g.sw - g.pl, g.dw, g.kw, g.w, &b_lo, &b_hi);
    for (int64_t a = 0; a < g.kh; ++a) {
        FL_T *d = dst + a * kwc;
        if (a < a_lo || a >= a_hi || b_lo >= b_hi) {
            for (int64_t u = 0; u < kwc; ++u)
                d[u] = (FL_T)0;
            continue;
        }
        const int64_t r = i * g.sh - g.pt + a * g.dh;
        const FL_T *src = xn + (r * g.w + (j * g.sw - g.pl + b_lo * g.dw)) * c;
        for (int64_t u = 0; u < b_lo * c; ++u)
            d[u] = (FL_T)0;
        if (g.dw == 1) {
            FL_T *dd = d + b_lo * c;
            const int64_t run = (b_hi - b_lo) * c;
            for (int64_t u = 0; u < run; ++u)
                dd[u] = src[u];
        } else {
            for (int64_t b = b_lo; b < b_hi; ++b) {
                const FL_T *s = src + (b - b_lo) * g.dw * c;
                FL_T *dd = d + b * c;
                for (int64_t ch = 0; ch < c; ++ch)
                    dd[ch] = s[ch];
            }
        }
        for (int64_t u = b_hi * c; u < kwc; ++u)
            d[u] = (FL_T)0;
    }
}

// im2col: cols[n, i, j, t*c + ch] = x[n, i*sh - pt + a*dh, j*sw - pl + b*dw, ch] for tap
// t = a*kw + b, or 0 where that position is padding.
// Layout: x__nhwc (n, h, w, c); cols__nijtc (n, h_out, w_out, kh*kw*c).
// Threads: one output row (n, i) is row index n*h_out + i; each thread takes a block of them.
FL_KERNEL void FL_K(im2col)(const FL_T *FL_RESTRICT x__nhwc,      // IN
                            FL_T *FL_RESTRICT cols__nijtc,        // OUT
                            fl_geometry g, int64_t row_begin, int64_t row_end)
{
    const int64_t tc = g.kh * g.kw * g.c;
    for (int64_t q = row_begin; q < row_end; ++q)
        for (int64_t j = 0; j < g.w_out; ++j)
            FL_KI(im2col_cell)(x__nhwc, cols__nijtc + (q * g.w_out + j) * tc, g, q / g.h_out, q % g.h_out, j);
}

// im2col_cells: the same values for a range of output cells, cell = (n*h_out + i)*w_out + j,
// written as consecutive rows of dst: cells__qt (cell_end - cell_begin, kh*kw*c). Used to unfold
// one GEMM block at a time (the fused convolution of _cpu.conv_forward) so the unfolded rows are
// still in cache when the GEMM reads them.
FL_KERNEL void FL_K(im2col_cells)(const FL_T *FL_RESTRICT x__nhwc,   // IN
                                  FL_T *FL_RESTRICT cells__qt,       // OUT
                                  fl_geometry g, int64_t cell_begin, int64_t cell_end)
{
    const int64_t tc = g.kh * g.kw * g.c;
    for (int64_t q = cell_begin; q < cell_end; ++q) {
        const int64_t j = q % g.w_out, row = q / g.w_out;
        FL_KI(im2col_cell)(x__nhwc, cells__qt + (q - cell_begin) * tc, g, row / g.h_out, row % g.h_out, j);
    }
}

// col2im (adjoint of im2col): x[n, r, s, ch] = sum over taps (a, b), in row-major tap order,
// of cols[n, i, j, (a*kw + b)*c + ch] for the output cell (i, j) whose tap (a, b) reads (r, s),
// i.e. r = i*sh - pt + a*dh and s = j*sw - pl + b*dw (at most one cell per tap).
// Gather form: each input cell sums its own contributions, starting from 0, in the same order
// as ops.py's loop over taps, so the result is deterministic and bitwise equal to the oracle.
// Layout: cols__nijtc (n, h_out, w_out, kh*kw*c); x__nhwc (n, h, w, c).
// Threads: one input row (n, r) is row index n*h + r; each thread takes a block of them.
FL_KERNEL void FL_K(col2im)(const FL_T *FL_RESTRICT cols__nijtc,   // IN
                            FL_T *FL_RESTRICT x__nhwc,             // OUT
                            fl_geometry g, int64_t row_begin, int64_t row_end)
{
    const int64_t c = g.c, tc = g.kh * g.kw * g.c;
    for (int64_t q = row_begin; q < row_end; ++q) {
        const int64_t n = q / g.h, r = q % g.h;
        const FL_T *cn = cols__nijtc + n * g.h_out * g.w_out * tc;
        for (int64_t s = 0; s < g.w; ++s) {
            FL_T *d = x__nhwc + (q * g.w + s) * c;
            for (int64_t ch = 0; ch < c; ++ch)
                d[ch] = (FL_T)0;
            for (int64_t a = 0; a < g.kh; ++a) {
                const int64_t ti = r + g.pt - a * g.dh;  // = i*sh; decreases with a
                if (ti < 0)
                    break;
                if (ti % g.sh != 0 || ti / g.sh >= g.h_out)
                    continue;
                const FL_T *ci = cn + (ti / g.sh) * g.w_out * tc + a * g.kw * c;
                for (int64_t b = 0; b < g.kw; ++b) {
                    const int64_t tj = s + g.pl - b * g.dw;  // = j*sw; decreases with b
                    if (tj < 0)
                        break;
                    if (tj % g.sw != 0 || tj / g.sw >= g.w_out)
                        continue;
                    const FL_T *src = ci + (tj / g.sw) * tc + b * c;
                    for (int64_t ch = 0; ch < c; ++ch)
                        d[ch] += src[ch];
                }
            }
        }
    }
}

// conv_sparse: a convolution's transpose over rows that are mostly zero, skipping the zeros. It
// serves two ops: Ops.conv_adjoint (the multipliers at a convolution's input) for pairs whose
// output multipliers are mostly zero, and Ops.conv_forward for rows that are mostly zero (with
// the taps flipped, a forward is the transpose of the flipped kernel's adjoint). Behind a max-pool (one or two
// cells of each window get credit) and a ReLU most of them are (bench/README.md has the
// measured fractions), so a dense GEMM spends most of its work multiplying zeros.
// Each output cell q = i*w_out + j lists its nonzero multipliers (channel o, value). For each
// tap t = (a, b), channel block and cell,
//   acc = sum over the cell's listed o, in channel order, of m_out[p, q, o] * kernel[t*c + :, o]
// is formed in registers, then added to m_in at the cell that q's tap t reads,
// (i*sh - pt + a*dh, j*sw - pl + b*dw), if it lies inside the input. Taps are the outer loop, so
// one tap's block of the kernel (c_out x FL_VEC_BLOCK vectors) stays in L1 while the cells
// stream past. m_in starts at 0 and receives (channel block, tap, cell) in that order: the order
// depends only on the pair's own multipliers, so the result does not depend on the batch or the
// threads. The AVX variants fuse multiply-adds (as BLAS does); the baseline does not.
// Zero multipliers (+0 or -0) are skipped: a zero times an infinite weight gives 0 here where a
// GEMM gives NaN. NaN multipliers are kept.
// A pair with more than max_nnz nonzero multipliers is left for the dense path: done__p[p] = 0
// and its m_in rows are not written; otherwise done__p[p] = 1.
// Layout: m_out__pijo (n_pairs, h_out, w_out, c_out); wt__toc (kh*kw, c_out, c_pad), the kernel
// transposed per tap, each row zero-padded to c_pad (a multiple of the vector length);
// m_in__phwc (n_pairs, h, w, c). Scratch, one set per calling thread: start__q (n_cells + 1),
// idx__e and val__e (max_nnz): the pair's nonzero multipliers, cell by cell.
// Threads: each thread takes a block of pairs [row_begin, row_end) and its own scratch.
#ifdef FL_HAVE_VECTORS
typedef FL_T FL_KI(vec) __attribute__((vector_size(FL_VEC_BYTES), aligned(sizeof(FL_T)), may_alias));
#else
typedef FL_T FL_KI(vec);
#endif

// One (tap, channel block cb, output cell): acc = sum over entries [e0, e1) of
// val[e] * wtap[idx[e]*c_pad + ...] in registers (nv vectors), then added to dst (n_store values).
FL_ROWS void FL_KI(sparse_adjoint_cell)(const int32_t *FL_RESTRICT idx__e, const FL_T *FL_RESTRICT val__e,
                                       int64_t e0, int64_t e1, const FL_T *FL_RESTRICT wtap,
                                       int64_t c_pad, const int nv, int64_t n_store,
                                       FL_T *FL_RESTRICT dst)
{
    FL_KI(vec) acc[FL_VEC_BLOCK];
    for (int k = 0; k < FL_VEC_BLOCK; ++k)
        acc[k] = (FL_KI(vec)){0};
    for (int64_t e = e0; e < e1; ++e) {
        const FL_KI(vec) *w = (const FL_KI(vec) *)(wtap + (int64_t)idx__e[e] * c_pad);
        const FL_T v = val__e[e];
        for (int k = 0; k < nv; ++k)
            acc[k] += v * w[k];
    }
    if (nv == FL_VEC_BLOCK && n_store == FL_VEC_BLOCK * (int64_t)(sizeof(FL_KI(vec)) / sizeof(FL_T))) {
        FL_KI(vec) *d = (FL_KI(vec) *)dst;
        for (int k = 0; k < FL_VEC_BLOCK; ++k)
            d[k] = d[k] + acc[k];
    } else {
        for (int64_t k = 0; k < n_store; ++k)
            dst[k] += ((const FL_T *)acc)[k];
    }
}

FL_ROWS void FL_KI(sparse_adjoint_pair)(const int64_t *FL_RESTRICT start__q,
                                       const int32_t *FL_RESTRICT idx__e,
                                       const FL_T *FL_RESTRICT val__e, const FL_T *FL_RESTRICT wt__toc,
                                       int64_t c_out, int64_t c_pad, fl_geometry g,
                                       FL_T *FL_RESTRICT m_in__hwc)
{
    const int64_t lanes = (int64_t)(sizeof(FL_KI(vec)) / sizeof(FL_T));
    const int64_t width = FL_VEC_BLOCK * lanes;
    for (int64_t cb = 0; cb < g.c; cb += width) {
        const int64_t n_store = g.c - cb < width ? g.c - cb : width;
        const int nv = (int)((n_store + lanes - 1) / lanes);
        for (int64_t a = 0; a < g.kh; ++a)
            for (int64_t b = 0; b < g.kw; ++b) {
                const FL_T *wtap = wt__toc + (a * g.kw + b) * c_out * c_pad + cb;
                for (int64_t i = 0; i < g.h_out; ++i) {
                    const int64_t r = i * g.sh - g.pt + a * g.dh;
                    if (r < 0 || r >= g.h)
                        continue;
                    for (int64_t j = 0; j < g.w_out; ++j) {
                        const int64_t q = i * g.w_out + j, s = j * g.sw - g.pl + b * g.dw;
                        const int64_t e0 = start__q[q], e1 = start__q[q + 1];
                        if (e0 == e1 || s < 0 || s >= g.w)
                            continue;
                        FL_T *dst = m_in__hwc + (r * g.w + s) * g.c + cb;
                        if (nv == FL_VEC_BLOCK)  // constant: the loop over vectors unrolls
                            FL_KI(sparse_adjoint_cell)(idx__e, val__e, e0, e1, wtap, c_pad, FL_VEC_BLOCK,
                                                      n_store, dst);
                        else
                            FL_KI(sparse_adjoint_cell)(idx__e, val__e, e0, e1, wtap, c_pad, nv, n_store, dst);
                    }
                }
            }
    }
}

FL_ISA_VARIANTS(sparse_adjoint_pair,
                (const int64_t *start__q, const int32_t *idx__e, const FL_T *val__e, const FL_T *wt__toc,
                 int64_t c_out, int64_t c_pad, fl_geometry g, FL_T *m_in__hwc),
                (start__q, idx__e, val__e, wt__toc, c_out, c_pad, g, m_in__hwc))

// isa: an FL_ISA_* code, the highest variant to use (FL_ISA_AUTO: the best the CPU has).
FL_KERNEL void FL_K(conv_sparse)(const FL_T *FL_RESTRICT m_out__pijo,   // IN
                                         const FL_T *FL_RESTRICT wt__toc,       // IN
                                         int64_t c_out, int64_t c_pad, fl_geometry g,
                                         int64_t max_nnz, int isa,
                                         int64_t *FL_RESTRICT start__q,         // SCRATCH
                                         int32_t *FL_RESTRICT idx__e,           // SCRATCH
                                         FL_T *FL_RESTRICT val__e,              // SCRATCH
                                         FL_T *FL_RESTRICT m_in__phwc,          // OUT
                                         uint8_t *FL_RESTRICT done__p,          // OUT
                                         int64_t row_begin, int64_t row_end)
{
    const int64_t n_cells = g.h_out * g.w_out, in_len = g.h * g.w * g.c;
    const int variant = fl_isa(isa);
    for (int64_t p = row_begin; p < row_end; ++p) {
        const FL_T *m = m_out__pijo + p * n_cells * c_out;
        int64_t n = 0;
        int fits = 1;
        for (int64_t q = 0; q < n_cells && fits; ++q) {
            start__q[q] = n;
            for (int64_t o = 0; o < c_out; ++o) {
                const FL_T v = m[q * c_out + o];
                if (v == (FL_T)0)  // NaN is kept
                    continue;
                if (n == max_nnz) {
                    fits = 0;
                    break;
                }
                idx__e[n] = (int32_t)o;
                val__e[n++] = v;
            }
        }
        done__p[p] = (uint8_t)fits;
        if (!fits)
            continue;
        start__q[n_cells] = n;
        FL_T *out = m_in__phwc + p * in_len;
        memset(out, 0, (size_t)in_len * sizeof(FL_T));
        FL_ISA_CALL(variant, sparse_adjoint_pair, (start__q, idx__e, val__e, wt__toc, c_out, c_pad, g, out));
    }
}

// One output cell of conv_direct's store (below), every pointer at the cell: dst = (sum + bias) +
// add, and the second output o of epi (from aux); bias, add and o may be NULL (aux with o only).
FL_ROWS void FL_KI(cell_store)(const FL_T *FL_RESTRICT sum, int64_t c_out, const FL_T *FL_RESTRICT bias,
                              const FL_T *FL_RESTRICT add, const FL_T *FL_RESTRICT aux, FL_T *FL_RESTRICT o,
                              int epi, FL_T *FL_RESTRICT dst)
{
    if (bias != NULL && add != NULL)
        for (int64_t k = 0; k < c_out; ++k)
            dst[k] = (sum[k] + bias[k]) + add[k];
    else if (bias != NULL)
        for (int64_t k = 0; k < c_out; ++k)
            dst[k] = sum[k] + bias[k];
    else if (add != NULL)
        for (int64_t k = 0; k < c_out; ++k)
            dst[k] = sum[k] + add[k];
    else
        for (int64_t k = 0; k < c_out; ++k)
            dst[k] = sum[k];
    if (o == NULL)
        return;
    if (epi == FL_EPI_RESIDUAL_RELU)
        for (int64_t k = 0; k < c_out; ++k) {
            const FL_T z = dst[k];
            o[k] = aux[k] + (z > (FL_T)0 ? z : (FL_T)0);
        }
    else if (epi == FL_EPI_RELU_GRAD)
        for (int64_t k = 0; k < c_out; ++k)
            o[k] = dst[k] * (aux[k] > (FL_T)0 ? (FL_T)1 : (FL_T)0);
    else  // FL_EPI_RELU
        for (int64_t k = 0; k < c_out; ++k) {
            const FL_T z = dst[k];
            o[k] = z > (FL_T)0 ? z : (FL_T)0;
        }
}

// conv_direct: a convolution without unfolding (the forward of CpuOps.conv_forward where it pays):
//   out[n, i, j, o] = (sum over taps t = (a, b) in row-major order, then input channels ch in
//   order, of x[n, i*sh - pt + a*dh, j*sw - pl + b*dw, ch] * kernel[t*c + ch, o]) + bias[o],
// cells outside the input reading 0 (a tap that reads only such cells for a whole tile is skipped:
// the adjoint of a dilated convolution pads by twice the dilation). FL_DIRECT_CELLS output cells of one output row times one
// block of FL_VEC_BLOCK vectors of output channels are summed in registers: each kernel vector
// loaded serves FL_DIRECT_CELLS cells, each input value broadcast serves the whole block. The sum
// order is fixed per output value, so results depend on neither the batch nor the threads; the
// AVX variants fuse multiply-adds, the baseline does not.
// Layout: x__nhwc (n, h, w, c); wp__btcv, the kernel packed by output-channel block: block k
// holds (kh*kw, c, bw) with bw = FL_VEC_BLOCK vectors except for a narrower last block, its
// columns beyond c_out zero; bias__o (c_pad) or NULL, zero-padded; zero__c (c) zeros;
// out__nijo (n, h_out, w_out, c_out). c_pad = c_out rounded up to the vector length.
// addend__nijo (as out) or NULL: added to each stored value, (sum + bias) + addend, so that
// multipliers meeting at a node are summed in the store instead of in a pass of their own.
// aux__nijo and out2__nijo (as out) or NULL, with epi: a second output computed in the store from
// the stored value v. FL_EPI_RESIDUAL_RELU: out2 = aux + relu(v), a residual block's ReLU and Add
// (the bits of add_activation). FL_EPI_RELU: out2 = relu(v), a convolution's ReLU kept beside it
// (aux unused; the bits of activation_forward). FL_EPI_RELU_GRAD: out2 = v * relu'(aux), the multipliers of the
// ReLU whose output multipliers v are and whose input is aux (the bits of gradient_backward).
// Threads: output rows q = n*h_out + i in [row_begin, row_end).
// conv_direct's store: the tile's sums sum__r (cells rows of `stride` values) become out[cells,
// col0 : col0 + n_store] (+ bias, + addend), and the second output of epi where out2 is given.
FL_ROWS void FL_KI(direct_store)(const FL_T *FL_RESTRICT sum__r, int64_t stride, const FL_T *FL_RESTRICT bias,
                                const FL_T *FL_RESTRICT addend__nijo, const FL_T *FL_RESTRICT aux__nijo,
                                FL_T *FL_RESTRICT out2__nijo, int epi, fl_geometry g, int64_t n, int64_t i,
                                int64_t j0, int cells, int64_t col0, int64_t c_out, int64_t n_store,
                                FL_T *FL_RESTRICT out__nijo)
{
    for (int r = 0; r < cells; ++r) {
        const int64_t at = ((n * g.h_out + i) * g.w_out + j0 + r) * c_out + col0;
        FL_KI(cell_store)(sum__r + r * stride, n_store, bias == NULL ? NULL : bias + col0,
                          addend__nijo == NULL ? NULL : addend__nijo + at, aux__nijo == NULL ? NULL : aux__nijo + at,
                          out2__nijo == NULL ? NULL : out2__nijo + at, epi, out__nijo + at);
    }
}

// The input cells that tap (row, b) reads for output cells j0 .. j0 + n_cells - 1 of one row
// (p[r]: the cell's channels, or zero__c where it is outside the input or r >= cells); returns
// whether any is inside (a tap that reads only padding adds nothing and can be skipped).
FL_ROWS int FL_KI(tap_cells)(const FL_T *xn, const FL_T *zero__c, fl_geometry g, int64_t row, int64_t b,
                            int64_t j0, int64_t cells, const int n_cells, const FL_T **p)
{
    int any_inside = 0;
    for (int r = 0; r < n_cells; ++r) {
        const int64_t col = (j0 + r) * g.sw - g.pl + b * g.dw;
        const int inside = r < cells && row >= 0 && row < g.h && col >= 0 && col < g.w;
        p[r] = inside ? xn + (row * g.w + col) * g.c : zero__c;
        any_inside |= inside;
    }
    return any_inside;
}

FL_ROWS void FL_KI(direct_tile)(const FL_T *FL_RESTRICT x__nhwc, const FL_T *FL_RESTRICT zero__c,
                               const FL_T *FL_RESTRICT wblock, const FL_T *FL_RESTRICT bias,
                               const FL_T *FL_RESTRICT addend__nijo, const FL_T *FL_RESTRICT aux__nijo,
                               FL_T *FL_RESTRICT out2__nijo, int epi, fl_geometry g, int64_t n, int64_t i,
                               int64_t j0, int64_t cells, int64_t col0, int64_t c_out, const int nv,
                               FL_T *FL_RESTRICT out__nijo)
{
    const int64_t lanes = (int64_t)(sizeof(FL_KI(vec)) / sizeof(FL_T));
    FL_KI(vec) acc[FL_DIRECT_CELLS][FL_VEC_BLOCK];
    for (int r = 0; r < FL_DIRECT_CELLS; ++r)
        for (int k = 0; k < FL_VEC_BLOCK; ++k)
            acc[r][k] = (FL_KI(vec)){0};
    const FL_T *xn = x__nhwc + n * g.h * g.w * g.c;
    for (int64_t a = 0; a < g.kh; ++a) {
        const int64_t row = i * g.sh - g.pt + a * g.dh;
        for (int64_t b = 0; b < g.kw; ++b) {
            const FL_T *p[FL_DIRECT_CELLS];
            if (!FL_KI(tap_cells)(xn, zero__c, g, row, b, j0, cells, FL_DIRECT_CELLS, p))
                continue;  // the tap reads only padding: nothing to add
            const FL_KI(vec) *w = (const FL_KI(vec) *)(wblock + (a * g.kw + b) * g.c * nv * lanes);
            for (int64_t ch = 0; ch < g.c; ++ch, w += nv) {
                for (int k = 0; k < nv; ++k) {
                    const FL_KI(vec) wk = w[k];
                    for (int r = 0; r < FL_DIRECT_CELLS; ++r)
                        acc[r][k] += p[r][ch] * wk;
                }
            }
        }
    }
    const int64_t n_store = c_out - col0 < nv * lanes ? c_out - col0 : nv * lanes;
    FL_KI(direct_store)((const FL_T *)&acc[0][0], FL_VEC_BLOCK * lanes, bias, addend__nijo, aux__nijo, out2__nijo,
                       epi, g, n, i, j0, (int)cells, col0, c_out, n_store, out__nijo);
}

FL_ROWS void FL_KI(direct_rows)(const FL_T *FL_RESTRICT x__nhwc, const FL_T *FL_RESTRICT wp__btcv,
                               const FL_T *FL_RESTRICT bias__o, const FL_T *FL_RESTRICT zero__c,
                               const FL_T *FL_RESTRICT addend__nijo, const FL_T *FL_RESTRICT aux__nijo,
                               FL_T *FL_RESTRICT out2__nijo, int epi, fl_geometry g, int64_t c_out,
                               FL_T *FL_RESTRICT out__nijo, int64_t row_begin, int64_t row_end)
{
    const int64_t lanes = (int64_t)(sizeof(FL_KI(vec)) / sizeof(FL_T));
    const int64_t width = FL_VEC_BLOCK * lanes, taps_c = g.kh * g.kw * g.c;
    for (int64_t q = row_begin; q < row_end; ++q) {
        const int64_t n = q / g.h_out, i = q % g.h_out;
        for (int64_t col0 = 0; col0 < c_out; col0 += width) {
            const int64_t left = c_out - col0;
            const int nv = left >= width ? FL_VEC_BLOCK : (int)((left + lanes - 1) / lanes);
            const FL_T *wblock = wp__btcv + (col0 / width) * taps_c * width;
            for (int64_t j0 = 0; j0 < g.w_out; j0 += FL_DIRECT_CELLS) {
                const int64_t cells = g.w_out - j0 < FL_DIRECT_CELLS ? g.w_out - j0 : FL_DIRECT_CELLS;
                if (nv == FL_VEC_BLOCK)  // constant: the loops over vectors and cells unroll
                    FL_KI(direct_tile)(x__nhwc, zero__c, wblock, bias__o, addend__nijo, aux__nijo, out2__nijo,
                                      epi, g, n, i, j0, cells,
                                      col0, c_out, FL_VEC_BLOCK, out__nijo);
                else
                    FL_KI(direct_tile)(x__nhwc, zero__c, wblock, bias__o, addend__nijo, aux__nijo, out2__nijo,
                                      epi, g, n, i, j0, cells,
                                      col0, c_out, nv, out__nijo);
            }
        }
    }
}

FL_ISA_VARIANTS(direct_rows,
                (const FL_T *x__nhwc, const FL_T *wp__btcv, const FL_T *bias__o, const FL_T *zero__c,
                 const FL_T *addend__nijo, const FL_T *aux__nijo, FL_T *out2__nijo, int epi, fl_geometry g,
                 int64_t c_out, FL_T *out__nijo, int64_t row_begin, int64_t row_end),
                (x__nhwc, wp__btcv, bias__o, zero__c, addend__nijo, aux__nijo, out2__nijo, epi, g, c_out,
                 out__nijo, row_begin, row_end))

#ifdef FL_X86_DISPATCH
// conv_direct's tiles for AVX2's 16 vector registers: FL_DIRECT_CELLS_YMM output cells times one
// packed-kernel vector (FL_VEC_BYTES of output channels, two 32-byte halves), 12 accumulators. The
// packed kernel is the same as above and each output value is summed in the same order with the
// same fused multiply-adds, so these tiles give the AVX-512 tiles' bits.
typedef FL_T FL_KI(ymm) __attribute__((vector_size(32), aligned(sizeof(FL_T)), may_alias));
typedef FL_TI FL_KI(ymmi) __attribute__((vector_size(32), aligned(sizeof(FL_T)), may_alias));

FL_ROWS void FL_KI(direct_tile_ymm)(const FL_T *FL_RESTRICT x__nhwc, const FL_T *FL_RESTRICT zero__c,
                                   const FL_T *FL_RESTRICT wvec, int64_t w_stride, const FL_T *FL_RESTRICT bias,
                                   const FL_T *FL_RESTRICT addend__nijo, const FL_T *FL_RESTRICT aux__nijo,
                                   FL_T *FL_RESTRICT out2__nijo, int epi, fl_geometry g, int64_t n, int64_t i,
                                   int64_t j0, int64_t cells, int64_t col0, int64_t c_out,
                                   FL_T *FL_RESTRICT out__nijo)
{
    const int64_t half = (int64_t)(sizeof(FL_KI(ymm)) / sizeof(FL_T));
    FL_KI(ymm) acc[FL_DIRECT_CELLS_YMM][2];
    for (int r = 0; r < FL_DIRECT_CELLS_YMM; ++r)
        acc[r][0] = acc[r][1] = (FL_KI(ymm)){0};
    const FL_T *xn = x__nhwc + n * g.h * g.w * g.c;
    for (int64_t a = 0; a < g.kh; ++a) {
        const int64_t row = i * g.sh - g.pt + a * g.dh;
        for (int64_t b = 0; b < g.kw; ++b) {
            const FL_T *p[FL_DIRECT_CELLS_YMM];
            if (!FL_KI(tap_cells)(xn, zero__c, g, row, b, j0, cells, FL_DIRECT_CELLS_YMM, p))
                continue;  // the tap reads only padding: nothing to add
            const FL_T *w = wvec + (a * g.kw + b) * g.c * w_stride;
            for (int64_t ch = 0; ch < g.c; ++ch, w += w_stride) {
                const FL_KI(ymm) w0 = *(const FL_KI(ymm) *)w, w1 = *(const FL_KI(ymm) *)(w + half);
                for (int r = 0; r < FL_DIRECT_CELLS_YMM; ++r) {
                    const FL_T v = p[r][ch];
                    acc[r][0] += v * w0;
                    acc[r][1] += v * w1;
                }
            }
        }
    }
    const int64_t n_store = c_out - col0 < 2 * half ? c_out - col0 : 2 * half;
    if ((out2__nijo == NULL || epi == FL_EPI_RELU) && n_store == 2 * half) {
        // whole vectors, no second output or a ReLU: (sum + bias) + addend, as direct_store, in vectors
        FL_KI(ymm) b0 = (FL_KI(ymm)){0}, b1 = (FL_KI(ymm)){0};
        if (bias != NULL) {
            b0 = *(const FL_KI(ymm) *)(bias + col0);
            b1 = *(const FL_KI(ymm) *)(bias + col0 + half);
        }
        for (int r = 0; r < cells; ++r) {
            const int64_t at = ((n * g.h_out + i) * g.w_out + j0 + r) * c_out + col0;
            FL_KI(ymm) v0 = acc[r][0], v1 = acc[r][1];
            if (bias != NULL) {
                v0 += b0;
                v1 += b1;
            }
            if (addend__nijo != NULL) {
                v0 += *(const FL_KI(ymm) *)(addend__nijo + at);
                v1 += *(const FL_KI(ymm) *)(addend__nijo + at + half);
            }
            *(FL_KI(ymm) *)(out__nijo + at) = v0;
            *(FL_KI(ymm) *)(out__nijo + at + half) = v1;
            if (out2__nijo != NULL) {  // relu(v) = v where v > 0, else +0 (NaN: +0), as direct_store
                const FL_KI(ymm) zero = (FL_KI(ymm)){0};
                *(FL_KI(ymmi) *)(out2__nijo + at) = (FL_KI(ymmi))v0 & (FL_KI(ymmi))(v0 > zero);
                *(FL_KI(ymmi) *)(out2__nijo + at + half) = (FL_KI(ymmi))v1 & (FL_KI(ymmi))(v1 > zero);
            }
        }
        return;
    }
    FL_KI(direct_store)((const FL_T *)&acc[0][0], 2 * half, bias, addend__nijo, aux__nijo, out2__nijo, epi, g, n,
                       i, j0, (int)cells, col0, c_out, n_store, out__nijo);
}

FL_TARGET_AVX2 FL_NOINLINE void FL_KI(direct_rows_ymm)(const FL_T *FL_RESTRICT x__nhwc,
                                                      const FL_T *FL_RESTRICT wp__btcv,
                                                      const FL_T *FL_RESTRICT bias__o,
                                                      const FL_T *FL_RESTRICT zero__c,
                                                      const FL_T *FL_RESTRICT addend__nijo,
                                                      const FL_T *FL_RESTRICT aux__nijo,
                                                      FL_T *FL_RESTRICT out2__nijo, int epi, fl_geometry g,
                                                      int64_t c_out, FL_T *FL_RESTRICT out__nijo,
                                                      int64_t row_begin, int64_t row_end)
{
    const int64_t lanes = (int64_t)(sizeof(FL_KI(vec)) / sizeof(FL_T));
    const int64_t width = FL_VEC_BLOCK * lanes, taps_c = g.kh * g.kw * g.c;
    for (int64_t q = row_begin; q < row_end; ++q) {
        const int64_t n = q / g.h_out, i = q % g.h_out;
        for (int64_t col0 = 0; col0 < c_out; col0 += width) {
            const int64_t left = c_out - col0;
            const int nv = left >= width ? FL_VEC_BLOCK : (int)((left + lanes - 1) / lanes);
            const FL_T *wblock = wp__btcv + (col0 / width) * taps_c * width;
            for (int64_t b0 = 0; b0 < g.w_out; b0 += FL_DIRECT_BLOCK_CELLS_YMM) {
                const int64_t b1 = g.w_out - b0 < FL_DIRECT_BLOCK_CELLS_YMM ? g.w_out : b0 + FL_DIRECT_BLOCK_CELLS_YMM;
                for (int k = 0; k < nv; ++k)  // one kernel vector's columns over a block of cells
                    for (int64_t j0 = b0; j0 < b1; j0 += FL_DIRECT_CELLS_YMM) {
                        const int64_t cells = b1 - j0 < FL_DIRECT_CELLS_YMM ? b1 - j0 : FL_DIRECT_CELLS_YMM;
                        FL_KI(direct_tile_ymm)(x__nhwc, zero__c, wblock + k * lanes, nv * lanes, bias__o,
                                              addend__nijo, aux__nijo, out2__nijo, epi, g, n, i, j0, cells,
                                              col0 + k * lanes, c_out, out__nijo);
                    }
            }
        }
    }
}

// conv_winograd3's products M = D G on AVX2 (see conv_winograd3): D (nt, c) row-major, G packed
// as a one-tap conv_direct kernel, M (nt, c_out) for c_out a multiple of FL_VEC_BYTES' lanes
// (c_out == c_pad). Tiles of FL_WINOGRAD_CELLS_YMM rows of D (the rows left over one at a time)
// times 4 vectors of G's columns (2 for a block's last 2 if they are left): each value summed over
// the channels in order with fused multiply-adds from 0, as conv_direct's tiles do, so M has
// their bits.
FL_TARGET_AVX2 FL_NOINLINE void FL_KI(winograd_products_ymm)(const FL_T *FL_RESTRICT d__tc, int64_t nt, int64_t c,
                                                            const FL_T *FL_RESTRICT wp__btcv, int64_t c_out,
                                                            FL_T *FL_RESTRICT m__to)
{
    enum { R = FL_WINOGRAD_CELLS_YMM };
    const int64_t half = (int64_t)(sizeof(FL_KI(ymm)) / sizeof(FL_T));
    const int64_t width = FL_VEC_BLOCK * (int64_t)(sizeof(FL_KI(vec)) / sizeof(FL_T));
    for (int64_t col0 = 0; col0 < c_out; col0 += width) {
        const int64_t bw = c_out - col0 < width ? c_out - col0 : width;  // this block's columns
        const FL_T *block = wp__btcv + (col0 / width) * c * width;
        int64_t k = 0;
        for (; k + 4 * half <= bw; k += 4 * half) {  // 4 vectors of columns
            const FL_T *wk = block + k;
            FL_T *mk = m__to + col0 + k;
            int64_t t0 = 0;
            for (; t0 + R <= nt; t0 += R) {
                FL_KI(ymm) acc[R][4];
                for (int r = 0; r < R; ++r)
                    acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = (FL_KI(ymm)){0};
                const FL_T *a = d__tc + t0 * c, *w = wk;
                for (int64_t ch = 0; ch < c; ++ch, w += bw) {
                    const FL_KI(ymm) w0 = *(const FL_KI(ymm) *)w, w1 = *(const FL_KI(ymm) *)(w + half),
                                     w2 = *(const FL_KI(ymm) *)(w + 2 * half), w3 = *(const FL_KI(ymm) *)(w + 3 * half);
                    for (int r = 0; r < R; ++r) {
                        const FL_T v = a[r * c + ch];
                        acc[r][0] += v * w0;
                        acc[r][1] += v * w1;
                        acc[r][2] += v * w2;
                        acc[r][3] += v * w3;
                    }
                }
                for (int r = 0; r < R; ++r)
                    for (int j = 0; j < 4; ++j)
                        *(FL_KI(ymm) *)(mk + (t0 + r) * c_out + j * half) = acc[r][j];
            }
            for (; t0 < nt; ++t0) {  // the rows left, one at a time
                FL_KI(ymm) acc[4] = {{0}};
                const FL_T *a = d__tc + t0 * c, *w = wk;
                for (int64_t ch = 0; ch < c; ++ch, w += bw)
                    for (int j = 0; j < 4; ++j)
                        acc[j] += a[ch] * *(const FL_KI(ymm) *)(w + j * half);
                for (int j = 0; j < 4; ++j)
                    *(FL_KI(ymm) *)(mk + t0 * c_out + j * half) = acc[j];
            }
        }
        if (k < bw) {  // 2 vectors left
            for (int64_t t0 = 0; t0 < nt; t0 += 2 * R) {
                const int rows = nt - t0 < 2 * R ? (int)(nt - t0) : 2 * R;
                const FL_T *a[2 * R];
                for (int r = 0; r < 2 * R; ++r)
                    a[r] = d__tc + (t0 + (r < rows ? r : 0)) * c;
                FL_KI(ymm) acc[2 * R][2];
                for (int r = 0; r < 2 * R; ++r)
                    acc[r][0] = acc[r][1] = (FL_KI(ymm)){0};
                const FL_T *w = block + k;
                for (int64_t ch = 0; ch < c; ++ch, w += bw) {
                    const FL_KI(ymm) w0 = *(const FL_KI(ymm) *)w, w1 = *(const FL_KI(ymm) *)(w + half);
                    for (int r = 0; r < 2 * R; ++r) {
                        const FL_T v = a[r][ch];
                        acc[r][0] += v * w0;
                        acc[r][1] += v * w1;
                    }
                }
                for (int r = 0; r < rows; ++r)
                    for (int j = 0; j < 2; ++j)
                        *(FL_KI(ymm) *)(m__to + (t0 + r) * c_out + col0 + k + j * half) = acc[r][j];
            }
        }
    }
}
#endif

// conv_direct's rows on the tiles of an fl_isa() variant: AVX2's own, else FL_ISA_CALL's copy.
static inline void FL_KI(direct_dispatch)(int variant, const FL_T *x__nhwc, const FL_T *wp__btcv,
                                          const FL_T *bias__o, const FL_T *zero__c, const FL_T *addend__nijo,
                                          const FL_T *aux__nijo, FL_T *out2__nijo, int epi, fl_geometry g,
                                          int64_t c_out, FL_T *out__nijo, int64_t row_begin, int64_t row_end)
{
#ifdef FL_X86_DISPATCH
    if (variant == FL_ISA_AVX2) {
        FL_KI(direct_rows_ymm)(x__nhwc, wp__btcv, bias__o, zero__c, addend__nijo, aux__nijo, out2__nijo, epi, g,
                               c_out, out__nijo, row_begin, row_end);
        return;
    }
#endif
    FL_ISA_CALL(variant, direct_rows, (x__nhwc, wp__btcv, bias__o, zero__c, addend__nijo, aux__nijo, out2__nijo,
                                       epi, g, c_out, out__nijo, row_begin, row_end));
}

// isa: an FL_ISA_* code, the highest variant to use (FL_ISA_AUTO: the best the CPU has).
FL_KERNEL void FL_K(conv_direct)(const FL_T *FL_RESTRICT x__nhwc,     // IN
                                 const FL_T *FL_RESTRICT wp__btcv,    // IN
                                 const FL_T *FL_RESTRICT bias__o,     // IN (or NULL)
                                 const FL_T *FL_RESTRICT zero__c,     // IN
                                 const FL_T *FL_RESTRICT addend__nijo, // IN (or NULL)
                                 const FL_T *FL_RESTRICT aux__nijo,   // IN (or NULL)
                                 FL_T *FL_RESTRICT out2__nijo,        // OUT (or NULL)
                                 int epi,
                                 fl_geometry g, int64_t c_out, int isa,
                                 FL_T *FL_RESTRICT out__nijo,         // OUT
                                 int64_t row_begin, int64_t row_end)
{
    FL_KI(direct_dispatch)(fl_isa(isa), x__nhwc, wp__btcv, bias__o, zero__c, addend__nijo, aux__nijo, out2__nijo,
                           epi, g, c_out, out__nijo, row_begin, row_end);
}

// conv_winograd3's transforms (below). The transformed inputs of a tile, D_i = d[i * stride :
// i * stride + c], from its inputs x[0..m+1].
// (Each pointer its own restrict parameter: the loops vectorise.)
FL_ROWS void FL_KI(winograd_in2)(const FL_T *FL_RESTRICT x0, const FL_T *FL_RESTRICT x1, const FL_T *FL_RESTRICT x2,
                                const FL_T *FL_RESTRICT x3, int64_t c, FL_T *FL_RESTRICT d0, FL_T *FL_RESTRICT d1,
                                FL_T *FL_RESTRICT d2, FL_T *FL_RESTRICT d3)
{
    for (int64_t ch = 0; ch < c; ++ch) {
        d0[ch] = x0[ch] - x2[ch];
        d1[ch] = x1[ch] + x2[ch];
        d2[ch] = x2[ch] - x1[ch];
        d3[ch] = x1[ch] - x3[ch];
    }
}

FL_ROWS void FL_KI(winograd_in4)(const FL_T *FL_RESTRICT x0, const FL_T *FL_RESTRICT x1, const FL_T *FL_RESTRICT x2,
                                const FL_T *FL_RESTRICT x3, const FL_T *FL_RESTRICT x4, const FL_T *FL_RESTRICT x5,
                                int64_t c, FL_T *FL_RESTRICT d0, FL_T *FL_RESTRICT d1, FL_T *FL_RESTRICT d2,
                                FL_T *FL_RESTRICT d3, FL_T *FL_RESTRICT d4, FL_T *FL_RESTRICT d5)
{
    const FL_T half = (FL_T)0.5, one5 = (FL_T)1.5, two5 = (FL_T)2.5, two = (FL_T)2;
    for (int64_t ch = 0; ch < c; ++ch) {
        const FL_T a = x1[ch], b = x2[ch], e = x3[ch], f = x4[ch];
        d0[ch] = ((x0[ch] + f) + one5 * (a - e)) - two * b;
        d1[ch] = (f - a) - (two5 * b + half * e);
        d2[ch] = (f + a) + (half * b - two5 * e);
        d3[ch] = (f - b) + half * (e - a);
        d4[ch] = (f - b) + two * (a - e);
        d5[ch] = ((a + x5[ch]) + one5 * (b - f)) - two * e;
    }
}

FL_ROWS void FL_KI(winograd_in)(int m, const FL_T *const *x, int64_t c, int64_t stride, FL_T *d)
{
    if (m == 2)
        FL_KI(winograd_in2)(x[0], x[1], x[2], x[3], c, d, d + stride, d + 2 * stride, d + 3 * stride);
    else
        FL_KI(winograd_in4)(x[0], x[1], x[2], x[3], x[4], x[5], c, d, d + stride, d + 2 * stride, d + 3 * stride,
                            d + 4 * stride, d + 5 * stride);
}

// The m output cells of a tile, y (m, c_out), from its products M_0..M_{m+1} (c_out values each).
FL_ROWS void FL_KI(winograd_out2)(const FL_T *FL_RESTRICT m0, const FL_T *FL_RESTRICT m1,
                                 const FL_T *FL_RESTRICT m2, const FL_T *FL_RESTRICT m3, int64_t c_out,
                                 FL_T *FL_RESTRICT y0, FL_T *FL_RESTRICT y1)
{
    for (int64_t o = 0; o < c_out; ++o) {
        y0[o] = (m0[o] + m1[o]) + m2[o];
        y1[o] = (m1[o] - m2[o]) - m3[o];
    }
}

FL_ROWS void FL_KI(winograd_out4)(const FL_T *FL_RESTRICT m0, const FL_T *FL_RESTRICT m1,
                                 const FL_T *FL_RESTRICT m2, const FL_T *FL_RESTRICT m3,
                                 const FL_T *FL_RESTRICT m4, const FL_T *FL_RESTRICT m5, int64_t c_out,
                                 FL_T *FL_RESTRICT y0, FL_T *FL_RESTRICT y1, FL_T *FL_RESTRICT y2,
                                 FL_T *FL_RESTRICT y3)
{
    for (int64_t o = 0; o < c_out; ++o) {
        const FL_T s = m1[o] + m2[o], t = m1[o] - m2[o], a = m3[o], b = m4[o];
        y0[o] = (m0[o] + s) + (a + b);
        y1[o] = t + ((FL_T)2 * a - (FL_T)0.5 * b);
        y2[o] = s + ((FL_T)4 * a + (FL_T)0.25 * b);
        y3[o] = (t + ((FL_T)8 * a - (FL_T)0.125 * b)) + m5[o];
    }
}

FL_ROWS void FL_KI(winograd_out)(int m, const FL_T *m0, int64_t stride, int64_t c_out, FL_T *y)
{
    if (m == 2)
        FL_KI(winograd_out2)(m0, m0 + stride, m0 + 2 * stride, m0 + 3 * stride, c_out, y, y + c_out);
    else
        FL_KI(winograd_out4)(m0, m0 + stride, m0 + 2 * stride, m0 + 3 * stride, m0 + 4 * stride, m0 + 5 * stride,
                             c_out, y, y + c_out, y + 2 * c_out, y + 3 * c_out);
}

// conv_winograd3: conv_direct's convolution for 1-D layers of three taps and stride 1 (any dilation
// d, any padding), with Winograd's minimal filtering F(m,3) (Lavin & Gray, CVPR 2016) for m = 2 or
// 4 output cells per tile: cells j + k*d (k < m, j counted from the left of each period of m*d
// cells) share their inputs x_i = x[j - pl + i*d] (i < m + 2). With the kernel's taps g0, g1, g2
// (each c x c_out), m + 2 products M_i = D_i G_i of transformed inputs D_i and kernels G_i give
//   F(2,3): D = (x0 - x2, x1 + x2, x2 - x1, x1 - x3),
//           G = (g0, (g0 + g1 + g2)/2, (g0 - g1 + g2)/2, g2),
//           out[j] = (M0 + M1) + M2,  out[j + d] = (M1 - M2) - M3;
//   F(4,3): the interpolation points 0, 1, -1, 2, -1/2 and infinity (the most accurate of the usual
//           sets in float32: 8e-7 of the largest output against F(2,3)'s 4e-7, bench/README.md),
//           D and the output sums as written out in winograd_in4 / winograd_out4 above,
//           G = (g0, -(g0 + g1 + g2)/3, (g0 - g1 + g2)/3, (g0 + 2 g1 + 4 g2)/15,
//                (-16 g0 + 8 g1 - 4 g2)/15, g2),
// then + bias, + addend, as conv_direct: 4 multiply-adds per input and output channel for two cells
// (F(2,3)) or 6 for four (F(4,3)) instead of conv_direct's 6 or 12. Each M_i is a matrix product
// over the tiles of a block, run by conv_direct's register tiles (as a 1x1 convolution; on AVX2,
// where c_out fills whole vectors, by winograd_products_ymm's wider tiles, same sums), so every
// value is summed in a fixed order: results depend on neither the batch nor the threads, and
// differ from conv_direct's by rounding only (the transformed inputs and G).
// Layout: as conv_direct, with wg__kbtcv the m + 2 kernels G_i each packed as conv_direct's
// (c, c_out) kernel, one after the other ((m + 2) * c * c_pad); epi, aux, out2 as conv_direct.
// addend_w < 0: addend__nijo as conv_direct's. addend_w >= 0: addend__nijo holds only the cells
// [addend_lo, addend_lo + addend_w) of each output row, (n, addend_w, c_out), read in place (a
// crop's multipliers); the other cells add nothing (the bits of the addend padded with zeros).
// Requires g.h == g.kh == 1, g.kw == 3, g.sw == 1 and m == 2 or 4.
// Scratch: fl_conv_winograd3_scratch_size(g, c_out, m) elements per thread.
// Threads: output rows q = n (one per example) in [row_begin, row_end), each with its own scratch.
FL_ROWS void FL_KI(winograd3_rows)(const FL_T *FL_RESTRICT x__nhwc, const FL_T *FL_RESTRICT wg__kbtcv,
                                  const FL_T *FL_RESTRICT bias__o, const FL_T *FL_RESTRICT zero__c,
                                  const FL_T *FL_RESTRICT addend__nijo, const FL_T *FL_RESTRICT aux__nijo,
                                  FL_T *FL_RESTRICT out2__nijo, int epi, fl_geometry g, int64_t c_out, int m,
                                  int variant, int64_t addend_lo, int64_t addend_w, FL_T *FL_RESTRICT scratch,
                                  FL_T *FL_RESTRICT out__nijo, int64_t row_begin, int64_t row_end)
{
    const int64_t c = g.c, d = g.dw, w_out = g.w_out, B = fl_winograd_tiles(m), period = m * d;
    const int64_t lanes = (int64_t)(sizeof(FL_KI(vec)) / sizeof(FL_T));
    const int64_t c_pad = (c_out + lanes - 1) / lanes * lanes;
    const int64_t n_tiles = (w_out / period) * d + (w_out % period < d ? w_out % period : d);
    FL_T *dk = scratch;                                         // (m + 2, B, c): transformed inputs
    FL_T *mk = scratch + fli_scratch_round((m + 2) * B * c);    // (m + 2, B, c_out): their products
    FL_T *y = mk + fli_scratch_round((m + 2) * B * c_out);      // (m, c_out): one tile's output cells
    for (int64_t q = row_begin; q < row_end; ++q) {
        const FL_T *xn = x__nhwc + q * g.w * c;
        for (int64_t t0 = 0; t0 < n_tiles; t0 += B) {
            const int64_t nt = n_tiles - t0 < B ? n_tiles - t0 : B;
            for (int64_t t = 0; t < nt; ++t) {
                const int64_t j = ((t0 + t) / d) * period + (t0 + t) % d, col = j - g.pl;
                const FL_T *x[FL_WINOGRAD_MAX_INPUTS];
                for (int i = 0; i < FL_WINOGRAD_MAX_INPUTS; ++i) {  // F(2,3) reads the first four
                    const int64_t at = col + i * d;
                    x[i] = i < m + 2 && at >= 0 && at < g.w ? xn + at * c : zero__c;
                }
                FL_KI(winograd_in)(m, x, c, B * c, dk + t * c);
            }
            const fl_geometry gm = {1, nt, c, 1, 1, 1, 1, 1, 1, 0, 0, 1, nt};
            for (int i = 0; i < m + 2; ++i) {
#ifdef FL_X86_DISPATCH
                if (variant == FL_ISA_AVX2 && c_out == c_pad) {
                    FL_KI(winograd_products_ymm)(dk + i * B * c, nt, c, wg__kbtcv + i * c * c_pad, c_out,
                                                 mk + i * B * c_out);
                    continue;
                }
#endif
                FL_KI(direct_dispatch)(variant, dk + i * B * c, wg__kbtcv + i * c * c_pad, NULL, zero__c, NULL, NULL,
                                       NULL, 0, gm, c_out, mk + i * B * c_out, 0, 1);
            }
            for (int64_t t = 0; t < nt; ++t) {
                const int64_t j = ((t0 + t) / d) * period + (t0 + t) % d;
                FL_KI(winograd_out)(m, mk + t * c_out, B * c_out, c_out, y);
                for (int k = 0; k < m && j + k * d < w_out; ++k) {
                    const int64_t jk = j + k * d, at = (q * w_out + jk) * c_out;
                    const FL_T *add = addend__nijo;
                    if (add != NULL && addend_w >= 0)  // the window's cells only, read in place
                        add = jk >= addend_lo && jk < addend_lo + addend_w
                                  ? addend__nijo + (q * addend_w + jk - addend_lo) * c_out : NULL;
                    else if (add != NULL)
                        add += at;
                    FL_KI(cell_store)(y + k * c_out, c_out, bias__o, add, aux__nijo == NULL ? NULL : aux__nijo + at,
                                      out2__nijo == NULL ? NULL : out2__nijo + at, epi, out__nijo + at);
                }
            }
        }
    }
}

FL_ISA_VARIANTS(winograd3_rows,
                (const FL_T *x__nhwc, const FL_T *wg__kbtcv, const FL_T *bias__o, const FL_T *zero__c,
                 const FL_T *addend__nijo, const FL_T *aux__nijo, FL_T *out2__nijo, int epi, fl_geometry g,
                 int64_t c_out, int m, int variant, int64_t addend_lo, int64_t addend_w, FL_T *scratch,
                 FL_T *out__nijo, int64_t row_begin, int64_t row_end),
                (x__nhwc, wg__kbtcv, bias__o, zero__c, addend__nijo, aux__nijo, out2__nijo, epi, g, c_out, m, variant,
                 addend_lo, addend_w, scratch, out__nijo, row_begin, row_end))

// m: output cells per tile, 2 (F(2,3)) or 4 (F(4,3)); isa: as conv_direct.
FL_KERNEL void FL_K(conv_winograd3)(const FL_T *FL_RESTRICT x__nhwc,      // IN
                                    const FL_T *FL_RESTRICT wg__kbtcv,    // IN
                                    const FL_T *FL_RESTRICT bias__o,      // IN (or NULL)
                                    const FL_T *FL_RESTRICT zero__c,      // IN
                                    const FL_T *FL_RESTRICT addend__nijo, // IN (or NULL)
                                    const FL_T *FL_RESTRICT aux__nijo,    // IN (or NULL)
                                    FL_T *FL_RESTRICT out2__nijo,         // OUT (or NULL)
                                    int epi,
                                    fl_geometry g, int64_t c_out, int m, int isa,
                                    int64_t addend_lo, int64_t addend_w,
                                    FL_T *FL_RESTRICT scratch,            // SCRATCH
                                    FL_T *FL_RESTRICT out__nijo,          // OUT
                                    int64_t row_begin, int64_t row_end)
{
    const int variant = fl_isa(isa);
    FL_ISA_CALL(variant, winograd3_rows, (x__nhwc, wg__kbtcv, bias__o, zero__c, addend__nijo, aux__nijo, out2__nijo,
                                          epi, g, c_out, m, variant, addend_lo, addend_w, scratch, out__nijo,
                                          row_begin, row_end));
}

// conv_narrow: conv_direct's convolution for few output channels (a profile head's 1 or 2), whose
// tiles would compute a vector of output channels to keep one or two: here the vectors run over
// input channels instead. For each output channel o and FL_NARROW_CELLS output cells, two vector
// accumulators per cell sum x[cell's input, ch] * kernel[o, tap, ch] over the taps in order and
// the input channels in pairs of vectors (the first vector's channels in one, the second's in the
// other; the c % (2 * lanes) left over in a scalar sum); the first accumulator's lanes are then
// added in order, then the second's, then that scalar sum. A fixed order per value: results depend
// on neither the batch nor the threads. Then + bias, + addend, as conv_direct. Blocks of cells
// whose taps are all inside the input, with dilation 1 and c a multiple of two vectors, run
// narrow_span_tile: the same sums in the same order, two output channels at a time.
// Layout: x__nhwc (n, h, w, c); kt__otc the kernel transposed, (c_out, kh*kw*c) C-contiguous;
// bias__o (c_out) or NULL; zero__c (c) zeros; addend__nijo (as out) or NULL; out__nijo
// (n, h_out, w_out, c_out).
// Threads: output rows q = n*h_out + i in [row_begin, row_end).
// Two 32-byte vectors per cell (16 float lanes): two chains of multiply-adds per cell, and a
// width AVX2 holds in registers (GCC keeps 64-byte generic vectors on the stack there).
#ifdef FL_HAVE_VECTORS
typedef FL_T FL_KI(v32) __attribute__((vector_size(32), aligned(sizeof(FL_T)), may_alias));
#  define FL_LANE(v, l) ((v)[l])
#else
typedef FL_T FL_KI(v32);
#  define FL_LANE(v, l) (v)
#endif
// One value of conv_narrow's order from its two vector accumulators (and the scalar tail).
FL_ROWS void FL_KI(narrow_store)(FL_KI(v32) acc0, FL_KI(v32) acc1, FL_T tail, const FL_T *FL_RESTRICT bias__o,
                                const FL_T *FL_RESTRICT addend__nijo, int64_t o, int64_t at,
                                FL_T *FL_RESTRICT out__nijo)
{
    const int64_t lanes = (int64_t)(sizeof(FL_KI(v32)) / sizeof(FL_T));
    FL_T sum = 0;
    for (int64_t l = 0; l < lanes; ++l)  // by subscript: acc stays in registers
        sum += FL_LANE(acc0, l);
    for (int64_t l = 0; l < lanes; ++l)
        sum += FL_LANE(acc1, l);
    sum += tail;
    if (bias__o != NULL)
        sum = sum + bias__o[o];
    if (addend__nijo != NULL)
        sum = sum + addend__nijo[at];
    out__nijo[at] = sum;
}

// conv_narrow's tile of `cells` (at most FL_NARROW_CELLS) output cells for output channel o, any
// geometry: each tap's channels are found through tap_cells.
FL_ROWS void FL_KI(narrow_tile)(const FL_T *FL_RESTRICT xn, const FL_T *FL_RESTRICT kt__otc,
                               const FL_T *FL_RESTRICT bias__o, const FL_T *FL_RESTRICT zero__c,
                               const FL_T *FL_RESTRICT addend__nijo, fl_geometry g, int64_t c_out, int64_t q,
                               int64_t i, int64_t j0, int64_t cells, int64_t o, FL_T *FL_RESTRICT out__nijo)
{
    const int64_t lanes = (int64_t)(sizeof(FL_KI(v32)) / sizeof(FL_T)), step = 2 * lanes;
    const int64_t c_vec = g.c / step * step, taps_c = g.kh * g.kw * g.c;
    FL_KI(v32) acc[FL_NARROW_CELLS][2];
    FL_T tail[FL_NARROW_CELLS];
    for (int r = 0; r < FL_NARROW_CELLS; ++r) {
        acc[r][0] = acc[r][1] = (FL_KI(v32)){0};
        tail[r] = 0;
    }
    for (int64_t a = 0; a < g.kh; ++a) {
        const int64_t row = i * g.sh - g.pt + a * g.dh;
        for (int64_t b = 0; b < g.kw; ++b) {
            const FL_T *p[FL_NARROW_CELLS];
            if (!FL_KI(tap_cells)(xn, zero__c, g, row, b, j0, cells, FL_NARROW_CELLS, p))
                continue;  // the tap reads only padding: nothing to add
            const FL_T *k = kt__otc + o * taps_c + (a * g.kw + b) * g.c;
            for (int64_t ch = 0; ch < c_vec; ch += step) {
                const FL_KI(v32) k0 = *(const FL_KI(v32) *)(k + ch);
                const FL_KI(v32) k1 = *(const FL_KI(v32) *)(k + ch + lanes);
                for (int r = 0; r < FL_NARROW_CELLS; ++r) {
                    acc[r][0] += *(const FL_KI(v32) *)(p[r] + ch) * k0;
                    acc[r][1] += *(const FL_KI(v32) *)(p[r] + ch + lanes) * k1;
                }
            }
            for (int64_t ch = c_vec; ch < g.c; ++ch)
                for (int r = 0; r < FL_NARROW_CELLS; ++r)
                    tail[r] += p[r][ch] * k[ch];
        }
    }
    for (int r = 0; r < cells; ++r)
        FL_KI(narrow_store)(acc[r][0], acc[r][1], tail[r], bias__o, addend__nijo, o,
                           (q * g.w_out + j0 + r) * c_out + o, out__nijo);
}

// conv_narrow's tile of nc cells x no output channels (o, o + 1, ...) whose every tap is inside the
// input, for dilation 1 and c a multiple of two vectors: a kernel row's kw taps of c channels are
// then one run of kw * c values, in the input as in kt, read in the generic tile's order (tap by
// tap, channel pairs of vectors in order, no tail), so each value has the generic tile's bits.
// Output channels share the input's loads: 2 cells x 2 channels load 8 vectors for 8 multiply-adds
// where the generic tile loads 10.
FL_ROWS void FL_KI(narrow_span_tile)(const FL_T *FL_RESTRICT xn, const FL_T *FL_RESTRICT kt__otc,
                                    const FL_T *FL_RESTRICT bias__o, const FL_T *FL_RESTRICT addend__nijo,
                                    fl_geometry g, int64_t c_out, int64_t q, int64_t i, int64_t j0, int64_t o,
                                    const int nc, const int no, FL_T *FL_RESTRICT out__nijo)
{
    const int64_t lanes = (int64_t)(sizeof(FL_KI(v32)) / sizeof(FL_T)), step = 2 * lanes;
    const int64_t span = g.kw * g.c, taps_c = g.kh * span;
    FL_KI(v32) acc[FL_NARROW_CELLS][2][2];
    for (int r = 0; r < nc; ++r)
        for (int u = 0; u < no; ++u)
            acc[r][u][0] = acc[r][u][1] = (FL_KI(v32)){0};
    for (int64_t a = 0; a < g.kh; ++a) {
        const int64_t row = i * g.sh - g.pt + a * g.dh;
        const FL_T *p[FL_NARROW_CELLS], *k[2];
        for (int r = 0; r < nc; ++r)
            p[r] = xn + (row * g.w + (j0 + r) * g.sw - g.pl) * g.c;
        for (int u = 0; u < no; ++u)
            k[u] = kt__otc + (o + u) * taps_c + a * span;
        for (int64_t t = 0; t < span; t += step) {
            FL_KI(v32) k0[2], k1[2];
            // volatile loads: one each, kept in a register for all its uses (GCC would otherwise
            // fold the loads into the multiply-adds, loading the kernel or the input twice)
            for (int u = 0; u < no; ++u) {
                k0[u] = *(const volatile FL_KI(v32) *)(k[u] + t);
                k1[u] = *(const volatile FL_KI(v32) *)(k[u] + t + lanes);
            }
            for (int r = 0; r < nc; ++r) {
                const FL_KI(v32) x0 = *(const volatile FL_KI(v32) *)(p[r] + t);
                const FL_KI(v32) x1 = *(const volatile FL_KI(v32) *)(p[r] + t + lanes);
                for (int u = 0; u < no; ++u) {
                    acc[r][u][0] += x0 * k0[u];
                    acc[r][u][1] += x1 * k1[u];
                }
            }
        }
    }
    for (int r = 0; r < nc; ++r)
        for (int u = 0; u < no; ++u)
            FL_KI(narrow_store)(acc[r][u][0], acc[r][u][1], (FL_T)0, bias__o, addend__nijo, o + u,
                               (q * g.w_out + j0 + r) * c_out + o + u, out__nijo);
}

FL_ROWS void FL_KI(narrow_rows)(const FL_T *FL_RESTRICT x__nhwc, const FL_T *FL_RESTRICT kt__otc,
                               const FL_T *FL_RESTRICT bias__o, const FL_T *FL_RESTRICT zero__c,
                               const FL_T *FL_RESTRICT addend__nijo, fl_geometry g, int64_t c_out,
                               FL_T *FL_RESTRICT out__nijo, int64_t row_begin, int64_t row_end)
{
    const int64_t lanes = (int64_t)(sizeof(FL_KI(v32)) / sizeof(FL_T));
    const int spans = g.dw == 1 && g.c % (2 * lanes) == 0;
    for (int64_t q = row_begin; q < row_end; ++q) {
        const int64_t n = q / g.h_out, i = q % g.h_out;
        const FL_T *xn = x__nhwc + n * g.h * g.w * g.c;
        // [j_lo, j_hi): the cells whose every tap is inside the input (where `spans`)
        int64_t j_lo = 0, j_hi = 0;
        const int64_t top = i * g.sh - g.pt, last = g.pl + g.w - 1 - (g.kw - 1) * g.dw;
        if (spans && top >= 0 && top + (g.kh - 1) * g.dh < g.h && g.pl >= 0 && last >= 0) {
            j_lo = (g.pl + g.sw - 1) / g.sw;
            j_hi = last / g.sw + 1 < g.w_out ? last / g.sw + 1 : g.w_out;
        }
        for (int64_t j0 = 0; j0 < g.w_out; j0 += FL_NARROW_CELLS) {
            const int64_t cells = g.w_out - j0 < FL_NARROW_CELLS ? g.w_out - j0 : FL_NARROW_CELLS;
            if (cells == FL_NARROW_CELLS && j0 >= j_lo && j0 + FL_NARROW_CELLS <= j_hi) {
                int64_t o = 0;
                for (; o + 2 <= c_out; o += 2)
                    for (int64_t h = 0; h < FL_NARROW_CELLS; h += 2)
                        FL_KI(narrow_span_tile)(xn, kt__otc, bias__o, addend__nijo, g, c_out, q, i, j0 + h, o,
                                               2, 2, out__nijo);
                if (o < c_out)
                    FL_KI(narrow_span_tile)(xn, kt__otc, bias__o, addend__nijo, g, c_out, q, i, j0, o,
                                           FL_NARROW_CELLS, 1, out__nijo);
            } else {
                for (int64_t o = 0; o < c_out; ++o)
                    FL_KI(narrow_tile)(xn, kt__otc, bias__o, zero__c, addend__nijo, g, c_out, q, i, j0, cells, o,
                                      out__nijo);
            }
        }
    }
}

FL_ISA_VARIANTS(narrow_rows,
                (const FL_T *x__nhwc, const FL_T *kt__otc, const FL_T *bias__o, const FL_T *zero__c,
                 const FL_T *addend__nijo, fl_geometry g, int64_t c_out, FL_T *out__nijo, int64_t row_begin,
                 int64_t row_end),
                (x__nhwc, kt__otc, bias__o, zero__c, addend__nijo, g, c_out, out__nijo, row_begin, row_end))

// isa: as conv_direct.
FL_KERNEL void FL_K(conv_narrow)(const FL_T *FL_RESTRICT x__nhwc,      // IN
                                 const FL_T *FL_RESTRICT kt__otc,      // IN
                                 const FL_T *FL_RESTRICT bias__o,      // IN (or NULL)
                                 const FL_T *FL_RESTRICT zero__c,      // IN
                                 const FL_T *FL_RESTRICT addend__nijo, // IN (or NULL)
                                 fl_geometry g, int64_t c_out, int isa,
                                 FL_T *FL_RESTRICT out__nijo,          // OUT
                                 int64_t row_begin, int64_t row_end)
{
    const int variant = fl_isa(isa);
    FL_ISA_CALL(variant, narrow_rows, (x__nhwc, kt__otc, bias__o, zero__c, addend__nijo, g, c_out, out__nijo,
                                       row_begin, row_end));
}

// ======================================================================== BLAS drivers
// The GEMMs of the dense and convolution layers, cut into BLAS calls of a fixed shape: every call
// multiplies exactly block_rows rows (a short last block is zero-padded in scratch), so the BLAS
// sees the same calls however many rows there are and whichever thread runs them. With one BLAS
// thread per call (callers pin it: OpenBLAS's own threads split differently per shape), and a
// BLAS kernel that computes each row independently of its position in the block, a row's bits
// then depend on neither the number of rows nor the threads. OpenBLAS's dgemm kernels and its
// SkylakeX sgemm are such kernels (with the columns padded to a multiple of 16); its Haswell/Zen
// sgemm is not, so fastlift's CpuOps tests the loaded sgemm once per process
// (cpu_ops.sgemm_is_deterministic) and runs float32 through dgemm where it fails. The BLAS
// routine comes from the caller (fl_blas, in fl_kernels.h): any Fortran-convention
// sgemm_/dgemm_ with 32-bit integers.
// Row-major C = A*B is issued as the column-major call C^T = B^T*A^T (what numpy hands BLAS too).

// gemm_panel: out[:rows, c0:min(c1, n)] = (src @ b[:, c0:c1])[:rows] as one BLAS call of shape
// (block_rows x k) @ (k x (c1 - c0)). src holds block_rows rows (zero-padded by the caller); out
// is the block's first row (row stride n). Where the panel has padding columns or the block is
// short, the call writes scratch_c (block_rows x (c1 - c0)) and the kept part is copied out.
FL_ROWS void FL_KI(gemm_panel)(fl_blas blas, const FL_T *FL_RESTRICT src, const FL_T *FL_RESTRICT b,
                              int b_fortran, FL_T *FL_RESTRICT out, FL_T *FL_RESTRICT scratch_c,
                              int64_t rows, int64_t k, int64_t n, int64_t n_pad, int64_t block_rows,
                              int64_t c0, int64_t c1)
{
    char trans_b = b_fortran ? 'T' : 'N', no_trans = 'N';
    const int64_t width = c1 - c0, keep = (n < c1 ? n : c1) - c0;
    int bm = (int)width, bn = (int)block_rows, bk = (int)k;
    int lda = (int)(b_fortran ? k : n_pad), ldb = (int)k, ldc;
    FL_T one = 1, zero = 0;
    FL_T *panel = (FL_T *)(b + (b_fortran ? c0 * k : c0));  // BLAS's prototypes are not const
    FL_T *dst;
    if (rows == block_rows && c1 <= n) {
        dst = out + c0;
        ldc = (int)n;
    } else {
        dst = scratch_c;
        ldc = (int)width;
    }
    blas.FL_GEMM(&trans_b, &no_trans, &bm, &bn, &bk, &one, panel, &lda, (FL_T *)src, &ldb, &zero, dst, &ldc);
    if (dst == scratch_c)
        for (int64_t r = 0; r < rows; ++r)
            memcpy(out + r * n + c0, scratch_c + r * width, (size_t)keep * sizeof(FL_T));
}

// matmul: out[i, j] = sum over l of a[i, l] * b[l, j], for i < m and j < n (Ops.matmul), on the
// fixed grid of tasks of fl_matmul_n_tasks: task q is row block q / n_panels (block_rows rows)
// times column panel q % n_panels (panel_cols columns of b's n_pad, the last panel narrower),
// one BLAS call each (see above). b may carry zero columns past n (n_pad >= n): padding the
// columns to a multiple of 16 is what keeps some BLAS kernels (OpenBLAS SkylakeX dgemm, N % 8
// != 0) from a row-position-dependent column tail.
// Layout: a__mk (m, k) C-contiguous; b__kn (k, n_pad) C-contiguous, or F-contiguous when
// b_fortran (e.g. the transpose of a C-contiguous (n_pad, k) matrix); out__mn (m, n).
// panel_cols: 0 (or >= n_pad) for one panel; otherwise a multiple of 16.
// Scratch: fl_matmul_scratch_size(k, n_pad, block_rows, panel_cols) elements per thread.
// Threads: each thread takes its own range of tasks [task_begin, task_end) and its own scratch;
// no two tasks write the same output element.
FL_KERNEL void FL_K(matmul)(fl_blas blas,                              // IN  sgemm / dgemm
                            const FL_T *FL_RESTRICT a__mk,             // IN
                            const FL_T *FL_RESTRICT b__kn, int b_fortran,   // IN
                            int64_t m, int64_t k, int64_t n, int64_t n_pad, int64_t block_rows,
                            int64_t panel_cols,
                            FL_T *FL_RESTRICT scratch,                 // SCRATCH
                            FL_T *FL_RESTRICT out__mn,                 // OUT
                            int64_t task_begin, int64_t task_end)
{
    if (panel_cols <= 0 || panel_cols > n_pad)
        panel_cols = n_pad;
    const int64_t n_panels = (n_pad + panel_cols - 1) / panel_cols;
    FL_T *scratch_a = scratch, *scratch_c = scratch + fli_scratch_round(block_rows * k);
    for (int64_t q = task_begin; q < task_end; ++q) {
        const int64_t i = q / n_panels, p = q % n_panels, lo = i * block_rows;
        const int64_t rows = m - lo < block_rows ? m - lo : block_rows;
        const int64_t c0 = p * panel_cols, c1 = c0 + panel_cols < n_pad ? c0 + panel_cols : n_pad;
        if (k == 0) {  // an empty sum (and no BLAS call: its leading dimensions would be 0)
            for (int64_t r = 0; r < rows; ++r)
                for (int64_t j = c0; j < c1 && j < n; ++j)
                    out__mn[(lo + r) * n + j] = (FL_T)0;
            continue;
        }
        const FL_T *src = a__mk + lo * k;
        if (rows < block_rows) {
            memcpy(scratch_a, src, (size_t)(rows * k) * sizeof(FL_T));
            memset(scratch_a + rows * k, 0, (size_t)((block_rows - rows) * k) * sizeof(FL_T));
            src = scratch_a;
        }
        FL_KI(gemm_panel)(blas, src, b__kn, b_fortran, out__mn + lo * n, scratch_c, rows, k, n, n_pad,
                         block_rows, c0, c1);
    }
}

// conv_forward (Ops.conv_forward): out[q, o] = sum over t*c + ch of im2col(x)[q, t*c + ch] *
// kernel[t*c + ch, o] (+ bias[o]) for output cell q = (n*h_out + i)*w_out + j, fused: each block of
// block_rows cells is unfolded into scratch (im2col_cells), multiplied by one BLAS call of shape
// (block_rows x kh*kw*c) @ (kh*kw*c x n_pad) while it is in cache, and given its bias. Bitwise
// the same as matmul over the unfolded array with one panel (the same calls on the same rows),
// without that (n_cells, kh*kw*c) array.
// Layout: x__nhwc (n, h, w, c); b__tco the kernel (kh*kw*c, n_pad) C-contiguous, or
// F-contiguous when b_fortran, columns past c_out zero (or absent when n_pad = c_out); bias__o
// (c_out,) or NULL; out__qo (n_cells, c_out) with n_cells = n*h_out*w_out.
// Scratch: fl_conv_forward_scratch_size(g, n_pad, block_rows) elements per thread.
// Threads: each thread takes its own range of cell blocks [block_begin, block_end) (there are
// (n_cells + block_rows - 1) / block_rows) and its own scratch.
FL_KERNEL void FL_K(conv_forward)(fl_blas blas,                          // IN  sgemm / dgemm
                                  const FL_T *FL_RESTRICT x__nhwc,       // IN
                                  fl_geometry g,
                                  const FL_T *FL_RESTRICT b__tco, int b_fortran,   // IN
                                  int64_t c_out, int64_t n_pad,
                                  const FL_T *FL_RESTRICT bias__o,       // IN (or NULL)
                                  int64_t n_cells, int64_t block_rows,
                                  FL_T *FL_RESTRICT scratch,             // SCRATCH
                                  FL_T *FL_RESTRICT out__qo,             // OUT
                                  int64_t block_begin, int64_t block_end)
{
    const int64_t k = g.kh * g.kw * g.c;
    FL_T *scratch_a = scratch, *scratch_c = scratch + fli_scratch_round(block_rows * k);
    for (int64_t i = block_begin; i < block_end; ++i) {
        const int64_t lo = i * block_rows, rows = n_cells - lo < block_rows ? n_cells - lo : block_rows;
        FL_K(im2col_cells)(x__nhwc, scratch_a, g, lo, lo + rows);
        if (rows < block_rows)
            memset(scratch_a + rows * k, 0, (size_t)((block_rows - rows) * k) * sizeof(FL_T));
        FL_KI(gemm_panel)(blas, scratch_a, b__tco, b_fortran, out__qo + lo * c_out, scratch_c, rows, k, c_out,
                         n_pad, block_rows, 0, n_pad);
        if (bias__o != NULL)
            for (int64_t r = 0; r < rows; ++r) {
                FL_T *row = out__qo + (lo + r) * c_out;
                for (int64_t o = 0; o < c_out; ++o)
                    row[o] = row[o] + bias__o[o];
            }
    }
}

// conv_adjoint (Ops.conv_adjoint, the multipliers at a convolution's input):
//   m_in[p] = col2im(m_out[p] @ kernel^T), i.e. m_in[p, r, s, ch] = sum over the output cells
//   (i, j) and taps t = (a, b) with r = i*sh - pt + a*dh, s = j*sw - pl + b*dw, of
//   sum over o of m_out[p, i, j, o] * kernel[t*c + ch, o],
// any stride, padding and dilation. Each pair's h_out*w_out cells are multiplied in blocks of
// block_rows cells that start at the pair's first cell, so a pair's bits depend on its own
// multipliers only (for any deterministic BLAS kernel, unlike fl_matmul's rows), then are folded
// back by col2im in the oracle's tap order.
// Layout: m_out__pijo (n_pairs, h_out, w_out, c_out); b__otc, kernel^T: (c_out, n_pad) with
// n_pad >= kh*kw*c, C-contiguous, or F-contiguous when b_fortran, which is what the forward
// kernel (kh*kw*c, c_out) itself is when read column-major (b_fortran = 1, n_pad = kh*kw*c);
// m_in__phwc (n_pairs, h, w, c).
// Scratch: fl_conv_adjoint_scratch_size(g, c_out, n_pad, block_rows) elements per thread.
// Threads: each thread takes its own range of pairs [p_begin, p_end) and its own scratch.
FL_KERNEL void FL_K(conv_adjoint)(fl_blas blas,                          // IN  sgemm / dgemm
                                  const FL_T *FL_RESTRICT m_out__pijo,   // IN
                                  fl_geometry g,
                                  const FL_T *FL_RESTRICT b__otc, int b_fortran,   // IN
                                  int64_t c_out, int64_t n_pad, int64_t block_rows,
                                  FL_T *FL_RESTRICT scratch,             // SCRATCH
                                  FL_T *FL_RESTRICT m_in__phwc,          // OUT
                                  int64_t p_begin, int64_t p_end)
{
    const int64_t cells = g.h_out * g.w_out, tc = g.kh * g.kw * g.c;
    const int64_t n_tasks = fl_matmul_n_tasks(cells, n_pad, block_rows, 0);
    FL_T *cols = scratch, *gemm_scratch = scratch + fli_scratch_round(cells * tc);
    for (int64_t p = p_begin; p < p_end; ++p) {
        FL_K(matmul)(blas, m_out__pijo + p * cells * c_out, b__otc, b_fortran, cells, c_out, tc, n_pad,
                     block_rows, 0, gemm_scratch, cols, 0, n_tasks);
        FL_K(col2im)(cols, m_in__phwc + p * g.h * g.w * g.c, g, 0, g.h);
    }
}

// ======================================================================== one-hot convolution
// onehot_cells: hot__hw[r*w + s] = the channel of cell (r, s) that is 1, or -1 when all are 0.
// Returns 1 when the row is one-hot (every value 0 or 1, at most one 1 per cell), else 0 (then
// hot__hw is incomplete). Layout: x__hwc (h*w cells, c) of one row; hot__hw (h*w,).
// Threads: one row per call; threads take different rows.
FL_KERNEL int FL_K(onehot_cells)(const FL_T *FL_RESTRICT x__hwc, int64_t cells, int64_t c,
                                 int32_t *FL_RESTRICT hot__hw)
{
    for (int64_t q = 0; q < cells; ++q) {
        const FL_T *v = x__hwc + q * c;
        int32_t hot = -1;
        for (int64_t ch = 0; ch < c; ++ch) {
            if (v[ch] == (FL_T)1 && hot < 0)
                hot = (int32_t)ch;
            else if (v[ch] != (FL_T)0)
                return 0;
        }
        hot__hw[q] = hot;
    }
    return 1;
}

// conv_forward_onehot: conv_forward of rows whose input cells are one-hot (hot__nhw from onehot_cells):
//   out[n, i, j, o] = (sum over the taps t = (a, b), in row-major order, whose cell is inside the
//   input and not all zero, of kernel[t*c + hot, o]) + bias[o].
// A gather of kernel rows instead of a GEMM over mostly zeros: taps*c_out adds per output cell,
// not taps*c*c_out multiply-adds. Adds only, in tap order: every ISA variant gives the same bits,
// and they depend on neither the batch nor the threads.
// Layout: hot__nhw (n, h, w); kernel__tp (kh*kw*c, c_pad), columns past c_out zero; zero__p
// (c_pad) zeros; bias__o (c_pad) or NULL; out__nijo (n, h_out, w_out, c_out). c_pad = c_out
// rounded up to the vector length.
// Threads: output rows q = n*h_out + i in [row_begin, row_end).
// FL_ONEHOT_CELLS output cells j0 .. j0+cells-1 of output row (n, i) times one block of nv vectors
// of output channels from col0, summed in registers; a tap whose cell is outside the input or all
// zero adds the zero row (adding +0 changes no sum).
#define FL_OT_VEC FL_KI(vec)
#define FL_OT_NV FL_VEC_BLOCK
#define FL_OT_TILE FL_KI(onehot_tile)
#define FL_OT_ROWS FL_KI(onehot_rows)
#define FL_OT_ROWS_ATTR FL_ROWS
#include "fl_onehot_tile.h"
#undef FL_OT_VEC
#undef FL_OT_NV
#undef FL_OT_TILE
#undef FL_OT_ROWS
#undef FL_OT_ROWS_ATTR

FL_ISA_VARIANTS(onehot_rows,
                (const int32_t *hot__nhw, const FL_T *kernel__tp, const FL_T *zero__p, const FL_T *bias__o,
                 fl_geometry g, int64_t c_out, int64_t c_pad, FL_T *out__nijo, int64_t row_begin,
                 int64_t row_end),
                (hot__nhw, kernel__tp, zero__p, bias__o, g, c_out, c_pad, out__nijo, row_begin, row_end))

#ifdef FL_X86_DISPATCH
// The tile for AVX2's 16 registers: FL_ONEHOT_CELLS cells times up to FL_ONEHOT_YMM 32-byte
// vectors (the tile above keeps 3 x 4 64-byte vectors, 24 AVX2 registers, and spilled).
#define FL_ONEHOT_YMM 4
#define FL_OT_VEC FL_KI(ymm)
#define FL_OT_NV FL_ONEHOT_YMM
#define FL_OT_TILE FL_KI(onehot_tile_ymm)
#define FL_OT_ROWS FL_KI(onehot_rows_ymm)
#define FL_OT_ROWS_ATTR FL_TARGET_AVX2 FL_NOINLINE
#include "fl_onehot_tile.h"
#undef FL_OT_VEC
#undef FL_OT_NV
#undef FL_OT_TILE
#undef FL_OT_ROWS
#undef FL_OT_ROWS_ATTR
#undef FL_ONEHOT_YMM
#endif

// isa: an FL_ISA_* code, the highest variant to use (FL_ISA_AUTO: the best the CPU has).
FL_KERNEL void FL_K(conv_forward_onehot)(const int32_t *FL_RESTRICT hot__nhw,   // IN
                                 const FL_T *FL_RESTRICT kernel__tp,    // IN
                                 const FL_T *FL_RESTRICT zero__p,       // IN
                                 const FL_T *FL_RESTRICT bias__o,       // IN (or NULL)
                                 fl_geometry g, int64_t c_out, int64_t c_pad, int isa,
                                 FL_T *FL_RESTRICT out__nijo,           // OUT
                                 int64_t row_begin, int64_t row_end)
{
    const int variant = fl_isa(isa);
#ifdef FL_X86_DISPATCH
    if (variant == FL_ISA_AVX2) {
        FL_KI(onehot_rows_ymm)(hot__nhw, kernel__tp, zero__p, bias__o, g, c_out, c_pad, out__nijo, row_begin, row_end);
        return;
    }
#endif
    FL_ISA_CALL(variant, onehot_rows,
                (hot__nhw, kernel__tp, zero__p, bias__o, g, c_out, c_pad, out__nijo, row_begin, row_end));
}

// ======================================================================== pooling
// max_pool_forward: out[n, i, j, ch] = max of x[n, r, s, ch] over the window's cells inside
// the input (padding ignored; -inf if the window has none).
// avg_pool_forward: the mean over those cells (summed in row-major tap order, then divided by
// their count).
// Layout: x__nhwc (n, h, w, c); out__nijc (n, h_out, w_out, c).
// Threads: one output row (n, i) is row index n*h_out + i; each thread takes a block of them.
// The output channel run is the accumulator; each window cell is one contiguous channel run.
FL_KERNEL void FL_K(max_pool_forward)(const FL_T *FL_RESTRICT x__nhwc,   // IN
                                      FL_T *FL_RESTRICT out__nijc,       // OUT
                                      fl_geometry g, int64_t row_begin, int64_t row_end)
{
    const int64_t c = g.c;
    for (int64_t q = row_begin; q < row_end; ++q) {
        const int64_t n = q / g.h_out, i = q % g.h_out;
        const FL_T *xn = x__nhwc + n * g.h * g.w * c;
        long long a_lo, a_hi;
        fli_tap_range(i * g.sh - g.pt, g.dh, g.kh, g.h, &a_lo, &a_hi);
        for (int64_t j = 0; j < g.w_out; ++j) {
            FL_T *out = out__nijc + (q * g.w_out + j) * c;
            long long b_lo, b_hi;
            fli_tap_range(j * g.sw - g.pl, g.dw, g.kw, g.w, &b_lo, &b_hi);
            for (int64_t ch = 0; ch < c; ++ch)
                out[ch] = (FL_T)(-INFINITY);
            for (int64_t a = a_lo; a < a_hi; ++a) {
                const int64_t r = i * g.sh - g.pt + a * g.dh;
                for (int64_t b = b_lo; b < b_hi; ++b) {
                    const FL_T *src = xn + (r * g.w + j * g.sw - g.pl + b * g.dw) * c;
                    for (int64_t ch = 0; ch < c; ++ch)
                        out[ch] = src[ch] > out[ch] ? src[ch] : out[ch];
                }
            }
        }
    }
}

FL_KERNEL void FL_K(avg_pool_forward)(const FL_T *FL_RESTRICT x__nhwc,   // IN
                                      FL_T *FL_RESTRICT out__nijc,       // OUT
                                      fl_geometry g, int64_t row_begin, int64_t row_end)
{
    const int64_t c = g.c;
    for (int64_t q = row_begin; q < row_end; ++q) {
        const int64_t n = q / g.h_out, i = q % g.h_out;
        const FL_T *xn = x__nhwc + n * g.h * g.w * c;
        long long a_lo, a_hi;
        fli_tap_range(i * g.sh - g.pt, g.dh, g.kh, g.h, &a_lo, &a_hi);
        for (int64_t j = 0; j < g.w_out; ++j) {
            FL_T *out = out__nijc + (q * g.w_out + j) * c;
            long long b_lo, b_hi;
            fli_tap_range(j * g.sw - g.pl, g.dw, g.kw, g.w, &b_lo, &b_hi);
            for (int64_t ch = 0; ch < c; ++ch)
                out[ch] = (FL_T)0;
            for (int64_t a = a_lo; a < a_hi; ++a) {
                const int64_t r = i * g.sh - g.pt + a * g.dh;
                for (int64_t b = b_lo; b < b_hi; ++b) {
                    const FL_T *src = xn + (r * g.w + j * g.sw - g.pl + b * g.dw) * c;
                    for (int64_t ch = 0; ch < c; ++ch)
                        out[ch] += src[ch];
                }
            }
            const FL_T count = (FL_T)((a_hi - a_lo) * (b_hi - b_lo));
            for (int64_t ch = 0; ch < c; ++ch)
                out[ch] /= count;
        }
    }
}

// avg_pool_backward (adjoint of avg_pool_forward):
//   m_in[p, r, s, ch] = sum over taps (a, b) in row-major order of m_out[p, i, j, ch] / count(i, j)
// for the output cell (i, j) whose tap (a, b) reads (r, s); count(i, j) = number of valid cells
// of window (i, j). Gather form as in col2im (same order as ops.py: bitwise equal).
// Layout: m_out__pijc (n_pairs, h_out, w_out, c); m_in__phwc (n_pairs, h, w, c).
// Threads: one input row (p, r) is row index p*h + r; each thread takes a block of them.
FL_KERNEL void FL_K(avg_pool_backward)(const FL_T *FL_RESTRICT m_out__pijc,   // IN
                                       FL_T *FL_RESTRICT m_in__phwc,          // OUT
                                       fl_geometry g, int64_t row_begin, int64_t row_end)
{
    const int64_t c = g.c;
    for (int64_t q = row_begin; q < row_end; ++q) {
        const int64_t p = q / g.h, r = q % g.h;
        const FL_T *mp = m_out__pijc + p * g.h_out * g.w_out * c;
        for (int64_t s = 0; s < g.w; ++s) {
            FL_T *d = m_in__phwc + (q * g.w + s) * c;
            for (int64_t ch = 0; ch < c; ++ch)
                d[ch] = (FL_T)0;
            for (int64_t a = 0; a < g.kh; ++a) {
                const int64_t ti = r + g.pt - a * g.dh;
                if (ti < 0)
                    break;
                if (ti % g.sh != 0 || ti / g.sh >= g.h_out)
                    continue;
                const int64_t i = ti / g.sh;
                long long a_lo, a_hi;
                fli_tap_range(i * g.sh - g.pt, g.dh, g.kh, g.h, &a_lo, &a_hi);
                for (int64_t b = 0; b < g.kw; ++b) {
                    const int64_t tj = s + g.pl - b * g.dw;
                    if (tj < 0)
                        break;
                    if (tj % g.sw != 0 || tj / g.sw >= g.w_out)
                        continue;
                    const int64_t j = tj / g.sw;
                    long long b_lo, b_hi;
                    fli_tap_range(j * g.sw - g.pl, g.dw, g.kw, g.w, &b_lo, &b_hi);
                    const FL_T count = (FL_T)((a_hi - a_lo) * (b_hi - b_lo));
                    const FL_T *src = mp + (i * g.w_out + j) * c;
                    for (int64_t ch = 0; ch < c; ++ch)
                        d[ch] += src[ch] / count;
                }
            }
        }
    }
}

// max_pool_backward: routes each window's multiplier m = m_out[p, i, j, ch] to arg-max cells of
// the pair's example x = x[pair_x[p]] and reference ref = ref[pair_r[p]] (padding ignored).
// Cell A = first arg-max of the window in x, cell B = first arg-max in ref (row-major order).
//   exact == 0 (gradient mode): m_in[A] += m.
//   exact != 0: A == B gets m; otherwise A gets lambda*m and B gets (1 - lambda)*m with
//   lambda = fl_max_pool_backward_lambda(x[A], x[B], ref[A], ref[B]); contributions then sum to
//   x[A] - ref[B] for any reference.
// Windows are visited in reverse row-major order (i, j descending). For any input cell that is
// the order of increasing tap (a, b), the order in which ops.py's col2im adds the windows'
// shares, so the sums match the oracle bit for bit.
// Layout: m_out__pijc (n_pairs, h_out, w_out, c); x__nhwc (n_x, h, w, c);
//   ref__nhwc (n_r, h, w, c); m_in__phwc (n_pairs, h, w, c).
// Threads: each thread takes a block of pairs [p_begin, p_end) and owns their whole m_in rows,
// so the scatter has no races and a fixed order.
// Vectors: channels go in FL_CBLOCK runs, and every step below is one pass over a run of one
// window cell (tap), contiguous in memory: the arg-max is kept as a tap number per channel, and
// each tap's cell takes its share where the tap number matches (adding 0 elsewhere). The steps
// are inlined into one copy of the pair loop per ISA variant (AVX-512, AVX2, baseline).

// Offset of tap t (row-major over the valid taps [a_lo, ..) x [b_lo, b_lo + nb)) of the window
// at (r0, s0), channel 0.
FL_ROWS int64_t FL_KI(tap_offset)(fl_geometry g, int64_t r0, int64_t s0, long long a_lo, long long b_lo,
                                 int64_t nb, int64_t t)
{
    return ((r0 + (a_lo + t / nb) * g.dh) * g.w + s0 + (b_lo + t % nb) * g.dw) * g.c;
}

// argmax_step: one more window cell v (tap number t) into the running maxima of nc channels
// (later equal values do not replace the first; NaN never does).
FL_ROWS void FL_KI(argmax_step)(const FL_T *FL_RESTRICT v, FL_TI t, int64_t nc,
                                   FL_T *FL_RESTRICT best, FL_TI *FL_RESTRICT tap)
{
    for (int64_t ch = 0; ch < nc; ++ch) {
        const FL_T x = v[ch], b = best[ch];
        const FL_TI take = -(FL_TI)(x > b);
        best[ch] = x > b ? x : b;
        tap[ch] = (tap[ch] & ~take) | (t & take);
    }
}

// ends_step: at tap t, x_b takes the example's value where the reference's arg-max is t, and r_a
// the reference's value where the example's arg-max is t.
FL_ROWS void FL_KI(ends_step)(const FL_T *FL_RESTRICT xv, const FL_T *FL_RESTRICT rv, FL_TI t, int64_t nc,
                                 const FL_TI *FL_RESTRICT tap_a, const FL_TI *FL_RESTRICT tap_b,
                                 FL_T *FL_RESTRICT x_b, FL_T *FL_RESTRICT r_a)
{
    for (int64_t ch = 0; ch < nc; ++ch) {
        const FL_T x = xv[ch], r = rv[ch], xb = x_b[ch], ra = r_a[ch];  // loaded unconditionally
        x_b[ch] = tap_b[ch] == t ? x : xb;
        r_a[ch] = tap_a[ch] == t ? r : ra;
    }
}

// split_shares: cell A's and cell B's shares of m (all of m to A when A == B).
FL_ROWS void FL_KI(split_shares)(int64_t nc, const FL_T *FL_RESTRICT m, const FL_T *FL_RESTRICT x_a,
                                    const FL_T *FL_RESTRICT x_b, const FL_T *FL_RESTRICT r_a,
                                    const FL_T *FL_RESTRICT r_b, const FL_TI *FL_RESTRICT tap_a,
                                    const FL_TI *FL_RESTRICT tap_b, FL_T *FL_RESTRICT share_a,
                                    FL_T *FL_RESTRICT share_b)
{
    for (int64_t ch = 0; ch < nc; ++ch) {
        const FL_T lam = FL_M(max_pool_backward_lambda)(x_a[ch], x_b[ch], r_a[ch], r_b[ch]);
        const FL_T mv = m[ch];
        const int same = tap_a[ch] == tap_b[ch];
        share_a[ch] = same ? mv : lam * mv;
        share_b[ch] = same ? (FL_T)0 : ((FL_T)1 - lam) * mv;
    }
}

// route_step / route2_step: tap t's cell adds the share of each arg-max it is.
FL_ROWS void FL_KI(route_step)(FL_T *FL_RESTRICT out, FL_TI t, int64_t nc, const FL_TI *FL_RESTRICT tap_a,
                                  const FL_T *FL_RESTRICT share_a)
{
    for (int64_t ch = 0; ch < nc; ++ch) {
        const FL_T sa = share_a[ch];
        out[ch] += tap_a[ch] == t ? sa : (FL_T)0;
    }
}

FL_ROWS void FL_KI(route2_step)(FL_T *FL_RESTRICT out, FL_TI t, int64_t nc, const FL_TI *FL_RESTRICT tap_a,
                                   const FL_TI *FL_RESTRICT tap_b, const FL_T *FL_RESTRICT share_a,
                                   const FL_T *FL_RESTRICT share_b)
{
    for (int64_t ch = 0; ch < nc; ++ch) {
        const FL_T sa = share_a[ch], sb = share_b[ch];
        out[ch] += (tap_a[ch] == t ? sa : (FL_T)0) + (tap_b[ch] == t ? sb : (FL_T)0);
    }
}

// window_argmax: best[ch] = the maximum of channel c0 + ch over the window's n_taps valid cells
// and tap[ch] the number of its first cell (src: one NHWC row).
FL_ROWS void FL_KI(window_argmax)(const FL_T *FL_RESTRICT src, fl_geometry g, int64_t r0, int64_t s0,
                                 long long a_lo, long long b_lo, int64_t nb, int64_t n_taps, int64_t c0,
                                 int64_t nc, FL_T *FL_RESTRICT best, FL_TI *FL_RESTRICT tap)
{
    const FL_T *first = src + FL_KI(tap_offset)(g, r0, s0, a_lo, b_lo, nb, 0) + c0;
    for (int64_t ch = 0; ch < nc; ++ch) {
        best[ch] = first[ch];
        tap[ch] = 0;
    }
    for (int64_t t = 1; t < n_taps; ++t)
        FL_KI(argmax_step)(src + FL_KI(tap_offset)(g, r0, s0, a_lo, b_lo, nb, t) + c0, (FL_TI)t, nc, best, tap);
}

// One pair's m_in row (see above); inlined into one function per ISA variant.
FL_ROWS void FL_KI(max_pool_backward_pair)(const FL_T *FL_RESTRICT mp, const FL_T *FL_RESTRICT xp,
                                          const FL_T *FL_RESTRICT rp, fl_geometry g, int exact,
                                          FL_T *FL_RESTRICT out)
{
    const int64_t c = g.c, hwc = g.h * g.w * g.c;
    FL_T best_x[FL_CBLOCK], best_r[FL_CBLOCK], x_b[FL_CBLOCK], r_a[FL_CBLOCK];
    FL_T share_a[FL_CBLOCK], share_b[FL_CBLOCK];
    FL_TI tap_x[FL_CBLOCK], tap_r[FL_CBLOCK];
    for (int64_t u = 0; u < hwc; ++u)
        out[u] = (FL_T)0;
    for (int64_t i = g.h_out - 1; i >= 0; --i) {
        long long a_lo, a_hi;
        fli_tap_range(i * g.sh - g.pt, g.dh, g.kh, g.h, &a_lo, &a_hi);
        if (a_lo >= a_hi)
            continue;
        for (int64_t j = g.w_out - 1; j >= 0; --j) {
            long long b_lo, b_hi;
            fli_tap_range(j * g.sw - g.pl, g.dw, g.kw, g.w, &b_lo, &b_hi);
            if (b_lo >= b_hi)
                continue;
            const FL_T *m = mp + (i * g.w_out + j) * c;
            const int64_t r0 = i * g.sh - g.pt, s0 = j * g.sw - g.pl;
            const int64_t nb = b_hi - b_lo, n_taps = (a_hi - a_lo) * nb;
            for (int64_t c0 = 0; c0 < c; c0 += FL_CBLOCK) {
                const int64_t nc = c - c0 < FL_CBLOCK ? c - c0 : FL_CBLOCK;
                FL_KI(window_argmax)(xp, g, r0, s0, a_lo, b_lo, nb, n_taps, c0, nc, best_x, tap_x);
                if (!exact) {
                    for (int64_t t = 0; t < n_taps; ++t)
                        FL_KI(route_step)(out + FL_KI(tap_offset)(g, r0, s0, a_lo, b_lo, nb, t) + c0,
                                         (FL_TI)t, nc, tap_x, m + c0);
                    continue;
                }
                FL_KI(window_argmax)(rp, g, r0, s0, a_lo, b_lo, nb, n_taps, c0, nc, best_r, tap_r);
                for (int64_t t = 0; t < n_taps; ++t) {
                    const int64_t off = FL_KI(tap_offset)(g, r0, s0, a_lo, b_lo, nb, t) + c0;
                    FL_KI(ends_step)(xp + off, rp + off, (FL_TI)t, nc, tap_x, tap_r, x_b, r_a);
                }
                FL_KI(split_shares)(nc, m + c0, best_x, x_b, r_a, best_r, tap_x, tap_r, share_a, share_b);
                for (int64_t t = 0; t < n_taps; ++t)
                    FL_KI(route2_step)(out + FL_KI(tap_offset)(g, r0, s0, a_lo, b_lo, nb, t) + c0,
                                      (FL_TI)t, nc, tap_x, tap_r, share_a, share_b);
            }
        }
    }
}

// The variants have the same bits: no step has a multiply-add to contract.
FL_ISA_VARIANTS(max_pool_backward_pair,
                (const FL_T *mp, const FL_T *xp, const FL_T *rp, fl_geometry g, int exact, FL_T *out),
                (mp, xp, rp, g, exact, out))

// isa: an FL_ISA_* code, the highest variant to use (FL_ISA_AUTO: the best the CPU has).
FL_KERNEL void FL_K(max_pool_backward)(const FL_T *FL_RESTRICT m_out__pijc,    // IN
                                       const FL_T *FL_RESTRICT x__nhwc,        // IN
                                       const FL_T *FL_RESTRICT ref__nhwc,      // IN
                                       const int64_t *FL_RESTRICT pair_x__p,   // IN
                                       const int64_t *FL_RESTRICT pair_r__p,   // IN
                                       fl_geometry g, int exact, int isa,
                                       FL_T *FL_RESTRICT m_in__phwc,           // OUT
                                       int64_t p_begin, int64_t p_end)
{
    const int64_t hwc = g.h * g.w * g.c;
    const int use = fl_isa(isa);
    for (int64_t p = p_begin; p < p_end; ++p) {
        const FL_T *xp = x__nhwc + pair_x__p[p] * hwc;
        const FL_T *rp = ref__nhwc + pair_r__p[p] * hwc;
        const FL_T *mp = m_out__pijc + p * g.h_out * g.w_out * g.c;
        FL_T *out = m_in__phwc + p * hwc;
        FL_ISA_CALL(use, max_pool_backward_pair, (mp, xp, rp, g, exact, out));
    }
}
