"""The "Map water" dialog and the worker setup check, in a real (headless) QGIS."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from qgis.core import QgsFeature, QgsGeometry, QgsRasterLayer, QgsRectangle, QgsSettings, QgsVectorLayer
from qgis.PyQt.QtCore import QCoreApplication
from waiting import wait_until

from paligemma_qgis.plugin import dialog as dialog_module
from paligemma_qgis.plugin.dialog import SegmentDialog
from paligemma_qgis.plugin.messages import bar_texts
from paligemma_qgis.plugin.options import ENGINES, PRESETS, segment_job
from paligemma_qgis.plugin.setup_check import render_check, run_check
from paligemma_qgis.plugin.worker_env import SETTINGS_GROUP, set_configured_python, worker_env


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


def _messages(d: SegmentDialog) -> str:
    return " | ".join(bar_texts(d.message_bar))  # each message whole (a bar item may show it cut)


def test_dialog_opens_with_defaults(dlg):
    dlg.show()
    assert dlg.isVisible()
    assert dlg.area() == "raster"
    assert dlg.model_combo.currentText() == "google/paligemma2-3b-mix-224"
    assert dlg.batch_spin.value() == 0 and dlg.batch_spin.text() == "Auto"
    assert dlg.overlap_spin.value() == -1 and dlg.overlap_spin.text() == "Auto"
    assert dlg.run_button.text() == "Run"
    assert dlg.advanced_box.isCollapsed()


def test_dialog_defaults_are_the_command_lines(dlg):
    """Same engine, overlap, minimum area, device, resolution and batch as `segment` without options."""
    from paligemma_qgis.cli import build_parser

    cli = build_parser().parse_args(["segment", "in.tif", "out.gpkg"])
    assert dlg.engine() == cli.engine == "water-index"
    assert dlg.overlap_spin.value() == -1 and cli.overlap is None  # the engine's own (Auto)
    assert dlg.overlap_spin.text() == "Auto"
    assert dlg.min_area_spin.value() == cli.min_area_m2
    assert dlg.device_combo.currentData() == cli.device
    assert dlg.resolution_spin.value() == 0 and cli.resolution is None  # native
    assert dlg.batch_spin.value() == 0 and cli.batch_size is None  # automatic
    provider_engine = _processing_default("segment_water", "ENGINE")
    assert ENGINES[provider_engine][0] == cli.engine


def _processing_default(algorithm: str, parameter: str):
    from paligemma_qgis.plugin.provider import algorithms

    (alg,) = [a for a in algorithms() if a.name() == algorithm]
    alg.initAlgorithm()
    return alg.parameterDefinition(parameter).defaultValue()


def test_engine_options_show_only_for_their_engine(dlg):
    dlg.show()
    _set_combo(dlg.engine_combo, "water-index")
    QCoreApplication.processEvents()
    assert not dlg.model_box.isVisible() and not dlg.bands_edit.isVisible()
    assert dlg.nir_spin.isVisible()
    dlg.advanced_box.setCollapsed(False)
    QCoreApplication.processEvents()
    assert dlg.overlap_spin.isVisible() and not dlg.batch_spin.isVisible()
    _set_combo(dlg.engine_combo, "paligemma")
    QCoreApplication.processEvents()
    assert dlg.model_box.isVisible() and dlg.vae_widget.download_button.isVisible()
    assert dlg.bands_edit.isVisible() and not dlg.nir_spin.isVisible() and dlg.batch_spin.isVisible()
    assert not dlg.aoi_combo.isVisible()
    _set_combo(dlg.area_combo, "layer")
    QCoreApplication.processEvents()
    assert dlg.aoi_combo.isVisible()


@pytest.mark.parametrize("engine", ["water-index", "paligemma"])
def test_dialog_fits_a_768_pixel_screen(qgis_iface, raster_layer, engine):
    """1366x768 laptops: the dialog, at the default font, is at most 740 px high, also with the
    polygon-layer row and a warning in its message bar (advanced options collapsed)."""
    from qgis.PyQt.QtWidgets import QApplication

    d = SegmentDialog(qgis_iface)
    d.set_raster_layer(raster_layer)
    _set_combo(d.engine_combo, engine)
    _set_combo(d.area_combo, "layer")
    d.show()
    d.show_errors(["Choose the polygon layer that limits the area: a message long enough to wrap " * 2])
    for _ in range(5):
        QApplication.processEvents()
    d.fit()  # what the dialog does when rows show or hide
    QApplication.processEvents()
    assert d.height() <= 740, d.height()
    assert d.height() >= d.minimumSizeHint().height()  # nothing squeezed
    assert d.width() <= 1366
    d.close()
    d.deleteLater()


def test_validation_refuses_missing_raster_and_output(dlg):
    assert dlg.run() is None  # nothing chosen
    text = _messages(dlg)
    assert "Choose an input raster" in text
    assert "Choose the output GeoPackage" in text
    assert dlg.task is None


def test_validation_messages_for_bad_values(dlg, raster_layer, tmp_path):
    dlg.set_raster_layer(raster_layer)
    _set_combo(dlg.engine_combo, "paligemma")
    dlg.bands_edit.setText("1,2")
    dlg.nir_spin.setValue(9)  # the water index's: hidden and not checked for PaliGemma
    dlg.output_widget.setFilePath(str(tmp_path / "water.shp"))
    dlg.model_combo.setEditText(str(tmp_path / "no_such_model"))
    dlg.vae_widget.setFilePath(str(tmp_path / "missing.npz"))
    errors = dlg.validate()
    joined = "\n".join(errors)
    assert "one band (grey) or three" in joined
    assert "NIR" not in joined
    assert ".gpkg" in joined
    assert "model folder not found" in joined
    assert "missing.npz: VAE file not found" in joined
    assert dlg.run() is None
    assert "model folder not found" in _messages(dlg)

    dlg.bands_edit.setText("3,2,5")
    assert any("bands 1 to 4" in e for e in dlg.validate())
    _set_combo(dlg.engine_combo, "water-index")
    joined = "\n".join(dlg.validate())
    assert "NIR band 9: the raster has bands 1 to 4" in joined and "3,2,5" not in joined


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
    _set_combo(dlg.engine_combo, "paligemma")
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
    from paligemma_qgis.core.specs import segment_spec

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
    options = segment_spec(job["options"])
    assert options.raster == (str(Path(raster_layer.source())),)
    assert (options.engine.name, options.read.preset, options.grid.overlap) == ("water-index", "naip", 16)
    assert (options.read.resolution, options.output.min_area_m2, options.engine.batch_size) == (20, 500, 2)
    assert options.engine.paligemma.model is None and options.grid.aoi is None  # PaliGemma choices stay out
    dlg.batch_spin.setValue(0)  # "Auto": the engine decides (GPU memory), the job says nothing
    dlg.overlap_spin.setValue(-1)  # "Auto": the engine's overlap (0 for the water index)
    options = dlg.build_job(tmp_path)["options"]
    assert "batch_size" not in options and "overlap" not in options
    assert segment_spec(options).resolved().grid.overlap == 0


def test_area_from_selected_polygons_and_canvas(dlg, raster_layer, clean_project, qgis_iface, tmp_path):
    from paligemma_qgis.core.inputs.grid import load_aoi

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
    job = dlg.build_job(tmp_path)
    assert [copy.write() for copy in job["layer_copies"]] == [None]  # what the WorkerTask does first
    aoi = job["options"]["aoi"]
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


def test_run_saves_settings_checks_the_worker_and_starts_a_task(dlg, raster_layer, tmp_path, queued_tasks):
    started = queued_tasks
    set_configured_python(sys.executable)  # a worker Python that has everything
    dlg.set_raster_layer(raster_layer)
    _set_combo(dlg.engine_combo, "water-index")
    _set_combo(dlg.preset_combo, "naip")
    dlg.output_widget.setFilePath(str(tmp_path / "w.gpkg"))
    dlg.run()
    # The worker Python is asked first, in the background: Run waits (and cannot start twice).
    assert dlg.preflight is not None and not dlg.run_button.isEnabled()
    assert "Checking the worker Python" in _messages(dlg)
    wait_until(lambda: dlg.task is not None, what="the run to start")
    assert started == [dlg.task]
    assert dlg.task.group_name == "Water in lakes" and dlg.task.python == sys.executable
    assert QgsSettings().value(f"{SETTINGS_GROUP}/dialog/engine") == "water-index"


def test_presets_match_the_core():
    from paligemma_qgis.core.inputs.raster import PRESETS as CORE_PRESETS

    assert {name for name, _ in PRESETS if name} == set(CORE_PRESETS)


def test_default_model_matches_the_core():
    from paligemma_qgis.core.model.hf_models import DEFAULT_MODEL
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
    # An interrupted run of another job is never replaced silently: the dialog asks, then says restart.
    assert "restart_if_changed" not in job["options"]
    assert segment_job("in.tif", "out.gpkg", restart=True)["options"]["restart"] is True


def test_worker_env_points_at_the_plugin_and_drops_proj(monkeypatch):
    monkeypatch.setenv("PROJ_LIB", "/somewhere/proj")
    monkeypatch.setenv("PROJ_DATA", "/somewhere/proj")
    env = worker_env()
    assert "PROJ_LIB" not in env and "PROJ_DATA" not in env
    assert env["PYTHONPATH"] == str(Path(dialog_module.__file__).resolve().parents[2])


@pytest.mark.slow
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


# --------------------------------------------------------------------------- training-data export


@pytest.fixture
def export_dlg(qgis_iface, clean_project):
    from paligemma_qgis.plugin.export_dialog import ExportDialog

    d = ExportDialog(qgis_iface)
    yield d
    d.close()
    d.deleteLater()


def _memory_lakes(water_scene, crs="EPSG:32633"):
    lakes = QgsVectorLayer(f"Polygon?crs={crs}", "known water", "memory")
    feats = []
    for geom in water_scene.water:
        f = QgsFeature()
        f.setGeometry(QgsGeometry.fromWkt(geom.wkt))
        feats.append(f)
    lakes.dataProvider().addFeatures(feats)
    return lakes


def test_export_dialog_opens_with_defaults(export_dlg):
    export_dlg.show()
    assert export_dlg.isVisible()
    assert export_dlg.labels_source() == "layer"
    assert export_dlg.size_combo.currentData() == 224
    assert export_dlg.min_pixels_spin.value() == 16
    assert export_dlg.valid_spin.value() == pytest.approx(0.2)
    assert export_dlg.empty_combo.currentData() == "cap"
    assert export_dlg.run_button.text() == "Export"
    assert not export_dlg.nir_spin.isEnabled()  # water-index bands only for water-index labels


def test_export_refuses_missing_inputs_with_messages(export_dlg):
    assert export_dlg.run() is None
    text = " | ".join(bar_texts(export_dlg.message_bar))
    assert "Choose the input raster" in text
    assert "Choose the polygon layer" in text
    assert "Choose the output folder" in text
    assert export_dlg.task is None


def test_export_refuses_bad_values(export_dlg, raster_layer, tmp_path, water_scene):
    d = export_dlg
    d.set_raster_layer(raster_layer)
    _set_combo(d.labels_combo, "vector")
    d.vector_widget.setFilePath(str(tmp_path / "nope.gpkg"))
    d.bands_edit.setText("3,2,9")
    d.vae_widget.setFilePath(str(tmp_path / "missing.npz"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    d.output_widget.setFilePath(str(out))
    joined = "\n".join(d.validate())
    assert "nope.gpkg: vector file not found" in joined
    assert "Bands '3,2,9': the raster has bands 1 to 4" in joined
    assert "missing.npz: VAE file not found" in joined
    assert "exists and is not empty" in joined
    d.overwrite_check.setChecked(True)
    assert any("does not hold an earlier export" in e for e in d.validate())
    assert d.run() is None
    assert "vector file not found" in " | ".join(bar_texts(d.message_bar))

    # Points are not water areas; a mask that GDAL cannot read; an output folder holding the input.
    points = tmp_path / "points.geojson"
    points.write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, '
        '"geometry": {"type": "Point", "coordinates": [500100, 4999900]}}]}'
    )
    d.vector_widget.setFilePath(str(points))
    assert any("must be polygons" in e for e in d.validate())
    _set_combo(d.labels_combo, "mask")
    not_raster = tmp_path / "mask.tif"
    not_raster.write_text("not a raster")
    d.mask_picker.set_file(str(not_raster))
    assert any("GDAL cannot open" in e for e in d.validate())
    _set_combo(d.labels_combo, "water-index")
    d.bands_edit.clear()
    d.vae_widget.setFilePath("")
    d.output_widget.setFilePath(str(water_scene.path.parent))
    assert any("holds the input" in e for e in d.validate())
    d.output_widget.setFilePath(str(tmp_path / "training"))
    assert d.validate() == []


def test_export_polygon_layer_job_is_accepted_by_export_options(
    export_dlg, raster_layer, water_scene, clean_project, tmp_path, vae_npz
):
    from paligemma_qgis.core.serial import from_data
    from paligemma_qgis.core.train.options import ExportOptions

    lakes = _memory_lakes(water_scene)
    clean_project.addMapLayer(lakes)
    d = export_dlg
    d.set_raster_layer(raster_layer)
    d.polygon_combo.setLayer(lakes)
    d.polygon_selected_check.setChecked(True)
    d.output_widget.setFilePath(str(tmp_path / "training"))
    assert any("no features are selected" in e for e in d.validate())
    lakes.selectByIds(lakes.allFeatureIds()[:2])
    _set_combo(d.preset_combo, "naip")
    d.size_combo.setCurrentIndex(d.size_combo.findData(448))
    d.overlap_spin.setValue(32)
    d.min_pixels_spin.setValue(40)
    d.vae_widget.setFilePath(str(vae_npz))
    d.allow_custom_check.setChecked(True)
    d.valid_spin.setValue(0.3)
    d.block_spin.setValue(2)
    d.seed_spin.setValue(7)
    _set_combo(d.empty_combo, "drop")
    assert d.validate() == []
    job = d.build_job(tmp_path)
    assert [copy.write() for copy in job["layer_copies"]] == [None]  # what the WorkerTask does first
    assert job["task"] == "export"
    opts = from_data(ExportOptions, job["options"])
    assert opts.raster == water_scene.path.as_posix() or Path(opts.raster) == water_scene.path
    assert (opts.size, opts.overlap, opts.min_object_pixels) == (448, 32, 40)
    assert (opts.preset, opts.valid_fraction, opts.block_size, opts.seed) == ("naip", 0.3, 2, 7)
    assert (opts.empty_policy, opts.allow_custom_vae, opts.vae) == ("drop", True, str(vae_npz))
    assert opts.out_dir == str(tmp_path / "training") and opts.overwrite is False
    assert opts.nir is None and opts.green is None  # water-index bands stay out
    # The selection was copied to a GeoPackage the worker can read.
    assert opts.label_layer == "labels"
    copied = QgsVectorLayer(f"{opts.labels}|layername=labels", "copied", "ogr")
    assert copied.isValid() and copied.featureCount() == 2
    del copied


def test_export_file_backed_layer_mask_and_water_index_jobs(
    export_dlg, raster_layer, water_scene, clean_project, tmp_path
):
    from qgis.core import QgsCoordinateTransformContext, QgsVectorFileWriter

    from paligemma_qgis.core.serial import from_data
    from paligemma_qgis.core.train.options import ExportOptions

    gpkg = tmp_path / "lakes.gpkg"
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName, options.layerName = "GPKG", "lakes"
    QgsVectorFileWriter.writeAsVectorFormatV3(
        _memory_lakes(water_scene), str(gpkg), QgsCoordinateTransformContext(), options
    )
    on_disk = QgsVectorLayer(f"{gpkg}|layername=lakes", "lakes", "ogr")
    assert on_disk.isValid()
    clean_project.addMapLayer(on_disk)
    d = export_dlg
    d.set_raster_layer(raster_layer)
    d.polygon_combo.setLayer(on_disk)
    d.output_widget.setFilePath(str(tmp_path / "training"))
    assert d.validate() == []
    opts = from_data(ExportOptions, d.build_job(tmp_path / "tmp")["options"])
    assert (Path(opts.labels), opts.label_layer) == (gpkg, "lakes")  # read in place, no copy

    _set_combo(d.labels_combo, "mask")
    d.mask_picker.set_file(str(water_scene.path))
    d.mask_threshold_spin.setValue(100)
    assert d.validate() == []
    opts = from_data(ExportOptions, d.build_job(tmp_path)["options"])
    assert (opts.labels, opts.mask_threshold, opts.label_layer) == (str(water_scene.path), 100.0, None)

    _set_combo(d.labels_combo, "water-index")
    d.nir_spin.setValue(4)
    d.bands_edit.setText("1,2,3")
    opts = from_data(ExportOptions, d.build_job(tmp_path)["options"])
    assert (opts.labels, opts.nir, opts.bands) == ("water-index", 4, (1, 2, 3))
    d.nir_spin.setValue(7)
    assert any("NIR band 7" in e for e in d.validate())


def test_export_settings_persist(qgis_iface, raster_layer, clean_project, tmp_path):
    from paligemma_qgis.plugin.export_dialog import ExportDialog

    first = ExportDialog(qgis_iface)
    first.set_raster_layer(raster_layer)
    _set_combo(first.labels_combo, "vector")
    first.vector_widget.setFilePath(str(tmp_path / "lakes.gpkg"))
    first.vector_layer_edit.setText("lakes")
    first.size_combo.setCurrentIndex(first.size_combo.findData(896))
    first.overlap_spin.setValue(24)
    first.min_pixels_spin.setValue(50)
    first.allow_custom_check.setChecked(True)
    first.valid_spin.setValue(0.15)
    first.seed_spin.setValue(42)
    _set_combo(first.empty_combo, "keep")
    first.output_widget.setFilePath(str(tmp_path / "training"))
    first.overwrite_check.setChecked(True)
    first.save_settings()
    first.deleteLater()

    second = ExportDialog(qgis_iface)
    assert second.raster_picker.layer() is raster_layer
    assert second.labels_source() == "vector"
    assert second.labels_stack.currentIndex() == 1
    assert second.vector_widget.filePath() == str(tmp_path / "lakes.gpkg")
    assert second.vector_layer_edit.text() == "lakes"
    assert (second.size_combo.currentData(), second.overlap_spin.value()) == (896, 24)
    assert second.min_pixels_spin.value() == 50 and second.allow_custom_check.isChecked()
    assert second.valid_spin.value() == pytest.approx(0.15) and second.seed_spin.value() == 42
    assert second.empty_combo.currentData() == "keep" and not second.empty_cap_spin.isEnabled()
    assert second.output_widget.filePath() == str(tmp_path / "training")
    assert second.overwrite_check.isChecked()
    second.deleteLater()


def test_segment_dialog_offers_the_export(dlg):
    assert dlg.export_button.text() == "Training data…"
    dlg.export_button.click()
    assert dlg.export_requested and dlg.task is None


def test_export_job_leaves_out_unset_values():
    from paligemma_qgis.plugin.options import export_job

    job = export_job(
        "in.tif", "out", "water-index", nir=0, resolution=0.0, empty_policy="keep", empty_cap=0.3
    )
    assert job == {
        "task": "export",
        "options": {
            "raster": "in.tif",
            "out_dir": "out",
            "labels": "water-index",
            "size": 224,
            "overlap": 0,
            "min_object_pixels": 16,
            "allow_custom_vae": False,
            "valid_fraction": 0.2,
            "seed": 0,
            "empty_policy": "keep",
            "overwrite": False,
        },
    }


def test_export_choices_match_the_core():
    from paligemma_qgis.core.train import export as core_export
    from paligemma_qgis.core.train.export import outputs as core_outputs
    from paligemma_qgis.plugin.export_dialog import EXPORT_MARKERS
    from paligemma_qgis.plugin.options import EMPTY_POLICIES, WATER_INDEX_LABELS

    assert {name for name, _ in EMPTY_POLICIES} == set(core_export.EMPTY_POLICIES)
    assert WATER_INDEX_LABELS == core_export.WATER_INDEX
    assert set(EXPORT_MARKERS) == set(core_outputs._EXPORT_MARKERS)


def test_export_dialog_defaults_are_the_command_lines(export_dlg):
    from paligemma_qgis.cli import build_parser

    cli = build_parser().parse_args(["export", "in.tif", "out", "--labels", "lakes.gpkg"])
    assert export_dlg.size_combo.currentData() == cli.size
    assert export_dlg.overlap_spin.value() == cli.overlap
    assert export_dlg.min_pixels_spin.value() == cli.min_object_pixels
    assert export_dlg.valid_spin.value() == pytest.approx(cli.valid_fraction)
    assert export_dlg.block_spin.value() == cli.block_size
    assert export_dlg.seed_spin.value() == cli.seed
    assert export_dlg.empty_combo.currentData() == cli.empty_policy
    assert export_dlg.empty_cap_spin.value() == pytest.approx(cli.empty_cap)
    assert export_dlg.advanced_box.isCollapsed()


def test_export_dialog_fits_a_768_pixel_screen(export_dlg, raster_layer):
    from qgis.PyQt.QtWidgets import QApplication

    export_dlg.raster_picker.set_layer(raster_layer)
    _set_combo(export_dlg.labels_combo, "water-index")  # shows the Green / NIR / SWIR row
    export_dlg.show()
    export_dlg.show_errors(["Choose the output folder."])
    for _ in range(5):
        QApplication.processEvents()
    export_dlg.fit()
    QApplication.processEvents()
    assert export_dlg.height() <= 740 and export_dlg.width() <= 1366
    assert export_dlg.nir_spin.isVisible()
