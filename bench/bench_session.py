"""Per-call cost of a session (`fl.Explainer`) against one-call sessions (`fl.deeplift` /
`fl.attribute`) on a small model, the case where a call's fixed costs show.

    python bench/bench_session.py [--threads 2] [--rows 256] [--seconds 3]

For each method: milliseconds per call of repeated ``ex.<method>(X)`` on one Explainer and of
repeated ``fl.<method>(model, X)``, the same rows each time, measured alternately in one run
(median of rounds). Results are bitwise equal (checked).
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import mlp

import fastlift as fl


def per_call(fn, seconds):
    fn()  # warm up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    model = mlp(rng)
    X = rng.normal(size=(args.rows, 784)).astype(np.float32)
    cases = {
        "deeplift (zero ref)": (lambda ex: ex.deeplift(X),
                                lambda: fl.deeplift(model, X, device="cpu", n_threads=args.threads)),
        "gradient": (lambda ex: ex.attribute(X, "gradient"),
                     lambda: fl.attribute(model, X, "gradient", device="cpu", n_threads=args.threads)),
    }
    print(f"MLP 784-512-512-10, {args.rows} rows, {args.threads} thread(s), ms per call (median of "
          f"{args.rounds} rounds of ~{args.seconds:.0f} s)")
    print(f"{'method':<22}{'Explainer':>12}{'fl.<function>':>15}{'overhead saved':>16}")
    with fl.Explainer(model, device="cpu", n_threads=args.threads) as ex:
        for name, (session, one_call) in cases.items():
            a, b = session(ex), one_call()
            np.testing.assert_array_equal(a.contributions, b.contributions)
            ts, tf = [], []
            for _ in range(args.rounds):
                ts.append(per_call(lambda: session(ex), args.seconds))
                tf.append(per_call(one_call, args.seconds))
            s, f = statistics.median(ts) * 1e3, statistics.median(tf) * 1e3
            print(f"{name:<22}{s:>12.2f}{f:>15.2f}{f - s:>13.2f} ms")


if __name__ == "__main__":
    main()
