"""The rules of a run: names, defaults and the checks that need no file, in one place.

The command line, the QGIS dialog, every Processing algorithm and the core all read their
defaults and choices here, so they cannot drift apart (Processing's *Water change* once
defaulted to PaliGemma while everything else used the water index). Standard library only:
the plugin imports it inside QGIS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

EngineName = Literal["water-index", "paligemma"]
IndexName = Literal["auto", "mndwi", "ndwi"]
VoteRule = Literal["majority", "any", "all"]
ReadErrorMode = Literal["fail", "skip"]
ExecutorName = Literal["local", "ray"]
DeviceName = Literal["auto", "cpu", "cuda", "mps"]
DtypeName = Literal["auto", "bfloat16", "float32"]
CacheMode = Literal["dynamic", "static"]
PresetName = Literal["sentinel2", "landsat89", "naip"]
# How the water index picks a scene's threshold (core/model/thresholds.py says how each works).
ThresholdMethod = Literal["auto", "edge-otsu", "multi-otsu", "otsu"]
# Which pixels are clouds (core/inputs/cloud_mask.py); a cloud_mask that is none of these is a mask raster.
CloudMaskMode = Literal["auto", "none", "scl", "qa_pixel", "s2cloudless"]
SignName = Literal["planetary-computer"]  # how a STAC search's asset URLs are signed

ENGINES: tuple[EngineName, ...] = get_args(EngineName)
INDEXES: tuple[IndexName, ...] = get_args(IndexName)
VOTE_RULES: tuple[VoteRule, ...] = get_args(VoteRule)
READ_ERROR_MODES: tuple[ReadErrorMode, ...] = get_args(ReadErrorMode)
EXECUTORS: tuple[ExecutorName, ...] = get_args(ExecutorName)
DEVICES: tuple[DeviceName, ...] = get_args(DeviceName)
DTYPES: tuple[DtypeName, ...] = get_args(DtypeName)
CACHE_MODES: tuple[CacheMode, ...] = get_args(CacheMode)
PRESETS: tuple[PresetName, ...] = get_args(PresetName)
THRESHOLD_METHODS: tuple[ThresholdMethod, ...] = get_args(ThresholdMethod)
CLOUD_MASK_MODES: tuple[CloudMaskMode, ...] = get_args(CloudMaskMode)
SIGN_NAMES: tuple[SignName, ...] = get_args(SignName)

# The water index: it runs without a model download, in seconds, on any machine.
DEFAULT_ENGINE: EngineName = "water-index"
DEFAULT_INDEX: IndexName = "auto"
DEFAULT_THRESHOLD_METHOD: ThresholdMethod = "auto"  # measured: docs/BENCHMARKS.md §8
DEFAULT_VOTE: VoteRule = "majority"
DEFAULT_DEVICE: DeviceName = "auto"  # a GPU when torch sees one, else the CPU
DEFAULT_MODEL = "google/paligemma2-3b-mix-224"
DEFAULT_CLASSES = ("water",)
DEFAULT_MAX_OBJECTS = 8  # per chip; sets the token budget
DEFAULT_STRETCH = (2.0, 98.0)  # percentiles of the scene-wide 8-bit stretch
DEFAULT_MIN_VALID_FRACTION = 0.05  # chips with less valid data are skipped
DEFAULT_MAX_PIXELS = 10_000_000_000  # per scene (its mosaic needs 2 bytes a pixel on disk)
CPU_BATCH_SIZE = 8  # measured: docs/BENCHMARKS.md §5
MODEL_OVERLAP = 32  # objects cut by a chip edge get context from the next chip
PIXELWISE_ENGINES: tuple[EngineName, ...] = ("water-index",)  # overlap changes nothing but the cost
OUTPUT_SUFFIX = ".gpkg"

# Clouds: masked pixels are not observed (left out of the footprint, the statistics, each chip's
# valid share). auto: the mask the data has (a STAC item's SCL or QA_PIXEL asset, a band described so).
DEFAULT_CLOUD_MASK: CloudMaskMode = "auto"
# Sentinel-2 L2A scene classes not observed: 0 no data, 1 saturated or defective, 3 cloud shadow,
# 8 cloud medium probability, 9 cloud high probability, 10 thin cirrus, 11 snow or ice.
SCL_MASKED: tuple[int, ...] = (0, 1, 3, 8, 9, 10, 11)
# Landsat Collection 2 QA_PIXEL bits not observed: 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud,
# 4 cloud shadow, 5 snow.
QA_PIXEL_MASKED_BITS: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
S2CLOUDLESS_THRESHOLD = 0.4  # cloud probability above which s2cloudless calls a pixel cloud (its default)
S2CLOUDLESS_RESOLUTION_M = 160.0  # s2cloudless runs at this resolution, as its authors advise

# Which band roles an engine needs, any one of each group.
ENGINE_ROLES: Mapping[EngineName, tuple[tuple[str, ...], ...]] = {
    "water-index": (("green",), ("nir", "swir")),
    "paligemma": (),
}


def default_overlap(engine: EngineName) -> int:
    """0 for a pixel-wise engine (the same answer, a quarter less to read), else MODEL_OVERLAP."""
    return 0 if engine in PIXELWISE_ENGINES else MODEL_OVERLAP


def missing_roles(engine: EngineName, roles: Mapping[str, int | None]) -> list[tuple[str, ...]]:
    """The role groups ``engine`` needs that ``roles`` (known band roles) does not fill."""
    return [group for group in ENGINE_ROLES[engine] if not any(roles.get(r) for r in group)]


def is_output_name(path: str) -> bool:
    """A segment output is a GeoPackage."""
    return path.lower().endswith(OUTPUT_SUFFIX)


def uses_model(engine: EngineName) -> bool:
    """Engines that load a model: a device, weights and the GPU matter."""
    return engine == "paligemma"


# ----------------------------------------------------------------------------- training data, water over time
# export / export-pairs, change and occurrence: the command line, the export dialog and the
# Processing algorithms show these defaults and choices (core.train.options, core.temporal.options).
EmptyPolicy = Literal["cap", "keep", "drop"]  # the dialogs list them in this order
EMPTY_POLICIES: tuple[EmptyPolicy, ...] = get_args(EmptyPolicy)
# What an input path is, by its suffix (core.inputs.scenes expands them; the dialog checks them)
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img", ".ntf", ".nc", ".hdf", ".h5")
LIST_SUFFIXES = (".txt", ".lst", ".list")  # a text file of inputs, one per line
STAC_SUFFIXES = (".json", ".geojson")  # a STAC Item, ItemCollection or Catalog
CHIP_SIZE = 224  # PaliGemma's smallest input
CHIP_SIZES = (224, 448, 896)  # PaliGemma's input sizes
EXPORT_OVERLAP = 0
EXPORT_MIN_OBJECT_PIXELS = 16
EXPORT_VALID_FRACTION = 0.2
EXPORT_BLOCK_SIZE = 4  # chips per side of a spatial block (blocks go whole to train or valid)
EXPORT_EMPTY_POLICY: EmptyPolicy = "cap"
EMPTY_CAP = 0.2  # with "cap": largest share of chips without water per split
EXPORT_MAX_NODATA_FRACTION = 0.5
PAIRS_MIN_OBJECT_PIXELS = 1
PAIRS_VALID_FRACTION = 0.1
PAIRS_EMPTY_POLICY: EmptyPolicy = "keep"
PAIRS_MASK_THRESHOLD = 150  # grey value of a JPEG mask above which a pixel is water
WATER_INDEX_LABELS = "water-index"  # export's labels from the water index instead of a file
CHANGE_MIN_AREA_M2 = 0.0
OCCURRENCE_PERMANENT = 90.0  # % of observations: permanent water from here
OCCURRENCE_RARE = 25.0  # % of observations: rare below, seasonal from here up to permanent
OCCURRENCE_MIN_OBSERVATIONS = 1
