"""Cancel through the worker's stdin: the clean stop that works on every OS (no signal needed).

The real worker (``python -m paligemma_qgis.cli.worker``) runs a water-index job on a synthetic
scene read at 10x its resolution, so segmenting takes seconds and a cancel lands mid-run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from synthetic_rasters import make_scene

from paligemma_qgis.cli.worker import EXIT_CANCELLED, EXIT_OK
from paligemma_qgis.plugin.options import segment_job
from paligemma_qgis.plugin.runner import CANCEL_LINE, run_worker
from paligemma_qgis.plugin.worker_env import worker_command, worker_env

# End to end (subprocesses, QGIS tasks, Ray, servers): `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow

# 600 x 500 px at 10 m read at 0.8 m: about 3600 chips with this overlap, several seconds.
SLOW_READ = {"resolution": 0.8, "overlap": 112, "batch_size": 1}


@pytest.fixture(scope="module")
def slow_scene(tmp_path_factory) -> Path:
    return make_scene(tmp_path_factory.mktemp("scene") / "lakes.tif", width=600, height=500).path


def _job(raster: Path, output: Path, **options) -> dict:
    job = segment_job(str(raster), str(output), engine="water-index", preset="naip")
    job["options"].update(options)
    return job


class Worker:
    """The real worker in a process group of its own, its events read on a thread."""

    def __init__(self, tmp_path: Path, stdin=subprocess.PIPE) -> None:
        self.stderr_path = tmp_path / "worker.stderr"
        with self.stderr_path.open("w") as stderr:
            self.proc = subprocess.Popen(
                worker_command(python=sys.executable),
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=worker_env(),
                text=True,
                encoding="utf-8",
                start_new_session=True,
            )
        self.events: queue.Queue[dict | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.events.put(json.loads(line))
        self.events.put(None)

    def send(self, text: str) -> None:
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def next_event(self, timeout: float = 60.0) -> dict | None:
        return self.events.get(timeout=timeout)

    def wait_for(self, predicate, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(max(0.1, deadline - time.monotonic()))
            assert event is not None, f"the worker ended first: {self.stderr()}"
            if predicate(event):
                return event

    def rest(self, timeout: float = 60.0) -> list[dict]:
        events = []
        while (event := self.next_event(timeout)) is not None:
            events.append(event)
        return events

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def close(self) -> None:
        """Never leave a worker behind, whatever the test said."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()


def _segmenting(event: dict) -> bool:
    return event.get("event") == "progress" and event.get("message") == "segmenting chips"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.skipif(sys.platform == "win32", reason="checks the process group with POSIX calls")
def test_cancel_line_stops_the_worker_cleanly_without_a_signal(slow_scene, tmp_path):
    """Only stdin is used: the worker must stop within about one batch, report "cancelled",
    exit with EXIT_CANCELLED and leave neither the output nor the mosaic's temporary files."""
    out_dir, work = tmp_path / "out", tmp_path / "work"
    out_dir.mkdir()
    work.mkdir()
    job = _job(slow_scene, out_dir / "water.gpkg", workdir=str(work), **SLOW_READ)
    worker = Worker(tmp_path)
    try:
        worker.send(json.dumps(job) + "\n")
        worker.wait_for(_segmenting)
        worker.send('\n{"cancel": false}\n')  # not a cancel: the run goes on
        for _ in range(3):
            worker.wait_for(_segmenting, timeout=60)  # a loaded machine starts Python slowly
        asked = time.monotonic()
        worker.send(CANCEL_LINE)
        rest = worker.rest(timeout=30)
        returncode = worker.proc.wait(timeout=30)
        latency = time.monotonic() - asked
    finally:
        worker.close()
    print(f"cancel line to worker exit: {latency:.2f} s")
    assert rest and rest[-1]["event"] == "cancelled", rest[-3:]
    assert not any(event["event"] == "result" for event in rest)
    progress = [event for event in rest if event["event"] == "progress"]
    assert all(event["done"] < event["total"] for event in progress)  # stopped mid-run
    assert returncode == EXIT_CANCELLED  # its own clean exit, not a signal's (-15, -9)
    assert latency < 3.0, f"the worker took {latency:.1f} s to stop"
    assert _leftovers(out_dir) == [] and _leftovers(work) == []
    stderr = worker.stderr()
    assert "cancel requested on stdin" in stderr and "ignored stdin line" in stderr


def test_runner_cancel_needs_no_signal(slow_scene, tmp_path):
    """run_worker with the SIGTERM fallback off and the kill a minute away: the cancel line
    alone must end the run, cleanly and at once."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = out_dir / "water.gpkg"
    seen: list[str] = []
    asked: list[float] = []

    def is_cancelled() -> bool:
        if "segmenting chips" in seen and not asked:
            asked.append(time.monotonic())
        return bool(asked)

    outcome = run_worker(
        _job(slow_scene, output, **SLOW_READ),
        worker_command(python=sys.executable),
        env=worker_env(),
        on_progress=lambda done, total, message: seen.append(message),
        is_cancelled=is_cancelled,
        grace_s=60.0,
        term_after_s=math.inf,
    )
    latency = time.monotonic() - asked[0]
    print(f"runner: cancel to run_worker return: {latency:.2f} s")
    assert outcome.status == "cancelled"
    assert outcome.returncode == EXIT_CANCELLED, outcome.stderr[-2000:]
    assert "cancel requested on stdin" in outcome.stderr
    assert latency < 5.0, f"cancel took {latency:.1f} s"
    assert _leftovers(out_dir) == []


@pytest.mark.parametrize("how", ["no newline, then end-of-file", "pretty-printed file"])
def test_a_job_piped_in_runs_to_the_end(water_scene, tmp_path, how):
    """``worker < job.json``: end-of-file right after the job is no cancel."""
    output = tmp_path / "water.gpkg"
    job = _job(water_scene.path, output)
    if how == "pretty-printed file":
        job_file = tmp_path / "job.json"
        job_file.write_text(json.dumps(job, indent=2) + "\n")
        with job_file.open() as stdin:
            worker = Worker(tmp_path, stdin=stdin)
    else:
        worker = Worker(tmp_path)
        worker.send(json.dumps(job))
        worker.proc.stdin.close()
    try:
        events = worker.rest(timeout=60)
        returncode = worker.proc.wait(timeout=30)
    finally:
        worker.close()
    assert events[-1]["event"] == "result", (events[-3:], worker.stderr())
    assert returncode == EXIT_OK
    assert events[-1]["polygons"] >= 4 and output.exists()
    assert "cancel" not in worker.stderr()


def test_a_bad_job_line_is_reported_while_stdin_stays_open(tmp_path):
    """The worker must not wait for end-of-file (the runner never sends it) to say the job is wrong."""
    worker = Worker(tmp_path)
    try:
        worker.send('{"task": segment}\n')
        event = worker.next_event(timeout=30)
        returncode = worker.proc.wait(timeout=30)
    finally:
        worker.close()
    assert event is not None and event["event"] == "error", worker.stderr()
    assert "not valid JSON" in event["message"]
    assert returncode == 1


GONE_WORKER = """
import json, os, sys, time
sys.stdin.readline()
os.close(0)  # nobody reads stdin any more: the cancel line meets a broken pipe
print(json.dumps({"event": "progress", "done": 1, "total": 9, "message": "segmenting chips"}), flush=True)
time.sleep(60)
"""


def test_cancel_into_a_broken_pipe_does_not_raise(tmp_path):
    """The cancel line to a worker that no longer reads stdin falls back to the signals."""
    script = tmp_path / "gone.py"
    script.write_text(GONE_WORKER)
    output = tmp_path / "w.gpkg"
    go: list[int] = []
    started = time.monotonic()
    outcome = run_worker(
        {"task": "segment", "options": {"output": str(output)}},
        [sys.executable, str(script)],
        on_progress=lambda done, total, message: go.append(done),
        is_cancelled=lambda: bool(go),
        grace_s=2.0,
        cancel_line=True,
    )
    assert outcome.status == "cancelled"
    assert time.monotonic() - started < 15
    if sys.platform != "win32":
        assert outcome.returncode == -signal.SIGTERM  # the fallback, half the grace period later
    assert not output.exists()


STUCK_IN_A_BATCH = """
import sys, time
from paligemma_qgis.cli import worker

_report = worker.JsonLinesProgress.report


def stuck_report(self, done, total, message=""):
    _report(self, done, total, message)
    if message == "segmenting chips":
        time.sleep(60)  # a batch that takes a minute: the next cancellation check is far away


worker.JsonLinesProgress.report = stuck_report
sys.exit(worker.main([]))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_sigterm_after_the_cancel_line_stops_a_long_batch(water_scene, tmp_path):
    """The escalation's second step: a worker that cannot reach its next check in time gets
    SIGTERM after ``term_after_s`` and, already asked to cancel, stops at once and cleanly."""
    script = tmp_path / "stuck_worker.py"
    script.write_text(STUCK_IN_A_BATCH)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    seen: list[str] = []
    asked: list[float] = []

    def is_cancelled() -> bool:
        if "segmenting chips" in seen and not asked:
            asked.append(time.monotonic())
        return bool(asked)

    outcome = run_worker(
        _job(water_scene.path, out_dir / "water.gpkg", batch_size=1),
        [sys.executable, str(script)],
        env=worker_env(),
        on_progress=lambda done, total, message: seen.append(message),
        is_cancelled=is_cancelled,
        grace_s=30.0,
        term_after_s=1.0,
        cancel_line=True,
    )
    latency = time.monotonic() - asked[0]
    print(f"cancel line, then SIGTERM 1 s later, to run_worker return: {latency:.2f} s")
    assert 1.0 <= latency < 5.0  # the SIGTERM did it (the line alone would wait a minute)
    assert outcome.status == "cancelled"
    assert outcome.returncode == EXIT_CANCELLED, outcome.stderr[-2000:]  # stopped itself, not killed
    assert "cancel requested on stdin" in outcome.stderr
    assert _leftovers(out_dir) == []
