"""Streaming, resumable scans: regions -> DeepLIFT with shuffled references -> score files.

`scan` scores regions (from a FASTA + BED/narrowPeak, or a one-hot array file) in chunks with
one `Explainer`, built once per scan, and writes hypothetical and projected scores to one score
file per target (`fastlift.io.scores`), committing each chunk. Three threads overlap
(`fastlift.pipeline`): a reader cuts the windows, one-hot encodes them and makes their
shuffled references; the caller's thread computes; a writer converts, writes, syncs and
commits. Memory is bounded by a few chunks, never by the number of regions: the region file
is streamed twice (once to validate and count it, once to score it), and the references of a
region exist only while its chunk is in flight.

Reproducible by construction: reference ``k`` of region ``i`` depends only on
``(seed, i, k)``, and the engine does not depend on its batch size, so a scan gives the same
bytes for any ``batch_size``, ``chunk_size`` or thread count, equals one `deeplift` call on
all regions, and a resumed scan equals an uninterrupted one (the resume point only decides
which chunks are computed in this process).

Scaling out: ``shard=(i, n)`` scores the contiguous regions ``[i·N // n, (i + 1)·N // n)``
into a file of their own (`shard_path`), as complete, crash-safe and resumable as a whole
scan; `merge` joins the shards of a run into the file one process would have written, byte
for byte. ``client=`` runs those shards as tasks on a Dask cluster (`fastlift.distributed`,
which alone imports Dask) and merges them.
"""

from __future__ import annotations

import enum
import glob
import hashlib
import json
import math
import numbers
import os
import shutil
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import __version__, _validate
from . import references as refs_mod
from ._validate import available_memory
from .explainer import Explainer
from .genomics import kmer_shuffle
from .io.scores import (
    SCORE_DTYPES,
    DiskFullError,
    ScoreFileError,
    ScoreLayout,
    ScoreWriter,
    create_score_file,
    iter_rows,
    lock_outputs,
    merge_score_files,
    read_header,
)
from .model import Model
from .pipeline import Pipeline
from .progress import Progress, format_eta
from .scheduler import DEFAULT_K_GUESS
from .sources import ArraySource, Chunk, FastaBedSource, FastaWindows, ScanError

__all__ = ["ArraySource", "Chunk", "FastaBedSource", "FastaWindows", "ScanError", "ScanJob", "ScanOptions",
           "ScanResult", "Shard", "check_output_path", "compute_description", "format_eta", "merge",
           "model_fingerprint", "output_paths", "parse_references", "scan", "scan_job", "scan_memory", "scan_part",
           "shard_arg", "shard_path", "target_names"]

DEFAULT_CHUNK = 128
DEVICES = ("auto", "cpu", "cuda", "numpy")
F16_MAX = float(np.finfo(np.float16).max)

#: items each queue of the scan's pipeline holds (reader -> compute -> writer)
PIPELINE_DEPTH = 2


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


class _Made(refs_mod.ReferenceSpec):
    """References made ahead for one chunk (on the reader thread): its example ``e`` gets
    ``rows[e]`` (K, L, 4), as the spec would have made them for scan region ``lo + e``."""

    def __init__(self, rows):
        self.rows, self.n_refs = rows, rows.shape[1]

    def generate_indexed(self, x, seed, index):
        return self.rows[index][None]


def _chunk_references(spec, x, lo, seed):
    """The references of the chunk ``x`` (n, L, 4) whose first region is number ``lo``.

    Shared rows (zeros, a flat background) stay a spec: the session forwards them once per
    scan. Shuffles of the whole chunk come from one call (shuffle ``k`` of region ``i``
    depends only on ``(seed, i, k)`` and the region, never on the chunk); a callable runs
    per region with its rng seeded from ``(seed, i)``.
    """
    if spec is None or hasattr(spec, "shared_rows"):
        return spec
    index = np.arange(lo, lo + len(x), dtype=np.int64)
    if isinstance(spec, refs_mod.ShuffleReferences):
        rows = kmer_shuffle(x, spec.n_refs, spec.kmer, seed, index=index, n_threads=1)
    else:
        rows = np.stack([refs_mod.generated(spec, x[e:e + 1], seed, int(i), "references")
                         for e, i in enumerate(index)])
    return _Made(rows)


def _describe_references(spec):
    if spec is None:
        return "zeros"
    if isinstance(spec, refs_mod.CallableReferences):
        f = spec.func
        return f"callable {getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"
    return repr(spec)


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
        for k in sorted(layer.weight_names()):   # derived weights too: fingerprints stay as they were
            w = np.ascontiguousarray(layer.weight(k))
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


# ----------------------------------------------------------------------------- shards


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``count`` of a scan of ``n_regions`` regions: the contiguous regions
    ``[start, stop)``, ``start = index·n_regions // count``."""

    index: int
    count: int
    n_regions: int

    @property
    def start(self) -> int:
        return self.index * self.n_regions // self.count

    @property
    def stop(self) -> int:
        return (self.index + 1) * self.n_regions // self.count

    def record(self, names) -> dict:
        """The ``shard`` entry of a shard file's parameters (`merge` removes it)."""
        return {"index": self.index, "count": self.count, "start": self.start, "stop": self.stop,
                "n_regions": self.n_regions, "outputs": names}


def shard_arg(shard, n_regions: int) -> Shard:
    """``(index, count)`` -> `Shard`, or ScanError."""
    ok = (isinstance(shard, (tuple, list)) and len(shard) == 2
          and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in shard)
          and 0 <= shard[0] < shard[1])
    if not ok:
        raise ScanError(f"shard must be (index, count) with 0 <= index < count; got {shard!r}")
    return Shard(int(shard[0]), int(shard[1]), int(n_regions))


def shard_path(out: str, index: int, count: int) -> str:
    """``scores.h5`` -> ``scores.part-00003-of-00016.h5``: the file of shard ``index`` of ``count``
    (with several targets, `output_paths` adds ``.NAME`` to it as to ``out``)."""
    stem, ext = os.path.splitext(out)
    w = max(5, len(str(count - 1)))
    return f"{stem}.part-{index:0{w}d}-of-{count:0{w}d}{ext or '.h5'}"


# ----------------------------------------------------------------------------- options and runs


def _quiet(msg):
    pass


@dataclass(frozen=True)
class ScanOptions:
    """What a scan computes and how, validated (`scan` builds it from its keywords).

    One object serves the single-process, shard and distributed paths: `explainer` builds the
    session, `record` gives the parameters every score file carries (a resume or a merge must
    match them) and `score` computes one chunk.
    """

    references: Any = None          # a reference spec, or None for zeros
    rule: str = "rescale"
    target: Any = 0
    target_layer: Any = None
    seed: int = 0
    hypothetical: bool = True
    batch_size: int | None = None
    chunk_size: int = DEFAULT_CHUNK
    score_dtype: str = "float16"
    dtype: str = "float32"
    device: str = "auto"
    n_threads: int | None = None
    max_pool: str = "exact"
    precision: str = "float32"
    reverse_complement: bool = False

    def explainer(self, model: Model, device: str | None = None) -> Explainer:
        """The scan's session (validates the rule, targets, device and dtype). ``device``
        overrides the scan's for a check on the client; the precision, which only the scan's
        device can take, then stays float32 (`_options` checked it against the dtype)."""
        precision = self.precision if device is None else "float32"
        return Explainer(model, rule=self.rule, max_pool=self.max_pool, target=self.target,
                         target_layer=self.target_layer, device=device or self.device, dtype=self.dtype,
                         n_threads=self.n_threads, batch_size=self.batch_size, precision=precision)

    def check_strands(self, ex: Explainer, model: Model):
        """With ``reverse_complement``, score one zero region, so that targets without a strand
        pair to swap are refused before any file is touched."""
        if self.reverse_complement:
            ex.deeplift(np.zeros((1, *model.inputs[0].shape), self.dtype), None, reverse_complement=True)

    def record(self) -> dict:
        """The parameters that define the scores, as the score files record them."""
        return {"references": _describe_references(self.references), "rule": self.rule,
                "max_pool": self.max_pool, "target": _jsonable(self.target),
                "target_layer": _jsonable(self.target_layer), "seed": int(self.seed), "dtype": str(self.dtype),
                "score_dtype": self.score_dtype, "hypothetical": bool(self.hypothetical),
                "precision": str(self.precision),
                # absent when off, so that files written before the option still resume
                **({"reverse_complement": True} if self.reverse_complement else {})}

    def score(self, ex: Explainer, x, references, several: bool):
        """(hypothetical scores (T, n, L, 4), deltas (T, n)) of the chunk ``x``; T = 1 unless
        ``several`` targets."""
        res = ex.deeplift(x, references, hypothetical=True, seed=self.seed,
                          reverse_complement=self.reverse_complement)
        if several:
            return res.hypothetical, res.deltas
        return res.hypothetical[None], res.deltas[None]


def _options(model, source, *, references, rule, target, target_layer, seed, hypothetical, batch_size,
             chunk_size, score_dtype, dtype, device, n_threads, max_pool, precision="float32",
             reverse_complement=False) -> ScanOptions:
    """`scan`'s keywords, checked against the model and the source -> `ScanOptions`."""
    if not isinstance(model, Model):
        raise TypeError(f"model must be a fastlift.Model; got {type(model).__name__}")
    if len(model.inputs) != 1:
        raise ScanError(f"scan scores single-input sequence models; this one has inputs {model.input_names}")
    want = (source.length, 4)
    if model.inputs[0].shape != want:
        raise ScanError(f"the model takes inputs of shape {model.inputs[0].shape}; the regions are {want} "
                        "(set --width to the model's input length)")
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
    _validate.precision_arg(precision, dtype)
    if precision == "tf32" and device in ("cpu", "numpy"):  # refused here, not by the first worker's task
        raise ScanError(f"precision='tf32' (TF32 tensor-core GEMMs) needs device='cuda' or 'auto' on a GPU; "
                        f"got device={device!r}")
    if not isinstance(reverse_complement, (bool, np.bool_)):
        raise ScanError(f"reverse_complement must be True or False; got {reverse_complement!r}")
    if chunk_size is None:
        chunk_size = max(batch_size or 0, DEFAULT_CHUNK)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ScanError(f"chunk_size must be a positive int; got {chunk_size!r}")
    return ScanOptions(references=spec, rule=rule, target=target, target_layer=target_layer, seed=seed,
                       hypothetical=bool(hypothetical), batch_size=batch_size, chunk_size=int(chunk_size),
                       score_dtype=score_dtype, dtype=dtype, device=device, n_threads=n_threads, max_pool=max_pool,
                       precision=precision, reverse_complement=bool(reverse_complement))


@dataclass
class ScanJob:
    """A validated scan as the processes that compute it receive it (picklable): the model, the
    options, the output, the target file names, the whole scan's layout and its parameters
    less ``compute`` (each process records the backend it computes on)."""

    model: Model
    options: ScanOptions
    out: str
    names: list | None
    layout: ScoreLayout
    params: dict

    @property
    def key(self) -> str:
        """Names the run (parameters and output): what a worker keys its session by."""
        return hashlib.sha256(json.dumps([self.params, self.out], sort_keys=True).encode()).hexdigest()[:16]


def scan_job(model: Model, source, out: str, options: ScanOptions) -> ScanJob:
    names = target_names(model, options.target, options.target_layer)
    layout = ScoreLayout(source.n_regions, source.length, 4, options.score_dtype, source.chrom_width,
                         options.hypothetical)
    params = {"fastlift_version": __version__, "model": {"name": model.name, "sha256": model_fingerprint(model)},
              "source": source.describe(), **options.record()}
    return ScanJob(model, options, out, names, layout, params)


# ----------------------------------------------------------------------------- the scan


@dataclass
class ScanResult:
    paths: list
    n_regions: int                # regions of the files written (a shard's own)
    resumed_from: int
    n_scored: int                 # regions computed by this call
    n_skipped: int                # regions dropped (on_invalid="skip")
    n_non_acgt: int               # letters read as all-zero rows, in every region of the files (resumed too)
    max_abs_delta: float          # summation-to-delta over the regions scored by this call
    seconds: float
    shard: Shard | None = None    # the part of the scan these files hold (None: all of it)

    @property
    def regions_per_second(self) -> float:
        return self.n_scored / self.seconds if self.seconds > 0 else float("nan")


def scan(model: Model, source, out: str, *, references="dinuc:20", rule: str = "rescale", target=0,
         target_layer=None, seed: int = 0, hypothetical: bool = True, batch_size: int | None = None,
         chunk_size: int | None = None, score_dtype: str = "float16", dtype: str = "float32",
         device: str = "auto", n_threads: int | None = None, max_pool: str = "exact", shard=None, client=None,
         task_size: int | None = None, resume: bool = False, overwrite: bool = False, progress: bool = False,
         log=None, precision: str = "float32", reverse_complement: bool = False) -> ScanResult:
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
        Examples per compute batch (default: from the engine's memory budget).
    chunk_size : int, optional
        Regions per checkpoint (default max(batch_size, 128)). Neither changes the output.
    score_dtype : {"float16", "float32"}
    shard : (int, int), optional
        ``(i, n)``: score only the regions ``[i·N // n, (i + 1)·N // n)`` into
        ``shard_path(out, i, n)``, a complete, resumable file of its own; `merge` joins the
        ``n`` shards into ``out``.
    client : dask.distributed.Client, optional
        Score the regions as shard tasks on this Dask cluster, each worker keeping one engine
        for all its tasks, then merge them into ``out`` (see `fastlift.distributed`). The
        workers must see ``out``'s folder and the inputs at the same paths.
    task_size : int, optional
        With ``client``: regions per task (default: about eight tasks per worker, so that
        they balance).
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
    say = log or _quiet
    options = _options(model, source, references=references, rule=rule, target=target, target_layer=target_layer,
                       seed=seed, hypothetical=hypothetical, batch_size=batch_size, chunk_size=chunk_size,
                       score_dtype=score_dtype, dtype=dtype, device=device, n_threads=n_threads, max_pool=max_pool,
                       precision=precision, reverse_complement=reverse_complement)
    if resume and overwrite:
        raise ScanError("pass either resume or overwrite, not both")
    if client is not None:
        if shard is not None:
            raise ScanError("pass either shard or client, not both: a distributed scan makes its own shards")
        return _scan_on_dask(client, model, source, out, options, task_size=task_size, resume=resume,
                             overwrite=overwrite, progress=progress, say=say)
    if task_size is not None:
        raise ScanError(f"task_size sizes the tasks of a distributed scan (client=...); got {task_size!r} without one")
    part = None if shard is None else shard_arg(shard, source.n_regions)
    with options.explainer(model) as ex:  # rule, targets, device and dtype checked before any file is touched
        options.check_strands(ex, model)
        job = scan_job(model, source, out, options)
        return scan_part(job, ex, source, part, resume=resume, overwrite=overwrite, log=say, progress=progress)


def scan_part(job: ScanJob, ex: Explainer, source, shard: Shard | None = None, *, resume: bool = False,
              overwrite: bool = False, log=None, progress: bool = False, on_commit=None) -> ScanResult:
    """Score the regions of ``shard`` (default: all) of ``job`` with the session ``ex`` into
    their file(s); what `scan` does in one process and each task of a distributed scan does.

    ``source`` must read the shard's regions (a whole source, or its `parts`).
    ``on_commit(n_done)`` is called on the writer thread after each commit with the number of
    regions now final in the files.
    """
    say = log or _quiet
    options, layout = job.options, job.layout
    first, stop = (0, layout.n_regions) if shard is None else (shard.start, shard.stop)
    out = job.out if shard is None else shard_path(job.out, shard.index, shard.count)
    paths = output_paths(out, job.names)
    n_targets = 1 if job.names is None else len(job.names)
    chunk_size = _fit_chunk(job.model, layout.length, options.references, options.dtype, options.score_dtype,
                            n_targets, options.batch_size, options.chunk_size, say)
    base = dict(job.params, compute=compute_description(options.device, options.n_threads))
    if shard is not None:
        base["shard"] = shard.record(job.names)
    own = replace(layout, n_regions=stop - first)
    for path in paths:
        check_output_path(path)
    with lock_outputs(paths):  # held until the files are final: a second writer is refused
        _prepare_outputs(paths, job.names, own, base, resume, overwrite, say)

        start = min(read_header(p)["n_done"] for p in paths)
        if start == own.n_regions:  # (also for files compressed after completion: no writer needed)
            say(f"{', '.join(paths)}: already complete ({own.n_regions} regions)")
            return ScanResult(paths, own.n_regions, start, 0, source.n_skipped, _total_non_acgt(paths[0], start),
                              0.0, 0.0, shard)
        if start:
            say(f"checking that the {start} regions already scored read the same sequences now")
            _check_scored_sequences(source, paths[0], first, start, chunk_size)
        writers = []
        bar = None
        try:
            for p in paths:  # inside the try: a file that fails to open closes those opened before it
                writers.append(ScoreWriter(p))
            if start:
                say(f"resuming at region {start} of {own.n_regions}")
            bar = Progress(own.n_regions, start) if progress else None
            commit = _Committer(writers, first, options, bar, on_commit)
            t0 = time.perf_counter()
            with Pipeline(_read(source, options, first + start, stop, chunk_size), commit, depth=PIPELINE_DEPTH,
                          name="scan") as pipe:
                for chunk, x, references in pipe:
                    try:
                        hyp, deltas = options.score(ex, x, references, job.names is not None)
                    except MemoryError:
                        raise ScanError(f"out of memory computing regions [{chunk.lo}, {chunk.lo + len(x)}); the "
                                        f"regions before {chunk.lo} are saved: rerun with --resume and a smaller "
                                        "--batch-size or --chunk-size") from None
                    pipe.put((chunk, x, hyp, deltas))
            seconds = time.perf_counter() - t0
        finally:
            if bar:  # an error too ends the bar's line: its message then starts a line of its own
                bar.close()
            for w in writers:
                w.close()
        done = min(read_header(p)["n_done"] for p in paths)
        if done != own.n_regions:
            raise ScanError(f"the regions changed while scanning: wrote {done} of {own.n_regions}")
        return ScanResult(paths, own.n_regions, start, commit.n_scored, source.n_skipped,
                          _total_non_acgt(paths[0], done), commit.max_delta, seconds, shard)


def _read(source, options, start, stop, size):
    """The reader thread's work: chunks of regions [start, stop), each with its rows in the
    compute dtype and its references."""
    for chunk in source.chunks(start, size, stop):
        x = chunk.onehot.astype(options.dtype)
        yield chunk, x, _chunk_references(options.references, x, chunk.lo, options.seed)


class _Committer:
    """The writer thread's work on a scored chunk: check, convert, write, sync, then commit."""

    def __init__(self, writers, first, options, bar, on_commit):
        self.writers, self.first, self.options = writers, first, options
        self.bar, self.on_commit = bar, on_commit
        self.n_scored, self.max_delta = 0, 0.0

    def __call__(self, scored):
        chunk, x, hyp, deltas = scored
        n = len(x)
        if self.options.score_dtype == "float16" and not np.all(np.abs(hyp) <= F16_MAX):
            raise ScanError(f"a score in regions [{chunk.lo}, {chunk.lo + n}) does not fit float16 (|score| > "
                            f"{F16_MAX:g} or not finite): rerun with --score-dtype float32 (--overwrite)")
        row = chunk.lo - self.first
        for t, w in enumerate(self.writers):
            arrays = dict(chunk.coords, input_seqs=chunk.onehot, projected_scores=hyp[t] * x, deltas=deltas[t],
                          n_non_acgt=chunk.n_non_acgt)
            if self.options.hypothetical:
                arrays["hyp_scores"] = hyp[t]
            w.write(row, **arrays)
        for w in self.writers:
            w.commit(row + n)
        self.n_scored += n
        self.max_delta = max(self.max_delta, float(np.abs(deltas).max()) if deltas.size else 0.0)
        if self.bar:
            self.bar.update(row + n)
        if self.on_commit:
            self.on_commit(row + n)


# ----------------------------------------------------------------------------- on a Dask cluster

#: tasks per worker the default task size aims at: enough to balance uneven workers, few enough
#: that per-task costs (a shard file, opening the inputs) stay small
TASKS_PER_WORKER = 8


def _scan_on_dask(client, model, source, out, options, *, task_size, resume, overwrite, progress, say):
    """`scan` with ``client``: the regions as shard tasks on the cluster, then merged.

    The client checks the scan (the rule, targets and dtype on a numpy session: the device is
    resolved where the work runs) and the outputs, and skips, with ``resume``, the shards
    already complete. Each task scores one shard as ``scan(shard=(i, n))`` would, with its
    worker thread's one `Explainer` for the run, in resume mode: a task that Dask reruns after
    its worker died continues the shard file from the dead worker's last commit. The shards are
    then merged into ``out`` (byte-identical to one process) and removed.
    """
    from . import distributed

    _validate.choice(options.device, DEVICES, "device")
    with options.explainer(model, device="numpy") as ex:
        options.check_strands(ex, model)
    job = scan_job(model, source, os.path.abspath(out), options)
    n_regions = job.layout.n_regions
    n_workers = max(len(client.scheduler_info().get("workers", {})), 1)
    count = _task_count(task_size, n_regions, n_workers, options.chunk_size)
    finals = output_paths(job.out, job.names)
    for path in finals:
        check_output_path(path)
    with lock_outputs(finals):  # a second client on the same output is refused
        complete = _merged_already(job, finals, resume, overwrite)
        if complete is not None:
            say(f"{', '.join(finals)}: already complete ({n_regions} regions)")
            return complete
        earlier = _shard_count_of_run(job) if resume and task_size is None else None
        if earlier is not None and earlier != count:
            # the default task size follows the workers present: keep the interrupted run's split
            say(f"resuming the {earlier} shards of the interrupted run (not {count} for {n_workers} worker(s))")
            count = earlier
        shards = [Shard(i, count, n_regions) for i in range(count)]
        todo, partial = _shards_to_run(job, shards, resume, overwrite)
        if len(todo) < count:
            say(f"skipping {count - len(todo)} finished shard(s) of {count}")
        bar = Progress(n_regions, n_regions - sum(s.stop - s.start for s in todo)) if progress else None
        tracker = _Tracker(bar, todo, partial)
        if todo:
            say(f"scoring {sum(s.stop - s.start for s in todo)} regions in {len(todo)} task(s) on {n_workers} "
                "worker(s)")
        t0 = time.perf_counter()
        try:
            results = distributed.run_tasks(client, _score_shard, job,
                                            list(zip(todo, source.parts([(s.start, s.stop) for s in todo]))),
                                            on_report=tracker.report, name="fastlift-shard")
        except distributed.WorkerDied as e:
            shard = todo[e.index]
            raise ScanError(f"every worker that ran regions [{shard.start}, {shard.stop}) (shard {shard.index} of "
                            f"{count}) died; the shards finished so far are saved: rerun with --resume") from None
        finally:
            tracker.close()
        seconds = time.perf_counter() - t0
        parts = [p for s in shards for p in output_paths(shard_path(job.out, s.index, count), job.names)]
        merge(parts, job.out, overwrite=True, log=say)
        for p in parts:
            os.remove(p)
        n_scored = sum(r["n_scored"] for r in results)
        return ScanResult(finals, n_regions, n_regions - n_scored, n_scored, source.n_skipped,
                          _total_non_acgt(finals[0], n_regions), max([r["max_abs_delta"] for r in results] + [0.0]),
                          seconds)


def _score_shard(job, item, report):
    """A task of `_scan_on_dask` on a worker: score one shard into its file (resuming it)."""
    from .distributed import worker_session

    shard, part = item
    ex = worker_session(job.key, lambda: job.options.explainer(job.model))
    try:
        res = scan_part(job, ex, part, shard, resume=True, on_commit=report)
    finally:
        part.close()
    return {"n_scored": res.n_scored, "max_abs_delta": res.max_abs_delta}


def _task_count(task_size, n_regions, n_workers, chunk_size) -> int:
    """Tasks of ``task_size`` regions (default: `TASKS_PER_WORKER` per worker, at least one
    chunk each); at least one task."""
    if task_size is None:
        task_size = max(chunk_size, math.ceil(n_regions / (TASKS_PER_WORKER * n_workers)))
    elif isinstance(task_size, bool) or not isinstance(task_size, numbers.Integral) or task_size < 1:
        raise ScanError(f"task_size must be a positive int (regions per task); got {task_size!r}")
    return max(1, math.ceil(n_regions / task_size))


def _shard_count_of_run(job) -> int | None:
    """The shard count of the part files of this run left at ``job.out`` (an interrupted
    distributed scan), or None when there are none."""
    stem, ext = os.path.splitext(job.out)
    for path in sorted(glob.glob(f"{glob.escape(stem)}.part-*-of-*{glob.escape(ext or '.h5')}")):
        head = _header_or_none(path)
        record = head["params"].get("shard") if head is not None else None
        if not isinstance(record, dict):
            continue
        index, count = record.get("index"), record.get("count")
        if isinstance(index, int) and isinstance(count, int) and 0 <= index < count and \
                _same_run(head["params"], job, Shard(index, count, job.layout.n_regions)):
            return int(count)
    return None


def _merged_already(job, finals, resume, overwrite):
    """A `ScanResult` when ``resume`` finds the merged output complete; removes it with
    ``overwrite``; refuses an existing output otherwise."""
    present = [p for p in finals if os.path.exists(p)]
    if not present:
        return None
    if overwrite:
        for p in present:
            os.remove(p)
        return None
    if not resume:
        raise FileExistsError(f"{present[0]} exists; pass --resume to continue it or --overwrite to replace it")
    heads = []
    for p in finals:
        try:
            heads.append(read_header(p))
        except (ScoreFileError, OSError) as e:
            raise ScanError(f"--resume: {e}; use --overwrite to replace it") from None
    n = job.layout.n_regions
    if all(h["n_done"] == n and _same_run(h["params"], job) for h in heads):
        return ScanResult(finals, n, n, 0, 0, _total_non_acgt(finals[0], n), 0.0, 0.0)
    raise ScanError(f"--resume: {present[0]} is not a finished scan of these parameters (a single-process scan "
                    "is resumed without --workers/--scheduler); use --overwrite to start again")


def _same_run(params, job, shard: Shard | None = None) -> bool:
    """Whether a file's parameters are this job's (its backend aside: that is checked where it runs)."""
    mine = dict(job.params, **({"shard": shard.record(job.names)} if shard else {}))
    theirs = {k: v for k, v in params.items() if k not in ("compute", "output_index", "output_name")}
    return theirs == json.loads(json.dumps(mine, sort_keys=True))


def _shards_to_run(job, shards, resume, overwrite):
    """(shards to score, {index: regions already final} of the partial ones among them). With
    ``resume``, a shard whose files are complete and of this run is skipped; with
    ``overwrite``, every existing shard file is removed; otherwise one is an error."""
    todo, partial = [], {}
    for shard in shards:
        paths = output_paths(shard_path(job.out, shard.index, shard.count), job.names)
        there = [p for p in paths if os.path.exists(p)]
        if there and overwrite:
            for p in there:
                os.remove(p)
            there = []
        if there and not resume:
            raise FileExistsError(f"{there[0]} exists (a shard of an interrupted run of this scan); pass --resume "
                                  "to continue it or --overwrite to start again")
        heads = [_header_or_none(p) for p in there]
        if len(there) == len(paths) and all(h is not None and h["n_done"] == shard.stop - shard.start
                                            and _same_run(h["params"], job, shard) for h in heads):
            continue
        todo.append(shard)
        if len(there) == len(paths) and all(h is not None for h in heads):
            partial[shard.index] = min(h["n_done"] for h in heads)
    return todo, partial


def _header_or_none(path):
    try:
        return read_header(path)
    except (ScoreFileError, OSError):
        return None


class _Tracker:
    """Regions final per shard of a distributed scan, from the workers' commits, for the bar."""

    def __init__(self, bar, todo, partial):
        self.bar, self.lock = bar, threading.Lock()
        self.shards = todo
        self.done = {k: partial.get(s.index, 0) for k, s in enumerate(todo)}
        self.base = None if bar is None else bar.start

    def report(self, task, n_done):
        with self.lock:
            self.done[task] = max(self.done[task], n_done)
            if self.bar is not None:
                self.bar.update(self.base + sum(self.done.values()))

    def close(self):
        """End the bar's line (an error too: its message then starts a line of its own); reports
        that arrive later are not drawn."""
        with self.lock:
            if self.bar is not None:
                self.bar.close()
            self.bar = None


# ----------------------------------------------------------------------------- merging shards


def merge(parts, out: str, *, overwrite: bool = False, log=None) -> list[str]:
    """Join the shard files of one run into the score file(s) one process would have written.

    The datasets are copied byte for byte and the parameters are the shards' without their
    ``shard`` entry, so the result is byte-identical to an unsharded run computed on the same
    kind of machine. Refuses parts of different runs (other parameters, models, inputs,
    backends or shard counts), a missing or repeated shard, and a part that is not complete.

    Parameters
    ----------
    parts : list of str
        Shard files (`shard_path`), in any order. With several targets, the files of each
        target; every target given must have all its shards.
    out : str
        Merged file, named as in `scan` (several targets: ``.NAME`` before the extension).
    overwrite : bool
        Replace existing merged files.

    Returns
    -------
    list of str
        The files written.
    """
    say = log or _quiet
    parts = [os.fspath(parts)] if isinstance(parts, (str, os.PathLike)) else [os.fspath(p) for p in parts]
    if not parts:
        raise ScanError("no part files given")
    # the parts' write locks, held while they are read: a shard still being written (or rewritten
    # with --overwrite) is refused at once instead of copied half-written. Parts in a folder this
    # process cannot write to (read-only storage) cannot be written by a scan of ours either.
    lockable = [p for p in parts if os.path.exists(p) and os.access(os.path.dirname(os.path.abspath(p)), os.W_OK)]
    with lock_outputs(lockable):
        return _merge(parts, out, overwrite, say)


def _merge(parts, out, overwrite, say) -> list[str]:
    heads = {}
    for p in parts:
        head = read_header(p)
        record = head["params"].get("shard")
        if not isinstance(record, dict):
            raise ScanError(f"{p} is not a shard file (its parameters have no 'shard' entry: it holds a "
                            "whole scan)")
        fields = [record.get(k) for k in ("index", "count", "start", "stop", "n_regions")]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in fields) or \
                not isinstance(head["params"].get("output_index"), int) or not record["index"] < record["count"]:
            raise ScanError(f"{p}: its shard record {record!r} is damaged (index, count, start, stop and n_regions "
                            "must be whole numbers, index < count)")
        if p in heads:
            raise ScanError(f"{p} is given twice")
        heads[p] = head
    runs = {p: _run_of(h["params"]) for p, h in heads.items()}
    for p in parts[1:]:
        if runs[p] != runs[parts[0]]:
            keys = sorted(k for k in set(runs[p]) | set(runs[parts[0]]) if runs[p].get(k) != runs[parts[0]].get(k))
            detail = "; ".join(f"{k}: {runs[parts[0]].get(k)!r} vs {runs[p].get(k)!r}" for k in keys[:3])
            raise ScanError(f"{parts[0]} and {p} are parts of different runs ({detail}); merge the parts of "
                            "one run")
    first = heads[parts[0]]["params"]["shard"]
    count, n_regions, names = first["count"], first["n_regions"], first["outputs"]
    groups: dict = {}
    for p in parts:
        params = heads[p]["params"]
        index, target = params["shard"]["index"], params["output_name"]
        group = groups.setdefault(params["output_index"], {})
        if index in group:
            raise ScanError(f"{group[index]} and {p} are both shard {index} of {count} (target {target}); "
                            "give each shard once")
        group[index] = p
        bounds = Shard(index, count, n_regions)
        if (params["shard"]["start"], params["shard"]["stop"]) != (bounds.start, bounds.stop) or \
                heads[p]["n_regions"] != bounds.stop - bounds.start:
            raise ScanError(f"{p} does not hold the regions of shard {index} of {count} "
                            f"([{bounds.start}, {bounds.stop}) of {n_regions}); it is damaged")
        if heads[p]["n_done"] != heads[p]["n_regions"]:
            raise ScanError(f"{p} is incomplete ({heads[p]['n_done']} of {heads[p]['n_regions']} regions "
                            f"scored): finish it first (the same fastlift explain command with --shard "
                            f"{index}/{count} --resume)")
    for output, group in sorted(groups.items()):
        missing = [i for i in range(count) if i not in group]
        if missing:
            target = heads[next(iter(group.values()))]["params"]["output_name"]
            shown = ", ".join(map(str, missing[:8])) + (", ..." if len(missing) > 8 else "")
            raise ScanError(f"{len(missing)} of the {count} shards of target {target} are missing (shard "
                            f"{shown}; e.g. {shard_path(out, missing[0], count)}); give every part of the run")
    paths = output_paths(out, names)
    outputs = [(paths[output], group) for output, group in sorted(groups.items())]
    for path, _ in outputs:
        check_output_path(path)
        if os.path.exists(path) and any(os.path.samefile(path, p) for p in parts):
            raise ScanError(f"the output {path} is one of the parts; choose another --out")
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    with lock_outputs([path for path, _ in outputs]):
        for path, group in outputs:
            head = heads[group[0]]
            params = {k: v for k, v in head["params"].items() if k != "shard"}
            layout = _layout_of(group[0], head, n_regions)
            rows = [(Shard(i, count, n_regions).start, group[i]) for i in range(count)]
            for _, p in rows:
                if not _has_layout(heads[p], replace(layout, n_regions=heads[p]["n_regions"])):
                    raise ScanError(f"{p} does not have the layout of the run's other parts")
            merge_score_files(path, layout, params, head["target"], rows)
            say(f"merged {count} shards into {path} ({n_regions} regions)")
    return [path for path, _ in outputs]


def _run_of(params) -> dict:
    """What the parts of one run share: the parameters less the per-file entries, plus the split."""
    run = {k: v for k, v in params.items() if k not in ("shard", "output_index", "output_name")}
    run["shard count"] = params["shard"].get("count")
    run["regions"] = params["shard"].get("n_regions")
    run["targets"] = params["shard"].get("outputs")
    return run


def _layout_of(path, head, n_regions) -> ScoreLayout:
    """The `ScoreLayout` a score file was created with (for ``n_regions`` rows)."""
    d = head["datasets"]
    try:
        length, channels = d["input_seqs"][0][1:]
        score = {v: k for k, v in SCORE_DTYPES.items()}[np.dtype(d["projected_scores"][1]).str]
        chrom = np.dtype(d["coords_chrom"][1]).itemsize if "coords_chrom" in d else 0
    except (KeyError, ValueError, TypeError):
        raise ScanError(f"{path} does not have the datasets of a score file") from None
    return ScoreLayout(n_regions, int(length), int(channels), score, chrom, "hyp_scores" in d)


def scan_memory(model: Model, width: int, n_refs: int, dtype, score_dtype: str, n_targets: int,
                batch_size: int | None) -> tuple[int, int]:
    """(bytes per region of a chunk, bytes of the compute batch): a floor of what a scan holds.

    Per region (``width`` bp, ``n_targets`` files), for every chunk in flight in the pipeline:
    up to ``PIPELINE_DEPTH + 2`` read ahead (queued, being read, being computed), each with its
    window, tokens, one-hot rows, the rows in the compute dtype and its ``n_refs`` references;
    the chunk being computed with its contributions, multipliers and hypothetical scores per
    target and their float64 accumulators; up to ``PIPELINE_DEPTH + 1`` scored chunks waiting
    for or in the writer, with their hypothetical scores and one target's projected scores
    with its conversions to the score dtype. Compute: one forward activation of every layer
    for the example and each of its references, per example of a batch (``batch_size``, or one
    when the engine sizes the batch from its own budget).
    """
    item, sd = np.dtype(dtype).itemsize, np.dtype(SCORE_DTYPES[score_dtype]).itemsize
    read = 9 + 4 * item * (1 + n_refs)
    compute = n_targets * 4 * (3 * 8 + 3 * item)
    write = n_targets * 4 * item + 4 * (2 * item + 2 * sd)
    per_bp = (PIPELINE_DEPTH + 2) * read + compute + (PIPELINE_DEPTH + 1) * write
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
    if not _has_layout(head, layout):
        raise ScanError(f"--resume: {path} does not have the layout this run writes; use --overwrite")


def _has_layout(head, layout) -> bool:
    """Whether the datasets of a score file (`read_header`) are those of ``layout``."""
    expected = {name: ((layout.n_regions,) + tuple(shape), np.dtype(dt).str) for name, shape, dt in layout.datasets()}
    found = {k: (tuple(s), np.dtype(d).str) for k, (s, d) in head["datasets"].items() if k != "n_done"}
    return found == expected


def _total_non_acgt(path, n_done) -> int:
    """Non-ACGT letters over the first ``n_done`` regions of a score file (earlier runs included)."""
    return sum(int(rows.sum(dtype=np.int64)) for _, rows in iter_rows(path, "n_non_acgt", n_done, 1 << 20))


def _check_scored_sequences(source, path, first, n_done, chunk_size):
    """Compare the one-hot rows ``[0, n_done)`` of ``path`` with the windows ``source`` gives now
    for the regions ``[first, first + n_done)`` they were scored from.

    The parameters record the region file's digest and the genome's index, not its letters: a
    FASTA edited in place (same size, same index) would otherwise continue with windows of
    another genome. Reading the windows again costs about what reading them for the scan did.
    """
    stored = iter_rows(path, "input_seqs", n_done, chunk_size)
    for chunk, (lo, rows) in zip(source.chunks(first, chunk_size, first + n_done), stored):
        now = chunk.onehot[:len(rows)]
        if lo + first != chunk.lo or len(now) != len(rows):
            raise ScanError(f"--resume: {path} has {n_done} regions scored, the input now has fewer; "
                            "use --overwrite to start again")
        same = (now == rows.view(np.uint8)).all(axis=(1, 2))
        if not same.all():
            e = int(np.argmin(same))
            raise ScanError(f"--resume: {path}: region {chunk.lo + e} ({source.where(chunk, e)}) reads other bases "
                            "now than when it was scored: the genome or input changed; restore it, or use "
                            "--overwrite to start again")


def _check_space(path, needed):
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    if needed > free:
        raise DiskFullError(28, f"not enough disk space for {path}: the scan needs {needed / 1e9:.2f} GB more, "
                                f"{free / 1e9:.2f} GB are free (score files are uncompressed; use "
                                "--score-dtype float16 or a disk with more space)")
