"""`fastlift explain`: the command line over the scan (demo model and a real Keras file)."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fastlift as fl
from fastlift import cli, demo
from fastlift import scan as S
from fastlift.io import scores as io_scores

from test_scan import make_genome  # noqa: I001 - tests/ is on sys.path under pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERAS_BPNET = os.path.join(ROOT, "tests", "fixtures", "keras", "bpnet.keras")
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.fixture
def genome(tmp_path):
    fasta, bed, _ = make_genome(str(tmp_path), n_regions=30)
    return fasta, bed


def explain(*args):
    return cli.main(["explain", *map(str, args)])


def test_explain_demo_model_two_heads(genome, tmp_path, capsys):
    fasta, bed = genome
    out = tmp_path / "s.h5"
    code = explain("demo", "--fasta", fasta, "--bed", bed, "--width", 64, "--refs", "dinuc:3",
                   "--target", "profile@profile,0@counts", "--out", out, "--score-dtype", "float32",
                   "--batch-size", "auto", "--seed", 5)
    text = capsys.readouterr()
    assert code == 0, text.err
    assert "30 regions" in text.out and "regions/s" in text.out and "modisco motifs -i" in text.out
    assert "non-ACGT letters read as all-zero rows" in text.out
    assert "30/30 regions" in text.err and "ETA" in text.err  # the progress bar (one line per 10 s off a tty)
    paths = [tmp_path / "s.profile.h5", tmp_path / "s.counts.h5"]
    got = [io_scores.load_scores(str(p)) for p in paths]
    X = got[0]["input_seqs"].astype(np.float32)
    direct = fl.deeplift(demo.demo_model(64), X, fl.references.dinuc_shuffle(3), seed=5, hypothetical=True,
                         target=["profile", 0], target_layer=["profile", "counts"])
    np.testing.assert_array_equal(got[0]["hyp_scores"], direct.hypothetical[0])
    np.testing.assert_array_equal(got[1]["hyp_scores"], direct.hypothetical[1])
    params = got[0]["params"]
    assert params["seed"] == 5 and params["references"] == "dinuc_shuffle(3)" and params["target"] == ["profile", 0]
    # existing output: refused, resumed (already complete) or overwritten
    assert explain("demo", "--fasta", fasta, "--bed", bed, "--width", 64, "--refs", "dinuc:3",
                   "--target", "profile@profile,0@counts", "--out", out) == 1
    assert "exists; pass --resume to continue it or --overwrite" in capsys.readouterr().err
    assert explain("demo", "--fasta", fasta, "--bed", bed, "--width", 64, "--refs", "dinuc:3", "--seed", 5,
                   "--target", "profile@profile,0@counts", "--out", out, "--score-dtype", "float32",
                   "--resume") == 0
    assert "already complete" in capsys.readouterr().err
    assert explain("demo", "--fasta", fasta, "--bed", bed, "--width", 64, "--refs", "dinuc:3",
                   "--target", "profile@profile,0@counts", "--out", out, "--resume") == 1
    assert "other parameters" in capsys.readouterr().err


def test_explain_keras_file_with_input_array(tmp_path, capsys):
    model = fl.load_model(KERAS_BPNET)
    rng = np.random.default_rng(0)
    X = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, size=(17, 96))]
    np.savez(tmp_path / "x.npz", X)
    out = tmp_path / "k.h5"
    code = explain(KERAS_BPNET, "--input", tmp_path / "x.npz", "--target", "profile", "--target-layer",
                   "logits_profile_predictions", "--refs", "shuffle:3", "--out", out, "--quiet",
                   "--score-dtype", "float32", "--batch-size", 4)
    assert code == 0, capsys.readouterr().err
    got = io_scores.load_scores(str(out))
    direct = fl.deeplift(model, X.astype(np.float32), fl.references.shuffle(3), hypothetical=True,
                         target="profile", target_layer="logits_profile_predictions")
    np.testing.assert_array_equal(got["hyp_scores"], direct.hypothetical)
    np.testing.assert_array_equal(got["input_row"], np.arange(17))
    # "all": every unit of the counts head, one file each
    assert explain(KERAS_BPNET, "--input", tmp_path / "x.npz", "--target", "all", "--target-layer",
                   "logcount_predictions", "--refs", "dinuc:2", "--out", tmp_path / "all.h5", "--quiet") == 0
    assert os.path.exists(tmp_path / "all.logcount_predictions_0.h5")


def test_bad_input_gives_clean_errors(genome, tmp_path, capsys):
    fasta, bed = genome
    with open(bed, "a") as f:
        f.write("chrZ\t100\t200\n")
    assert explain("demo", "--fasta", fasta, "--bed", bed, "--width", 64, "--out", tmp_path / "x.h5") == 1
    err = capsys.readouterr().err
    assert "fastlift explain: error:" in err and "regions.bed:32: unknown chromosome 'chrZ'" in err
    assert "Traceback" not in err
    assert explain("demo", "--fasta", fasta, "--bed", bed, "--width", 64, "--out", tmp_path / "x.h5",
                   "--refs", "dinuc:2", "--skip-invalid", "--target", "0@counts") == 0
    captured = capsys.readouterr()
    assert "skipping 1 invalid region(s)" in captured.err and "skipped: 1 invalid region" in captured.out
    for args, msg in [(["--refs", "dinucc:3"], "expected dinuc"), (["--target", "profile@nope"], "unknown layer"),
                      (["--target", "x"], "expected an index")]:
        assert explain("demo", "--fasta", fasta, "--bed", bed, "--width", 64, "--out", tmp_path / "y.h5",
                       "--skip-invalid", "--target", "0@counts", *args) == 1
        assert msg in capsys.readouterr().err
    assert explain("missing.h5", "--fasta", fasta, "--bed", bed, "--out", tmp_path / "z.h5") == 1
    assert "model file not found" in capsys.readouterr().err
    assert explain(KERAS_BPNET, "--fasta", fasta, "--bed", bed, "--width", 64, "--out", tmp_path / "z.h5") == 1
    assert "the model takes inputs of shape (96, 4)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        explain("demo", "--input", "x.npz", "--fasta", fasta, "--bed", bed, "--out", tmp_path / "z.h5")
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        explain("demo", "--fasta", fasta, "--out", tmp_path / "z.h5")
    with pytest.raises(SystemExit):
        explain("demo", "--fasta", fasta, "--bed", bed, "--out", tmp_path / "z.h5", "--batch-size", "0")


def test_help_explains_every_option():
    proc = subprocess.run([sys.executable, "-m", "fastlift.cli", "explain", "--help"], capture_output=True,
                          text=True, env=ENV, check=False)
    assert proc.returncode == 0
    parser = cli.build_parser()
    explain_parser = parser._subparsers._group_actions[0].choices["explain"]
    for action in explain_parser._actions:
        assert action.help, action.option_strings
        for opt in action.option_strings:
            assert opt in proc.stdout
    for word in ("modisco motifs -i", "--resume", "profile", "dinuc:K", "narrowPeak"):
        assert word in proc.stdout


def test_explain_reverse_complement(genome, tmp_path, capsys):
    fasta, bed = genome
    out = tmp_path / "rc.h5"
    args = ["demo", "--fasta", fasta, "--bed", bed, "--width", 64, "--refs", "dinuc:3", "--target", "profile",
            "--target-layer", "profile", "--out", out, "--score-dtype", "float32", "--quiet"]
    assert explain(*args, "--reverse-complement") == 0, capsys.readouterr().err
    got = io_scores.load_scores(str(out))
    assert got["params"]["reverse_complement"] is True
    X = got["input_seqs"].astype(np.float32)
    direct = fl.deeplift(demo.demo_model(64), X, fl.references.dinuc_shuffle(3), hypothetical=True, target="profile",
                         target_layer="profile", reverse_complement=True)
    np.testing.assert_array_equal(got["hyp_scores"], direct.hypothetical)
    assert explain(*args, "--resume") == 1  # a resume without --reverse-complement is refused
    assert "reverse_complement: file has True, this run None" in capsys.readouterr().err


def test_parse_target():
    model = demo.demo_model(64)
    assert cli._parse_target("0", None, model) == (0, None)
    assert cli._parse_target("profile", "profile", model) == ("profile", "profile")
    assert cli._parse_target("profile@profile,0@counts", None, model) == (["profile", 0], ["profile", "counts"])
    assert cli._parse_target("0,profile", "profile", model) == ([0, "profile"], "profile")
    assert cli._parse_target("all", "counts", model) == ([0], "counts")
    assert cli._parse_target("sum@counts", None, model) == (["sum"], ["counts"])
    assert cli._parse_target("profile_chrombpnet@profile,profile_bpnetlite@profile,0@counts", None, model) == (
        ["profile_chrombpnet", "profile_bpnetlite", 0], ["profile", "profile", "counts"])
    with pytest.raises(ValueError, match=r"--target item 'profile_tf': expected an index, 'profile', "
                                         r"'profile_chrombpnet', 'profile_bpnetlite', 'sum' or 'all'"):
        cli._parse_target("profile_tf", "profile", model)


def test_cli_sigkill_and_resume(tmp_path):
    fasta, bed, _ = make_genome(str(tmp_path), n_regions=150, seed=9)
    args = [sys.executable, "-m", "fastlift.cli", "explain", "demo", "--fasta", fasta, "--bed", bed, "--width", "64",
            "--refs", "dinuc:8", "--chunk-size", "2", "--quiet", "--target", "profile@profile,0@counts"]
    ref = str(tmp_path / "ref.h5")
    subprocess.run([*args, "--out", ref], check=True, env=ENV, timeout=300)
    out = str(tmp_path / "k.h5")
    proc = subprocess.Popen([*args, "--out", out], env=ENV)
    target = str(tmp_path / "k.profile.h5")
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        try:
            if io_scores.read_header(target)["n_done"] >= 40:
                break
        except Exception:  # noqa: BLE001, S110 - not there yet
            pass
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_done = io_scores.read_header(target)["n_done"]
    assert 0 < n_done < 150
    subprocess.run([*args, "--out", out, "--resume", "--batch-size", "3"], check=True, env=ENV, timeout=300)
    for name in ("profile", "counts"):
        with open(str(tmp_path / f"ref.{name}.h5"), "rb") as a, open(str(tmp_path / f"k.{name}.h5"), "rb") as b:
            assert a.read() == b.read()


def test_cli_bigwig(genome, tmp_path, capsys):
    pytest.importorskip("pyBigWig")
    fasta, bed = genome
    assert explain("demo", "--fasta", fasta, "--bed", bed, "--width", 64, "--refs", "dinuc:2", "--out",
                   tmp_path / "s.h5", "--bigwig", tmp_path / "s.bw", "--quiet", "--target", "sum") == 0
    assert "bigWig:" in capsys.readouterr().out and os.path.getsize(tmp_path / "s.bw") > 0


def test_compress_after_completion(genome, tmp_path, capsys):
    fasta, bed = genome
    common = ["demo", "--fasta", fasta, "--bed", bed, "--width", 64, "--refs", "dinuc:2", "--quiet",
              "--target", "0", "--target-layer", "profile"]
    assert explain(*common, "--out", tmp_path / "plain.h5") == 0
    assert explain(*common, "--out", tmp_path / "small.h5", "--compress") == 0
    assert "compressed" in capsys.readouterr().out
    plain, small = (io_scores.load_scores(str(tmp_path / f)) for f in ("plain.h5", "small.h5"))
    for name in ("hyp_scores", "projected_scores", "input_seqs", "coords_chrom", "deltas"):
        np.testing.assert_array_equal(plain[name], small[name])
    assert small["params"] == plain["params"] and small["n_done"] == 30
    assert os.path.getsize(tmp_path / "small.h5") < os.path.getsize(tmp_path / "plain.h5")
    assert explain(*common, "--out", tmp_path / "small.h5", "--resume") == 0   # complete: nothing to do
    with pytest.raises(io_scores.ScoreFileError, match="no contiguous storage"):
        io_scores.ScoreWriter(str(tmp_path / "small.h5"))


def test_a_width_too_large_for_memory_is_refused_before_any_output(tmp_path, capsys, monkeypatch):
    """--width 1999000 on the demo model: about 20 GB for one region; refused up front (one line
    naming --width, the estimate and the memory available), no output file left behind."""
    from fastlift import genomics as G
    from fastlift import scan as S

    rng = np.random.default_rng(0)
    fasta = str(tmp_path / "big.fa")
    G.write_fasta(fasta, {"chr1": "".join(rng.choice(list("ACGT"), 2_100_000))})
    bed = tmp_path / "one.bed"
    bed.write_text("chr1\t1050000\t1050001\n")
    monkeypatch.setattr(S, "available_memory", lambda: 16 * 10**9)
    code = explain("demo", "--fasta", fasta, "--bed", bed, "--width", 1999000, "--target", "sum", "--out",
                   tmp_path / "w.h5")
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "one region of --width 1999000 needs about" in err and "more than the 16.00 GB of memory available" in err
    assert not [p for p in os.listdir(tmp_path) if p.startswith("w")]


def _one_line_error(code, err, *fragments):
    """Exit status 1, exactly one line on stderr, no traceback, and the expected words."""
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory this process cannot write: a read-only tmpfs as root, mode 0o555 otherwise."""
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(d)], capture_output=True,
                          check=False).returncode != 0:
            pytest.skip("root without the right to mount a read-only file system here")
        yield d, lambda: subprocess.run(["mount", "-o", "remount,ro", str(d)], check=True)
        subprocess.run(["umount", str(d)], capture_output=True, check=False)
    else:
        yield d, lambda: os.chmod(d, 0o555)
        os.chmod(d, 0o755)


def test_read_only_output_directory_creating_and_resuming(genome, tmp_path, capsys, read_only_dir):
    fasta, bed = genome
    d, make_read_only = read_only_dir
    common = ["demo", "--fasta", fasta, "--bed", bed, "--width", 64, "--refs", "dinuc:2", "--quiet", "--target", "sum"]
    assert explain(*common, "--out", d / "done.h5") == 0
    capsys.readouterr()
    make_read_only()
    _one_line_error(explain(*common, "--out", d / "new.h5"), capsys.readouterr().err,
                    f"cannot write {d / 'new.h5'}: its directory is not writable")
    _one_line_error(explain(*common, "--out", d / "done.h5", "--resume"), capsys.readouterr().err,
                    f"cannot write {d / 'done.h5'}: its directory is not writable")


def test_every_input_error_is_one_line(genome, tmp_path, capsys, monkeypatch):
    fasta, bed = genome
    common = ["--fasta", fasta, "--width", 64, "--refs", "dinuc:2", "--quiet"]
    not_gzip = tmp_path / "regions.bed.gz"
    not_gzip.write_text("chr1\t500\t520\n")
    _one_line_error(explain("demo", *common, "--bed", not_gzip, "--out", tmp_path / "a.h5"), capsys.readouterr().err,
                    f"{not_gzip}: not a readable gzip file")
    latin = tmp_path / "latin.bed"
    latin.write_bytes(b"chr1\t500\t520\tok\nchr1\t600\t620\tpe\xf1a\n")
    _one_line_error(explain("demo", *common, "--bed", latin, "--out", tmp_path / "a.h5"), capsys.readouterr().err,
                    f"{latin}:2: not UTF-8 text (byte 0xf1 at column 16)")
    model_dir = tmp_path / "model_dir"
    model_dir.mkdir()
    _one_line_error(explain(model_dir, *common, "--bed", bed, "--out", tmp_path / "a.h5"), capsys.readouterr().err,
                    f"MODEL {model_dir} is a directory")
    out_dir = tmp_path / "out_dir"
    out_dir.mkdir()
    _one_line_error(explain("demo", *common, "--bed", bed, "--out", out_dir, "--overwrite", "--target", "sum"),
                    capsys.readouterr().err,
                    f"output {out_dir} is a directory")
    _one_line_error(explain("demo", *common, "--bed", bed, "--out", tmp_path / "a.h5", "--threads", 10**12),
                    capsys.readouterr().err, "--threads must be at most")
    _one_line_error(cli.main(["demo", "--threads", str(10**12)]), capsys.readouterr().err, "--threads must be at most")
    edge = tmp_path / "edge.bed"
    edge.write_text("chr1\t0\t50\n")
    line = _one_line_error(explain("demo", *common[:2], "--width", 500, "--bed", edge, "--out", tmp_path / "a.h5"),
                           capsys.readouterr().err, "edge.bed:1: the 500-bp window chr1:-225-275",
                           "starts before the start of chr1", "--skip-invalid")
    assert "on_invalid" not in line and "past the end" not in line
    assert not [p for p in os.listdir(tmp_path) if p.startswith("a")]


def test_optional_outputs_are_checked_before_the_scan(genome, tmp_path, capsys, monkeypatch):
    fasta, bed = genome
    X = np.eye(4, dtype=np.uint8)[np.zeros((3, 64), dtype=int)]
    np.save(tmp_path / "x.npy", X)
    _one_line_error(explain("demo", "--input", tmp_path / "x.npy", "--out", tmp_path / "i.h5", "--bigwig",
                            tmp_path / "i.bw", "--quiet"), capsys.readouterr().err,
                    "--bigwig needs genome coordinates")
    monkeypatch.setitem(sys.modules, "pyBigWig", None)  # as if it were not installed
    _one_line_error(explain("demo", "--fasta", fasta, "--bed", bed, "--width", 64, "--out", tmp_path / "b.h5",
                            "--bigwig", tmp_path / "b.bw", "--quiet"), capsys.readouterr().err,
                    "--bigwig needs pyBigWig: pip install pyBigWig")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(("i.", "b."))]


def test_demo_says_what_it_does_before_each_step(capsys, monkeypatch):
    events = []
    real_attribute, real_scan = demo.attribute, S.scan
    monkeypatch.setattr(demo, "attribute", lambda *a, **k: events.append(("compute", a[2])) or real_attribute(*a, **k))
    monkeypatch.setattr(S, "scan", lambda *a, **k: events.append(("compute", "scan")) or real_scan(*a, **k))
    demo.run(n=20, length=40, n_refs=2, log=lambda msg: events.append(("log", msg)))
    kinds = [k for k, _ in events]
    assert kinds == ["log", "compute"] * 5, events
    assert events[0][1].startswith("[1/5] deeplift rescale: writing 20 sequences as a FASTA + narrowPeak")
    assert events[2] == ("log", "[2/5] deeplift reveal_cancel") and events[3] == ("compute", "deeplift")
    assert cli.main(["demo", "--n", "20", "--length", "40", "--refs", "2"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("fastlift demo: scoring 20 simulated 40-bp sequences with 5 methods")
    assert [line[:5] for line in err[1:] if line.startswith("[")] == ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"]


def test_compress_and_bigwig_say_what_they_do(genome, tmp_path, capsys):
    pytest.importorskip("pyBigWig")
    fasta, bed = genome
    assert explain("demo", "--fasta", fasta, "--bed", bed, "--width", 64, "--refs", "dinuc:2", "--target", "sum",
                   "--out", tmp_path / "s.h5", "--bigwig", tmp_path / "s.bw", "--compress") == 0
    err = capsys.readouterr().err
    assert f"writing the bigWig {tmp_path / 's.bw'} from {tmp_path / 's.h5'} ..." in err
    assert f"compressing {tmp_path / 's.h5'} (" in err


def test_a_layer_of_many_units_needs_an_explicit_target(genome, tmp_path, capsys):
    """The demo's first output is a 64-position profile head: scoring its unit 0 silently was the old
    default. --target all over a wide layer would write one file per unit."""
    fasta, bed = genome
    common = ["demo", "--fasta", fasta, "--bed", bed, "--width", 64, "--refs", "dinuc:2", "--quiet"]
    _one_line_error(explain(*common, "--out", tmp_path / "p.h5"), capsys.readouterr().err,
                    "--target is needed: the target layer 'profile' has 64 units (shape (64,)); pass --target "
                    "profile (a profile head), sum, all or a unit index")
    _one_line_error(explain(*common, "--target", "all", "--target-layer", "profile", "--out", tmp_path / "a.h5"),
                    capsys.readouterr().err, "--target all on layer 'profile' would write 64 files",
                    "--target sum or profile", "--allow-many-targets")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(("p.", "a."))]
    assert explain(*common, "--target-layer", "counts", "--out", tmp_path / "c.h5") == 0   # one unit: 0
    assert io_scores.read_header(str(tmp_path / "c.h5"))["params"]["target"] == 0
    model = demo.demo_model(64)
    assert len(cli._parse_target("all", "profile", model, allow_many=True)[0]) == 64
    assert cli._parse_target("all", "counts", model) == ([0], "counts")


def _variable_length_bpnet(path):
    """The BPNet fixture saved as a model of any length: input (None, 4)."""
    import json
    import shutil

    import h5py

    shutil.copy(os.path.join(ROOT, "tests", "fixtures", "keras", "bpnet.tfkeras.h5"), path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        config["config"]["layers"][0]["config"]["batch_input_shape"] = [None, None, 4]
        f.attrs["model_config"] = json.dumps(config)
    return str(path)


def test_width_fills_the_length_of_a_variable_length_model(tmp_path, capsys):
    fasta, bed, _ = make_genome(str(tmp_path), n_regions=9)
    varlen = _variable_length_bpnet(tmp_path / "varlen.h5")
    out = tmp_path / "v.h5"
    assert explain(varlen, "--fasta", fasta, "--bed", bed, "--width", 120, "--target", "0",
                   "--target-layer", "logcount_predictions", "--refs", "dinuc:2", "--out", out, "--quiet",
                   "--score-dtype", "float32") == 0, capsys.readouterr().err
    got = io_scores.load_scores(str(out))
    assert got["input_seqs"].shape == (9, 120, 4)
    model = fl.load_model(varlen, input_shape=(120, 4))
    direct = fl.deeplift(model, got["input_seqs"].astype(np.float32), fl.references.dinuc_shuffle(2), hypothetical=True,
                         target=0, target_layer="logcount_predictions")
    np.testing.assert_array_equal(got["hyp_scores"], direct.hypothetical)
    np.savez(tmp_path / "x.npz", got["input_seqs"][:, :100])   # --input: the arrays' length
    assert explain(varlen, "--input", tmp_path / "x.npz", "--target-layer", "logcount_predictions", "--refs", "dinuc:2",
                   "--out", tmp_path / "i.h5", "--quiet") == 0, capsys.readouterr().err
    assert io_scores.load_scores(str(tmp_path / "i.h5"))["hyp_scores"].shape == (9, 100, 4)
    _one_line_error(explain(varlen, "--fasta", fasta, "--bed", bed, "--target", "0", "--out", tmp_path / "n.h5"),
                    capsys.readouterr().err, "unknown dimension", "pass --width")


def test_input_arrays_in_the_ncl_layout(tmp_path, capsys):
    """(N, 4, L) arrays, as tangermeme and bpnet-lite keep them: --layout ncl reads them; the
    scores are those of the (N, L, 4) array and are written (N, L, 4)."""
    rng = np.random.default_rng(3)
    X = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, size=(11, 64))]
    np.save(tmp_path / "nlc.npy", X)
    np.save(tmp_path / "ncl.npy", X.transpose(0, 2, 1))
    common = ["demo", "--target", "0", "--target-layer", "counts", "--refs", "dinuc:3", "--quiet"]
    assert explain(*common, "--input", tmp_path / "nlc.npy", "--out", tmp_path / "a.h5") == 0
    _one_line_error(explain(*common, "--input", tmp_path / "ncl.npy", "--out", tmp_path / "b.h5"),
                    capsys.readouterr().err, "must be one-hot of shape (n_regions, length, 4); got (11, 4, 64)",
                    "pass --layout ncl")
    assert explain(*common, "--input", tmp_path / "ncl.npy", "--layout", "ncl", "--out", tmp_path / "b.h5") == 0
    a, b = io_scores.load_scores(str(tmp_path / "a.h5")), io_scores.load_scores(str(tmp_path / "b.h5"))
    assert b["hyp_scores"].shape == (11, 64, 4)
    for name in ("hyp_scores", "projected_scores", "input_seqs", "deltas"):
        np.testing.assert_array_equal(a[name], b[name])
    assert b["params"]["source"]["layout"] == "ncl"
    _one_line_error(explain(*common, "--input", tmp_path / "nlc.npy", "--layout", "ncl", "--out", tmp_path / "c.h5"),
                    capsys.readouterr().err, "with --layout ncl must be one-hot of shape (n_regions, 4, length)")
    fasta, bed, _ = make_genome(str(tmp_path), n_regions=2)
    _one_line_error(explain(*common, "--fasta", fasta, "--bed", bed, "--layout", "ncl", "--out", tmp_path / "d.h5"),
                    capsys.readouterr().err, "--layout describes --input arrays")
