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

Nothing of the grid is built chip by chip up front (``ChipGrid``): memory stays bounded
whatever the raster size, and an area of interest costs only what it covers.
"""

from __future__ import annotations

import bisect
import functools
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from affine import Affine
from rasterio.windows import Window

from ..errors import InputError
from .files import check_finite_geometries, read_vectors

if TYPE_CHECKING:
    import pyproj
    import rasterio.crs
    from shapely.geometry import Polygon
    from shapely.geometry.base import BaseGeometry

    # What names a CRS: "EPSG:4326", 4326, WKT, a pyproj or rasterio CRS.
    CrsLike: TypeAlias = str | int | pyproj.CRS | rasterio.crs.CRS
    # An area of interest as given: a vector file, WKT or "xmin,ymin,xmax,ymax[,CRS]", an
    # extent, or a geometry.
    AoiLike: TypeAlias = str | os.PathLike[str] | Sequence[float] | BaseGeometry


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


class ChipGrid:
    """The chips over one raster, or over the part of it an area of interest touches, on demand.

    Nothing per chip is stored: the grid keeps the two axes' offsets (``axis_offsets``) and,
    with an AOI, a keep-matrix over the chips of the AOI's bounding box only. So a
    1,000,000 px square raster costs two lists of ~5,000 offsets, and an AOI on it costs what
    the AOI covers. A chip's id is its grid position (``row * n_cols + col`` over the whole
    raster): the same window has the same id whatever the AOI, and any chip can be rebuilt
    from its id (a resumed run, a Ray task, ``revectorize``).

    AOI: chips whose 16-px cells (``cell``, all-touched rasterisation) meet the AOI are kept;
    ``aoi`` is a shapely geometry in the raster's CRS, ``transform`` the raster's transform.
    """

    def __init__(
        self,
        width: int,
        height: int,
        size: int = 224,
        overlap: int = 0,
        *,
        aoi: BaseGeometry | None = None,
        transform: Affine | None = None,
        cell: int = 16,
    ) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"raster size must be positive, got {width}x{height}")
        self.width, self.height, self.size, self.overlap = int(width), int(height), int(size), int(overlap)
        self.cols = axis_offsets(self.width, self.size, self.overlap)
        self.rows = axis_offsets(self.height, self.size, self.overlap)
        self.chip_width, self.chip_height = min(self.size, self.width), min(self.size, self.height)
        self._r = (0, len(self.rows))  # grid rows [i0, i1) and columns [j0, j1) that may hold chips
        self._c = (0, len(self.cols))
        self._keep: np.ndarray | None = None  # (i1 - i0, j1 - j0) bool, None: all kept
        if aoi is not None:
            if transform is None:
                raise ValueError("an AOI needs the raster's transform")
            self._select(aoi, transform, cell)

    def _select(self, aoi: BaseGeometry, transform: Affine, cell: int) -> None:
        import shapely
        from rasterio.features import rasterize

        inverse = ~transform
        px = shapely.transform(aoi, lambda xy: np.column_stack(inverse * (xy[:, 0], xy[:, 1])))
        x0, y0, x1, y1 = px.bounds if not px.is_empty else (0, 0, -1, -1)
        r0, r1 = max(0, math.floor(y0)), min(self.height, math.ceil(y1))
        c0, c1 = max(0, math.floor(x0)), min(self.width, math.ceil(x1))
        h, w = self.chip_height, self.chip_width
        i0 = bisect.bisect_right(self.rows, r0 - h)  # first chip whose bottom is below r0
        i1 = bisect.bisect_left(self.rows, r1)  # chips starting before r1
        j0 = bisect.bisect_right(self.cols, c0 - w)
        j1 = bisect.bisect_left(self.cols, c1)
        if r1 <= r0 or c1 <= c0 or i1 <= i0 or j1 <= j0:
            self._r = self._c = (0, 0)
            self._keep = np.zeros((0, 0), bool)
            return
        R0, C0 = self.rows[i0], self.cols[j0]
        R1, C1 = self.rows[i1 - 1] + h, self.cols[j1 - 1] + w
        n_r, n_c = math.ceil((R1 - R0) / cell), math.ceil((C1 - C0) / cell)
        coarse = transform * Affine.translation(C0, R0) * Affine.scale(cell)
        cells = rasterize([(aoi, 1)], out_shape=(n_r, n_c), transform=coarse, all_touched=True, dtype="uint8")
        # 2-D prefix sums: "any AOI cell under this chip" for every chip at once
        csum = np.zeros((n_r + 1, n_c + 1), np.int64)
        csum[1:, 1:] = cells.astype(np.int64).cumsum(0).cumsum(1)
        ra = np.array([(r - R0) // cell for r in self.rows[i0:i1]])
        rb = np.array([min(n_r, -(-(r + h - R0) // cell)) for r in self.rows[i0:i1]])
        ca = np.array([(c - C0) // cell for c in self.cols[j0:j1]])
        cb = np.array([min(n_c, -(-(c + w - C0) // cell)) for c in self.cols[j0:j1]])
        hits = csum[rb][:, cb] - csum[ra][:, cb] - csum[rb][:, ca] + csum[ra][:, ca]
        self._r, self._c, self._keep = (i0, i1), (j0, j1), hits > 0

    # -- size and extent
    def __len__(self) -> int:
        if self._keep is not None:
            return int(self._keep.sum())
        return (self._r[1] - self._r[0]) * (self._c[1] - self._c[0])

    @property
    def first_row(self) -> int:
        """Grid index of the first row ``row_counts`` describes."""
        return self._r[0]

    def row_counts(self) -> list[tuple[int, int]]:
        """(row offset in the raster, kept chips) of each grid row that may hold chips, top to bottom."""
        (i0, i1), (j0, j1) = self._r, self._c
        if self._keep is None:
            return [(self.rows[i], j1 - j0) for i in range(i0, i1)]
        return [(self.rows[i], int(self._keep[i - i0].sum())) for i in range(i0, i1)]

    @property
    def n_cols(self) -> int:
        """Columns of the whole raster's grid (ids are ``row * n_cols + col``)."""
        return len(self.cols)

    @property
    def extent(self) -> Window | None:
        """The window covered by the kept chips (the whole raster without an AOI); None when empty."""
        if len(self) == 0:
            return None
        (i0, i1), (j0, j1) = self._r, self._c
        if self._keep is not None:
            rows, cols = np.flatnonzero(self._keep.any(1)), np.flatnonzero(self._keep.any(0))
            i0, i1 = i0 + int(rows[0]), i0 + int(rows[-1]) + 1
            j0, j1 = j0 + int(cols[0]), j0 + int(cols[-1]) + 1
        r0, c0 = self.rows[i0], self.cols[j0]
        return Window(
            c0, r0, self.cols[j1 - 1] + self.chip_width - c0, self.rows[i1 - 1] + self.chip_height - r0
        )

    # -- chips
    def chip(self, chip_id: int) -> Chip:
        """The chip with this id (its window is computed, not looked up)."""
        i, j = divmod(int(chip_id), self.n_cols)
        if not (0 <= i < len(self.rows) and 0 <= j < self.n_cols):
            raise ValueError(f"chip id {chip_id} is outside the {len(self.rows)}x{self.n_cols} grid")
        return Chip(
            int(chip_id), Window(self.cols[j], self.rows[i], self.chip_width, self.chip_height), self.size
        )

    def __iter__(self) -> Iterator[Chip]:
        """Kept chips, row by row (ids increase)."""
        (i0, i1), (j0, j1) = self._r, self._c
        for i in range(i0, i1):
            if self._keep is not None and not self._keep[i - i0].any():
                continue
            for j in range(j0, j1):
                if self._keep is None or self._keep[i - i0, j - j0]:
                    yield self.chip(i * self.n_cols + j)


def chip_windows(width: int, height: int, size: int = 224, overlap: int = 0) -> list[Chip]:
    """All chips covering a ``width x height`` raster, row by row (ids 0, 1, ...)."""
    return list(ChipGrid(width, height, size, overlap))


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


_WKT = re.compile(r"\s*(MULTI)?POLYGON\s*(Z\s*)?\(", re.IGNORECASE)


def read_aoi(aoi: AoiLike, aoi_crs: CrsLike | None = None) -> tuple[BaseGeometry, Any]:
    """(geometry, its CRS or None) of an area of interest, as given: a file is read here, once.

    The CRS is what was given (a ``CrsLike``), or a file's pyproj CRS (typed Any because a
    caller reads ``.to_wkt()`` of a file's CRS without a check).

    ``aoi``: a vector file path (all features, unioned), a shapely geometry, a polygon as WKT
    text (what ``revectorize`` keeps of an AOI file that is gone), an extent
    ``(xmin, ymin, xmax, ymax)``, or the text ``"xmin,ymin,xmax,ymax[,EPSG:xxxx]"``.
    ``aoi_crs``: the CRS of a geometry or extent; a file's own CRS always wins.
    """
    from shapely.geometry import box
    from shapely.geometry.base import BaseGeometry

    geom: BaseGeometry
    src_crs = aoi_crs
    if isinstance(aoi, (str, os.PathLike)):
        extent = _parse_extent(str(aoi)) if isinstance(aoi, str) else None
        if extent is not None:
            geom = box(*extent[0])
            src_crs = extent[1] or aoi_crs
        elif isinstance(aoi, str) and _WKT.match(aoi):
            import shapely

            geom = shapely.from_wkt(aoi)
        else:
            if not os.path.exists(aoi):
                raise InputError("file_not_found", field="aoi", path=str(aoi), what="area of interest file")
            stat = os.stat(aoi)
            geom, src_crs = _read_aoi_file(os.fspath(aoi), stat.st_mtime_ns, stat.st_size)
    elif isinstance(aoi, Sequence) and len(aoi) == 4:
        geom = box(*[float(v) for v in aoi])
    elif isinstance(aoi, BaseGeometry):
        geom = aoi
    else:
        raise InputError("aoi_unsupported", field="aoi", value=repr(aoi))
    if geom.is_empty:
        raise InputError("aoi_empty", field="aoi", aoi=str(aoi))
    return geom, src_crs


@functools.lru_cache(maxsize=8)
def _read_aoi_file(path: str, mtime_ns: int, size: int) -> tuple[BaseGeometry, pyproj.CRS]:
    """An AOI file's features unioned, read once per process and version of the file (a region
    run plans and maps every scene in the same AOI)."""
    import shapely

    gdf = read_vectors(path, "area of interest", require_crs=False)
    if gdf.empty:
        raise InputError("aoi_no_features", field="aoi", path=path)
    if gdf.crs is None:
        raise InputError("aoi_no_crs", field="aoi", path=path)
    return shapely.union_all(gdf.geometry.values), gdf.crs


def load_aoi(aoi: AoiLike, target_crs: CrsLike, aoi_crs: CrsLike | None = None) -> BaseGeometry:
    """An area of interest (see ``read_aoi``) as one shapely geometry in ``target_crs``.

    ``aoi_crs``: the CRS of a geometry or extent (default: ``target_crs``); a file's own CRS
    always wins.
    """
    import shapely
    from pyproj import CRS, Transformer
    from shapely.geometry import box

    geom, src_crs = read_aoi(aoi, aoi_crs)
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
            check_finite_geometries(
                [geom],
                os.fspath(aoi) if isinstance(aoi, (str, os.PathLike)) else "AOI",
                "area of interest",
                src,
            )
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    return geom


def window_footprint(window: Window, transform: Affine) -> Polygon:
    """The chip's footprint polygon in raster CRS (exact for rotated transforms too)."""
    from shapely.geometry import Polygon

    c0, r0 = window.col_off, window.row_off
    c1, r1 = c0 + window.width, r0 + window.height
    return Polygon([transform * (c0, r0), transform * (c1, r0), transform * (c1, r1), transform * (c0, r1)])
