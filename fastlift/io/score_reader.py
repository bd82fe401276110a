"""Reading a score file of `fastlift.scan` for viewing: checked once, then streamed in row blocks.

A `ScoreReader` accepts any file `fastlift explain` writes (float16 or float32 scores, gzip-compressed
by ``--compress`` or not, genome coordinates or ``input_row``, with or without ``hyp_scores``, complete
or interrupted: only the first ``n_done`` rows are read) and refuses anything else with a
`ScoreFileError` that names the file and what is wrong. Reads never load a whole dataset:
`ScoreReader.blocks` hands out row blocks of a bounded byte size, aligned to the dataset's HDF5
chunks so a compressed chunk is decompressed once.
"""

from __future__ import annotations

import json

import numpy as np

from .scores import FORMAT, ScoreFileError, open_scores, read_header

BLOCK_BYTES = 8 << 20          # bytes of one dataset read at a time by `blocks`
_ROW_DATASETS = ("input_seqs", "hyp_scores", "projected_scores")


class ScoreReader:
    """An open, checked score file.

    Attributes
    ----------
    path, target : str
        The file and its head (the ``target`` attribute).
    params : dict
        The run's parameters (the ``params`` attribute).
    n_regions, n_done : int
        Regions in the file and regions scored (rows ``[0, n_done)`` are final).
    length : int
        Positions per region.
    score_dtype : str
        ``"float16"`` or ``"float32"``.
    compression : str or None
        HDF5 filter of ``projected_scores`` (``"gzip"`` after ``--compress``).
    has_hypothetical, has_coords : bool
        Whether ``hyp_scores`` and the genome coordinates (else ``input_row``) are present.
    """

    def __init__(self, path: str):
        try:
            head = read_header(path)
        except (KeyError, json.JSONDecodeError) as e:
            raise ScoreFileError(f"{path} has format={FORMAT!r} but is damaged or incomplete: missing or "
                                 f"unreadable {e.args[0] if e.args else e}") from None
        self.path = path
        self.target, self.params = head["target"], head["params"]
        self.n_regions, self.n_done = head["n_regions"], head["n_done"]
        datasets = head["datasets"]
        missing = [n for n in ("input_seqs", "projected_scores", "deltas") if n not in datasets]
        if not ("coords_start" in datasets or "input_row" in datasets):
            missing.append("coords_start or input_row")
        if missing:
            raise ScoreFileError(f"{path} is not a complete fastlift score file: it lacks "
                                 f"{', '.join(missing)}")
        self.has_hypothetical = "hyp_scores" in datasets
        self.has_coords = "coords_start" in datasets
        shape, dt = datasets["projected_scores"]
        if len(shape) != 3 or shape[2] != 4 or shape[0] != self.n_regions or np.dtype(dt).kind != "f":
            raise ScoreFileError(f"{path}: projected_scores must be ({self.n_regions}, length, 4) floats; "
                                 f"found {shape} {dt}")
        for name in _ROW_DATASETS + ("deltas",):
            if name in datasets and datasets[name][0][:1] != (self.n_regions,):
                raise ScoreFileError(f"{path}: {name} has {datasets[name][0]} rows; the file says "
                                     f"{self.n_regions} regions")
        if not 0 <= self.n_done <= self.n_regions:
            raise ScoreFileError(f"{path}: n_done = {self.n_done} is outside [0, {self.n_regions}]")
        self.length = int(shape[1])
        self.score_dtype = np.dtype(dt).name
        self._file = open_scores(path)
        self.compression = self._file["projected_scores"].compression

    # -- whole small datasets and single rows

    def deltas(self) -> np.ndarray:
        """Summation-to-delta of every scored region, shape=(n_done,) float64."""
        return self._file["deltas"][: self.n_done].astype(np.float64)

    def delta(self, i: int) -> float:
        """Summation-to-delta of region ``i``."""
        return float(self._file["deltas"][i])

    def row(self, i: int, names=("input_seqs", "hyp_scores", "projected_scores")) -> dict:
        """Row ``i`` (< n_done) of the named (L, 4) datasets, as float64 (absent datasets are skipped)."""
        if not 0 <= i < self.n_done:
            raise IndexError(f"row {i} is outside the {self.n_done} scored regions of {self.path}")
        return {n: self._file[n][i].astype(np.float64) for n in names if n in self._file}

    def location(self, i: int) -> tuple[str, int, int] | int:
        """``(chrom, start, end)`` of region ``i`` (0-based, end exclusive), or its ``input_row``."""
        f = self._file
        if self.has_coords:
            return (f["coords_chrom"][i].decode(errors="replace"), int(f["coords_start"][i]),
                    int(f["coords_end"][i]))
        return int(f["input_row"][i])

    # -- streaming

    def block_rows(self, names) -> int:
        """Rows per block for reading ``names`` together: at most `BLOCK_BYTES` per dataset (at
        least one row), a multiple of the HDF5 chunk rows of chunked datasets."""
        rows = self.n_done or 1
        for name in names:
            d = self._file[name]
            row_bytes = max(1, int(np.prod(d.shape[1:], dtype=np.int64)) * d.dtype.itemsize)
            fit = max(1, BLOCK_BYTES // row_bytes)
            if d.chunks is not None:
                fit = max(d.chunks[0], fit // d.chunks[0] * d.chunks[0])
            rows = min(rows, fit)
        return rows

    def blocks(self, names):
        """Yield ``(lo, hi, {name: rows [lo, hi)})`` over the scored rows, a bounded block at a time."""
        step = self.block_rows(names)
        for lo in range(0, self.n_done, step):
            hi = min(lo + step, self.n_done)
            yield lo, hi, {n: self._file[n][lo:hi] for n in names}

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
