// conv_forward_onehot's tile and rows (see fl_kernels_impl.h), written once for a vector type:
// included by fl_kernels_impl.h with
//   FL_OT_VEC        the vector type (FL_OT_NV of them per block of output channels),
//   FL_OT_TILE, FL_OT_ROWS   the functions' names, FL_OT_ROWS_ATTR the rows function's attributes,
// once for FL_VEC_BYTES vectors (every ISA) and once for AVX2's 32-byte ones (16 registers).
// The same adds in the same order whatever the vector: the same bits.
FL_ROWS void FL_OT_TILE(const int32_t *FL_RESTRICT hot__hw, const FL_T *FL_RESTRICT kernel__tp,
                               const FL_T *FL_RESTRICT zero__p, const FL_T *FL_RESTRICT bias__o,
                               fl_geometry g, int64_t i, int64_t j0, int64_t cells, int64_t col0,
                               int64_t c_out, int64_t c_pad, const int nv, FL_T *FL_RESTRICT out__jo)
{
    const int64_t lanes = (int64_t)(sizeof(FL_OT_VEC) / sizeof(FL_T));
    FL_OT_VEC acc[FL_ONEHOT_CELLS][FL_OT_NV];
    for (int r = 0; r < FL_ONEHOT_CELLS; ++r)
        for (int k = 0; k < FL_OT_NV; ++k)
            acc[r][k] = (FL_OT_VEC){0};
    for (int64_t a = 0; a < g.kh; ++a) {
        const int64_t row = i * g.sh - g.pt + a * g.dh;
        const int row_inside = row >= 0 && row < g.h;
        for (int64_t b = 0; b < g.kw; ++b) {
            const FL_T *tap = kernel__tp + (a * g.kw + b) * g.c * c_pad + col0;
            const FL_OT_VEC *p[FL_ONEHOT_CELLS];
            for (int r = 0; r < FL_ONEHOT_CELLS; ++r) {
                const int64_t col = (j0 + r) * g.sw - g.pl + b * g.dw;
                const int32_t ch = (r < cells && row_inside && col >= 0 && col < g.w) ? hot__hw[row * g.w + col] : -1;
                p[r] = (const FL_OT_VEC *)(ch >= 0 ? tap + ch * c_pad : zero__p);
            }
            for (int k = 0; k < nv; ++k)
                for (int r = 0; r < FL_ONEHOT_CELLS; ++r)
                    acc[r][k] += p[r][k];
        }
    }
    const int64_t n_store = c_out - col0 < nv * lanes ? c_out - col0 : nv * lanes;
    for (int r = 0; r < cells; ++r) {
        FL_T *dst = out__jo + (j0 + r) * c_out + col0;
        const FL_T *sum = (const FL_T *)&acc[r][0];
        if (bias__o != NULL)
            for (int64_t k = 0; k < n_store; ++k)
                dst[k] = sum[k] + bias__o[col0 + k];
        else
            for (int64_t k = 0; k < n_store; ++k)
                dst[k] = sum[k];
    }
}

FL_OT_ROWS_ATTR void FL_OT_ROWS(const int32_t *FL_RESTRICT hot__nhw, const FL_T *FL_RESTRICT kernel__tp,
                               const FL_T *FL_RESTRICT zero__p, const FL_T *FL_RESTRICT bias__o, fl_geometry g,
                               int64_t c_out, int64_t c_pad, FL_T *FL_RESTRICT out__nijo, int64_t row_begin,
                               int64_t row_end)
{
    const int64_t lanes = (int64_t)(sizeof(FL_OT_VEC) / sizeof(FL_T)), width = FL_OT_NV * lanes;
    for (int64_t q = row_begin; q < row_end; ++q) {
        const int64_t n = q / g.h_out, i = q % g.h_out;
        const int32_t *hot = hot__nhw + n * g.h * g.w;
        FL_T *out = out__nijo + q * g.w_out * c_out;
        for (int64_t col0 = 0; col0 < c_out; col0 += width) {
            const int64_t left = c_out - col0;
            const int nv = left >= width ? FL_OT_NV : (int)((left + lanes - 1) / lanes);
            for (int64_t j0 = 0; j0 < g.w_out; j0 += FL_ONEHOT_CELLS) {
                const int64_t cells = g.w_out - j0 < FL_ONEHOT_CELLS ? g.w_out - j0 : FL_ONEHOT_CELLS;
                if (nv == FL_OT_NV)  // constant: the loops over vectors and cells unroll
                    FL_OT_TILE(hot, kernel__tp, zero__p, bias__o, g, i, j0, cells, col0, c_out, c_pad,
                                      FL_OT_NV, out);
                else
                    FL_OT_TILE(hot, kernel__tp, zero__p, bias__o, g, i, j0, cells, col0, c_out, c_pad,
                                      nv, out);
            }
        }
    }
}

