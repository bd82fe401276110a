// fl_kernels.h -- header-only C99 CPU kernels of fastlift, callable from C or Cython without
// Python. fastlift/backends/_cpu.pyx drives them with OpenMP; any C extension can include this
// header (fastlift.get_include()) and call them directly, serially or from its own threads.
//
// Naming: one op, one name. Ops.rescale_backward (numpy oracle, fastlift/backends/ops.py)
// = _cpu.rescale_backward (Cython) = fl_rescale_backward_f / fl_rescale_backward_d (here)
// = CUDA rescale_backward<T>. The semantics, shapes and formulas are those of ops.py; each
// kernel below restates its formula, memory layout and thread mapping.
//
// Every kernel exists for float (_f) and double (_d). Both are generated from one body,
// fl_kernels_impl.h, included twice below with FL_T = float / double; grep for
// "FL_K(name)" there to find fl_name_f / fl_name_d. Internal helpers (row loops, register
// tiles, their per-ISA copies) are FL_KI(name): fli_name_f / fli_name_d, never called from
// outside these headers.
//
// Dimension-suffix alphabet
// -------------------------
// Array parameters are named <role>__<dims>, one letter per dimension, outermost first; all
// arrays are C-contiguous, so the last letter is the contiguous one.
//   p  pair: a row of a per-pair array (multipliers, deltas); pair p of example e with
//      reference k is row e*n_refs + k (example-major)
//   n  unique row of a forward array: an example row (n_x of them) when looked up through
//      pair_x__p, a reference row (n_r) when looked up through pair_r__p
//   f  feature: the flattened per-row features (n_features)
//   e  example (output rows of mean_over_refs)
//   k  reference of an example (0 .. n_refs - 1)
//   h w   input rows / columns of an NHWC image (1-D layers have h = 1)
//   i j   output rows / columns of a sliding window (h_out, w_out)
//   t  window tap, row-major over (kernel row, kernel column): t = a*kw + b, kh*kw taps
//   c  channel (of a convolution's input, when o is also present)
//   o  output channel of a convolution
//   q  output cell of one pair, q = i*w_out + j
//   e  entry of a list of nonzero multipliers
// Examples: m_out__pf (n_pairs, n_features); x__nhwc (n, h, w, c);
// cols__nijtc (n, h_out, w_out, kh*kw*c); alpha__f (n_features,); pair_x__p (n_pairs,).
//
// Conventions
// -----------
// * Indices and sizes are int64_t; pair indices are trusted (the caller validated them).
// * Every kernel processes a half-open range of output rows [row_begin, row_end) and writes
//   only those rows, each with a fixed operation order. A caller parallelises by giving
//   disjoint row ranges to its threads; results never depend on the split (no atomics, no
//   reductions across rows).
// * alpha__f holds one parameter per feature (length n_features; ops.py's alpha of length
//   dividing n_features, tiled). Only LEAKY_RELU, ELU and HARD_SIGMOID read it.
// * act must be one of the FL_ACT_* codes of fl_math.h; an unknown code leaves the output
//   untouched (callers reject it first).
// * Geometry (fl_geometry, below): output cell (i, j) reads input row i*sh - pt + a*dh and
//   column j*sw - pl + b*dw for tap (a, b); positions outside the input are padding (zero
//   for im2col, ignored by pooling). h_out and w_out are given, not derived.
// * Compile flags: -O3 -fno-trapping-math (setup.py). The latter lets the row loops of the
//   arithmetic-only activations (FL_ACT_IS_ARITHMETIC) compute both sides of the near-zero test
//   and vectorise; it changes no result. Never -ffast-math or -ffp-contract=fast: reassociation
//   and FMA contraction would change the bits that the tests and the CUDA backend rely on. The
//   one exception is local: the AVX variants of conv_sparse and conv_direct (below)
//   contract to FMAs, as a BLAS kernel does; they sum in their own order anyway and are tested
//   with tolerances.
#ifndef FL_KERNELS_H
#define FL_KERNELS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fl_math.h"

#ifdef __cplusplus
#  define FL_RESTRICT __restrict
#else
#  define FL_RESTRICT restrict
#endif

// Public kernels: ordinary header-only functions.
#define FL_KERNEL static inline
// Row loops specialised on a compile-time activation code: forced inline so that the constant
// reaches fl_activation_forward_elem / fl_activation_grad_elem and the switch folds away.
#if defined(__GNUC__) || defined(__clang__)
#  define FL_ROWS static inline __attribute__((always_inline))
#else
#  define FL_ROWS static inline
#endif

// Kept out of line where inlining stops GCC from vectorising a loop.
#if defined(__GNUC__) || defined(__clang__)
#  define FL_NOINLINE static __attribute__((noinline))
#else
#  define FL_NOINLINE static
#endif
// Channel block of the max-pool backward kernel (arg-max state kept on the stack; 512 covers
// the channels of most layers in one run, so each window costs a few long vector loops).
#define FL_CBLOCK 512
// Feature block of mean_over_refs (float64 accumulators kept on the stack).
#define FL_FBLOCK 256

// Register-blocked loops (conv_sparse, conv_direct) use GCC/Clang vector extensions: vectors of
// FL_VEC_BYTES bytes, FL_VEC_BLOCK of them per channel block. Other compilers get one element
// per "vector" (same sums, same order, no SIMD).
#if defined(__GNUC__) || defined(__clang__)
#  define FL_HAVE_VECTORS 1
#  define FL_VEC_BYTES 64
#endif
#define FL_VEC_BLOCK 4
// Output cells per register tile of conv_direct (6 x 4 vectors: 24 of AVX-512's 32 registers).
#define FL_DIRECT_CELLS 6
// Output cells per register tile of conv_direct on AVX2 (6 x 2 vectors of 32 bytes: 12 of 16).
#define FL_DIRECT_CELLS_YMM 6
// Output cells per block of conv_direct's AVX2 rows: each kernel vector's columns run over a block
// (a multiple of FL_DIRECT_CELLS_YMM: the same tiles) instead of the whole row, so the block's
// input cells stay in L1/L2 for the next vector (3-tap, 64 -> 64, one thread: 53-63 -> 72-75 GFLOP/s).
#define FL_DIRECT_BLOCK_CELLS_YMM 48
// Transformed inputs per register tile of conv_winograd3's products on AVX2 (3 x 4 vectors of 32
// bytes: 3 broadcasts per 12 multiply-adds where conv_direct's 6 x 2 tiles take 6; both heads of
// ChromBPNet's BPNet 9% faster, bench/README.md).
#define FL_WINOGRAD_CELLS_YMM 3
// Output cells per tile of conv_narrow (each a vector accumulator over input channels).
#define FL_NARROW_CELLS 4
// Output cells per block of conv_winograd3: its transformed inputs and products ((m + 2) x tiles x
// channels each, m output cells a tile) stay in L2.
#define FL_WINOGRAD_CELLS 192
// Transformed inputs (and products) per tile of conv_winograd3 at most: F(4,3)'s 4 + 2.
#define FL_WINOGRAD_MAX_INPUTS 6
// Output cells per register tile of conv_forward_onehot (each adds its own gathered kernel rows; the
// fastest of 1 to 6 on Basset's first layer, bench/README.md).
#define FL_ONEHOT_CELLS 3
// Second outputs of conv_direct's store (see fl_conv_direct).
enum { FL_EPI_RESIDUAL_RELU = 1, FL_EPI_RELU_GRAD = 2, FL_EPI_RELU = 3 };

// Run-time ISA dispatch of those loops on x86: each is compiled for AVX-512F, AVX2 and the
// baseline, and fl_isa() picks one per call. Explicit dispatch, not target_clones (ifunc is
// missing on musl). The AVX variants contract multiply-adds into FMAs (as BLAS kernels do), the
// baseline does not, so their last bits can differ; FL_ISA_AUTO asks for the best the CPU has.
enum { FL_ISA_AUTO = -1, FL_ISA_BASE = 0, FL_ISA_AVX2 = 1, FL_ISA_AVX512 = 2 };
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#  define FL_X86_DISPATCH 1
#  define FL_TARGET_AVX512 __attribute__((target("avx512f"), optimize("fp-contract=fast")))
#  define FL_TARGET_AVX2 __attribute__((target("avx2,fma"), optimize("fp-contract=fast")))
#endif

// FL_ISA_VARIANTS(name, params, args) defines one out-of-line copy per ISA of the internal FL_ROWS
// loop FL_KI(name): FL_KI(name##_avx512) and FL_KI(name##_avx2) on x86, FL_KI(name##_base)
// everywhere, each calling FL_KI(name) args compiled for its target. FL_ISA_CALL(variant, name, args) calls
// the copy for an fl_isa() result.
#ifdef FL_X86_DISPATCH
#  define FL_ISA_VARIANTS(name, params, args)                                             \
    FL_TARGET_AVX512 FL_NOINLINE void FL_KI(name##_avx512) params { FL_KI(name) args; } \
    FL_TARGET_AVX2 FL_NOINLINE void FL_KI(name##_avx2) params { FL_KI(name) args; }     \
    FL_NOINLINE void FL_KI(name##_base) params { FL_KI(name) args; }
#  define FL_ISA_CALL(variant, name, args)                        \
    ((variant) == FL_ISA_AVX512 ? FL_KI(name##_avx512) args       \
     : (variant) == FL_ISA_AVX2 ? FL_KI(name##_avx2) args : FL_KI(name##_base) args)
#else
#  define FL_ISA_VARIANTS(name, params, args) FL_NOINLINE void FL_KI(name##_base) params { FL_KI(name) args; }
#  define FL_ISA_CALL(variant, name, args) ((void)(variant), FL_KI(name##_base) args)
#endif

// The best ISA variant this CPU runs that is not above `wanted` (FL_ISA_AUTO: no limit).
static inline int fl_isa(int wanted)
{
    int best = FL_ISA_BASE;
#ifdef FL_X86_DISPATCH
    if (__builtin_cpu_supports("avx512f"))
        best = FL_ISA_AVX512;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        best = FL_ISA_AVX2;
#endif
    return (wanted >= 0 && wanted < best) ? wanted : best;
}

// Sliding-window geometry; the fields of ops.Geometry, in the same order.
typedef struct fl_geometry {
    int64_t h, w, c;       // input rows, columns, channels
    int64_t kh, kw;        // window taps per row / column
    int64_t sh, sw;        // strides
    int64_t dh, dw;        // dilations
    int64_t pt, pl;        // padding before the first row / column
    int64_t h_out, w_out;  // output rows / columns
} fl_geometry;

// BLAS: the caller's sgemm / dgemm, with the Fortran calling convention of the reference BLAS
// and OpenBLAS's f77 interface (all arguments by pointer, column-major, 32-bit integers, no
// hidden string lengths read for one-character arguments). scipy.linalg.cython_blas's sgemm and
// dgemm have exactly these types; from C, OpenBLAS's sgemm_ / dgemm_ do. A driver for float
// calls only .sgemm, one for double only .dgemm: the other may be NULL.
typedef void (*fl_sgemm_t)(char *transa, char *transb, int *m, int *n, int *k, float *alpha, float *a,
                           int *lda, float *b, int *ldb, float *beta, float *c, int *ldc);
typedef void (*fl_dgemm_t)(char *transa, char *transb, int *m, int *n, int *k, double *alpha, double *a,
                           int *lda, double *b, int *ldb, double *beta, double *c, int *ldc);
typedef struct fl_blas {
    fl_sgemm_t sgemm;
    fl_dgemm_t dgemm;
} fl_blas;

// Scratch offsets are rounded up to 16 elements (64 bytes of float), so every part of a
// caller's buffer starts as aligned as the buffer.
static inline int64_t fli_scratch_round(int64_t n) { return (n + 15) / 16 * 16; }

// Number of tasks of fl_matmul_f/_d: row blocks times column panels (panel_cols as there).
static inline int64_t fl_matmul_n_tasks(int64_t m, int64_t n_pad, int64_t block_rows, int64_t panel_cols)
{
    if (panel_cols <= 0 || panel_cols > n_pad)
        panel_cols = n_pad;
    if (m <= 0 || n_pad <= 0 || block_rows <= 0)
        return 0;
    return (m + block_rows - 1) / block_rows * ((n_pad + panel_cols - 1) / panel_cols);
}

// Elements of scratch that one thread of fl_matmul_f/_d needs.
static inline int64_t fl_matmul_scratch_size(int64_t k, int64_t n_pad, int64_t block_rows, int64_t panel_cols)
{
    if (panel_cols <= 0 || panel_cols > n_pad)
        panel_cols = n_pad;
    return fli_scratch_round(block_rows * k) + block_rows * panel_cols;
}

// Tiles per block of conv_winograd3 for m output cells a tile.
static inline int64_t fl_winograd_tiles(int m)
{
    return FL_WINOGRAD_CELLS / m;
}

// Scratch elements per thread of fl_conv_winograd3_f/_d for m output cells a tile (2 or 4).
static inline int64_t fl_conv_winograd3_scratch_size(fl_geometry g, int64_t c_out, int m)
{
    const int64_t per_tile = (m + 2) * fl_winograd_tiles(m);
    return fli_scratch_round(per_tile * g.c) + fli_scratch_round(per_tile * c_out) + m * c_out;
}

// Number of cell blocks of fl_conv_forward_f/_d for n_cells = n*h_out*w_out output cells.
static inline int64_t fl_conv_forward_n_blocks(int64_t n_cells, int64_t block_rows)
{
    return n_cells <= 0 || block_rows <= 0 ? 0 : (n_cells + block_rows - 1) / block_rows;
}

// Elements of scratch that one thread of fl_conv_forward_f/_d needs.
static inline int64_t fl_conv_forward_scratch_size(fl_geometry g, int64_t n_pad, int64_t block_rows)
{
    return fli_scratch_round(block_rows * g.kh * g.kw * g.c) + block_rows * n_pad;
}

// Elements of scratch that one thread of fl_conv_adjoint_f/_d needs.
static inline int64_t fl_conv_adjoint_scratch_size(fl_geometry g, int64_t c_out, int64_t n_pad,
                                                   int64_t block_rows)
{
    return fli_scratch_round(g.h_out * g.w_out * g.kh * g.kw * g.c)
           + fl_matmul_scratch_size(c_out, n_pad, block_rows, 0);
}

// FL_ACT_DISPATCH(act, CALL): switch on a run-time activation code and expand CALL(code) with
// the code as a compile-time constant, so each case gets its own specialised row loop.
#define FL_ACT_DISPATCH(act, CALL)                                    \
    switch (act) {                                                    \
    case FL_ACT_LINEAR:       CALL(FL_ACT_LINEAR); break;             \
    case FL_ACT_RELU:         CALL(FL_ACT_RELU); break;               \
    case FL_ACT_RELU6:        CALL(FL_ACT_RELU6); break;              \
    case FL_ACT_LEAKY_RELU:   CALL(FL_ACT_LEAKY_RELU); break;         \
    case FL_ACT_ELU:          CALL(FL_ACT_ELU); break;                \
    case FL_ACT_SELU:         CALL(FL_ACT_SELU); break;               \
    case FL_ACT_SIGMOID:      CALL(FL_ACT_SIGMOID); break;            \
    case FL_ACT_HARD_SIGMOID: CALL(FL_ACT_HARD_SIGMOID); break;       \
    case FL_ACT_TANH:         CALL(FL_ACT_TANH); break;               \
    case FL_ACT_SOFTPLUS:     CALL(FL_ACT_SOFTPLUS); break;           \
    case FL_ACT_SOFTSIGN:     CALL(FL_ACT_SOFTSIGN); break;           \
    case FL_ACT_SWISH:        CALL(FL_ACT_SWISH); break;              \
    case FL_ACT_GELU:         CALL(FL_ACT_GELU); break;               \
    case FL_ACT_GELU_TANH:    CALL(FL_ACT_GELU_TANH); break;          \
    case FL_ACT_EXPONENTIAL:  CALL(FL_ACT_EXPONENTIAL); break;        \
    case FL_ACT_LOG:          CALL(FL_ACT_LOG); break;                \
    default: break;                                                   \
    }

// ---- float kernels: fl_<op>_f
#define FL_T float
#define FL_TI int32_t  /* integer as wide as FL_T: vector selects between them stay one width */
#define FL_K(name) fl_##name##_f
#define FL_KI(name) fli_##name##_f
#define FL_M(name) fl_##name##_f
#define FL_GEMM sgemm
#include "fl_kernels_impl.h"
#undef FL_T
#undef FL_TI
#undef FL_K
#undef FL_KI
#undef FL_M
#undef FL_GEMM

// ---- double kernels: fl_<op>_d
#define FL_T double
#define FL_TI int64_t
#define FL_K(name) fl_##name##_d
#define FL_KI(name) fli_##name##_d
#define FL_M(name) fl_##name##_d
#define FL_GEMM dgemm
#include "fl_kernels_impl.h"
#undef FL_T
#undef FL_TI
#undef FL_K
#undef FL_KI
#undef FL_M
#undef FL_GEMM

#endif  // FL_KERNELS_H
