"""One scene, all stages, in one process: what the local executor and Ray's scene tasks run.

    open_scene -> plan_scene -> scene_statistics -> segment_chips -> finish_scene
    (run/plan)                                      (run/chips)      (vectorise)

Ray runs the same stages split where the GPU sits: ``plan`` and ``read_batch`` on CPU
workers, the model actor's ``generate_texts``, then ``run_scene`` again with every answer
known (``TextReplay``), as ``revectorize`` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..inputs.cloud_mask import cloud_percent
from ..inputs.scenes import Scene
from ..model.segmenter import (
    ChipBatch,
    ChipResult,
    EngineInfo,
    RasterBands,
    Segmenter,
    SegmenterFactory,
    TextDecoder,
)
from ..progress import Progress, check_cancelled
from ..serial import to_data
from ..specs import OutputSpec, SegmentSpec
from .chips import ChipTally, Known, TextRecord, segment_chips
from .plan import ScenePlan, gdal_env, open_scene, plan_scene, scene_mosaic, scene_statistics
from .results import SceneResult

if TYPE_CHECKING:
    import numpy as np

    from ..geometry.mosaic import Mosaic


def describe(segmenter: Segmenter) -> dict[str, Any]:
    """The segmenter's own account of what ran; a summary must never fail a finished run."""
    try:
        return dict(segmenter.describe())
    except Exception:
        return {}


def replay_info(info: EngineInfo) -> EngineInfo:
    """A text engine's info for rebuilding from texts: nothing to render, no scene sample."""
    return replace(info, text=True, needs_rgb=False, needs_sample=False, pixelwise=False)


class TextReplay:
    """Stands in for a text engine whose answers are known: only its decoder is needed.

    Planning on Ray's driver (no model there), Ray's finishing tasks and ``revectorize``
    use it. Asked for a chip that has a valid pixel but no known text, it stops: the
    answer is not there to rebuild.
    """

    def __init__(
        self,
        info: EngineInfo,
        decoder: TextDecoder | None = None,
        described: dict[str, Any] | None = None,
        source: str = "",
    ) -> None:
        self._info = replace(info, text=True)
        self._decoder = decoder
        self._described = dict(described or {})
        self._source = source

    @property
    def info(self) -> EngineInfo:
        return self._info

    @property
    def decoder(self) -> TextDecoder:
        if self._decoder is None:
            raise RuntimeError("this stand-in only plans: it has no decoder")
        return self._decoder

    def bands_needed(self, bands: RasterBands) -> list[int]:
        return []

    def prepare(self, sample: ChipBatch) -> None:
        pass

    def segment(self, batch: ChipBatch) -> list[ChipResult]:
        size = batch.valid.shape[1:]
        return self.decoder.decode(self.generate_texts(batch), *size)

    def generate_texts(self, batch: ChipBatch) -> list[str | None]:
        if batch.valid.reshape(len(batch), -1).any(axis=1).any():
            raise InputError("texts_missing", path=self._source, chips=str(list(batch.ids)[:5]))
        return [None] * len(batch)

    def describe(self) -> dict[str, Any]:
        return dict(self._described)


def finish_scene(
    mosaic: Mosaic,
    plan: ScenePlan,
    output: OutputSpec,
    tally: ChipTally,
    segmenter: Segmenter,
    seconds: float,
    progress: Progress | None = None,
    traced: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> SceneResult:
    """Vectorise a scene's mosaic (water and observed footprint) into its result.

    ``traced``: the pixel polygons ``trace_background.stripe_tracer`` made during the chip loop.
    """
    import geopandas as gpd

    from ..geometry.vectorize import metric_area_perimeter, vectorize_scene

    water, observed = vectorize_scene(
        mosaic, simplify=output.simplify, min_area_m2=output.min_area_m2, progress=progress, traced=traced
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
        engine_info=to_data(segmenter.info),
    )


def batch_size_of(spec: SegmentSpec, info: EngineInfo) -> int:
    """Chips per model call: the spec's, else the engine's own choice, else the CPU default."""
    from ..rules import CPU_BATCH_SIZE

    return int(spec.engine.batch_size or info.batch_size or CPU_BATCH_SIZE)


def run_scene(
    scene: Scene,
    spec: SegmentSpec,
    segmenter_for: SegmenterFactory,
    *,
    known: Known = Known(),
    journal_texts: Callable[[list[TextRecord]], None] | None = None,
    advance: Callable[[int], None] = lambda n: None,
    progress: Progress | None = None,
) -> SceneResult:
    """All stages of one scene in this process; ``spec`` must be resolved (``SegmentSpec.resolved``).

    The mosaic is vectorised stripe by stripe in the background while chips are still being
    read and segmented (``trace_background.stripe_tracer``).
    """
    import rasterio

    from ..geometry.trace_background import stripe_tracer

    t0 = time.perf_counter()
    with open_scene(scene, spec.read) as src:
        segmenter = segmenter_for(src.band_roles)
        plan = plan_scene(src, segmenter, spec.grid, spec.output, scene)
        check_cancelled(progress)
        with rasterio.Env(**gdal_env(src, plan.size)):
            scene_statistics(src, segmenter, plan)
            check_cancelled(progress)
            with (
                scene_mosaic(plan, spec.output, spec.run.workdir) as mosaic,
                stripe_tracer(mosaic, plan.grid) as tracer,
            ):
                tally = segment_chips(
                    src,
                    plan,
                    segmenter,
                    mosaic,
                    batch_size=batch_size_of(spec, segmenter.info),
                    known=known,
                    journal_texts=journal_texts,
                    advance=advance,
                    done=tracer.chip_done,
                )
                traced = tracer.finish(progress)
                elapsed = time.perf_counter() - t0
                result = finish_scene(mosaic, plan, spec.output, tally, segmenter, elapsed, progress, traced)
                result.read_errors = src.read_errors
                result.cloud_pct = cloud_percent(src, plan.grid.extent)
                if spec.output.mask_tif:
                    mosaic.write_mask_tif(spec.output.mask_tif, overwrite=True, progress=progress)
    result.seconds = time.perf_counter() - t0
    return result
