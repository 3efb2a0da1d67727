"""What a segment run is, as frozen values: how to read, the chip grid, the engine, the output, the run.

Each stage takes the part it needs (``open_scene`` a ``ReadSpec``, ``plan_scene`` a
``GridSpec`` ...), never the whole. Every spec checks itself when made, so a bad value
fails where it is built, before a file is opened; checks that need a raster or a library
(a band that does not exist, a CRS pyproj does not know) happen when the scene is planned.

Fields are named once, here; front ends build specs by their flat names (``serial.unflatten``):
the command line's argument names, the worker's job options and the ``run`` table's rows are
those names. ``metadata={"resumable": True}`` marks what does not change the polygons: a
resumed run may change it (``serial.fingerprint`` leaves it out).

Standard library only: the QGIS plugin builds specs too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import rules
from .errors import InputError
from .serial import flatten, unflatten

RESUMABLE = {"resumable": True}


def _at_least(name: str, value: float | None, low: float, *, inclusive: bool = True) -> None:
    if value is None:
        return
    if value < low or (not inclusive and value == low):
        bound = f"at least {low:g}" if inclusive else f"more than {low:g}"
        raise InputError("option_range", field=name, value=f"{value:g}", bound=bound)


def _within(name: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not low <= value <= high:
        raise InputError(
            "option_range", field=name, value=f"{value:g}", bound=f"between {low:g} and {high:g}"
        )


@dataclass(frozen=True)
class ReadSpec:
    """How a scene's raster is read: which bands are which, resampling, the stretch, bad blocks."""

    bands: tuple[int, ...] | None = None  # RGB rendering bands (1-based); one band: grey
    preset: rules.PresetName | None = None  # the sensor's band order
    green: int | None = None
    nir: int | None = None
    swir: int | None = None
    resolution: float | None = None  # target ground resolution in metres (resampled)
    stretch: tuple[float, float] = rules.DEFAULT_STRETCH
    stac_bands: tuple[str, ...] | None = None  # STAC assets by band common name
    on_read_error: rules.ReadErrorMode = "fail"  # skip: an unreadable block is nodata, counted
    # Clouds are not observed: rules.CloudMaskMode, or a mask raster (its non-zero values are clouds).
    cloud_mask: rules.CloudMaskMode | str = rules.DEFAULT_CLOUD_MASK
    mask_classes: tuple[int, ...] | None = None  # SCL classes, QA_PIXEL bits or mask values (default: rules)

    def __post_init__(self) -> None:
        if self.bands is not None and len(self.bands) not in (1, 3):
            raise InputError("bands_count", field="bands", value=",".join(map(str, self.bands)))
        for name in ("green", "nir", "swir"):
            _at_least(name, getattr(self, name), 1)
        for b in self.bands or ():
            _at_least("bands", b, 1)
        _at_least("resolution", self.resolution, 0, inclusive=False)
        lo, hi = self.stretch
        if not 0 <= lo < hi <= 100:
            raise InputError("stretch_range", field="stretch", low=lo, high=hi)
        if not self.cloud_mask:
            raise InputError(
                "option_choice", field="cloud_mask", value="''", choices="auto, none, ... or a file"
            )
        for c in self.mask_classes or ():
            _within("mask_classes", c, 0, 65535)
        if self.mask_classes is not None and self.cloud_mask in ("none", "s2cloudless"):
            raise InputError(
                "cloud_mask_classes",
                field="mask_classes",
                value=",".join(map(str, self.mask_classes)),
                kind=self.cloud_mask,
            )
        if self.cloud_mask == "qa_pixel":
            for c in self.mask_classes or ():
                _within("mask_classes", c, 0, 15)


@dataclass(frozen=True)
class SearchSpec:
    """A STAC API search whose items are the run's scenes (instead of input rasters).

    The items found are kept beside the output until it is written (``run.found_items``), so an
    interrupted run continues with the same items whatever the catalogue publishes meanwhile.
    """

    stac_api: str | None = None  # the API's landing page URL
    collection: tuple[str, ...] | None = None
    bbox: tuple[float, float, float, float] | None = None  # west, south, east, north in degrees
    datetime: str | None = None  # a date, or START/END ('..' for an open end)
    max_cloud: float | None = None  # the items' eo:cloud_cover, percent
    limit: int | None = None  # at most this many items (the first found, by date)
    sign: rules.SignName | None = field(default=None, metadata=RESUMABLE)

    @property
    def active(self) -> bool:
        return bool(self.stac_api)

    def __post_init__(self) -> None:
        if not self.active:
            for name in ("collection", "bbox", "datetime", "max_cloud", "limit", "sign"):
                if getattr(self, name) is not None:
                    raise InputError("search_without_api", field=name)
            return
        needs = [n for n, v in (("a collection", self.collection), ("a date range", self.datetime)) if not v]
        if needs:
            raise InputError(
                "search_needs",
                field="collection" if self.collection is None else "datetime",
                needs=" and ".join(needs),
            )
        if self.bbox is not None:
            w, s, e, n = self.bbox
            if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s < n <= 90):
                raise InputError("search_bbox", field="bbox", value=",".join(f"{v:g}" for v in self.bbox))
        _check_datetime(self.datetime or "")
        _within("max_cloud", self.max_cloud, 0, 100)
        _at_least("limit", self.limit, 1)


def _check_datetime(text: str) -> None:
    """A date (2021-06-01, 2021-06-01T10:00:00Z) or START/END with '..' for an open end."""
    import datetime as dt
    import re

    parts = text.split("/")
    ok = 1 <= len(parts) <= 2 and not all(p in ("..", "") for p in parts)
    for part in parts if ok else ():
        if (part in ("..", "") and len(parts) == 2) or re.fullmatch(r"\d{4}(-\d\d)?", part):
            continue  # an open end; a year or a month (the API takes all of it)
        try:
            dt.datetime.fromisoformat(part.replace("Z", "+00:00"))
        except ValueError:
            ok = False
    if not ok:
        raise InputError("search_datetime", field="datetime", value=text)


@dataclass(frozen=True)
class GridSpec:
    """The chips: their overlap, the area of interest, which chips are worth segmenting."""

    overlap: int | None = None  # None: rules.default_overlap(engine), filled in by SegmentSpec
    aoi: str | tuple[float, ...] | None = None  # vector file, or xmin,ymin,xmax,ymax
    aoi_crs: str | None = None  # CRS of an extent (default: the raster's)
    min_valid_fraction: float = rules.DEFAULT_MIN_VALID_FRACTION
    max_pixels: int = field(default=rules.DEFAULT_MAX_PIXELS, metadata=RESUMABLE)

    def __post_init__(self) -> None:
        _at_least("overlap", self.overlap, 0)
        _within("min_valid_fraction", self.min_valid_fraction, 0.0, 1.0)
        _at_least("max_pixels", self.max_pixels, 0, inclusive=False)
        if isinstance(self.aoi, tuple) and len(self.aoi) != 4:
            raise InputError("aoi_extent", field="aoi", value=",".join(map(str, self.aoi)))


@dataclass(frozen=True)
class WaterIndexSpec:
    """The water index engine: which index, and a fixed threshold or the scene's own."""

    threshold: float | None = None  # None: chosen per scene by ``threshold_method``
    index: rules.IndexName = rules.DEFAULT_INDEX
    threshold_method: rules.ThresholdMethod = rules.DEFAULT_THRESHOLD_METHOD


@dataclass(frozen=True)
class ModelSpec:
    """The PaliGemma engine: the model, its mask codec, the device and how it decodes."""

    model: str | None = None  # Hugging Face id or folder (default rules.DEFAULT_MODEL)
    vae: str | None = None  # vae-oid.npz (default: found by core.model.weights)
    allow_custom_vae: bool = False
    device: rules.DeviceName | str | None = field(default=None, metadata=RESUMABLE)
    classes: tuple[str, ...] = rules.DEFAULT_CLASSES
    constrained: bool = True
    max_new_tokens: int | None = None
    max_objects: int | None = None  # per chip (default rules.DEFAULT_MAX_OBJECTS)
    dtype: rules.DtypeName | None = field(default=None, metadata=RESUMABLE)
    cache: rules.CacheMode = field(default="dynamic", metadata=RESUMABLE)
    compile: bool = field(default=False, metadata=RESUMABLE)

    def __post_init__(self) -> None:
        _at_least("max_new_tokens", self.max_new_tokens, 1)
        _at_least("max_objects", self.max_objects, 1)
        if not self.classes:
            raise InputError("classes_missing", field="classes")
        if self.compile and self.cache != "static":
            raise InputError("compile_needs_static", field="compile")


@dataclass(frozen=True)
class EngineSpec:
    """Which engine, and each engine's options (only the chosen one's are used)."""

    name: rules.EngineName = field(default=rules.DEFAULT_ENGINE, metadata={"flat": "engine"})
    water_index: WaterIndexSpec = field(default_factory=WaterIndexSpec)
    paligemma: ModelSpec = field(default_factory=ModelSpec)
    batch_size: int | None = field(default=None, metadata=RESUMABLE)  # None: the engine's choice

    def __post_init__(self) -> None:
        _at_least("batch_size", self.batch_size, 1)


@dataclass(frozen=True)
class OutputSpec:
    """What is written: the GeoPackage, how overlapping chips vote, which polygons are kept."""

    path: str = field(default="", metadata={"flat": "output", **RESUMABLE})
    vote: rules.VoteRule = rules.DEFAULT_VOTE
    min_area_m2: float = 0.0
    simplify: float = 0.0  # tolerance in raster CRS units
    out_crs: str | None = field(default=None, metadata=RESUMABLE)  # default: the scenes' CRS
    dissolve: bool = field(default=False, metadata=RESUMABLE)  # also water merged across scenes
    mask_tif: str | None = None  # single-scene runs only
    overwrite: bool = field(default=False, metadata=RESUMABLE)

    def __post_init__(self) -> None:
        if not self.path:
            raise InputError("output_missing", field="output")
        if not rules.is_output_name(self.path):
            raise InputError("output_not_gpkg", field="output", path=self.path)
        _at_least("min_area_m2", self.min_area_m2, 0)
        _at_least("simplify", self.simplify, 0)
        if self.mask_tif and _same_path(self.mask_tif, self.path):
            raise InputError("mask_is_output", field="mask_tif", path=self.path)


@dataclass(frozen=True)
class RunSpec:
    """How the run goes: where it runs, what happens to an interrupted run, failing scenes."""

    executor: rules.ExecutorName = field(default="local", metadata=RESUMABLE)
    ray_address: str | None = field(default=None, metadata=RESUMABLE)  # None: a local Ray
    ray_actors: int | None = field(default=None, metadata=RESUMABLE)
    ray_gpus_per_actor: float | None = field(default=None, metadata=RESUMABLE)
    restart: bool = field(default=False, metadata=RESUMABLE)  # ignore (delete) an interrupted run's journal
    restart_if_changed: bool = field(default=False, metadata=RESUMABLE)  # replace a journal of other options
    fail_fast: bool = field(default=False, metadata=RESUMABLE)
    workdir: str | None = field(default=None, metadata=RESUMABLE)  # temp mosaics (default: system temp)

    def __post_init__(self) -> None:
        _at_least("ray_actors", self.ray_actors, 1)
        _at_least("ray_gpus_per_actor", self.ray_gpus_per_actor, 0)


@dataclass(frozen=True)
class SegmentSpec:
    """One segment run: its inputs and the five parts above."""

    # Inputs as given (files, folders, globs, lists, VRT, STAC JSON); the journal hashes the
    # scenes they expand to instead, so a folder and a glob of the same scenes resume each other.
    raster: tuple[str, ...] = field(metadata=RESUMABLE)
    output: OutputSpec
    read: ReadSpec = field(default_factory=ReadSpec)
    grid: GridSpec = field(default_factory=GridSpec)
    engine: EngineSpec = field(default_factory=EngineSpec)
    run: RunSpec = field(default_factory=RunSpec)
    search: SearchSpec = field(default_factory=SearchSpec)  # scenes found by a STAC search instead
    recursive: bool = field(default=False, metadata=RESUMABLE)  # a folder's subfolders are read too

    def __post_init__(self) -> None:
        if self.search.active:
            if self.raster:
                raise InputError("search_and_inputs", field="raster")
            if self.search.bbox is None and self.grid.aoi in (None, ""):
                raise InputError(
                    "search_needs", field="bbox", needs="an area: a bounding box or an area of interest"
                )
        elif not self.raster or not all(self.raster):
            raise InputError("input_missing", field="raster")

    @property
    def overlap(self) -> int:
        """The chip overlap used: the grid's, or the engine's default."""
        if self.grid.overlap is not None:
            return self.grid.overlap
        return rules.default_overlap(self.engine.name)

    def resolved(self) -> SegmentSpec:
        """This spec with the defaults filled in, as the journal and the run table record it.

        The engine's overlap; a search's bounding box is the area mapped when no AOI is given,
        and a search's AOI extent without a CRS is in degrees (longitude, latitude).
        """
        grid = self.grid
        if grid.overlap is None:
            grid = dataclasses.replace(grid, overlap=self.overlap)
        if self.search.active and self.search.bbox is not None and grid.aoi in (None, ""):
            grid = dataclasses.replace(grid, aoi=self.search.bbox, aoi_crs="EPSG:4326")
        elif self.search.active and isinstance(grid.aoi, tuple) and grid.aoi_crs is None:
            grid = dataclasses.replace(grid, aoi_crs="EPSG:4326")  # no raster to lend its CRS: degrees
        return self if grid == self.grid else dataclasses.replace(self, grid=grid)

    def flat(self) -> dict[str, Any]:
        return flatten(self)


def segment_spec(flat: Mapping[str, Any] | None = None, /, **values: Any) -> SegmentSpec:
    """The one door from a front end's flat options (argument names, job options, run table rows).

    ``segment_spec({"raster": "a.tif", "output": "a.gpkg", "nir": 4})``, or the same as keywords.
    A STAC search (``stac_api`` ...) needs no ``raster``.
    """
    return unflatten(SegmentSpec, {"raster": (), **(flat or {}), **values})


def _same_path(a: str, b: str) -> bool:
    import os

    return os.path.abspath(a) == os.path.abspath(b)
