"""The benchmark scripts run (seconds-long smoke versions; peers only if installed)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, tmp_path):
    out = tmp_path / "r.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, *args, "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_compare_peers_smoke(tmp_path):
    stdout, res = _run(["bench/compare_peers.py", "--smoke", "--no-peers", "--models", "bpnet_like,mlp"], tmp_path)
    assert res["gemm_peak"]["gflops"] > 0
    names = [m["model"] for m in res["models"]]
    assert names == ["bpnet_like", "mlp"]
    for m in res["models"]:
        for method in ("deeplift_10refs", "deeplift_zero", "ig_50", "gradient"):
            assert m["methods"][method]["fastlift"]["examples_per_s"] > 0
    assert "GEMM peak" in stdout


def test_throughput_smoke(tmp_path):
    stdout, res = _run(["bench/bench_throughput.py", "--quick"], tmp_path)
    assert set(res["models"]) == {"bpnet_like", "basset_like", "mlp"}


def test_scan_bench_smoke(tmp_path):
    stdout, res = _run(["bench/bench_scan.py", "--quick", "--no-dask"], tmp_path)
    for model in ("demo", "bpnet"):
        assert res[model]["engine"] > 0 and res[model]["scan"] > 0
    assert res["merge"]["merge regions"] == 100 and res["merge"]["merge bytes per region"] > 2114 * 4 * 2
    assert "x engine" in stdout and "merge of 4 shard files" in stdout


def test_conv_paths_bench_smoke(tmp_path):
    stdout, res = _run(["bench/bench_conv_paths.py", "--quick"], tmp_path)
    assert [(r["dilation"], r["kind"]) for r in res["layers"]] == [
        (2, "forward"), (2, "adjoint"), (256, "forward"), (256, "adjoint")]
    assert all(r["blas_gflops"] > 0 and r["direct_gflops"] > 0 and r["winograd_gflops"] > 0
               and r["winograd43_gflops"] > 0 for r in res["layers"])
    assert "CpuOps runs" in stdout
