"""Render the plugin's dialogs and a result map to PNG (offscreen) for the docs.

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


def render_dialog(out: Path, raster: Path) -> Path:
    from paligemma_qgis.plugin.dialog import SegmentDialog

    dialog = SegmentDialog(None)
    dialog.set_raster_file(str(raster))
    dialog.engine_combo.setCurrentIndex(0)
    dialog.preset_combo.setCurrentIndex(dialog.preset_combo.findData("naip"))
    dialog.output_widget.setFilePath(str(Path.home() / "maps" / f"{raster.stem}_water.gpkg"))
    dialog.min_area_spin.setValue(200)
    dialog.adjustSize()
    dialog.show()
    _settle()
    path = out / "dialog.png"
    _save(dialog.grab().toImage(), path)
    dialog.close()
    dialog.deleteLater()
    return path


def render_export_dialog(out: Path, raster: Path) -> Path:
    from paligemma_qgis.plugin.export_dialog import ExportDialog

    dialog = ExportDialog(None)
    dialog.raster_picker.set_file(str(raster))
    dialog.labels_combo.setCurrentIndex(dialog.labels_combo.findData("vector"))
    dialog.vector_widget.setFilePath(str(Path.home() / "data" / "known_water.gpkg"))
    dialog.preset_combo.setCurrentIndex(dialog.preset_combo.findData("naip"))
    dialog.output_widget.setFilePath(str(Path.home() / "training" / f"{raster.stem}_chips"))
    dialog.adjustSize()
    dialog.show()
    _settle()
    path = out / "export_dialog.png"
    _save(dialog.grab().toImage(), path)
    dialog.close()
    dialog.deleteLater()
    return path


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        default=str(REPO / "docs"),
        help="folder for dialog.png, export_dialog.png and result_map.png",
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
                render_dialog(out, raster),
                render_export_dialog(out, raster),
                render_map(out, raster, preset, workdir),
            ):
                print(f"render_docs: wrote {path}")
        finally:
            app.exitQgis()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
