"""The "Map water" dialog and the worker setup check, in a real (headless) QGIS."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from qgis.core import QgsFeature, QgsGeometry, QgsRasterLayer, QgsRectangle, QgsSettings, QgsVectorLayer

from paligemma_qgis.plugin import dialog as dialog_module
from paligemma_qgis.plugin.dialog import SegmentDialog
from paligemma_qgis.plugin.options import PRESETS, segment_job
from paligemma_qgis.plugin.setup_check import render_check, run_check
from paligemma_qgis.plugin.worker_env import SETTINGS_GROUP, worker_env


@pytest.fixture(autouse=True)
def fresh_settings():
    QgsSettings().remove(SETTINGS_GROUP)
    yield
    QgsSettings().remove(SETTINGS_GROUP)


@pytest.fixture
def raster_layer(water_scene, clean_project):
    layer = QgsRasterLayer(str(water_scene.path), "lakes", "gdal")
    assert layer.isValid()
    clean_project.addMapLayer(layer)
    return layer


@pytest.fixture
def dlg(qgis_iface, clean_project):
    d = SegmentDialog(qgis_iface)
    yield d
    d.close()
    d.deleteLater()


def _messages(d: SegmentDialog) -> str:
    return " | ".join(item.text() for item in d.message_bar.items())


def test_dialog_opens_with_defaults(dlg):
    dlg.show()
    assert dlg.isVisible()
    assert dlg.engine() == "paligemma"
    assert dlg.area() == "raster"
    assert dlg.model_combo.currentText() == "google/paligemma2-3b-mix-224"
    assert dlg.batch_spin.value() == 4
    assert dlg.run_button.text() == "Run"


def test_validation_refuses_missing_raster_and_output(dlg):
    assert dlg.run() is None  # nothing chosen
    text = _messages(dlg)
    assert "Choose an input raster" in text
    assert "Choose the output GeoPackage" in text
    assert dlg.task is None


def test_validation_messages_for_bad_values(dlg, raster_layer, tmp_path):
    dlg.set_raster_layer(raster_layer)
    dlg.bands_edit.setText("1,2")
    dlg.nir_spin.setValue(9)
    dlg.output_widget.setFilePath(str(tmp_path / "water.shp"))
    dlg.model_combo.setEditText(str(tmp_path / "no_such_model"))
    dlg.vae_widget.setFilePath(str(tmp_path / "missing.npz"))
    errors = dlg.validate()
    joined = "\n".join(errors)
    assert "one band (grey) or three" in joined
    assert "NIR band 9: the raster has bands 1 to 4" in joined
    assert ".gpkg" in joined
    assert "model folder not found" in joined
    assert "missing.npz: VAE file not found" in joined
    assert dlg.run() is None
    assert "model folder not found" in _messages(dlg)

    dlg.bands_edit.setText("3,2,5")
    assert any("bands 1 to 4" in e for e in dlg.validate())


def test_validation_existing_output_needs_overwrite(dlg, raster_layer, tmp_path):
    out = tmp_path / "water.gpkg"
    out.write_bytes(b"")
    dlg.set_raster_layer(raster_layer)
    _set_combo(dlg.engine_combo, "water-index")
    dlg.output_widget.setFilePath(str(out))
    assert any("exists" in e for e in dlg.validate())
    dlg.overwrite_check.setChecked(True)
    assert dlg.validate() == []
    dlg.output_widget.setFilePath(str(tmp_path / "no_folder" / "w.gpkg"))
    assert any("does not exist" in e for e in dlg.validate())


def test_validation_model_folder_without_config(dlg, raster_layer, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    dlg.set_raster_layer(raster_layer)
    dlg.model_combo.setEditText(str(folder))
    dlg.output_widget.setFilePath(str(tmp_path / "w.gpkg"))
    assert any("no config.json" in e for e in dlg.validate())
    (folder / "config.json").write_text("{}")
    assert dlg.validate() == []


def test_raster_file_not_in_project(dlg, water_scene, tmp_path):
    dlg.set_raster_file(str(water_scene.path))
    dlg.output_widget.setFilePath(str(tmp_path / "w.gpkg"))
    assert dlg.raster_path() == str(water_scene.path)
    assert dlg.validate() == []
    job = dlg.build_job(tmp_path)
    assert job["options"]["raster"] == str(water_scene.path)


def _set_combo(combo, value):
    combo.setCurrentIndex(combo.findData(value))


def test_valid_choices_build_a_job_the_pipeline_accepts(dlg, raster_layer, tmp_path):
    from paligemma_qgis.core.pipeline import SegmentOptions

    dlg.set_raster_layer(raster_layer)
    _set_combo(dlg.engine_combo, "water-index")
    _set_combo(dlg.preset_combo, "naip")
    dlg.overlap_spin.setValue(16)
    dlg.resolution_spin.setValue(20)
    dlg.min_area_spin.setValue(500)
    dlg.batch_spin.setValue(2)
    dlg.output_widget.setFilePath(str(tmp_path / "w.gpkg"))
    assert dlg.validate() == []
    job = dlg.build_job(tmp_path)
    assert job["task"] == "segment"
    options = SegmentOptions.from_dict(job["options"])
    assert options.raster == str(Path(raster_layer.source()))
    assert (options.engine, options.preset, options.overlap) == ("water-index", "naip", 16)
    assert (options.resolution, options.min_area_m2, options.batch_size) == (20, 500, 2)
    assert options.model is None and options.aoi is None  # PaliGemma choices stay out


def test_area_from_selected_polygons_and_canvas(dlg, raster_layer, clean_project, qgis_iface, tmp_path):
    from paligemma_qgis.core.grid import load_aoi

    ext = raster_layer.extent()
    polys = QgsVectorLayer(f"Polygon?crs={raster_layer.crs().authid()}", "aoi", "memory")
    feats = []
    for i in range(3):
        f = QgsFeature()
        x0 = ext.xMinimum() + i * 1000
        f.setGeometry(QgsGeometry.fromRect(QgsRectangle(x0, ext.yMinimum(), x0 + 500, ext.yMinimum() + 500)))
        feats.append(f)
    polys.dataProvider().addFeatures(feats)
    clean_project.addMapLayer(polys)
    dlg.set_raster_layer(raster_layer)
    dlg.output_widget.setFilePath(str(tmp_path / "w.gpkg"))
    _set_combo(dlg.area_combo, "layer")
    dlg.aoi_combo.setLayer(polys)
    dlg.selected_check.setChecked(True)
    assert any("no features are selected" in e for e in dlg.validate())
    polys.selectByIds([polys.allFeatureIds()[1]])
    assert dlg.validate() == []
    aoi = dlg.build_job(tmp_path)["options"]["aoi"]
    written = QgsVectorLayer(aoi, "written", "ogr")
    assert written.featureCount() == 1
    geom = load_aoi(aoi, raster_layer.crs().authid())
    assert geom.area == pytest.approx(500 * 500)
    del written

    _set_combo(dlg.area_combo, "canvas")
    qgis_iface.mapCanvas().setDestinationCrs(raster_layer.crs())
    qgis_iface.mapCanvas().setExtent(ext)
    aoi_text = dlg.build_job(tmp_path)["options"]["aoi"]
    assert aoi_text.endswith(raster_layer.crs().authid())
    assert len(aoi_text.split(",")) == 5


def test_settings_persist(qgis_iface, raster_layer, clean_project, tmp_path):
    first = SegmentDialog(qgis_iface)
    first.set_raster_layer(raster_layer)
    _set_combo(first.engine_combo, "water-index")
    _set_combo(first.preset_combo, "sentinel2")
    _set_combo(first.device_combo, "cpu")
    first.bands_edit.setText("3,2,1")
    first.nir_spin.setValue(4)
    first.batch_spin.setValue(16)
    first.overlap_spin.setValue(48)
    first.min_area_spin.setValue(250)
    first.model_combo.setEditText("someone/finetuned-water")
    first.output_widget.setFilePath(str(tmp_path / "water.gpkg"))
    first.overwrite_check.setChecked(True)
    first.save_settings()
    first.deleteLater()

    second = SegmentDialog(qgis_iface)
    assert second.raster_combo.currentLayer() is raster_layer
    assert second.engine() == "water-index"
    assert second.preset_combo.currentData() == "sentinel2"
    assert second.device_combo.currentData() == "cpu"
    assert second.bands_edit.text() == "3,2,1"
    assert second.nir_spin.value() == 4
    assert (second.batch_spin.value(), second.overlap_spin.value()) == (16, 48)
    assert second.min_area_spin.value() == 250
    assert second.model_combo.currentText() == "someone/finetuned-water"
    assert second.output_widget.filePath() == str(tmp_path / "water.gpkg")
    assert second.overwrite_check.isChecked()
    second.deleteLater()


def test_run_saves_settings_and_starts_a_task(dlg, raster_layer, tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(dialog_module.QgsApplication.taskManager(), "addTask", started.append, raising=False)
    dlg.set_raster_layer(raster_layer)
    _set_combo(dlg.engine_combo, "water-index")
    dlg.output_widget.setFilePath(str(tmp_path / "w.gpkg"))
    task = dlg.run()
    assert task is not None and started == [task]
    assert task.group_name == "lakes"
    assert QgsSettings().value(f"{SETTINGS_GROUP}/dialog/engine") == "water-index"


def test_presets_match_the_core():
    from paligemma_qgis.core.raster import PRESETS as CORE_PRESETS

    assert {name for name, _ in PRESETS if name} == set(CORE_PRESETS)


def test_default_model_matches_the_core():
    from paligemma_qgis.core.engine.models import DEFAULT_MODEL
    from paligemma_qgis.plugin.options import DEFAULT_MODEL as PLUGIN_DEFAULT

    assert PLUGIN_DEFAULT == DEFAULT_MODEL


def test_segment_job_leaves_out_unset_values():
    job = segment_job("in.tif", "out.gpkg", engine="water-index", green=0, nir=4, resolution=0.0, model="x")
    assert job["options"] == {
        "raster": "in.tif",
        "output": "out.gpkg",
        "engine": "water-index",
        "overwrite": False,
        "nir": 4,
    }


def test_worker_env_points_at_the_plugin_and_drops_proj(monkeypatch):
    monkeypatch.setenv("PROJ_LIB", "/somewhere/proj")
    monkeypatch.setenv("PROJ_DATA", "/somewhere/proj")
    env = worker_env()
    assert "PROJ_LIB" not in env and "PROJ_DATA" not in env
    assert env["PYTHONPATH"] == str(Path(dialog_module.__file__).resolve().parents[2])


def test_setup_check_with_the_test_python():
    check = run_check(python=sys.executable, model="google/no-such-model")
    assert check["python"] == sys.executable
    assert check["packages"]["rasterio"]
    assert check["ready"]["water-index"] is True
    assert check["model"]["found"] is False
    html = render_check(check)
    assert "rasterio" in html and "google/no-such-model" in html
    assert "weights download" in html  # the fix command for the missing VAE/model


def test_setup_check_with_a_python_that_does_not_exist(tmp_path):
    check = run_check(python=str(tmp_path / "nope" / "python"))
    assert "error" in check
    assert "cannot run" in render_check(check)
