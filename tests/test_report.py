"""`fastlift report`: the HTML page of a scan, read as HTML, in bounded memory, and looked at in Chromium."""

import base64
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from html.parser import HTMLParser

import h5py
import numpy as np
import pytest

from fastlift import cli
from fastlift.io import score_reader
from fastlift.io.scores import ScoreLayout, ScoreWriter, compress_score_file, create_score_file
from fastlift.report import Interval, parse_regions, write_report

BASES = "ACGT"
MOTIF = "TGACTCA"
MOTIF_AT = 30                       # planted at positions 30..36; the strongest base is the last one
FLANK = 15


def make_scores(path, n=30, length=80, *, planted=7, score_dtype="float32", coords=True, hypothetical=True,
                n_done=None, compress=False, seed=0, target="profile", params=None):
    """A score file written by fastlift's own writer: small random scores, and in row ``planted`` the
    motif TGACTCA with large positive contributions (1.5 rising to 2.1) on its bases. Rows < n/2
    lie on chr1, the others on chr2, windows 100 bp apart."""
    rng = np.random.default_rng(seed)
    seq = np.eye(4, dtype=np.int8)[rng.integers(0, 4, (n, length))]
    hyp = rng.normal(scale=0.02, size=(n, length, 4))
    if planted is not None:
        seq[planted, MOTIF_AT:MOTIF_AT + 7] = np.eye(4, dtype=np.int8)[[BASES.index(c) for c in MOTIF]]
        motif = slice(MOTIF_AT, MOTIF_AT + 7)
        hyp[planted, motif] += seq[planted, motif] * np.linspace(1.5, 2.1, 7)[:, None]
    proj = hyp * seq
    half = n // 2
    layout = ScoreLayout(n, length, score_dtype=score_dtype, chrom_width=4 if coords else 0,
                         hypothetical=hypothetical)
    params = params or {"rule": "rescale", "references": "dinuc_shuffle(10)", "seed": 0,
                        "output_name": target}
    create_score_file(str(path), layout, params, target)
    arrays = {"input_seqs": seq, "projected_scores": proj, "deltas": rng.normal(scale=1e-6, size=n),
              "n_non_acgt": np.zeros(n)}
    if hypothetical:
        arrays["hyp_scores"] = hyp
    if coords:
        start = 1000 + (np.arange(n) % half) * 100
        arrays.update(coords_chrom=np.array([b"chr1"] * half + [b"chr2"] * (n - half)), coords_start=start,
                      coords_end=start + length, region_line=np.arange(1, n + 1))
    else:
        arrays["input_row"] = np.arange(n)
    with ScoreWriter(str(path)) as w:
        w.write(0, **arrays)
        w.commit(n if n_done is None else n_done)
    if compress:
        compress_score_file(str(path))
    return proj


def expected_ranking(path, top):
    """Rows by total |projected score| as stored (largest first, ties to the earlier row)."""
    with h5py.File(path, "r") as f:
        n = int(f["n_done"][0])
        total = np.abs(f["projected_scores"][:n].astype(np.float64)).sum(axis=(1, 2))
    return list(np.lexsort((np.arange(n), -total))[:top])


class Page(HTMLParser):
    """The parts of the report a test reads: images, table rows, sections, text."""

    def __init__(self, text):
        super().__init__()
        self.images, self.rows, self.heads, self.regions, self.notes, self.text = [], [], [], [], [], []
        self.body = {}
        self._row = None
        self._in_note = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        elif tag == "body":
            self.body = a
        elif tag == "section" and "data-head" in a:
            self.heads.append(a["data-head"])
        elif tag == "div" and a.get("class") == "region":
            self.regions.append((self.heads[-1], int(a["data-row"])))
        elif tag == "tr":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._row.append(a.get("data-sort"))
        elif tag == "p" and a.get("class") == "note":
            self._in_note = True

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            if self._row and all(v is not None for v in self._row):
                self.rows.append((self.heads[-1], self._row))
            self._row = None
        elif tag == "p":
            self._in_note = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_note:
            self.notes.append(data)

    def of_class(self, cls):
        return [i for i in self.images if i.get("class") == cls]

    def table_rows(self, head):
        return [int(r[1]) for h, r in self.rows if h == head]


def report(*args):
    return cli.main(["report", *map(str, args), "--quiet"])


def read_page(path):
    with open(path, encoding="utf-8") as f:
        return Page(f.read())


def png_size(src):
    assert src.startswith("data:image/png;base64,")
    data = base64.b64decode(src.split(",", 1)[1])
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ----------------------------------------------------------------------------- content


def test_report_shows_the_strongest_regions_with_logos(tmp_path, capsys):
    path, out = tmp_path / "scores.h5", tmp_path / "report.html"
    make_scores(path)
    assert report(path, "--out", out, "--top", 5) == 0
    assert capsys.readouterr().out.strip() == f"fastlift report: wrote {out}"
    page = read_page(out)
    ranking = expected_ranking(path, 5)
    assert ranking[0] == 7
    assert page.heads == ["profile"]
    assert page.table_rows("profile") == ranking
    assert [row for _, row in page.regions] == ranking
    text = "".join(page.text)
    assert "#1 · chr1:1700-1780" in text and "strongest at chr1:1736" in text      # 1700 + MOTIF_AT + 6
    assert "dinuc_shuffle(10)" in text and "rescale" in text                      # the run's parameters
    assert len(page.of_class("histogram")) == 1
    assert [len(page.of_class(c)) for c in ("track", "logo", "hypothetical")] == [5, 5, 5]
    logo = page.of_class("logo")[0]
    peak = MOTIF_AT + 6
    assert (int(logo["data-start"]), int(logo["data-end"])) == (peak - FLANK, peak + FLANK + 1)
    assert logo["data-bases"][MOTIF_AT - (peak - FLANK):][:7] == MOTIF
    assert 0 < float(logo["data-x0"]) < float(logo["data-x1"]) < 1 and 0 < float(logo["data-y0"]) < 1
    for img in page.images:
        assert png_size(img["src"]) == (int(img["width"]), int(img["height"]))


def test_report_is_self_contained(tmp_path):
    path, out = tmp_path / "scores.h5", tmp_path / "report.html"
    make_scores(path)
    assert report(path, "--out", out, "--top", 2) == 0
    text = out.read_text()
    for needle in ("http:", "https:", "<link", "@import", "url(", "//cdn", "<iframe"):
        assert needle not in text
    page = Page(text)
    assert page.images and all(i["src"].startswith("data:image/png;base64,") for i in page.images)
    assert text.count("<script>") == 1 and "<script src" not in text


def test_table_values_match_the_file(tmp_path):
    path, out = tmp_path / "scores.h5", tmp_path / "report.html"
    proj = make_scores(path)
    assert report(path, "--out", out, "--top", 3) == 0
    page = read_page(out)
    with h5py.File(path, "r") as f:
        stored = f["projected_scores"][()].astype(np.float64)
        deltas = f["deltas"][()]
    assert np.allclose(stored, proj, atol=1e-6)
    for _, (rank, row, location, total, net, peak, delta) in page.rows:
        row = int(row)
        assert float(total) == pytest.approx(np.abs(stored[row]).sum(), rel=1e-12)
        assert float(net) == pytest.approx(stored[row].sum(), rel=1e-12)
        assert int(peak) == int(np.argmax(np.abs(stored[row].sum(axis=1))))
        assert float(delta) == pytest.approx(float(deltas[row]))


@pytest.mark.parametrize("kind", ["float16", "compressed", "input-rows", "no-hypothetical"])
def test_report_reads_every_kind_of_score_file(tmp_path, kind):
    path, out = tmp_path / "scores.h5", tmp_path / "report.html"
    make_scores(path, score_dtype="float16" if kind == "float16" else "float32",
                compress=kind == "compressed",
                coords=kind != "input-rows", hypothetical=kind != "no-hypothetical")
    assert report(path, "--out", out, "--top", 4) == 0
    page = read_page(out)
    assert page.table_rows("profile") == expected_ranking(path, 4)
    assert page.table_rows("profile")[0] == 7
    text = "".join(page.text)
    logo = page.of_class("logo")[0]
    assert MOTIF in logo["data-bases"]
    if kind == "compressed":
        assert "gzip" in text
    if kind == "input-rows":
        assert "#1 · input row 7" in text and "chr1" not in text
    if kind == "no-hypothetical":
        assert not page.of_class("hypothetical") and "no hypothetical scores in this file" in text
    else:
        assert len(page.of_class("hypothetical")) == 4


def test_several_heads_from_the_scans_out_name(tmp_path):
    make_scores(tmp_path / "scores.counts.h5", planted=3, seed=1, target="counts",
                params={"rule": "rescale", "seed": 0, "output_name": "counts"})
    make_scores(tmp_path / "scores.profile.h5", planted=20, seed=2, target="profile",
                params={"rule": "rescale", "seed": 0, "output_name": "profile"})
    by_base, listed = tmp_path / "base.html", tmp_path / "listed.html"
    assert report(tmp_path / "scores.h5", "--out", by_base, "--top", 2) == 0
    files = (tmp_path / "scores.counts.h5", tmp_path / "scores.profile.h5")
    assert report(*files, "--out", listed, "--top", 2) == 0
    assert by_base.read_bytes() == listed.read_bytes()          # same files found; the page is deterministic
    page = read_page(by_base)
    assert page.heads == ["counts", "profile"]
    assert page.table_rows("counts")[0] == 3 and page.table_rows("profile")[0] == 20
    assert len(page.of_class("histogram")) == 2
    text = "".join(page.text)
    assert text.count('"rescale"') == 1                          # shared parameters once
    assert '"counts"' in text and '"profile"' in text            # each head's own


def test_regions_option_picks_overlapping_windows(tmp_path):
    path, out = tmp_path / "scores.h5", tmp_path / "report.html"
    make_scores(path)                        # chr2 windows: row 15 + k at [1000 + 100 k, 1080 + 100 k)
    assert report(path, "--out", out, "--regions", "chr2:1250-1260,chr1:1050-1150") == 0
    page = read_page(out)
    rows = page.table_rows("profile")
    assert sorted(rows) == [0, 1, 17]
    assert rows == expected_ranking_among(path, [0, 1, 17])
    logos = {int(img["data-row"]): img for img in page.of_class("logo")}
    # row 17 ([1200, 1280)) meets the first interval at positions [50, 60): the logo is centred there
    centre = (int(logos[17]["data-start"]) + int(logos[17]["data-end"])) // 2
    assert 50 <= centre < 60
    assert "inside chr2:1250-1260" in "".join(page.text)


def expected_ranking_among(path, rows):
    with h5py.File(path, "r") as f:
        total = {r: np.abs(f["projected_scores"][r].astype(np.float64)).sum() for r in rows}
    return sorted(rows, key=lambda r: (-total[r], r))


def test_bad_regions_are_refused(tmp_path, capsys):
    path, out = tmp_path / "scores.h5", tmp_path / "report.html"
    make_scores(path)
    for bad in ("chr1:5", "chr1:10-5", "chr1:a-b"):
        with pytest.raises(SystemExit) as e:
            report(path, "--out", out, "--regions", bad)
        assert e.value.code == 2
        assert "--regions" in capsys.readouterr().err
    assert report(path, "--out", out, "--regions", "chr9:0-100") == 1
    err = capsys.readouterr().err.strip()
    assert err == "fastlift report: error: no scored region overlaps --regions chr9:0-100"
    rows = tmp_path / "rows.h5"
    make_scores(rows, coords=False)
    assert report(rows, "--out", out, "--regions", "chr1:0-100") == 1
    assert "needs genome coordinates" in capsys.readouterr().err
    assert not out.exists()


def test_parse_regions_takes_the_last_colon():
    got = parse_regions("HLA-A*01:01:1-20, chr2:0-5")
    assert got == [Interval("HLA-A*01:01", 1, 20), Interval("chr2", 0, 5)]


def test_bad_counts_and_outputs_are_refused(tmp_path, capsys):
    path = tmp_path / "scores.h5"
    make_scores(path)
    for args in (("--top", "0"), ("--flank", "-1"), ("--top", "x")):
        with pytest.raises(SystemExit) as e:
            report(path, "--out", tmp_path / "r.html", *args)
        assert e.value.code == 2 and args[0] in capsys.readouterr().err
    before = path.read_bytes()
    assert report(path, "--out", path) == 1
    assert "is one of the score files" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_regions_with_scores_beyond_float16_are_left_out_with_a_note(tmp_path):
    path, out = tmp_path / "scores.h5", tmp_path / "report.html"
    make_scores(path, planted=7, score_dtype="float16")
    with h5py.File(path, "r+") as f:                      # as a scan whose scores overflowed float16
        row = f["projected_scores"][3]
        row[10, :] = np.inf
        f["projected_scores"][3] = row
    assert report(path, "--out", out, "--top", 4) == 0
    page = read_page(out)
    finite = [r for r in expected_ranking(path, 30) if r != 3]       # inf sorts first: row 3 would lead
    assert page.table_rows("profile") == finite[:4]
    assert "1 region(s) have scores that are not finite" in "".join(page.notes)


def test_incomplete_scan_reports_the_scored_rows(tmp_path):
    path, out = tmp_path / "scores.h5", tmp_path / "report.html"
    make_scores(path, planted=25, n_done=20)            # the planted region is not scored yet
    assert report(path, "--out", out, "--top", 4) == 0
    page = read_page(out)
    assert page.table_rows("profile") == expected_ranking(path, 4)          # of the first 20 rows only
    with h5py.File(path, "r") as f:
        total = np.abs(f["projected_scores"][()].astype(np.float64)).sum(axis=(1, 2))
    assert int(np.argmax(total)) == 25 and 25 not in page.table_rows("profile")
    assert "incomplete: 20 of 30 regions are scored" in "".join(page.notes)


def test_progress_bar_on_stderr(tmp_path, capsys):
    path, out = tmp_path / "scores.h5", tmp_path / "report.html"
    make_scores(path)
    assert cli.main(["report", str(path), "--out", str(out), "--top", "1"]) == 0
    err = capsys.readouterr().err
    assert f"ranking the regions of {path}" in err and "30/30 regions" in err


def test_write_report_from_python(tmp_path):
    path = tmp_path / "scores.h5"
    make_scores(path)
    out = write_report(str(path), str(tmp_path / "r.html"), top=1, flank=3)
    logo = read_page(out).of_class("logo")[0]
    assert (int(logo["data-start"]), int(logo["data-end"])) == (MOTIF_AT + 3, MOTIF_AT + 10)


# ----------------------------------------------------------------------------- refusing other files


def _not_hdf5(p):
    p.write_text("chr1\t0\t100\n")


def _foreign_hdf5(p):
    with h5py.File(p, "w") as f:
        f["hyp_scores"] = np.zeros((2, 5, 4))


def _damaged(p):
    with h5py.File(p, "w") as f:
        f.attrs.update({"format": "fastlift-scores", "format_version": 1, "n_regions": 2, "target": "x",
                        "params": "{}"})
        f["n_done"] = np.array([2])
        f["input_seqs"] = np.zeros((2, 5, 4), np.int8)


def _nothing_scored(p):
    make_scores(p, n_done=0)


@pytest.mark.parametrize("make, message", [
    (_not_hdf5, "is not a readable HDF5 file"),
    (_foreign_hdf5, "is not a fastlift score file"),
    (_damaged, ("is not a complete fastlift score file: it lacks projected_scores, deltas, "
                "coords_start or input_row")),
    (_nothing_scored, "has no scored region yet (n_done = 0 of 30)"),
])
def test_other_files_are_refused_in_one_line(tmp_path, capsys, make, message):
    path, out = tmp_path / "other.h5", tmp_path / "report.html"
    make(path)
    assert report(path, "--out", out) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"fastlift report: error: {path}") and message in err and err.count("\n") == 1
    assert not out.exists() and os.listdir(tmp_path) == ["other.h5"]     # no half-written page left


def test_missing_files_and_outputs_are_refused(tmp_path, capsys):
    assert report(tmp_path / "nope.h5", "--out", tmp_path / "r.html") == 1
    assert f"nope.h5: no such file, nor per-head files {tmp_path}/nope.*.h5" in capsys.readouterr().err
    assert report(tmp_path, "--out", tmp_path / "r.html") == 1
    assert "is not a file" in capsys.readouterr().err
    make_scores(tmp_path / "s.h5")
    assert report(tmp_path / "s.h5", "--out", tmp_path / "no" / "r.html") == 1
    assert "does not exist" in capsys.readouterr().err


def test_command_line_errors_have_no_traceback(tmp_path):
    path = tmp_path / "x.h5"
    _foreign_hdf5(path)
    proc = subprocess.run([sys.executable, "-m", "fastlift.cli", "report", str(path), "--out",
                           str(tmp_path / "r.html")], check=False, capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    message = (f"fastlift report: error: {path} is not a fastlift score file "
               "(no format='fastlift-scores' attribute)")
    assert proc.stderr.strip().splitlines() == [message]


def test_report_without_matplotlib_names_the_extra(tmp_path):
    path = tmp_path / "s.h5"
    make_scores(path)
    code = ("import sys; sys.modules['matplotlib'] = None\nfrom fastlift import cli\n"
            f"sys.exit(cli.main(['report', {str(path)!r}, '--out', {str(tmp_path / 'r.html')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "pip install 'fastlift[plot]'" in proc.stderr


# ----------------------------------------------------------------------------- large files


def test_ranking_reads_bounded_blocks_and_does_not_depend_on_them(tmp_path, monkeypatch):
    path = tmp_path / "scores.h5"
    make_scores(path, n=200, length=50, planted=150)
    whole = tmp_path / "whole.html"
    write_report(str(path), str(whole), top=3)
    reads = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        out = original(self, key)
        if self.name == "/projected_scores":
            reads.append(out.shape[0] if out.ndim == 3 else 1)
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    monkeypatch.setattr(score_reader, "BLOCK_BYTES", 17 * 50 * 4 * 4)          # 17 rows of float32
    small = tmp_path / "small.html"
    write_report(str(path), str(small), top=3)
    assert reads[:12] == [17] * 11 + [200 - 11 * 17]          # one streaming pass in 17-row blocks
    assert reads[12:] == [1] * 6                             # then the 3 rows shown, twice each
    assert small.read_bytes() == whole.read_bytes()


BIG_SCRIPT = textwrap.dedent("""
    import resource, sys
    from fastlift.report import Interval, parse_regions, write_report
    write_report(sys.argv[1], sys.argv[2] + ".warm.html", top=2)       # imports and first figures
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    write_report(sys.argv[3], sys.argv[2], top=5)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(before * 1024, after * 1024)
""")


def test_peak_memory_on_100k_regions_stays_bounded(tmp_path):
    n, length = 100_000, 200
    big = tmp_path / "big.h5"
    layout = ScoreLayout(n, length, score_dtype="float32", chrom_width=4)
    create_score_file(str(big), layout, {"rule": "rescale"}, "profile")
    rng = np.random.default_rng(0)
    step = 10_000
    with ScoreWriter(str(big)) as w:
        for lo in range(0, n, step):
            seq = np.eye(4, dtype=np.int8)[rng.integers(0, 4, (step, length))]
            proj = seq * rng.random((step, length, 1), dtype=np.float32)
            start = np.arange(lo, lo + step) * 1000
            w.write(lo, input_seqs=seq, hyp_scores=proj, projected_scores=proj, deltas=np.zeros(step),
                    n_non_acgt=np.zeros(step), coords_chrom=np.array([b"chr1"] * step), coords_start=start,
                    coords_end=start + length, region_line=np.arange(lo, lo + step))
        w.commit(n)
    small = tmp_path / "small.h5"
    make_scores(small)
    dataset_bytes = n * length * 4 * 4                                  # projected_scores: 320 MB
    proc = subprocess.run([sys.executable, "-c", BIG_SCRIPT, str(small), str(tmp_path / "r.html"), str(big)],
                          capture_output=True, text=True, check=True)
    before, after = map(int, proc.stdout.split())
    assert after - before < dataset_bytes / 8, (before, after)          # < 40 MB for 320 MB of scores
    page = read_page(tmp_path / "r.html")
    assert len(page.table_rows("profile")) == 5


# ----------------------------------------------------------------------------- in a real browser


def chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing under CI: .ci/run installs the Debian package 'chromium'")
        pytest.skip("headless Chromium is not installed (Debian package 'chromium'; CI installs it)")
    return exe


def run_chromium(exe, tmp_path, page, *args):
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={profile}", *args,
           page.as_uri()]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def with_script(report_path, script, name):
    """A copy of the report with ``script`` run at the end of its body (the page itself is unchanged)."""
    text = report_path.read_text()
    copy = report_path.with_name(name)
    copy.write_text(text.replace("</body>", f"<script>{script}</script></body>"))
    return copy


MEASURE = """
document.querySelectorAll("img.logo").forEach(function (img) {
  var r = img.getBoundingClientRect();
  img.setAttribute("data-rect", [r.left + scrollX, r.top + scrollY, r.width, r.height].join(" "));
});
document.body.setAttribute("data-height", document.documentElement.scrollHeight);
"""

COLOURS = {"A": (16, 150, 72), "C": (37, 92, 153), "G": (247, 179, 43), "T": (214, 40, 57)}


def column_base(shot, left, right, top, bottom):
    """The base whose colour most saturated pixels in the box have, and how many there are."""
    box = shot[int(top):int(bottom), round(left):round(right)].reshape(-1, 3).astype(int)
    box = box[box.max(axis=1) - box.min(axis=1) > 80]                 # letter pixels, not white/grey/black
    if len(box) == 0:
        return None, 0
    names = list(COLOURS)
    dist = np.stack([((box - COLOURS[b]) ** 2).sum(axis=1) for b in names])
    votes = np.bincount(dist.argmin(axis=0), minlength=4)
    return names[int(votes.argmax())], int(votes.max())


def test_report_in_chromium_shows_the_planted_motif_where_the_page_says(tmp_path):
    from matplotlib.image import imread

    exe = chromium()
    path, out = tmp_path / "scores.h5", tmp_path / "report.html"
    make_scores(path)
    assert report(path, "--out", out, "--top", 2) == 0
    width = 1100
    dom = Page(run_chromium(exe, tmp_path, with_script(out, MEASURE, "measured.html"), "--dump-dom",
                            f"--window-size={width},1000"))
    logo = next(i for i in dom.of_class("logo") if int(i["data-row"]) == 7)
    left, top, w, h = map(float, logo["data-rect"].split())
    page_height = int(dom.body["data-height"])
    shot_path = tmp_path / "shot.png"
    run_chromium(exe, tmp_path, out, f"--screenshot={shot_path}", f"--window-size={width},{page_height}")
    shot = np.round(imread(shot_path)[:, :, :3] * 255).astype(np.uint8)
    assert shot.shape[:2] == (page_height, width)

    # not blank: a real share of the page is drawn, in several colours
    ink = (shot.min(axis=2) < 200).mean()
    assert ink > 0.03, ink
    # the logo: columns where data-x0/x1 put them, letters above the zero line data-y0 gives
    start, end = int(logo["data-start"]), int(logo["data-end"])
    x0 = left + w * float(logo["data-x0"])
    col = w * (float(logo["data-x1"]) - float(logo["data-x0"])) / (end - start)
    zero = top + h * float(logo["data-y0"])
    seen = []
    for k, pos in enumerate(range(MOTIF_AT, MOTIF_AT + 7)):
        c = x0 + (pos - start) * col
        base, count = column_base(shot, c + 0.2 * col, c + 0.8 * col, top, zero)
        assert count > 50, (pos, count)
        seen.append(base)
    assert "".join(seen) == MOTIF
    assert logo["data-bases"][MOTIF_AT - start:MOTIF_AT - start + 7] == MOTIF
    # beside the motif only tiny letters: few coloured pixels
    for pos in (MOTIF_AT - 3, MOTIF_AT + 9):
        c = x0 + (pos - start) * col
        assert column_base(shot, c + 0.2 * col, c + 0.8 * col, top, zero)[1] < 20


def test_regions_table_sorts_in_chromium(tmp_path):
    exe = chromium()
    path, out = tmp_path / "scores.h5", tmp_path / "report.html"
    make_scores(path)
    assert report(path, "--out", out, "--top", 6) == 0
    click = """
    var table = document.querySelector("table.regions");
    var th = table.tHead.rows[0].cells[3];
    var order = function () { return Array.prototype.map.call(table.tBodies[0].rows,
        function (r) { return r.cells[1].textContent; }).join(","); };
    th.click(); document.body.setAttribute("data-ascending", order());
    th.click(); document.body.setAttribute("data-descending", order());
    table.tHead.rows[0].cells[1].click(); document.body.setAttribute("data-by-row", order());
    """
    dom = Page(run_chromium(exe, tmp_path, with_script(out, click, "clicked.html"), "--dump-dom",
                            "--window-size=1100,1000"))
    ranking = expected_ranking(path, 6)
    assert dom.body["data-descending"] == ",".join(map(str, ranking))
    assert dom.body["data-ascending"] == ",".join(map(str, ranking[::-1]))
    assert dom.body["data-by-row"] == ",".join(map(str, sorted(ranking)))


# ----------------------------------------------------------------------------- the demo


def test_demo_writes_a_report_and_prints_its_path(tmp_path, capsys):
    out = tmp_path / "demo.html"
    assert cli.main(["demo", "--n", "10", "--length", "40", "--refs", "2", "--report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "deeplift rescale" in text and "auROC" in text                      # the demo's own table
    assert text.rstrip().endswith(f"HTML report of the scan (logos, tracks, summation-to-delta): {out}")
    page = read_page(out)
    assert page.heads == ["counts", "profile"] and len(page.of_class("logo")) == 20
    assert cli.main(["demo", "--n", "10", "--length", "40", "--report", str(tmp_path / "no" / "r.html")]) == 1
    assert "directory does not exist" in capsys.readouterr().err
