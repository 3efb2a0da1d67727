"""Build a segmenter by engine name; the model engine is imported only when asked for.

Options that belong to the other engine are ignored, so front ends can pass one flat set
of options (SegmentOptions) whatever the engine.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError

ENGINES = ("water-index", "paligemma")

_WATER_INDEX_KEYS = ("green", "nir", "swir", "threshold", "index", "threshold_method", "chip_size")
_PALIGEMMA_KEYS = (
    "model",
    "vae",
    "allow_custom_vae",
    "device",
    "batch_size",
    "classes",
    "constrained",
    "max_new_tokens",
    "max_objects",
    "dtype",
    "cache",
    "compile",
)


def make_segmenter(engine: str, **options: Any) -> Any:
    """A Segmenter for ``engine`` ("water-index" or "paligemma") from flat options."""
    if engine == "water-index":
        from .water_index import WaterIndexSegmenter

        kwargs = {k: options[k] for k in _WATER_INDEX_KEYS if options.get(k) is not None}
        return WaterIndexSegmenter(**kwargs)
    if engine == "paligemma":
        from .paligemma import PaliGemmaSegmenter

        kwargs = {k: options.get(k) for k in _PALIGEMMA_KEYS}
        if kwargs["allow_custom_vae"] is None:
            kwargs["allow_custom_vae"] = False
        if kwargs["constrained"] is None:
            kwargs["constrained"] = True
        kwargs["cache"] = kwargs["cache"] or "dynamic"
        kwargs["compile"] = bool(kwargs["compile"])
        return PaliGemmaSegmenter.from_options(**kwargs)
    raise InputError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
