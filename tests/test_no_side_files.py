"""Issue 21: nothing appears beside the user's rasters: no ``.aux.xml`` (GDAL's PAM side file).

QGIS keeps statistics it computes for a raster layer in such a file; the plugin's own checks of a
file the user only picked (the raster picker, More rasters, the band question) read it with GDAL's
side files off, and the worker and the command line run with GDAL_PAM_ENABLED=NO.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsRasterLayer
from synthetic_rasters import make_scene
from waiting import wait_for_task

from paligemma_qgis.plugin.band_roles import BandRolesDialog
from paligemma_qgis.plugin.task import WorkerTask

# End to end (subprocesses, QGIS tasks, Ray, servers): `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
LANDSAT = REPO.parent / "shared" / "data" / "rasters" / "opengeos_landsat_pucallpa_2020.tif"


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "users_rasters"
    folder.mkdir()
    make_scene(folder / "lakes.tif")
    make_scene(folder / "more.tif", seed=1)
    if LANDSAT.is_file():  # a real file whose read GDAL would otherwise annotate
        shutil.copy(LANDSAT, folder / LANDSAT.name)
        (folder / LANDSAT.name).chmod(0o644)
    return folder


def test_a_qgis_layer_would_write_one(tmp_path, monkeypatch):
    """The control: what a QgsRasterLayer of the file leaves (so the tests below would catch it).
    GDAL's default, whatever an in-process CLI run of an earlier test left in the environment."""
    monkeypatch.setenv("GDAL_PAM_ENABLED", "YES")
    folder = _inputs(tmp_path)
    layer = QgsRasterLayer(str(folder / "lakes.tif"), "lakes", "gdal")
    assert layer.isValid()
    del layer
    assert "lakes.tif.aux.xml" in _listing(folder)


def test_the_dialog_checks_and_the_run_leave_the_input_folder_as_it_was(
    dlg, clean_project, qgis_iface, tmp_path
):
    folder = _inputs(tmp_path)
    before = _listing(folder)
    raster = folder / "lakes.tif"
    dlg.set_raster_file(str(raster))
    dlg.engine_combo.setCurrentIndex(dlg.engine_combo.findData("water-index"))
    dlg.output_widget.setFilePath(str(tmp_path / "water.gpkg"))
    dlg.more_rasters.button.click()
    dlg.more_rasters.editor.add_files([str(folder / "more.tif")])
    dlg.more_rasters.editor.add_folder(str(folder))
    dlg.more_rasters.editor.reject()
    assert dlg.validate() == []
    source, roles = dlg.band_question()  # no descriptions, no preset: the question, with statistics
    assert source == str(raster) and roles == ["green", "nir", "swir"]
    question = BandRolesDialog(source, roles)
    assert all(info.mean is not None for info in question.infos)
    question.deleteLater()
    dlg.preset_combo.setCurrentIndex(dlg.preset_combo.findData("naip"))
    task = WorkerTask(
        "Water in lakes", dlg.build_job(tmp_path / "job"), python=sys.executable, iface=qgis_iface
    )
    QgsApplication.taskManager().addTask(task)
    wait_for_task(task)
    assert task.succeeded, task.error
    assert _listing(folder) == before


def test_segment_on_the_command_line_leaves_the_input_folder_as_it_was(tmp_path):
    folder = _inputs(tmp_path)
    before = _listing(folder)
    env = {k: v for k, v in os.environ.items() if k not in ("PROJ_LIB", "PROJ_DATA", "GDAL_PAM_ENABLED")}
    env["PYTHONPATH"] = str(REPO)
    for raster, extra in ((folder / "lakes.tif", ["--preset", "naip"]),
                          (folder / LANDSAT.name, ["--green", "2", "--nir", "4"])):  # fmt: skip
        if not raster.is_file():
            continue
        out = tmp_path / f"{raster.stem}.gpkg"
        done = subprocess.run([sys.executable, "-m", "paligemma_qgis", "segment", str(raster), str(out), *extra,
                               "--mask-tif", str(tmp_path / f"{raster.stem}_mask.tif")],
                              capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
    assert _listing(folder) == before


def test_processing_with_files_leaves_the_input_folder_as_it_was(provider, clean_project, tmp_path):
    """Processing opens a raster given as a file while it checks the parameters (and keeps it for
    the run): that check runs with GDAL's side files off too."""
    import processing

    folder = _inputs(tmp_path)
    before = _listing(folder)
    processing.run("paligemma:segment_water", {"INPUT": str(folder / "lakes.tif"), "ENGINE": 1, "BANDS": "naip",
                                               "OUTPUT": str(tmp_path / "one.gpkg")})  # fmt: skip
    processing.run("paligemma:water_change", {"BEFORE": str(folder / "lakes.tif"), "AFTER": str(folder / "more.tif"),
                                              "BANDS": "naip", "OUTPUT": str(tmp_path / "change.gpkg")})  # fmt: skip
    assert _listing(folder) == before
