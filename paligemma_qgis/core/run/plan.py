"""A scene's plan: its raster opened with the run's band choice, its chip grid, its statistics.

    open_scene -> plan_scene -> scene_statistics      (then run/chips: the chip loop)

Everything that can be wrong with a scene (bands, overlap, AOI, size) is found by
``plan_scene`` before its statistics are read or a chip is segmented: failures stay cheap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..geometry.mosaic import MAX_COVERAGE
from ..inputs.chip_reader import GDAL_CACHE_MB, block_cache_bytes
from ..inputs.grid import ChipGrid
from ..inputs.scenes import Scene, acquisition_date
from ..model.segmenter import ChipBatch, Segmenter
from ..specs import GridSpec, OutputSpec, ReadSpec

if TYPE_CHECKING:
    from rasterio.windows import Window

    from ..geometry.mosaic import Mosaic
    from ..inputs.raster import RasterSource


@dataclass
class ScenePlan:
    """What a scene's chips need, picklable (Ray tasks rebuild their reader from it)."""

    scene: Scene
    raw_bands: list[int]
    size: int
    grid: ChipGrid
    aoi: Any  # shapely geometry in the raster's CRS, or None
    crs_wkt: str
    transform: tuple[float, ...]
    date: str | None
    footprint: Any  # the raster's extent, a polygon in its CRS
    stretch: list[tuple[float, float]] | None = None  # set by scene_statistics
    min_valid_fraction: float = 0.05

    @property
    def n_chips(self) -> int:
        return len(self.grid)

    @property
    def extent(self) -> Window:
        """The chips' extent (plan_scene refused a scene without one)."""
        ext = self.grid.extent
        if ext is None:
            raise RuntimeError(f"{self.scene.label}: no chip to map")
        return ext


def open_scene(scene: Scene, read: ReadSpec) -> RasterSource:
    """The scene's raster with the run's band choice and cloud mask (errors name the scene as the user gave it)."""
    from ..inputs.cloud_mask import open_masked

    return open_masked(
        scene,
        read,
        bands=read.bands,
        preset=read.preset,
        resolution=read.resolution,
        stretch=read.stretch,
        green=read.green,
        nir=read.nir,
        swir=read.swir,
        label=scene.source,
        on_read_error=read.on_read_error,
    )


def max_chips_per_pixel(width: int, height: int, size: int, overlap: int) -> int:
    """Most chips over any one pixel: the product of the two axes' maxima (the grid is separable)."""
    from ..inputs.grid import axis_offsets

    most = 1
    for dim in (width, height):
        count = np.zeros(dim + 1, np.int64)
        for off in axis_offsets(dim, size, overlap):
            count[off] += 1
            count[min(off + size, dim)] -= 1
        most *= int(np.cumsum(count).max())
    return most


def _all_nodata(src: RasterSource) -> bool:
    """A decimated read of the first band says whether any pixel holds data."""
    _, _, valid = src.read_sample([1], window=None, rgb=False)
    return not bool(valid.any())


def plan_scene(
    src: RasterSource, segmenter: Segmenter, grid: GridSpec, output: OutputSpec, scene: Scene
) -> ScenePlan:
    """Bands, chip grid and AOI of one scene; every check that needs the raster, before any read.

    ``grid.overlap`` must be resolved (``SegmentSpec.resolved``).
    """
    from ..inputs.grid import load_aoi, window_footprint
    from ..inputs.raster import Window

    try:
        raw_bands = [int(b) for b in segmenter.bands_needed(src.raster_bands)]
    except InputError as exc:
        if exc.code == "band_unknown" and _all_nodata(src):  # the deeper problem: nothing to map
            raise InputError("no_valid_pixels", path=src.path) from None
        raise exc.at(src.path) from None
    for b in raw_bands:
        if not 1 <= b <= src.count:
            raise InputError("band_missing", field="bands", path=src.path, band=b, count=src.count)
    size = int(segmenter.info.chip_size)
    overlap = int(grid.overlap or 0)
    if not 0 <= overlap < size:
        raise InputError("overlap_too_large", field="overlap", value=overlap, most=size - 1)
    if output.simplify > 0 and src.crs.is_geographic and output.simplify > 100 * abs(src.res[0]):
        raise InputError(
            "simplify_in_degrees", field="simplify", path=src.path, value=output.simplify, crs=str(src.crs)
        )
    aoi = None
    if grid.aoi is not None and grid.aoi != "":
        aoi = load_aoi(grid.aoi, src.crs, grid.aoi_crs)
    chips = ChipGrid(src.width, src.height, size, overlap, aoi=aoi, transform=src.transform)
    extent = chips.extent
    if extent is None:
        raise InputError("aoi_outside", field="aoi", aoi=str(grid.aoi), path=src.path)
    pixels = int(extent.width) * int(extent.height)
    if pixels > grid.max_pixels:
        raise InputError(
            "scene_too_big",
            path=src.path,
            width=f"{int(extent.width):,}",
            height=f"{int(extent.height):,}",
            limit=f"{grid.max_pixels:,.0f}",
        )
    stack = max_chips_per_pixel(int(extent.width), int(extent.height), size, overlap)
    if stack > MAX_COVERAGE:
        raise InputError(
            "overlap_stack", field="overlap", value=overlap, stack=stack, most=MAX_COVERAGE, hint=size // 2
        )
    return ScenePlan(
        scene=scene,
        raw_bands=raw_bands,
        size=size,
        grid=chips,
        aoi=aoi,
        crs_wkt=src.crs.to_wkt(),
        transform=tuple(src.transform)[:6],
        date=scene.date or acquisition_date(src.tags),
        footprint=window_footprint(Window(0, 0, src.width, src.height), src.transform),
        min_valid_fraction=grid.min_valid_fraction,
    )


def scene_statistics(src: RasterSource, segmenter: Segmenter, plan: ScenePlan) -> None:
    """One sample read: the scene-wide 8-bit stretch and the segmenter's ``prepare`` (e.g. Otsu).

    Only what the engine needs: no read at all when it needs neither (the water index with
    a fixed threshold, a model on 8-bit data); the chip loop then finds an all-nodata
    raster itself. With an AOI the read covers the part being mapped: the rest of a huge
    raster may hold nothing at all, and the stretch should suit the area the model sees.
    """
    from rasterio.windows import Window

    info = segmenter.info
    if not (info.needs_sample or (info.needs_rgb and src.dtype != "uint8")):
        return
    whole = plan.grid.extent == Window(0, 0, src.width, src.height)
    raw, rgb, valid = src.read_sample(
        plan.raw_bands, window=None if whole else plan.grid.extent, rgb=info.needs_rgb
    )
    if not valid.any():
        raise InputError("no_valid_pixels", path=src.path)
    if info.needs_sample:
        segmenter.prepare(ChipBatch(raw=raw[None], rgb=rgb[None], valid=valid[None], ids=[-1]))
    plan.stretch = src.stretch if info.needs_rgb else None


def scene_mosaic(plan: ScenePlan, output: OutputSpec, workdir: str | None) -> Mosaic:
    """The scene's disk-backed mosaic over the chips' extent (an AOI's part of a huge raster)."""
    from affine import Affine
    from rasterio.windows import transform as window_transform

    from ..geometry.mosaic import Mosaic

    ext = plan.extent
    t = window_transform(ext, Affine(*plan.transform))
    return Mosaic(int(ext.width), int(ext.height), t, plan.crs_wkt, workdir=workdir, vote=output.vote)


def gdal_env(src: RasterSource, size: int) -> dict[str, Any]:
    """GDAL's block cache for a run: a few tile rows are all a chip row needs (default: 5% of RAM)."""
    if os.environ.get("GDAL_CACHEMAX"):
        return {}
    return {"GDAL_CACHEMAX": max(GDAL_CACHE_MB << 20, block_cache_bytes(src, size))}
