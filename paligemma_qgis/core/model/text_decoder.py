"""Model text -> chip masks, without the model: what resume, Ray and ``revectorize`` share.

PaliGemma's answer for a chip is a short text (about 100 bytes); its masks follow from that
text and the VQ-VAE codec alone. So a run journals the text, and a resumed run, a Ray
finishing task or ``revectorize`` rebuilds the masks from it on the CPU, bit for bit what
the run that asked the model got (same parser, same codec, same paste).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from .segmenter import ChipResult

if TYPE_CHECKING:
    from ..specs import ModelSpec
    from .codec import MaskCodec
    from .tokens import SegObject


class ChipTextDecoder:
    """Parses chip texts (objects with labels not asked for are rejected) and decodes their masks."""

    def __init__(self, codec: MaskCodec, classes: Sequence[str]) -> None:
        self.codec = codec
        self.classes = tuple(classes)
        self._wanted = {c.lower() for c in self.classes}

    @classmethod
    def from_options(
        cls,
        vae: str | None = None,
        classes: str | Sequence[str] | None = None,
        allow_custom_vae: bool = False,
        device: str = "cpu",
    ) -> ChipTextDecoder:
        """The decoder a run with these options used (the VAE checksum is checked the same way)."""
        from .codec import MaskCodec
        from .tokens import parse_classes
        from .weights import find_vae

        codec = MaskCodec.from_npz(find_vae(vae), device=device, allow_custom_vae=bool(allow_custom_vae))
        return cls(codec, parse_classes(classes))

    @classmethod
    def from_spec(cls, model: ModelSpec, device: str = "cpu") -> ChipTextDecoder:
        """The decoder a run with this model spec used (the VAE checksum is checked the same way)."""
        return cls.from_options(model.vae, model.classes, model.allow_custom_vae, device)

    def check_objects(self, text: str) -> list[SegObject]:
        from .tokens import parse_segmentation

        return [
            replace(o, status=f"label {o.label!r} not asked for")
            if o.accepted and o.label.lower() not in self._wanted
            else o
            for o in parse_segmentation(text)
        ]

    def decode(self, texts: Sequence[str | None], height: int, width: int) -> list[ChipResult]:
        """One ChipResult per text; None marks a chip the model was not asked about (no valid pixel)."""
        from .masks import codes_array, paste_masks, usable_objects
        from .tokens import parse_summary

        parsed = {i: self.check_objects(t) for i, t in enumerate(texts) if t is not None}
        usable = {i: usable_objects(objs) for i, objs in parsed.items()}
        all_codes = [codes_array(objs) for objs in parsed.values()]
        codes = np.concatenate(all_codes) if all_codes else np.zeros((0, 16), np.int64)
        decoded = self.codec.decode(codes) if len(codes) else np.zeros((0, 64, 64), np.float32)
        results: list[ChipResult] = []
        offset = 0
        for i, text in enumerate(texts):
            if text is None:
                results.append(
                    ChipResult(np.zeros((height, width), bool), "skipped: no valid pixels", None, [])
                )
                continue
            objs, ok = parsed[i], usable[i]
            water = paste_masks(ok, decoded[offset : offset + len(ok)], height, width)
            offset += len(ok)
            if not objs:
                status = "empty"
            elif all(o.accepted for o in objs):
                status = "ok"
            else:
                status = parse_summary(objs)
            records = [{"box": list(o.box), "label": o.label, "status": o.status} for o in objs]
            results.append(ChipResult(water=water, status=status, text=text, objects=records))
        return results
