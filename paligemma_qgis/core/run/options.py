"""SegmentOptions: everything a segmentation run needs, its checks, and its fingerprint.

The options travel as JSON (the QGIS worker, Ray tasks, the journal), so they are one flat
dataclass of plain values. ``validate()`` holds every check that needs no raster, so a bad
command fails before a model is loaded or a file is opened; checks that need the raster
(bands, overlap against the chip size) happen when each scene is planned.

``fingerprint()`` hashes the options that change the answer. A resumed run compares it
with its journal: a changed command cannot silently continue another one's work.

Defaults that depend on the engine (the chip overlap) are filled in by
``with_engine_defaults()`` before anything else sees the options, so the fingerprint, the
journal, the run table (and so ``revectorize``) and every executor hold the value used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

EXECUTORS = ("local", "ray")
READ_ERROR_MODES = ("fail", "skip")
DEFAULT_MAX_PIXELS = 10_000_000_000  # per scene (the mosaic needs 2 bytes per pixel on disk)
MODEL_OVERLAP = 32  # default chip overlap of model engines: objects cut by a chip edge get context
PIXELWISE_ENGINES = ("water-index",)  # answer per pixel: overlap changes nothing but the cost

# Options that do not change the polygons: a resumed run may change them.
_RESUMABLE = {
    "output",
    "overwrite",
    "workdir",
    "batch_size",
    "device",
    "cache",
    "compile",
    "executor",
    "ray_address",
    "ray_actors",
    "ray_gpus_per_actor",
    "restart",
    "restart_if_changed",
    "fail_fast",
    "max_pixels",
    "out_crs",  # applied when the output is assembled, from the journal
    "dissolve",
}


@dataclass
class SegmentOptions:
    """Everything a segmentation run needs; JSON-serialisable (the QGIS worker sends it as JSON)."""

    raster: str | list[str]  # one input, or several (files, folders, globs, lists, VRT, STAC JSON)
    output: str
    engine: str = "water-index"
    # raster reading
    bands: str | None = None  # RGB rendering bands, "3,2,1" (1-based) or one band for grey
    preset: str | None = None  # sentinel2, landsat89, naip
    green: int | None = None
    nir: int | None = None
    swir: int | None = None
    resolution: float | None = None  # target ground resolution in metres (resampled)
    stretch: tuple[float, float] = (2.0, 98.0)  # percentiles of the scene-wide 8-bit stretch
    stac_bands: list[str] | None = None  # STAC assets by band common name (default: what the engine needs)
    on_read_error: str = "fail"  # fail, or skip: an unreadable block is mapped as nodata and counted
    # water index engine
    threshold: float | None = None  # None: Otsu over the scene
    index: str = "auto"  # auto (MNDWI when SWIR is known, else NDWI), mndwi, ndwi
    # grid
    overlap: int | None = None  # None: 0 for pixel-wise engines, MODEL_OVERLAP for models
    aoi: str | list[float] | None = None  # vector file, or "xmin,ymin,xmax,ymax[,EPSG:x]", or a list
    aoi_crs: str | None = None  # CRS of an extent or list AOI (default: the raster's)
    min_valid_fraction: float = 0.05
    max_pixels: float = DEFAULT_MAX_PIXELS  # per scene, inside the AOI
    batch_size: int | None = None  # None: the engine's choice (GPU: what memory holds), else 8
    # outputs
    vote: str = "majority"  # how overlapping chips decide a pixel: majority, any, all
    min_area_m2: float = 0.0
    simplify: float = 0.0  # tolerance in raster CRS units
    out_crs: str | None = None  # default: the scenes' CRS when they share one, else EPSG:4326
    dissolve: bool = False  # also a water_dissolved layer: water merged across overlapping scenes
    mask_tif: str | None = None  # single-scene runs only
    overwrite: bool = False
    workdir: str | None = None  # where the mosaic's temp files go (default: system temp)
    # region runs
    restart: bool = False  # ignore (and delete) the journal of an interrupted run
    restart_if_changed: bool = False  # continue a journal of the same options, replace one of others
    fail_fast: bool = False  # stop at the first failing scene (default: record it, go on)
    executor: str = "local"  # local, or ray
    ray_address: str | None = None  # None: a local Ray; "auto"; "ray://host:10001"
    ray_actors: int | None = None  # model actors (default: one per GPU, or 1 without GPUs)
    ray_gpus_per_actor: float | None = None  # default: 1 when the cluster has GPUs, else 0
    # paligemma engine
    model: str | None = None
    vae: str | None = None
    allow_custom_vae: bool = False
    device: str | None = None
    classes: list[str] | None = None
    constrained: bool = True
    max_new_tokens: int | None = None
    max_objects: int | None = None  # per chip (default 8); sets the token budget when max_new_tokens is None
    dtype: str | None = None  # None/auto: bfloat16 on CUDA with native bf16, float32 elsewhere
    cache: str = "dynamic"  # "static": the engine's own loop over a pre-allocated KV cache
    compile: bool = False  # static cache only: torch.compile the decode step (CUDA graphs on CUDA)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmentOptions:
        """Options from a JSON object; unknown keys are an error (a typo must not pass silently)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown segment option(s): {', '.join(unknown)}")
        missing = [k for k in ("raster", "output") if not data.get(k)]
        if missing:
            raise InputError(f"segment options need {' and '.join(missing)}")
        values = dict(data)
        if isinstance(values.get("bands"), (list, tuple)):
            values["bands"] = ",".join(str(int(b)) for b in values["bands"])
        if values.get("stretch") is not None:
            values["stretch"] = tuple(float(v) for v in values["stretch"])
        for key in ("classes", "stac_bands"):
            if isinstance(values.get(key), str):
                values[key] = [c.strip() for c in values[key].replace(";", ",").split(",") if c.strip()]
        if isinstance(values.get("raster"), tuple):
            values["raster"] = list(values["raster"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["stretch"] = list(self.stretch)
        return d

    @property
    def inputs(self) -> list[str]:
        """The inputs as given (before folders, lists and STAC files are expanded)."""
        return [str(r) for r in self.raster] if isinstance(self.raster, (list, tuple)) else [str(self.raster)]

    def with_engine_defaults(self, segmenter: Any = None) -> SegmentOptions:
        """These options with the engine-dependent defaults filled in (``segmenter``: one given)."""
        if self.overlap is not None:
            return self
        return dataclasses.replace(self, overlap=default_overlap(self.engine, segmenter))

    def fingerprint(self, scenes: list[Any] = ()) -> tuple[str, dict[str, Any]]:
        """(hash, the hashed values): options that change the answer, plus the scene list."""
        resolved = self.with_engine_defaults().to_dict()
        values = {k: v for k, v in resolved.items() if k not in _RESUMABLE and k != "raster"}
        values["scenes"] = [[s.id, s.path] for s in scenes]
        text = json.dumps(values, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16], json.loads(text)

    def validate(self) -> None:
        """Every check that needs no raster: a bad command fails before any heavy work."""
        from ..geometry.mosaic import VOTE_RULES

        out = Path(self.output)
        if out.suffix.lower() != ".gpkg":
            raise InputError(f"{out}: output must be a GeoPackage (.gpkg)")
        if not self.inputs or not all(self.inputs):
            raise InputError("no input raster given")
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {self.batch_size}")
        if not 0 <= self.min_valid_fraction <= 1:
            raise InputError(f"min valid fraction must be in [0, 1], got {self.min_valid_fraction}")
        if self.overlap is not None and self.overlap < 0:
            raise InputError(f"overlap must be 0 or more pixels, got {self.overlap}")
        if self.max_pixels <= 0:
            raise InputError(f"max pixels must be positive, got {self.max_pixels:g}")
        for name, value, allowed in (
            ("executor", self.executor, EXECUTORS),
            ("vote rule", self.vote, VOTE_RULES),
            ("on read error", self.on_read_error, READ_ERROR_MODES),
        ):
            if value not in allowed:
                raise InputError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
        if self.ray_actors is not None and self.ray_actors < 1:
            raise InputError(f"Ray actors must be at least 1, got {self.ray_actors}")
        if self.out_crs:
            import pyproj

            try:
                pyproj.CRS.from_user_input(self.out_crs)
            except pyproj.exceptions.CRSError:
                raise InputError(f"{self.out_crs}: unknown output CRS (use e.g. EPSG:4326)") from None
        if self.mask_tif:
            mask = Path(self.mask_tif)
            if mask.resolve() == out.resolve():
                raise InputError(f"{out}: the mask GeoTIFF and the GeoPackage must be different files")


def default_overlap(engine: str, segmenter: Any = None) -> int:
    """0 for a pixel-wise engine (same answer, a quarter less to read), else MODEL_OVERLAP.

    A segmenter instance decides by its ``pixelwise`` attribute; otherwise the engine name.
    """
    if segmenter is not None and hasattr(segmenter, "bands_needed"):
        from ..model.segmenter import engine_needs

        return 0 if engine_needs(segmenter).pixelwise else MODEL_OVERLAP
    return 0 if engine in PIXELWISE_ENGINES else MODEL_OVERLAP
