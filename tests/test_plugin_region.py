"""Many rasters in one run from QGIS: the dialog's More rasters, Processing's region algorithm,
Worker setup's Ray address, and the region run's errors in the front ends' words.

Real headless QGIS, the real worker process (this test's Python) with the water-index engine,
on small synthetic scenes in two CRSs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from bare_python import python_without
from qgis.core import QgsApplication, QgsRasterLayer, QgsSettings, QgsVectorLayer
from qgis.PyQt.QtWidgets import QApplication, QMessageBox, QPushButton
from synthetic_rasters import make_scene
from waiting import wait_for_task, wait_until

from paligemma_qgis.plugin import job_dialog, ray_trust
from paligemma_qgis.plugin.algorithms import SegmentWaterAlgorithm
from paligemma_qgis.plugin.dialog import SegmentDialog
from paligemma_qgis.plugin.error_text import SEGMENT_DIALOG, translate
from paligemma_qgis.plugin.messages import bar_texts, item_text, message_bar, plugin_messages
from paligemma_qgis.plugin.more_rasters import MoreRastersDialog, describe
from paligemma_qgis.plugin.options import segment_job
from paligemma_qgis.plugin.region_algorithm import SegmentWaterRegionAlgorithm
from paligemma_qgis.plugin.runner import run_worker
from paligemma_qgis.plugin.setup_plan import SetupPlan
from paligemma_qgis.plugin.setup_tasks import Step
from paligemma_qgis.plugin.task import WorkerTask
from paligemma_qgis.plugin.worker_env import (
    ENV_PYTHON,
    SETTINGS_GROUP,
    ray_address,
    set_configured_python,
    set_ray_address,
    worker_command,
    worker_env,
)

# End to end (subprocesses, QGIS tasks, Ray, servers): `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch):
    monkeypatch.delenv(ENV_PYTHON, raising=False)
    QgsSettings().remove(SETTINGS_GROUP)
    yield
    QgsSettings().remove(SETTINGS_GROUP)


@pytest.fixture
def region(tmp_path):
    """Two scenes as project layers (UTM and EPSG:4326) and a folder: two more scenes (one in
    each CRS) and a .tif that is not a raster (a scene that fails)."""
    folder = tmp_path / "tiles"
    folder.mkdir()
    scenes = {
        "lakes_a": make_scene(tmp_path / "lakes_a.tif", crs="EPSG:32633", width=300, height=250, seed=1),
        "lakes_b": make_scene(tmp_path / "lakes_b.tif", crs="EPSG:4326", width=280, height=240, seed=2),
        "tile_c": make_scene(folder / "tile_c.tif", crs="EPSG:32633", width=260, height=250, seed=3),
        "tile_d": make_scene(folder / "tile_d.tif", crs="EPSG:4326", width=250, height=230, seed=4),
    }
    (folder / "broken.tif").write_text("not a raster")
    return scenes, folder


def _set(combo, value) -> None:
    combo.setCurrentIndex(combo.findData(value))


def _layer(scene, project) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(scene.path), scene.path.stem, "gdal")
    assert layer.isValid()
    project.addMapLayer(layer)
    return layer


def _dialog_messages(d) -> str:
    return " | ".join(bar_texts(d.message_bar))  # each message whole (a bar item may show it cut)


def _editor_with(d: SegmentDialog) -> MoreRastersDialog:
    """Open the More rasters list the way the button does."""
    d.more_rasters.button.click()
    editor = d.more_rasters.editor
    assert isinstance(editor, MoreRastersDialog) and editor.isVisible()
    return editor


# --------------------------------------------------------------------------- the dialog


def test_more_rasters_and_a_folder_map_a_region_into_one_group(
    dlg, region, clean_project, qgis_iface, tmp_path
):
    """Main raster + another layer + a folder: one job with every input, one group "Water in 4
    scenes" holding water, scenes and chips, and a warning that names the scene that failed."""
    scenes, folder = region
    main = _layer(scenes["lakes_a"], clean_project)
    other = _layer(scenes["lakes_b"], clean_project)
    set_configured_python(sys.executable)
    dlg.set_raster_layer(main)
    _set(dlg.engine_combo, "water-index")
    _set(dlg.preset_combo, "naip")
    output = tmp_path / "region.gpkg"
    dlg.output_widget.setFilePath(str(output))
    assert dlg.more_rasters.label.text() == "none: only the raster above"
    editor = _editor_with(dlg)
    assert editor.add_layers([other]) == []
    # The folder's rasters are checked when it is added: the one that will fail is named now.
    assert editor.add_folder(str(folder)) == ["tiles: broken.tif: GDAL cannot open it as a raster"]
    assert editor.add_folder(str(tmp_path / "no_such_folder")) == [
        f"{tmp_path / 'no_such_folder'}: folder not found"
    ]
    assert editor.problem_label.isVisibleTo(editor)
    editor.accept()
    QApplication.processEvents()
    assert dlg.more_rasters.label.text() == "+2: 1 layer, 1 folder · ⚠ 1 with problems"
    assert dlg.dissolve_check.isEnabled() and dlg.fail_fast_check.isEnabled()
    assert dlg.validate() == []

    job = dlg.build_job(tmp_path / "job")
    options = job["options"]
    assert options["raster"] == [str(scenes["lakes_a"].path), str(scenes["lakes_b"].path), str(folder)]
    assert "executor" not in options and "fail_fast" not in options  # no Ray address: runs in the worker
    description, group = dlg.task_names()
    assert description == "Water in 2 rasters and tiles" and group is None  # a folder: counted by the worker

    dlg.show()
    dlg.run()
    wait_until(lambda: dlg.task is not None, what=_dialog_messages(dlg))
    task = dlg.task
    wait_for_task(task, timeout=180)
    assert task.succeeded, (task.error, task.outcome)
    summary = task.outcome.result
    assert (summary["scenes"], summary["failed"]) == (5, 1)
    group = clean_project.layerTreeRoot().findGroup("Water in 5 rasters (1 failed)")
    assert group is not None
    nodes = {node.layer().name(): node for node in group.findLayers()}
    assert [node.layer().name() for node in group.findLayers()] == ["water", "scenes", "chips"]
    assert nodes["water"].isVisible() and nodes["scenes"].isVisible() and not nodes["chips"].isVisible()
    water = nodes["water"].layer()
    assert {f["scene"] for f in water.getFeatures()} == {"lakes_a", "lakes_b", "tile_c", "tile_d"}
    scenes_layer = nodes["scenes"].layer()
    status = {f["scene"]: f["status"] for f in scenes_layer.getFeatures()}
    assert status == {
        "lakes_a": "done",
        "lakes_b": "done",
        "tile_c": "done",
        "tile_d": "done",
        "broken": "failed",
    }
    assert scenes_layer.renderer().type() == "categorizedSymbol"  # failed scenes drawn apart
    # The warning names the failed scene, in the dialog's words, and the layers are there anyway.
    (warning,) = [m for m in plugin_messages(qgis_iface) if "failed" in m]
    assert "1 scene failed, see the scenes layer: broken — cannot open as a raster" in warning
    assert "5 scenes" in warning and "--" not in warning
    titles = [i.title() for i in message_bar(qgis_iface).items() if "failed" in item_text(i)]
    assert titles == ["Water in 5 rasters (1 failed)"]  # titled as its group is named
    assert str(folder) not in warning  # the scene's name, not its path (Details… has the whole error)


def test_a_folder_alone_is_a_region_run(dlg, region, clean_project, qgis_iface, tmp_path):
    """No raster chosen above, only a folder under More rasters: the folder is the run's input,
    and the group is named from the scenes the worker found in it."""
    _, folder = region
    set_configured_python(sys.executable)
    dlg.set_raster_layer(None)
    _set(dlg.preset_combo, "naip")
    dlg.output_widget.setFilePath(str(tmp_path / "tiles.gpkg"))
    assert "Choose an input raster" in " ".join(dlg.validate())
    editor = _editor_with(dlg)
    editor.add_folder(str(folder))
    editor.accept()
    QApplication.processEvents()
    assert dlg.validate() == []
    assert dlg.build_job(tmp_path / "job")["options"]["raster"] == str(folder)
    assert dlg.task_names() == ("Water in tiles", None)
    dlg.run()
    wait_until(lambda: dlg.task is not None, what=_dialog_messages(dlg))
    wait_for_task(dlg.task, timeout=180)
    assert dlg.task.succeeded, dlg.task.error
    group = clean_project.layerTreeRoot().findGroup("Water in 3 rasters (1 failed)")
    assert group is not None and [n.layer().name() for n in group.findLayers()] == [
        "water",
        "scenes",
        "chips",
    ]


def test_region_dialog_checks_bands_per_layer_and_remembers_the_list(
    qgis_iface, region, clean_project, tmp_path
):
    scenes, folder = region
    main = _layer(scenes["lakes_a"], clean_project)
    three = make_scene(tmp_path / "three.tif", width=200, height=200)
    import rasterio

    with rasterio.open(three.path) as src:  # a 3-band copy: NIR 4 does not exist there
        profile = {**src.profile, "count": 3}
        data = src.read([1, 2, 3])
    rgb = tmp_path / "rgb_only.tif"
    with rasterio.open(rgb, "w", **profile) as dst:
        dst.write(data)
    d = SegmentDialog(qgis_iface)
    d.set_raster_layer(main)
    _set(d.engine_combo, "water-index")
    d.nir_spin.setValue(4)
    d.output_widget.setFilePath(str(tmp_path / "w.gpkg"))
    editor = _editor_with(d)
    assert editor.add_files([str(rgb), str(folder / "broken.tif")]) == [
        f"{folder / 'broken.tif'}: GDAL cannot open this file as a raster"
    ]
    editor.add_folder(str(folder))
    editor.accept()
    QApplication.processEvents()
    assert "NIR band 4: rgb_only has bands 1 to 3." in d.validate()
    d.save_settings()
    d.deleteLater()

    again = SegmentDialog(qgis_iface)
    assert [e.path for e in again.more_rasters.entries()] == [str(rgb), str(folder)]
    assert again.more_rasters.entries()[0].bands == 3  # read when added, not again at Run
    rgb.unlink()
    assert f"More rasters: {rgb} is gone." in again.validate()
    editor = _editor_with(again)
    editor.list.item(0).setSelected(True)
    editor.remove_selected()
    editor.accept()
    QApplication.processEvents()
    assert again.more_rasters.label.text() == "+1: 1 folder · ⚠ 1 with problems"
    again.deleteLater()


def test_dialog_with_more_rasters_fits_a_768_pixel_screen(qgis_iface, region, clean_project):
    """The More rasters row keeps the dialog at most 740 px high at the default font, with every
    row of the PaliGemma engine, the polygon-layer row and a wrapped warning shown."""
    scenes, folder = region
    d = SegmentDialog(qgis_iface)
    d.set_raster_layer(_layer(scenes["lakes_a"], clean_project))
    editor = _editor_with(d)
    editor.add_folder(str(folder))
    editor.accept()
    _set(d.engine_combo, "paligemma")
    _set(d.area_combo, "layer")
    d.show()
    d.show_errors(["More rasters: a message long enough to wrap in the dialog's message bar " * 2])
    for _ in range(5):
        QApplication.processEvents()
    d.fit()
    QApplication.processEvents()
    assert d.more_rasters.isVisible() and d.overwrite_check.isVisible()
    assert d.height() <= 740, d.height()
    assert d.height() >= d.minimumSizeHint().height() and d.width() <= 1366
    d.close()
    d.deleteLater()


def test_describe_counts_what_the_list_holds():
    from paligemma_qgis.plugin.more_rasters import RasterEntry

    entries = [RasterEntry("layer", "/a.tif", "a", 4), RasterEntry("file", "/b.tif", "b", 4)]
    assert describe(entries + [RasterEntry("file", "/c.txt", "c.txt")]) == "+3: 1 layer, 2 files"
    assert RasterEntry("file", "/c.txt", "c.txt").expands and not entries[1].expands
    assert not RasterEntry("layer", "/vsis3/bucket/x", "x", 4).expands


# --------------------------------------------------------------------------- Worker setup: Ray


def test_ray_address_from_worker_setup_reaches_the_job(dlg, region, clean_project, tmp_path, monkeypatch):
    """Typed in Worker setup and saved: the dialog's job and Processing's default carry it."""
    from paligemma_qgis.plugin.provider import algorithms
    from paligemma_qgis.plugin.setup_check import SetupCheckDialog

    page = SetupCheckDialog()
    page.ray_edit.setText("gpu server")
    page.save()
    assert page.result is None and "Ray address 'gpu server'" in page.report.toPlainText()
    assert ray_address() == ""  # not saved
    page.ray_edit.setText("ray://gpu.example.org:10001")
    page.save()  # a cluster runs the plugin's code: confirmed once, where the address is chosen
    assert page.question is not None and "trust it as you would trust code" in page.question.text()
    page.question.button(QMessageBox.StandardButton.Yes).click()
    QApplication.processEvents()
    assert ray_address() == "ray://gpu.example.org:10001"
    page.deleteLater()

    scenes, _ = region
    dlg.set_raster_layer(_layer(scenes["lakes_a"], clean_project))
    _set(dlg.preset_combo, "naip")
    dlg.output_widget.setFilePath(str(tmp_path / "w.gpkg"))
    options = dlg.build_job(tmp_path)["options"]
    assert (options["executor"], options["ray_address"]) == ("ray", "ray://gpu.example.org:10001")
    assert dlg.probe_executor() == "ray"  # the worker check asks for Ray too
    for name in ("segment_water", "segment_water_region"):
        (alg,) = [a for a in algorithms() if a.name() == name]
        alg.initAlgorithm()
        assert alg.parameterDefinition("RAY_ADDRESS").defaultValue() == "ray://gpu.example.org:10001"

    set_ray_address("local")  # a Ray the worker starts on this computer (its GPUs): no address
    options = dlg.build_job(tmp_path)["options"]
    assert options["executor"] == "ray" and "ray_address" not in options
    set_ray_address("")
    assert "executor" not in dlg.build_job(tmp_path)["options"]


def test_worker_check_says_ray_is_missing_and_copies_the_address(tmp_path):
    from paligemma_qgis.plugin.check_report import render_check, run_check
    from paligemma_qgis.plugin.diagnostics import diagnostics_text

    bare = python_without(tmp_path, ("ray",))
    check = run_check(python=bare, executor="ray")
    assert check["packages"]["ray"] is None and check["ready"]["water-index"] is True
    (fix,) = [f for f in check["fixes"] if "ray" in f["problem"]]
    assert "Ray address in Worker setup" in fix["problem"]
    assert fix["command"].endswith('locks/region.txt"') and "--require-hashes" in fix["command"]  # Ray's lock
    html = render_check(check, "ray://gpu:10001")
    assert "missing: needed for ray://gpu:10001" in html and "Ray (ray://gpu:10001)" in html
    assert "not installed (only to send the work to a Ray cluster)" in render_check(check)
    text = diagnostics_text(check, bare, "settings", "ray://gpu:10001")
    assert "Ray address: ray://gpu:10001" in text and "Ray: not installed" in text
    # Worker setup's own check, with the address typed there: the report says Ray is needed.
    from paligemma_qgis.plugin.setup_check import SetupCheckDialog

    page = SetupCheckDialog()
    page.python_widget.setFilePath(bare)
    page.ray_edit.setText("ray://gpu:10001")
    page.start_check()
    wait_until(lambda: page.result is not None, timeout=120, what="the worker check")
    report = page.report.toPlainText()
    assert "missing: needed for ray://gpu:10001" in report and "Ray address in Worker setup" in report
    page.deleteLater()
    installed = run_check(python=sys.executable)
    import ray

    assert f"Ray: {ray.__version__}" in diagnostics_text(installed, sys.executable, "settings")
    assert "Ray address: none (runs on this computer)" in diagnostics_text(installed, sys.executable, "x")
    assert not [f for f in installed["fixes"] if "ray" in f["problem"]]


def test_run_with_a_ray_address_offers_to_install_ray(
    dlg, region, clean_project, tmp_path, monkeypatch, queued_tasks
):
    """The worker Python lacks ray and Worker setup holds a Ray address: Run's worker check says
    so and offers the setup, whose plan installs Ray; then the run starts with the Ray job."""
    scenes, _ = region
    set_configured_python(python_without(tmp_path, ("ray",)))
    set_ray_address("ray://gpu.example.org:10001")
    ray_trust.remember("ray://gpu.example.org:10001", True)  # asked once (test_plugin_trust.py)
    planned = []
    real_plan_setup = job_dialog.plan_setup

    def quick_plan(probe, engine, source, **kwargs):
        real = real_plan_setup(probe, engine, source, venv_dir=tmp_path / "venv", **kwargs)
        planned.append((probe, real))
        step = Step("Install Ray", [sys.executable, "-c", "print('installed')"])
        return SetupPlan(python=sys.executable, steps=[step], create_venv=real.create_venv, parts=real.parts)

    monkeypatch.setattr(job_dialog, "plan_setup", quick_plan)
    started = queued_tasks
    dlg.set_raster_layer(_layer(scenes["lakes_a"], clean_project))
    _set(dlg.preset_combo, "naip")
    dlg.output_widget.setFilePath(str(tmp_path / "w.gpkg"))
    dlg.show()
    dlg.run()
    wait_until(lambda: dlg.setup_box is not None, what="the setup question")
    probe, real = planned[0]
    assert probe["needs"] == ["geo", "region"] and probe["missing"]["region"] == ["ray"]
    assert "Install Ray" in [s.title for s in real.steps]
    (ray_step,) = [s for s in real.steps if s.title == "Install Ray"]  # Ray's hashed lock
    assert ray_step.command[-4:-1] == ["--require-hashes", "--no-deps", "-r"]
    assert Path(ray_step.command[-1]).parts[-2:] == ("locks", "region.txt")
    text = dlg.setup_box.informativeText()
    assert "lacks ray (needed to send the work to the Ray address in Worker setup)" in text
    assert "Ray, to send the work to the Ray cluster named in Worker setup: 90 MB" in text
    dlg.setup_box.button(QMessageBox.StandardButton.Yes).click()
    setup = dlg.task
    setup.run()  # the task manager is stubbed: run the setup here, then its end on this thread
    setup.finished(True)
    run = setup.followed_by
    assert run is not None and run.python == sys.executable and started == [setup, run]
    assert (run.job["options"]["executor"], run.job["options"]["ray_address"]) == (
        "ray",
        "ray://gpu.example.org:10001",
    )


def test_a_region_run_sent_to_ray_comes_back_as_layers(dlg, region, clean_project, tmp_path):
    """Ray address "local" (a Ray the worker starts, as on a GPU workstation): the run goes through
    Ray's executor and its layers come back into QGIS as from a run here, equal polygons."""
    import pyogrio

    scenes, _ = region
    set_configured_python(sys.executable)
    set_ray_address("local")
    dlg.set_raster_layer(_layer(scenes["lakes_a"], clean_project))
    editor = _editor_with(dlg)
    editor.add_files([str(scenes["lakes_b"].path)])
    editor.accept()
    _set(dlg.preset_combo, "naip")
    output = tmp_path / "on_ray.gpkg"
    dlg.output_widget.setFilePath(str(output))
    assert dlg.task_names() == ("Water in 2 rasters", None)
    dlg.run()
    wait_until(lambda: dlg.task is not None, what=_dialog_messages(dlg))
    wait_for_task(dlg.task, timeout=300)
    assert dlg.task.succeeded, (dlg.task.error, dlg.task.outcome)
    run = pyogrio.read_dataframe(output, layer="run")
    assert dict(zip(run["key"], run["value"], strict=True))["executor"] == "ray"
    group = clean_project.layerTreeRoot().findGroup("Water in 2 rasters")
    assert [n.layer().name() for n in group.findLayers()] == ["water", "scenes", "chips"]
    here = tmp_path / "here.gpkg"
    job = segment_job(
        [str(scenes["lakes_a"].path), str(scenes["lakes_b"].path)],
        str(here),
        engine="water-index",
        preset="naip",
    )
    assert run_worker(job, worker_command(python=sys.executable), env=worker_env()).ok
    ray_water, local_water = (pyogrio.read_dataframe(p, layer="water") for p in (output, here))
    assert len(ray_water) == len(local_water) > 0
    assert all(a.equals_exact(b, 0) for a, b in zip(ray_water.geometry, local_water.geometry, strict=True))


# --------------------------------------------------------------------------- Processing


def test_processing_region_algorithm_end_to_end(provider, region, clean_project, tmp_path):
    """processing.run: layers and a folder in, one GeoPackage out; runAndLoadResults: one group."""
    import processing

    scenes, folder = region
    layer_b = _layer(scenes["lakes_b"], clean_project)
    output = tmp_path / "region.gpkg"
    result = processing.run(
        "paligemma:segment_water_region",
        {
            "INPUTS": [str(scenes["lakes_a"].path), layer_b],
            "FOLDER": str(folder),
            "ENGINE": 1,
            "BANDS": "naip",
            "DISSOLVE": True,
            "OUTPUT": str(output),
        },
    )
    summary = json.loads(result["SUMMARY"])
    assert (result["SCENES"], result["FAILED"]) == (5, 1) == (summary["scenes"], summary["failed"])
    assert "broken" in summary["details"]["failed_scenes"]
    water = QgsVectorLayer(result["WATER_LAYER"], "water", "ogr")
    scenes_layer = QgsVectorLayer(result["SCENES_LAYER"], "scenes", "ogr")
    assert water.isValid() and water.featureCount() == summary["polygons"]
    assert {f["scene"] for f in water.getFeatures()} == {"lakes_a", "lakes_b", "tile_c", "tile_d"}
    assert scenes_layer.featureCount() == 5
    assert water.crs().authid() == "EPSG:4326"  # two CRSs: the shared one is WGS 84
    del water, scenes_layer

    loaded = processing.runAndLoadResults(
        "paligemma:segment_water_region",
        {"INPUTS": [str(scenes["lakes_a"].path)], "FOLDER": str(folder), "ENGINE": 1, "BANDS": "naip",
         "DISSOLVE": True, "OUTPUT": str(tmp_path / "loaded.gpkg")},
    )  # fmt: skip
    assert loaded["SCENES"] == 4
    group = clean_project.layerTreeRoot().findGroup("Water in 4 rasters (1 failed)")
    assert group is not None
    nodes = [(n.layer().name(), n.isVisible()) for n in group.findLayers()]
    assert nodes == [("water_dissolved", True), ("water", False), ("scenes", True), ("chips", False)]
    fill = group.findLayers()[0].layer().renderer().symbol().color()
    assert fill.blue() > fill.red()  # the plugin's blue, not Processing's random colour
    # A second run of the same name gets a group of its own: runs never mix.
    processing.runAndLoadResults(
        "paligemma:segment_water_region",
        {"INPUTS": [str(scenes["lakes_a"].path)], "FOLDER": str(folder), "ENGINE": 1, "BANDS": "naip",
         "OUTPUT": str(tmp_path / "again.gpkg")},
    )  # fmt: skip
    root = clean_project.layerTreeRoot()
    groups = [c for c in root.children() if c.name() == "Water in 4 rasters (1 failed)"]
    assert len(groups) == 2 and [n.layer().name() for n in groups[0].findLayers()] == [
        "water",
        "scenes",
        "chips",
    ]
    assert len(groups[1].findLayers()) == 4


def test_processing_region_needs_inputs_and_says_failures_in_its_words(provider, region, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    scenes, folder = region
    with pytest.raises(QgsProcessingException, match="INPUTS, FOLDER, or both"):
        processing.run("paligemma:segment_water_region", {"ENGINE": 1, "OUTPUT": str(tmp_path / "w.gpkg")})
    broken = tmp_path / "broken_only"
    broken.mkdir()
    (broken / "a.tif").write_text("not a raster")
    (broken / "b.tif").write_text("not a raster either")
    with pytest.raises(QgsProcessingException, match=r"Every scene failed \(2\), so nothing was written"):
        processing.run(
            "paligemma:segment_water_region",
            {"FOLDER": str(broken), "ENGINE": 1, "BANDS": "naip", "OUTPUT": str(tmp_path / "w.gpkg")},
        )
    assert not (tmp_path / "w.gpkg").exists()


# --------------------------------------------------------------------------- errors, in words


def _fail(job: dict, python: str = sys.executable):
    outcome = run_worker(job, worker_command(python=python), env=worker_env())
    assert outcome.status == "error", outcome
    return outcome


def test_another_run_writing_the_output(region, tmp_path):
    """A second QGIS (or a terminal) is writing the GeoPackage: wait, or choose another; and its
    lock stays (the failed run removes nothing of the other run's)."""
    from paligemma_qgis.core.run.atomic import claim_output

    scenes, _ = region
    output = tmp_path / "w.gpkg"
    job = segment_job(str(scenes["lakes_a"].path), str(output), engine="water-index", preset="naip")
    with claim_output(output):
        outcome = _fail(job)
        assert Path(f"{output}.lock").exists()
    assert outcome.error_info["code"] == "output_busy"
    dialog = translate(outcome.message, outcome.error_info, job["options"], SEGMENT_DIALOG)
    assert dialog.startswith(f"GeoPackage: another run is writing {output} (process ")
    assert dialog.endswith("wait for it to finish, or choose another GeoPackage.")
    assert "Overwrite" not in dialog  # not an old file: ticking Overwrite would not help
    processing = translate(outcome.message, outcome.error_info, job["options"], SegmentWaterAlgorithm.FRONT)
    assert processing.startswith("OUTPUT: another run is writing") and "choose another OUTPUT" in processing


def test_every_scene_failed(region, tmp_path):
    scenes, folder = region
    job = segment_job(
        [str(folder / "broken.tif"), str(scenes["lakes_a"].path)],
        str(tmp_path / "w.gpkg"),
        engine="water-index",
    )  # no preset and no band descriptions: lakes_a has no known NIR band either
    outcome = _fail(job)
    info = outcome.error_info
    assert info["code"] == "all_scenes_failed" and info["params"]["count"] == 2
    assert set(info["params"]["failed_scenes"]) == {"broken", "lakes_a"}
    dialog = translate(outcome.message, info, job["options"], SEGMENT_DIALOG)
    assert dialog.startswith(
        f"Every scene failed (2), so nothing was written. The first: {folder / 'broken.tif'}: cannot open as a raster"
    )
    assert dialog.endswith("Each scene's error is in the log panel.") and "--" not in dialog
    # The same band problem in every scene is said as the band field says it.
    job = segment_job([str(scenes["lakes_a"].path), str(scenes["lakes_b"].path)], str(tmp_path / "w.gpkg"))
    job["options"]["engine"] = "water-index"
    info = _fail(job).error_info
    dialog = translate("", info, job["options"], SEGMENT_DIALOG)
    assert "The first, lakes_a: Green / NIR / SWIR band: the water index needs a NIR or SWIR band" in dialog
    processing = translate("", info, job["options"], SegmentWaterRegionAlgorithm.FRONT)
    assert (
        "or NIR (or SWIR) to its band number (Advanced parameters)" in processing and "--" not in processing
    )


def test_ray_missing_in_the_worker(region, tmp_path):
    scenes, _ = region
    job = segment_job(
        str(scenes["lakes_a"].path), str(tmp_path / "w.gpkg"), engine="water-index", preset="naip",
        ray_address="ray://gpu.example.org:10001",
    )  # fmt: skip
    outcome = _fail(job, python_without(tmp_path, ("ray",)))
    info = outcome.error_info
    assert (info["kind"], info["field"], info["code"]) == ("InputError", "ray_address", "ray_missing")
    dialog = translate(outcome.message, outcome.error_info, job["options"], SEGMENT_DIALOG)
    assert dialog.startswith("Ray address (Worker setup): the worker Python lacks ray")
    assert "Run again and answer Yes" in dialog and "clear the Ray address" in dialog
    processing = translate(
        outcome.message, outcome.error_info, job["options"], SegmentWaterRegionAlgorithm.FRONT
    )
    assert processing.startswith("RAY_ADDRESS: the worker Python lacks ray") and "--" not in processing


def test_a_ray_cluster_that_cannot_be_joined(monkeypatch):
    """ray.init's refusal (here: Ray Client's timeout) through the core's own join and the worker's
    error fields: the dialog names Worker setup's address."""
    from paligemma_qgis.cli.worker_errors import error_fields
    from paligemma_qgis.core.errors import PaliGemmaQgisError
    from paligemma_qgis.core.run import ray_cluster
    from paligemma_qgis.core.specs import segment_spec

    class Unreachable:
        @staticmethod
        def is_initialized():
            return False

        @staticmethod
        def init(**kwargs):
            raise ConnectionError("ray client connection timeout")

    options = segment_spec(raster="a.tif", output="o.gpkg", executor="ray", ray_address="ray://gpu:10001")
    monkeypatch.setattr(ray_cluster, "probe", lambda address: None)  # the port answers; Ray does not
    with pytest.raises(PaliGemmaQgisError) as caught:
        ray_cluster.connect(Unreachable, options.run)
    info = error_fields(caught.value)
    assert (info["code"], info["field"]) == ("ray_unreachable", "ray_address")
    job_options = {"raster": "a.tif", "output": "o.gpkg", "executor": "ray", "ray_address": "ray://gpu:10001"}
    dialog = translate(str(caught.value), info, job_options, SEGMENT_DIALOG)
    assert dialog.startswith(
        "Ray address (Worker setup): cannot join the Ray cluster ray://gpu:10001: ray client connection timeout."
    )
    assert "Worker setup…" in dialog and "clear it to run here" in dialog
    processing = translate(str(caught.value), info, job_options, SegmentWaterAlgorithm.FRONT)
    assert processing.startswith("RAY_ADDRESS: cannot join the Ray cluster ray://gpu:10001")


def test_a_ray_address_where_nothing_listens_fails_in_seconds_not_minutes():
    """ray.init blocks about two minutes on a dead address; the probe says so at once, naming the
    address, and Ray is never asked. A port that answers goes on to ray.init."""
    import socket
    import time

    from paligemma_qgis.core.errors import PaliGemmaQgisError
    from paligemma_qgis.core.run import ray_cluster
    from paligemma_qgis.core.specs import segment_spec

    calls = []

    class FakeRay:
        @staticmethod
        def is_initialized():
            return False

        @staticmethod
        def init(**kwargs):
            calls.append(kwargs["address"])

    with socket.socket() as closed, socket.socket() as listening:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        dead, messages = f"ray://127.0.0.1:{closed.getsockname()[1]}", []
        for address in (dead, dead.removeprefix("ray://"), "ray://no-such-host.invalid:10001"):
            options = segment_spec(raster="a.tif", output="o.gpkg", executor="ray", ray_address=address)
            t0 = time.monotonic()
            with pytest.raises(PaliGemmaQgisError) as caught:
                ray_cluster.connect(FakeRay, options.run)
            assert time.monotonic() - t0 < ray_cluster.PROBE_SECONDS
            assert str(caught.value).startswith(f"cannot join the Ray cluster {address}: ")
            assert "check the address" in str(caught.value)
            assert caught.value.code == "ray_unreachable" and caught.value.field == "ray_address"
            messages.append(str(caught.value))
        assert "(Connection refused)" in messages[0] and "(Connection refused)" in messages[1]
        assert "the host name 'no-such-host.invalid' is not known" in messages[2]
        assert calls == []
        alive = f"ray://127.0.0.1:{listening.getsockname()[1]}"
        assert ray_cluster.connect(
            FakeRay, segment_spec(raster="a.tif", output="o.gpkg", ray_address=alive).run
        )
        assert calls == [alive]


def test_a_failed_region_run_shows_every_scene_in_details(region, clean_project, qgis_iface, tmp_path):
    scenes, folder = region
    job = segment_job([str(folder / "broken.tif"), str(tmp_path / "gone.tif")], str(tmp_path / "w.gpkg"))
    (tmp_path / "gone.tif").write_text("not a raster")
    task = WorkerTask("Water in 2 scenes", job, python=sys.executable, iface=qgis_iface)
    QgsApplication.taskManager().addTask(task)
    wait_for_task(task)
    assert task.succeeded is False and task.error.startswith("Every scene failed (2)")
    (item,) = [i for i in qgis_iface.messageBar().items() if "Every scene failed" in item_text(i)]
    item.findChild(QPushButton, "paligemmaDetails").click()
    QApplication.processEvents()
    (box,) = [
        w for w in QApplication.topLevelWidgets() if w.objectName() == "paligemmaDetailsBox" and w.isVisible()
    ]
    assert "Scenes that failed (2):" in box.detailedText() and "gone: " in box.detailedText()
    box.close()
