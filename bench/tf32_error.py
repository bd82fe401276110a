"""What ``precision="tf32"`` does to attributions, measured before a GPU exists.

    python bench/tf32_error.py --json bench/results/tf32_error.json     # ~2 min on 2 cores
    python bench/tf32_error.py --smoke                                  # seconds (CI)

TF32 GEMMs are float32 GEMMs whose inputs are rounded to a 10-bit mantissa (tests/cuda_emu/tf32.py).
This runs fastlift's engine on the numpy reference backend, whose GEMMs are exactly the ones
`CupyOps` issues to cuBLAS (dense layers and convolutions as im2col + GEMM, forward and backward),
once with FP32 GEMMs and once with TF32-rounded inputs, on the benchmark models (bench/models.py:
BPNet-like, Basset-like), DeepLIFT with dinucleotide-shuffled references and hypothetical scores,
as a scan computes them. Against the FP32 run it reports, per variant:

* ``hyp_rel_max`` / ``hyp_rel_median``: over examples, max |Δ hypothetical| / max |hypothetical|
  of the example (the largest error as a share of the example's largest score);
* ``delta_share_max``: the variant's own summation-to-delta error |Σ contributions − Δf| as a share
  of Σ |contributions|, max over examples (Δf = f(x) − mean f(refs), from the variant's own
  forward; for stored scores, Σ of the stored contributions against the FP32 run's Δf);
  ``delta_rel_median``: the same error relative to |Δf|, median over examples (Δf, a difference
  of nearby outputs, can be near 0: its max is not informative);
* ``top{k}_overlap_min`` / ``_mean``: the share of the k positions with the largest |projected
  score| (hypothetical · x summed over bases) that the FP32 run also ranks top k;
* ``spearman_min``: the smallest Spearman correlation of |projected score| over all positions.

Variants: ``tf32`` (inputs rounded to nearest, ties to even, as cuBLAS converts them),
``tf32_truncate`` (inputs truncated: a bound, twice the rounding error), ``float16_storage`` (the
FP32 scores stored as float16, the scan's default ``--score-dtype``), and ``float32_vs_float64``
(FP32 GEMMs against a float64 run: the error fastlift's default already has).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from unittest import mock

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))  # cuda_emu: the TF32 emulator
from cuda_emu.tf32 import reference_ops  # noqa: E402
from models import basset_spec, bpnet_spec, build_fastlift  # noqa: E402

import fastlift as fl  # noqa: E402

TOP_K = 20


def run(model, X, refs, precision="float32", mode="nearest", dtype="float32"):
    """fl.deeplift on the reference backend with the given GEMM precision (hypothetical scores)."""
    with mock.patch("fastlift.explainer.get_ops", lambda device, n_threads=None, precision="float32":
                    reference_ops(n_threads, precision, mode)):
        return fl.deeplift(model, X, refs, hypothetical=True, device="cuda", precision=precision, dtype=dtype)


def _delta_f(res):
    """Δf per example: Σ contributions − deltas (deltas = Σ contributions − Δf)."""
    c = np.asarray(res.contributions, dtype=np.float64)
    return c.reshape(c.shape[0], -1).sum(axis=1) - np.asarray(res.deltas, dtype=np.float64)


def _spearman(a, b):
    from scipy.stats import spearmanr

    rho = spearmanr(a, b).statistic
    return 1.0 if np.isnan(rho) else float(rho)  # constant scores (all zero) rank alike


def compare(ref_hyp, X, hyp, deltas, delta_f, abs_contrib, k=TOP_K) -> dict:
    """Error metrics of ``hyp`` against the reference run's ``ref_hyp``, and the summation-to-delta
    of the variant (its ``deltas`` relative to its Δf)."""
    ref_hyp, hyp = np.asarray(ref_hyp, np.float64), np.asarray(hyp, np.float64)
    n = ref_hyp.shape[0]
    scale = np.abs(ref_hyp).reshape(n, -1).max(axis=1)
    rel = np.abs(hyp - ref_hyp).reshape(n, -1).max(axis=1) / np.where(scale > 0, scale, 1.0)
    deltas = np.abs(np.asarray(deltas, np.float64))
    ref_pos = np.abs((ref_hyp * X).sum(axis=-1))
    pos = np.abs((hyp * X).sum(axis=-1))
    overlap, rho = [], []
    for e in range(n):
        top_ref = set(np.argsort(-ref_pos[e], kind="stable")[:k])
        top = set(np.argsort(-pos[e], kind="stable")[:k])
        overlap.append(len(top_ref & top) / k)
        rho.append(_spearman(ref_pos[e], pos[e]))
    return {"hyp_rel_max": float(rel.max()), "hyp_rel_median": float(np.median(rel)),
            "delta_share_max": float((deltas / np.maximum(abs_contrib, 1e-30)).max()),
            "delta_rel_median": float(np.median(deltas / np.maximum(np.abs(delta_f), 1e-30))), f"top{k}_overlap_min": float(min(overlap)),
            f"top{k}_overlap_mean": float(np.mean(overlap)), "spearman_min": float(min(rho))}


def measure_model(spec, n, n_refs, seed=0, runner=run, truncate=True) -> dict:
    """The variants' metrics on one model. ``runner(model, X, refs, precision=, mode=, dtype=)``
    computes DeepLIFT with hypothetical scores (default: the emulated GEMMs; the GPU benchmark
    passes real cuBLAS runs, without the truncating variant)."""
    model = build_fastlift(spec)
    rng = np.random.default_rng(seed)
    X = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(n,) + spec["input_shape"][:1])]
    refs = fl.dinuc_shuffle(X, n_refs, seed=seed)
    t0 = time.perf_counter()
    fp32 = runner(model, X, refs)
    ref_df = _delta_f(fp32)
    abs_c = np.abs(np.asarray(fp32.contributions, np.float64)).reshape(n, -1).sum(axis=1)
    out = {"model": spec["name"], "n_examples": n, "n_refs": n_refs, "variants": {}}
    tf32 = {"tf32": {"precision": "tf32"}}
    if truncate:
        tf32["tf32_truncate"] = {"precision": "tf32", "mode": "truncate"}
    for name, kw in tf32.items():
        res = runner(model, X, refs, **kw)
        out["variants"][name] = compare(fp32.hypothetical, X, res.hypothetical, res.deltas, _delta_f(res), abs_c)
    # the scan stores hypothetical and projected scores as float16 by default
    h16 = np.asarray(fp32.hypothetical).astype(np.float16).astype(np.float32)
    c16 = np.asarray(fp32.contributions).astype(np.float16).astype(np.float64).reshape(n, -1).sum(axis=1)
    out["variants"]["float16_storage"] = compare(fp32.hypothetical, X, h16, c16 - ref_df, ref_df, abs_c)
    f64 = runner(model, X, refs, dtype="float64")
    out["variants"]["float32_vs_float64"] = compare(f64.hypothetical, X, fp32.hypothetical, fp32.deltas, ref_df, abs_c)
    out["seconds"] = time.perf_counter() - t0
    return out


def print_table(res, file=None):
    print(f"{res['model']} ({res['n_examples']} examples x {res['n_refs']} refs, {res['seconds']:.0f} s)", file=file)
    print(f"  {'vs FP32':<20}{'hyp max':>10}{'hyp median':>12}{'Δ/Σ|c| max':>12}{'Δ/|Δf| med':>12}"
          f"{f'top{TOP_K} min':>11}{'mean':>7}{'spearman min':>14}", file=file)
    for variant, m in res["variants"].items():
        print(f"  {variant:<20}{m['hyp_rel_max']:>10.1e}{m['hyp_rel_median']:>12.1e}{m['delta_share_max']:>12.1e}"
              f"{m['delta_rel_median']:>12.1e}{m[f'top{TOP_K}_overlap_min']:>11.2f}{m[f'top{TOP_K}_overlap_mean']:>7.2f}"
              f"{m['spearman_min']:>14.5f}", file=file)


def specs(seed=0, smoke=False):
    """The models measured, by name (full size, or tiny for --smoke); each one's weights are drawn
    from its own generator, so they do not depend on which models run."""
    return {"bpnet_like": lambda: bpnet_spec(np.random.default_rng(seed), 120 if smoke else 1000),
            "basset_like": lambda: basset_spec(np.random.default_rng(seed), 200 if smoke else 600)}


def main(argv=None):
    p = argparse.ArgumentParser(description="Effect of TF32 GEMMs on DeepLIFT scores, emulated on the CPU.")
    p.add_argument("--n", type=int, default=16, help="examples per model")
    p.add_argument("--refs", type=int, default=10, help="dinucleotide-shuffled references per example")
    p.add_argument("--models", default="bpnet_like,basset_like")
    p.add_argument("--smoke", action="store_true", help="tiny models (CI)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    models = specs(args.seed, args.smoke)
    n, k = (3, 2) if args.smoke else (args.n, args.refs)
    results = {"n_examples": n, "n_refs": k, "top_k": TOP_K, "models": []}
    for name in args.models.split(","):
        res = measure_model(models[name](), n, k, args.seed)
        results["models"].append(res)
        print_table(res)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
