"""Render docs/change_map.png: water gained and lost on the Ucayali at Pucallpa, 1985 -> 2020.

    .venv/bin/python scripts/render_change_map.py [--out docs]

Runs a real ``change`` job in the worker process (the two Landsat rasters of ../shared/data,
segmented with the water-index engine, MNDWI from bands 4 and 1), loads the result with the
plugin's own styles and draws it over the 2020 scene (SWIR1, NIR, Red), with a legend.
Without the shared data it uses two synthetic scenes (a lake that grows, a pond that dries).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RASTERS = REPO.parent / "shared" / "data" / "rasters"


def _inputs(workdir: Path) -> tuple[Path, Path, dict, str]:
    before = RASTERS / "opengeos_landsat_pucallpa_1985.tif"
    after = RASTERS / "opengeos_landsat_pucallpa_2020.tif"
    if before.is_file() and after.is_file():
        return before, after, {"engine": "water-index", "green": 4, "swir": 1}, "Ucayali river, Pucallpa"
    sys.path.insert(0, str(REPO / "tests"))
    from shapely.geometry import Point
    from synthetic_rasters import make_scene

    lake, pond = (200, 200), (480, 100)
    a = make_scene(workdir / "before.tif", water_px=[Point(*lake).buffer(60), Point(*pond).buffer(25)])
    b = make_scene(workdir / "after.tif", water_px=[Point(*lake).buffer(100)], seed=1)
    return a.path, b.path, {"engine": "water-index", "preset": "naip"}, "synthetic scenes"


def _legend(image, entries: list[tuple[str, str]], title: str) -> None:
    from qgis.PyQt.QtCore import QRectF, Qt
    from qgis.PyQt.QtGui import QColor, QFont, QFontMetrics, QPainter

    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    font = QFont()
    font.setPixelSize(15)
    painter.setFont(font)
    row = 24
    metrics = QFontMetrics(font)
    text_w = max(metrics.horizontalAdvance(t) for t in [title] + [f"MMMMMM{label}" for label, _ in entries])
    box = QRectF(12, 12, text_w + 30, 34 + row * len(entries))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(255, 255, 255, 225))
    painter.drawRoundedRect(box, 6, 6)
    painter.setPen(QColor(20, 20, 20))
    painter.drawText(QRectF(24, 18, text_w + 10, 20), title)
    for i, (label, rgba) in enumerate(entries):
        y = 44 + i * row
        r, g, b, a = (int(v) for v in rgba.split(","))
        painter.setBrush(QColor(r, g, b, max(a, 200)))
        painter.setPen(QColor(60, 60, 60))
        painter.drawRect(QRectF(24, y, 28, 16))
        painter.drawText(QRectF(62, y - 2, text_w, 20), label)
    painter.end()


def render(out: Path, workdir: Path) -> Path:
    from qgis.core import (
        QgsMapRendererParallelJob,
        QgsMapSettings,
        QgsProject,
        QgsRasterLayer,
        QgsVectorLayer,
    )
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    from paligemma_qgis.plugin.change_styles import FILLS, style_class_layer
    from paligemma_qgis.plugin.runner import run_worker
    from paligemma_qgis.plugin.worker_env import worker_command, worker_env

    before, after, segment, where = _inputs(workdir)
    gpkg = workdir / "change.gpkg"
    job = {
        "task": "change",
        "options": {
            "before": str(before),
            "after": str(after),
            "output": str(gpkg),
            "before_date": "1985" if "1985" in before.name else None,
            "after_date": "2020" if "2020" in after.name else None,
            "segment": segment,
            "workdir": str(workdir),
        },
    }
    outcome = run_worker(job, worker_command(python=sys.executable), env=worker_env())
    if not outcome.ok:
        raise SystemExit(f"render_change_map: worker failed: {outcome.message}\n{outcome.details}")
    areas = outcome.result["areas_m2"]
    print("render_change_map: " + ", ".join(f"{k} {v / 1e6:.2f} km2" for k, v in areas.items()))

    project = QgsProject.instance()
    background = QgsRasterLayer(str(after), after.stem, "gdal")
    project.addMapLayer(background)
    layers = []
    for name in ("gained", "lost", "persistent"):
        layer = QgsVectorLayer(f"{gpkg}|layername={name}", name, "ogr")
        style_class_layer(layer, name)
        project.addMapLayer(layer)
        layers.append(layer)

    settings = QgsMapSettings()
    settings.setLayers([*layers, background])
    settings.setDestinationCrs(background.crs())
    settings.setBackgroundColor(QColor(255, 255, 255))
    extent = background.extent()
    width = 1100
    settings.setOutputSize(QSize(width, max(200, int(width * extent.height() / extent.width()))))
    settings.setExtent(extent)
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    dates = f"{outcome.result.get('before_date') or 'before'} → {outcome.result.get('after_date') or 'after'}"
    _legend(
        image,
        [
            (f"gained  {areas['gained'] / 1e6:.1f} km²", FILLS["gained"][0]),
            (f"lost  {areas['lost'] / 1e6:.1f} km²", FILLS["lost"][0]),
            (f"persistent  {areas['persistent'] / 1e6:.1f} km²", FILLS["persistent"][0]),
        ],
        f"{where}, {dates}",
    )
    path = out / "change_map.png"
    tmp = path.with_name(f".{path.name}.tmp.png")
    if not image.save(str(tmp), "PNG", 0):
        raise SystemExit(f"render_change_map: could not write {tmp}")
    os.replace(tmp, path)
    project.clear()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs"), help="folder for change_map.png")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    for name in ("PROJ_LIB", "PROJ_DATA"):  # QGIS must use its own proj.db
        os.environ.pop(name, None)

    from qgis.core import QgsApplication

    with tempfile.TemporaryDirectory(prefix="render_change_map_") as tmp:
        os.environ["QGIS_CUSTOM_CONFIG_PATH"] = str(Path(tmp) / "profile")
        app = QgsApplication([], False)
        app.initQgis()
        try:
            print(f"render_change_map: wrote {render(out, Path(tmp))}")
        finally:
            app.exitQgis()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
