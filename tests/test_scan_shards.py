"""Shards of a scan (``shard=(i, n)``, ``--shard I/N``) and `merge`: byte-identical to one process."""

import os
import subprocess
import sys

import numpy as np
import pytest

from fastlift import demo
from fastlift import scan as S
from fastlift.io import scores as io_scores

from test_scan import TWO_HEADS, WIDTH, Crash, _crash_after, make_genome, read_bytes  # noqa: I001

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.fixture(scope="module")
def model():
    return demo.demo_model(WIDTH)


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    fasta, bed, _ = make_genome(str(tmp_path_factory.mktemp("genome")), n_regions=23)
    return fasta, bed


@pytest.fixture(scope="module")
def whole(model, genome, tmp_path_factory):
    """The single-process scan the shards must reproduce: its paths and bytes."""
    out = str(tmp_path_factory.mktemp("whole") / "s.h5")
    paths = run(model, genome, out).paths
    return paths, read_bytes(paths)


def run(model, genome, out, **kw):
    fasta, bed = genome
    source = S.FastaBedSource(fasta, bed, WIDTH)
    try:
        return S.scan(model, source, out, **{"references": "dinuc:3", "seed": 5, "chunk_size": 4, **TWO_HEADS, **kw})
    finally:
        source.close()


def shards(model, genome, out, count, **kw):
    """Run every shard of ``count``; the part files, all targets."""
    return [p for i in range(count) for p in run(model, genome, out, shard=(i, count), **kw).paths]


@pytest.mark.parametrize("count", [1, 2, 5, 30])   # 30 > 23 regions: some shards are empty
def test_merged_shards_are_byte_identical_to_one_process(model, genome, whole, tmp_path, count):
    out = str(tmp_path / "s.h5")
    parts = shards(model, genome, out, count, chunk_size=3)
    assert os.path.basename(parts[0]) == "s.part-00000-of-" + f"{count:05d}" + ".counts.h5"
    merged = S.merge(parts[::-1], out)   # any order
    assert [os.path.basename(p) for p in merged] == ["s.counts.h5", "s.profile.h5"]
    assert read_bytes(merged) == whole[1]


def test_a_shard_holds_its_regions_and_says_so(model, genome, whole, tmp_path):
    res = run(model, genome, str(tmp_path / "s.h5"), shard=(1, 3))
    assert (res.shard.start, res.shard.stop, res.n_regions) == (7, 15, 8)
    part, full = io_scores.load_scores(res.paths[1]), io_scores.load_scores(whole[0][1])
    for name in ("hyp_scores", "projected_scores", "input_seqs", "deltas", "coords_start", "region_line"):
        np.testing.assert_array_equal(part[name], full[name][7:15])
    assert part["params"]["shard"] == {"index": 1, "count": 3, "start": 7, "stop": 15, "n_regions": 23,
                                       "outputs": ["counts", "profile"]}
    assert {k: v for k, v in part["params"].items() if k != "shard"} == full["params"]


def test_an_interrupted_shard_resumes_to_the_same_bytes(model, genome, whole, tmp_path, monkeypatch):
    out = str(tmp_path / "s.h5")
    with monkeypatch.context() as m:
        _crash_after(m, 3)
        with pytest.raises(Crash):
            run(model, genome, out, shard=(1, 2), chunk_size=2)
    res = run(model, genome, out, shard=(1, 2), resume=True)
    assert res.resumed_from == 2 and res.n_scored == 12 - 2
    parts = shards(model, genome, out, 2, resume=True)   # shard 1 is complete: nothing more to do
    assert read_bytes(S.merge(parts, out)) == whole[1]


def test_array_inputs_shard_and_merge_too(model, whole, tmp_path):
    X = io_scores.load_scores(whole[0][0])["input_seqs"]
    for name, arr in [("x.npy", X), ("x.npz", X)]:
        path = str(tmp_path / name)
        (np.save if name.endswith(".npy") else np.savez)(path, arr)
        source = S.ArraySource(io_scores.read_input_array(path), path=path)
        kw = {"references": "dinuc:3", "seed": 5, "chunk_size": 4, **TWO_HEADS}
        single = S.scan(source=source, model=model, out=str(tmp_path / f"{name}.h5"), **kw).paths
        parts = [p for i in range(3) for p in S.scan(model, source, str(tmp_path / f"{name}.p.h5"), shard=(i, 3),
                                                     **kw).paths]
        assert read_bytes(S.merge(parts, str(tmp_path / f"{name}.m.h5"))) == read_bytes(single)


def test_merge_refuses_what_is_not_one_complete_run(model, genome, whole, tmp_path, monkeypatch):
    out = str(tmp_path / "s.h5")
    parts = shards(model, genome, out, 3)
    counts = [p for p in parts if ".counts." in p]
    m = str(tmp_path / "m.h5")
    with pytest.raises(S.ScanError, match=r"1 of the 3 shards of target counts are missing \(shard 1; e\.g\. .*"
                                          r"m\.part-00001-of-00003\.h5\)"):
        S.merge([counts[0], counts[2]], m)
    copy = str(tmp_path / "copy.h5")
    with open(counts[1], "rb") as f, open(copy, "wb") as g:
        g.write(f.read())
    with pytest.raises(S.ScanError, match=r"and .*copy\.h5 are both shard 1 of 3 \(target counts\)"):
        S.merge(counts + [copy], m)
    with pytest.raises(S.ScanError, match="is given twice"):
        S.merge(counts + counts[:1], m)
    other = shards(model, genome, str(tmp_path / "o.h5"), 3, seed=6)
    with pytest.raises(S.ScanError, match=r"parts of different runs \(seed: 5 vs 6\)"):
        S.merge(counts[:2] + [p for p in other if ".counts." in p][2:], m)
    four = shards(model, genome, str(tmp_path / "f.h5"), 4)
    with pytest.raises(S.ScanError, match=r"parts of different runs \(shard count: 3 vs 4\)"):
        S.merge(counts[:2] + [four[4]], m)
    with pytest.raises(S.ScanError, match=r"is not a shard file .*holds a whole scan"):
        S.merge([whole[0][0]], m)
    with pytest.raises(io_scores.ScoreFileError, match="not a readable HDF5 file"):
        S.merge([str(tmp_path / "missing.h5")], m)
    part = str(tmp_path / "i.h5")
    with monkeypatch.context() as mp:
        _crash_after(mp, 1)
        with pytest.raises(Crash):
            run(model, genome, part, shard=(0, 1), chunk_size=2)
    with pytest.raises(S.ScanError, match=r"i\.part-00000-of-00001\.counts\.h5 is incomplete \(2 of 23 regions "
                                          r"scored\): finish it first .*--shard 0/1 --resume"):
        S.merge(S.output_paths(S.shard_path(part, 0, 1), ["counts", "profile"]), m)
    assert not [p for p in os.listdir(tmp_path) if p.startswith("m.") or ".merging-" in p]
    S.merge(parts, m)
    with pytest.raises(FileExistsError, match=r"m\.counts\.h5 exists; pass --overwrite"):
        S.merge(parts, m)
    assert read_bytes(S.merge(parts, m, overwrite=True)) == whole[1]
    one = run(model, genome, str(tmp_path / "one.h5"), shard=(0, 1), target=0, target_layer="counts").paths[0]
    with pytest.raises(S.ScanError, match=r"the output .*one\.part-00000-of-00001\.h5 is one of the parts"):
        S.merge([one], one, overwrite=True)


def test_merging_one_target_of_several(model, genome, whole, tmp_path):
    out = str(tmp_path / "s.h5")
    profile = [p for p in shards(model, genome, out, 2) if ".profile." in p]
    assert read_bytes(S.merge(profile, out)) == whole[1][1:]


def test_bad_shard_arguments(model, genome, tmp_path):
    for bad in [(2, 2), (-1, 2), (0, 0), (1,), "0/2", (True, 2), (0.0, 2)]:
        with pytest.raises(S.ScanError, match=r"shard must be \(index, count\) with 0 <= index < count"):
            run(model, genome, str(tmp_path / "s.h5"), shard=bad)
    with pytest.raises(S.ScanError, match="no part files given"):
        S.merge([], str(tmp_path / "m.h5"))
    with pytest.raises(S.ScanError, match="task_size sizes the tasks of a distributed scan"):
        run(model, genome, str(tmp_path / "s.h5"), task_size=10)
    assert not list(tmp_path.iterdir())


def explain(*args):
    return subprocess.run([sys.executable, "-m", "fastlift.cli", *args], capture_output=True, text=True, env=ENV,
                          timeout=300, check=False)


def test_command_line_shards_and_merge(genome, whole, tmp_path):
    fasta, bed = genome
    out = str(tmp_path / "s.h5")
    common = ["explain", "demo", "--fasta", fasta, "--bed", bed, "--width", str(WIDTH), "--refs", "dinuc:3",
              "--seed", "5", "--target", "0@counts,profile@profile", "--out", out, "--quiet"]
    for i in range(2):
        proc = explain(*common, "--shard", f"{i}/2")
        assert proc.returncode == 0, proc.stderr
    assert "(shard 1/2: regions [11, 23) of 23)" in proc.stdout
    assert f"fastlift merge {tmp_path / 's.part-*.h5'} --out {out}" in proc.stdout
    parts = sorted(str(p) for p in tmp_path.glob("s.part-*.h5"))
    proc = explain("merge", *parts[:3], "--out", out)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("fastlift merge: error: 1 of the 2 shards of target profile are missing")
    proc = explain("merge", *parts, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert read_bytes(S.output_paths(out, ["counts", "profile"])) == whole[1]
    for bad, msg in [(["--shard", "2/2"], "expected I/N with 0 <= I < N"), (["--shard", "x"], "expected I/N"),
                     (["--shard", "0/2", "--compress"], "pass them to fastlift merge"),
                     (["--shard", "0/2", "--workers", "2"], "give one or the other"),
                     (["--task-size", "5"], "use it with --workers or --scheduler")]:
        proc = explain(*common, *bad)
        assert proc.returncode != 0 and msg in proc.stderr, (bad, proc.stderr)


NO_DASK = r"""
import sys
from fastlift import cli
rc = cli.main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed"))
assert not loaded, loaded
sys.exit(rc)
"""


def test_the_single_process_path_never_imports_dask(genome, tmp_path):
    """Dask is an optional extra: a scan in one process, a shard and a merge never load it."""
    fasta, bed = genome
    out = str(tmp_path / "s.h5")
    common = ["explain", "demo", "--fasta", fasta, "--bed", bed, "--width", str(WIDTH), "--refs", "dinuc:2",
              "--target", "0", "--target-layer", "counts", "--quiet"]
    for args in [common + ["--out", out], common + ["--out", out, "--shard", "0/1"],
                 ["merge", S.shard_path(out, 0, 1), "--out", str(tmp_path / "m.h5")]]:
        proc = subprocess.run([sys.executable, "-c", NO_DASK, *args], capture_output=True, text=True, env=ENV,
                              timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr


def test_workers_without_dask_installed_say_what_to_install(genome, tmp_path):
    fasta, bed = genome
    hide = "import sys; sys.modules['distributed'] = None; from fastlift import cli; sys.exit(cli.main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", hide, "explain", "demo", "--fasta", fasta, "--bed", bed, "--width",
                           str(WIDTH), "--target", "0", "--target-layer", "counts", "--workers", "2", "--out",
                           str(tmp_path / "s.h5")], capture_output=True, text=True, env=ENV, timeout=300, check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "--workers and --scheduler run on Dask: pip install 'fastlift[dask]'" in proc.stderr
    assert not os.path.exists(tmp_path / "s.h5")


def test_parts_read_their_own_regions_when_earlier_ones_are_skipped(genome, tmp_path):
    """A distributed resume asks only for the shards left to score (bounds with gaps): each part
    must read the regions of its bounds, not the next ones of the file."""
    fasta, bed = genome
    source = S.FastaBedSource(fasta, bed, WIDTH)
    X = np.zeros((23, WIDTH, 4), np.uint8)
    arrays = S.ArraySource(X)
    try:
        whole = next(source.chunks(0, 23))
        bounds = [(5, 9), (9, 12), (17, 23)]
        for (lo, hi), part in zip(bounds, source.parts(bounds)):
            chunk = next(part.chunks(lo, 100))
            assert chunk.lo == lo and len(chunk.onehot) == hi - lo
            assert np.array_equal(chunk.onehot, whole.onehot[lo:hi]), (lo, hi)
            assert np.array_equal(chunk.coords["coords_start"], whole.coords["coords_start"][lo:hi])
            part.close()
        for (lo, hi), part in zip(bounds, arrays.parts(bounds)):
            assert next(part.chunks(lo, 100)).lo == lo and part.stop == hi
    finally:
        source.close()


def test_array_parts_name_their_file_by_its_absolute_path(tmp_path, monkeypatch):
    """A part reopens its input where it runs: a Dask worker started in another folder must read
    the file the client named, not a file of the same relative name in its own folder."""
    X = np.eye(4, dtype=np.uint8)[np.random.default_rng(0).integers(0, 4, (6, WIDTH))]
    (tmp_path / "here").mkdir()
    (tmp_path / "there").mkdir()
    np.save(tmp_path / "here" / "x.npy", X)
    np.save(tmp_path / "there" / "x.npy", X[::-1])   # same name, other rows
    monkeypatch.chdir(tmp_path / "here")
    source = S.ArraySource(io_scores.read_input_array("x.npy"), path="x.npy")
    parts = list(source.parts([(0, 3), (3, 6)]))
    monkeypatch.chdir(tmp_path / "there")
    for (lo, hi), part in zip([(0, 3), (3, 6)], parts):
        assert np.array_equal(next(part.chunks(lo, 10)).onehot, X[lo:hi])
        part.close()


def test_merge_refuses_a_part_still_being_written(model, genome, whole, tmp_path):
    import threading

    out = str(tmp_path / "s.h5")
    parts = shards(model, genome, out, 2)
    held, done = threading.Event(), threading.Event()

    def writer():  # a scan of shard 1 in another thread, e.g. rerun with --overwrite
        with io_scores.lock_outputs([parts[-1]]):
            held.set()
            done.wait(30)

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert held.wait(30)
        with pytest.raises(io_scores.OutputBusyError, match="being written"):
            S.merge(parts, out)
        assert not os.path.exists(S.output_paths(out, ["counts", "profile"])[0])
    finally:
        done.set()
        t.join()
    assert read_bytes(S.merge(parts, out)) == whole[1]   # and merges once it is done


def test_the_command_line_shard_is_two_plain_numbers():
    import argparse

    from fastlift import cli

    assert cli._shard("3/4") == (3, 4) and cli._shard("0/1") == (0, 1)
    for bad in ["1_0/20", " 1/2", "1/2 ", "+1/2", "a/b", "3/2", "1/", "/2", "1", "١/٢"]:
        with pytest.raises(argparse.ArgumentTypeError, match="expected I/N with 0 <= I < N"):
            cli._shard(bad)


def test_merge_refuses_a_part_whose_shard_record_is_damaged(model, genome, tmp_path):
    import json

    import h5py

    out = str(tmp_path / "s.h5")
    parts = shards(model, genome, out, 2)
    for bad in [{"index": "0"}, {"count": 2.5}, {"start": None}, {"index": True}]:
        with h5py.File(parts[0], "r+") as f:
            params = json.loads(f.attrs["params"])
            good = dict(params["shard"])
            params["shard"].update(bad)
            f.attrs["params"] = json.dumps(params)
        try:
            with pytest.raises(S.ScanError, match=r"its shard record .* is damaged"):
                S.merge(parts, out)
        finally:
            with h5py.File(parts[0], "r+") as f:
                params["shard"] = good
                f.attrs["params"] = json.dumps(params)
    S.merge(parts, out)
