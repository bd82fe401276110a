// fastlift.h -- fastlift's C API: the CPU kernels of fastlift's DeepLIFT engine, callable from C,
// C++ or Cython with no Python in the loop. Header-only C99: include this file, compile with
// -I$(python -c "import fastlift; print(fastlift.get_include())"), link libm (and a BLAS for
// the GEMM drivers). Cython: `from fastlift_capi cimport *` with the same directory on the
// include path (fastlift_capi.pxd, next to this file, declares everything below).
//
// ABI version
// -----------
// FL_ABI_VERSION (and fl_abi_version(), which returns the value this translation unit was
// compiled with) is one integer, raised whenever an fl_ name, an argument list, a struct
// layout, an act code or a documented result of this API changes incompatibly. Additions
// (new functions, new act codes at the end) do not raise it. Everything is static inline, so
// code compiled against one version never links against another; the number is for build
// checks (`#if FL_ABI_VERSION != 1` / an assert) and for comparing with the version of the
// installed Python package (fastlift.backends._cpu.ABI_VERSION). Names starting with fli_
// or FLI_ are internal and may change at any time.
//
// Conventions (details: the top of fl_kernels.h)
// -----------
// * Arrays are C-contiguous; their parameter names carry dimension suffixes (m_out__pf: pair x
//   feature, x__nhwc: row x height x width x channel; the alphabet is in fl_kernels.h).
// * Element type: every function exists as fl_<op>_f (float) and fl_<op>_d (double).
// * Pairs: DeepLIFT compares an example with a reference. A chunk holds n_x example rows and n_r
//   reference rows once each; pair p is (pair_x[p], pair_r[p]) (int64 indices), and per-pair
//   arrays (multipliers, deltas) have one row per pair.
// * Threads: every kernel fills a half-open range of output rows (pairs, rows, cell blocks or
//   tasks: each function says which). Give disjoint ranges to your threads; results are bitwise
//   identical for any split (no atomics, a fixed operation order per output element).
// * Validation: none. The kernels trust shapes, indices and act codes; check them first.
// * Activation codes FL_ACT_*: fl_math.h. alpha__f holds one parameter per feature (LeakyReLU's
//   slope, ELU's alpha, hard sigmoid's slope; ignored by the other activations).
// * The near-zero rule: |x - ref| < FL_NEAR_ZERO (1e-7) uses the gradient, as deeplift does.
//
// Index (formula, layout and thread mapping of each: at its definition)
// -----
// Per element (fl_math_impl.h)
//   fl_activation_forward_elem, fl_activation_grad_elem          f(x), f'(x)
//   fl_rescale_backward_elem                                      Rescale rule, one element
//   fl_reveal_cancel_split_elem, fl_reveal_cancel_backward_elem  RevealCancel rule, one element
//   fl_max_pool_backward_lambda                                   exact max-pool split
// Elementwise rows (fl_kernels_impl.h)
//   fl_activation_forward, fl_activation_grad, fl_add_activation, fl_add
// Rule kernels, rows are pairs
//   fl_rescale_backward, fl_reveal_cancel_split, fl_reveal_cancel_backward,
//   fl_gradient_backward, fl_guided_backprop_backward
// Pair gathers and the mean over references
//   fl_pair_delta, fl_pair_contributions, fl_mean_over_refs
// Convolution (NHWC; 1-D layers have h = 1) and dense layers
//   fl_matmul              a @ b through a caller's BLAS in fixed-shape blocks (fl_blas)
//   fl_conv_forward        im2col + GEMM (+ bias), fused per block of cells (fl_blas)
//   fl_conv_adjoint        multipliers at a convolution's input: GEMM + col2im per pair (fl_blas)
//   fl_im2col, fl_im2col_cells, fl_col2im
//   fl_conv_direct, fl_conv_forward_onehot (+ fl_onehot_cells), fl_conv_sparse: the forward
//   and adjoint without BLAS for AVX2/AVX-512, one-hot and mostly-zero inputs (fl_isa picks the
//   instruction set); fl_conv_winograd3: 1-D three-tap convolutions in 2/3 or 1/2 of the multiply-adds;
//   fl_conv_narrow: convolutions to few output channels, vectorised over the input channels
// Pooling
//   fl_max_pool_forward, fl_avg_pool_forward, fl_avg_pool_backward, fl_max_pool_backward
// Shuffled references (fl_shuffle.h): fl_kmer_shuffle, fl_shuffle_workspace_size,
//   fl_shuffle_n_vertices
//
// A DeepLIFT-Rescale backward pass, layer by layer, for P = n_x * n_refs pairs: run the forward
// pass once per unique row (examples and references), seed m = 1 at the target unit of every
// pair, then per layer from the top: dense/conv -> fl_matmul with the transposed weights /
// fl_conv_adjoint; activation -> fl_rescale_backward (its input and output rows of examples and
// references, gathered through pair_x / pair_r); pooling -> fl_avg_pool_backward /
// fl_max_pool_backward. At the input, fl_pair_contributions gives m * (x - ref) per pair and
// fl_mean_over_refs averages them over each example's references. examples/c_deeplift/ does
// exactly this for a Conv1D -> ReLU -> global average pool -> Dense network.
#ifndef FASTLIFT_H
#define FASTLIFT_H

#define FL_ABI_VERSION 1

#include "fl_math.h"
#include "fl_kernels.h"
#include "fl_shuffle.h"

// The FL_ABI_VERSION this code was compiled against.
static inline int fl_abi_version(void) { return FL_ABI_VERSION; }

#endif  // FASTLIFT_H
