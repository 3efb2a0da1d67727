"""A spectral water index segmenter: the no-model baseline, reference labels and a sanity check.

MNDWI = (G - SWIR) / (G + SWIR) when a SWIR band is known (it separates water from built-up
land and bright soil better than NDWI, Xu 2006); otherwise NDWI = (G - NIR) / (G + NIR)
(McFeeters 1996). The threshold is fixed or, by default, Otsu's threshold over the whole
scene (computed once in ``prepare`` from a decimated read, so every chip uses the same
value; per-chip Otsu would invent water in dry chips). It needs NIR or SWIR: an RGB-only
raster is refused rather than guessed at.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .segmenter import ChipBatch, ChipResult, EngineInfo, RasterBands

# Otsu is meaningless on a scene without water (one mode); keep its result within the range
# where the index plausibly separates water from land.
OTSU_BOUNDS = (-0.1, 0.5)
DEFAULT_THRESHOLD = 0.0


def otsu_threshold(
    values: np.ndarray, bins: int = 256, value_range: tuple[float, float] = (-1.0, 1.0)
) -> float:
    """Otsu's threshold (maximum between-class variance) of finite ``values``."""
    v = values[np.isfinite(values)]
    if v.size < 2:
        return DEFAULT_THRESHOLD
    hist, edges = np.histogram(v, bins=bins, range=value_range)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(np.float64)
    w1 = w0[-1] - w0
    m = np.cumsum(hist * centers)
    mu0 = np.divide(m, w0, out=np.zeros_like(m), where=w0 > 0)
    mu1 = np.divide(m[-1] - m, w1, out=np.zeros_like(m), where=w1 > 0)
    between = w0 * w1 * (mu0 - mu1) ** 2
    # Two clean modes leave a plateau of equal scores between them: take its middle.
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    return float(edges[int(round((best[0] + best[-1]) / 2)) + 1])


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a - b) / (a + b), NaN where the sum is 0 or an input is NaN."""
    a = a.astype(np.float32, copy=False)
    b = b.astype(np.float32, copy=False)
    s = a + b
    out = a - b
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(out, s, out=out)
    zero = s == 0
    if zero.any():
        out[zero] = np.nan
    return out


class WaterIndexSegmenter:
    """Water where MNDWI (or NDWI) > threshold. Implements engine.base.Segmenter.

    ``green``/``nir``/``swir``: 1-based bands (usually from RasterSource.band_roles).
    ``threshold``: fixed value, or None for the scene's Otsu threshold.
    ``index``: "auto" (MNDWI when SWIR is known, else NDWI), "mndwi" or "ndwi".
    """

    name = "water-index"
    pixelwise = True  # one pixel's bands and the scene threshold decide it: chips need no overlap
    needs_rgb = False

    def __init__(
        self,
        *,
        green: int | None = None,
        nir: int | None = None,
        swir: int | None = None,
        threshold: float | None = None,
        index: str = "auto",
        chip_size: int = 224,
    ) -> None:
        if index not in ("auto", "mndwi", "ndwi"):
            raise InputError(f"unknown water index {index!r}; choose auto, mndwi or ndwi")
        self.green, self.nir, self.swir = green, nir, swir
        self.fixed_threshold = threshold
        self.threshold: float = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        self.index = index
        self.chip_size = int(chip_size)
        self._bands: list[int] | None = None
        self.index_name: str | None = None

    def _resolve(self, bands: RasterBands) -> list[int]:
        green = self.green
        if green is None:
            # Described bands first, then the green of the RGB rendering.
            for i, d in enumerate(bands.descriptions, start=1):
                if d and d.strip().lower() == "green":
                    green = i
            green = green or bands.rgb[1]
        index = self.index
        if index == "auto":
            index = "mndwi" if self.swir else "ndwi"
        other = self.swir if index == "mndwi" else self.nir
        if other is None:
            if index == "mndwi" and self.index != "auto":
                raise InputError(
                    "the raster has no SWIR band for MNDWI; use --swir N or a preset",
                    field="swir",
                    code="band_unknown",
                )
            raise InputError(
                "the raster has no NIR or SWIR band; use --nir/--swir, a preset, or the paligemma engine",
                field="nir",
                code="band_unknown",
            )
        other_role = "swir" if index == "mndwi" else "nir"
        for b, role in ((green, "green"), (other, other_role)):
            if not 1 <= b <= bands.count:
                raise InputError(
                    f"band {b} does not exist (the raster has {bands.count} bands)",
                    field=role,
                    code="band_out_of_range",
                )
        if green == other:
            raise InputError(
                f"green and {index == 'mndwi' and 'SWIR' or 'NIR'} are the same band ({green})",
                field=other_role,
                code="same_band",
            )
        self.index_name = index
        return [green, other]

    @property
    def needs_sample(self) -> bool:
        """Only Otsu needs the scene sample; a fixed threshold reads none."""
        return self.fixed_threshold is None

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(
            name=self.name,
            chip_size=self.chip_size,
            pixelwise=self.pixelwise,
            needs_rgb=self.needs_rgb,
            needs_sample=self.needs_sample,
        )

    # -- Segmenter protocol
    def bands_needed(self, bands: RasterBands) -> list[int]:
        self._bands = self._resolve(bands)
        return list(self._bands)

    def index_of(self, raw: np.ndarray) -> np.ndarray:
        """Index values for raw (..., 2, H, W) = [green, nir-or-swir]."""
        return normalized_difference(raw[..., 0, :, :], raw[..., 1, :, :])

    def prepare(self, sample: ChipBatch) -> None:
        if self.fixed_threshold is not None:
            return
        values = self.index_of(sample.raw)[sample.valid]
        t = otsu_threshold(values)
        self.threshold = float(np.clip(t, *OTSU_BOUNDS))

    def segment(self, batch: ChipBatch) -> list[ChipResult]:
        idx = self.index_of(batch.raw)
        with np.errstate(invalid="ignore"):
            water = (idx > self.threshold) & batch.valid
        results = []
        for w in water:
            results.append(ChipResult(water=w, status="ok" if w.any() else "empty"))
        return results

    def describe(self) -> dict[str, Any]:
        """What was run, for the summary and the audit trail."""
        return {
            "index": self.index_name,
            "bands": self._bands,
            "threshold": round(self.threshold, 4),
            "threshold_source": "fixed" if self.fixed_threshold is not None else "otsu",
        }
