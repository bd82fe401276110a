"""Genomics helpers: shuffles (C, seeded), one-hot, FASTA index, BED/narrowPeak regions."""

import gzip
import os
import shutil
import subprocess
from collections import Counter

import numpy as np
import pytest

import fastlift as fl
from fastlift import genomics as G
from fastlift import references as R


def _random_onehot(rng, n, length, n_zero=0, dtype=np.float32):
    X = np.eye(4, dtype=dtype)[rng.integers(0, 4, size=(n, length))]
    for e in range(n):
        if n_zero:
            at = rng.integers(1, length - n_zero - 1)
            X[e, at:at + n_zero] = 0
    return X


def _tokens(x):
    return tuple(np.where(x.max(-1) > 0, x.argmax(-1), 4))


def _kmers(t, k):
    return Counter(tuple(t[i:i + k]) for i in range(len(t) - k + 1))


# ------------------------------------------------------------------- shuffles


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_dinuc_shuffle_keeps_every_dinucleotide_and_the_ends(dtype):
    rng = np.random.default_rng(0)
    X = _random_onehot(rng, 6, 120, n_zero=7, dtype=dtype)
    S = fl.dinuc_shuffle(X, 5, seed=3)
    assert S.shape == (6, 5, 120, 4) and S.dtype == X.dtype
    for e in range(6):
        t = _tokens(X[e])
        for j in range(5):
            s = _tokens(S[e, j])
            assert _kmers(s, 2) == _kmers(t, 2)      # N-containing dinucleotides included
            assert s[0] == t[0] and s[-1] == t[-1]
            assert np.all(S[e, j].sum(-1) <= 1)
        assert len({_tokens(S[e, j]) for j in range(5)}) == 5  # really shuffled
        assert all(_tokens(S[e, j]) != t for j in range(5))


def test_dinuc_shuffle_single_sequence_and_int_input():
    x = G.one_hot_encode("ACGTTGCAACGGTTACNNACGT")
    s = fl.dinuc_shuffle(x, 3, seed=1)
    assert s.shape == (3, len("ACGTTGCAACGGTTACNNACGT"), 4) and s.dtype == np.uint8
    s64 = fl.dinuc_shuffle(x.astype(np.int64), 3, seed=1)
    np.testing.assert_array_equal(s, s64)
    np.testing.assert_array_equal(fl.dinuc_shuffle(x.astype(bool), 3, seed=1), s)


def test_shuffles_are_reproducible_and_independent_of_batching_and_threads():
    rng = np.random.default_rng(1)
    X = _random_onehot(rng, 9, 200, n_zero=3)
    full = fl.dinuc_shuffle(X, 4, seed=11, n_threads=2)
    np.testing.assert_array_equal(full, fl.dinuc_shuffle(X, 4, seed=11, n_threads=1))
    pieces = np.concatenate([fl.dinuc_shuffle(X[lo:lo + 4], 4, seed=11, index=lo) for lo in range(0, 9, 4)])
    np.testing.assert_array_equal(full, pieces)
    one = fl.dinuc_shuffle(X[7], 4, seed=11, index=[7])
    np.testing.assert_array_equal(one, full[7])
    # more shuffles extend, they do not change the first ones
    np.testing.assert_array_equal(fl.dinuc_shuffle(X, 6, seed=11)[:, :4], full)
    assert not np.array_equal(full, fl.dinuc_shuffle(X, 4, seed=12))


@pytest.mark.parametrize("k", [1, 3, 4])
def test_kmer_and_plain_shuffles(k):
    rng = np.random.default_rng(2)
    X = _random_onehot(rng, 3, 150, n_zero=2)
    S = G.kmer_shuffle(X, 3, k, seed=0) if k > 1 else G.shuffle(X, 3, seed=0)
    for e in range(3):
        t = _tokens(X[e])
        for j in range(3):
            s = _tokens(S[e, j])
            assert _kmers(s, k) == _kmers(t, k)
            if k > 1:
                assert s[:k - 1] == t[:k - 1] and s[-(k - 1):] == t[-(k - 1):]
            assert s != t
    np.testing.assert_array_equal(G.kmer_shuffle(X, 3, 2, seed=5), fl.dinuc_shuffle(X, 3, seed=5))


def test_dinuc_shuffle_is_spread_over_the_possible_shuffles():
    # ACGACT... every Eulerian walk of a short sequence is reachable; count distinct results
    x = G.one_hot_encode("AACAGATCCGCTGGTTA")
    S = fl.dinuc_shuffle(x, 400, seed=0)
    seen = Counter(G.one_hot_decode(s) for s in S)
    assert len(seen) > 20
    assert max(seen.values()) < 60


def test_short_sequences_and_degenerate_cases():
    for seq in ["", "A", "AC", "AAAA", "NNNN"]:
        x = G.one_hot_encode(seq).reshape(len(seq), 4)
        s = fl.dinuc_shuffle(x, 2, seed=0)
        assert s.shape == (2, len(seq), 4)
        for j in range(2):
            assert G.one_hot_decode(s[j]) == seq
    assert fl.dinuc_shuffle(np.zeros((3, 10, 4)), 0).shape == (3, 0, 10, 4)


def test_shuffle_bad_input():
    with pytest.raises(ValueError, match=r"one-hot .* sequence 1, position 4 is \[0.0, 0.5, 0.0, 0.0\]"):
        X = np.eye(4)[np.zeros((2, 8), int)]
        X[1, 4] = [0, 0.5, 0, 0]
        fl.dinuc_shuffle(X, 2)
    with pytest.raises(ValueError, match="at most one 1"):
        fl.dinuc_shuffle(np.ones((5, 4)), 2)
    with pytest.raises(ValueError, match="n must be a non-negative int"):
        fl.dinuc_shuffle(np.zeros((5, 4)), -1)
    with pytest.raises(ValueError, match=r"shape \(L, C\) or \(N, L, C\)"):
        fl.dinuc_shuffle(np.zeros(5), 1)
    with pytest.raises(ValueError, match="seed must be an int"):
        fl.dinuc_shuffle(np.zeros((5, 4)), 1, seed=-1)
    with pytest.raises(ValueError, match="index must be"):
        fl.dinuc_shuffle(np.zeros((2, 5, 4)), 1, index=[1, 2, 3])
    with pytest.raises(ValueError, match="smaller kmer"):
        G.kmer_shuffle(np.eye(4)[np.arange(40) % 4], 1, 12)


# ------------------------------------------------------------------- reference specs


def _motif_model(length):
    from fastlift import layers as L

    rng = np.random.default_rng(5)
    x = L.Input((length, 4), name="seq")
    h = L.Activation("relu")(L.Conv1D(rng.normal(size=(5, 4, 6)), rng.normal(size=6), padding="same")(x))
    h = L.GlobalAvgPool1D()(h)
    return fl.Model(x, L.Dense(rng.normal(size=(6, 2)), rng.normal(size=2), name="logits")(h))


def test_shuffle_specs_match_dinuc_shuffle_and_do_not_depend_on_batch_size():
    rng = np.random.default_rng(3)
    X = _random_onehot(rng, 7, 50, dtype=np.float64)
    model = _motif_model(50)
    refs = fl.dinuc_shuffle(X, 4, seed=9)
    a = fl.deeplift(model, X, R.dinuc_shuffle(4), seed=9, dtype="float64", hypothetical=True, batch_size=2)
    b = fl.deeplift(model, X, refs, dtype="float64", hypothetical=True, batch_size=7)
    np.testing.assert_array_equal(a.hypothetical, b.hypothetical)
    np.testing.assert_array_equal(a.contributions, b.contributions)
    for spec, kmer in [(R.shuffle(3), 1), (R.kmer_shuffle(3, kmer=3), 3)]:
        c = fl.deeplift(model, X, spec, seed=2, dtype="float64", batch_size=3)
        d = fl.deeplift(model, X, G.kmer_shuffle(X, 3, kmer, seed=2), dtype="float64")
        np.testing.assert_array_equal(c.contributions, d.contributions)
    assert repr(R.kmer_shuffle(5, kmer=4)) == "kmer_shuffle(5, kmer=4)"
    with pytest.raises(ValueError, match="positive int"):
        R.dinuc_shuffle(0)


def test_flat_reference_is_shared_and_matches_the_array():
    rng = np.random.default_rng(4)
    X = _random_onehot(rng, 5, 40, dtype=np.float64)
    model = _motif_model(40)
    a = fl.deeplift(model, X, R.flat(), dtype="float64", hypothetical=True)
    b = fl.deeplift(model, X, np.broadcast_to([0.3, 0.2, 0.2, 0.3], (1, 40, 4)), dtype="float64",
                    hypothetical=True)
    np.testing.assert_array_equal(a.contributions, b.contributions)
    np.testing.assert_array_equal(a.hypothetical, b.hypothetical)
    assert np.abs(a.deltas).max() < 1e-10
    with pytest.raises(ValueError, match="3 values but the input has 4 channels"):
        fl.deeplift(model, X, R.flat([0.3, 0.4, 0.3]))
    with pytest.raises(ValueError, match="non-negative"):
        R.flat([0.5, -0.5, 0.5, 0.5])


# ------------------------------------------------------------------- one-hot


def test_one_hot_round_trip():
    seq = "ACGTacgtNRYn"
    x = G.one_hot_encode(seq)
    assert x.shape == (12, 4) and x.dtype == np.uint8
    assert G.one_hot_decode(x) == "ACGTACGTNNNN"
    assert G.one_hot_decode(np.stack([x, x])) == ["ACGTACGTNNNN"] * 2
    tok, n_bad = G.encode_tokens(b"ACGTNNx")
    assert list(tok) == [0, 1, 2, 3, 4, 4, 4] and n_bad == 3
    with pytest.raises(TypeError):
        G.one_hot_encode(5)


# ------------------------------------------------------------------- FASTA


def _genome(tmp_path, line_width=7, crlf=False):
    rng = np.random.default_rng(6)
    recs = {"chr1": "".join(rng.choice(list("ACGT"), 50)), "chr2": "".join(rng.choice(list("ACGTN"), 23)),
            "chrM": "acgtACGTnn"}
    path = tmp_path / "g.fa"
    text = ""
    for name, seq in recs.items():
        text += f">{name} description\n" + "".join(seq[i:i + line_width] + "\n"
                                                    for i in range(0, len(seq), line_width))
    if crlf:
        text = text.replace("\n", "\r\n")
    path.write_bytes(text.encode())
    return str(path), recs


@pytest.mark.parametrize("crlf", [False, True])
def test_fasta_index_and_fetch(tmp_path, crlf):
    path, recs = _genome(tmp_path, crlf=crlf)
    fa = G.Fasta(path)
    assert fa.lengths == {k: len(v) for k, v in recs.items()}
    assert os.path.isfile(path + ".fai")
    for name, seq in recs.items():
        for start, end in [(0, len(seq)), (3, 9), (6, 8), (7, 7), (len(seq) - 1, len(seq))]:
            assert fa.fetch(name, start, end).decode() == seq[start:end]
    with pytest.raises(ValueError, match="outside chr2"):
        fa.fetch("chr2", 20, 24)
    with pytest.raises(KeyError):
        fa.fetch("chrX", 0, 1)
    fp = fa.fingerprint()
    fa.close()
    # the saved index is read back and gives the same answers
    fa2 = G.Fasta(path)
    assert fa2.index == G.build_fai(path) and fa2.fingerprint() == fp
    assert fa2.fetch("chr1", 5, 40).decode() == recs["chr1"][5:40]


def test_fasta_errors(tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_text(">a\nACGT\nAC\nACGT\n")
    with pytest.raises(G.InputFileError, match=r"bad.fa:3: lines of sequence 'a' have different lengths"):
        G.Fasta(str(bad))
    dup = tmp_path / "dup.fa"
    dup.write_text(">a\nACGT\n>a\nAC\n")
    with pytest.raises(G.InputFileError, match=r"dup.fa:3: duplicate sequence name 'a'"):
        G.Fasta(str(dup))
    with pytest.raises(FileNotFoundError):
        G.Fasta(str(tmp_path / "missing.fa"))
    gz = tmp_path / "x.fa.gz"
    gz.write_bytes(gzip.compress(b">a\nACGT\n"))
    with pytest.raises(G.InputFileError, match="compressed FASTA"):
        G.Fasta(str(gz))


def test_fasta_index_that_cannot_be_saved_warns_and_works(tmp_path, monkeypatch):
    path, recs = _genome(tmp_path)

    def read_only(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(G.os, "replace", read_only)  # as in a read-only directory (root ignores chmod)
    with pytest.warns(UserWarning, match="could not save the FASTA index"):
        fa = G.Fasta(path)
    assert fa.fetch("chr1", 0, 5).decode() == recs["chr1"][:5]
    assert not os.path.exists(path + ".fai") and os.listdir(tmp_path) == ["g.fa"]


# ------------------------------------------------------------------- BED / narrowPeak


LENGTHS = {"chr1": 1000, "chr2": 500}


def test_bed_windows_midpoint_and_summit(tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("# comment\ntrack name=x\n\nchr1\t100\t200\tpeakA\n"
                   "chr2\t300\t311\n"
                   "chr1\t400\t600\tp\t0\t.\t1\t2\t3\t50\n"      # narrowPeak: summit 450
                   "chr1\t400\t600\tq\t0\t.\t1\t2\t3\t-1\n")     # no summit: midpoint 500
    regions = list(G.read_regions(str(bed), 20, LENGTHS))
    assert [(r.chrom, r.start, r.end, r.line, r.name) for r in regions] == [
        ("chr1", 140, 160, 4, "peakA"), ("chr2", 295, 315, 5, ""), ("chr1", 440, 460, 6, "p"),
        ("chr1", 490, 510, 7, "q")]
    assert [r.start for r in G.read_regions(str(bed), 21, LENGTHS)] == [140, 295, 440, 490]
    assert [r.line for r in G.read_regions(str(bed), 20, LENGTHS, skip_first=2)] == [6, 7]
    gz = tmp_path / "r.bed.gz"
    gz.write_bytes(gzip.compress(bed.read_bytes()))
    assert list(G.read_regions(str(gz), 20, LENGTHS)) == regions


@pytest.mark.parametrize("line, message", [
    ("chr1\t100", r"r.bed:2: a BED line needs at least 3 columns"),
    ("chr1\tx\t200", r"r.bed:2: start and end must be integers"),
    ("chr1\t300\t200", r"r.bed:2: need 0 <= start <= end"),
    ("chr1\t-5\t200", r"r.bed:2: need 0 <= start <= end"),
    ("chr1\t100\t200\tp\t0\t.\t1\t2\t3\tabc", r"r.bed:2: narrowPeak column 10"),
    ("chr1\t100\t200\tp\t0\t.\t1\t2\t3\t150", r"r.bed:2: summit offset 150 is outside the peak"),
    ("chrUn\t100\t200", r"r.bed:2: unknown chromosome 'chrUn' \(the genome has chr1, chr2\)"),
    ("chr2\t450\t500", r"r.bed:2: the 100-bp window chr2:425-525 .* extends past the end of chr2 \(length 500\)"),
    ("chr1\t0\t20", r"r.bed:2: the 100-bp window chr1:-40-60"),
])
def test_bed_errors_name_file_and_line(tmp_path, line, message):
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t100\t200\n" + line + "\n")
    with pytest.raises(G.InputFileError, match=message):
        list(G.read_regions(str(bed), 100, LENGTHS))


def test_bed_skip_invalid_counts(tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t100\t200\nchrUn\t1\t2\nchr2\t480\t500\nchr2\t200\t300\n")
    summary = G.check_regions(str(bed), 100, LENGTHS, on_invalid="skip")
    assert summary.n_regions == 2 and summary.n_skipped == 2
    assert "r.bed:2: unknown chromosome" in summary.skipped_examples[0]
    assert [r.line for r in G.read_regions(str(bed), 100, LENGTHS, on_invalid="skip")] == [1, 4]
    with pytest.raises(G.InputFileError, match="r.bed:2"):
        G.check_regions(str(bed), 100, LENGTHS)
    with pytest.raises(G.InputFileError, match="r.bed:1: a BED line needs"):
        bed.write_text("chr1 100\n")
        G.check_regions(str(bed), 100, LENGTHS, on_invalid="skip")  # malformed lines always raise


def test_dinuc_shuffle_has_deeplifts_distribution():
    """Same algorithm as deeplift's dinuc_shuffle (fastlift.compat replays it), another random source:
    the frequencies of the possible shuffles of a short sequence agree."""
    from fastlift.compat.dinuc_shuffle import dinuc_shuffle as deeplift_dinuc_shuffle

    seq = "ACAGGTACATTGCA"  # 12 possible shuffles
    n = 10000
    ours = Counter(G.one_hot_decode(s) for s in fl.dinuc_shuffle(G.one_hot_encode(seq), n, seed=1))
    theirs = Counter(deeplift_dinuc_shuffle(seq, n, rng=np.random.RandomState(1)))
    assert set(ours) == set(theirs)                     # the same reachable shuffles
    tv = 0.5 * sum(abs(ours[k] - theirs[k]) for k in set(ours) | set(theirs)) / n
    assert len(ours) == 12 and tv < 0.05, (tv, len(ours))  # total variation: sampling noise (~0.02) only


def test_large_calls_use_threads_and_give_the_same_bits():
    from fastlift import _genomics

    rng = np.random.default_rng(7)
    X = _random_onehot(rng, 64, 1100, n_zero=5, dtype=np.uint8)
    assert 64 * 4 * 1100 * 8 >= 2 * _genomics.MIN_WORK_PER_THREAD  # big enough for two threads
    np.testing.assert_array_equal(fl.dinuc_shuffle(X, 4, seed=2, n_threads=1), fl.dinuc_shuffle(X, 4, seed=2,
                                                                                               n_threads=2))


def test_fl_shuffle_h_is_callable_from_plain_c(tmp_path):
    """csrc/fl_shuffle.h compiles as C99 on its own and gives the Cython binding's exact shuffles."""
    import subprocess

    src = tmp_path / "use_shuffle.c"
    src.write_text(r'''
#include <stdio.h>
#include <stdlib.h>
#include "fl_shuffle.h"
int main(void) {
    const char *letters = "ACGTN";
    uint8_t tok[40], out[40];
    int64_t work[2 * 40 + 3 * 5];
    for (int i = 0; i < 40; i++) tok[i] = (uint8_t)((i * 7 + i / 3) % 5);
    fl_kmer_shuffle(tok, 40, 5, 2, 11u, 3, 1, out, work);  /* seed 11, sequence 3, shuffle 1 */
    for (int i = 0; i < 40; i++) putchar(letters[out[i]]);
    putchar('\n');
    return 0;
}
''')
    cc = os.environ.get("CC", "cc")
    exe = tmp_path / "use_shuffle"
    proc = subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-I", fl.get_include(), str(src), "-o", str(exe)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    from_c = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.strip()
    seq = "".join("ACGTN"[(i * 7 + i // 3) % 5] for i in range(40))
    from_python = G.one_hot_decode(fl.dinuc_shuffle(G.one_hot_encode(seq), 2, seed=11, index=[3])[1])
    assert from_c == from_python


def _write_fai(path, entries):
    with open(path + ".fai", "w") as f:
        f.writelines("\t".join(map(str, e)) + "\n" for e in entries)
    later = os.path.getmtime(path) + 10  # newer than the FASTA: read, not rebuilt
    os.utime(path + ".fai", (later, later))


def test_an_index_that_does_not_match_the_file_is_refused_where_it_is_read(tmp_path):
    """A .fai newer than the FASTA but written for another file: offsets off by whole lines, line
    widths or lengths that do not fit. Reading through it must fail with file:line, never return
    another window."""
    path = str(tmp_path / "g.fa")
    path_b = tmp_path / "g.fa"
    path_b.write_text(">chr1 first\nACGTACGTAA\nCCCCGGGGTT\nTTTTAAAACC\nGG\n>chr2\nAAAACCCCGG\nTT\n")
    good = G.build_fai(path)
    assert G.Fasta(path, write_index=False).fetch("chr1", 8, 14) == b"AACCCC"
    e1 = good["chr1"]
    # offset one whole line (11 bytes) further: every window would come from the next line
    _write_fai(path, [(e1.name, e1.length - 10, e1.offset + 11, 10, 11), tuple(good["chr2"])])
    fa = G.Fasta(path)
    with pytest.raises(G.InputFileError, match=r"g\.fa:3: the index says sequence 'chr1' starts here, "
                                               r"but this is not the line after its header.*delete .*g\.fa\.fai"):
        fa.fetch("chr1", 0, 5)
    assert fa.fetch("chr2", 0, 12) == b"AAAACCCCGGTT"   # the other sequence is still read correctly
    # line width off by one: bases where the index puts line ends
    _write_fai(path, [(e1.name, e1.length, e1.offset, 9, 10), tuple(good["chr2"])])
    with pytest.raises(G.InputFileError, match=r"g\.fa:2: reading chr1:5-15, the index expects the end of a line "
                                               r"at byte 21 but the file has b'A'.*delete .*g\.fa\.fai"):
        G.Fasta(path).fetch("chr1", 5, 15)
    # a length longer than the sequence: reads into the next record
    _write_fai(path, [(e1.name, e1.length + 3, e1.offset, 10, 11), tuple(good["chr2"])])
    with pytest.raises(G.InputFileError, match=r"g\.fa:6: the index says sequence 'chr1' has 35 bases, ending "
                                               r"here, but the record does not end there"):
        G.Fasta(path).fetch("chr1", 30, 35)


def test_duplicate_names_in_an_index_are_refused(tmp_path):
    path = str(tmp_path / "d.fa")
    (tmp_path / "d.fa").write_text(">a\nACGT\n>b\nGGGG\n")
    _write_fai(path, [("a", 4, 3, 4, 5), ("b", 4, 11, 4, 5), ("a", 4, 11, 4, 5)])
    with pytest.raises(G.InputFileError, match=r"d\.fa\.fai:3: duplicate sequence name 'a' \(also on line 1\)"):
        G.Fasta(path)


def test_trailing_whitespace_on_sequence_lines_is_not_bases(tmp_path):
    """As samtools faidx: spaces or tabs at the end of a sequence line belong to the line's end,
    so every line of a sequence must carry the same amount (all but its last); whitespace between
    bases is refused."""
    path = tmp_path / "ws.fa"
    path.write_bytes(b">s\nACGTA  \nCCGGT  \nTTA \n>t\nAC\tGT\n")
    with pytest.raises(G.InputFileError, match=r"ws\.fa:6: whitespace between the bases of sequence 't'"):
        G.build_fai(str(path))
    path.write_bytes(b">s\nACGTA  \nCCGGT  \nTTA \n>t\nACGT\n")
    fa = G.Fasta(str(path))
    assert fa.index["s"] == G.FaiEntry("s", 13, 3, 5, 8)
    assert fa.fetch("s", 0, 13) == b"ACGTACCGGTTTA" and fa.fetch("s", 3, 7) == b"TACC"
    assert fa.fetch("t", 0, 4) == b"ACGT"
    path.write_bytes(b">s\nACGTA  \nCCGGT \nTTA\n")
    with pytest.raises(G.InputFileError, match=r"ws\.fa:3: lines of sequence 's' have different lengths"):
        G.build_fai(str(path))


def test_index_agrees_with_samtools_faidx(tmp_path):
    """The same .fai as samtools for regular lines, CRLF and trailing spaces (when samtools is here)."""
    samtools = shutil.which("samtools")
    if samtools is None:
        pytest.skip("samtools is not installed")
    rng = np.random.default_rng(1)
    recs = {f"c{i}": "".join(rng.choice(list("ACGTNacgt"), int(rng.integers(1, 300)))) for i in range(12)}
    plain = str(tmp_path / "plain.fa")
    G.write_fasta(plain, recs, line_width=37)
    with open(plain, "rb") as f:
        text = f.read()
    for name, data in [("plain.fa", text), ("crlf.fa", text.replace(b"\n", b"\r\n")),
                       ("spaces.fa", text.replace(b"\n", b" \t\n"))]:
        path = str(tmp_path / name)
        with open(path, "wb") as f:
            f.write(data)
        subprocess.run([samtools, "faidx", path], check=True)
        assert G.read_fai(path + ".fai") == G.build_fai(path), name
        fa = G.Fasta(path)
        for chrom, seq in recs.items():
            assert fa.fetch(chrom, len(seq) // 3, len(seq)).decode() == seq[len(seq) // 3:]
