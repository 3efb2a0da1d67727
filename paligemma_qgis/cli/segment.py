"""``segment``: map water in a raster and write polygons to a GeoPackage (core.run.driver)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..core.errors import InputError
from ..core.run.options import DEFAULT_MAX_PIXELS
from .progress import cli_progress
from .weights import add_vae_arguments

EXIT_PARTIAL = 3  # the output was written, but some scenes failed


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "segment",
        usage="%(prog)s [options] INPUT [INPUT ...] OUTPUT.gpkg",
        help="map water in one raster or a whole region -> GeoPackage (water polygons + audit layers)",
        description="Cut georeferenced rasters into chips, segment water in each (PaliGemma or a water "
        "index), merge the chips and write water polygons (layer 'water', areas in m2, one 'scene' and "
        "'date' per polygon), each scene's observed footprint and status (layer 'scenes') and the chip "
        "grid with each chip's status and model text (layer 'chips') to one GeoPackage. An interrupted "
        "run (crash, kill, Ctrl-C) continues where it stopped when the same command is run again.",
        epilog="INPUT may be a raster, a folder of rasters, a glob ('scenes/*.tif'), a text file listing "
        "inputs, a GDAL path (/vsicurl/..., /vsis3/..., s3://...) or a local STAC Item/ItemCollection JSON. "
        "Exit codes: 0 done, 1 error, 3 output written but some scenes failed (see the scenes layer), "
        "130 cancelled (the journal beside the output keeps finished work).",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="INPUT... OUTPUT",
        help="input rasters, then the output GeoPackage (.gpkg)",
    )
    p.add_argument("--engine", choices=("water-index", "paligemma"), default="water-index")
    g = p.add_argument_group("bands")
    add_band_arguments(g)
    g.add_argument(
        "--stac-bands",
        metavar="NAMES",
        help="STAC inputs: bands by common name, e.g. green,nir,swir16 (default: what the engine needs)",
    )
    c = p.add_argument_group("chips")
    c.add_argument(
        "--overlap",
        type=int,
        metavar="PX",
        help="chip overlap in pixels (default: 32 for paligemma; 0 for the water index, whose answer "
        "for a pixel does not depend on the chip around it)",
    )
    c.add_argument(
        "--resolution", type=float, metavar="M", help="resample to this ground resolution (metres)"
    )
    c.add_argument(
        "--aoi", metavar="FILE|EXTENT", help="area of interest: vector file or xmin,ymin,xmax,ymax[,EPSG:x]"
    )
    c.add_argument(
        "--max-pixels",
        type=float,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse a scene with more pixels than this to map (default {DEFAULT_MAX_PIXELS:.0e}; use --aoi)",
    )
    c.add_argument(
        "--on-read-error",
        choices=("fail", "skip"),
        default="fail",
        help="a block of the raster that cannot be read (truncated or corrupt file): fail with the file and "
        "window (default), or map it as nodata and count it in the summary and the run table",
    )
    c.add_argument(
        "--min-valid",
        type=float,
        default=0.05,
        metavar="F",
        help="skip chips with less than this share of valid pixels (default 0.05)",
    )
    o = p.add_argument_group("output")
    o.add_argument(
        "--min-area", type=float, default=0.0, metavar="M2", help="drop polygons smaller than this"
    )
    o.add_argument(
        "--simplify",
        type=float,
        default=0.0,
        metavar="TOL",
        help="simplify tolerance in the raster CRS units (metres for UTM, degrees for EPSG:4326)",
    )
    o.add_argument("--out-crs", metavar="EPSG:xxxx", help="CRS of the water layer (default: the raster's)")
    o.add_argument(
        "--vote",
        choices=("majority", "any", "all"),
        default="majority",
        help="where chips overlap, a pixel is water when most (default), any or all of them say so",
    )
    o.add_argument(
        "--dissolve",
        action="store_true",
        help="also a 'water_dissolved' layer merged across overlapping scenes",
    )
    o.add_argument(
        "--mask-tif", metavar="FILE", help="also write the water mask as a GeoTIFF (one input only)"
    )
    o.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    o.add_argument("--json", action="store_true", help="print the summary as JSON")
    r = p.add_argument_group("region runs")
    r.add_argument("--restart", action="store_true", help="start over, ignoring an interrupted run's journal")
    r.add_argument(
        "--fail-fast", action="store_true", help="stop at the first scene that fails (default: go on)"
    )
    r.add_argument("--workdir", metavar="DIR", help="folder for temporary mosaics (default: the system temp)")
    r.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local (default): this process; ray: model actors and CPU tasks on a Ray cluster",
    )
    r.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="Ray cluster to join: auto, or ray://host:10001 (default: start a local Ray)",
    )
    r.add_argument("--ray-actors", type=int, metavar="N", help="model actors (default: one per GPU, else 1)")
    r.add_argument(
        "--ray-gpus-per-actor",
        type=float,
        metavar="G",
        help="GPUs per model actor (default 1 when there are GPUs)",
    )
    m = p.add_argument_group("paligemma engine")
    m.add_argument("--model", metavar="ID_OR_DIR", help="Hugging Face model id or local folder")
    add_vae_arguments(m)
    m.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    m.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="chips per model call (default: on a GPU as many as its free memory holds, up to 64; "
        "8 on CPU; halved automatically when the GPU runs out of memory)",
    )
    m.add_argument("--classes", default="water", help="comma-separated classes to segment (default water)")
    m.add_argument(
        "--no-constrained",
        dest="constrained",
        action="store_false",
        help="let the model generate freely (default: decoding constrained to valid segmentation text)",
    )
    m.add_argument(
        "--max-objects",
        type=int,
        metavar="N",
        help="most objects per chip (default 8); the token budget follows (about 23 tokens per object)",
    )
    m.add_argument(
        "--dtype",
        choices=("auto", "bfloat16", "float32"),
        default="auto",
        help="model weights (default auto: bfloat16 on a GPU that has it natively, else float32)",
    )
    m.add_argument(
        "--cache",
        choices=("dynamic", "static"),
        default="dynamic",
        help="KV cache: dynamic = transformers' generate() (default); static = the engine's loop over "
        "a pre-allocated cache, same text (see docs/BENCHMARKS.md)",
    )
    m.add_argument(
        "--compile",
        action="store_true",
        help="with --cache static: torch.compile the decode step (CUDA graphs on CUDA); the first "
        "batch of each size pays the compilation",
    )
    p.set_defaults(func=run)


def add_band_arguments(g: argparse._ArgumentGroup) -> None:
    """The band choice and the water index's options, as every command that segments takes them."""
    g.add_argument("--bands", metavar="R,G,B", help="1-based RGB bands, e.g. 3,2,1 (one band: grey)")
    g.add_argument("--preset", choices=("sentinel2", "landsat89", "naip"), help="sensor band order")
    g.add_argument("--green", type=int, metavar="N", help="green band (water index)")
    g.add_argument("--nir", type=int, metavar="N", help="near-infrared band (NDWI)")
    g.add_argument("--swir", type=int, metavar="N", help="short-wave infrared band (MNDWI)")
    g.add_argument("--threshold", type=float, metavar="X", help="water index threshold (default: Otsu)")
    g.add_argument("--index", choices=("auto", "mndwi", "ndwi"), default="auto", help="water index")


def options_from_args(args: argparse.Namespace) -> Any:
    from ..core.run.driver import SegmentOptions

    if len(args.paths) < 2:
        raise InputError(
            "segment needs at least one INPUT and the OUTPUT GeoPackage (segment IN... OUT.gpkg)"
        )
    *inputs, output = args.paths
    return SegmentOptions(
        raster=inputs[0] if len(inputs) == 1 else inputs,
        output=output,
        engine=args.engine,
        bands=args.bands,
        preset=args.preset,
        green=args.green,
        nir=args.nir,
        swir=args.swir,
        threshold=args.threshold,
        index=args.index,
        overlap=args.overlap,
        resolution=args.resolution,
        aoi=args.aoi,
        min_valid_fraction=args.min_valid,
        on_read_error=args.on_read_error,
        min_area_m2=args.min_area,
        simplify=args.simplify,
        out_crs=args.out_crs,
        mask_tif=args.mask_tif,
        overwrite=args.overwrite,
        batch_size=args.batch_size,
        model=args.model,
        vae=getattr(args, "vae", None),
        allow_custom_vae=bool(getattr(args, "allow_custom_vae", False)),
        device=args.device,
        classes=[c.strip() for c in args.classes.replace(";", ",").split(",") if c.strip()],
        constrained=args.constrained,
        max_objects=args.max_objects,
        dtype=args.dtype,
        cache=args.cache,
        compile=args.compile,
        stac_bands=_names(args.stac_bands),
        max_pixels=args.max_pixels,
        vote=args.vote,
        dissolve=args.dissolve,
        restart=args.restart,
        fail_fast=args.fail_fast,
        workdir=args.workdir,
        executor=args.executor,
        ray_address=args.ray_address,
        ray_actors=args.ray_actors,
        ray_gpus_per_actor=args.ray_gpus_per_actor,
    )


def _names(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.replace(";", ",").split(",") if c.strip()] if text else None


def run(args: argparse.Namespace) -> int:
    from ..core.run.driver import segment_raster

    options = options_from_args(args)
    with cli_progress("segment", "chip") as progress:
        summary = segment_raster(options, progress)
    if args.json:
        print(json.dumps(summary.to_dict()))
    else:
        print(f"{summary.output}: {summary.one_line()}")
    for scene, count in summary.details.get("read_errors_by_scene", {}).items():
        print(f"warning: {scene}: {count} read(s) hit unreadable blocks, mapped as nodata", file=sys.stderr)
    for scene, error in summary.details.get("failed_scenes", {}).items():
        print(f"warning: scene {scene} failed: {error}", file=sys.stderr)
    return EXIT_PARTIAL if summary.failed else 0
