"""Render the plugin's dialogs and a result map to PNG (offscreen, real QGIS) for the docs.

    .venv/bin/python scripts/render_docs.py [--out docs] [--raster FILE --preset naip]

The result map runs the real worker (water-index engine, no model needed) on the NAIP
prairie-pothole tile from ../shared/data when present, else on a synthetic scene, and
draws the styled water layer over the raster exactly as the plugin adds it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAIP = REPO.parent / "shared" / "data" / "rasters" / "opengeos_naip_m_4709963_se_14_1_20200831.tif"


def _save(image, path: Path) -> None:
    """Write through a temp file so a failed render never leaves a broken PNG."""
    tmp = path.with_name(f".{path.name}.tmp.png")
    if not image.save(str(tmp), "PNG", 0):  # 0: smallest file (PNG is lossless anyway)
        raise SystemExit(f"render_docs: could not write {tmp}")
    os.replace(tmp, path)


def _grab(widget, path: Path) -> Path:
    """Show ``widget`` at the size it takes in QGIS, write it to ``path``, close it."""
    widget.show()
    _settle()
    if hasattr(widget, "fit"):
        widget.fit()
        _settle()
    _save(widget.grab().toImage(), path)
    print(f"render_docs: {path.name} {widget.width()}x{widget.height()} px")
    widget.close()
    widget.deleteLater()
    return path


def render_dialog(out: Path, raster: Path) -> list[Path]:
    """The "Map water" dialog as it opens (water index), and with the PaliGemma engine chosen."""
    from paligemma_qgis.plugin.dialog import SegmentDialog

    paths = []
    for engine, name in (("water-index", "dialog.png"), ("paligemma", "dialog_paligemma.png")):
        dialog = SegmentDialog(None)
        dialog.set_raster_file(str(raster))
        dialog.engine_combo.setCurrentIndex(dialog.engine_combo.findData(engine))
        dialog.preset_combo.setCurrentIndex(dialog.preset_combo.findData("naip"))
        dialog.output_widget.setFilePath(str(Path.home() / "maps" / f"{raster.stem}_water.gpkg"))
        paths.append(_grab(dialog, out / name))
    return paths


def render_more_rasters(out: Path, raster: Path) -> Path:
    """The More rasters list of the Map water dialog: a layer, a folder of tiles, STAC items."""
    from paligemma_qgis.plugin.more_rasters import MoreRastersDialog, RasterEntry

    home = Path.home() / "data"
    entries = [
        RasterEntry("layer", str(raster), raster.stem, 4),
        RasterEntry("folder", str(home / "naip_2020_tiles"), "naip_2020_tiles"),
        RasterEntry("file", str(home / "flood_2024" / "items.json"), "items.json"),
    ]
    dialog = MoreRastersDialog(entries)
    return _grab(dialog, out / "more_rasters.png")


def render_band_question(out: Path, raster: Path) -> Path:
    """The question a raster without band descriptions gets (water index, no preset)."""
    from qgis.core import QgsRasterLayer

    from paligemma_qgis.plugin.band_roles import BandRolesDialog

    layer = QgsRasterLayer(str(raster), raster.stem, "gdal")
    dialog = BandRolesDialog(layer, ["green", "nir", "swir"])
    return _grab(dialog, out / "band_question.png")


def render_setup_question(out: Path, raster: Path) -> Path:
    """The first Run's offer, for the Python QGIS runs on (as on a fresh install)."""
    import json
    import subprocess

    from paligemma_qgis.plugin.first_run import probe_args, setup_question
    from paligemma_qgis.plugin.setup_plan import plan_setup
    from paligemma_qgis.plugin.worker_env import qgis_python, worker_command, worker_env

    python = "/usr/bin/python3" if Path("/usr/bin/python3").is_file() else qgis_python()[0]
    proc = subprocess.run(
        worker_command(*probe_args("water-index"), python=python),
        capture_output=True,
        text=True,
        env=worker_env(),
    )
    probe = json.loads(proc.stdout.strip().splitlines()[-1])
    # Where a default Linux profile keeps it (the render's own profile is a temp folder).
    venv = Path.home() / ".local/share/QGIS/QGIS3/profiles/default/paligemma_qgis/venv"
    plan = plan_setup(probe, "water-index", "QGIS python", venv_dir=venv, base_python=python)
    box = setup_question(None, plan, probe, python, "QGIS python")
    return _grab(box, out / "setup_question.png")


def render_setup_dialog(out: Path) -> Path:
    """Worker setup with a real check of this machine's worker Python (the project's venv)."""
    from paligemma_qgis.plugin import setup_check, worker_env
    from paligemma_qgis.plugin.setup_check import SetupCheckDialog, run_check

    # Show the plugin's venv where a default Linux profile has it, not in the render's temp profile.
    default_venv = Path.home() / ".local/share/QGIS/QGIS3/profiles/default/paligemma_qgis/venv"
    setup_check.managed_venv_dir = worker_env.managed_venv_dir = lambda: default_venv
    dialog = SetupCheckDialog(model="google/paligemma2-3b-mix-224")
    dialog.python_widget.setFilePath(sys.executable)
    dialog.ray_edit.setText("ray://gpu-server.example.org:10001")
    check = run_check(python=sys.executable, model="google/paligemma2-3b-mix-224", executor="ray")
    dialog.show_result(check)
    return _grab(dialog, out / "worker_setup.png")


def render_export_dialog(out: Path, raster: Path) -> Path:
    from paligemma_qgis.plugin.export_dialog import ExportDialog

    dialog = ExportDialog(None)
    dialog.raster_picker.set_file(str(raster))
    dialog.labels_combo.setCurrentIndex(dialog.labels_combo.findData("vector"))
    dialog.vector_widget.setFilePath(str(Path.home() / "data" / "known_water.gpkg"))
    dialog.preset_combo.setCurrentIndex(dialog.preset_combo.findData("naip"))
    dialog.output_widget.setFilePath(str(Path.home() / "training" / f"{raster.stem}_chips"))
    return _grab(dialog, out / "export_dialog.png")


def _settle() -> None:
    from qgis.PyQt.QtWidgets import QApplication

    for _ in range(5):
        QApplication.processEvents()


def render_map(out: Path, raster: Path, preset: str | None, workdir: Path) -> Path:
    from qgis.core import (
        QgsMapRendererParallelJob,
        QgsMapSettings,
        QgsProject,
        QgsRasterLayer,
    )
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    from paligemma_qgis.plugin.layers import add_result_layers
    from paligemma_qgis.plugin.options import segment_job
    from paligemma_qgis.plugin.runner import run_worker
    from paligemma_qgis.plugin.worker_env import worker_command, worker_env

    gpkg = workdir / "water.gpkg"
    job = segment_job(str(raster), str(gpkg), engine="water-index", preset=preset, min_area_m2=200)
    outcome = run_worker(job, worker_command(python=sys.executable), env=worker_env())
    if not outcome.ok:
        raise SystemExit(f"render_docs: worker failed: {outcome.message}\n{outcome.details}")
    print(
        f"render_docs: {outcome.result['polygons']} polygons, {outcome.result['water_area_km2']:.3f} km2 water"
    )

    project = QgsProject.instance()
    layer = QgsRasterLayer(str(raster), raster.stem, "gdal")
    project.addMapLayer(layer)
    _, added = add_result_layers(gpkg, raster.stem, project)
    water = added[0]

    settings = QgsMapSettings()
    settings.setLayers([water, layer])
    settings.setDestinationCrs(layer.crs())
    settings.setBackgroundColor(QColor(255, 255, 255))
    extent = layer.extent()
    width = 800
    height = max(200, int(width * extent.height() / extent.width()))
    settings.setOutputSize(QSize(width, height))
    settings.setExtent(extent)
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    path = out / "result_map.png"
    _save(job.renderedImage(), path)
    project.clear()
    return path


def _tiles(raster: Path, folder: Path, overlap: int = 64) -> Path:
    """The raster cut into 2 x 2 overlapping GeoTIFF tiles in ``folder`` (a region's scenes)."""
    import rasterio
    from rasterio.windows import Window

    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(raster) as src:
        half_w, half_h = src.width // 2, src.height // 2
        for row in (0, 1):
            for col in (0, 1):
                x0, y0 = max(0, col * half_w - overlap), max(0, row * half_h - overlap)
                window = Window(x0, y0, min(src.width, (col + 1) * half_w + overlap) - x0,
                                min(src.height, (row + 1) * half_h + overlap) - y0)  # fmt: skip
                profile = {**src.profile, "width": int(window.width), "height": int(window.height),
                           "transform": src.window_transform(window)}  # fmt: skip
                with rasterio.open(folder / f"{raster.stem}_r{row}c{col}.tif", "w", **profile) as dst:
                    dst.write(src.read(window=window))
    return folder


def render_region_map(out: Path, raster: Path, preset: str | None, workdir: Path) -> Path:
    """A region run as the dialog adds it: the raster as four overlapping tiles (a folder), water
    merged across them (Merge water across scenes) and the scenes' footprints."""
    from qgis.core import QgsMapRendererParallelJob, QgsMapSettings, QgsProject, QgsRasterLayer
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    from paligemma_qgis.plugin.layers import add_result_layers
    from paligemma_qgis.plugin.options import segment_job
    from paligemma_qgis.plugin.runner import run_worker
    from paligemma_qgis.plugin.worker_env import worker_command, worker_env

    folder = _tiles(raster, workdir / "tiles")
    gpkg = workdir / "region.gpkg"
    job = segment_job(
        [str(folder)], str(gpkg), engine="water-index", preset=preset, min_area_m2=200, dissolve=True
    )
    outcome = run_worker(job, worker_command(python=sys.executable), env=worker_env())
    if not outcome.ok:
        raise SystemExit(f"render_docs: region run failed: {outcome.message}\n{outcome.details}")
    print(f"render_docs: region of {outcome.result['scenes']} scenes, {outcome.result['polygons']} polygons")
    project = QgsProject.instance()
    layer = QgsRasterLayer(str(raster), raster.stem, "gdal")
    project.addMapLayer(layer)
    _, added = add_result_layers(gpkg, "Water in 4 rasters", project, region=True)
    shown = {lyr.name(): lyr for lyr in added}  # water under water_dissolved is hidden, as in QGIS
    settings = QgsMapSettings()
    settings.setLayers([shown["scenes"], shown["water_dissolved"], layer])
    settings.setDestinationCrs(layer.crs())
    settings.setBackgroundColor(QColor(255, 255, 255))
    extent = layer.extent()
    extent.grow(extent.width() * 0.02)
    settings.setOutputSize(QSize(800, max(200, int(800 * extent.height() / extent.width()))))
    settings.setExtent(extent)
    render = QgsMapRendererParallelJob(settings)
    render.start()
    render.waitForFinished()
    path = out / "region_map.png"
    _save(render.renderedImage(), path)
    project.clear()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        default=str(REPO / "docs"),
        help="folder for dialog.png, dialog_paligemma.png, more_rasters.png, band_question.png, "
        "setup_question.png, worker_setup.png, export_dialog.png, result_map.png and region_map.png",
    )
    parser.add_argument("--raster", help="raster to map (default: shared NAIP tile, else a synthetic scene)")
    parser.add_argument("--preset", help="band preset of --raster (naip, sentinel2, landsat89)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    for name in ("PROJ_LIB", "PROJ_DATA"):  # QGIS must use its own proj.db
        os.environ.pop(name, None)

    from qgis.core import QgsApplication

    with tempfile.TemporaryDirectory(prefix="render_docs_") as tmp:
        workdir = Path(tmp)
        # A throw-away profile: the dialog shows defaults, not this machine's last choices.
        os.environ["QGIS_CUSTOM_CONFIG_PATH"] = str(workdir / "profile")
        app = QgsApplication([], True)
        app.initQgis()
        try:
            if args.raster:
                raster, preset = Path(args.raster), args.preset
            elif NAIP.is_file():
                raster, preset = NAIP, "naip"
            else:
                sys.path.insert(0, str(REPO / "tests"))
                from synthetic_rasters import make_scene

                raster, preset = make_scene(workdir / "synthetic_lakes.tif").path, "naip"
            for path in (
                *render_dialog(out, raster),
                render_more_rasters(out, raster),
                render_band_question(out, raster),
                render_setup_question(out, raster),
                render_setup_dialog(out),
                render_export_dialog(out, raster),
                render_map(out, raster, preset, workdir),
                render_region_map(out, raster, preset, workdir),
            ):
                print(f"render_docs: wrote {path}")
        finally:
            app.exitQgis()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
