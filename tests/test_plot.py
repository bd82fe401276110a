"""fastlift.plot: logo geometry read back from the matplotlib artists, heatmaps, tracks, bad input."""

import subprocess
import sys

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from fastlift import plot


def new_ax():
    return Figure().add_subplot()


def letters(ax):
    """{(base, position): [(x0, x1, y0, y1, colour)]} of the logo's letters, in data units."""
    out = {}
    for p in ax.patches:
        gid = p.get_gid() or ""
        if gid.startswith("logo:"):
            _, base, pos = gid.split(":")
            box = p.get_path().get_extents()
            colour = to_hex(p.get_facecolor())
            out.setdefault((base, int(pos)), []).append((box.x0, box.x1, box.y0, box.y1, colour))
    return out


def test_logo_letter_heights_equal_the_scores():
    scores = np.array([[0.0, 1.5, 0.0, 0.0],          # C up 1.5
                       [0.25, 0.0, -0.75, 0.5],       # A, T up (T on top); G down
                       [-0.2, -0.6, 0.0, 0.0],        # both down, C furthest from the axis
                       [0.0, 0.0, 0.0, 0.0]])         # nothing drawn
    ax = plot.logo(scores, new_ax(), width=0.8)
    got = letters(ax)
    expected = {  # (base, position): (y0, y1)
        ("C", 0): (0.0, 1.5),
        ("A", 1): (0.0, 0.25), ("T", 1): (0.25, 0.75), ("G", 1): (-0.75, 0.0),
        ("A", 2): (-0.2, 0.0), ("C", 2): (-0.8, -0.2),
    }
    assert set(got) == set(expected)
    for (base, pos), (y0, y1) in expected.items():
        [(x0, x1, b0, b1, colour)] = got[(base, pos)]
        assert (b0, b1) == pytest.approx((y0, y1), abs=1e-12)
        assert b1 - b0 == pytest.approx(abs(scores[pos, "ACGT".index(base)]), abs=1e-12)
        assert (x0, x1) == pytest.approx((pos - 0.4, pos + 0.4), abs=1e-12)
        assert colour == plot.BASE_COLORS[base].lower()
    assert ax.get_xlim() == pytest.approx((-0.5, 3.5))
    lo, hi = ax.get_ylim()
    assert lo <= -0.8 and hi >= 1.5


def test_logo_window_origin_and_dtypes():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(30, 4)).astype(np.float16)
    ax = plot.logo(scores, new_ax(), start=10, end=14, origin=1000)
    got = letters(ax)
    assert {pos for _, pos in got} == {10, 11, 12, 13}
    assert len(got) == 16                                   # all four letters of a hypothetical row
    for (base, pos), [(x0, x1, y0, y1, _)] in got.items():
        assert (x0 + x1) / 2 == pytest.approx(1000 + pos)
        assert y1 - y0 == pytest.approx(abs(float(scores[pos, "ACGT".index(base)])), rel=1e-6)
    assert ax.get_xlim() == pytest.approx((1009.5, 1013.5))
    ints = plot.logo(np.array([[0, 3, 0, 0]], dtype=np.int32), new_ax())
    assert letters(ints)[("C", 0)][0][3] == 3.0


def test_logo_flip_below_turns_negative_letters_upside_down():
    scores = np.array([[-1.0, 0.0, 0.0, 0.0]])
    flipped = plot.logo(scores, new_ax()).patches[0].get_path().vertices
    upright = plot.logo(scores, new_ax(), flip_below=False).patches[0].get_path().vertices
    assert np.allclose(flipped[:, 0], upright[:, 0])
    assert np.allclose(flipped[:, 1], -1.0 - upright[:, 1])    # mirrored inside the box [-1, 0]
    assert not np.allclose(flipped, upright)


def test_logo_colours_can_be_overridden():
    ax = plot.logo(np.array([[1.0, 1.0, 0, 0]]), new_ax(), colors={"A": "#000000"})
    got = letters(ax)
    assert got[("A", 0)][0][4] == "#000000" and got[("C", 0)][0][4] == plot.BASE_COLORS["C"].lower()


def test_logo_without_ax_makes_a_figure():
    import matplotlib.pyplot as plt

    ax = plot.logo(np.ones((3, 4)))
    try:
        assert len(letters(ax)) == 12
    finally:
        plt.close(ax.figure)


def test_hypothetical_heatmap_draws_the_scores_and_outlines_the_sequence():
    rng = np.random.default_rng(1)
    hyp = rng.normal(size=(12, 4))
    onehot = np.eye(4)[rng.integers(0, 4, 12)]
    ax = plot.hypothetical(hyp, new_ax(), start=3, end=9, origin=100, onehot=onehot)
    image = ax.images[0]
    assert np.array_equal(np.asarray(image.get_array()), hyp[3:9].T)      # rows A, C, G, T
    vmax = np.abs(hyp[3:9]).max()
    assert image.get_clim() == pytest.approx((-vmax, vmax))
    assert image.get_extent() == pytest.approx([102.5, 108.5, 3.5, -0.5])
    assert [t.get_text() for t in ax.get_yticklabels()] == list("ACGT")
    outlines = {p.get_gid(): p for p in ax.patches}
    assert set(outlines) == {f"present:{'ACGT'[int(np.argmax(onehot[i]))]}:{i}" for i in range(3, 9)}
    for gid, rect in outlines.items():
        _, base, pos = gid.split(":")
        assert rect.get_xy() == pytest.approx((100 + int(pos) - 0.5, "ACGT".index(base) - 0.5))
    fixed = plot.hypothetical(hyp, new_ax(), vmax=2.0)
    assert fixed.images[0].get_clim() == (-2.0, 2.0)
    assert plot.hypothetical(np.zeros((3, 4)), new_ax()).images[0].get_clim() == (-1.0, 1.0)


def test_hypothetical_as_logo():
    hyp = np.array([[0.5, -0.25, 0.1, 0.0]])
    got = letters(plot.hypothetical(hyp, new_ax(), kind="logo"))
    assert set(got) == {("A", 0), ("C", 0), ("G", 0)}
    assert got[("C", 0)][0][2:4] == pytest.approx((-0.25, 0.0))


def test_track_steps_through_the_per_position_totals():
    scores = np.array([[0.5, 0, 0, 0], [0, -0.25, 0, 0], [0.1, 0.2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1.0]])
    totals = scores.sum(axis=1)
    ax = plot.track(scores, new_ax(), origin=50, highlight=(1, 3))
    by_gid = {c.get_gid(): c for c in ax.collections}
    for gid, part in (("track:positive", np.maximum(totals, 0)), ("track:negative", np.minimum(totals, 0))):
        v = by_gid[gid].get_paths()[0].vertices
        for i, t in enumerate(part):
            # the step at x = 50 + i spans [x - 0.5, x + 0.5] at height total[i]
            at = v[np.isclose(v[:, 0], 50 + i - 0.5) | np.isclose(v[:, 0], 50 + i + 0.5)]
            assert np.isclose(at[:, 1], t).any(), (gid, i)
        assert v[:, 1].max() <= max(part.max(), 0) + 1e-12 and v[:, 1].min() >= min(part.min(), 0) - 1e-12
    span = [p for p in ax.patches if p.get_gid() == "track:highlight"]
    assert len(span) == 1
    if hasattr(span[0], "get_width"):            # a Rectangle (matplotlib >= 3.9)
        xs = np.array([span[0].get_x(), span[0].get_x() + span[0].get_width()])
    else:                                        # a Polygon
        xs = np.asarray(span[0].get_xy())[:, 0]
    assert (xs.min(), xs.max()) == pytest.approx((50.5, 52.5))
    assert ax.get_xlim() == pytest.approx((49.5, 54.5))
    same = plot.track(totals, new_ax())          # per-position totals given directly
    assert np.array_equal(same.collections[0].get_paths()[0].vertices,
                          plot.track(scores, new_ax()).collections[0].get_paths()[0].vertices)


@pytest.mark.parametrize("call, error, match", [
    (lambda: plot.logo(np.zeros((5, 3)), new_ax()), ValueError, r"shape \(length, 4\).*got \(5, 3\)"),
    (lambda: plot.logo(np.zeros((2, 5, 4)), new_ax()), ValueError, r"got \(2, 5, 4\)"),
    (lambda: plot.logo(np.zeros((0, 4)), new_ax()), ValueError, "length >= 1"),
    (lambda: plot.logo(np.array([["a"] * 4]), new_ax()), TypeError, "real numbers.*<U1"),
    (lambda: plot.logo(np.zeros((2, 4), complex), new_ax()), TypeError, "complex128"),
    (lambda: plot.logo(np.zeros((2, 4), bool), new_ax()), TypeError, "dtype bool"),
    (lambda: plot.logo(np.array([[0, np.nan, 0, 0]]), new_ax()), ValueError,
     r"finite; found nan at index \(0, 1\)"),
    (lambda: plot.logo(np.zeros((5, 4)), new_ax(), start=3, end=3), ValueError, "start=3, end=3"),
    (lambda: plot.logo(np.zeros((5, 4)), new_ax(), end=6), ValueError, r"end <= 5"),
    (lambda: plot.logo(np.zeros((5, 4)), new_ax(), start=-1), ValueError, "start=-1"),
    (lambda: plot.logo(np.zeros((5, 4)), new_ax(), start=1.0), TypeError, "start must be an int; got float"),
    (lambda: plot.logo(np.zeros((5, 4)), new_ax(), origin="x"), TypeError, "origin must be a number"),
    (lambda: plot.logo(np.zeros((5, 4)), new_ax(), width=1.5), ValueError,
     r"width must be a number in \(0, 1\]"),
    (lambda: plot.logo(np.zeros((5, 4)), new_ax(), colors={"U": "red"}), ValueError, "colors must be a dict"),
    (lambda: plot.logo(np.zeros((5, 4)), ax="axes"), TypeError, "ax must be a matplotlib Axes"),
    (lambda: plot.hypothetical(np.zeros((5, 4)), new_ax(), kind="bars"), ValueError, "kind must be"),
    (lambda: plot.hypothetical(np.zeros((5, 4)), new_ax(), onehot=np.zeros((4, 4))), ValueError,
     r"onehot must have the scores' shape \(5, 4\); got \(4, 4\)"),
    (lambda: plot.hypothetical(np.zeros((5, 4)), new_ax(), vmax=0), ValueError, "vmax must be a positive"),
    (lambda: plot.hypothetical(np.zeros((5, 4)), new_ax(), kind="logo", vmax=1.0), ValueError,
     "apply to kind='heatmap' only"),
    (lambda: plot.track(np.zeros((5, 2)), new_ax()), ValueError,
     r"shape \(length,\) or \(length, 4\).*got \(5, 2\)"),
    (lambda: plot.track(np.zeros(5), new_ax(), highlight=3), TypeError, "highlight must be a pair"),
    (lambda: plot.track(np.zeros(5), new_ax(), highlight=(4, 9)), ValueError, "end <= 5"),
])
def test_bad_input_is_refused_clearly(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_import_fastlift_does_not_import_matplotlib():
    code = ("import sys, fastlift, fastlift.cli, fastlift.report; fastlift.cli.build_parser(); "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_missing_matplotlib_names_the_extra():
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "try:\n    import fastlift.plot\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "fastlift.plot needs matplotlib: pip install 'fastlift[plot]'"
