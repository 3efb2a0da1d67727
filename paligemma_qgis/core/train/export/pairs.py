"""export-pairs: plain image/mask folders (no georeference) -> chips + JSONL, split image by image.

Image ``name.jpg`` is written as ``images/name.png``: two inputs that would write the same
chip (``dup.jpg`` and ``dup.png``, or names that differ only in case, which collide on
Windows and macOS) are refused with both names before any work, so a chip is never
overwritten and no two JSONL lines point at one image with different labels.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import InputError
from ...inputs.files import image_size, open_image, read_text
from ...progress import Progress, check_cancelled
from ...serial import to_data
from ..options import PairsOptions
from .outputs import (
    check_output_dir,
    finish_output_dir,
    prepare_output_dir,
    write_export_json,
    write_jsonl,
    writing,
)
from .recipe import encode_chip, load_codec
from .split import apply_empty_policy
from .summary import ExportSummary

if TYPE_CHECKING:
    from PIL.Image import Image

    from ...model.codec import MaskCodec

__all__ = ["PairsOptions", "binarise_mask_image", "chip_name", "export_pairs", "split_pairs"]


def binarise_mask_image(path: Path, threshold: int, *, allow_large: bool = False) -> np.ndarray:
    """A JPEG/PNG mask -> bool, as convert.py does: OpenCV's BGR->gray, then ``> threshold``."""
    with open_image(path, "mask image", allow_large=allow_large) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.int64)
    # cv2.cvtColor(COLOR_BGR2GRAY) in fixed point (14 bits), bit-exact with OpenCV.
    gray = (rgb[..., 0] * 4899 + rgb[..., 1] * 9617 + rgb[..., 2] * 1868 + 8192) >> 14
    return gray > threshold


def _pair_names(opts: PairsOptions) -> list[str]:
    images, masks = Path(opts.images), Path(opts.masks)
    for p, name in ((images, "images"), (masks, "masks")):
        if not p.is_dir():
            raise InputError("pairs_folder_not_found", field=name, path=str(p))
    if opts.names:
        names_file = Path(opts.names)
        if not names_file.is_file():
            raise InputError("pairs_names_not_found", field="names", path=str(names_file))
        names = [ln.strip() for ln in read_text(names_file, "names file").splitlines() if ln.strip()]
    else:
        exts = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}
        names = sorted(p.name for p in images.iterdir() if p.suffix.lower() in exts)
    missing = [n for n in names if not (images / n).is_file() or not (masks / n).is_file()]
    if missing:
        raise InputError(
            "pairs_unmatched", count=len(missing), images=str(images), masks=str(masks), example=missing[0]
        )
    if not names:
        raise InputError("pairs_no_images", field="images", path=str(images))
    _check_collisions(names, opts)
    return names


def _check_headers(names: list[str], opts: PairsOptions) -> None:
    """Every image and mask identified and sized from its header: bad files fail before the work."""
    for name in names:
        image, mask = Path(opts.images) / name, Path(opts.masks) / name
        size = image_size(image, "image", allow_large=opts.allow_large_images)
        mask_size = image_size(mask, "mask image", allow_large=opts.allow_large_images)
        if size != mask_size:
            raise InputError(
                "pairs_sizes_differ",
                path=str(image),
                size=_wxh(size),
                mask=str(mask),
                mask_size=_wxh(mask_size),
            )


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def chip_name(name: str) -> str:
    """The file an image is written as: ``images/<stem>.png``."""
    return Path(name).with_suffix(".png").name


def _check_collisions(names: list[str], opts: PairsOptions) -> None:
    """Refuse two inputs that would write the same chip (compared case-insensitively)."""
    seen: dict[str, str] = {}
    listed: set[str] = set()
    for name in names:
        if name in listed:
            raise InputError("pairs_name_repeated", field="names", path=str(opts.names), name=name)
        listed.add(name)
        other = seen.setdefault(chip_name(name).casefold(), name)
        if other != name:
            images = Path(opts.images)
            raise InputError(
                "pairs_same_chip",
                field="images",
                first=str(images / other),
                second=str(images / name),
                chip=chip_name(other),
            )


def split_pairs(n: int, valid_fraction: float, seed: int) -> list[str]:
    """The split of each of ``n`` pairs: a seeded random ``valid_fraction`` of them "valid", the rest "train"."""
    rng = np.random.default_rng(seed)
    n_valid = int(round(valid_fraction * n))
    valid_idx = set(rng.permutation(n)[:n_valid].tolist())
    return ["valid" if i in valid_idx else "train" for i in range(n)]


@dataclass
class _Pair:
    """One pair, encoded and written: its JSONL record and what the summary counts."""

    record: dict[str, str]
    n_objects: int
    dropped: int
    codec_iou: float | None


def _read_pair(opts: PairsOptions, name: str) -> tuple[Image, np.ndarray]:
    """(the RGB image, its water mask), checked to be the same size."""
    water = binarise_mask_image(
        Path(opts.masks) / name, opts.mask_threshold, allow_large=opts.allow_large_images
    )
    image_path = Path(opts.images) / name
    with open_image(image_path, "image", allow_large=opts.allow_large_images) as im:
        rgb = im.convert("RGB")
    if rgb.size[::-1] != water.shape:
        raise InputError(
            "pairs_sizes_differ_read",
            path=str(image_path),
            size=_wxh(rgb.size),
            mask_size=_wxh((water.shape[1], water.shape[0])),
        )
    return rgb, water


def _encode_pair(
    opts: PairsOptions, name: str, codec: MaskCodec, water: np.ndarray, rgb: Image, tmp: Path
) -> _Pair:
    from PIL import Image as PILImage

    enc = encode_chip(
        codec, water, label=opts.label, min_pixels=opts.min_object_pixels, max_objects=opts.max_objects
    )
    out_name = chip_name(name)
    with writing(Path(opts.out_dir), f"images/{out_name}"):
        rgb.resize((opts.size, opts.size), PILImage.BICUBIC).save(tmp / "images" / out_name)
    record = {"image": out_name, "prefix": opts.prefix, "suffix": enc.suffix}
    return _Pair(record, len(enc.objects), enc.dropped, enc.codec_iou)


def _keep_pairs(
    pairs: Sequence[_Pair], splits: Sequence[str], opts: PairsOptions, images: Path, summary: ExportSummary
) -> dict[str, list[dict[str, str]]]:
    """The JSONL records of each split after the empty-chip policy; dropped pairs' images deleted."""
    empty = [p.n_objects == 0 for p in pairs]
    keep = apply_empty_policy(empty, splits, opts.empty_policy, opts.empty_cap, opts.seed)
    per_split: dict[str, list[dict[str, str]]] = {"train": [], "valid": []}
    for pair, k, s, e in zip(pairs, keep, splits, empty, strict=False):
        if not k:
            (images / pair.record["image"]).unlink()
            summary.not_written["empty"] = summary.not_written.get("empty", 0) + 1
            continue
        summary.n_objects += pair.n_objects
        summary.max_objects_per_chip = max(summary.max_objects_per_chip, pair.n_objects)
        summary.n_empty_written += int(e)
        per_split[s].append(pair.record)
    ious = [p.codec_iou for p in pairs if p.codec_iou is not None]
    if ious:
        summary.mean_codec_iou = float(np.mean(ious))
        summary.min_codec_iou = float(np.min(ious))
    return per_split


def export_pairs(opts: PairsOptions, progress: Progress | None = None) -> ExportSummary:
    """Image/mask folders -> OUT_DIR/images/*.png (RGB, size x size) + train/valid JSONL.

    Objects are found at the mask's own resolution (as convert.py does), so boxes do not
    depend on the resize; image ``name.jpg`` is written as ``images/name.png``.
    """
    names = _pair_names(opts)
    out_dir = Path(opts.out_dir)
    check_output_dir(out_dir, opts.overwrite)
    _check_headers(names, opts)
    codec = None  # loaded with the first pair that reads (a bad image fails before torch loads)
    tmp = prepare_output_dir(out_dir, opts.overwrite)
    try:
        splits = split_pairs(len(names), opts.valid_fraction, opts.seed)
        pairs: list[_Pair] = []
        for i, name in enumerate(names):
            check_cancelled(progress)
            rgb, water = _read_pair(opts, name)
            if codec is None:
                codec = load_codec(opts.vae, opts.allow_custom_vae)
            pairs.append(_encode_pair(opts, name, codec, water, rgb, tmp))
            if progress is not None:
                progress.report(i + 1, len(names), name)
        summary = ExportSummary(
            out_dir=str(out_dir), n_candidates=len(names), n_objects_dropped=sum(p.dropped for p in pairs)
        )
        per_split = _keep_pairs(pairs, splits, opts, tmp / "images", summary)
        with writing(out_dir, "train.jsonl, valid.jsonl and export.json"):
            summary.n_train = write_jsonl(tmp / "train.jsonl", per_split["train"])
            summary.n_valid = write_jsonl(tmp / "valid.jsonl", per_split["valid"])
            write_export_json(tmp / "export.json", to_data(opts), summary.to_dict())
        finish_output_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary
