"""Water change between two dates: gained, lost, persistent and unknown polygons.

For each input (see core.temporal.water_maps) there are water polygons W and an observed footprint O
(water included). Only where both dates looked, ``both = O_before ∩ O_after`` (∩ the
area of interest), can anything be said:

    gained     = (W_after − W_before) ∩ both      (the flood extent when BEFORE is dry-season)
    lost       = (W_before − W_after) ∩ both
    persistent = W_before ∩ W_after
    unknown    = water on one date where the other did not look (nodata, cloud hole,
                 outside its scene or area of interest): never counted as gain or loss

A map of several dates (a region run over a season) is water where any of its scenes saw
water, and observed where any of them looked.

With ``reference`` (for example the permanent class of ``occurrence``), its water is water
before: flood = AFTER − reference. A reference with no footprint of its own is complete,
so "dry" wherever it has no polygon.

How two grids or CRSs are compared: as polygons, not pixels. Nothing is resampled; every
pixel of either map keeps its own edges, so two maps on one grid give exactly the polygon
differences of their water layers. Inputs in different CRSs are reprojected (edges
densified first) to the output CRS, where the overlay runs; a comparison of maps in one CRS
runs in that CRS. Areas and perimeters are ground values in an equal-area projection
(core.geometry.vectorize.metric_area_perimeter), whatever the CRS. Two grids of different pixel
sizes disagree by up to half a pixel along every unchanged shore: that fringe shows as thin
gained/lost slivers, which ``min_area_m2`` drops.

BEFORE and AFTER may be rasters: each is segmented first (core.run.driver.segment_raster with
the ``segment`` options) into a temporary GeoPackage that is removed afterwards.

One file of about 450 lines: the options, the overlay (``compare``) and the layers it writes
are one command's contract; reading the maps lives in core.temporal.water_maps.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, OutputExistsError
from ..progress import CallbackProgress, Progress, SilentProgress, check_cancelled
from ..run.output import run_table
from .water_maps import (
    WaterMap,
    check_output_folder,
    normalise_date,
    polygonal,
    read_reference,
    read_water_map,
)

CLASSES = ("gained", "lost", "persistent", "unknown")
OBSERVED_LAYER = "observed"
SUMMARY_TABLE = "summary"
_PLAIN_VECTOR = {".geojson", ".shp", ".fgb", ".kml", ".gml", ".csv"}  # never segment outputs, never rasters


@dataclass
class ChangeOptions:
    """What ``change`` needs; JSON-serialisable (the QGIS worker receives it as JSON)."""

    after: str
    output: str
    before: str | None = None  # a segment GeoPackage or a raster; may be None with a reference
    reference: str | None = None  # known water that counts as water before
    reference_layer: str | None = None
    before_date: str | None = None  # selects scenes of a dated run, or dates an undated map
    after_date: str | None = None
    aoi: str | list[float] | None = None  # compare only inside (file or "xmin,ymin,xmax,ymax[,EPSG:x]")
    aoi_crs: str | None = None
    min_area_m2: float = 0.0  # drop result polygons smaller than this (slivers of two grids)
    out_crs: str | None = None  # default: the CRS of BEFORE's water layer (else AFTER's)
    segment: dict[str, Any] | None = None  # segment options by flat name (specs.segment_spec) for rasters
    workdir: str | None = None  # temporary segment outputs (default: system temp)
    overwrite: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChangeOptions:
        """Options from a JSON object; unknown keys are an error (a typo must not pass silently)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown change option(s): {', '.join(unknown)}")
        missing = [k for k in ("after", "output") if not data.get(k)]
        if missing:
            raise InputError(f"change options need {' and '.join(missing)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ChangeSummary:
    """Areas per class; ``to_dict`` is what the worker sends back to QGIS."""

    output: str
    before: str
    after: str
    before_date: str | None
    after_date: str | None
    areas_m2: dict[str, float]
    polygons: dict[str, int]
    observed_m2: float
    crs: str
    seconds: float
    notes: list[str] = field(default_factory=list)
    reference: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def table(self) -> str:
        """The summary as the CLI prints it."""
        before = self.before_date or ("known water" if self.before == self.reference else "?")
        lines = [
            f"{self.output}: water change {before} -> {self.after_date or '?'}",
            f"  before: {self.before}",
            f"  after:  {self.after}",
            f"  {'class':<12}{'area_km2':>14}{'polygons':>10}",
        ]
        for name in CLASSES:
            lines.append(f"  {name:<12}{self.areas_m2[name] / 1e6:>14.4f}{self.polygons[name]:>10d}")
        net = (self.areas_m2["gained"] - self.areas_m2["lost"]) / 1e6
        lines.append(f"  observed on both dates {self.observed_m2 / 1e6:.4f} km2, net change {net:+.4f} km2")
        return "\n".join(lines)


def _is_map(path: Path) -> bool:
    """A segment output (a GeoPackage); anything else is an input for segment (rasters, STAC, ...)."""
    return path.suffix.lower() == ".gpkg"


def _check(options: ChangeOptions) -> Path:
    out = Path(options.output)
    if out.suffix.lower() != ".gpkg":
        raise InputError(f"{out}: output must be a GeoPackage (.gpkg)")
    if options.before is None and options.reference is None:
        raise InputError("change needs BEFORE, or --reference (known water) in its place")
    for what, value in (
        ("before", options.before),
        ("after", options.after),
        ("reference", options.reference),
    ):
        if value is None:
            continue
        p = Path(value)
        if not p.exists() and (_is_map(p) or what == "reference"):  # segment names its own inputs
            raise InputError(f"{p}: {what} file not found")
        if what != "reference" and p.suffix.lower() in _PLAIN_VECTOR:
            raise InputError(f"{p}: {what} must be a GeoPackage written by segment, or a raster")
        if p.exists() and p.resolve() == out.resolve():
            raise InputError(f"{out}: output would overwrite the {what} input")
    if out.exists() and not options.overwrite:
        raise OutputExistsError(f"{out}: output exists (use --overwrite to replace it)")
    if out.is_dir():
        raise InputError(f"{out}: output is a folder")
    check_output_folder(out)
    if options.min_area_m2 < 0:
        raise InputError(f"min area must be 0 or more, got {options.min_area_m2}")
    normalise_date(options.before_date, "before date")
    normalise_date(options.after_date, "after date")
    if options.out_crs:
        import pyproj

        try:
            pyproj.CRS.from_user_input(options.out_crs)
        except pyproj.exceptions.CRSError:
            raise InputError(f"{options.out_crs}: unknown output CRS (use e.g. EPSG:4326)") from None
    return out


def _prefixed(progress: Progress, prefix: str) -> Progress:
    return CallbackProgress(
        on_report=lambda done, total, message: progress.report(done, total, f"{prefix}: {message}"),
        is_cancelled=progress.cancelled,
    )


def _load(
    path: str, what: str, date: str | None, options: ChangeOptions, scratch: Path, progress: Progress
) -> WaterMap:
    """A water map from a GeoPackage, or from a raster segmented first into ``scratch``."""
    p = Path(path)
    if _is_map(p):
        water_map = read_water_map(p, date=date)
        if not water_map.scenes:
            raise InputError(f"{p}: no scene with a footprint to compare (all failed or empty)")
        return water_map
    from ..run.driver import segment_raster
    from ..specs import segment_spec

    segment = dict(options.segment or {})
    for key in ("raster", "output", "overwrite", "mask_tif"):
        segment.pop(key, None)
    segment.setdefault("workdir", options.workdir)
    gpkg = scratch / f"{what}.gpkg"
    spec = segment_spec({**segment, "raster": str(p), "output": str(gpkg)})
    segment_raster(spec, _prefixed(progress, f"{what}: {p.name}"))
    water_map = read_water_map(gpkg, date=date)
    water_map.source = str(p)
    return water_map


def precision(crs: Any) -> float:
    """The grid overlays snap to, in CRS units: 0.1 mm, or 1e-9 degree (about 0.1 mm) in a geographic CRS.

    Maps derived from the same pixels (a segment output and an occurrence class drawn on its
    grid) can place one pixel corner a few ulps apart; without a common precision their
    difference is a scatter of zero-area slivers.
    """
    import math

    unit = crs.axis_info[0].unit_conversion_factor  # radians or metres per CRS unit
    return math.radians(1e-9) / unit if crs.is_geographic else 1e-4 / unit


def _overlay(op: str, a: Any, b: Any, grid: float) -> Any:
    """``a op b`` as polygons, with coordinates on a precision grid of ``grid`` CRS units."""
    import shapely

    return polygonal(getattr(shapely, op)(a, b, grid_size=grid))


def compare(before: WaterMap, after: WaterMap, aoi: Any = None) -> dict[str, Any]:
    """The classes of two water maps in one CRS (see the module docstring), piece by piece.

    Returns arrays of polygons gained, lost, persistent, unknown_before (water before,
    after not observed) and unknown_after, and the geometry observed (both dates looked).
    """
    from ..geometry import overlay

    if before.crs != after.crs:
        raise ValueError("compare() needs two maps in one CRS")
    grid = precision(before.crs)
    wb, wa = overlay.parts(before.water), overlay.parts(after.water)
    ob, oa = before.observed, after.observed
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
    return {
        "gained": overlay.difference(known_a, known_b, grid),
        "lost": overlay.difference(known_b, known_a, grid),
        "persistent": overlay.intersection(known_a, known_b, grid),
        "unknown_before": unknown_b,
        "unknown_after": unknown_a,
        "observed": both,
    }


def _frame(geom: Any, crs: Any, columns: dict[str, Any], min_area_m2: float) -> Any:
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
    data: dict[str, Any] = {name: pd.Series([value] * n, dtype=object) for name, value in columns.items()}
    data["area_m2"] = pd.Series(area[keep], dtype="float64")
    data["perimeter_m"] = pd.Series(perim[keep], dtype="float64")
    gdf = gpd.GeoDataFrame(data, geometry=geo[keep].reset_index(drop=True), crs=crs)
    gdf.attrs["geometry_type"] = "Polygon"
    return gdf


def _observed_frame(geom: Any, crs: Any, dates: dict[str, Any]) -> Any:
    import geopandas as gpd
    import shapely

    from ..geometry.vectorize import metric_area_perimeter

    if geom.is_empty:
        geoms: list = []
    else:
        geoms = [shapely.MultiPolygon(list(shapely.get_parts(geom)))]
    geo = gpd.GeoSeries(geoms, crs=crs)
    area, _ = metric_area_perimeter(geo)
    gdf = gpd.GeoDataFrame({**{k: [v] * len(geoms) for k, v in dates.items()}, "area_m2": area}, geometry=geo)
    gdf.attrs["geometry_type"] = "MultiPolygon"
    return gdf


def water_change(options: ChangeOptions | dict, progress: Progress | None = None) -> ChangeSummary:
    """Compare BEFORE (or a reference) with AFTER and write the change GeoPackage; see the module docstring."""
    import pandas as pd

    from ..geometry.vectorize import write_geopackage
    from ..inputs.grid import load_aoi
    from .water_maps import to_pyproj

    t0 = time.perf_counter()
    progress = progress or SilentProgress()
    if isinstance(options, dict):
        options = ChangeOptions.from_dict(options)
    out = _check(options)
    steps = 5
    with tempfile.TemporaryDirectory(prefix="paligemma_change_", dir=options.workdir) as tmp:
        scratch = Path(tmp)
        progress.report(0, steps, "reading before")
        before = None
        if options.before is not None:
            before = _load(options.before, "before", options.before_date, options, scratch, progress)
        check_cancelled(progress)
        progress.report(1, steps, "reading after")
        after = _load(options.after, "after", options.after_date, options, scratch, progress)
        check_cancelled(progress)
    notes = list(after.notes)
    if before is not None:
        notes = before.notes + notes
    if options.reference is not None:
        reference = read_reference(options.reference, layer=options.reference_layer)
        notes += reference.notes
        if before is None:
            before = reference
        else:
            before = WaterMap(
                before.source, before.crs, before.scenes + reference.to_crs(before.crs).scenes, before.notes
            )
    assert before is not None
    out_crs = to_pyproj(options.out_crs) if options.out_crs else before.crs
    work_crs = before.crs if before.crs == after.crs else out_crs
    before, after = before.to_crs(work_crs), after.to_crs(work_crs)
    aoi = None
    if options.aoi not in (None, ""):
        aoi = polygonal(load_aoi(options.aoi, work_crs, options.aoi_crs))

    progress.report(2, steps, "comparing")
    geoms = compare(before, after, aoi)
    check_cancelled(progress)
    if work_crs != out_crs:
        from ..geometry.shapes import reproject, reproject_parts

        geoms = {
            k: reproject(g, work_crs, out_crs) if k == "observed" else reproject_parts(g, work_crs, out_crs)
            for k, g in geoms.items()
        }

    progress.report(3, steps, "measuring")
    bdate, adate = before.date, after.date
    dates = {"before_date": bdate, "after_date": adate}
    layers: dict[str, Any] = {}
    for name in ("gained", "lost", "persistent"):
        layers[name] = _frame(geoms[name], out_crs, {"class": name, **dates}, options.min_area_m2)
    unknown = [
        _frame(
            geoms["unknown_before"],
            out_crs,
            {"class": "unknown", **dates, "water_on": "before"},
            options.min_area_m2,
        ),
        _frame(
            geoms["unknown_after"],
            out_crs,
            {"class": "unknown", **dates, "water_on": "after"},
            options.min_area_m2,
        ),
    ]
    merged = pd.concat(unknown, ignore_index=True)
    merged.attrs["geometry_type"] = "Polygon"
    layers["unknown"] = merged
    observed = _observed_frame(geoms["observed"], out_crs, dates)
    check_cancelled(progress)

    areas = {name: float(layers[name]["area_m2"].sum()) for name in CLASSES}
    counts = {name: int(len(layers[name])) for name in CLASSES}
    observed_m2 = float(observed["area_m2"].sum())
    summary_table = pd.DataFrame(
        {
            "class": [*CLASSES, OBSERVED_LAYER],
            "area_m2": [*(areas[c] for c in CLASSES), observed_m2],
            "area_km2": [*(areas[c] / 1e6 for c in CLASSES), observed_m2 / 1e6],
            "polygons": [*(counts[c] for c in CLASSES), len(observed)],
            "before_date": [bdate] * (len(CLASSES) + 1),
            "after_date": [adate] * (len(CLASSES) + 1),
        }
    )
    progress.report(4, steps, "writing GeoPackage")
    facts = {
        "before": before.source,
        "after": after.source,
        "reference": options.reference or "",
        "before_date": bdate or "",
        "after_date": adate or "",
        "before_scenes": [s.scene for s in before.scenes],
        "after_scenes": [s.scene for s in after.scenes],
        "compared_in_crs": work_crs.to_string(),
        "out_crs": out_crs.to_string(),
        "notes": notes,
    }
    write_geopackage(
        out,
        {
            **layers,
            OBSERVED_LAYER: observed,
            SUMMARY_TABLE: summary_table,
            "run": run_table(options.to_dict(), facts, command="change"),
        },
        overwrite=options.overwrite,
    )
    progress.report(steps, steps, "done")
    return ChangeSummary(
        output=str(out),
        before=before.source,
        after=after.source,
        before_date=bdate,
        after_date=adate,
        areas_m2=areas,
        polygons=counts,
        observed_m2=observed_m2,
        crs=out_crs.to_string(),
        seconds=time.perf_counter() - t0,
        notes=notes,
        reference=options.reference,
    )
