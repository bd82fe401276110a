"""The streaming scan: agreement with deeplift, determinism, resume, bad input, disk full, memory."""

import errno
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest

import fastlift as fl
from fastlift import demo
from fastlift import genomics as G
from fastlift import progress as progress_mod
from fastlift import scan as S
from fastlift.io import scores as io_scores

WIDTH = 64
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_genome(directory, n_regions=40, seed=0, chrom_len=(3000, 2000, 1500), n_letters=True):
    """A random genome (with N runs and IUPAC letters) and a BED of regions inside it."""
    rng = np.random.default_rng(seed)
    recs = {}
    for i, length in enumerate(chrom_len):
        seq = rng.choice(list("ACGTacgt"), length)
        if n_letters:
            seq[100:130] = "N"
            seq[rng.integers(0, length, 5)] = "R"
        recs[f"chr{i + 1}"] = "".join(seq)
    fasta = os.path.join(directory, "genome.fa")
    G.write_fasta(fasta, recs, line_width=70)
    bed = os.path.join(directory, "regions.bed")
    with open(bed, "w") as f:
        f.write("track name=test\n")
        for k in range(n_regions):
            c = f"chr{k % len(chrom_len) + 1}"
            s = int(rng.integers(WIDTH, chrom_len[k % len(chrom_len)] - 2 * WIDTH))
            if k % 3 == 0:  # narrowPeak with a summit
                f.write(f"{c}\t{s}\t{s + 50}\tp{k}\t0\t.\t1\t1\t1\t{k % 50}\n")
            else:
                f.write(f"{c}\t{s}\t{s + 20}\tp{k}\n")
    return fasta, bed, recs


@pytest.fixture(scope="module")
def model():
    return demo.demo_model(WIDTH)


@pytest.fixture
def genome(tmp_path):
    return make_genome(str(tmp_path))


TWO_HEADS = {"target": [0, "profile"], "target_layer": ["counts", "profile"]}


def run(model, fasta, bed, out, **kw):
    kw = {"references": "dinuc:4", "seed": 3, **kw}
    source = S.FastaBedSource(fasta, bed, WIDTH, on_invalid=kw.pop("on_invalid", "error"))
    try:
        return S.scan(model, source, out, **kw)
    finally:
        source.close()


def read_bytes(paths):
    out = []
    for p in paths:
        with open(p, "rb") as f:
            out.append(f.read())
    return out


# ----------------------------------------------------------------------------- agreement


def test_scan_agrees_with_deeplift_called_directly(model, genome, tmp_path):
    fasta, bed, recs = genome
    res = run(model, fasta, bed, str(tmp_path / "s.h5"), score_dtype="float32", chunk_size=7, **TWO_HEADS)
    assert [os.path.basename(p) for p in res.paths] == ["s.counts.h5", "s.profile.h5"]
    files = [io_scores.load_scores(p) for p in res.paths]
    X = files[0]["input_seqs"].astype(np.float32)
    assert X.shape == (40, WIDTH, 4) and files[0]["n_done"] == 40
    # the windows are the right letters of the genome
    regions = list(G.read_regions(bed, WIDTH, {k: len(v) for k, v in recs.items()}))
    for i, r in enumerate(regions):
        assert files[0]["coords_chrom"][i].decode() == r.chrom and files[0]["coords_start"][i] == r.start
        assert files[0]["coords_end"][i] == r.start + WIDTH and files[0]["region_line"][i] == r.line
        np.testing.assert_array_equal(X[i], G.one_hot_encode(recs[r.chrom][r.start:r.end]))
        assert files[0]["n_non_acgt"][i] == sum(ch not in "ACGTacgt" for ch in recs[r.chrom][r.start:r.end])
    assert res.n_non_acgt == files[0]["n_non_acgt"].sum() > 0
    direct = fl.deeplift(model, X, fl.references.dinuc_shuffle(4), seed=3, hypothetical=True, **TWO_HEADS)
    for t, f in enumerate(files):
        np.testing.assert_array_equal(f["hyp_scores"], direct.hypothetical[t])
        np.testing.assert_array_equal(f["projected_scores"], direct.hypothetical[t] * X)
        np.testing.assert_array_equal(f["deltas"], direct.deltas[t].astype(np.float32))
        # projected (hypothetical at the present base) = DeepLIFT contributions, where a base is present
        present = X.sum(-1) > 0
        np.testing.assert_allclose(f["projected_scores"].sum(-1)[present], direct.contributions[t].sum(-1)[present],
                                   rtol=1e-4, atol=1e-6)
    assert np.abs(direct.deltas).max() < 1e-4 and res.max_abs_delta < 1e-4
    head = io_scores.read_header(res.paths[1])
    assert head["target"] == "profile" and head["params"]["references"] == "dinuc_shuffle(4)"


def test_float16_scores_and_single_target(model, genome, tmp_path):
    fasta, bed, _ = genome
    res = run(model, fasta, bed, str(tmp_path / "one.h5"), target="profile", target_layer="profile")
    assert res.paths == [str(tmp_path / "one.h5")]
    f = io_scores.load_scores(res.paths[0])
    assert f["hyp_scores"].dtype == np.float16 and f["input_seqs"].dtype == np.int8
    X = f["input_seqs"].astype(np.float32)
    direct = fl.deeplift(model, X, fl.references.dinuc_shuffle(4), seed=3, hypothetical=True, target="profile",
                         target_layer="profile")
    np.testing.assert_array_equal(f["hyp_scores"], direct.hypothetical.astype(np.float16))


def test_scores_too_large_for_float16_stop_the_scan(genome, tmp_path):
    fasta, bed, _ = genome
    weights = {k: v * (1e8 if k.startswith("counts") else 1) for k, v in np.load(demo.WEIGHTS_FILE).items()}
    loud = demo.build_model(weights, WIDTH)
    with pytest.raises(S.ScanError, match="does not fit float16.*--score-dtype float32"):
        run(loud, fasta, bed, str(tmp_path / "x.h5"), target=0, target_layer="counts", references="flat")
    f = io_scores.load_scores(run(loud, fasta, bed, str(tmp_path / "y.h5"), target=0, target_layer="counts",
                                  references="flat", score_dtype="float32").paths[0])
    assert np.abs(f["hyp_scores"]).max() > 65504


def test_bytes_do_not_depend_on_batch_or_chunk_size(model, genome, tmp_path):
    fasta, bed, _ = genome
    outs = []
    for i, (bs, cs) in enumerate([(None, None), (1, 3), (5, 5), (64, 1)]):
        res = run(model, fasta, bed, str(tmp_path / f"b{i}.h5"), batch_size=bs, chunk_size=cs, **TWO_HEADS)
        outs.append(read_bytes(res.paths))
    assert all(o == outs[0] for o in outs[1:])


def test_input_arrays_give_the_same_scores(model, genome, tmp_path):
    fasta, bed, _ = genome
    ref = io_scores.load_scores(run(model, fasta, bed, str(tmp_path / "f.h5")).paths[0])
    X = ref["input_seqs"]
    np.save(tmp_path / "x.npy", X.astype(np.float32))
    np.savez(tmp_path / "x.npz", seqs=X)
    for path, key in [(tmp_path / "x.npy", None), (tmp_path / "x.npz", "seqs"), (tmp_path / "f.h5", None)]:
        arr = io_scores.read_input_array(str(path), key)
        out = str(path) + ".scores.h5"
        S.scan(model, S.ArraySource(arr, path=str(path), key=key), out, references="dinuc:4", seed=3)
        got = io_scores.load_scores(out)
        np.testing.assert_array_equal(got["hyp_scores"], ref["hyp_scores"])
        np.testing.assert_array_equal(got["input_row"], np.arange(len(X)))
        assert "coords_chrom" not in got
    bad = X.astype(np.float32)
    bad[3, 5] = [0, 0.5, 0, 0]
    with pytest.raises(S.ScanError, match=r"row 3, position 5 is not one-hot"):
        S.scan(model, S.ArraySource(bad), str(tmp_path / "bad.h5"), references="dinuc:4")
    with pytest.raises(io_scores.ScoreFileError, match="name the array"):
        np.savez(tmp_path / "two.npz", a=X, b=X)
        io_scores.read_input_array(str(tmp_path / "two.npz"))


def test_other_reference_kinds(model, genome, tmp_path):
    fasta, bed, _ = genome
    f = io_scores.load_scores(run(model, fasta, bed, str(tmp_path / "flat.h5"), references="flat",
                                  score_dtype="float32").paths[0])
    X = f["input_seqs"].astype(np.float32)
    direct = fl.deeplift(model, X, fl.references.flat(), hypothetical=True)
    np.testing.assert_array_equal(f["hyp_scores"], direct.hypothetical)

    def callable_refs(x, rng):
        return np.stack([x[0][rng.permutation(x.shape[1])] for _ in range(2)])[None]

    g = io_scores.load_scores(run(model, fasta, bed, str(tmp_path / "c.h5"), references=callable_refs,
                                  score_dtype="float32", chunk_size=6).paths[0])
    direct = fl.deeplift(model, X, callable_refs, seed=3, hypothetical=True)
    np.testing.assert_array_equal(g["hyp_scores"], direct.hypothetical)
    for bad, msg in [("dinuc:x", "dinuc:x"), ("foo", "expected dinuc"), ("kmer3:0", "positive int")]:
        with pytest.raises(S.ScanError, match=msg):
            S.parse_references(bad)
    assert repr(S.parse_references("kmer3:7")) == "kmer_shuffle(7, kmer=3)"


# ----------------------------------------------------------------------------- resume


class Crash(Exception):
    pass


def _crash_after(monkeypatch, n_commits, torn=False):
    """Make the writer die right after its ``n_commits``-th commit (files of one chunk commit one
    after the other, so an odd count leaves them at different points), or, with ``torn``, at the
    next write, after writing that chunk's rows as garbage."""
    real_commit, real_write = io_scores.ScoreWriter.commit, io_scores.ScoreWriter.write
    state = {"commits": 0}

    def write(self, lo, **arrays):
        if torn and state["commits"] >= n_commits:
            real_write(self, lo, **{k: np.full_like(v, 7) for k, v in arrays.items()})
            raise Crash()
        return real_write(self, lo, **arrays)

    def commit(self, n_done):
        if state["commits"] == n_commits and not torn:
            raise Crash()
        real_commit(self, n_done)
        state["commits"] += 1

    monkeypatch.setattr(io_scores.ScoreWriter, "write", write)
    monkeypatch.setattr(io_scores.ScoreWriter, "commit", commit)


def _interrupted_scan(monkeypatch, model, fasta, bed, out, n_commits, **kw):
    """A scan of ``out`` that dies after its ``n_commits``-th commit (as a killed process would)."""
    with monkeypatch.context() as m:
        _crash_after(m, n_commits)
        with pytest.raises(Crash):
            run(model, fasta, bed, out, **kw)


@pytest.mark.parametrize("n_commits, torn, resumed_from", [(0, False, 0), (4, True, 8), (5, False, 8),
                                                           (19, False, 36)])
def test_resume_finishes_with_identical_bytes(model, genome, tmp_path, monkeypatch, n_commits, torn, resumed_from):
    fasta, bed, _ = genome
    reference = read_bytes(run(model, fasta, bed, str(tmp_path / "ref.h5"), chunk_size=4, **TWO_HEADS).paths)
    out = str(tmp_path / "r.h5")
    with monkeypatch.context() as m:
        _crash_after(m, n_commits, torn)
        with pytest.raises(Crash):
            run(model, fasta, bed, out, chunk_size=4, **TWO_HEADS)
    paths = S.output_paths(out, ["counts", "profile"])
    assert min(io_scores.read_header(p)["n_done"] for p in paths) == resumed_from
    with pytest.raises(FileExistsError, match="exists; pass --resume"):
        run(model, fasta, bed, out, **TWO_HEADS)
    res = run(model, fasta, bed, out, resume=True, chunk_size=3, batch_size=2, **TWO_HEADS)  # other sizes: same bytes
    assert res.resumed_from == resumed_from and res.n_scored == 40 - resumed_from
    assert read_bytes(paths) == reference
    again = run(model, fasta, bed, out, resume=True, **TWO_HEADS)
    assert again.n_scored == 0 and read_bytes(paths) == reference


def test_half_created_files_of_dead_processes_are_removed(model, genome, tmp_path):
    fasta, bed, _ = genome
    stale = tmp_path / ".s.h5.creating-999999999"   # a process killed while creating the file
    stale.write_bytes(b"partial")
    run(model, fasta, bed, str(tmp_path / "s.h5"))
    assert not stale.exists() and io_scores.read_header(str(tmp_path / "s.h5"))["n_done"] == 40


def test_resume_refuses_other_parameters(model, genome, tmp_path):
    fasta, bed, _ = genome
    out = str(tmp_path / "p.h5")
    run(model, fasta, bed, out)
    with pytest.raises(S.ScanError, match=r"other parameters \(seed: file has 3, this run 4\)"):
        run(model, fasta, bed, out, resume=True, seed=4)
    with pytest.raises(S.ScanError, match="references"):
        run(model, fasta, bed, out, resume=True, references="dinuc:5")
    with open(bed, "a") as f:
        f.write("chr1\t500\t520\n")
    with pytest.raises(S.ScanError, match="regions_sha256|source"):
        run(model, fasta, bed, out, resume=True)
    res = run(model, fasta, bed, out, overwrite=True)
    assert res.n_regions == 41 and io_scores.read_header(out)["n_done"] == 41
    other = tmp_path / "other.h5"
    other.write_bytes(b"not hdf5")
    with pytest.raises(S.ScanError, match="not a readable HDF5 file"):
        run(model, fasta, bed, str(other), resume=True)
    with pytest.raises(S.ScanError, match="either resume or overwrite"):
        run(model, fasta, bed, out, resume=True, overwrite=True)


def test_reverse_complement_scan_is_recorded_and_resume_refuses_a_change(model, genome, tmp_path):
    fasta, bed, _ = genome
    out = str(tmp_path / "rc.h5")
    run(model, fasta, bed, out, reverse_complement=True, score_dtype="float32", chunk_size=7, **TWO_HEADS)
    paths = S.output_paths(out, S.target_names(model, TWO_HEADS["target"], TWO_HEADS["target_layer"]))
    files = [io_scores.load_scores(p) for p in paths]
    x = files[0]["input_seqs"].astype(np.float32)
    want = fl.deeplift(model, x, fl.references.dinuc_shuffle(4), seed=3, hypothetical=True,
                       reverse_complement=True, **TWO_HEADS)
    for t, (path, f) in enumerate(zip(paths, files)):
        assert io_scores.read_header(path)["params"]["reverse_complement"] is True
        np.testing.assert_array_equal(f["hyp_scores"], want.hypothetical[t])
        np.testing.assert_array_equal(f["deltas"], want.deltas[t].astype(np.float32))
    with pytest.raises(S.ScanError, match=r"other parameters \(reverse_complement: file has True, this run None\)"):
        run(model, fasta, bed, out, resume=True, score_dtype="float32", chunk_size=7, **TWO_HEADS)
    plain = str(tmp_path / "plain.h5")
    run(model, fasta, bed, plain, **TWO_HEADS)
    plain = S.output_paths(plain, ["counts", "profile"])[0]
    assert "reverse_complement" not in io_scores.read_header(plain)["params"]
    with pytest.raises(S.ScanError, match=r"other parameters \(reverse_complement: file has None, this run True\)"):
        run(model, fasta, bed, str(tmp_path / "plain.h5"), resume=True, reverse_complement=True, **TWO_HEADS)


DRIVER = r"""
import sys
from fastlift import demo, scan as S
fasta, bed, out = sys.argv[1:4]
model = demo.demo_model(64)
src = S.FastaBedSource(fasta, bed, 64)
S.scan(model, src, out, references="dinuc:6", seed=1, chunk_size=3, resume=True)
"""


def _n_done(path):
    try:
        return io_scores.read_header(path)["n_done"]
    except Exception:  # noqa: BLE001 - not created yet
        return -1


def test_sigkill_at_several_points_then_resume(model, tmp_path):
    """Kill a real scan process with SIGKILL at several points; every intermediate file is a valid
    score file whose committed rows are final, and --resume ends byte-identical."""
    fasta, bed, _ = make_genome(str(tmp_path), n_regions=240, seed=5)
    ref = str(tmp_path / "ref.h5")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", DRIVER, fasta, bed, ref], check=True, env=env, timeout=300)
    reference = read_bytes([ref])[0]
    ref_rows = io_scores.load_scores(ref)
    out = str(tmp_path / "killed.h5")
    kills = 0
    for stop_at in (-1, 9, 60, 150, 231):   # -1: as soon as the process runs (maybe before the file exists)
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, fasta, bed, out], env=env)
        deadline = time.time() + 120
        while proc.poll() is None and _n_done(out) < stop_at and time.time() < deadline:
            time.sleep(0.002)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        if os.path.exists(out):
            got = io_scores.load_scores(out)           # valid after every kill
            k = got["n_done"]
            for name in ("hyp_scores", "projected_scores", "input_seqs", "coords_start"):
                np.testing.assert_array_equal(got[name], ref_rows[name][:k])
    subprocess.run([sys.executable, "-c", DRIVER, fasta, bed, out], check=True, env=env, timeout=300)
    assert kills >= 3
    assert read_bytes([out])[0] == reference
    assert not [p for p in os.listdir(tmp_path) if ".creating-" in p]


# ----------------------------------------------------------------------------- bad input


def test_bad_regions(model, genome, tmp_path):
    fasta, bed, _ = genome
    with open(bed, "a") as f:
        f.write("chr2\t1990\t2000\n")
    with pytest.raises(G.InputFileError, match=r"regions.bed:42: the 64-bp window chr2:1963-2027 .* past the end"):
        run(model, fasta, bed, str(tmp_path / "x.h5"))
    assert not os.path.exists(tmp_path / "x.h5")
    with open(bed, "a") as f:
        f.write("chrX\t10\t20\n")
    res = run(model, fasta, bed, str(tmp_path / "x.h5"), on_invalid="skip")
    assert res.n_regions == 40 and res.n_skipped == 2
    with open(bed, "a") as f:
        f.write("chr1\t10\n")
    with pytest.raises(G.InputFileError, match=r"regions.bed:44: a BED line needs at least 3 columns"):
        run(model, fasta, bed, str(tmp_path / "y.h5"), on_invalid="skip")
    with pytest.raises(S.ScanError, match=r"the model takes inputs of shape \(64, 4\); the regions are \(100, 4\)"):
        S.scan(model, S.FastaBedSource(fasta, _one_line_bed(tmp_path), 100), str(tmp_path / "z.h5"))
    with pytest.raises(ValueError, match="unknown target preset"):
        run(model, fasta, _one_line_bed(tmp_path), str(tmp_path / "t.h5"), target="profil")
    with pytest.raises(ValueError, match="rule must be one of"):
        run(model, fasta, _one_line_bed(tmp_path), str(tmp_path / "t.h5"), rule="rescal")
    assert not os.path.exists(tmp_path / "t.h5")
    with pytest.raises(S.ScanError, match="output directory"):
        run(model, fasta, _one_line_bed(tmp_path), str(tmp_path / "missing" / "z.h5"))


def _one_line_bed(tmp_path):
    p = tmp_path / "one.bed"
    p.write_text("chr1\t500\t600\n")
    return str(p)


# ----------------------------------------------------------------------------- disk full


def _mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], capture_output=True, check=False)
    return proc.returncode == 0


def test_disk_full_on_a_real_small_file_system(model, genome, tmp_path):
    """A tiny tmpfs: the up-front check refuses a scan that cannot fit, and a disk that fills up
    during the scan (another file grows) gives DiskFullError; --resume after freeing space ends
    byte-identical."""
    fasta, bed, _ = genome
    mnt = str(tmp_path / "mnt")
    if not _mount_tmpfs(mnt, "512k"):
        pytest.skip("cannot mount a tmpfs here (not root or no CAP_SYS_ADMIN); the monkeypatched test covers it")
    try:
        reference = read_bytes([run(model, fasta, bed, str(tmp_path / "ref.h5"), chunk_size=4).paths[0]])
        with pytest.raises(io_scores.DiskFullError, match="not enough disk space"):
            run(model, fasta, _big_bed(tmp_path), os.path.join(mnt, "big.h5"))
        assert not os.listdir(mnt)
        out = os.path.join(mnt, "s.h5")
        filler = os.path.join(mnt, "filler")

        def fill_disk(msg):  # called once the score file exists: another writer takes the space
            if msg.startswith("created"):
                with open(filler, "wb", buffering=0) as f:
                    try:
                        while True:
                            f.write(b"\0" * 4096)
                    except OSError as e:
                        assert e.errno == errno.ENOSPC

        with pytest.raises(io_scores.DiskFullError, match=r"disk full while writing .* rerun with --resume"):
            run(model, fasta, bed, out, chunk_size=4, log=fill_disk)
        assert io_scores.read_header(out)["n_done"] < 40
        os.remove(filler)
        run(model, fasta, bed, out, chunk_size=5, resume=True)
        assert read_bytes([out]) == reference
    finally:
        subprocess.run(["umount", mnt], capture_output=True, check=False)


def _big_bed(tmp_path):
    p = tmp_path / "big.bed"
    p.write_text("".join(f"chr1\t{500 + i}\t{520 + i}\n" for i in range(1000)))
    return str(p)


def test_disk_full_simulated(model, genome, tmp_path, monkeypatch):
    """ENOSPC from pwrite (monkeypatched) -> a clean DiskFullError; resume finishes the job."""
    fasta, bed, _ = genome
    reference = read_bytes([run(model, fasta, bed, str(tmp_path / "ref.h5")).paths[0]])
    out = str(tmp_path / "s.h5")
    real = os.pwrite
    calls = {"n": 0}

    def pwrite(fd, data, offset):
        calls["n"] += 1
        if calls["n"] > 30:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    with monkeypatch.context() as m:
        m.setattr(io_scores.os, "pwrite", pwrite)
        with pytest.raises(io_scores.DiskFullError, match="No space left on device.*first .* regions are saved"):
            run(model, fasta, bed, out, chunk_size=4)
    run(model, fasta, bed, out, resume=True)
    assert read_bytes([out]) == reference


# ----------------------------------------------------------------------------- memory


def test_peak_memory_does_not_grow_with_the_number_of_regions(model, tmp_path):
    peaks = []
    for n in (60, 600):
        d = tmp_path / str(n)
        d.mkdir()
        fasta, bed, _ = make_genome(str(d), n_regions=n, seed=2, chrom_len=(20000, 20000))
        source = S.FastaBedSource(fasta, bed, WIDTH)
        tracemalloc.start()
        S.scan(model, source, str(d / "s.h5"), references="dinuc:4", chunk_size=20, **TWO_HEADS)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        source.close()
    # 10x the regions: the peak stays that of one chunk (allow 15% noise)
    assert peaks[1] < 1.15 * peaks[0], peaks


# ----------------------------------------------------------------------------- consumers


def test_modisco_lite_reads_the_file(tmp_path):
    pytest.importorskip("modiscolite")
    model = demo.demo_model(200)
    X, _ = demo.planted_sequences(400, 200, seed=4)
    X = X[:200]  # all with motifs
    fasta, bed = demo.write_genome(str(tmp_path), X)
    src = S.FastaBedSource(fasta, bed, 200)
    res = S.scan(model, src, str(tmp_path / "scores.h5"), references="dinuc:5", target="profile",
                 target_layer="profile")
    out = tmp_path / "modisco.h5"
    # modisco-lite's own command line (its console script may not be on PATH outside a venv)
    modisco = [sys.executable, "-c", "import sys; from modiscolite.cli import cli; sys.exit(cli())"]
    proc = subprocess.run([*modisco, "motifs", "-i", res.paths[0], "-n", "2000", "-w", "200", "-o", str(out)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import h5py

    with h5py.File(out) as f:
        assert "pos_patterns" in f and len(f["pos_patterns"]) >= 1
        # the strongest pattern is a planted motif (AP-1 TGACTCA or E-box CACGTG)
        cwm = f["pos_patterns"]["pattern_0"]["contrib_scores"][:]
    core = "".join("ACGT"[i] for i in np.abs(cwm).argmax(1)[np.abs(cwm).max(1) > 0.3 * np.abs(cwm).max()])
    assert any(m in core or m[::-1].translate(str.maketrans("ACGT", "TGCA")) in core
               for m in ("TGACTCA", "CACGTG", "GACTCA", "CACGT")), core
    # and its npz pair
    io_scores.export_modisco_npz(res.paths[0], str(tmp_path / "seqs.npz"), str(tmp_path / "attrs.npz"))
    from pathlib import Path

    from modiscolite.cli import _load_input

    s, a = _load_input(Path(tmp_path / "seqs.npz")), _load_input(Path(tmp_path / "attrs.npz"))
    assert s.shape == a.shape == (200, 4, 200)


def test_bigwig_of_projected_scores(model, tmp_path):
    pyBigWig = pytest.importorskip("pyBigWig")
    fasta, _, recs = make_genome(str(tmp_path), n_regions=1, seed=8)
    bed = str(tmp_path / "bw.bed")
    with open(bed, "w") as f:  # chr2 before chr1 in the file; two overlapping windows on chr1
        f.write("chr2\t500\t520\nchr1\t1000\t1001\nchr1\t1030\t1031\nchr1\t200\t201\n")
    res = run(model, fasta, bed, str(tmp_path / "s.h5"), score_dtype="float32")
    lengths = {k: len(v) for k, v in recs.items()}
    n = io_scores.write_bigwig(res.paths[0], str(tmp_path / "s.bw"), lengths)
    f = io_scores.load_scores(res.paths[0])
    bw = pyBigWig.open(str(tmp_path / "s.bw"))
    assert bw.chroms() == lengths
    per_base = f["projected_scores"].sum(-1)
    # windows [968, 1032) and [998, 1062): the nearer centre wins, boundary at (968 + 998 + 64) // 2 = 1015
    np.testing.assert_allclose(bw.values("chr1", 968, 1015), per_base[1][:47], rtol=1e-6)
    np.testing.assert_allclose(bw.values("chr1", 1015, 1062), per_base[2][17:], rtol=1e-6)
    np.testing.assert_allclose(bw.values("chr1", 168, 232), per_base[3], rtol=1e-6)
    np.testing.assert_allclose(bw.values("chr2", 478, 542), per_base[0], rtol=1e-6)
    assert n == 4 * WIDTH - (1032 - 998)


# ----------------------------------------------------------------------------- what --resume compares


def _small_model(activation="relu", padding="same", dilation=1, strides=1, weights_seed=0, data_format=None):
    from fastlift import layers as L

    rng = np.random.default_rng(weights_seed)
    x = L.Input((WIDTH, 4), name="seq")
    h = L.Conv1D(rng.normal(size=(5, 4, 6)) * 0.3, rng.normal(size=6) * 0.1, padding=padding,
                 dilation_rate=dilation, strides=strides, name="conv")(x)
    h = L.Activation(activation, name="act")(h)
    h = L.GlobalAvgPool1D(name="pool")(h)
    return fl.Model(x, L.Dense(rng.normal(size=(6, 1)), np.zeros(1), name="out")(h), name="small")


@pytest.mark.parametrize("change", [{"activation": "tanh"}, {"padding": "causal"}, {"dilation": 2},
                                    {"weights_seed": 1}])
def test_resume_refuses_a_model_that_differs_in_one_setting(genome, tmp_path, change):
    """Activation, padding and dilation define the outputs as much as the weights do: a model that
    differs in any of them must not continue another model's file."""
    fasta, bed, _ = genome
    out = str(tmp_path / "m.h5")
    base = _small_model()
    run(base, fasta, bed, out, references="zeros")
    assert S.model_fingerprint(_small_model()) == S.model_fingerprint(base)  # stable: rebuilt, after a run
    with pytest.raises(S.ScanError, match="other parameters.*model"):
        run(_small_model(**change), fasta, bed, out, references="zeros", resume=True)
    assert run(_small_model(), fasta, bed, out, references="zeros", resume=True).n_scored == 0


def _complement_in_place(fasta):
    """Complement every base of a FASTA file without changing its size or line layout."""
    with open(fasta, "rb") as f:
        lines = f.read().split(b"\n")
    table = bytes.maketrans(b"ACGTacgt", b"TGCAtgca")
    with open(fasta, "wb") as f:
        f.write(b"\n".join(line if line.startswith(b">") else line.translate(table) for line in lines))


def test_resume_refuses_a_genome_whose_bases_changed(model, genome, tmp_path, monkeypatch):
    """Same size, same index, other letters: the regions already scored would come from the old
    genome, so the resume compares them with the windows it reads now and stops."""
    fasta, bed, _ = genome
    out = str(tmp_path / "g.h5")
    _interrupted_scan(monkeypatch, model, fasta, bed, out, 2, chunk_size=4)
    assert io_scores.read_header(out)["n_done"] == 8
    size, fai = os.path.getsize(fasta), G.read_fai(fasta + ".fai")
    _complement_in_place(fasta)
    assert os.path.getsize(fasta) == size
    with pytest.raises(S.ScanError, match=r"--resume: .*g\.h5: region 0 \(.*regions\.bed:2, chr1:\d+-\d+\) reads "
                                          r"other bases now than when it was scored.*--overwrite"):
        run(model, fasta, bed, out, resume=True)
    assert G.read_fai(fasta + ".fai") == fai and io_scores.read_header(out)["n_done"] == 8
    _complement_in_place(fasta)  # back to the genome it was scored with: resumes
    assert run(model, fasta, bed, out, resume=True).resumed_from == 8


def test_resume_refuses_another_backend(model, genome, tmp_path, monkeypatch):
    """numpy and cpu (or two vector ISAs) differ in the last bits: a file computed on one is not
    continued on the other. 'auto' is recorded as what it resolves to, so auto -> cpu resumes."""
    fasta, bed, _ = genome
    out = str(tmp_path / "d.h5")
    _interrupted_scan(monkeypatch, model, fasta, bed, out, 1, chunk_size=8, dtype="float64", device="cpu")
    compute = io_scores.read_header(out)["params"]["compute"]
    assert compute["backend"] == "cpu" and compute["isa"] == fl.backends._cpu.isa()
    with pytest.raises(S.ScanError, match=r"other parameters \(compute: file has .*'backend': 'cpu'.*this run "
                                          r".*'backend': 'numpy'"):
        run(model, fasta, bed, out, dtype="float64", device="numpy", resume=True)
    real = S.compute_description
    with monkeypatch.context() as m:
        m.setattr(S, "compute_description", lambda device, n: dict(real(device, n), isa="another-isa"))
        with pytest.raises(S.ScanError, match="compute: .*another-isa"):
            run(model, fasta, bed, out, dtype="float64", device="cpu", resume=True)
    assert run(model, fasta, bed, out, dtype="float64", device="auto", resume=True).resumed_from == 8


def test_a_second_writer_is_refused_while_the_first_holds_the_output(model, genome, tmp_path):
    """Two writers on one output: the second (even with overwrite) gets a clear error naming the
    file, in this process and in another one, and the first one's file is left alone."""
    fasta, bed, _ = genome
    out = str(tmp_path / "busy.h5")
    run(model, fasta, bed, out)
    before = read_bytes([out])
    with io_scores.lock_outputs([out]):
        with pytest.raises(io_scores.OutputBusyError, match=r"busy\.h5 is being written by another thread"):
            threading_result = []
            t = threading.Thread(target=lambda: threading_result.append(_try(run, model, fasta, bed, out,
                                                                              overwrite=True)))
            t.start()
            t.join()
            raise threading_result[0]
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run([sys.executable, "-m", "fastlift.cli", "explain", "demo", "--fasta", fasta, "--bed", bed,
                               "--width", str(WIDTH), "--refs", "dinuc:4", "--seed", "3", "--target", "0", "--target-layer",
                               "profile", "--out", out, "--overwrite"],
                              capture_output=True, text=True, env=env, timeout=300, check=False)
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr
        assert f"{out} is being written by process {os.getpid()}" in lines[0] and "--out" in lines[0]
        assert read_bytes([out]) == before
    assert run(model, fasta, bed, out, overwrite=True).n_scored == 40   # released: the next writer goes ahead
    assert not os.path.exists(io_scores.lock_path(out))


def _try(f, *args, **kw):
    try:
        f(*args, **kw)
    except Exception as e:  # noqa: BLE001 - handed to the test thread
        return e
    return None


def test_chunks_shrink_to_the_memory_available_and_the_bytes_stay_the_same(model, genome, tmp_path, monkeypatch):
    fasta, bed, _ = genome
    reference = read_bytes(run(model, fasta, bed, str(tmp_path / "ref.h5"), **TWO_HEADS).paths)
    per_region, compute = S.scan_memory(model, WIDTH, 4, "float32", "float16", 2, None)
    monkeypatch.setattr(S, "available_memory", lambda: compute + int(5.5 * per_region))
    said = []
    res = run(model, fasta, bed, str(tmp_path / "small.h5"), log=said.append, **TWO_HEADS)
    assert any("--chunk-size 128 needs about" in m and "checkpointing every 5 regions" in m for m in said), said
    assert read_bytes(res.paths) == reference
    monkeypatch.setattr(S, "available_memory", lambda: compute + per_region // 2)
    with pytest.raises(S.ScanError, match=r"one region of --width 64 needs about .* GB .*more than the 0.00 GB"):
        run(model, fasta, bed, str(tmp_path / "none.h5"), **TWO_HEADS)
    assert not [p for p in os.listdir(tmp_path) if p.startswith("none")]


def test_progress_shows_days_past_24_hours(capsys, monkeypatch):
    assert S.format_eta(49 * 3600) == "2d 01:00:00"
    assert S.format_eta(3661.4) == "01:01:01" and S.format_eta(0) == "00:00:00"
    assert S.format_eta(86399.6) == "1d 00:00:00" and S.format_eta(float("inf")) == "?"
    clock = iter([0.0, 3600.0])
    monkeypatch.setattr(progress_mod.time, "perf_counter", lambda: next(clock))
    bar = progress_mod.Progress(2000)   # 40 regions in the first hour: 49 hours left
    bar.update(40)
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("40/2000 regions  0.0/s  ETA 2d 01:00:00")


def test_non_acgt_count_covers_the_whole_file_after_a_resume(model, genome, tmp_path, monkeypatch):
    fasta, bed, _ = genome
    out = str(tmp_path / "n.h5")
    _interrupted_scan(monkeypatch, model, fasta, bed, out, 5, chunk_size=4)
    res = run(model, fasta, bed, out, resume=True)
    per_region = io_scores.load_scores(out)["n_non_acgt"]
    assert res.resumed_from == 20 and per_region[:20].sum() > 0 and per_region[20:].sum() > 0
    assert res.n_non_acgt == per_region.sum()
    assert run(model, fasta, bed, out, resume=True).n_non_acgt == per_region.sum()   # already complete


# ----------------------------------------------------------------------------- one session, three threads


def test_one_explainer_per_scan_and_one_engine_call_per_chunk(model, genome, tmp_path, monkeypatch):
    """The scan builds its Explainer once (no validation run on a zero example) and calls it once
    per chunk."""
    fasta, bed, _ = genome
    built, calls = [], []
    real_init, real_deeplift = fl.Explainer.__init__, fl.Explainer.deeplift

    def init(self, *a, **kw):
        built.append(1)
        real_init(self, *a, **kw)

    def deeplift(self, X, *a, **kw):
        calls.append(len(X))
        return real_deeplift(self, X, *a, **kw)

    monkeypatch.setattr(fl.Explainer, "__init__", init)
    monkeypatch.setattr(fl.Explainer, "deeplift", deeplift)
    run(model, fasta, bed, str(tmp_path / "s.h5"), chunk_size=7, **TWO_HEADS)
    assert len(built) == 1 and calls == [7, 7, 7, 7, 7, 5]


def test_reading_and_writing_run_on_their_own_threads(model, genome, tmp_path, monkeypatch):
    fasta, bed, _ = genome
    fetched, committed, computed = set(), set(), set()
    real_fetch, real_commit, real_deeplift = G.Fasta.fetch, io_scores.ScoreWriter.commit, fl.Explainer.deeplift

    def fetch(self, *a):
        fetched.add(threading.current_thread().name)
        return real_fetch(self, *a)

    def commit(self, n):
        committed.add(threading.current_thread().name)
        return real_commit(self, n)

    def deeplift(self, *a, **kw):
        computed.add(threading.current_thread().name)
        return real_deeplift(self, *a, **kw)

    monkeypatch.setattr(G.Fasta, "fetch", fetch)
    monkeypatch.setattr(io_scores.ScoreWriter, "commit", commit)
    monkeypatch.setattr(fl.Explainer, "deeplift", deeplift)
    run(model, fasta, bed, str(tmp_path / "s.h5"), chunk_size=4)
    assert fetched == {"fastlift-scan-reader"} and committed == {"fastlift-scan-writer"}
    assert computed == {threading.current_thread().name}


def _fail_on_call(monkeypatch, owner, name, at, error):
    """Make ``owner.name`` raise ``error`` from its ``at``-th call on."""
    real, count = getattr(owner, name), {"n": 0}

    def wrapper(*a, **kw):
        count["n"] += 1
        if count["n"] >= at:
            raise error
        return real(*a, **kw)

    monkeypatch.setattr(owner, name, wrapper)


@pytest.mark.parametrize("stage", ["reader", "writer"])
def test_a_failing_reader_or_writer_is_the_scans_error_and_the_file_resumes(model, genome, tmp_path, monkeypatch,
                                                                           stage):
    """An I/O error on the reader thread (the FASTA) or the writer thread (the score file) stops the
    scan with that error, promptly (no thread left waiting), after committing only whole chunks;
    --resume then ends byte-identical to an uninterrupted scan."""
    fasta, bed, _ = genome
    reference = read_bytes(run(model, fasta, bed, str(tmp_path / "ref.h5"), chunk_size=4, **TWO_HEADS).paths)
    out = str(tmp_path / "s.h5")
    error = OSError(errno.EIO, f"Input/output error in the {stage}")
    with monkeypatch.context() as m:
        if stage == "reader":
            _fail_on_call(m, G.Fasta, "fetch", 23, error)      # region 23: in the sixth chunk
        else:
            _fail_on_call(m, io_scores.ScoreWriter, "write", 2 * 4 + 1, error)  # chunk 4 of 2 files
        result = []
        t = threading.Thread(target=lambda: result.append(_try(run, model, fasta, bed, out, chunk_size=4,
                                                                **TWO_HEADS)))
        t.start()
        t.join(120)
        assert not t.is_alive(), "the scan hangs after a failure in its pipeline"
    assert result[0] is error
    assert not [th for th in threading.enumerate() if th.name.startswith("fastlift-scan-")]
    paths = S.output_paths(out, ["counts", "profile"])
    done = [io_scores.read_header(p)["n_done"] for p in paths]
    assert done == ([20, 20] if stage == "reader" else [16, 16])
    res = run(model, fasta, bed, out, chunk_size=4, resume=True, **TWO_HEADS)
    assert res.resumed_from == min(done) and read_bytes(paths) == reference


class _Terminal:
    """A stderr that says it is a terminal (the progress bar redraws in place on one)."""

    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, s):
        self.text += s

    def flush(self):
        pass


@pytest.mark.parametrize("error", [OSError(errno.EIO, "Input/output error"), KeyboardInterrupt()])
def test_a_failed_scan_ends_its_progress_line(model, genome, tmp_path, monkeypatch, error):
    """The bar redraws one line without a newline: a scan stopped by an error or Ctrl-C must end
    that line, or the command's one-line error is printed at the end of the bar's."""
    fasta, bed, _ = genome
    terminal = _Terminal()
    with monkeypatch.context() as m:
        _fail_on_call(m, io_scores.ScoreWriter, "commit", 3, error)
        m.setattr(sys, "stderr", terminal)
        with pytest.raises(type(error)):
            run(model, fasta, bed, str(tmp_path / "s.h5"), chunk_size=4, progress=True)
    assert "regions" in terminal.text and terminal.text.endswith("\n"), repr(terminal.text[-80:])


def test_tf32_on_the_cpu_is_refused_before_any_file(model, genome, tmp_path):
    fasta, bed, _ = genome
    for device in ("cpu", "numpy"):
        with pytest.raises(S.ScanError, match=r"precision='tf32' .* needs device='cuda'.*got device='" + device):
            run(model, fasta, bed, str(tmp_path / "tf32.h5"), precision="tf32", device=device)
    assert not [p for p in os.listdir(tmp_path) if p.startswith("tf32")]


def test_a_score_file_that_fails_to_open_closes_the_ones_opened_before(model, genome, tmp_path, monkeypatch):
    fasta, bed, _ = genome
    opened, closed = [], []
    real = S.ScoreWriter

    class Flaky(real):
        def __init__(self, path):
            if opened:  # the second target's file
                raise OSError(f"cannot open {path}")
            super().__init__(path)
            opened.append(self)

        def close(self):
            closed.append(self)
            super().close()

    monkeypatch.setattr(S, "ScoreWriter", Flaky)
    with pytest.raises(OSError, match="cannot open"):
        run(model, fasta, bed, str(tmp_path / "two.h5"), **TWO_HEADS)
    assert len(opened) == 1 and closed == opened
