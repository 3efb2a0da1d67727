"""``change``: water gained, lost, persistent and unknown between two dates (core.temporal.change)."""

from __future__ import annotations

import argparse
import json
import sys

from ..core import rules
from .args import options_from_args
from .progress import cli_progress
from .segment import add_band_arguments, add_cloud_arguments, spec_values
from .weights import add_vae_arguments

USAGE = (
    "python -m paligemma_qgis change [options] BEFORE AFTER OUT.gpkg\n"
    "       python -m paligemma_qgis change [options] --reference KNOWN_WATER AFTER OUT.gpkg"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "change",
        usage=USAGE,
        help="water gained / lost / persistent between two dates -> GeoPackage",
        description="Compare two water maps (segment GeoPackages, or rasters segmented first with the "
        "engine options below) and write the layers gained (water after, not before: the flood extent "
        "when BEFORE is a dry reference), lost, persistent and unknown (water on one date where the other "
        "did not look: nodata, clouds, outside its scene or area of interest; never counted as gain or "
        "loss), plus the area observed on both dates and a summary table. Maps on different grids or "
        "CRSs are compared as polygons (no resampling); areas are equal-area ground areas.",
    )
    p.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="BEFORE AFTER OUT.gpkg, or AFTER OUT.gpkg with --reference; BEFORE/AFTER: a segment "
        "GeoPackage or a raster",
    )
    p.add_argument(
        "--reference",
        metavar="FILE",
        help="known water that counts as water before (flood = AFTER - reference), e.g. the "
        "permanent class of `occurrence --classes`; any polygon file, complete unless it has a footprint",
    )
    p.add_argument("--reference-layer", metavar="NAME", help="layer of the reference file")
    p.add_argument(
        "--before-date",
        metavar="DATE",
        help="a dated run: compare only its scenes of this date (2020, 2020-08 or 2020-08-31); "
        "an undated map: its date",
    )
    p.add_argument("--after-date", metavar="DATE", help="as --before-date, for AFTER")
    p.add_argument(
        "--aoi",
        metavar="FILE|EXTENT",
        help="compare only inside: vector file or xmin,ymin,xmax,ymax[,EPSG:x]",
    )
    p.add_argument(
        "--min-area",
        dest="min_area_m2",
        type=float,
        default=rules.CHANGE_MIN_AREA_M2,
        metavar="M2",
        help="drop result polygons smaller than this (the slivers two grids leave along unchanged shores)",
    )
    p.add_argument("--out-crs", metavar="EPSG:xxxx", help="CRS of the output (default: BEFORE's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    g = p.add_argument_group("raster inputs (segmented first, as `segment` would)")
    g.add_argument("--engine", choices=rules.ENGINES, default=rules.DEFAULT_ENGINE)
    add_band_arguments(g)
    add_cloud_arguments(g)
    g.add_argument("--resolution", type=float, metavar="M", help="resample to this ground resolution (m)")
    g.add_argument(
        "--overlap",
        type=int,
        metavar="PX",
        help="chip overlap in pixels (default: 32 for paligemma, 0 for the water index)",
    )
    g.add_argument("--model", metavar="ID_OR_DIR", help="PaliGemma: Hugging Face model id or local folder")
    add_vae_arguments(g)
    g.add_argument("--device", choices=rules.DEVICES, default="auto")
    g.add_argument("--batch-size", type=int, metavar="N", help="chips per model call")
    p.set_defaults(func=run)


# The segment options a raster input is segmented with (the group "raster inputs" above).
SEGMENT_KEYS = (
    "engine", "bands", "preset", "green", "nir", "swir", "threshold", "index", "resolution", "overlap",
    "model", "vae", "allow_custom_vae", "device", "batch_size", "cloud_mask", "mask_classes",
)  # fmt: skip


def segment_options(args: argparse.Namespace) -> dict:
    """Segment options (by the spec's flat names) for raster inputs; unset ones left to the spec's defaults."""
    return {k: v for k, v in spec_values(args).items() if k in SEGMENT_KEYS}


def run(args: argparse.Namespace) -> int:
    from ..core.errors import InputError
    from ..core.temporal.change import water_change
    from ..core.temporal.options import ChangeOptions

    files = list(args.files)
    if len(files) == 3:
        before, after, output = files
    elif len(files) == 2 and args.reference:
        before, (after, output) = None, files
    elif len(files) == 2:
        raise InputError("change_files_missing", field="before")
    else:
        raise InputError("change_file_count", field="before", count=len(files))
    options = options_from_args(
        ChangeOptions, args, before=before, after=after, output=output, segment=segment_options(args)
    )
    with cli_progress("change", "step") as progress:
        summary = water_change(options, progress)
    for note in summary.notes:
        print(f"warning: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary.to_dict()))
    else:
        print(summary.table())
    return 0
