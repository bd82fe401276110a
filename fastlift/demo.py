"""The bundled example: a trained genomics CNN, planted motifs, and the whole scan flow.

The model (``fastlift/data/demo_model.npz``, trained once by ``scripts/train_demo_model.py``)
is a BPNet in miniature: three convolutions (two dilated, residual) feeding a *profile* head
(per-position logits of where reads fall) and a *counts* head (log of the total reads). It
was trained on simulated sequences: background DNA at 40% GC with AP-1 (``TGACTCA``) and
E-box (``CACGTG``) motifs planted at random, each motif drawing a footprint of reads around
itself (AP-1 stronger than E-box). The network never saw the motif list, only sequences and
read profiles, so finding the planted bases from its attributions is a real test.

``fastlift demo`` simulates fresh sequences (deterministically, from ``--seed``), writes them
as a small genome FASTA with a narrowPeak file, runs the streaming scan (dinucleotide-shuffled
references, profile and counts heads in one pass) to an HDF5 score file, reads it back, and
reports how well each method's per-base scores single out the planted bases (auROC), next to
integrated gradients, gradient x input and plain gradients computed in memory.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

from . import layers as L
from .explain import attribute
from .model import Model

MOTIFS = {"AP-1": "TGACTCA", "E-box": "CACGTG"}
STRENGTH = {"AP-1": 1.0, "E-box": 0.6}      # reads drawn by one motif, relative
BACKGROUND = (0.3, 0.2, 0.2, 0.3)           # A, C, G, T: 40% GC
BASES = "ACGT"
FOOTPRINT_SD = 4.0                          # bp: width of the read pile-up around a motif
WEIGHTS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "demo_model.npz")


def one_hot(seq: str) -> np.ndarray:
    """'ACGT...' -> (len, 4) float array (other letters: all-zero rows)."""
    out = np.zeros((len(seq), 4))
    for i, ch in enumerate(seq.upper()):
        j = BASES.find(ch)
        if j >= 0:
            out[i, j] = 1.0
    return out


# ----------------------------------------------------------------------------- simulation


def _place(rng, length, n_motifs, names):
    """Non-overlapping motif placements [(name, start)] (fewer if the sequence is short)."""
    placed, taken = [], np.zeros(length, dtype=bool)
    for _ in range(n_motifs):
        name = names[int(rng.integers(len(names)))]
        w = len(MOTIFS[name])
        for _attempt in range(20):
            start = int(rng.integers(0, length - w + 1))
            if not taken[max(start - 2, 0):start + w + 2].any():
                taken[start:start + w] = True
                placed.append((name, start))
                break
    return placed


def simulate(n: int, length: int, seed: int, n_motifs=None):
    """Random 40%-GC sequences with planted motifs and their expected read profiles.

    Parameters
    ----------
    n, length : int
    seed : int
    n_motifs : array of int (n,), optional
        Motifs to plant in each sequence (default: 0-3 at random).

    Returns
    -------
    X : (n, length, 4) float32 one-hot
    mask : (n, length) bool, the planted bases
    profile : (n, length) float32, expected reads per position (background + footprints)
    placements : list of [(motif name, start)] per sequence
    """
    rng = np.random.default_rng(seed)
    X = np.eye(4, dtype=np.float32)[rng.choice(4, size=(n, length), p=BACKGROUND)]
    mask = np.zeros((n, length), dtype=bool)
    profile = np.full((n, length), 0.05, dtype=np.float32)
    if n_motifs is None:
        n_motifs = rng.choice(4, size=n, p=[0.3, 0.35, 0.25, 0.1])
    names = list(MOTIFS)
    pos = np.arange(length)
    placements = []
    for i in range(n):
        placed = _place(rng, length, int(n_motifs[i]), names)
        for name, start in placed:
            motif = MOTIFS[name]
            X[i, start:start + len(motif)] = one_hot(motif)
            mask[i, start:start + len(motif)] = True
            centre = start + (len(motif) - 1) / 2
            profile[i] += 3.0 * STRENGTH[name] * np.exp(-0.5 * ((pos - centre) / FOOTPRINT_SD) ** 2)
        placements.append(placed)
    return X, mask, profile, placements


def planted_sequences(n: int, length: int, seed: int):
    """n sequences; the first half carry one or two planted motifs, the second half none.

    Returns X (n, length, 4) float32 and the (n, length) bool mask of planted bases.
    """
    counts = np.zeros(n, dtype=int)
    counts[: n // 2] = 1 + np.arange(n // 2) % 2
    X, mask, _, _ = simulate(n, length, seed, n_motifs=counts)
    return X, mask


# ----------------------------------------------------------------------------- the model


def build_model(weights: dict, length: int) -> Model:
    """The demo architecture with ``weights`` (Keras layouts) for inputs of ``length`` bp."""
    x = L.Input((length, 4), name="sequence")
    h = L.Activation("relu", name="relu0")(L.Conv1D(weights["conv0/kernel"], weights["conv0/bias"],
                                                    padding="same", name="conv0")(x))
    for i, rate in ((1, 2), (2, 4)):
        c = L.Conv1D(weights[f"dil{i}/kernel"], weights[f"dil{i}/bias"], padding="same", dilation_rate=rate,
                     name=f"dil{i}")(h)
        h = L.Add(name=f"res{i}")([h, L.Activation("relu", name=f"relu{i}")(c)])
    prof = L.Conv1D(weights["profile_conv/kernel"], weights["profile_conv/bias"], padding="same",
                    name="profile_conv")(h)
    prof = L.Flatten(name="profile")(prof)
    pooled = L.GlobalAvgPool1D(name="pool")(h)
    counts = L.Dense(weights["counts/kernel"], weights["counts/bias"], name="counts")(pooled)
    return Model(x, [prof, counts], name="demo_bpnet")


def demo_model(length: int = 200) -> Model:
    """The bundled trained model (profile logits (length,) and log counts (1,)) at ``length`` bp."""
    with np.load(WEIGHTS_FILE) as z:
        weights = {k: z[k].astype(np.float64) for k in z.files}
    return build_model(weights, length)


# ----------------------------------------------------------------------------- scoring


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    scores, labels = np.asarray(scores, float).ravel(), np.asarray(labels, bool).ravel()
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("auroc needs both positive and negative labels")
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


HEADS = {"counts": (0, "counts"), "profile": ("profile", "profile")}
TARGETS = (["counts", "profile"], [0, "profile"])  # target_layer, target: both heads in one pass

IN_MEMORY = [
    ("deeplift reveal_cancel", "deeplift", {"rule": "reveal_cancel"}),
    ("integrated gradients (10 steps)", "integrated_gradients", {"steps": 10}),
    ("gradient x input", "grad_x_input", {}),
    ("gradient", "gradient", {}),
]


def write_genome(directory: str, X: np.ndarray, spacer: int = 50):
    """Write sequences ``X`` into one chromosome of ``directory/demo.fa`` (joined by N-free random
    spacers) and a narrowPeak file whose summits are the sequence centres. Returns the paths."""
    from .genomics import one_hot_decode, write_fasta

    length = X.shape[1]
    rng = np.random.default_rng(12345)
    parts, starts, pos = [], [], 0
    for seq in one_hot_decode(X):
        pad = "".join(rng.choice(list(BASES), spacer))
        parts.append(pad)
        pos += spacer
        starts.append(pos)
        parts.append(seq)
        pos += length
    parts.append("".join(rng.choice(list(BASES), spacer)))
    fasta = os.path.join(directory, "demo.fa")
    write_fasta(fasta, {"chrDemo": "".join(parts)})
    bed = os.path.join(directory, "demo_peaks.narrowPeak")
    with open(bed, "w") as f:
        f.writelines(f"chrDemo\t{s}\t{s + length}\tpeak{i}\t1000\t.\t10\t-1\t-1\t{length // 2}\n" for i, s in enumerate(starts))
    return fasta, bed


def run(n: int = 200, length: int = 200, n_refs: int = 10, seed: int = 0, device: str = "auto",
        n_threads: int | None = None, workdir: str | None = None, report: str | None = None, log=None):
    """The demo flow; returns (model, X, mask, rows).

    Each row: ``method``, ``auroc`` (counts head), ``auroc_profile``, ``max_abs_delta``,
    ``seconds``, ``contributions`` (counts head, per base: the projected scores for DeepLIFT).
    The ``deeplift rescale`` row comes from the scan: FASTA + narrowPeak -> score files -> read back.
    ``report``: also write the scan's HTML report (`fastlift.report`, needs matplotlib) there.
    ``log`` receives a line as each step starts (default: none).
    """
    say = log or (lambda msg: None)
    from .io.scores import load_scores
    from .scan import FastaBedSource, scan

    model = demo_model(length)
    X, mask = planted_sequences(n, length, seed)
    positives = slice(0, n // 2)
    rows = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        say(f"[1/{1 + len(IN_MEMORY)}] deeplift rescale: writing {n} sequences as a FASTA + narrowPeak and "
            f"scanning them into HDF5 score files ({n_refs} shuffled references each, both heads)")
        fasta, bed = write_genome(tmp, X)
        source = FastaBedSource(fasta, bed, length)
        t0 = time.perf_counter()
        result = scan(model, source, os.path.join(tmp, "scores.h5"), references=f"dinuc:{n_refs}",
                      target=TARGETS[1], target_layer=TARGETS[0], seed=seed, score_dtype="float32",
                      device=device, n_threads=n_threads)
        elapsed = time.perf_counter() - t0
        source.close()
        if report is not None:
            from .report import write_report

            say(f"      writing the scan's HTML report to {report}")
            write_report(result.paths, report)
        by_head = {}
        for name, path in zip(TARGETS[0], result.paths):
            by_head[name] = load_scores(path)
        seqs = by_head["counts"]["input_seqs"].astype(np.float32)
        if not np.array_equal(seqs, X):
            raise RuntimeError("demo: the scan read other sequences than the ones written")
        rows.append(_row("deeplift rescale",
                         {h: d["projected_scores"] for h, d in by_head.items()}, mask, positives,
                         max(float(np.abs(d["deltas"]).max()) for d in by_head.values()), elapsed))
    for step, (label, method, extra) in enumerate(IN_MEMORY, 2):
        say(f"[{step}/{1 + len(IN_MEMORY)}] {label}")
        refs = None
        if method in ("deeplift", "integrated_gradients"):
            from .references import dinuc_shuffle

            refs = dinuc_shuffle(n_refs)
        t0 = time.perf_counter()
        res = attribute(model, X, method, refs, target=TARGETS[1], target_layer=TARGETS[0], seed=seed,
                        device=device, n_threads=n_threads, **extra)
        elapsed = time.perf_counter() - t0
        contrib = {h: res.contributions[k] for k, h in enumerate(TARGETS[0])}
        delta = None if res.deltas is None else float(np.abs(res.deltas).max())
        rows.append(_row(label, contrib, mask, positives, delta, elapsed))
    return model, X, mask, rows


def _row(label, contrib, mask, positives, delta, seconds):
    per_base = {h: np.abs(c).sum(axis=-1) for h, c in contrib.items()}  # (n, length)
    return {"method": label, "auroc": auroc(per_base["counts"][positives], mask[positives]),
            "auroc_profile": auroc(per_base["profile"][positives], mask[positives]),
            "max_abs_delta": delta, "seconds": seconds, "contributions": contrib["counts"]}


def _report_path(requested):
    """Where the demo's HTML report goes: ``requested``, else a new folder in the temp directory;
    (None, why) without matplotlib, which only an explicit request makes an error (ValueError)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        why = "the HTML report needs matplotlib: pip install 'fastlift[plot]'"
        if requested:
            raise ValueError(f"--report: {why}")
        return None, why
    if requested and not os.path.isdir(os.path.dirname(os.path.abspath(requested))):
        raise ValueError(f"--report {requested}: its directory does not exist")
    return requested or os.path.join(tempfile.mkdtemp(prefix="fastlift-demo-"), "report.html"), None


def main(args) -> int:
    try:
        report, why_not = _report_path(getattr(args, "report", None))
    except ValueError as e:
        print(f"fastlift demo: error: {e}", file=sys.stderr)
        return 1

    def say(msg):
        print(msg, file=sys.stderr, flush=True)

    say(f"fastlift demo: scoring {args.n} simulated {args.length}-bp sequences with {1 + len(IN_MEMORY)} methods "
        "(about 10-20 s at the defaults on a laptop)")
    model, X, mask, rows = run(n=args.n, length=args.length, n_refs=args.refs, seed=args.seed,
                               device=args.device, n_threads=args.threads, report=report, log=say)
    p_counts = model.predict(X)[1][:, 0]
    half = args.n // 2
    print(f"fastlift demo: {args.n} simulated {args.length}-bp sequences at 40% GC; AP-1 {MOTIFS['AP-1']} and "
          f"E-box {MOTIFS['E-box']} planted in the first {half}")
    print(f"model {model.name!r} (trained, bundled): {len(model.nodes)} layers, heads 'profile' "
          f"({args.length} logits) and 'counts' (log reads); predicted log counts {p_counts[:half].mean():.2f} "
          f"with motifs vs {p_counts[half:].mean():.2f} without")
    print(f"references: {args.refs} dinucleotide shuffles per sequence; both heads in one pass "
          "(targets 'profile' preset and counts)")
    print("deeplift rescale ran as the genome scan: FASTA + narrowPeak -> HDF5 score files (as `fastlift "
          "explain`) -> read back")
    print("auROC = planted bases vs the other bases of the same sequences, by |score| per base\n")
    print(f"{'method':<38}{'auROC counts':>14}{'auROC profile':>15}{'max |delta|':>13}{'seconds':>9}")
    for r in rows:
        delta = "-" if r["max_abs_delta"] is None else f"{r['max_abs_delta']:.1e}"
        print(f"{r['method']:<38}{r['auroc']:>14.3f}{r['auroc_profile']:>15.3f}{delta:>13}{r['seconds']:>9.2f}")
    if args.out:
        np.savez_compressed(args.out, sequences=X, planted=mask,
                            **{r["method"].split(" (")[0].replace(" ", "_"): r["contributions"] for r in rows})
        print(f"\ncontributions (counts head) written to {args.out}")
    print(f"\nHTML report of the scan (logos, tracks, summation-to-delta): {report}" if report
          else f"\nno HTML report: {why_not}")
    return 0
