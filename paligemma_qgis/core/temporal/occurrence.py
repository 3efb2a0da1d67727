"""Water occurrence: how often each place was water, over many dated observations.

The idea and the word are those of the JRC Global Surface Water occurrence layer: the share
of the valid observations of a pixel in which it was water. Observations come from
``segment`` outputs (core.temporal.water_maps: a region run's scenes, or single-scene files), one per
acquisition day: scenes of one day (neighbouring tiles, overlaps) count once, as water
where any of them saw water and observed where any of them looked. Undated maps are one
observation each.

Grid (core.temporal.occurrence_grid): the inputs' own pixels where it can (maps on one grid are
counted pixel for pixel, exactly), else ``crs`` and ``resolution``. Each observation is
rasterised on it by the pixel-centre rule, one block at a time, so memory stays flat
whatever the region's size.

Output GeoTIFF, float32, nodata -1:

1. ``occurrence``: 100 × water / observations (0–100), nodata where observed fewer than
   ``min_observations`` times (never observed, by default);
2. ``observations``: valid observations of the pixel (0 where never observed);
3. ``water``: observations in which the pixel was water.

Classes (optional GeoPackage, one layer each, polygons with area_m2 and perimeter_m):
``permanent`` (occurrence ≥ ``permanent``, default 90 %), ``seasonal`` (≥ ``rare``, default
25 %, and below permanent), ``rare`` (above 0 and below ``rare``), and ``observed`` (where the
occurrence is defined). ``change --reference CLASSES.gpkg`` reads its ``permanent`` layer.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, OutputExistsError
from ..progress import Progress, SilentProgress, check_cancelled
from .occurrence_grid import Grid, make_grid, pixel_grid, windows
from .water_maps import (
    Scene,
    WaterMap,
    check_output_folder,
    day,
    normalise_date,
    read_water_map,
    to_pyproj,
    union,
)

NODATA = -1.0
BANDS = ("occurrence", "observations", "water")
CLASS_NAMES = ("permanent", "seasonal", "rare")


@dataclass
class OccurrenceOptions:
    """What ``occurrence`` needs; JSON-serialisable (the QGIS worker receives it as JSON)."""

    inputs: list[str]  # segment GeoPackages and/or folders of them
    output: str  # GeoTIFF
    classes: str | None = None  # GeoPackage of permanent / seasonal / rare polygons
    crs: str | None = None
    resolution: float | None = None  # pixel size in units of ``crs``
    permanent: float = 90.0
    rare: float = 25.0
    min_observations: int = 1
    start: str | None = None  # keep observations dated on or after (ISO date)
    end: str | None = None  # ... and on or before
    overwrite: bool = False
    block: int = 1024

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OccurrenceOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown occurrence option(s): {', '.join(unknown)}")
        missing = [k for k in ("inputs", "output") if not data.get(k)]
        if missing:
            raise InputError(f"occurrence options need {' and '.join(missing)}")
        values = dict(data)
        if isinstance(values["inputs"], str):
            values["inputs"] = [values["inputs"]]
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class OccurrenceSummary:
    output: str
    classes: str | None
    observations: int
    dates: list[str | None]
    width: int
    height: int
    resolution: tuple[float, float]
    crs: str
    observed_km2: float  # where the occurrence is defined
    water_km2: float  # water at least once
    class_km2: dict[str, float]
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def table(self) -> str:
        dated = sorted(d for d in self.dates if d)
        span = f"{dated[0]} .. {dated[-1]}" if dated else "undated"
        lines = [
            f"{self.output}: water occurrence from {self.observations} observation"
            f"{'s' if self.observations != 1 else ''} ({span}), "
            f"{self.width} x {self.height} px of {self.resolution[0]:.6g} x {self.resolution[1]:.6g} ({self.crs})",
            f"  observed {self.observed_km2:.4f} km2, water at least once {self.water_km2:.4f} km2",
        ]
        if self.classes:
            parts = ", ".join(f"{k} {v:.4f} km2" for k, v in self.class_km2.items())
            lines.append(f"  classes ({self.classes}): {parts}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- observations


def input_files(inputs: list[str]) -> list[Path]:
    """The GeoPackages named, folders expanded to the ``*.gpkg`` files in them (sorted)."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(p.glob("*.gpkg"))
            if not found:
                raise InputError(f"{p}: folder holds no GeoPackage (*.gpkg)")
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise InputError(f"{p}: water map not found")
    return files


def _within(date: str, start: str | None, end: str | None) -> bool:
    """Whether ``date`` overlaps [start, end], each compared at the coarser of the two
    precisions: a scene dated ``1985`` is within ``--start 1985-06-01``, ``--end 2020`` keeps
    every day of 2020."""
    if start:
        n = min(len(date), len(start[:10]))
        if date[:n] < start[:n]:
            return False
    if end:
        n = min(len(date), len(end[:10]))
        if date[:n] > end[:n]:
            return False
    return True


def observations(maps: list[WaterMap], start: str | None = None, end: str | None = None) -> list[Scene]:
    """One Scene per acquisition day (scenes of a day merged), undated maps one each, by date."""
    by_day: dict[str, list[Scene]] = {}
    undated: list[Scene] = []
    for m in maps:
        for s in m.scenes:
            if s.observed is None:
                raise InputError(f"{m.source}: scene {s.scene} has no footprint")
            d = day(s.date)
            if d is None:
                if start is None and end is None:
                    undated.append(s)
                continue
            if not _within(d, start, end):
                continue
            by_day.setdefault(d, []).append(s)
    out = []
    for d in sorted(by_day):
        group = by_day[d]
        water = union([s.water for s in group])
        out.append(
            Scene(
                scene=",".join(s.scene for s in group),
                date=d,
                water=water,
                observed=union([s.observed for s in group] + [water]),
            )
        )
    for s in undated:
        out.append(Scene(s.scene, None, s.water, union([s.observed, s.water]), s.path))
    return out


# --------------------------------------------------------------------------- counting


class _Rasteriser:
    """An observation's water and footprint parts, indexed for block-wise rasterising."""

    def __init__(self, scene: Scene) -> None:
        import shapely

        self.water = shapely.get_parts(np.array([scene.water], dtype=object))
        self.observed = shapely.get_parts(np.array([scene.observed], dtype=object))
        self.water_tree = shapely.STRtree(self.water)
        self.observed_tree = shapely.STRtree(self.observed)

    @staticmethod
    def _burn(parts: np.ndarray, tree: Any, box: Any, shape: tuple[int, int], transform: Any) -> np.ndarray:
        from rasterio.features import rasterize

        hits = tree.query(box)
        if not len(hits):
            return np.zeros(shape, bool)
        return rasterize(
            [(g, 1) for g in parts[hits]], out_shape=shape, transform=transform, dtype="uint8"
        ).astype(bool)

    def masks(self, box: Any, shape: tuple[int, int], transform: Any) -> tuple[np.ndarray, np.ndarray]:
        observed = self._burn(self.observed, self.observed_tree, box, shape, transform)
        if not observed.any():
            return observed, observed
        water = self._burn(self.water, self.water_tree, box, shape, transform)
        return observed | water, water


def classify(water: np.ndarray, count: np.ndarray, permanent: float, rare: float, min_obs: int) -> np.ndarray:
    """0 none, 1 rare, 2 seasonal, 3 permanent; thresholds compared exactly (100·water vs T·count)."""
    defined = count >= max(1, min_obs)
    w100 = water.astype(np.float64) * 100.0
    n = count.astype(np.float64)
    out = np.zeros(water.shape, np.uint8)
    out[defined & (water > 0)] = 1
    out[defined & (w100 >= rare * n) & (water > 0)] = 2
    out[defined & (w100 >= permanent * n) & (water > 0)] = 3
    return out


class _ClassBlocks:
    """One class (or "observed") of the written raster as a mosaic-like source for vectorize_mosaic."""

    def __init__(self, ds: Any, grid: Grid, value: int | None, options: OccurrenceOptions) -> None:
        self.ds, self.value, self.options = ds, value, options
        self.width, self.height, self.transform, self.crs = grid.width, grid.height, grid.transform, grid.crs

    def iter_blocks(self, block: int):
        o = self.options
        for win in windows(Grid(self.crs, self.transform, self.width, self.height), block):
            count, water = self.ds.read([2, 3], window=win)
            if self.value is None:
                arr = count >= max(1, o.min_observations)
            else:
                arr = classify(water, count, o.permanent, o.rare, o.min_observations) == self.value
            yield win, arr.view(np.uint8) if arr.dtype == bool else arr


def _check(options: OccurrenceOptions) -> tuple[Path, Path | None]:
    out = Path(options.output)
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"{out}: output must be a GeoTIFF (.tif)")
    classes = Path(options.classes) if options.classes else None
    if classes is not None and classes.suffix.lower() != ".gpkg":
        raise InputError(f"{classes}: the classes output must be a GeoPackage (.gpkg)")
    for p in (out, classes):
        if p is not None and p.exists() and not options.overwrite:
            raise OutputExistsError(f"{p}: output exists (use --overwrite to replace it)")
        if p is not None:
            check_output_folder(p)
    if not 0 < options.rare <= options.permanent <= 100:
        raise InputError(
            f"class thresholds must satisfy 0 < rare <= permanent <= 100, got rare {options.rare}, "
            f"permanent {options.permanent}"
        )
    if options.min_observations < 1:
        raise InputError(f"min observations must be at least 1, got {options.min_observations}")
    normalise_date(options.start, "start date")
    normalise_date(options.end, "end date")
    return out, classes


def water_occurrence(
    options: OccurrenceOptions | dict, progress: Progress | None = None
) -> OccurrenceSummary:
    """Count water over the inputs' observations and write the GeoTIFF (and the classes); see the module docstring."""
    import rasterio

    from ..geometry.pixel_area import PixelArea
    from ..run.atomic import atomic_output

    t0 = time.perf_counter()
    progress = progress or SilentProgress()
    if isinstance(options, dict):
        options = OccurrenceOptions.from_dict(options)
    out, classes_path = _check(options)
    files = input_files(list(options.inputs))
    if classes_path is not None and any(classes_path.resolve() == f.resolve() for f in files):
        raise InputError(f"{classes_path}: the classes output would overwrite an input")
    maps: list[WaterMap] = []
    for i, path in enumerate(files):
        progress.report(i, len(files), "reading water maps")
        maps.append(read_water_map(path))
        check_cancelled(progress)
    crs = to_pyproj(options.crs) if options.crs else maps[0].crs
    grids = [g for g in (pixel_grid(Path(m.source), crs) for m in maps) if g is not None]
    maps = [m.to_crs(crs) for m in maps]
    obs = observations(maps, options.start, options.end)
    if not obs:
        raise InputError("no observation left (check --start / --end against the scene dates)")
    grid = make_grid(obs, crs, options.resolution, grids)
    notes = [n for m in maps for n in m.notes]

    from rasterio.windows import bounds as window_bounds
    from rasterio.windows import transform as window_transform
    from shapely.geometry import box

    rasterisers = [_Rasteriser(s) for s in obs]
    profile = dict(
        driver="GTiff",
        width=grid.width,
        height=grid.height,
        count=len(BANDS),
        dtype="float32",
        crs=rasterio.crs.CRS.from_wkt(crs.to_wkt()),
        transform=grid.transform,
        nodata=NODATA,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        predictor=3,
        BIGTIFF="IF_SAFER",
    )
    blocks = list(windows(grid, options.block))
    pixel_area = PixelArea(grid.transform, crs, grid.width, grid.height)
    observed_m2 = water_m2 = 0.0
    with atomic_output(out, overwrite=options.overwrite, suffix=".tif") as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            for i, band in enumerate(BANDS, start=1):
                dst.set_band_description(i, band)
            for k, win in enumerate(blocks):
                check_cancelled(progress)
                progress.report(k, len(blocks), "counting observations")
                shape = (int(win.height), int(win.width))
                t = window_transform(win, grid.transform)
                b = box(*window_bounds(win, grid.transform))
                count = np.zeros(shape, np.uint32)
                water = np.zeros(shape, np.uint32)
                for r in rasterisers:
                    seen, wet = r.masks(b, shape, t)
                    count += seen
                    water += wet & seen
                defined = count >= options.min_observations
                occ = np.full(shape, NODATA, np.float32)
                occ[defined] = (100.0 * water[defined] / count[defined]).astype(np.float32)
                dst.write(np.stack([occ, count.astype(np.float32), water.astype(np.float32)]), window=win)
                r0, c0 = int(win.row_off), int(win.col_off)
                observed_m2 += pixel_area.area(r0, c0, defined)
                water_m2 += pixel_area.area(r0, c0, (water > 0) & defined)
        progress.report(len(blocks), len(blocks), "counting observations")
        class_km2: dict[str, float] = {}
        if classes_path is not None:
            class_km2 = _write_classes(tmp, grid, options, classes_path, obs, progress)
    return OccurrenceSummary(
        output=str(out),
        classes=str(classes_path) if classes_path else None,
        observations=len(obs),
        dates=[s.date for s in obs],
        width=grid.width,
        height=grid.height,
        resolution=(grid.transform.a, -grid.transform.e),
        crs=crs.to_string(),
        observed_km2=observed_m2 / 1e6,
        water_km2=water_m2 / 1e6,
        class_km2=class_km2,
        seconds=time.perf_counter() - t0,
        notes=notes,
    )


def _write_classes(
    tif: Path, grid: Grid, options: OccurrenceOptions, path: Path, obs: list[Scene], progress: Progress
) -> dict[str, float]:
    """Polygons of each class and of the observed area, read back from the written counts."""
    import pandas as pd
    import rasterio

    from ..geometry.vectorize import vectorize_mosaic, write_geopackage

    layers: dict[str, Any] = {}
    km2: dict[str, float] = {}
    dates = [s.date for s in obs if s.date]
    with rasterio.open(tif) as ds:
        for name, value in (("permanent", 3), ("seasonal", 2), ("rare", 1), ("observed", None)):
            check_cancelled(progress)
            progress.report(0, 1, f"vectorising {name}")
            gdf = vectorize_mosaic(_ClassBlocks(ds, grid, value, options), label=name, progress=progress)
            gdf = gdf.rename(columns={"label": "class"})
            gdf.attrs["geometry_type"] = "Polygon"
            layers[name] = gdf
            if name != "observed":
                km2[name] = float(gdf["area_m2"].sum()) / 1e6
    rows = [
        ("tool", "paligemma_qgis occurrence"),
        ("occurrence_tif", str(options.output)),
        ("observations", str(len(obs))),
        ("first_date", min(dates) if dates else ""),
        ("last_date", max(dates) if dates else ""),
        ("permanent_min_pct", f"{options.permanent:g}"),
        ("rare_below_pct", f"{options.rare:g}"),
        ("min_observations", str(options.min_observations)),
    ]
    layers["run"] = pd.DataFrame({"key": [k for k, _ in rows], "value": [v for _, v in rows]})
    write_geopackage(path, layers, overwrite=options.overwrite)
    return km2
