"""Project layers the worker reads (area of interest, known water) are copied off the GUI thread.

The dialogs only take a LayerSnapshot (main thread, cheap); the WorkerTask writes it on its
own thread before the worker starts. Real headless QGIS, real GeoPackages.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest
from qgis.core import (
    QgsApplication,
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsGeometry,
    QgsRasterLayer,
    QgsRectangle,
    QgsSettings,
    QgsVectorFileWriter,
    QgsVectorLayer,
)
from waiting import wait_for_task, wait_until

from paligemma_qgis.plugin.dialog import SegmentDialog
from paligemma_qgis.plugin.export_dialog import ExportDialog, polygon_labels
from paligemma_qgis.plugin.layers import LAYER_COPIES, LayerSnapshot
from paligemma_qgis.plugin.messages import plugin_messages
from paligemma_qgis.plugin.options import segment_job
from paligemma_qgis.plugin.task import WorkerTask
from paligemma_qgis.plugin.worker_env import ENV_PYTHON, SETTINGS_GROUP


@pytest.fixture(autouse=True)
def fresh_settings():
    QgsSettings().remove(SETTINGS_GROUP)
    yield
    QgsSettings().remove(SETTINGS_GROUP)


def _polygons(rects, crs: str, name: str = "parcels", fields: str = "&field=name:string") -> QgsVectorLayer:
    """A memory polygon layer, one feature per (xmin, ymin, xmax, ymax); the one field holds n0, n1, ..."""
    layer = QgsVectorLayer(f"Polygon?crs={crs}{fields}", name, "memory")
    features = []
    for i, rect in enumerate(rects):
        feature = QgsFeature(layer.fields())
        feature.setAttributes([f"n{i}"])
        feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(*rect)))
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)[0]
    return layer


def _ids(layer: QgsVectorLayer, *names: str) -> list[int]:
    """Feature ids by name (allFeatureIds() comes in no particular order)."""
    return [f.id() for f in layer.getFeatures() if f["name"] in names]


def _write_in_thread(snapshot: LayerSnapshot, is_cancelled=None) -> tuple[str | None, str]:
    """Run ``snapshot.write`` on a plain Python thread, as a QgsTask would (not the GUI thread)."""
    result: dict = {}

    def target() -> None:
        result["thread"] = threading.current_thread().name
        result["message"] = snapshot.write(is_cancelled)

    thread = threading.Thread(target=target, name="copy-thread")
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    return result["message"], result["thread"]


def _read(path: Path, layer_name: str) -> QgsVectorLayer:
    layer = QgsVectorLayer(f"{path}|layername={layer_name}", "copy", "ogr")
    assert layer.isValid(), path
    return layer


def _side_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- the snapshot itself


def test_selection_of_a_memory_layer_is_copied_on_another_thread(clean_project, tmp_path):
    rects = [(15 + i, 45, 15.5 + i, 45.5) for i in range(5)]
    layer = _polygons(rects, "EPSG:4326")
    clean_project.addMapLayer(layer)
    layer.selectByIds(_ids(layer, "n1", "n3"))
    snapshot = LayerSnapshot(layer, tmp_path / "aoi.gpkg", "aoi", selected_only=True)
    assert not snapshot.path.exists()  # taking the snapshot writes nothing
    expected = {f["name"]: f.geometry().asWkt() for f in layer.getSelectedFeatures()}
    # What happens to the layer after the job was built does not change the copy.
    layer.selectByIds(_ids(layer, "n0"))
    clean_project.removeMapLayer(layer.id())

    message, thread = _write_in_thread(snapshot)

    assert message is None and thread == "copy-thread"
    copy = _read(snapshot.path, "aoi")
    assert copy.crs().authid() == "EPSG:4326"
    got = {f["name"]: f.geometry() for f in copy.getFeatures()}
    assert set(got) == {"n1", "n3"}
    for name, wkt in expected.items():
        assert got[name].equals(QgsGeometry.fromWkt(wkt)), (name, got[name].asWkt(), wkt)
    del copy


def _lakes_gpkg(tmp_path: Path) -> QgsVectorLayer:
    """A file-backed GeoPackage layer of 5 squares in EPSG:32633 (with its own 'fid' column)."""
    source = _polygons(
        [(500_000 + i * 1000, 4_995_000, 500_500 + i * 1000, 4_995_500) for i in range(5)], "EPSG:32633"
    )
    gpkg = tmp_path / "lakes.gpkg"
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName, options.layerName = "GPKG", "lakes"
    error = QgsVectorFileWriter.writeAsVectorFormatV3(
        source, str(gpkg), QgsCoordinateTransformContext(), options
    )
    assert error[0] == QgsVectorFileWriter.NoError, error
    layer = QgsVectorLayer(f"{gpkg}|layername=lakes", "lakes on disk", "ogr")
    assert layer.isValid() and "fid" in layer.fields().names()
    return layer


def test_filtered_file_layer_copies_only_the_filtered_features(clean_project, tmp_path):
    layer = _lakes_gpkg(tmp_path)
    clean_project.addMapLayer(layer)
    temp = tmp_path / "temp"
    temp.mkdir()

    # Unfiltered and whole: read in place, nothing to copy (the fast path).
    assert polygon_labels(layer, False, temp) == (str(tmp_path / "lakes.gpkg"), "lakes", None)

    assert layer.setSubsetString("name IN ('n0', 'n2', 'n4')")
    labels, label_layer, snapshot = polygon_labels(layer, False, temp)
    assert (labels, label_layer) == (str(temp / "labels.gpkg"), "labels")
    assert not (temp / "labels.gpkg").exists()  # only a pending copy so far

    message, _ = _write_in_thread(snapshot)

    assert message is None
    copy = _read(temp / "labels.gpkg", "labels")
    assert sorted(f["name"] for f in copy.getFeatures()) == ["n0", "n2", "n4"]
    assert copy.crs().authid() == "EPSG:32633"
    del copy


def test_a_text_fid_column_does_not_stop_the_copy(clean_project, tmp_path):
    """A 'fid' attribute would become the GeoPackage key; a text or repeated one must still copy."""
    layer = _polygons([(0, 0, 1, 1), (2, 0, 3, 1)], "EPSG:32633", fields="&field=fid:string")
    layer.dataProvider().changeAttributeValues({fid: {0: "same"} for fid in layer.allFeatureIds()})
    snapshot = LayerSnapshot(layer, tmp_path / "labels.gpkg", "labels")

    message, _ = _write_in_thread(snapshot)

    assert message is None
    copy = _read(snapshot.path, "labels")
    assert copy.featureCount() == 2 and [f["fid"] for f in copy.getFeatures()] == ["same", "same"]
    del copy


def test_cancel_during_the_copy_leaves_no_file(clean_project, tmp_path):
    layer = _polygons([(i, 0, i + 0.5, 1) for i in range(200)], "EPSG:32633")
    snapshot = LayerSnapshot(layer, tmp_path / "aoi.gpkg", "aoi")
    asked = []

    def cancel_after_50() -> bool:
        asked.append(1)
        return len(asked) > 50

    message, _ = _write_in_thread(snapshot, cancel_after_50)

    assert message is not None and "cancelled" in message
    assert len(asked) == 51  # asked before every feature, stopped at the first yes
    assert _side_files(tmp_path) == []  # no partial GeoPackage, no -wal / -shm / -journal


def test_a_failing_copy_names_the_layer_and_the_reason(clean_project, tmp_path):
    layer = _polygons([(0, 0, 1, 1)], "EPSG:32633", name="flood extent")
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    snapshot = LayerSnapshot(layer, not_a_folder / "aoi.gpkg", "aoi", what="the area of interest")

    message, _ = _write_in_thread(snapshot)

    assert message is not None
    assert message.startswith("flood extent: cannot copy the area of interest to ")
    assert "aoi.gpkg" in message and "(" in message  # the writer's reason follows in brackets
    assert "Traceback" not in message
    assert _side_files(tmp_path) == ["file.txt"]


# --------------------------------------------------------------------------- dialogs and the task


def _scene_layers(water_scene, project) -> tuple[QgsRasterLayer, QgsVectorLayer]:
    """The raster, and 3 squares in its CRS: one in the top-left corner, two far from it."""
    raster = QgsRasterLayer(str(water_scene.path), "lakes", "gdal")
    assert raster.isValid()
    ext = raster.extent()
    x0, y1 = ext.xMinimum(), ext.yMaximum()
    squares = [
        (x0 + 100, y1 - 600, x0 + 600, y1 - 100),  # top-left: inside one chip
        (ext.xMaximum() - 600, ext.yMinimum() + 100, ext.xMaximum() - 100, ext.yMinimum() + 600),
        (ext.center().x() - 250, ext.center().y() - 250, ext.center().x() + 250, ext.center().y() + 250),
    ]
    polys = _polygons(squares, raster.crs().authid(), name="study area")
    project.addMapLayers([raster, polys])
    return raster, polys


def _segment_dialog(qgis_iface, raster, polys, output: Path) -> SegmentDialog:
    dlg = SegmentDialog(qgis_iface)
    dlg.set_raster_layer(raster)
    dlg.engine_combo.setCurrentIndex(dlg.engine_combo.findData("water-index"))
    dlg.preset_combo.setCurrentIndex(dlg.preset_combo.findData("naip"))
    dlg.area_combo.setCurrentIndex(dlg.area_combo.findData("layer"))
    dlg.aoi_combo.setLayer(polys)
    dlg.selected_check.setChecked(True)
    polys.selectByIds(_ids(polys, "n0"))
    dlg.output_widget.setFilePath(str(output))
    assert dlg.validate() == []
    return dlg


@pytest.mark.slow
def test_building_the_job_writes_nothing_and_the_task_copies_first(
    water_scene, clean_project, qgis_iface, tmp_path
):
    raster, polys = _scene_layers(water_scene, clean_project)
    output = tmp_path / "water.gpkg"
    dlg = _segment_dialog(qgis_iface, raster, polys, output)
    temp = tmp_path / "temp"
    temp.mkdir()

    job = dlg.build_job(temp)

    aoi = Path(job["options"]["aoi"])
    assert aoi == temp / "aoi.gpkg" and not aoi.exists()  # nothing written on the main thread
    assert list(temp.iterdir()) == []
    assert [c.path for c in job[LAYER_COPIES]] == [aoi]
    task = WorkerTask("Water in lakes", job, python=sys.executable, group_name="lakes", iface=qgis_iface)
    assert LAYER_COPIES not in task.job and json.dumps(task.job)  # the worker gets plain JSON
    QgsApplication.taskManager().addTask(task)
    wait_for_task(task)
    dlg.deleteLater()

    assert task.succeeded, (task.error, task.outcome)
    assert task.worker_started
    copy = _read(aoi, "aoi")  # written by the task, before the worker read it
    assert copy.featureCount() == 1 and copy.crs() == raster.crs()
    del copy
    # Only the selected corner square limits the run: the chips under it, not the whole scene.
    full = segment_job(
        str(water_scene.path), str(tmp_path / "full.gpkg"), engine="water-index", preset="naip"
    )
    assert task.outcome.result["chips"] < _chips_of_a_run(full, qgis_iface)


def _chips_of_a_run(job: dict, iface) -> int:
    task = WorkerTask("Water in lakes", job, python=sys.executable, iface=iface, add_layers=False)
    QgsApplication.taskManager().addTask(task)
    wait_for_task(task)
    assert task.succeeded, (task.error, task.outcome)
    return task.outcome.result["chips"]


def test_dialog_run_leaves_the_copy_to_the_task_and_cleans_up(
    water_scene, clean_project, qgis_iface, tmp_path, monkeypatch
):
    monkeypatch.setenv(ENV_PYTHON, sys.executable)
    raster, polys = _scene_layers(water_scene, clean_project)
    dlg = _segment_dialog(qgis_iface, raster, polys, tmp_path / "water.gpkg")
    manager = QgsApplication.taskManager()
    queued: list = []
    monkeypatch.setattr(manager, "addTask", queued.append, raising=False)

    dlg.run()  # checks the worker Python in the background, then starts the task
    wait_until(lambda: dlg.task is not None, what=" | ".join(i.text() for i in dlg.message_bar.items()))
    task = dlg.task

    assert queued == [task], [i.text() for i in dlg.message_bar.items()]
    temp_dir = task.cleanup[0]
    assert temp_dir.is_dir() and list(temp_dir.iterdir()) == []  # run() copied nothing
    assert [c.path for c in task.copies] == [temp_dir / "aoi.gpkg"]
    monkeypatch.undo()
    monkeypatch.setenv(ENV_PYTHON, sys.executable)
    manager.addTask(task)
    wait_for_task(task)
    dlg.deleteLater()

    assert task.succeeded, (task.error, task.outcome)
    assert not temp_dir.exists()  # the copy went with the task's temporary folder
    assert clean_project.layerTreeRoot().findGroup("Water in lakes") is not None


def test_export_dialog_job_carries_the_labels_copy(water_scene, clean_project, qgis_iface, tmp_path):
    raster, polys = _scene_layers(water_scene, clean_project)
    polys.selectByIds(_ids(polys, "n1", "n2"))
    dlg = ExportDialog(qgis_iface)
    dlg.set_raster_layer(raster)
    dlg.polygon_combo.setLayer(polys)
    dlg.polygon_selected_check.setChecked(True)
    dlg.output_widget.setFilePath(str(tmp_path / "training"))
    assert dlg.validate() == []
    temp = tmp_path / "temp"
    temp.mkdir()

    job = dlg.build_job(temp)
    dlg.deleteLater()

    assert (job["options"]["labels"], job["options"]["label_layer"]) == (str(temp / "labels.gpkg"), "labels")
    assert list(temp.iterdir()) == []
    (snapshot,) = job[LAYER_COPIES]
    message, _ = _write_in_thread(snapshot)
    assert message is None
    copy = _read(temp / "labels.gpkg", "labels")
    assert sorted(f["name"] for f in copy.getFeatures()) == ["n1", "n2"]
    del copy


class _CancelMidCopy(WorkerTask):
    """Cancelled (a real QgsTask.cancel) while its copy is on its 20th feature."""

    asked = 0

    def isCanceled(self) -> bool:  # noqa: N802 - Qt's name
        self.asked += 1
        if self.asked == 20:
            self.cancel()
        return super().isCanceled()


def test_cancel_during_the_task_copy_stops_before_the_worker(
    water_scene, clean_project, qgis_iface, tmp_path
):
    ext = QgsRasterLayer(str(water_scene.path), "lakes", "gdal").extent()
    squares = [
        (ext.xMinimum() + i, ext.yMinimum(), ext.xMinimum() + i + 1, ext.yMinimum() + 1) for i in range(100)
    ]
    polys = _polygons(squares, "EPSG:32633")
    temp = tmp_path / "temp"
    temp.mkdir()
    output = tmp_path / "water.gpkg"
    job = segment_job(str(water_scene.path), str(output), engine="water-index", preset="naip")
    snapshot = LayerSnapshot(polys, temp / "aoi.gpkg", "aoi")
    job["options"]["aoi"] = str(snapshot.path)
    task = _CancelMidCopy("Water in lakes", job, python=sys.executable, iface=qgis_iface, copies=[snapshot])
    QgsApplication.taskManager().addTask(task)
    wait_for_task(task)

    assert task.succeeded is False and not task.worker_started
    assert task.outcome.status == "cancelled"
    assert list(temp.iterdir()) == [] and not output.exists()
    info = plugin_messages(qgis_iface)
    assert "Stopped before the run started; nothing was written." in info


def test_a_failing_task_copy_reports_the_layer_and_starts_no_worker(
    water_scene, clean_project, qgis_iface, tmp_path
):
    logged: list[str] = []

    def on_message(message, tag, level):
        logged.append(message)

    raster, polys = _scene_layers(water_scene, clean_project)
    blocker = tmp_path / "not a folder"
    blocker.write_text("x")
    output = tmp_path / "water.gpkg"
    job = segment_job(str(water_scene.path), str(output), engine="water-index", preset="naip")
    snapshot = LayerSnapshot(polys, blocker / "aoi.gpkg", "aoi", what="the area of interest")
    job["options"]["aoi"] = str(snapshot.path)
    task = WorkerTask(
        "Water in lakes", {**job, LAYER_COPIES: [snapshot]}, python=sys.executable, iface=qgis_iface
    )
    QgsApplication.messageLog().messageReceived.connect(on_message)
    try:
        QgsApplication.taskManager().addTask(task)
        wait_for_task(task)
    finally:
        QgsApplication.messageLog().messageReceived.disconnect(on_message)

    assert task.succeeded is False and not task.worker_started
    assert task.error.startswith("study area: cannot copy the area of interest to "), task.error
    assert task.outcome.returncode is None and not output.exists()
    critical = plugin_messages(qgis_iface)
    assert any("study area: cannot copy the area of interest" in m for m in critical), critical
    failed = [m for m in logged if "failed: study area" in m]
    assert failed and not any("Traceback" in m or "command:" in m for m in failed), failed
