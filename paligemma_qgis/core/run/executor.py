"""The executor seam: planned scenes and the journal in, scene results out.

The driver (run/driver.py) plans, journals and writes; an executor only runs scenes. Two
implement ``Executor``: ``LocalExecutor`` here (scene after scene in this process) and
``RayExecutor`` (run/ray_executor.py: model actors and CPU tasks on a cluster). The driver
does not know which one runs; neither reaches into the driver's objects: what they need
comes through ``ChipJournal`` and ``RunProgress``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..inputs.scenes import Scene
from ..model.segmenter import EngineInfo, Segmenter, SegmenterFactory
from ..progress import Cancelled, Progress, check_cancelled
from ..rules import uses_model
from ..specs import EngineSpec, SegmentSpec
from .chips import Known, TextRecord
from .results import SceneResult


@dataclass(frozen=True)
class PlannedScene:
    """A scene the driver planned: its chips (progress), its mosaic's bytes (disk check), its CRS."""

    scene: Scene
    chips: int
    mosaic_bytes: int
    crs_wkt: str


@dataclass
class SceneFailure:
    """A scene that failed: the driver records it and goes on (or stops, with ``fail_fast``)."""

    scene: Scene
    error: Exception
    seconds: float = 0.0


Outcome = SceneResult | SceneFailure


class ChipJournal(Protocol):
    """What an executor reads and writes of the journal: chip answers, by scene."""

    def known(self, scene_id: str) -> Known: ...

    def add_texts(self, scene_id: str, items: list[TextRecord]) -> None: ...


class RunProgress:
    """Chips done over the whole run; messages name the scene in a region run; checks cancel."""

    def __init__(self, progress: Progress, scenes: Sequence[Scene] = ()):
        self.progress, self.total, self.done = progress, 0, 0
        self._order = {s.id: k for k, s in enumerate(scenes, start=1)}
        self.prefix = ""  # "scene 2/5 lakes_2020: " in a region run
        self.message = ""

    def about(self, scene: Scene) -> str:
        """The progress prefix of a scene: "scene 2/5 lakes_2020: " in a region run, else nothing."""
        if len(self._order) <= 1:
            return ""
        return f"scene {self._order.get(scene.id, 0)}/{len(self._order)} {scene.id}: "

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


class Executor(Protocol):
    """Runs planned scenes; yields each scene's result or failure as it finishes."""

    @property
    def info(self) -> EngineInfo | None:
        """The engine that ran (for the run table), once known."""
        ...

    def planner(self) -> SegmenterFactory:
        """What the driver plans scenes with (chip size, bands), before any is run."""
        ...

    def run(
        self, scenes: Sequence[PlannedScene], journal: ChipJournal, progress: RunProgress
    ) -> Iterator[Outcome]: ...

    def close(self) -> None: ...


class Engines:
    """The segmenter of each scene: a model is loaded once per run and serves every scene;
    a pixel index is built per scene (its bands follow the scene's band roles). A given
    factory is asked once, like a model: it may load one."""

    def __init__(self, engine: EngineSpec, given: SegmenterFactory | None = None):
        self.engine, self.given = engine, given
        self._model: Segmenter | None = None
        self.last: Segmenter | None = None

    def for_roles(self, roles: Mapping[str, int]) -> Segmenter:
        from ..model.factory import make_segmenter

        if self.given is not None:
            if self._model is None:
                self._model = self.given(roles)
            seg = self._model
        elif uses_model(self.engine.name):
            if self._model is None:
                self._model = make_segmenter(self.engine, roles)
            seg = self._model
        else:
            seg = make_segmenter(self.engine, roles)
        self.last = seg
        return seg


class LocalExecutor:
    """Scene after scene in this process, chips read on background threads."""

    def __init__(self, spec: SegmentSpec, given: SegmenterFactory | None = None):
        self.spec = spec
        self.engines = Engines(spec.engine, given)

    @property
    def info(self) -> EngineInfo | None:
        return self.engines.last.info if self.engines.last is not None else None

    def planner(self) -> SegmenterFactory:
        return self.engines.for_roles

    def run(
        self, scenes: Sequence[PlannedScene], journal: ChipJournal, progress: RunProgress
    ) -> Iterator[Outcome]:
        from .stages import run_scene

        for planned in scenes:
            scene = planned.scene
            progress.stage("segmenting chips", progress.about(scene))
            t0 = time.perf_counter()
            try:
                result = run_scene(
                    scene,
                    self.spec,
                    self.engines.for_roles,
                    known=journal.known(scene.id),
                    journal_texts=functools.partial(journal.add_texts, scene.id),
                    advance=progress.advance,
                    progress=progress,
                )
            except Cancelled:
                raise
            except Exception as exc:
                yield SceneFailure(scene, exc, time.perf_counter() - t0)
                continue
            yield result

    def close(self) -> None:
        pass
