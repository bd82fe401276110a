// cuda_host_shim.h -- compile fastlift's CUDA kernels (kernels/*.cu, after kernel_source() has
// pasted their headers in) as plain C++20 on the host, and "launch" a grid on the CPU.
//
// Test-only. It proves the indexing, the bounds, the grid-stride loops and the arithmetic of the
// real kernel source against the numpy oracle, and (under AddressSanitizer) that no thread reads
// or writes outside its arrays. It says nothing about device numerics (ftz, 2-ulp expf), warp
// scheduling, races between blocks or performance: those need `pytest -m gpu` on a GPU.
//
// Launch model: serial. Every (block, thread) of the grid runs to completion in turn, in
// row-major order; deterministic and sanitizer-friendly. fastlift's kernels use no shared memory,
// barriers, warp intrinsics or atomics (each output element has exactly one writer), so they
// need nothing more; any of those in a kernel fails to compile here, on purpose.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>

// ---- qualifiers ----------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
// __restrict__ is a g++ extension already.

// ---- built-in types and variables -----------------------------------------------------------
struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
namespace flemu {
inline uint3 t_idx{0, 0, 0};
inline uint3 b_idx{0, 0, 0};
inline dim3 b_dim, g_dim;
}  // namespace flemu
#define threadIdx (static_cast<const uint3&>(::flemu::t_idx))
#define blockIdx (static_cast<const uint3&>(::flemu::b_idx))
#define blockDim (static_cast<const dim3&>(::flemu::b_dim))
#define gridDim (static_cast<const dim3&>(::flemu::g_dim))
constexpr int warpSize = 32;

// ---- device intrinsics without a libm name ----------------------------------------------------
inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, sizeof f); return f; }
inline double __longlong_as_double(long long v) { double d; std::memcpy(&d, &v, sizeof d); return d; }
template <class T> inline T __ldg(const T* p) { return *p; }

// ---- the launch -----------------------------------------------------------------------------
namespace flemu {
[[noreturn]] inline void die(const char* what) {
    std::fprintf(stderr, "flemu: %s\n", what);
    std::abort();
}
template <class F> void launch(dim3 grid, dim3 block, F&& body) {
    const unsigned long long nthreads = 1ull * block.x * block.y * block.z;
    if (nthreads == 0 || nthreads > 1024) die("invalid block size (CUDA allows 1..1024 threads)");
    if (block.z > 64) die("blockDim.z > 64 is invalid in CUDA");
    if (grid.x == 0 || grid.y == 0 || grid.z == 0) die("empty grid (invalid in CUDA)");
    if (grid.y > 65535 || grid.z > 65535) die("gridDim.y/z > 65535 is invalid in CUDA");
    g_dim = grid;
    b_dim = block;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                b_idx = {bx, by, bz};
                for (unsigned tz = 0; tz < block.z; ++tz)
                    for (unsigned ty = 0; ty < block.y; ++ty)
                        for (unsigned tx = 0; tx < block.x; ++tx) {
                            t_idx = {tx, ty, tz};
                            body();
                        }
            }
}

// cuLaunchKernel-style packed arguments (the ABI CuPy uses): args[i] points at parameter i's value.
template <class... P, std::size_t... I>
void call_packed(void (*k)(P...), void** args, std::index_sequence<I...>) {
    k(*static_cast<std::remove_cv_t<std::remove_reference_t<P>>*>(args[I])...);
}
template <class... P> void launch_packed(void (*k)(P...), dim3 g, dim3 b, void** args) {
    launch(g, b, [&] { call_packed(k, args, std::index_sequence_for<P...>{}); });
}
// The kernel's parameter types as "sizeof:mangled-name," (e.g. "4:i,8:PKf,8:Pf,8:x,"), so the
// Python side can check every argument against the real C++ parameter type.
template <class... P> const char* signature(void (*)(P...)) {
    static const std::string s = [] {
        std::string r;
        ((r += std::to_string(sizeof(P)) + ":" + typeid(P).name() + ","), ...);
        return r;
    }();
    return s.c_str();
}
}  // namespace flemu

// Export template kernel NAME<T> as flemu_launch_NAME_SUF / flemu_sig_NAME_SUF.
#define FLEMU_EXPORT(NAME, T, SUF)                                                               \
    extern "C" void flemu_launch_##NAME##_##SUF(unsigned gx, unsigned gy, unsigned gz,           \
                                                unsigned bx, unsigned by, unsigned bz,           \
                                                void** args) {                                   \
        ::flemu::launch_packed(&NAME<T>, dim3(gx, gy, gz), dim3(bx, by, bz), args);              \
    }                                                                                            \
    extern "C" const char* flemu_sig_##NAME##_##SUF() { return ::flemu::signature(&NAME<T>); }
