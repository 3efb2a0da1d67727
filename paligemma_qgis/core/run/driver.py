"""segment_raster(): scenes -> water polygons in one GeoPackage. The driver of every run.

One call maps one raster or a whole region (many scenes, any mix of CRSs and band layouts).
Its order keeps failures cheap, outputs all-or-nothing and finished work safe:

1. ``options.validate()``; the inputs are expanded into scenes (``scenes``, ``stac``);
2. the output is claimed (``atomic.claim_output``): a second run to it fails at once, and
   what a killed run left beside it is removed;
3. the journal beside the output (``journal``) is opened: the same options continue an
   interrupted run, other options stop with a message (``restart`` starts over);
4. existing outputs are refused (unless ``overwrite``) and the folder is checked writable;
   every scene is planned (bands, grid, AOI, size, disk space for its mosaic) -- all before
   a chip is segmented;
5. the executor runs the scenes not yet finished through the stages of ``scene_run``: the
   local loop here, or Ray (``ray_executor``). Every finished scene goes into the journal,
   and for engines that answer in text every batch of answers too, so a killed run loses at
   most a batch;
6. the GeoPackage is assembled from the journal (``run_output``), written to a temp file,
   moved into place, and the journal is removed.

A failing scene is recorded (``scenes`` layer, error text) and the run goes on, unless
``fail_fast``; when every scene fails nothing is written and the first error is raised (in a
region run as ``AllScenesFailedError``, which carries every scene's error).
Cancellation (Ctrl-C, SIGTERM/SIGHUP, the plugin's Cancel) is checked between batches:
temporary files go, the journal stays, and the same command continues the run.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AllScenesFailedError, InputError, OutputExistsError, PaliGemmaQgisError
from ..inputs.scenes import Scene
from ..progress import Cancelled, Progress, SilentProgress, check_cancelled
from .options import SegmentOptions
from .results import SceneResult, failed_result
from .stages import open_scene, plan_scene

__all__ = ["SegmentOptions", "SegmentSummary", "segment_raster"]
log = logging.getLogger(__name__)
_MOSAIC_MARGIN = 64 << 20  # free space kept beyond the mosaic's own needs


@dataclass
class SegmentSummary:
    """What a run did; ``to_dict`` is what the worker sends back to QGIS."""

    chips: int  # chips segmented
    skipped: int  # chips skipped for too little valid data
    water_area_km2: float  # summed area of the output polygons
    seconds: float
    chips_per_s: float  # chips / seconds (whole run)
    output: str
    polygons: int = 0
    mask_tif: str | None = None
    engine: str = ""
    device: str | None = None
    scenes: int = 1
    failed: int = 0  # scenes that failed (recorded in the scenes layer)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def one_line(self) -> str:
        region = f"{self.scenes} scenes ({self.failed} failed), " if self.scenes > 1 or self.failed else ""
        return (
            region + f"{self.chips} chips ({self.skipped} skipped), {self.polygons} polygons, "
            f"water {self.water_area_km2:.4f} km2, {self.seconds:.1f} s, {self.chips_per_s:.1f} chips/s"
            + (f", device {self.device}" if self.device else "")
        )


# ----------------------------------------------------------------------------- engines
def engine_options(options: SegmentOptions, roles: dict[str, int]) -> dict[str, Any]:
    """The flat options ``make_segmenter`` takes, with a scene's band roles."""
    return {
        "green": roles.get("green"),
        "nir": roles.get("nir"),
        "swir": roles.get("swir"),
        "threshold": options.threshold,
        "index": options.index,
        "model": options.model,
        "vae": options.vae,
        "allow_custom_vae": options.allow_custom_vae,
        "device": options.device,
        "batch_size": options.batch_size,
        "classes": options.classes,
        "constrained": options.constrained,
        "max_new_tokens": options.max_new_tokens,
        "max_objects": options.max_objects,
        "dtype": options.dtype,
        "cache": options.cache,
        "compile": options.compile,
    }


class Engines:
    """The segmenter for each scene: a model is loaded once per run and serves every scene;
    a pixel index is built per scene (its bands follow the scene's band roles)."""

    def __init__(self, options: SegmentOptions, segmenter: Any = None):
        self.options = options
        self.fixed = segmenter
        self._model: Any = None
        self.last: Any = segmenter

    def for_roles(self, roles: dict[str, int]) -> Any:
        from ..model.factory import make_segmenter

        if self.fixed is not None and not hasattr(self.fixed, "bands_needed"):  # a factory
            self.fixed = self.fixed()
            self.last = self.fixed
        if self.fixed is not None:
            return self.fixed
        if self.options.engine == "paligemma":
            if self._model is None:
                self._model = make_segmenter("paligemma", **engine_options(self.options, roles))
            self.last = self._model
        else:
            self.last = make_segmenter(self.options.engine, **engine_options(self.options, roles))
        return self.last


# ----------------------------------------------------------------------------- progress
class RunProgress:
    """Chips done over the whole run; messages name the scene in a region run; checks cancel."""

    def __init__(self, progress: Progress, total: int = 0):
        self.progress, self.total, self.done = progress, total, 0
        self.prefix = ""  # "scene 2/5 lakes_2020: " in a region run
        self.message = ""

    def stage(self, message: str, prefix: str | None = None) -> None:
        if prefix is not None:
            self.prefix = prefix
        self.message = message
        check_cancelled(self.progress)
        self.progress.report(self.done, max(self.total, 1), self.prefix + message)

    def advance(self, n: int) -> None:
        self.done += n
        check_cancelled(self.progress)
        self.progress.report(self.done, max(self.total, self.done, 1), self.prefix + self.message)

    def cancelled(self) -> bool:
        return self.progress.cancelled()

    def report(self, done: int, total: int, message: str = "") -> None:
        """A step inside a scene (vectorising, writing a mask) keeps the run's chip count."""
        self.progress.report(self.done, max(self.total, self.done, 1), self.prefix + message)


# ----------------------------------------------------------------------------- the run
@dataclass
class PlannedScene:
    scene: Scene
    chips: int
    mosaic_bytes: int
    crs_wkt: str


class RunContext:
    """What executors share: options, scenes, the journal, engines, progress, and result keeping."""

    def __init__(
        self,
        options: SegmentOptions,
        scenes: list[Scene],
        journal: Any,
        engines: Engines,
        progress: RunProgress,
        given_texts: Callable[[Scene], dict[int, str]] | None = None,
    ):
        self.options, self.scenes, self.journal = options, scenes, journal
        self.engines, self.progress, self.given_texts = engines, progress, given_texts
        self.pending: list[PlannedScene] = []
        self.chip_seconds = 0.0  # this run's chip loops (scenes from the journal cost nothing now)
        self.failures: list[tuple[SceneResult, BaseException]] = []

    def about(self, scene: Scene) -> str:
        """The progress prefix of a scene: "scene 2/5 lakes_2020: " in a region run, else nothing."""
        if len(self.scenes) == 1:
            return ""
        k = next((i for i, s in enumerate(self.scenes, start=1) if s.id == scene.id), 0)
        return f"scene {k}/{len(self.scenes)} {scene.id}: "

    def answers(self, scene: Scene) -> tuple[dict[int, str], dict[int, bytes | None]]:
        """Chip answers known before asking the model: the journal's (with each chip's validity,
        so they need no reading) and any given (revectorize: texts only)."""
        texts = dict(self.given_texts(scene)) if self.given_texts else {}
        journaled, validity = self.journal.answers(scene.id)
        texts.update(journaled)
        return texts, validity

    def record(self, result: SceneResult) -> None:
        """Journal a finished scene."""
        self.journal.scene_done(result.scene.id, result.to_bytes(), result.status)
        self.chip_seconds += result.chip_seconds

    def fail(self, scene: Scene, exc: BaseException, seconds: float = 0.0) -> None:
        """Record a failed scene and go on; ``fail_fast`` (or a cancel) makes it the run's end."""
        if isinstance(exc, Cancelled) or not isinstance(exc, Exception):
            raise exc
        if not isinstance(exc, PaliGemmaQgisError) and len(self.scenes) > 1:
            log.exception("%s: unexpected error", scene.label)
        result = failed_result(scene, exc, seconds)
        self.record(result)
        self.failures.append((result, exc))
        if self.options.fail_fast:
            raise exc


def plan_run(ctx: RunContext) -> None:
    """What every executor does first: plan the scenes, then check the disk for their mosaics."""
    _plan_all(ctx)
    _check_disk(ctx)


def _plan_all(ctx: RunContext) -> None:
    """Open every scene not yet finished once: chip counts (progress), CRS, disk needs, early errors."""
    done = {sid for sid, status in ctx.journal.finished().items() if status == "done"}
    for scene in ctx.scenes:
        if scene.id in done:
            continue
        ctx.progress.stage("opening raster", ctx.about(scene))
        try:
            with open_scene(scene, ctx.options) as src:
                try:
                    segmenter = ctx.engines.for_roles(src.band_roles)
                except Exception as exc:  # the engine, not the scene: every scene would fail the same
                    raise _EngineFailed() from exc
                plan = plan_scene(src, segmenter, ctx.options, scene)
                ext = plan.grid.extent
                ctx.pending.append(
                    PlannedScene(scene, plan.n_chips, 2 * int(ext.width) * int(ext.height), plan.crs_wkt)
                )
        except _EngineFailed as failed:
            raise failed.__cause__ from None
        except Exception as exc:
            ctx.fail(scene, exc)
    ctx.progress.total = sum(p.chips for p in ctx.pending)


class _EngineFailed(Exception):
    """The segmenter could not be built (a model that does not load): the run's error, not a scene's."""


def _check_disk(ctx: RunContext) -> None:
    """The largest scene's mosaic (2 bytes a pixel) must fit in the work folder, checked before work."""
    if not ctx.pending:
        return
    biggest = max(ctx.pending, key=lambda p: p.mosaic_bytes)
    folder = Path(ctx.options.workdir or tempfile.gettempdir())
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if biggest.mosaic_bytes + _MOSAIC_MARGIN > free:
        raise InputError(
            f"{folder}: the mosaic of {biggest.scene.label} needs {biggest.mosaic_bytes / 1e9:.2f} GB of "
            f"temporary space but {free / 1e9:.2f} GB is free there; free space, map less with --aoi, "
            "or choose another work folder with --workdir"
        )


def run_local(ctx: RunContext) -> None:
    """The local executor: scene after scene in this process, chips read on two threads."""
    from .stages import run_scene

    plan_run(ctx)
    for planned in ctx.pending:
        scene = planned.scene
        ctx.progress.stage("segmenting chips", ctx.about(scene))
        t0 = time.perf_counter()
        try:
            known, validity = ctx.answers(scene)
            result = run_scene(
                scene,
                ctx.options,
                ctx.engines.for_roles,
                known=known,
                validity=validity,
                journal_texts=lambda items, sid=scene.id: ctx.journal.add_texts(sid, items),
                advance=ctx.progress.advance,
                progress=ctx.progress,
            )
        except Exception as exc:
            ctx.fail(scene, exc, time.perf_counter() - t0)
            continue
        ctx.record(result)


def _check_outputs(options: SegmentOptions, scenes: list[Scene], resumed: bool) -> tuple[Path, Path | None]:
    out = Path(options.output)
    mask = Path(options.mask_tif) if options.mask_tif else None
    if mask is not None and len(scenes) > 1:
        raise InputError(f"{mask}: a mask GeoTIFF needs a single input raster ({len(scenes)} scenes given)")
    sources = {Path(s.path).resolve() for s in scenes if not s.path.startswith(("<", "/vsi"))}
    for p in (out, mask):
        if p is None:
            continue
        if p.resolve() in sources:
            raise InputError(f"{p}: output would overwrite an input raster")
        if p.exists() and p.is_dir():
            raise InputError(f"{p}: output is a folder")
        if p.exists() and not options.overwrite and not (resumed and p == mask):
            raise OutputExistsError(f"{p}: output exists (use --overwrite to replace it)")
        _check_writable(p)
    return out, mask


def _check_writable(path: Path) -> None:
    """Fail before the work, not after it, when the output folder cannot take a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise InputError(f"{path}: cannot write to {path.parent} ({exc.strerror or exc})") from None


def _aoi_facts(options: SegmentOptions) -> dict[str, str]:
    """An AOI file's geometry itself, for ``revectorize`` when the file is gone (QGIS passes a temporary copy)."""
    if not isinstance(options.aoi, str) or not Path(options.aoi).is_file():
        return {}
    import shapely

    from ..inputs.grid import read_aoi

    geom, crs = read_aoi(options.aoi)
    return {"aoi_wkb": shapely.to_wkb(geom, hex=True), "aoi_wkb_crs": crs.to_wkt()}


def _crs_text(wkt: str | None) -> str:
    import pyproj

    return pyproj.CRS.from_wkt(wkt).to_string() if wkt else ""


def _executor(options: SegmentOptions) -> Callable[[RunContext], None]:
    if options.executor == "ray":
        from .ray_executor import run_ray

        return run_ray
    return run_local


def segment_raster(
    options: SegmentOptions | dict,
    progress: Progress | None = None,
    segmenter: Any = None,
    *,
    scenes: list[Scene] | None = None,
    given_texts: Callable[[Scene], dict[int, str]] | None = None,
    facts: dict[str, Any] | None = None,
) -> SegmentSummary:
    """Map water in ``options.raster`` (one input or several) and write ``options.output``.

    See the module docstring for the order of work. ``segmenter``: an already built
    Segmenter used for every scene (tests, or a model kept loaded across runs), or a
    zero-argument callable that builds one (what Ray actors call); default: the engine
    named by the options. ``scenes``: the scenes to map, instead of expanding
    the inputs; ``given_texts``: chip answers known in advance per scene, ``facts``: extra
    rows for the run table (both used by ``revectorize``). Raises core.errors for bad input,
    progress.Cancelled when cancelled (no output; the journal keeps finished work for the
    same command).
    """
    from ..inputs.scenes import resolve_inputs
    from .atomic import atomic_output, claim_output
    from .journal import Journal, journal_path
    from .output import output_crs, write_run_output

    t0 = time.perf_counter()
    progress = progress or SilentProgress()
    if isinstance(options, dict):
        options = SegmentOptions.from_dict(options)
    options.validate()
    options = options.with_engine_defaults(segmenter)
    progress.report(0, 1, "finding scenes")
    if scenes is None:
        scenes = resolve_inputs(options.inputs, stac_bands=options.stac_bands, engine=options.engine)
    out = Path(options.output)
    resuming = journal_path(out).exists() and not options.restart
    _check_outputs(options, scenes, resumed=resuming)  # before the claim too: a clear error first
    with (
        claim_output(out),
        Journal.open(
            out,
            options.fingerprint(scenes),
            restart=options.restart,
            restart_if_changed=options.restart_if_changed,
        ) as journal,
    ):
        try:
            out, mask = _check_outputs(options, scenes, journal.resumed)
            tracker = RunProgress(progress)
            ctx = RunContext(options, scenes, journal, Engines(options, segmenter), tracker, given_texts)
            from_journal = sum(1 for s in journal.finished().values() if s == "done")
            _executor(options)(ctx)
            finished = journal.finished()
            done = [s for s in scenes if finished.get(s.id) == "done"]
            if not done:  # every scene failed: the first error is the run's, nothing is written
                if len(ctx.failures) > 1:
                    raise AllScenesFailedError(
                        [(r.scene.id, r.error or str(e), e) for r, e in ctx.failures]
                    ) from ctx.failures[0][1]
                if ctx.failures:
                    raise ctx.failures[0][1]
                raise InputError("no scene was mapped")
        except BaseException as exc:
            # Finished work stays for the same command to continue; an empty journal goes.
            if not journal.holds_work():
                journal.remove()
            elif isinstance(exc, Cancelled):
                done_now = sum(1 for s in journal.finished().values() if s == "done")
                raise Cancelled(
                    f"{exc}; {done_now} of {len(scenes)} scenes and {journal.n_texts()} chip answers are kept "
                    f"in {journal.path.name}: run the same command again to continue"
                ) from None
            raise
        tracker.stage("writing GeoPackage", prefix="")
        crs_of = [SceneResult.from_bytes(b).crs_wkt for _, b in journal.results(s.id for s in done)]
        dst = output_crs(options, crs_of)
        results = (SceneResult.from_bytes(b) for _, b in journal.results(s.id for s in scenes))
        engine = ctx.engines.last
        facts = {
            **(facts or {}),
            "scenes": len(scenes),
            "scenes_failed": len(scenes) - len(done),
            "inputs": options.inputs,
            "raster": scenes[0].source if len(scenes) == 1 else f"{len(scenes)} scenes",
            "raster_crs": _crs_text(crs_of[0]) if len(scenes) == 1 else "",
            "engine": getattr(engine, "name", options.engine),
            "device": str(getattr(engine, "device", "") or ""),
            "executor": options.executor,
            "resumed": journal.resumed,
            "batch_size": int(options.batch_size or getattr(engine, "batch_size", None) or 8),
            "chip_size": getattr(engine, "chip_size", None),
            **_aoi_facts(options),
        }
        with atomic_output(out, overwrite=True, suffix=".gpkg") as tmp:
            totals = write_run_output(tmp, results, options, dst, facts)
        journal.remove()
    tracker.stage("done")
    seconds = time.perf_counter() - t0
    details = dict(totals.pop("engine") or {})
    details.update(
        chip_seconds=round(ctx.chip_seconds, 3),
        chip_size=getattr(engine, "chip_size", None),
        chips_from_journal=totals["from_journal"],
        read_errors=totals["read_errors"],
        read_errors_by_scene=totals["read_errors_by_scene"],
        resumed=journal.resumed,
        scenes_from_journal=from_journal,
        failed_scenes={r.scene.id: r.error for r, _ in ctx.failures},
        output_crs=dst.to_string(),
    )
    if "dissolved_polygons" in totals:
        details["dissolved_polygons"] = totals["dissolved_polygons"]
    device = getattr(engine, "device", None)
    return SegmentSummary(
        chips=totals["chips"],
        skipped=totals["skipped"],
        water_area_km2=totals["water_m2"] / 1e6,
        seconds=seconds,
        chips_per_s=totals["chips"] / seconds if seconds > 0 else 0.0,
        output=str(out),
        polygons=totals["polygons"],
        mask_tif=str(mask) if mask else None,
        engine=getattr(engine, "name", options.engine),
        device=None if device is None else str(device),
        scenes=len(scenes),
        failed=len(scenes) - len(done),
        details=details,
    )
