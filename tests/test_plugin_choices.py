"""Issue 21: the dialog keeps its choices across openings, the band question's sensor becomes the
Preset, and More rasters checks each raster when it is added. Real headless QGIS."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from qgis.core import QgsRasterLayer, QgsSettings
from qgis.PyQt.QtWidgets import QApplication
from synthetic_rasters import make_scene

from paligemma_qgis.plugin.band_roles import BandRolesDialog
from paligemma_qgis.plugin.dialog import SegmentDialog
from paligemma_qgis.plugin.more_rasters import ISSUES, MARK, RasterEntry, describe
from paligemma_qgis.plugin.plugin import PaliGemmaPlugin
from paligemma_qgis.plugin.worker_env import SETTINGS_GROUP


@pytest.fixture(autouse=True)
def fresh_settings():
    QgsSettings().remove(SETTINGS_GROUP)
    yield
    QgsSettings().remove(SETTINGS_GROUP)


def _layer(path, name, project) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), name, "gdal")
    assert layer.isValid()
    project.addMapLayer(layer)
    return layer


def _open(plugin: PaliGemmaPlugin, iface) -> SegmentDialog:
    """What the toolbar button does before exec(): the dialog, its raster preselected or kept."""
    dialog = SegmentDialog(iface)
    plugin._preselect(dialog.raster_picker, "segment")
    return dialog


def _set(combo, value) -> None:
    combo.setCurrentIndex(combo.findData(value))


def test_reopening_keeps_the_raster_and_the_choices(qgis_iface, clean_project, tmp_path):
    a = _layer(make_scene(tmp_path / "a.tif").path, "a", clean_project)
    b = _layer(make_scene(tmp_path / "b.tif", seed=1).path, "b", clean_project)
    folder = tmp_path / "tiles"
    folder.mkdir()
    make_scene(folder / "t.tif", seed=2)
    plugin = PaliGemmaPlugin(qgis_iface)
    qgis_iface.setActiveLayer(a)
    first = _open(plugin, qgis_iface)
    assert first.raster_picker.layer() is a  # the first opening takes the active layer
    _set(first.engine_combo, "water-index")
    _set(first.preset_combo, "naip")
    first.more_rasters.button.click()
    first.more_rasters.editor.add_folder(str(folder))
    first.more_rasters.editor.accept()
    QApplication.processEvents()
    first.save_settings()  # what Run does
    first.deleteLater()

    qgis_iface.setActiveLayer(b)  # the user clicked another layer meanwhile
    second = _open(plugin, qgis_iface)
    assert second.raster_picker.layer() is a  # kept, not reset to the active layer
    assert second.engine() == "water-index" and second.bands_box.preset() == "naip"
    assert [e.path for e in second.more_rasters.entries()] == [str(folder)]
    second.save_settings()
    second.deleteLater()

    clean_project.removeMapLayer(a.id())  # the chosen layer is gone: the active one is preselected
    third = _open(plugin, qgis_iface)
    assert third.raster_picker.layer() is b
    third.deleteLater()


def test_more_rasters_clear_makes_the_next_run_a_single_raster_one(dlg, clean_project, tmp_path):
    other = make_scene(tmp_path / "b.tif", seed=1).path
    dlg.more_rasters.button.click()
    dlg.more_rasters.editor.add_files([str(other)])
    dlg.more_rasters.editor.accept()
    QApplication.processEvents()
    assert dlg.is_region() and dlg.more_rasters.clear_button.isVisibleTo(dlg)
    dlg.more_rasters.clear_button.click()
    assert not dlg.is_region() and dlg.more_rasters.label.text() == "none: only the raster above"
    assert not dlg.more_rasters.clear_button.isVisibleTo(dlg)


def test_the_band_questions_sensor_becomes_the_preset(dlg, clean_project, tmp_path):
    """A 4-band raster without descriptions: answered with "NAIP", the dialog's Preset is NAIP and
    the question is not asked again (before, the roles were set and NAIP asked anew next time)."""
    layer = _layer(make_scene(tmp_path / "naip.tif").path, "naip", clean_project)
    dlg.set_raster_layer(layer)
    _set(dlg.engine_combo, "water-index")
    _set(dlg.preset_combo, "")
    source, roles = dlg.band_question()
    assert roles == ["green", "nir", "swir"]
    question = BandRolesDialog(source, roles)
    _set(question.preset_combo, "naip")
    assert question.chosen() == {"green": 2, "nir": 4} and question.chosen_preset() == "naip"
    dlg.apply_bands(question.chosen(), question.chosen_preset())
    assert dlg.bands_box.preset() == "naip" and dlg.nir_spin.value() == 0
    assert dlg.band_question()[1] == []
    # Roles changed after picking the sensor are the user's own: kept as band numbers.
    question.combos["nir"].setCurrentIndex(question.combos["nir"].findData(3))
    assert question.chosen_preset() is None
    question.deleteLater()


def _no_crs(path):
    data = np.full((4, 50, 60), 90, dtype="uint8")
    with rasterio.open(path, "w", driver="GTiff", width=60, height=50, count=4, dtype="uint8") as dst:
        dst.write(data)
    return path


def _one_band(path):
    with rasterio.open(path, "w", driver="GTiff", width=60, height=50, count=1, dtype="uint8",
                       crs="EPSG:32633", transform=rasterio.transform.from_origin(500000, 5000000, 10, 10)) as dst:  # fmt: skip
        dst.write(np.full((1, 50, 60), 90, dtype="uint8"))
    return path


def test_more_rasters_marks_each_rasters_problems_when_it_is_added(dlg, clean_project, tmp_path):
    good = make_scene(tmp_path / "good.tif").path
    flat = _no_crs(tmp_path / "flat.tif")
    grey = _one_band(tmp_path / "grey.tif")
    folder = tmp_path / "tiles"
    folder.mkdir()
    make_scene(folder / "t1.tif", seed=3)
    (folder / "broken.tif").write_text("not a raster")
    _one_band(folder / "grey2.tif")
    (tmp_path / "garbage.tif").write_text("nope")
    _set(dlg.engine_combo, "water-index")
    dlg.more_rasters.button.click()
    editor = dlg.more_rasters.editor
    problems = editor.add_files([str(good), str(flat), str(grey), str(tmp_path / "garbage.tif")])
    assert problems == [
        f"{tmp_path / 'garbage.tif'}: GDAL cannot open this file as a raster",  # not added
        f"flat: {ISSUES['no_crs']}",
        f"grey: {ISSUES['one_band']}",
    ]
    assert editor.problem_label.isVisibleTo(editor)
    problems = editor.add_folder(str(folder))
    assert problems == [
        f"tiles: broken.tif: {ISSUES['unreadable']}",
        f"tiles: grey2.tif: {ISSUES['one_band']}",
    ]
    marked = [editor.list.item(i).text() for i in range(editor.list.count())]
    assert marked == [
        "good  (file, 4 bands)",
        f"{MARK}flat  (file, 4 bands)",
        f"{MARK}grey  (file, 1 band)",
        f"{MARK}tiles  (folder, 3 rasters)",
    ]
    editor.accept()
    QApplication.processEvents()
    assert dlg.more_rasters.label.text() == f"+4: 3 files, 1 folder · {MARK}3 with problems"
    errors = "\n".join(dlg.validate())
    assert f"More rasters: flat: {ISSUES['no_crs']}; remove it." in errors  # stops the run before it starts
    assert "broken.tif" not in errors  # a folder's bad raster is marked: the run records it as failed
    # One band is fine for PaliGemma: the marks follow the engine.
    _set(dlg.engine_combo, "paligemma")
    assert dlg.more_rasters.label.text() == f"+4: 3 files, 1 folder · {MARK}2 with problems"
    # The checks are remembered with the list (no second read at the next opening).
    restored = SegmentDialog()
    restored.more_rasters.restore(dlg.more_rasters.to_setting())
    assert restored.more_rasters.entries() == dlg.more_rasters.entries()
    restored.deleteLater()


def test_describe_counts_what_the_list_holds_and_what_will_fail():
    entries = [RasterEntry("layer", "/a.tif", "a", 4, True), RasterEntry("file", "/b.tif", "b", 1, True)]
    assert describe(entries, "paligemma") == "+2: 1 layer, 1 file"
    assert describe(entries, "water-index") == f"+2: 1 layer, 1 file · {MARK}1 with problems"
    empty = RasterEntry("folder", "/f", "f", rasters=0)
    assert empty.problems("paligemma") == ["the folder holds no raster (.tif, .tiff, .vrt, .jp2, …)"]
