"""Chip windows over a raster: size, overlap, edge snapping and area of interest.

The formula (per axis, as torchgeo's ``tile_to_chips``): with ``stride = size - overlap``,
offsets are ``0, stride, 2*stride, ...`` while a chip still fits, and one more chip is
snapped to the raster edge (offset ``dim - size``) when the last one falls short. So there
are ``ceil((dim - size) / stride) + 1`` chips per axis, every chip lies inside the raster,
and the overlap only grows at the last row/column: chips are never padded with black,
because dark padding looks like water to every water model.

Rasters smaller than a chip (``dim < size`` on an axis): that axis gets one chip covering
the whole axis, so the window is smaller than ``size``. The pipeline reads such a window
resampled (nearest) to ``size x size``, so a segmenter always sees full-size chips, and maps
the mask back to the window's pixels; see ``Chip.full_size`` and ``pipeline``.

Area of interest: ``aoi_mask`` is a coarse boolean raster over the scene (see
``aoi_coarse_mask``); a chip is kept when any cell under it is set.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from rasterio.windows import Window

from .errors import InputError


@dataclass(frozen=True)
class Chip:
    """One chip: ``window`` in raster pixels (never beyond the raster)."""

    id: int
    window: Window
    size: int  # the chip size asked for; the window is smaller only for small rasters

    @property
    def col_off(self) -> int:
        return int(self.window.col_off)

    @property
    def row_off(self) -> int:
        return int(self.window.row_off)

    @property
    def full_size(self) -> bool:
        """True when the window is size x size (False only on rasters smaller than a chip)."""
        return int(self.window.width) == self.size and int(self.window.height) == self.size


def axis_offsets(dim: int, size: int, overlap: int = 0) -> list[int]:
    """Chip offsets along one axis: regular stride, last chip snapped to the edge."""
    if size < 1:
        raise ValueError(f"chip size must be positive, got {size}")
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be in [0, {size}), got {overlap}")
    if dim <= size:
        return [0]
    stride = size - overlap
    n = math.ceil((dim - size) / stride) + 1
    return [min(i * stride, dim - size) for i in range(n)]


def chip_windows(
    width: int,
    height: int,
    size: int = 224,
    overlap: int = 0,
    *,
    aoi_mask: np.ndarray | None = None,
) -> list[Chip]:
    """All chips covering a ``width x height`` raster, row by row (ids 0, 1, ...).

    ``aoi_mask``: coarse boolean array (rows, cols) over the whole raster; chips with no set
    cell under them are left out (ids stay dense over the kept chips).
    """
    if width < 1 or height < 1:
        raise ValueError(f"raster size must be positive, got {width}x{height}")
    cols = axis_offsets(width, size, overlap)
    rows = axis_offsets(height, size, overlap)
    w, h = min(size, width), min(size, height)
    if aoi_mask is not None:
        aoi_mask = np.asarray(aoi_mask, bool)
        fy = height / aoi_mask.shape[0]
        fx = width / aoi_mask.shape[1]
    chips: list[Chip] = []
    for r in rows:
        for c in cols:
            if aoi_mask is not None:
                r0, r1 = int(r / fy), max(int(r / fy) + 1, math.ceil((r + h) / fy))
                c0, c1 = int(c / fx), max(int(c / fx) + 1, math.ceil((c + w) / fx))
                if not aoi_mask[r0:r1, c0:c1].any():
                    continue
            chips.append(Chip(len(chips), Window(c, r, w, h), size))
    return chips


# ---------------------------------------------------------------- area of interest
def _parse_extent(text: str) -> tuple[tuple[float, float, float, float], str | None] | None:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (4, 5):
        return None
    try:
        xs = tuple(float(p) for p in parts[:4])
    except ValueError:
        return None
    return xs, (parts[4] if len(parts) == 5 else None)  # type: ignore[return-value]


def load_aoi(aoi: Any, target_crs: Any, aoi_crs: Any = None) -> Any:
    """An area of interest as one shapely geometry in ``target_crs``.

    ``aoi``: a vector file path (all features, unioned), a shapely geometry, an extent
    ``(xmin, ymin, xmax, ymax)``, or the text ``"xmin,ymin,xmax,ymax[,EPSG:xxxx]"``.
    ``aoi_crs``: the CRS of a geometry or extent (default: ``target_crs``); a file's own CRS
    always wins.
    """
    import shapely
    from pyproj import CRS, Transformer
    from shapely.geometry import box

    geom = None
    src_crs = aoi_crs
    if isinstance(aoi, (str, os.PathLike)):
        extent = _parse_extent(str(aoi)) if isinstance(aoi, str) else None
        if extent is not None:
            geom = box(*extent[0])
            src_crs = extent[1] or aoi_crs
        else:
            import pyogrio

            if not os.path.exists(aoi):
                raise InputError(f"{aoi}: area of interest file not found", field="aoi")
            try:
                gdf = pyogrio.read_dataframe(aoi)
            except Exception as exc:  # pyogrio raises several error types
                raise InputError(
                    f"{aoi}: cannot read area of interest as vectors ({exc})", field="aoi"
                ) from None
            if gdf.empty:
                raise InputError(f"{aoi}: area of interest has no features", field="aoi")
            if gdf.crs is None:
                raise InputError(f"{aoi}: area of interest has no CRS", field="aoi")
            geom = shapely.union_all(gdf.geometry.values)
            src_crs = gdf.crs
    elif isinstance(aoi, Sequence) and len(aoi) == 4:
        geom = box(*[float(v) for v in aoi])
    elif hasattr(aoi, "geom_type"):
        geom = aoi
    else:
        raise InputError(f"unsupported area of interest: {aoi!r}", field="aoi")
    if geom.is_empty:
        raise InputError(f"{aoi}: area of interest is empty", field="aoi")
    if src_crs is not None:
        src, dst = CRS.from_user_input(src_crs), CRS.from_user_input(target_crs)
        if src != dst:
            if (
                geom.geom_type == "Polygon"
                and len(geom.exterior.coords) == 5
                and geom.equals(box(*geom.bounds))
            ):
                geom = shapely.segmentize(geom, max(geom.bounds[2] - geom.bounds[0], 1e-9) / 64)
            t = Transformer.from_crs(src, dst, always_xy=True)
            geom = shapely.transform(geom, lambda x, y: t.transform(x, y), interleaved=False)
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    return geom


def aoi_coarse_mask(geom: Any, transform: Affine, width: int, height: int, *, cell: int = 16) -> np.ndarray:
    """Rasterise an AOI (in the raster's CRS) on a grid of ``cell``-pixel cells, all touched."""
    from rasterio.features import rasterize

    rows, cols = math.ceil(height / cell), math.ceil(width / cell)
    coarse = transform * Affine.scale(width / cols, height / rows)
    return (
        rasterize([(geom, 1)], out_shape=(rows, cols), transform=coarse, all_touched=True, dtype="uint8") > 0
    )


def window_footprint(window: Window, transform: Affine) -> Any:
    """The chip's footprint polygon in raster CRS (exact for rotated transforms too)."""
    from shapely.geometry import Polygon

    c0, r0 = window.col_off, window.row_off
    c1, r1 = c0 + window.width, r0 + window.height
    return Polygon([transform * (c0, r0), transform * (c1, r0), transform * (c1, r1), transform * (c0, r1)])
