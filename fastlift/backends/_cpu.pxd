# C declarations of the header-only kernels in csrc/ (fl_math.h, fl_kernels.h).
#
# `_cpu.pyx` sees these automatically; other Cython modules can
# `from fastlift.backends._cpu cimport fl_rescale_backward_f` and compile against
# fastlift.get_include(). Argument names carry the dimension suffixes documented at the
# top of csrc/fl_kernels.h (e.g. m_out__pf: pair x feature). Every kernel fills the
# output rows [begin, end) only; all pointers are C-contiguous.

from libc.stdint cimport int32_t, int64_t, uint8_t


cdef extern from "fl_math.h" nogil:
    int FL_ACT_LINEAR, FL_ACT_RELU, FL_ACT_RELU6, FL_ACT_LEAKY_RELU, FL_ACT_ELU, FL_ACT_SELU
    int FL_ACT_SIGMOID, FL_ACT_HARD_SIGMOID, FL_ACT_TANH, FL_ACT_SOFTPLUS, FL_ACT_SOFTSIGN
    int FL_ACT_SWISH, FL_ACT_GELU, FL_ACT_GELU_TANH, FL_ACT_EXPONENTIAL, FL_ACT_LOG
    int FL_ACT_COUNT
    double FL_NEAR_ZERO

    float fl_act_value_f(int act, float x, float a)
    double fl_act_value_d(int act, double x, double a)
    float fl_act_grad_f(int act, float x, float a)
    double fl_act_grad_d(int act, double x, double a)
    float fl_rescale_scale_f(int act, float x, float ref, float y, float y_ref, float a)
    double fl_rescale_scale_d(int act, double x, double ref, double y, double y_ref, double a)
    void fl_reveal_cancel_dy_f(int act, float x0, float d_pos, float d_neg, float a,
                               float *dy_pos, float *dy_neg)
    void fl_reveal_cancel_dy_d(int act, double x0, double d_pos, double d_neg, double a,
                               double *dy_pos, double *dy_neg)
    void fl_reveal_cancel_scales_f(int act, float x0, float d_pos, float d_neg, float a,
                                   float *s_pos, float *s_neg)
    void fl_reveal_cancel_scales_d(int act, double x0, double d_pos, double d_neg, double a,
                                   double *s_pos, double *s_neg)
    float fl_max_pool_lambda_f(float x_a, float x_b, float r_a, float r_b)
    double fl_max_pool_lambda_d(double x_a, double x_b, double r_a, double r_b)


cdef extern from "fl_kernels.h" nogil:
    ctypedef struct fl_geometry:
        int64_t h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, h_out, w_out

    # ---- elementwise: rows of x__nf
    void fl_activation_forward_f(int act, const float *x__nf, const float *alpha__f,
                                 float *out__nf, int64_t n_features,
                                 int64_t row_begin, int64_t row_end)
    void fl_activation_forward_d(int act, const double *x__nf, const double *alpha__f,
                                 double *out__nf, int64_t n_features,
                                 int64_t row_begin, int64_t row_end)
    void fl_activation_grad_f(int act, const float *x__nf, const float *alpha__f,
                              float *out__nf, int64_t n_features,
                              int64_t row_begin, int64_t row_end)
    void fl_activation_grad_d(int act, const double *x__nf, const double *alpha__f,
                              double *out__nf, int64_t n_features,
                              int64_t row_begin, int64_t row_end)

    # ---- rule kernels: rows are pairs
    void fl_rescale_backward_f(int act, const float *m_out__pf, const float *x_in__nf,
                               const float *r_in__nf, const float *x_out__nf,
                               const float *r_out__nf, const int64_t *pair_x__p,
                               const int64_t *pair_r__p, const float *alpha__f,
                               float *m_in__pf, int64_t n_features,
                               int64_t p_begin, int64_t p_end)
    void fl_rescale_backward_d(int act, const double *m_out__pf, const double *x_in__nf,
                               const double *r_in__nf, const double *x_out__nf,
                               const double *r_out__nf, const int64_t *pair_x__p,
                               const int64_t *pair_r__p, const double *alpha__f,
                               double *m_in__pf, int64_t n_features,
                               int64_t p_begin, int64_t p_end)
    void fl_gradient_backward_f(int act, const float *m_out__pf, const float *x_in__nf,
                                const int64_t *pair_x__p, const float *alpha__f,
                                float *m_in__pf, int64_t n_features,
                                int64_t p_begin, int64_t p_end)
    void fl_gradient_backward_d(int act, const double *m_out__pf, const double *x_in__nf,
                                const int64_t *pair_x__p, const double *alpha__f,
                                double *m_in__pf, int64_t n_features,
                                int64_t p_begin, int64_t p_end)
    void fl_guided_backprop_backward_f(int act, const float *m_out__pf, const float *x_in__nf,
                                       const int64_t *pair_x__p, const float *alpha__f,
                                       float *m_in__pf, int64_t n_features,
                                       int64_t p_begin, int64_t p_end)
    void fl_guided_backprop_backward_d(int act, const double *m_out__pf,
                                       const double *x_in__nf, const int64_t *pair_x__p,
                                       const double *alpha__f, double *m_in__pf,
                                       int64_t n_features, int64_t p_begin, int64_t p_end)
    void fl_reveal_cancel_split_f(int act, const float *r_in__nf, const float *d_pos__pf,
                                  const float *d_neg__pf, const int64_t *pair_r__p,
                                  const float *alpha__f, float *dy_pos__pf, float *dy_neg__pf,
                                  int64_t n_features, int64_t p_begin, int64_t p_end)
    void fl_reveal_cancel_split_d(int act, const double *r_in__nf, const double *d_pos__pf,
                                  const double *d_neg__pf, const int64_t *pair_r__p,
                                  const double *alpha__f, double *dy_pos__pf,
                                  double *dy_neg__pf, int64_t n_features,
                                  int64_t p_begin, int64_t p_end)
    void fl_reveal_cancel_backward_f(int act, const float *m_pos__pf, const float *m_neg__pf,
                                     const float *r_in__nf, const float *d_pos__pf,
                                     const float *d_neg__pf, const int64_t *pair_r__p,
                                     const float *alpha__f, float *m_in_pos__pf,
                                     float *m_in_neg__pf, int64_t n_features,
                                     int64_t p_begin, int64_t p_end)
    void fl_reveal_cancel_backward_d(int act, const double *m_pos__pf,
                                     const double *m_neg__pf, const double *r_in__nf,
                                     const double *d_pos__pf, const double *d_neg__pf,
                                     const int64_t *pair_r__p, const double *alpha__f,
                                     double *m_in_pos__pf, double *m_in_neg__pf,
                                     int64_t n_features, int64_t p_begin, int64_t p_end)

    # ---- pair gathers and the reference reduction
    void fl_pair_delta_f(const float *x__nf, const float *r__nf, const int64_t *pair_x__p,
                         const int64_t *pair_r__p, float *delta__pf, int64_t n_features,
                         int64_t p_begin, int64_t p_end)
    void fl_pair_delta_d(const double *x__nf, const double *r__nf, const int64_t *pair_x__p,
                         const int64_t *pair_r__p, double *delta__pf, int64_t n_features,
                         int64_t p_begin, int64_t p_end)
    void fl_pair_contributions_f(const float *m__pf, const float *x__nf, const float *r__nf,
                                 const int64_t *pair_x__p, const int64_t *pair_r__p,
                                 float *c__pf, int64_t n_features,
                                 int64_t p_begin, int64_t p_end)
    void fl_pair_contributions_d(const double *m__pf, const double *x__nf,
                                 const double *r__nf, const int64_t *pair_x__p,
                                 const int64_t *pair_r__p, double *c__pf,
                                 int64_t n_features, int64_t p_begin, int64_t p_end)
    void fl_add_activation_f(int act, const float *x__nf, const float *alpha__f,
                             const float *other__nf, float *out__nf, int64_t n_features,
                             int64_t row_begin, int64_t row_end)
    void fl_add_activation_d(int act, const double *x__nf, const double *alpha__f,
                             const double *other__nf, double *out__nf, int64_t n_features,
                             int64_t row_begin, int64_t row_end)
    void fl_add_f(const float *a, const float *b, float *out, int64_t begin, int64_t end)
    void fl_add_d(const double *a, const double *b, double *out, int64_t begin, int64_t end)
    void fl_mean_over_refs_f(const float *a__ekf, float *out__ef, int64_t n_refs,
                             int64_t n_features, int64_t e_begin, int64_t e_end,
                             int64_t f_begin, int64_t f_end)
    void fl_mean_over_refs_d(const double *a__ekf, double *out__ef, int64_t n_refs,
                             int64_t n_features, int64_t e_begin, int64_t e_end,
                             int64_t f_begin, int64_t f_end)

    # ---- convolution helpers and pooling (NHWC; rows as documented per kernel)
    void fl_im2col_f(const float *x__nhwc, float *cols__nijtc, fl_geometry g,
                     int64_t row_begin, int64_t row_end)
    void fl_im2col_d(const double *x__nhwc, double *cols__nijtc, fl_geometry g,
                     int64_t row_begin, int64_t row_end)
    void fl_im2col_cells_f(const float *x__nhwc, float *cells__qt, fl_geometry g,
                           int64_t cell_begin, int64_t cell_end)
    void fl_im2col_cells_d(const double *x__nhwc, double *cells__qt, fl_geometry g,
                           int64_t cell_begin, int64_t cell_end)
    void fl_col2im_f(const float *cols__nijtc, float *x__nhwc, fl_geometry g,
                     int64_t row_begin, int64_t row_end)
    void fl_col2im_d(const double *cols__nijtc, double *x__nhwc, fl_geometry g,
                     int64_t row_begin, int64_t row_end)
    enum:
        FL_ISA_AUTO
        FL_ISA_BASE
        FL_ISA_AVX2
        FL_ISA_AVX512
    int fl_isa(int wanted)
    enum:
        FL_EPI_RESIDUAL_RELU
        FL_EPI_RELU_GRAD
    enum:
        FL_VEC_BLOCK
    void fl_conv_direct_f(const float *x__nhwc, const float *wp__btcv, const float *bias__o,
                          const float *zero__c, const float *addend__nijo,
                          const float *aux__nijo, float *out2__nijo, int epi, fl_geometry g, int64_t c_out,
                          int isa,
                          float *out__nijo, int64_t row_begin, int64_t row_end)
    void fl_conv_direct_d(const double *x__nhwc, const double *wp__btcv, const double *bias__o,
                          const double *zero__c, const double *addend__nijo,
                          const double *aux__nijo, double *out2__nijo, int epi, fl_geometry g, int64_t c_out,
                          int isa,
                          double *out__nijo, int64_t row_begin, int64_t row_end)
    int fl_onehot_cells_f(const float *x__hwc, int64_t cells, int64_t c, int32_t *hot__hw)
    int fl_onehot_cells_d(const double *x__hwc, int64_t cells, int64_t c, int32_t *hot__hw)
    void fl_conv_onehot_f(const int32_t *hot__nhw, const float *kernel__tp, const float *zero__p,
                          const float *bias__o,
                          fl_geometry g, int64_t c_out, int64_t c_pad, int isa, float *out__nijo,
                          int64_t row_begin, int64_t row_end)
    void fl_conv_onehot_d(const int32_t *hot__nhw, const double *kernel__tp, const double *zero__p,
                          const double *bias__o,
                          fl_geometry g, int64_t c_out, int64_t c_pad, int isa, double *out__nijo,
                          int64_t row_begin, int64_t row_end)
    void fl_conv_adjoint_sparse_f(const float *m_out__pijo, const float *wt__toc, int64_t c_out,
                                  int64_t c_pad, fl_geometry g, int64_t max_nnz, int isa,
                                  int64_t *start__q, int32_t *idx__e, float *val__e,
                                  float *m_in__phwc, uint8_t *done__p,
                                  int64_t row_begin, int64_t row_end)
    void fl_conv_adjoint_sparse_d(const double *m_out__pijo, const double *wt__toc, int64_t c_out,
                                  int64_t c_pad, fl_geometry g, int64_t max_nnz, int isa,
                                  int64_t *start__q, int32_t *idx__e, double *val__e,
                                  double *m_in__phwc, uint8_t *done__p,
                                  int64_t row_begin, int64_t row_end)
    void fl_max_pool_forward_f(const float *x__nhwc, float *out__nijc, fl_geometry g,
                               int64_t row_begin, int64_t row_end)
    void fl_max_pool_forward_d(const double *x__nhwc, double *out__nijc, fl_geometry g,
                               int64_t row_begin, int64_t row_end)
    void fl_avg_pool_forward_f(const float *x__nhwc, float *out__nijc, fl_geometry g,
                               int64_t row_begin, int64_t row_end)
    void fl_avg_pool_forward_d(const double *x__nhwc, double *out__nijc, fl_geometry g,
                               int64_t row_begin, int64_t row_end)
    void fl_avg_pool_backward_f(const float *m_out__pijc, float *m_in__phwc, fl_geometry g,
                                int64_t row_begin, int64_t row_end)
    void fl_avg_pool_backward_d(const double *m_out__pijc, double *m_in__phwc, fl_geometry g,
                                int64_t row_begin, int64_t row_end)
    void fl_max_pool_backward_f(const float *m_out__pijc, const float *x__nhwc,
                                const float *ref__nhwc, const int64_t *pair_x__p,
                                const int64_t *pair_r__p, fl_geometry g, int exact, int isa,
                                float *m_in__phwc, int64_t p_begin, int64_t p_end)
    void fl_max_pool_backward_d(const double *m_out__pijc, const double *x__nhwc,
                                const double *ref__nhwc, const int64_t *pair_x__p,
                                const int64_t *pair_r__p, fl_geometry g, int exact, int isa,
                                double *m_in__phwc, int64_t p_begin, int64_t p_end)
