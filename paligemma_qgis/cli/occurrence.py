"""``occurrence``: how often each place was water over many dated observations (core.temporal.occurrence)."""

from __future__ import annotations

import argparse
import json
import sys

from ..core import rules
from .args import options_from_args
from .progress import cli_progress


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "occurrence",
        help="water occurrence (%% of valid observations that were water) from a time series -> GeoTIFF",
        description="From segment outputs of the same area on many dates (a region run with dated scenes, "
        "several single-scene GeoPackages, or a folder of them), write a GeoTIFF with the water "
        "occurrence (band 1: 100 x water / valid observations, nodata where never observed), the number "
        "of valid observations (band 2) and of water observations (band 3). Scenes of one day count as "
        "one observation. --classes also writes permanent / seasonal / rare water as polygons.",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="RUN.gpkg|DIR", help="segment GeoPackages, or folders of them"
    )
    p.add_argument("output", metavar="OUT.tif", help="output GeoTIFF")
    p.add_argument(
        "--classes",
        metavar="CLASSES.gpkg",
        help="also write layers permanent, seasonal, rare (polygons) and observed; "
        "`change --reference CLASSES.gpkg` uses its permanent water",
    )
    p.add_argument(
        "--permanent",
        type=float,
        default=rules.OCCURRENCE_PERMANENT,
        metavar="PCT",
        help=f"permanent water from this occurrence ({rules.OCCURRENCE_PERMANENT:g})",
    )
    p.add_argument(
        "--rare",
        type=float,
        default=rules.OCCURRENCE_RARE,
        metavar="PCT",
        help=f"rare water below this occurrence, seasonal from it up to --permanent ({rules.OCCURRENCE_RARE:g})",
    )
    p.add_argument(
        "--min-observations",
        type=int,
        default=rules.OCCURRENCE_MIN_OBSERVATIONS,
        metavar="N",
        help=f"occurrence only where observed at least N times (default {rules.OCCURRENCE_MIN_OBSERVATIONS})",
    )
    p.add_argument("--start", metavar="DATE", help="only observations on or after this date (YYYY-MM-DD)")
    p.add_argument("--end", metavar="DATE", help="only observations on or before this date")
    p.add_argument("--crs", metavar="EPSG:xxxx", help="CRS of the raster (default: the first input's)")
    p.add_argument(
        "--resolution",
        type=float,
        metavar="X",
        help="pixel size in units of the CRS (default: the finest pixel of the inputs, on its grid)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.temporal.occurrence import water_occurrence
    from ..core.temporal.options import OccurrenceOptions

    options = options_from_args(OccurrenceOptions, args)
    with cli_progress("occurrence", "block") as progress:
        summary = water_occurrence(options, progress)
    for note in summary.notes:
        print(f"warning: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary.to_dict()))
    else:
        print(summary.table())
    return 0
