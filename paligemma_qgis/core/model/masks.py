"""Masks <-> boxes: paste decoded 64x64 masks into a chip, and crop instances for encoding.

Resizing follows big_vision. Decoding (evaluators/.../segmentation.py) resizes the float
64x64 output with ``PIL.Image.resize(BILINEAR)`` to the box's pixel size and thresholds at
0; we call the same PIL function. Encoding (pp/.../segmentation.py) uses TF's antialiased
bilinear resize; PIL's BILINEAR is the same triangle filter (widened when shrinking,
half-pixel centres, weights renormalised at the borders), applied to float data.

No torch here: the codec is passed in, so callers that only paste masks stay light.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .tokens import LOC_MAX, SegObject

if TYPE_CHECKING:  # pragma: no cover
    from .codec import MaskCodec

MASK_SIZE = 64


def loc_box_to_pixels(box: Sequence[int], height: int, width: int) -> tuple[int, int, int, int]:
    """(y1, x1, y2, x2) on the 0..1023 grid -> pixel edges, as big_vision: int(loc / 1023 * size)."""
    y1, x1, y2, x2 = (int(v) / LOC_MAX for v in box)
    return int(y1 * height), int(x1 * width), int(y2 * height), int(x2 * width)


def pixel_box_to_loc(
    y1: int, x1: int, y2: int, x2: int, height: int, width: int
) -> tuple[int, int, int, int]:
    """Pixel edges (x2, y2 exclusive) -> loc grid: clip(round(v * 1023), 0, 1023) with v = edge / size."""
    vals = (y1 / height, x1 / width, y2 / height, x2 / width)
    return tuple(min(max(round(v * LOC_MAX), 0), LOC_MAX) for v in vals)  # type: ignore[return-value]


def _resize(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Float32 bilinear resize with PIL (antialiased when shrinking)."""
    img = Image.fromarray(np.ascontiguousarray(arr, dtype=np.float32))  # mode "F"
    return np.asarray(img.resize((width, height), resample=Image.Resampling.BILINEAR), dtype=np.float32)


def paste_mask(box: Sequence[int], decoded64: np.ndarray, height: int, width: int) -> np.ndarray:
    """One decoded (64,64) mask pasted at its loc box -> bool (height, width)."""
    out = np.zeros((height, width), bool)
    _paste_into(out, box, decoded64)
    return out


def _paste_into(out: np.ndarray, box: Sequence[int], decoded64: np.ndarray) -> None:
    height, width = out.shape
    y1, x1, y2, x2 = loc_box_to_pixels(box, height, width)
    if y2 <= y1 or x2 <= x1:  # can happen after int() for tiny boxes, as in big_vision
        return
    out[y1:y2, x1:x2] |= _resize(decoded64, y2 - y1, x2 - x1) > 0.0


def usable_objects(objects: Sequence[SegObject]) -> list[SegObject]:
    """Accepted objects that carry mask codes (what the codec can decode)."""
    return [o for o in objects if o.accepted and o.codes is not None]


def codes_array(objects: Sequence[SegObject]) -> np.ndarray:
    """int64 (K, 16) codes of the usable objects, ready for ``MaskCodec.decode``."""
    usable = usable_objects(objects)
    return np.array([o.codes for o in usable], np.int64).reshape(len(usable), 16)


def paste_masks(objects: Sequence[SegObject], decoded: np.ndarray, height: int, width: int) -> np.ndarray:
    """Union of decoded masks at their boxes -> bool (height, width).

    ``decoded`` is (K,64,64) and lines up either with ``objects`` one to one (entries of
    rejected or detection-only objects are ignored) or with ``usable_objects(objects)``.
    """
    decoded = np.asarray(decoded)
    usable = usable_objects(objects)
    if len(decoded) == len(objects):
        pairs = [(o, d) for o, d in zip(objects, decoded, strict=True) if o.accepted and o.codes is not None]
    elif len(decoded) == len(usable):
        pairs = list(zip(usable, decoded, strict=True))
    else:
        raise ValueError(f"{len(decoded)} decoded masks for {len(objects)} objects ({len(usable)} usable)")
    out = np.zeros((height, width), bool)
    for obj, dec in pairs:
        _paste_into(out, obj.box, dec)
    return out


def decode_objects(codec: MaskCodec, objects: Sequence[SegObject], height: int, width: int) -> np.ndarray:
    """Model objects -> bool (height, width) water mask: decode usable objects, paste, union."""
    codes = codes_array(objects)
    if len(codes) == 0:
        return np.zeros((height, width), bool)
    return paste_masks(usable_objects(objects), codec.decode(codes), height, width)


def instance_to_object(mask: np.ndarray) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """One instance mask bool (H,W) -> (loc box, float32 (64,64) crop in [0,1]).

    The tight pixel box (x2, y2 exclusive), the crop resized to 64x64 with an antialiased
    bilinear filter, soft values kept (no threshold): what the encoder was trained on.
    """
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"instance mask must be 2-D, got shape {mask.shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("instance mask is empty")
    y1, y2 = int(rows[0]), int(rows[-1]) + 1
    x1, x2 = int(cols[0]), int(cols[-1]) + 1
    crop = mask[y1:y2, x1:x2].astype(np.float32)
    crop64 = np.clip(_resize(crop, MASK_SIZE, MASK_SIZE), 0.0, 1.0)
    return pixel_box_to_loc(y1, x1, y2, x2, *mask.shape), crop64


def encode_instances(
    codec: MaskCodec, masks_list: Sequence[np.ndarray], label: str = "water"
) -> list[SegObject]:
    """Instance masks (each bool (H,W), non-empty) -> SegObjects with codes, one batched encode."""
    if not masks_list:
        return []
    boxes, crops = [], []
    for i, m in enumerate(masks_list):
        try:
            box, crop = instance_to_object(m)
        except ValueError as exc:
            raise ValueError(f"instance {i}: {exc}") from None
        boxes.append(box)
        crops.append(crop)
    codes = codec.encode(np.stack(crops))
    return [SegObject(box, tuple(int(c) for c in row), label) for box, row in zip(boxes, codes, strict=True)]
