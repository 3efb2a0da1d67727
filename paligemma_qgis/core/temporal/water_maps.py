"""Water maps over time: what a ``segment`` GeoPackage says was water, and where it looked.

Comparing two dates (core.temporal.change) or counting over many (core.temporal.occurrence) needs, for each
observation, two geometries: the water, and the *observed footprint*, the ground where the
run decided water or land. Outside the footprint (nodata, cloud holes masked as nodata,
skipped chips, outside the raster or the area of interest) a map says nothing; a place
there is unknown, never land.

This module holds the values (``Scene``, ``WaterMap``) and their geometry and date helpers;
core.temporal.map_reader reads them from segment outputs (and core.geometry.footprints
rebuilds the footprint of an old single-scene output with these helpers).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from ..geometry.shapes import reproject, to_pyproj, union
from .options import ISO_DATE

if TYPE_CHECKING:
    import geopandas as gpd
    import pyproj
    from shapely.geometry.base import BaseGeometry

SCENES_LAYER = "scenes"
WATER_LAYER = "water"
CHIPS_LAYER = "chips"
RUN_TABLE = "run"
# Straight edges longer than this are split before a reprojection, so that an edge keeps its
# place on the ground (a straight line in EPSG:4326 is a curve in UTM, and the reverse).
DENSIFY_DEG = 0.001
DENSIFY_M = 100.0


@dataclass
class Scene:
    """One observation: water and observed footprint (shapely, in the map's CRS).

    ``observed`` None means "everywhere": a reference without a footprint is taken as complete.
    """

    scene: str
    date: str | None
    water: BaseGeometry
    observed: BaseGeometry | None
    path: str = ""


@dataclass
class WaterMap:
    """The water and footprints of one input file (one or many scenes), in one CRS."""

    source: str
    crs: pyproj.CRS
    scenes: list[Scene]
    notes: list[str] = field(default_factory=list)

    @cached_property
    def water(self) -> BaseGeometry:
        return union([s.water for s in self.scenes])

    @cached_property
    def observed(self) -> BaseGeometry | None:
        """Union of the footprints, the water included; None when one of them is "everywhere"."""
        import shapely

        if any(s.observed is None for s in self.scenes):
            return None
        footprint, water = union([s.observed for s in self.scenes if s.observed is not None]), self.water
        if water.is_empty:
            return footprint
        shapely.prepare(footprint)
        return footprint if shapely.covers(footprint, water) else union([footprint, water])

    @property
    def date(self) -> str | None:
        """The date, or the ISO 8601 interval ``first/last`` of a many-date map."""
        dates = sorted({s.date for s in self.scenes if s.date})
        if not dates:
            return None
        return dates[0] if len(dates) == 1 else f"{dates[0]}/{dates[-1]}"

    def to_crs(self, crs: object) -> WaterMap:
        """The same map in ``crs`` (edges densified first, see DENSIFY_DEG / DENSIFY_M)."""
        dst = to_pyproj(crs)
        if self.crs is None or dst is None or dst == self.crs:
            return self
        scenes = [
            replace(
                s,
                water=reproject(s.water, self.crs, dst),
                observed=None if s.observed is None else reproject(s.observed, self.crs, dst),
            )
            for s in self.scenes
        ]
        return WaterMap(self.source, dst, scenes, list(self.notes))


# --------------------------------------------------------------------------- geometry
def as_crs(crs: object) -> pyproj.CRS:
    """``crs`` (anything ``to_pyproj`` reads, but not None) as a pyproj.CRS."""
    out = to_pyproj(crs)
    if out is None:
        raise ValueError("a CRS is needed here, got None")
    return out


def check_output_folder(path: Path, field: str = "output") -> None:
    """Fail before the work, not after it, when the output's folder is missing."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError("temporal_output_folder", field=field, path=str(path), folder=str(folder))


# --------------------------------------------------------------------------- dates


def normalise_date(value: object, what: str = "", field: str | None = None) -> str | None:
    """An ISO 8601 date text (``YYYY-MM-DD`` or a datetime), or None; InputError when not a date.

    ``what`` says where the value comes from (a file's scene date, an option), ``field`` the
    option it came from, if any.
    """
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):  # None, NaN, NaT
        return None
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    text = str(value).strip()
    if not text:
        return None
    if not ISO_DATE.match(text):
        raise InputError("water_map_date", field=field, what=what or text, value=repr(text))
    return text


def day(date: str | None) -> str | None:
    """The ``YYYY-MM-DD`` part of an ISO date (scenes of one day are one observation)."""
    return None if date is None else date[:10]


# --------------------------------------------------------------------------- reading


def read_layer(path: Path, layer: str, what: str) -> gpd.GeoDataFrame:
    import pyogrio

    try:
        return pyogrio.read_dataframe(path, layer=layer)
    except Exception as exc:  # pyogrio raises several error types
        raise InputError(
            "water_map_layer_unreadable", path=str(path), layer=layer, what=what, detail=str(exc)
        ) from None
