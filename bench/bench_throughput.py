"""fastlift throughput on the issue-6 models, fastlift alone (side by side with the peers:
compare_peers.py).

    python bench/bench_throughput.py [--threads 1] [--n 16] [--refs 10] [--quick]

Prints examples/s for DeepLIFT-Rescale with K shuffled references, zero-reference
DeepLIFT and plain gradients, plus the float32 GEMM rate measured in the same run.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import basset_like, bpnet_like, mlp

import fastlift as fl


def gemm_gflops(threads, n=1024, repeats=5):
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).normal(size=(n, n)).astype(np.float32)
    with threadpool_limits(threads, user_api="blas"):
        a @ a
        t0 = time.perf_counter()
        for _ in range(repeats):
            a @ a
        dt = time.perf_counter() - t0
    return 2 * n**3 * repeats / dt / 1e9


def shuffled_refs(x, k, rng):
    n, length = x.shape[:2]
    return np.stack([x[i][rng.permutation(length)] for i in range(n) for _ in range(k)]).reshape((n, k) + x.shape[1:])


def timed(fn, repeats=2):
    fn()  # warm up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n", type=int, default=16, help="examples per measurement")
    p.add_argument("--refs", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    p.add_argument("--json", default=None, help="write results to this file")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    models = {"bpnet_like": bpnet_like(rng, 200 if args.quick else 1000),
              "basset_like": basset_like(rng, 300 if args.quick else 600), "mlp": mlp(rng)}
    n = 2 if args.quick else args.n
    results = {"threads": args.threads, "gemm_gflops_f32": gemm_gflops(args.threads), "models": {}}
    print(f"float32 GEMM: {results['gemm_gflops_f32']:.1f} GFLOP/s at {args.threads} thread(s)")
    for name, model in models.items():
        shape = model.inputs[0].shape
        if name == "mlp":
            x = rng.normal(size=(n,) + shape)
            refs = rng.normal(size=(n, args.refs) + shape)
        else:
            x = np.eye(4)[rng.integers(0, 4, size=(n, shape[0]))]
            refs = shuffled_refs(x, args.refs, rng)
        kw = {"n_threads": args.threads}
        row = {
            f"deeplift_{args.refs}refs": n / timed(lambda: fl.deeplift(model, x, refs, **kw)),
            "deeplift_zero_ref": n / timed(lambda: fl.deeplift(model, x, **kw)),
            "gradient": n / timed(lambda: fl.attribute(model, x, "gradient", **kw)),
        }
        results["models"][name] = row
        print(f"{name:<12} " + "  ".join(f"{k}: {v:8.1f} ex/s" for k, v in row.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
