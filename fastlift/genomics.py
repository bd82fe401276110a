"""Genomics helpers: one-hot DNA, seeded sequence shuffles, FASTA and BED/narrowPeak regions.

One-hot layout is channels-last, ``(length, 4)`` with channels A, C, G, T (Keras genomics
models). Any other letter (N, IUPAC codes, ...) is an all-zero row; lowercase (soft-masked)
letters are their uppercase bases.

Shuffles (`dinuc_shuffle`, `kmer_shuffle`, `shuffle`) run in C (``csrc/fl_shuffle.h``),
in parallel over (sequence, shuffle) pairs, and are reproducible: shuffle ``j`` of the
sequence numbered ``i`` depends only on ``(seed, i, j, k)`` and the sequence, never on how
many sequences are passed at once, their batch or the thread count. ``index=`` gives the
sequence numbers when a large set is shuffled piece by piece (default ``0 .. N-1``).

**N / all-zero positions** are shuffled as a fifth letter, as deeplift's ``dinuc_shuffle``
does: every dinucleotide count is kept *including* those with N (so N-runs stay runs, though
they may be cut and moved where an N-N step can be re-routed), and the first and last
positions are kept. A shuffled reference therefore has exactly as many all-zero rows as its
sequence.

`Fasta` reads a FASTA file by random access through its ``.fai`` index (samtools format),
building and saving the index when it is missing or older than the FASTA, and checking the
index against the file where it reads (a sequence's header, its end, every line end a window
crosses), so an index made for another file is an error, never another window. `read_regions`
streams a BED or narrowPeak file into fixed-width windows, centred on the summit (narrowPeak
column 10) or on the interval's midpoint, with errors that name the file and line.
"""

from __future__ import annotations

import gzip
import hashlib
import numbers
import os
import warnings
import zlib
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from . import _validate

ALPHABET = "ACGT"

#: byte -> token: A/C/G/T (either case) -> 0..3, anything else -> 4 (an all-zero one-hot row)
_LUT = np.full(256, 4, dtype=np.uint8)
for _i, _b in enumerate(ALPHABET):
    _LUT[ord(_b)] = _i
    _LUT[ord(_b.lower())] = _i
_EYE = np.eye(5, 4, dtype=np.uint8)  # token -> one-hot row (token 4 -> zeros)


class InputFileError(ValueError):
    """A problem in an input file, reported as ``path:line: what is wrong``."""


# ----------------------------------------------------------------------------- one-hot


def encode_tokens(seq) -> tuple[np.ndarray, int]:
    """``str``/``bytes`` -> (tokens (L,) uint8 in 0..4, number of non-ACGT letters)."""
    raw = seq.encode("ascii", errors="replace") if isinstance(seq, str) else bytes(seq)
    tok = _LUT[np.frombuffer(raw, dtype=np.uint8)]
    return tok, int(np.count_nonzero(tok == 4))


def one_hot_encode(seq, dtype=np.uint8) -> np.ndarray:
    """DNA string -> one-hot ``(L, 4)`` (A, C, G, T); other letters -> all-zero rows.

    Parameters
    ----------
    seq : str or bytes
    dtype : numpy dtype of the result (default uint8)
    """
    if not isinstance(seq, (str, bytes, bytearray)):
        raise TypeError(f"seq must be a str or bytes; got {type(seq).__name__}")
    tok, _ = encode_tokens(seq)
    return _EYE[tok].astype(dtype, copy=False)


def one_hot_decode(X, unknown: str = "N"):
    """One-hot ``(L, 4)`` -> str, or ``(N, L, 4)`` -> list of str; all-zero rows -> ``unknown``."""
    arr = np.asarray(X)
    if arr.ndim not in (2, 3) or arr.shape[-1] != 4:
        raise ValueError(f"X must be one-hot of shape (L, 4) or (N, L, 4); got {arr.shape}")
    letters = np.frombuffer((ALPHABET + unknown[:1]).encode(), dtype=np.uint8)
    tok = np.where(arr.max(axis=-1) > 0, arr.argmax(axis=-1), 4)
    text = letters[tok]
    if arr.ndim == 2:
        return text.tobytes().decode()
    return [row.tobytes().decode() for row in text]


# ----------------------------------------------------------------------------- shuffles


def _n_threads(n_threads):
    n_threads = _validate.n_threads_arg(n_threads)
    return max(os.cpu_count() or 1, 1) if n_threads is None else n_threads


def _shuffle(seqs, n, kmer, seed, index, n_threads, what):
    from . import _genomics

    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"n must be a non-negative int (shuffles per sequence); got {n!r}")
    if isinstance(kmer, bool) or not isinstance(kmer, numbers.Integral) or kmer < 1:
        raise ValueError(f"k must be a positive int; got {kmer!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an int in [0, 2**64); got {seed!r}")
    X = np.asarray(seqs)
    if X.ndim not in (2, 3) or X.shape[-1] < 1:
        raise ValueError(f"seqs must be one-hot of shape (L, C) or (N, L, C); got {X.shape}")
    single = X.ndim == 2
    if single:
        X = X[None]
    if X.dtype == np.bool_ or (X.dtype.kind in "iu" and X.dtype != np.uint8):
        X = X.astype(np.uint8)  # values other than 0/1 are caught below
    elif X.dtype.kind == "f" and X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    elif X.dtype.kind not in "uf":
        raise TypeError(f"seqs must hold numbers (a one-hot array); got dtype {X.dtype}")
    X = np.ascontiguousarray(X)
    nt = _n_threads(n_threads)
    if index is None:
        index = np.arange(X.shape[0], dtype=np.int64)
    elif isinstance(index, numbers.Integral) and not isinstance(index, bool):
        index = np.arange(int(index), int(index) + X.shape[0], dtype=np.int64)
    else:
        index = np.ascontiguousarray(np.asarray(index), dtype=np.int64)
        if index.shape != (X.shape[0],):
            raise ValueError(f"index must be an int (first sequence number) or one int per sequence, "
                             f"shape ({X.shape[0]},); got shape {index.shape}")
    # the shuffled tokens (1 byte) and their one-hot copy, before either is allocated
    _validate.memory_fits(float(X.shape[0]) * n * X.shape[1] * (1 + X.shape[2] * X.dtype.itemsize),
                          f"{what}: n={n} shuffles of {X.shape[0]} sequence(s) of length {X.shape[1]}; ask for "
                          "fewer shuffles at a time (shuffle j of sequence i is the same in any split)")
    tokens, bad = _genomics.tokens_from_onehot(X, nt)
    if bad >= 0:
        e, pos = divmod(int(bad), X.shape[1])
        where = f"position {pos}" if single else f"sequence {e}, position {pos}"
        raise ValueError(f"{what}: seqs must be one-hot (values 0 or 1, at most one 1 per position); "
                         f"{where} is {X[e, pos].tolist()}")
    shuffled = _genomics.shuffle_tokens(tokens, index, X.shape[2] + 1, int(n), int(kmer), int(seed), nt)
    out = _genomics.onehot_from_tokens(shuffled, X.shape[2], X.dtype, nt)
    return out[0] if single else out


def dinuc_shuffle(seqs, n: int, seed: int = 0, *, index=None, n_threads: int | None = None) -> np.ndarray:
    """Dinucleotide-preserving shuffles of one-hot sequences (exact, seeded, parallel).

    Every shuffle keeps the first and last base and the exact count of every dinucleotide
    (all-zero / N positions count as a fifth letter; see the module docstring).

    Parameters
    ----------
    seqs : array, shape=(length, C) or (n_sequences, length, C)
        One-hot (uint8, bool, float32 or float64; C channels, 4 for DNA).
    n : int
        Shuffles per sequence.
    seed : int
        Shuffle ``j`` of sequence ``i`` depends only on (seed, i, j) and the sequence.
    index : int or array of int, optional
        Sequence numbers ``i``: the number of the first sequence, or one per sequence
        (default ``0 .. n_sequences - 1``), so a set shuffled in pieces matches one call.
    n_threads : int, optional
        Default: all cores. The result does not depend on it.

    Returns
    -------
    array, shape=(n, length, C) for one sequence, (n_sequences, n, length, C) otherwise,
    of the input's dtype (ints and bools give uint8).
    """
    return _shuffle(seqs, n, 2, seed, index, n_threads, "dinuc_shuffle")


def kmer_shuffle(seqs, n: int, k: int, seed: int = 0, *, index=None, n_threads: int | None = None) -> np.ndarray:
    """k-mer-preserving shuffles: every k-mer count kept exactly (k=2: `dinuc_shuffle`).

    The first and last ``k - 1`` letters are kept. ``k=1`` is a plain shuffle. Parameters
    and result as `dinuc_shuffle`; ``(n_symbols)**(k-1)`` must stay below ~4 million.
    """
    return _shuffle(seqs, n, k, seed, index, n_threads, "kmer_shuffle")


def shuffle(seqs, n: int, seed: int = 0, *, index=None, n_threads: int | None = None) -> np.ndarray:
    """Plain shuffles: uniform permutations of the positions (base composition kept).

    Parameters and result as `dinuc_shuffle`.
    """
    return _shuffle(seqs, n, 1, seed, index, n_threads, "shuffle")


# ----------------------------------------------------------------------------- FASTA


class FaiEntry(NamedTuple):
    """One line of a samtools ``.fai`` index."""

    name: str
    length: int
    offset: int
    line_bases: int
    line_bytes: int


def read_fai(path: str) -> dict[str, FaiEntry]:
    """Parse a ``.fai`` file (name, length, offset, line bases, line bytes)."""
    out: dict[str, FaiEntry] = {}
    seen: dict[str, int] = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            try:
                entry = FaiEntry(fields[0], *(int(v) for v in fields[1:5]))
            except (ValueError, TypeError, IndexError):
                raise InputFileError(f"{path}:{lineno}: not a .fai line (name, length, offset, line bases, "
                                     f"line bytes): {line.rstrip()!r}") from None
            if entry.length < 0 or entry.offset < 0 or entry.line_bases < 1 or entry.line_bytes < entry.line_bases:
                raise InputFileError(f"{path}:{lineno}: invalid .fai entry {line.rstrip()!r}")
            if entry.name in out:
                raise InputFileError(f"{path}:{lineno}: duplicate sequence name {entry.name!r} (also on line "
                                     f"{seen[entry.name]}); delete the index to rebuild it from the FASTA")
            out[entry.name] = entry
            seen[entry.name] = lineno
    return out


def build_fai(path: str) -> dict[str, FaiEntry]:
    """Index a FASTA file in one streaming pass, as ``samtools faidx`` does.

    Spaces and tabs at the end of a sequence line belong to the line's end, not to the bases
    (samtools counts only printable letters): every line of a sequence but its last must have
    the same bases and the same bytes. Whitespace between bases cannot be indexed and is an error.
    """
    out: dict[str, FaiEntry] = {}
    name = None
    offset = length = 0
    line_bases = line_bytes = None
    seq_offset = 0
    odd_seen_at = 0      # a line shorter (or ending differently) than the first: only the last may be
    blank_seen_at = 0

    def finish():
        if name is not None:
            out[name] = FaiEntry(name, length, seq_offset, line_bases or 1, line_bytes or 2)

    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if line.startswith(b">"):
                finish()
                words = line[1:].split()
                if not words:
                    raise InputFileError(f"{path}:{lineno}: FASTA header without a name")
                name = words[0].decode(errors="replace")
                if name in out:
                    raise InputFileError(f"{path}:{lineno}: duplicate sequence name {name!r}")
                length, line_bases, line_bytes, odd_seen_at, blank_seen_at = 0, None, None, 0, 0
                seq_offset = offset + len(line)
            else:
                letters = line.rstrip(b"\r\n").rstrip(b" \t")
                bases = len(letters)
                if name is None:
                    if bases:
                        raise InputFileError(f"{path}:{lineno}: sequence before the first '>' header")
                elif bases == 0:
                    blank_seen_at = blank_seen_at or lineno
                else:
                    if blank_seen_at:
                        raise InputFileError(f"{path}:{blank_seen_at}: blank line inside sequence {name!r}; "
                                             "remove it (indexed FASTA needs uniform lines)")
                    if b" " in letters or b"\t" in letters:
                        raise InputFileError(f"{path}:{lineno}: whitespace between the bases of sequence {name!r} "
                                             "(an indexed FASTA has only letters before each line's end)")
                    if line_bases is None:
                        line_bases, line_bytes = bases, len(line)
                    elif odd_seen_at or bases > line_bases:
                        raise InputFileError(f"{path}:{odd_seen_at or lineno}: lines of sequence {name!r} have "
                                             "different lengths; indexed FASTA needs every line but the last of a "
                                             "sequence to be equally long, trailing spaces included (reformat, "
                                             "e.g. with `samtools faidx` or seqkit)")
                    elif bases < line_bases or len(line) != line_bytes:
                        odd_seen_at = lineno
                    length += bases
            offset += len(line)
    finish()
    if not out:
        raise InputFileError(f"{path}: no FASTA records ('>name' lines) found")
    return out


#: bytes that are never bases: whitespace (line ends, trailing spaces) and a header's '>'
_NOT_BASE = np.zeros(256, dtype=bool)
_NOT_BASE[list(b" \t\r\n\v\f>")] = True
_WHITESPACE = b" \t\r\n\v\f"


class Fasta:
    """Random access to a FASTA file through its ``.fai`` index.

    Parameters
    ----------
    path : str
        Uncompressed FASTA. Its index ``path + ".fai"`` is read when present and not older
        than the FASTA; otherwise it is built in one pass and saved there when the
        directory is writable (as samtools and pyfaidx do).
    write_index : bool
        Save a built index (default True).
    """

    def __init__(self, path: str, *, write_index: bool = True):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"FASTA file not found: {self.path}")
        if self.path.endswith((".gz", ".bgz", ".bgzf")):
            raise InputFileError(f"{self.path}: compressed FASTA is not supported; decompress it (gunzip)")
        fai = self.path + ".fai"
        if os.path.isfile(fai) and os.path.getmtime(fai) >= os.path.getmtime(self.path):
            self.index = read_fai(fai)
        else:
            self.index = build_fai(self.path)
            if write_index:
                tmp = f"{fai}.tmp{os.getpid()}"
                try:
                    with open(tmp, "w") as f:
                        f.writelines(f"{e.name}\t{e.length}\t{e.offset}\t{e.line_bases}\t{e.line_bytes}\n"
                                     for e in self.index.values())
                    os.replace(tmp, fai)
                except OSError as err:
                    warnings.warn(f"could not save the FASTA index {fai}: {err}", stacklevel=2)
                    if os.path.exists(tmp):
                        os.remove(tmp)
        self.fai = fai
        self._fd = os.open(self.path, os.O_RDONLY)
        self._size = os.fstat(self._fd).st_size
        self._checked: set = set()  # sequences whose header and end were found where the index says

    @property
    def lengths(self) -> dict[str, int]:
        """{sequence name: length}, in file order."""
        return {name: e.length for name, e in self.index.items()}

    def fetch(self, chrom: str, start: int, end: int) -> bytes:
        """Letters ``[start, end)`` (0-based, half-open) of ``chrom``, as stored (any case)."""
        e = self.index.get(chrom)
        if e is None:
            raise KeyError(f"unknown sequence {chrom!r} in {self.path}")
        if not 0 <= start <= end <= e.length:
            raise ValueError(f"{chrom}:{start}-{end} is outside {chrom} (length {e.length})")
        if start == end:
            return b""
        if chrom not in self._checked:
            self._check_record(e)
            self._checked.add(chrom)
        first, last = self._byte(e, start), self._byte(e, end - 1)
        raw = os.pread(self._fd, last - first + 1, first)
        seq = raw.translate(None, _WHITESPACE)
        if not (len(seq) == end - start and b">" not in seq and self._line_ends_where_indexed(e, start, first, raw)):
            self._locate_mismatch(e, chrom, start, end, first, raw)
        return seq

    @staticmethod
    def _line_ends_where_indexed(e: FaiEntry, start: int, first: int, raw: bytes) -> bool:
        """Every line end inside ``raw`` (read from byte ``first``, base ``start`` of ``e``) is
        whitespace ending in a newline, at the bytes the index says. With the count of the bases
        checked by the caller, no line end can hide among the bases either."""
        n_end = e.line_bytes - e.line_bases
        head = e.offset + (start // e.line_bases) * e.line_bytes + e.line_bases - first  # the first line end
        for j in range(n_end):
            if raw[head + j::e.line_bytes].translate(None, _WHITESPACE):
                return False
        newlines = raw[head + n_end - 1::e.line_bytes] if n_end else b""
        return newlines.count(b"\n") == len(newlines)

    def _locate_mismatch(self, e, chrom, start, end, first, raw):
        """Raise the error for the first byte of ``raw`` that is not what the index says."""
        b = np.frombuffer(raw, dtype=np.uint8)
        col = np.arange(first - e.offset, first - e.offset + len(b)) % e.line_bytes
        wrong = _NOT_BASE[b] != (col >= e.line_bases)
        if e.line_bytes > e.line_bases:  # (equal: one line without a newline at the end of the file)
            wrong |= (col == e.line_bytes - 1) & (b != ord("\n"))
        at = first + (int(np.argmax(wrong)) if wrong.any() else len(b))
        found = "the end of the file" if at >= self._size else repr(bytes(raw[at - first:at - first + 1]))
        expected = "a base" if (at - e.offset) % e.line_bytes < e.line_bases else "the end of a line"
        raise self._mismatch(at, f"reading {chrom}:{start}-{end}, the index expects {expected} at byte {at} "
                                 f"but the file has {found}")

    @staticmethod
    def _byte(e: FaiEntry, pos: int) -> int:
        """File offset of base ``pos`` of ``e``."""
        return e.offset + (pos // e.line_bases) * e.line_bytes + pos % e.line_bases

    def _check_record(self, e: FaiEntry):
        """The index's start of ``e`` follows its header line and its last base ends the record:
        an index written for another file (or for this one before an edit) reads other windows."""
        before = os.pread(self._fd, min(e.offset, 1 << 16), max(e.offset - (1 << 16), 0))
        header = before[:-1].rsplit(b"\n", 1)[-1] if before.endswith(b"\n") else b""
        words = header[1:].split()
        whole = b"\n" in before[:-1] or e.offset <= 1 << 16  # else a header over 64 KiB: its name is not seen
        if not header.startswith(b">") or (whole and (not words or words[0].decode(errors="replace") != e.name)):
            raise self._mismatch(e.offset, f"the index says sequence {e.name!r} starts here, but this is not the "
                                           f"line after its header '>{e.name}'")
        if e.length == 0:
            return
        last = self._byte(e, e.length - 1)
        tail = os.pread(self._fd, 1 << 12, last)
        rest = tail[1:].lstrip(_WHITESPACE)
        ends = bool(tail) and not _NOT_BASE[tail[0]] and tail[1:2] in (b"", *(bytes([c]) for c in _WHITESPACE)) \
            and (rest.startswith(b">") or (not rest and len(tail) < 1 << 12))
        if not ends:
            raise self._mismatch(min(last, self._size), f"the index says sequence {e.name!r} has {e.length} bases, "
                                                        "ending here, but the record does not end there")

    def _mismatch(self, at: int, what: str) -> InputFileError:
        """An error at byte ``at`` of the FASTA, as ``path:line``, telling how to rebuild the index."""
        line = 1
        with open(self.path, "rb") as f:
            done = 0
            while done < at:
                block = f.read(min(1 << 20, at - done))
                if not block:
                    break
                line += block.count(b"\n")
                done += len(block)
        return InputFileError(f"{self.path}:{line}: {what}; the index {self.fai} was made for another file (or "
                              f"before the FASTA changed): delete {self.fai} to rebuild it")

    def fingerprint(self) -> str:
        """A digest of the index and the file's size: changes when the genome does."""
        h = hashlib.sha256(str(self._size).encode())
        for e in self.index.values():
            h.update(f"{e.name}\t{e.length}\t{e.offset}\t{e.line_bases}\t{e.line_bytes}\n".encode())
        return h.hexdigest()[:16]

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)


def write_fasta(path: str, records, line_width: int = 60) -> None:
    """Write ``records`` ({name: sequence str} or (name, sequence) pairs) as FASTA."""
    items = records.items() if isinstance(records, dict) else records
    with open(path, "w") as f:
        for name, seq in items:
            f.write(f">{name}\n")
            for i in range(0, len(seq), line_width):
                f.write(seq[i:i + line_width])
                f.write("\n")


# ----------------------------------------------------------------------------- regions


class Region(NamedTuple):
    """A window to score: ``chrom:start-end`` (0-based, half-open, ``end - start = width``)."""

    chrom: str
    start: int
    end: int
    line: int        # 1-based line number in the region file (0 when not from a file)
    name: str        # BED name column, or ""


class RegionSummary(NamedTuple):
    n_regions: int                 # windows that will be scored
    n_skipped: int                 # with on_invalid="skip": windows dropped (unknown chrom, past an end)
    skipped_examples: list         # up to 5 "path:line: reason" strings
    max_chrom_length: int          # longest chromosome name among kept windows (bytes)


def _text_lines(path):
    """(line number, text) of a region file, ``.gz`` through gzip; a file that is not what its name
    says, or a line that is not UTF-8, is an `InputFileError` naming the file (and line)."""
    lineno = 0
    try:
        with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    yield lineno, raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise InputFileError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                                         f"{e.start + 1}): {raw[:60]!r}") from None
    except (OSError, EOFError, zlib.error) as e:
        if not path.endswith(".gz") or isinstance(e, FileNotFoundError):
            raise
        where = f"{path}:{lineno + 1}" if lineno else path
        raise InputFileError(f"{where}: not a readable gzip file ({e}); a region file named .gz must be "
                             "gzip-compressed (or rename it)") from None


def read_regions(path: str, width: int, chrom_lengths: dict, *, on_invalid: str = "error",
                 skip_first: int = 0) -> Iterator[Region]:
    """Stream fixed-width windows from a BED or narrowPeak file, in file order.

    The window is ``[c - width // 2, c - width // 2 + width)`` around ``c``: the summit
    (``start + column 10``) of a narrowPeak line (exactly 10 columns, summit >= 0),
    otherwise the midpoint ``(start + end) // 2``. Blank lines and ``#``, ``track`` and
    ``browser`` lines are skipped; ``.gz`` files are read through gzip.

    Parameters
    ----------
    path : str
    width : int
        Window width in bp.
    chrom_lengths : dict {name: length}
        The genome's sequences (e.g. ``Fasta.lengths``).
    on_invalid : {"error", "skip"}
        What to do with a window on an unknown chromosome or off either end of a chromosome:
        raise `InputFileError` naming the file and line (default), or drop it. Malformed
        lines (fewer than 3 columns, non-integer or negative coordinates, end < start, a
        summit outside its peak) always raise.
    skip_first : int
        Do not yield the first ``skip_first`` kept windows (resuming).

    Yields
    ------
    Region
    """
    for r in _region_stream(path, width, chrom_lengths, on_invalid, skip_first):
        if not isinstance(r, _Skipped):
            yield r


def _region_stream(path, width, chrom_lengths, on_invalid, skip_first):
    """`read_regions`, also yielding a `_Skipped` marker for each dropped window."""
    if on_invalid not in ("error", "skip"):
        raise ValueError(f"on_invalid must be 'error' or 'skip'; got {on_invalid!r}")
    if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1:
        raise ValueError(f"width must be a positive int; got {width!r}")
    half = int(width) // 2
    kept = 0
    for lineno, line in _text_lines(path):
        text = line.strip()
        if not text or text.startswith(("#", "track", "browser")):
            continue
        fields = text.split("\t") if "\t" in text else text.split()
        where = f"{path}:{lineno}"
        if len(fields) < 3:
            raise InputFileError(f"{where}: a BED line needs at least 3 columns (chrom, start, end); got "
                                 f"{len(fields)}: {text[:80]!r}")
        chrom = fields[0]
        try:
            start, end = int(fields[1]), int(fields[2])
        except ValueError:
            raise InputFileError(f"{where}: start and end must be integers; got {fields[1]!r} and "
                                 f"{fields[2]!r}") from None
        if start < 0 or end < start:
            raise InputFileError(f"{where}: need 0 <= start <= end; got start={start}, end={end}")
        centre = (start + end) // 2
        if len(fields) == 10:
            try:
                summit = int(fields[9])
            except ValueError:
                raise InputFileError(f"{where}: narrowPeak column 10 (summit offset) must be an integer; "
                                     f"got {fields[9]!r}") from None
            if summit >= 0:
                if start + summit >= max(end, start + 1):
                    raise InputFileError(f"{where}: summit offset {summit} is outside the peak "
                                         f"{chrom}:{start}-{end}")
                centre = start + summit
        w_start = centre - half
        w_end = w_start + int(width)
        problem = None
        if chrom not in chrom_lengths:
            known = ", ".join(list(chrom_lengths)[:5]) + (", ..." if len(chrom_lengths) > 5 else "")
            problem = f"unknown chromosome {chrom!r} (the genome has {known})"
        elif w_start < 0:
            problem = (f"the {width}-bp window {chrom}:{w_start}-{w_end} around {chrom}:{start}-{end} "
                       f"starts before the start of {chrom} (position 0)")
        elif w_end > chrom_lengths[chrom]:
            problem = (f"the {width}-bp window {chrom}:{w_start}-{w_end} around {chrom}:{start}-{end} "
                       f"extends past the end of {chrom} (length {chrom_lengths[chrom]})")
        if problem is not None:
            if on_invalid == "error":
                raise InputFileError(f"{where}: {problem}; fix the file or pass on_invalid='skip' to drop "
                                     "such regions")
            yield _Skipped(f"{where}: {problem}")  # type: ignore[misc]
            continue
        kept += 1
        if kept <= skip_first:
            continue
        yield Region(chrom, w_start, w_end, lineno, fields[3] if len(fields) > 3 else "")


class _Skipped(str):
    """Marker yielded by `_region_stream` for a dropped window (its text says why)."""


def check_regions(path, width, chrom_lengths, *, on_invalid="error") -> RegionSummary:
    """Validate a whole region file in one streaming pass (constant memory) and count it."""
    n = skipped = longest = 0
    examples = []
    for r in _region_stream(path, width, chrom_lengths, on_invalid, 0):
        if isinstance(r, _Skipped):
            skipped += 1
            if len(examples) < 5:
                examples.append(str(r))
        else:
            n += 1
            longest = max(longest, len(r.chrom.encode()))
    return RegionSummary(n, skipped, examples, longest)


def file_digest(path: str) -> str:
    """SHA-256 (first 16 hex digits) of a file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
