"""Vectorising a mosaic while its chips are still coming: stripes traced as their rows become final.

``stripe_tracer`` runs a ``trace.Tracer`` in the background over a ``Mosaic`` that is still
being filled: the chip loop reports which chips are done (``trace.ChipRows`` works out which
rows are final: every chip over them was added or skipped), and each stripe of rows is
traced as soon as it is final. So vectorising overlaps reading and segmenting (the model,
on a GPU) instead of following them; only the last stripe is left when the chips are done.
Big mosaics are traced in a child process (``ProcessTracer``: GDAL's polygonizer holds the
GIL of its process for each call), small ones on a thread (``ThreadTracer``: starting a
process costs more than tracing them). Stripes have fixed boundaries, so the result does
not depend on timing, and either way equals ``trace.trace_blocks`` after the loop.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..progress import Progress, check_cancelled
from .mask_source import MaskWindows
from .trace import ChipRows, Tracer

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from ..inputs.grid import Chip, ChipGrid
    from .mosaic import Mosaic

STRIPE_ROWS = 512  # rows traced at a time
BLOCK = 2048  # columns of one traced block
PROCESS_PIXELS = 50_000_000  # mosaics this big are traced in a child process (ProcessTracer)


def _trace_stripe(
    tracer: Tracer,
    source: MaskWindows,
    k: int,
    stripe: int,
    block: int,
    stop: Callable[[], bool] | None = None,
) -> bool:
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

    def __init__(
        self, mosaic: Mosaic, grid: ChipGrid | None, observed: bool, stripe: int | None, block: int | None
    ) -> None:
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

    def chip_done(self, chip: Chip) -> None:
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
        mosaic: Mosaic,
        grid: ChipGrid | None = None,
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


def _trace_in_child(conn: Connection, spec: dict[str, Any], stripe: int, block: int, observed: bool) -> None:
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
        mosaic: Mosaic,
        grid: ChipGrid | None = None,
        observed: bool = True,
        stripe: int | None = None,
        block: int | None = None,
    ):
        super().__init__(mosaic, grid, observed, stripe, block)
        self._sent = 0  # rows final, as last told to the child
        self._conn: Connection | None = None
        self._proc: BaseProcess | None = None

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

    def _started(self) -> tuple[Connection, BaseProcess]:
        if self._conn is None or self._proc is None:
            raise RuntimeError("the process tracer is not running")
        return self._conn, self._proc

    def _send(self, msg: int | str) -> None:
        conn, _ = self._started()
        with contextlib.suppress(BrokenPipeError, OSError):  # a dead child is found by finish()
            conn.send(msg)

    def rows_final(self, rows: int) -> None:
        # only when a stripe is complete: the child needs no more, and the pipe never fills
        if rows > self._sent and (rows // self.stripe > self._sent // self.stripe or rows >= self.height):
            self._sent = rows
            self._send(rows)

    def close(self) -> None:
        if self._proc is None:
            return
        conn, proc = self._started()
        if proc.is_alive():
            self._send("stop")
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        conn.close()
        self._proc = None

    def finish(self, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        import shapely

        from ..errors import PaliGemmaQgisError

        conn, proc = self._started()
        self._send("finish")
        if progress is not None:
            progress.report(0, 1, "vectorising water")
        while not conn.poll(0.25):
            if progress is not None and progress.cancelled():
                self.close()
                check_cancelled(progress)
            if not proc.is_alive() and not conn.poll():
                raise PaliGemmaQgisError("vectorise_stopped", exitcode=proc.exitcode)
        try:
            status, polys, seen = conn.recv()
        except EOFError:
            raise PaliGemmaQgisError("vectorise_stopped", exitcode=proc.exitcode) from None
        if status == "error":
            raise PaliGemmaQgisError("vectorise_failed", detail=polys)
        self.close()
        check_cancelled(progress)
        if progress is not None:
            progress.report(1, 1, "vectorising water")
        footprint = None if seen is None else shapely.from_wkb(seen)
        return shapely.from_wkb(polys), footprint


def stripe_tracer(
    mosaic: Mosaic,
    grid: ChipGrid | None = None,
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
