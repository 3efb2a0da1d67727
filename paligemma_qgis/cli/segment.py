"""``segment``: map water in a raster and write polygons to a GeoPackage (core.run.driver)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..core import rules
from ..core.errors import InputError
from ..core.serial import leaves
from ..core.specs import SegmentSpec, segment_spec
from .progress import cli_progress
from .weights import add_vae_arguments
from .wording import failed_scenes

EXIT_PARTIAL = 3  # the output was written, but some scenes failed
UNSURE_REMEDY = "try --preset, a fixed --threshold, an --aoi around the water, or --engine paligemma"
_SEARCH_OPTIONS = ("collection", "bbox", "datetime", "max_cloud", "limit", "sign")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "segment",
        usage="%(prog)s [options] INPUT [INPUT ...] OUTPUT.gpkg\n       %(prog)s [options] --stac-api URL "
        "--collection NAME --bbox W,S,E,N|--aoi FILE --datetime START/END OUTPUT.gpkg",
        help="map water in one raster or a whole region -> GeoPackage (water polygons + audit layers)",
        description="Cut georeferenced rasters into chips, segment water in each (PaliGemma or a water "
        "index), merge the chips and write water polygons (layer 'water', areas in m2, one 'scene' and "
        "'date' per polygon), each scene's observed footprint and status (layer 'scenes') and the chip "
        "grid with each chip's status and model text (layer 'chips') to one GeoPackage. An interrupted "
        "run (crash, kill, Ctrl-C) continues where it stopped when the same command is run again.",
        epilog="INPUT may be a raster, a folder of rasters, a glob ('scenes/*.tif'), a text file listing "
        "inputs, a GDAL path (/vsicurl/..., /vsis3/..., s3://...) or a local STAC Item, ItemCollection or "
        "Catalog JSON; or give --stac-api and map what a search finds. "
        "Exit codes: 0 done, 1 error, 3 output written but some scenes failed (see the scenes layer), "
        "130 cancelled (the journal beside the output keeps finished work).",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="INPUT... OUTPUT",
        help="input rasters, then the output GeoPackage (.gpkg)",
    )
    p.add_argument("--engine", choices=rules.ENGINES, default=rules.DEFAULT_ENGINE)
    g = p.add_argument_group("bands")
    add_band_arguments(g)
    _add_chip_arguments(p, g)
    _add_output_arguments(p.add_argument_group("output"))
    _add_region_arguments(p.add_argument_group("region runs"))
    _add_model_arguments(p.add_argument_group("paligemma engine"))
    p.set_defaults(func=run)


def _add_chip_arguments(p: argparse.ArgumentParser, g: argparse._ArgumentGroup) -> None:
    """STAC bands (group ``g``), then the chips: overlap, resolution, area, size limits, bad blocks."""
    g.add_argument(
        "--stac-bands",
        type=names,
        metavar="NAMES",
        help="STAC inputs: bands by common name, e.g. green,nir,swir16 (default: what the engine needs)",
    )
    add_cloud_arguments(p.add_argument_group("clouds"))
    add_search_arguments(p.add_argument_group("STAC search (the scenes of a STAC API instead of INPUTs)"))
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
        default=rules.DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse a scene with more pixels than this to map (default {rules.DEFAULT_MAX_PIXELS:.0e}; "
        "use --aoi)",
    )
    c.add_argument(
        "--on-read-error",
        choices=rules.READ_ERROR_MODES,
        default="fail",
        help="a block of the raster that cannot be read (truncated or corrupt file): fail with the file and "
        "window (default), or map it as nodata and count it in the summary and the run table",
    )
    c.add_argument(
        "--min-valid",
        dest="min_valid_fraction",
        type=float,
        default=rules.DEFAULT_MIN_VALID_FRACTION,
        metavar="F",
        help=f"skip chips with less than this share of valid pixels (default {rules.DEFAULT_MIN_VALID_FRACTION})",
    )


def _add_output_arguments(o: argparse._ArgumentGroup) -> None:
    """What is written: polygon size, simplification, CRS, vote, dissolve, mask, overwrite."""
    o.add_argument(
        "--min-area",
        dest="min_area_m2",
        type=float,
        default=0.0,
        metavar="M2",
        help="drop polygons smaller than this",
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
        choices=rules.VOTE_RULES,
        default=rules.DEFAULT_VOTE,
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


def _add_region_arguments(r: argparse._ArgumentGroup) -> None:
    """How a run goes: restart, failing scenes, the work folder and Ray."""
    r.add_argument("--restart", action="store_true", help="start over, ignoring an interrupted run's journal")
    r.add_argument(
        "--recursive",
        action="store_true",
        help="an input folder's subfolders are read too (default: its rasters only; skipped ones are said)",
    )
    r.add_argument(
        "--fail-fast", action="store_true", help="stop at the first scene that fails (default: go on)"
    )
    r.add_argument("--workdir", metavar="DIR", help="folder for temporary mosaics (default: the system temp)")
    r.add_argument(
        "--executor",
        choices=rules.EXECUTORS,
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


def _add_model_arguments(m: argparse._ArgumentGroup) -> None:
    """The PaliGemma engine: model, codec, device, batches, classes and decoding."""
    m.add_argument("--model", metavar="ID_OR_DIR", help="Hugging Face model id or local folder")
    add_vae_arguments(m)
    m.add_argument("--device", choices=rules.DEVICES, default=rules.DEFAULT_DEVICE)
    m.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="chips per model call (default: on a GPU as many as its free memory holds, up to 64; "
        "8 on CPU; halved automatically when the GPU runs out of memory)",
    )
    m.add_argument(
        "--classes",
        type=names,
        default=list(rules.DEFAULT_CLASSES),
        help=f"comma-separated classes to segment (default {','.join(rules.DEFAULT_CLASSES)})",
    )
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
        help=f"most objects per chip (default {rules.DEFAULT_MAX_OBJECTS}); the token budget follows "
        "(about 23 tokens per object)",
    )
    m.add_argument(
        "--dtype",
        choices=rules.DTYPES,
        default="auto",
        help="model weights (default auto: bfloat16 on a GPU that has it natively, else float32)",
    )
    m.add_argument(
        "--cache",
        choices=rules.CACHE_MODES,
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


def add_band_arguments(g: argparse._ArgumentGroup) -> None:
    """The band choice and the water index's options, as every command that segments takes them."""
    g.add_argument("--bands", metavar="R,G,B", help="1-based RGB bands, e.g. 3,2,1 (one band: grey)")
    g.add_argument("--preset", choices=rules.PRESETS, help="sensor band order")
    g.add_argument("--green", type=int, metavar="N", help="green band (water index)")
    g.add_argument("--nir", type=int, metavar="N", help="near-infrared band (NDWI)")
    g.add_argument("--swir", type=int, metavar="N", help="short-wave infrared band (MNDWI)")
    g.add_argument(
        "--threshold", type=float, metavar="X", help="fixed water index threshold (default: one per scene)"
    )
    g.add_argument(
        "--threshold-method",
        choices=rules.THRESHOLD_METHODS,
        default=rules.DEFAULT_THRESHOLD_METHOD,
        help="how a scene's threshold is chosen without --threshold: auto (default: Otsu on the "
        "index's edges, raised until the water is dark in NIR/SWIR), edge-otsu, multi-otsu or otsu",
    )
    g.add_argument("--index", choices=rules.INDEXES, default=rules.DEFAULT_INDEX, help="water index")


CLOUD_MASK_HELP = (
    "which pixels are clouds, so not observed (left out of the scene's footprint in the 'scenes' layer, "
    "of the threshold statistics and of each chip's valid share; black in the model's chips; so "
    "'change' calls water under them unknown and 'occurrence' does not count them): auto (default) = "
    "the mask the data has: a STAC item's SCL (Sentinel-2 L2A) or qa_pixel (Landsat Collection 2) "
    "asset, or a raster band described SCL or QA_PIXEL, else none; scl = SCL classes 0 no data, 1 "
    "saturated, 3 cloud shadow, 8/9 cloud medium/high probability, 10 thin cirrus, 11 snow; qa_pixel = "
    "QA_PIXEL bits 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow, 5 snow; s2cloudless = "
    "Sentinel Hub's detector on the 10 L1C bands (pip install s2cloudless), run at 160 m; FILE = a mask "
    "raster (non-zero = cloud, warped onto each scene; outside it nothing is masked); none. Never "
    "masked: haze or thin cloud the mask calls clear, terrain shadow (SCL 2). The 'scenes' layer gives "
    "each scene's cloud_pct"
)


def add_cloud_arguments(g: argparse._ArgumentGroup) -> None:
    """How clouds are found (core/inputs/cloud_mask.py), as every command that segments takes it."""
    g.add_argument(
        "--cloud-mask",
        default=rules.DEFAULT_CLOUD_MASK,
        metavar="|".join(("auto", "none", "scl", "qa_pixel", "s2cloudless", "FILE")),
        help=CLOUD_MASK_HELP,
    )
    g.add_argument(
        "--mask-classes",
        type=numbers,
        metavar="N,N",
        help="with scl: the SCL classes masked (default "
        f"{','.join(map(str, rules.SCL_MASKED))}); with qa_pixel: the QA_PIXEL bits (default "
        f"{','.join(map(str, rules.QA_PIXEL_MASKED_BITS))}); with a FILE: its values that are clouds "
        "(default: any non-zero value)",
    )


def add_search_arguments(g: argparse._ArgumentGroup) -> None:
    """A STAC API search whose items are the run's scenes (core/inputs/stac_search.py)."""
    g.add_argument(
        "--stac-api",
        metavar="URL",
        help="search this STAC API (e.g. https://earth-search.aws.element84.com/v1) and map the items "
        "found, cloud-masked: then give only OUTPUT.gpkg. The items found are kept beside the output until "
        "it is written, so an interrupted run continues with the same items",
    )
    g.add_argument(
        "--collection", type=names, metavar="NAME", help="collection(s) to search, e.g. sentinel-2-l2a"
    )
    g.add_argument(
        "--bbox",
        type=numbers_float,
        metavar="W,S,E,N",
        help="search area in degrees; also the area mapped unless --aoi is given (or use --aoi FILE alone)",
    )
    g.add_argument(
        "--datetime",
        metavar="START/END",
        help="dates to search: 2021-06-01/2021-06-30, 2021-06, 2021-06-01T00:00:00Z/.. ('..': open end)",
    )
    g.add_argument(
        "--max-cloud",
        type=float,
        metavar="PCT",
        help="only items at most this cloudy (their eo:cloud_cover; items without one are kept)",
    )
    g.add_argument("--limit", type=int, metavar="N", help="map at most N items (the first by date)")
    g.add_argument(
        "--sign",
        choices=rules.SIGN_NAMES,
        help="sign the asset URLs (Planetary Computer's need it; pip install planetary-computer)",
    )


def numbers(text: str) -> list[int]:
    """'3,8,9' -> [3, 8, 9] (mask classes)."""
    try:
        return [int(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"whole numbers separated by commas expected, got {text!r}"
        ) from None


def numbers_float(text: str) -> list[float]:
    """'5.1,45,5.3,45.2' -> [5.1, 45.0, 5.3, 45.2] (a bounding box)."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"numbers separated by commas expected, got {text!r}") from None


def names(text: str) -> list[str]:
    """'water, river' or 'water;river' -> ['water', 'river'] (classes, STAC band names)."""
    return [c.strip() for c in text.replace(";", ",").split(",") if c.strip()]


def spec_values(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments that are segment options (dest = the spec's flat name), unset ones left out."""
    fields = leaves(SegmentSpec)
    return {k: v for k, v in vars(args).items() if k in fields and v is not None}


def spec_from_args(args: argparse.Namespace) -> SegmentSpec:
    searching = args.stac_api or any(getattr(args, n, None) is not None for n in _SEARCH_OPTIONS)
    if len(args.paths) < (1 if searching else 2):  # a search option without --stac-api: the spec says so
        raise InputError("segment_needs_paths")
    *inputs, output = args.paths
    return segment_spec({**spec_values(args), "raster": inputs, "output": output})


def run(args: argparse.Namespace) -> int:
    from ..core.run.driver import segment_raster

    spec = spec_from_args(args)
    with cli_progress("segment", "chip") as progress:
        summary = segment_raster(spec, progress)
    if args.json:
        print(json.dumps(summary.to_dict()))
    else:
        print(f"{summary.output}: {summary.one_line()}")
    for scene, count in summary.details.get("read_errors_by_scene", {}).items():
        print(f"warning: {scene}: {count} read(s) hit unreadable blocks, mapped as nodata", file=sys.stderr)
    for scene, error in failed_scenes(summary.details).items():
        print(f"warning: scene {scene} failed: {error}", file=sys.stderr)
    for scene, why in summary.details.get("unsure_scenes", {}).items():
        print(f"warning: scene {scene}: the water map is unsure ({why}); {UNSURE_REMEDY}", file=sys.stderr)
    return EXIT_PARTIAL if summary.failed else 0
