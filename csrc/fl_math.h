// fl_math.h -- per-element DeepLIFT math shared by three compilers:
//   * gcc/clang as C99: the Cython CPU backend (fastlift/backends/_cpu.pyx via fl_kernels.h);
//   * NVRTC / nvcc: the CUDA kernels, which paste this header into their source unchanged;
//   * g++ as C++: host emulation of the CUDA kernels in the tests.
//
// Rules that keep it valid for all three:
//   * no system #include under CUDA (NVRTC has no system headers; its math functions are
//     builtins), and nothing from libc beyond <math.h> elsewhere; local includes are pasted
//     into the kernel source by fastlift/backends/_cuda.py:kernel_source();
//   * no globals: constants are macros, functions are FL_HD;
//   * line comments only, and never a block-comment opener inside one (NVRTC warns, 9-D);
//   * every function exists as a C name with a type suffix (_f float, _d double); C++ code
//     (CUDA templates, the emulator) also gets unsuffixed overloads. Both types come from one
//     body, fl_math_impl.h, included twice below (as fl_kernels.h does with its kernels).
//
// One op, one name: fl_<op>_elem is one element of the op <op> (Ops.<op> in
// fastlift/backends/ops.py, the numpy oracle the tests compare against; the C row kernel
// fl_<op>_f/_d; the CUDA kernel <op><T>): fl_activation_forward_elem, fl_activation_grad_elem,
// fl_rescale_backward_elem, fl_reveal_cancel_split_elem, fl_reveal_cancel_backward_elem, and
// fl_max_pool_backward_lambda, the split of max_pool_backward's exact rule. Names starting with
// fli_ are internal helpers. Keep the formulas in step with ops.py.
#ifndef FL_MATH_H
#define FL_MATH_H

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#  define FL_HD __host__ __device__ __forceinline__
#else
#  include <math.h>
// always_inline: the kernels call fl_activation_forward_elem / _grad_elem with a constant act code, and
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

// ------------------------------------------------------------------------ float: fl_<name>_f
#define FL_T float
#define FL_M(name) fl_##name##_f
#define FL_MI(name) fli_##name##_f
#define FL_F(fn) fn##f
#include "fl_math_impl.h"
#undef FL_T
#undef FL_M
#undef FL_MI
#undef FL_F

// ------------------------------------------------------------------------ double: fl_<name>_d
#define FL_T double
#define FL_M(name) fl_##name##_d
#define FL_MI(name) fli_##name##_d
#define FL_F(fn) fn
#include "fl_math_impl.h"
#undef FL_T
#undef FL_M
#undef FL_MI
#undef FL_F

// ------------------------------------------------------------------------ window index math
// (internal) Taps t in [*lo, *hi) of a window whose tap t reads position base + t*dil are the ones inside
// [0, size). base = out_index*stride - pad. Empty ranges come back as lo == hi.
FL_HD void fli_tap_range(long long base, long long dil, long long k, long long size,
                        long long *lo, long long *hi)
{
    long long l = base < 0 ? (-base + dil - 1) / dil : 0;
    long long h = size - base <= 0 ? 0 : (size - base + dil - 1) / dil;
    if (h > k) h = k;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

#endif  // FL_MATH_H
