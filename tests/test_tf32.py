"""``precision="tf32"``: TF32 tensor-core GEMMs on CUDA, opt-in.

Without a GPU this checks the TF32 rounding emulator on known bit patterns, the validation at the
boundary, and the whole Python path of the setting: `Explainer` -> `get_ops` -> `CupyOps` ->
`compute_context` -> the device's GEMM compute type, on the host-emulated device, whose GEMMs
round their float32 inputs to TF32 under that compute type (tests/cuda_emu/tf32.py). On a GPU,
tests/test_gpu.py checks that cuBLAS really switches.
"""

import numpy as np
import pytest
from cuda_emu import emu, fake_cupy
from cuda_emu.tf32 import matmul_tf32, reference_ops, round_tf32
from model_zoo import ZOO

import fastlift as fl
from fastlift.backends import _cuda, get_ops
from fastlift.backends.ops import Ops

CXX_OK, CXX_WHY = emu.compiler_status()
needs_emulator = pytest.mark.skipif(not CXX_OK, reason=f"host emulation needs a C++ compiler: {CXX_WHY}")
GPU_OK, _ = _cuda.gpu_status()


def f32(bits):
    return np.array(bits, dtype=np.uint32).view(np.float32)


def bits(a):
    return np.asarray(a, dtype=np.float32).view(np.uint32)


# --------------------------------------------------------------------------- the rounding emulator
@pytest.mark.parametrize(("x", "nearest", "truncate"), [
    (0x3F800000, 0x3F800000, 0x3F800000),  # 1.0 is a TF32 number
    (0x3F801000, 0x3F800000, 0x3F800000),  # 1 + 2^-11: a tie, to the even 1.0
    (0x3F803000, 0x3F804000, 0x3F802000),  # 1 + 3*2^-11: a tie, to the even 1 + 2^-9
    (0x3F801001, 0x3F802000, 0x3F800000),  # just above the tie: up
    (0x3F800FFF, 0x3F800000, 0x3F800000),  # just below the tie: down
    (0xBF801001, 0xBF802000, 0xBF800000),  # negative: symmetric (magnitude rounded)
    (0x3FFFF000, 0x40000000, 0x3FFFE000),  # a tie at the top of a binade carries into the exponent
    (0x7F7FFFFF, 0x7F800000, 0x7F7FE000),  # float32 max is past TF32's largest: inf (to nearest)
    (0x00001FFF, 0x00002000, 0x00000000),  # subnormals round like the rest
    (0x00000000, 0x00000000, 0x00000000),
    (0x80000000, 0x80000000, 0x80000000),  # -0 keeps its sign
    (0x7F800000, 0x7F800000, 0x7F800000),  # inf
    (0xFF800000, 0xFF800000, 0xFF800000),  # -inf
])
def test_round_tf32_on_known_bit_patterns(x, nearest, truncate):
    assert bits(round_tf32(f32([x])))[0] == nearest, hex(bits(round_tf32(f32([x])))[0])
    assert bits(round_tf32(f32([x]), mode="truncate"))[0] == truncate


def test_round_tf32_keeps_nans_and_shapes_and_refuses_other_dtypes():
    nan = f32([0x7F800001, 0x7FC00000, 0xFFFFFFFF])  # a NaN whose payload rounding would make inf
    assert np.isnan(round_tf32(nan)).all() and np.isnan(round_tf32(nan, "truncate")).all()
    a = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)[:, ::2]  # a strided view
    r = round_tf32(a)
    assert r.shape == a.shape and r.dtype == np.float32
    assert np.all(bits(r) & 0x1FFF == 0)  # 10 mantissa bits left
    assert np.max(np.abs(r - a) / np.abs(a)) <= 2.0**-11  # half a TF32 ulp, relative
    with pytest.raises(TypeError, match="float32"):
        round_tf32(a.astype(np.float64))
    with pytest.raises(ValueError, match="mode"):
        round_tf32(a, mode="up")


def test_matmul_tf32_rounds_inputs_and_sums_in_float32():
    a = np.full((3, 4), 1 + 2.0**-12, np.float32)  # TF32 reads 1.0
    b = np.ones((4, 2), np.float32)
    np.testing.assert_array_equal(matmul_tf32(a, b), np.full((3, 2), 4.0, np.float32))
    np.testing.assert_array_equal(a @ b, np.full((3, 2), 4 * (1 + 2.0**-12), np.float32))


# --------------------------------------------------------------------------- validation at the boundary
def _tiny():
    from fastlift import layers as L

    rng = np.random.default_rng(0)
    x = L.Input((6, 4), name="seq")
    h = L.Activation("relu")(L.Conv1D(rng.normal(size=(3, 4, 5)), rng.normal(size=5), padding="same")(x))
    y = L.Dense(rng.normal(size=(30, 2)))(L.Flatten()(h))
    return fl.Model(x, y), np.eye(4)[rng.integers(0, 4, (3, 6))]


@pytest.mark.parametrize("device", ["cpu", "numpy"])
def test_tf32_on_a_host_device_is_a_clear_error(device):
    model, x = _tiny()
    for call in (lambda: fl.Explainer(model, device=device, precision="tf32"),
                 lambda: fl.deeplift(model, x, device=device, precision="tf32"),
                 lambda: fl.attribute(model, x, method="gradient", device=device, precision="tf32")):
        with pytest.raises(ValueError, match=rf"precision='tf32'.*needs device='cuda'.*device='{device}'"):
            call()
    with pytest.raises(ValueError, match="precision='tf32'"):
        get_ops(device, precision="tf32")


@pytest.mark.skipif(GPU_OK, reason="this machine has a usable GPU")
def test_tf32_with_auto_and_no_gpu_names_the_reason():
    model, _ = _tiny()
    with pytest.raises(ValueError, match=r"precision='tf32'.*device='auto' found no usable GPU \(device='cuda' "):
        fl.Explainer(model, device="auto", precision="tf32")


def test_tf32_with_float64_and_unknown_precisions_are_clear_errors():
    model, x = _tiny()
    with pytest.raises(ValueError, match=r"precision='tf32'.*dtype='float64'"):
        fl.deeplift(model, x, device="cuda", dtype="float64", precision="tf32")  # before any GPU is looked for
    for bad in ("fp16", "TF32", None, 32):
        with pytest.raises(ValueError, match=r"precision must be 'float32' or 'tf32'; got"):
            fl.Explainer(model, device="cpu", precision=bad)
        with pytest.raises(ValueError, match="precision must be"):
            get_ops("cpu", precision=bad)


def test_backends_refuse_a_precision_they_do_not_offer():
    from fastlift.backends.cpu_ops import CpuOps
    from fastlift.backends.cupy_ops import CupyOps

    assert Ops.precisions == CpuOps.precisions == frozenset({"float32"})
    assert CupyOps.precisions == frozenset({"float32", "tf32"})
    for cls in (Ops, CpuOps):
        with pytest.raises(ValueError, match=r"precision must be one of \['float32'\] on the"):
            cls(precision="tf32")
    assert Ops().precision == "float32"


def test_float32_precision_is_the_default_and_changes_nothing():
    model, x = _tiny()
    a = fl.deeplift(model, x, device="cpu")
    b = fl.deeplift(model, x, device="cpu", precision="float32")
    c = fl.attribute(model, x, method="deeplift", device="cpu", precision="float32")
    np.testing.assert_array_equal(a.contributions, b.contributions)
    np.testing.assert_array_equal(a.contributions, c.contributions)
    assert fl.Explainer(model, device="cpu").precision == "float32"


# --------------------------------------------------------------------------- on the emulated device
@pytest.fixture(scope="module")
def emu_modules():
    from cuda_emu.device import build_all

    return build_all()


@pytest.fixture
def emu_gpu(monkeypatch, emu_modules):
    """The real get_ops("cuda") path, with the host emulator standing in for CuPy's device."""
    from cuda_emu.device import EmuDevice

    made = []

    def device():
        made.append(EmuDevice(modules=emu_modules))
        return made[-1]

    monkeypatch.setattr(_cuda, "gpu_status", lambda: (True, "1 CUDA device(s)"))
    monkeypatch.setattr(_cuda, "CupyDevice", device)
    fake_cupy.GEMM_LOG.clear()
    return made


@needs_emulator
def test_cupy_ops_runs_its_gemms_in_its_precision(emu_gpu):
    a = np.full((5, 4), 1 + 2.0**-12, np.float32)
    b = np.ones((4, 3), np.float32)
    for precision, want in (("tf32", 4.0), ("float32", 4 * (1 + 2.0**-12))):
        ops = get_ops("cuda", precision=precision)
        assert type(ops).__name__ == "CupyOps" and ops.precision == precision
        with ops.compute_context():
            got = ops.to_numpy(ops.matmul(ops.asarray(a, np.float32), ops.asarray(b, np.float32)))
        np.testing.assert_array_equal(got, np.full((5, 3), want, np.float32))
        # outside a run the device's own setting applies again (CuPy's is per process)
        assert fake_cupy.GEMM_COMPUTE["float32"] == "fp32"
    f64 = get_ops("cuda", precision="tf32")
    with f64.compute_context():
        got = f64.to_numpy(f64.matmul(f64.asarray(a, np.float64), f64.asarray(b, np.float64)))
    np.testing.assert_array_equal(got, a.astype(np.float64) @ b)  # float64 GEMMs are never TF32


@needs_emulator
def test_tf32_needs_an_ampere_or_newer_gpu(monkeypatch, emu_modules):
    from cuda_emu.device import EmuDevice

    monkeypatch.setattr(_cuda, "gpu_status", lambda: (True, "1 CUDA device(s)"))
    monkeypatch.setattr(_cuda, "CupyDevice", lambda: EmuDevice(modules=emu_modules, compute_capability=75))
    with pytest.raises(ValueError, match=r"compute capability 8\.0 \(Ampere\) or newer; this one is 7\.5"):
        fl.Explainer(_tiny()[0], device="cuda", precision="tf32")
    assert get_ops("cuda").precision == "float32"  # float32 runs on any GPU


@needs_emulator
def test_deeplift_with_tf32_on_the_emulated_gpu(emu_gpu, monkeypatch):
    """fl.deeplift(device="cuda", precision="tf32") runs every GEMM as TF32: its scores equal the
    numpy reference with TF32 GEMMs up to float32 summation order, and differ from FP32's by the
    rounding of the inputs (about 2^-11 relative), far more than that order does."""
    rng = np.random.default_rng(4)
    model, make_x = ZOO["genomics_1d"](rng)
    x = make_x(rng, 4)
    refs = make_x(rng, 8).reshape(4, 2, 24, 4)
    kw = {"hypothetical": True, "batch_size": 3}
    tf32 = fl.deeplift(model, x, refs, device="cuda", precision="tf32", **kw)
    assert fake_cupy.GEMM_LOG and set(fake_cupy.GEMM_LOG) == {"tf32"}
    fake_cupy.GEMM_LOG.clear()
    fp32 = fl.deeplift(model, x, refs, device="cuda", **kw)
    assert set(fake_cupy.GEMM_LOG) == {"fp32"}

    monkeypatch.setattr("fastlift.explainer.get_ops", lambda device, n_threads=None, precision="float32":
                        reference_ops(n_threads, precision))
    want = fl.deeplift(model, x, refs, device="cuda", precision="tf32", **kw)
    scale = np.abs(want.hypothetical).max()
    emulated_error = np.abs(tf32.hypothetical - want.hypothetical).max() / scale
    tf32_effect = np.abs(tf32.hypothetical - fp32.hypothetical).max() / scale
    assert emulated_error < 1e-5
    assert 1e-5 < tf32_effect < 1e-2
    np.testing.assert_allclose(tf32.deltas, want.deltas, atol=1e-5 * scale)


@needs_emulator
def test_explainer_keeps_its_precision_for_every_call(emu_gpu):
    model, x = _tiny()
    with fl.Explainer(model, device="cuda", precision="tf32") as ex:
        assert "tf32" in repr(ex) and ex.ops.precision == "tf32"
        ex.predict(x)
        ex.attribute(x, method="gradient")
        ex.deeplift(x)
    assert fake_cupy.GEMM_LOG and set(fake_cupy.GEMM_LOG) == {"tf32"}


# --------------------------------------------------------------------------- scans record it
@pytest.fixture(scope="module")
def scan_model():
    """One model for every scan of a file: resume compares its fingerprint, layer names included."""
    return _tiny()[0]


def _scan(model, tmp_path, name, **kw):
    from fastlift import scan as S
    from fastlift.io import scores as io_scores

    X = np.eye(4, dtype=np.float32)[np.random.default_rng(5).integers(0, 4, (6, 6))]
    res = S.scan(model, S.ArraySource(X), str(tmp_path / name), references="dinuc:2", target=0, **kw)
    return io_scores.read_header(res.paths[0])["params"]


def test_a_scan_records_its_precision(tmp_path, scan_model):
    assert _scan(scan_model, tmp_path, "cpu.h5", device="cpu")["precision"] == "float32"
    with pytest.raises(ValueError, match="precision='tf32'.*needs device='cuda'"):
        _scan(scan_model, tmp_path, "refused.h5", device="cpu", precision="tf32")
    assert not (tmp_path / "refused.h5").exists()  # refused before any file is touched


@needs_emulator
def test_a_tf32_scan_runs_tf32_and_resume_refuses_another_precision(tmp_path, emu_gpu, scan_model):
    from fastlift.scan import ScanError

    assert _scan(scan_model, tmp_path, "tf32.h5", device="cuda", precision="tf32")["precision"] == "tf32"
    assert fake_cupy.GEMM_LOG and set(fake_cupy.GEMM_LOG) == {"tf32"}
    with pytest.raises(ScanError, match=r"precision: file has 'tf32', this run 'float32'"):
        _scan(scan_model, tmp_path, "tf32.h5", device="cuda", resume=True)
    assert _scan(scan_model, tmp_path, "tf32.h5", device="cuda", precision="tf32", resume=True)["precision"] == "tf32"
