"""The Ray executor: the stages of ``scene_run`` spread over a Ray cluster, or the GPUs of one machine.

Shape, and why:

- The model lives in actors (``ModelActor``), each loading it once (``num_gpus`` per actor),
  and takes chip batches of every scene: a GPU never waits for a scene boundary.
- CPU stages are Ray tasks on any node: ``plan`` (open, plan, scene statistics), ``read``
  (chips -> model input) and ``finish`` (validity, text decoding, mosaic, vectorising), so
  reading and vectorising overlap the GPU work. Reads are submitted a few batches ahead.
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
import json
import logging
from collections import deque
from typing import Any

from ..errors import InputError
from ..progress import check_cancelled
from .ray_cluster import connect, import_ray

log = logging.getLogger(__name__)
READS_AHEAD_PER_ACTOR = 3  # batches read ahead for every model actor
PLANS_AHEAD = 2  # scenes planned ahead of the one being read
RETRIES = 3


# ----------------------------------------------------------------------------- in Ray's processes
def _options(options: dict[str, Any]) -> Any:
    from .options import SegmentOptions

    return SegmentOptions.from_dict(options)


def _build(options: Any, roles: dict[str, int], given: Any) -> Any:
    """The segmenter a task or actor uses: the one given (instance or factory), or the options' engine."""
    if given is not None:
        return given() if callable(given) and not hasattr(given, "bands_needed") else given
    from ..model.factory import make_segmenter
    from .driver import engine_options

    return make_segmenter(options.engine, **engine_options(options, roles))


class ModelActor:
    """Holds one loaded model; answers chip batches with texts."""

    def __init__(self, options: dict[str, Any], given: Any = None):
        self.segmenter = _build(_options(options), {}, given)

    def info(self) -> dict[str, Any]:
        from .stages import describe, is_text_engine

        seg = self.segmenter
        return {
            "name": getattr(seg, "name", ""),
            "chip_size": int(seg.chip_size),
            "text": is_text_engine(seg),
            "describe": describe(seg),
            "device": str(getattr(seg, "device", "") or ""),
            "batch_size": getattr(seg, "batch_size", None),
        }

    def generate(self, scene: str, batch: Any) -> tuple[str, list[int], list[str | None]]:
        if batch is None:
            return scene, [], []
        return scene, list(batch.ids), self.segmenter.generate_texts(batch)


class PlanningStandIn:
    """What planning needs of a text engine (chip size, no raw bands), without its model."""

    def __init__(self, info: dict[str, Any]):
        self.name, self.chip_size, self.batch_size = info["name"], info["chip_size"], info["batch_size"]
        self._describe = info["describe"]
        self.device = info["device"]

    def bands_needed(self, bands: Any) -> list[int]:
        return []

    def prepare(self, sample: Any) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return dict(self._describe)


def plan_task(scene: Any, options: dict[str, Any], info: dict[str, Any]) -> Any:
    from .stages import open_scene, plan_scene, scene_statistics

    opts = _options(options)
    stand_in = PlanningStandIn(info)
    with open_scene(scene, opts) as src:
        plan = plan_scene(src, stand_in, opts, scene)
        scene_statistics(src, stand_in, plan)
    return plan


@functools.lru_cache(maxsize=2)
def _source(scene: Any, options: str, stretch: tuple | None) -> Any:
    """The scene's raster, kept open for the next batch: a worker process reads many in a row."""
    from .stages import open_scene

    src = open_scene(scene, _options(json.loads(options)))
    if stretch is not None:
        src.set_stretch(*zip(*stretch, strict=True))
    return src


def read_task(plan: Any, options: dict[str, Any], ids: list[int]) -> tuple[Any, dict[int, bytes | None]]:
    """(the model's input, or None when every chip is skipped; each chip's validity for the journal).

    Two returns: the batch goes to an actor, the small validity to the driver, which journals
    it with the texts so that neither a finishing task nor a resumed run reads these chips again.
    """
    from .stages import batch_of, encode_valid, read_batch

    stretch = tuple(map(tuple, plan.stretch)) if plan.stretch is not None else None
    src = _source(plan.scene, json.dumps(options, sort_keys=True, default=str), stretch)
    todo = read_batch(src, plan, ids)
    return (batch_of(todo) if todo else None), {d.chip.id: encode_valid(d.valid) for d in todo}


@functools.lru_cache(maxsize=4)
def _decoder(vae: str | None, classes: tuple[str, ...] | None, allow_custom_vae: bool) -> Any:
    from ..model.text_decoder import ChipTextDecoder

    return ChipTextDecoder.from_options(vae, list(classes) if classes else None, allow_custom_vae)


def finish_task(
    plan: Any,
    options: dict[str, Any],
    texts: dict[int, str],
    validity: dict[int, Any],
    engine: dict[str, Any],
) -> bytes:
    from .stages import finish_from_texts

    opts = _options(options)
    decoder = _decoder(opts.vae, tuple(opts.classes) if opts.classes else None, bool(opts.allow_custom_vae))
    return finish_from_texts(plan, opts, texts, decoder, engine=engine, validity=validity).to_bytes()


def scene_task(scene: Any, options: dict[str, Any], given: Any) -> bytes:
    from .stages import run_scene

    opts = _options(options)
    return run_scene(scene, opts, lambda roles: _build(opts, roles, given)).to_bytes()


# ----------------------------------------------------------------------------- the driver
def _actors(ray: Any, options: Any, given: Any) -> list[Any]:
    gpus = float(ray.cluster_resources().get("GPU", 0))
    per = options.ray_gpus_per_actor
    per = (1.0 if gpus else 0.0) if per is None else float(per)
    if per > gpus:
        raise InputError(f"--ray-gpus-per-actor {per:g} but the Ray cluster has {gpus:g} GPUs")
    count = options.ray_actors or (max(1, int(gpus // per)) if per > 0 else 1)
    # An actor holding a CPU for the run must leave one for the read/finish tasks, or they never start.
    cpu_each = 1 if float(ray.cluster_resources().get("CPU", 0)) - count >= 1 else 0
    remote = ray.remote(ModelActor).options(
        num_gpus=per, num_cpus=cpu_each, max_restarts=RETRIES, max_task_retries=RETRIES
    )
    return [remote.remote(options.to_dict(), given) for _ in range(count)]


def _unwrap(exc: BaseException) -> BaseException:
    """The error a Ray task raised, as the stage raised it (RayTaskError wraps it)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def run_ray(ctx: Any) -> None:
    """Executor entry: plan with Ray's help, then run every pending scene on the cluster."""
    from .driver import plan_run
    from .stages import is_text_engine

    ray = import_ray()
    started = connect(ray, ctx.options)
    actors: list[Any] = []
    try:
        given = ctx.engines.fixed
        factory = given is not None and not hasattr(given, "bands_needed")
        text = ctx.options.engine == "paligemma" or factory or is_text_engine(given)
        if text:
            actors = _actors(ray, ctx.options, given)
            try:
                info = ray.get(actors[0].info.remote())
            except Exception as exc:  # the model could not load: that is the run's error
                raise _unwrap(exc) from None
            text = info["text"]
            if text:
                ctx.engines.fixed = PlanningStandIn(info)
                ctx.engines.last = ctx.engines.fixed
        plan_run(ctx)
        if text:
            _TextRun(ray, ctx, actors, info).run()
        else:
            _scene_tasks(ray, ctx, given)
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()


def _scene_tasks(ray: Any, ctx: Any, given: Any) -> None:
    """Engines without text: one CPU task per scene, results journaled as they come."""
    from .results import SceneResult

    task = ray.remote(scene_task).options(max_retries=RETRIES)
    options = ctx.options.to_dict()
    pending = deque(ctx.pending)
    running: dict[Any, Any] = {}
    ctx.progress.stage("segmenting scenes on Ray", prefix="")
    window = max(2, int(ray.cluster_resources().get("CPU", 2)) * 2)
    while pending or running:
        while pending and len(running) < window:
            planned = pending.popleft()
            running[task.remote(planned.scene, options, given)] = planned
        ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
        check_cancelled(ctx.progress.progress)
        for ref in ready:
            planned = running.pop(ref)
            try:
                ctx.record(SceneResult.from_bytes(ray.get(ref)))
            except Exception as exc:
                ctx.fail(planned.scene, _unwrap(exc))
            ctx.progress.advance(planned.chips)


@dataclasses.dataclass(eq=False)
class _SceneState:
    planned: Any
    plan_ref: Any
    known: dict[int, str]
    valid: dict[int, bytes | None]
    ids: Any = None  # iterator over the chip ids still to send
    outstanding: int = 0
    sent_all: bool = False
    failed: bool = False
    finishing: bool = False


class _TextRun:
    """Plans ahead, reads ahead, feeds the least busy actor, finishes scenes as their texts complete."""

    def __init__(self, ray: Any, ctx: Any, actors: list[Any], info: dict[str, Any]):
        self.ray, self.ctx, self.actors, self.info = ray, ctx, actors, info
        self.options = ctx.options.to_dict()
        self.batch = int(ctx.options.batch_size or info["batch_size"] or 8)
        self.plan = ray.remote(plan_task).options(max_retries=RETRIES)
        self.read = ray.remote(read_task).options(max_retries=RETRIES, num_returns=2)
        self.finish = ray.remote(finish_task).options(max_retries=RETRIES)
        self.todo = deque(ctx.pending)
        self.scenes: deque[_SceneState] = deque()  # planned or being read, in order
        self.calls: dict[
            Any, tuple[_SceneState, int, Any, Any]
        ] = {}  # actor call -> (scene, chips, actor, validity)
        self.load = {id(a): 0 for a in actors}
        self.finishing: dict[Any, _SceneState] = {}

    def run(self) -> None:
        self.ctx.progress.stage("segmenting chips on Ray", prefix="")
        while self.todo or self.scenes or self.calls or self.finishing:
            self._plan_ahead()
            self._send()
            refs = list(self.calls) + list(self.finishing)
            if not refs:
                continue
            ready, _ = self.ray.wait(refs, num_returns=1, timeout=0.5)
            check_cancelled(self.ctx.progress.progress)
            for ref in ready:
                if ref in self.calls:
                    self._answered(ref)
                else:
                    self._finished(ref)

    def _plan_ahead(self) -> None:
        while self.todo and len(self.scenes) < PLANS_AHEAD:
            planned = self.todo.popleft()
            ref = self.plan.remote(planned.scene, self.options, self.info)
            self.scenes.append(_SceneState(planned, ref, *self.ctx.answers(planned.scene)))

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
            data, valid = self.read.remote(state.plan_ref, self.options, ids)
            self.calls[actor.generate.remote(state.planned.scene.id, data)] = (state, len(ids), actor, valid)
            self.load[id(actor)] += 1
            state.outstanding += 1

    def _start(self, state: _SceneState) -> bool:
        """The scene's plan is needed to list its chips: wait for it (it was started ahead)."""
        try:
            plan = self.ray.get(state.plan_ref)
        except Exception as exc:
            self.scenes.popleft()
            self.ctx.fail(state.planned.scene, _unwrap(exc))
            self.ctx.progress.advance(state.planned.chips)
            return False
        known = state.known
        self.ctx.progress.advance(len(known))  # answered before (journal): not sent again
        state.ids = (c.id for c in plan.grid if c.id not in known)
        return True

    def _answered(self, ref: Any) -> None:
        state, n, actor, valid_ref = self.calls.pop(ref)
        self.load[id(actor)] -= 1
        state.outstanding -= 1
        try:
            scene_id, ids, texts = self.ray.get(ref)
            valid = self.ray.get(valid_ref)
        except Exception as exc:
            if not state.failed:
                state.failed = True
                self.ctx.fail(state.planned.scene, _unwrap(exc))
            self._maybe_finish(state)
            return
        if not state.failed:
            items = [(c, t, valid.get(c)) for c, t in zip(ids, texts, strict=True) if t is not None]
            self.ctx.journal.add_texts(scene_id, items)
            state.known.update((c, t) for c, t, _ in items)
            state.valid.update((c, v) for c, _, v in items)
        self.ctx.progress.advance(n)
        self._maybe_finish(state)

    def _maybe_finish(self, state: _SceneState) -> None:
        if state.failed or state.finishing or not (state.sent_all and state.outstanding == 0):
            return
        state.finishing = True
        ref = self.finish.remote(
            state.plan_ref, self.options, state.known, state.valid, self.info["describe"]
        )
        self.finishing[ref] = state

    def _finished(self, ref: Any) -> None:
        from .results import SceneResult

        state = self.finishing.pop(ref)
        try:
            self.ctx.record(SceneResult.from_bytes(self.ray.get(ref)))
        except Exception as exc:
            self.ctx.fail(state.planned.scene, _unwrap(exc))
