"""The run's GeoPackage, assembled from the scene results at the end (from the journal).

Layers:

- ``water``: every scene's polygons with ``scene`` and ``date`` columns, in one CRS (the
  scenes' own when they share one, else EPSG:4326, or ``--out-crs``); areas are ground areas
  measured in each scene's CRS, so they do not depend on the output CRS;
- ``scenes``: one row per scene, its geometry the observed footprint (where water or land
  was decided; NULL for a failed scene), with status, counts, areas, seconds and the error,
  and the water index's threshold, map quality (0..1) and why it is unsure (NULL if sure);
- ``chips``: every chip's footprint, status and raw model text (the audit trail, and what
  ``revectorize`` decodes again);
- ``water_dissolved`` (optional): water merged across overlapping scenes;
- ``run``: key/value rows saying which tool, inputs, engine and options made the layers.

Scenes are written one at a time (appends, buffered a few thousand rows), so the driver's
memory does not grow with the number of scenes. Every text that could hold an input's URL
(scene paths, errors, the run table's values) is written redacted (``core.redact``): people
share GeoPackages.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..redact import redact
from ..specs import SegmentSpec
from .results import SceneResult

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd
    import pyproj
    from affine import Affine

FLUSH_ROWS = 5000


def output_crs(out_crs: str | None, crs_wkts: Iterable[str | None]):
    """The CRS asked for, else the scenes' shared CRS, else EPSG:4326 (any CRS can go there)."""
    import pyproj

    if out_crs:
        return pyproj.CRS.from_user_input(out_crs)
    crss = {pyproj.CRS.from_wkt(w) for w in crs_wkts if w}
    return crss.pop() if len(crss) == 1 else pyproj.CRS.from_epsg(4326)


class _Layers:
    """Buffered appends to the layers of one GeoPackage (created on first write)."""

    def __init__(self, path: Path):
        self.path = path
        self.buffers: dict[str, list[Any]] = {}
        self.rows: dict[str, int] = {}
        self.written: set[str] = set()

    def add(self, name: str, frame: pd.DataFrame) -> None:
        self.buffers.setdefault(name, []).append(frame)
        self.rows[name] = self.rows.get(name, 0) + len(frame)
        if self.rows[name] >= FLUSH_ROWS:
            self.flush(name)

    def flush(self, name: str) -> None:
        import geopandas as gpd
        import pandas as pd

        frames = self.buffers.pop(name, [])
        self.rows[name] = 0
        if not frames:
            return
        nonempty = [f for f in frames if len(f)]
        if name in self.written and not nonempty:
            return
        frame = pd.concat(nonempty or frames[:1], ignore_index=True)
        if isinstance(frames[0], gpd.GeoDataFrame):
            frame = gpd.GeoDataFrame(frame, geometry="geometry", crs=frames[0].crs)
            frame.attrs["geometry_type"] = frames[0].attrs.get("geometry_type")
        _write(self.path, name, frame, append=name in self.written)
        self.written.add(name)

    def close(self) -> None:
        for name in list(self.buffers):
            self.flush(name)


def _write(path: Path, name: str, frame: pd.DataFrame, *, append: bool) -> None:
    import geopandas as gpd
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError, FieldError, GeometryError

    from ..errors import PaliGemmaQgisError

    kwargs: dict[str, Any] = {"layer": name, "driver": "GPKG"}
    if not path.exists():
        # GeoPackage 1.2: QGIS 3.22's GDAL warns on the 1.4 files newer GDALs write.
        kwargs["dataset_options"] = {"VERSION": "1.2"}
    else:
        kwargs["append"] = True
    if isinstance(frame, gpd.GeoDataFrame):
        kwargs["geometry_type"] = frame.attrs.get("geometry_type") or "Unknown"
    try:
        pyogrio.write_dataframe(frame, path, **kwargs)
    except (DataSourceError, DataLayerError, FieldError, GeometryError, OSError) as exc:
        raise PaliGemmaQgisError("layer_unwritable", path=str(path), layer=name, detail=str(exc)) from exc


def _scene_columns(frame: gpd.GeoDataFrame, scene: str, date: str | None) -> gpd.GeoDataFrame:
    frame = frame.copy()
    frame.insert(0, "date", date)
    frame.insert(0, "scene", scene)
    frame["date"] = frame["date"].astype(object)
    return frame


def _number(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _scene_row(result: SceneResult, dst: pyproj.CRS) -> dict[str, Any]:
    import geopandas as gpd
    import shapely

    geom = None
    if result.observed is not None and result.crs_wkt:
        g = gpd.GeoSeries([result.observed], crs=result.crs_wkt).to_crs(dst).iloc[0]
        geom = g if g.geom_type == "MultiPolygon" else shapely.MultiPolygon(shapely.get_parts(g).tolist())
    return {
        "scene": result.scene.id,
        "path": redact(result.scene.source),
        "date": result.date,
        "status": result.status,
        "chips": int(result.chips),
        "skipped": int(result.skipped),
        "read_errors": int(result.read_errors),
        "water_area_m2": float(result.water_area_m2),
        "observed_area_m2": float(result.observed_area_m2),
        "cloud_pct": _number(result.cloud_pct),  # NULL: read without a cloud mask
        "seconds": round(float(result.seconds), 3),
        "error": redact(result.error) if result.error else result.error,
        # The engine's self-check, where it makes one (the water index): NULL otherwise.
        "threshold": _number(result.engine.get("threshold")),
        "quality": _number(result.engine.get("quality")),
        "unsure": result.engine.get("unsure_reason") or None,
        "engine": redact(json.dumps(result.engine, default=str)) if result.engine else None,
        "geometry": geom,
    }


def run_table(options: Mapping[str, Any], facts: dict[str, Any], command: str = "segment") -> Any:
    """The ``run`` table: how the layers were made (tool, time, inputs, engine, every option).

    Key/value rows of text, so that months later an analyst can tell which model, prompt
    and settings drew these polygons, in QGIS or with any SQLite tool.
    """
    import pandas as pd

    from ... import __version__

    rows: list[tuple[str, Any]] = [
        ("tool", f"paligemma_qgis {__version__}"),
        ("command", command),
        ("created_utc", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")),
    ]
    rows += list(facts.items())
    rows += [(f"option.{k}", v) for k, v in options.items() if v is not None]

    def text(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.6g}"
        return redact(value if isinstance(value, str) else json.dumps(value, default=str))

    return pd.DataFrame({"key": [k for k, _ in rows], "value": [text(v) for _, v in rows]})


def write_run_output(
    path: Path, results: Iterable[SceneResult], spec: SegmentSpec, dst: pyproj.CRS, facts: dict[str, Any]
) -> dict[str, Any]:
    """Write every layer to ``path`` (a temp file the caller moves into place); totals."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    from ..geometry.vectorize import _empty_water_frame, chips_frame, metric_area_perimeter, reproject_frame

    layers = _Layers(path)
    scene_rows: list[dict[str, Any]] = []
    dissolve: list[Any] = []
    totals: dict[str, Any] = {
        "polygons": 0,
        "water_m2": 0.0,
        "chips": 0,
        "skipped": 0,
        "from_journal": 0,
        "read_errors": 0,
    }
    totals["chip_seconds"] = 0.0
    unreadable: dict[str, int] = {}  # scene -> reads that hit unreadable blocks (mapped as nodata)
    first_engine: dict[str, Any] = {}
    unsure: dict[str, str] = {}  # scene -> why its water map is unsure (the water index's self-check)
    layers.add("water", _scene_columns(_empty_water_frame(dst), "", None))
    for result in results:
        scene_rows.append(_scene_row(result, dst))
        if result.status != "done":
            continue
        first_engine = first_engine or result.engine
        water = reproject_frame(result.water, dst)
        water.attrs["geometry_type"] = "Polygon"
        layers.add("water", _scene_columns(water, result.scene.id, result.date))
        if spec.output.dissolve and len(water):
            dissolve.append(shapely.union_all(water.geometry.values))
        chips = chips_frame(result.records, _affine(result.transform), result.crs_wkt)
        chips = reproject_frame(chips, dst) if len(chips) else chips.set_crs(dst, allow_override=True)
        chips.attrs["geometry_type"] = "Polygon"
        layers.add("chips", _scene_columns(chips, result.scene.id, result.date))
        totals["polygons"] += len(water)
        totals["water_m2"] += float(water["area_m2"].sum()) if len(water) else 0.0
        for key in ("chips", "skipped", "from_journal", "read_errors", "chip_seconds"):
            totals[key] += getattr(result, key)
        if result.read_errors:
            unreadable[redact(result.scene.source)] = result.read_errors
        if result.engine.get("unsure_reason"):  # the engine doubts its own map of this scene
            unsure[result.scene.id] = str(result.engine["unsure_reason"])
    if "chips" not in layers.written and not layers.buffers.get("chips"):
        empty = chips_frame([], _affine(None), dst)
        empty.attrs["geometry_type"] = "Polygon"
        layers.add("chips", _scene_columns(empty, "", None))
    layers.close()
    scenes = gpd.GeoDataFrame(pd.DataFrame(scene_rows), geometry="geometry", crs=dst)
    scenes["date"] = scenes["date"].astype(object)
    # REAL columns (NULL for an engine without a self-check), even when no scene has one.
    scenes[["threshold", "quality"]] = scenes[["threshold", "quality"]].astype("float64")
    scenes.attrs["geometry_type"] = "MultiPolygon"
    _write(path, "scenes", scenes, append=True)
    if spec.output.dissolve:
        merged = shapely.get_parts(shapely.union_all(dissolve)) if dissolve else np.array([], dtype=object)
        merged = merged[shapely.get_type_id(merged) == 3] if len(merged) else merged
        geo = gpd.GeoSeries(merged, crs=dst)
        area, perim = metric_area_perimeter(geo)
        frame = gpd.GeoDataFrame({"area_m2": area, "perimeter_m": perim}, geometry=geo.values, crs=dst)
        frame.attrs["geometry_type"] = "Polygon"
        _write(path, "water_dissolved", frame, append=True)
        totals["dissolved_polygons"] = len(frame)
    facts = {**facts, **{f"engine.{k}": v for k, v in first_engine.items()}}
    facts.update(
        read_errors=totals["read_errors"],
        chips=totals["chips"],
        skipped=totals["skipped"],
        chip_seconds=totals["chip_seconds"],
        output_crs=dst.to_string(),
    )
    _write(path, "run", run_table(spec.flat(), facts), append=True)
    totals["engine"] = first_engine
    totals["read_errors_by_scene"] = unreadable
    totals["unsure_scenes"] = unsure
    return totals


def _affine(transform: Sequence[float] | None) -> Affine:
    from affine import Affine

    return Affine(*transform) if transform else Affine.identity()
