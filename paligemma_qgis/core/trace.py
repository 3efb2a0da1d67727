"""Mask blocks -> polygons in pixel coordinates, seams merged; also while the chips are still coming.

``Tracer`` takes the final mask block by block (any block layout) and traces water
(``== WATER``) and, optionally, the observed footprint (``!= NODATA``) with
``rasterio.features.shapes`` (4-connected) in *pixel* coordinates: integers, exactly
representable, so pieces of one lake cut by a block edge share their edges bit for bit.
At the end only the pieces that touch an inner block edge are merged, and only with the
pieces they touch (``merge_touching``): groups of two or three small pieces instead of one
union of every seam piece of the scene. The polygons are the same whatever the blocks.

``stripe_tracer`` runs a ``Tracer`` in the background over a ``Mosaic`` that is still being
filled: the chip loop reports which chips are done (``ChipRows`` works out which rows are
final: every chip over them was added or skipped), and each stripe of rows is traced as
soon as it is final. So vectorising overlaps reading and segmenting (the model, on a GPU)
instead of following them; only the last stripe is left when the chips are done. Big
mosaics are traced in a child process (``ProcessTracer``: GDAL's polygonizer holds the GIL
of its process), small ones on a thread (``ThreadTracer``). Stripes have fixed
boundaries, so the result does not depend on timing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any

import numpy as np

from .mosaic import NODATA, WATER
from .progress import Progress, check_cancelled

STRIPE_ROWS = 512  # rows traced at a time by the background tracer
BLOCK = 2048  # columns (and, without a background tracer, rows) of one traced block
PROCESS_PIXELS = 50_000_000  # mosaics this big are traced in a child process (ProcessTracer)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in a 1-D bool array."""
    edges = np.flatnonzero(np.diff(np.r_[False, flags, False].view(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def polygon_pieces(mask: np.ndarray, row_off: int, col_off: int) -> list[Any]:
    """Polygons (with holes) of the True pixels of one block, in global pixel coordinates.

    GDAL's polygonizer costs the same for every pixel, set or not. A row (then, within a
    band of rows, a column) without a True pixel separates the polygons on its two sides
    (4-connectivity), so only the rectangles between empty rows and columns are traced:
    the same polygons, for a fraction of the pixels when water is sparse.
    """
    import shapely
    from affine import Affine
    from rasterio.features import shapes

    out = []
    for r0, r1 in _runs(mask.any(axis=1)):
        band = mask[r0:r1]
        for c0, c1 in _runs(band.any(axis=0)):
            part = band[:, c0:c1]
            if part.all():  # a full rectangle: no polygonizer needed
                out.append(shapely.box(col_off + c0, row_off + r0, col_off + c1, row_off + r1))
                continue
            t = Affine.translation(col_off + c0, row_off + r0)
            for geom, _ in shapes(part.view(np.uint8), mask=part, connectivity=4, transform=t):
                shell, *holes = (shapely.linearrings(np.asarray(r, np.float64)) for r in geom["coordinates"])
                out.append(shapely.polygons(shell, holes=holes or None))
    return out


def touching_groups(pieces: np.ndarray) -> list[np.ndarray]:
    """Indices of each group of pieces that touch (share an edge or a corner), transitively."""
    import shapely

    left, right = shapely.STRtree(pieces).query(pieces, predicate="intersects")
    parent = list(range(len(pieces)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in range(len(pieces)):
        groups.setdefault(root(i), []).append(i)
    return [np.array(g) for g in groups.values()]


def union_groups(pieces: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """The polygons of each group's union (collinear seam vertices dropped: exact in pixel space)."""
    import shapely

    merged = np.concatenate([shapely.get_parts(shapely.union_all(pieces[g])) for g in groups])
    merged = merged[shapely.get_type_id(merged) == 3]  # polygons only
    return shapely.simplify(merged, 0.0)


def merge_touching(pieces: list[Any]) -> np.ndarray:
    """Polygons of the union of ``pieces``: each group of pieces that touch is unioned on its own.

    Only pieces that intersect (share an edge or a corner) can change each other in a
    union, so the result equals one union of everything, at a fraction of its cost.
    """
    arr = np.array(pieces, dtype=object)
    if not len(arr):
        return arr
    return union_groups(arr, touching_groups(arr))


class Tracer:
    """Water (and observed) polygons of a ``width x height`` mask fed block by block."""

    def __init__(self, width: int, height: int, observed: bool = True):
        self.width, self.height, self.observed = int(width), int(height), observed
        self.inner: list[Any] = []  # water pieces inside their block: final as traced
        self.seam: list[Any] = []  # water pieces touching an inner block edge, not merged yet
        self.merged: list[np.ndarray] = []  # seam groups merged by ``settle``
        self.seen: list[Any] = []  # observed pieces (boxes for fully observed blocks)

    def add(self, win: Any, arr: np.ndarray) -> None:
        """One block of the final mask (uint8: WATER, land, NODATA) at window ``win``."""
        import shapely

        r0, c0 = int(win.row_off), int(win.col_off)
        h, w = arr.shape
        water = arr == WATER
        if water.any():
            r1, c1 = r0 + h, c0 + w
            pieces = polygon_pieces(water, r0, c0)
            b = shapely.bounds(np.array(pieces, dtype=object))
            on_seam = (
                ((b[:, 0] == c0) & (c0 > 0))
                | ((b[:, 2] == c1) & (c1 < self.width))
                | ((b[:, 1] == r0) & (r0 > 0))
                | ((b[:, 3] == r1) & (r1 < self.height))
            )
            for p, s in zip(pieces, on_seam, strict=True):
                (self.seam if s else self.inner).append(p)
        if self.observed:
            valid = arr != NODATA
            if valid.all():
                self.seen.append(shapely.box(c0, r0, c0 + w, r0 + h))
            elif valid.any():
                self.seen.extend(polygon_pieces(valid, r0, c0))

    def settle(self, below: int) -> None:
        """Merge the seam groups that nothing traced later can touch (``below``: rows traced so far).

        Blocks still to come hold rows >= ``below`` only, so a group none of whose pieces
        reaches row ``below`` is complete: merging it now spares the end of the run.
        """
        import shapely

        if not self.seam:
            return
        arr = np.array(self.seam, dtype=object)
        bottom = shapely.bounds(arr)[:, 3]
        done = [g for g in touching_groups(arr) if bottom[g].max() < below]
        if done:
            self.merged.append(union_groups(arr, done))
            keep = np.ones(len(arr), bool)
            keep[np.concatenate(done)] = False
            self.seam = list(arr[keep])

    def finish(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(water polygons, observed polygons or None), pixel coordinates, seams merged."""
        import shapely

        parts = [np.array(self.inner, dtype=object), *self.merged]
        if self.seam:
            parts.append(merge_touching(self.seam))
        polys = np.concatenate(parts)
        footprint = None
        if self.observed:
            union = (
                shapely.union_all(np.array(self.seen, dtype=object)) if self.seen else shapely.MultiPolygon()
            )
            footprint = shapely.get_parts(shapely.simplify(union, 0.0))
            footprint = footprint[shapely.get_type_id(footprint) == 3]
        return polys, footprint


def trace_blocks(
    source: Any, block: int, progress: Progress | None = None, observed: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Trace a finished mosaic-like ``source`` (width, height, iter_blocks) in ``block`` px blocks."""
    import math

    import rasterio

    tracer = Tracer(source.width, source.height, observed)
    total = math.ceil(int(source.height) / block) * math.ceil(int(source.width) / block) + 1
    with rasterio.Env():  # one GDAL environment, not one per shapes() call
        for i, (win, arr) in enumerate(source.iter_blocks(block)):
            check_cancelled(progress)
            tracer.add(win, arr)
            if progress is not None:
                progress.report(i + 1, total, "vectorising water")
    check_cancelled(progress)
    result = tracer.finish()
    if progress is not None:
        progress.report(total, total, "vectorising water")
    return result


class ChipRows:
    """Which rows of a scene's mosaic are final: every chip over them was added or skipped.

    Chips arrive in any order (reader threads, batches); the mosaic's rows above the first
    grid row with chips still to come can no longer change.
    """

    def __init__(self, grid: Any):
        counts = grid.row_counts()  # (row offset, kept chips) per grid row, top to bottom
        ext = grid.extent
        top = int(ext.row_off) if ext is not None else 0
        self.n_cols = grid.n_cols
        self.first_row = grid.first_row  # grid index of counts[0]
        self.starts = [r - top for r, _ in counts]
        self.left = [n for _, n in counts]
        self.height = int(ext.height) if ext is not None else 0
        self.next = 0  # first grid row (index into counts) with chips to come
        self._advance()

    def _advance(self) -> None:
        while self.next < len(self.left) and self.left[self.next] == 0:
            self.next += 1

    @property
    def final(self) -> int:
        """Mosaic rows [0, final) are final."""
        return self.starts[self.next] if self.next < len(self.starts) else self.height

    def done(self, chip: Any) -> bool:
        """Count one chip as added (or skipped); True when more rows became final."""
        i = int(chip.id) // self.n_cols - self.first_row
        self.left[i] -= 1
        if i != self.next or self.left[i]:
            return False
        self._advance()
        return True


def _trace_stripe(tracer: Tracer, source: Any, k: int, stripe: int, block: int, stop: Any = None) -> bool:
    """Trace stripe ``k`` of ``source`` (its rows must be final) block by block; False if stopped."""
    from rasterio.windows import Window

    r0 = k * stripe
    h = min(stripe, tracer.height - r0)
    for c0 in range(0, tracer.width, block):
        win = Window(c0, r0, min(block, tracer.width - c0), h)
        tracer.add(win, source.read_mask(win))
        if stop is not None and stop():
            return False
    tracer.settle(r0 + h)
    return True


class _StripeFeed:
    """What both background tracers share: chips in, final rows out, stripes of fixed rows."""

    def __init__(self, mosaic: Any, grid: Any, observed: bool, stripe: int | None, block: int | None):
        self.mosaic, self.observed = mosaic, observed
        self.stripe, self.block = int(stripe or STRIPE_ROWS), int(block or BLOCK)
        self.rows = ChipRows(grid) if grid is not None else None
        self.height = int(mosaic.height)
        self.n_stripes = -(-self.height // self.stripe)

    def __enter__(self) -> _StripeFeed:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def chip_done(self, chip: Any) -> None:
        """A chip of the grid is in the mosaic (or skipped); its rows may now be final."""
        if self.rows is not None and self.rows.done(chip):
            self.rows_final(self.rows.final)

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def rows_final(self, rows: int) -> None:
        """Rows [0, rows) of the mosaic will not change any more."""
        raise NotImplementedError

    def finish(self, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """All rows are final: wait for the last stripes, then return ``Tracer.finish()``."""
        raise NotImplementedError


class ThreadTracer(_StripeFeed):
    """A ``Tracer`` on a background thread of this process (small mosaics: no process to start)."""

    def __init__(
        self,
        mosaic: Any,
        grid: Any = None,
        observed: bool = True,
        stripe: int | None = None,
        block: int | None = None,
    ):
        super().__init__(mosaic, grid, observed, stripe, block)
        self.tracer = Tracer(mosaic.width, mosaic.height, observed)
        self._final = 0  # rows final, as the chip loop last said
        self._traced = 0  # stripes traced
        self._stop = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="vectoriser", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    def rows_final(self, rows: int) -> None:
        with self._cond:
            if rows > self._final:
                self._final = rows
                self._cond.notify_all()

    def _ready(self) -> bool:
        end = min((self._traced + 1) * self.stripe, self.height)
        return self._traced < self.n_stripes and self._final >= end

    def _run(self) -> None:
        import rasterio

        try:
            with rasterio.Env():  # one GDAL environment for the thread, not one per shapes() call
                while True:
                    with self._cond:
                        while not (self._stop or self._ready()):
                            self._cond.wait()
                        if self._stop:
                            return
                        k = self._traced
                    if not _trace_stripe(
                        self.tracer, self.mosaic, k, self.stripe, self.block, lambda: self._stop
                    ):
                        return
                    with self._cond:
                        self._traced = k + 1
                        self._cond.notify_all()
        except BaseException as exc:  # handed to finish(), raised there
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def finish(self, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        self.rows_final(self.height)
        with self._cond:
            while self._traced < self.n_stripes and self._error is None:
                if progress is not None:
                    progress.report(self._traced, self.n_stripes + 1, "vectorising water")
                self._cond.wait(timeout=0.25)
                if progress is not None and progress.cancelled():
                    break
        self.close()
        check_cancelled(progress)
        if self._error is not None:
            raise self._error
        result = self.tracer.finish()
        if progress is not None:
            progress.report(self.n_stripes + 1, self.n_stripes + 1, "vectorising water")
        return result


def _trace_in_child(conn: Any, spec: dict[str, Any], stripe: int, block: int, observed: bool) -> None:
    """The child of a ``ProcessTracer``: trace stripes as rows become final, send all at "finish"."""
    import rasterio
    import shapely

    from .mosaic import MosaicReader

    reader = None
    try:
        reader = MosaicReader(spec)
        tracer = Tracer(reader.width, reader.height, observed)
        n_stripes, traced, final = -(-reader.height // stripe), 0, 0
        with rasterio.Env():
            while True:
                msg = conn.recv()
                if msg == "stop":
                    return
                final = reader.height if msg == "finish" else max(final, int(msg))
                while traced < n_stripes and final >= min((traced + 1) * stripe, reader.height):
                    _trace_stripe(tracer, reader, traced, stripe, block)
                    traced += 1
                if msg == "finish":
                    polys, footprint = tracer.finish()
                    seen = None if footprint is None else shapely.to_wkb(footprint)
                    conn.send(("ok", shapely.to_wkb(polys), seen))
                    return
    except EOFError:  # the parent is gone
        return
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(exc).__name__}: {exc}", None))
    finally:
        if reader is not None:
            reader.close()


class ProcessTracer(_StripeFeed):
    """A ``Tracer`` in a child process reading the mosaic's files (big mosaics).

    GDAL's polygonizer holds the GIL of its process for each call, which stalled the chip
    loop's threads when it ran on a thread here (at 20000 px the chip loop took 10.5 s
    beside it and 7.7 s without it). The child has its own GIL: it is told, through a pipe,
    how many rows are final (once per stripe), and sends the pixel polygons back at the end
    as WKB. Its start (imports, about 0.4 s of CPU) overlaps the first chips.
    """

    def __init__(
        self,
        mosaic: Any,
        grid: Any = None,
        observed: bool = True,
        stripe: int | None = None,
        block: int | None = None,
    ):
        super().__init__(mosaic, grid, observed, stripe, block)
        self._sent = 0  # rows final, as last told to the child
        self._conn: Any = None
        self._proc: Any = None

    def start(self) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads and GDAL
        self._conn, child = ctx.Pipe()
        args = (child, self.mosaic.reader_spec(), self.stripe, self.block, self.observed)
        self._proc = ctx.Process(target=_trace_in_child, args=args, name="vectoriser", daemon=True)
        # Ctrl-C is the parent's to handle (it stops the child): the child starts with SIGINT
        # ignored, which Python keeps, so it never prints a KeyboardInterrupt of its own
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            self._proc.start()
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
        child.close()

    def _send(self, msg: Any) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):  # a dead child is found by finish()
            self._conn.send(msg)

    def rows_final(self, rows: int) -> None:
        # only when a stripe is complete: the child needs no more, and the pipe never fills
        if rows > self._sent and (rows // self.stripe > self._sent // self.stripe or rows >= self.height):
            self._sent = rows
            self._send(rows)

    def close(self) -> None:
        if self._proc is None:
            return
        if self._proc.is_alive():
            self._send("stop")
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join()
        self._conn.close()
        self._proc = None

    def finish(self, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        import shapely

        from .errors import PaliGemmaQgisError

        self._send("finish")
        if progress is not None:
            progress.report(0, 1, "vectorising water")
        while not self._conn.poll(0.25):
            if progress is not None and progress.cancelled():
                self.close()
                check_cancelled(progress)
            if not self._proc.is_alive() and not self._conn.poll():
                raise PaliGemmaQgisError(f"the vectorising process stopped (exit code {self._proc.exitcode})")
        try:
            status, polys, seen = self._conn.recv()
        except EOFError:
            raise PaliGemmaQgisError(
                f"the vectorising process stopped (exit code {self._proc.exitcode})"
            ) from None
        if status == "error":
            raise PaliGemmaQgisError(f"vectorising failed: {polys}")
        self.close()
        check_cancelled(progress)
        if progress is not None:
            progress.report(1, 1, "vectorising water")
        footprint = None if seen is None else shapely.from_wkb(seen)
        return shapely.from_wkb(polys), footprint


def stripe_tracer(
    mosaic: Any,
    grid: Any = None,
    *,
    process: bool | None = None,
    observed: bool = True,
    stripe: int | None = None,
    block: int | None = None,
) -> _StripeFeed:
    """The background tracer for a mosaic being filled: a child process for mosaics of at least
    ``PROCESS_PIXELS`` (``process=None``), else a thread (starting a process costs more than
    tracing a small mosaic). Either gives the same polygons."""
    if process is None:
        process = int(mosaic.width) * int(mosaic.height) >= PROCESS_PIXELS
    cls = ProcessTracer if process else ThreadTracer
    return cls(mosaic, grid, observed, stripe, block)
