"""The analyst's second day in the real QGIS desktop under Xvfb, with screenshots (issue 21).

    .venv/bin/python scripts/qgis_desktop_second_day.py [--out DIR] [--rasters ../shared/data/rasters]

Builds the plugin zip into a throw-away profile whose worker Python is this venv's, slowed by a
wrapper (half a second per chip batch, so that a cancel lands mid-run), starts QGIS (xvfb-run,
1366x768) with a NAIP tile, and from inside QGIS (this file, run by ``--code``):

1. change: an earlier map's group is selected in the Layers panel; Processing's *Water change*
   dialog, filled with the Pucallpa Landsat 1985 and 2020 rasters and their bands only, Run; its
   layers must land in one top-level group "Water change 1985 → 2020", the earlier group untouched;
2. cancel: the *Map water* dialog with More rasters (another tile and a folder of two), Run, then
   Cancel while the second scene is mapped: "Stopped: 1 of 4 scenes are kept. Run again to
   continue.", and no "Task failed";
3. choices kept: another layer made active, the dialog opened again: same raster, More rasters,
   preset;
4. continue: More rasters cleared (a run of other rasters into the same file), Run: the question
   "An interrupted run of other rasters is in this file", Continue it: "Continued: 1 scene was
   already done.", one group "Water in 4 rasters".

Screenshots (NN_*.png) and drive.log go to --out; the log says DONE ok when every check held.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

REPO = Path(globals().get("__file__", ".")).resolve().parents[1] if "__file__" in globals() else None


def launch(argv: list[str] | None = None) -> int:
    import argparse
    import shutil
    import tempfile

    from qgis_desktop import NAIP, plugin_profile, run_qgis

    sys.path[:0] = [str(REPO / "scripts"), str(REPO / "tests")]
    from render_docs import _tiles
    from slow_worker import slow_worker_python  # the tests' slowed worker: a cancel lands mid-run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="desktop_second_day")
    parser.add_argument(
        "--rasters",
        default=os.environ.get("PALIGEMMA_QGIS_SHARED_DATA", str(NAIP.parent.parent)) + "/rasters",
        help="the shared data's rasters folder (the NAIP tile and the Pucallpa Landsat pair)",
    )
    parser.add_argument("--timeout", type=int, default=900, help="seconds QGIS may take in all")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rasters = Path(args.rasters)
    naip = rasters / NAIP.name
    with tempfile.TemporaryDirectory(prefix="qgis_desktop_") as tmp:
        work = Path(tmp)
        python = slow_worker_python(work, 0.5)
        plugin_profile(work, f"[paligemma_qgis]\nworker_python={python}\n")
        tiles = sorted(_tiles(naip, work / "tiles").glob("*.tif"))
        folder = work / "more_tiles"
        folder.mkdir()
        for tile in tiles[2:]:
            shutil.move(str(tile), folder / tile.name)
        landsat = (
            work / "pucallpa"
        )  # named by year, as opengeos/data ships them: the dates come from the names
        landsat.mkdir()
        for year in ("1985", "2020"):
            shutil.copy(rasters / f"opengeos_landsat_pucallpa_{year}.tif", landsat / f"{year}.tif")
            (landsat / f"{year}.tif").chmod(0o644)
        env = {
            "DESKTOP_DAY2_OUT": str(out),
            "DESKTOP_DAY2_SECOND": str(tiles[1]),
            "DESKTOP_DAY2_FOLDER": str(folder),
            "DESKTOP_DAY2_LANDSAT": str(landsat),
        }
        return run_qgis(work, str(Path(__file__).resolve()), tiles[0], env, out, args.timeout)


def drive() -> None:  # noqa: C901 - one walk-through, one state machine
    """Inside QGIS: a timer walks through the second day as a user would."""
    from qgis.core import QgsApplication, QgsLayerTreeGroup, QgsProject, QgsRasterLayer
    from qgis.PyQt.QtCore import QObject, QTimer
    from qgis.PyQt.QtWidgets import QApplication, QDockWidget, QPushButton
    from qgis.utils import iface, plugins

    out = Path(os.environ["DESKTOP_DAY2_OUT"])
    log_file = open(out / "drive.log", "w", buffering=1)  # noqa: SIM115 - open for QGIS's whole life
    state: dict = {"step": "wait_plugin", "t": time.monotonic(), "checks": {}}

    def log(*parts) -> None:
        print(time.strftime("%H:%M:%S"), *parts, file=log_file)

    def shot(name: str) -> None:
        QApplication.primaryScreen().grabWindow(0).save(str(out / f"{name}.png"))
        log("screenshot", name)

    def later(seconds: float, step: str) -> None:
        state["at"], state["step"] = time.monotonic() + seconds, step

    def due() -> bool:
        return time.monotonic() >= state.get("at", 0)

    def tree() -> list:
        root = QgsProject.instance().layerTreeRoot()
        return [
            (
                c.name(),
                [n.layer().name() for n in c.findLayers()] if isinstance(c, QgsLayerTreeGroup) else None,
            )
            for c in root.children()
        ]

    def bar() -> list[str]:
        from paligemma_qgis.plugin.messages import bar_texts

        return bar_texts(iface.messageBar())

    def tidy() -> None:
        """Legends folded and the top of the Layers panel in view, for the screenshots."""
        root = QgsProject.instance().layerTreeRoot()
        for node in root.findLayers():
            node.setExpanded(False)
        for group in root.findGroups():
            group.setExpanded(group.name().startswith("Water"))  # the runs' groups open
        iface.layerTreeView().scrollToTop()

    def zoom_to(layer) -> None:
        iface.setActiveLayer(layer)
        iface.zoomToActiveLayer()

    def check(name: str, ok: bool, *detail) -> None:
        state["checks"][name] = bool(ok)
        log("CHECK", name, "ok" if ok else "FAILED", *detail)

    def open_map_dialog(next_step: str) -> None:
        action = iface.mainWindow().findChild(QObject, "paligemmaMapWater")
        state["step"] = next_step
        QTimer.singleShot(0, action.trigger)  # exec() blocks: the timer ticks inside it

    def modal(attribute: str):
        widget = QApplication.activeModalWidget()
        return widget if widget is not None and hasattr(widget, attribute) else None

    def tick() -> None:  # noqa: C901
        step = state["step"]
        try:
            if time.monotonic() - state["t"] > 780:
                raise TimeoutError(f"stuck at {step}")
            if step == "wait_plugin" and "paligemma_qgis" in plugins:
                project = QgsProject.instance()
                rasters = [lyr for lyr in project.mapLayers().values() if isinstance(lyr, QgsRasterLayer)]
                if not rasters:
                    return
                state["tile_a"] = rasters[0]
                state["tile_b"] = iface.addRasterLayer(os.environ["DESKTOP_DAY2_SECOND"], "tile_b")
                landsat = Path(os.environ["DESKTOP_DAY2_LANDSAT"])
                state["y1985"] = iface.addRasterLayer(str(landsat / "1985.tif"), "pucallpa 1985")
                state["y2020"] = iface.addRasterLayer(str(landsat / "2020.tif"), "pucallpa 2020")
                # An earlier map's group, selected in the Layers panel: new layers would go into it.
                root = project.layerTreeRoot()
                group = root.insertGroup(0, "Earlier map")
                node = root.findLayer(state["tile_b"].id())
                group.addChildNode(node.clone())
                node.parent().removeChildNode(node)
                view = iface.layerTreeView()
                view.setCurrentIndex(view.layerTreeModel().node2index(group))
                # The whole screen, and the Layers panel the room the Browser had: the groups show.
                window = iface.mainWindow()
                window.move(0, 0)
                window.resize(1366, 768)
                for dock in window.findChildren(QDockWidget):
                    if dock.objectName() != "Layers":
                        dock.hide()
                tidy()
                iface.mapCanvas().zoomToFullExtent()
                log("tree:", tree())
                later(2, "change")
            elif step == "change" and due():
                import processing
                from processing.core.ProcessingConfig import ProcessingConfig

                ProcessingConfig.setSettingValue(ProcessingConfig.KEEP_DIALOG_OPEN, True)  # to see its log
                alg = QgsApplication.processingRegistry().algorithmById("paligemma:water_change")
                default = alg.parameterDefinition("ENGINE").defaultValue()
                params = {"BEFORE": state["y1985"].id(), "AFTER": state["y2020"].id(), "GREEN": 4, "NIR": 2,
                          "SWIR": 1, "OUTPUT": str(out / "change.gpkg")}  # fmt: skip
                log("water_change ENGINE default:", default)
                if default != 1:  # the water index: issue 21's default (rules.py); say it if not so yet
                    log("NOTE: ENGINE does not default to the water index here; set explicitly")
                    params["ENGINE"] = 1
                state["step"] = "change_dialog"
                QTimer.singleShot(0, lambda: processing.execAlgorithmDialog("paligemma:water_change", params))
            elif step == "change_dialog":
                found = [w for w in QApplication.topLevelWidgets()
                         if w.isVisible() and w.windowTitle().startswith("Water change")]  # fmt: skip
                if not found:
                    return
                dialog = state["alg_dialog"] = found[0]
                log("processing dialog:", type(dialog).__name__)
                shot("01_change_dialog")
                (run,) = [b for b in dialog.findChildren(QPushButton) if b.text().replace("&", "") == "Run"]
                run.click()
                state["step"] = "change_wait"
            elif step == "change_wait" and tree()[0][0].startswith("Water change"):
                later(3, "change_done")
            elif step == "change_done" and due():
                shot("02_change_log")
                state["alg_dialog"].close()
                later(2, "change_tree")
            elif step == "change_tree" and due():
                layers = tree()
                log("tree after change:", layers)
                expected = ["gained", "lost", "persistent", "unknown", "observed on both dates"]
                check("change: one top-level group, every layer inside", layers[0] == ("Water change 1985 → 2020", expected), layers[0])  # fmt: skip
                check("change: the earlier map's group untouched", ("Earlier map", ["tile_b"]) in layers)
                tidy()
                zoom_to(state["y2020"])
                later(4, "change_shot")
            elif step == "change_shot" and due():
                shot("03_change_group")
                iface.setActiveLayer(state["tile_a"])
                open_map_dialog("map_dialog")
            elif step == "map_dialog":
                dialog = modal("more_rasters")
                if dialog is None:
                    return
                state["dialog"] = dialog
                check("first opening takes the active layer", dialog.raster_picker.layer() is state["tile_a"])
                dialog.engine_combo.setCurrentIndex(dialog.engine_combo.findData("water-index"))
                dialog.preset_combo.setCurrentIndex(dialog.preset_combo.findData("naip"))
                dialog.output_widget.setFilePath(str(out / "region.gpkg"))
                dialog.overwrite_check.setChecked(True)
                dialog.batch_spin.setValue(1)
                dialog.more_rasters.button.click()
                editor = dialog.more_rasters.editor
                editor.add_layers([state["tile_b"]])
                editor.add_folder(os.environ["DESKTOP_DAY2_FOLDER"])
                editor.accept()
                later(1, "map_shot")
            elif step == "map_shot" and due():
                shot("04_map_dialog")
                state["dialog"].run_button.click()
                state["step"] = "cancel"
            elif step == "cancel":
                task = state["dialog"].task
                if task is None or not (
                    task.message.startswith("scene 2/4") and "segmenting" in task.message
                ):
                    return
                log("cancelling at:", task.message)
                state["task"] = task
                task.cancel()  # what the task bar's cancel does
                state["step"] = "stopped"
            elif step == "stopped" and state["task"].finished_called:
                tidy()
                iface.mapCanvas().setExtent(state["tile_a"].extent())
                iface.mapCanvas().zoomScale(iface.mapCanvas().scale() * 2.2)
                later(2, "stopped_shot")
            elif step == "stopped_shot" and due():
                shown = bar()
                log("message bar:", shown)
                check("cancel says what is kept", shown and shown[0] == "Stopped: 1 of 4 scenes are kept. Run again to continue.", shown[:1])  # fmt: skip
                check(
                    "no 'Task failed' for a cancel",
                    not any("Task failed" in t or "failed" in t.lower() for t in shown),
                )
                shot("05_stopped")
                iface.setActiveLayer(state["y2020"])  # the user looks at another layer meanwhile
                open_map_dialog("reopened")
            elif step == "reopened":
                dialog = modal("more_rasters")
                if dialog is None:
                    return
                state["dialog"] = dialog
                kept = (dialog.raster_picker.layer() is state["tile_a"], dialog.bands_box.preset(),
                        dialog.more_rasters.label.text())  # fmt: skip
                log("reopened with:", kept)
                check("choices kept across openings", kept[0] and kept[1] == "naip" and kept[2].startswith("+2: 1 layer, 1 folder"), kept)  # fmt: skip
                later(1, "reopened_shot")
            elif step == "reopened_shot" and due():
                shot("06_reopened_choices_kept")
                state["dialog"].more_rasters.clear_button.click()  # a run of other rasters into that file
                state["dialog"].run_button.click()
                state["step"] = "question"
            elif step == "question":
                guard = state["dialog"].journal_check
                if guard is None or guard.box is None:
                    return
                box = guard.box
                log("question:", box.text(), "|", box.informativeText().replace("\n", " | "))
                check("asked before discarding", box.text().startswith("An interrupted run of other rasters is in this file"), box.text())  # fmt: skip
                state["box"] = box
                later(1, "question_shot")
            elif step == "question_shot" and due():
                shot("07_interrupted_question")
                from paligemma_qgis.plugin.interrupted import CONTINUE

                state["box"].buttons_by_answer[CONTINUE].click()
                state["step"] = "continued"
            elif step == "continued":
                task = state["dialog"].task
                if task is None or not task.finished_called:
                    return
                tidy()
                iface.mapCanvas().zoomToFullExtent()
                iface.mapCanvas().setExtent(state["tile_a"].extent())
                iface.mapCanvas().zoomScale(iface.mapCanvas().scale() * 2.2)
                later(4, "continued_shot")
            elif step == "continued_shot" and due():
                shown = bar()
                log("message bar:", shown)
                log("tree:", tree())
                check("continue says what was done", shown and shown[0].startswith("Continued: 1 scene was already done. 4 scenes,"), shown[:1])  # fmt: skip
                check("one group for the run", tree()[0] == ("Water in 4 rasters", ["water", "scenes", "chips"]), tree()[0])  # fmt: skip
                shot("08_continued")
                ok = all(state["checks"].values()) and len(state["checks"]) == 9
                log("DONE", "ok" if ok else "failed")
                state["step"] = "quit"
            elif step == "quit":
                QTimer.singleShot(200, QApplication.instance().quit)
                state["step"] = "gone"
        except Exception:
            log(traceback.format_exc())
            log("DONE failed")
            state["step"] = "quit"

    def accept_datum_question() -> None:
        """The Landsat pair (EPSG:4326) over the NAD83 tiles: QGIS asks which datum transformation
        (its default needs a grid it lacks); OK takes its first choice, as a user would."""
        for widget in QApplication.topLevelWidgets():
            if widget.isVisible() and widget.windowTitle().startswith("Select Transformation"):
                log("datum question:", widget.windowTitle(), "-> OK")
                widget.accept()

    timer = QTimer(iface.mainWindow())
    timer.timeout.connect(tick)
    timer.start(300)
    datum = QTimer(iface.mainWindow())  # a timer of its own: the question blocks inside tick()
    datum.timeout.connect(accept_datum_question)
    datum.start(500)
    log("driving")


def _inside_qgis() -> bool:
    if not os.environ.get("DESKTOP_DAY2_OUT"):
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
