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

The command in stages: ``check_paths`` (what needs a file: inputs there, output free),
``read_maps`` (BEFORE, AFTER and the reference as water maps), ``common_crs`` (where to
overlay), then core.temporal.change_layers (``compare``, the class layers, the summary
table) and ``write_change``. The options are core.temporal.options.ChangeOptions; reading
the maps lives in core.temporal.water_maps.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError, OutputExistsError
from ..geometry.shapes import polygonal
from ..progress import CallbackProgress, Progress, SilentProgress, check_cancelled
from ..run.output import run_table
from ..serial import flatten, to_data
from .change_layers import (
    CLASSES,
    OBSERVED_LAYER,
    class_layers,
    compare,
    observed_layer,
    summary_table,
)
from .map_reader import read_reference, read_water_map
from .options import ChangeOptions
from .water_maps import WaterMap, as_crs, check_output_folder

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd
    import pyproj

__all__ = ["CLASSES", "ChangeOptions", "ChangeSummary", "compare", "water_change"]

SUMMARY_TABLE = "summary"
_PLAIN_VECTOR = {".geojson", ".shp", ".fgb", ".kml", ".gml", ".csv"}  # never segment outputs, never rasters
_STEPS = 5


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

    def to_dict(self) -> dict[str, object]:
        return to_data(self)

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


def check_paths(options: ChangeOptions) -> Path:
    """What the options cannot check alone: the inputs exist, the output may be written, the CRS is known."""
    out = Path(options.output)
    for what, value in (
        ("before", options.before),
        ("after", options.after),
        ("reference", options.reference),
    ):
        if value is None:
            continue
        p = Path(value)
        if not p.exists() and (_is_map(p) or what == "reference"):  # segment names its own inputs
            raise InputError("change_input_not_found", field=what, path=str(p), what=what)
        if what != "reference" and p.suffix.lower() in _PLAIN_VECTOR:
            raise InputError("change_input_plain_vector", field=what, path=str(p), what=what)
        if p.exists() and p.resolve() == out.resolve():
            raise InputError("change_output_is_input", field="output", path=str(out), what=what)
    if out.exists() and not options.overwrite:
        raise OutputExistsError("output_exists", field="output", path=str(out))
    if out.is_dir():
        raise InputError("output_is_folder", field="output", path=str(out))
    check_output_folder(out)
    if options.out_crs:
        import pyproj

        try:
            pyproj.CRS.from_user_input(options.out_crs)
        except pyproj.exceptions.CRSError:
            raise InputError("crs_unknown", field="out_crs", value=options.out_crs) from None
    return out


def _prefixed(progress: Progress, prefix: str) -> Progress:
    return CallbackProgress(
        on_report=lambda done, total, message: progress.report(done, total, f"{prefix}: {message}"),
        is_cancelled=progress.cancelled,
    )


def load_map(
    path: str, what: str, date: str | None, options: ChangeOptions, scratch: Path, progress: Progress
) -> WaterMap:
    """A water map from a GeoPackage, or from a raster segmented first into ``scratch``."""
    p = Path(path)
    if _is_map(p):
        water_map = read_water_map(p, date=date)
        if not water_map.scenes:
            raise InputError("change_map_empty", field=what, path=str(p))
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


def read_maps(options: ChangeOptions, progress: Progress) -> tuple[WaterMap, WaterMap, list[str]]:
    """(before, after, notes): BEFORE joined by the reference's water, or the reference alone."""
    with tempfile.TemporaryDirectory(prefix="paligemma_change_", dir=options.workdir) as tmp:
        scratch = Path(tmp)
        progress.report(0, _STEPS, "reading before")
        before = None
        if options.before is not None:
            before = load_map(options.before, "before", options.before_date, options, scratch, progress)
        check_cancelled(progress)
        progress.report(1, _STEPS, "reading after")
        after = load_map(options.after, "after", options.after_date, options, scratch, progress)
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
    if before is None:  # ChangeOptions asks for BEFORE or a reference
        raise InputError("change_needs_before", field="before")
    return before, after, notes


def common_crs(before: WaterMap, after: WaterMap, out_crs: str | None) -> tuple[pyproj.CRS, pyproj.CRS]:
    """(the CRS to overlay in, the output's): BEFORE's, unless the maps differ and an output CRS is asked."""
    out = as_crs(out_crs) if out_crs else before.crs
    work = before.crs if before.crs == after.crs else out
    return work, out


def write_change(
    out: Path,
    layers: dict[str, gpd.GeoDataFrame | pd.DataFrame],
    options: ChangeOptions,
    facts: dict[str, object],
) -> None:
    """The change GeoPackage: ``layers`` (classes, observed area, summary) and the run table."""
    from ..geometry.vectorize import write_geopackage

    run = run_table(flatten(options), facts, command="change")
    write_geopackage(out, {**layers, "run": run}, overwrite=options.overwrite)


def water_change(options: ChangeOptions, progress: Progress | None = None) -> ChangeSummary:
    """Compare BEFORE (or a reference) with AFTER and write the change GeoPackage; see the module docstring."""
    from ..inputs.grid import load_aoi

    t0 = time.perf_counter()
    progress = progress or SilentProgress()
    out = check_paths(options)
    before, after, notes = read_maps(options, progress)
    work_crs, out_crs = common_crs(before, after, options.out_crs)
    before, after = before.to_crs(work_crs), after.to_crs(work_crs)
    aoi = None
    if options.aoi not in (None, ""):
        aoi = polygonal(load_aoi(options.aoi, work_crs, options.aoi_crs))

    progress.report(2, _STEPS, "comparing")
    pieces = compare(before, after, aoi).to_crs(work_crs, out_crs)
    check_cancelled(progress)

    progress.report(3, _STEPS, "measuring")
    bdate, adate = before.date, after.date
    dates = {"before_date": bdate, "after_date": adate}
    layers = class_layers(pieces, out_crs, dates, options.min_area_m2)
    observed = observed_layer(pieces.observed, out_crs, dates)
    check_cancelled(progress)
    areas = {name: float(layers[name]["area_m2"].sum()) for name in CLASSES}
    counts = {name: int(len(layers[name])) for name in CLASSES}
    observed_m2 = float(observed["area_m2"].sum())
    table = summary_table(layers, observed, dates)

    progress.report(4, _STEPS, "writing GeoPackage")
    facts: dict[str, object] = {
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
    write_change(out, {**layers, OBSERVED_LAYER: observed, SUMMARY_TABLE: table}, options, facts)
    progress.report(_STEPS, _STEPS, "done")
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
