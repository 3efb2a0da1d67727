"""Water maps read from ``segment`` outputs (core.temporal.water_maps has the values).

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

A module of its own because it uses core.geometry.footprints, which uses water_maps' helpers:
together in one module they were an import cycle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from ..geometry.shapes import polygonal, polygons_of, reproject, to_pyproj, union
from .water_maps import (
    CHIPS_LAYER,
    RUN_TABLE,
    SCENES_LAYER,
    WATER_LAYER,
    Scene,
    WaterMap,
    as_crs,
    normalise_date,
    read_layer,
)

if TYPE_CHECKING:
    import geopandas as gpd
    import pyproj
    from shapely.geometry.base import BaseGeometry


def _layers(path: Path) -> list[str]:
    import pyogrio

    try:
        return [str(name) for name, _ in pyogrio.list_layers(path)]
    except Exception as exc:  # pyogrio raises several error types
        raise InputError("water_map_unreadable", path=str(path), detail=str(exc)) from None


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


def _segmented_chips(path: Path, layers: list[str]) -> tuple[BaseGeometry, pyproj.CRS] | None:
    """(union of the chips a single-scene run segmented, their CRS), or None without a chips layer."""
    if CHIPS_LAYER not in layers:
        return None
    frame = read_layer(path, CHIPS_LAYER, "chip footprints")
    if "status" in frame.columns:
        frame = frame[~frame["status"].astype(str).str.startswith("skipped")]
    return union(list(polygons_of(frame).geometry.values)), frame.crs


def _single_scene_map(
    path: Path, layers: list[str], water: gpd.GeoDataFrame, crs: pyproj.CRS, date: str | None
) -> WaterMap:
    run = _run_table(path, layers)
    raster = str(run.get("raster") or run.get("option.raster") or "")
    notes: list[str] = []
    from ..geometry.footprints import legacy_footprint

    observed, how = legacy_footprint(path, _segmented_chips(path, layers), run, raster, notes)
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
