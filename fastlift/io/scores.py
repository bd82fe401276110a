"""Score files of `fastlift.scan`: an HDF5 layout modisco-lite reads, written crash-safely.

Layout (one file per target; N regions of L bp, channels A, C, G, T)
--------------------------------------------------------------------
=====================  =================  ================================================
dataset                shape, dtype       content
=====================  =================  ================================================
``input_seqs``         (N, L, 4) int8     one-hot sequences (all-zero rows: N / non-ACGT)
``hyp_scores``         (N, L, 4) f2/f4    hypothetical contributions, mean over references
``projected_scores``   (N, L, 4) f2/f4    ``hyp_scores * input_seqs``: the contribution of
                                          the base present (sums to the DeepLIFT total)
``deltas``             (N,) float32       summation-to-delta error per region
``n_non_acgt``         (N,) int32         letters read as all-zero rows
``coords_chrom``       (N,) S             window chromosome  } FASTA + BED runs only:
``coords_start``       (N,) int64         window start (0-based) } the windows scored,
``coords_end``         (N,) int64         window end (exclusive) } ``end - start = L``
``region_line``        (N,) int64         1-based line of the region in the BED file
``input_row``          (N,) int64         row of the region in ``--input`` (array runs)
``n_done``             (1,) int64         regions written so far (the commit record)
=====================  =================  ================================================

Root attributes: ``format`` (``"fastlift-scores"``), ``format_version``, ``n_regions``,
``target``, ``params`` (JSON: model, inputs, references, rule, seed, ... of the run).
``modisco motifs -i FILE -n ... -w ...`` reads ``hyp_scores`` and ``input_seqs`` (its
legacy-HDF5 input, the BPNet layout); `export_modisco_npz` writes its npz pair instead.

Crash safety
------------
The file is created complete (every dataset allocated, contiguous, uncompressed) under a
temporary name and renamed into place, and its HDF5 metadata is never written again. Rows
are then written with ``pwrite`` at their fixed byte offsets, ``fsync``-ed, and only then is
``n_done`` advanced (one aligned 8-byte write) and synced. A process killed at any point
leaves a valid HDF5 file whose first ``n_done`` rows are final; rows past ``n_done`` may hold
a torn write and are rewritten on resume, so a resumed file ends byte-identical to an
uninterrupted one. The price is no compression (``h5repack -f GZIP=4`` afterwards if wanted).

This is the only module besides the model loaders that imports h5py (STYLE: ``io/`` only).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import threading
from dataclasses import dataclass

import h5py
import numpy as np

from .hdf5 import check_members_local

FORMAT = "fastlift-scores"
FORMAT_VERSION = 1
SCORE_DTYPES = {"float16": "<f2", "float32": "<f4"}


class ScoreFileError(ValueError):
    """A score file that cannot be used (not ours, other parameters, damaged)."""


class DiskFullError(OSError):
    """The disk filled up while writing; the rows committed so far are safe."""


class OutputBusyError(ScoreFileError):
    """Another process (or thread) is writing the same score file."""


@dataclass(frozen=True)
class ScoreLayout:
    """Shape of a score file: N regions of ``length`` positions."""

    n_regions: int
    length: int
    n_channels: int = 4
    score_dtype: str = "float16"
    chrom_width: int = 0          # > 0: FASTA/BED coordinates (longest chromosome name, bytes)
    hypothetical: bool = True     # False: no hyp_scores (projected scores only)

    def datasets(self):
        """[(name, per-row shape, numpy dtype string)] in file order."""
        n_l_c = (self.length, self.n_channels)
        sd = SCORE_DTYPES[self.score_dtype]
        out = [("input_seqs", n_l_c, "|i1")] + ([("hyp_scores", n_l_c, sd)] if self.hypothetical else [])
        out += [("projected_scores", n_l_c, sd), ("deltas", (), "<f4"), ("n_non_acgt", (), "<i4")]
        if self.chrom_width > 0:
            out += [("coords_chrom", (), f"|S{self.chrom_width}"), ("coords_start", (), "<i8"),
                    ("coords_end", (), "<i8"), ("region_line", (), "<i8")]
        else:
            out += [("input_row", (), "<i8")]
        return out

    def bytes_per_region(self) -> int:
        return sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize for _, shape, dt in self.datasets())


def lock_path(path: str) -> str:
    """The advisory lock file of score file ``path``: ``.NAME.lock`` next to it."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.lock")


_held: dict = {}                   # lock file -> (fd, owning thread, depth) for the locks this process holds
_held_guard = threading.Lock()


@contextlib.contextmanager
def lock_outputs(paths):
    """Hold an exclusive advisory lock (``flock``) on each score file of ``paths`` for the block.

    A second writer, in another process or another thread, gets `OutputBusyError` at once
    instead of replacing or interleaving rows of a file being written. The lock lives on a
    separate file (`lock_path`) because ``--overwrite`` replaces the score file itself. Nested
    use in one thread (the command line around `fastlift.scan.scan`) is allowed.
    """
    taken = []
    try:
        for path in sorted({lock_path(p) for p in paths}):
            _acquire(path)
            taken.append(path)
        yield
    finally:
        for path in reversed(taken):
            _release(path)


def _acquire(path):
    me = threading.get_ident()
    with _held_guard:
        held = _held.get(path)
        if held is not None:
            fd, owner, depth = held
            if owner != me:
                raise OutputBusyError(f"{_score_of(path)} is being "
                                      "written by another thread of this process; wait for it or choose another --out")
            _held[path] = (fd, owner, depth + 1)
            return
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise ScoreFileError(f"cannot write {_score_of(path)}: its directory is not writable ({e.strerror}; "
                                     f"the lock file {os.path.basename(path)} cannot be created there)") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                    who = f"process {pid}" if pid.isdigit() else "another process"
                    raise OutputBusyError(f"{_score_of(path)} is being written by {who} (lock {path}); wait for it "
                                          "to finish or choose another --out") from None
                raise
            try:  # the holder before us may have removed the file after we opened it: lock the new one
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held[path] = (fd, me, 1)


def _release(path):
    with _held_guard:
        fd, owner, depth = _held[path]
        if depth > 1:
            _held[path] = (fd, owner, depth - 1)
            return
        del _held[path]
        try:
            os.unlink(path)  # while still locked: a waiter that opened it sees it was removed and retries
        except OSError:
            pass
        os.close(fd)


def _score_of(lock):
    directory, name = os.path.split(lock)
    return os.path.join(directory, name[1:-len(".lock")])


def _dcpl():
    """Contiguous, allocated at creation, never filled: fixed offsets, sparse until written."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.CONTIGUOUS)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    return dcpl


def create_score_file(path: str, layout: ScoreLayout, params: dict, target: str) -> None:
    """Create ``path`` atomically with every dataset allocated and ``n_done = 0``.

    The bytes depend only on the arguments (no timestamps), so two runs with the same
    parameters produce identical files.
    """
    _create_atomically(path, layout, params, target, "creating", lambda fd, offsets: 0)


def merge_score_files(path: str, layout: ScoreLayout, params: dict, target: str, parts) -> None:
    """Create ``path`` atomically from complete score files holding its rows.

    ``parts``: ``[(first row, part path)]`` covering rows ``[0, layout.n_regions)`` in order,
    each part a file of this layout's datasets (its own number of rows). The file is created as
    `create_score_file` creates it, every part's rows are copied byte for byte to their
    offsets, and ``n_done`` is set to ``n_regions``: the bytes are those of a file of the same
    parameters written in one run. Nothing is at ``path`` until the whole file is synced.
    """
    def copy_rows(fd, offsets):
        row = 0
        for lo, part in parts:
            if lo != row:
                raise ValueError(f"merge: parts must cover the rows in order; {part} starts at {lo}, not {row}")
            src_offsets = _offsets(part)
            n = read_header(part)["n_regions"]
            src = os.open(part, os.O_RDONLY)
            try:
                for name, (off, row_bytes, dt, row_shape) in offsets.items():
                    if name == "n_done":
                        continue
                    if name not in src_offsets or src_offsets[name][1:] != (row_bytes, dt, row_shape):
                        raise ScoreFileError(f"{part}: dataset {name!r} differs from the merged file's")
                    if n and row_bytes:
                        _copy(src, src_offsets[name][0], fd, off + lo * row_bytes, n * row_bytes)
            finally:
                os.close(src)
            row += n
        if row != layout.n_regions:
            raise ValueError(f"merge: the parts hold {row} rows; the file has {layout.n_regions}")
        return layout.n_regions

    _create_atomically(path, layout, params, target, "merging", copy_rows)


def _copy(src, src_off, dst, dst_off, nbytes, block=1 << 24):
    while nbytes > 0:
        data = os.pread(src, min(block, nbytes), src_off)
        if not data:
            raise ScoreFileError(f"a part file ends early (offset {src_off}); it is truncated")
        view = memoryview(data)
        while view:
            written = os.pwrite(dst, view, dst_off)
            view, dst_off = view[written:], dst_off + written
        src_off += len(data)
        nbytes -= len(data)


def _create_atomically(path, layout, params, target, doing, fill):
    """Allocate the file under a temporary name, let ``fill(fd, offsets)`` write rows and return
    ``n_done``, record it, sync, and rename the file into place."""
    if layout.score_dtype not in SCORE_DTYPES:
        raise ValueError(f"score dtype must be one of {sorted(SCORE_DTYPES)}; got {layout.score_dtype!r}")
    directory = os.path.dirname(os.path.abspath(path))
    prefix = f".{os.path.basename(path)}.{doing}-"
    _remove_stale(directory, prefix)
    tmp = os.path.join(directory, f"{prefix}{os.getpid()}")
    try:
        with h5py.File(tmp, "w", libver="earliest", track_order=False) as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["n_regions"] = layout.n_regions
            f.attrs["target"] = target
            f.attrs["params"] = json.dumps(params, sort_keys=True)
            for name, shape, dt in layout.datasets():
                f.create_dataset(name, shape=(layout.n_regions,) + tuple(shape), dtype=dt, dcpl=_dcpl(),
                                 track_times=False)
            f.create_dataset("n_done", shape=(1,), dtype="<i8", dcpl=_dcpl(), track_times=False)
        fd = os.open(tmp, os.O_RDWR)
        try:
            offsets = _offsets(tmp)
            n_done = fill(fd, offsets)
            os.pwrite(fd, np.array([n_done], "<i8").tobytes(), offsets["n_done"][0])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(directory)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(e.errno, f"disk full while {doing} {path}: {e.strerror}") from None
        raise


def _remove_stale(directory, prefix):
    """Delete half-created files of ``prefix`` left by processes that are gone (killed mid-creation)."""
    for name in os.listdir(directory):
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):]
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
                continue  # that process still runs
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        try:
            os.remove(os.path.join(directory, name))
        except OSError:
            pass


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory; the rename itself is atomic
    finally:
        os.close(fd)


def _offsets(path) -> dict:
    """{dataset: (byte offset, row bytes, dtype, row shape)} of a file we created."""
    out = {}
    with open_scores(path) as f:
        for name, d in f.items():
            if not isinstance(d, h5py.Dataset):
                continue
            off = d.id.get_offset()
            row_shape = d.shape[1:]
            row_bytes = int(np.prod(row_shape, dtype=np.int64)) * d.dtype.itemsize
            if off is None and d.size:
                raise ScoreFileError(f"{path}: dataset {name!r} has no contiguous storage; not a fastlift score "
                                     "file (or it was repacked): write to a new file")
            out[name] = (off, row_bytes, d.dtype, row_shape)
    return out


def open_scores(path: str) -> h5py.File:
    """Open an existing score file read-only, refusing members that would make libhdf5 read
    another file (external or soft links, virtual datasets, external storage): a score file
    given to `load_scores`, `fastlift report` or `fastlift merge` reads nothing else."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ScoreFileError(f"{path} is not a readable HDF5 file ({e})") from None
    try:
        check_members_local(f, str(path), ScoreFileError)
    except BaseException:
        f.close()
        raise
    return f


def read_header(path: str) -> dict:
    """Attributes and progress of a score file: format, n_regions, n_done, target, params."""
    with open_scores(path) as f:
        if f.attrs.get("format") != FORMAT:
            raise ScoreFileError(f"{path} is not a fastlift score file (no format={FORMAT!r} attribute)")
        version = int(f.attrs["format_version"])
        if version != FORMAT_VERSION:
            raise ScoreFileError(f"{path} has score format version {version}; this fastlift writes "
                                 f"{FORMAT_VERSION}")
        return {"n_regions": int(f.attrs["n_regions"]), "n_done": int(f["n_done"][0]),
                "target": str(f.attrs["target"]), "params": json.loads(f.attrs["params"]),
                "datasets": {name: (d.shape, d.dtype.str) for name, d in f.items() if isinstance(d, h5py.Dataset)}}


class ScoreWriter:
    """Write rows of an existing score file at fixed offsets; `commit` advances ``n_done``."""

    def __init__(self, path: str):
        self.path = path
        self.header = read_header(path)
        self._layout = _offsets(path)
        self._fd = os.open(path, os.O_RDWR)

    @property
    def n_done(self) -> int:
        return self.header["n_done"]

    def write(self, lo: int, **arrays) -> None:
        """Rows ``[lo, lo + len)`` of the named datasets (converted to the file's dtypes)."""
        for name, a in arrays.items():
            off, row_bytes, dt, row_shape = self._layout[name]
            a = np.ascontiguousarray(a, dtype=dt)
            if a.shape[1:] != row_shape or lo + a.shape[0] > self.header["n_regions"] or lo < 0:
                raise ValueError(f"{name}: rows [{lo}, {lo + a.shape[0]}) of shape {a.shape[1:]} do not fit "
                                 f"{self.header['n_regions']} rows of {row_shape}")
            if a.size:
                self._pwrite(a.tobytes(), off + lo * row_bytes)

    def commit(self, n_done: int) -> None:
        """Make rows ``[0, n_done)`` final: sync the data, then record ``n_done`` and sync again."""
        self._sync()
        self._pwrite(np.array([n_done], "<i8").tobytes(), self._layout["n_done"][0])
        self._sync()
        self.header["n_done"] = int(n_done)

    def _pwrite(self, data: bytes, offset: int) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.pwrite(self._fd, view, offset)
            except OSError as e:
                self._raise_disk(e)
                raise
            view, offset = view[written:], offset + written

    def _sync(self):
        try:
            os.fsync(self._fd)
        except OSError as e:
            self._raise_disk(e)
            raise

    def _raise_disk(self, e):
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(e.errno, f"disk full while writing {self.path} ({e.strerror}); the first "
                                         f"{self.n_done} regions are saved: free space and rerun with --resume") \
                from None

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def compress_score_file(path: str, level: int = 4, rows: int = 256) -> None:
    """Rewrite a complete score file with gzip-compressed, chunked datasets, in place (atomically).

    The result reads the same (h5py, modisco-lite) and is about half the size (one-hot and projected
    scores shrink a lot, float16 hypothetical scores little), but rows can no
    longer be written at fixed offsets: compress only a finished scan (``--compress``). Memory:
    ``rows`` regions at a time.
    """
    head = read_header(path)
    if head["n_done"] != head["n_regions"]:
        raise ScoreFileError(f"{path} is not complete ({head['n_done']} of {head['n_regions']} regions); "
                             "finish it with --resume before compressing")
    directory = os.path.dirname(os.path.abspath(path))
    prefix = f".{os.path.basename(path)}.compressing-"
    _remove_stale(directory, prefix)
    tmp = os.path.join(directory, f"{prefix}{os.getpid()}")
    try:
        with open_scores(path) as src, h5py.File(tmp, "w", libver="earliest") as dst:
            for k, v in src.attrs.items():
                dst.attrs[k] = v
            for name, d in src.items():
                if name == "n_done" or d.shape[0] == 0:
                    dst.create_dataset(name, data=d[()], track_times=False)
                    continue
                chunks = (min(rows, d.shape[0]),) + d.shape[1:]
                out = dst.create_dataset(name, shape=d.shape, dtype=d.dtype, chunks=chunks, compression="gzip",
                                         compression_opts=level, shuffle=d.dtype.itemsize > 1, track_times=False)
                for lo in range(0, d.shape[0], rows):
                    out[lo:lo + rows] = d[lo:lo + rows]
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(directory)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_scores(path: str, names=None, start: int = 0, stop: int | None = None) -> dict:
    """Arrays of a score file, rows ``[start, stop)`` (default: every committed row).

    Returns {name: array} plus ``"n_done"``, ``"n_regions"``, ``"target"`` and ``"params"``.
    """
    head = read_header(path)
    stop = head["n_done"] if stop is None else min(stop, head["n_done"])
    out = {"n_done": head["n_done"], "n_regions": head["n_regions"], "target": head["target"],
           "params": head["params"]}
    with open_scores(path) as f:
        for name, d in f.items():
            if name == "n_done" or (names is not None and name not in names):
                continue
            out[name] = d[start:stop]
    return out


def iter_rows(path: str, name: str, stop: int, size: int):
    """Yield ``(lo, rows)`` of dataset ``name``: rows ``[lo, lo + size)`` for lo = 0, size, ...
    up to ``stop``, read through one open file (memory: ``size`` rows)."""
    with open_scores(path) as f:
        d = f[name]
        for lo in range(0, min(stop, d.shape[0]), size):
            yield lo, d[lo:min(lo + size, stop)]


def read_input_array(path: str, key: str | None = None):
    """A one-hot array from ``.npy``, ``.npz`` (key, or its only / ``arr_0`` member) or ``.h5``
    (key, or ``input_seqs``, or the only dataset). HDF5 datasets are returned as h5py
    datasets (sliced lazily by the scan); everything else as numpy arrays (``.npy``
    memory-mapped)."""
    if path.endswith(".npy"):
        return np.load(path, mmap_mode="r")
    if path.endswith(".npz"):
        with np.load(path) as z:
            keys = list(z.keys())
            pick = key or ("arr_0" if "arr_0" in keys else (keys[0] if len(keys) == 1 else None))
            if pick is None or pick not in keys:
                raise ScoreFileError(f"{path}: name the array to read (members: {keys})")
            return z[pick]
    if path.endswith((".h5", ".hdf5")):
        f = open_scores(path)   # any HDF5 file; its members must be stored in it
        keys = [k for k, v in f.items() if isinstance(v, h5py.Dataset)]
        pick = key or ("input_seqs" if "input_seqs" in keys else (keys[0] if len(keys) == 1 else None))
        if pick is None or pick not in keys:
            f.close()
            raise ScoreFileError(f"{path}: name the dataset to read (datasets: {keys})")
        return f[pick]
    raise ScoreFileError(f"{path}: --input must be a .npy, .npz or .h5 file")


def export_modisco_npz(path: str, sequences_out: str, attributions_out: str) -> None:
    """Write modisco-lite's npz pair (``modisco motifs -s SEQS -a ATTRS``): ``arr_0`` of shape
    (N, 4, L) each, from the committed rows of a score file."""
    d = load_scores(path, names=("input_seqs", "hyp_scores"))
    np.savez_compressed(sequences_out, d["input_seqs"].transpose(0, 2, 1).astype(np.float32))
    np.savez_compressed(attributions_out, d["hyp_scores"].transpose(0, 2, 1).astype(np.float32))


def write_bigwig(path: str, bigwig_path: str, chrom_lengths: dict) -> int:
    """Per-base projected scores (summed over the bases) of a score file as a bigWig.

    Needs pyBigWig. Windows are written in genome order; where two windows overlap, each
    base takes the value of the window whose centre is nearer (ties: the later window).
    Returns the number of bases written.
    """
    try:
        import pyBigWig
    except ImportError:
        raise ImportError("bigWig output needs pyBigWig: pip install pyBigWig") from None
    head = read_header(path)
    if "coords_chrom" not in head["datasets"]:
        raise ScoreFileError(f"{path} has no genome coordinates (an --input run); bigWig needs FASTA + BED")
    n = head["n_done"]
    rank = {c: k for k, c in enumerate(chrom_lengths)}
    written = 0
    with open_scores(path) as f:
        chrom = [c.decode() for c in f["coords_chrom"][:n]]
        start = f["coords_start"][:n].astype(np.int64)
        width = int(f["hyp_scores"].shape[1])
        unknown = sorted(set(chrom) - set(rank))
        if unknown:
            raise ScoreFileError(f"{path}: chromosomes {unknown[:5]} are not in the genome given for the bigWig")
        order = sorted(range(n), key=lambda i: (rank[chrom[i]], start[i], i))
        bw = pyBigWig.open(bigwig_path, "w")
        try:
            bw.addHeader([(c, int(size)) for c, size in chrom_lengths.items()])
            pos, current = 0, None
            for k, i in enumerate(order):
                if chrom[i] != current:
                    current, pos = chrom[i], 0
                lo, hi = max(int(start[i]), pos), int(start[i]) + width
                if k + 1 < n and chrom[order[k + 1]] == current and start[order[k + 1]] < hi:
                    # equal widths: base x is nearer this window's centre while x + 1/2 < (s_i + s_j + L) / 2
                    hi = (int(start[i]) + int(start[order[k + 1]]) + width) // 2
                if hi <= lo:
                    continue
                values = f["projected_scores"][i, lo - start[i]:hi - start[i]].astype(np.float64).sum(axis=-1)
                bw.addEntries(current, lo, values=values, span=1, step=1)
                written += hi - lo
                pos = hi
        finally:
            bw.close()
    return written
