"""export-pairs: plain image/mask folders (no georeference) -> chips + JSONL, split image by image.

Image ``name.jpg`` is written as ``images/name.png``: two inputs that would write the same
chip (``dup.jpg`` and ``dup.png``, or names that differ only in case, which collide on
Windows and macOS) are refused with both names before any work, so a chip is never
overwritten and no two JSONL lines point at one image with different labels.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...inputs.files import image_size, open_image, read_text
from ...progress import Progress, check_cancelled
from .options import ExportSummary, _Serialisable
from .outputs import (
    check_output_dir,
    finish_output_dir,
    prepare_output_dir,
    write_export_json,
    write_jsonl,
    writing,
)
from .recipe import LABEL, PREFIX, encode_chip, load_codec
from .split import apply_empty_policy


@dataclass
class PairsOptions(_Serialisable):
    """Options of ``export_pairs`` (non-georeferenced image/mask folders)."""

    images: str
    masks: str
    out_dir: str
    names: str | None = None
    mask_threshold: int = 150
    min_object_pixels: int = 1
    max_objects: int = 0
    vae: str | None = None
    allow_custom_vae: bool = False
    valid_fraction: float = 0.1
    seed: int = 0
    empty_policy: str = "keep"
    empty_cap: float = 0.2
    size: int = 224
    prefix: str = PREFIX
    label: str = LABEL
    overwrite: bool = False
    allow_large_images: bool = False  # over PIL's decompression-bomb limit (89 megapixels)


def binarise_mask_image(path: Path, threshold: int, *, allow_large: bool = False) -> np.ndarray:
    """A JPEG/PNG mask -> bool, as convert.py does: OpenCV's BGR->gray, then ``> threshold``."""
    with open_image(path, "mask image", allow_large=allow_large) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.int64)
    # cv2.cvtColor(COLOR_BGR2GRAY) in fixed point (14 bits), bit-exact with OpenCV.
    gray = (rgb[..., 0] * 4899 + rgb[..., 1] * 9617 + rgb[..., 2] * 1868 + 8192) >> 14
    return gray > threshold


def _pair_names(opts: PairsOptions) -> list[str]:
    images, masks = Path(opts.images), Path(opts.masks)
    for p, what in ((images, "--images"), (masks, "--masks")):
        if not p.is_dir():
            raise InputError(f"{p}: {what} folder not found")
    if opts.names:
        names_file = Path(opts.names)
        if not names_file.is_file():
            raise InputError(f"{names_file}: names file not found")
        names = [ln.strip() for ln in read_text(names_file, "names file").splitlines() if ln.strip()]
    else:
        exts = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}
        names = sorted(p.name for p in images.iterdir() if p.suffix.lower() in exts)
    missing = [n for n in names if not (images / n).is_file() or not (masks / n).is_file()]
    if missing:
        raise InputError(
            f"{len(missing)} listed image(s) lack an image in {images} or a mask in {masks} "
            f"with the same name, e.g. {missing[0]}"
        )
    if not names:
        raise InputError(f"{images}: no images found")
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
                f"{image}: image is {size[0]}x{size[1]} but its mask {mask} is {mask_size[0]}x{mask_size[1]}"
            )


def chip_name(name: str) -> str:
    """The file an image is written as: ``images/<stem>.png``."""
    return Path(name).with_suffix(".png").name


def _check_collisions(names: list[str], opts: PairsOptions) -> None:
    """Refuse two inputs that would write the same chip (compared case-insensitively)."""
    seen: dict[str, str] = {}
    listed: set[str] = set()
    for name in names:
        if name in listed:
            raise InputError(f"{opts.names}: {name} is listed more than once")
        listed.add(name)
        other = seen.setdefault(chip_name(name).casefold(), name)
        if other != name:
            raise InputError(
                f"{Path(opts.images) / other} and {Path(opts.images) / name} would both be written as "
                f"images/{chip_name(other)}; rename one of them or leave one out (--names)"
            )


def export_pairs(opts: PairsOptions, progress: Progress | None = None) -> ExportSummary:
    """Image/mask folders -> OUT_DIR/images/*.png (RGB, size x size) + train/valid JSONL.

    Objects are found at the mask's own resolution (as convert.py does), so boxes do not
    depend on the resize; image ``name.jpg`` is written as ``images/name.png``.
    """
    from PIL import Image

    names = _pair_names(opts)
    if not 0 <= opts.valid_fraction < 1:
        raise InputError(f"valid fraction must be in [0, 1), not {opts.valid_fraction}")
    out_dir = Path(opts.out_dir)
    check_output_dir(out_dir, opts.overwrite)
    _check_headers(names, opts)
    codec = None  # loaded with the first pair that reads (a bad image fails before torch loads)
    tmp = prepare_output_dir(out_dir, opts.overwrite)
    try:
        rng = np.random.default_rng(opts.seed)
        n_valid = int(round(opts.valid_fraction * len(names)))
        valid_idx = set(rng.permutation(len(names))[:n_valid].tolist())
        splits = ["valid" if i in valid_idx else "train" for i in range(len(names))]
        records: list[dict] = []
        empty: list[bool] = []
        ious: list[float] = []
        n_dropped = 0
        for i, name in enumerate(names):
            check_cancelled(progress)
            water = binarise_mask_image(
                Path(opts.masks) / name, opts.mask_threshold, allow_large=opts.allow_large_images
            )
            image_path = Path(opts.images) / name
            with open_image(image_path, "image", allow_large=opts.allow_large_images) as im:
                rgb = im.convert("RGB")
            if rgb.size[::-1] != water.shape:
                raise InputError(
                    f"{image_path}: image is {rgb.size[0]}x{rgb.size[1]} but its mask "
                    f"is {water.shape[1]}x{water.shape[0]}"
                )
            if codec is None:
                codec = load_codec(opts.vae, opts.allow_custom_vae)
            enc = encode_chip(
                codec,
                water,
                label=opts.label,
                min_pixels=opts.min_object_pixels,
                max_objects=opts.max_objects,
            )
            n_dropped += enc.dropped
            if enc.codec_iou is not None:
                ious.append(enc.codec_iou)
            out_name = chip_name(name)
            with writing(out_dir, f"images/{out_name}"):
                rgb.resize((opts.size, opts.size), Image.BICUBIC).save(tmp / "images" / out_name)
            records.append(
                {
                    "image": out_name,
                    "prefix": opts.prefix,
                    "suffix": enc.suffix,
                    "_n": len(enc.objects),
                }
            )
            empty.append(not enc.objects)
            if progress is not None:
                progress.report(i + 1, len(names), name)
        keep = apply_empty_policy(empty, splits, opts.empty_policy, opts.empty_cap, opts.seed)
        summary = ExportSummary(out_dir=str(out_dir), n_candidates=len(names), n_objects_dropped=n_dropped)
        per_split: dict[str, list[dict]] = {"train": [], "valid": []}
        for rec, k, s, e in zip(records, keep, splits, empty, strict=False):
            if not k:
                (tmp / "images" / rec["image"]).unlink()
                summary.not_written["empty"] = summary.not_written.get("empty", 0) + 1
                continue
            n_obj = rec.pop("_n")
            summary.n_objects += n_obj
            summary.max_objects_per_chip = max(summary.max_objects_per_chip, n_obj)
            summary.n_empty_written += int(e)
            per_split[s].append(rec)
        if ious:
            summary.mean_codec_iou = float(np.mean(ious))
            summary.min_codec_iou = float(np.min(ious))
        with writing(out_dir, "train.jsonl, valid.jsonl and export.json"):
            summary.n_train = write_jsonl(tmp / "train.jsonl", per_split["train"])
            summary.n_valid = write_jsonl(tmp / "valid.jsonl", per_split["valid"])
            write_export_json(tmp / "export.json", opts.to_dict(), summary.to_dict())
        finish_output_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary
