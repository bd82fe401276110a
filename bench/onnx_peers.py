"""One PyTorch model, three DeepLIFT implementations: fastlift (through ONNX), tangermeme and Captum.

    pip install torch==2.13.0 && pip install -r bench/requirements.txt bpnet-lite onnx onnxscript
    pip install -e .
    python bench/onnx_peers.py --threads 1 --json bench/results/onnx_peers.json
    python bench/onnx_peers.py --smoke          # seconds: a tiny BPNet, agreement only

The model is bpnet-lite's BPNet (64 filters, 8 dilated residual layers, 2114 bp in, 1000 out; no
max pooling, so DeepLIFT-Rescale is one well-defined rule in all three tools), randomly
initialised and seeded. fastlift loads it with ``fastlift.torch.to_fastlift`` (ONNX in memory);
the peers run on the torch module itself. The attribution target is the counts head.

Agreement (relative max difference, on the same inputs and references):

* vs Captum ``DeepLift`` (Rescale) with one reference per example: contributions;
* vs tangermeme ``deep_lift_shap`` with 10 dinucleotide shuffles per example (the same arrays
  for both): tangermeme returns contributions projected onto the present base, so fastlift's are
  summed over the channels and put at the present base.

Speed (examples/s, same inputs, references and thread count, one process): the same two calls,
timed as bench/compare_peers.py times them; the ratio is fastlift / peer. fastlift runs twice: on
the whole model (its forward computes the profile head too, which the counts target does not
read) and on the model cut to the counts head (``fl.Model(model.inputs, model.get_node("counts"))``).
The peers' forward computes both heads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_peers import gemm_peak, measure  # noqa: E402

import fastlift as fl  # noqa: E402

N_REFS = 10


def build_bpnet(n_filters, n_layers, seed):
    import torch
    from bpnetlite.bpnet import BPNet

    torch.manual_seed(seed)
    return BPNet(n_filters=n_filters, n_layers=n_layers, n_outputs=2, n_control_tracks=0, verbose=False).eval()


class Counts:
    """The counts head of a (profile, counts) model as the (N, 1) output the peers take."""

    def __new__(cls, model):
        import torch

        class _Counts(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                return self.inner(x)[1]

        return _Counts(model).eval()


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def run(args):
    import torch
    from captum.attr import DeepLift
    from tangermeme.deep_lift_shap import deep_lift_shap

    from fastlift.torch import to_fastlift

    torch.set_num_threads(args.threads)
    tmodel = build_bpnet(args.filters, args.layers, args.seed)
    length = args.length
    t0 = time.perf_counter()
    model = to_fastlift(tmodel, torch.zeros(1, 4, length), input_names=["X"], output_names=["profile", "counts"])
    load_s = time.perf_counter() - t0
    counts = Counts(tmodel)
    counts_only = fl.Model(model.inputs, model.get_node("counts"), input_layout=model.input_layout)
    rng = np.random.default_rng(args.seed)
    n_pool = args.pool
    X = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (n_pool, length))].transpose(0, 2, 1).copy()
    R = fl.dinuc_shuffle(X.transpose(0, 2, 1), N_REFS, seed=args.seed).transpose(0, 1, 3, 2).copy()  # (N, K, 4, L)
    R1 = R[:, 0].copy()
    Xt, Rt, R1t = (torch.from_numpy(a) for a in (X, R, R1))
    kw = {"target_layer": "counts", "n_threads": args.threads}

    n = min(3, n_pool)
    with torch.no_grad():
        forward = _rel(model.predict(X[:n])[1], counts(Xt[:n]).numpy())
    ours_1 = fl.deeplift(model, X[:n], R1[:n], **kw).contributions
    cap = DeepLift(counts).attribute(Xt[:n], baselines=R1t[:n], target=0).detach().numpy()
    ours_k = fl.deeplift(model, X[:n], R[:n], **kw).contributions
    tan = deep_lift_shap(counts, Xt[:n], references=Rt[:n], target=0, device="cpu", warning_threshold=1e9,
                         batch_size=N_REFS).numpy()
    projected = ours_k.sum(axis=1, keepdims=True) * X[:n]
    agreement = {"forward (counts) vs torch": forward,
                 "deeplift 1 ref vs captum DeepLift": _rel(ours_1, cap),
                 f"deeplift {N_REFS} dinuc refs vs tangermeme deep_lift_shap (projected)": _rel(projected, tan)}
    out = {"model": f"bpnet-lite BPNet {args.filters} filters x {args.layers} layers, {length} bp",
           "threads": args.threads, "onnx_export_and_load_s": load_s, "agreement": agreement, "speed": {}}
    if args.smoke:
        return out
    out["gemm_peak"] = gemm_peak(args.threads)
    one = {"n_threads": args.threads}

    def ours(refs):
        return {"fastlift": lambda k: fl.deeplift(model, X[:k], refs[:k], **kw),
                "fastlift, counts head only": lambda k: fl.deeplift(counts_only, X[:k], refs[:k], **one)}

    rows = {
        "deeplift_1ref": (ours(R1), {"captum DeepLift": lambda k: DeepLift(counts).attribute(
            Xt[:k], baselines=R1t[:k], target=0)}),
        f"deeplift_{N_REFS}refs": (ours(R), {"tangermeme deep_lift_shap": lambda k: deep_lift_shap(
            counts, Xt[:k], references=Rt[:k], target=0, device="cpu", warning_threshold=1e9,
            batch_size=2 * N_REFS, verbose=False)}),
    }
    for row, (mine, peers) in rows.items():
        mine = {name: measure(fn, n_pool, args.seconds) for name, fn in mine.items()}
        out["speed"][row] = {"fastlift": mine, "peers": {}}
        for name, fn in peers.items():
            p = measure(fn, n_pool, args.seconds)
            p["ratio"] = {ours_name: m["examples_per_s"] / p["examples_per_s"] for ours_name, m in mine.items()}
            out["speed"][row]["peers"][name] = p
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description="fastlift (ONNX) vs tangermeme and Captum on one PyTorch BPNet.")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--pool", type=int, default=32, help="examples available to each measurement")
    p.add_argument("--filters", type=int, default=64)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--length", type=int, default=2114)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="a tiny BPNet, agreement only")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.smoke:
        args.filters, args.layers, args.length, args.pool = 8, 2, 300, 3
    out = run(args)
    print(f"{out['model']}, {out['threads']} thread(s); ONNX export + load {out['onnx_export_and_load_s']:.2f} s")
    for k, v in out["agreement"].items():
        print(f"  agreement  {k:<70} {v:.2e}")
    for row, r in out["speed"].items():
        for name, f in r["fastlift"].items():
            print(f"  {row:<16} {name:<30} {f['examples_per_s']:9.2f} ex/s")
        for name, q in r["peers"].items():
            ratios = ", ".join(f"{k} x{v:.2f}" for k, v in q["ratio"].items())
            print(f"  {row:<16} {name:<30} {q['examples_per_s']:9.2f} ex/s   ratio {ratios}")
    if "gemm_peak" in out:
        print(f"  float32 GEMM peak {out['gemm_peak']['gflops']:.1f} GFLOP/s ({', '.join(out['gemm_peak']['blas_kernels'])})")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    bad = {k: v for k, v in out["agreement"].items() if v > 1e-3}
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
