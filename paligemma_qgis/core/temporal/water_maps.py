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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
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


# --------------------------------------------------------------------------- geometry helpers


def to_pyproj(crs: object) -> pyproj.CRS | None:
    """pyproj.CRS from a rasterio or pyproj CRS, an EPSG code, WKT or PROJ text; None for None."""
    from ..geometry.mosaic import _to_pyproj

    return _to_pyproj(crs)


def as_crs(crs: object) -> pyproj.CRS:
    """``crs`` (anything ``to_pyproj`` reads, but not None) as a pyproj.CRS."""
    out = to_pyproj(crs)
    if out is None:
        raise ValueError("a CRS is needed here, got None")
    return out


def union(geoms: Sequence[BaseGeometry | None]) -> BaseGeometry:
    """The union of polygonal geometries as one (multi)polygon.

    Maps are mostly disjoint polygons already (segment dissolves them): those are only
    gathered into a MultiPolygon, and GEOS's union (which re-nodes every edge) runs only
    when they overlap or share edges.
    """
    import shapely

    geoms = [g for g in geoms if g is not None and not g.is_empty]
    if not geoms:
        return shapely.Polygon()
    if len(geoms) == 1:
        return polygonal(geoms[0])
    polys = shapely.get_parts(np.array(geoms, dtype=object))
    polys = polys[shapely.get_type_id(polys) == 3]
    gathered = shapely.multipolygons(polys)
    if shapely.is_valid(gathered):
        return gathered
    return polygonal(shapely.union_all(np.array(geoms, dtype=object)))


def polygonal(geom: BaseGeometry | None) -> BaseGeometry:
    """The polygons of a geometry (an overlay can leave lines and points where shapes touch)."""
    import shapely

    if geom is None or geom.is_empty:
        return shapely.Polygon()
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon")]
    if not parts:
        return shapely.Polygon()
    return shapely.union_all(np.array(parts, dtype=object))


def reproject(geom: BaseGeometry, src: object, dst: object) -> BaseGeometry:
    """``geom`` from CRS ``src`` to ``dst``, long edges densified first; invalid results repaired."""
    import pyproj
    import shapely

    src, dst = as_crs(src), as_crs(dst)
    if geom is None or geom.is_empty or src == dst:
        return geom
    unit = src.axis_info[0].unit_conversion_factor
    step = np.radians(DENSIFY_DEG) / unit if src.is_geographic else DENSIFY_M / unit
    transformer = pyproj.Transformer.from_crs(src, dst, always_xy=True)
    out = shapely.transform(
        shapely.segmentize(geom, step), lambda x, y: transformer.transform(x, y), interleaved=False
    )
    if not np.isfinite(shapely.get_coordinates(out)).all():
        raise InputError("water_map_reproject", source_crs=src.name, target_crs=dst.name)
    return polygonal(out)


def reproject_parts(polys: np.ndarray, src: object, dst: object) -> np.ndarray:
    """An array of polygons from CRS ``src`` to ``dst``, as ``reproject`` does for one geometry."""
    import shapely

    from ..geometry.overlay import parts

    if not len(polys) or to_pyproj(src) == to_pyproj(dst):
        return polys
    out = np.array([reproject(shapely.multipolygons(polys), src, dst)], dtype=object)
    return parts(out)


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


def polygons_of(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    geoms = gdf.geometry
    keep = geoms.notna() & ~geoms.is_empty & geoms.geom_type.isin(["Polygon", "MultiPolygon"])
    return gdf[keep]
