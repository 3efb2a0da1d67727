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

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError, OutputExistsError
from ..progress import Progress, SilentProgress, check_cancelled
from ..serial import to_data
from .map_reader import read_water_map
from .occurrence_grid import Grid, make_grid, pixel_grid, windows
from .options import OccurrenceOptions
from .water_maps import (
    Scene,
    WaterMap,
    as_crs,
    check_output_folder,
    day,
    union,
)

if TYPE_CHECKING:
    import geopandas as gpd
    import pyproj
    import shapely
    from affine import Affine
    from rasterio.io import DatasetReader
    from rasterio.windows import Window
    from shapely.geometry.base import BaseGeometry

__all__ = [
    "OccurrenceOptions",
    "OccurrenceSummary",
    "classify",
    "count_block",
    "observations",
    "water_occurrence",
]

NODATA = -1.0
BANDS = ("occurrence", "observations", "water")
CLASS_NAMES = ("permanent", "seasonal", "rare")


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

    def to_dict(self) -> dict[str, object]:
        return to_data(self)

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


def input_files(inputs: Sequence[str]) -> list[Path]:
    """The GeoPackages named, folders expanded to the ``*.gpkg`` files in them (sorted)."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(p.glob("*.gpkg"))
            if not found:
                raise InputError("occurrence_folder_empty", field="inputs", path=str(p))
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise InputError("water_map_not_found", field="inputs", path=str(p))
    return files


def _within(date: str, start: str | None, end: str | None) -> bool:
    """Whether ``date`` overlaps [start, end], each compared at the coarser of the two
    precisions: a scene dated ``1985`` is within a start of ``1985-06-01``, an end of
    ``2020`` keeps every day of 2020."""
    if start:
        n = min(len(date), len(start[:10]))
        if date[:n] < start[:n]:
            return False
    if end:
        n = min(len(date), len(end[:10]))
        if date[:n] > end[:n]:
            return False
    return True


def observations(maps: Sequence[WaterMap], start: str | None = None, end: str | None = None) -> list[Scene]:
    """One Scene per acquisition day (scenes of a day merged), undated maps one each, by date."""
    by_day: dict[str, list[Scene]] = {}
    undated: list[Scene] = []
    for m in maps:
        for s in m.scenes:
            if s.observed is None:
                raise InputError("occurrence_no_footprint", path=m.source, scene=s.scene)
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


class Rasteriser:
    """An observation's water and footprint parts, indexed for block-wise rasterising."""

    def __init__(self, scene: Scene) -> None:
        import shapely

        self.water = shapely.get_parts(np.array([scene.water], dtype=object))
        self.observed = shapely.get_parts(np.array([scene.observed], dtype=object))
        self.water_tree = shapely.STRtree(self.water)
        self.observed_tree = shapely.STRtree(self.observed)

    @staticmethod
    def _burn(
        parts: np.ndarray, tree: shapely.STRtree, box: BaseGeometry, shape: tuple[int, int], transform: Affine
    ) -> np.ndarray:
        from rasterio.features import rasterize

        hits = tree.query(box)
        if not len(hits):
            return np.zeros(shape, bool)
        return rasterize(
            [(g, 1) for g in parts[hits]], out_shape=shape, transform=transform, dtype="uint8"
        ).astype(bool)

    def masks(
        self, box: BaseGeometry, shape: tuple[int, int], transform: Affine
    ) -> tuple[np.ndarray, np.ndarray]:
        """(observed, water) on the block: water where observed or water (water is seen)."""
        observed = self._burn(self.observed, self.observed_tree, box, shape, transform)
        if not observed.any():
            return observed, observed
        water = self._burn(self.water, self.water_tree, box, shape, transform)
        return observed | water, water


def count_block(
    masks: Iterable[tuple[np.ndarray, np.ndarray]], shape: tuple[int, int], min_observations: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(occurrence, observations, water) of one block from each observation's (observed, water) masks
    (an iterable: one observation's masks in memory at a time).

    Occurrence is 100 x water / observations (float32), NODATA where observed fewer than
    ``min_observations`` times.
    """
    count = np.zeros(shape, np.uint32)
    water = np.zeros(shape, np.uint32)
    for seen, wet in masks:
        count += seen
        water += wet & seen
    defined = count >= min_observations
    occ = np.full(shape, NODATA, np.float32)
    occ[defined] = (100.0 * water[defined] / count[defined]).astype(np.float32)
    return occ, count, water


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

    def __init__(self, ds: DatasetReader, grid: Grid, value: int | None, options: OccurrenceOptions) -> None:
        self.ds, self.value, self.options = ds, value, options
        self.width, self.height, self.transform, self.crs = grid.width, grid.height, grid.transform, grid.crs

    def iter_blocks(self, block: int) -> Iterator[tuple[Window, np.ndarray]]:
        o = self.options
        for win in windows(Grid(self.crs, self.transform, self.width, self.height), block):
            count, water = self.ds.read([2, 3], window=win)
            if self.value is None:
                arr = count >= max(1, o.min_observations)
            else:
                arr = classify(water, count, o.permanent, o.rare, o.min_observations) == self.value
            yield win, arr.view(np.uint8) if arr.dtype == bool else arr


# --------------------------------------------------------------------------- stages


def check_outputs(options: OccurrenceOptions) -> tuple[Path, Path | None]:
    """The outputs may be written: not there (unless overwrite), in a folder that exists."""
    out = Path(options.output)
    classes = Path(options.classes) if options.classes else None
    for p, name in ((out, "output"), (classes, "classes")):
        if p is None:
            continue
        if p.exists() and not options.overwrite:
            raise OutputExistsError("output_exists", field=name, path=str(p))
        check_output_folder(p, name)
    return out, classes


def read_maps(files: Sequence[Path], progress: Progress) -> list[WaterMap]:
    maps: list[WaterMap] = []
    for i, path in enumerate(files):
        progress.report(i, len(files), "reading water maps")
        maps.append(read_water_map(path))
        check_cancelled(progress)
    return maps


def plan_grid(
    maps: Sequence[WaterMap], options: OccurrenceOptions
) -> tuple[list[Scene], Grid, pyproj.CRS, list[str]]:
    """(observations, the grid, its CRS, notes): the maps in one CRS, counted per day, on one grid."""
    crs = as_crs(options.crs) if options.crs else maps[0].crs
    grids = [g for g in (pixel_grid(Path(m.source), crs) for m in maps) if g is not None]
    in_crs = [m.to_crs(crs) for m in maps]
    obs = observations(in_crs, options.start, options.end)
    if not obs:
        raise InputError("occurrence_no_observation")
    grid = make_grid(obs, crs, options.resolution, grids)
    return obs, grid, crs, [n for m in in_crs for n in m.notes]


def _profile(grid: Grid, crs: pyproj.CRS) -> dict[str, object]:
    import rasterio

    return dict(
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


def write_counts(
    tif: Path,
    obs: Sequence[Scene],
    grid: Grid,
    crs: pyproj.CRS,
    options: OccurrenceOptions,
    progress: Progress,
) -> tuple[float, float]:
    """Count every block into the GeoTIFF ``tif``; (observed m2, water-at-least-once m2)."""
    import rasterio
    from rasterio.windows import bounds as window_bounds
    from rasterio.windows import transform as window_transform
    from shapely.geometry import box

    from ..geometry.pixel_area import PixelArea

    rasterisers = [Rasteriser(s) for s in obs]
    blocks = list(windows(grid, options.block))
    pixel_area = PixelArea(grid.transform, crs, grid.width, grid.height)
    observed_m2 = water_m2 = 0.0
    with rasterio.open(tif, "w", **_profile(grid, crs)) as dst:
        for i, band in enumerate(BANDS, start=1):
            dst.set_band_description(i, band)
        for k, win in enumerate(blocks):
            check_cancelled(progress)
            progress.report(k, len(blocks), "counting observations")
            shape = (int(win.height), int(win.width))
            t = window_transform(win, grid.transform)
            b = box(*window_bounds(win, grid.transform))
            masks = (r.masks(b, shape, t) for r in rasterisers)
            occ, count, water = count_block(masks, shape, options.min_observations)
            dst.write(np.stack([occ, count.astype(np.float32), water.astype(np.float32)]), window=win)
            defined = count >= options.min_observations
            r0, c0 = int(win.row_off), int(win.col_off)
            observed_m2 += pixel_area.area(r0, c0, defined)
            water_m2 += pixel_area.area(r0, c0, (water > 0) & defined)
    progress.report(len(blocks), len(blocks), "counting observations")
    return observed_m2, water_m2


def water_occurrence(options: OccurrenceOptions, progress: Progress | None = None) -> OccurrenceSummary:
    """Count water over the inputs' observations and write the GeoTIFF (and the classes); see the module docstring."""
    from ..run.atomic import atomic_output

    t0 = time.perf_counter()
    progress = progress or SilentProgress()
    out, classes_path = check_outputs(options)
    files = input_files(options.inputs)
    if classes_path is not None and any(classes_path.resolve() == f.resolve() for f in files):
        raise InputError("occurrence_classes_is_input", field="classes", path=str(classes_path))
    maps = read_maps(files, progress)
    obs, grid, crs, notes = plan_grid(maps, options)
    with atomic_output(out, overwrite=options.overwrite, suffix=".tif") as tmp:
        observed_m2, water_m2 = write_counts(tmp, obs, grid, crs, options, progress)
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
    tif: Path, grid: Grid, options: OccurrenceOptions, path: Path, obs: Sequence[Scene], progress: Progress
) -> dict[str, float]:
    """Polygons of each class and of the observed area, read back from the written counts."""
    import pandas as pd
    import rasterio

    from ..geometry.vectorize import vectorize_mosaic, write_geopackage

    layers: dict[str, gpd.GeoDataFrame] = {}
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
