"""Training data for fine-tuning: chips + known water -> big_vision/HF PaliGemma JSONL.

Two entry points share one recipe:

- ``export_training_data(ExportOptions)``: a georeferenced raster plus water labels (a vector
  file in any CRS, a mask raster on any grid, or the water index) -> chips cut on the same
  grid the segmenter uses, a spatial-block train/valid split, and ``chips.gpkg`` for review.
- ``export_pairs(PairsOptions)``: plain image/mask folders (e.g. the Kaggle water-bodies
  set), no georeference, split image by image.

The recipe is big_vision's (and anamabo/SegmentWaterWithPaligemma's convert.py): one
object per 8-connected water component; its box is the tight pixel box with exclusive
x2/y2 edges, ``loc = round(v * 1023)``; its mask is the component cropped to the box,
resized to 64x64 (bilinear, antialiased, soft values) and encoded to 16 tokens by the
VQ-VAE. Components come from ``rasterio.features.shapes(connectivity=8)`` (GDAL's
polygonizer, already a dependency; scipy is not one) rasterised back with one value per
polygon: that gives an exact label image in two library calls.

Differences from convert.py, on purpose: objects are kept by pixel count
(``min_object_pixels``) instead of "the simplified contour has >= 8 points"; holes
(islands) stay land instead of being filled; a component nested in another's hole is its
own object; objects are ordered largest first, so a model that stops early loses the
small ones; objects whose box collapses on the 1024 grid (y2 <= y1 or x2 <= x1) are
dropped, since big_vision rejects them. Boxes of the objects both keep are identical.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, OutputExistsError
from .progress import Progress, check_cancelled

PREFIX = "segment water"
LABEL = "water"
EMPTY_POLICIES = ("keep", "drop", "cap")
# What an output folder of ours holds; --overwrite only ever deletes a folder that has one.
_EXPORT_MARKERS = ("train.jsonl", "valid.jsonl", "images", "chips.gpkg", "export.json")


# --------------------------------------------------------------------------- components


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
    from .masks import pixel_box_to_loc

    return pixel_box_to_loc(*(int(v) for v in box), height, width)


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
    objects: list  # tokens.SegObject
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
    codec: Any, water: np.ndarray, *, label: str = LABEL, min_pixels: int = 1, max_objects: int = 0
) -> EncodedChip:
    """Water mask (H, W) -> PaliGemma suffix with one object per component, plus decode-back."""
    from .masks import instance_to_object, paste_masks
    from .tokens import SegObject, format_objects

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


# --------------------------------------------------------------------------- split / policy


def spatial_blocks(windows: Sequence[tuple[int, int, int, int]], block_px: int) -> list[tuple[int, int]]:
    """Block id of each chip (row_off, col_off, height, width): the block holding its centre."""
    block_px = max(int(block_px), 1)
    return [((r + h // 2) // block_px, (c + w // 2) // block_px) for r, c, h, w in windows]


def split_blocks(blocks: Sequence[tuple[int, int]], valid_fraction: float, seed: int) -> list[str]:
    """Assign whole blocks to "valid" (in seeded random order) until the fraction is reached.

    Neighbouring chips share a block and hence a split, so validation measures how the model
    does on ground it has not seen, not on the overlap of its training chips.
    """
    n = len(blocks)
    splits = ["train"] * n
    if n == 0 or valid_fraction <= 0:
        return splits
    unique = sorted(set(blocks))
    if len(unique) < 2:
        return splits
    order = np.random.default_rng(seed).permutation(len(unique))
    members: dict[tuple[int, int], list[int]] = {}
    for i, b in enumerate(blocks):
        members.setdefault(b, []).append(i)
    target = max(1, int(round(valid_fraction * n)))
    taken = 0
    for k in order[:-1]:  # never every block: keep something to train on
        if taken >= target:
            break
        for i in members[unique[k]]:
            splits[i] = "valid"
            taken += 1
    return splits


def exclude_overlaps(windows: Sequence[tuple[int, int, int, int]], splits: list[str]) -> list[str]:
    """Train chips whose pixels overlap a valid chip (chip overlap > 0) become "excluded"."""
    valid = [w for w, s in zip(windows, splits, strict=False) if s == "valid"]
    if not valid:
        return splits
    v = np.array(valid)
    out = list(splits)
    for i, ((r, c, h, w), s) in enumerate(zip(windows, splits, strict=False)):
        if s != "train":
            continue
        hit = (v[:, 0] < r + h) & (r < v[:, 0] + v[:, 2]) & (v[:, 1] < c + w) & (c < v[:, 1] + v[:, 3])
        if hit.any():
            out[i] = "excluded"
    return out


def apply_empty_policy(
    empty: Sequence[bool], splits: Sequence[str], policy: str, cap: float, seed: int
) -> list[bool]:
    """Which chips to write, given which have no water.

    keep: all; drop: none of the empty ones; cap: empty chips make at most ``cap`` of each
    split's written chips (a seeded random choice), so the model still learns to answer
    "no water" without that answer dominating.
    """
    if policy not in EMPTY_POLICIES:
        raise InputError(f"empty policy must be one of {', '.join(EMPTY_POLICIES)}, not {policy!r}")
    keep = [True] * len(empty)
    if policy == "keep":
        return keep
    rng = np.random.default_rng(seed + 1)
    for split in sorted(set(splits)):
        idx_empty = [i for i, (e, s) in enumerate(zip(empty, splits, strict=False)) if e and s == split]
        n_full = sum(1 for e, s in zip(empty, splits, strict=False) if not e and s == split)
        if policy == "drop":
            allowed = 0
        else:
            cap = min(max(cap, 0.0), 0.999)
            allowed = int(np.floor(cap * n_full / (1.0 - cap) + 1e-9))
        if len(idx_empty) > allowed:
            chosen = set(rng.choice(idx_empty, size=allowed, replace=False).tolist()) if allowed else set()
            for i in idx_empty:
                keep[i] = i in chosen
    return keep


# --------------------------------------------------------------------------- output folder


def prepare_output_dir(out_dir: Path, overwrite: bool) -> Path:
    """A fresh temp folder beside ``out_dir``; refuses an existing non-empty folder unless asked."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise OutputExistsError(f"{out_dir} exists and is not a folder")
        contents = list(out_dir.iterdir())
        if contents and not overwrite:
            raise OutputExistsError(f"{out_dir} exists and is not empty (use --overwrite to replace it)")
        if contents and not any((out_dir / m).exists() for m in _EXPORT_MARKERS):
            raise OutputExistsError(
                f"{out_dir} is not empty and does not look like an export folder; refusing to replace it"
            )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    (tmp / "images").mkdir()
    return tmp


def finish_output_dir(tmp: Path, out_dir: Path) -> None:
    """Move the finished temp folder into place (the old export, if any, goes only now)."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


# --------------------------------------------------------------------------- options / summary


class _Serialisable:
    """from_dict/to_dict for the worker protocol (JSON in, JSON out)."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)  # type: ignore[call-overload]
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise InputError(f"unknown {cls.__name__} option(s): {', '.join(sorted(unknown))}")
        kwargs = dict(data)
        for k in ("bands",):
            if kwargs.get(k) is not None:
                kwargs[k] = list(kwargs[k])
        return cls(**kwargs)


@dataclass
class ExportSummary(_Serialisable):
    """What an export wrote; ``mean_codec_iou`` is decoded tokens vs exported masks."""

    out_dir: str
    n_candidates: int = 0
    n_train: int = 0
    n_valid: int = 0
    n_empty_written: int = 0
    n_objects: int = 0
    n_objects_dropped: int = 0
    max_objects_per_chip: int = 0
    mean_codec_iou: float | None = None
    min_codec_iou: float | None = None
    not_written: dict[str, int] = field(default_factory=dict)
    n_misaligned: int = 0
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        iou = "n/a" if self.mean_codec_iou is None else f"{self.mean_codec_iou:.3f}"
        out = [
            f"wrote {self.n_train} train + {self.n_valid} valid chips to {self.out_dir} "
            f"({self.n_empty_written} without water) from {self.n_candidates} candidates",
            f"objects: {self.n_objects} written (at most {self.max_objects_per_chip} in one chip), "
            f"{self.n_objects_dropped} dropped (too small, collapsed on the 1024 grid, or over --max-objects)",
            f"codec round trip: mean IoU {iou} of decoded tokens vs exported masks"
            + ("" if self.min_codec_iou is None else f" (worst chip {self.min_codec_iou:.3f})"),
        ]
        if self.not_written:
            out.append("not written: " + ", ".join(f"{k} {v}" for k, v in sorted(self.not_written.items())))
        if self.n_misaligned:
            out.append(f"{self.n_misaligned} chips flagged misaligned (see chips.gpkg, layer chips)")
        out += [f"warning: {w}" for w in self.warnings]
        return out


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


def _load_codec(vae: str | None, allow_custom_vae: bool) -> Any:
    from .codec import MaskCodec
    from .weights import find_vae

    return MaskCodec.from_npz(find_vae(vae), allow_custom_vae=allow_custom_vae)


def binarise_mask_image(path: Path, threshold: int) -> np.ndarray:
    """A JPEG/PNG mask -> bool, as convert.py does: OpenCV's BGR->gray, then ``> threshold``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.int64)
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"{path}: cannot read mask image ({exc})") from None
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
        names = [ln.strip() for ln in names_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
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
    return names


def export_pairs(opts: PairsOptions, progress: Progress | None = None) -> ExportSummary:
    """Image/mask folders -> OUT_DIR/images/*.png (RGB, size x size) + train/valid JSONL.

    Objects are found at the mask's own resolution (as convert.py does), so boxes do not
    depend on the resize; image ``name.jpg`` is written as ``images/name.png``.
    """
    from PIL import Image

    names = _pair_names(opts)
    if not 0 <= opts.valid_fraction < 1:
        raise InputError(f"valid fraction must be in [0, 1), not {opts.valid_fraction}")
    codec = _load_codec(opts.vae, opts.allow_custom_vae)
    out_dir = Path(opts.out_dir)
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
            water = binarise_mask_image(Path(opts.masks) / name, opts.mask_threshold)
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
            out_name = Path(name).with_suffix(".png").name
            try:
                with Image.open(Path(opts.images) / name) as im:
                    rgb = im.convert("RGB")
                    if rgb.size[::-1] != water.shape:
                        raise InputError(
                            f"{Path(opts.images) / name}: image is {rgb.size[0]}x{rgb.size[1]} but its mask "
                            f"is {water.shape[1]}x{water.shape[0]}"
                        )
                    rgb.resize((opts.size, opts.size), Image.BICUBIC).save(tmp / "images" / out_name)
            except OSError as exc:
                raise InputError(f"{Path(opts.images) / name}: cannot read image ({exc})") from None
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
        summary.n_train = write_jsonl(tmp / "train.jsonl", per_split["train"])
        summary.n_valid = write_jsonl(tmp / "valid.jsonl", per_split["valid"])
        if ious:
            summary.mean_codec_iou = float(np.mean(ious))
            summary.min_codec_iou = float(np.min(ious))
        (tmp / "export.json").write_text(
            json.dumps({"options": opts.to_dict(), "summary": summary.to_dict()}, indent=2), encoding="utf-8"
        )
        finish_output_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


# --------------------------------------------------------------------------- georeferenced export

WATER_INDEX = "water-index"


@dataclass
class ExportOptions(_Serialisable):
    """Options of ``export_training_data`` (JSON-serialisable for the QGIS worker).

    labels: a vector file of water polygons (any CRS), a mask raster (any grid; water where
    value > ``mask_threshold``, nodata = unlabelled) or ``"water-index"``.
    block_size: chips per side of a spatial block; blocks, not chips, go to train or valid.
    empty_policy: what to do with chips without water: "keep" all, "drop" all, or "cap"
    them at ``empty_cap`` of each split's chips (seeded choice).
    max_nodata_fraction: chips with more nodata than this are not written.
    """

    raster: str
    out_dir: str
    labels: str
    label_layer: str | None = None
    label_where: str | None = None
    bands: list[int] | None = None
    preset: str | None = None
    resolution: float | None = None
    green: int | None = None
    nir: int | None = None
    swir: int | None = None
    size: int = 224
    overlap: int = 0
    min_object_pixels: int = 16
    max_objects: int = 0
    mask_threshold: float = 0.0
    vae: str | None = None
    allow_custom_vae: bool = False
    valid_fraction: float = 0.2
    block_size: int = 4
    seed: int = 0
    empty_policy: str = "cap"
    empty_cap: float = 0.2
    max_nodata_fraction: float = 0.5
    prefix: str = PREFIX
    label: str = LABEL
    overwrite: bool = False


@dataclass
class ChipLabel:
    """Known water for one chip window, on the chip's pixels."""

    water: np.ndarray  # bool (h, w)
    labelled: np.ndarray  # bool (h, w): the label source says something here


class _VectorLabels:
    """Water polygons in any CRS, reprojected once to the raster CRS, rasterised per chip."""

    kind = "vector"

    def __init__(self, path: str, layer: str | None, where: str | None, src: Any) -> None:
        import pyogrio
        import shapely

        try:
            gdf = pyogrio.read_dataframe(path, layer=layer, where=where)
        except Exception as exc:  # pyogrio raises several error types
            raise InputError(f"{path}: cannot read water labels as vectors ({exc})") from None
        if gdf.crs is None:
            raise InputError(f"{path}: label vectors have no CRS")
        gdf = gdf[gdf.geometry.notna()]
        polys = gdf[gdf.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
        if polys.empty:
            kinds = ", ".join(sorted(set(gdf.geometry.geom_type))) or "no features"
            raise InputError(f"{path}: label layer holds no polygons ({kinds}); water labels must be areas")
        polys = polys.to_crs(src.crs)
        geoms = shapely.make_valid(polys.geometry.values)
        self.geoms = np.asarray(geoms)
        self.tree = shapely.STRtree(self.geoms)
        self.path = path
        self.label_bounds = tuple(shapely.total_bounds(self.geoms))
        self.n_features = len(polys)
        self.n_skipped = len(gdf) - len(polys)

    def chip(self, window: Any, transform: Any, shape: tuple[int, int]) -> ChipLabel:
        from rasterio import features
        from shapely.geometry import box

        h, w = shape
        c0, r0 = transform * (0, 0)
        c1, r1 = transform * (w, h)
        hits = self.tree.query(box(min(c0, c1), min(r0, r1), max(c0, c1), max(r0, r1)))
        if len(hits):
            water = features.rasterize(
                [(g, 1) for g in self.geoms[hits]], out_shape=shape, transform=transform, dtype="uint8"
            ).astype(bool)
        else:
            water = np.zeros(shape, bool)
        # A vector of water says "land" everywhere else: every pixel is labelled.
        return ChipLabel(water=water, labelled=np.ones(shape, bool))

    def close(self) -> None:
        pass


class _MaskLabels:
    """A mask raster warped (mode resampling) onto the raster grid; read window by window."""

    kind = "mask"

    def __init__(self, path: str, threshold: float, src: Any) -> None:
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT

        try:
            self._ds = rasterio.open(path)
        except rasterio.errors.RasterioIOError as exc:
            raise InputError(f"{path}: cannot open label mask as a raster ({exc})") from None
        if self._ds.crs is None:
            self._ds.close()
            raise InputError(f"{path}: label mask has no CRS")
        kwargs: dict[str, Any] = dict(
            crs=src.crs,
            transform=src.transform,
            width=src.width,
            height=src.height,
            resampling=Resampling.mode,
        )
        self._alpha = False
        if self._ds.nodata is not None:
            kwargs.update(src_nodata=self._ds.nodata, nodata=self._ds.nodata)
        else:
            kwargs["add_alpha"] = True
            self._alpha = True
        self._vrt = WarpedVRT(self._ds, **kwargs)
        self.threshold = threshold
        self.path = path
        from rasterio.warp import transform_bounds

        self.label_bounds = tuple(transform_bounds(self._ds.crs, src.crs, *self._ds.bounds))

    def chip(self, window: Any, transform: Any, shape: tuple[int, int]) -> ChipLabel:
        if self._alpha:
            data = self._vrt.read([1, self._vrt.count], window=window)
            values, labelled = data[0], data[1] > 0
        else:
            values = self._vrt.read(1, window=window)
            labelled = self._vrt.read_masks(1, window=window) > 0
        values = values.astype(np.float64)
        labelled &= np.isfinite(values)
        return ChipLabel(water=(values > self.threshold) & labelled, labelled=labelled)

    def close(self) -> None:
        self._vrt.close()
        self._ds.close()


class _IndexLabels:
    """The water-index segmenter's mask as the label (a quick start, not ground truth)."""

    kind = "water-index"

    def __init__(self, src: Any) -> None:
        from .engine.base import ChipBatch
        from .engine.water_index import WaterIndexSegmenter

        roles = src.band_roles
        self.seg = WaterIndexSegmenter(green=roles.get("green"), nir=roles.get("nir"), swir=roles.get("swir"))
        self.bands = list(self.seg.bands_needed(src.raster_bands))
        # One scene-wide threshold (Otsu on a decimated read), as the segment command does.
        raw, valid = src.read_overview(self.bands)
        rgb = np.zeros((*valid.shape, 3), np.uint8)
        self.seg.prepare(ChipBatch(raw=raw[None], rgb=rgb[None], valid=valid[None], ids=[-1]))
        self.label_bounds = tuple(src.bounds)
        self.path = WATER_INDEX

    def segment(self, raw: np.ndarray, rgb: np.ndarray, valid: np.ndarray) -> ChipLabel:
        from .engine.base import ChipBatch

        res = self.seg.segment(ChipBatch(raw=raw[None], rgb=rgb[None], valid=valid[None], ids=[0]))[0]
        return ChipLabel(water=np.asarray(res.water, bool) & valid, labelled=valid.copy())

    def close(self) -> None:
        pass


def _open_labels(opts: ExportOptions, src: Any) -> Any:
    if opts.labels == WATER_INDEX:
        return _IndexLabels(src)
    path = Path(opts.labels)
    if not path.exists() and "://" not in opts.labels and not opts.labels.startswith("/vsi"):
        raise InputError(
            f"{opts.labels}: label file not found (give a vector file, a mask raster or 'water-index')"
        )
    import rasterio

    is_raster = False
    if path.suffix.lower() not in {".gpkg", ".geojson", ".json", ".shp", ".fgb", ".kml", ".gml", ".sqlite"}:
        try:
            with rasterio.open(path) as ds:
                is_raster = ds.count >= 1 and ds.width > 0
        except rasterio.errors.RasterioIOError:
            is_raster = False
    if is_raster:
        return _MaskLabels(str(path), opts.mask_threshold, src)
    return _VectorLabels(str(path), opts.label_layer, opts.label_where, src)


def _bounds_overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Share of box ``a`` (xmin, ymin, xmax, ymax) that lies inside box ``b``."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = max((a[2] - a[0]) * (a[3] - a[1]), 1e-30)
    return ix * iy / area


def _chip_polygons(mask: np.ndarray, transform: Any) -> list:
    from rasterio import features
    from shapely.geometry import shape

    if not mask.any():
        return []
    m = mask.astype(np.uint8)
    return [shape(g) for g, _ in features.shapes(m, mask=mask, connectivity=8, transform=transform)]


def export_training_data(options: ExportOptions, progress: Progress | None = None) -> ExportSummary:
    """Raster + known water -> chips (PNG), train/valid JSONL, chips.gpkg (chips + review).

    Chips come from the segmenter's grid (``grid.chip_windows``); labels are reprojected onto
    each chip, and water under nodata is removed (nodata never becomes water). Chips with more
    nodata than ``max_nodata_fraction`` are listed in ``chips`` but not written.
    """
    import geopandas as gpd

    from .grid import chip_windows, window_footprint
    from .raster import open_raster
    from .vectorize import write_geopackage

    opts = options
    if opts.empty_policy not in EMPTY_POLICIES:
        raise InputError(
            f"empty policy must be one of {', '.join(EMPTY_POLICIES)}, not {opts.empty_policy!r}"
        )
    if not 0 <= opts.valid_fraction < 1:
        raise InputError(f"valid fraction must be in [0, 1), not {opts.valid_fraction}")
    if opts.block_size < 1:
        raise InputError(f"block size must be at least 1 chip, not {opts.block_size}")
    out_dir = Path(opts.out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not opts.overwrite:
        raise OutputExistsError(f"{out_dir} exists and is not empty (use --overwrite to replace it)")
    codec = _load_codec(opts.vae, opts.allow_custom_vae)
    summary = ExportSummary(out_dir=str(out_dir))
    with open_raster(
        opts.raster,
        bands=opts.bands,
        preset=opts.preset,
        resolution=opts.resolution,
        green=opts.green,
        nir=opts.nir,
        swir=opts.swir,
    ) as src:
        labels = _open_labels(opts, src)
        try:
            overlap = _bounds_overlap(labels.label_bounds, tuple(src.bounds))
            if overlap == 0:
                raise InputError(
                    f"{opts.labels}: labels do not overlap the raster {opts.raster} "
                    "(after reprojection to the raster's CRS)"
                )
            if overlap < 0.99 and labels.kind != "vector":
                summary.warnings.append(
                    f"{100 * (1 - overlap):.0f}% of the label extent lies outside the raster extent"
                )
            if getattr(labels, "n_skipped", 0):
                summary.warnings.append(f"{labels.n_skipped} non-polygon label features ignored")
            try:
                chips = chip_windows(src.width, src.height, opts.size, opts.overlap)
            except ValueError as exc:
                raise InputError(f"{opts.raster}: {exc}") from None
            summary.n_candidates = len(chips)
            tmp = prepare_output_dir(out_dir, opts.overwrite)
            try:
                rows, review, records = _export_chips(opts, src, labels, chips, codec, tmp, summary, progress)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            labels.close()
        try:
            # Split the usable chips (after nodata/unlabelled checks) by spatial blocks.
            usable = [i for i, r in enumerate(rows) if r["split"] == ""]
            wins = [
                (
                    rows[i]["row_off"],
                    rows[i]["col_off"],
                    int(chips[i].window.height),
                    int(chips[i].window.width),
                )
                for i in usable
            ]
            splits = split_blocks(
                spatial_blocks(wins, opts.block_size * opts.size), opts.valid_fraction, opts.seed
            )
            if opts.overlap > 0:
                splits = exclude_overlaps(wins, splits)
            for i, split in zip(usable, splits, strict=True):
                rows[i]["split"] = split
                if split == "excluded":
                    rows[i]["reason"] = "overlaps a valid chip"
            if opts.valid_fraction > 0 and usable and "valid" not in splits:
                summary.warnings.append(
                    "the usable chips lie in a single spatial block: no validation chips (lower --block-size)"
                )
            split_of = {r["name"]: r["split"] for r in rows}
            for r in review:
                r["split"] = split_of[r["name"]]
            empty = [r["n_objects"] == 0 for r in rows]
            candidates = [r["split"] in ("train", "valid") for r in rows]
            keep = apply_empty_policy(
                [e and c for e, c in zip(empty, candidates, strict=False)],
                [r["split"] for r in rows],
                opts.empty_policy,
                opts.empty_cap,
                opts.seed,
            )
            per_split: dict[str, list[dict]] = {"train": [], "valid": []}
            ious = []
            reasons: Counter[str] = Counter()
            for row, rec, k in zip(rows, records, keep, strict=False):
                if row["split"] not in per_split:
                    reasons[row["reason"] or row["split"]] += 1
                    continue
                if not k:
                    (tmp / "images" / rec["image"]).unlink()
                    row["reason"] = f"empty ({opts.empty_policy})"
                    row["written"] = False
                    reasons["empty"] += 1
                    continue
                row["written"] = True
                per_split[row["split"]].append(rec)
                summary.n_objects += row["n_objects"]
                summary.max_objects_per_chip = max(summary.max_objects_per_chip, row["n_objects"])
                summary.n_empty_written += int(row["n_objects"] == 0)
                if row["codec_iou"] is not None and not np.isnan(row["codec_iou"]):
                    ious.append(row["codec_iou"])
            summary.not_written = dict(reasons)
            summary.n_train = write_jsonl(tmp / "train.jsonl", per_split["train"])
            summary.n_valid = write_jsonl(tmp / "valid.jsonl", per_split["valid"])
            summary.n_misaligned = sum(bool(r["misaligned"]) for r in rows)
            if ious:
                summary.mean_codec_iou = float(np.mean(ious))
                summary.min_codec_iou = float(np.min(ious))
            crs = src.crs
            written = {r["name"] for r in rows if r.get("written")}
            chips_gdf = gpd.GeoDataFrame(
                rows, geometry=[window_footprint(c.window, src.transform) for c in chips], crs=crs
            )
            review = [r for r in review if r["name"] in written]
            review_gdf = gpd.GeoDataFrame(
                [{k: v for k, v in r.items() if k != "geometry"} for r in review],
                geometry=[r["geometry"] for r in review],
                crs=crs,
            )
            if review_gdf.empty:
                review_gdf = gpd.GeoDataFrame(
                    {"name": [], "split": [], "object": [], "codec_iou": []}, geometry=[], crs=crs
                )
            write_geopackage(tmp / "chips.gpkg", {"chips": chips_gdf, "review": review_gdf})
            (tmp / "export.json").write_text(
                json.dumps({"options": opts.to_dict(), "summary": summary.to_dict()}, indent=2),
                encoding="utf-8",
            )
            finish_output_dir(tmp, out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return summary


def _export_chips(
    opts: ExportOptions,
    src: Any,
    labels: Any,
    chips: Sequence[Any],
    codec: Any,
    tmp: Path,
    summary: ExportSummary,
    progress: Progress | None,
) -> tuple[list[dict], list[dict], list[dict]]:
    """Read, label, encode and write every candidate chip; returns (chip rows, review rows, JSONL)."""
    from PIL import Image
    from rasterio.windows import transform as window_transform

    stem = Path(opts.raster).stem
    raw_bands = labels.bands if labels.kind == "water-index" else []
    rows: list[dict] = []
    review: list[dict] = []
    records: list[dict] = []
    for i, chip in enumerate(chips):
        check_cancelled(progress)
        raw, rgb, valid = src.read_chip(chip.window, raw_bands)
        shape = valid.shape
        tf = window_transform(chip.window, src.transform)
        if labels.kind == "water-index":
            lab = labels.segment(raw, rgb, valid)
        else:
            lab = labels.chip(chip.window, tf, shape)
        n_pix = valid.size
        nodata_fraction = float(1 - valid.mean())
        water_in_nodata = int((lab.water & ~valid).sum())
        unlabelled = float(1 - (lab.labelled | ~valid).mean())
        water = lab.water & valid & lab.labelled
        n_valid_pix = int(valid.sum())
        water_fraction = float(water.sum() / n_valid_pix) if n_valid_pix else 0.0
        name = f"{stem}_r{chip.row_off:06d}_c{chip.col_off:06d}.png"
        row = {
            "name": name,
            "chip_id": int(chip.id),
            "row_off": chip.row_off,
            "col_off": chip.col_off,
            "split": "",  # set by the spatial split; "skipped" when not usable
            "written": False,
            "reason": "",
            "n_objects": 0,
            "n_dropped_small": 0,
            "nodata_fraction": round(nodata_fraction, 4),
            "water_fraction": round(water_fraction, 4),
            "all_water": bool(n_valid_pix and water_fraction >= 0.999),
            "labels_in_nodata": round(water_in_nodata / n_pix, 4),
            "unlabelled_fraction": round(unlabelled, 4),
            "misaligned": bool(water_in_nodata > 0.01 * n_pix or unlabelled > 0.01),
            "codec_iou": None,
        }
        rows.append(row)
        if nodata_fraction > opts.max_nodata_fraction:
            row["split"], row["reason"] = "skipped", "nodata"
        elif unlabelled > 0.5:
            row["split"], row["reason"] = "skipped", "unlabelled"
        else:
            enc = encode_chip(
                codec,
                water,
                label=opts.label,
                min_pixels=opts.min_object_pixels,
                max_objects=opts.max_objects,
            )
            row["n_objects"] = len(enc.objects)
            row["n_dropped_small"] = enc.dropped
            summary.n_objects_dropped += enc.dropped
            if enc.decoded is not None:
                row["codec_iou"] = round(enc.codec_iou, 4)
                for k, poly in enumerate(_chip_polygons(enc.decoded & valid, tf)):
                    review.append(
                        {
                            "name": name,
                            "split": "",
                            "object": k,
                            "codec_iou": row["codec_iou"],
                            "geometry": poly,
                        }
                    )
            Image.fromarray(rgb).save(tmp / "images" / name)
            records.append({"image": name, "prefix": opts.prefix, "suffix": enc.suffix})
        if row["split"] == "skipped":
            records.append({"image": name})  # placeholder, never written
        if progress is not None:
            progress.report(i + 1, len(chips), name)
    return rows, review, records
