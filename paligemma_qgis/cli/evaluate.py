"""``evaluate``: pixel IoU / precision / recall / F1 of predicted water, and the invalid-output share."""

from __future__ import annotations

import argparse
import json

from ..core.train.options import EvaluateOptions
from .args import default, options_from_args
from .weights import add_vae_arguments


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score predicted water against known water",
        description="PRED is segment's GeoPackage (layer 'water'; its 'chips' layer gives the share of "
        "invalid model outputs), its --mask-tif, or a JSONL of model outputs ({'image', 'model_output'}). "
        "TRUTH is a vector file or mask raster (georeferenced case) or a folder of same-named masks / a "
        "JSONL with truth suffixes (pairs case). Pixel scores are summed over the whole scene or all pairs; "
        "truth and prediction nodata are left out and counted. A truth that does not overlap the "
        "prediction is an error.",
    )
    p.add_argument(
        "pred",
        help="prediction: GeoPackage/vector file, mask raster (segment --mask-tif), or .jsonl of model outputs",
    )
    p.add_argument("truth", help="truth: vector file, mask raster, masks folder, or .jsonl with suffixes")
    p.add_argument(
        "--raster",
        dest="reference_raster",
        metavar="REF",
        help="reference grid (and valid pixels) for vector truth",
    )
    pred_layer = default(EvaluateOptions, "pred_layer")
    p.add_argument(
        "--pred-layer", default=pred_layer, help=f"layer of PRED holding water (default {pred_layer})"
    )
    p.add_argument("--truth-layer", help="layer of a multi-layer truth vector file")
    p.add_argument("--truth-where", help="attribute filter of the truth vectors, e.g. \"label = 'water'\"")
    p.add_argument(
        "--mask-threshold",
        type=float,
        help="truth mask: water where value > this (default 0 for rasters, 150 for JPEG masks)",
    )
    p.add_argument(
        "--truth-nodata",
        type=float,
        metavar="V",
        help="truth mask value meaning 'no label', left out of the scores like the file's own nodata "
        "(e.g. -1 for Sen1Floods11 labels)",
    )
    p.add_argument("--images", help="pairs with a JSONL truth: folder of the images (for their sizes)")
    p.add_argument(
        "--allow-large-images",
        action="store_true",
        help="read images over the 89-megapixel decompression-bomb limit (only for files you trust)",
    )
    add_vae_arguments(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.train.evaluate import evaluate

    result = evaluate(options_from_args(EvaluateOptions, args))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.table())
    return 0
