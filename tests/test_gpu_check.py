"""bench/gpu_check.sh, the one-command GPU check, in its CPU dry run: every step is reached, the JSON
is complete and valid, GPU-only steps are skipped with the reason, per-step limits and the overall
budget hold; and the CUDA extras' metadata.

The check itself is for a GPU machine (bench/README.md, "GPU check"); here it runs at tiny sizes on
fastlift's CPU backend, so every line of bench/bench_gpu.py and the script's plumbing run in CI.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_check.sh"
STEPS = ["machine", "wheels", "build", "env", "pytest_gpu", "peak", "models", "chrombpnet", "scan", "agreement"]
BENCH_PARTS = ["peak", "models", "chrombpnet", "scan", "agreement"]
pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="gpu_check.sh needs bash and coreutils' timeout")


def _gpu_here():
    from fastlift.backends._cuda import gpu_status

    return gpu_status()[0]


def _run(args, tmp_path, python=sys.executable, timeout=240):
    env = dict(os.environ, PYTHON=str(python))
    env.pop("OUT", None)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _probe_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel, as the extra wheels carried to a GPU machine are."""
    folder.mkdir()
    path = folder / "fastlift_gpu_check_probe-0.1-py3-none-any.whl"
    dist = "fastlift_gpu_check_probe-0.1.dist-info"
    files = {"fastlift_gpu_check_probe.py": "VALUE = 42\n",
             f"{dist}/METADATA": "Metadata-Version: 2.1\nName: fastlift-gpu-check-probe\nVersion: 0.1\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{dist}/RECORD"] = "".join(f"{name},,\n" for name in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return folder


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    wheels = _probe_wheel(tmp / "wheels")
    proc = _run(["--dry-run", "--wheels", str(wheels), str(tmp / "out")], tmp)
    report = json.loads((tmp / "out" / "gpu_check.json").read_text())
    return proc, report, (tmp / "out" / "gpu_check.log").read_text()


def _steps(report):
    return {s["name"]: s for s in report["steps"]}


@pytest.mark.skipif(_gpu_here(), reason="the dry run's expectations are those of a machine without a GPU")
def test_dry_run_reaches_every_step_and_writes_a_complete_report(dry_run):
    proc, report, log = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [s["name"] for s in report["steps"]] == STEPS
    assert report["schema"] == 1 and report["dry_run"] is True and report["complete"] is True
    assert report["summary"]["failed"] == report["summary"]["timeout"] == 0
    assert report["seconds"] < report["budget_s"] == 470
    steps = _steps(report)
    for name, s in steps.items():
        assert s["status"] in ("ok", "skipped"), (name, s)
        if s["status"] == "skipped":
            assert s["reason"], f"{name} was skipped without a reason"
        assert f"=== {name}" in log
    # GPU-only steps: skipped with the reason
    if shutil.which("nvidia-smi") is None:
        assert "nvidia-smi" in steps["machine"]["reason"]
    gpu = steps["pytest_gpu"]
    assert gpu["status"] == "skipped" and "no GPU" in gpu["reason"] and "without --require-gpu" in gpu["reason"]
    assert gpu["result"]["tests"] > 0 and gpu["result"]["skipped"] == gpu["result"]["tests"]
    assert gpu["result"]["skip_reasons"] and all("no usable GPU" in r for r in gpu["result"]["skip_reasons"])
    # the extra wheels were installed without an index, and the later steps ran beside them
    assert steps["wheels"]["status"] == "ok"
    assert steps["wheels"]["result"]["installed"] == ["fastlift_gpu_check_probe-0.1"]
    assert steps["build"]["status"] == "ok" or "Cython" in steps["build"]["reason"]


@pytest.mark.skipif(_gpu_here(), reason="the dry run's expectations are those of a machine without a GPU")
def test_dry_run_benchmark_results_are_complete(dry_run):
    _, report, _ = dry_run
    steps = _steps(report)
    for part in BENCH_PARTS:
        res = steps[part]["result"]
        assert res["part"] == part and res["dry_run"] is True and res["device"] == "cpu", part
        assert steps[part]["reason"] == "dry run: on the CPU at tiny sizes"
    env = steps["env"]["result"]
    assert env["gpu_status"]["usable"] is False and env["gpu_status"]["reason"]
    assert set(env["extras"]) >= {"cuda12", "cuda13", "usable_extra"} or "skipped" in env["extras"]
    peak = steps["peak"]["result"]
    assert peak["sgemm_fp32"]["flops"] > 0 and "skipped" in peak["sgemm_tf32"]
    for part, names in (("models", ["bpnet_like", "basset_like"]), ("chrombpnet", ["chrombpnet_like"])):
        tables = steps[part]["result"]["models"]
        assert [t["model"] for t in tables] == names
        for t in tables:
            assert t["rows"]["fastlift"]["examples_per_s"] > 0
            assert 0 < t["rows"]["fastlift"]["share_of_fp32_peak"]
            assert "TF32" in t["rows"]["fastlift tf32"]["skipped"]
            for peer in ("tangermeme", "captum"):  # measured where installed, else skipped with the reason
                row = t["rows"][peer]
                assert row.get("examples_per_s", 0) > 0 or row.get("skipped"), (peer, row)
    scan = steps["scan"]["result"]
    assert scan["returncode"] == 0 and scan["regions"] == 40 and scan["regions_per_s_wall"] > 0
    assert scan["regions_per_s_scan"] > 0 and scan["command"].startswith("fastlift explain")
    assert "--device cpu" in scan["command"] and scan["gpu"].get("skipped") or scan["gpu"].get("samples") is not None
    agree = steps["agreement"]["result"]
    assert [m["model"] for m in agree["models"]] == ["bpnet_like", "basset_like", "chrombpnet_like"]
    for m in agree["models"]:
        assert m["float64"]["hypothetical"] < 1e-9 and m["float32"]["hypothetical"] < 1e-3, m
    (effect,) = agree["tf32_effect"]["models"]
    assert set(effect["variants"]) == {"tf32", "float16_storage", "float32_vs_float64"}
    assert 0 < effect["variants"]["tf32"]["hyp_rel_max"] < 0.1
    assert "skipped" in agree["tf32_rounding"]


def test_a_hung_step_times_out_and_the_next_steps_still_run(tmp_path):
    """--step-limit caps every step: a step that hangs is killed and recorded as a timeout, the
    steps after it still run, steps left out of --steps are skipped, and the exit status says so."""
    slow = tmp_path / "python"
    slow.write_text(f'#!/bin/sh\ncase "$*" in *"bench_gpu.py peak"*) sleep 60 ;; esac\nexec "{sys.executable}" "$@"\n')
    slow.chmod(0o755)
    proc = _run(["--dry-run", "--steps", "peak,chrombpnet", "--step-limit", "8", str(tmp_path / "out")], tmp_path,
                python=slow, timeout=120)
    assert proc.returncode == 1, proc.stdout[-2000:]
    steps = _steps(json.loads((tmp_path / "out" / "gpu_check.json").read_text()))
    assert steps["peak"]["status"] == "timeout" and steps["peak"]["limit_s"] == 8
    assert steps["peak"]["seconds"] < 30 and "killed after 8s" in steps["peak"]["reason"]
    assert steps["chrombpnet"]["status"] == "ok" and steps["chrombpnet"]["result"]["models"]
    for name in ("env", "pytest_gpu", "models", "scan", "agreement"):
        assert steps[name]["status"] == "skipped" and steps[name]["reason"] == "not in --steps"


def test_a_spent_budget_skips_the_remaining_steps(tmp_path):
    proc = _run(["--dry-run", "--steps", "env,peak", "--budget", "12", str(tmp_path / "out")], tmp_path)
    steps = _steps(json.loads((tmp_path / "out" / "gpu_check.json").read_text()))
    assert proc.returncode == 0
    for name in ("env", "peak"):
        assert steps[name]["status"] == "skipped" and "budget" in steps[name]["reason"], steps[name]


def test_out_env_wins_and_bad_arguments_are_refused(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path / "from_env"))
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--steps", "machine", str(tmp_path / "arg")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "from_env" / "gpu_check.json").exists() and not (tmp_path / "arg").exists()
    for args, message in ((["--budget", "8m"], "--budget and --step-limit take whole seconds; got 8m"),
                          (["--steps", "build,warp"], "unknown step warp"),
                          (["--wheels", str(tmp_path / "none")], "is not a folder"),
                          (["--frobnicate"], "unknown option --frobnicate")):
        proc = _run(args, tmp_path)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)


# --------------------------------------------------------------------------- the CUDA extras
def test_cuda_extras_name_one_cupy_wheel_of_their_major_with_its_toolkit():
    """pip cannot pick a CUDA major: cuda12 and cuda13 each install CuPy's wheel for their driver's
    major with NVRTC and cuBLAS ([ctk]), at the same CuPy version; the built metadata says the same."""
    tomllib = pytest.importorskip("tomllib")
    from importlib import metadata

    from packaging.requirements import Requirement

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    reqs = {}
    for major in ("12", "13"):
        (req,) = [Requirement(r) for r in extras[f"cuda{major}"]]
        assert req.name == f"cupy-cuda{major}x" and req.extras == {"ctk"} and req.marker is None
        reqs[major] = req
    assert reqs["12"].specifier == reqs["13"].specifier and str(reqs["13"].specifier).startswith(">=")
    assert not any("cupy" in r for name, rs in extras.items() if not name.startswith("cuda") for r in rs)
    try:
        built = metadata.requires("fastlift") or []
    except metadata.PackageNotFoundError:
        pytest.skip("fastlift is not installed (its metadata is built at install)")
    for major, req in reqs.items():
        assert any(Requirement(r).name == req.name and Requirement(r).extras == {"ctk"}
                   and Requirement(r).marker.evaluate({"extra": f"cuda{major}"}) for r in built), built


def test_the_check_reports_which_extra_the_installed_cupy_satisfies(monkeypatch):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import bench_gpu
    finally:
        sys.path.remove(str(ROOT / "bench"))
    versions = {"cupy-cuda13x": "14.2.0", "cuda-toolkit": "13.5.0"}
    monkeypatch.setattr(bench_gpu, "_version", versions.get)
    got = bench_gpu.check_extras()
    if "skipped" in got:
        pytest.skip(got["skipped"])
    assert got["cuda13"] == {"requirement": "cupy-cuda13x[ctk]>=14.2", "installed": "14.2.0", "satisfied": True}
    assert got["cuda12"]["installed"] is None and not got["cuda12"]["satisfied"]
    assert got["usable_extra"] == "cuda13" and got["cuda_toolkit"] == "13.5.0"
    versions["cupy-cuda13x"] = "13.6.0"  # older than the extra asks
    assert bench_gpu.check_extras()["usable_extra"] is None
