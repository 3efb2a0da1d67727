"""Small helpers on shapes and CRSs that the mosaic, the polygons and water maps over time share.

CRS conversion (``to_pyproj``, ``to_rasterio``: whatever names a CRS, to the library that
needs it), polygonal unions and clean-ups, and reprojection that keeps long edges on the
ground. Here, below both core.geometry and core.temporal, so that neither imports the other
for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Union, overload

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    import pyproj
    import rasterio.crs
    from geopandas import GeoDataFrame
    from shapely.geometry.base import BaseGeometry

# What names a CRS here: a pyproj or rasterio CRS, an EPSG code, or a WKT/PROJ/"EPSG:n" text.
CrsLike = Union["pyproj.CRS", "rasterio.crs.CRS", str, int]

# Straight edges longer than this are split before a reprojection, so that an edge keeps its
# place on the ground (a straight line in EPSG:4326 is a curve in UTM, and the reverse).
DENSIFY_DEG = 0.001
DENSIFY_M = 100.0


@overload
def to_pyproj(crs: None) -> None: ...
@overload
def to_pyproj(crs: CrsLike) -> pyproj.CRS: ...
def to_pyproj(crs: CrsLike | None) -> pyproj.CRS | None:
    """pyproj.CRS from a rasterio CRS, an EPSG code, a WKT/PROJ string or a pyproj CRS."""
    import pyproj

    if crs is None:
        return None
    if isinstance(crs, pyproj.CRS):
        return crs
    if hasattr(crs, "to_wkt"):
        return pyproj.CRS.from_wkt(crs.to_wkt())
    return pyproj.CRS.from_user_input(crs)


def to_rasterio(crs: CrsLike | None) -> rasterio.crs.CRS | None:
    """rasterio CRS from anything CRS-like (None stays None: an ungeoreferenced raster)."""
    if crs is None:
        return None
    from rasterio.crs import CRS

    return crs if isinstance(crs, CRS) else CRS.from_user_input(crs)


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


def polygons_of(gdf: GeoDataFrame) -> GeoDataFrame:
    """The rows of ``gdf`` whose geometry is a non-empty (multi)polygon."""
    geoms = gdf.geometry
    keep = geoms.notna() & ~geoms.is_empty & geoms.geom_type.isin(["Polygon", "MultiPolygon"])
    return gdf[keep]


def reproject(geom: BaseGeometry, src: CrsLike, dst: CrsLike) -> BaseGeometry:
    """``geom`` from CRS ``src`` to ``dst``, long edges densified first; invalid results repaired."""
    import pyproj
    import shapely

    src_crs, dst_crs = to_pyproj(src), to_pyproj(dst)
    if geom is None or geom.is_empty or src_crs == dst_crs:
        return geom
    unit = src_crs.axis_info[0].unit_conversion_factor
    step = np.radians(DENSIFY_DEG) / unit if src_crs.is_geographic else DENSIFY_M / unit
    transformer = pyproj.Transformer.from_crs(src_crs, dst_crs, always_xy=True)
    out = shapely.transform(
        shapely.segmentize(geom, step), lambda x, y: transformer.transform(x, y), interleaved=False
    )
    if not np.isfinite(shapely.get_coordinates(out)).all():
        raise InputError("reproject_failed", src=src_crs.name, dst=dst_crs.name)
    return polygonal(out)


def reproject_parts(polys: np.ndarray, src: CrsLike, dst: CrsLike) -> np.ndarray:
    """An array of polygons from CRS ``src`` to ``dst``, as ``reproject`` does for one geometry."""
    import shapely

    from .overlay import parts

    if not len(polys) or to_pyproj(src) == to_pyproj(dst):
        return polys
    out = np.array([reproject(shapely.multipolygons(polys), src, dst)], dtype=object)
    return parts(out)
