"""The big_vision recipe: water components -> boxes (loc tokens) and 64x64 crops -> seg tokens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..options import LABEL, PREFIX

if TYPE_CHECKING:
    from ...model.codec import MaskCodec
    from ...model.tokens import SegObject

__all__ = ["LABEL", "PREFIX", "Component", "EncodedChip", "encode_chip", "load_codec", "water_components"]


@dataclass
class Component:
    """One 8-connected water component: tight pixel box (y1, x1, y2, x2; y2/x2 exclusive)."""

    box: tuple[int, int, int, int]
    mask: np.ndarray  # bool, cropped to box
    pixels: int


def connected_components(binary: np.ndarray) -> tuple[np.ndarray, int]:
    """Label 8-connected components of a 2-D bool/0-1 array: (int32 labels, count).

    GDAL's polygonizer traces each 8-connected region into one polygon whose edges lie on
    pixel edges, so rasterising the polygons back (pixel-centre rule) gives back exactly
    the region's pixels.
    """
    from affine import Affine
    from rasterio import features

    binary = np.ascontiguousarray(binary, dtype=np.uint8)
    if binary.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {binary.shape}")
    if not binary.any():
        return np.zeros(binary.shape, np.int32), 0
    shapes = [
        (geom, i + 1)
        for i, (geom, _) in enumerate(
            features.shapes(binary, mask=binary.astype(bool), connectivity=8, transform=Affine.identity())
        )
    ]
    labels = features.rasterize(shapes, out_shape=binary.shape, dtype="int32", fill=0)
    return labels, len(shapes)


def loc_box(box: Sequence[int], height: int, width: int) -> tuple[int, int, int, int]:
    """big_vision's box encoding: round([y1/H, x1/W, y2/H, x2/W] * 1023), clipped to 0..1023."""
    from ...model.masks import pixel_box_to_loc

    y1, x1, y2, x2 = (int(v) for v in box)
    return pixel_box_to_loc(y1, x1, y2, x2, height, width)


def water_components(
    binary: np.ndarray, min_pixels: int = 1, max_objects: int = 0
) -> tuple[list[Component], int]:
    """Components to export (largest first) and how many were dropped.

    Dropped: fewer than ``min_pixels`` pixels, a box that collapses on the 1024 loc grid
    (which big_vision would reject as y2 <= y1 / x2 <= x1), or beyond the ``max_objects``
    largest (0: no limit; every object costs about 24 tokens of the training sequence).
    """
    labels, n = connected_components(binary)
    if n == 0:
        return [], 0
    h, w = labels.shape
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    comps: list[Component] = []
    dropped = 0
    # Boxes of all components in one pass over the rows/columns that hold any label.
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    y1 = np.full(n + 1, h, np.int64)
    x1 = np.full(n + 1, w, np.int64)
    y2 = np.zeros(n + 1, np.int64)
    x2 = np.zeros(n + 1, np.int64)
    np.minimum.at(y1, lab, ys)
    np.minimum.at(x1, lab, xs)
    np.maximum.at(y2, lab, ys + 1)
    np.maximum.at(x2, lab, xs + 1)
    for i in range(1, n + 1):
        box = (int(y1[i]), int(x1[i]), int(y2[i]), int(x2[i]))
        loc = loc_box(box, h, w)
        if counts[i] < min_pixels or loc[2] <= loc[0] or loc[3] <= loc[1]:
            dropped += 1
            continue
        crop = labels[box[0] : box[2], box[1] : box[3]] == i
        comps.append(Component(box=box, mask=crop, pixels=int(counts[i])))
    comps.sort(key=lambda c: (-c.pixels, c.box))
    if max_objects > 0 and len(comps) > max_objects:
        dropped += len(comps) - max_objects
        comps = comps[:max_objects]
    return comps, dropped


@dataclass
class EncodedChip:
    """Objects of one chip: the suffix text, its objects and what decoding them gives back."""

    suffix: str
    objects: list[SegObject]
    kept_mask: np.ndarray  # bool (H, W): union of the exported components
    decoded: np.ndarray | None  # bool (H, W): the tokens decoded back (None without objects)
    dropped: int

    @property
    def codec_iou(self) -> float | None:
        """IoU of the decoded tokens vs the exported components (what the 16-token codec loses)."""
        if self.decoded is None:
            return None
        return mask_iou(self.decoded, self.kept_mask)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.logical_and(a, b).sum()
    union = np.logical_or(a, b).sum()
    return float(inter / union) if union else 1.0


def encode_chip(
    codec: MaskCodec, water: np.ndarray, *, label: str = LABEL, min_pixels: int = 1, max_objects: int = 0
) -> EncodedChip:
    """Water mask (H, W) -> PaliGemma suffix with one object per component, plus decode-back."""
    from ...model.masks import instance_to_object, paste_masks
    from ...model.tokens import SegObject, format_objects

    h, w = water.shape
    comps, dropped = water_components(water, min_pixels, max_objects)
    kept = np.zeros((h, w), bool)
    if not comps:
        return EncodedChip(suffix="", objects=[], kept_mask=kept, decoded=None, dropped=dropped)
    crops = []
    for c in comps:
        kept[c.box[0] : c.box[2], c.box[1] : c.box[3]] |= c.mask
        # The crop is the tight box already, so its own 64x64 rendering is the object's.
        _, crop64 = instance_to_object(c.mask)
        crops.append(np.asarray(crop64, dtype=np.float32))
    codes = np.asarray(codec.encode(np.stack(crops)), dtype=np.int64)
    objects = [
        SegObject(box=loc_box(c.box, h, w), codes=tuple(int(v) for v in code), label=label, status="ok")
        for c, code in zip(comps, codes, strict=False)
    ]
    decoded = np.asarray(codec.decode(codes))
    pasted = np.asarray(paste_masks(objects, decoded, h, w)).astype(bool)
    return EncodedChip(
        suffix=format_objects(objects), objects=objects, kept_mask=kept, decoded=pasted, dropped=dropped
    )


def load_codec(vae: str | None, allow_custom_vae: bool) -> MaskCodec:
    """The mask codec; the weights file is checked (numpy only) before torch is imported."""
    from ...model.weights import find_vae, load_vae_arrays

    path = find_vae(vae)
    arrays = load_vae_arrays(path, allow_custom_vae=allow_custom_vae)
    from ...model.codec import MaskCodec

    return MaskCodec(arrays, path=path)
