"""Streaming, resumable scans: regions -> DeepLIFT with shuffled references -> score files.

`scan` reads regions in chunks (from a FASTA + BED/narrowPeak, or a one-hot array file),
runs `fastlift.deeplift` on each chunk with references generated inside it, and writes
hypothetical and projected scores to one score file per target (`fastlift.io.scores`), then
commits the chunk. Memory is bounded by the chunk size, never by the number of regions:
the region file is streamed twice (once to validate and count it, once to score it), and
the references of an example exist only while its chunk is computed.

Reproducible by construction: reference ``k`` of region ``i`` depends only on
``(seed, i, k)``, and `deeplift` does not depend on its batch size, so a scan gives the same
bytes for any ``batch_size``, ``chunk_size`` or thread count, equals one `deeplift` call on
all regions, and a resumed scan equals an uninterrupted one (the resume point only decides
which chunks are computed in this process).
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import shutil
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import __version__
from . import references as refs_mod
from .explain import deeplift
from .genomics import Fasta, _region_stream, _Skipped, check_regions, file_digest
from .io.scores import (
    DiskFullError,
    ScoreFileError,
    ScoreLayout,
    ScoreWriter,
    create_score_file,
    read_header,
)
from .model import Model

DEFAULT_CHUNK = 128
F16_MAX = float(np.finfo(np.float16).max)


class ScanError(ValueError):
    """A scan that cannot start or continue (bad arguments, an incompatible existing file)."""


# ----------------------------------------------------------------------------- references


def parse_references(text):
    """CLI reference syntax -> a reference spec (or None for zeros).

    ``dinuc:K`` (dinucleotide shuffles, default K = 20), ``shuffle:K`` (plain shuffles),
    ``kmerN:K`` (N-mer-preserving shuffles, e.g. ``kmer3:20``), ``flat`` (40% GC) or
    ``flat:A,C,G,T`` (given frequencies), ``zeros``.
    """
    if not isinstance(text, str):
        return text
    name, _, arg = text.strip().partition(":")
    try:
        if name == "zeros" and not arg:
            return None
        if name == "flat":
            return refs_mod.flat(tuple(float(v) for v in arg.split(","))) if arg else refs_mod.flat()
        k = int(arg) if arg else 20
        if name == "dinuc":
            return refs_mod.dinuc_shuffle(k)
        if name == "shuffle":
            return refs_mod.shuffle(k)
        if name.startswith("kmer") and name[4:].isdigit():
            return refs_mod.kmer_shuffle(k, kmer=int(name[4:]))
    except ValueError as e:
        raise ScanError(f"references {text!r}: {e}") from None
    raise ScanError(f"references {text!r}: expected dinuc[:K], shuffle[:K], kmerN[:K], flat[:A,C,G,T] or zeros")


class _Numbered(refs_mod.ReferenceSpec):
    """A generator seen from one chunk: the chunk's example e is example ``lo + e`` of the scan."""

    def __init__(self, spec, lo):
        self.spec, self.lo, self.n_refs = spec, lo, spec.n_refs

    def for_layout(self, channel_axis):
        return _Numbered(self.spec.for_layout(channel_axis), self.lo)

    def generate_indexed(self, x, seed, index):
        if hasattr(self.spec, "generate_indexed"):
            return self.spec.generate_indexed(x, seed, self.lo + index)
        return self.spec.generate(x, np.random.default_rng([seed, self.lo + index]))


def _chunk_references(spec, lo):
    if spec is None or isinstance(spec, np.ndarray) or hasattr(spec, "shared_rows"):
        return spec
    return _Numbered(spec, lo)


def _describe_references(spec):
    if spec is None:
        return "zeros"
    if isinstance(spec, refs_mod.CallableReferences):
        f = spec.func
        return f"callable {getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"
    return repr(spec)


# ----------------------------------------------------------------------------- sources


@dataclass
class Chunk:
    lo: int
    onehot: np.ndarray                  # (n, L, 4) uint8
    n_non_acgt: np.ndarray              # (n,) int32
    coords: dict = field(default_factory=dict)


class FastaBedSource:
    """Windows of ``width`` bp from a BED/narrowPeak file, read from an indexed FASTA."""

    def __init__(self, fasta: str, bed: str, width: int, *, on_invalid: str = "error"):
        if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1:
            raise ScanError(f"width must be a positive int; got {width!r}")
        if not os.path.isfile(bed):
            raise FileNotFoundError(f"region file not found: {bed}")
        self.fasta = Fasta(fasta)
        self.bed, self.length, self.on_invalid = bed, int(width), on_invalid
        summary = check_regions(bed, self.length, self.fasta.lengths, on_invalid=on_invalid)
        self.n_regions = summary.n_regions
        self.n_skipped, self.skipped_examples = summary.n_skipped, summary.skipped_examples
        self.chrom_width = max(summary.max_chrom_length, 1)

    def describe(self) -> dict:
        return {"fasta": os.path.abspath(self.fasta.path), "fasta_fingerprint": self.fasta.fingerprint(),
                "regions": os.path.abspath(self.bed), "regions_sha256": file_digest(self.bed),
                "width": self.length, "on_invalid": self.on_invalid}

    def chunks(self, start: int, size: int):
        batch, lo = [], start
        for r in _region_stream(self.bed, self.length, self.fasta.lengths, self.on_invalid, start):
            if isinstance(r, _Skipped):
                continue
            batch.append(r)
            if len(batch) == size:
                yield self._chunk(lo, batch)
                lo += len(batch)
                batch = []
        if batch:
            yield self._chunk(lo, batch)

    def _chunk(self, lo, regions):
        from .genomics import _LUT

        n = len(regions)
        tokens = np.empty((n, self.length), dtype=np.uint8)
        for e, r in enumerate(regions):
            tokens[e] = _LUT[np.frombuffer(self.fasta.fetch(r.chrom, r.start, r.end), dtype=np.uint8)]
        onehot = np.eye(5, 4, dtype=np.uint8)[tokens]
        coords = {"coords_chrom": np.array([r.chrom.encode() for r in regions], dtype=f"S{self.chrom_width}"),
                  "coords_start": np.array([r.start for r in regions], dtype=np.int64),
                  "coords_end": np.array([r.end for r in regions], dtype=np.int64),
                  "region_line": np.array([r.line for r in regions], dtype=np.int64)}
        return Chunk(lo, onehot, (tokens == 4).sum(axis=1).astype(np.int32), coords)

    def close(self):
        self.fasta.close()


class ArraySource:
    """Rows of a one-hot array (numpy, memory-mapped ``.npy`` or an HDF5 dataset), shape (N, L, 4)."""

    chrom_width = 0
    n_skipped = 0

    def __init__(self, X, *, path: str | None = None, key: str | None = None):
        self.skipped_examples: list = []
        shape = tuple(getattr(X, "shape", ()))
        if len(shape) != 3 or shape[2] != 4:
            raise ScanError(f"input {path or 'X'} must be one-hot of shape (n_regions, length, 4); got {shape}")
        self.X, self.path, self.key = X, path, key
        self.n_regions, self.length = int(shape[0]), int(shape[1])

    def describe(self) -> dict:
        if self.path is None:
            h = hashlib.sha256()
            for lo in range(0, self.n_regions, 4096):
                h.update(np.ascontiguousarray(self.X[lo:lo + 4096], dtype=np.uint8).tobytes())
            return {"input": "array", "input_sha256": h.hexdigest()[:16], "width": self.length}
        return {"input": os.path.abspath(self.path), "input_sha256": file_digest(self.path), "key": self.key,
                "width": self.length}

    def chunks(self, start: int, size: int):
        for lo in range(start, self.n_regions, size):
            x = np.asarray(self.X[lo:lo + size])
            ok = ((x == 0) | (x == 1)).all(axis=-1) & (x.sum(axis=-1) <= 1)
            if not ok.all():
                e, pos = np.argwhere(~ok)[0]
                raise ScanError(f"input {self.path or 'X'}: row {lo + e}, position {pos} is not one-hot: "
                                f"{x[e, pos].tolist()}")
            onehot = x.astype(np.uint8)
            yield Chunk(lo, onehot, (onehot.sum(axis=-1) == 0).sum(axis=1).astype(np.int32),
                        {"input_row": np.arange(lo, lo + len(x), dtype=np.int64)})

    def close(self):
        f = getattr(self.X, "file", None)  # an HDF5 dataset from read_input_array: close its file
        if f is not None and hasattr(f, "close"):
            f.close()


# ----------------------------------------------------------------------------- targets and files


def model_fingerprint(model: Model) -> str:
    """Digest of a model's graph and weights (resume refuses a different model)."""
    h = hashlib.sha256()
    for node in model.nodes:
        h.update(f"{node.name}|{type(node.layer).__name__}|{node.shape}|{[i.name for i in node.inputs]}".encode())
        for k in sorted(node.layer.weights):
            w = np.ascontiguousarray(node.layer.weights[k])
            h.update(k.encode() + str(w.dtype).encode() + str(w.shape).encode() + w.tobytes())
    return h.hexdigest()[:16]


def _jsonable(t):
    if isinstance(t, np.ndarray):
        return {"weights_sha256": hashlib.sha256(np.ascontiguousarray(t, np.float64).tobytes()).hexdigest()[:16]}
    if isinstance(t, (list, tuple)):
        return [_jsonable(v) for v in t]
    if isinstance(t, numbers.Integral):
        return int(t)
    return t


def target_names(model: Model, target, target_layer) -> list[str] | None:
    """File labels, one per target of the run; None for a single target (one file, as given)."""
    if isinstance(target_layer, (list, tuple)):
        per = list(target) if isinstance(target, (list, tuple)) else [target] * len(target_layer)
        names = [str(layer) for layer in target_layer]
        if len(set(names)) != len(names):
            names = [f"{layer}_{t if not isinstance(t, np.ndarray) else 'w'}" for layer, t in zip(target_layer, per)]
    elif isinstance(target, (list, tuple)):
        layer = target_layer or model.default_target().name
        names = [f"{layer}_{t if not isinstance(t, np.ndarray) else f'w{i}'}" for i, t in enumerate(target)]
    else:
        return None
    if len(set(names)) != len(names):
        names = [f"{n}_{i}" for i, n in enumerate(names)]
    return [n.replace(os.sep, "_") for n in names]


def output_paths(out: str, names) -> list[str]:
    """``scores.h5`` -> [``scores.h5``] for one target, [``scores.NAME.h5``, ...] for several."""
    if names is None:
        return [out]
    stem, ext = os.path.splitext(out)
    return [f"{stem}.{n}{ext or '.h5'}" for n in names]


# ----------------------------------------------------------------------------- the scan


@dataclass
class ScanResult:
    paths: list
    n_regions: int
    resumed_from: int
    n_scored: int                 # regions computed by this call
    n_skipped: int                # regions dropped (on_invalid="skip")
    n_non_acgt: int               # letters read as all-zero rows, in the regions scored by this call
    max_abs_delta: float          # summation-to-delta over the regions scored by this call
    seconds: float

    @property
    def regions_per_second(self) -> float:
        return self.n_scored / self.seconds if self.seconds > 0 else float("nan")


def scan(model: Model, source, out: str, *, references="dinuc:20", rule: str = "rescale", target=0,
         target_layer=None, seed: int = 0, hypothetical: bool = True, batch_size: int | None = None,
         chunk_size: int | None = None, score_dtype: str = "float16", dtype: str = "float32",
         device: str = "auto", n_threads: int | None = None, max_pool: str = "exact", resume: bool = False,
         overwrite: bool = False, progress: bool = False, log=None) -> ScanResult:
    """Score every region of ``source`` and write score file(s) at ``out``; resumable.

    Parameters
    ----------
    model : Model
        A single-input model taking one-hot (length, 4).
    source : FastaBedSource or ArraySource
    out : str
        Score file (HDF5; layout in `fastlift.io.scores`). With several targets, one file per
        target: ``out`` with ``.NAME`` before the extension (see `target_names`).
    references : str or spec
        As `parse_references` (``"dinuc:20"``) or any `fastlift.deeplift` references value
        that is not an array: None, a spec, a callable ``f(x_one, rng)``.
    rule, target, target_layer, seed, dtype, device, n_threads, max_pool
        As `fastlift.deeplift`. Several targets / target layers share every forward pass.
    hypothetical : bool
        Write ``hyp_scores`` (default; modisco-lite needs them). ``projected_scores`` are
        always written.
    batch_size : int, optional
        Examples per compute batch (default: from `deeplift`'s memory budget).
    chunk_size : int, optional
        Regions per checkpoint (default max(batch_size, 128)). Neither changes the output.
    score_dtype : {"float16", "float32"}
    resume, overwrite : bool
        An existing output is an error unless ``resume`` (continue it; its parameters must
        match) or ``overwrite`` (start again).
    progress : bool
        A progress bar on stderr.
    log : callable, optional
        Receives one-line messages (default: none).

    Returns
    -------
    ScanResult
    """
    say = log or (lambda msg: None)
    if not isinstance(model, Model):
        raise TypeError(f"model must be a fastlift.Model; got {type(model).__name__}")
    if len(model.inputs) != 1:
        raise ScanError(f"scan scores single-input sequence models; this one has inputs {model.input_names}")
    want = (source.length, 4)
    if model.inputs[0].shape != want:
        raise ScanError(f"the model takes inputs of shape {model.inputs[0].shape}; the regions are {want} "
                        "(set --width to the model's input length)")
    if resume and overwrite:
        raise ScanError("pass either resume or overwrite, not both")
    if score_dtype not in ("float16", "float32"):
        raise ScanError(f"score dtype must be 'float16' or 'float32'; got {score_dtype!r}")
    if isinstance(references, np.ndarray):
        raise ScanError("scan generates references per chunk: pass a spec or a string such as 'dinuc:20', "
                        "not an array")
    spec = parse_references(references)
    if callable(spec) and not isinstance(spec, refs_mod.ReferenceSpec):
        spec = refs_mod.CallableReferences(spec)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
                                   or batch_size < 1):
        raise ScanError(f"batch_size must be a positive int or None (auto); got {batch_size!r}")
    if chunk_size is None:
        chunk_size = max(batch_size or 0, DEFAULT_CHUNK)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ScanError(f"chunk_size must be a positive int; got {chunk_size!r}")

    # check rule, targets, device and dtype on one zero example before any file is touched
    deeplift(model, np.zeros((1, source.length, 4), dtype=dtype), None, rule=rule, target=target,
             target_layer=target_layer, hypothetical=True, dtype=dtype, device=device, n_threads=n_threads,
             max_pool=max_pool)
    names = target_names(model, target, target_layer)
    paths = output_paths(out, names)
    layout = ScoreLayout(source.n_regions, source.length, 4, score_dtype, source.chrom_width, bool(hypothetical))
    base = {"fastlift_version": __version__, "model": {"name": model.name, "sha256": model_fingerprint(model)},
            "source": source.describe(), "references": _describe_references(spec), "rule": rule,
            "max_pool": max_pool, "target": _jsonable(target), "target_layer": _jsonable(target_layer),
            "seed": int(seed), "dtype": str(dtype), "score_dtype": score_dtype, "hypothetical": bool(hypothetical)}
    _prepare_outputs(paths, names, layout, base, resume, overwrite, say)

    start = min(read_header(p)["n_done"] for p in paths)
    if start == layout.n_regions:  # (also for files compressed after completion: no writer needed)
        say(f"{', '.join(paths)}: already complete ({layout.n_regions} regions)")
        return ScanResult(paths, layout.n_regions, start, 0, source.n_skipped, 0, 0.0, 0.0)
    writers = [ScoreWriter(p) for p in paths]
    try:
        if start:
            say(f"resuming at region {start} of {layout.n_regions}")
        bar = _Progress(layout.n_regions, start) if progress else None
        t0 = time.perf_counter()
        n_scored = n_bad = 0
        max_delta = 0.0
        for chunk in source.chunks(start, chunk_size):
            n = len(chunk.onehot)
            x = chunk.onehot.astype(dtype)
            res = deeplift(model, x, _chunk_references(spec, chunk.lo), rule=rule, target=target,
                           target_layer=target_layer, hypothetical=True, dtype=dtype, batch_size=batch_size,
                           seed=seed, device=device, n_threads=n_threads, max_pool=max_pool)
            hyp = res.hypothetical if names is not None else res.hypothetical[None]
            deltas = res.deltas if names is not None else res.deltas[None]
            if score_dtype == "float16" and not np.all(np.abs(hyp) <= F16_MAX):
                raise ScanError(f"a score in regions [{chunk.lo}, {chunk.lo + n}) does not fit float16 (|score| > "
                                f"{F16_MAX:g} or not finite): rerun with --score-dtype float32 (--overwrite)")
            for t, w in enumerate(writers):
                arrays = dict(chunk.coords, input_seqs=chunk.onehot, projected_scores=hyp[t] * x,
                              deltas=deltas[t], n_non_acgt=chunk.n_non_acgt)
                if hypothetical:
                    arrays["hyp_scores"] = hyp[t]
                w.write(chunk.lo, **arrays)
            for w in writers:
                w.commit(chunk.lo + n)
            n_scored += n
            n_bad += int(chunk.n_non_acgt.sum())
            max_delta = max(max_delta, float(np.abs(deltas).max()) if deltas.size else 0.0)
            if bar:
                bar.update(chunk.lo + n)
        if bar:
            bar.close()
        seconds = time.perf_counter() - t0
    finally:
        for w in writers:
            w.close()
    done = min(read_header(p)["n_done"] for p in paths)
    if done != layout.n_regions:
        raise ScanError(f"the regions changed while scanning: wrote {done} of {layout.n_regions}")
    return ScanResult(paths, layout.n_regions, start, n_scored, source.n_skipped, n_bad, max_delta, seconds)


def _prepare_outputs(paths, names, layout, base, resume, overwrite, say):
    """Check every output first (exists? resumable? space?), then create the new ones."""
    to_create, needed = [], 0
    for i, path in enumerate(paths):
        target = names[i] if names else "target"
        params = dict(base, output_index=i, output_name=target)
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise ScanError(f"output directory {directory} does not exist")
        if os.path.exists(path) and not (resume or overwrite):
            raise FileExistsError(f"{path} exists; pass --resume to continue it or --overwrite to replace it")
        if os.path.exists(path) and resume:
            _check_resumable(path, layout, params)
            needed += (layout.n_regions - read_header(path)["n_done"]) * layout.bytes_per_region()
        else:
            to_create.append((path, params, target))
            needed += layout.n_regions * layout.bytes_per_region()
    for path, _, _ in to_create:
        if os.path.exists(path):  # overwrite
            os.remove(path)
    _check_space(paths[0], needed)
    for path, params, target in to_create:
        create_score_file(path, layout, params, target)
        say(f"created {path} ({layout.n_regions} regions x {layout.length} bp)")


def _check_resumable(path, layout, params):
    try:
        head = read_header(path)
    except ScoreFileError as e:
        raise ScanError(f"--resume: {e}; use --overwrite to replace it") from None
    old = head["params"]
    if old != json.loads(json.dumps(params, sort_keys=True)):
        keys = sorted(k for k in set(old) | set(params) if old.get(k) != json.loads(json.dumps(params.get(k))))
        detail = "; ".join(f"{k}: file has {old.get(k)!r}, this run {params.get(k)!r}" for k in keys[:4])
        raise ScanError(f"--resume: {path} was written with other parameters ({detail}); rerun with those, or "
                        "use --overwrite to start again")
    expected = {name: ((layout.n_regions,) + tuple(shape), np.dtype(dt).str) for name, shape, dt in layout.datasets()}
    found = {k: v for k, v in head["datasets"].items() if k != "n_done"}
    if {k: (tuple(s), d) for k, (s, d) in found.items()} != expected:
        raise ScanError(f"--resume: {path} does not have the layout this run writes; use --overwrite")


def _check_space(path, needed):
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    if needed > free:
        raise DiskFullError(28, f"not enough disk space for {path}: the scan needs {needed / 1e9:.2f} GB more, "
                                f"{free / 1e9:.2f} GB are free (score files are uncompressed; use "
                                "--score-dtype float16 or a disk with more space)")


class _Progress:
    """Regions done, rate and time left, on stderr."""

    def __init__(self, total, start):
        self.total, self.start, self.t0 = max(total, 1), start, time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def update(self, done):
        now = time.perf_counter()
        if not self.tty and now - self.last < 10 and done < self.total:
            return  # a log file gets a line every 10 s, not every chunk
        self.last = now
        rate = (done - self.start) / max(now - self.t0, 1e-9)
        left = (self.total - done) / rate if rate > 0 else float("inf")
        frac = done / self.total
        bar = "#" * int(30 * frac)
        eta = time.strftime("%H:%M:%S", time.gmtime(left)) if left < 8.64e6 else "?"
        text = f"[{bar:<30}] {done}/{self.total} regions  {rate:.1f}/s  ETA {eta}"
        sys.stderr.write(("\r" + text) if self.tty else (text + "\n"))
        sys.stderr.flush()

    def close(self):
        if self.tty:
            sys.stderr.write("\n")
