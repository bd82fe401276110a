"""fastlift's C API (csrc/fastlift.h) from C and Cython, against the Python engine.

Builds and runs the two worked examples (examples/c_deeplift, a C program; examples/cython_ext, a
Cython extension) and compares their contributions with ``fl.deeplift`` on the same weights and
inputs; checks the GEMM and convolution drivers against the numpy oracle `Ops` on geometries
the examples do not reach (strides, 2-D, dilation, padding), and the ABI version. The BLAS is
the system's (-lopenblas, -lblas) when it links, else the one scipy loaded (its bundled
OpenBLAS): only a missing C compiler skips these tests.
"""

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastlift as fl
from fastlift import layers as L
from fastlift.backends import _cpu
from fastlift.backends.ops import Geometry, Ops

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CC = os.environ.get("CC", "cc")
CFLAGS = ["-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-Wno-unused-function"]

pytestmark = [pytest.mark.skipif(shutil.which(CC) is None, reason=f"no C compiler ({CC!r} not on PATH)"),
              pytest.mark.skipif(not EXAMPLES.is_dir(), reason="needs the source tree (examples/)")]

PROBE = r"""
void BLAS_DGEMM(char *, char *, int *, int *, int *, double *, double *, int *, double *, int *, double *,
                double *, int *);
void BLAS_SGEMM(char *, char *, int *, int *, int *, float *, float *, int *, float *, int *, float *,
                float *, int *);
int main(void)
{
    char t = 'N';
    int one = 1;
    double a = 2, b = 3, c = 0, alpha = 1, beta = 0;
    float af = 2, bf = 3, cf = 0, alphaf = 1, betaf = 0;
    BLAS_DGEMM(&t, &t, &one, &one, &one, &alpha, &a, &one, &b, &one, &beta, &c, &one);
    BLAS_SGEMM(&t, &t, &one, &one, &one, &alphaf, &af, &one, &bf, &one, &betaf, &cf, &one);
    return c == 6 && cf == 6 ? 0 : 1;
}
"""


def _compile(src: Path, exe: Path, link, defines=(), extra=()):
    cmd = [CC, *CFLAGS, *extra, *defines, "-I", fl.get_include(), str(src), "-o", str(exe), *link, "-lm"]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _blas_candidates():
    """(link arguments, symbol prefix) to try, in order: the system BLAS, then scipy's."""
    yield ["-lopenblas"], ""
    yield ["-lblas"], ""
    import scipy.linalg  # noqa: F401  (loads the BLAS scipy links, so threadpoolctl lists it)
    from threadpoolctl import threadpool_info

    for info in threadpool_info():
        if info.get("user_api") != "blas":
            continue
        lib = ctypes.CDLL(info["filepath"])
        for prefix in ("", "scipy_"):  # 32-bit integer symbols only (not ILP64's *_64_)
            if hasattr(lib, f"{prefix}dgemm_") and hasattr(lib, f"{prefix}sgemm_"):
                path = info["filepath"]
                yield [path, f"-Wl,-rpath,{os.path.dirname(path)}"], prefix


@pytest.fixture(scope="module")
def blas(tmp_path_factory):
    """(link arguments, -D defines) of a working BLAS with Fortran dgemm_ / sgemm_."""
    tmp = tmp_path_factory.mktemp("blas")
    probe = tmp / "probe.c"
    probe.write_text(PROBE)
    tried = []
    for link, prefix in _blas_candidates():
        defines = [f"-DBLAS_DGEMM={prefix}dgemm_", f"-DBLAS_SGEMM={prefix}sgemm_"]
        built = _compile(probe, tmp / "probe", link, defines)
        if built.returncode == 0 and subprocess.run([str(tmp / "probe")], check=False).returncode == 0:
            return link, defines
        tried.append(" ".join(link))
    pytest.fail(f"no BLAS with Fortran dgemm_/sgemm_ found (tried: {tried}); install one, e.g. "
                "apt-get install libopenblas-dev")


def _run_env():
    return {**os.environ, "OPENBLAS_NUM_THREADS": "1"}


# ---------------------------------------------------------------------------------------- ABI
def test_abi_version_of_header_and_package_agree(tmp_path, blas):
    src = tmp_path / "abi.c"
    src.write_text('#include <stdio.h>\n#include "fastlift.h"\n'
                   'int main(void) { printf("%d %d\\n", FL_ABI_VERSION, fl_abi_version()); return 0; }\n')
    built = _compile(src, tmp_path / "abi", [])
    assert built.returncode == 0, built.stderr
    out = subprocess.run([str(tmp_path / "abi")], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(_cpu.ABI_VERSION)] * 2
    assert "#define FL_ABI_VERSION 1" in (Path(fl.get_include()) / "fastlift.h").read_text()


def test_public_header_compiles_as_c99_and_cxx(tmp_path):
    src = tmp_path / "use.c"
    src.write_text('#include "fastlift.h"\nint main(void) { return fl_abi_version() == FL_ABI_VERSION ? 0 : 1; }\n')
    built = _compile(src, tmp_path / "use_c", [])
    assert built.returncode == 0, built.stderr
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is not None:
        proc = subprocess.run([cxx, "-std=c++17", "-Wall", "-Werror", "-Wno-unused-function", "-x", "c++",
                               "-I", fl.get_include(), str(src), "-o", str(tmp_path / "use_cxx")],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------------- the C example
def _conv_net(rng, length, channels, filters, width, units):
    return {"kernel": rng.normal(size=(width, channels, filters)) / np.sqrt(width * channels),
            "conv_bias": rng.normal(size=filters) * 0.1,
            "dense": rng.normal(size=(filters, units)),
            "dense_bias": rng.normal(size=units) * 0.1}


def _write_model(path, x, refs, net, dilation, target):
    n, k, length, channels = refs.shape
    width, _, filters = net["kernel"].shape
    units = net["dense"].shape[1]
    with open(path, "wb") as f:
        f.write(np.array([n, k, length, channels, filters, width, dilation, units, target], dtype="<i8").tobytes())
        f.writelines(np.ascontiguousarray(a, dtype="<f8").tobytes()
                     for a in (x, refs, net["kernel"], net["conv_bias"], net["dense"], net["dense_bias"]))


@pytest.fixture(scope="module")
def c_example(tmp_path_factory, blas):
    link, defines = blas
    exe = tmp_path_factory.mktemp("c_example") / "deeplift_conv"
    built = _compile(EXAMPLES / "c_deeplift" / "deeplift_conv.c", exe, link, defines)
    assert built.returncode == 0, built.stderr
    return exe


@pytest.mark.parametrize("n, k, width, dilation, onehot", [(3, 4, 5, 2, True), (2, 1, 4, 1, False),
                                                          (5, 2, 1, 1, True)])
def test_c_example_matches_fl_deeplift(tmp_path, c_example, n, k, width, dilation, onehot):
    rng = np.random.default_rng(n * 100 + width)
    length, channels, filters, units, target = 30, 4, 6, 3, 1
    if onehot:  # DNA against dinucleotide shuffles, as a genomics user runs it
        x = np.eye(channels)[rng.integers(0, channels, (n, length))]
        refs = fl.dinuc_shuffle(x, k, seed=1)
    else:
        x, refs = rng.normal(size=(n, length, channels)), rng.normal(size=(n, k, length, channels))
    net = _conv_net(rng, length, channels, filters, width, units)
    _write_model(tmp_path / "model.bin", x, refs, net, dilation, target)
    proc = subprocess.run([str(c_example), str(tmp_path / "model.bin"), str(tmp_path / "out.bin")],
                          capture_output=True, text=True, env=_run_env(), check=False)
    assert proc.returncode == 0, proc.stderr
    out = np.fromfile(tmp_path / "out.bin", dtype="<f8")
    contributions, delta = out[:x.size].reshape(x.shape), out[x.size:]

    inp = L.Input((length, channels))
    h = L.Conv1D(net["kernel"], net["conv_bias"], padding="same", dilation_rate=dilation)(inp)
    h = L.GlobalAvgPool1D()(L.Activation("relu")(h))
    model = fl.Model(inp, L.Dense(net["dense"], net["dense_bias"])(h))
    res = fl.deeplift(model, x, refs, rule="rescale", target=target, dtype="float64")
    scale = np.abs(res.contributions).max()
    np.testing.assert_allclose(contributions, res.contributions, rtol=0, atol=1e-12 * scale)
    # the engine's difference from reference: its summed contributions minus its deltas
    np.testing.assert_allclose(delta, res.contributions.sum((1, 2)) - res.deltas, rtol=0, atol=1e-12)
    np.testing.assert_allclose(contributions.sum((1, 2)), delta, rtol=0, atol=1e-12)  # summation to delta
    assert len(proc.stdout.splitlines()) == n


def test_c_example_refuses_a_truncated_model_file(tmp_path, c_example):
    rng = np.random.default_rng(0)
    x, refs = rng.normal(size=(2, 10, 4)), rng.normal(size=(2, 3, 10, 4))
    _write_model(tmp_path / "model.bin", x, refs, _conv_net(rng, 10, 4, 3, 3, 2), 1, 0)
    data = (tmp_path / "model.bin").read_bytes()
    (tmp_path / "short.bin").write_bytes(data[:-8])
    proc = subprocess.run([str(c_example), str(tmp_path / "short.bin"), str(tmp_path / "out.bin")],
                          capture_output=True, text=True, env=_run_env(), check=False)
    assert proc.returncode == 1 and "model file ends before the dense bias" in proc.stderr
    header = np.frombuffer(data[:72], dtype="<i8").copy()
    header[8] = 2  # target beyond the 2 units
    (tmp_path / "bad.bin").write_bytes(header.tobytes() + data[72:])
    proc = subprocess.run([str(c_example), str(tmp_path / "bad.bin"), str(tmp_path / "out.bin")],
                          capture_output=True, text=True, env=_run_env(), check=False)
    assert proc.returncode == 1 and "bad header" in proc.stderr


# --------------------------------------------------------------- the drivers, any geometry
DRIVERS = r"""
#include "fastlift.h"
void BLAS_DGEMM(char *, char *, int *, int *, int *, double *, double *, int *, double *, int *, double *,
                double *, int *);
void BLAS_SGEMM(char *, char *, int *, int *, int *, float *, float *, int *, float *, int *, float *,
                float *, int *);
static fl_blas blas(void) { fl_blas b = {BLAS_SGEMM, BLAS_DGEMM}; return b; }
static fl_geometry geometry(const int64_t *v)
{
    fl_geometry g = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12]};
    return g;
}
// Each runs its work as `parts` consecutive ranges, as `parts` threads would.
#define DRIVERS(T, S)                                                                                   \
void matmul_##S(const T *a, const T *b, int b_fortran, int64_t m, int64_t k, int64_t n, int64_t n_pad,   \
                int64_t block_rows, int64_t panel_cols, T *scratch, T *out, int64_t parts)               \
{                                                                                                       \
    int64_t tasks = fl_matmul_n_tasks(m, n_pad, block_rows, panel_cols);                                 \
    for (int64_t i = 0; i < parts; ++i)                                                                  \
        fl_matmul_##S(blas(), a, b, b_fortran, m, k, n, n_pad, block_rows, panel_cols, scratch, out,     \
                      i * tasks / parts, (i + 1) * tasks / parts);                                       \
}                                                                                                       \
void conv_forward_##S(const T *x, const int64_t *geo, const T *b, int b_fortran, int64_t c_out,          \
                      int64_t n_pad, const T *bias, int64_t n_cells, int64_t block_rows, T *scratch,     \
                      T *out, int64_t parts)                                                             \
{                                                                                                       \
    int64_t blocks = fl_conv_forward_n_blocks(n_cells, block_rows);                                      \
    for (int64_t i = 0; i < parts; ++i)                                                                  \
        fl_conv_forward_##S(blas(), x, geometry(geo), b, b_fortran, c_out, n_pad, bias, n_cells,         \
                            block_rows, scratch, out, i * blocks / parts, (i + 1) * blocks / parts);     \
}                                                                                                       \
void conv_adjoint_##S(const T *m, const int64_t *geo, const T *b, int b_fortran, int64_t c_out,          \
                      int64_t n_pad, int64_t block_rows, T *scratch, T *out, int64_t n_pairs,            \
                      int64_t parts)                                                                     \
{                                                                                                       \
    for (int64_t i = 0; i < parts; ++i)                                                                  \
        fl_conv_adjoint_##S(blas(), m, geometry(geo), b, b_fortran, c_out, n_pad, block_rows, scratch,   \
                            out, i * n_pairs / parts, (i + 1) * n_pairs / parts);                        \
}                                                                                                       \
int64_t conv_forward_scratch_##S(const int64_t *geo, int64_t n_pad, int64_t block_rows)                  \
{                                                                                                       \
    return fl_conv_forward_scratch_size(geometry(geo), n_pad, block_rows);                               \
}                                                                                                       \
int64_t conv_adjoint_scratch_##S(const int64_t *geo, int64_t c_out, int64_t n_pad, int64_t block_rows)   \
{                                                                                                       \
    return fl_conv_adjoint_scratch_size(geometry(geo), c_out, n_pad, block_rows);                        \
}
DRIVERS(float, f)
DRIVERS(double, d)
int64_t matmul_scratch(int64_t k, int64_t n_pad, int64_t block_rows, int64_t panel_cols)
{
    return fl_matmul_scratch_size(k, n_pad, block_rows, panel_cols);
}
"""


@pytest.fixture(autouse=True)
def one_blas_thread():
    """The drivers and examples expect one BLAS thread per call, as CpuOps runs them."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def drivers(tmp_path_factory, blas):
    link, defines = blas
    tmp = tmp_path_factory.mktemp("drivers")
    (tmp / "drivers.c").write_text(DRIVERS)
    built = _compile(tmp / "drivers.c", tmp / "drivers.so", link, defines, ("-shared", "-fPIC"))
    assert built.returncode == 0, built.stderr
    return ctypes.CDLL(str(tmp / "drivers.so"))


def _p(a):
    return a.ctypes.data_as(ctypes.c_void_p)


def _i(*v):
    return [ctypes.c_int64(int(x)) for x in v]


def _geo(g):
    return np.array([g.h, g.w, g.c, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl, g.h_out, g.w_out], dtype=np.int64)


GEOMETRIES = [  # 1-D same, strided 2-D, dilated + padded 2-D, a window larger than the input's padding
    Geometry(h=1, w=17, c=3, kh=1, kw=5, sh=1, sw=1, dh=1, dw=1, pt=0, pl=2, h_out=1, w_out=17),
    Geometry(h=7, w=9, c=2, kh=3, kw=2, sh=2, sw=3, dh=1, dw=1, pt=1, pl=0, h_out=4, w_out=3),
    Geometry(h=6, w=8, c=4, kh=2, kw=3, sh=1, sw=2, dh=2, dw=2, pt=1, pl=2, h_out=5, w_out=4),
    Geometry(h=3, w=4, c=5, kh=3, kw=3, sh=2, sw=1, dh=1, dw=1, pt=0, pl=0, h_out=1, w_out=2),
]
DTYPES = [(np.float64, "d", 1e-12), (np.float32, "f", 2e-5)]


@pytest.mark.parametrize("dtype, s, tol", DTYPES)
@pytest.mark.parametrize("m, k, n, b_fortran, panel_cols", [(70, 9, 20, 0, 0), (130, 33, 40, 1, 16),
                                                            (5, 1, 3, 0, 0), (64, 0, 7, 0, 0)])
def test_matmul_driver_matches_numpy(drivers, dtype, s, tol, m, k, n, b_fortran, panel_cols):
    rng = np.random.default_rng(m + k)
    n_pad = -(-n // 16) * 16
    a = rng.normal(size=(m, k)).astype(dtype)
    b = np.zeros((k, n_pad), dtype=dtype)
    b[:, :n] = rng.normal(size=(k, n))
    b_arg = np.ascontiguousarray(b.T) if b_fortran else b  # column-major b is the C-contiguous b^T
    block_rows = 32
    scratch = np.empty(drivers.matmul_scratch(*_i(k, n_pad, block_rows, panel_cols)), dtype=dtype)
    outs = []
    for parts in (1, 3):
        out = np.full((m, n), np.nan, dtype=dtype)
        getattr(drivers, f"matmul_{s}")(_p(a), _p(b_arg), ctypes.c_int(b_fortran), *_i(m, k, n, n_pad, block_rows,
                                        panel_cols), _p(scratch), _p(out), *_i(parts))
        outs.append(out)
    expected = a.astype(np.float64) @ b[:, :n].astype(np.float64)
    np.testing.assert_allclose(outs[0], expected, rtol=0, atol=tol * max(1.0, np.abs(expected).max()) * max(k, 1))
    np.testing.assert_array_equal(outs[0], outs[1])  # the tasks' split changes no bit


@pytest.mark.parametrize("dtype, s, tol", DTYPES)
@pytest.mark.parametrize("g", GEOMETRIES)
def test_conv_forward_driver_matches_the_oracle(drivers, dtype, s, tol, g):
    rng = np.random.default_rng(g.h * g.w)
    n_img, c_out, block_rows = 3, 5, 8
    x = rng.normal(size=(n_img, g.h, g.w, g.c)).astype(dtype)
    kernel = rng.normal(size=(g.kh * g.kw * g.c, c_out)).astype(dtype)
    bias = rng.normal(size=c_out).astype(dtype)
    n_cells = n_img * g.h_out * g.w_out
    geo = _geo(g)
    scratch = np.empty(getattr(drivers, f"conv_forward_scratch_{s}")(_p(geo), *_i(c_out, block_rows)), dtype=dtype)
    outs = []
    for parts in (1, 2):
        out = np.full((n_cells, c_out), np.nan, dtype=dtype)
        getattr(drivers, f"conv_forward_{s}")(_p(x), _p(geo), _p(kernel), ctypes.c_int(0), *_i(c_out, c_out),
                                              _p(bias), *_i(n_cells, block_rows), _p(scratch), _p(out), *_i(parts))
        outs.append(out)
    expected = Ops().conv_forward(x.astype(np.float64), kernel.astype(np.float64), g, bias.astype(np.float64))
    np.testing.assert_allclose(outs[0], expected, rtol=0, atol=tol * np.abs(expected).max() * g.kh * g.kw)
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("dtype, s, tol", DTYPES)
@pytest.mark.parametrize("g", GEOMETRIES)
def test_conv_adjoint_driver_matches_the_oracle(drivers, dtype, s, tol, g):
    rng = np.random.default_rng(g.kh * g.kw + g.c)
    n_pairs, c_out, block_rows = 4, 6, 4
    m = rng.normal(size=(n_pairs, g.h_out, g.w_out, c_out)).astype(dtype)
    kernel = rng.normal(size=(g.kh * g.kw * g.c, c_out)).astype(dtype)
    tc = g.kh * g.kw * g.c
    geo = _geo(g)
    scratch = np.empty(getattr(drivers, f"conv_adjoint_scratch_{s}")(_p(geo), *_i(c_out, tc, block_rows)), dtype=dtype)
    out = np.full((n_pairs, g.h, g.w, g.c), np.nan, dtype=dtype)
    # the forward kernel (taps*c, c_out), read column-major, is the kernel^T operand
    getattr(drivers, f"conv_adjoint_{s}")(_p(m), _p(geo), _p(kernel), ctypes.c_int(1), *_i(c_out, tc, block_rows),
                                          _p(scratch), _p(out), *_i(n_pairs, 2))
    expected = Ops().conv_adjoint(m.astype(np.float64), kernel.astype(np.float64), g)
    np.testing.assert_allclose(out, expected, rtol=0, atol=tol * np.abs(expected).max() * c_out)
    # a pair's bits depend on its own multipliers only: alone, it gives the same
    one = np.full((1, g.h, g.w, g.c), np.nan, dtype=dtype)
    getattr(drivers, f"conv_adjoint_{s}")(_p(np.ascontiguousarray(m[2:3])), _p(geo), _p(kernel), ctypes.c_int(1),
                                          *_i(c_out, tc, block_rows), _p(scratch), _p(one), *_i(1, 1))
    np.testing.assert_array_equal(one[0], out[2])


# --------------------------------------------------------------------- the Cython example
@pytest.fixture(scope="module")
def cython_example(tmp_path_factory):
    pytest.importorskip("Cython", reason="the Cython example needs Cython (pip install 'fastlift[test]')")
    tmp = tmp_path_factory.mktemp("cython_ext")
    for f in (EXAMPLES / "cython_ext").iterdir():
        if f.suffix in (".py", ".pyx"):
            shutil.copy2(f, tmp / f.name)
    proc = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tmp, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (so,) = tmp.glob("mlp_deeplift*.so")
    import importlib.util

    spec = importlib.util.spec_from_file_location("mlp_deeplift", so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mlp(rng, dtype, d_in=20, d_hidden=16, d_out=4):
    return [(rng.normal(size=(d_in, d_hidden)) / 4).astype(dtype), (rng.normal(size=d_hidden) * 0.1).astype(dtype),
            rng.normal(size=(d_hidden, d_out)).astype(dtype), (rng.normal(size=d_out) * 0.1).astype(dtype)]


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_cython_example_matches_fl_deeplift(cython_example, dtype, tol, chunk):
    rng = np.random.default_rng(chunk)
    n, k, target = 37, 3, 2
    w1, b1, w2, b2 = _mlp(rng, dtype)
    x = rng.normal(size=(n, w1.shape[0])).astype(dtype)
    refs = rng.normal(size=(n, k, w1.shape[0])).astype(dtype)
    got = cython_example.contributions(x, refs, w1, b1, w2, b2, target, chunk)
    assert got.dtype == dtype and got.shape == x.shape
    inp = L.Input((w1.shape[0],))
    model = fl.Model(inp, L.Dense(w2, b2)(L.Activation("relu")(L.Dense(w1, b1)(inp))))
    res = fl.deeplift(model, x, refs, rule="rescale", target=target, dtype=np.dtype(dtype).name)
    np.testing.assert_allclose(got, res.contributions, rtol=0, atol=tol * np.abs(res.contributions).max())
    assert cython_example.abi_version() == _cpu.ABI_VERSION


def test_cython_example_refuses_mismatched_shapes(cython_example):
    rng = np.random.default_rng(0)
    w1, b1, w2, b2 = _mlp(rng, np.float64)
    x = rng.normal(size=(4, 20))
    with pytest.raises(ValueError, match=r"refs must have shape \(4, K >= 1, 20\); got \(4, 2, 19\)"):
        cython_example.contributions(x, rng.normal(size=(4, 2, 19)), w1, b1, w2, b2, 0)
    with pytest.raises(ValueError, match="target must be in"):
        cython_example.contributions(x, rng.normal(size=(4, 2, 20)), w1, b1, w2, b2, 4)
