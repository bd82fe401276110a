"""End-to-end check at genome scale: a generated genome of a few Mb, a few thousand regions.

    python scripts/scan_generated_genome.py                    # 4 Mb, 3000 regions, demo model
    python scripts/scan_generated_genome.py --model bpnet      # the BPNet-like model of bench/ (1000 bp;
                                                               #   needs a source checkout)
    python scripts/scan_generated_genome.py --mb 1 --regions 300 --kill-at 100   # quick
    python scripts/scan_generated_genome.py --no-kill          # only the uninterrupted scan

Steps: write a random genome (40% GC, N runs, soft-masked stretches, planted AP-1 / E-box
motifs at the peak summits) and a narrowPeak file with summits, some near chromosome ends;
run ``fastlift explain`` as a subprocess (dinucleotide-shuffled references, the profile
and counts heads in one pass), SIGKILL it part-way (once ``--kill-at`` regions are saved,
by default half of them; ``--no-kill`` skips this), resume it, run it again uninterrupted
into another file and compare the bytes; check a sample of regions against ``fl.deeplift``
called directly; load the file with modisco-lite's reader when installed. Prints regions/s
and the peak resident memory of the scan process.

It uses the installed fastlift (``pip install .`` or ``pip install -e .``), never the source
tree beside it, and works in a temporary directory that it removes at the end (``--dir`` to
keep the files somewhere).
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

import fastlift as fl
from fastlift import demo
from fastlift import genomics as G
from fastlift.io import scores as io_scores

# bench/ of a source checkout holds the BPNet-like model (--model bpnet); nothing else is taken from there
BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def write_genome(directory, mb, n_regions, width, seed):
    rng = np.random.default_rng(seed)
    n_chrom = 4
    sizes = [int(mb * 1e6 / n_chrom)] * n_chrom
    recs, peaks = {}, []
    for c, size in enumerate(sizes):
        seq = np.array(list("ACGT"))[rng.choice(4, size=size, p=demo.BACKGROUND)]
        seq[1000:1500] = "N"                                  # an assembly gap
        low = rng.integers(0, size - 5000)
        seq[low:low + 3000] = np.char.lower(seq[low:low + 3000])  # soft-masked repeat
        name = f"chr{c + 1}"
        for _ in range(n_regions // n_chrom):
            summit = int(rng.integers(width, size - width))
            motif = list(demo.MOTIFS.values())[int(rng.integers(2))]
            seq[summit:summit + len(motif)] = list(motif)
            start = summit - int(rng.integers(20, 200))
            peaks.append((name, start, summit + int(rng.integers(20, 200)), summit - start))
        recs[name] = "".join(seq)
    fasta = os.path.join(directory, "genome.fa")
    G.write_fasta(fasta, recs)
    bed = os.path.join(directory, "peaks.narrowPeak")
    with open(bed, "w") as f:
        for i, (c, s, e, summit) in enumerate(peaks):
            f.write(f"{c}\t{s}\t{e}\tpeak{i}\t1000\t.\t10\t-1\t-1\t{summit}\n")
        f.write("chr1\t10\t60\tedge\t1000\t.\t10\t-1\t-1\t20\n")  # window past the start: skipped
    return fasta, bed, sum(sizes)


def model_arg(name, width):
    """(fastlift Model, --target) of the model to scan."""
    if name == "demo":
        return demo.demo_model(width), "profile@profile,0@counts"
    if not os.path.isfile(os.path.join(BENCH, "models.py")):
        raise SystemExit(f"--model bpnet needs bench/models.py of a source checkout (looked in {BENCH})")
    sys.path.insert(0, BENCH)
    from models import bpnet_like

    return bpnet_like(np.random.default_rng(0), length=width), "0"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=float, default=4.0)
    p.add_argument("--regions", type=int, default=3000)
    p.add_argument("--width", type=int, default=None, help="default: 500 (demo), 1000 (bpnet)")
    p.add_argument("--refs", default="dinuc:10")
    p.add_argument("--model", choices=["demo", "bpnet"], default="demo")
    p.add_argument("--kill-at", type=int, default=None,
                   help="SIGKILL the scan once this many regions are saved, then resume it (default: half of them)")
    p.add_argument("--no-kill", action="store_true", help="no SIGKILL and resume: only the uninterrupted scan")
    p.add_argument("--batch-size", default="auto")
    p.add_argument("--chunk-size", default="64", help="regions per checkpoint")
    p.add_argument("--threads", default=None)
    p.add_argument("--dir", default=None)
    args = p.parse_args(argv)
    if args.no_kill:
        args.kill_at = None
    elif args.kill_at is None:
        args.kill_at = max(args.regions // 2, 1)
    if args.dir:
        os.makedirs(args.dir, exist_ok=True)
        run(args, args.dir)
    else:
        with tempfile.TemporaryDirectory(prefix="fastlift_genome_") as work:
            run(args, work)


def run(args, work):
    width = args.width or (500 if args.model == "demo" else 1000)
    t0 = time.perf_counter()
    fasta, bed, total = write_genome(work, args.mb, args.regions, width, seed=1)
    print(f"genome {total / 1e6:.1f} Mb and {args.regions + 1} peaks written to {work} "
          f"({time.perf_counter() - t0:.1f} s)")
    model, target = model_arg(args.model, width)
    base = ["--fasta", fasta, "--bed", bed, "--width", str(width), "--refs", args.refs, "--target", target,
            "--skip-invalid", "--batch-size", args.batch_size, "--chunk-size", args.chunk_size, "--quiet"]
    if args.threads:
        base += ["--threads", args.threads]

    def command(out, extra=()):
        if args.model == "demo":
            return [sys.executable, "-m", "fastlift.cli", "explain", "demo", *base, "--out", out, *extra]
        # bench's model is built in code, not loaded from a file: swap it in for the CLI's loader
        code = (f"import sys, numpy as np; sys.path.insert(0, {BENCH!r}); from models import bpnet_like; "
                "import fastlift.cli as c; "
                "c._load_model = lambda name, width: bpnet_like(np.random.default_rng(0), length=width); "
                "sys.exit(c.main(sys.argv[1:]))")
        return [sys.executable, "-c", code, "explain", "bpnet", *base, "--out", out, *extra]

    out = os.path.join(work, "scores.h5")
    first = out.replace(".h5", ".profile.h5") if args.model == "demo" else out
    if args.kill_at is not None:
        proc = subprocess.Popen(command(out), cwd=work)
        while proc.poll() is None:
            if os.path.exists(first) and io_scores.read_header(first)["n_done"] >= args.kill_at:
                break
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            print(f"killed at {io_scores.read_header(first)['n_done']} regions saved; resuming")
        else:
            print("the scan finished before the kill point (use a smaller --chunk-size); resuming anyway")
        subprocess.run(command(out, ["--resume"]), check=True, cwd=work)
    t1 = time.perf_counter()
    clean = os.path.join(work, "clean.h5")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(command(clean), check=True, cwd=work)
    seconds = time.perf_counter() - t1
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    head = io_scores.read_header(clean.replace(".h5", ".profile.h5") if args.model == "demo" else clean)
    n = head["n_regions"]
    print(f"uninterrupted scan: {n} regions in {seconds:.1f} s = {n / seconds:.1f} regions/s "
          f"(process start and model load included); peak RSS {max(rss, before) / 1024:.0f} MB")
    if args.kill_at is not None:
        names = ["profile", "counts"] if args.model == "demo" else [None]
        for name in names:
            a = out if name is None else out.replace(".h5", f".{name}.h5")
            b = clean if name is None else clean.replace(".h5", f".{name}.h5")
            with open(a, "rb") as fa, open(b, "rb") as fb:
                same = fa.read() == fb.read()
            print(f"killed + resumed == uninterrupted ({name or 'scores'}): {same}")
            if not same:
                raise SystemExit("resume changed the output")
    # spot check against fl.deeplift (the killed-and-resumed file when there is one)
    checked = first if args.kill_at is not None else (clean.replace(".h5", ".profile.h5") if args.model == "demo"
                                                      else clean)
    f = io_scores.load_scores(checked, start=0, stop=16)
    X = f["input_seqs"].astype(np.float32)
    spec = fl.references.dinuc_shuffle(int(args.refs.split(":")[1])) if args.refs.startswith("dinuc") else None
    if spec is not None:
        kw = ({"target": "profile", "target_layer": "profile"} if args.model == "demo" else {"target": 0})
        direct = fl.deeplift(model, X, spec, hypothetical=True, **kw)
        err = np.abs(direct.hypothetical.astype(np.float16).astype(np.float32)
                     - f["hyp_scores"].astype(np.float32)).max()
        print(f"first 16 regions vs fl.deeplift: max |difference| {err:.2e} (float16 storage)")
    try:
        import h5py
        from modiscolite.util import calculate_window_offsets  # noqa: F401 - modisco-lite is installed

        with h5py.File(checked) as h:
            print(f"modisco-lite input: hyp_scores {h['hyp_scores'].shape} {h['hyp_scores'].dtype}, "
                  f"input_seqs {h['input_seqs'].shape}: `modisco motifs -i {checked} -n 50000 -w 400`")
    except ImportError:
        pass


if __name__ == "__main__":
    main()
