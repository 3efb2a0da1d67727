"""Issue 21: when the water index doubts a scene's map (core's ``scenes.unsure``), the dialog's result
message and Processing's log say so in one line, with what to try. Real headless QGIS and worker."""

from __future__ import annotations

import sys

import pytest
from qgis.core import Qgis, QgsApplication, QgsProcessingFeedback
from waiting import wait_for_task

from paligemma_qgis.plugin.messages import plugin_messages
from paligemma_qgis.plugin.options import segment_job
from paligemma_qgis.plugin.run_text import unsure_text
from paligemma_qgis.plugin.task import WorkerTask

# End to end (subprocesses, QGIS tasks, Ray, servers): `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow


def test_unsure_text_in_each_front_ends_words():
    one = unsure_text([("chip", "water and land overlap in the index")], 1)
    assert one.startswith("The water index is unsure of this map (water and land overlap in the index)")
    assert "band Preset" in one and "Threshold" in one and "Area" in one and "PaliGemma" in one
    many = unsure_text([("a", "3 % bright"), ("b", "x")], 5, "processing")
    assert many.startswith(
        "The water index is unsure of 2 of 5 scenes (a: 3 % bright; 1 more in the scenes layer)"
    )
    assert "BANDS" in many and "THRESHOLD" in many and "AOI" in many and "ENGINE" in many
    assert unsure_text([], 3) == ""


@pytest.fixture
def flood_chip(shared_data):
    """Sen1Floods11's Spain chip: the water index's histogram has no valley there (docs/BENCHMARKS.md §8)."""
    path = shared_data / "rasters" / "sen1floods11_Spain_7370579_S2Hand.tif"
    if not path.is_file():
        pytest.skip("sen1floods11 chip not in the shared data")
    return path


def test_the_dialogs_result_warns_when_the_index_is_unsure(flood_chip, tmp_path, qgis_iface, clean_project):
    job = segment_job(str(flood_chip), str(tmp_path / "flood.gpkg"), engine="water-index", preset="sentinel2")
    task = WorkerTask("Water in the flood chip", job, python=sys.executable, iface=qgis_iface)
    QgsApplication.taskManager().addTask(task)
    wait_for_task(task)
    assert task.succeeded, task.error
    assert task.notice.startswith(
        "The water index is unsure of this map (water and land overlap in the index)"
    )
    (item,) = [i for i in qgis_iface.messageBar().items() if i.property("paligemma_qgis_text") == task.notice]
    assert item.level() == Qgis.MessageLevel.Warning
    assert plugin_messages(qgis_iface)[0] == task.notice


def test_processing_logs_the_warning(flood_chip, tmp_path, provider, clean_project):
    import processing

    class Feedback(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.warnings = []

        def pushWarning(self, text):  # noqa: N802 - QGIS API
            self.warnings.append(text)
            super().pushWarning(text)

    feedback = Feedback()
    processing.run("paligemma:segment_water", {"INPUT": str(flood_chip), "ENGINE": 1, "BANDS": "sentinel2",
                                               "OUTPUT": str(tmp_path / "flood.gpkg")}, feedback=feedback)  # fmt: skip
    (line,) = [w for w in feedback.warnings if "unsure" in w]
    assert line.startswith("The water index is unsure of this map") and "THRESHOLD" in line
    # A fixed threshold is what the warning suggests, and Processing takes one.
    processing.run("paligemma:segment_water", {"INPUT": str(flood_chip), "ENGINE": 1, "BANDS": "sentinel2",
                                               "THRESHOLD": 0.2, "OUTPUT": str(tmp_path / "fixed.gpkg")})  # fmt: skip
