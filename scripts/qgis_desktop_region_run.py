"""A region mapped from the real QGIS desktop under Xvfb, with screenshots: More rasters, then Processing.

    .venv/bin/python scripts/qgis_desktop_region_run.py [--raster FILE] [--out DIR]

Cuts the raster (default: the NAIP tile of ../shared/data) into four overlapping tiles, one
of them reprojected to EPSG:4326, and puts two in a folder with a file that is not a raster.
Builds the plugin zip into a throw-away profile whose worker Python is this venv's, starts
QGIS (xvfb-run, 1366x768) with the other two tiles (the second added from inside), and from inside QGIS (this file, run by
``--code``): opens the dialog from its toolbar action, adds the second layer and the folder
under More rasters, chooses the NAIP preset and Run; waits for the group "Water in 5 rasters (1 failed)"
and the warning naming the scene that failed; then runs ``paligemma:segment_water_region``
with ``processing.runAndLoadResults`` (Merge water across scenes) and checks its group.
Screenshots and a log go to --out.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

REPO = Path(globals().get("__file__", ".")).resolve().parents[1] if "__file__" in globals() else None


def _tiles(raster: Path, work: Path) -> tuple[list[Path], Path]:
    """(two tiles for the project, a folder with two more and a broken .tif)."""
    import rasterio
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    sys.path.insert(0, str(REPO / "scripts"))
    from render_docs import _tiles as cut

    tiles = sorted(cut(raster, work / "all_tiles").glob("*.tif"))
    folder = work / "more_tiles"
    folder.mkdir()
    (folder / "broken.tif").write_text("not a raster")
    os.replace(tiles[2], folder / tiles[2].name)
    with rasterio.open(tiles[3]) as src:  # the fourth tile in another CRS
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:4326", src.width, src.height, *src.bounds
        )
        profile = {
            **src.profile,
            "crs": "EPSG:4326",
            "transform": transform,
            "width": width,
            "height": height,
        }
        with rasterio.open(folder / f"{tiles[3].stem}_wgs84.tif", "w", **profile) as dst:
            for band in range(1, src.count + 1):
                reproject(rasterio.band(src, band), rasterio.band(dst, band), resampling=Resampling.nearest)
    return tiles[:2], folder


def launch(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    from qgis_desktop import NAIP, plugin_profile, run_qgis

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raster", default=str(NAIP))
    parser.add_argument("--out", default="desktop_region_run")
    parser.add_argument("--timeout", type=int, default=900, help="seconds QGIS may take in all")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qgis_desktop_") as tmp:
        work = Path(tmp)
        plugin_profile(work, f"[paligemma_qgis]\nworker_python={sys.executable}\n")
        layers, folder = _tiles(Path(args.raster), work)
        # QGIS 3.22 under xvfb never runs --code when given two rasters: the second is added from inside.
        env = {
            "DESKTOP_REGION_OUT": str(out),
            "DESKTOP_REGION_FOLDER": str(folder),
            "DESKTOP_REGION_SECOND": str(layers[1]),
        }
        return run_qgis(work, str(Path(__file__).resolve()), layers[0], env, out, args.timeout)


def drive() -> None:
    """Inside QGIS: a timer walks through the region run as a user would."""
    from qgis.core import QgsProject, QgsRasterLayer
    from qgis.PyQt.QtCore import QObject, QTimer
    from qgis.PyQt.QtWidgets import QApplication
    from qgis.utils import iface, plugins

    out = Path(os.environ["DESKTOP_REGION_OUT"])
    folder = os.environ["DESKTOP_REGION_FOLDER"]
    log_file = open(out / "drive.log", "w", buffering=1)  # noqa: SIM115 - open for QGIS's whole life
    state: dict = {"step": "wait_plugin", "t": time.monotonic()}

    def log(*parts) -> None:
        print(time.strftime("%H:%M:%S"), *parts, file=log_file)

    def shot(name: str) -> None:
        QApplication.primaryScreen().grabWindow(0).save(str(out / f"{name}.png"))
        log("screenshot", name)

    def tree() -> list:
        root = QgsProject.instance().layerTreeRoot()
        return [
            (g.name(), [(n.layer().name(), n.isVisible()) for n in g.findLayers()])
            for g in root.children()
            if hasattr(g, "findLayers")
        ]

    def tick() -> None:
        step = state["step"]
        try:
            if time.monotonic() - state["t"] > 600:
                raise TimeoutError(f"stuck at {step}")
            if step == "wait_plugin" and "paligemma_qgis" in plugins:
                rasters = [
                    lyr
                    for lyr in QgsProject.instance().mapLayers().values()
                    if isinstance(lyr, QgsRasterLayer)
                ]
                if not rasters:
                    return
                second = os.environ["DESKTOP_REGION_SECOND"]
                rasters.append(iface.addRasterLayer(second, Path(second).stem))
                log("layers:", [lyr.name() for lyr in rasters])
                state["rasters"] = sorted(rasters, key=lambda lyr: lyr.name())
                action = iface.mainWindow().findChild(QObject, "paligemmaMapWater")
                state["step"] = "dialog"
                QTimer.singleShot(0, action.trigger)  # exec() blocks: the timer ticks inside it
            elif step == "dialog":
                dialog = QApplication.activeModalWidget()
                if dialog is None or not hasattr(dialog, "more_rasters"):
                    return
                state["dialog"] = dialog
                dialog.set_raster_layer(state["rasters"][0])
                dialog.preset_combo.setCurrentIndex(dialog.preset_combo.findData("naip"))
                dialog.output_widget.setFilePath(str(out / "region.gpkg"))
                dialog.overwrite_check.setChecked(True)
                dialog.more_rasters.button.click()
                state["step"] = "more"
            elif step == "more":
                editor = state["dialog"].more_rasters.editor
                editor.add_layers([state["rasters"][1]])
                editor.add_folder(folder)
                QTimer.singleShot(300, lambda: shot("01_more_rasters"))
                state["step"] = "more_ok"
                state["at"] = time.monotonic() + 1
            elif step == "more_ok" and time.monotonic() > state["at"]:
                state["dialog"].more_rasters.editor.accept()
                QTimer.singleShot(300, lambda: shot("02_dialog"))
                state["step"] = "run"
                state["at"] = time.monotonic() + 1
            elif step == "run" and time.monotonic() > state["at"]:
                log("task names:", state["dialog"].task_names())
                state["dialog"].run_button.click()
                state["step"] = "wait_run"
            elif step == "wait_run":
                task = state["dialog"].task
                if task is None or not task.finished_called:
                    return
                log("run finished", task.succeeded, task.error)
                log("tree:", tree())
                log("message bar:", [item.text() for item in iface.messageBar().items()])
                state["dialog_ok"] = task.succeeded and any(
                    name == "Water in 5 rasters (1 failed)" for name, _ in tree()
                )
                iface.mapCanvas().zoomToFullExtent()
                state["step"] = "processing"
                state["at"] = time.monotonic() + 4
            elif step == "processing" and time.monotonic() > state["at"]:
                shot("03_region_in_qgis")
                import processing

                result = processing.runAndLoadResults(
                    "paligemma:segment_water_region",
                    {"INPUTS": [lyr.source() for lyr in state["rasters"]], "FOLDER": folder, "ENGINE": 1,
                     "BANDS": "naip", "DISSOLVE": True, "OUTPUT": str(out / "region_processing.gpkg")},
                )  # fmt: skip
                log("processing:", result["SCENES"], "scenes,", result["FAILED"], "failed")
                log("tree:", tree())
                runs = [layers for name, layers in tree() if name == "Water in 5 rasters (1 failed)"]
                state["processing_ok"] = len(runs) == 2 and [n for n, _ in runs[0]] == [
                    "water_dissolved",
                    "water",
                    "scenes",
                    "chips",
                ]
                iface.mapCanvas().refreshAllLayers()
                state["step"] = "final"
                state["at"] = time.monotonic() + 4
            elif step == "final" and time.monotonic() > state["at"]:
                shot("04_processing_group")
                ok = state.get("dialog_ok") and state.get("processing_ok")
                log("DONE", "ok" if ok else "failed")
                state["step"] = "quit"
            elif step == "quit":
                QTimer.singleShot(200, QApplication.instance().quit)
                state["step"] = "gone"
        except Exception:
            log(traceback.format_exc())
            log("DONE failed")
            state["step"] = "quit"

    timer = QTimer(iface.mainWindow())
    timer.timeout.connect(tick)
    timer.start(500)
    log("driving")


def _inside_qgis() -> bool:
    if not os.environ.get("DESKTOP_REGION_OUT"):
        return False
    try:
        from qgis.utils import iface
    except ImportError:
        return False
    return iface is not None


if _inside_qgis():
    drive()
elif __name__ == "__main__":
    raise SystemExit(launch())
