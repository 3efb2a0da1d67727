"""The plugin's worker process where it goes wrong in the field, in a real (headless) QGIS.

A worker Python without the packages (QGIS's own Python on a fresh install), a worker started
through a wrapper script, a worker that leaves a child process behind, an error inside
QgsTask.run, and the plugin unloaded while a task runs.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import pytest
from bare_python import python_without
from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication
from waiting import pid_gone, wait_for_task

from paligemma_qgis.plugin.algorithms import SegmentWaterAlgorithm
from paligemma_qgis.plugin.error_text import SEGMENT_DIALOG, translate
from paligemma_qgis.plugin.messages import plugin_messages
from paligemma_qgis.plugin.options import segment_job
from paligemma_qgis.plugin.runner import run_worker
from paligemma_qgis.plugin.setup_check import render_check, run_check
from paligemma_qgis.plugin.task import WorkerTask
from paligemma_qgis.plugin.worker_env import worker_command, worker_env

# End to end (subprocesses, QGIS tasks, Ray, servers): `make test` runs it, `make test-fast` does not.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="shell-script stand-ins for Python"),
]

# QGIS's own Python: numpy, but none of the worker's other packages.
QGIS_PYTHON_LACKS = (
    "rasterio",
    "torch",
    "transformers",
    "platformdirs",
    "shapely",
    "pyproj",
    "geopandas",
    "pyogrio",
    "huggingface_hub",
    "tqdm",
)

# --------------------------------------------------------------------------- a bare worker Python


def test_check_with_qgis_python_lists_what_is_missing(tmp_path):
    """The setup page's check must describe a bare Python (with fixes), not crash on an import."""
    check = run_check(python=python_without(tmp_path, QGIS_PYTHON_LACKS))
    assert "error" not in check, check.get("details")
    assert check["packages"]["numpy"]
    assert check["packages"]["rasterio"] is None and check["packages"]["torch"] is None
    assert check["ready"] == {"water-index": False, "paligemma": False}
    assert any("rasterio" in fix["problem"] and "pip install" in fix["command"] for fix in check["fixes"])
    html = render_check(check)
    assert "missing" in html and "Traceback" not in html


def test_job_with_qgis_python_says_what_is_missing(water_scene, tmp_path):
    """A run with a bare worker Python ends with a message that names the package and the fix."""
    python = python_without(tmp_path, QGIS_PYTHON_LACKS)
    output = tmp_path / "water.gpkg"
    job = segment_job(str(water_scene.path), str(output), engine="water-index", preset="naip")
    outcome = run_worker(job, worker_command(python=python), env=worker_env())
    assert outcome.status == "error"
    assert "rasterio" in outcome.message
    assert sys.executable in outcome.message  # which Python lacks it (the wrapper exec's it)
    assert "Traceback" not in outcome.message and "ModuleNotFoundError" not in outcome.message
    for front in (SEGMENT_DIALOG, SegmentWaterAlgorithm.FRONT):  # where to fix it, in QGIS's words
        text = translate(outcome.message, outcome.error_info, job["options"], front)
        assert "lacks rasterio" in text and "Worker setup" in text, text
    assert not output.exists()


def test_paligemma_job_without_torch_names_torch(water_scene, vae_npz, tmp_path):
    python = python_without(tmp_path, ("torch", "transformers"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    job = segment_job(
        str(water_scene.path),
        str(tmp_path / "water.gpkg"),
        engine="paligemma",
        model=str(model),
        vae=str(vae_npz),
        device="cpu",
    )
    outcome = run_worker(job, worker_command(python=python), env=worker_env())
    assert outcome.status == "error"
    assert "torch" in outcome.message and "PaliGemma" in outcome.message
    assert "Traceback" not in outcome.message and "ModuleNotFoundError" not in outcome.message


# --------------------------------------------------------------------------- processes left behind

FAKE_WORKER = """
import json, os, signal, sys, time

sys.stdin.readline()  # the job line (the runner keeps stdin open for its cancel line)
print(f"pid={os.getpid()}", file=sys.stderr, flush=True)


def stop(*_args):
    print(json.dumps({"event": "cancelled", "message": "stopped"}), flush=True)
    sys.exit(130)


signal.signal(signal.SIGTERM, stop)
print(json.dumps({"event": "progress", "done": 1, "total": 10, "message": "segmenting chips"}), flush=True)
time.sleep(60)
print(json.dumps({"event": "result"}), flush=True)
"""


def test_cancel_reaches_a_worker_started_by_a_wrapper_script(tmp_path):
    """A worker Python that is a shell script (conda activate; python ...) without exec: cancel
    must stop the real worker, not only the shell, and not wait for the run to end."""
    fake = tmp_path / "fake_worker.py"
    fake.write_text(FAKE_WORKER)
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\n"{sys.executable}" "{fake}" "$@"\n')  # no exec
    wrapper.chmod(0o755)
    go = []
    started = time.monotonic()
    outcome = run_worker(
        {"task": "segment", "options": {"output": str(tmp_path / "w.gpkg")}},
        [str(wrapper)],
        on_progress=lambda done, total, message: go.append(done),
        is_cancelled=lambda: bool(go),
        grace_s=2.0,
    )
    elapsed = time.monotonic() - started
    pid = int(outcome.stderr.split("pid=")[1].split()[0])
    assert pid_gone(pid), "the worker behind the wrapper kept running after cancel"
    assert elapsed < 15, f"cancel took {elapsed:.0f} s"
    assert outcome.status == "cancelled"


LEAVES_A_CHILD = """
import json, subprocess, sys

sys.stdin.readline()  # the job line
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(f"child={child.pid}", file=sys.stderr, flush=True)
print(json.dumps({"event": "result", "polygons": 1}), flush=True)
"""


def test_a_child_left_by_the_worker_does_not_hold_the_run(tmp_path):
    """A helper process the worker leaves behind (it inherits stdout) must not keep the task
    waiting for end-of-file, nor keep running (it may hold GPU memory)."""
    script = tmp_path / "leaves_a_child.py"
    script.write_text(LEAVES_A_CHILD)
    started = time.monotonic()
    outcome = run_worker({"task": "export", "options": {}}, [sys.executable, str(script)])
    elapsed = time.monotonic() - started
    child = int(outcome.stderr.split("child=")[1].split()[0])
    assert pid_gone(child), "the worker's child outlived the run"
    assert elapsed < 15, f"the run waited {elapsed:.0f} s for the worker's child"
    assert outcome.ok and outcome.result == {"polygons": 1}


def test_an_error_while_following_the_worker_stops_it(tmp_path):
    """Whatever goes wrong on the plugin's side, the worker must not run on unobserved."""
    fake = tmp_path / "fake_worker.py"
    fake.write_text(FAKE_WORKER)

    def on_progress(done, total, message):
        raise RuntimeError("progress handler failed")

    output = tmp_path / "w.gpkg"
    with pytest.raises(RuntimeError, match="progress handler failed"):
        run_worker(
            {"task": "segment", "options": {"output": str(output)}},
            [sys.executable, str(fake)],
            on_progress=on_progress,
            grace_s=2.0,
        )
    deadline = time.monotonic() + 10
    while _running_script(fake):
        assert time.monotonic() < deadline, "the worker kept running after the plugin gave up on it"
        time.sleep(0.1)


def _running_script(script: Path) -> bool:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(script).encode() in cmdline:
            try:
                state = (proc / "stat").read_text().split(") ")[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                return True
    return False


# --------------------------------------------------------------------------- QgsTask


def test_an_exception_in_task_run_reaches_the_user(
    water_scene, clean_project, qgis_iface, tmp_path, monkeypatch
):
    """A failure inside QgsTask.run (here: no usable temp folder) must reach the message bar with
    its reason, not vanish into stderr as "the worker did not run"."""
    missing = tmp_path / "no_such_temp_folder"
    monkeypatch.setattr(tempfile, "tempdir", str(missing))
    job = segment_job(str(water_scene.path), str(tmp_path / "w.gpkg"), engine="water-index", preset="naip")
    task = WorkerTask("Water in lakes", job, python=sys.executable, iface=qgis_iface)
    QgsApplication.taskManager().addTask(task)
    wait_for_task(task)
    assert task.succeeded is False
    assert "no_such_temp_folder" in task.error
    critical = plugin_messages(qgis_iface)
    assert any("no_such_temp_folder" in m for m in critical)


def test_unloading_the_plugin_cancels_its_running_task(water_scene, clean_project, qgis_iface, tmp_path):
    """Disabling, updating or reloading the plugin mid-run stops the worker (its files may be
    replaced under it) instead of leaving it to add layers from unloaded code."""
    from paligemma_qgis.plugin.plugin import PaliGemmaPlugin

    fake = tmp_path / "fake_worker.py"
    fake.write_text(FAKE_WORKER)
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{fake}" "$@"\n')
    wrapper.chmod(0o755)
    plugin = PaliGemmaPlugin(qgis_iface)
    plugin.initGui()
    job = segment_job(str(water_scene.path), str(tmp_path / "w.gpkg"), engine="water-index")
    task = WorkerTask("Water in lakes", job, python=str(wrapper), iface=qgis_iface, grace_s=2.0)
    QgsApplication.taskManager().addTask(task)
    plugin._keep(task)
    deadline = time.monotonic() + 30
    while task.message != "segmenting chips":
        QCoreApplication.processEvents()
        time.sleep(0.02)
        assert time.monotonic() < deadline, "the fake worker never reported progress"
    plugin.unload()
    wait_for_task(task, timeout=20)
    assert task.outcome is not None and task.outcome.status == "cancelled"


def test_worker_check_output_is_one_json_line(tmp_path):
    """``worker --check`` prints exactly one JSON object on stdout, whatever the packages print."""
    import subprocess

    proc = subprocess.run(
        worker_command("--check", python=sys.executable), capture_output=True, text=True, env=worker_env()
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    assert json.loads(lines[0])["python"]


# --------------------------------------------------------------------------- worker setup page


def test_closing_the_setup_page_during_a_check(qgis_iface, tmp_path):
    """Closing the page while ``worker --check`` still runs (torch imports slowly) must stop the
    check and touch no deleted widget when the process ends."""
    import sip

    from paligemma_qgis.plugin.setup_check import SetupCheckDialog

    slow = tmp_path / "python"
    slow.write_text(f'#!/bin/sh\nsleep 3\nexec "{sys.executable}" "$@"\n')
    slow.chmod(0o755)
    errors = []
    hook = sys.excepthook
    sys.excepthook = lambda *exc: errors.append(exc[1])  # what QGIS's hook would show the user
    try:
        dialog = SetupCheckDialog()
        dialog.python_widget.setFilePath(str(slow))
        dialog.show()
        dialog.start_check()
        process = dialog.process
        pid = int(process.processId())
        dialog.reject()
        sip.delete(dialog)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            QCoreApplication.processEvents()
            time.sleep(0.02)
    finally:
        sys.excepthook = hook
    assert errors == []
    assert pid_gone(pid, timeout=1.0), "the check kept running after its page was closed"
