"""fastlift against the PyTorch peers, side by side: same models, inputs, references, threads, one run.

    pip install -r bench/requirements.txt      # peers: torch (CPU), captum, tangermeme, shap
    python bench/compare_peers.py --threads 1 --json bench/results/threads1.json
    python bench/compare_peers.py --smoke      # seconds; fastlift only when the peers are absent

For each model (bench/models.py: BPNet-like, Basset-like, MLP) it checks that fastlift's
forward equals PyTorch's and that attributions agree where the methods coincide
(Rescale without max pooling; gradients; integrated gradients with the midpoint rule),
then times, on the same inputs and references:

* deeplift_10refs  — 10 references per example: fastlift vs tangermeme deep_lift_shap and
                     Captum DeepLiftShap (one call per example); for the MLP, 10 background
                     rows shared by all examples (Captum batched);
* shap_10refs      — SHAP DeepExplainer with the same 10 references (one explainer per
                     example for sequence models);
* deeplift_zero    — zero reference: fastlift vs Captum DeepLift;
* ig_50            — integrated gradients, 50 midpoint steps, zero baseline: vs Captum;
* gradient         — vs PyTorch autograd.

It prints examples/s, the ratio fastlift/peer, peak RSS per measurement, the float32 GEMM
rate measured in the same run (with the BLAS kernel threadpoolctl reports), and fastlift's
achieved GEMM FLOP rate as a fraction of it. Results also go to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import basset_spec, bpnet_spec, build_fastlift, flops_per_forward, mlp_spec  # noqa: E402

import fastlift as fl  # noqa: E402

try:  # the peers are benchmark-only dependencies
    import torch

    from torch_models import build_torch, to_torch_layout
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

N_REFS = 10


# ----------------------------------------------------------------- measuring
class PeakRSS:
    """Peak resident memory during a block, sampled every 2 ms from /proc/self/statm.

    (Resetting VmHWM through /proc/self/clear_refs is not supported on every kernel, and
    tracemalloc does not see PyTorch's or BLAS's allocations.)
    """

    def __init__(self):
        self.peak_mb = float("nan")

    @staticmethod
    def _rss_mb():
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError):
            return float("nan")

    def __enter__(self):
        import threading

        self._stop = threading.Event()
        self.peak_mb = self._rss_mb()

        def sample():
            while not self._stop.wait(0.002):
                self.peak_mb = max(self.peak_mb, self._rss_mb())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._rss_mb())


def measure(fn, pool_size, seconds):
    """examples/s of ``fn(n)``: calibrate n on a small run, then time ~``seconds`` of calls of n
    examples (at least one; no call that would end past the budget). A fast method whose n is
    capped by the pool (the MLP: 256 examples in ~5 ms) is timed over many calls, not one."""
    n = 1
    t0 = time.perf_counter()
    fn(n)
    dt = time.perf_counter() - t0
    n = int(max(1, min(pool_size, seconds / max(dt, 1e-6))))
    calls = 0
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        elapsed = last = 0.0
        while calls == 0 or elapsed + last <= seconds:
            fn(n)
            calls += 1
            now = time.perf_counter() - t0
            elapsed, last = now, now - elapsed
    return {"n": n, "calls": calls, "seconds": elapsed, "examples_per_s": n * calls / elapsed,
            "peak_rss_mb": mem.peak_mb}


def gemm_peak(threads, n=2048, repeats=5):
    from threadpoolctl import threadpool_info, threadpool_limits

    a = np.random.default_rng(0).normal(size=(n, n)).astype(np.float32)
    with threadpool_limits(threads, user_api="blas"):
        a @ a
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ a
            best = min(best, time.perf_counter() - t0)
    kernels = sorted({f"{i.get('internal_api')}:{i.get('architecture')}" for i in threadpool_info()
                      if i.get("user_api") == "blas"})
    return {"gflops": 2 * n**3 / best / 1e9, "blas_kernels": kernels,
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}


# ---------------------------------------------------------------------- data
def make_data(spec, pool, seed):
    rng = np.random.default_rng(seed)
    shape = spec["input_shape"]
    if len(shape) == 1:  # MLP: dense inputs, 10 background rows shared by every example
        X = rng.normal(size=(pool,) + shape).astype(np.float32)
        return X, rng.normal(size=(1, N_REFS) + shape).astype(np.float32), True
    X = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(pool, shape[0]))]
    if torch is not None:
        try:
            from tangermeme.ersatz import dinucleotide_shuffle

            refs = dinucleotide_shuffle(to_torch_layout(X), n=N_REFS, random_state=seed).numpy()
            return X, np.ascontiguousarray(np.swapaxes(refs, -1, -2)), False
        except ImportError:
            pass
    refs = np.stack([X[i][rng.permutation(shape[0])] for i in range(pool) for _ in range(N_REFS)])
    return X, refs.reshape((pool, N_REFS) + shape), False


class _Head(torch.nn.Module if torch is not None else object):
    """Output unit 0 only, so peers that explain every output (SHAP) do one target like the rest."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)[:, :1]


# ------------------------------------------------------------------- methods
def fastlift_methods(model, X, R, shared, threads):
    kw = {"n_threads": threads}
    refs = (lambda n: R) if shared else (lambda n: R[:n])
    return {
        "deeplift_10refs": lambda n: fl.deeplift(model, X[:n], refs(n), **kw),
        "shap_10refs": lambda n: fl.deeplift(model, X[:n], refs(n), **kw),
        "deeplift_zero": lambda n: fl.deeplift(model, X[:n], **kw),
        "ig_50": lambda n: fl.attribute(model, X[:n], "integrated_gradients", steps=50, **kw),
        "gradient": lambda n: fl.attribute(model, X[:n], "gradient", **kw),
    }


def peer_methods(tmodel, Xt, Rt, shared):
    from captum.attr import DeepLift, DeepLiftShap, IntegratedGradients

    out = {}
    head = _Head(tmodel).eval()

    def autograd(n):
        x = Xt[:n].clone().requires_grad_(True)
        tmodel(x)[:, 0].sum().backward()
        return x.grad

    out["gradient"] = {"torch autograd": autograd}
    out["deeplift_zero"] = {"captum DeepLift": lambda n: DeepLift(tmodel).attribute(
        Xt[:n], baselines=torch.zeros_like(Xt[:1]), target=0)}
    out["ig_50"] = {"captum IntegratedGradients": lambda n: IntegratedGradients(tmodel).attribute(
        Xt[:n], baselines=torch.zeros_like(Xt[:1]), target=0, n_steps=50, method="riemann_middle",
        internal_batch_size=100)}
    if shared:
        out["deeplift_10refs"] = {"captum DeepLiftShap": lambda n: DeepLiftShap(tmodel).attribute(
            Xt[:n], baselines=Rt[0], target=0)}
    else:
        from tangermeme.deep_lift_shap import deep_lift_shap

        out["deeplift_10refs"] = {
            "tangermeme deep_lift_shap": lambda n: deep_lift_shap(
                tmodel, Xt[:n], references=Rt[:n], target=0, batch_size=60, device="cpu",
                warning_threshold=1e9, verbose=False),
            "captum DeepLiftShap (per example)": lambda n: [DeepLiftShap(tmodel).attribute(
                Xt[i:i + 1], baselines=Rt[i], target=0) for i in range(n)],
        }
    import shap

    if shared:
        out["shap_10refs"] = {"shap DeepExplainer": lambda n: shap.DeepExplainer(head, Rt[0]).shap_values(
            Xt[:n], check_additivity=False)}
    else:
        out["shap_10refs"] = {"shap DeepExplainer (per example)": lambda n: [
            shap.DeepExplainer(head, Rt[i]).shap_values(Xt[i:i + 1], check_additivity=False) for i in range(n)]}
    return out


# ------------------------------------------------------------- agreement
def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def agreement(spec, model, tmodel, X, R, shared):
    """Relative max differences where the methods coincide (small n)."""
    from captum.attr import DeepLift, DeepLiftShap, IntegratedGradients

    n = 3
    seq = len(spec["input_shape"]) == 2
    back = (lambda t: np.swapaxes(t.detach().numpy(), -1, -2)) if seq else (lambda t: t.detach().numpy())
    Xt, Rt = to_torch_layout(X[:n], seq), to_torch_layout(R if shared else R[:n], seq)
    checks = {"forward": _rel(model.predict(X[:n]), tmodel(Xt).detach().numpy())}
    x = Xt.clone().requires_grad_(True)
    tmodel(x)[:, 0].sum().backward()
    checks["gradient"] = _rel(fl.attribute(model, X[:n], "gradient").contributions, back(x.grad))
    ig = IntegratedGradients(tmodel).attribute(Xt, baselines=torch.zeros_like(Xt[:1]), target=0, n_steps=50,
                                               method="riemann_middle")
    checks["ig_50"] = _rel(fl.attribute(model, X[:n], "integrated_gradients", steps=50).contributions, back(ig))
    if any(layer["kind"] == "maxpool" for layer in spec["layers"]):
        return checks  # Rescale through max pooling differs between tools by design (see README)
    checks["deeplift_zero vs captum"] = _rel(fl.deeplift(model, X[:n]).contributions,
                                            back(DeepLift(tmodel).attribute(Xt, baselines=torch.zeros_like(Xt[:1]),
                                                                            target=0)))
    ours = fl.deeplift(model, X[:n], R if shared else R[:n]).contributions
    if shared:
        theirs = DeepLiftShap(tmodel).attribute(Xt, baselines=Rt[0], target=0)
        checks["deeplift_10refs vs captum DeepLiftShap"] = _rel(ours, back(theirs))
    else:
        from tangermeme.deep_lift_shap import deep_lift_shap

        theirs = deep_lift_shap(tmodel, Xt, references=Rt, target=0, device="cpu", warning_threshold=1e9)
        # tangermeme returns contributions projected onto the present base: Σ_c contribution · x
        projected = ours.sum(axis=-1, keepdims=True) * X[:n]
        checks["deeplift_10refs vs tangermeme (projected)"] = _rel(projected, back(theirs))
        cap = torch.cat([DeepLiftShap(tmodel).attribute(Xt[i:i + 1], baselines=Rt[i], target=0) for i in range(n)])
        checks["deeplift_10refs vs captum DeepLiftShap"] = _rel(ours, back(cap))
    return checks


# ------------------------------------------------------------------------ main
def run_model(spec, threads, seconds, pool, seed, with_peers):
    model = build_fastlift(spec)
    X, R, shared = make_data(spec, pool, seed)
    F = flops_per_forward(spec)
    res = {"model": spec["name"], "mflop_per_forward": F / 1e6, "methods": {}}
    # forward rows + backward pairs per example, in forward-equivalents of GEMM work
    work = {"deeplift_10refs": (1 + 2 * N_REFS) if not shared else (1 + N_REFS),
            "shap_10refs": (1 + 2 * N_REFS) if not shared else (1 + N_REFS),
            "deeplift_zero": 2, "ig_50": 100, "gradient": 2}
    ours = fastlift_methods(model, X, R, shared, threads)
    peers = {}
    if with_peers:
        tmodel = build_torch(spec)
        res["agreement"] = agreement(spec, model, tmodel, X, R, shared)
        seq = len(spec["input_shape"]) == 2
        peers = peer_methods(tmodel, to_torch_layout(X, seq), to_torch_layout(R, seq), shared)
    for method, fn in ours.items():
        if method == "shap_10refs" and not with_peers:
            continue
        m = measure(fn, pool, seconds)
        m["gemm_gflops"] = work[method] * F * m["examples_per_s"] / 1e9
        row = {"fastlift": m, "peers": {}}
        for name, pfn in peers.get(method, {}).items():
            p = measure(pfn, pool, seconds)
            p["ratio"] = m["examples_per_s"] / p["examples_per_s"]
            row["peers"][name] = p
        res["methods"][method] = row
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description="fastlift vs PyTorch peers, side by side.")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=5.0, help="target duration of each timed run")
    p.add_argument("--pool", type=int, default=512, help="examples available to each measurement")
    p.add_argument("--models", default="bpnet_like,basset_like,mlp")
    p.add_argument("--smoke", action="store_true", help="tiny models and runs (CI); peers only if installed")
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if torch is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    specs = {"bpnet_like": lambda: bpnet_spec(rng, 200 if args.smoke else 1000),
             "basset_like": lambda: basset_spec(rng, 300 if args.smoke else 600),
             "mlp": lambda: mlp_spec(rng)}
    seconds, pool = (0.05, 8) if args.smoke else (args.seconds, args.pool)
    with_peers = torch is not None and not args.no_peers
    out = {"threads": args.threads, "gemm_peak": gemm_peak(args.threads, n=512 if args.smoke else 2048),
           "peers": with_peers, "models": []}
    peak = out["gemm_peak"]["gflops"]
    print(f"float32 GEMM peak: {peak:.1f} GFLOP/s at {args.threads} thread(s); BLAS {out['gemm_peak']['blas_kernels']}"
          f"; OPENBLAS_CORETYPE={out['gemm_peak']['OPENBLAS_CORETYPE']}")
    for name in args.models.split(","):
        res = run_model(specs[name](), args.threads, seconds, pool, args.seed, with_peers)
        out["models"].append(res)
        print(f"\n{name} ({res['mflop_per_forward']:.1f} MFLOP/forward)")
        if "agreement" in res:
            print("  agreement (max |diff| / max |value|): " +
                  ", ".join(f"{k} {v:.1e}" for k, v in res["agreement"].items()))
        print(f"  {'method':<17}{'tool':<36}{'ex/s':>10}{'ratio':>8}{'peak MB':>9}{'GEMM %':>8}")
        for method, row in res["methods"].items():
            m = row["fastlift"]
            print(f"  {method:<17}{'fastlift':<36}{m['examples_per_s']:>10.2f}{'':>8}{m['peak_rss_mb']:>9.0f}"
                  f"{100 * m['gemm_gflops'] / peak:>7.0f}%")
            for peer, pm in row["peers"].items():
                print(f"  {'':<17}{peer:<36}{pm['examples_per_s']:>10.2f}{pm['ratio']:>7.2f}x{pm['peak_rss_mb']:>9.0f}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
