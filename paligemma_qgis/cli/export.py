"""``export`` and ``export-pairs``: training data (chips + PaliGemma JSONL) for fine-tuning."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from ..core import rules
from ..core.train.options import WATER_INDEX, ExportOptions, PairsOptions
from .args import default, options_from_args
from .progress import cli_progress
from .weights import add_vae_arguments

if TYPE_CHECKING:
    from ..core.train.export import ExportSummary


def _add_common(p: argparse.ArgumentParser, options: type[ExportOptions | PairsOptions]) -> None:
    """The arguments both exports take, with the defaults of their options type."""
    min_pixels = default(options, "min_object_pixels")
    valid_fraction = default(options, "valid_fraction")
    empty_policy = default(options, "empty_policy")
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
        default=default(options, "max_objects"),
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
    p.add_argument(
        "--seed",
        type=int,
        default=default(options, "seed"),
        help="seed of the train/valid split and empty-chip choice",
    )
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
        default=rules.EMPTY_CAP,
        help=f"with --empty-policy cap: largest share of empty chips per split (default {rules.EMPTY_CAP})",
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
        f"--mask-threshold), or '{WATER_INDEX}'",
    )
    p.add_argument("--label-layer", help="layer of a multi-layer vector file (GeoPackage)")
    p.add_argument("--label-where", help="attribute filter of the vector labels, e.g. \"label = 'water'\"")
    p.add_argument(
        "--strict-labels",
        action="store_true",
        help="refuse invalid label polygons (self-intersections) instead of repairing them with make_valid",
    )
    p.add_argument(
        "--mask-threshold",
        type=float,
        default=default(ExportOptions, "mask_threshold"),
        help="mask raster: water where value > this",
    )
    p.add_argument("--bands", help="1-based RGB bands for the chips, e.g. 3,2,1")
    p.add_argument("--preset", choices=rules.PRESETS, help="sensor band order")
    p.add_argument("--resolution", type=float, help="resample to this ground resolution (metres)")
    p.add_argument("--green", type=int, metavar="N", help="green band (--labels water-index)")
    p.add_argument("--nir", type=int, metavar="N", help="near-infrared band (--labels water-index)")
    p.add_argument("--swir", type=int, metavar="N", help="short-wave infrared band (--labels water-index)")
    p.add_argument(
        "--size", type=int, default=rules.CHIP_SIZE, help=f"chip size in pixels (default {rules.CHIP_SIZE})"
    )
    p.add_argument(
        "--overlap",
        type=int,
        default=rules.EXPORT_OVERLAP,
        help=f"chip overlap in pixels (default {rules.EXPORT_OVERLAP})",
    )
    p.add_argument(
        "--block-size",
        type=int,
        default=rules.EXPORT_BLOCK_SIZE,
        metavar="N",
        help=f"spatial blocks of N x N chips go whole to train or valid (default {rules.EXPORT_BLOCK_SIZE})",
    )
    p.add_argument(
        "--on-read-error",
        choices=rules.READ_ERROR_MODES,
        default=default(ExportOptions, "on_read_error"),
        help="a raster block that cannot be read (truncated or corrupt file): fail (default), or map it "
        "as nodata and count it",
    )
    p.add_argument(
        "--max-nodata",
        dest="max_nodata_fraction",
        type=float,
        default=rules.EXPORT_MAX_NODATA_FRACTION,
        help=f"skip chips with a larger nodata share (default {rules.EXPORT_MAX_NODATA_FRACTION})",
    )
    _add_common(p, ExportOptions)
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
        default=rules.PAIRS_MASK_THRESHOLD,
        help=f"water where the mask's grey value > this (default {rules.PAIRS_MASK_THRESHOLD}, for JPEG masks)",
    )
    q.add_argument(
        "--size", type=int, default=rules.CHIP_SIZE, help=f"written image size (default {rules.CHIP_SIZE})"
    )
    q.add_argument(
        "--allow-large-images",
        action="store_true",
        help="read images over the 89-megapixel decompression-bomb limit (only for files you trust)",
    )
    _add_common(q, PairsOptions)
    q.set_defaults(func=run_export_pairs)


def _print_summary(summary: ExportSummary, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print("\n".join(summary.lines()))


def run_export(args: argparse.Namespace) -> int:
    from ..core.train.export import export_training_data

    opts = options_from_args(ExportOptions, args)
    with cli_progress("export", "chip") as progress:
        summary = export_training_data(opts, progress)
    _print_summary(summary, args.json)
    return 0


def run_export_pairs(args: argparse.Namespace) -> int:
    from ..core.train.export import export_pairs

    opts = options_from_args(PairsOptions, args)
    with cli_progress("export-pairs", "chip") as progress:
        summary = export_pairs(opts, progress)
    _print_summary(summary, args.json)
    return 0
