"""The CPU convolution paths side by side on BPNet's layers: GFLOP/s of each.

For ChromBPNet's BPNet (64 channels, three taps, dilations 2..256, ~2000 positions) and 20 rows
(one region's references), times `CpuOps`' BLAS path (im2col + GEMM blocks, what CPUs without
AVX2 run), the direct register tiles (`_cpu.conv_direct`) and Winograd's F(2,3) and F(4,3)
(`_cpu.conv_winograd3`), forward and as the adjoint runs them (padded by twice the dilation),
best of ``--repeats``. GFLOP/s count the convolution's nominal multiply-adds (2 per tap, input
and output channel, output cell), padding included, so a path that skips padding shows more.

    python bench/bench_conv_paths.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from fastlift.backends import _cpu, cpu_ops
from fastlift.backends.cpu_ops import CpuOps
from fastlift.geometry import Geometry


def best(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 rows, 1 repeat, 2 dilations")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args(argv)
    dilations = (2, 16, 128, 256)
    if args.quick:
        args.rows, args.repeats, dilations = 2, 1, (2, 256)
    ops = CpuOps(n_threads=args.threads)
    rng = np.random.default_rng(0)
    c = 64
    kernel = (rng.standard_normal((3 * c, c)) / 14).astype(np.float32)
    kernel.flags.writeable = False  # a session's weight: packed once
    print(f"ISA {_cpu.isa()}, {args.threads} threads, {args.rows} rows, float32; GFLOP/s "
          f"(BLAS / direct / Winograd F(2,3) / F(4,3))")
    results = []
    for d in dilations:
        for kind, w, pad in (("forward", 2094 - 2 * (2 * d - 2), 0), ("adjoint", 2094 - 2 * (2 * d - 2) - 2 * d, 2 * d)):
            g = Geometry(h=1, w=w, c=c, kh=1, kw=3, sh=1, sw=1, dh=1, dw=d, pt=0, pl=pad,
                         h_out=1, w_out=w + 2 * pad - 2 * d)
            x = rng.standard_normal((args.rows, 1, w, c)).astype(np.float32)
            flop = 2 * args.rows * g.w_out * 3 * c * c
            rates = []
            saved = cpu_ops._ISA
            try:
                cpu_ops._ISA = "base"
                with ops.compute_context():
                    rates.append(flop / best(lambda: ops.conv_forward(x, kernel, g), args.repeats) / 1e9)
            finally:
                cpu_ops._ISA = saved
            wp = ops._direct_kernel(kernel)
            rates.append(flop / best(lambda: _cpu.conv_direct(x, wp, g, c, args.threads), args.repeats) / 1e9)
            for m in (2, 4):
                wg = ops._winograd_kernel(kernel, m)
                rates.append(flop / best(lambda: _cpu.conv_winograd3(x, wg, g, c, args.threads, m=m), args.repeats)
                             / 1e9)
            chosen = "BLAS"
            if ops._conv_runs_direct(g, np.float32):
                chosen = f"Winograd F({ops._winograd_outputs(g)},3)" if ops._conv_runs_winograd(g) else "direct"
            print(f"dilation {d:3d} {kind:7s} {g.w_out:5d} cells: " + " / ".join(f"{r:6.1f}" for r in rates)
                  + f"   (CpuOps runs {chosen})")
            results.append({"dilation": d, "kind": kind, "cells": g.w_out, "blas_gflops": rates[0],
                            "direct_gflops": rates[1], "winograd_gflops": rates[2], "winograd43_gflops": rates[3],
                            "chosen": chosen})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"isa": _cpu.isa(), "threads": args.threads, "rows": args.rows, "layers": results}, f, indent=1)


if __name__ == "__main__":
    main()
