"""The occurrence raster's grid: the inputs' own pixels where it can, so counting is exact.

CRS ``crs`` (default: the first input's) and pixel size ``resolution`` in its units
(default: the finest pixel of the inputs, read from their ``chips`` layers, whose footprints
segment draws on the pixel grid). The grid is aligned to that input's pixel corners, so a
map on that grid lands on it pixel for pixel; a map on another grid or CRS is resampled by
the pixel-centre rule. The extent covers every observed footprint.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..geometry.shapes import to_pyproj
from .water_maps import Scene

if TYPE_CHECKING:
    import pyproj
    from affine import Affine
    from rasterio.windows import Window

# (pixel width, pixel height, origin x, origin y) of an input's pixels; no origin when approximate
PixelGrid = tuple[float, float, float | None, float | None]

MAX_PIXELS = 4_000_000_000  # a grid bigger than this is almost surely a wrong resolution


@dataclass
class Grid:
    """The occurrence raster's grid: north up, ``width`` x ``height`` pixels."""

    crs: pyproj.CRS
    transform: Affine
    width: int
    height: int


def pixel_grid(path: Path, crs: pyproj.CRS) -> PixelGrid | None:
    """(pixel width, pixel height, origin x, origin y) of a segment output in ``crs``, from its chips.

    Exact (with an origin on a pixel corner) when the chips are north-up rectangles in ``crs``;
    approximate (no origin) when they had to be reprojected; None without a chips layer.
    """
    import pyogrio
    import shapely

    try:
        chips = pyogrio.read_dataframe(path, layer="chips")
    except Exception:  # no chips layer: no grid to read
        return None
    chips = chips[chips.geometry.notna()]
    if not len(chips) or chips.crs is None or not {"width", "height"} <= set(chips.columns):
        return None
    chips = chips[(chips["width"] > 0) & (chips["height"] > 0)]
    if not len(chips):
        return None
    if to_pyproj(chips.crs) != to_pyproj(crs):
        chips = chips.to_crs(to_pyproj(crs))
    geoms = chips.geometry.values
    b = shapely.bounds(geoms)
    box_area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    pixels = (chips["width"] * chips["height"]).to_numpy(float)
    finest = int(np.argmin(shapely.area(geoms) / pixels))  # a run may mix scenes of several resolutions
    x0, y0, x1, y1 = b[finest]
    if abs(shapely.area(geoms[finest]) - box_area[finest]) > 1e-6 * box_area[finest]:
        size = math.sqrt(shapely.area(geoms[finest]) / pixels[finest])  # rotated or reprojected chips
        return size, size, None, None
    row = chips.iloc[finest]
    return (x1 - x0) / float(row["width"]), (y1 - y0) / float(row["height"]), x0, y1


def make_grid(
    obs: Sequence[Scene], crs: pyproj.CRS, resolution: float | None, grids: Sequence[PixelGrid]
) -> Grid:
    """The output grid: covers every footprint; pixel size and alignment as the module docstring says."""
    from affine import Affine

    bounds = np.array([s.observed.bounds for s in obs if s.observed is not None and not s.observed.is_empty])
    if not len(bounds):
        raise InputError("occurrence_nothing_observed")
    minx, miny = bounds[:, 0].min(), bounds[:, 1].min()
    maxx, maxy = bounds[:, 2].max(), bounds[:, 3].max()
    ox = oy = None
    if resolution is not None:
        if resolution <= 0:  # OccurrenceOptions checks it too
            raise InputError("option_range", field="resolution", value=f"{resolution:g}", bound="more than 0")
        rx = ry = float(resolution)
        exact = [g for g in grids if g[2] is not None and math.isclose(g[0], rx) and math.isclose(g[1], ry)]
        if exact:
            ox, oy = exact[0][2], exact[0][3]
    else:
        if not grids:
            raise InputError("occurrence_no_pixel_size", field="resolution")
        rx, ry, ox, oy = min(grids, key=lambda g: g[0] * g[1])
    if ox is None:
        ox, oy = 0.0, 0.0
    # snap outwards to the grid through (ox, oy); the small tolerance keeps float noise from adding a column
    col0 = math.floor((minx - ox) / rx + 1e-9)
    col1 = math.ceil((maxx - ox) / rx - 1e-9)
    row0 = math.floor((oy - maxy) / ry + 1e-9)
    row1 = math.ceil((oy - miny) / ry - 1e-9)
    width, height = max(1, col1 - col0), max(1, row1 - row0)
    if width * height > MAX_PIXELS:
        raise InputError(
            "occurrence_grid_too_big",
            field="resolution",
            width=width,
            height=height,
            rx=f"{rx:g}",
            ry=f"{ry:g}",
        )
    transform = Affine(rx, 0.0, ox + col0 * rx, 0.0, -ry, oy - row0 * ry)
    return Grid(crs, transform, width, height)


def windows(grid: Grid, block: int) -> Iterator[Window]:
    from rasterio.windows import Window

    for r in range(0, grid.height, block):
        for c in range(0, grid.width, block):
            yield Window(c, r, min(block, grid.width - c), min(block, grid.height - r))
