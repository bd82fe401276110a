"""Pictures of contribution scores: sequence logos, hypothetical-score maps, per-position tracks.

Needs matplotlib (``pip install 'fastlift[plot]'``); ``import fastlift`` does not import it.
Every function draws into a given ``matplotlib.axes.Axes`` (or a new figure's) and returns it,
so figures compose with the rest of a user's plotting.

Letters are glyph outlines (DejaVu Sans Bold, shipped with matplotlib) scaled to a unit box and
then to exactly ``width`` x ``|score|`` in data units, so a letter's height *is* its score and the
artists can be checked numerically. At each position the positive scores stack upwards from 0 and
the negative ones downwards, the largest magnitude furthest from the axis (the convention of
logomaker and tangermeme's ``plot_logo``). Letters below the axis are drawn upside down by default
(``flip_below``), as logomaker does.
"""

from __future__ import annotations

import numbers

import numpy as np

try:
    from matplotlib.axes import Axes
    from matplotlib.font_manager import FontProperties
    from matplotlib.patches import PathPatch, Rectangle
    from matplotlib.path import Path
    from matplotlib.textpath import TextPath
except ImportError:
    raise ImportError("fastlift.plot needs matplotlib: pip install 'fastlift[plot]'") from None

__all__ = ["BASE_COLORS", "hypothetical", "logo", "track"]

BASES = "ACGT"
# Well-separated hues (A green, C blue, G orange, T red), the usual logo colours.
BASE_COLORS = {"A": "#109648", "C": "#255C99", "G": "#F7B32B", "T": "#D62839"}
TRACK_COLORS = ("#3A6EA5", "#C0504D")        # positive, negative per-position totals
_FONT = FontProperties(family="DejaVu Sans", weight="bold")
_GLYPHS: dict = {}


# ----------------------------------------------------------------------------- validation


def _scores_array(scores, name: str, ndims=(2,), kinds="fiu") -> np.ndarray:
    """``scores`` as float64, checked: real numbers, shape (L, 4) (or (L,) where allowed), finite."""
    a = np.asarray(scores)
    if a.dtype.kind not in kinds:
        what = "real numbers (float or int" + (" or bool)" if "b" in kinds else ")")
        raise TypeError(f"{name} must hold {what}; got dtype {a.dtype}")
    shapes = " or ".join("(length, 4)" if d == 2 else "(length,)" for d in ndims)
    if a.ndim not in ndims or (a.ndim == 2 and a.shape[1] != 4) or a.shape[0] == 0:
        raise ValueError(f"{name} must have shape {shapes}, length >= 1, one column per base (A, C, G, T); "
                         f"got {a.shape}")
    a = a.astype(np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        pos = np.argwhere(bad)[0]
        index = tuple(int(p) for p in pos)
        raise ValueError(f"{name} must be finite; found {a[index]} at index {index}")
    return a


def _window(start, end, length: int) -> tuple[int, int]:
    for arg, value in (("start", start), ("end", end)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
            raise TypeError(f"{arg} must be an int; got {type(value).__name__} {value!r}")
    start = 0 if start is None else int(start)
    end = length if end is None else int(end)
    if not 0 <= start < end <= length:
        raise ValueError(f"start and end must satisfy 0 <= start < end <= {length} (the scores' length); "
                         f"got start={start}, end={end}")
    return start, end


def _origin(origin) -> float:
    if isinstance(origin, bool) or not isinstance(origin, numbers.Real):
        raise TypeError(f"origin must be a number; got {type(origin).__name__} {origin!r}")
    return float(origin)


def _axes(ax, figsize):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=figsize)
        return ax
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None; got {type(ax).__name__}")
    return ax


# ----------------------------------------------------------------------------- logo


def _glyph(letter: str, flip: bool) -> Path:
    """The outline of ``letter`` scaled to fill the unit square exactly (upside down if ``flip``)."""
    key = (letter, flip)
    if key not in _GLYPHS:
        path = TextPath((0, 0), letter, size=1, prop=_FONT)
        box = path.get_extents()
        v = (path.vertices - [box.x0, box.y0]) / [box.width, box.height]
        if flip:
            v = np.column_stack([v[:, 0], 1.0 - v[:, 1]])
        _GLYPHS[key] = Path(v, path.codes)
    return _GLYPHS[key]


def _letter_patch(letter: str, x: float, y0: float, height: float, width: float, flip: bool,
                  color) -> PathPatch:
    """The glyph filling the box [x - width/2, x + width/2] x [y0, y0 + height] (data units)."""
    unit = _glyph(letter, flip)
    v = unit.vertices * [width, height] + [x - width / 2, y0]
    return PathPatch(Path(v, unit.codes), facecolor=color, edgecolor="none", linewidth=0)


def logo(scores, ax=None, *, start: int | None = None, end: int | None = None, origin: float = 0,
         colors: dict | None = None, width: float = 0.9, flip_below: bool = True, baseline: bool = True):
    """Draw a sequence logo of per-base scores.

    Each position ``i`` in ``[start, end)`` is a column centred at ``x = origin + i``; each nonzero
    score ``scores[i, b]`` is the letter of base ``b`` (A, C, G, T) with height ``|scores[i, b]|``
    in data units, stacked above the axis for positive scores and below it for negative ones,
    the largest magnitude furthest from the axis. Contribution scores (one base present per
    position) give one letter per position; hypothetical scores give all four.

    Parameters
    ----------
    scores : array, shape=(length, 4)
        Scores per position and base (columns A, C, G, T), any real dtype (float16 included).
    ax : matplotlib Axes, optional
        Where to draw (default: a new figure's axes).
    start, end : int, optional
        The positions drawn, ``0 <= start < end <= length`` (default: all).
    origin : float
        x coordinate of position 0 (e.g. the genome coordinate of the window's first base).
    colors : dict, optional
        Colour per base letter; default `BASE_COLORS` (A green, C blue, G orange, T red).
    width : float
        Letter width in positions, ``0 < width <= 1``.
    flip_below : bool
        Draw letters below the axis upside down.
    baseline : bool
        Draw a thin line at y = 0.

    Returns
    -------
    matplotlib Axes
        With one `PathPatch` per drawn letter, each tagged ``gid="logo:<base>:<position>"``.
    """
    a = _scores_array(scores, "scores")
    start, end = _window(start, end, a.shape[0])
    origin = _origin(origin)
    if not (isinstance(width, numbers.Real) and 0 < width <= 1):
        raise ValueError(f"width must be a number in (0, 1]; got {width!r}")
    palette = dict(BASE_COLORS)
    if colors is not None:
        if not isinstance(colors, dict) or not set(colors) <= set(BASES):
            raise ValueError(f"colors must be a dict keyed by some of {list(BASES)}; got {colors!r}")
        palette.update(colors)
    ax = _axes(ax, figsize=(max(3.0, 0.25 * (end - start)), 2.0))
    low = high = 0.0
    for i in range(start, end):
        x = origin + i
        row = a[i]
        up = sorted((v, b) for b, v in enumerate(row) if v > 0)           # small first: largest on top
        down = sorted(((-v, b) for b, v in enumerate(row) if v < 0))       # small first: largest at bottom
        y = 0.0
        for v, b in up:
            patch = _letter_patch(BASES[b], x, y, v, width, False, palette[BASES[b]])
            patch.set_gid(f"logo:{BASES[b]}:{i}")
            ax.add_patch(patch)
            y += v
        high = max(high, y)
        y = 0.0
        for m, b in down:
            patch = _letter_patch(BASES[b], x, y - m, m, width, flip_below, palette[BASES[b]])
            patch.set_gid(f"logo:{BASES[b]}:{i}")
            ax.add_patch(patch)
            y -= m
        low = min(low, y)
    if baseline:
        ax.axhline(0.0, color="#888888", linewidth=0.6, zorder=0)
    ax.set_xlim(origin + start - 0.5, origin + end - 0.5)
    pad = 0.05 * (high - low)
    if pad > 0:
        ax.set_ylim(low - pad if low < 0 else 0.0, high + pad if high > 0 else 0.0)
    else:
        ax.set_ylim(-0.5, 0.5)   # nothing drawn
    ax.set_ylabel("contribution")
    return ax


# ----------------------------------------------------------------------------- hypothetical scores


def hypothetical(scores, ax=None, *, start: int | None = None, end: int | None = None, origin: float = 0,
                 kind: str = "heatmap", onehot=None, vmax: float | None = None, cmap: str = "RdBu_r"):
    """Draw hypothetical scores: what each base would contribute at each position.

    Parameters
    ----------
    scores : array, shape=(length, 4)
        Hypothetical scores (columns A, C, G, T).
    ax : matplotlib Axes, optional
        Where to draw (default: a new figure's axes).
    start, end : int, optional
        The positions drawn, ``0 <= start < end <= length`` (default: all).
    origin : float
        x coordinate of position 0.
    kind : {"heatmap", "logo"}
        ``"heatmap"``: four rows (A, C, G, T from the top), one cell per position and base, on a
        diverging colour map centred on 0 (``[-vmax, vmax]``); ``"logo"``: all four letters per
        position, as `logo` draws them.
    onehot : array, shape=(length, 4), optional
        The sequence; with ``kind="heatmap"`` the cell of the base present is outlined.
    vmax : float, optional
        Colour scale limit (default: the largest |score| drawn; 1 if all are 0).
    cmap : str
        Matplotlib colour map name for the heatmap.

    Returns
    -------
    matplotlib Axes
        For the heatmap, ``ax.images[0]`` holds the (4, end - start) array drawn; outlines of
        present bases are `Rectangle` patches tagged ``gid="present:<base>:<position>"``.
    """
    if kind not in ("heatmap", "logo"):
        raise ValueError(f"kind must be 'heatmap' or 'logo'; got {kind!r}")
    a = _scores_array(scores, "scores")
    start, end = _window(start, end, a.shape[0])
    if kind == "logo":
        if onehot is not None or vmax is not None:
            raise ValueError("onehot and vmax apply to kind='heatmap' only")
        return logo(a, ax, start=start, end=end, origin=origin)
    origin = _origin(origin)
    present = None
    if onehot is not None:
        present = _scores_array(onehot, "onehot", kinds="fiub")
        if present.shape != a.shape:
            raise ValueError(f"onehot must have the scores' shape {a.shape}; got {present.shape}")
    window = a[start:end].T
    if vmax is None:
        vmax = float(np.abs(window).max()) or 1.0
    elif not (isinstance(vmax, numbers.Real) and vmax > 0):
        raise ValueError(f"vmax must be a positive number; got {vmax!r}")
    ax = _axes(ax, figsize=(max(3.0, 0.25 * (end - start)), 1.2))
    ax.imshow(window, cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest",
              extent=(origin + start - 0.5, origin + end - 0.5, 3.5, -0.5))
    if present is not None:
        for i in range(start, end):
            for b in np.flatnonzero(present[i] > 0):
                rect = Rectangle((origin + i - 0.5, b - 0.5), 1.0, 1.0, fill=False, edgecolor="black",
                                 linewidth=0.8)
                rect.set_gid(f"present:{BASES[b]}:{i}")
                ax.add_patch(rect)
    ax.set_yticks(range(4), list(BASES))
    ax.set_xlim(origin + start - 0.5, origin + end - 0.5)
    ax.set_ylim(3.5, -0.5)
    return ax


# ----------------------------------------------------------------------------- track


def track(scores, ax=None, *, origin: float = 0, highlight: tuple[int, int] | None = None,
          colors: tuple = TRACK_COLORS):
    """Draw per-position total scores along a (long) window.

    Parameters
    ----------
    scores : array, shape=(length, 4) or (length,)
        Scores per position and base (summed over the bases) or per-position totals.
    ax : matplotlib Axes, optional
        Where to draw (default: a new figure's axes).
    origin : float
        x coordinate of position 0 (e.g. the window's genome start).
    highlight : (int, int), optional
        Positions ``[lo, hi)`` to shade (e.g. the window a logo shows).
    colors : (color, color)
        Fill for positive and for negative totals.

    Returns
    -------
    matplotlib Axes
        Two filled areas (``ax.collections``, gids ``"track:positive"`` and ``"track:negative"``)
        stepping through ``(origin + i, total[i])``; the shaded span has ``gid="track:highlight"``.
    """
    a = _scores_array(scores, "scores", ndims=(1, 2))
    totals = a.sum(axis=1) if a.ndim == 2 else a
    origin = _origin(origin)
    n = totals.shape[0]
    if highlight is not None:
        if not (isinstance(highlight, (tuple, list)) and len(highlight) == 2):
            raise TypeError(f"highlight must be a pair (lo, hi); got {highlight!r}")
        lo, hi = _window(highlight[0], highlight[1], n)
    ax = _axes(ax, figsize=(8.0, 1.5))
    x = origin + np.arange(n, dtype=np.float64)
    pos = ax.fill_between(x, np.maximum(totals, 0), 0, step="mid", color=colors[0], linewidth=0)
    neg = ax.fill_between(x, np.minimum(totals, 0), 0, step="mid", color=colors[1], linewidth=0)
    pos.set_gid("track:positive")
    neg.set_gid("track:negative")
    if highlight is not None:
        span = ax.axvspan(origin + lo - 0.5, origin + hi - 0.5, color="#F2D16B", alpha=0.35, linewidth=0,
                          zorder=0)
        span.set_gid("track:highlight")
    ax.axhline(0.0, color="#888888", linewidth=0.6, zorder=0)
    ax.set_xlim(origin - 0.5, origin + n - 0.5)
    ax.set_ylabel("per-position\ntotal")
    return ax
