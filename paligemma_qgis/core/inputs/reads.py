"""Reading windows of a raster that may be damaged, and sampling a whole scene cheaply.

- A read that fails (a truncated or corrupt file) names the file and the window
  (``raster_read_failed``, with the way past it). With ``skip`` the window is read again piece
  by piece (storage blocks, or a grid of pieces for a decimated read) and only the unreadable
  pieces are marked; such reads are counted in ``ReadErrors`` (shared by a source's clones,
  so a run's reading threads add up).
- Statistics come from one decimated read of the scene, or, for big rasters without
  overviews, from a patchwork (GDAL's decimated read of such a raster decompresses every
  block): whole storage tiles of tiled files, small windows otherwise.

No state of its own: ``RasterSource`` passes its read function and its layout.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from rasterio.enums import Resampling
from rasterio.windows import Window

from ..errors import InputError
from .files import input_error, library_errors

if TYPE_CHECKING:
    from numpy.typing import DTypeLike
    from rasterio.io import DatasetReader

PATCH_SAMPLING_FACTOR = 16  # rasters bigger than this many samples are sampled in patches
PATCHES = 16  # patches per side
STATS_TILES = 8  # tiled files: storage tiles per side of the statistics sample
_MAX_PIECES = 4096  # most pieces one failed read is retried in (on_read_error="skip")

Shape = tuple[int, int]
# read(window, out_shape) -> array: one library read (None: the whole raster / full resolution)
WindowRead = Callable[[Window | None, Shape | None], np.ndarray]
# read(bands, window, out_shape, during) -> (values, valid): a read with the nodata rule
BandRead = Callable[[list[int], Window | None, Shape | None, str], tuple[np.ndarray, np.ndarray]]


class ReadErrors:
    """Reads that hit unreadable blocks, counted across a source and its clones (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.first: str | None = None  # the first one, as a one-line message

    def add(self, message: str) -> None:
        with self._lock:
            self.count += 1
            if self.first is None:
                self.first = message


def skippable(error: InputError) -> InputError:
    """A failed raster read, with the way past it (unreadable blocks read as nodata)."""
    return InputError("raster_read_failed", field="raster", failure=error.info.to_data())


def shrunk(height: int, width: int, max_size: int) -> Shape:
    """(rows, cols) of a decimated read of height x width px whose longest side is ``max_size``."""
    scale = max(width, height) / max_size
    if scale <= 1:
        return height, width
    return max(1, round(height / scale)), max(1, round(width / scale))


def pieces(
    window: Window, out_shape: Shape | None, block: Shape
) -> list[tuple[Window, Shape | None, tuple[slice, slice]]]:
    """A failed read split in pieces: (source window, piece out_shape, slice of the result).

    Full-resolution reads are split along storage blocks (coarser when that makes too many
    pieces); decimated reads along a grid of at most PATCHES x PATCHES output cells.
    """
    r0, c0 = int(window.row_off), int(window.col_off)
    height, width = int(window.height), int(window.width)
    if out_shape is None:
        bh, bw = max(1, block[0]), max(1, block[1])
        while math.ceil(height / bh + 1) * math.ceil(width / bw + 1) > _MAX_PIECES:
            bh, bw = bh * 2, bw * 2
        rows = sorted({r0, *range((r0 // bh + 1) * bh, r0 + height, bh)})
        cols = sorted({c0, *range((c0 // bw + 1) * bw, c0 + width, bw)})
        row_spans = list(zip(rows, [*rows[1:], r0 + height], strict=True))
        col_spans = list(zip(cols, [*cols[1:], c0 + width], strict=True))
        return [
            (Window(a, r, b - a, s - r), None, (slice(r - r0, s - r0), slice(a - c0, b - c0)))
            for r, s in row_spans
            for a, b in col_spans
        ]
    oh, ow = out_shape
    ny, nx = min(PATCHES, oh), min(PATCHES, ow)
    out: list[tuple[Window, Shape | None, tuple[slice, slice]]] = []
    for i in range(ny):
        y0, y1 = i * oh // ny, (i + 1) * oh // ny
        sr0, sr1 = r0 + round(y0 * height / oh), r0 + round(y1 * height / oh)
        for j in range(nx):
            x0, x1 = j * ow // nx, (j + 1) * ow // nx
            sc0, sc1 = c0 + round(x0 * width / ow), c0 + round(x1 * width / ow)
            if y1 > y0 and x1 > x0 and sr1 > sr0 and sc1 > sc0:
                out.append(
                    (
                        Window(sc0, sr0, sc1 - sc0, sr1 - sr0),
                        (y1 - y0, x1 - x0),
                        (slice(y0, y1), slice(x0, x1)),
                    )
                )
    return out


def guarded_read(
    read: WindowRead,
    window: Window | None,
    out_shape: Shape | None,
    lead: tuple[int, ...],
    dtype: DTypeLike,
    *,
    path: str,
    during: str,
    skip: bool,
    size: Shape,
    block: Shape,
    errors: ReadErrors,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``read(window, out_shape)`` -> (array, readable or None when all of it was read).

    A library error fails with the file and window named, or with ``skip`` the window is
    read again in pieces (``block``: the storage blocks) and the pieces that fail stay zero
    and unreadable. ``size``: (rows, cols) of the raster (a ``None`` window is all of it).
    """
    try:
        return read(window, out_shape), None
    except library_errors() as exc:
        failure = input_error(path, "raster", exc, window=window, during=during)
        if not skip:
            raise skippable(failure) from None
    whole = window if window is not None else Window(0, 0, size[1], size[0])
    shape = out_shape or (int(whole.height), int(whole.width))
    data = np.zeros((*lead, *shape), dtype)
    readable = np.ones(shape, bool)
    for piece, piece_shape, (rows, cols) in pieces(whole, out_shape, block):
        try:
            data[..., rows, cols] = read(piece, piece_shape)
        except library_errors():
            readable[rows, cols] = False
    errors.add(str(failure))
    return data, readable


def holds_alpha(f: DatasetReader, band: int, *, path: str, skip_unreadable: bool = False) -> bool:
    """Whether a band tagged alpha holds alpha values: (almost) only 0 and full opacity.

    ``skip_unreadable``: judge from the pieces that can be read (a truncated file).
    """
    scale = max(f.width, f.height) / 256
    shape = (max(1, round(f.height / scale)), max(1, round(f.width / scale))) if scale > 1 else None
    try:
        values = f.read(band, out_shape=shape, resampling=Resampling.nearest)
    except library_errors() as exc:
        if not skip_unreadable:
            raise skippable(input_error(path, "raster", exc, during="checking the alpha band")) from None
        parts = []
        for piece, piece_shape, _ in pieces(Window(0, 0, f.width, f.height), shape, f.block_shapes[0]):
            try:
                parts.append(f.read(band, window=piece, out_shape=piece_shape, resampling=Resampling.nearest))
            except library_errors():
                continue
        values = np.concatenate([p.ravel() for p in parts]) if parts else np.zeros(0, f.dtypes[band - 1])
        if not values.size:
            return True  # nothing readable: keep the file's own tag
    full = np.iinfo(values.dtype).max if values.dtype.kind in "ui" else 1.0
    return float(np.isin(values, (0, full)).mean()) >= 0.95


def stats_sample(
    read: BandRead,
    bands: list[int],
    max_size: int,
    window: Window | None,
    *,
    size: Shape,
    dtype: str,
    overviews: bool,
    tiles: Shape | None,
) -> tuple[np.ndarray, np.ndarray]:
    """A decimated read of the scene (or of ``window``), or for big rasters without overviews a patchwork.

    Past ``PATCH_SAMPLING_FACTOR`` times the sample size, a patchwork spread evenly over the
    area is read instead and laid side by side (statistics only: the sample is not a map).
    ``tiles``: the storage tiles of a tiled file (each patch is one whole tile, read
    decimated, so it costs exactly one tile); None: ``PATCHES`` x ``PATCHES`` small windows.
    ``size``: (rows, cols) of the raster.
    """
    r0, c0 = (0, 0) if window is None else (int(window.row_off), int(window.col_off))
    height, width = size if window is None else (int(window.height), int(window.width))
    big = width * height > PATCH_SAMPLING_FACTOR * max_size * max_size
    during = "reading scene statistics"
    if not big or overviews:
        return read(bands, window, shrunk(height, width, max_size), during)
    if tiles is not None:
        return _tile_sample(read, bands, max_size, Window(c0, r0, width, height), tiles, dtype, during)
    n = PATCHES
    ph, pw = max(1, min(max_size // n, height // n)), max(1, min(max_size // n, width // n))
    values = np.empty((len(bands), n * ph, n * pw), dtype)
    valid = np.empty((n * ph, n * pw), bool)
    for i in range(n):
        r = r0 + int((i + 0.5) * height / n - ph / 2)
        for j in range(n):
            c = c0 + int((j + 0.5) * width / n - pw / 2)
            v, m = read(bands, Window(c, r, pw, ph), None, during)
            values[:, i * ph : (i + 1) * ph, j * pw : (j + 1) * pw] = v
            valid[i * ph : (i + 1) * ph, j * pw : (j + 1) * pw] = m
    return values, valid


def _tile_sample(
    read: BandRead, bands: list[int], max_size: int, area: Window, block: Shape, dtype: str, during: str
) -> tuple[np.ndarray, np.ndarray]:
    """Whole storage tiles evenly spread over ``area`` (clipped to it), each decimated to one patch."""
    bh, bw = block
    r0, c0 = int(area.row_off), int(area.col_off)
    r1, c1 = r0 + int(area.height), c0 + int(area.width)
    tile_rows = range(r0 // bh, (r1 - 1) // bh + 1)
    tile_cols = range(c0 // bw, (c1 - 1) // bw + 1)
    ni, nj = min(STATS_TILES, len(tile_rows)), min(STATS_TILES, len(tile_cols))
    ph, pw = max(1, min(max_size // ni, bh)), max(1, min(max_size // nj, bw))
    values = np.empty((len(bands), ni * ph, nj * pw), dtype)
    valid = np.empty((ni * ph, nj * pw), bool)
    for i in range(ni):
        tr = tile_rows[int((i + 0.5) * len(tile_rows) / ni)]
        top, bottom = max(r0, tr * bh), min(r1, (tr + 1) * bh)
        for j in range(nj):
            tc = tile_cols[int((j + 0.5) * len(tile_cols) / nj)]
            left, right = max(c0, tc * bw), min(c1, (tc + 1) * bw)
            v, m = read(bands, Window(left, top, right - left, bottom - top), (ph, pw), during)
            values[:, i * ph : (i + 1) * ph, j * pw : (j + 1) * pw] = v
            valid[i * ph : (i + 1) * ph, j * pw : (j + 1) * pw] = m
    return values, valid
