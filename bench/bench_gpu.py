"""The GPU benchmark of ``bench/gpu_check.sh``, one part per process.

    python bench/bench_gpu.py env|peak|models|chrombpnet|scan|agreement [--dry-run] [--json FILE]

* ``env``: the machine (GPU, driver, CUDA, CuPy, PyTorch, the peers' versions) and whether the
  installed CuPy satisfies fastlift's ``cuda12`` / ``cuda13`` extra;
* ``peak``: cuBLAS SGEMM peak (FP32, and TF32 on Ampere or newer; PyTorch's FP32 SGEMM beside);
* ``models``: BPNet-like and Basset-like (bench/models.py), DeepLIFT with 10 dinucleotide-shuffled
  references per example: fastlift ``device="cuda"`` (one `Explainer`, as a scan keeps, float32
  and TF32) against tangermeme ``deep_lift_shap`` and Captum ``DeepLiftShap`` (one call per
  example) on the same GPU through PyTorch CUDA; examples/s and the share of the SGEMM peak
  measured in the same process;
* ``chrombpnet``: the same at ChromBPNet's size (2114 bp, 512 filters, 8 dilated residual
  layers) with 20 references;
* ``scan``: ``fastlift explain --device cuda`` over a few thousand regions of a generated genome
  (FASTA + narrowPeak, the host pipeline: reading, shuffling, HDF5 writing) with the BPNet-like
  model written as a Keras file; regions/s and GPU utilisation sampled through NVML (pynvml) or
  nvidia-smi;
* ``agreement``: CUDA against the CPU backend (float32 and float64) on a few examples of each
  model; TF32's real effect on the models of ``bench/tf32_error.py`` (the same examples, so its
  emulated figures compare directly); which rounding cuBLAS's TF32 inputs get.

The share of peak counts the nominal GEMM work fastlift needs per example, (1 + 2K) forward
passes' worth for K references (one forward per example and per reference, one backward per
pair), for every tool alike: it compares useful work, not what each tool executes.

``--dry-run`` runs the same code on the CPU at tiny sizes, so CI exercises it: fastlift's CPU
backend stands in for CUDA (and its numpy backend for the CPU in ``agreement``), PyTorch's CPU for
the peers' GPU and numpy's SGEMM for cuBLAS; what only a GPU has (cuBLAS TF32, NVML) is recorded as
skipped with the reason. Peers that are not installed are skipped with the reason too.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (HERE, os.path.join(ROOT, "tests"), os.path.join(ROOT, "scripts")):
    sys.path.insert(0, path)
import tf32_error  # noqa: E402
from compare_peers import _rel, gemm_peak  # noqa: E402
from models import basset_spec, bpnet_spec, build_fastlift, chrombpnet_spec, flops_per_forward  # noqa: E402

import fastlift as fl  # noqa: E402

PARTS = ("env", "peak", "models", "chrombpnet", "scan", "agreement")


class Setting:
    """Where each part runs: on the GPU, or (dry run) on the CPU at tiny sizes."""

    def __init__(self, dry_run: bool, seconds: float | None = None):
        self.dry_run = dry_run
        self.device = "cpu" if dry_run else "cuda"            # fastlift's device under test
        self.host_device = "numpy" if dry_run else "cpu"      # what `agreement` compares it with
        self.torch_device = "cpu" if dry_run else "cuda"
        self.seconds = seconds if seconds is not None else (0.05 if dry_run else 4.0)
        self._peak = None

    def tf32_reason(self) -> str:
        """Why precision="tf32" cannot be measured here ("" when it can)."""
        if self.dry_run:
            return "dry run: TF32 is a mode of cuBLAS on NVIDIA GPUs"
        from fastlift.backends._cuda import gpu_status

        ok, why = gpu_status()
        if not ok:
            return f"no usable GPU: {why}"
        cc = _cupy_device()["compute_capability"]
        if cc < 80:
            return f"compute capability {cc / 10:.1f}: TF32 needs 8.0 (Ampere) or newer"
        return ""

    def peak(self) -> dict:
        """The FP32 SGEMM peak, measured once per process."""
        if self._peak is None:
            self._peak = sgemm_peak(self)
        return self._peak


# --------------------------------------------------------------------------- helpers
def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _torch():
    """(torch, "") or (None, why)."""
    try:
        import torch
    except ImportError as e:
        return None, f"PyTorch is not installed ({e})"
    return torch, ""


def _peer(name: str):
    """"" when peer ``name`` ("captum" / "tangermeme") imports, else why not."""
    try:
        importlib.import_module("captum.attr" if name == "captum" else "tangermeme.deep_lift_shap")
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken install of a benchmark-only package
        return f"{name} is not usable ({type(e).__name__}: {e})"
    return ""


def _cupy_device() -> dict:
    import cupy

    dev = cupy.cuda.Device(0)
    props = cupy.cuda.runtime.getDeviceProperties(0)
    free, total = cupy.cuda.runtime.memGetInfo()
    return {"name": props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"]),
            "compute_capability": int(dev.compute_capability), "multiprocessors": int(props["multiProcessorCount"]),
            "memory_gib": total / 2**30, "free_gib": free / 2**30}


def _release_cupy_memory(setting):
    """Give CuPy's cached device memory back, so that PyTorch (the peers) finds it free."""
    if not setting.dry_run:
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()


def _sync(setting):
    torch, _ = _torch()
    if torch is not None and setting.torch_device == "cuda":
        torch.cuda.synchronize()


def timed(fn, n: int, seconds: float, sync=lambda: None) -> dict:
    """examples/s of ``fn()`` over ``n`` examples: one warm-up call (kernel compilation, cuBLAS and
    allocator set-up), then calls until ``seconds`` have passed (at least two)."""
    fn()
    sync()
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        sync()
        calls += 1
        elapsed = time.perf_counter() - t0
        if calls >= 2 and elapsed >= seconds:
            break
    return {"n": n, "calls": calls, "seconds": elapsed, "examples_per_s": n * calls / elapsed}


def guarded(fn):
    """``fn()``'s result, or {"error": ...}: one tool failing (out of memory, a peer's bug) leaves
    the other rows of the table."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - recorded, not raised: the other rows still count
        return {"error": f"{type(e).__name__}: {e}"[:2000]}


# --------------------------------------------------------------------------- env
def check_extras() -> dict:
    """fastlift's cuda12 / cuda13 extras (pyproject.toml) and whether the installed CuPy satisfies
    one of them, with the CUDA toolkit wheels of the same major."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return {"skipped": "tomllib needs Python 3.11"}
    from packaging.requirements import Requirement

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    out = {}
    for extra in ("cuda12", "cuda13"):
        (req,) = [Requirement(r) for r in extras[extra]]
        installed = _version(req.name)
        out[extra] = {"requirement": str(req), "installed": installed,
                      "satisfied": installed is not None and req.specifier.contains(installed, prereleases=True)}
    toolkit = _version("cuda-toolkit")
    out["cuda_toolkit"] = toolkit
    out["usable_extra"] = next((e for e in ("cuda13", "cuda12") if out[e]["satisfied"]), None)
    return out


def part_env(setting) -> dict:
    from fastlift.backends import _cuda

    ok, why = _cuda.gpu_status()
    out = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
           "numpy": np.__version__, "fastlift": fl.__file__, "gpu_status": {"usable": ok, "reason": why},
           "peers": {p: _version(p) for p in ("captum", "tangermeme", "torch")}, "extras": check_extras()}
    if ok:
        import cupy

        out["cupy"] = {"version": cupy.__version__, "runtime": cupy.cuda.runtime.runtimeGetVersion(),
                       "driver": cupy.cuda.runtime.driverGetVersion(), "nvrtc": cupy.cuda.nvrtc.getVersion(),
                       "device": _cupy_device()}
    torch, why_torch = _torch()
    out["torch"] = ({"version": torch.__version__, "cuda": torch.version.cuda, "cuda_available":
                     torch.cuda.is_available()} if torch is not None else {"skipped": why_torch})
    smi = shutil.which("nvidia-smi")
    if smi:
        r = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                            "--format=csv,noheader"], capture_output=True, text=True, check=False, timeout=20)
        out["nvidia_smi"] = r.stdout.strip() or r.stderr.strip()
    else:
        out["nvidia_smi"] = {"skipped": "nvidia-smi is not on PATH"}
    return out


# --------------------------------------------------------------------------- peak
def sgemm_peak(setting, tf32=False, n=8192, repeats=10) -> dict:
    """Best FP32 (or TF32) SGEMM rate of cuBLAS through CuPy, timed with CUDA events; the dry run
    measures numpy's SGEMM on one core instead."""
    if setting.dry_run:
        g = gemm_peak(1, n=256, repeats=3)
        return {"flops": g["gflops"] * 1e9, "n": 256, "backend": "numpy (dry run)"}
    import cupy
    from cupy._core import _routines_linalg as linalg

    rng = cupy.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    old = linalg.get_compute_type(np.float32)
    linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32 if tf32 else linalg.COMPUTE_TYPE_FP32)
    try:
        for _ in range(2):
            a @ b
        best = float("inf")
        for _ in range(repeats):
            start, stop = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            a @ b
            stop.record()
            stop.synchronize()
            best = min(best, cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    finally:
        linalg.set_compute_type(np.float32, old)
    return {"flops": 2.0 * n**3 / best, "n": n, "backend": "cuBLAS " + ("TF32" if tf32 else "FP32")}


def torch_sgemm_peak(n=8192, repeats=10) -> dict:
    torch, why = _torch()
    if torch is None or not torch.cuda.is_available():
        return {"skipped": why or "PyTorch has no CUDA device"}
    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        stop.record()
        stop.synchronize()
        best = min(best, start.elapsed_time(stop) / 1e3)
    return {"flops": 2.0 * n**3 / best, "n": n, "backend": "torch FP32"}


def part_peak(setting) -> dict:
    out = {"sgemm_fp32": setting.peak()}
    why = setting.tf32_reason()
    out["sgemm_tf32"] = {"skipped": why} if why else sgemm_peak(setting, tf32=True)
    out["torch_sgemm_fp32"] = {"skipped": "dry run"} if setting.dry_run else torch_sgemm_peak()
    return out


# --------------------------------------------------------------------------- models
def model_table(setting, spec, n_refs: int, n_call: int, peer_batch: int) -> dict:
    """One model: examples/s of every tool on the same inputs and references, the share of the
    SGEMM peak, and agreement between the tools on two examples."""
    model = build_fastlift(spec)
    flops = flops_per_forward(spec)
    rng = np.random.default_rng(0)
    X = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(n_call, spec["input_shape"][0]))]
    R = fl.dinuc_shuffle(X, n_refs, seed=0)  # (n, K, L, 4): every tool gets these references
    work = (1 + 2 * n_refs) * flops  # nominal GEMM FLOPs per example (module docstring)
    peak = setting.peak()["flops"]
    out = {"model": spec["name"], "length": spec["input_shape"][0], "n_refs": n_refs, "gflop_per_forward": flops / 1e9,
           "nominal_gflop_per_example": work / 1e9, "sgemm_peak_tflops": peak / 1e12, "rows": {}, "agreement": {}}
    results = {}

    def fastlift_row(precision):
        def run():
            try:
                with fl.Explainer(model, device=setting.device, precision=precision) as ex:
                    results[precision] = ex.deeplift(X[:2], R[:2]).contributions
                    return timed(lambda: ex.deeplift(X, R), n_call, setting.seconds)
            finally:
                _release_cupy_memory(setting)
        return run

    out["rows"]["fastlift"] = guarded(fastlift_row("float32"))
    why = setting.tf32_reason()
    out["rows"]["fastlift tf32"] = {"skipped": why} if why else guarded(fastlift_row("tf32"))
    why_torch = _torch()[1]
    for peer in ("tangermeme", "captum"):
        why_peer = why_torch or _peer(peer)
        out["rows"][peer] = {"skipped": why_peer} if why_peer else guarded(
            lambda peer=peer: _peer_row(setting, peer, spec, X, R, peer_batch, results))
    for row in out["rows"].values():
        if "examples_per_s" in row:
            row["share_of_fp32_peak"] = work * row["examples_per_s"] / peak
    _agreements(out["agreement"], results)
    return out


def _peer_row(setting, peer, spec, X, R, batch, results):
    """Time one peer on the GPU through PyTorch (the same model weights, inputs and references)."""
    import torch
    from torch_models import build_torch, to_torch_layout

    dev = setting.torch_device
    tmodel = build_torch(spec).to(dev)
    Xt, Rt = to_torch_layout(X).to(dev), to_torch_layout(R).to(dev)
    back = lambda t: np.swapaxes(t.detach().cpu().numpy(), -1, -2)  # noqa: E731 - (N, 4, L) -> (N, L, 4)
    if peer == "tangermeme":
        from tangermeme.deep_lift_shap import deep_lift_shap

        def run(n):
            return deep_lift_shap(tmodel, Xt[:n], references=Rt[:n], target=0, batch_size=batch, device=dev,
                                  warning_threshold=1e9, verbose=False)
        # tangermeme returns contributions projected onto the present base: Σ_c contribution · x
        project = lambda ours: ours.sum(axis=-1, keepdims=True) * X[:2]  # noqa: E731
    else:
        from captum.attr import DeepLiftShap

        def run(n):
            return torch.cat([DeepLiftShap(tmodel).attribute(Xt[i:i + 1], baselines=Rt[i], target=0)
                              for i in range(n)])
        project = None
    if not any(layer["kind"] == "maxpool" for layer in spec["layers"]):  # Rescale through max pooling differs
        results[peer] = (back(run(2)), project)
    return timed(lambda: run(len(X)), len(X), setting.seconds, lambda: _sync(setting))


def _agreements(out, results):
    """Max relative differences of the peers' contributions from fastlift's (float32)."""
    ours = results.get("float32")
    if ours is None:
        return
    for name, value in results.items():
        if name == "float32":
            continue
        if isinstance(value, tuple):
            theirs, project = value
            out[f"fastlift vs {name}"] = _rel(project(ours) if project else ours, theirs)
        else:
            out[f"fastlift vs fastlift {name}"] = _rel(ours, value)


def part_models(setting, which=("bpnet_like", "basset_like")) -> dict:
    rng = np.random.default_rng(0)
    tiny = setting.dry_run
    specs = {"bpnet_like": lambda: bpnet_spec(rng, 64 if tiny else 1000),
             "basset_like": lambda: basset_spec(rng, 200 if tiny else 600)}
    n_refs, n_call = (2, 2) if tiny else (10, 64)
    return {"models": [model_table(setting, specs[name](), n_refs, n_call, 4 if tiny else 320) for name in which]}


def part_chrombpnet(setting) -> dict:
    rng = np.random.default_rng(0)
    spec = chrombpnet_spec(rng, 64, 8, 2) if setting.dry_run else chrombpnet_spec(rng)
    return {"models": [model_table(setting, spec, 2 if setting.dry_run else 20, 2 if setting.dry_run else 8,
                                   4 if setting.dry_run else 80)]}


# --------------------------------------------------------------------------- scan
class GpuSampler:
    """GPU utilisation and memory in use while a block runs, sampled every ``interval`` s through
    NVML (pynvml), else ``nvidia-smi``; `result` says why not when neither is there."""

    def __init__(self, interval=0.1):
        self.interval, self.samples, self.source, self.why = interval, [], None, ""

    def __enter__(self):
        self._stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.source = "nvml"

            def read():
                return (pynvml.nvmlDeviceGetUtilizationRates(handle).gpu,
                        pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20)
        except Exception as e:  # noqa: BLE001 - no pynvml, or no driver
            self.why = f"NVML: {type(e).__name__}: {e}"
            smi = shutil.which("nvidia-smi")
            if smi is None:
                self.why += "; nvidia-smi is not on PATH"
                return self

            self.source = "nvidia-smi"

            def read():
                r = subprocess.run([smi, "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                                    "-i", "0"], capture_output=True, text=True, check=True, timeout=10)
                util, mem = r.stdout.split(",")[:2]
                return float(util), float(mem)

        def loop():
            while not self._stop.wait(self.interval):
                with contextlib.suppress(Exception):
                    self.samples.append(read())

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.source is not None:
            self._thread.join()

    def result(self) -> dict:
        if self.source is None:
            return {"skipped": self.why}
        if not self.samples:
            return {"source": self.source, "samples": 0}
        util = [u for u, _ in self.samples]
        return {"source": self.source, "samples": len(util), "util_mean": statistics.fmean(util),
                "util_median": statistics.median(util), "util_p90": sorted(util)[int(0.9 * (len(util) - 1))],
                "busy_share": sum(u > 0 for u in util) / len(util), "memory_max_mib": max(m for _, m in self.samples)}


def write_keras(spec, path):
    """The model of ``spec`` as a Keras 2 .h5 file (the CLI reads model files), through the test
    fixtures' h5py writer."""
    from fixtures.k224_writer import layer, write_functional

    layers, prev = [], "input"
    for i, spec_layer in enumerate(spec["layers"]):
        kind = spec_layer["kind"]
        if kind == "conv":
            layers.append(layer("Conv1D", f"conv{i}", [spec_layer["kernel"], spec_layer["bias"]], inbound=[prev],
                                padding=spec_layer["padding"], dilation_rate=[spec_layer["dilation"]],
                                activation="relu" if spec_layer["relu"] else "linear"))
            if spec_layer.get("residual"):
                layers.append(layer("Add", f"res{i}", inbound=[prev, f"conv{i}"]))
            prev = layers[-1]["config"]["name"]
        elif kind == "gap":
            layers.append(layer("GlobalAveragePooling1D", f"gap{i}", inbound=[prev]))
            prev = f"gap{i}"
        elif kind == "dense":
            layers.append(layer("Dense", f"dense{i}", [spec_layer["kernel"], spec_layer["bias"]], inbound=[prev],
                                activation="relu" if spec_layer["relu"] else "linear"))
            prev = f"dense{i}"
        else:
            raise ValueError(f"write_keras: layer kind {kind!r} is not written")
    write_functional(path, {"input": spec["input_shape"]}, layers, [prev])


def part_scan(setting, n_regions=None, width=None) -> dict:
    from scan_generated_genome import write_genome

    n_regions = n_regions or (40 if setting.dry_run else 3000)
    width = width or (100 if setting.dry_run else 1000)
    refs = "dinuc:2" if setting.dry_run else "dinuc:10"
    spec = bpnet_spec(np.random.default_rng(0), width)
    with tempfile.TemporaryDirectory(prefix="fastlift_gpu_scan_") as work:
        fasta, bed, _ = write_genome(work, 0.05 if setting.dry_run else 4.0, n_regions, width, seed=1)
        model_path = os.path.join(work, "bpnet_like.h5")
        write_keras(spec, model_path)
        out = os.path.join(work, "scores.h5")
        cmd = [sys.executable, "-m", "fastlift.cli", "explain", model_path, "--fasta", fasta, "--bed", bed,
               "--width", str(width), "--refs", refs, "--skip-invalid", "--device", setting.device, "--out", out,
               "--quiet"]
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with GpuSampler() as sampler:
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            wall = time.perf_counter() - t0
        result = {"command": " ".join(["fastlift", *cmd[3:]]).replace(work, "$TMP"), "returncode": proc.returncode,
                  "model": spec["name"], "width": width, "refs": refs, "wall_seconds": wall,
                  "gpu": sampler.result()}
        if proc.returncode != 0:
            result["error"] = (proc.stderr or proc.stdout)[-3000:]
            return result
        from fastlift.io import scores as io_scores

        result["regions"] = io_scores.read_header(out)["n_regions"]
        result["regions_per_s_wall"] = result["regions"] / wall  # process start and model load included
        m = re.search(r"scored now: (\d+) in ([\d.]+) s, ([\d.]+) regions/s", proc.stdout)
        if m:
            result["regions_per_s_scan"] = float(m.group(3))
        result["stdout"] = proc.stdout[-1500:]
    return result


# --------------------------------------------------------------------------- agreement
def _per_example_rel(a, b):
    """max over examples of max |a - b| / max |b| within the example."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n = b.shape[0]
    scale = np.abs(b).reshape(n, -1).max(axis=1)
    return float((np.abs(a - b).reshape(n, -1).max(axis=1) / np.where(scale > 0, scale, 1.0)).max())


def part_agreement(setting) -> dict:
    rng = np.random.default_rng(0)
    tiny = setting.dry_run
    specs = [bpnet_spec(rng, 64 if tiny else 1000), basset_spec(rng, 200 if tiny else 600),
             chrombpnet_spec(rng, 64, 8, 2) if tiny else chrombpnet_spec(rng)]
    n, k = (2, 2) if tiny else (3, 4)
    out = {"device": setting.device, "against": setting.host_device, "models": []}
    for spec in specs:
        model = build_fastlift(spec)
        X = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(n, spec["input_shape"][0]))]
        R = fl.dinuc_shuffle(X, k, seed=0)
        row = {"model": spec["name"]}
        for dtype in ("float32", "float64"):
            kw = {"hypothetical": True, "dtype": dtype}
            got = fl.deeplift(model, X, R, device=setting.device, **kw)
            want = fl.deeplift(model, X, R, device=setting.host_device, **kw)
            row[dtype] = {"hypothetical": _per_example_rel(got.hypothetical, want.hypothetical),
                          "contributions": _per_example_rel(got.contributions, want.contributions),
                          "deltas_max_abs": float(np.abs(got.deltas).max()),
                          "host_deltas_max_abs": float(np.abs(want.deltas).max())}
        out["models"].append(row)
    why = setting.tf32_reason()
    if tiny:  # the same code with the emulated GEMMs, on one tiny model
        out["tf32_effect"] = {"measured_on": "emulated TF32 GEMMs (dry run)", "models": [
            tf32_error.measure_model(tf32_error.specs(0, smoke=True)["bpnet_like"](), 2, 2, truncate=False)]}
    elif why:
        out["tf32_effect"] = {"skipped": why}
    else:
        def gpu_run(model, X, refs, precision="float32", mode="nearest", dtype="float32"):
            return fl.deeplift(model, X, refs, hypothetical=True, device="cuda", precision=precision, dtype=dtype)

        out["tf32_effect"] = {"measured_on": "cuBLAS", "models": [
            tf32_error.measure_model(s(), 16, 10, runner=gpu_run, truncate=False)
            for s in tf32_error.specs(0).values()]}
    out["tf32_rounding"] = {"skipped": why} if why else tf32_rounding_probe()
    return out


def tf32_rounding_probe(n=512) -> dict:
    """How cuBLAS's TF32 GEMM rounds its inputs: its result against the emulated GEMM with inputs
    rounded to nearest and with inputs truncated (relative max differences; the mode it follows
    differs from it by FP32 summation order only, ~1e-6)."""
    import cupy
    from cuda_emu.tf32 import round_tf32
    from cupy._core import _routines_linalg as linalg

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    old = linalg.get_compute_type(np.float32)
    linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32)
    try:
        got = cupy.asnumpy(cupy.asarray(a) @ cupy.asarray(b)).astype(np.float64)
    finally:
        linalg.set_compute_type(np.float32, old)
    out = {}
    for mode in ("nearest", "truncate"):
        want = round_tf32(a, mode).astype(np.float64) @ round_tf32(b, mode).astype(np.float64)
        out[mode] = _rel(got, want)
    out["fp32"] = _rel(got, a.astype(np.float64) @ b.astype(np.float64))
    out["follows"] = min(("nearest", "truncate"), key=out.get)
    return out


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="fastlift on a GPU against its peers; one part per call.")
    p.add_argument("part", choices=PARTS)
    p.add_argument("--dry-run", action="store_true", help="on the CPU at tiny sizes (CI)")
    p.add_argument("--seconds", type=float, default=None, help="timed seconds per tool (default 4; dry run 0.05)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    setting = Setting(args.dry_run, args.seconds)
    t0 = time.perf_counter()
    result = {"part": args.part, "dry_run": args.dry_run, "device": setting.device,
              **{"env": part_env, "peak": part_peak, "models": part_models, "chrombpnet": part_chrombpnet,
                 "scan": part_scan, "agreement": part_agreement}[args.part](setting)}
    result["seconds"] = time.perf_counter() - t0
    text = json.dumps(result, indent=2, default=str)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
