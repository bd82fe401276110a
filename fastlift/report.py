"""``fastlift report``: one self-contained HTML page showing a scan's score files.

The page holds the run's parameters, a histogram of the summation-to-delta errors and, for each
head (one score file per head), the regions with the largest total |contribution| (or those
overlapping ``--regions``): a sortable table, then per region its per-position track, a sequence
logo of the strongest window (``--flank`` bases either side of the position with the largest
|total|) and the hypothetical scores of that window beneath. Images are PNGs inlined as base64 and
the only script is the table sorter, inline: the file opens offline and can be mailed around.

Each logo ``<img class="logo">`` says where its columns are, so a reader (or a test) can find
each base in the picture: ``data-start``/``data-end`` (positions in the region), ``data-bases``
(the sequence there), ``data-x0``/``data-x1`` (left edge of the first column and right edge of
the last, as fractions of the image width) and ``data-y0`` (the zero line, as a fraction of the
image height from the top).

Memory and reads: regions are ranked by one streaming pass over ``projected_scores`` (blocks of a
few MB, `fastlift.io.score_reader`), keeping only the best ``top`` so far; then only the rows
shown are read again. The page is written as it is built, to a temporary file renamed into
place, so neither the number of regions nor ``--top`` makes memory grow beyond one image.
"""

from __future__ import annotations

import argparse
import base64
import glob
import html
import io
import json
import os
import re
import sys
from dataclasses import dataclass

import numpy as np

BASES = "ACGT"
DPI = 100
WIDTH_PX = 960
MARGIN_LEFT_PX, MARGIN_RIGHT_PX = 80, 90       # the same for every figure: logo and heatmap columns align


class ReportError(ValueError):
    """Arguments or files a report cannot be made from."""


@dataclass(frozen=True)
class Interval:
    """A genome interval of ``--regions`` (0-based, end exclusive, as BED)."""

    chrom: str
    start: int
    end: int

    def __str__(self):
        return f"{self.chrom}:{self.start}-{self.end}"


@dataclass
class Region:
    """A region shown: its row in the file, its rank score and what the page says about it."""

    row: int
    total: float                  # sum of |projected_scores| over the window
    interval: Interval | None = None
    location: object = None       # (chrom, start, end) or the input row
    net: float = 0.0              # sum of projected_scores
    peak: int = 0                 # position (in the window) of the largest |per-position total|
    window: tuple = (0, 0)        # the logo's positions [lo, hi)
    delta: float = 0.0


# ----------------------------------------------------------------------------- arguments


_INTERVAL = re.compile(r"^(?P<chrom>\S+):(?P<start>\d+)-(?P<end>\d+)$")   # chrom may hold ':' (HLA contigs)


def parse_regions(text: str) -> list[Interval]:
    """``"chr1:100-200,chr2:5-10"`` -> intervals (0-based, end exclusive)."""
    out = []
    for item in text.split(","):
        m = _INTERVAL.match(item.strip())
        if not m:
            raise argparse.ArgumentTypeError(f"expected chrom:start-end[,chrom:start-end...]; got "
                                             f"{item.strip()!r}")
        start, end = int(m["start"]), int(m["end"])
        if end <= start:
            raise argparse.ArgumentTypeError(f"region {item.strip()!r} is empty: end must be > start")
        out.append(Interval(m["chrom"], start, end))
    return out


def _int_at_least(minimum):
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}; got {text!r}")
        return value

    return parse


DESCRIPTION = """\
Write one self-contained HTML page (images inline, no network needed) about the score files of a
scan: the run's parameters, a histogram of the summation-to-delta errors and, for each head, the
regions with the largest total |contribution| in a sortable table, each with a per-position
track, a sequence logo of its strongest window and the hypothetical scores beneath.

SCORES are score files of `fastlift explain`, or its --out name: with several targets
`--out scores.h5` wrote scores.NAME.h5 per head, and `fastlift report scores.h5` finds them.
Coordinates are 0-based, end exclusive (as in BED), on the page and in --regions.

examples:
  fastlift report scores.h5 --out report.html
  fastlift report scores.profile.h5 --top 25 --flank 20 --out profile.html
  fastlift report scores.h5 --regions chr1:1000000-1002000,chr5:300-900 --out picked.html
"""


def add_parser(sub) -> None:
    """Register the ``report`` subcommand on the ``fastlift`` command's subparsers."""
    p = sub.add_parser("report", help="an HTML page of a scan's score files: logos, tracks, "
                                      "summation-to-delta errors",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scores", nargs="+", metavar="SCORES", help="score file(s), or the scan's --out name")
    p.add_argument("--out", required=True, help="the HTML file to write")
    p.add_argument("--top", type=_int_at_least(1), default=10, help="regions shown per head (default 10)")
    p.add_argument("--regions", type=parse_regions, default=None, metavar="CHR:START-END,...",
                   help="show the regions overlapping these intervals instead of the strongest overall "
                        "(strongest first, at most --top); the logo window is centred inside the interval")
    p.add_argument("--flank", type=_int_at_least(0), default=15,
                   help="bases either side of the strongest position in the logo (default 15)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args) -> int:
    """Run ``fastlift report`` with parsed arguments; errors are one line on stderr and exit code 1."""
    try:
        paths = resolve_paths(args.scores)
        out = write_report(paths, args.out, top=args.top, regions=args.regions, flank=args.flank,
                           progress=not args.quiet)
    except KeyboardInterrupt:
        print("\nfastlift report: interrupted", file=sys.stderr)
        return 130
    except (ReportError, ImportError, OSError, ValueError) as e:
        print(f"fastlift report: error: {e}", file=sys.stderr)
        return 1
    print(f"fastlift report: wrote {out}")
    return 0


def resolve_paths(given) -> list[str]:
    """Files as given, or for a name that does not exist, the per-head files ``STEM.*EXT`` a scan
    with several targets writes for ``--out STEM.EXT``."""
    out = []
    for path in given:
        path = os.fspath(path)
        if os.path.isfile(path):
            found = [path]
        elif os.path.exists(path):
            raise ReportError(f"{path} is not a file")
        else:
            stem, ext = os.path.splitext(path)
            found = sorted(glob.glob(f"{glob.escape(stem)}.*{glob.escape(ext or '.h5')}"))
            if not found:
                raise ReportError(f"{path}: no such file, nor per-head files {stem}.*{ext or '.h5'}")
        out += [f for f in found if f not in out]
    return out


# ----------------------------------------------------------------------------- the report


def write_report(paths, out: str, *, top: int = 10, regions: list[Interval] | None = None, flank: int = 15,
                 progress: bool = False) -> str:
    """Write the HTML report of score files ``paths`` (one per head) to ``out``; returns ``out``.

    Parameters
    ----------
    paths : list of str
        Score files of `fastlift.scan.scan` (any score dtype, compressed or not, complete or not:
        only the scored rows are read).
    out : str
        The HTML file, written atomically.
    top : int
        Regions shown per head, ranked by total |contribution| (sum of |projected_scores|).
    regions : list of Interval, optional
        Show only regions overlapping these (files with genome coordinates only).
    flank : int
        Bases either side of the strongest position in each logo.
    progress : bool
        A progress bar on stderr while ranking.

    Raises
    ------
    fastlift.io.scores.ScoreFileError
        A file that is not a fastlift score file, or has no scored region.
    ReportError
        ``regions`` given for a file without coordinates, or overlapping no region.
    ImportError
        matplotlib is missing (``pip install 'fastlift[plot]'``).
    """
    from .io.score_reader import ScoreReader
    from .io.scores import ScoreFileError

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise ReportError("no score file given")
    if top < 1 or flank < 0:
        raise ReportError(f"top must be >= 1 and flank >= 0; got top={top}, flank={flank}")
    if any(os.path.realpath(out) == os.path.realpath(p) for p in paths):
        raise ReportError(f"--out {out} is one of the score files; name another file for the page")
    _import_plotting()
    readers = []
    try:
        for path in paths:
            reader = ScoreReader(os.fspath(path))
            readers.append(reader)
            if reader.n_done == 0:
                raise ScoreFileError(f"{path} has no scored region yet (n_done = 0 of {reader.n_regions})")
            if regions and not reader.has_coords:
                raise ReportError(f"--regions needs genome coordinates; {path} is an --input run (rows, "
                                  "no coordinates)")
        selected = [_select(r, top, regions, flank, progress) for r in readers]
        if regions and not any(regions for regions, _ in selected):
            raise ReportError("no scored region overlaps --regions " + ",".join(map(str, regions)))
        directory = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(directory):
            raise ReportError(f"--out {out}: directory {directory} does not exist")
        tmp = os.path.join(directory, f".{os.path.basename(out)}.writing-{os.getpid()}")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                _write_page(f, readers, selected, top, regions, flank)
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    finally:
        for r in readers:
            r.close()
    return out


def _import_plotting():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError("the report draws with matplotlib, which is not installed: "
                          "pip install 'fastlift[plot]'") from None


def _select(reader, top, intervals, flank, progress) -> tuple[list[Region], int]:
    """The ``top`` regions by total |contribution| (overlapping ``intervals`` if given), in one
    streaming pass; ties go to the earlier row. Then each one's summary from its own row.
    Regions whose scores are not finite (float16 overflow) are counted, not ranked."""
    from .progress import Progress

    names = ["projected_scores"] + (["coords_chrom", "coords_start", "coords_end"] if intervals else [])
    best_rows = np.empty(0, np.int64)
    best_total = np.empty(0, np.float64)
    best_hit = np.empty(0, np.int64)                       # index of the interval a region overlaps
    n_not_finite = 0
    bar = Progress(reader.n_done) if progress else None
    if bar is not None:
        sys.stderr.write(f"ranking the regions of {reader.path}\n")
    for lo, hi, block in reader.blocks(names):
        proj = block["projected_scores"]
        total = np.abs(proj.astype(np.float32, copy=False)).sum(axis=(1, 2), dtype=np.float64)
        rows = np.arange(lo, hi, dtype=np.int64)
        hit = _first_overlap(block, intervals) if intervals else np.full(hi - lo, -1, np.int64)
        finite = np.isfinite(total)
        n_not_finite += int((~finite).sum())
        keep = finite & (hit >= 0) if intervals else finite
        rows, total, hit = rows[keep], total[keep], hit[keep]
        rows, total = np.concatenate([best_rows, rows]), np.concatenate([best_total, total])
        hit = np.concatenate([best_hit, hit])
        order = np.lexsort((rows, -total))[:top]
        best_rows, best_total, best_hit = rows[order], total[order], hit[order]
        if bar is not None:
            bar.update(hi)
    if bar is not None:
        bar.close()
    out = []
    for row, total, h in zip(best_rows, best_total, best_hit):
        region = Region(int(row), float(total), intervals[h] if h >= 0 else None)
        region.location = reader.location(region.row)
        proj = reader.row(region.row, ("projected_scores",))["projected_scores"]
        per_pos = proj.sum(axis=1)
        lo, hi = _search_range(region, reader.length)
        region.peak = lo + int(np.argmax(np.abs(per_pos[lo:hi])))
        region.window = (max(0, region.peak - flank), min(reader.length, region.peak + flank + 1))
        region.net = float(per_pos.sum())
        region.delta = reader.delta(region.row)
        out.append(region)
    return out, n_not_finite


def _first_overlap(block, intervals) -> np.ndarray:
    """Per row of a block, the index of the first interval its window overlaps, or -1."""
    chrom, start, end = block["coords_chrom"], block["coords_start"], block["coords_end"]
    hit = np.full(len(start), -1, np.int64)
    for k in range(len(intervals) - 1, -1, -1):                       # the first listed wins
        iv = intervals[k]
        m = (chrom == iv.chrom.encode()) & (start < iv.end) & (end > iv.start)
        hit[m] = k
    return hit


def _search_range(region, length) -> tuple[int, int]:
    """Positions where the logo's centre is looked for: the window, or its part inside the interval."""
    if region.interval is None:
        return 0, length
    _, start, _ = region.location
    lo = max(0, region.interval.start - start)
    hi = min(length, region.interval.end - start)
    return lo, hi


# ----------------------------------------------------------------------------- figures


def _figure(height_px, colorbar=False, bottom_px=32):
    """A figure WIDTH_PX x height_px with one axes inside fixed pixel margins (and a colour bar axes)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_PX / DPI, height_px / DPI), dpi=DPI)
    left, right = MARGIN_LEFT_PX / WIDTH_PX, 1 - MARGIN_RIGHT_PX / WIDTH_PX
    bottom, top = bottom_px / height_px, 1 - 10 / height_px
    ax = fig.add_axes((left, bottom, right - left, top - bottom))
    cax = fig.add_axes((right + 15 / WIDTH_PX, bottom, 12 / WIDTH_PX, top - bottom)) if colorbar else None
    return fig, ax, cax


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(fig, cls, alt, attrs=None) -> str:
    w, h = (round(float(v)) for v in fig.get_size_inches() * DPI)
    extra = "".join(f' data-{k}="{html.escape(str(v))}"' for k, v in (attrs or {}).items())
    return (f'<img class="{cls}" width="{w}" height="{h}" alt="{html.escape(alt)}"{extra} '
            f'src="data:image/png;base64,{_png(fig)}">')


def _integer_ticks(ax):
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=12))
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")


def _histogram(deltas) -> str:
    fig, ax, _ = _figure(220, bottom_px=50)
    finite = deltas[np.isfinite(deltas)]
    ax.hist(finite, bins=60, color="#3A6EA5")
    ax.set_xlabel("summation-to-delta:  sum(contributions) - (f(x) - mean f(ref))", fontsize=9)
    ax.set_ylabel("regions")
    return _img(fig, "histogram", "histogram of the summation-to-delta errors")


def _region_images(reader, region, origin) -> list[str]:
    from . import plot

    data = reader.row(region.row)
    proj, seq = data["projected_scores"], data["input_seqs"]
    lo, hi = region.window
    images = []

    fig, ax, _ = _figure(130)
    plot.track(proj, ax, origin=origin, highlight=(lo, hi))
    ax.set_ylabel("total", fontsize=9)
    _integer_ticks(ax)
    images.append(_img(fig, "track", f"per-position contribution of region {region.row}"))

    fig, ax, _ = _figure(190)
    plot.logo(proj, ax, start=lo, end=hi, origin=origin)
    _integer_ticks(ax)
    x0 = ax.transData.transform((origin + lo - 0.5, 0.0))
    x1 = ax.transData.transform((origin + hi - 0.5, 0.0))
    w, h = fig.get_size_inches() * DPI
    bases = "".join(BASES[int(np.argmax(r))] if r.max() > 0 else "N" for r in seq[lo:hi])
    attrs = {"row": region.row, "start": lo, "end": hi, "bases": bases, "x0": f"{x0[0] / w:.6f}",
             "x1": f"{x1[0] / w:.6f}", "y0": f"{1 - x0[1] / h:.6f}"}
    images.append(_img(fig, "logo", f"sequence logo of positions {lo}-{hi} ({bases})", attrs))

    if "hyp_scores" in data:
        fig, ax, cax = _figure(120, colorbar=True)
        plot.hypothetical(data["hyp_scores"], ax, start=lo, end=hi, origin=origin, onehot=seq)
        fig.colorbar(ax.images[0], cax=cax)
        _integer_ticks(ax)
        images.append(_img(fig, "hypothetical", f"hypothetical scores of positions {lo}-{hi}"))
    return images


# ----------------------------------------------------------------------------- the page


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222;
       max-width: 1000px; }
h1 { font-size: 24px; margin: 0 0 4px 0; } h2 { font-size: 20px; margin-top: 32px;
     border-bottom: 1px solid #ccc; } h3 { font-size: 16px; margin: 20px 0 6px 0; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } table.sortable th { cursor: pointer; user-select: none; }
th[aria-sort=ascending]::after { content: " \\25B2"; } th[aria-sort=descending]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, td.json { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
.note { background: #fff4d6; border: 1px solid #e8c96a; padding: 6px 10px; }
.region { margin: 12px 0 28px 0; } .region p { margin: 2px 0; font-size: 13px; }
img { display: block; max-width: 100%; height: auto; margin: 2px 0; }
"""

SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-sort"), y = b.cells[col].getAttribute("data-sort");
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : (x < y ? -1 : (x > y ? 1 : 0));
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _esc(value) -> str:
    return html.escape(str(value))


def _location_text(location) -> str:
    if isinstance(location, tuple):
        chrom, start, end = location
        return f"{chrom}:{start}-{end}"
    return f"input row {location}"


def _location_key(location) -> str:
    if isinstance(location, tuple):
        chrom, start, _ = location
        return f"{chrom}\t{start:015d}"
    return f"{location:015d}"


def _position_text(location, pos) -> str:
    if isinstance(location, tuple):
        return f"{location[0]}:{location[1] + pos}"
    return f"{pos}"


def _caption(g, rank, reader) -> str:
    """A region's heading and one line saying what its pictures show."""
    lo, hi = g.window
    if isinstance(g.location, tuple):
        chrom, start, _ = g.location
        peak, window = f"{chrom}:{start + g.peak}", f"{chrom}:{start + lo}-{start + hi}"
    else:
        peak, window = f"position {g.peak}", f"positions {lo}-{hi}"
    title = _location_text(g.location)
    if g.location != g.row:
        title += f" · row {g.row}"
    line = f"total |contribution| {g.total:.4g}, net {g.net:.4g}; strongest at {peak}"
    if g.interval is not None:
        line += f" (inside {g.interval})"
    line += f"; logo of {window}"
    if not reader.has_hypothetical:
        line += "; no hypothetical scores in this file"
    return f"<h3>#{rank} · {_esc(title)}</h3>\n<p>{_esc(line)}</p>\n"


def _head_id(reader, k) -> str:
    return f"head{k}-" + re.sub(r"[^A-Za-z0-9_-]", "_", reader.target)


def _write_page(f, readers, selected, top, intervals, flank) -> None:
    names = ", ".join(r.target for r in readers)
    f.write(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<title>fastlift report: {_esc(names)}</title>\n<style>{STYLE}</style></head>\n<body>\n')
    f.write("<h1>fastlift report</h1>\n")
    lengths = sorted({r.length for r in readers})
    f.write(f'<p>{len(readers)} head(s): {_esc(names)}; regions of {"/".join(map(str, lengths))} bp. '
            "Coordinates are 0-based, end exclusive (as in BED).</p>\n")
    for r in readers:
        if r.n_done < r.n_regions:
            f.write(f'<p class="note">{_esc(r.path)} is incomplete: {r.n_done} of {r.n_regions} regions are '
                    f"scored (the scan was interrupted or is still running); this report covers those "
                    f"{r.n_done}.</p>\n")
    what = (f"the strongest overlapping {', '.join(map(str, intervals))}" if intervals
            else "the strongest by total |contribution|")
    f.write(f"<p>Regions shown per head: {what}, at most {top}; logos show {flank} bases either side of "
            "each region's strongest position.</p>\n")
    f.write('<nav>' + " · ".join(f'<a href="#{_head_id(r, k)}">{_esc(r.target)}</a>'
                                  for k, r in enumerate(readers)) + "</nav>\n")

    shared = {k: v for k, v in readers[0].params.items() if all(r.params.get(k) == v for r in readers)}
    f.write('<section id="parameters"><h2>Run parameters</h2>\n')
    f.write(_params_table(shared))
    f.write('<table class="files"><thead><tr><th>file</th><th>head</th><th>regions scored</th><th>length</th>'
            "<th>scores</th><th>storage</th></tr></thead><tbody>\n")
    for r in readers:
        f.write(f"<tr><td><code>{_esc(r.path)}</code></td><td>{_esc(r.target)}</td>"
                f'<td class="num">{r.n_done} of {r.n_regions}</td><td class="num">{r.length}</td>'
                f"<td>{r.score_dtype}{', hypothetical' if r.has_hypothetical else ''}</td>"
                f"<td>{_esc(r.compression or 'uncompressed')}</td></tr>\n")
    f.write("</tbody></table></section>\n")

    for k, (reader, (regions, n_not_finite)) in enumerate(zip(readers, selected)):
        _write_head(f, reader, regions, n_not_finite, _head_id(reader, k), shared)
    f.write(f"<script>{SORT_SCRIPT}</script>\n</body></html>\n")


def _params_table(params) -> str:
    rows = "".join(f'<tr><th>{_esc(k)}</th><td class="json">{_esc(json.dumps(v, sort_keys=True))}</td></tr>\n'
                   for k, v in sorted(params.items()))
    return f'<table class="params"><tbody>\n{rows}</tbody></table>\n'


def _write_head(f, reader, regions, n_not_finite, hid, shared) -> None:
    f.write(f'<section class="head" id="{hid}" data-head="{_esc(reader.target)}">\n'
            f"<h2>Head: {_esc(reader.target)}</h2>\n")
    own = {k: v for k, v in reader.params.items() if k not in shared}
    if own:
        f.write(_params_table(own))
    deltas = reader.deltas()
    finite = deltas[np.isfinite(deltas)]
    f.write("<h3>Summation-to-delta</h3>\n")
    if finite.size:
        f.write(f"<p>{finite.size} regions: max |delta| {np.abs(finite).max():.3g}, mean {finite.mean():.3g}"
                + (f"; {deltas.size - finite.size} not finite" if finite.size < deltas.size else "")
                + "</p>\n" + _histogram(deltas) + "\n")
    else:
        f.write("<p>No finite summation-to-delta value (a gradient-rule run stores none).</p>\n")

    f.write(f"<h3>Regions ({len(regions)})</h3>\n")
    if n_not_finite:
        f.write(f'<p class="note">{n_not_finite} region(s) have scores that are not finite (inf or NaN, e.g. '
                "beyond float16's range: rescan with --score-dtype float32) and are left out.</p>\n")
    if not regions:
        f.write("<p>No region to show.</p></section>\n")
        return
    f.write('<table class="regions sortable"><thead><tr><th>rank</th><th>row</th><th>location</th>'
            "<th>total |contribution|</th><th>net contribution</th><th>strongest position</th>"
            "<th>summation-to-delta</th></tr></thead><tbody>\n")
    for rank, g in enumerate(regions, 1):
        f.write(f'<tr><td class="num" data-sort="{rank}"><a href="#{hid}-r{g.row}">{rank}</a></td>'
                f'<td class="num" data-sort="{g.row}">{g.row}</td>'
                f'<td data-sort="{_esc(_location_key(g.location))}">{_esc(_location_text(g.location))}</td>'
                f'<td class="num" data-sort="{g.total!r}">{g.total:.4g}</td>'
                f'<td class="num" data-sort="{g.net!r}">{g.net:.4g}</td>'
                f'<td data-sort="{g.peak}">{_esc(_position_text(g.location, g.peak))}</td>'
                f'<td class="num" data-sort="{g.delta!r}">{g.delta:.3g}</td></tr>\n')
    f.write("</tbody></table>\n")
    for rank, g in enumerate(regions, 1):
        f.write(f'<div class="region" id="{hid}-r{g.row}" data-row="{g.row}">\n{_caption(g, rank, reader)}')
        origin = g.location[1] if isinstance(g.location, tuple) else 0
        for image in _region_images(reader, g, origin):
            f.write(image + "\n")
        f.write("</div>\n")
    f.write("</section>\n")
