// deeplift_conv.c -- DeepLIFT-Rescale contributions of a small network, in plain C with fastlift's
// C API (fastlift.h) and a BLAS: Conv1D ("same" padding, bias) -> ReLU -> GlobalAveragePooling1D
// -> Dense, attributed to one output unit of the Dense layer, each example against its own K
// references, as fl.deeplift(model, X, references, rule="rescale", target=t) computes it.
//
// Build, with any BLAS that has Fortran-convention dgemm_ and 32-bit integers (OpenBLAS, the
// reference BLAS; a symbol with a prefix, such as scipy's bundled OpenBLAS's scipy_dgemm_, is
// named with -DBLAS_DGEMM=scipy_dgemm_):
//   cc -O2 -std=c99 -I"$(python -c 'import fastlift; print(fastlift.get_include())')"
//      deeplift_conv.c -o deeplift_conv -lopenblas -lm        (one command)
// Run:
//   ./deeplift_conv model.bin contributions.bin
//
// model.bin, little-endian: int64 n_examples, n_refs, length, channels, filters, width, dilation,
// units, target; then float64 arrays x (n_examples, length, channels), refs (n_examples, n_refs,
// length, channels), conv kernel (width, channels, filters), conv bias (filters,), dense kernel
// (filters, units), dense bias (units,).
// contributions.bin: float64 (n_examples, length, channels), the contributions of every input
// value to unit `target` (mean over the example's references), then float64 (n_examples,), the
// difference-from-reference of that unit, y(x) - mean over k of y(ref_k), which the
// contributions of each example sum to (DeepLIFT's summation-to-delta).
//
// The pass, as fastlift's engine runs it:
//   forward, once per unique row (n examples, n*K references): z = conv(x) + bias
//     (fl_conv_forward), a = relu(z) (fl_activation_forward), g = mean of a over the length
//     (fl_avg_pool_forward), y = g @ dense + bias (fl_matmul);
//   pairs: p = e*K + k compares example e (pair_x[p] = e) with reference row pair_r[p] = p;
//   backward, per pair: m_y = 1 at `target`; m_g = m_y @ dense^T (fl_matmul); m_a = the pooling's
//     adjoint (fl_avg_pool_backward); m_z = the Rescale rule through the ReLU, from the rows of
//     z and a gathered for the pair (fl_rescale_backward); m_x = the convolution's adjoint
//     (fl_conv_adjoint);
//   contributions: m_x * (x - ref) per pair (fl_pair_contributions), averaged over each
//     example's K references (fl_mean_over_refs).
// Every call here covers all its rows on one thread. Each takes a [begin, end) range of rows,
// blocks or pairs, so giving disjoint ranges to several threads (OpenMP, pthreads) computes the
// same bits in parallel.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fastlift.h"

#if FL_ABI_VERSION != 1
#  error "written for fastlift's C API version 1"
#endif

#ifndef BLAS_DGEMM
#  define BLAS_DGEMM dgemm_
#endif
void BLAS_DGEMM(char *transa, char *transb, int *m, int *n, int *k, double *alpha, double *a, int *lda,
                double *b, int *ldb, double *beta, double *c, int *ldc);

// Rows per BLAS call: the GEMM drivers issue every call with exactly this many rows.
#define BLOCK_ROWS 64

static double *alloc(int64_t n)
{
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

static double *read_doubles(FILE *f, int64_t n, const char *what)
{
    double *p = alloc(n);
    if (fread(p, sizeof(double), (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "model file ends before %s (%lld values)\n", what, (long long)n);
        exit(1);
    }
    return p;
}

typedef struct network {
    int64_t length, channels, filters, width, dilation, units;
    fl_geometry conv;  // the Conv1D as a 1 x length image
    fl_geometry gap;   // global average pooling: one window over the whole length
    double *kernel, *conv_bias, *dense, *dense_bias;
} network;

// Activations of `rows` input rows (x: rows x length x channels): z and a (rows*length, filters)
// and the Dense output y (rows, units).
static void forward(const network *net, fl_blas blas, const double *x, int64_t rows, double *z, double *a,
                    double *y)
{
    const int64_t cells = rows * net->length, f = net->filters, u = net->units;
    double *zeros = alloc(f);  // ReLU ignores alpha; the kernels read one per feature
    double *scratch = alloc(fl_conv_forward_scratch_size(net->conv, f, BLOCK_ROWS));
    fl_conv_forward_d(blas, x, net->conv, net->kernel, 0, f, f, net->conv_bias, cells, BLOCK_ROWS, scratch, z, 0,
                      fl_conv_forward_n_blocks(cells, BLOCK_ROWS));
    free(scratch);
    fl_activation_forward_d(FL_ACT_RELU, z, zeros, a, f, 0, cells);
    double *g = alloc(rows * f);
    fl_avg_pool_forward_d(a, g, net->gap, 0, rows);
    scratch = alloc(fl_matmul_scratch_size(f, u, BLOCK_ROWS, 0));
    fl_matmul_d(blas, g, net->dense, 0, rows, f, u, u, BLOCK_ROWS, 0, scratch, y, 0,
                fl_matmul_n_tasks(rows, u, BLOCK_ROWS, 0));
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < u; ++j)
            y[r * u + j] += net->dense_bias[j];
    free(scratch);
    free(g);
    free(zeros);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s model.bin contributions.bin\n", argv[0]);
        return 2;
    }
    FILE *in = fopen(argv[1], "rb");
    if (in == NULL) {
        perror(argv[1]);
        return 1;
    }
    int64_t head[9];
    if (fread(head, sizeof(int64_t), 9, in) != 9) {
        fprintf(stderr, "%s: no header\n", argv[1]);
        return 1;
    }
    const int64_t n = head[0], k_refs = head[1], target = head[8];
    network net;
    memset(&net, 0, sizeof net);
    net.length = head[2], net.channels = head[3], net.filters = head[4];
    net.width = head[5], net.dilation = head[6], net.units = head[7];
    if (n < 1 || k_refs < 1 || net.length < 1 || net.channels < 1 || net.filters < 1 || net.width < 1
        || net.dilation < 1 || net.units < 1 || target < 0 || target >= net.units) {
        fprintf(stderr, "%s: bad header\n", argv[1]);
        return 1;
    }
    const int64_t len = net.length, c = net.channels, f = net.filters, u = net.units;
    // Keras "same" padding for stride 1: span - 1 cells, the smaller half before
    const int64_t span = (net.width - 1) * net.dilation + 1;
    net.conv = (fl_geometry){1, len, c, 1, net.width, 1, 1, 1, net.dilation, 0, (span - 1) / 2, 1, len};
    net.gap = (fl_geometry){1, len, f, 1, len, 1, 1, 1, 1, 0, 0, 1, 1};
    double *x = read_doubles(in, n * len * c, "x");
    double *refs = read_doubles(in, n * k_refs * len * c, "refs");
    net.kernel = read_doubles(in, net.width * c * f, "the conv kernel");
    net.conv_bias = read_doubles(in, f, "the conv bias");
    net.dense = read_doubles(in, f * u, "the dense kernel");
    net.dense_bias = read_doubles(in, u, "the dense bias");
    fclose(in);

    fl_blas blas = {NULL, BLAS_DGEMM};  // a double-only program needs no sgemm

    // ---- forward, once per unique row
    const int64_t n_r = n * k_refs, n_pairs = n * k_refs;
    double *z_x = alloc(n * len * f), *a_x = alloc(n * len * f), *y_x = alloc(n * u);
    double *z_r = alloc(n_r * len * f), *a_r = alloc(n_r * len * f), *y_r = alloc(n_r * u);
    forward(&net, blas, x, n, z_x, a_x, y_x);
    forward(&net, blas, refs, n_r, z_r, a_r, y_r);

    // ---- pairs: example e against each of its references
    int64_t *pair_x = malloc((size_t)n_pairs * sizeof(int64_t));
    int64_t *pair_r = malloc((size_t)n_pairs * sizeof(int64_t));
    for (int64_t p = 0; p < n_pairs; ++p) {
        pair_x[p] = p / k_refs;
        pair_r[p] = p;
    }

    // ---- backward: multipliers of each layer's input, per pair
    double *m_y = alloc(n_pairs * u);
    for (int64_t p = 0; p < n_pairs; ++p)
        m_y[p * u + target] = 1.0;
    // dense: m_g = m_y @ dense^T; dense (filters, units) read column-major is dense^T
    double *m_g = alloc(n_pairs * f);
    double *scratch = alloc(fl_matmul_scratch_size(u, f, BLOCK_ROWS, 0));
    fl_matmul_d(blas, m_y, net.dense, 1, n_pairs, u, f, f, BLOCK_ROWS, 0, scratch, m_g, 0,
                fl_matmul_n_tasks(n_pairs, f, BLOCK_ROWS, 0));
    free(scratch);
    // global average pooling
    double *m_a = alloc(n_pairs * len * f);
    fl_avg_pool_backward_d(m_g, m_a, net.gap, 0, n_pairs);
    // ReLU, Rescale rule: m_z = m_a * (a_x - a_r) / (z_x - z_r) (the gradient where z_x ~ z_r)
    double *zeros = alloc(len * f), *m_z = alloc(n_pairs * len * f);
    fl_rescale_backward_d(FL_ACT_RELU, m_a, z_x, z_r, a_x, a_r, pair_x, pair_r, zeros, m_z, len * f, 0, n_pairs);
    // convolution: the kernel (width*channels, filters) read column-major is kernel^T
    double *m_x = alloc(n_pairs * len * c);
    scratch = alloc(fl_conv_adjoint_scratch_size(net.conv, f, net.width * c, BLOCK_ROWS));
    fl_conv_adjoint_d(blas, m_z, net.conv, net.kernel, 1, f, net.width * c, BLOCK_ROWS, scratch, m_x, 0, n_pairs);
    free(scratch);

    // ---- contributions: m_x * (x - ref), averaged over each example's references
    double *c_p = alloc(n_pairs * len * c), *contrib = alloc(n * len * c), *delta = alloc(n);
    fl_pair_contributions_d(m_x, x, refs, pair_x, pair_r, c_p, len * c, 0, n_pairs);
    fl_mean_over_refs_d(c_p, contrib, k_refs, len * c, 0, n, 0, len * c);
    for (int64_t e = 0; e < n; ++e) {
        double mean_ref = 0.0;
        for (int64_t k = 0; k < k_refs; ++k)
            mean_ref += y_r[(e * k_refs + k) * u + target];
        delta[e] = y_x[e * u + target] - mean_ref / (double)k_refs;
    }

    FILE *out = fopen(argv[2], "wb");
    if (out == NULL) {
        perror(argv[2]);
        return 1;
    }
    if (fwrite(contrib, sizeof(double), (size_t)(n * len * c), out) != (size_t)(n * len * c)
        || fwrite(delta, sizeof(double), (size_t)n, out) != (size_t)n || fclose(out) != 0) {
        fprintf(stderr, "%s: write failed\n", argv[2]);
        return 1;
    }
    for (int64_t e = 0; e < n; ++e) {
        double total = 0.0;
        for (int64_t i = 0; i < len * c; ++i)
            total += contrib[e * len * c + i];
        printf("example %lld: sum of contributions %.12g, y(x) - mean y(ref) %.12g\n", (long long)e, total,
               delta[e]);
    }
    free(c_p), free(contrib), free(delta), free(m_x), free(m_z), free(zeros), free(m_a), free(m_g), free(m_y);
    free(pair_x), free(pair_r), free(z_x), free(a_x), free(y_x), free(z_r), free(a_r), free(y_r);
    free(x), free(refs), free(net.kernel), free(net.conv_bias), free(net.dense), free(net.dense_bias);
    return 0;
}
