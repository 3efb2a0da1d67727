"""Build a scene's segmenter from the engine spec; the model engine is imported only when asked for."""

from __future__ import annotations

from collections.abc import Mapping

from ..specs import EngineSpec
from .segmenter import Segmenter


def make_segmenter(engine: EngineSpec, roles: Mapping[str, int] | None = None) -> Segmenter:
    """The segmenter ``engine`` names, for a scene whose band roles are ``roles``."""
    roles = roles or {}
    if engine.name == "water-index":
        from .water_index import WaterIndexSegmenter

        return WaterIndexSegmenter(
            green=roles.get("green"),
            nir=roles.get("nir"),
            swir=roles.get("swir"),
            threshold=engine.water_index.threshold,
            index=engine.water_index.index,
            threshold_method=engine.water_index.threshold_method,
        )
    from .paligemma import PaliGemmaSegmenter

    m = engine.paligemma
    return PaliGemmaSegmenter.from_options(
        model=m.model,
        vae=m.vae,
        allow_custom_vae=m.allow_custom_vae,
        device=m.device,
        batch_size=engine.batch_size,
        classes=m.classes,
        constrained=m.constrained,
        max_new_tokens=m.max_new_tokens,
        dtype=m.dtype,
        max_objects=m.max_objects,
        cache=m.cache,
        compile=m.compile,
    )
