"""Scan throughput: the pipelined scan against the engine, and scans on Dask against one process.

    python bench/bench_scan.py                       # everything (about 8 minutes on 2 idle cores)
    python bench/bench_scan.py --only demo --only bpnet --no-dask
    python bench/bench_scan.py --quick               # a smoke run of every row (seconds)

Rows, regions/s on the machine it runs on (the load average is printed with them):

* ``engine``: `Explainer.deeplift` on the regions' one-hot array in memory, with the same
  dinucleotide-shuffled references (K per region, seed 0) and both heads (counts, profile) in
  one pass: the compute alone, the session built before the clock starts.
* ``scan``: `fastlift.scan.scan` of the same regions from a FASTA + narrowPeak into float16 score
  files, timed end to end (session, output files, reading, shuffles, compute, writes, syncs).
* ``dask WxT``: ``scan(client=...)`` on a local cluster of W worker processes with T engine
  threads each (cluster started before the clock; tasks of the default size; shards merged
  and removed inside the clock).

Models: the bundled demo model at 200 bp (three 16-filter convolutions: reading and writing
dominate) and a BPNet-size model built here (2114 bp, 64 filters, a 21-wide first convolution and
8 dilated residual 3-wide convolutions, a profile head and a counts head). Each row is the best
of ``--repeat`` runs (the machines here are shared). ``--json`` writes the numbers. The script
takes the installed (or ``PYTHONPATH``) fastlift, so pointing ``PYTHONPATH`` at another checkout
measures that one with the same script (the before/after figures of bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

import fastlift as fl
from fastlift import demo
from fastlift import layers as L
from fastlift import scan as S

TARGETS = {"target": [0, "profile"], "target_layer": ["counts", "profile"]}


def bpnet_size(length=2114, filters=64, n_dilated=8, seed=0) -> fl.Model:
    """BPNet's architecture: conv filters x 21 (ReLU), ``n_dilated`` residual convs filters x 3
    with dilation 2, 4, ..., a profile head (conv 1 x 75 over the trunk, flattened) and a counts
    head (global average pool, dense 1). Random weights scaled to keep activations O(1)."""
    rng = np.random.default_rng(seed)

    def w(*shape):
        return (rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))).astype(np.float32)

    x = L.Input((length, 4), name="sequence")
    h = L.Activation("relu", name="relu0")(L.Conv1D(w(21, 4, filters), w(filters), padding="same", name="conv0")(x))
    for i in range(1, n_dilated + 1):
        c = L.Conv1D(w(3, filters, filters), w(filters), padding="same", dilation_rate=2**i, name=f"dil{i}")(h)
        h = L.Add(name=f"res{i}")([h, L.Activation("relu", name=f"relu{i}")(c)])
    prof = L.Flatten(name="profile")(L.Conv1D(w(75, filters, 1), w(1), padding="same", name="profile_conv")(h))
    counts = L.Dense(w(filters, 1), w(1), name="counts")(L.GlobalAvgPool1D(name="pool")(h))
    return fl.Model(x, [prof, counts], name=f"bpnet_{filters}f_{length}bp")


def forward_flops(length=2114, filters=64, n_dilated=8) -> float:
    """Multiply-adds x 2 of one forward pass of `bpnet_size` (convolutions and dense)."""
    macs = length * (21 * 4 * filters + n_dilated * 3 * filters * filters + 75 * filters) + filters
    return 2.0 * macs


def random_onehot(n, length, seed):
    return np.eye(4, dtype=np.float32)[np.random.default_rng(seed).integers(0, 4, (n, length))]


def measure_model(name, model, n, refs, threads, repeat, dask_layouts, workdir, chunk_size):
    """{row: regions/s (best of ``repeat`` rounds)} for one model; each round runs every row once,
    in turn, so that a change in the machine's load touches all rows alike."""
    from contextlib import ExitStack

    length = model.inputs[0].shape[0]
    X = random_onehot(n, length, seed=1)
    d = os.path.join(workdir, name)
    os.makedirs(d, exist_ok=True)
    fasta, bed = demo.write_genome(d, X)
    refs_spec = fl.references.dinuc_shuffle(refs)

    def one_scan(client=None, engine_threads=threads):
        out = os.path.join(d, "scores.h5")
        for p in os.listdir(d):
            if p.startswith("scores"):
                os.remove(os.path.join(d, p))
        source = S.FastaBedSource(fasta, bed, length)
        try:
            on = {} if client is None else {"client": client}   # (a checkout from before Dask: no client=)
            S.scan(model, source, out, references=f"dinuc:{refs}", n_threads=engine_threads, chunk_size=chunk_size,
                   **on, **TARGETS)
        finally:
            source.close()

    with ExitStack() as stack:
        ex = stack.enter_context(fl.Explainer(model, n_threads=threads, **TARGETS))
        ex.deeplift(X[:2], refs_spec, hypothetical=True, seed=0)  # warm up
        rows = {"engine": lambda: ex.deeplift(X, refs_spec, hypothetical=True, seed=0), "scan": one_scan}
        startup = {}
        for workers in dask_layouts:
            from fastlift.distributed import local_client

            t0 = time.perf_counter()
            client = stack.enter_context(local_client(workers))
            per_worker = max(1, threads // workers)
            label = f"dask {workers}x{per_worker}"
            startup[f"{label} cluster start (s)"] = time.perf_counter() - t0
            one_scan(client, per_worker)   # warm up: the workers import fastlift and receive the model
            rows[label] = lambda c=client, t=per_worker: one_scan(c, t)
        best = {row: float("inf") for row in rows}
        for _ in range(repeat):
            for row, fn in rows.items():
                t0 = time.perf_counter()
                fn()
                best[row] = min(best[row], time.perf_counter() - t0)
                print(f"    {name} {row}: {time.perf_counter() - t0:.2f} s", file=sys.stderr, flush=True)
    return {**{row: n / t for row, t in best.items()}, **startup}


def measure_merge(workdir, n_regions, length, n_parts=4):
    """Seconds to merge ``n_parts`` complete shard files of ``n_regions`` float16 regions of
    ``length`` bp into one (`merge_score_files`: created, copied, synced), and the bytes per
    region. The parts were just written, so they are read from the page cache: the rate is
    the copy's and the disk's write, as on a client whose workers wrote to its own disk."""
    from fastlift.io.scores import ScoreLayout, create_score_file, merge_score_files

    layout = ScoreLayout(n_regions, length, 4, "float16", chrom_width=5)
    bounds = [n_regions * i // n_parts for i in range(n_parts + 1)]
    parts = []
    for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        path = os.path.join(workdir, f"merge.part{i}.h5")
        create_score_file(path, ScoreLayout(hi - lo, length, 4, "float16", chrom_width=5), {"part": i}, "t")
        parts.append((lo, path))
    out = os.path.join(workdir, "merged.h5")
    t0 = time.perf_counter()
    merge_score_files(out, layout, {"merged": True}, "t", parts)
    seconds = time.perf_counter() - t0
    per_region = os.path.getsize(out) / n_regions
    for _, path in parts:
        os.remove(path)
    os.remove(out)
    return {"merge regions": n_regions, "merge seconds": seconds, "merge bytes per region": per_region,
            "merge GB/s": n_regions * per_region / seconds / 1e9}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", action="append", choices=["demo", "bpnet"], help="models to run (default both)")
    p.add_argument("--no-dask", action="store_true", help="skip the Dask rows")
    p.add_argument("--demo-regions", type=int, default=512)
    p.add_argument("--bpnet-regions", type=int, default=8)
    p.add_argument("--refs", type=int, default=20)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--demo-chunk", type=int, default=None, help="demo scan checkpoint size (default: the scan's)")
    p.add_argument("--bpnet-chunk", type=int, default=2, help="BPNet-size scan checkpoint size (default 2)")
    p.add_argument("--merge-regions", type=int, default=10000,
                   help="regions (2114 bp, float16) of the merge row; 0 skips it")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: checks that every row runs")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    if args.quick:
        args.demo_regions, args.bpnet_regions, args.repeat, args.refs = 64, 2, 1, 2
    models = args.only or ["demo", "bpnet"]
    dask_layouts = [] if args.no_dask else sorted({1, args.threads})
    workdir = tempfile.mkdtemp(prefix="fastlift-bench-scan-")
    results = {"load_average_before": os.getloadavg(), "threads": args.threads, "refs": args.refs,
               "fastlift": os.path.dirname(fl.__file__)}
    try:
        for name in models:
            model, n, chunk = ((demo.demo_model(200), args.demo_regions, args.demo_chunk) if name == "demo"
                               else (bpnet_size(length=64 if args.quick else 2114), args.bpnet_regions,
                                     args.bpnet_chunk))
            rows = measure_model(name, model, n, args.refs, args.threads, args.repeat, dask_layouts, workdir, chunk)
            results[name] = {"regions": n, "chunk_size": chunk, **rows}
            print(f"\n{model.name}: {n} regions, {args.refs} dinucleotide-shuffled references, both heads, "
                  f"{args.threads} thread(s); load average {os.getloadavg()[0]:.1f}")
            for row, value in rows.items():
                unit = "" if row.endswith("(s)") else " regions/s"
                ratio = "" if row == "engine" or row.endswith("(s)") else f"  ({value / rows['engine']:.3f} x engine)"
                print(f"  {row:<32}{value:10.2f}{unit}{ratio}")
        if args.merge_regions:
            merged = measure_merge(workdir, 100 if args.quick else args.merge_regions, 2114)
            results["merge"] = merged
            print(f"\nmerge of 4 shard files, {merged['merge regions']} regions of 2114 bp (float16): "
                  f"{merged['merge seconds']:.2f} s, {merged['merge bytes per region'] / 1e3:.1f} KB per region, "
                  f"{merged['merge GB/s']:.2f} GB/s")
        print(f"\nBPNet-size forward pass: {forward_flops() / 1e9:.3f} GFLOP; ChromBPNet-size (512 filters): "
              f"{forward_flops(filters=512) / 1e9:.2f} GFLOP")
        results["load_average_after"] = os.getloadavg()
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
