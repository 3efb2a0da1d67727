"""A spectral water index segmenter: the no-model baseline, reference labels and a sanity check.

MNDWI = (G - SWIR) / (G + SWIR) when a SWIR band is known (it separates water from built-up
land and bright soil better than NDWI, Xu 2006); otherwise NDWI = (G - NIR) / (G + NIR)
(McFeeters 1996). The threshold is fixed or, by default, chosen once per scene in ``prepare``
from a decimated read (so every chip uses the same value; per-chip thresholds would invent
water in dry chips) by one of the methods of ``thresholds`` (edge-Otsu with a NIR/SWIR
darkness guard by default), which also scores how far to trust the scene's map. It needs
NIR or SWIR: an RGB-only raster is refused rather than guessed at.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .segmenter import ChipBatch, ChipResult, EngineInfo, RasterBands
from .thresholds import (
    BOUNDS,
    DEFAULT_METHOD,
    FALLBACK,
    THRESHOLD_METHODS,
    ThresholdChoice,
    ThresholdMethod,
    choose_threshold,
    histogram,
    otsu,
)

OTSU_BOUNDS = BOUNDS
DEFAULT_THRESHOLD = FALLBACK


def otsu_threshold(values: np.ndarray) -> float:
    """Plain Otsu's threshold of finite ``values`` (index units), unbounded."""
    return otsu(*histogram(np.asarray(values, np.float32)))


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
    ``threshold``: fixed value, or None for the scene's threshold by ``threshold_method``
    (see ``thresholds``: "auto", "edge-otsu", "multi-otsu" or "otsu").
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
        threshold_method: ThresholdMethod = DEFAULT_METHOD,
        chip_size: int = 224,
    ) -> None:
        if index not in ("auto", "mndwi", "ndwi"):
            raise InputError("option_choice", field="index", value=repr(index), choices="auto, mndwi, ndwi")
        if threshold_method not in THRESHOLD_METHODS:
            raise InputError(
                "option_choice",
                field="threshold_method",
                value=repr(threshold_method),
                choices=", ".join(THRESHOLD_METHODS),
            )
        self.green, self.nir, self.swir = green, nir, swir
        self.fixed_threshold = threshold
        self.threshold: float = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        self.index = index
        self.threshold_method: ThresholdMethod = threshold_method
        self.chip_size = int(chip_size)
        self._bands: list[int] | None = None
        self._check_bands: dict[str, int] = {}  # role -> position in raw, for the darkness check
        self.index_name: str | None = None
        self.choice: ThresholdChoice | None = None

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
                raise InputError("band_unknown", field="swir", role="SWIR", index="MNDWI")
            raise InputError("band_unknown", field="nir", role="NIR or SWIR", index="the water index")
        other_role = "swir" if index == "mndwi" else "nir"
        for b, role in ((green, "green"), (other, other_role)):
            if not 1 <= b <= bands.count:
                raise InputError("band_out_of_range", field=role, role=role, band=b, count=bands.count)
        if green == other:
            raise InputError("same_band", field=other_role, role=other_role.upper(), band=green)
        self.index_name = index
        read = [green, other]
        self._check_bands = {other_role: 1}
        if self.fixed_threshold is None:
            # The darkness check reads the other of NIR/SWIR too, when the raster has it.
            extra_role = "nir" if other_role == "swir" else "swir"
            extra = self.nir if extra_role == "nir" else self.swir
            if extra is not None and 1 <= extra <= bands.count and extra not in read:
                self._check_bands[extra_role] = len(read)
                read.append(extra)
        return read

    @property
    def needs_sample(self) -> bool:
        """Only a scene threshold needs the scene sample; a fixed threshold reads none."""
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
        """Index values for raw (..., n, H, W) = [green, nir-or-swir, other bands read...]."""
        return normalized_difference(raw[..., 0, :, :], raw[..., 1, :, :])

    def prepare(self, sample: ChipBatch) -> None:
        """The scene threshold and its self-check, from the sample (chips side by side)."""
        if self.fixed_threshold is not None:
            return
        raw = np.where(sample.valid[:, None], sample.raw, np.nan).astype(np.float32, copy=False)
        # Chips side by side with a NaN column between them: no edge across two chips.
        gap = np.full((*raw.shape[1:3], 1), np.nan, np.float32)
        image = np.concatenate([a for chip in raw for a in (chip, gap)][:-1], axis=-1)
        index = normalized_difference(image[0], image[1])
        check = {role: image[pos] for role, pos in self._check_bands.items()}
        self.choice = choose_threshold(
            index, self.threshold_method, nir=check.get("nir"), swir=check.get("swir")
        )
        self.threshold = self.choice.threshold

    def segment(self, batch: ChipBatch) -> list[ChipResult]:
        idx = self.index_of(batch.raw)
        with np.errstate(invalid="ignore"):
            water = (idx > self.threshold) & batch.valid
        results = []
        for w in water:
            results.append(ChipResult(water=w, status="ok" if w.any() else "empty"))
        return results

    def describe(self) -> dict[str, Any]:
        """What was run and how far to trust it, for the summary, the audit trail and ``scenes``."""
        out: dict[str, Any] = {
            "index": self.index_name,
            "bands": None if self._bands is None else self._bands[:2],
            "threshold": round(self.threshold, 4),
            "threshold_source": "fixed" if self.fixed_threshold is not None else self.threshold_method,
        }
        if self.choice is not None:
            c = self.choice.as_dict()
            for key in ("method", "threshold", "reason"):
                c.pop(key)
            out.update({k if k != "otsu" else "otsu_threshold": v for k, v in c.items()})
            out["unsure_reason"] = self.choice.reason or None
        return out
