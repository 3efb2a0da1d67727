"""Issue 21: cancel and continue say what is true, and an interrupted run is never discarded silently.

Real headless QGIS and the real worker (this test's Python), slowed down by a wrapper so that a
cancel lands in the middle of a three-scene region run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsSettings
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtWidgets import QApplication
from slow_worker import slow_worker_python
from synthetic_rasters import make_scene
from waiting import wait_for_task, wait_until

from paligemma_qgis.plugin import interrupted
from paligemma_qgis.plugin.dialog import SegmentDialog
from paligemma_qgis.plugin.messages import bar_texts, plugin_messages
from paligemma_qgis.plugin.options import segment_job
from paligemma_qgis.plugin.task import WorkerTask
from paligemma_qgis.plugin.worker_env import ENV_PYTHON, SETTINGS_GROUP, set_configured_python

# End to end (subprocesses, QGIS tasks, Ray, servers): `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch):
    monkeypatch.delenv(ENV_PYTHON, raising=False)
    QgsSettings().remove(SETTINGS_GROUP)
    yield
    QgsSettings().remove(SETTINGS_GROUP)


@pytest.fixture
def three(tmp_path) -> list[Path]:
    return [make_scene(tmp_path / f"{name}.tif", width=230, height=200, seed=k).path
            for k, name in enumerate(("a", "b", "c"))]  # fmt: skip


@pytest.fixture
def slow_python(tmp_path) -> str:
    return slow_worker_python(tmp_path, 0.3)


def _cancel_in_scene_two(task) -> None:
    """Cancel once the second scene is being segmented (the first one is then in the journal)."""
    deadline = time.monotonic() + 120
    while not (task.message.startswith("scene 2/3") and task.message.endswith("segmenting chips")):
        QCoreApplication.processEvents()
        time.sleep(0.02)
        assert time.monotonic() < deadline and not task.finished_called, task.message
    task.cancel()
    wait_for_task(task, timeout=60)


def test_cancel_says_what_is_kept_and_the_same_run_says_it_continued(
    three, slow_python, tmp_path, qgis_iface, clean_project
):
    output = tmp_path / "water.gpkg"
    qgis_iface.messageBar().clearWidgets()  # earlier tests' messages
    job = segment_job([str(p) for p in three], str(output), engine="water-index", preset="naip", batch_size=1)
    task = WorkerTask("Water in 3 rasters", job, python=slow_python, iface=qgis_iface)
    QgsApplication.taskManager().addTask(task)
    _cancel_in_scene_two(task)
    assert task.outcome.status == "cancelled" and task.outcome.kept == {"scenes": 1, "total": 3, "chips": 0}
    assert task.notice == "Stopped: 1 of 3 scenes are kept. Run again to continue."
    shown = plugin_messages(qgis_iface)
    assert shown[0] == task.notice
    assert not any("failed" in text.lower() or "no output was kept" in text for text in shown)
    assert Path(f"{output}.journal").exists() and not output.exists()

    again = WorkerTask("Water in 3 rasters", job, python=sys.executable, iface=qgis_iface)
    QgsApplication.taskManager().addTask(again)
    wait_for_task(again, timeout=120)
    assert again.succeeded, again.error
    assert again.notice.startswith("Continued: 1 scene was already done. 3 scenes, ")
    assert plugin_messages(qgis_iface)[0] == again.notice
    assert clean_project.layerTreeRoot().findGroup("Water in 3 rasters") is not None
    assert not Path(f"{output}.journal").exists()


def _dialog_with(three: list[Path], output: Path, qgis_iface, extra: list[Path]) -> SegmentDialog:
    d = SegmentDialog(qgis_iface)
    d.set_raster_file(str(three[0]))
    d.more_rasters.set_entries([])
    d.more_rasters.button.click()
    editor = d.more_rasters.editor
    assert editor.add_files([str(p) for p in extra]) == []
    editor.accept()
    QApplication.processEvents()
    d.engine_combo.setCurrentIndex(d.engine_combo.findData("water-index"))
    d.preset_combo.setCurrentIndex(d.preset_combo.findData("naip"))
    d.output_widget.setFilePath(str(output))
    return d


def test_the_dialog_asks_before_a_run_of_other_rasters_discards_an_interrupted_one(
    three, slow_python, tmp_path, qgis_iface, clean_project, monkeypatch
):
    output = tmp_path / "water.gpkg"
    set_configured_python(slow_python)
    first = _dialog_with(three, output, qgis_iface, three[1:])
    first.batch_spin.setValue(1)
    first.show()
    first.run()
    wait_until(lambda: first.task is not None, what="the first run")
    _cancel_in_scene_two(first.task)
    assert first.task.notice == "Stopped: 1 of 3 scenes are kept. Run again to continue."
    remembered = interrupted.remembered_job(str(output))
    assert remembered is not None and remembered[1] == "Water in 3 rasters"
    first.deleteLater()

    set_configured_python(sys.executable)
    queued: list = []
    monkeypatch.setattr(QgsApplication.taskManager(), "addTask", queued.append, raising=False)

    def ask(dialog: SegmentDialog):
        dialog.show()
        dialog.run()
        wait_until(lambda: dialog.journal_check is not None and dialog.journal_check.box is not None,
                   timeout=120, what="the interrupted-run question")  # fmt: skip
        return dialog.journal_check.box

    # Other rasters, same output: asked, and Cancel keeps the interrupted run (nothing starts).
    second = _dialog_with(three, output, qgis_iface, three[1:2])
    box = ask(second)
    assert box.text() == "An interrupted run of other rasters is in this file (1 of 3 scenes are done)."
    assert [b.text() for b in box.buttons_by_answer.values()] == ["Continue it", "Start over", "Cancel"]
    box.buttons_by_answer[interrupted.CANCEL].click()
    wait_until(lambda: second.journal_check is None, what="the answer")
    assert queued == [] and second.isVisible() and Path(f"{output}.journal").exists()
    assert "the interrupted run is kept" in " ".join(bar_texts(second.message_bar))

    # Continue it: the interrupted run's own job, under its own name.
    box = ask(second)
    box.buttons_by_answer[interrupted.CONTINUE].click()
    wait_until(lambda: queued, what="the continued run")
    (task,) = queued
    assert task.job["options"]["raster"] == [str(p) for p in three] and "restart" not in task.job["options"]
    assert task.description() == "Water in 3 rasters"
    queued.clear()

    # Start over: these choices, and the journal may go.
    third = _dialog_with(three, output, qgis_iface, three[1:2])
    box = ask(third)
    box.buttons_by_answer[interrupted.START_OVER].click()
    wait_until(lambda: queued, what="the new run")
    (task,) = queued
    assert task.job["options"]["raster"] == [str(p) for p in three[:2]]
    assert task.job["options"]["restart"] is True
    for d in (second, third):
        d.deleteLater()
    for t in queued:
        for path in t.cleanup:
            import shutil

            shutil.rmtree(path, ignore_errors=True)


def test_processing_refuses_to_discard_an_interrupted_run(three, slow_python, tmp_path, provider, qgis_iface):
    import processing

    output = tmp_path / "water.gpkg"
    job = segment_job([str(p) for p in three], str(output), engine="water-index", preset="naip", batch_size=1)
    task = WorkerTask("Water in 3 rasters", job, python=slow_python, iface=qgis_iface)
    QgsApplication.taskManager().addTask(task)
    _cancel_in_scene_two(task)
    with pytest.raises(QgsProcessingException, match="an interrupted run of other rasters is in this file"):
        processing.run(
            "paligemma:segment_water_region",
            {"INPUTS": [str(three[0])], "ENGINE": 1, "BANDS": "naip", "OUTPUT": str(output)},
        )
    assert Path(f"{output}.journal").exists()
