"""A first water map without reading the docs, in a real (headless) QGIS.

Run in the dialog: the band question for a raster that does not name its bands, the worker
check with the offer to set it up (a worker Python with a missing module), the VAE check,
old messages leaving the bar, and Overwrite replacing the old result's layers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from bare_python import python_without
from qgis.core import Qgis, QgsApplication, QgsRasterLayer, QgsSettings
from qgis.gui import QgsMessageBar
from qgis.PyQt.QtWidgets import QApplication, QDialogButtonBox, QMessageBox, QPushButton
from waiting import wait_for_task, wait_until

from paligemma_qgis.plugin import job_dialog
from paligemma_qgis.plugin.first_run import PENDING
from paligemma_qgis.plugin.messages import OURS, bar_texts, plugin_messages, push_message
from paligemma_qgis.plugin.setup_plan import SetupPlan
from paligemma_qgis.plugin.setup_tasks import Step
from paligemma_qgis.plugin.worker_env import SETTINGS_GROUP, configured_python, set_configured_python

# End to end (subprocesses, QGIS tasks, Ray, servers): `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch):
    monkeypatch.delenv("PALIGEMMA_QGIS_PYTHON", raising=False)
    QgsSettings().remove(SETTINGS_GROUP)
    yield
    QgsSettings().remove(SETTINGS_GROUP)


def _raster(scene, project) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(scene.path), "lakes", "gdal")
    assert layer.isValid()
    project.addMapLayer(layer)
    return layer


def _set(combo, value) -> None:
    combo.setCurrentIndex(combo.findData(value))


def _dialog_messages(d) -> str:
    return " | ".join(bar_texts(d.message_bar))  # each message whole (a bar item may show it cut)


# --------------------------------------------------------------------------- band roles


def test_four_bands_without_descriptions_make_the_dialog_ask(
    dlg, water_scene, clean_project, tmp_path, queued_tasks
):
    """NAIP-like R,G,B,NIR without descriptions, water index, no preset: which band is NIR?"""
    set_configured_python(sys.executable)
    layer = _raster(water_scene, clean_project)
    dlg.set_raster_layer(layer)
    _set(dlg.engine_combo, "water-index")
    dlg.output_widget.setFilePath(str(tmp_path / "w.gpkg"))
    dlg.show()
    dlg.run()
    question = dlg.band_dialog
    assert question is not None and question.isVisible() and dlg.preflight is None  # asked first
    assert set(question.combos) == {"green", "nir", "swir"}
    # The bands with their names and statistics, from the raster itself.
    table = question.table
    assert table.rowCount() == 4
    assert [table.item(r, 0).text() for r in range(4)] == ["1", "2", "3", "4"]
    stats = layer.dataProvider().bandStatistics(4)
    assert float(table.item(3, 5).text()) == pytest.approx(stats.maximumValue, rel=0.02)
    means = [float(table.item(r, 4).text()) for r in range(4)]
    assert means[3] == max(means)  # NIR is the bright band over land: what the user looks for
    ok = question.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert not ok.isEnabled() and "green" in ok.toolTip()
    question.combos["green"].setCurrentIndex(question.combos["green"].findData(2))
    question.combos["nir"].setCurrentIndex(question.combos["nir"].findData(2))
    assert not ok.isEnabled()  # one band cannot be both
    question.combos["nir"].setCurrentIndex(question.combos["nir"].findData(4))
    assert ok.isEnabled()
    started = queued_tasks
    ok.click()
    # The answer lands in the dialog's own fields and the run goes on (worker check, then task).
    assert (dlg.green_spin.value(), dlg.nir_spin.value()) == (2, 4)
    wait_until(lambda: dlg.task is not None, what="the run to start after the answer")
    options = dlg.task.job["options"]
    assert (options["green"], options["nir"]) == (2, 4) and started == [dlg.task]


def test_a_preset_in_the_question_fills_the_roles(dlg, water_scene, clean_project, tmp_path):
    dlg.set_raster_layer(_raster(water_scene, clean_project))
    _set(dlg.engine_combo, "paligemma")  # 4 bands, nothing said: which are R, G and B?
    dlg.output_widget.setFilePath(str(tmp_path / "w.gpkg"))
    dlg.run()
    question = dlg.band_dialog
    assert set(question.combos) == {"red", "green", "blue"}
    _set(question.preset_combo, "naip")
    assert question.chosen() == {"red": 1, "green": 2, "blue": 3}
    question.reject()
    assert dlg.band_dialog is None and dlg.task is None
    assert "bands the engine needs are not known" in _dialog_messages(dlg)


def test_no_question_when_the_raster_names_its_bands(dlg, clean_project, tmp_path, queued_tasks):
    from synthetic_rasters import make_scene

    scene = make_scene(tmp_path / "described.tif", describe=True)
    set_configured_python(sys.executable)
    dlg.set_raster_layer(_raster(scene, clean_project))
    _set(dlg.engine_combo, "water-index")
    dlg.output_widget.setFilePath(str(tmp_path / "w.gpkg"))
    dlg.run()
    assert dlg.band_dialog is None and dlg.preflight is not None
    wait_until(lambda: dlg.task is not None, what="the run to start")
    assert "nir" not in dlg.task.job["options"]  # the worker reads the descriptions itself


# --------------------------------------------------------------------------- first run


def test_first_run_offers_the_setup_and_then_runs(
    dlg, water_scene, clean_project, qgis_iface, tmp_path, monkeypatch
):
    """The worker Python lacks a module (affine, part of rasterio): Run offers the setup, names
    rasterio and the download, and the run starts by itself when the setup is done."""
    bare = python_without(tmp_path, ("affine",))
    set_configured_python(bare)
    planned = []
    real_plan_setup = job_dialog.plan_setup

    def quick_plan(probe, engine, source, **kwargs):
        """The real plan (its text is what the user reads), with a step that takes no download."""
        real = real_plan_setup(probe, engine, source, venv_dir=tmp_path / "venv", **kwargs)
        planned.append((probe, engine, source, real))
        step = Step("Install the geospatial packages", [sys.executable, "-c", "print('installed')"])
        return SetupPlan(python=sys.executable, steps=[step], create_venv=real.create_venv, parts=real.parts)

    monkeypatch.setattr(job_dialog, "plan_setup", quick_plan)
    dlg.set_raster_layer(_raster(water_scene, clean_project))
    _set(dlg.engine_combo, "water-index")
    _set(dlg.preset_combo, "naip")
    output = tmp_path / "water.gpkg"
    dlg.output_widget.setFilePath(str(output))
    dlg.show()
    dlg.run()
    wait_until(lambda: dlg.setup_box is not None, what="the setup question")
    (probe, engine, source, real) = planned[0]
    assert probe["missing"]["geo"] == ["rasterio"] and engine == "water-index" and source == "settings"
    assert [s.title for s in real.steps] == [
        "Create the worker environment",
        "Install the geospatial packages",
    ]
    assert not any("torch" in " ".join(s.command) for s in real.steps)  # the water index needs no torch
    box = dlg.setup_box
    assert isinstance(box, QMessageBox) and box.isVisible()
    text = box.informativeText()
    assert "lacks rasterio (needed by every engine)" in text and "affine" not in text
    assert "100 MB" in text and str(tmp_path / "venv") in text
    assert f"instead of {bare}" in text  # it says the worker Python changes
    box.button(QMessageBox.StandardButton.Yes).click()
    setup = dlg.task
    assert setup is not None and setup in PENDING and not dlg.isVisible()
    wait_for_task(setup)
    assert setup.succeeded and configured_python() == sys.executable
    run = setup.followed_by
    assert run is not None and run.python == sys.executable
    wait_for_task(run)
    assert run.succeeded, run.error
    assert output.is_file() and clean_project.layerTreeRoot().findGroup("Water in lakes") is not None


def test_not_now_leaves_the_dialog_open_and_says_how(dlg, water_scene, clean_project, tmp_path):
    set_configured_python(python_without(tmp_path, ("rasterio", "affine")))
    dlg.set_raster_layer(_raster(water_scene, clean_project))
    _set(dlg.preset_combo, "naip")
    dlg.output_widget.setFilePath(str(tmp_path / "w.gpkg"))
    dlg.show()
    dlg.run()
    wait_until(lambda: dlg.setup_box is not None, what="the setup question")
    dlg.setup_box.button(QMessageBox.StandardButton.No).click()
    QApplication.processEvents()
    assert dlg.task is None and dlg.isVisible()
    assert "The worker is not set up yet" in _dialog_messages(dlg)


def test_missing_vae_is_said_in_the_dialog_before_the_run(
    dlg, water_scene, clean_project, tmp_path, monkeypatch
):
    monkeypatch.delenv("PALIGEMMA_QGIS_VAE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no vae-oid.npz downloaded there
    set_configured_python(sys.executable)
    dlg.set_raster_layer(_raster(water_scene, clean_project))
    _set(dlg.engine_combo, "paligemma")
    _set(dlg.preset_combo, "naip")
    dlg.output_widget.setFilePath(str(tmp_path / "w.gpkg"))
    dlg.show()
    dlg.run()
    wait_until(lambda: dlg.preflight is None, what="the worker check")
    text = _dialog_messages(dlg)
    assert "VAE file: vae-oid.npz" in text and "--vae" not in text
    assert dlg.task is None and dlg.isVisible() and dlg.vae_widget.download_button.isVisible()
    # The fix is a button on the message itself: it starts the same download as the field's.
    (item,) = dlg.message_bar.items()
    (button,) = [b for b in item.findChildren(QPushButton) if b.text() == "Download"]
    started = []
    monkeypatch.setattr(dlg.vae_widget, "download", lambda: started.append(True))
    dlg.show_errors(["x"], buttons=[("Download", dlg.vae_widget.download)])  # bound now, as the dialog does
    (item,) = dlg.message_bar.items()
    [b for b in item.findChildren(QPushButton) if b.text() == "Download"][0].click()
    assert started == [True] and button is not None


# --------------------------------------------------------------------------- messages and layers


def _run_task(job_output: Path, scene, qgis_iface, overwrite: bool = False):
    from paligemma_qgis.plugin.options import segment_job
    from paligemma_qgis.plugin.task import WorkerTask

    job = segment_job(
        str(scene.path), str(job_output), engine="water-index", preset="naip", overwrite=overwrite
    )
    task = WorkerTask("Water in lakes", job, python=sys.executable, group_name="lakes", iface=qgis_iface)
    QgsApplication.taskManager().addTask(task)
    wait_for_task(task)
    assert task.succeeded, task.error
    return task


def test_a_new_run_clears_old_messages_and_success_stays(
    dlg, water_scene, clean_project, qgis_iface, tmp_path
):
    bar = qgis_iface.messageBar()
    push_message(qgis_iface, "Water in lakes failed. an old failure", Qgis.MessageLevel.Critical)
    bar.pushWidget(QgsMessageBar.createMessage("Other plugin", "not ours"), Qgis.MessageLevel.Warning, 0)
    assert "Water in lakes failed. an old failure" in plugin_messages(qgis_iface)
    set_configured_python(sys.executable)
    dlg.set_raster_layer(_raster(water_scene, clean_project))
    _set(dlg.preset_combo, "naip")
    dlg.output_widget.setFilePath(str(tmp_path / "w.gpkg"))
    dlg.run()
    wait_until(lambda: dlg.task is not None, what="the run to start")
    assert plugin_messages(qgis_iface) == []  # the old error left with the new run ...
    assert any(item.text() == "not ours" for item in bar.items())  # ... another plugin's did not
    wait_for_task(dlg.task)
    (success,) = [item for item in bar.items() if item.property(OURS)]
    assert "water polygons" in success.text()
    assert success.duration() == 0  # stays readable: no timeout that would bring an old one back


def test_overwrite_replaces_the_old_layers_in_place(water_scene, clean_project, qgis_iface, tmp_path):
    output = tmp_path / "water.gpkg"
    first = _run_task(output, water_scene, qgis_iface)
    root = clean_project.layerTreeRoot()
    other = root.insertGroup(0, "my other layers")
    old_ids = {layer.id() for layer in first.layers}
    second = _run_task(output, water_scene, qgis_iface, overwrite=True)
    groups = [child for child in root.children() if child.name() == "lakes"]
    assert len(groups) == 1  # no second group of the same name
    group = groups[0]
    assert [node.layer().name() for node in group.findLayers()] == ["water", "chips"]
    assert {node.layer().id() for node in group.findLayers()} == {layer.id() for layer in second.layers}
    assert not old_ids & set(clean_project.mapLayers())  # the old result's layers left the project
    assert root.children()[0] is other  # and the result stayed where it was
    assert all(layer.isValid() and layer.featureCount() > 0 for layer in second.layers)


def test_closing_the_dialog_during_the_worker_check_starts_nothing(dlg, water_scene, clean_project, tmp_path):
    import time

    set_configured_python(sys.executable)
    dlg.set_raster_layer(_raster(water_scene, clean_project))
    _set(dlg.preset_combo, "naip")
    dlg.output_widget.setFilePath(str(tmp_path / "w.gpkg"))
    dlg.show()
    dlg.run()
    preflight = dlg.preflight
    assert preflight is not None
    dlg.reject()  # Close while the worker Python is still being asked
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.02)
    assert dlg.task is None and dlg.preflight is None and not (tmp_path / "w.gpkg").exists()


def test_vae_download_button_runs_in_the_background(dlg, qgis_iface, tmp_path):
    """Download… next to 'VAE file' runs `weights download` in the worker Python as a task; a worker
    that cannot do it says so, and the button works again."""
    set_configured_python(python_without(tmp_path, ("platformdirs",)))
    _set(dlg.engine_combo, "paligemma")
    button = dlg.vae_widget.download_button
    task = dlg.vae_widget.download()
    assert not button.isEnabled()
    assert task.steps[0].command[2:5] == ["paligemma_qgis", "weights", "download"]
    wait_for_task(task)
    assert task.succeeded is False and "exit code" in task.error
    assert button.isEnabled()
    assert any("Download the VAE weights failed" in m for m in plugin_messages(qgis_iface))


def test_worker_setup_create_says_what_it_installs_first(qgis_iface, tmp_path):
    from paligemma_qgis.plugin.setup_check import RUNNING, SetupCheckDialog

    page = SetupCheckDialog()
    page.create_environment()  # asks QGIS's Python about this machine (GPU), in the background
    wait_until(lambda: page.question is not None, what="the create question")
    text = page.question.informativeText()
    # What the Python QGIS runs on already has is not installed again (the venv sees its packages).
    assert "geospatial packages" not in text
    # The model PaliGemma downloads on its first run is said: size, gated, its licence page, the token.
    assert "google/paligemma2-3b-mix-224 from Hugging Face (about 6 GB, once)" in text
    assert "gated" in text and "https://huggingface.co/google/paligemma2-3b-mix-224" in text
    assert "token in Worker setup" in text
    page.question.button(QMessageBox.StandardButton.No).click()
    QApplication.processEvents()
    assert page.question is None and page.task is None and not RUNNING
    page.deleteLater()
