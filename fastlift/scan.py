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

import enum
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
from ._validate import available_memory
from .explain import deeplift
from .genomics import Fasta, _region_stream, _Skipped, check_regions, file_digest
from .io.scores import (
    SCORE_DTYPES,
    DiskFullError,
    ScoreFileError,
    ScoreLayout,
    ScoreWriter,
    create_score_file,
    iter_rows,
    lock_outputs,
    read_header,
)
from .model import Model
from .scheduler import DEFAULT_K_GUESS

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

    def where(self, chunk, e) -> str:
        """Row ``e`` of ``chunk`` in the user's words: BED file and line, and the window."""
        c = chunk.coords
        return (f"{self.bed}:{int(c['region_line'][e])}, {c['coords_chrom'][e].decode()}:"
                f"{int(c['coords_start'][e])}-{int(c['coords_end'][e])}")

    def close(self):
        self.fasta.close()


class ArraySource:
    """Rows of a one-hot array (numpy, memory-mapped ``.npy`` or an HDF5 dataset).

    ``layout="nlc"``: shape (N, L, 4), the Keras layout the scan computes and writes in;
    ``"ncl"``: shape (N, 4, L) (tangermeme, bpnet-lite, PyTorch), transposed as it is read.
    """

    chrom_width = 0
    n_skipped = 0
    LAYOUTS = ("nlc", "ncl")

    def __init__(self, X, *, path: str | None = None, key: str | None = None, layout: str = "nlc"):
        self.skipped_examples: list = []
        if layout not in self.LAYOUTS:
            raise ScanError(f"layout must be one of {self.LAYOUTS}; got {layout!r}")
        shape = tuple(getattr(X, "shape", ()))
        what = f"input {path or 'X'}"
        if layout == "ncl" and (len(shape) != 3 or shape[1] != 4):
            raise ScanError(f"{what} with --layout ncl must be one-hot of shape (n_regions, 4, length); got {shape}")
        if layout == "nlc" and (len(shape) != 3 or shape[2] != 4):
            hint = (" (an (N, 4, L) array, as tangermeme and bpnet-lite write them: pass --layout ncl)"
                    if len(shape) == 3 and shape[1] == 4 else "")
            raise ScanError(f"{what} must be one-hot of shape (n_regions, length, 4); got {shape}{hint}")
        self.X, self.path, self.key, self.layout = X, path, key, layout
        self.n_regions, self.length = int(shape[0]), int(shape[2] if layout == "ncl" else shape[1])

    def _rows(self, lo, hi):
        x = np.asarray(self.X[lo:hi])
        return x.transpose(0, 2, 1) if self.layout == "ncl" else x

    def describe(self) -> dict:
        if self.path is None:
            h = hashlib.sha256()
            for lo in range(0, self.n_regions, 4096):
                h.update(np.ascontiguousarray(self._rows(lo, lo + 4096), dtype=np.uint8).tobytes())
            return {"input": "array", "input_sha256": h.hexdigest()[:16], "width": self.length}
        return {"input": os.path.abspath(self.path), "input_sha256": file_digest(self.path), "key": self.key,
                "layout": self.layout, "width": self.length}

    def chunks(self, start: int, size: int):
        for lo in range(start, self.n_regions, size):
            x = self._rows(lo, lo + size)
            ok = ((x == 0) | (x == 1)).all(axis=-1) & (x.sum(axis=-1) <= 1)
            if not ok.all():
                e, pos = np.argwhere(~ok)[0]
                raise ScanError(f"input {self.path or 'X'}: row {lo + e}, position {pos} is not one-hot: "
                                f"{x[e, pos].tolist()}")
            onehot = x.astype(np.uint8)
            yield Chunk(lo, onehot, (onehot.sum(axis=-1) == 0).sum(axis=1).astype(np.int32),
                        {"input_row": np.arange(lo, lo + len(x), dtype=np.int64)})

    def where(self, chunk, e) -> str:
        return f"row {chunk.lo + e} of {self.path or 'X'}"

    def close(self):
        f = getattr(self.X, "file", None)  # an HDF5 dataset from read_input_array: close its file
        if f is not None and hasattr(f, "close"):
            f.close()


# ----------------------------------------------------------------------------- targets and files


def model_fingerprint(model: Model) -> str:
    """Digest of everything that defines a model's outputs; resume refuses a different one.

    Covers the graph (node names, input and output lists, shapes, wiring) and, for every layer,
    its class, its hyper-parameters (`Layer.config` and every public attribute: activation,
    padding, dilation, strides, data layout, ...) and the bytes of its weights. Private
    attributes (``_name``) are caches a run fills in and are left out, so a model digests the
    same before and after it is used.
    """
    h = hashlib.sha256()
    h.update(json.dumps({"inputs": model.input_names, "outputs": model.output_names}).encode())
    for node in model.nodes:
        layer = node.layer
        described = {
            "node": node.name, "layer": layer.name, "shape": list(node.shape),
            "inputs": [i.name for i in node.inputs],
            "class": f"{type(layer).__module__}.{type(layer).__qualname__}",
            "config": _canonical(layer.config()),
            "attributes": {k: _canonical(v) for k, v in vars(layer).items()
                           if not k.startswith("_") and k not in ("weights", "name")},
        }
        h.update(json.dumps(described, sort_keys=True).encode())
        for k in sorted(layer.weights):
            w = np.ascontiguousarray(layer.weights[k])
            h.update(k.encode() + str(w.dtype).encode() + str(w.shape).encode() + w.tobytes())
    return h.hexdigest()[:16]


def _canonical(value, depth=0):
    """A JSON-able, address-free description of a hyper-parameter value (exact for floats)."""
    if depth > 8:
        raise ValueError("model_fingerprint: layer attributes nest too deeply to describe")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value).hex()
    if isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        return {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": hashlib.sha256(a.tobytes()).hexdigest()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v, depth + 1) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if hasattr(value, "__dict__"):
        return {"type": kind, "attributes": {k: _canonical(v, depth + 1) for k, v in vars(value).items()
                                             if not k.startswith("_")}}
    return {"type": kind, "repr": repr(value)}


def compute_description(device: str, n_threads=None) -> dict:
    """What computes the scores: the backend ``device`` resolves to here and, on the host, the
    vector ISA of the kernels and the BLAS kernels loaded. Outputs are bitwise reproducible
    for one description, not across them (numpy and cpu differ in the last bits, as can two
    ISAs or BLAS kernel sets), so a resume refuses a change."""
    from .backends import get_ops

    ops = get_ops(device, n_threads)
    out = {"backend": ops.name}
    if ops.name == "cpu":
        from .backends import _cpu

        out["isa"] = _cpu.isa()
    if ops.name in ("cpu", "numpy"):
        out["blas"] = _blas_kernels()
    return out


def _blas_kernels() -> str:
    """The BLAS libraries numpy and scipy loaded (those the kernels call) and the kernel set each
    picked for this CPU (OpenBLAS: its core type). Libraries another package loads do not count."""
    import scipy
    from threadpoolctl import ThreadpoolController

    libs = [lib for lib in ThreadpoolController().info() if lib.get("user_api") == "blas"]
    dirs = [os.path.dirname(os.path.abspath(m.__file__)) for m in (np, scipy)]
    homes = tuple(d + suffix + os.sep for d in dirs for suffix in ("", ".libs"))  # wheels bundle BLAS in X.libs
    ours = [lib for lib in libs if os.path.abspath(lib.get("filepath", "")).startswith(homes)] or libs
    return ",".join(sorted({f"{lib.get('internal_api')}:{lib.get('architecture') or '-'}" for lib in ours}))


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
    n_non_acgt: int               # letters read as all-zero rows, in every region of the files (resumed too)
    max_abs_delta: float          # summation-to-delta over the regions scored by this call
    seconds: float

    @property
    def regions_per_second(self) -> float:
        return self.n_scored / self.seconds if self.seconds > 0 else float("nan")


def scan(model: Model, source, out: str, *, references="dinuc:20", rule: str = "rescale", target=0,
         target_layer=None, seed: int = 0, hypothetical: bool = True, batch_size: int | None = None,
         chunk_size: int | None = None, score_dtype: str = "float16", dtype: str = "float32",
         device: str = "auto", n_threads: int | None = None, max_pool: str = "exact", resume: bool = False,
         overwrite: bool = False, progress: bool = False, log=None, precision: str = "float32",
         reverse_complement: bool = False) -> ScanResult:
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
    rule, target, target_layer, seed, dtype, device, n_threads, max_pool, precision
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
    reverse_complement : bool
        Average each region's scores with its reverse complement's (see `fastlift.deeplift`);
        recorded in the run's parameters, so a resume refuses a change.

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

    names = target_names(model, target, target_layer)
    chunk_size = _fit_chunk(model, source.length, spec, dtype, score_dtype, 1 if names is None else len(names),
                            batch_size, chunk_size, say)

    # check rule, targets, device and dtype on one zero example before any file is touched
    deeplift(model, np.zeros((1, source.length, 4), dtype=dtype), None, rule=rule, target=target,
             target_layer=target_layer, hypothetical=True, dtype=dtype, device=device, n_threads=n_threads,
             max_pool=max_pool, precision=precision, reverse_complement=reverse_complement)
    paths = output_paths(out, names)
    layout = ScoreLayout(source.n_regions, source.length, 4, score_dtype, source.chrom_width, bool(hypothetical))
    base = {"fastlift_version": __version__, "model": {"name": model.name, "sha256": model_fingerprint(model)},
            "source": source.describe(), "references": _describe_references(spec), "rule": rule,
            "max_pool": max_pool, "target": _jsonable(target), "target_layer": _jsonable(target_layer),
            "seed": int(seed), "dtype": str(dtype), "score_dtype": score_dtype, "hypothetical": bool(hypothetical),
            "compute": compute_description(device, n_threads), "precision": str(precision)}
    if reverse_complement:  # absent when off, so files written before the option still resume
        base["reverse_complement"] = True
    for path in paths:
        check_output_path(path)
    with lock_outputs(paths):  # held until the files are final: a second writer is refused
        _prepare_outputs(paths, names, layout, base, resume, overwrite, say)

        start = min(read_header(p)["n_done"] for p in paths)
        if start == layout.n_regions:  # (also for files compressed after completion: no writer needed)
            say(f"{', '.join(paths)}: already complete ({layout.n_regions} regions)")
            return ScanResult(paths, layout.n_regions, start, 0, source.n_skipped, _total_non_acgt(paths[0], start),
                              0.0, 0.0)
        if start:
            say(f"checking that the {start} regions already scored read the same sequences now")
            _check_scored_sequences(source, paths[0], start, chunk_size)
        writers = [ScoreWriter(p) for p in paths]
        try:
            if start:
                say(f"resuming at region {start} of {layout.n_regions}")
            bar = _Progress(layout.n_regions, start) if progress else None
            t0 = time.perf_counter()
            n_scored = 0
            max_delta = 0.0
            for chunk in source.chunks(start, chunk_size):
                n = len(chunk.onehot)
                x = chunk.onehot.astype(dtype)
                try:
                    res = deeplift(model, x, _chunk_references(spec, chunk.lo), rule=rule, target=target,
                                   target_layer=target_layer, hypothetical=True, dtype=dtype, batch_size=batch_size,
                                   seed=seed, device=device, n_threads=n_threads, max_pool=max_pool,
                                   precision=precision, reverse_complement=reverse_complement)
                except MemoryError:
                    raise ScanError(f"out of memory computing regions [{chunk.lo}, {chunk.lo + n}); the first "
                                    f"{chunk.lo} regions are saved: rerun with --resume and a smaller --batch-size "
                                    "or --chunk-size") from None
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
        return ScanResult(paths, layout.n_regions, start, n_scored, source.n_skipped, _total_non_acgt(paths[0], done),
                          max_delta, seconds)


def scan_memory(model: Model, width: int, n_refs: int, dtype, score_dtype: str, n_targets: int,
                batch_size: int | None) -> tuple[int, int]:
    """(bytes per region of a chunk, bytes of the compute batch): a floor of what a scan holds.

    Per region (``width`` bp, ``n_targets`` files): the window as read, its tokens and one-hot
    rows, the example in the compute dtype, the chunk's contributions, multipliers and
    hypothetical scores per target with their float64 accumulators, and one target's
    projected scores with its conversions to the score dtype. Compute: one forward activation of
    every layer for the example and each of its ``n_refs`` references, per example of a batch
    (``batch_size``, or one when the engine sizes the batch from its own budget).
    """
    item, sd = np.dtype(dtype).itemsize, np.dtype(SCORE_DTYPES[score_dtype]).itemsize
    per_bp = 9 + 4 * item + n_targets * 4 * (3 * 8 + 3 * item) + 4 * (item + 2 * sd)
    values = sum(node.size for node in model.nodes)
    return width * per_bp, (batch_size or 1) * item * (1 + n_refs) * values


def _fit_chunk(model, width, spec, dtype, score_dtype, n_targets, batch_size, chunk_size, say):
    """``chunk_size``, made smaller when a chunk would not fit the memory available (the output
    does not depend on it); ScanError when one region does not fit."""
    budget = available_memory()
    if budget is None:
        return chunk_size
    n_refs = 1 if spec is None else (getattr(spec, "n_refs", None) or DEFAULT_K_GUESS)  # a callable: unknown
    per_region, compute = scan_memory(model, width, n_refs, dtype, score_dtype, n_targets, batch_size)
    fits = (budget - compute) // per_region
    if fits < 1:
        batch = f" and --batch-size {batch_size}" if batch_size else ""
        raise ScanError(f"one region of --width {width}{batch} needs about {(per_region + compute) / 1e9:.2f} GB "
                        f"({per_region / 1e9:.2f} GB of scan arrays and {compute / 1e9:.1f} GB to compute it with "
                        f"{n_refs} references), more than the {budget / 1e9:.2f} GB of memory available: use a "
                        "smaller --width (the model's input length), fewer references or a machine with more memory")
    if fits < chunk_size:
        say(f"--chunk-size {chunk_size} needs about {(chunk_size * per_region + compute) / 1e9:.1f} GB, "
            f"{budget / 1e9:.1f} GB are available: checkpointing every {fits} regions instead (the output "
            "does not depend on it)")
        return int(fits)
    return chunk_size


def _prepare_outputs(paths, names, layout, base, resume, overwrite, say):
    """Check every output first (exists? resumable? space?), then create the new ones."""
    to_create, needed = [], 0
    for i, path in enumerate(paths):
        target = names[i] if names else "target"
        params = dict(base, output_index=i, output_name=target)
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


def check_output_path(path):
    """The output's directory exists and the output is not a directory (before locking it)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ScanError(f"output directory {directory} does not exist")
    if os.path.isdir(path):
        raise ScanError(f"output {path} is a directory; give a file name such as {os.path.join(path, 'scores.h5')}")


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


def _total_non_acgt(path, n_done) -> int:
    """Non-ACGT letters over the first ``n_done`` regions of a score file (earlier runs included)."""
    return sum(int(rows.sum(dtype=np.int64)) for _, rows in iter_rows(path, "n_non_acgt", n_done, 1 << 20))


def _check_scored_sequences(source, path, n_done, chunk_size):
    """Compare the one-hot rows ``[0, n_done)`` of ``path`` with the windows ``source`` gives now.

    The parameters record the region file's digest and the genome's index, not its letters: a
    FASTA edited in place (same size, same index) would otherwise continue with windows of
    another genome. Reading the windows again costs about what reading them for the scan did.
    """
    stored = iter_rows(path, "input_seqs", n_done, chunk_size)
    for chunk, (lo, rows) in zip(source.chunks(0, chunk_size), stored):
        now = chunk.onehot[:len(rows)]
        if lo != chunk.lo or len(now) != len(rows):
            raise ScanError(f"--resume: {path} has {n_done} regions scored, the input now has fewer; "
                            "use --overwrite to start again")
        same = (now == rows.view(np.uint8)).all(axis=(1, 2))
        if not same.all():
            e = int(np.argmin(same))
            raise ScanError(f"--resume: {path}: region {lo + e} ({source.where(chunk, e)}) reads other bases "
                            "now than when it was scored: the genome or input changed; restore it, or use "
                            "--overwrite to start again")


def _check_space(path, needed):
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    if needed > free:
        raise DiskFullError(28, f"not enough disk space for {path}: the scan needs {needed / 1e9:.2f} GB more, "
                                f"{free / 1e9:.2f} GB are free (score files are uncompressed; use "
                                "--score-dtype float16 or a disk with more space)")


def format_eta(seconds: float) -> str:
    """Time left as ``HH:MM:SS``, with days in front past 24 h (``2d 01:00:00``); ``?`` when unknown
    or beyond a year (a rate measured over too little work)."""
    if not seconds < 365 * 86400:  # (also nan, inf)
        return "?"
    days, rest = divmod(round(seconds), 86400)
    clock = f"{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}"
    return f"{days}d {clock}" if days else clock


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
        text = f"[{bar:<30}] {done}/{self.total} regions  {rate:.1f}/s  ETA {format_eta(left)}"
        sys.stderr.write(("\r" + text) if self.tty else (text + "\n"))
        sys.stderr.flush()

    def close(self):
        if self.tty:
            sys.stderr.write("\n")
