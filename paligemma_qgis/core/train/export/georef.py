"""export: a georeferenced raster + known water -> chips on the segmenter grid, JSONL, chips.gpkg."""

from __future__ import annotations

import functools
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from ...progress import Progress, check_cancelled
from .labels import _open_labels
from .options import ExportOptions, ExportSummary
from .outputs import (
    check_output_dir,
    finish_output_dir,
    prepare_output_dir,
    write_export_json,
    write_jsonl,
    writing,
)
from .recipe import encode_chip, load_codec
from .split import EMPTY_POLICIES, apply_empty_policy, exclude_overlaps, spatial_blocks, split_blocks


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

    from ...geometry.vectorize import write_geopackage
    from ...inputs.grid import chip_windows, window_footprint
    from ...inputs.raster import open_raster

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
            summary.n_labels_repaired = getattr(labels, "n_repaired", 0)
            try:
                chips = chip_windows(src.width, src.height, opts.size, opts.overlap)
            except ValueError as exc:
                raise InputError(f"{opts.raster}: {exc}") from None
            summary.n_candidates = len(chips)
            # The codec (torch) loads with the first chip to encode: a bad input fails before it.
            codec = functools.cache(lambda: load_codec(opts.vae, opts.allow_custom_vae))
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
            # Also with overlap 0: the snapped last row/column overlaps its neighbour.
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
            summary.n_read_errors = src.read_errors
            with writing(out_dir, "train.jsonl and valid.jsonl"):
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
            with writing(out_dir, "export.json"):
                write_export_json(tmp / "export.json", opts.to_dict(), summary.to_dict())
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
    codec: Callable[[], Any],
    tmp: Path,
    summary: ExportSummary,
    progress: Progress | None,
) -> tuple[list[dict], list[dict], list[dict]]:
    """Read, label, encode and write every candidate chip; returns (chip rows, review rows, JSONL)."""
    from PIL import Image
    from rasterio.windows import transform as window_transform

    stem = _stem(opts.raster)
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
        if row["split"] == "skipped":
            records.append({"image": name})  # placeholder, never written
        if progress is not None:
            progress.report(i + 1, len(chips), name)
    return rows, review, records


def _stem(raster: Any) -> str:
    """Chip names start with the raster's name: for a URL, never its query or credentials."""
    from ...redact import scene_stem

    text = str(raster)
    if "://" in text or text.startswith("/vsi"):
        return scene_stem(text) or "raster"
    return Path(text).stem
