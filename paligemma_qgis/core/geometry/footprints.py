"""Where a single-scene ``segment`` output looked, rebuilt for outputs without a ``scenes`` layer.

Region runs write each scene's observed footprint; ``segment`` outputs of one raster made
before them do not. Their footprint is rebuilt the way segment drew it: the pixels it
counted as valid (the raster named in the ``run`` table, read again with the run's band
and resolution options: declared nodata, alpha, mask, NaN) inside the chips it segmented
(``chips`` layer, status not "skipped") inside the run's area of interest. Without the
raster, the segmented chips alone, and a note says that nodata inside them then counts as
observed land.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from .shapes import polygonal, reproject, to_pyproj

if TYPE_CHECKING:
    import pyproj
    from rasterio.windows import Window
    from shapely.geometry.base import BaseGeometry

    from ..inputs.raster import RasterSource


def legacy_footprint(
    path: Path,
    chips: tuple[BaseGeometry, Any] | None,
    run: dict[str, Any],
    raster: str,
    notes: list[str],
) -> tuple[BaseGeometry, dict[str, Any]]:
    """Observed footprint of a single-scene output: valid pixels ∩ segmented chips ∩ AOI.

    ``chips``: (the union of the chips the run segmented, their CRS), from the output's
    ``chips`` layer (core.temporal.water_maps reads it), or None when it has none.
    """
    chips_geom, chips_crs = chips if chips is not None else (None, None)
    valid = None
    valid_crs = None
    if raster and Path(raster).is_file():
        try:
            valid, valid_crs = valid_footprint(raster, run)
        except InputError as exc:
            notes.append(f"{path}: cannot read the valid pixels of {raster} again ({exc})")
    if valid is None:
        if chips_geom is None:
            raise InputError("footprint_unknown", path=str(path))
        notes.append(
            f"{path}: footprint taken as the segmented chips"
            + (f" (raster {raster} not found)" if raster else "")
            + ": nodata inside them counts as observed land"
        )
        footprint, crs = chips_geom, chips_crs
    else:
        footprint, crs = valid, valid_crs
        if chips_geom is not None:
            if chips_crs is not None and to_pyproj(chips_crs) != to_pyproj(valid_crs):
                chips_geom = reproject(chips_geom, chips_crs, valid_crs)
            footprint = polygonal(footprint.intersection(chips_geom))
    aoi = run.get("option.aoi")
    if aoi not in (None, ""):
        from ..inputs.grid import load_aoi

        try:
            footprint = polygonal(footprint.intersection(load_aoi(aoi, crs, run.get("option.aoi_crs"))))
        except InputError as exc:
            notes.append(f"{path}: footprint not clipped to the run's area of interest ({exc})")
    return footprint, {"crs": crs}


class _ValidPixels:
    """A raster's valid-pixel mask as a mosaic-like source for core.geometry.vectorize.vectorize_mosaic."""

    def __init__(self, src: RasterSource, bands: list[int]) -> None:
        self.src, self.bands = src, bands
        self.width, self.height = src.width, src.height
        self.transform, self.crs = src.transform, src.crs

    def iter_blocks(self, block: int) -> Iterator[tuple[Window, np.ndarray]]:
        from rasterio.windows import Window

        for r in range(0, self.height, block):
            for c in range(0, self.width, block):
                win = Window(c, r, min(block, self.width - c), min(block, self.height - r))
                _, _, valid = self.src.read_chip(win, self.bands)
                yield win, valid.view(np.uint8)


def valid_footprint(raster: str, run: dict[str, Any] | None = None) -> tuple[BaseGeometry, pyproj.CRS]:
    """(polygons of the valid pixels, CRS) of ``raster`` read as the ``run`` table says segment read it.

    Same bands (RGB + the engine's), same resolution, same nodata rule (declared nodata,
    alpha, mask, NaN), so the polygons are the pixels segment counted as valid.
    """
    import shapely

    from ..inputs.raster import open_raster
    from .vectorize import vectorize_mosaic

    run = run or {}

    def opt(name: str) -> Any:
        value = run.get(f"option.{name}")
        return None if value in ("", None) else value

    import rasterio

    engine_bands = run.get("engine.bands")
    bands = [int(b) for b in engine_bands] if isinstance(engine_bands, list) else []
    with (
        rasterio.Env(),
        open_raster(
            raster,
            bands=opt("bands"),
            preset=opt("preset"),
            resolution=opt("resolution"),
            green=opt("green"),
            nir=opt("nir"),
            swir=opt("swir"),
        ) as src,
    ):
        bands = [b for b in bands if 1 <= b <= src.count]
        polys = vectorize_mosaic(_ValidPixels(src, bands))
        crs = to_pyproj(src.crs)
    return polygonal(shapely.union_all(polys.geometry.values)), crs
