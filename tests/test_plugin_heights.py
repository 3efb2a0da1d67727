"""Issue 21: every dialog is at most 740 px tall in every state (a 1366x768 laptop), nothing squeezed:
past that its fields scroll. Real headless QGIS at its default font."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from qgis.core import QgsRasterLayer, QgsSettings
from qgis.PyQt.QtWidgets import QApplication
from synthetic_rasters import make_scene

from paligemma_qgis.plugin.band_roles import BandRolesDialog
from paligemma_qgis.plugin.dialog import SegmentDialog
from paligemma_qgis.plugin.export_dialog import ExportDialog
from paligemma_qgis.plugin.first_run import setup_question
from paligemma_qgis.plugin.interrupted import question
from paligemma_qgis.plugin.more_rasters import MoreRastersDialog
from paligemma_qgis.plugin.ray_trust import trust_question
from paligemma_qgis.plugin.setup_plan import plan_setup
from paligemma_qgis.plugin.worker_env import SETTINGS_GROUP

MAX = 740
LONG = "A message long enough to wrap in the dialog's message bar, naming a file and what to do. " * 3


@pytest.fixture(autouse=True)
def fresh_settings():
    QgsSettings().remove(SETTINGS_GROUP)
    yield
    QgsSettings().remove(SETTINGS_GROUP)


@pytest.fixture
def layer(tmp_path, clean_project):
    raster = QgsRasterLayer(str(make_scene(tmp_path / "lakes.tif").path), "lakes", "gdal")
    clean_project.addMapLayer(raster)
    return raster


def _shown(dialog) -> tuple[int, int]:
    dialog.show()
    for _ in range(6):
        QApplication.processEvents()
    if hasattr(dialog, "fit"):
        dialog.fit()
        QApplication.processEvents()
    return dialog.width(), dialog.height()


def _fits(dialog) -> None:
    width, height = _shown(dialog)
    assert height <= MAX, (dialog.windowTitle(), height)
    assert width <= 1366 and height >= dialog.minimumSizeHint().height()
    dialog.close()
    dialog.deleteLater()


@pytest.mark.parametrize("engine", ["water-index", "paligemma"])
def test_the_map_water_dialog_with_everything_open(qgis_iface, layer, tmp_path, engine):
    d = SegmentDialog(qgis_iface)
    d.set_raster_layer(layer)
    d.engine_combo.setCurrentIndex(d.engine_combo.findData(engine))
    d.area_combo.setCurrentIndex(d.area_combo.findData("layer"))
    d.more_rasters.button.click()
    d.more_rasters.editor.add_folder(str(tmp_path))
    d.more_rasters.editor.accept()
    d.advanced_box.setCollapsed(False)
    d.show_errors([LONG, LONG, LONG, LONG, LONG])  # three shown, the rest behind "and 2 more"
    assert len(d.message_bar.items()) == 4
    _fits(d)


@pytest.mark.parametrize("source", ["layer", "vector", "mask", "water-index"])
def test_the_training_data_dialog_with_advanced_open(qgis_iface, layer, source):
    d = ExportDialog(qgis_iface)
    d.raster_picker.set_layer(layer)
    d.labels_combo.setCurrentIndex(d.labels_combo.findData(source))
    d.advanced_box.setCollapsed(False)
    d.show_errors([LONG, LONG])
    _fits(d)


def test_worker_setup_with_every_fix_shown(qgis_iface):
    from paligemma_qgis.plugin.setup_check import SetupCheckDialog

    page = SetupCheckDialog()
    page.commands_box.setCollapsed(False)
    page.show_result({"packages": {}, "vae": {"found": False}, "cuda": {}, "ready": {}, "fixes": [],
                      "model": {"value": "google/paligemma2-3b-mix-224", "found": False, "local": False}})  # fmt: skip
    _fits(page)


def test_the_band_question_for_thirteen_bands(tmp_path):
    path = tmp_path / "s2.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=13, dtype="uint16", crs="EPSG:32633",
                       transform=rasterio.transform.from_origin(500000, 5000000, 10, 10)) as dst:  # fmt: skip
        dst.write(np.random.default_rng(0).integers(0, 4000, (13, 64, 64), dtype="uint16"))
    _fits(BandRolesDialog(str(path), ["red", "green", "blue", "nir", "swir"]))


def test_more_rasters_and_the_questions(tmp_path):
    _fits(MoreRastersDialog([]))
    _fits(trust_question(None, "ray://gpu.example.org:10001"))
    state = {"journal": "other", "scenes_done": 12, "total": 36, "other_inputs": False,
             "changed": ["min_area_m2", "preset", "green", "nir", "threshold"]}  # fmt: skip
    _fits(question(None, str(tmp_path / "water.gpkg"), state, True))
    probe = {"python": "/usr/bin/python3", "python_version": "3.11.2", "system": "Linux", "machine": "x86_64",
             "missing": {"geo": ["rasterio"], "model": ["torch", "transformers"], "region": ["ray"]},
             "needs": ["geo", "model", "region"], "gpu": {"present": True, "name": "NVIDIA RTX", "cuda": "12.8"},
             "vae": {"found": False}}  # fmt: skip
    plan = plan_setup(
        probe, "paligemma", "settings", venv_dir=tmp_path / "venv", base_python="/usr/bin/python3"
    )
    _fits(setup_question(None, plan, probe, "/opt/conda/bin/python", "settings", water_index=True,
                         model="google/paligemma2-10b-mix-224"))  # fmt: skip
