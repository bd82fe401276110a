// fl_math.h -- per-element DeepLIFT math shared by three compilers:
//   * gcc/clang as C99: the Cython CPU backend (fastlift/backends/_cpu.pyx via fl_kernels.h);
//   * NVRTC / nvcc: the CUDA kernels, which paste this header into their source unchanged;
//   * g++ as C++: host emulation of the CUDA kernels in the tests.
//
// Rules that keep it valid for all three:
//   * no #include under CUDA (NVRTC has no system headers; its math functions are builtins),
//     and nothing from libc beyond <math.h> elsewhere;
//   * no globals: constants are macros, functions are FL_HD;
//   * line comments only, and never a block-comment opener inside one (NVRTC warns, 9-D);
//   * every function exists as a C name with a type suffix (_f float, _d double); C++ code
//     (CUDA templates, the emulator) also gets unsuffixed overloads at the end.
//
// The formulas are those of fastlift/backends/ops.py (_act_value, _act_grad,
// rescale_backward, reveal_cancel_split/backward, max_pool_backward), which is the oracle
// the tests compare against; keep the two in step.
#ifndef FL_MATH_H
#define FL_MATH_H

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#  define FL_HD __host__ __device__ __forceinline__
#else
#  include <math.h>
// always_inline: the kernels call fl_act_value/fl_act_grad with a constant act code, and
// inlining is what lets the compiler drop the switch and vectorise the row loop.
#  if defined(__GNUC__) || defined(__clang__)
#    define FL_HD static inline __attribute__((always_inline))
#  else
#    define FL_HD static inline
#  endif
#endif

// ------------------------------------------------------------------------ constants
// Activation codes: the same numbers as fastlift.backends.ops.Act.
#define FL_ACT_LINEAR        0
#define FL_ACT_RELU          1
#define FL_ACT_RELU6         2
#define FL_ACT_LEAKY_RELU    3   // x if x > 0 else a*x (PReLU: a per feature)
#define FL_ACT_ELU           4   // x if x > 0 else a*(exp(x) - 1)
#define FL_ACT_SELU          5
#define FL_ACT_SIGMOID       6
#define FL_ACT_HARD_SIGMOID  7   // clip(a*x + 0.5, 0, 1)
#define FL_ACT_TANH          8
#define FL_ACT_SOFTPLUS      9
#define FL_ACT_SOFTSIGN     10
#define FL_ACT_SWISH        11   // x * sigmoid(x)
#define FL_ACT_GELU         12   // exact: x * Phi(x)
#define FL_ACT_GELU_TANH    13   // tanh approximation
#define FL_ACT_EXPONENTIAL  14
#define FL_ACT_LOG          15   // natural log (inputs > 0; ONNX Log)
#define FL_ACT_COUNT        16   // codes are 0 .. FL_ACT_COUNT - 1

// Activations computed with arithmetic only (no exp/tanh/erf). For them the rule functions
// evaluate both sides of the near-zero test and select, so the row loops have no control flow
// and vectorise; for the others the derivative is only evaluated where it is needed. `act` is a
// compile-time constant in the kernels, so this test folds away.
#define FL_ACT_IS_ARITHMETIC(act)                                                       \
    ((act) == FL_ACT_LINEAR || (act) == FL_ACT_RELU || (act) == FL_ACT_RELU6 ||         \
     (act) == FL_ACT_LEAKY_RELU || (act) == FL_ACT_HARD_SIGMOID || (act) == FL_ACT_SOFTSIGN)

// |x - ref| below this falls back to the gradient (deeplift's NEAR_ZERO_THRESHOLD). The float
// functions compare against (float)FL_NEAR_ZERO, as numpy does for a float32 array.
#define FL_NEAR_ZERO 1e-7

#define FL_SELU_ALPHA      1.6732632423543772848170429916717
#define FL_SELU_SCALE      1.0507009873554804934193349852946
#define FL_SQRT_2          1.4142135623730950488016887242097
#define FL_SQRT_2PI        2.5066282746310005024157652848110
#define FL_SQRT_2_OVER_PI  0.79788456080286535587989211986876
#define FL_GELU_TANH_C     0.044715

// ------------------------------------------------------------------------ sigmoid
// Two-sided form: exp never overflows, and sigmoid(x) for x << 0 keeps full relative precision.
FL_HD float fl_sigmoid_f(float x)
{
    float e = expf(-fabsf(x));
    return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}
FL_HD double fl_sigmoid_d(double x)
{
    double e = exp(-fabs(x));
    return x >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

// ------------------------------------------------------------------------ activation value
// f(x) for activation code `act`; `a` is the feature's parameter (alpha), used by LEAKY_RELU,
// ELU and HARD_SIGMOID and ignored by the others. Unknown codes return 0 (callers reject them).
// GELU: 1 + erf(z) is evaluated as erfc(-z), the same function without the cancellation that
// costs float32 most of its digits for x < -2.
FL_HD float fl_act_value_f(int act, float x, float a)
{
    switch (act) {
    case FL_ACT_LINEAR:       return x;
    case FL_ACT_RELU:         return x > 0.0f ? x : 0.0f;
    case FL_ACT_RELU6:        return x > 0.0f ? (x < 6.0f ? x : 6.0f) : 0.0f;
    case FL_ACT_LEAKY_RELU:   return x > 0.0f ? x : a * x;
    case FL_ACT_ELU:          return x > 0.0f ? x : a * expm1f(x);
    case FL_ACT_SELU:
        return (float)FL_SELU_SCALE * (x > 0.0f ? x : (float)FL_SELU_ALPHA * expm1f(x));
    case FL_ACT_SIGMOID:      return fl_sigmoid_f(x);
    case FL_ACT_HARD_SIGMOID: {
        float t = a * x + 0.5f;
        return t > 0.0f ? (t < 1.0f ? t : 1.0f) : 0.0f;
    }
    case FL_ACT_TANH:         return tanhf(x);
    case FL_ACT_SOFTPLUS:     return (x > 0.0f ? x : 0.0f) + log1pf(expf(-fabsf(x)));
    case FL_ACT_SOFTSIGN:     return x / (1.0f + fabsf(x));
    case FL_ACT_SWISH:        return x * fl_sigmoid_f(x);
    case FL_ACT_GELU:         return 0.5f * x * erfcf(-x / (float)FL_SQRT_2);
    case FL_ACT_GELU_TANH: {
        float u = (float)FL_SQRT_2_OVER_PI * (x + (float)FL_GELU_TANH_C * (x * x * x));
        return 0.5f * x * (1.0f + tanhf(u));
    }
    case FL_ACT_EXPONENTIAL:  return expf(x);
    case FL_ACT_LOG:          return logf(x);
    default:                  return 0.0f;
    }
}
FL_HD double fl_act_value_d(int act, double x, double a)
{
    switch (act) {
    case FL_ACT_LINEAR:       return x;
    case FL_ACT_RELU:         return x > 0.0 ? x : 0.0;
    case FL_ACT_RELU6:        return x > 0.0 ? (x < 6.0 ? x : 6.0) : 0.0;
    case FL_ACT_LEAKY_RELU:   return x > 0.0 ? x : a * x;
    case FL_ACT_ELU:          return x > 0.0 ? x : a * expm1(x);
    case FL_ACT_SELU:         return FL_SELU_SCALE * (x > 0.0 ? x : FL_SELU_ALPHA * expm1(x));
    case FL_ACT_SIGMOID:      return fl_sigmoid_d(x);
    case FL_ACT_HARD_SIGMOID: {
        double t = a * x + 0.5;
        return t > 0.0 ? (t < 1.0 ? t : 1.0) : 0.0;
    }
    case FL_ACT_TANH:         return tanh(x);
    case FL_ACT_SOFTPLUS:     return (x > 0.0 ? x : 0.0) + log1p(exp(-fabs(x)));
    case FL_ACT_SOFTSIGN:     return x / (1.0 + fabs(x));
    case FL_ACT_SWISH:        return x * fl_sigmoid_d(x);
    case FL_ACT_GELU:         return 0.5 * x * erfc(-x / FL_SQRT_2);
    case FL_ACT_GELU_TANH: {
        double u = FL_SQRT_2_OVER_PI * (x + FL_GELU_TANH_C * (x * x * x));
        return 0.5 * x * (1.0 + tanh(u));
    }
    case FL_ACT_EXPONENTIAL:  return exp(x);
    case FL_ACT_LOG:          return log(x);
    default:                  return 0.0;
    }
}

// ------------------------------------------------------------------------ activation derivative
// f'(x) for activation code `act` (same conventions as fl_act_value). At kinks the one-sided
// choice of ops.py is kept: relu'(0) = 0, relu6'(0) = relu6'(6) = 0, hard_sigmoid' = 0 at the
// clip points.
FL_HD float fl_act_grad_f(int act, float x, float a)
{
    switch (act) {
    case FL_ACT_LINEAR:       return 1.0f;
    case FL_ACT_RELU:         return x > 0.0f ? 1.0f : 0.0f;
    case FL_ACT_RELU6:        return (x > 0.0f && x < 6.0f) ? 1.0f : 0.0f;
    case FL_ACT_LEAKY_RELU:   return x > 0.0f ? 1.0f : a;
    case FL_ACT_ELU:          return x > 0.0f ? 1.0f : a * expf(x);
    case FL_ACT_SELU:
        return (float)FL_SELU_SCALE * (x > 0.0f ? 1.0f : (float)FL_SELU_ALPHA * expf(x));
    case FL_ACT_SIGMOID: {
        float s = fl_sigmoid_f(x);
        return s * (1.0f - s);
    }
    case FL_ACT_HARD_SIGMOID: {
        float t = a * x + 0.5f;
        return (t > 0.0f && t < 1.0f) ? a : 0.0f;
    }
    case FL_ACT_TANH: {
        float t = tanhf(x);
        return 1.0f - t * t;
    }
    case FL_ACT_SOFTPLUS:     return fl_sigmoid_f(x);
    case FL_ACT_SOFTSIGN: {
        float d = 1.0f + fabsf(x);
        return 1.0f / (d * d);
    }
    case FL_ACT_SWISH: {
        float s = fl_sigmoid_f(x);
        return s * (1.0f + x * (1.0f - s));
    }
    case FL_ACT_GELU: {
        float cdf = 0.5f * erfcf(-x / (float)FL_SQRT_2);
        float pdf = expf(-0.5f * x * x) / (float)FL_SQRT_2PI;
        return cdf + x * pdf;
    }
    case FL_ACT_GELU_TANH: {
        float u = (float)FL_SQRT_2_OVER_PI * (x + (float)FL_GELU_TANH_C * (x * x * x));
        float t = tanhf(u);
        float du = (float)FL_SQRT_2_OVER_PI * (1.0f + (float)(3.0 * FL_GELU_TANH_C) * x * x);
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
    }
    case FL_ACT_EXPONENTIAL:  return expf(x);
    case FL_ACT_LOG:          return 1.0f / x;
    default:                  return 0.0f;
    }
}
FL_HD double fl_act_grad_d(int act, double x, double a)
{
    switch (act) {
    case FL_ACT_LINEAR:       return 1.0;
    case FL_ACT_RELU:         return x > 0.0 ? 1.0 : 0.0;
    case FL_ACT_RELU6:        return (x > 0.0 && x < 6.0) ? 1.0 : 0.0;
    case FL_ACT_LEAKY_RELU:   return x > 0.0 ? 1.0 : a;
    case FL_ACT_ELU:          return x > 0.0 ? 1.0 : a * exp(x);
    case FL_ACT_SELU:         return FL_SELU_SCALE * (x > 0.0 ? 1.0 : FL_SELU_ALPHA * exp(x));
    case FL_ACT_SIGMOID: {
        double s = fl_sigmoid_d(x);
        return s * (1.0 - s);
    }
    case FL_ACT_HARD_SIGMOID: {
        double t = a * x + 0.5;
        return (t > 0.0 && t < 1.0) ? a : 0.0;
    }
    case FL_ACT_TANH: {
        double t = tanh(x);
        return 1.0 - t * t;
    }
    case FL_ACT_SOFTPLUS:     return fl_sigmoid_d(x);
    case FL_ACT_SOFTSIGN: {
        double d = 1.0 + fabs(x);
        return 1.0 / (d * d);
    }
    case FL_ACT_SWISH: {
        double s = fl_sigmoid_d(x);
        return s * (1.0 + x * (1.0 - s));
    }
    case FL_ACT_GELU: {
        double cdf = 0.5 * erfc(-x / FL_SQRT_2);
        double pdf = exp(-0.5 * x * x) / FL_SQRT_2PI;
        return cdf + x * pdf;
    }
    case FL_ACT_GELU_TANH: {
        double u = FL_SQRT_2_OVER_PI * (x + FL_GELU_TANH_C * (x * x * x));
        double t = tanh(u);
        double du = FL_SQRT_2_OVER_PI * (1.0 + (3.0 * FL_GELU_TANH_C) * x * x);
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
    }
    case FL_ACT_EXPONENTIAL:  return exp(x);
    case FL_ACT_LOG:          return 1.0 / x;
    default:                  return 0.0;
    }
}

// ------------------------------------------------------------------------ Rescale rule
// Multiplier scale s = (y - y_ref) / (x - ref), where y = f(x) and y_ref = f(ref) come from the
// forward pass; where |x - ref| < NEAR_ZERO, s = f'(ref). The layer's input multiplier is
// m_in = m_out * s.
// (Where dx == 0 the unused quotient is 0/0: NaN, never selected, no trap.)
FL_HD float fl_rescale_scale_f(int act, float x, float ref, float y, float y_ref, float a)
{
    float dx = x - ref;
    int near = fabsf(dx) < (float)FL_NEAR_ZERO;
    if (FL_ACT_IS_ARITHMETIC(act)) {
        float g = fl_act_grad_f(act, ref, a), q = (y - y_ref) / dx;
        return near ? g : q;
    }
    return near ? fl_act_grad_f(act, ref, a) : (y - y_ref) / dx;
}
FL_HD double fl_rescale_scale_d(int act, double x, double ref, double y, double y_ref, double a)
{
    double dx = x - ref;
    int near = fabs(dx) < FL_NEAR_ZERO;
    if (FL_ACT_IS_ARITHMETIC(act)) {
        double g = fl_act_grad_d(act, ref, a), q = (y - y_ref) / dx;
        return near ? g : q;
    }
    return near ? fl_act_grad_d(act, ref, a) : (y - y_ref) / dx;
}

// ------------------------------------------------------------------------ RevealCancel rule
// Output split for reference input x0 and input-delta halves d_pos (>= 0), d_neg (<= 0):
//   dy_pos = 0.5*[(f(x0+d_pos) - f(x0)) + (f(x0+d_pos+d_neg) - f(x0+d_neg))]
//   dy_neg = 0.5*[(f(x0+d_neg) - f(x0)) + (f(x0+d_pos+d_neg) - f(x0+d_pos))]
// (x0 + d_pos + d_neg is evaluated left to right, as in ops.py).
FL_HD void fl_reveal_cancel_dy_f(int act, float x0, float d_pos, float d_neg, float a,
                                 float *dy_pos, float *dy_neg)
{
    float f0 = fl_act_value_f(act, x0, a);
    float fp = fl_act_value_f(act, x0 + d_pos, a);
    float fn = fl_act_value_f(act, x0 + d_neg, a);
    float fpn = fl_act_value_f(act, x0 + d_pos + d_neg, a);
    *dy_pos = 0.5f * ((fp - f0) + (fpn - fn));
    *dy_neg = 0.5f * ((fn - f0) + (fpn - fp));
}
FL_HD void fl_reveal_cancel_dy_d(int act, double x0, double d_pos, double d_neg, double a,
                                 double *dy_pos, double *dy_neg)
{
    double f0 = fl_act_value_d(act, x0, a);
    double fp = fl_act_value_d(act, x0 + d_pos, a);
    double fn = fl_act_value_d(act, x0 + d_neg, a);
    double fpn = fl_act_value_d(act, x0 + d_pos + d_neg, a);
    *dy_pos = 0.5 * ((fp - f0) + (fpn - fn));
    *dy_neg = 0.5 * ((fn - f0) + (fpn - fp));
}

// Multiplier scales s_pos = dy_pos / d_pos and s_neg = dy_neg / d_neg (m_in_pos = m_pos * s_pos,
// m_in_neg = m_neg * s_neg). Where |d_pos| < NEAR_ZERO, s_pos is its limit
// 0.5*(f'(x0) + f'(x0 + d_neg)); symmetrically for d_neg. Derivatives are only evaluated on
// that branch.
FL_HD void fl_reveal_cancel_scales_f(int act, float x0, float d_pos, float d_neg, float a,
                                     float *s_pos, float *s_neg)
{
    float dy_pos, dy_neg;
    fl_reveal_cancel_dy_f(act, x0, d_pos, d_neg, a, &dy_pos, &dy_neg);
    int near_pos = fabsf(d_pos) < (float)FL_NEAR_ZERO, near_neg = fabsf(d_neg) < (float)FL_NEAR_ZERO;
    if (FL_ACT_IS_ARITHMETIC(act)) {
        float g0 = fl_act_grad_f(act, x0, a);
        float lim_pos = 0.5f * (g0 + fl_act_grad_f(act, x0 + d_neg, a));
        float lim_neg = 0.5f * (g0 + fl_act_grad_f(act, x0 + d_pos, a));
        float q_pos = dy_pos / d_pos, q_neg = dy_neg / d_neg;
        *s_pos = near_pos ? lim_pos : q_pos;
        *s_neg = near_neg ? lim_neg : q_neg;
        return;
    }
    *s_pos = near_pos ? 0.5f * (fl_act_grad_f(act, x0, a) + fl_act_grad_f(act, x0 + d_neg, a))
                      : dy_pos / d_pos;
    *s_neg = near_neg ? 0.5f * (fl_act_grad_f(act, x0, a) + fl_act_grad_f(act, x0 + d_pos, a))
                      : dy_neg / d_neg;
}
FL_HD void fl_reveal_cancel_scales_d(int act, double x0, double d_pos, double d_neg, double a,
                                     double *s_pos, double *s_neg)
{
    double dy_pos, dy_neg;
    fl_reveal_cancel_dy_d(act, x0, d_pos, d_neg, a, &dy_pos, &dy_neg);
    int near_pos = fabs(d_pos) < FL_NEAR_ZERO, near_neg = fabs(d_neg) < FL_NEAR_ZERO;
    if (FL_ACT_IS_ARITHMETIC(act)) {
        double g0 = fl_act_grad_d(act, x0, a);
        double lim_pos = 0.5 * (g0 + fl_act_grad_d(act, x0 + d_neg, a));
        double lim_neg = 0.5 * (g0 + fl_act_grad_d(act, x0 + d_pos, a));
        double q_pos = dy_pos / d_pos, q_neg = dy_neg / d_neg;
        *s_pos = near_pos ? lim_pos : q_pos;
        *s_neg = near_neg ? lim_neg : q_neg;
        return;
    }
    *s_pos = near_pos ? 0.5 * (fl_act_grad_d(act, x0, a) + fl_act_grad_d(act, x0 + d_neg, a))
                      : dy_pos / d_pos;
    *s_neg = near_neg ? 0.5 * (fl_act_grad_d(act, x0, a) + fl_act_grad_d(act, x0 + d_pos, a))
                      : dy_neg / d_neg;
}

// ------------------------------------------------------------------------ exact max-pool split
// Cell a = first arg-max of the window in x, cell b = first arg-max in the reference. Then
// dy = x[a] - ref[b] = lambda*dx[a] + (1 - lambda)*dx[b] with
//   lambda = (x[a] - x[b]) / ((x[a] - x[b]) + (ref[b] - ref[a]))
// (both gaps are >= 0); cell a receives lambda*m and cell b (1 - lambda)*m. A zero denominator
// (a == b, or ties in both) gives lambda = 1: everything to cell a.
FL_HD float fl_max_pool_lambda_f(float x_a, float x_b, float r_a, float r_b)
{
    float gap_x = x_a - x_b;
    float denom = gap_x + (r_b - r_a);
    return denom > 0.0f ? gap_x / denom : 1.0f;
}
FL_HD double fl_max_pool_lambda_d(double x_a, double x_b, double r_a, double r_b)
{
    double gap_x = x_a - x_b;
    double denom = gap_x + (r_b - r_a);
    return denom > 0.0 ? gap_x / denom : 1.0;
}

// ------------------------------------------------------------------------ window index math
// Taps t in [*lo, *hi) of a window whose tap t reads position base + t*dil are the ones inside
// [0, size). base = out_index*stride - pad. Empty ranges come back as lo == hi.
FL_HD void fl_tap_range(long long base, long long dil, long long k, long long size,
                        long long *lo, long long *hi)
{
    long long l = base < 0 ? (-base + dil - 1) / dil : 0;
    long long h = size - base <= 0 ? 0 : (size - base + dil - 1) / dil;
    if (h > k) h = k;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

// ------------------------------------------------------------------------ C++ overloads
// For CUDA templates and the host emulator: the same functions without the type suffix.
#ifdef __cplusplus
FL_HD float  fl_sigmoid(float x)  { return fl_sigmoid_f(x); }
FL_HD double fl_sigmoid(double x) { return fl_sigmoid_d(x); }
FL_HD float  fl_act_value(int act, float x, float a)   { return fl_act_value_f(act, x, a); }
FL_HD double fl_act_value(int act, double x, double a) { return fl_act_value_d(act, x, a); }
FL_HD float  fl_act_grad(int act, float x, float a)    { return fl_act_grad_f(act, x, a); }
FL_HD double fl_act_grad(int act, double x, double a)  { return fl_act_grad_d(act, x, a); }
FL_HD float fl_rescale_scale(int act, float x, float ref, float y, float y_ref, float a)
{
    return fl_rescale_scale_f(act, x, ref, y, y_ref, a);
}
FL_HD double fl_rescale_scale(int act, double x, double ref, double y, double y_ref, double a)
{
    return fl_rescale_scale_d(act, x, ref, y, y_ref, a);
}
FL_HD void fl_reveal_cancel_dy(int act, float x0, float d_pos, float d_neg, float a,
                               float *dy_pos, float *dy_neg)
{
    fl_reveal_cancel_dy_f(act, x0, d_pos, d_neg, a, dy_pos, dy_neg);
}
FL_HD void fl_reveal_cancel_dy(int act, double x0, double d_pos, double d_neg, double a,
                               double *dy_pos, double *dy_neg)
{
    fl_reveal_cancel_dy_d(act, x0, d_pos, d_neg, a, dy_pos, dy_neg);
}
FL_HD void fl_reveal_cancel_scales(int act, float x0, float d_pos, float d_neg, float a,
                                   float *s_pos, float *s_neg)
{
    fl_reveal_cancel_scales_f(act, x0, d_pos, d_neg, a, s_pos, s_neg);
}
FL_HD void fl_reveal_cancel_scales(int act, double x0, double d_pos, double d_neg, double a,
                                   double *s_pos, double *s_neg)
{
    fl_reveal_cancel_scales_d(act, x0, d_pos, d_neg, a, s_pos, s_neg);
}
FL_HD float  fl_max_pool_lambda(float x_a, float x_b, float r_a, float r_b)
{
    return fl_max_pool_lambda_f(x_a, x_b, r_a, r_b);
}
FL_HD double fl_max_pool_lambda(double x_a, double x_b, double r_a, double r_b)
{
    return fl_max_pool_lambda_d(x_a, x_b, r_a, r_b);
}
#endif  // __cplusplus

#endif  // FL_MATH_H
