"""The segmenter protocols: the one seam between the geospatial pipeline and the models.

The pipeline reads chips (raw band values plus an 8-bit RGB rendering and a validity
mask) and hands them over in batches; a segmenter returns one ChipResult per chip. What it
needs read (bands, RGB, a scene sample) it declares in its ``EngineInfo``, so the pipeline
reads no more than that and asks no question of the object itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

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


@dataclass(frozen=True)
class EngineInfo:
    """What the pipeline must know of a segmenter to plan and feed it, declared by the segmenter.

    ``pixelwise``: a pixel's answer depends on its own values and scene-level parameters only
    (a spectral index with one threshold), so chips need no overlap; ``needs_rgb``: reads
    ``ChipBatch.rgb`` (else the batch holds a (B, H, W, 0) array); ``needs_sample``:
    ``prepare`` uses the scene sample (else none is read); ``text``: answers in text
    (``TextSegmenter``): the texts are journaled and masks rebuilt from them.
    """

    name: str
    chip_size: int
    pixelwise: bool = False
    needs_rgb: bool = True
    needs_sample: bool = True
    text: bool = False
    batch_size: int | None = None  # the engine's own choice (None: the pipeline's default)
    device: str | None = None


class Segmenter(Protocol):
    """What the pipeline calls for every scene's chips."""

    @property
    def info(self) -> EngineInfo: ...

    def bands_needed(self, bands: RasterBands) -> list[int]:
        """1-based raster bands to deliver in ChipBatch.raw (may be empty)."""
        ...

    def prepare(self, sample: ChipBatch) -> None:
        """Scene-level setup from a sample of chips (e.g. a threshold); may be a no-op."""
        ...

    def segment(self, batch: ChipBatch) -> list[ChipResult]: ...

    def describe(self) -> dict[str, Any]:
        """What ran, for the summary and the ``run`` table (JSON values)."""
        ...


class TextDecoder(Protocol):
    """Model texts to chip results, without the model (resume, Ray, revectorize)."""

    def decode(self, texts: Sequence[str | None], height: int, width: int) -> list[ChipResult]: ...


class TextSegmenter(Segmenter, Protocol):
    """A segmenter that answers in text (``info.text``): its texts are what a run journals."""

    @property
    def decoder(self) -> TextDecoder: ...

    def generate_texts(self, batch: ChipBatch) -> list[str | None]:
        """One text per chip; None for a chip not asked (no valid pixel)."""
        ...


# A scene's band roles ({"green": 3, "nir": 4}) -> the segmenter for that scene. A model
# engine returns the same loaded model for every scene; a pixel index one per band layout.
SegmenterFactory = Callable[[Mapping[str, int]], Segmenter]


def as_text(segmenter: Segmenter) -> TextSegmenter | None:
    """The segmenter as a TextSegmenter when its info says it answers in text."""
    return cast(TextSegmenter, segmenter) if segmenter.info.text else None


def fixed(segmenter: Segmenter) -> SegmenterFactory:
    """A factory that gives ``segmenter`` for every scene (tests; a model kept loaded across runs)."""
    return lambda roles: segmenter
