// fl_cuda.cuh -- scaffolding shared by fastlift's CUDA kernels (kernels/*.cu).
//
// Three compilers read this file, after fastlift/backends/_cuda.py:kernel_source() has pasted it
// (and csrc/fl_math.h) into a kernel's source string:
//   * NVRTC, at run time through cupy.RawModule (the real thing);
//   * NVRTC again on CI, for every target architecture, without a GPU (tests/test_cuda_compile.py);
//   * g++ as C++20 with tests/cuda_emu/cuda_host_shim.h, which runs the kernels on the CPU
//     (tests/test_cuda_emulation.py, also under AddressSanitizer).
// So it stays in the "NVRTC subset": no system headers, no host API, no <<<>>> launches, no
// block comments (a slash-star inside a comment is NVRTC warning 9-D).
//
// Conventions of every kernel in kernels/:
//   * template <typename T> __global__, T = float or double; the loader names them through one
//     dtype table as "op<float>" / "op<double>" (CuPy name expressions), which also forces
//     NVRTC to instantiate and check both.
//   * Thread mapping: a 1-D grid-stride loop over the output elements (FL_FOR_EACH), so any grid
//     size is correct, smaller or larger than the data. Every output element is written by
//     exactly one thread, with a fixed operation order: no atomics, no cross-thread reductions.
//     Results are deterministic and do not depend on the launch configuration.
//   * Indices and sizes are long long (64-bit); array inputs are const T* __restrict__.
//   * Array parameters carry dimension suffixes from the alphabet of csrc/fl_kernels.h
//     (p pair, n unique row, f feature, e example, h w input rows/columns, i j output
//     rows/columns, t window tap, c channel); a__a is alpha, indexed alpha[f % n_alpha].
//   * All arrays are C-contiguous; the launch guard in _cuda.py checks that, the dtype and the
//     device before every launch. Pair indices are trusted (validated by the caller).
#ifndef FL_CUDA_CUH
#define FL_CUDA_CUH

// for (long long i = global thread index; i < n; i += total threads of the grid)
#define FL_FOR_EACH(i, n)                                                          \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

// Sliding-window geometry: the fields of fastlift.backends.ops.Geometry, in the same order,
// passed as 13 long long kernel parameters (FL_GEOM_PARAMS) and gathered by FL_GEOM.
struct fl_geom {
    long long h, w, c;       // input rows, columns, channels
    long long kh, kw;        // window taps per row / column
    long long sh, sw;        // strides
    long long dh, dw;        // dilations
    long long pt, pl;        // padding before the first row / column
    long long h_out, w_out;  // output rows / columns
};
#define FL_GEOM_PARAMS                                                                        \
    long long g_h, long long g_w, long long g_c, long long g_kh, long long g_kw, long long g_sh, \
        long long g_sw, long long g_dh, long long g_dw, long long g_pt, long long g_pl,          \
        long long g_h_out, long long g_w_out
#define FL_GEOM(g) \
    const fl_geom g = {g_h, g_w, g_c, g_kh, g_kw, g_sh, g_sw, g_dh, g_dw, g_pt, g_pl, g_h_out, g_w_out}

// -infinity without <math.h> (NVRTC has no INFINITY macro).
template <typename T> __device__ __forceinline__ T fl_neg_inf();
template <> __device__ __forceinline__ float fl_neg_inf<float>() { return __int_as_float(0xff800000); }
template <> __device__ __forceinline__ double fl_neg_inf<double>()
{
    return __longlong_as_double((long long)0xfff0000000000000ULL);
}

#endif  // FL_CUDA_CUH
