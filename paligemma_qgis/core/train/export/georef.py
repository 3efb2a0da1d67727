"""export: a georeferenced raster + known water -> chips on the segmenter grid, JSONL, chips.gpkg.

The export in stages, each testable on its own with in-memory values:

1. ``check_label_extent``: the labels overlap the raster (warnings for the summary);
2. ``export_chips``: each chip read, labelled (``score_chip``: nodata, unlabelled and water
   shares, the misalignment flag) and, when usable, encoded and its image written;
3. ``assign_splits``: usable chips split by spatial blocks into train / valid (``excluded``
   where a train chip overlaps a valid one);
4. ``keep_chips``: the empty-chip policy applied, the JSONL records of each split gathered;
5. ``write_review`` and the JSONL / export.json files, then the folder moved into place.
"""

from __future__ import annotations

import functools
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from ...errors import InputError
from ...progress import Progress, check_cancelled
from ...serial import to_data
from ..options import ExportOptions
from .labels import ChipLabel, LabelSource, open_labels
from .outputs import (
    check_output_dir,
    finish_output_dir,
    prepare_output_dir,
    write_export_json,
    write_jsonl,
    writing,
)
from .recipe import encode_chip, load_codec
from .split import apply_empty_policy, exclude_overlaps, spatial_blocks, split_blocks
from .summary import ExportSummary

if TYPE_CHECKING:
    from affine import Affine
    from shapely.geometry.base import BaseGeometry

    from ...inputs.grid import Chip
    from ...inputs.raster import RasterSource
    from ...model.codec import MaskCodec


class ChipRow(TypedDict):
    """One candidate chip: a row of the ``chips`` layer of chips.gpkg."""

    name: str
    chip_id: int
    row_off: int
    col_off: int
    split: str  # "" until split; train, valid, excluded or skipped
    written: bool
    reason: str
    n_objects: int
    n_dropped_small: int
    nodata_fraction: float
    water_fraction: float
    all_water: bool
    labels_in_nodata: float
    unlabelled_fraction: float
    misaligned: bool
    codec_iou: float | None


class ReviewRow(TypedDict):
    """One written object decoded back from its tokens: a row of the ``review`` layer."""

    name: str
    split: str
    object: int
    codec_iou: float | None
    geometry: BaseGeometry


Record = dict[str, str]  # one JSONL line: image, prefix, suffix


def _bounds_overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Share of box ``a`` (xmin, ymin, xmax, ymax) that lies inside box ``b``."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = max((a[2] - a[0]) * (a[3] - a[1]), 1e-30)
    return ix * iy / area


def _chip_polygons(mask: np.ndarray, transform: Affine) -> list[BaseGeometry]:
    from rasterio import features
    from shapely.geometry import shape

    if not mask.any():
        return []
    m = mask.astype(np.uint8)
    return [shape(g) for g, _ in features.shapes(m, mask=mask, connectivity=8, transform=transform)]


def check_label_extent(
    opts: ExportOptions, labels: LabelSource, raster_bounds: Sequence[float], summary: ExportSummary
) -> None:
    """Labels that miss the raster are an error; a mask or index partly outside it, a warning."""
    overlap = _bounds_overlap(labels.label_bounds, tuple(raster_bounds))
    if overlap == 0:
        raise InputError("export_labels_elsewhere", field="labels", path=opts.labels, raster=opts.raster)
    if overlap < 0.99 and labels.kind != "vector":
        summary.warnings.append(
            f"{100 * (1 - overlap):.0f}% of the label extent lies outside the raster extent"
        )
    if labels.n_skipped:
        summary.warnings.append(f"{labels.n_skipped} non-polygon label features ignored")
    summary.n_labels_repaired = labels.n_repaired


def score_chip(
    name: str, chip: Chip, lab: ChipLabel, valid: np.ndarray, max_nodata_fraction: float
) -> tuple[ChipRow, np.ndarray]:
    """(the chip's row, its water to export): nodata, unlabelled and water shares, misalignment.

    Water under nodata is removed (nodata never becomes water); ``split`` is "" for a usable
    chip, "skipped" (with the ``reason``) for one with more nodata than ``max_nodata_fraction``
    or more than half unlabelled.
    """
    n_pix = valid.size
    nodata_fraction = float(1 - valid.mean())
    water_in_nodata = int((lab.water & ~valid).sum())
    unlabelled = float(1 - (lab.labelled | ~valid).mean())
    water = lab.water & valid & lab.labelled
    n_valid_pix = int(valid.sum())
    water_fraction = float(water.sum() / n_valid_pix) if n_valid_pix else 0.0
    row: ChipRow = {
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
    if nodata_fraction > max_nodata_fraction:
        row["split"], row["reason"] = "skipped", "nodata"
    elif unlabelled > 0.5:
        row["split"], row["reason"] = "skipped", "unlabelled"
    return row, water


def export_chips(
    opts: ExportOptions,
    src: RasterSource,
    labels: LabelSource,
    chips: Sequence[Chip],
    codec: Callable[[], MaskCodec],
    tmp: Path,
    summary: ExportSummary,
    progress: Progress | None,
) -> tuple[list[ChipRow], list[ReviewRow], list[Record]]:
    """Read, label, encode and write every candidate chip; returns (chip rows, review rows, JSONL)."""
    from PIL import Image
    from rasterio.windows import transform as window_transform

    stem = _stem(opts.raster)
    rows: list[ChipRow] = []
    review: list[ReviewRow] = []
    records: list[Record] = []
    for i, chip in enumerate(chips):
        check_cancelled(progress)
        raw, rgb, valid = src.read_chip(chip.window, labels.raw_bands)
        tf = window_transform(chip.window, src.transform)
        name = f"{stem}_r{chip.row_off:06d}_c{chip.col_off:06d}.png"
        lab = labels.label(chip.window, tf, raw, rgb, valid)
        row, water = score_chip(name, chip, lab, valid, opts.max_nodata_fraction)
        rows.append(row)
        if row["split"] == "skipped":
            records.append({"image": name})  # placeholder, never written
        else:
            enc = encode_chip(
                codec(),
                water,
                label=opts.label,
                min_pixels=opts.min_object_pixels,
                max_objects=opts.max_objects,
            )
            row["n_objects"] = len(enc.objects)
            row["n_dropped_small"] = enc.dropped
            summary.n_objects_dropped += enc.dropped
            if enc.decoded is not None:
                row["codec_iou"] = round(float(enc.codec_iou or 0.0), 4)
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
            with writing(Path(opts.out_dir), f"images/{name}"):
                Image.fromarray(rgb).save(tmp / "images" / name)
            records.append({"image": name, "prefix": opts.prefix, "suffix": enc.suffix})
        if progress is not None:
            progress.report(i + 1, len(chips), name)
    return rows, review, records


def assign_splits(
    rows: list[ChipRow], sizes: Sequence[tuple[int, int]], opts: ExportOptions, summary: ExportSummary
) -> None:
    """Usable chips (``split`` "") to train / valid / excluded by spatial blocks, in place.

    ``sizes``: each chip's window (height, width). A train chip whose pixels overlap a valid
    chip is excluded (also with overlap 0: the snapped last row/column overlaps its neighbour).
    """
    usable = [i for i, r in enumerate(rows) if r["split"] == ""]
    wins = [(rows[i]["row_off"], rows[i]["col_off"], *sizes[i]) for i in usable]
    splits = split_blocks(spatial_blocks(wins, opts.block_size * opts.size), opts.valid_fraction, opts.seed)
    splits = exclude_overlaps(wins, splits)
    for i, split in zip(usable, splits, strict=True):
        rows[i]["split"] = split
        if split == "excluded":
            rows[i]["reason"] = "overlaps a valid chip"
    if opts.valid_fraction > 0 and usable and "valid" not in splits:
        summary.warnings.append(
            "the usable chips lie in a single spatial block: no validation chips (lower the block size)"
        )


def keep_chips(
    rows: list[ChipRow], records: Sequence[Record], opts: ExportOptions, images: Path, summary: ExportSummary
) -> dict[str, list[Record]]:
    """The JSONL records of each split after the empty-chip policy; dropped chips' images deleted.

    Marks each row ``written`` (or why not) and counts objects, empty chips and codec IoU into
    ``summary``.
    """
    empty = [r["n_objects"] == 0 for r in rows]
    candidates = [r["split"] in ("train", "valid") for r in rows]
    keep = apply_empty_policy(
        [e and c for e, c in zip(empty, candidates, strict=False)],
        [r["split"] for r in rows],
        opts.empty_policy,
        opts.empty_cap,
        opts.seed,
    )
    per_split: dict[str, list[Record]] = {"train": [], "valid": []}
    ious: list[float] = []
    reasons: Counter[str] = Counter()
    for row, rec, k in zip(rows, records, keep, strict=False):
        if row["split"] not in per_split:
            reasons[row["reason"] or row["split"]] += 1
            continue
        if not k:
            (images / rec["image"]).unlink()
            row["reason"] = f"empty ({opts.empty_policy})"
            row["written"] = False
            reasons["empty"] += 1
            continue
        n_objects = row["n_objects"]
        row["written"] = True
        per_split[row["split"]].append(rec)
        summary.n_objects += n_objects
        summary.max_objects_per_chip = max(summary.max_objects_per_chip, n_objects)
        summary.n_empty_written += int(n_objects == 0)
        iou = row["codec_iou"]
        if iou is not None and not np.isnan(iou):
            ious.append(iou)
    summary.not_written = dict(reasons)
    if ious:
        summary.mean_codec_iou = float(np.mean(ious))
        summary.min_codec_iou = float(np.min(ious))
    return per_split


def write_review(
    path: Path, rows: Sequence[ChipRow], review: Sequence[ReviewRow], chips: Sequence[Chip], src: RasterSource
) -> None:
    """chips.gpkg: every candidate chip (layer ``chips``) and the written tokens decoded back (``review``)."""
    import geopandas as gpd

    from ...geometry.vectorize import write_geopackage
    from ...inputs.grid import window_footprint

    crs = src.crs
    split_of = {r["name"]: r["split"] for r in rows}
    written = {r["name"] for r in rows if r["written"]}
    chips_gdf = gpd.GeoDataFrame(
        rows, geometry=[window_footprint(c.window, src.transform) for c in chips], crs=crs
    )
    kept = [{**r, "split": split_of[r["name"]]} for r in review if r["name"] in written]
    review_gdf = gpd.GeoDataFrame(
        [{k: v for k, v in r.items() if k != "geometry"} for r in kept],
        geometry=[r["geometry"] for r in kept],
        crs=crs,
    )
    if review_gdf.empty:
        review_gdf = gpd.GeoDataFrame(
            {"name": [], "split": [], "object": [], "codec_iou": []}, geometry=[], crs=crs
        )
    write_geopackage(path, {"chips": chips_gdf, "review": review_gdf})


def _finish(
    opts: ExportOptions,
    src: RasterSource,
    chips: Sequence[Chip],
    found: tuple[list[ChipRow], list[ReviewRow], list[Record]],
    tmp: Path,
    summary: ExportSummary,
) -> None:
    """Split, apply the empty-chip policy and write the JSONL, chips.gpkg and export.json into ``tmp``."""
    rows, review, records = found
    out_dir = Path(opts.out_dir)
    sizes = [(int(c.window.height), int(c.window.width)) for c in chips]
    assign_splits(rows, sizes, opts, summary)
    per_split = keep_chips(rows, records, opts, tmp / "images", summary)
    summary.n_read_errors = src.read_errors
    with writing(out_dir, "train.jsonl and valid.jsonl"):
        summary.n_train = write_jsonl(tmp / "train.jsonl", per_split["train"])
        summary.n_valid = write_jsonl(tmp / "valid.jsonl", per_split["valid"])
    summary.n_misaligned = sum(bool(r["misaligned"]) for r in rows)
    write_review(tmp / "chips.gpkg", rows, review, chips, src)
    with writing(out_dir, "export.json"):
        write_export_json(tmp / "export.json", to_data(opts), summary.to_dict())


def export_training_data(options: ExportOptions, progress: Progress | None = None) -> ExportSummary:
    """Raster + known water -> chips (PNG), train/valid JSONL, chips.gpkg (chips + review).

    Chips come from the segmenter's grid (``grid.chip_windows``); labels are reprojected onto
    each chip, and water under nodata is removed (nodata never becomes water). Chips with more
    nodata than ``max_nodata_fraction`` are listed in ``chips`` but not written.
    """
    from ...inputs.grid import chip_windows
    from ...inputs.raster import open_raster

    opts = options
    out_dir = Path(opts.out_dir)
    check_output_dir(out_dir, opts.overwrite)  # before the work, not after it
    summary = ExportSummary(out_dir=str(out_dir))
    with open_raster(
        opts.raster,
        bands=opts.bands,
        preset=opts.preset,
        resolution=opts.resolution,
        green=opts.green,
        nir=opts.nir,
        swir=opts.swir,
        on_read_error=opts.on_read_error,
    ) as src:
        labels = open_labels(opts, src)
        try:
            check_label_extent(opts, labels, src.bounds, summary)
            chips = chip_windows(src.width, src.height, opts.size, opts.overlap)
            summary.n_candidates = len(chips)
            # The codec (torch) loads with the first chip to encode: a bad input fails before it.
            codec = functools.cache(lambda: load_codec(opts.vae, opts.allow_custom_vae))
            tmp = prepare_output_dir(out_dir, opts.overwrite)
            try:
                found = export_chips(opts, src, labels, chips, codec, tmp, summary, progress)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            labels.close()
        try:
            _finish(opts, src, chips, found, tmp, summary)
            finish_output_dir(tmp, out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return summary


def _stem(raster: str) -> str:
    """Chip names start with the raster's name: for a URL, never its query or credentials."""
    from ...redact import scene_stem

    text = str(raster)
    if "://" in text or text.startswith("/vsi"):
        return scene_stem(text) or "raster"
    return Path(text).stem
