"""One scene in named stages, the same whichever executor runs them.

    open_scene -> plan_scene -> scene_statistics -> segment_chips -> finish_scene
                                                    (read -> segment -> journal -> mosaic)

``run_scene`` strings them together for the local executor. The Ray executor calls the same
stages from its tasks, split where the GPU sits: ``read_batch`` (CPU) -> the model actor's
``generate_texts`` -> ``finish_from_texts`` (CPU: read validity, decode texts, mosaic,
vectorise). ``revectorize`` is ``finish_from_texts`` over the texts stored in an output.
The masks of a chip answered by the model and of one rebuilt from its journaled text are
identical (same decoder, same paste), which is what makes resume and Ray exact.

Orders that keep failures cheap: everything that can be wrong with a scene (bands, overlap,
AOI, size) is found by ``plan_scene`` before its statistics are read or a chip is segmented.

One file because the local stages and the text path must give the same result, chip for
chip (Ray and resumed runs are compared with local ones exactly): they share every helper.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..geometry.mosaic import MAX_COVERAGE
from ..inputs.chip_reader import (
    GDAL_CACHE_MB,
    ChipData,
    ChipReader,
    block_cache_bytes,
    read_chip,
    reader_threads,
)
from ..inputs.grid import ChipGrid
from ..inputs.scenes import Scene, acquisition_date
from ..model.segmenter import ChipBatch, ChipResult, engine_needs
from ..progress import check_cancelled
from .results import SceneResult

log = logging.getLogger(__name__)


def is_text_engine(segmenter: Any) -> bool:
    """Engines that answer in text (PaliGemma): their texts are journaled, masks rebuilt from them."""
    return callable(getattr(segmenter, "generate_texts", None)) and hasattr(segmenter, "decoder")


def describe(segmenter: Any) -> dict[str, Any]:
    fn = getattr(segmenter, "describe", None)
    try:
        return dict(fn()) if callable(fn) else {}
    except Exception:  # a summary must never fail a finished run
        return {}


# ----------------------------------------------------------------------------- plan
@dataclass
class ScenePlan:
    """What a scene's chips need, picklable (Ray tasks rebuild their reader from it)."""

    scene: Scene
    raw_bands: list[int]
    size: int
    grid: ChipGrid
    aoi: Any  # shapely geometry in the raster's CRS, or None
    crs_wkt: str
    transform: tuple[float, ...]
    date: str | None
    footprint: Any  # the raster's extent, a polygon in its CRS
    stretch: list[tuple[float, float]] | None = None  # set by scene_statistics
    min_valid_fraction: float = 0.05

    @property
    def n_chips(self) -> int:
        return len(self.grid)


def open_scene(scene: Scene, options: Any) -> Any:
    """The scene's raster with the run's band choice (errors name the scene as the user gave it)."""
    from ..inputs.raster import open_raster

    return open_raster(
        scene.path,
        bands=options.bands,
        preset=options.preset,
        resolution=options.resolution,
        stretch=options.stretch,
        green=options.green,
        nir=options.nir,
        swir=options.swir,
        label=scene.source,
        on_read_error=options.on_read_error,
    )


def max_chips_per_pixel(width: int, height: int, size: int, overlap: int) -> int:
    """Most chips over any one pixel: the product of the two axes' maxima (the grid is separable)."""
    from ..inputs.grid import axis_offsets

    most = 1
    for dim in (width, height):
        count = np.zeros(dim + 1, np.int64)
        for off in axis_offsets(dim, size, overlap):
            count[off] += 1
            count[min(off + size, dim)] -= 1
        most *= int(np.cumsum(count).max())
    return most


def plan_scene(src: Any, segmenter: Any, options: Any, scene: Scene) -> ScenePlan:
    """Bands, chip grid and AOI of one scene; every check that needs the raster, before any read."""
    from ..inputs.grid import load_aoi, window_footprint
    from ..inputs.raster import Window

    try:
        raw_bands = [int(b) for b in segmenter.bands_needed(src.raster_bands)]
    except InputError as exc:
        raise InputError(f"{src.path}: {exc}") from None
    for b in raw_bands:
        if not 1 <= b <= src.count:
            raise InputError(f"{src.path}: band {b} does not exist (the raster has {src.count} bands)")
    size = int(segmenter.chip_size)
    if not 0 <= options.overlap < size:
        raise InputError(f"overlap must be between 0 and {size - 1} pixels, got {options.overlap}")
    if options.simplify > 0 and src.crs.is_geographic and options.simplify > 100 * abs(src.res[0]):
        raise InputError(
            f"{src.path}: simplify tolerance {options.simplify} is in degrees for this raster "
            f"({src.crs}), over 100 pixels; a tolerance in metres needs a projected raster"
        )
    aoi = None
    if options.aoi is not None and options.aoi != "":
        aoi = load_aoi(options.aoi, src.crs, options.aoi_crs)
    grid = ChipGrid(src.width, src.height, size, options.overlap, aoi=aoi, transform=src.transform)
    extent = grid.extent
    if extent is None:
        raise InputError(f"{options.aoi}: the area of interest does not overlap {src.path}")
    pixels = int(extent.width) * int(extent.height)
    if pixels > options.max_pixels:
        raise InputError(
            f"{src.path}: {int(extent.width):,} x {int(extent.height):,} px to map is more than the "
            f"{options.max_pixels:,.0f} px limit; map part of it with --aoi, or raise --max-pixels"
        )
    stack = max_chips_per_pixel(int(extent.width), int(extent.height), size, options.overlap)
    if stack > MAX_COVERAGE:
        raise InputError(
            f"overlap {options.overlap} is too large: {stack} chips would cover one pixel "
            f"(at most {MAX_COVERAGE}); use an overlap below about {size // 2}"
        )
    return ScenePlan(
        scene=scene,
        raw_bands=raw_bands,
        size=size,
        grid=grid,
        aoi=aoi,
        crs_wkt=src.crs.to_wkt(),
        transform=tuple(src.transform)[:6],
        date=scene.date or acquisition_date(src.tags),
        footprint=window_footprint(Window(0, 0, src.width, src.height), src.transform),
        min_valid_fraction=options.min_valid_fraction,
    )


def scene_statistics(src: Any, segmenter: Any, plan: ScenePlan) -> None:
    """One sample read: the scene-wide 8-bit stretch and the segmenter's ``prepare`` (e.g. Otsu).

    Only what the engine needs: no read at all when it needs neither (the water index with
    a fixed threshold, a model on 8-bit data); the chip loop then finds an all-nodata
    raster itself. With an AOI the read covers the part being mapped: the rest of a huge
    raster may hold nothing at all, and the stretch should suit the area the model sees.
    """
    from rasterio.windows import Window

    needs = engine_needs(segmenter)
    if not (needs.sample or (needs.rgb and src.dtype != "uint8")):
        return
    whole = plan.grid.extent == Window(0, 0, src.width, src.height)
    raw, rgb, valid = src.read_sample(
        plan.raw_bands, window=None if whole else plan.grid.extent, rgb=needs.rgb
    )
    if not valid.any():
        raise InputError(f"{src.path}: the raster has no valid pixels (all nodata)")
    if needs.sample:
        segmenter.prepare(ChipBatch(raw=raw[None], rgb=rgb[None], valid=valid[None], ids=[-1]))
    plan.stretch = src.stretch if needs.rgb else None


# ----------------------------------------------------------------------------- chips
def _back_to_window(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    """Undo a nearest resample of an (h, w) window to a (size, size) chip, pixel for pixel.

    GDAL's nearest takes source row floor((i + 0.5) * h / size) for chip row i; picking
    chip row floor((r + 0.5) * size / h) for source row r lands back on r exactly.
    """
    size_h, size_w = arr.shape
    rows = ((np.arange(h) + 0.5) * size_h / h).astype(np.int64)
    cols = ((np.arange(w) + 0.5) * size_w / w).astype(np.int64)
    return arr[np.ix_(rows, cols)]


def chip_record(chip: Any, status: str, text: str | None = None, n_objects: int = 0) -> dict[str, Any]:
    return {"chip_id": chip.id, "window": chip.window, "status": status, "text": text, "n_objects": n_objects}


def skipped_record(data: ChipData) -> dict[str, Any]:
    return chip_record(data.chip, f"skipped: {data.fraction:.1%} valid")


def is_skipped(data: ChipData, min_valid_fraction: float) -> bool:
    return data.fraction < min_valid_fraction or data.fraction == 0


def add_result(mosaic: Any, plan: ScenePlan, data: ChipData, res: ChipResult) -> dict[str, Any]:
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
    ext = plan.grid.extent
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


def _check_count(segmenter: Any, results: list, n: int) -> None:
    if len(results) != n:
        raise RuntimeError(
            f"{getattr(segmenter, 'name', 'segmenter')} returned {len(results)} results for {n} chips"
        )


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

    def __iter__(self):
        return (c for c in self.grid if c.id not in self.ids)


def replay_items(plan: ScenePlan, validity: dict[int, bytes | None]) -> list[ChipData]:
    """Answered chips rebuilt without reading the raster: their validity came with their text."""
    return [
        ChipData(plan.grid.chip(cid), None, None, decode_valid(validity[cid], plan.size), 1.0)
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


def segment_chips(
    src: Any,
    plan: ScenePlan,
    segmenter: Any,
    mosaic: Any,
    *,
    batch_size: int,
    known: dict[int, str] | None = None,
    validity: dict[int, bytes | None] | None = None,
    journal_texts: Callable[[list[tuple[int, str, bytes | None]]], None] | None = None,
    advance: Callable[[int], None] = lambda n: None,
    done: Callable[[Any], None] = lambda chip: None,
) -> ChipTally:
    """Read every chip, segment it (or rebuild its answer from ``known`` text), add it to the mosaic.

    Text engines: each batch's texts go to ``journal_texts`` with each chip's validity
    (``encode_valid``) before their masks are made, so a kill loses at most the batch in
    flight, and a resumed run rebuilds those chips from the journal without reading them
    (``validity``: the journaled chips; ``known`` without validity, as revectorize has, are read). ``advance(n)`` reports chips done and is where
    the caller checks for cancellation; ``done(chip)`` is told of every chip once it is in
    the mosaic or skipped (``trace_background.stripe_tracer`` vectorises the rows that are final).
    Pixel-wise engines are handed one chip at a time (views: no stacking copies).
    """
    known = known or {}
    text = is_text_engine(segmenter)
    validity = {c: v for c, v in (validity or {}).items() if c in known} if text else {}
    needs = engine_needs(segmenter)
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
        if text:
            texts = segmenter.generate_texts(batch_of(items))
            _check_count(segmenter, texts, len(items))
            if journal_texts is not None:
                journal_texts(
                    [
                        (d.chip.id, t, encode_valid(d.valid))
                        for d, t in zip(items, texts, strict=True)
                        if t is not None
                    ]
                )
            finish(items, segmenter.decoder.decode(texts, size, size))
        elif needs.pixelwise:
            finish(items, [r for d in items for r in segmenter.segment(batch_of([d]))])
        else:
            finish(items, segmenter.segment(batch_of(items)))

    def replay(items: list[ChipData]) -> None:
        finish(items, segmenter.decoder.decode([known[d.chip.id] for d in items], size, size))
        tally.from_journal += len(items)

    with ChipReader(
        src,
        _Without(plan.grid, set(validity)) if validity else plan.grid,
        plan.raw_bands,
        size,
        plan.aoi,
        depth=2 * batch_size,
        workers=reader_threads(),
        rgb=needs.rgb,
    ) as reader:
        answered = replay_items(plan, validity)  # while the threads read the others
        for i in range(0, len(answered), 64):
            replay(answered[i : i + 64])
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
            queue, run = (rebuilt, replay) if text and data.chip.id in known else (todo, run_model)
            queue.append(data)
            if len(queue) >= batch_size:
                run(list(queue))
                queue.clear()
        for queue, run in ((todo, run_model), (rebuilt, replay)):
            if queue:
                run(list(queue))
        advance(tally.skipped % 64)
    if not tally.saw_data:  # found here when scene_statistics read nothing
        raise InputError(f"{src.path}: the raster has no valid pixels (all nodata)")
    tally.seconds = time.perf_counter() - t0
    return tally


def finish_scene(
    mosaic: Any,
    plan: ScenePlan,
    options: Any,
    tally: ChipTally,
    segmenter: Any,
    seconds: float,
    progress: Any = None,
    traced: Any = None,
) -> SceneResult:
    """Vectorise a scene's mosaic (water and observed footprint) into its result.

    ``traced``: the pixel polygons ``trace_background.stripe_tracer`` made during the chip loop.
    """
    import geopandas as gpd

    from ..geometry.vectorize import metric_area_perimeter, vectorize_scene

    water, observed = vectorize_scene(
        mosaic, simplify=options.simplify, min_area_m2=options.min_area_m2, progress=progress, traced=traced
    )
    observed_m2 = (
        float(metric_area_perimeter(gpd.GeoSeries([observed], crs=water.crs))[0][0])
        if not observed.is_empty
        else 0.0
    )
    tally.records.sort(key=lambda r: r["chip_id"])
    return SceneResult(
        scene=plan.scene,
        status="done",
        date=plan.date,
        crs_wkt=plan.crs_wkt,
        transform=plan.transform,
        water=water,
        observed=observed,
        footprint=plan.footprint,
        records=tally.records,
        chips=tally.segmented,
        skipped=tally.skipped,
        from_journal=tally.from_journal,
        seconds=seconds,
        chip_seconds=tally.seconds,
        water_area_m2=float(water["area_m2"].sum()) if len(water) else 0.0,
        observed_area_m2=observed_m2,
        engine=describe(segmenter),
    )


def scene_mosaic(plan: ScenePlan, options: Any) -> Any:
    """The scene's disk-backed mosaic over the chips' extent (an AOI's part of a huge raster)."""
    from affine import Affine
    from rasterio.windows import transform as window_transform

    from ..geometry.mosaic import Mosaic

    ext = plan.grid.extent
    t = window_transform(ext, Affine(*plan.transform))
    return Mosaic(
        int(ext.width), int(ext.height), t, plan.crs_wkt, workdir=options.workdir, vote=options.vote
    )


def gdal_env(src: Any, size: int) -> dict[str, Any]:
    """GDAL's block cache for a run: a few tile rows are all a chip row needs (default: 5% of RAM)."""
    if os.environ.get("GDAL_CACHEMAX"):
        return {}
    return {"GDAL_CACHEMAX": max(GDAL_CACHE_MB << 20, block_cache_bytes(src, size))}


# ----------------------------------------------------------------------------- local executor's scene
def run_scene(
    scene: Scene,
    options: Any,
    segmenter_for: Callable[[dict[str, int]], Any],
    *,
    known: dict[int, str] | None = None,
    validity: dict[int, bytes | None] | None = None,
    journal_texts: Callable[[list[tuple[int, str, bytes | None]]], None] | None = None,
    advance: Callable[[int], None] = lambda n: None,
    progress: Any = None,
) -> SceneResult:
    """All stages of one scene in this process (the local executor).

    The mosaic is vectorised stripe by stripe in the background while chips are still being
    read and segmented (``trace_background.stripe_tracer``).
    """
    import rasterio

    from ..geometry.trace_background import stripe_tracer

    t0 = time.perf_counter()
    with open_scene(scene, options) as src:
        segmenter = segmenter_for(src.band_roles)
        plan = plan_scene(src, segmenter, options, scene)
        check_cancelled(progress)
        with rasterio.Env(**gdal_env(src, plan.size)):
            scene_statistics(src, segmenter, plan)
            check_cancelled(progress)
            batch_size = int(options.batch_size or getattr(segmenter, "batch_size", None) or 8)
            with scene_mosaic(plan, options) as mosaic, stripe_tracer(mosaic, plan.grid) as tracer:
                tally = segment_chips(
                    src,
                    plan,
                    segmenter,
                    mosaic,
                    batch_size=batch_size,
                    known=known,
                    validity=validity,
                    journal_texts=journal_texts,
                    advance=advance,
                    done=tracer.chip_done,
                )
                traced = tracer.finish(progress)
                result = finish_scene(
                    mosaic, plan, options, tally, segmenter, time.perf_counter() - t0, progress, traced
                )
                result.read_errors = int(getattr(src, "read_errors", 0) or 0)
                if options.mask_tif:
                    mosaic.write_mask_tif(options.mask_tif, overwrite=True, progress=progress)
    result.seconds = time.perf_counter() - t0
    return result


# ----------------------------------------------------------------------------- text path (Ray, revectorize)
def read_batch(src: Any, plan: ScenePlan, chip_ids: Iterable[int]) -> list[ChipData]:
    """The chips to segment among ``chip_ids``, read in any process (a Ray task); skipped ones left out.

    ``src``: the scene's raster, opened with the run's options and ``plan.stretch`` applied.
    """
    todo = []
    for cid in chip_ids:
        data = read_chip(src, plan.grid.chip(cid), plan.raw_bands, plan.size, plan.aoi)
        if not is_skipped(data, plan.min_valid_fraction):
            todo.append(data)
    return todo


def finish_from_texts(
    plan: ScenePlan,
    options: Any,
    texts: dict[int, str | None],
    decoder: Any,
    seconds: float = 0.0,
    engine: dict | None = None,
    validity: dict[int, bytes | None] | None = None,
) -> SceneResult:
    """A scene's result from its chips' texts: validity, decode, mosaic, vectorise (no model).

    Chips whose validity came with their text (``validity``, as a run journals it) are not
    read again; the others are read for their validity only (no rendering). Chips without a
    text are re-read and skipped exactly as the run skipped them (too little valid data), so
    the result equals the run's own. Vectorising overlaps it as in ``run_scene``.
    """
    import rasterio

    from ..geometry.trace_background import stripe_tracer

    t0 = time.perf_counter()
    tally = ChipTally()
    with (
        open_scene(plan.scene, options) as src,
        rasterio.Env(**gdal_env(src, plan.size)),
        scene_mosaic(plan, options) as mosaic,
        stripe_tracer(mosaic, plan.grid) as tracer,
    ):
        items: list[ChipData] = []

        def flush() -> None:
            results = decoder.decode([texts.get(d.chip.id) for d in items], plan.size, plan.size)
            for data, res in zip(items, results, strict=True):
                tally.records.append(add_result(mosaic, plan, data, res))
                tracer.chip_done(data.chip)
            tally.segmented += len(items)
            items.clear()

        validity = {c: v for c, v in (validity or {}).items() if texts.get(c) is not None}
        with ChipReader(
            src,
            _Without(plan.grid, set(validity)) if validity else plan.grid,
            plan.raw_bands,
            plan.size,
            plan.aoi,
            depth=64,
            workers=reader_threads(),
            rgb=False,
        ) as reader:
            for data in replay_items(plan, validity):
                items.append(data)
                if len(items) >= 64:
                    flush()
            for data in reader:
                if is_skipped(data, plan.min_valid_fraction):
                    tally.records.append(skipped_record(data))
                    tally.skipped += 1
                    tracer.chip_done(data.chip)
                    continue
                items.append(data)
                if len(items) >= 64:
                    flush()
            if items:
                flush()
        tally.seconds = time.perf_counter() - t0
        traced = tracer.finish()
        result = finish_scene(
            mosaic, plan, options, tally, None, seconds + time.perf_counter() - t0, traced=traced
        )
        result.read_errors = int(getattr(src, "read_errors", 0) or 0)
        if options.mask_tif:
            mosaic.write_mask_tif(options.mask_tif, overwrite=True)
    result.engine = dict(engine or {})
    return result
