"""The chip loop: every chip of a scene, answered by the engine or replayed from its known text.

One loop for every path: a fresh run, a resumed run (answers from the journal), Ray's
finishing task and ``revectorize`` (every answer known, the engine a ``TextReplay``). Its
source is "read or replay": chips whose validity came with their text are rebuilt without
touching the raster, the others are read on background threads. The masks of a chip the
model answered and of one rebuilt from its text are identical (same decoder, same paste),
which is what makes resume and Ray exact.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..inputs.chip_reader import ChipData, ChipReader, read_chip, reader_threads
from ..inputs.grid import Chip, ChipGrid
from ..model.segmenter import ChipBatch, ChipResult, Segmenter, as_text
from .plan import ScenePlan

if TYPE_CHECKING:
    from ..geometry.mosaic import Mosaic
    from ..inputs.raster import RasterSource

# (chip id, text, packed validity or None): what the journal keeps of an answered chip.
TextRecord = tuple[int, str, bytes | None]
REPLAY_BATCH = 64  # texts decoded at once when no model runs


def _back_to_window(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    """Undo a nearest resample of an (h, w) window to a (size, size) chip, pixel for pixel.

    GDAL's nearest takes source row floor((i + 0.5) * h / size) for chip row i; picking
    chip row floor((r + 0.5) * size / h) for source row r lands back on r exactly.
    """
    size_h, size_w = arr.shape
    rows = ((np.arange(h) + 0.5) * size_h / h).astype(np.int64)
    cols = ((np.arange(w) + 0.5) * size_w / w).astype(np.int64)
    return arr[np.ix_(rows, cols)]


def chip_record(chip: Chip, status: str, text: str | None = None, n_objects: int = 0) -> dict[str, Any]:
    return {"chip_id": chip.id, "window": chip.window, "status": status, "text": text, "n_objects": n_objects}


def skipped_record(data: ChipData) -> dict[str, Any]:
    return chip_record(data.chip, f"skipped: {data.fraction:.1%} valid")


def is_skipped(data: ChipData, min_valid_fraction: float) -> bool:
    return data.fraction < min_valid_fraction or data.fraction == 0


def add_result(mosaic: Mosaic, plan: ScenePlan, data: ChipData, res: ChipResult) -> dict[str, Any]:
    """Put one chip's answer into the mosaic (only where the chip has valid data); its record."""
    from rasterio.windows import Window

    valid = data.valid
    water = np.asarray(res.water, dtype=bool)
    if water.shape != valid.shape:
        raise RuntimeError(f"segmenter returned a {water.shape} mask for a {valid.shape} chip {data.chip.id}")
    w = data.chip.window
    h, wd = int(w.height), int(w.width)
    if (h, wd) != valid.shape:  # a raster smaller than a chip, read resampled
        water, valid = _back_to_window(water, h, wd), _back_to_window(valid, h, wd)
    ext = plan.extent
    local = Window(int(w.col_off) - int(ext.col_off), int(w.row_off) - int(ext.row_off), wd, h)
    # votes count water & valid; plan_scene proved no pixel gets more than MAX_COVERAGE chips
    mosaic.add(local, water, valid, check_coverage=False)
    return chip_record(data.chip, res.status, res.text, len(res.objects or []))


def batch_of(items: list[ChipData]) -> ChipBatch:
    if len(items) == 1:  # views, no copies
        d = items[0]
        return ChipBatch(raw=d.raw[None], rgb=d.rgb[None], valid=d.valid[None], ids=[d.chip.id])
    return ChipBatch(
        raw=np.stack([d.raw for d in items]),
        rgb=np.stack([d.rgb for d in items]),
        valid=np.stack([d.valid for d in items]),
        ids=[d.chip.id for d in items],
    )


def _check_count(segmenter: Segmenter, results: list, n: int) -> None:
    if len(results) != n:
        raise RuntimeError(f"{segmenter.info.name} returned {len(results)} results for {n} chips")


def encode_valid(valid: np.ndarray) -> bytes | None:
    """A chip's validity for the journal: None when every pixel is valid (most chips), else packed bits."""
    valid = np.asarray(valid, bool)
    return None if valid.all() else zlib.compress(np.packbits(valid).tobytes(), 1)


def decode_valid(blob: bytes | None, size: int) -> np.ndarray:
    if blob is None:
        return np.ones((size, size), bool)
    return (
        np.unpackbits(np.frombuffer(zlib.decompress(blob), np.uint8))[: size * size]
        .reshape(size, size)
        .astype(bool)
    )


class _Without:
    """The chips of a grid but some ids (re-iterable, as the reader threads need)."""

    def __init__(self, grid: ChipGrid, ids: set[int]):
        self.grid, self.ids = grid, ids

    def __iter__(self) -> Iterator[Chip]:
        return (c for c in self.grid if c.id not in self.ids)


_NOT_READ = np.zeros((0, 0, 0), np.float32)  # a replayed chip's bands: never read, never used


def replay_items(plan: ScenePlan, validity: dict[int, bytes | None]) -> list[ChipData]:
    """Answered chips rebuilt without reading the raster: their validity came with their text."""
    return [
        ChipData(plan.grid.chip(cid), _NOT_READ, _NOT_READ, decode_valid(validity[cid], plan.size), 1.0)
        for cid in sorted(validity)
    ]


@dataclass
class ChipTally:
    records: list[dict[str, Any]] = field(default_factory=list)
    segmented: int = 0  # chips with an answer (from the model, or from the journal)
    skipped: int = 0
    from_journal: int = 0  # answers rebuilt from journaled text (not asked again)
    seconds: float = 0.0
    saw_data: bool = False  # some chip had a valid pixel


@dataclass(frozen=True)
class Known:
    """Answers known before the loop: texts by chip id, and the validity of those a run journaled."""

    texts: dict[int, str] = field(default_factory=dict)
    validity: dict[int, bytes | None] = field(default_factory=dict)


def segment_chips(
    src: RasterSource,
    plan: ScenePlan,
    segmenter: Segmenter,
    mosaic: Mosaic,
    *,
    batch_size: int,
    known: Known = Known(),
    journal_texts: Callable[[list[TextRecord]], None] | None = None,
    advance: Callable[[int], None] = lambda n: None,
    done: Callable[[Chip], None] = lambda chip: None,
) -> ChipTally:
    """Read every chip, segment it (or rebuild its answer from known text), add it to the mosaic.

    Text engines: each batch's texts go to ``journal_texts`` with each chip's validity
    (``encode_valid``) before their masks are made, so a kill loses at most the batch in
    flight; chips in ``known.validity`` are rebuilt without reading them (known texts without
    validity, as revectorize has, are read for their validity). ``advance(n)`` reports chips
    done and is where the caller checks for cancellation; ``done(chip)`` is told of every
    chip once it is in the mosaic or skipped (``trace_background.stripe_tracer`` vectorises
    the rows that are final). Pixel-wise engines are handed one chip at a time (views: no
    stacking copies).
    """
    text = as_text(segmenter)
    info = segmenter.info
    texts = known.texts if text is not None else {}
    validity = {c: v for c, v in known.validity.items() if c in texts}
    tally = ChipTally()
    t0 = time.perf_counter()
    size = plan.size

    def finish(items: list[ChipData], results: list[ChipResult]) -> None:
        _check_count(segmenter, results, len(items))
        for data, res in zip(items, results, strict=True):
            tally.records.append(add_result(mosaic, plan, data, res))
            done(data.chip)
        tally.segmented += len(items)
        advance(len(items))

    def run_model(items: list[ChipData]) -> None:
        if text is not None:
            answers = text.generate_texts(batch_of(items))
            _check_count(segmenter, answers, len(items))
            if journal_texts is not None:
                journal_texts(
                    [
                        (d.chip.id, t, encode_valid(d.valid))
                        for d, t in zip(items, answers, strict=True)
                        if t is not None
                    ]
                )
            finish(items, text.decoder.decode(answers, size, size))
        elif info.pixelwise:
            finish(items, [r for d in items for r in segmenter.segment(batch_of([d]))])
        else:
            finish(items, segmenter.segment(batch_of(items)))

    def replay(items: list[ChipData]) -> None:
        assert text is not None
        finish(items, text.decoder.decode([texts[d.chip.id] for d in items], size, size))
        tally.from_journal += len(items)

    with ChipReader(
        src,
        _Without(plan.grid, set(validity)) if validity else plan.grid,
        plan.raw_bands,
        size,
        plan.aoi,
        depth=2 * batch_size,
        workers=reader_threads(),
        rgb=info.needs_rgb,
    ) as reader:
        answered = replay_items(plan, validity)  # while the threads read the others
        for i in range(0, len(answered), REPLAY_BATCH):
            replay(answered[i : i + REPLAY_BATCH])
        tally.saw_data = bool(answered)
        todo: list[ChipData] = []
        rebuilt: list[ChipData] = []
        for data in reader:
            tally.saw_data = tally.saw_data or data.fraction > 0
            if is_skipped(data, plan.min_valid_fraction):
                tally.records.append(skipped_record(data))
                tally.skipped += 1
                done(data.chip)
                if tally.skipped % 64 == 0:
                    advance(64)
                continue
            queue, run = (rebuilt, replay) if data.chip.id in texts else (todo, run_model)
            queue.append(data)
            if len(queue) >= batch_size:
                run(list(queue))
                queue.clear()
        for queue, run in ((todo, run_model), (rebuilt, replay)):
            if queue:
                run(list(queue))
        advance(tally.skipped % 64)
    if not tally.saw_data:  # found here when scene_statistics read nothing
        raise InputError("no_valid_pixels", path=src.path)
    tally.seconds = time.perf_counter() - t0
    return tally


def read_batch(src: RasterSource, plan: ScenePlan, chip_ids: Iterable[int]) -> list[ChipData]:
    """The chips to segment among ``chip_ids``, read in any process (a Ray task); skipped ones left out.

    ``src``: the scene's raster, opened with the run's read spec and ``plan.stretch`` applied.
    """
    todo = []
    for cid in chip_ids:
        data = read_chip(src, plan.grid.chip(cid), plan.raw_bands, plan.size, plan.aoi)
        if not is_skipped(data, plan.min_valid_fraction):
            todo.append(data)
    return todo
