"""Mosaic -> water polygons (dissolved across block seams), metric areas, GeoPackage output.

Polygons are traced block by block in *pixel* coordinates (``trace``: integers, exactly
representable, so pieces of one lake cut by a block seam share their seam edges bit for
bit and merge without slivers or gaps). The raster's affine transform (rotation included)
is applied once, at the end. Connectivity is 4 (pixels touching only at a corner are
separate polygons), which keeps every polygon valid.

Areas and perimeters are measured in a Lambert azimuthal equal-area projection on the
data's own datum, centred on the 2x2 degree cell holding each polygon's centroid
(``metric_area_perimeter``). Equal-area means areas are exact wherever the polygon lies;
perimeter scale error within 160 km of the centre is below 1e-4. Edges are first densified
in the source CRS (0.01 degree or 1 km), because a straight pixel edge in EPSG:4326 or Web
Mercator is a curve on the ground. Works the same for UTM, EPSG:4326 and EPSG:3857 input.
Perimeters include the shores of islands (hole rings).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import PaliGemmaQgisError
from ..progress import Progress
from ..run.atomic import atomic_output
from .mask_source import GeoMaskBlocks
from .shapes import CrsLike, to_pyproj

if TYPE_CHECKING:
    import pandas as pd
    import pyproj
    from affine import Affine
    from geopandas import GeoDataFrame, GeoSeries
    from shapely.geometry.base import BaseGeometry

_GROUP_DEG = 2.0  # size of the lon/lat cells that share one equal-area centre
_DENSIFY_DEG = 0.01
_DENSIFY_M = 1000.0
_LARGE_DEG = 20.0  # geographic polygons wider or taller than this are measured cell by cell ...
_CELL_DEG = 10.0  # ... on cells this size (one equal-area centre cannot hold a hemisphere)


@lru_cache(maxsize=64)
def _laea_transformer(crs_wkt: str, lon0: float, lat0: float) -> pyproj.Transformer:
    import pyproj
    from pyproj.crs import ProjectedCRS
    from pyproj.crs.coordinate_operation import LambertAzimuthalEqualAreaConversion

    src = pyproj.CRS.from_wkt(crs_wkt)
    laea = ProjectedCRS(LambertAzimuthalEqualAreaConversion(lat0, lon0), geodetic_crs=src.geodetic_crs)
    return pyproj.Transformer.from_crs(src, laea, always_xy=True)


def _apply_transformer(geoms: np.ndarray, transformer: pyproj.Transformer) -> np.ndarray:
    import shapely

    def fn(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, fn)


def metric_area_perimeter(geoms: GeoSeries) -> tuple[np.ndarray, np.ndarray]:
    """Ground area (m2) and perimeter (m) of each geometry of a GeoSeries, in any CRS.

    Missing or empty geometries give 0. See the module docstring for the method and accuracy.
    """
    import pyproj
    import shapely

    n = len(geoms)
    area = np.zeros(n, dtype=np.float64)
    perim = np.zeros(n, dtype=np.float64)
    if n == 0:
        return area, perim
    if geoms.crs is None:
        raise ValueError("geometries have no CRS: cannot measure them in metres")
    pcrs = to_pyproj(geoms.crs)
    arr = np.asarray(geoms.to_numpy(), dtype=object)
    ok = ~(shapely.is_missing(arr) | shapely.is_empty(arr))
    if not ok.any():
        return area, perim
    g = arr[ok]
    unit = pcrs.axis_info[0].unit_conversion_factor  # radians or metres per CRS unit
    max_seg = math.radians(_DENSIFY_DEG) / unit if pcrs.is_geographic else _DENSIFY_M / unit
    large = np.zeros(len(g), dtype=bool)
    if pcrs.is_geographic:
        b = shapely.bounds(g) * math.degrees(unit)
        large = ((b[:, 2] - b[:, 0]) > _LARGE_DEG) | ((b[:, 3] - b[:, 1]) > _LARGE_DEG)
    g = shapely.segmentize(g, max_seg)
    cxy = shapely.get_coordinates(shapely.centroid(g))
    cx, cy = np.ascontiguousarray(cxy[:, 0]), np.ascontiguousarray(cxy[:, 1])
    # pyproj treats 1-element arrays as a scalar (NumPy deprecation warning): pad to two
    lon, lat = pyproj.Transformer.from_crs(pcrs, pcrs.geodetic_crs, always_xy=True).transform(
        np.r_[cx, 0.0], np.r_[cy, 0.0]
    )
    lon = np.asarray(lon, dtype=np.float64)[:-1]
    lat = np.asarray(lat, dtype=np.float64)[:-1]
    finite = np.isfinite(lon) & np.isfinite(lat)
    keys = np.stack(
        [np.floor(np.where(finite, lon, 0) / _GROUP_DEG), np.floor(np.where(finite, lat, 0) / _GROUP_DEG)],
        axis=1,
    )
    a_ok = np.full(len(g), np.nan)
    p_ok = np.full(len(g), np.nan)
    wkt = pcrs.to_wkt()
    for i in np.flatnonzero(large):
        a_ok[i], p_ok[i] = _large_geographic(arr[ok][i], pcrs, wkt, math.degrees(unit))
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    for k, (kx, ky) in enumerate(uniq):
        idx = np.flatnonzero((inverse == k) & finite & ~large)
        if idx.size == 0:
            continue
        lon0 = (kx + 0.5) * _GROUP_DEG
        lat0 = float(np.clip((ky + 0.5) * _GROUP_DEG, -90.0, 90.0))
        projected = _apply_transformer(g[idx], _laea_transformer(wkt, float(lon0), lat0))
        a_ok[idx] = shapely.area(projected)
        p_ok[idx] = shapely.length(projected)
    area[ok] = a_ok
    perim[ok] = p_ok
    return area, perim


def _large_geographic(geom: BaseGeometry, pcrs: pyproj.CRS, wkt: str, deg: float) -> tuple[float, float]:
    """Area and perimeter of a continent-sized polygon in a geographic CRS (``deg`` degrees per unit).

    Area: the polygon is cut on a grid of _CELL_DEG cells and each piece is measured in an
    equal-area projection centred on its cell (a ring around the globe, or one reaching
    the antipode of a single centre, folds over in that projection). Perimeter: geodesic
    length of the (densified) rings, shores of islands included.
    """
    import shapely

    x0, y0, x1, y1 = (v * deg for v in geom.bounds)
    lons = np.arange(math.floor(x0 / _CELL_DEG) * _CELL_DEG, x1, _CELL_DEG)
    lats = np.arange(math.floor(y0 / _CELL_DEG) * _CELL_DEG, y1, _CELL_DEG)
    lon0, lat0 = (a.ravel() for a in np.meshgrid(lons, lats))
    cells = shapely.box(lon0 / deg, lat0 / deg, (lon0 + _CELL_DEG) / deg, (lat0 + _CELL_DEG) / deg)
    shapely.prepare(geom)
    pieces = shapely.intersection(geom, cells)
    step = _DENSIFY_DEG / deg  # cut edges are straight in degrees: curves on the ground
    area = 0.0
    for piece, lo, la in zip(pieces, lon0, lat0, strict=True):
        if piece.is_empty:
            continue
        centre = (float(lo + _CELL_DEG / 2), float(np.clip(la + _CELL_DEG / 2, -90.0, 90.0)))
        projected = _apply_transformer(
            np.array([shapely.segmentize(piece, step)]), _laea_transformer(wkt, *centre)
        )
        area += float(shapely.area(projected)[0])
    geod = pcrs.get_geod()
    assert geod is not None  # a geographic CRS has its ellipsoid
    rings = shapely.get_rings(shapely.get_parts(shapely.segmentize(geom, step)))
    perimeter = sum((geod.line_length(*(np.asarray(r.xy) * deg)) for r in rings), 0.0)
    return area, float(perimeter)


def _empty_water_frame(crs: pyproj.CRS | None) -> GeoDataFrame:
    import geopandas as gpd
    import pandas as pd

    gdf = gpd.GeoDataFrame(
        {
            "label": pd.Series([], dtype=object),
            "area_m2": pd.Series([], dtype="float64"),
            "perimeter_m": pd.Series([], dtype="float64"),
        },
        geometry=gpd.GeoSeries([], crs=crs),
    )
    gdf.attrs["geometry_type"] = "Polygon"
    return gdf


def _to_map(polys: np.ndarray, t: Affine) -> np.ndarray:
    """Pixel -> map coordinates (rotation included), canonical ring order and start vertex."""
    import shapely

    def to_map(xy: np.ndarray) -> np.ndarray:
        col, row = xy[:, 0], xy[:, 1]
        return np.column_stack([t.a * col + t.b * row + t.c, t.d * col + t.e * row + t.f])

    return shapely.normalize(shapely.transform(polys, to_map))


def vectorize_scene(
    mosaic: GeoMaskBlocks,
    *,
    simplify: float = 0.0,
    min_area_m2: float = 0.0,
    label: str = "water",
    progress: Progress | None = None,
    block: int = 2048,
    traced: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> tuple[GeoDataFrame, BaseGeometry]:
    """(water polygons as ``vectorize_mosaic`` makes them, observed footprint as one geometry).

    Both in the mosaic's CRS. The footprint is where the run decided water or land: the
    pixels a segmented chip covered with valid data (nodata, skipped chips and pixels
    outside an AOI are not in it), so a later comparison can tell "not water" from "not
    seen". It is exact in pixel edges (no simplification, no minimum area). ``traced``:
    what a ``trace_background.stripe_tracer`` traced while the chips were added (else traced here).
    """
    import shapely

    from .trace import trace_blocks

    if traced is None:
        traced = trace_blocks(mosaic, block, progress, observed=True)
    polys, footprint = traced
    assert footprint is not None  # traced with observed=True
    water = _water_frame(mosaic, polys, simplify=simplify, min_area_m2=min_area_m2, label=label)
    pieces = _to_map(footprint, mosaic.transform) if len(footprint) else footprint
    return water, shapely.MultiPolygon(list(pieces)) if len(pieces) else shapely.MultiPolygon()


def vectorize_mosaic(
    mosaic: GeoMaskBlocks,
    *,
    simplify: float = 0.0,
    min_area_m2: float = 0.0,
    out_crs: CrsLike | None = None,
    label: str = "water",
    progress: Progress | None = None,
    block: int = 2048,
) -> GeoDataFrame:
    """Water polygons of a mosaic as a GeoDataFrame (label, area_m2, perimeter_m, geometry).

    ``mosaic`` needs width, height, transform, crs and iter_blocks(block) (a core Mosaic).
    ``simplify``: Douglas-Peucker tolerance in map units of the raster CRS, topology-
    preserving per polygon (0: off). ``min_area_m2``: polygons smaller on the ground are
    dropped (after simplification). ``out_crs``: output CRS (default: the raster's); areas
    are ground areas and do not depend on it. One row per polygon, ordered top to bottom.
    """
    from .trace import trace_blocks

    polys, _ = trace_blocks(mosaic, block, progress, observed=False)
    gdf = _water_frame(mosaic, polys, simplify=simplify, min_area_m2=min_area_m2, label=label)
    return reproject_frame(gdf, out_crs)


def _water_frame(
    mosaic: GeoMaskBlocks, polys: np.ndarray, *, simplify: float, min_area_m2: float, label: str
) -> GeoDataFrame:
    import geopandas as gpd
    import shapely

    src_crs = to_pyproj(mosaic.crs)
    if polys.size == 0:
        return _empty_water_frame(src_crs)
    b = shapely.bounds(polys)
    polys = polys[np.lexsort((b[:, 0], b[:, 1]))]  # top to bottom, then left to right
    # canonical ring order and start vertex: same output whatever the block size, and
    # GEOS's Douglas-Peucker (which moves a ring's start vertex) behaves the same too
    polys = _to_map(polys, mosaic.transform)
    if simplify > 0:
        polys = shapely.simplify(polys, simplify, preserve_topology=True)
        bad = ~shapely.is_valid(polys)
        if bad.any():
            polys[bad] = shapely.make_valid(polys[bad])
        polys = shapely.get_parts(polys)  # make_valid may split; keep polygons only
        polys = polys[(shapely.get_type_id(polys) == 3) & ~shapely.is_empty(polys)]
    geo = gpd.GeoSeries(polys, crs=src_crs)
    if src_crs is not None:
        area, perim = metric_area_perimeter(geo)
    else:
        area = perim = np.full(len(geo), np.nan)
    keep = area >= min_area_m2 if min_area_m2 > 0 else np.ones(len(geo), dtype=bool)
    gdf = gpd.GeoDataFrame(
        {
            "label": np.array([label] * int(keep.sum()), dtype=object),
            "area_m2": area[keep],
            "perimeter_m": perim[keep],
        },
        geometry=geo[keep].reset_index(drop=True),
        crs=src_crs,
    )
    gdf.attrs["geometry_type"] = "Polygon"
    return gdf


def reproject_frame(gdf: GeoDataFrame, out_crs: CrsLike | None) -> GeoDataFrame:
    """``gdf`` in ``out_crs`` (None: unchanged); refuses a CRS that cannot hold the polygons."""
    import shapely

    if out_crs is None:
        return gdf
    src_crs = to_pyproj(gdf.crs)
    dst = to_pyproj(out_crs)
    if src_crs is not None and src_crs == dst:
        return gdf
    if len(gdf) and src_crs is not None:
        _check_area_of_use(gdf.total_bounds, src_crs, dst, out_crs)
    geometry_type = gdf.attrs.get("geometry_type")
    gdf = gdf.to_crs(dst)
    if not np.isfinite(shapely.get_coordinates(gdf.geometry.values)).all():
        raise PaliGemmaQgisError("out_crs_cannot_hold", field="out_crs", crs=str(out_crs))
    if geometry_type:
        gdf.attrs["geometry_type"] = geometry_type
    return gdf


def _check_area_of_use(
    bounds: Sequence[float], src: pyproj.CRS, dst: pyproj.CRS, name: CrsLike, margin: float = 1.0
) -> None:
    """Refuse an output CRS whose area of use the polygons miss or overrun in latitude.

    PROJ returns finite but meaningless numbers there (the pole in Web Mercator, a UTM
    zone on the far side of the Earth). Longitude is checked for a disjoint extent only,
    with a wide margin: a scene a little past its UTM zone's edge is common and fine.
    """
    import pyproj

    aou = dst.area_of_use
    if aou is None:
        return
    to_ll = pyproj.Transformer.from_crs(src, "EPSG:4326", always_xy=True)
    xmin, ymin, xmax, ymax = bounds[:4]
    west, south, east, north = to_ll.transform_bounds(xmin, ymin, xmax, ymax, densify_pts=21)
    outside = south < aou.south - margin or north > aou.north + margin
    if aou.west <= aou.east and east >= west:  # neither extent crosses the antimeridian
        outside |= east < aou.west - 10 * margin or west > aou.east + 10 * margin
    if outside:
        raise PaliGemmaQgisError(
            "out_crs_elsewhere",
            field="out_crs",
            crs=str(name),
            aou=f"{aou.west:.1f}..{aou.east:.1f} E, {aou.south:.1f}..{aou.north:.1f} N",
            extent=f"{west:.1f}..{east:.1f} E, {south:.1f}..{north:.1f} N",
        )


def chips_frame(records: list[dict[str, Any]], transform: Affine, crs: CrsLike | None) -> GeoDataFrame:
    """The ``chips`` audit layer: one footprint polygon per chip window (rotation-aware).

    Records need chip_id, window (rasterio Window), status, text (str or None), n_objects;
    columns are chip_id, row_off, col_off, height, width, status, text, n_objects, geometry.
    """
    import geopandas as gpd
    import pandas as pd
    import shapely

    cols: dict[str, list] = {k: [] for k in ("chip_id", "row_off", "col_off", "height", "width")}
    status, text, nobj, geoms = [], [], [], []
    for rec in records:
        win = rec["window"]
        r0, c0 = float(win.row_off), float(win.col_off)
        r1, c1 = r0 + float(win.height), c0 + float(win.width)
        corners = [transform * (c, r) for c, r in ((c0, r0), (c1, r0), (c1, r1), (c0, r1))]
        geoms.append(shapely.Polygon(corners))
        cols["chip_id"].append(int(rec["chip_id"]))
        cols["row_off"].append(int(round(r0)))
        cols["col_off"].append(int(round(c0)))
        cols["height"].append(int(round(r1 - r0)))
        cols["width"].append(int(round(c1 - c0)))
        status.append(str(rec.get("status", "")))
        t = rec.get("text")
        text.append(None if t is None else str(t))
        nobj.append(int(rec.get("n_objects") or 0))
    data = {k: pd.Series(v, dtype="int64") for k, v in cols.items()}
    data["status"] = pd.Series(status, dtype=object)
    data["text"] = pd.Series(text, dtype=object)
    data["n_objects"] = pd.Series(nobj, dtype="int64")
    gdf = gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(geoms, crs=to_pyproj(crs)))
    gdf.attrs["geometry_type"] = "Polygon"
    return gdf


def _geometry_type(gdf: GeoDataFrame) -> tuple[str, bool]:
    """GeoPackage geometry type for a layer (and whether to promote to multi)."""
    hint = gdf.attrs.get("geometry_type")
    geoms = gdf.geometry
    types = set(geoms[~(geoms.isna() | geoms.is_empty)].geom_type) if len(gdf) else set()
    if not types:
        return (hint or "Unknown"), False
    if len(types) == 1:
        return types.pop(), False
    if types <= {"Polygon", "MultiPolygon"}:
        return "MultiPolygon", True
    if types <= {"LineString", "MultiLineString"}:
        return "MultiLineString", True
    if types <= {"Point", "MultiPoint"}:
        return "MultiPoint", True
    return "Unknown", False


def write_geopackage(
    path: str | os.PathLike, layers: Mapping[str, GeoDataFrame | pd.DataFrame], *, overwrite: bool = False
) -> None:
    """Write GeoDataFrames as the layers of one GeoPackage, atomically (a plain DataFrame: a table).

    Written with pyogrio to a temp file in the destination folder, then moved into place;
    an existing file is refused unless ``overwrite`` (OutputExistsError). Empty layers are
    written with their schema and geometry type (``gdf.attrs["geometry_type"]`` when there
    is no geometry to infer it from), so a scene without water has an empty ``water`` layer.
    """
    from pyogrio.errors import DataLayerError, DataSourceError, FieldError, GeometryError

    if not layers:
        raise ValueError("write_geopackage needs at least one layer")
    path = Path(path)
    import geopandas as gpd
    import pyogrio

    with atomic_output(path, overwrite=overwrite, suffix=".gpkg") as tmp:
        for name, gdf in layers.items():
            if not isinstance(gdf, gpd.GeoDataFrame):  # an attribute table (the run record)
                try:
                    pyogrio.write_dataframe(gdf, tmp, layer=name, driver="GPKG")
                except (DataSourceError, DataLayerError, FieldError, OSError) as exc:
                    raise PaliGemmaQgisError(
                        "layer_write_failed", path=str(path), kind="table", layer=name, detail=str(exc)
                    ) from exc
                continue
            gtype, promote = _geometry_type(gdf)
            try:
                gdf.to_file(
                    tmp,
                    layer=name,
                    driver="GPKG",
                    engine="pyogrio",
                    geometry_type=gtype,
                    promote_to_multi=promote,
                    # GeoPackage 1.2: QGIS 3.22's GDAL warns on the 1.4 files newer GDALs write.
                    dataset_options={"VERSION": "1.2"},
                )
            except (DataSourceError, DataLayerError, FieldError, GeometryError, OSError) as exc:
                raise PaliGemmaQgisError(
                    "layer_write_failed", path=str(path), kind="layer", layer=name, detail=str(exc)
                ) from exc
