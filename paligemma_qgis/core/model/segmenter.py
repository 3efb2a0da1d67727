"""The segmenter protocol: the one seam between the geospatial pipeline and the models.

The pipeline reads chips (raw band values plus an 8-bit RGB rendering and a validity
mask) and hands them over in batches; a segmenter returns one ChipResult per chip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class ChipBatch:
    """A batch of equally sized chips (all arrays share B, H, W).

    raw:   float32 (B, nbands, H, W) raw values of the bands the segmenter asked for
           (``Segmenter.bands_needed``), in that order; NaN where invalid.
    rgb:   uint8 (B, H, W, 3) display rendering (percentile stretch computed once per
           scene), what a vision model sees.
    valid: bool (B, H, W) True where the pixel has data.
    ids:   chip ids, for logging and audit.
    """

    raw: np.ndarray
    rgb: np.ndarray
    valid: np.ndarray
    ids: Sequence[int]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class ChipResult:
    """What a segmenter found in one chip.

    water:  bool (H, W) chip-sized mask (the pipeline ands it with ``valid``).
    status: "ok", "empty" (nothing found), or an error/parse problem such as
            "2 objects, 1 rejected: 17 seg tokens".
    text:   raw model text, when the segmenter is a language model.
    objects: per-object audit records (dicts), when any.
    """

    water: np.ndarray
    status: str = "ok"
    text: str | None = None
    objects: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class RasterBands:
    """What a segmenter may need to know about the raster to choose its bands."""

    count: int
    descriptions: tuple[str | None, ...]
    rgb: tuple[int, int, int]  # 1-based band numbers used for the RGB rendering


class Segmenter(Protocol):
    """What the pipeline calls. Optional attributes say what a segmenter needs, so the
    pipeline reads no more than that (``engine_needs``); a segmenter without them gets
    everything (RGB rendering, scene sample, chip overlap), which is always correct:

    - ``pixelwise``: each pixel's answer depends on that pixel's values and scene-level
      parameters only (a spectral index with one threshold), so chips need no overlap;
    - ``needs_rgb``: reads ``ChipBatch.rgb`` (False: the batch holds a (B, H, W, 0) array);
    - ``needs_sample``: ``prepare`` uses the scene sample (False: it is not read).
    """

    name: str
    chip_size: int  # pixels per side the segmenter wants

    def bands_needed(self, bands: RasterBands) -> list[int]:
        """1-based raster bands to deliver in ChipBatch.raw (may be empty)."""
        ...

    def prepare(self, sample: ChipBatch) -> None:
        """Scene-level setup from a sample of chips (e.g. an Otsu threshold); may be a no-op."""
        ...

    def segment(self, batch: ChipBatch) -> list[ChipResult]: ...


@dataclass(frozen=True)
class EngineNeeds:
    """What a segmenter reads: see ``Segmenter``'s optional attributes."""

    pixelwise: bool
    rgb: bool
    sample: bool


def engine_needs(segmenter: object) -> EngineNeeds:
    """A segmenter's needs; attributes it does not declare default to needing everything."""
    return EngineNeeds(
        pixelwise=bool(getattr(segmenter, "pixelwise", False)),
        rgb=bool(getattr(segmenter, "needs_rgb", True)),
        sample=bool(getattr(segmenter, "needs_sample", True)),
    )
