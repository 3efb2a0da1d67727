"""segment_raster(): scenes -> water polygons in one GeoPackage. The driver of every run.

    spec ─► scenes ─► claim + journal ─► plan ─► executor ─► journal ─► GeoPackage
                                                  (local | Ray)

One call maps one raster or a whole region (many scenes, any mix of CRSs and band layouts).
Its order keeps failures cheap, outputs all-or-nothing and finished work safe:

1. the spec checked itself when it was made; the inputs are expanded into scenes;
2. the output is claimed (``atomic.claim_output``): a second run to it fails at once, and
   what a killed run left beside it is removed;
3. the journal beside the output is opened: the same spec continues an interrupted run,
   another stops with a message (``restart`` starts over);
4. existing outputs are refused (unless ``overwrite``) and the folder is checked writable;
   every scene is planned (bands, grid, AOI, size, disk space for its mosaic) -- all before
   a chip is segmented;
5. the executor (run/executor.py) runs the scenes not yet finished and yields each result;
   the driver journals every finished scene, and the executor every batch of model answers
   (through ``ChipJournal``), so a killed run loses at most a batch;
6. the GeoPackage is assembled from the journal (``run.output``), written to a temp file,
   moved into place, and the journal is removed.

A failing scene is recorded (``scenes`` layer, error text) and the run goes on, unless
``fail_fast``; when every scene fails nothing is written and the first error is raised (in a
region run as ``AllScenesFailedError``, which carries every scene's error). Cancellation
(Ctrl-C, SIGTERM/SIGHUP, the plugin's Cancel) is checked between batches: temporary files go,
the journal stays, and the same command continues the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import AllScenesFailedError, InputError, PaliGemmaQgisError, error_info
from ..inputs.scenes import Scene
from ..model.segmenter import EngineInfo, SegmenterFactory
from ..progress import Cancelled, Progress, SilentProgress
from ..specs import SegmentSpec
from .chips import Known, TextRecord
from .executor import Executor, LocalExecutor, PlannedScene, RunProgress, SceneFailure
from .journal import Journal
from .preflight import check_disk, check_outputs, run_facts
from .results import SceneResult, failed_result
from .summary import SegmentSummary, summarise

__all__ = ["SegmentSummary", "segment_raster"]
log = logging.getLogger(__name__)


class _Answers:
    """The journal as executors see it (``ChipJournal``), with answers given in advance (revectorize)."""

    def __init__(
        self, journal: Journal, given: Callable[[Scene], dict[int, str]] | None, scenes: list[Scene]
    ):
        self.journal = journal
        self.given = given
        self.by_id = {s.id: s for s in scenes}

    def known(self, scene_id: str) -> Known:
        texts = dict(self.given(self.by_id[scene_id])) if self.given else {}
        journaled, validity = self.journal.answers(scene_id)
        texts.update(journaled)
        return Known(texts, validity)

    def add_texts(self, scene_id: str, items: list[TextRecord]) -> None:
        self.journal.add_texts(scene_id, items)


class _Record:
    """Finished and failed scenes go to the journal; failures are kept for the run's end."""

    def __init__(self, spec: SegmentSpec, journal: Journal, region: bool):
        self.spec, self.journal, self.region = spec, journal, region
        self.failures: list[tuple[SceneResult, Exception]] = []
        self.chip_seconds = 0.0  # this run's chip loops (scenes from the journal cost nothing now)
        self.redone = 0  # chips this run segmented (not rebuilt from the journal)

    def done(self, result: SceneResult) -> None:
        self.journal.scene_done(result.scene.id, result.to_bytes(), result.status)
        self.chip_seconds += result.chip_seconds
        self.redone += result.chips - result.from_journal

    def fail(self, failure: SceneFailure) -> None:
        """Record a failed scene and go on; ``fail_fast`` makes it the run's end."""
        exc = failure.error
        if not isinstance(exc, PaliGemmaQgisError) and self.region:
            log.error("%s: unexpected error", failure.scene.label, exc_info=exc)
        result = failed_result(failure.scene, exc, failure.seconds)
        self.done(result)
        self.failures.append((result, exc))
        if self.spec.run.fail_fast:
            raise exc


class _EngineFailed(Exception):
    """The segmenter could not be built (a model that does not load): the run's error, not a scene's."""


def plan_all(
    scenes: list[Scene], spec: SegmentSpec, executor: Executor, finished: set[str], tracker: RunProgress
) -> Iterator[PlannedScene | SceneFailure]:
    """Open every scene not yet finished once: chip counts (progress), CRS, disk needs, early errors."""
    from .plan import open_scene, plan_scene

    planner = executor.planner()
    for scene in scenes:
        if scene.id in finished:
            continue
        tracker.stage("opening raster", tracker.about(scene))
        try:
            with open_scene(scene, spec.read) as src:
                try:
                    segmenter = planner(src.band_roles)
                except Exception as exc:  # the engine, not the scene: every scene would fail the same
                    raise _EngineFailed() from exc
                plan = plan_scene(src, segmenter, spec.grid, spec.output, scene)
                ext = plan.extent
                yield PlannedScene(scene, plan.n_chips, 2 * int(ext.width) * int(ext.height), plan.crs_wkt)
        except _EngineFailed as failed:
            assert failed.__cause__ is not None
            raise failed.__cause__ from None
        except Cancelled:
            raise
        except Exception as exc:
            yield SceneFailure(scene, exc)


def _run(
    spec: SegmentSpec,
    scenes: list[Scene],
    executor: Executor,
    answers: _Answers,
    record: _Record,
    tracker: RunProgress,
    failed: dict[str, str],
) -> None:
    finished = {sid for sid, status in answers.journal.finished().items() if status == "done"}
    for scene in scenes:
        if scene.id in failed and scene.id not in finished:
            record.fail(SceneFailure(scene, InputError("scene_failed_in_run", error=failed[scene.id])))
            finished.add(scene.id)
    pending: list[PlannedScene] = []
    for planned in plan_all(scenes, spec, executor, finished, tracker):
        if isinstance(planned, SceneFailure):
            record.fail(planned)
        else:
            pending.append(planned)
    tracker.total = sum(p.chips for p in pending)
    check_disk(pending, spec.run.workdir)
    for outcome in executor.run(pending, answers, tracker):
        if isinstance(outcome, SceneFailure):
            record.fail(outcome)
        else:
            record.done(outcome)


def make_executor(spec: SegmentSpec, given: SegmenterFactory | None = None) -> Executor:
    """The executor ``spec.run`` names (the driver knows no more of it than the protocol)."""
    if spec.run.executor == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(spec, given)
    return LocalExecutor(spec, given)


@contextmanager
def _executor(spec: SegmentSpec, given: SegmenterFactory | None) -> Iterator[Executor]:
    executor = make_executor(spec, given)
    try:
        yield executor
    finally:
        executor.close()


def journal_key(spec: SegmentSpec, scenes: list[Scene]) -> tuple[str, dict[str, Any]]:
    """What a journal must match to be continued: the spec's answer-changing values and the scenes."""
    from ..serial import fingerprint

    return fingerprint(spec.resolved(), {"scenes": [[s.id, s.identity] for s in scenes]})


def segment_raster(
    spec: SegmentSpec,
    progress: Progress | None = None,
    segmenter: SegmenterFactory | None = None,
    *,
    scenes: list[Scene] | None = None,
    given_texts: Callable[[Scene], dict[int, str]] | None = None,
    facts: dict[str, Any] | None = None,
    failed: dict[str, str] | None = None,
) -> SegmentSummary:
    """Map water in ``spec.raster`` (one input or several) and write ``spec.output``.

    See the module docstring for the order of work. ``segmenter``: builds the segmenter of
    each scene from its band roles, instead of the spec's engine (tests, a model kept loaded
    across runs; ``model.segmenter.fixed``). ``scenes``: the scenes to map, instead of
    expanding the inputs; ``given_texts``: chip answers known in advance per scene, ``facts``:
    extra rows for the run table, ``failed``: scenes known to have failed, with their error
    (all three used by ``revectorize``: its scenes failed where the run failed). Raises core.errors for bad
    input, progress.Cancelled when cancelled (no output; the journal keeps finished work for
    the same command).
    """
    from .atomic import atomic_output, claim_output
    from .found_items import remove_found
    from .journal import journal_path
    from .output import output_crs, write_run_output

    t0 = time.perf_counter()
    progress = progress or SilentProgress()
    spec = spec.resolved()
    out = Path(spec.output.path)
    resuming = journal_path(out).exists() and not spec.run.restart
    progress.report(0, 1, "searching the STAC API" if spec.search.active else "finding scenes")
    scenes = scenes if scenes is not None else _find_scenes(spec, resuming)
    check_outputs(spec, scenes, resumed=resuming)  # before the claim too: a clear error first
    key = journal_key(spec, scenes)
    with (
        claim_output(out),
        Journal.open(
            out, key, restart=spec.run.restart, restart_if_changed=spec.run.restart_if_changed
        ) as journal,
    ):
        record = _Record(spec, journal, region=len(scenes) > 1)
        tracker = RunProgress(progress, scenes)
        try:
            out, mask = check_outputs(spec, scenes, journal.resumed)
            from_journal = sum(1 for s in journal.finished().values() if s == "done")
            with _executor(spec, segmenter) as executor:
                answers = _Answers(journal, given_texts, scenes)
                _run(spec, scenes, executor, answers, record, tracker, failed or {})
                info: EngineInfo | None = executor.info or _journaled_info(journal, scenes)
            done = [s for s in scenes if journal.finished().get(s.id) == "done"]
            if not done:  # every scene failed: the first error is the run's, nothing is written
                _raise_all_failed(record)
        except BaseException as exc:
            _stopped(journal, exc, len(scenes), out)
            raise
        tracker.stage("writing GeoPackage", prefix="")
        crs_of = [SceneResult.from_bytes(b).crs_wkt for _, b in journal.results(s.id for s in done)]
        dst = output_crs(spec.output.out_crs, crs_of)
        results = (SceneResult.from_bytes(b) for _, b in journal.results(s.id for s in scenes))
        run_rows = run_facts(spec, scenes, crs_of, info, journal.resumed, facts)
        with atomic_output(out, overwrite=True, suffix=".gpkg") as tmp:
            totals = write_run_output(tmp, results, spec, dst, run_rows)
        journal.remove()
        remove_found(out)
    # The output is in place: a signal now changes nothing (no cancel check, no "cancelled").
    progress.report(1, 1, "done")
    return summarise(
        spec,
        totals,
        seconds=time.perf_counter() - t0,
        info=info,
        scenes=len(scenes),
        failed=len(scenes) - len(done),
        resumed=journal.resumed,
        from_journal=from_journal,
        chip_seconds=record.chip_seconds,
        redone=record.redone,
        failures={r.scene.id: r.error for r, _ in record.failures},
        failure_infos={r.scene.id: error_info(e).to_data() for r, e in record.failures},
        mask=mask,
        dst=dst,
    )


def _find_scenes(spec: SegmentSpec, resuming: bool) -> list[Scene]:
    """The scenes of the spec's inputs, or of its STAC search (an interrupted search's own items)."""
    from .found_items import found_scenes

    if spec.search.active:
        return found_scenes(spec, resuming)
    return input_scenes(spec)


def input_scenes(spec: SegmentSpec) -> list[Scene]:
    """The scenes the spec's inputs expand to, with every option that shapes them (the run, the
    journal peek and revectorize must expand them alike, or the journal is not recognised)."""
    from ..inputs.scenes import resolve_inputs

    return resolve_inputs(
        list(spec.raster),
        stac_bands=_names(spec.read.stac_bands),
        engine=spec.engine.name,
        cloud_mask=spec.read.cloud_mask,
        recursive=spec.recursive,
    )


def _journaled_info(journal: Journal, scenes: list[Scene]) -> EngineInfo | None:
    """The engine of an earlier run, as its first finished scene recorded it (a run resumed
    entirely from its journal builds no engine, and its run table must say the same)."""
    from ..serial import from_data

    for _, blob in journal.results(s.id for s in scenes):
        data = SceneResult.from_bytes(blob).engine_info
        if data:
            return from_data(EngineInfo, data)
    return None


def _stopped(journal: Journal, exc: BaseException, n_scenes: int, out: Path) -> None:
    """A run ended early: finished work stays for the same command to continue, an empty journal
    (and what its search found) goes; a cancel says what it keeps (``Cancelled.kept``)."""
    from .found_items import remove_found

    if not journal.holds_work():
        journal.remove()
        remove_found(out)
        if isinstance(exc, Cancelled):  # said, so that a front end can say nothing is kept
            raise Cancelled(str(exc), {"scenes": 0, "total": n_scenes, "chips": 0}) from None
    elif isinstance(exc, Cancelled):
        done_now = sum(1 for s in journal.finished().values() if s == "done")
        kept = {"scenes": done_now, "total": n_scenes, "chips": journal.n_texts()}
        raise Cancelled(
            f"{exc}; {done_now} of {n_scenes} scenes and {kept['chips']} chip answers are kept "
            f"in {journal.path.name}: run the same command again to continue",
            kept,
        ) from None


def _names(names: tuple[str, ...] | None) -> list[str] | None:
    return list(names) if names else None


def _raise_all_failed(record: _Record) -> None:
    if len(record.failures) > 1:
        raise AllScenesFailedError([(r.scene.id, e) for r, e in record.failures]) from record.failures[0][1]
    if record.failures:
        raise record.failures[0][1]
    raise InputError("no_scene_mapped")
