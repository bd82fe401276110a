// fl_math_impl.h -- body of the per-element math for one element type. Do not include directly:
// fl_math.h includes it twice, with FL_T = float, FL_M(name) = fl_name_f (the API), FL_MI(name) =
// fli_name_f (internal helpers) and FL_F(fn) = fnf (the C library's float functions: expf,
// tanhf, ...), and again for double with fl_name_d, fli_name_d and fn.
// The rules that keep it valid for C99, C++ and CUDA are at the top of fl_math.h.
// Constants are cast to FL_T, so float code does float arithmetic only; a float cast of a
// double constant is the float literal of that value, so both types keep the formulas' bits.
// No include guard on purpose.
#ifndef FL_T
#  error "include fl_math.h, not fl_math_impl.h"
#endif

// ------------------------------------------------------------------------ sigmoid
// Two-sided form: exp never overflows, and sigmoid(x) for x << 0 keeps full relative precision.
FL_HD FL_T FL_MI(sigmoid)(FL_T x)
{
    FL_T e = FL_F(exp)(-FL_F(fabs)(x));
    return x >= (FL_T)0 ? (FL_T)1 / ((FL_T)1 + e) : e / ((FL_T)1 + e);
}

// ------------------------------------------------------------------------ activation value
// f(x) for activation code `act`; `a` is the feature's parameter (alpha), used by LEAKY_RELU,
// ELU and HARD_SIGMOID and ignored by the others. Unknown codes return 0 (callers reject them).
// GELU: 1 + erf(z) is evaluated as erfc(-z), the same function without the cancellation that
// costs float32 most of its digits for x < -2.
FL_HD FL_T FL_M(activation_forward_elem)(int act, FL_T x, FL_T a)
{
    switch (act) {
    case FL_ACT_LINEAR:       return x;
    case FL_ACT_RELU:         return x > (FL_T)0 ? x : (FL_T)0;
    case FL_ACT_RELU6:        return x > (FL_T)0 ? (x < (FL_T)6 ? x : (FL_T)6) : (FL_T)0;
    case FL_ACT_LEAKY_RELU:   return x > (FL_T)0 ? x : a * x;
    case FL_ACT_ELU:          return x > (FL_T)0 ? x : a * FL_F(expm1)(x);
    case FL_ACT_SELU:
        return (FL_T)FL_SELU_SCALE * (x > (FL_T)0 ? x : (FL_T)FL_SELU_ALPHA * FL_F(expm1)(x));
    case FL_ACT_SIGMOID:      return FL_MI(sigmoid)(x);
    case FL_ACT_HARD_SIGMOID: {
        FL_T t = a * x + (FL_T)0.5;
        return t > (FL_T)0 ? (t < (FL_T)1 ? t : (FL_T)1) : (FL_T)0;
    }
    case FL_ACT_TANH:         return FL_F(tanh)(x);
    case FL_ACT_SOFTPLUS:     return (x > (FL_T)0 ? x : (FL_T)0) + FL_F(log1p)(FL_F(exp)(-FL_F(fabs)(x)));
    case FL_ACT_SOFTSIGN:     return x / ((FL_T)1 + FL_F(fabs)(x));
    case FL_ACT_SWISH:        return x * FL_MI(sigmoid)(x);
    case FL_ACT_GELU:         return (FL_T)0.5 * x * FL_F(erfc)(-x / (FL_T)FL_SQRT_2);
    case FL_ACT_GELU_TANH: {
        FL_T u = (FL_T)FL_SQRT_2_OVER_PI * (x + (FL_T)FL_GELU_TANH_C * (x * x * x));
        return (FL_T)0.5 * x * ((FL_T)1 + FL_F(tanh)(u));
    }
    case FL_ACT_EXPONENTIAL:  return FL_F(exp)(x);
    case FL_ACT_LOG:          return FL_F(log)(x);
    default:                  return (FL_T)0;
    }
}

// ------------------------------------------------------------------------ activation derivative
// f'(x) for activation code `act` (same conventions as the value). At kinks the one-sided
// choice of ops.py is kept: relu'(0) = 0, relu6'(0) = relu6'(6) = 0, hard_sigmoid' = 0 at the
// clip points.
FL_HD FL_T FL_M(activation_grad_elem)(int act, FL_T x, FL_T a)
{
    switch (act) {
    case FL_ACT_LINEAR:       return (FL_T)1;
    case FL_ACT_RELU:         return x > (FL_T)0 ? (FL_T)1 : (FL_T)0;
    case FL_ACT_RELU6:        return (x > (FL_T)0 && x < (FL_T)6) ? (FL_T)1 : (FL_T)0;
    case FL_ACT_LEAKY_RELU:   return x > (FL_T)0 ? (FL_T)1 : a;
    case FL_ACT_ELU:          return x > (FL_T)0 ? (FL_T)1 : a * FL_F(exp)(x);
    case FL_ACT_SELU:
        return (FL_T)FL_SELU_SCALE * (x > (FL_T)0 ? (FL_T)1 : (FL_T)FL_SELU_ALPHA * FL_F(exp)(x));
    case FL_ACT_SIGMOID: {
        FL_T s = FL_MI(sigmoid)(x);
        return s * ((FL_T)1 - s);
    }
    case FL_ACT_HARD_SIGMOID: {
        FL_T t = a * x + (FL_T)0.5;
        return (t > (FL_T)0 && t < (FL_T)1) ? a : (FL_T)0;
    }
    case FL_ACT_TANH: {
        FL_T t = FL_F(tanh)(x);
        return (FL_T)1 - t * t;
    }
    case FL_ACT_SOFTPLUS:     return FL_MI(sigmoid)(x);
    case FL_ACT_SOFTSIGN: {
        FL_T d = (FL_T)1 + FL_F(fabs)(x);
        return (FL_T)1 / (d * d);
    }
    case FL_ACT_SWISH: {
        FL_T s = FL_MI(sigmoid)(x);
        return s * ((FL_T)1 + x * ((FL_T)1 - s));
    }
    case FL_ACT_GELU: {
        FL_T cdf = (FL_T)0.5 * FL_F(erfc)(-x / (FL_T)FL_SQRT_2);
        FL_T pdf = FL_F(exp)((FL_T)-0.5 * x * x) / (FL_T)FL_SQRT_2PI;
        return cdf + x * pdf;
    }
    case FL_ACT_GELU_TANH: {
        FL_T u = (FL_T)FL_SQRT_2_OVER_PI * (x + (FL_T)FL_GELU_TANH_C * (x * x * x));
        FL_T t = FL_F(tanh)(u);
        FL_T du = (FL_T)FL_SQRT_2_OVER_PI * ((FL_T)1 + (FL_T)(3.0 * FL_GELU_TANH_C) * x * x);
        return (FL_T)0.5 * ((FL_T)1 + t) + (FL_T)0.5 * x * ((FL_T)1 - t * t) * du;
    }
    case FL_ACT_EXPONENTIAL:  return FL_F(exp)(x);
    case FL_ACT_LOG:          return (FL_T)1 / x;
    default:                  return (FL_T)0;
    }
}

// ------------------------------------------------------------------------ Rescale rule
// One element of rescale_backward: m_in = m_out * s with the multiplier scale
// s = (y - y_ref) / (x - ref), where y = f(x) and y_ref = f(ref) come from the forward pass;
// where |x - ref| < NEAR_ZERO, s = f'(ref).
// (Where dx == 0 the unused quotient is 0/0: NaN, never selected, no trap.)
FL_HD FL_T FL_M(rescale_backward_elem)(int act, FL_T m_out, FL_T x, FL_T ref, FL_T y, FL_T y_ref, FL_T a)
{
    FL_T dx = x - ref;
    int near = FL_F(fabs)(dx) < (FL_T)FL_NEAR_ZERO;
    if (FL_ACT_IS_ARITHMETIC(act)) {
        FL_T g = FL_M(activation_grad_elem)(act, ref, a), q = (y - y_ref) / dx;
        return m_out * (near ? g : q);
    }
    return m_out * (near ? FL_M(activation_grad_elem)(act, ref, a) : (y - y_ref) / dx);
}

// ------------------------------------------------------------------------ RevealCancel rule
// One element of reveal_cancel_split: the output split for reference input x0 and input-delta
// halves d_pos (>= 0), d_neg (<= 0):
//   dy_pos = 0.5*[(f(x0+d_pos) - f(x0)) + (f(x0+d_pos+d_neg) - f(x0+d_neg))]
//   dy_neg = 0.5*[(f(x0+d_neg) - f(x0)) + (f(x0+d_pos+d_neg) - f(x0+d_pos))]
// (x0 + d_pos + d_neg is evaluated left to right, as in ops.py).
FL_HD void FL_M(reveal_cancel_split_elem)(int act, FL_T x0, FL_T d_pos, FL_T d_neg, FL_T a,
                                          FL_T *dy_pos, FL_T *dy_neg)
{
    FL_T f0 = FL_M(activation_forward_elem)(act, x0, a);
    FL_T fp = FL_M(activation_forward_elem)(act, x0 + d_pos, a);
    FL_T fn = FL_M(activation_forward_elem)(act, x0 + d_neg, a);
    FL_T fpn = FL_M(activation_forward_elem)(act, x0 + d_pos + d_neg, a);
    *dy_pos = (FL_T)0.5 * ((fp - f0) + (fpn - fn));
    *dy_neg = (FL_T)0.5 * ((fn - f0) + (fpn - fp));
}

// One element of reveal_cancel_backward: m_in_pos = m_pos * s_pos and m_in_neg = m_neg * s_neg
// with the multiplier scales s_pos = dy_pos / d_pos and s_neg = dy_neg / d_neg (the split above,
// recomputed). Where |d_pos| < NEAR_ZERO, s_pos is its limit 0.5*(f'(x0) + f'(x0 + d_neg));
// symmetrically for d_neg. Derivatives are only evaluated on that branch.
FL_HD void FL_M(reveal_cancel_backward_elem)(int act, FL_T m_pos, FL_T m_neg, FL_T x0, FL_T d_pos,
                                             FL_T d_neg, FL_T a, FL_T *m_in_pos, FL_T *m_in_neg)
{
    FL_T dy_pos, dy_neg;
    FL_M(reveal_cancel_split_elem)(act, x0, d_pos, d_neg, a, &dy_pos, &dy_neg);
    int near_pos = FL_F(fabs)(d_pos) < (FL_T)FL_NEAR_ZERO, near_neg = FL_F(fabs)(d_neg) < (FL_T)FL_NEAR_ZERO;
    if (FL_ACT_IS_ARITHMETIC(act)) {
        FL_T g0 = FL_M(activation_grad_elem)(act, x0, a);
        FL_T lim_pos = (FL_T)0.5 * (g0 + FL_M(activation_grad_elem)(act, x0 + d_neg, a));
        FL_T lim_neg = (FL_T)0.5 * (g0 + FL_M(activation_grad_elem)(act, x0 + d_pos, a));
        FL_T q_pos = dy_pos / d_pos, q_neg = dy_neg / d_neg;
        *m_in_pos = m_pos * (near_pos ? lim_pos : q_pos);
        *m_in_neg = m_neg * (near_neg ? lim_neg : q_neg);
        return;
    }
    *m_in_pos = m_pos * (near_pos ? (FL_T)0.5 * (FL_M(activation_grad_elem)(act, x0, a)
                                                 + FL_M(activation_grad_elem)(act, x0 + d_neg, a))
                                  : dy_pos / d_pos);
    *m_in_neg = m_neg * (near_neg ? (FL_T)0.5 * (FL_M(activation_grad_elem)(act, x0, a)
                                                 + FL_M(activation_grad_elem)(act, x0 + d_pos, a))
                                  : dy_neg / d_neg);
}

// ------------------------------------------------------------------------ exact max-pool split
// The split of max_pool_backward's exact rule. Cell a = first arg-max of the window in x, cell b = first arg-max in the reference. Then
// dy = x[a] - ref[b] = lambda*dx[a] + (1 - lambda)*dx[b] with
//   lambda = (x[a] - x[b]) / ((x[a] - x[b]) + (ref[b] - ref[a]))
// (both gaps are >= 0); cell a receives lambda*m and cell b (1 - lambda)*m. A zero denominator
// (a == b, or ties in both) gives lambda = 1: everything to cell a.
FL_HD FL_T FL_M(max_pool_backward_lambda)(FL_T x_a, FL_T x_b, FL_T r_a, FL_T r_b)
{
    FL_T gap_x = x_a - x_b;
    FL_T denom = gap_x + (r_b - r_a);
    return denom > (FL_T)0 ? gap_x / denom : (FL_T)1;
}

// ------------------------------------------------------------------------ C++ overloads
// For CUDA templates and the host emulator: the same functions without the type suffix.
#ifdef __cplusplus
FL_HD FL_T fl_activation_forward_elem(int act, FL_T x, FL_T a) { return FL_M(activation_forward_elem)(act, x, a); }
FL_HD FL_T fl_activation_grad_elem(int act, FL_T x, FL_T a) { return FL_M(activation_grad_elem)(act, x, a); }
FL_HD FL_T fl_rescale_backward_elem(int act, FL_T m_out, FL_T x, FL_T ref, FL_T y, FL_T y_ref, FL_T a)
{
    return FL_M(rescale_backward_elem)(act, m_out, x, ref, y, y_ref, a);
}
FL_HD void fl_reveal_cancel_split_elem(int act, FL_T x0, FL_T d_pos, FL_T d_neg, FL_T a, FL_T *dy_pos,
                                       FL_T *dy_neg)
{
    FL_M(reveal_cancel_split_elem)(act, x0, d_pos, d_neg, a, dy_pos, dy_neg);
}
FL_HD void fl_reveal_cancel_backward_elem(int act, FL_T m_pos, FL_T m_neg, FL_T x0, FL_T d_pos, FL_T d_neg,
                                          FL_T a, FL_T *m_in_pos, FL_T *m_in_neg)
{
    FL_M(reveal_cancel_backward_elem)(act, m_pos, m_neg, x0, d_pos, d_neg, a, m_in_pos, m_in_neg);
}
FL_HD FL_T fl_max_pool_backward_lambda(FL_T x_a, FL_T x_b, FL_T r_a, FL_T r_b)
{
    return FL_M(max_pool_backward_lambda)(x_a, x_b, r_a, r_b);
}
#endif  // __cplusplus
