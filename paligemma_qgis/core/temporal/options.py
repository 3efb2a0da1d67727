"""What ``change`` and ``occurrence`` need, as frozen values that check themselves.

Every front end builds them through ``core.serial``: the command line from its argument
names (``unflatten``), the QGIS worker from the job's JSON object (``from_data``); the
``run`` table records ``flatten``'s form. A bad value fails where the options are made,
before a file is opened; what needs a file or a library (an input that is missing, a CRS
pyproj does not know) is checked when the command starts.

Standard library only: the QGIS plugin may build these too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import rules
from ..errors import InputError

# ISO 8601 dates as the maps and the options carry them: YYYY, YYYY-MM, YYYY-MM-DD, or a datetime.
ISO_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?)?)?$")
GEOTIFF_SUFFIXES = (".tif", ".tiff")


def check_date(value: str | None, what: str, field: str | None = None) -> None:
    """An InputError unless ``value`` is empty or an ISO 8601 date text."""
    text = (value or "").strip()
    if text and not ISO_DATE.match(text):
        raise InputError("water_map_date", field=field, what=what, value=repr(text))


def _require(ok: bool, name: str, value: float, bound: str) -> None:
    if not ok:
        raise InputError("option_range", field=name, value=f"{value:g}", bound=bound)


def _paths_as_text(options: object, names: tuple[str, ...]) -> None:
    """Path objects from Python callers as the text the codec and the run table carry."""
    for name in names:
        value = getattr(options, name)
        if value is not None and not isinstance(value, str):
            object.__setattr__(options, name, os.fspath(value))


def _is_gpkg(path: str) -> bool:
    return path.lower().endswith(rules.OUTPUT_SUFFIX)


@dataclass(frozen=True)
class ChangeOptions:
    """``change``: BEFORE (or known water) and AFTER -> gained / lost / persistent / unknown water."""

    after: str = ""  # a segment GeoPackage or a raster
    output: str = ""  # GeoPackage
    before: str | None = None  # a segment GeoPackage or a raster; may be None with a reference
    reference: str | None = None  # known water that counts as water before
    reference_layer: str | None = None
    before_date: str | None = None  # selects scenes of a dated run, or dates an undated map
    after_date: str | None = None
    aoi: str | tuple[float, ...] | None = None  # compare only inside (file or "xmin,ymin,xmax,ymax[,EPSG:x]")
    aoi_crs: str | None = None
    min_area_m2: float = rules.CHANGE_MIN_AREA_M2  # drop result polygons smaller (slivers of two grids)
    out_crs: str | None = None  # default: the CRS of BEFORE's water layer (else AFTER's)
    # Segment options by flat name (core.specs.segment_spec) for raster inputs: a JSON object
    # passed on as it is (typed Any because core.serial has no conversion for a dict).
    segment: Any = None
    workdir: str | None = None  # temporary segment outputs (default: system temp)
    overwrite: bool = False

    def __post_init__(self) -> None:
        _paths_as_text(self, ("after", "output", "before", "reference", "workdir"))
        if not self.after:
            raise InputError("change_after_missing", field="after")
        if not self.output:
            raise InputError("output_missing", field="output")
        if not _is_gpkg(self.output):
            raise InputError("output_not_gpkg", field="output", path=self.output)
        if self.before is None and self.reference is None:
            raise InputError("change_needs_before", field="before")
        if self.segment is not None and not isinstance(self.segment, Mapping):
            raise InputError("option_type", field="segment", expected="an object", value=repr(self.segment))
        if isinstance(self.aoi, list):  # a JSON list from Python callers: the same extent
            object.__setattr__(self, "aoi", tuple(self.aoi))
        _require(self.min_area_m2 >= 0, "min_area_m2", self.min_area_m2, "at least 0")
        check_date(self.before_date, "before date", "before_date")
        check_date(self.after_date, "after date", "after_date")


@dataclass(frozen=True)
class OccurrenceOptions:
    """``occurrence``: how often each place was water, over the inputs' dated observations."""

    inputs: tuple[str, ...] = ()  # segment GeoPackages and/or folders of them
    output: str = ""  # GeoTIFF
    classes: str | None = None  # GeoPackage of permanent / seasonal / rare polygons
    crs: str | None = None
    resolution: float | None = None  # pixel size in units of ``crs``
    permanent: float = rules.OCCURRENCE_PERMANENT
    rare: float = rules.OCCURRENCE_RARE
    min_observations: int = rules.OCCURRENCE_MIN_OBSERVATIONS
    start: str | None = None  # keep observations dated on or after (ISO date)
    end: str | None = None  # ... and on or before
    overwrite: bool = False
    block: int = 1024  # pixels per side of a counted block (memory, not the answer)

    def __post_init__(self) -> None:
        inputs = (self.inputs,) if isinstance(self.inputs, (str, os.PathLike)) else self.inputs
        object.__setattr__(self, "inputs", tuple(os.fspath(p) for p in inputs))  # one path, or a list
        _paths_as_text(self, ("output", "classes"))
        if not self.inputs:
            raise InputError("occurrence_inputs_missing", field="inputs")
        if not self.output:
            raise InputError("output_missing", field="output")
        if not self.output.lower().endswith(GEOTIFF_SUFFIXES):
            raise InputError("occurrence_output_not_tif", field="output", path=self.output)
        if self.classes and not _is_gpkg(self.classes):
            raise InputError("occurrence_classes_not_gpkg", field="classes", path=self.classes)
        if not 0 < self.rare <= self.permanent <= 100:
            raise InputError("occurrence_thresholds", field="rare", rare=self.rare, permanent=self.permanent)
        _require(self.min_observations >= 1, "min_observations", self.min_observations, "at least 1")
        if self.resolution is not None:
            _require(self.resolution > 0, "resolution", self.resolution, "more than 0")
        _require(self.block >= 1, "block", self.block, "at least 1")
        check_date(self.start, "start date", "start")
        check_date(self.end, "end date", "end")
