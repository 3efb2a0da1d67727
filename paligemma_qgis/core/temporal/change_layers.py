"""The overlay of two water maps (``compare``) and the layers ``change`` writes from it.

Stages, each on in-memory values (shapely geometries, GeoDataFrames), so each can be tested
without a file: ``compare`` (two maps in one CRS -> the pieces of each class),
``ChangePieces.to_crs``, ``class_layers`` (pieces -> one GeoDataFrame per class, areas in
m2), ``observed_layer`` and ``summary_table``. core.temporal.change reads the maps and
writes the GeoPackage around them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..geometry.shapes import polygonal, reproject, reproject_parts
from .water_maps import WaterMap

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd
    import pyproj
    from shapely.geometry.base import BaseGeometry

CLASSES = ("gained", "lost", "persistent", "unknown")
OBSERVED_LAYER = "observed"


@dataclass(frozen=True)
class ChangePieces:
    """What ``compare`` finds: arrays of polygons per class, and the geometry both dates observed."""

    gained: np.ndarray
    lost: np.ndarray
    persistent: np.ndarray
    unknown_before: np.ndarray  # water before, where AFTER did not look
    unknown_after: np.ndarray  # water after, where BEFORE did not look
    observed: BaseGeometry

    def to_crs(self, src: pyproj.CRS, dst: pyproj.CRS) -> ChangePieces:
        """The same pieces in ``dst`` (edges densified first, as core.temporal.water_maps.reproject)."""
        if src == dst:
            return self
        return ChangePieces(
            gained=reproject_parts(self.gained, src, dst),
            lost=reproject_parts(self.lost, src, dst),
            persistent=reproject_parts(self.persistent, src, dst),
            unknown_before=reproject_parts(self.unknown_before, src, dst),
            unknown_after=reproject_parts(self.unknown_after, src, dst),
            observed=reproject(self.observed, src, dst),
        )


def precision(crs: pyproj.CRS) -> float:
    """The grid overlays snap to, in CRS units: 0.1 mm, or 1e-9 degree (about 0.1 mm) in a geographic CRS.

    Maps derived from the same pixels (a segment output and an occurrence class drawn on its
    grid) can place one pixel corner a few ulps apart; without a common precision their
    difference is a scatter of zero-area slivers.
    """
    unit = crs.axis_info[0].unit_conversion_factor  # radians or metres per CRS unit
    return math.radians(1e-9) / unit if crs.is_geographic else 1e-4 / unit


def _overlay(op: str, a: BaseGeometry, b: BaseGeometry, grid: float) -> BaseGeometry:
    """``a op b`` as polygons, with coordinates on a precision grid of ``grid`` CRS units."""
    import shapely

    return polygonal(getattr(shapely, op)(a, b, grid_size=grid))


def _both_observed(
    ob: BaseGeometry | None, oa: BaseGeometry | None, aoi: BaseGeometry | None, grid: float
) -> BaseGeometry | None:
    """Where both dates looked (inside the area of interest); None: two complete maps, everywhere."""
    if ob is None and oa is None:
        both = None
    elif ob is None:
        both = oa
    elif oa is None:
        both = ob
    else:
        both = _overlay("intersection", ob, oa, grid)
    if aoi is not None:
        both = aoi if both is None else _overlay("intersection", both, aoi, grid)
    return both


def compare(before: WaterMap, after: WaterMap, aoi: BaseGeometry | None = None) -> ChangePieces:
    """The classes of two water maps in one CRS (see core.temporal.change), piece by piece."""
    from ..geometry import overlay

    if before.crs != after.crs:
        raise ValueError("compare() needs two maps in one CRS")
    grid = precision(before.crs)
    wb, wa = overlay.parts(before.water), overlay.parts(after.water)
    ob, oa = before.observed, after.observed
    both = _both_observed(ob, oa, aoi, grid)
    if both is None:  # two complete maps (reference vs reference): everything is known
        both = _overlay("union", before.water, after.water, grid)
        known_b, known_a = wb, wa
    else:
        known_b = overlay.intersection(wb, overlay.parts(both), grid)
        known_a = overlay.intersection(wa, overlay.parts(both), grid)
    empty = np.empty(0, dtype=object)
    unknown_b = overlay.difference(wb, overlay.parts(oa), grid) if oa is not None else empty
    unknown_a = overlay.difference(wa, overlay.parts(ob), grid) if ob is not None else empty
    if aoi is not None:
        unknown_b = overlay.intersection(unknown_b, overlay.parts(aoi), grid)
        unknown_a = overlay.intersection(unknown_a, overlay.parts(aoi), grid)
    return ChangePieces(
        gained=overlay.difference(known_a, known_b, grid),
        lost=overlay.difference(known_b, known_a, grid),
        persistent=overlay.intersection(known_a, known_b, grid),
        unknown_before=unknown_b,
        unknown_after=unknown_a,
        observed=both,
    )


def polygon_frame(
    geom: BaseGeometry | np.ndarray, crs: pyproj.CRS, columns: Mapping[str, object], min_area_m2: float
) -> gpd.GeoDataFrame:
    """One row per polygon of ``geom`` (a geometry or an array of polygons), top to bottom, with
    area_m2 and perimeter_m (ground values); polygons smaller than ``min_area_m2`` are dropped."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    from ..geometry.overlay import parts as polygons
    from ..geometry.vectorize import metric_area_perimeter

    parts = polygons(geom)
    if len(parts):
        b = shapely.bounds(parts)
        parts = parts[np.lexsort((b[:, 0], -b[:, 3]))]
    geo = gpd.GeoSeries(parts, crs=crs)
    area, perim = metric_area_perimeter(geo)
    keep = area >= min_area_m2 if min_area_m2 > 0 else np.ones(len(geo), bool)
    n = int(keep.sum())
    data: dict[str, pd.Series] = {
        name: pd.Series([value] * n, dtype=object) for name, value in columns.items()
    }
    data["area_m2"] = pd.Series(area[keep], dtype="float64")
    data["perimeter_m"] = pd.Series(perim[keep], dtype="float64")
    gdf = gpd.GeoDataFrame(data, geometry=geo[keep].reset_index(drop=True), crs=crs)
    gdf.attrs["geometry_type"] = "Polygon"
    return gdf


def class_layers(
    pieces: ChangePieces, crs: pyproj.CRS, dates: Mapping[str, str | None], min_area_m2: float
) -> dict[str, gpd.GeoDataFrame]:
    """gained, lost, persistent and unknown (with ``water_on``: the date that saw the water)."""
    import pandas as pd

    layers = {
        name: polygon_frame(getattr(pieces, name), crs, {"class": name, **dates}, min_area_m2)
        for name in ("gained", "lost", "persistent")
    }
    unknown = [
        polygon_frame(
            pieces.unknown_before, crs, {"class": "unknown", **dates, "water_on": "before"}, min_area_m2
        ),
        polygon_frame(
            pieces.unknown_after, crs, {"class": "unknown", **dates, "water_on": "after"}, min_area_m2
        ),
    ]
    merged = pd.concat(unknown, ignore_index=True)
    merged.attrs["geometry_type"] = "Polygon"
    layers["unknown"] = merged
    return layers


def observed_layer(geom: BaseGeometry, crs: pyproj.CRS, dates: Mapping[str, str | None]) -> gpd.GeoDataFrame:
    """Where both dates looked, as one MultiPolygon row with its ground area."""
    import geopandas as gpd
    import shapely

    from ..geometry.vectorize import metric_area_perimeter

    if geom.is_empty:
        geoms: list[BaseGeometry] = []
    else:
        geoms = [shapely.MultiPolygon(list(shapely.get_parts(geom)))]
    geo = gpd.GeoSeries(geoms, crs=crs)
    area, _ = metric_area_perimeter(geo)
    gdf = gpd.GeoDataFrame({**{k: [v] * len(geoms) for k, v in dates.items()}, "area_m2": area}, geometry=geo)
    gdf.attrs["geometry_type"] = "MultiPolygon"
    return gdf


def summary_table(
    layers: Mapping[str, gpd.GeoDataFrame], observed: gpd.GeoDataFrame, dates: Mapping[str, str | None]
) -> pd.DataFrame:
    """Area and polygon count per class and of the observed area (the ``summary`` table)."""
    import pandas as pd

    areas = [float(layers[c]["area_m2"].sum()) for c in CLASSES]
    observed_m2 = float(observed["area_m2"].sum())
    n = len(CLASSES) + 1
    return pd.DataFrame(
        {
            "class": [*CLASSES, OBSERVED_LAYER],
            "area_m2": [*areas, observed_m2],
            "area_km2": [*(a / 1e6 for a in areas), observed_m2 / 1e6],
            "polygons": [*(int(len(layers[c])) for c in CLASSES), len(observed)],
            "before_date": [dates["before_date"]] * n,
            "after_date": [dates["after_date"]] * n,
        }
    )
