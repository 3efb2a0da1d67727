"""``export`` and ``export-pairs``: training data (chips + PaliGemma JSONL) for fine-tuning."""

from __future__ import annotations

import argparse
import json

from ..core import rules
from .progress import cli_progress
from .weights import add_vae_arguments


def _add_common(
    p: argparse.ArgumentParser, *, valid_fraction: float, empty_policy: str, min_pixels: int
) -> None:
    p.add_argument(
        "--min-object-pixels",
        type=int,
        default=min_pixels,
        metavar="N",
        help=f"drop water components smaller than N pixels (default {min_pixels})",
    )
    p.add_argument(
        "--max-objects",
        type=int,
        default=0,
        metavar="N",
        help="keep only the N largest components of a chip (0: all; each costs ~24 tokens)",
    )
    add_vae_arguments(p)
    p.add_argument(
        "--valid-fraction",
        type=float,
        default=valid_fraction,
        help=f"share of chips for validation (default {valid_fraction})",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the train/valid split and empty-chip choice")
    p.add_argument(
        "--empty-policy",
        choices=rules.EMPTY_POLICIES,
        default=empty_policy,
        help="chips without water: keep all, drop all, or cap them at --empty-cap of each split "
        f"(default {empty_policy})",
    )
    p.add_argument(
        "--empty-cap",
        type=float,
        default=rules.DEFAULT_EMPTY_CAP,
        help=f"with --empty-policy cap: largest share of empty chips per split (default {rules.DEFAULT_EMPTY_CAP})",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="raster + known water -> chips and PaliGemma JSONL for fine-tuning",
        description="Cut a georeferenced raster into chips, label them from a water vector file, a "
        "mask raster or the water index, and write OUT_DIR/images/*.png, train.jsonl, valid.jsonl "
        "(big_vision format) and chips.gpkg (chip footprints with quality flags, and the written "
        "tokens decoded back, for review). Train/valid are split by spatial blocks.",
    )
    p.add_argument("raster", help="input raster (any GDAL format with a CRS)")
    p.add_argument("out_dir", help="output folder")
    p.add_argument(
        "--labels",
        required=True,
        metavar="SOURCE",
        help=f"water polygons (vector file, any CRS), a mask raster (water where value > "
        f"--mask-threshold), or '{rules.WATER_INDEX_LABELS}'",
    )
    p.add_argument("--label-layer", help="layer of a multi-layer vector file (GeoPackage)")
    p.add_argument("--label-where", help="attribute filter of the vector labels, e.g. \"label = 'water'\"")
    p.add_argument(
        "--strict-labels",
        action="store_true",
        help="refuse invalid label polygons (self-intersections) instead of repairing them with make_valid",
    )
    p.add_argument("--mask-threshold", type=float, default=0.0, help="mask raster: water where value > this")
    p.add_argument("--bands", help="1-based RGB bands for the chips, e.g. 3,2,1")
    p.add_argument("--preset", choices=rules.PRESETS, help="sensor band order")
    p.add_argument("--resolution", type=float, help="resample to this ground resolution (metres)")
    p.add_argument("--green", type=int, metavar="N", help="green band (--labels water-index)")
    p.add_argument("--nir", type=int, metavar="N", help="near-infrared band (--labels water-index)")
    p.add_argument("--swir", type=int, metavar="N", help="short-wave infrared band (--labels water-index)")
    p.add_argument(
        "--size",
        type=int,
        default=rules.DEFAULT_CHIP_SIZE,
        help=f"chip size in pixels (default {rules.DEFAULT_CHIP_SIZE})",
    )
    p.add_argument("--overlap", type=int, default=0, help="chip overlap in pixels (default 0)")
    p.add_argument(
        "--block-size",
        type=int,
        default=rules.DEFAULT_BLOCK_SIZE,
        metavar="N",
        help=f"spatial blocks of N x N chips go whole to train or valid (default {rules.DEFAULT_BLOCK_SIZE})",
    )
    p.add_argument(
        "--on-read-error",
        choices=rules.READ_ERROR_MODES,
        default="fail",
        help="a raster block that cannot be read (truncated or corrupt file): fail (default), or map it "
        "as nodata and count it",
    )
    p.add_argument(
        "--max-nodata",
        type=float,
        default=0.5,
        help="skip chips with a larger nodata share (default 0.5)",
    )
    _add_common(
        p,
        valid_fraction=rules.DEFAULT_VALID_FRACTION,
        empty_policy=rules.DEFAULT_EMPTY_POLICY,
        min_pixels=rules.DEFAULT_MIN_OBJECT_PIXELS,
    )
    p.set_defaults(func=run_export)

    q = subparsers.add_parser(
        "export-pairs",
        help="image/mask folders (no georeference) -> PaliGemma JSONL",
        description="Turn folders of images and same-named masks (e.g. the Kaggle water-bodies set) "
        "into OUT_DIR/images/*.png (RGB, 224x224), train.jsonl and valid.jsonl with the big_vision "
        "recipe: one object per 8-connected component, tight box, 16 VQ-VAE mask tokens.",
    )
    q.add_argument("out_dir", help="output folder")
    q.add_argument("--images", required=True, help="folder of RGB images")
    q.add_argument("--masks", required=True, help="folder of masks with the images' file names")
    q.add_argument("--names", help="text file listing the images to use, one per line (default: all)")
    q.add_argument(
        "--mask-threshold",
        type=int,
        default=150,
        help="water where the mask's grey value > this (default 150, for JPEG masks)",
    )
    q.add_argument("--size", type=int, default=224, help="written image size (default 224)")
    q.add_argument(
        "--allow-large-images",
        action="store_true",
        help="read images over the 89-megapixel decompression-bomb limit (only for files you trust)",
    )
    _add_common(q, valid_fraction=0.1, empty_policy="keep", min_pixels=1)
    q.set_defaults(func=run_export_pairs)


def _print_summary(summary, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print("\n".join(summary.lines()))


def run_export(args: argparse.Namespace) -> int:
    from ..core.inputs.raster import parse_bands
    from ..core.train.export import ExportOptions, export_training_data

    bands = parse_bands(args.bands, path=args.raster)
    opts = ExportOptions(
        raster=args.raster,
        out_dir=args.out_dir,
        labels=args.labels,
        label_layer=args.label_layer,
        label_where=args.label_where,
        bands=list(bands) if bands else None,
        preset=args.preset,
        resolution=args.resolution,
        green=args.green,
        nir=args.nir,
        swir=args.swir,
        size=args.size,
        overlap=args.overlap,
        min_object_pixels=args.min_object_pixels,
        max_objects=args.max_objects,
        mask_threshold=args.mask_threshold,
        vae=args.vae,
        allow_custom_vae=args.allow_custom_vae,
        valid_fraction=args.valid_fraction,
        block_size=args.block_size,
        seed=args.seed,
        empty_policy=args.empty_policy,
        empty_cap=args.empty_cap,
        max_nodata_fraction=args.max_nodata,
        overwrite=args.overwrite,
        strict_labels=args.strict_labels,
        on_read_error=args.on_read_error,
    )
    with cli_progress("export", "chip") as progress:
        summary = export_training_data(opts, progress)
    _print_summary(summary, args.json)
    return 0


def run_export_pairs(args: argparse.Namespace) -> int:
    from ..core.train.export import PairsOptions, export_pairs

    opts = PairsOptions(
        images=args.images,
        masks=args.masks,
        out_dir=args.out_dir,
        names=args.names,
        mask_threshold=args.mask_threshold,
        min_object_pixels=args.min_object_pixels,
        max_objects=args.max_objects,
        vae=args.vae,
        allow_custom_vae=args.allow_custom_vae,
        valid_fraction=args.valid_fraction,
        seed=args.seed,
        empty_policy=args.empty_policy,
        empty_cap=args.empty_cap,
        size=args.size,
        overwrite=args.overwrite,
        allow_large_images=args.allow_large_images,
    )
    with cli_progress("export-pairs", "chip") as progress:
        summary = export_pairs(opts, progress)
    _print_summary(summary, args.json)
    return 0
