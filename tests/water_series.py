"""Water maps over time for tests: region-run GeoPackages in the format ``segment`` writes.

The format (issue 11, region runs): layer ``water`` (scene, date, label, area_m2,
perimeter_m; Polygon), layer ``scenes`` (scene, path, date, status, chips, skipped,
water_area_m2, observed_area_m2, seconds, error; the observed footprint as MultiPolygon,
NULL for failed scenes), layer ``chips`` and table ``run``. ``write_run`` writes it from
known geometries, so a test knows the exact answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyproj
import shapely
from affine import Affine
from shapely.geometry import box

from paligemma_qgis.core.geometry.vectorize import metric_area_perimeter, write_geopackage


@dataclass
class SceneTruth:
    """One scene: water polygons and footprint in map CRS (``footprint`` None: a failed scene)."""

    scene: str
    date: str | None
    water: list = field(default_factory=list)
    footprint: object = None
    status: str = "done"


def pixel_box(transform: Affine, c0: float, r0: float, c1: float, r1: float):
    """The map polygon of pixel columns c0..c1 and rows r0..r1 (edges) of a north-up grid."""
    x0, y0 = transform * (c0, r0)
    x1, y1 = transform * (c1, r1)
    return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _multi(geom):
    if geom is None or geom.is_empty:
        return None
    return shapely.MultiPolygon(list(shapely.get_parts(geom)))


def write_run(
    path: str | Path,
    crs: str,
    scenes: list[SceneTruth],
    *,
    transform: Affine | None = None,
    width: int | None = None,
    height: int | None = None,
) -> Path:
    """Write a region-run GeoPackage; with a grid, one chip per scene covering it (as segment draws chips)."""
    path = Path(path)
    crs_obj = pyproj.CRS.from_user_input(crs)
    rows = []
    for s in scenes:
        merged = shapely.union_all(s.water) if s.water else None
        for part in [] if merged is None else shapely.get_parts(merged):
            rows.append({"scene": s.scene, "date": s.date, "label": "water", "geometry": part})
    water = gpd.GeoDataFrame(
        {k: pd.Series([r[k] for r in rows], dtype=object) for k in ("scene", "date", "label")},
        geometry=gpd.GeoSeries([r["geometry"] for r in rows], crs=crs_obj),
    )
    area, perim = metric_area_perimeter(water.geometry)
    water["area_m2"], water["perimeter_m"] = area, perim
    water.attrs["geometry_type"] = "Polygon"

    foot = gpd.GeoSeries([_multi(s.footprint) for s in scenes], crs=crs_obj)
    observed, _ = metric_area_perimeter(foot)
    scene_frame = gpd.GeoDataFrame(
        {
            "scene": [s.scene for s in scenes],
            "path": [f"/data/{s.scene}.tif" for s in scenes],
            "date": pd.Series([s.date for s in scenes], dtype=object),
            "status": [s.status for s in scenes],
            "chips": [1] * len(scenes),
            "skipped": [0] * len(scenes),
            "water_area_m2": [float(water.loc[water["scene"] == s.scene, "area_m2"].sum()) for s in scenes],
            "observed_area_m2": observed,
            "seconds": [0.1] * len(scenes),
            "error": pd.Series([None if s.status == "done" else "boom" for s in scenes], dtype=object),
        },
        geometry=foot,
    )
    scene_frame.attrs["geometry_type"] = "MultiPolygon"
    layers = {"water": water, "scenes": scene_frame}
    if transform is not None:
        chip = pixel_box(transform, 0, 0, width, height)
        chips = gpd.GeoDataFrame(
            {
                "chip_id": list(range(len(scenes))),
                "scene": [s.scene for s in scenes],
                "row_off": [0] * len(scenes),
                "col_off": [0] * len(scenes),
                "height": [height] * len(scenes),
                "width": [width] * len(scenes),
                "status": ["ok"] * len(scenes),
                "text": pd.Series([None] * len(scenes), dtype=object),
                "n_objects": [0] * len(scenes),
            },
            geometry=gpd.GeoSeries([chip] * len(scenes), crs=crs_obj),
        )
        layers["chips"] = chips
    layers["run"] = pd.DataFrame({"key": ["tool"], "value": ["tests.water_series"]})
    write_geopackage(path, layers, overwrite=True)
    return path


def as_single_scene_output(src: str | Path, dst: str | Path) -> Path:
    """A copy of a ``segment`` output as segment wrote it before region runs: layers water
    (label, area_m2, perimeter_m), chips and run, no scenes layer, no scene/date columns."""
    import pyogrio

    dst = Path(dst)
    water = gpd.read_file(src, layer="water").drop(columns=["scene", "date"], errors="ignore")
    chips = gpd.read_file(src, layer="chips").drop(columns=["scene", "date"], errors="ignore")
    water.attrs["geometry_type"] = chips.attrs["geometry_type"] = "Polygon"
    run = pyogrio.read_dataframe(src, layer="run")
    write_geopackage(dst, {"water": water, "chips": chips, "run": run}, overwrite=True)
    return dst
