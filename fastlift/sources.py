"""The regions a scan reads: windows of a genome (FASTA + BED/narrowPeak) or rows of a one-hot array.

A source has ``length``, ``n_regions``, ``chrom_width`` (0: no genome coordinates),
``n_skipped`` / ``skipped_examples``, and

* ``describe()``: what the run records about its input (a resume or a merge compares it);
* ``chunks(start, size, stop=None)``: the regions ``[start, stop)`` as `Chunk` s of ``size``,
  numbered as in the whole scan;
* ``where(chunk, e)``: region ``e`` of a chunk in the user's words (file and line, or row);
* ``parts(bounds)``: one picklable source per ``(lo, hi)``, made in one pass over the input:
  what a task of a distributed scan reads;
* ``close()``.
"""

from __future__ import annotations

import hashlib
import itertools
import numbers
import os
from dataclasses import dataclass, field

import numpy as np

from .genomics import Fasta, Region, _region_stream, _Skipped, check_regions, file_digest


class ScanError(ValueError):
    """A scan that cannot start or continue (bad arguments, an incompatible existing file)."""


@dataclass
class Chunk:
    lo: int                             # number of its first region in the scan
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

    def _regions(self, start):
        return (r for r in _region_stream(self.bed, self.length, self.fasta.lengths, self.on_invalid, start)
                if not isinstance(r, _Skipped))

    def chunks(self, start: int, size: int, stop: int | None = None):
        regions = self._regions(start)
        if stop is not None:
            regions = itertools.islice(regions, max(stop - start, 0))
        yield from _fasta_chunks(self.fasta, self.length, self.chrom_width, regions, start, size)

    def parts(self, bounds):
        """A `FastaWindows` per ``(lo, hi)`` of ``bounds`` (increasing, not overlapping; gaps
        between them are skipped), from one pass over the region file."""
        regions, at = self._regions(0), 0
        for lo, hi in bounds:
            if not at <= lo <= hi:
                raise ValueError(f"parts: bounds must increase without overlapping; got ({lo}, {hi}) after {at}")
            picked = list(itertools.islice(regions, lo - at, hi - at))
            at = hi
            yield FastaWindows(self.fasta.path, self.bed, self.length, self.chrom_width, self.n_regions, lo, picked)

    def where(self, chunk, e) -> str:
        """Row ``e`` of ``chunk`` in the user's words: BED file and line, and the window."""
        return _where_window(self.bed, chunk, e)

    def close(self):
        self.fasta.close()


class FastaWindows:
    """Regions ``[lo, lo + len(regions))`` of a `FastaBedSource`, resolved to their windows.

    What one task of a distributed scan reads: it pickles to the window coordinates (about
    20 bytes a region), never the region file, and opens the FASTA where it runs.
    """

    n_skipped = 0
    skipped_examples = ()

    def __init__(self, fasta: str, bed: str, width: int, chrom_width: int, n_regions: int, lo: int, regions):
        self.fasta_path, self.bed, self.length = os.path.abspath(fasta), bed, int(width)
        self.chrom_width, self.n_regions, self.lo = chrom_width, n_regions, lo
        self.chroms = sorted({r.chrom for r in regions})
        rank = {c: k for k, c in enumerate(self.chroms)}
        self.chrom_index = np.array([rank[r.chrom] for r in regions], dtype=np.int32)
        self.starts = np.array([r.start for r in regions], dtype=np.int64)
        self.lines = np.array([r.line for r in regions], dtype=np.int64)
        self._fasta = None

    @property
    def hi(self) -> int:
        return self.lo + len(self.starts)

    def chunks(self, start: int, size: int, stop: int | None = None):
        stop = self.hi if stop is None else min(stop, self.hi)
        if not self.lo <= start <= stop:
            raise ValueError(f"regions [{start}, {stop}) are not in this part [{self.lo}, {self.hi})")
        a, b = start - self.lo, stop - self.lo
        regions = (Region(self.chroms[c], int(s), int(s) + self.length, int(line), "")
                   for c, s, line in zip(self.chrom_index[a:b], self.starts[a:b], self.lines[a:b]))
        if self._fasta is None:
            self._fasta = Fasta(self.fasta_path)
        yield from _fasta_chunks(self._fasta, self.length, self.chrom_width, regions, start, size)

    def where(self, chunk, e) -> str:
        return _where_window(self.bed, chunk, e)

    def close(self):
        if self._fasta is not None:
            self._fasta.close()
            self._fasta = None

    def __getstate__(self):
        return dict(self.__dict__, _fasta=None)


def _fasta_chunks(fasta, width, chrom_width, regions, lo, size):
    """Chunks of ``size`` windows from the `Region` iterable ``regions``, numbered from ``lo``."""
    from .genomics import _LUT

    while True:
        batch = list(itertools.islice(regions, size))
        if not batch:
            return
        n = len(batch)
        tokens = np.empty((n, width), dtype=np.uint8)
        for e, r in enumerate(batch):
            tokens[e] = _LUT[np.frombuffer(fasta.fetch(r.chrom, r.start, r.end), dtype=np.uint8)]
        onehot = np.eye(5, 4, dtype=np.uint8)[tokens]
        coords = {"coords_chrom": np.array([r.chrom.encode() for r in batch], dtype=f"S{chrom_width}"),
                  "coords_start": np.array([r.start for r in batch], dtype=np.int64),
                  "coords_end": np.array([r.end for r in batch], dtype=np.int64),
                  "region_line": np.array([r.line for r in batch], dtype=np.int64)}
        yield Chunk(lo, onehot, (tokens == 4).sum(axis=1).astype(np.int32), coords)
        lo += n


def _where_window(bed, chunk, e) -> str:
    c = chunk.coords
    return (f"{bed}:{int(c['region_line'][e])}, {c['coords_chrom'][e].decode()}:"
            f"{int(c['coords_start'][e])}-{int(c['coords_end'][e])}")


class ArraySource:
    """Rows of a one-hot array (numpy, memory-mapped ``.npy`` or an HDF5 dataset).

    ``layout="nlc"``: shape (N, L, 4), the Keras layout the scan computes and writes in;
    ``"ncl"``: shape (N, 4, L) (tangermeme, bpnet-lite, PyTorch), transposed as it is read.
    """

    chrom_width = 0
    n_skipped = 0
    LAYOUTS = ("nlc", "ncl")
    first = 0              # scan number of the array's row 0 (a part of a distributed scan: its lo)

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
        self.stop = self.n_regions

    def _rows(self, lo, hi):
        x = np.asarray(self.X[lo - self.first:hi - self.first])
        return x.transpose(0, 2, 1) if self.layout == "ncl" else x

    def describe(self) -> dict:
        if self.path is None:
            h = hashlib.sha256()
            for lo in range(0, self.n_regions, 4096):
                h.update(np.ascontiguousarray(self._rows(lo, lo + 4096), dtype=np.uint8).tobytes())
            return {"input": "array", "input_sha256": h.hexdigest()[:16], "width": self.length}
        return {"input": os.path.abspath(self.path), "input_sha256": file_digest(self.path), "key": self.key,
                "layout": self.layout, "width": self.length}

    def chunks(self, start: int, size: int, stop: int | None = None):
        stop = self.stop if stop is None else min(stop, self.stop)
        for lo in range(start, stop, size):
            x = self._rows(lo, min(lo + size, stop))
            ok = ((x == 0) | (x == 1)).all(axis=-1) & (x.sum(axis=-1) <= 1)
            if not ok.all():
                e, pos = np.argwhere(~ok)[0]
                raise ScanError(f"input {self.path or 'X'}: row {lo + e}, position {pos} is not one-hot: "
                                f"{x[e, pos].tolist()}")
            onehot = x.astype(np.uint8)
            yield Chunk(lo, onehot, (onehot.sum(axis=-1) == 0).sum(axis=1).astype(np.int32),
                        {"input_row": np.arange(lo, lo + len(x), dtype=np.int64)})

    def parts(self, bounds):
        """One source per ``(lo, hi)`` of ``bounds``: a file that can be opened again (``.npy``,
        HDF5) is named and opened where the part is read; rows held in memory (an array, a
        ``.npz`` member) travel with the part."""
        reopen = self.path is not None and not (isinstance(self.X, np.ndarray) and not isinstance(self.X, np.memmap))
        for lo, hi in bounds:
            part = object.__new__(ArraySource)
            part.__dict__.update(self.__dict__, stop=hi)
            if reopen:
                part.X = _Reopened(os.path.abspath(self.path), self.key)  # a worker may run in another folder
            else:
                part.X, part.first = np.asarray(self.X[lo:hi]), lo
            yield part

    def where(self, chunk, e) -> str:
        return f"row {chunk.lo + e} of {self.path or 'X'}"

    def close(self):
        f = self.X if isinstance(self.X, _Reopened) else getattr(self.X, "file", None)
        if f is not None and hasattr(f, "close"):  # an HDF5 dataset from read_input_array: close its file
            f.close()


class _Reopened:
    """An input array file opened (again) on first use, where a part of the scan is read."""

    def __init__(self, path, key):
        self.path, self.key, self._array = path, key, None

    def __getitem__(self, rows):
        if self._array is None:
            from .io.scores import read_input_array

            self._array = read_input_array(self.path, self.key)
        return self._array[rows]

    def close(self):
        f = getattr(self._array, "file", None)
        if f is not None:
            f.close()
        self._array = None

    def __getstate__(self):
        return {"path": self.path, "key": self.key, "_array": None}
