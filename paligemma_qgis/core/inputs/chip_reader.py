"""The read stage: chips of one scene read on background threads into a small bounded queue.

Decoding compressed tiles dominates the non-model time, and one GDAL handle must not be
used from two threads, so every thread reads its own share of the chips through its own
``RasterSource.clone()``. The shares are cut along storage-block boundaries
(``chip_groups``): column bands for tiled files, so the threads decode disjoint tiles of
the same tile rows and the block cache holds what one reader would; row bands for files
stored in full-width strips. Chips then arrive out of id order; everything downstream is
order-free (mosaic counts, records sorted by id). The queue is bounded, so memory stays
flat while the model runs (prefetch).

The AOI clip rasterizes on the reading threads; see ``quiet_in_memory_rasters`` for the one
warning that needs a process-wide filter because of that.
"""

from __future__ import annotations

import bisect
import os
import queue
import threading
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

import numpy as np

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from .grid import Chip
    from .raster import RasterSource

_END = object()
GDAL_CACHE_MB = 256  # GDAL block cache during a run (unless GDAL_CACHEMAX is set) ...
GDAL_CACHE_MAX_MB = 1024  # ... raised up to this for very wide rasters (see block_cache_bytes)


@dataclass
class ChipData:
    """One chip as read: raw band values, 8-bit rendering, validity, and the raster's valid share."""

    chip: Chip
    raw: np.ndarray
    rgb: np.ndarray
    valid: np.ndarray
    fraction: float  # raster validity before the AOI clip (decides whether the chip is skipped)


def chip_groups(
    chips: Iterable[Chip], width: int, height: int, block: tuple[int, int], parts: int
) -> list[Iterator[Chip]]:
    """``parts`` lazy shares of ``chips`` (a re-iterable grid), cut along storage-block edges.

    Tiled files are cut into column bands at tile edges; files stored in full-width strips
    into row bands. Only chips straddling a cut make a block be decoded twice. Order within
    a share is kept.
    """
    if parts <= 1:
        return [iter(chips)]
    block_rows, block_cols = block
    by_cols = block_cols * 2 <= width
    dim, unit = (width, block_cols) if by_cols else (height, block_rows)
    unit = max(1, unit)
    cuts = sorted({round(dim * k / parts / unit) * unit for k in range(1, parts)} - {0, dim})

    def share(k: int) -> Iterator[Chip]:
        for chip in chips:
            w = chip.window
            centre = (w.col_off + w.width / 2) if by_cols else (w.row_off + w.height / 2)
            if bisect.bisect_right(cuts, centre) == k:
                yield chip

    return [share(k) for k in range(len(cuts) + 1)]


class Blocks(Protocol):
    """What the block cache size depends on: a raster's size, bands and storage blocks."""

    width: int
    height: int
    count: int
    dtype: str

    @property
    def block_shape(self) -> tuple[int, int]: ...


def block_cache_bytes(src: Blocks, size: int) -> int:
    """GDAL block cache that holds every storage-block row a chip row needs, plus one.

    A chip row straddles up to ceil(size / block rows) + 1 block rows, and the next chip row
    reuses the lower ones: when they do not fit, every tile is decoded two or three times
    (at 4 uint16 bands and 512 px tiles that starts at about 30 000 px wide with 256 MB).
    """
    rows = max(1, min(src.block_shape[0], src.height))
    row_bytes = src.width * rows * src.count * np.dtype(src.dtype).itemsize
    need = (-(-size // rows) + 2) * row_bytes
    return int(min(max(need, GDAL_CACHE_MB << 20), GDAL_CACHE_MAX_MB << 20))


def reader_threads() -> int:
    """Reading threads: two where there are two cores (decoding tiles is most of the work)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(2, cores))


# What rasterio warns about every in-memory raster it rasterizes into (it has no transform yet).
_IN_MEMORY_WARNING = r"Dataset has no geotransform, gcps, or rpcs"


def quiet_in_memory_rasters() -> None:
    """Ignore, process-wide, the NotGeoreferencedWarning of rasterio's own in-memory rasters.

    ``geometry_mask`` rasterizes into an in-memory raster that rasterio opens before giving it
    a transform, and hides the warning that causes with ``warnings.catch_warnings()``, which
    swaps the process-wide filter list: two threads inside it restore each other's list, and
    the warning escapes (about one run in four with an AOI printed it). A filter installed
    before the reading threads start is in every list they save and restore, so no
    interleaving loses it. Installed once; real rasters without a CRS are refused by
    ``RasterSource`` with their own error, so the warning never says anything new.
    """
    from rasterio.errors import NotGeoreferencedWarning

    if not any(
        action == "ignore"
        and category is NotGeoreferencedWarning
        and getattr(message, "pattern", None) == _IN_MEMORY_WARNING
        for action, message, category, *_ in warnings.filters
    ):
        warnings.filterwarnings("ignore", message=_IN_MEMORY_WARNING, category=NotGeoreferencedWarning)


def aoi_mask(
    src: RasterSource, chip: Chip, aoi: BaseGeometry | None, shape: tuple[int, int]
) -> np.ndarray | None:
    """Pixels of the chip (at ``shape``) inside the AOI; None when all of them are."""
    if aoi is None:
        return None
    import shapely
    from rasterio.features import geometry_mask
    from rasterio.windows import transform as window_transform

    from .grid import window_footprint

    footprint = window_footprint(chip.window, src.transform)
    if aoi.contains(footprint):
        return None
    if not shapely.intersects(aoi, footprint):
        return np.zeros(shape, bool)
    h, w = int(chip.window.height), int(chip.window.width)
    t = window_transform(chip.window, src.transform)
    if (h, w) != shape:
        from affine import Affine

        t = t * Affine.scale(w / shape[1], h / shape[0])
    return geometry_mask([aoi], out_shape=shape, transform=t, invert=True)


def read_chip(
    src: RasterSource,
    chip: Chip,
    raw_bands: list[int],
    size: int,
    aoi: BaseGeometry | None,
    rgb: bool = True,
) -> ChipData:
    """One chip at model size (a raster smaller than a chip is read resampled), clipped to the AOI.

    ``rgb=False``: no 8-bit rendering (an engine that does not look at it).
    """
    out_shape = None if chip.full_size else (size, size)
    raw, rendered, valid = src.read_chip(chip.window, raw_bands, out_shape=out_shape, rgb=rgb)
    fraction = float(valid.mean())  # raster validity, before the AOI clip
    rows, cols = valid.shape
    inside = aoi_mask(src, chip, aoi, (rows, cols))
    if inside is not None:
        valid = valid & inside
        raw[:, ~valid] = np.nan
        rendered[~valid] = 0
    return ChipData(chip, raw, rendered, valid, fraction)


class ChipReader:
    """Reads the chips of a grid on ``workers`` threads into a bounded queue; iterate for ChipData."""

    def __init__(
        self,
        src: RasterSource,
        chips: Iterable[Chip],
        raw_bands: list[int],
        size: int,
        aoi: BaseGeometry | None,
        depth: int,
        workers: int = 1,
        rgb: bool = True,
    ):
        self.src, self.raw_bands, self.size, self.aoi, self.rgb = src, raw_bands, size, aoi, rgb
        self.queue: queue.Queue[object] = queue.Queue(maxsize=max(2, depth))
        self.stop = threading.Event()
        groups = chip_groups(chips, src.width, src.height, src.block_shape, workers)
        self.sources: list[RasterSource] = [src]
        try:
            for _ in groups[1:]:
                self.sources.append(src.clone())
        except BaseException:
            self._close_clones()
            raise
        self.threads = [
            threading.Thread(target=self._run, args=(s, g), name=f"chip-reader-{i}", daemon=True)
            for i, (s, g) in enumerate(zip(self.sources, groups, strict=True))
        ]

    def _put(self, item: object) -> bool:
        """Queue ``item`` (a ChipData, an exception or the end mark) unless the reader stops."""
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, src: RasterSource, chips: Iterator[Chip]) -> None:
        try:
            for chip in chips:
                if self.stop.is_set():
                    return
                if not self._put(read_chip(src, chip, self.raw_bands, self.size, self.aoi, self.rgb)):
                    return
        except BaseException as exc:  # handed to the consumer, re-raised there
            self._put(exc)
        finally:
            self._put(_END)

    def __enter__(self) -> ChipReader:
        if self.aoi is not None:
            quiet_in_memory_rasters()  # before any thread rasterizes
        for t in self.threads:
            t.start()
        return self

    def __iter__(self) -> Iterator[ChipData]:
        running = len(self.threads)
        while running:
            item = self.queue.get()
            if item is _END:
                running -= 1
                continue
            if isinstance(item, BaseException):
                raise item
            yield cast(ChipData, item)

    def _close_clones(self) -> None:
        for s in self.sources[1:]:
            s.close()
        del self.sources[1:]

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        if not any(t.is_alive() for t in self.threads):
            self._close_clones()
