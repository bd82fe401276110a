"""Shared fixtures: backends, dtypes, random models, and the GPU switch.

``--require-gpu`` (or FASTLIFT_REQUIRE_GPU=1) turns the skips of ``gpu``-marked
tests into failures, so a GPU job cannot pass by skipping everything.
"""

import os

import numpy as np
import pytest


def pytest_addoption(parser):
    parser.addoption("--require-gpu", action="store_true", default=False,
                     help="fail (instead of skip) gpu-marked tests when no usable GPU is found")


def _gpu_status():
    try:
        import cupy
    except ImportError as e:
        return False, f"CuPy is not installed ({e})"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001 - CuPy raises CUDARuntimeError without a driver
        return False, f"{type(e).__name__}: {e}"
    return (n > 0), ("no CUDA device" if n == 0 else "")


def pytest_collection_modifyitems(config, items):
    require = config.getoption("--require-gpu") or os.environ.get("FASTLIFT_REQUIRE_GPU") == "1"
    ok, why = _gpu_status()
    if ok:
        return
    for item in items:
        if "gpu" in item.keywords:
            if require:
                item.add_marker(pytest.mark.usefixtures("_fail_without_gpu"))
            else:
                item.add_marker(pytest.mark.skip(reason=f"no usable GPU: {why}"))


@pytest.fixture
def _fail_without_gpu():
    ok, why = _gpu_status()
    pytest.fail(f"--require-gpu: no usable GPU: {why}")


def _cpu_available():
    try:
        from fastlift.backends import cpu_ops  # noqa: F401
    except ImportError as e:
        return False, str(e)
    return True, ""


CPU_OK, CPU_WHY = _cpu_available()
DEVICES = ["numpy", pytest.param("cpu", marks=pytest.mark.skipif(not CPU_OK, reason=f"no CPU extension: {CPU_WHY}"))]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
