"""Scene thresholds for a water index, and a self-check of the map they make (numpy only).

One scene-level threshold splits an index image (MNDWI or NDWI, NaN where invalid) into
water and land. Plain Otsu fails on real scenes in two ways: a small water class drowns
in a land histogram with several modes (roofs, roads, bright harvested fields), and its
threshold then lands between two land modes. The methods here:

- ``otsu``: Otsu's threshold over every pixel (what the engine always did);
- ``edge-otsu``: Otsu over the pixels on strong index edges and their neighbours only
  (Donchyts et al. 2016, "Canny-Otsu"): along a water/land boundary both classes are
  sampled about equally, so the boundary, not the land's many modes, sets the threshold;
- ``multi-otsu``: three-class Otsu; the middle class joins the water when its NIR/SWIR is
  closer to the upper (water) class's than to the lower (land) class's, else it is land;
- ``auto`` (the default, chosen by measurement, docs/BENCHMARKS.md §8): edge-Otsu, then a
  darkness guard: open water is dark in NIR and SWIR compared with the rest of its own
  scene, so while more than ``DARK_LIMIT`` of the mapped water is bright there (see
  ``bright_mask``; in both bands when both are known), the threshold is raised.

Every choice carries its diagnostics and a quality score in [0, 1]: how deep the valley at
the threshold is in the histogram of the edge pixels (1: two modes with nothing between,
0: no valley) times how dark the mapped water is (1 when none of it is bright, 0 from 30 %
bright); a scene whose index never reaches the lowest threshold allowed is dry beyond doubt
(quality 1). ``unsure`` marks a map not to be trusted as is, with the reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..rules import DEFAULT_THRESHOLD_METHOD as DEFAULT_METHOD
from ..rules import THRESHOLD_METHODS, ThresholdMethod

__all__ = ["DEFAULT_METHOD", "THRESHOLD_METHODS", "ThresholdMethod", "choose_threshold"]

BINS = 256
INDEX_RANGE = (-1.0, 1.0)
# Otsu is meaningless on a scene without water (one mode); keep a threshold within the range
# where the index plausibly separates water from land.
BOUNDS = (-0.1, 0.5)
FALLBACK = 0.0  # no valid pixel at all
# A strong edge: a gradient of the smoothed index over 0.1 a pixel (a sharp step of about 0.27).
EDGE_STEP = 0.1
MIN_EDGE_PIXELS = 100  # fewer: no boundary to learn from, plain Otsu's threshold is used
DARK_PERCENTILE = 40.0  # "bright" = above this percentile of the scene's NIR (and SWIR)
CERTAIN_WATER = 0.3  # index above which a pixel is water beyond doubt: left out of that percentile
DARK_LIMIT = 0.03  # most of the mapped water that may be bright before auto raises the threshold
SMOOTH_BINS = 7  # the valley is measured on the histogram smoothed over ±0.023 of the index
UNSURE_BELOW = 0.5  # quality under which a map is flagged unsure


@dataclass(frozen=True)
class ThresholdChoice:
    """A scene's threshold and what says how far to trust the map it makes.

    ``separation``: how deep the valley at the threshold is in the histogram of the edge
    pixels: 1 - density there / the lower of the two peaks either side (1: an empty valley
    between two modes, 0: no valley); None with too few edge pixels.
    ``eta``: Otsu's η (between-class / total variance) of the same histogram cut there.
    ``bright_share``: share of the mapped sample pixels bright in NIR/SWIR for the scene.
    ``raised_from``: the threshold before the darkness guard raised it (auto), else None.
    """

    method: str
    threshold: float
    otsu: float  # plain Otsu's threshold of the same sample, for comparison
    separation: float | None
    eta: float | None
    bright_share: float | None
    water_share: float  # share of the valid sample pixels above the threshold
    edge_pixels: int
    raised_from: float | None
    quality: float
    unsure: bool
    reason: str  # why unsure ("" when not)

    def as_dict(self) -> dict[str, object]:
        """Rounded plain values, for describe() and the output's tables."""
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def histogram(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts (float64) and bin edges of the finite ``values`` over the index range."""
    v = values[np.isfinite(values)]
    hist, edges = np.histogram(v, bins=BINS, range=INDEX_RANGE)
    return hist.astype(np.float64), edges


def otsu(hist: np.ndarray, edges: np.ndarray) -> float:
    """Otsu's threshold (maximum between-class variance) of a histogram; FALLBACK when empty."""
    if hist.sum() < 2:
        return FALLBACK
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m = np.cumsum(hist * centers)
    mu0 = np.divide(m, w0, out=np.zeros_like(m), where=w0 > 0)
    mu1 = np.divide(m[-1] - m, w1, out=np.zeros_like(m), where=w1 > 0)
    between = w0 * w1 * (mu0 - mu1) ** 2
    # Two clean modes leave a plateau of equal scores between them: take its middle.
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    return float(edges[int(round((best[0] + best[-1]) / 2)) + 1])


def valley_depth(hist: np.ndarray, edges: np.ndarray, threshold: float) -> float | None:
    """1 - smoothed density at ``threshold`` / the lower of the highest peaks either side of it.

    Otsu's η cannot tell two modes from one flat one (a uniform histogram scores 0.75, two
    modes 4 standard deviations apart 0.8); a valley can. None without data.
    """
    if hist.sum() < 2:
        return None
    smooth = np.convolve(hist, np.ones(SMOOTH_BINS) / SMOOTH_BINS, mode="same")
    i = int(np.clip(np.searchsorted(edges, threshold), 1, len(hist) - 1))  # first bin above
    left, right = smooth[:i].max(), smooth[i:].max()
    if min(left, right) <= 0:
        return 0.0
    return float(max(0.0, 1 - smooth[i - 1 : i + 1].mean() / min(left, right)))


def eta(hist: np.ndarray, edges: np.ndarray, threshold: float) -> float | None:
    """Otsu's η of the histogram cut at ``threshold``: 0 with one side empty, None without data."""
    total = hist.sum()
    if total < 2:
        return None
    centers = (edges[:-1] + edges[1:]) / 2
    upper = centers > threshold
    mean = (hist * centers).sum() / total
    var = (hist * (centers - mean) ** 2).sum() / total
    w1 = hist[upper].sum() / total
    if var <= 0 or w1 in (0.0, 1.0):
        return 0.0
    mu1 = (hist[upper] * centers[upper]).sum() / (w1 * total)
    mu0 = (hist[~upper] * centers[~upper]).sum() / ((1 - w1) * total)
    return float(w1 * (1 - w1) * (mu1 - mu0) ** 2 / var)


def multi_otsu(hist: np.ndarray, edges: np.ndarray) -> tuple[float, float]:
    """The two thresholds of three-class Otsu (maximum between-class variance), lower first."""
    n = len(hist)
    centers = (edges[:-1] + edges[1:]) / 2
    p, s = np.cumsum(hist), np.cumsum(hist * centers)
    i = np.arange(n - 1)[:, None]  # the first class is bins 0..i, the second i+1..j
    j = np.arange(n - 1)[None, :]
    w = (p[i], p[j] - p[i], p[-1] - p[j])
    m = (s[i], s[j] - s[i], s[-1] - s[j])
    with np.errstate(divide="ignore", invalid="ignore"):
        score = sum(np.where(wk > 0, mk**2 / wk, 0.0) for wk, mk in zip(w, m, strict=True))
    score = np.where(j > i, score, -np.inf)
    a, b = np.unravel_index(int(np.argmax(score)), score.shape)
    return float(edges[a + 1]), float(edges[b + 1])


def smooth(image: np.ndarray) -> np.ndarray:
    """A 3 x 3 binomial blur ([1, 2, 1] / 4 along each axis), NaN spreading to neighbours.

    Canny's Gaussian step: per-pixel noise falls to about a third, a real edge keeps 3/4 of
    its gradient. The border rows and columns become NaN.
    """
    out = np.full(image.shape, np.nan, np.float32)
    rows = (image[:-2] + 2 * image[1:-1] + image[2:]) / 4
    out[1:-1, 1:-1] = (rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]) / 4
    return out


def edge_mask(index: np.ndarray) -> np.ndarray:
    """Pixels on a strong edge of the smoothed index, and their 4 neighbours.

    Central differences are NaN next to invalid pixels, so a nodata collar makes no edge.
    """
    if index.ndim != 2 or min(index.shape) < 5:
        return np.zeros(index.shape, bool)
    gy, gx = np.gradient(smooth(index.astype(np.float32, copy=False)))
    with np.errstate(invalid="ignore"):
        strong = np.hypot(gx, gy) > EDGE_STEP
    near = strong.copy()
    near[1:] |= strong[:-1]
    near[:-1] |= strong[1:]
    near[:, 1:] |= strong[:, :-1]
    near[:, :-1] |= strong[:, 1:]
    return near & np.isfinite(index)


def bright_mask(
    index: np.ndarray, threshold: float, nir: np.ndarray | None, swir: np.ndarray | None
) -> np.ndarray | None:
    """Pixels too bright for open water: brighter, in every known band, than the scene's 40th
    percentile or the band's own Otsu threshold (dark water | bright land), whichever is lower.

    The percentile alone misses bare fields a little darker than the vegetation; Otsu's
    threshold of the band alone would let built-up land as dark as a forest through. Both
    leave out the pixels that are water beyond doubt (index above ``CERTAIN_WATER``, or above
    ``threshold`` when higher), so that a scene mostly covered by water still compares its
    water with its land. None when neither NIR nor SWIR is known.
    """
    valid = np.isfinite(index)
    with np.errstate(invalid="ignore"):
        reference = valid & (index <= max(threshold, CERTAIN_WATER))
    bright: np.ndarray | None = None
    for band in (nir, swir):
        if band is None:
            continue
        ok = np.isfinite(band)
        pixels = band[reference & ok] if (reference & ok).sum() >= MIN_EDGE_PIXELS else band[valid & ok]
        if pixels.size == 0:
            continue
        hist, edges = np.histogram(pixels, bins=BINS)
        level = min(np.percentile(pixels, DARK_PERCENTILE), otsu(hist.astype(np.float64), edges))
        with np.errstate(invalid="ignore"):
            b = ok & (band > level)
        bright = b if bright is None else bright & b
    return bright


def bright_share(index: np.ndarray, bright: np.ndarray | None, threshold: float) -> float | None:
    """Share of the pixels above ``threshold`` that are bright (None: nothing mapped or no band)."""
    if bright is None:
        return None
    with np.errstate(invalid="ignore"):
        water = index > threshold
    n = int(water.sum())
    return None if n == 0 else float((water & bright).sum() / n)


def raise_until_dark(index: np.ndarray, bright: np.ndarray, threshold: float) -> float:
    """The lowest bin edge at or above ``threshold`` where at most DARK_LIMIT of the water is bright."""
    all_hist, edges = histogram(index)
    bright_hist, _ = histogram(np.where(bright, index, np.nan))
    above = np.cumsum(all_hist[::-1])[::-1]  # pixels in bin k and up, for every k
    above_bright = np.cumsum(bright_hist[::-1])[::-1]
    share = np.divide(above_bright, above, out=np.zeros_like(above), where=above > 0)
    ok = np.flatnonzero((edges[:-1] >= threshold) & (share <= DARK_LIMIT) & (above > 0))
    return float(edges[ok[0]]) if ok.size else BOUNDS[1]


def _middle_is_water(index: np.ndarray, lower: float, upper: float, bands: list[np.ndarray]) -> bool:
    """Three-class Otsu: the middle class is water when, in every band, it is closer to the
    upper (water) class than to the lower (land) class."""
    if not bands:
        return False
    with np.errstate(invalid="ignore"):
        classes = (index <= lower, (index > lower) & (index <= upper), index > upper)
    for band in bands:
        med = [np.nanmedian(band[c]) if (c & np.isfinite(band)).any() else np.nan for c in classes]
        if not np.all(np.isfinite(med)) or abs(med[1] - med[2]) >= abs(med[1] - med[0]):
            return False
    return True


def quality_of(sep: float | None, share: float | None) -> float:
    """The valley's depth (0..1) times how dark the water is (1 at 0 % bright, 0 at 30 %)."""
    sep_score = 0.0 if sep is None else sep
    dark_score = 1.0 if share is None else 1.0 - share / (10 * DARK_LIMIT)
    return float(np.clip(sep_score, 0, 1) * np.clip(dark_score, 0, 1))


def choose_threshold(
    index: np.ndarray,
    method: ThresholdMethod = DEFAULT_METHOD,
    *,
    nir: np.ndarray | None = None,
    swir: np.ndarray | None = None,
) -> ThresholdChoice:
    """The scene threshold of ``index`` (2-D, NaN where invalid) by ``method``, with its diagnostics.

    ``nir``/``swir``: the same pixels' raw bands (either may be None), for the darkness check.
    """
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"unknown threshold method {method!r}; choose {', '.join(THRESHOLD_METHODS)}")
    index = np.asarray(index, np.float32)
    hist, bin_edges = histogram(index)
    plain = otsu(hist, bin_edges)
    near_edges = edge_mask(index)
    n_edges = int(near_edges.sum())
    edge_hist = histogram(index[near_edges])[0] if n_edges >= MIN_EDGE_PIXELS else None
    bands = [b for b in (nir, swir) if b is not None]
    if method == "otsu" or (edge_hist is None and method in ("edge-otsu", "auto")):
        t = plain
    elif method in ("edge-otsu", "auto"):
        assert edge_hist is not None
        t = otsu(edge_hist, bin_edges)
    else:
        lower, upper = multi_otsu(hist, bin_edges)
        t = lower if _middle_is_water(index, lower, upper, bands) else upper
    t = float(np.clip(t, *BOUNDS))
    bright = bright_mask(index, t, nir, swir)
    share = bright_share(index, bright, t)
    raised_from = None
    if method == "auto" and bright is not None and share is not None and share > DARK_LIMIT:
        raised_from, t = t, float(np.clip(raise_until_dark(index, bright, t), *BOUNDS))
        share = bright_share(index, bright, t)
    sep = None if edge_hist is None else valley_depth(edge_hist, bin_edges, t)
    valid = np.isfinite(index)
    with np.errstate(invalid="ignore"):
        water = float((index > t).sum() / max(int(valid.sum()), 1))
        dry = not (index > BOUNDS[0]).any()  # no threshold this engine may choose maps water
    quality = 1.0 if dry else quality_of(sep, share)
    reason = "" if dry else _unsure_reason(sep, share, raised_from, quality)
    return ThresholdChoice(
        method=method,
        threshold=t,
        otsu=plain,
        separation=sep,
        eta=None if edge_hist is None else eta(edge_hist, bin_edges, t),
        bright_share=share,
        water_share=water,
        edge_pixels=n_edges,
        raised_from=raised_from,
        quality=quality,
        unsure=bool(reason),
        reason=reason,
    )


def _unsure_reason(sep: float | None, share: float | None, raised_from: float | None, quality: float) -> str:
    if sep is None:
        return "no water/land boundary in the index"
    if raised_from is not None:
        return "the index alone maps land bright in NIR/SWIR as water (threshold raised)"
    if share is not None and share > DARK_LIMIT:
        return f"{share:.0%} of the mapped water is bright in NIR/SWIR"
    if quality < UNSURE_BELOW:
        return "water and land overlap in the index"
    return ""
