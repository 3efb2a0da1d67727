"""The Ray executor: the scene stages spread over a Ray cluster, or the GPUs of one machine.

Shape, and why:

- The model lives in actors (``ModelActor``), each loading it once (``num_gpus`` per actor),
  and takes chip batches of every scene: a GPU never waits for a scene boundary.
- CPU stages are Ray tasks on any node: ``plan`` (open, plan, scene statistics), ``read``
  (chips -> model input) and ``finish`` (``run_scene`` with every answer known: validity,
  decoding, mosaic, vectorising), so reading and vectorising overlap the GPU work. Reads are
  submitted a few batches ahead.
- Only texts (about 100 bytes a chip) and finished scene results come back to the driver,
  which alone writes the journal and the output: a killed driver resumes like a local run.
- Engines that do not answer in text (the water index) run each scene in one CPU task.
- Faults: Ray retries a task whose worker died and restarts a dead actor, retrying its call.
  Every stage is deterministic and the journal is keyed by chip id, so a retried task gives
  the same answer and the output equals a local run's.

Ray stays optional: it is imported only here, and only for ``executor="ray"``. Against a
remote cluster the package itself is shipped (``runtime_env.py_modules``); the rasters
must be readable from the workers (shared storage, or ``/vsis3/``-style paths).
"""

from __future__ import annotations

import dataclasses
import functools
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any

from ..errors import InputError
from ..inputs.chip_reader import ChipData
from ..inputs.scenes import Scene
from ..model.segmenter import ChipBatch, EngineInfo, Segmenter, SegmenterFactory, as_text
from ..progress import check_cancelled
from ..rules import uses_model
from ..specs import ModelSpec, ReadSpec, SegmentSpec
from .chips import Known, batch_of, encode_valid, read_batch
from .executor import ChipJournal, Engines, Outcome, PlannedScene, RunProgress, SceneFailure
from .plan import ScenePlan
from .ray_cluster import connect, import_ray
from .results import SceneResult

READS_AHEAD_PER_ACTOR = 3  # batches read ahead for every model actor
PLANS_AHEAD = 2  # scenes planned ahead of the one being read
RETRIES = 3


# ----------------------------------------------------------------------------- in Ray's processes
def _build(spec: SegmentSpec, roles: Mapping[str, int], given: SegmenterFactory | None) -> Segmenter:
    """The segmenter a task or actor uses: the one given, or the spec's engine."""
    return Engines(spec.engine, given).for_roles(roles)


class ModelActor:
    """Holds one loaded model; answers chip batches with texts."""

    def __init__(self, spec: SegmentSpec, given: SegmenterFactory | None = None):
        self.segmenter = _build(spec, {}, given)

    def info(self) -> tuple[EngineInfo, dict[str, Any]]:
        from .stages import describe

        return self.segmenter.info, describe(self.segmenter)

    def generate(self, scene: str, batch: ChipBatch | None) -> tuple[str, list[int], list[str | None]]:
        if batch is None:
            return scene, [], []
        text = as_text(self.segmenter)
        if text is None:
            raise RuntimeError(f"{self.segmenter.info.name} does not answer in text")
        return scene, list(batch.ids), text.generate_texts(batch)


def plan_task(scene: Scene, spec: SegmentSpec, info: EngineInfo) -> ScenePlan:
    from .plan import open_scene, plan_scene, scene_statistics
    from .stages import TextReplay

    stand_in = TextReplay(info)
    with open_scene(scene, spec.read) as src:
        plan = plan_scene(src, stand_in, spec.grid, spec.output, scene)
        scene_statistics(src, stand_in, plan)
    return plan


@functools.lru_cache(maxsize=2)
def _source(scene: Scene, read: ReadSpec, stretch: tuple | None) -> Any:
    """The scene's raster, kept open for the next batch: a worker process reads many in a row."""
    from .plan import open_scene

    src = open_scene(scene, read)
    if stretch is not None:
        src.set_stretch(*zip(*stretch, strict=True))
    return src


def read_task(
    plan: ScenePlan, spec: SegmentSpec, ids: list[int]
) -> tuple[ChipBatch | None, dict[int, bytes | None]]:
    """(the model's input, or None when every chip is skipped; each chip's validity for the journal).

    Two returns: the batch goes to an actor, the small validity to the driver, which journals
    it with the texts so that neither a finishing task nor a resumed run reads these chips again.
    """
    stretch = tuple(map(tuple, plan.stretch)) if plan.stretch is not None else None
    todo: list[ChipData] = read_batch(_source(plan.scene, spec.read, stretch), plan, ids)
    return (batch_of(todo) if todo else None), {d.chip.id: encode_valid(d.valid) for d in todo}


@functools.lru_cache(maxsize=4)
def _decoder(model: ModelSpec) -> Any:
    from ..model.text_decoder import ChipTextDecoder

    return ChipTextDecoder.from_spec(model)


def finish_task(
    plan: ScenePlan,
    spec: SegmentSpec,
    known: Known,
    info: EngineInfo,
    described: dict[str, Any],
) -> SceneResult:
    from .stages import TextReplay, replay_info, run_scene

    stand_in = TextReplay(replay_info(info), _decoder(spec.engine.paligemma), described)
    return run_scene(plan.scene, spec, lambda roles: stand_in, known=known)


def scene_task(scene: Scene, spec: SegmentSpec, given: SegmenterFactory | None) -> SceneResult:
    from .stages import run_scene

    return run_scene(scene, spec, Engines(spec.engine, given).for_roles)


# ----------------------------------------------------------------------------- the driver's side
def _unwrap(exc: BaseException) -> Exception:
    """The error a Ray task raised, as the stage raised it (RayTaskError wraps it)."""
    from ray.exceptions import RayTaskError

    found = exc.cause if isinstance(exc, RayTaskError) and isinstance(exc.cause, BaseException) else exc
    return found if isinstance(found, Exception) else RuntimeError(str(found))


class RayExecutor:
    """Model actors and CPU tasks on Ray; see the module docstring."""

    def __init__(self, spec: SegmentSpec, given: SegmenterFactory | None = None):
        self.spec, self.given = spec, given
        self.local = Engines(spec.engine, given)  # pixel engines plan here, as locally
        self.ray: Any = None
        self.started = False
        self.actors: list[Any] = []
        self.actor_info: tuple[EngineInfo, dict[str, Any]] | None = None

    @property
    def info(self) -> EngineInfo | None:
        if self.actor_info is not None:
            return self.actor_info[0]
        return self.local.last.info if self.local.last is not None else None

    def _start(self) -> None:
        if self.ray is not None:
            return
        self.ray = import_ray()
        self.started = connect(self.ray, self.spec.run)
        if uses_model(self.spec.engine.name) or self.given is not None:
            self.actors = self._actors()
            try:
                info, described = self.ray.get(self.actors[0].info.remote())
            except Exception as exc:  # the model could not load: that is the run's error
                raise _unwrap(exc) from None
            if info.text:
                self.actor_info = (info, described)
            else:
                for actor in self.actors:
                    self.ray.kill(actor)
                self.actors = []

    def planner(self) -> SegmenterFactory:
        from .stages import TextReplay

        self._start()
        if self.actor_info is not None:
            info, described = self.actor_info
            stand_in = TextReplay(info, None, described)
            return lambda roles: stand_in
        return self.local.for_roles

    def _actors(self) -> list[Any]:
        ray, run = self.ray, self.spec.run
        gpus = float(ray.cluster_resources().get("GPU", 0))
        per = run.ray_gpus_per_actor
        per = (1.0 if gpus else 0.0) if per is None else float(per)
        if per > gpus:
            raise InputError("ray_gpus", field="ray_gpus_per_actor", per=f"{per:g}", gpus=f"{gpus:g}")
        count = run.ray_actors or (max(1, int(gpus // per)) if per > 0 else 1)
        # An actor holding a CPU for the run must leave one for the read/finish tasks, or they never start.
        cpu_each = 1 if float(ray.cluster_resources().get("CPU", 0)) - count >= 1 else 0
        remote = ray.remote(ModelActor).options(
            num_gpus=per, num_cpus=cpu_each, max_restarts=RETRIES, max_task_retries=RETRIES
        )
        return [remote.remote(self.spec, self.given) for _ in range(count)]

    def run(
        self, scenes: Sequence[PlannedScene], journal: ChipJournal, progress: RunProgress
    ) -> Iterator[Outcome]:
        self._start()
        if self.actor_info is not None:
            yield from _TextRun(self.ray, self.spec, self.actors, self.actor_info, scenes, journal, progress)
        else:
            yield from self._scene_tasks(scenes, progress)

    def _scene_tasks(self, scenes: Sequence[PlannedScene], progress: RunProgress) -> Iterator[Outcome]:
        """Engines without text: one CPU task per scene, results as they come."""
        ray = self.ray
        task = ray.remote(scene_task).options(max_retries=RETRIES)
        pending = deque(scenes)
        running: dict[Any, PlannedScene] = {}
        progress.stage("segmenting scenes on Ray", prefix="")
        window = max(2, int(ray.cluster_resources().get("CPU", 2)) * 2)
        while pending or running:
            while pending and len(running) < window:
                planned = pending.popleft()
                running[task.remote(planned.scene, self.spec, self.given)] = planned
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            check_cancelled(progress.progress)
            for ref in ready:
                planned = running.pop(ref)
                try:
                    yield ray.get(ref)
                except Exception as exc:
                    yield SceneFailure(planned.scene, _unwrap(exc))
                progress.advance(planned.chips)

    def close(self) -> None:
        if self.ray is None:
            return
        for actor in self.actors:
            self.ray.kill(actor)
        if self.started:
            self.ray.shutdown()


@dataclasses.dataclass(eq=False)
class _SceneState:
    planned: PlannedScene
    plan_ref: Any
    known: Known
    ids: Any = None  # iterator over the chip ids still to send
    outstanding: int = 0
    sent_all: bool = False
    failed: bool = False
    finishing: bool = False


class _TextRun:
    """Plans ahead, reads ahead, feeds the least busy actor, finishes scenes as their texts complete."""

    def __init__(
        self,
        ray: ModuleType,
        spec: SegmentSpec,
        actors: list[Any],
        actor_info: tuple[EngineInfo, dict[str, Any]],
        scenes: Sequence[PlannedScene],
        journal: ChipJournal,
        progress: RunProgress,
    ):
        from .stages import batch_size_of

        self.ray, self.spec, self.actors = ray, spec, actors
        self.info, self.described = actor_info
        self.journal, self.progress = journal, progress
        self.batch = batch_size_of(spec, self.info)
        self.plan = ray.remote(plan_task).options(max_retries=RETRIES)
        self.read = ray.remote(read_task).options(max_retries=RETRIES, num_returns=2)
        self.finish = ray.remote(finish_task).options(max_retries=RETRIES)
        self.todo = deque(scenes)
        self.scenes: deque[_SceneState] = deque()  # planned or being read, in order
        self.calls: dict[
            Any, tuple[_SceneState, int, Any, Any]
        ] = {}  # call -> (scene, chips, actor, validity)
        self.load = {id(a): 0 for a in actors}
        self.finishing: dict[Any, _SceneState] = {}
        self.outcomes: deque[Outcome] = deque()

    def __iter__(self) -> Iterator[Outcome]:
        self.progress.stage("segmenting chips on Ray", prefix="")
        while self.todo or self.scenes or self.calls or self.finishing or self.outcomes:
            while self.outcomes:
                yield self.outcomes.popleft()
            self._plan_ahead()
            self._send()
            refs = list(self.calls) + list(self.finishing)
            if not refs:
                continue
            ready, _ = self.ray.wait(refs, num_returns=1, timeout=0.5)
            check_cancelled(self.progress.progress)
            for ref in ready:
                if ref in self.calls:
                    self._answered(ref)
                else:
                    self._finished(ref)
        yield from self.outcomes

    def _fail(self, state: _SceneState, exc: BaseException) -> None:
        self.outcomes.append(SceneFailure(state.planned.scene, _unwrap(exc)))

    def _plan_ahead(self) -> None:
        while self.todo and len(self.scenes) < PLANS_AHEAD:
            planned = self.todo.popleft()
            ref = self.plan.remote(planned.scene, self.spec, self.info)
            known = self.journal.known(planned.scene.id)
            self.scenes.append(_SceneState(planned, ref, Known(dict(known.texts), dict(known.validity))))

    def _send(self) -> None:
        """Read batches ahead and hand them to the least busy actor, up to the read-ahead window."""
        window = READS_AHEAD_PER_ACTOR * len(self.actors)
        while self.scenes and len(self.calls) < window:
            state = self.scenes[0]
            if state.ids is None and not self._start(state):
                continue
            if state.failed:  # an answer of this scene failed: send no more of it
                self.scenes.popleft()
                continue
            ids = [i for _, i in zip(range(self.batch), state.ids, strict=False)]
            if not ids:
                state.sent_all = True
                self.scenes.popleft()
                self._maybe_finish(state)
                continue
            actor = min(self.actors, key=lambda a: self.load[id(a)])
            data, valid = self.read.remote(state.plan_ref, self.spec, ids)
            self.calls[actor.generate.remote(state.planned.scene.id, data)] = (state, len(ids), actor, valid)
            self.load[id(actor)] += 1
            state.outstanding += 1

    def _start(self, state: _SceneState) -> bool:
        """The scene's plan is needed to list its chips: wait for it (it was started ahead)."""
        try:
            plan = self.ray.get(state.plan_ref)
        except Exception as exc:
            self.scenes.popleft()
            self._fail(state, exc)
            self.progress.advance(state.planned.chips)
            return False
        texts = state.known.texts
        self.progress.advance(len(texts))  # answered before (journal): not sent again
        state.ids = (c.id for c in plan.grid if c.id not in texts)
        return True

    def _answered(self, ref: object) -> None:
        state, n, actor, valid_ref = self.calls.pop(ref)
        self.load[id(actor)] -= 1
        state.outstanding -= 1
        try:
            scene_id, ids, texts = self.ray.get(ref)
            valid = self.ray.get(valid_ref)
        except Exception as exc:
            if not state.failed:
                state.failed = True
                self._fail(state, exc)
            self._maybe_finish(state)
            return
        if not state.failed:
            items = [(c, t, valid.get(c)) for c, t in zip(ids, texts, strict=True) if t is not None]
            self.journal.add_texts(scene_id, items)
            state.known.texts.update((c, t) for c, t, _ in items)
            state.known.validity.update((c, v) for c, _, v in items)
        self.progress.advance(n)
        self._maybe_finish(state)

    def _maybe_finish(self, state: _SceneState) -> None:
        if state.failed or state.finishing or not (state.sent_all and state.outstanding == 0):
            return
        state.finishing = True
        ref = self.finish.remote(state.plan_ref, self.spec, state.known, self.info, self.described)
        self.finishing[ref] = state

    def _finished(self, ref: object) -> None:
        state = self.finishing.pop(ref)
        try:
            self.outcomes.append(self.ray.get(ref))
        except Exception as exc:
            self._fail(state, exc)
