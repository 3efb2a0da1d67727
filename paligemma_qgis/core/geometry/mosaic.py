"""Scene mosaic: chip masks -> per-pixel water votes and coverage, on disk, read back by window.

Storage choice. Two raw row-major ``uint8`` files (votes, coverage) of ``width * height``
bytes in a private temp folder, memory-mapped; each add/read takes a NumPy view of the
window's rows only, and no array of raster size is ever built. Why not a full-size
ndarray: a 50 000 px square scene would need 5 GB of RAM. Why not tiled GeoTIFFs opened in
update mode: GDAL rewrites compressed tiles by appending (the file grows on every
overlapping write), its block cache adds its own memory, and each small window costs a
GDAL round-trip; raw files give O(1) random window updates. Resident memory is kept flat
by dropping mapped pages from the process with ``madvise(MADV_DONTNEED)`` (for a shared
file mapping the data stays in the page cache / on disk): reads copy 256-row strips and
drop them at once; adds drop everything once ~32 MB may be mapped (the bounding box of
the windows added since the last drop, plus the kernel's 64 KiB fault-around), so chips
along a row still share their pages (mapping each chip's rows anew made add() 20x slower;
counting every chip as new pages made it re-fault them every few chips on wide rasters). RSS is thus bounded whatever the raster size;
the mapping reserves address space of raster size, not memory. The files are
preallocated with ``posix_fallocate`` so a full disk is a clean error at construction,
never a SIGBUS when a mapped page is first written. Disk use: 2 bytes per pixel (5 GB for
50 000 px square), removed on close.

Vote rule. By default a pixel is water when strictly more than half of the valid chips that
cover it say water (``votes * 2 > coverage``). A tie (e.g. 1 of 2) is land: chip borders are
where a model is least sure, and a strict majority never turns a single dissenting edge
chip into water. ``vote="any"`` (one chip suffices: flood mapping, where a miss costs more
than a false alarm) and ``vote="all"`` (unanimous) are the two other rules. Pixels no
valid chip covered are nodata (255) and never water.

``uint8`` counts allow 255 chips over one pixel (a grid would need > 94% overlap to get
there); more raises rather than wrapping silently.

One file: the writer (``Mosaic``) and the read-only view another process traces it with
(``MosaicReader``) share the count files' layout and their reading code (``_Counts``).
"""

from __future__ import annotations

import contextlib
import errno
import math
import mmap
import os
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from affine import Affine

from ..errors import PaliGemmaQgisError
from ..progress import Progress, check_cancelled
from ..run.atomic import WorkFolder, atomic_output, work_folder
from .pixel_area import PixelArea
from .shapes import CrsLike, to_rasterio

if TYPE_CHECKING:
    from rasterio.windows import Window

WATER = 1
LAND = 0
NODATA = 255
MAX_COVERAGE = 255
VOTE_RULES = ("majority", "any", "all")
_FAULT_AROUND = 64 << 10  # Linux maps up to this much around a faulting page
_READ_STRIP = 256  # rows copied per step when reading counts


def _reserve(f: IO[bytes], nbytes: int) -> None:
    """Give the file its size with real disk blocks where the OS can (no SIGBUS later)."""
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(f.fileno(), 0, nbytes)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS):
                raise
    f.truncate(nbytes)  # Windows/macOS or a file system without fallocate: sparse file


def _window_ints(window: Window) -> tuple[int, int, int, int]:
    vals = (window.row_off, window.col_off, window.height, window.width)
    ints = tuple(int(round(v)) for v in vals)
    if any(abs(v - i) > 1e-6 for v, i in zip(vals, ints, strict=True)):
        raise ValueError(f"window {window} is not on whole pixels")
    return ints  # type: ignore[return-value]


class _Counts:
    """Reading the two count files: a ``Mosaic``, or a ``MosaicReader`` in another process."""

    width: int
    height: int
    vote: str
    _maps: list[mmap.mmap]

    def _check_open(self) -> None:
        raise NotImplementedError

    def _view(self, which: int, r0: int, c0: int, h: int, w: int) -> np.ndarray:
        """Writable view of a window of one count file (drop it promptly)."""
        rows = np.frombuffer(self._maps[which], dtype=np.uint8, count=h * self.width, offset=r0 * self.width)
        return rows.reshape(h, self.width)[:, c0 : c0 + w]

    def _drop_rows(self, r0: int, h: int) -> None:
        """Unmap the pages of rows [r0, r0 + h) from the process after a read (data stays)."""
        if not hasattr(mmap, "MADV_DONTNEED"):
            return
        start = r0 * self.width // mmap.PAGESIZE * mmap.PAGESIZE
        length = (r0 + h) * self.width - start
        for mm in self._maps:
            mm.madvise(mmap.MADV_DONTNEED, start, length)

    def read_counts(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """(votes, coverage) uint8 copies for ``window``."""
        self._check_open()
        r0, c0, h, w = _window_ints(window)
        if r0 < 0 or c0 < 0 or r0 + h > self.height or c0 + w > self.width:
            raise ValueError(f"window {window} is outside the {self.width}x{self.height} mosaic")
        votes = np.empty((h, w), np.uint8)
        cov = np.empty((h, w), np.uint8)
        for s0 in range(0, h, _READ_STRIP):  # strips, each unmapped once copied: flat RSS
            s1 = min(h, s0 + _READ_STRIP)
            votes[s0:s1] = self._view(0, r0 + s0, c0, s1 - s0, w)
            cov[s0:s1] = self._view(1, r0 + s0, c0, s1 - s0, w)
            self._drop_rows(r0 + s0, s1 - s0)
        return votes, cov

    def read_mask(self, window: Window) -> np.ndarray:
        """Final uint8 mask for ``window``: 1 water (by the vote rule), 0 land, 255 nodata."""
        votes, cov = self.read_counts(window)
        if self.vote == "majority":
            out = (votes > (cov >> 1)).view(np.uint8)  # == votes * 2 > cov, without overflow
        elif self.vote == "any":
            out = (votes > 0).view(np.uint8)
        else:  # all
            out = (votes == cov).view(np.uint8)
        out[cov == 0] = NODATA
        return out

    def iter_blocks(self, block: int = 2048) -> Iterator[tuple[Window, np.ndarray]]:
        """Yield (Window, uint8 mask) blocks in row-major order, each at most ``block`` px square."""
        from rasterio.windows import Window

        if block <= 0:
            raise ValueError("block must be positive")
        for r0 in range(0, self.height, block):
            for c0 in range(0, self.width, block):
                win = Window(c0, r0, min(block, self.width - c0), min(block, self.height - r0))
                yield win, self.read_mask(win)

    def n_blocks(self, block: int = 2048) -> int:
        return math.ceil(self.height / block) * math.ceil(self.width / block)


class Mosaic(_Counts):
    """Disk-backed vote/coverage accumulator for one scene (a context manager).

    ``Mosaic(width, height, transform, crs, workdir=None)``; ``add`` chip masks;
    read the final mask with ``iter_blocks`` / ``read_mask``, write it with
    ``write_mask_tif``, summarise it with ``stats``. Temp files live in a fresh folder
    (under ``workdir`` when given) and are removed by ``close``, on ``with`` exit (also on
    exceptions) and, as a last resort, when the object is garbage collected. Not thread-safe,
    but for one pattern: while one thread adds, another may read rows no add will touch
    again (``trace_background.stripe_tracer``; the mapping is shared with the file, so a page one
    thread drops is simply faulted in again by the other).
    """

    RESIDENT_BUDGET = 32 << 20  # bytes of mapped pages touched before they are dropped

    def __init__(
        self,
        width: int,
        height: int,
        transform: Affine,
        crs: CrsLike | None,
        workdir: str | os.PathLike | None = None,
        vote: str = "majority",
    ):
        if int(width) <= 0 or int(height) <= 0:
            raise ValueError(f"mosaic size must be positive, got {width}x{height}")
        if vote not in VOTE_RULES:
            raise ValueError(f"unknown vote rule {vote!r}; choose one of {', '.join(VOTE_RULES)}")
        self.vote = vote
        self.width = int(width)
        self.height = int(height)
        self.transform = Affine(*tuple(transform)[:6])
        self.crs = to_rasterio(crs)
        self._work = work_folder(workdir)  # also reclaims the folders of killed runs there
        self._dir = self._work.path
        self._paths = [self._dir / "votes.u8", self._dir / "coverage.u8"]
        self._files: list[IO[bytes]] = []
        self._maps: list[mmap.mmap] = []
        self._span: list[int] | None = None  # rows/cols added to since the last trim
        self._finalizer = weakref.finalize(self, Mosaic._release, self._maps, self._files, self._work)
        nbytes = self.width * self.height
        try:
            for p in self._paths:
                f = open(p, "w+b")  # noqa: SIM115 - kept open for the mosaic's life
                self._files.append(f)
                _reserve(f, nbytes)
                self._maps.append(mmap.mmap(f.fileno(), nbytes))
        except OSError as exc:
            self.close()
            raise PaliGemmaQgisError(
                "mosaic_no_space",
                folder=str(self._dir),
                gb=f"{2 * nbytes / 1e9:.2f}",
                reason=exc.strerror or str(exc),
            ) from exc
        self._area: PixelArea | None = None

    # -- life cycle ---------------------------------------------------------------------
    @staticmethod
    def _release(maps: list[mmap.mmap], files: list[IO[bytes]], work: WorkFolder) -> None:
        for mm in maps:
            with contextlib.suppress(BufferError, OSError, ValueError):
                mm.close()
        maps.clear()
        for f in files:
            with contextlib.suppress(OSError):
                f.close()
        files.clear()
        work.close()

    def close(self) -> None:
        """Delete the temp files (idempotent)."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    @property
    def workdir(self) -> Path:
        """The private temp folder holding the two count files."""
        return self._dir

    def __enter__(self) -> Mosaic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("mosaic is closed")

    def _resident_bound(self) -> int:
        """Upper bound of the mapped bytes (both files) that adds since the last trim can hold.

        Adds touch the rows and columns of the bounding box of their windows; the kernel's
        fault-around maps at most 64 KiB on each side of a touched range. Counting the box
        rather than every chip matters: chips along a row share their pages, and counting
        each one (4.5 MB per chip at 20000 px) dropped and re-faulted them every few chips.
        """
        if self._span is None:
            return 0
        r0, r1, c0, c1 = self._span
        if (c1 - c0) + 2 * _FAULT_AROUND >= self.width:
            per_file = (r1 - r0) * self.width + 2 * _FAULT_AROUND
        else:
            per_file = (r1 - r0) * ((c1 - c0) + 2 * _FAULT_AROUND)
        return per_file * len(self._maps)

    def _trim(self, r0: int, c0: int, h: int, w: int) -> None:
        """Note an add's window; drop mapped pages once RESIDENT_BUDGET bytes may be mapped."""
        span = self._span
        if span is None:
            self._span = [r0, r0 + h, c0, c0 + w]
        else:
            span[0], span[1] = min(span[0], r0), max(span[1], r0 + h)
            span[2], span[3] = min(span[2], c0), max(span[3], c0 + w)
        if self._resident_bound() > self.RESIDENT_BUDGET and hasattr(mmap, "MADV_DONTNEED"):
            for mm in self._maps:
                mm.madvise(mmap.MADV_DONTNEED)
            self._span = None

    # -- writing ------------------------------------------------------------------------
    def add(
        self, window: Window, water: np.ndarray, valid: np.ndarray, *, check_coverage: bool = True
    ) -> None:
        """Count one chip: coverage += valid, votes += water & valid, over ``window``.

        ``check_coverage=False``: the caller knows no pixel gets more than MAX_COVERAGE chips
        (the pipeline checks its chip grid once per scene), so no per-chip scan for it.
        """
        self._check_open()
        r0, c0, h, w = _window_ints(window)
        water = np.asarray(water)
        valid = np.asarray(valid)
        if water.shape != (h, w) or valid.shape != (h, w):
            raise ValueError(f"chip arrays {water.shape}/{valid.shape} do not match window {h}x{w}")
        if r0 < 0 or c0 < 0 or r0 + h > self.height or c0 + w > self.width:
            raise ValueError(f"window {window} is outside the {self.width}x{self.height} mosaic")
        if h == 0 or w == 0:
            return
        valid = valid.astype(bool, copy=False)
        vote = np.logical_and(water.astype(bool, copy=False), valid)
        cov = self._view(1, r0, c0, h, w)
        if check_coverage and cov.max() == MAX_COVERAGE and np.any((cov == MAX_COVERAGE) & valid):
            raise ValueError(f"more than {MAX_COVERAGE} chips cover a pixel of window {window}")
        cov += valid
        votes = self._view(0, r0, c0, h, w)
        votes += vote
        del cov, votes
        self._trim(r0, c0, h, w)

    def reader_spec(self) -> dict[str, Any]:
        """What ``MosaicReader`` needs to read this mosaic from another process."""
        self._check_open()
        return {
            "paths": [str(p) for p in self._paths],
            "width": self.width,
            "height": self.height,
            "vote": self.vote,
        }

    # -- outputs ------------------------------------------------------------------------
    def write_mask_tif(
        self,
        path: str | os.PathLike,
        overwrite: bool = False,
        *,
        block: int = 2048,
        progress: Progress | None = None,
    ) -> Path:
        """Write the mask as a tiled (512 px), deflate-compressed uint8 GeoTIFF, nodata 255.

        Atomic: written to a temp file next to ``path`` and moved into place when complete.
        """
        import rasterio
        from rasterio.errors import RasterioError

        self._check_open()
        tile = 512 if min(self.width, self.height) >= 512 else 256
        block = max(tile, block // tile * tile)  # aligned blocks: each tile is written once
        profile = {
            "driver": "GTiff",
            "width": self.width,
            "height": self.height,
            "count": 1,
            "dtype": "uint8",
            "crs": self.crs,
            "transform": self.transform,
            "nodata": NODATA,
            "tiled": True,
            "blockxsize": tile,
            "blockysize": tile,
            "compress": "deflate",
            "BIGTIFF": "IF_SAFER",
        }
        path = Path(path)
        total = self.n_blocks(block)
        with atomic_output(path, overwrite=overwrite, suffix=".tif") as tmp:
            try:
                # a small GDAL cache: the default (5% of RAM) would hold the whole mask
                with rasterio.Env(GDAL_CACHEMAX=64), rasterio.open(tmp, "w", **profile) as dst:
                    dst.update_tags(1, values="1 water, 0 land, 255 nodata (no valid chip)")
                    dst.write_colormap(1, {WATER: (30, 100, 230, 255), LAND: (235, 230, 215, 255)})
                    for i, (win, arr) in enumerate(self.iter_blocks(block)):
                        check_cancelled(progress)
                        dst.write(arr, 1, window=win)
                        if progress is not None:
                            progress.report(i + 1, total, "writing water mask")
            except (RasterioError, OSError) as exc:
                raise PaliGemmaQgisError("mask_write_failed", path=str(path), detail=str(exc)) from exc
        return path

    def stats(self, *, block: int = 2048) -> dict[str, float | int]:
        """Pixel counts and ground areas (m2) of water and of valid (covered) pixels.

        Areas sum each pixel's true ground area (see pixel_area.PixelArea), so they are right for
        EPSG:4326 and Web Mercator too, where |det(transform)| is not square metres. NaN
        areas when the mosaic has no CRS.
        """
        self._check_open()
        if self._area is None:
            self._area = PixelArea(self.transform, self.crs, self.width, self.height)
        water_px = valid_px = 0
        water_m2 = valid_m2 = 0.0
        for win, arr in self.iter_blocks(block):
            water = arr == WATER
            valid = arr != NODATA
            water_px += int(water.sum())
            valid_px += int(valid.sum())
            water_m2 += self._area.area(int(win.row_off), int(win.col_off), water)
            valid_m2 += self._area.area(int(win.row_off), int(win.col_off), valid)
        return {
            "water_pixels": water_px,
            "valid_pixels": valid_px,
            "nodata_pixels": self.width * self.height - valid_px,
            "water_area_m2": water_m2,
            "valid_area_m2": valid_m2,
        }

    def __repr__(self) -> str:
        state = "closed" if self.closed else str(self._dir)
        return f"Mosaic({self.width}x{self.height}, {state})"


class MosaicReader(_Counts):
    """A ``Mosaic``'s final mask read from another process (``Mosaic.reader_spec``): read-only.

    ``trace_background.stripe_tracer`` vectorises in a child process with it, which has its own GIL:
    GDAL's polygonizer holds the GIL of the process it runs in for its whole call.
    """

    def __init__(self, spec: dict[str, Any]):
        self.width, self.height, self.vote = int(spec["width"]), int(spec["height"]), spec["vote"]
        nbytes = self.width * self.height
        self._files = [open(p, "rb") for p in spec["paths"]]  # noqa: SIM115 - closed by close()
        self._maps = [mmap.mmap(f.fileno(), nbytes, access=mmap.ACCESS_READ) for f in self._files]

    def _check_open(self) -> None:
        if not self._maps:
            raise ValueError("mosaic reader is closed")

    def close(self) -> None:
        for m in self._maps:
            with contextlib.suppress(BufferError, OSError, ValueError):
                m.close()
        for f in self._files:
            f.close()
        self._maps, self._files = [], []
