"""``revectorize``: new polygons from a finished run, without the model (core.run.revectorize)."""

from __future__ import annotations

import argparse
import json
import sys

from .progress import cli_progress
from .segment import EXIT_PARTIAL
from .wording import failed_scenes


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "revectorize",
        help="new polygons from a finished segment run, without the model (minimum area, CRS, vote ...)",
        description="Decode the model text stored in a segment output again (PaliGemma: with the VAE "
        "on the CPU; water index: the index is recomputed) and write new polygons with another minimum "
        "area, simplification, output CRS or vote rule. The input rasters must still be where the run "
        "found them (their validity masks are read again).",
    )
    p.add_argument("run", help="GeoPackage written by `segment`")
    p.add_argument("output", help="new GeoPackage (.gpkg)")
    p.add_argument("--min-area", type=float, metavar="M2", help="drop polygons smaller than this")
    p.add_argument("--simplify", type=float, metavar="TOL", help="simplify tolerance in the raster CRS units")
    p.add_argument("--out-crs", metavar="EPSG:xxxx", help="CRS of the layers")
    p.add_argument("--vote", choices=("majority", "any", "all"), help="how overlapping chips decide a pixel")
    p.add_argument("--dissolve", action="store_true", default=None, help="also a water_dissolved layer")
    p.add_argument(
        "--mask-tif", metavar="FILE", help="also write the water mask as a GeoTIFF (one scene only)"
    )
    p.add_argument("--vae", metavar="FILE", help="vae-oid.npz, when not where the run found it")
    p.add_argument(
        "--allow-custom-vae", action="store_true", default=None, help="accept a VAE with another checksum"
    )
    p.add_argument("--workdir", metavar="DIR", help="folder for temporary mosaics")
    p.add_argument("--overwrite", action="store_true", default=None, help="replace an existing output")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.run.revectorize import revectorize

    with cli_progress("revectorize", "chip") as progress:
        summary = revectorize(
            args.run,
            args.output,
            progress,
            min_area_m2=args.min_area,
            simplify=args.simplify,
            out_crs=args.out_crs,
            vote=args.vote,
            dissolve=args.dissolve,
            mask_tif=args.mask_tif,
            vae=args.vae,
            allow_custom_vae=args.allow_custom_vae,
            workdir=args.workdir,
            overwrite=args.overwrite,
        )
    print(json.dumps(summary.to_dict()) if args.json else f"{summary.output}: {summary.one_line()}")
    for scene, error in failed_scenes(summary.details).items():
        print(f"warning: scene {scene} failed in the run: {error}", file=sys.stderr)
    return EXIT_PARTIAL if summary.failed else 0
