"""Water maps over time: what a ``segment`` GeoPackage says was water, and where it looked.

Comparing two dates (core.temporal.change) or counting over many (core.temporal.occurrence) needs, for each
observation, two geometries: the water, and the *observed footprint*, the ground where the
run decided water or land. Outside the footprint (nodata, cloud holes masked as nodata,
skipped chips, outside the raster or the area of interest) a map says nothing; a place
there is unknown, never land.

Where the footprint comes from:

- Region runs (a ``scenes`` layer): each done scene's geometry is its exact footprint, and
  the ``water`` rows carry the scene id and date. Failed scenes are left out.
- Single-scene outputs without ``scenes`` (``segment`` before region runs): rebuilt the way
  segment drew it (core.geometry.footprints): the raster's valid pixels inside the segmented chips
  inside the run's area of interest; without the raster, the chips alone, which
  ``WaterMap.notes`` says and the front ends print.

Dates: the ``date`` column (ISO 8601 ``YYYY-MM-DD[THH:MM:SSZ]``), else a date the caller
gives, else a ``YYYYMMDD`` / ``YYYY-MM-DD`` in the raster's file name (NAIP, Sentinel and
Landsat product names carry one). A caller's date also selects: on a dated run, only the
scenes whose date starts with it (``2020``, ``2020-08``, ``2020-08-31``) are read.
"""

from __future__ import annotations

import datetime
import json
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


def _layers(path: Path) -> list[str]:
    import pyogrio

    try:
        return [str(name) for name, _ in pyogrio.list_layers(path)]
    except Exception as exc:  # pyogrio raises several error types
        raise InputError("water_map_unreadable", path=str(path), detail=str(exc)) from None


def read_layer(path: Path, layer: str, what: str) -> gpd.GeoDataFrame:
    import pyogrio

    try:
        return pyogrio.read_dataframe(path, layer=layer)
    except Exception as exc:  # pyogrio raises several error types
        raise InputError(
            "water_map_layer_unreadable", path=str(path), layer=layer, what=what, detail=str(exc)
        ) from None


def _run_table(path: Path, layers: list[str]) -> dict[str, object]:
    """The ``run`` key/value table as a dict of decoded values (JSON where it parses)."""
    if RUN_TABLE not in layers:
        return {}
    table = read_layer(path, RUN_TABLE, "run table")
    if "key" not in table or "value" not in table:
        return {}
    out: dict[str, object] = {}
    for key, value in zip(table["key"], table["value"], strict=True):
        try:
            out[str(key)] = json.loads(value)
        except (TypeError, ValueError):
            out[str(key)] = value
    return out


def polygons_of(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    geoms = gdf.geometry
    keep = geoms.notna() & ~geoms.is_empty & geoms.geom_type.isin(["Polygon", "MultiPolygon"])
    return gdf[keep]


def read_water_map(path: str | Path, *, date: str | None = None) -> WaterMap:
    """A ``segment`` output (region run or single scene) as a WaterMap; see the module docstring.

    ``date``: on a dated region run, keep only the scenes whose date starts with it (an
    InputError when none does); on an undated map, the date of its scenes.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("water_map_not_found", path=str(path))
    layers = _layers(path)
    if WATER_LAYER not in layers:
        raise InputError(
            "water_map_no_water", path=str(path), layer=WATER_LAYER, layers=", ".join(layers) or "none"
        )
    date = normalise_date(date, f"{path}: date")
    water = read_layer(path, WATER_LAYER, "water polygons")
    if water.crs is None:
        raise InputError("water_map_no_crs", path=str(path))
    crs = as_crs(water.crs)
    if SCENES_LAYER in layers:
        return _region_map(path, water, crs, date)
    return _single_scene_map(path, layers, water, crs, date)


def _region_map(path: Path, water: gpd.GeoDataFrame, crs: pyproj.CRS, date: str | None) -> WaterMap:
    scenes = read_layer(path, SCENES_LAYER, "scene footprints")
    missing = [c for c in ("scene", "status") if c not in scenes.columns]
    if missing:
        raise InputError(
            "water_map_columns", path=str(path), layer=SCENES_LAYER, columns=" or ".join(missing), why=""
        )
    if scenes.crs is not None and len(scenes) and to_pyproj(scenes.crs) != crs:
        scenes = scenes.to_crs(crs)
    if "scene" not in water.columns:
        raise InputError(
            "water_map_columns",
            path=str(path),
            layer=WATER_LAYER,
            columns="'scene'",
            why=", but the file has scenes",
        )
    notes: list[str] = []
    done = scenes[scenes["status"].astype(str) == "done"]
    failed = len(scenes) - len(done)
    if failed:
        notes.append(f"{path}: {failed} failed scene(s) left out (not observed)")
    dates = [normalise_date(d, f"{path}: scene date") for d in done.get("date", [None] * len(done))]
    if date is not None and any(dates):
        keep = [d is not None and d.startswith(date) for d in dates]
        if not any(keep):
            known = ", ".join(sorted({d for d in dates if d})[:8])
            raise InputError("water_map_no_date", path=str(path), date=date, known=known)
        done, dates = done[keep], [d for d, k in zip(dates, keep, strict=True) if k]
    elif date is not None:
        dates = [date] * len(done)
    water = polygons_of(water)
    by_scene = {str(k): g for k, g in water.groupby(water["scene"].astype(str))} if len(water) else {}
    out = []
    for (_, row), scene_date in zip(done.iterrows(), dates, strict=True):
        sid = str(row["scene"])
        polys = by_scene.get(sid)
        geom = row.geometry
        if geom is None or geom.is_empty:
            notes.append(f"{path}: scene {sid} is done but has no footprint; left out")
            continue
        out.append(
            Scene(
                scene=sid,
                date=scene_date,
                water=union(list(polys.geometry.values)) if polys is not None else union([]),
                observed=polygonal(geom),
                path=str(row.get("path") or ""),
            )
        )
    if not out:
        notes.append(f"{path}: no scene with a footprint (all failed or empty)")
    return WaterMap(str(path), crs, out, notes)


def _single_scene_map(
    path: Path, layers: list[str], water: gpd.GeoDataFrame, crs: pyproj.CRS, date: str | None
) -> WaterMap:
    run = _run_table(path, layers)
    raster = str(run.get("raster") or run.get("option.raster") or "")
    notes: list[str] = []
    from ..geometry.footprints import legacy_footprint

    observed, how = legacy_footprint(path, layers, run, raster, notes)
    if observed is not None and how.get("crs") is not None and to_pyproj(how["crs"]) != crs:
        observed = reproject(observed, how["crs"], crs)
    if date is None and "date" in water.columns and water["date"].notna().any():
        date = normalise_date(water["date"].dropna().iloc[0], f"{path}: date")
    if date is None and raster:
        from ..inputs.scenes import date_from_name

        date = date_from_name(raster)
    scene_id = Path(raster).stem if raster else path.stem
    polys = polygons_of(water)
    scene = Scene(
        scene=scene_id,
        date=date,
        water=union(list(polys.geometry.values)),
        observed=observed,
        path=raster,
    )
    return WaterMap(str(path), crs, [scene], notes)


def read_reference(path: str | Path, *, layer: str | None = None) -> WaterMap:
    """Known water for ``change --reference``: any polygon layer, or a water map.

    A ``segment`` output is read as a water map (with its footprint). An occurrence classes
    file (layers ``permanent`` and ``observed``) gives its permanent water, observed where
    any observation was. Any other polygon layer (``layer``, else the only or first one) is
    taken as complete: it says "dry" everywhere outside its polygons.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("water_map_reference_not_found", field="reference", path=str(path))
    layers = _layers(path)
    is_map = WATER_LAYER in layers and (SCENES_LAYER in layers or CHIPS_LAYER in layers)
    if layer in (None, WATER_LAYER) and is_map:
        return read_water_map(path)
    if layer is None and "permanent" in layers:
        layer = "permanent"
    if layer is None:
        layer = layers[0] if layers else None
    if layer not in layers:
        raise InputError(
            "water_map_layer_missing",
            field="reference_layer",
            path=str(path),
            layer=layer,
            layers=", ".join(layers) or "none",
        )
    gdf = read_layer(path, layer, "reference water")
    if gdf.crs is None:
        raise InputError("water_map_reference_no_crs", field="reference", path=str(path), layer=layer)
    polys = polygons_of(gdf)
    if len(gdf) and not len(polys):
        raise InputError("water_map_reference_no_polygons", field="reference", path=str(path), layer=layer)
    crs = as_crs(gdf.crs)
    observed = None
    if layer == "permanent" and "observed" in layers:
        obs = read_layer(path, "observed", "observed area")
        if obs.crs is not None and to_pyproj(obs.crs) != crs:
            obs = obs.to_crs(crs)
        observed = union(list(polygons_of(obs).geometry.values))
    scene = Scene(
        scene=f"{path.stem}:{layer}",
        date=None,
        water=union(list(polys.geometry.values)),
        observed=observed,
        path=str(path),
    )
    return WaterMap(str(path), crs, [scene])
